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

    /// Adds `delta` to the counter under `key` (eight bytes, big-endian; absent is 0),
    /// atomically against every other writer, and returns the new count. Counters are
    /// made durable by the next [`KeyValue::flush`] like any write; limits built on them
    /// ([`SlidingWindow`]) do not need them to be.
    ///
    /// # Errors
    /// Storage errors.
    fn add(&self, space: &str, key: &[u8], delta: u64) -> Result<u64, Error>;

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

    fn add(&self, space: &str, key: &[u8], delta: u64) -> Result<u64, Error> {
        self.kv.add(&self.name(space), key, delta)
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

    fn add(&self, space: &str, key: &[u8], delta: u64) -> Result<u64, Error> {
        let added = self
            .tree(space)?
            .update_and_fetch(key, |old| {
                Some((counter_value(old).saturating_add(delta)).to_be_bytes().to_vec())
            })
            .map_err(Error::storage)?;
        Ok(counter_value(added.as_deref()))
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

/// A counter's value as [`KeyValue::add`] stores it; anything else reads as 0.
#[must_use]
pub fn counter_value(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes)
}

/// A limit of `limit` events per `window_ms` for each key (a vendor, a phone's keyed hash),
/// kept as counters in a [`KeyValue`] store: in the data folder, where a restart does not
/// reset it, or in the database, where every server behind a load balancer counts against
/// the same limit.
///
/// It is the sliding-window counter: one counter per fixed window, and the load at an
/// instant is the current window's count plus the previous window's, weighted by how much of
/// it still falls within `window_ms` of now. Two writes per counted event at most (the count,
/// and once per window the removal of an old one), one read to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Events allowed per window.
    pub limit: u64,
    /// The window, in ms (not 0).
    pub window_ms: u64,
}

/// How a window's counter key ends: `@`, the window's length and its number, each eight bytes
/// big-endian — so that [`SlidingWindow::sweep`] can tell a stale counter of any limit.
const WINDOW_SUFFIX: usize = 17;

impl SlidingWindow {
    fn key(&self, key: &[u8], window: u64) -> Vec<u8> {
        let mut full = Vec::with_capacity(key.len() + WINDOW_SUFFIX);
        full.extend_from_slice(key);
        full.push(b'@');
        full.extend_from_slice(&self.window_ms.to_be_bytes());
        full.extend_from_slice(&window.to_be_bytes());
        full
    }

    /// Forgets what was counted for `key` (a right PIN clears the wrong ones before it).
    ///
    /// # Errors
    /// Storage errors.
    pub fn clear(
        &self,
        kv: &dyn KeyValue,
        space: &str,
        key: &[u8],
        now_ms: u64,
    ) -> Result<(), Error> {
        let window = now_ms / self.window_ms;
        kv.remove(space, &self.key(key, window))?;
        if let Some(earlier) = window.checked_sub(1) {
            kv.remove(space, &self.key(key, earlier))?;
        }
        Ok(())
    }

