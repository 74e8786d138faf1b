//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0): the
//! signed JWT an IdP POSTs to end the sessions of a user (`sub`) or of one of
//! its own sessions (`sid`). Verified as §2.6 asks, with the ID token's keys
//! and algorithms; remembering each `jti` to refuse replays is the caller's.

use std::time::Duration;

use serde_json::{Map, Value};

use super::jws::{self, JwsError, numeric_date};
use super::provider::{Endpoints, Provider};
use super::tokens::{
    IAT_LEEWAY, Refusal, SignatureRefusal, SignedJws, check_signature, with_provider_keys,
};
use crate::auth::error::AuthError;

/// The largest logout token looked at. IdPs send a few hundred bytes; the
/// bound is checked before any decoding, so junk costs nothing to refuse.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How long after its `iat` a logout token is accepted.
///
/// An IdP builds the token when the user logs out and POSTs it at once, so
/// an honest token is seconds old; five minutes leave room for an IdP that
/// queues deliveries or retries a failed one, while keeping short the time
/// a captured token could be replayed, and with it the set of `jti`s the
/// caller must remember ([`JTI_RETENTION`]). Clock skew is allowed for
/// separately: a token may also be up to a minute ahead of our clock.
pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(5 * 60);

/// How long the caller must remember an accepted token's `jti` to refuse
/// every replay of it: a token is accepted while its `iat` lies between
/// [`MAX_TOKEN_AGE`] ago and the clock-skew leeway ahead, so one first seen
/// now may still be accepted that long from now.
pub const JTI_RETENTION: Duration =
    Duration::from_secs(MAX_TOKEN_AGE.as_secs() + IAT_LEEWAY.as_secs());

/// The member of `events` that makes a JWT a back-channel logout token.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    /// The IdP, exactly as [`Endpoints::issuer`].
    pub iss: String,
    /// End every session of this user; at least one of `sub` and `sid` is
    /// set, and when both are, only the sessions of that user under that
    /// IdP session.
    pub sub: Option<String>,
    /// End the sessions made under this IdP session (the ID token's `sid`).
    pub sid: Option<String>,
    /// Unique per token at its issuer: replays are refused by remembering
    /// (`iss`, `jti`) for [`JTI_RETENTION`].
    pub jti: String,
    /// When the IdP made the token, in Unix seconds.
    pub iat: u64,
}

