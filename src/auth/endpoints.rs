//! The proxy's own paths under `/oauth2/`, never forwarded upstream: the
//! login callback, a login started for a front proxy, sign-out, back-channel
//! logout and the public keys of `x-amzn-oidc-data`. (Forward-auth checks,
//! which need the rules, are `proxy::forward_auth`.)
//!
//! The proxy finds that a request is for one of them (after making its path
//! canonical) and hands it here with the listener's authenticate actions.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::AuthShared;
use super::authenticator::RevokeError;
use super::authenticator::{
    Authenticator, RequestContext, SECURE_COOKIES, clear_login_cookies, pending_logins, redirect,
};
use super::error::{AuthError, Untrusted};
use super::oidc::logout::{self, LogoutRefusal};
use super::state::same_host_target;
use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::identity;

/// Paths under this prefix belong to the proxy and are never forwarded.
pub const OWNED_PREFIX: &str = "/oauth2/";

const CALLBACK_PATH: &str = "/oauth2/idpresponse";
const START_PATH: &str = "/oauth2/start";
const SIGN_OUT_PATH: &str = "/oauth2/sign_out";
const BACKCHANNEL_LOGOUT_PATH: &str = "/oauth2/backchannel_logout";

/// Largest back-channel logout request body read: a form with one token.
const MAX_LOGOUT_BODY: usize = 64 * 1024;
/// How long the IdP may take to send that body.
const LOGOUT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the owned paths need to know of the listener they arrived on.
pub struct Listener<'a> {
    pub shared: &'a AuthShared,
    /// Each rule's authenticate action, in rule order (`None`: the rule does
    /// not authenticate).
    pub actions: &'a [Option<Arc<Authenticator>>],
    /// The rule a request for this path and query (not decoded, without
    /// `?`) on the request's host would reach; the method, headers and
    /// client address are those of the request being answered.
    pub rule_for: &'a (dyn Fn(&str, Option<&str>) -> Option<usize> + Sync),
    /// Whether a host condition of one of the listener's rules matches this
    /// host (`host[:port]`).
    pub names_host: &'a (dyn Fn(&str) -> bool + Sync),
    /// Every session cookie name the listener's rules use.
    pub session_cookies: &'a [String],
    /// The original URI a trusted front proxy sent (`X-Original-URI`): where
    /// `/oauth2/start` returns when nginx's `error_page 401` sent it there.
    pub forwarded_uri: Option<&'a str>,
}

/// The answer, and the rule it is counted under when one took part.
pub struct Answered {
    pub rule: Option<usize>,
    pub response: Result<Response<Body>, ProxyError>,
}

