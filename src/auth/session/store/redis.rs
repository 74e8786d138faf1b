//! Server-side sessions in Redis, so that sign-out and back-channel logout
//! end a session on every replica at once.
//!
//! # Ticket
//!
//! The cookie `{base}-0` (one shard, about 110 characters) holds
//!
//! ```text
//! sealed("{base}-0", session id (16 random bytes) | session key (32 random bytes))
//! ```
//!
//! sealed by the [`CookieSealer`] under `sessions.secrets`, like every other
//! cookie of the proxy: a ticket cannot be made up without the secrets, even
//! by someone who can write to Redis, and a ticket of one cookie name does
//! not open under another.
//!
//! # Keys
//!
//! With the configured `key_prefix` (default `portcullis:`):
//!
//! ```text
//! {prefix}session:{id}   the sealed session          STRING, TTL = its remaining life
//! {prefix}sid:{mac}      ids of the sessions of one  ZSET id -> expires_at,
//!                        IdP session (iss, sid)      TTL = the longest member's
//! {prefix}sub:{mac}      ids of the sessions of one  ZSET, as above
//!                        user (iss, sub)
//! {prefix}lock:{id}      the refresh lock of one     STRING random token,
//!                        session                     TTL = the hold
//! {prefix}once:{scope}:{digest}                      STRING "1", TTL = keep
//!                        a one-time key seen
//! ```
//!
//! `{id}` is the session id in base64url. `{mac}` is base64url of
//! HMAC-SHA256 over the length-prefixed issuer and value, keyed from the
//! session secrets, so Redis does not list who is logged in; revocation
//! looks under the key of every secret, so rotation misses nothing.
//! `{digest}` is base64url of SHA-256 of the one-time key, unkeyed so that
//! a key seen before a secret rotation is still recognised after it.
//!
//! # Values at rest
//!
//! `version (0x01) | nonce (12) | AES-256-GCM(session JSON) | tag (16)`,
//! keyed with the ticket's session key, the session id as associated data.
//! Redis never sees that key, so a copy of Redis reveals no token or claim.
//!
//! # Writes and revocation
//!
//! No step needs a transaction, so every key may sit in another Redis
//! Cluster slot, and no command or pipeline names two keys: each goes to
//! the one node that owns its key. A save adds the id to the indexes first
//! (pruning members that have expired) and writes the session only once
//! they have answered: a failure in between leaves at most an index entry
//! that names nothing. An update rewrites the value only if the key still
//! exists (`SET XX`), so a refresh racing a sign-out never brings the
//! session back. Revocation reads one index, deletes the sessions it names
//! (one `DEL` each, sent together) and then removes exactly those members,
//! so a session added meanwhile stays indexed: the work is the number of
//! sessions of that user. Deleting one session leaves its index entries,
//! which name nothing and are pruned when they expire.
//!
//! The refresh lock is `SET … NX PX hold` with a random token; unlocking
//! deletes the key only while it still holds that token (one Lua script on
//! one key, so it runs on a cluster too). A one-time key is `SET … NX PX`.
//!
//! # Errors
//!
//! Each round trip (or set of requests sent together) is bounded by
//! `timeout`. A refused connection, a Redis error or a timeout is a
//! [`StoreError`] (503 to the client), never "no session". Indexes use
//! `EXPIRE … NX` / `GT`, so Redis 7.0 or later.
//!
//! # Connections
//!
//! [`connect`] gives a [`ConnectionManager`] to one server; [`connect_cluster`]
//! a [`ClusterConnection`] to Redis Cluster. Both reconnect by themselves:
//! a store built on either serves again once Redis is back, without being
//! rebuilt.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, RedisResult, Script, Value};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::try_join_all;

use super::{Lock, Revoked, SessionStore, StoreError, Ticket, once_digest};
use crate::auth::session::{CookieSealer, mac_key};
use crate::auth::state::Session;
use crate::config::SessionKey;

const ID_LEN: usize = 16;
const KEY_LEN: usize = 32;
const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// Associated data of a sealed value, before the session id.
const VALUE_AAD: &[u8] = b"portcullis redis session v1";
/// Largest session JSON the store takes; twice what four cookies can carry,
/// so a Redis value never grows without bound.
pub const MAX_SESSION_BYTES: usize = 64 * 1024;
const MAX_VALUE_BYTES: usize = 1 + NONCE_LEN + MAX_SESSION_BYTES + TAG_LEN;

