//! ID token validation and the userinfo call against forged tokens: a small
//! in-process IdP serves a JWKS and a userinfo answer the test controls, and
//! the tokens are signed here, so every way a token can lie is one test.
//! (The real OpenID provider is exercised end to end in `login.rs`.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::internals::{
    AuthError, ConfiguredEndpoints, Endpoints, IdpCallError, IdpClient, Provider, VerifiedIdToken,
    tokens,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ISSUER: &str = "https://idp.example";
const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
const NONCE: &str = "n-0S6_WzA2Mj";
const ACCESS_TOKEN: &str = "SlAV32hkKG";
/// The largest userinfo (or any IdP) answer read: 1 MiB.
const USERINFO_LIMIT: usize = 1024 * 1024;

// Generated once: RSA key generation is slow enough to notice per test.
static RSA_A: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::rsa("rsa-a"));
static RSA_B: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::rsa("rsa-b"));
static RSA_C: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::rsa("rsa-c"));
static EC_A: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::ec("ec-a"));

/// A private key the test signs with, and its public half as a JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    private: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = pair.as_der().expect("an RSA key serialises to PKCS#8");
        let public = pair.public_key();
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            // `from_rsa_der` wants PKCS#1; the PEM path unwraps PKCS#8.
            private: EncodingKey::from_rsa_pem(pkcs8_pem(pkcs8.as_ref()).as_bytes())
                .expect("a PKCS#8 RSA key"),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
            }),
        }
    }

    fn ec(kid: &str) -> Self {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        let pkcs8 = pair.to_pkcs8v1().expect("a P-256 key serialises to PKCS#8");
        // An uncompressed point: 0x04 || x || y, 32 bytes each.
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            private: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": B64.encode(&point[1..33]),
                "y": B64.encode(&point[33..65]),
            }),
        }
    }

    /// The compact JWS of `claims`, with this key's `kid` in the header.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.private).expect("signing a test token")
    }
}

fn pkcs8_pem(der: &[u8]) -> String {
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

fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_secs()).expect("seconds fit in i64")
}

/// Claims every check accepts; each test spoils one of them.
fn valid_claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
    })
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of SHA-256 of the access
/// token, base64url, for an RS256 or ES256 token.
fn at_hash(access_token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    B64.encode(&digest.as_ref()[..16])
}

/// A compact JWS from its three parts, for tokens no honest signer makes.
fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(signature)
    )
}

/// The IdP's side: what `/jwks` and `/userinfo` answer, set by the test.
struct IdpState {
    jwks: Mutex<Value>,
    /// How many times `/jwks` was asked for, to see refetches and their limit.
    jwks_fetches: AtomicUsize,
    /// When set, `/jwks` accepts the request and never answers.
    jwks_hangs: AtomicBool,
    userinfo: Mutex<(StatusCode, Bytes)>,
    /// The `Authorization` header of the last userinfo call.
    userinfo_authorization: Mutex<Option<String>>,
}

struct FakeIdp {
    addr: SocketAddr,
    state: Arc<IdpState>,
}

impl FakeIdp {
    async fn start(keys: &[&SigningKey]) -> Self {
        let state = Arc::new(IdpState {
            jwks: Mutex::new(jwks(keys)),
            jwks_fetches: AtomicUsize::new(0),
            jwks_hangs: AtomicBool::new(false),
            userinfo: Mutex::new((StatusCode::OK, Bytes::from_static(b"{\"sub\":\"alice\"}"))),
            userinfo_authorization: Mutex::new(None),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let served = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                let service = service_fn(move |request| answer(state.clone(), request));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, state }
    }

    fn url(&self, path: &str) -> url::Url {
        format!("http://{}{path}", self.addr)
            .parse()
            .expect("a valid URL")
    }

    fn serve_keys(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().expect("not poisoned") = jwks(keys);
    }

    fn serve_userinfo(&self, status: StatusCode, body: impl Into<Bytes>) {
        *self.state.userinfo.lock().expect("not poisoned") = (status, body.into());
    }

    fn userinfo_authorization(&self) -> Option<String> {
        let authorization = self.state.userinfo_authorization.lock();
        authorization.expect("not poisoned").clone()
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// A provider with every endpoint configured and discovery off, pointing here.
    async fn provider(&self, timeout: Duration) -> (Provider, Arc<Endpoints>) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let configured = ConfiguredEndpoints {
            authorization: Some(self.url("/authorize")),
            token: Some(self.url("/token")),
            userinfo: Some(self.url("/userinfo")),
            jwks_uri: Some(self.url("/jwks")),
            discovery: false,
            ..ConfiguredEndpoints::default()
        };
        let http = IdpClient::new(timeout);
        let provider = Provider::new(ISSUER.to_owned(), configured, http);
        let endpoints = provider.endpoints().await.expect("configured endpoints");
        (provider, endpoints)
    }
}

async fn answer(
    state: Arc<IdpState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.uri().path() {
        "/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            if state.jwks_hangs.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let keys = state.jwks.lock().expect("not poisoned").to_string();
            (StatusCode::OK, Bytes::from(keys))
        }
        "/userinfo" => {
            let authorization = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            *state.userinfo_authorization.lock().expect("not poisoned") = authorization;
            state.userinfo.lock().expect("not poisoned").clone()
        }
        _ => (StatusCode::NOT_FOUND, Bytes::new()),
    };
    let response = Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a valid response");
    Ok(response)
}

