//! Reloading the configuration of a running `portcullis run`: SIGHUP under
//! load (rules, targets and listeners changing, a WebSocket and a login
//! spanning the reloads, node-oidc-provider as the IdP), a file that does not
//! validate or cannot be applied, and `watch_config` with a Kubernetes
//! ConfigMap's symlink swap.
//!
//! Needs node (see tests/oidc) for the test under load.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::browser::Browser;
use common::front::{Log, PATIENCE};
use common::idp::NodeIdp;
use common::upstream;
use common::{admin_get, eventually, process};
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::process::Child;

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
/// How soon after SIGHUP a reload's new behaviour must be seen.
const NEW_BEHAVIOUR_WITHIN: Duration = Duration::from_secs(1);

// ------------------------------------------------------------- configs ---

/// What one generation of the test's configuration says.
struct Generation<'a> {
    number: usize,
    /// The unchanged listener's port.
    main: u16,
    /// A second listener, present in odd generations.
    second: u16,
    /// The `app` rule's forward target.
    target: SocketAddr,
    /// The `public` rule's target (the same in every generation).
    public: SocketAddr,
    /// The IdP of the `app` rule; without one there is no `app` rule.
    issuer: Option<&'a str>,
    watch: bool,
}

impl Generation<'_> {
    fn yaml(&self) -> String {
        let mut yaml = format!(
            r#"admin: {{ address: "127.0.0.1:0" }}
shutdown_timeout: 2s
watch_config: {watch}
sessions:
  secrets: ["{secret}"]
listeners:
  - address: "127.0.0.1:{main}"
    rules:
      - name: switch
        conditions: {{ path: ["/switch"] }}
        actions:
          - fixed_response: {{ status: 200, content_type: text/plain, body: "generation {number}" }}
      - name: public
        conditions: {{ path: ["/public/*", "/ws"] }}
        actions:
          - forward: {{ target: "http://{public}" }}
"#,
            watch = self.watch,
            secret = common::SESSION_SECRET,
            main = self.main,
            number = self.number,
            public = self.public,
        );
        if let Some(issuer) = self.issuer {
            yaml.push_str(&format!(
                r#"      - name: app
        actions:
          - authenticate_oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret: {CLIENT_SECRET}
          - forward: {{ target: "http://{target}" }}
"#,
                target = self.target,
            ));
        }
        if !self.number.is_multiple_of(2) {
            yaml.push_str(&format!(
                r#"  - address: "127.0.0.1:{second}"
    rules:
      - name: second
        actions:
          - fixed_response: {{ status: 200, content_type: text/plain, body: "second listener {number}" }}
"#,
                second = self.second,
                number = self.number,
            ));
        }
        yaml
    }
}

// ------------------------------------------------------------- process ---

/// One `portcullis run --config FILE --log-format json`.
struct Portcullis {
    child: Child,
    log: Log,
    admin: SocketAddr,
}

impl Portcullis {
    async fn start(config: &Path) -> Self {
        let (child, log) = process::run(config);
        let admin = log
            .wait_for(
                "admin listening",
                process::logged_address("admin listening"),
            )
            .await;
        Self { child, log, admin }
    }

    fn hangup(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    async fn metric(&self, series: &str) -> u64 {
        let text = admin_get(self.admin, "/metrics").await.text();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    }

    async fn reloads(&self, result: &str) -> u64 {
        self.metric(&format!(
            r#"portcullis_config_reloads_total{{result="{result}"}}"#
        ))
        .await
    }

    /// `portcullis_config_info` for the configuration with this fingerprint.
    async fn config_info(&self, fingerprint: &str) -> u64 {
        self.metric(&format!(
            r#"portcullis_config_info{{fingerprint="{fingerprint}"}}"#
        ))
        .await
    }

    /// The fingerprint `/readyz` names.
    async fn live_config(&self) -> String {
        let text = admin_get(self.admin, "/readyz").await.text();
        text.lines()
            .find_map(|line| line.strip_prefix("config "))
            .unwrap_or_default()
            .to_owned()
    }

    /// The messages of the JSON log lines at `level`.
    fn messages(&self, level: &str) -> Vec<String> {
        self.log
            .text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["level"] == level)
            .filter_map(|event| event["message"].as_str().map(str::to_owned))
            .collect()
    }
}

