//! End-to-end `authenticate_cognito`: node-oidc-provider dressed as a Cognito
//! user pool (tests/oidc, `cognitoPool`) reached through `endpoint_url`, the
//! way LocalStack-style emulators are: issuer `{endpoint_url}/{pool id}`,
//! hosted UI at `{endpoint_url}/oauth2/...` and `/logout`. The rule holds
//! only what an ALB Cognito rule holds (ARN, client id, domain) plus the
//! client secret; the proxy derives everything else.

mod common;

use std::collections::HashMap;

use base64::Engine as _;
use common::alb::{self, b64};
use common::browser::Browser;
use common::idp::NodeIdp;
use common::*;
use serde_json::{Value, json};

const POOL: &str = "eu-west-1_AbC123";
const ARN: &str = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123";
const CLIENT_ID: &str = "3a33a02r5hn3onhtu1mr0dit20";
const CLIENT_SECRET: &str = "cognito-client-secret";
const SIGNER: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";
/// An authorization response the tests that talk to the pool directly
/// capture before it goes anywhere (`Browser::stop_before`).
const DIRECT_REDIRECT_URI: &str = "https://rp.invalid/callback";

/// The user pool, as the provider prints it on start.
struct Pool {
    idp: NodeIdp,
    /// `http://127.0.0.1:PORT`: the emulator's origin, the `endpoint_url`.
    endpoint_url: String,
}

impl Pool {
    async fn start() -> Pool {
        let idp = NodeIdp::start(json!({
            "cognitoPool": POOL,
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [
                    "https://localhost:0/oauth2/idpresponse",
                    DIRECT_REDIRECT_URI,
                ],
                "logout_urls": ["https://localhost:0/bye"],
            }],
        }))
        .await;
        let endpoint_url = idp
            .issuer
            .strip_suffix(&format!("/{POOL}"))
            .unwrap_or_else(|| panic!("the pool's issuer {} ends in /{POOL}", idp.issuer))
            .to_owned();
        Pool { idp, endpoint_url }
    }

    /// The pool's issuer, `{endpoint_url}/{pool id}`, as in its tokens.
    fn issuer(&self) -> &str {
        &self.idp.issuer
    }

    /// A hosted-UI URL: `{endpoint_url}{path}`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint_url)
    }

    /// `GET /__test/stats` (NodeIdp::stats assumes an issuer without a path).
    async fn stats(&self, browser: &mut Browser) -> Value {
        let page = browser
            .request("GET", &self.url("/__test/stats"), &[], None)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.json()
    }
}

/// The pool and, in front of a real upstream, the proxy of one test.
struct Stack {
    pool: Pool,
    tls: TlsStack,
}

impl std::ops::Deref for Stack {
    type Target = TlsStack;

    fn deref(&self) -> &TlsStack {
        &self.tls
    }
}

impl Stack {
    /// A pool and a proxy with two rules: `/bye` answered by the proxy
    /// itself, everything else authenticated by `authenticate_cognito` and
    /// forwarded to an echoing upstream.
    async fn start() -> Stack {
        let pool = Pool::start().await;
        let vars = [("COGNITO_SECRET", CLIENT_SECRET)];
        let tls = TlsStack::start(SIGNER, &vars, |upstream| {
            format!(
                r#"      - name: signed-out
        conditions: {{ path: ["/bye"] }}
        actions:
          - fixed_response: {{ status: 200, content_type: text/plain, body: "bye" }}
      - name: app
        actions:
          - authenticate_cognito:
              user_pool_arn: {ARN}
              user_pool_client_id: {CLIENT_ID}
              user_pool_client_secret: "${{COGNITO_SECRET}}"
              user_pool_domain: my-app-auth
              endpoint_url: {endpoint_url}
              sign_out_redirect: /bye
          - forward: {{ target: "http://{upstream}" }}"#,
                endpoint_url = pool.endpoint_url,
            )
        })
        .await;
        Stack { pool, tls }
    }
}

/// The header and payload of a JWT, unverified.
fn jwt_parts(token: &str) -> (Value, Value) {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "{token}");
    (
        serde_json::from_slice(&b64(segments[0])).unwrap(),
        serde_json::from_slice(&b64(segments[1])).unwrap(),
    )
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap_or_else(|error| panic!("{url}: {error}"))
        .query_pairs()
        .into_owned()
        .collect()
}

