//! # sanad-engine: the shared ledger
//!
//! [`Ledger`] is what agency systems embed: a handle, safe to share between threads, over the
//! pure core (`sanad-ledger`) and the signed log (`sanad-log`). Callers submit commands
//! concurrently; one writer thread decides them in order against the state in memory, appends
//! their events to the log in one group commit (one fsync, one checkpoint signature for many
//! commands), and only then answers each caller (see the `writer` module).
//!
//! Opening a ledger loads the latest snapshot whose Merkle root matches the log (see the
//! `snapshot` module) and replays only the entries after it. Account history is a compact list
//! of log indexes per account (see the `history` module); the entries are read from the log.
//!
//! The data folder holds the log (`log.key`, `log.sled`), `ledger.snapshot` and, when used, the
//! registry (`registry.sled`, `registry.key`, `registry.secrets/`; see [`registry`]). With the
//! log on PostgreSQL, the folder keeps the keys and the snapshot; the log, and the registry's
//! records when [`Options::shared_store`] says so, are in the database.

mod agency;
mod archive;
pub mod disburse;
mod history;
pub mod registry;
mod snapshot;
pub mod vouchers;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::thread::JoinHandle;

use sanad_ledger::{Account, Command, Event, GroupRejection, Inconsistency, Rejection, State};
use sanad_log::Log;
use sanad_money::Id;

pub use agency::Agency;
pub use snapshot::SNAPSHOT_FILE;
pub use vouchers::{
    IssueReport, IssuedVoucher, RedemptionRequest, SettlementRun, VendorSettlement, VoucherPlan,
};
pub use writer::CALL_COMMANDS_MAX;

