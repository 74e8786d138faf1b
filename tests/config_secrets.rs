//! Configuration errors never show a secret. Every secret key is given a
//! value of the wrong type (or a wrong value), written in the file and taken
//! from an environment variable, in YAML, TOML and JSON, to both `check` and
//! `run` of the real binary (with trace logging on); a canary value must
//! appear nowhere in what the process prints, while the key path must.

use std::process::Command;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The canary, written in the file or held by the variable `CANARY`.
const CANARY: &str = "S3CRET-canary-7Qx9!vK2";
/// A canary for number values: these digits appear nowhere else.
const CANARY_NUMBER: u64 = 731_100_424_242;
/// Valid base64 (nine bytes, not 32), for "decodes to" errors.
const SHORT_CANARY: &str = "S3CRETcanaryQx9z";

/// A valid configuration in which every secret key is read: both
/// authenticate actions, a Redis store and a signing key file.
fn base() -> Value {
    json!({
        "sessions": {
            "secrets": ["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="],
            "store": "redis",
            "redis": { "url": "redis://127.0.0.1:6379" }
        },
        "listeners": [{
            "address": "127.0.0.1:0",
            "rules": [
                {
                    "conditions": { "path": ["/oidc/*"] },
                    "actions": [
                        { "authenticate_oidc": {
                            "issuer": "https://idp.example.com",
                            "client_id": "portcullis",
                            "client_secret": "not-the-canary"
                        } },
                        { "forward": { "target": "http://127.0.0.1:9" } }
                    ]
                },
                {
                    "actions": [
                        { "authenticate_cognito": {
                            "user_pool_arn": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123",
                            "user_pool_client_id": "3a33a02r5hn3onhtu1mr0dit20",
                            "user_pool_client_secret": "not-the-canary",
                            "user_pool_domain": "my-app-auth",
                            "session_cookie_name": "CognitoSession"
                        } },
                        { "forward": { "target": "http://127.0.0.1:9" } }
                    ]
                }
            ]
        }]
    })
}

const OIDC: &str = "/listeners/0/rules/0/actions/0/authenticate_oidc";
const COGNITO: &str = "/listeners/0/rules/1/actions/0/authenticate_cognito";

/// A secret key: where it is (a JSON pointer into [`base`]), its twin to
/// remove so that only it is given, and whether it takes a list (the
/// session secrets, the cluster's seed node URLs).
struct SecretKey {
    pointer: String,
    twin: Option<String>,
    takes_list: bool,
    names_a_file: bool,
}

fn secret_keys() -> Vec<SecretKey> {
    let key = |pointer: String, twin: Option<String>| SecretKey {
        names_a_file: pointer.ends_with("_file"),
        takes_list: pointer.ends_with("/secrets") || pointer.ends_with("/cluster"),
        pointer,
        twin,
    };
    let twins = |parent: &str, name: &str| {
        let value = format!("{parent}/{name}");
        let file = format!("{parent}/{name}_file");
        [
            key(value.clone(), Some(file.clone())),
            key(file, Some(value)),
        ]
    };
    let mut keys = Vec::new();
    keys.extend(twins("/sessions", "secrets"));
    keys.extend(twins("/sessions/redis", "url"));
    // Seed node URLs, which may carry a password; `url` is their twin.
    keys.push(key(
        "/sessions/redis/cluster".to_string(),
        Some("/sessions/redis/url".to_string()),
    ));
    keys.extend(twins(OIDC, "client_secret"));
    keys.extend(twins(COGNITO, "user_pool_client_secret"));
    keys.push(key("/signing/private_key_file".to_string(), None));
    keys
}

