//! One OpenID provider as a relying party sees it: its endpoints (configured,
//! or discovered from `{issuer}/.well-known/openid-configuration`) and its
//! signing keys (refetched on an unknown `kid`, at most once a minute).
//!
//! Both are loaded through a [`Loader`], so that an IdP that is down or hung
//! costs each request at most one `idp_timeout`, however many arrive
//! together: requests share the one attempt in flight, and after a failure
//! they fail at once with it until the retry backoff (1 s, doubling to 30 s)
//! has elapsed. The next attempt is then made by whoever needs it first: a
//! request, or the background retry started by [`Provider::start`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt as _;
use openidconnect::core::CoreJsonWebKeySet;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;
use url::Url;

use super::http::IdpClient;
use crate::auth::error::{AuthError, IdpCallError, Untrusted};

/// The fewest seconds between two JWKS fetches caused by unknown key ids.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a failed attempt is remembered before the next may start; each
/// further failure doubles it, up to [`LONGEST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic`, the default.
    Basic,
    /// `client_secret_post`, when the IdP supports only that.
    Post,
}

/// Endpoints given in the configuration; any left `None` is discovered,
/// unless discovery is off.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfiguredEndpoints {
    /// Where browsers are sent to log in: the name they reach the IdP by,
    /// which may differ from the one the proxy uses for the others.
    pub authorization: Option<Url>,
    pub token: Option<Url>,
    pub userinfo: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub end_session: Option<Url>,
    /// `false`: the discovery document is never fetched, and every endpoint
    /// but `end_session` must be given. `true` (the default): it is fetched
    /// for the endpoints left `None`, and only then.
    pub discovery: bool,
    /// `None`: `client_secret_basic`, or `client_secret_post` when the
    /// discovery document allows only that.
    pub token_auth: Option<TokenAuth>,
}

impl Default for ConfiguredEndpoints {
    /// Nothing configured: everything from discovery.
    fn default() -> Self {
        Self {
            authorization: None,
            token: None,
            userinfo: None,
            jwks_uri: None,
            end_session: None,
            discovery: true,
            token_auth: None,
        }
    }
}

impl ConfiguredEndpoints {
    /// Whether the login flow can run on these alone.
    fn complete(&self) -> bool {
        self.authorization.is_some()
            && self.token.is_some()
            && self.userinfo.is_some()
            && self.jwks_uri.is_some()
    }

