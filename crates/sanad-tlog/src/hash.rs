//! SHA-256 hashes as RFC 6962 uses them: leaf and interior node hashes with domain separation.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::Error;

/// Size of one hash in bytes (SHA-256).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 value: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The root of the empty tree, `MTH({}) = SHA-256("")` (RFC 6962 §2.1).
    pub fn empty_root() -> Self {
        Self(Sha256::digest([]).into())
    }

    /// The hash as bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    /// Reads a hash from exactly 32 bytes.
    ///
    /// # Errors
    /// [`Error::HashLength`] when `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; HASH_SIZE] =
            bytes.try_into().map_err(|_| Error::HashLength { got: bytes.len() })?;
        Ok(Self(array))
    }

    /// Standard base64 with padding, as checkpoints and proof files carry hashes.
    pub fn to_base64(&self) -> String {
        crate::BASE64.encode(self.0)
    }

    /// Parses standard padded base64 of 32 bytes.
    ///
    /// # Errors
    /// [`Error::Base64`] for malformed text, [`Error::HashLength`] for the wrong length.
    pub fn parse_base64(text: &str) -> Result<Self, Error> {
        let bytes = crate::BASE64.decode(text).map_err(|_| Error::Base64 { what: "hash" })?;
        Self::from_slice(&bytes)
    }

    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// `MTH({d}) = SHA-256(0x00 || d)`: the hash of one entry (RFC 6962 §2.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    Hash(hasher.finalize().into())
}

/// `SHA-256(0x01 || left || right)`: an interior node (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The largest power of two strictly below `n` (RFC 6962's `k`), for `n >= 2`.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "split_point({n})");
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of a list of leaf hashes, computed in memory without any store: the reference
/// computation that benchmarks and tests compare against.
pub fn root_of_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_of_leaf_hashes(&leaves[..k]), &root_of_leaf_hashes(&leaves[k..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            Hash::empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn base64_round_trip_and_length_check() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::parse_base64(&h.to_base64()).unwrap(), h);
        assert!(matches!(Hash::parse_base64("AAAA"), Err(Error::HashLength { got: 3 })));
        assert!(matches!(Hash::parse_base64("not base64!"), Err(Error::Base64 { .. })));
    }
}
