//! The admin listener: `/metrics`, `/healthz`, `/readyz`, plain HTTP, never
//! on a public port.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::auth::oidc::provider::Provider;
use crate::auth::session::store::StoreHealth;
use crate::body::{self, Body};
use crate::metrics::Metrics;

/// What the admin endpoints report on.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    /// Turns true when shutdown begins. The listeners are bound before the
    /// admin listener serves, so until then the kernel queues connections.
    pub stop: watch::Receiver<bool>,
    /// Each must have loaded its endpoints and keys.
    pub providers: Vec<Arc<Provider>>,
    /// The session store must answer (Redis); `None` when no rule authenticates.
    pub store_health: Option<Arc<StoreHealth>>,
}

impl Admin {
    fn is_ready(&self) -> bool {
        !*self.stop.borrow()
            && self.providers.iter().all(|provider| provider.is_ready())
            && self
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
            "/readyz" if self.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready\n".to_owned(),
            ),
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
