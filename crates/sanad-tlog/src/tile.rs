//! Tiles and entry bundles (c2sp.org/tlog-tiles): paths, encodings, which tiles a tree of a
//! given size has, hashes read from tiles, and the in-memory right edge of a growing tree.
//!
//! A tile at level `L` holds up to 256 consecutive hashes of perfect subtrees of `256^L` leaves;
//! level 0 holds leaf hashes. A full tile has 256 hashes; the right edge of the tree is served
//! as partial tiles (`.p/<W>`), which never feed the level above.

use std::fmt::Write as _;

use crate::Error;
use crate::hash::{HASH_SIZE, Hash, root_of_leaf_hashes};
use crate::limits::ENTRY_SIZE_MAX;
use crate::tree::HashSource;

/// Tile height: each tile spans 8 levels of the tree (c2sp.org/tlog-tiles).
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile: `2^TILE_HEIGHT`.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Bytes in a full tile.
pub const FULL_TILE_SIZE: usize = TILE_WIDTH as usize * HASH_SIZE;

/// Which tile: level, index and width (256 for a full tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level (0 holds leaf hashes).
    pub level: u8,
    /// Tile index at that level.
    pub index: u64,
    // Invariant: 1 <= width <= 256.
    width: u16,
}

impl TileId {
    /// A tile id.
    ///
    /// # Errors
    /// [`Error::TilePath`] when `width` is 0 or above 256, or the level above 63.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Self, Error> {
        if width == 0 || u64::from(width) > TILE_WIDTH || level > 63 {
            return Err(Error::TilePath { reason: "width or level out of range" });
        }
        Ok(Self { level, index, width })
    }

    /// How many hashes (or entries, for a bundle) the tile holds.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile is full.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The tile of hashes at `level`, number `index`, as it exists in a tree of `tree_size`
    /// leaves; `None` when the tree has no such tile yet.
    pub fn in_tree(level: u8, index: u64, tree_size: u64) -> Option<Self> {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let nodes = tree_size.checked_shr(shift).unwrap_or(0);
        let full = nodes >> TILE_HEIGHT;
        if index < full {
            return Some(Self { level, index, width: TILE_WIDTH as u16 });
        }
        let width = nodes % TILE_WIDTH;
        (index == full && width > 0).then_some(Self { level, index, width: width as u16 })
    }

    /// Every hash tile of a tree of `tree_size` leaves, level by level, in index order.
    pub fn all_in_tree(tree_size: u64) -> impl Iterator<Item = Self> {
        (0u8..=7).flat_map(move |level| {
            let shift = u32::from(level) * u32::from(TILE_HEIGHT);
            let nodes = tree_size.checked_shr(shift).unwrap_or(0);
            let count = nodes.div_ceil(TILE_WIDTH);
            (0..count).filter_map(move |index| Self::in_tree(level, index, tree_size))
        })
    }

    /// The path of this hash tile: `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, self.index_suffix())
    }

    /// The path of the entry bundle with the same index and width: `tile/entries/<N>[.p/<W>]`.
    /// Only meaningful for level-0 tiles.
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", self.index_suffix())
    }

    fn index_suffix(&self) -> String {
        let mut out = index_path(self.index);
        if !self.is_full() {
            let _ = write!(out, ".p/{}", self.width);
        }
        out
    }

    /// Parses `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`; returns the tile id and
    /// whether it names an entry bundle.
    ///
    /// # Errors
    /// [`Error::TilePath`] for anything that is not a canonical tile path.
    pub fn parse_path(path: &str) -> Result<(Self, bool), Error> {
        let bad = |reason| Error::TilePath { reason };
        let rest = path.strip_prefix("tile/").ok_or(bad("no tile/ prefix"))?;
        let (level_text, rest) = rest.split_once('/').ok_or(bad("no level"))?;
        let (level, entries) = if level_text == "entries" {
            (0, true)
        } else {
            let level: u8 = parse_canonical_decimal(level_text).ok_or(bad("bad level"))?;
            (level, false)
        };
        let (index_text, width) = match rest.split_once(".p/") {
            Some((index_text, width_text)) => {
                let width: u16 = parse_canonical_decimal(width_text).ok_or(bad("bad width"))?;
                if width == 0 || u64::from(width) >= TILE_WIDTH {
                    return Err(bad("partial width out of range"));
                }
                (index_text, width)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_index_path(index_text).ok_or(bad("bad index"))?;
        Ok((Self::new(level, index, width)?, entries))
    }
}

fn parse_canonical_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// The tile index as path elements: 3-digit groups, all but the last prefixed with `x`
/// (1234067 becomes `x001/x234/067`).
pub fn index_path(mut index: u64) -> String {
    let mut groups = vec![index % 1000];
    index /= 1000;
    while index > 0 {
        groups.push(index % 1000);
        index /= 1000;
    }
    let mut out = String::new();
    for (i, group) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            let _ = write!(out, "x{group:03}/");
        } else {
            let _ = write!(out, "{group:03}");
        }
    }
    out
}

