//! The request pipeline: one linear handler per request, in the order the
//! crate documentation lists (strip identity → owned paths → rule → session
//! and policy → identity headers → action → access log).

pub mod actions;
pub mod forward;
pub mod pool;
pub mod rules;
pub mod upgrade;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, header};
use hyper::body::Incoming;

use crate::auth::authenticator::{
    SECURE_COOKIES, clear_nonce_cookie, clear_session_cookies, pending_logins,
};
use crate::auth::session::{RequestCookies, is_shard_name, strip_request_cookies};
use crate::auth::state::NONCE_COOKIE;
use crate::auth::{AuthError, AuthShared, Authenticator, Decision, RequestContext};
use crate::body::Body;
use crate::config::{Rule, TerminalAction};
use crate::error::ProxyError;
use crate::identity;
use crate::metrics::{Metrics, RuleLabel};

pub use forward::{Downstream, Upstream};

/// Paths under this prefix belong to the proxy and are never forwarded (SPEC §5).
pub const OWNED_PREFIX: &str = "/oauth2/";

/// A rule with its metrics label made once, not per request.
pub struct Route {
    pub rule: Rule,
    pub label: RuleLabel,
    /// The rule's authenticate action, ready to run.
    pub authenticator: Option<Arc<Authenticator>>,
}

impl Route {
    pub fn new(rule: Rule, authenticator: Option<Arc<Authenticator>>) -> Self {
        Self {
            label: RuleLabel(rule.name.as_str().into()),
            rule,
            authenticator,
        }
    }
}

/// Everything one listener needs to answer requests.
pub struct Proxy {
    routes: Vec<Route>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// Sealer and signer, when any rule of the process authenticates.
    auth: Option<Arc<AuthShared>>,
    /// Session cookie names used on this listener: never forwarded upstream.
    session_cookies: Vec<String>,
    /// Labels for requests that no rule answered.
    no_rule: RuleLabel,
    owned: RuleLabel,
}

/// What the access log says about one request.
struct Outcome<'a> {
    rule: &'a RuleLabel,
    upstream: Option<&'a str>,
    upstream_latency: Option<Duration>,
    /// ALB's `error_reason` when authentication failed.
    error_reason: Option<&'static str>,
}

impl Proxy {
    pub fn new(
        routes: Vec<Route>,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        auth: Option<Arc<AuthShared>>,
    ) -> Self {
        let mut session_cookies: Vec<String> = routes
            .iter()
            .filter_map(|route| route.authenticator.as_ref())
            .map(|authenticator| authenticator.cookie_name().to_owned())
            .collect();
        session_cookies.sort();
        session_cookies.dedup();
        Self {
            routes,
            upstream,
            metrics,
            auth,
            session_cookies,
            no_rule: RuleLabel("no_rule".into()),
            owned: RuleLabel("oauth2".into()),
        }
    }

