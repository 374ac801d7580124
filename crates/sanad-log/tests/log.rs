//! The durable log: group commit under concurrency, reopening, proofs against stored tiles.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sanad_log::{Error, Log};
use sanad_tlog::tree::{MemoryTree, root};
use sanad_tlog::{leaf_hash, verify_consistency, verify_inclusion};

#[test]
fn concurrent_appends_get_distinct_contiguous_indexes_and_share_commits() {
    // Eight threads append 100 small batches each; every entry lands exactly once, in a
    // contiguous range per call, and the writer groups calls into fewer commits than calls.
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::create(dir.path(), "example.org/test").unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut placed = Vec::new();
                for i in 0..100u32 {
                    let entries =
                        vec![format!("{t}-{i}-a").into_bytes(), format!("{t}-{i}-b").into_bytes()];
                    let appended = log.append(entries).unwrap();
                    assert!(appended.tree_size >= appended.first_index + 2);
                    placed.push((appended.first_index, t, i));
                }
                placed
            })
        })
        .collect();
    let placed: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(log.size(), 1600);
    for (first, t, i) in &placed {
        assert_eq!(log.entry(*first).unwrap(), format!("{t}-{i}-a").into_bytes());
        assert_eq!(log.entry(first + 1).unwrap(), format!("{t}-{i}-b").into_bytes());
    }
    let mut firsts: Vec<u64> = placed.iter().map(|p| p.0).collect();
    firsts.sort_unstable();
    assert_eq!(firsts, (0..800).map(|i| i * 2).collect::<Vec<_>>());
    assert!(log.commit_count() <= 800, "commits {}", log.commit_count());
}

#[test]
fn reopened_log_has_the_same_root_and_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    let vkey;
    {
        let log = Log::create(dir.path(), "example.org/test").unwrap();
        vkey = log.verifier();
        for batch in 0..40u32 {
            let entries: Vec<Vec<u8>> =
                (0..(batch * 37 % 500 + 1)).map(|i| format!("{batch}/{i}").into_bytes()).collect();
            for entry in &entries {
                reference.push_entry(entry);
            }
            log.append(entries).unwrap();
        }
    }
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.verifier(), vkey);
    let size = log.size();
    assert_eq!(size, reference.size());
    let expected_root = root(&reference, size).unwrap();
    assert_eq!(log.checkpoint().checkpoint().root(), expected_root);
    for old in [1, 255, 256, 257, 1000, 4096, size / 2, size] {
        assert_eq!(log.root_at(old).unwrap(), root(&reference, old).unwrap(), "root at {old}");
        let proof = log.consistency_proof(old, size).unwrap();
        verify_consistency(old, size, &proof, &root(&reference, old).unwrap(), &expected_root)
            .unwrap();
    }
    for index in [0, 1, 255, 256, 7777, size - 1] {
        let entry = log.entry(index).unwrap();
        let proof = log.inclusion_proof(index, size).unwrap();
        verify_inclusion(&leaf_hash(&entry), index, size, &proof, &expected_root).unwrap();
        // Proofs against an older size use the tiles as they were then.
        let older = index + 1;
        let proof = log.inclusion_proof(index, older).unwrap();
        verify_inclusion(
            &leaf_hash(&entry),
            index,
            older,
            &proof,
            &root(&reference, older).unwrap(),
        )
        .unwrap();
    }
    // Appending after reopening continues the same tree.
    log.append(vec![b"after".to_vec()]).unwrap();
    reference.push_entry(b"after");
    let checkpoint = log.wait_for_checkpoint(size + 1).unwrap();
    assert_eq!(checkpoint.checkpoint().size(), size + 1);
    assert_eq!(checkpoint.checkpoint().root(), root(&reference, size + 1).unwrap());
}

#[test]
fn bad_appends_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::create(dir.path(), "example.org/test").unwrap();
    log.append(vec![b"one".to_vec()]).unwrap();
    let before = log.wait_for_checkpoint(1).unwrap();
    assert!(matches!(log.append(vec![]), Err(Error::BadAppend(_))));
    assert!(matches!(log.append(vec![vec![0; 65_536]]), Err(Error::Format(_))));
    assert!(matches!(log.entry(1), Err(Error::BeyondTree { .. })));
    assert!(matches!(log.inclusion_proof(0, 2), Err(Error::BeyondTree { .. })));
    assert_eq!(log.checkpoint(), before);
    // The largest entry the format allows is accepted.
    log.append(vec![vec![7; 65_535]]).unwrap();
    assert_eq!(log.entry(1).unwrap(), vec![7; 65_535]);
}

#[test]
fn create_refuses_an_existing_log_and_open_refuses_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    drop(Log::create(dir.path(), "example.org/test").unwrap());
    assert!(matches!(Log::create(dir.path(), "example.org/test"), Err(Error::AlreadyExists(_))));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(Log::open(empty.path()), Err(Error::NotFound(_))));
    assert!(Log::create(empty.path(), "bad origin").is_err());
}

