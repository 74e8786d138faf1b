//! One conformance suite run against every session store: the cookie store,
//! and the Redis store against a real `redis-server`, and against a real
//! three-node Redis Cluster, that each test starts on free loopback ports.
//! Time is passed in, so expiry needs no waiting; only the locks and
//! one-time keys that Redis expires on its own clock take a moment.

mod common;

use std::sync::Arc;
use std::time::Duration;

use portcullis::config::SessionKey;
use portcullis::internals::{
    CookieSealer, CookieStore, MAX_ONCE_KEYS, MAX_SESSION_BYTES, RedisSettings, RedisStore,
    Revoked, Session, SessionStore, StoreError, Ticket, connect_redis, connect_redis_cluster,
};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use serde_json::value::RawValue;
use tokio::time::Instant;

use common::redis::{RedisCluster, RedisServer};

const BASE: &str = "AWSELBAuthSessionCookie";
const ISS: &str = "https://idp.example";
/// An arbitrary instant: the stores never read the clock.
const NOW: u64 = 1_900_000_000;
const LIFE: u64 = 3600;
const TIMEOUT: Duration = Duration::from_secs(2);
/// Long enough for the next command to find the lock still held.
const HOLD: Duration = Duration::from_millis(300);
/// Longer than any test.
const LONG: Duration = Duration::from_secs(60);
/// How long a one-time key is remembered in the conformance case.
const KEEP: Duration = Duration::from_millis(500);

fn secrets() -> Vec<SessionKey> {
    vec![SessionKey([7; 32])]
}

fn session(iss: &str, sub: &str, sid: Option<&str>) -> Session {
    Session {
        iss: iss.to_owned(),
        client: "client".to_owned(),
        sub: sub.to_owned(),
        sid: sid.map(str::to_owned),
        access_token: format!("access-token-of-{sub}"),
        refresh_token: Some(format!("refresh-token-of-{sub}")),
        id_token: None,
        access_expires_at: NOW + 300,
        expires_at: NOW + LIFE,
        claims: RawValue::from_string(format!(r#"{{"email":"{sub}@claims.example"}}"#))
            .expect("valid JSON"),
        id_claims: None,
    }
}

fn cookie_store() -> CookieStore {
    CookieStore::new(Arc::new(CookieSealer::new(&secrets())), BASE)
}

async fn redis_store(server: &RedisServer) -> RedisStore {
    let conn = connect_redis(&server.url(), TIMEOUT)
        .await
        .expect("redis-server is up");
    redis_store_on(conn)
}

async fn cluster_store(cluster: &RedisCluster) -> RedisStore<ClusterConnection> {
    let conn = connect_redis_cluster(&cluster.urls(), TIMEOUT)
        .await
        .expect("the cluster is up");
    redis_store_on(conn)
}

fn redis_store_on<C>(conn: C) -> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    RedisStore::new(
        conn,
        Arc::new(CookieSealer::new(&secrets())),
        &secrets(),
        BASE,
        RedisSettings {
            key_prefix: "test:".to_owned(),
            timeout: TIMEOUT,
        },
    )
}

/// A raw client for looking at what the store left in Redis.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis-server is up")
}

// ---- the conformance cases, generic over the store ----

async fn round_trip(store: &impl SessionStore) {
    let saved = session(ISS, "alice", Some("sid-1"));
    let ticket = store.save(&saved, NOW).await.expect("saved");
    let loaded = store.load(&ticket, NOW).await.expect("no store error");
    let loaded = loaded.expect("the session loads");
    assert_eq!(
        serde_json::to_string(&loaded).unwrap(),
        serde_json::to_string(&saved).unwrap()
    );
    // Two saves of the same session are two sessions with two tickets.
    let other = store.save(&saved, NOW).await.expect("saved");
    assert_ne!(ticket, other);
}