    /// True for the nonce cookie and every session shard of this listener.
    fn is_proxy_cookie(&self, name: &str) -> bool {
        name == NONCE_COOKIE
            || self
                .session_cookies
                .iter()
                .any(|base| is_shard_name(base, name))
    }

    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        downstream: Downstream,
    ) -> Response<Body> {
        let started = Instant::now();
        // 1. Identity headers are the proxy's alone: drop the client's before
        //    anything, so no later phase can mistake them for verified ones.
        identity::strip_inbound(request.headers_mut());

        let method = request.method().clone();
        // For the access log: a reference to the bytes hyper parsed, not a copy.
        let uri = request.uri().clone();
        let wants_json = wants_json(&request);
        let mut outcome = Outcome {
            rule: &self.no_rule,
            upstream: None,
            upstream_latency: None,
            error_reason: None,
        };

        let response = match self.route(request, downstream, &mut outcome).await {
            Ok(response) => response,
            Err(error) => {
                if let Some(reason) = error.reason() {
                    self.metrics.auth_failed(reason);
                    outcome.error_reason = Some(reason);
                }
                if error.status().is_server_error() {
                    tracing::warn!(error = %error, cause = ?std::error::Error::source(&error), "request failed");
                }
                error.into_response(wants_json)
            }
        };

        let status = response.status().as_u16();
        self.metrics.count_request(outcome.rule, status);
        if let Some(latency) = outcome.upstream_latency {
            self.metrics.observe_upstream_latency(latency);
        }
        tracing::info!(
            target: "portcullis::access",
            rule = &*outcome.rule.0,
            method = %method,
            path = %uri.path(),
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            upstream = outcome.upstream.unwrap_or("-"),
            error_reason = outcome.error_reason.unwrap_or("-"),
        );
        response
    }

    async fn route<'a>(
        &'a self,
        mut request: Request<Incoming>,
        downstream: Downstream,
        outcome: &mut Outcome<'a>,
    ) -> Result<Response<Body>, ProxyError> {
        let authority = request_authority(&request)
            .ok_or(ProxyError::MissingHost)?
            .to_owned();
        let host = rules::normalize_host(&authority);

        // 2. The proxy's own paths come before the rules: a rule for `/*`
        //    must never forward `/oauth2/...` upstream.
        if request.uri().path().starts_with(OWNED_PREFIX) {
            outcome.rule = &self.owned;
            // Boxed: the login callback's token exchange would otherwise
            // enlarge every request's future (see server::conn).
            return Box::pin(self.owned_path(&request, &authority, &host, downstream, outcome))
                .await;
        }

        // 3. First matching rule wins.
        let route = self
            .routes
            .iter()
            .find(|route| rules::rule_matches(&route.rule, &host, request.uri().path()))
            .ok_or(ProxyError::NoRuleMatched)?;
        outcome.rule = &route.label;

        // 4. Session and unauthenticated policy; identity headers when logged in.
        let mut set_cookies = Vec::new();
        if let Some(authenticator) = &route.authenticator {
            let decision = {
                let cookies = RequestCookies::parse(request.headers());
                let context = RequestContext {
                    authority: &authority,
                    tls: downstream.tls,
                    cookies: &cookies,
                };
                authenticator.authorize(&request, &context).await?
            };
            match decision {
                Decision::Authenticated(identity) => {
                    identity.apply(request.headers_mut());
                    set_cookies = identity.set_cookies;
                }
                Decision::Anonymous => {}
                Decision::Login(redirect) => return Ok(redirect),
                Decision::Unauthenticated => return Err(ProxyError::Unauthenticated),
            }
        }
        // The proxy's cookies are its own business, never the upstream's.
        strip_request_cookies(request.headers_mut(), |name| self.is_proxy_cookie(name));

        // 5. The terminal action.
        let mut response = match &route.rule.action {
            TerminalAction::FixedResponse(action) => actions::fixed_response(action),
            TerminalAction::Redirect(action) => {
                let parts = actions::RequestParts {
                    protocol: downstream.protocol(),
                    host: &host,
                    port: downstream.port,
                    path: request.uri().path(),
                    query: request.uri().query().unwrap_or(""),
                };
                actions::redirect(action, &parts)
            }
            TerminalAction::Forward(action) => {
                outcome.upstream = Some(action.target.as_str());
                let (response, latency) =
                    self.upstream.forward(action, request, &downstream).await?;
                outcome.upstream_latency = Some(latency);
                response
            }
        };
        for cookie in set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }

    /// `/oauth2/idpresponse`, `/oauth2/sign_out`, the key endpoints; 404 for the rest.
    async fn owned_path<'a>(
        &'a self,
        request: &Request<Incoming>,
        authority: &str,
        host: &str,
        downstream: Downstream,
        outcome: &mut Outcome<'a>,
    ) -> Result<Response<Body>, ProxyError> {
        let Some(auth) = &self.auth else {
            return Err(ProxyError::OwnedPathNotFound);
        };
        let path = request.uri().path();
        let cookies = RequestCookies::parse(request.headers());
        let context = RequestContext {
            authority,
            tls: downstream.tls,
            cookies: &cookies,
        };
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        match path {
            "/oauth2/idpresponse" => {
                if let Some(error) = param("error") {
                    return Err(AuthError::IdpError {
                        error: crate::auth::error::Untrusted::new(error),
                    }
                    .into());
                }
                let state = param("state").ok_or(AuthError::MissingState)?;
                let code = param("code").ok_or(AuthError::MissingCode)?;
                let mut logins = pending_logins(&auth.sealer, &cookies);
                let login = logins
                    .take(state, crate::auth::oidc::tokens::unix_now())
                    .ok_or(AuthError::InvalidState)?;
                let route = self
                    .routes
                    .iter()
                    .find(|route| {
                        route.rule.name == login.rule
                            && route
                                .authenticator
                                .as_ref()
                                .is_some_and(|a| a.started(&login))
                    })
                    .ok_or(AuthError::InvalidState)?;
                outcome.rule = &route.label;
                let authenticator = route
                    .authenticator
                    .as_ref()
                    .expect("filtered on is_some above");
                Ok(authenticator
                    .finish_login(login, logins, code, &context)
                    .await?)
            }
            "/oauth2/sign_out" => {
                let rd =
                    crate::auth::state::same_host_target(param("rd").unwrap_or("/")).to_owned();
                let rd_path = rd.split('?').next().unwrap_or("/");
                let route = self
                    .routes
                    .iter()
                    .find(|route| rules::rule_matches(&route.rule, host, rd_path));
                match route.and_then(|route| route.authenticator.as_ref()) {
                    Some(authenticator) => Ok(authenticator.sign_out(&context, &rd).await),
                    None => {
                        let mut response = crate::auth::authenticator::redirect(&rd)?;
                        for base in &self.session_cookies {
                            clear_session_cookies(response.headers_mut(), base, SECURE_COOKIES);
                        }
                        clear_nonce_cookie(response.headers_mut(), SECURE_COOKIES);
                        Ok(response)
                    }
                }
            }
            _ if request.method() == http::Method::GET
                || request.method() == http::Method::HEAD =>
            {
                identity::keys::key_endpoint(&auth.signer, path)
                    .ok_or(ProxyError::OwnedPathNotFound)
            }
            _ => Err(ProxyError::OwnedPathNotFound),
        }
    }
}

