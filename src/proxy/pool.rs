//! Kept-alive HTTP/1.1 connections to upstreams, driven by the request that
//! holds one rather than by a task of their own.
//!
//! hyper-util's pooled client gives every connection its own task: the
//! response head and then each body chunk cross over to the request's task
//! through channels, with a task wake-up at each crossing. Here the request's
//! own task polls the connection, first until the response head arrives,
//! then from the response body as the server reads it ([`UpstreamBody`]):
//! 7–8 % fewer instructions per proxied request (callgrind;
//! docs/performance.md). A connection goes back to the pool once its response body
//! has been read to the end, and is otherwise closed.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;
use url::Url;

use crate::error::ProxyError;

/// How long an unused connection is kept (hyper-util's default, which the
/// proxy used before this pool).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per target at most; one more is closed instead.
const MAX_IDLE_PER_TARGET: usize = 1024;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Idle connections for every target the proxy has forwarded to.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// Made on a target's first request, kept for the pool's life; the
    /// first one starts the expiry sweep. Looked up on every request, so
    /// hashed with foldhash (SipHash took ~260 instructions).
    targets: Mutex<HashMap<Url, Arc<Idle>, foldhash::fast::RandomState>>,
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Arc<Self> {
        Arc::new(Self {
            connector,
            targets: Mutex::default(),
        })
    }

    /// Sends the request on an idle connection to `target`, or a new one, and
    /// returns the response head once it arrives, or a timeout error if that
    /// takes longer than `timeout`. The request's URI must be in origin form
    /// (`/path?query`): it is written as it is.
    pub async fn send(
        self: &Arc<Self>,
        target: &Url,
        mut request: Request<Incoming>,
        timeout: Duration,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let deadline = Instant::now() + timeout;
        let idle = self.idle(target);
        loop {
            let (connection, pooled) = match idle.pop() {
                Some(mut connection) => {
                    // The upstream may have closed it while it sat in the pool.
                    if !poll_fn(|cx| Poll::Ready(connection.poll_open(cx))).await {
                        continue;
                    }
                    // Still set to the deadline of its previous request.
                    connection.deadline.as_mut().reset(deadline);
                    (connection, true)
                }
                // Boxed: a handshake's future is large and rare, and would
                // otherwise be part of every request's future.
                None => {
                    let connecting = Box::pin(self.connect(target, deadline));
                    let connected = tokio::time::timeout_at(deadline, connecting).await;
                    (
                        connected.map_err(|_elapsed| ProxyError::UpstreamTimeout(timeout))??,
                        false,
                    )
                }
            };
            match connection.exchange(request).await {
                Exchange::Answered(response, connection) => {
                    return Ok(UpstreamBody::wrap(response, connection, idle));
                }
                // A pooled connection closed before a byte of the request was
                // written: safe to send again, on another connection.
                Exchange::Unsent(unsent, error) if pooled => {
                    tracing::debug!(%error, "a pooled upstream connection closed; trying another");
                    request = unsent;
                }
                Exchange::Unsent(_, error) | Exchange::Failed(error) => {
                    return Err(ProxyError::UpstreamProtocol(error));
                }
                Exchange::TimedOut => return Err(ProxyError::UpstreamTimeout(timeout)),
            }
        }
    }

    /// Sends an upgrade request (WebSocket) on a new connection, driven by a
    /// task of its own so that hyper can hand it over after a `101`. The
    /// connection is never pooled.
    pub async fn send_upgrade(
        &self,
        target: &Url,
        request: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        // Its exchange timer is not used: `forward` times the upgrade.
        let Connection {
            mut sender, driver, ..
        } = *Box::pin(self.connect(target, Instant::now())).await?;
        tokio::spawn(async move {
            if let Err(error) = driver.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(ProxyError::UpstreamProtocol)?;
        Ok(response.map(|incoming| UpstreamBody {
            incoming,
            held: None,
        }))
    }

    /// A new connection to `target`, its exchange timer set to `deadline`.
    async fn connect(
        &self,
        target: &Url,
        deadline: Instant,
    ) -> Result<Box<Connection>, ProxyError> {
        let uri: Uri = target
            .as_str()
            .parse()
            .map_err(|error: http::uri::InvalidUri| ProxyError::UpstreamConnect(error.into()))?;
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(ProxyError::UpstreamConnect)?;
        let io = connector
            .call(uri)
            .await
            .map_err(ProxyError::UpstreamConnect)?;
        let (sender, driver) = http1::handshake(io)
            .await
            .map_err(|error| ProxyError::UpstreamConnect(error.into()))?;
        // Boxed once here so that each request moves a pointer, not hyper's
        // and rustls' state (kilobytes), in and out of the pool.
        Ok(Box::new(Connection {
            sender,
            driver,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }))
    }

    /// The target's idle connections, made on first use.
    fn idle(self: &Arc<Self>, target: &Url) -> Arc<Idle> {
        let mut targets = lock(&self.targets);
        if let Some(idle) = targets.get(target) {
            return idle.clone();
        }
        if targets.is_empty() {
            tokio::spawn(expire(Arc::downgrade(self)));
        }
        let idle = Arc::new(Idle::default());
        targets.insert(target.clone(), idle.clone());
        idle
    }
}

/// Closes connections idle for longer than [`IDLE_TIMEOUT`], even when no
/// request comes to take them, until the pool is gone.
async fn expire(pool: Weak<Pool>) {
    let mut ticks = tokio::time::interval(IDLE_TIMEOUT / 3);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let targets: Vec<Arc<Idle>> = lock(&pool.targets).values().cloned().collect();
        for idle in targets {
            idle.expire();
        }
    }
}

