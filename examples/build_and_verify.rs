//! Builds a small log, exports it as tlog-tiles and verifies the export offline, the way an
//! auditor would: `cargo run --example build_and_verify [DIR]`.
//!
//! The data folder (default `./sanad-data/example`) keeps the log between runs, so each run
//! appends to the same history and proves it consistent with the previous run's checkpoint.

use std::path::PathBuf;

use sanad::log::Log;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root =
        std::env::args().nth(1).map_or_else(|| PathBuf::from("sanad-data/example"), PathBuf::from);
    let data = root.join("log");
    let log = if data.exists() {
        Log::open(&data)?
    } else {
        Log::create(&data, "example.org/sanad-demo")?
    };
    let before = log.checkpoint();
    println!("verifier key: {}", log.verifier().to_vkey());

    let start = log.size();
    let entries = (start..start + 1000)
        .map(|i| format!(r#"{{"demo_entry":{i},"note":"opaque bytes to the log"}}"#).into_bytes())
        .collect();
    let appended = log.append(entries)?;
    println!(
        "appended entries {}..{} in one group commit",
        appended.first_index, appended.tree_size
    );

    // Appends are answered when durable; the checkpoint covering them follows.
    log.wait_for_checkpoint(appended.tree_size)?;
    let export = root.join("export");
    let summary = log.export(&export)?;
    println!(
        "exported {} tiles and {} bundles to {}",
        summary.tiles,
        summary.bundles,
        export.display()
    );

    let report = sanad::audit::verify_export(
        &export,
        &log.verifier(),
        Some(&before.to_bytes()),
        &mut |_, _| {},
    )?;
    println!(
        "verified offline: {} at tree size {} (root {}), consistent with the previous size {}",
        report.origin,
        report.tree_size,
        report.root.to_base64(),
        report.consistent_with.unwrap_or(0)
    );
    println!(
        "audit it yourself: sanad log verify --tiles {} --key '{}'",
        export.display(),
        log.verifier().to_vkey()
    );
    Ok(())
}