// ------------------------------------------------------------- clients ---

/// The body of `GET path` on a new connection, or `None` when it is refused.
async fn get_once(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Option<(u16, String)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request(addr, path, cookie))
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn request(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .uri(path)
        .header("host", format!("localhost:{}", addr.port()))
        .header("accept", "application/json");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// Waits until `path` on `addr` answers `body`; how long that took.
async fn until_body(addr: SocketAddr, path: &str, body: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if let Some((200, text)) = get_once(addr, path, None).await
            && text == body
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never answered {body:?}");
}

/// What the load's clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// A status other than the one expected.
    wrong: AtomicU64,
    /// The connection failed under a request (reset, closed, refused).
    broken: AtomicU64,
    /// Connections opened: one per client unless one broke.
    connections: AtomicU64,
}

/// One client on one keep-alive connection, sending `GET path` until
/// `stop`; expects 200 each time.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    cookie: Option<String>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    'connect: while !stop.load(Ordering::Relaxed) {
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let Ok(stream) = TcpStream::connect(addr).await else {
            tally.broken.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.broken.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tokio::spawn(connection);
        while !stop.load(Ordering::Relaxed) {
            let answered = async {
                let response = sender
                    .send_request(request(addr, path, cookie.as_deref()))
                    .await?;
                let status = response.status();
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            };
            match answered.await {
                Ok(status) if status == 200 => tally.ok.fetch_add(1, Ordering::Relaxed),
                Ok(_) => tally.wrong.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    tally.broken.fetch_add(1, Ordering::Relaxed);
                    continue 'connect;
                }
            };
        }
    }
}

/// What `sha256sum FILE | cut -c1-16` prints.
fn sha256_prefix(file: &Path) -> String {
    let text = std::fs::read(file).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &text);
    digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Waits until `admin` has counted `reloads` successful reloads.
async fn counted(admin: SocketAddr, reloads: u64) {
    let counted = eventually(PATIENCE, || async {
        common::reloads(admin, "success").await == reloads
    })
    .await;
    assert!(counted, "reload {reloads} was not counted");
}

// --------------------------------------------------------------- tests ---