async fn update_replaces_and_never_resurrects(store: &impl SessionStore) {
    let ticket = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    let mut refreshed = session(ISS, "alice", None);
    refreshed.access_token = "a-new-access-token".to_owned();
    let ticket = store
        .update(&ticket, &refreshed, NOW + 10)
        .await
        .unwrap()
        .expect("a live session updates");
    let loaded = store.load(&ticket, NOW + 10).await.unwrap().expect("loads");
    assert_eq!(loaded.access_token, "a-new-access-token");
    assert_eq!(
        store
            .update(&ticket, &refreshed, NOW + LIFE)
            .await
            .unwrap()
            .map(|_| ()),
        None,
        "an ended session is not updated"
    );
    if store.revokes() {
        store.delete(&ticket).await.unwrap();
        let after = store.update(&ticket, &refreshed, NOW + 20).await.unwrap();
        assert!(
            after.is_none(),
            "a refresh must not bring a signed-out session back"
        );
        assert!(store.load(&ticket, NOW + 20).await.unwrap().is_none());
    }
}

async fn hostile_tickets_load_nothing(store: &impl SessionStore) {
    let real = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    let shards = real.shards().to_vec();
    let mut hostile: Vec<Vec<String>> = vec![
        vec![],
        vec![String::new()],
        vec!["x".to_owned()],
        vec!["A".repeat(108)],
        vec!["%%%%not-base64%%%%".repeat(8)],
        vec!["A".repeat(1 << 20)],
        vec!["AAAA".to_owned(); 5],
    ];
    let first = &shards[0];
    // Truncated, extended, one character flipped, each shard.
    hostile.push(vec![first[..first.len() / 2].to_owned()]);
    hostile.push(vec![first[..first.len() - 1].to_owned()]);
    hostile.push(vec![format!("{first}AAAA")]);
    for i in 0..shards.len() {
        for at in [0, shards[i].len() / 2, shards[i].len() - 1] {
            let mut flipped = shards.clone();
            let mut bytes = flipped[i].clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            flipped[i] = String::from_utf8(bytes).unwrap();
            hostile.push(flipped);
        }
    }
    // Sealed under another secret.
    let foreign = CookieSealer::new(&[SessionKey([9; 32])]);
    hostile.push(vec![foreign.seal(&format!("{BASE}-0"), &[1; 48])]);
    hostile.push(
        foreign
            .seal_sharded(BASE, b"{}")
            .unwrap()
            .into_iter()
            .map(|(_, value)| value)
            .collect(),
    );
    // Sealed under the right secret for another cookie name.
    let ours = CookieSealer::new(&secrets());
    hostile.push(vec![ours.seal("OtherCookie-0", &[1; 48])]);
    // The right shape and secret, but for no stored session.
    hostile.push(vec![ours.seal(&format!("{BASE}-0"), &[1; 48])]);
    for shards in hostile {
        let ticket = Ticket::from_shards(shards);
        let loaded = store.load(&ticket, NOW).await;
        assert!(
            matches!(loaded, Ok(None)),
            "{ticket:?} gave {:?}",
            loaded.map(|s| s.map(|s| s.sub))
        );
    }
}

async fn expiry_is_honoured(store: &impl SessionStore) {
    let ticket = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    assert!(store.load(&ticket, NOW + LIFE - 1).await.unwrap().is_some());
    assert!(store.load(&ticket, NOW + LIFE).await.unwrap().is_none());
    assert!(store.load(&ticket, u64::MAX).await.unwrap().is_none());
    let ended = store.save(&session(ISS, "alice", None), NOW + LIFE).await;
    assert!(matches!(ended, Err(StoreError::Expired)), "{ended:?}");
}

async fn delete_ends_the_session(store: &impl SessionStore) {
    let ticket = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    let kept = store.save(&session(ISS, "bob", None), NOW).await.unwrap();
    store.delete(&ticket).await.expect("deleted");
    // Deleting twice, or a ticket that names nothing, is fine.
    store.delete(&ticket).await.expect("deleted again");
    store
        .delete(&Ticket::from_shards(vec!["junk".to_owned()]))
        .await
        .expect("junk is no error");
    let after = store.load(&ticket, NOW).await.unwrap();
    // The cookie store cannot forget a cookie; the caller clears it.
    assert_eq!(after.is_none(), store.revokes());
    assert!(store.load(&kept, NOW).await.unwrap().is_some());
}

