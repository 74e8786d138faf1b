//! Listener rules: ALB's host and path conditions, first match wins.

use crate::config::Rule;

/// ALB wildcard matching: `*` matches any run of characters (also `/`), `?`
/// exactly one. Iterative with one backtrack point, so linear in practice and
/// never exponential whatever the pattern.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it absorbed up to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
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

/// True when every condition kind of the rule matches (`host` already normalised).
pub fn rule_matches(rule: &Rule, host: &str, path: &str) -> bool {
    let conditions = &rule.conditions;
    let host_ok = conditions.host.is_empty()
        || conditions
            .host
            .iter()
            .any(|pattern| wildcard_match(pattern.as_bytes(), host.as_bytes()));
    let path_ok = conditions.path.is_empty()
        || conditions
            .path
            .iter()
            .any(|pattern| wildcard_match(pattern.as_bytes(), path.as_bytes()));
    host_ok && path_ok
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