/// What the proxy relies on, and what it deliberately does not: the pool
/// answers at Cognito's paths, with its issuer exactly as its ID tokens
/// carry it, and its tokens carry Cognito's claims and string booleans.
#[tokio::test]
async fn the_provider_looks_like_a_cognito_user_pool() {
    let pool = Pool::start().await;
    let mut browser = Browser::new(None);

    let discovery = browser
        .request(
            "GET",
            &format!("{}/.well-known/openid-configuration", pool.issuer()),
            &[],
            None,
        )
        .await;
    assert_eq!(discovery.status, 200, "{}", discovery.body);
    let discovery = discovery.json();
    assert_eq!(discovery["issuer"], pool.issuer());
    assert_eq!(
        pool.issuer(),
        format!("{}/{POOL}", pool.endpoint_url),
        "issuer = {{endpoint_url}}/{{pool id}}"
    );
    assert_eq!(
        discovery["authorization_endpoint"],
        pool.url("/oauth2/authorize")
    );
    assert_eq!(discovery["token_endpoint"], pool.url("/oauth2/token"));
    assert_eq!(discovery["userinfo_endpoint"], pool.url("/oauth2/userInfo"));
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", pool.issuer())
    );
    assert!(
        discovery.get("end_session_endpoint").is_none(),
        "Cognito signs out at /logout, not RP-initiated logout: {discovery:#}"
    );
    let root = browser
        .request(
            "GET",
            &pool.url("/.well-known/openid-configuration"),
            &[],
            None,
        )
        .await;
    assert_eq!(root.status, 404, "no discovery at the hosted UI's root");

    // A code flow by hand, to see the ID token the proxy gets.
    let verifier = "a-code-verifier-long-enough-for-rfc-7636-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()),
    );
    let mut authorize = url::Url::parse(&pool.url("/oauth2/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", DIRECT_REDIRECT_URI)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    browser.stop_before(Some(DIRECT_REDIRECT_URI));
    let page = browser.login(authorize.as_str(), "alice", "x").await;
    let callback = page.location().expect("a redirect to the client");
    let code = query_of(&callback)["code"].clone();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", DIRECT_REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .finish();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let tokens = browser
        .request(
            "POST",
            &pool.url("/oauth2/token"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &format!("Basic {basic}")),
            ],
            Some(form.into_bytes()),
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    assert!(
        tokens["refresh_token"].is_string(),
        "Cognito issues a refresh token with every code grant: {tokens:#}"
    );
    let (_, id_token) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["iss"], pool.issuer());
    assert_eq!(id_token["aud"], CLIENT_ID);
    assert_eq!(id_token["token_use"], "id");
    assert_eq!(id_token["nonce"], "n");
    assert_eq!(id_token["cognito:username"], "alice");
    assert_eq!(id_token["cognito:groups"], json!(["admins", "users"]));
    assert_eq!(
        id_token["email_verified"], "true",
        "a string, as Cognito writes it"
    );
    assert_eq!(id_token["email"], "alice@example.test", "openid alone");

    let userinfo = browser
        .request(
            "GET",
            &pool.url("/oauth2/userInfo"),
            &[(
                "authorization",
                &format!("Bearer {}", tokens["access_token"].as_str().unwrap()),
            )],
            None,
        )
        .await;
    assert_eq!(userinfo.status, 200, "{}", userinfo.body);
    let userinfo = userinfo.json();
    assert_eq!(userinfo["sub"], "alice");
    assert_eq!(userinfo["email_verified"], "true");
    assert_eq!(userinfo["cognito:username"], "alice");
    assert!(userinfo.get("token_use").is_none(), "{userinfo:#}");
}

#[tokio::test]
async fn the_redirect_goes_to_the_hosted_ui_with_every_parameter() {
    let stack = Stack::start().await;
    let mut browser = stack.browser();
    let page = browser.get(&stack.url("/app/page?x=1")).await;
    assert_eq!(page.status, 302);
    let location = page.location().unwrap();
    assert!(
        location.starts_with(&stack.pool.url("/oauth2/authorize?")),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["redirect_uri"], stack.url("/oauth2/idpresponse"));
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "openid", "authenticate_cognito's default");
    assert_eq!(query["state"].len(), 43, "256 bits of state");
    assert_eq!(query["nonce"].len(), 43, "256 bits of nonce");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(
        page.set_cookies
            .iter()
            .any(|cookie| cookie.starts_with("AWSALBAuthNonce=")),
        "{:?}",
        page.set_cookies
    );
}

