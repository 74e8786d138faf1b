//! The store `sessions.store` chose, as one type the authenticator holds:
//! [`Backend`] is what every authenticate action shares (the Redis
//! connection), [`AnyStore`] one action's store on it (bound to its cookie
//! name). Calls to Redis are timed into the session-store metrics; the
//! cookie store's are not (they never leave the process).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::redis::Client;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

use super::{
    CookieStore, Lock, OnceKeys, RedisSettings, RedisStore, Revoked, SessionStore, StoreError,
    Ticket, connect_cluster,
};
use crate::auth::session::CookieSealer;
use crate::auth::state::Session;
use crate::config::{RedisAddress, SessionKey, SessionStoreKind};
use crate::metrics::Metrics;

/// How often readiness asks Redis whether it answers.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Where the sessions of this process live.
pub enum Backend {
    Cookie,
    Redis {
        conn: ConnectionManager,
        settings: RedisSettings,
    },
    Cluster(Arc<LazyCluster>),
}

/// A Redis Cluster connection made on first use (and retried on each use
/// until it is made); after that it follows the cluster and reconnects by
/// itself.
pub struct LazyCluster {
    urls: Vec<String>,
    settings: RedisSettings,
    conn: OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn conn(&self) -> Result<ClusterConnection, StoreError> {
        let timeout = self.settings.timeout;
        let connecting = self
            .conn
            .get_or_try_init(|| connect_cluster(&self.urls, timeout));
        match tokio::time::timeout(timeout, connecting).await {
            Ok(conn) => conn.cloned(),
            Err(_) => Err(StoreError::Timeout {
                op: "connect",
                after: timeout,
            }),
        }
    }
}

impl Backend {
    /// The backend for `store`. Connects lazily: the proxy starts while
    /// Redis is down, answers 503 where a session is needed and reports
    /// not ready until Redis answers.
    pub fn open(store: &SessionStoreKind) -> Result<Self, StoreError> {
        let config = match store {
            SessionStoreKind::Cookie => return Ok(Self::Cookie),
            SessionStoreKind::Redis(config) => config,
        };
        let settings = RedisSettings {
            key_prefix: config.key_prefix.clone(),
            timeout: config.timeout,
        };
        let url = match &config.address {
            RedisAddress::Single(url) => url,
            RedisAddress::Cluster(nodes) => {
                return Ok(Self::Cluster(Arc::new(LazyCluster {
                    urls: nodes.iter().map(|url| url.expose().to_owned()).collect(),
                    settings,
                    conn: OnceCell::new(),
                })));
            }
        };
        let client = Client::open(url.expose()).map_err(StoreError::InvalidUrl)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // Reconnecting is retried on the next call, not inside this one:
            // a request waits at most `timeout`.
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(StoreError::InvalidUrl)?;
        Ok(Self::Redis { conn, settings })
    }

    /// One authenticate action's store, for sessions under the cookie `base`;
    /// a cookie store remembers one-time keys in `once`.
    pub fn store(
        &self,
        sealer: &Arc<CookieSealer>,
        secrets: &[SessionKey],
        base: &str,
        once: &Arc<OnceKeys>,
        metrics: &Arc<Metrics>,
    ) -> AnyStore {
        let kind = match self {
            Self::Cookie => Kind::Cookie(CookieStore::sharing(
                Arc::clone(sealer),
                base,
                Arc::clone(once),
            )),
            Self::Redis { conn, settings } => Kind::Redis(RedisStore::new(
                conn.clone(),
                Arc::clone(sealer),
                secrets,
                base,
                settings.clone(),
            )),
            Self::Cluster(cluster) => Kind::Cluster(LazyClusterStore {
                cluster: Arc::clone(cluster),
                store: OnceCell::new(),
                sealer: Arc::clone(sealer),
                secrets: secrets.to_vec(),
                base: base.to_owned(),
            }),
        };
        AnyStore {
            kind,
            metrics: Arc::clone(metrics),
        }
    }

    /// Whether the store answers: always for cookies; `PING` for Redis.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let ping = ::redis::cmd("PING");
        match self {
            Self::Cookie => Ok(()),
            Self::Redis { conn, settings } => {
                let mut conn = conn.clone();
                bounded_ping(settings.timeout, ping.query_async::<()>(&mut conn)).await
            }
            Self::Cluster(cluster) => {
                let mut conn = cluster.conn().await?;
                bounded_ping(cluster.settings.timeout, ping.query_async::<()>(&mut conn)).await
            }
        }
    }

    /// Keeps `health` current until the process ends: not ready until
    /// Redis first answers, then a `PING` every second. Nothing to watch for
    /// the cookie store.
    pub fn watch(self: &Arc<Self>, health: &Arc<StoreHealth>) {
        if matches!(**self, Self::Cookie) {
            return;
        }
        health.0.store(false, Ordering::Relaxed);
        let backend = Arc::downgrade(self);
        let health = Arc::clone(health);
        tokio::spawn(async move {
            let mut first = true;
            let mut ticks = tokio::time::interval(PING_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(backend) = backend.upgrade() else {
                    return;
                };
                let answered = backend.ping().await;
                let was_ready = health.0.swap(answered.is_ok(), Ordering::Relaxed);
                match &answered {
                    // Said once per outage (and at start), not every second.
                    Err(error) if was_ready || first => {
                        let cause = std::error::Error::source(error)
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        tracing::warn!(%error, cause, "the session store does not answer; not ready");
                    }
                    Ok(()) if !was_ready => tracing::info!("the session store answers; ready"),
                    _ => {}
                }
                first = false;
            }
        });
    }
}