async fn revocation_removes_exactly_those_sessions(store: &impl SessionStore) {
    let save = async |iss: &str, sub: &str, sid: Option<&str>| {
        store.save(&session(iss, sub, sid), NOW).await.unwrap()
    };
    let alice_1 = save(ISS, "alice", Some("sid-1")).await;
    let alice_1b = save(ISS, "alice", Some("sid-1")).await;
    let alice_2 = save(ISS, "alice", Some("sid-2")).await;
    let alice_none = save(ISS, "alice", None).await;
    let bob = save(ISS, "bob", Some("sid-3")).await;
    let other_idp = save("https://other.example", "alice", Some("sid-1")).await;
    let live = async |ticket: &Ticket| store.load(ticket, NOW).await.unwrap().is_some();

    let by_sid = store.delete_by_sid(ISS, "sid-1").await.unwrap();
    let by_sub = if store.revokes() {
        assert_eq!(by_sid, Revoked::Sessions(2));
        assert!(!live(&alice_1).await && !live(&alice_1b).await);
        assert!(live(&alice_2).await && live(&alice_none).await);
        assert!(live(&bob).await && live(&other_idp).await);
        assert_eq!(
            store.delete_by_sid(ISS, "sid-1").await.unwrap(),
            Revoked::Sessions(0)
        );
        let by_sub = store.delete_by_sub(ISS, "alice").await.unwrap();
        assert_eq!(
            by_sub,
            Revoked::Sessions(2),
            "sid-2 and the one without sid"
        );
        assert!(!live(&alice_2).await && !live(&alice_none).await);
        by_sub
    } else {
        assert_eq!(by_sid, Revoked::Unsupported);
        store.delete_by_sub(ISS, "alice").await.unwrap()
    };
    assert_eq!(by_sub == Revoked::Unsupported, !store.revokes());
    assert!(live(&bob).await, "another user's session survives");
    assert!(
        live(&other_idp).await,
        "the same sub at another IdP survives"
    );
    assert_eq!(
        store.delete_by_sub(ISS, "nobody").await.unwrap() == Revoked::Unsupported,
        !store.revokes()
    );
}

