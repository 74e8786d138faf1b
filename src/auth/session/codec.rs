//! The sealed-cookie codec: AES-256-GCM with library-chosen nonces, the cookie
//! name bound as associated data, key ids for rotation, and sharding of a
//! large sealed value over up to four cookies.
//!
//! Wire format of a sealed value, before base64url (no padding):
//!
//! ```text
//! version (1 byte, 0x01) | key id (4) | nonce (12) | ciphertext (n) | GCM tag (16)
//! ```
//!
//! The associated data is `version | shard count | key id | name`: count 0
//! and the cookie's own name for a single cookie, count 1..=4 and the base
//! name for a sharded one, so neither can pass for the other. A sharded value
//! is that text cut into pieces of a multiple of four characters, so each
//! shard decodes on its own; reordering, dropping, adding or mixing shards,
//! or cutting the text into another number of them, breaks the tag.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;

use super::cookies::{LONGEST_ATTRIBUTES, MAX_SHARDS, RequestCookies, set_cookie};
use crate::config::SessionKey;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Base64url length of the shortest sealed value (empty plaintext).
const MIN_ENCODED_LEN: usize = encoded_len(OVERHEAD);

/// Shard count in the associated data of a value that is a single cookie.
const SINGLE: u8 = 0;

/// A `Set-Cookie` header value must stay strictly under this many bytes.
const MAX_SET_COOKIE_LEN: usize = 4096;
/// Longest value `open` (or one shard in `open_sharded`) looks at: no browser
/// stores a longer cookie, so anything longer is rejected before any work.
const MAX_OPEN_VALUE_LEN: usize = MAX_SET_COOKIE_LEN;

/// Domain separation: the session secrets may one day key other things too.
const HKDF_SALT: &[u8] = b"portcullis cookie sealer v1";
const HKDF_INFO_AEAD: &[u8] = b"aes-256-gcm key";
const HKDF_INFO_KEY_ID: &[u8] = b"key id";

/// Seals and opens cookie values under the session secrets.
pub struct CookieSealer {
    /// The first seals; every one opens. Never empty.
    keys: Vec<SealingKey>,
}

struct SealingKey {
    id: [u8; KEY_ID_LEN],
    aead: RandomizedNonceKey,
}

/// A session too large for [`MAX_SHARDS`] cookies.
#[derive(Debug, thiserror::Error)]
#[error(
    "a session of {size} bytes does not fit in {MAX_SHARDS} cookies named {base}-N \
     (at most {limit} bytes fit); use `store: redis`"
)]
pub struct TooLarge {
    /// Plaintext bytes asked to seal.
    pub size: usize,
    /// Most plaintext bytes that fit under this base name.
    pub limit: usize,
    pub base: String,
}

impl CookieSealer {
    /// The first key seals; every key opens (rotation).
    ///
    /// With no keys (configurations where no rule authenticates) a random key
    /// is made up, so nothing sealed survives a restart and nothing from
    /// outside ever opens.
    pub fn new(keys: &[SessionKey]) -> Self {
        let mut sealing: Vec<SealingKey> = Vec::with_capacity(keys.len().max(1));
        for (i, key) in keys.iter().enumerate() {
            // A secret listed twice would only make every open try two keys.
            if !keys[..i].contains(key) {
                sealing.push(SealingKey::derive(&key.0));
            }
        }
        if sealing.is_empty() {
            let mut random = [0u8; 32];
            aws_lc_rs::rand::fill(&mut random)
                .expect("the system random source works, or nothing in TLS would either");
            sealing.push(SealingKey::derive(&random));
        }
        Self { keys: sealing }
    }

    /// One cookie value, sealed with the first key and bound to the cookie `name`.
    ///
    /// Meant for small values (the login nonce cookie): [`open`](Self::open) refuses
    /// values over 4096 characters, which is 3039 bytes of plaintext; larger
    /// values go through [`seal_sharded`](Self::seal_sharded).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let raw = self.seal_raw(SINGLE, name, plaintext);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether [`seal_cookie`](Self::seal_cookie) fits `plaintext_len` bytes
    /// in one cookie `name` with these attributes.
    pub fn fits_one_cookie(
        name: &str,
        plaintext_len: usize,
        max_age: Option<Duration>,
        secure: bool,
    ) -> bool {
        let without_value = set_cookie(name, "", max_age, secure).len();
        let value_len = encoded_len(plaintext_len.saturating_add(OVERHEAD));
        without_value.saturating_add(value_len) < MAX_SET_COOKIE_LEN
    }

    /// Seals `plaintext` as the one cookie `name` and writes its `Set-Cookie`
    /// header, or `None` when that header would reach 4096 bytes: browsers
    /// count name, value and attributes together and drop a longer cookie
    /// without a word.
    pub fn seal_cookie(
        &self,
        name: &str,
        plaintext: &[u8],
        max_age: Option<Duration>,
        secure: bool,
    ) -> Option<HeaderValue> {
        if !Self::fits_one_cookie(name, plaintext.len(), max_age, secure) {
            return None;
        }
        let header = set_cookie(name, &self.seal(name, plaintext), max_age, secure);
        debug_assert!(header.len() < MAX_SET_COOKIE_LEN);
        Some(header)
    }

