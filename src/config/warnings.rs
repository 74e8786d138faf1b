//! What a valid configuration allows that deserves a second look before it
//! runs anywhere that matters: `portcullis check` prints it, `portcullis
//! run` logs it at WARN when it starts.

use std::fmt;

use super::model::{AuthenticateAction, Config};

/// One thing to look at twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Dotted key path of the setting that allows it.
    pub path: String,
    /// The name of the rule it concerns (`-` for a listener's setting).
    pub rule: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Config {
    /// Every warning, in file order.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut warnings = Vec::new();
        for (l, listener) in self.listeners.iter().enumerate() {
            if let Some(everyone) = listener
                .trusted_proxies
                .iter()
                .find(|block| block.prefix_len() == 0)
            {
                warnings.push(Warning {
                    path: format!("listeners[{l}].trusted_proxies"),
                    rule: "-".to_owned(),
                    message: format!(
                        "`{everyone}` makes every client a trusted front proxy: any client \
                         can name the host of its redirects and the request a forward-auth \
                         check (/oauth2/auth) is about; list only your front proxies' addresses"
                    ),
                });
            }
            for (r, rule) in listener.rules.iter().enumerate() {
                let Some(AuthenticateAction::Oidc(oidc)) = &rule.authenticate else {
                    continue;
                };
                let urls = oidc.insecure_urls();
                if urls.is_empty() {
                    continue;
                }
                let urls: Vec<String> = urls
                    .iter()
                    .map(|(key, url)| format!("{key} {url}"))
                    .collect();
                warnings.push(Warning {
                    // Validation lets nothing come before a rule's
                    // authenticate action, so it is always the first.
                    path: format!(
                        "listeners[{l}].rules[{r}].actions[0].authenticate_oidc.allow_insecure_http"
                    ),
                    rule: rule.name.clone(),
                    message: format!(
                        "rule `{}` talks to its IdP over plain http off the loopback ({}): \
                         the client secret and tokens cross the network unencrypted; \
                         acceptable inside a development network (docker-compose, kind), \
                         use https anywhere else",
                        rule.name,
                        urls.join(", ")
                    ),
                });
            }
        }
        warnings
    }
}
