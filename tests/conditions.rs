//! End-to-end tests of the ALB rule conditions beyond host and path: the
//! real server on `127.0.0.1:0`, each rule answering with its own name.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

/// A listener whose rules (`conditions`, as YAML flow maps) answer with
/// `rule-N`, and a last rule that answers `default`.
async fn proxy_with(conditions: &[&str]) -> Running {
    let mut rules = String::new();
    for (index, condition) in conditions.iter().enumerate() {
        rules.push_str(&format!(
            "      - conditions: {{ {condition} }}\n        actions:\n          - fixed_response: {{ status: 200, body: rule-{index} }}\n"
        ));
    }
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:0\n    rules:\n{rules}      - actions:\n          - fixed_response: {{ status: 200, body: default }}\n"
    );
    start(load_yaml(&yaml, &[])).await
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "app.example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

async fn answered_by(proxy: &Running, request: Request<Full<Bytes>>) -> String {
    let answer = http1(proxy.addr(), request).await;
    assert_eq!(answer.status, 200);
    answer.text()
}

#[tokio::test]
async fn http_header_conditions_match_any_instance_ignoring_case() {
    let proxy = proxy_with(&["http_header: { name: X-Env, values: [\"beta*\", \"qa\"] }"]).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("x-env", "Beta-2")], "rule-0"),
        (&[("X-ENV", "QA")], "rule-0"),
        (&[("x-env", "prod"), ("x-env", "qa")], "rule-0"),
        (&[("x-env", "prod")], "default"),
        (&[], "default"),
        // Named by `Connection`, the header is removed before the rules
        // look: a rule sees the request as the upstream would.
        (&[("x-env", "beta"), ("connection", "x-env")], "default"),
    ];
    for (headers, expected) in cases {
        let got = answered_by(&proxy, request("GET", "/", headers)).await;
        assert_eq!(got, *expected, "{headers:?}");
    }
}

#[tokio::test]
async fn http_request_method_conditions_are_exact() {
    let proxy = proxy_with(&["http_request_method: [POST, PUT]"]).await;
    for (method, expected) in [
        ("POST", "rule-0"),
        ("PUT", "rule-0"),
        ("GET", "default"),
        ("DELETE", "default"),
    ] {
        let got = answered_by(&proxy, request(method, "/", &[])).await;
        assert_eq!(got, expected, "{method}");
    }
}

#[tokio::test]
async fn query_string_conditions_match_decoded_pairs() {
    let proxy = proxy_with(&[
        "query_string: [{ key: version, value: \"v1*\" }]",
        "query_string: [{ value: \"*example*\" }]",
    ])
    .await;
    for (target, expected) in [
        ("/?version=v1.2", "rule-0"),
        ("/?VERSION=V1", "rule-0"),
        ("/?version=v2&version=v1", "rule-0"),
        ("/?%76ersion=%761", "rule-0"),
        ("/?q=an%20Example", "rule-1"),
        ("/?version=v2", "default"),
        ("/?example", "default"),
        ("/", "default"),
    ] {
        let got = answered_by(&proxy, request("GET", target, &[])).await;
        assert_eq!(got, expected, "{target}");
    }
}

#[tokio::test]
async fn source_ip_conditions_match_the_tcp_peer_not_x_forwarded_for() {
    let proxy = proxy_with(&[
        "source_ip: [\"10.0.0.0/8\"]",
        "source_ip: [\"127.0.0.1/32\", \"::1/128\"]",
    ])
    .await;
    let got = answered_by(&proxy, request("GET", "/", &[])).await;
    assert_eq!(got, "rule-1");
    let spoofed = request("GET", "/", &[("x-forwarded-for", "10.1.2.3")]);
    assert_eq!(answered_by(&proxy, spoofed).await, "rule-1");

    let elsewhere = proxy_with(&["source_ip: [\"10.0.0.0/8\"]"]).await;
    let got = answered_by(&elsewhere, request("GET", "/", &[])).await;
    assert_eq!(got, "default");
}

#[tokio::test]
async fn every_condition_of_a_rule_must_match() {
    let proxy = proxy_with(&["path: [\"/api/*\"], http_request_method: [POST], \
         http_header: { name: x-env, values: [beta] }, \
         query_string: [{ key: v, value: \"2\" }], source_ip: [\"127.0.0.0/8\"]"])
    .await;
    let all = request("POST", "/api/x?v=2", &[("x-env", "beta")]);
    assert_eq!(answered_by(&proxy, all).await, "rule-0");
    for miss in [
        request("GET", "/api/x?v=2", &[("x-env", "beta")]),
        request("POST", "/web?v=2", &[("x-env", "beta")]),
        request("POST", "/api/x?v=3", &[("x-env", "beta")]),
        request("POST", "/api/x?v=2", &[("x-env", "prod")]),
    ] {
        let target = miss.uri().to_string();
        assert_eq!(answered_by(&proxy, miss).await, "default", "{target}");
    }
}
