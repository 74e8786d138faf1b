//! One authenticate action at request time: load (and refresh) the session,
//! apply the unauthenticated policy, start a login, finish it at
//! `/oauth2/idpresponse`, sign out, and build the identity headers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge};
use serde_json::value::RawValue;
use tokio::sync::OnceCell;
use url::Url;

use super::bearer::{JwtRefusal, JwtValidator};
use super::clock::Clock;
use super::error::AuthError;
use super::oidc::logout::{self, LogoutRefusal, LogoutRequest};
use super::oidc::provider::Provider;
use super::oidc::tokens::{self, ClientCredentials, TokenResponse};
use super::opened::{OPENED_SESSIONS_BYTES, OpenedSessions};
use super::policy;
use super::principal::Principal;
use super::require::{self, Mismatch};
use super::revocations::Revocations;
use super::session::store::{
    AnyStore, Backend, OnceKeys, Revoked, StoreError, StoreHealth, Ticket,
};
use super::session::{
    CookieSealer, RequestCookies, SealedShards, clear_cookie, set_sharded_cookies, shard_names,
};
use super::state::{NONCE_COOKIE, PendingLogin, PendingLogins, Session, same_host_target};
use crate::body::{self, Body};
use crate::config::{
    ApiRequests, AuthCommon, SessionKey, SessionStoreKind, SigningConfig, UnauthenticatedPolicy,
};
use crate::identity::signing::{DataSigner, DataTokenCache, fingerprint};
use crate::metrics::Metrics;
use crate::untrusted::Untrusted;

/// Access tokens without `expires_in` are treated as valid this long.
const DEFAULT_ACCESS_TOKEN_LIFETIME: u64 = 3600;
/// How long a refresh result is kept for requests still carrying the old cookie.
const REFRESH_RESULT_KEPT: Duration = Duration::from_secs(60);
/// A refresh lock's hold beyond the IdP calls it covers.
const REFRESH_LOCK_MARGIN: Duration = Duration::from_secs(1);
/// How often a request waiting on another replica's refresh reads the store.
const REFRESH_POLL: Duration = Duration::from_millis(50);

/// Cookies are always `Secure`, as ALB's are: a plain-HTTP
/// listener is meant to sit behind a TLS terminator, and browsers accept
/// `Secure` cookies from `http://localhost` for development.
pub const SECURE_COOKIES: bool = true;

const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-amzn-oidc-accesstoken");
const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-amzn-oidc-identity");
const DATA_HEADER: HeaderName = HeaderName::from_static("x-amzn-oidc-data");

/// What every authenticate action of the process shares.
pub struct AuthShared {
    pub sealer: Arc<CookieSealer>,
    /// `sessions.secrets`, which also key the session store's indexes.
    pub secrets: Vec<SessionKey>,
    /// `sessions.store`, and the connection to it, and whether it answers.
    pub store: SessionStoreKind,
    pub backend: Arc<Backend>,
    pub store_health: Arc<StoreHealth>,
    /// Sessions ended by back-channel logout, when the store cannot delete
    /// them (cookies), and the logout tokens already used; carried over by
    /// a reload.
    pub revocations: Arc<Revocations>,
    pub once_keys: Arc<OnceKeys>,
    /// The longest `session_timeout` of any action: how long a revocation is kept.
    pub longest_session: Duration,
    /// What "now" is for sessions, logins and refresh.
    pub clock: Clock,
    /// `signing`, and the key and tokens made from it.
    pub signing: SigningConfig,
    pub signer: Arc<DataSigner>,
    pub data_tokens: Arc<DataTokenCache>,
    pub metrics: Arc<Metrics>,
}

/// Where sign-out sends the browser after clearing the session.
#[derive(Debug, Clone)]
pub enum Logout {
    /// The IdP's `end_session_endpoint` when it has one (OpenID RP-initiated logout).
    Oidc,
    /// Cognito's `/logout?client_id=…&logout_uri=…`.
    Cognito { logout_url: Url },
}

/// The request facts the flow needs, gathered once by the proxy.
pub struct RequestContext<'a> {
    /// The host and port the browser used, as `Host` (or `:authority`) or a
    /// trusted front proxy's `X-Forwarded-Host` said: the callback URL is
    /// built from it.
    pub authority: &'a str,
    /// Whether the browser used https (the connection's TLS, or a trusted
    /// front proxy's `X-Forwarded-Proto`).
    pub tls: bool,
    pub cookies: &'a RequestCookies<'a>,
    /// Whether a request with no session may be answered with the redirect
    /// to the IdP; false for a forward-auth check that wants a 401.
    pub may_redirect: bool,
}

impl RequestContext<'_> {
    fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    fn redirect_uri(&self) -> String {
        format!("{}/oauth2/idpresponse", self.origin())
    }
}

/// A principal with the identity headers built from it, once: a session's
/// later requests reuse both from the opened-session cache.
pub struct Authenticated {
    pub principal: Principal,
    /// The three `x-amzn-oidc-*` headers, then the action's `claim_headers`.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What the action's `require` says of the principal, decided once.
    verdict: Result<(), Mismatch>,
}

impl Authenticated {
    /// Roughly the bytes it holds, for the cache's budget.
    fn size(&self) -> usize {
        self.principal.size()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum::<usize>()
    }
}

/// The identity of a request with a valid session.
pub struct Identity {
    pub authenticated: Arc<Authenticated>,
    /// Re-issued session cookies after a refresh; empty otherwise.
    pub set_cookies: Vec<HeaderValue>,
}

