//! Why a login or a session failed, named as ALB names it in its access
//! logs (`error_reason`), and whose fault it was.

use std::time::Duration;

use super::session::store::StoreError;
pub use crate::untrusted::Untrusted;

/// Where the blame lies decides the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// 401: the browser sent something we cannot accept.
    Client,
    /// 561: the IdP failed the login.
    IdentityProvider,
    /// 500: ours (claims too large, an internal failure).
    Proxy,
    /// 503: the session store did not answer; try again shortly.
    SessionStore,
    /// 403: who the user is is known; they may not use this rule.
    Forbidden,
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
    /// RFC 9207: the callback names another issuer than the one the login
    /// was started for (an IdP mix-up).
    #[error("the callback's iss `{iss}` is not the issuer this login was started with")]
    IssuerMismatch { iss: Untrusted },
    /// RFC 9207: the IdP's discovery promises `iss` on the callback, and
    /// this one has none.
    #[error("the callback has no iss, which this IdP always sends")]
    MissingIss,
    /// `error=` on the callback: anyone can send one, with any text.
    #[error("the IdP answered the login with error `{error}`")]
    IdpError { error: Untrusted },
    /// Values quoted from the document are [`Untrusted`].
    #[error("the IdP's discovery document is unusable: {0}")]
    BadDiscovery(String),
    /// Values quoted from the key set are [`Untrusted`].
    #[error("the IdP's key set is unusable: {0}")]
    BadKeys(String),
    #[error("the IdP's discovery document or keys are not available")]
    ProviderUnavailable(#[source] std::sync::Arc<IdpCallError>),
    #[error("the token endpoint call failed")]
    TokenEndpoint(#[source] IdpCallError),
    #[error("the token endpoint refused the grant (invalid_grant)")]
    InvalidGrant,
    #[error("the token endpoint's answer is not a valid token response")]
    InvalidTokenResponse(#[source] serde_json::Error),
    /// Values quoted from the token, and a library's words about them, are [`Untrusted`].
    #[error("the ID token is invalid: {0}")]
    InvalidIdToken(String),
    #[error("the userinfo endpoint call failed")]
    UserinfoEndpoint(#[source] IdpCallError),
    /// A parser's words about the response are [`Untrusted`].
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
    /// Authenticated, but a `require` entry does not hold.
    #[error(transparent)]
    ClaimMismatch(super::require::Mismatch),
    /// `jwt_validation`: no `Authorization: Bearer` credential at all.
    #[error("the request has no bearer token")]
    JwtMissing,
    #[error("the bearer token is refused")]
    JwtInvalid(#[source] super::bearer::JwtRefusal),
    /// The keys to verify a bearer token with could not be loaded: the
    /// token cannot be accepted, whatever it is.
    #[error("the keys to verify the bearer token with are not available")]
    JwtKeysUnavailable(#[source] Box<AuthError>),
    /// A verified bearer token lacks what the rule's `require` asks for.
    #[error(transparent)]
    JwtClaimMismatch(super::require::Mismatch),
    /// Redis down or slower than `sessions.redis.timeout`: never "no session".
    #[error("the session store is unavailable")]
    SessionStore(#[source] std::sync::Arc<StoreError>),
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::TooLarge { size, .. } => AuthError::ClaimsTooLarge { size },
            StoreError::CookieTooLarge(too_large) => AuthError::ClaimsTooLarge {
                size: too_large.size,
            },
            StoreError::Expired => {
                AuthError::Internal("a session was saved after it had ended".into())
            }
            unavailable => AuthError::SessionStore(std::sync::Arc::new(unavailable)),
        }
    }
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
    Status {
        status: u16,
        /// The start of the answer, for `Debug` in the log.
        body: Untrusted,
    },
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
            | AuthError::IssuerMismatch { .. }
            | AuthError::MissingIss
            | AuthError::MissingHost
            | AuthError::JwtMissing
            | AuthError::JwtInvalid(_)
            | AuthError::JwtKeysUnavailable(_) => Blame::Client,
            AuthError::IdpError { .. }
            | AuthError::ProviderUnavailable(_)
            | AuthError::BadDiscovery(_)
            | AuthError::BadKeys(_)
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
            AuthError::SessionStore(_) => Blame::SessionStore,
            AuthError::ClaimMismatch(_) | AuthError::JwtClaimMismatch(_) => Blame::Forbidden,
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
            // ALB checks no `iss` on the callback; this name is portcullis'.
            AuthError::IssuerMismatch { .. } => "AuthInvalidIssParam",
            AuthError::MissingIss => "AuthMissingIssParam",
            // ALB has no name for an `error=` callback; this one is portcullis'.
            AuthError::IdpError { .. } => "AuthIdpError",
            AuthError::ProviderUnavailable(_)
            | AuthError::BadDiscovery(_)
            | AuthError::BadKeys(_) => "AuthProviderUnavailable",
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
            // ALB keeps no sessions on the server; this name is portcullis'.
            AuthError::SessionStore(_) => "AuthSessionStoreUnavailable",
            AuthError::ClaimMismatch(_) | AuthError::JwtClaimMismatch(_) => "AuthzClaimMismatch",
            AuthError::JwtMissing => "JwtMissing",
            AuthError::JwtInvalid(_) => "JwtInvalid",
            // ALB has no name for keys it cannot load; this one is portcullis'.
            AuthError::JwtKeysUnavailable(_) => "JwtKeysUnavailable",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3) owed to a client that
    /// sent, or should have sent, a bearer token; `None` for the login flow.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            // No credential at all: the challenge names no error (§3.1).
            AuthError::JwtMissing => Some("Bearer"),
            AuthError::JwtInvalid(_) | AuthError::JwtKeysUnavailable(_) => {
                Some(r#"Bearer error="invalid_token""#)
            }
            AuthError::JwtClaimMismatch(_) => Some(r#"Bearer error="insufficient_scope""#),
            AuthError::MissingState
            | AuthError::MissingCode
            | AuthError::InvalidState
            | AuthError::MissingHost
            | AuthError::IssuerMismatch { .. }
            | AuthError::MissingIss
            | AuthError::IdpError { .. }
            | AuthError::BadDiscovery(_)
            | AuthError::BadKeys(_)
            | AuthError::ProviderUnavailable(_)
            | AuthError::TokenEndpoint(_)
            | AuthError::InvalidGrant
            | AuthError::InvalidTokenResponse(_)
            | AuthError::InvalidIdToken(_)
            | AuthError::UserinfoEndpoint(_)
            | AuthError::InvalidUserinfo(_)
            | AuthError::UserinfoTooLarge { .. }
            | AuthError::ClaimsTooLarge { .. }
            | AuthError::Signing(_)
            | AuthError::Serialize(_)
            | AuthError::Internal(_)
            | AuthError::ClaimMismatch(_)
            | AuthError::SessionStore(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printable ASCII and the ellipsis: nothing a log line can be broken by.
    fn is_log_safe(text: &str) -> bool {
        text.chars().all(|c| matches!(c, ' '..='~' | '…'))
    }

    #[test]
    fn a_callback_error_cannot_forge_log_lines_and_is_bounded() {
        let long_a = "A".repeat(10_000);
        let newlines = "\n".repeat(10_000);
        let accents = "é".repeat(1_000);
        let hostile = [
            "x\n2026-01-01T00:00:00Z  INFO portcullis::access: forged line",
            "x\r\n2026-01-01 INFO forged",
            "\u{1b}[2J\u{1b}[31mred",
            "\u{2028}line separator\u{85}next line",
            "\u{202e}reversed",
            "\0nul\u{7f}del",
            long_a.as_str(),
            newlines.as_str(),
            accents.as_str(),
        ];
        let prefix = "the IdP answered the login with error ``".len();
        for raw in hostile {
            let error = AuthError::IdpError {
                error: Untrusted::new(raw),
            };
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(is_log_safe(&shown), "{shown}");
                assert!(!shown.contains(['\n', '\r']), "{shown}");
            }
            let shown = error.to_string();
            assert!(
                shown.chars().count() <= prefix + Untrusted::MAX_CHARS + 1,
                "{} chars: {shown}",
                shown.chars().count()
            );
        }
    }

    #[test]
    fn an_idp_error_body_is_escaped_in_debug() {
        let error = IdpCallError::Status {
            status: 500,
            body: Untrusted::new("oops\n2026-01-01 INFO forged"),
        };
        let shown = format!("{error:?}");
        assert!(is_log_safe(&shown) && !shown.contains('\n'), "{shown}");
    }
}