/// 30 s of authenticated and unauthenticated requests on keep-alive
/// connections while the file is changed and SIGHUP sent 10 times: no
/// request fails, no connection breaks, and each reload's new fixed response,
/// target and second listener are seen within a second. A WebSocket opened
/// before the reloads echoes after each; a login started before the first
/// reload finishes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request() {
    const RELOADS: usize = 10;
    const LOAD_FOR: Duration = Duration::from_secs(30);
    let main_port = upstream::dead_port();
    let second_port = upstream::dead_port();
    let main = main_port.addr;
    let origin = format!("http://localhost:{}", main.port());
    let idp = NodeIdp::start(json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{origin}/oauth2/idpresponse")],
        }],
    }))
    .await;
    let (even, odd) = (upstream::start().await, upstream::start().await);
    let generation = |number: usize| Generation {
        number,
        main: main.port(),
        second: second_port.addr.port(),
        target: if number.is_multiple_of(2) {
            even.addr
        } else {
            odd.addr
        },
        public: even.addr,
        issuer: Some(&idp.issuer),
        watch: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, generation(0).yaml()).unwrap();
    let proxy = Portcullis::start(&file).await;
    let ready = eventually(PATIENCE, || async {
        admin_get(proxy.admin, "/readyz").await.status == 200
    })
    .await;
    assert!(ready, "never ready:\n{}", proxy.log.tail(30));

    // A session for the authenticated load, and a login left at the IdP's
    // redirect back, to be finished after the first reload.
    let mut browser = Browser::new(None);
    let page = browser
        .login(&format!("{origin}/app/start"), "alice", "pw")
        .await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    let cookie = browser.cookie_header_for("localhost");
    let mut pending = Browser::new(None);
    pending.stop_before(Some(&format!("{origin}/oauth2/idpresponse")));
    let callback = pending
        .login(&format!("{origin}/app/pending"), "bob", "pw")
        .await
        .location()
        .expect("the IdP sends the browser back to the callback");
    pending.stop_before(None);

    let (mut websocket, _) = tokio_tungstenite::connect_async(format!("ws://{main}/ws"))
        .await
        .expect("a WebSocket through the proxy");

    let stop = Arc::new(AtomicBool::new(false));
    let authenticated = Arc::new(Tally::default());
    let unauthenticated = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for _ in 0..2 {
        for (path, cookie, tally) in [
            ("/app/load", Some(cookie.clone()), &authenticated),
            ("/public/load", None, &unauthenticated),
            ("/switch", None, &unauthenticated),
        ] {
            let client = load(main, path, cookie, stop.clone(), Arc::clone(tally));
            clients.push(tokio::spawn(client));
        }
    }

    let started = Instant::now();
    let mut latencies = Vec::with_capacity(RELOADS);
    for number in 1..=RELOADS {
        // Spread the reloads over the load.
        let at = LOAD_FOR.mul_f64(number as f64 / (RELOADS + 1) as f64);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        let next = generation(number);
        std::fs::write(&file, next.yaml()).unwrap();
        proxy.hangup();
        let took = until_body(main, "/switch", &format!("generation {number}")).await;
        latencies.push(took);
        assert!(
            took < NEW_BEHAVIOUR_WITHIN,
            "reload {number}: the new fixed response after {took:?}"
        );

        // The whole generation is live: the target, and the second listener.
        let probe = format!("/app/probe-{number}");
        let answer = get_once(main, &probe, Some(&cookie)).await;
        assert_eq!(answer.map(|(status, _)| status), Some(200), "{probe}");
        let (now, before) = if number.is_multiple_of(2) {
            (&even, &odd)
        } else {
            (&odd, &even)
        };
        assert!(
            now.signals.saw(&format!("GET {probe}")),
            "reload {number}: not sent to the new target"
        );
        assert!(!before.signals.saw(&format!("GET {probe}")));
        let second = second_port_addr(&next);
        let second_answer = get_once(second, "/", None).await;
        if !number.is_multiple_of(2) {
            assert_eq!(
                second_answer,
                Some((200, format!("second listener {number}"))),
                "reload {number}: the added listener"
            );
        } else {
            assert_eq!(
                second_answer, None,
                "reload {number}: the removed listener still answers"
            );
        }

        websocket
            .send(format!("after reload {number}").into())
            .await
            .unwrap();
        let echoed = websocket
            .next()
            .await
            .expect("the WebSocket is open")
            .unwrap();
        assert_eq!(
            echoed.into_text().unwrap().as_str(),
            format!("after reload {number}")
        );

        if number == 1 {
            let finished = pending.follow(&callback).await;
            assert_eq!(
                finished.status, 200,
                "{:#?}\n{}",
                finished.hops, finished.body
            );
            assert_eq!(finished.json()["headers"]["x-amzn-oidc-identity"][0], "bob");
        }
    }
    tokio::time::sleep(LOAD_FOR.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let load_time = started.elapsed();

    let count = |tally: &Tally| {
        (
            tally.ok.load(Ordering::Relaxed),
            tally.wrong.load(Ordering::Relaxed),
            tally.broken.load(Ordering::Relaxed),
            tally.connections.load(Ordering::Relaxed),
        )
    };
    let (auth_ok, auth_wrong, auth_broken, auth_connections) = count(&authenticated);
    let (open_ok, open_wrong, open_broken, open_connections) = count(&unauthenticated);
    eprintln!(
        "reload under load: {RELOADS} reloads in {load_time:.1?}; authenticated: {auth_ok} \
         answered 200, {auth_wrong} other, {auth_broken} broken, on {auth_connections} \
         connections; unauthenticated: {open_ok} answered 200, {open_wrong} other, \
         {open_broken} broken, on {open_connections} connections; new behaviour seen \
         after {latencies:?}"
    );
    assert!(auth_ok > 0 && open_ok > 0, "the load sent nothing");
    assert_eq!(
        (auth_wrong, auth_broken),
        (0, 0),
        "authenticated requests failed"
    );
    assert_eq!(
        (open_wrong, open_broken),
        (0, 0),
        "unauthenticated requests failed"
    );
    assert_eq!(
        auth_connections, 2,
        "the unchanged listener kept every connection"
    );
    assert_eq!(
        open_connections, 4,
        "the unchanged listener kept every connection"
    );
    assert_eq!(proxy.reloads("success").await, RELOADS as u64);
    assert_eq!(proxy.reloads("failure").await, 0);
    drop((main_port, second_port));
}

