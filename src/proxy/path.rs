//! The canonical request path: the one spelling of a path that the rules,
//! the `/oauth2/` check, the access log and the upstream all see.
//!
//! An upstream that resolves a path differently from the rule that let the
//! request in is reached past that rule: `/public/../admin` matches a public
//! `/public/*` and is served as `/admin` by Python, Node, Tomcat, IIS or
//! nginx. So the proxy resolves the path itself, as the most lenient of them
//! would, and forwards the result; a path that could still be read two ways
//! is refused with 400.
//!
//! | form | outcome |
//! |---|---|
//! | `.` and `..` segments (RFC 3986 §5.2.4), also as `%2e`, `.%2E`, `%2e%2e` | resolved |
//! | `..;x` and `.;x` (Tomcat reads the `;x` as a parameter) | resolved as `..` and `.` |
//! | `//`, `///` | merged into one `/` |
//! | `%41`, `%7e`: escapes of unreserved characters | decoded |
//! | `%3f`, `%c3%a9`: other escapes | kept, hex in upper case |
//! | `%2F`, `%5C` (encoded `/` and `\`), a raw `\`, `%00` | 400 |
//! | `..` above the root (`/..`, `/a/../..`) | 400 |
//! | a `%` not followed by two hex digits | 400 |
//! | `%25` followed by `2e`, `2f`, `5c`, `3b` or `00`, also as escapes (`%25%32%65`): double encoding | 400 |
//! | a segment that is a dot segment only once `%3B` is decoded (`..%3Bx`) | 400 |
//!
//! The query is never touched: it belongs to the application.

use std::borrow::Cow;

/// Why a path was refused: every one is the client's fault (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path contains an encoded `/` or `\\`")]
    EncodedSeparator,
    #[error("the path contains a `\\`")]
    Backslash,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path climbs above `/`")]
    AboveRoot,
    #[error("the path contains a `%` that is not followed by two hex digits")]
    BadEscape,
    #[error("the path contains a double-encoded dot, separator or NUL")]
    DoubleEncoded,
    #[error("the path contains a segment that is `.` or `..` only once `%3B` is decoded")]
    AmbiguousDotSegment,
    /// Never expected: the canonical form uses only characters of the input.
    #[error("the canonical path is not a valid request target")]
    Unrepresentable,
}

/// The canonical form of `path` (the request target's path, without its
/// query). Borrows when the path is already canonical, which is nearly
/// every path a browser sends.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    resolve(path).map(Cow::Owned)
}

/// True when no rule of [`resolve`] could change the path: no escape, no
/// backslash or NUL, no empty segment and no dot segment (`/.well-known`
/// is canonical, `/./`, `/..` and `/..;x` are not).
fn is_canonical(bytes: &[u8]) -> bool {
    let ends_dot_segment = |at: usize| matches!(bytes.get(at), None | Some(b'/' | b';'));
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' | b'\\' | 0 => return false,
            b'/' => match bytes.get(index + 1) {
                Some(b'/') => return false,
                Some(b'.') if ends_dot_segment(index + 2) => return false,
                Some(b'.')
                    if bytes.get(index + 2) == Some(&b'.') && ends_dot_segment(index + 3) =>
                {
                    return false;
                }
                _ => {}
            },
            _ => {}
        }
    }
    true
}

