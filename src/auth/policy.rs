//! Telling a browser navigation from an API call, and a CORS preflight from
//! a real request: the two questions the unauthenticated policy asks.

use http::header::{self, HeaderName};
use http::{Method, Request};

// Looked up on every request (for an error's format): as `HeaderName`s, not
// strings a lookup would parse first.
const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// A top-level browser navigation can follow a redirect to the IdP; anything
/// else (XHR, fetch, a JSON client, a POST) would only see a useless 302.
pub fn is_navigation<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    let method_ok = request.method() == Method::GET || request.method() == Method::HEAD;
    let xhr =
        text(X_REQUESTED_WITH).is_some_and(|value| value.eq_ignore_ascii_case("XMLHttpRequest"));
    let fetch_mode_ok =
        text(SEC_FETCH_MODE).is_none_or(|mode| mode.eq_ignore_ascii_case("navigate"));
    let accept = text(header::ACCEPT).unwrap_or("");
    let wants_json_only = accept.contains("json") && !accept.contains("text/html");
    method_ok && !xhr && fetch_mode_ok && !wants_json_only
}

/// `OPTIONS` with `Access-Control-Request-Method`: browsers never send
/// cookies on a preflight, so it can never carry a session.
pub fn is_cors_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn navigations() {
        assert!(is_navigation(&request("GET", &[])));
        assert!(is_navigation(&request(
            "GET",
            &[("accept", "text/html,application/json;q=0.9")]
        )));
        assert!(is_navigation(&request(
            "HEAD",
            &[("sec-fetch-mode", "navigate")]
        )));
        assert!(is_navigation(&request("GET", &[("accept", "*/*")])));
    }

    #[test]
    fn api_calls() {
        assert!(!is_navigation(&request("POST", &[])));
        assert!(!is_navigation(&request(
            "GET",
            &[("x-requested-with", "XMLHttpRequest")]
        )));
        assert!(!is_navigation(&request(
            "GET",
            &[("sec-fetch-mode", "cors")]
        )));
        assert!(!is_navigation(&request(
            "GET",
            &[("accept", "application/json")]
        )));
    }

    #[test]
    fn preflights() {
        assert!(is_cors_preflight(&request(
            "OPTIONS",
            &[("access-control-request-method", "PUT")]
        )));
        assert!(!is_cors_preflight(&request("OPTIONS", &[])));
        assert!(!is_cors_preflight(&request(
            "GET",
            &[("access-control-request-method", "PUT")]
        )));
    }
}
