//! End-to-end login through a real OpenID provider (node-oidc-provider,
//! tests/oidc) with portcullis on `https://localhost:PORT` in front of a real
//! upstream: the ALB flow, sessions, refresh, policies, sign-out, and the
//! identity headers verified the way applications verify them.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::alb::{self, b64};
use common::idp::NodeIdp;
use common::*;
use portcullis::internals::Clock;
use serde_json::{Value, json};

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
const SIGNER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The IdP and, in front of a real upstream, the proxy of one test.
struct Stack {
    idp: NodeIdp,
    tls: TlsStack,
}

impl std::ops::Deref for Stack {
    type Target = TlsStack;

    fn deref(&self) -> &TlsStack {
        &self.tls
    }
}

fn idp_config(extra: Value) -> Value {
    let mut config = json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": ["https://localhost:0/oauth2/idpresponse"],
            "post_logout_redirect_uris": ["https://localhost:0/signed-out"],
        }],
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            config.insert(key.clone(), value.clone());
        }
    }
    config
}

/// Starts the IdP (with `idp_extra` merged into its config) and the proxy
/// with one authenticating rule, `app`, whose action gets `action_extra`
/// YAML lines; `rules_extra` go before it, with `ISSUER` and `UPSTREAM`
/// replaced by the real addresses.
async fn stack(idp_extra: Value, action_extra: &str, rules_extra: &str) -> Stack {
    let idp = NodeIdp::start(idp_config(idp_extra)).await;
    let vars = [("CLIENT_SECRET", CLIENT_SECRET)];
    // The proxy's clock stands still unless a test moves it: session and
    // access-token expiry are tested by moving it, not by sleeping.
    let clock = Clock::manual(unix_now());
    let tls = TlsStack::start_with_clock(SIGNER, &vars, clock, |upstream| {
        format!(
            r#"{rules_extra}
      - name: app
        actions:
          - authenticate_oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret: "${{CLIENT_SECRET}}"
              scope: openid email profile
              authentication_request_extra_params: {{ prompt: login }}
              sign_out_redirect: /signed-out
{action_extra}
          - forward: {{ target: "http://{upstream}" }}"#,
            issuer = idp.issuer,
            action_extra = indent(action_extra, 14),
            rules_extra = indent_block(
                &rules_extra
                    .replace("ISSUER", &idp.issuer)
                    .replace("UPSTREAM", &upstream.to_string()),
                6
            ),
        )
    })
    .await;
    Stack { idp, tls }
}

/// Indents a YAML block, keeping its own relative indentation.
fn indent_block(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("{pad}{}", line.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_redirect_to_the_idp_carries_every_parameter() {
    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    let page = browser.get(&stack.url("/app/page?x=1")).await;
    assert_eq!(page.status, 302);
    let location = url::Url::parse(&page.location().unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with(&format!("{}/auth", stack.idp.issuer)),
        "{location}"
    );
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(
        query["redirect_uri"],
        format!("{}/oauth2/idpresponse", stack.base())
    );
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "openid email profile");
    assert_eq!(query["prompt"], "login");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["state"].len(), 43, "256 bits of state");
    assert_eq!(query["nonce"].len(), 43, "256 bits of nonce");
    let nonce_cookie = page
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("AWSALBAuthNonce="))
        .unwrap();
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(nonce_cookie.contains(attribute), "{nonce_cookie}");
    }
}

