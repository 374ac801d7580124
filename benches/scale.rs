//! Scale benchmark: memory and start-up with many accounts and transfers. Builds a ledger with
//! 1 M accounts and 10 M transfers through the `Ledger` handle (`--quick`: 10 k and 100 k),
//! reports the peak resident memory of the process that built it, then reopens it in a fresh
//! child process and reports that process's open time and peak memory (the snapshot checked
//! against the log, then the entries after it replayed).
//!
//! `cargo bench --bench scale` (add `-- --quick` for a smoke run). Targets: peak resident
//! memory at most 1 GiB, reopening in at most 5 s. It runs on mimalloc, as a long-running
//! server should: with glibc's allocator, per-thread arenas keep freed memory and the building
//! process peaks about 20 % higher (see the README).

// Bench code: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{funded_programme, id, jod, open};
use sanad::engine::{Ledger, Options};
use sanad::ledger::{AccountKind, Actor, Command};
use sanad::money::Amount;

/// A line of /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn execute(ledger: &Ledger, commands: Vec<Command>) {
    for result in ledger.execute_each(commands).unwrap() {
        result.unwrap();
    }
}

fn build(dir: &std::path::Path, accounts: usize, transfers: usize) {
    let ledger = Ledger::create(dir, "bench.example/scale", Options::default()).unwrap();
    execute(&ledger, funded_programme("Scale", "10000000000000"));
    let start = Instant::now();
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(8_000) {
        execute(
            &ledger,
            chunk.iter().map(|w| open(&format!("w{w}"), AccountKind::Wallet)).collect(),
        );
    }
    println!(
        "opened {accounts} accounts in {:.1} s, resident {:.0} MiB",
        start.elapsed().as_secs_f64(),
        status_mib("VmRSS:")
    );
    let start = Instant::now();
    let mut done = 0;
    while done < transfers {
        let count = 8_000.min(transfers - done);
        let batch = (done..done + count)
            .map(|n| Command::Transfer {
                id: id(&format!("t{n}")),
                from: id("prog"),
                to: id(&format!("w{}", (n * 7_919) % accounts)),
                amount: Amount::from_minor_units(1_000 + (n % 1_000) as i64, jod()),
                programme: id("prog"),
                actor: Actor::Operator,
                reference: None,
            })
            .collect();
        execute(&ledger, batch);
        done += count;
        if done % (transfers / 10).max(1) == 0 {
            println!("  {done} transfers, resident {:.0} MiB", status_mib("VmRSS:"));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("made {transfers} transfers in {elapsed:.1} s ({:.0}/s)", transfers as f64 / elapsed);
    let start = Instant::now();
    ledger.close().unwrap();
    println!("closed (snapshot written) in {:.1} s", start.elapsed().as_secs_f64());
    println!("building process: peak resident memory {:.0} MiB", status_mib("VmHWM:"));
}

/// The child: open, answer a query, report.
fn reopen(dir: &std::path::Path) {
    let start = Instant::now();
    let ledger =
        Ledger::open(dir, Options { snapshot_on_close: false, ..Options::default() }).unwrap();
    let opened = start.elapsed().as_secs_f64();
    let wallet = ledger.account(&id("w1")).unwrap();
    let page = ledger.history(&id("w1"), None, 10).unwrap();
    assert!(!page.items.is_empty());
    println!(
        "reopened in {opened:.2} s (snapshot of {} entries{}, {} replayed; {:?}); w1 holds {}; peak resident memory {:.0} MiB",
        ledger.open_report().snapshot_size,
        ledger
            .open_report()
            .snapshot_ignored
            .as_ref()
            .map(|why| format!(" — ignored: {why}"))
            .unwrap_or_default(),
        ledger.open_report().replayed,
        (ledger.open_report().log_ms, ledger.open_report().load_ms, ledger.open_report().replay_ms),
        wallet.balance(),
        status_mib("VmHWM:")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--reopen") {
        reopen(std::path::Path::new(&args[at + 1]));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scaled = |name: &str, default: usize| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (accounts, transfers) = if quick {
        (10_000, 100_000)
    } else {
        (scaled("SANAD_SCALE_ACCOUNTS", 1_000_000), scaled("SANAD_SCALE_TRANSFERS", 10_000_000))
    };
    println!(
        "sanad scale benchmark: {accounts} accounts, {transfers} transfers{}",
        if quick { " (quick)" } else { "" }
    );
    // SANAD_SCALE_DIR keeps the built ledger for profiling its reopening (`--reopen DIR`).
    let kept = std::env::var_os("SANAD_SCALE_DIR").map(std::path::PathBuf::from);
    let temporary = tempfile::tempdir().unwrap();
    let dir = kept.as_deref().unwrap_or(temporary.path());
    build(dir, accounts, transfers);
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--reopen", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(child.success());
}