fn second_port_addr(generation: &Generation<'_>) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], generation.second))
}

/// A file that does not validate, then one whose new listener cannot bind:
/// each changes nothing, is logged with every problem and counted as a
/// failure; the next good file is applied.
#[tokio::test]
async fn a_bad_file_changes_nothing_and_says_why() {
    let upstream = upstream::start().await;
    let main_port = upstream::dead_port();
    let second_port = upstream::dead_port();
    let main = main_port.addr;
    let generation = |number: usize| Generation {
        number,
        main: main.port(),
        second: second_port.addr.port(),
        target: upstream.addr,
        public: upstream.addr,
        issuer: None,
        watch: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, generation(0).yaml()).unwrap();
    let proxy = Portcullis::start(&file).await;
    drop(main_port);
    until_body(main, "/switch", "generation 0").await;
    let live = proxy.live_config().await;
    assert_eq!(
        live,
        sha256_prefix(&file),
        "/readyz names the configuration"
    );
    assert_eq!(proxy.config_info(&live).await, 1);

    // Three problems, listed in file order, each as `check` words it.
    let invalid = generation(2)
        .yaml()
        .replace("shutdown_timeout: 2s", "shutdown_timeout: soon")
        .replace("status: 200, content_type", "status: 42, content_type")
        .replace("target: \"http://", "target: \"ftp://");
    std::fs::write(&file, &invalid).unwrap();
    proxy.hangup();
    let failed = eventually(PATIENCE, || async { proxy.reloads("failure").await == 1 }).await;
    assert!(
        failed,
        "the bad file was not counted:\n{}",
        proxy.log.tail(20)
    );
    let check = std::process::Command::new(process::BIN)
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&check.stderr);
    let errors = proxy.messages("ERROR");
    for problem in check.lines().filter_map(|line| line.strip_prefix("  - ")) {
        assert!(
            errors.iter().any(|error| error == problem),
            "the reload did not log {problem:?}: {errors:#?}"
        );
    }
    assert_eq!(
        check
            .lines()
            .filter(|line| line.starts_with("  - "))
            .count(),
        3,
        "{check}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.contains("the running one is unchanged")),
        "{errors:#?}"
    );
    assert_eq!(
        get_once(main, "/switch", None).await,
        Some((200, "generation 0".into()))
    );
    assert_eq!(proxy.live_config().await, live);

    // Valid, but the new listener's port is taken: nothing is swapped, the
    // main listener included.
    let taken = std::net::TcpListener::bind(second_port.addr).unwrap();
    std::fs::write(&file, generation(1).yaml()).unwrap();
    proxy.hangup();
    let failed = eventually(PATIENCE, || async { proxy.reloads("failure").await == 2 }).await;
    assert!(
        failed,
        "the unbindable listener was not a failure:\n{}",
        proxy.log.tail(20)
    );
    assert_eq!(
        get_once(main, "/switch", None).await,
        Some((200, "generation 0".into()))
    );
    assert!(
        proxy
            .messages("ERROR")
            .iter()
            .any(|error| error.contains("cannot listen on") && error.contains("unchanged")),
        "{}",
        proxy.log.tail(10)
    );
    assert_eq!(proxy.reloads("success").await, 0);

    drop(taken);
    proxy.hangup();
    until_body(main, "/switch", "generation 1").await;
    // Counted once the swap is done, a moment after the first new answer.
    let counted = eventually(PATIENCE, || async { proxy.reloads("success").await == 1 }).await;
    assert!(counted, "the good file was not counted");
    let now_live = proxy.live_config().await;
    assert_eq!(now_live, sha256_prefix(&file));
    assert_eq!(proxy.config_info(&now_live).await, 1);
    assert_eq!(
        proxy.config_info(&live).await,
        0,
        "the old configuration is not served"
    );
    let second = SocketAddr::from(([127, 0, 0, 1], second_port.addr.port()));
    drop(second_port);
    assert_eq!(
        get_once(second, "/", None).await,
        Some((200, "second listener 1".into()))
    );
}

