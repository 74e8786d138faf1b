//! Why a login or a session failed, named as ALB names it in its access
//! logs (`error_reason`), and whose fault it was.

use std::time::Duration;

/// Where the blame lies decides the status (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// 401: the browser sent something we cannot accept.
    Client,
    /// 561: the IdP failed the login.
    IdentityProvider,
    /// 500: ours (claims too large, an internal failure).
    Proxy,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the callback has no state parameter")]
    MissingState,
    #[error("the callback has no code parameter")]
    MissingCode,
    #[error("the state does not match a login started in this browser (or it expired)")]
    InvalidState,
    #[error("the request has no Host")]
    MissingHost,
    #[error("the IdP answered the login with error `{error}`")]
    IdpError { error: String },
    #[error("the IdP's discovery document is unusable: {0}")]
    BadDiscovery(String),
    #[error("the IdP's discovery document or keys are not available")]
    ProviderUnavailable(#[source] std::sync::Arc<IdpCallError>),
    #[error("the token endpoint call failed")]
    TokenEndpoint(#[source] IdpCallError),
    #[error("the token endpoint refused the grant (invalid_grant)")]
    InvalidGrant,
    #[error("the token endpoint's answer is not a valid token response")]
    InvalidTokenResponse(#[source] serde_json::Error),
    #[error("the ID token is invalid: {0}")]
    InvalidIdToken(String),
    #[error("the userinfo endpoint call failed")]
    UserinfoEndpoint(#[source] IdpCallError),
    #[error("the userinfo response is invalid: {0}")]
    InvalidUserinfo(String),
    #[error("the userinfo response is larger than {limit} bytes")]
    UserinfoTooLarge { limit: usize },
    #[error("the session's claims ({size} bytes sealed) do not fit in 4 cookies")]
    ClaimsTooLarge { size: usize },
    #[error("signing x-amzn-oidc-data failed")]
    Signing(#[source] crate::identity::signing::SigningError),
    #[error("the session could not be serialised")]
    Serialize(#[source] serde_json::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A failed HTTP call to the IdP.
#[derive(Debug, thiserror::Error)]
pub enum IdpCallError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the request could not be sent")]
    Transport(#[source] hyper_util::client::legacy::Error),
    #[error("reading the answer failed")]
    Body(#[source] hyper::Error),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP status {status}")]
    Status { status: u16, body: String },
    #[error("the answer is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("the request could not be built")]
    Request(#[source] http::Error),
}

impl AuthError {
    pub fn blame(&self) -> Blame {
        match self {
            AuthError::MissingState
            | AuthError::MissingCode
            | AuthError::InvalidState
            | AuthError::MissingHost => Blame::Client,
            AuthError::IdpError { .. }
            | AuthError::ProviderUnavailable(_)
            | AuthError::BadDiscovery(_)
            | AuthError::TokenEndpoint(_)
            | AuthError::InvalidGrant
            | AuthError::InvalidTokenResponse(_)
            | AuthError::InvalidIdToken(_)
            | AuthError::UserinfoEndpoint(_)
            | AuthError::InvalidUserinfo(_)
            | AuthError::UserinfoTooLarge { .. } => Blame::IdentityProvider,
            AuthError::ClaimsTooLarge { .. }
            | AuthError::Signing(_)
            | AuthError::Serialize(_)
            | AuthError::Internal(_) => Blame::Proxy,
        }
    }

    /// ALB's `error_reason` for this failure, the `reason` label of
    /// `portcullis_auth_failure_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingState => "AuthMissingStateParam",
            AuthError::MissingCode => "AuthMissingCodeParam",
            AuthError::InvalidState => "AuthInvalidStateParam",
            AuthError::MissingHost => "AuthMissingHostHeader",
            // ALB has no name for an `error=` callback; this one is portcullis'.
            AuthError::IdpError { .. } => "AuthIdpError",
            AuthError::ProviderUnavailable(_) | AuthError::BadDiscovery(_) => {
                "AuthProviderUnavailable"
            }
            AuthError::TokenEndpoint(IdpCallError::Timeout(_)) => "AuthTokenEpRequestTimeout",
            AuthError::TokenEndpoint(_) => "AuthTokenEpRequestFailed",
            AuthError::InvalidGrant => "AuthInvalidGrantError",
            AuthError::InvalidTokenResponse(_) => "AuthInvalidTokenResponse",
            AuthError::InvalidIdToken(_) => "AuthInvalidIdToken",
            AuthError::UserinfoEndpoint(IdpCallError::Timeout(_)) => "AuthUserinfoEpRequestTimeout",
            AuthError::UserinfoEndpoint(_) => "AuthUserinfoEpRequestFailed",
            AuthError::InvalidUserinfo(_) => "AuthInvalidUserinfoResponse",
            AuthError::UserinfoTooLarge { .. } => "AuthUserinfoResponseSizeExceeded",
            AuthError::ClaimsTooLarge { .. } => "AuthClaimsSizeExceeded",
            AuthError::Signing(_) | AuthError::Serialize(_) | AuthError::Internal(_) => {
                "AuthUnhandledException"
            }
        }
    }
}