impl Identity {
    /// Adds the `x-amzn-oidc-*` headers (inbound ones were stripped already).
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.authenticated.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// What to do with a request that matched an authenticating rule.
pub enum Decision {
    Authenticated(Identity),
    /// Forward without identity headers (`allow`, or a CORS preflight when allowed).
    Anonymous,
    /// The redirect to the IdP.
    Login(Response<Body>),
    /// 401: `deny`, or an API request under `authenticate`.
    Unauthenticated,
}

/// Why a back-channel logout ended no session.
pub enum RevokeError {
    /// The logout token's `jti` was seen before.
    Replayed,
    /// The session store did not answer.
    Store(AuthError),
}

/// A refreshed session, shared by every request that arrived with the old one.
struct Refreshed {
    session: Session,
    /// A new ticket's cookies; empty when the ticket stays the same (Redis).
    cookies: Vec<HeaderValue>,
}

/// How a refresh ended, for every request that waited on it.
#[derive(Clone)]
enum RefreshOutcome {
    Refreshed(Arc<Refreshed>),
    /// The user logs in again (the IdP refused, or the session is gone).
    Failed,
    /// The session store did not answer: 503, the session is not lost.
    StoreUnavailable(Arc<StoreError>),
}

type RefreshCell = Arc<OnceCell<RefreshOutcome>>;

pub struct Authenticator {
    /// The rule's name: pending logins remember it to find their way back.
    pub rule: String,
    settings: AuthCommon,
    client: ClientCredentials,
    provider: Arc<Provider>,
    logout: Logout,
    shared: Arc<AuthShared>,
    /// Where this action's sessions live.
    store: AnyStore,
    /// Refreshes in flight or just done, by refresh-token fingerprint (single-flight).
    refreshes: Arc<Mutex<HashMap<u128, RefreshCell>>>,
    opened: OpenedSessions<Arc<Authenticated>>,
    /// The revocations generation `opened` was last checked against.
    revocations_seen: AtomicU64,
    /// `bearer: accept`: bearer JWTs of this IdP, instead of a session.
    bearer: Option<JwtValidator>,
}

impl Authenticator {
    pub fn new(
        rule: String,
        settings: AuthCommon,
        client: ClientCredentials,
        provider: Arc<Provider>,
        logout: Logout,
        shared: Arc<AuthShared>,
    ) -> Self {
        let store = shared.backend.store(
            &shared.sealer,
            &shared.secrets,
            &settings.session_cookie_name,
            &shared.once_keys,
            &shared.metrics,
        );
        let bearer = settings.bearer_audience.as_ref().map(|audience| {
            let audience = if audience.is_empty() {
                vec![client.client_id.clone()]
            } else {
                audience.clone()
            };
            JwtValidator::for_action(
                provider.issuer().to_owned(),
                audience,
                Arc::clone(&provider),
                shared.clock.clone(),
                Arc::clone(&shared.metrics),
            )
        });
        Self {
            bearer,
            rule,
            settings,
            client,
            provider,
            logout,
            shared,
            store,
            refreshes: Arc::default(),
            opened: OpenedSessions::new(OPENED_SESSIONS_BYTES),
            revocations_seen: AtomicU64::new(0),
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.settings.session_cookie_name
    }

    /// The headers this action makes from claims (`claim_headers`).
    pub fn claim_header_names(&self) -> impl Iterator<Item = &HeaderName> {
        self.settings.claim_headers.iter().map(|(name, _)| name)
    }

    /// Whether this action started `login`, so that it alone may finish it.
    /// The rule's name is not enough: rules keep their default names
    /// (`rule-1`, …) on every listener, and the nonce cookie is shared by
    /// every port of a host, so a login for one IdP could otherwise be
    /// finished by a rule of the same name that trusts another.
    pub fn started(&self, login: &PendingLogin) -> bool {
        login.rule == self.rule
            && login.iss == self.provider.issuer()
            && login.client == self.client.client_id
    }

    /// Session, refresh, policy: who the request is, or what to do when
    /// it is nobody. [`authorize`](Self::authorize) decides next whether
    /// that principal may pass.
    pub async fn authenticate<B>(
        &self,
        request: &Request<B>,
        context: &RequestContext<'_>,
    ) -> Result<Decision, AuthError> {
        let now = self.shared.clock.now();
        if let Some(bearer) = &self.bearer
            && JwtValidator::offered(request.headers())
        {
            // Boxed: a JWKS fetch would otherwise enlarge every request's future.
            return Box::pin(self.bearer_identity(bearer, request.headers(), now))
                .await
                .map(Decision::Authenticated);
        }
        if let Some(shards) = self.session_shards(context.cookies) {
            self.forget_revoked();
            if let Some(authenticated) = self.opened.get(&shards, now) {
                return Ok(Decision::Authenticated(Identity {
                    authenticated,
                    set_cookies: Vec::new(),
                }));
            }
            // Boxed: a store call or a refresh would otherwise enlarge every
            // request's future (see server::conn).
            if let Some(identity) = Box::pin(self.resume(&shards, now)).await? {
                return Ok(Decision::Authenticated(identity));
            }
        }

        if self.settings.allow_cors_preflight && policy::is_cors_preflight(request) {
            return Ok(Decision::Anonymous);
        }
        match self.settings.on_unauthenticated_request {
            UnauthenticatedPolicy::Allow => Ok(Decision::Anonymous),
            UnauthenticatedPolicy::Deny => Ok(Decision::Unauthenticated),
            UnauthenticatedPolicy::Authenticate => {
                let redirect = self.settings.api_requests == ApiRequests::Redirect
                    || policy::is_navigation(request);
                if redirect && context.may_redirect {
                    self.start_login(request, context, now)
                        .await
                        .map(Decision::Login)
                } else {
                    Ok(Decision::Unauthenticated)
                }
            }
        }
    }

    /// The identity a verified bearer token gives: the same headers a
    /// session gives, `x-amzn-oidc-data` carrying the token's claims. A bad
    /// token is 401 with its `WWW-Authenticate`, never a login redirect.
    async fn bearer_identity(
        &self,
        bearer: &JwtValidator,
        headers: &http::HeaderMap,
        now: u64,
    ) -> Result<Identity, AuthError> {
        let verified = bearer.verified_claims(headers).await?;
        let principal =
            Principal::of_token(&verified.token, &verified.claims, &self.client.client_id)
                .ok_or(AuthError::JwtInvalid(JwtRefusal::NoSubject))?;
        self.identity(principal, Vec::new(), now)
    }

    fn session_shards<'a>(&'a self, cookies: &RequestCookies<'a>) -> Option<SealedShards<'a>> {
        SealedShards::find(&self.settings.session_cookie_name, cookies)
    }

    /// The identity of the session the shards name, refreshed when its
    /// access token has expired; `None` when there is no live session.
    async fn resume(
        &self,
        shards: &SealedShards<'_>,
        now: u64,
    ) -> Result<Option<Identity>, AuthError> {
        let Some(ticket) = ticket_of(shards) else {
            return Ok(None);
        };
        // A revocation while this request loads must not leave its session cached.
        let generation = self.shared.revocations.generation();
        let Some(session) = self.load_session(&ticket, now).await? else {
            return Ok(None);
        };
        if session.access_expires_at > now {
            let fresh_until = self.fresh_until(&session, now);
            let identity = self.identity(Principal::of_session(&session), Vec::new(), now)?;
            if self.shared.revocations.generation() == generation {
                let authenticated = Arc::clone(&identity.authenticated);
                let size = authenticated.size();
                self.opened.insert(shards, authenticated, size, fresh_until);
            }
            return Ok(Some(identity));
        }
        if session.refresh_token.is_none() {
            return Ok(None);
        }
        match self.refresh(&ticket, &session).await {
            RefreshOutcome::Refreshed(refreshed) => self
                .identity(
                    Principal::of_session(&refreshed.session),
                    refreshed.cookies.clone(),
                    now,
                )
                .map(Some),
            RefreshOutcome::Failed => Ok(None),
            RefreshOutcome::StoreUnavailable(error) => Err(AuthError::SessionStore(error)),
        }
    }

    /// Forgets the opened sessions when a back-channel logout has revoked
    /// any session of the process since the last request.
    fn forget_revoked(&self) {
        let generation = self.shared.revocations.generation();
        // A load first: the common case writes nothing another core reads.
        if self.revocations_seen.load(Ordering::Acquire) != generation
            && self.revocations_seen.swap(generation, Ordering::AcqRel) != generation
        {
            self.opened.forget_all();
        }
    }

    /// Until when an opened session's identity may be reused without asking
    /// the store again: while its data token is valid (the end of the access
    /// token or the session), and at most to the end of this second when the
    /// store can revoke it, so that a sign-out on another replica is honoured
    /// within a second.
    fn fresh_until(&self, session: &Session, now: u64) -> u64 {
        let valid_until = session.access_expires_at.min(session.expires_at);
        if self.store.revokes() {
            valid_until.min(now + 1)
        } else {
            valid_until
        }
    }

    /// The session behind `ticket`, when it is live and ours.
    async fn load_session(&self, ticket: &Ticket, now: u64) -> Result<Option<Session>, AuthError> {
        let session = self.store.load(ticket, now).await?;
        Ok(session.filter(|session| self.owns(session) && !self.revoked(session, now)))
    }

    /// Whether a back-channel logout ended `session` in this process (the
    /// cookie store, which cannot delete sessions).
    fn revoked(&self, session: &Session, now: u64) -> bool {
        let created_at = session
            .expires_at
            .saturating_sub(self.settings.session_timeout.as_secs());
        self.shared.revocations.is_revoked(session, created_at, now)
    }

    /// Whether a logout token claiming to come from `iss` is for this action to check.
    pub fn trusts(&self, iss: &str) -> bool {
        iss.trim_end_matches('/') == self.provider.issuer().trim_end_matches('/')
    }

    /// The IdP and client this action logs in with: actions that share both
    /// check a logout token the same way.
    pub fn client_key(&self) -> (&str, &str) {
        (self.provider.issuer(), &self.client.client_id)
    }

    /// Checks a back-channel logout token against this action's IdP and client.
    pub async fn verify_logout_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<LogoutRequest, LogoutRefusal> {
        let endpoints = self
            .provider
            .endpoints()
            .await
            .map_err(LogoutRefusal::KeysUnavailable)?;
        logout::verify_logout_token(
            &self.provider,
            &endpoints,
            &self.client.client_id,
            token,
            now,
        )
        .await
    }

    /// Ends the sessions a verified logout token names: by `sid`, else every
    /// session of `sub` at the issuer. A token is used once.
    pub async fn end_sessions(&self, logout: &LogoutRequest, now: u64) -> Result<(), RevokeError> {
        let replay_key = format!("{}\0{}", logout.iss, logout.jti);
        let first = self
            .store
            .first_use("logout-jti", &replay_key, logout::JTI_RETENTION, now)
            .await
            .map_err(|error| RevokeError::Store(error.into()))?;
        if !first {
            return Err(RevokeError::Replayed);
        }
        let revoked = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => self.store.delete_by_sid(&logout.iss, sid).await,
            (None, Some(sub)) => self.store.delete_by_sub(&logout.iss, sub).await,
            (None, None) => Ok(Revoked::Sessions(0)),
        }
        .map_err(|error| RevokeError::Store(error.into()))?;
        let until = now + self.shared.longest_session.as_secs();
        match revoked {
            Revoked::Sessions(count) => {
                tracing::info!(sessions = count, "back-channel logout ended sessions");
            }
            Revoked::Unsupported => {
                match (&logout.sid, &logout.sub) {
                    (Some(sid), _) => {
                        self.shared
                            .revocations
                            .revoke_sid(&logout.iss, sid, now, until)
                    }
                    (None, Some(sub)) => {
                        self.shared
                            .revocations
                            .revoke_sub(&logout.iss, sub, now, until);
                    }
                    (None, None) => {}
                }
                tracing::info!("back-channel logout: sessions refused by this process from now on");
            }
        }
        self.opened.forget_all();
        Ok(())
    }

