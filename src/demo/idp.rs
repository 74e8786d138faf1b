//! A development OpenID provider for `portcullis demo`: discovery, JWKS, a
//! login page, the authorization-code grant with PKCE, refresh, userinfo and
//! end-session, issuing real ES256-signed ID tokens. FOR DEVELOPMENT ONLY:
//! it keeps everything in memory and accepts one password for every user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{html_escape, html_page, respond};
use crate::body::Body;

/// The one password the demo accepts, for any user name.
pub const DEMO_PASSWORD: &str = "demo";
/// The user name suggested on the login page.
pub const DEMO_USER: &str = "alice";

const ACCESS_TOKEN_LIFETIME: u64 = 300;
const BANNER: &str = "Development OpenID provider built into portcullis demo. For development only: never use it in production.";

/// What the provider knows about its one client.
pub struct Client {
    pub id: String,
    pub secret: String,
    pub redirect_uri: String,
}

struct Grant {
    user: String,
    nonce: Option<String>,
    code_challenge: String,
    redirect_uri: String,
}

pub struct DevIdp {
    pub issuer: String,
    client: Client,
    key_id: String,
    signing_key: jsonwebtoken::EncodingKey,
    jwks: Value,
    codes: Mutex<HashMap<String, Grant>>,
    /// access token → user
    access_tokens: Mutex<HashMap<String, (String, u64)>>,
    /// refresh token → user
    refresh_tokens: Mutex<HashMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error("cannot generate the provider's signing key")]
    Key,
}

impl DevIdp {
    pub fn new(issuer: String, client: Client) -> Result<Arc<Self>, DevIdpError> {
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
        Ok(Arc::new(Self {
            issuer,
            client,
            key_id,
            signing_key: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks,
            codes: Mutex::default(),
            access_tokens: Mutex::default(),
            refresh_tokens: Mutex::default(),
        }))
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "/.well-known/openid-configuration") => {
                respond::json(StatusCode::OK, &self.discovery())
            }
            (Method::GET, "/jwks") => respond::json(StatusCode::OK, &self.jwks),
            (Method::GET, "/authorize") => {
                self.login_page(request.uri().query().unwrap_or(""), None)
            }
            (Method::POST, "/authorize") => {
                let form = read_form(request).await;
                self.login(&form)
            }
            (Method::POST, "/token") => {
                let basic = request.headers().get(header::AUTHORIZATION).cloned();
                let form = read_form(request).await;
                self.token(basic.as_ref(), &form)
            }
            (Method::GET, "/userinfo") => self.userinfo(&request),
            (Method::GET, "/logout") => self.logout(request.uri().query().unwrap_or("")),
            _ => html_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("<p>{BANNER}</p>"),
            ),
        }
    }

    fn discovery(&self) -> Value {
        let issuer = &self.issuer;
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
        })
    }

    fn login_page(&self, query: &str, error: Option<&str>) -> Response<Body> {
        let params = parse_form(query);
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
        let body = format!(
            r#"<p class="warning">{BANNER}</p>
{error}
<form method="post" action="/authorize">
{hidden}
<label>User <input name="login" value="{DEMO_USER}" autofocus></label>
<label>Password <input name="password" type="password" placeholder="{DEMO_PASSWORD}"></label>
<button type="submit">Sign in</button>
</form>
<p>Test login: <b>{DEMO_USER}</b> / <b>{DEMO_PASSWORD}</b> (any user name works with this password).</p>"#
        );
        html_page(
            StatusCode::OK,
            "Sign in (development OpenID provider)",
            &body,
        )
    }

    fn login(&self, form: &HashMap<String, String>) -> Response<Body> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().filter(|(name, _)| name.as_str() != "password"))
            .finish();
        if field("client_id") != self.client.id || field("redirect_uri") != self.client.redirect_uri
        {
            return html_page(
                StatusCode::BAD_REQUEST,
                "Unknown client",
                "<p>The client_id or redirect_uri is not registered.</p>",
            );
        }
        if field("response_type") != "code"
            || field("code_challenge_method") != "S256"
            || field("code_challenge").is_empty()
        {
            return html_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "<p>Only the code flow with PKCE S256 is supported.</p>",
            );
        }
        let user = field("login").trim();
        if user.is_empty() || field("password") != DEMO_PASSWORD {
            return self.login_page(&query, Some("Wrong user or password."));
        }
        let code = random_token(&SystemRandom::new(), 24);
        let grant = Grant {
            user: user.to_owned(),
            nonce: form.get("nonce").cloned(),
            code_challenge: field("code_challenge").to_owned(),
            redirect_uri: field("redirect_uri").to_owned(),
        };
        lock(&self.codes).insert(code.clone(), grant);
        let mut location = url::Url::parse(&self.client.redirect_uri)
            .expect("the redirect URI was built by the demo");
        location
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", field("state"));
        respond::redirect(location.as_str())
    }

    fn token(
        &self,
        basic: Option<&http::HeaderValue>,
        form: &HashMap<String, String>,
    ) -> Response<Body> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let (client_id, client_secret) = match basic.and_then(basic_credentials) {
            Some(credentials) => credentials,
            None => (
                field("client_id").to_owned(),
                field("client_secret").to_owned(),
            ),
        };
        if client_id != self.client.id || client_secret != self.client.secret {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        match field("grant_type") {
            "authorization_code" => {
                let Some(grant) = lock(&self.codes).remove(field("code")) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    field("code_verifier").as_bytes(),
                ));
                if grant.redirect_uri != field("redirect_uri") || grant.code_challenge != challenge
                {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                self.issue_tokens(&grant.user, grant.nonce.as_deref(), true)
            }
            "refresh_token" => match lock(&self.refresh_tokens)
                .get(field("refresh_token"))
                .cloned()
            {
                Some(user) => self.issue_tokens(&user, None, false),
                None => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            },
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    }

    fn issue_tokens(&self, user: &str, nonce: Option<&str>, with_refresh: bool) -> Response<Body> {
        let rng = SystemRandom::new();
        let now = unix_now();
        let access_token = random_token(&rng, 32);
        lock(&self.access_tokens).insert(
            access_token.clone(),
            (user.to_owned(), now + ACCESS_TOKEN_LIFETIME),
        );
        let mut claims = user_claims(user);
        claims["iss"] = json!(self.issuer);
        claims["aud"] = json!(self.client.id);
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + ACCESS_TOKEN_LIFETIME);
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
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
            let refresh_token = random_token(&rng, 32);
            lock(&self.refresh_tokens).insert(refresh_token.clone(), user.to_owned());
            answer["refresh_token"] = json!(refresh_token);
        }
        respond::json(StatusCode::OK, &answer)
    }

    fn userinfo(&self, request: &Request<Incoming>) -> Response<Body> {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let user = token.and_then(|token| lock(&self.access_tokens).get(token).cloned());
        match user {
            Some((user, expires_at)) if expires_at > unix_now() => {
                respond::json(StatusCode::OK, &user_claims(&user))
            }
            _ => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
        }
    }

    fn logout(&self, query: &str) -> Response<Body> {
        let params = parse_form(query);
        let target = params
            .get("post_logout_redirect_uri")
            .and_then(|uri| post_logout_target(uri, &self.client.redirect_uri));
        match target {
            Some(url) => respond::redirect(url.as_str()),
            None => html_page(
                StatusCode::OK,
                "Signed out",
                &format!("<p>You are signed out of the development provider.</p><p>{BANNER}</p>"),
            ),
        }
    }
}

