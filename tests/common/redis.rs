//! Real Redis for the tests: one `redis-server`, or a Redis Cluster of
//! several, each on free loopback ports in its own temp dir, killed when
//! dropped. Nothing is persisted, so a restarted server comes back empty.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SKIP: &str = "PORTCULLIS_SKIP_REDIS_TESTS";
/// How often a failed start (a port taken meanwhile) is tried on other ports.
const START_ATTEMPTS: usize = 5;
/// How long a new cluster may take to agree on its slots.
const CLUSTER_READY: Duration = Duration::from_secs(30);

/// A `redis-server` on a free loopback port, killed when dropped.
pub struct RedisServer {
    /// `None` between [`stop`](Self::stop) and [`restart`](Self::restart).
    child: Option<Child>,
    pub port: u16,
    /// Its working directory; nothing is saved there, but nothing leaks into ours either.
    dir: TempDir,
    /// Arguments beyond port, address and persistence, given again on restart.
    args: Vec<String>,
}

impl RedisServer {
    /// A fresh, empty server. `None` (after saying so, loudly) only when
    /// `redis-server` is missing and `PORTCULLIS_SKIP_REDIS_TESTS=1`; missing
    /// without that is a failure, not a pass.
    pub fn start() -> Option<Self> {
        if !installed("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_server(port, dir.path(), &[]) {
                Ok(child) => {
                    return Some(Self {
                        child: Some(child),
                        port,
                        dir,
                        args: Vec::new(),
                    });
                }
                Err(last) => log = last,
            }
        }
        panic!("redis-server did not start on any of {START_ATTEMPTS} free ports:\n{log}");
    }

    /// A fresh server that also speaks TLS on a second port (returned) with
    /// the certificate and key in these PEM files; clients are not asked for
    /// certificates. `None` as for [`start`](Self::start).
    pub fn start_tls(certificate: &Path, key: &Path) -> Option<(Self, u16)> {
        if !installed("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut log = String::new();
        for _ in 0..START_ATTEMPTS {
            let (port, tls_port) = (free_port(), free_port());
            let args: Vec<String> = vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                certificate.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            match spawn_server(port, dir.path(), &args) {
                Ok(child) => {
                    let server = Self {
                        child: Some(child),
                        port,
                        dir,
                        args,
                    };
                    return Some((server, tls_port));
                }
                Err(last) => log = last,
            }
        }
        panic!("redis-server with TLS did not start on any of {START_ATTEMPTS} attempts:\n{log}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server: its port refuses connections until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a server that stops answering,
    /// its connections left open, as a stalled host does; then its return.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("the server is running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} redis-server");
    }

    /// Kills the server and starts a new, empty one on the same port: a Redis
    /// that comes back after a crash. A cluster node keeps its `nodes.conf`,
    /// so it comes back owning the same slots (but none of their keys).
    pub fn restart(&mut self) {
        self.stop();
        let child = spawn_server(self.port, self.dir.path(), &self.args)
            .unwrap_or_else(|log| panic!("redis-server did not restart on {}:\n{log}", self.port));
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of primaries only, every slot assigned, killed when dropped.
pub struct RedisCluster {
    /// One server per node, each with its own `nodes.conf`.
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `nodes` (at least 3, Redis's minimum) fresh primaries sharing the
    /// 16384 slots, ready (`cluster_state:ok` on every node). `None` as for
    /// [`RedisServer::start`].
    pub fn start(nodes: usize) -> Option<Self> {
        assert!(nodes >= 3, "a Redis Cluster needs at least 3 primaries");
        if !installed("redis-server") || !installed("redis-cli") {
            return None;
        }
        let nodes: Vec<RedisServer> = (0..nodes).map(|_| start_cluster_node()).collect();
        let cluster = Self { nodes };

        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// Node `i`, to stop or restart.
    pub fn node(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The creation returns before every node has heard of every slot's
    /// owner; each node says so itself in `CLUSTER INFO`.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + CLUSTER_READY;
        for node in &self.nodes {
            let client = redis::Client::open(node.url()).expect("a valid url");
            loop {
                let info: Option<String> = client
                    .get_connection()
                    .and_then(|mut conn| redis::cmd("CLUSTER").arg("INFO").query(&mut conn))
                    .ok();
                if info.is_some_and(|info| info.contains("cluster_state:ok")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster was not ok on {} within {CLUSTER_READY:?}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn start_cluster_node() -> RedisServer {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("nodes.conf");
    let mut log = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        // The bus port is chosen too: PORT + 10000 may be taken or past 65535.
        let bus = free_port();
        let cluster_args = vec![
            "--cluster-enabled".to_owned(),
            "yes".to_owned(),
            "--cluster-config-file".to_owned(),
            config.display().to_string(),
            "--cluster-port".to_owned(),
            bus.to_string(),
        ];
        match spawn_server(port, dir.path(), &cluster_args) {
            Ok(child) => {
                return RedisServer {
                    child: Some(child),
                    port,
                    dir,
                    args: cluster_args,
                };
            }
            Err(last) => log = last,
        }
        let _ = std::fs::remove_file(&config);
    }
    panic!("a cluster node did not start on any of {START_ATTEMPTS} free ports:\n{log}");
}

/// Whether `program` can run: panics when it is missing, unless the tests
/// that need it are explicitly skipped.
fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match found {
        Ok(_) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var(SKIP).is_ok_and(|value| value == "1") {
                eprintln!(
                    "\n*** SKIPPED ({SKIP}=1): {program} is missing, so the Redis session \
                     store is NOT tested ***\n"
                );
                false
            } else {
                panic!(
                    "{program} is not on PATH: scripts/deps installs it \
                     (apt-get install redis-server), or set {SKIP}=1 to skip the Redis tests"
                )
            }
        }
        Err(err) => panic!("running {program}: {err}"),
    }
}

/// A port the OS just handed out and took back; another process may still
/// take it first, which [`spawn_server`] reports.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts `redis-server` on `port` and returns once it accepts connections,
/// or its log when it exited first (say, the port was taken).
fn spawn_server(port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("starting redis-server: {err}"));
    // Wait for the event, not for a while: redis-server says when it listens.
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut log = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Ready to accept connections") => break,
            Some(Ok(line)) => {
                log.push_str(&line);
                log.push('\n');
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(log);
            }
        }
    }
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(child)
}
