//! Listener rules: ALB's conditions (host, path, HTTP header, method, query
//! string, source IP), first match wins.
//!
//! Every condition of a rule must match; within one condition, any of its
//! values may. The facts a rule looks at are gathered once per request in
//! [`RequestFacts`], after header hygiene and with the canonical path, so a
//! rule sees the request as the upstream will.

use std::net::IpAddr;

use http::{HeaderMap, Method};

use crate::config::{HeaderCondition, QueryCondition, Rule};

/// What the rules may look at of one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Normalised by [`normalize_host`].
    pub host: &'a str,
    /// The canonical path.
    pub path: &'a str,
    pub method: &'a Method,
    /// After sanitising: the headers the upstream would receive from the client.
    pub headers: &'a HeaderMap,
    /// The query as sent, without `?`; decoded only when a rule asks.
    pub query: Option<&'a str>,
    /// The TCP peer of the downstream connection, never `X-Forwarded-For`.
    pub peer: IpAddr,
}

/// ALB wildcard matching: `*` matches any run of characters (also `/`), `?`
/// exactly one. Iterative with one backtrack point, so linear in practice and
/// never exponential whatever the pattern.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    wildcard_match_by(pattern, text, |p, t| p == t)
}

/// [`wildcard_match`] ignoring ASCII case; `pattern` is already lower-case.
pub fn wildcard_match_ignore_case(pattern: &[u8], text: &[u8]) -> bool {
    wildcard_match_by(pattern, text, |p, t| p == t.to_ascii_lowercase())
}

