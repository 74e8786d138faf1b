//! portcullis: an AWS-ALB-style authenticating reverse proxy.
//!
//! A request travels through these phases, in this order ([`proxy::Proxy::handle`]):
//!
//! 1. **strip**: every client-sent `x-amzn-oidc-*` header is removed ([`identity`]);
//! 2. **owned paths**: `/oauth2/...` is answered by the proxy, never forwarded;
//! 3. **match**: the listener's rules, first match wins, on host and path ([`proxy::rules`]);
//! 4. **action**: `forward` (streamed, [`proxy::forward`]), `fixed_response` or `redirect`
//!    ([`proxy::actions`]);
//! 5. **log**: one access-log line and the request metrics ([`metrics`]).
//!
//! Around them: [`config`] turns a file into a validated model, [`server`]
//! binds listeners (TLS with SNI and reload), limits connections and shuts
//! down gracefully, and [`error`] is the one place errors become responses.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod cache;
pub mod client;
pub mod config;
pub mod demo;
pub mod error;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod untrusted;

pub use server::Portcullis;