async fn oversized_sessions_are_refused(store: &impl SessionStore) {
    let mut huge = session(ISS, "alice", None);
    huge.claims =
        RawValue::from_string(format!(r#"{{"big":"{}"}}"#, "x".repeat(MAX_SESSION_BYTES))).unwrap();
    let saved = store.save(&huge, NOW).await;
    assert!(
        matches!(
            saved,
            Err(StoreError::TooLarge { .. } | StoreError::CookieTooLarge(_))
        ),
        "{saved:?}"
    );
}

/// Polls `condition` every 20 ms until it holds; panics after 5 s.
async fn soon(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refresh_lock_is_exclusive(store: &impl SessionStore) {
    let ticket = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    let other = store.save(&session(ISS, "bob", None), NOW).await.unwrap();
    let first = store.try_lock(&ticket, LONG).await.unwrap();
    let first = first.expect("a free lock is granted");
    let second = store.try_lock(&ticket, LONG).await.unwrap();
    if !store.revokes() {
        // Nothing is shared between replicas: every lock is granted, and
        // the caller's single-flight does the rest in-process.
        store.unlock(second.expect("always granted")).await.unwrap();
        store.unlock(first).await.unwrap();
        return;
    }
    assert!(second.is_none(), "a held lock is not granted twice");
    let bobs = store.try_lock(&other, LONG).await.unwrap();
    let bobs = bobs.expect("another session's lock is its own");

    // Unlocked, it is free again.
    store.unlock(first).await.unwrap();
    let short = store.try_lock(&ticket, HOLD).await.unwrap();
    let short = short.expect("free again after unlock");
    assert!(store.try_lock(&ticket, LONG).await.unwrap().is_none());

    // Held too long, it is free again; unlocking it late frees nothing.
    let mut next = None;
    soon("the lock frees itself after its hold", async || {
        next = store.try_lock(&ticket, LONG).await.unwrap();
        next.is_some()
    })
    .await;
    store.unlock(short).await.unwrap();
    assert!(
        store.try_lock(&ticket, LONG).await.unwrap().is_none(),
        "a stale unlock must not free the next holder's lock"
    );
    store.unlock(next.unwrap()).await.unwrap();
    let last = store.try_lock(&ticket, LONG).await.unwrap();
    store.unlock(last.expect("free again")).await.unwrap();
    store.unlock(bobs).await.unwrap();

    // A ticket that names no session is never locked.
    let junk = Ticket::from_shards(vec!["junk".to_owned()]);
    assert!(store.try_lock(&junk, LONG).await.unwrap().is_none());
}

async fn one_time_keys_are_used_once(store: &impl SessionStore) {
    let once = async |scope: &str, key: &str, now: u64| {
        store.first_use(scope, key, KEEP, now).await.unwrap()
    };
    assert!(once("logout", "jti-1", NOW).await, "first use");
    assert!(!once("logout", "jti-1", NOW).await, "replay");
    assert!(once("other", "jti-1", NOW).await, "scopes are independent");
    assert!(once("logout", "jti-2", NOW).await, "keys are independent");
    // Keys are whatever the token says: long, binary-looking, key-pattern-like.
    let hostile = format!("{}\r\n*1\r\n$4\r\nPING {{}} * ?", "x".repeat(100_000));
    assert!(once("logout", &hostile, NOW).await);
    assert!(!once("logout", &hostile, NOW).await);
    assert!(once("logout", "", NOW).await && !once("logout", "", NOW).await);

    // Forgotten after `keep`: the cookie store by `now` (rounded up to the
    // second), Redis by its own clock.
    let started = Instant::now();
    soon("a one-time key is forgotten after keep", async || {
        once("logout", "jti-1", NOW + 1 + started.elapsed().as_secs()).await
    })
    .await;
    assert!(!once("logout", "jti-1", NOW + 1).await, "remembered anew");
}

/// Runs every case against a fresh store from `$make`, one test per case.
macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            conformance!(@cases $make;
                round_trip,
                update_replaces_and_never_resurrects,
                hostile_tickets_load_nothing,
                expiry_is_honoured,
                delete_ends_the_session,
                revocation_removes_exactly_those_sessions,
                oversized_sessions_are_refused,
                refresh_lock_is_exclusive,
                one_time_keys_are_used_once,
            );
        }
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                #[allow(unused_variables)]
                let Some((store, server)) = ($make) else { return };
                super::$case(&store).await;
            }
        )+
    };
}

conformance!(cookie, Some((cookie_store(), ())));
conformance!(
    redis_server,
    match RedisServer::start() {
        Some(server) => Some((redis_store(&server).await, server)),
        None => None,
    }
);
conformance!(
    redis_cluster,
    match RedisCluster::start(3) {
        Some(cluster) => Some((cluster_store(&cluster).await, cluster)),
        None => None,
    }
);

// ---- what only the cookie store can show ----

#[tokio::test]
async fn cookie_one_time_keys_are_bounded_and_never_forget_a_live_one() {
    let store = cookie_store();
    let keep = Duration::from_secs(60);
    for i in 0..MAX_ONCE_KEYS {
        assert!(
            store
                .first_use("logout", &i.to_string(), keep, NOW)
                .await
                .unwrap()
        );
    }
    // Full of live keys: a new key is refused rather than a live one
    // forgotten, which would let its replay through.
    assert!(!store.first_use("logout", "new", keep, NOW).await.unwrap());
    assert!(
        !store
            .first_use("logout", "0", keep, NOW + 59)
            .await
            .unwrap()
    );
    // Once they have expired they make room, and are themselves forgotten.
    assert!(
        store
            .first_use("logout", "new", keep, NOW + 60)
            .await
            .unwrap()
    );
    assert!(
        store
            .first_use("logout", "0", keep, NOW + 60)
            .await
            .unwrap()
    );
    assert!(
        !store
            .first_use("logout", "new", keep, NOW + 60)
            .await
            .unwrap()
    );
}

// ---- what only a server-side store can show ----