    /// The endpoints without discovery: `issuer` as configured is what the
    /// tokens' `iss` must be.
    fn without_discovery(self, issuer: String) -> Result<Endpoints, LoadError> {
        let missing = |key: &str| {
            LoadError::BadDiscovery(format!(
                "discovery is off and no {key} is configured for {issuer}"
            ))
        };
        Ok(Endpoints {
            authorization: self
                .authorization
                .ok_or_else(|| missing("authorization_endpoint"))?,
            token: self.token.ok_or_else(|| missing("token_endpoint"))?,
            userinfo: self.userinfo.ok_or_else(|| missing("user_info_endpoint"))?,
            jwks_uri: self.jwks_uri.ok_or_else(|| missing("jwks_uri"))?,
            end_session: self.end_session,
            token_auth: self.token_auth.unwrap_or(TokenAuth::Basic),
            iss_in_callback: false,
            issuer,
        })
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
    /// The IdP promises `iss` on every authorization response (RFC 9207),
    /// so a callback without one is refused.
    pub iss_in_callback: bool,
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
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

pub struct Provider {
    /// As configured, for discovery and logs; [`Endpoints::issuer`] is authoritative.
    issuer: String,
    configured: ConfiguredEndpoints,
    pub(crate) http: IdpClient,
    /// Loaded once, then kept.
    endpoints: Loader<Endpoints>,
    /// Loaded once, then replaced by each refetch that succeeds.
    keys: Loader<CoreJsonWebKeySet>,
    /// When the keys were last fetched because of an unknown `kid`.
    last_refetch: Mutex<Option<Instant>>,
    /// Whether the login endpoints are needed at all; `false` for a
    /// provider that only verifies tokens against a configured JWKS.
    needs_endpoints: bool,
    /// The most keys a JWKS may hold; one with more is refused whole.
    max_keys: usize,
}

impl Provider {
    pub fn new(issuer: String, configured: ConfiguredEndpoints, http: IdpClient) -> Self {
        Self {
            issuer,
            configured,
            http,
            endpoints: Loader::new(),
            keys: Loader::new(),
            last_refetch: Mutex::new(None),
            needs_endpoints: true,
            max_keys: usize::MAX,
        }
    }

    /// A provider known only by its issuer and key set, for verifying the
    /// tokens it signs: nothing is discovered, and a JWKS with more than
    /// `max_keys` keys is refused (bound its size with the client's
    /// [`IdpClient::with_response_limit`]).
    pub fn jwks_only(issuer: String, jwks_uri: Url, http: IdpClient, max_keys: usize) -> Self {
        let configured = ConfiguredEndpoints {
            jwks_uri: Some(jwks_uri),
            ..ConfiguredEndpoints::default()
        };
        Self {
            needs_endpoints: false,
            max_keys,
            ..Self::new(issuer, configured, http)
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// True once the endpoints and keys have been loaded.
    pub fn is_ready(&self) -> bool {
        (!self.needs_endpoints || self.endpoints.loaded().is_some()) && self.keys.loaded().is_some()
    }

    /// Loads endpoints and keys now, and keeps retrying in the background
    /// while the IdP is unreachable, each time the backoff of the last
    /// failure has elapsed (the same moments at which requests may try).
    pub fn start(self: &Arc<Self>) {
        let provider = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(provider) = provider.upgrade() else {
                    return;
                };
                let Err(error) = provider.load().await else {
                    return;
                };
                let retry_at = provider.retry_at();
                tracing::warn!(
                    issuer = %provider.issuer,
                    error = %error,
                    cause = ?std::error::Error::source(&error),
                    retry_in = ?retry_at.saturating_duration_since(Instant::now()),
                    "the IdP is not reachable yet; logins answer 561 and bearer tokens 401 until it is"
                );
                drop(provider);
                tokio::time::sleep_until(retry_at).await;
            }
        });
    }

    /// Loads endpoints and keys, or returns the failure being remembered.
    pub(crate) async fn load(&self) -> Result<(), AuthError> {
        if self.needs_endpoints {
            self.endpoints().await?;
        }
        self.keys().await?;
        Ok(())
    }

    /// When the failure being remembered lets the next attempt start; now
    /// when none is.
    fn retry_at(&self) -> Instant {
        [self.endpoints.retry_at(), self.keys.retry_at()]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Instant::now)
    }

    /// The endpoints, discovered on first use.
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, AuthError> {
        let attempt = || {
            discover(
                self.issuer.clone(),
                self.configured.clone(),
                self.http.clone(),
            )
        };
        Ok(self.endpoints.get(attempt).await?)
    }

    /// The IdP's signing keys, fetched on first use.
    pub async fn keys(&self) -> Result<Arc<CoreJsonWebKeySet>, AuthError> {
        if let Some(keys) = self.keys.loaded() {
            return Ok(keys);
        }
        let jwks_uri = self.jwks_uri().await?;
        let attempt = || fetch_keys(self.http.clone(), jwks_uri, self.max_keys);
        Ok(self.keys.get(attempt).await?)
    }

