//! Validating `authenticate_oidc` and `authenticate_cognito` (the provider
//! keys of each, the common keys they share, and the Cognito user pool ARN
//! and domain shapes) and `jwt_validation`.

use std::time::Duration;

use url::Url;

use super::{At, Validator};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::unknown::unknown_key_problem;

const SCOPE: &str = "openid";
const SESSION_COOKIE_NAME: &str = "AWSELBAuthSessionCookie";
const SESSION_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const IDP_TIMEOUT: Duration = Duration::from_secs(10);
const SIGN_OUT_REDIRECT: &str = "/";
/// ALB's limit on `authentication_request_extra_params`.
const MAX_EXTRA_PARAMS: usize = 10;
/// ALB's limits on `AdditionalClaims`: entries, and values per entry.
const MAX_REQUIREMENTS: usize = 10;
const MAX_REQUIREMENT_VALUES: usize = 10;
const MAX_CLAIM_HEADERS: usize = 20;
/// Headers a claim may not be sent as: the proxy's own, and those that
/// carry the request's framing, target or credentials.
const RESERVED_CLAIM_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];
/// Parameters the proxy sets itself on the authorization request.
const RESERVED_PARAMS: &[&str] = &crate::auth::oidc::AUTHORIZATION_PARAMS;
/// Why plain http to an IdP off the loopback is refused, and the two keys
/// that let a development stack through.
const SPLIT_HORIZON_FIX: &str = "use https; plain http is accepted only for localhost, \
     127.0.0.1 and [::1]. In a development stack where the proxy reaches the IdP by a service \
     name (docker-compose, kind: http://keycloak:8080) while browsers use another \
     (http://localhost:8080), add `allow_insecure_http: true` to this action to accept plain \
     http, and split the endpoints with `discovery: false`: issuer as the tokens' iss, \
     authorization_endpoint on the browsers' name, token_endpoint, user_info_endpoint and \
     jwks_uri on the service name";
const ARN_SHAPE: &str =
    "arn:{partition}:cognito-idp:{region}:{12-digit account}:userpool/{region}_{id}";