    /// Whether `session` was made by this action's IdP and client.
    fn owns(&self, session: &Session) -> bool {
        session.iss.trim_end_matches('/') == self.provider.issuer().trim_end_matches('/')
            && session.client == self.client.client_id
    }

    /// 302 to the authorization endpoint, with the login's secrets sealed
    /// into the nonce cookie beside any other logins in progress (tabs).
    async fn start_login<B>(
        &self,
        request: &Request<B>,
        context: &RequestContext<'_>,
        now: u64,
    ) -> Result<Response<Body>, AuthError> {
        let original = request
            .uri()
            .path_and_query()
            .map_or("/", |path_and_query| path_and_query.as_str());
        self.login_returning_to(original, context, now).await
    }

    /// The redirect to the IdP for a login that returns to `original` (a
    /// path and query on the request's host): `/oauth2/start` starts one
    /// without a request for that path.
    pub async fn login_returning_to(
        &self,
        original: &str,
        context: &RequestContext<'_>,
        now: u64,
    ) -> Result<Response<Body>, AuthError> {
        let endpoints = self.provider.endpoints().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random_len(32);
        let nonce = Nonce::new_random_len(32);

        let mut location = endpoints.authorization.clone();
        {
            let mut query = location.query_pairs_mut();
            query
                .append_pair("client_id", &self.client.client_id)
                .append_pair("redirect_uri", &context.redirect_uri())
                .append_pair("response_type", "code")
                .append_pair("scope", &self.settings.scope)
                .append_pair("state", state.secret());
            for (name, value) in &self.settings.extra_params {
                query.append_pair(name, value);
            }
            query
                .append_pair("nonce", nonce.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", "S256");
        }

        let mut logins = pending_logins(&self.shared.sealer, context.cookies);
        logins.add(
            self.pending_login(
                state.secret(),
                nonce.secret(),
                verifier.secret(),
                original,
                now,
            ),
            now,
        );
        let mut response = redirect(location.as_str())?;
        response.headers_mut().append(
            header::SET_COOKIE,
            self.nonce_cookie(&mut logins, SECURE_COOKIES)?,
        );
        Ok(response)
    }

    /// A login this action starts: its secrets, where to return, and who
    /// may finish it ([`started`](Self::started)).
    fn pending_login(
        &self,
        state: &str,
        nonce: &str,
        code_verifier: &str,
        original: &str,
        now: u64,
    ) -> PendingLogin {
        PendingLogin {
            state: state.to_owned(),
            nonce: nonce.to_owned(),
            code_verifier: code_verifier.to_owned(),
            url: same_host_target(original).to_owned(),
            rule: self.rule.clone(),
            iss: self.provider.issuer().to_owned(),
            client: self.client.client_id.clone(),
            expires_at: now + self.settings.login_timeout.as_secs(),
        }
    }

    fn nonce_cookie(
        &self,
        logins: &mut PendingLogins,
        secure: bool,
    ) -> Result<HeaderValue, AuthError> {
        nonce_cookie(
            &self.shared.sealer,
            logins,
            self.settings.login_timeout,
            secure,
        )
    }

    /// `/oauth2/idpresponse` for a login this action started: redeem the
    /// code, validate the ID token, read userinfo, create the session, and
    /// send the browser back where it was going.
    pub async fn finish_login(
        &self,
        login: PendingLogin,
        mut remaining: PendingLogins,
        code: &str,
        iss: Option<&str>,
        context: &RequestContext<'_>,
    ) -> Result<Response<Body>, AuthError> {
        let now = self.shared.clock.now();
        let endpoints = self.provider.endpoints().await?;
        // RFC 9207, against IdP mix-up: the IdP that answered must be the one
        // the login went to, before the code goes to any token endpoint.
        match iss {
            Some(iss) if iss != endpoints.issuer => {
                return Err(AuthError::IssuerMismatch {
                    iss: Untrusted::new(iss),
                });
            }
            None if endpoints.iss_in_callback => return Err(AuthError::MissingIss),
            _ => {}
        }
        let started = Instant::now();
        let tokens = tokens::redeem_code(
            &self.provider,
            &endpoints,
            &self.client,
            code,
            &context.redirect_uri(),
            &login.code_verifier,
        )
        .await;
        self.shared.metrics.observe_idp_latency(started.elapsed());
        let tokens = tokens?;
        let id_token = tokens.id_token.as_deref().ok_or_else(|| {
            AuthError::InvalidIdToken("the token response has no id_token".into())
        })?;
        let verified = tokens::verify_id_token(
            &self.provider,
            &endpoints,
            &self.client.client_id,
            id_token,
            &login.nonce,
            &tokens.access_token,
        )
        .await?;
        let started = Instant::now();
        let claims = tokens::userinfo(
            &self.provider,
            &endpoints,
            &tokens.access_token,
            &verified.subject,
        )
        .await;
        self.shared.metrics.observe_idp_latency(started.elapsed());
        let claims = claims?;
        let id_claims = id_token_extras(id_token, &claims);

        let expires_at = now + self.settings.session_timeout.as_secs();
        let keep_id_token = endpoints.end_session.is_some();
        let session = Session {
            iss: endpoints.issuer.clone(),
            client: self.client.client_id.clone(),
            sub: verified.subject,
            sid: verified.sid,
            access_expires_at: access_expiry(&tokens, now, expires_at),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            id_token: keep_id_token.then(|| id_token.to_owned()),
            id_claims,
            expires_at,
            claims,
        };
        let ticket = self.store.save(&session, now).await?;
        let cookies = self.ticket_cookies(&ticket, &session, SECURE_COOKIES, now);
        self.shared.metrics.auth_succeeded();

        let mut response = redirect(same_host_target(&login.url))?;
        let headers = response.headers_mut();
        for cookie in cookies {
            headers.append(header::SET_COOKIE, cookie);
        }
        headers.append(
            header::SET_COOKIE,
            self.nonce_cookie(&mut remaining, SECURE_COOKIES)?,
        );
        Ok(response)
    }

    /// The cookies that carry `ticket` until the session ends, clearing any
    /// shard a previous, larger session left behind.
    fn ticket_cookies(
        &self,
        ticket: &Ticket,
        session: &Session,
        tls: bool,
        now: u64,
    ) -> Vec<HeaderValue> {
        let base = &self.settings.session_cookie_name;
        let shards: Vec<(String, String)> = shard_names(base)
            .zip(ticket.shards().iter().cloned())
            .collect();
        let max_age = Duration::from_secs(session.expires_at.saturating_sub(now));
        set_sharded_cookies(base, &shards, Some(max_age), tls).collect()
    }

    /// Refreshes the session once, however many requests arrive with it at
    /// the same time: they all wait for, and share, the one result.
    async fn refresh(&self, ticket: &Ticket, session: &Session) -> RefreshOutcome {
        let Some(refresh_token) = session.refresh_token.as_deref() else {
            return RefreshOutcome::Failed;
        };
        let key = fingerprint(&[
            self.settings.session_cookie_name.as_bytes(),
            refresh_token.as_bytes(),
        ]);
        let cell = {
            let mut refreshes = self
                .refreshes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            refreshes.entry(key).or_default().clone()
        };
        cell.get_or_init(|| async {
            let result = self.refresh_now(ticket, refresh_token).await;
            self.forget_refresh_later(key);
            match result {
                // Counted as a success where the IdP was called (refresh_locked).
                Ok(Some(refreshed)) => RefreshOutcome::Refreshed(Arc::new(refreshed)),
                Ok(None) => RefreshOutcome::Failed,
                Err(AuthError::SessionStore(error)) => RefreshOutcome::StoreUnavailable(error),
                Err(error) => {
                    self.shared.metrics.refreshed("failure");
                    self.shared.metrics.auth_failed(error.reason());
                    tracing::info!(reason = error.reason(), error = %error, "refresh failed; the user logs in again");
                    RefreshOutcome::Failed
                }
            }
        })
        .await
        .clone()
    }

    /// Refreshes the session once across replicas: the one that takes the
    /// store's refresh lock calls the IdP, the others wait for its tokens.
    /// `None` when the session ended meanwhile (signed out) or the IdP
    /// refused.
    async fn refresh_now(
        &self,
        ticket: &Ticket,
        refresh_token: &str,
    ) -> Result<Option<Refreshed>, AuthError> {
        // Long enough for the token and userinfo calls, each bounded by idp_timeout.
        let hold = self.settings.idp_timeout * 2 + REFRESH_LOCK_MARGIN;
        let gave_up_at = Instant::now() + hold * 2;
        loop {
            if let Some(lock) = self.store.try_lock(ticket, hold).await? {
                let refreshed = self.refresh_locked(ticket, refresh_token).await;
                if let Err(error) = self.store.unlock(lock).await {
                    tracing::warn!(%error, "releasing a refresh lock failed; it lapses by itself");
                }
                return refreshed;
            }
            // Another replica refreshes: its tokens arrive in the store.
            tokio::time::sleep(REFRESH_POLL).await;
            let now = self.shared.clock.now();
            match self.load_session(ticket, now).await? {
                None => return Ok(None),
                Some(current) if current.access_expires_at > now => {
                    return Ok(Some(Refreshed {
                        session: current,
                        cookies: Vec::new(),
                    }));
                }
                Some(_) if Instant::now() >= gave_up_at => {
                    return Err(StoreError::Timeout {
                        op: "refresh",
                        after: hold * 2,
                    }
                    .into());
                }
                Some(_) => {}
            }
        }
    }

    /// The refresh itself, under the lock. The session is read again first:
    /// another replica may have refreshed it since this request loaded it,
    /// and with an IdP that rotates refresh tokens only the newest one works.
    async fn refresh_locked(
        &self,
        ticket: &Ticket,
        refresh_token: &str,
    ) -> Result<Option<Refreshed>, AuthError> {
        let now = self.shared.clock.now();
        let session = match self.load_session(ticket, now).await? {
            None => return Ok(None),
            Some(current) if current.access_expires_at > now => {
                return Ok(Some(Refreshed {
                    session: current,
                    cookies: Vec::new(),
                }));
            }
            Some(current) => current,
        };
        let refresh_token = session.refresh_token.as_deref().unwrap_or(refresh_token);
        let endpoints = self.provider.endpoints().await?;
        let started = Instant::now();
        let tokens = tokens::refresh(&self.provider, &endpoints, &self.client, refresh_token).await;
        self.shared.metrics.observe_idp_latency(started.elapsed());
        let tokens = tokens?;
        let claims = tokens::userinfo(
            &self.provider,
            &endpoints,
            &tokens.access_token,
            &session.sub,
        )
        .await?;
        self.shared.metrics.refreshed("success");
        let refreshed = Session {
            iss: session.iss.clone(),
            client: session.client.clone(),
            sub: session.sub.clone(),
            sid: session.sid.clone(),
            access_expires_at: access_expiry(&tokens, now, session.expires_at),
            access_token: tokens.access_token,
            // An IdP that does not rotate refresh tokens sends none back.
            refresh_token: tokens
                .refresh_token
                .or_else(|| session.refresh_token.clone()),
            id_token: session.id_token.clone(),
            expires_at: session.expires_at,
            claims,
            id_claims: session.id_claims.clone(),
        };
        let Some(new_ticket) = self.store.update(ticket, &refreshed, now).await? else {
            return Ok(None);
        };
        let cookies = if new_ticket == *ticket {
            Vec::new()
        } else {
            self.ticket_cookies(&new_ticket, &refreshed, SECURE_COOKIES, now)
        };
        Ok(Some(Refreshed {
            session: refreshed,
            cookies,
        }))
    }

    /// Keeps the result a while for requests still carrying the old cookie,
    /// then forgets it so the map stays small.
    fn forget_refresh_later(&self, key: u128) {
        let refreshes = Arc::downgrade(&self.refreshes);
        tokio::spawn(async move {
            tokio::time::sleep(REFRESH_RESULT_KEPT).await;
            if let Some(refreshes) = refreshes.upgrade() {
                refreshes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(&key);
            }
        });
    }

    /// The three `x-amzn-oidc-*` headers. The signed `x-amzn-oidc-data` is
    /// reused from the cache until shortly before it expires, so a session's
    /// requests do not each cost an ECDSA signature.
    fn identity(
        &self,
        principal: Principal,
        set_cookies: Vec<HeaderValue>,
        now: u64,
    ) -> Result<Identity, AuthError> {
        let data = self
            .shared
            .signer
            .sign_cached(
                &self.shared.data_tokens,
                &principal.issuer,
                &principal.client,
                principal.claims.get().as_bytes(),
                principal.expires_at,
                now,
            )
            .map_err(AuthError::Signing)?;
        let header = |value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| AuthError::Internal("a token is not a valid header value".into()))
        };
        let mut access_token = header(&principal.access_token)?;
        access_token.set_sensitive(true);
        let mut headers = vec![
            (ACCESS_TOKEN_HEADER, access_token),
            (IDENTITY_HEADER, header(&principal.subject)?),
            (DATA_HEADER, header(&data)?),
        ];
        let settings = &self.settings;
        let verdict = if settings.require.is_empty() && settings.claim_headers.is_empty() {
            Ok(())
        } else {
            let sets = principal.claim_sets();
            let sources: Vec<&serde_json::Map<String, serde_json::Value>> = sets.iter().collect();
            headers.extend(claim_headers(&settings.claim_headers, &sources));
            require::check(&settings.require, &sources)
        };
        Ok(Identity {
            authenticated: Arc::new(Authenticated {
                principal,
                headers,
                verdict,
            }),
            set_cookies,
        })
    }

