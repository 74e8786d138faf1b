//! Every example under `config/` must pass `portcullis check`: loads each file
//! with a fake environment that provides the variables the examples use and
//! answers reads of the files they name, so no real `/etc/portcullis` is needed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use portcullis::config::{
    AuthenticateAction, Config, ConfigError, Environment, TerminalAction, describe, load_file,
};

/// base64 of 32 bytes, as `portcullis keygen` prints one.
const SESSION_SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Shaped like a PKCS#8 key; validation checks the shape, not the key.
const SIGNING_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

struct ExampleEnv {
    vars: HashMap<&'static str, &'static str>,
    examples: PathBuf,
}

impl ExampleEnv {
    fn new() -> Self {
        Self {
            vars: HashMap::from([
                ("SESSION_SECRET", SESSION_SECRET),
                ("CLIENT_SECRET", "example-client-secret"),
                ("COGNITO_SECRET", "example-cognito-secret"),
            ]),
            examples: examples_dir(),
        }
    }
}

impl Environment for ExampleEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|value| value.to_string())
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        if path.starts_with(&self.examples) {
            return std::fs::read_to_string(path);
        }
        if path.starts_with("/etc/portcullis") {
            let is_key = path
                .extension()
                .is_some_and(|ext| ext == "pem" || ext == "key");
            return Ok(if is_key { SIGNING_PEM } else { "placeholder\n" }.to_string());
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the examples should not read {}", path.display()),
        ))
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("config/ holds the example configurations")
        .map(|entry| entry.expect("config/ is readable").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Config {
    match load_file(path, &ExampleEnv::new()) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            panic!("{} has problems:\n{}", path.display(), describe(&problems))
        }
        Err(error) => panic!("{}: {error}", path.display()),
    }
}

#[test]
fn every_example_loads() {
    let files = example_files();
    let names: Vec<String> = files
        .iter()
        .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
        .collect();
    for expected in ["minimal.yaml", "full.yaml", "full.toml", "full.json"] {
        assert!(
            names.iter().any(|name| name == expected),
            "config/{expected} is missing"
        );
    }
    for path in &files {
        let config = load(path);
        assert!(!config.listeners.is_empty(), "{}", path.display());
    }
}

#[test]
fn minimal_example_forwards_without_login() {
    let config = load(&examples_dir().join("minimal.yaml"));
    let rules = &config.listeners[0].rules;
    assert!(config.listeners[0].tls.is_none());
    assert!(rules.iter().all(|rule| rule.authenticate.is_none()));
    assert!(matches!(rules[0].action, TerminalAction::FixedResponse(_)));
    match &rules[1].action {
        TerminalAction::Forward(forward) => {
            assert_eq!(forward.targets[0].target.as_str(), "http://127.0.0.1:8080/")
        }
        other => panic!("expected forward, got {other:?}"),
    }
}

#[test]
fn full_example_uses_every_section() {
    let config = load(&examples_dir().join("full.yaml"));
    assert!(config.admin.is_some());
    assert_eq!(config.sessions.secrets.len(), 1);
    assert!(config.signing.private_key_pem.is_some());
    assert_eq!(config.limits.max_connections, Some(10_000));
    let https = &config.listeners[0];
    let tls = https.tls.as_ref().expect("the first listener has TLS");
    assert_eq!(tls.certificates.len(), 1);
    let kinds: Vec<&str> = https
        .rules
        .iter()
        .map(|rule| match (&rule.authenticate, &rule.action) {
            (Some(AuthenticateAction::Oidc(_)), _) => "oidc",
            (Some(AuthenticateAction::Cognito(_)), _) => "cognito",
            (None, TerminalAction::Forward(_)) => "forward",
            (None, TerminalAction::FixedResponse(_)) => "fixed_response",
            (None, TerminalAction::Redirect(_)) => "redirect",
        })
        .collect();
    assert_eq!(kinds, ["oidc", "fixed_response", "cognito"]);
}
