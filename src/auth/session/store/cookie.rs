//! The stateless store: the session is sealed into the ticket itself, sharded
//! over up to four cookies (the ALB way). Nothing is kept on the server, so
//! nothing can be revoked there. Refresh locks and one-time keys live in
//! this process only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{Lock, Revoked, SessionStore, StoreError, Ticket, once_digest};
use crate::auth::session::{CookieSealer, SealedShards};
use crate::auth::state::Session;

/// How many one-time keys one process remembers: a few MB at most.
pub const MAX_ONCE_KEYS: usize = 100_000;

/// One-time keys seen, by scope and digest, with the second from which
/// each may be used again. Shared by the process's cookie stores and kept
/// across reloads, so that a logout token is acted on once.
pub type OnceKeys = Mutex<HashMap<(String, [u8; 32]), u64>>;

/// Sessions sealed into the `{base}-N` cookies.
pub struct CookieStore {
    sealer: Arc<CookieSealer>,
    /// The session cookie's base name, bound into every seal.
    base: String,
    /// At most [`MAX_ONCE_KEYS`]; expired ones are evicted only when it is full.
    once: Arc<OnceKeys>,
}

impl CookieStore {
    pub fn new(sealer: Arc<CookieSealer>, base: impl Into<String>) -> Self {
        Self::sharing(sealer, base, Arc::default())
    }

    /// A store whose one-time keys are `once`.
    pub fn sharing(
        sealer: Arc<CookieSealer>,
        base: impl Into<String>,
        once: Arc<OnceKeys>,
    ) -> Self {
        Self {
            sealer,
            base: base.into(),
            once,
        }
    }

    fn seal(&self, session: &Session, now: u64) -> Result<Ticket, StoreError> {
        if session.expires_at <= now {
            return Err(StoreError::Expired);
        }
        let plaintext = serde_json::to_vec(session).expect("a session serialises to JSON");
        let shards = self.sealer.seal_sharded(&self.base, &plaintext)?;
        Ok(Ticket::from_shards(
            shards.into_iter().map(|(_, value)| value).collect(),
        ))
    }
}

impl SessionStore for CookieStore {
    fn revokes(&self) -> bool {
        false
    }

    async fn save(&self, session: &Session, now: u64) -> Result<Ticket, StoreError> {
        self.seal(session, now)
    }

    async fn update(
        &self,
        _ticket: &Ticket,
        session: &Session,
        now: u64,
    ) -> Result<Option<Ticket>, StoreError> {
        match self.seal(session, now) {
            Err(StoreError::Expired) => Ok(None),
            sealed => sealed.map(Some),
        }
    }

    async fn load(&self, ticket: &Ticket, now: u64) -> Result<Option<Session>, StoreError> {
        let values: Vec<&[u8]> = ticket.shards().iter().map(String::as_bytes).collect();
        let Some(shards) = SealedShards::from_values(&self.base, &values) else {
            return Ok(None);
        };
        let session = self
            .sealer
            .open_shards(&shards)
            .and_then(|plaintext| serde_json::from_slice::<Session>(&plaintext).ok());
        Ok(session.filter(|session| session.expires_at > now))
    }

    async fn delete(&self, _ticket: &Ticket) -> Result<(), StoreError> {
        // The session is in the cookie: clearing it is all there is to do.
        Ok(())
    }

    async fn delete_by_sid(&self, _iss: &str, _sid: &str) -> Result<Revoked, StoreError> {
        Ok(Revoked::Unsupported)
    }

    async fn delete_by_sub(&self, _iss: &str, _sub: &str) -> Result<Revoked, StoreError> {
        Ok(Revoked::Unsupported)
    }

    async fn try_lock(
        &self,
        _ticket: &Ticket,
        _hold: Duration,
    ) -> Result<Option<Lock>, StoreError> {
        // Nothing is shared with other replicas, and within this process the
        // caller's single-flight lets one request refresh.
        Ok(Some(Lock {
            key: String::new(),
            token: String::new(),
        }))
    }

    async fn unlock(&self, _lock: Lock) -> Result<(), StoreError> {
        Ok(())
    }

    async fn first_use(
        &self,
        scope: &str,
        key: &str,
        keep: Duration,
        now: u64,
    ) -> Result<bool, StoreError> {
        let keep = keep.as_secs() + u64::from(keep.subsec_nanos() > 0);
        let id = (scope.to_owned(), once_digest(key));
        // Every update below leaves the map whole, so a panic elsewhere
        // while it was locked leaves nothing to distrust.
        let mut seen = self.once.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.get(&id).is_some_and(|&until| until > now) {
            return Ok(false);
        }
        if seen.len() >= MAX_ONCE_KEYS && !seen.contains_key(&id) {
            seen.retain(|_, until| *until > now);
            if seen.len() >= MAX_ONCE_KEYS {
                // Forgetting a live key would let its replay through.
                tracing::warn!(
                    scope,
                    limit = MAX_ONCE_KEYS,
                    "one-time keys: all remembered keys are live; refusing a new one"
                );
                return Ok(false);
            }
        }
        seen.insert(id, now.saturating_add(keep));
        Ok(true)
    }
}
