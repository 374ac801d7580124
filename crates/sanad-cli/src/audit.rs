//! `sanad audit`: the auditor's full verification of a log, from an export folder or a live
//! server. It verifies the cryptography as `sanad log verify` does and, in the same pass,
//! replays every entry through the ledger's rules (`sanad_audit::money`): it prints the
//! figures per programme and currency and every anomaly with its log index, writes them as
//! JSON with `--report`, and exits non-zero on any failure.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use sanad_audit::live::LiveLog;
use sanad_audit::money::{MoneyAudit, MoneyReport};
use sanad_audit::{Folder, TileSource};

/// A progress bar on a terminal, nothing otherwise.
pub(crate) fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let template = format!(
        "{{spinner}} {what} {{human_pos}}/{{human_len}} entries [{{bar:40}}] {{elapsed}}, eta {{eta}}"
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Reads an older checkpoint file, if one was given.
pub(crate) fn read_since(since: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    since
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .transpose()
}

pub(crate) fn run(
    tiles: &str,
    key: &str,
    since: Option<&Path>,
    report_file: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    let verifier = crate::parse_key(key)?;
    let older = read_since(since)?;
    let live;
    let folder;
    let source: &dyn TileSource = if tiles.starts_with("http://") || tiles.starts_with("https://") {
        live = LiveLog::new(tiles);
        &live
    } else {
        folder = PathBuf::from(tiles);
        &Folder(&folder)
    };
    let bar = progress_bar("auditing");
    let mut money = MoneyAudit::new();
    let verified = sanad_audit::verify_tiles(
        source,
        &verifier,
        older.as_deref(),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
        &mut |index, entry| money.entry(index, entry),
    );
    bar.finish_and_clear();
    let verified = verified.context("verification FAILED")?;
    let report = money.finish();

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "ok: {} tree size {} root {} ({} tiles checked)",
        verified.origin,
        verified.tree_size,
        verified.root.to_base64(),
        verified.tiles_checked
    )?;
    for (index, vkey) in &verified.rotations {
        writeln!(stdout, "ok: followed the signed key rotation at entry {index} to {vkey}")?;
    }
    if let Some(old_size) = verified.consistent_with {
        writeln!(stdout, "ok: consistent with the older checkpoint of size {old_size}")?;
    }
    print_figures(&mut stdout, &report)?;
    if let Some(path) = report_file {
        let json = serde_json::json!({
            "origin": verified.origin,
            "tree_size": verified.tree_size,
            "root": verified.root.to_base64(),
            "consistent_with": verified.consistent_with,
            "key_rotations": verified.rotations.iter()
                .map(|(index, key)| serde_json::json!({ "index": index, "key": key }))
                .collect::<Vec<_>>(),
            "money": report,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.is_clean() {
        writeln!(stdout, "ok: the money holds ({} entries replayed)", report.entries)?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(stdout, "FAILED: {} anomalies", report.anomalies.len())?;
        Ok(ExitCode::FAILURE)
    }
}

fn print_figures(out: &mut impl std::io::Write, report: &MoneyReport) -> std::io::Result<()> {
    for currency in &report.currencies {
        writeln!(
            out,
            "currency {}: {} accounts, {} entered, balances sum to {}",
            currency.currency, currency.accounts, currency.entered, currency.sum
        )?;
    }
    for programme in &report.programmes {
        writeln!(
            out,
            "programme {} ({:?}, {}): {}: funding holds {}; {} transfers moving {}, {} reversals of {}",
            programme.id,
            programme.kind,
            programme.currency,
            programme.name,
            programme.funding_balance,
            programme.transfers,
            programme.moved,
            programme.reversals,
            programme.reversed
        )?;
        if let Some(v) = &programme.vouchers {
            writeln!(
                out,
                "  vouchers: {} issued worth {}, {} redemptions worth {}, returned {}, \
                 outstanding {} (escrow holds {}), settled {}",
                v.issued,
                v.issued_value,
                v.redemptions,
                v.redeemed,
                v.returned,
                v.outstanding,
                v.escrow_balance,
                v.settled
            )?;
        }
    }
    for (principal, grant) in &report.principals {
        writeln!(
            out,
            "principal {principal} ({}{}{}): {} entries",
            grant.role.as_str(),
            grant.vendor.as_deref().map(|v| format!(" of {v}")).unwrap_or_default(),
            if grant.revoked { ", revoked" } else { "" },
            grant.entries
        )?;
    }
    writeln!(out, "entries by the store's holder: {}", report.entries_without_principal)?;
    for anomaly in &report.anomalies {
        match anomaly.index {
            Some(index) => writeln!(out, "ANOMALY at entry {index}: {}", anomaly.problem)?,
            None => writeln!(out, "ANOMALY in the final state: {}", anomaly.problem)?,
        }
    }
    Ok(())
}
