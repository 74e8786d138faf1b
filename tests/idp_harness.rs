//! Proves the end-to-end harness: node-oidc-provider (tests/oidc) started from
//! Rust, and the non-JS test browser logging in through its real pages, with
//! a tiny local relying party standing in for the proxy's redirect_uri.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/idp.rs"]
mod idp;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use browser::{Browser, Page, query_param};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idp::NodeIdp;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CLIENT_ID: &str = "rp";
const CLIENT_SECRET: &str = "rp-secret";

/// A relying party on 127.0.0.1:0 that answers 200 to everything, records the
/// path and query of every request, sets the cookies asked in `?set=` and
/// echoes the request's Cookie header.
struct RelyingParty {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RelyingParty {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let recorded = recorded.clone();
                            async move { Ok::<_, Infallible>(echo(request, &recorded)) }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { base, seen }
    }

    fn callback(&self) -> String {
        format!("{}/cb", self.base)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn echo(
    request: http::Request<hyper::body::Incoming>,
    recorded: &Mutex<Vec<String>>,
) -> http::Response<Full<Bytes>> {
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.to_string())
        .unwrap_or_default();
    recorded.lock().unwrap().push(target.clone());
    let mut response = http::Response::builder()
        .header("content-type", "text/plain")
        .header(
            "x-seen-cookie",
            request
                .headers()
                .get("cookie")
                .cloned()
                .unwrap_or(http::HeaderValue::from_static("")),
        );
    let url = url::Url::parse(&format!("http://rp{target}")).unwrap();
    for (key, value) in url.query_pairs() {
        if key == "set" {
            response = response.header("set-cookie", value.as_ref());
        }
        if key == "redirect" {
            response = response.status(302).header("location", value.as_ref());
        }
    }
    response
        .body(Full::new(Bytes::from(format!("seen {target}"))))
        .unwrap()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn s256(verifier: &str) -> String {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let digest = suite
        .tls13()
        .unwrap()
        .common
        .hash_provider
        .hash(verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .unwrap(),
    )
    .unwrap()
}

fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

fn client_config(rp: &RelyingParty, extra: Value) -> Value {
    let mut client = json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [rp.callback()],
        "post_logout_redirect_uris": [format!("{}/bye", rp.base)],
    });
    client
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    client
}