impl Validator<'_> {
    pub(super) fn oidc(&mut self, at: &At, raw: RawOidc) -> Option<OidcAction> {
        self.unknown_flattened(at, &raw.unknown);
        let provider = raw.provider;
        let discovery = provider.discovery.unwrap_or(true);
        let allow_insecure_http = provider.allow_insecure_http.unwrap_or(false);
        let plain_http = if allow_insecure_http {
            PlainHttp::Anywhere
        } else {
            PlainHttp::LoopbackUnlessAllowed
        };
        let issuer = self.required(
            &at.key("issuer"),
            provider.issuer,
            "give the IdP's issuer URL, e.g. https://idp.example.com",
        );
        let issuer = issuer.and_then(|issuer| self.idp_url(&at.key("issuer"), &issuer, plain_http));
        let mut endpoint = |key: &str, raw: Option<String>| {
            self.endpoint(&at.key(key), raw, plain_http, discovery)
        };
        let authorization_endpoint =
            endpoint("authorization_endpoint", provider.authorization_endpoint);
        let token_endpoint = endpoint("token_endpoint", provider.token_endpoint);
        let user_info_endpoint = endpoint("user_info_endpoint", provider.user_info_endpoint);
        let jwks_uri = endpoint("jwks_uri", provider.jwks_uri);
        let end_session_endpoint = self.optional_idp_url(
            &at.key("end_session_endpoint"),
            provider.end_session_endpoint,
            plain_http,
        );
        let token_endpoint_auth_method = self.choice(
            &at.key("token_endpoint_auth_method"),
            provider.token_endpoint_auth_method,
            None,
            &[
                (
                    "client_secret_basic",
                    Some(TokenEndpointAuthMethod::ClientSecretBasic),
                ),
                (
                    "client_secret_post",
                    Some(TokenEndpointAuthMethod::ClientSecretPost),
                ),
            ],
        );
        let client_id = self.client_id(&at.key("client_id"), provider.client_id);
        let client_secret = self.secret_twin(
            at,
            "client_secret",
            provider.client_secret,
            provider.client_secret_file,
        );
        let common = self.auth_common(at, raw.common);
        Some(OidcAction {
            issuer: issuer?,
            authorization_endpoint: authorization_endpoint?,
            token_endpoint: token_endpoint?,
            user_info_endpoint: user_info_endpoint?,
            jwks_uri: jwks_uri?,
            end_session_endpoint: end_session_endpoint?,
            discovery,
            token_endpoint_auth_method: token_endpoint_auth_method?,
            allow_insecure_http,
            client_id: client_id?,
            client_secret: client_secret?,
            common: common?,
        })
    }

    /// One of the four endpoints the login flow needs: optional while
    /// discovery can fill it in, required with `discovery: false`.
    fn endpoint(
        &mut self,
        at: &At,
        raw: Option<String>,
        plain_http: PlainHttp,
        discovery: bool,
    ) -> Option<Option<Url>> {
        if raw.is_some() || discovery {
            return self.optional_idp_url(at, raw, plain_http);
        }
        if !self.misspelt(at) {
            let key = at.last_key().to_owned();
            let (what, example, discovered_as) = match key.as_str() {
                "authorization_endpoint" => (
                    "the URL browsers are sent to for login, on the name browsers reach the IdP by",
                    "http://localhost:8080/realms/demo/protocol/openid-connect/auth",
                    "authorization_endpoint",
                ),
                "token_endpoint" => (
                    "the URL the proxy redeems login codes at, on the name the proxy reaches \
                     the IdP by",
                    "http://keycloak:8080/realms/demo/protocol/openid-connect/token",
                    "token_endpoint",
                ),
                "user_info_endpoint" => (
                    "the URL the proxy reads the user's claims from",
                    "http://keycloak:8080/realms/demo/protocol/openid-connect/userinfo",
                    "userinfo_endpoint",
                ),
                _ => (
                    "the URL the proxy fetches the IdP's signing keys from",
                    "http://keycloak:8080/realms/demo/protocol/openid-connect/certs",
                    "jwks_uri",
                ),
            };
            self.problem(
                at,
                format!("`{key}` is required with `discovery: false`"),
                format!(
                    "give {what}, e.g. {example} (the IdP's discovery document lists it as \
                     {discovered_as}), or remove `discovery: false`"
                ),
            );
        }
        None
    }

    pub(super) fn cognito(&mut self, at: &At, raw: RawCognito) -> Option<CognitoAction> {
        self.unknown_flattened(at, &raw.unknown);
        let provider = raw.provider;
        let arn_at = at.key("user_pool_arn");
        let arn = self.required(
            &arn_at,
            provider.user_pool_arn,
            &format!("give the user pool's ARN: {ARN_SHAPE}"),
        );
        let arn = arn.and_then(|arn| match parse_user_pool_arn(arn.trim()) {
            Ok(arn) => Some(arn),
            Err(reason) => {
                self.problem(
                    &arn_at,
                    format!("`{arn}` is not a user pool ARN: {reason}"),
                    format!("use the shape {ARN_SHAPE}, as the Cognito console shows it"),
                );
                None
            }
        });
        let client_id =
            self.client_id(&at.key("user_pool_client_id"), provider.user_pool_client_id);
        let client_secret = self.secret_twin(
            at,
            "user_pool_client_secret",
            provider.user_pool_client_secret,
            provider.user_pool_client_secret_file,
        );
        let domain_at = at.key("user_pool_domain");
        let domain = self.required(
            &domain_at,
            provider.user_pool_domain,
            "give the hosted UI's domain prefix (my-app-auth) or custom domain (auth.example.com)",
        );
        let domain = domain.and_then(|domain| match parse_cognito_domain(&domain) {
            Ok(domain) => Some(domain),
            Err((message, fix)) => {
                self.problem(&domain_at, message, fix);
                None
            }
        });
        // Emulators run on plain HTTP under any name (a compose service), so
        // only the shape is checked here.
        let endpoint_url = match provider.endpoint_url {
            Some(text) => {
                let url_at = at.key("endpoint_url");
                self.url(&url_at, &text).and_then(|url| {
                    if matches!(url.scheme(), "http" | "https") {
                        Some(Some(url))
                    } else {
                        self.problem(
                            &url_at,
                            format!("`{text}` is not an http or https URL"),
                            "give the emulator's base URL, e.g. http://127.0.0.1:9229",
                        );
                        None
                    }
                })
            }
            None => Some(None),
        };
        let common = self.auth_common(at, raw.common);
        let arn = arn?;
        Some(CognitoAction {
            partition: arn.partition,
            region: arn.region,
            user_pool_id: arn.user_pool_id,
            user_pool_client_id: client_id?,
            user_pool_client_secret: client_secret?,
            user_pool_domain: domain?,
            endpoint_url: endpoint_url?,
            common: common?,
        })
    }

    pub(super) fn jwt_validation(
        &mut self,
        at: &At,
        raw: RawJwtValidation,
    ) -> Option<JwtValidationAction> {
        let issuer_at = at.key("issuer");
        let issuer = self.required(
            &issuer_at,
            raw.issuer,
            "give the issuer exactly as the tokens' iss spells it, e.g. https://idp.example.com",
        );
        let issuer = issuer.filter(|issuer| {
            self.idp_url(&issuer_at, issuer, PlainHttp::Loopback)
                .is_some()
        });
        let jwks_at = at.key("jwks_endpoint");
        let jwks_endpoint = self.required(
            &jwks_at,
            raw.jwks_endpoint,
            "give the URL of the issuer's key set, e.g. https://idp.example.com/.well-known/jwks.json",
        );
        let jwks_endpoint =
            jwks_endpoint.and_then(|url| self.idp_url(&jwks_at, &url, PlainHttp::Loopback));
        let audience = match raw.audience {
            Some(audience) if audience.is_empty() => {
                self.problem(
                    &at.key("audience"),
                    "audience lists nothing",
                    "list the aud values to accept, e.g. [orders-api], or remove audience \
                     to accept any",
                );
                None
            }
            Some(audience) => {
                let mut valid = true;
                for (index, value) in audience.iter().enumerate() {
                    if value.trim().is_empty() {
                        valid = false;
                        self.problem(
                            &at.key("audience").index(index),
                            "the audience is empty",
                            "give the aud value the tokens carry, e.g. orders-api",
                        );
                    }
                }
                valid.then_some(audience)
            }
            None => Some(Vec::new()),
        };
        let require = self.requirements(&at.key("require"), raw.require.unwrap_or_default());
        let idp_timeout = self.duration(&at.key("idp_timeout"), raw.idp_timeout, IDP_TIMEOUT);
        let idp_timeout = self.positive(&at.key("idp_timeout"), idp_timeout);
        Some(JwtValidationAction {
            issuer: issuer?,
            jwks_endpoint: jwks_endpoint?,
            audience: audience?,
            require: require?,
            idp_timeout: idp_timeout?,
        })
    }

    /// The keys both authenticate actions share, with ALB's defaults.
    fn auth_common(&mut self, at: &At, raw: RawAuthCommon) -> Option<AuthCommon> {
        let scope = raw.scope.unwrap_or_else(|| SCOPE.to_string());
        let scope = if scope.split_whitespace().any(|s| s == "openid") {
            Some(scope)
        } else {
            self.problem(
                &at.key("scope"),
                format!("scope `{scope}` lacks openid"),
                format!("write `openid {scope}`: without openid the IdP sends no ID token"),
            );
            None
        };
        let cookie = raw
            .session_cookie_name
            .unwrap_or_else(|| SESSION_COOKIE_NAME.to_string());
        let cookie = if is_cookie_name(&cookie) {
            Some(cookie)
        } else {
            self.problem(
                &at.key("session_cookie_name"),
                format!("`{cookie}` is not a valid cookie name"),
                "use letters, digits and - _ . only, e.g. AWSELBAuthSessionCookie-app",
            );
            None
        };
        let session_timeout = self.duration(
            &at.key("session_timeout"),
            raw.session_timeout,
            SESSION_TIMEOUT,
        );
        let session_timeout = self.positive(&at.key("session_timeout"), session_timeout);
        let extra_params = self.extra_params(
            &at.key("authentication_request_extra_params"),
            raw.authentication_request_extra_params.unwrap_or_default(),
        );
        let on_unauthenticated_request = self.choice(
            &at.key("on_unauthenticated_request"),
            raw.on_unauthenticated_request,
            UnauthenticatedPolicy::Authenticate,
            &[
                ("authenticate", UnauthenticatedPolicy::Authenticate),
                ("deny", UnauthenticatedPolicy::Deny),
                ("allow", UnauthenticatedPolicy::Allow),
            ],
        );
        let api_requests = self.choice(
            &at.key("api_requests"),
            raw.api_requests,
            ApiRequests::Unauthorized,
            &[
                ("unauthorized", ApiRequests::Unauthorized),
                ("redirect", ApiRequests::Redirect),
            ],
        );
        let login_timeout =
            self.duration(&at.key("login_timeout"), raw.login_timeout, LOGIN_TIMEOUT);
        let login_timeout = self.positive(&at.key("login_timeout"), login_timeout);
        let idp_timeout = self.duration(&at.key("idp_timeout"), raw.idp_timeout, IDP_TIMEOUT);
        let idp_timeout = self.positive(&at.key("idp_timeout"), idp_timeout);
        let sign_out_redirect = raw
            .sign_out_redirect
            .unwrap_or_else(|| SIGN_OUT_REDIRECT.to_string());
        let sign_out_redirect = if sign_out_redirect.starts_with('/')
            || Url::parse(&sign_out_redirect)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
        {
            Some(sign_out_redirect)
        } else {
            self.problem(
                &at.key("sign_out_redirect"),
                format!("`{sign_out_redirect}` is neither a path nor an http(s) URL"),
                "give a path on the request's host (/signed-out) or an absolute URL, \
                 registered at the IdP as a post-logout URI",
            );
            None
        };
        let require = self.requirements(&at.key("require"), raw.require.unwrap_or_default());
        let claim_headers = self.claim_headers(
            &at.key("claim_headers"),
            raw.claim_headers.unwrap_or_default(),
        );
        let bearer = self.choice(
            &at.key("bearer"),
            raw.bearer,
            false,
            &[("off", false), ("accept", true)],
        );
        let bearer_audience = match raw.bearer_audience {
            Some(audience) if audience.is_empty() || audience.iter().any(String::is_empty) => {
                self.problem(
                    &at.key("bearer_audience"),
                    "`bearer_audience` lists no audience, or an empty one",
                    "list the `aud` values API tokens carry, or leave it out for the client id",
                );
                None
            }
            Some(_) if bearer == Some(false) => {
                self.problem(
                    &at.key("bearer_audience"),
                    "`bearer_audience` is given but bearer tokens are off",
                    "add `bearer: accept`, or remove bearer_audience",
                );
                None
            }
            audience => Some(audience),
        };
        // The client id is the default audience; the caller fills it in.
        let bearer_audience = match (bearer?, bearer_audience?) {
            (true, audience) => Some(audience.unwrap_or_default()),
            (false, _) => None,
        };
        Some(AuthCommon {
            bearer_audience,
            require: require?,
            claim_headers: claim_headers?,
            scope: scope?,
            session_cookie_name: cookie?,
            session_timeout: session_timeout?,
            extra_params: extra_params?,
            on_unauthenticated_request: on_unauthenticated_request?,
            api_requests: api_requests?,
            allow_cors_preflight: raw.allow_cors_preflight.unwrap_or(false),
            login_timeout: login_timeout?,
            idp_timeout: idp_timeout?,
            sign_out_redirect: sign_out_redirect?,
        })
    }

    /// `require`: ALB's `AdditionalClaims` entries.
    fn requirements(
        &mut self,
        at: &At,
        raw: Vec<RawClaimRequirement>,
    ) -> Option<Vec<ClaimRequirement>> {
        let mut valid = true;
        if raw.len() > MAX_REQUIREMENTS {
            valid = false;
            self.problem(
                at,
                format!("{} requirements; at most {MAX_REQUIREMENTS} are allowed", raw.len()),
                "keep ten (ALB has the same limit); one string-array entry can require several values",
            );
        }
        let mut requirements = Vec::with_capacity(raw.len());
        for (index, entry) in raw.into_iter().enumerate() {
            let at = at.index(index);
            let name = entry.name.filter(|name| !name.is_empty());
            if name.is_none() {
                valid = false;
                self.problem(
                    &at.key("name"),
                    "`name` is required",
                    "name the claim, e.g. name: groups (a dotted path such as realm_access.roles reaches into objects)",
                );
            }
            let format = self.choice(
                &at.key("format"),
                entry.format,
                ClaimFormat::SingleString,
                &[
                    ("single-string", ClaimFormat::SingleString),
                    ("string-array", ClaimFormat::StringArray),
                    ("space-separated-values", ClaimFormat::SpaceSeparated),
                ],
            );
            let values = entry.values.unwrap_or_default();
            if values.is_empty() || values.len() > MAX_REQUIREMENT_VALUES {
                valid = false;
                self.problem(
                    &at.key("values"),
                    format!(
                        "{} values; give 1 to {MAX_REQUIREMENT_VALUES}",
                        values.len()
                    ),
                    "list the values the claim must hold, e.g. values: [admins]",
                );
            }
            if let (Some(name), Some(format)) = (name, format) {
                requirements.push(ClaimRequirement {
                    name,
                    format,
                    values,
                });
            } else {
                valid = false;
            }
        }
        valid.then_some(requirements)
    }

    /// `claim_headers`: upstream header name to claim name.
    fn claim_headers(
        &mut self,
        at: &At,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Option<Vec<(http::HeaderName, String)>> {
        let mut valid = true;
        if raw.len() > MAX_CLAIM_HEADERS {
            valid = false;
            self.problem(
                at,
                format!(
                    "{} claim headers; at most {MAX_CLAIM_HEADERS} are allowed",
                    raw.len()
                ),
                "send the rest in x-amzn-oidc-data, which carries every claim",
            );
        }
        let mut headers: Vec<(http::HeaderName, String)> = Vec::with_capacity(raw.len());
        for (name, claim) in raw {
            let header_at = at.key(&name);
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|header| {
                    header
                        .as_str()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            let Some(header) = header else {
                valid = false;
                self.problem(
                    &header_at,
                    format!("`{name}` is not a header name this proxy sends"),
                    "use letters, digits and -, e.g. X-Forwarded-User",
                );
                continue;
            };
            if RESERVED_CLAIM_HEADERS.contains(&header.as_str())
                || crate::identity::is_identity_header(header.as_str())
                || matches!(
                    header.as_str(),
                    "x-forwarded-for"
                        | "x-forwarded-proto"
                        | "x-forwarded-port"
                        | "x-forwarded-host"
                )
            {
                valid = false;
                self.problem(
                    &header_at,
                    format!("`{name}` is a header the proxy or HTTP itself sets"),
                    "choose another name, e.g. X-Forwarded-User or X-Auth-Email",
                );
                continue;
            }
            if headers.iter().any(|(seen, _)| *seen == header) {
                valid = false;
                self.problem(
                    &header_at,
                    format!("`{name}` is given twice"),
                    "header names are case-insensitive: keep one",
                );
                continue;
            }
            match claim {
                serde_json::Value::String(claim) if !claim.is_empty() => {
                    headers.push((header, claim))
                }
                _ => {
                    valid = false;
                    self.problem(
                        &header_at,
                        "a claim header names its claim as a string",
                        "write the claim's name, e.g. X-Forwarded-Email: email",
                    );
                }
            }
        }
        valid.then_some(headers)
    }

    fn extra_params(
        &mut self,
        at: &At,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Option<Vec<(String, String)>> {
        let mut valid = true;
        if raw.len() > MAX_EXTRA_PARAMS {
            valid = false;
            self.problem(
                at,
                format!(
                    "{} extra params; at most {MAX_EXTRA_PARAMS} are allowed",
                    raw.len()
                ),
                "keep the ten that matter (ALB has the same limit)",
            );
        }
        let mut params = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let param_at = at.key(&name);
            if RESERVED_PARAMS.contains(&name.as_str()) {
                valid = false;
                let fix = if name == "scope" {
                    "remove it and use the scope key"
                } else {
                    "remove it: portcullis sets it on every authorization request"
                };
                self.problem(
                    &param_at,
                    format!("`{name}` is set by portcullis itself"),
                    fix,
                );
                continue;
            }
            let value = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                serde_json::Value::Null
                | serde_json::Value::Array(_)
                | serde_json::Value::Object(_) => {
                    valid = false;
                    self.problem(
                        &param_at,
                        "an extra param's value must be a string",
                        "write the value as text, e.g. prompt: login",
                    );
                    continue;
                }
            };
            params.push((name, value));
        }
        valid.then_some(params)
    }

    /// Keys under a flattened authenticate action that neither half claimed.
    fn unknown_flattened(&mut self, at: &At, unknown: &serde_json::Map<String, serde_json::Value>) {
        for key in unknown.keys() {
            let path = at.key(key).0;
            self.problems.push(unknown_key_problem(&path));
            self.unknown.push(path);
        }
    }

    fn client_id(&mut self, at: &At, raw: Option<String>) -> Option<String> {
        let client_id = self.required(at, raw, "give the client id registered at the IdP")?;
        if client_id.trim().is_empty() {
            self.problem(
                at,
                "the client id is empty",
                "give the client id registered at the IdP",
            );
            return None;
        }
        Some(client_id)
    }

    fn optional_idp_url(
        &mut self,
        at: &At,
        raw: Option<String>,
        plain_http: PlainHttp,
    ) -> Option<Option<Url>> {
        match raw {
            Some(text) => self.idp_url(at, &text, plain_http).map(Some),
            None => Some(None),
        }
    }

    /// An IdP URL: https, or http only where `plain_http` allows it (by
    /// default the loopback, for a local development IdP), because tokens
    /// and the client secret travel over it.
    fn idp_url(&mut self, at: &At, text: &str, plain_http: PlainHttp) -> Option<Url> {
        let url = self.url(at, text)?;
        match (url.scheme(), plain_http) {
            ("https", _) | ("http", PlainHttp::Anywhere) => Some(url),
            ("http", _) if is_loopback(&url) => Some(url),
            ("http", PlainHttp::Loopback) => {
                self.problem(
                    at,
                    format!("`{text}` uses plain http"),
                    "use https (http is accepted only for localhost, 127.0.0.1 and [::1])",
                );
                None
            }
            ("http", PlainHttp::LoopbackUnlessAllowed) => {
                self.problem(
                    at,
                    format!("`{text}` uses plain http on a host other than the loopback"),
                    SPLIT_HORIZON_FIX,
                );
                None
            }
            (scheme, _) => {
                self.problem(
                    at,
                    format!("`{text}` has scheme {scheme}"),
                    "use an https URL",
                );
                None
            }
        }
    }
}