#[tokio::test]
async fn full_login_reaches_the_original_url_with_verified_identity_headers() {
    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    let page = stack.login(&mut browser, "/app/page?x=1&y=two").await;
    let echo = page.json();
    assert_eq!(echo["uri"], "/app/page?x=1&y=two");
    let headers = &echo["headers"];
    assert_eq!(headers["x-amzn-oidc-identity"][0], "alice");
    let access_token = headers["x-amzn-oidc-accesstoken"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let data = headers["x-amzn-oidc-data"][0].as_str().unwrap().to_owned();

    // The proxy's cookies never reach the upstream.
    let cookie_header = headers
        .get("cookie")
        .map(|value| value.to_string())
        .unwrap_or_default();
    assert!(
        !cookie_header.contains("AWSELBAuthSessionCookie"),
        "{cookie_header}"
    );
    assert!(
        !cookie_header.contains("AWSALBAuthNonce"),
        "{cookie_header}"
    );

    // The session cookie is Secure, HttpOnly, SameSite=Lax, Path=/ and under 4096 bytes.
    let shard = page
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("AWSELBAuthSessionCookie-0="))
        .unwrap();
    assert!(shard.len() < 4096);
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(shard.contains(attribute), "{shard}");
    }

    // The access token is one the provider accepts.
    let userinfo = browser
        .request(
            "GET",
            &stack.idp.url("/me"),
            &[("authorization", &format!("Bearer {access_token}"))],
            None,
        )
        .await;
    assert_eq!(userinfo.status, 200, "{}", userinfo.body);
    assert_eq!(userinfo.json()["sub"], "alice");

    // x-amzn-oidc-data: ALB's header and padded segments, the userinfo claims.
    let segments: Vec<&str> = data.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert!(
        segments.iter().all(|segment| segment.len() % 4 == 0),
        "ALB pads every segment: {data}"
    );
    let header: Value = serde_json::from_slice(&b64(segments[0])).unwrap();
    let payload: Value = serde_json::from_slice(&b64(segments[1])).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["iss"], stack.idp.issuer);
    assert_eq!(header["client"], CLIENT_ID);
    assert_eq!(header["signer"], SIGNER);
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["email"], "alice@example.test");
    assert_eq!(payload["iss"], stack.idp.issuer);
    assert!(payload["exp"].as_u64().unwrap() > 0);

    // A plain ES256 check against /oauth2/jwks.json, over the padded text.
    let jwks = browser.get(&stack.url("/oauth2/jwks.json")).await.json();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .expect("the token's kid is in the JWKS");
    let mut point = vec![4u8];
    point.extend(b64(key["x"].as_str().unwrap()));
    point.extend(b64(key["y"].as_str().unwrap()));
    let verifier = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point,
    );
    let signed = format!("{}.{}", segments[0], segments[1]);
    verifier
        .verify(signed.as_bytes(), &b64(segments[2]))
        .expect("x-amzn-oidc-data verifies against /oauth2/jwks.json");

    // And AWS's own library accepts it.
    let jwks_uri = stack.url("/oauth2/public-keys");
    let ca_pem = stack.pki.ca_pem_path();
    let verifier = alb::Verifier {
        signer: SIGNER,
        issuer: &stack.idp.issuer,
        client_id: CLIENT_ID,
        jwks_uri: &jwks_uri,
        ca_pem: &ca_pem,
    };
    assert_eq!(alb::verify(&verifier, &data).await["sub"], "alice");

    // A second request reuses the session: no new login at the provider.
    let again = browser.follow(&stack.url("/app/again")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
    assert_eq!(stack.idp.stats().await["grants"]["authorization_code"], 1);
}

#[tokio::test]
async fn policies_deny_allow_and_api_requests() {
    let rules = r#"
- name: denied
  conditions: { path: ["/deny/*"] }
  actions:
    - authenticate_oidc: { issuer: "ISSUER", client_id: portcullis, client_secret: "${CLIENT_SECRET}", on_unauthenticated_request: deny }
    - fixed_response: { status: 200, body: "secret" }
- name: open
  conditions: { path: ["/open/*"] }
  actions:
    - authenticate_oidc: { issuer: "ISSUER", client_id: portcullis, client_secret: "${CLIENT_SECRET}", on_unauthenticated_request: allow }
    - forward: { target: "http://UPSTREAM" }
"#;
    let stack = stack(json!({}), "", rules).await;
    let mut browser = stack.browser();

    let denied = browser.get(&stack.url("/deny/x")).await;
    assert_eq!(denied.status, 401);

    let anonymous = browser.get(&stack.url("/open/x")).await;
    assert_eq!(anonymous.status, 200);
    let headers = &anonymous.json()["headers"];
    assert!(
        headers.get("x-amzn-oidc-identity").is_none(),
        "allow without a session sends no identity"
    );

    // Non-navigation requests under `authenticate` get 401 JSON, not a redirect.
    for headers in [
        vec![("x-requested-with", "XMLHttpRequest")],
        vec![("accept", "application/json")],
        vec![("sec-fetch-mode", "cors")],
    ] {
        let api = browser
            .request("GET", &stack.url("/app/data"), &headers, None)
            .await;
        assert_eq!(api.status, 401, "{headers:?}");
        assert_eq!(api.header("content-type").unwrap(), "application/json");
        assert_eq!(api.json()["status"], 401);
    }
    let post = browser
        .request("POST", &stack.url("/app/form"), &[], Some(b"x=1".to_vec()))
        .await;
    assert_eq!(post.status, 401);

    // After login, `allow` and `deny` rules with the same cookie and client see the session.
    stack.login(&mut browser, "/app/").await;
    let open = browser.get(&stack.url("/open/x")).await;
    assert_eq!(open.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
    let denied = browser.get(&stack.url("/deny/x")).await;
    assert_eq!(denied.status, 200);
    assert_eq!(denied.body, "secret");
    let api = browser
        .request(
            "GET",
            &stack.url("/app/data"),
            &[("accept", "application/json")],
            None,
        )
        .await;
    assert_eq!(api.status, 200);
}

#[tokio::test]
async fn forged_truncated_and_oversized_cookies_are_no_session() {
    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    stack.login(&mut browser, "/app/").await;
    let host = "localhost";
    let good = browser.cookie(host, "AWSELBAuthSessionCookie-0").unwrap();

    let mut flipped = good.clone().into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let forged = [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() / 2].to_owned(),
        "x".repeat(5000),
        String::new(),
        "%%%".to_owned(),
    ];
    for value in forged {
        browser.set_cookie(host, "AWSELBAuthSessionCookie-0", &value);
        let page = browser.get(&stack.url("/app/")).await;
        assert_eq!(page.status, 302, "a bad cookie is simply no session");
        let api = browser
            .request(
                "GET",
                &stack.url("/app/"),
                &[("accept", "application/json")],
                None,
            )
            .await;
        assert_eq!(api.status, 401);
    }
    // Shards that do not belong together: a `-1` the session never had.
    browser.set_cookie(host, "AWSELBAuthSessionCookie-0", &good);
    browser.set_cookie(host, "AWSELBAuthSessionCookie-1", &good);
    assert_eq!(browser.get(&stack.url("/app/")).await.status, 302);
    browser.remove_cookie(host, "AWSELBAuthSessionCookie-1");
    assert_eq!(
        browser.get(&stack.url("/app/")).await.status,
        200,
        "the real cookie still works"
    );
}

