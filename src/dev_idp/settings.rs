//! What `portcullis dev-idp` serves: its address, issuer, clients and users,
//! from a small file (`--config`), flags, and defaults that work alone.
//! Every problem is reported at once, each with the key or flag it is about.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::{self, Format, Problem, Secret};

/// The default listening address.
pub const DEFAULT_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000);
/// The default client, the one `portcullis dev-idp` alone serves.
pub const DEFAULT_CLIENT_ID: &str = "portcullis-dev";
/// Its secret: public, like everything about the default provider.
pub const DEFAULT_CLIENT_SECRET: &str = "dev-only-secret";
/// The default Cognito user pool id (its region is the ARN's).
pub const DEFAULT_USER_POOL_ID: &str = "us-east-1_DevPool";

/// Where the provider listens and what it answers for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub address: SocketAddr,
    /// The base URL browsers and relying parties reach the provider at. In
    /// OIDC mode it is the issuer; in Cognito mode it is the
    /// `endpoint_url` and the issuer is `{base_url}/{user pool id}`. Port 0
    /// stands for the port the listener gets (see [`super::bind`]).
    pub base_url: Url,
    pub mode: Mode,
    pub clients: Vec<Client>,
    pub users: Vec<User>,
    /// Shown on the login page: test credentials that are public anyway
    /// (the built-in users, the demo's). `None` for users someone chose.
    pub login_hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A plain OpenID provider, for `authenticate_oidc`.
    Oidc,
    /// Shaped like a Cognito user pool reached through `endpoint_url`, for
    /// `authenticate_cognito`: Cognito's paths and `cognito:*` claims.
    Cognito { user_pool_id: String },
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: Secret,
    /// Exact matches, except that port 0 stands for any port, so one entry
    /// serves a proxy on whatever port it gets.
    pub redirect_uris: Vec<Url>,
    /// True when the secret is the built-in one, which may be printed.
    pub default_secret: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub password: Secret,
    /// Claims for the ID token and userinfo: defaults derived from the user
    /// name (`sub`, `email`, `name`, …), overridden by the configured ones.
    /// `groups` becomes `cognito:groups` in Cognito mode.
    pub claims: Map<String, Value>,
}

/// `portcullis dev-idp`'s flags, as given; `None` and empty lists mean
/// "from the file, or the default".
#[derive(Debug, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub address: Option<SocketAddr>,
    pub issuer: Option<String>,
    pub endpoint_url: Option<String>,
    pub cognito: bool,
    pub user_pool_id: Option<String>,
    /// `ID:SECRET:REDIRECT_URI[,REDIRECT_URI…]`, each replacing the file's clients.
    pub clients: Vec<String>,
    /// `NAME:PASSWORD[:GROUP,GROUP…]`, each replacing the file's users.
    pub users: Vec<String>,
    pub allow_remote: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unknown extension; use .yaml, .yml, .toml or .json")]
    UnknownFormat { path: PathBuf },
    #[error("{path} is not valid {}: {message}", .format.name())]
    Syntax {
        path: PathBuf,
        format: Format,
        /// The parser's message without the lines of the file it quotes,
        /// which may hold a password.
        message: String,
    },
    #[error("{path}: {} problem(s)", .problems.len())]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    address: Option<String>,
    mode: Option<RawMode>,
    issuer: Option<String>,
    endpoint_url: Option<String>,
    user_pool_id: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    clients: Option<Vec<RawClient>>,
    users: Option<Vec<RawUser>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Oidc,
    Cognito,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client_id: String,
    client_secret: String,
    redirect_uris: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: String,
    password: String,
    #[serde(default)]
    claims: Map<String, Value>,
}

impl Settings {
    /// Reads `options.config` when given, then applies the flags and the defaults.
    pub fn load(options: &Options) -> Result<Settings, SettingsError> {
        let (file, source) = match &options.config {
            Some(path) => (read_file(path)?, path.display().to_string()),
            None => (RawFile::default(), "dev-idp".to_owned()),
        };
        Self::build(file, options).map_err(|problems| SettingsError::Invalid {
            path: source,
            problems,
        })
    }

