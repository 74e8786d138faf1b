//! The two key endpoints every listener serves, so upstreams can verify
//! `x-amzn-oidc-data`: ALB's key-server format (one PEM per kid) and a JWKS.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use super::signing::DataSigner;
use crate::body::{self, Body};

/// `GET {PUBLIC_KEYS_PREFIX}{kid}`: what aws-jwt-verify's `AlbJwtVerifier`
/// fetches when given `jwksUri: https://host/oauth2/public-keys`.
pub const PUBLIC_KEYS_PREFIX: &str = "/oauth2/public-keys/";
pub const JWKS_PATH: &str = "/oauth2/jwks.json";

/// A kid names one key forever, so its PEM may be cached like ALB's.
const PEM_CACHE_CONTROL: &str = "public, max-age=3600";
/// The set changes when keys rotate; keep caches short.
const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// The response for a key path (`path` without the query), or `None` when
/// `path` is neither. The caller checks the method (GET or HEAD).
pub fn key_endpoint(signer: &DataSigner, path: &str) -> Option<Response<Body>> {
    if path == JWKS_PATH {
        return Some(respond(
            StatusCode::OK,
            "application/json",
            Some(JWKS_CACHE_CONTROL),
            signer.jwks_json().to_owned(),
        ));
    }
    let kid = path.strip_prefix(PUBLIC_KEYS_PREFIX)?;
    Some(if kid == signer.key_id() {
        respond(
            StatusCode::OK,
            "text/plain",
            Some(PEM_CACHE_CONTROL),
            signer.public_key_pem().to_owned(),
        )
    } else {
        // Not cached: the kid may become known after a restart or rotation.
        respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            None,
            "unknown key id\n".to_owned(),
        )
    })
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache_control: Option<&'static str>,
    body: String,
) -> Response<Body> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(cache_control) = cache_control {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    }
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::config::{SigningConfig, TokenEncoding};

    fn signer() -> DataSigner {
        DataSigner::new(&SigningConfig {
            private_key_pem: None,
            key_id: Some("6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44".into()),
            signer: "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/p/0"
                .into(),
            encoding: TokenEncoding::Alb,
        })
        .unwrap()
    }

    async fn text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_the_pem_for_the_known_kid() {
        let signer = signer();
        let response = key_endpoint(
            &signer,
            "/oauth2/public-keys/6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44",
        )
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain");
        assert_eq!(response.headers()[CACHE_CONTROL], "public, max-age=3600");
        let body = text(response).await;
        assert!(body.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{body}");
        assert_eq!(body, signer.public_key_pem());
    }

    #[tokio::test]
    async fn unknown_kid_is_404() {
        let signer = signer();
        for path in [
            "/oauth2/public-keys/00000000-0000-0000-0000-000000000000",
            "/oauth2/public-keys/",
            "/oauth2/public-keys/6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44/x",
            "/oauth2/public-keys/6F1C3E0A-8D2B-4C47-9A8E-2F5B7D9C1E44",
        ] {
            let response = key_endpoint(&signer, path).unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(response.headers().get(CACHE_CONTROL).is_none());
        }
    }

    #[tokio::test]
    async fn serves_the_jwks() {
        let signer = signer();
        let response = key_endpoint(&signer, "/oauth2/jwks.json").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let jwks: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], signer.key_id());
    }

    #[test]
    fn other_paths_are_not_ours() {
        let signer = signer();
        for path in [
            "/",
            "/oauth2/public-keys",
            "/oauth2/jwks.json/",
            "/oauth2/idpresponse",
            "/app/oauth2/jwks.json",
            "/oauth2/JWKS.json",
        ] {
            assert!(key_endpoint(&signer, path).is_none(), "{path}");
        }
    }
}
