//! # sanad-log: the durable, signed, append-only log
//!
//! A [`Log`] keeps opaque entries (at most 65,535 bytes each) in sled, in an RFC 6962 Merkle
//! tree, under signed C2SP checkpoints. Many threads may call [`Log::append`] at once: the
//! caller at the front of the queue leads one *group commit* of everything waiting — one sled
//! batch, one fsync — and only then is each caller answered (see the `group` module). An answered append is durable; the checkpoint covering it
//! is signed beside the commits and written shortly after (see the `integrate` module). After a
//! crash the log reopens at its last durable commit, integrates what it must, and checks the
//! recomputed root against the stored checkpoint.
//!
//! The log also serves proofs, C2SP tlog-proof receipts, and a static tlog-tiles export that an
//! auditor can verify offline with `sanad log verify` or any independent implementation.
//!
//! The one design decision: a commit's entries are stored as a few chunks (entry bundles,
//! compressed with LZ4 when that pays; see the [`chunk`] module) and hashes as full tiles, so
//! the storage layout is one decompression away from the serving layout, and an append costs a
//! few writes per commit rather than one per entry.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let log = sanad_log::Log::create(dir.path(), "example.org/aid-log").unwrap();
//! let appended = log.append(vec![b"first".to_vec(), b"second".to_vec()]).unwrap();
//! assert_eq!((appended.first_index, appended.tree_size), (0, 2));
//! let receipt = log.receipt(1).unwrap();
//! receipt.verify(b"second", &log.verifier()).unwrap();
//! ```

pub mod backend;
pub mod chunk;
mod export;
#[cfg(feature = "testing")]
pub mod faults;
mod group;
mod integrate;
pub mod keys;
pub mod kv;
pub mod limits;
mod sled_backend;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use sanad_tlog::checkpoint::SignedCheckpoint;
use sanad_tlog::hash::Hash;
use sanad_tlog::proof_file::ProofFile;
use sanad_tlog::rotation::KeyRotation;
use sanad_tlog::tile::{TileId, TileReader, TileSourceError};
use sanad_tlog::{NoteSigner, NoteVerifier, tree};

pub use crate::backend::{Backend, Commit, EntryVisitor, copy};
pub use crate::export::{ExportBackend, ExportSummary};
use crate::group::{Group, Operation, Outcome, Queue};
use crate::integrate::Integration;
use crate::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, INTEGRATION_QUEUE_MAX};
pub use crate::sled_backend::{SledBackend, open_sled};
use crate::store::{Head, Store, StoreTiles};

/// File name of the signing key inside a log's data folder.
pub const KEY_FILE: &str = "log.key";
/// Folder name of the sled database inside a log's data folder.
pub const DB_DIR: &str = "log.sled";

/// Errors of the durable log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The storage engine failed; writes are refused until the log is reopened.
    #[error("storage failed: {0}")]
    Storage(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// What is stored does not add up (a bug or a damaged disk); never silently repaired.
    #[error("log data is inconsistent: {0}")]
    Corrupt(String),
    /// A log format error (bad origin, oversized entry, malformed key...).
    #[error(transparent)]
    Format(#[from] sanad_tlog::Error),
    /// The key file may be read by others.
    #[error("key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)")]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `create` on a folder that already holds a log.
    #[error("{0} already holds a log")]
    AlreadyExists(PathBuf),
    /// `create_on` a store that holds a log already (shared by another process, say).
    #[error(
        "the store holds the log {0} already: to run another process on it, copy {KEY_FILE} from the first one's folder and open it"
    )]
    StoreHoldsLog(String),
    /// The log's database is locked by another process.
    #[error("{0} is in use by another process")]
    InUse(PathBuf),
    /// `open` on a folder that holds no log.
    #[error("{0} holds no log (run `sanad log init` first)")]
    NotFound(PathBuf),
    /// An append with no entries, or beyond the batch limits.
    #[error("append rejected: {0}")]
    BadAppend(&'static str),
    /// A proof or entry asked for beyond the tree.
    #[error("{what} {index} is beyond the tree size {size}")]
    BeyondTree {
        /// What was asked for.
        what: &'static str,
        /// The index or size asked for.
        index: u64,
        /// The current tree size.
        size: u64,
    },
    /// A commit at an index another writer took first (a backend shared by several
    /// processes); this log's view is stale, and it accepts no more writes until reopened.
    #[error(
        "a commit at index {index}, but the log's next index is {next}: another writer appended"
    )]
    AnotherWriter {
        /// Where this commit would have started.
        index: u64,
        /// The log's next index in storage.
        next: u64,
    },
    /// Another process sharing the store rotated the log's key: this one signs with the old
    /// key, so it accepts no more writes; restart it with the new key file.
    #[error(
        "another process rotated the log's key (entry {index}); copy the new {KEY_FILE} here and reopen"
    )]
    RotatedElsewhere {
        /// The hand-over entry.
        index: u64,
    },
    /// A commit failed on storage; the log accepts no more writes until it is reopened.
    #[error("the log stopped accepting writes after a storage failure; reopen the log")]
    WriterStopped,
}

