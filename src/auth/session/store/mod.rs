//! Where a session lives between requests, behind one [`SessionStore`] trait:
//! in the browser's sealed cookies ([`CookieStore`]) or in Redis
//! ([`RedisStore`]). Both pass one conformance suite (`tests/session_store.rs`).
//!
//! The browser always holds a [`Ticket`]: the value of the session cookie
//! shards `<session_cookie_name>-0..`. For the cookie store the ticket *is*
//! the sealed session; for Redis it is a short sealed reference to a sealed
//! value held server-side (the format is in the [`self::redis`] module's docs).
//!
//! Time is passed in as Unix seconds (`now`): the stores never read a clock,
//! so expiry is tested with any instant. Loading something that is not a
//! live session of this store (forged, truncated, oversized, expired,
//! deleted) is `Ok(None)`, never an error: errors are kept for a store that
//! cannot answer, which the proxy answers with 503 rather than a login.
//!
//! Revocation (sign-out on every replica, back-channel logout) needs state
//! on the server: the cookie store reports [`Revoked::Unsupported`], as
//! oauth2-proxy's cookie store does, and [`SessionStore::revokes`] tells the
//! caller whether deleting a ticket ends it anywhere but in this browser.
//!
//! Two small pieces of shared state serve the callers beside the sessions:
//! a refresh lock per session ([`SessionStore::try_lock`]), so that one
//! replica refreshes while the others wait, and one-time keys
//! ([`SessionStore::first_use`]), so that a logout token is acted on once.
//! The cookie store keeps both in this process only.

mod any;
mod cookie;
mod redis;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_lc_rs::digest;

pub use self::redis::{MAX_SESSION_BYTES, RedisSettings, RedisStore, connect, connect_cluster};
pub use any::{AnyStore, Backend, StoreHealth};
pub use cookie::{CookieStore, MAX_ONCE_KEYS, OnceKeys};

use super::codec::TooLarge;
use crate::auth::state::Session;

/// What the session cookie shards carry, `{base}-0` first. Opaque: only the
/// store that issued it can tell what it holds. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    shards: Vec<String>,
}

impl Ticket {
    /// The values of `{base}-0`, `{base}-1`, … as the browser sent them, in order.
    pub fn from_shards(shards: Vec<String>) -> Self {
        Self { shards }
    }

    /// The cookie values to send, `{base}-0` first.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticket([redacted; {} shards])", self.shards.len())
    }
}

/// A refresh lock on one session, held until [`SessionStore::unlock`] or
/// until its hold runs out, whichever comes first. `Debug` never shows the
/// token.
#[must_use = "a lock that is never unlocked blocks refreshes for its whole hold"]
pub struct Lock {
    /// Where the store keeps the lock; empty for the cookie store, whose
    /// locks are not shared.
    key: String,
    /// Random, so that an unlock after the hold ran out releases nothing a
    /// later holder took.
    token: String,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lock([redacted])")
    }
}

/// What a one-time key is remembered by: SHA-256 of the key, so that an
/// input of any length costs a fixed 32 bytes and never becomes a Redis key
/// name verbatim.
fn once_digest(key: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, key.as_bytes());
    digest
        .as_ref()
        .try_into()
        .expect("a SHA-256 digest is 32 bytes")
}

/// What a revocation by `sid` or `sub` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// This many live sessions were deleted (0 when none was left).
    Sessions(usize),
    /// The store keeps no state to find sessions by: they live on until they
    /// expire or the browser drops the cookie.
    Unsupported,
}

/// A store that could not do what was asked. Every variant but `Expired` and
/// `TooLarge` means "try again later" (503), never "no session".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the session store failed to {op}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("the session store did not {op} within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    #[error("the session store address is not usable")]
    InvalidUrl(#[source] ::redis::RedisError),
    #[error("a session that has already ended cannot be saved")]
    Expired,
    #[error(transparent)]
    CookieTooLarge(#[from] TooLarge),
    #[error("a session of {size} bytes exceeds the store's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Where sessions live. Methods return `Send` futures so that a request task
/// may await them on any worker thread.
pub trait SessionStore: Send + Sync {
    /// Whether [`delete`](Self::delete) and the revocations end a session for
    /// whoever holds its ticket. `false` for the cookie store: there only
    /// clearing the browser's cookie ends it, and a copied cookie lives on.
    fn revokes(&self) -> bool;

    /// Stores a new session and returns its ticket. [`StoreError::Expired`]
    /// when `session.expires_at` is not after `now`.
    fn save(
        &self,
        session: &Session,
        now: u64,
    ) -> impl Future<Output = Result<Ticket, StoreError>> + Send;

    /// Replaces the session behind `ticket` (after a refresh) and returns the
    /// ticket to send from now on. `Ok(None)` when that session is gone
    /// (deleted, revoked, expired): a refresh never brings one back. The
    /// session's `iss`, `sub` and `sid` must be those it was saved with.
    fn update(
        &self,
        ticket: &Ticket,
        session: &Session,
        now: u64,
    ) -> impl Future<Output = Result<Option<Ticket>, StoreError>> + Send;

    /// The live session behind `ticket`, `Ok(None)` for anything else.
    fn load(
        &self,
        ticket: &Ticket,
        now: u64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Ends the session behind `ticket` (sign-out). A ticket that names no
    /// session is not an error. The caller still clears the cookie.
    fn delete(&self, ticket: &Ticket) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends every session the IdP `iss` made under its session id `sid`.
    fn delete_by_sid(
        &self,
        iss: &str,
        sid: &str,
    ) -> impl Future<Output = Result<Revoked, StoreError>> + Send;

    /// Ends every session of the user `sub` at the IdP `iss`.
    fn delete_by_sub(
        &self,
        iss: &str,
        sub: &str,
    ) -> impl Future<Output = Result<Revoked, StoreError>> + Send;

    /// Takes the refresh lock of the session behind `ticket` for at most
    /// `hold` (1 ms at least), so that of the replicas finding its access
    /// token stale only one calls the IdP. `Ok(None)`: not granted, because
    /// another holder has it or because `ticket` names no session of this
    /// store (callers lock only a ticket that has just loaded); either way,
    /// load the session again shortly rather than refresh it.
    ///
    /// Exclusive across replicas only in a store that keeps state on the
    /// server (those whose [`revokes`](Self::revokes) is `true`). The cookie
    /// store grants every lock: it shares nothing between replicas, and
    /// within one process the caller's single-flight already lets one
    /// request refresh.
    fn try_lock(
        &self,
        ticket: &Ticket,
        hold: Duration,
    ) -> impl Future<Output = Result<Option<Lock>, StoreError>> + Send;

    /// Releases `lock` if it is still held by it. A lock whose hold ran out
    /// releases nothing, in particular not the lock someone took after it.
    fn unlock(&self, lock: Lock) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `true` the first time `key` is seen in `scope` within `keep`, `false`
    /// every other time: for acting on a logout token (its `jti`) once.
    /// `scope` is a fixed name chosen by the caller (such as `logout`), never
    /// input; `key` may be anything. The cookie store counts `keep` from
    /// `now` (Unix seconds), rounded up to whole seconds; Redis counts it on
    /// its own clock, to the millisecond, and ignores `now`.
    ///
    /// A store that cannot remember one more key answers `false`: a replay
    /// is never taken for a first use, at the price of refusing new keys
    /// until old ones expire.
    fn first_use(
        &self,
        scope: &str,
        key: &str,
        keep: Duration,
        now: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
