//! Sessions already opened, by their sealed text: a session's requests after
//! the first skip base64, AES-GCM, JSON and building the identity headers,
//! and go straight to the headers built the first time.
//!
//! A hit needs the whole sealed text to be byte-for-byte the one opened
//! before, so the cache can never hand one session's identity to another
//! cookie; the key (the text's last bytes, which encode the AES-GCM tag)
//! only picks the slot. Entries end when the identity's `x-amzn-oidc-data`
//! expires, which is when the session or its access token ends, so expiry,
//! refresh and the policies work as if nothing were cached.

use std::sync::Arc;

use super::session::SealedShards;
use crate::cache::Cache;

/// Bytes of sealed text and headers kept per authenticate action.
pub const OPENED_SESSIONS_BYTES: usize = 8 * 1024 * 1024;

/// Opened sessions, by their sealed text, each to what the caller built
/// from it (`V`: the authenticated principal and its headers).
pub struct OpenedSessions<V> {
    entries: Cache<Arc<Opened<V>>>,
}

struct Opened<V> {
    /// The shards' text, concatenated.
    sealed: Box<[u8]>,
    /// Where each shard ends in `sealed`, so `{base}-0=ab; {base}-1=c` is not `a; bc`.
    ends: Box<[usize]>,
    /// What those shards opened to, built once.
    value: V,
    /// Unix seconds from which the headers must be built afresh.
    fresh_until: u64,
}

impl<V> Opened<V> {
    fn is(&self, shards: &SealedShards<'_>) -> bool {
        let mut start = 0;
        let mut ends = self.ends.iter();
        shards.iter().all(|shard| {
            let Some(&end) = ends.next() else {
                return false;
            };
            let same = self.sealed[start..end] == *shard;
            start = end;
            same
        }) && ends.next().is_none()
    }
}

impl<V: Clone> OpenedSessions<V> {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            entries: Cache::new(budget_bytes, 512 * 1024),
        }
    }

    /// What was built for exactly these shards, while still fresh at `now`.
    pub fn get(&self, shards: &SealedShards<'_>, now: u64) -> Option<V> {
        self.entries
            .get(shards.tag_text(), |opened| {
                now < opened.fresh_until && opened.is(shards)
            })
            .map(|opened| opened.value.clone())
    }

    /// Forgets what `shards` opened to (the session was signed out).
    pub fn forget(&self, shards: &SealedShards<'_>) {
        self.entries.remove(shards.tag_text());
    }

    /// Forgets every session (sessions were revoked by `sid` or `sub`, which
    /// the cache cannot look up).
    pub fn forget_all(&self) {
        self.entries.clear();
    }

    /// Remembers `value`, built from what `shards` opened to, until
    /// `fresh_until`. `value_bytes`: roughly what it holds, for the budget.
    pub fn insert(
        &self,
        shards: &SealedShards<'_>,
        value: V,
        value_bytes: usize,
        fresh_until: u64,
    ) {
        let mut sealed = Vec::with_capacity(shards.text_len());
        let mut ends = Vec::with_capacity(4);
        for shard in shards.iter() {
            sealed.extend_from_slice(shard);
            ends.push(sealed.len());
        }
        let cost = sealed.len() + value_bytes;
        let opened = Opened {
            sealed: sealed.into(),
            ends: ends.into(),
            value,
            fresh_until,
        };
        self.entries
            .insert(shards.tag_text(), Arc::new(opened), cost);
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue, header::COOKIE};

    use super::*;
    use crate::auth::session::RequestCookies;

    const BASE: &str = "S";

    fn cookies(header: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(COOKIE, HeaderValue::from_str(header).unwrap());
        map
    }

    type IdentityHeaders = Arc<[(HeaderName, HeaderValue); 3]>;

    fn headers(sub: &str) -> IdentityHeaders {
        let name = HeaderName::from_static("x-amzn-oidc-identity");
        let value = HeaderValue::from_str(sub).unwrap();
        Arc::new([
            (name.clone(), value.clone()),
            (name.clone(), value.clone()),
            (name, value),
        ])
    }

    fn sub_of(found: Option<IdentityHeaders>) -> Option<String> {
        found.map(|h| h[0].1.to_str().unwrap().to_owned())
    }

    /// Sealed-looking text: long enough for `SealedShards::find`.
    fn text(fill: char, tail: &str) -> String {
        format!("{}{tail}", fill.to_string().repeat(80))
    }

    /// Runs `f` on the shards of a request whose `Cookie` header is `header`.
    fn with_shards<R>(header: &str, f: impl FnOnce(&SealedShards<'_>) -> R) -> R {
        let map = cookies(header);
        let jar = RequestCookies::parse(&map);
        f(&SealedShards::find(BASE, &jar).expect("shards"))
    }

    #[test]
    fn the_same_text_hits_until_fresh_until() {
        let opened = OpenedSessions::new(1 << 20);
        with_shards(
            &format!("S-0={}", text('a', "TAILTAILTAILTAIL")),
            |shards| {
                assert_eq!(opened.get(shards, 10), None);
                opened.insert(shards, headers("alice"), 100, 100);
                assert_eq!(sub_of(opened.get(shards, 99)).as_deref(), Some("alice"));
                assert_eq!(opened.get(shards, 100), None);
            },
        );
    }

    #[test]
    fn another_text_with_the_same_tail_never_gets_the_identity() {
        let opened = OpenedSessions::new(1 << 20);
        let alice_tag = with_shards(&format!("S-0={}", text('a', "TAILTAILTAILTAIL")), |alice| {
            opened.insert(alice, headers("alice"), 100, 100);
            alice.tag_text()
        });
        with_shards(
            &format!("S-0={}", text('b', "TAILTAILTAILTAIL")),
            |forged| {
                assert_eq!(forged.tag_text(), alice_tag);
                assert_eq!(opened.get(forged, 10), None);
            },
        );
    }

    #[test]
    fn the_same_text_split_differently_is_another_session() {
        let opened = OpenedSessions::new(1 << 20);
        let whole = text('a', "TAILTAILTAILTAIL");
        let (first, rest) = whole.split_at(40);
        with_shards(&format!("S-0={first}; S-1={rest}"), |two| {
            opened.insert(two, headers("alice"), 100, 100);
            assert!(opened.get(two, 10).is_some());
        });
        let (first, rest) = whole.split_at(44);
        with_shards(&format!("S-0={first}; S-1={rest}"), |moved| {
            assert_eq!(opened.get(moved, 10), None);
        });
        with_shards(&format!("S-0={whole}"), |one| {
            assert_eq!(opened.get(one, 10), None);
        });
    }
}
