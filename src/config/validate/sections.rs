//! The top-level sections: `admin`, `sessions`, `signing`, `limits`.

use std::time::Duration;

use base64::Engine;
use url::Url;

use super::{At, Validator};
use crate::config::model::*;
use crate::config::raw::*;

/// What `x-amzn-oidc-data`'s `signer` says when the file does not: shaped like
/// an ALB ARN because some verifiers expect one.
const DEFAULT_SIGNER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/portcullis/0";
/// `sessions.redis.key_prefix` when not given.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "portcullis:";
const MAX_REDIS_KEY_PREFIX: usize = 64;
/// `sessions.redis.timeout` when not given, and its largest value.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(60);
/// hyper's HTTP/1 reader refuses (panics on) a smaller buffer than this.
const MIN_HEADER_BYTES: u64 = 8 * 1024;

impl Validator<'_> {
    pub(super) fn admin(&mut self, at: &At, raw: RawAdmin) -> Option<AdminConfig> {
        let address = self.socket_addr(&at.key("address"), raw.address)?;
        Some(AdminConfig { address })
    }

    pub(super) fn sessions(
        &mut self,
        at: &At,
        raw: RawSessions,
        authenticating: Option<At>,
    ) -> Option<SessionsConfig> {
        let secrets = self.session_secrets(at, raw.secrets, raw.secrets_file);
        if let (Some(secrets), Some(rule)) = (&secrets, &authenticating)
            && secrets.is_empty()
        {
            self.problem(
                &at.key("secrets"),
                format!("no session secret, but {rule} authenticates"),
                "add a base64 32-byte key to sessions.secrets (`portcullis keygen` prints one), \
                 or name a file with sessions.secrets_file",
            );
        }

        let store = self.choice(
            &at.key("store"),
            raw.store,
            "cookie",
            &[("cookie", "cookie"), ("redis", "redis")],
        );
        let store = match (store, raw.redis) {
            (Some("redis"), redis) => self
                .redis(&at.key("redis"), redis.unwrap_or_default())
                .map(SessionStoreKind::Redis),
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("redis"),
                    "redis settings are given but store is cookie",
                    "set `store: redis` to keep sessions in Redis, or remove the redis section",
                );
                None
            }
            (Some(_), None) => Some(SessionStoreKind::Cookie),
            (None, _) => None,
        };
        Some(SessionsConfig {
            secrets: secrets?,
            store: store?,
        })
    }

    /// `secrets` or `secrets_file` (one per line), each base64 of 32 bytes.
    fn session_secrets(
        &mut self,
        at: &At,
        secrets: Option<Vec<String>>,
        secrets_file: Option<String>,
    ) -> Option<Vec<SessionKey>> {
        let entries: Vec<(At, String)> = match (secrets, secrets_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("secrets_file"),
                    "both secrets and secrets_file are given",
                    "keep one of them",
                );
                return None;
            }
            (Some(secrets), None) => secrets
                .into_iter()
                .enumerate()
                .map(|(index, secret)| (at.key("secrets").index(index), secret))
                .collect(),
            (None, Some(file)) => {
                let file_at = at.key("secrets_file");
                let text = self.read_file(&file_at, &file)?;
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(|line| (file_at.clone(), line.to_string()))
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        let keys: Vec<Option<SessionKey>> = entries
            .into_iter()
            .map(|(at, secret)| self.session_key(&at, &secret))
            .collect();
        keys.into_iter().collect()
    }

    fn session_key(&mut self, at: &At, secret: &str) -> Option<SessionKey> {
        let fix = "use 32 random bytes in base64, e.g. from `portcullis keygen` or `openssl rand -base64 32`";
        // The value is a secret: messages say what is wrong with it, never what it is.
        match decode_base64(secret.trim()) {
            Some(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) => Some(SessionKey(key)),
                Err(_) => {
                    self.problem(
                        at,
                        format!(
                            "a session secret must be 32 bytes; this one decodes to {}",
                            bytes.len()
                        ),
                        fix,
                    );
                    None
                }
            },
            None => {
                self.problem(at, "a session secret is not valid base64", fix);
                None
            }
        }
    }

    /// `sessions.redis`: one address (`url` or `url_file`) or a `cluster`.
    fn redis(&mut self, at: &At, raw: RawRedis) -> Option<RedisConfig> {
        let address = match raw.cluster {
            Some(nodes) => {
                if raw.url.is_some() || raw.url_file.is_some() {
                    self.problem(
                        &at.key("cluster"),
                        "both cluster and url are given",
                        "keep `url` for one Redis server, or `cluster` for the seed nodes \
                         of a Redis Cluster",
                    );
                    None
                } else if nodes.is_empty() {
                    self.problem(
                        &at.key("cluster"),
                        "`cluster` lists no node",
                        "list one or more nodes of the cluster, such as \
                         [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]",
                    );
                    None
                } else {
                    let mut valid = true;
                    for (index, node) in nodes.iter().enumerate() {
                        valid &= self.redis_url(&at.key("cluster").index(index), node);
                    }
                    valid.then(|| {
                        RedisAddress::Cluster(nodes.into_iter().map(Secret::new).collect())
                    })
                }
            }
            None => self
                .secret_twin(at, "url", raw.url, raw.url_file)
                .filter(|url| self.redis_url(&at.key("url"), url.expose()))
                .map(RedisAddress::Single),
        };
        let key_prefix = raw
            .key_prefix
            .unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned());
        let prefix_ok = key_prefix.len() <= MAX_REDIS_KEY_PREFIX
            && key_prefix.bytes().all(|byte| byte.is_ascii_graphic());
        if !prefix_ok {
            self.problem(
                &at.key("key_prefix"),
                format!(
                    "`key_prefix` must be at most {MAX_REDIS_KEY_PREFIX} printable characters \
                     without spaces"
                ),
                "use a short prefix such as `portcullis:` or `team-a:portcullis:`",
            );
        }
        let timeout = self.duration(&at.key("timeout"), raw.timeout, DEFAULT_REDIS_TIMEOUT);
        let timeout = self.positive(&at.key("timeout"), timeout);
        if let Some(timeout) = timeout
            && timeout > MAX_REDIS_TIMEOUT
        {
            self.problem(
                &at.key("timeout"),
                format!("`timeout` is {}s", timeout.as_secs()),
                "give at most 60s: every request that needs a session waits this long \
                 when Redis does not answer",
            );
        }
        Some(RedisConfig {
            address: address?,
            key_prefix: prefix_ok.then_some(key_prefix)?,
            timeout: timeout.filter(|timeout| *timeout <= MAX_REDIS_TIMEOUT)?,
        })
    }

    /// Whether `url` is a Redis URL; a problem at `at` when not.
    fn redis_url(&mut self, at: &At, url: &str) -> bool {
        // Never echo the URL: it may carry a password.
        match Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {
                return true;
            }
            Ok(url) => {
                let scheme = url.scheme().to_string();
                self.problem(
                    at,
                    format!("the Redis URL has scheme `{scheme}`"),
                    "use redis://HOST:PORT, or rediss:// for TLS",
                );
            }
            Err(error) => self.problem(
                at,
                format!("the Redis URL does not parse: {error}"),
                "use redis://HOST:PORT, or rediss:// for TLS",
            ),
        }
        false
    }

    pub(super) fn signing(&mut self, at: &At, raw: RawSigning) -> Option<SigningConfig> {
        let private_key_pem = match raw.private_key_file {
            Some(file) => {
                let at = at.key("private_key_file");
                let pem = self.read_file(&at, &file);
                pem.and_then(|pem| self.pkcs8_pem(&at, &file, pem))
                    .map(|pem| Some(Secret::new(pem)))
            }
            None => Some(None),
        };
        let key_id = match raw.key_id {
            Some(key_id) if !is_uuid(&key_id) => {
                self.problem(
                    &at.key("key_id"),
                    format!("`{key_id}` is not a UUID"),
                    "use a UUID such as 6f1c3e0a-8d2b-4c47-9a8e-2f5b7d9c1e44 (aws-jwt-verify \
                     requires one), or leave key_id out to derive one from the key",
                );
                None
            }
            key_id => Some(key_id),
        };
        let signer = raw.signer.unwrap_or_else(|| DEFAULT_SIGNER.to_string());
        let encoding = self.choice(
            &at.key("encoding"),
            raw.encoding,
            TokenEncoding::Alb,
            &[("alb", TokenEncoding::Alb), ("jws", TokenEncoding::Jws)],
        );
        Some(SigningConfig {
            private_key_pem: private_key_pem?,
            key_id: key_id?,
            signer,
            encoding: encoding?,
        })
    }

    fn pkcs8_pem(&mut self, at: &At, file: &str, pem: String) -> Option<String> {
        if pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Some(pem);
        }
        let fix = if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            format!("convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in {file}")
        } else {
            "give a P-256 key in PKCS#8 PEM (`portcullis keygen` prints one)".to_string()
        };
        self.problem(
            at,
            format!("{file} is not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)"),
            fix,
        );
        None
    }

    pub(super) fn limits(&mut self, at: &At, raw: RawLimits) -> Option<Limits> {
        let defaults = Limits::default();
        let header_read_timeout = self.duration(
            &at.key("header_read_timeout"),
            raw.header_read_timeout,
            defaults.header_read_timeout,
        );
        let header_read_timeout =
            self.positive(&at.key("header_read_timeout"), header_read_timeout);
        let idle_timeout = self.duration(
            &at.key("idle_timeout"),
            raw.idle_timeout,
            defaults.idle_timeout,
        );
        let idle_timeout = self.positive(&at.key("idle_timeout"), idle_timeout);
        let max_header_bytes = match raw.max_header_bytes {
            None => Some(defaults.max_header_bytes),
            Some(bytes) if bytes >= MIN_HEADER_BYTES => usize::try_from(bytes).ok(),
            Some(bytes) => {
                self.problem(
                    &at.key("max_header_bytes"),
                    format!("{bytes} bytes is below the HTTP/1 minimum of {MIN_HEADER_BYTES}"),
                    format!("use at least {MIN_HEADER_BYTES}, or leave it out for 64 KiB"),
                );
                None
            }
        };
        let max_connections = match raw.max_connections {
            None => Some(None),
            Some(0) => {
                self.problem(
                    &at.key("max_connections"),
                    "max_connections is 0, so no connection could ever be served",
                    "give a positive number, or leave it out for no limit",
                );
                None
            }
            Some(count) => usize::try_from(count).ok().map(Some),
        };
        Some(Limits {
            header_read_timeout: header_read_timeout?,
            max_header_bytes: max_header_bytes?,
            idle_timeout: idle_timeout?,
            max_connections: max_connections?,
        })
    }
}

/// Standard or URL-safe base64, with or without padding: `keygen`, openssl
/// and Kubernetes tooling disagree on which.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}
