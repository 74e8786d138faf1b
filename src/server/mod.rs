//! Listeners: bind, accept (TLS or plain), limit connections, serve the admin
//! endpoints, and shut down gracefully.

mod admin;
mod conn;
mod read_ahead;
mod reload;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthShared;
use crate::auth::bearer::JwtValidator;
use crate::auth::clock::Clock;
use crate::auth::oidc::provider::Provider;
use crate::auth::providers::Providers;
use crate::auth::session::store::StoreHealth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{Downstream, Proxy, Route, Upstream};
use read_ahead::ReadAhead;

pub use reload::Reloads;
pub use tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS for the listener on {address}")]
    Tls {
        address: SocketAddr,
        #[source]
        source: TlsError,
    },
    #[error("authentication setup")]
    Auth(#[from] crate::auth::BuildError),
    #[error("the IdP {} did not answer; a reload waits for the IdPs it adds", .0.join(", "))]
    IdpUnavailable(Vec<String>),
    #[error("the session store did not answer; a reload waits for a store it changes")]
    StoreUnavailable(#[source] crate::auth::session::store::StoreError),
}

/// A listener's TLS: the acceptor, and the certificate files it watches.
struct Tls {
    acceptor: TlsAcceptor,
    /// Keeps certificate reloading alive for as long as the acceptor is used.
    _certificates: Arc<tls::CertResolver>,
}

/// One public listener as a configuration describes it, before its socket.
struct Planned {
    /// As configured (the port may be 0).
    address: SocketAddr,
    tls: Option<Arc<Tls>>,
    proxy: Arc<Proxy>,
}

/// Everything one configuration makes, except sockets.
struct Generation {
    listeners: Vec<Planned>,
    providers: Providers,
    auth: Option<Arc<AuthShared>>,
    upstream: Upstream,
}

/// What a generation is built with.
struct Builder<'a> {
    metrics: &'a Arc<Metrics>,
    clock: &'a Clock,
    crypto: &'a Arc<rustls::crypto::CryptoProvider>,
}

impl Builder<'_> {
    /// The generation of `config`, keeping what it may of `previous`'s.
    fn build(&self, config: &Config, previous: Option<&Running>) -> Result<Generation, StartError> {
        let previous_auth = previous.and_then(|running| running.last_auth.as_deref());
        let auth = crate::auth::shared(
            config,
            self.metrics.clone(),
            self.clock.clone(),
            previous_auth,
        )?;
        let upstream = match previous {
            // Without secrets the stickiness key is random: keep it too.
            Some(running) if running.config.sessions.secrets == config.sessions.secrets => {
                running.upstream.clone()
            }
            Some(running) => running.upstream.rekeyed(&config.sessions.secrets),
            None => Upstream::new(&config.sessions.secrets, self.clock.clone()),
        };
        let mut providers = match previous {
            Some(running) => Providers::after(&running.providers),
            None => Providers::default(),
        };
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let mut routes = Vec::with_capacity(listener.rules.len());
            for rule in &listener.rules {
                let authenticator = match (&rule.authenticate, &auth) {
                    (Some(action), Some(shared)) => Some(crate::auth::build(
                        &rule.name,
                        action,
                        shared.clone(),
                        &mut providers,
                    )),
                    _ => None,
                };
                // ALB serves at once and fetches the JWKS when needed: the
                // key set is loaded now, but readiness does not wait for it.
                let bearer = rule.jwt_validation.as_ref().map(|action| {
                    let key_set = providers.jwks(
                        &action.issuer,
                        &action.jwks_endpoint,
                        action.idp_timeout,
                        || JwtValidator::key_set(action),
                    );
                    let validator = JwtValidator::with_key_set(
                        action,
                        key_set,
                        self.clock.clone(),
                        self.metrics.clone(),
                    );
                    Arc::new(validator)
                });
                routes.push(Route::new(rule.clone(), authenticator).with_bearer(bearer));
            }
            let address = listener.address;
            let tls = match &listener.tls {
                Some(tls) => {
                    let tls_error = |source| StartError::Tls { address, source };
                    let resolver =
                        tls::CertResolver::load(tls, self.crypto.clone()).map_err(tls_error)?;
                    let server_config = resolver.server_config().map_err(tls_error)?;
                    resolver.watch();
                    Some(Arc::new(Tls {
                        acceptor: TlsAcceptor::from(server_config),
                        _certificates: resolver,
                    }))
                }
                None => None,
            };
            let proxy = Arc::new(Proxy::new(
                routes,
                listener.headers,
                listener.trusted_proxies.clone(),
                upstream.clone(),
                self.metrics.clone(),
                auth.clone(),
            ));
            listeners.push(Planned {
                address,
                tls,
                proxy,
            });
        }
        providers.forget_previous();
        Ok(Generation {
            listeners,
            providers,
            auth,
            upstream,
        })
    }
}

