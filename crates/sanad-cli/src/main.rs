//! The `sanad` command. Its forms and outputs are a contract that other tools rely on:
//!
//! ```text
//! sanad init              --data DIR --origin ORIGIN [--region CC]   prints the verifier key only
//! sanad programme create  --data DIR --name NAME --currency CUR --budget AMOUNT [--kind KIND]
//!                                                      prints the programme id
//! sanad disburse          --data DIR --programme ID --csv FILE [--register] [--skip-invalid]
//!                         last line: `paid N, already paid N, rejected N`; exit 0 only when
//!                         every row is paid or was already paid
//! sanad balance           --data DIR --phone E164 | --programme ID    prints `AMOUNT CUR`
//!
//! sanad programme create  ... --kind value_voucher|commodity_voucher [--valid-days N]
//!                         [--vendors enrolled|category:CAT] [--single-use] [--whole]
//!                         [--item ID:NAME:UNIT:QUANTITY:UNIT_VALUE]...   prints the programme id
//! sanad vendor add        --data DIR --currency CUR [--category CAT]... [--phone PHONE]
//!                                                      prints the vendor id
//! sanad vendor enrol      --data DIR --programme ID --vendor ID [--price ITEM=AMOUNT]...
//! sanad voucher issue     --data DIR --programme ID --csv FILE --codes OUT [--register]
//!                         [--skip-invalid]   writes `line,voucher,code` to OUT (owner-only);
//!                         last line: `issued N, already issued N, rejected N`
//! sanad settle            --data DIR --programme ID [--run RUN] [--statements DIR2]
//!                         one line per vendor: `VENDOR SETTLEMENT AMOUNT CUR N redemptions`;
//!                         DIR2/SETTLEMENT.csv is each vendor's statement
//!
//! sanad log init       --data DIR --origin ORIGIN      prints the verifier key, nothing else
//! sanad log append     --data DIR                      stdin lines -> entries; prints the tree size
//! sanad log checkpoint --data DIR                      prints the latest signed checkpoint
//! sanad log export     --data DIR --out DIR2           writes the tlog-tiles export
//! sanad log verify     --tiles DIR2 --key VKEY [--since CHECKPOINT_FILE]
//! sanad log prove      --data DIR --index I --size N   inclusion proof, one base64 hash a line
//! sanad log prove      --data DIR --from M --size N    consistency proof, likewise
//! sanad log receipt    --data DIR --index I            c2sp.org/tlog-proof@v1 receipt
//! sanad log rotate-key --data DIR                      prints the new verifier key
//! sanad log verify-receipt --key VKEY --receipt FILE --entry FILE
//! sanad log restore    --from EXPORT --data DIR        rebuilds a lost log from an export
//!                      (the folder holds the key); prints `restored N entries; …`
//! sanad log copy       --data DIR --to POSTGRES_URL    copies the folder's log into an empty
//!                      database and opens it there; prints `copied N entries; …`
//!
//! Every command taking --data also takes --database-url URL (or SANAD_DATABASE_URL): the log
//! is then on PostgreSQL, the folder keeps the signing key, snapshots and registry.
//!
//! sanad audit --tiles DIR_OR_URL --key VKEY [--since CHECKPOINT_FILE] [--report FILE.json]
//!                         verifies as `log verify`, then replays the money; prints the
//!                         figures and `ANOMALY at entry I: …` lines; last line `ok: the money
//!                         holds (N entries replayed)` or `FAILED: N anomalies` (exit 1)
//! ```

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use sanad_log::Log;
use sanad_tlog::NoteVerifier;
use sanad_tlog::proof_file::ProofFile;

mod audit;
mod ledger;

