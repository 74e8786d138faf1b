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