/// The key path `check` prints for a JSON pointer.
fn key_path(pointer: &str) -> String {
    let mut path = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        if part.parse::<usize>().is_ok() {
            path.push_str(&format!("[{part}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        }
    }
    path
}

/// The wrong values for `key`: each holds the canary somewhere. `secret` is
/// how the canary is written: itself, or `${CANARY}`.
fn wrong_values(key: &SecretKey, secret: &str) -> Vec<Value> {
    let mut values = vec![
        json!({ "value": secret }),
        json!([{ "value": secret }]),
        json!(CANARY_NUMBER),
    ];
    if key.takes_list {
        values.push(json!(secret));
        values.push(json!([CANARY_NUMBER]));
        values.push(json!([secret]));
        values.push(json!([SHORT_CANARY]));
    } else {
        values.push(json!([secret]));
    }
    // A string is the right type for every other key: a bad Redis URL, or
    // a file that does not exist. A file's path is shown when it is written
    // in the file (it is not a secret, and "cannot read" is no help without
    // it), so only one from the environment is a case here.
    let from_environment = secret != CANARY;
    if key.pointer.ends_with("/url") || (key.names_a_file && from_environment) {
        values.push(json!(secret));
    }
    values
}

fn with_value(key: &SecretKey, value: Value) -> Value {
    let mut config = base();
    if let Some(twin) = &key.twin {
        let (parent, name) = twin.rsplit_once('/').expect("a pointer has a parent");
        if let Some(Value::Object(map)) = config.pointer_mut(parent) {
            map.remove(name);
        }
    }
    let (parent, name) = key
        .pointer
        .rsplit_once('/')
        .expect("a pointer has a parent");
    if config.pointer(parent).is_none() {
        config[parent.trim_start_matches('/')] = json!({});
    }
    let Some(Value::Object(map)) = config.pointer_mut(parent) else {
        panic!("{parent} is a map in the base configuration");
    };
    map.insert(name.to_string(), value);
    config
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Yaml,
    Toml,
    Json,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Toml => "toml",
            Format::Json => "json",
        }
    }

    fn write(self, config: &Value) -> String {
        match self {
            Format::Yaml => yaml(config, 0),
            Format::Toml => toml(config),
            Format::Json => serde_json::to_string_pretty(config).expect("a Value serializes"),
        }
    }
}

/// Block-style YAML; scalars as JSON, which YAML reads as they are.
fn yaml(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let is_block = |value: &Value| match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    };
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if is_block(item) {
                    out.push_str(&format!("{pad}{key}:\n{}", yaml(item, indent + 2)));
                } else {
                    out.push_str(&format!("{pad}{key}: {item}\n"));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    out.push_str(&format!("{pad}-\n{}", yaml(item, indent + 2)));
                } else {
                    out.push_str(&format!("{pad}- {item}\n"));
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
    out
}

/// TOML with inline tables below the top level; strings as JSON strings,
/// whose escapes TOML shares.
fn toml(config: &Value) -> String {
    fn inline(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let entries: Vec<String> = map
                    .iter()
                    .map(|(key, item)| format!("{key} = {}", inline(item)))
                    .collect();
                format!("{{ {} }}", entries.join(", "))
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(inline).collect();
                format!("[{}]", items.join(", "))
            }
            scalar => scalar.to_string(),
        }
    }
    let Value::Object(map) = config else {
        panic!("the configuration is a map");
    };
    map.iter()
        .map(|(key, item)| format!("{key} = {}\n", inline(item)))
        .collect()
}

