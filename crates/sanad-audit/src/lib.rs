//! # sanad-audit: verify an exported log offline
//!
//! [`verify_export`] checks a folder in the C2SP tlog-tiles layout — what `sanad log export`
//! writes, or any mirror of it — with nothing but the log's verifier key:
//!
//! 1. the checkpoint is signed by the key, and its origin is the key's name — following the
//!    log's signed key rotation entries from the key given to the log's current key;
//! 2. every entry bundle parses and holds exactly the entries its path says;
//! 3. every hash tile, at every level, equals the tile recomputed from the entries;
//! 4. the root recomputed from the entries equals the checkpoint's root;
//! 5. with an older checkpoint (`since`), the current tree is proved consistent with it, so a
//!    rewritten or forked history fails.
//!
//! [`verify_tiles`] does the same from any [`TileSource`] (a folder, or a live server's
//! `/log/` over HTTP in the `sanad` command line), handing every entry to a visitor as it goes;
//! [`money::MoneyAudit`] is such a visitor: it replays the entries through the ledger's rules
//! and checks the money (conservation, negative balances, vouchers, settlements, principals).
//!
//! It depends on the format crate and the pure ledger rules only, never on Sanad's storage, so
//! its verdict does not rest on the code that wrote the log. Every failure names the file and
//! entry that did not hold.

use std::fs;
use std::path::{Path, PathBuf};

#[cfg(feature = "live")]
pub mod live;
pub mod money;

use sanad_tlog::checkpoint::SignedCheckpoint;
use sanad_tlog::hash::{Hash, leaf_hash, root_of_leaf_hashes};
use sanad_tlog::rotation::KeyRotation;
use sanad_tlog::tile::{self, TILE_WIDTH, TileHashSource, TileId, TileReader};
use sanad_tlog::{NoteVerifier, tree};

/// Why an export failed verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file the export must have could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be fetched from a live log.
    #[error("cannot fetch {url}: {reason}")]
    Fetch {
        /// Where from.
        url: String,
        /// Why not.
        reason: String,
    },
    /// The checkpoint (or the older one given with `since`) is malformed or not signed by the
    /// key.
    #[error("{which} checkpoint")]
    Checkpoint {
        /// "current" or "older".
        which: &'static str,
        /// What failed.
        #[source]
        source: sanad_tlog::Error,
    },
    /// An entry bundle is malformed or holds the wrong number of entries.
    #[error("entry bundle {path}: {reason}")]
    Bundle {
        /// The bundle's path in the export.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A hash tile has the wrong size.
    #[error("tile {path}")]
    TileFormat {
        /// The tile's path.
        path: String,
        /// What is wrong.
        #[source]
        source: sanad_tlog::Error,
    },
    /// A hash tile differs from the one recomputed from the entries.
    #[error(
        "tile {path} does not match the entries: hash {position} differs (first leaf it covers: entry {first_entry})"
    )]
    TileMismatch {
        /// The tile's path.
        path: String,
        /// Position of the first differing hash in the tile.
        position: usize,
        /// The first entry index under that hash.
        first_entry: u64,
    },
    /// The root recomputed from the entries differs from the checkpoint's.
    #[error("root recomputed from the entries at size {size} differs from the checkpoint")]
    RootMismatch {
        /// The tree size.
        size: u64,
    },
    /// A key rotation entry is malformed, or hands over from a key the auditor does not trust.
    #[error("key rotation entry {index}: {reason}")]
    Rotation {
        /// The entry's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// The older checkpoint is not consistent with the current one: history was rewritten or
    /// forked.
    #[error(
        "the tree of size {new_size} is not consistent with the older checkpoint of size {old_size}: {reason}"
    )]
    Inconsistent {
        /// The older size.
        old_size: u64,
        /// The current size.
        new_size: u64,
        /// What failed.
        reason: String,
    },
}

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    /// The log's origin.
    pub origin: String,
    /// The verified tree size.
    pub tree_size: u64,
    /// The verified root.
    pub root: Hash,
    /// Hash tiles compared.
    pub tiles_checked: u64,
    /// Size of the older checkpoint proved consistent, if one was given.
    pub consistent_with: Option<u64>,
    /// Key rotations followed: the entry index and the new verifier key.
    pub rotations: Vec<(u64, String)>,
}

