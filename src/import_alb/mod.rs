//! `portcullis import-alb`: turns the JSON of `aws elbv2 describe-rules`
//! (and optionally `describe-listeners`) into a portcullis configuration.
//!
//! Rules come out in priority order, the default rule last, named after
//! their priority (`priority-10`, `default`). What AWS never prints (client
//! secrets) and what only the operator knows (target group addresses, the
//! TLS files, the session secret) become `${NAME}` placeholders, which the
//! configuration loader expands. Whatever cannot be carried over is a
//! [`Note`] naming its rule; a rule that portcullis could not run as ALB
//! does (an unknown condition or action type, regex values) is left out
//! whole rather than widened or narrowed.

mod actions;
mod aws;
mod conditions;
mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::DeserializeOwned;

use yaml::{MapBuilder, Node};

/// `--target NAME=URL`: where a target group's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The target group's name (the ARN segment after `targetgroup/`) or its whole ARN.
    pub name: String,
    pub url: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok(Target {
                name: name.to_owned(),
                url: url.to_owned(),
            }),
            _ => Err(format!(
                "`{text}` is not NAME=URL (e.g. app=http://10.0.0.5:8080)"
            )),
        }
    }
}

/// Something the import could not carry over, or the operator must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The rule it came from (`priority-10`, `default`); `None` for the listener.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "rule {rule}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The configuration written, and what the operator must know about it.
pub struct Imported {
    /// The YAML document.
    pub yaml: String,
    /// In the order met: rules by priority, then the listener.
    pub notes: Vec<Note>,
    /// The environment variables the document's `${NAME}` placeholders need.
    pub placeholders: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not the JSON of `aws elbv2 {command}` (at {at})")]
    NotAwsJson {
        file: String,
        command: &'static str,
        /// Where in the document, e.g. `Rules[3].Priority`.
        at: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{file}: Rules[{index}] has Priority `{priority}`, neither a number nor `default` (is this `aws elbv2 describe-rules` JSON?)"
    )]
    BadPriority {
        file: String,
        index: usize,
        priority: String,
    },
    #[error(
        "{file} is not the JSON of `aws elbv2 {command}`: it has no top-level `{key}` (run `aws elbv2 {command} ... --output json`)"
    )]
    NoKey {
        file: String,
        command: &'static str,
        key: &'static str,
    },
    #[error("{file} lists no listener")]
    NoListener { file: String },
    #[error("no rule could be carried over, so there is nothing to write")]
    NothingToWrite,
}

/// Reads the files named on the command line and imports them.
pub fn import_files(
    rules: &Path,
    listeners: Option<&Path>,
    targets: &[Target],
) -> Result<Imported, ImportError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let rules_text = read(rules)?;
    let listeners_text = listeners.map(read).transpose()?;
    import(
        &Source {
            name: rules.display().to_string(),
            text: &rules_text,
        },
        listeners
            .zip(listeners_text.as_deref())
            .map(|(path, text)| Source {
                name: path.display().to_string(),
                text,
            })
            .as_ref(),
        targets,
    )
}

/// One input document and the name messages call it by.
pub struct Source<'a> {
    pub name: String,
    pub text: &'a str,
}

