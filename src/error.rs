//! The proxy's error kinds and the one place that turns them into responses.
//!
//! Blame decides the status: the client (4xx), the upstream (502/504), or us
//! (500). The match in [`ProxyError::status`] is exhaustive on purpose: a new
//! kind of error must be given a status by whoever adds it.

use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::AuthError;
use crate::auth::error::Blame;
use crate::body::{self, Body};

/// ALB's status for a login the IdP failed.
pub const IDP_FAILED: u16 = 561;

/// The methods the proxy forwards, for `Allow` (405 and `OPTIONS *`):
/// every method but `CONNECT` (a tunnel past the rules) and `TRACE` (it
/// would echo the identity headers back to the client).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no rule matches this request")]
    NoRuleMatched,
    #[error("the request has no usable Host")]
    MissingHost,
    #[error("the request's path is refused")]
    BadPath(#[from] crate::proxy::path::PathError),
    #[error("CONNECT and TRACE are not proxied")]
    MethodRefused,
    #[error("not found")]
    OwnedPathNotFound,
    #[error("the upstream could not be reached")]
    UpstreamConnect(#[source] body::BoxError),
    #[error("the upstream failed while answering")]
    UpstreamProtocol(#[source] hyper::Error),
    #[error("the upstream switched protocols without completing a WebSocket handshake")]
    UpstreamBadUpgrade,
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("the request could not be turned into an upstream request")]
    UpstreamRequest(#[source] http::Error),
    #[error("authentication is required")]
    Unauthenticated,
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ProxyError {
    /// How the upstream failed, for `portcullis_upstream_errors_total`:
    /// `connect`, `protocol` or `timeout`; `None` for anything else.
    pub fn upstream_failure(&self) -> Option<&'static str> {
        match self {
            ProxyError::UpstreamConnect(_) => Some("connect"),
            ProxyError::UpstreamProtocol(_) | ProxyError::UpstreamBadUpgrade => Some("protocol"),
            ProxyError::UpstreamTimeout(_) => Some("timeout"),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRuleMatched | ProxyError::OwnedPathNotFound => StatusCode::NOT_FOUND,
            ProxyError::MissingHost | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodRefused => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamBadUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamRequest(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::Auth(error) => match error.blame() {
                Blame::Client => StatusCode::UNAUTHORIZED,
                Blame::IdentityProvider => {
                    StatusCode::from_u16(IDP_FAILED).expect("561 is a valid status code")
                }
                Blame::Proxy => StatusCode::INTERNAL_SERVER_ERROR,
                Blame::SessionStore => StatusCode::SERVICE_UNAVAILABLE,
                Blame::Forbidden => StatusCode::FORBIDDEN,
            },
        }
    }

    /// ALB's `error_reason` when the failure is an authentication one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            ProxyError::Auth(error) => Some(error.reason()),
            _ => None,
        }
    }

    /// A sentence for the user; fixed text, so nothing from the request or
    /// the IdP (tokens, error strings) is ever echoed.
    fn explanation(&self) -> Option<&'static str> {
        let ProxyError::Auth(error) = self else {
            return None;
        };
        Some(match (error, error.blame()) {
            (AuthError::JwtMissing, _) => {
                "This API needs a bearer token: Authorization: Bearer <JWT>."
            }
            (AuthError::JwtInvalid(_) | AuthError::JwtKeysUnavailable(_), _) => {
                "The bearer token could not be verified."
            }
            (AuthError::JwtClaimMismatch(_), _) => {
                "The bearer token does not grant access to this resource."
            }
            (AuthError::ClaimsTooLarge { .. }, _) => {
                "Your identity claims are too large to fit in session cookies. \
                 The operator can keep sessions on the server with sessions.store: redis."
            }
            (_, Blame::Client) => "The login could not be completed. Go back and try again.",
            (_, Blame::IdentityProvider) => "The identity provider could not complete the login.",
            (_, Blame::Proxy) => "The login could not be completed because of an internal error.",
            (_, Blame::Forbidden) => {
                "You are signed in, but your account may not use this page. \
                 Ask the site's operator for access."
            }
            (_, Blame::SessionStore) => {
                "Sessions are unavailable for a moment. Try again in a few seconds."
            }
        })
    }

    /// A short page that names the status and never echoes request data.
    pub fn into_response(self, wants_json: bool) -> Response<Body> {
        let status = self.status();
        let challenge = match &self {
            ProxyError::Auth(error) => error.challenge(),
            _ => None,
        };
        // A bearer token's sender is a program, whatever its Accept says.
        let wants_json = wants_json || challenge.is_some();
        let title = match status.as_u16() {
            IDP_FAILED => "Identity Provider Error",
            _ => status.canonical_reason().unwrap_or("Error"),
        };
        let explanation = self.explanation();
        let (content_type, text) = if wants_json {
            let mut json = serde_json::json!({ "error": title, "status": status.as_u16() });
            if let Some(reason) = self.reason() {
                json["reason"] = reason.into();
            }
            if let Some(explanation) = explanation {
                json["message"] = explanation.into();
            }
            ("application/json", json.to_string())
        } else {
            let code = status.as_u16();
            let paragraph = explanation
                .map(|text| format!("<p>{text}</p>"))
                .unwrap_or_default();
            let page = format!(
                "<!doctype html>\n<html><head><title>{code} {title}</title></head>\
                 <body><h1>{code} {title}</h1>{paragraph}</body></html>\n"
            );
            ("text/html; charset=utf-8", page)
        };
        let method_refused = matches!(self, ProxyError::MethodRefused);
        let retry_soon = status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
        if method_refused {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if retry_soon {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_kind_has_its_status() {
        let timeout = std::time::Duration::from_secs(1);
        assert_eq!(ProxyError::NoRuleMatched.status(), 404);
        assert_eq!(ProxyError::OwnedPathNotFound.status(), 404);
        assert_eq!(ProxyError::MissingHost.status(), 400);
        let climbing = crate::proxy::path::PathError::AboveRoot;
        assert_eq!(ProxyError::BadPath(climbing).status(), 400);
        assert_eq!(ProxyError::MethodRefused.status(), 405);
        assert_eq!(ProxyError::UpstreamTimeout(timeout).status(), 504);
        assert_eq!(ProxyError::UpstreamBadUpgrade.status(), 502);
        let bad = http::Request::builder().uri("\u{0}").body(()).unwrap_err();
        assert_eq!(ProxyError::UpstreamRequest(bad).status(), 500);
        assert_eq!(ProxyError::Unauthenticated.status(), 401);
        assert_eq!(ProxyError::Auth(AuthError::InvalidState).status(), 401);
        assert_eq!(ProxyError::Auth(AuthError::MissingState).status(), 401);
        assert_eq!(ProxyError::Auth(AuthError::InvalidGrant).status(), 561);
        let denied = AuthError::IdpError {
            error: "access_denied".into(),
        };
        assert_eq!(ProxyError::Auth(denied).status(), 561);
        assert_eq!(
            ProxyError::Auth(AuthError::InvalidIdToken("x".into())).status(),
            561
        );
        assert_eq!(
            ProxyError::Auth(AuthError::ClaimsTooLarge { size: 1 }).status(),
            500
        );
        let discovery = AuthError::BadDiscovery("names another issuer".into());
        assert_eq!(
            ProxyError::Auth(discovery).status(),
            561,
            "an IdP that misbehaves is the IdP's fault"
        );
    }

    #[test]
    fn error_pages_never_echo_what_the_idp_sent() {
        let error = AuthError::IdpError {
            error: "<script>alert(1)</script>".into(),
        };
        let response = ProxyError::Auth(error).into_response(false);
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            response.into_body(),
        ))
        .unwrap()
        .unwrap()
        .to_bytes();
        let page = String::from_utf8_lossy(&body);
        assert!(page.contains("561"), "{page}");
        assert!(!page.contains("script"), "{page}");
    }

    #[test]
    fn claims_too_large_says_so() {
        let response =
            ProxyError::Auth(AuthError::ClaimsTooLarge { size: 20_000 }).into_response(true);
        assert_eq!(response.status(), 500);
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            response.into_body(),
        ))
        .unwrap()
        .unwrap()
        .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["reason"], "AuthClaimsSizeExceeded");
        assert!(json["message"].as_str().unwrap().contains("store: redis"));
    }

    #[test]
    fn bearer_failures_challenge_the_client_in_json() {
        use crate::auth::bearer::JwtRefusal;
        let mismatch = crate::auth::require::Mismatch {
            claim: "scope".into(),
        };
        let cases = [
            (AuthError::JwtMissing, 401, "Bearer", "JwtMissing"),
            (
                AuthError::JwtInvalid(JwtRefusal::Expired),
                401,
                r#"Bearer error="invalid_token""#,
                "JwtInvalid",
            ),
            (
                AuthError::JwtKeysUnavailable(Box::new(AuthError::BadKeys("x".into()))),
                401,
                r#"Bearer error="invalid_token""#,
                "JwtKeysUnavailable",
            ),
            (
                AuthError::JwtClaimMismatch(mismatch.clone()),
                403,
                r#"Bearer error="insufficient_scope""#,
                "AuthzClaimMismatch",
            ),
        ];
        for (error, status, challenge, reason) in cases {
            let response = ProxyError::Auth(error).into_response(false);
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], challenge);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
                response.into_body(),
            ))
            .unwrap()
            .unwrap()
            .to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["reason"], reason);
        }
        let session = ProxyError::Auth(AuthError::ClaimMismatch(mismatch)).into_response(false);
        assert_eq!(session.status(), 403);
        assert!(!session.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn json_page_for_api_clients() {
        let response = ProxyError::NoRuleMatched.into_response(true);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
