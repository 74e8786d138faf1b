//! Splices `exp` and `iss` into the userinfo claims without re-serialising
//! them: every other member keeps its exact bytes (key order, number
//! spelling, escapes), as the IdP sent it.

use serde::de::IgnoredAny;

use super::{SigningError, json_string};

/// Claims the proxy sets itself; a same-named claim from userinfo is dropped
/// rather than duplicated, because parsers disagree on which duplicate wins
/// (JavaScript keeps the last, serde structs reject the token).
const OVERRIDDEN: [&str; 2] = ["exp", "iss"];

/// `{<claims without exp/iss, byte for byte>,"exp":<exp>,"iss":<issuer>}`.
pub(super) fn with_exp_and_iss(
    claims: &[u8],
    exp: u64,
    issuer: &str,
) -> Result<Vec<u8>, SigningError> {
    // serde_json skips ignored strings without checking their UTF-8, and
    // a token verifiers cannot decode as UTF-8 is useless to them.
    std::str::from_utf8(claims).map_err(SigningError::ClaimsNotUtf8)?;
    // Validating first lets the scanner below trust the structure: it only
    // has to find member boundaries, never to judge the syntax.
    serde_json::from_slice::<IgnoredAny>(claims).map_err(SigningError::ClaimsNotJson)?;
    let mut scan = Scanner {
        bytes: claims,
        at: 0,
    };
    scan.skip_whitespace();
    if scan.peek() != Some(b'{') {
        return Err(SigningError::ClaimsNotObject);
    }
    scan.at += 1;

    let mut out = Vec::with_capacity(claims.len() + issuer.len() + 40);
    out.push(b'{');
    loop {
        scan.skip_whitespace();
        match scan.peek() {
            Some(b'}') => break,
            Some(b',') => {
                scan.at += 1;
                continue;
            }
            Some(b'"') => {}
            _ => return Err(SigningError::ClaimsMalformed),
        }
        let member_start = scan.at;
        let key = scan.string()?;
        scan.skip_whitespace();
        if scan.peek() != Some(b':') {
            return Err(SigningError::ClaimsMalformed);
        }
        scan.at += 1;
        scan.value()?;
        if !is_overridden(key)? {
            let member = claims
                .get(member_start..scan.at)
                .ok_or(SigningError::ClaimsMalformed)?;
            out.extend_from_slice(member.trim_ascii_end());
            out.push(b',');
        }
    }
    out.extend_from_slice(b"\"exp\":");
    out.extend_from_slice(exp.to_string().as_bytes());
    out.extend_from_slice(b",\"iss\":");
    out.extend_from_slice(json_string(issuer).as_bytes());
    out.push(b'}');
    Ok(out)
}

/// Compares the decoded key, so an escaped spelling (`"e\u0078p"`) cannot
/// smuggle a second `exp` past the override.
fn is_overridden(raw_key: &[u8]) -> Result<bool, SigningError> {
    let inner = raw_key
        .get(1..raw_key.len().saturating_sub(1))
        .ok_or(SigningError::ClaimsMalformed)?;
    if !inner.contains(&b'\\') {
        return Ok(OVERRIDDEN.iter().any(|name| name.as_bytes() == inner));
    }
    let key: String = serde_json::from_slice(raw_key).map_err(SigningError::ClaimsNotJson)?;
    Ok(OVERRIDDEN.contains(&key.as_str()))
}

/// A cursor over JSON already known to be valid.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes a string starting at its opening quote; returns it with quotes.
    fn string(&mut self) -> Result<&'a [u8], SigningError> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek().ok_or(SigningError::ClaimsMalformed)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self
                        .bytes
                        .get(start..self.at)
                        .ok_or(SigningError::ClaimsMalformed);
                }
                _ => self.at += 1,
            }
        }
    }

    /// Consumes one value (of any kind) and stops at the `,` or `}` after it.
    fn value(&mut self) -> Result<(), SigningError> {
        let mut depth = 0usize;
        loop {
            match self.peek().ok_or(SigningError::ClaimsMalformed)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' | b']' if depth == 0 => return Ok(()),
                b'}' | b']' => {
                    depth -= 1;
                    self.at += 1;
                }
                b',' if depth == 0 => return Ok(()),
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(claims: &str) -> String {
        String::from_utf8(with_exp_and_iss(claims.as_bytes(), 42, "https://idp").unwrap()).unwrap()
    }

    #[test]
    fn keeps_every_other_member_byte_for_byte() {
        let claims = r#"{"sub":"a\"b","n":1.50,"big":123456789012345678901234567890,"o":{"exp":[1,{"iss":"x"}],"s":"}],"},"u":"Zoë \ud83d\ude80 🚀"}"#;
        assert_eq!(
            splice(claims),
            r#"{"sub":"a\"b","n":1.50,"big":123456789012345678901234567890,"o":{"exp":[1,{"iss":"x"}],"s":"}],"},"u":"Zoë \ud83d\ude80 🚀","exp":42,"iss":"https://idp"}"#
        );
    }

    #[test]
    fn drops_top_level_exp_and_iss_whatever_their_spelling() {
        let claims =
            r#" { "exp" : 1 , "sub" : "s" , "iss":"evil", "e\u0078p":2, "\u0069ss" : {"a":1} } "#;
        assert_eq!(
            splice(claims),
            r#"{"sub" : "s","exp":42,"iss":"https://idp"}"#
        );
    }

    #[test]
    fn empty_object_gets_only_exp_and_iss() {
        assert_eq!(splice("{}"), r#"{"exp":42,"iss":"https://idp"}"#);
        assert_eq!(splice(r#"{"exp":1}"#), r#"{"exp":42,"iss":"https://idp"}"#);
    }

    #[test]
    fn issuer_is_escaped() {
        let out = with_exp_and_iss(b"{}", 1, "a\"b").unwrap();
        assert_eq!(out, br#"{"exp":1,"iss":"a\"b"}"#);
    }

    #[test]
    fn rejects_what_is_not_a_json_object() {
        for bad in [
            "[1]",
            "\"s\"",
            "",
            "{",
            "{\"a\":1}x",
            "{\"a\":\"\u{0}\"}",
            "{'a':1}",
        ] {
            let err = with_exp_and_iss(bad.as_bytes(), 1, "i").unwrap_err();
            assert!(
                matches!(
                    err,
                    SigningError::ClaimsNotJson(_) | SigningError::ClaimsNotObject
                ),
                "{bad:?}: {err:?}"
            );
        }
        let err = with_exp_and_iss(b"{\"a\":\"\xff\"}", 1, "i").unwrap_err();
        assert!(matches!(err, SigningError::ClaimsNotUtf8(_)), "{err:?}");
    }
}
