//! Verifying inclusion and consistency proofs (RFC 9162 §2.1.3.2 and §2.1.4.2).
//!
//! These functions need no storage: an auditor links only this module, the hash module and the
//! note/checkpoint parsers. Each failure has its own variant so that a tool can say exactly what
//! did not hold.

use crate::hash::{Hash, node_hash};
use crate::limits::PROOF_HASHES_MAX;

/// Why an inclusion proof was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InclusionError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexBeyondSize {
        /// The leaf index claimed.
        index: u64,
        /// The tree size claimed.
        size: u64,
    },
    /// The path is longer or shorter than the tree shape allows.
    #[error("inclusion path has the wrong length ({got} hashes)")]
    WrongLength {
        /// How many hashes the proof held.
        got: usize,
    },
    /// The path recomputes to a different root.
    #[error("inclusion path leads to a different root")]
    RootMismatch,
}

/// Why a consistency proof was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsistencyError {
    /// The old size exceeds the new size.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    SizesOutOfOrder {
        /// The older size.
        old_size: u64,
        /// The newer size.
        new_size: u64,
    },
    /// The proof must be empty here (old size 0 or equal sizes) but is not, or must not be
    /// empty and is.
    #[error("consistency proof has the wrong length ({got} hashes)")]
    WrongLength {
        /// How many hashes the proof held.
        got: usize,
    },
    /// Equal sizes with different roots: a fork.
    #[error("same tree size with different roots")]
    SameSizeDifferentRoot,
    /// The proof does not reproduce the old root.
    #[error("consistency proof does not reproduce the old root")]
    OldRootMismatch,
    /// The proof does not reproduce the new root.
    #[error("consistency proof does not reproduce the new root")]
    NewRootMismatch,
}

/// Verifies that `leaf` is the leaf at `index` of the tree of `size` leaves whose root is `root`.
///
/// # Errors
/// The [`InclusionError`] that says which check failed.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), InclusionError> {
    if index >= size {
        return Err(InclusionError::IndexBeyondSize { index, size });
    }
    if path.len() > PROOF_HASHES_MAX {
        return Err(InclusionError::WrongLength { got: path.len() });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err(InclusionError::WrongLength { got: path.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(InclusionError::WrongLength { got: path.len() });
    }
    if r != *root {
        return Err(InclusionError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`.
///
/// # Errors
/// The [`ConsistencyError`] that says which check failed.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ConsistencyError> {
    if old_size > new_size {
        return Err(ConsistencyError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ConsistencyError::WrongLength { got: proof.len() });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ConsistencyError::SameSizeDifferentRoot)
        };
    }
    if old_size == 0 {
        // Every tree extends the empty tree; the proof must be empty (c2sp.org/tlog-witness).
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ConsistencyError::WrongLength { got: proof.len() })
        };
    }
    if proof.is_empty() || proof.len() > PROOF_HASHES_MAX {
        return Err(ConsistencyError::WrongLength { got: proof.len() });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);

    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ConsistencyError::WrongLength { got: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ConsistencyError::WrongLength { got: proof.len() });
    }
    if fr != *old_root {
        return Err(ConsistencyError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ConsistencyError::NewRootMismatch);
    }
    Ok(())
}