#[inline]
fn wildcard_match_by(pattern: &[u8], text: &[u8], same: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it absorbed up to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || same(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, absorbed)) => {
                    p = after_star;
                    t = absorbed + 1;
                    star = Some((after_star, absorbed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The host a request is for: lower-cased, without its port, and without
/// the trailing dots of a fully qualified name (`app.example.com.` is
/// `app.example.com`, and must not slip past its host rule; nor must
/// `app.example.com..`, which a lenient upstream reads the same way).
pub fn normalize_host(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal keeps its brackets and loses what follows `]`.
        Some(rest) => rest
            .find(']')
            .map_or(authority, |end| &authority[..end + 2]),
        None => authority.split(':').next().unwrap_or(authority),
    };
    let host = host.trim_end_matches('.');
    host.to_ascii_lowercase()
}

/// Whether a host condition's `pattern` names `host` (normalised) closely
/// enough to send a browser there: written out in full, or `*.` and a
/// suffix with a dot and no other wildcard (`*.example.com`). `*`, `*.com`
/// or `app-*` match hosts nobody named, and a redirect to them would be an
/// open redirect.
pub fn pattern_names_host(pattern: &str, host: &str) -> bool {
    let literal = |text: &str| !text.contains(['*', '?']);
    if literal(pattern) {
        return pattern == host;
    }
    pattern.strip_prefix("*.").is_some_and(|suffix| {
        literal(suffix)
            && suffix.contains('.')
            && host
                .strip_suffix(suffix)
                .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
    })
}

/// True when every condition of the rule matches the request.
pub fn rule_matches(rule: &Rule, request: &RequestFacts<'_>) -> bool {
    let conditions = &rule.conditions;
    any_or_unset(&conditions.host, |pattern| {
        wildcard_match(pattern.as_bytes(), request.host.as_bytes())
    }) && any_or_unset(&conditions.path, |pattern| {
        wildcard_match(pattern.as_bytes(), request.path.as_bytes())
    }) && any_or_unset(&conditions.http_request_method, |method| {
        method == request.method.as_str()
    }) && any_or_unset(&conditions.source_ip, |cidr| cidr.contains(request.peer))
        && conditions
            .http_header
            .iter()
            .all(|condition| header_matches(condition, request.headers))
        && (conditions.query_string.is_empty()
            || query_matches(&conditions.query_string, request.query))
}

/// An empty list is no condition; otherwise one value must match.
fn any_or_unset<T>(values: &[T], matches: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(matches)
}

/// Any value of any instance of the header, against any of the patterns.
fn header_matches(condition: &HeaderCondition, headers: &HeaderMap) -> bool {
    headers.get_all(&condition.name).iter().any(|value| {
        condition
            .values
            .iter()
            .any(|pattern| wildcard_match_ignore_case(pattern.as_bytes(), value.as_bytes()))
    })
}

/// Any one `key=value` pair of the query against any one condition, both
/// decoded (`%41` is `A`, `+` a space). `a=1&a=2` is two pairs, each tried;
/// a bare `flag` is the key `flag` with an empty value.
fn query_matches(conditions: &[QueryCondition], query: Option<&str>) -> bool {
    let Some(query) = query else {
        return false;
    };
    url::form_urlencoded::parse(query.as_bytes()).any(|(key, value)| {
        conditions.iter().any(|condition| {
            condition.key.as_ref().is_none_or(|pattern| {
                wildcard_match_ignore_case(pattern.as_bytes(), key.as_bytes())
            }) && wildcard_match_ignore_case(condition.value.as_bytes(), value.as_bytes())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hosts_a_rule_names_closely_are_named() {
        for (pattern, host) in [
            ("app.example.com", "app.example.com"),
            ("*.example.com", "a.example.com"),
            ("*.example.com", "a.b.example.com"),
        ] {
            assert!(pattern_names_host(pattern, host), "{pattern} {host}");
        }
        for (pattern, host) in [
            ("*", "evil.example"),
            ("*.com", "evil.com"),
            ("app-*", "app-evil.example"),
            ("*.example.com", "example.com"),
            ("*.example.com", "evilexample.com"),
            ("*.example.com", "a.example.com.evil.net"),
            ("app.example.com", "other.example.com"),
            ("?pp.example.com", "app.example.com"),
        ] {
            assert!(!pattern_names_host(pattern, host), "{pattern} {host}");
        }
    }

    fn matches(pattern: &str, text: &str) -> bool {
        wildcard_match(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn star_spans_slashes_and_question_mark_is_one_char() {
        assert!(matches("/app/*", "/app/"));
        assert!(matches("/app/*", "/app/a/b/c"));
        assert!(!matches("/app/*", "/app"));
        assert!(matches("/static/??/*", "/static/v1/x.css"));
        assert!(!matches("/static/??/*", "/static/v10/x.css"));
        assert!(matches("*.example.org", "a.b.example.org"));
        assert!(!matches("*.example.org", "example.org"));
        assert!(matches("*", ""));
        assert!(matches("/a*b*c", "/aXXbYYc"));
        assert!(!matches("/a*b*c", "/aXXbYY"));
        assert!(matches("*/*.jpg", "/img/cat.jpg"));
    }

    use crate::config::{
        Cidr, Conditions, FixedResponseAction, HeaderCondition, QueryCondition, TerminalAction,
    };
    use http::{HeaderName, HeaderValue};

    fn rule(conditions: Conditions) -> Rule {
        Rule {
            name: "r".into(),
            conditions,
            authenticate: None,
            jwt_validation: None,
            action: TerminalAction::FixedResponse(FixedResponseAction {
                status: 200,
                content_type: None,
                body: String::new(),
            }),
        }
    }

    /// A request to `app.example.com` from `peer`, with `headers`.
    struct Sent {
        method: Method,
        target: &'static str,
        headers: HeaderMap,
        peer: IpAddr,
    }

    fn sent(method: &str, target: &'static str, headers: Headers<'_>, peer: &str) -> Sent {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        Sent {
            method: method.parse().unwrap(),
            target,
            headers: map,
            peer: peer.parse().unwrap(),
        }
    }

    fn reaches(conditions: &Conditions, sent: &Sent) -> bool {
        let (path, query) = match sent.target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (sent.target, None),
        };
        let facts = RequestFacts {
            host: "app.example.com",
            path,
            method: &sent.method,
            headers: &sent.headers,
            query,
            peer: sent.peer,
        };
        rule_matches(&rule(conditions.clone()), &facts)
    }

    fn header(name: &str, values: &[&str]) -> HeaderCondition {
        HeaderCondition {
            name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
            values: values.iter().map(|v| v.to_ascii_lowercase()).collect(),
        }
    }

    fn pair(key: Option<&str>, value: &str) -> QueryCondition {
        QueryCondition {
            key: key.map(str::to_ascii_lowercase),
            value: value.to_ascii_lowercase(),
        }
    }

    const PEER: &str = "192.0.2.7";

    /// Header names and raw values, in the order sent.
    type Headers<'a> = &'a [(&'a str, &'a [u8])];

    #[test]
    fn header_values_ignore_case_and_take_wildcards_in_any_instance() {
        let conditions = Conditions {
            http_header: vec![header("X-Custom", &["a*", "b?"])],
            ..Conditions::default()
        };
        let table: &[(Headers<'_>, bool)] = &[
            (&[("x-custom", b"abc")], true),
            (&[("X-CUSTOM", b"ABC")], true),
            (&[("x-custom", b"bx")], true),
            (&[("x-custom", b"bxy")], false),
            (&[("x-custom", b"b")], false),
            (&[("x-custom", b"zzz"), ("x-custom", b"Apple")], true),
            (&[("x-custom", b"zzz"), ("x-other", b"abc")], false),
            (&[("x-other", b"abc")], false),
            (&[], false),
            // A whole value, not its comma-separated items.
            (&[("x-custom", b"zzz, abc")], false),
            (&[("x-custom", b"a\xff")], true),
        ];
        for (headers, expected) in table {
            let request = sent("GET", "/", headers, PEER);
            assert_eq!(reaches(&conditions, &request), *expected, "{headers:?}");
        }
    }

    #[test]
    fn every_header_condition_must_match() {
        let conditions = Conditions {
            http_header: vec![header("x-a", &["1"]), header("x-b", &["2"])],
            ..Conditions::default()
        };
        let both = sent("GET", "/", &[("x-a", b"1"), ("x-b", b"2")], PEER);
        let one = sent("GET", "/", &[("x-a", b"1"), ("x-b", b"3")], PEER);
        assert!(reaches(&conditions, &both));
        assert!(!reaches(&conditions, &one));
    }

    #[test]
    fn methods_are_exact_and_case_sensitive() {
        let conditions = Conditions {
            http_request_method: vec!["GET".into(), "HEAD".into()],
            ..Conditions::default()
        };
        for (method, expected) in [
            ("GET", true),
            ("HEAD", true),
            ("POST", false),
            ("get", false),
            ("GETX", false),
        ] {
            let request = sent(method, "/", &[], PEER);
            assert_eq!(reaches(&conditions, &request), expected, "{method}");
        }
    }

    #[test]
    fn query_pairs_are_decoded_and_ignore_case() {
        let conditions = Conditions {
            query_string: vec![pair(Some("version"), "v1*"), pair(None, "*example*")],
            ..Conditions::default()
        };
        for (target, expected) in [
            ("/?version=v1.2", true),
            ("/?VERSION=V1", true),
            ("/?version=v2", false),
            ("/?other=v1", false),
            ("/?q=an%20Example%21", true),
            ("/?q=an+example", true),
            ("/?%76ersion=%761", true),
            // Each pair of a repeated key is tried.
            ("/?version=v2&version=v1", true),
            ("/?a=1&&b=x-EXAMPLE-y", true),
            ("/?", false),
            ("/", false),
            // The key alone is not a value.
            ("/?example", false),
            ("/?version", false),
        ] {
            let request = sent("GET", target, &[], PEER);
            assert_eq!(reaches(&conditions, &request), expected, "{target}");
        }
    }

    #[test]
    fn a_bare_query_key_has_an_empty_value() {
        let conditions = Conditions {
            query_string: vec![pair(Some("debug"), "*")],
            ..Conditions::default()
        };
        assert!(reaches(&conditions, &sent("GET", "/?debug", &[], PEER)));
        assert!(reaches(&conditions, &sent("GET", "/?debug=", &[], PEER)));
        assert!(reaches(
            &conditions,
            &sent("GET", "/?x=1&debug=on", &[], PEER)
        ));
        assert!(!reaches(&conditions, &sent("GET", "/?debugx", &[], PEER)));
    }

    #[test]
    fn source_ip_matches_the_peer_and_mapped_ipv4() {
        let conditions = Conditions {
            source_ip: vec![
                Cidr::parse("10.0.0.0/8").unwrap(),
                Cidr::parse("2001:db8::/32").unwrap(),
            ],
            ..Conditions::default()
        };
        for (peer, expected) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("::ffff:10.1.2.3", true),
            ("::ffff:11.1.2.3", false),
            ("2001:db8:1::5", true),
            ("2001:db9::5", false),
            // An IPv4-compatible (not mapped) address is IPv6.
            ("::10.1.2.3", false),
        ] {
            let request = sent("GET", "/", &[], peer);
            assert_eq!(reaches(&conditions, &request), expected, "{peer}");
        }
        let any = Conditions {
            source_ip: vec![Cidr::parse("0.0.0.0/0").unwrap()],
            ..Conditions::default()
        };
        assert!(reaches(&any, &sent("GET", "/", &[], "::ffff:1.2.3.4")));
        assert!(!reaches(&any, &sent("GET", "/", &[], "::1")));
    }

    #[test]
    fn every_kind_must_match() {
        let conditions = Conditions {
            path: vec!["/api/*".into()],
            http_header: vec![header("x-env", &["beta"])],
            http_request_method: vec!["POST".into()],
            query_string: vec![pair(Some("v"), "2")],
            source_ip: vec![Cidr::parse("192.0.2.0/24").unwrap()],
            ..Conditions::default()
        };
        let all = sent("POST", "/api/x?v=2", &[("x-env", b"Beta")], PEER);
        assert!(reaches(&conditions, &all));
        for miss in [
            sent("POST", "/web/x?v=2", &[("x-env", b"beta")], PEER),
            sent("POST", "/api/x?v=2", &[("x-env", b"prod")], PEER),
            sent("GET", "/api/x?v=2", &[("x-env", b"beta")], PEER),
            sent("POST", "/api/x?v=3", &[("x-env", b"beta")], PEER),
            sent("POST", "/api/x?v=2", &[("x-env", b"beta")], "198.51.100.1"),
        ] {
            assert!(
                !reaches(&conditions, &miss),
                "{} {}",
                miss.method,
                miss.target
            );
        }
        // No conditions: every request.
        let anything = sent("DELETE", "/?x", &[], "::1");
        assert!(reaches(&Conditions::default(), &anything));
    }

    #[test]
    fn cidr_blocks_are_written_canonically() {
        use crate::config::CidrError;
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("10.0.0.0"), Err(CidrError::NoPrefix));
        assert!(matches!(
            Cidr::parse("10.0.0/8"),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            Cidr::parse("10.0.0.0/33"),
            Err(CidrError::Prefix(..))
        ));
        assert!(matches!(
            Cidr::parse("10.0.0.0/08"),
            Err(CidrError::Prefix(..))
        ));
        assert!(matches!(Cidr::parse("::/129"), Err(CidrError::Prefix(..))));
        match Cidr::parse("10.1.2.3/8") {
            Err(CidrError::HostBits(masked)) => assert_eq!(masked.to_string(), "10.0.0.0/8"),
            other => panic!("{other:?}"),
        }
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("10.1.2.3/32")
                .unwrap()
                .contains("10.1.2.3".parse().unwrap())
        );
    }

    #[test]
    fn ignoring_case_folds_the_text_only() {
        assert!(wildcard_match_ignore_case(b"a?c*", b"AbC-x"));
        assert!(!wildcard_match_ignore_case(b"abc", b"abd"));
        // The pattern is lower-cased when the config is loaded.
        assert!(!wildcard_match_ignore_case(b"ABC", b"abc"));
    }

    #[test]
    fn paths_are_case_sensitive() {
        assert!(!matches("/App/*", "/app/x"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn hosts_lose_port_and_case() {
        assert_eq!(normalize_host("App.Example.COM:8443"), "app.example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("App.Example.COM.:8443"), "app.example.com");
        assert_eq!(normalize_host("app.example.com."), "app.example.com");
    }

    /// Found by fuzzing: one dot was stripped, so `app.example.com..`
    /// became `app.example.com.` and missed the rule for `app.example.com`.
    #[test]
    fn hosts_lose_every_trailing_dot_and_normalize_once() {
        assert_eq!(normalize_host("app.example.com.."), "app.example.com");
        assert_eq!(normalize_host("App.Example.COM...:443"), "app.example.com");
        assert_eq!(normalize_host(".."), "");
        for authority in ["..", "....", "a..:80", "[::1]:443", "A.b.:1"] {
            let host = normalize_host(authority);
            assert_eq!(normalize_host(&host), host, "{authority}");
        }
    }
}