    /// The authorization step, after authentication: whether the principal
    /// may use this rule, by the action's `require` (decided when the
    /// identity was built, so a cached session costs no claim parsing).
    pub fn authorize(&self, identity: &Identity) -> Result<(), AuthError> {
        identity
            .authenticated
            .verdict
            .clone()
            .map_err(AuthError::ClaimMismatch)
    }

    /// `/oauth2/sign_out`: ends the session in the store (on every replica
    /// when the store can), clears every shard and the nonce cookie, then
    /// sends the browser to the IdP's logout (or straight to `rd`).
    pub async fn sign_out(
        &self,
        context: &RequestContext<'_>,
        rd: &str,
    ) -> Result<Response<Body>, AuthError> {
        let shards = self.session_shards(context.cookies);
        let mut session = None;
        if let Some(shards) = &shards
            && let Some(ticket) = ticket_of(shards)
        {
            session = self.load_session(&ticket, self.shared.clock.now()).await?;
            self.store.delete(&ticket).await?;
            self.opened.forget(shards);
        }
        let post_logout = if self.settings.sign_out_redirect.starts_with('/') {
            format!("{}{}", context.origin(), self.settings.sign_out_redirect)
        } else {
            self.settings.sign_out_redirect.clone()
        };
        let location = match &self.logout {
            Logout::Cognito { logout_url } => {
                let mut url = logout_url.clone();
                url.query_pairs_mut()
                    .append_pair("client_id", &self.client.client_id)
                    .append_pair("logout_uri", &post_logout);
                url.to_string()
            }
            Logout::Oidc => match self
                .provider
                .endpoints()
                .await
                .ok()
                .and_then(|endpoints| endpoints.end_session.clone())
            {
                Some(mut url) => {
                    {
                        let mut query = url.query_pairs_mut();
                        query
                            .append_pair("client_id", &self.client.client_id)
                            .append_pair("post_logout_redirect_uri", &post_logout);
                        if let Some(id_token) = session
                            .as_ref()
                            .and_then(|session| session.id_token.as_deref())
                        {
                            query.append_pair("id_token_hint", id_token);
                        }
                    }
                    url.to_string()
                }
                None => rd.to_owned(),
            },
        };
        let mut response = redirect(&location)
            .or_else(|_| redirect("/"))
            .expect("`/` is a valid Location");
        clear_login_cookies(
            response.headers_mut(),
            [self.settings.session_cookie_name.as_str()],
            SECURE_COOKIES,
        );
        Ok(response)
    }
}

