//! Three `portcullis run` replicas behind a real nginx (round-robin, no
//! stickiness), sharing one `redis-server` (`sessions.store: redis`) and
//! logging in through node-oidc-provider: a session made on one replica is
//! honoured by all, sign-out and the IdP's back-channel logout end it on
//! every replica, one refresh serves all of them, and neither a dead replica
//! nor a Redis outage costs a session that can be kept.
//!
//! Needs node (see tests/oidc), `redis-server` and nginx (`/usr/sbin/nginx`,
//! or `$NGINX`); scripts/deps installs them. A missing one fails the test:
//! only `PORTCULLIS_SKIP_REDIS_TESTS=1` or `PORTCULLIS_SKIP_NGINX_TESTS=1`
//! skip it, loudly.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::browser::{Browser, Page};
use common::front::{self, Front, Log, PATIENCE};
use common::idp::NodeIdp;
use common::redis::RedisServer;
use common::upstream::{self, DeadPort, Upstream};
use common::{Answer, admin_get, eventually, http1, process};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::process::Child;

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-secret";
const SIGNER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";
/// The one cookie a Redis ticket travels in.
const TICKET: &str = "AWSELBAuthSessionCookie-0";
const REPLICAS: usize = 3;
/// How long a process may take to say where it listens.
/// How long a replica may keep serving a session it opened after the session
/// was deleted (it caches an opened session until the end of the second),
/// plus room for a busy machine.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);

/// What varies between the tests' stacks.
struct Options {
    /// Merged into the IdP's configuration (tests/oidc/README.md).
    idp: Value,
    /// The IdP posts logout tokens to nginx's `/oauth2/backchannel_logout`,
    /// with a `sid`.
    backchannel_logout: bool,
    /// `sessions.redis.timeout`.
    redis_timeout: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            idp: json!({}),
            backchannel_logout: false,
            redis_timeout: "2s",
        }
    }
}

/// One test's world: the IdP, Redis, the application, three replicas and
/// nginx in front of them.
struct Cluster {
    idp: NodeIdp,
    redis: RedisServer,
    replicas: Vec<Replica>,
    nginx: Front,
    /// Holds the configuration and the shared signing key.
    _dir: tempfile::TempDir,
    _upstream: Upstream,
}

impl Cluster {
    /// `None` only when a tool is missing and its tests are explicitly skipped.
    async fn start(options: Options) -> Option<Self> {
        let redis = RedisServer::start()?;
        let nginx_bin = front::nginx_binary("replicas behind a load balancer")?;
        // nginx's port is fixed first: the IdP must know where to send the
        // browser back and where to post logout tokens before the replicas,
        // which need the IdP, exist.
        let front = upstream::dead_port();
        let origin = format!("http://localhost:{}", front.addr.port());

        let mut client = json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{origin}/oauth2/idpresponse")],
            "post_logout_redirect_uris": [format!("{origin}/signed-out")],
        });
        let mut idp_config = json!({});
        if options.backchannel_logout {
            // An IP, not `localhost`: node may try `::1` first, where nginx is not.
            let uri = format!("http://{}/oauth2/backchannel_logout", front.addr);
            merge(
                &mut client,
                &json!({ "backchannel_logout_uri": uri, "backchannel_logout_session_required": true }),
            );
            idp_config["backchannelLogout"] = json!(true);
        }
        idp_config["clients"] = json!([client]);
        merge(&mut idp_config, &options.idp);
        let idp = NodeIdp::start(idp_config).await;

        let upstream = upstream::start().await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let key = dir.path().join("signing.pem");
        std::fs::write(&key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            replica_config(&idp.issuer, &redis, options.redis_timeout, &key, &upstream),
        )
        .unwrap();

        let mut replicas = Vec::with_capacity(REPLICAS);
        for index in 0..REPLICAS {
            replicas.push(Replica::start(index, &config).await);
        }
        for replica in &replicas {
            let ready = eventually(PATIENCE, || async {
                admin_get(replica.admin, "/readyz").await.status == 200
            })
            .await;
            assert!(
                ready,
                "replica {} never got ready:\n{}",
                replica.index,
                replica.log()
            );
        }
        let addrs: Vec<SocketAddr> = replicas.iter().map(|replica| replica.addr).collect();
        let nginx = balancer(&nginx_bin, front, &addrs).await;
        Some(Self {
            idp,
            redis,
            replicas,
            nginx,
            _dir: dir,
            _upstream: upstream,
        })
    }

    /// `http://localhost:PORT` + `path`: through nginx, as a browser sees it.
    fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.nginx.addr.port())
    }

    /// Logs alice in through nginx; returns the browser and its ticket.
    async fn login(&self) -> (Browser, String) {
        let mut browser = Browser::new(None);
        let page = browser
            .login(&self.url("/app/start"), "alice", "any password")
            .await;
        assert_eq!(
            page.status, 200,
            "login did not end on the application: {:#?}\n{}",
            page.hops, page.body
        );
        assert_eq!(page.json()["headers"]["x-amzn-oidc-identity"][0], "alice");
        let ticket = browser
            .cookie("localhost", TICKET)
            .expect("the login set the ticket cookie");
        (browser, ticket)
    }

    /// `portcullis_requests_total` of rule `app` with `code`, per replica.
    async fn served(&self, code: u16) -> Vec<u64> {
        let mut counts = Vec::with_capacity(self.replicas.len());
        for replica in &self.replicas {
            let text = replica.metrics().await;
            counts.push(metric(
                &text,
                &format!(r#"portcullis_requests_total{{rule="app",code="{code}"}}"#),
            ));
        }
        counts
    }

    /// The session keys in Redis.
    fn sessions_in_redis(&self) -> Vec<String> {
        let client = ::redis::Client::open(self.redis.url()).expect("a valid Redis URL");
        let mut conn = client.get_connection().expect("Redis answers");
        ::redis::cmd("KEYS")
            .arg("portcullis:session:*")
            .query(&mut conn)
            .expect("KEYS answers")
    }
}

