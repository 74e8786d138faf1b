//! `portcullis dev-idp`: a development OpenID provider, so an application
//! that runs behind an ALB can run locally behind portcullis with no real
//! identity provider. Test users with chosen claims and groups, clients with
//! their redirect URIs, and a Cognito-shaped mode for `authenticate_cognito`.
//! `portcullis demo` runs the same provider.
//!
//! FOR DEVELOPMENT ONLY: users and passwords sit in a file or on the command
//! line, sessions and keys live in memory, and anyone who reaches the
//! provider can sign in as any test user. It listens on loopback unless told
//! otherwise.

mod provider;
mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use provider::{DevIdp, DevIdpError};
pub use settings::{
    Client, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USER_POOL_ID, Mode, Options,
    Settings, SettingsError, User, test_user,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Provider(#[from] DevIdpError),
}

/// The provider with its listener bound, ready to serve.
pub struct Bound {
    listener: TcpListener,
    provider: Arc<DevIdp>,
    /// The address actually bound (port 0 resolved).
    pub address: SocketAddr,
}

/// Binds `settings.address` and builds the provider. The loopback rule is
/// the settings' business ([`Settings::load`] refuses a remote address
/// without `allow_remote`).
pub async fn bind(settings: Settings) -> Result<Bound, RunError> {
    let address = settings.address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })?;
    on_listener(listener, settings)
}

/// A provider on a listener the caller bound (the demo binds first to learn
/// the port its issuer names). A base URL with port 0 gets the listener's
/// port, so `--address 127.0.0.1:0` alone names the right issuer.
pub fn on_listener(listener: TcpListener, mut settings: Settings) -> Result<Bound, RunError> {
    let address = listener.local_addr().map_err(|source| RunError::Bind {
        address: settings.address,
        source,
    })?;
    if settings.base_url.port() == Some(0) {
        // An http(s) URL with a host always takes a port.
        let _ = settings.base_url.set_port(Some(address.port()));
    }
    Ok(Bound {
        listener,
        provider: DevIdp::new(settings)?,
        address,
    })
}

impl Bound {
    pub fn issuer(&self) -> &str {
        self.provider.issuer()
    }

    pub fn settings(&self) -> &Settings {
        self.provider.settings()
    }

    /// Answers requests until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let provider = self.provider;
        let serving = crate::dev_http::serve(self.listener, move |request| {
            provider.clone().handle(request)
        });
        tokio::select! {
            () = serving => {}
            () = shutdown => {}
        }
    }
}

/// What `portcullis dev-idp` prints at start: what it serves and how to
/// point portcullis at it. Secrets are shown only when they are the
/// built-in, public defaults.
pub fn describe(settings: &Settings, address: SocketAddr) -> String {
    let mut text = String::from(
        "portcullis dev-idp: DEVELOPMENT ONLY. A test OpenID provider with in-memory sessions; \
         anyone who reaches it can sign in as its users. Never use it in production.\n\n",
    );
    let issuer = settings.issuer();
    text.push_str(&format!("  Listening:   http://{address}\n"));
    text.push_str(&format!("  Issuer:      {issuer}\n"));
    text.push_str(&format!(
        "  Discovery:   {issuer}/.well-known/openid-configuration\n"
    ));
    for client in &settings.clients {
        let secret = if client.default_secret {
            client.secret.expose()
        } else {
            "(as configured)"
        };
        text.push_str(&format!("  Client:      {}  secret: {secret}\n", client.id));
        for uri in &client.redirect_uris {
            let shown = match uri.port() {
                Some(0) => uri.as_str().replacen(":0/", ":*/", 1),
                _ => uri.to_string(),
            };
            text.push_str(&format!("               redirect URI: {shown}\n"));
        }
    }
    for user in &settings.users {
        let groups = user
            .claims
            .get("groups")
            .and_then(serde_json::Value::as_array)
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "  User:        {}  groups: [{groups}]\n",
            user.username
        ));
    }
    if let Some(hint) = &settings.login_hint {
        text.push_str(&format!("  Passwords:   {hint}\n"));
    }
    let client_id = settings
        .clients
        .first()
        .map_or(DEFAULT_CLIENT_ID, |client| client.id.as_str());
    text.push_str("\nIn the portcullis configuration:\n");
    match &settings.mode {
        Mode::Oidc => text.push_str(&format!(
            "  - authenticate_oidc:\n      issuer: {issuer}\n      client_id: {client_id}\n      client_secret: ...\n"
        )),
        Mode::Cognito { user_pool_id } => {
            let region = user_pool_id.split('_').next().unwrap_or("us-east-1");
            text.push_str(&format!(
                "  - authenticate_cognito:\n      user_pool_arn: arn:aws:cognito-idp:{region}:000000000000:userpool/{user_pool_id}\n      user_pool_client_id: {client_id}\n      user_pool_client_secret: ...\n      user_pool_domain: dev\n      endpoint_url: {}\n",
                settings.base_url.as_str().trim_end_matches('/')
            ))
        }
    }
    text
}
