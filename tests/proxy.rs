//! End-to-end tests of the proxy core: the real server on `127.0.0.1:0` with
//! rcgen certificates, in front of a real HTTP upstream.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::config::{RedirectAction, TerminalAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn http1_and_http2_through_tls_reach_the_upstream_as_http1() {
    let upstream = upstream::start().await;
    let pki = Pki::new();
    let (files, _) = pki.issue("site", &["localhost"]);
    let rules = vec![rule("app", &[], &[], forward(upstream.addr))];
    let proxy = start(config(vec![listener(
        Some(tls_config(files, vec![])),
        rules,
    )]))
    .await;

    for (alpn, expected) in [
        (&b"http/1.1"[..], http::Version::HTTP_11),
        (b"h2", http::Version::HTTP_2),
    ] {
        let stream = tls_connect(proxy.addr(), Some("localhost"), &pki.ca_der(), &[alpn]).await;
        let request = Request::builder()
            .uri(format!(
                "https://localhost:{}/hello?x=1",
                proxy.addr().port()
            ))
            .header("host", format!("localhost:{}", proxy.addr().port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let request = if expected == http::Version::HTTP_2 {
            // HTTP/2 carries the authority in the URI, never a Host header.
            let (mut parts, body) = request.into_parts();
            parts.headers.remove("host");
            parts.version = http::Version::HTTP_2;
            Request::from_parts(parts, body)
        } else {
            request
        };
        let answer = send_tls(stream, request).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.version, expected);
        let echo = answer.json();
        assert_eq!(echo["version"], "HTTP/1.1");
        assert_eq!(echo["uri"], "/hello?x=1");
        assert_eq!(
            echo["headers"]["host"][0],
            format!("localhost:{}", proxy.addr().port())
        );
        assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
        assert_eq!(
            echo["headers"]["x-forwarded-port"][0],
            proxy.addr().port().to_string()
        );
        // The upstream's hop-by-hop headers never reach the client.
        assert!(answer.headers.get("keep-alive").is_none());
    }
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_no_sni_gets_the_default() {
    let pki = Pki::new();
    let (default_files, default_der) = pki.issue("default", &["localhost"]);
    let (a_files, a_der) = pki.issue("a", &["a.test"]);
    let (wild_files, wild_der) = pki.issue("wild", &["*.b.test"]);
    let tls = tls_config(default_files, vec![a_files, wild_files]);
    let proxy = start(config(vec![listener(
        Some(tls),
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]))
    .await;
    let ca = pki.ca_der();

    let a = tls_connect(proxy.addr(), Some("a.test"), &ca, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&a), a_der);
    let wild = tls_connect(proxy.addr(), Some("x.b.test"), &ca, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&wild), wild_der);
    let none = tls_connect(proxy.addr(), None, &ca, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&none), default_der);
    let unknown = tls_connect(proxy.addr(), Some("localhost"), &ca, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&unknown), default_der);
}

/// The suite a client offering `suites` (in that order) and `versions`
/// negotiates with `addr`.
async fn negotiated_suite(
    addr: std::net::SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    suites: &[rustls::CipherSuite],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::CipherSuite {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = suites
        .iter()
        .map(|wanted| {
            *provider
                .cipher_suites
                .iter()
                .find(|suite| suite.suite() == *wanted)
                .unwrap()
        })
        .collect();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), stream)
        .await
        .unwrap();
    tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
}

