//! The admin listener: `/metrics`, `/healthz`, `/readyz`, plain HTTP, never
//! on a public port.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::watch;

use arc_swap::ArcSwap;

use super::Served;
use crate::body::{self, Body};
use crate::metrics::Metrics;

/// What the admin endpoints report on.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    /// Turns true when shutdown begins. The listeners are bound before the
    /// admin listener serves, so until then the kernel queues connections.
    pub stop: watch::Receiver<bool>,
    /// The configuration being served, replaced by each reload.
    pub served: Arc<ArcSwap<Served>>,
}

impl Admin {
    fn is_ready(&self, served: &Served) -> bool {
        !*self.stop.borrow()
            && served.providers.iter().all(|provider| provider.is_ready())
            && served
                .store_health
                .as_ref()
                .is_none_or(|health| health.is_ready())
    }
}

impl Admin {
    pub async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let (status, content_type, text) = match request.uri().path() {
            "/metrics" => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            "/readyz" => {
                let served = self.served.load();
                let (status, state) = if self.is_ready(&served) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                };
                // The second line tells which configuration file is live.
                let text = match served.fingerprint.as_str() {
                    "" => format!("{state}\n"),
                    config => format!("{state}\nconfig {config}\n"),
                };
                (status, "text/plain", text)
            }
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            ),
        };
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(response)
    }
}
