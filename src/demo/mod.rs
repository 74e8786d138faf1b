//! `portcullis demo`: the whole flow on a laptop, with nothing installed and
//! no configuration: the proxy on `https://localhost:PORT` with a
//! self-signed certificate, the development OpenID provider of
//! `portcullis dev-idp` ([`crate::dev_idp`]) and an echo application
//! ([`echo`]) that shows what an app behind portcullis receives. Everything
//! listens on loopback. FOR DEVELOPMENT ONLY.

pub mod echo;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::TcpListener;

use crate::Portcullis;
use crate::config::*;
use crate::dev_http::html_document;
use crate::dev_idp::{self, Settings, test_user};

const CLIENT_ID: &str = "portcullis-demo";
/// The password of the demo's test users.
pub const DEMO_PASSWORD: &str = "demo";
/// The user the demo suggests; `bob` is the other one.
pub const DEMO_USER: &str = "alice";
/// Where sign-out ends: a page the proxy answers itself, without a login.
const SIGNED_OUT_PATH: &str = "/signed-out";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the self-signed certificate")]
    Certificate(#[source] rcgen::Error),
    #[error("cannot write the certificate to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the signing key")]
    SigningKey(#[source] crate::identity::signing::SigningError),
    #[error(transparent)]
    Idp(#[from] dev_idp::RunError),
    #[error(transparent)]
    Start(#[from] crate::server::StartError),
}

/// What the demo is listening on, printed for the user (and read by tests).
pub struct DemoAddresses {
    pub url: String,
    pub idp: String,
    pub echo: SocketAddr,
    pub admin: Option<SocketAddr>,
}

async fn listen(port: u16) -> Result<TcpListener, DemoError> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(address)
        .await
        .map_err(|source| DemoError::Bind { address, source })
}

fn local_address(listener: &TcpListener) -> Result<SocketAddr, DemoError> {
    listener.local_addr().map_err(|source| DemoError::Bind {
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
    })
}

/// Runs the demo until `shutdown` resolves. `port` 0 picks a free one.
pub async fn run(
    port: u16,
    shutdown: impl Future<Output = ()>,
    announce: impl FnOnce(&DemoAddresses),
) -> Result<(), DemoError> {
    let idp_listener = listen(0).await?;
    let echo_listener = listen(0).await?;
    let idp_address = local_address(&idp_listener)?;
    let echo_address = local_address(&echo_listener)?;
    let issuer = format!("http://127.0.0.1:{}", idp_address.port());
    let client_secret = random_base64(24);

    let certificate = self_signed_certificate()?;
    let config = demo_config(
        port,
        &issuer,
        client_secret.clone(),
        echo_address,
        certificate,
    )?;
    let portcullis = Portcullis::bind(&config).await?;
    // The redirect URI needs the port the proxy got; the provider's socket is
    // already bound, so the proxy's discovery call simply waits in its backlog.
    let proxy_port = portcullis
        .local_addrs()
        .first()
        .map_or(port, |address| address.port());
    let url = format!("https://localhost:{proxy_port}");
    let provider = dev_idp::on_listener(
        idp_listener,
        provider_settings(idp_address, &issuer, client_secret, &url),
    )?;
    tokio::spawn(provider.serve(std::future::pending()));
    tokio::spawn(crate::dev_http::serve(echo_listener, echo::handle));

    announce(&DemoAddresses {
        url,
        idp: issuer,
        echo: echo_address,
        admin: portcullis.admin_addr(),
    });
    portcullis.serve(shutdown).await;
    Ok(())
}

/// The provider's one client (the proxy) and its two test users.
fn provider_settings(
    address: SocketAddr,
    issuer: &str,
    client_secret: String,
    proxy_url: &str,
) -> Settings {
    let url = |text: String| url::Url::parse(&text).expect("built from a loopback address");
    Settings {
        address,
        base_url: url(issuer.to_owned()),
        mode: dev_idp::Mode::Oidc,
        clients: vec![dev_idp::Client {
            id: CLIENT_ID.to_owned(),
            secret: Secret::new(client_secret),
            redirect_uris: vec![url(format!("{proxy_url}/oauth2/idpresponse"))],
            default_secret: false,
        }],
        users: vec![
            test_user(DEMO_USER, DEMO_PASSWORD, &["admins", "developers"]),
            test_user("bob", DEMO_PASSWORD, &["developers"]),
        ],
        login_hint: Some(format!(
            "{DEMO_USER} / {DEMO_PASSWORD} (admins, developers) or bob / {DEMO_PASSWORD} (developers)"
        )),
    }
}

fn demo_config(
    port: u16,
    issuer: &str,
    client_secret: String,
    echo: SocketAddr,
    certificate: CertificateFiles,
) -> Result<Config, DemoError> {
    // A key made here rather than by the proxy: the proxy warns about a key
    // it generates itself (replicas would disagree), which the demo, one
    // process on a laptop, has no reason to hear.
    let signing_key =
        crate::identity::signing::generate_private_key_pem().map_err(DemoError::SigningKey)?;
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("the system random number generator works");
    let authenticate = AuthenticateAction::Oidc(OidcAction {
        issuer: issuer.parse().expect("a loopback URL"),
        authorization_endpoint: None,
        token_endpoint: None,
        user_info_endpoint: None,
        jwks_uri: None,
        end_session_endpoint: None,
        discovery: true,
        token_endpoint_auth_method: None,
        allow_insecure_http: false,
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::new(client_secret),
        common: AuthCommon {
            scope: "openid email profile".to_owned(),
            session_cookie_name: "AWSELBAuthSessionCookie".to_owned(),
            session_timeout: Duration::from_secs(8 * 3600),
            extra_params: Vec::new(),
            on_unauthenticated_request: UnauthenticatedPolicy::Authenticate,
            api_requests: ApiRequests::Unauthorized,
            allow_cors_preflight: false,
            login_timeout: Duration::from_secs(15 * 60),
            idp_timeout: Duration::from_secs(10),
            sign_out_redirect: SIGNED_OUT_PATH.to_owned(),
            require: Vec::new(),
            claim_headers: Vec::new(),
            bearer_audience: None,
        },
    });
    let signed_out = Rule {
        name: "signed-out".to_owned(),
        conditions: Conditions {
            path: vec![SIGNED_OUT_PATH.to_owned()],
            ..Conditions::default()
        },
        authenticate: None,
        jwt_validation: None,
        action: TerminalAction::FixedResponse(FixedResponseAction {
            status: 200,
            content_type: Some("text/html; charset=utf-8".to_owned()),
            body: html_document(
                "You are signed out",
                r#"<p>You are signed out: portcullis cleared its session cookies and the development provider ended its session.</p>
<p><a href="/">Sign in again</a></p>"#,
            ),
        }),
    };
    Ok(Config {
        admin: Some(AdminConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
        }),
        sessions: SessionsConfig {
            secrets: vec![SessionKey(key)],
            store: SessionStoreKind::Cookie,
        },
        signing: SigningConfig {
            private_key_pem: Some(signing_key),
            key_id: None,
            signer: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis-demo/0".to_owned(),
            encoding: TokenEncoding::Alb,
        },
        limits: Limits::default(),
        shutdown_timeout: Duration::from_secs(5),
        watch_config: false,
        fingerprint: String::new(),
        listeners: vec![ListenerConfig {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: Some(TlsConfig {
                default_certificate: certificate,
                certificates: Vec::new(),
                reload_interval: Duration::from_secs(3600),
            }),
            headers: HeaderPolicy::default(),
            trusted_proxies: Cidr::loopback(),
            rules: vec![
                signed_out,
                Rule {
                name: "demo".to_owned(),
                conditions: Conditions::default(),
                authenticate: Some(authenticate),
                jwt_validation: None,
                action: TerminalAction::Forward(ForwardAction::single(
                    format!("http://{echo}").parse().expect("a loopback URL"),
                    Duration::from_secs(30),
                )),
            },
            ],
        }],
    })
}

/// Where this process' demo keeps its certificate.
fn certificate_dir() -> PathBuf {
    std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()))
}

/// A certificate for `localhost`, written where the TLS loader reads files.
fn self_signed_certificate() -> Result<CertificateFiles, DemoError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(DemoError::Certificate)?;
    let directory = certificate_dir();
    let write = |name: &str, content: String| {
        let path = directory.join(name);
        std::fs::create_dir_all(&directory)
            .and_then(|()| std::fs::write(&path, content))
            .map(|()| path.clone())
            .map_err(|source| DemoError::Write { path, source })
    };
    Ok(CertificateFiles {
        certificate_file: write("tls.crt", certified.cert.pem())?,
        private_key_file: write("tls.key", certified.signing_key.serialize_pem())?,
    })
}

fn random_base64(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("the system random number generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}
