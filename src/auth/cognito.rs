//! `authenticate_cognito`: everything derived from the three values an ALB
//! rule holds (`user_pool_arn`, `user_pool_client_id`, `user_pool_domain`),
//! or from `endpoint_url` for an emulator. The flow itself is the OIDC one.

use url::Url;

use super::oidc::provider::ConfiguredEndpoints;
use crate::config::{CognitoAction, CognitoDomain};

/// Everything the OIDC flow needs to talk to a Cognito user pool.
#[derive(Debug, Clone)]
pub struct Derived {
    pub issuer: String,
    pub endpoints: ConfiguredEndpoints,
    pub logout: Url,
}

/// `amazonaws.com`, or China's `amazonaws.com.cn`.
fn dns_suffix(partition: &str) -> &'static str {
    if partition == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

pub fn derive(action: &CognitoAction) -> Derived {
    let pool = &action.user_pool_id;
    let (issuer, hosted_ui) = match &action.endpoint_url {
        Some(emulator) => {
            let base = emulator.as_str().trim_end_matches('/').to_owned();
            (format!("{base}/{pool}"), base)
        }
        None => {
            let region = &action.region;
            let issuer = format!(
                "https://cognito-idp.{region}.{}/{pool}",
                dns_suffix(&action.partition)
            );
            let hosted_ui = match &action.user_pool_domain {
                CognitoDomain::Prefix(prefix) => {
                    let cognito_suffix = if action.partition == "aws-cn" {
                        "amazoncognito.com.cn"
                    } else {
                        "amazoncognito.com"
                    };
                    format!("https://{prefix}.auth.{region}.{cognito_suffix}")
                }
                CognitoDomain::Custom(domain) => format!("https://{domain}"),
            };
            (issuer, hosted_ui)
        }
    };
    // Every piece is a validated host or pool id joined by fixed text, so it parses.
    let url = |text: String| Url::parse(&text).expect("derived Cognito URLs are well-formed");
    Derived {
        endpoints: ConfiguredEndpoints {
            authorization: Some(url(format!("{hosted_ui}/oauth2/authorize"))),
            token: Some(url(format!("{hosted_ui}/oauth2/token"))),
            userinfo: Some(url(format!("{hosted_ui}/oauth2/userInfo"))),
            jwks_uri: Some(url(format!("{issuer}/.well-known/jwks.json"))),
            ..ConfiguredEndpoints::default()
        },
        logout: url(format!("{hosted_ui}/logout")),
        issuer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiRequests, AuthCommon, Secret, UnauthenticatedPolicy};
    use std::time::Duration;

    fn action(
        partition: &str,
        region: &str,
        domain: CognitoDomain,
        endpoint_url: Option<&str>,
    ) -> CognitoAction {
        CognitoAction {
            partition: partition.into(),
            region: region.into(),
            user_pool_id: format!("{region}_AbC123"),
            user_pool_client_id: "client".into(),
            user_pool_client_secret: Secret::new("secret"),
            user_pool_domain: domain,
            endpoint_url: endpoint_url.map(|url| url.parse().unwrap()),
            common: AuthCommon {
                scope: "openid".into(),
                session_cookie_name: "AWSELBAuthSessionCookie".into(),
                session_timeout: Duration::from_secs(604_800),
                extra_params: Vec::new(),
                on_unauthenticated_request: UnauthenticatedPolicy::Authenticate,
                api_requests: ApiRequests::Unauthorized,
                allow_cors_preflight: false,
                login_timeout: Duration::from_secs(900),
                idp_timeout: Duration::from_secs(10),
                sign_out_redirect: "/".into(),
                require: Vec::new(),
                claim_headers: Vec::new(),
                bearer_audience: None,
            },
        }
    }

    #[test]
    fn prefix_domain() {
        let derived = derive(&action(
            "aws",
            "eu-west-1",
            CognitoDomain::Prefix("my-app".into()),
            None,
        ));
        assert_eq!(
            derived.issuer,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        let endpoints = &derived.endpoints;
        assert_eq!(
            endpoints.authorization.as_ref().unwrap().as_str(),
            "https://my-app.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
        );
        assert_eq!(
            endpoints.token.as_ref().unwrap().as_str(),
            "https://my-app.auth.eu-west-1.amazoncognito.com/oauth2/token"
        );
        assert_eq!(
            endpoints.userinfo.as_ref().unwrap().as_str(),
            "https://my-app.auth.eu-west-1.amazoncognito.com/oauth2/userInfo"
        );
        assert_eq!(
            endpoints.jwks_uri.as_ref().unwrap().as_str(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(
            derived.logout.as_str(),
            "https://my-app.auth.eu-west-1.amazoncognito.com/logout"
        );
    }

    #[test]
    fn custom_domain() {
        let derived = derive(&action(
            "aws",
            "us-east-1",
            CognitoDomain::Custom("auth.example.com".into()),
            None,
        ));
        assert_eq!(derived.logout.as_str(), "https://auth.example.com/logout");
        assert_eq!(
            derived.endpoints.authorization.unwrap().as_str(),
            "https://auth.example.com/oauth2/authorize"
        );
    }

    #[test]
    fn partitions() {
        let china = derive(&action(
            "aws-cn",
            "cn-north-1",
            CognitoDomain::Prefix("app".into()),
            None,
        ));
        assert_eq!(
            china.issuer,
            "https://cognito-idp.cn-north-1.amazonaws.com.cn/cn-north-1_AbC123"
        );
        let gov = derive(&action(
            "aws-us-gov",
            "us-gov-west-1",
            CognitoDomain::Prefix("app".into()),
            None,
        ));
        assert_eq!(
            gov.issuer,
            "https://cognito-idp.us-gov-west-1.amazonaws.com/us-gov-west-1_AbC123"
        );
    }

    #[test]
    fn emulator_endpoint_url() {
        let derived = derive(&action(
            "aws",
            "eu-west-1",
            CognitoDomain::Prefix("ignored".into()),
            Some("http://127.0.0.1:9229"),
        ));
        assert_eq!(derived.issuer, "http://127.0.0.1:9229/eu-west-1_AbC123");
        assert_eq!(
            derived.endpoints.token.unwrap().as_str(),
            "http://127.0.0.1:9229/oauth2/token"
        );
        assert_eq!(derived.logout.as_str(), "http://127.0.0.1:9229/logout");
    }
}
