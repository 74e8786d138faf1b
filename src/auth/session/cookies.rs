//! Reading the request's `Cookie` headers with bounded, zero-copy work, writing
//! `Set-Cookie` headers, and stripping the proxy's own cookies before forwarding.

use std::time::Duration;

use http::HeaderMap;
use http::HeaderValue;
use http::header::COOKIE;

/// At most this many cookies are looked at per request; the rest are ignored.
pub const MAX_REQUEST_COOKIES: usize = 64;
/// At most this many bytes of `Cookie` header values are looked at per request; the rest are ignored.
pub const MAX_REQUEST_COOKIE_BYTES: usize = 32 * 1024;
/// A session is split into at most this many cookies (`{base}-0` .. `{base}-3`).
pub const MAX_SHARDS: usize = 4;

/// Attributes `set_cookie` adds, at their longest (a `Max-Age` of `u64::MAX` seconds):
/// sharding budgets for this so that any `max_age` keeps every header under 4096 bytes.
pub(crate) const LONGEST_ATTRIBUTES: &str =
    "; Max-Age=18446744073709551615; Path=/; Secure; HttpOnly; SameSite=Lax";

/// The cookies of one request, read lazily from every `Cookie` header.
///
/// Nothing is parsed or copied up front: each lookup walks the headers again,
/// which for the handful of lookups a request makes is cheaper than building a
/// table. Every walk stops after [`MAX_REQUEST_COOKIES`] cookies or
/// [`MAX_REQUEST_COOKIE_BYTES`] bytes, so a hostile client cannot make it
/// expensive; what lies beyond is ignored, never an error.
#[derive(Clone, Copy)]
pub struct RequestCookies<'a> {
    headers: &'a HeaderMap,
}

impl<'a> RequestCookies<'a> {
    pub fn parse(headers: &'a HeaderMap) -> Self {
        Self { headers }
    }

    /// The value of the first cookie called `name`, as sent (no unquoting).
    ///
    /// First wins because browsers send the cookie with the longest `Path` first.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every `(name, value)` pair within the bounds, in the order sent.
    /// Pairs without `=`, with an empty name, or a name that is not UTF-8 are
    /// skipped. Values are bytes: the proxy's own are base64url, and checking
    /// every value's UTF-8 on every request cost 4 % of a 16 KiB session's
    /// instructions.
    pub fn iter(&self) -> CookieIter<'a> {
        CookieIter {
            values: self.headers.get_all(COOKIE).into_iter(),
            rest: &[],
            rest_truncated: false,
            budget: MAX_REQUEST_COOKIE_BYTES,
            yielded: 0,
        }
    }
}

impl std::fmt::Debug for RequestCookies<'_> {
    // Cookie values are credentials: show names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|(n, _)| n)).finish()
    }
}

/// Iterator behind [`RequestCookies::iter`].
pub struct CookieIter<'a> {
    values: http::header::ValueIter<'a, HeaderValue>,
    /// Unread part of the current header value, already cut to the byte budget.
    rest: &'a [u8],
    /// Whether `rest` was cut short by the budget, so that its last piece is partial.
    rest_truncated: bool,
    /// Header bytes still allowed to be read.
    budget: usize,
    yielded: usize,
}

impl<'a> Iterator for CookieIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.yielded >= MAX_REQUEST_COOKIES {
                return None;
            }
            if self.rest.is_empty() {
                if self.budget == 0 {
                    return None;
                }
                let value = self.values.next()?.as_bytes();
                let take = value.len().min(self.budget);
                self.budget -= take;
                self.rest = &value[..take];
                self.rest_truncated = take < value.len();
                continue;
            }
            let piece = match memchr::memchr(b';', self.rest) {
                Some(i) => {
                    let piece = &self.rest[..i];
                    self.rest = &self.rest[i + 1..];
                    piece
                }
                None => {
                    let piece = self.rest;
                    self.rest = &[];
                    // A cookie cut by the budget would be read with a wrong value: drop it.
                    if self.rest_truncated {
                        continue;
                    }
                    piece
                }
            };
            if let Some(pair) = split_pair(piece) {
                self.yielded += 1;
                return Some(pair);
            }
        }
    }
}

