//! Tamper detection, at random: an export changed in any of the ways an insider or a damaged
//! disk could change it — a bit flipped anywhere in any file (the checkpoint and its signature,
//! hash tiles, entry bundles), bytes appended, a file truncated or removed, entries reordered,
//! duplicated or dropped inside a bundle, an older checkpoint put back over newer tiles, the
//! checkpoint signed by another key — is rejected every time, and the error names what failed.
//!
//! `SANAD_TAMPER_CASES` runs more cases (default 600); `SANAD_TAMPER_SEED` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rand::{Rng as _, SeedableRng as _};
use sanad_audit::verify_export;
use sanad_log::Log;
use sanad_tlog::NoteVerifier;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { all.extend(files(&path)) } else { all.push(path) }
    }
    all.sort();
    all
}

/// A log of 700 distinct entries (two full level-0 tiles and a partial one, a partial level-1
/// tile), its verifier key, its checkpoint at size 500, and a fresh export of it.
struct Fixture {
    _dir: tempfile::TempDir,
    export: PathBuf,
    verifier: NoteVerifier,
    older_checkpoint: Vec<u8>,
    /// A checkpoint of the same tree signed by another key of the same name.
    forged_checkpoint: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let entries = |from: usize, count: usize| -> Vec<Vec<u8>> {
        (from..from + count)
            .map(|n| format!("entry {n} {}", "x".repeat(n % 40)).into_bytes())
            .collect()
    };
    let log = Log::create(&dir.path().join("log"), "example.org/tamper").unwrap();
    log.append(entries(0, 500)).unwrap();
    let older_checkpoint = log.wait_for_checkpoint(500).unwrap().to_bytes();
    log.append(entries(500, 200)).unwrap();
    let checkpoint = log.wait_for_checkpoint(700).unwrap();
    let export = dir.path().join("export");
    log.export(&export).unwrap();
    let other = tempfile::tempdir().unwrap();
    drop(Log::create(other.path(), "example.org/tamper").unwrap());
    let signer = sanad_log::keys::load_key_file(&other.path().join(sanad_log::KEY_FILE)).unwrap();
    let forged_checkpoint = checkpoint.checkpoint().sign(&[&signer]).unwrap().to_bytes();
    Fixture { verifier: log.verifier(), _dir: dir, export, older_checkpoint, forged_checkpoint }
}

/// One way to change the export.
#[derive(Debug)]
enum Change {
    FlipBit {
        file: PathBuf,
        position: usize,
        bit: u8,
    },
    Append {
        file: PathBuf,
        bytes: Vec<u8>,
    },
    Truncate {
        file: PathBuf,
        length: usize,
    },
    Remove {
        file: PathBuf,
    },
    /// Entries of a bundle swapped, duplicated or dropped.
    Bundle {
        file: PathBuf,
        order: Vec<usize>,
    },
    OlderCheckpoint,
    ForgedCheckpoint,
}

