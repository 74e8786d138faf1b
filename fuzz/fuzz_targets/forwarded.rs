//! A front proxy's forwarding headers as the proxy reads them
//! (`proxy::forwarded`), from any bytes.
//!
//! Properties: nothing panics; a peer outside `trusted_proxies` says
//! nothing; what a trusted one says is well formed: a plain `host[:port]`,
//! an origin-form URI that starts with one `/`, a method token, and a
//! client address that is not a trusted proxy unless every hop was.

#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::config::Cidr;
use portcullis::internals::Forwarded;

const NAMES: [&str; 9] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-method",
    "x-original-method",
    "x-forwarded-uri",
    "x-original-uri",
    "x-original-url",
    "x-forwarded-for",
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    peer: [u8; 4],
    headers: Vec<(u8, &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let name = HeaderName::from_static(NAMES[usize::from(*name) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let trusted = Cidr::loopback();
    let peer = IpAddr::from(input.peer);
    let read = Forwarded::read(&headers, peer, &trusted);
    if !trusted.iter().any(|block| block.contains(peer)) {
        assert!(read.is_none(), "an untrusted peer was believed");
        return;
    }
    let Some(read) = read else { return };
    if let Some(host) = &read.host {
        let parsed = http::uri::Authority::try_from(host.as_str()).expect("a plain authority");
        assert_eq!(parsed.as_str(), host);
        assert!(!host.contains('@'));
    }
    if let Some(uri) = &read.uri {
        assert!(uri.starts_with('/') && !uri.starts_with("//"), "{uri}");
        http::Uri::try_from(uri.as_str()).expect("an origin-form URI");
    }
    let _ = read.browser_port(true);
});
