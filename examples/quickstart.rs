//! Embedding Sanad in an agency system: `cargo run --example quickstart [DIR]`.
//!
//! A ledger with its registry in one folder (a temporary one unless `DIR` is given): fund a
//! cash programme, register a beneficiary, pay a tranche from a CSV file, issue a food voucher,
//! let a shop redeem part of it with the beneficiary's PIN, settle the shop, and print the
//! receipt of the redemption — a `c2sp.org/tlog-proof@v1` file anyone can check against the
//! log's verifier key, as this example does before it ends.

use std::collections::BTreeMap;
use std::path::Path;

use sanad::engine::disburse::{DisburseOptions, disburse};
use sanad::engine::registry::NewPerson;
use sanad::engine::{Agency, Options, VoucherPlan};
use sanad::ledger::{ProgrammeKind, Vendors};
use sanad::money::{Amount, Currency};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1) {
        Some(dir) => run(Path::new(&dir)),
        None => run(tempfile::tempdir()?.path()),
    }
}

/// The whole walk-through in `dir`.
pub(crate) fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let jod = Currency::parse("JOD")?;
    let agency = Agency::create(
        &dir.join("ledger"),
        "example.org/quickstart",
        Some("JO"),
        Options::default(),
    )?;
    println!("verifier key: {}", agency.ledger().log().verifier().to_vkey());

    // A cash programme with its budget: a logged issuance into its funding account.
    let cash =
        agency.create_programme("Winter cash", ProgrammeKind::Cash, Amount::parse("5000", jod)?)?;
    // A beneficiary: personal data in the registry, a pseudonym in the log.
    let person = NewPerson {
        phone: "0791234567".into(),
        name: Some("Amal".into()),
        language: Some("ar".into()),
        pin: Some("4821".to_owned().into()),
        ..NewPerson::default()
    };
    let amal = agency.register(&person, jod)?;
    // A tranche from a file: everyone on it paid once, however often it is run.
    let tranche = "phone,amount,name\n0791234567,60,Amal\n0781234567,45.5,Omar\n";
    let options = DisburseOptions { register: true, skip_invalid: false };
    let report = disburse(&agency, &cash, tranche.as_bytes(), options, &mut |_, _| {})?;
    println!("tranche: paid {}, rejected {}", report.paid, report.rejected.len());
    println!(
        "Amal's wallet: {}",
        agency.ledger().account(&Agency::wallet_of(&amal, jod)).ok_or("no wallet")?.balance()
    );

    // Food vouchers redeemable at enrolled shops for 30 days.
    let now_ms = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis(),
    )?;
    let plan = VoucherPlan {
        valid_from_ms: now_ms - 60_000,
        valid_until_ms: now_ms + 30 * 86_400_000,
        vendors: Vendors::Enrolled,
        single_use: false,
        partial: true,
        items: Vec::new(),
        pin_attempts: 3,
        lock_ms: 30 * 60_000,
    };
    let food = agency.create_voucher_programme(
        "Food",
        ProgrammeKind::ValueVoucher,
        Amount::parse("2000", jod)?,
        &plan,
    )?;
    let shop = agency.open_vendor(jod, &[], Some("0771234567"))?;
    agency.enrol_vendor(&food, &shop, BTreeMap::new())?;
    let voucher =
        agency.issue_voucher(&food, &amal, Some(Amount::parse("40", jod)?), Vec::new())?;
    println!("voucher code for Amal (never in the log): {}", voucher.code.letters());

    // At the counter: the shop asks for 15, Amal types her PIN.
    let asked = agency.request_redemption(
        &voucher.code.letters(),
        &shop,
        Some(Amount::parse("15", jod)?),
        Vec::new(),
        None,
    )?;
    let paid_at =
        agency.authorise_with_pin(&asked.id, "4821")?.ok_or("the authorisation has an entry")?;
    let run = agency.settle(&food, Some("first-week"))?;
    for vendor in &run.vendors {
        println!(
            "settled {} to {} ({} redemptions)",
            vendor.amount, vendor.vendor, vendor.redemptions
        );
    }

    // The receipt of the redemption, checked as anyone holding the verifier key would.
    let log = agency.ledger().log();
    log.wait_for_checkpoint(paid_at + 1)?;
    let receipt = log.receipt(paid_at)?;
    let entry = log.entry(paid_at)?;
    let checkpoint = receipt.verify(&entry, &log.verifier())?;
    println!("receipt for entry {paid_at} (tree size {}):", checkpoint.checkpoint().size());
    print!("{}", String::from_utf8_lossy(&receipt.to_text()));
    agency.close()?;
    Ok(())
}
