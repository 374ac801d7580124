//! Inclusion and consistency verification on arbitrary sizes, indexes and hashes never panic,
//! and a proof generated for the same sizes always verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanad_tlog::tree::{MemoryTree, consistency_proof, inclusion_proof, root};
use sanad_tlog::{Hash, leaf_hash, verify_consistency, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let a = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let hashes: Vec<Hash> = data[16..].chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect();
    let zero = Hash::default();
    let first = hashes.first().copied().unwrap_or(zero);
    let _ = verify_inclusion(&first, a, b, &hashes, &zero);
    let _ = verify_consistency(a, b, &hashes, &first, &zero);

    // Small real trees: generated proofs verify.
    let size = b % 300 + 1;
    let mut tree = MemoryTree::new();
    for i in 0..size {
        tree.push_entry(&i.to_le_bytes());
    }
    let index = a % size;
    let r = root(&tree, size).unwrap();
    let path = inclusion_proof(&tree, index, size).unwrap();
    verify_inclusion(&leaf_hash(&index.to_le_bytes()), index, size, &path, &r).unwrap();
    let old = a % (size + 1);
    let proof = consistency_proof(&tree, old, size).unwrap();
    verify_consistency(old, size, &proof, &root(&tree, old).unwrap(), &r).unwrap();
});
