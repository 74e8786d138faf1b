//! `RequestCookies` over arbitrary `Cookie` headers, checked against a plain
//! unbounded reading of RFC 6265 §5.2; and `strip_request_cookies`, which must
//! leave none of the proxy's cookies for the upstream and every other one as sent.

#![no_main]

use arbitrary::Arbitrary;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::internals::{
    MAX_REQUEST_COOKIE_BYTES, MAX_REQUEST_COOKIES, NONCE_COOKIE, RequestCookies, is_shard_name,
    strip_request_cookies,
};

/// Session cookie base names: ALB's default, a short one, and one that
/// itself looks like a shard.
const BASES: [&str; 3] = ["AWSELBAuthSessionCookie", "s", "a-0"];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    base: u8,
    lookup: &'a str,
    headers: Vec<&'a [u8]>,
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

/// Every `(name, value)` pair of every header, without bounds.
fn reference(headers: &HeaderMap) -> Vec<(&str, &[u8])> {
    let mut pairs = Vec::new();
    for value in headers.get_all(COOKIE) {
        for piece in value.as_bytes().split(|&c| c == b';') {
            let Some(eq) = piece.iter().position(|&c| c == b'=') else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(trim_ows(&piece[..eq])) else {
                continue;
            };
            if !name.is_empty() {
                pairs.push((name, trim_ows(&piece[eq + 1..])));
            }
        }
    }
    pairs
}

/// The name a lenient upstream might read in a piece: up to `=`, or all of it.
fn piece_name(piece: &[u8]) -> &[u8] {
    let piece = trim_ows(piece);
    match piece.iter().position(|&c| c == b'=') {
        Some(eq) => trim_ows(&piece[..eq]),
        None => piece,
    }
}

fuzz_target!(|input: Input<'_>| {
    let base = BASES[usize::from(input.base) % BASES.len()];
    let is_own = |name: &str| name == NONCE_COOKIE || is_shard_name(base, name);
    let is_own_bytes = |name: &[u8]| std::str::from_utf8(name).is_ok_and(is_own);

    let mut headers = HeaderMap::new();
    headers.insert("x-other", HeaderValue::from_static("kept"));
    for value in &input.headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(COOKIE, value);
        }
    }
    let total: usize = headers.get_all(COOKIE).iter().map(|v| v.len()).sum();

    let cookies = RequestCookies::parse(&headers);
    let pairs: Vec<(&str, &[u8])> = cookies.iter().collect();
    let expected = reference(&headers);
    assert!(pairs.len() <= MAX_REQUEST_COOKIES);
    assert!(pairs.len() <= expected.len(), "{pairs:?} {expected:?}");
    // The bounds only ever cut the end off: what is read is read right.
    assert_eq!(pairs[..], expected[..pairs.len()]);
    if total <= MAX_REQUEST_COOKIE_BYTES {
        assert_eq!(pairs.len(), expected.len().min(MAX_REQUEST_COOKIES));
    }
    let read: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 1).sum();
    assert!(read <= MAX_REQUEST_COOKIE_BYTES);
    assert_eq!(
        cookies.get(input.lookup),
        pairs
            .iter()
            .find(|(name, _)| *name == input.lookup)
            .map(|(_, value)| *value)
    );
    let _ = format!("{cookies:?}");

    // Stripping: the model keeps every other non-empty piece, trimmed, in
    // order, joined by "; ", and drops a header left empty; it changes
    // nothing when none of the proxy's cookies is there.
    let touched = headers.get_all(COOKIE).iter().any(|v| {
        v.as_bytes()
            .split(|&c| c == b';')
            .any(|p| is_own_bytes(piece_name(p)))
    });
    let model: Vec<Vec<u8>> = if touched {
        headers
            .get_all(COOKIE)
            .iter()
            .map(|value| {
                let kept: Vec<&[u8]> = value
                    .as_bytes()
                    .split(|&c| c == b';')
                    .map(trim_ows)
                    .filter(|piece| !piece.is_empty() && !is_own_bytes(piece_name(piece)))
                    .collect();
                kept.join(&b"; "[..])
            })
            .filter(|kept| !kept.is_empty())
            .collect()
    } else {
        headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    };
    let mut stripped = headers.clone();
    strip_request_cookies(&mut stripped, is_own);
    let after: Vec<Vec<u8>> = stripped
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    assert_eq!(after, model);
    for value in stripped.get_all(COOKIE) {
        for piece in value.as_bytes().split(|&c| c == b';') {
            assert!(!is_own_bytes(piece_name(piece)), "{piece:?} left in");
        }
    }
    // Other headers are untouched.
    assert_eq!(
        stripped.get("x-other"),
        Some(&HeaderValue::from_static("kept"))
    );
});
