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
    #[error("the token has no sub to name the user by")]
    NoSubject,
}

/// A token that verified, as remembered.
#[derive(Clone)]
struct Verified {
    /// Its `exp`: from then on the entry is never used.
    exp: u64,
    claims: Arc<Map<String, Value>>,
}

/// A bearer token that verified, and its claims.
pub struct VerifiedToken {
    pub token: String,
    pub claims: Arc<Map<String, Value>>,
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
    /// The validator for `action`, its JWKS fetched on first use.
    #[cfg(test)]
    pub fn new(action: &JwtValidationAction, clock: Clock, metrics: Arc<Metrics>) -> Self {
        Self::with_key_set(action, Arc::new(Self::key_set(action)), clock, metrics)
    }

    /// The provider of `action`'s JWKS, bounded in size and number of keys.
    pub fn key_set(action: &JwtValidationAction) -> Provider {
        let http = IdpClient::new(action.idp_timeout).with_response_limit(MAX_JWKS_BYTES);
        Provider::jwks_only(
            action.issuer.clone(),
            action.jwks_endpoint.clone(),
            http,
            MAX_JWKS_KEYS,
        )
    }

    /// The validator for `action` with its [`key_set`](Self::key_set),
    /// which may be shared with other rules and kept across reloads.
    pub fn with_key_set(
        action: &JwtValidationAction,
        provider: Arc<Provider>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            issuer: action.issuer.clone(),
            audience: action.audience.clone(),
            require: action.require.clone(),
            provider,
            verified: Cache::new(CACHE_BYTES, 1024 * 1024),
            clock,
            metrics,
        }
    }

    /// The validator of `bearer: accept` on an authenticate action: the
    /// action's own IdP (its keys shared with ID tokens), `audience` as
    /// configured; the action's `require` is applied after, to the principal.
    pub fn for_action(
        issuer: String,
        audience: Vec<String>,
        provider: Arc<Provider>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            issuer,
            audience,
            require: Vec::new(),
            provider,
            verified: Cache::new(CACHE_BYTES, 1024 * 1024),
            clock,
            metrics,
        }
    }

    /// Whether the request's bearer token is valid and passes `require`.
    pub async fn validate(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let verified = self.verified_claims(headers).await?;
        require::check(&self.require, &[&verified.claims]).map_err(AuthError::JwtClaimMismatch)
    }

    /// The token of a request that carries `Authorization: Bearer`, if any:
    /// an authenticate action with `bearer: accept` then takes it instead
    /// of the session.
    pub fn offered(headers: &HeaderMap) -> bool {
        !matches!(bearer_token(headers), Err(AuthError::JwtMissing))
    }

    /// The verified claims and `exp` of the request's bearer token.
    pub async fn verified_claims(&self, headers: &HeaderMap) -> Result<VerifiedToken, AuthError> {
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
        Ok(VerifiedToken {
            token: token.to_owned(),
            claims,
        })
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
    if let Some(nbf) = claims.get("nbf")
        && numeric_date(nbf).is_none_or(|nbf| nbf > ahead)
    {
        return Err(JwtRefusal::NotYetValid);
    }
    if let Some(iat) = claims.get("iat")
        && numeric_date(iat).is_none_or(|iat| iat > ahead)
    {
        return Err(JwtRefusal::IssuedInFuture);
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

#[cfg(test)]
mod tests {
    //! Each refusal has a token here, signed in the test, that breaks that
    //! rule alone; the JWKS is served by a loopback server the test controls.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{LazyLock, Mutex};

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
    };
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use http::{HeaderValue, StatusCode};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use tokio::net::TcpListener;
    use url::Url;

    use super::*;
    use crate::config::ClaimFormat;
    use crate::dev_http;

    const ISSUER: &str = "https://idp.example.com";
    const AUDIENCE: &str = "orders-api";
    const NOW: u64 = 1_900_000_000;

    /// A private key the test signs with, and its public half as a JWK.
    struct TestKey {
        kid: &'static str,
        alg: Algorithm,
        private: EncodingKey,
        jwk: Value,
        /// The public key's bytes, for the HMAC confusion attack.
        public: Vec<u8>,
    }

    /// One RSA key, published twice: for RS256 and for PS256.
    static RSA: LazyLock<(TestKey, TestKey)> = LazyLock::new(|| {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = pair.as_der().expect("an RSA key serialises to PKCS#8");
        let pem = pem(pkcs8.as_ref());
        let public = pair.public_key();
        let n = B64.encode(public.modulus().big_endian_without_leading_zero());
        let e = B64.encode(public.exponent().big_endian_without_leading_zero());
        let key = |kid, alg, name| TestKey {
            kid,
            alg,
            private: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("a PKCS#8 RSA key"),
            jwk: json!({ "kty": "RSA", "use": "sig", "alg": name, "kid": kid, "n": n, "e": e }),
            public: public.as_ref().to_vec(),
        };
        (
            key("rsa", Algorithm::RS256, "RS256"),
            key("rsa-pss", Algorithm::PS256, "PS256"),
        )
    });

    fn ec(kid: &'static str) -> TestKey {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        let pkcs8 = pair.to_pkcs8v1().expect("a P-256 key serialises to PKCS#8");
        // An uncompressed point: 0x04 || x || y, 32 bytes each.
        let point = pair.public_key().as_ref();
        TestKey {
            kid,
            alg: Algorithm::ES256,
            private: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
            }),
            public: point.to_vec(),
        }
    }

    fn ed25519(kid: &'static str) -> TestKey {
        let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        let pkcs8 = pair
            .to_pkcs8()
            .expect("an Ed25519 key serialises to PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        TestKey {
            kid,
            alg: Algorithm::EdDSA,
            private: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519",
                "x": B64.encode(&public),
            }),
            public,
        }
    }

    impl TestKey {
        fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(self.alg);
            header.kid = Some(self.kid.to_owned());
            jsonwebtoken::encode(&header, claims, &self.private).expect("signing a test token")
        }
    }

    fn pem(der: &[u8]) -> String {
        let base64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = base64
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn jwks(keys: &[&TestKey]) -> Value {
        json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
    }

    /// Claims every rule accepts at [`NOW`]; each test spoils one.
    fn valid_claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": [AUDIENCE, "other"],
            "sub": "client-7",
            "scope": "orders:read orders:write",
            "iat": NOW - 5,
            "nbf": NOW - 5,
            "exp": NOW + 300,
        })
    }

    fn with(mut claims: Value, claim: &str, value: Value) -> Value {
        claims[claim] = value;
        claims
    }

    fn without(mut claims: Value, claim: &str) -> Value {
        claims.as_object_mut().expect("an object").remove(claim);
        claims
    }

    /// A loopback server publishing a JWKS the test sets, and a validator
    /// that trusts it, judging time by a manual clock at [`NOW`].
    struct Idp {
        validator: JwtValidator,
        jwks: Arc<Mutex<Value>>,
        fetches: Arc<AtomicUsize>,
        clock: Clock,
        metrics: Arc<Metrics>,
    }

    impl Idp {
        async fn start(keys: &[&TestKey], require: Vec<ClaimRequirement>) -> Self {
            let jwks = Arc::new(Mutex::new(jwks(keys)));
            let fetches = Arc::new(AtomicUsize::new(0));
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("a bound address");
            let (served, counted) = (jwks.clone(), fetches.clone());
            tokio::spawn(dev_http::serve(listener, move |_request| {
                counted.fetch_add(1, Ordering::SeqCst);
                let keys = served.lock().expect("not poisoned").clone();
                async move { dev_http::json(StatusCode::OK, &keys) }
            }));
            let action = JwtValidationAction {
                issuer: ISSUER.to_owned(),
                jwks_endpoint: Url::parse(&format!("http://{addr}/jwks")).expect("a URL"),
                audience: vec![AUDIENCE.to_owned()],
                require,
                idp_timeout: Duration::from_secs(5),
            };
            let clock = Clock::manual(NOW);
            let metrics = Arc::new(Metrics::new());
            Self {
                validator: JwtValidator::new(&action, clock.clone(), metrics.clone()),
                jwks,
                fetches,
                clock,
                metrics,
            }
        }

        fn serve(&self, keys: Value) {
            *self.jwks.lock().expect("not poisoned") = keys;
        }

        async fn check(&self, token: &str) -> Result<(), AuthError> {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
            headers.insert(header::AUTHORIZATION, value);
            self.validator.validate(&headers).await
        }

        async fn refusal(&self, token: &str) -> JwtRefusal {
            match self.check(token).await {
                Err(AuthError::JwtInvalid(refusal)) => refusal,
                other => panic!("expected JwtInvalid, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn every_allowed_algorithm_verifies() {
        let (rsa, pss) = &*RSA;
        let (ec, ed) = (ec("ec"), ed25519("ed"));
        let idp = Idp::start(&[rsa, pss, &ec, &ed], Vec::new()).await;
        for key in [rsa, pss, &ec, &ed] {
            let token = key.sign(&valid_claims());
            let outcome = idp.check(&token).await;
            assert!(outcome.is_ok(), "{:?}: {outcome:?}", key.alg);
        }
    }

    #[tokio::test]
    async fn each_broken_rule_is_refused() {
        let key = ec("ec");
        let stranger = ec("ec");
        let idp = Idp::start(&[&key], Vec::new()).await;
        let valid = valid_claims();
        let unsigned = format!(
            "{}.{}.",
            B64.encode(json!({ "alg": "none", "kid": "ec" }).to_string()),
            B64.encode(valid.to_string()),
        );
        let mut hmac_header = Header::new(Algorithm::HS256);
        hmac_header.kid = Some("ec".to_owned());
        let hmac =
            jsonwebtoken::encode(&hmac_header, &valid, &EncodingKey::from_secret(&key.public))
                .expect("HMAC signing");
        let padded = with(valid.clone(), "pad", json!("x".repeat(MAX_TOKEN_BYTES)));
        let cases = [
            (stranger.sign(&valid), JwtRefusal::BadSignature),
            (unsigned, JwtRefusal::Jws(JwsError::DisallowedAlg)),
            (hmac, JwtRefusal::Jws(JwsError::DisallowedAlg)),
            (
                "a.b".to_owned(),
                JwtRefusal::Jws(JwsError::Malformed("not three parts")),
            ),
            (key.sign(&padded), JwtRefusal::TooLarge),
            (
                key.sign(&with(
                    valid.clone(),
                    "iss",
                    json!("https://idp.example.com/"),
                )),
                JwtRefusal::WrongIssuer,
            ),
            (
                key.sign(&without(valid.clone(), "exp")),
                JwtRefusal::NoExpiry,
            ),
            (
                key.sign(&with(valid.clone(), "exp", json!("tomorrow"))),
                JwtRefusal::NoExpiry,
            ),
            (
                key.sign(&with(valid.clone(), "exp", json!(NOW))),
                JwtRefusal::Expired,
            ),
            (
                key.sign(&with(valid.clone(), "nbf", json!(NOW + 61))),
                JwtRefusal::NotYetValid,
            ),
            (
                key.sign(&with(valid.clone(), "iat", json!(NOW + 61))),
                JwtRefusal::IssuedInFuture,
            ),
            (
                key.sign(&with(valid.clone(), "aud", json!("orders-api-v2"))),
                JwtRefusal::WrongAudience,
            ),
            (
                key.sign(&without(valid.clone(), "aud")),
                JwtRefusal::WrongAudience,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(idp.refusal(&token).await, expected);
        }
        // Within the leeway, and without the optional claims, all is well.
        let skewed = with(valid.clone(), "nbf", json!(NOW + 60));
        assert!(idp.check(&key.sign(&skewed)).await.is_ok());
        let bare = without(without(valid, "nbf"), "iat");
        assert!(idp.check(&key.sign(&bare)).await.is_ok());
    }

    #[tokio::test]
    async fn no_bearer_credential_is_missing_not_invalid() {
        let key = ec("ec");
        let idp = Idp::start(&[&key], Vec::new()).await;
        let mut headers = HeaderMap::new();
        let missing = idp.validator.validate(&headers).await;
        assert!(matches!(missing, Err(AuthError::JwtMissing)), "{missing:?}");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        let basic = idp.validator.validate(&headers).await;
        assert!(matches!(basic, Err(AuthError::JwtMissing)), "{basic:?}");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        let empty = idp.validator.validate(&headers).await;
        assert!(
            matches!(empty, Err(AuthError::JwtInvalid(JwtRefusal::NotBearer))),
            "{empty:?}"
        );
        let token = key.sign(&valid_claims());
        let lower = HeaderValue::from_str(&format!("bearer {token}")).expect("a header value");
        headers.insert(header::AUTHORIZATION, lower);
        assert!(idp.validator.validate(&headers).await.is_ok());
    }

    #[tokio::test]
    async fn a_verified_token_is_not_checked_again_until_it_expires() {
        let key = ec("ec");
        let idp = Idp::start(&[&key], Vec::new()).await;
        let token = key.sign(&valid_claims());
        for _ in 0..3 {
            assert!(idp.check(&token).await.is_ok());
        }
        assert_eq!(idp.metrics.jwt_signature_checks(), 1);
        idp.clock.set(NOW + 299);
        assert!(idp.check(&token).await.is_ok());
        idp.clock.set(NOW + 300);
        assert_eq!(idp.refusal(&token).await, JwtRefusal::Expired);
        // A refused token is not remembered: its claims are checked each time.
        let other = key.sign(&with(valid_claims(), "sub", json!("client-8")));
        assert_eq!(idp.refusal(&other).await, JwtRefusal::Expired);
        assert_eq!(idp.metrics.jwt_signature_checks(), 1);
    }

    #[tokio::test]
    async fn require_is_checked_on_every_request_and_answers_forbidden() {
        let key = ec("ec");
        let require = vec![ClaimRequirement {
            name: "scope".into(),
            format: ClaimFormat::SpaceSeparated,
            values: vec!["orders:admin".into()],
        }];
        let idp = Idp::start(&[&key], require).await;
        let token = key.sign(&valid_claims());
        for _ in 0..2 {
            let outcome = idp.check(&token).await;
            assert!(
                matches!(outcome, Err(AuthError::JwtClaimMismatch(_))),
                "{outcome:?}"
            );
        }
        let admin = key.sign(&with(valid_claims(), "scope", json!("orders:admin")));
        assert!(idp.check(&admin).await.is_ok());
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_the_keys_once() {
        let (old, new) = (ec("old"), ec("new"));
        let idp = Idp::start(&[&old], Vec::new()).await;
        assert!(idp.check(&old.sign(&valid_claims())).await.is_ok());
        assert_eq!(idp.fetches.load(Ordering::SeqCst), 1);
        // Rotated: the new key is picked up by one refetch.
        idp.serve(jwks(&[&old, &new]));
        assert!(idp.check(&new.sign(&valid_claims())).await.is_ok());
        assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);
        // A forged kid within the minute costs no fetch.
        let forged = ec("forged");
        assert_eq!(
            idp.refusal(&forged.sign(&valid_claims())).await,
            JwtRefusal::UnknownKey
        );
        assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_jwks_over_albs_limits_is_refused() {
        let key = ec("ec");
        let token = key.sign(&valid_claims());
        let many: Vec<TestKey> = (0..=MAX_JWKS_KEYS).map(|_| ec("ec-n")).collect();
        let idp = Idp::start(&many.iter().collect::<Vec<_>>(), Vec::new()).await;
        let outcome = idp.check(&token).await;
        assert!(
            matches!(outcome, Err(AuthError::JwtKeysUnavailable(_))),
            "{outcome:?}"
        );

        let idp = Idp::start(&[&key], Vec::new()).await;
        let mut large = jwks(&[&key]);
        large["padding"] = json!("x".repeat(MAX_JWKS_BYTES));
        idp.serve(large);
        let outcome = idp.check(&token).await;
        assert!(
            matches!(outcome, Err(AuthError::JwtKeysUnavailable(_))),
            "{outcome:?}"
        );
    }
}