/// Where the files of a tlog-tiles log are read from, by their path in the layout
/// (`checkpoint`, `tile/0/000`, `tile/entries/x001/234.p/5`, …).
pub trait TileSource {
    /// The file at `relative`.
    ///
    /// # Errors
    /// [`AuditError::Read`] (or [`AuditError::Fetch`]) when it cannot be had.
    fn read(&self, relative: &str) -> Result<Vec<u8>, AuditError>;
}

/// An export folder.
#[derive(Clone, Copy, Debug)]
pub struct Folder<'a>(pub &'a Path);

impl TileSource for Folder<'_> {
    fn read(&self, relative: &str) -> Result<Vec<u8>, AuditError> {
        let path = self.0.join(relative);
        fs::read(&path).map_err(|source| AuditError::Read { path, source })
    }
}

fn read(source: &dyn TileSource, relative: &str) -> Result<Vec<u8>, AuditError> {
    source.read(relative)
}

/// Verifies the export in `dir` with `verifier`; with `since`, also proves the current tree
/// consistent with that older signed checkpoint. `progress(entries_done, tree_size)` is called
/// as entries are checked.
///
/// # Errors
/// The first [`AuditError`] found.
pub fn verify_export(
    dir: &Path,
    verifier: &NoteVerifier,
    since: Option<&[u8]>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport, AuditError> {
    verify_tiles(&Folder(dir), verifier, since, progress, &mut |_, _| {})
}

/// [`verify_export`] from any [`TileSource`], calling `visit(index, entry)` for every entry in
/// order as its bundle is read (before the tiles above it are checked: a visitor's findings
/// count only if the verification succeeds).
///
/// # Errors
/// The first [`AuditError`] found.
pub fn verify_tiles(
    dir: &dyn TileSource,
    verifier: &NoteVerifier,
    since: Option<&[u8]>,
    progress: &mut dyn FnMut(u64, u64),
    visit: &mut dyn FnMut(u64, &[u8]),
) -> Result<ExportReport, AuditError> {
    // The signature is checked once the entries have shown which key is current.
    let checkpoint_bytes = read(dir, "checkpoint")?;
    let unverified = SignedCheckpoint::parse_unverified(&checkpoint_bytes)
        .map_err(|source| AuditError::Checkpoint { which: "current", source })?;
    let size = unverified.checkpoint().size();
    let mut keys = KeyChain::new(verifier.clone());

    // Level 0: entries -> leaf hashes, compared with tile/0; full tiles feed level 1.
    let mut upper: Vec<Vec<Hash>> = vec![Vec::new()];
    let mut last_level0 = Vec::new();
    let mut tiles_checked = 0u64;
    for index in 0..size.div_ceil(TILE_WIDTH) {
        let id = tile_in_tree(0, index, size);
        let path = id.entries_path();
        let bytes = read(dir, &path)?;
        let entries = tile::parse_bundle(&bytes)
            .map_err(|e| AuditError::Bundle { path: path.clone(), reason: e.to_string() })?;
        if entries.len() != usize::from(id.width()) {
            return Err(AuditError::Bundle {
                path,
                reason: format!("holds {} entries, expected {}", entries.len(), id.width()),
            });
        }
        for (offset, entry) in entries.iter().enumerate() {
            let entry_index = index * TILE_WIDTH + offset as u64;
            if KeyRotation::is_rotation_entry(entry) {
                keys.follow(entry_index, entry)?;
            }
            visit(entry_index, entry);
        }
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        compare_tile(dir, id, &leaves)?;
        tiles_checked += 1;
        if id.is_full() {
            upper[0].push(root_of_leaf_hashes(&leaves));
        } else {
            last_level0 = leaves;
        }
        progress(index * TILE_WIDTH + u64::from(id.width()), size);
    }

    // Levels 1 and up: hashes of full tiles below, compared with tile/<L>.
    // upper[l - 1] holds the hashes that tile level l is made of.
    for level in 1u8..8 {
        let below = &upper[usize::from(level) - 1];
        if below.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for (index, chunk) in below.chunks(TILE_WIDTH as usize).enumerate() {
            let id = tile_in_tree(level, index as u64, size);
            compare_tile(dir, id, chunk)?;
            tiles_checked += 1;
            if id.is_full() {
                next.push(root_of_leaf_hashes(chunk));
            }
        }
        upper.push(next);
    }

    let computed = ComputedTiles { last_level0, upper };
    let root = tree::root(&TileHashSource::new(&computed, size), size)
        .map_err(|_| AuditError::RootMismatch { size })?;
    if root != unverified.checkpoint().root() {
        return Err(AuditError::RootMismatch { size });
    }
    // Only the newest key may sign the current checkpoint: a retired key signs nothing new.
    let checkpoint = SignedCheckpoint::parse_and_verify(&checkpoint_bytes, keys.current())
        .map_err(|source| AuditError::Checkpoint { which: "current", source })?;

    let consistent_with = match since {
        None => None,
        Some(older) => Some(check_consistency(dir, &keys, older, size, root)?),
    };
    Ok(ExportReport {
        origin: checkpoint.checkpoint().origin().to_owned(),
        tree_size: size,
        root,
        tiles_checked,
        consistent_with,
        rotations: keys.rotations,
    })
}

/// The keys an auditor trusts: the one given, then each one it handed the log over to.
struct KeyChain {
    // Invariant: non-empty; each key after the first was handed over by the one before it.
    keys: Vec<NoteVerifier>,
    rotations: Vec<(u64, String)>,
}

impl KeyChain {
    fn new(first: NoteVerifier) -> Self {
        Self { keys: vec![first], rotations: Vec::new() }
    }

    fn current(&self) -> &NoteVerifier {
        // Invariant: the chain starts with one key and only grows.
        self.keys.last().unwrap_or_else(|| unreachable!("the chain is never empty"))
    }

    fn follow(&mut self, index: u64, entry: &[u8]) -> Result<(), AuditError> {
        let rotation = KeyRotation::parse_and_verify(entry)
            .map_err(|e| AuditError::Rotation { index, reason: chain(&e) })?;
        if rotation.old == *self.current() {
            self.rotations.push((index, rotation.new.to_vkey()));
            self.keys.push(rotation.new);
            Ok(())
        } else if self.keys.contains(&rotation.new) {
            // A hand-over to a key already trusted (the auditor started from a newer key).
            Ok(())
        } else {
            Err(AuditError::Rotation {
                index,
                reason: format!(
                    "hands over from {}, which is not the trusted key {}",
                    rotation.old.to_vkey(),
                    self.current().to_vkey()
                ),
            })
        }
    }
}

/// An error and its sources, as one line (`outer: inner: innermost`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn tile_in_tree(level: u8, index: u64, size: u64) -> TileId {
    // Invariant: callers only ask for tiles below the tree's tile count at that level.
    TileId::in_tree(level, index, size).unwrap_or_else(|| unreachable!("tile inside the tree"))
}

