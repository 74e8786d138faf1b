//! `jwt_validation`: API clients prove who they are with a JWT in
//! `Authorization: Bearer`, verified as ALB's JWT verification action does:
//! the signature against the issuer's JWKS (asymmetric algorithms only),
//! `iss`, `exp`, `nbf` and `iat`, `aud` when configured, then the rule's
//! `require`. Nothing is added to the request: the token travels on as sent.
//!
//! A verified token is remembered until its `exp`, keyed by its SHA-256,
//! so a client re-sending it costs a hash and a lookup, not a signature
//! check.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::clock::Clock;
use super::error::AuthError;
use super::oidc::http::IdpClient;
use super::oidc::jws::{self, JwsError, numeric_date};
use super::oidc::provider::Provider;
use super::oidc::tokens::{
    IAT_LEEWAY, Refusal, SignatureRefusal, check_signature, with_provider_keys,
};
use super::require;
use crate::cache::Cache;
use crate::config::{ClaimRequirement, JwtValidationAction};
use crate::metrics::Metrics;

/// The largest token looked at (ALB's limit); longer ones are refused
/// before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// ALB's limits on the JWKS: its size, and the keys it may hold.
pub const MAX_JWKS_BYTES: usize = 150 * 1024;
pub const MAX_JWKS_KEYS: usize = 10;
/// Clock skew allowed on `nbf` and `iat`.
const LEEWAY: Duration = IAT_LEEWAY;
/// Bytes of verified tokens remembered, across all `jwt_validation` rules'
/// caches each: at most 16 MiB, so about 16,000 tokens of 1 KiB.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Why a bearer token was refused. None quotes the token: its claims name
/// users, and a client can write anything in them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the Authorization header is not `Bearer <token>` in visible ASCII")]
    NotBearer,
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error("no key of the JWKS matches the token's kid and alg")]
    UnknownKey,
    #[error("several keys of the JWKS match the token, and it has no kid")]
    AmbiguousKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's iss is not the configured issuer")]
    WrongIssuer,
    #[error("the token has no exp that is a time")]
    NoExpiry,
    #[error("the token has expired")]
    Expired,
    #[error("the token's nbf is not a time, or more than {} s ahead", LEEWAY.as_secs())]
    NotYetValid,
    #[error("the token's iat is not a time, or more than {} s ahead", LEEWAY.as_secs())]
    IssuedInFuture,
    #[error("the token's aud names none of the configured audiences")]
    WrongAudience,
}

/// A token that verified, as remembered.
#[derive(Clone)]
struct Verified {
    /// Its `exp`: from then on the entry is never used.
    exp: u64,
    claims: Arc<Map<String, Value>>,
}