/// The import itself, on text: `rules` is `describe-rules` output,
/// `listeners` `describe-listeners` output.
pub fn import(
    rules: &Source<'_>,
    listeners: Option<&Source<'_>>,
    targets: &[Target],
) -> Result<Imported, ImportError> {
    let described: aws::DescribeRules = parse(rules, "describe-rules", "Rules")?;
    let listener = match listeners {
        Some(source) => {
            let described_listeners: aws::DescribeListeners =
                parse(source, "describe-listeners", "Listeners")?;
            let (listener, note) = pick_listener(described_listeners.listeners, &described.rules)
                .ok_or_else(|| ImportError::NoListener {
                file: source.name.clone(),
            })?;
            Some((listener, note))
        }
        None => None,
    };
    let (listener, listener_note) = listener.unzip();
    let ordered = in_priority_order(described.rules, &rules.name)?;

    let mut importer = Importer::new(targets);
    let mut rules_out = Vec::new();
    let has_default = ordered.iter().any(|(priority, _)| priority.is_none());
    let mut names_taken = Vec::new();
    for (priority, rule) in &ordered {
        let mut name = match priority {
            Some(number) => format!("priority-{number}"),
            None => "default".to_owned(),
        };
        // ALB allows one rule per priority; a file that breaks this (pasted
        // together by hand) still gets names `check` accepts.
        if names_taken.contains(&name) {
            let unique = (2..)
                .map(|n| format!("{name}-{n}"))
                .find(|candidate| !names_taken.contains(candidate))
                .expect("an unbounded range always has an unused name");
            importer.note(
                &unique,
                format!("another rule has the same priority; named `{unique}` and kept after it"),
            );
            name = unique;
        }
        names_taken.push(name.clone());
        for key in rule.other.keys() {
            importer.note(
                &name,
                format!("`{key}` has no equivalent in portcullis; not carried over"),
            );
        }
        if let Some(rule) = importer.rule(&name, &rule.conditions, &rule.actions) {
            rules_out.push(rule);
        }
    }
    let (mut listener_out, listener_notes) = listener_block(listener.as_ref());
    let listener_default = listener
        .as_ref()
        .filter(|listener| !has_default && !listener.default_actions.is_empty());
    if let Some(listener) = listener_default
        && let Some(rule) = importer.rule("default", &[], &listener.default_actions)
    {
        rules_out.push(rule);
    }
    importer.notes.extend(listener_note.flatten());
    importer.notes.extend(listener_notes);
    for target in targets {
        if !importer.used_targets.contains(&target.name) {
            importer.notes.push(Note {
                rule: None,
                message: format!(
                    "--target {}: no rule forwards to a target group of that name",
                    target.name
                ),
            });
        }
    }
    if rules_out.is_empty() {
        return Err(ImportError::NothingToWrite);
    }

    let mut placeholders = Vec::new();
    if importer.needs_sessions {
        placeholders.push("SESSION_SECRET".to_owned());
    }
    if listener_out.has_tls {
        placeholders.extend(TLS_PLACEHOLDERS.map(str::to_owned));
    }
    placeholders.extend(importer.placeholders);
    listener_out.map.put("rules", Node::Seq(rules_out));
    Ok(Imported {
        yaml: document(
            importer.needs_sessions,
            listener_out.map.build(),
            &placeholders,
        ),
        notes: importer.notes,
        placeholders,
    })
}

/// The YAML text: a header listing the variables to set, `sessions` when a
/// rule logs in, and the one listener.
fn document(sessions: bool, listener: Node, placeholders: &[String]) -> String {
    let mut document = MapBuilder::new();
    if sessions {
        document.put(
            "sessions",
            MapBuilder::new()
                .put(
                    "secrets",
                    Node::Seq(vec![Node::Env("SESSION_SECRET".to_owned())]),
                )
                .build(),
        );
    }
    document.put("listeners", Node::Seq(vec![listener]));
    let mut text = String::from("# Imported from AWS ALB rules by `portcullis import-alb`.\n");
    if !placeholders.is_empty() {
        text.push_str(
            "# Set these environment variables, then run `portcullis check --config FILE`:\n",
        );
        for name in placeholders {
            text.push_str(&format!("#   {name}\n"));
        }
    }
    text.push_str(&yaml::to_string(&document.build()));
    text
}

const TLS_PLACEHOLDERS: [&str; 2] = ["TLS_CERTIFICATE_FILE", "TLS_PRIVATE_KEY_FILE"];

/// The rules by `Priority`, lowest number first, the default rule (`None`) last.
fn in_priority_order(
    rules: Vec<aws::Rule>,
    file: &str,
) -> Result<Vec<(Option<u64>, aws::Rule)>, ImportError> {
    let mut ordered = Vec::with_capacity(rules.len());
    for (index, rule) in rules.into_iter().enumerate() {
        let priority = if rule.is_default || rule.priority == "default" {
            None
        } else {
            let number =
                rule.priority
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ImportError::BadPriority {
                        file: file.to_owned(),
                        index,
                        priority: rule.priority.clone(),
                    })?;
            Some(number)
        };
        ordered.push((priority, rule));
    }
    // Stable, so that two rules of one priority keep the file's order.
    ordered.sort_by_key(|(priority, _)| priority.unwrap_or(u64::MAX));
    Ok(ordered)
}

