//! Listeners and their rules: addresses, TLS files, conditions, the shape
//! of each action list, and the checks across the rules of one listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{At, Validator, optional};
use crate::config::model::*;
use crate::config::raw::*;

const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// A validated rule and where its authenticate action sits, for the
/// listener-wide session cookie check.
struct CheckedRule {
    rule: Rule,
    authenticate_at: Option<At>,
}

/// A rule's action list, validated: the authenticate action with its path.
struct CheckedActions {
    authenticate: Option<(Credential, At)>,
    terminal: TerminalAction,
}

/// How a rule's requests prove who sent them: a login session, or a bearer
/// JWT. A rule has at most one.
// Short-lived, one at a time: not worth boxing.
#[allow(clippy::large_enum_variant)]
enum Credential {
    Session(AuthenticateAction),
    Bearer(JwtValidationAction),
}

/// One entry of an action list, validated on its own.
// Short-lived, one at a time: not worth boxing.
#[allow(clippy::large_enum_variant)]
enum Step {
    Authenticate(&'static str, Option<Credential>),
    Terminal(Option<TerminalAction>),
}

impl Validator<'_> {
    pub(super) fn listeners(
        &mut self,
        at: &At,
        raw: Option<Vec<RawListener>>,
    ) -> Option<Vec<ListenerConfig>> {
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
        let x_forwarded_for = self.choice(
            &at.key("x_forwarded_for"),
            raw.x_forwarded_for,
            XForwardedFor::Append,
            &[
                ("append", XForwardedFor::Append),
                ("preserve", XForwardedFor::Preserve),
                ("remove", XForwardedFor::Remove),
            ],
        );
        let trusted_proxies = match raw.trusted_proxies {
            Some(blocks) => self.cidrs(&at.key("trusted_proxies"), blocks),
            None => Some(Cidr::loopback()),
        };
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
            headers: HeaderPolicy {
                allow_underscores: raw.allow_underscore_headers.unwrap_or(false),
                x_forwarded_for: x_forwarded_for?,
            },
            trusted_proxies: trusted_proxies?,
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
        let (authenticate, jwt_validation, authenticate_at) = match authenticate {
            Some((Credential::Session(action), at)) => (Some(action), None, Some(at)),
            Some((Credential::Bearer(action), _)) => (None, Some(action), None),
            None => (None, None, None),
        };
        Some(CheckedRule {
            rule: Rule {
                name: name?,
                conditions: conditions?,
                authenticate,
                jwt_validation,
                action: terminal,
            },
            authenticate_at,
        })
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
        let mut authenticate: Option<(At, &'static str, Option<Credential>)> = None;
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
                        "write one of authenticate_oidc, authenticate_cognito, jwt_validation, \
                         forward, fixed_response, redirect",
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
            jwt_validation,
            forward,
            fixed_response,
            redirect,
        } = raw;
        if let Some(raw) = authenticate_oidc {
            let oidc = self.oidc(&at.key("authenticate_oidc"), raw);
            Some(Step::Authenticate(
                "authenticate_oidc",
                oidc.map(|oidc| Credential::Session(AuthenticateAction::Oidc(oidc))),
            ))
        } else if let Some(raw) = authenticate_cognito {
            let cognito = self.cognito(&at.key("authenticate_cognito"), raw);
            Some(Step::Authenticate(
                "authenticate_cognito",
                cognito.map(|cognito| Credential::Session(AuthenticateAction::Cognito(cognito))),
            ))
        } else if let Some(raw) = jwt_validation {
            let jwt = self.jwt_validation(&at.key("jwt_validation"), raw);
            Some(Step::Authenticate(
                "jwt_validation",
                jwt.map(Credential::Bearer),
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
}