/// A Kubernetes ConfigMap volume: `portcullis.yaml` is a symlink through
/// `..data`, which the kubelet points at a new directory in one rename.
/// With `watch_config: true` the change is picked up without a signal; a
/// file left as it is is not reloaded again.
#[tokio::test]
async fn watch_config_follows_a_configmap_symlink_swap() {
    let upstream = upstream::start().await;
    let main_port = upstream::dead_port();
    let main = main_port.addr;
    let generation = |number: usize| Generation {
        number,
        main: main.port(),
        second: 9, // even generations only: no second listener
        target: upstream.addr,
        public: upstream.addr,
        issuer: None,
        watch: true,
    };
    let volume = tempfile::tempdir().unwrap();
    let swap = |version: &str, yaml: String| {
        let dir = volume.path().join(version);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("portcullis.yaml"), yaml).unwrap();
        let staged = volume.path().join("..data_tmp");
        std::os::unix::fs::symlink(version, &staged).unwrap();
        std::fs::rename(&staged, volume.path().join("..data")).unwrap();
    };
    swap("..2026_12_04_09_00_00.1", generation(0).yaml());
    let file: PathBuf = volume.path().join("portcullis.yaml");
    std::os::unix::fs::symlink("..data/portcullis.yaml", &file).unwrap();

    let proxy = Portcullis::start(&file).await;
    drop(main_port);
    until_body(main, "/switch", "generation 0").await;
    let before = proxy.live_config().await;

    swap("..2026_12_04_09_01_00.2", generation(2).yaml());
    let took = until_body(main, "/switch", "generation 2").await;
    eprintln!("watch_config: the swapped ConfigMap served after {took:?}");
    let counted = eventually(PATIENCE, || async { proxy.reloads("success").await == 1 }).await;
    assert!(counted, "the swap was not counted");
    assert_ne!(proxy.live_config().await, before);

    // Unchanged for three more looks: no further reload.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(proxy.reloads("success").await, 1);
    assert_eq!(proxy.reloads("failure").await, 0);
}

/// An IdP whose discovery document takes `delay` to arrive, counting the
/// times it is asked for.
struct SlowIdp {
    issuer: String,
    discoveries: Arc<AtomicU64>,
}

impl SlowIdp {
    async fn start(delay: Duration) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), delay).await
    }

    async fn start_on(addr: SocketAddr, delay: Duration) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(64).unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let discoveries = Arc::new(AtomicU64::new(0));
        let (counter, base) = (discoveries.clone(), issuer.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (counter, base) = (counter.clone(), base.clone());
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (counter, base) = (counter.clone(), base.clone());
                        async move {
                            let body =
                                if request.uri().path() == "/.well-known/openid-configuration" {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(delay).await;
                                    json!({
                                        "issuer": base,
                                        "authorization_endpoint": format!("{base}/authorize"),
                                        "token_endpoint": format!("{base}/token"),
                                        "userinfo_endpoint": format!("{base}/userinfo"),
                                        "jwks_uri": format!("{base}/jwks"),
                                    })
                                } else {
                                    json!({ "keys": [] })
                                };
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body.to_string()),
                            )))
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            issuer,
            discoveries,
        }
    }

    fn discoveries(&self) -> u64 {
        self.discoveries.load(Ordering::SeqCst)
    }
}

/// A reload that brings a new IdP asks it for its endpoints and keys before
/// the swap: once the reload is counted, `/readyz` is 200 and a navigation
/// is sent to the IdP at once. A reload that keeps the IdP does not ask again.
#[tokio::test]
async fn a_new_idp_is_discovered_before_the_swap() {
    const DISCOVERY_TAKES: Duration = Duration::from_millis(600);
    let idp = SlowIdp::start(DISCOVERY_TAKES).await;
    let upstream = upstream::start().await;
    let main_port = upstream::dead_port();
    let main = main_port.addr;
    let generation = |issuer| Generation {
        number: 0,
        main: main.port(),
        second: 9,
        target: upstream.addr,
        public: upstream.addr,
        issuer,
        watch: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, generation(None).yaml()).unwrap();
    let (proxy, reload) =
        common::start_reloading(&file, portcullis::internals::Clock::system()).await;
    let admin = proxy.admin.expect("an admin listener");

    std::fs::write(&file, generation(Some(&idp.issuer)).yaml()).unwrap();
    reload.send(()).await.unwrap();
    counted(admin, 1).await;
    assert_eq!(
        idp.discoveries(),
        1,
        "the IdP was asked once, before the swap"
    );
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(
        ready.status,
        200,
        "not ready right after the reload: {}",
        ready.text()
    );
    let started = Instant::now();
    let navigation = Request::builder()
        .uri("/app")
        .header("host", format!("localhost:{}", main.port()))
        .header("accept", "text/html")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = common::http1(main, navigation).await;
    assert_eq!(answer.status, 302);
    let location = answer.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", idp.issuer)),
        "{location}"
    );
    assert!(
        started.elapsed() < DISCOVERY_TAKES / 2,
        "the first navigation waited {:?} for the IdP",
        started.elapsed()
    );

    reload.send(()).await.unwrap();
    counted(admin, 2).await;
    assert_eq!(
        idp.discoveries(),
        1,
        "an unchanged IdP is kept, not asked again"
    );
    drop(main_port);
}