async fn bounded_ping(
    after: Duration,
    ping: impl Future<Output = ::redis::RedisResult<()>>,
) -> Result<(), StoreError> {
    match tokio::time::timeout(after, ping).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(StoreError::Unavailable { op: "ping", source }),
        Err(_) => Err(StoreError::Timeout { op: "ping", after }),
    }
}

/// Whether the session store answered its last ping, for `/readyz`.
#[derive(Debug)]
pub struct StoreHealth(AtomicBool);

impl StoreHealth {
    /// Ready: the cookie store always is; [`Backend::watch`] says otherwise
    /// for Redis until it answers.
    pub fn new() -> Self {
        Self(AtomicBool::new(true))
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The store has just answered (a reload asked it before the swap).
    pub fn answered(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self::new()
    }
}

/// One authenticate action's session store.
pub struct AnyStore {
    kind: Kind,
    metrics: Arc<Metrics>,
}

enum Kind {
    Cookie(CookieStore),
    Redis(RedisStore),
    Cluster(LazyClusterStore),
}

/// A cluster store, built on the first call that finds the cluster connected.
struct LazyClusterStore {
    cluster: Arc<LazyCluster>,
    store: OnceCell<RedisStore<ClusterConnection>>,
    sealer: Arc<CookieSealer>,
    secrets: Vec<SessionKey>,
    base: String,
}

impl LazyClusterStore {
    async fn get(&self) -> Result<&RedisStore<ClusterConnection>, StoreError> {
        self.store
            .get_or_try_init(|| async {
                let conn = self.cluster.conn().await?;
                Ok(RedisStore::new(
                    conn,
                    Arc::clone(&self.sealer),
                    &self.secrets,
                    &self.base,
                    self.cluster.settings.clone(),
                ))
            })
            .await
    }
}

/// Calls `$call` on whichever store `$self` holds, timing Redis calls as `$op`.
macro_rules! dispatch {
    ($self:ident, $op:literal, $store:ident => $call:expr) => {
        match &$self.kind {
            Kind::Cookie($store) => $call.await,
            Kind::Redis($store) => $self.timed($op, $call).await,
            Kind::Cluster(lazy) => {
                $self
                    .timed($op, async {
                        let $store = lazy.get().await?;
                        $call.await
                    })
                    .await
            }
        }
    };
}

impl AnyStore {
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .observe_store_call(op, started.elapsed(), result.is_err());
        result
    }

    /// Whether deleting a session ends it for every holder of its ticket.
    pub fn revokes(&self) -> bool {
        match &self.kind {
            Kind::Cookie(store) => store.revokes(),
            Kind::Redis(store) => store.revokes(),
            Kind::Cluster(_) => true,
        }
    }

    pub async fn save(&self, session: &Session, now: u64) -> Result<Ticket, StoreError> {
        dispatch!(self, "save", store => store.save(session, now))
    }

    pub async fn update(
        &self,
        ticket: &Ticket,
        session: &Session,
        now: u64,
    ) -> Result<Option<Ticket>, StoreError> {
        dispatch!(self, "update", store => store.update(ticket, session, now))
    }

    pub async fn load(&self, ticket: &Ticket, now: u64) -> Result<Option<Session>, StoreError> {
        dispatch!(self, "load", store => store.load(ticket, now))
    }

    pub async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError> {
        dispatch!(self, "delete", store => store.delete(ticket))
    }

    pub async fn delete_by_sid(&self, iss: &str, sid: &str) -> Result<Revoked, StoreError> {
        dispatch!(self, "revoke", store => store.delete_by_sid(iss, sid))
    }

    pub async fn delete_by_sub(&self, iss: &str, sub: &str) -> Result<Revoked, StoreError> {
        dispatch!(self, "revoke", store => store.delete_by_sub(iss, sub))
    }

    pub async fn try_lock(
        &self,
        ticket: &Ticket,
        hold: Duration,
    ) -> Result<Option<Lock>, StoreError> {
        dispatch!(self, "lock", store => store.try_lock(ticket, hold))
    }

    pub async fn unlock(&self, lock: Lock) -> Result<(), StoreError> {
        dispatch!(self, "unlock", store => store.unlock(lock))
    }

    pub async fn first_use(
        &self,
        scope: &str,
        key: &str,
        keep: Duration,
        now: u64,
    ) -> Result<bool, StoreError> {
        dispatch!(self, "first_use", store => store.first_use(scope, key, keep, now))
    }
}
