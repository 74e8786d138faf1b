//! The HTTP client for calls to the IdP (discovery, JWKS, token, userinfo):
//! bounded in time (`idp_timeout`) and in size, never following redirects.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;

use crate::auth::error::{IdpCallError, Untrusted};

/// Largest answer read from the IdP; a userinfo or JWKS beyond this is refused.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct IdpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// The largest answer read; a longer one fails with [`IdpCallError::TooLarge`].
    max_response_bytes: usize,
}

/// An answer read whole.
pub struct IdpResponse {
    pub status: u16,
    pub body: Bytes,
}

impl IdpResponse {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, IdpCallError> {
        serde_json::from_slice(&self.body).map_err(IdpCallError::Json)
    }

    /// Fails on a non-2xx status, keeping a short, escaped excerpt of the body for the log.
    pub fn success(self) -> Result<Self, IdpCallError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let excerpt = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        Err(IdpCallError::Status {
            status: self.status,
            body: Untrusted::new(&excerpt),
        })
    }
}

impl IdpClient {
    /// `timeout` bounds each call from connect to the last body byte.
    pub fn new(timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        // As for upstreams: a request body written after its head must not
        // wait for the IdP's delayed ACK.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = crate::client::https_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(https);
        Self {
            client,
            timeout,
            max_response_bytes: MAX_RESPONSE_BYTES,
        }
    }

    /// The same client, refusing answers longer than `bytes`.
    pub fn with_response_limit(self, bytes: usize) -> Self {
        Self {
            max_response_bytes: bytes,
            ..self
        }
    }

    pub async fn get(&self, url: &str, bearer: Option<&str>) -> Result<IdpResponse, IdpCallError> {
        let mut request = Request::get(url).header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::default())
            .map_err(IdpCallError::Request)?;
        self.send(request).await
    }

    /// POSTs an `application/x-www-form-urlencoded` body, with HTTP Basic
    /// client authentication when `basic` is given.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<HeaderValue>,
    ) -> Result<IdpResponse, IdpCallError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = Request::post(url)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(basic) = basic {
            request = request.header(header::AUTHORIZATION, basic);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(IdpCallError::Request)?;
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<IdpResponse, IdpCallError> {
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(IdpCallError::Transport)?;
            let status = response.status().as_u16();
            let limit = self.max_response_bytes;
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| match error.downcast::<hyper::Error>() {
                    Ok(error) => IdpCallError::Body(*error),
                    Err(_) => IdpCallError::TooLarge(limit),
                })?
                .to_bytes();
            Ok(IdpResponse { status, body })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| IdpCallError::Timeout(self.timeout))?
    }
}

/// `Authorization: Basic` for `client_secret_basic` (RFC 6749 §2.3.1: both
/// parts form-urlencoded first).
pub fn basic_auth(client_id: &str, client_secret: &str) -> HeaderValue {
    use base64::Engine as _;
    let encode =
        |part: &str| url::form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(client_secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .expect("base64 text is always a valid header value");
    value.set_sensitive(true);
    value
}