/// One IdP serving `keys`, its provider, and the verification call.
struct Fixture {
    idp: FakeIdp,
    provider: Provider,
    endpoints: Arc<Endpoints>,
}

impl Fixture {
    async fn new(keys: &[&SigningKey]) -> Self {
        let idp = FakeIdp::start(keys).await;
        let (provider, endpoints) = idp.provider(Duration::from_secs(5)).await;
        Self {
            idp,
            provider,
            endpoints,
        }
    }

    async fn verify(&self, raw: &str) -> Result<VerifiedIdToken, AuthError> {
        self.verify_with(raw, NONCE, ACCESS_TOKEN).await
    }

    async fn verify_with(
        &self,
        raw: &str,
        nonce: &str,
        access_token: &str,
    ) -> Result<VerifiedIdToken, AuthError> {
        tokens::verify_id_token(
            &self.provider,
            &self.endpoints,
            CLIENT_ID,
            raw,
            nonce,
            access_token,
        )
        .await
    }
}

/// The reason of an `InvalidIdToken`, failing the test on anything else.
#[track_caller]
fn invalid_reason(result: Result<VerifiedIdToken, AuthError>) -> String {
    match result {
        Err(AuthError::InvalidIdToken(reason)) => reason,
        Err(other) => panic!("expected InvalidIdToken, got {other:?}"),
        Ok(token) => panic!("a bad token was accepted, subject {}", token.subject),
    }
}