#[tokio::test]
async fn bad_callbacks_are_refused() {
    let stack = stack(json!({}), "", "").await;

    // No nonce cookie at all.
    let mut stranger = stack.browser();
    let page = stranger
        .get(&stack.url("/oauth2/idpresponse?code=abc&state=def"))
        .await;
    assert_eq!(page.status, 401);
    let page = stranger
        .get(&stack.url("/oauth2/idpresponse?code=abc"))
        .await;
    assert_eq!(page.status, 401, "missing state");

    // A login in progress, but the wrong state.
    let mut browser = stack.browser();
    assert_eq!(browser.get(&stack.url("/app/")).await.status, 302);
    let page = browser
        .get(&stack.url("/oauth2/idpresponse?code=abc&state=wrong"))
        .await;
    assert_eq!(page.status, 401);

    // The IdP says no: 561.
    let mut refuser = stack.browser();
    let page = refuser.abort_login(&stack.url("/app/")).await;
    assert_eq!(page.status, 561, "{:#?}", page.hops);

    // A replayed callback: our state is single-use (401); with the old nonce
    // cookie put back, the IdP refuses the used code (561).
    let mut victim = stack.browser();
    victim.stop_before(Some(&stack.url("/oauth2/idpresponse")));
    let captured = victim.login(&stack.url("/app/"), "alice", "pw").await;
    let callback = captured.location().expect("the callback was captured");
    let nonce = victim.cookie("localhost", "AWSALBAuthNonce").unwrap();
    victim.stop_before(None);
    assert_eq!(victim.follow(&callback).await.status, 200);
    assert_eq!(victim.get(&callback).await.status, 401, "state used twice");
    victim.set_cookie("localhost", "AWSALBAuthNonce", &nonce);
    assert_eq!(
        victim.get(&callback).await.status,
        561,
        "code redeemed twice"
    );

    let metrics = admin_get(stack.proxy.admin.unwrap(), "/metrics")
        .await
        .text();
    for reason in [
        "AuthInvalidStateParam",
        "AuthMissingStateParam",
        "AuthIdpError",
        "AuthInvalidGrantError",
    ] {
        assert!(
            metrics.contains(&format!(
                "portcullis_auth_failure_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("portcullis_auth_success_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused_before_the_code_is_used() {
    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    browser.stop_before(Some(&stack.url("/oauth2/idpresponse")));
    let captured = browser.login(&stack.url("/app/"), "alice", "pw").await;
    let callback = captured.location().expect("the callback was captured");
    browser.stop_before(None);
    let mut url = url::Url::parse(&callback).unwrap();
    let issuer = url
        .query_pairs()
        .find(|(name, _)| name == "iss")
        .map(|(_, value)| value.into_owned())
        .expect("node-oidc-provider sends iss on the callback (RFC 9207)");
    let forged: Vec<(String, String)> = url
        .query_pairs()
        .map(|(name, value)| match &*name {
            "iss" => (name.into_owned(), "https://mix-up.example".to_owned()),
            _ => (name.into_owned(), value.into_owned()),
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(forged);

    assert_eq!(
        browser.get(url.as_str()).await.status,
        401,
        "another issuer"
    );
    // node-oidc-provider's discovery promises `iss` on every callback
    // (authorization_response_iss_parameter_supported): one without it is
    // a response from somewhere else.
    let without: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "iss")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(without);
    assert_eq!(browser.get(url.as_str()).await.status, 401, "no issuer");
    // The code was not spent on the refused callback: the real one completes.
    let page = browser.follow(&callback).await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    assert!(
        callback.contains(
            &*url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>()
        )
    );

    let metrics = admin_get(stack.proxy.admin.unwrap(), "/metrics")
        .await
        .text();
    for reason in ["AuthInvalidIssParam", "AuthMissingIssParam"] {
        assert!(
            metrics.contains(&format!(
                "portcullis_auth_failure_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn two_tabs_logging_in_at_once_both_succeed() {
    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    let first = browser
        .get(&stack.url("/app/one?tab=1"))
        .await
        .location()
        .unwrap();
    let second = browser
        .get(&stack.url("/app/two?tab=2"))
        .await
        .location()
        .unwrap();
    let one = browser.login(&first, "alice", "pw").await;
    let two = browser.login(&second, "alice", "pw").await;
    assert_eq!(one.status, 200, "{:#?}", one.hops);
    assert_eq!(two.status, 200, "{:#?}", two.hops);
    assert_eq!(one.json()["uri"], "/app/one?tab=1");
    assert_eq!(two.json()["uri"], "/app/two?tab=2");
}

#[tokio::test]
async fn a_return_url_that_escaping_would_overflow_still_logs_in_to_slash() {
    let stack = stack(json!({}), "", "").await;
    // Each `\` is two bytes in the nonce cookie's JSON: 4 KiB for this URL.
    let path = format!("/app/?q={}", "\\".repeat(2000));
    let mut browser = stack.browser();
    let redirect = browser.get(&stack.url(&path)).await;
    assert_eq!(redirect.status, 302);
    let nonce_cookie = redirect
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("AWSALBAuthNonce="))
        .unwrap();
    assert!(nonce_cookie.len() < 4096, "{} bytes", nonce_cookie.len());
    let page = browser
        .login(&redirect.location().unwrap(), "alice", "pw")
        .await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    assert_eq!(
        page.json()["uri"],
        "/",
        "a URL that does not fit becomes `/`"
    );
}

/// Two listeners on one host (the nonce cookie is sent to every port), each
/// with a rule under the default name `rule-1` but its own client at the IdP.
async fn two_listeners_one_rule_name(idp: &NodeIdp) -> (Running, upstream::Upstream, Pki) {
    let upstream = upstream::start().await;
    let pki = Pki::new();
    let (files, _) = pki.issue("localhost", &["localhost"]);
    let listener = |client: &str| {
        format!(
            r#"
  - address: "127.0.0.1:0"
    tls:
      certificate_file: {cert}
      private_key_file: {key}
    rules:
      - actions:
          - authenticate_oidc:
              issuer: {issuer}
              client_id: {client}
              client_secret: "${{CLIENT_SECRET}}"
              scope: openid email profile
          - forward: {{ target: "http://{upstream}" }}"#,
            cert = files.certificate_file.display(),
            key = files.private_key_file.display(),
            issuer = idp.issuer,
            upstream = upstream.addr,
        )
    };
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
sessions: {{ secrets: ["{SESSION_SECRET}"] }}
signing: {{ signer: "{SIGNER}" }}
listeners:{}{}
"#,
        listener("client-a"),
        listener("client-b"),
    );
    let proxy = start(load_yaml(&yaml, &[("CLIENT_SECRET", CLIENT_SECRET)])).await;
    (proxy, upstream, pki)
}

#[tokio::test]
async fn a_login_is_finished_only_for_the_client_that_started_it() {
    let client = |id: &str| {
        json!({
            "client_id": id,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": ["https://localhost:0/oauth2/idpresponse"],
        })
    };
    let idp = NodeIdp::start(json!({
        "clients": [client("client-a"), client("client-b")],
        "skipConsent": true,
    }))
    .await;
    let (proxy, _upstream, pki) = two_listeners_one_rule_name(&idp).await;
    let a = format!("https://localhost:{}", proxy.addrs[0].port());
    let b = format!("https://localhost:{}", proxy.addrs[1].port());

    // The IdP's answer to a login started on A, carried to B's callback.
    let mut browser = browser::Browser::new(Some(pki.ca_der()));
    browser.stop_before(Some(&format!("{a}/oauth2/idpresponse")));
    let captured = browser
        .login(&format!("{a}/page"), "alice", "pw")
        .await
        .location()
        .expect("the callback to A was captured");
    let carried = captured.replacen(&a, &b, 1);
    browser.stop_before(None);
    let page = browser.get(&carried).await;
    assert_eq!(page.status, 401, "{}", page.body);

    // A login started on A, its authorization request rewritten for B's
    // client: the IdP answers B with A's state, and B would hold every
    // secret it needs (the code verifier and nonce of A's login).
    let mut browser = browser::Browser::new(Some(pki.ca_der()));
    let started = browser.get(&format!("{a}/page")).await;
    assert_eq!(started.status, 302);
    let mut authorize = url::Url::parse(&started.location().unwrap()).unwrap();
    let query: Vec<(String, String)> = authorize
        .query_pairs()
        .into_owned()
        .map(|(name, value)| match name.as_str() {
            "client_id" => (name, "client-b".to_owned()),
            "redirect_uri" => (name, format!("{b}/oauth2/idpresponse")),
            _ => (name, value),
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(query);
    let page = browser.login(authorize.as_str(), "alice", "pw").await;
    let (last_url, status) = page.hops.last().unwrap().clone();
    assert!(
        last_url.starts_with(&format!("{b}/oauth2/idpresponse")),
        "{:#?}",
        page.hops
    );
    assert_eq!(status, 401, "{:#?}", page.hops);
    assert!(
        browser
            .cookie("localhost", "AWSELBAuthSessionCookie-0")
            .is_none()
    );

    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.text();
    assert!(
        metrics.contains("portcullis_auth_failure_total{reason=\"AuthInvalidStateParam\"} 2"),
        "{metrics}"
    );

    // The login itself still works where it was started.
    let mut browser = browser::Browser::new(Some(pki.ca_der()));
    let page = browser.login(&format!("{a}/page"), "alice", "pw").await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    assert_eq!(page.json()["uri"], "/page");
}

#[tokio::test]
async fn the_session_ends_at_session_timeout() {
    let stack = stack(json!({}), "session_timeout: 3", "").await;
    let mut browser = stack.browser();
    stack.login(&mut browser, "/app/").await;
    stack.clock.advance(2);
    assert_eq!(browser.get(&stack.url("/app/")).await.status, 200);
    stack.clock.advance(1);
    assert_eq!(
        browser.get(&stack.url("/app/")).await.status,
        302,
        "the session outlived session_timeout"
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_for_twenty_concurrent_requests() {
    let stack = stack(
        json!({ "accessTokenTtl": 60, "issueRefreshToken": true }),
        "",
        "",
    )
    .await;
    let mut browser = stack.browser();
    let first = stack.login(&mut browser, "/app/").await;
    let old_token = first.json()["headers"]["x-amzn-oidc-accesstoken"][0].clone();
    // The proxy now sees the access token expired; the IdP still honours
    // the refresh token (its own clock has not moved).
    stack.clock.advance(61);

    let cookies = browser.cookies("localhost");
    let requests = (0..20).map(|index| {
        let mut tab = stack.browser();
        for (name, value) in &cookies {
            tab.set_cookie("localhost", name, value);
        }
        let url = stack.url(&format!("/app/public-cache/{index}"));
        async move { tab.get(&url).await }
    });
    let pages = futures_util::future::join_all(requests).await;
    for page in &pages {
        assert_eq!(page.status, 200, "{}", page.body);
        let headers = &page.json()["headers"];
        assert_eq!(headers["x-amzn-oidc-identity"][0], "alice");
        assert_ne!(
            headers["x-amzn-oidc-accesstoken"][0], old_token,
            "the token was refreshed"
        );
    }
    let reissued: Vec<&browser::Page> = pages
        .iter()
        .filter(|page| {
            page.set_cookies
                .iter()
                .any(|cookie| cookie.starts_with("AWSELBAuthSessionCookie-0="))
        })
        .collect();
    assert!(!reissued.is_empty(), "the refreshed session is re-issued");
    for page in reissued {
        // The upstream said `public`: with a session in it, no shared cache
        // may keep this answer.
        assert_eq!(
            page.header("cache-control").as_deref(),
            Some("private, max-age=600"),
            "{:?}",
            page.headers
        );
    }
    let stats = stack.idp.stats().await;
    assert_eq!(
        stats["grants"]["refresh_token"], 1,
        "exactly one refresh at the provider: {stats}"
    );
    let metrics = admin_get(stack.proxy.admin.unwrap(), "/metrics")
        .await
        .text();
    assert!(
        metrics.contains(r#"portcullis_auth_refresh_total{result="success"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn big_claims_are_sharded_and_claims_too_large_get_a_500_that_says_so() {
    let stack = stack(json!({ "bigClaims": 6000 }), "", "").await;
    let mut browser = stack.browser();
    let page = stack.login(&mut browser, "/app/").await;
    assert!(
        browser
            .cookie("localhost", "AWSELBAuthSessionCookie-1")
            .is_some(),
        "{:?}",
        page.set_cookies
    );
    for cookie in page
        .set_cookies
        .iter()
        .filter(|cookie| cookie.starts_with("AWSELBAuthSessionCookie-"))
    {
        assert!(cookie.len() < 4096, "{} bytes", cookie.len());
    }
    assert_eq!(page.json()["headers"]["x-amzn-oidc-identity"][0], "alice");

    let huge = stack_with_claims(20_000).await;
    let mut browser = huge.browser();
    let page = browser.login(&huge.url("/app/"), "alice", "pw").await;
    assert_eq!(page.status, 500);
    assert!(page.body.contains("store: redis"), "{}", page.body);
}

async fn stack_with_claims(size: usize) -> Stack {
    stack(json!({ "bigClaims": size }), "", "").await
}

#[tokio::test]
async fn sign_out_clears_every_shard_and_goes_to_the_idps_end_session() {
    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    stack.login(&mut browser, "/app/").await;
    let page = browser.get(&stack.url("/oauth2/sign_out")).await;
    assert_eq!(page.status, 302);
    let location = url::Url::parse(&page.location().unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with(&format!("{}/session/end", stack.idp.issuer)),
        "{location}"
    );
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["post_logout_redirect_uri"], stack.url("/signed-out"));
    assert!(query.contains_key("id_token_hint"));
    for name in [
        "AWSELBAuthSessionCookie-0",
        "AWSELBAuthSessionCookie-1",
        "AWSELBAuthSessionCookie-2",
        "AWSELBAuthSessionCookie-3",
        "AWSALBAuthNonce",
    ] {
        assert!(
            page.set_cookies
                .iter()
                .any(|cookie| cookie.starts_with(&format!("{name}="))
                    && cookie.contains("Max-Age=0")),
            "{name} not cleared: {:?}",
            page.set_cookies
        );
    }
    assert_eq!(
        browser.get(&stack.url("/app/")).await.status,
        302,
        "logged out"
    );

    // The IdP accepts the request and sends the browser back.
    let confirm = browser.follow(location.as_str()).await;
    let back = browser.submit_form(&confirm, &[("logout", "yes")]).await;
    assert!(
        back.hops
            .iter()
            .any(|(url, _)| url.starts_with(&stack.url("/signed-out"))),
        "{:#?}",
        back.hops
    );
}

#[tokio::test]
async fn client_secret_post_when_the_idp_supports_only_that() {
    let stack = stack(
        json!({ "tokenEndpointAuthMethods": ["client_secret_post"] }),
        "",
        "",
    )
    .await;
    let mut browser = stack.browser();
    let page = stack.login(&mut browser, "/app/").await;
    assert_eq!(page.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
}

#[tokio::test]
async fn a_websocket_after_login() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let stack = stack(json!({}), "", "").await;
    let mut browser = stack.browser();
    stack.login(&mut browser, "/app/").await;
    let cookie = browser.cookie_header_for("localhost");

    let stream = tls_connect(
        stack.proxy.addr(),
        Some("localhost"),
        &stack.pki.ca_der(),
        &[b"http/1.1"],
    )
    .await;
    let mut request = format!("wss://{}/ws", stack.host())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket.send("after login".into()).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "after login");
    assert!(
        stack
            .upstream
            .signals
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|seen| seen == "GET /ws")
    );

    // Without the session, no upgrade reaches the upstream.
    let stream = tls_connect(
        stack.proxy.addr(),
        Some("localhost"),
        &stack.pki.ca_der(),
        &[b"http/1.1"],
    )
    .await;
    let request = format!("wss://{}/ws", stack.host())
        .into_client_request()
        .unwrap();
    let refused = tokio_tungstenite::client_async(request, stream).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_failed_refresh_sends_the_browser_to_login_and_api_clients_get_401() {
    // oidc-provider sets exp to the whole second it issues in plus the TTL,
    // so a token lives between TTL - 1 and TTL seconds. With 1 s the access
    // token could expire between the token request and the userinfo one of
    // the login itself (it did, in CI); 4 s leaves the login at least three
    // on a loaded machine.
    let stack = stack(
        json!({ "accessTokenTtl": 4, "refreshTokenTtl": 4, "issueRefreshToken": true }),
        "",
        "",
    )
    .await;
    let mut browser = stack.browser();
    stack.login(&mut browser, "/app/").await;
    // The one test that waits for real time: the IdP's refresh token must
    // have expired on the IdP's own clock.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    stack.clock.advance(5);
    let api = browser
        .request(
            "GET",
            &stack.url("/app/"),
            &[("accept", "application/json")],
            None,
        )
        .await;
    assert_eq!(api.status, 401);
    assert_eq!(browser.get(&stack.url("/app/")).await.status, 302);
    let metrics = admin_get(stack.proxy.admin.unwrap(), "/metrics")
        .await
        .text();
    assert!(
        metrics.contains(r#"portcullis_auth_refresh_total{result="failure"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn cors_preflights_pass_unauthenticated_when_allowed() {
    let stack = stack(json!({}), "allow_cors_preflight: true", "").await;
    let mut browser = stack.browser();
    let preflight = browser
        .request(
            "OPTIONS",
            &stack.url("/app/api"),
            &[
                ("access-control-request-method", "PUT"),
                ("origin", "https://other.test"),
            ],
            None,
        )
        .await;
    assert_eq!(preflight.status, 200);
    assert!(
        preflight.json()["headers"]
            .get("x-amzn-oidc-identity")
            .is_none()
    );
    let plain_options = browser
        .request("OPTIONS", &stack.url("/app/api"), &[], None)
        .await;
    assert_eq!(plain_options.status, 401, "only preflights pass");
}

#[tokio::test]
async fn an_idp_that_is_down_or_hung_gives_561_and_readiness_waits_for_it() {
    // A hung IdP: accepts connections, never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    // A down IdP: a port nothing listens on, yet.
    let down = upstream::dead_port();
    let down_port = down.addr.port();
    let stack = TlsStack::start(SIGNER, &[], |upstream| {
        format!(
            r#"      - name: hung
        conditions: {{ path: ["/hung/*"] }}
        actions:
          - authenticate_oidc: {{ issuer: "http://{hung_addr}", client_id: c, client_secret: s, idp_timeout: 1, session_cookie_name: HungSession }}
          - forward: {{ target: "http://{upstream}" }}
      - name: down
        actions:
          - authenticate_oidc: {{ issuer: "http://127.0.0.1:{down_port}", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}
          - forward: {{ target: "http://{upstream}" }}"#
        )
    })
    .await;
    let admin = stack.proxy.admin.unwrap();
    let mut browser = stack.browser();
    let base = stack.base();

    assert_eq!(admin_get(admin, "/readyz").await.status, 503);
    let started = std::time::Instant::now();
    let page = browser.get(&format!("{base}/hung/x")).await;
    assert_eq!(page.status, 561);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by idp_timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(browser.get(&format!("{base}/x")).await.status, 561);
    assert_eq!(
        browser.get(&format!("{base}/x")).await.status,
        561,
        "still serving"
    );

    // The IdP comes up on the port the proxy keeps retrying.
    let mut config = idp_config(json!({}));
    config["port"] = json!(down_port);
    let _idp = NodeIdp::start(config).await;
    let came_up = eventually(Duration::from_secs(10), || async {
        stack.browser().get(&format!("{base}/x")).await.status == 302
    })
    .await;
    assert!(came_up, "the proxy never picked up the IdP");
    // The hung one still holds readiness back.
    assert_eq!(admin_get(admin, "/readyz").await.status, 503);
}

#[tokio::test]
async fn require_lets_the_right_user_in_and_refuses_the_other_with_403() {
    let stack = stack(
        json!({ "claims": { "groups": ["admins", "users"], "realm_access": { "roles": ["ops"] } } }),
        "require: [{ name: groups, format: string-array, values: [admins] }, { name: realm_access.roles, format: string-array, values: [ops] }, { name: email_verified, values: [\"true\"] }]
         claim_headers: { X-Forwarded-User: preferred_username, X-Forwarded-Groups: groups, X-Forwarded-Roles: realm_access.roles }",
        r#"
- name: public
  conditions: { path: ["/public/*"] }
  actions:
    - forward: { target: "http://UPSTREAM" }
"#,
    )
    .await;

    // alice has every claim required: in, with the claims as plain headers.
    let mut alice = stack.browser();
    let page = stack.login(&mut alice, "/app/").await;
    let headers = &page.json()["headers"];
    assert_eq!(headers["x-amzn-oidc-identity"][0], "alice");
    assert_eq!(headers["x-forwarded-user"][0], "alice");
    assert_eq!(headers["x-forwarded-groups"][0], "admins,users");
    assert_eq!(headers["x-forwarded-roles"][0], "ops");
    // A client's own copies never reach the upstream, on this rule or any.
    let forged = alice
        .request(
            "GET",
            &stack.url("/app/"),
            &[
                ("x-forwarded-user", "root"),
                ("X-Forwarded-Groups", "admins"),
            ],
            None,
        )
        .await;
    let headers = &forged.json()["headers"];
    assert_eq!(headers["x-forwarded-user"], json!(["alice"]), "{headers}");
    assert_eq!(headers["x-forwarded-groups"], json!(["admins,users"]));
    let public = alice
        .request(
            "GET",
            &stack.url("/public/page"),
            &[("x-forwarded-user", "root"), ("X-Forwarded-Roles", "ops")],
            None,
        )
        .await;
    assert_eq!(public.status, 200);
    let headers = &public.json()["headers"];
    assert!(headers.get("x-forwarded-user").is_none(), "{headers}");
    assert!(headers.get("x-forwarded-roles").is_none(), "{headers}");

    // bob is a user of the same IdP without those claims: 403, a page for
    // a browser, JSON for an API client, and nothing reaches the upstream.
    let mut bob = stack.browser();
    let page = bob.login(&stack.url("/app/"), "bob", "pw").await;
    assert_eq!(page.status, 403, "{:#?}", page.hops);
    assert!(page.body.contains("403"), "{}", page.body);
    let api = bob
        .request(
            "GET",
            &stack.url("/app/"),
            &[("accept", "application/json")],
            None,
        )
        .await;
    assert_eq!(api.status, 403);
    assert_eq!(api.json()["reason"], "AuthzClaimMismatch");
    let metrics = admin_get(stack.proxy.admin.unwrap(), "/metrics")
        .await
        .text();
    assert!(
        metrics.contains(r#"portcullis_auth_failure_total{reason="AuthzClaimMismatch"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_api_client_with_a_bearer_token_gets_the_identity_a_session_gets() {
    let resource = "https://orders.example";
    let stack = stack(
        json!({ "apiResource": { "resource": resource, "scope": "orders:read" } }),
        &format!("bearer: accept\nbearer_audience: [\"{resource}\"]"),
        "",
    )
    .await;
    let token = stack
        .idp
        .client_credentials_token((CLIENT_ID, CLIENT_SECRET), resource, "orders:read")
        .await;
    let mut api = stack.browser();
    let page = api
        .request(
            "GET",
            &stack.url("/app/orders"),
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let headers = &page.json()["headers"];
    // A client-credentials token names the client as its subject.
    assert_eq!(headers["x-amzn-oidc-identity"][0], CLIENT_ID);
    assert_eq!(headers["x-amzn-oidc-accesstoken"][0], token.as_str());
    let data = headers["x-amzn-oidc-data"][0].as_str().unwrap().to_owned();
    let jwks_uri = stack.url("/oauth2/public-keys");
    let ca_pem = stack.pki.ca_pem_path();
    let verifier = alb::Verifier {
        signer: SIGNER,
        issuer: &stack.idp.issuer,
        client_id: CLIENT_ID,
        jwks_uri: &jwks_uri,
        ca_pem: &ca_pem,
    };
    let verified = alb::verify(&verifier, &data).await;
    assert_eq!(verified["sub"], CLIENT_ID);
    assert_eq!(verified["scope"], "orders:read");

    // A bad token is 401 with the bearer challenge: never a login page.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let refused = api
        .request(
            "GET",
            &stack.url("/app/orders"),
            &[("authorization", &format!("Bearer {forged}"))],
            None,
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|challenge| challenge.contains("invalid_token")),
        "{:?}",
        refused.headers
    );
    // Without a token, a browser still logs in as before.
    assert_eq!(stack.browser().get(&stack.url("/app/")).await.status, 302);
}