    /// The issuer its tokens carry.
    pub fn issuer(&self) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        match &self.mode {
            Mode::Oidc => base.to_owned(),
            Mode::Cognito { user_pool_id } => format!("{base}/{user_pool_id}"),
        }
    }

    /// Merges the file and the flags (flags win) and checks the result.
    fn build(file: RawFile, options: &Options) -> Result<Settings, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String, fix: &str| {
            problems.push(Problem {
                path: path.to_owned(),
                message,
                fix: fix.to_owned(),
            })
        };

        let address = match (options.address, &file.address) {
            (Some(address), _) => address,
            (None, Some(text)) => text.parse().unwrap_or_else(|_| {
                problem(
                    "address",
                    format!("`{text}` is not IP:PORT"),
                    "write it like 127.0.0.1:9000",
                );
                DEFAULT_ADDRESS
            }),
            (None, None) => DEFAULT_ADDRESS,
        };
        let allow_remote = options.allow_remote || file.allow_remote;
        if !address.ip().is_loopback() && !allow_remote {
            problem(
                "address (--address)",
                format!(
                    "{address} is not a loopback address, and this provider accepts test passwords from anyone who reaches it"
                ),
                "listen on 127.0.0.1, or add --allow-remote (allow_remote: true) if it must be reachable from elsewhere, e.g. in a container",
            );
        }

        let cognito = options.cognito || file.mode == Some(RawMode::Cognito);
        let issuer = options.issuer.as_ref().or(file.issuer.as_ref());
        let endpoint_url = options.endpoint_url.as_ref().or(file.endpoint_url.as_ref());
        let user_pool_id = options.user_pool_id.as_ref().or(file.user_pool_id.as_ref());
        let (mode, base_url) = if cognito {
            if issuer.is_some() {
                problem(
                    "issuer (--issuer)",
                    "in Cognito mode the issuer is derived, as Cognito derives it".to_owned(),
                    "give the base URL as endpoint_url (--endpoint-url); the issuer is {endpoint_url}/{user_pool_id}",
                );
            }
            let user_pool_id = user_pool_id.map_or(DEFAULT_USER_POOL_ID, String::as_str);
            if !is_user_pool_id(user_pool_id) {
                problem(
                    "user_pool_id (--user-pool-id)",
                    format!("`{user_pool_id}` is not a user pool id"),
                    "write it as Cognito does, {region}_{letters and digits}: eu-west-1_AbC123",
                );
            }
            let mode = Mode::Cognito {
                user_pool_id: user_pool_id.to_owned(),
            };
            (mode, endpoint_url)
        } else {
            for (given, key) in [
                (endpoint_url.is_some(), "endpoint_url (--endpoint-url)"),
                (user_pool_id.is_some(), "user_pool_id (--user-pool-id)"),
            ] {
                if given {
                    problem(
                        key,
                        "only a Cognito-shaped provider has it".to_owned(),
                        "add --cognito (mode: cognito), or remove it",
                    );
                }
            }
            (Mode::Oidc, issuer)
        };
        let key = if cognito { "endpoint_url" } else { "issuer" };
        let base_url = match base_url {
            Some(text) => base_url_of(text).unwrap_or_else(|message| {
                problem(
                    key,
                    message,
                    "give an http(s) URL such as http://127.0.0.1:9000",
                );
                default_base_url(address)
            }),
            None => default_base_url(address),
        };

        // An empty list is a problem of its own; a list of bad entries has
        // had its problems reported entry by entry.
        let no_clients =
            options.clients.is_empty() && file.clients.as_ref().is_some_and(Vec::is_empty);
        let no_users = options.users.is_empty() && file.users.as_ref().is_some_and(Vec::is_empty);
        let clients = if options.clients.is_empty() {
            match file.clients {
                Some(clients) => clients
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, raw)| {
                        client(raw, &format!("clients[{index}]"), &mut problem)
                    })
                    .collect(),
                None => vec![default_client()],
            }
        } else {
            options
                .clients
                .iter()
                .filter_map(|flag| match client_flag(flag) {
                    Some(raw) => client(raw, "--client", &mut problem),
                    None => {
                        problem(
                            "--client",
                            format!("`{}` is not ID:SECRET:REDIRECT_URI", redact_flag(flag)),
                            "write it like my-app:my-secret:https://localhost:8443/oauth2/idpresponse",
                        );
                        None
                    }
                })
                .collect()
        };
        for (index, client) in clients.iter().enumerate() {
            if clients[..index].iter().any(|other| other.id == client.id) {
                problem(
                    "clients",
                    format!("client `{}` is listed twice", client.id),
                    "give each client its own client_id",
                );
            }
        }

        let (users, login_hint) = if options.users.is_empty() {
            match file.users {
                Some(users) => {
                    let users = users
                        .into_iter()
                        .enumerate()
                        .filter_map(|(index, raw)| {
                            user(raw, &format!("users[{index}]"), &mut problem)
                        })
                        .collect();
                    (users, None)
                }
                None => default_users(),
            }
        } else {
            let users = options
                .users
                .iter()
                .filter_map(|flag| match user_flag(flag) {
                    Some(raw) => user(raw, "--user", &mut problem),
                    None => {
                        problem(
                            "--user",
                            format!("`{}` is not NAME:PASSWORD", redact_flag(flag)),
                            "write it like alice:secret, or alice:secret:admins,developers with groups",
                        );
                        None
                    }
                })
                .collect();
            (users, None)
        };
        for (index, user) in users.iter().enumerate() {
            if users[..index]
                .iter()
                .any(|other: &User| other.username == user.username)
            {
                problem(
                    "users",
                    format!("user `{}` is listed twice", user.username),
                    "give each user their own username",
                );
            }
        }
        if no_clients {
            problem(
                "clients",
                "no client".to_owned(),
                "list at least one client, or none for the default",
            );
        }
        if no_users {
            problem(
                "users",
                "no user".to_owned(),
                "list at least one user, or none for the defaults",
            );
        }

        if problems.is_empty() {
            Ok(Settings {
                address,
                base_url,
                mode,
                clients,
                users,
                login_hint,
            })
        } else {
            Err(problems)
        }
    }
}