#[track_caller]
fn assert_refused(result: Result<VerifiedIdToken, AuthError>, mentions: &str) {
    let reason = invalid_reason(result);
    assert!(
        reason.contains(mentions),
        "the reason `{reason}` does not mention `{mentions}`"
    );
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_are_accepted() {
    let fixture = Fixture::new(&[&RSA_A, &EC_A]).await;

    let rsa = fixture.verify(&RSA_A.sign(&valid_claims())).await;
    assert_eq!(rsa.expect("a valid RS256 token").subject, "alice");

    let mut claims = valid_claims();
    claims["sub"] = json!("bob");
    let ec = fixture.verify(&EC_A.sign(&claims)).await;
    assert_eq!(ec.expect("a valid ES256 token").subject, "bob");

    assert_eq!(fixture.idp.jwks_fetches(), 1, "the keys are fetched once");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let fixture = Fixture::new(&[&RSA_A]).await;
    let unsigned = compact(&json!({ "alg": "none" }), &valid_claims(), b"");
    assert_refused(fixture.verify(&unsigned).await, "No signature found");

    // Naming a key that exists changes nothing.
    let unsigned = compact(
        &json!({ "alg": "none", "kid": RSA_A.kid }),
        &valid_claims(),
        b"",
    );
    assert_refused(fixture.verify(&unsigned).await, "No signature found");
}

#[tokio::test]
async fn hmac_tokens_are_refused() {
    let fixture = Fixture::new(&[&RSA_A]).await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(RSA_A.kid.clone());

    let with_secret = EncodingKey::from_secret(CLIENT_SECRET.as_bytes());
    let token = jsonwebtoken::encode(&header, &valid_claims(), &with_secret).expect("HS256");
    assert_refused(
        fixture.verify(&token).await,
        "Disallowed signature algorithm",
    );

    let empty = EncodingKey::from_secret(b"");
    let token = jsonwebtoken::encode(&header, &valid_claims(), &empty).expect("HS256");
    assert_refused(
        fixture.verify(&token).await,
        "Disallowed signature algorithm",
    );

    // HMAC keyed with the RSA public key (the classic alg confusion).
    let n = RSA_A.jwk["n"].as_str().expect("n is a string");
    let confused = EncodingKey::from_secret(n.as_bytes());
    let token = jsonwebtoken::encode(&header, &valid_claims(), &confused).expect("HS256");
    assert_refused(
        fixture.verify(&token).await,
        "Disallowed signature algorithm",
    );
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let fixture = Fixture::new(&[&RSA_A, &EC_A]).await;
    for key in [&*RSA_A, &*EC_A] {
        let token = key.sign(&valid_claims());
        let (signed, signature) = token.rsplit_once('.').expect("three parts");

        let mut flipped = B64.decode(signature).expect("base64url signature");
        flipped[10] ^= 0x01;
        let forged = format!("{signed}.{}", B64.encode(&flipped));
        assert_refused(fixture.verify(&forged).await, "Crypto error");

        let mut claims = valid_claims();
        claims["sub"] = json!("mallory");
        let (header, _payload) = signed.split_once('.').expect("header and payload");
        let forged = format!("{header}.{}.{signature}", B64.encode(claims.to_string()));
        assert_refused(fixture.verify(&forged).await, "Crypto error");
    }
}

#[tokio::test]
async fn issuer_and_audience_are_checked() {
    let fixture = Fixture::new(&[&RSA_A]).await;

    let mut claims = valid_claims();
    claims["iss"] = json!("https://evil.example");
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "issuer");

    let mut claims = valid_claims();
    claims["aud"] = json!("another-client");
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "audience");

    let mut claims = valid_claims();
    claims["aud"] = json!([CLIENT_ID, "another-client"]);
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "no azp");

    claims["azp"] = json!(CLIENT_ID);
    let accepted = fixture.verify(&RSA_A.sign(&claims)).await;
    assert_eq!(
        accepted.expect("several audiences with azp = us").subject,
        "alice"
    );

    claims["azp"] = json!("another-client");
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "azp");

    // An azp naming another client is refused even with a single audience.
    let mut claims = valid_claims();
    claims["azp"] = json!("another-client");
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "azp");
}

#[tokio::test]
async fn expiry_and_issue_time_are_checked() {
    let fixture = Fixture::new(&[&RSA_A]).await;
    let now = unix_now();

    let mut claims = valid_claims();
    claims["iat"] = json!(now - 600);
    claims["exp"] = json!(now - 60);
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "expired at");

    let mut claims = valid_claims();
    claims["iat"] = json!(now + 600);
    claims["exp"] = json!(now + 900);
    assert_refused(
        fixture.verify(&RSA_A.sign(&claims)).await,
        "is in the future",
    );

    // Within the 60 s leeway for clock skew.
    let mut claims = valid_claims();
    claims["iat"] = json!(now + 30);
    let accepted = fixture.verify(&RSA_A.sign(&claims)).await;
    assert_eq!(accepted.expect("iat 30 s ahead").subject, "alice");
}

#[tokio::test]
async fn nonce_is_checked() {
    let fixture = Fixture::new(&[&RSA_A]).await;

    let mut claims = valid_claims();
    claims.as_object_mut().expect("an object").remove("nonce");
    assert_refused(fixture.verify(&RSA_A.sign(&claims)).await, "nonce");

    let token = RSA_A.sign(&valid_claims());
    let wrong = fixture.verify_with(&token, "another-nonce", ACCESS_TOKEN);
    assert_refused(wrong.await, "nonce");
}

