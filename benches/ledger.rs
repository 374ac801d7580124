//! Ledger benchmarks: durable transfers per second through the shared `Ledger` handle, next to
//! raw sled writing the same entries in the same run (the machine's storage limit), printed as
//! a ratio; and the latency of one acknowledged transfer under concurrent load.
//!
//! `cargo bench --bench ledger` (add `-- --quick` for a smoke run):
//!
//! 1. one caller submitting 10, 100, 1,000 and 8,000 transfers per call;
//! 2. 8 callers submitting 1,000 per call;
//! 3. 64 concurrent callers submitting one transfer each, with p50 and p99 latency;
//! 4. voucher redemptions (a vendor's request and the beneficiary's authorisation, two
//!    commands each) per second, next to transfers per second measured in the same run with
//!    the same callers and call sizes.
//!
//! It runs on mimalloc, as a server embedding the ledger should (the HTTP binding does), and so
//! does the baseline, in the same process.

// Bench code: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use common::{
    compare, funded, id, jod, latencies, median, open, per_second, raw_sled, through_ledger,
    transfer_entries,
};
use sanad::engine::Ledger;
use sanad::ledger::{
    AccountKind, Actor, Authorisation, Command, ProgrammeKind, Vendors, VoucherTerms,
};
use sanad::money::Amount;

const VOUCHERS: usize = 10_000;
const VENDORS: usize = 100;

/// A ledger with a value voucher programme `vp` (multi-use, partial redemption), its vendors
/// enrolled, and [`VOUCHERS`] vouchers of 1,000 JOD issued.
fn with_vouchers(dir: &std::path::Path) -> Ledger {
    let ledger = funded(dir);
    let mut setup = vec![
        open("vp", AccountKind::ProgrammeFunding),
        open("vp-escrow", AccountKind::Escrow),
        Command::CreateProgramme {
            id: id("vp"),
            name: "Bench vouchers".into(),
            kind: ProgrammeKind::ValueVoucher,
            funding: id("vp"),
        },
        Command::SetVoucherTerms {
            programme: id("vp"),
            terms: VoucherTerms {
                escrow: id("vp-escrow"),
                valid_from_ms: 0,
                valid_until_ms: u64::MAX,
                vendors: Vendors::Enrolled,
                single_use: false,
                partial: true,
                items: Vec::new(),
                pin_attempts: 3,
                lock_ms: 60_000,
            },
        },
        Command::Transfer {
            id: id("vp-budget"),
            from: id("donor"),
            to: id("vp"),
            amount: Amount::parse("100000000", jod()).unwrap(),
            programme: id("vp"),
            actor: Actor::Operator,
            reference: None,
        },
        Command::RegisterBeneficiary { id: id("b-1"), commitment: "ab".repeat(32) },
    ];
    for v in 0..VENDORS {
        setup.push(open(&format!("shop{v}"), AccountKind::Vendor));
        setup.push(Command::EnrolVendor {
            programme: id("vp"),
            vendor: id(&format!("shop{v}")),
            prices: Default::default(),
        });
    }
    setup.extend((0..VOUCHERS).map(|v| Command::IssueVoucher {
        id: id(&format!("v{v}")),
        programme: id("vp"),
        beneficiary: id("b-1"),
        value: Some(Amount::parse("1000", jod()).unwrap()),
        items: Vec::new(),
        expires_at_ms: None,
        actor: Actor::Operator,
    }));
    for chunk in setup.chunks(4_000) {
        for result in ledger.execute_each(chunk.to_vec()).unwrap() {
            result.unwrap();
        }
    }
    ledger
}