#[test]
fn rotation_survives_reopen_and_an_uncommitted_next_key_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let old = {
        let log = Log::create(dir.path(), "example.org/test").unwrap();
        log.append(vec![b"a".to_vec()]).unwrap();
        let old = log.verifier();
        let new = log.rotate_key().unwrap();
        assert_ne!(old, new);
        assert_eq!(log.size(), 2);
        log.append(vec![b"b".to_vec()]).unwrap();
        old
    };
    let log = Log::open(dir.path()).unwrap();
    assert_ne!(log.verifier(), old);
    assert_eq!(log.size(), 3);
    let new = log.verifier();
    drop(log);

    // A next key left by a rotation that never committed is removed on open.
    let stray = sanad_log::keys::generate_key_file(
        &dir.path().join(sanad_log::keys::NEXT_KEY_FILE),
        "example.org/test",
    )
    .unwrap();
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.verifier(), new);
    assert_ne!(log.verifier(), stray.verifier());
    assert!(!dir.path().join(sanad_log::keys::NEXT_KEY_FILE).exists());
}

#[test]
fn a_rewritten_entry_in_storage_is_refused_on_open_not_repaired() {
    // Someone with disk access rewrites a committed entry behind the log's back. The recomputed
    // root no longer matches the signed checkpoint, so the log refuses to open.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::create(dir.path(), "example.org/test").unwrap();
        log.append((0..300u32).map(|i| i.to_be_bytes().to_vec()).collect()).unwrap();
    }
    {
        let db = sled::open(dir.path().join(sanad_log::DB_DIR)).unwrap();
        let tree = db.open_tree("log").unwrap();
        let mut key = vec![b'e'];
        key.extend_from_slice(&0u64.to_be_bytes());
        let forged = sanad_tlog::tile::encode_bundle(
            (0..300u32)
                .map(|i| if i == 7 { 999u32 } else { i }.to_be_bytes())
                .collect::<Vec<_>>()
                .iter()
                .map(|e| &e[..]),
        )
        .unwrap();
        tree.insert(key, sanad_log::chunk::plain(&forged)).unwrap();
        db.flush().unwrap();
    }
    match Log::open(dir.path()) {
        Err(Error::Corrupt(message)) => assert!(message.contains("differs"), "{message}"),
        other => panic!("a rewritten entry was accepted: {other:?}"),
    }
}

#[test]
fn a_store_in_another_layout_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Log::create(dir.path(), "example.org/test").unwrap());
    for (layout, message) in
        [(Some(&b"sanad-log-store/9"[..]), "layout is"), (None, "no layout mark")]
    {
        {
            let db = sled::open(dir.path().join(sanad_log::DB_DIR)).unwrap();
            let tree = db.open_tree("log").unwrap();
            match layout {
                Some(layout) => tree.insert(b"F", layout).unwrap(),
                None => tree.remove(b"F").unwrap(),
            };
            db.flush().unwrap();
        }
        match Log::open(dir.path()) {
            Err(Error::Corrupt(refusal)) => assert!(refusal.contains(message), "{refusal}"),
            other => panic!("a store in another layout was opened: {other:?}"),
        }
    }
}

#[test]
fn durable_entries_beyond_the_checkpoint_are_integrated_on_open() {
    // A crash can come after a batch is durable but before the checkpoint covering it is
    // written. Simulate it by storing a batch behind the log's back: opening integrates it,
    // signs a checkpoint for it, and serves it like any other entry.
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let log = Log::create(dir.path(), "example.org/test").unwrap();
        let entries: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        entries.iter().for_each(|e| reference.push_entry(e));
        log.append(entries).unwrap();
    }
    {
        let db = sled::open(dir.path().join(sanad_log::DB_DIR)).unwrap();
        let tree = db.open_tree("log").unwrap();
        let mut key = vec![b'e'];
        key.extend_from_slice(&300u64.to_be_bytes());
        let tail: Vec<Vec<u8>> = (300..700u32).map(|i| i.to_be_bytes().to_vec()).collect();
        tail.iter().for_each(|e| reference.push_entry(e));
        let bundle = sanad_tlog::tile::encode_bundle(tail.iter().map(|e| &e[..])).unwrap();
        tree.insert(key, sanad_log::chunk::plain(&bundle)).unwrap();
        db.flush().unwrap();
    }
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.size(), 700);
    let checkpoint = log.checkpoint();
    assert_eq!(checkpoint.checkpoint().size(), 700);
    assert_eq!(checkpoint.checkpoint().root(), root(&reference, 700).unwrap());
    assert_eq!(log.entry(650).unwrap(), 650u32.to_be_bytes().to_vec());
}
