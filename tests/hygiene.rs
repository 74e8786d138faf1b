//! Request hygiene end to end: against a real OpenID provider and a lenient
//! upstream that resolves paths and reads headers the way forgiving
//! application servers do (tests/common/lenient.rs), no path trick reaches
//! a protected path and no forged identity reaches the application, over
//! HTTP/1.1 and HTTP/2.
//!
//! The listener has three rules, the most common shape: `blocked` (a host
//! rule answering 403), `/public/*` forwarded without login, and everything
//! else behind `authenticate_oidc`. Some tests run it with
//! `allow_underscore_headers: true`, where only the look-alike checks stand
//! between a forged `x_amzn_oidc_identity` and the upstream.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::idp::NodeIdp;
use common::lenient::{self, Lenient};
use common::*;
use http::Request;
use http_body_util::Full;
use portcullis::config::XForwardedFor;
use portcullis::internals::Clock;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
const SIGNER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";

/// Path spellings that lenient upstreams resolve to `/admin/x` (or to the
/// proxy's own `/oauth2/` paths) while naively matching `/public/*`.
const PATH_TRICKS: &[&str] = &[
    "/public/../admin/x",
    "/public/%2e%2e/admin/x",
    "/public/%2E%2E/admin/x",
    "/public/.%2e/admin/x",
    "/public/%2E%2E%2Fadmin/x",
    "/public/..;/admin/x",
    "/public/..;jsessionid=1/admin/x",
    "/public/..%5Cadmin/x",
    "/public/..%5cadmin/x",
    "/public/%252e%252e/admin/x",
    "/public/%25%32%65%25%32%65/admin/x",
    "/public/..%3B/admin/x",
    "/public//../admin/x",
    "/public/./../admin/x",
    "/public/x/../../admin/x",
    "/public/../../admin/x",
];

struct Stack {
    _idp: NodeIdp,
    tls: TlsStack,
    lenient: Lenient,
}

async fn stack() -> Stack {
    stack_with("").await
}

/// [`stack`] with more keys for its listener (`allow_underscore_headers: true`).
async fn stack_with(listener: &str) -> Stack {
    let idp = NodeIdp::start(json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": ["https://localhost:0/oauth2/idpresponse"],
        }],
    }))
    .await;
    let lenient = lenient::start().await;
    let target = lenient.addr;
    let issuer = idp.issuer.clone();
    let vars = [("CLIENT_SECRET", CLIENT_SECRET)];
    let tls = TlsStack::start_listener(SIGNER, &vars, Clock::system(), listener, |_| {
        format!(
            r#"      - name: blocked
        conditions: {{ host: ["blocked.example"] }}
        actions:
          - fixed_response: {{ status: 403, body: "blocked host" }}
      - name: public
        conditions: {{ path: ["/public/*"] }}
        actions:
          - forward: {{ target: "http://{target}" }}
      - name: app
        actions:
          - authenticate_oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret: "${{CLIENT_SECRET}}"
              scope: openid email profile
          - forward: {{ target: "http://{target}" }}"#
        )
    })
    .await;
    Stack {
        _idp: idp,
        tls,
        lenient,
    }
}

