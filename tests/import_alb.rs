//! `portcullis import-alb` as a process, on AWS CLI output
//! (tests/fixtures/alb): the configuration it writes passes `portcullis
//! check` once its placeholders are set, routes requests as the ALB rules
//! did, keeps priority order, and lists on stderr, by rule, what it could
//! not carry over.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::config::Config;
use portcullis::internals::{RequestFacts, normalize_host, rule_matches};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alb")
        .join(name)
}

/// What one run of the binary gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn portcullis(args: &[&str], env: &[(String, String)]) -> Run {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PORTCULLIS_CONFIG")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .expect("the portcullis binary runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `import-alb --rules RULES [--listener listeners.json] [extra...]`, which must succeed.
fn import(rules: &str, listener: bool, extra: &[&str]) -> Run {
    let rules = fixture(rules);
    let listeners = fixture("listeners.json");
    let mut args = vec!["import-alb", "--rules", rules.to_str().unwrap()];
    if listener {
        args.extend(["--listener", listeners.to_str().unwrap()]);
    }
    args.extend(extra);
    let run = portcullis(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// A value for every placeholder the document lists in its header comment.
fn placeholder_values(yaml: &str) -> Vec<(String, String)> {
    let names: Vec<&str> = yaml
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("#   "))
        .collect();
    assert!(!names.is_empty(), "no placeholders listed:\n{yaml}");
    names
        .into_iter()
        .enumerate()
        .map(|(index, name)| {
            let value = match name {
                "SESSION_SECRET" => "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=".to_owned(),
                "TLS_CERTIFICATE_FILE" => "/etc/portcullis/tls.crt".to_owned(),
                "TLS_PRIVATE_KEY_FILE" => "/etc/portcullis/tls.key".to_owned(),
                target if target.starts_with("TARGET_") => {
                    format!("http://10.0.1.{}:8080", index + 1)
                }
                secret if secret.starts_with("CLIENT_SECRET_") => "not-a-real-secret".to_owned(),
                other => panic!("unexpected placeholder {other}"),
            };
            (name.to_owned(), value)
        })
        .collect()
}

/// Runs `portcullis check` on `yaml` with its placeholders set.
fn check(yaml: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml).unwrap();
    portcullis(
        &["check", "--config", path.to_str().unwrap()],
        &placeholder_values(yaml),
    )
}

fn load(yaml: &str) -> Config {
    let values = placeholder_values(yaml);
    let vars: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    common::load_yaml(yaml, &vars)
}

fn rule_names(config: &Config) -> Vec<&str> {
    config.listeners[0]
        .rules
        .iter()
        .map(|rule| rule.name.as_str())
        .collect()
}

/// The name of the first rule that matches, as ALB would route.
fn routed(config: &Config, request: &Request<'_>) -> String {
    let method: Method = request.method.parse().unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.target, None),
    };
    let host = normalize_host(request.host);
    let facts = RequestFacts {
        host: &host,
        path,
        method: &method,
        headers: &headers,
        query,
        peer: request.peer.parse::<IpAddr>().unwrap(),
    };
    config.listeners[0]
        .rules
        .iter()
        .find(|rule| rule_matches(rule, &facts))
        .map_or_else(|| "no rule".to_owned(), |rule| rule.name.clone())
}

struct Request<'a> {
    method: &'a str,
    host: &'a str,
    target: &'a str,
    headers: &'a [(&'a str, &'a str)],
    peer: &'a str,
}

const fn get<'a>(host: &'a str, target: &'a str) -> Request<'a> {
    Request {
        method: "GET",
        host,
        target,
        headers: &[],
        peer: "203.0.113.7",
    }
}

#[test]
fn every_fixture_imports_to_a_config_that_check_accepts() {
    let cases: &[(&str, bool, usize)] = &[
        ("rules.json", true, 9),
        ("rules.json", false, 9),
        ("rules-50.json", true, 51),
        ("unsupported.json", true, 5),
        ("weighted.json", false, 2),
    ];
    for (rules, listener, count) in cases {
        let run = import(rules, *listener, &[]);
        let checked = check(&run.stdout);
        assert_eq!(
            checked.code, 0,
            "{rules} (listener: {listener}):\n{}\n{}",
            checked.stderr, run.stdout
        );
        assert!(
            checked.stdout.contains(&format!("{count} rule(s)")),
            "{rules}: {}",
            checked.stdout
        );
    }
}

