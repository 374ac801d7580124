//! Bulk disbursement from a CSV file, the shape registration tools such as KoboToolbox or ODK
//! export: a header row with at least `phone` and `amount`, and optionally `name`,
//! `national_id`, `language`, `reference` and `currency` (headers are case-insensitive; a
//! UTF-8 byte-order mark and `;` as the separator, as Kobo writes, are accepted).
//!
//! 1. **Validate every row first.** If any row is bad, every bad row is reported with its line
//!    number and reason and nothing is paid — unless `skip_invalid`, which pays the good rows.
//!    Duplicate phones within a file make all their rows bad: which one is right is the
//!    agency's call, not ours.
//! 2. **Check the budget:** the rows not yet paid must fit in the programme's available
//!    balance, or nothing is paid.
//! 3. **Pay**, a chunk at a time. Each row's transfer id is derived from the programme, the
//!    file's SHA-256 and the row's line, so re-running the same file — also after a crash half
//!    way — answers the rows already paid instead of paying them twice.

use std::collections::{BTreeMap, HashMap};

use sanad_ledger::{Actor, Command, Rejection};
use sanad_money::{Amount, Currency, Id};
use sha2::{Digest as _, Sha256};

use crate::registry::NewPerson;
use crate::{Agency, Error};

/// Rows paid per ledger call.
const CHUNK_ROWS: usize = 1_000;

/// How a run treats rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisburseOptions {
    /// Register phones not registered yet, from the row's columns.
    pub register: bool,
    /// Pay the good rows even when some are bad (the bad ones are reported).
    pub skip_invalid: bool,
}

/// A row that was not paid, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The run's id: derived from the programme and the file's content.
    pub run: String,
    /// Data rows in the file.
    pub rows: usize,
    /// Rows paid by this run.
    pub paid: usize,
    /// Rows paid by an earlier run of the same file.
    pub already_paid: usize,
    /// Rows not paid, with reasons (bad rows, and refusals while paying).
    pub rejected: Vec<RowProblem>,
    /// People registered by this run.
    pub registered: usize,
    /// What this run paid, per currency.
    pub paid_totals: BTreeMap<Currency, Amount>,
    /// Why the file as a whole was refused, if it was: then nothing was paid.
    pub refusal: Option<String>,
}

impl Report {
    /// Whether every row was paid, now or before.
    pub fn all_paid(&self) -> bool {
        self.refusal.is_none() && self.rejected.is_empty()
    }

    /// The last line of `sanad disburse`: `paid N, already paid N, rejected N`.
    pub fn summary(&self) -> String {
        format!(
            "paid {}, already paid {}, rejected {}",
            self.paid,
            self.already_paid,
            self.rejected.len()
        )
    }
}

/// One good row, ready to pay (or to issue a voucher for).
pub(crate) struct Row {
    pub(crate) line: u64,
    pub(crate) phone: String,
    /// `None` only where the file has no amounts (see [`AmountColumn`]).
    pub(crate) amount: Option<Amount>,
    pub(crate) person: NewPerson,
    pub(crate) reference: Option<String>,
    pub(crate) beneficiary: Option<Id>,
    /// The id of what the row creates: derived from the run and the line, so that a re-run
    /// finds it.
    pub(crate) transfer: Id,
}

/// Whether a file carries an amount per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AmountColumn {
    /// Cash and value vouchers: every row has one.
    Required,
    /// Commodity vouchers: the programme's basket, no amounts.
    Absent,
}

/// The columns of the header, by name.
struct Columns {
    phone: usize,
    amount: Option<usize>,
    optional: HashMap<&'static str, usize>,
}

fn columns(header: &csv::StringRecord, amounts: AmountColumn) -> Result<Columns, Error> {
    let position = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let required = |name: &str| {
        position(name)
            .ok_or_else(|| Error::Disbursement(format!("the header has no `{name}` column")))
    };
    let mut optional = HashMap::new();
    for name in ["name", "national_id", "language", "reference", "currency"] {
        if let Some(at) = position(name) {
            optional.insert(name, at);
        }
    }
    let amount = match amounts {
        AmountColumn::Required => Some(required("amount")?),
        AmountColumn::Absent if position("amount").is_some() => {
            return Err(Error::Disbursement(
                "a commodity voucher file has no `amount` column: each voucher is the \
                 programme's basket"
                    .into(),
            ));
        }
        AmountColumn::Absent => None,
    };
    Ok(Columns { phone: required("phone")?, amount, optional })
}