/// One target's idle connections, the most recently used last. Generic only
/// so that the tests can park numbers.
struct Idle<C = Box<Connection>>(Mutex<Vec<Parked<C>>>);

struct Parked<C> {
    connection: C,
    /// tokio's clock, which the tests can move.
    since: Instant,
}

impl<C> Default for Idle<C> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<C> Idle<C> {
    /// The most recently used connection, if it has not been idle too long.
    fn pop(&self) -> Option<C> {
        let mut parked = lock(&self.0);
        let newest = parked.pop()?;
        if newest.since.elapsed() < IDLE_TIMEOUT {
            return Some(newest.connection);
        }
        // Every other one has been idle even longer.
        let stale = std::mem::take(&mut *parked);
        drop(parked);
        drop(stale);
        None
    }

    fn put(&self, connection: C) {
        let mut parked = lock(&self.0);
        if parked.len() < MAX_IDLE_PER_TARGET {
            parked.push(Parked {
                connection,
                since: Instant::now(),
            });
        }
    }

    fn expire(&self) {
        let mut parked = lock(&self.0);
        let fresh = parked.partition_point(|p| p.since.elapsed() >= IDLE_TIMEOUT);
        let stale: Vec<Parked<C>> = parked.drain(..fresh).collect();
        drop(parked);
        drop(stale);
    }
}

/// A panic elsewhere cannot leave a list of connections inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One HTTP/1.1 connection: the handle requests go in by, and hyper's
/// protocol state, which does nothing unless polled.
struct Connection {
    sender: http1::SendRequest<Incoming>,
    driver: http1::Connection<Io, Incoming>,
    /// When the exchange in progress times out. One timer for the
    /// connection's life: moving a registered tokio timer later is one
    /// atomic exchange, where a timer per request goes into and out of
    /// tokio's timer wheel under its lock (390 instructions more per request,
    /// callgrind). Left running while the connection is idle; it wakes the
    /// last task that used the connection at most once per timeout, for
    /// nothing.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

enum Exchange {
    /// The response head, and the connection unless hyper is done with it.
    Answered(Response<Incoming>, Option<Box<Connection>>),
    /// The connection closed before any of the request was written.
    Unsent(Request<Incoming>, hyper::Error),
    Failed(hyper::Error),
    /// No response head by the deadline; the connection is dropped.
    TimedOut,
}

impl Connection {
    /// Lets hyper read and write. Ready when hyper is done with the
    /// connection: the upstream closed it, said `Connection: close`, or broke
    /// the protocol.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.driver.poll_without_shutdown(cx).map(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        })
    }