/// A call of `per_call` commands: the vendors' requests for half as many redemptions, then
/// the beneficiaries' authorisations of them.
fn redemption_call(caller: usize, call: usize, per_call: usize) -> Vec<Command> {
    let redemptions = per_call / 2;
    let ids: Vec<_> = (0..redemptions).map(|n| id(&format!("r-{caller}-{call}-{n}"))).collect();
    let mut commands: Vec<Command> = ids
        .iter()
        .enumerate()
        .map(|(n, redemption)| {
            let spread = caller * 7_919 + call * redemptions + n;
            Command::RequestRedemption {
                id: redemption.clone(),
                voucher: id(&format!("v{}", spread % VOUCHERS)),
                vendor: id(&format!("shop{}", spread % VENDORS)),
                amount: Some(Amount::from_minor_units(1_000 + (n % 97) as i64, jod())),
                items: Vec::new(),
                timeout_ms: 600_000,
                actor: Actor::Vendor,
            }
        })
        .collect();
    commands.extend(
        ids.into_iter()
            .map(|redemption| Command::AuthoriseRedemption { redemption, by: Authorisation::Pin }),
    );
    commands
}

/// `callers` threads each redeeming `total / callers` times, `per_call` commands per call.
/// Redemptions per second.
fn redemptions(total: usize, per_call: usize, callers: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(with_vouchers(dir.path()));
    let calls_each = total / callers / (per_call / 2);
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|caller| {
            let ledger = Arc::clone(&ledger);
            let calls: Vec<_> =
                (0..calls_each).map(|call| redemption_call(caller, call, per_call)).collect();
            std::thread::spawn(move || {
                for call in calls {
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
    per_second(calls_each * callers * (per_call / 2), start.elapsed())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (total, rounds) = if quick { (16_000, 1) } else { (160_000, 5) };
    let entries = transfer_entries(total);
    let entry_size = entries.iter().map(Vec::len).sum::<usize>() / entries.len();
    println!(
        "sanad ledger benchmarks: {total} transfers per run (entries of ~{entry_size} bytes), {rounds} paired runs{}",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "baseline: raw sled writing the same entries, one value per 1,000, flush() after each"
    );
    for per_call in [10usize, 100, 1_000, 8_000] {
        let count = if per_call == 10 { total / 4 } else { total };
        compare(
            &format!("durable transfers, 1 caller x {per_call} per call"),
            "transfers",
            rounds,
            || through_ledger(count, per_call, 1),
            || raw_sled(&entries[..count]),
        );
    }
    compare(
        "durable transfers, 8 callers x 1,000 per call",
        "transfers",
        rounds,
        || through_ledger(total, 1_000, 8),
        || raw_sled(&entries),
    );
    let single = if quick { 2_000 } else { 20_000 };
    let mut rates = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for _ in 0..rounds {
        let (rate, sorted) = latencies(single, 64);
        rates.push(rate);
        p50.push(sorted[sorted.len() / 2].as_secs_f64() * 1e3);
        p99.push(sorted[sorted.len() * 99 / 100].as_secs_f64() * 1e3);
    }
    println!(
        "{:<58} {:>10.0} transfers/s  latency p50 {:.2} ms, p99 {:.2} ms (median of {rounds})",
        "64 concurrent callers x 1 transfer per call",
        median(rates),
        median(p50),
        median(p99)
    );
    println!(
        "vouchers: a redemption is a request and an authorisation (two commands, two entries); \
         transfers measured alongside with the same callers and commands per call"
    );
    let redeemed = total / 4;
    for (per_call, callers) in [(1_000usize, 1usize), (1_000, 8)] {
        let (mut r, mut t, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let transfers = through_ledger(redeemed * 2, per_call, callers);
            let redemptions = redemptions(redeemed, per_call, callers);
            r.push(redemptions);
            t.push(transfers);
            ratio.push(redemptions / transfers);
        }
        println!(
            "{:<58} {:>10.0} redemptions/s  transfers {:>10.0}/s  ratio {:>5.1}% (median of {rounds})",
            format!("redemptions, {callers} caller(s) x {per_call} commands per call"),
            median(r),
            median(t),
            100.0 * median(ratio)
        );
    }
}