impl Listener<'_> {
    pub async fn answer(
        &self,
        request: Request<Incoming>,
        context: &RequestContext<'_>,
    ) -> Answered {
        let query = Query::parse(request.uri().query());
        let no_rule = |response| Answered {
            rule: None,
            response,
        };
        match request.uri().path() {
            CALLBACK_PATH => self.callback(&query, context).await,
            START_PATH => {
                // nginx's `error_page 401 = /oauth2/start` keeps the page
                // asked for in X-Original-URI, whole, query and all.
                let asked = self
                    .forwarded_uri
                    .filter(|uri| !crate::proxy::path::is_owned(uri, OWNED_PREFIX));
                self.start(query.get("rd").or(asked), context).await
            }
            SIGN_OUT_PATH => no_rule(self.sign_out(query.get("rd"), context).await),
            BACKCHANNEL_LOGOUT_PATH => no_rule(Ok(self.backchannel_logout(request).await)),
            path if request.method() == Method::GET || request.method() == Method::HEAD => no_rule(
                identity::keys::key_endpoint(&self.shared.signer, path)
                    .ok_or(ProxyError::OwnedPathNotFound),
            ),
            _ => no_rule(Err(ProxyError::OwnedPathNotFound)),
        }
    }

    /// `/oauth2/idpresponse`: finished by the action that started the login.
    async fn callback(&self, query: &Query, context: &RequestContext<'_>) -> Answered {
        let param = |name| query.get(name);
        let mut rule = None;
        let response = async {
            if let Some(error) = param("error") {
                return Err(AuthError::IdpError {
                    error: Untrusted::new(error),
                });
            }
            let state = param("state").ok_or(AuthError::MissingState)?;
            let code = param("code").ok_or(AuthError::MissingCode)?;
            let mut logins = pending_logins(&self.shared.sealer, context.cookies);
            let login = logins
                .take(state, self.shared.clock.now())
                .ok_or(AuthError::InvalidState)?;
            let (index, authenticator) = self
                .actions
                .iter()
                .enumerate()
                .find_map(|(index, action)| {
                    action
                        .as_ref()
                        .filter(|action| action.started(&login))
                        .map(|action| (index, action))
                })
                .ok_or(AuthError::InvalidState)?;
            rule = Some(index);
            authenticator
                .finish_login(login, logins, code, param("iss"), context)
                .await
        }
        .await;
        Answered {
            rule,
            response: response.map_err(ProxyError::from),
        }
    }

    /// `/oauth2/start?rd=`: a login that returns to `rd`, for a front proxy
    /// that sends a browser here when its forward-auth check said 401
    /// (nginx's `error_page 401`); without `rd`, to the original URI a
    /// trusted front proxy sent. `rd` is a path, or a URL on this host; a
    /// URL on another host that a rule of this listener names starts its
    /// login there; anything else returns to `/`.
    async fn start(&self, rd: Option<&str>, context: &RequestContext<'_>) -> Answered {
        let target = match return_target(rd.unwrap_or("/"), context) {
            Return::Here(target) => target,
            Return::Elsewhere { origin, authority } if (self.names_host)(&authority) => {
                let rd: String =
                    url::form_urlencoded::byte_serialize(rd.unwrap_or("/").as_bytes()).collect();
                let location = format!("{origin}{START_PATH}?rd={rd}");
                return Answered {
                    rule: None,
                    response: redirect(&location).map_err(ProxyError::from),
                };
            }
            Return::Elsewhere { .. } => "/".to_owned(),
        };
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target.as_str(), None),
        };
        let path =
            crate::proxy::path::canonicalize(path).unwrap_or(std::borrow::Cow::Borrowed("/"));
        let rule = (self.rule_for)(&path, query);
        let action = rule
            .and_then(|index| self.actions.get(index))
            .and_then(Option::as_ref);
        let response = match action {
            Some(authenticator) => authenticator
                .login_returning_to(&target, context, self.shared.clock.now())
                .await
                .map_err(ProxyError::from),
            // A rule without login: nothing to sign in to, go straight there.
            None => redirect(&target).map_err(ProxyError::from),
        };
        Answered { rule, response }
    }

    /// `/oauth2/sign_out?rd=`: signed out by the action of the rule `rd`
    /// reaches, found as the request for it would be.
    async fn sign_out(
        &self,
        rd: Option<&str>,
        context: &RequestContext<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let rd = same_host_target(rd.unwrap_or("/")).to_owned();
        // The fragment never reaches a server; the rest is path and query.
        let target = rd.split('#').next().unwrap_or("/");
        let (rd_path, rd_query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let rd_path =
            crate::proxy::path::canonicalize(rd_path).unwrap_or(std::borrow::Cow::Borrowed("/"));
        let action = (self.rule_for)(&rd_path, rd_query)
            .and_then(|index| self.actions.get(index))
            .and_then(Option::as_ref);
        match action {
            Some(authenticator) => Ok(authenticator.sign_out(context, &rd).await?),
            None => {
                let mut response = redirect(&rd)?;
                clear_login_cookies(
                    response.headers_mut(),
                    self.session_cookies.iter().map(String::as_str),
                    SECURE_COOKIES,
                );
                Ok(response)
            }
        }
    }

    /// `POST /oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout
    /// 1.0): the IdP names sessions to end in a signed logout token. 200
    /// when they are gone (or were already), 400 for a token that is not
    /// valid here, 503 when the session store does not answer (the IdP may
    /// try again). Never cached.
    async fn backchannel_logout(&self, request: Request<Incoming>) -> Response<Body> {
        let (status, error) = match self.end_sessions(request).await {
            Ok(()) => (StatusCode::OK, None),
            Err(BackchannelError::Request(refusal)) => {
                tracing::info!(refusal, "back-channel logout refused");
                (StatusCode::BAD_REQUEST, Some("invalid_request"))
            }
            Err(BackchannelError::Token(LogoutRefusal::KeysUnavailable(error))) => {
                tracing::warn!(%error, "back-channel logout: the IdP's keys are not available");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("temporarily_unavailable"),
                )
            }
            Err(BackchannelError::Token(refusal)) => {
                tracing::info!(%refusal, "back-channel logout token refused");
                (StatusCode::BAD_REQUEST, Some("invalid_request"))
            }
            Err(BackchannelError::Store(error)) => {
                tracing::warn!(%error, "back-channel logout: the session store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("temporarily_unavailable"),
                )
            }
        };
        let text = match error {
            Some(error) => serde_json::json!({ "error": error }).to_string(),
            None => String::new(),
        };
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if error.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        response
    }

    async fn end_sessions(&self, request: Request<Incoming>) -> Result<(), BackchannelError> {
        if request.method() != Method::POST {
            return Err(BackchannelError::Request("the method is not POST"));
        }
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(BackchannelError::Request("the body is not a form"));
        }
        let body = Limited::new(request.into_body(), MAX_LOGOUT_BODY).collect();
        let body = match tokio::time::timeout(LOGOUT_BODY_TIMEOUT, body).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(_)) => return Err(BackchannelError::Request("the body is too large")),
            Err(_) => return Err(BackchannelError::Request("the body was not sent in time")),
        };
        let mut tokens = url::form_urlencoded::parse(&body)
            .filter(|(name, _)| name == "logout_token")
            .map(|(_, value)| value);
        let (Some(token), None) = (tokens.next(), tokens.next()) else {
            return Err(BackchannelError::Request("not exactly one logout_token"));
        };

        // The actions that trust the token's issuer try it, each with its
        // own client id as the audience; the issuer is only a hint until
        // the signature is checked.
        let issuer = logout::unverified_issuer(&token).ok_or(BackchannelError::Request(
            "the logout token has no readable iss",
        ))?;
        let now = self.shared.clock.now();
        let mut refusal =
            BackchannelError::Request("no rule of this listener trusts the token's issuer");
        let mut tried = Vec::new();
        for authenticator in self.actions.iter().flatten() {
            if !authenticator.trusts(&issuer) || tried.contains(&authenticator.client_key()) {
                continue;
            }
            tried.push(authenticator.client_key());
            match authenticator.verify_logout_token(&token, now).await {
                Ok(logout) => {
                    return authenticator
                        .end_sessions(&logout, now)
                        .await
                        .map_err(BackchannelError::from);
                }
                Err(error) => refusal = BackchannelError::Token(error),
            }
        }
        Err(refusal)
    }
}