impl Error {
    fn io(context: String, source: std::io::Error) -> Self {
        Self::Io { context, source: Arc::new(source) }
    }

    /// A storage engine's error (for [`Backend`]s).
    pub fn storage(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Arc::new(source))
    }

    /// Stored data that does not add up (for [`Backend`]s).
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt(message.into())
    }
}

/// What an append returns once it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Index of the first entry of this append.
    pub first_index: u64,
    /// Tree size after the group commit that carried it (it may hold other callers' entries).
    pub tree_size: u64,
}

struct Shared {
    dir: PathBuf,
    origin: String,
    store: Store,
    verifier: RwLock<NoteVerifier>,
    /// The latest durable checkpoint and the tree at its size: what proofs and exports use.
    head: RwLock<Head>,
    /// Held for every write to storage; holds the number of durable entries.
    writing: Mutex<u64>,
    /// The number of durable entries, for readers.
    durable: AtomicU64,
    /// Integration done but not yet written (or the integrator's error).
    slot: Mutex<Option<Result<Integration, Error>>>,
    /// Tree size of the published head, for `wait_for_checkpoint`.
    published: Mutex<u64>,
    published_changed: Condvar,
    commits: AtomicU64,
    queue: Queue,
    integrator: Mutex<Option<mpsc::SyncSender<integrate::Message>>>,
}

impl Shared {
    fn publish(&self, head: Head) {
        let size = head.edge.size();
        *self.head.write().unwrap_or_else(std::sync::PoisonError::into_inner) = head;
        *lock(&self.published) = size;
        self.published_changed.notify_all();
    }
}

/// A durable signed log. Share it between threads with an `Arc`; concurrent appends are
/// group-committed (see the `group` module) and integrated into the tree beside the commits
/// (see the `integrate` module).
pub struct Log {
    shared: Arc<Shared>,
    integrator: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Log({})", self.verifier().to_vkey())
    }
}

impl Log {
    /// Creates a new, empty log in `dir` with a fresh signing key named `origin`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `dir` already holds a log; I/O and storage errors.
    pub fn create(dir: &Path, origin: &str) -> Result<Self, Error> {
        sanad_tlog::note::check_key_name(origin)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() || dir.join(DB_DIR).exists() {
            return Err(Error::AlreadyExists(dir.to_owned()));
        }
        let backend = SledBackend::open(&dir.join(DB_DIR))?;
        let signer = keys::generate_key_file(&key_path, origin)?;
        let store = Store::new(Arc::new(backend));
        let head = store.initialise(&signer)?;
        Ok(Self::start(dir, store, signer, head, 0))
    }

