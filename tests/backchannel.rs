//! `POST /oauth2/backchannel_logout` against the running proxy, with logout
//! tokens signed here (the IdP's key is the test's): every session it names
//! ends, the others live on, a token is used once, and every malformed
//! request is a 400 that ends nothing. Run with the cookie store (the
//! process refuses revoked sessions) and with Redis (they are deleted).
//! node-oidc-provider sending its own logout tokens is in `replicas.rs`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::redis::{RedisCluster, RedisServer};
use common::*;
use http::{Request, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::config::SessionKey;
use portcullis::internals::{
    Clock, CookieSealer, CookieStore, RedisSettings, RedisStore, Session, SessionStore,
    connect_redis, connect_redis_cluster,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ISSUER: &str = "https://idp.example";
const CLIENT_ID: &str = "portcullis";
const COOKIE: &str = "AWSELBAuthSessionCookie";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The proxy's clock, and the time every token and session is made at.
const NOW: u64 = 1_900_000_000;

/// The IdP's signing key, and its public half as a JWK.
struct IdpKey {
    kid: String,
    private: EncodingKey,
    jwk: Value,
}

impl IdpKey {
    fn new(kid: &str) -> Self {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        let pkcs8 = pair.to_pkcs8v1().expect("a P-256 key serialises to PKCS#8");
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.to_owned(),
            private: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": B64.encode(&point[1..33]),
                "y": B64.encode(&point[33..65]),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("logout+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.private).expect("signing a test token")
    }
}

/// Serves the IdP's JWKS; every other endpoint is configured and never called.
async fn serve_jwks(key: &IdpKey) -> SocketAddr {
    let jwks = Bytes::from(json!({ "keys": [key.jwk] }).to_string());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let jwks = jwks.clone();
            let service = service_fn(move |_request| {
                let jwks = jwks.clone();
                async move { Ok::<_, Infallible>(http::Response::new(Full::new(jwks))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

fn logout_claims(sub: Option<&str>, sid: Option<&str>, jti: &str) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": CLIENT_ID, "iat": NOW, "exp": NOW + 120, "jti": jti,
        "events": { EVENT: {} },
    });
    if let Some(sub) = sub {
        claims["sub"] = sub.into();
    }
    if let Some(sid) = sid {
        claims["sid"] = sid.into();
    }
    claims
}

fn secrets() -> Vec<SessionKey> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SESSION_SECRET)
        .expect("the test secret is base64");
    vec![SessionKey(key.try_into().expect("32 bytes"))]
}

fn session(sub: &str, sid: &str, made_at: u64) -> Session {
    Session {
        iss: ISSUER.to_owned(),
        client: CLIENT_ID.to_owned(),
        sub: sub.to_owned(),
        sid: Some(sid.to_owned()),
        access_token: format!("access-{sub}-{sid}"),
        refresh_token: None,
        id_token: None,
        access_expires_at: made_at + 3600,
        expires_at: made_at + 7 * 24 * 3600,
        claims: RawValue::from_string(format!(r#"{{"sub":"{sub}"}}"#)).expect("JSON"),
        id_claims: None,
    }
}

/// Where the proxy keeps sessions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cookie,
    Redis,
    Cluster,
}

/// The proxy's store, as the test makes sessions in it.
enum Store {
    Cookie(CookieStore),
    Redis(RedisStore, RedisServer),
    /// The cluster is held only to keep it running.
    Cluster(
        RedisStore<::redis::cluster_async::ClusterConnection>,
        #[allow(dead_code)] RedisCluster,
    ),
}

struct Stack {
    proxy: Running,
    /// Reloads the configuration file (as SIGHUP does).
    reload: tokio::sync::mpsc::Sender<()>,
    clock: Clock,
    key: IdpKey,
    store: Store,
    _upstream: upstream::Upstream,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(kind: Kind) -> Option<Self> {
        let key = IdpKey::new("idp-key");
        let jwks = serve_jwks(&key).await;
        let upstream = upstream::start().await;
        let server = match kind {
            Kind::Redis => Some(RedisServer::start()?),
            _ => None,
        };
        let cluster = match kind {
            Kind::Cluster => Some(RedisCluster::start(3)?),
            _ => None,
        };
        let quoted = |urls: Vec<String>| {
            let urls: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
            urls.join(", ")
        };
        let sessions = match (&server, &cluster) {
            (Some(server), _) => format!(
                "{{ secrets: [\"{SESSION_SECRET}\"], store: redis, \
                 redis: {{ url: \"{}\", timeout: 500ms }} }}",
                server.url()
            ),
            (_, Some(cluster)) => format!(
                "{{ secrets: [\"{SESSION_SECRET}\"], store: redis, \
                 redis: {{ cluster: [{}], timeout: 500ms }} }}",
                quoted(cluster.urls())
            ),
            _ => format!("{{ secrets: [\"{SESSION_SECRET}\"] }}"),
        };
        let yaml = format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
sessions: {sessions}
listeners:
  - address: "127.0.0.1:0"
    rules:
      - name: app
        actions:
          - authenticate_oidc:
              issuer: {ISSUER}
              authorization_endpoint: {ISSUER}/authorize
              token_endpoint: {ISSUER}/token
              user_info_endpoint: {ISSUER}/userinfo
              jwks_uri: http://{jwks}/jwks
              client_id: {CLIENT_ID}
              client_secret: secret
          - forward: {{ target: "http://{upstream}" }}
"#,
            upstream = upstream.addr,
        );
        let clock = Clock::manual(NOW);
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("portcullis.yaml");
        std::fs::write(&file, yaml).expect("the configuration is written");
        let (proxy, reload) = start_reloading(&file, clock.clone()).await;
        let sealer = Arc::new(CookieSealer::new(&secrets()));
        let settings = RedisSettings::default();
        let store = match (server, cluster) {
            (Some(server), _) => {
                let conn = connect_redis(&server.url(), Duration::from_secs(2))
                    .await
                    .expect("Redis answers");
                Store::Redis(
                    RedisStore::new(conn, sealer, &secrets(), COOKIE, settings),
                    server,
                )
            }
            (_, Some(cluster)) => {
                let conn = connect_redis_cluster(&cluster.urls(), Duration::from_secs(2))
                    .await
                    .expect("the cluster answers");
                Store::Cluster(
                    RedisStore::new(conn, sealer, &secrets(), COOKIE, settings),
                    cluster,
                )
            }
            _ => Store::Cookie(CookieStore::new(sealer, COOKIE)),
        };
        Some(Self {
            proxy,
            reload,
            clock,
            key,
            store,
            _upstream: upstream,
            _dir: dir,
        })
    }

    /// A session as the proxy would have made it at `made_at`, as the
    /// browser's `Cookie` header.
    async fn login(&self, sub: &str, sid: &str, made_at: u64) -> String {
        let session = session(sub, sid, made_at);
        let ticket = match &self.store {
            Store::Cookie(store) => store.save(&session, made_at).await,
            Store::Redis(store, _) => store.save(&session, made_at).await,
            Store::Cluster(store, _) => store.save(&session, made_at).await,
        }
        .expect("the session is saved");
        ticket
            .shards()
            .iter()
            .enumerate()
            .map(|(index, value)| format!("{COOKIE}-{index}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The identity the upstream saw for this cookie, or the status.
    async fn who(&self, cookie: &str) -> Result<String, u16> {
        let request = Request::get("/page")
            .header(header::HOST, "app.test")
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, cookie)
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let answer = http1(self.proxy.addr(), request).await;
        if answer.status != 200 {
            return Err(answer.status);
        }
        let identity = &answer.json()["headers"]["x-amzn-oidc-identity"][0];
        Ok(identity.as_str().expect("an identity").to_owned())
    }

    async fn post(&self, content_type: &str, body: String) -> Answer {
        let request = Request::post("/oauth2/backchannel_logout")
            .header(header::HOST, "app.test")
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a request");
        http1(self.proxy.addr(), request).await
    }

    async fn logout(&self, token: &str) -> Answer {
        self.post(
            "application/x-www-form-urlencoded",
            format!("logout_token={token}"),
        )
        .await
    }
}

fn assert_no_store(answer: &Answer) {
    assert_eq!(
        answer
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{:?}",
        answer.headers
    );
}

async fn a_sid_ends_its_session_once(kind: Kind) {
    let Some(stack) = Stack::start(kind).await else {
        return;
    };
    let alice_laptop = stack.login("alice", "s-laptop", NOW).await;
    let alice_phone = stack.login("alice", "s-phone", NOW).await;
    let bob = stack.login("bob", "s-bob", NOW).await;
    for cookie in [&alice_laptop, &alice_phone, &bob] {
        assert!(stack.who(cookie).await.is_ok());
    }

    let token = stack
        .key
        .sign(&logout_claims(Some("alice"), Some("s-laptop"), "jti-1"));
    let answer = stack.logout(&token).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_no_store(&answer);

    // The opened-session cache of a revoking store is kept at most to the
    // end of the second: the next second sees the store.
    stack.clock.advance(1);
    assert_eq!(stack.who(&alice_laptop).await, Err(401));
    assert_eq!(stack.who(&alice_phone).await.as_deref(), Ok("alice"));
    assert_eq!(stack.who(&bob).await.as_deref(), Ok("bob"));

    // The same token again is a replay.
    let replay = stack.logout(&token).await;
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert_no_store(&replay);
    assert_eq!(replay.json()["error"], "invalid_request");
}

/// A reload builds every authenticate action anew; a session the IdP
/// ended must stay ended (the cookie store keeps the revocation in memory).
async fn an_ended_session_stays_ended_after_a_reload(kind: Kind) {
    let Some(stack) = Stack::start(kind).await else {
        return;
    };
    let alice = stack.login("alice", "s-alice", NOW).await;
    let bob = stack.login("bob", "s-bob", NOW).await;
    let token = stack
        .key
        .sign(&logout_claims(Some("alice"), Some("s-alice"), "jti-reload"));
    assert_eq!(stack.logout(&token).await.status, 200);
    stack.clock.advance(1);
    assert_eq!(stack.who(&alice).await, Err(401));

    stack
        .reload
        .send(())
        .await
        .expect("the proxy takes reloads");
    let admin = stack.proxy.admin.expect("an admin listener");
    let reloaded = eventually(Duration::from_secs(10), || async {
        reloads(admin, "success").await == 1
    })
    .await;
    assert!(reloaded, "the reload did not happen");
    assert_eq!(
        stack.who(&alice).await,
        Err(401),
        "the reload revived an ended session"
    );
    let replay = stack.logout(&token).await;
    assert_eq!(
        replay.status, 400,
        "a logout token was used again after the reload"
    );
    assert_eq!(
        stack.who(&bob).await.as_deref(),
        Ok("bob"),
        "a live session survives the reload"
    );
}

async fn a_sub_ends_every_session_of_the_user_made_before(kind: Kind) {
    let Some(stack) = Stack::start(kind).await else {
        return;
    };
    let laptop = stack.login("alice", "s-laptop", NOW - 60).await;
    let phone = stack.login("alice", "s-phone", NOW - 30).await;
    let bob = stack.login("bob", "s-bob", NOW - 30).await;
    let token = stack
        .key
        .sign(&logout_claims(Some("alice"), None, "jti-sub"));
    assert_eq!(stack.logout(&token).await.status, 200);
    stack.clock.advance(1);
    assert_eq!(stack.who(&laptop).await, Err(401));
    assert_eq!(stack.who(&phone).await, Err(401));
    assert_eq!(stack.who(&bob).await.as_deref(), Ok("bob"));
    // Logging in again after the logout works.
    let again = stack.login("alice", "s-new", NOW + 1).await;
    assert_eq!(stack.who(&again).await.as_deref(), Ok("alice"));
}

async fn bad_requests_and_tokens_end_nothing(kind: Kind) {
    let Some(stack) = Stack::start(kind).await else {
        return;
    };
    let alice = stack.login("alice", "s1", NOW).await;
    let valid = logout_claims(Some("alice"), Some("s1"), "jti-bad");
    let other_key = IdpKey::new("idp-key");
    let mut wrong_issuer = valid.clone();
    wrong_issuer["iss"] = "https://evil.example".into();
    let mut wrong_audience = valid.clone();
    wrong_audience["aud"] = "someone-else".into();
    let mut with_nonce = valid.clone();
    with_nonce["nonce"] = "n".into();
    let mut no_event = valid.clone();
    no_event["events"] = json!({});
    let mut stale = valid.clone();
    stale["iat"] = (NOW - 3600).into();
    let form = "application/x-www-form-urlencoded";
    let token = stack.key.sign(&valid);
    let cases: Vec<(&str, String, String)> = vec![
        (
            "another key",
            form.into(),
            format!("logout_token={}", other_key.sign(&valid)),
        ),
        (
            "another issuer",
            form.into(),
            format!("logout_token={}", stack.key.sign(&wrong_issuer)),
        ),
        (
            "another audience",
            form.into(),
            format!("logout_token={}", stack.key.sign(&wrong_audience)),
        ),
        (
            "a nonce",
            form.into(),
            format!("logout_token={}", stack.key.sign(&with_nonce)),
        ),
        (
            "no logout event",
            form.into(),
            format!("logout_token={}", stack.key.sign(&no_event)),
        ),
        (
            "an old iat",
            form.into(),
            format!("logout_token={}", stack.key.sign(&stale)),
        ),
        ("garbage", form.into(), "logout_token=a.b.c".into()),
        ("no token", form.into(), "token=x".into()),
        (
            "two tokens",
            form.into(),
            format!("logout_token={token}&logout_token={token}"),
        ),
        (
            "JSON",
            "application/json".into(),
            json!({ "logout_token": token }).to_string(),
        ),
        (
            "too large",
            form.into(),
            format!("logout_token={token}&pad={}", "a".repeat(70_000)),
        ),
    ];
    for (case, content_type, body) in cases {
        let answer = stack.post(&content_type, body).await;
        assert_eq!(answer.status, 400, "{case}: {}", answer.text());
        assert_no_store(&answer);
    }
    let get = Request::get(format!("/oauth2/backchannel_logout?logout_token={token}"))
        .header(header::HOST, "app.test")
        .body(Full::new(Bytes::new()))
        .expect("a request");
    assert_eq!(http1(stack.proxy.addr(), get).await.status, 400, "GET");

    stack.clock.advance(1);
    assert_eq!(stack.who(&alice).await.as_deref(), Ok("alice"));
    // The valid token was never used by the refusals above: it still works.
    assert_eq!(stack.logout(&token).await.status, 200);
    stack.clock.advance(1);
    assert_eq!(stack.who(&alice).await, Err(401));
}

#[tokio::test]
async fn cookie_store_a_sid_ends_its_session_once() {
    a_sid_ends_its_session_once(Kind::Cookie).await;
}

#[tokio::test]
async fn redis_a_sid_ends_its_session_once() {
    a_sid_ends_its_session_once(Kind::Redis).await;
}

#[tokio::test]
async fn cookie_store_an_ended_session_stays_ended_after_a_reload() {
    an_ended_session_stays_ended_after_a_reload(Kind::Cookie).await;
}

#[tokio::test]
async fn redis_an_ended_session_stays_ended_after_a_reload() {
    an_ended_session_stays_ended_after_a_reload(Kind::Redis).await;
}

#[tokio::test]
async fn cookie_store_a_sub_ends_every_session_of_the_user_made_before() {
    a_sub_ends_every_session_of_the_user_made_before(Kind::Cookie).await;
}

#[tokio::test]
async fn redis_a_sub_ends_every_session_of_the_user() {
    a_sub_ends_every_session_of_the_user_made_before(Kind::Redis).await;
}

#[tokio::test]
async fn cookie_store_bad_requests_and_tokens_end_nothing() {
    bad_requests_and_tokens_end_nothing(Kind::Cookie).await;
}

#[tokio::test]
async fn redis_bad_requests_and_tokens_end_nothing() {
    bad_requests_and_tokens_end_nothing(Kind::Redis).await;
}

#[tokio::test]
async fn redis_cluster_a_sid_ends_its_session_once() {
    a_sid_ends_its_session_once(Kind::Cluster).await;
}

#[tokio::test]
async fn redis_cluster_a_sub_ends_every_session_of_the_user() {
    a_sub_ends_every_session_of_the_user_made_before(Kind::Cluster).await;
}

#[tokio::test]
async fn redis_down_is_503_for_sessions_and_logouts_then_recovers() {
    let Some(mut stack) = Stack::start(Kind::Redis).await else {
        return;
    };
    let alice = stack.login("alice", "s1", NOW).await;
    assert_eq!(stack.who(&alice).await.as_deref(), Ok("alice"));
    let Store::Redis(_, server) = &mut stack.store else {
        unreachable!("a Redis stack")
    };
    server.stop();
    stack.clock.advance(1);
    let started = std::time::Instant::now();
    assert_eq!(
        stack.who(&alice).await,
        Err(503),
        "never a login, never a pass"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "503 within the 500 ms timeout and some slack: {:?}",
        started.elapsed()
    );
    let token = stack
        .key
        .sign(&logout_claims(Some("alice"), Some("s1"), "jti-down"));
    assert_eq!(stack.logout(&token).await.status, 503);
    let admin = stack.proxy.admin.expect("an admin listener");
    assert!(
        eventually(Duration::from_secs(3), || async {
            admin_get(admin, "/readyz").await.status == 503
        })
        .await,
        "/readyz turns 503 while Redis does not answer"
    );
    let metrics = admin_get(admin, "/metrics").await.text();
    for expected in [
        r#"portcullis_session_store_errors_total{op="load"}"#,
        r#"portcullis_session_store_latency_seconds_count{op="load"}"#,
        r#"portcullis_auth_failure_total{reason="AuthSessionStoreUnavailable"}"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }

    let Store::Redis(_, server) = &mut stack.store else {
        unreachable!("a Redis stack")
    };
    server.restart();
    // Redis came back empty: the session is gone, so the answer turns from
    // 503 to 401 (a JSON client without a session) without a proxy restart.
    let mut answer = stack.who(&alice).await;
    for _ in 0..50 {
        if answer != Err(503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = stack.who(&alice).await;
    }
    assert_eq!(answer, Err(401));
    assert!(
        eventually(Duration::from_secs(3), || async {
            admin_get(admin, "/readyz").await.status == 200
        })
        .await,
        "/readyz is 200 again once Redis answers"
    );
}