fn parse_index_path(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split('/').collect();
    let (last, leading) = parts.split_last()?;
    let mut index: u64 = 0;
    for (i, part) in leading.iter().map(|p| p.strip_prefix('x')).chain([Some(*last)]).enumerate() {
        let part = part?;
        if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A leading group of 000 is not canonical (it would give two paths for one index).
        if i == 0 && part == "000" && !leading.is_empty() {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(part.parse::<u64>().ok()?)?;
    }
    Some(index)
}

/// Encodes entries as an entry bundle: each entry prefixed with its big-endian u16 length.
///
/// # Errors
/// [`Error::EntryTooLarge`] for an entry above 65,535 bytes.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]> + Clone,
) -> Result<Vec<u8>, Error> {
    let size = entries.clone().into_iter().map(|e| e.len() + 2).sum();
    let mut out = Vec::with_capacity(size);
    for entry in entries {
        append_to_bundle(&mut out, entry)?;
    }
    Ok(out)
}

/// Appends one entry to an entry bundle being built.
///
/// # Errors
/// [`Error::EntryTooLarge`] for an entry above 65,535 bytes.
pub fn append_to_bundle(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), Error> {
    let length = u16::try_from(entry.len())
        .map_err(|_| Error::EntryTooLarge { size: entry.len(), max: ENTRY_SIZE_MAX })?;
    bundle.extend_from_slice(&length.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits an entry bundle into its entries.
///
/// # Errors
/// [`Error::Bundle`] when a length prefix runs past the end.
pub fn parse_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let [high, low, tail @ ..] = rest else {
            return Err(Error::Bundle { entry: entries.len(), reason: "truncated length prefix" });
        };
        let length = usize::from(u16::from_be_bytes([*high, *low]));
        if tail.len() < length {
            return Err(Error::Bundle { entry: entries.len(), reason: "entry runs past the end" });
        }
        let (entry, after) = tail.split_at(length);
        entries.push(entry);
        rest = after;
    }
    Ok(entries)
}

/// Reads the hashes of a tile's bytes; `width` hashes are expected.
///
/// # Errors
/// [`Error::TileSize`] when the size is not `width * 32` bytes.
pub fn parse_tile(bytes: &[u8], width: u16) -> Result<Vec<Hash>, Error> {
    let expected = usize::from(width) * HASH_SIZE;
    if bytes.len() != expected {
        return Err(Error::TileSize { expected, got: bytes.len() });
    }
    bytes.chunks_exact(HASH_SIZE).map(Hash::from_slice).collect()
}

/// The bytes of a tile holding `hashes`.
pub fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * HASH_SIZE);
    for hash in hashes {
        out.extend_from_slice(hash.as_bytes());
    }
    out
}

/// Reads tiles: a store, a folder of an export, an HTTP client.
pub trait TileReader {
    /// What can go wrong while reading.
    type Error;

    /// The hashes of one tile; exactly `tile.width()` of them.
    ///
    /// # Errors
    /// Whatever the reader cannot read.
    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, Self::Error>;
}

/// A borrowed reader reads like the reader itself, so a [`TileHashSource`] can borrow one.
impl<R: TileReader + ?Sized> TileReader for &R {
    type Error = R::Error;

    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, Self::Error> {
        (**self).read_tile(tile)
    }
}