/// Where an IdP URL may use plain http.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainHttp {
    /// Only on the loopback.
    Loopback,
    /// Only on the loopback, and the fix explains `allow_insecure_http` and
    /// split-horizon endpoints (`authenticate_oidc`, which has both).
    LoopbackUnlessAllowed,
    /// On any host: `allow_insecure_http: true`.
    Anywhere,
}

/// RFC 6265 cookie-name token, narrowed to what is safe everywhere.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The parts of a user pool ARN portcullis needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UserPoolArn {
    pub partition: String,
    pub region: String,
    pub user_pool_id: String,
}

/// Parses `arn:{partition}:cognito-idp:{region}:{account}:userpool/{region}_{id}`;
/// the error says which part is wrong.
pub(crate) fn parse_user_pool_arn(arn: &str) -> Result<UserPoolArn, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!(
            "it has {} colon-separated parts, not 6",
            parts.len()
        ));
    };
    if *prefix != "arn" {
        return Err("it does not start with arn:".to_string());
    }
    if !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov") {
        return Err(format!(
            "partition `{partition}` is not aws, aws-cn or aws-us-gov"
        ));
    }
    if *service != "cognito-idp" {
        return Err(format!("service `{service}` is not cognito-idp"));
    }
    if !is_region(region) {
        return Err(format!("`{region}` is not a region such as eu-west-1"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("account `{account}` is not 12 digits"));
    }
    let Some(pool_id) = resource.strip_prefix("userpool/") else {
        return Err(format!(
            "resource `{resource}` does not start with userpool/"
        ));
    };
    let Some((pool_region, id)) = pool_id.split_once('_') else {
        return Err(format!("pool id `{pool_id}` is not {{region}}_{{id}}"));
    };
    if pool_region != *region {
        return Err(format!(
            "pool id `{pool_id}` is in {pool_region}, but the ARN's region is {region}"
        ));
    }
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "pool id `{pool_id}` should end in letters and digits"
        ));
    }
    Ok(UserPoolArn {
        partition: partition.to_string(),
        region: region.to_string(),
        user_pool_id: pool_id.to_string(),
    })
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`: lower-case words and a number.
fn is_region(region: &str) -> bool {
    let words: Vec<&str> = region.split('-').collect();
    words.len() >= 3
        && words.iter().all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && words
            .last()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

/// A hosted UI prefix (`my-app-auth`) or a custom domain (`auth.example.com`);
/// the error is a message and a fix.
fn parse_cognito_domain(domain: &str) -> Result<CognitoDomain, (String, String)> {
    let domain = domain.trim();
    if domain.contains("://") || domain.contains('/') {
        return Err((
            format!("`{domain}` is a URL, not a domain"),
            "give only the prefix (my-app-auth) or the custom domain's name (auth.example.com)"
                .to_string(),
        ));
    }
    if domain.contains('.') {
        let lower = domain.to_ascii_lowercase();
        let labels_ok = lower.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        return if labels_ok {
            Ok(CognitoDomain::Custom(lower))
        } else {
            Err((
                format!("`{domain}` is not a domain name"),
                "give the custom domain as configured in Cognito, e.g. auth.example.com"
                    .to_string(),
            ))
        };
    }
    let prefix_ok = !domain.is_empty()
        && !domain.starts_with('-')
        && !domain.ends_with('-')
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if prefix_ok {
        Ok(CognitoDomain::Prefix(domain.to_string()))
    } else {
        Err((
            format!("`{domain}` is not a Cognito domain prefix"),
            "a prefix is lower-case letters, digits and hyphens (my-app-auth); a custom domain \
             has a dot (auth.example.com)"
                .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_pool_arn_parts() {
        let arn = parse_user_pool_arn(
            "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123",
        );
        assert_eq!(
            arn,
            Ok(UserPoolArn {
                partition: "aws".into(),
                region: "eu-west-1".into(),
                user_pool_id: "eu-west-1_AbC123".into(),
            })
        );
        let gov = parse_user_pool_arn(
            "arn:aws-us-gov:cognito-idp:us-gov-west-1:123456789012:userpool/us-gov-west-1_x1",
        );
        assert!(gov.is_ok(), "{gov:?}");
    }

    #[test]
    fn user_pool_arn_mistakes() {
        for (arn, needle) in [
            (
                "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/us-east-1_AbC",
                "is in us-east-1",
            ),
            (
                "arn:aws:cognito-idp:eu-west-1:1234:userpool/eu-west-1_AbC",
                "12 digits",
            ),
            (
                "arn:azure:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC",
                "partition",
            ),
            (
                "arn:aws:cognito:eu-west-1:123456789012:userpool/eu-west-1_AbC",
                "cognito-idp",
            ),
            ("eu-west-1_AbC123", "parts"),
            (
                "arn:aws:cognito-idp:eu-west-1:123456789012:pool/eu-west-1_AbC",
                "userpool/",
            ),
            (
                "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_",
                "letters",
            ),
        ] {
            let error = parse_user_pool_arn(arn).expect_err(arn);
            assert!(error.contains(needle), "{arn}: {error}");
        }
    }

    #[test]
    fn cognito_domains() {
        assert_eq!(
            parse_cognito_domain("my-app-auth"),
            Ok(CognitoDomain::Prefix("my-app-auth".into()))
        );
        assert_eq!(
            parse_cognito_domain("Auth.Example.com"),
            Ok(CognitoDomain::Custom("auth.example.com".into()))
        );
        assert!(parse_cognito_domain("My-App").is_err());
        assert!(parse_cognito_domain("https://auth.example.com").is_err());
        assert!(parse_cognito_domain("-bad").is_err());
        assert!(parse_cognito_domain("").is_err());
    }
}
