//! Split-horizon IdPs end to end: node-oidc-provider's issuer is
//! `http://localhost:PORT`, the name browsers reach it by, while portcullis
//! calls its token, userinfo and JWKS endpoints at `http://127.0.0.1:PORT`
//! with `discovery: false`, as it calls `http://keycloak:8080` inside a
//! docker-compose network while browsers use `http://localhost:8080`.

mod common;

use common::alb::b64;
use common::idp::NodeIdp;
use common::*;
use serde_json::{Value, json};

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
const SIGNER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";

/// The IdP and its endpoints as each side reaches them.
struct SplitIdp {
    idp: NodeIdp,
    /// The authorization endpoint on the browsers' name (the issuer's).
    authorization: String,
    /// `http://127.0.0.1:PORT`: the proxy's name for the same server.
    proxy_origin: String,
    /// The paths of the endpoints the proxy calls, from the discovery document.
    token_path: String,
    userinfo_path: String,
    jwks_path: String,
}

/// Starts the IdP with its issuer on `localhost`, `extra` merged into its
/// config, and reads where its endpoints are from its discovery document
/// (the only time anyone fetches it).
async fn split_idp(extra: Value) -> SplitIdp {
    let mut config = json!({
        "issuerHost": "localhost",
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": ["https://localhost:0/oauth2/idpresponse"],
        }],
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    let idp = NodeIdp::start(config).await;
    let issuer = url::Url::parse(&idp.issuer).unwrap();
    assert_eq!(issuer.host_str(), Some("localhost"), "{}", idp.issuer);
    let port = issuer.port().expect("the issuer has a port");

    let discovery = idp.discovery().await;
    let endpoint = |key: &str| {
        url::Url::parse(
            discovery[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key}")),
        )
        .unwrap_or_else(|error| panic!("{key}: {error}"))
    };
    let authorization = endpoint("authorization_endpoint");
    assert_eq!(authorization.host_str(), Some("localhost"));
    SplitIdp {
        authorization: authorization.to_string(),
        proxy_origin: format!("http://127.0.0.1:{port}"),
        token_path: endpoint("token_endpoint").path().to_owned(),
        userinfo_path: endpoint("userinfo_endpoint").path().to_owned(),
        jwks_path: endpoint("jwks_uri").path().to_owned(),
        idp,
    }
}

impl SplitIdp {
    /// Starts portcullis with one rule, `app`, whose `authenticate_oidc`
    /// has discovery off, the authorization endpoint on `localhost` and
    /// the others on `127.0.0.1`, plus `action_extra` (YAML lines at the
    /// action's indentation).
    async fn proxy(&self, action_extra: &str) -> TlsStack {
        let vars = [("CLIENT_SECRET", CLIENT_SECRET)];
        TlsStack::start(SIGNER, &vars, |upstream| {
            format!(
                r#"      - name: app
        actions:
          - authenticate_oidc:
              issuer: {issuer}
              discovery: false
              authorization_endpoint: {authorization}
              token_endpoint: {origin}{token}
              user_info_endpoint: {origin}{userinfo}
              jwks_uri: {origin}{jwks}
              client_id: {CLIENT_ID}
              client_secret: "${{CLIENT_SECRET}}"
              scope: openid email profile
{action_extra}
          - forward: {{ target: "http://{upstream}" }}"#,
                issuer = self.idp.issuer,
                authorization = self.authorization,
                origin = self.proxy_origin,
                token = self.token_path,
                userinfo = self.userinfo_path,
                jwks = self.jwks_path,
            )
        })
        .await
    }

    async fn stat(&self, key: &str) -> u64 {
        self.idp.stats().await[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in the IdP's stats"))
    }
}

#[tokio::test]
async fn a_login_with_split_endpoints_never_fetches_discovery() {
    let idp = split_idp(json!({})).await;
    let discoveries = idp.stat("discoveries").await;
    assert_eq!(discoveries, 1, "the test's own look at the endpoints");
    let stack = idp.proxy("").await;

    let mut browser = stack.browser();
    let page = stack.login(&mut browser, "/app/page?x=1").await;
    let echo = page.json();
    assert_eq!(echo["uri"], "/app/page?x=1");
    let headers = &echo["headers"];
    assert_eq!(headers["x-amzn-oidc-identity"][0], "alice");
    assert!(headers["x-amzn-oidc-accesstoken"][0].is_string(), "{echo}");

    // The data token names the issuer the tokens carry: the browsers' name.
    let data = headers["x-amzn-oidc-data"][0].as_str().unwrap();
    let header: Value = serde_json::from_slice(&b64(data.split('.').next().unwrap())).unwrap();
    assert_eq!(header["iss"], idp.idp.issuer.as_str());

    // The browser only ever saw the IdP under its own name.
    let at_idp: Vec<&String> = page
        .hops
        .iter()
        .map(|(url, _)| url)
        .filter(|url| url.starts_with("http://"))
        .collect();
    assert!(
        at_idp.iter().any(|url| url.starts_with(&idp.authorization)),
        "{:#?}",
        page.hops
    );
    assert!(
        at_idp
            .iter()
            .all(|url| url.starts_with(&format!("{}/", idp.idp.issuer))),
        "{:#?}",
        page.hops
    );

    // The proxy redeemed the code and read userinfo, and asked for no
    // discovery document, under either name.
    assert_eq!(
        idp.idp.stats().await["grants"]["authorization_code"],
        1,
        "{}",
        idp.idp.log()
    );
    assert!(idp.stat("userinfo").await >= 1);
    assert_eq!(
        idp.stat("discoveries").await,
        discoveries,
        "{}",
        idp.idp.log()
    );
}

#[tokio::test]
async fn the_authorization_redirect_goes_to_the_browsers_name() {
    let idp = split_idp(json!({})).await;
    let stack = idp.proxy("").await;

    let page = stack.browser().get(&stack.url("/app/page")).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let location = url::Url::parse(&page.location().expect("a Location")).unwrap();
    let authorization = url::Url::parse(&idp.authorization).unwrap();
    assert_eq!(location.host_str(), Some("localhost"), "{location}");
    assert_eq!(location.port(), authorization.port());
    assert_eq!(location.path(), authorization.path());
    let query = |name: &str| {
        location
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    assert_eq!(query("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query("redirect_uri"),
        Some(format!("{}/oauth2/idpresponse", stack.base()))
    );
    assert_eq!(idp.stat("discoveries").await, 1, "only the test's own");
}

#[tokio::test]
async fn without_discovery_the_token_endpoint_auth_method_is_configured() {
    // An IdP that accepts only client_secret_post at its token endpoint.
    // With discovery on, its discovery document would say so; with it off,
    // the proxy uses client_secret_basic unless told otherwise.
    let idp = split_idp(json!({ "tokenEndpointAuthMethods": ["client_secret_post"] })).await;

    let basic = idp.proxy("").await;
    let mut browser = basic.browser();
    let page = browser
        .login(&basic.url("/app/"), "alice", "any password")
        .await;
    assert_eq!(page.status, 561, "{:#?}\n{}", page.hops, page.body);
    assert_eq!(idp.stat("grant_errors").await, 1, "{}", idp.idp.log());

    let post = idp
        .proxy("              token_endpoint_auth_method: client_secret_post")
        .await;
    let mut browser = post.browser();
    let page = post.login(&mut browser, "/app/").await;
    assert_eq!(page.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
    assert_eq!(idp.stat("discoveries").await, 1, "only the test's own");
}