/// Redis could not be asked: the proxy's 503, never "no session".
fn unavailable<T>(result: &Result<T, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::Unavailable { .. } | StoreError::Timeout { .. })
    )
}

#[tokio::test]
async fn redis_keeps_nothing_readable_and_sets_the_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = redis_store(&server).await;
    let ticket = store
        .save(&session(ISS, "alice", Some("sid-1")), NOW)
        .await
        .unwrap();
    assert_eq!(ticket.shards().len(), 1);
    let cookie = format!("{BASE}-0={}", ticket.shards()[0]);
    assert!(cookie.len() < 200, "{} bytes", cookie.len());

    let mut raw = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "the session and two indexes: {keys:?}");
    for key in &keys {
        assert!(key.starts_with("test:"), "{key}");
        for secret in ["alice", "sid-1", "idp.example"] {
            assert!(!key.contains(secret), "{key} shows {secret}");
        }
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(
            (LIFE as i64 - 5..=LIFE as i64).contains(&ttl),
            "{key}: TTL {ttl}"
        );
        let value: Vec<u8> = match redis::cmd("TYPE")
            .arg(key)
            .query_async::<String>(&mut raw)
            .await
            .unwrap()
            .as_str()
        {
            "string" => redis::cmd("GET")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap(),
            _ => {
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                members.concat().into_bytes()
            }
        };
        let text = String::from_utf8_lossy(&value);
        for plain in [
            "access-token-of-alice",
            "refresh-token-of-alice",
            "alice@claims.example",
            "alice",
            "sid-1",
            "idp.example",
            "access_token",
        ] {
            assert!(!text.contains(plain), "{key} holds {plain} in the clear");
        }
    }
    // Nor does the ticket carry the session itself.
    assert!(!ticket.shards()[0].contains("alice"));
}

#[tokio::test]
async fn redis_values_moved_or_edited_in_redis_do_not_load() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = redis_store(&server).await;
    let alice = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    let bob = store.save(&session(ISS, "bob", None), NOW).await.unwrap();
    let mut raw = raw(&server).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:session:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 2);
    let values: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut raw)
        .await
        .unwrap();
    // Swap the two sealed values: each is bound to its own id and key.
    let _: () = redis::cmd("MSET")
        .arg(&keys[0])
        .arg(&values[1])
        .arg(&keys[1])
        .arg(&values[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(store.load(&alice, NOW).await.unwrap().is_none());
    assert!(store.load(&bob, NOW).await.unwrap().is_none());
    // A value grown past any session's size is not even opened.
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(vec![1u8; MAX_SESSION_BYTES * 2])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(store.load(&alice, NOW).await.unwrap().is_none());
    assert!(store.load(&bob, NOW).await.unwrap().is_none());
}

#[tokio::test]
async fn redis_down_is_an_error_not_a_missing_session_and_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = redis_store(&server).await;
    let ticket = store.save(&session(ISS, "alice", None), NOW).await.unwrap();
    server.stop();

    let started = Instant::now();
    let loaded = store.load(&ticket, NOW).await;
    assert!(unavailable(&loaded), "{:?}", loaded.map(|s| s.is_some()));
    let saved = store.save(&session(ISS, "bob", None), NOW).await;
    assert!(unavailable(&saved), "{saved:?}");
    let deleted = store.delete(&ticket).await;
    assert!(unavailable(&deleted), "{deleted:?}");
    let revoked = store.delete_by_sub(ISS, "alice").await;
    assert!(unavailable(&revoked), "{revoked:?}");
    assert!(
        started.elapsed() < TIMEOUT * 5,
        "each call is bounded by the timeout: {:?}",
        started.elapsed()
    );
    // A hostile ticket still costs no Redis call, so it is still "no session".
    let junk = Ticket::from_shards(vec!["junk".to_owned()]);
    assert!(matches!(store.load(&junk, NOW).await, Ok(None)));
    // Connecting anew fails the same way, within the timeout.
    let refused = connect_redis(&server.url(), TIMEOUT).await;
    assert!(unavailable(&refused), "connect: {:?}", refused.err());

    // Redis comes back (empty: it kept nothing): the same store serves again
    // without being rebuilt.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ticket = loop {
        match store.save(&session(ISS, "carol", None), NOW).await {
            Ok(ticket) => break ticket,
            Err(err) if Instant::now() < deadline => {
                // The manager reconnects in the background; ask again shortly.
                let _ = err;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("no recovery within 10 s: {err:?}"),
        }
    };
    assert!(store.load(&ticket, NOW).await.unwrap().is_some());
}