    /// Whether the connection is still open and hyper waits for a request on it.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> bool {
        self.poll_drive(cx).is_pending() && self.sender.is_ready()
    }

    /// Sends the request and drives the connection until the response head
    /// arrives or the connection's deadline passes.
    async fn exchange(mut self: Box<Self>, request: Request<Incoming>) -> Exchange {
        let mut answer = pin!(self.sender.try_send_request(request));
        let mut open = Some(self);
        let answer = poll_fn(|cx| {
            if let Some(connection) = &mut open
                && connection.poll_drive(cx).is_ready()
            {
                // Dropping hyper's state settles the request: it fails, or
                // comes back unsent. Either way `answer` is ready below.
                open = None;
            }
            let answered = answer.as_mut().poll(cx).map(Some);
            if answered.is_pending()
                && let Some(connection) = &mut open
                && connection.deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(None);
            }
            answered
        })
        .await;
        let Some(answer) = answer else {
            return Exchange::TimedOut;
        };
        match answer {
            Ok(response) => Exchange::Answered(response, open),
            Err(mut failed) => match failed.take_message() {
                Some(request) => Exchange::Unsent(request, failed.into_error()),
                None => Exchange::Failed(failed.into_error()),
            },
        }
    }
}

/// An upstream response body. Reading it drives the connection it arrives
/// on; read to the end, it puts that connection back in the pool.
pub struct UpstreamBody {
    incoming: Incoming,
    /// The connection this body arrives on, until it is back in the pool or
    /// closed. None for an upgrade's connection, which has its own task.
    held: Option<Held>,
}

struct Held {
    connection: Box<Connection>,
    /// Where the connection goes back once the body has been read.
    idle: Arc<Idle>,
}

impl UpstreamBody {
    fn wrap(
        response: Response<Incoming>,
        connection: Option<Box<Connection>>,
        idle: Arc<Idle>,
    ) -> Response<Self> {
        response.map(|incoming| Self {
            incoming,
            held: connection.map(|connection| Held { connection, idle }),
        })
    }

    /// Pools the connection if its exchange is over and hyper waits for the
    /// next request; closes it otherwise.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut held) = self.held.take()
            && (held.connection.sender.is_ready() || held.connection.poll_open(cx))
        {
            held.idle.put(held.connection);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if this.incoming.is_end_stream() {
                        this.release(cx);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    this.release(cx);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error))) => {
                    this.held = None;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Pending => {}
            }
            // Nothing has arrived yet: let hyper read from the upstream.
            let Some(held) = &mut this.held else {
                return Poll::Pending;
            };
            if held.connection.poll_drive(cx).is_pending() {
                return Poll::Pending;
            }
            // hyper is done with the connection, so the body has ended or
            // failed: the next turn of the loop sees which.
            this.held = None;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for UpstreamBody {
    /// hyper's server does not poll a body past a frame that ends it, nor an
    /// empty one at all, so the connection of a body read to its end is
    /// released here.
    fn drop(&mut self) {
        if self.incoming.is_end_stream() {
            self.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(idle: &Idle<u32>) -> Vec<u32> {
        lock(&idle.0).iter().map(|p| p.connection).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_idle_connection_is_taken_and_old_ones_expire() {
        let idle = Idle::<u32>::default();
        idle.put(1);
        tokio::time::advance(IDLE_TIMEOUT / 2).await;
        idle.put(2);
        assert_eq!(idle.pop(), Some(2), "the most recently used first");
        idle.put(2);

        tokio::time::advance(IDLE_TIMEOUT / 2 + Duration::from_secs(1)).await;
        idle.expire();
        assert_eq!(parked(&idle), [2], "1 has been idle too long, 2 not yet");

        tokio::time::advance(IDLE_TIMEOUT).await;
        assert_eq!(idle.pop(), None, "too old, though no sweep ran");
        assert!(parked(&idle).is_empty());
    }

    #[test]
    fn no_more_than_the_cap_is_kept() {
        let idle = Idle::<u32>::default();
        for n in 0..=MAX_IDLE_PER_TARGET as u32 {
            idle.put(n);
        }
        assert_eq!(parked(&idle).len(), MAX_IDLE_PER_TARGET);
    }
}
