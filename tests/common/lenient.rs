//! A lenient upstream: an HTTP/1.1 server that reads requests the way the
//! most forgiving application servers do, so a test can show that no trick
//! reaches a protected path or passes a forged identity through the proxy.
//!
//! - the path is resolved as Python, Node, Tomcat and IIS would: `%2e`,
//!   `%2f`, `%5c` and a second level of escapes decoded, `\` read as `/`,
//!   `;params` dropped from each segment (Tomcat), `//` merged and dot
//!   segments removed;
//! - `X-Original-URL` / `X-Rewrite-URL` replace the path (IIS, Symfony);
//! - headers are read CGI- and PHP-style (`HTTP_X_AMZN_OIDC_IDENTITY`): `-`,
//!   `_` and `.` are one character, case is ignored, every value is kept;
//! - `Upgrade: h2c` is accepted with `101`, and so is a WebSocket handshake
//!   to `…/fake101` (without `Sec-WebSocket-Accept`); the connection then
//!   becomes a tunnel that answers any request in it as the admin area.
//!
//! Every request is answered 200 with JSON: the request target exactly as
//! it arrived, the resolved path, its `area` (`admin`, `public`, `app` or
//! `other`) and the CGI view of the identity.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the upstream made of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request target as it arrived, path and query, before any resolving.
    pub target: String,
    pub resolved: String,
    pub area: &'static str,
    /// Every value of `HTTP_X_AMZN_OIDC_IDENTITY`, in arrival order.
    pub identity: Vec<String>,
    /// The CGI variables, each with every value.
    pub cgi: BTreeMap<String, Vec<String>>,
}

pub struct Lenient {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests answered inside an `h2c` tunnel: each one skipped the proxy.
    pub tunnelled: Arc<Mutex<Vec<String>>>,
}

impl Lenient {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn tunnelled(&self) -> Vec<String> {
        self.tunnelled.lock().unwrap().clone()
    }
}

pub async fn start() -> Lenient {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let tunnelled: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen_by_server, tunnelled_by_server) = (seen.clone(), tunnelled.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen_by_server.clone();
            let tunnelled = tunnelled_by_server.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let seen = seen.clone();
                    let tunnelled = tunnelled.clone();
                    async move { Ok::<_, Infallible>(answer(request, &seen, &tunnelled)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Lenient {
        addr,
        seen,
        tunnelled,
    }
}

fn answer(
    mut request: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    tunnelled: &Arc<Mutex<Vec<String>>>,
) -> Response<Full<Bytes>> {
    let cgi = cgi_view(&request);
    let override_path = ["HTTP_X_ORIGINAL_URL", "HTTP_X_REWRITE_URL"]
        .iter()
        .find_map(|name| cgi.get(*name).and_then(|values| values.first().cloned()));
    let raw = override_path.unwrap_or_else(|| request.uri().path().to_owned());
    let resolved = resolve(&raw);
    let area = area(&resolved);
    let identity = cgi
        .get("HTTP_X_AMZN_OIDC_IDENTITY")
        .cloned()
        .unwrap_or_default();
    let target = request.uri().to_string();
    seen.lock().unwrap().push(Seen {
        target: target.clone(),
        resolved: resolved.clone(),
        area,
        identity: identity.clone(),
        cgi: cgi.clone(),
    });

    let upgrade = |protocol: &str| {
        cgi.get("HTTP_UPGRADE")
            .is_some_and(|values| values.iter().any(|value| value.contains(protocol)))
    };
    // `/…/fake101`: a status-reflecting endpoint that says 101 to a
    // WebSocket handshake without completing it (no Sec-WebSocket-Accept).
    let fake_websocket = upgrade("websocket") && resolved.ends_with("/fake101");
    if upgrade("h2c") || fake_websocket {
        let upgrade = hyper::upgrade::on(&mut request);
        let tunnelled = tunnelled.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            serve_tunnel(TokioIo::new(upgraded), &tunnelled).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", if fake_websocket { "websocket" } else { "h2c" })
            .body(Full::default())
            .unwrap();
    }

    let body = json!({
        "target": target,
        "resolved": resolved,
        "area": area,
        "identity": identity,
        "cgi": cgi,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Inside an `h2c` tunnel: whatever request line arrives is answered as the
/// admin area, with no identity; the proxy never sees it.
async fn serve_tunnel<IO>(mut io: IO, tunnelled: &Mutex<Vec<String>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 4096];
    // Nothing, when the proxy closed the connection instead of splicing it.
    let Ok(read @ 1..) = io.read(&mut buffer).await else {
        return;
    };
    let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
    let line = head.lines().next().unwrap_or_default().to_owned();
    tunnelled.lock().unwrap().push(line);
    let body = r#"{"area":"admin","via":"h2c tunnel"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.flush().await;
}

/// Headers as CGI variables: `HTTP_` + upper case with `-` read as `_`.
fn cgi_view<B>(request: &Request<B>) -> BTreeMap<String, Vec<String>> {
    let mut cgi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in request.headers() {
        // CGI turns `-` into `_`; PHP also `.` and other punctuation.
        let folded: String = name
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let variable = format!("HTTP_{folded}");
        cgi.entry(variable)
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    cgi
}

/// The path as the most lenient servers resolve it.
pub fn resolve(raw: &str) -> String {
    let mut decoded = raw.to_owned();
    // Double decoding, as IIS once did: `%252e` → `%2e` → `.`.
    for _ in 0..2 {
        decoded = percent_encoding::percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .into_owned();
    }
    let decoded = decoded.replace('\\', "/");
    let mut output: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        // Tomcat drops path parameters before it resolves dot segments.
        let name = segment.split(';').next().unwrap_or_default();
        match name {
            "" | "." => {}
            ".." => {
                output.pop();
            }
            name => output.push(name),
        }
    }
    format!("/{}", output.join("/"))
}

fn area(resolved: &str) -> &'static str {
    let first = resolved.trim_start_matches('/').split('/').next();
    match first {
        Some("admin") => "admin",
        Some("public") => "public",
        Some("app") => "app",
        Some("oauth2") => "oauth2",
        _ => "other",
    }
}

/// The JSON an upstream answer carried, when it came from this upstream.
pub fn parse(body: &str) -> Option<Value> {
    serde_json::from_str(body).ok()
}
