//! Checking `x-amzn-oidc-data` the way applications behind an ALB do.
#![allow(dead_code)]

use std::path::Path;

use base64::Engine as _;

/// Decodes one JWT segment, padded (ALB) or not (JWS).
pub fn b64(segment: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE
        .decode(segment)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment))
        .unwrap_or_else(|error| panic!("{segment}: {error}"))
}

/// What `AlbJwtVerifier` is configured with.
pub struct Verifier<'a> {
    /// `signing.signer`, the ALB ARN.
    pub signer: &'a str,
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// `https://HOST/oauth2/public-keys`.
    pub jwks_uri: &'a str,
    /// The test CA that signed the proxy's certificate.
    pub ca_pem: &'a Path,
}

/// Runs aws-jwt-verify's `AlbJwtVerifier` (tests/oidc/verify-alb.mjs) on the
/// token; panics when it refuses; returns the verified payload.
pub async fn verify(verifier: &Verifier<'_>, token: &str) -> serde_json::Value {
    let script = super::idp::oidc_dir().join("verify-alb.mjs");
    let output =
        tokio::process::Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg(&script)
            .env("JWT", token)
            .env("ALB_ARN", verifier.signer)
            .env("ISSUER", verifier.issuer)
            .env("CLIENT_ID", verifier.client_id)
            .env("JWKS_URI", verifier.jwks_uri)
            .env("NODE_EXTRA_CA_CERTS", verifier.ca_pem)
            .output()
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "AlbJwtVerifier refused the token:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap()
}
