//! Calls to the token and userinfo endpoints, and full validation of the ID
//! token (signature against the JWKS, `iss`, `aud`/`azp`, `exp`, `iat`,
//! `nonce`, `at_hash`; `none` and HMAC refused).
//!
//! The IdP's keys are reached through [`with_provider_keys`], which every
//! signed token the IdP sends us (ID tokens, back-channel logout tokens)
//! goes through, so all of them pick up a key rotation the same way.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, ClaimsVerificationError, ClientId, IssuerUrl,
    JsonWebKey as _, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeyUse as _,
    JwsSigningAlgorithm as _, Nonce, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::http::basic_auth;
use super::provider::{Endpoints, Provider, TokenAuth};
use crate::auth::error::{AuthError, IdpCallError, Untrusted};
use crate::config::Secret;

/// How far in the future an `iat` may be before the token is refused (clock skew).
pub(crate) const IAT_LEEWAY: Duration = Duration::from_secs(60);

/// Only asymmetric signatures: an HMAC "signed" with the client secret proves
/// nothing about the IdP, and `none` proves nothing at all.
pub(crate) const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The client's credentials at the IdP.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Secret,
}

/// A token endpoint answer (RFC 6749 §5.1).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
}

/// What the proxy keeps of a validated ID token.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    pub subject: String,
    /// The IdP's session id (`sid`), by which a back-channel logout token
    /// may name this login; `None` when the token has none, or one that is
    /// not a string.
    pub sid: Option<String>,
}

/// The ID token with the one claim openidconnect does not model that the
/// proxy keeps.
type IdToken = openidconnect::IdToken<
    SessionIdClaim,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

#[derive(Debug, Deserialize, Serialize)]
struct SessionIdClaim {
    /// Any JSON: a `sid` of another type is ignored, not a reason to refuse
    /// the login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<Value>,
}

impl AdditionalClaims for SessionIdClaim {}

/// Redeems an authorization code (with its PKCE verifier).
pub async fn redeem_code(
    provider: &Provider,
    endpoints: &Endpoints,
    client: &ClientCredentials,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<TokenResponse, AuthError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
    ];
    token_request(provider, endpoints, client, &form).await
}

/// Trades a refresh token for a new access token.
pub async fn refresh(
    provider: &Provider,
    endpoints: &Endpoints,
    client: &ClientCredentials,
    refresh_token: &str,
) -> Result<TokenResponse, AuthError> {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    token_request(provider, endpoints, client, &form).await
}

async fn token_request(
    provider: &Provider,
    endpoints: &Endpoints,
    client: &ClientCredentials,
    form: &[(&str, &str)],
) -> Result<TokenResponse, AuthError> {
    let mut form = form.to_vec();
    let basic = match endpoints.token_auth {
        TokenAuth::Basic => Some(basic_auth(&client.client_id, client.client_secret.expose())),
        TokenAuth::Post => {
            form.push(("client_id", &client.client_id));
            form.push(("client_secret", client.client_secret.expose()));
            None
        }
    };
    let response = provider
        .http
        .post_form(endpoints.token.as_str(), &form, basic)
        .await
        .map_err(AuthError::TokenEndpoint)?;
    if response.status == 400
        && let Ok(error) = response.json::<TokenErrorResponse>()
        && error.error == "invalid_grant"
    {
        return Err(AuthError::InvalidGrant);
    }
    let response = response.success().map_err(AuthError::TokenEndpoint)?;
    serde_json::from_slice(&response.body).map_err(AuthError::InvalidTokenResponse)
}

/// Validates an ID token fully. An unknown `kid` refetches the IdP's keys
/// (at most once a minute) and tries once more, which is how a key rotation
/// at the IdP is picked up.
pub async fn verify_id_token(
    provider: &Provider,
    endpoints: &Endpoints,
    client_id: &str,
    raw: &str,
    nonce: &str,
    access_token: &str,
) -> Result<VerifiedIdToken, AuthError> {
    let token = IdToken::from_str(raw).map_err(|error| {
        AuthError::InvalidIdToken(format!("not a JWT: {}", Untrusted::message(&error)))
    })?;
    let verify = |keys: &CoreJsonWebKeySet| {
        verify_with(
            keys,
            &token,
            &endpoints.issuer,
            client_id,
            nonce,
            access_token,
        )
    };
    Ok(with_provider_keys(provider, verify).await?)
}