fn compare_tile(dir: &dyn TileSource, id: TileId, computed: &[Hash]) -> Result<(), AuditError> {
    let path = id.path();
    let bytes = read(dir, &path)?;
    let stored = tile::parse_tile(&bytes, id.width())
        .map_err(|source| AuditError::TileFormat { path: path.clone(), source })?;
    if let Some(position) = stored.iter().zip(computed).position(|(a, b)| a != b) {
        let leaves_per_hash = 1u64 << (8 * u32::from(id.level));
        let first_entry = (id.index * TILE_WIDTH + position as u64) * leaves_per_hash;
        return Err(AuditError::TileMismatch { path, position, first_entry });
    }
    Ok(())
}

fn check_consistency(
    dir: &dyn TileSource,
    keys: &KeyChain,
    older: &[u8],
    new_size: u64,
    new_root: Hash,
) -> Result<u64, AuditError> {
    // An older checkpoint may be signed by any key of the chain that was current at its time.
    let older = keys
        .keys
        .iter()
        .find_map(|key| SignedCheckpoint::parse_and_verify(older, key).ok())
        .map_or_else(|| SignedCheckpoint::parse_and_verify(older, keys.current()), Ok)
        .map_err(|source| AuditError::Checkpoint { which: "older", source })?;
    let old_size = older.checkpoint().size();
    let inconsistent = |reason: String| AuditError::Inconsistent { old_size, new_size, reason };
    if old_size > new_size {
        return Err(inconsistent("the older checkpoint is larger: the log shrank".into()));
    }
    let source = TileHashSource::new(DirTiles(dir), new_size);
    let proof = tree::consistency_proof(&source, old_size, new_size).map_err(|e| {
        inconsistent(format!("cannot build the proof from the tiles: {}", chain(&e)))
    })?;
    sanad_tlog::verify_consistency(
        old_size,
        new_size,
        &proof,
        &older.checkpoint().root(),
        &new_root,
    )
    .map_err(|e| inconsistent(e.to_string()))?;
    Ok(old_size)
}