struct Authorization {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn authorization_request(discovery: &Value, redirect_uri: &str, scope: &str) -> Authorization {
    let state = random_token();
    let nonce = random_token();
    let verifier = random_token();
    let mut url = url::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &s256(&verifier))
        .append_pair("code_challenge_method", "S256");
    Authorization {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

async fn token_request(browser: &mut Browser, discovery: &Value, form: &[(&str, &str)]) -> Page {
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    browser
        .request(
            "POST",
            discovery["token_endpoint"].as_str().unwrap(),
            &[
                ("authorization", &basic),
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
            ],
            Some(body.into_bytes()),
        )
        .await
}

async fn userinfo(browser: &mut Browser, discovery: &Value, access_token: &str) -> Page {
    let bearer = format!("Bearer {access_token}");
    browser
        .request(
            "GET",
            discovery["userinfo_endpoint"].as_str().unwrap(),
            &[("authorization", &bearer), ("accept", "application/json")],
            None,
        )
        .await
}

#[tokio::test]
async fn code_flow_with_pkce_userinfo_refresh_and_stats() {
    let rp = RelyingParty::start().await;
    let started = std::time::Instant::now();
    let idp = NodeIdp::start(json!({
        "clients": [client_config(&rp, json!({}))],
        "issueRefreshToken": true,
        // oidc-provider's exp is the whole second of issue plus the TTL: a
        // 4 s token lives at least 3, time for the userinfo calls below.
        "accessTokenTtl": 4,
        "bigClaims": 5000,
        "claims": { "department": "engineering" },
    }))
    .await;
    eprintln!("provider started in {:?}", started.elapsed());
    assert!(
        idp.issuer.starts_with("http://127.0.0.1:"),
        "{}",
        idp.issuer
    );

    let mut browser = Browser::new(None);
    let discovery = browser.get(&idp.discovery_url()).await.json();
    assert_eq!(discovery["issuer"], idp.issuer.as_str());
    assert_eq!(discovery, idp.discovery().await);
    assert!(
        discovery["end_session_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&idp.issuer)
    );
    assert!(discovery["jwks_uri"].is_string());
    assert!(
        discovery["code_challenge_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("S256")),
        "{discovery:#}"
    );

    let auth = authorization_request(&discovery, &rp.callback(), "openid email profile");
    let page = browser.login(&auth.url, "alice", "any password").await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    assert!(page.url.starts_with(&rp.callback()), "{:#?}", page.hops);
    // The journey went through the provider's interaction pages.
    assert!(
        page.hops
            .iter()
            .any(|(url, _)| url.contains("/interaction/")),
        "{:#?}",
        page.hops
    );

    let seen = rp.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let callback = format!("{}{}", rp.base, seen[0]);
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(auth.state.as_str())
    );
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(idp.issuer.as_str())
    );
    let code = query_param(&callback, "code").expect("a code on the callback");

    // Redeem the code with client_secret_basic and the PKCE verifier.
    let redirect_uri = rp.callback();
    let tokens = token_request(
        &mut browser,
        &discovery,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &auth.verifier),
        ],
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    let access_token = tokens["access_token"].as_str().expect("an access token");
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token (issueRefreshToken)");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() <= 4, "{tokens:#}");
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    assert_eq!(jwt_header(id_token)["alg"], "RS256");
    let claims = jwt_payload(id_token);
    assert_eq!(claims["nonce"], auth.nonce.as_str());
    assert_eq!(claims["iss"], idp.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    // conformIdTokenClaims: false → the scope claims are in the ID token too.
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["department"], "engineering");
    assert!(
        claims.get("big_0").is_none(),
        "bigClaims are for userinfo only"
    );

    // Userinfo, with the big claims.
    let info = userinfo(&mut browser, &discovery, access_token).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let info = info.json();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["department"], "engineering");
    let big: usize = info
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, _)| key.starts_with("big_"))
        .map(|(_, value)| value.as_str().unwrap().len())
        .sum();
    assert_eq!(big, 5000, "{info:#}");

    // The access token expires after accessTokenTtl (4 s).
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let expired = userinfo(&mut browser, &discovery, access_token).await;
    assert_eq!(expired.status, 401, "{}", expired.body);

    // Refresh.
    let refreshed = token_request(
        &mut browser,
        &discovery,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let refreshed = refreshed.json();
    let new_access = refreshed["access_token"].as_str().unwrap();
    assert_ne!(new_access, access_token);
    // Not rotated (oidc-provider rotates after 70 % of its lifetime).
    assert_eq!(refreshed["refresh_token"], refresh_token, "{refreshed:#}");
    assert!(refreshed["id_token"].is_string(), "{refreshed:#}");
    let info = userinfo(&mut browser, &discovery, new_access).await;
    assert_eq!(info.status, 200, "{}", info.body);

    let stats = idp.stats().await;
    assert_eq!(stats["grants"]["authorization_code"], 1, "{stats:#}");
    assert_eq!(stats["grants"]["refresh_token"], 1, "{stats:#}");
    assert_eq!(stats["userinfo"], 2, "{stats:#}");
    assert_eq!(stats["userinfo_errors"], 1, "{stats:#}");
    assert_eq!(stats["grant_errors"], 0, "{stats:#}");
    assert_eq!(stats["authorizations"], 1, "{stats:#}");

    // A code is single-use, and replaying it revokes what it gave.
    let again = token_request(
        &mut browser,
        &discovery,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &auth.verifier),
        ],
    )
    .await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(again.json()["error"], "invalid_grant");

    let revoked = userinfo(&mut browser, &discovery, new_access).await;
    assert_eq!(revoked.status, 401, "{}", revoked.body);
}