    /// Removes every counter in `space`, of any window length, that no longer counts at
    /// `now_ms` (older than the previous window): those of keys not seen since. Returns how
    /// many it removed.
    ///
    /// # Errors
    /// Storage errors.
    pub fn sweep(kv: &dyn KeyValue, space: &str, now_ms: u64) -> Result<usize, Error> {
        let mut removed = 0;
        for (key, _) in kv.entries(space)? {
            if Self::is_stale(&key, now_ms) {
                kv.remove(space, &key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether `key` is a window's counter (of any limit) that no longer counts at `now_ms`.
    #[must_use]
    pub fn is_stale(key: &[u8], now_ms: u64) -> bool {
        let Some(suffix) = key.len().checked_sub(WINDOW_SUFFIX).map(|at| &key[at..]) else {
            return false;
        };
        let number = |range: std::ops::Range<usize>| {
            <[u8; 8]>::try_from(&suffix[range]).map_or(0, u64::from_be_bytes)
        };
        let (window_ms, window) = (number(1..9), number(9..17));
        suffix[0] == b'@' && window_ms > 0 && window.saturating_add(1) < now_ms / window_ms
    }

    /// The events counted for `key` within the window ending at `now_ms` (the estimate).
    ///
    /// # Errors
    /// Storage errors.
    pub fn load(
        &self,
        kv: &dyn KeyValue,
        space: &str,
        key: &[u8],
        now_ms: u64,
    ) -> Result<u64, Error> {
        let (current, previous) = self.counts(kv, space, key, now_ms)?;
        Ok(current.saturating_add(self.weighted(previous, now_ms)))
    }

    /// What the window holding `now_ms` and the one before it counted for `key`.
    fn counts(
        &self,
        kv: &dyn KeyValue,
        space: &str,
        key: &[u8],
        now_ms: u64,
    ) -> Result<(u64, u64), Error> {
        assert!(self.window_ms > 0, "a window has a length");
        let window = now_ms / self.window_ms;
        let current = counter_value(kv.get(space, &self.key(key, window))?.as_deref());
        Ok((current, self.previous(kv, space, key, window)?))
    }

    /// What the window before `window` counted for `key`.
    fn previous(
        &self,
        kv: &dyn KeyValue,
        space: &str,
        key: &[u8],
        window: u64,
    ) -> Result<u64, Error> {
        match window.checked_sub(1) {
            Some(earlier) => Ok(counter_value(kv.get(space, &self.key(key, earlier))?.as_deref())),
            None => Ok(0),
        }
    }

    /// The part of the previous window's `count` still within the window ending at `now_ms`
    /// (rounded up: a guess half out of the window still counts).
    fn weighted(&self, count: u64, now_ms: u64) -> u64 {
        let remaining = self.window_ms - now_ms % self.window_ms;
        let weighted = u128::from(count) * u128::from(remaining);
        u64::try_from(weighted.div_ceil(u128::from(self.window_ms))).unwrap_or(u64::MAX)
    }

    /// The first instant from `start` (a window's start) at which the previous window's `count`,
    /// weighted, is under `allowed` (> 0): `weighted < allowed` holds exactly when
    /// `count * remaining <= (allowed - 1) * window_ms`.
    fn slid_out(&self, count: u64, allowed: u64, start: u64) -> u64 {
        if count < allowed {
            return start;
        }
        let within = u128::from(allowed - 1) * u128::from(self.window_ms) / u128::from(count);
        start + self.window_ms - u64::try_from(within).unwrap_or(self.window_ms)
    }

    /// `None` when `key` may act at `now_ms`; else how many ms until it may.
    ///
    /// # Errors
    /// Storage errors.
    pub fn check(
        &self,
        kv: &dyn KeyValue,
        space: &str,
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<u64>, Error> {
        let (current, previous) = self.counts(kv, space, key, now_ms)?;
        if current.saturating_add(self.weighted(previous, now_ms)) < self.limit {
            return Ok(None);
        }
        // The first instant, within the next two windows, at which the load is under the
        // limit again (the load only falls while nothing is counted).
        let window = now_ms / self.window_ms;
        let this_start = window * self.window_ms;
        let next_start = this_start + self.window_ms;
        let wait = if current < self.limit {
            // Within this window, once enough of the previous one has slid out.
            self.slid_out(previous, self.limit - current, this_start).clamp(now_ms, next_start)
        } else {
            // In the next window, once enough of this one has slid out.
            self.slid_out(current, self.limit, next_start)
        };
        Ok(Some(wait.saturating_sub(now_ms).max(1)))
    }

    /// Counts one event for `key` at `now_ms`; returns the load with it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn count(
        &self,
        kv: &dyn KeyValue,
        space: &str,
        key: &[u8],
        now_ms: u64,
    ) -> Result<u64, Error> {
        assert!(self.window_ms > 0, "a window has a length");
        let window = now_ms / self.window_ms;
        let current = kv.add(space, &self.key(key, window), 1)?;
        if current == 1 && window >= 2 {
            // The first event of a window: the one before the previous is of no more use.
            kv.remove(space, &self.key(key, window - 2))?;
        }
        // The load with it: the count just returned, and the previous window's, weighted.
        let previous = self.previous(kv, space, key, window)?;
        Ok(current.saturating_add(self.weighted(previous, now_ms)))
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

    fn temporary() -> (tempfile::TempDir, SledKv) {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(&dir.path().join("kv.sled"), 1 << 20).unwrap();
        (dir, kv)
    }

    #[test]
    fn counters_add_atomically_from_many_threads() {
        let (_dir, kv) = temporary();
        let kv = Arc::new(kv);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let kv = Arc::clone(&kv);
                std::thread::spawn(move || (0..250).map(|_| kv.add("c", b"k", 1).unwrap()).max())
            })
            .collect();
        let highest = threads.into_iter().filter_map(|t| t.join().unwrap()).max();
        assert_eq!(highest, Some(1_000));
        assert_eq!(counter_value(kv.get("c", b"k").unwrap().as_deref()), 1_000);
        assert_eq!(kv.add("c", b"k", 0).unwrap(), 1_000);
        assert_eq!(kv.add("c", b"other", 7).unwrap(), 7);
    }

    #[test]
    fn a_window_refuses_at_its_limit_and_says_until_when() {
        let (_dir, kv) = temporary();
        let window = SlidingWindow { limit: 5, window_ms: 1_000 };
        let start = 10_000; // a window's start
        for n in 0..5 {
            assert_eq!(window.check(&kv, "w", b"v", start + n).unwrap(), None);
            assert_eq!(window.count(&kv, "w", b"v", start + n).unwrap(), n + 1);
        }
        // Refused for the rest of this window and until enough of it slides out of the next.
        let wait = window.check(&kv, "w", b"v", start + 10).unwrap().unwrap();
        assert!(wait > 990, "{wait}");
        assert!(window.check(&kv, "w", b"v", start + 10 + wait - 1).unwrap().is_some());
        assert_eq!(window.check(&kv, "w", b"v", start + 10 + wait).unwrap(), None);
        // Another key is not limited; two windows on, the old counter is gone.
        assert_eq!(window.check(&kv, "w", b"other", start + 10).unwrap(), None);
        window.count(&kv, "w", b"v", start + 2_000).unwrap();
        assert_eq!(kv.get("w", &window.key(b"v", 10)).unwrap(), None);
        // A right PIN clears; a sweep forgets keys not seen for two windows.
        window.clear(&kv, "w", b"v", start + 2_000).unwrap();
        assert_eq!(window.load(&kv, "w", b"v", start + 2_000).unwrap(), 0);
        window.count(&kv, "w", b"gone", start).unwrap();
        let longer = SlidingWindow { limit: 1, window_ms: 60_000 };
        longer.count(&kv, "w", b"kept", start).unwrap();
        assert_eq!(SlidingWindow::sweep(&kv, "w", start + 1_999).unwrap(), 0);
        assert_eq!(SlidingWindow::sweep(&kv, "w", start + 2_000).unwrap(), 1);
        assert_eq!(window.load(&kv, "w", b"gone", start + 1_000).unwrap(), 0);
        assert_eq!(longer.load(&kv, "w", b"kept", start + 2_000).unwrap(), 1);
    }

    proptest::proptest! {
        /// Whatever the timing, admitting an event only when the window allows: no fixed
        /// window admits more than the limit, no span of `window_ms` more than twice it, and
        /// the wait a refusal gives is exact.
        #[test]
        fn a_sliding_window_holds_its_bounds(
            limit in 1u64..8,
            window_ms in 1u64..5_000,
            gaps in proptest::collection::vec(0u64..3_000, 1..60),
        ) {
            let (_dir, kv) = temporary();
            let window = SlidingWindow { limit, window_ms };
            let mut now = 1_000_000;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                match window.check(&kv, "w", b"k", now).unwrap() {
                    None => {
                        window.count(&kv, "w", b"k", now).unwrap();
                        admitted.push(now);
                    }
                    Some(wait) => {
                        proptest::prop_assert!(wait >= 1);
                        proptest::prop_assert!(window.check(&kv, "w", b"k", now + wait).unwrap().is_none());
                        if wait > 1 {
                            proptest::prop_assert!(window.check(&kv, "w", b"k", now + wait - 1).unwrap().is_some());
                        }
                    }
                }
            }
            for at in &admitted {
                let same_window = admitted.iter().filter(|t| *t / window_ms == at / window_ms).count();
                proptest::prop_assert!(same_window as u64 <= limit);
                let within = admitted.iter().filter(|t| **t >= *at && **t < at + window_ms).count();
                proptest::prop_assert!(within as u64 <= 2 * limit);
            }
        }
    }
}