    /// Fetches the keys again after an ID token named an unknown `kid`,
    /// unless that was already done in the last minute (so forged tokens
    /// cannot make us hammer the IdP). `None` when rate-limited. When the
    /// fetch fails, the keys loaded before stay in use.
    pub async fn refetch_keys(&self) -> Result<Option<Arc<CoreJsonWebKeySet>>, AuthError> {
        {
            let mut last = self
                .last_refetch
                .lock()
                .expect("held only to read and set an Instant, which cannot panic");
            if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        let jwks_uri = self.jwks_uri().await?;
        let attempt = || fetch_keys(self.http.clone(), jwks_uri, self.max_keys);
        Ok(Some(self.keys.reload(attempt).await?))
    }

    /// The configured `jwks_uri` (which discovery would not override), else
    /// the discovered one.
    async fn jwks_uri(&self) -> Result<Url, AuthError> {
        match &self.configured.jwks_uri {
            Some(jwks_uri) => Ok(jwks_uri.clone()),
            None => Ok(self.endpoints().await?.jwks_uri.clone()),
        }
    }
}

/// Every endpoint, from the configuration and, for any it leaves out, the
/// discovery document. Owns its inputs: it runs on a task of its own.
async fn discover(
    issuer: String,
    configured: ConfiguredEndpoints,
    http: IdpClient,
) -> Result<Endpoints, LoadError> {
    // With every endpoint given there is nothing to discover, whether or
    // not discovery is on.
    if !configured.discovery || configured.complete() {
        return configured.without_discovery(issuer);
    }
    let url = format!("{issuer}/.well-known/openid-configuration");
    let discovery: Discovery = http
        .get(&url, None)
        .await
        .and_then(|response| response.success()?.json())
        .map_err(LoadError::unavailable)?;
    // `https://idp/` and `https://idp` name the same issuer; the
    // discovered spelling is the one its tokens carry.
    if discovery.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(LoadError::BadDiscovery(format!(
            "the discovery document at {url} names issuer `{}`, not the configured `{issuer}`",
            Untrusted::new(&discovery.issuer)
        )));
    }
    let methods = &discovery.token_endpoint_auth_methods_supported;
    let only_post = !methods.is_empty()
        && methods.iter().any(|method| method == "client_secret_post")
        && !methods.iter().any(|method| method == "client_secret_basic");
    let userinfo = configured
        .userinfo
        .or(discovery.userinfo_endpoint)
        .ok_or_else(|| {
            LoadError::BadDiscovery(format!(
                "{url} names no userinfo_endpoint; configure user_info_endpoint"
            ))
        })?;
    Ok(Endpoints {
        issuer: discovery.issuer,
        authorization: configured
            .authorization
            .unwrap_or(discovery.authorization_endpoint),
        token: configured.token.unwrap_or(discovery.token_endpoint),
        userinfo,
        jwks_uri: configured.jwks_uri.unwrap_or(discovery.jwks_uri),
        end_session: configured.end_session.or(discovery.end_session_endpoint),
        token_auth: configured.token_auth.unwrap_or(if only_post {
            TokenAuth::Post
        } else {
            TokenAuth::Basic
        }),
        iss_in_callback: discovery.authorization_response_iss_parameter_supported,
    })
}

async fn fetch_keys(
    http: IdpClient,
    jwks_uri: Url,
    max_keys: usize,
) -> Result<CoreJsonWebKeySet, LoadError> {
    let keys: CoreJsonWebKeySet = http
        .get(jwks_uri.as_str(), None)
        .await
        .and_then(|response| response.success()?.json())
        .map_err(LoadError::unavailable)?;
    let count = keys.keys().len();
    if count > max_keys {
        return Err(LoadError::BadKeys(format!(
            "the JWKS at {jwks_uri} holds {count} keys; at most {max_keys} are accepted"
        )));
    }
    Ok(keys)
}

/// Why the endpoints or keys could not be loaded. Cheap to clone: one
/// failure is handed to every caller that waited for the attempt, and to
/// every caller after it until the retry backoff has elapsed.
#[derive(Debug, Clone)]
enum LoadError {
    Unavailable(Arc<IdpCallError>),
    BadDiscovery(String),
    BadKeys(String),
    /// The attempt panicked, or its task was cancelled because the runtime
    /// is shutting down.
    Abandoned,
}

impl LoadError {
    fn unavailable(error: IdpCallError) -> Self {
        LoadError::Unavailable(Arc::new(error))
    }
}

impl From<LoadError> for AuthError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Unavailable(cause) => AuthError::ProviderUnavailable(cause),
            LoadError::BadDiscovery(reason) => AuthError::BadDiscovery(reason),
            LoadError::BadKeys(reason) => AuthError::BadKeys(reason),
            LoadError::Abandoned => {
                AuthError::Internal("loading the IdP's endpoints or keys was abandoned".into())
            }
        }
    }
}

/// What one attempt ended with, as every caller that waited for it gets it.
type Outcome<T> = Result<Arc<T>, LoadError>;

