//! The request pipeline: one linear handler per request, in the order the
//! crate documentation lists (strip identity → owned paths → rule → action →
//! access log).

pub mod actions;
pub mod forward;
pub mod rules;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, header};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::{Rule, TerminalAction};
use crate::error::ProxyError;
use crate::identity;
use crate::metrics::{Metrics, RuleLabel};

pub use forward::{Downstream, Upstream};

/// Paths under this prefix belong to the proxy and are never forwarded (SPEC §5).
pub const OWNED_PREFIX: &str = "/oauth2/";

/// A rule with its metrics label made once, not per request.
struct Route {
    rule: Rule,
    label: RuleLabel,
}

/// Everything one listener needs to answer requests.
pub struct Proxy {
    routes: Vec<Route>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// Labels for requests that no rule answered.
    no_rule: RuleLabel,
    owned: RuleLabel,
}

/// What the access log says about one request.
struct Outcome<'a> {
    rule: &'a RuleLabel,
    upstream: Option<&'a str>,
    upstream_latency: Option<Duration>,
}

impl Proxy {
    pub fn new(rules: Vec<Rule>, upstream: Upstream, metrics: Arc<Metrics>) -> Self {
        let routes = rules
            .into_iter()
            .map(|rule| Route {
                label: RuleLabel(rule.name.as_str().into()),
                rule,
            })
            .collect();
        Self {
            routes,
            upstream,
            metrics,
            no_rule: RuleLabel("no_rule".into()),
            owned: RuleLabel("oauth2".into()),
        }
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
        let path = request.uri().path().to_owned();
        let wants_json = wants_json(&request);
        let mut outcome = Outcome {
            rule: &self.no_rule,
            upstream: None,
            upstream_latency: None,
        };

        let response = match self.route(request, downstream, &mut outcome).await {
            Ok(response) => response,
            Err(error) => {
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
            path = %path,
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            upstream = outcome.upstream.unwrap_or("-"),
        );
        response
    }

    async fn route<'a>(
        &'a self,
        request: Request<Incoming>,
        downstream: Downstream,
        outcome: &mut Outcome<'a>,
    ) -> Result<Response<Body>, ProxyError> {
        // 2. The proxy's own paths come before the rules: a rule for `/*`
        //    must never forward `/oauth2/...` upstream.
        if request.uri().path().starts_with(OWNED_PREFIX) {
            outcome.rule = &self.owned;
            return Err(ProxyError::OwnedPathNotFound);
        }

        // 3. First matching rule wins.
        let authority = request_authority(&request).ok_or(ProxyError::MissingHost)?;
        let host = rules::normalize_host(authority);
        let route = self
            .routes
            .iter()
            .find(|route| rules::rule_matches(&route.rule, &host, request.uri().path()))
            .ok_or(ProxyError::NoRuleMatched)?;
        outcome.rule = &route.label;

        // 4. The terminal action.
        match &route.rule.action {
            TerminalAction::FixedResponse(action) => Ok(actions::fixed_response(action)),
            TerminalAction::Redirect(action) => {
                let parts = actions::RequestParts {
                    protocol: downstream.protocol(),
                    host: &host,
                    port: downstream.port,
                    path: request.uri().path(),
                    query: request.uri().query().unwrap_or(""),
                };
                Ok(actions::redirect(action, &parts))
            }
            TerminalAction::Forward(action) => {
                outcome.upstream = Some(action.target.as_str());
                let (response, latency) =
                    self.upstream.forward(action, request, &downstream).await?;
                outcome.upstream_latency = Some(latency);
                Ok(response)
            }
        }
    }
}

/// The authority the client addressed: `Host` (HTTP/1.1) or `:authority` (HTTP/2).
fn request_authority<B>(request: &Request<B>) -> Option<&str> {
    match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => request
            .uri()
            .authority()
            .map(|authority| authority.as_str()),
    }
}

/// An API client (JSON wanted, HTML not) gets JSON error bodies.
fn wants_json<B>(request: &Request<B>) -> bool {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    accept.contains("json") && !accept.contains("text/html")
}