    /// Creates a new, empty log on `backend` (PostgreSQL, say), with a fresh signing key named
    /// `origin` in `dir`, which holds only the key.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `dir` holds a key; [`Error::StoreHoldsLog`] when the
    /// backend holds a log; I/O and storage errors.
    pub fn create_on(dir: &Path, origin: &str, backend: Arc<dyn Backend>) -> Result<Self, Error> {
        sanad_tlog::note::check_key_name(origin)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(Error::AlreadyExists(dir.to_owned()));
        }
        if let Some(existing) = backend.origin()? {
            return Err(Error::StoreHoldsLog(existing));
        }
        let signer = keys::generate_key_file(&key_path, origin)?;
        let store = Store::new(backend);
        let head = store.initialise(&signer)?;
        Ok(Self::start(dir, store, signer, head, 0))
    }

    /// Opens the log in `dir`, rebuilding its state from storage and checking it against the
    /// stored checkpoint.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::KeyFilePermissions`], [`Error::Corrupt`], I/O and storage
    /// errors.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let key_path = dir.join(KEY_FILE);
        if !key_path.exists() || !dir.join(DB_DIR).exists() {
            return Err(Error::NotFound(dir.to_owned()));
        }
        let backend = SledBackend::open(&dir.join(DB_DIR))?;
        backend.check_format()?;
        Self::open_on(dir, Arc::new(backend))
    }

    /// Opens the log on `backend`, with its signing key in `dir`, rebuilding its state from
    /// storage and checking it against the stored checkpoint.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_on(dir: &Path, backend: Arc<dyn Backend>) -> Result<Self, Error> {
        let key_path = dir.join(KEY_FILE);
        if !key_path.exists() {
            return Err(Error::NotFound(dir.to_owned()));
        }
        let store = Store::new(backend);
        if store.origin()?.is_none() {
            return Err(Error::NotFound(dir.to_owned()));
        }
        keys::finish_rotation(dir, &store.checkpoint_bytes()?)?;
        let signer = keys::load_key_file(&key_path)?;
        match store.origin()? {
            Some(origin) if origin == signer.name() => {}
            Some(origin) => {
                return Err(Error::corrupt(format!(
                    "the key is for {}, the log's origin is {origin}",
                    signer.name()
                )));
            }
            None => return Err(Error::corrupt("no origin stored (interrupted init?)")),
        }
        let (mut head, durable) = store.load_head(&signer.verifier())?;
        if durable > head.edge.size() {
            // A crash came after these entries were durable but before their integration was
            // written: integrate them now, before serving anything.
            let mut leaves = Vec::new();
            store.for_each_entry(head.edge.size(), durable, |_, entry| {
                leaves.push(sanad_tlog::leaf_hash(entry));
                Ok(())
            })?;
            let mut tiles = Vec::new();
            head.checkpoint =
                integrate::integrate(&mut head.edge, &leaves, &[&signer], &mut tiles)?;
            store.write(durable, &[], &tiles, Some(&head.checkpoint))?;
        }
        Ok(Self::start(dir, store, signer, head, durable))
    }

    fn start(dir: &Path, store: Store, signer: NoteSigner, head: Head, durable: u64) -> Self {
        assert_eq!(head.edge.size(), durable, "a log starts fully integrated");
        let (sender, messages) = mpsc::sync_channel(INTEGRATION_QUEUE_MAX);
        let edge = head.edge.clone();
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            origin: signer.name().to_owned(),
            store,
            verifier: RwLock::new(signer.verifier()),
            published: Mutex::new(head.edge.size()),
            published_changed: Condvar::new(),
            head: RwLock::new(head),
            writing: Mutex::new(durable),
            durable: AtomicU64::new(durable),
            slot: Mutex::new(None),
            commits: AtomicU64::new(0),
            queue: Queue::new(),
            integrator: Mutex::new(Some(sender)),
        });
        let integrator_shared = Arc::clone(&shared);
        let integrator = std::thread::Builder::new()
            .name("sanad-log-integrator".into())
            .spawn(move || integrate::run(&integrator_shared, signer, edge, &messages))
            .unwrap_or_else(|e| panic!("cannot start the log's integrator thread: {e}"));
        Self { shared, integrator: Mutex::new(Some(integrator)) }
    }

    /// Waits until a durable checkpoint covers at least `size` entries and returns it. An
    /// append is answered when durable; the checkpoint covering it follows shortly after.
    ///
    /// # Errors
    /// [`Error::BeyondTree`] for a size beyond the durable entries; [`Error::WriterStopped`]
    /// when the log stops writing before that.
    pub fn wait_for_checkpoint(&self, size: u64) -> Result<SignedCheckpoint, Error> {
        let durable = self.size();
        if size > durable {
            return Err(Error::BeyondTree { what: "tree size", index: size, size: durable });
        }
        let mut published = lock(&self.shared.published);
        while *published < size {
            if self.shared.queue.is_stopped() {
                return Err(Error::WriterStopped);
            }
            published = self
                .shared
                .published_changed
                .wait_timeout(published, std::time::Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(published);
        Ok(self.checkpoint())
    }

    /// Appends entries durably, in order, as part of the next group commit.
    ///
    /// # Errors
    /// [`Error::BadAppend`] for an empty or oversized append (nothing is written);
    /// [`Error::Format`] for an entry above 65,535 bytes; storage errors, after which the
    /// log refuses further appends ([`Error::WriterStopped`]) until reopened.
    pub fn append(&self, entries: Vec<Vec<u8>>) -> Result<Appended, Error> {
        check_append(&entries)?;
        let outcome = self
            .shared
            .queue
            .submit(Operation::Append { entries }, |group| commit_group(&self.shared, group))?;
        match outcome {
            Outcome::Appended { first_index, tree_size } => Ok(Appended { first_index, tree_size }),
            Outcome::Rotated(_) => Err(Error::corrupt("an append was answered as a rotation")),
        }
    }

    /// Rotates the signing key: generates a new key, appends the signed hand-over entry (see
    /// [`sanad_tlog::rotation`]) in a commit whose checkpoint both keys sign, then signs every
    /// later checkpoint with the new key only. Returns the new verifier key.
    ///
    /// # Errors
    /// I/O and storage errors; on a storage error the log stops as for appends.
    pub fn rotate_key(&self) -> Result<NoteVerifier, Error> {
        let outcome = self
            .shared
            .queue
            .submit(Operation::RotateKey, |group| commit_group(&self.shared, group))?;
        match outcome {
            Outcome::Rotated(verifier) => Ok(*verifier),
            Outcome::Appended { .. } => Err(Error::corrupt("a rotation was answered as an append")),
        }
    }

    /// The verifier key of this log's current signing key.
    pub fn verifier(&self) -> NoteVerifier {
        read(&self.shared.verifier).clone()
    }

    /// The number of entries durably appended. The latest checkpoint may trail it by the last
    /// commit (see [`Log::wait_for_checkpoint`]).
    pub fn size(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// How many group commits (fsyncs and signatures) this handle has written since it opened.
    pub fn commit_count(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> SignedCheckpoint {
        read(&self.shared.head).checkpoint.clone()
    }

    /// The entry at `index`.
    ///
    /// # Errors
    /// [`Error::BeyondTree`]; storage errors.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, Error> {
        let size = self.size();
        if index >= size {
            return Err(Error::BeyondTree { what: "entry", index, size });
        }
        let mut found = None;
        self.shared.store.for_each_entry(index, index + 1, |_, entry| {
            found = Some(entry.to_vec());
            Ok(())
        })?;
        found.ok_or_else(|| Error::corrupt(format!("entry {index} is missing")))
    }

    /// Calls `visit(index, entry)` for each entry in `[start, end)`.
    ///
    /// # Errors
    /// [`Error::BeyondTree`]; storage errors; whatever `visit` returns.
    pub fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        visit: impl FnMut(u64, &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let size = self.size();
        if end > size {
            return Err(Error::BeyondTree { what: "entry range end", index: end, size });
        }
        self.shared.store.for_each_entry(start, end, visit)
    }

    /// The root of the tree at `size` (any size up to the current one).
    ///
    /// # Errors
    /// [`Error::BeyondTree`]; storage errors.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        self.with_tiles(size, |tiles| Ok(tree::root(&tiles.hash_source(size), size)?))
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries (RFC 6962 order).
    ///
    /// # Errors
    /// [`Error::BeyondTree`]; storage errors.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        if index >= size {
            return Err(Error::BeyondTree { what: "leaf index", index, size });
        }
        self.with_tiles(size, |tiles| {
            tree::inclusion_proof(&tiles.hash_source(size), index, size).map_err(proof_error)
        })
    }

    /// The consistency proof from the tree of `old_size` entries to the tree of `new_size`.
    ///
    /// # Errors
    /// [`Error::BeyondTree`]; storage errors.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, Error> {
        if old_size > new_size {
            return Err(Error::BeyondTree { what: "old size", index: old_size, size: new_size });
        }
        self.with_tiles(new_size, |tiles| {
            tree::consistency_proof(&tiles.hash_source(new_size), old_size, new_size)
                .map_err(proof_error)
        })
    }

    /// A C2SP tlog-proof receipt for entry `index` against the latest checkpoint (waiting, if
    /// needed, for the checkpoint that covers a just-appended entry).
    ///
    /// # Errors
    /// [`Error::BeyondTree`]; storage errors.
    pub fn receipt(&self, index: u64) -> Result<ProofFile, Error> {
        let durable = self.size();
        if index >= durable {
            return Err(Error::BeyondTree { what: "leaf index", index, size: durable });
        }
        let checkpoint = self.wait_for_checkpoint(index + 1)?;
        let size = checkpoint.checkpoint().size();
        let path = self.inclusion_proof(index, size)?;
        Ok(ProofFile { extra: None, index, path, checkpoint: checkpoint.to_bytes() })
    }

    /// Reads one tile of the tree at the latest checkpoint (for serving or exporting).
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] when a full tile is missing.
    pub fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, Error> {
        let head = read(&self.shared.head).clone();
        StoreTiles { store: &self.shared.store, head: &head }.read_tile(tile)
    }

    fn with_tiles<T>(
        &self,
        size: u64,
        f: impl FnOnce(&StoreTiles<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let head = read(&self.shared.head).clone();
        if size > head.edge.size() {
            return Err(Error::BeyondTree {
                what: "tree size",
                index: size,
                size: head.edge.size(),
            });
        }
        f(&StoreTiles { store: &self.shared.store, head: &head })
    }
}