    /// The plaintext of a value from [`seal`](Self::seal) under the same `name`;
    /// `None` for anything else (forged, truncated, other name, unknown key, bad base64, too long).
    pub fn open(&self, name: &str, value: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let value = value.as_ref();
        if !(MIN_ENCODED_LEN..=MAX_OPEN_VALUE_LEN).contains(&value.len()) {
            return None;
        }
        let mut buf = Vec::with_capacity(decoded_len(value.len()));
        URL_SAFE_NO_PAD.decode_vec(value, &mut buf).ok()?;
        self.open_raw(SINGLE, name, buf)
    }

    /// Seals once and splits the text over `{base}-0`, `{base}-1`, … (at most
    /// [`MAX_SHARDS`]) so that each `Set-Cookie` header [`set_cookie`](super::set_cookie)
    /// makes for it stays under 4096 bytes, whatever its `max_age`.
    ///
    /// Send the result with [`set_sharded_cookies`](super::set_sharded_cookies), which also
    /// clears the shard names not used, as [`open_sharded`](Self::open_sharded) insists.
    pub fn seal_sharded(
        &self,
        base: &str,
        plaintext: &[u8],
    ) -> Result<Vec<(String, String)>, TooLarge> {
        let per_shard = shard_text_len(base);
        let text_len = encoded_len(plaintext.len().saturating_add(OVERHEAD));
        let count = text_len.div_ceil(per_shard.max(1));
        if per_shard == 0 || count > MAX_SHARDS {
            return Err(TooLarge {
                size: plaintext.len(),
                limit: sharded_capacity(base),
                base: base.to_owned(),
            });
        }
        let count = u8::try_from(count).expect("count is at most MAX_SHARDS");
        let raw = self.seal_raw(count, base, plaintext);
        let text = URL_SAFE_NO_PAD.encode(raw);
        debug_assert_eq!(text.len(), text_len);
        Ok(text
            .as_bytes()
            .chunks(per_shard)
            .enumerate()
            .map(|(i, chunk)| {
                // Base64url is ASCII, so any byte boundary is a char boundary.
                let chunk = std::str::from_utf8(chunk).expect("base64url text is ASCII");
                (format!("{base}-{i}"), chunk.to_owned())
            })
            .collect())
    }

    /// Reassembles `{base}-0..` from the request's cookies and opens them.
    ///
    /// `None` when no shard is there, or the shards do not open as one value:
    /// reordered, one missing, one added past the last (up to `{base}-4`),
    /// mixed from two sessions, forged or too long.
    pub fn open_sharded(&self, base: &str, cookies: &RequestCookies<'_>) -> Option<Vec<u8>> {
        self.open_shards(&SealedShards::find(base, cookies)?)
    }

    /// Opens shards found by [`SealedShards::find`].
    pub fn open_shards(&self, shards: &SealedShards<'_>) -> Option<Vec<u8>> {
        let mut buf = Vec::with_capacity(decoded_len(shards.text_len()));
        for shard in shards.iter() {
            URL_SAFE_NO_PAD.decode_vec(shard, &mut buf).ok()?;
        }
        let count = u8::try_from(shards.count).expect("count is at most MAX_SHARDS");
        self.open_raw(count, shards.base, buf)
    }

    fn seal_raw(&self, count: u8, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut raw = Vec::with_capacity(plaintext.len() + OVERHEAD);
        raw.push(VERSION);
        raw.extend_from_slice(&key.id);
        raw.extend_from_slice(&[0; NONCE_LEN]);
        raw.extend_from_slice(plaintext);
        let (nonce, tag) = with_aad(count, &key.id, name, |aad| {
            key.aead
                .seal_in_place_separate_tag(Aad::from(aad), &mut raw[HEADER_LEN..])
        })
        .expect("AES-GCM sealing fails only past 64 GiB or without randomness");
        raw[1 + KEY_ID_LEN..HEADER_LEN].copy_from_slice(nonce.as_ref());
        raw.extend_from_slice(tag.as_ref());
        raw
    }

