//! `proxy::path::canonicalize` over arbitrary text: never panics, and what
//! it accepts is one spelling that no upstream can read as another path.

#![no_main]

use std::borrow::Cow;

use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;
use portcullis::internals::canonicalize;

fuzz_target!(|path: &str| {
    let Ok(canonical) = canonicalize(path) else {
        return;
    };
    let show = || format!("{path:?} -> {canonical:?}");
    assert!(canonical.starts_with('/'), "{}", show());
    assert!(!canonical.contains("//"), "{}", show());
    assert!(!canonical.contains('\\'), "{}", show());
    assert!(!canonical.contains('\0'), "{}", show());
    let upper = canonical.to_ascii_uppercase();
    for escape in ["%2F", "%5C", "%00"] {
        assert!(!upper.contains(escape), "{}", show());
    }
    // A second decoding must not make a dot, separator, parameter or NUL.
    for double in ["%252E", "%252F", "%255C", "%253B", "%2500"] {
        assert!(!upper.contains(double), "{}", show());
    }
    // Escapes left are well formed and in upper case, so there is one spelling.
    let bytes = canonical.as_bytes();
    for (index, _) in canonical.match_indices('%') {
        let hex = bytes.get(index + 1..index + 3);
        assert!(
            hex.is_some_and(|pair| pair
                .iter()
                .all(|&c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))),
            "{}",
            show()
        );
    }
    for segment in canonical[1..].split('/') {
        // Tomcat reads `..;x` as `..`: the name before the first `;` counts,
        // also once every escape in the segment is decoded.
        let name = segment.split(';').next().unwrap_or(segment);
        assert!(name != "." && name != "..", "dot segment: {}", show());
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        let name = decoded.split(|&c| c == b';').next().unwrap_or(&[]);
        assert!(
            name != b"." && name != b"..",
            "encoded dot segment: {}",
            show()
        );
    }
    // A path the proxy can receive (hyper parsed it) stays a valid request path.
    if PathAndQuery::try_from(path).is_ok_and(|parsed| parsed.path() == path) {
        let parsed = PathAndQuery::try_from(canonical.as_ref())
            .unwrap_or_else(|error| panic!("not a request target ({error}): {}", show()));
        assert_eq!(parsed.path(), canonical, "{}", show());
    }
    let again = canonicalize(&canonical)
        .unwrap_or_else(|error| panic!("refused the second time ({error}): {}", show()));
    assert_eq!(again, canonical, "not idempotent: {}", show());
    // Only input that is already canonical is borrowed, and it is returned as it came.
    if matches!(canonical, Cow::Borrowed(_)) {
        assert_eq!(canonical, path);
    }
});