/// Runs `check` against the IdP's signing keys. When no key fits the
/// token's `kid`, the keys are fetched again (at most once a minute, see
/// [`Provider::refetch_keys`]) and `check` runs once more: that is how a key
/// rotation at the IdP is picked up, for every kind of token it signs.
pub(crate) async fn with_provider_keys<T, E>(
    provider: &Provider,
    check: impl Fn(&CoreJsonWebKeySet) -> Result<T, Refusal<E>>,
) -> Result<T, Refusal<E>> {
    let keys = provider.keys().await.map_err(Refusal::Keys)?;
    match check(&keys) {
        Err(Refusal::UnknownKey) => match provider.refetch_keys().await.map_err(Refusal::Keys)? {
            Some(keys) => check(&keys),
            None => Err(Refusal::UnknownKey),
        },
        result => result,
    }
}

/// Why a token was refused by a check against the IdP's keys. A `kid` the
/// key set lacks is worth one fetch of fresh keys (the IdP may have rotated
/// them); anything else is final.
pub(crate) enum Refusal<E> {
    UnknownKey,
    /// The keys could not be loaded (nor, after an unknown `kid`, reloaded).
    Keys(AuthError),
    Invalid(E),
}

impl<E> From<E> for Refusal<E> {
    fn from(error: E) -> Self {
        Refusal::Invalid(error)
    }
}

impl From<Refusal<AuthError>> for AuthError {
    fn from(refusal: Refusal<AuthError>) -> Self {
        match refusal {
            Refusal::UnknownKey => {
                AuthError::InvalidIdToken("no key matches the token's kid".to_owned())
            }
            Refusal::Keys(error) | Refusal::Invalid(error) => error,
        }
    }
}

/// A compact JWS's signature and what it covers, not yet verified.
pub(crate) struct SignedJws<'a> {
    pub alg: CoreJwsSigningAlgorithm,
    pub kid: Option<JsonWebKeyId>,
    /// `header.payload` as the token spells them: the bytes signed.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Why [`check_signature`] refused a signature made with a key it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureRefusal {
    /// Not one of [`ALLOWED_ALGS`].
    DisallowedAlg,
    /// More than one key fits and the token does not say which.
    AmbiguousKey,
    BadSignature,
}

/// The signing algorithm named `alg`, if it is one of [`ALLOWED_ALGS`].
pub(crate) fn allowed_alg(alg: &str) -> Option<CoreJwsSigningAlgorithm> {
    serde_json::from_value(Value::String(alg.to_owned()))
        .ok()
        .filter(|alg| ALLOWED_ALGS.contains(alg))
}

/// Verifies a signature against one key set, choosing the key as
/// openidconnect does for ID tokens: the one key that [`fits`] the token.
pub(crate) fn check_signature(
    keys: &CoreJsonWebKeySet,
    jws: &SignedJws<'_>,
) -> Result<(), Refusal<SignatureRefusal>> {
    if !ALLOWED_ALGS.contains(&jws.alg) {
        return Err(SignatureRefusal::DisallowedAlg.into());
    }
    let mut fitting = keys.keys().iter().filter(|key| fits(key, jws));
    let key = match (fitting.next(), fitting.next()) {
        (None, _) => return Err(Refusal::UnknownKey),
        (Some(key), None) => key,
        (Some(_), Some(_)) => return Err(SignatureRefusal::AmbiguousKey.into()),
    };
    key.verify_signature(&jws.alg, jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|_| SignatureRefusal::BadSignature.into())
}

/// Whether `key` may have made `jws`'s signature: the token's `kid`, when
/// it has one, names the key; the key may sign (or says nothing of its
/// use), is of the algorithm's type, and is tied to that algorithm or to
/// none.
fn fits(key: &CoreJsonWebKey, jws: &SignedJws<'_>) -> bool {
    let named = jws.kid.is_none() || key.key_id() == jws.kid.as_ref();
    let signs = key
        .key_use()
        .is_none_or(|key_use| key_use.allows_signature());
    let typed = jws.alg.key_type().as_ref() == Some(key.key_type());
    let tied = match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => true,
        JsonWebKeyAlgorithm::Algorithm(alg) => *alg == jws.alg,
        JsonWebKeyAlgorithm::Unsupported => false,
    };
    named && signs && typed && tied
}

