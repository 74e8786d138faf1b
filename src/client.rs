//! The HTTPS connector every outbound client (upstreams, IdPs) uses.

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// HTTP/1.1 over TCP or TLS, trusting the platform's roots (and
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), or Mozilla's bundled roots
/// where the platform has none (a distroless or scratch image).
pub fn https_connector(mut http: HttpConnector) -> HttpsConnector<HttpConnector> {
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_native_roots() {
        Ok(native) => native,
        Err(error) => {
            tracing::warn!(%error, "no platform root certificates; trusting Mozilla's bundled roots");
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots()
        }
    };
    builder.https_or_http().enable_http1().wrap_connector(http)
}
