//! The provider's HTTP side: discovery, JWKS, a login form, the
//! authorization-code grant (PKCE S256 when the client sends it), refresh,
//! userinfo and sign-out, issuing ES256-signed ID tokens. Everything lives in
//! memory and ends with the process. In Cognito mode the same endpoints sit
//! at a user pool's paths and carry Cognito's claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use url::Url;

use super::settings::{Client, Mode, Settings, User};
use crate::body::Body;
use crate::dev_http::{html_escape, html_page, json as json_response, redirect};

const ACCESS_TOKEN_LIFETIME: u64 = 300;

/// Where each endpoint is, below the base URL's path.
struct Routes {
    discovery: String,
    jwks: String,
    authorize: String,
    token: String,
    userinfo: String,
    logout: String,
}

impl Routes {
    fn new(prefix: &str, mode: &Mode) -> Routes {
        let at = |path: &str| format!("{prefix}{path}");
        match mode {
            Mode::Oidc => Routes {
                discovery: at("/.well-known/openid-configuration"),
                jwks: at("/jwks"),
                authorize: at("/authorize"),
                token: at("/token"),
                userinfo: at("/userinfo"),
                logout: at("/logout"),
            },
            // The paths authenticate_cognito derives from endpoint_url.
            Mode::Cognito { user_pool_id } => Routes {
                discovery: at(&format!("/{user_pool_id}/.well-known/openid-configuration")),
                jwks: at(&format!("/{user_pool_id}/.well-known/jwks.json")),
                authorize: at("/oauth2/authorize"),
                token: at("/oauth2/token"),
                userinfo: at("/oauth2/userInfo"),
                logout: at("/logout"),
            },
        }
    }
}

/// Why an authorization request is refused before the login form.
enum Refusal<'a> {
    UnknownClient(&'a str),
    UnregisteredRedirectUri { client: &'a Client, uri: &'a str },
    UnsupportedFlow,
}

/// A code waiting to be exchanged at the token endpoint.
struct Grant {
    client_id: String,
    username: String,
    nonce: Option<String>,
    /// `None` when the client sent no PKCE challenge.
    code_challenge: Option<String>,
    redirect_uri: String,
}

pub struct DevIdp {
    settings: Settings,
    /// Tokens' `iss`, derived once from the settings.
    issuer: String,
    /// The base URL without its trailing `/`, for the endpoints' URLs.
    origin: String,
    routes: Routes,
    key_id: String,
    signing_key: jsonwebtoken::EncodingKey,
    jwks: Value,
    rng: SystemRandom,
    /// Codes issued by the login form, each usable once.
    codes: Mutex<HashMap<String, Grant>>,
    /// access token → (user name, expiry in Unix seconds)
    access_tokens: Mutex<HashMap<String, (String, u64)>>,
    /// refresh token → (client id, user name); valid until the process ends.
    refresh_tokens: Mutex<HashMap<String, (String, String)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error("cannot generate the provider's signing key")]
    Key,
}