/// Where `/oauth2/start` sends the browser after the login.
enum Return {
    /// A path and query on this host, safe to redirect to.
    Here(String),
    /// A URL on another host: `https://host:port` and `host:port`.
    Elsewhere { origin: String, authority: String },
}

/// `rd` as a path on this host, or the other host it names. An absolute
/// URL counts as this host only with the scheme, host and port the browser
/// is using; user information, other schemes and anything unparsable
/// return to `/`.
fn return_target(rd: &str, context: &RequestContext<'_>) -> Return {
    if rd.starts_with('/') {
        return Return::Here(same_host_target(rd).to_owned());
    }
    let Ok(url) = url::Url::parse(rd) else {
        return Return::Here("/".to_owned());
    };
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none();
    let Some(host) = url.host_str().filter(|_| plain) else {
        return Return::Here("/".to_owned());
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let scheme_here = if context.tls { "https" } else { "http" };
    let default_port = |scheme: &str| if scheme == "https" { 443 } else { 80 };
    let same = |a: &str, b: &str, scheme: &str| {
        let split = |authority: &str| {
            let parsed = http::uri::Authority::try_from(authority).ok()?;
            Some((
                parsed.host().to_ascii_lowercase(),
                parsed.port_u16().unwrap_or(default_port(scheme)),
            ))
        };
        split(a).is_some_and(|a| Some(a) == split(b))
    };
    if url.scheme() == scheme_here && same(&authority, context.authority, scheme_here) {
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        return Return::Here(same_host_target(&target).to_owned());
    }
    Return::Elsewhere {
        origin: format!("{}://{authority}", url.scheme()),
        authority,
    }
}

/// A request's query parameters, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let query = query.unwrap_or("").as_bytes();
        Self(url::form_urlencoded::parse(query).into_owned().collect())
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a back-channel logout did not end sessions.
enum BackchannelError {
    /// 400: the request is not a logout request this listener takes.
    Request(&'static str),
    /// 400: the logout token is not valid for any action that trusts its issuer.
    Token(LogoutRefusal),
    /// 503: the session store did not answer.
    Store(AuthError),
}

impl From<RevokeError> for BackchannelError {
    fn from(error: RevokeError) -> Self {
        match error {
            RevokeError::Replayed => Self::Request("the logout token was used before"),
            RevokeError::Store(error) => Self::Store(error),
        }
    }
}