#[derive(Parser)]
#[command(name = "sanad", version, about = "Operate and audit a Sanad signed ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new ledger (log, signing key, registry); print the verifier key.
    Init {
        #[command(flatten)]
        data: DataDir,
        /// The log's origin, also its key name (e.g. example.org/aid-ledger).
        #[arg(long)]
        origin: String,
        /// The country (ISO 3166, e.g. JO) for phone numbers written without a country code.
        #[arg(long)]
        region: Option<String>,
    },
    /// Programmes: the agency's money for one purpose.
    #[command(subcommand)]
    Programme(ProgrammeCommand),
    /// Pay a programme's tranche to the phones listed in a CSV file (header: phone, amount;
    /// optional name, national_id, language, reference, currency).
    Disburse {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        run: CsvRun,
    },
    /// Print an available balance as `AMOUNT CUR`: a beneficiary's (by phone) or a
    /// programme's.
    Balance {
        #[command(flatten)]
        data: DataDir,
        /// The beneficiary's phone number.
        #[arg(long, conflicts_with = "programme", required_unless_present = "programme")]
        phone: Option<String>,
        /// The programme.
        #[arg(long)]
        programme: Option<String>,
    },
    /// Vendors (shops) that redeem vouchers.
    #[command(subcommand)]
    Vendor(VendorCommand),
    /// Vouchers.
    #[command(subcommand)]
    Voucher(VoucherCommand),
    /// Pay every vendor of a voucher programme what it redeemed since its last settlement.
    Settle {
        #[command(flatten)]
        data: DataDir,
        /// The programme.
        #[arg(long)]
        programme: String,
        /// The run's name: settling again under the same run pays nothing twice.
        #[arg(long)]
        run: Option<String>,
        /// Write each vendor's statement (CSV) into this folder.
        #[arg(long)]
        statements: Option<PathBuf>,
    },
    /// The signed append-only log.
    #[command(subcommand)]
    Log(LogCommand),
    /// Audit a log completely: verify it as `log verify` does, then replay every entry through
    /// the ledger's rules and check the money; non-zero exit on any anomaly.
    Audit {
        /// An export folder, or a live log's URL (a Sanad server's root, or its /log prefix).
        #[arg(long)]
        tiles: String,
        /// The log's verifier key (name+keyid+key).
        #[arg(long)]
        key: String,
        /// An older signed checkpoint that the current tree must extend.
        #[arg(long)]
        since: Option<PathBuf>,
        /// Write the findings as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum VendorCommand {
    /// Open a vendor's account; print its id.
    Add {
        #[command(flatten)]
        data: DataDir,
        /// ISO 4217 currency.
        #[arg(long)]
        currency: String,
        /// A category (for programmes open to a category); repeat for several.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// The phone the shop uses for SMS (kept in the registry, not the log).
        #[arg(long)]
        phone: Option<String>,
    },
    /// Enrol a vendor in a voucher programme, with its price per item for commodities.
    Enrol {
        #[command(flatten)]
        data: DataDir,
        /// The programme.
        #[arg(long)]
        programme: String,
        /// The vendor.
        #[arg(long)]
        vendor: String,
        /// ITEM=AMOUNT, the agreed price per unit; repeat per item.
        #[arg(long = "price")]
        prices: Vec<String>,
    },
}

#[derive(Subcommand)]
enum VoucherCommand {
    /// Issue a voucher per row of a CSV file (header: phone, and amount for value vouchers;
    /// optional name, national_id, language).
    Issue {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        run: CsvRun,
        /// Where to write the codes (`line,voucher,code`), readable by its owner only.
        #[arg(long)]
        codes: PathBuf,
    },
}

/// A programme's run over a CSV file of phones (a disbursement, a voucher issuance).
#[derive(Args)]
struct CsvRun {
    /// The programme.
    #[arg(long)]
    programme: String,
    /// The CSV file.
    #[arg(long)]
    csv: PathBuf,
    /// Register phones not registered yet, from the row.
    #[arg(long)]
    register: bool,
    /// Act on the good rows even when some are bad.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Subcommand)]
enum ProgrammeCommand {
    /// Create a programme funded with BUDGET by a logged issuance; print its id.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// Display name (no personal data).
        #[arg(long)]
        name: String,
        /// ISO 4217 currency.
        #[arg(long)]
        currency: String,
        /// The budget issued into the programme's funding account.
        #[arg(long)]
        budget: String,
        /// cash, value_voucher or commodity_voucher.
        #[arg(long, default_value = "cash")]
        kind: String,
        #[command(flatten)]
        vouchers: VoucherArgs,
    },
}