/// One thing loaded from the IdP, shared by every request that needs it:
/// at most one attempt runs at a time and callers arriving meanwhile wait for
/// its outcome; a failure is remembered, and returned at once, until the
/// retry backoff has elapsed. Clones share the same state.
struct Loader<T> {
    state: Arc<Mutex<LoadState<T>>>,
}

struct LoadState<T> {
    /// The last value loaded; a failed reload leaves it in place.
    loaded: Option<Arc<T>>,
    /// The attempt in flight, which sends its outcome here when it ends,
    /// after recording it in this state.
    running: Option<watch::Receiver<Option<Outcome<T>>>>,
    /// The last attempt's failure while nothing is loaded.
    failed: Option<Failure>,
    /// How long the next failure is remembered.
    backoff: Duration,
}

struct Failure {
    error: LoadError,
    /// Until then, callers get `error` without a new attempt.
    retry_at: Instant,
}

impl<T> Clone for Loader<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Loader<T> {
    fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(LoadState {
                loaded: None,
                running: None,
                failed: None,
                backoff: FIRST_RETRY,
            })),
        }
    }

    fn lock(state: &Mutex<LoadState<T>>) -> MutexGuard<'_, LoadState<T>> {
        state
            .lock()
            .expect("held only for bookkeeping that cannot panic, never across an await")
    }

    fn loaded(&self) -> Option<Arc<T>> {
        Self::lock(&self.state).loaded.clone()
    }

    /// When the failure being remembered lets the next attempt start.
    fn retry_at(&self) -> Option<Instant> {
        let state = Self::lock(&self.state);
        state.failed.as_ref().map(|failure| failure.retry_at)
    }

    /// The value loaded; else the outcome of the attempt in flight; else,
    /// within the backoff of a failure, that failure; else the outcome of a
    /// new `attempt`.
    async fn get<F>(&self, attempt: impl FnOnce() -> F) -> Outcome<T>
    where
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        self.load(true, attempt).await
    }

    /// Like [`Loader::get`], but a value already loaded does not count (the
    /// IdP may have rotated its keys).
    async fn reload<F>(&self, attempt: impl FnOnce() -> F) -> Outcome<T>
    where
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        self.load(false, attempt).await
    }

    async fn load<F>(&self, use_loaded: bool, attempt: impl FnOnce() -> F) -> Outcome<T>
    where
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        let mut outcome = {
            let mut state = Self::lock(&self.state);
            if use_loaded && let Some(value) = &state.loaded {
                return Ok(value.clone());
            }
            // A sender gone without an outcome: the attempt's task was
            // cancelled with its runtime, and will never answer.
            let running = state
                .running
                .as_ref()
                .filter(|running| running.has_changed().is_ok());
            match running {
                Some(running) => running.clone(),
                None => {
                    if let Some(failure) = &state.failed
                        && Instant::now() < failure.retry_at
                    {
                        return Err(failure.error.clone());
                    }
                    let running = self.spawn(attempt());
                    state.running = Some(running.clone());
                    running
                }
            }
        };
        match outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for an outcome"),
            Err(_) => Err(LoadError::Abandoned),
        }
    }

    /// Runs `attempt` on a task of its own: it belongs to every caller
    /// waiting for it, so one of them going away (its client hung up) must
    /// not cancel it for the others.
    fn spawn<F>(&self, attempt: F) -> watch::Receiver<Option<Outcome<T>>>
    where
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        let (sender, receiver) = watch::channel(None);
        let state = self.state.clone();
        tokio::spawn(async move {
            // A panic becomes a failure like any other, so that it is
            // remembered and retried with the backoff instead of leaving
            // `running` set for ever.
            let outcome = match AssertUnwindSafe(attempt).catch_unwind().await {
                Ok(outcome) => outcome.map(Arc::new),
                Err(_) => Err(LoadError::Abandoned),
            };
            // Recorded before it is sent, so that a caller woken by it and
            // asking again finds it remembered.
            Self::record(&mut Self::lock(&state), &outcome);
            sender.send_replace(Some(outcome));
        });
        receiver
    }

    fn record(state: &mut LoadState<T>, outcome: &Outcome<T>) {
        state.running = None;
        match outcome {
            Ok(value) => {
                state.loaded = Some(value.clone());
                state.failed = None;
                state.backoff = FIRST_RETRY;
            }
            // Keys that fail to reload are still the best there are.
            Err(_) if state.loaded.is_some() => {}
            Err(error) => {
                state.failed = Some(Failure {
                    error: error.clone(),
                    retry_at: Instant::now() + state.backoff,
                });
                state.backoff = (state.backoff * 2).min(LONGEST_RETRY);
            }
        }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio::net::TcpListener;
    use tokio::task::JoinSet;

    use super::*;

    const IDP_TIMEOUT: Duration = Duration::from_secs(2);

    /// Stands in for the IdP behind a [`Loader`]: counts the attempts; each
    /// one hangs until `IDP_TIMEOUT` and fails, or, once `up`, succeeds.
    #[derive(Clone, Default)]
    struct FakeIdp {
        attempts: Arc<AtomicUsize>,
        up: Arc<AtomicBool>,
    }

    impl FakeIdp {
        fn attempt(&self) -> impl Future<Output = Result<u32, LoadError>> + Send + 'static {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let up = self.up.load(Ordering::SeqCst);
            async move {
                if up {
                    return Ok(7);
                }
                tokio::time::sleep(IDP_TIMEOUT).await;
                Err(LoadError::unavailable(IdpCallError::Timeout(IDP_TIMEOUT)))
            }
        }

        fn attempts(&self) -> usize {
            self.attempts.load(Ordering::SeqCst)
        }
    }

    /// `loader.get` from a task of its own, with the moment it returned.
    fn spawn_get(
        callers: &mut JoinSet<(Outcome<u32>, Instant)>,
        loader: &Loader<u32>,
        idp: &FakeIdp,
    ) {
        let (loader, idp) = (loader.clone(), idp.clone());
        callers.spawn(async move {
            let outcome = loader.get(|| idp.attempt()).await;
            (outcome, Instant::now())
        });
    }

    #[track_caller]
    fn assert_timed_out(outcome: &Outcome<u32>) {
        assert!(
            matches!(outcome, Err(LoadError::Unavailable(cause)) if matches!(**cause, IdpCallError::Timeout(_))),
            "expected the attempt's timeout, got {outcome:?}"
        );
    }

    /// Fails one attempt; returns when it failed.
    async fn fail_once(loader: &Loader<u32>, idp: &FakeIdp) -> Instant {
        assert_timed_out(&loader.get(|| idp.attempt()).await);
        Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn callers_during_a_hung_attempt_share_it_and_fail_when_it_times_out() {
        let loader = Loader::new();
        let idp = FakeIdp::default();
        let started = Instant::now();
        let mut callers = JoinSet::new();
        for _ in 0..8 {
            spawn_get(&mut callers, &loader, &idp);
        }
        // Latecomers join the same attempt rather than queueing behind it.
        tokio::time::sleep(IDP_TIMEOUT / 2).await;
        for _ in 0..8 {
            spawn_get(&mut callers, &loader, &idp);
        }
        for (outcome, returned) in callers.join_all().await {
            assert_timed_out(&outcome);
            assert_eq!(
                returned - started,
                IDP_TIMEOUT,
                "all fail with the one attempt"
            );
        }
        assert_eq!(idp.attempts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_callers_fail_at_once_until_the_backoff_elapses() {
        let loader = Loader::new();
        let idp = FakeIdp::default();
        let failed = fail_once(&loader, &idp).await;
        assert_eq!(loader.retry_at(), Some(failed + FIRST_RETRY));

        let mut callers = JoinSet::new();
        for _ in 0..8 {
            spawn_get(&mut callers, &loader, &idp);
        }
        for (outcome, returned) in callers.join_all().await {
            assert_timed_out(&outcome);
            assert_eq!(returned, failed, "the remembered failure, at once");
        }
        tokio::time::sleep_until(failed + FIRST_RETRY - Duration::from_millis(1)).await;
        assert_timed_out(&loader.get(|| idp.attempt()).await);
        assert_eq!(idp.attempts(), 1, "no attempt within the backoff");

        tokio::time::sleep_until(failed + FIRST_RETRY).await;
        let retried = Instant::now();
        assert_timed_out(&loader.get(|| idp.attempt()).await);
        assert_eq!(Instant::now() - retried, IDP_TIMEOUT, "a new attempt");
        assert_eq!(idp.attempts(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_doubles_up_to_thirty_seconds() {
        let loader = Loader::new();
        let idp = FakeIdp::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let failed = fail_once(&loader, &idp).await;
            let retry_at = loader.retry_at().expect("a failure is remembered");
            waits.push((retry_at - failed).as_secs());
            tokio::time::sleep_until(retry_at).await;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(idp.attempts(), 8, "one attempt per backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_backoff_an_attempt_succeeds_and_is_kept() {
        let loader = Loader::new();
        let idp = FakeIdp::default();
        let failed = fail_once(&loader, &idp).await;

        idp.up.store(true, Ordering::SeqCst);
        tokio::time::sleep_until(failed + FIRST_RETRY).await;
        assert_eq!(
            *loader.get(|| idp.attempt()).await.expect("the IdP is up"),
            7
        );
        assert_eq!(idp.attempts(), 2);
        assert_eq!(loader.retry_at(), None, "the failure is forgotten");

        idp.up.store(false, Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(*loader.get(|| idp.attempt()).await.expect("kept"), 7);
        }
        assert_eq!(idp.attempts(), 2, "loaded once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reload_keeps_the_loaded_value_and_remembers_nothing() {
        let loader = Loader::new();
        let idp = FakeIdp::default();
        idp.up.store(true, Ordering::SeqCst);
        loader.get(|| idp.attempt()).await.expect("the IdP is up");

        idp.up.store(false, Ordering::SeqCst);
        let reloads = [(); 4].map(|()| loader.reload(|| idp.attempt()));
        for outcome in futures_util::future::join_all(reloads).await {
            assert_timed_out(&outcome);
        }
        assert_eq!(idp.attempts(), 2, "concurrent reloads share one attempt");
        assert_eq!(loader.retry_at(), None);
        assert_eq!(
            *loader.get(|| idp.attempt()).await.expect("still loaded"),
            7
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_does_not_cancel_the_attempt() {
        let loader = Loader::new();
        let idp = FakeIdp::default();
        let started = Instant::now();
        let gave_up = tokio::time::timeout(IDP_TIMEOUT / 4, loader.get(|| idp.attempt())).await;
        assert!(gave_up.is_err());

        assert_timed_out(&loader.get(|| idp.attempt()).await);
        assert_eq!(
            Instant::now() - started,
            IDP_TIMEOUT,
            "joined the first attempt"
        );
        assert_eq!(idp.attempts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_panics_is_a_failure_like_any_other() {
        let loader = Loader::<u32>::new();
        let panics = || async { panic!("a bug in the attempt") };
        assert!(matches!(
            loader.get(panics).await,
            Err(LoadError::Abandoned)
        ));
        assert!(loader.retry_at().is_some(), "remembered, not left running");
        assert!(matches!(
            loader.get(panics).await,
            Err(LoadError::Abandoned)
        ));
    }

    #[test]
    fn an_attempt_cancelled_with_its_runtime_is_not_waited_for() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime")
        };
        let loader = Loader::new();
        let idp = FakeIdp::default();
        runtime().block_on(async {
            let gave_up = tokio::time::timeout(IDP_TIMEOUT / 4, loader.get(|| idp.attempt()));
            assert!(gave_up.await.is_err());
        });
        idp.up.store(true, Ordering::SeqCst);
        runtime().block_on(async {
            assert_eq!(
                *loader.get(|| idp.attempt()).await.expect("a new attempt"),
                7
            );
        });
        assert_eq!(idp.attempts(), 2);
    }

    /// A loopback "IdP" that accepts connections and never answers; counts
    /// the connections.
    async fn hung_idp() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("a bound address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            // Closing a connection would be an answer; hold them all.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (addr, accepted)
    }

    fn provider(issuer: String, configured: ConfiguredEndpoints, timeout: Duration) -> Provider {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Provider::new(issuer, configured, IdpClient::new(timeout))
    }

    #[track_caller]
    fn assert_unavailable<T: std::fmt::Debug>(result: &Result<T, AuthError>) {
        assert!(
            matches!(result, Err(AuthError::ProviderUnavailable(cause)) if matches!(**cause, IdpCallError::Timeout(_))),
            "expected ProviderUnavailable(Timeout), got {result:?}"
        );
    }

    // Real sockets, so real time: the paused clock would run ahead of them.
    const REAL_TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn concurrent_discoveries_at_a_hung_idp_send_one_request() {
        let (addr, accepted) = hung_idp().await;
        let provider = provider(
            format!("http://{addr}"),
            ConfiguredEndpoints::default(),
            REAL_TIMEOUT,
        );

        let started = std::time::Instant::now();
        let results = futures_util::future::join_all((0..20).map(|_| provider.endpoints())).await;
        let elapsed = started.elapsed();
        results.iter().for_each(assert_unavailable);
        assert!(
            elapsed < REAL_TIMEOUT * 3,
            "all failed with the one attempt, not after it: {elapsed:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let started = std::time::Instant::now();
        assert_unavailable(&provider.endpoints().await);
        assert!(
            started.elapsed() < REAL_TIMEOUT,
            "the failure is remembered"
        );
        assert_unavailable(&provider.keys().await);
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "no new request");
    }

    #[tokio::test]
    async fn with_discovery_off_the_issuer_is_never_asked() {
        let (addr, accepted) = hung_idp().await;
        let url = |path: &str| Some(format!("http://{addr}{path}").parse().expect("a URL"));
        let split = ConfiguredEndpoints {
            authorization: Some(
                "http://browser.example:8080/authorize"
                    .parse()
                    .expect("a URL"),
            ),
            token: url("/token"),
            userinfo: url("/userinfo"),
            jwks_uri: url("/jwks"),
            discovery: false,
            token_auth: Some(TokenAuth::Post),
            ..ConfiguredEndpoints::default()
        };
        let issuer = format!("http://{addr}/realms/demo");
        let endpoints = provider(issuer.clone(), split.clone(), REAL_TIMEOUT)
            .endpoints()
            .await
            .expect("configured, never fetched");
        assert_eq!(endpoints.issuer, issuer, "what iss must be");
        assert_eq!(endpoints.authorization.host_str(), Some("browser.example"));
        assert_eq!(endpoints.token_auth, TokenAuth::Post);
        assert!(endpoints.end_session.is_none());
        assert!(!endpoints.iss_in_callback);

        // A provider built without the configuration's checks, missing an
        // endpoint, fails at once rather than discovering it.
        let incomplete = ConfiguredEndpoints {
            userinfo: None,
            ..split
        };
        let result = provider(issuer, incomplete, REAL_TIMEOUT).endpoints().await;
        assert!(
            matches!(&result, Err(AuthError::BadDiscovery(reason)) if reason.contains("user_info_endpoint")),
            "{result:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no request at all");
    }

    #[tokio::test]
    async fn concurrent_key_fetches_at_a_hung_jwks_uri_send_one_request() {
        let (addr, accepted) = hung_idp().await;
        let url = |path: &str| Some(format!("http://{addr}{path}").parse().expect("a URL"));
        let configured = ConfiguredEndpoints {
            authorization: url("/authorize"),
            token: url("/token"),
            userinfo: url("/userinfo"),
            jwks_uri: url("/jwks"),
            ..ConfiguredEndpoints::default()
        };
        let provider = provider(format!("http://{addr}"), configured, REAL_TIMEOUT);

        let results = futures_util::future::join_all((0..20).map(|_| provider.keys())).await;
        results.iter().for_each(assert_unavailable);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let started = std::time::Instant::now();
        assert_unavailable(&provider.keys().await);
        assert!(
            started.elapsed() < REAL_TIMEOUT,
            "the failure is remembered"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "no new request");
        assert!(
            provider.endpoints().await.is_ok(),
            "configured, never fetched"
        );
        assert!(!provider.is_ready());
    }
}