#[tokio::test]
async fn a_second_login_reuses_the_provider_session() {
    let rp = RelyingParty::start().await;
    let idp = NodeIdp::start(json!({ "clients": [client_config(&rp, json!({}))] })).await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;

    let first = authorization_request(&discovery, &rp.callback(), "openid email");
    let page = browser.login(&first.url, "alice", "x").await;
    assert!(page.url.starts_with(&rp.callback()), "{:#?}", page.hops);

    // The provider's session cookie lives in the jar: no login page again.
    assert!(!browser.cookies("127.0.0.1").is_empty());
    let second = authorization_request(&discovery, &rp.callback(), "openid email");
    let page = browser.follow(&second.url).await;
    assert!(
        page.url.starts_with(&rp.callback()),
        "{:#?}\n{}",
        page.hops,
        page.body
    );
    assert_eq!(page.query("state").as_deref(), Some(second.state.as_str()));
    assert!(page.query("code").is_some());

    // Without issueRefreshToken and without offline_access: no refresh token.
    let code = page.query("code").unwrap();
    let redirect_uri = rp.callback();
    let tokens = token_request(
        &mut browser,
        &discovery,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &second.verifier),
        ],
    )
    .await
    .json();
    assert!(tokens["access_token"].is_string(), "{tokens:#}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens:#}");
}

#[tokio::test]
async fn aborting_the_login_gives_access_denied() {
    let rp = RelyingParty::start().await;
    let idp = NodeIdp::start(json!({ "clients": [client_config(&rp, json!({}))] })).await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;

    let auth = authorization_request(&discovery, &rp.callback(), "openid");
    let page = browser.abort_login(&auth.url).await;
    assert_eq!(page.status, 200);
    assert!(page.url.starts_with(&rp.callback()), "{:#?}", page.hops);
    assert_eq!(page.query("error").as_deref(), Some("access_denied"));
    assert_eq!(page.query("state").as_deref(), Some(auth.state.as_str()));
    assert!(page.query("code").is_none());
    assert_eq!(rp.seen().len(), 1);
}

#[tokio::test]
async fn stop_before_captures_the_callback_without_fetching_it() {
    let rp = RelyingParty::start().await;
    let idp =
        NodeIdp::start(json!({ "clients": [client_config(&rp, json!({}))], "skipConsent": true }))
            .await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;

    browser.stop_before(Some(&rp.callback()));
    let auth = authorization_request(&discovery, &rp.callback(), "openid email");
    let page = browser.login(&auth.url, "bob", "x").await;
    assert_eq!(page.status, 303, "{:#?}", page.hops);
    let location = page.location().unwrap();
    assert!(location.starts_with(&rp.callback()));
    assert!(query_param(&location, "code").is_some());
    assert!(rp.seen().is_empty(), "the callback was not fetched");
    // skipConsent: login page only, no consent page.
    let interactions = page
        .hops
        .iter()
        .filter(|(url, status)| url.contains("/interaction/") && *status == 200)
        .count();
    assert_eq!(interactions, 1, "{:#?}", page.hops);

    // Any other user gets generic claims.
    browser.stop_before(None);
    let redirect_uri = rp.callback();
    let code = query_param(&location, "code").unwrap();
    let tokens = token_request(
        &mut browser,
        &discovery,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &auth.verifier),
        ],
    )
    .await
    .json();
    let claims = jwt_payload(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["email"], "bob@example.test");
}

#[tokio::test]
async fn pkce_is_required_by_default() {
    let rp = RelyingParty::start().await;
    let idp = NodeIdp::start(json!({ "clients": [client_config(&rp, json!({}))] })).await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;
    let auth = authorization_request(&discovery, &rp.callback(), "openid");
    let without_pkce: String = {
        let mut url = url::Url::parse(&auth.url).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| !key.starts_with("code_challenge"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    };
    let page = browser.follow(&without_pkce).await;
    assert!(page.url.starts_with(&rp.callback()), "{:#?}", page.hops);
    assert_eq!(
        page.query("error").as_deref(),
        Some("invalid_request"),
        "{}",
        page.url
    );
}

#[tokio::test]
async fn cognito_mode_and_client_secret_post() {
    let rp = RelyingParty::start().await;
    let idp = NodeIdp::start(json!({
        "clients": [client_config(&rp, json!({}))],
        "tokenEndpointAuthMethods": ["client_secret_post"],
        "cognito": { "groups": ["admins"] },
        "idTokenTtl": 120,
    }))
    .await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!(["client_secret_post"])
    );
    let auth = authorization_request(&discovery, &rp.callback(), "openid email");
    let page = browser.login(&auth.url, "alice", "x").await;
    let code = page.query("code").expect("a code");

    // This client must authenticate in the body: basic is refused.
    let redirect_uri = rp.callback();
    let basic = token_request(
        &mut browser,
        &discovery,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &auth.verifier),
        ],
    )
    .await;
    assert_eq!(basic.status, 401, "{}", basic.body);

    // Client authentication fails before the code is looked at: it is still
    // valid for client_secret_post.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", auth.verifier.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .finish();
    let tokens = browser
        .request(
            "POST",
            discovery["token_endpoint"].as_str().unwrap(),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    let claims = jwt_payload(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["cognito:username"], "alice");
    assert_eq!(claims["cognito:groups"], json!(["admins"]));
    assert_eq!(claims["token_use"], "id");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120);
    let info = userinfo(
        &mut browser,
        &discovery,
        tokens["access_token"].as_str().unwrap(),
    )
    .await
    .json();
    assert_eq!(info["cognito:username"], "alice");
    assert!(info.get("token_use").is_none(), "{info:#}");
}

