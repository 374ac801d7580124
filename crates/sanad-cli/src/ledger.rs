//! The ledger commands: `init`, `programme create`, `disburse`, `balance`, `vendor`, `voucher`,
//! `settle`. Thin: each maps its arguments to one `sanad_engine::Agency` call and prints the
//! contract's output.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sanad_engine::disburse::{DisburseOptions, disburse};
use sanad_engine::{Agency, VoucherPlan};
use sanad_ledger::{Item, ProgrammeKind, Vendors};
use sanad_money::{Amount, Currency, Id};

use crate::{
    Command, CsvRun, DataDir, ProgrammeCommand, VendorCommand, VoucherArgs, VoucherCommand,
};

/// Whether `dir` holds a ledger (not only a bare log).
pub(crate) fn holds_ledger(dir: &Path) -> bool {
    dir.join(sanad_engine::SNAPSHOT_FILE).exists()
        || dir.join(sanad_engine::registry::AGENCY_KEY_FILE).exists()
}

fn open(data: &DataDir) -> anyhow::Result<Agency> {
    Agency::open(&data.dir, data.options()?)
        .with_context(|| format!("opening the ledger in {}", data.dir.display()))
}

fn kind(text: &str) -> anyhow::Result<ProgrammeKind> {
    Ok(match text {
        "cash" => ProgrammeKind::Cash,
        "value_voucher" => ProgrammeKind::ValueVoucher,
        "commodity_voucher" => ProgrammeKind::CommodityVoucher,
        other => bail!("unknown programme kind {other:?} (cash, value_voucher, commodity_voucher)"),
    })
}

