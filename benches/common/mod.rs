//! What every benchmark shares: the machine's own limits measured in the same run (raw sled
//! writes), and paired, median-of-rounds comparison against them.

// Bench code: a failed unwrap is a failed run; not every bench uses every helper.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sanad::engine::{Ledger, Options};
use sanad::ledger::Event;

use sanad::ledger::{AccountKind, Actor, Command, ProgrammeKind};
use sanad::money::{Amount, Currency, Id};

/// Entries written per value by the raw-sled baseline.
pub(crate) const BASELINE_BATCH: usize = 1_000;

pub(crate) fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Raw sled, the storage limit: the same entries, one value per 1,000 (length-prefixed), then
/// `flush()` after each value. Entries per second.
pub(crate) fn raw_sled(entries: &[Vec<u8>]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
    let start = Instant::now();
    for (n, batch) in entries.chunks(BASELINE_BATCH).enumerate() {
        let mut value = Vec::with_capacity(batch.iter().map(|e| e.len() + 2).sum());
        for entry in batch {
            value.extend_from_slice(&(entry.len() as u16).to_be_bytes());
            value.extend_from_slice(entry);
        }
        db.insert((n as u64).to_be_bytes(), value).unwrap();
        db.flush().unwrap();
    }
    per_second(entries.len(), start.elapsed())
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `ours` and `baseline` back to back `rounds` times and prints the medians and the
/// median of the per-round ratios: on a shared, noisy machine, a pair measured within seconds
/// of each other is the fairest comparison.
pub(crate) fn compare(
    what: &str,
    unit: &str,
    rounds: usize,
    mut ours: impl FnMut() -> f64,
    mut baseline: impl FnMut() -> f64,
) {
    let (mut o, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let base = baseline();
        let mine = ours();
        o.push(mine);
        b.push(base);
        r.push(mine / base);
    }
    println!(
        "{what:<58} {:>10.0} {unit}/s  baseline {:>10.0} entries/s  ratio {:>5.1}% (median of {rounds})",
        median(o),
        median(b),
        100.0 * median(r)
    );
}

pub(crate) fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

pub(crate) fn jod() -> Currency {
    Currency::parse("JOD").unwrap()
}

/// Opens a JOD account of the agency's.
pub(crate) fn open(name: &str, kind: AccountKind) -> Command {
    Command::OpenAccount { id: id(name), kind, currency: jod(), owner: id("agency") }
}

/// The ledger benches' programme `prog`, funded with `budget` JOD from the external `donor`.
pub(crate) fn funded_programme(name: &str, budget: &str) -> Vec<Command> {
    vec![
        open("donor", AccountKind::External),
        open("prog", AccountKind::ProgrammeFunding),
        Command::CreateProgramme {
            id: id("prog"),
            name: name.into(),
            kind: ProgrammeKind::Cash,
            funding: id("prog"),
        },
        Command::Transfer {
            id: id("budget"),
            from: id("donor"),
            to: id("prog"),
            amount: Amount::parse(budget, jod()).unwrap(),
            programme: id("prog"),
            actor: Actor::Operator,
            reference: None,
        },
    ]
}

/// Wallets the ledger benches pay into.
pub(crate) const WALLETS: usize = 1_000;

pub(crate) fn transfer(caller: usize, n: usize) -> Command {
    Command::Transfer {
        id: id(&format!("t-{caller}-{n}")),
        from: id("prog"),
        to: id(&format!("w{}", n % WALLETS)),
        amount: Amount::from_minor_units(1_000 + (n % 97) as i64, jod()),
        programme: id("prog"),
        actor: Actor::Operator,
        reference: None,
    }
}

/// The entries our transfers become, for the baseline to write the same bytes.
pub(crate) fn transfer_entries(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|n| {
            let Command::Transfer { id, from, to, amount, programme, actor, reference } =
                transfer(0, n)
            else {
                unreachable!()
            };
            Event::TransferPosted {
                transfer: id,
                from,
                to,
                amount,
                programme,
                actor,
                reference,
                at_ms: 1_764_000_000_000,
            }
            .to_entry()
        })
        .collect()
}

pub(crate) fn funded(dir: &std::path::Path) -> Ledger {
    funded_on(dir, Options::default())
}

/// [`funded`], with its log where `options` say (PostgreSQL, say).
pub(crate) fn funded_on(dir: &std::path::Path, options: Options) -> Ledger {
    let ledger = Ledger::create(dir, "bench.example/ledger", options).unwrap();
    let mut setup = funded_programme("Bench", "1000000000000");
    setup.extend((0..WALLETS).map(|w| open(&format!("w{w}"), AccountKind::Wallet)));
    for chunk in setup.chunks(4_000) {
        for result in ledger.execute_each(chunk.to_vec()).unwrap() {
            result.unwrap();
        }
    }
    ledger
}

/// `callers` threads each submitting `total / callers` transfers, `per_call` per call.
/// Transfers per second.
pub(crate) fn through_ledger(total: usize, per_call: usize, callers: usize) -> f64 {
    through_ledger_on(total, per_call, callers, Options::default())
}

/// [`through_ledger`], with the ledger's log where `options` say.
pub(crate) fn through_ledger_on(
    total: usize,
    per_call: usize,
    callers: usize,
    options: Options,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(funded_on(dir.path(), options));
    let per_caller = total / callers;
    let calls: Vec<Vec<Vec<Command>>> = (0..callers)
        .map(|c| {
            let mine: Vec<Command> = (0..per_caller).map(|n| transfer(c, n)).collect();
            mine.chunks(per_call).map(<[_]>::to_vec).collect()
        })
        .collect();
    let start = Instant::now();
    let threads: Vec<_> = calls
        .into_iter()
        .map(|mine| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                for call in mine {
                    for result in ledger.execute_each(call).unwrap() {
                        result.unwrap();
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    per_second(per_caller * callers, start.elapsed())
}

/// `callers` threads each making `total / callers` calls of one transfer: transfers per second
/// and every call's latency, sorted.
pub(crate) fn latencies(total: usize, callers: usize) -> (f64, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(funded(dir.path()));
    let per_caller = total / callers;
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..per_caller)
                    .map(|n| {
                        let t = Instant::now();
                        ledger.execute(transfer(c, n)).unwrap().unwrap();
                        t.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let rate = per_second(per_caller * callers, start.elapsed());
    all.sort();
    (rate, all)
}