#[tokio::test]
async fn rp_initiated_logout() {
    let rp = RelyingParty::start().await;
    let idp = NodeIdp::start(json!({ "clients": [client_config(&rp, json!({}))] })).await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;
    let auth = authorization_request(&discovery, &rp.callback(), "openid");
    browser.login(&auth.url, "alice", "x").await;

    let mut end_session =
        url::Url::parse(discovery["end_session_endpoint"].as_str().unwrap()).unwrap();
    end_session
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("post_logout_redirect_uri", &format!("{}/bye", rp.base))
        .append_pair("state", "after-logout");
    let confirm = browser.follow(end_session.as_str()).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let done = browser.submit_form(&confirm, &[("logout", "yes")]).await;
    assert!(
        done.url.starts_with(&format!("{}/bye", rp.base)),
        "{:#?}",
        done.hops
    );
    assert_eq!(done.query("state").as_deref(), Some("after-logout"));
    assert_eq!(idp.stats().await["end_sessions"], 1);

    // Signed out at the provider: the next authorization shows the login page.
    let again = authorization_request(&discovery, &rp.callback(), "openid");
    let page = browser.follow(&again.url).await;
    assert!(
        page.form().is_some_and(|form| form.has_input("login")),
        "{:#?}",
        page.hops
    );
}