/// What came back for one request.
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    /// The lenient upstream's JSON, when the answer came from it.
    fn upstream(&self) -> Option<Value> {
        lenient::parse(&self.body).filter(|value| value.get("area").is_some())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Wire {
    Http1,
    Http2,
}

impl Stack {
    fn addr(&self) -> SocketAddr {
        self.tls.proxy.addr()
    }

    /// Sends the request target exactly as given: HTTP/1.1 as raw bytes
    /// (no client library normalises it), HTTP/2 as the `:path` of a hyper
    /// request (hyper sends it as it is).
    async fn send(
        &self,
        wire: Wire,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        match wire {
            Wire::Http1 => self.raw_http1(method, target, headers).await,
            Wire::Http2 => {
                let stream = tls_connect(
                    self.addr(),
                    Some("localhost"),
                    &self.tls.pki.ca_der(),
                    &[b"h2"],
                )
                .await;
                let mut request = Request::builder()
                    .method(method)
                    .uri(format!("https://{}{target}", self.tls.host()));
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let answer = send_tls(stream, request.body(Full::new(Bytes::new())).unwrap()).await;
                assert_eq!(answer.version, http::Version::HTTP_2);
                Reply {
                    status: answer.status,
                    headers: answer.headers.clone(),
                    body: answer.text(),
                }
            }
        }
    }

    async fn raw_http1(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        let mut stream = tls_connect(
            self.addr(),
            Some("localhost"),
            &self.tls.pki.ca_der(),
            &[b"http/1.1"],
        )
        .await;
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("host: {}\r\n", self.tls.host()));
        }
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("connection"))
        {
            head.push_str("connection: close\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        read_http1(&mut stream).await
    }
}

/// Reads one HTTP/1.1 response (content-length or read to close).
async fn read_http1<IO: tokio::io::AsyncRead + Unpin>(stream: &mut IO) -> Reply {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let (head_end, content_length) = loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("an answer within 10 s")
                .unwrap_or(0);
        if read == 0 {
            break (
                bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|at| at + 4),
                None,
            );
        }
        bytes.extend_from_slice(&buffer[..read]);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse::<usize>().unwrap());
            let status: u16 = head[9..12].parse().unwrap();
            if status == 101 || length.is_some_and(|length| bytes.len() >= at + 4 + length) {
                break (Some(at + 4), length);
            }
        }
    };
    let head_end = head_end.expect("a complete response head");
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status: u16 = head[9..12].parse().unwrap();
    let mut headers = http::HeaderMap::new();
    for line in head.lines().skip(1).filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    let end = content_length.map_or(bytes.len(), |length| head_end + length);
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes[head_end..end.min(bytes.len())]).into_owned(),
    }
}

/// No request the upstream saw was for the admin area, or the proxy's own
/// paths, without an identity the proxy verified.
fn assert_nothing_reached_admin_anonymously(lenient: &Lenient) {
    for seen in lenient.seen() {
        assert!(
            !(matches!(seen.area, "admin" | "oauth2") && seen.identity.is_empty()),
            "the upstream served {} with no login: {seen:?}",
            seen.resolved
        );
    }
    assert!(lenient.tunnelled().is_empty(), "{:?}", lenient.tunnelled());
}

#[test]
fn the_lenient_upstream_resolves_every_trick_to_the_admin_area() {
    // Without the proxy's canonical path, each trick would be served as
    // /admin/x by this upstream: that is what makes the tests below real.
    for trick in PATH_TRICKS {
        assert_eq!(lenient::resolve(trick), "/admin/x", "{trick}");
    }
}

