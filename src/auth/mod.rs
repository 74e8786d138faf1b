//! Authentication: the `authenticate_oidc` / `authenticate_cognito` login flow
//! and the sessions it creates.
//!
//! [`Authenticator`] is one authenticate action at request time; [`build`]
//! makes one from the configuration. The pieces: [`oidc`] speaks to the IdP,
//! [`session`] seals cookies, [`state`] is what they hold, [`policy`] tells
//! navigations from API calls.

pub mod authenticator;
pub mod bearer;
pub mod clock;
pub mod cognito;
pub mod endpoints;
pub mod error;
pub mod oidc;
pub mod opened;
pub mod policy;
pub mod principal;
pub mod providers;
pub mod require;
pub mod revocations;
pub mod session;
pub mod state;

use std::sync::Arc;

pub use authenticator::{AuthShared, Authenticator, Decision, RequestContext};
pub use error::AuthError;

use crate::config::{AuthenticateAction, Config, TokenEndpointAuthMethod};
use crate::identity::signing::{DataSigner, DataTokenCache, SigningError};
use crate::metrics::Metrics;
use clock::Clock;
use oidc::provider::{ConfiguredEndpoints, TokenAuth, issuer_string};
use oidc::tokens::ClientCredentials;
use providers::Providers;
use session::CookieSealer;
use session::store::{Backend, StoreHealth};

/// Signed `x-amzn-oidc-data` values kept for reuse (one per active session and expiry).
const DATA_TOKEN_CACHE_ENTRIES: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the signing key for x-amzn-oidc-data")]
    Signing(#[from] SigningError),
    #[error("sessions.redis")]
    SessionStore(#[from] session::store::StoreError),
}

/// What every authenticate action shares, or `None` when no rule authenticates.
///
/// On a reload, `previous` is what the last configuration that authenticated
/// shared: its revocations and used logout tokens are carried over (a
/// session ended by back-channel logout stays ended, a logout token is used
/// once), and its session store connection and signing key are kept when
/// `sessions.store` and `signing` did not change.
pub fn shared(
    config: &Config,
    metrics: Arc<Metrics>,
    clock: Clock,
    previous: Option<&AuthShared>,
) -> Result<Option<Arc<AuthShared>>, BuildError> {
    let authenticates = config
        .listeners
        .iter()
        .flat_map(|listener| &listener.rules)
        .any(|rule| rule.authenticate.is_some());
    if !authenticates {
        return Ok(None);
    }
    let longest_session = config
        .listeners
        .iter()
        .flat_map(|listener| &listener.rules)
        .filter_map(|rule| rule.authenticate.as_ref())
        .map(|action| action.common().session_timeout)
        .max()
        .unwrap_or_default();
    let (backend, store_health) = match previous {
        Some(previous) if previous.store == config.sessions.store => (
            Arc::clone(&previous.backend),
            Arc::clone(&previous.store_health),
        ),
        _ => {
            let backend = Arc::new(Backend::open(&config.sessions.store)?);
            let store_health = Arc::new(StoreHealth::new());
            backend.watch(&store_health);
            (backend, store_health)
        }
    };
    let (signing, signer, data_tokens) = match previous {
        Some(previous) if previous.signing == config.signing => (
            previous.signing.clone(),
            previous.signer.clone(),
            Arc::clone(&previous.data_tokens),
        ),
        _ => {
            let signer = Arc::new(DataSigner::new(&config.signing)?);
            if signer.generated() {
                tracing::warn!(
                    key_id = signer.key_id(),
                    "no signing.private_key_file: generated a signing key for x-amzn-oidc-data; \
                     replicas will not agree and the key changes on restart"
                );
            }
            let data_tokens = Arc::new(DataTokenCache::new(DATA_TOKEN_CACHE_ENTRIES));
            (config.signing.clone(), signer, data_tokens)
        }
    };
    let (revocations, once_keys) = previous.map_or_else(Default::default, |previous| {
        (
            Arc::clone(&previous.revocations),
            Arc::clone(&previous.once_keys),
        )
    });
    Ok(Some(Arc::new(AuthShared {
        sealer: Arc::new(CookieSealer::new(&config.sessions.secrets)),
        secrets: config.sessions.secrets.clone(),
        store: config.sessions.store.clone(),
        backend,
        store_health,
        revocations,
        once_keys,
        longest_session,
        clock,
        signing,
        signer,
        data_tokens,
        metrics,
    })))
}

/// The request-time form of one rule's authenticate action. A provider new
/// to `providers` starts loading its endpoints and keys in the background.
pub fn build(
    rule: &str,
    action: &AuthenticateAction,
    shared: Arc<AuthShared>,
    providers: &mut Providers,
) -> Arc<Authenticator> {
    let (issuer, endpoints, client, logout, common) = match action {
        AuthenticateAction::Oidc(oidc) => (
            issuer_string(&oidc.issuer),
            ConfiguredEndpoints {
                authorization: oidc.authorization_endpoint.clone(),
                token: oidc.token_endpoint.clone(),
                userinfo: oidc.user_info_endpoint.clone(),
                jwks_uri: oidc.jwks_uri.clone(),
                end_session: oidc.end_session_endpoint.clone(),
                discovery: oidc.discovery,
                token_auth: oidc.token_endpoint_auth_method.map(|method| match method {
                    TokenEndpointAuthMethod::ClientSecretBasic => TokenAuth::Basic,
                    TokenEndpointAuthMethod::ClientSecretPost => TokenAuth::Post,
                }),
            },
            ClientCredentials {
                client_id: oidc.client_id.clone(),
                client_secret: oidc.client_secret.clone(),
            },
            authenticator::Logout::Oidc,
            &oidc.common,
        ),
        AuthenticateAction::Cognito(cognito) => {
            let derived = cognito::derive(cognito);
            (
                derived.issuer,
                derived.endpoints,
                ClientCredentials {
                    client_id: cognito.user_pool_client_id.clone(),
                    client_secret: cognito.user_pool_client_secret.clone(),
                },
                authenticator::Logout::Cognito {
                    logout_url: derived.logout,
                },
                &cognito.common,
            )
        }
    };
    let provider = providers.login(issuer, endpoints, common.idp_timeout);
    Arc::new(Authenticator::new(
        rule.to_owned(),
        common.clone(),
        client,
        provider,
        logout,
        shared,
    ))
}
