//! The JSON the AWS CLI prints for `aws elbv2 describe-rules` and
//! `describe-listeners`, as far as the import reads it. Every struct keeps
//! the keys it does not know in `other`, so that they can be reported
//! instead of silently dropped.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRules {
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    pub rule_arn: Option<String>,
    /// A number as text, or `default` for the listener's default rule.
    pub priority: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub is_default: bool,
    /// `Transforms` and whatever AWS adds next.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One condition, in either of the forms AWS prints: the legacy
/// `{Field, Values}` (host-header and path-pattern only, on real output),
/// and the `*Config` form; new rules carry both for those two.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Condition {
    pub field: Option<String>,
    pub values: Option<Vec<String>>,
    pub host_header_config: Option<ValuesConfig>,
    pub path_pattern_config: Option<ValuesConfig>,
    pub http_header_config: Option<HttpHeaderConfig>,
    pub http_request_method_config: Option<ValuesConfig>,
    pub query_string_config: Option<QueryStringConfig>,
    pub source_ip_config: Option<ValuesConfig>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValuesConfig {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub regex_values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpHeaderConfig {
    pub http_header_name: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub regex_values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryStringConfig {
    #[serde(default)]
    pub values: Vec<KeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyValue {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Action {
    #[serde(rename = "Type")]
    pub kind: String,
    pub order: Option<u32>,
    pub target_group_arn: Option<String>,
    pub forward_config: Option<ForwardConfig>,
    pub fixed_response_config: Option<FixedResponseConfig>,
    pub redirect_config: Option<RedirectConfig>,
    pub authenticate_oidc_config: Option<OidcConfig>,
    pub authenticate_cognito_config: Option<CognitoConfig>,
    pub jwt_validation_config: Option<JwtValidationConfig>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ForwardConfig {
    #[serde(default)]
    pub target_groups: Vec<WeightedTargetGroup>,
    pub target_group_stickiness_config: Option<Stickiness>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightedTargetGroup {
    pub target_group_arn: String,
    pub weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stickiness {
    #[serde(default)]
    pub enabled: bool,
    pub duration_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FixedResponseConfig {
    pub status_code: String,
    pub content_type: Option<String>,
    pub message_body: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RedirectConfig {
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status_code: String,
}

/// The keys both authenticate actions share.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthCommon {
    pub session_cookie_name: Option<String>,
    pub scope: Option<String>,
    pub session_timeout: Option<u64>,
    #[serde(default)]
    pub authentication_request_extra_params: Map<String, Value>,
    pub on_unauthenticated_request: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OidcConfig {
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub user_info_endpoint: Option<String>,
    pub client_id: Option<String>,
    /// AWS never prints it; present only in hand-written input.
    pub client_secret: Option<String>,
    pub use_existing_client_secret: Option<bool>,
    #[serde(flatten)]
    pub common: AuthCommon,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CognitoConfig {
    pub user_pool_arn: Option<String>,
    pub user_pool_client_id: Option<String>,
    pub user_pool_domain: Option<String>,
    #[serde(flatten)]
    pub common: AuthCommon,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JwtValidationConfig {
    pub issuer: Option<String>,
    pub jwks_endpoint: Option<String>,
    #[serde(default)]
    pub additional_claims: Vec<AdditionalClaim>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdditionalClaim {
    pub format: Option<String>,
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeListeners {
    pub listeners: Vec<Listener>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listener {
    pub listener_arn: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    #[serde(default)]
    pub default_actions: Vec<Action>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Certificate {
    pub certificate_arn: String,
}
