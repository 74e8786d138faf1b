//! The validated configuration: what the rest of portcullis runs on.
//!
//! Every value here has already been checked (URLs parse, durations are
//! durations, each rule has exactly one terminal action), so no other module
//! re-validates. Built from the raw serde layer by [`super::validate`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// A secret value (client secret, session key). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub admin: Option<AdminConfig>,
    pub sessions: SessionsConfig,
    pub signing: SigningConfig,
    pub limits: Limits,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// Reload when the file's contents change, not only on SIGHUP.
    pub watch_config: bool,
    pub listeners: Vec<ListenerConfig>,
    /// Which text this was loaded from: the first 16 hex digits of its
    /// SHA-256, so an operator can tell which configuration is live. Empty
    /// for a configuration built in code.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// Decoded 32-byte keys; the first seals, all open. Empty when no rule authenticates.
    pub secrets: Vec<SessionKey>,
    pub store: SessionStoreKind,
}

/// A 32-byte session sealing key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStoreKind {
    Cookie,
    Redis(RedisConfig),
}

/// `sessions.redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub address: RedisAddress,
    /// Prepended to every key, so that several deployments share one Redis.
    pub key_prefix: String,
    /// Bound on each Redis call, connecting included.
    pub timeout: Duration,
}

/// Where Redis is. URLs may carry a password: they are secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    /// `url` or `url_file`: one server (or a proxy in front of several).
    Single(Secret),
    /// `cluster`: seed nodes of a Redis Cluster.
    Cluster(Vec<Secret>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// PKCS#8 PEM of a P-256 key; `None` means generate one at start.
    pub private_key_pem: Option<Secret>,
    pub key_id: Option<String>,
    pub signer: String,
    pub encoding: TokenEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEncoding {
    /// base64url with `=` padding, signature over the padded text, as ALB sends.
    Alb,
    /// RFC 7515 compact serialisation, unpadded.
    Jws,
}

/// Protections against slow or greedy clients; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time allowed for the TLS handshake and for a request's headers to arrive (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// A connection with no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// Open downstream connections across all listeners; `None` is unlimited.
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// May use port 0; the bound address is reported once listening.
    pub address: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub rules: Vec<Rule>,
    pub headers: HeaderPolicy,
    /// Peers whose `X-Forwarded-*` describe the original request (forward
    /// auth, and the scheme and host of redirects); default: the loopback.
    pub trusted_proxies: Vec<Cidr>,
}

/// What a listener does with client headers that are not about identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// Forward header names containing `_` (nginx's `underscores_in_headers`);
    /// identity look-alikes are removed whatever this says.
    pub allow_underscores: bool,
    pub x_forwarded_for: XForwardedFor,
}

/// ALB's `routing.http.xff_header_processing.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XForwardedFor {
    /// The client's address is appended to the chain the client sent.
    #[default]
    Append,
    /// The client's header is sent unchanged (none is added when it sent none).
    Preserve,
    /// No `X-Forwarded-For` reaches the upstream.
    Remove,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Served to clients that send no SNI or a name no certificate covers.
    pub default_certificate: CertificateFiles,
    /// Further certificates, chosen by SNI against their DNS names.
    pub certificates: Vec<CertificateFiles>,
    /// How often the files are re-read to pick up a renewed certificate.
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub certificate_file: PathBuf,
    pub private_key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// From the config, or `rule-N` (1-based) when not given; used in metrics and logs.
    pub name: String,
    pub conditions: Conditions,
    pub authenticate: Option<AuthenticateAction>,
    /// Bearer JWTs checked instead of a login; never set with `authenticate`.
    pub jwt_validation: Option<JwtValidationAction>,
    pub action: TerminalAction,
}

/// Every listed condition must match; within one condition, any value may
/// match. An empty list is no condition.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Host patterns, lower-cased; `*` and `?` wildcards.
    pub host: Vec<String>,
    /// ALB path patterns, case-sensitive; `*` and `?` wildcards.
    pub path: Vec<String>,
    /// One condition per entry, each of which must match (as ALB's separate
    /// `http-header` conditions).
    pub http_header: Vec<HeaderCondition>,
    /// Methods, compared exactly and case-sensitively.
    pub http_request_method: Vec<String>,
    /// Any one of these pairs found in the query satisfies the condition.
    pub query_string: Vec<QueryCondition>,
    /// Ranges of the TCP peer's address (never `X-Forwarded-For`).
    pub source_ip: Vec<Cidr>,
}

/// A header that must be present with a value matching one of `values`.
#[derive(Debug, Clone)]
pub struct HeaderCondition {
    pub name: http::HeaderName,
    /// Patterns, lower-cased: compared case-insensitively, `*` and `?` wildcards.
    pub values: Vec<String>,
}