#[tokio::test]
async fn at_hash_is_checked_when_present() {
    let fixture = Fixture::new(&[&RSA_A, &EC_A]).await;
    for key in [&*RSA_A, &*EC_A] {
        let mut claims = valid_claims();
        claims["at_hash"] = json!(at_hash(ACCESS_TOKEN));
        let token = key.sign(&claims);

        let accepted = fixture.verify(&token).await;
        assert_eq!(accepted.expect("the right at_hash").subject, "alice");

        let other_access_token = fixture.verify_with(&token, NONCE, "another-access-token");
        assert_refused(other_access_token.await, "at_hash");

        claims["at_hash"] = json!(at_hash("another-access-token"));
        assert_refused(fixture.verify(&key.sign(&claims)).await, "at_hash");
    }
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_with_one_refetch_per_minute() {
    let fixture = Fixture::new(&[&RSA_A]).await;
    let valid = fixture.verify(&RSA_A.sign(&valid_claims())).await;
    assert_eq!(valid.expect("key A").subject, "alice");
    assert_eq!(fixture.idp.jwks_fetches(), 1);

    // The IdP rotates: B is new, and tokens signed by it start arriving.
    fixture.idp.serve_keys(&[&RSA_A, &RSA_B]);
    let rotated = fixture.verify(&RSA_B.sign(&valid_claims())).await;
    assert_eq!(rotated.expect("key B after a refetch").subject, "alice");
    assert_eq!(fixture.idp.jwks_fetches(), 2, "exactly one refetch");

    // Another unknown kid within the minute: no fetch, refused.
    fixture.idp.serve_keys(&[&RSA_A, &RSA_B, &RSA_C]);
    let unknown = fixture.verify(&RSA_C.sign(&valid_claims())).await;
    assert_refused(unknown, "no key matches");
    assert_eq!(fixture.idp.jwks_fetches(), 2, "refetches are rate-limited");

    // Known keys keep working from the cache.
    let again = fixture.verify(&RSA_B.sign(&valid_claims())).await;
    assert_eq!(again.expect("key B, cached").subject, "alice");
    assert_eq!(fixture.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn userinfo_is_checked_and_kept_verbatim() {
    let fixture = Fixture::new(&[&RSA_A]).await;
    let (idp, provider, endpoints) = (&fixture.idp, &fixture.provider, &fixture.endpoints);
    let call = || tokens::userinfo(provider, endpoints, ACCESS_TOKEN, "alice");

    idp.serve_userinfo(StatusCode::OK, r#"{"sub":"mallory","email":"m@x"}"#);
    match call().await {
        Err(AuthError::InvalidUserinfo(reason)) => assert!(reason.contains("sub"), "{reason}"),
        other => panic!("expected InvalidUserinfo, got {other:?}"),
    }

    let body = r#"{"sub":"alice","email":"a@x"}"#;
    idp.serve_userinfo(StatusCode::OK, body);
    let claims = call().await.expect("matching userinfo");
    assert_eq!(claims.get(), body);
    let bearer = format!("Bearer {ACCESS_TOKEN}");
    assert_eq!(
        idp.userinfo_authorization().as_deref(),
        Some(bearer.as_str())
    );

    idp.serve_userinfo(StatusCode::INTERNAL_SERVER_ERROR, "{}");
    match call().await {
        Err(AuthError::UserinfoEndpoint(IdpCallError::Status { status: 500, .. })) => {}
        other => panic!("expected UserinfoEndpoint(Status 500), got {other:?}"),
    }

    let padding = "x".repeat(USERINFO_LIMIT);
    idp.serve_userinfo(
        StatusCode::OK,
        format!(r#"{{"sub":"alice","padding":"{padding}"}}"#),
    );
    match call().await {
        Err(AuthError::UserinfoTooLarge { limit }) => assert_eq!(limit, USERINFO_LIMIT),
        other => panic!("expected UserinfoTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hung_jwks_endpoint_times_out() {
    let idp = FakeIdp::start(&[&RSA_A]).await;
    idp.state.jwks_hangs.store(true, Ordering::SeqCst);
    let (provider, endpoints) = idp.provider(Duration::from_millis(300)).await;
    let token = RSA_A.sign(&valid_claims());

    let started = Instant::now();
    let call = tokens::verify_id_token(
        &provider,
        &endpoints,
        CLIENT_ID,
        &token,
        NONCE,
        ACCESS_TOKEN,
    );
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the verification finishes instead of hanging");
    let elapsed = started.elapsed();

    match result {
        Err(AuthError::ProviderUnavailable(cause)) => {
            assert!(
                matches!(*cause, IdpCallError::Timeout(timeout) if timeout == Duration::from_millis(300)),
                "expected a timeout, got {cause:?}"
            );
        }
        other => panic!("expected ProviderUnavailable, got {other:?}"),
    }
    assert_eq!(idp.jwks_fetches(), 1, "the request reached the IdP");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
}
