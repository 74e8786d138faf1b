//! Reloading the configuration while serving: on request (SIGHUP) and, with
//! `watch_config: true`, when the contents of the file, or of a file it
//! names (secrets, the signing key), change.
//!
//! The file is read and validated whole first; only a configuration that
//! passes is built and swapped in (see `Running::apply`). A file that fails
//! changes nothing: each problem is logged as `check` prints it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Accepting, Builder, Running};
use crate::config::{self, Config, ConfigError, Environment};
use crate::error_chain;

/// How often a watched file is read to see whether it changed. A Kubernetes
/// ConfigMap update swaps a symlink rather than writing the file, so the
/// file is read through its path each time rather than watched for events.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Where reloads come from: a trigger (SIGHUP, or a test) and, when the
/// running configuration says `watch_config: true`, the file changing.
pub struct Reloads {
    file: Option<Arc<ConfigFile>>,
    sender: mpsc::Sender<()>,
    requests: mpsc::Receiver<()>,
}

/// The configuration file, as read for the last reload.
struct ConfigFile {
    path: PathBuf,
    env: Box<dyn Environment + Send + Sync>,
    /// What the last load read, valid or not: the watcher asks for a reload
    /// only when one of these files holds something else.
    last_read: Mutex<Contents>,
    /// The running configuration's `watch_config`.
    watching: AtomicBool,
    /// After a file that validated but could not be applied (a port in use,
    /// a TLS file not there yet, an IdP that did not answer): when the
    /// watcher tries it again, and the wait after that.
    retry: Mutex<Option<(Instant, Duration)>>,
}

/// The first wait before a watched file that could not be applied is tried
/// again; it doubles after each failure up to [`LONGEST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

impl Reloads {
    /// No reloads: a configuration built in code.
    pub fn none() -> Self {
        let (sender, requests) = mpsc::channel(1);
        Self {
            file: None,
            sender,
            requests,
        }
    }

    /// Reads and validates `path`, expanding `${…}` from `env`: the
    /// configuration to start with, and the reloads that read the same file.
    pub fn from_file(
        path: impl Into<PathBuf>,
        env: impl Environment + Send + Sync + 'static,
    ) -> Result<(Config, Self), ConfigError> {
        let file = ConfigFile {
            path: path.into(),
            env: Box::new(env),
            last_read: Mutex::default(),
            watching: AtomicBool::new(false),
            retry: Mutex::new(None),
        };
        // What the watcher compares later versions with.
        let config = file.read()?;
        let reloads = Self {
            file: Some(Arc::new(file)),
            ..Self::none()
        };
        Ok((config, reloads))
    }

    /// Each `()` sent asks for one reload; requests that arrive while one
    /// runs are merged into the next.
    pub fn trigger(&self) -> mpsc::Sender<()> {
        self.sender.clone()
    }

    /// Starts watching the file if `config` (the one being served, read from
    /// it) asks to.
    pub(super) fn start(&self, config: &Config) {
        let Some(file) = &self.file else { return };
        file.watching.store(config.watch_config, Ordering::Relaxed);
        let file = Arc::downgrade(file);
        let sender = self.sender.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(WATCH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(file) = file.upgrade() else { return };
                if !file.watching.load(Ordering::Relaxed) {
                    continue;
                }
                let why = if file.changed().await {
                    "the configuration changed: reloading"
                } else if file.retry_due() {
                    "trying the configuration that could not be applied again"
                } else {
                    continue;
                };
                tracing::info!(file = %file.path.display(), "{why}");
                // Full: a reload is already asked for.
                let _ = sender.try_send(());
            }
        });
    }

    /// The next request for a reload.
    pub(super) async fn requested(&mut self) -> Option<()> {
        self.requests.recv().await?;
        while self.requests.try_recv().is_ok() {}
        Some(())
    }

    /// Reads and validates the file, then applies it to `running`; counts
    /// the result in `portcullis_config_reloads_total`.
    pub(super) async fn reload(
        &self,
        running: &mut Running,
        accepting: &Accepting,
        builder: Builder<'_>,
    ) {
        let Some(file) = &self.file else { return };
        let metrics = builder.metrics.clone();
        let Some(config) = file.load_logging() else {
            metrics.config_reloaded("failure");
            // Trying these files again cannot help; the next edit will.
            file.settled();
            return;
        };
        for warning in config.warnings() {
            tracing::warn!(rule = %warning.rule, path = %warning.path, "{}", warning.message);
        }
        let fingerprint = config.fingerprint.clone();
        let watch = config.watch_config;
        match running.apply(config, accepting, builder).await {
            Ok(change) => {
                file.watching.store(watch, Ordering::Relaxed);
                file.settled();
                metrics.config_reloaded("success");
                tracing::info!(
                    config = %fingerprint,
                    listeners_kept = change.kept,
                    listeners_added = change.added,
                    listeners_removed = change.removed,
                    "configuration reloaded"
                );
            }
            Err(error) => {
                metrics.config_reloaded("failure");
                // Nothing in the files may change, yet the same files may
                // apply later: the watcher tries them again.
                file.not_applied();
                tracing::error!(
                    config = %fingerprint,
                    "configuration not reloaded, the running one is unchanged: {}",
                    error_chain(&error)
                );
            }
        }
    }
}

