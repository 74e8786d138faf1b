//! An IdP that accepts connections and never answers, with many browsers
//! arriving at once: they share one discovery attempt, every navigation gets
//! its 561 within `idp_timeout`, a failure is remembered (the next wave fails
//! fast without calling the IdP again), and rules without authentication
//! keep answering meanwhile.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const SIGNER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portcullis/50dc6c495c0c9188";

/// As configured on the authenticating rule.
const IDP_TIMEOUT: Duration = Duration::from_secs(2);

/// The contract: every navigation that needs the IdP has its 561 within
/// `idp_timeout`; the extra second is for scheduling on a busy test machine.
const DEADLINE: Duration = Duration::from_secs(3);

const BROWSERS: usize = 20;

/// Longer than any answer the contract allows, shorter than the test
/// browser's own limit, so that a slow answer is reported with the others.
const GIVE_UP: Duration = Duration::from_secs(25);

/// Accepts TCP connections, holds them open and never writes a byte.
struct HungIdp {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl HungIdp {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            // Dropping a socket would close it, which is an answer.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Sends `BROWSERS` navigations to `url` at once, each from its own browser
/// (so its own connection); returns `(status, elapsed)` sorted by elapsed,
/// with status 0 for a navigation that got no answer within `GIVE_UP`.
async fn navigate_at_once(stack: &TlsStack, url: &str) -> Vec<(u16, Duration)> {
    let mut navigations = JoinSet::new();
    let sent = Instant::now();
    for _ in 0..BROWSERS {
        let mut browser = stack.browser();
        let url = url.to_owned();
        navigations.spawn(async move {
            let status = match tokio::time::timeout(GIVE_UP, browser.get(&url)).await {
                Ok(page) => page.status,
                Err(_) => 0,
            };
            (status, sent.elapsed())
        });
    }
    let mut answers = navigations.join_all().await;
    answers.sort_by_key(|(_, elapsed)| *elapsed);
    answers
}

fn print_timings(wave: &str, answers: &[(u16, Duration)]) {
    let timings: Vec<String> = answers
        .iter()
        .map(|(status, elapsed)| format!("{status}@{:.2}s", elapsed.as_secs_f64()))
        .collect();
    eprintln!("{wave}: {}", timings.join(" "));
}

#[track_caller]
fn assert_all_561_in_time(wave: &str, answers: &[(u16, Duration)]) {
    assert!(
        answers.iter().all(|(status, _)| *status == 561),
        "{wave}: every navigation gets 561: {answers:?}"
    );
    let slowest = answers.last().expect("at least one answer").1;
    assert!(
        slowest < DEADLINE,
        "{wave}: the slowest 561 came after {slowest:?}, not within {DEADLINE:?}: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_navigations_share_one_attempt_at_a_hung_idp_and_fail_in_time() {
    let idp = HungIdp::start().await;
    let stack = TlsStack::start(SIGNER, &[], |upstream| {
        format!(
            r#"      - name: open
        conditions: {{ path: ["/open/*"] }}
        actions:
          - forward: {{ target: "http://{upstream}" }}
      - name: app
        actions:
          - authenticate_oidc: {{ issuer: "http://{idp}", client_id: portcullis, client_secret: s, idp_timeout: {timeout}s }}
          - forward: {{ target: "http://{upstream}" }}"#,
            idp = idp.addr,
            timeout = IDP_TIMEOUT.as_secs(),
        )
    })
    .await;
    let app = stack.url("/app/page");

    // The first wave arrives while discovery (started with the proxy) hangs;
    // a rule without authentication answers meanwhile.
    let first = navigate_at_once(&stack, &app);
    let open = async {
        let mut browser = stack.browser();
        let sent = Instant::now();
        let page = browser.get(&stack.url("/open/page")).await;
        (page.status, sent.elapsed())
    };
    let (first, (open_status, open_elapsed)) = tokio::join!(first, open);
    print_timings("first wave", &first);
    eprintln!(
        "open rule during the outage: {open_status}@{:.2}s",
        open_elapsed.as_secs_f64()
    );
    assert_all_561_in_time("first wave", &first);
    assert_eq!(
        open_status, 200,
        "a rule without authentication still answers"
    );
    assert!(
        open_elapsed < IDP_TIMEOUT,
        "the open rule waited for the IdP: {open_elapsed:?}"
    );

    // Right after the failure: remembered, so no new attempt is waited for.
    let second = navigate_at_once(&stack, &app).await;
    print_timings("second wave", &second);
    assert_all_561_in_time("second wave", &second);

    let attempts = idp.accepted();
    eprintln!("connections the hung IdP accepted: {attempts}");
    // One shared attempt for the first wave; a second only if the retry
    // backoff (1 s after the failure) elapsed before the second wave was in.
    assert!(
        (1..=2).contains(&attempts),
        "{} navigations made {attempts} attempts at the IdP",
        2 * BROWSERS
    );
}
