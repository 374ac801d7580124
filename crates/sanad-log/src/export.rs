//! Static tlog-tiles export: `checkpoint`, `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, as files that anyone can host or hand to an auditor.

use std::fs;
use std::path::Path;

use sanad_tlog::leaf_hash;
use sanad_tlog::tile::{self, TILE_WIDTH, TileId, TileReader};

use crate::store::StoreTiles;
use crate::{Error, Log, read};

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Tree size of the exported checkpoint.
    pub tree_size: u64,
    /// Hash tiles written.
    pub tiles: u64,
    /// Entry bundles written.
    pub bundles: u64,
}

fn write_file(root: &Path, relative: &str, bytes: &[u8]) -> Result<(), Error> {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    fs::write(&path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

impl Log {
    /// Writes the tlog-tiles export of the latest checkpoint into `out`. The checkpoint file
    /// is written last, so a reader never sees a checkpoint whose tiles are not yet there.
    ///
    /// # Errors
    /// I/O and storage errors.
    pub fn export(&self, out: &Path) -> Result<ExportSummary, Error> {
        let head = read(&self.shared.head).clone();
        let size = head.checkpoint.checkpoint().size();
        let tiles = StoreTiles { store: &self.shared.store, head: &head };
        let mut summary = ExportSummary { tree_size: size, tiles: 0, bundles: 0 };
        // Level 0 in one pass over the entries: each bundle and its tile of leaf hashes.
        let mut bundle = Vec::new();
        let mut leaves = Vec::with_capacity(TILE_WIDTH as usize);
        self.shared.store.for_each_entry(0, size, |index, entry| {
            tile::append_to_bundle(&mut bundle, entry)?;
            leaves.push(leaf_hash(entry));
            if leaves.len() as u64 == TILE_WIDTH || index + 1 == size {
                let id = TileId::in_tree(0, index / TILE_WIDTH, size)
                    .ok_or_else(|| Error::corrupt("bundle outside the tree"))?;
                write_file(out, &id.entries_path(), &bundle)?;
                write_file(out, &id.path(), &tile::tile_bytes(&leaves))?;
                summary.bundles += 1;
                summary.tiles += 1;
                bundle.clear();
                leaves.clear();
            }
            Ok(())
        })?;
        for id in TileId::all_in_tree(size).filter(|id| id.level > 0) {
            write_file(out, &id.path(), &tile::tile_bytes(&tiles.read_tile(id)?))?;
            summary.tiles += 1;
        }
        write_file(out, "checkpoint", &head.checkpoint.to_bytes())?;
        Ok(summary)
    }
}

/// A tlog-tiles export read as a [`Backend`](crate::Backend), read-only: what a restore copies into a new
/// store (see [`crate::copy`]) when the store was lost and an export — a backup, a mirror of
/// `/log/` — survived. It trusts nothing it reads: opening the copy recomputes the root from
/// the copied entries and tiles and checks it against the checkpoint's signature with the key.
/// (Run `sanad log verify` on the export first to have what is wrong in it named.)
#[derive(Debug)]
pub struct ExportBackend {
    dir: std::path::PathBuf,
    origin: String,
    size: u64,
    checkpoint: Vec<u8>,
}

impl ExportBackend {
    /// Reads the export's checkpoint (its origin and tree size; the signature is checked when
    /// the copy is opened).
    ///
    /// # Errors
    /// [`Error::Io`] when the checkpoint cannot be read; [`Error::Corrupt`] when it does not
    /// start with an origin and a tree size.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("checkpoint");
        let checkpoint =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let text = String::from_utf8_lossy(&checkpoint);
        let mut lines = text.lines();
        let origin = lines.next().filter(|origin| !origin.is_empty());
        let size = lines.next().and_then(|size| size.parse::<u64>().ok());
        let (Some(origin), Some(size)) = (origin, size) else {
            return Err(Error::corrupt(format!("{} is not a checkpoint", path.display())));
        };
        Ok(Self { dir: dir.to_owned(), origin: origin.to_owned(), size, checkpoint })
    }

    fn read(&self, relative: &str) -> Result<Vec<u8>, Error> {
        let path = self.dir.join(relative);
        fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }

    fn read_only() -> Error {
        Error::corrupt("an export is read-only")
    }
}

impl crate::Backend for ExportBackend {
    fn origin(&self) -> Result<Option<String>, Error> {
        Ok(Some(self.origin.clone()))
    }

    fn initialise(&self, _origin: &str, _checkpoint: &[u8]) -> Result<(), Error> {
        Err(Self::read_only())
    }

    fn checkpoint(&self) -> Result<Vec<u8>, Error> {
        Ok(self.checkpoint.clone())
    }

    fn stored_size(&self) -> Result<u64, Error> {
        Ok(self.size)
    }

    fn for_each_entry(
        &self,
        start: u64,
        end: u64,
        visit: &mut crate::EntryVisitor<'_>,
    ) -> Result<(), Error> {
        if start >= end {
            return Ok(());
        }
        for bundle in start / TILE_WIDTH..=(end - 1) / TILE_WIDTH {
            let id = TileId::in_tree(0, bundle, self.size)
                .ok_or_else(|| Error::corrupt(format!("entry {start} is beyond the export")))?;
            let bytes = self.read(&id.entries_path())?;
            let entries = tile::parse_bundle(&bytes)?;
            if entries.len() != usize::from(id.width()) {
                return Err(Error::corrupt(format!(
                    "{} holds {} entries, not {}",
                    id.entries_path(),
                    entries.len(),
                    id.width()
                )));
            }
            for (offset, entry) in (0u64..).zip(entries) {
                let index = bundle * TILE_WIDTH + offset;
                if (start..end).contains(&index) {
                    visit(index, entry)?;
                }
            }
        }
        Ok(())
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, Error> {
        match TileId::in_tree(level, index, self.size).filter(TileId::is_full) {
            Some(id) if level > 0 => self.read(&id.path()).map(Some),
            _ => Ok(None),
        }
    }

    fn commit(&self, _commit: &crate::Commit<'_>) -> Result<(), Error> {
        Err(Self::read_only())
    }
}