fn merge(into: &mut Value, extra: &Value) {
    if let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            into.insert(key.clone(), value.clone());
        }
    }
}

/// One configuration for every replica: the same secrets, signing key,
/// Redis and IdP; each binds its own ports (`127.0.0.1:0`).
fn replica_config(
    issuer: &str,
    redis: &RedisServer,
    timeout: &str,
    key: &Path,
    upstream: &Upstream,
) -> String {
    format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
shutdown_timeout: 1s
sessions:
  secrets: ["{secret}"]
  store: redis
  redis: {{ url: "{url}", key_prefix: "portcullis:", timeout: {timeout} }}
signing:
  private_key_file: {key}
  signer: "{SIGNER}"
listeners:
  - address: "127.0.0.1:0"
    rules:
      - name: app
        actions:
          - authenticate_oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret: {CLIENT_SECRET}
              scope: openid email profile
              authentication_request_extra_params: {{ prompt: login }}
              sign_out_redirect: /signed-out
          - forward: {{ target: "http://{upstream}" }}
"#,
        secret = common::SESSION_SECRET,
        url = redis.url(),
        key = key.display(),
        upstream = upstream.addr,
    )
}

/// The value of the sample `series` (name and labels exactly) in a
/// Prometheus text exposition; 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

// ------------------------------------------------------------ processes ---

/// One `portcullis run --config FILE --log-format json`.
struct Replica {
    index: usize,
    /// Its plain-HTTP listener.
    addr: SocketAddr,
    admin: SocketAddr,
    /// `None` once killed.
    child: Option<Child>,
    log: Log,
}

impl Replica {
    async fn start(index: usize, config: &Path) -> Self {
        let (child, log) = process::run(config);
        let addr = log
            .wait_for("listening", process::logged_address("listening"))
            .await;
        let admin = log
            .wait_for(
                "admin listening",
                process::logged_address("admin listening"),
            )
            .await;
        Self {
            index,
            addr,
            admin,
            child: Some(child),
            log,
        }
    }

    async fn metrics(&self) -> String {
        admin_get(self.admin, "/metrics").await.text()
    }

    /// SIGKILL: no graceful shutdown, as when a node disappears.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("the replica can be killed");
        }
    }

    fn log(&self) -> String {
        self.log.tail(40)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- replica {} ({}) log, last lines ---\n{}",
                self.index,
                self.addr,
                self.log()
            );
        }
    }
}