fn proof_error(error: tree::ProofRequestError<TileSourceError<Error>>) -> Error {
    match error {
        tree::ProofRequestError::Source(source) => source.into(),
        tree::ProofRequestError::Invalid(reason) => Error::corrupt(reason),
    }
}

impl From<TileSourceError<Self>> for Error {
    fn from(error: TileSourceError<Self>) -> Self {
        match error {
            TileSourceError::Reader(e) => e,
            other => Self::corrupt(other.to_string()),
        }
    }
}

fn check_append(entries: &[Vec<u8>]) -> Result<(), Error> {
    if entries.is_empty() {
        return Err(Error::BadAppend("no entries"));
    }
    if entries.len() > BATCH_ENTRIES_MAX {
        return Err(Error::BadAppend("more entries than one batch may hold"));
    }
    let mut bytes = 0usize;
    for entry in entries {
        if KeyRotation::is_rotation_entry(entry) {
            return Err(Error::BadAppend("entries starting with sanad.key-rotation/ are reserved"));
        }
        if entry.len() > sanad_tlog::limits::ENTRY_SIZE_MAX {
            return Err(sanad_tlog::Error::EntryTooLarge {
                size: entry.len(),
                max: sanad_tlog::limits::ENTRY_SIZE_MAX,
            }
            .into());
        }
        bytes += entry.len() + 2;
    }
    if bytes > BATCH_BYTES_MAX {
        return Err(Error::BadAppend("more bytes than one batch may hold"));
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data that is still valid.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Another writer's entry, read at the start of a turn: its index and bytes.
pub type CaughtUp = (u64, Vec<u8>);

/// A turn to append, on a log whose store other processes may append to as well (see
/// [`Backend::begin_turn`]); on an embedded store, simply the log's write lock. While a turn
/// is held no one else appends: the entries other writers appended since this log last looked
/// are in [`Turn::caught_up`] (already folded into the tree), so a caller such as the ledger
/// can replay them before deciding what to append. [`Turn::append`] commits and ends the
/// turn; dropping it, or [`Turn::end`], ends it having appended nothing.
pub struct Turn<'a> {
    shared: &'a Shared,
    durable: std::sync::MutexGuard<'a, u64>,
    caught_up: Vec<CaughtUp>,
    /// Whether the store's turn still has to be ended (it is shared and nothing committed).
    open: bool,
}

impl Log {
    /// Begins a turn to append (see [`Turn`]): waits for any other writer's turn to end, then
    /// reads and integrates what they appended.
    ///
    /// # Errors
    /// [`Error::WriterStopped`] after an earlier failure; [`Error::RotatedElsewhere`]; storage
    /// errors, after which the log stops writing.
    pub fn begin_turn(&self) -> Result<Turn<'_>, Error> {
        if self.shared.queue.is_stopped() {
            return Err(Error::WriterStopped);
        }
        let mut durable = lock(&self.shared.writing);
        let caught_up =
            catch_up(&self.shared, &mut durable).inspect_err(|_| self.shared.queue.stop())?;
        let open = self.shared.store.is_shared();
        Ok(Turn { shared: &self.shared, durable, caught_up, open })
    }

    /// Whether other processes may append to this log's store at once (PostgreSQL): then
    /// this log sees their entries only at the start of a turn.
    pub fn is_shared(&self) -> bool {
        self.shared.store.is_shared()
    }

    /// Whether other processes appended entries this log has not seen yet (never, on a store
    /// that is not shared). Cheap: one read, no turn.
    ///
    /// # Errors
    /// Storage errors.
    pub fn is_behind(&self) -> Result<bool, Error> {
        if !self.is_shared() {
            return Ok(false);
        }
        Ok(self.shared.store.committed_size()? > self.size())
    }
}