/// Requests in flight when a reload lands finish: on a listener the reload
/// keeps (its target changed meanwhile) and on one it removes, which then
/// refuses new connections.
#[tokio::test]
async fn requests_in_flight_finish_across_a_reload() {
    let (first, second) = (upstream::start().await, upstream::start().await);
    let (main_port, leaving_port) = (upstream::dead_port(), upstream::dead_port());
    let (main, leaving) = (main_port.addr, leaving_port.addr);
    let yaml = |target: SocketAddr, with_leaving: bool| {
        let mut yaml = format!(
            r#"admin: {{ address: "127.0.0.1:0" }}
listeners:
  - address: "{main}"
    rules:
      - actions: [ {{ forward: {{ target: "http://{target}" }} }} ]
"#
        );
        if with_leaving {
            yaml.push_str(&format!(
                r#"  - address: "{leaving}"
    rules:
      - actions: [ {{ forward: {{ target: "http://{target}" }} }} ]
"#
            ));
        }
        yaml
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, yaml(first.addr, true)).unwrap();
    let (proxy, reload) =
        common::start_reloading(&file, portcullis::internals::Clock::system()).await;
    let admin = proxy.admin.expect("an admin listener");

    let slow_main = tokio::spawn(get_once(main, "/slow?ms=1500", None));
    let slow_leaving = tokio::spawn(get_once(leaving, "/slow?ms=1500", None));
    let started = eventually(PATIENCE, || async {
        first.signals.seen.lock().unwrap().len() == 2
    })
    .await;
    assert!(started, "the slow requests did not reach the upstream");

    std::fs::write(&file, yaml(second.addr, false)).unwrap();
    reload.send(()).await.unwrap();
    counted(admin, 1).await;
    assert_eq!(
        get_once(main, "/now", None).await.map(|(status, _)| status),
        Some(200)
    );
    assert!(
        second.signals.saw("GET /now"),
        "new requests take the new target"
    );
    assert_eq!(
        get_once(leaving, "/now", None).await,
        None,
        "the removed listener still accepts"
    );

    for (what, slow) in [("kept", slow_main), ("removed", slow_leaving)] {
        let answer = slow.await.unwrap();
        assert_eq!(
            answer.map(|(status, _)| status),
            Some(200),
            "the request in flight on the {what} listener"
        );
    }
    drop((main_port, leaving_port));
}

