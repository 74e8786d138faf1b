//! The `forward` action: HTTP/1.1 to http and https upstreams over pooled
//! connections ([`super::pool`]), bodies streamed both ways, hop-by-hop
//! headers dropped, `X-Forwarded-*` set, and HTTP/1.1 upgrades (WebSocket)
//! spliced through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use url::Url;

use crate::auth::clock::Clock;
use crate::body::{self, Body};
use crate::config::{ForwardAction, SessionKey, XForwardedFor};
use crate::error::ProxyError;
use crate::proxy::headers;
use crate::proxy::pool::Pool;
use crate::proxy::upgrade::OnUpgrade;
use crate::proxy::weighted::{self, Placed, Placement};

/// How the client reached us; the source of the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    pub client: SocketAddr,
    /// The listener's port.
    pub port: u16,
    pub tls: bool,
}

impl Downstream {
    pub fn protocol(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The connection pool every `forward` action shares.
#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
    /// Which of several weighted targets a request goes to.
    placement: Arc<Placement>,
    /// For the stickiness cookie's lifetime.
    clock: Clock,
}

impl Upstream {
    /// Trusts the platform's roots (see [`crate::client::https_connector`]);
    /// stickiness cookies are keyed by the session `secrets`.
    pub fn new(secrets: &[SessionKey], clock: Clock) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        // Targets get HTTP/1.1, as behind ALB; WebSocket upgrades need it too.
        let pool = Pool::new(crate::client::https_connector(http));
        Self {
            pool,
            placement: Arc::new(Placement::new(secrets)),
            clock,
        }
    }

    /// The same connection pool, with stickiness cookies keyed by `secrets`:
    /// what a reload makes, so that connections to the targets are kept.
    pub fn rekeyed(&self, secrets: &[SessionKey]) -> Self {
        Self {
            pool: Arc::clone(&self.pool),
            placement: Arc::new(Placement::new(secrets)),
            clock: self.clock.clone(),
        }
    }

    /// The target of `rule`'s forward `action` for a request with these
    /// headers (one by the weights, or the one its stickiness cookie names).
    pub fn place<'a>(
        &self,
        rule: &str,
        action: &'a ForwardAction,
        headers: &HeaderMap,
        secure: bool,
    ) -> Placed<'a> {
        if let [only] = action.targets.as_slice() {
            // Most forwards: no clock, no cookie, no random number.
            return Placed {
                target: &only.target,
                set_cookie: None,
            };
        }
        self.placement.place(
            rule,
            action,
            headers,
            secure,
            self.clock.now(),
            weighted::roll,
        )
    }

    /// Sends the request to `target` and returns the upstream's response
    /// with its body still streaming.
    pub async fn forward(
        &self,
        target: &Url,
        action: &ForwardAction,
        mut request: Request<Incoming>,
        downstream: &Downstream,
        x_forwarded_for: XForwardedFor,
    ) -> Result<(Response<Body>, Duration), ProxyError> {
        // The connection task put this in an upgrade request (`is_upgrade`).
        let upgrade = request.extensions_mut().remove::<OnUpgrade>();
        let (mut parts, incoming) = request.into_parts();
        // What a genuine WebSocket answer must prove it read (RFC 6455 §4.2.2).
        let websocket_accept = upgrade
            .as_ref()
            .and_then(|_| parts.headers.get(SEC_WEBSOCKET_KEY))
            .map(|key| websocket_accept(key.as_bytes()));

        let host = original_host(&parts.uri, &parts.headers);
        // The client's hop-by-hop headers were removed before the proxy
        // added its own (`headers::sanitize_request`).
        set_forwarded_headers(
            &mut parts.headers,
            downstream,
            x_forwarded_for,
            host.as_ref(),
        );
        let host = match host {
            Some(host) => host,
            // An HTTP/1.0 client may send none; HTTP/1.1 requires one.
            None => target_authority(target).map_err(ProxyError::UpstreamRequest)?,
        };
        parts.headers.insert(header::HOST, host);
        join_cookie_headers(&mut parts.headers);
        parts.uri = origin_form(&parts.uri);
        parts.version = Version::HTTP_11;

        let started = Instant::now();
        let request = Request::from_parts(parts, incoming);
        let upgrading = upgrade.is_some();
        let mut response = if upgrading {
            let sent = Box::pin(self.pool.send_upgrade(target, request));
            tokio::time::timeout(action.timeout, sent)
                .await
                .map_err(|_elapsed| ProxyError::UpstreamTimeout(action.timeout))??
        } else {
            self.pool.send(target, request, action.timeout).await?
        };
        let latency = started.elapsed();

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            // Only a WebSocket handshake the upstream really answered becomes
            // a tunnel: a `101` to anything else (an upstream that echoes a
            // status, or switches to h2c) would carry requests past every
            // rule and every header the proxy strips.
            let (Some(downstream_upgrade), Some(expected)) = (upgrade, websocket_accept) else {
                return Err(ProxyError::UpstreamBadUpgrade);
            };
            if !is_websocket_answer(response.headers(), &expected) {
                return Err(ProxyError::UpstreamBadUpgrade);
            }
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(splice(downstream_upgrade, upstream_upgrade));
        }
        headers::sanitize_response(response.headers_mut(), switching);
        Ok((response.map(body::stream), latency))
    }
}