/// The terms of a voucher programme (ignored for cash).
#[derive(Args)]
struct VoucherArgs {
    /// Days from now until every voucher expires.
    #[arg(long, default_value_t = 90)]
    valid_days: u64,
    /// `enrolled` (vendors enrolled one by one) or `category:CAT`.
    #[arg(long, default_value = "enrolled")]
    vendors: String,
    /// Each voucher is redeemed once; what it leaves returns to the programme.
    #[arg(long)]
    single_use: bool,
    /// Every redemption takes all that remains.
    #[arg(long)]
    whole: bool,
    /// A commodity: ID:NAME:UNIT:QUANTITY:UNIT_VALUE (quantity per voucher, value per unit);
    /// repeat per item.
    #[arg(long = "item")]
    items: Vec<String>,
    /// Wrong PINs in a row that lock a voucher.
    #[arg(long, default_value_t = 3)]
    pin_attempts: u8,
    /// Minutes a lock lasts.
    #[arg(long, default_value_t = 30)]
    lock_minutes: u64,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Create an empty log and its signing key; print the verifier key.
    Init {
        #[command(flatten)]
        data: DataDir,
        /// The log's origin, also its key name (e.g. example.org/aid-ledger).
        #[arg(long)]
        origin: String,
    },
    /// Append each line of standard input as one entry; print the new tree size.
    Append {
        #[command(flatten)]
        data: DataDir,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        data: DataDir,
    },
    /// Write the static tlog-tiles export (checkpoint and tile/...).
    Export {
        #[command(flatten)]
        data: DataDir,
        /// Folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an export offline: signature, every tile, the root, and consistency with an
    /// older checkpoint.
    Verify {
        /// The export folder.
        #[arg(long)]
        tiles: PathBuf,
        /// The log's verifier key (name+keyid+key).
        #[arg(long)]
        key: String,
        /// An older signed checkpoint that the current tree must extend.
        #[arg(long)]
        since: Option<PathBuf>,
    },
    /// Print an inclusion (--index) or consistency (--from) proof, one base64 hash per line.
    Prove {
        #[command(flatten)]
        data: DataDir,
        /// Leaf index for an inclusion proof.
        #[arg(long, conflicts_with = "from", required_unless_present = "from")]
        index: Option<u64>,
        /// Older tree size for a consistency proof.
        #[arg(long)]
        from: Option<u64>,
        /// Tree size the proof is for.
        #[arg(long)]
        size: u64,
    },
    /// Print a c2sp.org/tlog-proof receipt for one entry against the latest checkpoint.
    Receipt {
        #[command(flatten)]
        data: DataDir,
        /// Leaf index.
        #[arg(long)]
        index: u64,
    },
    /// Rebuild a lost log from an export (a backup, a mirror of /log/) into the folder, which
    /// holds only the log's key (restored from its own backup), or into an empty database with
    /// --database-url; then open it, which checks the signed root with the key.
    Restore {
        /// The export to restore from (`checkpoint`, `tile/…`).
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
    /// Copy the folder's log (sled) into an empty PostgreSQL database, then open it there to
    /// check the signed root; afterwards run every command with --database-url.
    Copy {
        /// The folder whose log is copied (it keeps the key, snapshots and registry).
        #[arg(long = "data", env = "SANAD_DATA")]
        dir: PathBuf,
        /// The PostgreSQL database to copy into (`postgres://user@host/db`).
        #[arg(long)]
        to: String,
    },
    /// Rotate the signing key: the old key signs the hand-over to a new key in a log entry;
    /// print the new verifier key.
    RotateKey {
        #[command(flatten)]
        data: DataDir,
    },
    /// Verify a receipt offline against the entry's bytes.
    VerifyReceipt {
        /// The log's verifier key.
        #[arg(long)]
        key: String,
        /// The receipt file.
        #[arg(long)]
        receipt: PathBuf,
        /// A file holding exactly the entry's bytes.
        #[arg(long)]
        entry: PathBuf,
    },
}

#[derive(Args)]
struct DataDir {
    /// The log's data folder (with --database-url: the signing key, snapshots and registry).
    #[arg(long = "data", env = "SANAD_DATA")]
    dir: PathBuf,
    /// Keep the log on PostgreSQL (`postgres://user@host/db`) instead of sled in the folder.
    #[arg(long, env = "SANAD_DATABASE_URL")]
    database_url: Option<String>,
}

impl DataDir {
    /// The log's backend when it is not the folder's sled.
    fn log_backend(&self) -> anyhow::Result<Option<std::sync::Arc<dyn sanad_log::Backend>>> {
        let Some(url) = &self.database_url else { return Ok(None) };
        let backend = sanad_postgres::PgBackend::connect(url)
            .context("connecting to PostgreSQL (--database-url)")?;
        Ok(Some(std::sync::Arc::new(backend)))
    }

    /// The ledger's options: its log, and the registry's records, where the flags say.
    fn options(&self) -> anyhow::Result<sanad_engine::Options> {
        let shared_store = match &self.database_url {
            Some(url) => {
                let kv = sanad_postgres::PgKv::connect(url)
                    .context("connecting to PostgreSQL (--database-url)")?;
                Some(std::sync::Arc::new(kv) as std::sync::Arc<dyn sanad_log::kv::KeyValue>)
            }
            None => None,
        };
        Ok(sanad_engine::Options {
            log_backend: self.log_backend()?,
            shared_store,
            ..Default::default()
        })
    }
}

/// Copies a whole log from `from` into `to` with a progress bar (`doing` names it), then opens
/// it there with the key in `dir`, which recomputes the root from what was copied and checks
/// it against the signed checkpoint. Returns the entries copied and the open log.
fn copy_and_open(
    from: &dyn sanad_log::Backend,
    to: std::sync::Arc<dyn sanad_log::Backend>,
    dir: &std::path::Path,
    doing: &'static str,
) -> anyhow::Result<(u64, Log)> {
    let bar = audit::progress_bar(doing);
    let copied = sanad_log::copy(from, to.as_ref(), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let copied = copied.with_context(|| format!("{doing} the log"))?;
    let log = Log::open_on(dir, to).context("opening the copy")?;
    Ok((copied, log))
}

/// Lines gathered into one append: the writer commits each with one fsync and one signature.
const APPEND_CHUNK_ENTRIES: usize = 4_096;
const APPEND_CHUNK_BYTES: usize = 4 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sanad: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let command = match command {
        Command::Log(command) => command,
        Command::Audit { tiles, key, since, report } => {
            return audit::run(&tiles, &key, since.as_deref(), report.as_ref());
        }
        other => return ledger::run(other),
    };
    let mut stdout = std::io::stdout().lock();
    match command {
        LogCommand::Init { data, origin } => {
            let log = match data.log_backend()? {
                Some(backend) => Log::create_on(&data.dir, &origin, backend),
                None => Log::create(&data.dir, &origin),
            }
            .with_context(|| format!("creating a log in {}", data.dir.display()))?;
            writeln!(stdout, "{}", log.verifier().to_vkey())?;
        }
        LogCommand::Append { data } => {
            if ledger::holds_ledger(&data.dir) {
                bail!(
                    "{} holds a ledger: raw entries would not replay as ledger events; \
                     use the ledger commands",
                    data.dir.display()
                );
            }
            let log = open(&data)?;
            let size = append_lines(&log, std::io::stdin().lock())?;
            writeln!(stdout, "{size}")?;
        }
        LogCommand::Checkpoint { data } => {
            stdout.write_all(&open(&data)?.checkpoint().to_bytes())?;
        }
        LogCommand::Export { data, out } => {
            let summary = open(&data)?
                .export(&out)
                .with_context(|| format!("exporting to {}", out.display()))?;
            eprintln!(
                "exported tree size {} ({} tiles, {} entry bundles) to {}",
                summary.tree_size,
                summary.tiles,
                summary.bundles,
                out.display()
            );
        }
        LogCommand::Verify { tiles, key, since } => verify(&tiles, &key, since.as_deref())?,
        LogCommand::Prove { data, index, from, size } => {
            let log = open(&data)?;
            let proof = match (index, from) {
                (Some(index), None) => log.inclusion_proof(index, size)?,
                (None, Some(from)) => log.consistency_proof(from, size)?,
                _ => bail!("give either --index or --from"),
            };
            for hash in proof {
                writeln!(stdout, "{}", hash.to_base64())?;
            }
        }
        LogCommand::Receipt { data, index } => {
            stdout.write_all(&open(&data)?.receipt(index)?.to_text())?;
        }
        LogCommand::Restore { from, data } => {
            let export = sanad_log::ExportBackend::open(&from)
                .with_context(|| format!("reading the export in {}", from.display()))?;
            if !data.dir.join(sanad_log::KEY_FILE).exists() {
                anyhow::bail!(
                    "{} holds no {}: restore the log's key from its backup there first",
                    data.dir.display(),
                    sanad_log::KEY_FILE
                );
            }
            let target: std::sync::Arc<dyn sanad_log::Backend> = match data.log_backend()? {
                Some(database) => database,
                None => {
                    let path = data.dir.join(sanad_log::DB_DIR);
                    if path.exists() {
                        anyhow::bail!("{} holds a log already", data.dir.display());
                    }
                    std::sync::Arc::new(sanad_log::SledBackend::open(&path)?)
                }
            };
            let (copied, log) = copy_and_open(&export, target, &data.dir, "restoring")?;
            writeln!(
                stdout,
                "restored {copied} entries; the log opens at tree size {} with root {}",
                log.checkpoint().checkpoint().size(),
                log.checkpoint().checkpoint().root().to_base64()
            )?;
        }
        LogCommand::Copy { dir, to } => {
            let source = sanad_log::SledBackend::open(&dir.join(sanad_log::DB_DIR))
                .with_context(|| format!("opening the log in {}", dir.display()))?;
            let target = std::sync::Arc::new(
                sanad_postgres::PgBackend::connect(&to).context("connecting to PostgreSQL")?,
            );
            let (copied, log) = copy_and_open(&source, target, &dir, "copying")?;
            drop(source);
            writeln!(
                stdout,
                "copied {copied} entries; the log opens on PostgreSQL at tree size {} with root {}",
                log.checkpoint().checkpoint().size(),
                log.checkpoint().checkpoint().root().to_base64()
            )?;
            // The registry of personal data goes along, so that every process on the database
            // knows every beneficiary.
            if dir.join(sanad_engine::registry::REGISTRY_DIR).exists() {
                let registry = sanad_engine::registry::Registry::open(&dir, None)
                    .context("opening the folder's registry")?;
                let shared =
                    sanad_postgres::PgKv::connect(&to).context("connecting to PostgreSQL")?;
                let people = registry
                    .copy_to_shared(std::sync::Arc::new(shared))
                    .context("copying the registry")?;
                writeln!(stdout, "copied the registry: {people} people's records")?;
            }
        }
        LogCommand::RotateKey { data } => {
            let verifier = open(&data)?.rotate_key().context("rotating the key")?;
            writeln!(stdout, "{}", verifier.to_vkey())?;
        }
        LogCommand::VerifyReceipt { key, receipt, entry } => {
            let verifier = parse_key(&key)?;
            let receipt_bytes = std::fs::read(&receipt)
                .with_context(|| format!("reading {}", receipt.display()))?;
            let entry_bytes =
                std::fs::read(&entry).with_context(|| format!("reading {}", entry.display()))?;
            let proof = ProofFile::parse(&receipt_bytes)?;
            let checkpoint = proof.verify(&entry_bytes, &verifier)?;
            writeln!(
                stdout,
                "ok: entry {} is in {} at tree size {}",
                proof.index,
                checkpoint.checkpoint().origin(),
                checkpoint.checkpoint().size()
            )?;
        }
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn open(data: &DataDir) -> anyhow::Result<Log> {
    match data.log_backend()? {
        Some(backend) => Log::open_on(&data.dir, backend),
        None => Log::open(&data.dir),
    }
    .with_context(|| format!("opening the log in {}", data.dir.display()))
}

fn parse_key(key: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::parse(key).context("parsing the verifier key")
}

/// Appends each `\n`-terminated line (without the newline) in chunks; returns the tree size.
fn append_lines(log: &Log, input: impl std::io::Read) -> anyhow::Result<u64> {
    let mut reader = BufReader::new(input);
    let mut chunk: Vec<Vec<u8>> = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut line_number = 0u64;
    let mut size = log.size();
    loop {
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line)?;
        if read > 0 {
            line_number += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.len() > sanad_tlog::limits::ENTRY_SIZE_MAX {
                bail!(
                    "line {line_number} has {} bytes, above the 65,535-byte entry limit; \
                     nothing from this line on was appended",
                    line.len()
                );
            }
            chunk_bytes += line.len();
            chunk.push(line);
        }
        let full = chunk.len() >= APPEND_CHUNK_ENTRIES || chunk_bytes >= APPEND_CHUNK_BYTES;
        if (read == 0 || full) && !chunk.is_empty() {
            size = log.append(std::mem::take(&mut chunk))?.tree_size;
            chunk_bytes = 0;
        }
        if read == 0 {
            return Ok(size);
        }
    }
}

fn verify(
    tiles: &std::path::Path,
    key: &str,
    since: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let verifier = parse_key(key)?;
    let older = audit::read_since(since)?;
    let bar = audit::progress_bar("verifying");
    let result =
        sanad_audit::verify_export(tiles, &verifier, older.as_deref(), &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
    bar.finish_and_clear();
    let report = result.context("verification FAILED")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "ok: {} tree size {} root {} ({} tiles checked)",
        report.origin,
        report.tree_size,
        report.root.to_base64(),
        report.tiles_checked
    )?;
    for (index, vkey) in &report.rotations {
        writeln!(stdout, "ok: followed the signed key rotation at entry {index} to {vkey}")?;
    }
    if let Some(old_size) = report.consistent_with {
        writeln!(stdout, "ok: consistent with the older checkpoint of size {old_size}")?;
    }
    Ok(())
}