/// With `watch_config: true`, a file the configuration names counts too:
/// rotating the signing key file (as a Kubernetes Secret update does) is
/// picked up without a signal, and the JWKS names the new key.
#[tokio::test]
async fn watch_config_follows_the_files_the_configuration_names() {
    let main_port = upstream::dead_port();
    let main = main_port.addr;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.pem");
    let rotate = |pem: String| {
        let staged = dir.path().join("signing.pem.new");
        std::fs::write(&staged, pem).unwrap();
        std::fs::rename(&staged, &key).unwrap();
    };
    rotate(rcgen::KeyPair::generate().unwrap().serialize_pem());
    let file = dir.path().join("portcullis.yaml");
    let idp = "http://127.0.0.1:9";
    std::fs::write(
        &file,
        format!(
            r#"admin: {{ address: "127.0.0.1:0" }}
watch_config: true
sessions: {{ secrets: ["{secret}"] }}
signing: {{ private_key_file: "{key}" }}
listeners:
  - address: "{main}"
    rules:
      - actions:
          - authenticate_oidc:
              issuer: {idp}
              discovery: false
              authorization_endpoint: {idp}/authorize
              token_endpoint: {idp}/token
              user_info_endpoint: {idp}/userinfo
              jwks_uri: {idp}/jwks
              client_id: portcullis
              client_secret: secret
          - fixed_response: {{ status: 200 }}
"#,
            secret = common::SESSION_SECRET,
            key = key.display(),
        ),
    )
    .unwrap();
    let proxy = Portcullis::start(&file).await;
    drop(main_port);
    let kid = || async {
        let (status, body) = get_once(main, "/oauth2/jwks.json", None).await?;
        let jwks: Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| jwks["keys"][0]["kid"].as_str().map(str::to_owned))?
    };
    let first = kid().await.expect("the JWKS names a key");

    rotate(rcgen::KeyPair::generate().unwrap().serialize_pem());
    let rotated = eventually(PATIENCE, || async {
        kid().await.is_some_and(|now| now != first)
    })
    .await;
    assert!(
        rotated,
        "the new key was not picked up:\n{}",
        proxy.log.tail(10)
    );
    let counted = eventually(PATIENCE, || async { proxy.reloads("success").await == 1 }).await;
    assert!(counted, "the rotation was not one reload");
    assert_eq!(proxy.reloads("failure").await, 0);
}

/// A reload that adds an IdP which does not answer changes nothing, so
/// that a typo in a file every replica watches cannot take them all out of
/// service; with `watch_config` the same file is tried again later and
/// applies once the IdP answers.
#[tokio::test]
async fn a_new_idp_that_does_not_answer_fails_the_reload_until_it_does() {
    let upstream = upstream::start().await;
    let (main_port, idp_port) = (upstream::dead_port(), upstream::dead_port());
    let main = main_port.addr;
    let issuer = format!("http://{}", idp_port.addr);
    let generation = |number: usize, issuer| Generation {
        number,
        main: main.port(),
        second: 9,
        target: upstream.addr,
        public: upstream.addr,
        issuer,
        watch: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, generation(0, None).yaml()).unwrap();
    let (proxy, _reload) =
        common::start_reloading(&file, portcullis::internals::Clock::system()).await;
    let admin = proxy.admin.expect("an admin listener");

    std::fs::write(&file, generation(2, Some(&issuer)).yaml()).unwrap();
    let failed = eventually(PATIENCE, || async {
        common::reloads(admin, "failure").await == 1
    })
    .await;
    assert!(failed, "the reload with a dead IdP did not fail");
    assert_eq!(
        get_once(main, "/switch", None).await,
        Some((200, "generation 0".into()))
    );
    assert_eq!(
        admin_get(admin, "/readyz").await.status,
        200,
        "still in service"
    );

    // The IdP comes up; the file is the same, and is tried again.
    let idp = SlowIdp::start_on(idp_port.addr, Duration::ZERO).await;
    let took = until_body(main, "/switch", "generation 2").await;
    eprintln!("applied {took:?} after the IdP came up");
    assert_eq!(idp.discoveries(), 1);
    assert_eq!(admin_get(admin, "/readyz").await.status, 200);
    drop(main_port);
}

/// A file that is not UTF-8 fails once; the watcher does not try the same
/// bytes again every second.
#[tokio::test]
async fn a_file_that_is_not_utf8_fails_once() {
    let upstream = upstream::start().await;
    let main_port = upstream::dead_port();
    let generation = Generation {
        number: 0,
        main: main_port.addr.port(),
        second: 9,
        target: upstream.addr,
        public: upstream.addr,
        issuer: None,
        watch: true,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, generation.yaml()).unwrap();
    let (proxy, _reload) =
        common::start_reloading(&file, portcullis::internals::Clock::system()).await;
    let admin = proxy.admin.expect("an admin listener");
    let mut latin1 = generation.yaml().into_bytes();
    latin1.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(&file, latin1).unwrap();
    let failed = eventually(PATIENCE, || async {
        common::reloads(admin, "failure").await == 1
    })
    .await;
    assert!(failed, "the file was not tried");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        common::reloads(admin, "failure").await,
        1,
        "tried again every second"
    );
    drop(main_port);
}
