//! The compact-JWS decoding every IdP token but the ID token goes through
//! (logout tokens, bearer tokens), over arbitrary text: never panics, and
//! an issuer is read only from a token of exactly three parts within the
//! size limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::internals::unverified_logout_issuer;

/// Tokens over this many bytes are refused before any decoding.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

fuzz_target!(|token: &str| {
    if let Some(issuer) = unverified_logout_issuer(token) {
        assert!(token.len() <= MAX_TOKEN_BYTES, "{} bytes", token.len());
        assert_eq!(token.matches('.').count(), 2, "{token:?}");
        assert!(issuer.len() < token.len(), "{issuer:?} from {token:?}");
    }
});
