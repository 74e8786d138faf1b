//! Forward auth (`/oauth2/auth`, `/oauth2/start`) and trusted front
//! proxies, through node-oidc-provider: first asked directly, as a front
//! proxy would ask, then behind a real nginx (`auth_request`) and a real
//! Caddy (`forward_auth`) running the configuration files the
//! documentation shows.

mod common;

use common::browser::{Browser, Page, query_param};
use common::front;
use common::idp::NodeIdp;
use common::*;
use portcullis::internals::Clock;
use serde_json::json;

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
const SIGNER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The IdP, the upstream and portcullis on a plain-HTTP loopback listener,
/// as a front proxy on the same host reaches it.
struct Stack {
    idp: NodeIdp,
    proxy: Running,
    upstream: upstream::Upstream,
    /// What the proxy judges sessions by.
    clock: Clock,
    /// The CA of the second, TLS listener: `AlbJwtVerifier` fetches the
    /// public keys over https only.
    pki: Pki,
}

impl Stack {
    /// Rules: `/public/*` forwarded without login, `/api/*` bearer JWTs of
    /// the IdP, `/admin/*` a login whose `require` alice does not meet,
    /// `/deny/*` and `/allow/*` with those unauthenticated policies, and
    /// everything else a login with claim headers. `listener_extra` goes
    /// into the listener (e.g. `trusted_proxies`).
    async fn start(listener_extra: &str) -> Self {
        let idp = NodeIdp::start(json!({
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [
                    "https://localhost:0/oauth2/idpresponse",
                    "http://localhost:0/oauth2/idpresponse",
                    "https://app.example/oauth2/idpresponse",
                ],
            }],
            "accessTokenTtl": 60,
            "issueRefreshToken": true,
        }))
        .await;
        let jwks = idp.discovery().await["jwks_uri"]
            .as_str()
            .expect("a jwks_uri")
            .to_owned();
        let upstream = upstream::start().await;
        let login = |extra: &str| {
            format!(
                r#"- authenticate_oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret: {CLIENT_SECRET}
              scope: openid email profile
              {extra}"#,
                issuer = idp.issuer
            )
        };
        let forward = format!(r#"- forward: {{ target: "http://{}" }}"#, upstream.addr);
        let pki = Pki::new();
        let (files, _) = pki.issue("localhost", &["localhost"]);
        let yaml = format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
sessions: {{ secrets: ["{SESSION_SECRET}"] }}
signing: {{ signer: "{SIGNER}" }}
listeners:
  - address: "127.0.0.1:0"
    {listener_extra}
    rules:
      - name: public
        conditions: {{ path: ["/public/*"] }}
        actions:
          {forward}
      - name: api
        conditions: {{ path: ["/api/*"] }}
        actions:
          - jwt_validation: {{ issuer: "{issuer}", jwks_endpoint: "{jwks}" }}
          {forward}
      - name: admin
        conditions: {{ path: ["/admin/*"] }}
        actions:
          {admin}
          {forward}
      - name: deny
        conditions: {{ path: ["/deny/*"] }}
        actions:
          {deny}
          {forward}
      - name: allow
        conditions: {{ path: ["/allow/*"] }}
        actions:
          {allow}
          {forward}
      - name: app
        actions:
          {app}
          {forward}
  - address: "127.0.0.1:0"
    tls: {{ certificate_file: "{cert}", private_key_file: "{key}" }}
    rules:
      - name: keys-only
        actions:
          - fixed_response: {{ status: 404 }}
"#,
            cert = files.certificate_file.display(),
            key = files.private_key_file.display(),
            issuer = idp.issuer,
            admin = login(
                "require: [{ name: email, format: single-string, values: [\"root@example.test\"] }]"
            ),
            deny = login("on_unauthenticated_request: deny"),
            allow = login("on_unauthenticated_request: allow"),
            app = login(
                "claim_headers: { X-Forwarded-User: preferred_username, X-Forwarded-Email: email }"
            ),
        );
        let clock = Clock::manual(unix_now());
        let proxy = start_with_clock(load_yaml(&yaml, &[]), clock.clone()).await;
        Self {
            idp,
            proxy,
            upstream,
            clock,
            pki,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.proxy.addr().port())
    }

    /// A session for alice, made by a login straight through the proxy.
    async fn session(&self) -> Browser {
        let mut browser = Browser::new(None);
        let page = browser
            .login(&self.url("/app/"), "alice", "any password")
            .await;
        assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
        browser
    }

    /// `/oauth2/auth` as a front proxy asks it about `method uri` on
    /// `https://app.example`, with `extra` headers (cookies come from the
    /// browser's jar for this proxy).
    async fn check(&self, browser: &mut Browser, uri: &str, extra: &[(&str, &str)]) -> Page {
        self.check_at(browser, "/oauth2/auth", uri, extra).await
    }

    /// The `redirect_uri` of the login a navigation to `/app/x` with
    /// `headers` is sent to.
    async fn login_redirect_uri(&self, browser: &mut Browser, headers: &[(&str, &str)]) -> String {
        let mut headers = headers.to_vec();
        headers.push(("accept", "text/html"));
        let page = browser
            .request("GET", &self.url("/app/x"), &headers, None)
            .await;
        assert_eq!(page.status, 302, "{}", page.body);
        query_param(&page.location().expect("a Location"), "redirect_uri").expect("a redirect_uri")
    }

    async fn check_at(
        &self,
        browser: &mut Browser,
        path: &str,
        uri: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut headers = vec![
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-uri", uri),
        ];
        headers.extend_from_slice(extra);
        browser
            .request("GET", &self.url(path), &headers, None)
            .await
    }
}