#[tokio::test]
async fn redis_one_time_keys_are_hashed_and_expire() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = redis_store(&server).await;
    let jti = format!("jti-{}", "x".repeat(10_000));
    assert!(store.first_use("logout", &jti, LONG, NOW).await.unwrap());
    let mut raw = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let [key] = keys.as_slice() else {
        panic!("one key: {keys:?}")
    };
    assert!(key.starts_with("test:once:logout:"), "{key}");
    assert!(!key.contains("jti") && key.len() < 80, "{key}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((1..=LONG.as_millis() as i64).contains(&ttl), "{ttl} ms");
}

#[tokio::test]
async fn redis_cluster_node_down_is_an_error_and_recovers() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let store = cluster_store(&cluster).await;
    let node_0 = cluster.urls()[0].clone();
    let mut on_node_0 = redis::Client::open(node_0.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Sessions until node 0 holds some and the other nodes some.
    let mut tickets = Vec::new();
    let mut lost = 0;
    while lost == 0 || lost == tickets.len() {
        assert!(tickets.len() < 100, "the slots are spread over the nodes");
        let user = format!("user-{}", tickets.len());
        let sid = format!("sid-{}", tickets.len());
        tickets.push(
            store
                .save(&session(ISS, &user, Some(&sid)), NOW)
                .await
                .unwrap(),
        );
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("test:session:*")
            .query_async(&mut on_node_0)
            .await
            .unwrap();
        lost = keys.len();
    }

    cluster.node(0).stop();
    let started = Instant::now();
    let (mut failed, mut served) = (0, 0);
    for ticket in &tickets {
        match store.load(ticket, NOW).await {
            Ok(Some(_)) => served += 1,
            Ok(None) => panic!("a node that is down is not a missing session"),
            Err(err) => {
                assert!(unavailable::<()>(&Err(err)));
                failed += 1;
            }
        }
    }
    assert_eq!((failed, served), (lost, tickets.len() - lost));
    assert!(
        started.elapsed() < TIMEOUT * (lost as u32 + 1),
        "each call is bounded by the timeout: {:?} for {lost} failures",
        started.elapsed()
    );
    let refused = connect_redis_cluster(&[node_0], TIMEOUT).await;
    assert!(unavailable(&refused), "connect: {:?}", refused.err());

    // Node 0 comes back empty, owning the same slots: the same store serves
    // every slot again without being rebuilt, node 0's sessions gone.
    cluster.node(0).restart();
    soon("the cluster connection reconnects to node 0", async || {
        let mut answered = 0;
        for ticket in &tickets {
            answered += usize::from(store.load(ticket, NOW).await.is_ok());
        }
        answered == tickets.len()
    })
    .await;
    let mut live = 0;
    for ticket in &tickets {
        live += usize::from(store.load(ticket, NOW).await.unwrap().is_some());
    }
    assert_eq!(live, tickets.len() - lost);
    for i in 0..10 {
        let ticket = store
            .save(&session(ISS, &format!("new-{i}"), Some("sid")), NOW)
            .await
            .expect("every slot is served again");
        assert!(store.load(&ticket, NOW).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn redis_cluster_urls_are_checked() {
    let empty = connect_redis_cluster(&[], TIMEOUT).await;
    assert!(
        matches!(empty, Err(StoreError::InvalidUrl(_))),
        "{:?}",
        empty.err()
    );
    let junk = connect_redis_cluster(&["http://127.0.0.1:1".to_owned()], TIMEOUT).await;
    assert!(
        matches!(junk, Err(StoreError::InvalidUrl(_))),
        "{:?}",
        junk.err()
    );
}