fn read_file(path: &Path) -> Result<RawFile, SettingsError> {
    let format = Format::from_path(path).ok_or_else(|| SettingsError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value = config::parse_value(&text, format).map_err(|message| SettingsError::Syntax {
        path: path.to_path_buf(),
        format,
        message,
    })?;
    // An empty file is a file with no settings.
    if value.as_object().is_some_and(Map::is_empty) {
        return Ok(RawFile::default());
    }
    config::deserialize_value(&value, is_secret_key).map_err(|(key, message)| {
        SettingsError::Invalid {
            path: path.display().to_string(),
            problems: vec![Problem {
                path: key,
                message,
                fix: "see docs/dev-idp.md for the file's keys".to_owned(),
            }],
        }
    })
}

/// Whether a key of the file (list indices left out) holds a secret, which
/// no message may show.
fn is_secret_key(keys: &[&str]) -> bool {
    matches!(
        keys,
        ["clients", "client_secret", ..] | ["users", "password", ..]
    )
}

fn client(
    raw: RawClient,
    at: &str,
    problem: &mut impl FnMut(&str, String, &str),
) -> Option<Client> {
    let mut ok = true;
    if raw.client_id.trim().is_empty() {
        problem(
            &format!("{at}.client_id"),
            "is empty".to_owned(),
            "give the client an id",
        );
        ok = false;
    }
    if raw.client_secret.is_empty() {
        problem(
            &format!("{at}.client_secret"),
            "is empty".to_owned(),
            "give the client a secret: portcullis always authenticates to the token endpoint",
        );
        ok = false;
    }
    let mut redirect_uris = Vec::new();
    for (index, text) in raw.redirect_uris.iter().enumerate() {
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                redirect_uris.push(url);
            }
            _ => {
                problem(
                    &format!("{at}.redirect_uris[{index}]"),
                    format!("`{text}` is not an absolute http(s) URL"),
                    "give the proxy's callback, e.g. https://localhost:8443/oauth2/idpresponse (port 0: any port)",
                );
                ok = false;
            }
        }
    }
    if raw.redirect_uris.is_empty() {
        problem(
            &format!("{at}.redirect_uris"),
            "is empty".to_owned(),
            "list the proxy's callback, e.g. https://localhost:8443/oauth2/idpresponse",
        );
        ok = false;
    }
    ok.then(|| Client {
        id: raw.client_id,
        secret: Secret::new(raw.client_secret),
        redirect_uris,
        default_secret: false,
    })
}

fn user(raw: RawUser, at: &str, problem: &mut impl FnMut(&str, String, &str)) -> Option<User> {
    if raw.username.trim().is_empty() || raw.username.contains(char::is_whitespace) {
        problem(
            &format!("{at}.username"),
            format!("`{}` is empty or has spaces", raw.username),
            "give a user name such as alice",
        );
        return None;
    }
    if raw.password.is_empty() {
        problem(
            &format!("{at}.password"),
            "is empty".to_owned(),
            "give the user a password",
        );
        return None;
    }
    if let Some(groups) = raw.claims.get("groups")
        && !groups
            .as_array()
            .is_some_and(|groups| groups.iter().all(Value::is_string))
    {
        problem(
            &format!("{at}.claims.groups"),
            "is not a list of strings".to_owned(),
            "write it like [admins, developers]",
        );
        return None;
    }
    let mut claims = default_claims(&raw.username);
    claims.extend(raw.claims);
    Some(User {
        username: raw.username,
        password: Secret::new(raw.password),
        claims,
    })
}

