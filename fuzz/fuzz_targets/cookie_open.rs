//! The sealed cookie codec: arbitrary bytes never open (nor panic), what is
//! sealed opens to itself under its own name only, and any change to the
//! sealed text, another name or another key refuses it.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::internals::{CookieSealer, RequestCookies, SealedShards};
use portcullis::config::SessionKey;

const KEY: SessionKey = SessionKey([7; 32]);
const OTHER_KEY: SessionKey = SessionKey([8; 32]);

/// Derived once: key derivation is not what is being fuzzed.
static SEALER: LazyLock<CookieSealer> = LazyLock::new(|| CookieSealer::new(&[KEY]));
/// Rotation: a new key seals, the old one still opens.
static ROTATED: LazyLock<CookieSealer> = LazyLock::new(|| CookieSealer::new(&[OTHER_KEY, KEY]));
static STRANGER: LazyLock<CookieSealer> = LazyLock::new(|| CookieSealer::new(&[OTHER_KEY]));

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    name: &'a str,
    other_name: &'a str,
    plaintext: &'a [u8],
    /// Where to change the sealed text, and how.
    tamper_at: u16,
    tamper_xor: u8,
    /// Which two shards to swap.
    swap: (u8, u8),
    /// A forged cookie value, read as the request would send it.
    forged: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let Input {
        name,
        other_name,
        plaintext,
        tamper_at,
        tamper_xor,
        swap,
        forged,
    } = input;

    // Forged input never opens, under any name, as one cookie or as shards.
    assert_eq!(SEALER.open(name, forged), None);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(forged) {
        headers.append(COOKIE, value);
        let cookies = RequestCookies::parse(&headers);
        for (cookie, value) in cookies.iter() {
            assert_eq!(SEALER.open(cookie, value), None);
        }
        if let Some(shards) = SealedShards::find(name, &cookies) {
            assert!(shards.text_len() > 0);
            let _ = shards.tag_text();
            assert_eq!(SEALER.open_shards(&shards), None);
        }
    }

    // One cookie: round trip, bound to its name and key.
    let sealed = SEALER.seal(name, plaintext);
    let opened = SEALER.open(name, &sealed);
    if sealed.len() <= 4096 {
        assert_eq!(opened.as_deref(), Some(plaintext));
        assert_eq!(ROTATED.open(name, &sealed).as_deref(), Some(plaintext));
        assert_eq!(STRANGER.open(name, &sealed), None);
        if other_name != name {
            assert_eq!(SEALER.open(other_name, &sealed), None);
        }
        let mut tampered = sealed.clone().into_bytes();
        let at = usize::from(tamper_at) % tampered.len();
        if tamper_xor != 0 {
            tampered[at] ^= tamper_xor;
            assert_eq!(SEALER.open(name, &tampered), None, "changed at {at}");
        }
        tampered = sealed.clone().into_bytes();
        tampered.truncate(at);
        assert_eq!(SEALER.open(name, &tampered), None, "cut at {at}");
    } else {
        // Longer than any browser keeps: refused before any work.
        assert_eq!(opened, None);
    }
    let resealed = ROTATED.seal(name, plaintext);
    if resealed.len() <= 4096 {
        assert_eq!(
            SEALER.open(name, &resealed),
            None,
            "sealed with the new key"
        );
    }

    // Sharded: the request's cookies reassemble it; reordered shards do not.
    if !portcullis::internals::is_valid_cookie_name(name) {
        return;
    }
    let Ok(shards) = SEALER.seal_sharded(name, plaintext) else {
        return;
    };
    assert!((1..=4).contains(&shards.len()));
    let header = |shards: &[(String, String)]| {
        let text: Vec<String> = shards
            .iter()
            .map(|(cookie, value)| format!("{cookie}={value}"))
            .collect();
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::try_from(text.join("; ")).expect("cookie names and base64url are valid"),
        );
        headers
    };
    let headers = header(&shards);
    let cookies = RequestCookies::parse(&headers);
    assert_eq!(
        SEALER.open_sharded(name, &cookies).as_deref(),
        Some(plaintext)
    );
    if other_name != name {
        assert_eq!(SEALER.open_sharded(other_name, &cookies), None);
    }
    let (i, j) = (
        usize::from(swap.0) % shards.len(),
        usize::from(swap.1) % shards.len(),
    );
    if shards[i].1 != shards[j].1 {
        let mut swapped = shards.clone();
        let (first, second) = (swapped[i].1.clone(), swapped[j].1.clone());
        swapped[i].1 = second;
        swapped[j].1 = first;
        let headers = header(&swapped);
        let cookies = RequestCookies::parse(&headers);
        assert_eq!(SEALER.open_sharded(name, &cookies), None);
    }
    // One shard fewer (the last dropped) never opens.
    if shards.len() > 1 {
        let headers = header(&shards[..shards.len() - 1]);
        let cookies = RequestCookies::parse(&headers);
        assert_eq!(SEALER.open_sharded(name, &cookies), None);
    }
});
