//! [`ShardedMap`]: a hash map split into 64 shards that grow one at a time. A single map of a
//! million accounts doubles in one step, holding the old and the new table at once (a third
//! more memory at the peak than at rest); shards spread that over 64 small steps. Serialized as
//! one ordinary map; decoding reserves each shard's share of the length up front.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

type Shard<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const SHARDS: usize = 64;

/// Picks the shard: a fixed hash, so that equal maps shard alike. Keys crafted to land in one
/// shard only make that shard large; each shard's own hasher is seeded per process.
fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    (foldhash::fast::FixedState::with_seed(0x5a4e_4144).hash_one(key) % SHARDS as u64) as usize
}

/// A hash map in 64 shards (see the module docs).
#[derive(Clone, Debug)]
pub struct ShardedMap<K, V> {
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
    pub fn with_capacity(entries: usize) -> Self {
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
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).get(key)
    }

    /// The stored key and value for `key`.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).get_key_value(key)
    }

    /// The value for `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[shard_of(key)].get_mut(key)
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).contains_key(key)
    }

    /// Inserts, returning the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.shards[shard_of(&key)].insert(key, value)
    }

    /// Removes, returning the value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[shard_of(key)].remove(key)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|shard| shard.values())
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(Shard::is_empty)
    }
}

impl<K: Serialize + Hash + Eq, V: Serialize> Serialize for ShardedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Length first: compact formats need it.
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// At most this many entries are reserved up front, whatever a length claims.
const RESERVE_MAX: usize = 1 << 26;

struct Entries<K, V>(PhantomData<(K, V)>);

impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
    type Value = ShardedMap<K, V>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = ShardedMap::with_capacity(access.size_hint().unwrap_or(0));
        while let Some((key, value)) = access.next_entry()? {
            map.insert(key, value);
        }
        Ok(map)
    }
}

impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Deserialize<'de>
    for ShardedMap<K, V>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_and_round_trips() {
        let mut map = ShardedMap::default();
        for n in 0..1_000u32 {
            assert_eq!(map.insert(n.to_string(), n), None);
        }
        assert_eq!(map.len(), 1_000);
        assert_eq!(map.get("417"), Some(&417));
        *map.get_mut("417").unwrap() = 7;
        assert_eq!(map.remove("417"), Some(7));
        assert!(!map.contains_key("417") && map.len() == 999);
        let bytes = serde_json::to_vec(&map).unwrap();
        let back: ShardedMap<String, u32> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, map);
        assert!(map.shards.iter().all(|shard| shard.len() > 3), "keys spread over the shards");
    }
}