#[tokio::test]
async fn the_server_prefers_aes_128_gcm_whatever_the_clients_order() {
    use rustls::CipherSuite::*;
    use rustls::version::{TLS12, TLS13};

    let pki = Pki::new();
    let (files, _) = pki.issue("site", &["localhost"]);
    let proxy = start(config(vec![listener(
        Some(tls_config(files, vec![])),
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]))
    .await;
    let ca = pki.ca_der();

    // rustls' own client, like OpenSSL's, lists AES-256-GCM first.
    let defaults: Vec<_> = rustls::crypto::aws_lc_rs::default_provider()
        .cipher_suites
        .iter()
        .map(|suite| suite.suite())
        .collect();
    assert_eq!(defaults[0], TLS13_AES_256_GCM_SHA384);
    let tls13 = [
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_128_GCM_SHA256,
    ];
    let tls12 = [
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    for (offered, version, chosen) in [
        (&tls13[..], &TLS13, TLS13_AES_128_GCM_SHA256),
        (&tls12[..], &TLS12, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ] {
        assert_eq!(
            negotiated_suite(proxy.addr(), &ca, offered, &[version]).await,
            chosen
        );
    }
    // Every suite is still offered: a client with only another one gets it.
    for only in [TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256] {
        assert_eq!(
            negotiated_suite(proxy.addr(), &ca, &[only], &[&TLS13]).await,
            only
        );
    }
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections_while_open_ones_keep_working() {
    let pki = Pki::new();
    let (files, old_der) = pki.issue("site", &["localhost"]);
    let rules = vec![rule("ok", &[], &[], fixed(200, "ok"))];
    let proxy = start(config(vec![listener(
        Some(tls_config(files.clone(), vec![])),
        rules,
    )]))
    .await;
    let ca = pki.ca_der();

    // An HTTP/1.1 keep-alive connection opened before the renewal.
    let open = tls_connect(proxy.addr(), Some("localhost"), &ca, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&open), old_der);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(open))
        .await
        .unwrap();
    tokio::spawn(connection);
    let first = read_answer(sender.send_request(get("localhost", "/")).await.unwrap()).await;
    assert_eq!(first.status, 200);

    let (certificate, key, new_der) = pki.issue_pem(&["localhost"]);
    // Key first, then certificate, as a renewal tool might: the half-written
    // state (mismatched pair) must be skipped, not served.
    write(&files.private_key_file, &key);
    write(&files.certificate_file, &certificate);

    let renewed = eventually(Duration::from_secs(10), || async {
        let stream = tls_connect(proxy.addr(), Some("localhost"), &ca, &[b"http/1.1"]).await;
        peer_leaf(&stream) == new_der
    })
    .await;
    assert!(renewed, "the renewed certificate was never served");

    let second = read_answer(sender.send_request(get("localhost", "/")).await.unwrap()).await;
    assert_eq!(
        second.status, 200,
        "the connection opened before the renewal still works"
    );
}

#[tokio::test]
async fn a_broken_renewal_keeps_the_old_certificate() {
    let pki = Pki::new();
    let (files, old_der) = pki.issue("site", &["localhost"]);
    let rules = vec![rule("ok", &[], &[], fixed(200, "ok"))];
    let proxy = start(config(vec![listener(
        Some(tls_config(files.clone(), vec![])),
        rules,
    )]))
    .await;
    write(
        &files.certificate_file,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_millis(600)).await; // three reload intervals
    let stream = tls_connect(
        proxy.addr(),
        Some("localhost"),
        &pki.ca_der(),
        &[b"http/1.1"],
    )
    .await;
    assert_eq!(peer_leaf(&stream), old_der);
}

#[tokio::test]
async fn rules_match_host_and_path_first_match_wins() {
    let upstream = upstream::start().await;
    let rules = vec![
        rule("api", &["api.example.com"], &["/v1/*"], fixed(200, "api")),
        rule("wild", &["*.example.org"], &[], fixed(200, "wild")),
        rule("static", &[], &["/static/??/*"], fixed(200, "static")),
        rule("exact", &[], &["/exact"], fixed(200, "exact")),
        rule("app", &["app.example.com"], &[], forward(upstream.addr)),
    ];
    let proxy = start(config(vec![listener(None, rules)])).await;
    let addr = proxy.addr();
    let cases = [
        ("api.example.com", "/v1/users", 200, "api"),
        ("API.Example.COM:8443", "/v1/users?q=/x", 200, "api"),
        ("api.example.com", "/V1/users", 404, ""),
        ("a.b.example.org", "/anything", 200, "wild"),
        ("example.org", "/anything", 404, ""),
        ("other.test", "/static/v1/app.css", 200, "static"),
        ("other.test", "/static/v12/app.css", 404, ""),
        // The query never takes part in path matching.
        ("other.test", "/exact?then=/static/v1/x", 200, "exact"),
        ("other.test", "/exact/more", 404, ""),
    ];
    for (host, path, status, body) in cases {
        let answer = http1(addr, get(host, path)).await;
        assert_eq!(answer.status, status, "{host}{path}");
        if status == 200 {
            assert_eq!(answer.text(), body, "{host}{path}");
        }
    }
    let forwarded = http1(addr, get("APP.example.com", "/deep/path?k=v")).await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(forwarded.json()["uri"], "/deep/path?k=v");
}

#[tokio::test]
async fn fixed_response_and_redirect_actions() {
    let redirect = TerminalAction::Redirect(RedirectAction {
        protocol: "https".into(),
        host: "#{host}".into(),
        port: "443".into(),
        path: "/new/#{path}".into(),
        query: "#{query}&from=#{protocol}".into(),
        status: 301,
    });
    let found = TerminalAction::Redirect(RedirectAction {
        protocol: "#{protocol}".into(),
        host: "www.example.com".into(),
        port: "#{port}".into(),
        path: "/".into(),
        query: "".into(),
        status: 302,
    });
    let rules = vec![
        rule("teapot", &[], &["/tea"], fixed(418, "short and stout")),
        rule("moved", &[], &["/old/*"], redirect),
        rule("found", &[], &[], found),
    ];
    let proxy = start(config(vec![listener(None, rules)])).await;

    let tea = http1(proxy.addr(), get("app.test", "/tea")).await;
    assert_eq!(tea.status, 418);
    assert_eq!(tea.headers["content-type"], "text/plain");
    assert_eq!(tea.text(), "short and stout");

    let moved = http1(proxy.addr(), get("App.Test:9000", "/old/page?id=7")).await;
    assert_eq!(moved.status, 301);
    assert_eq!(
        moved.headers["location"],
        "https://app.test/new/old/page?id=7&from=http"
    );

    let found = http1(proxy.addr(), get("app.test", "/x")).await;
    assert_eq!(found.status, 302);
    let port = proxy.addr().port();
    assert_eq!(
        found.headers["location"],
        format!("http://www.example.com:{port}/")
    );
}

#[tokio::test]
async fn fifty_megabytes_stream_up_and_down() {
    let upstream = upstream::start().await;
    let proxy = start(config(vec![listener(
        None,
        vec![rule("app", &[], &[], forward(upstream.addr))],
    )]))
    .await;
    const SIZE: u64 = 50 * 1024 * 1024;

    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);

    let download = sender
        .send_request(get("app.test", &format!("/bytes?n={SIZE}")))
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut body = download.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame
            .unwrap()
            .data_ref()
            .map_or(0, |data| data.len() as u64);
    }
    assert_eq!(received, SIZE);

    let (mut body_tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 1024 * 1024]);
        for _ in 0..50 {
            body_tx.send_data(chunk.clone()).await.unwrap();
        }
    });
    let upload = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "app.test")
        .body(body)
        .unwrap();
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let answer = read_answer(sender.send_request(upload).await.unwrap()).await;
    assert_eq!(answer.json()["received"], SIZE);
}