/// The `;`-separated pieces of a `Cookie` header value. memchr finds the
/// separators many bytes at a time: a session cookie is kilobytes long and is
/// walked on every request.
fn pieces(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `name=value` with optional whitespace around each, as RFC 6265 §5.2 reads it.
fn split_pair(piece: &[u8]) -> Option<(&str, &[u8])> {
    let eq = memchr::memchr(b'=', piece)?;
    let name = std::str::from_utf8(trim_ows(&piece[..eq])).ok()?;
    if name.is_empty() {
        return None;
    }
    Some((name, trim_ows(&piece[eq + 1..])))
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Whether `name` is an RFC 6265 cookie name (an RFC 9110 token), so that
/// [`set_cookie`] produces a header every browser reads the same way.
/// Configuration should check `session_cookie_name` with this.
pub fn is_valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `name=value; Path=/; Secure; HttpOnly; SameSite=Lax` (+ `; Max-Age=N` when given).
///
/// `secure` is false only for plain-HTTP listeners. `name` must pass
/// [`is_valid_cookie_name`] and `value` must be cookie-safe (sealed values
/// are base64url). Otherwise an empty `Set-Cookie`, which sets nothing, is
/// returned and an error logged, rather than panicking mid-request or setting
/// a cookie other than the one meant.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> HeaderValue {
    use std::fmt::Write as _;

    if !is_valid_cookie_name(name) {
        // A `;` or `=` in the name would set some other cookie than the one meant.
        tracing::error!(cookie = name, "not a valid cookie name; nothing set");
        return HeaderValue::from_static("");
    }
    let mut header = String::with_capacity(name.len() + 1 + value.len() + LONGEST_ATTRIBUTES.len());
    header.push_str(name);
    header.push('=');
    header.push_str(value);
    if let Some(age) = max_age {
        // Round up: a lifetime of 0.5 s must not become `Max-Age=0`, which deletes.
        let secs = age
            .as_secs()
            .saturating_add(u64::from(age.subsec_nanos() > 0));
        // Writing to a String cannot fail.
        let _ = write!(header, "; Max-Age={secs}");
    }
    header.push_str("; Path=/");
    if secure {
        header.push_str("; Secure");
    }
    header.push_str("; HttpOnly; SameSite=Lax");
    HeaderValue::try_from(header).unwrap_or_else(|_| {
        tracing::error!(
            cookie = name,
            "cookie name or value cannot be put in a header"
        );
        HeaderValue::from_static("")
    })
}

/// Clears a cookie: empty value, `Max-Age=0; Path=/` plus the attributes [`set_cookie`] adds.
pub fn clear_cookie(name: &str, secure: bool) -> HeaderValue {
    set_cookie(name, "", Some(Duration::ZERO), secure)
}

/// Names of every shard a base name may use (`{base}-0` .. `{base}-3`), for clearing.
pub fn shard_names(base: &str) -> impl Iterator<Item = String> {
    (0..MAX_SHARDS).map(move |i| format!("{base}-{i}"))
}

/// Whether `name` is `{base}-` followed by digits: a shard of the session `base`,
/// for [`strip_request_cookies`]. Wider than the shards ever written (`-0`..`-3`)
/// so that nothing a lenient reader might take for a shard reaches the upstream.
pub fn is_shard_name(base: &str, name: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The `Set-Cookie` headers that store `shards` (from `CookieSealer::seal_sharded`) and clear
/// the shard names it did not use.
///
/// Clearing matters: `open_sharded` rejects a session when a shard past the
/// last one is present, so a leftover `-3` from an earlier, larger session
/// would otherwise lock the user out.
pub fn set_sharded_cookies<'s>(
    base: &'s str,
    shards: &'s [(String, String)],
    max_age: Option<Duration>,
    secure: bool,
) -> impl Iterator<Item = HeaderValue> + 's {
    let set = shards
        .iter()
        .map(move |(name, value)| set_cookie(name, value, max_age, secure));
    let clear = shard_names(base)
        .skip(shards.len())
        .map(move |name| clear_cookie(&name, secure));
    set.chain(clear)
}

