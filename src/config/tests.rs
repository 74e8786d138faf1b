//! Unit tests for loading and validation: each broken input names the exact
//! key path of its problem. The environment is a fake, never the process's.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawDuration;
use super::*;

/// base64 of the 32 bytes `0123456789abcdef0123456789abcdef`.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

#[derive(Default)]
struct FakeEnv {
    vars: HashMap<String, String>,
    files: HashMap<PathBuf, String>,
}

impl FakeEnv {
    fn new() -> Self {
        Self::default()
            .var("SESSION_SECRET", KEY)
            .var("CLIENT_SECRET", "client-secret-value")
    }

    fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(PathBuf::from(path), text.to_string());
        self
    }
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
}

const MINIMAL: &str = r#"
listeners:
  - address: 127.0.0.1:8080
    rules:
      - actions:
          - forward: { target: "http://127.0.0.1:9000" }
"#;

/// One listener, one OIDC rule; tests break it with `str::replace`.
const OIDC: &str = r#"
sessions:
  secrets: ["${SESSION_SECRET}"]
listeners:
  - address: 0.0.0.0:8443
    rules:
      - name: app
        actions:
          - authenticate_oidc:
              issuer: https://idp.example.com
              client_id: app
              client_secret: "${CLIENT_SECRET}"
          - forward: { target: "http://127.0.0.1:9000" }
"#;

const COGNITO: &str = r#"
sessions:
  secrets: ["${SESSION_SECRET}"]
listeners:
  - address: 0.0.0.0:8443
    rules:
      - actions:
          - authenticate_cognito:
              user_pool_arn: arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123
              user_pool_client_id: 3a33a02r5hn3onhtu1mr0dit20
              user_pool_client_secret: s3cret
              user_pool_domain: my-app-auth
          - forward: { target: "http://127.0.0.1:9000" }
"#;

fn load_with(text: &str, env: &FakeEnv) -> Config {
    match load_str(text, Format::Yaml, env) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            panic!("unexpected problems:\n{}", describe(&problems))
        }
        Err(error) => panic!("unexpected error: {error}"),
    }
}

fn load(text: &str) -> Config {
    load_with(text, &FakeEnv::new())
}

fn problems_with(text: &str, format: Format, env: &FakeEnv) -> Vec<Problem> {
    match load_str(text, format, env) {
        Ok(_) => panic!("expected problems, the configuration loaded"),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(error) => panic!("expected problems, got: {error}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    problems_with(text, Format::Yaml, &FakeEnv::new())
}

/// The one problem `text` has; fails if there are none or several.
fn only_problem(text: &str) -> Problem {
    let mut problems = problems(text);
    assert_eq!(
        problems.len(),
        1,
        "expected one problem:\n{}",
        describe(&problems)
    );
    problems.remove(0)
}

fn oidc_action(config: &Config) -> &OidcAction {
    match &config.listeners[0].rules[0].authenticate {
        Some(AuthenticateAction::Oidc(oidc)) => oidc,
        other => panic!("expected authenticate_oidc, got {other:?}"),
    }
}

fn cognito_action(config: &Config) -> &CognitoAction {
    match &config.listeners[0].rules[0].authenticate {
        Some(AuthenticateAction::Cognito(cognito)) => cognito,
        other => panic!("expected authenticate_cognito, got {other:?}"),
    }
}

const RULE0: &str = "listeners[0].rules[0]";

// Loading and defaults.

#[test]
fn minimal_config_loads_with_defaults() {
    let config = load(MINIMAL);
    assert!(config.admin.is_none());
    assert!(config.sessions.secrets.is_empty());
    assert_eq!(config.sessions.store, SessionStoreKind::Cookie);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.limits.max_header_bytes, 64 * 1024);
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.limits.max_connections, None);
    assert_eq!(config.signing.encoding, TokenEncoding::Alb);
    assert!(config.signing.private_key_pem.is_none());
    let listener = &config.listeners[0];
    assert!(listener.tls.is_none());
    let rule = &listener.rules[0];
    assert_eq!(rule.name, "rule-1");
    assert!(rule.conditions.host.is_empty() && rule.conditions.path.is_empty());
    match &rule.action {
        TerminalAction::Forward(forward) => {
            assert_eq!(forward.targets[0].target.as_str(), "http://127.0.0.1:9000/");
            assert_eq!(forward.timeout, Duration::from_secs(60));
        }
        other => panic!("expected forward, got {other:?}"),
    }
}

#[test]
fn authenticate_common_keys_have_alb_defaults() {
    let config = load(OIDC);
    assert_eq!(
        config.sessions.secrets[0].0,
        *b"0123456789abcdef0123456789abcdef"
    );
    let oidc = oidc_action(&config);
    assert_eq!(oidc.client_secret.expose(), "client-secret-value");
    let common = &oidc.common;
    assert_eq!(common.scope, "openid");
    assert_eq!(common.session_cookie_name, "AWSELBAuthSessionCookie");
    assert_eq!(common.session_timeout, Duration::from_secs(604_800));
    assert!(common.extra_params.is_empty());
    assert_eq!(
        common.on_unauthenticated_request,
        UnauthenticatedPolicy::Authenticate
    );
    assert_eq!(common.api_requests, ApiRequests::Unauthorized);
    assert!(!common.allow_cors_preflight);
    assert_eq!(common.login_timeout, Duration::from_secs(15 * 60));
    assert_eq!(common.idp_timeout, Duration::from_secs(10));
    assert_eq!(common.sign_out_redirect, "/");
}

#[test]
fn cognito_action_takes_region_and_pool_from_the_arn() {
    let config = load(COGNITO);
    let cognito = cognito_action(&config);
    assert_eq!(cognito.partition, "aws");
    assert_eq!(cognito.region, "eu-west-1");
    assert_eq!(cognito.user_pool_id, "eu-west-1_AbC123");
    assert_eq!(
        cognito.user_pool_domain,
        CognitoDomain::Prefix("my-app-auth".into())
    );
    assert_eq!(cognito.common.scope, "openid");
}

#[test]
fn rule_names_default_to_their_position() {
    let config = load(
        r#"
listeners:
  - address: 127.0.0.1:8080
    rules:
      - name: health
        conditions: { path: ["/ping"] }
        actions: [ { fixed_response: { status: 200, body: ok } } ]
      - actions: [ { forward: { target: "http://127.0.0.1:9000" } } ]
"#,
    );
    let names: Vec<&str> = config.listeners[0]
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["health", "rule-2"]);
}

// Unknown keys.

#[test]
fn unknown_key_has_its_full_path_and_a_suggestion() {
    let problem = only_problem(&MINIMAL.replace(
        "forward: { target: \"http://127.0.0.1:9000\" }",
        "forward: { target: \"http://127.0.0.1:9000\", timout: 5s }",
    ));
    assert_eq!(
        problem.path,
        "listeners[0].rules[0].actions[0].forward.timout"
    );
    assert!(problem.fix.contains("`timeout`"), "{problem}");
}

#[test]
fn unknown_key_inside_an_authenticate_action() {
    let problem = only_problem(&OIDC.replace(
        "client_id: app",
        "client_id: app\n              scpoe: openid email",
    ));
    assert_eq!(
        problem.path,
        "listeners[0].rules[0].actions[0].authenticate_oidc.scpoe"
    );
    assert!(problem.fix.contains("`scope`"), "{problem}");
}

#[test]
fn unknown_key_without_an_obvious_suggestion_lists_the_keys() {
    let problem = only_problem(&format!("colour: blue\n{MINIMAL}"));
    assert_eq!(problem.path, "colour");
    assert!(problem.fix.contains("listeners"), "{problem}");
}

#[test]
fn misspelt_action_is_one_problem() {
    let problem = only_problem(&MINIMAL.replace("- forward:", "- froward:"));
    assert_eq!(problem.path, "listeners[0].rules[0].actions[0].froward");
    assert!(problem.fix.contains("`forward`"), "{problem}");
}

#[test]
fn type_error_is_reported_with_its_path() {
    let problem = only_problem(&MINIMAL.replace(
        "    rules:",
        "    tls: { certificate_file: [a, b] }\n    rules:",
    ));
    assert_eq!(problem.path, "listeners[0].tls.certificate_file");
    assert!(problem.message.contains("expected a string"), "{problem}");
}

// Required keys, addresses, URLs.

#[test]
fn missing_forward_target() {
    let problem = only_problem(&MINIMAL.replace("target: \"http://127.0.0.1:9000\"", "timeout: 5"));
    assert_eq!(
        problem.path,
        "listeners[0].rules[0].actions[0].forward.target"
    );
}

#[test]
fn bad_socket_addresses() {
    let text = format!(
        "admin: {{ address: localhost:9901 }}\n{}",
        MINIMAL.replace("127.0.0.1:8080", "0.0.0.0")
    );
    let paths: Vec<String> = problems(&text).into_iter().map(|p| p.path).collect();
    assert_eq!(paths, ["admin.address", "listeners[0].address"]);
}