/// Errors of the engine and the registry. Refusals of a ledger command are [`Rejection`]s,
/// returned beside this.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log failed (storage, I/O, keys).
    #[error(transparent)]
    Log(#[from] sanad_log::Error),
    /// A file could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The log holds an entry that does not replay: it was not written by this engine, or the
    /// store is damaged. Never silently repaired.
    #[error("the log does not replay: {0}")]
    Inconsistent(#[from] Inconsistency),
    /// Stored data (registry, snapshot) does not add up.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A snapshot could not be written.
    #[error("{0}")]
    Snapshot(String),
    /// A write failed earlier; the ledger refuses writes until it is reopened.
    #[error("the ledger stopped accepting writes after a failure ({0}); reopen it")]
    Stopped(String),
    /// A secret file others may read.
    #[error("{path} has mode {mode:o}; it must be readable by its owner only (chmod 600)")]
    SecretPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A phone number that does not parse or is not valid.
    #[error("invalid phone number {0}")]
    InvalidPhone(String),
    /// A PIN that is not 4 to 8 digits.
    #[error("a PIN is 4 to 8 digits")]
    InvalidPin,
    /// A registry field that is empty, too long or holds control characters.
    #[error("invalid {field}")]
    InvalidField {
        /// Which field.
        field: &'static str,
    },
    /// The phone or national id is registered already.
    #[error("{field} already registered to {existing}")]
    Duplicate {
        /// `phone` or `national_id`.
        field: &'static str,
        /// The beneficiary it belongs to.
        existing: Id,
    },
    /// No beneficiary with this id (or phone) in the registry.
    #[error("beneficiary {0} not found")]
    BeneficiaryNotFound(Id),
    /// The ledger refused a command.
    #[error("refused: {0}")]
    Rejected(#[from] Rejection),
    /// The ledger refused a linked group.
    #[error("refused: {0}")]
    GroupRejected(#[from] GroupRejection),
    /// A bulk disbursement file that cannot be paid as a whole (see [`disburse`]).
    #[error("{0}")]
    Disbursement(String),
    /// A voucher code that is malformed or mistyped (a typo, so ask again; not counted as a
    /// guess).
    #[error(transparent)]
    VoucherCode(#[from] sanad_ledger::CodeError),
    /// A well-formed voucher code that nobody holds (counted as a guess).
    #[error("no voucher has this code")]
    UnknownVoucherCode,
    /// Too many unknown codes from this vendor: wait.
    #[error("too many unknown voucher codes; try again in {} minutes", retry_after_ms.div_ceil(60_000))]
    TooManyGuesses {
        /// How long to wait, in ms.
        retry_after_ms: u64,
    },
    /// A wrong PIN or confirmation; it was logged.
    #[error("wrong PIN{}", match locked_until_ms { Some(_) => "; the voucher is locked for a while".to_owned(), None => format!("; {attempts_left} attempts left") })]
    WrongPin {
        /// Attempts left before the voucher locks.
        attempts_left: u8,
        /// When this failure locked the voucher: until when.
        locked_until_ms: Option<u64>,
    },
    /// Nothing of this beneficiary's awaits a confirmation.
    #[error("no payment is waiting for a confirmation")]
    NoPendingConfirmation,
    /// A call with no commands, or more than [`CALL_COMMANDS_MAX`].
    #[error("a call carries 1 to {CALL_COMMANDS_MAX} commands, not {0}")]
    BadCall(usize),
}

impl Error {
    fn io(context: String, source: std::io::Error) -> Self {
        Self::Io { context, source: Arc::new(source) }
    }
}

/// A command that was applied (or answered as a retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log index of the first entry it caused; for an answered retry, of the original's
    /// entry; `None` when it changed nothing and has no original (e.g. freezing a frozen
    /// account).
    pub log_index: Option<u64>,
    /// The events it caused (none for a retry).
    pub events: Events,
}

/// The events one command caused, in order: its part of its batch's events, which every
/// answer from the batch shares. A vector of its own for each command cost the writer an
/// allocation and a copy per command, and the callers as many frees. Read it as a slice.
#[derive(Clone)]
pub struct Events {
    batch: Arc<Vec<Event>>,
    // Invariant: within `batch`.
    range: std::ops::Range<usize>,
}

impl Events {
    /// Events `range` of `batch`.
    fn of(batch: &Arc<Vec<Event>>, range: std::ops::Range<usize>) -> Self {
        assert!(range.end <= batch.len(), "a command's events lie within its batch");
        Self { batch: Arc::clone(batch), range }
    }
}

impl std::ops::Deref for Events {
    type Target = [Event];

    fn deref(&self) -> &[Event] {
        &self.batch[self.range.clone()]
    }
}

impl PartialEq for Events {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Events {}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// How a ledger is run; [`Options::default`] for production.
#[derive(Clone)]
pub struct Options {
    /// The clock, in ms since the Unix epoch. Tests inject their own to drive expiry and limits.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Write a snapshot once this many entries were added since the last one, or as many as
    /// the last one covered if that is more (so a crash replays at most about half the log).
    pub snapshot_every: u64,
    /// Write a snapshot when the ledger closes (turned off to test recovery after a crash).
    pub snapshot_on_close: bool,
    /// Keep at most about this many idempotency entries in memory; older ones move to the
    /// on-disk archive (see the `archive` module). The default, 448,000 plus a batch, stays
    /// under what a hash table of 2^19 slots holds (458,752), so the table never doubles to
    /// 2^20 slots (24 MB more) on its way to the limit.
    pub recent_ids_max: usize,
    /// Told, after each commit, how many commands it carried (the group commit's size): for
    /// metrics. Called on the writer thread, with nothing locked that a query needs.
    pub on_commit: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// Where the log is kept: `None` for sled in the ledger's folder (the embedded default),
    /// or another backend, such as PostgreSQL (`sanad-postgres`). The signing key, snapshots
    /// and the idempotency archive stay in the folder either way.
    pub log_backend: Option<Arc<dyn sanad_log::Backend>>,
    /// Where an [`Agency`] keeps its registry: `None` for the folder (sled and secret files),
    /// or a store every process on a database shares (`sanad-postgres`'s `PgKv`), so that each
    /// knows every beneficiary. The agency secret (`registry.key`) stays in the folder.
    pub shared_store: Option<Arc<dyn sanad_log::kv::KeyValue>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            }),
            snapshot_every: 1_000_000,
            snapshot_on_close: true,
            recent_ids_max: 448_000,
            on_commit: None,
            log_backend: None,
            shared_store: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("snapshot_every", &self.snapshot_every)
            .field("snapshot_on_close", &self.snapshot_on_close)
            .field("log_backend", &self.log_backend.as_ref().map(|_| "custom"))
            .field("shared_store", &self.shared_store.as_ref().map(|_| "shared"))
            .finish()
    }
}

/// What opening found, for operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The log size the snapshot covered (0 without one).
    pub snapshot_size: u64,
    /// Why a snapshot present was not used, if so.
    pub snapshot_ignored: Option<String>,
    /// Entries replayed after the snapshot.
    pub replayed: u64,
    /// Time spent opening the log, in ms.
    pub log_ms: u64,
    /// Time spent reading the snapshot and the idempotency archive's filters, in ms.
    pub load_ms: u64,
    /// Time spent replaying, in ms.
    pub replay_ms: u64,
}

