//! Shared test harness: a private CA (rcgen), a real upstream HTTP server, the
//! proxy started in-process on `127.0.0.1:0`, and HTTP/1.1 + HTTP/2 clients
//! over plain TCP or TLS with a chosen SNI name.
#![allow(dead_code)]

pub mod alb;
pub mod browser;
pub mod front;
pub mod idp;
pub mod lenient;
pub mod process;
pub mod redis;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::Portcullis;
use portcullis::config::*;
use portcullis::internals::Clock;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A private certificate authority that issues leaf certificates into a temp dir.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            issuer,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    /// Issues a certificate for `names`, writes `{stem}.crt` and `{stem}.key`,
    /// and returns the files with the certificate's DER.
    pub fn issue(&self, stem: &str, names: &[&str]) -> (CertificateFiles, CertificateDer<'static>) {
        let (certificate_pem, key_pem, der) = self.issue_pem(names);
        let files = CertificateFiles {
            certificate_file: self.dir.path().join(format!("{stem}.crt")),
            private_key_file: self.dir.path().join(format!("{stem}.key")),
        };
        std::fs::write(&files.certificate_file, certificate_pem).unwrap();
        std::fs::write(&files.private_key_file, key_pem).unwrap();
        (files, der)
    }

    pub fn issue_pem(&self, names: &[&str]) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (
            certificate.pem(),
            key.serialize_pem(),
            certificate.der().clone(),
        )
    }
}

/// `${NAME}` for test configurations comes from here, never from the real environment.
pub struct TestEnv(pub std::collections::HashMap<String, String>);

impl Environment for TestEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Loads a YAML configuration with `${NAME}` taken from `vars`; panics with
/// the problems and the text when it does not validate.
pub fn load_yaml(yaml: &str, vars: &[(&str, &str)]) -> Config {
    let env = TestEnv(
        vars.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    );
    load_str(yaml, Format::Yaml, &env).unwrap_or_else(|error| panic!("{error:?}\n{yaml}"))
}

pub fn tls_config(default: CertificateFiles, more: Vec<CertificateFiles>) -> TlsConfig {
    TlsConfig {
        default_certificate: default,
        certificates: more,
        reload_interval: Duration::from_millis(200),
    }
}

pub fn listener(tls: Option<TlsConfig>, rules: Vec<Rule>) -> ListenerConfig {
    ListenerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        tls,
        rules,
        headers: HeaderPolicy::default(),
        trusted_proxies: Cidr::loopback(),
    }
}

pub fn config(listeners: Vec<ListenerConfig>) -> Config {
    Config {
        admin: Some(AdminConfig {
            address: "127.0.0.1:0".parse().unwrap(),
        }),
        sessions: SessionsConfig {
            secrets: Vec::new(),
            store: SessionStoreKind::Cookie,
        },
        signing: SigningConfig {
            private_key_pem: None,
            key_id: None,
            signer:
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis/0"
                    .into(),
            encoding: TokenEncoding::Alb,
        },
        limits: Limits::default(),
        shutdown_timeout: Duration::from_secs(5),
        watch_config: false,
        fingerprint: String::new(),
        listeners,
    }
}

pub fn rule(name: &str, host: &[&str], path: &[&str], action: TerminalAction) -> Rule {
    Rule {
        name: name.into(),
        conditions: Conditions {
            host: host.iter().map(|host| host.to_string()).collect(),
            path: path.iter().map(|path| path.to_string()).collect(),
            ..Conditions::default()
        },
        authenticate: None,
        jwt_validation: None,
        action,
    }
}

pub fn forward(target: SocketAddr) -> TerminalAction {
    forward_with_timeout(target, Duration::from_secs(60))
}

pub fn forward_with_timeout(target: SocketAddr, timeout: Duration) -> TerminalAction {
    TerminalAction::Forward(ForwardAction::single(
        format!("http://{target}").parse().unwrap(),
        timeout,
    ))
}

pub fn fixed(status: u16, body: &str) -> TerminalAction {
    TerminalAction::FixedResponse(FixedResponseAction {
        status,
        content_type: Some("text/plain".into()),
        body: body.into(),
    })
}

