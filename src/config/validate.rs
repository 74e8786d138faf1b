//! Raw structs → validated [`Config`], collecting every problem on the way.
//!
//! Each check pushes a [`Problem`] and carries on; a part that failed comes
//! back as `None` so that nothing built from it pretends to be valid. The only
//! outside world touched is the [`Environment`] (for `*_file` twins), which the
//! caller passes in.
//!
//! This file holds the entry point, the key path type and the small value
//! checks every part shares; the parts are [`sections`] (admin, sessions,
//! signing, limits), [`listeners`] (listeners, rules, action lists),
//! [`actions`] (the terminal actions) and [`auth`] (the authenticate actions).

mod actions;
mod auth;
mod conditions;
mod listeners;
mod sections;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::model::*;
use super::raw::*;
use super::unknown::{Segment, format_path, is_typo_of};
use super::{Environment, Problem};

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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
            watch_config: raw.watch_config.unwrap_or(false),
            listeners: listeners?,
            fingerprint: String::new(),
        })
    }

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
