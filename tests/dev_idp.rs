//! `portcullis dev-idp` as a team runs it: the binary as a process, with its
//! users and clients in a file or on flags, and portcullis, configured the
//! way a user writes it, logging two users in through it with
//! `authenticate_oidc`, then with `authenticate_cognito` + `endpoint_url`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::alb::b64;
use common::browser::Browser;
use common::{TlsStack, write};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CLIENT_ID: &str = "my-app";
const CLIENT_SECRET: &str = "my-app-dev-secret";
const SIGNER: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/my-app/0";

/// A running `portcullis dev-idp` and what it printed.
struct DevIdp {
    _child: Child,
    /// Everything printed up to the configuration hint.
    banner: String,
    /// The `Issuer:` line.
    issuer: String,
    /// The `Listening:` line: the base URL (Cognito's `endpoint_url`).
    base_url: String,
}

impl DevIdp {
    /// Runs `portcullis dev-idp --address 127.0.0.1:0 ARGS…` and reads its banner.
    async fn start(args: &[&str]) -> DevIdp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["dev-idp", "--address", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("Ctrl-C") {
                    return;
                }
            }
            panic!("dev-idp ended before it was ready:\n{banner}");
        })
        .await
        .expect("dev-idp starts within 20 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |name: &str| {
            banner
                .lines()
                .find_map(|line| line.trim().strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} line in:\n{banner}"))
                .trim()
                .to_owned()
        };
        let issuer = field("Issuer:");
        let base_url = field("Listening:");
        DevIdp {
            _child: child,
            banner,
            issuer,
            base_url,
        }
    }
}

/// The users of both tests: alice an admin, bob not.
const USERS_YAML: &str = r#"
clients:
  - client_id: my-app
    client_secret: my-app-dev-secret
    redirect_uris: ["https://localhost:0/oauth2/idpresponse"]   # port 0: any port
users:
  - username: alice
    password: alice-password
    claims:
      email: alice@corp.example
      name: Alice Admin
      groups: [admins, developers]
  - username: bob
    password: bob-password
    claims:
      groups: [developers]
"#;