#[tokio::test]
async fn bodies_are_streamed_not_buffered() {
    let upstream = upstream::start().await;
    let proxy = start(config(vec![listener(
        None,
        vec![rule("app", &[], &[], forward(upstream.addr))],
    )]))
    .await;

    // Download: the first chunk reaches the client while the upstream still holds the rest.
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(get("app.test", "/gated"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    upstream.signals.gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "rest");

    // Upload: the upstream sees the first chunk while the client still holds the rest.
    let (mut body_tx, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    let request = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "app.test")
        .body(body)
        .unwrap();
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let pending =
        tokio::spawn(async move { read_answer(sender.send_request(request).await.unwrap()).await });
    body_tx
        .send_data(Bytes::from_static(b"first"))
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        upstream.signals.first_chunk.notified(),
    )
    .await
    .expect("the upstream receives the first chunk before the upload ends");
    body_tx
        .send_data(Bytes::from_static(b"-rest"))
        .await
        .unwrap();
    drop(body_tx);
    assert_eq!(pending.await.unwrap().json()["received"], 10);
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let upstream = upstream::start().await;
    let proxy = start(config(vec![listener(
        None,
        vec![rule("app", &[], &[], forward(upstream.addr))],
    )]))
    .await;
    let url = format!("ws://{}/ws", proxy.addr());
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "portcullis"] {
        socket.send(text.into()).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
}

