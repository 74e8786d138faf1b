//! ALB rule conditions, in the legacy `{Field, Values}` form or the
//! `*Config` form, to a portcullis `conditions` map.

use super::Importer;
use super::aws::{Condition, ValuesConfig};
use super::yaml::{MapBuilder, Node};

/// ALB's quota of condition values per rule (host and path included).
const ALB_VALUES_PER_RULE: usize = 5;

impl Importer<'_> {
    /// The rule's `conditions` map (`None` when it has none), or why the
    /// rule cannot be carried over.
    pub(super) fn conditions(
        &mut self,
        rule: &str,
        conditions: &[Condition],
    ) -> Result<Option<Node>, String> {
        let mut host = Vec::new();
        let mut path = Vec::new();
        let mut headers = Vec::new();
        let mut methods = Vec::new();
        let mut query: Option<Vec<Node>> = None;
        let mut source_ip = Vec::new();
        let mut counted = 0;
        for condition in conditions {
            if let Some(key) = condition.other.keys().next() {
                return Err(format!(
                    "its condition has `{key}`, which portcullis has no equivalent for"
                ));
            }
            let field = field(condition)?;
            match field {
                "host-header" => host.extend(values(
                    field,
                    condition,
                    condition.host_header_config.as_ref(),
                )?),
                "path-pattern" => path.extend(values(
                    field,
                    condition,
                    condition.path_pattern_config.as_ref(),
                )?),
                "http-request-method" => methods.extend(values(
                    field,
                    condition,
                    condition.http_request_method_config.as_ref(),
                )?),
                "source-ip" => source_ip.extend(values(
                    field,
                    condition,
                    condition.source_ip_config.as_ref(),
                )?),
                "http-header" => {
                    let config = condition
                        .http_header_config
                        .as_ref()
                        .ok_or("its http-header condition has no HttpHeaderConfig")?;
                    if !config.regex_values.is_empty() {
                        return Err(regex_refusal(field));
                    }
                    no_escapes(field, &config.values)?;
                    counted += config.values.len();
                    headers.push(
                        MapBuilder::new()
                            .put_str("name", config.http_header_name.as_deref())
                            .put("values", Node::strs(&config.values))
                            .build(),
                    );
                }
                "query-string" => {
                    let config = condition
                        .query_string_config
                        .as_ref()
                        .ok_or("its query-string condition has no QueryStringConfig")?;
                    if query.is_some() {
                        // On ALB each query-string condition must hold;
                        // portcullis' `query_string` is one condition.
                        return Err("it has several query-string conditions, which must all match on ALB; portcullis has one query_string condition per rule".to_owned());
                    }
                    let mut pairs = Vec::new();
                    for pair in &config.values {
                        let texts: Vec<String> =
                            pair.key.iter().chain(&pair.value).cloned().collect();
                        no_escapes(field, &texts)?;
                        let mut entry = MapBuilder::new();
                        entry.put_str("key", pair.key.as_deref());
                        entry.put_str("value", pair.value.as_deref());
                        pairs.push(entry.build());
                    }
                    counted += pairs.len();
                    query = Some(pairs);
                }
                other => {
                    return Err(format!(
                        "condition type `{other}` is not one portcullis has"
                    ));
                }
            }
        }
        counted += host.len() + path.len() + methods.len() + source_ip.len();
        if counted > ALB_VALUES_PER_RULE {
            self.note(
                rule,
                format!(
                    "its conditions hold {counted} values, more than the {ALB_VALUES_PER_RULE} ALB allows; carried over as written (`check` refuses more than 5 among http_header, http_request_method, query_string and source_ip)"
                ),
            );
        }

        let mut map = MapBuilder::new();
        if !host.is_empty() {
            map.put("host", Node::strs(&host));
        }
        if !path.is_empty() {
            map.put("path", Node::strs(&path));
        }
        if !headers.is_empty() {
            map.put("http_header", Node::Seq(headers));
        }
        if !methods.is_empty() {
            map.put("http_request_method", Node::strs(&methods));
        }
        if let Some(pairs) = query {
            map.put("query_string", Node::Seq(pairs));
        }
        if !source_ip.is_empty() {
            map.put("source_ip", Node::strs(&source_ip));
        }
        Ok(match map.build() {
            Node::Map(entries) if entries.is_empty() => None,
            conditions => Some(conditions),
        })
    }
}

/// The condition's type: `Field`, or, when AWS left it out, the one
/// `*Config` present.
fn field(condition: &Condition) -> Result<&str, String> {
    if let Some(field) = &condition.field {
        return Ok(field);
    }
    let present = [
        ("host-header", condition.host_header_config.is_some()),
        ("path-pattern", condition.path_pattern_config.is_some()),
        ("http-header", condition.http_header_config.is_some()),
        (
            "http-request-method",
            condition.http_request_method_config.is_some(),
        ),
        ("query-string", condition.query_string_config.is_some()),
        ("source-ip", condition.source_ip_config.is_some()),
    ];
    let mut found = present.iter().filter(|(_, is)| *is).map(|(name, _)| *name);
    match (found.next(), found.next()) {
        (Some(field), None) => Ok(field),
        _ => Err("a condition has no Field and not exactly one *Config".to_owned()),
    }
}

/// The values of a single-list condition: from its `*Config` when present
/// (new rules carry both forms, alike), else the legacy `Values`.
fn values(
    field: &str,
    condition: &Condition,
    config: Option<&ValuesConfig>,
) -> Result<Vec<String>, String> {
    match config {
        Some(config) if !config.regex_values.is_empty() => Err(regex_refusal(field)),
        Some(config) => Ok(config.values.clone()),
        None => condition
            .values
            .clone()
            .ok_or_else(|| format!("its {field} condition has no values")),
    }
}

fn regex_refusal(field: &str) -> String {
    format!(
        "its {field} condition uses RegexValues, which portcullis does not support (write wildcards)"
    )
}

/// ALB's `\*` and `\?` escapes have no equivalent: `check` refuses a `\`.
fn no_escapes(field: &str, values: &[String]) -> Result<(), String> {
    match values.iter().find(|value| value.contains('\\')) {
        Some(value) => Err(format!(
            "its {field} value `{value}` uses ALB's `\\` escape, which portcullis does not support"
        )),
        None => Ok(()),
    }
}
