//! Serving one downstream connection.
//!
//! HTTP/2 (ALPN `h2`, or the prior-knowledge preface on a plain listener) is
//! served by hyper until the connection ends. HTTP/1.1 is served by hyper
//! while requests come; once a keep-alive connection goes quiet between
//! requests it is *parked*: hyper's state, with its 16 KiB of buffers, is
//! dropped and the task waits for the socket to become readable, then serves
//! the next request with a new hyper connection. An idle connection then costs
//! its TLS session and its task, much as an idle keep-alive connection costs
//! nginx. Parking also keeps hyper's `header_read_timeout`, which hyper
//! applies to the wait between keep-alive requests as well, from closing an
//! idle connection long before `idle_timeout`.
//!
//! Every connection is closed after `limits.idle_timeout` without a byte
//! moving, and gracefully on shutdown.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::body::Body;
use crate::config::Limits;
use crate::proxy::forward::is_upgrade;
use crate::proxy::upgrade::{self, PendingUpgrade};
use crate::proxy::{Downstream, Proxy};
use crate::server::read_ahead::ReadAhead;
use crate::server::stopping;
use arc_swap::ArcSwap;

/// The HTTP settings every public connection shares.
pub struct Http {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How often a connection checks whether bytes moved.
    check_every: Duration,
    /// Quiet checks in a row after which a connection is closed.
    idle_checks: u32,
    idle_timeout: Duration,
    header_read_timeout: Duration,
}

/// Checks per period: a connection is closed between 1 and 1.25 idle
/// timeouts after its last byte, and parked before hyper's header timer
/// could fire.
const CHECKS_PER_PERIOD: u32 = 4;

/// The longest time between two checks, whatever the timeouts. A quiet
/// connection is parked within two checks, and until then holds hyper's
/// buffers: when thousands of keep-alive connections arrive at once, those
/// freed later are kept by the allocator between the connections' lasting
/// allocations. 10,000 idle TLS connections opened at once held 155–189 MB
/// (ten fresh processes) with checks every 2.5 s (the default timeouts'
/// quarter), 141–153 MB in four with checks every second.
const MAX_CHECK_EVERY: Duration = Duration::from_secs(1);

impl Http {
    /// Time allowed for a TLS handshake or a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    pub fn new(limits: &Limits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(CheckedTimer)
            .header_read_timeout(limits.header_read_timeout)
            // hyper's read buffer bounds the request head; 8 KiB is its floor.
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        // A quiet HTTP/1.1 connection is parked at the first check that saw
        // nothing move, under two check periods after its last byte: within
        // half of header_read_timeout, and within 2 s.
        let check_every = (limits.idle_timeout.min(limits.header_read_timeout) / CHECKS_PER_PERIOD)
            .min(MAX_CHECK_EVERY);
        let idle_checks = limits
            .idle_timeout
            .as_nanos()
            .div_ceil(check_every.as_nanos().max(1))
            .try_into()
            .unwrap_or(u32::MAX);
        Self {
            http1,
            http2,
            check_every,
            idle_checks,
            idle_timeout: limits.idle_timeout,
            header_read_timeout: limits.header_read_timeout,
        }
    }
}

/// hyper's HTTP/1.1 header timer, read when hyper polls it rather than
/// registered with tokio's timer.
///
/// hyper starts a timer for every request head it waits for, and stops it
/// once the head is read. With tokio's timer that is a boxed `Sleep` put into
/// and taken out of the timer wheel under its lock, for every request: 810
/// instructions per authenticated request (callgrind), for a timer that
/// fires only against a stalled client.
///
/// A [`Deadline`] is a clock reading compared when polled; it arranges no
/// wake-up of its own. The connection's checks do: they wake the task every
/// `check_every` for as long as hyper serves the connection, closing or not
/// (see [`serve_until_quiet`]), and every wake polls hyper's connection
/// first. So a stalled head is cut off between `header_read_timeout` and
/// `header_read_timeout + check_every` after it started: at most 1.25 times
/// the timeout, and at most a second late.
#[derive(Clone, Copy)]
struct CheckedTimer;