/// Why a logout token was refused. None quotes the token: it is the IdP's
/// (or an attacker's) text, and its claims name users.
#[derive(Debug, thiserror::Error)]
pub enum LogoutRefusal {
    #[error("the logout token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the logout token is not a compact JWS: {0}")]
    Malformed(&'static str),
    /// `crit` or `cty`: no extension is understood and nesting is not
    /// supported, as for ID tokens.
    #[error("the logout token's header has `{0}`, which is not supported")]
    UnsupportedHeader(&'static str),
    /// A `typ` other than `logout+jwt` or `JWT`: another kind of token (an
    /// access token, `at+jwt`) passed off as a logout token.
    #[error("the logout token's typ is not logout+jwt or JWT")]
    WrongType,
    /// `none`, HMAC, or an algorithm not known.
    #[error("the logout token's alg is not an allowed asymmetric signature algorithm")]
    DisallowedAlg,
    #[error("the logout token's iss is not the IdP's issuer")]
    WrongIssuer,
    #[error("the logout token's aud does not name this client")]
    WrongAudience,
    #[error("the logout token has no iat that is a time")]
    NoIssueTime,
    #[error(
        "the logout token's iat is more than {} s in the future",
        IAT_LEEWAY.as_secs()
    )]
    IssuedInFuture,
    #[error(
        "the logout token was issued more than {} s ago",
        MAX_TOKEN_AGE.as_secs()
    )]
    TooOld,
    #[error("the logout token has expired, or has an exp that is not a time")]
    Expired,
    #[error("the logout token has no jti, or an empty one")]
    NoJti,
    #[error("the logout token's events holds no back-channel logout event")]
    NotALogoutEvent,
    #[error("the logout token has neither sub nor sid")]
    NoSubjectOrSession,
    #[error("the logout token's {0} is not a non-empty string")]
    BadSubjectOrSession(&'static str),
    /// A logout token must not carry one (§2.4): a token with a `nonce` is
    /// an ID token passed off as a logout token.
    #[error("the logout token has a nonce")]
    NoncePresent,
    #[error("no key of the IdP matches the logout token's kid and alg")]
    UnknownKey,
    #[error("several keys of the IdP match the logout token, and it has no kid")]
    AmbiguousKey,
    #[error("the logout token's signature does not verify")]
    BadSignature,
    /// Not the token's fault: the IdP's keys could not be loaded.
    #[error("the IdP's keys are not available to verify the logout token")]
    KeysUnavailable(#[source] AuthError),
}

/// Verifies a logout token as OpenID Connect Back-Channel Logout 1.0 §2.6
/// asks, at `now` (Unix seconds): the claims first, then the signature, so
/// a token refused on its claims costs no key lookup.
pub async fn verify_logout_token(
    provider: &Provider,
    endpoints: &Endpoints,
    client_id: &str,
    token: &str,
    now: u64,
) -> Result<LogoutRequest, LogoutRefusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(LogoutRefusal::TooLarge);
    }
    let (jws, claims) = decode(token)?;
    let request = check_claims(&claims, &endpoints.issuer, client_id, now)?;
    let verified = with_provider_keys(provider, |keys| check_signature(keys, &jws)).await;
    match verified {
        Ok(()) => Ok(request),
        Err(Refusal::UnknownKey) => Err(LogoutRefusal::UnknownKey),
        Err(Refusal::Keys(error)) => Err(LogoutRefusal::KeysUnavailable(error)),
        Err(Refusal::Invalid(SignatureRefusal::DisallowedAlg)) => Err(LogoutRefusal::DisallowedAlg),
        Err(Refusal::Invalid(SignatureRefusal::AmbiguousKey)) => Err(LogoutRefusal::AmbiguousKey),
        Err(Refusal::Invalid(SignatureRefusal::BadSignature)) => Err(LogoutRefusal::BadSignature),
    }
}

/// The `iss` a logout token claims, before anything about it is checked:
/// only to pick the authenticate actions whose IdP should check it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let (_, claims) = decode(token).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Splits the compact JWS and checks its header; the claims are returned
/// unchecked.
fn decode(token: &str) -> Result<(SignedJws<'_>, Map<String, Value>), LogoutRefusal> {
    let decoded = jws::decode(token).map_err(|error| match error {
        JwsError::Malformed(what) => LogoutRefusal::Malformed(what),
        JwsError::UnsupportedHeader(member) => LogoutRefusal::UnsupportedHeader(member),
        JwsError::DisallowedAlg => LogoutRefusal::DisallowedAlg,
    })?;
    if decoded
        .typ
        .as_deref()
        .is_some_and(|typ| !is_logout_type(typ))
    {
        return Err(LogoutRefusal::WrongType);
    }
    Ok((decoded.jws, decoded.claims))
}

/// `logout+jwt` (§2.4) or plain `JWT`, either with its optional
/// `application/` prefix (RFC 7515 §4.1.9), in any case.
fn is_logout_type(typ: &str) -> bool {
    const PREFIX: &str = "application/";
    let media_type = match typ.get(..PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(PREFIX) => &typ[PREFIX.len()..],
        _ => typ,
    };
    media_type.eq_ignore_ascii_case("logout+jwt") || media_type.eq_ignore_ascii_case("jwt")
}