#[test]
fn the_imported_rules_route_requests_as_alb_did() {
    let config = load(&import("rules.json", true, &[]).stdout);
    let cases: &[(Request<'_>, &str)] = &[
        (get("api.example.com", "/v1/orders"), "priority-1"),
        (get("api.example.com", "/v2/orders"), "default"),
        // Beneath priority 10 in the file, above it by number.
        (
            Request {
                headers: &[("x-env", "Beta-2")],
                ..get("app.example.com", "/admin/users")
            },
            "priority-5",
        ),
        (get("app.example.com", "/admin/users"), "priority-10"),
        (get("APP.example.com:8443", "/admin/"), "priority-10"),
        (get("other.example.com", "/admin/users"), "default"),
        (
            Request {
                method: "POST",
                ..get("app.example.com", "/upload/a.png")
            },
            "priority-20",
        ),
        (get("app.example.com", "/upload/a.png"), "default"),
        (
            get("app.example.com", "/search?version=v1.2"),
            "priority-30",
        ),
        (
            get("app.example.com", "/search?q=an-example"),
            "priority-30",
        ),
        (get("app.example.com", "/search?version=v2"), "default"),
        (
            Request {
                peer: "10.1.2.3",
                ..get("app.example.com", "/internal/stats")
            },
            "priority-40",
        ),
        (
            Request {
                peer: "2001:db8::5",
                ..get("app.example.com", "/internal/stats")
            },
            "priority-40",
        ),
        (get("app.example.com", "/internal/stats"), "default"),
        (get("old.example.com", "/anything"), "priority-50"),
        (get("www.old.example.com", "/"), "priority-50"),
        (get("app.example.com", "/health"), "priority-100"),
        (get("app.example.com", "/health/deep"), "default"),
    ];
    for (request, expected) in cases {
        assert_eq!(
            routed(&config, request),
            *expected,
            "{} {}{} {:?} from {}",
            request.method,
            request.host,
            request.target,
            request.headers,
            request.peer
        );
    }
}

#[test]
fn fifty_rules_keep_numeric_priority_order_and_the_listener_default_comes_last() {
    let config = load(&import("rules-50.json", true, &[]).stdout);
    let mut expected: Vec<String> = (1..=50).map(|n| format!("priority-{}", n * 5)).collect();
    expected.push("default".to_owned());
    assert_eq!(rule_names(&config), expected);
    // /shared/* is the path of priorities 50, 100, 150, ...: the lowest
    // number wins, which text order ("100" < "50") would get wrong.
    assert_eq!(
        routed(&config, &get("app.example.com", "/shared/x")),
        "priority-50"
    );
    assert_eq!(
        routed(&config, &get("svc33.example.com", "/")),
        "priority-165"
    );
    assert_eq!(
        routed(&config, &get("app.example.com", "/svc-7/a")),
        "priority-35"
    );
    // No IsDefault rule in describe-rules: the listener's default action.
    assert_eq!(
        routed(&config, &get("app.example.com", "/nowhere")),
        "default"
    );
}

#[test]
fn what_cannot_be_carried_over_is_listed_with_its_rule() {
    let run = import("unsupported.json", true, &[]);
    let expected: &[(&str, &str)] = &[
        ("priority-1", "RegexValues"),
        ("priority-2", "`ssl-client-cert`"),
        ("priority-3", "`authenticate-saml`"),
        ("priority-4", "several query-string conditions"),
        ("priority-5", "UseExistingClientSecret"),
        ("priority-5", "`redirect_uri`"),
        ("priority-5", "`PkceEnabled`"),
        ("priority-5", "lacks openid"),
        ("priority-6", "`Transforms`"),
        ("priority-7", "6 values"),
        ("priority-8", "renamed `AWSELBAuthSessionCookie-priority-8`"),
        ("priority-9", "`\\` escape"),
    ];
    for (rule, text) in expected {
        assert!(
            run.stderr
                .lines()
                .any(|line| line.contains(&format!("rule {rule}: ")) && line.contains(text)),
            "no line for {rule} with {text}:\n{}",
            run.stderr
        );
    }
    let config = load(&run.stdout);
    assert_eq!(
        rule_names(&config),
        [
            "priority-5",
            "priority-6",
            "priority-7",
            "priority-8",
            "default"
        ]
    );
}

#[test]
fn targets_given_replace_their_placeholders() {
    let run = import(
        "rules.json",
        true,
        &[
            "--target",
            "app-targets=http://10.0.0.5:8080",
            "--target",
            "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/api-targets/5d4c3b2a19f8e7d6=https://api.internal:8443",
            "--target",
            "nobody=http://10.9.9.9:80",
        ],
    );
    assert!(run.stdout.contains("target: \"http://10.0.0.5:8080\""));
    assert!(run.stdout.contains("target: \"https://api.internal:8443\""));
    assert!(!run.stdout.contains("TARGET_APP_TARGETS"));
    assert!(!run.stdout.contains("TARGET_API_TARGETS"));
    assert!(run.stdout.contains("target: \"${TARGET_BETA_TARGETS}\""));
    assert!(
        run.stderr.contains("--target nobody: no rule forwards"),
        "{}",
        run.stderr
    );
    assert_eq!(check(&run.stdout).code, 0);
}

#[test]
fn the_listener_gives_port_tls_and_certificates() {
    let with = import("rules.json", true, &[]);
    assert!(
        with.stdout.contains("address: \"0.0.0.0:8443\""),
        "{}",
        with.stdout
    );
    assert!(
        with.stdout
            .contains("certificate_file: \"${TLS_CERTIFICATE_FILE}\"")
    );
    assert!(with.stderr.contains(
        "arn:aws:acm:us-west-2:123456789012:certificate/68c0b2a5-4f2d-4c33-9d8e-2f6a7c1b0e3d"
    ));
    // The IsDefault rule of describe-rules wins over the listener's default action.
    assert!(!with.stdout.contains("no such page"));

    let without = import("rules.json", false, &[]);
    assert!(without.stdout.contains("address: \"0.0.0.0:443\""));
    assert!(
        without
            .stdout
            .contains("private_key_file: \"${TLS_PRIVATE_KEY_FILE}\"")
    );
    assert!(
        without.stderr.contains("no --listener"),
        "{}",
        without.stderr
    );
}

#[test]
fn authenticate_actions_get_secret_placeholders_and_alb_behaviour() {
    let run = import("rules.json", true, &[]);
    assert!(
        run.stdout
            .contains("client_secret: \"${CLIENT_SECRET_PRIORITY_10}\"")
    );
    assert!(
        run.stdout
            .contains("user_pool_client_secret: \"${CLIENT_SECRET_PRIORITY_20}\"")
    );
    assert!(run.stdout.contains("secrets:\n    - \"${SESSION_SECRET}\""));
    assert_eq!(run.stdout.matches("api_requests: \"redirect\"").count(), 2);
    // A literal `${` from AWS is not taken for a variable.
    assert!(
        run.stdout
            .contains("body: \"version 1 has moved: ask for $${VERSION} 2\"")
    );
    let config = load(&run.stdout);
    let rules = &config.listeners[0].rules;
    assert!(rules[2].authenticate.is_some(), "priority-10 logs in");
    assert!(rules[3].authenticate.is_some(), "priority-20 logs in");
    assert!(
        rules[0].jwt_validation.is_some(),
        "priority-1 checks bearer tokens"
    );
}

#[test]
fn weighted_forwards_keep_weights_and_stickiness() {
    let run = import("weighted.json", false, &[]);
    assert!(
        run.stdout.contains(
            "          - forward:\n              targets:\n                - target: \"${TARGET_BLUE_TARGETS}\"\n                  weight: 90\n                - target: \"${TARGET_GREEN_TARGETS}\"\n                  weight: 10\n              stickiness:\n                duration: \"3600s\"\n"
        ),
        "{}",
        run.stdout
    );
    // Stickiness disabled: none written.
    assert_eq!(run.stdout.matches("stickiness").count(), 1);
    // Replicas share the stickiness cookie's key through the session secret.
    assert!(run.stdout.contains("secrets:\n    - \"${SESSION_SECRET}\""));
}

#[test]
fn input_that_is_not_describe_rules_json_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_priority = dir.path().join("bad-priority.json");
    std::fs::write(&bad_priority, r#"{"Rules": [{"Priority": "first"}]}"#).unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, r#"{"Rules": [{"Priority": "1""#).unwrap();
    let listeners = fixture("listeners.json");
    let rules = fixture("rules.json");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--rules", listeners.to_str().unwrap()],
            "has no top-level `Rules`",
        ),
        (
            &["--rules", bad_priority.to_str().unwrap()],
            "Priority `first`",
        ),
        (
            &["--rules", truncated.to_str().unwrap()],
            "EOF while parsing",
        ),
        (
            &[
                "--rules",
                rules.to_str().unwrap(),
                "--listener",
                rules.to_str().unwrap(),
            ],
            "has no top-level `Listeners`",
        ),
        (&["--rules", "/nonexistent/rules.json"], "cannot read"),
        (
            &["--rules", rules.to_str().unwrap(), "--target", "app"],
            "NAME=URL",
        ),
    ];
    for (args, message) in cases {
        let mut full = vec!["import-alb"];
        full.extend(*args);
        let run = portcullis(&full, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
}