/// The listener the rules belong to: the one whose ARN the rules' ARNs
/// extend (`listener-rule/app/LB/ID/LISTENER/RULE`), else the first, with a
/// note when there was a choice.
fn pick_listener(
    mut listeners: Vec<aws::Listener>,
    rules: &[aws::Rule],
) -> Option<(aws::Listener, Option<Note>)> {
    let wanted = rules.iter().find_map(|rule| {
        let arn = rule.rule_arn.as_deref()?;
        let listener_arn = arn.replacen(":listener-rule/", ":listener/", 1);
        let (listener, _rule_id) = listener_arn.rsplit_once('/')?;
        Some(listener.to_owned())
    });
    let found = wanted.and_then(|arn| {
        listeners
            .iter()
            .position(|listener| listener.listener_arn.as_deref() == Some(arn.as_str()))
    });
    let note = (found.is_none() && listeners.len() > 1).then(|| Note {
        rule: None,
        message: format!(
            "--listener lists {} listeners and none is the rules' own (by ARN); the first was used: give describe-listeners --listener-arns ARN",
            listeners.len()
        ),
    });
    let position = found.unwrap_or(0);
    (position < listeners.len()).then(|| (listeners.swap_remove(position), note))
}

/// The listener's address and TLS, without its rules yet.
struct ListenerOut {
    map: MapBuilder,
    has_tls: bool,
}

fn listener_block(listener: Option<&aws::Listener>) -> (ListenerOut, Vec<Note>) {
    let mut notes = Vec::new();
    let (port, tls) = match listener {
        Some(listener) => {
            let protocol = listener.protocol.as_deref().unwrap_or("HTTPS");
            let tls = !protocol.eq_ignore_ascii_case("HTTP");
            if tls && !listener.certificates.is_empty() {
                let arns: Vec<&str> = listener
                    .certificates
                    .iter()
                    .map(|certificate| certificate.certificate_arn.as_str())
                    .collect();
                notes.push(Note {
                    rule: None,
                    message: format!(
                        "the listener's certificates stay in ACM ({}): give a PEM certificate and key for the same names as ${{TLS_CERTIFICATE_FILE}} and ${{TLS_PRIVATE_KEY_FILE}} (more under tls.certificates, chosen by SNI)",
                        arns.join(", ")
                    ),
                });
            }
            (listener.port.unwrap_or(if tls { 443 } else { 80 }), tls)
        }
        None => {
            notes.push(Note {
                rule: None,
                message: "no --listener: listening on 0.0.0.0:443 with TLS from ${TLS_CERTIFICATE_FILE} and ${TLS_PRIVATE_KEY_FILE}; change `address` and `tls` if that is not what you want".to_owned(),
            });
            (443, true)
        }
    };
    let mut map = MapBuilder::new();
    map.put("address", Node::str(format!("0.0.0.0:{port}")));
    if tls {
        map.put(
            "tls",
            MapBuilder::new()
                .put(
                    "certificate_file",
                    Node::Env(TLS_PLACEHOLDERS[0].to_owned()),
                )
                .put(
                    "private_key_file",
                    Node::Env(TLS_PLACEHOLDERS[1].to_owned()),
                )
                .build(),
        );
    }
    (ListenerOut { map, has_tls: tls }, notes)
}

/// What the import gathers while it converts rules.
struct Importer<'a> {
    targets: &'a [Target],
    /// Names of the `--target`s some rule used.
    used_targets: Vec<String>,
    notes: Vec<Note>,
    /// `${NAME}`s written so far, in order, each once.
    placeholders: Vec<String>,
    /// A rule logs in with a session: `sessions.secrets` is needed.
    needs_sessions: bool,
    /// Session cookie name -> the IdP client that uses it, to keep two
    /// clients apart (portcullis refuses a shared name on one listener).
    cookies: HashMap<String, String>,
}

impl<'a> Importer<'a> {
    fn new(targets: &'a [Target]) -> Self {
        Importer {
            targets,
            used_targets: Vec::new(),
            notes: Vec::new(),
            placeholders: Vec::new(),
            needs_sessions: false,
            cookies: HashMap::new(),
        }
    }

