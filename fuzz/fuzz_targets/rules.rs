//! ALB wildcard matching and host normalisation over arbitrary input:
//! never panics, agrees with a plain dynamic-programming matcher (and, ignoring
//! case, with matching lower-cased text), and a host normalises to one spelling.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::internals::{normalize_host, wildcard_match, wildcard_match_ignore_case};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    pattern: &'a [u8],
    text: &'a [u8],
    authority: &'a str,
}

/// `*` any run of bytes, `?` exactly one: the textbook O(n·m) table.
fn reference(pattern: &[u8], text: &[u8]) -> bool {
    // row[j]: pattern[..i] matches text[..j].
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        next[0] = row[0] && p == b'*';
        for j in 1..=text.len() {
            next[j] = match p {
                b'*' => row[j] || next[j - 1],
                b'?' => row[j - 1],
                c => row[j - 1] && c == text[j - 1],
            };
        }
        row = next;
    }
    row[text.len()]
}

fuzz_target!(|input: Input<'_>| {
    let Input {
        pattern,
        text,
        authority,
    } = input;
    let matched = wildcard_match(pattern, text);
    if pattern.len().saturating_mul(text.len()) <= 1 << 16 {
        assert_eq!(matched, reference(pattern, text), "{pattern:?} {text:?}");
    }
    assert!(wildcard_match(b"*", text));
    assert!(wildcard_match(text, text) || text.iter().any(|c| matches!(c, b'*' | b'?')));
    if !pattern.iter().any(|c| matches!(c, b'*' | b'?')) {
        assert_eq!(matched, pattern == text, "{pattern:?} {text:?}");
    }
    // `*` on either side only widens a match.
    if matched {
        let mut wider = b"*".to_vec();
        wider.extend_from_slice(pattern);
        wider.push(b'*');
        assert!(wildcard_match(&wider, text));
    }

    // Ignoring case is matching the lower-cased text, for a lower-case pattern.
    let lower = pattern.to_ascii_lowercase();
    assert_eq!(
        wildcard_match_ignore_case(&lower, text),
        wildcard_match(&lower, &text.to_ascii_lowercase()),
        "{pattern:?} {text:?}"
    );

    let host = normalize_host(authority);
    assert!(
        !host.bytes().any(|c| c.is_ascii_uppercase()),
        "{authority:?} -> {host:?}"
    );
    // As the proxy admits an authority: it parses, as written, with no userinfo.
    let admitted = http::uri::Authority::try_from(authority)
        .is_ok_and(|parsed| parsed.as_str() == authority && !authority.contains('@'));
    if admitted {
        let port_free = match host.strip_prefix('[') {
            Some(literal) => literal.ends_with(']') && literal.find(']') == Some(literal.len() - 1),
            None => !host.contains(':'),
        };
        assert!(port_free, "{authority:?} -> {host:?}");
        assert!(!host.ends_with('.'), "{authority:?} -> {host:?}");
        assert!(authority.to_ascii_lowercase().starts_with(&host));
        // One spelling: normalising again changes nothing.
        assert_eq!(normalize_host(&host), host, "{authority:?}");
    }
});