#[tokio::test]
async fn browser_cookie_jar() {
    let rp = RelyingParty::start().await;
    let mut browser = Browser::new(None);
    let host = "127.0.0.1";
    let set = |cookie: &str| format!("{}/x/page?set={}", rp.base, urlencode(cookie));

    browser
        .get(&set("a=1; Path=/; HttpOnly; Secure; SameSite=Lax"))
        .await;
    browser.get(&set("b=2; Path=/x")).await;
    browser.get(&set("c=3")).await; // default path /x
    assert_eq!(browser.cookie(host, "a").as_deref(), Some("1"));
    assert_eq!(browser.cookie(host, "c").as_deref(), Some("3"));

    let page = browser.get(&format!("{}/x/y", rp.base)).await;
    assert_eq!(
        page.header("x-seen-cookie").as_deref(),
        Some("b=2; c=3; a=1")
    );
    let page = browser.get(&format!("{}/other", rp.base)).await;
    assert_eq!(page.header("x-seen-cookie").as_deref(), Some("a=1"));

    browser.get(&set("a=; Max-Age=0; Path=/")).await;
    browser
        .get(&set(
            "b=gone; Path=/x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ))
        .await;
    assert_eq!(browser.cookie(host, "a"), None);
    assert_eq!(browser.cookie(host, "b"), None);

    browser.set_cookie(host, "manual", "m");
    browser.remove_cookie(host, "c");
    let page = browser
        .request(
            "GET",
            &format!("{}/x/z", rp.base),
            &[("cookie", "given=g")],
            None,
        )
        .await;
    assert_eq!(
        page.header("x-seen-cookie").as_deref(),
        Some("given=g; manual=m")
    );

    // follow() records every hop and every Set-Cookie along the way.
    let target = format!("{}/final", rp.base);
    let page = browser
        .follow(&format!(
            "{}/r?set={}&redirect={}",
            rp.base,
            urlencode("r=1; Path=/"),
            urlencode(&target)
        ))
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.url, target);
    assert_eq!(
        page.hops
            .iter()
            .map(|(_, status)| *status)
            .collect::<Vec<_>>(),
        vec![302, 200]
    );
    assert_eq!(page.set_cookies, vec!["r=1; Path=/".to_string()]);
    assert_eq!(
        page.header("x-seen-cookie").as_deref(),
        Some("manual=m; r=1")
    );
}

/// HTTPS with a test CA, any host name resolving to the loopback, over
/// HTTP/1.1 and HTTP/2 — the way the proxy will be reached.
#[tokio::test]
async fn browser_speaks_https_with_a_test_ca() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "app.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let recorded = recorded.clone();
                    async move {
                        let host = request
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_string())
                            .or_else(|| request.uri().authority().map(|a| a.to_string()))
                            .unwrap_or_default();
                        let line = format!(
                            "{:?} {host} {} {}",
                            request.version(),
                            request.uri().path(),
                            request
                                .headers()
                                .get("sec-fetch-mode")
                                .map(|v| v.to_str().unwrap())
                                .unwrap_or("-")
                        );
                        recorded.lock().unwrap().push(line);
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("set-cookie", "s=1; Secure; HttpOnly; Path=/")
                                .body(Full::new(Bytes::from_static(b"hello")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let mut browser = Browser::new(Some(ca.der().clone()));
    let page = browser.get(&format!("https://localhost:{port}/a")).await;
    assert_eq!((page.status, page.body.as_str()), (200, "hello"));
    assert_eq!(browser.cookie("localhost", "s").as_deref(), Some("1"));
    let mut h2 = Browser::new_h2(Some(ca.der().clone()));
    let page = h2.get(&format!("https://app.test:{port}/b")).await;
    assert_eq!(page.status, 200);

    // Without the CA, the certificate is refused.
    let untrusting = tokio::spawn(async move {
        Browser::new(None)
            .get(&format!("https://localhost:{port}/c"))
            .await
    });
    assert!(
        untrusting.await.is_err(),
        "an unknown CA must fail the handshake"
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            format!("HTTP/1.1 localhost:{port} /a navigate"),
            format!("HTTP/2.0 app.test:{port} /b navigate"),
        ]
    );
    let _: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A redirect URI registered with port 0 matches that URL on any port: the
/// IdP can be started before the proxy has picked its port.
#[tokio::test]
async fn port_zero_redirect_uris_match_any_port() {
    let rp = RelyingParty::start().await;
    let port = rp.base.rsplit(':').next().unwrap().to_string();
    let idp = NodeIdp::start(json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": ["http://127.0.0.1:0/cb"],
            "post_logout_redirect_uris": ["http://127.0.0.1:0/bye"],
        }],
        "skipConsent": true,
    }))
    .await;
    let mut browser = Browser::new(None);
    let discovery = idp.discovery().await;
    let auth = authorization_request(&discovery, &rp.callback(), "openid");
    let page = browser.login(&auth.url, "alice", "x").await;
    assert!(page.url.starts_with(&rp.callback()), "{:#?}", page.hops);
    assert!(page.query("code").is_some());

    // The path must still match exactly.
    let wrong = authorization_request(&discovery, &format!("{}/elsewhere", rp.base), "openid");
    let page = browser.follow(&wrong.url).await;
    assert_eq!(page.status, 400, "{:#?}", page.hops);
    assert!(page.body.contains("redirect_uri"), "{}", page.body);

    let mut end_session =
        url::Url::parse(discovery["end_session_endpoint"].as_str().unwrap()).unwrap();
    end_session
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair(
            "post_logout_redirect_uri",
            &format!("http://127.0.0.1:{port}/bye"),
        );
    let confirm = browser.follow(end_session.as_str()).await;
    let done = browser.submit_form(&confirm, &[("logout", "yes")]).await;
    assert_eq!(
        done.url,
        format!("http://127.0.0.1:{port}/bye"),
        "{:#?}",
        done.hops
    );
}