/// Where to send the browser after sign-out: `uri` when it goes back to the
/// client's own origin (scheme, host and port of its registered redirect
/// URI) with no user info, else `None`, so the provider is no open
/// redirect. The URL is parsed, not compared as text:
/// `https://localhost:@evil.example/` starts like the client's origin but
/// goes to `evil.example`. Backslashes, spaces and control characters are
/// refused outright, since parsers disagree about them.
fn post_logout_target(uri: &str, redirect_uri: &str) -> Option<url::Url> {
    if uri
        .chars()
        .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let url = url::Url::parse(uri).ok()?;
    let client = url::Url::parse(redirect_uri).ok()?;
    let same_origin = url.scheme() == client.scheme()
        && url.host().is_some()
        && url.host() == client.host()
        && url.port_or_known_default() == client.port_or_known_default();
    (same_origin && url.username().is_empty() && url.password().is_none()).then_some(url)
}

/// The test user's claims, as userinfo and the ID token carry them.
fn user_claims(user: &str) -> Value {
    let display = user
        .chars()
        .next()
        .map(|first| first.to_uppercase().collect::<String>() + &user[first.len_utf8()..])
        .unwrap_or_default();
    json!({
        "sub": user,
        "email": format!("{user}@example.test"),
        "email_verified": true,
        "name": format!("{display} Example"),
        "given_name": display,
        "family_name": "Example",
        "preferred_username": user,
    })
}

fn oauth_error(status: StatusCode, error: &str) -> Response<Body> {
    respond::json(status, &json!({ "error": error }))
}

fn basic_credentials(value: &http::HeaderValue) -> Option<(String, String)> {
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
    // The system RNG failing is not something a demo can recover from.
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

    const REDIRECT_URI: &str = "https://localhost:8443/oauth2/idpresponse";

    #[test]
    fn sign_out_returns_only_to_the_clients_origin() {
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
            assert_eq!(post_logout_target(bad, REDIRECT_URI), None, "{bad:?}");
        }
        for good in [
            "https://localhost:8443/",
            "https://localhost:8443/signed-out?x=1",
            "https://LOCALHOST:8443/",
        ] {
            assert!(
                post_logout_target(good, REDIRECT_URI).is_some(),
                "{good} is the client's own origin"
            );
        }
    }
}