/// nginx balancing round-robin over the replicas: no ip_hash, no sticky
/// cookie. Connection errors go to the next replica (nginx's default
/// `proxy_next_upstream error timeout`).
async fn balancer(binary: &Path, port: DeadPort, replicas: &[SocketAddr]) -> Front {
    let servers: String = replicas
        .iter()
        .map(|addr| format!("        server {addr};\n"))
        .collect();
    let http = format!(
        r#"    upstream replicas {{
{servers}    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://replicas;
            proxy_set_header Host $http_host;
        }}
    }}"#,
        addr = port.addr,
    );
    front::nginx(binary, port, &http).await
}

// -------------------------------------------------------------- requests ---

/// A navigation with `ticket` straight to one replica, bypassing nginx.
async fn navigate_with(addr: SocketAddr, ticket: &str, path: &str) -> Answer {
    direct(addr, Some(ticket), path, false).await
}

/// A `GET` straight to one replica: a navigation, or an API call
/// (`Accept: application/json`), with the ticket cookie when given.
async fn direct(addr: SocketAddr, ticket: Option<&str>, path: &str, api: bool) -> Answer {
    let mut request = Request::get(path).header("host", format!("localhost:{}", addr.port()));
    request = if api {
        request.header("accept", "application/json")
    } else {
        request
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate")
    };
    if let Some(ticket) = ticket {
        request = request.header("cookie", format!("{TICKET}={ticket}"));
    }
    http1(addr, request.body(Full::new(Bytes::new())).unwrap()).await
}

/// The identity the application saw, when the answer is the application's.
fn identity(answer: &Answer) -> Option<String> {
    if answer.status != 200 {
        return None;
    }
    answer.json()["headers"]["x-amzn-oidc-identity"][0]
        .as_str()
        .map(str::to_owned)
}

fn page_identity(page: &Page) -> Option<String> {
    if page.status != 200 {
        return None;
    }
    page.json()["headers"]["x-amzn-oidc-identity"][0]
        .as_str()
        .map(str::to_owned)
}

