//! Fault injection at the storage boundary, for tests: [`FaultyBackend`] wraps a real
//! [`Backend`] (the log) and [`FaultyKv`] a real [`KeyValue`] store (the registry, the
//! bindings' stores), and each fails its writes or reads on command, as a full disk, a failing
//! controller or a database that went away would. What they show: a failure reaches the
//! caller as a clear error, nothing acknowledged is lost, and the log refuses writes loudly
//! until it is reopened — it never goes on as if the write had happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::Error;
use crate::backend::{Backend, Commit, EntryVisitor};
use crate::kv::{KeyValue, Pair};

/// What a faulty store is told to fail, and what it failed.
#[derive(Debug)]
struct Switches {
    fail_writes: AtomicBool,
    fail_reads: AtomicBool,
    /// Writes let through before the next one fails (`u64::MAX`: no limit).
    writes_left: AtomicU64,
    failed: AtomicU64,
}

impl Switches {
    fn new() -> Self {
        Self {
            fail_writes: AtomicBool::new(false),
            fail_reads: AtomicBool::new(false),
            writes_left: AtomicU64::new(u64::MAX),
            failed: AtomicU64::new(0),
        }
    }

    fn read(&self, what: &str) -> Result<(), Error> {
        if self.fail_reads.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(injected(what));
        }
        Ok(())
    }

    fn write(&self, what: &str) -> Result<(), Error> {
        let budget_spent = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                u64::MAX => Some(u64::MAX),
                0 => None,
                left => Some(left - 1),
            })
            .is_err();
        if budget_spent || self.fail_writes.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(injected(what));
        }
        Ok(())
    }
}

/// The error an injected fault gives: what the operating system says of a full disk.
fn injected(what: &str) -> Error {
    Error::storage(std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!("injected fault: {what}"),
    ))
}

/// A backend that fails on command (see the module docs).
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    switches: Switches,
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend").field("failed", &self.failures()).finish_non_exhaustive()
    }
}

impl FaultyBackend {
    /// Wraps `inner`, failing nothing yet.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner, switches: Switches::new() }
    }

    /// Fails every commit (writes, flushes) from now on, or stops failing them.
    pub fn fail_commits(&self, fail: bool) {
        self.switches.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Lets `count` more commits through, then fails the rest.
    pub fn fail_commits_after(&self, count: u64) {
        self.switches.writes_left.store(count, Ordering::SeqCst);
    }

    /// Fails every read (entries, tiles, checkpoint, sizes) from now on, or stops failing them.
    pub fn fail_reads(&self, fail: bool) {
        self.switches.fail_reads.store(fail, Ordering::SeqCst);
    }

    /// How many operations failed by injection so far.
    pub fn failures(&self) -> u64 {
        self.switches.failed.load(Ordering::SeqCst)
    }

    fn read(&self, what: &str) -> Result<(), Error> {
        self.switches.read(what)
    }

    fn write(&self) -> Result<(), Error> {
        self.switches.write("commit")
    }
}

/// A key-value store that fails on command (see the module docs): its writes (inserts,
/// removals, claims, counters, flushes) and its reads.
pub struct FaultyKv {
    inner: Arc<dyn KeyValue>,
    switches: Switches,
}

impl std::fmt::Debug for FaultyKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyKv").field("failed", &self.failures()).finish_non_exhaustive()
    }
}

impl FaultyKv {
    /// Wraps `inner`, failing nothing yet.
    pub fn new(inner: Arc<dyn KeyValue>) -> Self {
        Self { inner, switches: Switches::new() }
    }

    /// Fails every write from now on, or stops failing them.
    pub fn fail_writes(&self, fail: bool) {
        self.switches.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Lets `count` more writes through, then fails the rest (`u64::MAX`: no limit again).
    pub fn fail_writes_after(&self, count: u64) {
        self.switches.writes_left.store(count, Ordering::SeqCst);
    }

    /// Fails every read from now on, or stops failing them.
    pub fn fail_reads(&self, fail: bool) {
        self.switches.fail_reads.store(fail, Ordering::SeqCst);
    }

    /// How many operations failed by injection so far.
    pub fn failures(&self) -> u64 {
        self.switches.failed.load(Ordering::SeqCst)
    }
}

impl KeyValue for FaultyKv {
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.switches.read("get")?;
        self.inner.get(space, key)
    }

    fn insert(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.switches.write("insert")?;
        self.inner.insert(space, key, value)
    }

    fn remove(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.switches.write("remove")?;
        self.inner.remove(space, key)
    }

    fn claim(&self, space: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.switches.write("claim")?;
        self.inner.claim(space, key, value)
    }

    fn add(&self, space: &str, key: &[u8], delta: u64) -> Result<u64, Error> {
        self.switches.write("add")?;
        self.inner.add(space, key, delta)
    }

    fn entries(&self, space: &str) -> Result<Vec<Pair>, Error> {
        self.switches.read("entries")?;
        self.inner.entries(space)
    }

    fn flush(&self) -> Result<(), Error> {
        self.switches.write("flush")?;
        self.inner.flush()
    }
}

impl Backend for FaultyBackend {
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn begin_turn(&self) -> Result<u64, Error> {
        self.read("turn")?;
        self.inner.begin_turn()
    }

    fn end_turn(&self) -> Result<(), Error> {
        self.inner.end_turn()
    }

    fn origin(&self) -> Result<Option<String>, Error> {
        self.read("origin")?;
        self.inner.origin()
    }

    fn initialise(&self, origin: &str, checkpoint: &[u8]) -> Result<(), Error> {
        self.write()?;
        self.inner.initialise(origin, checkpoint)
    }

    fn checkpoint(&self) -> Result<Vec<u8>, Error> {
        self.read("checkpoint")?;
        self.inner.checkpoint()
    }

    fn stored_size(&self) -> Result<u64, Error> {
        self.read("size")?;
        self.inner.stored_size()
    }

    fn committed_size(&self) -> Result<u64, Error> {
        self.read("size")?;
        self.inner.committed_size()
    }

    fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), Error> {
        self.read("entries")?;
        self.inner.for_each_entry(start, end, visit)
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, Error> {
        self.read("tile")?;
        self.inner.tile(level, index)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<(), Error> {
        if let Err(error) = self.write() {
            // As a real failed commit: nothing of it is written, and a turn held ends.
            let _ = self.inner.end_turn();
            return Err(error);
        }
        self.inner.commit(commit)
    }
}