    /// Opens decoded bytes in place and returns the same buffer holding the plaintext.
    fn open_raw(&self, count: u8, name: &str, mut raw: Vec<u8>) -> Option<Vec<u8>> {
        if raw.len() < OVERHEAD || raw[0] != VERSION {
            return None;
        }
        let id: [u8; KEY_ID_LEN] = raw[1..1 + KEY_ID_LEN].try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = raw[1 + KEY_ID_LEN..HEADER_LEN].try_into().ok()?;
        let mut keys = self.keys.iter().filter(|k| k.id == id);
        let first = keys.next()?;
        let plain_len = if keys.clone().next().is_none() {
            try_open(first, count, name, nonce, &mut raw)?
        } else {
            // Two secrets sharing a 4-byte id is a 1-in-4-billion accident, but opening
            // in place may clobber the buffer on failure, so each try gets a fresh copy.
            let sealed = raw.clone();
            let mut found = None;
            for key in std::iter::once(first).chain(keys) {
                raw.clone_from(&sealed);
                found = try_open(key, count, name, nonce, &mut raw);
                if found.is_some() {
                    break;
                }
            }
            found?
        };
        // Move the plaintext to the front rather than allocate a second buffer.
        raw.copy_within(HEADER_LEN..HEADER_LEN + plain_len, 0);
        raw.truncate(plain_len);
        Some(raw)
    }
}

fn try_open(
    key: &SealingKey,
    count: u8,
    name: &str,
    nonce: [u8; NONCE_LEN],
    raw: &mut [u8],
) -> Option<usize> {
    with_aad(count, &key.id, name, |aad| {
        key.aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut raw[HEADER_LEN..],
            )
            .map(|plain| plain.len())
            .ok()
    })
}

impl fmt::Debug for CookieSealer {
    // Key ids are derived one-way and are on the wire anyway; the keys never show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        f.debug_struct("CookieSealer")
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

/// An HMAC-SHA256 key derived from a session secret for one purpose
/// (`salt`), apart from the cookie keys: the Redis index names, the
/// stickiness cookie.
pub fn mac_key(salt: &[u8], secret: &[u8]) -> aws_lc_rs::hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let okm = prk
        .expand(&[b"hmac-sha256 key"], aws_lc_rs::hmac::HMAC_SHA256)
        .expect("32 bytes is far below HKDF-SHA256's 8160-byte limit");
    aws_lc_rs::hmac::Key::from(okm)
}

impl SealingKey {
    fn derive(secret: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let mut aead_key = [0u8; 32];
        prk.expand(&[HKDF_INFO_AEAD], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut aead_key))
            .expect("32 bytes is far below HKDF-SHA256's 8160-byte limit");
        let mut id = [0u8; KEY_ID_LEN];
        prk.expand(&[HKDF_INFO_KEY_ID], OutputLen(KEY_ID_LEN))
            .and_then(|okm| okm.fill(&mut id))
            .expect("4 bytes is far below HKDF-SHA256's 8160-byte limit");
        let aead = RandomizedNonceKey::new(&AES_256_GCM, &aead_key)
            .expect("the key is exactly AES-256's 32 bytes");
        // Best effort: the derived key lives on only inside aws-lc.
        aead_key.fill(0);
        Self { id, aead }
    }
}

struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// Calls `f` with the associated data, built on the stack for the usual short names
/// so that opening does not allocate for it.
fn with_aad<R>(count: u8, id: &[u8; KEY_ID_LEN], name: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    const PREFIX: usize = 2 + KEY_ID_LEN;
    let fill = |buf: &mut [u8]| {
        buf[..2].copy_from_slice(&[VERSION, count]);
        buf[2..PREFIX].copy_from_slice(id);
        buf[PREFIX..].copy_from_slice(name.as_bytes());
    };
    let len = PREFIX + name.len();
    let mut stack = [0u8; 128];
    if len <= stack.len() {
        fill(&mut stack[..len]);
        f(&stack[..len])
    } else {
        let mut heap = vec![0u8; len];
        fill(&mut heap);
        f(&heap)
    }
}

/// The shard values of one sealed session as the request sent them, in
/// order, checked for shape (count, lengths) but not yet opened.
#[derive(Clone, Copy)]
pub struct SealedShards<'a> {
    /// The session cookie's base name; the shards are `{base}-0..`.
    base: &'a str,
    /// `values[..count]` are the shards in order, none empty; the rest is unused.
    values: [&'a [u8]; MAX_SHARDS],
    count: usize,
}

impl<'a> SealedShards<'a> {
    /// Finds `{base}-0..` in one pass over the cookies, comparing names
    /// without building them. `None` when no shard is there, one is missing,
    /// one is added past the last (up to `{base}-4`), or a length cannot be
    /// sealed text.
    pub fn find(base: &'a str, cookies: &RequestCookies<'a>) -> Option<Self> {
        // Slot MAX_SHARDS catches `{base}-4`, which we never write.
        let mut found: [Option<&[u8]>; MAX_SHARDS + 1] = [None; MAX_SHARDS + 1];
        for (name, value) in cookies.iter() {
            let Some(index) = shard_index(base, name) else {
                continue;
            };
            // First wins, as in `RequestCookies::get`.
            found[index].get_or_insert(value);
        }
        let count = found.iter().take_while(|s| s.is_some()).count();
        if count == 0 || count > MAX_SHARDS || found[count..].iter().any(Option::is_some) {
            return None;
        }
        let mut in_order: [&[u8]; MAX_SHARDS] = [&[]; MAX_SHARDS];
        for (slot, shard) in in_order.iter_mut().zip(&found[..count]) {
            *slot = (*shard)?;
        }
        Self::from_values(base, &in_order[..count])
    }