/// A page of an account's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    /// `(log index, event)`, oldest first.
    pub items: Vec<(u64, Event)>,
    /// The cursor for the next page, when there may be one.
    pub next: Option<u64>,
}

struct View {
    state: State,
    histories: history::Histories,
    /// Log entries the state reflects: always the durable log size once the writer answered.
    size: u64,
    /// The latest batch time, so that time never runs backwards in the log.
    at_ms: u64,
}

#[derive(Default)]
struct Jobs {
    queue: std::collections::VecDeque<writer::Job>,
    closing: bool,
}

struct Shared {
    dir: PathBuf,
    log: Log,
    view: RwLock<View>,
    jobs: Mutex<Jobs>,
    jobs_ready: Condvar,
    failure: Mutex<Option<String>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    snapshot_every: u64,
    snapshot_on_close: bool,
    snapshot_size: AtomicU64,
    archive: Arc<archive::Archive>,
    recent_ids_max: usize,
    on_commit: Option<Arc<dyn Fn(usize) + Send + Sync>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stop(&self, error: &Error) {
        lock(&self.failure).get_or_insert_with(|| error.to_string());
    }

    fn stopped_error(&self) -> Error {
        Error::Stopped(lock(&self.failure).clone().unwrap_or_else(|| "the ledger is closed".into()))
    }

    /// Writes a snapshot of the state as it is now. Readers carry on meanwhile; the writer
    /// waits, since the state must not change while it is written out.
    fn snapshot(&self) -> Result<(), Error> {
        let view = self.read_view();
        // The root at this size exists once the log's integrator has caught up.
        self.log.wait_for_checkpoint(view.size)?;
        let root = self.log.root_at(view.size)?;
        let snapshot = snapshot::SnapshotOf {
            size: view.size,
            root: *root.as_bytes(),
            at_ms: view.at_ms,
            state: &view.state,
            histories: &view.histories,
            archive_sets: self.archive.set_count(),
        };
        snapshot::write(&self.dir, &snapshot)?;
        self.snapshot_size.store(view.size, Ordering::Release);
        Ok(())
    }

    fn maybe_snapshot(&self) -> Result<(), Error> {
        let size = self.read_view().size;
        // Writing a snapshot costs time in proportion to the state, and the writer waits for it:
        // wait at least as many entries as the last snapshot covered, so that snapshots cost
        // a bounded share of the time however large the ledger grows.
        let last = self.snapshot_size.load(Ordering::Acquire);
        if size >= last + self.snapshot_every.max(last) {
            self.snapshot()?;
        }
        Ok(())
    }
}

/// The shared ledger handle. Share it with an `Arc`; every method takes `&self`.
pub struct Ledger {
    shared: Arc<Shared>,
    report: OpenReport,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.shared.dir.display())
    }
}

