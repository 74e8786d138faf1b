//! The request pipeline: one linear handler per request, in the order the
//! crate documentation lists (header hygiene → canonical path → owned paths
//! → rule → authentication → authorization and identity headers → action →
//! access log).

pub mod actions;
pub mod forward;
pub mod forward_auth;
pub mod forwarded;
pub mod headers;
pub mod path;
pub mod pool;
pub mod rules;
pub mod upgrade;
pub mod weighted;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use crate::auth::bearer::JwtValidator;
use crate::auth::endpoints::{self, OWNED_PREFIX};
use crate::auth::session::{RequestCookies, is_shard_name, strip_request_cookies};
use crate::auth::state::NONCE_COOKIE;
use crate::auth::{AuthShared, Authenticator, Decision, RequestContext};
use crate::body::{self, Body};
use crate::config::{Cidr, HeaderPolicy, Rule, TerminalAction};
use crate::error::{ALLOWED_METHODS, ProxyError};
use crate::metrics::{Metrics, RuleLabel};
use crate::untrusted::LogSafe;
use forwarded::Forwarded;
use path::PathError;
use upgrade::OnUpgrade;

pub use forward::{Downstream, Upstream};

/// A rule with its metrics label made once, not per request.
pub struct Route {
    pub rule: Rule,
    pub label: RuleLabel,
    /// The rule's authenticate action, ready to run.
    pub authenticator: Option<Arc<Authenticator>>,
    /// The rule's `jwt_validation`, ready to run; never set with `authenticator`.
    pub bearer: Option<Arc<JwtValidator>>,
}

impl Route {
    pub fn new(rule: Rule, authenticator: Option<Arc<Authenticator>>) -> Self {
        Self {
            label: RuleLabel(rule.name.as_str().into()),
            rule,
            authenticator,
            bearer: None,
        }
    }

    /// The route with its `jwt_validation`.
    pub fn with_bearer(self, bearer: Option<Arc<JwtValidator>>) -> Self {
        Self { bearer, ..self }
    }
}

