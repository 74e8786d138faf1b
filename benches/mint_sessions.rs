//! Mints sealed session cookies offline, one line per session
//! (`Cookie` header value), for bench/run's memory and cookie-size runs:
//! logging in 100,000 times through a real IdP would take hours.
//!
//! cargo bench --bench mint_sessions -- --secret B64 --issuer URL --client ID \
//!     --count N [--claims-bytes B] [--cookie-name NAME] --out FILE \
//!     [--redis URL [--key-prefix P]]
//!
//! Each session has its own `sub`, access token and claims (so each also
//! misses the x-amzn-oidc-data cache), like distinct users would.
//!
//! With `--redis`, each session is saved in that Redis by the proxy's own
//! `RedisStore` (same keys, indexes and sealed values as a login makes) and
//! the line is its one-cookie ticket. Those sessions also carry a `sid`, as
//! a real login's do, so both of the store's indexes are written.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::StreamExt;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use portcullis::config::SessionKey;
use portcullis::internals::{
    CookieSealer, RedisSettings, RedisStore, RequestCookies, Session, SessionStore, connect_redis,
};
use serde_json::value::RawValue;

/// Saves sent to Redis at once: enough to hide the round trips.
const REDIS_IN_FLIGHT: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // A bare `cargo bench` runs every bench target with `--bench`: nothing to do.
    let Some(out) = get("--out") else {
        eprintln!("mint_sessions: no --out given, nothing to do (see the file's header)");
        return;
    };
    let secret = get("--secret").expect("--secret B64 (the session secret)");
    let issuer = get("--issuer").expect("--issuer URL");
    let client = get("--client").expect("--client ID");
    let count: usize = get("--count").map_or(1, |c| c.parse().expect("--count N"));
    let claims_bytes: usize =
        get("--claims-bytes").map_or(0, |c| c.parse().expect("--claims-bytes B"));
    let name = get("--cookie-name").unwrap_or_else(|| "AWSELBAuthSessionCookie".into());

    let key: [u8; 32] = STANDARD
        .decode(secret.trim())
        .expect("the secret is base64")
        .try_into()
        .expect("the secret is 32 bytes");
    let sealer = CookieSealer::new(&[SessionKey(key)]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let redis = get("--redis");
    let with_sid = redis.is_some();
    let key_prefix = get("--key-prefix").unwrap_or_else(|| "portcullis:".into());

    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut filler = |len: usize| {
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            bytes.extend_from_slice(&rng_state.to_le_bytes());
        }
        let mut text = URL_SAFE_NO_PAD.encode(&bytes);
        text.truncate(len);
        text
    };
    let sessions = (0..count).map(|i| {
        let sub = format!("user-{i:08}");
        let mut claims = serde_json::json!({
            "sub": sub,
            "email": format!("{sub}@example.test"),
            "email_verified": true,
            "name": format!("User {i}"),
            "given_name": "User",
            "family_name": format!("{i}"),
            "preferred_username": sub,
        });
        // Padding in claims of at most 1000 bytes, as bigClaims does.
        let mut left = claims_bytes;
        let mut n = 0;
        while left > 0 {
            let chunk = left.min(1000);
            claims[format!("big_{n}")] = filler(chunk).into();
            left -= chunk;
            n += 1;
        }
        Session {
            iss: issuer.clone(),
            client: client.clone(),
            sub: sub.clone(),
            sid: with_sid.then(|| format!("sid-{i:08}")),
            access_token: filler(43),
            refresh_token: None,
            id_token: None,
            access_expires_at: now + 24 * 3600,
            expires_at: now + 24 * 3600,
            claims: RawValue::from_string(claims.to_string()).expect("json! is JSON"),
            id_claims: None,
        }
    });

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).expect("--out is writable"));
    if let Some(url) = &redis {
        let settings = RedisSettings {
            key_prefix,
            timeout: Duration::from_secs(10),
        };
        let lines = save_in_redis(url, settings, sealer, key, &name, sessions.collect(), now);
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        return;
    }
    for (i, session) in sessions.enumerate() {
        let plaintext = serde_json::to_vec(&session).expect("a session serialises");
        let shards = sealer
            .seal_sharded(&name, &plaintext)
            .unwrap_or_else(|error| panic!("{error}"));
        let header = shards
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if i == 0 {
            // Check what the proxy will do with it before writing 100,000 of them.
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, HeaderValue::from_str(&header).unwrap());
            let cookies = RequestCookies::parse(&headers);
            assert!(
                sealer.open_sharded(&name, &cookies).is_some(),
                "minted cookie opens"
            );
            eprintln!(
                "mint_sessions: {count} sessions, {} shard(s), {} cookie bytes each",
                shards.len(),
                header.len()
            );
        }
        writeln!(file, "{header}").unwrap();
    }
}

/// Saves `sessions` with the proxy's Redis store; the `Cookie` header value
/// of each one's ticket, in order.
fn save_in_redis(
    url: &str,
    settings: RedisSettings,
    sealer: CookieSealer,
    key: [u8; 32],
    name: &str,
    sessions: Vec<Session>,
    now: u64,
) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let conn = connect_redis(url, settings.timeout)
            .await
            .unwrap_or_else(|error| panic!("--redis {url}: {error}"));
        let store = RedisStore::new(conn, Arc::new(sealer), &[SessionKey(key)], name, settings);
        let store = &store;
        let tickets: Vec<_> = futures_util::stream::iter(sessions.iter())
            .map(|session| async move {
                store
                    .save(session, now)
                    .await
                    .unwrap_or_else(|error| panic!("saving a session in Redis: {error}"))
            })
            .buffered(REDIS_IN_FLIGHT)
            .collect()
            .await;
        // Check what the proxy will do with one before handing out all of them.
        if let Some(first) = tickets.first() {
            let loaded = store.load(first, now).await.expect("Redis answers");
            assert!(
                loaded.is_some_and(|session| session.sub == sessions[0].sub),
                "a saved session loads by its ticket"
            );
        }
        let lines: Vec<String> = tickets
            .iter()
            .map(|ticket| {
                let [value] = ticket.shards() else {
                    panic!("a Redis ticket is one cookie");
                };
                format!("{name}-0={value}")
            })
            .collect();
        eprintln!(
            "mint_sessions: {} sessions saved in Redis, {} cookie bytes each",
            lines.len(),
            lines.first().map_or(0, String::len)
        );
        lines
    })
}