/// Calls to a [`Ledger`] on behalf of one principal (see [`Ledger::calls_by`]).
#[derive(Clone, Copy, Debug)]
pub struct Calls<'a> {
    ledger: &'a Ledger,
    by: Option<&'a Id>,
}

impl Calls<'_> {
    /// As [`Ledger::execute`].
    ///
    /// # Errors
    /// As [`Ledger::execute`].
    pub fn execute(&self, command: Command) -> Result<Result<Applied, Rejection>, Error> {
        let mut results = self.execute_each(vec![command])?;
        results.pop().ok_or_else(|| Error::Corrupt("an empty answer".into()))
    }

    /// As [`Ledger::execute_each`].
    ///
    /// # Errors
    /// As [`Ledger::execute_each`].
    pub fn execute_each(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Applied, Rejection>>, Error> {
        match self.ledger.submit(self.by, writer::Work::Each(commands))? {
            writer::Answer::Each(results) => Ok(results),
            _ => Err(Error::Corrupt("another answer to a call".into())),
        }
    }

    /// As [`Ledger::execute_linked`].
    ///
    /// # Errors
    /// As [`Ledger::execute_each`].
    pub fn execute_linked(
        &self,
        commands: Vec<Command>,
    ) -> Result<Result<Applied, GroupRejection>, Error> {
        match self.ledger.submit(self.by, writer::Work::Linked(commands))? {
            writer::Answer::Linked(result) => Ok(result),
            _ => Err(Error::Corrupt("another answer to a group".into())),
        }
    }
}

impl Ledger {
    /// Creates a new ledger (its log and signing key) in `dir`.
    ///
    /// # Errors
    /// As [`Log::create`]; index storage errors.
    pub fn create(dir: &Path, origin: &str, options: Options) -> Result<Self, Error> {
        let log = match &options.log_backend {
            Some(backend) => Log::create_on(dir, origin, Arc::clone(backend))?,
            None => Log::create(dir, origin)?,
        };
        let ledger = Self::start(dir, log, options)?;
        // An empty snapshot marks the folder as a ledger's from the start.
        ledger.snapshot()?;
        Ok(ledger)
    }

    /// Opens the ledger in `dir`: the log, then the state from the latest usable snapshot and
    /// the entries after it.
    ///
    /// # Errors
    /// As [`Log::open`]; [`Error::Inconsistent`] when an entry does not replay.
    pub fn open(dir: &Path, options: Options) -> Result<Self, Error> {
        let started = std::time::Instant::now();
        let log = match &options.log_backend {
            Some(backend) => Log::open_on(dir, Arc::clone(backend))?,
            None => Log::open(dir)?,
        };
        let log_ms = started.elapsed().as_millis() as u64;
        let mut ledger = Self::start(dir, log, options)?;
        ledger.report.log_ms = log_ms;
        Ok(ledger)
    }

