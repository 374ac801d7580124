//! Known-answer vectors from the specifications' public implementations, not our own code.
//!
//! Sources (see also shared FORMATS.md §1):
//! - RFC 6962 tree, paths and consistency proofs: google/certificate-transparency
//!   `cpp/merkletree/merkle_tree_test.cc` (kInputs, kSHA256Roots, kSHA256Paths,
//!   kSHA256Proofs; that file numbers leaves from 1, we from 0). These vectors also pass the Go
//!   checksum database's `tlog.CheckRecord`/`tlog.CheckTree`.
//! - Signed note: the example of golang.org/x/mod/sumdb/note (key "PeterNeumann").
//! - Tile paths: c2sp.org/tlog-tiles (index 1234067 is `x001/x234/067`).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sanad_tlog::note::{Note, NoteSigner, NoteVerifier};
use sanad_tlog::tile::{TileId, index_path};
use sanad_tlog::tree::{MemoryTree, consistency_proof, inclusion_proof, root};
use sanad_tlog::{Hash, leaf_hash, verify_consistency, verify_inclusion};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn h(text: &str) -> Hash {
    Hash::from_slice(&hex(text)).unwrap()
}

const INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn reference_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for input in INPUTS {
        tree.push_entry(&hex(input));
    }
    tree
}

#[test]
fn roots_match_certificate_transparency_vectors() {
    let tree = reference_tree();
    assert_eq!(
        root(&tree, 0).unwrap().to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    for (size, expected) in ROOTS.iter().enumerate() {
        assert_eq!(root(&tree, size as u64 + 1).unwrap().to_hex(), *expected, "size {}", size + 1);
    }
}

#[test]
fn inclusion_paths_match_certificate_transparency_vectors() {
    let tree = reference_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, expected) in cases {
        let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
        assert_eq!(inclusion_proof(&tree, index, size).unwrap(), expected, "{index}@{size}");
        let leaf = leaf_hash(&hex(INPUTS[index as usize]));
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&leaf, index, size, &expected, &root).unwrap();
    }
    assert!(inclusion_proof(&tree, 0, 1).unwrap().is_empty());
}

#[test]
fn consistency_proofs_match_certificate_transparency_vectors() {
    let tree = reference_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, expected) in cases {
        let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
        assert_eq!(consistency_proof(&tree, old, new).unwrap(), expected, "{old}->{new}");
        let (old_root, new_root) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
        verify_consistency(old, new, &expected, &old_root, &new_root).unwrap();
        if !expected.is_empty() {
            // Swapped roots must fail.
            assert!(verify_consistency(old, new, &expected, &new_root, &old_root).is_err());
        }
    }
}

#[test]
fn invalid_proof_shapes_are_rejected_as_the_reference_verifier_does() {
    let empty = Hash::empty_root();
    // Index not below size.
    assert!(verify_inclusion(&empty, 0, 0, &[], &empty).is_err());
    assert!(verify_inclusion(&empty, 2, 1, &[], &empty).is_err());
    // Time travel and empty proofs between different sizes.
    assert!(verify_consistency(2, 1, &[], &empty, &empty).is_err());
    assert!(verify_consistency(1, 2, &[], &empty, &empty).is_err());
    // Equal sizes: roots must match and the proof must be empty.
    assert!(verify_consistency(1, 1, &[], &empty, &empty).is_ok());
    assert!(verify_consistency(1, 1, &[empty], &empty, &empty).is_err());
    assert!(verify_consistency(0, 1, &[empty], &empty, &empty).is_err());
    assert!(verify_consistency(0, 0, &[], &empty, &leaf_hash(b"")).is_err());
}

const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNATURE_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn signer_reproduces_the_go_note_example_byte_for_byte() {
    let signer = NoteSigner::parse_signer_key(GO_SKEY).unwrap();
    assert_eq!(signer.verifier().to_vkey(), GO_VKEY);
    assert_eq!(signer.to_signer_key().as_str(), GO_SKEY);
    let mut note = Note::new(GO_TEXT.to_owned()).unwrap();
    note.sign_with(&signer).unwrap();
    let expected = format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}");
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), expected);
}

#[test]
fn go_note_example_verifies_and_tampering_fails() {
    let verifier = NoteVerifier::parse(GO_VKEY).unwrap();
    let bytes = format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}");
    let note = Note::parse(bytes.as_bytes()).unwrap();
    assert_eq!(note.text(), GO_TEXT);
    assert_eq!(note.verify(std::slice::from_ref(&verifier)).unwrap().len(), 1);

    let tampered = bytes.replacen("cryptography", "Cryptography", 1);
    let note = Note::parse(tampered.as_bytes()).unwrap();
    assert!(note.verify(std::slice::from_ref(&verifier)).is_err());

    // An unknown key's signature is ignored, so no known key signed: rejected.
    let other = NoteSigner::from_seed("PeterNeumann", &[7; 32]).unwrap().verifier();
    let note = Note::parse(bytes.as_bytes()).unwrap();
    assert!(note.verify(&[other]).is_err());
}

#[test]
fn key_id_mismatch_in_vkey_is_rejected() {
    let wrong = GO_VKEY.replace("c74f20a3", "c74f20a4");
    assert!(NoteVerifier::parse(&wrong).is_err());
}

#[test]
fn tile_paths_follow_tlog_tiles() {
    assert_eq!(index_path(1_234_067), "x001/x234/067");
    assert_eq!(index_path(0), "000");
    assert_eq!(index_path(1000), "x001/000");
    let tile = TileId::new(1, 1_234_067, 17).unwrap();
    assert_eq!(tile.path(), "tile/1/x001/x234/067.p/17");
    assert_eq!(TileId::parse_path("tile/1/x001/x234/067.p/17").unwrap(), (tile, false));
    let bundle = TileId::new(0, 5, 256).unwrap();
    assert_eq!(bundle.entries_path(), "tile/entries/005");
    assert_eq!(TileId::parse_path("tile/entries/005").unwrap(), (bundle, true));
    for bad in ["tile/0/5", "tile/0/x000/005", "tile/0/005.p/0", "tile/0/005.p/256", "tile/00/005"]
    {
        assert!(TileId::parse_path(bad).is_err(), "{bad}");
    }
}
