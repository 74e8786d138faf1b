//! A rule's conditions: host and path patterns, HTTP headers, methods, query
//! pairs and source addresses, each checked on its own, then ALB's limits
//! across the rule.

use http::HeaderName;

use super::{At, Validator, optional};
use crate::config::model::*;
use crate::config::raw::*;
use crate::proxy::headers::never_reaches_rules;

/// ALB's limit on a path, host, header value or query pattern.
const MAX_PATTERN_LEN: usize = 128;
/// ALB's limit on a header name and on a method.
const MAX_NAME_LEN: usize = 40;
/// ALB's quotas per rule: condition values, and wildcards among them. Host
/// and path are not counted, as portcullis never capped them.
const MAX_VALUES_PER_RULE: usize = 5;
const MAX_WILDCARDS_PER_RULE: usize = 5;

impl Validator<'_> {
    pub(super) fn conditions(&mut self, at: &At, raw: RawConditions) -> Option<Conditions> {
        let host = raw
            .host
            .map(|hosts| self.host_patterns(&at.key("host"), hosts));
        let path = raw
            .path
            .map(|paths| self.path_patterns(&at.key("path"), paths));
        let http_header = raw
            .http_header
            .map(|headers| self.header_conditions(&at.key("http_header"), headers));
        let http_request_method = raw
            .http_request_method
            .map(|methods| self.methods(&at.key("http_request_method"), methods));
        let query_string = raw
            .query_string
            .map(|pairs| self.query_conditions(&at.key("query_string"), pairs));
        let source_ip = raw
            .source_ip
            .map(|blocks| self.source_ips(&at.key("source_ip"), blocks));
        let conditions = Conditions {
            host: optional(host)?.unwrap_or_default(),
            path: optional(path)?.unwrap_or_default(),
            http_header: optional(http_header)?.unwrap_or_default(),
            http_request_method: optional(http_request_method)?.unwrap_or_default(),
            query_string: optional(query_string)?.unwrap_or_default(),
            source_ip: optional(source_ip)?.unwrap_or_default(),
        };
        self.rule_quotas(at, &conditions)?;
        Some(conditions)
    }

    /// ALB's per-rule quotas over the condition kinds it counts here.
    fn rule_quotas(&mut self, at: &At, conditions: &Conditions) -> Option<()> {
        let header_values = conditions.http_header.iter().flat_map(|c| &c.values);
        let query_patterns = conditions
            .query_string
            .iter()
            .flat_map(|c| c.key.iter().chain([&c.value]));
        let values = conditions
            .http_header
            .iter()
            .map(|c| c.values.len())
            .sum::<usize>()
            + conditions.http_request_method.len()
            + conditions.query_string.len()
            + conditions.source_ip.len();
        let wildcards: usize = header_values
            .chain(query_patterns)
            .map(|pattern| pattern.bytes().filter(|&c| c == b'*' || c == b'?').count())
            .sum();
        let mut within = true;
        if values > MAX_VALUES_PER_RULE {
            within = false;
            self.problem(
                at,
                format!(
                    "the rule's http_header, http_request_method, query_string and source_ip \
                     conditions hold {values} values; at most {MAX_VALUES_PER_RULE}"
                ),
                "split the rule into several rules with the same actions, or use wildcards",
            );
        }
        if wildcards > MAX_WILDCARDS_PER_RULE {
            within = false;
            self.problem(
                at,
                format!(
                    "the rule's http_header and query_string patterns hold {wildcards} \
                     wildcards (* and ?); at most {MAX_WILDCARDS_PER_RULE}"
                ),
                "split the rule into several rules with the same actions, or write fewer wildcards",
            );
        }
        within.then_some(())
    }

    fn host_patterns(&mut self, at: &At, hosts: Vec<String>) -> Option<Vec<String>> {
        self.not_empty_list(at, &hosts, "host");
        let checked: Vec<Option<String>> = hosts
            .into_iter()
            .enumerate()
            .map(|(index, host)| self.host_pattern(&at.index(index), host))
            .collect();
        checked.into_iter().collect()
    }

    fn host_pattern(&mut self, at: &At, host: String) -> Option<String> {
        let host = host.trim().to_ascii_lowercase();
        let fix = "a host name with * and ? wildcards, e.g. app.example.com or *.example.org";
        if host.is_empty() {
            self.problem(at, "the host pattern is empty", fix);
            return None;
        }
        if let Some((name, port)) = host.rsplit_once(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            self.problem(
                at,
                format!("host pattern `{host}` has a port"),
                format!("host conditions match the name only: write `{name}`"),
            );
            return None;
        }
        if host.len() > MAX_PATTERN_LEN {
            self.problem(
                at,
                format!("the host pattern is {} characters long", host.len()),
                format!("keep it to {MAX_PATTERN_LEN} characters"),
            );
            return None;
        }
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '?')))
        {
            self.problem(
                at,
                format!("host pattern `{host}` contains `{bad}`"),
                format!("{fix}; letters, digits, -, ., * and ? only"),
            );
            return None;
        }
        Some(host)
    }

    fn path_patterns(&mut self, at: &At, paths: Vec<String>) -> Option<Vec<String>> {
        self.not_empty_list(at, &paths, "path");
        let checked: Vec<Option<String>> = paths
            .into_iter()
            .enumerate()
            .map(|(index, path)| {
                let at = at.index(index);
                if !(path.starts_with('/') || path.starts_with('*')) {
                    self.problem(
                        &at,
                        format!("path pattern `{path}` does not start with / or *"),
                        format!("write `/{path}`"),
                    );
                    None
                } else if path.len() > MAX_PATTERN_LEN {
                    self.problem(
                        &at,
                        format!("the path pattern is {} characters long", path.len()),
                        format!("keep it to {MAX_PATTERN_LEN} characters, using * for the rest"),
                    );
                    None
                } else if let Some((message, fix)) = never_canonical(&path) {
                    self.problem(&at, message, fix);
                    None
                } else {
                    Some(path)
                }
            })
            .collect();
        checked.into_iter().collect()
    }

    fn not_empty_list(&mut self, at: &At, list: &[String], kind: &str) {
        if list.is_empty() {
            self.problem(
                at,
                format!("the {kind} condition lists no patterns"),
                format!("add a pattern, or remove `{kind}` to match any {kind}"),
            );
        }
    }

    fn header_conditions(
        &mut self,
        at: &At,
        raw: OneOrMany<RawHttpHeader>,
    ) -> Option<Vec<HeaderCondition>> {
        let entries: Vec<(At, RawHttpHeader)> = match raw {
            OneOrMany::One(one) => vec![(at.clone(), one)],
            OneOrMany::Many(many) => {
                if many.is_empty() {
                    self.problem(
                        at,
                        "the http_header condition lists no headers",
                        "add { name: ..., values: [...] }, or remove `http_header`",
                    );
                }
                many.into_iter()
                    .enumerate()
                    .map(|(index, entry)| (at.index(index), entry))
                    .collect()
            }
        };
        let checked: Vec<Option<HeaderCondition>> = entries
            .into_iter()
            .map(|(at, entry)| self.header_condition(&at, entry))
            .collect();
        checked.into_iter().collect()
    }

    fn header_condition(&mut self, at: &At, raw: RawHttpHeader) -> Option<HeaderCondition> {
        let name = self
            .required(
                &at.key("name"),
                raw.name,
                "name the header, e.g. name: X-Custom-Header",
            )
            .and_then(|name| self.header_name(&at.key("name"), &name));
        let values_at = at.key("values");
        let values = self.required(
            &values_at,
            raw.values,
            "list the values to match, e.g. values: [\"beta*\"]",
        );
        let values = values.and_then(|values| {
            self.not_empty_list(&values_at, &values, "http_header");
            let checked: Vec<Option<String>> = values
                .into_iter()
                .enumerate()
                .map(|(index, value)| {
                    self.text_pattern(&values_at.index(index), &value, "header value")
                })
                .collect();
            checked.into_iter().collect::<Option<Vec<String>>>()
        });
        Some(HeaderCondition {
            name: name?,
            values: values?,
        })
    }

    fn header_name(&mut self, at: &At, name: &str) -> Option<HeaderName> {
        let name = name.trim();
        let parsed = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(parsed) if name.len() <= MAX_NAME_LEN => parsed,
            Ok(_) => {
                self.problem(
                    at,
                    format!("header name `{name}` is {} characters long", name.len()),
                    format!("keep it to {MAX_NAME_LEN} characters"),
                );
                return None;
            }
            Err(_) => {
                self.problem(
                    at,
                    format!("`{name}` is not a header name"),
                    "write the name alone, without `:` or spaces, e.g. X-Custom-Header; \
                     wildcards are not allowed in names",
                );
                return None;
            }
        };
        if parsed == http::header::HOST {
            self.problem(
                at,
                "an http_header condition cannot match Host",
                "use the host condition (conditions.host) for the host name",
            );
            return None;
        }
        if never_reaches_rules(&parsed) {
            self.problem(
                at,
                format!("`{name}` is removed from every request before rules are matched"),
                "match a header that reaches the upstream; the proxy strips hop-by-hop, \
                 identity and routing-override headers, and look-alikes of the \
                 X-Forwarded-* headers it sets",
            );
            return None;
        }
        Some(parsed)
    }

    /// A case-insensitive wildcard pattern for a header value or a query
    /// key or value: stored lower-cased.
    fn text_pattern(&mut self, at: &At, pattern: &str, what: &str) -> Option<String> {
        if pattern.is_empty() {
            self.problem(
                at,
                format!("the {what} pattern is empty"),
                "write \"*\" to match any value, the empty one included",
            );
            return None;
        }
        if pattern.len() > MAX_PATTERN_LEN {
            self.problem(
                at,
                format!("the {what} pattern is {} characters long", pattern.len()),
                format!("keep it to {MAX_PATTERN_LEN} characters, using * for the rest"),
            );
            return None;
        }
        if pattern.chars().any(char::is_control) {
            self.problem(
                at,
                format!("the {what} pattern contains a control character"),
                "write visible characters only",
            );
            return None;
        }
        if pattern.contains('\\') {
            self.problem(
                at,
                format!("the {what} pattern `{pattern}` contains `\\`"),
                "* and ? cannot be escaped here; ? matches any one character, * and ? included",
            );
            return None;
        }
        Some(pattern.to_ascii_lowercase())
    }

    fn methods(&mut self, at: &At, methods: Vec<String>) -> Option<Vec<String>> {
        self.not_empty_list(at, &methods, "http_request_method");
        let checked: Vec<Option<String>> = methods
            .into_iter()
            .enumerate()
            .map(|(index, method)| self.method(&at.index(index), method.trim()))
            .collect();
        checked.into_iter().collect()
    }

    fn method(&mut self, at: &At, method: &str) -> Option<String> {
        let token = |c: char| c.is_ascii_uppercase() || c == '_' || c == '-';
        if method.is_empty() || method.len() > MAX_NAME_LEN || !method.chars().all(token) {
            let upper = method.to_ascii_uppercase();
            let fix = if !method.is_empty() && upper != method && upper.chars().all(token) {
                format!("methods are matched case-sensitively: write `{upper}`")
            } else {
                format!("a method of A-Z, _ and -, at most {MAX_NAME_LEN} characters, e.g. GET")
            };
            self.problem(at, format!("`{method}` is not a request method"), fix);
            return None;
        }
        if method == "CONNECT" || method == "TRACE" {
            self.problem(
                at,
                format!("{method} requests are refused before rules are matched"),
                format!("remove `{method}`"),
            );
            return None;
        }
        Some(method.to_owned())
    }

    fn query_conditions(
        &mut self,
        at: &At,
        pairs: Vec<RawQueryString>,
    ) -> Option<Vec<QueryCondition>> {
        if pairs.is_empty() {
            self.problem(
                at,
                "the query_string condition lists no pairs",
                "add { key: ..., value: ... } (key optional), or remove `query_string`",
            );
        }
        let checked: Vec<Option<QueryCondition>> = pairs
            .into_iter()
            .enumerate()
            .map(|(index, pair)| {
                let at = at.index(index);
                let key = pair.key.map(|key| {
                    if key.is_empty() {
                        self.problem(
                            &at.key("key"),
                            "the query key pattern is empty",
                            "leave key out to match a value under any key",
                        );
                        None
                    } else {
                        self.text_pattern(&at.key("key"), &key, "query key")
                    }
                });
                let value = self
                    .required(
                        &at.key("value"),
                        pair.value,
                        "give the value to match, e.g. value: \"v1*\" (\"*\" for any)",
                    )
                    .and_then(|value| self.text_pattern(&at.key("value"), &value, "query value"));
                Some(QueryCondition {
                    key: optional(key)?,
                    value: value?,
                })
            })
            .collect();
        checked.into_iter().collect()
    }

    fn source_ips(&mut self, at: &At, blocks: Vec<String>) -> Option<Vec<Cidr>> {
        self.not_empty_list(at, &blocks, "source_ip");
        self.cidrs(at, blocks)
    }

    /// A list of CIDR blocks, each checked with a fix of its own.
    pub(super) fn cidrs(&mut self, at: &At, blocks: Vec<String>) -> Option<Vec<Cidr>> {
        let checked: Vec<Option<Cidr>> = blocks
            .into_iter()
            .enumerate()
            .map(|(index, block)| {
                let at = at.index(index);
                let block = block.trim();
                let fix = match Cidr::parse(block) {
                    Ok(cidr) => return Some(cidr),
                    Err(CidrError::NoPrefix) => match block.parse::<std::net::IpAddr>() {
                        Ok(address) if address.is_ipv4() => format!("write `{address}/32`"),
                        Ok(address) => format!("write `{address}/128`"),
                        Err(_) => "a CIDR block such as 10.0.0.0/8 or 2001:db8::/32".to_owned(),
                    },
                    Err(CidrError::Address(_)) => {
                        "a CIDR block such as 10.0.0.0/8 or 2001:db8::/32 (no host names)"
                            .to_owned()
                    }
                    Err(CidrError::Prefix(_, bits)) => {
                        format!("a prefix length from 0 to {bits}, e.g. 10.0.0.0/8")
                    }
                    Err(CidrError::HostBits(masked)) => format!("write `{masked}`"),
                };
                let error = Cidr::parse(block).expect_err("the match above returned on Ok");
                self.problem(&at, format!("`{block}` is not a CIDR block: {error}"), fix);
                None
            })
            .collect();
        checked.into_iter().collect()
    }
}

/// Rules match the canonical path (dot segments resolved, `//` merged,
/// escapes of unreserved characters decoded), so a pattern written in
/// another spelling would silently never match: a message and a fix for
/// one that is not canonical itself. `*` and `?` are ordinary characters
/// to the canonicaliser, so they pass through.
fn never_canonical(pattern: &str) -> Option<(String, String)> {
    if !pattern.starts_with('/') {
        return None;
    }
    match crate::proxy::path::canonicalize(pattern) {
        Ok(canonical) if canonical == pattern => None,
        Ok(canonical) => Some((
            format!(
                "path pattern `{pattern}` can never match: requests are matched by their \
                 canonical path, where it is spelled `{canonical}`"
            ),
            format!("write `{canonical}`"),
        )),
        Err(refused) => Some((
            format!(
                "path pattern `{pattern}` can never match: a request with such a path is \
                 refused with 400 ({refused})"
            ),
            "remove the pattern, or write the path without that spelling".to_owned(),
        )),
    }
}
