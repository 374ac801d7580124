//! Property tests: proofs for random sizes verify, any flipped bit is detected, and a tree built
//! incrementally (tile by tile) equals one built at once.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sanad_tlog::tile::{CompletedTile, TileEdge, TileHashSource, TileId, TileReader};
use sanad_tlog::tree::{MemoryTree, consistency_proof, inclusion_proof, root};
use sanad_tlog::{Hash, leaf_hash, verify_consistency, verify_inclusion};

fn tree_of(size: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..size {
        tree.push_entry(&i.to_be_bytes());
    }
    tree
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut bytes = hash.0;
    bytes[bit / 8 % 32] ^= 1 << (bit % 8);
    Hash(bytes)
}

/// Tiles held in a map, as a store would hold them.
struct MapTiles(std::collections::HashMap<TileId, Vec<Hash>>, TileEdge);

impl TileReader for MapTiles {
    type Error = TileId;
    fn read_tile(&self, tile: TileId) -> Result<Vec<Hash>, TileId> {
        if let Some(hashes) = self.0.get(&tile) {
            return Ok(hashes.clone());
        }
        match self.1.partial_tile(tile.level) {
            Some((id, hashes)) if id == tile => Ok(hashes.to_vec()),
            _ => Err(tile),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn inclusion_proofs_verify_and_flips_are_detected(size in 1u64..600, pick in any::<u64>(), bit in 0usize..256) {
        let tree = tree_of(size);
        let index = pick % size;
        let root = root(&tree, size).unwrap();
        let leaf = leaf_hash(&index.to_be_bytes());
        let path = inclusion_proof(&tree, index, size).unwrap();
        prop_assert!(verify_inclusion(&leaf, index, size, &path, &root).is_ok());
        // A flipped entry, root or path hash is detected.
        let mut entry = index.to_be_bytes();
        entry[bit / 8 % 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(&leaf_hash(&entry), index, size, &path, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, index, size, &path, &flip(&root, bit)).is_err());
        for i in 0..path.len() {
            let mut bad = path.clone();
            bad[i] = flip(&bad[i], bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
        }
        // Wrong index or size fails too.
        if size > 1 {
            prop_assert!(verify_inclusion(&leaf, (index + 1) % size, size, &path, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_flips_are_detected(new in 1u64..600, pick in any::<u64>(), bit in 0usize..256) {
        let tree = tree_of(new);
        let old = pick % (new + 1);
        let (old_root, new_root) = (root(&tree, old).unwrap(), root(&tree, new).unwrap());
        let proof = consistency_proof(&tree, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &proof, &old_root, &new_root).is_ok());
        if old > 0 && old < new {
            prop_assert!(verify_consistency(old, new, &proof, &flip(&old_root, bit), &new_root).is_err());
            prop_assert!(verify_consistency(old, new, &proof, &old_root, &flip(&new_root, bit)).is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i], bit);
                prop_assert!(verify_consistency(old, new, &bad, &old_root, &new_root).is_err());
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tree_built_tile_by_tile_equals_tree_built_at_once(size in 0u64..70_000, probe in any::<u64>()) {
        let mut edge = TileEdge::new();
        let mut full = std::collections::HashMap::new();
        let mut completed: Vec<CompletedTile> = Vec::new();
        let mut leaves = Vec::with_capacity(size as usize);
        for i in 0..size {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            edge.push(leaf, &mut completed);
            for tile in completed.drain(..) {
                full.insert(tile.id, tile.hashes);
            }
        }
        let expected = sanad_tlog::hash::root_of_leaf_hashes(&leaves);
        prop_assert_eq!(edge.root(), expected);
        let tiles = MapTiles(full, edge.clone());
        let source = TileHashSource::new(&tiles, size);
        prop_assert_eq!(root(&source, size).unwrap(), expected);
        if size > 0 {
            let index = probe % size;
            let path = inclusion_proof(&source, index, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &path, &expected).is_ok());
            let old = probe % (size + 1);
            let old_root = sanad_tlog::hash::root_of_leaf_hashes(&leaves[..old as usize]);
            let proof = consistency_proof(&source, old, size).unwrap();
            prop_assert!(verify_consistency(old, size, &proof, &old_root, &expected).is_ok());
        }
        // Restoring the edge from its partial tiles gives the same edge.
        let partial: Vec<Vec<Hash>> = (0..8u8)
            .map(|l| edge.partial_tile(l).map(|(_, h)| h.to_vec()).unwrap_or_default())
            .collect();
        prop_assert_eq!(TileEdge::from_partial_tiles(size, partial).unwrap(), edge);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipping_any_bit_of_a_signed_checkpoint_is_detected(
        size in any::<u64>(), seed in any::<[u8; 32]>(), bit in 0usize..(8 * 120)
    ) {
        use sanad_tlog::{Checkpoint, NoteSigner, SignedCheckpoint};
        let signer = NoteSigner::from_seed("example.org/log", &seed).unwrap();
        let checkpoint = Checkpoint::new("example.org/log", size, leaf_hash(&seed)).unwrap();
        let signed = checkpoint.sign(&[&signer]).unwrap();
        let verifier = signer.verifier();
        let note = signed.note();
        prop_assert!(SignedCheckpoint::parse_and_verify(&signed.to_bytes(), &verifier).is_ok());

        // Flip one bit of the signature bytes (key ID or Ed25519 signature) and re-encode.
        let mut signature = note.signatures()[0].clone();
        let mut raw = signature.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&signature.signature);
        let bit = bit % (raw.len() * 8);
        raw[bit / 8] ^= 1 << (bit % 8);
        signature.key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        signature.signature = raw[4..].to_vec();
        let tampered = [note.text().as_bytes(), b"\n", signature.to_line().as_bytes()].concat();
        prop_assert!(SignedCheckpoint::parse_and_verify(&tampered, &verifier).is_err());

        // Flip one bit of the signed text.
        let mut text = signed.to_bytes();
        let position = bit % note.text().len();
        text[position] ^= 1 << (bit % 7);
        prop_assert!(SignedCheckpoint::parse_and_verify(&text, &verifier).is_err());
    }
}