/// What the admin endpoints read of the configuration being served.
struct Served {
    /// Each must have loaded its endpoints and keys.
    providers: Vec<Arc<Provider>>,
    /// The session store must answer (Redis); `None` when no rule authenticates.
    store_health: Option<Arc<StoreHealth>>,
    fingerprint: String,
}

impl Served {
    fn of(config: &Config, generation: &Generation) -> Self {
        Self {
            providers: generation.providers.logins(),
            store_health: generation
                .auth
                .as_ref()
                .map(|auth| Arc::clone(&auth.store_health)),
            fingerprint: config.fingerprint.clone(),
        }
    }
}

/// A public listener being served: what its accept loop and connections read
/// for each new connection and request, which a reload replaces.
struct Live {
    address: SocketAddr,
    tls: Arc<ArcSwapOption<Tls>>,
    proxy: Arc<ArcSwap<Proxy>>,
    /// Sending `true` stops accepting and drains this listener's connections.
    stop: watch::Sender<bool>,
}

impl Live {
    fn new(planned: Planned) -> Self {
        Self {
            address: planned.address,
            tls: Arc::new(ArcSwapOption::new(planned.tls)),
            proxy: Arc::new(ArcSwap::new(planned.proxy)),
            stop: watch::channel(false).0,
        }
    }
}

/// The configuration being served and what was built from it.
struct Running {
    /// As served: `admin` and `limits.max_connections` stay those of the
    /// start, which only a restart changes.
    config: Config,
    listeners: Vec<Live>,
    /// The IdPs of the configuration, for the next to keep.
    providers: Providers,
    /// What the last configuration that authenticated shared, even when the
    /// one served does not: its revocations and used logout tokens must
    /// outlive a configuration without login.
    last_auth: Option<Arc<AuthShared>>,
    upstream: Upstream,
    /// What the admin endpoints read.
    served: Arc<ArcSwap<Served>>,
}

/// What a reload did to the listeners.
struct Change {
    kept: usize,
    added: usize,
    removed: usize,
}

/// Where a listener of the new configuration comes from.
enum Socket {
    /// The running listener at this index, with the same address.
    Kept(usize),
    Bound(TcpListener),
}

impl Running {
    /// Replaces the running configuration with `config`. Everything is built
    /// and every new socket bound first, and IdPs new to this configuration
    /// are asked for their endpoints and keys; only then are the listeners'
    /// routes swapped for new requests. Requests in flight finish
    /// on the routes they started with. A listener whose address is still
    /// configured keeps its socket and connections; one that is not stops
    /// accepting and drains.
    async fn apply(
        &mut self,
        config: Config,
        accepting: &Accepting,
        builder: Builder<'_>,
    ) -> Result<Change, StartError> {
        let generation = builder.build(&config, Some(self))?;

        // Listeners match by address, and in order among equal ones (port 0).
        let mut claimed = vec![false; self.listeners.len()];
        let mut sockets = Vec::with_capacity(generation.listeners.len());
        for planned in &generation.listeners {
            let running = self
                .listeners
                .iter()
                .enumerate()
                .position(|(index, live)| !claimed[index] && live.address == planned.address);
            sockets.push(match running {
                Some(index) => {
                    claimed[index] = true;
                    Socket::Kept(index)
                }
                None => Socket::Bound(bind(planned.address).await?),
            });
        }
        // An IdP or store new to the configuration must answer before the
        // swap: readiness waits for them, and a mistake in a file watched by
        // every replica must not take them all out of service at once.
        let failed = generation.providers.load_fresh().await;
        if !failed.is_empty() {
            return Err(StartError::IdpUnavailable(failed));
        }
        if let Some(auth) = &generation.auth {
            let kept = self
                .last_auth
                .as_ref()
                .is_some_and(|last| Arc::ptr_eq(&last.backend, &auth.backend));
            if !kept {
                auth.backend
                    .ping()
                    .await
                    .map_err(StartError::StoreUnavailable)?;
                auth.store_health.answered();
            }
        }

        // From here on nothing waits: each listener's routes are replaced
        // whole (a request sees all of the old or all of the new), the
        // listeners one after another within microseconds.
        let served = Served::of(&config, &generation);
        let Generation {
            listeners: planned,
            providers,
            auth,
            upstream,
        } = generation;
        let mut previous: Vec<Option<Live>> = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(Some)
            .collect();
        let mut change = Change {
            kept: 0,
            added: 0,
            removed: 0,
        };
        for (planned, socket) in planned.into_iter().zip(sockets) {
            let live = match socket {
                Socket::Kept(index) => previous[index].take().inspect(|live| {
                    live.tls.store(planned.tls.clone());
                    live.proxy.store(Arc::clone(&planned.proxy));
                    change.kept += 1;
                }),
                Socket::Bound(socket) => {
                    let live = Live::new(planned);
                    accepting.spawn(&live, socket);
                    change.added += 1;
                    Some(live)
                }
            };
            self.listeners.extend(live);
        }
        for live in previous.into_iter().flatten() {
            let _ = live.stop.send(true);
            change.removed += 1;
        }
        self.served.store(Arc::new(served));
        builder.metrics.config_served(&config.fingerprint);
        let mut config = config;
        if config.limits.max_connections != self.config.limits.max_connections {
            tracing::warn!("limits.max_connections changes when portcullis restarts");
            config.limits.max_connections = self.config.limits.max_connections;
        }
        if config.limits != self.config.limits {
            accepting
                .http
                .store(Arc::new(conn::Http::new(&config.limits)));
        }
        if config.admin != self.config.admin {
            tracing::warn!("admin.address changes when portcullis restarts");
            config.admin = self.config.admin.clone();
        }
        self.config = config;
        self.providers = providers;
        self.last_auth = auth.or(self.last_auth.take());
        self.upstream = upstream;
        Ok(change)
    }
}