impl Turn<'_> {
    /// The entries other writers appended since this log last looked, in order.
    pub fn caught_up(&self) -> &[CaughtUp] {
        &self.caught_up
    }

    /// The index the next entry will take.
    pub fn next_index(&self) -> u64 {
        *self.durable
    }

    /// Appends `entries` durably in one commit, which ends the turn.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn append(mut self, entries: Vec<Vec<u8>>) -> Result<Appended, Error> {
        check_append(&entries)?;
        match append_locked(self.shared, &mut self.durable, vec![entries]) {
            Ok(first_index) => {
                // The commit ended the store's turn.
                self.open = false;
                Ok(Appended { first_index, tree_size: *self.durable })
            }
            Err(error) => {
                // A failure before the commit reached the store leaves its turn held: dropping
                // the turn ends it (after the commit, ending it does nothing).
                self.shared.queue.stop();
                Err(error)
            }
        }
    }

    /// Rotates the signing key (see [`Log::rotate_key`]) in a commit that ends the turn.
    ///
    /// # Errors
    /// As [`Log::rotate_key`].
    pub fn rotate_key(mut self) -> Result<NoteVerifier, Error> {
        let rotated = rotate(self.shared, &mut self.durable);
        if rotated.is_err() {
            self.shared.queue.stop();
        } else {
            self.open = false;
        }
        rotated
    }

    /// Ends the turn, having appended nothing.
    ///
    /// # Errors
    /// Storage errors, after which the log stops writing.
    pub fn end(mut self) -> Result<(), Error> {
        self.open = false;
        self.shared.store.end_turn().inspect_err(|_| self.shared.queue.stop())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.open && self.shared.store.end_turn().is_err() {
            // The store's turn may still be held: write nothing more on this connection.
            self.shared.queue.stop();
        }
    }
}

