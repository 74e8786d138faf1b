//! The stateless store: the session is sealed into the ticket itself, sharded
//! over up to four cookies (the ALB way). Nothing is kept on the server, so
//! nothing can be revoked there.

use std::sync::Arc;

use super::{Revoked, SessionStore, StoreError, Ticket};
use crate::auth::session::{CookieSealer, SealedShards};
use crate::auth::state::Session;

/// Sessions sealed into the `{base}-N` cookies.
pub struct CookieStore {
    sealer: Arc<CookieSealer>,
    /// The session cookie's base name, bound into every seal.
    base: String,
}

impl CookieStore {
    pub fn new(sealer: Arc<CookieSealer>, base: impl Into<String>) -> Self {
        Self {
            sealer,
            base: base.into(),
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
}