/// One rule's `jwt_validation`, ready to run.
pub struct JwtValidator {
    /// Exactly as the tokens' `iss` must spell it.
    issuer: String,
    audience: Vec<String>,
    require: Vec<ClaimRequirement>,
    /// Holds the JWKS, refetched (at most once a minute) on an unknown `kid`.
    provider: Arc<Provider>,
    /// Tokens that verified, by SHA-256, until their `exp`.
    verified: Cache<Verified>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl JwtValidator {
    /// The validator for `action`. The JWKS is fetched on first use (see
    /// [`JwtValidator::provider`] to fetch it sooner).
    pub fn new(action: &JwtValidationAction, clock: Clock, metrics: Arc<Metrics>) -> Self {
        let http = IdpClient::new(action.idp_timeout).with_response_limit(MAX_JWKS_BYTES);
        let provider = Provider::jwks_only(
            action.issuer.clone(),
            action.jwks_endpoint.clone(),
            http,
            MAX_JWKS_KEYS,
        );
        Self {
            issuer: action.issuer.clone(),
            audience: action.audience.clone(),
            require: action.require.clone(),
            provider: Arc::new(provider),
            verified: Cache::new(CACHE_BYTES, 1024 * 1024),
            clock,
            metrics,
        }
    }

    /// The issuer's key set, for starting its load and for readiness.
    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    /// Whether the request's bearer token is valid and passes `require`.
    pub async fn validate(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let token = bearer_token(headers)?;
        let now = self.clock.now();
        let key = fingerprint(token);
        let claims = match self.verified.get(key, |entry| now < entry.exp) {
            Some(entry) => entry.claims,
            None => {
                let (claims, exp) = self.verify(token, now).await?;
                let claims = Arc::new(claims);
                let entry = Verified {
                    exp,
                    claims: claims.clone(),
                };
                self.verified.insert(key, entry, token.len());
                claims
            }
        };
        require::check(&self.require, &[&claims]).map_err(AuthError::JwtClaimMismatch)
    }

    /// The claims (and `exp`) of a token that verifies at `now`: the claims
    /// first, so a token refused on them costs no key lookup.
    async fn verify(&self, token: &str, now: u64) -> Result<(Map<String, Value>, u64), AuthError> {
        let invalid = AuthError::JwtInvalid;
        let decoded = jws::decode(token).map_err(|error| invalid(error.into()))?;
        let exp =
            check_claims(&decoded.claims, &self.issuer, &self.audience, now).map_err(invalid)?;
        let check = |keys: &_| {
            self.metrics.jwt_signature_checked();
            check_signature(keys, &decoded.jws)
        };
        match with_provider_keys(&self.provider, check).await {
            Ok(()) => Ok((decoded.claims, exp)),
            Err(Refusal::UnknownKey) => Err(invalid(JwtRefusal::UnknownKey)),
            Err(Refusal::Keys(error)) => Err(AuthError::JwtKeysUnavailable(Box::new(error))),
            Err(Refusal::Invalid(SignatureRefusal::DisallowedAlg)) => {
                Err(invalid(JwsError::DisallowedAlg.into()))
            }
            Err(Refusal::Invalid(SignatureRefusal::AmbiguousKey)) => {
                Err(invalid(JwtRefusal::AmbiguousKey))
            }
            Err(Refusal::Invalid(SignatureRefusal::BadSignature)) => {
                Err(invalid(JwtRefusal::BadSignature))
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme in any case,
/// RFC 6750 §2.1). No Authorization, or one of another scheme, is no bearer
/// credential at all; a second Authorization is refused, not chosen from.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let invalid = |refusal| Err(AuthError::JwtInvalid(refusal));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return match headers.contains_key(header::AUTHORIZATION) {
            true => invalid(JwtRefusal::NotBearer),
            false => Err(AuthError::JwtMissing),
        };
    };
    // Before anything else is done with it.
    if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return invalid(JwtRefusal::TooLarge);
    }
    let Ok(value) = value.to_str() else {
        return invalid(JwtRefusal::NotBearer);
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return match value.eq_ignore_ascii_case("bearer") {
            true => invalid(JwtRefusal::NotBearer),
            false => Err(AuthError::JwtMissing),
        };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::JwtMissing);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return invalid(JwtRefusal::NotBearer);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return invalid(JwtRefusal::TooLarge);
    }
    Ok(token)
}

/// Every claim rule but the signature and `require`; the token's `exp`.
fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    audience: &[String],
    now: u64,
) -> Result<u64, JwtRefusal> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(JwtRefusal::WrongIssuer);
    }
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(JwtRefusal::NoExpiry)?;
    if now >= exp {
        return Err(JwtRefusal::Expired);
    }
    let ahead = now.saturating_add(LEEWAY.as_secs());
    if let Some(nbf) = claims.get("nbf") {
        if numeric_date(nbf).is_none_or(|nbf| nbf > ahead) {
            return Err(JwtRefusal::NotYetValid);
        }
    }
    if let Some(iat) = claims.get("iat") {
        if numeric_date(iat).is_none_or(|iat| iat > ahead) {
            return Err(JwtRefusal::IssuedInFuture);
        }
    }
    if !audience.is_empty() {
        let names_one = |aud: &Value| {
            aud.as_str()
                .is_some_and(|aud| audience.iter().any(|allowed| allowed == aud))
        };
        let audience_ok = match claims.get("aud") {
            Some(Value::Array(audiences)) => audiences.iter().any(names_one),
            Some(aud) => names_one(aud),
            None => false,
        };
        if !audience_ok {
            return Err(JwtRefusal::WrongAudience);
        }
    }
    Ok(exp)
}

/// The cache key: the first 128 bits of the token's SHA-256, so an entry is
/// found only by the very token that verified (a client cannot make another
/// token collide with it).
fn fingerprint(token: &str) -> u128 {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    let bytes: [u8; 16] = digest.as_ref()[..16]
        .try_into()
        .expect("a SHA-256 digest is 32 bytes");
    u128::from_le_bytes(bytes)
}