/// Removes from the request's `Cookie` header(s) every cookie for which
/// `is_own(name)` is true; drops a header when nothing is left in it, and
/// keeps other cookies byte-for-byte, in order, joined by `"; "`.
///
/// Unlike [`RequestCookies`] this reads every cookie, without a bound: a client
/// that pads its header past the bound must not slip the proxy's cookies to
/// the upstream. The work stays linear in the header size, which the HTTP
/// server already limits.
pub fn strip_request_cookies(headers: &mut HeaderMap, is_own: impl Fn(&str) -> bool) {
    let is_own_piece = |piece: &[u8]| -> bool {
        let piece = trim_ows(piece);
        // Without `=`, some parsers read the whole piece as the name: judge it as one.
        let name = match memchr::memchr(b'=', piece) {
            Some(eq) => trim_ows(&piece[..eq]),
            None => piece,
        };
        // Our names are ASCII, so a name that is not UTF-8 is not ours.
        std::str::from_utf8(name).is_ok_and(&is_own)
    };
    let touched = headers
        .get_all(COOKIE)
        .iter()
        .any(|v| pieces(v.as_bytes()).any(is_own_piece));
    if !touched {
        return;
    }
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    headers.remove(COOKIE);
    for value in values {
        // Allocated only when another cookie is kept: often only ours are sent.
        let mut kept = Vec::new();
        for piece in pieces(value.as_bytes()) {
            let piece = trim_ows(piece);
            if piece.is_empty() || is_own_piece(piece) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(piece);
        }
        if kept.is_empty() {
            continue;
        }
        // Pieces of a valid header value joined by "; " are valid; if that ever failed,
        // dropping the header is the safe side.
        if let Ok(value) = HeaderValue::from_bytes(&kept) {
            headers.append(COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                COOKIE,
                HeaderValue::from_str(v).expect("test header is valid"),
            );
        }
        map
    }

    #[test]
    fn get_reads_every_cookie_header_and_trims() {
        let map = headers(&["a=1; b=2", "c = 3 ;;  d=4=5;e", "f=\"q\""]);
        let cookies = RequestCookies::parse(&map);
        assert_eq!(cookies.get("a"), Some(&b"1"[..]));
        assert_eq!(cookies.get("b"), Some(&b"2"[..]));
        assert_eq!(cookies.get("c"), Some(&b"3"[..]));
        assert_eq!(cookies.get("d"), Some(&b"4=5"[..]));
        assert_eq!(cookies.get("e"), None);
        assert_eq!(cookies.get("f"), Some(&b"\"q\""[..]));
        assert_eq!(cookies.get("missing"), None);
        let names: Vec<_> = cookies.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c", "d", "f"]);
    }

    #[test]
    fn get_returns_the_first_duplicate() {
        let map = headers(&["x=first; x=second", "x=third"]);
        assert_eq!(RequestCookies::parse(&map).get("x"), Some(&b"first"[..]));
    }

    #[test]
    fn no_cookie_header_and_empty_header() {
        let map = HeaderMap::new();
        assert_eq!(RequestCookies::parse(&map).get("a"), None);
        let map = headers(&["", ";", " ; ;"]);
        assert_eq!(RequestCookies::parse(&map).iter().count(), 0);
    }

    #[test]
    fn ten_thousand_cookies_are_bounded() {
        let one: String = (0..10_000).map(|i| format!("c{i}=v; ")).collect();
        let map = headers(&[&one]);
        let cookies = RequestCookies::parse(&map);
        assert_eq!(cookies.iter().count(), MAX_REQUEST_COOKIES);
        assert_eq!(cookies.get("c0"), Some(&b"v"[..]));
        assert_eq!(cookies.get("c63"), Some(&b"v"[..]));
        assert_eq!(cookies.get("c64"), None);
        assert_eq!(cookies.get("c9999"), None);

        // The same, one header per cookie.
        let many: Vec<String> = (0..10_000).map(|i| format!("c{i}=v")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let map = headers(&many);
        let cookies = RequestCookies::parse(&map);
        assert_eq!(cookies.iter().count(), MAX_REQUEST_COOKIES);
        assert_eq!(cookies.get("c64"), None);
    }

    #[test]
    fn byte_budget_is_bounded_and_drops_the_cut_cookie() {
        // `a=...;` ends 12 bytes before the budget; `b` straddles it.
        let first = format!(
            "a={}; b={}",
            "f".repeat(MAX_REQUEST_COOKIE_BYTES - 15),
            "9".repeat(100)
        );
        let map = headers(&[&first, "c=1"]);
        let cookies = RequestCookies::parse(&map);
        assert!(cookies.get("a").is_some());
        assert_eq!(
            cookies.get("b"),
            None,
            "a cookie cut by the budget must not be read"
        );
        assert_eq!(
            cookies.get("c"),
            None,
            "headers past the budget are ignored"
        );

        let huge = format!("big={}", "x".repeat(1 << 20));
        let map = headers(&[&huge, "after=1"]);
        let cookies = RequestCookies::parse(&map);
        assert_eq!(cookies.get("big"), None);
        assert_eq!(cookies.get("after"), None);
    }

    #[test]
    fn non_utf8_values_are_bytes_and_non_utf8_names_are_skipped() {
        let mut map = HeaderMap::new();
        map.append(
            COOKIE,
            HeaderValue::from_bytes(b"bad=\xff\xfe; \xff=x; good=1")
                .expect("obs-text is a valid header byte"),
        );
        let cookies = RequestCookies::parse(&map);
        assert_eq!(cookies.get("bad"), Some(&b"\xff\xfe"[..]));
        assert_eq!(cookies.iter().count(), 2, "the pair named \\xff is skipped");
        assert_eq!(cookies.get("good"), Some(&b"1"[..]));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let map = headers(&["session=s3cr3t"]);
        let shown = format!("{:?}", RequestCookies::parse(&map));
        assert!(shown.contains("session"));
        assert!(!shown.contains("s3cr3t"));
    }

    #[test]
    fn set_cookie_format() {
        let v = set_cookie("n", "v", None, true);
        assert_eq!(v, "n=v; Path=/; Secure; HttpOnly; SameSite=Lax");
        let v = set_cookie("n", "v", Some(Duration::from_secs(900)), false);
        assert_eq!(v, "n=v; Max-Age=900; Path=/; HttpOnly; SameSite=Lax");
        let v = set_cookie("n", "v", Some(Duration::from_millis(1500)), true);
        assert_eq!(v, "n=v; Max-Age=2; Path=/; Secure; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn longest_attributes_match_set_cookie() {
        let longest = set_cookie("n", "", Some(Duration::MAX), true);
        assert_eq!(longest.len(), "n=".len() + LONGEST_ATTRIBUTES.len());
        assert_eq!(longest.as_bytes()[2..], *LONGEST_ATTRIBUTES.as_bytes());
    }

    #[test]
    fn set_cookie_with_a_bad_name_or_value_sets_nothing() {
        let v = set_cookie("n", "a\nb", None, true);
        assert!(v.is_empty());
        assert!(set_cookie("a=b; c", "v", None, true).is_empty());
        assert!(set_cookie("", "v", None, true).is_empty());
    }

    #[test]
    fn clear_cookie_format() {
        assert_eq!(
            clear_cookie("AWSALBAuthNonce", true),
            "AWSALBAuthNonce=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            clear_cookie("x", false),
            "x=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn shard_names_are_the_four_shards() {
        let names: Vec<_> = shard_names("S").collect();
        assert_eq!(names, ["S-0", "S-1", "S-2", "S-3"]);
    }

    #[test]
    fn shard_name_matching() {
        assert!(is_shard_name("S", "S-0"));
        assert!(is_shard_name("S", "S-3"));
        assert!(is_shard_name("S", "S-17"));
        for other in ["S", "S-", "S0", "S-a", "S-0x", "T-0", "SS-0", "s-0"] {
            assert!(!is_shard_name("S", other), "{other}");
        }
    }

    #[test]
    fn set_sharded_cookies_sets_used_and_clears_unused() {
        let shards = vec![
            ("S-0".to_owned(), "a".to_owned()),
            ("S-1".to_owned(), "b".to_owned()),
        ];
        let all: Vec<_> = set_sharded_cookies("S", &shards, None, true).collect();
        assert_eq!(all.len(), 4);
        assert!(all[0].as_bytes().starts_with(b"S-0=a;"));
        assert!(all[1].as_bytes().starts_with(b"S-1=b;"));
        assert!(all[2].as_bytes().starts_with(b"S-2=; Max-Age=0;"));
        assert!(all[3].as_bytes().starts_with(b"S-3=; Max-Age=0;"));
    }

    #[test]
    fn cookie_name_validation() {
        assert!(is_valid_cookie_name("AWSELBAuthSessionCookie"));
        assert!(is_valid_cookie_name("AWSALBAuthNonce"));
        for bad in ["", "a b", "a;b", "a=b", "a\u{7f}", "é", "a\"", "a,b"] {
            assert!(!is_valid_cookie_name(bad), "{bad:?}");
        }
    }

    fn own(name: &str) -> bool {
        name == "AWSALBAuthNonce" || name.starts_with("S-")
    }

    #[test]
    fn strip_keeps_others_in_order() {
        let mut map = headers(&[
            "a=1; S-0=xx;b=\"2\"  ;  AWSALBAuthNonce=n; c=3=3",
            "S-1=yy",
            "d=4;e",
        ]);
        strip_request_cookies(&mut map, own);
        let left: Vec<_> = map.get_all(COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=\"2\"; c=3=3", "d=4; e"]);
    }

    #[test]
    fn strip_drops_the_header_when_empty() {
        let mut map = headers(&["S-0=a; S-1=b", " AWSALBAuthNonce = n ;"]);
        strip_request_cookies(&mut map, own);
        assert!(map.get(COOKIE).is_none());
    }

    #[test]
    fn strip_leaves_untouched_headers_alone() {
        let mut map = headers(&["a=1;b=2 ;; c"]);
        strip_request_cookies(&mut map, own);
        assert_eq!(map.get(COOKIE).expect("kept"), "a=1;b=2 ;; c");
    }

    #[test]
    fn strip_is_not_bounded_like_parsing() {
        let padding: String = (0..10_000).map(|i| format!("p{i}=v; ")).collect();
        let mut map = headers(&[&padding, "S-0=secret"]);
        map.append(
            COOKIE,
            HeaderValue::from_bytes(b"bad=\xff; S-1=secret")
                .expect("obs-text is a valid header byte"),
        );
        strip_request_cookies(&mut map, own);
        for v in map.get_all(COOKIE) {
            assert!(!v.as_bytes().windows(6).any(|w| w == b"secret"));
        }
        assert_eq!(map.get_all(COOKIE).iter().count(), 2);
    }

    #[test]
    fn strip_removes_a_valueless_own_name() {
        let mut map = headers(&["AWSALBAuthNonce; a=1"]);
        strip_request_cookies(&mut map, own);
        assert_eq!(map.get(COOKIE).expect("kept"), "a=1");
    }
}