/// Why a hash could not be read from tiles.
#[derive(Debug, thiserror::Error)]
pub enum TileSourceError<E> {
    /// The node is not (yet) in the tree of this size.
    #[error("node at level {level} index {index} is not in the tree of size {tree_size}")]
    NotInTree {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
        /// Tree size.
        tree_size: u64,
    },
    /// The reader returned a tile of the wrong width.
    #[error("tile {path} has {got} hashes")]
    TileWidth {
        /// The tile's path.
        path: String,
        /// How many hashes came back.
        got: usize,
    },
    /// The reader failed.
    #[error("reading a tile")]
    Reader(#[source] E),
}

/// A [`HashSource`] over the tiles of a tree of a fixed size.
#[derive(Debug)]
pub struct TileHashSource<R> {
    reader: R,
    tree_size: u64,
}

impl<R: TileReader> TileHashSource<R> {
    /// Hashes of the tree of `tree_size` leaves, read from `reader`'s tiles.
    pub fn new(reader: R, tree_size: u64) -> Self {
        Self { reader, tree_size }
    }
}

/// Where node `(level, index)` lives: tile level, tile index, offset and count of hashes.
fn node_location(level: u8, index: u64) -> Option<(u8, u64, usize, usize)> {
    let tile_level = level / TILE_HEIGHT;
    let within = level % TILE_HEIGHT;
    let first = index.checked_shl(u32::from(within))?;
    if first >> u32::from(within) != index {
        return None;
    }
    let count = 1usize << within;
    Some((tile_level, first / TILE_WIDTH, (first % TILE_WIDTH) as usize, count))
}

impl<R: TileReader> HashSource for TileHashSource<R> {
    type Error = TileSourceError<R::Error>;

    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let not_in_tree = || TileSourceError::NotInTree { level, index, tree_size: self.tree_size };
        let (tile_level, tile_index, offset, count) =
            node_location(level, index).ok_or_else(not_in_tree)?;
        let tile =
            TileId::in_tree(tile_level, tile_index, self.tree_size).ok_or_else(not_in_tree)?;
        if usize::from(tile.width()) < offset + count {
            return Err(not_in_tree());
        }
        let hashes = self.reader.read_tile(tile).map_err(TileSourceError::Reader)?;
        if hashes.len() != usize::from(tile.width()) {
            return Err(TileSourceError::TileWidth { path: tile.path(), got: hashes.len() });
        }
        Ok(root_of_leaf_hashes(&hashes[offset..offset + count]))
    }
}

/// The right edge of a growing tree: the partial tile at every level, and the *frontier* — the
/// roots of the perfect subtrees that make up the tree, one per set bit of its size (RFC 6962's
/// decomposition, also called a compact range). Appending a leaf merges frontier nodes, which
/// costs one node hash per leaf on average; the merges that produce a subtree of `256^k` leaves
/// are exactly the hashes of completed tiles, so tiles cost no extra hashing, and the root is a
/// fold over at most 64 frontier nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TileEdge {
    size: u64,
    // Invariant: partial[l].len() == (size >> 8l) % 256 for every l, and the last level held
    // is not empty.
    partial: Vec<Vec<Hash>>,
    // Invariant: frontier[i] is the root of the i-th perfect subtree of the decomposition of
    // `size` (largest first); frontier.len() == size.count_ones().
    frontier: Vec<Hash>,
}

/// A full tile completed by an append, to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedTile {
    /// Which tile (always full).
    pub id: TileId,
    /// Its 256 hashes.
    pub hashes: Vec<Hash>,
}