#[tokio::test]
async fn full_login_passes_cognito_claims_to_the_upstream_untouched() {
    let stack = Stack::start().await;
    let mut browser = stack.browser();
    let page = stack.login(&mut browser, "/app/page?x=1&y=two").await;
    assert!(
        page.hops
            .iter()
            .any(|(url, _)| url.starts_with(&stack.pool.url("/oauth2/authorize?"))),
        "the login went through the hosted UI: {:#?}",
        page.hops
    );
    let echo = page.json();
    assert_eq!(echo["uri"], "/app/page?x=1&y=two", "the original URL");

    // The three headers.
    let headers = &echo["headers"];
    assert_eq!(headers["x-amzn-oidc-identity"][0], "alice");
    let access_token = headers["x-amzn-oidc-accesstoken"][0].as_str().unwrap();
    let data = headers["x-amzn-oidc-data"][0].as_str().unwrap();

    // The access token is one the pool accepts.
    let userinfo = browser
        .request(
            "GET",
            &stack.pool.url("/oauth2/userInfo"),
            &[("authorization", &format!("Bearer {access_token}"))],
            None,
        )
        .await;
    assert_eq!(userinfo.status, 200, "{}", userinfo.body);

    // x-amzn-oidc-data: the pool's issuer, the client, Cognito's claims as
    // the pool wrote them.
    let (header, payload) = jwt_parts(data);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["iss"], stack.pool.issuer());
    assert_eq!(header["client"], CLIENT_ID);
    assert_eq!(header["signer"], SIGNER);
    assert_eq!(payload["iss"], stack.pool.issuer());
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["cognito:username"], "alice");
    assert_eq!(payload["cognito:groups"], json!(["admins", "users"]));
    assert_eq!(
        payload["email_verified"], "true",
        "Cognito's string boolean, untouched"
    );
    assert_eq!(payload["email"], "alice@example.test");
    assert!(payload["exp"].as_u64().unwrap() > 0);

    // AWS's own library accepts it with the pool as issuer.
    let jwks_uri = stack.url("/oauth2/public-keys");
    let ca_pem = stack.pki.ca_pem_path();
    let verifier = alb::Verifier {
        signer: SIGNER,
        issuer: stack.pool.issuer(),
        client_id: CLIENT_ID,
        jwks_uri: &jwks_uri,
        ca_pem: &ca_pem,
    };
    let verified = alb::verify(&verifier, data).await;
    assert_eq!(verified["cognito:groups"], json!(["admins", "users"]));

    // The session holds: no second trip to the pool.
    let again = browser.follow(&stack.url("/app/again")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
    let stats = stack.pool.stats(&mut browser).await;
    assert_eq!(stats["grants"]["authorization_code"], 1, "{stats:#}");
}

#[tokio::test]
async fn sign_out_clears_every_shard_and_goes_through_cognitos_logout() {
    let stack = Stack::start().await;
    let mut browser = stack.browser();
    stack.login(&mut browser, "/app/").await;

    let page = browser.get(&stack.url("/oauth2/sign_out")).await;
    assert_eq!(page.status, 302);
    let bye = stack.url("/bye");
    let expected = format!(
        "{}/logout?client_id={CLIENT_ID}&logout_uri={}",
        stack.pool.endpoint_url,
        url::form_urlencoded::byte_serialize(bye.as_bytes()).collect::<String>()
    );
    assert!(
        expected.contains("logout_uri=https%3A%2F%2Flocalhost%3A"),
        "{expected}"
    );
    assert_eq!(page.location().unwrap(), expected);
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
                    && cookie.contains("Max-Age=0")
                    && cookie.contains("Path=/")),
            "{name} not cleared: {:?}",
            page.set_cookies
        );
    }

    // The pool takes the request and sends the browser to sign_out_redirect.
    let back = browser.follow(&expected).await;
    assert_eq!(back.url, bye, "{:#?}", back.hops);
    assert_eq!(back.status, 200);
    assert_eq!(back.body, "bye");
    let stats = stack.pool.stats(&mut browser).await;
    assert_eq!(
        stats["last_logout"],
        json!({ "client_id": CLIENT_ID, "logout_uri": bye }),
        "{stats:#}"
    );

    // Signed out at both ends: the proxy asks for a login again, and so
    // does the pool.
    let again = browser.follow(&stack.url("/app/")).await;
    assert!(
        again.form().is_some_and(|form| form.has_input("password")),
        "the pool's login page: {:#?}\n{}",
        again.hops,
        again.body
    );
}
