//! What a front proxy says about the request it passed on: believed only
//! from a peer in the listener's `trusted_proxies`.
//!
//! Read before header hygiene, which removes `X-Forwarded-Uri` and the
//! `X-Original-*` headers from every request (an upstream must never route
//! on them). Each header must hold exactly one well-formed value: a list
//! (`https, http`) or two copies is ambiguous, and an ambiguous header is
//! no header.
//!
//! - `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port`: the
//!   scheme, host and port the browser used, for the login's `redirect_uri`
//!   and every redirect (a plain-HTTP listener behind a TLS front proxy);
//! - `X-Forwarded-Method` (`X-Original-Method`) and `X-Forwarded-Uri`
//!   (nginx's `X-Original-URI`, ingress-nginx's full `X-Original-URL`): the
//!   request a forward-auth check is about;
//! - `X-Forwarded-For`: the client, as the nearest address that is not a
//!   trusted proxy.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, Method};

use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO};
use crate::config::Cidr;

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");

/// Longest original URI taken from a header (as `MAX_ORIGINAL_URL` for the
/// address a login returns to, with room for a long query).
const MAX_URI: usize = 8 * 1024;
/// Most addresses read from `X-Forwarded-For`, right to left.
const MAX_HOPS: usize = 32;

/// The original request as a trusted front proxy described it; each part
/// is `None` when the proxy did not say (or said it ambiguously).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// From `X-Forwarded-Proto`: `https` is true, `http` false.
    pub tls: Option<bool>,
    /// From `X-Forwarded-Host` (else the host of `X-Original-URL`): a plain
    /// `host[:port]`, as `Host` must be.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub method: Option<Method>,
    /// Origin form: a path starting with `/`, and the query if any.
    pub uri: Option<String>,
    /// The client the front proxy served.
    pub client: Option<IpAddr>,
}

impl Forwarded {
    /// What `peer` says, when it is a trusted proxy and said anything.
    pub fn read(headers: &HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> Option<Self> {
        // Most requests say nothing: one pass over the names, no lookups.
        let says_anything = headers.keys().any(|name| {
            let name = name.as_str();
            name.starts_with("x-forwarded-") || name.starts_with("x-original-")
        });
        if !says_anything || !is_trusted(peer, trusted) {
            return None;
        }
        let mut forwarded = Self {
            tls: single(headers, &X_FORWARDED_PROTO).and_then(|proto| {
                match proto.to_ascii_lowercase().as_str() {
                    "https" => Some(true),
                    "http" => Some(false),
                    _ => None,
                }
            }),
            host: single(headers, &X_FORWARDED_HOST).and_then(authority),
            port: single(headers, &X_FORWARDED_PORT)
                .and_then(|port| port.parse().ok())
                .filter(|&port: &u16| port != 0),
            method: single(headers, &X_FORWARDED_METHOD)
                .or_else(|| single(headers, &X_ORIGINAL_METHOD))
                .and_then(|method| Method::from_bytes(method.as_bytes()).ok()),
            uri: single(headers, &X_FORWARDED_URI)
                .or_else(|| single(headers, &X_ORIGINAL_URI))
                .and_then(origin_form)
                .map(str::to_owned),
            client: client(headers, trusted),
        };
        if forwarded.uri.is_none()
            && let Some((host, uri)) = single(headers, &X_ORIGINAL_URL).and_then(absolute)
        {
            forwarded.uri = Some(uri);
            forwarded.host = forwarded.host.or(host);
        }
        (forwarded != Self::default()).then_some(forwarded)
    }

    /// The port the browser used: `X-Forwarded-Port`, else the one in the
    /// forwarded host, else the scheme's.
    pub fn browser_port(&self, tls: bool) -> u16 {
        let in_host = self
            .host
            .as_deref()
            .and_then(|host| http::uri::Authority::try_from(host).ok())
            .and_then(|authority| authority.port_u16());
        self.port.or(in_host).unwrap_or(if tls { 443 } else { 80 })
    }
}

pub fn is_trusted(peer: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|block| block.contains(peer))
}

/// The one value of `name`, trimmed: `None` when absent, repeated, a list,
/// empty or not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.to_str().ok()?.trim();
    (!value.is_empty() && !value.contains(',')).then_some(value)
}

fn authority(text: &str) -> Option<String> {
    super::plain_authority(text).map(str::to_owned)
}

/// A path (and query) that starts with one `/`, within the size bound.
fn origin_form(uri: &str) -> Option<&str> {
    let path_and_query = http::uri::PathAndQuery::try_from(uri).ok()?;
    (uri.starts_with('/')
        && !uri.starts_with("//")
        && uri.len() <= MAX_URI
        && path_and_query.as_str() == uri)
        .then_some(uri)
}

/// `https://host[:port]/path?query` split into its authority and origin form.
fn absolute(url: &str) -> Option<(Option<String>, String)> {
    let uri = http::Uri::try_from(url).ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri_text = origin_form(path_and_query)?.to_owned();
    let host = uri.authority().and_then(|a| authority(a.as_str()));
    Some((host, uri_text))
}