/// The proxy running in this process until dropped or stopped.
pub struct Running {
    pub addrs: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Starts a graceful shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub async fn start(config: Config) -> Running {
    start_with_clock(config, Clock::system()).await
}

/// [`start`], judging sessions by `clock`.
pub async fn start_with_clock(config: Config, clock: Clock) -> Running {
    install_crypto_provider();
    let portcullis = Portcullis::bind_with_clock(&config, clock)
        .await
        .expect("portcullis binds");
    let addrs = portcullis.local_addrs();
    let admin = portcullis.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(portcullis.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        addrs,
        admin,
        stop: Some(stop),
        task: Some(task),
    }
}

/// [`start_with_clock`] from a configuration file that is reloaded each
/// time the returned sender is sent `()` (as SIGHUP does for `run`).
pub async fn start_reloading(
    file: &Path,
    clock: Clock,
) -> (Running, tokio::sync::mpsc::Sender<()>) {
    install_crypto_provider();
    let (config, reloads) = portcullis::Reloads::from_file(file, TestEnv(Default::default()))
        .unwrap_or_else(|error| panic!("{error:?}"));
    let portcullis = Portcullis::bind_with_clock(&config, clock)
        .await
        .expect("portcullis binds");
    let addrs = portcullis.local_addrs();
    let admin = portcullis.admin_addr();
    let reload = reloads.trigger();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(portcullis.serve_reloading(
        async move {
            let _ = stopped.await;
        },
        reloads,
    ));
    let running = Running {
        addrs,
        admin,
        stop: Some(stop),
        task: Some(task),
    };
    (running, reload)
}

/// `portcullis_config_reloads_total{result}` on `admin`.
pub async fn reloads(admin: SocketAddr, result: &str) -> u64 {
    let series = format!(r#"portcullis_config_reloads_total{{result="{result}"}}"#);
    admin_get(admin, "/metrics")
        .await
        .text()
        .lines()
        .find_map(|line| {
            line.strip_prefix(series.as_str())?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |value| value as u64)
}

/// The session key of every [`TlsStack`].
pub const SESSION_SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// portcullis on `https://localhost:PORT` (a certificate from a test CA) in
/// front of a real upstream: the stack the login tests build their rules on.
pub struct TlsStack {
    pub proxy: Running,
    pub upstream: upstream::Upstream,
    pub pki: Pki,
    /// What the proxy judges sessions by.
    pub clock: Clock,
}

impl TlsStack {
    /// Starts the upstream and the proxy. `rules` gets the upstream's address
    /// and returns the listener's rules, YAML indented for `rules:` (six
    /// spaces). The configuration has an admin listener, [`SESSION_SECRET`]
    /// as its session key and `signer` as the data token's `signer`; `vars`
    /// fill the rules' `${...}` references.
    pub async fn start(
        signer: &str,
        vars: &[(&str, &str)],
        rules: impl FnOnce(SocketAddr) -> String,
    ) -> Self {
        Self::start_with_clock(signer, vars, Clock::system(), rules).await
    }

    /// [`start`](Self::start), judging sessions by `clock`.
    pub async fn start_with_clock(
        signer: &str,
        vars: &[(&str, &str)],
        clock: Clock,
        rules: impl FnOnce(SocketAddr) -> String,
    ) -> Self {
        Self::start_listener(signer, vars, clock, "", rules).await
    }

    /// [`start_with_clock`](Self::start_with_clock) with more keys for the
    /// listener, YAML unindented (`allow_underscore_headers: true`).
    pub async fn start_listener(
        signer: &str,
        vars: &[(&str, &str)],
        clock: Clock,
        listener: &str,
        rules: impl FnOnce(SocketAddr) -> String,
    ) -> Self {
        let upstream = upstream::start().await;
        let pki = Pki::new();
        let (files, _) = pki.issue("localhost", &["localhost"]);
        let yaml = format!(
            r#"
admin: {{ address: "127.0.0.1:0" }}
sessions: {{ secrets: ["{SESSION_SECRET}"] }}
signing: {{ signer: "{signer}" }}
listeners:
  - address: "127.0.0.1:0"
{listener}    tls:
      certificate_file: {cert}
      private_key_file: {key}
    rules:
{rules}
"#,
            listener = listener
                .lines()
                .map(|line| format!("    {line}\n"))
                .collect::<String>(),
            cert = files.certificate_file.display(),
            key = files.private_key_file.display(),
            rules = rules(upstream.addr),
        );
        let proxy = start_with_clock(load_yaml(&yaml, vars), clock.clone()).await;
        Self {
            proxy,
            upstream,
            pki,
            clock,
        }
    }

    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.proxy.addr().port())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn host(&self) -> String {
        format!("localhost:{}", self.proxy.addr().port())
    }

    /// A browser that trusts the test CA.
    pub fn browser(&self) -> browser::Browser {
        browser::Browser::new(Some(self.pki.ca_der()))
    }

    /// Logs alice in starting at `path`; returns the final (upstream) page.
    pub async fn login(&self, browser: &mut browser::Browser, path: &str) -> browser::Page {
        let page = browser
            .login(&self.url(path), "alice", "any password")
            .await;
        assert_eq!(
            page.status, 200,
            "login did not end on the upstream: {:#?}\n{}",
            page.hops, page.body
        );
        page
    }
}

/// A response with its body read whole.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub version: http::Version,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", self.text()))
    }
}

pub async fn read_answer<B>(response: Response<B>) -> Answer
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        version: parts.version,
        body,
    }
}

/// One HTTP/1.1 request over a fresh plain TCP connection.
pub async fn http1(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    read_answer(sender.send_request(request).await.unwrap()).await
}

pub fn get(host: &str, path_and_query: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path_and_query)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub fn client_tls(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` offering `sni` (or no SNI when `None`) and ALPN.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (*client_tls(ca, alpn)).clone();
    // Without SNI, rustls still verifies the certificate against the name given below.
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("localhost").to_owned()).unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap()
}

/// The leaf certificate the server presented.
pub fn peer_leaf(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Sends one request over an established TLS stream with the negotiated protocol.
pub async fn send_tls(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    request: Request<Full<Bytes>>,
) -> Answer {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        read_answer(sender.send_request(request).await.unwrap()).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        read_answer(sender.send_request(request).await.unwrap()).await
    }
}

pub async fn admin_get(admin: SocketAddr, path: &str) -> Answer {
    http1(admin, get(&admin.to_string(), path)).await
}

/// Waits up to `limit` for `condition`, checking every 50 ms.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
}