impl hyper::rt::Timer for CheckedTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut deadline) => deadline.0 = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// Ready once the clock has passed it, as seen at a poll.
struct Deadline(std::time::Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if std::time::Instant::now() >= self.0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

/// How a connection's HTTP version is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// A plain listener: HTTP/2 if the client opens with the HTTP/2
    /// connection preface (prior knowledge, h2c), otherwise HTTP/1.1.
    Detect,
}

/// A downstream byte stream the connection task can wait on without reading.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once bytes (or the end of the stream) can be read.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Socket for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl<S: Socket + ?Sized> Socket for Box<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

impl Socket for tokio_rustls::server::TlsStream<ReadAhead> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper read until rustls had no plaintext left and the transport had no
        // bytes, so new records can only be in the transport.
        self.get_ref().0.poll_read_ready(cx)
    }
}

pub async fn serve<IO: Socket>(
    io: IO,
    protocol: Protocol,
    http: Arc<Http>,
    proxy: Arc<ArcSwap<Proxy>>,
    downstream: Downstream,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared::new());
    let mut io = Tracked {
        inner: io,
        shared: shared.clone(),
        replay: Bytes::new(),
    };
    let protocol = match protocol {
        Protocol::Detect => {
            match tokio::time::timeout(http.header_read_timeout, detect(&mut io)).await {
                Ok(Ok(protocol)) => protocol,
                Ok(Err(error)) => {
                    ended_with(&error, downstream.client);
                    return;
                }
                Err(_elapsed) => return,
            }
        }
        known => known,
    };
    let requests = Requests {
        proxy,
        downstream,
        shared,
        // HTTP/2 watches for heads (`HeadDeadline`): a response still
        // streaming is a request in flight there.
        until_body_ends: protocol == Protocol::Http2,
    };
    match protocol {
        // Boxed, so a parked HTTP/1.1 connection's task has no room reserved
        // for hyper's HTTP/2 state.
        Protocol::Http2 => Box::pin(serve_http2(io, requests, &http, &mut stop)).await,
        _ => serve_http1(io, requests, &http, &mut stop).await,
    }
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes are, or cannot be, the HTTP/2 preface, and
/// keeps them for the server to read again.
async fn detect<IO: Socket>(io: &mut Tracked<IO>) -> io::Result<Protocol> {
    let mut start = BytesMut::with_capacity(H2_PREFACE.len());
    while start.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&start) {
        if io.read_buf(&mut start).await? == 0 {
            break;
        }
    }
    let protocol = if start[..] == H2_PREFACE[..] {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    io.replay = start.freeze();
    Ok(protocol)
}

async fn serve_http2<IO: Socket>(
    io: Tracked<IO>,
    requests: Requests,
    http: &Http,
    stop: &mut watch::Receiver<bool>,
) {
    let shared = requests.shared.clone();
    let client = requests.downstream.client;
    let connection = http.http2.serve_connection(TokioIo::new(io), requests);
    tokio::pin!(connection);
    let mut checks = Checks::new(http);
    let mut heads = HeadDeadline::new(http.header_read_timeout);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    ended_with(&error, client);
                }
                return;
            }
            _ = stopping(stop) => break,
            quiet = checks.next(&shared) => {
                if quiet == Quiet::TimedOut {
                    break;
                }
                if heads.expired(&shared, quiet, Instant::now()) {
                    tracing::debug!(%client, "HTTP/2 connection sent no complete request in time");
                    // No stream is open: the GOAWAY ends it, and a client
                    // that never acknowledges the shutdown's PING does not
                    // get to hold it open either.
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(http.header_read_timeout, connection).await;
                    return;
                }
            }
        }
    }
    // Lets in-flight streams finish after a GOAWAY.
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        ended_with(&error, client);
    }
}