impl DevIdp {
    pub fn new(settings: Settings) -> Result<Arc<Self>, DevIdpError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DevIdpError::Key)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| DevIdpError::Key)?;
        // Uncompressed point: 0x04 ‖ x (32) ‖ y (32).
        let point = pair.public_key().as_ref();
        let key_id = random_token(&rng, 8);
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": key_id,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let origin = settings.base_url.as_str().trim_end_matches('/').to_owned();
        let prefix = settings.base_url.path().trim_end_matches('/').to_owned();
        Ok(Arc::new(Self {
            issuer: settings.issuer(),
            routes: Routes::new(&prefix, &settings.mode),
            origin,
            settings,
            key_id,
            signing_key: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks,
            rng,
            codes: Mutex::default(),
            access_tokens: Mutex::default(),
            refresh_tokens: Mutex::default(),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The full URL of a route, as the discovery document names it.
    fn url(&self, route: &str) -> String {
        let path = route.strip_prefix(self.settings.base_url.path().trim_end_matches('/'));
        format!("{}{}", self.origin, path.unwrap_or(route))
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let routes = &self.routes;
        let method = request.method().clone();
        if method == Method::GET && path == routes.discovery {
            json_response(StatusCode::OK, &self.discovery())
        } else if method == Method::GET && path == routes.jwks {
            json_response(StatusCode::OK, &self.jwks)
        } else if method == Method::GET && path == routes.authorize {
            self.authorize(&parse_form(&query))
        } else if method == Method::POST && path == routes.authorize {
            let form = read_form(request).await;
            self.login(&form)
        } else if method == Method::POST && path == routes.token {
            let basic = request.headers().get(header::AUTHORIZATION).cloned();
            let form = read_form(request).await;
            self.token(basic.as_ref(), &form)
        } else if path == routes.userinfo && matches!(method, Method::GET | Method::POST) {
            self.userinfo(request.headers().get(header::AUTHORIZATION))
        } else if method == Method::GET && path == routes.logout {
            self.logout(&parse_form(&query))
        } else {
            html_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!(
                    "<p>This development OpenID provider has no page here. Its discovery document is <a href=\"{0}\">{0}</a>.</p>",
                    html_escape(&self.url(&routes.discovery))
                ),
            )
        }
    }

    fn discovery(&self) -> Value {
        let routes = &self.routes;
        let mut discovery = json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.url(&routes.authorize),
            "token_endpoint": self.url(&routes.token),
            "userinfo_endpoint": self.url(&routes.userinfo),
            "jwks_uri": self.url(&routes.jwks),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
        });
        // Cognito signs out at /logout?client_id=…&logout_uri=…, which
        // authenticate_cognito knows; it has no RP-initiated logout.
        if self.settings.mode == Mode::Oidc {
            discovery["end_session_endpoint"] = json!(self.url(&routes.logout));
        }
        discovery
    }

    fn client(&self, id: &str) -> Option<&Client> {
        self.settings.clients.iter().find(|client| client.id == id)
    }

    /// The authorization request's checks, before the login form is shown
    /// and again when it comes back: the parameters travel in the form.
    fn check_request<'a>(&'a self, params: &'a HashMap<String, String>) -> Result<(), Refusal<'a>> {
        let field = |name: &str| params.get(name).map_or("", String::as_str);
        let Some(client) = self.client(field("client_id")) else {
            return Err(Refusal::UnknownClient(field("client_id")));
        };
        if !registered(field("redirect_uri"), &client.redirect_uris) {
            return Err(Refusal::UnregisteredRedirectUri {
                client,
                uri: field("redirect_uri"),
            });
        }
        let pkce_ok = match params.get("code_challenge") {
            Some(challenge) => !challenge.is_empty() && field("code_challenge_method") == "S256",
            None => true,
        };
        if field("response_type") != "code" || !pkce_ok {
            return Err(Refusal::UnsupportedFlow);
        }
        Ok(())
    }

    /// The page that says why an authorization request was refused: the
    /// developer reading it can fix the client or the provider's settings.
    fn refusal_page(&self, refusal: Refusal<'_>) -> Response<Body> {
        let codes = |items: &mut dyn Iterator<Item = &str>| {
            items
                .map(|item| format!("<code>{}</code>", html_escape(item)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (title, text) = match refusal {
            Refusal::UnknownClient(id) => (
                "Unknown client",
                format!(
                    "No client <code>{}</code> is registered here. Clients: {}.",
                    html_escape(id),
                    codes(&mut self.settings.clients.iter().map(|client| client.id.as_str()))
                ),
            ),
            Refusal::UnregisteredRedirectUri { client, uri } => (
                "Unregistered redirect_uri",
                format!(
                    "<code>{}</code> is not a redirect URI of client <code>{}</code>. It has: {}. (Port 0 in a registered URI stands for any port.)",
                    html_escape(uri),
                    html_escape(&client.id),
                    codes(&mut client.redirect_uris.iter().map(Url::as_str))
                ),
            ),
            Refusal::UnsupportedFlow => (
                "Bad request",
                "Only the authorization-code flow is supported, with PKCE S256 when a challenge is sent."
                    .to_owned(),
            ),
        };
        html_page(StatusCode::BAD_REQUEST, title, &format!("<p>{text}</p>"))
    }

    fn authorize(&self, params: &HashMap<String, String>) -> Response<Body> {
        match self.check_request(params) {
            Ok(()) => self.login_page(params, None),
            Err(refusal) => self.refusal_page(refusal),
        }
    }

    fn login_page(&self, params: &HashMap<String, String>, error: Option<&str>) -> Response<Body> {
        let hidden: String = crate::auth::oidc::AUTHORIZATION_PARAMS
            .iter()
            .filter_map(|name| params.get(*name).map(|value| (name, value)))
            .map(|(name, value)| {
                format!(
                    r#"<input type="hidden" name="{name}" value="{}">"#,
                    html_escape(value)
                )
            })
            .collect();
        let error = error
            .map(|text| format!(r#"<p class="error">{}</p>"#, html_escape(text)))
            .unwrap_or_default();
        let (suggested, hint) = match &self.settings.login_hint {
            Some(hint) => (
                self.settings
                    .users
                    .first()
                    .map(|user| html_escape(&user.username))
                    .unwrap_or_default(),
                format!("<p>Test login: {}.</p>", html_escape(hint)),
            ),
            None => (String::new(), String::new()),
        };
        let body = format!(
            r#"{error}
<form method="post" action="{action}">
{hidden}
<label>User <input name="login" value="{suggested}" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
{hint}"#,
            action = html_escape(&self.routes.authorize),
        );
        html_page(
            StatusCode::OK,
            "Sign in (development OpenID provider)",
            &body,
        )
    }

    fn login(&self, form: &HashMap<String, String>) -> Response<Body> {
        if let Err(refusal) = self.check_request(form) {
            return self.refusal_page(refusal);
        }
        let field = |name: &str| form.get(name).map_or("", String::as_str);
        let user = self.settings.users.iter().find(|user| {
            user.username == field("login").trim() && user.password.expose() == field("password")
        });
        let Some(user) = user else {
            return self.login_page(form, Some("Wrong user or password."));
        };
        let code = random_token(&self.rng, 24);
        let grant = Grant {
            client_id: field("client_id").to_owned(),
            username: user.username.clone(),
            nonce: form.get("nonce").cloned(),
            code_challenge: form.get("code_challenge").cloned(),
            redirect_uri: field("redirect_uri").to_owned(),
        };
        lock(&self.codes).insert(code.clone(), grant);
        // check_request accepted it, so it parses.
        let Ok(mut location) = Url::parse(field("redirect_uri")) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        location.query_pairs_mut().append_pair("code", &code);
        if let Some(state) = form.get("state") {
            location.query_pairs_mut().append_pair("state", state);
        }
        redirect(location.as_str())
    }

    fn token(&self, basic: Option<&HeaderValue>, form: &HashMap<String, String>) -> Response<Body> {
        let field = |name: &str| form.get(name).map_or("", String::as_str);
        let (client_id, client_secret) = match basic.and_then(basic_credentials) {
            Some(credentials) => credentials,
            None => (
                field("client_id").to_owned(),
                field("client_secret").to_owned(),
            ),
        };
        let authenticated = self
            .client(&client_id)
            .is_some_and(|client| client.secret.expose() == client_secret);
        if !authenticated {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        match field("grant_type") {
            "authorization_code" => {
                let Some(grant) = lock(&self.codes).remove(field("code")) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                let verifier_ok = match &grant.code_challenge {
                    Some(challenge) => {
                        *challenge
                            == URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
                                &aws_lc_rs::digest::SHA256,
                                field("code_verifier").as_bytes(),
                            ))
                    }
                    None => true,
                };
                if grant.client_id != client_id
                    || grant.redirect_uri != field("redirect_uri")
                    || !verifier_ok
                {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                self.issue_tokens(&client_id, &grant.username, grant.nonce.as_deref(), true)
            }
            "refresh_token" => {
                let owner = lock(&self.refresh_tokens)
                    .get(field("refresh_token"))
                    .cloned();
                match owner {
                    Some((owner, username)) if owner == client_id => {
                        self.issue_tokens(&client_id, &username, None, false)
                    }
                    _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                }
            }
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    }

    fn user(&self, username: &str) -> Option<&User> {
        self.settings
            .users
            .iter()
            .find(|user| user.username == username)
    }

    fn issue_tokens(
        &self,
        client_id: &str,
        username: &str,
        nonce: Option<&str>,
        with_refresh: bool,
    ) -> Response<Body> {
        let Some(user) = self.user(username) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        };
        let now = unix_now();
        let access_token = random_token(&self.rng, 32);
        lock(&self.access_tokens).insert(
            access_token.clone(),
            (username.to_owned(), now + ACCESS_TOKEN_LIFETIME),
        );
        let mut claims = self.user_claims(user);
        claims.insert("iss".to_owned(), json!(self.issuer));
        claims.insert("aud".to_owned(), json!(client_id));
        claims.insert("iat".to_owned(), json!(now));
        claims.insert("auth_time".to_owned(), json!(now));
        claims.insert("exp".to_owned(), json!(now + ACCESS_TOKEN_LIFETIME));
        if matches!(self.settings.mode, Mode::Cognito { .. }) {
            claims.insert("token_use".to_owned(), json!("id"));
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".to_owned(), json!(nonce));
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let id_token = match jsonwebtoken::encode(&header, &claims, &self.signing_key) {
            Ok(token) => token,
            Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let mut answer = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "id_token": id_token,
        });
        if with_refresh {
            let refresh_token = random_token(&self.rng, 32);
            lock(&self.refresh_tokens).insert(
                refresh_token.clone(),
                (client_id.to_owned(), username.to_owned()),
            );
            answer["refresh_token"] = json!(refresh_token);
        }
        json_response(StatusCode::OK, &answer)
    }

    /// The user's claims as the ID token and userinfo carry them. In Cognito
    /// mode: `sub` a UUID, `groups` renamed `cognito:groups`,
    /// `cognito:username` (userinfo's `username` too) added, and booleans
    /// written as strings, as Cognito writes its attributes.
    fn user_claims(&self, user: &User) -> Map<String, Value> {
        let mut claims = user.claims.clone();
        if let Mode::Cognito { user_pool_id } = &self.settings.mode {
            for value in claims.values_mut() {
                if let Value::Bool(flag) = value {
                    *value = json!(flag.to_string());
                }
            }
            if let Some(groups) = claims.remove("groups") {
                claims.insert("cognito:groups".to_owned(), groups);
            }
            claims.insert("cognito:username".to_owned(), json!(user.username));
            if claims.get("sub") == Some(&json!(user.username)) {
                claims.insert(
                    "sub".to_owned(),
                    json!(uuid_for(user_pool_id, &user.username)),
                );
            }
        }
        claims
    }

    fn userinfo(&self, authorization: Option<&HeaderValue>) -> Response<Body> {
        let token = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let entry = token.and_then(|token| lock(&self.access_tokens).get(token).cloned());
        let user = match entry {
            Some((username, expires_at)) if expires_at > unix_now() => self.user(&username),
            _ => None,
        };
        match user {
            Some(user) => {
                let mut claims = self.user_claims(user);
                if matches!(self.settings.mode, Mode::Cognito { .. }) {
                    claims.insert("username".to_owned(), json!(user.username));
                }
                json_response(StatusCode::OK, &Value::Object(claims))
            }
            None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
        }
    }

    /// OpenID's `post_logout_redirect_uri` or Cognito's `logout_uri`: back to
    /// the client when the URL is on one of its redirect URIs' origins,
    /// otherwise a page that says the user is signed out.
    fn logout(&self, params: &HashMap<String, String>) -> Response<Body> {
        let requested = params
            .get("post_logout_redirect_uri")
            .or_else(|| params.get("logout_uri"));
        let clients: Vec<&Client> = match params.get("client_id") {
            Some(id) => self.client(id).into_iter().collect(),
            None => self.settings.clients.iter().collect(),
        };
        let target = requested.and_then(|uri| {
            clients.iter().find_map(|client| {
                client
                    .redirect_uris
                    .iter()
                    .find_map(|registered| post_logout_target(uri, registered))
            })
        });
        match target {
            Some(url) => redirect(url.as_str()),
            None => html_page(
                StatusCode::OK,
                "Signed out",
                "<p>You are signed out of the development OpenID provider.</p>",
            ),
        }
    }
}

/// True when `uri` is one of `registered`, where a registered port 0
/// matches any port.
fn registered(uri: &str, registered: &[Url]) -> bool {
    let Ok(uri) = Url::parse(uri) else {
        return false;
    };
    registered.iter().any(|allowed| {
        if allowed.port() == Some(0) {
            let mut any_port = uri.clone();
            any_port.set_port(Some(0)).is_ok() && any_port == *allowed
        } else {
            uri == *allowed
        }
    })
}

/// Where to send the browser after sign-out: `uri` when it goes back to the
/// origin (scheme, host and port; port 0 is any) of the client's registered
/// redirect URI with no user info, else `None`, so the provider is no open
/// redirect. The URL is parsed, not compared as text:
/// `https://localhost:@evil.example/` starts like the client's origin but
/// goes to `evil.example`. Backslashes, spaces and control characters are
/// refused outright, since parsers disagree about them.
fn post_logout_target(uri: &str, registered: &Url) -> Option<Url> {
    if uri
        .chars()
        .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let url = Url::parse(uri).ok()?;
    let same_port = registered.port() == Some(0)
        || url.port_or_known_default() == registered.port_or_known_default();
    let same_origin = url.scheme() == registered.scheme()
        && url.host().is_some()
        && url.host() == registered.host()
        && same_port;
    (same_origin && url.username().is_empty() && url.password().is_none()).then_some(url)
}

/// A stable UUID-shaped `sub` for a Cognito user, as Cognito's are.
fn uuid_for(user_pool_id: &str, username: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{user_pool_id}\0{username}").as_bytes(),
    );
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn oauth_error(status: StatusCode, error: &str) -> Response<Body> {
    json_response(status, &json!({ "error": error }))
}

fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |part: &str| {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

async fn read_form(request: Request<Incoming>) -> HashMap<String, String> {
    // Login and token forms are small; a bigger body is cut off.
    let body = http_body_util::Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await;
    body.map(|collected| parse_form(&String::from_utf8_lossy(&collected.to_bytes())))
        .unwrap_or_default()
}

fn parse_form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn random_token(rng: &SystemRandom, bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The system RNG failing is not something a development tool can recover from.
    rng.fill(&mut buffer)
        .expect("the system random number generator works");
    URL_SAFE_NO_PAD.encode(buffer)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn sign_out_returns_only_to_the_clients_origin() {
        let redirect_uri = url("https://localhost:8443/oauth2/idpresponse");
        for bad in [
            "https://localhost:@evil.example/",
            "https://localhost:8443@evil.example/",
            "https://localhost@evil.example",
            "https://localhost:8443:pw@evil.example/",
            "https://user@localhost:8443/",
            "https://evil.example#@localhost:8443/",
            "https://evil.example?@localhost:8443/",
            "https://evil.example/https://localhost:8443/",
            "//evil.example",
            "//localhost:8443/",
            "/signed-out",
            "https://localhost.evil.example:8443/",
            "https://localhost:8443.evil.example/",
            "https://evil.example\\@localhost:8443/",
            "https://localhost:8443\\@evil.example/",
            "https:\\\\evil.example/",
            "https://localhost:8443\\evil.example",
            "https://local host:8443/",
            "https://localhost:8443/\nLocation: https://evil.example/",
            " https://localhost:8443/",
            "http://localhost:8443/",
            "https://localhost:9443/",
            "https://localhost/",
            "https://127.0.0.1:8443/",
            "javascript:alert(1)//localhost:8443/",
            "data:text/html,<script>alert(1)</script>",
            "",
        ] {
            assert_eq!(post_logout_target(bad, &redirect_uri), None, "{bad:?}");
        }
        for good in [
            "https://localhost:8443/",
            "https://localhost:8443/signed-out?x=1",
            "https://LOCALHOST:8443/",
        ] {
            assert!(
                post_logout_target(good, &redirect_uri).is_some(),
                "{good} is the client's own origin"
            );
        }
        let any_port = url("https://localhost:0/oauth2/idpresponse");
        assert!(post_logout_target("https://localhost:9443/", &any_port).is_some());
        assert!(post_logout_target("https://evil.example:9443/", &any_port).is_none());
    }

    #[test]
    fn port_zero_registers_any_port_and_nothing_else() {
        let uris = [
            url("https://localhost:0/oauth2/idpresponse"),
            url("http://127.0.0.1:8080/cb"),
        ];
        for good in [
            "https://localhost:8443/oauth2/idpresponse",
            "https://localhost/oauth2/idpresponse",
            "http://127.0.0.1:8080/cb",
        ] {
            assert!(registered(good, &uris), "{good}");
        }
        for bad in [
            "https://localhost:8443/oauth2/idpresponse?x=1",
            "https://localhost:8443/other",
            "http://localhost:8443/oauth2/idpresponse",
            "https://evil.example:8443/oauth2/idpresponse",
            "http://127.0.0.1:8081/cb",
            "not a url",
        ] {
            assert!(!registered(bad, &uris), "{bad}");
        }
    }

    #[test]
    fn cognito_subjects_are_stable_uuids() {
        let sub = uuid_for("eu-west-1_AbC123", "alice");
        assert_eq!(sub, uuid_for("eu-west-1_AbC123", "alice"));
        assert_ne!(sub, uuid_for("eu-west-1_AbC123", "bob"));
        assert_eq!(sub.len(), 36);
        assert_eq!(sub.matches('-').count(), 4);
    }
}
