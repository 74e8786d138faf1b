//! The `x-amzn-oidc-*` identity headers.
//!
//! Only the proxy may speak about identity: whatever a client sends under the
//! `x-amzn-oidc-` prefix, or under a name a server could read as one
//! (`x_amzn_oidc_identity`), is removed on every request before anything
//! else looks at it ([`crate::proxy::headers`]).

pub mod keys;
pub mod signing;

/// Prefix of every identity header portcullis (like ALB) sends upstream.
pub const IDENTITY_HEADER_PREFIX: &str = "x-amzn-oidc-";

/// True for an identity header and every look-alike a server could read
/// as one: any character but a letter or digit may stand for `-` (WSGI,
/// Rack, PHP and CGI read `_` as `-`, PHP also `.`:
/// `HTTP_X_AMZN_OIDC_IDENTITY`). `name` is lower case, as `HeaderName`s are.
pub fn is_identity_header(name: &str) -> bool {
    let prefix = IDENTITY_HEADER_PREFIX.as_bytes();
    let name = name.as_bytes();
    name.len() >= prefix.len()
        && name.iter().zip(prefix).all(|(&byte, &expected)| {
            byte == expected || (expected == b'-' && !byte.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_and_their_look_alikes_are_recognised() {
        for name in [
            "x-amzn-oidc-identity",
            "x-amzn-oidc-data",
            "x-amzn-oidc-accesstoken",
            "x-amzn-oidc-anything-else",
            "x_amzn_oidc_identity",
            "x-amzn_oidc-data",
            "x_amzn-oidc_accesstoken",
            "x.amzn.oidc.identity",
            "x+amzn~oidc!data",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in [
            "x-amzn-trace-id",
            "x-amzn-oidc",
            "x-amzn-oidcdata",
            "amzn-oidc-data",
        ] {
            assert!(!is_identity_header(name), "{name}");
        }
    }
}