/// Replays `ticket` to `replica` until it is refused (302 to the IdP for a
/// navigation, 401 for an API call); panics on anything but the application
/// or a refusal, or when still served [`REVOCATION_BOUND`] after `ended`.
/// Returns when, after `ended`, the replica refused it.
async fn until_refused(
    cluster: &Cluster,
    replica: &Replica,
    ticket: &str,
    api: bool,
    ended: Instant,
) -> Duration {
    loop {
        let answer = direct(replica.addr, Some(ticket), "/app/after", api).await;
        let refused = if api {
            answer.status == 401
        } else {
            answer.status == 302
                && answer
                    .headers
                    .get("location")
                    .and_then(|location| location.to_str().ok())
                    .is_some_and(|location| location.starts_with(&cluster.idp.url("/auth")))
        };
        if refused {
            return ended.elapsed();
        }
        assert_eq!(
            identity(&answer).as_deref(),
            Some("alice"),
            "replica {}: neither the application nor a refusal: {} {:?} {}",
            replica.index,
            answer.status,
            answer.headers,
            answer.text()
        );
        assert!(
            ended.elapsed() < REVOCATION_BOUND,
            "replica {} still serves the ended session after {REVOCATION_BOUND:?}",
            replica.index
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every replica serves `ticket` (and so holds it opened for the next second).
async fn served_by_every_replica(cluster: &Cluster, ticket: &str) {
    for replica in &cluster.replicas {
        let answer = navigate_with(replica.addr, ticket, "/app/direct").await;
        assert_eq!(
            identity(&answer).as_deref(),
            Some("alice"),
            "replica {} refused the session: {} {}",
            replica.index,
            answer.status,
            answer.text()
        );
    }
}

// ----------------------------------------------------------------- tests ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_replica_is_honoured_by_all() {
    let Some(cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let (mut browser, ticket) = cluster.login().await;
    // The browser holds a ticket, not the session: one short cookie, and the
    // session itself in Redis.
    let session_cookies: Vec<(String, String)> = browser
        .cookies("localhost")
        .into_iter()
        .filter(|(name, _)| name.starts_with("AWSELBAuthSessionCookie"))
        .collect();
    assert_eq!(session_cookies.len(), 1, "{session_cookies:?}");
    assert!(ticket.len() < 200, "a ticket, not a session: {ticket}");
    assert_eq!(cluster.sessions_in_redis().len(), 1);

    let before = cluster.served(200).await;
    for index in 0..200 {
        let page = browser.get(&cluster.url(&format!("/app/{index}"))).await;
        assert_eq!(
            page_identity(&page).as_deref(),
            Some("alice"),
            "request {index}: {} {}",
            page.status,
            page.body
        );
    }
    let after = cluster.served(200).await;
    let spread: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(spread.iter().sum::<u64>(), 200, "{spread:?}");
    assert!(
        spread.iter().all(|&served| served > 0),
        "every replica served some of the requests: {spread:?}"
    );
    assert_eq!(browser.cookie("localhost", TICKET), Some(ticket));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_on_one_replica_ends_the_session_on_every_replica() {
    let Some(cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let (mut browser, ticket) = cluster.login().await;
    // Each replica opens the session now, and may reuse it for a second.
    served_by_every_replica(&cluster, &ticket).await;

    let signed_out = browser.get(&cluster.url("/oauth2/sign_out")).await;
    let ended = Instant::now();
    assert_eq!(signed_out.status, 302, "{}", signed_out.body);
    assert!(
        signed_out
            .location()
            .is_some_and(|location| location.starts_with(&cluster.idp.url("/session/end"))),
        "{:?}",
        signed_out.location()
    );
    assert_eq!(browser.cookie("localhost", TICKET), None);
    assert!(cluster.sessions_in_redis().is_empty());

    // A copy of the ticket is refused everywhere, not only where it was signed out.
    let mut refused = Vec::new();
    for replica in &cluster.replicas {
        refused.push(until_refused(&cluster, replica, &ticket, false, ended).await);
    }
    eprintln!("after sign-out, the replicas refused the copied ticket at {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_does_not_end_sessions() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let (_, ticket) = cluster.login().await;

    // Three browsers' worth of traffic with the one ticket; replica 1 dies
    // after the first 30 answers.
    let answered = Arc::new(AtomicUsize::new(0));
    let traffic: Vec<_> = (0..3)
        .map(|lane| {
            let url = cluster.url(&format!("/app/lane-{lane}"));
            let (ticket, answered) = (ticket.clone(), answered.clone());
            tokio::spawn(async move {
                let mut browser = Browser::new(None);
                browser.set_cookie("localhost", TICKET, &ticket);
                let mut pages = Vec::new();
                for _ in 0..40 {
                    pages.push(browser.get(&url).await);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                (pages, browser.cookie("localhost", TICKET))
            })
        })
        .collect();
    let reached = eventually(PATIENCE, || async { answered.load(Ordering::SeqCst) >= 30 }).await;
    assert!(reached, "the traffic did not start");
    cluster.replicas[1].kill().await;
    assert!(
        tokio::net::TcpStream::connect(cluster.replicas[1].addr)
            .await
            .is_err()
    );

    for lane in traffic {
        let (pages, kept) = lane.await.expect("the traffic lane ran to its end");
        for page in &pages {
            assert_eq!(
                page_identity(page).as_deref(),
                Some("alice"),
                "{} {}",
                page.status,
                page.body
            );
        }
        assert_eq!(
            kept.as_deref(),
            Some(ticket.as_str()),
            "the same ticket throughout"
        );
    }
    // nginx did send requests to the dead replica and moved them on.
    let dead = cluster.replicas[1].addr.to_string();
    assert!(
        cluster.nginx.log.text().contains(&dead),
        "nginx never met the dead replica:\n{}",
        cluster.nginx.log.text()
    );

    // From now on the survivors serve everything.
    let mut browser = Browser::new(None);
    browser.set_cookie("localhost", TICKET, &ticket);
    let survivors = [0, 2];
    let mut before = Vec::new();
    for &index in &survivors {
        let text = cluster.replicas[index].metrics().await;
        before.push(metric(
            &text,
            r#"portcullis_requests_total{rule="app",code="200"}"#,
        ));
    }
    for index in 0..20 {
        let page = browser
            .get(&cluster.url(&format!("/app/after-{index}")))
            .await;
        assert_eq!(
            page_identity(&page).as_deref(),
            Some("alice"),
            "{}",
            page.body
        );
    }
    let mut after = Vec::new();
    for &index in &survivors {
        let text = cluster.replicas[index].metrics().await;
        after.push(metric(
            &text,
            r#"portcullis_requests_total{rule="app",code="200"}"#,
        ));
    }
    let spread: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(spread.iter().sum::<u64>(), 20, "{spread:?}");
    assert!(spread.iter().all(|&served| served > 0), "{spread:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_refresh_for_twenty_concurrent_requests_across_replicas() {
    // 4 s: the login's own requests must not see the token expire.
    let options = Options {
        idp: json!({ "accessTokenTtl": 4, "issueRefreshToken": true }),
        ..Options::default()
    };
    let Some(cluster) = Cluster::start(options).await else {
        return;
    };
    let (mut browser, ticket) = cluster.login().await;
    let first = browser.get(&cluster.url("/app/first")).await;
    let old_token = first.json()["headers"]["x-amzn-oidc-accesstoken"][0].clone();
    assert_eq!(cluster.idp.stats().await["grants"]["refresh_token"], 0);
    tokio::time::sleep(Duration::from_millis(4500)).await;

    // Seven, seven and six requests on the three replicas, all at once.
    let requests = (0..20).map(|index| {
        let addr = cluster.replicas[index % REPLICAS].addr;
        let ticket = ticket.clone();
        async move { navigate_with(addr, &ticket, &format!("/app/concurrent-{index}")).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut tokens = Vec::new();
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(
            identity(answer).as_deref(),
            Some("alice"),
            "request {index} (replica {}): {} {}",
            index % REPLICAS,
            answer.status,
            answer.text()
        );
        let token = answer.json()["headers"]["x-amzn-oidc-accesstoken"][0].clone();
        assert_ne!(token, old_token, "request {index}: the token was refreshed");
        tokens.push(token);
    }
    let stats = cluster.idp.stats().await;
    assert_eq!(
        stats["grants"]["refresh_token"], 1,
        "exactly one refresh at the provider for the three replicas: {stats}"
    );
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every request carries the one new token");
    // Only the replica that called the IdP counts a refresh; the others
    // waited for its tokens.
    let mut refreshes = 0;
    for replica in &cluster.replicas {
        let metrics = replica.metrics().await;
        refreshes += metric(
            &metrics,
            r#"portcullis_auth_refresh_total{result="success"}"#,
        );
    }
    assert_eq!(refreshes, 1, "one refresh counted across the replicas");
}

/// Sends `ticket` to `replica` until it gets 503 (it may serve the session
/// it opened for the rest of the second after `since`); every answer comes
/// within `limit`, so the timeout bounds a request's wait.
async fn outage_is_503(replica: &Replica, ticket: &str, since: Instant, limit: Duration) {
    loop {
        let sent = Instant::now();
        let answer = navigate_with(replica.addr, ticket, "/app/outage").await;
        let took = sent.elapsed();
        assert!(
            took < limit,
            "replica {}: {} after {took:?}",
            replica.index,
            answer.status
        );
        if answer.status == 503 {
            return;
        }
        assert_eq!(
            identity(&answer).as_deref(),
            Some("alice"),
            "replica {}: {} {}",
            replica.index,
            answer.status,
            answer.text()
        );
        assert!(
            since.elapsed() < REVOCATION_BOUND + limit,
            "replica {} still serves the session from memory",
            replica.index
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_then_recovers() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    /// Time beyond the timeout for the request itself on a busy machine.
    const MARGIN: Duration = Duration::from_millis(1000);
    let options = Options {
        redis_timeout: "500ms",
        ..Options::default()
    };
    let Some(mut cluster) = Cluster::start(options).await else {
        return;
    };
    let (_, ticket) = cluster.login().await;
    served_by_every_replica(&cluster, &ticket).await;

    // A Redis that stops answering: each call gives up after the timeout.
    cluster.redis.freeze(true);
    let frozen = Instant::now();
    for replica in &cluster.replicas {
        outage_is_503(replica, &ticket, frozen, TIMEOUT + MARGIN).await;
    }
    cluster.redis.freeze(false);
    // Only slow, not lost: the session is still there.
    let recovered = eventually(Duration::from_secs(5), || async {
        for replica in &cluster.replicas {
            let answer = navigate_with(replica.addr, &ticket, "/app/thawed").await;
            if identity(&answer).as_deref() != Some("alice") {
                return false;
            }
        }
        true
    })
    .await;
    assert!(recovered, "the session did not come back with Redis");

    // A Redis that is gone: connections are refused.
    cluster.redis.stop();
    let stopped = Instant::now();
    for replica in &cluster.replicas {
        outage_is_503(replica, &ticket, stopped, TIMEOUT + MARGIN).await;
    }
    // A request that needs no session still gets its login redirect.
    let anonymous = direct(cluster.replicas[0].addr, None, "/app/anonymous", false).await;
    assert_eq!(anonymous.status, 302, "{}", anonymous.text());

    for replica in &cluster.replicas {
        let not_ready = eventually(Duration::from_millis(2500), || async {
            admin_get(replica.admin, "/readyz").await.status == 503
        })
        .await;
        assert!(
            not_ready,
            "replica {} still ready without Redis",
            replica.index
        );
    }

    // Redis comes back empty on the same port: no restart of any replica,
    // the session is gone (a login, not a 503), and everyone is ready again.
    cluster.redis.restart();
    for replica in &cluster.replicas {
        let ready = eventually(Duration::from_secs(5), || async {
            admin_get(replica.admin, "/readyz").await.status == 200
        })
        .await;
        assert!(
            ready,
            "replica {} not ready again with Redis back",
            replica.index
        );
        let answer = navigate_with(replica.addr, &ticket, "/app/recovered").await;
        assert_eq!(
            answer.status,
            302,
            "replica {}: {}",
            replica.index,
            answer.text()
        );
    }
    let (_, fresh) = cluster.login().await;
    served_by_every_replica(&cluster, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_from_the_idp_ends_the_session_on_every_replica() {
    let options = Options {
        backchannel_logout: true,
        ..Options::default()
    };
    let Some(cluster) = Cluster::start(options).await else {
        return;
    };
    let (mut browser, ticket) = cluster.login().await;
    // Another login of the same user is another IdP session (another `sid`).
    let (_, other_ticket) = cluster.login().await;

    // A logout token that does not verify is refused and ends nothing.
    let forged = forged_logout(&cluster).await;
    assert_eq!(forged.status, 400, "{}", forged.text());
    served_by_every_replica(&cluster, &ticket).await;

    // The user signs out at the IdP itself, never visiting the proxy.
    let confirm = browser
        .follow(
            &cluster
                .idp
                .url(&format!("/session/end?client_id={CLIENT_ID}")),
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let done = browser.submit_form(&confirm, &[("logout", "yes")]).await;
    assert_eq!(done.status, 200, "{:#?}\n{}", done.hops, done.body);
    let stats = cluster.idp.stats().await;
    assert_eq!(stats["end_sessions"], 1, "{stats}");
    assert_eq!(
        (
            stats["backchannel_logouts"].clone(),
            stats["backchannel_logout_errors"].clone()
        ),
        (json!(1), json!(0)),
        "the proxy took the logout token: {stats}\n{}",
        cluster.idp.log()
    );

    let ended = Instant::now();
    let mut refused = Vec::new();
    for replica in &cluster.replicas {
        refused.push(until_refused(&cluster, replica, &ticket, true, ended).await);
    }
    eprintln!("after the IdP's logout, the replicas refused the ticket at {refused:?}");
    // The browser was never told: its cookie is still there, and refused.
    assert_eq!(browser.cookie("localhost", TICKET), Some(ticket));
    // The logout named one IdP session: the other one lives on.
    served_by_every_replica(&cluster, &other_ticket).await;
}

/// POSTs a logout token signed by nobody the proxy trusts, through nginx.
async fn forged_logout(cluster: &Cluster) -> Answer {
    let token = format!(
        "{}.{}.c2lnbmF0dXJl",
        b64url(r#"{"alg":"RS256","kid":"forged"}"#),
        b64url(&format!(
            r#"{{"iss":"{}","aud":"{CLIENT_ID}","iat":{now},"jti":"forged","sub":"alice","events":{{"http://schemas.openid.net/event/backchannel-logout":{{}}}}}}"#,
            cluster.idp.issuer,
            now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        )),
    );
    let body = format!("logout_token={token}");
    let request = Request::post("/oauth2/backchannel_logout")
        .header("host", format!("localhost:{}", cluster.nginx.addr.port()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    http1(cluster.nginx.addr, request).await
}

fn b64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
