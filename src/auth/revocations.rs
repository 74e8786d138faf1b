//! Sessions ended by back-channel logout while sessions live in cookies.
//!
//! A cookie session cannot be deleted: the browser holds all of it. So the
//! process remembers what the IdP ended, by its session id (`sid`) or by
//! user (`sub`, every session made before the logout), for as long as a
//! session can live, and refuses matching sessions until then. The list is
//! this process's own: other replicas do not see it, which is why
//! deployments with several replicas keep sessions in Redis, where a logout
//! deletes the sessions themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::state::Session;

/// Most revocations kept. Only the IdP can add one (a signed logout token,
/// each used once), so this bounds memory against a misbehaving IdP rather
/// than a client; when full, the one that would lapse soonest makes room.
const MAX_REVOCATIONS: usize = 100_000;

#[derive(Default)]
pub struct Revocations {
    entries: Mutex<HashMap<Key, Revoked>>,
    /// Bumped by every revocation, so that caches of opened sessions know
    /// to forget what they hold. 0: nothing was ever revoked.
    generation: AtomicU64,
}

#[derive(Clone, Hash, PartialEq, Eq)]
enum Key {
    Sid { iss: String, sid: String },
    Sub { iss: String, sub: String },
}

#[derive(Clone, Copy)]
struct Revoked {
    /// Sessions made before this instant (Unix seconds) are refused.
    at: u64,
    /// When the entry may be forgotten: no session made before `at` lives past it.
    until: u64,
}

impl Revocations {
    /// Refuses the sessions of the IdP session `sid` at `iss` until `until`.
    pub fn revoke_sid(&self, iss: &str, sid: &str, now: u64, until: u64) {
        let key = Key::Sid {
            iss: iss.to_owned(),
            sid: sid.to_owned(),
        };
        self.insert(
            key,
            Revoked {
                at: u64::MAX,
                until,
            },
            now,
        );
    }

    /// Refuses every session of `sub` at `iss` made before `now`, until `until`.
    pub fn revoke_sub(&self, iss: &str, sub: &str, now: u64, until: u64) {
        let key = Key::Sub {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
        };
        self.insert(key, Revoked { at: now, until }, now);
    }

    fn insert(&self, key: Key, revoked: Revoked, now: u64) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_REVOCATIONS {
            entries.retain(|_, entry| entry.until > now);
        }
        if entries.len() >= MAX_REVOCATIONS
            && let Some(soonest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.until)
                .map(|(key, _)| key.clone())
        {
            tracing::warn!(
                "{MAX_REVOCATIONS} back-channel logouts are held; the oldest makes room"
            );
            entries.remove(&soonest);
        }
        entries.insert(key, revoked);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever a session is revoked.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `session`, made at `created_at`, was ended by a logout.
    pub fn is_revoked(&self, session: &Session, created_at: u64, now: u64) -> bool {
        if self.generation() == 0 {
            return false;
        }
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let live = |key: &Key| entries.get(key).filter(|entry| entry.until > now).copied();
        let by_sid = session.sid.as_ref().and_then(|sid| {
            live(&Key::Sid {
                iss: session.iss.clone(),
                sid: sid.clone(),
            })
        });
        let by_sub = live(&Key::Sub {
            iss: session.iss.clone(),
            sub: session.sub.clone(),
        });
        by_sid.is_some() || by_sub.is_some_and(|entry| created_at < entry.at)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn session(sub: &str, sid: Option<&str>) -> Session {
        Session {
            iss: "https://idp.example".into(),
            client: "c".into(),
            sub: sub.into(),
            sid: sid.map(str::to_owned),
            access_token: "at".into(),
            refresh_token: None,
            id_token: None,
            access_expires_at: NOW + 60,
            expires_at: NOW + 3600,
            claims: RawValue::from_string("{}".into()).unwrap(),
            id_claims: None,
        }
    }

    #[test]
    fn a_sid_ends_its_sessions_only_until_the_entry_lapses() {
        let revocations = Revocations::default();
        assert_eq!(revocations.generation(), 0);
        revocations.revoke_sid("https://idp.example", "s1", NOW, NOW + 100);
        assert!(revocations.generation() > 0);
        assert!(revocations.is_revoked(&session("alice", Some("s1")), NOW - 10, NOW));
        assert!(!revocations.is_revoked(&session("alice", Some("s2")), NOW - 10, NOW));
        assert!(!revocations.is_revoked(&session("alice", None), NOW - 10, NOW));
        // Another issuer's `s1` is another session.
        let mut other = session("alice", Some("s1"));
        other.iss = "https://other.example".into();
        assert!(!revocations.is_revoked(&other, NOW - 10, NOW));
        assert!(!revocations.is_revoked(&session("alice", Some("s1")), NOW - 10, NOW + 100));
    }

    #[test]
    fn a_sub_ends_the_sessions_made_before_the_logout_only() {
        let revocations = Revocations::default();
        revocations.revoke_sub("https://idp.example", "alice", NOW, NOW + 100);
        assert!(revocations.is_revoked(&session("alice", Some("s1")), NOW - 1, NOW + 5));
        assert!(revocations.is_revoked(&session("alice", None), NOW - 1, NOW + 5));
        assert!(!revocations.is_revoked(&session("alice", None), NOW, NOW + 5));
        assert!(!revocations.is_revoked(&session("bob", None), NOW - 1, NOW + 5));
    }

    #[test]
    fn the_list_is_bounded() {
        let revocations = Revocations::default();
        for n in 0..MAX_REVOCATIONS + 10 {
            let until = NOW + 1_000 + n as u64;
            revocations.revoke_sid("https://idp.example", &n.to_string(), NOW, until);
        }
        let held = revocations.entries.lock().unwrap().len();
        assert_eq!(held, MAX_REVOCATIONS);
        // The newest are kept, the soonest to lapse made room.
        let newest = (MAX_REVOCATIONS + 9).to_string();
        assert!(revocations.is_revoked(&session("a", Some(&newest)), NOW, NOW));
        assert!(!revocations.is_revoked(&session("a", Some("0")), NOW, NOW));
    }
}
