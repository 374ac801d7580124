//! The ledger commands: `init`, `programme create`, `disburse`, `balance`. Thin: each maps its
//! arguments to one `sanad_engine::Agency` call and prints the contract's output.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sanad_engine::disburse::{DisburseOptions, disburse};
use sanad_engine::{Agency, Options};
use sanad_ledger::ProgrammeKind;
use sanad_money::{Amount, Currency, Id};

use crate::{Command, ProgrammeCommand};

/// Whether `dir` holds a ledger (not only a bare log).
pub(crate) fn holds_ledger(dir: &Path) -> bool {
    dir.join(sanad_engine::SNAPSHOT_FILE).exists()
        || dir.join(sanad_engine::registry::AGENCY_KEY_FILE).exists()
}

fn open(dir: &Path) -> anyhow::Result<Agency> {
    Agency::open(dir, Options::default())
        .with_context(|| format!("opening the ledger in {}", dir.display()))
}

fn kind(text: &str) -> anyhow::Result<ProgrammeKind> {
    Ok(match text {
        "cash" => ProgrammeKind::Cash,
        "value_voucher" => ProgrammeKind::ValueVoucher,
        "commodity_voucher" => ProgrammeKind::CommodityVoucher,
        other => bail!("unknown programme kind {other:?} (cash, value_voucher, commodity_voucher)"),
    })
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Init { data, origin, region } => {
            let agency = Agency::create(&data.dir, &origin, region.as_deref(), Options::default())
                .with_context(|| format!("creating a ledger in {}", data.dir.display()))?;
            writeln!(stdout, "{}", agency.ledger().log().verifier().to_vkey())?;
            agency.close()?;
        }
        Command::Programme(ProgrammeCommand::Create { data, name, currency, budget, kind: k }) => {
            let currency = Currency::parse(&currency)?;
            let budget = Amount::parse(&budget, currency).context("reading --budget")?;
            let agency = open(&data.dir)?;
            let programme = agency.create_programme(&name, kind(&k)?, budget)?;
            writeln!(stdout, "{programme}")?;
            agency.close()?;
        }
        Command::Disburse { data, programme, csv, register, skip_invalid } => {
            let programme = Id::parse(&programme).context("reading --programme")?;
            let bytes =
                std::fs::read(&csv).with_context(|| format!("reading {}", csv.display()))?;
            let agency = open(&data.dir)?;
            let bar = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} paying {human_pos}/{human_len} rows [{bar:40}] {elapsed}, eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            } else {
                indicatif::ProgressBar::hidden()
            };
            let options = DisburseOptions { register, skip_invalid };
            let report = disburse(&agency, &programme, &bytes, options, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            let report = report?;
            agency.close()?;
            for problem in &report.rejected {
                writeln!(stdout, "line {}: {}", problem.line, problem.reason)?;
            }
            if let Some(refusal) = &report.refusal {
                writeln!(stdout, "{refusal}")?;
            }
            for total in report.paid_totals.values() {
                writeln!(stdout, "paid {total} in total (run {})", report.run)?;
            }
            writeln!(stdout, "{}", report.summary())?;
            stdout.flush()?;
            return Ok(if report.all_paid() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Balance { data, phone, programme } => {
            let agency = open(&data.dir)?;
            match (phone, programme) {
                (Some(phone), None) => {
                    let beneficiary = agency
                        .beneficiary_by_phone(&phone)?
                        .with_context(|| format!("no beneficiary is registered with {phone}"))?;
                    for wallet in agency.wallets(&beneficiary) {
                        writeln!(stdout, "{}", wallet.available())?;
                    }
                }
                (None, Some(programme)) => {
                    let programme = Id::parse(&programme).context("reading --programme")?;
                    let available = agency
                        .ledger()
                        .read(|state| {
                            let funding = &state.programme(&programme)?.funding;
                            Some(state.account(funding)?.available())
                        })
                        .with_context(|| format!("no programme {programme}"))?;
                    writeln!(stdout, "{available}")?;
                }
                _ => bail!("give either --phone or --programme"),
            }
            agency.close()?;
        }
        Command::Log(_) => unreachable!("log commands are run by main"),
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
