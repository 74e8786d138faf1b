//! Raw structs → validated [`Config`], collecting every problem on the way.
//!
//! Each check pushes a [`Problem`] and carries on; a part that failed comes
//! back as `None` so that nothing built from it pretends to be valid. The only
//! outside world touched is the [`Environment`] (for `*_file` twins), which the
//! caller passes in.
//!
//! This file holds the sections, listeners, rules and terminal actions; the
//! two authenticate actions are in [`auth`].

mod auth;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use url::Url;

use super::model::*;
use super::raw::*;
use super::unknown::{Segment, format_path, is_typo_of};
use super::{Environment, Problem};

/// The ALB default for `forward`: how long the upstream has to answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// What `x-amzn-oidc-data`'s `signer` says when the file does not: shaped like
/// an ALB ARN because some verifiers expect one.
const DEFAULT_SIGNER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis/0";
/// hyper's HTTP/1 reader refuses (panics on) a smaller buffer than this.
const MIN_HEADER_BYTES: u64 = 8 * 1024;
/// ALB's limit on a path or host pattern.
const MAX_PATTERN_LEN: usize = 128;

/// Validates `raw`. `unknown` holds the paths of keys already reported as
/// unknown, so that an entry holding only a misspelt action is not reported a
/// second time as empty.
pub fn validate(
    raw: RawConfig,
    env: &dyn Environment,
    unknown: &[Vec<Segment>],
) -> Result<Config, Vec<Problem>> {
    let mut v = Validator {
        env,
        unknown: unknown.to_vec(),
        problems: Vec::new(),
    };
    let config = v.config(raw);
    match (config, v.problems.is_empty()) {
        (Some(config), true) => Ok(config),
        (_, false) => Err(v.problems),
        // An entry holding only unknown keys is left to their problems.
        (None, true) if !unknown.is_empty() => Err(v.problems),
        // Every other `None` is returned after pushing a problem; this arm
        // only guards against a check that forgot to.
        (None, true) => Err(vec![Problem {
            path: String::new(),
            message: "the configuration is invalid but no check said why (a bug in portcullis)"
                .to_string(),
            fix: "please report it with the configuration file".to_string(),
        }]),
    }
}

/// A key path under construction, e.g. `listeners[0].rules[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct At(Vec<Segment>);

impl At {
    fn root() -> Self {
        At(Vec::new())
    }

    fn key(&self, key: &str) -> At {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        At(segments)
    }

    fn index(&self, index: usize) -> At {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        At(segments)
    }

    /// The last key of the path, for messages.
    fn last_key(&self) -> &str {
        self.0
            .iter()
            .rev()
            .find_map(|segment| match segment {
                Segment::Key(key) => Some(key.as_str()),
                Segment::Index(_) => None,
            })
            .unwrap_or_default()
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_path(&self.0))
    }
}

struct Validator<'a> {
    env: &'a dyn Environment,
    /// Paths of unknown keys: from `serde_ignored`, plus those found in
    /// the authenticate actions as they are validated.
    unknown: Vec<Vec<Segment>>,
    problems: Vec<Problem>,
}

/// A validated rule and where its authenticate action sits, for the
/// listener-wide session cookie check.
struct CheckedRule {
    rule: Rule,
    authenticate_at: Option<At>,
}

/// A rule's action list, validated: the authenticate action with its path.
struct CheckedActions {
    authenticate: Option<(AuthenticateAction, At)>,
    terminal: TerminalAction,
}

