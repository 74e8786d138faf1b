//! Serving one downstream connection: HTTP/1.1 or HTTP/2 (with upgrades),
//! closed gracefully on shutdown or after `limits.idle_timeout` without a byte
//! moving.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::config::Limits;
use crate::proxy::{Downstream, Proxy};
use crate::server::stopping;

/// The HTTP/1.1 + HTTP/2 server settings every public connection shares.
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's read buffer bounds the request head; 8 KiB is its floor.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

pub async fn serve<IO>(
    io: IO,
    builder: Arc<auto::Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
    downstream: Downstream,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request, downstream).await) }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);

    let mut idle_checks = tokio::time::interval(idle_timeout / IDLE_CHECKS);
    // After a stall, checks that were due must not run back to back: each
    // counts as a quarter of the timeout.
    idle_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet_checks = 0;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, client = %downstream.client, "connection ended with an error");
                }
                return;
            }
            _ = stopping(&mut stop) => break,
            _ = idle_checks.tick() => {
                quiet_checks = if activity.take() { 0 } else { quiet_checks + 1 };
                if quiet_checks >= IDLE_CHECKS {
                    break;
                }
            }
        }
    }
    // Lets an in-flight request finish, then closes (HTTP/2: GOAWAY).
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::debug!(%error, client = %downstream.client, "connection ended with an error");
    }
}

/// Checks per `idle_timeout`: a connection is closed after this many checks
/// in a row saw no byte move, between 1 and 1.25 idle timeouts after the last.
const IDLE_CHECKS: u32 = 4;

/// Whether bytes moved since the last idle check. A flag rather than a
/// timestamp: reads and writes then cost no clock call.
struct Activity {
    moved: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        // Accepting the connection counts as activity.
        Self {
            moved: AtomicBool::new(true),
        }
    }

    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Whether bytes moved since the last call.
    fn take(&self) -> bool {
        self.moved.swap(false, Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    /// An IO stream that records activity on every read and write.
    struct Tracked<IO> {
        #[pin]
        inner: IO,
        activity: Arc<Activity>,
    }
}

impl<IO: AsyncRead> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_read(cx, buf);
        if result.is_ready() {
            this.activity.touch();
        }
        result
    }
}

impl<IO: AsyncWrite> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        if result.is_ready() {
            this.activity.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        if result.is_ready() {
            this.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
