//! The terminal actions: `forward`, `fixed_response`, `redirect`.

use std::time::Duration;

use url::Url;

use super::{At, Validator};
use crate::config::model::*;
use crate::config::raw::*;

/// The ALB default for `forward`: how long the upstream has to answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

impl Validator<'_> {
    pub(super) fn forward(&mut self, at: &At, raw: RawForward) -> Option<ForwardAction> {
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