    fn start(dir: &Path, log: Log, options: Options) -> Result<Self, Error> {
        let mut report = OpenReport::default();
        let size = log.size();
        let mut view = View {
            state: State::default(),
            histories: history::Histories::default(),
            size: 0,
            at_ms: 0,
        };
        let loading = std::time::Instant::now();
        let archive = Arc::new(archive::Archive::open(dir)?);
        match snapshot::read(dir) {
            Ok(Some(snapshot)) => {
                let matches = snapshot.size <= size
                    && log.root_at(snapshot.size).ok().map(|root| *root.as_bytes())
                        == Some(snapshot.root);
                if snapshot.archive_sets > archive.set_count() {
                    report.snapshot_ignored =
                        Some("the idempotency archive lacks sets the snapshot relies on".into());
                } else if snapshot.histories.len() != snapshot.state.account_count() {
                    report.snapshot_ignored =
                        Some("the snapshot's histories do not match its accounts".into());
                } else if matches {
                    report.snapshot_size = snapshot.size;
                    view = View {
                        state: snapshot.state,
                        histories: snapshot.histories,
                        size: snapshot.size,
                        at_ms: snapshot.at_ms,
                    };
                } else {
                    report.snapshot_ignored =
                        Some("the snapshot's root does not match the log at its size".into());
                }
            }
            Ok(None) => {}
            Err(problem) => report.snapshot_ignored = Some(problem),
        }
        report.load_ms = loading.elapsed().as_millis() as u64;
        let replaying = std::time::Instant::now();
        if view.size == 0 {
            // Rebuilding from the whole log: the archive is rebuilt with it.
            archive.clear()?;
        }
        view.state.set_archive(Arc::clone(&archive) as Arc<dyn sanad_ledger::IdArchive>);
        let recent_ids_max = options.recent_ids_max.max(1);
        replay_tail(&log, &mut view, &archive, recent_ids_max)?;
        report.replayed = size - report.snapshot_size;
        report.replay_ms = replaying.elapsed().as_millis() as u64;
        let snapshot_size = report.snapshot_size;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            log,
            view: RwLock::new(view),
            jobs: Mutex::new(Jobs::default()),
            jobs_ready: Condvar::new(),
            failure: Mutex::new(None),
            clock: options.clock,
            snapshot_every: options.snapshot_every.max(1),
            snapshot_on_close: options.snapshot_on_close,
            snapshot_size: AtomicU64::new(snapshot_size),
            archive,
            recent_ids_max,
            on_commit: options.on_commit,
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("sanad-ledger-writer".into())
            .spawn(move || writer::run(&writer_shared))
            .map_err(|e| Error::io("starting the writer thread".into(), e))?;
        Ok(Self { shared, report, writer: Mutex::new(Some(writer)) })
    }

    /// What opening found.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Brings the state up to every entry other processes committed before this call, so that
    /// what is read after it reflects them (read-your-writes across processes sharing a
    /// database). Does nothing when no other process can write, and costs one read when none
    /// did; otherwise waits for the writer's next turn (a batch's worth of time).
    ///
    /// # Errors
    /// Storage errors; [`Error::Stopped`] after a failure.
    pub fn sync(&self) -> Result<(), Error> {
        if !self.shared.log.is_behind()? {
            return Ok(());
        }
        match self.submit(None, writer::Work::Sync)? {
            writer::Answer::Synced => Ok(()),
            _ => Err(Error::Corrupt("another answer to a sync".into())),
        }
    }