/// A file's run id for a programme: 32 hex digits of SHA-256 over the programme and the file's
/// own SHA-256, so the same file for the same programme is the same run.
pub(crate) fn run_of(programme: &Id, csv: &[u8]) -> String {
    let file_hash = Sha256::digest(csv);
    let run_hash = Sha256::new()
        .chain_update(programme.as_str())
        .chain_update([0])
        .chain_update(file_hash)
        .finalize();
    run_hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The separator: `;` when the header line has semicolons and no commas (Kobo's default).
fn separator(csv: &[u8]) -> u8 {
    let header = csv.split(|b| *b == b'\n').next().unwrap_or_default();
    if header.contains(&b';') && !header.contains(&b',') { b';' } else { b',' }
}

/// Reads and checks every row of `csv` for a programme in `currency` as [`disburse`] would,
/// without paying or registering anyone: the rows that would be paid (or registered and paid,
/// with `register`), and the problems of the others, by line. For checking a file before a
/// payment run, and for fuzzing the reader.
///
/// # Errors
/// [`Error::Disbursement`] when the file cannot be read at all (no header, no `phone` or
/// `amount` column); storage errors.
pub fn check_file(
    agency: &Agency,
    csv: &[u8],
    currency: Currency,
    options: DisburseOptions,
) -> Result<(usize, Vec<RowProblem>), Error> {
    let (rows, problems) =
        validate(agency, csv, currency, options, "check", AmountColumn::Required)?;
    Ok((rows.len(), problems))
}

/// Validates and pays `csv` from `programme`. `progress(done, total)` is called as rows are
/// paid.
///
/// A file with bad rows (without `skip_invalid`) or beyond the budget is refused as a whole:
/// the report says why in `refusal` and lists the rows; nothing is paid.
///
/// # Errors
/// [`Error::Disbursement`] when the file cannot be read at all (no header, no `phone` or
/// `amount` column); storage errors. Rows refused while paying are reported, not errors.
pub fn disburse(
    agency: &Agency,
    programme: &Id,
    csv: &[u8],
    options: DisburseOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, Error> {
    let (currency, available) = agency
        .ledger()
        .read(|state| {
            let programme = state.programme(programme)?;
            let funding = state.account(&programme.funding)?;
            Some((programme.currency, funding.available()))
        })
        .ok_or_else(|| Rejection::ProgrammeNotFound(programme.clone()))?;
    let run = run_of(programme, csv);
    let mut report = Report { run: run.clone(), ..Report::default() };

    let (rows, problems) =
        validate(agency, csv, currency, options, &format!("d-{run}"), AmountColumn::Required)?;
    // Validated with the amount column required: every row has an amount.
    let rows: Vec<(Row, Amount)> = rows
        .into_iter()
        .map(|row| {
            let Some(amount) = row.amount else { unreachable!("a row without its amount") };
            (row, amount)
        })
        .collect();
    report.rows = rows.len() + problems.len();
    if !problems.is_empty() && !options.skip_invalid {
        report.refusal = Some(format!(
            "{} bad rows, nothing paid (use --skip-invalid to pay the others)",
            problems.len()
        ));
        report.rejected = problems;
        return Ok(report);
    }
    report.rejected = problems;

    let (unpaid, paid_before): (Vec<_>, Vec<_>) = agency
        .ledger()
        .read(|state| rows.iter().partition(|(row, _)| state.id_use(&row.transfer).is_none()));
    let needed: i64 = unpaid.iter().map(|(_, amount)| amount.minor_units()).sum();
    if needed > available.minor_units() {
        report.refusal = Some(format!(
            "the programme has {available} available and the rows not yet paid need {}; \
             nothing paid",
            Amount::from_minor_units(needed, currency)
        ));
        report.already_paid = paid_before.len();
        report.rejected.extend(
            unpaid.iter().map(|(row, _)| RowProblem {
                line: row.line,
                reason: "not paid: over budget".into(),
            }),
        );
        report.rejected.sort_by_key(|problem| problem.line);
        return Ok(report);
    }

    let total = rows.len();
    let mut done = 0;
    for chunk in rows.chunks(CHUNK_ROWS) {
        let mut transfers = Vec::with_capacity(chunk.len());
        let mut lines = Vec::with_capacity(chunk.len());
        for (row, amount) in chunk {
            let beneficiary = match beneficiary_of(agency, row, currency) {
                Ok((beneficiary, registered)) => {
                    report.registered += usize::from(registered);
                    beneficiary
                }
                Err(error) => {
                    report.rejected.push(RowProblem { line: row.line, reason: error.to_string() });
                    continue;
                }
            };
            let wallet = agency.ensure_wallet(&beneficiary, currency)?;
            transfers.push(Command::Transfer {
                id: row.transfer.clone(),
                from: programme.clone(),
                to: wallet,
                amount: *amount,
                programme: programme.clone(),
                actor: Actor::Operator,
                reference: row.reference.clone(),
            });
            lines.push((row.line, *amount));
        }
        if !transfers.is_empty() {
            let results = agency.calls().execute_each(transfers)?;
            for ((line, amount), result) in lines.into_iter().zip(results) {
                match result {
                    Ok(applied) if applied.events.is_empty() => report.already_paid += 1,
                    Ok(_) => {
                        report.paid += 1;
                        let sum = report
                            .paid_totals
                            .entry(currency)
                            .or_insert_with(|| Amount::zero(currency));
                        *sum = sum
                            .checked_add(&amount)
                            .map_err(|e| Error::Disbursement(e.to_string()))?;
                    }
                    Err(rejection) => {
                        report.rejected.push(RowProblem { line, reason: rejection.to_string() })
                    }
                }
            }
        }
        done += chunk.len();
        progress(done, total);
    }
    report.rejected.sort_by_key(|problem| problem.line);
    Ok(report)
}

/// The row's beneficiary: the one registered with its phone, or registered now from its
/// columns (`true`), or found registered by an earlier, interrupted run of the same file.
pub(crate) fn beneficiary_of(
    agency: &Agency,
    row: &Row,
    currency: Currency,
) -> Result<(Id, bool), Error> {
    match &row.beneficiary {
        Some(known) => Ok((known.clone(), false)),
        None => match agency.register(&row.person, currency) {
            Ok(registered) => Ok((registered, true)),
            Err(Error::Duplicate { field: "phone", existing }) => Ok((existing, false)),
            Err(error) => Err(error),
        },
    }
}

/// Reads and checks every row; returns the good rows and the problems. Each row's id is
/// `{id_prefix}-{line}`.
pub(crate) fn validate(
    agency: &Agency,
    csv: &[u8],
    currency: Currency,
    options: DisburseOptions,
    id_prefix: &str,
    amounts: AmountColumn,
) -> Result<(Vec<Row>, Vec<RowProblem>), Error> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator(csv))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv);
    let header = reader
        .headers()
        .map_err(|e| Error::Disbursement(format!("cannot read the header: {e}")))?
        .clone();
    let columns = columns(&header, amounts)?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut lines_by_phone: HashMap<String, Vec<u64>> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                problems.push(RowProblem { line, reason: format!("unreadable row: {error}") });
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(str::is_empty) {
            continue;
        }
        match check_row(agency, &record, &columns, currency, options, id_prefix, line) {
            Ok(row) => {
                lines_by_phone.entry(row.phone.clone()).or_default().push(line);
                rows.push(row);
            }
            Err(reason) => problems.push(RowProblem { line, reason }),
        }
    }
    let duplicated: HashMap<&String, &Vec<u64>> =
        lines_by_phone.iter().filter(|(_, lines)| lines.len() > 1).collect();
    rows.retain(|row| match duplicated.get(&row.phone) {
        Some(lines) => {
            let others: Vec<String> =
                lines.iter().filter(|l| **l != row.line).map(u64::to_string).collect();
            problems.push(RowProblem {
                line: row.line,
                reason: format!("the same phone is on line {} too", others.join(", ")),
            });
            false
        }
        None => true,
    });
    problems.sort_by_key(|problem| problem.line);
    Ok((rows, problems))
}