fn verify_with(
    keys: &CoreJsonWebKeySet,
    token: &IdToken,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    access_token: &str,
) -> Result<VerifiedIdToken, Refusal<AuthError>> {
    let issuer_url = IssuerUrl::new(issuer.to_owned())
        .map_err(|error| AuthError::Internal(format!("issuer `{issuer}` is not a URL: {error}")))?;
    let now = SystemTime::now();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_owned()),
        issuer_url,
        keys.clone(),
    )
    .set_allowed_algs(ALLOWED_ALGS)
    // Extra audiences are allowed only with `azp` naming us, checked below.
    .set_other_audience_verifier_fn(|_| true)
    .set_issue_time_verifier_fn(move |iat| {
        let latest = now + IAT_LEEWAY;
        if SystemTime::from(iat) > latest {
            Err(format!("iat {iat} is in the future"))
        } else {
            Ok(())
        }
    });
    let expected_nonce = Nonce::new(nonce.to_owned());
    let claims = token
        .claims(&verifier, &expected_nonce)
        .map_err(|error| match error {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => Refusal::UnknownKey,
            // openidconnect's Display for this one drops the inner reason (alg
            // none, HMAC, bad signature...); keep it for the log.
            ClaimsVerificationError::SignatureVerification(inner) => {
                Refusal::Invalid(AuthError::InvalidIdToken(format!(
                    "signature verification failed: {}",
                    Untrusted::message(&inner)
                )))
            }
            other => Refusal::Invalid(AuthError::InvalidIdToken(
                Untrusted::message(&other).to_string(),
            )),
        })?;

    let audiences = claims.audiences();
    match claims.authorized_party() {
        Some(azp) if azp.as_str() != client_id => {
            return Err(AuthError::InvalidIdToken(format!(
                "azp `{}` is not this client",
                Untrusted::new(azp.as_str())
            ))
            .into());
        }
        None if audiences.len() > 1 => {
            return Err(AuthError::InvalidIdToken("several audiences and no azp".into()).into());
        }
        _ => {}
    }

    if let Some(expected_hash) = claims.access_token_hash() {
        let alg = token
            .signing_alg()
            .map_err(|error| AuthError::InvalidIdToken(Untrusted::message(&error).to_string()))?;
        let key = token
            .signing_key(&verifier)
            .map_err(|error| AuthError::InvalidIdToken(Untrusted::message(&error).to_string()))?;
        let actual =
            AccessTokenHash::from_token(&AccessToken::new(access_token.to_owned()), alg, key)
                .map_err(|error| {
                    AuthError::InvalidIdToken(Untrusted::message(&error).to_string())
                })?;
        if actual != *expected_hash {
            return Err(AuthError::InvalidIdToken(
                "at_hash does not match the access token".into(),
            )
            .into());
        }
    }
    let sid = claims.additional_claims().sid.as_ref();
    Ok(VerifiedIdToken {
        subject: claims.subject().as_str().to_owned(),
        sid: sid.and_then(Value::as_str).map(str::to_owned),
    })
}

/// The claims of an ID token that has been verified: its payload, decoded.
pub fn verified_claims(id_token: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine as _;
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The userinfo claims, verbatim, after checking that `sub` is the expected one.
pub async fn userinfo(
    provider: &Provider,
    endpoints: &Endpoints,
    access_token: &str,
    expected_subject: &str,
) -> Result<Box<RawValue>, AuthError> {
    let response = provider
        .http
        .get(endpoints.userinfo.as_str(), Some(access_token))
        .await
        .map_err(|error| match error {
            IdpCallError::TooLarge(limit) => AuthError::UserinfoTooLarge { limit },
            other => AuthError::UserinfoEndpoint(other),
        })?
        .success()
        .map_err(AuthError::UserinfoEndpoint)?;

    #[derive(Deserialize)]
    struct Subject {
        sub: String,
    }
    let subject: Subject = serde_json::from_slice(&response.body).map_err(|error| {
        AuthError::InvalidUserinfo(format!(
            "no string `sub` in a JSON object: {}",
            Untrusted::message(&error)
        ))
    })?;
    if subject.sub != expected_subject {
        return Err(AuthError::InvalidUserinfo(
            "userinfo `sub` differs from the ID token's".into(),
        ));
    }
    let text = std::str::from_utf8(&response.body)
        .map_err(|error| AuthError::InvalidUserinfo(Untrusted::message(&error).to_string()))?
        .trim();
    RawValue::from_string(text.to_owned())
        .map_err(|error| AuthError::InvalidUserinfo(Untrusted::message(&error).to_string()))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
