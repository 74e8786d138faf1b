//! The `x-amzn-oidc-*` identity headers.
//!
//! Only the proxy may speak about identity: whatever a client sends under the
//! `x-amzn-oidc-` prefix is removed on every request, before anything else
//! looks at it.

use http::HeaderMap;

pub mod keys;
pub mod signing;

/// Prefix of every identity header portcullis (like ALB) sends upstream.
pub const IDENTITY_HEADER_PREFIX: &str = "x-amzn-oidc-";

/// Removes every client-sent identity header. `HeaderName`s are stored
/// lower-case, so this catches any spelling the client used.
pub fn strip_inbound(headers: &mut HeaderMap) {
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(IDENTITY_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_every_identity_header_whatever_its_case() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Amzn-Oidc-Identity", "admin".parse().unwrap());
        headers.append("x-amzn-oidc-data", "forged".parse().unwrap());
        headers.append("x-amzn-oidc-data", "forged-again".parse().unwrap());
        headers.insert("X-AMZN-OIDC-ACCESSTOKEN", "t".parse().unwrap());
        headers.insert("x-amzn-oidc-anything-else", "t".parse().unwrap());
        headers.insert("x-amzn-trace-id", "keep".parse().unwrap());
        strip_inbound(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-amzn-trace-id"], "keep");
    }
}