/// The voucher terms from the command line.
fn plan(args: &VoucherArgs, currency: Currency) -> anyhow::Result<VoucherPlan> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    let vendors = match args.vendors.split_once(':') {
        None if args.vendors == "enrolled" => Vendors::Enrolled,
        Some(("category", category)) => {
            Vendors::Category(Id::parse(category).context("reading --vendors")?)
        }
        _ => bail!("--vendors is `enrolled` or `category:CAT`, not {:?}", args.vendors),
    };
    let items = args
        .items
        .iter()
        .map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            let [id, name, unit, quantity, unit_value] = parts[..] else {
                bail!("--item {item:?} is not ID:NAME:UNIT:QUANTITY:UNIT_VALUE");
            };
            Ok(Item {
                id: Id::parse(id).with_context(|| format!("the id in --item {item:?}"))?,
                name: name.to_owned(),
                unit: unit.to_owned(),
                quantity: quantity
                    .parse()
                    .with_context(|| format!("the quantity in --item {item:?}"))?,
                unit_value: Amount::parse(unit_value, currency)
                    .with_context(|| format!("the value in --item {item:?}"))?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(VoucherPlan {
        valid_from_ms: now_ms,
        valid_until_ms: now_ms.saturating_add(args.valid_days.saturating_mul(86_400_000)),
        vendors,
        single_use: args.single_use,
        partial: !args.whole,
        items,
        pin_attempts: args.pin_attempts,
        lock_ms: args.lock_minutes.saturating_mul(60_000),
    })
}

impl CsvRun {
    /// The programme, the file's bytes and the options.
    fn read(&self) -> anyhow::Result<(Id, Vec<u8>, DisburseOptions)> {
        let programme = Id::parse(&self.programme).context("reading --programme")?;
        let bytes =
            std::fs::read(&self.csv).with_context(|| format!("reading {}", self.csv.display()))?;
        let options = DisburseOptions { register: self.register, skip_invalid: self.skip_invalid };
        Ok((programme, bytes, options))
    }
}

/// Writes a new file readable by its owner only (voucher codes are bearer secrets).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it before writing.
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes).and_then(|()| file.sync_all())?;
    Ok(())
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Init { data, origin, region } => {
            let agency = Agency::create(&data.dir, &origin, region.as_deref(), data.options()?)
                .with_context(|| format!("creating a ledger in {}", data.dir.display()))?;
            writeln!(stdout, "{}", agency.ledger().log().verifier().to_vkey())?;
            agency.close()?;
        }
        Command::Programme(ProgrammeCommand::Create {
            data,
            name,
            currency,
            budget,
            kind: k,
            vouchers,
        }) => {
            let currency = Currency::parse(&currency)?;
            let budget = Amount::parse(&budget, currency).context("reading --budget")?;
            let kind = kind(&k)?;
            let agency = open(&data)?;
            let programme = match kind {
                ProgrammeKind::Cash => agency.create_programme(&name, kind, budget)?,
                _ => {
                    let plan = plan(&vouchers, currency)?;
                    agency.create_voucher_programme(&name, kind, budget, &plan)?
                }
            };
            writeln!(stdout, "{programme}")?;
            agency.close()?;
        }
        Command::Vendor(VendorCommand::Add { data, currency, categories, phone }) => {
            let currency = Currency::parse(&currency)?;
            let categories = categories
                .iter()
                .map(|c| Id::parse(c).context("reading --category"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let agency = open(&data)?;
            writeln!(stdout, "{}", agency.open_vendor(currency, &categories, phone.as_deref())?)?;
            agency.close()?;
        }
        Command::Vendor(VendorCommand::Enrol { data, programme, vendor, prices }) => {
            let programme = Id::parse(&programme).context("reading --programme")?;
            let vendor = Id::parse(&vendor).context("reading --vendor")?;
            let agency = open(&data)?;
            let currency = agency
                .ledger()
                .read(|state| state.programme(&programme).map(|p| p.currency))
                .with_context(|| format!("no programme {programme}"))?;
            let mut priced = std::collections::BTreeMap::new();
            for price in &prices {
                let (item, amount) = price
                    .split_once('=')
                    .with_context(|| format!("--price {price:?} is not ITEM=AMOUNT"))?;
                let amount = Amount::parse(amount, currency)
                    .with_context(|| format!("reading the price in {price:?}"))?;
                priced.insert(Id::parse(item).context("reading --price")?, amount);
            }
            agency.enrol_vendor(&programme, &vendor, priced)?;
            agency.close()?;
        }
        Command::Voucher(VoucherCommand::Issue { data, run, codes }) => {
            let (programme, bytes, options) = run.read()?;
            let agency = open(&data)?;
            let report = agency.issue_vouchers_from_csv(&programme, &bytes, options)?;
            agency.close()?;
            let mut out = String::from("line,voucher,code\n");
            for (line, voucher) in &report.vouchers {
                out.push_str(&format!("{line},{},{}\n", voucher.id, voucher.code.letters()));
            }
            write_private(&codes, out.as_bytes())?;
            for problem in &report.rejected {
                writeln!(stdout, "line {}: {}", problem.line, problem.reason)?;
            }
            if let Some(refusal) = &report.refusal {
                writeln!(stdout, "{refusal}")?;
            }
            writeln!(
                stdout,
                "issued {}, already issued {}, rejected {}",
                report.issued,
                report.already_issued,
                report.rejected.len()
            )?;
            stdout.flush()?;
            let all = report.refusal.is_none() && report.rejected.is_empty();
            return Ok(if all { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Settle { data, programme, run, statements } => {
            let programme = Id::parse(&programme).context("reading --programme")?;
            let agency = open(&data)?;
            let settled = agency.settle(&programme, run.as_deref())?;
            for vendor in &settled.vendors {
                writeln!(
                    stdout,
                    "{} {} {} {} redemptions",
                    vendor.vendor, vendor.settlement, vendor.amount, vendor.redemptions
                )?;
                if let Some(folder) = &statements {
                    std::fs::create_dir_all(folder)
                        .with_context(|| format!("creating {}", folder.display()))?;
                    let statement = agency.settlement_statement(&vendor.settlement)?;
                    let path = folder.join(format!("{}.csv", vendor.settlement));
                    std::fs::write(&path, statement)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            agency.close()?;
        }
        Command::Disburse { data, run } => {
            let (programme, bytes, options) = run.read()?;
            let agency = open(&data)?;
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
            let agency = open(&data)?;
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
        Command::Log(_) | Command::Audit { .. } => {
            unreachable!("log and audit commands are run by main")
        }
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
