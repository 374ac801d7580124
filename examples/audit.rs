//! Verifying a Sanad log with the library, as an auditor's own tool would:
//! `cargo run --example audit -- EXPORT_DIR VERIFIER_KEY`.
//!
//! It checks the signed checkpoint, every tile and the root of an export (what `sanad log
//! export` writes), and replays every entry through the ledger's rules to check the money:
//! conservation per currency, no account below zero that may not be, vouchers never
//! over-redeemed, settlements matching their redemptions, every entry within its principal's
//! role. It prints the figures per programme and exits non-zero on any anomaly. Without
//! arguments it first makes a small ledger and an export of it, then audits that.

use std::path::Path;

use sanad::audit::money::{MoneyAudit, MoneyReport};
use sanad::audit::{Folder, verify_tiles};
use sanad::engine::{Agency, Options};
use sanad::ledger::ProgrammeKind;
use sanad::money::{Amount, Currency};
use sanad::tlog::NoteVerifier;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let report = match (args.next(), args.next()) {
        (Some(export), Some(key)) => audit(Path::new(&export), &key)?,
        _ => {
            let dir = tempfile::tempdir()?;
            let key = demo_export(dir.path())?;
            audit(&dir.path().join("export"), &key)?
        }
    };
    if !report.is_clean() {
        std::process::exit(1);
    }
    Ok(())
}

/// A small ledger in `dir` and its export in `dir/export`; returns the verifier key.
pub(crate) fn demo_export(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let jod = Currency::parse("JOD")?;
    let agency = Agency::create(
        &dir.join("ledger"),
        "example.org/audit-demo",
        Some("JO"),
        Options::default(),
    )?;
    let programme =
        agency.create_programme("Winter cash", ProgrammeKind::Cash, Amount::parse("1000", jod)?)?;
    let tranche = "phone,amount\n0791234567,25\n0781234567,30\n";
    let options = sanad::engine::disburse::DisburseOptions { register: true, skip_invalid: false };
    sanad::engine::disburse::disburse(
        &agency,
        &programme,
        tranche.as_bytes(),
        options,
        &mut |_, _| {},
    )?;
    let log = agency.ledger().log();
    log.wait_for_checkpoint(log.size())?;
    log.export(&dir.join("export"))?;
    let key = log.verifier().to_vkey();
    agency.close()?;
    Ok(key)
}

/// Audits the export in `dir` against the verifier key `key`, printing what it finds.
pub(crate) fn audit(dir: &Path, key: &str) -> Result<MoneyReport, Box<dyn std::error::Error>> {
    let verifier = NoteVerifier::parse(key)?;
    let mut money = MoneyAudit::new();
    // One pass: each entry is replayed as its bundle is read and hashed.
    let verified =
        verify_tiles(&Folder(dir), &verifier, None, &mut |_, _| {}, &mut |index, entry| {
            money.entry(index, entry)
        })?;
    println!(
        "signed by {} at tree size {}, root {}",
        verified.origin,
        verified.tree_size,
        verified.root.to_base64()
    );
    let report = money.finish();
    for currency in &report.currencies {
        println!(
            "{}: {} entered, balances sum to {}",
            currency.currency, currency.entered, currency.sum
        );
    }
    for programme in &report.programmes {
        println!(
            "{} ({}): funding holds {} {}",
            programme.id, programme.name, programme.funding_balance, programme.currency
        );
    }
    for anomaly in &report.anomalies {
        println!("ANOMALY at {:?}: {}", anomaly.index, anomaly.problem);
    }
    println!("{}", if report.is_clean() { "the money holds" } else { "the money does NOT hold" });
    Ok(report)
}