#[test]
fn forward_target_must_be_a_bare_http_origin() {
    let at = "listeners[0].rules[0].actions[0].forward.target";
    for target in [
        "http://127.0.0.1:9000/app",
        "http://127.0.0.1:9000/?debug=1",
        "ftp://127.0.0.1",
        "127.0.0.1:9000",
        "not a url",
    ] {
        let problem = only_problem(&MINIMAL.replace("http://127.0.0.1:9000", target));
        assert_eq!(problem.path, at, "{target}");
    }
    load(&MINIMAL.replace("http://127.0.0.1:9000", "https://backend.internal:8443/"));
}

#[test]
fn issuer_must_be_https_except_on_loopback() {
    let problem = only_problem(&OIDC.replace("https://idp.example.com", "http://idp.example.com"));
    assert_eq!(
        problem.path,
        format!("{RULE0}.actions[0].authenticate_oidc.issuer")
    );
    for local in [
        "http://localhost:5556/dex",
        "http://127.0.0.1:8080",
        "http://[::1]:9000",
    ] {
        load(&OIDC.replace("https://idp.example.com", local));
    }
}

#[test]
fn endpoints_are_checked_like_the_issuer() {
    let problem = only_problem(&OIDC.replace(
        "client_id: app",
        "client_id: app\n              token_endpoint: http://idp.example.com/token",
    ));
    assert_eq!(
        problem.path,
        format!("{RULE0}.actions[0].authenticate_oidc.token_endpoint")
    );
}

// Split-horizon IdPs: endpoints on two names, discovery off, plain http.

/// [`OIDC`] with discovery off and its IdP split as in a docker-compose
/// stack: browsers reach it as localhost:8080, the proxy as keycloak:8080.
fn split_horizon() -> String {
    OIDC.replace(
        "              issuer: https://idp.example.com\n",
        "              issuer: http://localhost:8080/realms/demo
              discovery: false
              allow_insecure_http: true
              authorization_endpoint: http://localhost:8080/realms/demo/protocol/openid-connect/auth
              token_endpoint: http://keycloak:8080/realms/demo/protocol/openid-connect/token
              user_info_endpoint: http://keycloak:8080/realms/demo/protocol/openid-connect/userinfo
              jwks_uri: http://keycloak:8080/realms/demo/protocol/openid-connect/certs
",
    )
}

const OIDC_AT: &str = "listeners[0].rules[0].actions[0].authenticate_oidc";

#[test]
fn discovery_is_on_unless_turned_off() {
    let oidc = load(OIDC);
    let oidc = oidc_action(&oidc);
    assert!(oidc.discovery);
    assert!(!oidc.allow_insecure_http);
    assert_eq!(oidc.token_endpoint_auth_method, None);

    let config = load(&split_horizon());
    let oidc = oidc_action(&config);
    assert!(!oidc.discovery);
    assert!(oidc.allow_insecure_http);
    assert_eq!(
        oidc.authorization_endpoint
            .as_ref()
            .map(|url| url.host_str()),
        Some(Some("localhost"))
    );
    assert_eq!(
        oidc.token_endpoint.as_ref().map(|url| url.host_str()),
        Some(Some("keycloak"))
    );
}

#[test]
fn discovery_off_names_each_missing_endpoint_and_the_fix() {
    let text = OIDC.replace(
        "client_id: app",
        "client_id: app\n              discovery: false",
    );
    let problems = problems(&text);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{OIDC_AT}.authorization_endpoint"),
            format!("{OIDC_AT}.token_endpoint"),
            format!("{OIDC_AT}.user_info_endpoint"),
            format!("{OIDC_AT}.jwks_uri"),
        ]
    );
    for problem in &problems {
        assert!(
            problem
                .message
                .ends_with("is required with `discovery: false`"),
            "{problem}"
        );
        assert!(
            problem.fix.contains("or remove `discovery: false`"),
            "{problem}"
        );
    }

    let problem = only_problem(&split_horizon().replace(
        "              token_endpoint: http://keycloak:8080/realms/demo/protocol/openid-connect/token\n",
        "",
    ));
    assert_eq!(problem.path, format!("{OIDC_AT}.token_endpoint"));
    assert_eq!(
        problem.message,
        "`token_endpoint` is required with `discovery: false`"
    );
    assert!(
        problem
            .fix
            .contains("the URL the proxy redeems login codes at"),
        "{problem}"
    );
    assert!(
        problem
            .fix
            .contains("discovery document lists it as token_endpoint"),
        "{problem}"
    );
    // The discovery document's own spelling, for the one key that differs.
    let problem = only_problem(&split_horizon().replace(
        "              user_info_endpoint: http://keycloak:8080/realms/demo/protocol/openid-connect/userinfo\n",
        "",
    ));
    assert_eq!(problem.path, format!("{OIDC_AT}.user_info_endpoint"));
    assert!(problem.fix.contains("as userinfo_endpoint"), "{problem}");

    // end_session_endpoint stays optional: without it, sign-out ends only
    // the proxy's session.
    assert!(
        oidc_action(&load(&split_horizon()))
            .end_session_endpoint
            .is_none()
    );
}

#[test]
fn a_misspelt_endpoint_with_discovery_off_is_reported_once() {
    let problem = only_problem(&split_horizon().replace("jwks_uri:", "jwks_url:"));
    assert_eq!(problem.path, format!("{OIDC_AT}.jwks_url"));
    assert!(problem.fix.contains("`jwks_uri`"), "{problem}");
}

#[test]
fn plain_http_off_the_loopback_explains_the_split_horizon() {
    let problem = only_problem(&OIDC.replace(
        "https://idp.example.com",
        "http://keycloak:8080/realms/demo",
    ));
    assert_eq!(problem.path, format!("{OIDC_AT}.issuer"));
    assert_eq!(
        problem.message,
        "`http://keycloak:8080/realms/demo` uses plain http on a host other than the loopback"
    );
    for needle in [
        "use https",
        "docker-compose",
        "service name",
        "`allow_insecure_http: true`",
        "`discovery: false`",
        "authorization_endpoint on the browsers' name",
    ] {
        assert!(problem.fix.contains(needle), "{needle}: {problem}");
    }

    // Each endpoint is held to the same rule, with the same explanation.
    let problems =
        problems(&split_horizon().replace("              allow_insecure_http: true\n", ""));
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{OIDC_AT}.token_endpoint"),
            format!("{OIDC_AT}.user_info_endpoint"),
            format!("{OIDC_AT}.jwks_uri"),
        ]
    );
    assert!(
        problems
            .iter()
            .all(|problem| problem.fix.contains("allow_insecure_http")),
        "{problems:?}"
    );
}