const INDEX_SALT: &[u8] = b"portcullis session index v1";
const LOCK_TOKEN_LEN: usize = 16;
/// Deletes `KEYS[1]` only while it holds `ARGV[1]`: a compare-and-delete
/// that no other client's command can interleave with.
const UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// `sessions.redis` beyond the address.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Prepended to every key, so that several deployments share one Redis.
    pub key_prefix: String,
    /// Bound on each Redis call, connecting included.
    pub timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            key_prefix: "portcullis:".to_owned(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A connection to one Redis server that reconnects by itself, with
/// `timeout` on connecting and on every answer.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, StoreError> {
    let client = Client::open(url).map_err(StoreError::InvalidUrl)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let connecting = ConnectionManager::new_with_config(client, config);
    bounded("connect", timeout, connecting).await
}

/// A connection to a Redis Cluster that follows its slots and reconnects to
/// its nodes by itself, with `timeout` on connecting to each node, on every
/// answer, and on the whole connect. `urls` are some of its nodes (any one
/// that answers is enough); `redis://` or `rediss://`, with any password.
pub async fn connect_cluster(
    urls: &[String],
    timeout: Duration,
) -> Result<ClusterConnection, StoreError> {
    let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .build()
        .map_err(StoreError::InvalidUrl)?;
    bounded("connect", timeout, client.get_async_connection()).await
}

/// `work`, unless it fails or takes longer than `after`.
async fn bounded<T>(
    op: &'static str,
    after: Duration,
    work: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(after, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(StoreError::Unavailable { op, source }),
        Err(_) => Err(StoreError::Timeout { op, after }),
    }
}

/// Sessions in Redis behind a one-cookie ticket. `C` is a
/// [`ConnectionManager`], or a [`ClusterConnection`] for Redis Cluster.
pub struct RedisStore<C = ConnectionManager> {
    conn: C,
    /// Seals and opens tickets.
    sealer: Arc<CookieSealer>,
    /// `{base}-0`: the one cookie a ticket travels in, bound into its seal.
    ticket_name: String,
    /// Index MAC keys, one per session secret; the first writes, all are searched.
    index_keys: Vec<hmac::Key>,
    settings: RedisSettings,
    /// [`UNLOCK`], sent by its hash once Redis knows it.
    unlock: Script,
}

/// What a ticket opens to.
struct Opened {
    id: String,
    key: RandomizedNonceKey,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    pub fn new(
        conn: C,
        sealer: Arc<CookieSealer>,
        secrets: &[SessionKey],
        base: &str,
        settings: RedisSettings,
    ) -> Self {
        Self {
            conn,
            sealer,
            ticket_name: format!("{base}-0"),
            index_keys: index_keys(secrets),
            settings,
            unlock: Script::new(UNLOCK),
        }
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}session:{id}", self.settings.key_prefix)
    }

    /// The index keys `kind` (`sid` or `sub`) of `value` at `iss`, the writing one first.
    fn index_names<'a>(
        &'a self,
        kind: &'a str,
        iss: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = String> + 'a {
        self.index_keys.iter().map(move |key| {
            let mut context = hmac::Context::with_key(key);
            for part in [kind, iss, value] {
                let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
                context.update(&len.to_be_bytes());
                context.update(part.as_bytes());
            }
            let mac = URL_SAFE_NO_PAD.encode(context.sign());
            format!("{}{kind}:{mac}", self.settings.key_prefix)
        })
    }

    /// The session id and key in `ticket`, if it is a ticket this store issued.
    fn open_ticket(&self, ticket: &Ticket) -> Option<Opened> {
        let [value] = ticket.shards() else {
            return None;
        };
        let plain = self.sealer.open(&self.ticket_name, value)?;
        let (id, key) = plain.split_at_checked(ID_LEN)?;
        if key.len() != KEY_LEN {
            return None;
        }
        Some(Opened {
            id: URL_SAFE_NO_PAD.encode(id),
            key: RandomizedNonceKey::new(&AES_256_GCM, key).ok()?,
        })
    }

    /// One Redis round trip (or several sent at once), bounded by the timeout.
    async fn call<T>(
        &self,
        op: &'static str,
        run: impl AsyncFnOnce(&mut C) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        bounded(op, self.settings.timeout, run(&mut conn)).await
    }

    async fn revoke(&self, kind: &str, iss: &str, value: &str) -> Result<Revoked, StoreError> {
        let mut deleted = 0;
        for index in self.index_names(kind, iss, value) {
            let ids: Vec<String> = self
                .call("revoke", async |conn| {
                    ::redis::cmd("ZRANGE")
                        .arg(&index)
                        .arg(0)
                        .arg(-1)
                        .query_async(conn)
                        .await
                })
                .await?;
            if ids.is_empty() {
                continue;
            }
            // One DEL per key, not one for all nor one pipeline: in a
            // cluster the keys live in different slots, and any one command
            // or pipeline must stay within one.
            let keys: Vec<String> = ids.iter().map(|id| self.session_key(id)).collect();
            let counts: Vec<usize> = self
                .call("revoke", async |conn| {
                    try_join_all(keys.iter().map(|key| {
                        let mut conn = conn.clone();
                        async move { ::redis::cmd("DEL").arg(key).query_async(&mut conn).await }
                    }))
                    .await
                })
                .await?;
            deleted += counts.iter().sum::<usize>();
            // Only once they are gone: an index entry never goes before its session.
            self.call("revoke", async |conn| {
                ::redis::cmd("ZREM")
                    .arg(&index)
                    .arg(&ids)
                    .query_async::<()>(conn)
                    .await
            })
            .await?;
        }
        Ok(Revoked::Sessions(deleted))
    }
}

