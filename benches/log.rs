//! Log benchmarks. Each figure is printed next to a baseline measured in the same run on the
//! same machine, with the ratio; only ratios compare across machines.
//!
//! `cargo bench --bench log` (add `-- --quick` for a smoke run):
//!
//! 1. durable appends/s with group commit vs raw sled writing the same entries in batches of
//!    1,000 as one value per batch followed by `flush()`;
//! 2. verifying an export (bundles parsed, leaf hashes, every tile, the root) vs the raw
//!    RFC 6962 root over the same entries in memory;
//! 3. appends/s at 1, 10, 100 and 1,000 entries per commit, to show group commit at work.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{BASELINE_BATCH, compare, median, per_second, raw_sled};

use sanad::log::Log;
use sanad::tlog::hash::{leaf_hash, root_of_leaf_hashes};

const ENTRY_SIZE: usize = 128;

/// Entries padded with pseudo-random hex, which LZ4 cannot shrink: the log stores them as they
/// are, byte for byte what the baseline writes. (Ledger entries compress; `benches/ledger.rs`.)
fn entries(count: usize, salt: u64) -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ salt;
    (0..count)
        .map(|i| {
            let mut entry = format!("{{\"salt\":{salt},\"i\":{i},\"pad\":\"").into_bytes();
            while entry.len() < ENTRY_SIZE - 2 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                entry.push(b"0123456789abcdef"[(state & 15) as usize]);
            }
            entry.extend_from_slice(b"\"}");
            entry
        })
        .collect()
}

/// Our log: `callers` threads, each appending batches of `per_append` entries.
fn ours(total: usize, per_append: usize, callers: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::create(dir.path(), "bench.example/log").unwrap());
    let per_caller = total / callers;
    let batches: Vec<Vec<Vec<Vec<u8>>>> = (0..callers)
        .map(|c| entries(per_caller, c as u64).chunks(per_append).map(<[_]>::to_vec).collect())
        .collect();
    let start = Instant::now();
    let threads: Vec<_> = batches
        .into_iter()
        .map(|mine| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for batch in mine {
                    log.append(batch).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let rate = per_second(per_caller * callers, start.elapsed());
    (rate, log.commit_count())
}

fn verification(total: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::create(&dir.path().join("log"), "bench.example/log").unwrap();
    let data = entries(total, 9);
    for batch in data.chunks(10_000) {
        log.append(batch.to_vec()).unwrap();
    }
    log.wait_for_checkpoint(total as u64).unwrap();
    let export = dir.path().join("export");
    log.export(&export).unwrap();
    let verifier = log.verifier();

    let start = Instant::now();
    let report = sanad::audit::verify_export(&export, &verifier, None, &mut |_, _| {}).unwrap();
    let ours = per_second(total, start.elapsed());
    assert_eq!(report.tree_size, total as u64);

    let start = Instant::now();
    let leaves: Vec<_> = data.iter().map(|e| leaf_hash(e)).collect();
    let root = root_of_leaf_hashes(&leaves);
    let baseline = per_second(total, start.elapsed());
    assert_eq!(root, report.root);
    (ours, baseline)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (total, rounds) = if quick { (20_000, 1) } else { (100_000, 7) };
    println!(
        "sanad log benchmarks: {total} entries of {ENTRY_SIZE} bytes per run, {rounds} paired runs{}",
        if quick { " (quick)" } else { "" }
    );
    println!("baseline for appends: raw sled, one value per 1,000 entries, flush() after each");
    compare(
        "durable appends, 1 caller x 1,000 entries/append",
        "entries",
        rounds,
        || ours(total, BASELINE_BATCH, 1).0,
        || raw_sled(&entries(total, 1)),
    );
    compare(
        "durable appends, 8 callers x 125 entries/append",
        "entries",
        rounds,
        || ours(total, 125, 8).0,
        || raw_sled(&entries(total, 1)),
    );
    compare(
        "durable appends, 1 caller x 4,096 entries (as sanad log append)",
        "entries",
        rounds,
        || ours(total, 4_096, 1).0,
        || raw_sled(&entries(total, 1)),
    );
    compare(
        "durable appends, 64 callers x 100 entries/append",
        "entries",
        rounds,
        || ours(total, 100, 64).0,
        || raw_sled(&entries(total, 1)),
    );

    println!("baseline for verification: RFC 6962 root of the same entries, in memory");
    let mut verification_rates = Vec::new();
    let mut root_rates = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let (ours, baseline) = verification(total * 3);
        verification_rates.push(ours);
        root_rates.push(baseline);
        ratios.push(ours / baseline);
    }
    println!(
        "{:<58} {:>12.0} entries/s  baseline {:>12.0} entries/s  ratio {:>5.1}% (median of {rounds})",
        "export verification (bundles, leaves, tiles, root)",
        median(verification_rates),
        median(root_rates),
        100.0 * median(ratios)
    );

    println!("group commit: appends/s by entries per commit (1 caller, one fsync each)");
    for per_commit in [1usize, 10, 100, 1_000] {
        let count = if quick { per_commit * 50 } else { (per_commit * 500).min(total) };
        let (rate, commits) = ours(count, per_commit, 1);
        println!(
            "  {per_commit:>5} entries/commit: {rate:>12.0} entries/s  ({:>8.0} commits/s)",
            commits as f64 / (count as f64 / rate)
        );
    }
}