/// On a shared store: begins the store's turn and reads, integrates and counts as durable
/// what other writers appended since `durable`. Callers hold `Shared::writing`. Nothing on an
/// embedded store, which no one else writes.
fn catch_up(shared: &Shared, durable: &mut u64) -> Result<Vec<CaughtUp>, Error> {
    if !shared.store.is_shared() {
        return Ok(Vec::new());
    }
    let size = shared.store.begin_turn()?;
    let read = read_others(shared, *durable, size);
    let others = read.inspect_err(|_| {
        let _ = shared.store.end_turn();
    })?;
    if !others.is_empty() {
        let batch: Vec<Vec<u8>> = others.iter().map(|(_, entry)| entry.clone()).collect();
        if let Some(integrator) = lock(&shared.integrator).as_ref() {
            // In order before anything this log appends next: the tree stays the store's.
            let _ = integrator.send(integrate::Message::Entries(vec![batch]));
        }
        *durable = size;
        shared.durable.store(size, Ordering::Release);
    }
    Ok(others)
}

/// Entries `[from, size)`, written by other processes. A key hand-over among them stops this
/// log: it holds the old key only.
fn read_others(shared: &Shared, from: u64, size: u64) -> Result<Vec<CaughtUp>, Error> {
    if size < from {
        return Err(Error::corrupt(format!(
            "the store holds {size} entries, but {from} were durable"
        )));
    }
    let mut others = Vec::with_capacity((size - from) as usize);
    shared.store.for_each_entry(from, size, |index, entry| {
        if KeyRotation::is_rotation_entry(entry) {
            return Err(Error::RotatedElsewhere { index });
        }
        others.push((index, entry.to_vec()));
        Ok(())
    })?;
    Ok(others)
}

/// Commits one group taken by a leader, in a turn of its own: appends as one batch (carrying
/// the waiting integration), or a rotation on its own.
fn commit_group(shared: &Shared, group: Group) -> Result<Vec<Outcome>, Error> {
    let mut durable = lock(&shared.writing);
    // Other writers' entries are folded into the tree; no caller of `append` needs them.
    catch_up(shared, &mut durable)?;
    let committed = commit_group_in_turn(shared, &mut durable, group);
    if committed.is_err() {
        // A failure before the commit leaves the turn held; after it, this does nothing.
        let _ = shared.store.end_turn();
    }
    committed
}

