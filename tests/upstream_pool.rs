//! End-to-end tests of the upstream connection pool: connections are reused
//! after a body read to its end, and never when the upstream closed them, said
//! `Connection: close`, ended a body by closing, or left a body half read.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn upstream_connections_are_reused_once_each_body_is_read() {
    let upstream = upstream::start().await;
    let proxy = proxy_to(upstream.addr).await;

    for round in 0..3 {
        let echo = http1(proxy.addr(), get("app.test", &format!("/echo/{round}"))).await;
        assert_eq!(echo.json()["uri"], format!("/echo/{round}"));
        // Chunked and in several reads: released after the last chunk.
        let streamed = http1(proxy.addr(), get("app.test", "/bytes?n=300000")).await;
        assert_eq!(streamed.body.len(), 300_000);
        // No body at all: released when the server drops it unread.
        let mut head = get("app.test", "/echo");
        *head.method_mut() = http::Method::HEAD;
        let head = http1(proxy.addr(), head).await;
        assert_eq!((head.status, head.body.len()), (200, 0));
    }
    assert_eq!(
        upstream.signals.accepted(),
        1,
        "9 requests in a row, one upstream connection"
    );
}

#[tokio::test]
async fn a_body_left_half_read_closes_its_upstream_connection() {
    let upstream = upstream::start().await;
    let proxy = proxy_to(upstream.addr).await;

    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client
        .write_all(b"GET /bytes?n=50000000 HTTP/1.1\r\nhost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut some = vec![0u8; 64 * 1024];
    client.read_exact(&mut some).await.unwrap();
    drop(client);

    // Were the rest of those 50 MB taken for this request's answer, it would
    // be a 502 or garbage.
    for path in ["/after/1", "/after/2"] {
        let after = http1(proxy.addr(), get("app.test", path)).await;
        assert_eq!(after.status, 200);
        assert_eq!(after.json()["uri"], path);
    }
    assert_eq!(upstream.signals.accepted(), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    // Like Node's http server, which closes idle connections after 5 s.
    let upstream = Scripted::start(|_| Reply::KeepAliveThenClose(Duration::from_millis(50))).await;
    let proxy = proxy_to(upstream.addr).await;

    for round in 0..3 {
        assert_eq!(
            answer(&proxy).await,
            (200, "answer".into()),
            "round {round}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(upstream.accepted(), 3);
}

#[tokio::test]
async fn close_delimited_answers_are_read_whole_and_their_connections_not_reused() {
    let upstream = Scripted::start(|nth| match nth {
        0 => Reply::ConnectionClose,
        1 => Reply::UntilEof,
        _ => Reply::KeepAlive,
    })
    .await;
    let proxy = proxy_to(upstream.addr).await;

    for round in 0..4 {
        assert_eq!(
            answer(&proxy).await,
            (200, "answer".into()),
            "round {round}"
        );
    }
    assert_eq!(
        upstream.accepted(),
        3,
        "a new connection after each close, then one kept alive"
    );
}

#[tokio::test]
async fn a_garbled_upstream_answer_is_502_and_the_proxy_keeps_serving() {
    let upstream = Scripted::start(|nth| match nth {
        0 => Reply::Garbage,
        _ => Reply::KeepAlive,
    })
    .await;
    let proxy = proxy_to(upstream.addr).await;

    let garbled = http1(proxy.addr(), get("app.test", "/")).await;
    assert_eq!(garbled.status, 502);
    assert_eq!(answer(&proxy).await, (200, "answer".into()));
}

/// portcullis on a plain listener, forwarding everything to `upstream`.
async fn proxy_to(upstream: SocketAddr) -> Running {
    let rules = vec![rule("app", &[], &[], forward(upstream))];
    start(config(vec![listener(None, rules)])).await
}

/// Status and body of a `GET /` through the proxy, on a new client connection.
async fn answer(proxy: &Running) -> (u16, String) {
    let answer = http1(proxy.addr(), get("app.test", "/")).await;
    (answer.status, answer.text())
}

/// How the scripted upstream answers its n-th request (counted over all
/// connections).
#[derive(Clone, Copy)]
enum Reply {
    KeepAlive,
    /// Keep-alive, then the connection is closed after the pause.
    KeepAliveThenClose(Duration),
    /// `Connection: close` with a Content-Length, then closed.
    ConnectionClose,
    /// No Content-Length: the body ends when the connection does.
    UntilEof,
    Garbage,
}

/// A hand-written HTTP/1.1 upstream that answers bodiless requests as scripted,
/// for connection handling a full server never shows.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(script: fn(usize) -> Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, script, requests.clone()));
            }
        });
        Self { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, script: fn(usize) -> Reply, requests: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        head.clear();
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let reply = script(requests.fetch_add(1, Ordering::SeqCst));
        let written: &[u8] = match reply {
            Reply::KeepAlive | Reply::KeepAliveThenClose(_) => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nanswer"
            }
            Reply::ConnectionClose => {
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 6\r\n\r\nanswer"
            }
            Reply::UntilEof => b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nanswer",
            Reply::Garbage => b"this is not HTTP\r\n\r\n",
        };
        if stream.write_all(written).await.is_err() {
            return;
        }
        match reply {
            Reply::KeepAlive => {}
            Reply::KeepAliveThenClose(pause) => {
                tokio::time::sleep(pause).await;
                return;
            }
            Reply::ConnectionClose | Reply::UntilEof | Reply::Garbage => return,
        }
    }
}