/// Everything one listener needs to answer requests.
pub struct Proxy {
    routes: Vec<Route>,
    /// What this listener forwards of the client's headers.
    headers: HeaderPolicy,
    /// Peers whose `X-Forwarded-*` describe the original request.
    trusted_proxies: Vec<Cidr>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// Sealer and signer, when any rule of the process authenticates.
    auth: Option<Arc<AuthShared>>,
    /// Each route's authenticate action, in rule order, for `/oauth2/` paths.
    actions: Vec<Option<Arc<Authenticator>>>,
    /// Session cookie names used on this listener: never forwarded upstream.
    session_cookies: Vec<String>,
    /// Headers this listener's actions make from claims: a client's copies
    /// are removed on every rule.
    claim_headers: Vec<http::HeaderName>,
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
        headers: HeaderPolicy,
        trusted_proxies: Vec<Cidr>,
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
        let actions = routes
            .iter()
            .map(|route| route.authenticator.clone())
            .collect();
        let mut claim_headers: Vec<http::HeaderName> = routes
            .iter()
            .filter_map(|route| route.authenticator.as_ref())
            .flat_map(|authenticator| authenticator.claim_header_names())
            .cloned()
            .collect();
        claim_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        claim_headers.dedup();
        Self {
            actions,
            routes,
            headers,
            trusted_proxies,
            upstream,
            metrics,
            auth,
            session_cookies,
            claim_headers,
            no_rule: RuleLabel("no_rule".into()),
            owned: RuleLabel("oauth2".into()),
        }
    }

    /// The first rule whose conditions hold.
    fn first_match(&self, facts: &rules::RequestFacts<'_>) -> Result<&Route, ProxyError> {
        self.routes
            .iter()
            .find(|route| rules::rule_matches(&route.rule, facts))
            .ok_or(ProxyError::NoRuleMatched)
    }

    /// True for the nonce cookie and every session shard of this listener.
    fn is_proxy_cookie(&self, name: &str) -> bool {
        name == NONCE_COOKIE
            || name == weighted::STICKY_COOKIE
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
        // 0. What a trusted front proxy says about the original request,
        //    read before hygiene removes the headers that say it.
        let forwarded = Forwarded::read(
            request.headers(),
            downstream.client.ip(),
            &self.trusted_proxies,
        );
        // 1. Hygiene, before any phase reads a header and before the proxy
        //    adds one: identity headers and their look-alikes, hop-by-hop
        //    headers and routing overrides go, so nothing the client sends
        //    can pass for, remove or shadow what the proxy adds later.
        let websocket = request.extensions().get::<OnUpgrade>().is_some();
        headers::sanitize_request(request.headers_mut(), &self.headers, websocket);
        headers::strip_reserved(request.headers_mut(), &self.claim_headers);

        // 2. One path from here on: the rules, the `/oauth2/` check, the log
        //    and the upstream all see the canonical one.
        let target = canonical_target(&mut request);
        let method = request.method().clone();
        // For the access log: a reference to the bytes hyper parsed, not a copy.
        let uri = request.uri().clone();
        // A forward-auth check's errors are for the front proxy: JSON.
        let wants_json = wants_json(&request) || forward_auth::is_check(request.uri().path());
        let mut outcome = Outcome {
            rule: &self.no_rule,
            upstream: None,
            upstream_latency: None,
            error_reason: None,
        };

        let routed = match target {
            Ok(Target::Path) => {
                self.route(request, downstream, forwarded.as_ref(), &mut outcome)
                    .await
            }
            Ok(Target::Server) => Ok(server_options()),
            Err(error) => Err(error),
        };
        let response = match routed {
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
            path = %LogSafe(uri.path()),
            status,
            latency_ms = milliseconds(started.elapsed()),
            upstream = outcome.upstream.unwrap_or("-"),
            error_reason = outcome.error_reason.unwrap_or("-"),
        );
        response
    }

    async fn route<'a>(
        &'a self,
        mut request: Request<Incoming>,
        downstream: Downstream,
        forwarded: Option<&Forwarded>,
        outcome: &mut Outcome<'a>,
    ) -> Result<Response<Body>, ProxyError> {
        let authority = request_authority(&request)
            .ok_or(ProxyError::MissingHost)?
            .to_owned();
        let host = rules::normalize_host(&authority);
        // Redirects, the login's `redirect_uri` and the upstream's
        // `X-Forwarded-Proto` use the scheme, host and port the browser used.
        let (browser_authority, browser) = browser_side(&authority, downstream, forwarded);

        // 3. The proxy's own paths come before the rules: a rule for `/*`
        //    must never forward `/oauth2/...` upstream. A forward-auth
        //    check evaluates the rules against the request it is about.
        if forward_auth::is_check(request.uri().path()) {
            // Boxed: as the other owned paths, off every request's future.
            return Box::pin(self.check(request, &downstream, forwarded, outcome)).await;
        }
        if path::is_owned(request.uri().path(), OWNED_PREFIX) {
            outcome.rule = &self.owned;
            let Some(shared) = &self.auth else {
                return Err(ProxyError::OwnedPathNotFound);
            };
            // Kept apart from the request, which the endpoint takes.
            let headers = request.headers().clone();
            let method = request.method().clone();
            // Sign-out's `rd` is matched as a request for that path and
            // query would be, sent with this request's method, headers and
            // connection.
            let rule_for = |path: &str, query: Option<&str>| {
                let facts = rules::RequestFacts {
                    host: &host,
                    path,
                    method: &method,
                    headers: &headers,
                    query,
                    peer: downstream.client.ip(),
                };
                self.routes
                    .iter()
                    .position(|route| rules::rule_matches(&route.rule, &facts))
            };
            // `/oauth2/start?rd=` may send a login to another host of
            // this listener's rules, and to no other.
            let names_host = |other: &str| {
                let other = rules::normalize_host(other);
                self.routes.iter().any(|route| {
                    route
                        .rule
                        .conditions
                        .host
                        .iter()
                        .any(|pattern| rules::pattern_names_host(pattern, &other))
                })
            };
            let listener = endpoints::Listener {
                shared,
                actions: &self.actions,
                rule_for: &rule_for,
                names_host: &names_host,
                session_cookies: &self.session_cookies,
                forwarded_uri: forwarded.and_then(|forwarded| forwarded.uri.as_deref()),
            };
            let cookies = RequestCookies::parse(&headers);
            let context = RequestContext {
                authority: browser_authority,
                tls: browser.tls,
                cookies: &cookies,
                may_redirect: true,
            };
            // Boxed: the login callback's token exchange would otherwise
            // enlarge every request's future (see server::conn).
            let answered = Box::pin(listener.answer(request, &context)).await;
            if let Some(index) = answered.rule {
                outcome.rule = &self.routes[index].label;
            }
            return answered.response;
        }

        // 4. First matching rule wins. The headers are those sanitising
        //    left, so a header condition sees what the upstream will.
        let facts = rules::RequestFacts {
            host: &host,
            path: request.uri().path(),
            method: request.method(),
            headers: request.headers(),
            query: request.uri().query(),
            peer: downstream.client.ip(),
        };
        let route = self.first_match(&facts)?;
        outcome.rule = &route.label;

        // 5. Authentication: the session (refreshed when due), or the
        //    unauthenticated policy when there is none; or, on a
        //    `jwt_validation` rule, the bearer token and its `require`
        //    (authentication and authorization at once: the token is all
        //    there is, and it goes upstream as it came).
        if let Some(bearer) = &route.bearer {
            bearer.validate(request.headers()).await?;
        }
        let mut set_cookies = Vec::new();
        if let Some(authenticator) = &route.authenticator {
            let decision = {
                let cookies = RequestCookies::parse(request.headers());
                let context = RequestContext {
                    authority: browser_authority,
                    tls: browser.tls,
                    cookies: &cookies,
                    may_redirect: true,
                };
                authenticator.authenticate(&request, &context).await?
            };
            match decision {
                Decision::Authenticated(identity) => {
                    // 6. Authorization: may this principal use this rule? Then
                    //    the identity headers, built from it.
                    authenticator.authorize(&identity)?;
                    identity.apply(request.headers_mut());
                    set_cookies = identity.set_cookies;
                }
                Decision::Anonymous => {}
                Decision::Login(redirect) => return Ok(redirect),
                Decision::Unauthenticated => return Err(ProxyError::Unauthenticated),
            }
        }
        // A forward to several targets places the request by its stickiness
        // cookie, which the upstream never sees either.
        let placement = match &route.rule.action {
            TerminalAction::Forward(action) => {
                Some(
                    self.upstream
                        .place(&route.label.0, action, request.headers(), browser.tls),
                )
            }
            _ => None,
        };
        // The proxy's cookies are its own business, never the upstream's.
        strip_request_cookies(request.headers_mut(), |name| self.is_proxy_cookie(name));

        // 7. The terminal action.
        let mut response = match &route.rule.action {
            TerminalAction::FixedResponse(action) => actions::fixed_response(action),
            TerminalAction::Redirect(action) => {
                let browser_host = rules::normalize_host(browser_authority);
                let parts = actions::RequestParts {
                    protocol: browser.protocol(),
                    host: &browser_host,
                    port: browser.port,
                    path: request.uri().path(),
                    query: request.uri().query().unwrap_or(""),
                };
                actions::redirect(action, &parts)
            }
            TerminalAction::Forward(action) => {
                let placed = placement.expect("placed with the rule's forward action");
                outcome.upstream = Some(placed.target.as_str());
                let sent = self
                    .upstream
                    .forward(
                        placed.target,
                        action,
                        request,
                        &browser,
                        self.headers.x_forwarded_for,
                    )
                    .await;
                let (response, latency) = sent.inspect_err(|error| {
                    if let Some(kind) = error.upstream_failure() {
                        self.metrics.upstream_failed(placed.target.as_str(), kind);
                    }
                })?;
                // The stickiness cookie, set with the session's below.
                set_cookies.extend(placed.set_cookie);
                outcome.upstream_latency = Some(latency);
                response
            }
        };
        if !set_cookies.is_empty() {
            // A cookie the proxy sets (a refreshed session, a stickiness
            // cookie) is this client's alone: no shared cache may keep the
            // response, whatever the upstream said about its own.
            keep_private(response.headers_mut());
        }
        for cookie in set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }
}

