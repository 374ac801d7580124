//! Snapshots: the ledger state at a log size, so that opening a large ledger replays only the
//! entries after it. A snapshot names the log size and the Merkle root at that size; it is used
//! only when the log's own root at that size matches (so it belongs to this log, and the log
//! was not rewritten under it) and its checksum holds. Otherwise it is ignored and the state is
//! rebuilt from the whole log: the log is the truth, a snapshot only saves time.
//!
//! File: `ledger.snapshot`, written to a temporary file, fsynced and renamed into place.
//! Bytes: `sanad-snapshot/v1\n`, a CBOR-encoded [`Snapshot`], then SHA-256 of all before.

use std::io::Write as _;
use std::path::Path;

use sanad_ledger::State;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// The snapshot's file in the data folder.
pub const SNAPSHOT_FILE: &str = "ledger.snapshot";
const MAGIC: &[u8] = b"sanad-snapshot/v1\n";

#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// Log entries the state reflects.
    pub(crate) size: u64,
    /// The log's Merkle root at `size`.
    pub(crate) root: [u8; 32],
    /// The latest batch time seen.
    pub(crate) at_ms: u64,
    pub(crate) state: State,
    pub(crate) histories: crate::history::Histories,
}

pub(crate) fn write(dir: &Path, snapshot: &Snapshot) -> Result<(), Error> {
    let mut bytes = MAGIC.to_vec();
    ciborium::into_writer(snapshot, &mut bytes)
        .map_err(|e| Error::Snapshot(format!("cannot encode the snapshot: {e}")))?;
    let checksum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&checksum);
    let path = dir.join(SNAPSHOT_FILE);
    let temporary = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let io = |e| Error::io(format!("writing {}", temporary.display()), e);
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// The snapshot in `dir`, if there is one and it is intact; `Err` explains why one present
/// cannot be used.
pub(crate) fn read(dir: &Path) -> Result<Option<Snapshot>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let Some(body) = bytes.len().checked_sub(32).map(|end| &bytes[..end]) else {
        return Err("snapshot is truncated".into());
    };
    if Sha256::digest(body).as_slice() != &bytes[body.len()..] {
        return Err("snapshot checksum does not match".into());
    }
    let encoded = body.strip_prefix(MAGIC).ok_or("not a version 1 snapshot")?;
    ciborium::from_reader(encoded).map(Some).map_err(|e| format!("snapshot does not decode: {e}"))
}