    fn note(&mut self, rule: &str, message: impl Into<String>) {
        self.notes.push(Note {
            rule: Some(rule.to_owned()),
            message: message.into(),
        });
    }

    /// A `${NAME}` placeholder, remembered for the list of variables to set.
    fn placeholder(&mut self, name: String) -> Node {
        if !self.placeholders.contains(&name) {
            self.placeholders.push(name.clone());
        }
        Node::Env(name)
    }

    /// One rule, or `None` (with a note saying why) when it is left out.
    fn rule(
        &mut self,
        name: &str,
        conditions: &[aws::Condition],
        actions: &[aws::Action],
    ) -> Option<Node> {
        let converted = self
            .conditions(name, conditions)
            .and_then(|conditions| Ok((conditions, self.actions(name, actions)?)));
        match converted {
            Ok((conditions, actions)) => {
                let mut rule = MapBuilder::new();
                rule.put("name", Node::str(name));
                if let Some(conditions) = conditions {
                    rule.put("conditions", conditions);
                }
                rule.put("actions", Node::Seq(actions));
                Some(rule.build())
            }
            Err(reason) => {
                self.note(
                    name,
                    format!("left out: {reason}; requests it matched now fall to the next rule, so write it by hand"),
                );
                None
            }
        }
    }
}

