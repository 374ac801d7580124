//! [`ShardedMap`]: a hash map split into 64 shards that grow one at a time. A single map of a
//! million accounts doubles in one step, holding the old and the new table at once (a third
//! more memory at the peak than at rest); shards spread that over 64 small steps. It holds the
//! account table's numbers (`table.rs`), which are rebuilt from the accounts when a snapshot is
//! read, so the map itself is never serialized.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

type Shard<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const SHARDS: usize = 64;

/// Picks the shard: a fixed hash, so that equal maps shard alike. Keys crafted to land in one
/// shard only make that shard large; each shard's own hasher is seeded per process.
fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    (foldhash::fast::FixedState::with_seed(0x5a4e_4144).hash_one(key) % SHARDS as u64) as usize
}

/// A hash map in 64 shards (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct ShardedMap<K, V> {
    shards: Vec<Shard<K, V>>,
}

/// Equal keys land in equal shards, so maps are equal exactly when their shards are.
impl<K: Hash + Eq, V: PartialEq> PartialEq for ShardedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.shards == other.shards
    }
}

impl<K: Hash + Eq, V: Eq> Eq for ShardedMap<K, V> {}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// An empty map with room for about `entries` (at most 2^26 reserved up front).
    pub(crate) fn with_capacity(entries: usize) -> Self {
        let share = entries.min(RESERVE_MAX) / SHARDS;
        let mut map = Self::default();
        for shard in &mut map.shards {
            shard.reserve(share + share / 8);
        }
        map
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V> {
        &self.shards[shard_of(key)]
    }

    /// The value for `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).get(key)
    }

    /// Whether `key` is present.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).contains_key(key)
    }

    /// Inserts, returning the value replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.shards[shard_of(&key)].insert(key, value)
    }

    /// Removes, returning the value.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[shard_of(key)].remove(key)
    }
}

/// At most this many entries are reserved up front, whatever a length claims.
const RESERVE_MAX: usize = 1 << 26;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_and_equals_one_built_otherwise() {
        let mut map = ShardedMap::default();
        for n in 0..1_000u32 {
            assert_eq!(map.insert(n.to_string(), n), None);
        }
        assert_eq!(map.get("417"), Some(&417));
        assert_eq!(map.insert("417".into(), 7), Some(417));
        assert_eq!(map.remove("417"), Some(7));
        assert!(!map.contains_key("417") && map.contains_key("418"));
        let mut copy = ShardedMap::with_capacity(1_000);
        for n in (0..1_000u32).filter(|n| *n != 417) {
            copy.insert(n.to_string(), n);
        }
        assert_eq!(copy, map);
        assert!(map.shards.iter().all(|shard| shard.len() > 3), "keys spread over the shards");
    }
}