/// Logs `user` in on `stack` and returns the headers the upstream received
/// and the claims of their `x-amzn-oidc-data`.
async fn login_as(stack: &TlsStack, user: &str, password: &str) -> (Value, Value) {
    let mut browser = stack.browser();
    let page = browser.login(&stack.url("/app"), user, password).await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    let headers = page.json()["headers"].clone();
    let data = headers["x-amzn-oidc-data"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no x-amzn-oidc-data: {headers:#}"))
        .to_owned();
    let payload = data.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(&b64(payload)).unwrap();
    (headers, claims)
}

#[tokio::test]
async fn authenticate_oidc_logs_two_users_in_with_their_own_groups() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dev-idp.yaml");
    write(&file, USERS_YAML);
    let idp = DevIdp::start(&["--config", file.to_str().unwrap()]).await;
    assert!(idp.banner.contains("DEVELOPMENT ONLY"), "{}", idp.banner);
    assert!(
        !idp.banner.contains(CLIENT_SECRET) && !idp.banner.contains("alice-password"),
        "secrets someone chose are not printed:\n{}",
        idp.banner
    );

    // What a user writes in their portcullis configuration.
    let vars = [("CLIENT_SECRET", CLIENT_SECRET)];
    let stack = TlsStack::start(SIGNER, &vars, |upstream| {
        format!(
            r#"      - name: app
        actions:
          - authenticate_oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret: "${{CLIENT_SECRET}}"
              scope: openid email profile
          - forward: {{ target: "http://{upstream}" }}"#,
            issuer = idp.issuer,
        )
    })
    .await;

    let (headers, alice) = login_as(&stack, "alice", "alice-password").await;
    assert_eq!(headers["x-amzn-oidc-identity"][0], "alice");
    assert_eq!(alice["sub"], "alice");
    assert_eq!(alice["email"], "alice@corp.example");
    assert_eq!(alice["name"], "Alice Admin");
    assert_eq!(alice["groups"], json!(["admins", "developers"]));

    let (headers, bob) = login_as(&stack, "bob", "bob-password").await;
    assert_eq!(headers["x-amzn-oidc-identity"][0], "bob");
    assert_eq!(bob["email"], "bob@example.test", "derived from the name");
    assert_eq!(bob["groups"], json!(["developers"]));

    // A client or redirect URI it does not know is refused with a page that says which.
    let mut direct = Browser::new(None);
    let authorize = |client: &str, redirect: &str| {
        format!(
            "{}/authorize?response_type=code&client_id={client}&redirect_uri={redirect}",
            idp.issuer
        )
    };
    let unknown = direct
        .get(&authorize(
            "other",
            "https://localhost:8443/oauth2/idpresponse",
        ))
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("Unknown client"), "{}", unknown.body);
    let elsewhere = direct
        .get(&authorize(
            CLIENT_ID,
            "https://evil.example/oauth2/idpresponse",
        ))
        .await;
    assert_eq!(elsewhere.status, 400);
    assert!(
        elsewhere.body.contains("is not a redirect URI of client"),
        "{}",
        elsewhere.body
    );

    // A wrong password stays on the provider's form.
    let mut stranger = stack.browser();
    let form = stranger.follow(&stack.url("/app")).await;
    let refused = stranger
        .submit_form(&form, &[("login", "alice"), ("password", "bob-password")])
        .await;
    assert!(
        refused.body.contains("Wrong user or password"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn authenticate_cognito_gets_cognito_claims_through_endpoint_url() {
    const POOL: &str = "eu-west-1_DevPool1";
    // Users on flags this time: NAME:PASSWORD:GROUPS.
    let idp = DevIdp::start(&[
        "--cognito",
        "--user-pool-id",
        POOL,
        "--client",
        &format!("{CLIENT_ID}:{CLIENT_SECRET}:https://localhost:0/oauth2/idpresponse"),
        "--user",
        "alice:alice-password:admins,developers",
        "--user",
        "bob:bob-password:developers",
    ])
    .await;
    assert_eq!(idp.issuer, format!("{}/{POOL}", idp.base_url));

    let vars = [("COGNITO_SECRET", CLIENT_SECRET)];
    let stack = TlsStack::start(SIGNER, &vars, |upstream| {
        format!(
            r#"      - name: app
        actions:
          - authenticate_cognito:
              user_pool_arn: arn:aws:cognito-idp:eu-west-1:123456789012:userpool/{POOL}
              user_pool_client_id: {CLIENT_ID}
              user_pool_client_secret: "${{COGNITO_SECRET}}"
              user_pool_domain: my-app-auth
              endpoint_url: {endpoint_url}
          - forward: {{ target: "http://{upstream}" }}"#,
            endpoint_url = idp.base_url,
        )
    })
    .await;

    let (headers, alice) = login_as(&stack, "alice", "alice-password").await;
    assert_eq!(alice["cognito:username"], "alice");
    assert_eq!(alice["cognito:groups"], json!(["admins", "developers"]));
    assert_eq!(
        alice["email_verified"], "true",
        "a string, as Cognito writes it"
    );
    let sub = alice["sub"].as_str().unwrap();
    assert_eq!(sub.len(), 36, "a UUID, as Cognito's are: {sub}");
    assert_eq!(headers["x-amzn-oidc-identity"][0], sub);

    let (_, bob) = login_as(&stack, "bob", "bob-password").await;
    assert_eq!(bob["cognito:username"], "bob");
    assert_eq!(bob["cognito:groups"], json!(["developers"]));

    // Sign-out goes through the pool's /logout and back to the app.
    let mut browser = stack.browser();
    browser
        .login(&stack.url("/app"), "bob", "bob-password")
        .await;
    let out = browser.get(&stack.url("/oauth2/sign_out")).await;
    let logout = out.location().unwrap();
    assert!(
        logout.starts_with(&format!("{}/logout?client_id={CLIENT_ID}", idp.base_url)),
        "{logout}"
    );
    let back = Browser::new(None).get(&logout).await;
    assert_eq!(back.status, 302, "{}", back.body);
    assert_eq!(back.location().unwrap(), stack.url("/"));
}

#[tokio::test]
async fn dev_idp_refuses_a_remote_address_without_allow_remote() {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["dev-idp", "--address", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing served, nothing announced"
    );
}

/// Runs `portcullis dev-idp --config FILE` on `text`, for a file that is
/// refused before anything listens: exit code and everything printed.
fn dev_idp_with_file(extension: &str, text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("idp.{extension}"));
    write(&path, text);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["dev-idp", "--address", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

const CANARY: &str = "S3CRET-canary-7Qx9!vK2";
/// A canary for number values: these digits appear nowhere else.
const CANARY_NUMBER: &str = "731100424242";

/// The file with `client_secret` and `password` as given, written in
/// `extension`'s format (values already in that format's syntax).
fn idp_file(extension: &str, client_secret: &str, password: &str) -> String {
    let redirect = "\"http://127.0.0.1:8080/oauth2/idpresponse\"";
    match extension {
        "toml" => format!(
            "[[clients]]\nclient_id = \"app\"\nclient_secret = {client_secret}\n\
             redirect_uris = [{redirect}]\n\n\
             [[users]]\nusername = \"carol\"\npassword = {password}\n"
        ),
        "json" => format!(
            "{{\"clients\": [{{\"client_id\": \"app\", \"client_secret\": {client_secret}, \
             \"redirect_uris\": [{redirect}]}}],\n\
             \"users\": [{{\"username\": \"carol\", \"password\": {password}}}]}}\n"
        ),
        _ => format!(
            "clients:\n  - client_id: app\n    client_secret: {client_secret}\n    \
             redirect_uris: [{redirect}]\nusers:\n  - username: carol\n    password: {password}\n"
        ),
    }
}

#[test]
fn a_secret_of_the_wrong_type_in_the_file_is_never_printed() {
    // Each wrong value as YAML and JSON write it, and as TOML does.
    let wrong = [
        (CANARY_NUMBER.to_owned(), CANARY_NUMBER.to_owned()),
        ("true".to_owned(), "true".to_owned()),
        ("false".to_owned(), "false".to_owned()),
        (format!("[\"{CANARY}\"]"), format!("[\"{CANARY}\"]")),
        (
            format!("{{\"value\": \"{CANARY}\"}}"),
            format!("{{ value = \"{CANARY}\" }}"),
        ),
    ];
    let valid = "\"not-the-canary\"";
    for (json_or_yaml, toml) in &wrong {
        for (key, path) in [
            ("client_secret", "clients[0].client_secret"),
            ("password", "users[0].password"),
        ] {
            for extension in ["yaml", "toml", "json"] {
                let value = if extension == "toml" {
                    toml
                } else {
                    json_or_yaml
                };
                let text = if key == "client_secret" {
                    idp_file(extension, value, valid)
                } else {
                    idp_file(extension, valid, value)
                };
                let (code, printed) = dev_idp_with_file(extension, &text);
                let case = format!("{extension} {key} = {value}:\n{printed}");
                assert_eq!(code, Some(2), "{case}");
                assert!(printed.contains(path), "the key is named: {case}");
                assert!(printed.contains("expected a string"), "{case}");
                assert!(printed.contains("value hidden"), "{case}");
                // A boolean is quoted as `true`; "got true or false" is fine.
                for leak in [CANARY, CANARY_NUMBER, "`true`", "`false`"] {
                    assert!(!printed.contains(leak), "{leak} leaked: {case}");
                }
            }
        }
    }
}

#[test]
fn a_syntax_error_on_a_password_line_does_not_quote_it() {
    let unclosed = format!("\"{CANARY}");
    for extension in ["yaml", "toml", "json"] {
        let text = idp_file(extension, "\"not-the-canary\"", &unclosed);
        let (code, printed) = dev_idp_with_file(extension, &text);
        assert_eq!(code, Some(2), "{extension}:\n{printed}");
        assert!(printed.contains("is not valid"), "{extension}: {printed}");
        assert!(!printed.contains(CANARY), "{extension} leaked: {printed}");
    }
}