#[tokio::test]
async fn dead_upstream_is_502_silent_upstream_is_504_and_the_proxy_keeps_serving() {
    let upstream = upstream::start().await;
    let dead_port = upstream::dead_port();
    let rules = vec![
        rule("dead", &[], &["/dead"], forward(dead_port.addr)),
        rule(
            "silent",
            &[],
            &["/slow"],
            forward_with_timeout(upstream.addr, Duration::from_millis(300)),
        ),
        rule("app", &[], &[], forward(upstream.addr)),
    ];
    let proxy = start(config(vec![listener(None, rules)])).await;

    let dead = http1(proxy.addr(), get("app.test", "/dead")).await;
    assert_eq!(dead.status, 502);
    assert!(dead.text().contains("502 Bad Gateway"));
    // On a new upstream connection, then on a pooled one left by a rule with
    // the default (longer) timeout: the shorter deadline still holds.
    let silent = http1(proxy.addr(), get("app.test", "/slow?ms=5000")).await;
    assert_eq!(silent.status, 504);
    assert_eq!(http1(proxy.addr(), get("app.test", "/")).await.status, 200);
    let started = std::time::Instant::now();
    let silent = http1(proxy.addr(), get("app.test", "/slow?ms=5000")).await;
    assert_eq!(silent.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "504 after {:?}",
        started.elapsed()
    );
    let json = Request::builder()
        .uri("/dead")
        .header("host", "app.test")
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let json = http1(proxy.addr(), json).await;
    assert_eq!(json.json()["status"], 502);

    let alive = http1(proxy.addr(), get("app.test", "/still-here")).await;
    assert_eq!(alive.status, 200);
}

#[tokio::test]
async fn client_identity_and_forwarding_claims_never_reach_the_upstream() {
    let upstream = upstream::start().await;
    // The test's client is on the loopback, trusted by default: here no
    // peer is a trusted proxy.
    let mut untrusting = listener(None, vec![rule("app", &[], &[], forward(upstream.addr))]);
    untrusting.trusted_proxies = Vec::new();
    let proxy = start(config(vec![untrusting])).await;
    let request = Request::builder()
        .uri("/whoami")
        .header("host", "app.test")
        .header("X-Amzn-Oidc-Identity", "admin")
        .header("x-amzn-oidc-data", "forged.jwt.value")
        .header("X-AMZN-OIDC-ACCESSTOKEN", "stolen")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("connection", "x-secret-hop")
        .header("x-secret-hop", "drop me")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = http1(proxy.addr(), request).await;
    let headers = &answer.json()["headers"];
    let names: Vec<&String> = headers.as_object().unwrap().keys().collect();
    assert!(
        names.iter().all(|name| !name.starts_with("x-amzn-oidc-")),
        "spoofed identity reached the upstream: {names:?}"
    );
    assert!(headers.get("x-secret-hop").is_none());
    assert_eq!(headers["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"][0], "http");
    assert_eq!(headers["x-forwarded-host"][0], "app.test");
}

#[tokio::test]
async fn a_trusted_front_proxy_says_which_scheme_and_port_the_browser_used() {
    let upstream = upstream::start().await;
    let proxy = start(config(vec![listener(
        None,
        vec![rule("app", &[], &[], forward(upstream.addr))],
    )]))
    .await;
    let request = Request::builder()
        .uri("/whoami")
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = http1(proxy.addr(), request).await;
    let headers = &answer.json()["headers"];
    assert_eq!(headers["x-forwarded-proto"][0], "https");
    assert_eq!(headers["x-forwarded-port"][0], "443");
    assert_eq!(headers["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-host"][0], "app.test");
}

