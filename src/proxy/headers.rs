//! Header hygiene: what a client may not send to the upstream.
//!
//! [`sanitize_request`] runs once, first, on every request, before the proxy
//! adds a header of its own, so nothing the client sends can remove or
//! shadow what the proxy adds later:
//!
//! - headers the client's `Connection` names, except those the proxy relies
//!   on ([`survives_connection`]);
//! - hop-by-hop headers (RFC 9110 §7.6.1), `Upgrade` (kept only for a
//!   WebSocket handshake) and `HTTP2-Settings` (h2c);
//! - identity look-alikes (`x_amzn_oidc_identity`, `x.amzn.oidc.identity`)
//!   and look-alikes of the forwarding headers the proxy sets and of the
//!   overrides below (`x_forwarded_proto`, `X_Original_URL`) always, and
//!   every other name with a character but a letter, digit or `-` (`_` too
//!   when the listener allows it): WSGI, Rack, PHP and CGI read `_` and `-`
//!   as the same character, PHP also `.`;
//! - headers that make an upstream route or trust differently
//!   (`X-Original-URL`, `X-Rewrite-URL`, `X-Forwarded-Prefix`, `X-Real-IP`,
//!   `Forwarded`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::HeaderPolicy;
use crate::identity;

/// Headers that describe one hop, never forwarded either way, and
/// `Upgrade`, which only a WebSocket handshake keeps. As `HeaderName`s:
/// the standard ones compare as one byte each.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    // Credentials for this proxy, never for the application behind it.
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // Only meaningful with `Upgrade: h2c`, which is never tunnelled.
    HeaderName::from_static("http2-settings"),
];

/// Client headers some upstream frameworks route or authorise on (IIS and
/// Symfony's `X-Original-URL`, Flask's `X-Script-Name` middleware, nginx's
/// `X-Real-IP`, RFC 7239 `Forwarded`): only the proxy says where a request
/// came from and what it asked for. And `Proxy` ("httpoxy"): a CGI-style
/// upstream turns it into `HTTP_PROXY`, which HTTP client libraries take
/// as the proxy for the application's own outbound calls.
static OVERRIDES: [HeaderName; 12] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-script-name"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-forwarded-path"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("proxy"),
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The forwarding headers the proxy sets on every forwarded request
/// (`forward::set_forwarded_headers`), replacing or extending the client's.
static FORWARDING: [HeaderName; 4] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_PORT,
    X_FORWARDED_HOST,
];

/// Cleans a request's headers before any phase reads them. `websocket` is
/// true for a WebSocket handshake, which keeps `Connection: upgrade` and
/// `Upgrade: websocket` (and nothing else under those names).
pub fn sanitize_request(headers: &mut HeaderMap, policy: &HeaderPolicy, websocket: bool) {
    let drop = |name: &HeaderName| {
        is_hop_by_hop(name)
            || OVERRIDES.contains(name)
            || identity::is_identity_header(name.as_str())
            || !is_plain_name(name.as_str(), policy.allow_underscores)
            // Where `_` is refused, the rule above has removed every
            // look-alike already.
            || (policy.allow_underscores && is_look_alike(name.as_str()))
    };
    // One pass over the names: most requests carry nothing to drop, or
    // only `Connection: keep-alive`, and then nothing is allocated.
    if headers.keys().any(drop) {
        let mut doomed: Vec<HeaderName> = connection_named(headers)
            .filter(|name| !survives_connection(name))
            .collect();
        doomed.extend(headers.keys().filter(|name| drop(name)).cloned());
        for name in &doomed {
            headers.remove(name);
        }
    }
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
}

/// Removes every header a client sent under one of `reserved` (the
/// `claim_headers` the proxy sets) or a name a server could read as one
/// (any character but a letter or digit standing for `-`, as CGI reads `_`).
pub fn strip_reserved(headers: &mut HeaderMap, reserved: &[HeaderName]) {
    if reserved.is_empty() {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            reserved
                .iter()
                .any(|own| looks_like(name.as_str(), own.as_str()))
        })
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// Whether `name` is `own`, or reads as `own` where `-` may be any
/// character but a letter or digit. Both are lower case.
fn looks_like(name: &str, own: &str) -> bool {
    name.len() == own.len()
        && name.bytes().zip(own.bytes()).all(|(byte, expected)| {
            byte == expected || (expected == b'-' && !byte.is_ascii_alphanumeric())
        })
}

/// True for a name spelled with `_` (or other punctuation) where a
/// forwarding header the proxy sets, or a routing override, has `-`:
/// `x_forwarded_proto` is `HTTP_X_FORWARDED_PROTO` to CGI, the variable the
/// proxy's `X-Forwarded-Proto` becomes, and the application would see both.
/// The exact names are not look-alikes: the proxy sets the forwarding
/// headers itself and removes the overrides by name.
fn is_look_alike(name: &str) -> bool {
    !is_plain_name(name, false)
        && FORWARDING
            .iter()
            .chain(&OVERRIDES)
            .any(|own| looks_like(name, own.as_str()))
}

