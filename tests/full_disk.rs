//! A real storage failure, not a simulated one: a child process writes to the ledger on sled
//! from several threads until the kernel refuses to let its files grow (`ulimit -f`, whose
//! `RLIMIT_FSIZE` fails writes past the limit with `EFBIG` as a full disk fails them with
//! `ENOSPC`, without needing root to mount a small file system). Then:
//! - the write that met the failure, and every write after it, is answered with an error that
//!   names the cause — never a panic, never an acknowledgement of something not durable (with
//!   too little room even opening fails, as clearly, and the round is tried with more);
//! - once the fault is gone (a new process without the limit), the ledger reopens with every
//!   acknowledged transfer in the log once at its index, its export verifies offline, its state
//!   is the log's replayed, money sums to zero — and it takes writes again.
//!
//! `FaultyBackend` (`crates/sanad-engine/tests/faults.rs`) covers failures on command, reads
//! included; this is the kernel's own failure under sled, its files and its flushes.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use sanad::engine::Ledger;

use crate::campaign::{complete_lines, rounds_from_env, seeded_rng};
use crate::ledger_crash::{check_reopened, options, payment, setup};

const CHILD_ENV: &str = "SANAD_FULL_DISK_CHILD";
const THREADS: u64 = 4;
const ROUND_ENV: &str = "SANAD_FULL_DISK_ROUND";
/// How much the largest file may grow before the kernel refuses, at random between these, so
/// that the failure strikes different writes: the log's segments, tiles, idempotency sets.
const ROOM_BYTES: std::ops::Range<u64> = (256 << 10)..(3 << 20);

/// The largest file under `dir`.
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            largest = largest.max(largest_file(&entry.path()));
        } else if kind.is_file() {
            largest = largest.max(entry.metadata().unwrap().len());
        }
    }
    largest
}

/// The child, started under a file size limit: writes until refused.
fn run_child(dir: &Path, round: &str) -> ! {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let file_size = limits.lines().find(|l| l.starts_with("Max file size")).unwrap();
    assert!(!file_size.contains("unlimited"), "no file size limit: {file_size}");
    // Opening writes too (sled starts a new segment): with little room, the failure comes
    // here, and it must be as clear.
    let ledger = match Ledger::open(dir, options(None)) {
        Ok(ledger) => Arc::new(ledger),
        Err(error) => {
            println!("refused-open {error}");
            std::process::exit(0)
        }
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (ledger, round) = (Arc::clone(&ledger), round.to_owned());
            std::thread::spawn(move || {
                for seq in 0.. {
                    let name = format!("d{round}-t{thread}-{seq}");
                    match ledger.execute(payment(&name, seq)) {
                        Ok(Ok(applied)) => println!("ack {name} {}", applied.log_index.unwrap()),
                        Ok(Err(rejection)) => panic!("{name} rejected: {rejection}"),
                        Err(error) => {
                            println!("refused {error}");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a writing thread panicked");
    }
    // Every write after the failure is refused too, loudly.
    for seq in 0..3 {
        let name = format!("d{round}-after-{seq}");
        match ledger.execute(payment(&name, seq)) {
            Err(error) => println!("still-refused {error}"),
            Ok(answer) => panic!("{name} was answered after a storage failure: {answer:?}"),
        }
    }
    // Without closing: closing would try to write a snapshot on the full disk.
    std::process::exit(0)
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(Path::new(&dir), &std::env::var(ROUND_ENV).unwrap());
    }
    let rounds = rounds_from_env("SANAD_FULL_DISK_ROUNDS", 3);
    let mut rng = seeded_rng(&format!("full disk: {rounds} rounds"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    setup(&data, None);
    let mut acknowledged = HashMap::new();
    // Each round fills the files again, on the ledger the round before left.
    for round in 0..rounds {
        // With too little room even opening fails (clearly, as checked): more room, then.
        let mut room = rng.gen_range(ROOM_BYTES);
        let (acked, refusals) = loop {
            match fill_until_refused(&data, round, room) {
                Some(filled) => break filled,
                None => room *= 2,
            }
        };
        acknowledged.extend(acked);
        println!(
            "full disk, round {round}: {} transfers acknowledged in all; refused with {refusals:?}",
            acknowledged.len()
        );
        // The fault gone: everything acknowledged is there, and the ledger writes again.
        let ledger = check_reopened(&format!("round {round}"), &data, None, &acknowledged);
        let name = format!("d{round}-afterwards");
        let answer = ledger.execute(payment(&name, round)).unwrap().unwrap();
        acknowledged.insert(name, answer.log_index.expect("the ledger takes writes again"));
    }
    assert!(
        acknowledged.len() as u64 > 100 * rounds,
        "the files filled almost at once: the failures did not come mid-load"
    );
}

/// Runs a child with `room` bytes for its largest file to grow; returns what it acknowledged
/// and the first refusal, having checked that every writer and every later write was refused
/// with the cause; or `None` when the ledger could not even open in so little room (having
/// checked that the refusal names the cause).
fn fill_until_refused(
    data: &Path,
    round: u64,
    room: u64,
) -> Option<(HashMap<String, u64>, String)> {
    // The shell sets the limit (in 512-byte blocks) and ignores SIGXFSZ, which would kill by
    // default: ignored, a write past the limit fails with EFBIG, as a full disk's does with
    // ENOSPC. Both survive the exec into the child.
    let blocks = (largest_file(data) + room).div_ceil(512);
    let test = "full_disk::a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged";
    let mut child = Process::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f \"$1\"; shift; exec \"$@\"", "sh"])
        .arg(blocks.to_string())
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(CHILD_ENV, data)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = complete_lines(child.stdout.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the child neither filled its files nor stopped in two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = lines.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "round {round}: the child failed ({status}):\n{stderr}");

    if let Some(refused) = printed.iter().find(|line| line.starts_with("refused-open ")) {
        assert!(refused.contains("File too large"), "round {round}: the cause is named: {refused}");
        println!("full disk, round {round}: no room to open in {room} bytes: {refused}");
        return None;
    }
    let mut acknowledged = HashMap::new();
    let (mut refused, mut still_refused) = (Vec::new(), 0);
    for line in &printed {
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        match words.as_slice() {
            ["ack", name, index] => {
                acknowledged.insert((*name).to_owned(), index.parse::<u64>().unwrap());
            }
            ["refused", ..] => refused.push(line.clone()),
            ["still-refused", ..] => still_refused += 1,
            _ => {}
        }
    }
    assert_eq!(refused.len(), THREADS as usize, "round {round}: every writer was told");
    assert_eq!(still_refused, 3, "round {round}: writes after the failure are refused");
    for line in &refused {
        assert!(line.contains("File too large"), "round {round}: the cause is named: {line}");
    }
    Some((acknowledged, refused.swap_remove(0)))
}