    /// The shards `{base}-0..` given in order, as a session store's ticket
    /// holds them. `None` for no shard, more than [`MAX_SHARDS`], or a length
    /// that cannot be sealed text.
    pub fn from_values(base: &'a str, shards: &[&'a [u8]]) -> Option<Self> {
        let count = shards.len();
        if count == 0 || count > MAX_SHARDS {
            return None;
        }
        let mut values: [&[u8]; MAX_SHARDS] = [&[]; MAX_SHARDS];
        let mut total = 0;
        for (i, (slot, &shard)) in values.iter_mut().zip(shards).enumerate() {
            // Only the last shard may end mid-quantum; others must decode to whole bytes.
            if shard.len() > MAX_OPEN_VALUE_LEN
                || shard.is_empty()
                || (i + 1 < count && shard.len() % 4 != 0)
            {
                return None;
            }
            total += shard.len();
            *slot = shard;
        }
        (total >= MIN_ENCODED_LEN).then_some(Self {
            base,
            values,
            count,
        })
    }

    /// The shard values, `{base}-0` first.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.values[..self.count].iter().copied()
    }

    /// Bytes of sealed text over all shards.
    pub fn text_len(&self) -> usize {
        self.iter().map(<[u8]>::len).sum()
    }

    /// The last 16 bytes of text (fewer if the last shard is shorter): they
    /// encode the AES-GCM tag, so they are
    /// evenly spread and a key for caches. Not a secret, and not a proof:
    /// a cache must still compare the whole text.
    pub fn tag_text(&self) -> u128 {
        let last = self.values[self.count - 1];
        let mut tail = [0u8; 16];
        let take = last.len().min(16);
        tail[16 - take..].copy_from_slice(&last[last.len() - take..]);
        u128::from_le_bytes(tail)
    }
}

/// `{base}-N` → `N` for `N` in `0..=MAX_SHARDS`.
fn shard_index(base: &str, name: &str) -> Option<usize> {
    let suffix = name.strip_prefix(base)?.strip_prefix('-')?;
    match suffix.as_bytes() {
        [d @ b'0'..=b'9'] if usize::from(d - b'0') <= MAX_SHARDS => Some(usize::from(d - b'0')),
        _ => None,
    }
}

/// Characters of sealed text per shard under `base`: what is left of a
/// `Set-Cookie` header after the name and the longest attributes, rounded down
/// to whole base64 quanta so that each shard decodes on its own.
fn shard_text_len(base: &str) -> usize {
    // `{base}-N=`
    let name_len = base.len() + 3;
    (MAX_SET_COOKIE_LEN - 1).saturating_sub(name_len + LONGEST_ATTRIBUTES.len()) / 4 * 4
}

/// Most plaintext bytes that [`CookieSealer::seal_sharded`] fits under `base`.
pub fn sharded_capacity(base: &str) -> usize {
    // Whole quanta: 4 characters carry 3 bytes.
    (shard_text_len(base) * MAX_SHARDS / 4 * 3).saturating_sub(OVERHEAD)
}

/// Unpadded base64 length of `n` bytes.
const fn encoded_len(n: usize) -> usize {
    n.saturating_mul(4).div_ceil(3)
}

