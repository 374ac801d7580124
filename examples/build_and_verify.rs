//! The main job, end to end: run a ledger, pay a tranche from a CSV file, then audit the result
//! offline the way an auditor would — `cargo run --release --example build_and_verify [DIR]`.
//!
//! 1. Opens (or creates) a ledger with its registry in `DIR` (default `./sanad-data/example`).
//! 2. Creates a programme the first time, then pays a tranche of this run's CSV file to a few
//!    phone numbers, registering them as needed (personal data go to the registry only).
//! 3. Exports the signed log as tlog-tiles and verifies it offline: signature, every tile, the
//!    root, and consistency with the previous run's checkpoint.
//! 4. Rebuilds every balance from the exported entries alone and checks it against the ledger:
//!    an auditor needs the export and the verifier key, not our database.
//!
//! Each run adds to the same history, so the second run proves it extends the first.

use std::path::PathBuf;

use sanad::engine::disburse::{DisburseOptions, disburse};
use sanad::engine::{Agency, Options};
use sanad::ledger::{ProgrammeKind, replay};
use sanad::money::{Amount, Currency, Id};
use sanad::tlog::tile::{TileId, parse_bundle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root =
        std::env::args().nth(1).map_or_else(|| PathBuf::from("sanad-data/example"), PathBuf::from);
    let data = root.join("ledger");
    let jod = Currency::parse("JOD")?;
    let agency = if data.join("log.key").exists() {
        Agency::open(&data, Options::default())?
    } else {
        Agency::create(&data, "example.org/sanad-demo", Some("JO"), Options::default())?
    };
    let before = agency.ledger().log().checkpoint();
    println!("verifier key: {}", agency.ledger().log().verifier().to_vkey());

    let programme_file = root.join("programme.id");
    let programme = match std::fs::read_to_string(&programme_file) {
        Ok(id) => Id::parse(id.trim())?,
        Err(_) => {
            let budget = Amount::parse("100000", jod)?;
            let id = agency.create_programme("Winter cash (demo)", ProgrammeKind::Cash, budget)?;
            std::fs::write(&programme_file, id.as_str())?;
            id
        }
    };

    // This run's tranche: the same five people, a new file (its first line names the run).
    let run = agency.ledger().size();
    let csv = format!(
        "phone,amount,name,reference\n\
         0791000001,25.500,Demo One,run {run}\n0791000002,40,Demo Two,run {run}\n\
         0791000003,12.250,Demo Three,run {run}\n+962781000004,30,Demo Four,run {run}\n\
         00962771000005,18,Demo Five,run {run}\n"
    );
    let options = DisburseOptions { register: true, skip_invalid: false };
    let report = disburse(&agency, &programme, csv.as_bytes(), options, &mut |_, _| {})?;
    println!("{} (registered {})", report.summary(), report.registered);
    let layla = agency.beneficiary_by_phone("+962791000001")?.ok_or("not registered")?;
    for wallet in agency.wallets(&layla) {
        println!("wallet of the first person: {} available", wallet.available());
    }

    // The auditor's side: the export and the verifier key, nothing else.
    let log = agency.ledger().log();
    log.wait_for_checkpoint(log.size())?;
    let export = root.join("export");
    let summary = log.export(&export)?;
    let report = sanad::audit::verify_export(
        &export,
        &log.verifier(),
        Some(&before.to_bytes()),
        &mut |_, _| {},
    )?;
    println!(
        "verified offline: {} at tree size {} ({} tiles), consistent with the previous size {}",
        report.origin,
        report.tree_size,
        summary.tiles,
        report.consistent_with.unwrap_or(0)
    );
    let mut entries = Vec::new();
    for tile in TileId::all_in_tree(report.tree_size).filter(|tile| tile.level == 0) {
        let bundle = std::fs::read(export.join(tile.entries_path()))?;
        entries.extend(parse_bundle(&bundle)?.into_iter().map(<[u8]>::to_vec));
    }
    let rebuilt = replay(entries.iter().map(Vec::as_slice))?;
    let matches = agency.ledger().read(|live| {
        live.accounts().all(|account| {
            rebuilt.account(account.id()).is_some_and(|a| a.balance() == account.balance())
        })
    });
    println!(
        "rebuilt {} accounts from the export alone; every balance matches the ledger: {matches}",
        rebuilt.accounts().count()
    );
    println!(
        "audit it yourself: sanad log verify --tiles {} --key '{}'",
        export.display(),
        log.verifier().to_vkey()
    );
    if !matches {
        return Err("the export does not replay to the ledger's balances".into());
    }
    agency.close()?;
    Ok(())
}
