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

use super::{Accepting, Builder, Running};
use crate::config::{self, Config, ConfigError, Environment, Format};
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
}

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

    /// Reloads read `path`, expanding `${…}` from `env`.
    pub fn from_file(
        path: impl Into<PathBuf>,
        env: impl Environment + Send + Sync + 'static,
    ) -> Self {
        Self {
            file: Some(Arc::new(ConfigFile {
                path: path.into(),
                env: Box::new(env),
                last_read: Mutex::default(),
                watching: AtomicBool::new(false),
            })),
            ..Self::none()
        }
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
        if config.watch_config {
            // What `config` was read from, as the watcher will compare it.
            drop(file.load());
        }
        let file = Arc::downgrade(file);
        let sender = self.sender.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(WATCH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(file) = file.upgrade() else { return };
                if file.watching.load(Ordering::Relaxed) && file.changed().await {
                    tracing::info!(file = %file.path.display(), "the configuration changed: reloading");
                    // Full: a reload is already asked for.
                    let _ = sender.try_send(());
                }
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
        let Some(config) = file.load() else {
            metrics.config_reloaded("failure");
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
            match (tokio::fs::read(path).await, digest) {
                (Ok(bytes), Some(digest)) if Contents::digest(&bytes) == *digest => {}
                // Readable now, or holding something else.
                (Ok(_), _) => return true,
                // Still missing.
                (Err(_), None) => {}
                // Mid-swap, or gone: the next look decides.
                (Err(_), Some(_)) => return false,
            }
        }
        false
    }

    /// The file's configuration, or `None` after logging why it cannot be used.
    fn load(&self) -> Option<Config> {
        let path = self.path.display();
        let reading = Reading {
            env: self.env.as_ref(),
            read: Mutex::default(),
        };
        let loaded = Format::from_path(&self.path)
            .ok_or_else(|| ConfigError::UnknownFormat {
                path: self.path.clone(),
            })
            .and_then(|format| {
                let text = reading
                    .read_file(&self.path)
                    .map_err(|source| ConfigError::Read {
                        path: self.path.clone(),
                        source,
                    })?;
                config::load_str(&text, format, &reading)
            });
        *self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Contents {
            files: reading
                .read
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        };
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
