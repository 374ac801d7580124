//! The history index, on disk: for each account the log indexes of the entries that touched it,
//! and for each transfer id the index of its entry. It lives in its own sled database beside
//! the log and is derived data: written off the commit path by the indexer thread, never
//! fsynced on its own, and caught up from the log on open (its watermark says how far it got).
//! Memory stays flat however long the history grows.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

use sanad_money::Id;

use crate::Error;

/// Where the index lives in the data folder.
pub(crate) const INDEX_DIR: &str = "index.sled";

const HISTORY: u8 = b'h';
const TRANSFER: u8 = b't';
const WATERMARK: &[u8] = b"w";

/// What one log entry adds to the index.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) index: u64,
    pub(crate) accounts: Vec<Id>,
    pub(crate) transfer: Option<Id>,
}

/// Records for entries `[.., size)`, in order; `size` becomes the watermark.
pub(crate) struct Batch {
    pub(crate) records: Vec<Record>,
    pub(crate) size: u64,
}

pub(crate) struct Index {
    tree: sled::Db,
    indexed: AtomicU64,
    progress: Mutex<()>,
    progressed: Condvar,
}

fn history_key(account: &Id, index: u64) -> Vec<u8> {
    let mut key = history_prefix(account);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn history_prefix(account: &Id) -> Vec<u8> {
    // Ids never hold a zero byte, so it ends the account's part of the key unambiguously.
    let mut key = Vec::with_capacity(account.as_str().len() + 10);
    key.push(HISTORY);
    key.extend_from_slice(account.as_str().as_bytes());
    key.push(0);
    key
}

fn transfer_key(id: &Id) -> Vec<u8> {
    let mut key = vec![TRANSFER];
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

fn read_u64(bytes: &[u8]) -> Result<u64, Error> {
    let array: [u8; 8] =
        bytes.try_into().map_err(|_| Error::Corrupt("index value is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

impl Index {
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        let tree = sled::Config::new().path(dir.join(INDEX_DIR)).open().map_err(Error::index)?;
        let indexed = match tree.get(WATERMARK).map_err(Error::index)? {
            Some(bytes) => read_u64(&bytes)?,
            None => 0,
        };
        Ok(Self {
            tree,
            indexed: AtomicU64::new(indexed),
            progress: Mutex::new(()),
            progressed: Condvar::new(),
        })
    }

    /// How many log entries are indexed.
    pub(crate) fn indexed(&self) -> u64 {
        self.indexed.load(Ordering::Acquire)
    }

    pub(crate) fn write(&self, batch: &Batch) -> Result<(), Error> {
        let mut writes = sled::Batch::default();
        for record in &batch.records {
            for account in &record.accounts {
                writes.insert(history_key(account, record.index), &[][..]);
            }
            if let Some(transfer) = &record.transfer {
                writes.insert(transfer_key(transfer), &record.index.to_be_bytes()[..]);
            }
        }
        writes.insert(WATERMARK, &batch.size.to_be_bytes()[..]);
        self.tree.apply_batch(writes).map_err(Error::index)?;
        let _guard = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.indexed.fetch_max(batch.size, Ordering::AcqRel);
        self.progressed.notify_all();
        Ok(())
    }

    /// Waits until the first `size` entries are indexed, or `stopped()` says they never will be.
    pub(crate) fn wait_for(&self, size: u64, stopped: impl Fn() -> bool) -> Result<(), Error> {
        let mut guard = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while self.indexed() < size {
            if stopped() {
                return Err(Error::Stopped("the indexer stopped".into()));
            }
            guard = self
                .progressed
                .wait_timeout(guard, std::time::Duration::from_millis(20))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    /// The log index of the entry a transfer id answers for.
    pub(crate) fn transfer(&self, id: &Id) -> Result<Option<u64>, Error> {
        self.tree.get(transfer_key(id)).map_err(Error::index)?.map(|v| read_u64(&v)).transpose()
    }

    /// Up to `limit` log indexes of entries that touched `account`, after `after` (exclusive).
    pub(crate) fn history(
        &self,
        account: &Id,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, Error> {
        let prefix = history_prefix(account);
        let start = match after {
            Some(after) => match after.checked_add(1) {
                Some(next) => history_key(account, next),
                None => return Ok(Vec::new()),
            },
            None => prefix.clone(),
        };
        let mut found = Vec::new();
        for item in self.tree.range(start..).take(limit) {
            let (key, _) = item.map_err(Error::index)?;
            let Some(index) = key.strip_prefix(prefix.as_slice()) else { break };
            found.push(read_u64(index)?);
        }
        Ok(found)
    }

    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.tree.flush().map(drop).map_err(Error::index)
    }
}

/// The indexer thread: writes batches in order until the channel closes or a write fails.
pub(crate) fn run(index: &Index, batches: &mpsc::Receiver<Batch>) -> Result<(), Error> {
    for batch in batches {
        index.write(&batch)?;
    }
    index.flush()
}
