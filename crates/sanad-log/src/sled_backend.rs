//! The embedded default backend: the log in one sled tree, each commit one atomic batch and
//! one flush.
//!
//! One sled tree holds everything, under one-byte key prefixes:
//!
//! | key                         | value                                                 |
//! |-----------------------------|-------------------------------------------------------|
//! | `O`                         | the origin                                            |
//! | `F`                         | the layout: `sanad-log-store/2`                       |
//! | `C`                         | the latest signed checkpoint                          |
//! | `T` + level (u8) + index (u64 BE) | one full tile of level 1 or above (8,192 bytes) |
//! | `e` + first index (u64 BE)  | a chunk: consecutive entries of a committed batch, at most 7 KiB stored, LZ4-compressed when that saves a quarter (see `chunk.rs`) |
//!
//! Chunks sort last, so appends only ever touch the rightmost leaf pages, which hold nothing
//! else: sled rewrites a whole page every ten changes and on each split, and with the
//! checkpoint and tiles among the chunks it rewrote those too.
//!
//! A commit writes its entries, the tiles that integration completed and the checkpoint that
//! covers them in one atomic sled batch, then flushes (fsync): after a crash either all of it is
//! there or none of it. Integration runs beside the commits (see `integrate.rs`), so the
//! checkpoint written with a batch may cover only earlier batches; on open, durable entries
//! beyond the checkpoint are integrated before the log serves anything. One value
//! per chunk of a batch rather than one key per entry is what makes appends fast (sled's per-key
//! cost is about 14 times the per-byte cost for small entries); chunks rather than one value per
//! batch because sled keeps every value above its blob size in memory for good (a log of two
//! million 190-byte entries held 370 MB), while it evicts smaller ones from its page cache;
//! and small enough that a whole leaf page of them stays below the blob size too (see
//! [`STORE_CHUNK_BYTES`](crate::limits::STORE_CHUNK_BYTES)). Level-0 tiles are not stored:
//! they are the leaf hashes of the entries, recomputed when read, which saves 32 bytes per entry
//! on every append. Partial tiles are never stored either: they are rebuilt on open from the last
//! entries and the full tiles below them.

use std::path::Path;

use sanad_tlog::tile;

use crate::Error;
use crate::backend::{Backend, Commit, EntryVisitor};
use crate::chunk::{self, ChunkSizer};

const ORIGIN_KEY: &[u8] = b"O";
const FORMAT_KEY: &[u8] = b"F";
/// The layout written here. A store without it is from before chunks were tagged and
/// compressed (no release wrote one).
const FORMAT: &[u8] = b"sanad-log-store/2";
const CHECKPOINT_KEY: &[u8] = b"C";
const CHUNK_PREFIX: u8 = b'e';
const TILE_PREFIX: u8 = b'T';

/// How often `open` tries for sled's lock, 20 ms apart (one second in all).
const OPEN_LOCK_ATTEMPTS: u32 = 50;

/// Opens a sled database, waiting up to a second for its file lock: sled releases it only when
/// its background threads let go, a moment after the last handle is dropped, so reopening in
/// the same process right away can find it still held. Another process holding it keeps it,
/// and then the answer is [`Error::InUse`].
///
/// # Errors
/// [`Error::InUse`]; [`Error::Storage`].
pub fn open_sled(config: &sled::Config, path: &Path) -> Result<sled::Db, Error> {
    let mut attempts = 0;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock || is_lock_error(&e) =>
            {
                attempts += 1;
                if attempts >= OPEN_LOCK_ATTEMPTS {
                    return Err(Error::InUse(path.to_owned()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(Error::storage(e)),
        }
    }
}

/// sled reports a held lock as a custom I/O error wrapping `WouldBlock`.
fn is_lock_error(error: &std::io::Error) -> bool {
    error.to_string().contains("could not acquire lock")
}

fn chunk_key(first_index: u64) -> [u8; 9] {
    let mut key = [CHUNK_PREFIX; 9];
    key[1..].copy_from_slice(&first_index.to_be_bytes());
    key
}

fn tile_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [TILE_PREFIX; 10];
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn parse_chunk_key(key: &[u8]) -> Result<u64, Error> {
    match key {
        [CHUNK_PREFIX, rest @ ..] => rest
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::corrupt("malformed chunk key")),
        _ => Err(Error::corrupt("malformed chunk key")),
    }
}

/// A log's sled database.
#[derive(Clone)]
pub struct SledBackend {
    db: sled::Db,
    tree: sled::Tree,
    sizer: std::sync::Arc<ChunkSizer>,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledBackend")
    }
}