impl<C> SessionStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    fn revokes(&self) -> bool {
        true
    }

    async fn save(&self, session: &Session, now: u64) -> Result<Ticket, StoreError> {
        let ttl = session.expires_at.checked_sub(now).filter(|&ttl| ttl > 0);
        let ttl = ttl.ok_or(StoreError::Expired)?;
        let plaintext = serialize(session)?;

        let mut secret = [0u8; ID_LEN + KEY_LEN];
        aws_lc_rs::rand::fill(&mut secret)
            .expect("the system random source works, or nothing in TLS would either");
        let ticket = Ticket::from_shards(vec![self.sealer.seal(&self.ticket_name, &secret)]);
        let opened = Opened {
            id: URL_SAFE_NO_PAD.encode(&secret[..ID_LEN]),
            key: RandomizedNonceKey::new(&AES_256_GCM, &secret[ID_LEN..])
                .expect("the key is exactly AES-256's 32 bytes"),
        };
        secret.fill(0);
        let value = seal_value(&opened, plaintext);

        // One pipeline per index: each names one key, so one slot.
        let sid = session.sid.as_deref().map(|sid| ("sid", sid));
        let mut pipes = Vec::with_capacity(2);
        for (kind, of) in sid.into_iter().chain([("sub", session.sub.as_str())]) {
            let index = self
                .index_names(kind, &session.iss, of)
                .next()
                .expect("there is always at least one index key");
            let mut pipe = ::redis::pipe();
            pipe.cmd("ZADD")
                .arg(&index)
                .arg(session.expires_at)
                .arg(&opened.id)
                .ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&index)
                .arg("-inf")
                .arg(now)
                .ignore();
            // NX gives a new index its TTL, GT lengthens an existing one; neither shortens it.
            pipe.cmd("EXPIRE").arg(&index).arg(ttl).arg("NX").ignore();
            pipe.cmd("EXPIRE").arg(&index).arg(ttl).arg("GT").ignore();
            pipes.push(pipe);
        }
        self.call("save", async |conn| {
            try_join_all(pipes.iter().map(|pipe| {
                let mut conn = conn.clone();
                async move { pipe.query_async::<()>(&mut conn).await }
            }))
            .await
        })
        .await?;
        // The session last, once every index names it.
        let key = self.session_key(&opened.id);
        self.call("save", async |conn| {
            ::redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(conn)
                .await
        })
        .await?;
        Ok(ticket)
    }

    async fn update(
        &self,
        ticket: &Ticket,
        session: &Session,
        now: u64,
    ) -> Result<Option<Ticket>, StoreError> {
        let Some(opened) = self.open_ticket(ticket) else {
            return Ok(None);
        };
        let Some(ttl) = session.expires_at.checked_sub(now).filter(|&ttl| ttl > 0) else {
            return Ok(None);
        };
        let value = seal_value(&opened, serialize(session)?);
        let key = self.session_key(&opened.id);
        let written: Value = self
            .call("update", async |conn| {
                ::redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .arg("XX")
                    .query_async(conn)
                    .await
            })
            .await?;
        Ok((written != Value::Nil).then(|| ticket.clone()))
    }

    async fn load(&self, ticket: &Ticket, now: u64) -> Result<Option<Session>, StoreError> {
        let Some(opened) = self.open_ticket(ticket) else {
            return Ok(None);
        };
        let key = self.session_key(&opened.id);
        let value: Option<Vec<u8>> = self
            .call("load", async |conn| {
                ::redis::cmd("GET").arg(&key).query_async(conn).await
            })
            .await?;
        let session = value
            .and_then(|value| open_value(&opened, value))
            .and_then(|plain| serde_json::from_slice::<Session>(&plain).ok());
        Ok(session.filter(|session| session.expires_at > now))
    }

    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError> {
        let Some(opened) = self.open_ticket(ticket) else {
            return Ok(());
        };
        let key = self.session_key(&opened.id);
        self.call("delete", async |conn| {
            ::redis::cmd("DEL").arg(&key).query_async::<()>(conn).await
        })
        .await
    }

    async fn delete_by_sid(&self, iss: &str, sid: &str) -> Result<Revoked, StoreError> {
        self.revoke("sid", iss, sid).await
    }

    async fn delete_by_sub(&self, iss: &str, sub: &str) -> Result<Revoked, StoreError> {
        self.revoke("sub", iss, sub).await
    }

    async fn try_lock(&self, ticket: &Ticket, hold: Duration) -> Result<Option<Lock>, StoreError> {
        let Some(opened) = self.open_ticket(ticket) else {
            return Ok(None);
        };
        let mut token = [0u8; LOCK_TOKEN_LEN];
        aws_lc_rs::rand::fill(&mut token)
            .expect("the system random source works, or nothing in TLS would either");
        let lock = Lock {
            key: format!("{}lock:{}", self.settings.key_prefix, opened.id),
            token: URL_SAFE_NO_PAD.encode(token),
        };
        let taken: Value = self
            .call("lock", async |conn| {
                ::redis::cmd("SET")
                    .arg(&lock.key)
                    .arg(&lock.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(hold))
                    .query_async(conn)
                    .await
            })
            .await?;
        Ok((taken != Value::Nil).then_some(lock))
    }

    async fn unlock(&self, lock: Lock) -> Result<(), StoreError> {
        self.call("unlock", async |conn| {
            self.unlock
                .key(&lock.key)
                .arg(&lock.token)
                .invoke_async::<()>(conn)
                .await
        })
        .await
    }

    async fn first_use(
        &self,
        scope: &str,
        key: &str,
        keep: Duration,
        _now: u64,
    ) -> Result<bool, StoreError> {
        let key = format!(
            "{}once:{scope}:{}",
            self.settings.key_prefix,
            URL_SAFE_NO_PAD.encode(once_digest(key))
        );
        let set: Value = self
            .call("remember a one-time key", async |conn| {
                ::redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(keep))
                    .query_async(conn)
                    .await
            })
            .await?;
        Ok(set != Value::Nil)
    }
}