impl ConfigFile {
    /// Whether a file the last load read now holds something else.
    async fn changed(&self) -> bool {
        let last = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (path, digest) in &last.files {
            // As the load saw it: text that is not UTF-8 could not be read.
            let now = tokio::fs::read(path).await.map(|bytes| {
                std::str::from_utf8(&bytes)
                    .is_ok()
                    .then(|| Contents::digest(&bytes))
            });
            match (now, digest) {
                (Ok(now), last) if now == *last => {}
                (Ok(_), _) => return true,
                // Still missing.
                (Err(_), None) => {}
                // Mid-swap, or gone: the next look decides.
                (Err(_), Some(_)) => return false,
            }
        }
        false
    }

    /// Whether a configuration that could not be applied is due another try.
    fn retry_due(&self) -> bool {
        let retry = self.retry.lock().unwrap_or_else(PoisonError::into_inner);
        retry.is_some_and(|(at, _)| Instant::now() >= at)
    }

    /// The last reload could not be applied: try it again after a wait
    /// that grows with each failure.
    fn not_applied(&self) {
        let mut retry = self.retry.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = retry.map_or(FIRST_RETRY, |(_, wait)| (wait * 2).min(LONGEST_RETRY));
        *retry = Some((Instant::now() + wait, wait));
    }

    /// Nothing to try again: the files applied, or cannot.
    fn settled(&self) {
        *self.retry.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Reads and validates the file, noting every file read for the watcher.
    fn read(&self) -> Result<Config, ConfigError> {
        let reading = Reading {
            env: self.env.as_ref(),
            read: Mutex::default(),
        };
        let loaded = config::load_file(&self.path, &reading);
        *self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Contents {
            files: reading
                .read
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        };
        loaded
    }

    /// The file's configuration, or `None` after logging why it cannot be used.
    fn load_logging(&self) -> Option<Config> {
        let path = self.path.display();
        let loaded = self.read();
        match loaded {
            Ok(config) => Some(config),
            Err(ConfigError::Invalid(problems)) => {
                for problem in &problems {
                    tracing::error!(file = %path, "{problem}");
                }
                tracing::error!(
                    file = %path,
                    "configuration not reloaded, the running one is unchanged: {} problem(s)",
                    problems.len()
                );
                None
            }
            Err(error) => {
                tracing::error!(
                    file = %path,
                    "configuration not reloaded, the running one is unchanged: {}",
                    error_chain(&error)
                );
                None
            }
        }
    }
}

/// The files one load read, each with a digest of what it held (`None`:
/// it could not be read).
#[derive(Clone, Default)]
struct Contents {
    files: Vec<(PathBuf, Option<[u8; 32]>)>,
}

impl Contents {
    fn digest(bytes: &[u8]) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

/// An environment that notes every file read through it.
struct Reading<'a> {
    env: &'a (dyn Environment + Send + Sync),
    read: Mutex<Vec<(PathBuf, Option<[u8; 32]>)>>,
}

impl Environment for Reading<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.env.var(name)
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        let text = self.env.read_file(path);
        let digest = text
            .as_ref()
            .ok()
            .map(|text| Contents::digest(text.as_bytes()));
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((path.to_path_buf(), digest));
        text
    }
}
