//! The demo's upstream: a page that shows what an application behind
//! portcullis receives, the identity headers and the decoded
//! `x-amzn-oidc-data` claims.

use base64::Engine as _;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{html_escape, html_page};
use crate::body::Body;

pub async fn handle(request: Request<Incoming>) -> Response<Body> {
    let headers = request.headers();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    let identity = text("x-amzn-oidc-identity");
    let data = text("x-amzn-oidc-data");
    let (token_header, claims) = decode(data);
    let access_token = text("x-amzn-oidc-accesstoken");
    let shown_token = if access_token.len() > 16 {
        format!("{}…", &access_token[..16])
    } else {
        access_token.to_owned()
    };

    let claim_rows: String = claims
        .as_object()
        .map(|claims| {
            claims
                .iter()
                .map(|(name, value)| {
                    format!(
                        "<tr><th>{}</th><td>{}</td></tr>",
                        html_escape(name),
                        html_escape(&value.to_string())
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let header_rows: String = headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "cookie" | "x-amzn-oidc-accesstoken"))
        .map(|(name, value)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                html_escape(name.as_str()),
                html_escape(&String::from_utf8_lossy(value.as_bytes()))
            )
        })
        .collect();
    let body = format!(
        r#"<p>This page is the demo's <em>upstream application</em>. It has no login of its own: portcullis logged you in and sent these headers.</p>
<h2>Signed in as <span id="identity">{identity}</span></h2>
<p><a href="/oauth2/sign_out">Sign out</a></p>
<h2>Claims in <code>x-amzn-oidc-data</code></h2>
<table id="claims">{claim_rows}</table>
<h2>Its JWT header</h2>
<pre>{token_header}</pre>
<h2><code>x-amzn-oidc-accesstoken</code></h2>
<pre>{shown_token}</pre>
<h2>Every request header (cookies and the access token hidden)</h2>
<table>{header_rows}</table>"#,
        identity = html_escape(identity),
        token_header = html_escape(&token_header.to_string()),
        shown_token = html_escape(&shown_token),
    );
    html_page(StatusCode::OK, "portcullis demo: your application", &body)
}

/// The header and payload of an ALB-style JWT (segments padded or not).
fn decode(token: &str) -> (Value, Value) {
    let mut segments = token.split('.');
    let mut next = || {
        segments
            .next()
            .and_then(|segment| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(segment.trim_end_matches('='))
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    };
    let header = next();
    let payload = next();
    (header, payload)
}