async fn serve_http1<IO: Socket>(
    mut io: Tracked<IO>,
    requests: Requests,
    http: &Http,
    stop: &mut watch::Receiver<bool>,
) {
    loop {
        // Boxed: hyper's state and the serving machinery exist only while
        // the connection is served, not while it is parked.
        let quiet_for = match Box::pin(serve_until_quiet(io, &requests, http, stop)).await {
            Served::Ended => return,
            Served::Parked {
                io: parked,
                quiet_for,
            } => {
                io = parked;
                quiet_for
            }
        };
        if !io.replay.is_empty() {
            // Part of the next request head: a new hyper connection reads it
            // at once, within its own header_read_timeout.
            continue;
        }
        let deadline = Instant::now() + http.idle_timeout.saturating_sub(quiet_for);
        tokio::select! {
            ready = poll_fn(|cx| io.inner.poll_read_ready(cx)) => match ready {
                Ok(()) => continue,
                Err(error) => {
                    ended_with(&error, requests.downstream.client);
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stopping(stop) => {}
        }
        close(io, http).await;
        return;
    }
}

enum Served<IO> {
    /// Closed, failed, or handed over after an upgrade.
    Ended,
    /// Quiet between requests: hyper is gone, the connection is open, and
    /// `io.replay` holds what hyper had read of a next request head.
    Parked {
        io: Tracked<IO>,
        quiet_for: Duration,
    },
}

/// Serves requests with one hyper connection until the client goes quiet
/// between requests, the connection ends, or the server stops.
async fn serve_until_quiet<IO: Socket>(
    io: Tracked<IO>,
    requests: &Requests,
    http: &Http,
    stop: &mut watch::Receiver<bool>,
) -> Served<IO> {
    let shared = &requests.shared;
    // Parked only once this hyper connection has read a request: before
    // that, hyper is waiting for a head (a new connection, or one parked
    // mid-head) and its header_read_timeout must run on.
    let requests_before = shared.started.load(Ordering::Relaxed);
    let client = requests.downstream.client;
    let mut connection = http
        .http1
        .serve_connection(TokioIo::new(io), requests.clone());
    let mut checks = Checks::new(http);
    // Keep-alive is off: hyper finishes the exchange in progress, then the
    // connection closes.
    let mut closing = false;
    let mut parking = false;
    let result = loop {
        tokio::select! {
            // The connection first: it is what wakes the task for each request.
            biased;
            result = poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
            _ = gated(stopping(stop)), if !closing => {
                Pin::new(&mut connection).graceful_shutdown();
                closing = true;
            }
            // Polled while closing too: its wake-ups are what hyper's header
            // timer is read at (`CheckedTimer`).
            quiet = gated(checks.next(shared)) => match quiet {
                _ if closing => {}
                Quiet::No => {}
                Quiet::TimedOut => {
                    Pin::new(&mut connection).graceful_shutdown();
                    closing = true;
                }
                Quiet::Yes if shared.may_park(requests_before) => {
                    // hyper closes an idle connection at once and hands it
                    // back. One it turns out to be busy with (a request head
                    // or body arriving, a response being written) finishes
                    // that exchange and is closed, never reused: its read
                    // buffer may hold part of a body.
                    Pin::new(&mut connection).graceful_shutdown();
                    match poll_fn(|cx| Poll::Ready(connection.poll_without_shutdown(cx))).await {
                        Poll::Ready(result) => {
                            parking = true;
                            break result;
                        }
                        Poll::Pending => closing = true,
                    }
                }
                Quiet::Yes => {}
            },
        }
    };
    if let Err(error) = &result {
        ended_with(&error, client);
    }
    let upgrade = shared
        .upgrade
        .lock()
        .map(|mut slot| slot.take())
        .ok()
        .flatten();
    let parts = connection.into_parts();
    let mut io = parts.io.into_inner();
    io.replay_first(parts.read_buf);
    match (result, upgrade, parking) {
        (Ok(()), Some(upgrade), _) => {
            upgrade.fulfill(Box::new(io));
            Served::Ended
        }
        (Ok(()), None, true) => Served::Parked {
            io,
            quiet_for: checks.quiet_for(),
        },
        _ => {
            close(io, http).await;
            Served::Ended
        }
    }
}

/// At debug level: clients hang up mid-exchange all the time.
fn ended_with(error: &dyn std::fmt::Display, client: std::net::SocketAddr) {
    tracing::debug!(%error, %client, "connection ended with an error");
}

/// Closes the connection as hyper would: TLS close_notify, then FIN.
async fn close<IO: Socket>(mut io: Tracked<IO>, http: &Http) {
    let _ = tokio::time::timeout(http.header_read_timeout, io.shutdown()).await;
}

/// What a check of a connection saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Bytes moved since the last check.
    No,
    /// Nothing moved since the last check.
    Yes,
    /// Nothing moved for `idle_timeout`.
    TimedOut,
}

/// `future`, polled only after its own waker fired. A connection's task
/// wakes several times per request (client socket, upstream), and `select!`
/// would poll the stop signal and the idle checks at each wake: about 1.4k
/// instructions per request for futures that change every few seconds.
struct Gated<F: Future> {
    future: Pin<Box<F>>,
    gate: Arc<Gate>,
}

struct Gate {
    /// Set by `future`'s waker (and at first, so it registers one); cleared
    /// when `future` is polled.
    woken: AtomicBool,
    /// The connection's task, woken with the flag.
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

fn gated<F: Future>(future: F) -> Gated<F> {
    Gated {
        future: Box::pin(future),
        gate: Arc::new(Gate {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }),
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake in between is not lost.
        this.gate.task.register(cx.waker());
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(&this.gate));
        this.future.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// Periodic checks of whether bytes moved: a flag rather than a timestamp, so
/// reads and writes cost no clock call.
struct Checks {
    ticks: Interval,
    every: Duration,
    /// Checks in a row that saw nothing move; reset by any byte.
    quiet: u32,
    idle_checks: u32,
}

impl Checks {
    fn new(http: &Http) -> Self {
        let mut ticks =
            tokio::time::interval_at(Instant::now() + http.check_every, http.check_every);
        // After a stall, checks that were due must not run back to back: each
        // counts as one period of quiet.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            ticks,
            every: http.check_every,
            quiet: 0,
            idle_checks: http.idle_checks,
        }
    }

    async fn next(&mut self, shared: &Shared) -> Quiet {
        self.ticks.tick().await;
        if shared.moved.swap(false, Ordering::Relaxed) {
            self.quiet = 0;
            Quiet::No
        } else {
            self.quiet += 1;
            if self.quiet >= self.idle_checks {
                Quiet::TimedOut
            } else {
                Quiet::Yes
            }
        }
    }

    /// How long nothing has moved, at least.
    fn quiet_for(&self) -> Duration {
        self.every * self.quiet
    }
}

/// HTTP/2's counterpart of hyper's HTTP/1.1 `header_read_timeout`, which
/// hyper's HTTP/2 server lacks. hyper hands over a request only once its
/// whole head has arrived, so a client that keeps bytes moving (a head
/// trickled one CONTINUATION frame at a time, or PINGs) and never completes
/// a request would hold the connection forever: idleness counts bytes, not
/// requests. So while no request is in flight, the first bytes that move
/// start a clock, and if no request has started `header_read_timeout` later
/// the connection is closed with a GOAWAY. A connection that is quiet is
/// left to `idle_timeout`.
struct HeadDeadline {
    timeout: Duration,
    /// When bytes first moved with no request in flight and none started since.
    waiting_since: Option<Instant>,
    /// Requests started as of the last check.
    started: u64,
}

impl HeadDeadline {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            waiting_since: None,
            started: 0,
        }
    }

    /// Called at every check; true when the connection must close.
    fn expired(&mut self, shared: &Shared, quiet: Quiet, now: Instant) -> bool {
        let started = shared.started.load(Ordering::Relaxed);
        let in_flight = started != shared.answered.load(Ordering::Relaxed);
        let new_request = std::mem::replace(&mut self.started, started) != started;
        if in_flight || new_request {
            self.waiting_since = None;
            return false;
        }
        if quiet == Quiet::No && self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        self.waiting_since
            .is_some_and(|since| now.duration_since(since) >= self.timeout)
    }
}