/// An environment variable name from any text: upper-case, every character
/// other than a letter or digit as `_`.
fn env_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `source` as `T`, after checking that it is a JSON object with `key`
/// (`Rules`, `Listeners`), so that another document gets a plain answer.
fn parse<T: DeserializeOwned>(
    source: &Source<'_>,
    command: &'static str,
    key: &'static str,
) -> Result<T, ImportError> {
    let not_aws_json = |at: String, source_error| ImportError::NotAwsJson {
        file: source.name.clone(),
        command,
        at,
        source: source_error,
    };
    let value: serde_json::Value = serde_json::from_str(source.text)
        .map_err(|error| not_aws_json("the top".to_owned(), error))?;
    if value.get(key).is_none() {
        return Err(ImportError::NoKey {
            file: source.name.clone(),
            command,
            key,
        });
    }
    serde_path_to_error::deserialize(value)
        .map_err(|error| not_aws_json(error.path().to_string(), error.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_rules(json: &str) -> Imported {
        let source = Source {
            name: "rules.json".to_owned(),
            text: json,
        };
        import(&source, None, &[]).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The rule names of the imported document, in order.
    fn names(yaml: &str) -> Vec<&str> {
        yaml.lines()
            .filter_map(|line| line.trim().strip_prefix("- name: "))
            .map(|name| name.trim_matches('"'))
            .collect()
    }

    const FIXED: &str =
        r#"[{"Type": "fixed-response", "Order": 1, "FixedResponseConfig": {"StatusCode": "200"}}]"#;

    #[test]
    fn priorities_are_numbers_and_default_comes_last() {
        let rules: Vec<String> = ["default", "100", "20", "3"]
            .iter()
            .map(|priority| {
                format!(
                    r#"{{"Priority": "{priority}", "IsDefault": {}, "Conditions": [], "Actions": {FIXED}}}"#,
                    *priority == "default"
                )
            })
            .collect();
        let imported = import_rules(&format!(r#"{{"Rules": [{}]}}"#, rules.join(",")));
        assert_eq!(
            names(&imported.yaml),
            ["priority-3", "priority-20", "priority-100", "default"]
        );
    }

    #[test]
    fn a_repeated_priority_gets_a_name_of_its_own() {
        let rule = format!(r#"{{"Priority": "7", "Conditions": [], "Actions": {FIXED}}}"#);
        let imported = import_rules(&format!(r#"{{"Rules": [{rule}, {rule}]}}"#));
        assert_eq!(names(&imported.yaml), ["priority-7", "priority-7-2"]);
        assert_eq!(imported.notes[0].rule.as_deref(), Some("priority-7-2"));
    }

    #[test]
    fn listeners_are_told_apart_by_the_rules_arn() {
        let listeners = r#"{"Listeners": [
            {"ListenerArn": "arn:aws:elasticloadbalancing:us-west-2:1:listener/app/lb/1/aaa", "Port": 80, "Protocol": "HTTP"},
            {"ListenerArn": "arn:aws:elasticloadbalancing:us-west-2:1:listener/app/lb/1/bbb", "Port": 8443, "Protocol": "HTTPS"}]}"#;
        let with_arn = |arn: &str| {
            let rules = format!(
                r#"{{"Rules": [{{"RuleArn": "{arn}", "Priority": "1", "Actions": {FIXED}}}]}}"#
            );
            let source = |text| Source {
                name: "file".to_owned(),
                text,
            };
            import(&source(&rules), Some(&source(listeners)), &[]).unwrap()
        };
        let ours =
            with_arn("arn:aws:elasticloadbalancing:us-west-2:1:listener-rule/app/lb/1/bbb/r1");
        assert!(
            ours.yaml.contains("address: \"0.0.0.0:8443\""),
            "{}",
            ours.yaml
        );
        assert!(
            ours.notes
                .iter()
                .all(|note| !note.message.contains("none is"))
        );
        let unknown =
            with_arn("arn:aws:elasticloadbalancing:us-west-2:1:listener-rule/app/lb/1/ccc/r1");
        assert!(
            unknown.yaml.contains("address: \"0.0.0.0:80\""),
            "{}",
            unknown.yaml
        );
        assert!(
            unknown
                .notes
                .iter()
                .any(|note| note.message.contains("none is the rules' own"))
        );
    }

    #[test]
    fn legacy_and_config_forms_give_the_same_conditions() {
        let legacy = r#"[
            {"Field": "host-header", "Values": ["app.example.com"]},
            {"Field": "path-pattern", "Values": ["/a/*", "/b"]},
            {"Field": "http-request-method", "Values": ["GET"]},
            {"Field": "source-ip", "Values": ["10.0.0.0/8"]}]"#;
        let config = r#"[
            {"Field": "host-header", "HostHeaderConfig": {"Values": ["app.example.com"]}},
            {"PathPatternConfig": {"Values": ["/a/*", "/b"]}},
            {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}},
            {"Field": "source-ip", "Values": ["10.0.0.0/8"], "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}]"#;
        let yaml = |conditions: &str| {
            import_rules(&format!(
                r#"{{"Rules": [{{"Priority": "1", "Conditions": {conditions}, "Actions": {FIXED}}}]}}"#
            ))
            .yaml
        };
        let from_legacy = yaml(legacy);
        assert_eq!(from_legacy, yaml(config));
        assert!(
            from_legacy.contains(
                "        conditions:\n          host:\n            - \"app.example.com\"\n          path:\n            - \"/a/*\"\n            - \"/b\"\n          http_request_method:\n            - \"GET\"\n          source_ip:\n            - \"10.0.0.0/8\"\n"
            ),
            "{from_legacy}"
        );
    }

    #[test]
    fn an_unknown_condition_leaves_its_rule_out_and_says_so() {
        let imported = import_rules(&format!(
            r#"{{"Rules": [
                {{"Priority": "1", "Conditions": [{{"Field": "ssl-client-cert", "Values": ["x"]}}], "Actions": {FIXED}}},
                {{"Priority": "2", "Conditions": [], "Actions": {FIXED}}}]}}"#
        ));
        assert_eq!(names(&imported.yaml), ["priority-2"]);
        assert_eq!(imported.notes[0].rule.as_deref(), Some("priority-1"));
        assert!(imported.notes[0].message.contains("ssl-client-cert"));
    }

    #[test]
    fn targets_parse_as_name_equals_url() {
        assert_eq!(
            "app=http://10.0.0.5:8080".parse(),
            Ok(Target {
                name: "app".to_owned(),
                url: "http://10.0.0.5:8080".to_owned()
            })
        );
        assert!("app".parse::<Target>().is_err());
        assert!("=http://x".parse::<Target>().is_err());
    }

    #[test]
    fn placeholder_names_are_upper_case_with_underscores() {
        assert_eq!(env_name("priority-10"), "PRIORITY_10");
        assert_eq!(env_name("my.targets-2"), "MY_TARGETS_2");
    }
}
