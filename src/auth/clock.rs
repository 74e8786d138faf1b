//! The time login, sessions and refresh are judged by, passed in rather
//! than read from the wall clock where it is needed, so that expiry and
//! refresh are tested at any instant without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::oidc::tokens::unix_now;

/// Unix seconds: the system's, or one a test sets.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that shows `now` until [`set`](Self::set) or
    /// [`advance`](Self::advance) moves it.
    pub fn manual(now: u64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(now))),
        }
    }

    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Relaxed),
            None => unix_now(),
        }
    }

    /// Moves a manual clock to `now`; no effect on the system clock.
    pub fn set(&self, now: u64) {
        if let Some(manual) = &self.manual {
            manual.store(now, Ordering::Relaxed);
        }
    }

    /// Moves a manual clock forward by `seconds`.
    pub fn advance(&self, seconds: u64) {
        if let Some(manual) = &self.manual {
            manual.fetch_add(seconds, Ordering::Relaxed);
        }
    }
}