/// What the connection task and its requests share.
struct Shared {
    /// Whether bytes moved since the last check.
    moved: AtomicBool,
    /// Requests handed to the proxy, and those it has answered.
    started: AtomicU64,
    answered: AtomicU64,
    /// An upgrade whose `101` hyper is writing.
    upgrade: Mutex<Option<PendingUpgrade>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            // Accepting the connection counts as activity.
            moved: AtomicBool::new(true),
            started: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            upgrade: Mutex::new(None),
        }
    }

    /// A request has started since `requests_before` were, and every
    /// request has been answered.
    fn may_park(&self, requests_before: u64) -> bool {
        let started = self.started.load(Ordering::Relaxed);
        started > requests_before && started == self.answered.load(Ordering::Relaxed)
    }
}

/// Counts a request as answered when it is dropped: when its handler
/// finishes, or, moved into the response body, when the body has been sent
/// or abandoned.
struct Answering(Arc<Shared>);

impl Answering {
    fn start(shared: &Arc<Shared>) -> Self {
        shared.started.fetch_add(1, Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until
    /// hyper drops it.
    struct AnsweredWithBody {
        #[pin]
        body: Body,
        _answering: Answering,
    }
}

impl http_body::Body for AnsweredWithBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The hyper service of one connection.
#[derive(Clone)]
struct Requests {
    /// The listener's routes: each request takes the current ones, and
    /// finishes on them whatever a reload does meanwhile.
    proxy: Arc<ArcSwap<Proxy>>,
    downstream: Downstream,
    shared: Arc<Shared>,
    /// Whether a request counts as answered only once its response body
    /// ends (HTTP/2), rather than once its head is ready (HTTP/1.1, where
    /// hyper itself knows when the body is done before it parks).
    until_body_ends: bool,
}

impl hyper::service::Service<Request<Incoming>> for Requests {
    type Response = Response<Body>;
    type Error = Infallible;
    // Boxed: hyper's HTTP/1 API that hands connections back wants an `Unpin`
    // future.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let Self {
            proxy,
            downstream,
            shared,
            until_body_ends,
        } = self.clone();
        Box::pin(async move {
            let answering = Answering::start(&shared);
            let upgrade = is_upgrade(&request).then(|| {
                let (pending, on_upgrade) = upgrade::pending();
                request.extensions_mut().insert(on_upgrade);
                pending
            });
            let response = proxy.load_full().handle(request, downstream).await;
            if let Some(pending) = upgrade
                && response.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Ok(mut slot) = shared.upgrade.lock()
            {
                *slot = Some(pending);
            }
            if until_body_ends {
                return Ok(response.map(|body| {
                    crate::body::stream(AnsweredWithBody {
                        body,
                        _answering: answering,
                    })
                }));
            }
            drop(answering);
            Ok(response)
        })
    }
}