impl TileEdge {
    /// The edge of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the edge from the partial tiles of a tree of `size` leaves (for example after a
    /// restart): `partial[l]` holds the hashes of the partial tile at level `l`.
    ///
    /// # Errors
    /// [`Error::TileSize`] when a level holds the wrong number of hashes for `size`.
    pub fn from_partial_tiles(size: u64, mut partial: Vec<Vec<Hash>>) -> Result<Self, Error> {
        for level in 0..8u8 {
            let shift = u32::from(level) * u32::from(TILE_HEIGHT);
            let expected = (size.checked_shr(shift).unwrap_or(0) % TILE_WIDTH) as usize;
            let got = partial.get(usize::from(level)).map_or(0, Vec::len);
            if got != expected {
                return Err(Error::TileSize {
                    expected: expected * HASH_SIZE,
                    got: got * HASH_SIZE,
                });
            }
        }
        partial.truncate(8);
        // Same shape as an edge built by `push`: no empty levels above the highest used one.
        while partial.last().is_some_and(Vec::is_empty) {
            partial.pop();
        }
        let mut edge = Self { size, partial, frontier: Vec::new() };
        // Every frontier node lies in a partial tile (its range ends at the tree size).
        let source = TileHashSource::new(EdgeReader(&edge), size);
        let mut frontier = Vec::with_capacity(size.count_ones() as usize);
        for level in (0..64u8).rev().filter(|l| size >> l & 1 == 1) {
            let index = (size >> level) - 1;
            let Ok(node) = source.node_hash(level, index) else {
                unreachable!("frontier nodes lie in the partial tiles checked above")
            };
            frontier.push(node);
        }
        edge.frontier = frontier;
        Ok(edge)
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; full tiles it completes are pushed onto `completed`.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<CompletedTile>) {
        self.partial_level(0).push(leaf);
        // Merge equal-sized subtrees: one merge per trailing one bit of the old size.
        let mut node = leaf;
        let mut level = 0u32;
        while self.size.checked_shr(level).is_some_and(|s| s & 1 == 1) {
            // Invariant: a set bit of the size has its frontier node.
            let Some(left) = self.frontier.pop() else { unreachable!("frontier matches size") };
            node = crate::hash::node_hash(&left, &node);
            level += 1;
            if level.is_multiple_of(u32::from(TILE_HEIGHT)) {
                // `node` is the root of the tile just completed one tile level below.
                let tile_level = (level / u32::from(TILE_HEIGHT) - 1) as u8;
                let hashes = std::mem::replace(
                    self.partial_level(tile_level),
                    Vec::with_capacity(TILE_WIDTH as usize),
                );
                debug_assert_eq!(hashes.len(), TILE_WIDTH as usize);
                let index = ((self.size + 1) >> level) - 1;
                let id = TileId { level: tile_level, index, width: TILE_WIDTH as u16 };
                completed.push(CompletedTile { id, hashes });
                self.partial_level(tile_level + 1).push(node);
            }
        }
        self.frontier.push(node);
        self.size += 1;
        debug_assert_eq!(self.frontier.len(), self.size.count_ones() as usize);
    }

    fn partial_level(&mut self, level: u8) -> &mut Vec<Hash> {
        let slot = usize::from(level);
        while self.partial.len() <= slot {
            self.partial.push(Vec::with_capacity(TILE_WIDTH as usize));
        }
        &mut self.partial[slot]
    }

    /// The partial tile at `level`, if the tree has one there.
    pub fn partial_tile(&self, level: u8) -> Option<(TileId, &[Hash])> {
        let hashes = self.partial.get(usize::from(level))?;
        let shift = u32::from(level + 1) * u32::from(TILE_HEIGHT);
        let index = self.size.checked_shr(shift).unwrap_or(0);
        let id = TileId::new(level, index, u16::try_from(hashes.len()).ok()?).ok()?;
        Some((id, hashes))
    }

    /// The root of the tree: the frontier folded from the right.
    pub fn root(&self) -> Hash {
        let mut nodes = self.frontier.iter().rev();
        let Some(last) = nodes.next() else { return Hash::empty_root() };
        nodes.fold(*last, |right, left| crate::hash::node_hash(left, &right))
    }
}

/// Reads the edge's partial tiles only.
struct EdgeReader<'a>(&'a TileEdge);

impl TileReader for EdgeReader<'_> {
    type Error = TileId;

    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, TileId> {
        match self.0.partial_tile(tile.level) {
            Some((id, hashes)) if id == tile => Ok(hashes.to_vec()),
            _ => Err(tile),
        }
    }
}