/// The `claim_headers` a principal's claims give: scalars as text, arrays
/// of scalars joined with `,`. A claim that is absent, an object, or not a
/// valid header value gives no header.
fn claim_headers(
    wanted: &[(HeaderName, String)],
    sources: &[&serde_json::Map<String, serde_json::Value>],
) -> Vec<(HeaderName, HeaderValue)> {
    wanted
        .iter()
        .filter_map(|(header, claim)| {
            let value = sources
                .iter()
                .find_map(|claims| require::lookup(claims, claim))?;
            let text = match value {
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(require::scalar_text)
                    .collect::<Option<Vec<_>>>()?
                    .join(","),
                scalar => require::scalar_text(scalar)?.into_owned(),
            };
            let value = HeaderValue::from_str(&text).ok()?;
            Some((header.clone(), value))
        })
        .collect()
}

/// Claims of the ID token that only protocol, not authorization, needs.
const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "jti",
    "token_use",
    "origin_jti",
    "event_id",
];

/// The verified ID token's claims that `userinfo` does not have, protocol
/// claims left out; `None` when nothing is left. Userinfo wins where both
/// have a claim: it is what the IdP says at this login or refresh (an ID
/// token is not renewed by every refresh), and it is what ALB signs into
/// `x-amzn-oidc-data`.
fn id_token_extras(id_token: &str, userinfo: &RawValue) -> Option<Box<RawValue>> {
    let mut claims = tokens::verified_claims(id_token)?;
    let userinfo: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(userinfo.get()).unwrap_or_default();
    claims.retain(|name, _| {
        !PROTOCOL_CLAIMS.contains(&name.as_str()) && !userinfo.contains_key(name)
    });
    if claims.is_empty() {
        return None;
    }
    serde_json::value::to_raw_value(&claims).ok()
}