/// `ID:SECRET:URI[,URI…]`: the URIs hold colons themselves, so only the
/// first two separate.
fn client_flag(flag: &str) -> Option<RawClient> {
    let mut parts = flag.splitn(3, ':');
    let (id, secret, uris) = (parts.next()?, parts.next()?, parts.next()?);
    Some(RawClient {
        client_id: id.to_owned(),
        client_secret: secret.to_owned(),
        redirect_uris: uris.split(',').map(str::to_owned).collect(),
    })
}

/// `NAME:PASSWORD[:GROUP,GROUP…]`.
fn user_flag(flag: &str) -> Option<RawUser> {
    let mut parts = flag.splitn(3, ':');
    let (username, password) = (parts.next()?, parts.next()?);
    let mut claims = Map::new();
    if let Some(groups) = parts.next().filter(|groups| !groups.is_empty()) {
        claims.insert(
            "groups".to_owned(),
            json!(groups.split(',').collect::<Vec<_>>()),
        );
    }
    Some(RawUser {
        username: username.to_owned(),
        password: password.to_owned(),
        claims,
    })
}

/// A malformed flag, shown without what may be its secret part.
fn redact_flag(flag: &str) -> String {
    match flag.split_once(':') {
        Some((first, _)) => format!("{first}:…"),
        None => flag.to_owned(),
    }
}

fn base_url_of(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("`{text}` is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{text}` is not an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` has a query or fragment"));
    }
    Ok(url)
}

/// `http://ADDRESS`, or `http://localhost:PORT` when listening on every
/// interface (an address no browser can open).
fn default_base_url(address: SocketAddr) -> Url {
    let text = if address.ip().is_unspecified() {
        format!("http://localhost:{}", address.port())
    } else {
        format!("http://{address}")
    };
    Url::parse(&text).expect("an IP address and port make a URL")
}

fn default_client() -> Client {
    let callback = |origin: &str| {
        Url::parse(&format!("{origin}/oauth2/idpresponse")).expect("a fixed, valid URL")
    };
    Client {
        id: DEFAULT_CLIENT_ID.to_owned(),
        secret: Secret::new(DEFAULT_CLIENT_SECRET),
        redirect_uris: vec![
            callback("https://localhost:0"),
            callback("http://localhost:0"),
        ],
        default_secret: true,
    }
}

/// alice (admins, developers) and bob (developers), each with their name as
/// password, and the hint that says so.
fn default_users() -> (Vec<User>, Option<String>) {
    let users = [
        ("alice", &["admins", "developers"][..]),
        ("bob", &["developers"][..]),
    ]
    .into_iter()
    .map(|(name, groups)| test_user(name, name, groups))
    .collect();
    (
        users,
        Some("alice / alice (admins, developers) or bob / bob (developers)".to_owned()),
    )
}

/// A user with `password`, `groups` and the claims derived from its name.
pub fn test_user(username: &str, password: &str, groups: &[&str]) -> User {
    let mut claims = default_claims(username);
    claims.insert("groups".to_owned(), json!(groups));
    User {
        username: username.to_owned(),
        password: Secret::new(password),
        claims,
    }
}