/// The authority the client addressed: `Host` (HTTP/1.1) or `:authority` (HTTP/2).
/// Only a well-formed `host[:port]` is accepted: it becomes part of the
/// `redirect_uri` and of redirects, so nothing else may ride along in it.
fn request_authority<B>(request: &Request<B>) -> Option<&str> {
    let authority = match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok()?,
        None => request.uri().authority()?.as_str(),
    };
    let parsed = http::uri::Authority::try_from(authority).ok()?;
    (parsed.as_str() == authority && !authority.contains('@')).then_some(authority)
}

/// Error bodies are JSON for anything that is not a browser navigation
/// (XHR, fetch, JSON clients, non-GET methods), HTML otherwise.
fn wants_json<B>(request: &Request<B>) -> bool {
    !crate::auth::policy::is_navigation(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_authorities_are_hosts() {
        let with_host = |host: &str| {
            Request::builder()
                .header(header::HOST, host)
                .body(())
                .unwrap()
        };
        assert_eq!(
            request_authority(&with_host("app.example.com:8443")),
            Some("app.example.com:8443")
        );
        assert_eq!(
            request_authority(&with_host("[::1]:443")),
            Some("[::1]:443")
        );
        for bad in [
            "evil.example/path",
            "user@evil.example",
            "a b",
            "evil.example?x",
            "",
        ] {
            assert_eq!(request_authority(&with_host(bad)), None, "{bad}");
        }
    }
}
