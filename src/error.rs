//! The proxy's error kinds and the one place that turns them into responses.
//!
//! Blame decides the status: the client (4xx), the upstream (502/504), or us
//! (500). The match in [`ProxyError::status`] is exhaustive on purpose: a new
//! kind of error must be given a status by whoever adds it.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no rule matches this request")]
    NoRuleMatched,
    #[error("the request has no usable Host")]
    MissingHost,
    #[error("not found")]
    OwnedPathNotFound,
    #[error("the upstream could not be reached")]
    UpstreamConnect(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream failed while answering")]
    UpstreamProtocol(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("the request could not be turned into an upstream request")]
    UpstreamRequest(#[source] http::Error),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRuleMatched | ProxyError::OwnedPathNotFound => StatusCode::NOT_FOUND,
            ProxyError::MissingHost => StatusCode::BAD_REQUEST,
            ProxyError::UpstreamConnect(_) | ProxyError::UpstreamProtocol(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamRequest(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short page that names the status and never echoes request data.
    pub fn into_response(self, wants_json: bool) -> Response<Body> {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        let (content_type, text) = if wants_json {
            let json = serde_json::json!({ "error": reason, "status": status.as_u16() });
            ("application/json", json.to_string())
        } else {
            let code = status.as_u16();
            let page = format!(
                "<!doctype html>\n<html><head><title>{code} {reason}</title></head>\
                 <body><h1>{code} {reason}</h1></body></html>\n"
            );
            ("text/html; charset=utf-8", page)
        };
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
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
        assert_eq!(ProxyError::UpstreamTimeout(timeout).status(), 504);
        let bad = http::Request::builder().uri("\u{0}").body(()).unwrap_err();
        assert_eq!(ProxyError::UpstreamRequest(bad).status(), 500);
    }

    #[test]
    fn json_page_for_api_clients() {
        let response = ProxyError::NoRuleMatched.into_response(true);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
