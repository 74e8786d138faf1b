//! A bounded, sharded map for the hot path's caches (signed data tokens,
//! opened sessions): O(1) per call, close to LRU, never over its budget.

use std::collections::HashMap;
use std::mem;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Most shards used; with 2 to 16 cores this keeps lock contention negligible.
const MAX_SHARDS: usize = 16;

/// `u128` keys to values, bounded by a budget of cost units (entries or
/// bytes: the caller says what one insert costs).
///
/// Each shard keeps two generations: inserts go to `current`; when it has
/// spent its share of the budget, it becomes `previous` and the old
/// `previous` is dropped. A hit in `previous` moves the entry back to
/// `current`. Keys must already be spread evenly (a digest, a MAC tag): the
/// low bits pick the shard.
pub struct Cache<V> {
    shards: Box<[Mutex<Generations<V>>]>,
}

impl<V: Clone> Cache<V> {
    /// A cache that never holds more than `budget` cost units, over
    /// `budget / shard_unit` shards (at least one, at most 16). A budget of
    /// 0 disables it.
    pub fn new(budget: usize, shard_unit: usize) -> Self {
        let shard_count = (budget / shard_unit.max(1)).clamp(1, MAX_SHARDS);
        let generation_budget = budget / (2 * shard_count);
        let shards = (0..shard_count)
            .map(|_| Mutex::new(Generations::new(generation_budget)))
            .collect();
        Self { shards }
    }

    /// The value for `key` if `usable` accepts it.
    pub fn get(&self, key: u128, usable: impl FnOnce(&V) -> bool) -> Option<V> {
        self.lock(key).get(key, usable)
    }

    /// Stores `value`; one that costs more than a generation's budget is not kept.
    pub fn insert(&self, key: u128, value: V, cost: usize) {
        self.lock(key).insert(key, value, cost);
    }

    /// Drops the entry for `key`, if any.
    pub fn remove(&self, key: u128) {
        let mut shard = self.lock(key);
        if let Some(old) = shard.current.remove(&key) {
            shard.current_cost -= old.cost;
        }
        shard.previous.remove(&key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.current.clear();
            shard.previous.clear();
            shard.current_cost = 0;
        }
    }

    /// Entries held, usable or not (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, key: u128) -> MutexGuard<'_, Generations<V>> {
        lock(&self.shards[(key as u64 as usize) % self.shards.len()])
    }
}

fn lock<T>(shard: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while a shard is held, and a shard is consistent
    // between statements anyway, so a poisoned lock is still usable.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// foldhash, not the standard library's SipHash: ~170 instructions per lookup
/// less, on every authenticated request. Keys are digests and MAC tags, and
/// foldhash's per-map seed still keeps clients from picking collisions.
type Generation<V> = HashMap<u128, Costed<V>, foldhash::fast::RandomState>;

struct Generations<V> {
    /// Where inserts and promoted hits go.
    current: Generation<V>,
    /// The generation before; dropped whole when `current` fills up.
    previous: Generation<V>,
    /// The sum of `current`'s costs, never above `generation_budget`.
    current_cost: usize,
    /// Half a shard's share of the cache's budget; 0 keeps nothing.
    generation_budget: usize,
}

struct Costed<V> {
    value: V,
    /// What the caller said this entry costs (bytes, or 1 for an entry).
    cost: usize,
}

impl<V: Clone> Generations<V> {
    fn new(generation_budget: usize) -> Self {
        Self {
            current: Generation::default(),
            previous: Generation::default(),
            current_cost: 0,
            generation_budget,
        }
    }

    fn get(&mut self, key: u128, usable: impl FnOnce(&V) -> bool) -> Option<V> {
        if let Some(entry) = self.current.get(&key) {
            return usable(&entry.value).then(|| entry.value.clone());
        }
        let entry = self.previous.remove(&key)?;
        if !usable(&entry.value) {
            return None;
        }
        let value = entry.value.clone();
        self.insert(key, entry.value, entry.cost);
        Some(value)
    }

    fn insert(&mut self, key: u128, value: V, cost: usize) {
        if cost > self.generation_budget {
            return;
        }
        if let Some(old) = self.current.remove(&key) {
            self.current_cost -= old.cost;
        }
        if self.current_cost + cost > self.generation_budget {
            self.previous = mem::take(&mut self.current);
            self.current_cost = 0;
            // A stale copy in `previous` would still count against the bound.
            self.previous.remove(&key);
        }
        self.current_cost += cost;
        self.current.insert(key, Costed { value, cost });
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_and_cleared_entries_are_gone() {
        let cache: Cache<u32> = Cache::new(1_000, 100);
        for key in 0u128..20 {
            cache.insert(key, key as u32, 1);
        }
        cache.remove(3);
        assert_eq!(cache.get(3, |_| true), None);
        assert_eq!(cache.get(4, |_| true), Some(4));
        cache.clear();
        assert!(cache.is_empty());
        cache.insert(5, 5, 1);
        assert_eq!(cache.get(5, |_| true), Some(5));
    }

    #[test]
    fn a_byte_budget_bounds_the_sum_of_costs() {
        let cache: Cache<u32> = Cache::new(10_000, 10_000);
        for key in 0u128..1_000 {
            cache.insert(key, 0, 300);
        }
        // Two generations of at most 5,000 bytes: 16 entries of 300 each.
        assert!(cache.len() <= 2 * (5_000 / 300), "{}", cache.len());
        assert_eq!(cache.get(999, |_| true), Some(0));
        assert_eq!(cache.get(0, |_| true), None);
    }

    #[test]
    fn an_entry_larger_than_a_generation_is_not_kept() {
        let cache: Cache<u32> = Cache::new(1_000, 1_000);
        cache.insert(1, 7, 501);
        assert!(cache.is_empty());
        cache.insert(1, 7, 500);
        assert_eq!(cache.get(1, |_| true), Some(7));
    }

    #[test]
    fn replacing_a_key_does_not_spend_the_budget_twice() {
        let cache: Cache<u32> = Cache::new(4, 4);
        for value in 0..100 {
            cache.insert(1, value, 1);
        }
        cache.insert(2, 0, 1);
        assert_eq!(cache.get(1, |_| true), Some(99));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn an_unusable_entry_is_not_returned() {
        let cache: Cache<u32> = Cache::new(4, 4);
        cache.insert(1, 5, 1);
        assert_eq!(cache.get(1, |v| *v > 5), None);
        assert_eq!(cache.get(1, |v| *v == 5), Some(5));
    }
}