/// A bound, not yet serving, portcullis: every socket is open, so bind errors
/// surface before anything is served and tests can read the chosen ports.
pub struct Portcullis {
    running: Running,
    /// The public listeners' sockets, in the order of `running.listeners`.
    sockets: Vec<TcpListener>,
    admin: Option<TcpListener>,
    metrics: Arc<Metrics>,
    clock: Clock,
    crypto: Arc<rustls::crypto::CryptoProvider>,
}

impl Portcullis {
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        Self::bind_with_clock(config, Clock::system()).await
    }

    /// [`bind`](Self::bind), judging sessions, logins and refresh by `clock`
    /// (tests move a manual one instead of sleeping).
    pub async fn bind_with_clock(config: &Config, clock: Clock) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let generation = Builder {
            metrics: &metrics,
            clock: &clock,
            crypto: &crypto,
        }
        .build(config, None)?;
        let mut sockets = Vec::with_capacity(generation.listeners.len());
        for planned in &generation.listeners {
            sockets.push(bind(planned.address).await?);
        }
        let admin = match &config.admin {
            Some(admin) => Some(bind(admin.address).await?),
            None => None,
        };
        metrics.config_served(&config.fingerprint);
        let served = Arc::new(ArcSwap::from_pointee(Served::of(config, &generation)));
        let Generation {
            listeners,
            providers,
            auth,
            upstream,
        } = generation;
        Ok(Self {
            running: Running {
                config: config.clone(),
                listeners: listeners.into_iter().map(Live::new).collect(),
                providers,
                last_auth: auth,
                upstream,
                served,
            },
            sockets,
            admin,
            metrics,
            clock,
            crypto,
        })
    }

    /// The public listeners' bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|socket| socket.local_addr().ok())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|admin| admin.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish for up to `shutdown_timeout`, and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        self.serve_reloading(shutdown, Reloads::none()).await;
    }

    /// [`serve`](Self::serve), reloading the configuration each time
    /// `reloads` asks (see [`Reloads`]).
    pub async fn serve_reloading(self, shutdown: impl Future<Output = ()>, mut reloads: Reloads) {
        let Self {
            mut running,
            sockets,
            admin,
            metrics,
            clock,
            crypto,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a sender; when all are gone, the drain is complete.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let accepting = Accepting {
            http: Arc::new(ArcSwap::from_pointee(conn::Http::new(
                &running.config.limits,
            ))),
            metrics: metrics.clone(),
            slots: running
                .config
                .limits
                .max_connections
                .map(|max| Arc::new(Semaphore::new(max))),
            open: open_tx,
        };

        if let Some(admin) = admin {
            let admin_state = Arc::new(admin::Admin {
                metrics: metrics.clone(),
                stop: stop_rx.clone(),
                served: running.served.clone(),
            });
            tokio::spawn(serve_admin(admin, admin_state, stop_rx.clone()));
        }
        for (live, socket) in running.listeners.iter().zip(sockets) {
            accepting.spawn(live, socket);
        }
        reloads.start(&running.config);

        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = reloads.requested() => {
                    let builder = Builder {
                        metrics: &metrics,
                        clock: &clock,
                        crypto: &crypto,
                    };
                    // Nothing is swapped until the new configuration is
                    // complete, so a shutdown may cut a reload short.
                    tokio::select! {
                        () = reloads.reload(&mut running, &accepting, builder) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }

        let shutdown_timeout = running.config.shutdown_timeout;
        tracing::info!(timeout = ?shutdown_timeout, "shutting down: no new connections, finishing in-flight requests");
        // `send` fails only when no receiver is left, i.e. nothing to stop.
        let _ = stop_tx.send(true);
        for live in &running.listeners {
            let _ = live.stop.send(true);
        }
        drop(accepting);
        if tokio::time::timeout(shutdown_timeout, open_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown_timeout reached with requests still in flight; closing them");
        }
    }
}

/// What every accept loop shares.
struct Accepting {
    /// Protocol settings and limits for new connections.
    http: Arc<ArcSwap<conn::Http>>,
    metrics: Arc<Metrics>,
    /// Free connection slots when `limits.max_connections` is set.
    slots: Option<Arc<Semaphore>>,
    open: mpsc::Sender<()>,
}

impl Accepting {
    fn spawn(&self, live: &Live, socket: TcpListener) {
        let accept = AcceptLoop {
            socket,
            tls: live.tls.clone(),
            proxy: live.proxy.clone(),
            http: self.http.clone(),
            metrics: self.metrics.clone(),
            slots: self.slots.clone(),
            stop: live.stop.subscribe(),
            open: self.open.clone(),
        };
        tokio::spawn(accept.run());
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

struct AcceptLoop {
    socket: TcpListener,
    tls: Arc<ArcSwapOption<Tls>>,
    proxy: Arc<ArcSwap<Proxy>>,
    http: Arc<ArcSwap<conn::Http>>,
    metrics: Arc<Metrics>,
    slots: Option<Arc<Semaphore>>,
    /// This listener's: turns true at shutdown, or when a reload removes it.
    stop: watch::Receiver<bool>,
    open: mpsc::Sender<()>,
}

impl AcceptLoop {
    async fn run(mut self) {
        let local = self.socket.local_addr().ok();
        let port = local.map_or(0, |address| address.port());
        if let Some(address) = local {
            tracing::info!(%address, tls = self.tls.load().is_some(), "listening");
        }
        loop {
            // Waiting for a slot before accepting leaves excess clients in the
            // kernel's backlog instead of accepting and dropping them.
            let slot = match &self.slots {
                Some(slots) => tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.ok(),
                    _ = stopping(&mut self.stop) => break,
                },
                None => None,
            };
            let (stream, client) = tokio::select! {
                accepted = self.socket.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopping(&mut self.stop) => break,
            };
            let tls = self.tls.load_full();
            let downstream = Downstream {
                client,
                port,
                tls: tls.is_some(),
            };
            let http = self.http.load_full();
            let connection = Connection {
                tls,
                handshake_timeout: http.header_read_timeout(),
                http,
                proxy: self.proxy.clone(),
                metrics: self.metrics.clone(),
                stop: self.stop.clone(),
            };
            let open = self.open.clone();
            tokio::spawn(async move {
                connection.run(stream, downstream).await;
                drop((slot, open));
            });
        }
        if let Some(address) = local {
            tracing::info!(%address, "stopped listening");
        }
    }
}

/// What one connection task needs.
struct Connection {
    tls: Option<Arc<Tls>>,
    http: Arc<conn::Http>,
    /// The listener's routes: each request reads the current ones.
    proxy: Arc<ArcSwap<Proxy>>,
    metrics: Arc<Metrics>,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream, downstream: Downstream) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        self.metrics.connection_opened();
        match &self.tls {
            Some(tls) => {
                // Boxed: the task outlives the handshake and need not keep
                // room for it.
                let handshake = Box::pin(tls.acceptor.accept(ReadAhead::new(stream)));
                match tokio::time::timeout(self.handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        let protocol = match stream.get_ref().1.alpn_protocol() {
                            Some(b"h2") => conn::Protocol::Http2,
                            _ => conn::Protocol::Http1,
                        };
                        // Boxed once: the TLS state (1.2 KiB) is not copied
                        // into every future that passes it on.
                        Box::pin(self.serve(Box::new(stream), protocol, downstream)).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%error, client = %downstream.client, "TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::debug!(client = %downstream.client, "TLS handshake timed out")
                    }
                }
            }
            None => Box::pin(self.serve(stream, conn::Protocol::Detect, downstream)).await,
        }
        self.metrics.connection_closed();
    }

    async fn serve<IO: conn::Socket>(
        &self,
        io: IO,
        protocol: conn::Protocol,
        downstream: Downstream,
    ) {
        conn::serve(
            io,
            protocol,
            self.http.clone(),
            self.proxy.clone(),
            downstream,
            self.stop.clone(),
        )
        .await;
    }
}

async fn serve_admin(
    listener: TcpListener,
    admin: Arc<admin::Admin>,
    mut stop: watch::Receiver<bool>,
) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "admin listening");
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping(&mut stop) => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let admin = admin.clone();
                async move { admin.handle(request).await }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
}

/// Resolves once shutdown has begun (at once if it already has).
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stopping| *stopping).await;
}
