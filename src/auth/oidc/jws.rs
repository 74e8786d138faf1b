//! Compact JWS (RFC 7515 §7.1) taken apart: the header checked, the claims
//! decoded, the signature kept for [`check_signature`](super::tokens::check_signature).
//! Shared by every signed token verified without openidconnect's ID token
//! types: back-channel logout tokens and bearer JWTs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::JsonWebKeyId;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::tokens::{SignedJws, allowed_alg};

/// A compact JWS, split and decoded, its signature not yet verified.
pub(crate) struct DecodedJws<'a> {
    pub jws: SignedJws<'a>,
    /// The header's `typ`, for the caller to judge.
    pub typ: Option<String>,
    /// The payload, a JSON object: untrusted until the signature verifies.
    pub claims: Map<String, Value>,
}

/// Why a compact JWS was refused before any key was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS: {0}")]
    Malformed(&'static str),
    /// `crit` or `cty`: no extension is understood and nesting is not
    /// supported, as for ID tokens.
    #[error("the header has `{0}`, which is not supported")]
    UnsupportedHeader(&'static str),
    /// `none`, HMAC, or an algorithm not known.
    #[error("the alg is not an allowed asymmetric signature algorithm")]
    DisallowedAlg,
}

/// The JOSE header members looked at.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    cty: Option<IgnoredAny>,
}

/// Splits the compact JWS and checks its header (`alg` one of the allowed
/// asymmetric ones; no `crit`, no `cty`); the claims are returned unchecked.
pub(crate) fn decode(token: &str) -> Result<DecodedJws<'_>, JwsError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not three parts"));
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let base64 = |part: &str, what| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwsError::Malformed(what))
    };
    // Through a map, since serde would also read a struct from an array.
    let header = serde_json::from_slice(&base64(header, "the header is not base64url")?)
        .and_then(|header: Map<String, Value>| Header::deserialize(Value::Object(header)))
        .map_err(|_| JwsError::Malformed("the header is not a JSON object with an alg"))?;
    let claims = serde_json::from_slice(&base64(payload, "the payload is not base64url")?)
        .map_err(|_| JwsError::Malformed("the payload is not a JSON object"))?;
    let signature = base64(signature, "the signature is not base64url")?;

    if header.crit.is_some() {
        return Err(JwsError::UnsupportedHeader("crit"));
    }
    if header.cty.is_some() {
        return Err(JwsError::UnsupportedHeader("cty"));
    }
    let alg = allowed_alg(&header.alg).ok_or(JwsError::DisallowedAlg)?;
    Ok(DecodedJws {
        jws: SignedJws {
            alg,
            kid: header.kid.map(JsonWebKeyId::new),
            signing_input,
            signature,
        },
        typ: header.typ,
        claims,
    })
}

/// A JWT NumericDate (RFC 7519 §2) in whole seconds; `None` for anything
/// else, negative times included.
pub(crate) fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let seconds = value.as_f64()?;
        // `as` saturates beyond u64::MAX, which is "far future" all the same.
        (seconds.is_finite() && seconds >= 0.0).then_some(seconds as u64)
    })
}