/// Room the base64 decoder asks for to decode `n` characters: reserving exactly
/// this keeps decoding to the one allocation (it grows the buffer otherwise).
fn decoded_len(n: usize) -> usize {
    n.div_ceil(4) * 3
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::cookies::{set_cookie, set_sharded_cookies};
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue};
    use std::time::{Duration, Instant};

    const SESSION: &str = "AWSELBAuthSessionCookie";

    fn key(b: u8) -> SessionKey {
        SessionKey([b; 32])
    }

    fn sealer() -> CookieSealer {
        CookieSealer::new(&[key(1)])
    }

    /// A tiny xorshift so the fuzz-ish tests are repeatable without a crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).expect("below n fits usize")
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn cookie_map(pairs: &[(String, String)]) -> HeaderMap {
        let line = pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut map = HeaderMap::new();
        map.append(
            COOKIE,
            HeaderValue::from_str(&line).expect("cookie text is valid"),
        );
        map
    }

    fn open_pairs(s: &CookieSealer, pairs: &[(String, String)]) -> Option<Vec<u8>> {
        let map = cookie_map(pairs);
        s.open_sharded(SESSION, &RequestCookies::parse(&map))
    }

    #[test]
    fn round_trip() {
        let s = sealer();
        for len in [0, 1, 2, 3, 100, 3039] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = s.seal("AWSALBAuthNonce", &plain);
            let opened = s.open("AWSALBAuthNonce", &sealed).expect("opens");
            assert!(opened == plain, "{len} bytes");
            // One allocation: the decode buffer is the plaintext, never regrown.
            assert_eq!(opened.capacity(), decoded_len(sealed.len()));
        }
        // Past 4096 characters a value is no cookie a browser keeps, so `open` refuses it.
        let sealed = s.seal("n", &[0; 3040]);
        assert!(sealed.len() > MAX_OPEN_VALUE_LEN);
        assert_eq!(s.open("n", &sealed), None);
    }

    #[test]
    fn sealed_value_is_cookie_safe_and_fresh_each_time() {
        let s = sealer();
        let a = s.seal("n", b"same");
        let b = s.seal("n", b"same");
        assert_ne!(a, b, "nonces must differ");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(a.len(), encoded_len(OVERHEAD + 4));
    }

    #[test]
    fn wire_format_has_version_and_key_id() {
        let s = sealer();
        let raw = URL_SAFE_NO_PAD
            .decode(s.seal("n", b"x"))
            .expect("sealed text is base64url");
        assert_eq!(raw[0], VERSION);
        assert_eq!(raw[1..5], SealingKey::derive(&[1; 32]).id);
        assert_eq!(raw.len(), OVERHEAD + 1);
    }

    #[test]
    fn rotation() {
        let old = CookieSealer::new(&[key(1)]);
        let sealed = old.seal("n", b"hello");
        let rotated = CookieSealer::new(&[key(2), key(1)]);
        assert_eq!(rotated.open("n", &sealed).as_deref(), Some(&b"hello"[..]));
        // New values are sealed with the new first key.
        let fresh = rotated.seal("n", b"new");
        assert_eq!(
            CookieSealer::new(&[key(2)]).open("n", &fresh).as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(old.open("n", &fresh), None);
        // Once the old key is gone, its values no longer open.
        let retired = CookieSealer::new(&[key(2), key(3)]);
        assert_eq!(retired.open("n", &sealed), None);
    }

    #[test]
    fn rotation_for_sharded_sessions() {
        let old = CookieSealer::new(&[key(1)]);
        let shards = old.seal_sharded(SESSION, &[7; 5000]).expect("fits");
        let rotated = CookieSealer::new(&[key(2), key(1)]);
        assert_eq!(open_pairs(&rotated, &shards), Some(vec![7; 5000]));
        assert_eq!(open_pairs(&CookieSealer::new(&[key(2)]), &shards), None);
    }

    #[test]
    fn colliding_key_ids_still_open() {
        // Force two keys with one id: the second must still be tried on a fresh copy.
        let mut s = CookieSealer::new(&[key(1), key(2)]);
        s.keys[0].id = s.keys[1].id;
        let sealed = CookieSealer {
            keys: vec![SealingKey {
                id: s.keys[1].id,
                aead: SealingKey::derive(&[2; 32]).aead,
            }],
        }
        .seal("n", b"second");
        assert_eq!(s.open("n", &sealed).as_deref(), Some(&b"second"[..]));
    }

    #[test]
    fn a_secret_listed_twice_is_one_key() {
        let s = CookieSealer::new(&[key(1), key(2), key(1)]);
        assert_eq!(s.keys.len(), 2);
        let sealed = CookieSealer::new(&[key(1)]).seal("n", b"x");
        assert_eq!(s.open("n", &sealed).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn empty_key_list_makes_up_a_key() {
        let s = CookieSealer::new(&[]);
        let sealed = s.seal("n", b"x");
        assert_eq!(s.open("n", &sealed).as_deref(), Some(&b"x"[..]));
        assert_eq!(CookieSealer::new(&[]).open("n", &sealed), None);
    }

    #[test]
    fn wrong_cookie_name_does_not_open() {
        let s = sealer();
        let sealed = s.seal("AWSALBAuthNonce", b"state");
        assert_eq!(s.open("AWSELBAuthSessionCookie", &sealed), None);
        assert_eq!(s.open("AWSALBAuthNonc", &sealed), None);
        // Same length, so only the name's bytes can tell them apart.
        assert_eq!(s.open("AWSALBAuthNoncf", &sealed), None);
        assert_eq!(s.open("awsalbauthnonce", &sealed), None);
        assert_eq!(s.open("", &sealed), None);
    }

    #[test]
    fn long_names_use_the_heap_aad_path() {
        let s = sealer();
        let name = "n".repeat(500);
        let sealed = s.seal(&name, b"x");
        assert_eq!(s.open(&name, &sealed).as_deref(), Some(&b"x"[..]));
        assert_eq!(s.open(&name[1..], &sealed), None);
    }

    #[test]
    fn single_and_sharded_values_do_not_cross() {
        let s = sealer();
        // A single cookie named like shard 0 must not open as a one-shard session…
        let single = s.seal(&format!("{SESSION}-0"), b"x");
        assert_eq!(open_pairs(&s, &[(format!("{SESSION}-0"), single)]), None);
        // …and a one-shard session must not open as a single cookie.
        let shards = s.seal_sharded(SESSION, b"x").expect("fits");
        assert_eq!(shards.len(), 1);
        assert_eq!(s.open(&shards[0].0, &shards[0].1), None);
        assert_eq!(s.open(SESSION, &shards[0].1), None);
    }

    #[test]
    fn every_single_byte_flip_fails() {
        let s = sealer();
        let sealed = s.seal("n", b"some session bytes");
        let raw = URL_SAFE_NO_PAD
            .decode(&sealed)
            .expect("sealed text is base64url");
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(
                    s.open("n", URL_SAFE_NO_PAD.encode(&bad)),
                    None,
                    "byte {i} bit {bit}"
                );
            }
        }
        // And in the text itself: every character replaced by every other alphabet character
        // (this also catches non-canonical trailing bits in the last character).
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in 0..sealed.len() {
            for &c in alphabet.iter().chain(b"=+/ .") {
                if c == sealed.as_bytes()[i] {
                    continue;
                }
                let mut bad = sealed.clone().into_bytes();
                bad[i] = c;
                let bad = String::from_utf8(bad).expect("ASCII");
                assert_eq!(s.open("n", &bad), None, "char {i} -> {}", c as char);
            }
        }
    }

    #[test]
    fn truncation_at_every_length_fails() {
        let s = sealer();
        let sealed = s.seal("n", &[42; 300]);
        for len in 0..sealed.len() {
            assert_eq!(s.open("n", &sealed[..len]), None, "length {len}");
        }
        let raw = URL_SAFE_NO_PAD
            .decode(&sealed)
            .expect("sealed text is base64url");
        for len in 0..raw.len() {
            assert_eq!(s.open("n", URL_SAFE_NO_PAD.encode(&raw[..len])), None);
        }
        // Appending is no better.
        assert_eq!(s.open("n", format!("{sealed}A")), None);
        assert_eq!(s.open("n", format!("{sealed}AAAA")), None);
    }

    #[test]
    fn empty_garbage_and_huge_values_fail_quickly() {
        let s = sealer();
        let huge = "A".repeat(1 << 20);
        let started = Instant::now();
        for _ in 0..1000 {
            assert_eq!(s.open("n", &huge), None);
        }
        // The length cap comes before decoding: 1000 looks at 1 MB must be near free.
        assert!(started.elapsed() < Duration::from_secs(1));
        for garbage in [
            "",
            "A",
            "====",
            "not base64!",
            "\u{1F36A}",
            &"A".repeat(44),
            &"_".repeat(4096),
        ] {
            assert_eq!(s.open("n", garbage), None, "{garbage:?}");
        }
        let map = cookie_map(&[(format!("{SESSION}-0"), "A".repeat(5000))]);
        assert_eq!(s.open_sharded(SESSION, &RequestCookies::parse(&map)), None);
    }

    #[test]
    fn fuzz_random_values_never_open_or_panic() {
        let s = sealer();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let valid = s.seal("n", b"payload");
        for _ in 0..20_000 {
            let candidate = match rng.below(3) {
                // Random bytes, encoded.
                0 => {
                    let n = rng.below(200);
                    URL_SAFE_NO_PAD.encode(rng.bytes(n))
                }
                // Random bytes behind a correct version and key id.
                1 => {
                    let mut raw = URL_SAFE_NO_PAD.decode(&valid).expect("base64url");
                    let n = raw.len();
                    raw.truncate(5);
                    let extra = n - 5 + rng.below(8);
                    raw.extend(rng.bytes(extra));
                    URL_SAFE_NO_PAD.encode(raw)
                }
                // The valid value with a few random characters changed.
                _ => {
                    let mut text = valid.clone().into_bytes();
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(text.len());
                        text[i] = b"AQgw-_09azAZ"[rng.below(12)];
                    }
                    if text == valid.as_bytes() {
                        continue;
                    }
                    String::from_utf8(text).expect("ASCII")
                }
            };
            assert_eq!(s.open("n", &candidate), None, "{candidate}");
        }
    }

    fn assert_headers_fit(shards: &[(String, String)]) {
        for (name, value) in shards {
            for max_age in [
                None,
                Some(Duration::from_secs(604_800)),
                Some(Duration::MAX),
            ] {
                for secure in [true, false] {
                    let header = set_cookie(name, value, max_age, secure);
                    assert!(header.len() < 4096, "{name}: {} bytes", header.len());
                }
            }
        }
    }

    #[test]
    fn a_single_cookie_is_sealed_only_when_its_header_fits() {
        let s = sealer();
        let max_age = Some(Duration::from_secs(900));
        let fits = |len: usize| s.seal_cookie("N", &vec![b'x'; len], max_age, true);
        let largest = (0..4096).rev().find(|&len| fits(len).is_some()).unwrap();
        // Base64 grows in steps of 4 characters per 3 bytes, so the longest
        // header lands within a step of the limit, never on it.
        let header = fits(largest).unwrap();
        assert!((4092..4096).contains(&header.len()), "{}", header.len());
        assert!(fits(largest + 1).is_none());
        let value = header.to_str().unwrap()["N=".len()..]
            .split(';')
            .next()
            .unwrap();
        assert_eq!(s.open("N", value).unwrap().len(), largest);
        for secure in [true, false] {
            for max_age in [None, Some(Duration::ZERO), Some(Duration::MAX)] {
                for len in [0, 1000, 2000, 2990, 3000, 3100] {
                    if let Some(header) = s.seal_cookie("N", &vec![b'x'; len], max_age, secure) {
                        assert!(header.len() < 4096, "{len} {max_age:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn sharding_round_trips_and_fits() {
        let s = sealer();
        let capacity = sharded_capacity(SESSION);
        for (len, shards_expected) in [(1024, 1), (5 * 1024, 2), (capacity, 4)] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let shards = s.seal_sharded(SESSION, &plain).expect("fits");
            assert_eq!(shards.len(), shards_expected, "{len} bytes");
            for (i, (name, _)) in shards.iter().enumerate() {
                assert_eq!(name, &format!("{SESSION}-{i}"));
            }
            assert_headers_fit(&shards);
            let opened = open_pairs(&s, &shards).expect("opens");
            assert!(opened == plain, "{len} bytes");
            let text_len: usize = shards.iter().map(|(_, v)| v.len()).sum();
            assert_eq!(opened.capacity(), decoded_len(text_len), "regrown");
            // Cookie order in the request does not matter, only the names.
            let mut reversed = shards.clone();
            reversed.reverse();
            assert_eq!(open_pairs(&s, &reversed), Some(plain));
        }
    }

    #[test]
    fn shard_capacity_is_exact() {
        let s = sealer();
        let capacity = sharded_capacity(SESSION);
        // Measured, not assumed: this is the figure the 500 page may quote.
        assert_eq!(capacity, 11_955);
        assert!(s.seal_sharded(SESSION, &vec![0; capacity]).is_ok());
        let err = s
            .seal_sharded(SESSION, &vec![0; capacity + 1])
            .expect_err("one byte past capacity");
        assert_eq!((err.size, err.limit), (capacity + 1, capacity));
        // Any base name: the capacity still fills exactly four headers under 4096 bytes.
        for base in ["s", "a-much-longer-session-cookie-name-for-app-two"] {
            let cap = sharded_capacity(base);
            let shards = s.seal_sharded(base, &vec![1; cap]).expect("fits");
            assert_eq!(shards.len(), MAX_SHARDS);
            assert_headers_fit(&shards);
            assert!(s.seal_sharded(base, &vec![1; cap + 1]).is_err());
        }
    }

    #[test]
    fn twelve_and_fifteen_kib_are_too_large() {
        // Base64 in four cookies of < 4096 bytes carries under 12 000 bytes.
        let s = sealer();
        for len in [12 * 1024, 15 * 1024, 1 << 20] {
            let err = s
                .seal_sharded(SESSION, &vec![0; len])
                .expect_err("too large");
            assert_eq!(err.size, len);
            assert_eq!(err.limit, sharded_capacity(SESSION));
            let message = err.to_string();
            assert!(
                message.contains(&len.to_string()) && message.contains("11955"),
                "{message}"
            );
        }
        // A base name so long that no shard fits.
        let err = s
            .seal_sharded(&"n".repeat(5000), b"x")
            .expect_err("too large");
        assert_eq!(err.limit, 0);
    }

    #[test]
    fn sharded_tampering_fails() {
        let s = sealer();
        let plain = vec![9u8; 10_000];
        let shards = s.seal_sharded(SESSION, &plain).expect("fits");
        assert_eq!(shards.len(), 4);
        assert_eq!(open_pairs(&s, &shards), Some(plain));

        // Values swapped between two names.
        let mut swapped = shards.clone();
        let v0 = swapped[0].1.clone();
        swapped[0].1 = swapped[1].1.clone();
        swapped[1].1 = v0;
        assert_eq!(open_pairs(&s, &swapped), None);

        // A shard missing: first, middle, last.
        for missing in 0..4 {
            let mut less = shards.clone();
            less.remove(missing);
            assert_eq!(open_pairs(&s, &less), None, "without shard {missing}");
        }

        // An extra shard past the last.
        let mut extra = shards.clone();
        extra.push((format!("{SESSION}-4"), shards[3].1.clone()));
        assert_eq!(open_pairs(&s, &extra), None);

        // The same text cut into more shards: the shard count is bound too.
        // (Cutting it into as many shards at other places is the same session
        // and opens; nothing is gained by it.)
        let one = s.seal_sharded(SESSION, &[5; 2000]).expect("fits");
        assert_eq!(one.len(), 1);
        let half = one[0].1.len() / 8 * 4;
        let split = vec![
            (format!("{SESSION}-0"), one[0].1[..half].to_owned()),
            (format!("{SESSION}-1"), one[0].1[half..].to_owned()),
        ];
        assert_eq!(open_pairs(&s, &split), None, "one shard cut in two");

        // Every shard's last character flipped.
        for i in 0..4 {
            let mut bad = shards.clone();
            let last = bad[i].1.pop().expect("non-empty");
            bad[i].1.push(if last == 'A' { 'B' } else { 'A' });
            assert_eq!(open_pairs(&s, &bad), None);
        }

        // Under another base name.
        let renamed: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (format!("Other-{i}"), v.clone()))
            .collect();
        let map = cookie_map(&renamed);
        assert_eq!(s.open_sharded("Other", &RequestCookies::parse(&map)), None);
        // Under a base name of the same length (another app's cookie on the same host).
        let other = "AWSELBAuthSessionCookiX";
        assert_eq!(other.len(), SESSION.len());
        let renamed: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (format!("{other}-{i}"), v.clone()))
            .collect();
        let map = cookie_map(&renamed);
        assert_eq!(s.open_sharded(other, &RequestCookies::parse(&map)), None);
    }

    #[test]
    fn a_stray_shard_past_the_end_fails_and_clearing_fixes_it() {
        let s = sealer();
        let shards = s.seal_sharded(SESSION, &[1; 100]).expect("fits");
        assert_eq!(shards.len(), 1);
        let mut stale = shards.clone();
        stale.push((format!("{SESSION}-3"), "AAAA".to_owned()));
        assert_eq!(open_pairs(&s, &stale), None);
        // set_sharded_cookies clears -1..-3 so the browser drops such leftovers.
        let headers: Vec<_> = set_sharded_cookies(SESSION, &shards, None, true).collect();
        assert_eq!(headers.len(), MAX_SHARDS);
        assert!(
            headers[3]
                .to_str()
                .expect("ascii")
                .starts_with(&format!("{SESSION}-3=; Max-Age=0"))
        );
    }

    #[test]
    fn shards_of_two_sessions_do_not_mix() {
        let s = sealer();
        let a = s.seal_sharded(SESSION, &[1; 8000]).expect("fits");
        let b = s.seal_sharded(SESSION, &[1; 8000]).expect("fits");
        assert_eq!(a.len(), 3);
        for i in 0..3 {
            let mut mixed = a.clone();
            mixed[i] = b[i].clone();
            assert_eq!(open_pairs(&s, &mixed), None, "shard {i} from b");
        }
        // Same size, same plaintext, still no mixing: the nonce differs.
        assert_eq!(open_pairs(&s, &a), Some(vec![1; 8000]));
    }

    #[test]
    fn sharded_with_nothing_or_junk_fails() {
        let s = sealer();
        assert_eq!(open_pairs(&s, &[]), None);
        assert_eq!(open_pairs(&s, &[("other".into(), "x".into())]), None);
        let mut rng = XorShift(42);
        for _ in 0..2000 {
            let n = 1 + rng.below(4);
            let pairs: Vec<_> = (0..n)
                .map(|i| {
                    let len = rng.below(300);
                    (
                        format!("{SESSION}-{i}"),
                        URL_SAFE_NO_PAD.encode(rng.bytes(len)),
                    )
                })
                .collect();
            assert_eq!(open_pairs(&s, &pairs), None);
        }
    }

    #[test]
    fn duplicate_shard_names_take_the_first() {
        let s = sealer();
        let shards = s.seal_sharded(SESSION, b"real").expect("fits");
        let decoy = s.seal_sharded(SESSION, b"decoy").expect("fits");
        let pairs = vec![shards[0].clone(), decoy[0].clone()];
        assert_eq!(open_pairs(&s, &pairs).as_deref(), Some(&b"real"[..]));
    }

    #[test]
    fn shard_index_parsing() {
        assert_eq!(shard_index("S", "S-0"), Some(0));
        assert_eq!(shard_index("S", "S-4"), Some(4));
        assert_eq!(shard_index("S", "S-5"), None);
        assert_eq!(shard_index("S", "S-00"), None);
        assert_eq!(shard_index("S", "S0"), None);
        assert_eq!(shard_index("S", "T-0"), None);
        assert_eq!(shard_index("S", "S--0"), None);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let secret = SessionKey([0xAB; 32]);
        let s = CookieSealer::new(&[secret.clone(), key(1)]);
        let shown = format!("{s:?}");
        assert!(shown.starts_with("CookieSealer"), "{shown}");
        let lower = shown.to_ascii_lowercase();
        assert!(!lower.contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(!lower.contains("key:"), "{shown}");
        // Nor the derived AEAD key, which we can't see but must not be a field.
        assert!(!lower.contains("aead"), "{shown}");
    }

    #[test]
    fn sealer_is_shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CookieSealer>();
    }
}