/// Every claim rule of §2.6 but the signature.
fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    now: u64,
) -> Result<LogoutRequest, LogoutRefusal> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(LogoutRefusal::WrongIssuer);
    }
    let names_us = |aud: &Value| aud.as_str() == Some(client_id);
    let audience_ok = match claims.get("aud") {
        Some(Value::Array(audiences)) => audiences.iter().any(names_us),
        Some(aud) => names_us(aud),
        None => false,
    };
    if !audience_ok {
        return Err(LogoutRefusal::WrongAudience);
    }

    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(LogoutRefusal::NoIssueTime)?;
    if iat > now.saturating_add(IAT_LEEWAY.as_secs()) {
        return Err(LogoutRefusal::IssuedInFuture);
    }
    if now > iat.saturating_add(MAX_TOKEN_AGE.as_secs()) {
        return Err(LogoutRefusal::TooOld);
    }
    if let Some(exp) = claims.get("exp") {
        let exp = numeric_date(exp).ok_or(LogoutRefusal::Expired)?;
        if now >= exp.saturating_add(IAT_LEEWAY.as_secs()) {
            return Err(LogoutRefusal::Expired);
        }
    }

    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => jti.clone(),
        _ => return Err(LogoutRefusal::NoJti),
    };
    let logout_event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(LOGOUT_EVENT));
    if !logout_event.is_some_and(Value::is_object) {
        return Err(LogoutRefusal::NotALogoutEvent);
    }
    let sub = optional_name(claims, "sub")?;
    let sid = optional_name(claims, "sid")?;
    if sub.is_none() && sid.is_none() {
        return Err(LogoutRefusal::NoSubjectOrSession);
    }
    if claims.contains_key("nonce") {
        return Err(LogoutRefusal::NoncePresent);
    }
    Ok(LogoutRequest {
        iss: issuer.to_owned(),
        sub,
        sid,
        jti,
        iat,
    })
}

/// `sub` or `sid`: absent, or a non-empty string. Anything else is refused
/// rather than ignored, since it decides whose sessions end.
fn optional_name(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<String>, LogoutRefusal> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::String(name)) if !name.is_empty() => Ok(Some(name.clone())),
        Some(_) => Err(LogoutRefusal::BadSubjectOrSession(claim)),
    }
}

