//! Values taken from a request or an IdP (paths, hosts, the callback's
//! `error`), made safe to write in a log line: a client must not be able to
//! forge a line, colour a terminal or fill a disk through the log.

use std::fmt;

/// The most characters of one untrusted value a log line carries.
pub const MAX_LOGGED_CHARS: usize = 256;

/// Writes the value with control characters, quotes and backslashes
/// escaped (as Rust's `escape_debug` does) and at most
/// [`MAX_LOGGED_CHARS`] characters, then `…` when it was longer.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        // Nearly every path and host: printable ASCII, short, written as is.
        if text.len() <= MAX_LOGGED_CHARS
            && text
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
        {
            return f.write_str(text);
        }
        let mut chars = text.chars();
        for c in chars.by_ref().take(MAX_LOGGED_CHARS) {
            if c.is_control() || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_debug())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// An owned copy of an untrusted value, escaped and bounded, for errors
/// that keep it past the request.
pub fn bounded(text: &str) -> String {
    Untrusted(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        let forged = "x\n2026-01-01T00:00:00Z INFO portcullis::access status=200\r\u{1b}[31m";
        let logged = Untrusted(forged).to_string();
        assert!(!logged.chars().any(char::is_control), "{logged}");
        assert!(logged.contains("\\n"));
        assert!(logged.contains("\\u{1b}"));
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(Untrusted(r#"a"b\c"#).to_string(), r#"a\"b\\c"#);
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(10_000);
        let logged = Untrusted(&long).to_string();
        assert_eq!(logged.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(logged.ends_with('…'));
        let exact = "a".repeat(MAX_LOGGED_CHARS);
        assert_eq!(Untrusted(&exact).to_string(), exact);
    }

    #[test]
    fn plain_values_are_written_as_they_are() {
        assert_eq!(Untrusted("/app/a.js").to_string(), "/app/a.js");
        assert_eq!(Untrusted("/caf\u{e9} x").to_string(), "/caf\u{e9} x");
    }
}