#[tokio::test]
async fn path_tricks_never_reach_a_protected_path() {
    let stack = stack().await;
    for wire in [Wire::Http1, Wire::Http2] {
        for trick in PATH_TRICKS {
            let reply = stack
                .send(wire, "GET", trick, &[("accept", "text/html")])
                .await;
            // Refused (400), or matched by the authenticated rule and sent
            // to log in (302), never answered by the upstream.
            assert!(
                matches!(reply.status, 400 | 302),
                "{wire:?} {trick}: {} {}",
                reply.status,
                reply.body
            );
            if reply.status == 302 {
                let location = reply.headers["location"].to_str().unwrap();
                assert!(location.contains("/auth?"), "{trick}: {location}");
            }
        }
        // The proxy's own paths, however spelled, are never forwarded.
        for owned in ["/x/../oauth2/sign_out", "/public/%2e%2e/oauth2/sign_out"] {
            let reply = stack.send(wire, "GET", owned, &[]).await;
            assert_eq!(reply.status, 302, "{wire:?} {owned}: {}", reply.body);
            assert!(reply.upstream().is_none(), "{owned} was forwarded");
        }
        let reply = stack.send(wire, "GET", "/oauth2;x/anything", &[]).await;
        assert_eq!(reply.status, 404, "{wire:?}: {}", reply.body);
    }
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

/// Spellings that end on the public rule, and the request target the
/// upstream must receive for each: the canonical path (configuration.md,
/// "Canonical paths"), the query as sent.
const CANONICAL_TARGETS: &[(&str, &str)] = &[
    ("/admin/..;/public/x", "/public/x"),
    (
        "/public/a/./b/../%63ss//x.css?q=/../admin",
        "/public/a/css/x.css?q=/../admin",
    ),
    (
        "/x/%2e%2e/public/%7euser/caf%c3%a9",
        "/public/~user/caf%C3%A9",
    ),
    ("//public///y/.?a=%2e%2e&b=//", "/public/y/?a=%2e%2e&b=//"),
];

#[tokio::test]
async fn the_upstream_receives_the_canonical_target() {
    let stack = stack().await;
    for wire in [Wire::Http1, Wire::Http2] {
        for (sent, canonical) in CANONICAL_TARGETS {
            let reply = stack.send(wire, "GET", sent, &[]).await;
            assert_eq!(reply.status, 200, "{wire:?} {sent}: {}", reply.body);
            // The target as the upstream read it off the wire: a server
            // that resolves paths itself must have nothing left to resolve.
            let upstream = reply.upstream().unwrap();
            assert_eq!(upstream["target"], *canonical, "{wire:?} {sent}");
            assert_eq!(upstream["area"], "public", "{wire:?} {sent}");
        }
    }
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

#[tokio::test]
async fn a_raw_backslash_or_nul_is_refused() {
    let stack = stack().await;
    for target in ["/public/..\\admin/x", "/public\\..\\admin\\x"] {
        let reply = stack.raw_http1("GET", target, &[]).await;
        assert_eq!(reply.status, 400, "{target}: {}", reply.body);
    }
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

/// Identity headers and their look-alikes, as a client would forge them.
const FORGED: &[(&str, &str)] = &[
    ("x_amzn_oidc_identity", "admin"),
    ("X.Amzn.Oidc.Identity", "admin"),
    ("X_Amzn_Oidc_Data", "forged.jwt.value"),
    ("x-amzn_oidc-accesstoken", "forged-token"),
    ("x-amzn-oidc-identity", "admin"),
    ("x_custom_user", "admin"),
];

#[tokio::test]
async fn forged_identities_never_reach_the_upstream_on_a_public_rule() {
    let stack = stack().await;
    for wire in [Wire::Http1, Wire::Http2] {
        let reply = stack.send(wire, "GET", "/public/x", FORGED).await;
        assert_eq!(reply.status, 200, "{wire:?}: {}", reply.body);
        let upstream = reply.upstream().unwrap();
        let cgi = upstream["cgi"].as_object().unwrap();
        for variable in cgi.keys() {
            assert!(
                !variable.starts_with("HTTP_X_AMZN_OIDC_") && variable != "HTTP_X_CUSTOM_USER",
                "{wire:?}: {variable} reached the upstream: {cgi:?}"
            );
        }
    }
}

/// Look-alikes of the forwarding headers the proxy sets, and of a routing
/// override: CGI reads each as the proxy's own (`HTTP_X_FORWARDED_PROTO`).
const FORGED_FORWARDING: &[(&str, &str)] = &[
    ("x_forwarded_for", "10.6.6.6"),
    ("X_Forwarded_Proto", "http"),
    ("x_forwarded_port", "1"),
    ("x-forwarded_host", "admin.internal"),
    ("x_original_url", "/admin/x"),
];

#[tokio::test]
async fn look_alikes_never_reach_the_upstream_where_underscores_are_allowed() {
    // Names with `_` reach the upstream on this listener, so nothing but the
    // look-alike checks keeps the forged names below from it.
    let stack = stack_with("allow_underscore_headers: true").await;
    let mut browser = stack.tls.browser();
    stack.tls.login(&mut browser, "/app/home").await;
    let cookie = browser.cookie_header_for("localhost");
    let port = stack.addr().port().to_string();
    for wire in [Wire::Http1, Wire::Http2] {
        for (path, session) in [("/public/x", None), ("/app/whoami", Some(cookie.as_str()))] {
            let mut sent = [FORGED, FORGED_FORWARDING].concat();
            sent.extend(session.map(|cookie| ("cookie", cookie)));
            let reply = stack.send(wire, "GET", path, &sent).await;
            let at = format!("{wire:?} {path}");
            assert_eq!(reply.status, 200, "{at}: {}", reply.body);
            let upstream = reply.upstream().unwrap();
            let cgi = upstream["cgi"].as_object().unwrap();
            // The policy is in effect: an ordinary name with `_` arrives.
            assert_eq!(cgi["HTTP_X_CUSTOM_USER"], json!(["admin"]), "{at}");
            // Only the proxy's identity headers, and only after a login.
            let identity: Vec<&String> = cgi
                .keys()
                .filter(|variable| variable.starts_with("HTTP_X_AMZN_OIDC_"))
                .collect();
            if session.is_none() {
                assert!(identity.is_empty(), "{at}: {cgi:?}");
                continue;
            }
            assert_eq!(
                identity,
                [
                    "HTTP_X_AMZN_OIDC_ACCESSTOKEN",
                    "HTTP_X_AMZN_OIDC_DATA",
                    "HTTP_X_AMZN_OIDC_IDENTITY"
                ],
                "{at}"
            );
            assert_eq!(upstream["identity"], json!(["alice"]), "{at}");
            for (variable, forged) in [
                ("HTTP_X_AMZN_OIDC_DATA", "forged.jwt.value"),
                ("HTTP_X_AMZN_OIDC_ACCESSTOKEN", "forged-token"),
            ] {
                let values = cgi[variable].as_array().unwrap();
                assert_eq!(values.len(), 1, "{at}: {variable} {values:?}");
                assert_ne!(values[0], forged, "{at}: {variable}");
            }
        }
    }
    // The forwarding headers are the proxy's alone, and the override's
    // look-alike did not move any request to /admin.
    for seen in stack.lenient.seen() {
        let cgi = |variable: &str| seen.cgi.get(variable).cloned().unwrap_or_default();
        assert_eq!(cgi("HTTP_X_FORWARDED_FOR"), ["127.0.0.1"], "{seen:?}");
        assert_eq!(cgi("HTTP_X_FORWARDED_PROTO"), ["https"], "{seen:?}");
        assert_eq!(cgi("HTTP_X_FORWARDED_PORT"), [port.as_str()], "{seen:?}");
        assert_eq!(cgi("HTTP_X_FORWARDED_HOST"), [stack.tls.host()], "{seen:?}");
        assert!(cgi("HTTP_X_ORIGINAL_URL").is_empty(), "{seen:?}");
        assert_ne!(seen.area, "admin", "{seen:?}");
    }
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

#[tokio::test]
async fn x_forwarded_for_is_appended_preserved_or_removed_per_listener() {
    let lenient = lenient::start().await;
    let modes = [
        XForwardedFor::Append,
        XForwardedFor::Preserve,
        XForwardedFor::Remove,
    ];
    let listeners = modes
        .iter()
        .map(|&mode| {
            let all = rule("all", &[], &[], forward(lenient.addr));
            let mut plain = listener(None, vec![all]);
            plain.headers.x_forwarded_for = mode;
            plain
        })
        .collect();
    let proxy = start(config(listeners)).await;
    const CHAIN: &str = "203.0.113.9, 198.51.100.7";
    // What the upstream receives, with the forged chain and without one.
    let expected: [(Option<&str>, Option<&str>); 3] = [
        (
            Some("203.0.113.9, 198.51.100.7, 127.0.0.1"),
            Some("127.0.0.1"),
        ),
        (Some(CHAIN), None),
        (None, None),
    ];
    for ((addr, mode), (with_chain, without)) in proxy.addrs.iter().zip(modes).zip(expected) {
        for (chain, wanted) in [(Some(CHAIN), with_chain), (None, without)] {
            let mut request = Request::get("/public/x").header("host", "app.test");
            if let Some(chain) = chain {
                request = request.header("x-forwarded-for", chain);
            }
            let answer = http1(*addr, request.body(Full::new(Bytes::new())).unwrap()).await;
            assert_eq!(answer.status, 200, "{mode:?}: {}", answer.text());
            let received = &answer.json()["cgi"]["HTTP_X_FORWARDED_FOR"];
            let wanted = wanted.map_or(Value::Null, |value| json!([value]));
            assert_eq!(*received, wanted, "{mode:?}, client sent {chain:?}");
        }
    }
}

#[tokio::test]
async fn connection_cannot_delete_the_proxys_identity_headers() {
    let stack = stack().await;
    let mut browser = stack.tls.browser();
    stack.tls.login(&mut browser, "/app/home").await;
    let cookie = browser.cookie_header_for("localhost");

    // HTTP/1.1: the low-privilege user names the proxy's headers in
    // `Connection` and adds a look-alike claiming to be admin.
    let mut attack = vec![
        (
            "connection",
            "close, x-amzn-oidc-identity, x-amzn-oidc-data, x-amzn-oidc-accesstoken",
        ),
        ("cookie", cookie.as_str()),
    ];
    attack.extend_from_slice(FORGED);
    let reply = stack.send(Wire::Http1, "GET", "/app/whoami", &attack).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let upstream = reply.upstream().unwrap();
    assert_eq!(upstream["identity"], json!(["alice"]), "{upstream}");
    let cgi = upstream["cgi"].as_object().unwrap();
    assert_eq!(cgi["HTTP_X_AMZN_OIDC_DATA"].as_array().unwrap().len(), 1);
    assert_ne!(cgi["HTTP_X_AMZN_OIDC_DATA"][0], "forged.jwt.value");
    assert_eq!(
        cgi["HTTP_X_AMZN_OIDC_ACCESSTOKEN"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_ne!(cgi["HTTP_X_AMZN_OIDC_ACCESSTOKEN"][0], "forged-token");

    // HTTP/2 has no `Connection`; the look-alikes alone must not arrive.
    let mut forged = vec![("cookie", cookie.as_str())];
    forged.extend_from_slice(FORGED);
    let reply = stack.send(Wire::Http2, "GET", "/app/whoami", &forged).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.upstream().unwrap()["identity"], json!(["alice"]));
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let stack = stack().await;
    let mut stream = tls_connect(
        stack.addr(),
        Some("localhost"),
        &stack.tls.pki.ca_der(),
        &[b"http/1.1"],
    )
    .await;
    let head = format!(
        "GET /public/x HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade, HTTP2-Settings\r\n\
         upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        stack.tls.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_http1(&mut stream).await;
    assert_eq!(reply.status, 200, "h2c must not switch: {}", reply.body);
    let cgi = reply.upstream().unwrap()["cgi"].clone();
    assert!(cgi.get("HTTP_UPGRADE").is_none(), "{cgi}");
    assert!(cgi.get("HTTP_HTTP2_SETTINGS").is_none(), "{cgi}");
    // Had the proxy tunnelled, this request would skip every rule.
    let smuggled = format!(
        "GET /admin/x HTTP/1.1\r\nhost: {}\r\n\r\n",
        stack.tls.host()
    );
    let _ = stream.write_all(smuggled.as_bytes()).await;
    let reply = read_http1(&mut stream).await;
    assert_ne!(reply.status, 200, "{}", reply.body);
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

#[tokio::test]
async fn a_101_that_does_not_complete_the_websocket_handshake_is_502() {
    let stack = stack().await;
    let mut stream = tls_connect(
        stack.addr(),
        Some("localhost"),
        &stack.tls.pki.ca_der(),
        &[b"http/1.1"],
    )
    .await;
    let head = format!(
        "GET /public/fake101 HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-version: 13\r\n\r\n",
        stack.tls.host()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_http1(&mut stream).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    // Had the proxy spliced, this would reach the upstream unfiltered.
    let smuggled = format!(
        "GET /admin/x HTTP/1.1\r\nhost: {}\r\nx-amzn-oidc-identity: admin\r\n\r\n",
        stack.tls.host()
    );
    let _ = stream.write_all(smuggled.as_bytes()).await;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        read_http1_or_close(&mut stream),
    )
    .await;
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

/// Reads whatever comes back until the connection closes.
async fn read_http1_or_close<IO: tokio::io::AsyncRead + Unpin>(stream: &mut IO) {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn connect_and_trace_are_refused_and_options_star_is_answered() {
    let stack = stack().await;
    let reply = stack
        .raw_http1(
            "CONNECT",
            "internal.example:443",
            &[("host", "internal.example:443")],
        )
        .await;
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert!(reply.headers.contains_key("allow"));
    for wire in [Wire::Http1, Wire::Http2] {
        let reply = stack.send(wire, "TRACE", "/public/x", &[]).await;
        assert_eq!(reply.status, 405, "{wire:?}: {}", reply.body);
    }
    let reply = stack.raw_http1("OPTIONS", "*", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers["allow"].to_str().unwrap().contains("GET"));
    assert!(
        stack.lenient.seen().is_empty(),
        "{:?}",
        stack.lenient.seen()
    );
}

#[tokio::test]
async fn routing_overrides_and_forwarding_claims_are_removed() {
    let stack = stack().await;
    for wire in [Wire::Http1, Wire::Http2] {
        let reply = stack
            .send(
                wire,
                "GET",
                "/public/x",
                &[
                    ("x-original-url", "/admin/x"),
                    ("x-rewrite-url", "/admin/x"),
                    ("x-script-name", "/public"),
                    ("x-original-uri", "/admin/x"),
                    ("x-forwarded-uri", "/admin/x"),
                    ("true-client-ip", "10.0.0.1"),
                    ("x-forwarded-prefix", "/admin"),
                    ("x-real-ip", "10.0.0.1"),
                    ("forwarded", "for=10.0.0.1;host=admin.internal"),
                    ("x-forwarded-host", "admin.internal"),
                    // httpoxy: CGI would hand the app HTTP_PROXY.
                    ("proxy", "http://attacker.example:8080"),
                ],
            )
            .await;
        assert_eq!(reply.status, 200, "{wire:?}: {}", reply.body);
        let upstream = reply.upstream().unwrap();
        assert_eq!(upstream["area"], "public", "{wire:?}: {upstream}");
        let cgi = &upstream["cgi"];
        for gone in [
            "HTTP_X_ORIGINAL_URL",
            "HTTP_X_REWRITE_URL",
            "HTTP_X_SCRIPT_NAME",
            "HTTP_X_ORIGINAL_URI",
            "HTTP_X_FORWARDED_URI",
            "HTTP_TRUE_CLIENT_IP",
            "HTTP_X_FORWARDED_PREFIX",
            "HTTP_X_REAL_IP",
            "HTTP_FORWARDED",
            "HTTP_PROXY",
        ] {
            assert!(cgi.get(gone).is_none(), "{wire:?}: {gone} in {cgi}");
        }
        assert_eq!(cgi["HTTP_X_FORWARDED_HOST"], json!([stack.tls.host()]));
    }
    assert_nothing_reached_admin_anonymously(&stack.lenient);
}

#[tokio::test]
async fn a_trailing_dot_does_not_skip_a_host_rule() {
    let stack = stack().await;
    for host in [
        "blocked.example",
        "blocked.example.",
        "BLOCKED.example.:443",
    ] {
        let reply = stack.raw_http1("GET", "/public/x", &[("host", host)]).await;
        assert_eq!(reply.status, 403, "{host}: {}", reply.body);
    }
    assert!(stack.lenient.seen().is_empty());
}
