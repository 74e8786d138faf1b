//! A bounded cache of signed `x-amzn-oidc-data` tokens, so that a session's
//! requests reuse one ECDSA signature until shortly before it expires.

use std::sync::Arc;

use aws_lc_rs::digest;

use super::SigningError;
use crate::cache::Cache;

/// Tokens keyed by a fingerprint of (issuer, client, claims, exp), at most
/// `capacity` of them (see [`Cache`] for the eviction).
pub struct DataTokenCache {
    tokens: Cache<Entry>,
}

#[derive(Clone)]
struct Entry {
    token: Arc<str>,
    /// The token's `exp`: from then on it is never handed out.
    exp: u64,
}

impl DataTokenCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            tokens: Cache::new(capacity, 1024),
        }
    }

    /// The cached token for `key` until its `exp`; otherwise the result of
    /// `sign`, cached when it has not expired. Signing again before `exp`
    /// would only give another signature over the same claims and the same
    /// `exp`, so a token is reused for its whole life. `sign` runs outside
    /// any lock; two requests missing the same key at once may both sign,
    /// which costs time, not correctness.
    pub fn get_or_sign(
        &self,
        key: u128,
        exp: u64,
        now: u64,
        sign: impl FnOnce() -> Result<String, SigningError>,
    ) -> Result<Arc<str>, SigningError> {
        let cacheable = now < exp;
        if cacheable && let Some(entry) = self.tokens.get(key, |entry| now < entry.exp) {
            return Ok(entry.token);
        }
        let token: Arc<str> = sign()?.into();
        if cacheable {
            let entry = Entry {
                token: Arc::clone(&token),
                exp,
            };
            self.tokens.insert(key, entry, 1);
        }
        Ok(token)
    }

    /// Entries held, fresh or not (for metrics and tests).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// A 128-bit fingerprint of `parts` (SHA-256, truncated): the cache key for
/// one (issuer, client, claims, exp). Each part is length-prefixed, so
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub fn fingerprint(parts: &[&[u8]]) -> u128 {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let digest = context.finish();
    let mut first = [0u8; 16];
    first
        .iter_mut()
        .zip(digest.as_ref())
        .for_each(|(out, byte)| *out = *byte);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn ok(token: &str) -> Result<String, SigningError> {
        Ok(token.to_owned())
    }

    #[test]
    fn second_call_within_validity_does_not_sign() {
        let cache = DataTokenCache::new(16_384);
        let calls = Cell::new(0);
        let sign = || {
            calls.set(calls.get() + 1);
            ok("t1")
        };
        let key = fingerprint(&[b"iss", b"client", b"{}", b"1000"]);
        assert_eq!(&*cache.get_or_sign(key, 1000, 100, sign).unwrap(), "t1");
        let again = cache
            .get_or_sign(key, 1000, 969, || {
                calls.set(calls.get() + 1);
                ok("t2")
            })
            .unwrap();
        assert_eq!(&*again, "t1");
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_token_is_reused_until_its_exp_and_never_after() {
        let cache = DataTokenCache::new(16_384);
        cache.get_or_sign(7, 1000, 100, || ok("old")).unwrap();
        // The last seconds of its life: still the same token, no new signature.
        let token = cache
            .get_or_sign(7, 1000, 999, || panic!("signed again before exp"))
            .unwrap();
        assert_eq!(&*token, "old");
        // At `exp` it is over: signed afresh, and not cached, being born expired.
        assert_eq!(
            &*cache.get_or_sign(7, 1000, 1000, || ok("new")).unwrap(),
            "new"
        );
        assert_eq!(
            &*cache.get_or_sign(7, 1000, 1000, || ok("newer")).unwrap(),
            "newer"
        );
    }

    #[test]
    fn a_signing_error_is_returned_and_not_cached() {
        let cache = DataTokenCache::new(16);
        let err = cache
            .get_or_sign(1, 1000, 0, || Err(SigningError::ClaimsNotObject))
            .unwrap_err();
        assert!(matches!(err, SigningError::ClaimsNotObject));
        assert!(cache.is_empty());
        assert_eq!(&*cache.get_or_sign(1, 1000, 0, || ok("t")).unwrap(), "t");
    }

    #[test]
    fn capacity_holds_under_100k_distinct_keys() {
        let cache = DataTokenCache::new(16_384);
        for i in 0u64..100_000 {
            let key = fingerprint(&[&i.to_be_bytes()]);
            cache.get_or_sign(key, 10_000, 0, || ok("t")).unwrap();
            if i % 10_000 == 0 {
                assert!(cache.len() <= 16_384);
            }
        }
        let len = cache.len();
        assert!(len <= 16_384, "{len}");
        // The bound is not reached by throwing everything away.
        assert!(len >= 16_384 / 2, "{len}");
        // The most recent keys are still served from the cache.
        let recent = fingerprint(&[&99_999u64.to_be_bytes()]);
        let token = cache
            .get_or_sign(recent, 10_000, 0, || panic!("recent key was evicted"))
            .unwrap();
        assert_eq!(&*token, "t");
    }

    #[test]
    fn a_hit_in_the_older_generation_survives_the_next_rotation() {
        // One shard, two generations of two entries each.
        let cache = DataTokenCache::new(4);
        cache.get_or_sign(1, 1000, 0, || ok("one")).unwrap();
        cache.get_or_sign(2, 1000, 0, || ok("t")).unwrap();
        cache.get_or_sign(3, 1000, 0, || ok("t")).unwrap(); // rotates: 1 and 2 become old
        cache
            .get_or_sign(1, 1000, 0, || panic!("1 was dropped"))
            .unwrap(); // promoted
        cache.get_or_sign(4, 1000, 0, || ok("t")).unwrap(); // rotates again: 2 dropped
        assert!(cache.len() <= 4);
        let one = cache
            .get_or_sign(1, 1000, 0, || panic!("1 was dropped"))
            .unwrap();
        assert_eq!(&*one, "one");
    }

    #[test]
    fn zero_capacity_always_signs() {
        let cache = DataTokenCache::new(0);
        cache.get_or_sign(1, 1000, 0, || ok("a")).unwrap();
        assert_eq!(&*cache.get_or_sign(1, 1000, 0, || ok("b")).unwrap(), "b");
        assert!(cache.is_empty());
    }

    #[test]
    fn concurrent_callers_agree_and_stay_bounded() {
        let cache = DataTokenCache::new(1024);
        std::thread::scope(|scope| {
            for thread in 0u64..4 {
                let cache = &cache;
                scope.spawn(move || {
                    for i in 0u64..20_000 {
                        let id = i % 3_000;
                        let key = fingerprint(&[&id.to_be_bytes()]);
                        let token = cache
                            .get_or_sign(key, 10_000, thread, || Ok(format!("token-{id}")))
                            .unwrap();
                        assert_eq!(*token, format!("token-{id}"));
                    }
                });
            }
        });
        assert!(cache.len() <= 1024);
    }

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"a", b"b"]), fingerprint(&[b"a", b"b"]));
        assert_ne!(fingerprint(&[b"a"]), fingerprint(&[b"a", b""]));
    }
}
