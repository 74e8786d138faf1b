//! The demo's upstream: a page that shows what an application behind
//! portcullis receives, the identity headers and the decoded
//! `x-amzn-oidc-data` claims, and how to verify that header in an app.

use base64::Engine as _;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::Body;
use crate::dev_http::{html_escape, html_page};

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
    // The proxy's own origin as the browser used it, for the key URLs.
    let origin = format!(
        "{}://{}",
        match text("x-forwarded-proto") {
            "" => "https",
            proto => proto,
        },
        text("host")
    );
    let snippets = verify_snippets(&origin, &token_header);
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
<pre id="jwt-header">{token_header}</pre>
{snippets}
<h2><code>x-amzn-oidc-accesstoken</code></h2>
<pre>{shown_token}</pre>
<h2>Every request header (cookies and the access token hidden)</h2>
<table>{header_rows}</table>"#,
        identity = html_escape(identity),
        token_header =
            html_escape(&serde_json::to_string_pretty(&token_header).unwrap_or_default()),
        shown_token = html_escape(&shown_token),
    );
    html_page(StatusCode::OK, "portcullis demo: your application", &body)
}

/// "Verify this header in your app": aws-jwt-verify (JavaScript) and PyJWT
/// (Python), filled in with this proxy's key URLs and the signer, issuer and
/// client the token's header names, as they would be in an application.
fn verify_snippets(origin: &str, token_header: &Value) -> String {
    let field = |name: &str| token_header[name].as_str().unwrap_or("").to_owned();
    let (signer, issuer, client) = (field("signer"), field("iss"), field("client"));
    let certificate = super::certificate_dir().join("tls.crt");
    let certificate = certificate.display();
    let javascript = format!(
        r#"// npm install aws-jwt-verify
// Run with NODE_EXTRA_CA_CERTS={certificate} (the demo's self-signed certificate).
import {{ AlbJwtVerifier }} from "aws-jwt-verify";

// Fetches the key from {origin}/oauth2/public-keys/{{kid}}.
const verifier = AlbJwtVerifier.create({{
  albArn: "{signer}",
  issuer: "{issuer}",
  clientId: "{client}",
  jwksUri: "{origin}/oauth2/public-keys",
}});

// In a request handler:
const claims = await verifier.verify(request.headers["x-amzn-oidc-data"]);"#
    );
    let python = format!(
        r#"# pip install "pyjwt[crypto]" requests
import jwt, requests

PROXY = "{origin}"
SIGNER = "{signer}"
CERTIFICATE = "{certificate}"  # the demo's self-signed certificate

# In a request handler:
token = request.headers["x-amzn-oidc-data"]
header = jwt.get_unverified_header(token)
if header["signer"] != SIGNER:
    raise PermissionError("not signed by this proxy")
key_url = f"{{PROXY}}/oauth2/public-keys/{{header['kid']}}"
public_key = requests.get(key_url, verify=CERTIFICATE).text
claims = jwt.decode(token, public_key, algorithms=["ES256"])

# Any JOSE library can use the JWKS instead: {origin}/oauth2/jwks.json"#
    );
    format!(
        r#"<h2>Verify this header in your app</h2>
<p>Never trust <code>x-amzn-oidc-*</code> headers from anyone but the proxy: check the signature with the proxy's public key.</p>
<h3>JavaScript (aws-jwt-verify)</h3>
<pre id="verify-js">{}</pre>
<h3>Python (PyJWT)</h3>
<pre id="verify-python">{}</pre>"#,
        html_escape(&javascript),
        html_escape(&python)
    )
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
