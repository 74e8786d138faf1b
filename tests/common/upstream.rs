//! A real HTTP/1.1 upstream server for the tests, on `127.0.0.1:0`:
//!
//! - `/ws`: WebSocket echo;
//! - `/bytes?n=N`: streams N bytes in 64 KiB chunks;
//! - `/upload`: reads the body and answers `{"received": N}`;
//! - `/slow?ms=N`: answers after N ms;
//! - `/drip?n=N&ms=M`: N small chunks, one every M ms;
//! - `/gated`: sends one chunk, then the rest only after the test opens the gate;
//! - anything else: echoes method, URI and headers as JSON (under
//!   `/app/public-cache/` with `Cache-Control: public, max-age=600`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = BoxBody<Bytes, Infallible>;

/// Signals shared between the upstream and the test.
#[derive(Default)]
pub struct Signals {
    /// Opened by the test to let `/gated` send the rest of its body.
    pub gate: Notify,
    /// Set when `/upload` has received its first chunk.
    pub first_chunk: Notify,
    /// Requests seen, as `METHOD path`.
    pub seen: Mutex<Vec<String>>,
    /// Connections accepted.
    pub accepted: AtomicUsize,
}

impl Signals {
    /// Whether a request `METHOD path` has arrived.
    pub fn saw(&self, request: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|seen| seen == request)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub signals: Arc<Signals>,
}

pub async fn start() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signals = Arc::new(Signals::default());
    let shared = signals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            let signals = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(request, signals.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr, signals }
}

/// A port with nothing listening on it, for as long as the value lives.
///
/// The port stays bound (not listening: connections to it are refused), so
/// no other socket of the test run, bound to port 0 or connecting out, is
/// given it meanwhile, as it could be if it were only bound and let go.
/// SO_REUSEADDR lets a server of the test's own listen on it later.
pub struct DeadPort {
    pub addr: SocketAddr,
    _held: tokio::net::TcpSocket,
}

pub fn dead_port() -> DeadPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    DeadPort {
        addr: socket.local_addr().unwrap(),
        _held: socket,
    }
}

fn query_number(request: &Request<Incoming>, key: &str) -> u64 {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

async fn handle(
    mut request: Request<Incoming>,
    signals: Arc<Signals>,
) -> Result<Response<Body>, Infallible> {
    signals
        .seen
        .lock()
        .unwrap()
        .push(format!("{} {}", request.method(), request.uri().path()));
    let response = match request.uri().path() {
        "/ws" => {
            let key = request.headers().get("sec-websocket-key").cloned();
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        let _ = socket.send(message).await;
                    }
                }
            });
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                key.as_ref().map(|key| key.as_bytes()).unwrap_or_default(),
            );
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(full(Bytes::new()))
                .unwrap()
        }
        "/bytes" => {
            let mut remaining = query_number(&request, "n");
            let chunks = futures_util::stream::iter(std::iter::from_fn(move || {
                if remaining == 0 {
                    return None;
                }
                let size = remaining.min(64 * 1024);
                remaining -= size;
                Some(Ok::<_, Infallible>(Frame::data(Bytes::from(
                    vec![b'x'; size as usize],
                ))))
            }));
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        "/upload" => {
            let mut body = request.into_body();
            let mut received = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    if received == 0 && !data.is_empty() {
                        signals.first_chunk.notify_one();
                    }
                    received += data.len() as u64;
                }
            }
            Response::new(full(format!("{{\"received\":{received}}}")))
        }
        "/drip" => {
            let (count, every) = (query_number(&request, "n"), query_number(&request, "ms"));
            let drops = futures_util::stream::unfold(0, move |sent| async move {
                if sent == count {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(every)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"drop;"))),
                    sent + 1,
                ))
            });
            Response::new(BodyExt::boxed(StreamBody::new(drops)))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_number(&request, "ms"))).await;
            Response::new(full("slow answer"))
        }
        "/gated" => {
            let signals = signals.clone();
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first;")))
            });
            let rest = futures_util::stream::once(async move {
                signals.gate.notified().await;
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"rest")))
            });
            Response::new(BodyExt::boxed(StreamBody::new(first.chain(rest))))
        }
        _ => {
            let mut headers = serde_json::Map::new();
            for (name, value) in request.headers() {
                let entry = headers
                    .entry(name.as_str().to_owned())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(values) = entry {
                    values.push(
                        String::from_utf8_lossy(value.as_bytes())
                            .into_owned()
                            .into(),
                    );
                }
            }
            let echo = serde_json::json!({
                "method": request.method().as_str(),
                "uri": request.uri().to_string(),
                "version": format!("{:?}", request.version()),
                "headers": headers,
            });
            let mut response = Response::builder()
                .header("content-type", "application/json")
                .header("connection", "keep-alive")
                .header("keep-alive", "timeout=5");
            // `/public-cache/...`: an answer any cache may keep.
            if request.uri().path().starts_with("/app/public-cache/") {
                response = response.header("cache-control", "public, max-age=600");
            }
            response.body(full(echo.to_string())).unwrap()
        }
    };
    Ok(response)
}