impl SledBackend {
    /// Opens (or creates) the sled database at `path`.
    ///
    /// # Errors
    /// [`Error::InUse`] when another process holds it; [`Error::Storage`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        let config = sled::Config::new()
            .path(path)
            // We flush explicitly after every commit; sled's timer would only add fsyncs.
            .flush_every_ms(None)
            // The log is written once and read rarely (proofs, exports, history pages): a small
            // page cache keeps sled's memory from growing with the log (its default is 1 GiB).
            .cache_capacity(crate::limits::STORE_CACHE_BYTES);
        // sled releases its file lock only when its background I/O threads let go of the
        // database, a moment after the last handle is dropped; reopening in the same process
        // right away can find it still held. Another process holding it keeps it, and then
        // the error stands.
        let db = open_sled(&config, path)?;
        let tree = db.open_tree("log").map_err(Error::storage)?;
        Ok(Self { db, tree, sizer: std::sync::Arc::default() })
    }

    /// Refuses a store written in another layout (an initialised one without the mark, or
    /// with another).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the layout found.
    pub fn check_format(&self) -> Result<(), Error> {
        match self.tree.get(FORMAT_KEY).map_err(Error::storage)? {
            Some(format) if format == FORMAT => Ok(()),
            Some(format) => Err(Error::corrupt(format!(
                "the store's layout is {}, this build reads {}",
                String::from_utf8_lossy(&format),
                String::from_utf8_lossy(FORMAT)
            ))),
            None => Err(Error::corrupt(format!(
                "the store has no layout mark: it was written by a development build before {}",
                String::from_utf8_lossy(FORMAT)
            ))),
        }
    }
}

impl Backend for SledBackend {
    fn origin(&self) -> Result<Option<String>, Error> {
        let Some(bytes) = self.tree.get(ORIGIN_KEY).map_err(Error::storage)? else {
            return Ok(None);
        };
        String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| Error::corrupt("origin not UTF-8"))
    }

    fn initialise(&self, origin: &str, checkpoint: &[u8]) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        batch.insert(ORIGIN_KEY, origin.as_bytes());
        batch.insert(FORMAT_KEY, FORMAT);
        batch.insert(CHECKPOINT_KEY, checkpoint);
        self.tree.apply_batch(batch).map_err(Error::storage)?;
        self.db.flush().map_err(Error::storage)?;
        Ok(())
    }

    fn checkpoint(&self) -> Result<Vec<u8>, Error> {
        let bytes = self.tree.get(CHECKPOINT_KEY).map_err(Error::storage)?;
        Ok(bytes.ok_or_else(|| Error::corrupt("no checkpoint stored"))?.to_vec())
    }

    /// The tree size implied by the last stored chunk.
    fn stored_size(&self) -> Result<u64, Error> {
        let last = self.tree.scan_prefix([CHUNK_PREFIX]).next_back();
        let Some(item) = last else { return Ok(0) };
        let (key, value) = item.map_err(Error::storage)?;
        let first = parse_chunk_key(&key)?;
        let count = tile::parse_bundle(&chunk::bundle_of(&value)?)?.len() as u64;
        first.checked_add(count).ok_or_else(|| Error::corrupt("tree size overflows"))
    }

    fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), Error> {
        if start >= end {
            return Ok(());
        }
        // The chunk holding `start` is the last one whose first index is <= start.
        let first_chunk = match self.tree.range(chunk_key(0)..=chunk_key(start)).next_back() {
            Some(item) => parse_chunk_key(&item.map_err(Error::storage)?.0)?,
            None => start,
        };
        for item in self.tree.range(chunk_key(first_chunk)..chunk_key(end)) {
            let (key, value) = item.map_err(Error::storage)?;
            let first = parse_chunk_key(&key)?;
            let bundle = chunk::bundle_of(&value)?;
            for (offset, entry) in tile::parse_bundle(&bundle)?.into_iter().enumerate() {
                let index = first + offset as u64;
                if index >= end {
                    return Ok(());
                }
                if index >= start {
                    visit(index, entry)?;
                }
            }
        }
        Ok(())
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, Error> {
        let bytes = self.tree.get(tile_key(level, index)).map_err(Error::storage)?;
        Ok(bytes.map(|b| b.to_vec()))
    }

    /// One sled batch, one flush.
    fn commit(&self, commit: &Commit<'_>) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        let mut first = commit.first_index;
        for (count, stored) in self.sizer.chunks(commit.entries)? {
            batch.insert(&chunk_key(first), stored);
            first += count as u64;
        }
        for tile in commit.tiles {
            batch.insert(&tile_key(tile.id.level, tile.id.index), tile::tile_bytes(&tile.hashes));
        }
        if let Some(checkpoint) = commit.checkpoint {
            batch.insert(CHECKPOINT_KEY, checkpoint.to_bytes());
        }
        self.tree.apply_batch(batch).map_err(Error::storage)?;
        self.db.flush().map_err(Error::storage)?;
        Ok(())
    }
}
