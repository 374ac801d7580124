//! What every benchmark shares: the machine's own limits measured in the same run (raw sled
//! writes), and paired, median-of-rounds comparison against them.

// Bench code: a failed unwrap is a failed run; not every bench uses every helper.
#![allow(clippy::unwrap_used, dead_code)]

use std::time::{Duration, Instant};

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
