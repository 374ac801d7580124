//! Serde for large hash maps: decoding reserves the whole map at once from the format's length
//! (serde's own caps its reservation as a guard against hostile input, so a million-entry map
//! would be rehashed a dozen times while a snapshot loads). Our snapshots are checksummed
//! files we wrote ourselves.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most this many entries are reserved up front, whatever a length claims.
const RESERVE_MAX: usize = 1 << 26;

/// Serializes as an ordinary map.
///
/// # Errors
/// The serializer's.
pub fn serialize<K, V, H, S>(map: &HashMap<K, V, H>, serializer: S) -> Result<S::Ok, S::Error>
where
    K: Serialize,
    V: Serialize,
    S: Serializer,
{
    serializer.collect_map(map)
}

struct Sized<K, V, H>(PhantomData<(K, V, H)>);

impl<'de, K, V, H> Visitor<'de> for Sized<K, V, H>
where
    K: Deserialize<'de> + Eq + Hash,
    V: Deserialize<'de>,
    H: BuildHasher + Default,
{
    type Value = HashMap<K, V, H>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let reserve = access.size_hint().unwrap_or(0).min(RESERVE_MAX);
        let mut map = HashMap::with_capacity_and_hasher(reserve, H::default());
        while let Some((key, value)) = access.next_entry()? {
            map.insert(key, value);
        }
        Ok(map)
    }
}

/// Deserializes a map, reserving its full length first.
///
/// # Errors
/// The deserializer's.
pub fn deserialize<'de, K, V, H, D>(deserializer: D) -> Result<HashMap<K, V, H>, D::Error>
where
    K: Deserialize<'de> + Eq + Hash,
    V: Deserialize<'de>,
    H: BuildHasher + Default,
    D: Deserializer<'de>,
{
    deserializer.deserialize_map(Sized(PhantomData))
}