/// A duration in milliseconds to the microsecond (`0.056`, `12.5`): finer
/// is noise in a log line, and `as_secs_f64() * 1000.0` prints
/// `0.056499999999999995`.
fn milliseconds(elapsed: Duration) -> f64 {
    // Below 2^53 µs (285 years) the conversion is exact.
    elapsed.as_micros() as f64 / 1000.0
}

/// What a request is for, once its target has been checked.
enum Target {
    /// A path, now canonical in the request's URI.
    Path,
    /// `OPTIONS *`: the server itself, answered by the proxy.
    Server,
}

/// Refuses the methods that would open a tunnel or echo headers, and makes
/// the request's path canonical ([`path::canonicalize`]) in place, so that
/// every later phase reads the one spelling. The query is kept as sent.
fn canonical_target<B>(request: &mut Request<B>) -> Result<Target, ProxyError> {
    let method = request.method();
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(ProxyError::MethodRefused);
    }
    let uri = request.uri();
    if method == Method::OPTIONS && uri.path() == "*" {
        return Ok(Target::Server);
    }
    let canonical = match path::canonicalize(uri.path())? {
        std::borrow::Cow::Borrowed(_) => return Ok(Target::Path),
        std::borrow::Cow::Owned(canonical) => canonical,
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|_| PathError::Unrepresentable)?);
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| PathError::Unrepresentable)?;
    Ok(Target::Path)
}

/// `OPTIONS *` asks what the server supports; the upstream is not asked.
fn server_options() -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
}

/// `Cache-Control: private` unless the response already forbids storing it
/// (`private`, `no-store`); `public` and `s-maxage` give way to it.
fn keep_private(headers: &mut HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_owned())
        .filter(|directive| !directive.is_empty())
        .collect();
    let name = |directive: &str| {
        directive
            .split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    if directives
        .iter()
        .any(|directive| matches!(name(directive).as_str(), "private" | "no-store"))
    {
        return;
    }
    let mut kept = vec!["private".to_owned()];
    kept.extend(
        directives
            .into_iter()
            .filter(|directive| !matches!(name(directive).as_str(), "public" | "s-maxage")),
    );
    let value = HeaderValue::try_from(kept.join(", "))
        .unwrap_or_else(|_| HeaderValue::from_static("private"));
    headers.insert(header::CACHE_CONTROL, value);
}

