//! One OpenID provider as a relying party sees it: its endpoints (configured,
//! or discovered from `{issuer}/.well-known/openid-configuration` and retried
//! in the background while the IdP is down) and its signing keys (refetched
//! on an unknown `kid`, at most once a minute).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openidconnect::core::CoreJsonWebKeySet;
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;
use url::Url;

use super::http::IdpClient;
use crate::auth::error::{AuthError, IdpCallError, Untrusted};

/// The fewest seconds between two JWKS fetches caused by unknown key ids.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic`, the default.
    Basic,
    /// `client_secret_post`, when the IdP supports only that.
    Post,
}

/// Endpoints given in the configuration; any left `None` is discovered.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredEndpoints {
    pub authorization: Option<Url>,
    pub token: Option<Url>,
    pub userinfo: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub end_session: Option<Url>,
}

impl ConfiguredEndpoints {
    fn complete(&self) -> bool {
        self.authorization.is_some()
            && self.token.is_some()
            && self.userinfo.is_some()
            && self.jwks_uri.is_some()
    }
}

/// Every endpoint the login flow needs.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Exactly as the IdP writes it in `iss`.
    pub issuer: String,
    pub authorization: Url,
    pub token: Url,
    pub userinfo: Url,
    pub jwks_uri: Url,
    pub end_session: Option<Url>,
    pub token_auth: TokenAuth,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
    end_session_endpoint: Option<Url>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

pub struct Provider {
    /// As configured, for discovery and logs; [`Endpoints::issuer`] is authoritative.
    issuer: String,
    configured: ConfiguredEndpoints,
    pub(crate) http: IdpClient,
    endpoints: RwLock<Option<Arc<Endpoints>>>,
    /// Serialises discovery so concurrent logins trigger one fetch.
    discovering: Mutex<()>,
    keys: RwLock<Option<Arc<CoreJsonWebKeySet>>>,
    /// When the keys were last fetched because of an unknown `kid`.
    last_refetch: Mutex<Option<Instant>>,
    ready: AtomicBool,
}

impl Provider {
    pub fn new(issuer: String, configured: ConfiguredEndpoints, http: IdpClient) -> Self {
        Self {
            issuer,
            configured,
            http,
            endpoints: RwLock::new(None),
            discovering: Mutex::new(()),
            keys: RwLock::new(None),
            last_refetch: Mutex::new(None),
            ready: AtomicBool::new(false),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// True once the endpoints and keys have been loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Loads endpoints and keys now, and keeps retrying in the background
    /// (1 s, doubling to 30 s) while the IdP is unreachable.
    pub fn start(self: &Arc<Self>) {
        let provider = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                let Some(provider) = provider.upgrade() else {
                    return;
                };
                match provider.load().await {
                    Ok(()) => return,
                    Err(error) => tracing::warn!(
                        issuer = %provider.issuer,
                        error = %error,
                        cause = ?std::error::Error::source(&error),
                        retry_in = ?delay,
                        "the IdP is not reachable yet; logins answer 561 until it is"
                    ),
                }
                drop(provider);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        });
    }

    async fn load(&self) -> Result<(), AuthError> {
        self.endpoints().await?;
        self.keys().await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, AuthError> {
        if let Some(endpoints) = self.endpoints.read().await.clone() {
            return Ok(endpoints);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(endpoints) = self.endpoints.read().await.clone() {
            return Ok(endpoints);
        }
        let endpoints = Arc::new(self.resolve().await?);
        *self.endpoints.write().await = Some(endpoints.clone());
        Ok(endpoints)
    }

    async fn resolve(&self) -> Result<Endpoints, AuthError> {
        let configured = &self.configured;
        if configured.complete() {
            return Ok(Endpoints {
                issuer: self.issuer.clone(),
                authorization: configured
                    .authorization
                    .clone()
                    .expect("checked by complete()"),
                token: configured.token.clone().expect("checked by complete()"),
                userinfo: configured.userinfo.clone().expect("checked by complete()"),
                jwks_uri: configured.jwks_uri.clone().expect("checked by complete()"),
                end_session: configured.end_session.clone(),
                token_auth: TokenAuth::Basic,
            });
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let unavailable = |error| AuthError::ProviderUnavailable(Box::new(error));
        let discovery: Discovery = self
            .http
            .get(&url, None)
            .await
            .and_then(|response| response.success()?.json())
            .map_err(unavailable)?;
        // `https://idp/` and `https://idp` name the same issuer; the
        // discovered spelling is the one its tokens carry.
        if discovery.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(AuthError::BadDiscovery(format!(
                "the discovery document at {url} names issuer `{}`, not the configured `{}`",
                Untrusted::new(&discovery.issuer),
                self.issuer
            )));
        }
        let methods = &discovery.token_endpoint_auth_methods_supported;
        let only_post = !methods.is_empty()
            && methods.iter().any(|method| method == "client_secret_post")
            && !methods.iter().any(|method| method == "client_secret_basic");
        let userinfo = configured
            .userinfo
            .clone()
            .or(discovery.userinfo_endpoint)
            .ok_or_else(|| {
                AuthError::BadDiscovery(format!(
                    "{url} names no userinfo_endpoint; configure user_info_endpoint"
                ))
            })?;
        Ok(Endpoints {
            issuer: discovery.issuer,
            authorization: configured
                .authorization
                .clone()
                .unwrap_or(discovery.authorization_endpoint),
            token: configured.token.clone().unwrap_or(discovery.token_endpoint),
            userinfo,
            jwks_uri: configured.jwks_uri.clone().unwrap_or(discovery.jwks_uri),
            end_session: configured
                .end_session
                .clone()
                .or(discovery.end_session_endpoint),
            token_auth: if only_post {
                TokenAuth::Post
            } else {
                TokenAuth::Basic
            },
        })
    }

    /// The IdP's signing keys, fetched on first use.
    pub async fn keys(&self) -> Result<Arc<CoreJsonWebKeySet>, AuthError> {
        if let Some(keys) = self.keys.read().await.clone() {
            return Ok(keys);
        }
        self.fetch_keys().await
    }

    /// Fetches the keys again after an ID token named an unknown `kid`,
    /// unless that was already done in the last minute (so forged tokens
    /// cannot make us hammer the IdP). `None` when rate-limited.
    pub async fn refetch_keys(&self) -> Result<Option<Arc<CoreJsonWebKeySet>>, AuthError> {
        let mut last = self.last_refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        self.fetch_keys().await.map(Some)
    }

    async fn fetch_keys(&self) -> Result<Arc<CoreJsonWebKeySet>, AuthError> {
        let endpoints = self.endpoints().await?;
        let keys: CoreJsonWebKeySet = self
            .http
            .get(endpoints.jwks_uri.as_str(), None)
            .await
            .and_then(|response| response.success()?.json())
            .map_err(|error: IdpCallError| AuthError::ProviderUnavailable(Box::new(error)))?;
        let keys = Arc::new(keys);
        *self.keys.write().await = Some(keys.clone());
        Ok(keys)
    }
}

/// The issuer as the IdP writes it: `Url` adds a `/` to a bare origin, which
/// `iss` never has.
pub fn issuer_string(issuer: &Url) -> String {
    let text = issuer.as_str();
    if issuer.path() == "/" {
        text.trim_end_matches('/').to_owned()
    } else {
        text.to_owned()
    }
}
