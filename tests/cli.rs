//! The `portcullis` binary as a process: `check` on the shipped examples and
//! on broken files, the command line itself, and `run` end to end (JSON logs,
//! the access log with its canonical paths, a callback `error` that cannot
//! forge a text log line, SIGTERM during a slow request, bind and config
//! failures, an https upstream trusted through `SSL_CERT_FILE`).
//!
//! Every process gets a scrubbed environment (no `RUST_LOG`,
//! `PORTCULLIS_CONFIG`, `SSL_CERT_*` from the caller), listens on
//! `127.0.0.1:0`, and has its bound addresses read from its own log.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{Pki, eventually, get, http1, upstream};
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long a process may take to start listening or to exit on its own.
const PATIENCE: Duration = Duration::from_secs(20);

use common::process::command as portcullis;

/// Runs to completion: exit code, stdout, stderr.
fn output(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("the portcullis binary runs");
    (
        output
            .status
            .code()
            .expect("exited, not killed by a signal"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// 32 random bytes in base64, as `sessions.secrets` wants.
fn session_secret() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The examples name `/etc/portcullis/signing.pem`, which `check` reads (the
/// signing key is validated at load time, unlike TLS files, which are only
/// read by `run`). Each example is checked as a copy whose signing key points
/// at a freshly generated P-256 PKCS#8 key in a temp dir.
const EXAMPLE_SIGNING_KEY: &str = "/etc/portcullis/signing.pem";

#[test]
fn check_accepts_every_example() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("signing.pem");
    std::fs::write(
        &key_path,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();

    let mut examples: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    examples.sort();
    assert!(
        examples.len() >= 4,
        "config/ holds the examples: {examples:?}"
    );

    for example in &examples {
        let text = std::fs::read_to_string(example).unwrap();
        let copy = dir.path().join(example.file_name().unwrap());
        std::fs::write(
            &copy,
            text.replace(EXAMPLE_SIGNING_KEY, key_path.to_str().unwrap()),
        )
        .unwrap();
        let (code, stdout, stderr) = output(
            portcullis()
                .args(["check", "--config"])
                .arg(&copy)
                .env("SESSION_SECRET", session_secret())
                .env("CLIENT_SECRET", "example-client-secret")
                .env("COGNITO_SECRET", "example-cognito-secret"),
        );
        assert_eq!(code, 0, "{}:\n{stderr}", example.display());
        assert!(stdout.contains(": ok ("), "{}: {stdout}", example.display());
    }
}

#[test]
fn check_reads_the_signing_key_file() {
    // Why the test above rewrites the examples: without the key file, check fails.
    if Path::new(EXAMPLE_SIGNING_KEY).exists() {
        eprintln!("skipped: {EXAMPLE_SIGNING_KEY} exists on this machine");
        return;
    }
    let (code, _, stderr) = output(
        portcullis()
            .args(["check", "--config"])
            .arg(examples_dir().join("full.yaml"))
            .env("SESSION_SECRET", session_secret())
            .env("CLIENT_SECRET", "x")
            .env("COGNITO_SECRET", "y"),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("signing.private_key_file: cannot read /etc/portcullis/signing.pem"),
        "{stderr}"
    );
}

#[test]
fn check_minimal_example_in_place_needs_nothing() {
    let (code, stdout, stderr) = output(
        portcullis()
            .args(["check", "--config"])
            .arg(examples_dir().join("minimal.yaml")),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 listener(s), 2 rule(s))"), "{stdout}");
}

/// Runs `check` on a broken fixture: exit 2 and the whole of stderr.
fn check_fails(name: &str) -> String {
    let (code, stdout, stderr) =
        output(portcullis().args(["check", "--config"]).arg(fixture(name)));
    assert_eq!(code, 2, "{name}: stdout {stdout}\nstderr {stderr}");
    assert!(!stdout.contains("ok"), "{name}: {stdout}");
    stderr
}

#[test]
fn check_names_the_key_path_and_the_fix_for_each_broken_file() {
    // (file, the problem's line must start with this key path, and say this about the fix)
    let cases = [
        (
            "unknown_key_typo.yaml",
            "listeners[0].rules[0].actions[0].forward.tagret: unknown key `tagret`",
            "did you mean `target`?",
        ),
        (
            "bad_url.yaml",
            "listeners[0].rules[0].actions[0].forward.target: `http//127.0.0.1:8080` is not a URL",
            "fix: give an absolute URL",
        ),
        (
            "bad_duration.yaml",
            "listeners[0].rules[0].actions[0].forward.timeout: `soon` is not a duration",
            "fix: give whole seconds (600) or a duration like 90s, 15m",
        ),
        (
            "two_terminal_actions.yaml",
            "listeners[0].rules[0].actions[1]: a second terminal action",
            "fix: keep exactly one of forward, fixed_response, redirect",
        ),
        (
            "authenticate_without_terminal.yaml",
            "listeners[0].rules[0].actions: authenticate_oidc is not followed by a terminal action",
            "fix: end the list with forward, fixed_response or redirect",
        ),
        (
            "missing_field.yaml",
            "listeners[0].address: `address` is required",
            "fix: give IP:PORT",
        ),
    ];
    for (name, problem, fix) in cases {
        let stderr = check_fails(name);
        assert!(stderr.contains("1 problem(s)"), "{name}: {stderr}");
        let line = stderr
            .lines()
            .find(|line| line.trim_start().starts_with("- "))
            .unwrap_or_else(|| panic!("{name}: no problem line in {stderr}"));
        assert!(
            line.contains(problem),
            "{name}: expected `{problem}` in {line}"
        );
        assert!(line.contains(fix), "{name}: expected `{fix}` in {line}");
    }
}

#[test]
fn check_reports_a_yaml_syntax_error_with_its_line() {
    let stderr = check_fails("yaml_syntax.yaml");
    assert!(stderr.contains("yaml_syntax.yaml"), "{stderr}");
    assert!(
        stderr.to_ascii_lowercase().contains("not valid yaml"),
        "{stderr}"
    );
    assert!(stderr.contains("line 8"), "{stderr}");
}

#[test]
fn check_rejects_an_unknown_extension_and_names_the_accepted_ones() {
    let stderr = check_fails("unknown_extension.ini");
    assert!(stderr.contains("unknown_extension.ini"), "{stderr}");
    assert!(
        stderr.contains("unknown extension; use .yaml, .yml, .toml or .json"),
        "{stderr}"
    );
}

#[test]
fn check_reports_every_mistake_in_one_run() {
    let stderr = check_fails("many_mistakes.yaml");
    assert!(stderr.contains("5 problem(s)"), "{stderr}");
    // In the order of the file, though found in another (unknown keys first).
    let mut rest = stderr.as_str();
    for expected in [
        "admin.adress: unknown key `adress` (fix: did you mean `address`?)",
        "shutdown_timeout: `a while` is not a duration",
        "listeners[0].rules[0].actions[0].forward.target: `ftp://127.0.0.1:8080` is not an http or https URL",
        "listeners[0].rules[0].actions[1]: a second terminal action",
        "listeners[0].rules[1].actions[0].fixed_response.status: status 42 is not allowed here",
    ] {
        let at = rest
            .find(expected)
            .unwrap_or_else(|| panic!("expected `{expected}`, in this order, in\n{stderr}"));
        rest = &rest[at + expected.len()..];
    }
    let problems = stderr
        .lines()
        .filter(|line| line.trim_start().starts_with("- "))
        .count();
    assert_eq!(problems, 5, "{stderr}");
    assert!(
        stderr
            .lines()
            .filter(|line| line.trim_start().starts_with("- "))
            .all(|line| line.contains("(fix: ")),
        "every problem says how to fix it:\n{stderr}"
    );
}

#[test]
fn a_missing_or_broken_file_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let names_missing_secrets = dir.path().join("secrets_file.yaml");
    std::fs::write(
        &names_missing_secrets,
        "sessions:\n  secrets_file: /nonexistent/portcullis-secrets\n",
    )
    .unwrap();
    let broken_toml = dir.path().join("broken.toml");
    std::fs::write(&broken_toml, "[sessions]\nsecrets = [\"x\"\n").unwrap();

    // (file, what stderr says, the cause that must appear exactly once)
    let cases = [
        (
            &missing,
            format!("cannot read {}: ", missing.display()),
            "No such file or directory",
        ),
        (
            &names_missing_secrets,
            "sessions.secrets_file: cannot read /nonexistent/portcullis-secrets: ".to_string(),
            "No such file or directory",
        ),
        (
            &broken_toml,
            "the file is not valid TOML: TOML parse error at line 2".to_string(),
            "TOML parse error",
        ),
    ];
    for (file, says, cause) in cases {
        for command in ["check", "run"] {
            let (code, _, stderr) = output(portcullis().args([command, "--config"]).arg(file));
            assert_eq!(code, 2, "{command} {}: {stderr}", file.display());
            assert!(
                stderr.contains(&says),
                "{command}: expected `{says}` in {stderr}"
            );
            assert_eq!(stderr.matches(cause).count(), 1, "{command}: {stderr}");
        }
    }
}

/// A docker-compose-shaped configuration: browsers reach the IdP as
/// localhost:8080, the proxy as keycloak:8080, over plain http.
fn split_horizon_config(allow_insecure_http: bool) -> String {
    format!(
        r#"
sessions: {{ secrets: ["{secret}"] }}
listeners:
  - address: 127.0.0.1:0
    rules:
      - name: app
        actions:
          - authenticate_oidc:
              issuer: http://localhost:8080/realms/demo
              discovery: false
              allow_insecure_http: {allow_insecure_http}
              authorization_endpoint: http://localhost:8080/realms/demo/protocol/openid-connect/auth
              token_endpoint: http://keycloak:8080/realms/demo/protocol/openid-connect/token
              user_info_endpoint: http://keycloak:8080/realms/demo/protocol/openid-connect/userinfo
              jwks_uri: http://keycloak:8080/realms/demo/protocol/openid-connect/certs
              client_id: portcullis
              client_secret: secret
          - fixed_response: {{ status: 200 }}
"#,
        secret = session_secret(),
    )
}

const INSECURE_AT: &str = "listeners[0].rules[0].actions[0].authenticate_oidc";

#[test]
fn check_warns_about_plain_http_to_the_idp_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compose.yaml");
    std::fs::write(&path, split_horizon_config(true)).unwrap();
    let (code, stdout, stderr) = output(portcullis().args(["check", "--config"]).arg(&path));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("compose.yaml: ok (1 listener(s), 1 rule(s))"),
        "{stdout}"
    );
    assert!(stderr.contains("compose.yaml: 1 warning(s):"), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.trim_start().starts_with("- "))
        .unwrap_or_else(|| panic!("no warning line in {stderr}"));
    assert!(
        line.contains(&format!(
            "{INSECURE_AT}.allow_insecure_http: rule `app` talks to its IdP over plain http"
        )),
        "{line}"
    );
    for url in [
        "token_endpoint http://keycloak:8080/realms/demo/protocol/openid-connect/token",
        "user_info_endpoint http://keycloak:8080/realms/demo/protocol/openid-connect/userinfo",
        "jwks_uri http://keycloak:8080/realms/demo/protocol/openid-connect/certs",
    ] {
        assert!(line.contains(url), "{url}: {line}");
    }

    // Without the switch, each such endpoint is a problem whose fix
    // explains the split horizon.
    std::fs::write(&path, split_horizon_config(false)).unwrap();
    let (code, stdout, stderr) = output(portcullis().args(["check", "--config"]).arg(&path));
    assert_eq!(code, 2, "{stdout}");
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{INSECURE_AT}.token_endpoint: `http://keycloak:8080/realms/demo/protocol/openid-connect/token` \
             uses plain http on a host other than the loopback (fix: use https;"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("add `allow_insecure_http: true`"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn portcullis_config_names_the_file_instead_of_the_flag() {
    let (code, stdout, stderr) = output(
        portcullis()
            .arg("check")
            .env("PORTCULLIS_CONFIG", examples_dir().join("minimal.yaml")),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("minimal.yaml: ok"), "{stdout}");

    let (code, _, stderr) = output(
        portcullis()
            .arg("check")
            .env("PORTCULLIS_CONFIG", fixture("missing_field.yaml")),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("listeners[0].address"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2_and_help_exits_0() {
    for args in [
        &["check"][..],
        &["frobnicate"],
        &["check", "--config"],
        &["run", "--config", "x.yaml", "--log-format", "xml"],
        &[],
    ] {
        let (code, _, stderr) = output(portcullis().args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.is_empty(), "{args:?} explains itself");
    }
    let (code, _, stderr) = output(portcullis().args(["check", "--config", "/nonexistent/p.yaml"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/p.yaml"),
        "{stderr}"
    );

    for args in [&["--help"][..], &["run", "--help"], &["check", "--help"]] {
        let (code, stdout, _) = output(portcullis().args(args));
        assert_eq!(code, 0, "{args:?}");
        assert!(
            stdout.contains("--config") || stdout.contains("run"),
            "{stdout}"
        );
    }
    let (code, stdout, _) = output(portcullis().arg("--help"));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("check") && stdout.contains("--log-format"),
        "{stdout}"
    );
}

/// A `portcullis run` child process whose stderr is read line by line.
struct Process {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line so far, for assertions over the whole log.
    all: Arc<Mutex<Vec<String>>>,
    /// The JSON events [`Process::event`] has read so far.
    events: Vec<Value>,
    /// Holds the config file for as long as the process lives.
    _dir: tempfile::TempDir,
}

impl Process {
    /// Writes `config` (YAML) to a temp dir and starts `run --log-format json`.
    fn run(config: &str, env: &[(&str, &str)]) -> Process {
        Self::run_with(config, &["--log-format", "json"], env)
    }

    fn run_with(config: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(&path, config).unwrap();
        let mut command = portcullis();
        command
            .args(["run", "--config"])
            .arg(&path)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("portcullis starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::unbounded_channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let all_for_reader = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                all_for_reader.lock().unwrap().push(line.clone());
                // The test may have stopped listening; the log is in `all` anyway.
                let _ = sender.send(line);
            }
        });
        Process {
            child,
            lines,
            all,
            events: Vec::new(),
            _dir: dir,
        }
    }

    /// The first JSON log event, logged so far or still to come, that
    /// `wanted` accepts; every line must be JSON. (Events from different
    /// tasks arrive in any order, so earlier ones are kept, not skipped.)
    async fn event(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(event) = self.events.iter().find(|event| wanted(event)) {
            return event.clone();
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}:\n{}", self.log()))
                .unwrap_or_else(|| panic!("stderr closed before {what}:\n{}", self.log()));
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
            self.events.push(event.clone());
            if wanted(&event) {
                return event;
            }
        }
    }

    /// The first line of the text log, logged so far or still to come,
    /// that `pick` gets something out of; ANSI colours are taken out first.
    async fn line<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self
                .all
                .lock()
                .unwrap()
                .iter()
                .find_map(|line| pick(&without_ansi(line)));
            if let Some(found) = found {
                return found;
            }
            tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}:\n{}", self.log()))
                .unwrap_or_else(|| panic!("stderr closed before {what}:\n{}", self.log()));
        }
    }

    /// The address a `listening` / `admin listening` event reports.
    async fn address(&mut self, message: &str) -> SocketAddr {
        let event = self
            .event(message, |event| event["message"] == message)
            .await;
        let text = event["address"].as_str().expect("address is text");
        // Logged with `?` on an Option: `Some(127.0.0.1:1234)`.
        let text = text
            .strip_prefix("Some(")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or(text);
        text.parse()
            .unwrap_or_else(|_| panic!("`{text}` is not an address"))
    }

    fn log(&self) -> String {
        self.all.lock().unwrap().join("\n")
    }

    /// The whole log, once the process has closed stderr (at exit) and the
    /// reader thread has taken in every line.
    async fn whole_log(&mut self) -> String {
        let closed = tokio::time::timeout(PATIENCE, async {
            while self.lines.recv().await.is_some() {}
        })
        .await;
        assert!(
            closed.is_ok(),
            "stderr still open after {PATIENCE:?}:\n{}",
            self.log()
        );
        self.log()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `line` without its ANSI colour sequences (`ESC [ … m`), which the text
/// log format writes even when stderr is not a terminal.
fn without_ansi(line: &str) -> String {
    let mut pieces = line.split('\u{1b}');
    let first = pieces.next().unwrap_or_default().to_owned();
    pieces.fold(first, |mut plain, piece| {
        plain.push_str(piece.split_once('m').map_or("", |(_, text)| text));
        plain
    })
}

/// A config with an admin listener and one plain listener on `127.0.0.1:0`.
fn run_config(target: &str, shutdown_timeout: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
shutdown_timeout: {shutdown_timeout}
listeners:
  - address: 127.0.0.1:0
    rules:
      - name: ping
        conditions: {{ path: ["/ping"] }}
        actions:
          - fixed_response: {{ status: 200, content_type: text/plain, body: pong }}
      - name: app
        actions:
          - forward: {{ target: "{target}" }}
"#
    )
}

fn request(addr: SocketAddr, path_and_query: &str) -> http::request::Builder {
    Request::builder()
        .uri(path_and_query)
        .header("host", format!("app.test:{}", addr.port()))
}

async fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_forwards_and_writes_a_json_access_log_without_secrets() {
    const COOKIE_SECRET: &str = "cookie-value-8c1f2e77d1";
    const AUTHORIZATION_SECRET: &str = "Bearer authz-value-51b9e0c4aa";
    const QUERY_SECRET: &str = "query-value-d3a4f6";

    let upstream = upstream::start().await;
    let mut process = Process::run(&run_config(&format!("http://{}", upstream.addr), "5s"), &[]);
    let admin = process.address("admin listening").await;
    let addr = process.address("listening").await;

    let sent = request(addr, &format!("/echo/a?token={QUERY_SECRET}"))
        .header("cookie", format!("session={COOKIE_SECRET}"))
        .header("authorization", AUTHORIZATION_SECRET)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = http1(addr, sent).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let echo = answer.json();
    assert_eq!(echo["uri"], format!("/echo/a?token={QUERY_SECRET}"));
    assert_eq!(
        echo["headers"]["host"][0],
        format!("app.test:{}", addr.port())
    );

    let access = process
        .event("the access log line", |event| {
            event["target"] == "portcullis::access" && event["path"] == "/echo/a"
        })
        .await;
    assert_eq!(access["rule"], "app");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 200);
    assert!(
        access["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{access}"
    );
    let logged_upstream = access["upstream"].as_str().unwrap();
    assert!(
        logged_upstream.contains(&upstream.addr.to_string()),
        "{access}"
    );

    // The path is logged, and forwarded, in its canonical form; the query
    // goes upstream as sent.
    let answer = http1(addr, get("app.test", "/echo/./b/../%61//c/?x=/../y")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["uri"], "/echo/a/c/?x=/../y");
    let access = process
        .event("the access log line for the dotted path", |event| {
            event["target"] == "portcullis::access"
                && event["rule"] == "app"
                && event["path"] != "/echo/a"
        })
        .await;
    assert_eq!(access["path"], "/echo/a/c/", "{access}");

    let answer = http1(addr, get("app.test", "/ping")).await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "pong"));
    let access = process
        .event("the access log line for /ping", |event| {
            event["target"] == "portcullis::access" && event["path"] == "/ping"
        })
        .await;
    assert_eq!(access["rule"], "ping");
    assert_eq!(access["upstream"], "-");

    let metrics = common::admin_get(admin, "/metrics").await;
    assert!(
        metrics
            .text()
            .contains(r#"portcullis_requests_total{rule="app",code="200"} 2"#),
        "{}",
        metrics.text()
    );
    let ready = common::admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}\n{}", ready.text(), process.log());

    process.terminate();
    assert!(process.exit(PATIENCE).await.success(), "{}", process.log());
    let log = process.whole_log().await;
    for secret in [
        COOKIE_SECRET,
        AUTHORIZATION_SECRET,
        "authz-value",
        QUERY_SECRET,
    ] {
        assert!(!log.contains(secret), "`{secret}` was logged:\n{log}");
    }
    for line in log.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_error_cannot_forge_a_text_log_line() {
    const FORGED: &str = "2026-01-01T00:00:00Z INFO forged";
    // The text format, where one event is one line. The IdP is never
    // asked: the callback's `error` is the first thing it reads.
    let mut process = Process::run_with(&split_horizon_config(true), &[], &[]);
    let addr = process
        .line("the listening line", |line| {
            let (_, rest) = line.split_once(" listening address=")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .await;
    let callback = format!(
        "/oauth2/idpresponse?error=x%0A{}",
        FORGED.replace(' ', "%20")
    );
    let answer = http1(addr, get("app.test", &callback)).await;
    assert_eq!(answer.status, 561, "{}", answer.text());
    // The warning is written before the answer; the whole log is read at exit.
    process.terminate();
    assert!(process.exit(PATIENCE).await.success(), "{}", process.log());
    let log = without_ansi(&process.whole_log().await);
    for line in log.lines() {
        assert!(!line.starts_with(FORGED), "a forged line:\n{log}");
    }
    assert!(log.contains(&format!("x\\n{FORGED}")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_exits_0_and_refuses_new_connections() {
    let shutdown_timeout = Duration::from_secs(10);
    let upstream = upstream::start().await;
    let mut process = Process::run(
        &run_config(&format!("http://{}", upstream.addr), "10s"),
        &[],
    );
    let admin = process.address("admin listening").await;
    let addr = process.address("listening").await;

    // The upstream holds the answer's end until the gate opens, so the
    // request is in flight for as long as the test needs, however slow the
    // machine.
    let slow = tokio::spawn(http1(addr, get("app.test", "/gated")));
    let arrived = eventually(Duration::from_secs(5), || async {
        upstream.signals.saw("GET /gated")
    })
    .await;
    assert!(arrived, "the slow request reached the upstream");

    let signalled = Instant::now();
    process.terminate();
    process
        .event("the shutdown message", |event| {
            event["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("shutting down"))
        })
        .await;
    assert!(
        eventually(Duration::from_secs(1), || refused(addr)).await,
        "the listener stops accepting once SIGTERM arrives"
    );
    assert!(
        eventually(Duration::from_secs(1), || refused(admin)).await,
        "so does the admin listener"
    );
    assert!(!slow.is_finished(), "the slow request is still in flight");

    upstream.signals.gate.notify_one();
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "first;rest");

    let status = process.exit(shutdown_timeout).await;
    assert!(status.success(), "{status:?}\n{}", process.log());
    assert!(signalled.elapsed() < shutdown_timeout);
    // Refusal is checked during the drain above, not after exit: once the
    // process is gone, a parallel test may be handed the same port.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_bad_key_exits_2_without_binding() {
    let free = upstream::dead_port();
    let port = free.addr.port();
    let config = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\n    rulez: []\n    rules:\n      - actions: [ {{ fixed_response: {{ status: 200 }} }} ]\n"
    );
    let mut process = Process::run_with(&config, &[], &[]);
    let status = process.exit(PATIENCE).await;
    let log = process.whole_log().await;
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("listeners[0].rulez: unknown key `rulez` (fix: did you mean `rules`?)"),
        "{log}"
    );
    assert!(!log.contains("listening"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_a_taken_port_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let config = format!(
        "listeners:\n  - address: {address}\n    rules:\n      - actions: [ {{ fixed_response: {{ status: 200 }} }} ]\n"
    );
    let mut process = Process::run_with(&config, &[], &[]);
    let status = process.exit(PATIENCE).await;
    let log = process.whole_log().await;
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot listen on {address}")),
        "{log}"
    );
    drop(taken);
}

/// An HTTPS server on `127.0.0.1:0` with a certificate for `localhost` from
/// `pki`, answering every request with `tls upstream saw {path}`.
async fn tls_upstream(pki: &Pki) -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    common::install_crypto_provider();
    let (files, _) = pki.issue("upstream", &["localhost"]);
    let chain = CertificateDer::pem_file_iter(&files.certificate_file)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.private_key_file).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the CA fails here; that is the point.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let text = format!("tls upstream saw {}", request.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        text,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// hyper-rustls' `with_native_roots` loads roots through rustls-native-certs,
/// which reads `SSL_CERT_FILE` *instead of* the platform store when it is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_private_ca_is_trusted_through_ssl_cert_file() {
    let pki = Pki::new();
    let upstream = tls_upstream(&pki).await;
    let ca = pki.ca_pem_path();
    let config = run_config(&format!("https://localhost:{}", upstream.port()), "5s");

    let mut trusting = Process::run(&config, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let addr = trusting.address("listening").await;
    let answer = http1(addr, get("app.test", "/over/tls")).await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), trusting.log());
    assert_eq!(answer.text(), "tls upstream saw /over/tls");
    trusting.terminate();
    assert!(trusting.exit(PATIENCE).await.success());

    // The control: the platform's roots do not know the test CA, so the same
    // config without SSL_CERT_FILE gets 502, not a silently trusted upstream.
    let mut untrusting = Process::run(&config, &[]);
    let addr = untrusting.address("listening").await;
    let answer = http1(addr, get("app.test", "/over/tls")).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
}

/// Serves `{"keys":[]}` as an IdP's JWKS: enough for a provider to be ready.
async fn empty_jwks() -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|_request| async {
                let body = Full::new(Bytes::from_static(br#"{"keys":[]}"#));
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_checks_the_redis_servers_certificate() {
    let pki = Pki::new();
    let (files, _) = pki.issue("redis", &["localhost"]);
    let Some((_redis, tls_port)) =
        common::redis::RedisServer::start_tls(&files.certificate_file, &files.private_key_file)
    else {
        return;
    };
    let jwks = empty_jwks().await;
    let config = format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
sessions:
  secrets: ["{secret}"]
  store: redis
  redis: {{ url: "rediss://localhost:{tls_port}/0", timeout: 1s }}
listeners:
  - address: 127.0.0.1:0
    rules:
      - name: app
        actions:
          - authenticate_oidc:
              issuer: https://idp.example
              authorization_endpoint: https://idp.example/authorize
              token_endpoint: https://idp.example/token
              user_info_endpoint: https://idp.example/userinfo
              jwks_uri: http://{jwks}/jwks
              client_id: portcullis
              client_secret: secret
          - fixed_response: {{ status: 200 }}
"#,
        secret = session_secret(),
    );
    let ready = |admin: SocketAddr| async move {
        let request = Request::get("/readyz")
            .header("host", "admin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        http1(admin, request).await.status == 200
    };

    // The test CA is trusted (rustls-native-certs reads SSL_CERT_FILE):
    // PING over TLS answers, and the process becomes ready.
    let ca = pki.ca_pem_path();
    let ca = ca.to_str().unwrap();
    let mut trusting = Process::run(&config, &[("SSL_CERT_FILE", ca)]);
    let admin = trusting.address("admin listening").await;
    assert!(
        eventually(Duration::from_secs(5), || ready(admin)).await,
        "ready over TLS:\n{}",
        trusting.log()
    );

    // Not trusted: the handshake fails, so Redis "does not answer" and the
    // process stays not ready, saying why.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let empty = empty.path().to_str().unwrap().to_owned();
    let mut doubting = Process::run(&config, &[("SSL_CERT_FILE", &empty)]);
    let admin = doubting.address("admin listening").await;
    let event = doubting
        .event("the store warning", |event| {
            event["message"] == "the session store does not answer; not ready"
        })
        .await;
    assert!(!ready(admin).await, "{event}");
    let cause = event["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("certificate"), "the cause is named: {event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_warns_about_plain_http_to_the_idp_when_it_starts() {
    let mut process = Process::run(&split_horizon_config(true), &[]);
    let event = process
        .event("the plain-http warning", |event| {
            event["level"] == "WARN"
                && event["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("over plain http"))
        })
        .await;
    assert_eq!(event["rule"], "app", "{event}");
    assert_eq!(
        event["path"],
        format!("{INSECURE_AT}.allow_insecure_http"),
        "{event}"
    );
    let message = event["message"].as_str().unwrap();
    assert!(
        message.contains(
            "token_endpoint http://keycloak:8080/realms/demo/protocol/openid-connect/token"
        ),
        "{message}"
    );
    // A warning, not a refusal: the proxy starts.
    process.address("listening").await;
}