/// `sub`, e-mail and name claims made up from the user name.
fn default_claims(username: &str) -> Map<String, Value> {
    let display = username
        .chars()
        .next()
        .map(|first| first.to_uppercase().collect::<String>() + &username[first.len_utf8()..])
        .unwrap_or_default();
    [
        ("sub", json!(username)),
        ("email", json!(format!("{username}@example.test"))),
        ("email_verified", json!(true)),
        ("name", json!(format!("{display} Example"))),
        ("given_name", json!(display)),
        ("family_name", json!("Example")),
        ("preferred_username", json!(username)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// `{region}_{letters and digits}`, as in Cognito ARNs.
fn is_user_pool_id(id: &str) -> bool {
    id.split_once('_').is_some_and(|(region, rest)| {
        region.split('-').count() >= 3
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(yaml: &str, options: &Options) -> Result<Settings, Vec<Problem>> {
        let value = config::parse_value(yaml, Format::Yaml).unwrap();
        Settings::build(serde_json::from_value(value).unwrap(), options)
    }

    fn paths(problems: &[Problem]) -> Vec<&str> {
        problems
            .iter()
            .map(|problem| problem.path.as_str())
            .collect()
    }

    #[test]
    fn defaults_alone_make_a_working_provider() {
        let settings = Settings::build(RawFile::default(), &Options::default()).unwrap();
        assert_eq!(settings.address, DEFAULT_ADDRESS);
        assert_eq!(settings.issuer(), "http://127.0.0.1:9000");
        assert_eq!(settings.clients[0].id, DEFAULT_CLIENT_ID);
        assert!(settings.clients[0].default_secret);
        let names: Vec<&str> = settings.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(settings.users[1].claims["groups"], json!(["developers"]));
        assert!(settings.login_hint.is_some());
    }

    #[test]
    fn the_file_sets_clients_users_and_claims() {
        let settings = from_yaml(
            r#"
address: 127.0.0.1:9100
issuer: http://localhost:9100
clients:
  - client_id: app
    client_secret: s3cret
    redirect_uris: [https://localhost:8443/oauth2/idpresponse]
users:
  - username: carol
    password: pw
    claims: { groups: [ops], email: carol@corp.example, locale: fr }
"#,
            &Options::default(),
        )
        .unwrap();
        assert_eq!(settings.issuer(), "http://localhost:9100");
        assert!(!settings.clients[0].default_secret);
        let carol = &settings.users[0];
        assert_eq!(carol.claims["email"], "carol@corp.example");
        assert_eq!(carol.claims["locale"], "fr");
        assert_eq!(
            carol.claims["sub"], "carol",
            "defaults stay under the given claims"
        );
        assert!(
            settings.login_hint.is_none(),
            "chosen passwords are not shown"
        );
    }

    #[test]
    fn flags_replace_the_files_lists() {
        let options = Options {
            clients: vec![
                "web:pw:https://localhost:0/oauth2/idpresponse,http://127.0.0.1:8080/cb".into(),
            ],
            users: vec!["dave:pw:admins,ops".into(), "erin:pw".into()],
            ..Options::default()
        };
        let settings = from_yaml("users: [{ username: x, password: y }]", &options).unwrap();
        assert_eq!(settings.clients[0].redirect_uris.len(), 2);
        assert_eq!(settings.users.len(), 2);
        assert_eq!(settings.users[0].claims["groups"], json!(["admins", "ops"]));
        assert!(settings.users[1].claims.get("groups").is_none());
    }

    #[test]
    fn cognito_mode_derives_the_issuer_from_the_endpoint_url() {
        let settings = from_yaml(
            "mode: cognito\nendpoint_url: http://127.0.0.1:9229\nuser_pool_id: eu-west-1_AbC123\n",
            &Options::default(),
        )
        .unwrap();
        assert_eq!(settings.issuer(), "http://127.0.0.1:9229/eu-west-1_AbC123");
        let defaulted = Settings::build(
            RawFile::default(),
            &Options {
                cognito: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(
            defaulted.issuer(),
            format!("http://127.0.0.1:9000/{DEFAULT_USER_POOL_ID}")
        );
    }

    #[test]
    fn a_remote_address_needs_allow_remote() {
        let problems = from_yaml("address: 0.0.0.0:9000\n", &Options::default()).unwrap_err();
        assert_eq!(paths(&problems), ["address (--address)"]);
        let allowed = from_yaml(
            "address: 0.0.0.0:9000\nallow_remote: true\n",
            &Options::default(),
        )
        .unwrap();
        assert_eq!(allowed.issuer(), "http://localhost:9000");
        let flagged = Options {
            address: Some("0.0.0.0:9000".parse().unwrap()),
            allow_remote: true,
            ..Options::default()
        };
        assert!(Settings::build(RawFile::default(), &flagged).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = from_yaml(
            r#"
mode: cognito
issuer: http://127.0.0.1:9000
user_pool_id: nope
clients:
  - { client_id: a, client_secret: "", redirect_uris: ["not a url"] }
  - { client_id: a, client_secret: s, redirect_uris: [] }
users:
  - { username: alice, password: a, claims: { groups: admins } }
"#,
            &Options::default(),
        )
        .unwrap_err();
        assert_eq!(
            paths(&problems),
            [
                "issuer (--issuer)",
                "user_pool_id (--user-pool-id)",
                "clients[0].client_secret",
                "clients[0].redirect_uris[0]",
                "clients[1].redirect_uris",
                "users[0].claims.groups",
            ]
        );
    }

    #[test]
    fn a_bad_flag_is_reported_without_its_secret() {
        let options = Options {
            clients: vec!["app:topsecret".into()],
            users: vec!["alice".into()],
            ..Options::default()
        };
        let problems = Settings::build(RawFile::default(), &options).unwrap_err();
        let text = format!("{problems:?}");
        assert!(!text.contains("topsecret"), "{text}");
        assert_eq!(paths(&problems), ["--client", "--user"]);
    }
}