    fn submit(&self, by: Option<&Id>, work: writer::Work) -> Result<writer::Answer, Error> {
        let is_sync = matches!(work, writer::Work::Sync);
        if !is_sync && (work.len() == 0 || work.len() > CALL_COMMANDS_MAX) {
            return Err(Error::BadCall(work.len()));
        }
        let work = match work {
            writer::Work::Each(commands) => writer::Work::Each(self.prepare_all(commands)?),
            writer::Work::Linked(commands) => writer::Work::Linked(self.prepare_all(commands)?),
            other @ (writer::Work::RotateKey | writer::Work::Sync) => other,
        };
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let mut jobs = lock(&self.shared.jobs);
            if jobs.closing {
                return Err(self.shared.stopped_error());
            }
            jobs.queue.push_back(writer::Job { work, by: by.cloned(), reply });
        }
        self.shared.jobs_ready.notify_one();
        answer.recv().map_err(|_| self.shared.stopped_error())?
    }

    /// Executes one command durably. `Ok(Err(rejection))` when it was refused (nothing
    /// changed); `Err` when the ledger could not act.
    ///
    /// # Errors
    /// Storage failures, after which the ledger refuses writes until reopened.
    pub fn execute(&self, command: Command) -> Result<Result<Applied, Rejection>, Error> {
        self.calls_by(None).execute(command)
    }

    /// Executes independent commands in one call (and usually one commit): each is decided
    /// after the ones before it and answered on its own.
    ///
    /// # Errors
    /// [`Error::BadCall`] for 0 or more than [`CALL_COMMANDS_MAX`] commands; storage failures.
    pub fn execute_each(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<Applied, Rejection>>, Error> {
        self.calls_by(None).execute_each(commands)
    }

    /// Executes a linked group: all commands apply, in one commit, or none does.
    ///
    /// # Errors
    /// As [`Self::execute_each`].
    pub fn execute_linked(
        &self,
        commands: Vec<Command>,
    ) -> Result<Result<Applied, GroupRejection>, Error> {
        self.calls_by(None).execute_linked(commands)
    }

    /// Calls on behalf of `by`, a principal granted in the ledger (see
    /// [`sanad_ledger::access`]): each command is refused unless its role covers what it
    /// would do, and the entries it causes name the principal. `None` is the store's holder,
    /// as [`Self::execute`] and its siblings.
    pub fn calls_by<'a>(&'a self, by: Option<&'a Id>) -> Calls<'a> {
        Calls { ledger: self, by }
    }

    /// Rotates the log's signing key through the writer (see [`Log::rotate_key`]); returns the
    /// new verifier key. Call this rather than the log's own method while the ledger is open:
    /// the writer must know of every entry.
    ///
    /// # Errors
    /// As [`Log::rotate_key`].
    pub fn rotate_key(&self) -> Result<sanad_tlog::NoteVerifier, Error> {
        match self.submit(None, writer::Work::RotateKey)? {
            writer::Answer::Rotated(verifier) => Ok(*verifier),
            _ => Err(Error::Corrupt("another answer to a key rotation".into())),
        }
    }

    /// Reads the state (a consistent view: only durable changes).
    pub fn read<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        read(&self.shared.read_view().state)
    }

    /// An account, as of now.
    pub fn account(&self, id: &Id) -> Option<Account> {
        self.read(|state| state.account(id).cloned())
    }

    /// The log index of the entry a transfer (or hold, or operation on one) id answers for.
    pub fn log_index_of(&self, id: &Id) -> Option<u64> {
        self.read(|state| state.id_use(id).map(|used| used.index))
    }

    /// The entry a transfer (or hold, or operation on one) id answers for, read from the log.
    ///
    /// # Errors
    /// Log storage errors; [`Error::Corrupt`] for an entry that does not decode.
    pub fn transfer(&self, id: &Id) -> Result<Option<(u64, Event)>, Error> {
        let Some(index) = self.log_index_of(id) else { return Ok(None) };
        let entry = self.shared.log.entry(index)?;
        let event = Event::from_entry(&entry)
            .map_err(|e| Error::Corrupt(format!("entry {index} of {id}: {e}")))?;
        Ok(Some((index, event)))
    }

    fn prepare_all(&self, commands: Vec<Command>) -> Result<Vec<Command>, Error> {
        commands.into_iter().map(|command| self.prepare(command)).collect()
    }

    /// Fills in what the state keeps only as a fingerprint: a reversal's original transfer,
    /// read from its log entry.
    fn prepare(&self, mut command: Command) -> Result<Command, Error> {
        if let Command::Reverse { original, original_transfer: original_transfer @ None, .. } =
            &mut command
            && let Some((_, event)) = self.transfer(original)?
        {
            *original_transfer = event.posted_transfer().map(|(_, record)| record);
        }
        Ok(command)
    }

    /// Up to `limit` entries that touched `account`, oldest first, after the cursor `after`
    /// (a log index from a previous page's `next`).
    ///
    /// # Errors
    /// Log storage errors.
    pub fn history(
        &self,
        account: &Id,
        after: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let indexes = {
            let view = self.shared.read_view();
            view.state
                .account_number(account)
                .map(|number| view.histories.page(number, after, limit))
                .unwrap_or_default()
        };
        let mut items = Vec::with_capacity(indexes.len());
        for index in indexes {
            let entry = self.shared.log.entry(index)?;
            let event = Event::from_entry(&entry)
                .map_err(|e| Error::Corrupt(format!("entry {index} in the history: {e}")))?;
            items.push((index, event));
        }
        let next = if items.len() == limit { items.last().map(|(index, _)| *index) } else { None };
        Ok(HistoryPage { items, next })
    }

    /// The time by the ledger's clock, in ms since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        (self.shared.clock)()
    }

    /// The last `n` entries that touched `account`, oldest first (for a short statement by
    /// SMS): found without reading the account's whole history.
    ///
    /// # Errors
    /// Log storage errors.
    pub fn recent_history(&self, account: &Id, n: usize) -> Result<Vec<(u64, Event)>, Error> {
        let indexes = {
            let view = self.shared.read_view();
            view.state
                .account_number(account)
                .map(|number| view.histories.last(number, n))
                .unwrap_or_default()
        };
        indexes
            .into_iter()
            .map(|index| {
                let entry = self.shared.log.entry(index)?;
                let event = Event::from_entry(&entry)
                    .map_err(|e| Error::Corrupt(format!("entry {index} in the history: {e}")))?;
                Ok((index, event))
            })
            .collect()
    }

    /// The signed log underneath (checkpoints, proofs, receipts, export).
    pub fn log(&self) -> &Log {
        &self.shared.log
    }

    /// The number of log entries the state reflects.
    pub fn size(&self) -> u64 {
        self.shared.read_view().size
    }

    /// Writes a snapshot of the state now.
    ///
    /// # Errors
    /// I/O errors.
    pub fn snapshot(&self) -> Result<(), Error> {
        self.shared.snapshot()
    }

    /// Stops the writer after the queued work, writes a snapshot, and waits for the threads.
    ///
    /// # Errors
    /// The snapshot's errors.
    pub fn close(&self) -> Result<(), Error> {
        lock(&self.shared.jobs).closing = true;
        self.shared.jobs_ready.notify_all();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
        if self.shared.snapshot_on_close && lock(&self.shared.failure).is_none() {
            self.shared.snapshot()?;
        }
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing writes a snapshot; a failure to do so only costs a longer replay next time.
        let _ = self.close();
    }
}

