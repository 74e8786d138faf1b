//! The terminal actions answered by the proxy itself: `fixed_response` and `redirect`.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::config::{FixedResponseAction, RedirectAction};

/// What ALB's `#{...}` placeholders stand for in one request.
pub struct RequestParts<'a> {
    /// `http` or `https`: how the client reached the listener.
    pub protocol: &'a str,
    /// Without the port.
    pub host: &'a str,
    /// The listener's port.
    pub port: u16,
    /// Starts with `/`.
    pub path: &'a str,
    /// Without the `?`; empty when there is none.
    pub query: &'a str,
}

pub fn fixed_response(action: &FixedResponseAction) -> Response<Body> {
    let mut response = Response::new(body::full(action.body.clone()));
    // Validated as 200..=599 when the configuration was loaded.
    *response.status_mut() = StatusCode::from_u16(action.status).unwrap_or(StatusCode::OK);
    if let Some(content_type) = &action.content_type
        && let Ok(value) = HeaderValue::from_str(content_type)
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// ALB's redirect: every field is a template over the request's parts.
pub fn redirect(action: &RedirectAction, parts: &RequestParts<'_>) -> Response<Body> {
    let location = redirect_location(action, parts);
    let status = if action.status == 301 {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::FOUND
    };
    let mut response = Response::new(body::empty());
    *response.status_mut() = status;
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        // Only reachable if a template put a control character into the URL.
        Err(_) => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    response
}

pub fn redirect_location(action: &RedirectAction, parts: &RequestParts<'_>) -> String {
    let fill = |template: &str| expand(template, parts);
    let protocol = fill(&action.protocol).to_ascii_lowercase();
    let host = fill(&action.host);
    let port = fill(&action.port);
    let path = fill(&action.path);
    let query = fill(&action.query);

    let default_port = if protocol == "https" { "443" } else { "80" };
    let mut location = format!("{protocol}://{host}");
    if !port.is_empty() && port != default_port {
        location.push(':');
        location.push_str(&port);
    }
    if !path.starts_with('/') {
        location.push('/');
    }
    location.push_str(&path);
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query);
    }
    location
}

fn expand(template: &str, parts: &RequestParts<'_>) -> String {
    if !template.contains("#{") {
        return template.to_owned();
    }
    template
        .replace("#{protocol}", parts.protocol)
        .replace("#{host}", parts.host)
        .replace("#{port}", &parts.port.to_string())
        // ALB's `#{path}` is the path without its leading slash.
        .replace(
            "#{path}",
            parts.path.strip_prefix('/').unwrap_or(parts.path),
        )
        .replace("#{query}", parts.query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(protocol: &str, host: &str, port: &str, path: &str, query: &str) -> RedirectAction {
        RedirectAction {
            protocol: protocol.into(),
            host: host.into(),
            port: port.into(),
            path: path.into(),
            query: query.into(),
            status: 301,
        }
    }

    const PARTS: RequestParts<'static> = RequestParts {
        protocol: "http",
        host: "app.example.com",
        port: 80,
        path: "/a/b",
        query: "x=1",
    };

    #[test]
    fn http_to_https_keeps_path_and_query() {
        let https = action("https", "#{host}", "443", "/#{path}", "#{query}");
        assert_eq!(
            redirect_location(&https, &PARTS),
            "https://app.example.com/a/b?x=1"
        );
    }

    #[test]
    fn every_placeholder_and_a_non_default_port() {
        let odd = action(
            "#{protocol}",
            "www.#{host}",
            "8080",
            "/new/#{path}",
            "from=#{protocol}&#{query}",
        );
        assert_eq!(
            redirect_location(&odd, &PARTS),
            "http://www.app.example.com:8080/new/a/b?from=http&x=1"
        );
    }

    #[test]
    fn empty_query_adds_no_question_mark() {
        let parts = RequestParts { query: "", ..PARTS };
        let plain = action("https", "example.org", "#{port}", "/#{path}", "#{query}");
        assert_eq!(
            redirect_location(&plain, &parts),
            "https://example.org:80/a/b"
        );
    }
}
