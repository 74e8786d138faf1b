//! `jwt_validation` end to end: the proxy in front of the echo upstream,
//! with a JWKS served by the test and tokens signed here. A refused token
//! must never reach the upstream, so every refusal also counts the
//! upstream's requests.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::{Answer, Running, get, http1, load_yaml, start, upstream};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "orders-api";
const HOST: &str = "api.test";
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

/// A P-256 key the test signs with, and its public half as a JWK.
struct TestKey {
    kid: String,
    private: EncodingKey,
    /// The public point, for the HMAC confusion attack.
    public: Vec<u8>,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &str) -> Self {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        let pkcs8 = pair.to_pkcs8v1().expect("a P-256 key serialises to PKCS#8");
        // An uncompressed point: 0x04 || x || y, 32 bytes each.
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.to_owned(),
            private: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public: point.to_vec(),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.private).expect("signing a test token")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn valid_claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "client-7",
        "scope": "orders:read orders:write",
        "iat": now - 5,
        "exp": now + 300,
    })
}

fn with(mut claims: Value, claim: &str, value: Value) -> Value {
    claims[claim] = value;
    claims
}

/// A loopback server publishing a JWKS the test sets, counting fetches.
struct Jwks {
    addr: SocketAddr,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("a bound address");
        let body = Arc::new(Mutex::new(body));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (body.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (served, counted) = (served.clone(), counted.clone());
                let service = service_fn(move |_request: Request<Incoming>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().expect("not poisoned").clone();
                    async move {
                        let response = Response::builder()
                            .status(StatusCode::OK)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a response");
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, fetches }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// The proxy with one `jwt_validation` rule (and `require`, when given)
/// in front of the echo upstream.
struct Stack {
    proxy: Running,
    upstream: upstream::Upstream,
    jwks: Jwks,
}

impl Stack {
    async fn start(jwks_body: String, require: Option<&str>) -> Self {
        let jwks = Jwks::start(jwks_body).await;
        let upstream = upstream::start().await;
        let require = require
            .map(|require| format!("\n              require: {require}"))
            .unwrap_or_default();
        let yaml = format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - address: "127.0.0.1:0"
    rules:
      - name: api
        actions:
          - jwt_validation:
              issuer: {ISSUER}
              jwks_endpoint: http://{jwks}/jwks
              audience: [{AUDIENCE}]{require}
          - forward: {{ target: "http://{upstream}" }}
"#,
            jwks = jwks.addr,
            upstream = upstream.addr,
        );
        let proxy = start(load_yaml(&yaml, &[])).await;
        Self {
            proxy,
            upstream,
            jwks,
        }
    }

    async fn call(&self, authorization: Option<&str>) -> Answer {
        let mut request = get(HOST, "/orders/1");
        if let Some(authorization) = authorization {
            request.headers_mut().insert(
                http::header::AUTHORIZATION,
                authorization.parse().expect("a header value"),
            );
        }
        http1(self.proxy.addr(), request).await
    }

    async fn bearer(&self, token: &str) -> Answer {
        self.call(Some(&format!("Bearer {token}"))).await
    }

    fn upstream_requests(&self) -> usize {
        self.upstream
            .signals
            .seen
            .lock()
            .expect("not poisoned")
            .len()
    }

    async fn signature_checks(&self) -> u64 {
        let admin = self.proxy.admin.expect("an admin listener");
        let metrics = http1(admin, get("admin", "/metrics")).await.text();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("portcullis_jwt_signature_checks_total "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("no signature check counter in:\n{metrics}"))
    }
}

#[track_caller]
fn assert_challenged(answer: &Answer, status: u16, challenge: &str, reason: &str, case: &str) {
    assert_eq!(answer.status, status, "{case}: {}", answer.text());
    assert_eq!(
        answer.headers[http::header::WWW_AUTHENTICATE],
        challenge,
        "{case}"
    );
    assert_eq!(answer.json()["reason"], reason, "{case}");
}

#[tokio::test]
async fn a_valid_token_goes_upstream_as_sent_and_is_verified_once() {
    let key = TestKey::new("k1");
    let stack = Stack::start(jwks(&[&key]), None).await;
    let token = key.sign(&valid_claims());
    for _ in 0..2 {
        let answer = stack.bearer(&token).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let headers = &answer.json()["headers"];
        assert_eq!(headers["authorization"], json!([format!("Bearer {token}")]));
        let identity = headers
            .as_object()
            .expect("headers")
            .keys()
            .filter(|name| name.starts_with("x-amzn-oidc"))
            .count();
        assert_eq!(identity, 0, "{headers}");
    }
    assert_eq!(stack.upstream_requests(), 2);
    assert_eq!(
        stack.signature_checks().await,
        1,
        "the second costs no check"
    );
}

#[tokio::test]
async fn no_token_is_challenged_without_an_error_code() {
    let key = TestKey::new("k1");
    let stack = Stack::start(jwks(&[&key]), None).await;
    let answer = stack.call(None).await;
    assert_challenged(&answer, 401, "Bearer", "JwtMissing", "no Authorization");
    assert_eq!(
        answer.headers[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(stack.upstream_requests(), 0);
}

#[tokio::test]
async fn every_invalid_token_is_refused_before_the_upstream() {
    let key = TestKey::new("k1");
    let stack = Stack::start(jwks(&[&key]), None).await;
    let valid = valid_claims();
    let now = unix_now();
    let unsigned = format!(
        "{}.{}.",
        B64.encode(json!({ "alg": "none", "kid": "k1" }).to_string()),
        B64.encode(valid.to_string()),
    );
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some("k1".to_owned());
    let hmac = jsonwebtoken::encode(&hmac_header, &valid, &EncodingKey::from_secret(&key.public))
        .expect("HMAC signing");
    let mut no_exp = valid.clone();
    no_exp.as_object_mut().expect("an object").remove("exp");
    let cases = [
        ("wrong signature", TestKey::new("k1").sign(&valid)),
        ("alg none", unsigned),
        ("HS256 with the public key", hmac),
        (
            "expired",
            key.sign(&with(valid.clone(), "exp", json!(now - 1))),
        ),
        (
            "nbf in the future",
            key.sign(&with(valid.clone(), "nbf", json!(now + 120))),
        ),
        (
            "wrong iss",
            key.sign(&with(
                valid.clone(),
                "iss",
                json!("https://evil.example.com"),
            )),
        ),
        (
            "wrong aud",
            key.sign(&with(valid.clone(), "aud", json!("billing-api"))),
        ),
        ("missing exp", key.sign(&no_exp)),
        ("too large", "a".repeat(17 * 1024)),
    ];
    for (case, token) in cases {
        let answer = stack.bearer(&token).await;
        assert_challenged(&answer, 401, INVALID_TOKEN, "JwtInvalid", case);
    }
    assert_eq!(stack.upstream_requests(), 0);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_exactly_once() {
    let key = TestKey::new("k1");
    let stack = Stack::start(jwks(&[&key]), None).await;
    // The key set is loaded when the proxy starts, or by the first request.
    assert_eq!(stack.bearer(&key.sign(&valid_claims())).await.status, 200);
    assert_eq!(stack.jwks.fetches(), 1);
    let stranger = TestKey::new("k2");
    for _ in 0..3 {
        let answer = stack.bearer(&stranger.sign(&valid_claims())).await;
        assert_challenged(&answer, 401, INVALID_TOKEN, "JwtInvalid", "unknown kid");
    }
    assert_eq!(stack.jwks.fetches(), 2, "one refetch, then rate-limited");
    assert_eq!(stack.upstream_requests(), 1);
}

#[tokio::test]
async fn a_jwks_over_150_kb_is_refused() {
    let key = TestKey::new("k1");
    let mut large: Value = serde_json::from_str(&jwks(&[&key])).expect("JSON");
    large["padding"] = json!("x".repeat(150 * 1024));
    let stack = Stack::start(large.to_string(), None).await;
    let answer = stack.bearer(&key.sign(&valid_claims())).await;
    assert_challenged(
        &answer,
        401,
        INVALID_TOKEN,
        "JwtKeysUnavailable",
        "large JWKS",
    );
    assert_eq!(stack.upstream_requests(), 0);
}

#[tokio::test]
async fn a_failed_require_is_forbidden_with_insufficient_scope() {
    let key = TestKey::new("k1");
    let require = r#"[{ name: scope, format: space-separated-values, values: ["orders:admin"] }]"#;
    let stack = Stack::start(jwks(&[&key]), Some(require)).await;
    let answer = stack.bearer(&key.sign(&valid_claims())).await;
    assert_challenged(
        &answer,
        403,
        r#"Bearer error="insufficient_scope""#,
        "AuthzClaimMismatch",
        "require",
    );
    assert_eq!(stack.upstream_requests(), 0);
    let admin = with(valid_claims(), "scope", json!("orders:read orders:admin"));
    assert_eq!(stack.bearer(&key.sign(&admin)).await.status, 200);
}

/// The API client registered at node-oidc-provider: id and secret.
const API_CLIENT: (&str, &str) = ("api-client", "api-secret");

#[tokio::test]
async fn client_credentials_tokens_from_a_real_idp_pass_and_their_scope_is_required() {
    let idp = common::idp::NodeIdp::start(json!({
        "clients": [{
            "client_id": API_CLIENT.0,
            "client_secret": API_CLIENT.1,
            "redirect_uris": ["https://localhost/cb"],
        }],
        "apiResource": { "resource": "https://orders.example", "scope": "orders:read orders:write" },
    }))
    .await;
    let jwks_uri = idp.discovery().await["jwks_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let upstream = upstream::start().await;
    let yaml = format!(
        r#"
listeners:
  - address: "127.0.0.1:0"
    rules:
      - name: api
        actions:
          - jwt_validation:
              issuer: {issuer}
              jwks_endpoint: {jwks_uri}
              audience: ["https://orders.example"]
              require: [{{ name: scope, format: space-separated-values, values: ["orders:write"] }}]
          - forward: {{ target: "http://{upstream}" }}
"#,
        issuer = idp.issuer,
        upstream = upstream.addr,
    );
    let proxy = start(load_yaml(&yaml, &[])).await;
    let call = |token: String| {
        let mut request = get(HOST, "/orders/1");
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        http1(proxy.addr(), request)
    };

    let writer = idp
        .client_credentials_token(
            API_CLIENT,
            "https://orders.example",
            "orders:read orders:write",
        )
        .await;
    let answer = call(writer.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["headers"]["authorization"][0],
        format!("Bearer {writer}"),
        "the token goes upstream unchanged"
    );

    let reader = idp
        .client_credentials_token(API_CLIENT, "https://orders.example", "orders:read")
        .await;
    let answer = call(reader).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(
        answer.headers[http::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
}
