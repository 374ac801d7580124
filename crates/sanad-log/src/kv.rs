//! Small key-value stores kept beside a log, in named key spaces: the registry of personal data
//! (apart from the log on purpose), the bindings' API tokens and answers by idempotency key.
//! [`SledKv`] keeps them embedded in the data folder; `sanad-postgres`'s `PgKv` keeps them in the
//! database, where every process on it shares them. Users write, then [`KeyValue::flush`]
//! once for a group of writes: what was written before a flush returned is durable.

use std::path::Path;
use std::sync::Arc;

use crate::Error;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A key-value store in named spaces.
pub trait KeyValue: Send + Sync {
    /// Whether other processes share the store (a database): then what one writes, the others
    /// read.
    fn is_shared(&self) -> bool {
        false
    }

    /// The value under `key` in `space`.
    ///
    /// # Errors
    /// Storage errors.
    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Sets `key` in `space` to `value`.
    ///
    /// # Errors
    /// Storage errors.
    fn insert(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), Error>;

    /// Removes `key` from `space`; returns what it held.
    ///
    /// # Errors
    /// Storage errors.
    fn remove(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Sets `key` to `value` unless it holds a value already, atomically against every other
    /// writer: `None` when claimed, else what it holds (and nothing is written).
    ///
    /// # Errors
    /// Storage errors.
    fn claim(&self, space: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Every key and value in `space`, in key order.
    ///
    /// # Errors
    /// Storage errors.
    fn entries(&self, space: &str) -> Result<Vec<Pair>, Error>;

    /// Makes every write before it durable.
    ///
    /// # Errors
    /// Storage errors.
    fn flush(&self) -> Result<(), Error>;
}

/// A store's key spaces under a name prefix (`registry.`, `http.`), so that several users
/// share one store — the database's table — without meeting; with an empty prefix, the spaces
/// as named (each user's own sled database in the folder).
#[derive(Clone)]
pub struct Prefixed {
    kv: Arc<dyn KeyValue>,
    prefix: &'static str,
}

impl Prefixed {
    /// `kv`'s spaces, each named `prefix` and the space's name.
    pub fn new(kv: Arc<dyn KeyValue>, prefix: &'static str) -> Self {
        Self { kv, prefix }
    }

    fn name(&self, space: &str) -> String {
        format!("{}{space}", self.prefix)
    }
}

impl KeyValue for Prefixed {
    fn is_shared(&self) -> bool {
        self.kv.is_shared()
    }

    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.kv.get(&self.name(space), key)
    }

    fn insert(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.kv.insert(&self.name(space), key, value)
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.kv.remove(&self.name(space), key)
    }

    fn claim(&self, space: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.kv.claim(&self.name(space), key, value)
    }

    fn entries(&self, space: &str) -> Result<Vec<Pair>, Error> {
        self.kv.entries(&self.name(space))
    }

    fn flush(&self) -> Result<(), Error> {
        self.kv.flush()
    }
}

/// Copies every key of `space` in `from` into space `into` of `to`, then flushes `to`; returns
/// how many keys were copied (moving a folder's stores into a database).
///
/// # Errors
/// Storage errors of either side.
pub fn copy_space(
    from: &dyn KeyValue,
    space: &str,
    to: &dyn KeyValue,
    into: &str,
) -> Result<u64, Error> {
    let entries = from.entries(space)?;
    for (key, value) in &entries {
        to.insert(into, key, value)?;
    }
    to.flush()?;
    Ok(entries.len() as u64)
}

/// The embedded store: a sled database, a tree per space.
pub struct SledKv {
    db: sled::Db,
}

impl std::fmt::Debug for SledKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledKv")
    }
}

impl SledKv {
    /// Opens (or creates) the database at `path`, keeping up to `cache_bytes` in memory.
    ///
    /// # Errors
    /// [`Error::InUse`] when another process holds it; storage errors.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, Error> {
        let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
        Ok(Self { db: crate::open_sled(&config, path)? })
    }

    fn tree(&self, space: &str) -> Result<sled::Tree, Error> {
        self.db.open_tree(space).map_err(Error::storage)
    }
}

impl KeyValue for SledKv {
    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.tree(space)?.get(key).map_err(Error::storage)?.map(|v| v.to_vec()))
    }

    fn insert(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.tree(space)?.insert(key, value).map_err(Error::storage)?;
        Ok(())
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.tree(space)?.remove(key).map_err(Error::storage)?.map(|v| v.to_vec()))
    }

    fn claim(&self, space: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let swapped = self
            .tree(space)?
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(Error::storage)?;
        Ok(swapped.err().map(|conflict| conflict.current.map(|v| v.to_vec()).unwrap_or_default()))
    }

    fn entries(&self, space: &str) -> Result<Vec<Pair>, Error> {
        self.tree(space)?
            .iter()
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Error::storage))
            .collect()
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush().map_err(Error::storage)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_are_apart_and_claims_are_first_come() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(&dir.path().join("kv.sled"), 1 << 20).unwrap();
        kv.insert("a", b"k", b"1").unwrap();
        assert_eq!(kv.get("b", b"k").unwrap(), None);
        assert_eq!(kv.claim("a", b"k", b"2").unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.claim("b", b"k", b"2").unwrap(), None);
        assert_eq!(kv.get("b", b"k").unwrap(), Some(b"2".to_vec()));
        kv.insert("a", b"j", b"0").unwrap();
        let keys: Vec<_> = kv.entries("a").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"j".to_vec(), b"k".to_vec()]);
        assert_eq!(kv.remove("a", b"k").unwrap(), Some(b"1".to_vec()));
        kv.flush().unwrap();
        let other = SledKv::open(&dir.path().join("other.sled"), 1 << 20).unwrap();
        assert_eq!(copy_space(&kv, "a", &other, "x.a").unwrap(), 1);
        assert_eq!(other.get("x.a", b"j").unwrap(), Some(b"0".to_vec()));
        drop(kv);
        let kv = SledKv::open(&dir.path().join("kv.sled"), 1 << 20).unwrap();
        assert_eq!(kv.entries("a").unwrap(), vec![(b"j".to_vec(), b"0".to_vec())]);
    }
}