fn resolve(path: &str) -> Result<String, PathError> {
    // Segments after the leading `/`; the last one is empty when the path
    // ends with `/`.
    let mut output: Vec<String> = Vec::new();
    let raw_segments: Vec<&str> = path[1..].split('/').collect();
    let last = raw_segments.len() - 1;
    // Whether the canonical path ends with `/`: a trailing empty segment, or
    // a final dot segment (`/a/..` is the directory `/`).
    let mut trailing_slash = false;
    for (index, raw) in raw_segments.into_iter().enumerate() {
        let is_last = index == last;
        let segment = decode_segment(raw)?;
        match dot_segment(&segment) {
            Some(Dot::Current) => trailing_slash = is_last,
            Some(Dot::Parent) => {
                output.pop().ok_or(PathError::AboveRoot)?;
                trailing_slash = is_last;
            }
            None if segment.is_empty() => trailing_slash = is_last,
            None => {
                if fully_decoded_is_dot(&segment) {
                    return Err(PathError::AmbiguousDotSegment);
                }
                output.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut canonical = String::with_capacity(path.len());
    for segment in &output {
        canonical.push('/');
        canonical.push_str(segment);
    }
    if trailing_slash || output.is_empty() {
        canonical.push('/');
    }
    Ok(canonical)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    Current,
    Parent,
}

/// `.` and `..`, also with a Tomcat path parameter (`..;jsessionid=x`).
fn dot_segment(segment: &str) -> Option<Dot> {
    let name = segment.split(';').next().unwrap_or(segment);
    match name {
        "." => Some(Dot::Current),
        ".." => Some(Dot::Parent),
        _ => None,
    }
}

/// A segment that a server decoding `%3B` before it strips parameters
/// (some Spring and Jetty versions) would read as a dot segment.
fn fully_decoded_is_dot(segment: &str) -> bool {
    if !segment.contains('%') {
        return false;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
    let name = decoded.split(|&byte| byte == b';').next().unwrap_or(&[]);
    name == b"." || name == b".."
}

/// One segment with unreserved escapes decoded and the others in upper
/// case; separators, NUL and malformed or double escapes refused.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut segment = String::with_capacity(raw.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            b'%' => {
                let high = bytes.get(index + 1).and_then(|&c| hex_value(c));
                let low = bytes.get(index + 2).and_then(|&c| hex_value(c));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = high << 4 | low;
                match decoded {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0 => return Err(PathError::Nul),
                    _ if is_unreserved(decoded) => segment.push(char::from(decoded)),
                    _ => {
                        segment.push('%');
                        segment.push(char::from(HEX_UPPER[usize::from(high)]));
                        segment.push(char::from(HEX_UPPER[usize::from(low)]));
                    }
                }
                index += 3;
            }
            _ => {
                // Copy the run up to the next byte that needs a look; it is
                // valid UTF-8 because it ends before an ASCII byte or the end.
                let run = bytes[index..]
                    .iter()
                    .position(|&c| matches!(c, b'%' | b'\\' | 0))
                    .map_or(bytes.len(), |offset| index + offset);
                segment.push_str(&raw[index..run]);
                index = run;
            }
        }
    }
    // Checked on the result, not the input: the escapes after a `%25` may
    // be of unreserved characters, and `%25%32%65` is `%252e` once decoded.
    let decoded = segment.as_bytes();
    if segment
        .match_indices("%25")
        .any(|(at, _)| is_double_encoded(&decoded[at + 3..]))
    {
        return Err(PathError::DoubleEncoded);
    }
    Ok(segment)
}