/// One entry of an action list, validated on its own.
// Short-lived, one at a time: not worth boxing.
#[allow(clippy::large_enum_variant)]
enum Step {
    Authenticate(&'static str, Option<AuthenticateAction>),
    Terminal(Option<TerminalAction>),
}

impl Validator<'_> {
    fn problem(&mut self, at: &At, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            path: at.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn required<T>(&mut self, at: &At, value: Option<T>, fix: &str) -> Option<T> {
        if value.is_none() && !self.misspelt(at) {
            self.problem(at, format!("`{}` is required", at.last_key()), fix);
        }
        value
    }

    /// Whether an unknown key beside `at` is an obvious misspelling of it: its
    /// problem already says "did you mean", so "is required" would be noise.
    fn misspelt(&self, at: &At) -> bool {
        let Some((Segment::Key(key), parent)) = at.0.split_last() else {
            return false;
        };
        self.unknown.iter().any(|path| match path.split_last() {
            Some((Segment::Key(unknown), unknown_parent)) => {
                unknown_parent == parent && is_typo_of(unknown, key)
            }
            Some((Segment::Index(_), _)) | None => false,
        })
    }

    /// Whether a key under `at` was already reported as unknown.
    fn has_unknown_under(&self, at: &At) -> bool {
        self.unknown
            .iter()
            .any(|path| path.len() > at.0.len() && path.starts_with(&at.0))
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let root = At::root();
        let authenticating = first_authenticating_rule(&raw);
        let admin = raw.admin.map(|admin| self.admin(&root.key("admin"), admin));
        let sessions = self.sessions(
            &root.key("sessions"),
            raw.sessions.unwrap_or_default(),
            authenticating,
        );
        let signing = self.signing(&root.key("signing"), raw.signing.unwrap_or_default());
        let limits = self.limits(&root.key("limits"), raw.limits.unwrap_or_default());
        let shutdown_timeout = self.duration(
            &root.key("shutdown_timeout"),
            raw.shutdown_timeout,
            SHUTDOWN_TIMEOUT,
        );
        let listeners = self.listeners(&root.key("listeners"), raw.listeners);
        Some(Config {
            admin: optional(admin)?,
            sessions: sessions?,
            signing: signing?,
            limits: limits?,
            shutdown_timeout: shutdown_timeout?,
            listeners: listeners?,
        })
    }

    fn admin(&mut self, at: &At, raw: RawAdmin) -> Option<AdminConfig> {
        let address = self.socket_addr(&at.key("address"), raw.address)?;
        Some(AdminConfig { address })
    }

    fn sessions(
        &mut self,
        at: &At,
        raw: RawSessions,
        authenticating: Option<At>,
    ) -> Option<SessionsConfig> {
        let secrets = self.session_secrets(at, raw.secrets, raw.secrets_file);
        if let (Some(secrets), Some(rule)) = (&secrets, &authenticating)
            && secrets.is_empty()
        {
            self.problem(
                &at.key("secrets"),
                format!("no session secret, but {rule} authenticates"),
                "add a base64 32-byte key to sessions.secrets (`portcullis keygen` prints one), \
                 or name a file with sessions.secrets_file",
            );
        }

        let store = self.choice(
            &at.key("store"),
            raw.store,
            "cookie",
            &[("cookie", "cookie"), ("redis", "redis")],
        );
        let store = match (store, raw.redis) {
            (Some("redis"), redis) => {
                let at = at.key("redis");
                let redis = redis.unwrap_or_default();
                let url = self.secret_twin(&at, "url", redis.url, redis.url_file);
                if let Some(url) = &url {
                    self.redis_url(&at.key("url"), url.expose());
                }
                url.map(|url| SessionStoreKind::Redis { url })
            }
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("redis"),
                    "redis settings are given but store is cookie",
                    "set `store: redis` to keep sessions in Redis, or remove the redis section",
                );
                None
            }
            (Some(_), None) => Some(SessionStoreKind::Cookie),
            (None, _) => None,
        };
        Some(SessionsConfig {
            secrets: secrets?,
            store: store?,
        })
    }

    /// `secrets` or `secrets_file` (one per line), each base64 of 32 bytes.
    fn session_secrets(
        &mut self,
        at: &At,
        secrets: Option<Vec<String>>,
        secrets_file: Option<String>,
    ) -> Option<Vec<SessionKey>> {
        let entries: Vec<(At, String)> = match (secrets, secrets_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("secrets_file"),
                    "both secrets and secrets_file are given",
                    "keep one of them",
                );
                return None;
            }
            (Some(secrets), None) => secrets
                .into_iter()
                .enumerate()
                .map(|(index, secret)| (at.key("secrets").index(index), secret))
                .collect(),
            (None, Some(file)) => {
                let file_at = at.key("secrets_file");
                let text = self.read_file(&file_at, &file)?;
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(|line| (file_at.clone(), line.to_string()))
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        let keys: Vec<Option<SessionKey>> = entries
            .into_iter()
            .map(|(at, secret)| self.session_key(&at, &secret))
            .collect();
        keys.into_iter().collect()
    }

    fn session_key(&mut self, at: &At, secret: &str) -> Option<SessionKey> {
        let fix = "use 32 random bytes in base64, e.g. from `portcullis keygen` or `openssl rand -base64 32`";
        // The value is a secret: messages say what is wrong with it, never what it is.
        match decode_base64(secret.trim()) {
            Some(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) => Some(SessionKey(key)),
                Err(_) => {
                    self.problem(
                        at,
                        format!(
                            "a session secret must be 32 bytes; this one decodes to {}",
                            bytes.len()
                        ),
                        fix,
                    );
                    None
                }
            },
            None => {
                self.problem(at, "a session secret is not valid base64", fix);
                None
            }
        }
    }

    fn redis_url(&mut self, at: &At, url: &str) {
        // Never echo the URL: it may carry a password.
        match Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {}
            Ok(url) => {
                let scheme = url.scheme().to_string();
                self.problem(
                    at,
                    format!("the Redis URL has scheme `{scheme}`"),
                    "use redis://HOST:PORT, or rediss:// for TLS",
                );
            }
            Err(error) => self.problem(
                at,
                format!("the Redis URL does not parse: {error}"),
                "use redis://HOST:PORT, or rediss:// for TLS",
            ),
        }
    }

    fn signing(&mut self, at: &At, raw: RawSigning) -> Option<SigningConfig> {
        let private_key_pem = match raw.private_key_file {
            Some(file) => {
                let at = at.key("private_key_file");
                let pem = self.read_file(&at, &file);
                pem.and_then(|pem| self.pkcs8_pem(&at, &file, pem))
                    .map(|pem| Some(Secret::new(pem)))
            }
            None => Some(None),
        };
        let key_id = match raw.key_id {
            Some(key_id) if !is_uuid(&key_id) => {
                self.problem(
                    &at.key("key_id"),
                    format!("`{key_id}` is not a UUID"),
                    "use a UUID such as 6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44 (aws-jwt-verify \
                     requires one), or leave key_id out to derive one from the key",
                );
                None
            }
            key_id => Some(key_id),
        };
        let signer = raw.signer.unwrap_or_else(|| DEFAULT_SIGNER.to_string());
        let encoding = self.choice(
            &at.key("encoding"),
            raw.encoding,
            TokenEncoding::Alb,
            &[("alb", TokenEncoding::Alb), ("jws", TokenEncoding::Jws)],
        );
        Some(SigningConfig {
            private_key_pem: private_key_pem?,
            key_id: key_id?,
            signer,
            encoding: encoding?,
        })
    }

    fn pkcs8_pem(&mut self, at: &At, file: &str, pem: String) -> Option<String> {
        if pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Some(pem);
        }
        let fix = if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            format!("convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in {file}")
        } else {
            "give a P-256 key in PKCS#8 PEM (`portcullis keygen` prints one)".to_string()
        };
        self.problem(
            at,
            format!("{file} is not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)"),
            fix,
        );
        None
    }

    fn limits(&mut self, at: &At, raw: RawLimits) -> Option<Limits> {
        let defaults = Limits::default();
        let header_read_timeout = self.duration(
            &at.key("header_read_timeout"),
            raw.header_read_timeout,
            defaults.header_read_timeout,
        );
        let header_read_timeout =
            self.positive(&at.key("header_read_timeout"), header_read_timeout);
        let idle_timeout = self.duration(
            &at.key("idle_timeout"),
            raw.idle_timeout,
            defaults.idle_timeout,
        );
        let idle_timeout = self.positive(&at.key("idle_timeout"), idle_timeout);
        let max_header_bytes = match raw.max_header_bytes {
            None => Some(defaults.max_header_bytes),
            Some(bytes) if bytes >= MIN_HEADER_BYTES => usize::try_from(bytes).ok(),
            Some(bytes) => {
                self.problem(
                    &at.key("max_header_bytes"),
                    format!("{bytes} bytes is below the HTTP/1 minimum of {MIN_HEADER_BYTES}"),
                    format!("use at least {MIN_HEADER_BYTES}, or leave it out for 64 KiB"),
                );
                None
            }
        };
        let max_connections = match raw.max_connections {
            None => Some(None),
            Some(0) => {
                self.problem(
                    &at.key("max_connections"),
                    "max_connections is 0, so no connection could ever be served",
                    "give a positive number, or leave it out for no limit",
                );
                None
            }
            Some(count) => usize::try_from(count).ok().map(Some),
        };
        Some(Limits {
            header_read_timeout: header_read_timeout?,
            max_header_bytes: max_header_bytes?,
            idle_timeout: idle_timeout?,
            max_connections: max_connections?,
        })
    }

    fn listeners(&mut self, at: &At, raw: Option<Vec<RawListener>>) -> Option<Vec<ListenerConfig>> {
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            self.problem(
                at,
                "no listeners",
                "add a listener with an address (e.g. 0.0.0.0:8443) and rules",
            );
            return None;
        }
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        let mut listeners = Vec::new();
        for (index, listener) in raw.into_iter().enumerate() {
            let at = at.index(index);
            let address = self.socket_addr(&at.key("address"), listener.address.clone());
            if let Some(address) = address
                && address.port() != 0
            {
                if let Some(first) = seen.get(&address) {
                    self.problem(
                        &at.key("address"),
                        format!("{address} is also the address of listeners[{first}]"),
                        "give each listener its own address, or merge their rules into one listener",
                    );
                } else {
                    seen.insert(address, index);
                }
            }
            listeners.push(self.listener(&at, address, listener));
        }
        listeners.into_iter().collect()
    }

    fn listener(
        &mut self,
        at: &At,
        address: Option<SocketAddr>,
        raw: RawListener,
    ) -> Option<ListenerConfig> {
        let tls = raw.tls.map(|tls| self.tls(&at.key("tls"), tls));
        let rules_at = at.key("rules");
        let raw_rules = raw.rules.unwrap_or_default();
        if raw_rules.is_empty() {
            self.problem(
                &rules_at,
                "a listener without rules answers every request with 404",
                "add at least one rule, e.g. one whose only action is forward",
            );
        }
        let names: Vec<Option<String>> = raw_rules.iter().map(|rule| rule.name.clone()).collect();
        self.duplicate_rule_names(&rules_at, &names);
        let rules: Vec<Option<CheckedRule>> = raw_rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| self.rule(&rules_at.index(index), index + 1, rule))
            .collect();
        self.session_cookie_clashes(&rules);
        let rules: Option<Vec<Rule>> = rules
            .into_iter()
            .map(|checked| checked.map(|checked| checked.rule))
            .collect();
        if rules.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        Some(ListenerConfig {
            address: address?,
            tls: optional(tls)?,
            rules: rules?,
        })
    }

    fn tls(&mut self, at: &At, raw: RawTls) -> Option<TlsConfig> {
        let default_certificate =
            self.certificate_files(at, raw.certificate_file, raw.private_key_file);
        let certificates: Option<Vec<CertificateFiles>> = raw
            .certificates
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, certificate)| {
                self.certificate_files(
                    &at.key("certificates").index(index),
                    certificate.certificate_file,
                    certificate.private_key_file,
                )
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let reload_interval = self.duration(
            &at.key("reload_interval"),
            raw.reload_interval,
            RELOAD_INTERVAL,
        );
        let reload_interval = self.positive(&at.key("reload_interval"), reload_interval);
        Some(TlsConfig {
            default_certificate: default_certificate?,
            certificates: certificates?,
            reload_interval: reload_interval?,
        })
    }

    fn certificate_files(
        &mut self,
        at: &At,
        certificate_file: Option<String>,
        private_key_file: Option<String>,
    ) -> Option<CertificateFiles> {
        let certificate_file = self.required(
            &at.key("certificate_file"),
            certificate_file,
            "name the PEM certificate chain file, e.g. /etc/portcullis/tls.crt",
        );
        let private_key_file = self.required(
            &at.key("private_key_file"),
            private_key_file,
            "name the PEM private key file, e.g. /etc/portcullis/tls.key",
        );
        Some(CertificateFiles {
            certificate_file: PathBuf::from(certificate_file?),
            private_key_file: PathBuf::from(private_key_file?),
        })
    }

    /// `number` is the rule's 1-based position, for its default name.
    fn rule(&mut self, at: &At, number: usize, raw: RawRule) -> Option<CheckedRule> {
        let name = match raw.name {
            Some(name) if name.trim().is_empty() => {
                self.problem(
                    &at.key("name"),
                    "the rule name is empty",
                    format!("give it a name, or leave name out for rule-{number}"),
                );
                None
            }
            Some(name) => Some(name),
            None => Some(format!("rule-{number}")),
        };
        let conditions = self.conditions(&at.key("conditions"), raw.conditions.unwrap_or_default());
        let actions = self.actions(&at.key("actions"), raw.actions.unwrap_or_default());
        let CheckedActions {
            authenticate,
            terminal,
        } = actions?;
        let (authenticate, authenticate_at) = authenticate.unzip();
        Some(CheckedRule {
            rule: Rule {
                name: name?,
                conditions: conditions?,
                authenticate,
                action: terminal,
            },
            authenticate_at,
        })
    }

    fn conditions(&mut self, at: &At, raw: RawConditions) -> Option<Conditions> {
        let host = raw
            .host
            .map(|hosts| self.host_patterns(&at.key("host"), hosts));
        let path = raw
            .path
            .map(|paths| self.path_patterns(&at.key("path"), paths));
        Some(Conditions {
            host: optional(host)?.unwrap_or_default(),
            path: optional(path)?.unwrap_or_default(),
        })
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

    /// An action list: an optional authenticate action, then exactly one
    /// terminal action, which must come last.
    fn actions(&mut self, at: &At, raw: Vec<RawAction>) -> Option<CheckedActions> {
        if raw.is_empty() {
            self.problem(
                at,
                "the rule has no actions",
                "give it a terminal action: forward, fixed_response or redirect",
            );
            return None;
        }
        let mut valid = true;
        // Whether an entry was already reported as broken (unknown key, two
        // keys, empty): then "no terminal action" would only repeat it.
        let mut saw_broken_entry = false;
        let mut authenticate: Option<(At, &'static str, Option<AuthenticateAction>)> = None;
        let mut terminal: Option<(At, Option<TerminalAction>)> = None;
        for (index, action) in raw.into_iter().enumerate() {
            let entry_at = at.index(index);
            let step = match self.action(&entry_at, action) {
                Some(step) => step,
                None => {
                    saw_broken_entry = true;
                    valid = false;
                    continue;
                }
            };
            match (step, &authenticate, &terminal) {
                (Step::Authenticate(kind, _), _, Some((terminal_at, _))) => {
                    valid = false;
                    self.problem(
                        &entry_at,
                        format!("{kind} comes after the terminal action {terminal_at}"),
                        format!("move {kind} before the terminal action"),
                    );
                }
                (Step::Authenticate(kind, _), Some((first_at, first_kind, _)), None) => {
                    valid = false;
                    self.problem(
                        &entry_at,
                        format!(
                            "a second authenticate action ({kind}); {first_at} is {first_kind}"
                        ),
                        "keep one authenticate action per rule",
                    );
                }
                (Step::Authenticate(kind, action), None, None) => {
                    authenticate = Some((entry_at.key(kind), kind, action));
                }
                (Step::Terminal(_), _, Some((first_at, _))) => {
                    valid = false;
                    self.problem(
                        &entry_at,
                        format!("a second terminal action; the rule already ends at {first_at}"),
                        "keep exactly one of forward, fixed_response, redirect, at the end",
                    );
                }
                (Step::Terminal(action), _, None) => terminal = Some((entry_at, action)),
            }
        }
        let Some((_, terminal)) = terminal else {
            if !saw_broken_entry {
                let message = match &authenticate {
                    Some((_, kind, _)) => format!("{kind} is not followed by a terminal action"),
                    None => "the rule has no terminal action".to_string(),
                };
                self.problem(
                    at,
                    message,
                    "end the list with forward, fixed_response or redirect",
                );
            }
            return None;
        };
        let authenticate = match authenticate {
            Some((at, _, action)) => Some((action?, at)),
            None => None,
        };
        if !valid {
            return None;
        }
        Some(CheckedActions {
            authenticate,
            terminal: terminal?,
        })
    }

    /// One action entry: a map with exactly one key.
    fn action(&mut self, at: &At, raw: RawAction) -> Option<Step> {
        let keys = raw.keys();
        match keys.as_slice() {
            [] => {
                if !self.has_unknown_under(at) {
                    self.problem(
                        at,
                        "the action entry is empty",
                        "write one of authenticate_oidc, authenticate_cognito, forward, \
                         fixed_response, redirect",
                    );
                }
                return None;
            }
            [_] => {}
            [_, _, ..] => {
                self.problem(
                    at,
                    format!("one action entry holds {}", keys.join(" and ")),
                    "give each action its own list entry (a `- ` line in YAML)",
                );
                return None;
            }
        }
        let RawAction {
            authenticate_oidc,
            authenticate_cognito,
            forward,
            fixed_response,
            redirect,
        } = raw;
        if let Some(raw) = authenticate_oidc {
            let oidc = self.oidc(&at.key("authenticate_oidc"), raw);
            Some(Step::Authenticate(
                "authenticate_oidc",
                oidc.map(AuthenticateAction::Oidc),
            ))
        } else if let Some(raw) = authenticate_cognito {
            let cognito = self.cognito(&at.key("authenticate_cognito"), raw);
            Some(Step::Authenticate(
                "authenticate_cognito",
                cognito.map(AuthenticateAction::Cognito),
            ))
        } else if let Some(raw) = forward {
            let forward = self.forward(&at.key("forward"), raw);
            Some(Step::Terminal(forward.map(TerminalAction::Forward)))
        } else if let Some(raw) = fixed_response {
            let fixed = self.fixed_response(&at.key("fixed_response"), raw);
            Some(Step::Terminal(fixed.map(TerminalAction::FixedResponse)))
        } else {
            let redirect = redirect.and_then(|raw| self.redirect(&at.key("redirect"), raw));
            Some(Step::Terminal(redirect.map(TerminalAction::Redirect)))
        }
    }

    fn forward(&mut self, at: &At, raw: RawForward) -> Option<ForwardAction> {
        let target_at = at.key("target");
        let target = self.required(
            &target_at,
            raw.target,
            "name the upstream, e.g. http://127.0.0.1:8080",
        );
        let target = target.and_then(|target| self.forward_target(&target_at, &target));
        let timeout = self.duration(&at.key("timeout"), raw.timeout, FORWARD_TIMEOUT);
        let timeout = self.positive(&at.key("timeout"), timeout);
        Some(ForwardAction {
            target: target?,
            timeout: timeout?,
        })
    }

    fn forward_target(&mut self, at: &At, text: &str) -> Option<Url> {
        let url = self.url(at, text)?;
        let fix = "give scheme, host and port only, e.g. http://127.0.0.1:8080; the request's \
                   path and query are passed on as they are";
        if !matches!(url.scheme(), "http" | "https") {
            self.problem(
                at,
                format!("`{text}` is not an http or https URL"),
                "forward to http://HOST:PORT or https://HOST:PORT",
            );
            return None;
        }
        if url.path() != "/" && !url.path().is_empty() {
            self.problem(at, format!("`{text}` has a path"), fix);
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.problem(at, format!("`{text}` has a query or fragment"), fix);
            return None;
        }
        Some(url)
    }

    fn fixed_response(&mut self, at: &At, raw: RawFixedResponse) -> Option<FixedResponseAction> {
        let status = self.status(
            &at.key("status"),
            raw.status,
            |status| (200..=599).contains(&status),
            "use a status from 200 to 599",
        );
        let content_type = match raw.content_type {
            Some(content_type) if content_type.trim().is_empty() => {
                self.problem(
                    &at.key("content_type"),
                    "content_type is empty",
                    "give a media type such as text/plain, or leave it out",
                );
                None
            }
            content_type => Some(content_type),
        };
        Some(FixedResponseAction {
            status: status?,
            content_type: content_type?,
            body: raw.body.unwrap_or_default(),
        })
    }

    fn redirect(&mut self, at: &At, raw: RawRedirect) -> Option<RedirectAction> {
        let status = self.status(
            &at.key("status"),
            raw.status,
            |status| matches!(status, 301 | 302),
            "use 301 (permanent) or 302 (temporary)",
        );
        let protocol = raw
            .protocol
            .unwrap_or_else(|| "#{protocol}".to_string())
            .to_ascii_lowercase();
        let protocol = if matches!(protocol.as_str(), "#{protocol}" | "http" | "https") {
            Some(protocol)
        } else {
            self.problem(
                &at.key("protocol"),
                format!("protocol `{protocol}` is not HTTP, HTTPS or #{{protocol}}"),
                "use HTTP, HTTPS, or leave it out to keep the request's protocol",
            );
            None
        };
        let host = raw.host.unwrap_or_else(|| "#{host}".to_string());
        let host = if host.trim().is_empty() {
            self.problem(
                &at.key("host"),
                "host is empty",
                "give a host name, or leave it out to keep the request's (#{host})",
            );
            None
        } else {
            Some(host)
        };
        let port = raw
            .port
            .map_or_else(|| "#{port}".to_string(), RawPort::into_text);
        let port = if port == "#{port}" || port.parse::<u16>().is_ok_and(|port| port != 0) {
            Some(port)
        } else {
            self.problem(
                &at.key("port"),
                format!("port `{port}` is not 1-65535 or #{{port}}"),
                "give a port number, or leave it out to keep the request's (#{port})",
            );
            None
        };
        let path = raw.path.unwrap_or_else(|| "/#{path}".to_string());
        let path = if path.starts_with('/') {
            Some(path)
        } else {
            self.problem(
                &at.key("path"),
                format!("path `{path}` does not start with /"),
                format!("write `/{path}` (#{{path}} has no leading /, so `/#{{path}}` keeps the request's)"),
            );
            None
        };
        let query = raw.query.unwrap_or_else(|| "#{query}".to_string());
        let query = match query.strip_prefix('?') {
            Some(bare) => {
                self.problem(
                    &at.key("query"),
                    "query starts with ?",
                    format!("write `{bare}`: the ? is added"),
                );
                None
            }
            None => Some(query),
        };
        Some(RedirectAction {
            protocol: protocol?,
            host: host?,
            port: port?,
            path: path?,
            query: query?,
            status: status?,
        })
    }

    /// A required status code that `allowed` accepts.
    fn status(
        &mut self,
        at: &At,
        raw: Option<RawStatus>,
        allowed: impl Fn(u16) -> bool,
        fix: &str,
    ) -> Option<u16> {
        let raw = self.required(at, raw, fix)?;
        match raw.to_number().and_then(|n| u16::try_from(n).ok()) {
            Some(status) if allowed(status) => Some(status),
            Some(status) => {
                self.problem(at, format!("status {status} is not allowed here"), fix);
                None
            }
            None => {
                self.problem(at, format!("{raw:?} is not a status code"), fix);
                None
            }
        }
    }

    /// Two rules with the same explicit name on one listener (checked on the
    /// names as written, so that it is found even when a rule has other problems).
    fn duplicate_rule_names(&mut self, at: &At, names: &[Option<String>]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut duplicates = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let Some(name) = name else { continue };
            match seen.get(name.as_str()) {
                Some(first) => duplicates.push((index, *first, name.clone())),
                None => {
                    seen.insert(name, index);
                }
            }
        }
        for (index, first, name) in duplicates {
            self.problem(
                &at.index(index).key("name"),
                format!("rule name `{name}` is also used by {at}[{first}]"),
                "give each rule on a listener its own name (names label metrics and logs)",
            );
        }
    }

    /// Two authenticate rules on one listener with the same session cookie but
    /// different IdP clients would overwrite each other's sessions.
    fn session_cookie_clashes(&mut self, rules: &[Option<CheckedRule>]) {
        let mut seen: HashMap<String, (String, At)> = HashMap::new();
        let mut clashes = Vec::new();
        for checked in rules.iter().flatten() {
            let (Some(action), Some(action_at)) =
                (&checked.rule.authenticate, &checked.authenticate_at)
            else {
                continue;
            };
            let (common, client) = match action {
                AuthenticateAction::Oidc(oidc) => (
                    &oidc.common,
                    format!("{} at {}", oidc.client_id, oidc.issuer),
                ),
                AuthenticateAction::Cognito(cognito) => (
                    &cognito.common,
                    format!(
                        "{} in {}",
                        cognito.user_pool_client_id, cognito.user_pool_id
                    ),
                ),
            };
            match seen.get(&common.session_cookie_name) {
                Some((first_client, first_at)) if *first_client != client => clashes.push((
                    action_at.key("session_cookie_name"),
                    common.session_cookie_name.clone(),
                    client,
                    first_at.clone(),
                    first_client.clone(),
                )),
                Some(_) => {}
                None => {
                    seen.insert(
                        common.session_cookie_name.clone(),
                        (client, action_at.clone()),
                    );
                }
            }
        }
        for (clash_at, cookie, client, first_at, first_client) in clashes {
            self.problem(
                &clash_at,
                format!(
                    "session cookie `{cookie}` (client {client}) is also used by {first_at} \
                     (client {first_client}); the two would overwrite each other's sessions"
                ),
                "give one of them its own session_cookie_name",
            );
        }
    }

    // Small value checks shared by the sections above and by `auth`.

    fn socket_addr(&mut self, at: &At, raw: Option<String>) -> Option<SocketAddr> {
        let raw = self.required(at, raw, "give IP:PORT, e.g. 0.0.0.0:8443 or [::]:8443")?;
        match raw.trim().parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.problem(
                    at,
                    format!("`{raw}` is not an IP:PORT socket address"),
                    "give IP:PORT, e.g. 0.0.0.0:8443, 127.0.0.1:9901 or [::]:8443 \
                     (a host name such as localhost is not accepted)",
                );
                None
            }
        }
    }

    fn url(&mut self, at: &At, text: &str) -> Option<Url> {
        match Url::parse(text.trim()) {
            Ok(url) if url.has_host() => Some(url),
            Ok(_) => {
                self.problem(
                    at,
                    format!("`{text}` has no host"),
                    "give an absolute URL such as https://idp.example.com",
                );
                None
            }
            Err(error) => {
                self.problem(
                    at,
                    format!("`{text}` is not a URL: {error}"),
                    "give an absolute URL such as https://idp.example.com",
                );
                None
            }
        }
    }

    fn duration(
        &mut self,
        at: &At,
        raw: Option<RawDuration>,
        default: Duration,
    ) -> Option<Duration> {
        match raw.map(|raw| raw.to_duration()) {
            None => Some(default),
            Some(Ok(duration)) => Some(duration),
            Some(Err(message)) => {
                self.problem(
                    at,
                    message,
                    "give whole seconds (600) or a duration like 90s, 15m, 1h30m, 7d",
                );
                None
            }
        }
    }

    fn positive(&mut self, at: &At, duration: Option<Duration>) -> Option<Duration> {
        let duration = duration?;
        if duration.is_zero() {
            self.problem(
                at,
                format!("`{}` is zero", at.last_key()),
                "give a duration above zero, or leave it out for the default",
            );
            return None;
        }
        Some(duration)
    }

    /// One of a fixed set of words (case-insensitive), or `default` when absent.
    fn choice<T: Copy>(
        &mut self,
        at: &At,
        raw: Option<String>,
        default: T,
        options: &[(&str, T)],
    ) -> Option<T> {
        let Some(raw) = raw else {
            return Some(default);
        };
        let found = options
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(raw.trim()));
        match found {
            Some((_, value)) => Some(*value),
            None => {
                let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
                self.problem(
                    at,
                    format!("`{raw}` is not one of {}", words.join(", ")),
                    format!("use {}", one_of(&words)),
                );
                None
            }
        }
    }

    /// A secret given inline as `key` or in a file as `{key}_file`: exactly
    /// one of the two.
    fn secret_twin(
        &mut self,
        at: &At,
        key: &str,
        value: Option<String>,
        file: Option<String>,
    ) -> Option<Secret> {
        let file_key = format!("{key}_file");
        match (value, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key(&file_key),
                    format!("both {key} and {file_key} are given"),
                    format!("keep one: {key} (may use ${{VAR}}) or {file_key}"),
                );
                None
            }
            (Some(value), None) => Some(Secret::new(value)),
            (None, Some(file)) => self.read_file(&at.key(&file_key), &file).map(Secret::new),
            (None, None) => {
                if self.misspelt(&at.key(key)) || self.misspelt(&at.key(&file_key)) {
                    return None;
                }
                self.problem(
                    &at.key(key),
                    format!("`{key}` is required"),
                    format!("give {key} (e.g. \"${{VAR}}\") or {file_key}"),
                );
                None
            }
        }
    }

    /// Reads a file through the environment, without its trailing newline.
    fn read_file(&mut self, at: &At, file: &str) -> Option<String> {
        match self.env.read_file(Path::new(file)) {
            Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()),
            Err(error) => {
                self.problem(
                    at,
                    format!("cannot read {file}: {error}"),
                    "check the path and that portcullis may read it",
                );
                None
            }
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// An optional section that, when present, may have failed:
/// absent → `Some(None)`, failed → `None`, valid → `Some(Some(_))`.
fn optional<T>(section: Option<Option<T>>) -> Option<Option<T>> {
    section.map_or(Some(None), |value| value.map(Some))
}

/// The first rule with an authenticate action, as a path, read from the raw
/// file so that it is known even when that rule has other problems.
fn first_authenticating_rule(raw: &RawConfig) -> Option<At> {
    let listeners = raw.listeners.as_deref().unwrap_or_default();
    listeners.iter().enumerate().find_map(|(l, listener)| {
        let rules = listener.rules.as_deref().unwrap_or_default();
        rules.iter().enumerate().find_map(|(r, rule)| {
            let actions = rule.actions.as_deref().unwrap_or_default();
            actions
                .iter()
                .any(|action| {
                    action.authenticate_oidc.is_some() || action.authenticate_cognito.is_some()
                })
                .then(|| At::root().key("listeners").index(l).key("rules").index(r))
        })
    })
}

/// Standard or URL-safe base64, with or without padding: `keygen`, openssl
/// and Kubernetes tooling disagree on which.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}