/// The authority, scheme and port the browser used: the connection's, or
/// what a trusted front proxy said of them (a plain-HTTP listener behind a
/// TLS front proxy). The client address stays the TCP peer's.
fn browser_side<'a>(
    authority: &'a str,
    downstream: Downstream,
    forwarded: Option<&'a Forwarded>,
) -> (&'a str, Downstream) {
    let Some(forwarded) = forwarded else {
        return (authority, downstream);
    };
    let authority = forwarded.host.as_deref().unwrap_or(authority);
    let tls = forwarded.tls.unwrap_or(downstream.tls);
    let port = match (&forwarded.tls, &forwarded.host, forwarded.port) {
        (None, None, None) => downstream.port,
        _ => forwarded.browser_port(tls),
    };
    (
        authority,
        Downstream {
            tls,
            port,
            ..downstream
        },
    )
}

/// The authority the client addressed: `Host` (HTTP/1.1) or `:authority` (HTTP/2).
/// Only a well-formed `host[:port]` is accepted: it becomes part of the
/// `redirect_uri` and of redirects, so nothing else may ride along in it.
fn request_authority<B>(request: &Request<B>) -> Option<&str> {
    let authority = match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok()?,
        None => request.uri().authority()?.as_str(),
    };
    plain_authority(authority)
}

/// `text` when it is a plain `host[:port]`: no user information, path or
/// anything else a parser might read past.
fn plain_authority(text: &str) -> Option<&str> {
    let parsed = http::uri::Authority::try_from(text).ok()?;
    (parsed.as_str() == text && !text.contains('@')).then_some(text)
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
    fn latency_is_logged_to_the_microsecond() {
        use std::time::Duration;
        assert_eq!(
            milliseconds(Duration::from_nanos(56_499)).to_string(),
            "0.056"
        );
        assert_eq!(
            milliseconds(Duration::from_micros(12_500)).to_string(),
            "12.5"
        );
        assert_eq!(milliseconds(Duration::from_secs(3)).to_string(), "3000");
    }

    fn target(method: &str, uri: &str) -> (Result<Target, ProxyError>, String) {
        let mut request = Request::builder().method(method).uri(uri).body(()).unwrap();
        let target = canonical_target(&mut request);
        (target, request.uri().to_string())
    }

    #[test]
    fn the_request_target_is_made_canonical_and_keeps_its_query() {
        let (outcome, uri) = target("GET", "/public/%2e%2e/admin/x?next=/public/../y&a=%2e");
        assert!(matches!(outcome, Ok(Target::Path)));
        assert_eq!(uri, "/admin/x?next=/public/../y&a=%2e");
        let (outcome, uri) = target("GET", "https://app.example.com/a//b");
        assert!(matches!(outcome, Ok(Target::Path)));
        assert_eq!(uri, "https://app.example.com/a/b");
        let (outcome, _) = target("GET", "/a/..%2fb");
        assert!(matches!(
            outcome,
            Err(ProxyError::BadPath(PathError::EncodedSeparator))
        ));
    }

    #[test]
    fn tunnels_and_echoes_are_refused_and_options_star_is_ours() {
        for method in ["CONNECT", "TRACE"] {
            let uri = if method == "CONNECT" {
                "app.example.com:443"
            } else {
                "/"
            };
            let (outcome, _) = target(method, uri);
            assert!(
                matches!(outcome, Err(ProxyError::MethodRefused)),
                "{method}"
            );
        }
        assert!(matches!(target("OPTIONS", "*").0, Ok(Target::Server)));
        assert!(matches!(target("OPTIONS", "/x").0, Ok(Target::Path)));
        assert!(matches!(
            target("GET", "*").0,
            Err(ProxyError::BadPath(PathError::NotAbsolute))
        ));
        let response = server_options();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::ALLOW], ALLOWED_METHODS);
    }

    #[test]
    fn a_response_with_a_session_cookie_is_private() {
        let after = |sent: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in sent {
                headers.append(header::CACHE_CONTROL, value.parse().unwrap());
            }
            keep_private(&mut headers);
            headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(after(&[]), ["private"]);
        assert_eq!(
            after(&["public, max-age=600, s-maxage=3600"]),
            ["private, max-age=600"]
        );
        assert_eq!(after(&["Public", "max-age=60"]), ["private, max-age=60"]);
        assert_eq!(after(&["no-store"]), ["no-store"]);
        assert_eq!(after(&["private, max-age=60"]), ["private, max-age=60"]);
    }

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
