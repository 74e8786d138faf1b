//! The one response body type every part of the proxy returns.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Errors a body may carry (the upstream's, or hyper's while streaming).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed or buffered response body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body held in memory (error pages, fixed responses, metrics).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Wraps any body whose errors can be boxed, e.g. an upstream's `Incoming`.
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
