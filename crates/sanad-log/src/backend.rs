//! Where a log keeps its entries, full tiles and checkpoint: the [`Backend`] trait, which sled
//! (the embedded default, [`crate::SledBackend`]) and PostgreSQL (`sanad-postgres`) implement.
//! Everything above it — group commit, integration, proofs, exports — is the same code on
//! either; a backend only stores and reads, and makes each commit atomic and durable.

use sanad_tlog::checkpoint::SignedCheckpoint;
use sanad_tlog::tile::CompletedTile;

use crate::Error;

/// What one commit writes: entries at `first_index`, the full tiles of level 1 and above that
/// integration completed, and the checkpoint that covers them. Level-0 tiles are never stored:
/// they are the entries' leaf hashes.
#[derive(Clone, Copy, Debug)]
pub struct Commit<'a> {
    /// The index of the first entry.
    pub first_index: u64,
    /// The entries, in order (possibly none: an integration written alone).
    pub entries: &'a [&'a [u8]],
    /// Full tiles, level 1 and above.
    pub tiles: &'a [CompletedTile],
    /// The checkpoint to store, if integration signed one.
    pub checkpoint: Option<&'a SignedCheckpoint>,
}

/// What [`Backend::for_each_entry`] calls with each entry and its index.
pub type EntryVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<(), Error> + 'a;

/// A log's storage.
///
/// Contract: [`Backend::commit`] writes everything it is given or nothing, and returns only
/// once it is durable; entries are never changed once written; a tile is written once and
/// never changed; the checkpoint only moves forward.
///
/// A backend that several processes may write at once ([`Backend::is_shared`], PostgreSQL)
/// also serialises their appends in *turns*: a process begins a turn
/// ([`Backend::begin_turn`]), which waits until no other process holds one and tells it how
/// many entries are durable; it reads and replays what others appended since it last looked,
/// decides, and commits, which ends the turn. So every append is decided on the whole log
/// before it, and two writers can never both append at one index. It must also refuse a
/// commit with entries whose `first_index` is not the next index.
pub trait Backend: Send + Sync {
    /// Whether other processes may append to this store while this one does. A log on a
    /// shared store takes a turn for each commit and catches up on other writers' entries.
    /// `false` by default: an embedded store that one process holds locked.
    fn is_shared(&self) -> bool {
        false
    }

    /// Begins a turn to append: waits until no other process holds one, then returns the
    /// number of durable entries, which stays so until the turn ends with the next
    /// [`Backend::commit`] that carries entries, or with [`Backend::end_turn`]. By default,
    /// for a store that is not shared, the stored size.
    ///
    /// # Errors
    /// Storage errors (and then no turn is held).
    fn begin_turn(&self) -> Result<u64, Error> {
        self.stored_size()
    }

    /// Ends a turn that appended nothing (nothing if none is held).
    ///
    /// # Errors
    /// Storage errors.
    fn end_turn(&self) -> Result<(), Error> {
        Ok(())
    }

    /// The log's origin, `None` for a store never initialised.
    ///
    /// # Errors
    /// Storage errors.
    fn origin(&self) -> Result<Option<String>, Error>;

    /// Writes the origin and the signed checkpoint of the empty tree, durably.
    ///
    /// # Errors
    /// Storage errors (among them, on a store that holds a log already).
    fn initialise(&self, origin: &str, checkpoint: &[u8]) -> Result<(), Error>;

    /// The latest stored checkpoint's bytes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when there is none; storage errors.
    fn checkpoint(&self) -> Result<Vec<u8>, Error>;

    /// The number of durable entries (which may exceed the checkpoint's size after a crash
    /// between a commit and its integration).
    ///
    /// # Errors
    /// Storage errors.
    fn stored_size(&self) -> Result<u64, Error>;

    /// The number of entries committed, read without waiting for any writer (on a shared
    /// store, to tell whether other processes appended since this one last looked). By
    /// default, [`Backend::stored_size`].
    ///
    /// # Errors
    /// Storage errors.
    fn committed_size(&self) -> Result<u64, Error> {
        self.stored_size()
    }

    /// Calls `visit(index, entry)` for every entry in `[start, end)`, in order.
    ///
    /// # Errors
    /// Storage errors, or the first error `visit` returns.
    fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), Error>;

    /// A full tile of level 1 or above (256 hashes), `None` when not stored.
    ///
    /// # Errors
    /// Storage errors.
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, Error>;

    /// Writes one commit atomically and durably; one with entries ends the turn it was
    /// decided in. One without entries (tiles and a checkpoint integration finished) needs
    /// no turn, and a checkpoint older than the one stored is not written.
    ///
    /// # Errors
    /// Storage errors; then nothing of it may be visible after a restart.
    fn commit(&self, commit: &Commit<'_>) -> Result<(), Error>;
}

/// Entries copied per commit by [`copy`].
const COPY_BATCH: u64 = 8_192;

/// Copies a whole log from one backend to another, empty one (sled to PostgreSQL, for an
/// agency that outgrows one machine): every durable entry in commits of 8,192, every
/// full tile, and the latest checkpoint, byte for byte. Returns the number of entries copied.
/// `progress(done, total)` is told as it goes.
///
/// Open the copy with [`crate::Log::open_on`] afterwards: that recomputes the root from the
/// copied entries and tiles and checks it against the signed checkpoint. An interrupted copy
/// leaves a target that refuses to open; empty it and copy again.
///
/// # Errors
/// [`Error::Corrupt`] when the source holds no log or the target holds one; storage errors of
/// either side.
pub fn copy(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, Error> {
    let origin = from.origin()?.ok_or_else(|| Error::corrupt("the source holds no log"))?;
    if let Some(existing) = to.origin()? {
        return Err(Error::corrupt(format!("the target holds a log already ({existing})")));
    }
    let checkpoint = from.checkpoint()?;
    let size = from.stored_size()?;
    to.initialise(&origin, &checkpoint)?;
    let mut first = 0;
    while first < size {
        let end = (first + COPY_BATCH).min(size);
        let mut entries: Vec<Vec<u8>> = Vec::with_capacity((end - first) as usize);
        from.for_each_entry(first, end, &mut |_, entry| {
            entries.push(entry.to_vec());
            Ok(())
        })?;
        let slices: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        to.commit(&Commit { first_index: first, entries: &slices, tiles: &[], checkpoint: None })?;
        first = end;
        progress(first, size);
    }
    // The full tiles above level 0, level by level.
    for level in 1..8u8 {
        let mut tiles = Vec::new();
        let mut index = 0;
        while let Some(id) = sanad_tlog::tile::TileId::in_tree(level, index, size)
            .filter(sanad_tlog::tile::TileId::is_full)
        {
            let bytes = from
                .tile(level, index)?
                .ok_or_else(|| Error::corrupt(format!("the source lacks tile {level}/{index}")))?;
            let hashes = sanad_tlog::tile::parse_tile(&bytes, id.width())?;
            tiles.push(CompletedTile { id, hashes });
            index += 1;
        }
        if tiles.is_empty() {
            break;
        }
        for chunk in tiles.chunks(64) {
            let commit = Commit { first_index: size, entries: &[], tiles: chunk, checkpoint: None };
            to.commit(&commit)?;
        }
    }
    Ok(size)
}
