//! A real OpenID provider for end-to-end tests: node-oidc-provider run by
//! `tests/oidc/provider.mjs` (see tests/oidc/README.md for the config schema).
//!
//! Needs `node` (20+) on PATH (or in `$NODE`) and `npm ci --prefix tests/oidc`.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the provider may take to print its issuer line. It normally
/// takes well under a second, but twice so far (CI runs of 2026-11-22 and
/// 2026-12-02) one printed nothing within 90 s, only oidc-provider's runtime
/// warning on stderr, while the providers of the tests beside it started. A
/// stuck start is killed and tried again, with what /proc said about it in
/// the log.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;

pub struct NodeIdp {
    /// `http://127.0.0.1:PORT` (the host is `issuerHost` when configured),
    /// exactly as in the discovery document.
    pub issuer: String,
    child: Child,
    log: Arc<Mutex<String>>,
    _config: tempfile::NamedTempFile,
}

/// `tests/oidc` of this crate.
pub fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("oidc")
}

impl NodeIdp {
    /// Starts the provider with `config` (see tests/oidc/README.md) on a free
    /// loopback port and waits until it listens. Panics with its log when it
    /// does not start.
    pub async fn start(config: serde_json::Value) -> NodeIdp {
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            match Self::spawn(&config).await {
                Ok(idp) => return idp,
                Err(failure) => {
                    eprintln!("OpenID provider start, attempt {attempt}: {failure}");
                    failures.push(failure);
                }
            }
        }
        panic!(
            "the OpenID provider did not start in {START_ATTEMPTS} attempts.\n\
             If node_modules is missing or stale: npm ci --prefix tests/oidc\n{}",
            failures.join("\n")
        );
    }

    async fn spawn(config: &serde_json::Value) -> Result<NodeIdp, String> {
        let dir = oidc_dir();
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            panic!(
                "{} has no node_modules/oidc-provider: run `npm ci --prefix tests/oidc` first",
                dir.display()
            );
        }
        let mut file = tempfile::Builder::new()
            .prefix("oidc-config-")
            .suffix(".json")
            .tempfile()
            .expect("a temp file for the provider config");
        file.write_all(config.to_string().as_bytes()).unwrap();
        file.flush().unwrap();

        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_string());
        let mut child = Command::new(&node)
            .arg(dir.join("provider.mjs"))
            .arg(file.path())
            .current_dir(&dir)
            .env_remove("NODE_ENV")
            .env("NODE_NO_WARNINGS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run `{node}` (node 20+ must be on PATH, or set $NODE): {error}")
            });

        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let stderr_log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = stderr_log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });

        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => {
                let status = child.try_wait().ok().flatten();
                let proc_state = child.id().map(proc_state).unwrap_or_default();
                let _ = child.start_kill();
                // Let the stderr reader catch up with a dying process.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return Err(format!(
                    "{} (exit status {status:?}{proc_state})\n--- provider log ---\n{}",
                    match other {
                        Err(_) => format!("no issuer line within {START_TIMEOUT:?}"),
                        Ok(Err(error)) => format!("reading its stdout: {error}"),
                        _ => "it closed stdout".to_string(),
                    },
                    log.lock().unwrap()
                ));
            }
        };
        // Keep draining stdout so that the provider never writes to a closed pipe.
        let stdout_log = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = stdout_log.lock().unwrap();
                log.push_str("[stdout] ");
                log.push_str(&line);
                log.push('\n');
            }
        });

        let parsed: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("bad issuer line {line:?}: {error}"));
        let issuer = parsed["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("no issuer in {line:?}"))
            .to_string();
        Ok(NodeIdp {
            issuer,
            child,
            log,
            _config: file,
        })
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// `{issuer}/.well-known/openid-configuration`, the discovery URL.
    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    /// The discovery document.
    pub async fn discovery(&self) -> serde_json::Value {
        self.get_json("/.well-known/openid-configuration").await
    }

    /// `GET /__test/stats`: `{"grants": {"authorization_code": N,
    /// "refresh_token": M}, "grant_errors", "userinfo", "userinfo_errors",
    /// "authorizations", "authorization_errors", "end_sessions",
    /// "backchannel_logouts", "backchannel_logout_errors", "discoveries"}`.
    pub async fn stats(&self) -> serde_json::Value {
        self.get_json("/__test/stats").await
    }

    /// What the provider wrote to stderr so far (and any stray stdout).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops the provider now (it is also killed when dropped).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// A `client_credentials` access token for `resource` and `scope`
    /// (needs `apiResource` in the config): a JWT, as an API client gets one.
    pub async fn client_credentials_token(
        &self,
        (client_id, client_secret): (&str, &str),
        resource: &str,
        scope: &str,
    ) -> String {
        use base64::Engine as _;
        let token_endpoint = self.discovery().await["token_endpoint"]
            .as_str()
            .expect("a token endpoint")
            .to_owned();
        let url = url::Url::parse(&token_endpoint).expect("a URL");
        let authority = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{client_id}:{client_secret}"));
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("resource", resource)
            .append_pair("scope", scope)
            .finish();
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = http::Request::post(url.path())
            .header("host", &authority)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(Bytes::from(form)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let token = answer["access_token"].as_str().unwrap().to_owned();
        assert_eq!(token.split('.').count(), 3, "a JWT access token: {token}");
        token
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        let url = self.url(path);
        let authority = self.issuer.trim_start_matches("http://").to_string();
        let fetch = async {
            let tcp = tokio::net::TcpStream::connect(&authority).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            let request = http::Request::get(path)
                .header("host", &authority)
                .header("accept", "application/json")
                .body(Empty::<Bytes>::new())?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .unwrap_or_else(|_| panic!("GET {url}: no answer in 10 s"))
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        assert!(
            status.is_success(),
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!(
                "GET {url}: not JSON ({error}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }
}

impl Drop for NodeIdp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- OpenID provider log ({}) ---\n{}",
                self.issuer,
                self.log()
            );
        }
        let _ = self.child.start_kill();
    }
}

/// A running process's scheduler state, CPU time and wait channel, for the
/// report of a provider that did not start.
fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: state is the 1st, utime and
    // stime the 12th and 13th (clock ticks).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    format!(
        "; state {} utime {} stime {} ticks, wchan {wchan:?}",
        fields.first().unwrap_or(&"?"),
        fields.get(11).unwrap_or(&"?"),
        fields.get(12).unwrap_or(&"?"),
    )
}
