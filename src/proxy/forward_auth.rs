//! `/oauth2/auth`: forward auth, for a front proxy that asks before it
//! passes a request on (nginx `auth_request`, Traefik `ForwardAuth`, Caddy
//! `forward_auth`, Envoy `ext_authz`, ingress-nginx `auth-url`).
//!
//! The listener's rules are evaluated against the original request, rebuilt
//! from what a trusted front proxy says ([`Forwarded`]); from anyone else,
//! against the check request itself. The rule's authentication and
//! authorization run as for a proxied request, with the cookies and
//! `Authorization` of the check request; its terminal action never does.
//!
//! - allowed: 200 (Envoy takes nothing else as success) with the identity
//!   headers, the `claim_headers` and a refreshed session's `Set-Cookie`;
//! - no session: 401, or with `?mode=redirect` the redirect to the IdP a
//!   navigation would get (for front proxies that relay the answer);
//! - `require` not met: 403; the IdP failing: 561.
//!
//! Envoy's `path_prefix: /oauth2/auth` sends `/oauth2/auth/<original path>`:
//! the rest of the path is the original request's, and so is the query.
//!
//! A check about a path under `/oauth2/` (a browser calling `/oauth2/auth`
//! itself, through a front proxy that routes `/oauth2/` here) says whether
//! the request may pass, never who it is: a script on the application's
//! origin must not read the session's access token from it.

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use super::forwarded::Forwarded;
use super::{OWNED_PREFIX, Outcome, Proxy, path, request_authority, rules};
use crate::auth::session::RequestCookies;
use crate::auth::{Decision, RequestContext};
use crate::body::{self, Body};
use crate::error::ProxyError;

const CHECK_PATH: &str = "/oauth2/auth";

/// Whether a canonical path is a forward-auth check.
pub fn is_check(path: &str) -> bool {
    path.strip_prefix(CHECK_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The request a check is about.
struct Original {
    method: Method,
    /// Canonical path and query.
    uri: Uri,
    /// As the browser addressed it, port included.
    authority: String,
    tls: bool,
    client: std::net::IpAddr,
    /// Answer "no session" with the IdP redirect rather than 401.
    redirect: bool,
}

impl Original {
    fn of(
        request: &Request<Incoming>,
        downstream: &super::Downstream,
        forwarded: Option<&Forwarded>,
    ) -> Result<Self, ProxyError> {
        let own = request.uri();
        let suffix = own.path().strip_prefix(CHECK_PATH).unwrap_or_default();
        let told = forwarded.and_then(|forwarded| forwarded.uri.as_deref());
        let (target, redirect) = match (told, suffix) {
            (Some(uri), _) => (uri.to_owned(), wants_redirect(own.query())),
            // Envoy: the original path after the prefix, its query as sent.
            (None, suffix) if !suffix.is_empty() => {
                let query = own.query().map(|query| format!("?{query}"));
                (format!("{suffix}{}", query.unwrap_or_default()), false)
            }
            // Nothing trusted said otherwise: the check is about itself.
            (None, _) => (
                own.path_and_query()
                    .map_or(CHECK_PATH, |pq| pq.as_str())
                    .to_owned(),
                wants_redirect(own.query()),
            ),
        };
        let (raw_path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target.as_str(), None),
        };
        let canonical = path::canonicalize(raw_path)?;
        let uri = match query {
            Some(query) => format!("{canonical}?{query}"),
            None => canonical.into_owned(),
        };
        let uri = Uri::try_from(uri).map_err(|_| path::PathError::Unrepresentable)?;
        let authority = match forwarded.and_then(|forwarded| forwarded.host.as_deref()) {
            Some(host) => host.to_owned(),
            None => request_authority(request)
                .ok_or(ProxyError::MissingHost)?
                .to_owned(),
        };
        Ok(Self {
            method: forwarded
                .and_then(|forwarded| forwarded.method.clone())
                .unwrap_or_else(|| request.method().clone()),
            uri,
            authority,
            tls: forwarded
                .and_then(|forwarded| forwarded.tls)
                .unwrap_or(downstream.tls),
            client: forwarded
                .and_then(|forwarded| forwarded.client)
                .unwrap_or_else(|| downstream.client.ip()),
            redirect,
        })
    }
}

/// `mode=redirect` in the check's own query.
fn wants_redirect(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(name, value)| name == "mode" && value == "redirect")
}

impl Proxy {
    /// Answers a forward-auth check: the rule the original request reaches,
    /// its authentication and authorization, and no terminal action.
    pub(super) async fn check<'a>(
        &'a self,
        mut request: Request<Incoming>,
        downstream: &super::Downstream,
        forwarded: Option<&Forwarded>,
        outcome: &mut Outcome<'a>,
    ) -> Result<Response<Body>, ProxyError> {
        let original = Original::of(&request, downstream, forwarded)?;
        let host = rules::normalize_host(&original.authority);
        let facts = rules::RequestFacts {
            host: &host,
            path: original.uri.path(),
            method: &original.method,
            headers: request.headers(),
            query: original.uri.query(),
            peer: original.client,
        };
        let route = self.first_match(&facts)?;
        outcome.rule = &route.label;

        let mut answer = Response::new(body::empty());
        answer
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(bearer) = &route.bearer {
            bearer.validate(request.headers()).await?;
        }
        if let Some(authenticator) = &route.authenticator {
            // The authenticator sees the original request: its method and
            // target, with the check's headers (cookies, Accept, Sec-Fetch-*).
            *request.method_mut() = original.method.clone();
            *request.uri_mut() = original.uri.clone();
            let asked = request;
            let cookies = RequestCookies::parse(asked.headers());
            let context = RequestContext {
                authority: &original.authority,
                tls: original.tls,
                cookies: &cookies,
                may_redirect: original.redirect,
            };
            let decision = Box::pin(authenticator.authenticate(&asked, &context)).await?;
            match decision {
                Decision::Authenticated(identity) => {
                    authenticator.authorize(&identity)?;
                    if !path::is_owned(original.uri.path(), OWNED_PREFIX) {
                        identity.apply(answer.headers_mut());
                    }
                    for cookie in identity.set_cookies {
                        answer.headers_mut().append(header::SET_COOKIE, cookie);
                    }
                }
                Decision::Anonymous => {}
                Decision::Login(redirect) => return Ok(redirect),
                Decision::Unauthenticated => return Err(ProxyError::Unauthenticated),
            }
        }
        *answer.status_mut() = StatusCode::OK;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_check_path_and_paths_below_it_are_checks() {
        for check in ["/oauth2/auth", "/oauth2/auth/", "/oauth2/auth/app/x"] {
            assert!(is_check(check), "{check}");
        }
        for other in [
            "/oauth2/authx",
            "/oauth2/auth-redirect",
            "/oauth2/",
            "/auth",
        ] {
            assert!(!is_check(other), "{other}");
        }
    }

    #[test]
    fn only_mode_redirect_asks_for_the_redirect() {
        assert!(wants_redirect(Some("mode=redirect")));
        assert!(wants_redirect(Some("x=1&mode=redirect")));
        assert!(!wants_redirect(Some("mode=redirectx")));
        assert!(!wants_redirect(None));
    }
}