#[cfg(test)]
mod tests {
    //! Every rule has a token here, signed by the IdP's own key, that breaks
    //! that rule alone. The IdP is a loopback server serving the JWKS, so the
    //! keys reach the check by the same path as in production.

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, LazyLock, Mutex};

    use aws_lc_rs::hmac;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use http::StatusCode;
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::auth::oidc::http::IdpClient;
    use crate::auth::oidc::provider::ConfiguredEndpoints;
    use crate::auth::oidc::tokens::{self, unix_now};
    use crate::dev_http;

    const ISSUER: &str = "https://idp.example";
    const CLIENT_ID: &str = "portcullis";
    const CLIENT_SECRET: &str = "portcullis-secret";
    /// The time every logout token is checked at: no test reads the clock,
    /// but for ID tokens, which openidconnect checks against it.
    const NOW: u64 = 1_800_000_000;
    const SID: &str = "08a5019c-17e1-4977-8f42-65a12843ea02";
    /// Planted in hostile values: no refusal may repeat it.
    const MARKER: &str = "evil-marker";

    static IDP_KEY: LazyLock<TestKey> = LazyLock::new(|| TestKey::new("idp-key"));
    static OTHER_KEY: LazyLock<TestKey> = LazyLock::new(|| TestKey::new("other-key"));
    static ROTATED_KEY: LazyLock<TestKey> = LazyLock::new(|| TestKey::new("rotated-key"));

    /// A P-256 key the test signs with, and its public half as a JWK.
    struct TestKey {
        kid: String,
        pair: EcdsaKeyPair,
        jwk: Value,
    }

    impl TestKey {
        fn new(kid: &str) -> Self {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("P-256 key generation");
            // An uncompressed point: 0x04 || x || y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            });
            Self {
                kid: kid.to_owned(),
                pair,
                jwk,
            }
        }

        /// The header an honest IdP puts on a logout token signed with this key.
        fn header(&self) -> Value {
            json!({ "alg": "ES256", "kid": self.kid, "typ": "logout+jwt" })
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_with_header(&self.header(), claims)
        }

        /// Signs with this key whatever `header` claims.
        fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
            let signing_input = format!("{}.{}", encode(header), encode(claims));
            let signature = self
                .pair
                .sign(&SystemRandom::new(), signing_input.as_bytes())
                .expect("ECDSA signing");
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
    }

    fn encode(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn jwks(keys: &[&TestKey]) -> Value {
        json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
    }

    /// Claims every rule accepts at [`NOW`]; each test spoils one.
    fn valid_claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "iat": NOW - 5,
            "exp": NOW + 115,
            "jti": "bWJq-4uCeDoKx",
            "sub": "alice",
            "sid": SID,
            "events": { LOGOUT_EVENT: {} },
        })
    }

    fn without(mut claims: Value, claim: &str) -> Value {
        claims.as_object_mut().expect("an object").remove(claim);
        claims
    }

    fn with(mut claims: Value, claim: &str, value: Value) -> Value {
        claims[claim] = value;
        claims
    }

    /// A loopback IdP serving a JWKS the test sets, and a provider that
    /// knows it by configuration (no discovery).
    struct Idp {
        provider: Provider,
        endpoints: Arc<Endpoints>,
        jwks: Arc<Mutex<Value>>,
        jwks_fetches: Arc<AtomicUsize>,
    }

    impl Idp {
        async fn start(keys: &[&TestKey]) -> Self {
            let jwks = Arc::new(Mutex::new(jwks(keys)));
            let jwks_fetches = Arc::new(AtomicUsize::new(0));
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("a bound address");
            let (served, counted) = (jwks.clone(), jwks_fetches.clone());
            tokio::spawn(dev_http::serve(listener, move |_request| {
                counted.fetch_add(1, Ordering::SeqCst);
                let keys = served.lock().expect("not poisoned").clone();
                async move { dev_http::json(StatusCode::OK, &keys) }
            }));
            let (provider, endpoints) = provider(&format!("http://{addr}")).await;
            Self {
                provider,
                endpoints,
                jwks,
                jwks_fetches,
            }
        }

        fn serve_keys(&self, keys: &[&TestKey]) {
            *self.jwks.lock().expect("not poisoned") = jwks(keys);
        }

        fn jwks_fetches(&self) -> usize {
            self.jwks_fetches.load(Ordering::SeqCst)
        }

        async fn verify(&self, token: &str) -> Result<LogoutRequest, LogoutRefusal> {
            self.verify_at(token, NOW).await
        }

        async fn verify_at(&self, token: &str, now: u64) -> Result<LogoutRequest, LogoutRefusal> {
            verify_logout_token(&self.provider, &self.endpoints, CLIENT_ID, token, now).await
        }
    }

    /// A provider for `ISSUER` whose endpoints are all at `origin`.
    async fn provider(origin: &str) -> (Provider, Arc<Endpoints>) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let url = |path: &str| Some(format!("{origin}{path}").parse().expect("a URL"));
        let configured = ConfiguredEndpoints {
            authorization: url("/authorize"),
            token: url("/token"),
            userinfo: url("/userinfo"),
            jwks_uri: url("/jwks"),
            ..ConfiguredEndpoints::default()
        };
        let http = IdpClient::new(Duration::from_secs(5));
        let provider = Provider::new(ISSUER.to_owned(), configured, http);
        let endpoints = provider.endpoints().await.expect("configured endpoints");
        (provider, endpoints)
    }

    /// Fails unless `$token` is refused with `$refusal`, and checks that the
    /// refusal does not repeat [`MARKER`].
    macro_rules! assert_refused {
        ($idp:expr, $token:expr, $refusal:pat) => {
            match $idp.verify(&$token).await {
                Err(refusal @ $refusal) => assert!(
                    !refusal.to_string().contains(MARKER),
                    "`{refusal}` quotes the token"
                ),
                other => panic!("expected {}, got {other:?}", stringify!($refusal)),
            }
        };
    }

    #[track_caller]
    fn accepted(result: Result<LogoutRequest, LogoutRefusal>) -> LogoutRequest {
        result.unwrap_or_else(|refusal| panic!("a valid token was refused: {refusal}"))
    }

    #[tokio::test]
    async fn a_valid_token_is_accepted() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let request = accepted(idp.verify(&IDP_KEY.sign(&valid_claims())).await);
        assert_eq!(
            request,
            LogoutRequest {
                iss: ISSUER.to_owned(),
                sub: Some("alice".to_owned()),
                sid: Some(SID.to_owned()),
                jti: "bWJq-4uCeDoKx".to_owned(),
                iat: NOW - 5,
            }
        );
        assert_eq!(idp.jwks_fetches(), 1);
    }

    #[tokio::test]
    async fn what_the_rules_leave_open_is_accepted() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let cases = [
            ("sid alone", without(valid_claims(), "sub")),
            ("sub alone", without(valid_claims(), "sid")),
            ("no exp", without(valid_claims(), "exp")),
            (
                "aud an array",
                with(valid_claims(), "aud", json!(["other", CLIENT_ID])),
            ),
            (
                "iat a float",
                with(valid_claims(), "iat", json!(1_799_999_999.5)),
            ),
            (
                "an event with members",
                with(
                    valid_claims(),
                    "events",
                    json!({ LOGOUT_EVENT: { "x": 1 }, "y": {} }),
                ),
            ),
        ];
        for (case, claims) in cases {
            let result = idp.verify(&IDP_KEY.sign(&claims)).await;
            assert!(result.is_ok(), "{case}: {result:?}");
        }

        let typs = [None, Some("JWT"), Some("jwt"), Some("Logout+JWT")];
        let prefixed = [Some("application/logout+jwt"), Some("Application/JWT")];
        for typ in typs.into_iter().chain(prefixed) {
            let mut header = IDP_KEY.header();
            header["typ"] = typ.map_or(Value::Null, Value::from);
            if typ.is_none() {
                header.as_object_mut().expect("an object").remove("typ");
            }
            let token = IDP_KEY.sign_with_header(&header, &valid_claims());
            let result = idp.verify(&token).await;
            assert!(result.is_ok(), "typ {typ:?}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_signature_by_another_key_is_refused() {
        let idp = Idp::start(&[&IDP_KEY]).await;

        // Another key, naming the IdP's.
        let token = OTHER_KEY.sign_with_header(&IDP_KEY.header(), &valid_claims());
        assert_refused!(idp, token, LogoutRefusal::BadSignature);

        // Claims changed after signing.
        let token = IDP_KEY.sign(&valid_claims());
        let (_, signature) = token.rsplit_once('.').expect("three parts");
        let claims = with(valid_claims(), "sub", json!("bob"));
        let forged = format!(
            "{}.{}.{signature}",
            encode(&IDP_KEY.header()),
            encode(&claims)
        );
        assert_refused!(idp, forged, LogoutRefusal::BadSignature);

        // Another key, under its own name: unknown even after a refetch.
        let token = OTHER_KEY.sign(&valid_claims());
        assert_refused!(idp, token, LogoutRefusal::UnknownKey);
        assert_eq!(idp.jwks_fetches(), 2, "one refetch for the unknown kid");
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_as_for_id_tokens() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        accepted(idp.verify(&IDP_KEY.sign(&valid_claims())).await);

        idp.serve_keys(&[&IDP_KEY, &ROTATED_KEY]);
        accepted(idp.verify(&ROTATED_KEY.sign(&valid_claims())).await);
        assert_eq!(idp.jwks_fetches(), 2, "refetched once");

        // Within the minute, an unknown kid fetches nothing.
        idp.serve_keys(&[&IDP_KEY, &ROTATED_KEY, &OTHER_KEY]);
        assert_refused!(
            idp,
            OTHER_KEY.sign(&valid_claims()),
            LogoutRefusal::UnknownKey
        );
        assert_eq!(idp.jwks_fetches(), 2, "refetches are rate-limited");
    }

    #[tokio::test]
    async fn without_a_kid_the_one_fitting_key_is_used() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let header = json!({ "alg": "ES256", "typ": "logout+jwt" });
        let token = IDP_KEY.sign_with_header(&header, &valid_claims());
        accepted(idp.verify(&token).await);

        let idp = Idp::start(&[&IDP_KEY, &OTHER_KEY]).await;
        assert_refused!(idp, token, LogoutRefusal::AmbiguousKey);
    }

    #[tokio::test]
    async fn alg_none_and_hmac_are_refused() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let unsigned = |header: Value| format!("{}.{}.", encode(&header), encode(&valid_claims()));
        assert_refused!(
            idp,
            unsigned(json!({ "alg": "none", "typ": "logout+jwt" })),
            LogoutRefusal::DisallowedAlg
        );
        assert_refused!(
            idp,
            unsigned(json!({ "alg": "none", "kid": IDP_KEY.kid })),
            LogoutRefusal::DisallowedAlg
        );
        assert_refused!(
            idp,
            unsigned(json!({ "alg": MARKER, "kid": IDP_KEY.kid })),
            LogoutRefusal::DisallowedAlg
        );

        // HS256 keyed with the client secret, which the IdP knows, and so
        // does whoever else shares the client registration.
        for kid in [None, Some(&IDP_KEY.kid)] {
            let header = json!({ "alg": "HS256", "kid": kid, "typ": "logout+jwt" });
            let signing_input = format!("{}.{}", encode(&header), encode(&valid_claims()));
            let key = hmac::Key::new(hmac::HMAC_SHA256, CLIENT_SECRET.as_bytes());
            let tag = hmac::sign(&key, signing_input.as_bytes());
            let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag));
            assert_refused!(idp, token, LogoutRefusal::DisallowedAlg);
        }
        assert_eq!(idp.jwks_fetches(), 0, "refused before any key is needed");
    }

    #[tokio::test]
    async fn iss_must_be_the_issuer_exactly() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        for iss in [
            json!(format!("https://{MARKER}.example")),
            json!(format!("{ISSUER}/")),
            json!([ISSUER]),
        ] {
            let token = IDP_KEY.sign(&with(valid_claims(), "iss", iss));
            assert_refused!(idp, token, LogoutRefusal::WrongIssuer);
        }
        let token = IDP_KEY.sign(&without(valid_claims(), "iss"));
        assert_refused!(idp, token, LogoutRefusal::WrongIssuer);
    }

    #[tokio::test]
    async fn aud_must_name_this_client() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        for aud in [
            json!(MARKER),
            json!([MARKER, "another"]),
            json!([]),
            json!({ "aud": CLIENT_ID }),
            json!(format!("{CLIENT_ID} ")),
        ] {
            let token = IDP_KEY.sign(&with(valid_claims(), "aud", aud));
            assert_refused!(idp, token, LogoutRefusal::WrongAudience);
        }
        let token = IDP_KEY.sign(&without(valid_claims(), "aud"));
        assert_refused!(idp, token, LogoutRefusal::WrongAudience);
    }

    #[tokio::test]
    async fn iat_is_required() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let token = IDP_KEY.sign(&without(valid_claims(), "iat"));
        assert_refused!(idp, token, LogoutRefusal::NoIssueTime);
        for iat in [json!(NOW.to_string()), json!(-1), json!(null)] {
            let token = IDP_KEY.sign(&with(valid_claims(), "iat", iat));
            assert_refused!(idp, token, LogoutRefusal::NoIssueTime);
        }
    }

    #[tokio::test]
    async fn iat_may_be_ahead_by_the_leeway_and_no_more() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let ahead = |seconds: u64| {
            let claims = with(valid_claims(), "iat", json!(NOW + seconds));
            IDP_KEY.sign(&with(claims, "exp", json!(NOW + seconds + 120)))
        };
        accepted(idp.verify(&ahead(IAT_LEEWAY.as_secs())).await);
        assert_refused!(
            idp,
            ahead(IAT_LEEWAY.as_secs() + 1),
            LogoutRefusal::IssuedInFuture
        );
        assert_refused!(idp, ahead(86_400), LogoutRefusal::IssuedInFuture);
    }

    #[tokio::test]
    async fn a_token_older_than_the_max_age_is_refused() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let aged = |seconds: u64| {
            let claims = with(valid_claims(), "iat", json!(NOW - seconds));
            IDP_KEY.sign(&without(claims, "exp"))
        };
        accepted(idp.verify(&aged(MAX_TOKEN_AGE.as_secs())).await);
        assert_refused!(
            idp,
            aged(MAX_TOKEN_AGE.as_secs() + 1),
            LogoutRefusal::TooOld
        );
        assert_refused!(idp, aged(NOW), LogoutRefusal::TooOld);
    }

    #[tokio::test]
    async fn jti_retention_covers_every_time_a_token_is_accepted() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        // The longest-lived token: as far ahead as the leeway allows.
        let claims = with(valid_claims(), "iat", json!(NOW + IAT_LEEWAY.as_secs()));
        let token = IDP_KEY.sign(&without(claims, "exp"));
        accepted(idp.verify_at(&token, NOW).await);
        let last = NOW + JTI_RETENTION.as_secs();
        accepted(idp.verify_at(&token, last).await);
        assert!(matches!(
            idp.verify_at(&token, last + 1).await,
            Err(LogoutRefusal::TooOld)
        ));
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let expiring = |exp: Value| IDP_KEY.sign(&with(valid_claims(), "exp", exp));
        // Expired, but within the leeway.
        accepted(idp.verify(&expiring(json!(NOW - 59))).await);
        assert_refused!(idp, expiring(json!(NOW - 60)), LogoutRefusal::Expired);
        assert_refused!(idp, expiring(json!(NOW - 3600)), LogoutRefusal::Expired);
        assert_refused!(
            idp,
            expiring(json!((NOW + 60).to_string())),
            LogoutRefusal::Expired
        );
        assert_refused!(idp, expiring(json!(null)), LogoutRefusal::Expired);
    }

    #[tokio::test]
    async fn jti_is_required() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let token = IDP_KEY.sign(&without(valid_claims(), "jti"));
        assert_refused!(idp, token, LogoutRefusal::NoJti);
        for jti in [json!(""), json!(42), json!(["a"]), json!(null)] {
            let token = IDP_KEY.sign(&with(valid_claims(), "jti", jti));
            assert_refused!(idp, token, LogoutRefusal::NoJti);
        }
    }

    #[tokio::test]
    async fn events_must_hold_the_logout_event() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let token = IDP_KEY.sign(&without(valid_claims(), "events"));
        assert_refused!(idp, token, LogoutRefusal::NotALogoutEvent);
        for events in [
            json!({}),
            json!({ "http://schemas.openid.net/event/backchannel-logout/": {} }),
            json!({ "http://schemas.openid.net/secevent/risc/event-type/sessions-revoked": {} }),
            json!({ LOGOUT_EVENT: true }),
            json!({ LOGOUT_EVENT: "" }),
            json!({ LOGOUT_EVENT: [] }),
            json!({ LOGOUT_EVENT: null }),
            json!([LOGOUT_EVENT]),
            json!(LOGOUT_EVENT),
        ] {
            let token = IDP_KEY.sign(&with(valid_claims(), "events", events));
            assert_refused!(idp, token, LogoutRefusal::NotALogoutEvent);
        }
    }

    #[tokio::test]
    async fn sub_or_sid_is_required_and_each_a_string() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let token = IDP_KEY.sign(&without(without(valid_claims(), "sub"), "sid"));
        assert_refused!(idp, token, LogoutRefusal::NoSubjectOrSession);

        for claim in ["sub", "sid"] {
            for value in [json!(""), json!(42), json!(null), json!([MARKER])] {
                let token = IDP_KEY.sign(&with(valid_claims(), claim, value));
                assert_refused!(idp, token, LogoutRefusal::BadSubjectOrSession(_));
            }
        }
    }

    #[tokio::test]
    async fn a_nonce_is_refused() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        for nonce in [json!("n-0S6_WzA2Mj"), json!(""), json!(null)] {
            let token = IDP_KEY.sign(&with(valid_claims(), "nonce", nonce));
            assert_refused!(idp, token, LogoutRefusal::NoncePresent);
        }
    }

    #[tokio::test]
    async fn typ_must_say_logout_token_or_plain_jwt() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        for typ in [
            "at+jwt",
            "application/at+jwt",
            "secevent+jwt",
            "logout+jwt+x",
            "application/",
            "",
            MARKER,
        ] {
            let mut header = IDP_KEY.header();
            header["typ"] = json!(typ);
            let token = IDP_KEY.sign_with_header(&header, &valid_claims());
            assert_refused!(idp, token, LogoutRefusal::WrongType);
        }
        let mut header = IDP_KEY.header();
        header["typ"] = json!(1);
        let token = IDP_KEY.sign_with_header(&header, &valid_claims());
        assert_refused!(idp, token, LogoutRefusal::Malformed(_));
    }

    #[tokio::test]
    async fn crit_and_cty_are_refused_as_for_id_tokens() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        for (member, value) in [("crit", json!(["exp"])), ("cty", json!("JWT"))] {
            let mut header = IDP_KEY.header();
            header[member] = value;
            let token = IDP_KEY.sign_with_header(&header, &valid_claims());
            assert_refused!(idp, token, LogoutRefusal::UnsupportedHeader(_));
        }
    }

    #[tokio::test]
    async fn an_oversized_token_is_refused_unread() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let padding = "x".repeat(MAX_TOKEN_BYTES);
        let token = IDP_KEY.sign(&with(valid_claims(), "padding", json!(padding)));
        assert_refused!(idp, token, LogoutRefusal::TooLarge);
        assert_refused!(
            idp,
            ".".repeat(MAX_TOKEN_BYTES + 1),
            LogoutRefusal::TooLarge
        );
        assert_eq!(idp.jwks_fetches(), 0);

        // Just under the bound, it is an ordinary token.
        let padding = "x".repeat(MAX_TOKEN_BYTES / 2);
        let token = IDP_KEY.sign(&with(valid_claims(), "padding", json!(padding)));
        assert!(token.len() < MAX_TOKEN_BYTES);
        accepted(idp.verify(&token).await);
    }

    #[tokio::test]
    async fn garbage_and_truncated_tokens_are_refused() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let claims = encode(&valid_claims());
        let header = encode(&IDP_KEY.header());
        let garbage = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "garbage".into(),
            "a.b.c".into(),
            format!("{header}.{claims}"),
            format!("{header}.{claims}.sig.extra"),
            format!("{header}.{claims}.!!!!"),
            format!("{header}.{claims}==.AAAA"),
            format!("{}.{claims}.AAAA", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.{claims}.AAAA", encode(&json!(["alg", "ES256"]))),
            format!("{header}.{}.AAAA", encode(&json!("a string"))),
            format!("{header}.{}.AAAA", URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            "\u{0}\u{1b}[31m.\u{feff}.é".into(),
        ];
        for token in garbage {
            assert!(
                matches!(idp.verify(&token).await, Err(LogoutRefusal::Malformed(_))),
                "{token:?}"
            );
        }

        // Cut anywhere, a valid token is refused, never accepted nor a panic.
        let token = IDP_KEY.sign(&valid_claims());
        for end in 0..token.len() {
            let refusal = idp.verify(&token[..end]).await;
            assert!(
                matches!(
                    refusal,
                    Err(LogoutRefusal::Malformed(_) | LogoutRefusal::BadSignature)
                ),
                "cut at {end}: {refusal:?}"
            );
        }
    }

    #[tokio::test]
    async fn unavailable_keys_are_not_the_tokens_fault() {
        // A port nothing listens on: the JWKS cannot be fetched.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("a bound address");
        drop(listener);
        let (provider, endpoints) = provider(&format!("http://{addr}")).await;
        let token = IDP_KEY.sign(&valid_claims());
        let result = verify_logout_token(&provider, &endpoints, CLIENT_ID, &token, NOW).await;
        assert!(
            matches!(
                result,
                Err(LogoutRefusal::KeysUnavailable(
                    AuthError::ProviderUnavailable(_)
                ))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_id_tokens_sid_is_the_one_logout_tokens_name() {
        let idp = Idp::start(&[&IDP_KEY]).await;
        let now = unix_now();
        let id_token = |sid: Option<Value>| {
            let mut claims = json!({
                "iss": ISSUER, "sub": "alice", "aud": CLIENT_ID,
                "iat": now, "exp": now + 300, "nonce": "n-0S6_WzA2Mj",
            });
            if let Some(sid) = sid {
                claims["sid"] = sid;
            }
            let header = json!({ "alg": "ES256", "kid": IDP_KEY.kid, "typ": "JWT" });
            IDP_KEY.sign_with_header(&header, &claims)
        };
        let verify_id = |raw: String| {
            let (provider, endpoints) = (&idp.provider, &idp.endpoints);
            async move {
                let nonce = "n-0S6_WzA2Mj";
                tokens::verify_id_token(provider, endpoints, CLIENT_ID, &raw, nonce, "at")
                    .await
                    .expect("a valid ID token")
            }
        };

        let login = verify_id(id_token(Some(json!(SID)))).await;
        assert_eq!(login.sid.as_deref(), Some(SID));
        let claims = with(valid_claims(), "iat", json!(now));
        let logout = accepted(
            idp.verify_at(&IDP_KEY.sign(&without(claims, "exp")), now)
                .await,
        );
        assert_eq!(logout.sid, login.sid);

        // A sid of another type is ignored, not a reason to refuse the login.
        assert_eq!(verify_id(id_token(Some(json!(42)))).await.sid, None);
        assert_eq!(
            verify_id(id_token(Some(json!({ "sid": SID })))).await.sid,
            None
        );
        assert_eq!(verify_id(id_token(None)).await.sid, None);
    }
}
