//! Listeners: bind, accept (TLS or plain), limit connections, serve the admin
//! endpoints, and shut down gracefully.

mod admin;
mod conn;
mod read_ahead;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::bearer::JwtValidator;
use crate::auth::clock::Clock;
use crate::auth::oidc::provider::Provider;
use crate::auth::session::store::StoreHealth;
use crate::config::{Config, Limits};
use crate::metrics::Metrics;
use crate::proxy::{Downstream, Proxy, Route, Upstream};
use read_ahead::ReadAhead;

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
}

/// One bound public listener.
struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    /// Keeps certificate reloading alive for as long as the listener is.
    _certificates: Option<Arc<tls::CertResolver>>,
}

/// A bound, not yet serving, portcullis: every socket is open, so bind errors
/// surface before anything is served and tests can read the chosen ports.
pub struct Portcullis {
    listeners: Vec<Listener>,
    admin: Option<TcpListener>,
    metrics: Arc<Metrics>,
    /// Not ready until each has its endpoints and keys.
    providers: Vec<Arc<Provider>>,
    /// Not ready while the session store does not answer.
    store_health: Option<Arc<StoreHealth>>,
    limits: Limits,
    shutdown_timeout: Duration,
}

impl Portcullis {
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        Self::bind_with_clock(config, Clock::system()).await
    }

    /// [`bind`](Self::bind), judging sessions, logins and refresh by `clock`
    /// (tests move a manual one instead of sleeping).
    pub async fn bind_with_clock(config: &Config, clock: Clock) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let upstream = Upstream::new(&config.sessions.secrets, clock.clone());
        let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let auth = crate::auth::shared(config, metrics.clone(), clock.clone())?;
        let store_health = auth.as_ref().map(|auth| {
            auth.backend.watch(&auth.store_health);
            Arc::clone(&auth.store_health)
        });
        let mut providers = Vec::new();

        let mut listeners = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let mut routes = Vec::with_capacity(listener.rules.len());
            for rule in &listener.rules {
                let authenticator = match (&rule.authenticate, &auth) {
                    (Some(action), Some(shared)) => {
                        let authenticator = crate::auth::build(&rule.name, action, shared.clone())?;
                        providers.push(authenticator.provider().clone());
                        Some(authenticator)
                    }
                    _ => None,
                };
                // ALB serves at once and fetches the JWKS when needed: the
                // key set is loaded now, but readiness does not wait for it.
                let bearer = rule.jwt_validation.as_ref().map(|action| {
                    let validator = JwtValidator::new(action, clock.clone(), metrics.clone());
                    validator.provider().start();
                    Arc::new(validator)
                });
                routes.push(Route::new(rule.clone(), authenticator).with_bearer(bearer));
            }
            let address = listener.address;
            let (tls, certificates) = match &listener.tls {
                Some(tls) => {
                    let tls_error = |source| StartError::Tls { address, source };
                    let resolver =
                        tls::CertResolver::load(tls, crypto.clone()).map_err(tls_error)?;
                    let server_config = resolver.server_config().map_err(tls_error)?;
                    resolver.watch();
                    (Some(TlsAcceptor::from(server_config)), Some(resolver))
                }
                None => (None, None),
            };
            let tcp = bind(address).await?;
            let proxy = Arc::new(Proxy::new(
                routes,
                listener.headers,
                listener.trusted_proxies.clone(),
                upstream.clone(),
                metrics.clone(),
                auth.clone(),
            ));
            listeners.push(Listener {
                tcp,
                tls,
                proxy,
                _certificates: certificates,
            });
        }
        let admin = match &config.admin {
            Some(admin) => Some(bind(admin.address).await?),
            None => None,
        };
        Ok(Self {
            listeners,
            admin,
            metrics,
            providers,
            store_health,
            limits: config.limits.clone(),
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The public listeners' bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.tcp.local_addr().ok())
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
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a sender; when all are gone, the drain is complete.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let connection_slots = self
            .limits
            .max_connections
            .map(|max| Arc::new(Semaphore::new(max)));
        let http = Arc::new(conn::Http::new(&self.limits));

        if let Some(admin) = self.admin {
            let admin_state = Arc::new(admin::Admin {
                metrics: self.metrics.clone(),
                stop: stop_rx.clone(),
                providers: self.providers.clone(),
                store_health: self.store_health.clone(),
            });
            tokio::spawn(serve_admin(admin, admin_state, stop_rx.clone()));
        }
        for listener in self.listeners {
            let accept = AcceptLoop {
                listener,
                http: http.clone(),
                metrics: self.metrics.clone(),
                slots: connection_slots.clone(),
                handshake_timeout: self.limits.header_read_timeout,
                stop: stop_rx.clone(),
                open: open_tx.clone(),
            };
            tokio::spawn(accept.run());
        }

        shutdown.await;
        tracing::info!(timeout = ?self.shutdown_timeout, "shutting down: no new connections, finishing in-flight requests");
        // `send` fails only when no receiver is left, i.e. nothing to stop.
        let _ = stop_tx.send(true);
        drop(open_tx);
        if tokio::time::timeout(self.shutdown_timeout, open_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown_timeout reached with requests still in flight; closing them");
        }
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

struct AcceptLoop {
    listener: Listener,
    http: Arc<conn::Http>,
    metrics: Arc<Metrics>,
    /// Free connection slots when `limits.max_connections` is set.
    slots: Option<Arc<Semaphore>>,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
    open: mpsc::Sender<()>,
}

impl AcceptLoop {
    async fn run(mut self) {
        let local = self.listener.tcp.local_addr().ok();
        let port = local.map_or(0, |address| address.port());
        let tls = self.listener.tls.is_some();
        if let Some(address) = local {
            tracing::info!(%address, tls, "listening");
        }
        loop {
            // Waiting for a slot before accepting leaves excess clients in the
            // kernel's backlog instead of accepting and dropping them.
            let slot = match &self.slots {
                Some(slots) => tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.ok(),
                    _ = stopping(&mut self.stop) => return,
                },
                None => None,
            };
            let (stream, client) = tokio::select! {
                accepted = self.listener.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopping(&mut self.stop) => return,
            };
            let downstream = Downstream { client, port, tls };
            let connection = Connection {
                tls: self.listener.tls.clone(),
                http: self.http.clone(),
                proxy: self.listener.proxy.clone(),
                metrics: self.metrics.clone(),
                handshake_timeout: self.handshake_timeout,
                stop: self.stop.clone(),
            };
            let open = self.open.clone();
            tokio::spawn(async move {
                connection.run(stream, downstream).await;
                drop((slot, open));
            });
        }
    }
}

/// What one connection task needs.
struct Connection {
    tls: Option<TlsAcceptor>,
    http: Arc<conn::Http>,
    proxy: Arc<Proxy>,
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
            Some(acceptor) => {
                // Boxed: the task outlives the handshake and need not keep
                // room for it.
                let handshake = Box::pin(acceptor.accept(ReadAhead::new(stream)));
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