/// Applies the log's entries after the view's size to the view (state, history, time), moving
/// idempotency entries to the archive as they accumulate.
fn replay_tail(
    log: &Log,
    view: &mut View,
    archive: &archive::Archive,
    recent_ids_max: usize,
) -> Result<(), Error> {
    let mut failure = None;
    let start = view.size;
    let read = log.for_each_entry(start, log.size(), |index, entry| {
        replay_one(view, archive, recent_ids_max, index, entry).map_err(|error| {
            failure = Some(error);
            // Stops the scan; the failure above is what is reported.
            sanad_log::Error::Corrupt(String::new())
        })
    });
    match (failure, read) {
        (Some(failure), _) => Err(failure),
        (None, read) => Ok(read?),
    }
}

/// Applies log entry `index` to the view (state, history, time), moving idempotency entries
/// to the archive once they accumulate.
fn replay_one(
    view: &mut View,
    archive: &archive::Archive,
    recent_ids_max: usize,
    index: u64,
    entry: &[u8],
) -> Result<(), Error> {
    if let Some((event, _)) = view.state.replay_entry(index, entry)? {
        view.at_ms = view.at_ms.max(event.at_ms());
        view.histories.record(index, &view.state, &event);
        archive_when_full(archive, &mut view.state, recent_ids_max)?;
    }
    view.size = index + 1;
    Ok(())
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Puts a written and synced `temporary` file in place of `path`, durably: after a crash the
/// old file or the new one is there, whole.
fn replace_durably(temporary: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(temporary, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Once the state holds `recent_ids_max` idempotency entries, moves them to the archive:
/// written durably first, then forgotten in memory.
fn archive_when_full(
    archive: &archive::Archive,
    state: &mut State,
    recent_ids_max: usize,
) -> Result<(), Error> {
    if state.recent_id_count() < recent_ids_max {
        return Ok(());
    }
    let mut recent: Vec<_> = state.recent_ids().collect();
    archive.add_set(&mut recent)?;
    state.forget_archived(&recent);
    Ok(())
}