/// A `key=value` pair to find in the query, compared after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryCondition {
    /// Lower-cased pattern for the key; `None` matches any key.
    pub key: Option<String>,
    /// Lower-cased pattern for the value.
    pub value: String,
}

/// An IPv4 or IPv6 address range in CIDR notation, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR block was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("it has no prefix length")]
    NoPrefix,
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("the prefix length `{0}` is not a number from 0 to {1}")]
    Prefix(String, u8),
    /// The block written with its host bits cleared.
    #[error("bits beyond the prefix are set")]
    HostBits(Cidr),
}

impl Cidr {
    /// `127.0.0.0/8` and `::1/128`: a front proxy on the same host or pod,
    /// the default of `trusted_proxies`.
    pub fn loopback() -> Vec<Self> {
        ["127.0.0.0/8", "::1/128"]
            .into_iter()
            .map(|block| Self::parse(block).expect("a valid CIDR block"))
            .collect()
    }

    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let (address, prefix) = text.split_once('/').ok_or(CidrError::NoPrefix)?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_owned()))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        // One spelling of the length: no sign, no leading zeros.
        let prefix = match prefix.parse::<u8>() {
            Ok(length) if length <= bits && length.to_string() == prefix => length,
            _ => return Err(CidrError::Prefix(prefix.to_owned(), bits)),
        };
        let cidr = Self { network, prefix };
        let masked = Self {
            network: cidr.masked(network),
            prefix,
        };
        if masked != cidr {
            return Err(CidrError::HostBits(masked));
        }
        Ok(cidr)
    }

    /// True when `address` is in the block. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, what a dual-stack socket reports for an IPv4
    /// client) is the IPv4 address it carries.
    /// How many leading bits a matching address shares with the block.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && self.masked(address) == self.network
    }

    fn masked(&self, address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Debug, Clone)]
pub enum TerminalAction {
    Forward(ForwardAction),
    FixedResponse(FixedResponseAction),
    Redirect(RedirectAction),
}

#[derive(Debug, Clone)]
pub struct ForwardAction {
    /// One target, or several (ALB's weighted target groups): each request
    /// goes to one of them in proportion to the weights.
    pub targets: Vec<WeightedTarget>,
    /// Time for the upstream to answer with response headers; then 504.
    pub timeout: Duration,
    /// ALB's target-group stickiness: how long the `AWSALBTG` cookie keeps
    /// a browser on the target it was first given; `None`: no cookie.
    pub stickiness: Option<Duration>,
}