/// A downstream stream that records activity on every read and write, and
/// first replays bytes read ahead (the HTTP/2 preface check, or what hyper
/// had read when it was parked or upgraded).
struct Tracked<IO> {
    inner: IO,
    shared: Arc<Shared>,
    /// Bytes already read from `inner`, served to the next reader first.
    replay: Bytes,
}

impl<IO> Tracked<IO> {
    /// Puts `bytes`, read from this stream, back in front of it.
    fn replay_first(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            // Dropped, not kept: an empty view still holds hyper's whole
            // read buffer.
        } else if self.replay.is_empty() {
            self.replay = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.replay.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.replay);
            self.replay = joined.freeze();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let take = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..take]);
            this.replay.advance(take);
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if result.is_ready() {
            this.shared.moved.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if result.is_ready() {
            this.shared.moved.store(true, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if result.is_ready() {
            this.shared.moved.store(true, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `fire` was notified.
    async fn counted(polls: &AtomicUsize, fire: &tokio::sync::Notify) {
        let mut notified = std::pin::pin!(fire.notified());
        poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            notified.as_mut().poll(cx)
        })
        .await
    }

    #[test]
    fn the_checked_timer_is_ready_once_its_deadline_has_passed() {
        use hyper::rt::Timer;
        let mut cx = Context::from_waker(Waker::noop());
        let now = std::time::Instant::now();
        let mut later = CheckedTimer.sleep_until(now + Duration::from_secs(60));
        assert!(later.as_mut().poll(&mut cx).is_pending());
        assert!(
            CheckedTimer
                .sleep_until(now)
                .as_mut()
                .poll(&mut cx)
                .is_ready()
        );
        // hyper moves a timer it keeps with `reset`.
        CheckedTimer.reset(&mut later, now);
        assert!(later.as_mut().poll(&mut cx).is_ready());
        CheckedTimer.reset(&mut later, now + Duration::from_secs(60));
        assert!(later.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn an_http2_connection_must_complete_a_request_after_bytes_move() {
        let shared = Arc::new(Shared::new());
        let timeout = Duration::from_secs(10);
        let mut heads = HeadDeadline::new(timeout);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        // Bytes keep moving and no request ever starts: closed after the timeout.
        assert!(!heads.expired(&shared, Quiet::No, at(0)));
        assert!(!heads.expired(&shared, Quiet::No, at(5)));
        assert!(!heads.expired(&shared, Quiet::Yes, at(9)));
        assert!(heads.expired(&shared, Quiet::No, at(10)));

        // A request that starts resets the clock; one in flight holds it.
        let mut heads = HeadDeadline::new(timeout);
        assert!(!heads.expired(&shared, Quiet::No, at(0)));
        let answering = Answering::start(&shared);
        assert!(!heads.expired(&shared, Quiet::No, at(9)));
        assert!(!heads.expired(&shared, Quiet::No, at(30)));
        drop(answering);
        // Answered: the clock starts with the next bytes that move.
        assert!(!heads.expired(&shared, Quiet::Yes, at(31)));
        assert!(!heads.expired(&shared, Quiet::No, at(32)));
        assert!(!heads.expired(&shared, Quiet::No, at(41)));
        assert!(heads.expired(&shared, Quiet::No, at(42)));

        // A quiet connection is idle_timeout's business, not this one's.
        let mut heads = HeadDeadline::new(timeout);
        let fresh = Shared::new();
        for second in [0, 20, 40] {
            assert!(!heads.expired(&fresh, Quiet::Yes, at(second)));
        }
    }

    #[test]
    fn checks_come_every_quarter_of_the_shorter_timeout_and_at_least_once_a_second() {
        let with = |header_read: u64, idle: u64| {
            let http = Http::new(&Limits {
                header_read_timeout: Duration::from_millis(header_read),
                idle_timeout: Duration::from_millis(idle),
                ..Limits::default()
            });
            (http.check_every, http.idle_checks)
        };
        // The defaults (10 s, 60 s): a quarter would be 2.5 s.
        assert_eq!(with(10_000, 60_000), (Duration::from_secs(1), 60));
        assert_eq!(with(1_000, 60_000), (Duration::from_millis(250), 240));
        assert_eq!(with(10_000, 2_000), (Duration::from_millis(500), 4));
        assert_eq!(with(4_000, 4_000), (Duration::from_secs(1), 4));
    }

    #[tokio::test]
    async fn a_gated_future_is_polled_only_when_its_own_waker_fired() {
        let polls = AtomicUsize::new(0);
        let fire = tokio::sync::Notify::new();
        let mut gated = std::pin::pin!(gated(counted(&polls, &fire)));
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);

        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to register");
        for _ in 0..5 {
            // The task woke for something else.
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "not polled for others' wakes"
        );

        fire.notify_one();
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gated_future_wakes_the_task_that_polled_it() {
        let polls = AtomicUsize::new(0);
        let fire = Arc::new(tokio::sync::Notify::new());
        let notifier = fire.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            notifier.notify_one();
        });
        // The paused clock jumps to the next timer whenever every task waits,
        // so a lost wake-up shows as the 5 s one firing first.
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_secs(5)) => panic!("the task was not woken"),
            _ = gated(counted(&polls, &fire)) => {}
        }
    }
}
