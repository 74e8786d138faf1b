//! The terminal actions: `forward`, `fixed_response`, `redirect`.

use std::time::Duration;

use url::Url;

use super::{At, Validator};
use crate::config::model::*;
use crate::config::raw::*;

/// The ALB default for `forward`: how long the upstream has to answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
/// ALB's limits on a forward action's target groups.
const MAX_TARGETS: usize = 5;
const MAX_WEIGHT: u64 = 999;
/// ALB's longest target-group stickiness.
const MAX_STICKINESS: Duration = Duration::from_secs(7 * 24 * 3600);

impl Validator<'_> {
    pub(super) fn forward(&mut self, at: &At, raw: RawForward) -> Option<ForwardAction> {
        let targets = match (raw.target, raw.targets) {
            (Some(target), None) => {
                let target = self.forward_target(&at.key("target"), &target);
                target.map(|target| vec![WeightedTarget { target, weight: 1 }])
            }
            (None, Some(targets)) => self.weighted_targets(&at.key("targets"), targets),
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("targets"),
                    "`target` and `targets` are both given",
                    "keep `target` for one upstream, or list every upstream under `targets`",
                );
                None
            }
            (None, None) => {
                self.required(
                    &at.key("target"),
                    None::<()>,
                    "name the upstream, e.g. http://127.0.0.1:8080, or list several \
                     under `targets` with weights",
                );
                None
            }
        };
        let timeout = self.duration(&at.key("timeout"), raw.timeout, FORWARD_TIMEOUT);
        let timeout = self.positive(&at.key("timeout"), timeout);
        let stickiness = match raw.stickiness {
            Some(stickiness) => self.stickiness(&at.key("stickiness"), stickiness).map(Some),
            None => Some(None),
        };
        Some(ForwardAction {
            targets: targets?,
            timeout: timeout?,
            stickiness: stickiness?,
        })
    }

    /// ALB's weighted target groups: 1 to 5 of them, weights 0 to 999, at
    /// least one above 0.
    fn weighted_targets(
        &mut self,
        at: &At,
        raw: Vec<RawWeightedTarget>,
    ) -> Option<Vec<WeightedTarget>> {
        if raw.is_empty() || raw.len() > MAX_TARGETS {
            self.problem(
                at,
                format!("{} targets", raw.len()),
                format!("list 1 to {MAX_TARGETS} targets, as ALB's forward action takes"),
            );
            return None;
        }
        let checked: Vec<Option<WeightedTarget>> = raw
            .into_iter()
            .enumerate()
            .map(|(index, raw)| {
                let at = at.index(index);
                let target = self.required(
                    &at.key("target"),
                    raw.target,
                    "name the upstream, e.g. http://127.0.0.1:8080",
                );
                let target =
                    target.and_then(|target| self.forward_target(&at.key("target"), &target));
                let weight = match raw.weight {
                    None => Some(1),
                    Some(weight) if weight <= MAX_WEIGHT => u16::try_from(weight).ok(),
                    Some(weight) => {
                        self.problem(
                            &at.key("weight"),
                            format!("weight {weight} is above {MAX_WEIGHT}"),
                            format!("a weight from 0 to {MAX_WEIGHT}, as ALB's"),
                        );
                        None
                    }
                };
                Some(WeightedTarget {
                    target: target?,
                    weight: weight?,
                })
            })
            .collect();
        let targets: Vec<WeightedTarget> = checked.into_iter().collect::<Option<_>>()?;
        if targets.iter().all(|target| target.weight == 0) {
            self.problem(
                at,
                "every target has weight 0",
                "give at least one target a weight above 0",
            );
            return None;
        }
        Some(targets)
    }

    fn stickiness(&mut self, at: &At, raw: RawStickiness) -> Option<Duration> {
        let at = at.key("duration");
        let duration =
            self.required(&at, raw.duration, "e.g. `duration: 1h` (1s to 7d, as ALB)")?;
        let duration = self.duration(&at, Some(duration), Duration::ZERO)?;
        if duration.is_zero() || duration > MAX_STICKINESS {
            self.problem(
                &at,
                format!("{} s is outside 1 s to 7 days", duration.as_secs()),
                "a duration from 1s to 7d, as ALB's target-group stickiness",
            );
            return None;
        }
        Some(duration)
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

    pub(super) fn fixed_response(
        &mut self,
        at: &At,
        raw: RawFixedResponse,
    ) -> Option<FixedResponseAction> {
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

    pub(super) fn redirect(&mut self, at: &At, raw: RawRedirect) -> Option<RedirectAction> {
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
                let written = match raw {
                    RawStatus::Number(number) => number.to_string(),
                    RawStatus::Text(text) => text,
                };
                self.problem(at, format!("`{written}` is not a status code"), fix);
                None
            }
        }
    }
}
