//! Building proofs from stored hashes (RFC 6962 §2.1.1 `PATH`, §2.1.2 `PROOF`).
//!
//! The algorithms here ask a [`HashSource`] for the hashes of *perfect* subtrees only: the node
//! at `(level, index)` covers the `2^level` leaves starting at `index * 2^level`. Every range
//! that RFC 6962's recursion visits is split into such nodes, so a store needs to answer only
//! that one question (tiles answer it directly, see [`crate::tile::TileHashSource`]).

use crate::hash::{Hash, leaf_hash, node_hash, split_point};
use crate::limits::PROOF_HASHES_MAX;

/// Answers the hash of a perfect, aligned subtree.
pub trait HashSource {
    /// What can go wrong while reading (storage errors, missing tiles).
    type Error;

    /// The hash of the subtree of `2^level` leaves that starts at leaf `index << level`.
    ///
    /// # Errors
    /// Whatever the source cannot read.
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Leaf hashes held in memory: the simplest [`HashSource`], for tests, tools and small trees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    leaves: Vec<Hash>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry (hashing it as a leaf).
    pub fn push_entry(&mut self, entry: &[u8]) {
        self.leaves.push(leaf_hash(entry));
    }

    /// Appends a leaf hash.
    pub fn push_leaf_hash(&mut self, hash: Hash) {
        self.leaves.push(hash);
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The leaf hashes in order.
    pub fn leaf_hashes(&self) -> &[Hash] {
        &self.leaves
    }
}

/// The source was asked for a node outside the leaves it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node at level {level} index {index} is beyond the {size} leaves held")]
pub struct NodeOutOfRange {
    /// The level asked for.
    pub level: u8,
    /// The index asked for.
    pub index: u64,
    /// How many leaves there are.
    pub size: u64,
}

impl HashSource for MemoryTree {
    type Error = NodeOutOfRange;

    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let out_of_range = NodeOutOfRange { level, index, size: self.size() };
        let width = 1u64.checked_shl(u32::from(level)).ok_or(out_of_range)?;
        let start = index.checked_mul(width).ok_or(out_of_range)?;
        let end = start.checked_add(width).ok_or(out_of_range)?;
        if end > self.size() {
            return Err(out_of_range);
        }
        Ok(crate::hash::root_of_leaf_hashes(&self.leaves[start as usize..end as usize]))
    }
}

/// Why a proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProofRequestError<E> {
    /// The request itself is impossible (index not below size, sizes out of order, ...).
    #[error("{0}")]
    Invalid(&'static str),
    /// The hash source failed.
    #[error("reading hashes")]
    Source(#[source] E),
}

/// `MTH(D[lo:hi])` for a range that RFC 6962's recursion visits: `lo` is aligned to the largest
/// power of two not above `hi - lo`, so the range splits into perfect aligned nodes.
fn range_hash<S: HashSource>(source: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    debug_assert!(n >= 1);
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return source.node_hash(level, lo >> level);
    }
    let k = split_point(n);
    let left = range_hash(source, lo, lo + k)?;
    let right = range_hash(source, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves (RFC 6962 §2.1 `MTH(D[0:size])`).
///
/// # Errors
/// Only the source's own errors.
pub fn root<S: HashSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 { Ok(Hash::empty_root()) } else { range_hash(source, 0, size) }
}

/// The audit path for leaf `index` in the tree of `size` leaves, leaf sibling first
/// (RFC 6962 §2.1.1 `PATH(m, D[n])`).
///
/// # Errors
/// [`ProofRequestError::Invalid`] when `index >= size`; the source's errors.
pub fn inclusion_proof<S: HashSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if index >= size {
        return Err(ProofRequestError::Invalid("index must be below the tree size"));
    }
    let mut path = Vec::with_capacity(PROOF_HASHES_MAX);
    let (mut lo, mut hi, m) = (0u64, size, index);
    // Walk down from the root, remembering the sibling of each step; emit leaf-first.
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < lo + k {
            path.push(range_hash(source, lo + k, hi).map_err(ProofRequestError::Source)?);
            hi = lo + k;
        } else {
            path.push(range_hash(source, lo, lo + k).map_err(ProofRequestError::Source)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the trees of `old_size` and `new_size` leaves
/// (RFC 6962 §2.1.2 `PROOF(m, D[n])`). Empty when `old_size` is 0 or equals `new_size`.
///
/// # Errors
/// [`ProofRequestError::Invalid`] when `old_size > new_size`; the source's errors.
pub fn consistency_proof<S: HashSource>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if old_size > new_size {
        return Err(ProofRequestError::Invalid("old size must not exceed new size"));
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: each step either finishes or descends one side.
    let mut proof = Vec::with_capacity(PROOF_HASHES_MAX);
    let (mut lo, mut hi, mut m, mut whole) = (0u64, new_size, old_size, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                proof.push(range_hash(source, lo, hi).map_err(ProofRequestError::Source)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(range_hash(source, lo + k, hi).map_err(ProofRequestError::Source)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(source, lo, lo + k).map_err(ProofRequestError::Source)?);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}
