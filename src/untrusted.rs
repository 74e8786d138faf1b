//! Values taken from a request or an IdP (paths, hosts, the callback's
//! `error`, an issuer), made safe for every log line and error message they
//! reach: anything but printable ASCII is escaped (`\n`, `\u{1b}`,
//! `\u{e9}`) and `\` doubled, so a value can neither forge a log line nor
//! send terminal controls, and it is cut to a bounded length with `…`.

use std::fmt;

/// An owned, escaped and bounded copy, for errors that keep the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Untrusted(String);

impl Untrusted {
    /// Longest escaped text kept from one value (a callback's `error`, an
    /// issuer, a claim).
    pub const MAX_CHARS: usize = 128;
    /// Longest escaped text kept from a library's error message, which
    /// quotes values in its own words (both issuers of a mismatch).
    pub const MAX_MESSAGE_CHARS: usize = 512;

    /// One value, escaped and cut to [`MAX_CHARS`](Self::MAX_CHARS).
    pub fn new(raw: &str) -> Self {
        let mut escaped = String::with_capacity(raw.len().min(Self::MAX_CHARS) + 3);
        // Writing to a String cannot fail.
        let _ = escape(&mut escaped, raw, Self::MAX_CHARS);
        Self(escaped)
    }

    /// A library's error message about something the IdP sent, escaped and
    /// cut to [`MAX_MESSAGE_CHARS`](Self::MAX_MESSAGE_CHARS).
    pub fn message(raw: &(impl fmt::Display + ?Sized)) -> Self {
        let mut escaped = String::new();
        let _ = escape(&mut escaped, &raw.to_string(), Self::MAX_MESSAGE_CHARS);
        Self(escaped)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Untrusted {
    fn from(raw: &str) -> Self {
        Self::new(raw)
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Untrusted {
    // Already escaped: `{:?}` of the String would escape the escapes again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// A borrowed value written escaped and bounded, for the access log: no
/// copy is made, and a plain path or host is written as it is.
pub struct LogSafe<'a>(pub &'a str);

impl LogSafe<'_> {
    /// Longest escaped text one access-log field carries.
    pub const MAX_CHARS: usize = 256;
}

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        // Nearly every path and host: printable ASCII without `\`, short.
        if text.len() <= Self::MAX_CHARS
            && text
                .bytes()
                .all(|byte| matches!(byte, b' '..=b'~') && byte != b'\\')
        {
            return f.write_str(text);
        }
        escape(f, text, Self::MAX_CHARS)
    }
}

/// Writes `raw` escaped, at most `max_chars` characters of escaped text,
/// then `…` if anything was left out. An escape is never cut in half.
fn escape(out: &mut impl fmt::Write, raw: &str, max_chars: usize) -> fmt::Result {
    let mut written = 0;
    let mut piece = String::new();
    for c in raw.chars() {
        piece.clear();
        match c {
            '\\' => piece.push_str("\\\\"),
            ' '..='~' => piece.push(c),
            _ => {
                use fmt::Write as _;
                write!(piece, "{}", c.escape_default())?;
            }
        }
        // The escaped text is ASCII, so bytes are characters.
        if written + piece.len() > max_chars {
            return out.write_char('…');
        }
        out.write_str(&piece)?;
        written += piece.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_unambiguous_and_cuts_only_between_escapes() {
        assert_eq!(Untrusted::new("access_denied").as_str(), "access_denied");
        assert_eq!(Untrusted::new("a\nb").as_str(), "a\\nb");
        // A literal backslash-n stays distinguishable from a newline.
        assert_eq!(Untrusted::new("a\\nb").as_str(), "a\\\\nb");
        assert_eq!(Untrusted::new("\u{1b}é").as_str(), "\\u{1b}\\u{e9}");

        let cut = Untrusted::new(&"a".repeat(200));
        assert_eq!(
            cut.as_str(),
            format!("{}…", "a".repeat(Untrusted::MAX_CHARS))
        );
        let exact = "a".repeat(Untrusted::MAX_CHARS);
        assert_eq!(
            Untrusted::new(&exact).as_str(),
            exact,
            "no ellipsis when it fits"
        );
        // `\u{e9}` is 6 characters: 21 of them fit in 128, the 22nd is not cut in half.
        let accents = Untrusted::new(&"é".repeat(100));
        assert_eq!(accents.as_str(), format!("{}…", "\\u{e9}".repeat(21)));

        let message = Untrusted::message(&"x".repeat(5_000));
        assert_eq!(
            message.as_str().chars().count(),
            Untrusted::MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn access_log_fields_cannot_start_a_line() {
        let forged = "/x\n2026-01-01T00:00:00Z INFO portcullis::access status=200\r\u{1b}[31m";
        let logged = LogSafe(forged).to_string();
        assert!(
            logged.bytes().all(|byte| matches!(byte, b' '..=b'~')),
            "{logged}"
        );
        assert!(logged.contains("\\n"));
        let long = "é".repeat(10_000);
        let logged = LogSafe(&long).to_string();
        assert!(logged.ends_with('…'));
        assert!(logged.chars().count() <= LogSafe::MAX_CHARS + 1);
        assert_eq!(LogSafe("/app/a.js?x=1").to_string(), "/app/a.js?x=1");
        assert_eq!(LogSafe(r"/a\b").to_string(), r"/a\\b");
    }
}