fn draw(rng: &mut impl rand::Rng, all: &[PathBuf], bundles: &[PathBuf]) -> Change {
    let file = all[rng.gen_range(0..all.len())].clone();
    let length = std::fs::metadata(&file).unwrap().len() as usize;
    match rng.gen_range(0..9) {
        0..=3 => {
            Change::FlipBit { file, position: rng.gen_range(0..length), bit: rng.gen_range(0..8) }
        }
        4 => Change::Append { file, bytes: vec![rng.r#gen(); rng.gen_range(1..4)] },
        5 => Change::Truncate { file, length: rng.gen_range(0..length) },
        6 => {
            let file = bundles[rng.gen_range(0..bundles.len())].clone();
            let bytes = std::fs::read(&file).unwrap();
            let count = sanad_tlog::tile::parse_bundle(&bytes).unwrap().len();
            let mut order: Vec<usize> = (0..count).collect();
            let (a, b) = (rng.gen_range(0..count), rng.gen_range(0..count));
            match rng.gen_range(0..3) {
                0 if a != b => order.swap(a, b),
                1 if a != b => order[a] = b,
                _ => {
                    order.remove(a);
                }
            }
            Change::Bundle { file, order }
        }
        7 if rng.gen_bool(0.5) => Change::Remove { file },
        7 => Change::OlderCheckpoint,
        _ => Change::ForgedCheckpoint,
    }
}

/// Applies `change`; returns the file it touched and its original bytes, to put back.
fn apply(change: &Change, fixture: &Fixture) -> (PathBuf, Vec<u8>) {
    let checkpoint = fixture.export.join("checkpoint");
    let (file, new) = match change {
        Change::FlipBit { file, position, bit } => {
            let mut bytes = std::fs::read(file).unwrap();
            bytes[*position] ^= 1 << bit;
            (file.clone(), Some(bytes))
        }
        Change::Append { file, bytes } => {
            let mut all = std::fs::read(file).unwrap();
            all.extend_from_slice(bytes);
            (file.clone(), Some(all))
        }
        Change::Truncate { file, length } => {
            (file.clone(), Some(std::fs::read(file).unwrap()[..*length].to_vec()))
        }
        Change::Remove { file } => (file.clone(), None),
        Change::Bundle { file, order } => {
            let original = std::fs::read(file).unwrap();
            let entries = sanad_tlog::tile::parse_bundle(&original).unwrap();
            let bytes = sanad_tlog::tile::encode_bundle(order.iter().map(|&i| entries[i])).unwrap();
            (file.clone(), Some(bytes))
        }
        Change::OlderCheckpoint => (checkpoint, Some(fixture.older_checkpoint.clone())),
        Change::ForgedCheckpoint => (checkpoint, Some(fixture.forged_checkpoint.clone())),
    };
    let original = std::fs::read(&file).unwrap();
    match new {
        Some(bytes) => std::fs::write(&file, bytes).unwrap(),
        None => std::fs::remove_file(&file).unwrap(),
    }
    (file, original)
}

/// The error and what caused it, as one line.
fn explained(error: &sanad_audit::AuditError) -> String {
    let cause = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
    format!("{error}: {cause}")
}

#[test]
fn every_random_tampering_of_an_export_is_rejected_and_named() {
    let cases: usize =
        std::env::var("SANAD_TAMPER_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(600);
    let seed: u64 = std::env::var("SANAD_TAMPER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("tamper campaign: {cases} cases, seed {seed} (SANAD_TAMPER_SEED={seed} to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fixture = fixture();
    let verify = || verify_export(&fixture.export, &fixture.verifier, None, &mut |_, _| {});
    let pristine = verify().unwrap();
    assert_eq!(pristine.tree_size, 700);
    let all = files(&fixture.export);
    let bundles: Vec<PathBuf> =
        all.iter().filter(|f| f.to_string_lossy().contains("/entries/")).cloned().collect();
    assert!(bundles.len() >= 3 && all.len() >= 7, "the export lacks the files to tamper with");

    let mut kinds = std::collections::BTreeMap::new();
    for case in 0..cases {
        let change = draw(&mut rng, &all, &bundles);
        let (file, original) = apply(&change, &fixture);
        let verdict = verify();
        std::fs::write(&file, &original).unwrap();
        let error = match verdict {
            Err(error) => explained(&error),
            Ok(report) => panic!("case {case} (seed {seed}): {change:?} accepted: {report:?}"),
        };
        let relative = file.strip_prefix(&fixture.export).unwrap().to_string_lossy().into_owned();
        // The error names the checkpoint, a tile or bundle (the one changed, or the one whose
        // hashes no longer match it, or one the checkpoint needs and the export lacks), or the
        // root that no longer matches.
        let named = error.contains(&relative)
            || error.contains("checkpoint")
            || error.contains("tile/")
            || error.contains("root recomputed");
        assert!(named, "case {case} (seed {seed}): {change:?}: the error names nothing: {error}");
        let kind = format!("{change:?}");
        let kind = kind.split([' ', '{']).next().unwrap_or_default().to_owned();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    assert_eq!(verify().unwrap(), pristine, "every change was put back");
    println!("tamper campaign: {cases} changes, every one rejected and named: {kinds:?}");
}
