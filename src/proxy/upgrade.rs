//! The downstream side of an HTTP/1.1 upgrade (WebSocket).
//!
//! The connection task serves HTTP/1.1 with hyper's lower-level API, which
//! gives the connection back instead of closing it (so quiet connections can
//! be parked, see `server::conn`). That API leaves upgrades to its caller: the
//! task puts an [`OnUpgrade`] in an upgrade request's extensions and, once
//! hyper has written the `101`, hands the connection over through it.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A byte stream both ways: a downstream connection after its `101`.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A downstream connection after `101 Switching Protocols`. Bytes the client
/// sent after its request head come first.
pub type Upgraded = Box<dyn Io>;

/// Found in an upgrade request's extensions; resolves once the `101` is
/// written, or fails if the connection ended first. Extensions must be
/// `Clone`; the first clone to wait takes the connection.
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// Kept by the connection task until the `101` is written.
pub struct PendingUpgrade(oneshot::Sender<Upgraded>);

#[derive(Debug, thiserror::Error)]
#[error("the downstream connection ended before the upgrade")]
pub struct UpgradeLost;

pub fn pending() -> (PendingUpgrade, OnUpgrade) {
    let (sender, receiver) = oneshot::channel();
    (
        PendingUpgrade(sender),
        OnUpgrade(Arc::new(Mutex::new(Some(receiver)))),
    )
}

impl PendingUpgrade {
    pub fn fulfill(self, connection: Upgraded) {
        // The request's handler may have given up on it; the connection then
        // just closes.
        let _ = self.0.send(connection);
    }
}

impl OnUpgrade {
    pub async fn upgraded(self) -> Result<Upgraded, UpgradeLost> {
        let receiver = self.0.lock().ok().and_then(|mut slot| slot.take());
        receiver.ok_or(UpgradeLost)?.await.map_err(|_| UpgradeLost)
    }
}
