//! `portcullis demo`: the whole flow on a laptop, with nothing installed and
//! no configuration: the proxy on `https://localhost:PORT` with a
//! self-signed certificate, a development OpenID provider ([`idp`]) and an
//! echo application ([`echo`]) that shows what an app behind portcullis
//! receives. Everything listens on loopback. FOR DEVELOPMENT ONLY.

pub mod echo;
pub mod idp;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Portcullis;
use crate::body::{self, Body};
use crate::config::*;

const CLIENT_ID: &str = "portcullis-demo";

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
    #[error(transparent)]
    Idp(#[from] idp::DevIdpError),
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
    );
    let portcullis = Portcullis::bind(&config).await?;
    // The redirect URI needs the port the proxy got; the provider's socket is
    // already bound, so the proxy's discovery call simply waits in its backlog.
    let proxy_port = portcullis
        .local_addrs()
        .first()
        .map_or(port, |address| address.port());
    let url = format!("https://localhost:{proxy_port}");
    let provider = idp::DevIdp::new(
        issuer.clone(),
        idp::Client {
            id: CLIENT_ID.to_owned(),
            secret: client_secret,
            redirect_uri: format!("{url}/oauth2/idpresponse"),
        },
    )?;
    tokio::spawn(serve(idp_listener, move |request| {
        provider.clone().handle(request)
    }));
    tokio::spawn(serve(echo_listener, echo::handle));

    announce(&DemoAddresses {
        url,
        idp: issuer,
        echo: echo_address,
        admin: portcullis.admin_addr(),
    });
    portcullis.serve(shutdown).await;
    Ok(())
}

fn demo_config(
    port: u16,
    issuer: &str,
    client_secret: String,
    echo: SocketAddr,
    certificate: CertificateFiles,
) -> Config {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("the system random number generator works");
    let authenticate = AuthenticateAction::Oidc(OidcAction {
        issuer: issuer.parse().expect("a loopback URL"),
        authorization_endpoint: None,
        token_endpoint: None,
        user_info_endpoint: None,
        jwks_uri: None,
        end_session_endpoint: None,
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
            sign_out_redirect: "/".to_owned(),
        },
    });
    Config {
        admin: Some(AdminConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
        }),
        sessions: SessionsConfig {
            secrets: vec![SessionKey(key)],
            store: SessionStoreKind::Cookie,
        },
        signing: SigningConfig {
            private_key_pem: None,
            key_id: None,
            signer: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis-demo/0".to_owned(),
            encoding: TokenEncoding::Alb,
        },
        limits: Limits::default(),
        shutdown_timeout: Duration::from_secs(5),
        listeners: vec![ListenerConfig {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: Some(TlsConfig {
                default_certificate: certificate,
                certificates: Vec::new(),
                reload_interval: Duration::from_secs(3600),
            }),
            headers: HeaderPolicy::default(),
            rules: vec![Rule {
                name: "demo".to_owned(),
                conditions: Conditions::default(),
                authenticate: Some(authenticate),
                action: TerminalAction::Forward(ForwardAction {
                    target: format!("http://{echo}").parse().expect("a loopback URL"),
                    timeout: Duration::from_secs(30),
                }),
            }],
        }],
    }
}

/// A certificate for `localhost`, written where the TLS loader reads files.
fn self_signed_certificate() -> Result<CertificateFiles, DemoError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(DemoError::Certificate)?;
    let directory = std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()));
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

/// Serves plain HTTP/1.1 and HTTP/2 on a loopback listener until the process ends.
async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = handler(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn random_base64(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("the system random number generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

/// A small page in the demo's style, marked as development-only.
pub fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let page = format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}
th{{text-align:left;padding-right:1rem;vertical-align:top}} td{{word-break:break-all}}
.warning{{background:#fff3cd;padding:.5rem}} .error{{color:#b00020}} label{{display:block;margin:.5rem 0}}</style>
</head><body><h1>{title}</h1>
<p class="warning">portcullis demo: for development only.</p>
{body}
</body></html>
"#,
        title = html_escape(title)
    );
    let mut response = Response::new(body::full(page));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Small response builders for the demo's servers.
pub mod respond {
    use http::{HeaderValue, Response, StatusCode, header};

    use crate::body::{self, Body};

    pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
        let mut response = Response::new(body::full(value.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    pub fn redirect(location: &str) -> Response<Body> {
        let mut response = Response::new(body::empty());
        *response.status_mut() = StatusCode::FOUND;
        if let Ok(location) = HeaderValue::from_str(location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}
