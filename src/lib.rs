//! portcullis: an AWS-ALB-style authenticating reverse proxy.
//!
//! A request travels through these phases, in this order ([`proxy::Proxy::handle`]):
//!
//! 0. **front proxy**: from a peer in the listener's `trusted_proxies`, what
//!    its `X-Forwarded-*` headers say of the original request: the scheme and
//!    host of redirects, and the request a forward-auth check is about
//!    ([`proxy::forwarded`]);
//! 1. **hygiene**: identity headers, the listener's claim headers and their
//!    `_` look-alikes, hop-by-hop headers and routing overrides are removed
//!    before anything reads a header or adds one ([`proxy::headers`], [`identity`]);
//! 2. **canonical path**: the one spelling the rules, the log and the
//!    upstream all see; `CONNECT`/`TRACE` refused, `OPTIONS *` answered
//!    ([`proxy::path`]);
//! 3. **owned paths**: `/oauth2/...` is answered by the proxy, never
//!    forwarded: login callback, login start, sign-out, back-channel logout,
//!    public keys ([`auth::endpoints`]); a forward-auth check (`/oauth2/auth`)
//!    runs phases 4 to 6 on the original request and answers with their
//!    verdict instead of an action ([`proxy::forward_auth`]);
//! 4. **match**: the listener's rules, first match wins, on host, path,
//!    headers, method, query and client address ([`proxy::rules`]);
//! 5. **authentication**: the rule's authenticate action loads the session
//!    from its store (cookie or Redis) and refreshes it when due, giving a
//!    [`auth::principal::Principal`]; or applies the unauthenticated policy ([`auth`]);
//!    with `bearer: accept`, a bearer JWT of the action's IdP stands in for
//!    the session; on a `jwt_validation` rule, the bearer token is verified
//!    instead, and its `require` checked with it ([`auth::bearer`]);
//! 6. **authorization**: whether that principal may use the rule; then the
//!    identity headers, built from it;
//! 7. **action**: `forward` (streamed, [`proxy::forward`]), `fixed_response` or `redirect`
//!    ([`proxy::actions`]);
//! 8. **log**: one access-log line and the request metrics ([`metrics`]).
//!
//! # Layout
//!
//! ```text
//! main.rs        the command line: arguments, logging, exit codes
//! config/        raw serde structs -> validated model, every problem at once
//! server/        listeners, TLS with SNI and reload, reading ahead under TLS,
//!                connection limits and idle parking, the admin listener,
//!                configuration reload (SIGHUP, watch_config), shutdown
//! proxy/         the request pipeline above: trusted front proxies, hygiene,
//!                paths, rules, actions, forwarding, forward auth, the
//!                upstream pool, WebSocket upgrades
//! auth/          login: the OIDC relying party (oidc/), the session stores
//!                (session/: sealed cookies or Redis), the /oauth2/ endpoints,
//!                the opened-session cache, policies, Cognito, the clock,
//!                bearer JWTs (bearer.rs), IdPs shared and kept across
//!                reloads (providers.rs)
//! identity/      the x-amzn-oidc-* headers: stripped inbound, x-amzn-oidc-data
//!                signed (signing/), the public-key endpoints
//! error.rs       every error kind and the one place it becomes a response
//! metrics.rs     Prometheus metrics for the admin listener
//! cache.rs       the bounded map behind the hot path's caches
//! body.rs        the one response body type
//! client.rs      the HTTPS connector for upstreams and IdPs
//! untrusted.rs   request and IdP values made safe for logs and messages
//! keys.rs        `portcullis keygen`
//! import_alb/    `portcullis import-alb`: ALB rules (AWS CLI JSON) to a configuration
//! demo/          `portcullis demo`: proxy, development IdP and echo app on loopback
//! dev_idp/       `portcullis dev-idp`: the development OpenID provider
//! dev_http.rs    what demo and dev-idp share: the accept loop and page helpers
//! ```
//!
//! Development only: `demo` and `dev_idp` must never serve production traffic.

// The library's surface is what `main.rs` and someone embedding the proxy
// need: the configuration model, the server, and the development tools.
// Everything else is private; `internals` lends the crate's own tests,
// benchmarks and fuzz targets the few inner pieces they exercise directly.
mod auth;
mod body;
mod cache;
mod client;
pub mod config;
pub mod demo;
mod dev_http;
pub mod dev_idp;
mod error;
mod identity;
pub mod import_alb;
pub mod keys;
mod metrics;
mod proxy;
mod server;
mod untrusted;

pub use server::{Portcullis, Reloads, StartError};

/// An error and each of its causes, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Inner pieces for this crate's tests, benchmarks and fuzz targets. Not an
/// API: anything here may change or go away in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::auth::AuthError;
    pub use crate::auth::authenticator::pending_logins;
    pub use crate::auth::clock::Clock;
    pub use crate::auth::error::IdpCallError;
    pub use crate::auth::oidc::http::IdpClient;
    pub use crate::auth::oidc::logout::unverified_issuer as unverified_logout_issuer;
    pub use crate::auth::oidc::logout::{self, LogoutRefusal, LogoutRequest};
    pub use crate::auth::oidc::provider::{ConfiguredEndpoints, Endpoints, Provider};
    pub use crate::auth::oidc::tokens::{self, VerifiedIdToken};
    pub use crate::auth::opened::OpenedSessions;
    pub use crate::auth::require;
    pub use crate::auth::session::store::{
        CookieStore, MAX_ONCE_KEYS, MAX_SESSION_BYTES, RedisSettings, RedisStore, Revoked,
        SessionStore, StoreError, Ticket, connect as connect_redis,
        connect_cluster as connect_redis_cluster,
    };
    pub use crate::auth::session::{
        CookieSealer, MAX_REQUEST_COOKIE_BYTES, MAX_REQUEST_COOKIES, RequestCookies, SealedShards,
        is_shard_name, is_valid_cookie_name, strip_request_cookies,
    };
    pub use crate::auth::state::{NONCE_COOKIE, PendingLogin, PendingLogins, Session};
    pub use crate::identity::signing::{DataSigner, DataTokenCache};
    pub use crate::proxy::forwarded::Forwarded;
    pub use crate::proxy::headers::sanitize_request;
    pub use crate::proxy::path::canonicalize;
    pub use crate::proxy::rules::{
        RequestFacts, normalize_host, rule_matches, wildcard_match, wildcard_match_ignore_case,
    };
}