/// Copies bytes both ways between the two upgraded connections until either closes.
async fn splice(downstream: OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (mut downstream, upstream) = match tokio::join!(downstream.upgraded(), upstream) {
        (Ok(downstream), Ok(upstream)) => (downstream, upstream),
        (Err(error), _) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
        (_, Err(error)) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let mut upstream = TokioIo::new(upstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(%error, "upgraded connection ended with an error");
    }
}

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// `Sec-WebSocket-Accept` for a key: base64 of SHA-1 of the key and the
/// protocol's GUID (RFC 6455 §4.2.2).
fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(context.finish())
}

/// An upstream's `101` that completes the client's WebSocket handshake.
fn is_websocket_answer(headers: &HeaderMap, expected_accept: &str) -> bool {
    let upgrade_is_websocket = headers
        .get(header::UPGRADE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let accepted = headers
        .get(SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|value| value.as_bytes() == expected_accept.as_bytes());
    upgrade_is_websocket && accepted
}

/// A WebSocket handshake (RFC 6455 §4.1): an HTTP/1.1 `GET` with
/// `Connection: upgrade`, `Upgrade: websocket`, a `Sec-WebSocket-Key` and
/// version 13. No other protocol is tunnelled: an `h2c` tunnel would carry
/// requests no rule ever sees.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request.method() == http::Method::GET
        && request.headers().contains_key(SEC_WEBSOCKET_KEY)
        && request
            .headers()
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|version| version.as_bytes() == b"13")
        && request
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
        && headers::connection_tokens(request.headers())
            .any(|token| token.eq_ignore_ascii_case("upgrade"))
}

/// HTTP/2 clients may send each cookie in its own `Cookie` header; an
/// HTTP/1.1 upstream must get them in one (RFC 9113 §8.2.3).
fn join_cookie_headers(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// The Host the client asked for: the `Host` header, or the HTTP/2 `:authority`.
fn original_host(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(header::HOST).cloned().or_else(|| {
        let authority = uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    })
}

/// Never trusts what the client said about forwarding, except the chain in
/// `X-Forwarded-For`, which is appended to, kept or removed as ALB's
/// `xff_header_processing` says.
fn set_forwarded_headers(
    headers: &mut HeaderMap,
    downstream: &Downstream,
    x_forwarded_for: XForwardedFor,
    host: Option<&HeaderValue>,
) {
    use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO};

    match x_forwarded_for {
        XForwardedFor::Append => append_client(headers, &X_FORWARDED_FOR, downstream),
        XForwardedFor::Preserve => {}
        XForwardedFor::Remove => {
            headers.remove(&X_FORWARDED_FOR);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(downstream.protocol()),
    );
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(downstream.port));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// Appends the client's address to the chain it sent, or starts one.
fn append_client(headers: &mut HeaderMap, name: &HeaderName, downstream: &Downstream) {
    let client_ip = client_ip_value(downstream.client.ip());
    let earlier = headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|earlier| !earlier.trim().is_empty());
    let chain = match earlier {
        Some(earlier) => {
            HeaderValue::from_bytes(&[earlier.as_bytes(), client_ip.as_bytes()].join(&b", "[..]))
        }
        None => Ok(client_ip),
    };
    match chain {
        Ok(chain) => headers.insert(name, chain),
        Err(_) => headers.remove(name),
    };
}

/// The request's path and query alone, as an HTTP/1.1 request line to an
/// origin server carries them (RFC 9112 §3.2.1).
fn origin_form(original: &Uri) -> Uri {
    original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
        .into()
}

