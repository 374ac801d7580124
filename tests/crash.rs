//! Crash test: a child process appends in a loop from several threads and is killed with
//! SIGKILL at random moments, again and again. After every kill the log must reopen (its
//! recomputed root matching the stored checkpoint), every append the child saw acknowledged
//! must be present at the index it was given, and the export must pass the offline auditor.
//!
//! The child is this same test binary, re-run with `SANAD_CRASH_CHILD` set. It prints
//! `ack <first_index> <thread> <seq> <count>` after each durable append. `SANAD_CRASH_CYCLES`
//! runs a longer campaign (the default is short enough for every CI run).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use sanad::log::Log;

const CHILD_ENV: &str = "SANAD_CRASH_CHILD";
const THREADS: u32 = 4;

fn entry(cycle: u32, thread: u32, seq: u64) -> Vec<u8> {
    format!("cycle {cycle} thread {thread} seq {seq}").into_bytes()
}

/// The child: append forever, acknowledging each durable append on stdout.
fn run_child(dir: &Path, cycle: u32) -> ! {
    let log = Arc::new(Log::open(dir).expect("child opens the log"));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut seq = 0u64;
                loop {
                    let count = 1 + seq % 7;
                    let entries = (seq..seq + count).map(|s| entry(cycle, thread, s)).collect();
                    let appended = log.append(entries).expect("append");
                    println!("ack {} {thread} {seq} {count}", appended.first_index);
                    seq += count;
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    unreachable!("appender threads never end")
}

#[test]
fn sigkill_during_appends_loses_no_acknowledged_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle = std::env::var("SANAD_CRASH_CYCLE").unwrap().parse().unwrap();
        run_child(Path::new(&dir), cycle);
    }
    let cycles: u32 =
        std::env::var("SANAD_CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(12);
    let seed: u64 = std::env::var("SANAD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("crash campaign: {cycles} cycles, seed {seed} (SANAD_CRASH_SEED={seed} to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let vkey = Log::create(&data, "example.org/crash-test").unwrap().verifier();

    let mut acknowledged: Vec<(u64, u32, u32, u64, u64)> = Vec::new();
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::sigkill_during_appends_loses_no_acknowledged_write",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, &data)
            .env("SANAD_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only complete lines count: a line cut by the kill was never fully acknowledged.
            let mut acks = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(rest) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                    let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                    acks.push((f[0], f[1] as u32, f[2], f[3]));
                }
                line.clear();
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        // SIGKILL: no destructor, no flush, no goodbye.
        child.kill().unwrap();
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        acknowledged.extend(acks.into_iter().map(|(first, t, seq, n)| (first, cycle, t, seq, n)));

        let log = Log::open(&data).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        for &(first, c, thread, seq, count) in &acknowledged {
            for k in 0..count {
                let got = log.entry(first + k).unwrap_or_else(|e| {
                    panic!("cycle {cycle}: acknowledged entry {} missing: {e}", first + k)
                });
                assert_eq!(got, entry(c, thread, seq + k), "cycle {cycle}: entry {}", first + k);
            }
        }
        let export = dir.path().join(format!("export-{cycle}"));
        log.export(&export).unwrap();
        let report = sanad_audit::verify_export(&export, &vkey, None, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("cycle {cycle}: export does not verify: {e}"));
        assert_eq!(report.tree_size, log.size());
        std::fs::remove_dir_all(&export).unwrap();
    }
    let checked: u64 = acknowledged.iter().map(|a| a.4).sum();
    println!(
        "crash campaign: {cycles} cycles, {} acknowledged appends, {checked} entries checked",
        acknowledged.len()
    );
    assert!(checked > 0, "the child never acknowledged anything: the test proved nothing");
}
