//! Crash test: a child process appends in a loop from several threads and is killed with
//! SIGKILL at random moments, again and again. After every kill the log must reopen (its
//! recomputed root matching the stored checkpoint), every append the child saw acknowledged
//! must be present at the index it was given, and the export must pass the offline auditor.
//!
//! The child is this same test binary, re-run with `SANAD_CRASH_CHILD` set. It prints
//! `ack <first_index> <thread> <seq> <count>` after each durable append. `SANAD_CRASH_CYCLES`
//! runs a longer campaign (the default is short enough for every CI run).
//!
//! The campaign runs on sled, on a throwaway PostgreSQL server, and there with two appending
//! processes at once (each with its own folder and a copy of the key), one killed first while
//! the other carries on alone for a moment.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sanad::log::Log;

use crate::campaign::{
    complete_lines, kill_one_then_the_rest, process_folders, rounds_from_env, seeded_rng,
};

const CHILD_ENV: &str = "SANAD_CRASH_CHILD";
const DATABASE_ENV: &str = "SANAD_CRASH_DATABASE";
const THREADS: u32 = 4;

/// What thread `thread` of process `process` appends `seq`-th in cycle `cycle`.
fn entry(cycle: u32, process: u32, thread: u32, seq: u64) -> Vec<u8> {
    format!("cycle {cycle} process {process} thread {thread} seq {seq}").into_bytes()
}

/// The log in `dir`: on PostgreSQL at `database`, or on sled in the folder.
fn open(dir: &Path, database: Option<&str>) -> Result<Log, sanad::log::Error> {
    match database {
        Some(url) => Log::open_on(dir, Arc::new(sanad_postgres::PgBackend::connect(url)?)),
        None => Log::open(dir),
    }
}

/// The child: append forever, acknowledging each durable append on stdout.
fn run_child(dir: &Path, database: Option<&str>, cycle: u32, process: u32) -> ! {
    let log = Arc::new(open(dir, database).expect("child opens the log"));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut seq = 0u64;
                loop {
                    let count = 1 + seq % 7;
                    let entries =
                        (seq..seq + count).map(|s| entry(cycle, process, thread, s)).collect();
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
    campaign("crash::sigkill_during_appends_loses_no_acknowledged_write", None, 1);
}

#[test]
fn sigkill_during_appends_on_postgresql_loses_no_acknowledged_write() {
    on_postgresql("crash::sigkill_during_appends_on_postgresql_loses_no_acknowledged_write", 1);
}

/// Two processes appending to one log on PostgreSQL at once; each cycle kills one mid-append,
/// lets the other carry on alone a moment, then kills it too.
#[test]
fn two_appending_processes_on_postgresql_one_killed_lose_no_acknowledged_write() {
    on_postgresql(
        "crash::two_appending_processes_on_postgresql_one_killed_lose_no_acknowledged_write",
        2,
    );
}

/// The campaign with the log on a throwaway PostgreSQL server.
fn on_postgresql(test: &str, processes: u32) {
    crate::campaign::on_postgresql(CHILD_ENV, "crash", |url| campaign(test, url, processes));
}

/// One acknowledged append: first index, cycle, process, thread, first seq, count.
type Ack = (u64, u32, u32, u32, u64, u64);

/// Kills `processes` appending children (each the test `test` re-run) in every cycle and checks
/// the log after each; or, in a child, appends.
fn campaign(test: &str, database: Option<&str>, processes: u32) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let number = |name: &str| std::env::var(name).unwrap().parse().unwrap();
        let database = std::env::var(DATABASE_ENV).ok();
        let (cycle, process) = (number("SANAD_CRASH_CYCLE"), number("SANAD_CRASH_PROCESS"));
        run_child(Path::new(&dir), database.as_deref(), cycle, process);
    }
    let cycles = u32::try_from(rounds_from_env("SANAD_CRASH_CYCLES", 12)).unwrap();
    let mut rng =
        seeded_rng(&format!("crash campaign: {processes} appending process(es), {cycles} cycles"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let vkey = match database {
        Some(url) => {
            let backend = Arc::new(sanad_postgres::PgBackend::connect(url).unwrap());
            Log::create_on(&data, "example.org/crash-test", backend).unwrap().verifier()
        }
        None => Log::create(&data, "example.org/crash-test").unwrap().verifier(),
    };
    // Each further process has a folder of its own, with a copy of the key.
    let folders = process_folders(dir.path(), &data, "log", processes as usize);

    let mut acknowledged: Vec<Ack> = Vec::new();
    for cycle in 0..cycles {
        let mut children = Vec::new();
        for (process, folder) in (0..).zip(&folders) {
            let mut child = Command::new(std::env::current_exe().unwrap());
            child
                .args([test, "--exact", "--nocapture"])
                .env(CHILD_ENV, folder)
                .env("SANAD_CRASH_CYCLE", cycle.to_string())
                .env("SANAD_CRASH_PROCESS", process.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if let Some(url) = database {
                child.env(DATABASE_ENV, url);
            }
            let mut child = child.spawn().unwrap();
            let lines = complete_lines(child.stdout.take().unwrap());
            children.push((child, lines));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        // SIGKILL: no destructor, no flush, no goodbye. One first; the others carry on alone a
        // moment before they follow.
        let (outputs, _) = kill_one_then_the_rest(children, 50..300, &mut rng);
        for (process, lines) in (0..).zip(outputs) {
            for line in lines {
                let Some(rest) = line.strip_prefix("ack ") else { continue };
                let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                acknowledged.push((f[0], cycle, process, f[1] as u32, f[2], f[3]));
            }
        }

        let log =
            open(&data, database).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        for &(first, c, process, thread, seq, count) in &acknowledged {
            for k in 0..count {
                let got = log.entry(first + k).unwrap_or_else(|e| {
                    panic!("cycle {cycle}: acknowledged entry {} missing: {e}", first + k)
                });
                let expected = entry(c, process, thread, seq + k);
                assert_eq!(got, expected, "cycle {cycle}: entry {}", first + k);
            }
        }
        let export = dir.path().join(format!("export-{cycle}"));
        log.export(&export).unwrap();
        let report = sanad_audit::verify_export(&export, &vkey, None, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("cycle {cycle}: export does not verify: {e}"));
        assert_eq!(report.tree_size, log.size());
        std::fs::remove_dir_all(&export).unwrap();
    }
    let checked: u64 = acknowledged.iter().map(|a| a.5).sum();
    println!(
        "crash campaign: {processes} appending process(es), {cycles} cycles, {} acknowledged appends, {checked} entries checked",
        acknowledged.len()
    );
    assert!(checked > 0, "the child never acknowledged anything: the test proved nothing");
    if processes > 1 {
        let by_each = (0..processes).all(|p| acknowledged.iter().any(|a| a.2 == p));
        assert!(by_each, "not every process appended: the test proved little");
    }
}