#[test]
fn weighted_forward_targets_are_checked_as_alb_does() {
    let forward = |body: &str| {
        OIDC.replace(
            r#"- forward: { target: "http://127.0.0.1:9000" }"#,
            &format!("- forward: {body}"),
        )
    };
    let config = load(&forward(
        r#"{ targets: [{ target: "http://10.0.0.1:80", weight: 90 }, { target: "http://10.0.0.2:80" }], stickiness: { duration: 1h } }"#,
    ));
    let TerminalAction::Forward(action) = &config.listeners[0].rules[0].action else {
        panic!("a forward action");
    };
    let weights: Vec<u16> = action.targets.iter().map(|target| target.weight).collect();
    assert_eq!(weights, [90, 1]);
    assert_eq!(action.stickiness, Some(Duration::from_secs(3600)));

    let at = "listeners[0].rules[0].actions[1].forward";
    for (body, path, fix) in [
        (
            r#"{ target: "http://10.0.0.1:80", targets: [{ target: "http://10.0.0.2:80" }] }"#,
            format!("{at}.targets"),
            "keep `target` for one upstream",
        ),
        (
            r#"{ targets: [{ target: "http://10.0.0.1:80", weight: 1000 }] }"#,
            format!("{at}.targets[0].weight"),
            "0 to 999",
        ),
        (
            r#"{ targets: [{ target: "http://10.0.0.1:80", weight: 0 }] }"#,
            format!("{at}.targets"),
            "above 0",
        ),
        (r#"{ targets: [] }"#, format!("{at}.targets"), "1 to 5"),
        (
            r#"{ targets: [{ target: "http://10.0.0.1:80/x" }] }"#,
            format!("{at}.targets[0].target"),
            "scheme, host and port only",
        ),
        (
            r#"{ targets: [{ target: "http://10.0.0.1:80" }], stickiness: { duration: 8d } }"#,
            format!("{at}.stickiness.duration"),
            "1s to 7d",
        ),
        (
            r#"{ targets: [{ target: "http://10.0.0.1:80" }], stickiness: {} }"#,
            format!("{at}.stickiness.duration"),
            "duration: 1h",
        ),
    ] {
        let problems = problems(&forward(body));
        assert!(
            problems
                .iter()
                .any(|problem| problem.path == path && problem.fix.contains(fix)),
            "{body}: {problems:?}"
        );
    }
}

#[test]
fn trusted_proxies_default_to_the_loopback_and_everyone_is_a_warning() {
    let config = load(OIDC);
    let trusted: Vec<String> = config.listeners[0]
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(trusted, ["127.0.0.0/8", "::1/128"]);
    let with = |blocks: &str| {
        OIDC.replace(
            "  - address: 0.0.0.0:8443\n",
            &format!("  - address: 0.0.0.0:8443\n    trusted_proxies: {blocks}\n"),
        )
    };
    let config = load(&with(r#"["10.0.0.0/8", "0.0.0.0/0"]"#));
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, "listeners[0].trusted_proxies");
    assert!(
        warnings[0].message.contains("`0.0.0.0/0`"),
        "{}",
        warnings[0]
    );
    assert_eq!(load(&with("[]")).listeners[0].trusted_proxies, []);
    assert_eq!(load(&with(r#"["10.1.2.0/24"]"#)).warnings(), []);
    let problems = problems(&with(r#"["10.1.2.3/24", "proxy.internal"]"#));
    assert!(
        problems
            .iter()
            .any(|problem| problem.path == "listeners[0].trusted_proxies[0]"
                && problem.fix.contains("10.1.2.0/24")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem.path == "listeners[0].trusted_proxies[1]"),
        "{problems:?}"
    );
}

#[test]
fn allow_insecure_http_accepts_plain_http_with_a_warning() {
    let config = load(&OIDC.replace(
        "https://idp.example.com",
        "http://keycloak:8080/realms/demo\n              allow_insecure_http: true",
    ));
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert_eq!(warning.path, format!("{OIDC_AT}.allow_insecure_http"));
    assert_eq!(warning.rule, "app");
    assert!(
        warning
            .message
            .contains("issuer http://keycloak:8080/realms/demo"),
        "{warning}"
    );

    // Every plain-http URL off the loopback is named; localhost ones are not.
    let config = load(&split_horizon());
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let message = &warnings[0].message;
    for key in ["token_endpoint", "user_info_endpoint", "jwks_uri"] {
        assert!(
            message.contains(&format!("{key} http://keycloak:8080/")),
            "{key}: {message}"
        );
    }
    assert!(!message.contains("localhost"), "{message}");

    // Nothing to warn about: https, or plain http on the loopback only.
    for issuer in ["https://idp.example.com", "http://127.0.0.1:8080"] {
        let text = OIDC.replace(
            "https://idp.example.com",
            &format!("{issuer}\n              allow_insecure_http: true"),
        );
        assert_eq!(load(&text).warnings(), [], "{issuer}");
    }
    assert_eq!(load(OIDC).warnings(), []);
}

#[test]
fn jwt_validation_and_cognito_have_no_insecure_http_switch() {
    // jwt_validation's fix does not offer a key it does not have.
    let problem = only_problem(&JWT.replace("issuer: https://", "issuer: http://"));
    assert_eq!(
        problem.path,
        "listeners[0].rules[0].actions[0].jwt_validation.issuer"
    );
    assert!(!problem.fix.contains("allow_insecure_http"), "{problem}");
    let problem = only_problem(&JWT.replace(
        "idp_timeout: 3s",
        "idp_timeout: 3s\n              allow_insecure_http: true",
    ));
    assert_eq!(
        problem.path,
        "listeners[0].rules[0].actions[0].jwt_validation.allow_insecure_http"
    );
    for key in ["allow_insecure_http: true", "discovery: false"] {
        let problem = only_problem(&COGNITO.replace(
            "user_pool_domain: my-app-auth",
            &format!("user_pool_domain: my-app-auth\n              {key}"),
        ));
        assert_eq!(
            problem.path,
            format!(
                "listeners[0].rules[0].actions[0].authenticate_cognito.{}",
                key.split(':').next().unwrap()
            )
        );
    }
}

#[test]
fn token_endpoint_auth_method_is_basic_or_post() {
    let with = |method: &str| {
        OIDC.replace(
            "client_id: app",
            &format!("client_id: app\n              token_endpoint_auth_method: {method}"),
        )
    };
    assert_eq!(
        oidc_action(&load(&with("client_secret_post"))).token_endpoint_auth_method,
        Some(TokenEndpointAuthMethod::ClientSecretPost)
    );
    assert_eq!(
        oidc_action(&load(&with("client_secret_basic"))).token_endpoint_auth_method,
        Some(TokenEndpointAuthMethod::ClientSecretBasic)
    );
    let problem = only_problem(&with("private_key_jwt"));
    assert_eq!(
        problem.path,
        format!("{OIDC_AT}.token_endpoint_auth_method")
    );
    assert!(
        problem
            .fix
            .contains("client_secret_basic or client_secret_post"),
        "{problem}"
    );
}

// Durations.

#[test]
fn durations_in_every_spelling() {
    let cases = [
        (RawDuration::Text("15m".into()), 900),
        (RawDuration::Text("7d".into()), 604_800),
        (RawDuration::Seconds(604_800), 604_800),
        (RawDuration::Text("604800".into()), 604_800),
        (RawDuration::Text("1h30m".into()), 5400),
        (RawDuration::Text("90s".into()), 90),
    ];
    for (raw, seconds) in cases {
        assert_eq!(
            raw.to_duration(),
            Ok(Duration::from_secs(seconds)),
            "{raw:?}"
        );
    }
    for bad in ["15x", "", "soon", "-5", "7 days please"] {
        assert!(
            RawDuration::Text(bad.into()).to_duration().is_err(),
            "{bad}"
        );
    }
}

#[test]
fn bad_duration_is_a_problem_at_its_key() {
    let problem = only_problem(&OIDC.replace(
        "client_id: app",
        "client_id: app\n              session_timeout: 7 days please",
    ));
    assert_eq!(
        problem.path,
        format!("{RULE0}.actions[0].authenticate_oidc.session_timeout")
    );
    let problem = only_problem(&MINIMAL.replace("target:", "timeout: 0, target:"));
    assert_eq!(problem.path, format!("{RULE0}.actions[0].forward.timeout"));
}

#[test]
fn negative_duration_is_a_type_error_with_its_path() {
    let problem = only_problem(&MINIMAL.replace("target:", "timeout: -5, target:"));
    assert_eq!(problem.path, format!("{RULE0}.actions[0].forward.timeout"));
    assert!(problem.message.contains("a duration"), "{problem}");
}

#[test]
fn durations_may_come_from_variables() {
    let env = FakeEnv::new().var("TIMEOUT", "600");
    let config = load_with(&format!("shutdown_timeout: ${{TIMEOUT}}\n{MINIMAL}"), &env);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(600));
}

// The shape of an action list.

fn actions(list: &str) -> String {
    MINIMAL.replace(
        "          - forward: { target: \"http://127.0.0.1:9000\" }\n",
        list,
    )
}

const AUTH_ENTRY: &str = "          - authenticate_oidc: { issuer: \"https://idp.example.com\", client_id: app, client_secret: x }\n";
const FORWARD_ENTRY: &str = "          - forward: { target: \"http://127.0.0.1:9000\" }\n";
const FIXED_ENTRY: &str = "          - fixed_response: { status: 200 }\n";

fn with_secret(text: String) -> String {
    format!("sessions: {{ secrets: [\"{KEY}\"] }}\n{text}")
}

#[test]
fn rule_without_a_terminal_action() {
    let problem = only_problem(&with_secret(actions(AUTH_ENTRY)));
    assert_eq!(problem.path, format!("{RULE0}.actions"));
    assert!(
        problem
            .message
            .contains("not followed by a terminal action"),
        "{problem}"
    );
}

#[test]
fn rule_with_two_terminal_actions() {
    let problem = only_problem(&actions(&format!("{FORWARD_ENTRY}{FIXED_ENTRY}")));
    assert_eq!(problem.path, format!("{RULE0}.actions[1]"));
}

#[test]
fn authenticate_after_the_terminal_action() {
    let problem = only_problem(&with_secret(actions(&format!(
        "{FORWARD_ENTRY}{AUTH_ENTRY}"
    ))));
    assert_eq!(problem.path, format!("{RULE0}.actions[1]"));
    assert!(
        problem.message.contains("after the terminal action"),
        "{problem}"
    );
}

#[test]
fn authenticate_twice() {
    let problem = only_problem(&with_secret(actions(&format!(
        "{AUTH_ENTRY}{AUTH_ENTRY}{FORWARD_ENTRY}"
    ))));
    assert_eq!(problem.path, format!("{RULE0}.actions[1]"));
}

#[test]
fn action_entry_with_two_keys_or_none() {
    let problem = only_problem(&actions(
        "          - { forward: { target: \"http://127.0.0.1:9000\" }, fixed_response: { status: 200 } }\n",
    ));
    assert_eq!(problem.path, format!("{RULE0}.actions[0]"));
    let problem = only_problem(&actions(&format!("          - {{}}\n{FORWARD_ENTRY}")));
    assert_eq!(problem.path, format!("{RULE0}.actions[0]"));
}

#[test]
fn rule_without_actions() {
    let problem =
        only_problem(&actions("          []\n").replace("actions:\n          []", "actions: []"));
    assert_eq!(problem.path, format!("{RULE0}.actions"));
}

// Listeners.

#[test]
fn no_listeners() {
    assert_eq!(
        only_problem("admin: { address: 127.0.0.1:9901 }").path,
        "listeners"
    );
    assert_eq!(only_problem("").path, "listeners");
}

#[test]
fn duplicate_listener_addresses_except_port_zero() {
    let listener = "  - address: 127.0.0.1:8080\n    rules: [ { actions: [ { fixed_response: { status: 200 } } ] } ]\n";
    let problem = only_problem(&format!("listeners:\n{listener}{listener}"));
    assert_eq!(problem.path, "listeners[1].address");
    let any_port = listener.replace("8080", "0");
    load(&format!("listeners:\n{any_port}{any_port}"));
}

#[test]
fn tls_needs_both_files() {
    let text = MINIMAL.replace(
        "    rules:",
        "    tls: { certificate_file: /etc/tls.crt }\n    rules:",
    );
    assert_eq!(
        only_problem(&text).path,
        "listeners[0].tls.private_key_file"
    );
    let text = MINIMAL.replace(
        "    rules:",
        "    tls:\n      certificate_file: a.crt\n      private_key_file: a.key\n      certificates: [ { certificate_file: b.crt, private_key_file: b.key } ]\n      reload_interval: 1m\n    rules:",
    );
    let tls = load(&text).listeners[0]
        .tls
        .clone()
        .expect("tls was configured");
    assert_eq!(
        tls.default_certificate.private_key_file,
        PathBuf::from("a.key")
    );
    assert_eq!(tls.certificates[0].certificate_file, PathBuf::from("b.crt"));
    assert_eq!(tls.reload_interval, Duration::from_secs(60));
}

// Terminal actions.

#[test]
fn fixed_response_status_range() {
    for status in ["199", "600", "\"teapot\""] {
        let problem = only_problem(&actions(&FIXED_ENTRY.replace("200", status)));
        assert_eq!(
            problem.path,
            format!("{RULE0}.actions[0].fixed_response.status"),
            "{status}"
        );
    }
    let config = load(&actions(
        "          - fixed_response: { status: 503, content_type: text/plain, body: 42 }\n",
    ));
    match &config.listeners[0].rules[0].action {
        TerminalAction::FixedResponse(fixed) => {
            assert_eq!((fixed.status, fixed.body.as_str()), (503, "42"));
        }
        other => panic!("expected fixed_response, got {other:?}"),
    }
}

#[test]
fn redirect_status_and_protocol() {
    let redirect = "          - redirect: { protocol: HTTPS, status: HTTP_301 }\n";
    let config = load(&actions(redirect));
    match &config.listeners[0].rules[0].action {
        TerminalAction::Redirect(redirect) => {
            assert_eq!(redirect.protocol, "https");
            assert_eq!(redirect.status, 301);
            assert_eq!(redirect.host, "#{host}");
            assert_eq!(redirect.port, "#{port}");
            assert_eq!(redirect.path, "/#{path}");
            assert_eq!(redirect.query, "#{query}");
        }
        other => panic!("expected redirect, got {other:?}"),
    }
    let at = format!("{RULE0}.actions[0].redirect");
    assert_eq!(
        only_problem(&actions(&redirect.replace("HTTP_301", "303"))).path,
        format!("{at}.status")
    );
    assert_eq!(
        only_problem(&actions(&redirect.replace("HTTPS", "ftp"))).path,
        format!("{at}.protocol")
    );
    let paths: Vec<String> = problems(&actions(
        "          - redirect: { port: 70000, path: \"new\", query: \"?a=1\" }\n",
    ))
    .into_iter()
    .map(|p| p.path)
    .collect();
    // In file order; the missing status at the end of its map.
    assert_eq!(
        paths,
        [
            format!("{at}.port"),
            format!("{at}.path"),
            format!("{at}.query"),
            format!("{at}.status")
        ]
    );
}

// Conditions.

#[test]
fn path_conditions() {
    let with_paths = |paths: &str| {
        MINIMAL.replace(
            "      - actions:",
            &format!("      - conditions: {{ path: {paths} }}\n        actions:"),
        )
    };
    let config = load(&with_paths("[\"/app/*\", \"*.png\"]"));
    assert_eq!(
        config.listeners[0].rules[0].conditions.path,
        ["/app/*", "*.png"]
    );
    let problem = only_problem(&with_paths("[\"/ok\", \"app/*\"]"));
    assert_eq!(problem.path, format!("{RULE0}.conditions.path[1]"));
    let long = format!("[\"/{}\"]", "a".repeat(128));
    assert_eq!(
        only_problem(&with_paths(&long)).path,
        format!("{RULE0}.conditions.path[0]")
    );
}

#[test]
fn host_conditions_are_lower_cased_and_have_no_port() {
    let with_hosts = |hosts: &str| {
        MINIMAL.replace(
            "      - actions:",
            &format!("      - conditions: {{ host: {hosts} }}\n        actions:"),
        )
    };
    let config = load(&with_hosts("[App.Example.COM, \"*.example.org\"]"));
    assert_eq!(
        config.listeners[0].rules[0].conditions.host,
        ["app.example.com", "*.example.org"]
    );
    let problem = only_problem(&with_hosts("[\"app.example.com:8443\"]"));
    assert_eq!(problem.path, format!("{RULE0}.conditions.host[0]"));
    assert!(problem.fix.contains("`app.example.com`"), "{problem}");
}

/// MINIMAL with `conditions` (a YAML flow map's inside) on its rule.
fn with_conditions(conditions: &str) -> String {
    MINIMAL.replace(
        "      - actions:",
        &format!("      - conditions: {{ {conditions} }}\n        actions:"),
    )
}

#[test]
fn alb_conditions_load() {
    let config = load(&with_conditions(
        "http_header: { name: X-Custom, values: [\"A*\", \"b?\"] }, \
         http_request_method: [GET], \
         query_string: [{ key: Version, value: \"v1*\" }, { value: 42 }]",
    ));
    let conditions = &config.listeners[0].rules[0].conditions;
    assert_eq!(conditions.http_header.len(), 1);
    assert_eq!(conditions.http_header[0].name, "x-custom");
    assert_eq!(conditions.http_header[0].values, ["a*", "b?"]);
    assert_eq!(conditions.http_request_method, ["GET"]);
    assert_eq!(conditions.query_string[0].key.as_deref(), Some("version"));
    assert_eq!(conditions.query_string[1].key, None);
    assert_eq!(conditions.query_string[1].value, "42");

    let config = load(&with_conditions(
        "http_header: [{ name: x-a, values: [\"1\"] }, { name: x-b, values: [\"2\"] }], \
         source_ip: [\"2001:db8::/32\"]",
    ));
    let conditions = &config.listeners[0].rules[0].conditions;
    assert_eq!(conditions.http_header.len(), 2);
    assert_eq!(conditions.source_ip[0].to_string(), "2001:db8::/32");
}

#[test]
fn bad_alb_conditions_are_reported_with_their_key_path_and_fix() {
    let at = format!("{RULE0}.conditions");
    let cases = [
        (
            "source_ip: [\"10.0.0.0/8\", \"10.1.2.3/8\"]",
            format!("{at}.source_ip[1]"),
            "`10.0.0.0/8`",
        ),
        (
            "source_ip: [\"10.1.2.3\"]",
            format!("{at}.source_ip[0]"),
            "`10.1.2.3/32`",
        ),
        (
            "source_ip: [\"::1\"]",
            format!("{at}.source_ip[0]"),
            "`::1/128`",
        ),
        (
            "source_ip: [\"10.0.0.0/40\"]",
            format!("{at}.source_ip[0]"),
            "0 to 32",
        ),
        (
            "source_ip: [localhost/8]",
            format!("{at}.source_ip[0]"),
            "no host names",
        ),
        (
            "http_request_method: [get]",
            format!("{at}.http_request_method[0]"),
            "`GET`",
        ),
        (
            "http_request_method: [\"GET /\"]",
            format!("{at}.http_request_method[0]"),
            "A-Z",
        ),
        (
            "http_request_method: [TRACE]",
            format!("{at}.http_request_method[0]"),
            "remove",
        ),
        (
            "http_request_method: []",
            format!("{at}.http_request_method"),
            "remove",
        ),
        (
            "http_header: { name: Host, values: [x] }",
            format!("{at}.http_header.name"),
            "conditions.host",
        ),
        (
            "http_header: [{ name: x-a, values: [x] }, { name: \"x a\", values: [x] }]",
            format!("{at}.http_header[1].name"),
            "X-Custom-Header",
        ),
        (
            "http_header: { name: x-amzn-oidc-data, values: [x] }",
            format!("{at}.http_header.name"),
            "strips",
        ),
        (
            "http_header: { name: x-a }",
            format!("{at}.http_header.values"),
            "values:",
        ),
        (
            "http_header: { name: x-a, values: [] }",
            format!("{at}.http_header.values"),
            "add",
        ),
        (
            "query_string: [{ key: a, value: \"\\\\*\" }]",
            format!("{at}.query_string[0].value"),
            "cannot be escaped",
        ),
        (
            "query_string: [{ key: a }]",
            format!("{at}.query_string[0].value"),
            "\"*\"",
        ),
        (
            "query_string: [{ key: \"\", value: x }]",
            format!("{at}.query_string[0].key"),
            "leave key out",
        ),
        (
            "http_request_method: [GET, HEAD, POST], source_ip: [\"10.0.0.0/8\", \"::/0\", \"192.0.2.0/24\"]",
            at.clone(),
            "split the rule",
        ),
        (
            "http_header: { name: x-a, values: [\"a*b*c*\", \"???\"] }",
            at.clone(),
            "fewer wildcards",
        ),
    ];
    for (conditions, path, fix) in cases {
        let problem = only_problem(&with_conditions(conditions));
        assert_eq!(problem.path, path, "{conditions}: {problem}");
        assert!(problem.fix.contains(fix), "{conditions}: {problem}");
    }
}

#[test]
fn unknown_keys_in_alb_conditions_are_named() {
    let problem = only_problem(&with_conditions(
        "http_header: { nme: x-a, name: x-b, values: [v] }",
    ));
    assert_eq!(problem.path, format!("{RULE0}.conditions.http_header.nme"));
    assert!(problem.fix.contains("`name`"), "{problem}");
    let problem = only_problem(&with_conditions("query_string: [{ value: v, keyy: k }]"));
    assert_eq!(
        problem.path,
        format!("{RULE0}.conditions.query_string[0].keyy")
    );
    assert!(problem.fix.contains("`key`"), "{problem}");
}

// Authenticate actions.

/// Older `config` releases lower-cased every key; 0.15 does not, and with
/// `preserve_order` keeps the file's order. This pins both, since the IdP
/// sees these names as written.
#[test]
fn extra_params_keep_their_case_and_order() {
    let config = load(&OIDC.replace(
        "client_id: app",
        "client_id: app\n              authentication_request_extra_params: { prompt: login, Max_Age: 0, acr_values: Gold, kc_idp_hint: Google }",
    ));
    let params: Vec<(&str, &str)> = oidc_action(&config)
        .common
        .extra_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("prompt", "login"),
            ("Max_Age", "0"),
            ("acr_values", "Gold"),
            ("kc_idp_hint", "Google")
        ]
    );
}

#[test]
fn at_most_ten_extra_params() {
    let eleven: Vec<String> = (0..11).map(|i| format!("p{i}: v")).collect();
    let problem = only_problem(&OIDC.replace(
        "client_id: app",
        &format!(
            "client_id: app\n              authentication_request_extra_params: {{ {} }}",
            eleven.join(", ")
        ),
    ));
    assert_eq!(
        problem.path,
        format!("{RULE0}.actions[0].authenticate_oidc.authentication_request_extra_params")
    );
}

#[test]
fn session_secret_required_when_a_rule_authenticates() {
    let problem =
        only_problem(&OIDC.replace("  secrets: [\"${SESSION_SECRET}\"]", "  store: cookie"));
    assert_eq!(problem.path, "sessions.secrets");
    assert!(
        problem.message.contains("listeners[0].rules[0]"),
        "{problem}"
    );
}

#[test]
fn session_secrets_must_be_32_bytes_of_base64() {
    let env = FakeEnv::new().var("SESSION_SECRET", "c2hvcnQ=");
    let problems = problems_with(OIDC, Format::Yaml, &env);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "sessions.secrets[0]");
    assert!(
        problems[0].message.contains("decodes to 5"),
        "{}",
        problems[0]
    );
    let env = FakeEnv::new().var("SESSION_SECRET", "not base64!");
    assert_eq!(
        problems_with(OIDC, Format::Yaml, &env)[0].path,
        "sessions.secrets[0]"
    );
}

#[test]
fn session_secrets_from_a_file() {
    let env = FakeEnv::new().file("/run/secrets/session", &format!("{KEY}\n\n{KEY}\n"));
    let config = load_with(
        &OIDC.replace(
            "secrets: [\"${SESSION_SECRET}\"]",
            "secrets_file: /run/secrets/session",
        ),
        &env,
    );
    assert_eq!(config.sessions.secrets.len(), 2);
}

#[test]
fn client_secret_and_its_file_twin() {
    let at = format!("{RULE0}.actions[0].authenticate_oidc");
    let neither =
        only_problem(&OIDC.replace("              client_secret: \"${CLIENT_SECRET}\"\n", ""));
    assert_eq!(neither.path, format!("{at}.client_secret"));
    let both = only_problem(&OIDC.replace(
        "client_id: app",
        "client_id: app\n              client_secret_file: /run/secrets/client",
    ));
    assert_eq!(both.path, format!("{at}.client_secret_file"));

    let from_file = OIDC.replace(
        "client_secret: \"${CLIENT_SECRET}\"",
        "client_secret_file: /run/secrets/client",
    );
    let env = FakeEnv::new().file("/run/secrets/client", "from-a-file\n");
    assert_eq!(
        oidc_action(&load_with(&from_file, &env))
            .client_secret
            .expose(),
        "from-a-file"
    );
    let unreadable = only_problem(&from_file);
    assert_eq!(unreadable.path, format!("{at}.client_secret_file"));
    assert!(
        unreadable.message.contains("/run/secrets/client"),
        "{unreadable}"
    );
}

#[test]
fn redis_store_needs_a_url() {
    let redis = |sessions: &str| format!("sessions: {sessions}\n{MINIMAL}");
    assert_eq!(
        only_problem(&redis("{ store: redis }")).path,
        "sessions.redis.url"
    );
    assert_eq!(
        only_problem(&redis("{ store: redis, redis: { url: \"http://x\" } }")).path,
        "sessions.redis.url"
    );
    assert_eq!(
        only_problem(&redis("{ redis: { url: \"redis://x\" } }")).path,
        "sessions.redis"
    );
    assert_eq!(
        only_problem(&redis("{ store: memcached }")).path,
        "sessions.store"
    );
    let env = FakeEnv::new().file("/run/redis", "redis://:pw@redis:6379\n");
    let config = load_with(
        &redis("{ store: redis, redis: { url_file: /run/redis } }"),
        &env,
    );
    assert_eq!(
        config.sessions.store,
        SessionStoreKind::Redis(RedisConfig {
            address: RedisAddress::Single(Secret::new("redis://:pw@redis:6379")),
            key_prefix: "portcullis:".into(),
            timeout: Duration::from_secs(2),
        })
    );
}

#[test]
fn redis_cluster_prefix_and_timeout() {
    let redis =
        |settings: &str| format!("sessions: {{ store: redis, redis: {settings} }}\n{MINIMAL}");
    let config = load(&redis(
        "{ cluster: [\"redis://a:6379\", \"rediss://:pw@b:6379\"], key_prefix: \"team-a:\", timeout: 500ms }",
    ));
    assert_eq!(
        config.sessions.store,
        SessionStoreKind::Redis(RedisConfig {
            address: RedisAddress::Cluster(vec![
                Secret::new("redis://a:6379"),
                Secret::new("rediss://:pw@b:6379"),
            ]),
            key_prefix: "team-a:".into(),
            timeout: Duration::from_millis(500),
        })
    );
    for (settings, path) in [
        ("{ cluster: [] }", "sessions.redis.cluster"),
        (
            "{ cluster: [\"redis://a\"], url: \"redis://b\" }",
            "sessions.redis.cluster",
        ),
        (
            "{ cluster: [\"redis://a\", \"http://b\"] }",
            "sessions.redis.cluster[1]",
        ),
        (
            "{ url: \"redis://a\", key_prefix: \"a b\" }",
            "sessions.redis.key_prefix",
        ),
        (
            "{ url: \"redis://a\", timeout: 0s }",
            "sessions.redis.timeout",
        ),
        (
            "{ url: \"redis://a\", timeout: 5m }",
            "sessions.redis.timeout",
        ),
    ] {
        assert_eq!(only_problem(&redis(settings)).path, path, "{settings}");
    }
    // A cluster node's URL may carry a password: never echoed.
    let problem = only_problem(&redis(
        "{ cluster: [\"redis://:hunter2@a\", \"ftp://:hunter2@b\"] }",
    ));
    assert!(!problem.to_string().contains("hunter2"), "{problem}");
}

#[test]
fn cognito_arn_shape() {
    let at = format!("{RULE0}.actions[0].authenticate_cognito.user_pool_arn");
    let problem =
        only_problem(&COGNITO.replace("userpool/eu-west-1_AbC123", "userpool/us-east-1_AbC123"));
    assert_eq!(problem.path, at);
    assert!(problem.message.contains("us-east-1"), "{problem}");
    assert!(problem.fix.contains(
        "arn:{partition}:cognito-idp:{region}:{12-digit account}:userpool/{region}_{id}"
    ));
    let problem = only_problem(&COGNITO.replace("123456789012", "12345"));
    assert_eq!(problem.path, at);
}

#[test]
fn cognito_domain_shape() {
    let at = format!("{RULE0}.actions[0].authenticate_cognito.user_pool_domain");
    assert_eq!(
        only_problem(&COGNITO.replace("my-app-auth", "My_App")).path,
        at
    );
    assert_eq!(
        only_problem(&COGNITO.replace("my-app-auth", "https://auth.example.com")).path,
        at
    );
    let config = load(&COGNITO.replace("my-app-auth", "Auth.Example.com"));
    assert_eq!(
        cognito_action(&config).user_pool_domain,
        CognitoDomain::Custom("auth.example.com".into())
    );
}

#[test]
fn duplicate_rule_names_on_a_listener() {
    let rules = "      - name: app\n        actions: [ { fixed_response: { status: 200 } } ]\n";
    let text = format!("listeners:\n  - address: 127.0.0.1:8080\n    rules:\n{rules}{rules}");
    assert_eq!(only_problem(&text).path, "listeners[0].rules[1].name");
}

#[test]
fn session_cookies_clash_between_clients() {
    let rule = |name: &str, client: &str| {
        format!(
            "      - name: {name}\n        actions:\n          - authenticate_oidc: {{ issuer: \"https://idp.example.com\", client_id: {client}, client_secret: x }}\n          - forward: {{ target: \"http://127.0.0.1:9000\" }}\n"
        )
    };
    let text = |second_client: &str| {
        format!(
            "sessions: {{ secrets: [\"{KEY}\"] }}\nlisteners:\n  - address: 127.0.0.1:8080\n    rules:\n{}{}",
            rule("one", "app"),
            rule("two", second_client)
        )
    };
    let problem = only_problem(&text("other"));
    assert_eq!(
        problem.path,
        "listeners[0].rules[1].actions[0].authenticate_oidc.session_cookie_name"
    );
    // The same client on two rules shares its session: that is intended.
    load(&text("app"));
}

#[test]
fn five_mistakes_five_problems() {
    let text = r#"
admin: { address: "localhost" }
sessions:
  secrets: ["${SESSION_SECRET}"]
listeners:
  - address: 0.0.0.0:8443
    rules:
      - conditions: { path: ["app/*"] }
        actions:
          - authenticate_oidc:
              issuer: https://idp.example.com
              client_id: app
              client_secret: x
              session_timeot: 1d
          - forward: { target: "http://127.0.0.1:9000/api" }
      - actions:
          - fixed_response: { status: 700 }
"#;
    let paths: Vec<String> = problems(text).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "admin.address",
            "listeners[0].rules[0].conditions.path[0]",
            "listeners[0].rules[0].actions[0].authenticate_oidc.session_timeot",
            "listeners[0].rules[0].actions[1].forward.target",
            "listeners[0].rules[1].actions[0].fixed_response.status",
        ]
    );
}

// Interpolation.

#[test]
fn variables_are_interpolated_and_dollar_dollar_escapes() {
    let env = FakeEnv::new().var("BODY", "hello").var("PORT", "8080");
    let config = load_with(
        &actions("          - fixed_response: { status: 200, body: \"${BODY} $${BODY} ${BODY}! costs $5\" }\n")
            .replace("127.0.0.1:8080", "127.0.0.1:${PORT}"),
        &env,
    );
    assert_eq!(config.listeners[0].address.port(), 8080);
    match &config.listeners[0].rules[0].action {
        TerminalAction::FixedResponse(fixed) => {
            assert_eq!(fixed.body, "hello ${BODY} hello! costs $5")
        }
        other => panic!("expected fixed_response, got {other:?}"),
    }
}

#[test]
fn unset_variable_names_the_key_and_the_variable() {
    let env = FakeEnv::default().var("CLIENT_SECRET", "x");
    let problems = problems_with(OIDC, Format::Yaml, &env);
    assert_eq!(problems.len(), 1, "{}", describe(&problems));
    assert_eq!(problems[0].path, "sessions.secrets[0]");
    assert!(
        problems[0].message.contains("SESSION_SECRET"),
        "{}",
        problems[0]
    );
}

#[test]
fn unterminated_variable_reference() {
    let problem = only_problem(&MINIMAL.replace("http://127.0.0.1:9000", "${TARGET"));
    assert_eq!(problem.path, format!("{RULE0}.actions[0].forward.target"));
}

// Signing key.

#[test]
fn signing_key_is_read_from_its_file() {
    let text = format!(
        "signing:\n  private_key_file: /etc/portcullis/signing.pem\n  key_id: 6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44\n  encoding: jws\n{MINIMAL}"
    );
    let env = FakeEnv::new().file("/etc/portcullis/signing.pem", PEM);
    let config = load_with(&text, &env);
    let pem = config
        .signing
        .private_key_pem
        .as_ref()
        .expect("a key file was given");
    assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(config.signing.encoding, TokenEncoding::Jws);

    let env = FakeEnv::new().file(
        "/etc/portcullis/signing.pem",
        "-----BEGIN EC PRIVATE KEY-----\n",
    );
    let problems = problems_with(&text, Format::Yaml, &env);
    assert_eq!(problems[0].path, "signing.private_key_file");
    assert!(problems[0].fix.contains("openssl pkcs8"), "{}", problems[0]);
}

#[test]
fn key_id_must_be_a_uuid() {
    let problem = only_problem(&format!("signing: {{ key_id: my-key }}\n{MINIMAL}"));
    assert_eq!(problem.path, "signing.key_id");
}

// Formats and files.

#[test]
fn toml_parses() {
    let text = r#"
[sessions]
secrets = ["${SESSION_SECRET}"]

[[listeners]]
address = "127.0.0.1:8080"

[[listeners.rules]]
name = "app"

[[listeners.rules.actions]]
[listeners.rules.actions.authenticate_oidc]
issuer = "https://idp.example.com"
client_id = "app"
client_secret = "${CLIENT_SECRET}"
session_timeout = "12h"
authentication_request_extra_params = { Prompt = "login", max_age = 0 }

[[listeners.rules.actions]]
forward = { target = "http://127.0.0.1:9000" }
"#;
    let config = load_str(text, Format::Toml, &FakeEnv::new()).expect("valid TOML configuration");
    let oidc = oidc_action(&config);
    assert_eq!(oidc.common.session_timeout, Duration::from_secs(12 * 3600));
    assert_eq!(
        oidc.common.extra_params,
        [
            ("Prompt".to_string(), "login".to_string()),
            ("max_age".to_string(), "0".to_string())
        ]
    );
}

#[test]
fn json_parses() {
    let text = r#"{
  "listeners": [ { "address": "127.0.0.1:8080", "rules": [
    { "conditions": { "host": ["API.example.com"] },
      "actions": [ { "redirect": { "host": "www.example.com", "status": 302 } } ] }
  ] } ]
}"#;
    let config = load_str(text, Format::Json, &FakeEnv::new()).expect("valid JSON configuration");
    assert_eq!(
        config.listeners[0].rules[0].conditions.host,
        ["api.example.com"]
    );
    let problems = problems_with(
        &text.replace("\"host\": \"www", "\"hots\": \"www"),
        Format::Json,
        &FakeEnv::new(),
    );
    assert_eq!(
        problems[0].path,
        "listeners[0].rules[0].actions[0].redirect.hots"
    );
}