/// `duration` in whole milliseconds for `PX`, which refuses 0.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn serialize(session: &Session) -> Result<Vec<u8>, StoreError> {
    let plaintext = serde_json::to_vec(session).expect("a session serialises to JSON");
    if plaintext.len() > MAX_SESSION_BYTES {
        return Err(StoreError::TooLarge {
            size: plaintext.len(),
            limit: MAX_SESSION_BYTES,
        });
    }
    Ok(plaintext)
}

fn value_aad(id: &str) -> Vec<u8> {
    [VALUE_AAD, id.as_bytes()].concat()
}

fn seal_value(opened: &Opened, plaintext: Vec<u8>) -> Vec<u8> {
    let mut sealed = plaintext;
    let nonce = opened
        .key
        .seal_in_place_append_tag(Aad::from(value_aad(&opened.id)), &mut sealed)
        .expect("AES-GCM sealing fails only past 64 GiB or without randomness");
    let mut value = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    value.push(VERSION);
    value.extend_from_slice(nonce.as_ref());
    value.extend_from_slice(&sealed);
    value
}

fn open_value(opened: &Opened, mut value: Vec<u8>) -> Option<Vec<u8>> {
    if value.len() > MAX_VALUE_BYTES || value.len() < 1 + NONCE_LEN + TAG_LEN {
        return None;
    }
    if value[0] != VERSION {
        return None;
    }
    let nonce: [u8; NONCE_LEN] = value[1..1 + NONCE_LEN].try_into().ok()?;
    let plain_len = opened
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(value_aad(&opened.id)),
            &mut value[1 + NONCE_LEN..],
        )
        .ok()?
        .len();
    value.copy_within(1 + NONCE_LEN..1 + NONCE_LEN + plain_len, 0);
    value.truncate(plain_len);
    Some(value)
}

/// One MAC key per distinct secret, derived apart from the cookie keys; a
/// random one when there is no secret (nothing then outlives the process).
fn index_keys(secrets: &[SessionKey]) -> Vec<hmac::Key> {
    let derive = |secret: &[u8]| mac_key(INDEX_SALT, secret);
    let mut keys = Vec::with_capacity(secrets.len().max(1));
    for (i, secret) in secrets.iter().enumerate() {
        if !secrets[..i].contains(secret) {
            keys.push(derive(&secret.0));
        }
    }
    if keys.is_empty() {
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random)
            .expect("the system random source works, or nothing in TLS would either");
        keys.push(derive(&random));
    }
    keys
}
