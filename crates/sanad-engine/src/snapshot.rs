//! Snapshots: the ledger state at a log size, so that opening a large ledger replays only the
//! entries after it. A snapshot names the log size and the Merkle root at that size; it is used
//! only when the log's own root at that size matches (so it belongs to this log, and the log
//! was not rewritten under it) and its checksum holds. Otherwise it is ignored and the state is
//! rebuilt from the whole log: the log is the truth, a snapshot only saves time.
//!
//! File: `ledger.snapshot`, written to a temporary file, fsynced and renamed into place.
//! Bytes: `sanad-snapshot/v6\n`, a postcard-encoded [`Snapshot`], then SHA-256 of all before.

use std::io::Write;
use std::path::Path;

use sanad_ledger::State;

use crate::history::Histories;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// The snapshot's file in the data folder.
pub const SNAPSHOT_FILE: &str = "ledger.snapshot";
const MAGIC: &[u8] = b"sanad-snapshot/v6\n";

/// A snapshot as read.
#[derive(Deserialize)]
pub(crate) struct Snapshot {
    /// Log entries the state reflects.
    pub(crate) size: u64,
    /// The log's Merkle root at `size`.
    pub(crate) root: [u8; 32],
    /// The latest batch time seen.
    pub(crate) at_ms: u64,
    pub(crate) state: State,
    pub(crate) histories: Histories,
    /// How many idempotency archive sets the state relies on (its recent entries exclude them).
    pub(crate) archive_sets: u32,
}

/// A snapshot as written: borrowed, so that writing one does not copy the state.
#[derive(Serialize)]
pub(crate) struct SnapshotOf<'a> {
    pub(crate) size: u64,
    pub(crate) root: [u8; 32],
    pub(crate) at_ms: u64,
    pub(crate) state: &'a State,
    pub(crate) histories: &'a Histories,
    pub(crate) archive_sets: u32,
}

/// Writes through to `inner`, hashing what passes.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hash.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams the snapshot to a temporary file, syncs it and renames it into place.
pub(crate) fn write(dir: &Path, snapshot: &SnapshotOf<'_>) -> Result<(), Error> {
    let path = dir.join(SNAPSHOT_FILE);
    let temporary = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let io = |e| Error::io(format!("writing {}", temporary.display()), e);
    let file = std::fs::File::create(&temporary).map_err(io)?;
    let mut out =
        Hashing { inner: std::io::BufWriter::with_capacity(1 << 20, file), hash: Sha256::new() };
    out.write_all(MAGIC).map_err(io)?;
    postcard::to_io(snapshot, &mut out)
        .map_err(|e| Error::Snapshot(format!("cannot write the snapshot: {e}")))?;
    let Hashing { inner: mut buffered, hash } = out;
    buffered.write_all(&hash.finalize()).map_err(io)?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    crate::replace_durably(&temporary, &path).map_err(io)
}

/// The snapshot in `dir`, if there is one and it is intact; `Err` explains why one present
/// cannot be used. Read whole and checked before it is decoded: postcard reads varints a byte
/// at a time, which through a reader costs a call per byte (a million accounts decoded in
/// 3.5 s that way); the file is a fraction of the state it decodes to.
pub(crate) fn read(dir: &Path) -> Result<Option<Snapshot>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let body = bytes.len().checked_sub(32).ok_or("snapshot is truncated")?;
    let (body, stored) = bytes.split_at(body);
    if Sha256::digest(body).as_slice() != stored {
        return Err("snapshot checksum does not match".into());
    }
    let encoded = body.strip_prefix(MAGIC).ok_or("not a version 4 snapshot")?;
    postcard::from_bytes(encoded).map(Some).map_err(|e| format!("snapshot does not decode: {e}"))
}