fn commit_group_in_turn(
    shared: &Shared,
    durable: &mut u64,
    group: Group,
) -> Result<Vec<Outcome>, Error> {
    if let [(_, Operation::RotateKey)] = group.as_slice() {
        let verifier = rotate(shared, durable)?;
        return Ok(vec![Outcome::Rotated(Box::new(verifier))]);
    }
    let mut batches: Vec<Vec<Vec<u8>>> = Vec::with_capacity(group.len());
    for (_, operation) in group {
        // Invariant: take_group puts a rotation in a group of its own.
        let Operation::Append { entries } = operation else {
            unreachable!("a rotation is never grouped with appends")
        };
        batches.push(entries);
    }
    let lengths: Vec<u64> = batches.iter().map(|batch| batch.len() as u64).collect();
    let mut index = append_locked(shared, durable, batches)?;
    let tree_size = *durable;
    let mut outcomes = Vec::with_capacity(lengths.len());
    for length in lengths {
        outcomes.push(Outcome::Appended { first_index: index, tree_size });
        index += length;
    }
    Ok(outcomes)
}

/// Writes `batches` as one commit at `durable` (carrying the waiting integration), counts them
/// as durable and hands them to the integrator; returns the first entry's index. Callers hold
/// `Shared::writing` (and, on a shared store, the turn).
fn append_locked(
    shared: &Shared,
    durable: &mut u64,
    batches: Vec<Vec<Vec<u8>>>,
) -> Result<u64, Error> {
    let entries: Vec<&[u8]> = batches.iter().flatten().map(Vec::as_slice).collect();
    let count = entries.len() as u64;
    let first_index = *durable;
    let integration = integrate::take(shared)?;
    integrate::write(shared, first_index, &entries, integration)?;
    drop(entries);
    *durable += count;
    shared.durable.store(*durable, Ordering::Release);
    if let Some(integrator) = lock(&shared.integrator).as_ref() {
        // The integrator hashes the entries and folds them into the tree while the next commit
        // is written. Invariant: it runs as long as the log holds its sender.
        let _ = integrator.send(integrate::Message::Entries(batches));
    }
    Ok(first_index)
}

/// Generates the next key, has the integrator sign the hand-over after everything before it,
/// writes entry and checkpoint in one batch, then installs the new key.
fn rotate(shared: &Shared, durable: &mut u64) -> Result<NoteVerifier, Error> {
    let next_path = shared.dir.join(keys::NEXT_KEY_FILE);
    // A leftover next key is from an attempt that never committed (open resolves committed
    // ones), so it is safe to replace.
    if next_path.exists() {
        std::fs::remove_file(&next_path)
            .map_err(|e| Error::io(format!("removing {}", next_path.display()), e))?;
    }
    let next = keys::generate_key_file(&next_path, &shared.origin)?;
    let verifier = next.verifier();
    let (reply, answer) = mpsc::sync_channel(1);
    lock(&shared.integrator)
        .as_ref()
        .ok_or(Error::WriterStopped)?
        .send(integrate::Message::Rotate { next: Box::new(next), reply })
        .map_err(|_| Error::WriterStopped)?;
    let (entry, rotation) = answer.recv().map_err(|_| Error::WriterStopped)??;
    // The integrator folds in every durable entry before the rotation entry.
    assert_eq!(rotation.head.edge.size(), *durable + 1, "rotation integrates all before it");
    // Tiles of an integration not yet written go into the same batch; the rotation's
    // checkpoint supersedes its checkpoint.
    let mut tiles = integrate::take(shared)?.map(|waiting| waiting.tiles).unwrap_or_default();
    tiles.extend(rotation.tiles);
    let integration = Integration { head: rotation.head, tiles };
    integrate::write(shared, *durable, &[&entry], Some(integration))?;
    *durable += 1;
    shared.durable.store(*durable, Ordering::Release);
    keys::install_next_key(&shared.dir)?;
    *shared.verifier.write().unwrap_or_else(std::sync::PoisonError::into_inner) = verifier.clone();
    Ok(verifier)
}

impl Drop for Log {
    fn drop(&mut self) {
        // The integrator writes its last integration when its channel closes.
        drop(lock(&self.shared.integrator).take());
        if let Some(integrator) = lock(&self.integrator).take() {
            let _ = integrator.join();
        }
    }
}
