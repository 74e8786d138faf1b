//! What the development-only servers (`portcullis demo` and `portcullis
//! dev-idp`) share: a plain-HTTP accept loop, their pages' look, and small
//! response builders. Nothing here is used by the proxy itself.

use std::convert::Infallible;
use std::future::Future;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{self, Body};

/// The one banner every development page carries.
const BANNER: &str = "For development only: this page comes from portcullis' built-in \
                      development tools, which must never be used in production.";

/// Serves plain HTTP/1.1 and HTTP/2 on `listener` for as long as the
/// returned future is polled.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning, as the proxy does.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
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

/// A whole HTML document in the development pages' style: `title` is
/// escaped here, `body` is HTML the caller has escaped.
pub fn html_document(title: &str, body: &str) -> String {
    // Values (tokens, header values) break anywhere rather than run off the
    // page; names (claims, header names) never break inside a word.
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.4}}
table{{border-collapse:collapse;width:100%}}
th,td{{padding:.2rem .6rem .2rem 0;vertical-align:top;border-bottom:1px solid #eee}}
th{{text-align:left;white-space:nowrap;font-weight:600;width:1%}}
td{{overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:.9rem}}
pre{{background:#f6f8fa;padding:.6rem;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85rem}}
.warning{{background:#fff3cd;border-left:4px solid #e0a800;padding:.5rem .8rem}}
.error{{color:#b00020}} label{{display:block;margin:.5rem 0}}
</style>
</head><body><h1>{title}</h1>
<p class="warning">{BANNER}</p>
{body}
</body></html>
"#,
        title = html_escape(title)
    )
}

/// [`html_document`] as a response with `status`.
pub fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let mut response = Response::new(body::full(html_document(title, body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The login form takes passwords: no other site may frame it.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cannot_be_framed() {
        let page = html_page(StatusCode::OK, "Sign in", "<form></form>");
        let headers = page.headers();
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "frame-ancestors 'none'"
        );
    }
}