/// `{base}/oauth2/start?rd=…` with `rd` encoded.
fn start_url(base: &str, rd: &str) -> String {
    let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    format!("{base}/oauth2/start?rd={rd}")
}

fn json_type(page: &Page) -> bool {
    page.header("content-type")
        .is_some_and(|value| value.starts_with("application/json"))
}

#[tokio::test]
async fn a_check_answers_for_the_original_request_and_runs_no_action() {
    let stack = Stack::start("").await;
    let mut nobody = Browser::new(None);

    // No session: 401 JSON for the front proxy, nothing upstream.
    let page = stack.check(&mut nobody, "/app/x", &[]).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(json_type(&page), "{:?}", page.headers);
    // A public path passes without login, and without identity.
    let page = stack.check(&mut nobody, "/public/x", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("x-amzn-oidc-identity"), None);
    // `deny` is 401, `allow` 200 without identity.
    assert_eq!(stack.check(&mut nobody, "/deny/x", &[]).await.status, 401);
    let page = stack.check(&mut nobody, "/allow/x", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-amzn-oidc-identity"), None);
    // A bearer rule without a token: 401 with the bearer challenge.
    let page = stack.check(&mut nobody, "/api/orders", &[]).await;
    assert_eq!(page.status, 401);
    assert!(
        page.header("www-authenticate")
            .is_some_and(|challenge| challenge.starts_with("Bearer")),
        "{:?}",
        page.headers
    );
    // Path tricks in the original URI are resolved before the rules see it.
    let page = stack.check(&mut nobody, "/public/../app/x", &[]).await;
    assert_eq!(page.status, 401, "{}", page.body);
    let page = stack.check(&mut nobody, "/public/%2e%2e/app/x", &[]).await;
    assert_eq!(page.status, 401, "{}", page.body);

    // With a session: 200 and the identity, the claim headers; `require`
    // not met: 403.
    let mut alice = stack.session().await;
    let page = stack.check(&mut alice, "/app/x", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let subject = page.header("x-amzn-oidc-identity").expect("an identity");
    assert!(!subject.is_empty());
    assert!(page.header("x-amzn-oidc-data").is_some());
    assert!(page.header("x-amzn-oidc-accesstoken").is_some());
    assert_eq!(page.header("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        page.header("x-forwarded-email").as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    let page = stack.check(&mut alice, "/admin/x", &[]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(json_type(&page));
    assert_eq!(page.json()["reason"], "AuthzClaimMismatch");
    // The original method counts: a rule's method condition sees it.
    let page = stack
        .check(&mut alice, "/app/x", &[("x-forwarded-method", "DELETE")])
        .await;
    assert_eq!(page.status, 200);

    // A browser asking for itself (no original request described) learns
    // whether it may pass, never its tokens.
    let page = alice
        .request("GET", &stack.url("/oauth2/auth"), &[], None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("x-amzn-oidc-accesstoken"), None);
    assert_eq!(page.header("x-amzn-oidc-identity"), None);
    assert_eq!(page.header("x-forwarded-user"), None);

    // The check ran no terminal action: the upstream saw only the login's
    // landing request.
    let seen = stack.upstream.signals.seen.lock().unwrap().clone();
    assert_eq!(seen, ["GET /app/"], "{seen:?}");
}

#[tokio::test]
async fn a_refreshed_session_comes_back_in_the_checks_answer() {
    let stack = Stack::start("").await;
    let mut alice = stack.session().await;
    let before = stack.check(&mut alice, "/app/x", &[]).await;
    let old_token = before.header("x-amzn-oidc-accesstoken").unwrap();
    assert!(before.set_cookies.is_empty(), "{:?}", before.set_cookies);
    // The proxy sees the access token expired; the IdP still honours the
    // refresh token.
    stack.clock.advance(61);
    let after = stack.check(&mut alice, "/app/x", &[]).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_ne!(after.header("x-amzn-oidc-accesstoken").unwrap(), old_token);
    assert!(
        after
            .set_cookies
            .iter()
            .any(|cookie| cookie.starts_with("AWSELBAuthSessionCookie-0=")),
        "{:?}",
        after.set_cookies
    );
}

#[tokio::test]
async fn mode_redirect_answers_a_navigation_with_the_login_on_the_browsers_host() {
    let stack = Stack::start("").await;
    let mut browser = Browser::new(None);
    let navigation = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
    let page = stack
        .check_at(
            &mut browser,
            "/oauth2/auth?mode=redirect",
            "/app/orders?id=7",
            &navigation,
        )
        .await;
    assert_eq!(page.status, 302, "{}", page.body);
    let location = page.location().expect("a Location");
    assert!(location.starts_with(&stack.idp.issuer), "{location}");
    assert_eq!(
        query_param(&location, "redirect_uri").as_deref(),
        Some("https://app.example/oauth2/idpresponse")
    );
    assert!(
        page.set_cookies
            .iter()
            .any(|cookie| cookie.starts_with("AWSALBAuthNonce")),
        "{:?}",
        page.set_cookies
    );
    // An XHR still gets 401 in redirect mode; without the mode, a navigation too.
    let xhr = stack
        .check_at(
            &mut browser,
            "/oauth2/auth?mode=redirect",
            "/app/x",
            &[("x-requested-with", "XMLHttpRequest")],
        )
        .await;
    assert_eq!(xhr.status, 401);
    let plain = stack.check(&mut browser, "/app/x", &navigation).await;
    assert_eq!(plain.status, 401);
}

#[tokio::test]
async fn envoy_sends_the_original_path_below_the_check_path() {
    let stack = Stack::start("").await;
    let mut nobody = Browser::new(None);
    let envoy = |path: &str| format!("/oauth2/auth{path}");
    let page = nobody
        .request("GET", &stack.url(&envoy("/public/x?a=1")), &[], None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = nobody
        .request("GET", &stack.url(&envoy("/public/../app/x")), &[], None)
        .await;
    assert_eq!(page.status, 401, "{}", page.body);
    let page = nobody
        .request("GET", &stack.url(&envoy("/app/x")), &[], None)
        .await;
    assert_eq!(page.status, 401);
}

/// A peer outside `trusted_proxies` cannot describe another request: the
/// check is about its own (`/oauth2/auth`, which only the catch-all login
/// rule covers), and its redirects use its own host and scheme.
#[tokio::test]
async fn forged_forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let stack = Stack::start(r#"trusted_proxies: ["10.0.0.0/8"]"#).await;
    let mut nobody = Browser::new(None);
    let page = stack.check(&mut nobody, "/public/x", &[]).await;
    assert_eq!(page.status, 401, "{}", page.body);
    let redirect_uri = stack
        .login_redirect_uri(
            &mut nobody,
            &[
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(
        redirect_uri,
        format!(
            "http://localhost:{}/oauth2/idpresponse",
            stack.proxy.addr().port()
        )
    );

    // From a trusted peer (the default, loopback), the same check passes.
    let trusting = Stack::start("").await;
    let page = trusting.check(&mut nobody, "/public/x", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
}

#[tokio::test]
async fn a_trusted_front_proxy_decides_the_scheme_and_host_of_redirects() {
    let stack = Stack::start("").await;
    let mut browser = Browser::new(None);
    let redirect_uri = stack
        .login_redirect_uri(
            &mut browser,
            &[
                ("x-forwarded-host", "app.example"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(redirect_uri, "https://app.example/oauth2/idpresponse");
    // A forged list or a malformed host is no host at all.
    for (name, value) in [
        ("x-forwarded-host", "app.example, evil.example"),
        ("x-forwarded-host", "evil.example/x"),
    ] {
        let redirect_uri = stack
            .login_redirect_uri(&mut browser, &[(name, value)])
            .await;
        assert!(
            redirect_uri.starts_with("http://localhost:"),
            "{value}: {redirect_uri}"
        );
    }
}

#[tokio::test]
async fn start_logs_in_and_returns_only_to_this_host() {
    let stack = Stack::start("").await;
    // A full login begun at /oauth2/start returns to `rd`.
    let mut browser = Browser::new(None);
    let start = start_url(&stack.url(""), &stack.url("/app/orders?id=7"));
    let page = browser.login(&start, "alice", "any password").await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    assert_eq!(page.json()["uri"], "/app/orders?id=7");

    // Another host, or a scheme-relative or userinfo trick: back to `/`.
    for rd in [
        "https://evil.example/x",
        "//evil.example/x",
        "https://localhost@evil.example/x",
        "javascript:alert(1)",
    ] {
        let mut browser = Browser::new(None);
        let start = start_url(&stack.url(""), rd);
        let page = browser.login(&start, "alice", "any password").await;
        assert_eq!(page.status, 200, "{rd}: {:#?}", page.hops);
        assert_eq!(page.json()["uri"], "/", "{rd}");
    }
}

#[tokio::test]
async fn start_sends_a_login_for_another_named_host_to_that_host() {
    let idp = NodeIdp::start(json!({ "clients": [] })).await;
    let upstream = upstream::start().await;
    let yaml = format!(
        r#"
sessions: {{ secrets: ["{SESSION_SECRET}"] }}
listeners:
  - address: "127.0.0.1:0"
    rules:
      - name: other
        conditions: {{ host: ["other.example"] }}
        actions:
          - authenticate_oidc: {{ issuer: {issuer}, client_id: x, client_secret: y }}
          - forward: {{ target: "http://{upstream}" }}
      - name: any-host
        conditions: {{ host: ["*"], path: ["/never/*"] }}
        actions:
          - forward: {{ target: "http://{upstream}" }}
      - name: app
        actions:
          - forward: {{ target: "http://{upstream}" }}
"#,
        issuer = idp.issuer,
        upstream = upstream.addr
    );
    let proxy = start(load_yaml(&yaml, &[])).await;
    let mut browser = Browser::new(None);
    let url = |rd: &str| start_url(&format!("http://localhost:{}", proxy.addr().port()), rd);
    let page = browser
        .request("GET", &url("https://other.example/x?y=1"), &[], None)
        .await;
    assert_eq!(page.status, 302);
    assert_eq!(
        page.location().as_deref(),
        Some("https://other.example/oauth2/start?rd=https%3A%2F%2Fother.example%2Fx%3Fy%3D1")
    );
    // A host only a `*` pattern matches is named by nobody: back to `/`,
    // never an open redirect.
    let page = browser
        .request("GET", &url("https://evil.example/x"), &[], None)
        .await;
    assert_eq!(page.status, 302);
    assert_eq!(
        page.location(),
        Some(format!("http://localhost:{}/", proxy.addr().port()))
    );
    // A rule without login on this host: straight to the target.
    let page = browser.request("GET", &url("/plain?z=2"), &[], None).await;
    assert_eq!(page.status, 302);
    assert_eq!(
        page.location(),
        Some(format!(
            "http://localhost:{}/plain?z=2",
            proxy.addr().port()
        ))
    );
    let _ = (idp, upstream);
}

// ------------------------------------------------- behind a real front proxy

/// What every front proxy must get right, asked through `front`
/// (`http://localhost:PORT`): a navigation with no session ends at the IdP
/// and, once signed in, back on the page it asked for with the identity
/// upstream (verified as an application behind an ALB verifies it); the
/// rules' other answers; and a client's own identity headers never reach
/// the upstream.
async fn through_the_front_proxy(stack: &Stack, front: &str) {
    let mut browser = Browser::new(None);
    let page = browser
        .login(&format!("{front}/app/hello?x=1"), "alice", "any password")
        .await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    assert!(
        page.hops
            .iter()
            .any(|(url, _)| url.starts_with(&stack.idp.issuer)),
        "the login went through the IdP: {:#?}",
        page.hops
    );
    let seen = page.json();
    assert_eq!(seen["uri"], "/app/hello?x=1");
    let headers = &seen["headers"];
    assert_eq!(headers["x-amzn-oidc-identity"][0], "alice", "{headers}");
    assert_eq!(headers["x-forwarded-user"][0], "alice", "{headers}");
    assert_eq!(headers["x-forwarded-email"][0], "alice@example.test");
    let data = headers["x-amzn-oidc-data"][0].as_str().unwrap().to_owned();
    let ca_pem = stack.pki.ca_pem_path();
    let jwks_uri = format!(
        "https://localhost:{}/oauth2/public-keys",
        stack.proxy.addrs[1].port()
    );
    let verified = alb::verify(
        &alb::Verifier {
            signer: SIGNER,
            issuer: &stack.idp.issuer,
            client_id: CLIENT_ID,
            jwks_uri: &jwks_uri,
            ca_pem: &ca_pem,
        },
        &data,
    )
    .await;
    assert_eq!(verified["sub"], "alice");

    // Signed in, a client's own identity headers are replaced, not added to.
    let forged = [
        ("x-amzn-oidc-identity", "admin"),
        ("x-amzn-oidc-accesstoken", "stolen"),
        ("x-forwarded-user", "admin"),
    ];
    let page = browser
        .request("GET", &format!("{front}/app/again"), &forged, None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let headers = &page.json()["headers"];
    assert_eq!(
        headers["x-amzn-oidc-identity"],
        json!(["alice"]),
        "{headers}"
    );
    assert_eq!(headers["x-forwarded-user"], json!(["alice"]), "{headers}");
    assert_ne!(headers["x-amzn-oidc-accesstoken"], json!(["stolen"]));

    // A public path: no login, and no identity at all, forged or not.
    let mut stranger = Browser::new(None);
    let page = stranger
        .request("GET", &format!("{front}/public/x"), &forged, None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let headers = page.json()["headers"].clone();
    for (name, _) in forged {
        assert!(
            headers.get(name).is_none(),
            "{name} reached the upstream: {headers}"
        );
    }
    // `require` not met: 403, and the upstream is never asked.
    let before = stack.upstream.signals.seen.lock().unwrap().len();
    let page = browser
        .request("GET", &format!("{front}/admin/x"), &[], None)
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(stack.upstream.signals.seen.lock().unwrap().len(), before);

    // Signing out through the front proxy ends the session there too.
    let page = browser
        .request(
            "GET",
            &format!("{front}/oauth2/sign_out?rd=/public/bye"),
            &[],
            None,
        )
        .await;
    assert_eq!(page.status, 302, "{}", page.body);
    let page = browser
        .request(
            "GET",
            &format!("{front}/app/after"),
            &[("accept", "text/html")],
            None,
        )
        .await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(
        page.location()
            .is_some_and(|location| location.contains("/oauth2/start")
                || location.starts_with(&stack.idp.issuer)),
        "{:?}",
        page.location()
    );
}

/// A front-proxy file of deploy/forward-auth, with its `${NAME}`
/// placeholders filled in (as the official nginx image's templates are).
fn deploy_file(name: &str, vars: &[(&str, String)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/forward-auth")
        .join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    for (name, value) in vars {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !text.contains("${"),
        "a placeholder is left in {name}:\n{text}"
    );
    text
}

#[tokio::test]
async fn behind_nginx_auth_request() {
    let Some(binary) = front::nginx_binary("forward auth behind nginx") else {
        return;
    };
    let stack = Stack::start("").await;
    let port = upstream::dead_port();
    let http = deploy_file(
        "nginx.conf",
        &[
            ("LISTEN", port.addr.to_string()),
            ("PORTCULLIS", stack.proxy.addr().to_string()),
            ("APP", stack.upstream.addr.to_string()),
        ],
    );
    let nginx = front::nginx(&binary, port, &http).await;
    let front = format!("http://localhost:{}", nginx.addr.port());
    through_the_front_proxy(&stack, &front).await;

    // A session the check refreshes reaches the browser through nginx.
    let mut browser = Browser::new(None);
    let page = browser
        .login(&format!("{front}/app/"), "alice", "any password")
        .await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    stack.clock.advance(61);
    let page = browser
        .request("GET", &format!("{front}/app/later"), &[], None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.set_cookies
            .iter()
            .any(|cookie| cookie.starts_with("AWSELBAuthSessionCookie-0=")),
        "{:?}",
        page.set_cookies
    );

    // nginx keeps /oauth2/auth internal: a page cannot read its tokens.
    let page = browser
        .request("GET", &format!("{front}/oauth2/auth"), &[], None)
        .await;
    assert_eq!(page.status, 404, "{}", page.body);
}

#[tokio::test]
async fn behind_caddy_forward_auth() {
    let Some(binary) = front::caddy_binary("forward auth behind Caddy") else {
        return;
    };
    let stack = Stack::start("").await;
    let port = upstream::dead_port();
    let caddyfile =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/forward-auth/Caddyfile");
    let env = [
        ("LISTEN", format!("http://localhost:{}", port.addr.port())),
        ("PORTCULLIS", stack.proxy.addr().to_string()),
        ("APP", stack.upstream.addr.to_string()),
    ];
    let caddy = front::caddy(&binary, port, &caddyfile, &env).await;
    let front = format!("http://localhost:{}", caddy.addr.port());
    through_the_front_proxy(&stack, &front).await;

    // Caddy does not hand a refreshed session's cookie to the browser: the
    // requests that follow still carry the old one, and must not each
    // refresh again at the IdP.
    let mut browser = Browser::new(None);
    let page = browser
        .login(&format!("{front}/app/"), "alice", "any password")
        .await;
    assert_eq!(page.status, 200, "{:#?}", page.hops);
    let before = stack.idp.stats().await["grants"]["refresh_token"]
        .as_u64()
        .unwrap_or(0);
    stack.clock.advance(61);
    for index in 0..3 {
        let page = browser
            .request("GET", &format!("{front}/app/{index}"), &[], None)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
    }
    let stats = stack.idp.stats().await;
    assert_eq!(
        stats["grants"]["refresh_token"].as_u64().unwrap_or(0),
        before + 1,
        "one refresh for three requests: {stats}"
    );
}

/// What both compose stacks share, on loopback: the secrets their
/// gen-secrets.sh makes, and the development IdP from their dev-idp.yaml
/// (`0.0.0.0:9000` in its container, published on the loopback), sending
/// browsers back to `front`.
struct ComposeBase {
    compose: std::path::PathBuf,
    dir: tempfile::TempDir,
    idp: u16,
    _idp: tokio::process::Child,
    client_secret: String,
}

impl ComposeBase {
    async fn start(stack: &str, front: &str) -> Self {
        let compose =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker-compose");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            compose.join("gen-secrets.sh"),
            dir.path().join("gen-secrets.sh"),
        )
        .unwrap();
        let made = std::process::Command::new("sh")
            .arg(dir.path().join("gen-secrets.sh"))
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );

        let idp_port = upstream::dead_port();
        let idp = idp_port.addr.port();
        let idp_yaml = std::fs::read_to_string(compose.join("dev-idp.yaml"))
            .unwrap()
            .replace("0.0.0.0:9000", &format!("127.0.0.1:{idp}"))
            .replace("http://localhost:9000", &format!("http://localhost:{idp}"))
            .replace("https://localhost:8443", front);
        let idp_file = dir.path().join("dev-idp.yaml");
        std::fs::write(&idp_file, idp_yaml).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["dev-idp", "--config"])
            .arg(&idp_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let reachable = eventually(std::time::Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", idp))
                .await
                .is_ok()
        })
        .await;
        assert!(reachable, "dev-idp did not listen on {idp}");
        // Held until the IdP listened (it binds with SO_REUSEADDR), so no
        // other test could take the port in between.
        drop(idp_port);

        let compose_file =
            std::fs::read_to_string(compose.join(stack).join("compose.yaml")).unwrap();
        let client_secret = compose_file
            .lines()
            .find_map(|line| line.trim().strip_prefix("CLIENT_SECRET:"))
            .expect("compose.yaml gives portcullis its CLIENT_SECRET")
            .split('#')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_owned();
        Self {
            compose,
            dir,
            idp,
            _idp: child,
            client_secret,
        }
    }

    /// The stack's portcullis.yaml with the compose network's names and
    /// addresses replaced by loopback ones (`upstreams`: service name and
    /// address), and started.
    async fn portcullis(&self, stack: &str, replace: &[(&str, String)]) -> Running {
        let secrets = self.dir.path().join("secrets");
        let mut yaml = std::fs::read_to_string(self.compose.join(stack).join("portcullis.yaml"))
            .unwrap()
            .replace("/etc/portcullis/secrets", &secrets.display().to_string())
            .replace("0.0.0.0:9901", "127.0.0.1:0")
            .replace("http://idp:9000", &format!("http://127.0.0.1:{}", self.idp))
            .replace(
                "http://localhost:9000",
                &format!("http://localhost:{}", self.idp),
            );
        for (from, to) in replace {
            yaml = yaml.replace(from, to);
        }
        start(load_yaml(&yaml, &[("CLIENT_SECRET", &self.client_secret)])).await
    }
}

/// alice (in `admins`) and bob log in through `front` and reach the app;
/// only alice reaches `/admin/`.
async fn two_users_through(front: &str, browser: impl Fn() -> Browser) {
    for (user, admin_status) in [("alice", 200), ("bob", 403)] {
        let mut browser = browser();
        let page = browser.login(&format!("{front}/app/"), user, user).await;
        assert_eq!(page.status, 200, "{user}: {:#?}\n{}", page.hops, page.body);
        let headers = &page.json()["headers"];
        assert_eq!(
            headers["x-amzn-oidc-identity"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(headers["x-amzn-oidc-data"][0].is_string(), "{headers}");
        let admin = browser
            .request("GET", &format!("{front}/admin/"), &[], None)
            .await;
        assert_eq!(admin.status, admin_status, "{user}: {}", admin.body);
    }
}

/// The docker-compose stack with Caddy in front (deploy/docker-compose/caddy),
/// its files as they are, on loopback: the development IdP from its
/// dev-idp.yaml, portcullis from its portcullis.yaml, Caddy from the shared
/// Caddyfile, secrets from its gen-secrets.sh. Only what the compose network
/// provides is replaced: service names and published ports by loopback
/// addresses, Caddy's fixed address by 127.0.0.1, TLS at Caddy by plain HTTP.
#[tokio::test]
async fn the_compose_caddy_stack_logs_in_on_loopback() {
    let Some(caddy_bin) = front::caddy_binary("the compose stack's Caddy front door") else {
        return;
    };
    let upstream = upstream::start().await;
    let caddy_port = upstream::dead_port();
    let front = format!("http://localhost:{}", caddy_port.addr.port());
    let base = ComposeBase::start("caddy", &front).await;
    let proxy = base
        .portcullis(
            "caddy",
            &[
                ("0.0.0.0:4180", "127.0.0.1:0".to_owned()),
                ("172.30.80.10/32", "127.0.0.1/32".to_owned()),
                ("http://app:80", format!("http://{}", upstream.addr)),
            ],
        )
        .await;
    let env = [
        ("LISTEN", front.clone()),
        ("PORTCULLIS", proxy.addr().to_string()),
        ("APP", upstream.addr.to_string()),
    ];
    let caddyfile = base.compose.join("../forward-auth/Caddyfile");
    let _caddy = front::caddy(&caddy_bin, caddy_port, &caddyfile, &env).await;
    two_users_through(&front, || Browser::new(None)).await;
}

/// The docker-compose stack with portcullis as the front door
/// (deploy/docker-compose), on loopback as above; the self-signed
/// certificate gen-secrets.sh makes is replaced by one of the test CA.
#[tokio::test]
async fn the_compose_front_door_stack_logs_in_on_loopback() {
    let app = upstream::start().await;
    let admin = upstream::start().await;
    let port = upstream::dead_port();
    let front = format!("https://localhost:{}", port.addr.port());
    let base = ComposeBase::start("", &front).await;
    let pki = Pki::new();
    let (files, _) = pki.issue("localhost", &["localhost"]);
    let secrets = base.dir.path().join("secrets");
    std::fs::copy(&files.certificate_file, secrets.join("tls.crt")).unwrap();
    std::fs::copy(&files.private_key_file, secrets.join("tls.key")).unwrap();
    let listen = port.addr.to_string();
    // Held while portcullis binds it (SO_REUSEADDR), as the IdP's above.
    let _proxy = base
        .portcullis(
            "",
            &[
                ("0.0.0.0:8443", listen),
                ("http://app:80", format!("http://{}", app.addr)),
                ("http://admin:80", format!("http://{}", admin.addr)),
            ],
        )
        .await;
    drop(port);
    two_users_through(&front, || Browser::new(Some(pki.ca_der()))).await;
    assert_eq!(
        admin.signals.seen.lock().unwrap().len(),
        1,
        "only alice reached admin"
    );
}
