//! The configuration file as written: serde structs that mirror the documented key
//! for key, with every field optional and enumerations kept as strings, so
//! that one mistake does not hide the next. [`super::validate`] turns this
//! into the model and says what is wrong.
//!
//! Unknown keys are not rejected here: `serde_ignored` reports them for plain
//! structs, and the two authenticate actions (whose common keys are a
//! flattened struct, which `serde_ignored` cannot see through) collect theirs
//! in an `unknown` map.
//!
//! No struct here derives `Debug`: they hold secrets as written, and the
//! validated model's `Secret` is what redacts them.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

#[derive(Default, Deserialize)]
pub struct RawConfig {
    #[serde(default, deserialize_with = "present")]
    pub admin: Option<RawAdmin>,
    #[serde(default, deserialize_with = "present")]
    pub sessions: Option<RawSessions>,
    #[serde(default, deserialize_with = "present")]
    pub signing: Option<RawSigning>,
    #[serde(default, deserialize_with = "present")]
    pub limits: Option<RawLimits>,
    pub shutdown_timeout: Option<RawDuration>,
    pub watch_config: Option<bool>,
    pub listeners: Option<Vec<RawListener>>,
}

#[derive(Default, Deserialize)]
pub struct RawAdmin {
    pub address: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawSessions {
    pub secrets: Option<Vec<String>>,
    /// One base64 secret per line; blank lines are skipped.
    pub secrets_file: Option<String>,
    pub store: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub redis: Option<RawRedis>,
}

#[derive(Default, Deserialize)]
pub struct RawRedis {
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub key_prefix: Option<String>,
    pub timeout: Option<RawDuration>,
}

#[derive(Default, Deserialize)]
pub struct RawSigning {
    pub private_key_file: Option<String>,
    pub key_id: Option<String>,
    pub signer: Option<String>,
    pub encoding: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawLimits {
    pub header_read_timeout: Option<RawDuration>,
    pub max_header_bytes: Option<u64>,
    pub idle_timeout: Option<RawDuration>,
    pub max_connections: Option<u64>,
}

#[derive(Default, Deserialize)]
pub struct RawListener {
    pub address: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub tls: Option<RawTls>,
    pub allow_underscore_headers: Option<bool>,
    pub x_forwarded_for: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub rules: Option<Vec<RawRule>>,
}

#[derive(Default, Deserialize)]
pub struct RawTls {
    pub certificate_file: Option<String>,
    pub private_key_file: Option<String>,
    pub certificates: Option<Vec<RawCertificate>>,
    pub reload_interval: Option<RawDuration>,
}

#[derive(Default, Deserialize)]
pub struct RawCertificate {
    pub certificate_file: Option<String>,
    pub private_key_file: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawRule {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub conditions: Option<RawConditions>,
    pub actions: Option<Vec<RawAction>>,
}

#[derive(Default, Deserialize)]
pub struct RawConditions {
    pub host: Option<Vec<String>>,
    pub path: Option<Vec<String>>,
    /// One map, or a list of them: each is a condition of its own.
    pub http_header: Option<OneOrMany<RawHttpHeader>>,
    pub http_request_method: Option<Vec<String>>,
    pub query_string: Option<Vec<RawQueryString>>,
    pub source_ip: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
pub struct RawHttpHeader {
    pub name: Option<String>,
    pub values: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
pub struct RawQueryString {
    #[serde(default, deserialize_with = "text")]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub value: Option<String>,
}

/// A key that takes one map or a list of maps. Deserialized by hand rather
/// than as an untagged enum, so that the map's keys stream through and
/// `serde_ignored` still reports an unknown one.
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a map or a list of maps")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let one = T::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(OneOrMany::One(one))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

/// One entry of a rule's action list: a map that should hold exactly one of
/// these keys. A struct rather than an externally tagged enum, so that a
/// misspelt action is an unknown key (with a suggestion) and two keys in one
/// entry are a problem to report, not a parse failure.
#[derive(Default, Deserialize)]
pub struct RawAction {
    #[serde(default, deserialize_with = "present")]
    pub authenticate_oidc: Option<RawOidc>,
    #[serde(default, deserialize_with = "present")]
    pub authenticate_cognito: Option<RawCognito>,
    #[serde(default, deserialize_with = "present")]
    pub jwt_validation: Option<RawJwtValidation>,
    #[serde(default, deserialize_with = "present")]
    pub forward: Option<RawForward>,
    #[serde(default, deserialize_with = "present")]
    pub fixed_response: Option<RawFixedResponse>,
    #[serde(default, deserialize_with = "present")]
    pub redirect: Option<RawRedirect>,
}

impl RawAction {
    /// The action keys present in this entry, in schema order.
    pub fn keys(&self) -> Vec<&'static str> {
        let present = [
            ("authenticate_oidc", self.authenticate_oidc.is_some()),
            ("authenticate_cognito", self.authenticate_cognito.is_some()),
            ("jwt_validation", self.jwt_validation.is_some()),
            ("forward", self.forward.is_some()),
            ("fixed_response", self.fixed_response.is_some()),
            ("redirect", self.redirect.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(key, is_present)| is_present.then_some(key))
            .collect()
    }
}

#[derive(Default, Deserialize)]
pub struct RawJwtValidation {
    pub issuer: Option<String>,
    pub jwks_endpoint: Option<String>,
    pub audience: Option<Vec<String>>,
    pub require: Option<Vec<RawClaimRequirement>>,
    pub idp_timeout: Option<RawDuration>,
}

#[derive(Default, Deserialize)]
pub struct RawForward {
    pub target: Option<String>,
    pub targets: Option<Vec<RawWeightedTarget>>,
    #[serde(default, deserialize_with = "present")]
    pub stickiness: Option<RawStickiness>,
    pub timeout: Option<RawDuration>,
}

#[derive(Default, Deserialize)]
pub struct RawWeightedTarget {
    pub target: Option<String>,
    pub weight: Option<u64>,
}

#[derive(Default, Deserialize)]
pub struct RawStickiness {
    pub duration: Option<RawDuration>,
}

#[derive(Default, Deserialize)]
pub struct RawFixedResponse {
    pub status: Option<RawStatus>,
    pub content_type: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub body: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawRedirect {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<RawPort>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status: Option<RawStatus>,
}

#[derive(Default, Deserialize)]
pub struct RawOidc {
    #[serde(flatten)]
    pub provider: RawOidcProvider,
    #[serde(flatten)]
    pub common: RawAuthCommon,
    /// Whatever neither flattened struct claimed: reported as unknown keys.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The keys only `authenticate_oidc` has.
#[derive(Default, Deserialize)]
pub struct RawOidcProvider {
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub user_info_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub end_session_endpoint: Option<String>,
    /// `false`: never fetch the discovery document.
    pub discovery: Option<bool>,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: Option<String>,
    /// `true`: plain http to the IdP on any host, not only the loopback.
    pub allow_insecure_http: Option<bool>,
    #[serde(default, deserialize_with = "text")]
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawCognito {
    #[serde(flatten)]
    pub provider: RawCognitoProvider,
    #[serde(flatten)]
    pub common: RawAuthCommon,
    /// Whatever neither flattened struct claimed: reported as unknown keys.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The keys only `authenticate_cognito` has.
#[derive(Default, Deserialize)]
pub struct RawCognitoProvider {
    pub user_pool_arn: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub user_pool_client_id: Option<String>,
    pub user_pool_client_secret: Option<String>,
    pub user_pool_client_secret_file: Option<String>,
    pub user_pool_domain: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Where inside an authenticate action (at `path`, holding `action`) a value
/// has the wrong type. serde's `flatten` buffers the action's keys before
/// handing them to each half, so a type error inside names only the action;
/// each half deserialized on its own names the key.
pub fn error_inside_flattened(
    path: &[super::unknown::Segment],
    action: &Value,
) -> Option<(serde_path_to_error::Path, serde_json::Error)> {
    fn error_in<T: DeserializeOwned>(
        action: &Value,
    ) -> Option<(serde_path_to_error::Path, serde_json::Error)> {
        let error = serde_path_to_error::deserialize::<_, T>(action).err()?;
        Some((error.path().clone(), error.into_inner()))
    }
    let halves = match path.last()? {
        super::unknown::Segment::Key(key) if key == "authenticate_oidc" => {
            [error_in::<RawOidcProvider>, error_in::<RawAuthCommon>]
        }
        super::unknown::Segment::Key(key) if key == "authenticate_cognito" => {
            [error_in::<RawCognitoProvider>, error_in::<RawAuthCommon>]
        }
        _ => return None,
    };
    halves.iter().find_map(|half| half(action))
}

/// The keys both authenticate actions share.
#[derive(Default, Deserialize)]
pub struct RawAuthCommon {
    pub scope: Option<String>,
    pub session_cookie_name: Option<String>,
    pub session_timeout: Option<RawDuration>,
    /// A map kept in file order (serde_json's `preserve_order`); values are
    /// checked to be strings, numbers or booleans during validation.
    pub authentication_request_extra_params: Option<Map<String, Value>>,
    pub on_unauthenticated_request: Option<String>,
    pub api_requests: Option<String>,
    pub allow_cors_preflight: Option<bool>,
    pub login_timeout: Option<RawDuration>,
    pub idp_timeout: Option<RawDuration>,
    pub sign_out_redirect: Option<String>,
    /// Claims requirements, ALB's `AdditionalClaims`.
    pub require: Option<Vec<RawClaimRequirement>>,
    /// Upstream header name to claim name, in file order.
    pub claim_headers: Option<Map<String, Value>>,
    /// `accept`: a bearer JWT from the same IdP is an alternative to the session.
    pub bearer: Option<String>,
    pub bearer_audience: Option<Vec<String>>,
}

/// One `require` entry. Inside a flattened action, where unknown keys are
/// not seen otherwise, a misspelt key is a type error naming it.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRequirement {
    pub name: Option<String>,
    pub format: Option<String>,
    pub values: Option<Vec<String>>,
}

/// A duration as written: whole seconds, or text such as `15m`, `7d`,
/// `1h30m` or `600` (seconds, as a string: what `${VAR}` produces).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a duration: whole seconds or a string like 90s, 15m, 7d"
)]
pub enum RawDuration {
    Seconds(u64),
    Text(String),
}

impl RawDuration {
    /// The duration, or a sentence saying why the text is not one.
    pub fn to_duration(&self) -> Result<Duration, String> {
        match self {
            RawDuration::Seconds(seconds) => Ok(Duration::from_secs(*seconds)),
            RawDuration::Text(text) => {
                let text = text.trim();
                if let Ok(seconds) = text.parse::<u64>() {
                    return Ok(Duration::from_secs(seconds));
                }
                humantime::parse_duration(text)
                    .map_err(|error| format!("`{text}` is not a duration ({error})"))
            }
        }
    }
}

/// An HTTP status as written: `301`, `"301"` or ALB's `HTTP_301`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a status code such as 200 or 301")]
pub enum RawStatus {
    Number(u64),
    Text(String),
}

impl RawStatus {
    pub fn to_number(&self) -> Option<u64> {
        match self {
            RawStatus::Number(number) => Some(*number),
            RawStatus::Text(text) => {
                let text = text.trim();
                text.strip_prefix("HTTP_").unwrap_or(text).parse().ok()
            }
        }
    }
}

/// A redirect port as written: `443` or `"#{port}"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a port number or \"#{port}\"")]
pub enum RawPort {
    Number(u64),
    Text(String),
}

impl RawPort {
    pub fn into_text(self) -> String {
        match self {
            RawPort::Number(number) => number.to_string(),
            RawPort::Text(text) => text,
        }
    }
}

/// For struct-valued keys: a key written with nothing after it (`tls:` in
/// YAML, `null` in JSON) counts as present and empty, so that its missing
/// required keys are reported instead of the whole section vanishing.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(|value| Some(value.unwrap_or_default()))
}

/// For values that are text but often look like numbers to YAML (client ids,
/// a body of `42`): a number or boolean is taken as its text.
fn text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "text")]
    enum Text {
        String(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    let value = Option::<Text>::deserialize(deserializer)?;
    Ok(value.map(|value| match value {
        Text::String(text) => text,
        Text::Integer(number) => number.to_string(),
        Text::Float(number) => number.to_string(),
        Text::Bool(flag) => flag.to_string(),
    }))
}