/// The nearest address in `X-Forwarded-For` that is not a trusted proxy
/// (each trusted hop appended the address it saw), or the farthest when
/// every one is trusted. An unreadable entry ends the walk: what lies
/// beyond it cannot be trusted to be in order.
fn client(headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let mut hops = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let text = value.to_str().ok()?;
        hops.extend(text.split(',').map(str::trim));
    }
    let mut farthest = None;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let address = hop
            .parse::<IpAddr>()
            .or_else(|_| hop.parse::<SocketAddr>().map(|socket| socket.ip()))
            .ok()?;
        if !is_trusted(address, trusted) {
            return Some(address);
        }
        farthest = Some(address);
    }
    farthest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn loopback() -> Vec<Cidr> {
        Cidr::loopback()
    }

    const FRONT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn an_untrusted_peer_says_nothing() {
        let sent = headers(&[
            ("x-forwarded-host", "admin.example"),
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-proto", "https"),
        ]);
        let stranger: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(Forwarded::read(&sent, stranger, &loopback()), None);
        assert_eq!(Forwarded::read(&sent, FRONT, &[]), None);
        let read = Forwarded::read(&sent, FRONT, &loopback()).unwrap();
        assert_eq!(read.host.as_deref(), Some("admin.example"));
        assert_eq!(read.uri.as_deref(), Some("/admin"));
        assert_eq!(read.tls, Some(true));
        // IPv4-mapped IPv6 is the IPv4 peer.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(Forwarded::read(&sent, mapped, &loopback()).is_some());
        assert_eq!(Forwarded::read(&headers(&[]), FRONT, &loopback()), None);
    }

    #[test]
    fn ambiguous_or_malformed_values_are_no_values() {
        let read = |pairs: &[(&str, &str)]| {
            Forwarded::read(&headers(pairs), FRONT, &loopback()).unwrap_or_default()
        };
        assert_eq!(read(&[("x-forwarded-proto", "https, http")]).tls, None);
        assert_eq!(
            read(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-proto", "http")
            ])
            .tls,
            None
        );
        assert_eq!(read(&[("x-forwarded-proto", "HTTPS")]).tls, Some(true));
        assert_eq!(read(&[("x-forwarded-proto", "ftp")]).tls, None);
        for host in ["evil@app.example", "app.example/x", "a b", "app.example?x"] {
            assert_eq!(read(&[("x-forwarded-host", host)]).host, None, "{host}");
        }
        for uri in ["admin", "//evil.example/x", "/a b", "*"] {
            assert_eq!(read(&[("x-forwarded-uri", uri)]).uri, None, "{uri}");
        }
        assert_eq!(read(&[("x-forwarded-method", "G(ET")]).method, None);
        assert_eq!(read(&[("x-forwarded-port", "99999")]).port, None);
        assert_eq!(read(&[("x-forwarded-port", "0")]).port, None);
    }

    #[test]
    fn the_original_request_comes_from_any_of_the_usual_spellings() {
        let read =
            |pairs: &[(&str, &str)]| Forwarded::read(&headers(pairs), FRONT, &loopback()).unwrap();
        // nginx
        let nginx = read(&[
            ("x-original-uri", "/app?x=1"),
            ("x-forwarded-method", "POST"),
        ]);
        assert_eq!(nginx.uri.as_deref(), Some("/app?x=1"));
        assert_eq!(nginx.method, Some(Method::POST));
        // Traefik and Caddy: X-Forwarded-Uri wins over X-Original-URI.
        let both = read(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/b")]);
        assert_eq!(both.uri.as_deref(), Some("/a"));
        // ingress-nginx: a full URL and X-Original-Method.
        let ingress = read(&[
            ("x-original-url", "https://app.example:8443/orders?id=7"),
            ("x-original-method", "DELETE"),
        ]);
        assert_eq!(ingress.uri.as_deref(), Some("/orders?id=7"));
        assert_eq!(ingress.host.as_deref(), Some("app.example:8443"));
        assert_eq!(ingress.method, Some(Method::DELETE));
        assert_eq!(ingress.browser_port(true), 8443);
        // X-Forwarded-Host wins over the URL's host.
        let named = read(&[
            ("x-original-url", "https://other.example/x"),
            ("x-forwarded-host", "app.example"),
        ]);
        assert_eq!(named.host.as_deref(), Some("app.example"));
        assert_eq!(named.browser_port(true), 443);
        assert_eq!(
            read(&[("x-forwarded-port", "8080")]).browser_port(false),
            8080
        );
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let read = |chain: &[&str]| {
            let pairs: Vec<(&str, &str)> =
                chain.iter().map(|hop| ("x-forwarded-for", *hop)).collect();
            Forwarded::read(&headers(&pairs), FRONT, &loopback()).and_then(|f| f.client)
        };
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        // The client lied to the front proxy, which appended the real address.
        assert_eq!(read(&["10.9.9.9, 198.51.100.4"]), ip("198.51.100.4"));
        assert_eq!(
            read(&["10.9.9.9", "198.51.100.4, 127.0.0.1"]),
            ip("198.51.100.4")
        );
        assert_eq!(read(&["127.0.0.2, 127.0.0.1"]), ip("127.0.0.2"));
        assert_eq!(read(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(read(&["198.51.100.4:5000"]), ip("198.51.100.4"));
        // Garbage nearer than any address: no client.
        assert_eq!(read(&["198.51.100.4, garbage"]), None);
    }
}
