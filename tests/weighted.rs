//! Weighted forwarding (ALB's forward to several target groups) end to end:
//! two real upstreams behind one rule, requests split by the weights, a
//! browser kept on its target by the `AWSALBTG` cookie (and a response
//! setting it kept from shared caches), a forged cookie ignored, and a dead
//! target a 502 counted by target in the metrics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

const HOST: &str = "app.test";

async fn proxy(targets: &[(SocketAddr, u16)], stickiness: &str) -> Running {
    let targets: Vec<String> = targets
        .iter()
        .map(|(addr, weight)| format!(r#"{{ target: "http://{addr}", weight: {weight} }}"#))
        .collect();
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
sessions: {{ secrets: ["{SESSION_SECRET}"] }}
listeners:
  - address: "127.0.0.1:0"
    rules:
      - name: canary
        actions:
          - forward:
              targets: [{targets}]
              {stickiness}
"#,
        targets = targets.join(", "),
    );
    start(load_yaml(&yaml, &[])).await
}

/// Two upstreams of weight 50 behind a rule with an hour's stickiness.
async fn sticky_proxy() -> (upstream::Upstream, upstream::Upstream, Running) {
    let first = upstream::start().await;
    let second = upstream::start().await;
    let proxy = proxy(
        &[(first.addr, 50), (second.addr, 50)],
        "stickiness: { duration: 1h }",
    )
    .await;
    (first, second, proxy)
}

fn request(cookie: Option<&str>) -> Request<Full<Bytes>> {
    request_for("/", cookie)
}

fn request_for(path: &str, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().uri(path).header("host", HOST);
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn seen(upstream: &upstream::Upstream) -> usize {
    upstream.signals.seen.lock().unwrap().len()
}

/// The `AWSALBTG=…` pair of a response's `Set-Cookie`, if it set one.
fn sticky_cookie(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("AWSALBTG="))
        .map(|value| value.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn ten_thousand_requests_split_ninety_ten() {
    let heavy = upstream::start().await;
    let light = upstream::start().await;
    let proxy = proxy(&[(heavy.addr, 90), (light.addr, 10)], "").await;
    let addr = proxy.addr();
    let total = 10_000usize;
    let workers = 16;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..total / workers {
                    let answer = http1(addr, request(None)).await;
                    assert_eq!(answer.status, 200);
                    assert!(sticky_cookie(&answer).is_none(), "no stickiness asked");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (heavy_seen, light_seen) = (seen(&heavy), seen(&light));
    assert_eq!(heavy_seen + light_seen, total);
    // 90 % within 2 percentage points: 8,800 to 9,200.
    let share = heavy_seen as f64 / total as f64;
    eprintln!("weight 90: {heavy_seen} requests, weight 10: {light_seen}");
    assert!(
        (0.88..=0.92).contains(&share),
        "{heavy_seen} of {total} went to the weight-90 target"
    );
}

#[tokio::test]
async fn stickiness_keeps_a_browser_on_its_target_and_ignores_forgeries() {
    let (first, second, proxy) = sticky_proxy().await;
    let answer = http1(proxy.addr(), request(None)).await;
    assert_eq!(answer.status, 200);
    let cookie = sticky_cookie(&answer).expect("a stickiness cookie");
    let set = answer.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("Max-Age=3600") && set.contains("HttpOnly"),
        "{set}"
    );
    let (on_first, on_second) = (seen(&first), seen(&second));
    let (mine, other) = if on_first == 1 {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert_eq!(on_first + on_second, 1);

    // Fifty more with the cookie: every one on the same target, no new cookie.
    for _ in 0..50 {
        let answer = http1(proxy.addr(), request(Some(&cookie))).await;
        assert_eq!(answer.status, 200);
        assert!(sticky_cookie(&answer).is_none());
        // The upstream never sees the proxy's cookie.
        assert!(
            answer.json()["headers"].get("cookie").is_none(),
            "{}",
            answer.text()
        );
    }
    assert_eq!(seen(mine), 51);
    assert_eq!(seen(other), 0);

    // A cookie pointing at the other target by hand is not believed: the
    // request is placed by the weights and gets a cookie of its own.
    let (index, rest) = cookie["AWSALBTG=".len()..].split_once('.').unwrap();
    let flipped = if index == "0" { "1" } else { "0" };
    for forged in [
        format!("AWSALBTG={flipped}.{rest}"),
        format!("AWSALBTG={flipped}.99999999999.AAAAAAAAAAAAAAAAAAAAAA"),
        "AWSALBTG=garbage".to_owned(),
    ] {
        let answer = http1(proxy.addr(), request(Some(&forged))).await;
        assert_eq!(answer.status, 200);
        assert!(sticky_cookie(&answer).is_some(), "{forged} was believed");
    }
}

#[tokio::test]
async fn a_response_that_sets_the_stickiness_cookie_is_private() {
    let (_first, _second, proxy) = sticky_proxy().await;
    // The upstream says any cache may keep this page for ten minutes; with
    // the proxy's cookie in it, a shared cache must not.
    const PAGE: &str = "/app/public-cache/page";
    let answer = http1(proxy.addr(), request_for(PAGE, None)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let cookie = sticky_cookie(&answer).expect("a stickiness cookie");
    assert_eq!(answer.headers["cache-control"], "private, max-age=600");
    // Without a cookie of the proxy's, the upstream's word stands.
    let answer = http1(proxy.addr(), request_for(PAGE, Some(&cookie))).await;
    assert!(sticky_cookie(&answer).is_none());
    assert_eq!(answer.headers["cache-control"], "public, max-age=600");
}

/// Without `sessions.secrets` the stickiness key is made at start; a reload
/// keeps it, so browsers stay on their targets through configuration edits.
#[tokio::test]
async fn stickiness_without_secrets_survives_a_reload() {
    let (first, second) = (upstream::start().await, upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(
        &file,
        format!(
            r#"admin: {{ address: "127.0.0.1:0" }}
listeners:
  - address: "127.0.0.1:0"
    rules:
      - actions:
          - forward:
              targets: [{{ target: "http://{first}", weight: 50 }}, {{ target: "http://{second}", weight: 50 }}]
              stickiness: {{ duration: 1h }}
"#,
            first = first.addr,
            second = second.addr,
        ),
    )
    .unwrap();
    let (proxy, reload) = start_reloading(&file, portcullis::internals::Clock::system()).await;
    let answer = http1(proxy.addr(), request(None)).await;
    let cookie = sticky_cookie(&answer).expect("a stickiness cookie");
    let admin = proxy.admin.expect("an admin listener");
    reload.send(()).await.unwrap();
    let reloaded = eventually(Duration::from_secs(10), || async {
        reloads(admin, "success").await == 1
    })
    .await;
    assert!(reloaded, "the reload was not counted");

    let before = (seen(&first), seen(&second));
    for _ in 0..20 {
        let answer = http1(proxy.addr(), request(Some(&cookie))).await;
        assert_eq!(answer.status, 200);
    }
    let moved = (seen(&first) - before.0, seen(&second) - before.1);
    assert!(
        moved == (20, 0) || moved == (0, 20),
        "the browser was spread over both targets after the reload: {moved:?}"
    );
}

#[tokio::test]
async fn a_dead_target_is_a_502_counted_by_target() {
    let alive = upstream::start().await;
    let dead = upstream::dead_port();
    let proxy = proxy(&[(alive.addr, 1), (dead.addr, 1)], "").await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(http1(proxy.addr(), request(None)).await.status);
    }
    let failed = statuses.iter().filter(|&&status| status == 502).count();
    assert!(
        failed > 0 && statuses.iter().all(|&s| s == 200 || s == 502),
        "{statuses:?}"
    );
    assert_eq!(seen(&alive), statuses.len() - failed);
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.text();
    let line = format!(
        r#"portcullis_upstream_errors_total{{target="http://{}/",error="connect"}} {failed}"#,
        dead.addr
    );
    assert!(metrics.contains(&line), "{line}\n{metrics}");
}
