//! Prometheus metrics, served on the admin listener only. Names follow ALB's
//! CloudWatch metrics turned into Prometheus style.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A rule's name as a label value; shared, so counting a request never copies it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RuleLabel(pub Arc<str>);

impl EncodeLabelValue for RuleLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub rule: RuleLabel,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// ALB's `error_reason`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    /// The first 16 hex digits of the SHA-256 of the configuration file.
    pub fingerprint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    /// The forward target, as configured (a bounded set).
    pub target: String,
    /// `connect`, `protocol` or `timeout`.
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The session store operation: `load`, `save`, `update`, `delete`, …
    pub op: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_latency: Histogram,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    open_connections: Gauge,
    auth_success: Counter,
    auth_failure: Family<ReasonLabels, Counter>,
    auth_refresh: Family<ResultLabels, Counter>,
    idp_latency: Histogram,
    store_errors: Family<OpLabels, Counter>,
    store_latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    jwt_signature_checks: Counter,
    config_reloads: Family<ResultLabels, Counter>,
    config_info: Family<ConfigLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by rule and status code",
            requests.clone(),
        );
        // 1 ms .. ~33 s
        let upstream_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "upstream_latency_seconds",
            "Time from sending a request upstream to its response headers",
            upstream_latency.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Forwarded requests the upstream did not answer, by target and error \
             (connect, protocol, timeout): 502 or 504 to the client",
            upstream_errors.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Downstream connections currently open",
            open_connections.clone(),
        );
        let auth_success = Counter::default();
        registry.register("auth_success", "Logins completed", auth_success.clone());
        let auth_failure = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failure",
            "Failed logins and refused sessions, by ALB error_reason",
            auth_failure.clone(),
        );
        let auth_refresh = Family::<ResultLabels, Counter>::default();
        registry.register(
            "auth_refresh",
            "Access token refreshes, by result",
            auth_refresh.clone(),
        );
        let idp_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "idp_latency_seconds",
            "Time taken by each call to an IdP",
            idp_latency.clone(),
        );
        let store_errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "session_store_errors",
            "Session store calls that failed or timed out, by operation",
            store_errors.clone(),
        );
        // 0.1 ms .. ~3.3 s
        let store_latency = Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_1, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "session_store_latency_seconds",
            "Time taken by each call to the session store, by operation",
            store_latency.clone(),
        );
        let jwt_signature_checks = Counter::default();
        registry.register(
            "jwt_signature_checks",
            "Bearer token signatures checked (jwt_validation); a token already verified is not checked again",
            jwt_signature_checks.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP or watch_config), by result: \
             a failure left the running configuration as it was",
            config_reloads.clone(),
        );
        for result in ["success", "failure"] {
            drop(config_reloads.get_or_create(&ResultLabels { result }));
        }
        let config_info = Family::<ConfigLabels, Gauge>::default();
        registry.register(
            "config_info",
            "1 for the configuration being served, labelled with its file's fingerprint",
            config_info.clone(),
        );
        Self {
            registry,
            requests,
            upstream_latency,
            upstream_errors,
            open_connections,
            auth_success,
            auth_failure,
            auth_refresh,
            idp_latency,
            store_errors,
            store_latency,
            jwt_signature_checks,
            config_reloads,
            config_info,
        }
    }

    pub fn count_request(&self, rule: &RuleLabel, code: u16) {
        let labels = RequestLabels {
            rule: rule.clone(),
            code,
        };
        self.requests.get_or_create(&labels).inc();
    }

    pub fn observe_upstream_latency(&self, elapsed: Duration) {
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }

    pub fn upstream_failed(&self, target: &str, error: &'static str) {
        let labels = UpstreamErrorLabels {
            target: target.to_owned(),
            error,
        };
        self.upstream_errors.get_or_create(&labels).inc();
    }

    pub fn auth_succeeded(&self) {
        self.auth_success.inc();
    }

    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failure
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// `result` is `success` or `failure`.
    pub fn refreshed(&self, result: &'static str) {
        self.auth_refresh
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn observe_idp_latency(&self, elapsed: Duration) {
        self.idp_latency.observe(elapsed.as_secs_f64());
    }

    /// One call to the session store: how long it took, and whether it failed.
    pub fn observe_store_call(&self, op: &'static str, elapsed: Duration, failed: bool) {
        let labels = OpLabels { op };
        self.store_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    pub fn jwt_signature_checked(&self) {
        self.jwt_signature_checks.inc();
    }

    #[cfg(test)]
    pub fn jwt_signature_checks(&self) -> u64 {
        self.jwt_signature_checks.get()
    }

    /// `result` is `success` or `failure`.
    pub fn config_reloaded(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Marks the configuration with this fingerprint as the one served.
    pub fn config_served(&self, fingerprint: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&ConfigLabels {
                fingerprint: fingerprint.to_owned(),
            })
            .set(1);
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_rule_and_code() {
        let metrics = Metrics::new();
        let app = RuleLabel("app".into());
        metrics.count_request(&app, 200);
        metrics.count_request(&app, 200);
        metrics.count_request(&RuleLabel("none".into()), 404);
        let text = metrics.encode();
        assert!(
            text.contains(r#"portcullis_requests_total{rule="app",code="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"portcullis_requests_total{rule="none",code="404"} 1"#),
            "{text}"
        );
    }
}