/// What follows a `%25`: an escape that a second decoding would turn into
/// a dot, a separator, a parameter or NUL.
fn is_double_encoded(rest: &[u8]) -> bool {
    let Some(pair) = rest.get(..2) else {
        return false;
    };
    let pair = [pair[0].to_ascii_lowercase(), pair[1].to_ascii_lowercase()];
    matches!(&pair, b"2e" | b"2f" | b"5c" | b"3b" | b"00")
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: letters, digits, `-`, `.`, `_`, `~`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// True for `/oauth2/...` however the first segment is spelled once
/// canonical: `/oauth2;x/...` is the same directory to Tomcat.
pub fn is_owned(canonical: &str, prefix: &str) -> bool {
    if canonical.starts_with(prefix) {
        return true;
    }
    let directory = prefix.trim_end_matches('/');
    canonical
        .strip_prefix(directory)
        .is_some_and(|rest| rest.starts_with(';') && rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    use PathError::*;

    /// Every form the docs list, and the tricks that reached protected
    /// paths through lenient upstreams.
    const TABLE: &[(&str, Result<&str, PathError>)] = &[
        // Already canonical: borrowed, unchanged.
        ("/", Ok("/")),
        ("/a/b/c", Ok("/a/b/c")),
        ("/static/app.js", Ok("/static/app.js")),
        ("/a/b/", Ok("/a/b/")),
        ("/a;jsessionid=1/b", Ok("/a;jsessionid=1/b")),
        ("/caf\u{e9}", Ok("/caf\u{e9}")),
        ("/a.b/c..d/...", Ok("/a.b/c..d/...")),
        ("/.well-known/x", Ok("/.well-known/x")),
        ("/a/..b/.c", Ok("/a/..b/.c")),
        // Dot segments.
        ("/public/../admin/x", Ok("/admin/x")),
        ("/public/./x", Ok("/public/x")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/.", Ok("/a/b/")),
        ("/a/./b/../c/", Ok("/a/c/")),
        ("/.", Ok("/")),
        ("/x/../oauth2/sign_out", Ok("/oauth2/sign_out")),
        // Encoded dots.
        ("/public/%2e%2e/admin/x", Ok("/admin/x")),
        ("/public/%2E%2E/admin/x", Ok("/admin/x")),
        ("/public/.%2e/admin/x", Ok("/admin/x")),
        ("/public/%2e./admin/x", Ok("/admin/x")),
        ("/public/%2e/x", Ok("/public/x")),
        // Tomcat's path parameters on dot segments.
        ("/public/..;/admin/x", Ok("/admin/x")),
        ("/public/..;jsessionid=1/admin/x", Ok("/admin/x")),
        ("/public/.;x/y", Ok("/public/y")),
        ("/public/%2e%2e;/admin/x", Ok("/admin/x")),
        // Merged slashes.
        ("//admin/x", Ok("/admin/x")),
        ("/a//b///c", Ok("/a/b/c")),
        ("/a//", Ok("/a/")),
        ("//", Ok("/")),
        // Unreserved escapes decoded, others normalised.
        ("/%61dmin/x", Ok("/admin/x")),
        ("/a%7eb", Ok("/a~b")),
        ("/a%2D%5F%2E", Ok("/a-_.")),
        ("/a%3fb", Ok("/a%3Fb")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/a%20b", Ok("/a%20b")),
        ("/a%3Bb", Ok("/a%3Bb")),
        // Refused: separators an upstream may decode.
        ("/public/%2E%2E%2Fadmin/x", Err(EncodedSeparator)),
        ("/public%2f..%2fadmin", Err(EncodedSeparator)),
        ("/public/..%5Cadmin/x", Err(EncodedSeparator)),
        ("/public/..%5cadmin/x", Err(EncodedSeparator)),
        ("/public/..\\admin/x", Err(Backslash)),
        ("/public\\x", Err(Backslash)),
        ("/a%00b", Err(Nul)),
        ("/a\0b", Err(Nul)),
        // Refused: above the root.
        ("/..", Err(AboveRoot)),
        ("/../admin", Err(AboveRoot)),
        ("/a/../..", Err(AboveRoot)),
        ("/%2e%2e/etc/passwd", Err(AboveRoot)),
        ("/..;/admin", Err(AboveRoot)),
        // Refused: malformed and double escapes.
        ("/a%", Err(BadEscape)),
        ("/a%2", Err(BadEscape)),
        ("/a%zz", Err(BadEscape)),
        ("/public/%252e%252e/admin", Err(DoubleEncoded)),
        ("/public/%252F", Err(DoubleEncoded)),
        // Found by fuzzing: the escape after `%25` is of unreserved
        // characters, and decoding it made `%253B` and `%252E`.
        ("/%253%42", Err(DoubleEncoded)),
        ("/public/%25%32%65%25%32%65/admin", Err(DoubleEncoded)),
        ("/a%25%35%63b", Err(DoubleEncoded)),
        ("/a%25%34%31", Ok("/a%2541")),
        ("/a%25", Ok("/a%25")),
        ("/a%2541", Ok("/a%2541")),
        // Refused: a dot segment once `%3B` is decoded.
        ("/public/..%3B/admin", Err(AmbiguousDotSegment)),
        ("/public/.%3bx/y", Err(AmbiguousDotSegment)),
        // Not an origin-form path.
        ("", Err(NotAbsolute)),
        ("*", Err(NotAbsolute)),
        ("admin", Err(NotAbsolute)),
    ];

    #[test]
    fn every_form_has_its_outcome() {
        assert!(TABLE.len() >= 40);
        for (input, expected) in TABLE {
            let actual = canonicalize(input);
            assert_eq!(
                actual.as_deref().map_err(|error| *error),
                *expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_and_stable() {
        for (input, expected) in TABLE {
            let Ok(expected) = expected else { continue };
            // Canonicalising the canonical form changes nothing.
            let again = canonicalize(expected).expect("a canonical path stays valid");
            assert_eq!(again, *expected, "{input:?}");
            if !expected.contains('%') {
                assert!(
                    matches!(again, Cow::Borrowed(_)),
                    "{input:?} → {expected:?}"
                );
            }
        }
        assert!(matches!(canonicalize("/a/b"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn owned_paths_are_recognised_with_parameters() {
        assert!(is_owned("/oauth2/sign_out", "/oauth2/"));
        assert!(is_owned("/oauth2;x/sign_out", "/oauth2/"));
        assert!(!is_owned("/oauth2", "/oauth2/"));
        assert!(!is_owned("/oauth2x/sign_out", "/oauth2/"));
        assert!(!is_owned("/app/oauth2/sign_out", "/oauth2/"));
    }
}