#[test]
fn syntax_errors_are_not_problems() {
    let error = load_str("listeners: [", Format::Yaml, &FakeEnv::new()).expect_err("bad YAML");
    assert!(
        matches!(
            error,
            ConfigError::Syntax {
                format: Format::Yaml,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn load_file_picks_the_format_by_extension() {
    let env = FakeEnv::new()
        .file("/etc/portcullis/config.YML", MINIMAL)
        .file("/etc/portcullis/config.ini", MINIMAL);
    load_file(Path::new("/etc/portcullis/config.YML"), &env).expect("a .YML file is YAML");
    let unknown = load_file(Path::new("/etc/portcullis/config.ini"), &env).expect_err(".ini");
    assert!(
        matches!(unknown, ConfigError::UnknownFormat { .. }),
        "{unknown}"
    );
    let missing = load_file(Path::new("/nowhere.yaml"), &env).expect_err("no such file");
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
}

#[test]
fn describe_prints_one_line_per_problem() {
    let problems = problems("colour: blue\nlisteners: []");
    let text = describe(&problems);
    assert_eq!(text.lines().count(), problems.len());
    assert!(
        text.starts_with("colour: unknown key `colour` (fix: "),
        "{text}"
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let env = FakeEnv::new().var("CLIENT_SECRET", "super-secret-client");
    let config = load_with(
        &format!(
            "{}\n",
            OIDC.replace(
                "  secrets:",
                "  store: redis\n  redis: { url: \"redis://:hunter2@redis:6379\" }\n  secrets:"
            )
        ),
        &env,
    );
    let debug = format!("{config:?}");
    for secret in ["super-secret-client", "hunter2", KEY, "48, 49, 50"] {
        assert!(!debug.contains(secret), "Debug shows {secret}: {debug}");
    }
    assert!(debug.contains("[redacted]"));
}

#[test]
fn a_misspelt_required_key_is_reported_once() {
    let problem = only_problem(&OIDC.replace("client_id: app", "clientid: app"));
    assert_eq!(
        problem.path,
        format!("{RULE0}.actions[0].authenticate_oidc.clientid")
    );
    assert!(problem.fix.contains("`client_id`"), "{problem}");
    let problem = only_problem(&format!("admin: {{ adress: 127.0.0.1:9901 }}\n{MINIMAL}"));
    assert_eq!(problem.path, "admin.adress");
}

#[test]
fn duplicate_names_are_found_even_in_broken_rules() {
    let text = "listeners:\n  - address: 127.0.0.1:8080\n    rules:\n      - { name: a, actions: [ { fixed_response: { status: 200 } } ] }\n      - { name: a, actions: [] }\n";
    let paths: Vec<String> = problems(text).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "listeners[0].rules[1].name",
            "listeners[0].rules[1].actions"
        ]
    );
}

#[test]
fn listeners_choose_how_client_headers_are_forwarded() {
    let config = load(MINIMAL);
    assert_eq!(config.listeners[0].headers, HeaderPolicy::default());
    assert!(!config.listeners[0].headers.allow_underscores);
    assert_eq!(
        config.listeners[0].headers.x_forwarded_for,
        XForwardedFor::Append
    );
    let config = load(
        r#"
listeners:
  - address: 127.0.0.1:8080
    allow_underscore_headers: true
    x_forwarded_for: preserve
    rules:
      - actions:
          - fixed_response: { status: 200 }
"#,
    );
    assert_eq!(
        config.listeners[0].headers,
        HeaderPolicy {
            allow_underscores: true,
            x_forwarded_for: XForwardedFor::Preserve,
        }
    );
    let problem = only_problem(
        r#"
listeners:
  - address: 127.0.0.1:8080
    x_forwarded_for: strip
    rules:
      - actions:
          - fixed_response: { status: 200 }
"#,
    );
    assert_eq!(problem.path, "listeners[0].x_forwarded_for");
    assert!(problem.message.contains("`strip`"), "{}", problem.message);
    assert!(problem.fix.contains("append"), "{}", problem.fix);
}

#[test]
fn path_patterns_must_be_canonical_or_they_never_match() {
    let rule_with = |pattern: &str| {
        format!(
            r#"
listeners:
  - address: 127.0.0.1:8080
    rules:
      - conditions: {{ path: ["{pattern}"] }}
        actions:
          - fixed_response: {{ status: 200 }}
"#
        )
    };
    for (pattern, canonical) in [
        ("/%7Euser/*", "/~user/*"),
        ("/caf%c3%a9/*", "/caf%C3%A9/*"),
        ("/a//b/*", "/a/b/*"),
        ("/public/../admin/*", "/admin/*"),
    ] {
        let problem = only_problem(&rule_with(pattern));
        assert_eq!(problem.path, "listeners[0].rules[0].conditions.path[0]");
        assert!(
            problem.message.contains("never match"),
            "{}",
            problem.message
        );
        assert_eq!(problem.fix, format!("write `{canonical}`"));
    }
    let problem = only_problem(&rule_with("/a%2Fb/*"));
    assert!(problem.message.contains("400"), "{}", problem.message);
    for fine in ["/app/*", "*.js", "/.well-known/*", "/a?c/*", "/x%20y"] {
        let config = load(&rule_with(fine));
        assert_eq!(config.listeners[0].rules[0].conditions.path, [fine]);
    }
}

// What problems say, and in which order.

#[test]
fn a_wrong_type_inside_an_authenticate_action_names_its_key() {
    let oidc = format!("{RULE0}.actions[0].authenticate_oidc");
    let cognito = format!("{RULE0}.actions[0].authenticate_cognito");
    let cases = [
        (
            OIDC.replace(
                "client_secret: \"${CLIENT_SECRET}\"",
                "client_secret: { value: x }",
            ),
            format!("{oidc}.client_secret"),
        ),
        (
            OIDC.replace(
                "client_id: app",
                "client_id: app\n              scope: [openid]",
            ),
            format!("{oidc}.scope"),
        ),
        (
            COGNITO.replace(
                "user_pool_client_secret: s3cret",
                "user_pool_client_secret: 42",
            ),
            format!("{cognito}.user_pool_client_secret"),
        ),
        (
            COGNITO.replace(
                "user_pool_domain: my-app-auth",
                "user_pool_domain: my-app-auth\n              allow_cors_preflight: [yes]",
            ),
            format!("{cognito}.allow_cors_preflight"),
        ),
    ];
    for (text, path) in cases {
        assert_eq!(only_problem(&text).path, path);
    }
}

#[test]
fn a_secret_of_the_wrong_type_is_named_not_shown() {
    let env = FakeEnv::new().var("SESSION_SECRET", "S3CRET-canary");
    let text = OIDC.replace("[\"${SESSION_SECRET}\"]", "\"${SESSION_SECRET}\"");
    let problems = problems_with(&text, Format::Yaml, &env);
    assert_eq!(
        describe(&problems),
        "sessions.secrets: expected a list, got a string (value hidden: it is a secret) \
         (fix: give this key a value of the type it takes (see config/full.yaml); \
         other problems are reported once this one is fixed)\n"
    );

    let text = OIDC.replace(
        "client_secret: \"${CLIENT_SECRET}\"",
        "client_secret: [S3CRET-canary]",
    );
    let problem = only_problem(&text);
    assert_eq!(
        problem.message,
        "expected a string, got a list (value hidden: it is a secret)"
    );
}

#[test]
fn a_value_from_the_environment_is_hidden_in_validation_problems() {
    let env = FakeEnv::new().var("ISSUER", "S3CRET-canary");
    let text = OIDC.replace("https://idp.example.com", "${ISSUER}");
    let problems = problems_with(&text, Format::Yaml, &env);
    let text = describe(&problems);
    assert!(!text.contains("S3CRET-canary"), "{text}");
    assert!(text.contains("issuer: `[hidden]`"), "{text}");
}

#[test]
fn a_toml_syntax_error_does_not_quote_the_line() {
    let error = load_str(
        "[sessions]\nsecrets = [\"S3CRET-canary\"\n",
        Format::Toml,
        &FakeEnv::new(),
    )
    .expect_err("bad TOML");
    let text = error.to_string();
    assert!(!text.contains("S3CRET-canary"), "{text}");
    assert!(
        text.starts_with("the file is not valid TOML: TOML parse error at line 2"),
        "{text}"
    );
}

#[test]
fn problems_are_listed_in_file_order() {
    // Found in another order: unknown keys first, then validation section by
    // section (admin before shutdown_timeout), the missing address last.
    let text = r#"
shutdown_timeout: soon
colour: blue
admin:
  address: nowhere
listeners:
  - rules:
      - actions:
          - forward: { target: "ftp://127.0.0.1:9000" }
  - address: 127.0.0.1:8080
    rules:
      - actions:
          - redirect: { port: 70000, status: 301 }
"#;
    let paths: Vec<String> = problems(text).into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "shutdown_timeout",
            "colour",
            "admin.address",
            "listeners[0].rules[0].actions[0].forward.target",
            // Missing: at the end of the listener it is missing from.
            "listeners[0].address",
            "listeners[1].rules[0].actions[0].redirect.port",
        ]
    );
}

#[test]
fn require_and_claim_headers() {
    let with = |extra: &str| {
        OIDC.replace(
            "              client_secret: \"${CLIENT_SECRET}\"\n",
            &format!(
                "              client_secret: \"${{CLIENT_SECRET}}\"\n              {extra}\n"
            ),
        )
    };
    let at = format!("{RULE0}.actions[0].authenticate_oidc");
    let config = load(&with(
        "require: [{ name: \"cognito:groups\", format: string-array, values: [admins] }, { name: hd, values: [example.com] }]\n              claim_headers: { X-Forwarded-User: preferred_username, x-auth-email: email }",
    ));
    let common = match &config.listeners[0].rules[0].authenticate {
        Some(AuthenticateAction::Oidc(oidc)) => oidc.common.clone(),
        _ => panic!("an OIDC action"),
    };
    assert_eq!(
        common.require,
        [
            ClaimRequirement {
                name: "cognito:groups".into(),
                format: ClaimFormat::StringArray,
                values: vec!["admins".into()],
            },
            ClaimRequirement {
                name: "hd".into(),
                format: ClaimFormat::SingleString,
                values: vec!["example.com".into()],
            },
        ]
    );
    assert_eq!(
        common.bearer_audience, None,
        "bearer tokens are off by default"
    );
    let accepting = load(&with("bearer: accept"));
    match &accepting.listeners[0].rules[0].authenticate {
        Some(AuthenticateAction::Oidc(oidc)) => {
            assert_eq!(
                oidc.common.bearer_audience,
                Some(Vec::new()),
                "the client id"
            );
        }
        _ => panic!("an OIDC action"),
    }
    let headers: Vec<(&str, &str)> = common
        .claim_headers
        .iter()
        .map(|(name, claim)| (name.as_str(), claim.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("x-forwarded-user", "preferred_username"),
            ("x-auth-email", "email")
        ]
    );

    let eleven: Vec<String> = (0..11)
        .map(|n| format!("{{ name: c{n}, values: [x] }}"))
        .collect();
    for (extra, path) in [
        (
            "require: [{ values: [x] }]".to_owned(),
            format!("{at}.require[0].name"),
        ),
        (
            "require: [{ name: g }]".to_owned(),
            format!("{at}.require[0].values"),
        ),
        (
            "require: [{ name: g, format: list, values: [x] }]".to_owned(),
            format!("{at}.require[0].format"),
        ),
        (
            format!("require: [{}]", eleven.join(", ")),
            format!("{at}.require"),
        ),
        (
            "require: [{ name: g, valuse: [x] }]".to_owned(),
            format!("{at}.require[0].valuse"),
        ),
        (
            "claim_headers: { Cookie: email }".to_owned(),
            format!("{at}.claim_headers.Cookie"),
        ),
        (
            "claim_headers: { X-Amzn-Oidc-Identity: email }".to_owned(),
            format!("{at}.claim_headers.X-Amzn-Oidc-Identity"),
        ),
        (
            "claim_headers: { \"x user\": email }".to_owned(),
            format!("{at}.claim_headers.x user"),
        ),
        (
            "claim_headers: { X-User: [email] }".to_owned(),
            format!("{at}.claim_headers.X-User"),
        ),
        (
            "claim_headers: { X-User: email, x-user: name }".to_owned(),
            format!("{at}.claim_headers.x-user"),
        ),
        ("bearer: sometimes".to_owned(), format!("{at}.bearer")),
        (
            "bearer: accept\n              bearer_audience: []".to_owned(),
            format!("{at}.bearer_audience"),
        ),
        (
            "bearer_audience: [api]".to_owned(),
            format!("{at}.bearer_audience"),
        ),
    ] {
        let problems = problems(&with(&extra));
        assert!(
            problems.iter().any(|problem| problem.path == path),
            "{extra}: {problems:?}"
        );
    }
}

/// One listener, one `jwt_validation` rule; tests break it with `str::replace`.
const JWT: &str = r#"
listeners:
  - address: 0.0.0.0:8443
    rules:
      - name: api
        actions:
          - jwt_validation:
              issuer: https://idp.example.com
              jwks_endpoint: https://idp.example.com/jwks
              audience: [orders-api]
              require: [{ name: scope, format: space-separated-values, values: ["orders:read"] }]
              idp_timeout: 3s
          - forward: { target: "http://127.0.0.1:9000" }
"#;

#[test]
fn jwt_validation_loads_without_sessions() {
    let config = load(JWT);
    let rule = &config.listeners[0].rules[0];
    assert!(rule.authenticate.is_none());
    let jwt = rule
        .jwt_validation
        .as_ref()
        .expect("a jwt_validation action");
    assert_eq!(jwt.issuer, "https://idp.example.com");
    assert_eq!(jwt.jwks_endpoint.as_str(), "https://idp.example.com/jwks");
    assert_eq!(jwt.audience, ["orders-api"]);
    assert_eq!(
        jwt.require,
        [ClaimRequirement {
            name: "scope".into(),
            format: ClaimFormat::SpaceSeparated,
            values: vec!["orders:read".into()],
        }]
    );
    assert_eq!(jwt.idp_timeout, Duration::from_secs(3));

    let bare = JWT
        .replace("              audience: [orders-api]\n", "")
        .replace("              idp_timeout: 3s\n", "");
    let config = load(&bare);
    let jwt = config.listeners[0].rules[0]
        .jwt_validation
        .as_ref()
        .unwrap();
    assert!(jwt.audience.is_empty());
    assert_eq!(jwt.idp_timeout, Duration::from_secs(10));
    let local = JWT
        .replace("https://idp.example.com/jwks", "http://127.0.0.1:8081/jwks")
        .replace(
            "issuer: https://idp.example.com",
            "issuer: http://localhost:8081",
        );
    assert!(config_loads(&local));
}

fn config_loads(text: &str) -> bool {
    load_str(text, Format::Yaml, &FakeEnv::new()).is_ok()
}

#[test]
fn each_bad_jwt_validation_key_is_named() {
    let at = "listeners[0].rules[0].actions[0].jwt_validation";
    let cases = [
        (
            JWT.replace("              issuer: https://idp.example.com\n", ""),
            format!("{at}.issuer"),
        ),
        (
            JWT.replace("issuer: https://", "issuer: http://"),
            format!("{at}.issuer"),
        ),
        (
            JWT.replace(
                "jwks_endpoint: https://idp.example.com/jwks",
                "jwks_endpoint: http://idp.example.com/jwks",
            ),
            format!("{at}.jwks_endpoint"),
        ),
        (
            JWT.replace("jwks_endpoint: https://", "jwks_endpoint: ftp://"),
            format!("{at}.jwks_endpoint"),
        ),
        (
            JWT.replace("              jwks_endpoint: https://idp.example.com/jwks\n", ""),
            format!("{at}.jwks_endpoint"),
        ),
        (
            JWT.replace("audience: [orders-api]", "audience: []"),
            format!("{at}.audience"),
        ),
        (
            JWT.replace("audience: [orders-api]", "audience: [orders-api, \"\"]"),
            format!("{at}.audience[1]"),
        ),
        (
            JWT.replace("format: space-separated-values", "format: words"),
            format!("{at}.require[0].format"),
        ),
        (
            JWT.replace("values: [\"orders:read\"]", "valuse: [\"orders:read\"]"),
            format!("{at}.require[0].valuse"),
        ),
        (
            JWT.replace("idp_timeout: 3s", "idp_timeout: soon"),
            format!("{at}.idp_timeout"),
        ),
        (
            JWT.replace("idp_timeout: 3s", "jwks_uri: https://idp.example.com/jwks"),
            format!("{at}.jwks_uri"),
        ),
        (
            JWT.replace(
                "          - jwt_validation:",
                "          - authenticate_oidc: { issuer: https://idp.example.com, client_id: a, client_secret: b }\n          - jwt_validation:",
            ),
            "listeners[0].rules[0].actions[1]".to_owned(),
        ),
    ];
    for (text, path) in cases {
        let problems = problems(&text);
        assert!(
            problems.iter().any(|problem| problem.path == path),
            "{path}: {problems:?}"
        );
    }
    let unknown = only_problem(&JWT.replace("idp_timeout: 3s", "audiense: [x]"));
    assert_eq!(unknown.path, format!("{at}.audiense"));
    assert!(unknown.fix.contains("`audience`"), "{}", unknown.fix);
}

#[test]
fn watch_config_is_a_boolean_and_the_text_has_a_fingerprint() {
    let config = load(&format!("watch_config: true\n{MINIMAL}"));
    assert!(config.watch_config);
    assert_eq!(config.fingerprint.len(), 16);
    assert!(
        config
            .fingerprint
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit())
    );
    assert!(!load(MINIMAL).watch_config);
    assert_ne!(load(MINIMAL).fingerprint, config.fingerprint);
    for hostile in ["maybe", "1", "[true]", "{ on: true }", "\"yes; rm -rf /\""] {
        let problems = problems(&format!("watch_config: {hostile}\n{MINIMAL}"));
        assert_eq!(problems.len(), 1, "{hostile}: {problems:?}");
        assert_eq!(problems[0].path, "watch_config", "{hostile}");
    }
}