/// Runs `portcullis <command>` on `text`: exit code and everything printed.
fn portcullis(command: &str, format: Format, text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join(format!("config.{}", format.extension()));
    std::fs::write(&path, text).expect("the temp dir is writable");
    let output = Command::new(BIN)
        .args([command, "--config"])
        .arg(&path)
        .env_remove("PORTCULLIS_CONFIG")
        .env("RUST_LOG", "trace")
        .env("CANARY", CANARY)
        .output()
        .expect("the portcullis binary runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().expect("exited on its own"), printed)
}

const FORMATS: [Format; 3] = [Format::Yaml, Format::Toml, Format::Json];

#[test]
fn the_base_configuration_is_valid() {
    for format in FORMATS {
        let (code, printed) = portcullis("check", format, &format.write(&base()));
        assert_eq!(code, 0, "{format:?}: {printed}");
    }
}

#[test]
fn a_secret_of_the_wrong_type_or_value_is_never_printed() {
    let mut cases = 0;
    for key in secret_keys() {
        let path = key_path(&key.pointer);
        for secret in [CANARY, "${CANARY}"] {
            for value in wrong_values(&key, secret) {
                let config = with_value(&key, value.clone());
                for format in FORMATS {
                    let text = format.write(&config);
                    for command in ["check", "run"] {
                        let (code, printed) = portcullis(command, format, &text);
                        let case = format!("{command} {format:?} {path} = {value}:\n{printed}");
                        assert_eq!(code, 2, "{case}");
                        assert!(printed.contains(&path), "the key path is named: {case}");
                        for canary in [CANARY, SHORT_CANARY, &CANARY_NUMBER.to_string()] {
                            assert!(!printed.contains(canary), "{canary} leaked: {case}");
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases > 300, "{cases} cases");
}

#[test]
fn a_syntax_error_on_a_secret_line_does_not_quote_it() {
    let cases = [
        (
            Format::Toml,
            format!("[sessions]\nsecrets = [\"{CANARY}\"\n"),
        ),
        (
            Format::Toml,
            format!("[sessions]\nsecrets = [\"{CANARY}]\n"),
        ),
        (
            Format::Yaml,
            format!("sessions:\n  secrets: [\"{CANARY}\"\n"),
        ),
        (
            Format::Yaml,
            format!("sessions:\n  secrets:\n  - \"{CANARY}\n"),
        ),
        (
            Format::Json,
            format!("{{\n  \"sessions\": {{\"secrets\": [\"{CANARY}\"}}}}"),
        ),
    ];
    for (format, text) in cases {
        for command in ["check", "run"] {
            let (code, printed) = portcullis(command, format, &text);
            assert_eq!(code, 2, "{format:?}:\n{text}\n{printed}");
            assert!(printed.contains("line "), "{format:?}: {printed}");
            assert!(!printed.contains(CANARY), "{format:?} leaked: {printed}");
        }
    }
}

#[test]
fn a_value_from_the_environment_is_hidden_even_under_an_ordinary_key() {
    let mut config = base();
    config["listeners"][0]["allow_underscore_headers"] = json!("${CANARY}");
    config["admin"] = json!({ "address": "${CANARY}" });
    for format in FORMATS {
        let (code, printed) = portcullis("check", format, &format.write(&config));
        assert_eq!(code, 2, "{printed}");
        assert!(printed.contains("listeners[0].allow_underscore_headers: expected true or false, got a string (value hidden: it comes from an environment variable)"), "{printed}");
        assert!(!printed.contains(CANARY), "{format:?} leaked: {printed}");
    }
    config["listeners"][0]
        .as_object_mut()
        .expect("a listener is a map")
        .remove("allow_underscore_headers");
    let (code, printed) = portcullis("check", Format::Yaml, &Format::Yaml.write(&config));
    assert_eq!(code, 2, "{printed}");
    assert!(
        printed.contains("admin.address: `[hidden]` is not an IP:PORT socket address"),
        "{printed}"
    );
    assert!(!printed.contains(CANARY), "leaked: {printed}");
}

/// A secret written where the schema wants a map (the Redis URL as the
/// `redis` map itself) is not under a secret key, yet serde would quote it:
/// no type error quotes a value.
#[test]
fn a_secret_pasted_in_place_of_a_map_is_not_printed() {
    let url = format!("redis://:{CANARY}@cache:6379");
    for (pointer, path) in [
        ("/sessions/redis", "sessions.redis".to_owned()),
        ("/sessions", "sessions".to_owned()),
        (OIDC, key_path(OIDC)),
    ] {
        let mut config = base();
        *config.pointer_mut(pointer).expect("the base has this key") = json!(url);
        for format in FORMATS {
            let text = format.write(&config);
            for command in ["check", "run"] {
                let (code, printed) = portcullis(command, format, &text);
                let case = format!("{command} {format:?} {path}:\n{printed}");
                assert_eq!(code, 2, "{case}");
                assert!(printed.contains(&path), "the key path is named: {case}");
                assert!(!printed.contains(CANARY), "leaked: {case}");
            }
        }
    }
}