/// Removes hop-by-hop headers from an upstream response, and those its
/// `Connection` names. A `101` keeps `Connection: upgrade` and `Upgrade`.
pub fn sanitize_response(headers: &mut HeaderMap, switching: bool) {
    let kept = |name: &HeaderName| switching && name == header::UPGRADE;
    if headers.keys().any(is_hop_by_hop) {
        let mut doomed: Vec<HeaderName> = connection_named(headers)
            .filter(|name| !kept(name))
            .collect();
        doomed.extend(
            headers
                .keys()
                .filter(|name| is_hop_by_hop(name) && !kept(name))
                .cloned(),
        );
        for name in &doomed {
            headers.remove(name);
        }
    }
    if switching {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The headers a `Connection` header names, as header names. Tokens that
/// name nothing (`close`) or a header removed anyway (`keep-alive`) are
/// skipped, so the usual `Connection` yields none.
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    connection_tokens(headers)
        .filter(|token| {
            !token.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|name| name.as_str().eq_ignore_ascii_case(token))
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
}

/// The comma-separated tokens of every `Connection` header.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Headers a client's `Connection` can never remove: those that carry the
/// request's target, framing and credentials, and those the proxy itself
/// sets (a client naming them must not be able to delete the proxy's own).
fn survives_connection(name: &HeaderName) -> bool {
    *name == header::HOST
        || *name == header::COOKIE
        || *name == header::AUTHORIZATION
        || *name == header::CONTENT_LENGTH
        || name.as_str().starts_with("x-forwarded-")
        || identity::is_identity_header(name.as_str())
}

/// Letters, digits and `-` (and `_` when allowed): the names nginx keeps
/// with `ignore_invalid_headers`. Others (`x.user`, `x_user`) are read as
/// `x-user` by some servers (PHP turns `.` into `_`, CGI `-` into `_`), so
/// they could shadow a header the proxy or a front proxy vouches for.
fn is_plain_name(name: &str, allow_underscores: bool) -> bool {
    name.bytes().all(|byte| {
        byte.is_ascii_lowercase()
            || byte.is_ascii_digit()
            || byte == b'-'
            || (allow_underscores && byte == b'_')
    })
}

/// True for a header [`sanitize_request`] removes from every request, so a
/// rule condition on it could never match. `Connection` and `Upgrade` are
/// not: a WebSocket handshake keeps them. Other names with `_` are only
/// removed where the listener does not allow underscores, so they are not
/// counted here.
pub fn never_reaches_rules(name: &HeaderName) -> bool {
    (is_hop_by_hop(name) && *name != header::CONNECTION && *name != header::UPGRADE)
        || OVERRIDES.contains(name)
        || identity::is_identity_header(name.as_str())
        || !is_plain_name(name.as_str(), true)
        || is_look_alike(name.as_str())
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_header_names_and_their_look_alikes_are_removed() {
        let reserved = [HeaderName::from_static("x-forwarded-user")];
        let mut sent = headers(&[
            ("x-forwarded-user", "root"),
            ("X-Forwarded-User", "root2"),
            ("x_forwarded_user", "root3"),
            ("x.forwarded.user", "root4"),
            ("x-forwarded-users", "kept"),
            ("x-forwarded-for", "kept"),
        ]);
        strip_reserved(&mut sent, &reserved);
        let mut left: Vec<&str> = sent.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-forwarded-for", "x-forwarded-users"]);
        let mut untouched = headers(&[("x-forwarded-user", "a")]);
        strip_reserved(&mut untouched, &[]);
        assert_eq!(untouched.len(), 1);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut request = headers(&[
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        sanitize_request(&mut request, &HeaderPolicy::default(), false);
        assert_eq!(names(&request), ["accept"]);
    }

    #[test]
    fn connection_cannot_remove_what_the_proxy_relies_on() {
        let mut request = headers(&[
            (
                "connection",
                "close, host, cookie, authorization, content-length, \
                 x-amzn-oidc-identity, x-forwarded-for, X-Forwarded-Proto, x-app",
            ),
            ("host", "app.example.com"),
            ("cookie", "a=1"),
            ("authorization", "Bearer t"),
            ("content-length", "0"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-app", "1"),
        ]);
        sanitize_request(&mut request, &HeaderPolicy::default(), false);
        assert_eq!(
            names(&request),
            [
                "authorization",
                "content-length",
                "cookie",
                "host",
                "x-forwarded-for",
                "x-forwarded-proto"
            ]
        );
    }

    /// The names left of `sent` once sanitised, sorted, on a listener that
    /// allows `_` in names or not.
    fn kept(sent: &[(&str, &str)], allow_underscores: bool) -> Vec<String> {
        let policy = HeaderPolicy {
            allow_underscores,
            ..HeaderPolicy::default()
        };
        let mut request = headers(sent);
        sanitize_request(&mut request, &policy, false);
        names(&request).into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn identity_look_alikes_go_whatever_the_policy() {
        let sent = [
            ("x.amzn.oidc.identity", "admin"),
            ("x-amzn-oidc+data", "forged"),
            ("x.app.user", "admin"),
            ("x_amzn_oidc_identity", "admin"),
            ("X_Amzn_Oidc_Data", "forged"),
            ("x-amzn_oidc-accesstoken", "forged"),
            ("x-amzn-oidc-identity", "admin"),
            ("x_app_id", "7"),
            ("x-amzn-trace-id", "Root=1"),
        ];
        assert_eq!(kept(&sent, false), ["x-amzn-trace-id"]);
        assert_eq!(kept(&sent, true), ["x-amzn-trace-id", "x_app_id"]);
    }

    #[test]
    fn look_alikes_of_forwarding_headers_and_overrides_go_whatever_the_policy() {
        let sent = [
            ("x_forwarded_for", "10.0.0.1"),
            ("X_Forwarded_Proto", "https"),
            ("x-forwarded_port", "443"),
            ("x_forwarded-host", "admin.internal"),
            ("x_original_url", "/admin"),
            ("X_Real_IP", "10.0.0.1"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "http"),
            ("x_forwarded_user", "kept-when-allowed"),
            ("x_forwarded_fort", "kept-when-allowed"),
        ];
        assert_eq!(kept(&sent, false), ["x-forwarded-for", "x-forwarded-proto"]);
        assert_eq!(
            kept(&sent, true),
            [
                "x-forwarded-for",
                "x-forwarded-proto",
                "x_forwarded_fort",
                "x_forwarded_user"
            ]
        );
        for name in ["x_forwarded_proto", "x_original_url", "x.real.ip"] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(never_reaches_rules(&name), "{name}");
        }
        let name = HeaderName::from_static("x_forwarded_user");
        assert!(!never_reaches_rules(&name));
    }

    #[test]
    fn routing_overrides_are_removed() {
        let mut request = headers(&[
            ("x-original-url", "/admin"),
            ("x-original-uri", "/admin"),
            ("x-script-name", "/public"),
            ("x-forwarded-uri", "/admin"),
            ("x-forwarded-path", "/admin"),
            ("true-client-ip", "10.0.0.1"),
            ("x-client-ip", "10.0.0.1"),
            ("x-rewrite-url", "/admin"),
            ("x-forwarded-prefix", "/admin"),
            ("x-real-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1;host=admin"),
            ("proxy", "http://attacker.example:8080"),
            ("x-forwarded-host", "kept-until-the-proxy-sets-it"),
        ]);
        sanitize_request(&mut request, &HeaderPolicy::default(), false);
        assert_eq!(names(&request), ["x-forwarded-host"]);
    }

    #[test]
    fn a_websocket_handshake_keeps_only_what_it_needs() {
        let mut request = headers(&[
            ("connection", "Upgrade, x-private"),
            ("upgrade", "websocket, h2c"),
            ("x-private", "1"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        sanitize_request(&mut request, &HeaderPolicy::default(), true);
        assert_eq!(request[header::CONNECTION], "upgrade");
        assert_eq!(request[header::UPGRADE], "websocket");
        assert!(!request.contains_key("x-private"));
        assert!(request.contains_key("sec-websocket-key"));
    }

    #[test]
    fn a_plain_request_is_left_alone() {
        let mut request = headers(&[
            ("host", "app.example.com"),
            ("accept", "text/html"),
            ("x-request-id", "1"),
        ]);
        let before = request.clone();
        sanitize_request(&mut request, &HeaderPolicy::default(), false);
        assert_eq!(request, before);
    }

    #[test]
    fn responses_lose_hop_by_hop_and_keep_an_upgrade() {
        let mut response = headers(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "a=1"),
        ]);
        sanitize_response(&mut response, true);
        assert_eq!(names(&response), ["connection", "set-cookie", "upgrade"]);
        assert_eq!(response[header::CONNECTION], "upgrade");
        sanitize_response(&mut response, false);
        assert_eq!(names(&response), ["set-cookie"]);
    }

    #[test]
    fn hop_by_hop_names_are_known_as_parsed_from_the_wire() {
        for spelling in [
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "HTTP2-Settings",
        ] {
            let name = HeaderName::from_bytes(spelling.as_bytes()).expect("a valid name");
            assert!(is_hop_by_hop(&name), "{spelling}");
        }
        for spelling in ["Accept", "X-Private", "Keep-Alive-Not", "Tex"] {
            let name = HeaderName::from_bytes(spelling.as_bytes()).expect("a valid name");
            assert!(!is_hop_by_hop(&name), "{spelling}");
        }
    }
}