/// The ticket the session cookie shards carry; `None` when a shard is not
/// text (no store issues such a ticket).
fn ticket_of(shards: &SealedShards<'_>) -> Option<Ticket> {
    let values = shards
        .iter()
        .map(|shard| std::str::from_utf8(shard).ok().map(str::to_owned))
        .collect::<Option<Vec<String>>>()?;
    Some(Ticket::from_shards(values))
}

/// The logins in progress in this browser; none when the cookie is absent or does not open.
pub fn pending_logins(sealer: &CookieSealer, cookies: &RequestCookies<'_>) -> PendingLogins {
    cookies
        .get(NONCE_COOKIE)
        .and_then(|value| sealer.open(NONCE_COOKIE, value))
        .and_then(|plaintext| serde_json::from_slice(&plaintext).ok())
        .unwrap_or_default()
}

/// The nonce cookie for `logins`, the newest last, always one a browser
/// keeps: its whole `Set-Cookie` stays under 4096 bytes for any URL, even
/// one that JSON escaping doubles (all `"` or `\`). The newest login returns
/// to `/` when its URL would not fit even alone; then the oldest logins are
/// dropped until the rest fit. (Dropping them first would cost every other
/// tab its login and still end at `/`.) An error only when a login returning
/// to `/` does not fit by itself, which takes a rule name, issuer or client
/// id of kilobytes.
fn nonce_cookie(
    sealer: &CookieSealer,
    logins: &mut PendingLogins,
    max_age: Duration,
    secure: bool,
) -> Result<HeaderValue, AuthError> {
    let fits = |logins: &[PendingLogin]| -> Result<bool, AuthError> {
        let plaintext = serde_json::to_vec(logins).map_err(AuthError::Serialize)?;
        Ok(CookieSealer::fits_one_cookie(
            NONCE_COOKIE,
            plaintext.len(),
            Some(max_age),
            secure,
        ))
    };
    let Some(newest) = logins.0.last_mut() else {
        return Ok(clear_cookie(NONCE_COOKIE, secure));
    };
    if newest.url != "/" && !fits(std::slice::from_ref(newest))? {
        newest.url = "/".to_owned();
    }
    while !fits(&logins.0)? {
        if logins.0.len() == 1 {
            return Err(AuthError::Internal(
                "a single login does not fit in the nonce cookie".into(),
            ));
        }
        logins.0.remove(0);
    }
    let plaintext = serde_json::to_vec(logins).map_err(AuthError::Serialize)?;
    sealer
        .seal_cookie(NONCE_COOKIE, &plaintext, Some(max_age), secure)
        .ok_or_else(|| AuthError::Internal("the nonce cookie grew after it was measured".into()))
}

/// Clears what a login leaves in the browser: every shard each session
/// cookie name in `bases` may use, and the logins in progress.
pub fn clear_login_cookies<'a>(
    headers: &mut http::HeaderMap,
    bases: impl IntoIterator<Item = &'a str>,
    secure: bool,
) {
    for base in bases {
        for name in shard_names(base) {
            headers.append(header::SET_COOKIE, clear_cookie(&name, secure));
        }
    }
    headers.append(header::SET_COOKIE, clear_cookie(NONCE_COOKIE, secure));
}

/// When the access token expires: `expires_in` from now, at most an hour
/// when the IdP gives none, never after the session ends.
fn access_expiry(tokens: &TokenResponse, now: u64, session_end: u64) -> u64 {
    let lifetime = tokens.expires_in.unwrap_or(DEFAULT_ACCESS_TOKEN_LIFETIME);
    (now + lifetime).min(session_end)
}