/// Tiles recomputed from the entries: every hash above level 0, and the last level-0 tile.
struct ComputedTiles {
    last_level0: Vec<Hash>,
    upper: Vec<Vec<Hash>>,
}

impl TileReader for ComputedTiles {
    type Error = ();

    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, ()> {
        let width = usize::from(tile.width());
        if tile.level == 0 {
            return if tile.is_full() { Err(()) } else { Ok(self.last_level0.clone()) };
        }
        let level = self.upper.get(usize::from(tile.level) - 1).ok_or(())?;
        let start = usize::try_from(tile.index * TILE_WIDTH).map_err(|_| ())?;
        level.get(start..start + width).map(<[Hash]>::to_vec).ok_or(())
    }
}

/// Tiles read from the source (already compared with the recomputed ones).
struct DirTiles<'a>(&'a dyn TileSource);

impl TileReader for DirTiles<'_> {
    type Error = AuditError;

    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, AuditError> {
        let path = tile.path();
        let bytes = read(self.0, &path)?;
        tile::parse_tile(&bytes, tile.width())
            .map_err(|source| AuditError::TileFormat { path, source })
    }
}

#[cfg(test)]
mod tests {
    use sanad_tlog::NoteSigner;

    use super::*;

    #[test]
    fn a_rotation_from_an_untrusted_key_is_refused() {
        let trusted = NoteSigner::from_seed("example.org/log", &[1; 32]).unwrap();
        let attacker = NoteSigner::from_seed("example.org/log", &[2; 32]).unwrap();
        let attacker_next = NoteSigner::from_seed("example.org/log", &[3; 32]).unwrap();
        let mut chain = KeyChain::new(trusted.verifier());
        let forged = KeyRotation::sign(&attacker, &attacker_next).unwrap();
        assert!(matches!(chain.follow(7, &forged), Err(AuditError::Rotation { index: 7, .. })));
        assert_eq!(chain.current(), &trusted.verifier());

        let genuine = KeyRotation::sign(&trusted, &attacker).unwrap();
        chain.follow(8, &genuine).unwrap();
        assert_eq!(chain.current(), &attacker.verifier());
        assert!(chain.follow(9, b"sanad.key-rotation/v1\nnot a note").is_err());
    }
}
