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
