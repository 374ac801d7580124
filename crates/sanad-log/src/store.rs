//! The log's storage above its backend: the head rebuilt and checked on open, tiles read from
//! the backend or the right edge in memory, and commits passed down. Which backend keeps the
//! bytes (sled, PostgreSQL) nothing here knows.

use std::sync::Arc;

use sanad_tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use sanad_tlog::hash::{Hash, leaf_hash, root_of_leaf_hashes};
use sanad_tlog::tile::{
    self, CompletedTile, TILE_HEIGHT, TILE_WIDTH, TileEdge, TileHashSource, TileId, TileReader,
};
use sanad_tlog::{NoteSigner, NoteVerifier};

use crate::Error;
use crate::backend::{Backend, Commit};

/// What readers see: the committed tree size, its right edge and its checkpoint.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) edge: TileEdge,
    pub(crate) checkpoint: SignedCheckpoint,
}

/// One log's storage.
#[derive(Clone)]
pub(crate) struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    pub(crate) fn origin(&self) -> Result<Option<String>, Error> {
        self.backend.origin()
    }

    /// Writes the origin and the signed checkpoint of the empty tree.
    pub(crate) fn initialise(&self, signer: &NoteSigner) -> Result<Head, Error> {
        let edge = TileEdge::new();
        let checkpoint = Checkpoint::new(signer.name(), 0, edge.root())?.sign(&[signer])?;
        self.backend.initialise(signer.name(), &checkpoint.to_bytes())?;
        Ok(Head { edge, checkpoint })
    }

    /// Whether other processes may append to the store too (see [`Backend::is_shared`]).
    pub(crate) fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// Begins a turn; returns the number of durable entries (see [`Backend::begin_turn`]).
    pub(crate) fn begin_turn(&self) -> Result<u64, Error> {
        self.backend.begin_turn()
    }

    /// The number of entries committed, without waiting (see [`Backend::committed_size`]).
    pub(crate) fn committed_size(&self) -> Result<u64, Error> {
        self.backend.committed_size()
    }

    /// Ends a turn that appended nothing.
    pub(crate) fn end_turn(&self) -> Result<(), Error> {
        self.backend.end_turn()
    }

    /// The stored checkpoint's bytes.
    pub(crate) fn checkpoint_bytes(&self) -> Result<Vec<u8>, Error> {
        self.backend.checkpoint()
    }

    /// Rebuilds the integrated head (the tree at the stored checkpoint) and checks it against
    /// the checkpoint. Also returns the number of durable entries, which exceeds the
    /// checkpoint's size when a crash came before their integration was written.
    pub(crate) fn load_head(&self, verifier: &NoteVerifier) -> Result<(Head, u64), Error> {
        let bytes = self.checkpoint_bytes()?;
        let checkpoint = SignedCheckpoint::parse_and_verify(&bytes, verifier)
            .map_err(|e| Error::corrupt(format!("stored checkpoint does not verify: {e}")))?;
        let size = checkpoint.checkpoint().size();
        let durable = self.backend.stored_size()?;
        if durable < size {
            return Err(Error::corrupt(format!(
                "stored entries give size {durable}, the checkpoint says {size}"
            )));
        }
        let edge = self.rebuild_edge(size)?;
        if edge.root() != checkpoint.checkpoint().root() {
            return Err(Error::corrupt(format!(
                "recomputed root at size {size} differs from the checkpoint"
            )));
        }
        Ok((Head { edge, checkpoint }, durable))
    }

    fn rebuild_edge(&self, size: u64) -> Result<TileEdge, Error> {
        let mut partial: Vec<Vec<Hash>> = Vec::new();
        // Level 0: the leaf hashes of the entries after the last full tile.
        let start = size - size % TILE_WIDTH;
        let mut leaves = Vec::new();
        self.for_each_entry(start, size, |_, entry| {
            leaves.push(leaf_hash(entry));
            Ok(())
        })?;
        partial.push(leaves);
        // Level l: the hashes of the full tiles at level l-1 that are not yet in a full tile.
        for level in 1..8u8 {
            let shift = u32::from(level) * u32::from(TILE_HEIGHT);
            let width = size.checked_shr(shift).unwrap_or(0) % TILE_WIDTH;
            let first =
                (size.checked_shr(shift + u32::from(TILE_HEIGHT)).unwrap_or(0)) * TILE_WIDTH;
            let mut hashes = Vec::with_capacity(width as usize);
            for index in first..first + width {
                let tile = self.full_tile(level - 1, index)?;
                hashes.push(root_of_leaf_hashes(&tile));
            }
            partial.push(hashes);
        }
        Ok(TileEdge::from_partial_tiles(size, partial)?)
    }

    fn full_tile(&self, level: u8, index: u64) -> Result<Vec<Hash>, Error> {
        if level == 0 {
            let mut leaves = Vec::with_capacity(TILE_WIDTH as usize);
            let start = index * TILE_WIDTH;
            self.for_each_entry(start, start + TILE_WIDTH, |_, entry| {
                leaves.push(leaf_hash(entry));
                Ok(())
            })?;
            if leaves.len() != TILE_WIDTH as usize {
                return Err(Error::corrupt(format!("entries of tile 0/{index} are missing")));
            }
            return Ok(leaves);
        }
        let bytes = self.backend.tile(level, index)?;
        let bytes = bytes.ok_or_else(|| Error::corrupt(format!("missing tile {level}/{index}")))?;
        Ok(tile::parse_tile(&bytes, TILE_WIDTH as u16)?)
    }

    /// Calls `visit(index, entry)` for every entry in `[start, end)`, in order.
    pub(crate) fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.backend.for_each_entry(start, end, &mut visit)
    }

    /// Writes one commit atomically and durably (level-0 tiles are not stored).
    pub(crate) fn write(
        &self,
        first_index: u64,
        entries: &[&[u8]],
        tiles: &[CompletedTile],
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Result<(), Error> {
        let upper: Vec<CompletedTile> =
            tiles.iter().filter(|tile| tile.id.level > 0).cloned().collect();
        self.backend.commit(&Commit { first_index, entries, tiles: &upper, checkpoint })
    }
}

/// Reads tiles of a committed tree: full tiles from the backend, the right edge from memory. A
/// tile of a smaller tree is a prefix of the same tile now, since tiles only grow.
pub(crate) struct StoreTiles<'a> {
    pub(crate) store: &'a Store,
    pub(crate) head: &'a Head,
}

impl TileReader for StoreTiles<'_> {
    type Error = Error;

    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, Error> {
        let width = usize::from(tile.width());
        if let Some((edge_tile, hashes)) = self.head.edge.partial_tile(tile.level)
            && edge_tile.index == tile.index
            && hashes.len() >= width
        {
            return Ok(hashes[..width].to_vec());
        }
        let mut hashes = self.store.full_tile(tile.level, tile.index)?;
        hashes.truncate(width);
        Ok(hashes)
    }
}

impl StoreTiles<'_> {
    pub(crate) fn hash_source(&self, size: u64) -> TileHashSource<&Self> {
        TileHashSource::new(self, size)
    }
}
