//! portcullis: an AWS-ALB-style authenticating reverse proxy.
//!
//! A request travels through these phases, in this order ([`proxy::Proxy::handle`]):
//!
//! 1. **hygiene**: identity headers and their `_` look-alikes, hop-by-hop
//!    headers and routing overrides are removed before anything reads a
//!    header or adds one ([`proxy::headers`], [`identity`]);
//! 2. **canonical path**: the one spelling the rules, the log and the
//!    upstream all see; `CONNECT`/`TRACE` refused, `OPTIONS *` answered
//!    ([`proxy::path`]);
//! 3. **owned paths**: `/oauth2/...` is answered by the proxy, never forwarded;
//! 4. **match**: the listener's rules, first match wins, on host and path ([`proxy::rules`]);
//! 5. **session**: the rule's authenticate action loads (and refreshes) the
//!    session, applies the unauthenticated policy and sets the identity headers ([`auth`]);
//! 6. **action**: `forward` (streamed, [`proxy::forward`]), `fixed_response` or `redirect`
//!    ([`proxy::actions`]);
//! 7. **log**: one access-log line and the request metrics ([`metrics`]).
//!
//! Around them: [`config`] turns a file into a validated model, [`server`]
//! binds listeners (TLS with SNI and reload), limits connections and shuts
//! down gracefully, and [`error`] is the one place errors become responses.
//! [`demo`] and [`dev_idp`] are the development-only tools: the whole flow
//! on a laptop, and the test OpenID provider it runs.

pub mod auth;
pub mod body;
pub mod cache;
pub mod client;
pub mod config;
pub mod demo;
mod dev_http;
pub mod dev_idp;
pub mod error;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod untrusted;

pub use server::Portcullis;
