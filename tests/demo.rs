//! `portcullis demo` and `portcullis keygen` as a user runs them: the binary
//! as a process, logged in through with an HTTP client.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::browser::Browser;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Starts `portcullis demo --port 0` and returns it with the URL it printed
/// and the demo's certificate.
async fn start_demo() -> (tokio::process::Child, String, CertificateDer<'static>) {
    let (child, url, certificate, _) = start_demo_with_admin().await;
    (child, url, certificate)
}

async fn start_demo_with_admin() -> (
    tokio::process::Child,
    String,
    CertificateDer<'static>,
    String,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let (url, admin) = tokio::time::timeout(Duration::from_secs(20), async {
        let mut url = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            let line = line.trim();
            if let Some(found) = line.strip_prefix("Open:") {
                url = Some(found.trim().trim_end_matches('/').to_owned());
            }
            if let Some(metrics) = line.strip_prefix("Metrics:") {
                let admin = metrics.trim().trim_end_matches("/metrics").to_owned();
                return (url.expect("Open: comes before Metrics:"), admin);
            }
        }
        panic!("the demo printed no URL:\n{banner}");
    })
    .await
    .expect("the demo starts within 20 s");
    assert!(banner.contains("FOR DEVELOPMENT ONLY"), "{banner}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The demo's self-signed certificate, trusted like a user clicking through the warning.
    let path = std::env::temp_dir()
        .join(format!("portcullis-demo-{}", child.id().unwrap()))
        .join("tls.crt");
    let certificate = CertificateDer::from_pem_file(&path).unwrap();
    (child, url, certificate, admin)
}

#[tokio::test]
async fn the_demo_logs_in_and_shows_the_claims() {
    let (_demo, url, certificate) = start_demo().await;
    let mut browser = Browser::new(Some(certificate.clone()));
    let login_page = browser.follow(&format!("{url}/")).await;
    assert_eq!(
        login_page
            .body
            .to_lowercase()
            .matches("for development only")
            .count(),
        1,
        "one development-only banner: {}",
        login_page.body
    );
    assert!(
        login_page.body.contains("alice"),
        "the page shows the test login"
    );

    let page = browser
        .login(&format!("{url}/hello?from=test"), "alice", "demo")
        .await;
    assert_eq!(page.status, 200, "{:#?}\n{}", page.hops, page.body);
    assert!(
        page.body.contains(r#"<span id="identity">alice</span>"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("alice@example.test"),
        "the decoded claims are shown"
    );
    assert!(page.body.contains("ES256"), "the JWT header is shown");

    // A wrong password is refused by the provider's page.
    let mut stranger = Browser::new(Some(certificate));
    let form = stranger.follow(&format!("{url}/")).await;
    let refused = stranger
        .submit_form(&form, &[("login", "mallory"), ("password", "wrong")])
        .await;
    assert!(
        refused.body.contains("Wrong user or password"),
        "{}",
        refused.body
    );

    // The page shows how to verify the header, with this proxy's key URL.
    assert!(
        page.body
            .contains(&format!("jwksUri: &quot;{url}/oauth2/public-keys&quot;")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("PROXY = &quot;{url}&quot;")));
    assert!(page.body.contains("AlbJwtVerifier"), "{}", page.body);

    // Signing out ends the session, through the provider, on a page that says so.
    let out = browser.follow(&format!("{url}/oauth2/sign_out")).await;
    assert_eq!(out.status, 200, "{:#?}", out.hops);
    assert_eq!(out.url, format!("{url}/signed-out"));
    assert!(out.body.contains("You are signed out"), "{}", out.body);
    assert!(out.body.contains(r#"<a href="/">Sign in again</a>"#));
    assert_eq!(browser.get(&format!("{url}/")).await.status, 302);
}

#[tokio::test]
async fn keygen_prints_a_session_secret_and_a_signing_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("keygen")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"), "{text}");
    let secret = text.lines().find(|line| !line.starts_with('#')).unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap()
            .len(),
        32
    );

    // The key is one `signing.private_key_file` accepts.
    let dir = tempfile::tempdir().unwrap();
    let pem: String = text
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(dir.path().join("signing.pem"), pem).unwrap();
    let config = format!(
        "sessions: {{ secrets: [\"{secret}\"] }}\nsigning: {{ private_key_file: {} }}\nlisteners:\n  - address: 127.0.0.1:0\n    rules:\n      - actions: [ {{ fixed_response: {{ status: 200 }} }} ]\n",
        dir.path().join("signing.pem").display()
    );
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .await
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Debian's Chromium, driven by playwright-core (tests/browser), logs in
/// through the demo's login page, lands on the echo page and signs out. The
/// screenshots of the three pages are kept as test artifacts in
/// `target/tmp/demo-screenshots/`.
#[tokio::test]
async fn a_real_browser_logs_in_through_the_demo() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    assert!(
        browser_dir
            .join("node_modules")
            .join("playwright-core")
            .is_dir(),
        "run `npm ci --prefix tests/browser` (scripts/deps does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's `chromium` (scripts/deps does)"
    );
    let (_demo, url, _) = start_demo().await;
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg(browser_dir.join("demo-login.mjs"))
            .env("DEMO_URL", &url)
            .env("SCREENSHOTS", &screenshots)
            .env("CHROMIUM", &chromium)
            .output(),
    )
    .await
    .expect("the browser finishes within 90 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["identity"], "alice");
    assert_eq!(result["claims"]["email"], "\"alice@example.test\"");
    assert!(
        result["url"]
            .as_str()
            .unwrap()
            .ends_with("/hello?from=chromium"),
        "{result}"
    );
    assert!(
        result["signed_out"]
            .as_str()
            .unwrap()
            .contains("You are signed out"),
        "{result}"
    );
    for page in ["login", "echo", "signed-out"] {
        let screenshot = screenshots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&screenshot).map_or(0, |file| file.len()) > 1000,
            "{} was saved",
            screenshot.display()
        );
    }
}

#[tokio::test]
async fn healthcheck_probes_the_admin_endpoint() {
    let (_demo, _, _, admin) = start_demo_with_admin().await;
    let healthy = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["healthcheck", "--url", &format!("{admin}/healthz")])
        .status()
        .await
        .unwrap();
    assert!(healthy.success());
    let missing = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["healthcheck", "--url", &format!("{admin}/nothing-here")])
        .status()
        .await
        .unwrap();
    assert_eq!(missing.code(), Some(1));
    let dead = common::upstream::dead_port();
    let down = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "healthcheck",
            "--url",
            &format!("http://{}/healthz", dead.addr),
        ])
        .status()
        .await
        .unwrap();
    assert_eq!(down.code(), Some(1));
}