#[tokio::test]
async fn owned_paths_are_never_forwarded() {
    let upstream = upstream::start().await;
    let proxy = start(config(vec![listener(
        None,
        vec![rule("app", &[], &["/*"], forward(upstream.addr))],
    )]))
    .await;
    let answer = http1(proxy.addr(), get("app.test", "/oauth2/anything")).await;
    assert_eq!(answer.status, 404);
    assert!(upstream.signals.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn metrics_count_requests_by_rule_and_code_and_probes_answer() {
    let upstream = upstream::start().await;
    let rules = vec![
        rule("health", &[], &["/ping"], fixed(200, "ok")),
        rule("app", &["app.test"], &[], forward(upstream.addr)),
    ];
    let proxy = start(config(vec![listener(None, rules)])).await;
    let admin = proxy.admin.unwrap();
    for _ in 0..3 {
        http1(proxy.addr(), get("x.test", "/ping")).await;
    }
    http1(proxy.addr(), get("app.test", "/a")).await;
    http1(proxy.addr(), get("nowhere.test", "/a")).await;

    let metrics = admin_get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(r#"portcullis_requests_total{rule="health",code="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"portcullis_requests_total{rule="app",code="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"portcullis_requests_total{rule="no_rule",code="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("portcullis_upstream_latency_seconds_count 1"),
        "{text}"
    );
    assert_eq!(admin_get(admin, "/healthz").await.status, 200);
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);
    // The admin endpoints are never served on the public listener.
    assert_eq!(
        http1(proxy.addr(), get("app.test", "/metrics"))
            .await
            .json()["uri"],
        "/metrics"
    );
}

#[tokio::test]
async fn oversized_headers_get_431_and_slow_headers_are_cut_off() {
    let mut config = config(vec![listener(
        None,
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]);
    config.limits.max_header_bytes = 16 * 1024;
    config.limits.header_read_timeout = Duration::from_secs(1);
    let proxy = start(config).await;

    let big = Request::builder()
        .uri("/")
        .header("host", "app.test")
        .header("x-big", "a".repeat(32 * 1024))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let answer = sender.send_request(big).await.unwrap();
    assert_eq!(answer.status(), 431);

    // Slowloris: half a request head, then nothing. The proxy hangs up.
    let mut slow = half_a_head(proxy.addr()).await;
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the connection was not closed");
}

#[tokio::test]
async fn an_http2_connection_that_never_completes_a_request_is_cut_off() {
    // hyper's HTTP/2 server has no header timeout: bytes that keep moving
    // (PINGs here, or a head trickled a frame at a time) kept the connection
    // open for as long as the client liked.
    let mut config = config(vec![listener(
        None,
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]);
    config.limits.header_read_timeout = Duration::from_millis(600);
    config.limits.idle_timeout = Duration::from_secs(60);
    let proxy = start(config).await;
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The prior-knowledge preface and an empty SETTINGS frame.
    writer
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let pinging = tokio::spawn(async move {
        loop {
            let ping = b"\0\0\x08\x06\0\0\0\0\0pingping";
            if writer.write_all(ping).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut received)).await;
    pinging.abort();
    assert!(
        closed.is_ok(),
        "still open after {:?} of PINGs and no request",
        started.elapsed()
    );
    // A GOAWAY (frame type 7) said why.
    assert!(
        received
            .windows(4)
            .any(|window| window[3] == 0x07 && window[..3] == [0, 0, 8]),
        "no GOAWAY in {} bytes",
        received.len()
    );
}

#[tokio::test]
async fn an_http2_response_may_stream_for_longer_than_the_header_timeout() {
    // A response still streaming is a request in flight: the head timeout
    // above must not cut it (server-sent events, long downloads).
    let upstream = upstream::start().await;
    let mut config = config(vec![listener(
        None,
        vec![rule("up", &[], &[], forward(upstream.addr))],
    )]);
    config.limits.header_read_timeout = Duration::from_millis(600);
    let proxy = start(config).await;
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(format!("http://{}/drip?n=20&ms=100", proxy.addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = read_answer(sender.send_request(request).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "drop;".repeat(20), "the stream was cut");
}

/// A plain connection that has sent half a request head, and will send no more.
async fn half_a_head(addr: std::net::SocketAddr) -> TcpStream {
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .unwrap();
    slow
}

#[tokio::test]
async fn a_half_head_is_cut_off_when_the_idle_timeout_comes_first() {
    // With idle_timeout shorter than header_read_timeout, the idle check asks
    // hyper to close first. hyper does not close a connection that is reading
    // a head at that point: it goes on reading, and its header timer must
    // still cut the connection off.
    let mut config = config(vec![listener(
        None,
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]);
    config.limits.idle_timeout = Duration::from_millis(200);
    config.limits.header_read_timeout = Duration::from_millis(600);
    let proxy = start(config).await;
    let mut slow = half_a_head(proxy.addr()).await;
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut buffer)).await;
    assert!(
        closed.is_ok(),
        "half a head was still open after {:?}",
        started.elapsed()
    );
    assert!(buffer.is_empty(), "an answer to half a head");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_are_not() {
    let mut config = config(vec![listener(
        None,
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]);
    config.limits.idle_timeout = Duration::from_secs(1);
    let proxy = start(config).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    // Three idle timeouts of traffic, a request every 150 ms, on one connection.
    for _ in 0..20 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        let mut response = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut response))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            response[..read].starts_with(b"HTTP/1.1 200"),
            "closed while in use"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Then quiet: closed within 1.25 idle timeouts (plus slack), nothing more sent.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
}

/// Sends `request` on `stream` and reads one response; `None` if the
/// connection closed instead.
async fn exchange<S>(stream: &mut S, request: &[u8]) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await.ok()?;
    let mut response = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut response))
        .await
        .expect("an answer or a close")
        .ok()?;
    (read > 0).then(|| String::from_utf8_lossy(&response[..read]).into_owned())
}

/// A proxy on a TLS listener answering 200 to every request, with a short
/// header_read_timeout: quiet keep-alive connections are parked after
/// 75–150 ms.
async fn quick_parking_proxy() -> (Running, Pki) {
    let pki = Pki::new();
    let (files, _) = pki.issue("site", &["localhost"]);
    let mut config = config(vec![
        listener(None, vec![rule("ok", &[], &[], fixed(200, "ok"))]),
        listener(
            Some(tls_config(files, vec![])),
            vec![rule("ok", &[], &[], fixed(200, "ok"))],
        ),
    ]);
    // Long enough that a stall of the test machine is not a stalled head:
    // checks come every 250 ms, so a quiet connection is parked within 500.
    config.limits.header_read_timeout = Duration::from_secs(1);
    config.limits.idle_timeout = Duration::from_secs(8);
    (start(config).await, pki)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n";

/// A TLS connection (ALPN http/1.1) to the proxy's second listener, its TLS one.
async fn http1_over_tls(proxy: &Running, pki: &Pki) -> tokio_rustls::client::TlsStream<TcpStream> {
    tls_connect(
        proxy.addrs[1],
        Some("localhost"),
        &pki.ca_der(),
        &[b"http/1.1"],
    )
    .await
}

#[tokio::test]
async fn a_keep_alive_connection_may_idle_longer_than_the_header_read_timeout() {
    // header_read_timeout bounds a request head once it starts, not the wait
    // for the next request: that is idle_timeout's job. Over the quiet
    // seconds, the connection is parked and picked up again.
    let (proxy, pki) = quick_parking_proxy().await;
    // A new connection is not parked before its first request (hyper is
    // waiting for a head): one quiet for a check still gets keep-alive.
    let mut late = http1_over_tls(&proxy, &pki).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = exchange(&mut late, GET).await.expect("an answer");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let mut plain = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    let mut tls = http1_over_tls(&proxy, &pki).await;
    for pause in [
        Duration::ZERO,
        Duration::from_millis(2500),
        Duration::from_millis(1500),
    ] {
        tokio::time::sleep(pause).await;
        for (name, answer) in [
            ("plain", exchange(&mut plain, GET).await),
            ("TLS", exchange(&mut tls, GET).await),
        ] {
            let answer = answer.unwrap_or_else(|| panic!("{name}: closed after {pause:?} idle"));
            assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
            assert!(
                !answer.to_ascii_lowercase().contains("connection: close"),
                "{name}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn an_unread_body_is_never_taken_for_the_next_request() {
    // The proxy answers before reading the body. The client pauses past the
    // point where a quiet connection is parked, then sends the rest of the
    // body: a request of its own. It must never be served as one.
    let (proxy, _pki) = quick_parking_proxy().await;
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let body_length = 10 + smuggled.len();
    let mut stream = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: {body_length}\r\n\r\n0123456789"
    );
    let first = exchange(&mut stream, head.as_bytes())
        .await
        .expect("an answer");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stream.write_all(smuggled).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("HTTP/1.1"),
        "the body was served as a request: {rest}"
    );
    assert!(closed.is_ok(), "the connection stayed open");
}

#[tokio::test]
async fn a_head_dribbled_onto_a_kept_alive_connection_is_still_cut_off() {
    // Slowloris on a kept-alive connection: after a first request, the next
    // head arrives a byte every 600 ms, so the connection is parked holding
    // part of it (a quiet check comes every 250 ms). Parking must not restart
    // the head's clock: the connection is closed within about
    // header_read_timeout and a quarter (1.25 s), not after the whole head
    // (over 40 s) or idle_timeout (8 s).
    let (proxy, pki) = quick_parking_proxy().await;
    let mut stream = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    assert!(exchange(&mut stream, GET).await.is_some());
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(600), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("an answer to half a head"),
            Err(_still_open) => {}
        }
    }
    let elapsed = started.elapsed();
    assert!(closed, "a head dribbled for {elapsed:?} was not cut off");
    assert!(
        elapsed < Duration::from_secs(3),
        "cut off only after {elapsed:?}"
    );

    // A new connection is not parked before its first request: one that
    // sends nothing is closed after header_read_timeout, not idle_timeout.
    let mut silent = http1_over_tls(&proxy, &pki).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a silent new connection was kept past header_read_timeout"
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_on_a_plain_listener() {
    let proxy = start(config(vec![listener(
        None,
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]))
    .await;
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = get("app.test", "http://app.test/");
    request.headers_mut().remove("host");
    *request.version_mut() = http::Version::HTTP_2;
    let answer = read_answer(sender.send_request(request).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.version, http::Version::HTTP_2);
}

#[tokio::test]
async fn connection_limit_holds_excess_clients_back() {
    let mut config = config(vec![listener(
        None,
        vec![rule("ok", &[], &[], fixed(200, "ok"))],
    )]);
    config.limits.max_connections = Some(1);
    let proxy = start(config).await;

    let first = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut first_sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(first))
        .await
        .unwrap();
    tokio::spawn(connection);
    assert_eq!(
        read_answer(first_sender.send_request(get("a", "/")).await.unwrap())
            .await
            .status,
        200
    );

    // The second connection completes in the kernel but is not served while the first is open.
    let second = tokio::spawn(http1(proxy.addr(), get("a", "/")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "a second connection was served beyond the limit"
    );
    drop(first_sender);
    let answer = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn graceful_stop_lets_an_in_flight_request_finish() {
    let upstream = upstream::start().await;
    let proxy = start(config(vec![listener(
        None,
        vec![rule("app", &[], &[], forward(upstream.addr))],
    )]))
    .await;
    let addr = proxy.addr();
    let slow = tokio::spawn(http1(addr, get("app.test", "/slow?ms=700")));
    // Wait until the upstream has the request, then stop.
    assert!(
        eventually(Duration::from_secs(5), || async {
            !upstream.signals.seen.lock().unwrap().is_empty()
        })
        .await
    );
    proxy.stop().await;
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "slow answer");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn several_listeners_each_with_their_own_rules() {
    let pki = Pki::new();
    let (files, _) = pki.issue("site", &["localhost"]);
    let proxy = start(config(vec![
        listener(
            None,
            vec![rule("plain", &[], &[], fixed(200, "plain listener"))],
        ),
        listener(
            Some(tls_config(files, vec![])),
            vec![rule("tls", &[], &[], fixed(200, "tls listener"))],
        ),
    ]))
    .await;
    assert_eq!(proxy.addrs.len(), 2);
    let plain = http1(proxy.addrs[0], get("a.test", "/")).await;
    assert_eq!(plain.text(), "plain listener");
    let stream = http1_over_tls(&proxy, &pki).await;
    let tls = send_tls(stream, get("localhost", "/")).await;
    assert_eq!(tls.text(), "tls listener");
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.text();
    assert!(
        metrics.contains(r#"portcullis_requests_total{rule="plain",code="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"portcullis_requests_total{rule="tls",code="200"} 1"#),
        "{metrics}"
    );
}

/// Reads one HTTP/1.1 response with a `Content-Length` body: (head, body).
async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> (String, Vec<u8>) {
    use tokio::io::AsyncBufReadExt;
    let mut head = String::new();
    loop {
        let before = head.len();
        let read = reader.read_line(&mut head).await.expect("a response line");
        assert!(read > 0, "closed mid-response: {head}");
        if head[before..] == *"\r\n" {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("a length"))
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.expect("the body");
    (head, body)
}

#[tokio::test]
async fn big_pipelined_requests_over_tls_arrive_whole_and_in_order() {
    // Requests spanning several TLS records are read ahead of what rustls
    // asks for (src/server/read_ahead.rs). Two of them, written in one go,
    // must reach the upstream whole and in order, and the connection must
    // still serve after it was parked.
    let upstream = upstream::start().await;
    let pki = Pki::new();
    let (files, _) = pki.issue("site", &["localhost"]);
    let mut config = config(vec![listener(
        Some(tls_config(files, vec![])),
        vec![rule("app", &[], &[], forward(upstream.addr))],
    )]);
    config.limits.header_read_timeout = Duration::from_secs(1);
    let proxy = start(config).await;
    let tls = tls_connect(
        proxy.addr(),
        Some("localhost"),
        &pki.ca_der(),
        &[b"http/1.1"],
    )
    .await;
    let (read, mut write) = tokio::io::split(tls);
    let mut read = tokio::io::BufReader::new(read);

    let big = |n: usize, seed: u8| -> String {
        (0..n)
            .map(|i| char::from(b'a' + (i as u8).wrapping_add(seed) % 26))
            .collect()
    };
    let (first, second) = (big(20_000, 0), big(30_000, 7));
    let body = vec![b'x'; 100_000];
    let mut requests = format!(
        "GET /echo HTTP/1.1\r\nHost: app.test\r\nX-Big: {first}\r\n\r\n\
         POST /upload HTTP/1.1\r\nHost: app.test\r\nX-Big: {second}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    requests.extend_from_slice(&body);
    write.write_all(&requests).await.unwrap();

    let (head, echo) = read_response(&mut read).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: serde_json::Value = serde_json::from_slice(&echo).expect("the echo is JSON");
    assert_eq!(echo["uri"], "/echo");
    assert!(
        echo["headers"]["x-big"][0] == first.as_str(),
        "the first X-Big differs"
    );
    let (head, upload) = read_response(&mut read).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(String::from_utf8_lossy(&upload), r#"{"received":100000}"#);

    // Parked after a quiet check (250–500 ms), then woken by the next request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = big(40_000, 3);
    write
        .write_all(
            format!("GET /again HTTP/1.1\r\nHost: app.test\r\nX-Big: {third}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let (head, echo) = read_response(&mut read).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: serde_json::Value = serde_json::from_slice(&echo).expect("the echo is JSON");
    assert!(
        echo["headers"]["x-big"][0] == third.as_str(),
        "the third X-Big differs"
    );
}
