//! `portcullis run` as a child process, its stderr captured.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::front::Log;

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The binary with none of the caller's settings that would change its behaviour.
pub fn command() -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    for name in [
        "RUST_LOG",
        "PORTCULLIS_CONFIG",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        command.env_remove(name);
    }
    command
}

/// `portcullis run --log-format json --config FILE`, killed when dropped.
pub fn run(config: &Path) -> (Child, Log) {
    let mut child = Command::from(command())
        .args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the portcullis binary starts");
    let log = Log::capture(&mut child);
    (child, log)
}

/// The address in a JSON log line whose message is `message` (`listening`,
/// `admin listening`), for [`Log::wait_for`].
pub fn logged_address(message: &'static str) -> impl Fn(&str) -> Option<SocketAddr> {
    move |line| {
        let event: Value = serde_json::from_str(line).ok()?;
        if event["message"] != message {
            return None;
        }
        event["address"].as_str()?.parse().ok()
    }
}