/// The client's address as a header value. IPv4 is written by hand: through
/// `Display` it cost as much as all the other forwarding headers together.
fn client_ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(ip) = ip else {
        return HeaderValue::try_from(ip.to_string()).expect("an IP address is a header value");
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&text[..len]).expect("digits and dots are a header value")
}

/// The target's host, and its port unless it is the scheme's default.
fn target_authority(target: &Url) -> Result<HeaderValue, http::Error> {
    let host = target.host_str().unwrap_or_default();
    let authority = match target.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(HeaderValue::try_from(authority)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_replace_the_clients_and_append_the_chain() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("x-forwarded-host", "evil.example".parse().unwrap());
        let downstream = Downstream {
            client: "192.0.2.1:5555".parse().unwrap(),
            port: 8080,
            tls: false,
        };
        let host = HeaderValue::from_static("app.example.com");
        set_forwarded_headers(
            &mut headers,
            &downstream,
            XForwardedFor::Append,
            Some(&host),
        );
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-port"], "8080");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
    }

    #[test]
    fn x_forwarded_for_is_appended_preserved_or_removed() {
        let downstream = Downstream {
            client: "192.0.2.1:5555".parse().unwrap(),
            port: 8080,
            tls: false,
        };
        let after = |mode, sent: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(sent) = sent {
                headers.insert("x-forwarded-for", sent.parse().unwrap());
            }
            set_forwarded_headers(&mut headers, &downstream, mode, None);
            headers
                .get("x-forwarded-for")
                .map(|value| value.to_str().unwrap().to_owned())
        };
        use XForwardedFor::*;
        assert_eq!(after(Append, None).as_deref(), Some("192.0.2.1"));
        assert_eq!(
            after(Append, Some("203.0.113.9")).as_deref(),
            Some("203.0.113.9, 192.0.2.1")
        );
        assert_eq!(after(Preserve, None), None);
        assert_eq!(
            after(Preserve, Some("203.0.113.9")).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(after(Remove, Some("203.0.113.9")), None);
        assert_eq!(after(Remove, None), None);
    }

    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.100.9",
            "192.168.1.20",
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(client_ip_value(ip), ip.to_string());
        }
    }

    #[test]
    fn http2_cookie_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        join_cookie_headers(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn the_upstream_gets_path_and_query_in_origin_form() {
        let original: Uri = "https://app.example.com/a/b?x=1&y=%20".parse().unwrap();
        assert_eq!(origin_form(&original).to_string(), "/a/b?x=1&y=%20");
        let authority_only: Uri = "app.example.com:443".parse().unwrap();
        assert_eq!(origin_form(&authority_only).to_string(), "/");
    }

    #[test]
    fn the_websocket_accept_is_the_rfcs() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut answer = HeaderMap::new();
        answer.insert(header::UPGRADE, "websocket".parse().unwrap());
        answer.insert(
            SEC_WEBSOCKET_ACCEPT,
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
        );
        assert!(is_websocket_answer(&answer, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(!is_websocket_answer(&answer, "another="));
        answer.insert(header::UPGRADE, "h2c".parse().unwrap());
        assert!(!is_websocket_answer(
            &answer,
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ));
    }

    #[test]
    fn only_a_complete_websocket_handshake_is_an_upgrade() {
        let request = |method: &str, headers: &[(&str, &str)]| {
            let mut builder = Request::builder().method(method).uri("/ws");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let complete = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ];
        assert!(is_upgrade(&request("GET", &complete)));
        assert!(!is_upgrade(&request("POST", &complete)));
        for missing in 0..complete.len() {
            let mut partial = complete.to_vec();
            partial.remove(missing);
            assert!(!is_upgrade(&request("GET", &partial)), "without {missing}");
        }
        let mut h2c = complete.to_vec();
        h2c[1] = ("upgrade", "h2c");
        assert!(!is_upgrade(&request("GET", &h2c)));
    }

    #[test]
    fn a_request_without_host_gets_the_targets() {
        let with_port = Url::parse("https://backend.internal:9443").unwrap();
        assert_eq!(
            target_authority(&with_port).unwrap(),
            "backend.internal:9443"
        );
        let default_port = Url::parse("https://backend.internal").unwrap();
        assert_eq!(target_authority(&default_port).unwrap(), "backend.internal");
    }
}