/// A 302 that no cache keeps.
pub fn redirect(location: &str) -> Result<Response<Body>, AuthError> {
    let location = HeaderValue::from_str(location)
        .map_err(|_| AuthError::Internal("a redirect URL is not a valid header".into()))?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oidc::http::IdpClient;
    use crate::auth::oidc::provider::ConfiguredEndpoints;
    use crate::auth::state::{MAX_ORIGINAL_URL, MAX_PENDING_LOGINS};
    use crate::config::{Secret, SessionKey, SigningConfig, TokenEncoding};

    const LOGIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);
    const NOW: u64 = 1_800_000_000;

    fn settings() -> AuthCommon {
        AuthCommon {
            scope: "openid".into(),
            session_cookie_name: "AWSELBAuthSessionCookie".into(),
            session_timeout: Duration::from_secs(7 * 24 * 3600),
            extra_params: Vec::new(),
            on_unauthenticated_request: UnauthenticatedPolicy::Authenticate,
            api_requests: ApiRequests::Unauthorized,
            allow_cors_preflight: false,
            login_timeout: LOGIN_TIMEOUT,
            idp_timeout: Duration::from_secs(10),
            sign_out_redirect: "/".into(),
            require: Vec::new(),
            claim_headers: Vec::new(),
            bearer_audience: None,
        }
    }

    fn authenticator(rule: &str, issuer: &str, client_id: &str) -> Authenticator {
        authenticator_on(Backend::Cookie, rule, issuer, client_id)
    }

    fn authenticator_on(
        backend: Backend,
        rule: &str,
        issuer: &str,
        client_id: &str,
    ) -> Authenticator {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let provider = Provider::new(
            issuer.into(),
            ConfiguredEndpoints::default(),
            IdpClient::new(Duration::from_secs(10)),
        );
        let signing = SigningConfig {
            private_key_pem: None,
            key_id: None,
            signer: "test".into(),
            encoding: TokenEncoding::Alb,
        };
        let signer = DataSigner::new(&signing).expect("a generated key");
        let shared = AuthShared {
            sealer: Arc::new(CookieSealer::new(&[SessionKey([7; 32])])),
            secrets: vec![SessionKey([7; 32])],
            store: SessionStoreKind::Cookie,
            backend: Arc::new(backend),
            store_health: Arc::new(StoreHealth::new()),
            revocations: Arc::default(),
            once_keys: Arc::default(),
            longest_session: Duration::from_secs(7 * 24 * 3600),
            clock: Clock::manual(NOW),
            signing,
            signer: Arc::new(signer),
            data_tokens: Arc::new(DataTokenCache::new(16)),
            metrics: Arc::new(Metrics::new()),
        };
        Authenticator::new(
            rule.into(),
            settings(),
            ClientCredentials {
                client_id: client_id.into(),
                client_secret: Secret::new("secret"),
            },
            Arc::new(provider),
            Logout::Oidc,
            Arc::new(shared),
        )
    }

    fn session(access_for: u64, refresh_token: Option<&str>) -> Session {
        Session {
            iss: "https://idp.example".into(),
            client: "c".into(),
            sub: "alice".into(),
            sid: None,
            access_token: "access".into(),
            refresh_token: refresh_token.map(str::to_owned),
            id_token: None,
            access_expires_at: NOW + access_for,
            expires_at: NOW + 3600,
            claims: RawValue::from_string("{}".into()).unwrap(),
            id_claims: None,
        }
    }

    /// Whether `action` lets an API request with `ticket` through now.
    async fn passes(action: &Authenticator, ticket: &Ticket) -> bool {
        let cookie: Vec<String> = shard_names(action.cookie_name())
            .zip(ticket.shards())
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let request = Request::get("/api")
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, cookie.join("; "))
            .body(())
            .unwrap();
        let cookies = RequestCookies::parse(request.headers());
        let context = RequestContext {
            authority: "app.example",
            tls: true,
            cookies: &cookies,
            may_redirect: true,
        };
        match action.authenticate(&request, &context).await.unwrap() {
            Decision::Authenticated(_) => true,
            Decision::Unauthenticated => false,
            _ => panic!("an API request is authenticated or refused"),
        }
    }

    #[tokio::test]
    async fn expiry_is_judged_by_the_clock_whether_cached_or_not() {
        let action = authenticator("rule-1", "https://idp.example", "c");
        let clock = &action.shared.clock;
        let ticket = action.store.save(&session(60, None), NOW).await.unwrap();
        assert!(passes(&action, &ticket).await, "opened and cached");
        clock.set(NOW + 59);
        assert!(passes(&action, &ticket).await, "from the cache");
        clock.set(NOW + 60);
        assert!(
            !passes(&action, &ticket).await,
            "the access token ended and there is no refresh token"
        );
        // The session's end holds even with a valid access token.
        clock.set(NOW);
        let long = Session {
            access_expires_at: NOW + 7200,
            ..session(0, None)
        };
        let ticket = action.store.save(&long, NOW).await.unwrap();
        assert!(passes(&action, &ticket).await);
        clock.set(NOW + 3600);
        assert!(!passes(&action, &ticket).await, "the session ended");
    }

    #[test]
    fn hostile_claims_never_make_a_header_or_split_one() {
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "name": "alice\r\nx-amzn-oidc-identity: admin",
                "nul": "a\u{0}b",
                "groups": ["admins", "users\nX-Evil: 1"],
                "nested": { "a": 1 },
                "mixed": ["a", { "b": 2 }],
                "age": 42,
                "flags": [true, 7],
                "accented": "Zoë",
            }))
            .unwrap();
        let wanted: Vec<(HeaderName, String)> = [
            ("x-name", "name"),
            ("x-nul", "nul"),
            ("x-groups", "groups"),
            ("x-nested", "nested"),
            ("x-mixed", "mixed"),
            ("x-missing", "missing"),
            ("x-age", "age"),
            ("x-flags", "flags"),
            ("x-accented", "accented"),
        ]
        .into_iter()
        .map(|(header, claim)| (HeaderName::from_static(header), claim.to_owned()))
        .collect();
        let made: Vec<(String, Vec<u8>)> = claim_headers(&wanted, &[&claims])
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        assert_eq!(
            made,
            [
                ("x-age".to_owned(), b"42".to_vec()),
                ("x-flags".to_owned(), b"true,7".to_vec()),
                ("x-accented".to_owned(), "Zoë".as_bytes().to_vec()),
            ],
            "control characters, objects and missing claims give no header"
        );
    }

    #[tokio::test]
    async fn an_opened_session_is_reused_within_the_second_only_when_revocable() {
        let cookie = authenticator("rule-1", "https://idp.example", "c");
        let session = session(600, None);
        assert_eq!(cookie.fresh_until(&session, NOW), NOW + 600);
        let settings = crate::config::RedisConfig {
            // Connected on first use: never, in this test.
            address: crate::config::RedisAddress::Single(Secret::new("redis://127.0.0.1:1")),
            key_prefix: "p:".into(),
            timeout: Duration::from_secs(1),
        };
        let redis = Backend::open(&SessionStoreKind::Redis(settings)).unwrap();
        let redis = authenticator_on(redis, "rule-1", "https://idp.example", "c");
        assert_eq!(redis.fresh_until(&session, NOW), NOW + 1);
    }

    /// A login as `start_login` records it: 43-character secrets, as
    /// `CsrfToken`, `Nonce` and PKCE make them.
    fn login(authenticator: &Authenticator, state: &str, original: &str) -> PendingLogin {
        let secret = |tag: &str| format!("{tag:-<43}");
        authenticator.pending_login(
            &secret(state),
            &secret("nonce"),
            &secret("verifier"),
            original,
            NOW,
        )
    }

    #[test]
    fn only_the_action_that_started_a_login_may_finish_it() {
        let issuer = "https://idp-a.example";
        let starter = authenticator("rule-1", issuer, "client-a");
        let login = login(&starter, "s", "/app");
        assert!(starter.started(&login));
        assert!(
            authenticator("rule-1", issuer, "client-a").started(&login),
            "the same action on another listener"
        );
        for other in [
            authenticator("rule-1", "https://idp-b.example", "client-a"),
            authenticator("rule-1", issuer, "client-b"),
            authenticator("rule-1", "https://idp-b.example", "client-b"),
            authenticator("rule-2", issuer, "client-a"),
        ] {
            assert!(
                !other.started(&login),
                "{} {}",
                other.rule,
                other.provider.issuer()
            );
        }
    }

    /// The start and length of a URL, for messages: the whole is kilobytes.
    fn brief(url: &str) -> String {
        let start: String = url.chars().take(12).collect();
        format!("{start:?}… ({} bytes)", url.len())
    }

    /// Hostile return URLs as a request could carry them (path and query).
    fn hostile_urls() -> Vec<String> {
        let fill = |unit: &str| {
            let mut url = "/?".to_owned();
            while url.len() + unit.len() <= MAX_ORIGINAL_URL {
                url.push_str(unit);
            }
            url
        };
        vec![
            fill("\\"),
            fill("\""),
            fill("\\\""),
            fill("\u{1}"),
            fill("\u{7f}"),
            fill("<"),
            fill("é"),
            fill("\u{2028}"),
            fill("😀"),
            fill("a"),
            format!("/{}", "a".repeat(MAX_ORIGINAL_URL - 1)),
            format!("/{}", "%22".repeat(MAX_ORIGINAL_URL / 3)),
            format!("/{}", "a".repeat(MAX_ORIGINAL_URL)),
        ]
    }

    fn opened(sealer: &CookieSealer, header: &HeaderValue) -> PendingLogins {
        let text = header.to_str().expect("a cookie header is ASCII");
        let value = text
            .strip_prefix("AWSALBAuthNonce=")
            .and_then(|rest| rest.split(';').next())
            .expect("the nonce cookie");
        let plaintext = sealer.open(NONCE_COOKIE, value).expect("it opens");
        serde_json::from_slice(&plaintext).expect("logins")
    }

    #[test]
    fn the_nonce_cookie_fits_for_any_return_url() {
        let action = authenticator("rule-1", "https://login.example.com/tenant/v2.0", "c");
        let sealer = &action.shared.sealer;
        for url in hostile_urls() {
            let mut logins = PendingLogins::default();
            logins.add(login(&action, "new", &url), NOW);
            let header = nonce_cookie(sealer, &mut logins, LOGIN_TIMEOUT, true).unwrap();
            assert!(
                header.len() < 4096,
                "{} bytes for {}",
                header.len(),
                brief(&url)
            );
            let kept = opened(sealer, &header);
            assert_eq!(kept.0.len(), 1);
            let returns_to = &kept.0[0].url;
            assert!(
                *returns_to == same_host_target(&url) || returns_to == "/",
                "{}",
                brief(returns_to)
            );
            let doubled = url.contains(['\\', '"']) && url.len() > MAX_ORIGINAL_URL / 2;
            if doubled || url.contains('\u{1}') {
                assert_eq!(returns_to, "/", "escaping made {} too long", brief(&url));
            }
        }
        // A plain URL of the longest length kept is kept, however long.
        let longest = format!("/{}", "a".repeat(MAX_ORIGINAL_URL - 1));
        let mut logins = PendingLogins::default();
        logins.add(login(&action, "new", &longest), NOW);
        let header = nonce_cookie(sealer, &mut logins, LOGIN_TIMEOUT, true).unwrap();
        assert_eq!(opened(sealer, &header).0[0].url, longest);
    }

    #[test]
    fn other_tabs_make_room_oldest_first_and_the_newest_login_always_stays() {
        let action = authenticator("rule-1", "https://login.example.com/tenant/v2.0", "c");
        let sealer = &action.shared.sealer;
        for older_url_len in [1, 300, 1000, MAX_ORIGINAL_URL] {
            for url in hostile_urls() {
                let mut logins = PendingLogins::default();
                for tab in 0..MAX_PENDING_LOGINS - 1 {
                    let older = format!("/{}", "b".repeat(older_url_len - 1));
                    logins.add(login(&action, &format!("tab{tab}"), &older), NOW);
                }
                logins.add(login(&action, "new", &url), NOW);
                let header = nonce_cookie(sealer, &mut logins, LOGIN_TIMEOUT, true).unwrap();
                assert!(
                    header.len() < 4096,
                    "{} bytes for {}",
                    header.len(),
                    brief(&url)
                );

                let kept = opened(sealer, &header);
                let states: Vec<&str> = kept.0.iter().map(|l| &l.state[..5]).collect();
                let newest = kept.0.last().expect("the new login is kept");
                assert!(newest.state.starts_with("new"), "{states:?}");
                // Whatever was dropped was older than whatever was kept.
                let expected: Vec<String> = (MAX_PENDING_LOGINS - kept.0.len()
                    ..MAX_PENDING_LOGINS - 1)
                    .map(|tab| format!("tab{tab}"))
                    .collect();
                let older: Vec<&str> = kept.0[..kept.0.len() - 1]
                    .iter()
                    .map(|l| l.state.trim_end_matches('-'))
                    .collect();
                assert_eq!(older, expected, "{states:?}");
                // Short tabs are not dropped for a URL that goes back to `/` anyway.
                if older_url_len == 1 && newest.url == "/" {
                    assert_eq!(kept.0.len(), MAX_PENDING_LOGINS, "{}", brief(&url));
                }
            }
        }
    }

    #[test]
    fn finishing_a_login_keeps_the_other_tabs() {
        let action = authenticator("rule-1", "https://idp.example", "c");
        let sealer = &action.shared.sealer;
        let mut logins = PendingLogins::default();
        for tab in ["one", "two", "three"] {
            logins.add(login(&action, tab, &format!("/{tab}")), NOW);
        }
        let taken = logins.take(&format!("{:-<43}", "two"), NOW).unwrap();
        assert_eq!(taken.url, "/two");
        let header = nonce_cookie(sealer, &mut logins, LOGIN_TIMEOUT, true).unwrap();
        let urls: Vec<String> = opened(sealer, &header)
            .0
            .into_iter()
            .map(|l| l.url)
            .collect();
        assert_eq!(urls, ["/one", "/three"]);
        let mut none = PendingLogins::default();
        let cleared = nonce_cookie(sealer, &mut none, LOGIN_TIMEOUT, true).unwrap();
        assert!(
            cleared
                .to_str()
                .unwrap()
                .starts_with("AWSALBAuthNonce=; Max-Age=0")
        );
    }
}