fn check_row(
    agency: &Agency,
    record: &csv::StringRecord,
    columns: &Columns,
    currency: Currency,
    options: DisburseOptions,
    id_prefix: &str,
    line: u64,
) -> Result<Row, String> {
    let field = |at: usize| record.get(at).filter(|v| !v.is_empty()).map(str::to_owned);
    let optional = |name: &str| columns.optional.get(name).and_then(|at| field(*at));
    let raw_phone = field(columns.phone).ok_or("no phone")?;
    let phone = agency.registry().normalise_phone(&raw_phone).map_err(|e| e.to_string())?;
    if let Some(code) = optional("currency")
        && !code.eq_ignore_ascii_case(currency.code())
    {
        return Err(format!("currency {code} is not the programme's {}", currency.code()));
    }
    let amount = match columns.amount {
        Some(at) => {
            let raw = field(at).ok_or("no amount")?;
            Some(Amount::parse_positive(&raw, currency).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let reference = optional("reference");
    if reference.as_ref().is_some_and(|r| {
        r.chars().count() > sanad_ledger::TEXT_LENGTH_MAX || r.chars().any(char::is_control)
    }) {
        return Err("reference is longer than 200 characters or has control characters".into());
    }
    let beneficiary = agency.registry().find_by_phone(&phone).map_err(|e| e.to_string())?;
    let person = NewPerson {
        phone: phone.clone(),
        name: optional("name"),
        national_id: optional("national_id"),
        language: optional("language"),
        pin: None,
    };
    if beneficiary.is_none() {
        if !options.register {
            return Err(format!("{phone} is not registered (use --register to register it)"));
        }
        if let Some(national_id) = &person.national_id
            && let Some(existing) =
                agency.registry().find_by_national_id(national_id).map_err(|e| e.to_string())?
        {
            return Err(format!("national id already registered to {existing} with another phone"));
        }
    }
    let transfer = Id::parse(&format!("{id_prefix}-{line}")).map_err(|e| e.to_string())?;
    Ok(Row { line, phone, amount, person, reference, beneficiary, transfer })
}