impl ForwardAction {
    /// Everything to one target, without stickiness.
    pub fn single(target: Url, timeout: Duration) -> Self {
        Self {
            targets: vec![WeightedTarget { target, weight: 1 }],
            timeout,
            stickiness: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedTarget {
    /// `http` or `https`, with no path beyond `/` and no query.
    pub target: Url,
    /// 0 to 999, as ALB's; a target of weight 0 gets no request.
    pub weight: u16,
}

#[derive(Debug, Clone)]
pub struct FixedResponseAction {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// ALB's redirect: each field may hold `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` (without its leading `/`) and `#{query}`.
#[derive(Debug, Clone)]
pub struct RedirectAction {
    /// `#{protocol}`, `http` or `https` (lower-cased).
    pub protocol: String,
    pub host: String,
    pub port: String,
    /// Starts with `/`.
    pub path: String,
    /// Without the leading `?`.
    pub query: String,
    /// 301 or 302.
    pub status: u16,
}

// Built once at start-up and shared: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AuthenticateAction {
    Oidc(OidcAction),
    Cognito(CognitoAction),
}

impl AuthenticateAction {
    /// The settings both kinds share.
    pub fn common(&self) -> &AuthCommon {
        match self {
            Self::Oidc(oidc) => &oidc.common,
            Self::Cognito(cognito) => &cognito.common,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OidcAction {
    /// What the tokens' `iss` must equal, discovery or not.
    pub issuer: Url,
    /// `None`: discovered from `{issuer}/.well-known/openid-configuration`.
    /// The browser is sent to this one; the proxy calls the others.
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub user_info_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    /// `discovery: false`: the discovery document is never fetched; then the
    /// authorization, token, userinfo and JWKS endpoints are all `Some`.
    pub discovery: bool,
    /// `token_endpoint_auth_method`; `None`: `client_secret_basic`, or
    /// `client_secret_post` when the discovery document allows only that.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// `allow_insecure_http: true`: the issuer and endpoints may use plain
    /// http on any host, not only on the loopback (see [`Self::insecure_urls`]).
    pub allow_insecure_http: bool,
    pub client_id: String,
    pub client_secret: Secret,
    pub common: AuthCommon,
}

impl OidcAction {
    /// The issuer and endpoints that use plain http on a host other than the
    /// loopback, with their keys: what `allow_insecure_http` lets through and
    /// `check` and `run` warn about.
    pub fn insecure_urls(&self) -> Vec<(&'static str, &Url)> {
        [
            ("issuer", Some(&self.issuer)),
            (
                "authorization_endpoint",
                self.authorization_endpoint.as_ref(),
            ),
            ("token_endpoint", self.token_endpoint.as_ref()),
            ("user_info_endpoint", self.user_info_endpoint.as_ref()),
            ("jwks_uri", self.jwks_uri.as_ref()),
            ("end_session_endpoint", self.end_session_endpoint.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, url)| Some((key, url?)))
        .filter(|(_, url)| url.scheme() == "http" && !is_loopback(url))
        .collect()
    }
}

/// How the proxy authenticates itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    /// The client id and secret in an `Authorization: Basic` header.
    ClientSecretBasic,
    /// The client id and secret as form fields of the request body.
    ClientSecretPost,
}

/// Whether `url`'s host is `localhost` or a loopback address: the one place
/// plain http to an IdP is accepted without `allow_insecure_http`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Debug, Clone)]
pub struct CognitoAction {
    /// e.g. `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    pub region: String,
    pub user_pool_id: String,
    pub user_pool_client_id: String,
    pub user_pool_client_secret: Secret,
    pub user_pool_domain: CognitoDomain,
    /// Points issuer and hosted UI at an emulator instead of AWS.
    pub endpoint_url: Option<Url>,
    pub common: AuthCommon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CognitoDomain {
    /// `https://{prefix}.auth.{region}.amazoncognito.com`
    Prefix(String),
    /// A custom domain name (contains a dot).
    Custom(String),
}

/// ALB's `jwt_validation`: each request carries a JWT (`Authorization:
/// Bearer`) signed by `issuer` with a key of its JWKS.
#[derive(Debug, Clone)]
pub struct JwtValidationAction {
    /// Exactly as the tokens' `iss` spells it.
    pub issuer: String,
    pub jwks_endpoint: Url,
    /// `aud` must name one of these; empty: `aud` is not checked.
    pub audience: Vec<String>,
    /// Claims every token must have on this rule; empty: any valid token.
    pub require: Vec<ClaimRequirement>,
    /// Timeout for each JWKS fetch; default 10 s.
    pub idp_timeout: Duration,
}

/// Settings shared by both authenticate actions, with ALB's defaults.
#[derive(Debug, Clone)]
pub struct AuthCommon {
    /// Space-separated; default `openid`.
    pub scope: String,
    /// Default `AWSELBAuthSessionCookie`.
    pub session_cookie_name: String,
    /// Default 7 days.
    pub session_timeout: Duration,
    /// `authentication_request_extra_params`: at most 10, in the order given.
    pub extra_params: Vec<(String, String)>,
    pub on_unauthenticated_request: UnauthenticatedPolicy,
    pub api_requests: ApiRequests,
    /// Let CORS preflights (OPTIONS with `Access-Control-Request-Method`) through unauthenticated.
    pub allow_cors_preflight: bool,
    /// How long a login may take from redirect to callback; default 15 minutes.
    pub login_timeout: Duration,
    /// Timeout for each call to the IdP; default 10 s.
    pub idp_timeout: Duration,
    /// Where the IdP sends the browser after sign-out: a path on the request's host or an absolute URL.
    pub sign_out_redirect: String,
    /// Claims every principal must have on this rule (`require`); empty: anyone the IdP accepts.
    pub require: Vec<ClaimRequirement>,
    /// Extra upstream headers made from claims (`claim_headers`), in file order.
    pub claim_headers: Vec<(http::HeaderName, String)>,
    /// `bearer: accept`: the audiences a bearer JWT from this IdP may name
    /// instead of a session (`bearer_audience`, else the client id).
    /// `None`: bearer tokens are not accepted (`bearer: off`, the default).
    pub bearer_audience: Option<Vec<String>>,
}

/// One `require` entry, as ALB's `AdditionalClaims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequirement {
    /// The claim's name; a dotted path into nested objects when no claim has the whole name.
    pub name: String,
    pub format: ClaimFormat,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimFormat {
    /// `single-string`: equals one of the values.
    SingleString,
    /// `string-array`: an array containing every value.
    StringArray,
    /// `space-separated-values`: a string whose words include every value.
    SpaceSeparated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthenticatedPolicy {
    Authenticate,
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRequests {
    /// Non-navigation requests get 401 with a JSON body.
    Unauthorized,
    /// ALB's behaviour: every request is redirected to the IdP.
    Redirect,
}
