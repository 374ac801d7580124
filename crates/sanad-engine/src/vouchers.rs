//! Vouchers as an agency runs them: programmes with escrow, vendors, issuance with codes,
//! redemption by code at a counter, authorisation by PIN or by a one-time confirmation, and
//! settlement runs with a CSV statement per vendor.
//!
//! The ledger decides every step (see `sanad_ledger::voucher`); what lives here is what must not
//! enter the log or needs the registry:
//!
//! - **Codes.** A voucher's code is drawn from the OS's CSPRNG and recorded in the registry
//!   (keyed by HMAC under the agency's secret; sealed for showing again); the log names the
//!   voucher by a random id only.
//! - **Typos and guesses.** A code whose check symbol fails is a typo ([`Error::VoucherCode`]
//!   with `Mistyped`), answered as such and not counted. A well-formed code the registry does
//!   not know is a guess: [`GUESSES_PER_WINDOW`] per vendor per [`GUESS_WINDOW_MS`] (a sliding
//!   window, [`GUESSES`]), then [`Error::TooManyGuesses`] with how long to wait, whatever the
//!   code. Guesses are counted in the registry's store, so a restart does not forget them and
//!   every server on one database counts against the same limit.
//! - **PINs.** Checked against the registry's Argon2id hash; a wrong one is a logged
//!   `redemption.pin_failed`, and the programme's limit locks the voucher (in the log, so the
//!   lock survives restarts and replays).
//! - **Confirmations.** A random six-digit answer per redemption, kept in the registry (a
//!   digest of it) until answered or timed out.

use std::collections::BTreeMap;

use rand::Rng as _;
use sanad_ledger::{
    AccountKind, Actor, Authorisation, Command, Event, Item, ItemQuantity, ProgrammeKind,
    Rejection, Vendors, VoucherCode, VoucherTerms,
};
use sanad_money::{Amount, Currency, Id};
use sha2::{Digest as _, Sha256};

use crate::agency::{AGENCY_OWNER, id, random_id};
use crate::disburse::{
    AmountColumn, DisburseOptions, Row, RowProblem, beneficiary_of, run_of, validate,
};
use crate::registry::{Limit, SlidingWindow, Subject};
use crate::{Agency, Error};

/// Unknown codes a vendor may try per window before it must wait.
pub const GUESSES_PER_WINDOW: u64 = 5;
/// The window of the guessing limit, in ms.
pub const GUESS_WINDOW_MS: u64 = 15 * 60 * 1000;
/// The guessing limit, per vendor.
pub const GUESSES: Limit = Limit {
    name: "voucher-guesses",
    window: SlidingWindow { limit: GUESSES_PER_WINDOW, window_ms: GUESS_WINDOW_MS },
    lock_ms: None,
};
/// How long a beneficiary has to authorise a redemption, unless the caller says otherwise.
pub const REDEMPTION_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// How a voucher programme works: its terms, less the escrow account the agency opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherPlan {
    /// No redemption before this time (ms since the Unix epoch).
    pub valid_from_ms: u64,
    /// Every voucher expires by this time.
    pub valid_until_ms: u64,
    /// Which vendors may redeem.
    pub vendors: Vendors,
    /// Each voucher is redeemed once.
    pub single_use: bool,
    /// A redemption may take part of what remains.
    pub partial: bool,
    /// Commodity programmes: the items.
    pub items: Vec<Item>,
    /// Wrong PINs in a row that lock a voucher.
    pub pin_attempts: u8,
    /// How long a lock lasts, in ms.
    pub lock_ms: u64,
}

/// A voucher just issued: its code is shown here and can be shown again from the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedVoucher {
    /// The voucher's id, as the log knows it.
    pub id: Id,
    /// Its code.
    pub code: VoucherCode,
    /// The log index of its issuance.
    pub log_index: Option<u64>,
}

/// A redemption waiting for the beneficiary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedemptionRequest {
    /// The redemption's id.
    pub id: Id,
    /// The voucher.
    pub voucher: Id,
    /// What the vendor will be paid on authorisation.
    pub amount: Amount,
    /// The log index of the request.
    pub log_index: Option<u64>,
}

/// What a bulk issuance did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssueReport {
    /// The run's id: derived from the programme and the file's content.
    pub run: String,
    /// Data rows in the file.
    pub rows: usize,
    /// Every voucher of the file, issued now or by an earlier run, by line, with its code to
    /// send to the beneficiary.
    pub vouchers: Vec<(u64, IssuedVoucher)>,
    /// Vouchers issued by this run.
    pub issued: usize,
    /// Vouchers an earlier run of the same file issued.
    pub already_issued: usize,
    /// Rows without a voucher, with reasons.
    pub rejected: Vec<RowProblem>,
    /// People registered by this run.
    pub registered: usize,
    /// Why the file as a whole was refused, if it was: then nothing was issued.
    pub refusal: Option<String>,
}

/// One vendor's part of a settlement run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorSettlement {
    /// The vendor's account.
    pub vendor: Id,
    /// The settlement's id (for its statement).
    pub settlement: Id,
    /// How much was paid.
    pub amount: Amount,
    /// How many redemptions it covers.
    pub redemptions: u64,
    /// The log index of its entry.
    pub log_index: Option<u64>,
}

/// What a settlement run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettlementRun {
    /// The run's id: running it again settles nothing twice.
    pub run: String,
    /// One line per vendor paid (or answered, for a run done before).
    pub vendors: Vec<VendorSettlement>,
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u32).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// A deterministic id from its parts: `prefix` and 20 Crockford base32 characters.
fn derived_id(prefix: &str, parts: &[&[u8]]) -> Id {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let hash = digest(parts);
    let mut text = prefix.to_owned();
    text.extend(hash[..20].iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])));
    id(&text)
}

impl Agency {
    /// A programme's escrow account.
    pub fn escrow_of(programme: &Id) -> Id {
        // A programme id from `create_voucher_programme` is 21 characters.
        id(&format!("{}.escrow", programme.as_str()))
    }

    /// The agency's settlement (payout) account in a currency.
    pub fn settlement_account(currency: Currency) -> Id {
        id(&format!("settlement.{}", currency.code()))
    }

    /// Creates a voucher programme: its funding and escrow accounts, the programme, its terms
    /// and its budget, in one linked group.
    ///
    /// # Errors
    /// [`Error::GroupRejected`] for bad terms; storage errors.
    pub fn create_voucher_programme(
        &self,
        name: &str,
        kind: ProgrammeKind,
        budget: Amount,
        plan: &VoucherPlan,
    ) -> Result<Id, Error> {
        Ok(self.create_voucher_programme_logged(name, kind, budget, plan)?.0)
    }

    /// [`Self::create_voucher_programme`], with the log index of the group's first entry.
    ///
    /// # Errors
    /// As [`Self::create_voucher_programme`].
    pub fn create_voucher_programme_logged(
        &self,
        name: &str,
        kind: ProgrammeKind,
        budget: Amount,
        plan: &VoucherPlan,
    ) -> Result<(Id, Option<u64>), Error> {
        if kind == ProgrammeKind::Cash {
            return Err(Rejection::InvalidVoucherTerms("a voucher programme is not cash").into());
        }
        let currency = budget.currency();
        let programme = random_id("prog-", 16);
        let escrow = Self::escrow_of(&programme);
        let terms = VoucherTerms {
            escrow: escrow.clone(),
            valid_from_ms: plan.valid_from_ms,
            valid_until_ms: plan.valid_until_ms,
            vendors: plan.vendors.clone(),
            single_use: plan.single_use,
            partial: plan.partial,
            items: plan.items.clone(),
            pin_attempts: plan.pin_attempts,
            lock_ms: plan.lock_ms,
        };
        let mut group = self.programme_group(&programme, name, kind, budget)?;
        group.insert(
            1,
            Command::OpenAccount {
                id: escrow,
                kind: AccountKind::Escrow,
                currency,
                owner: id(AGENCY_OWNER),
            },
        );
        group.insert(3, Command::SetVoucherTerms { programme: programme.clone(), terms });
        let applied = self.calls().execute_linked(group)??;
        Ok((programme, applied.log_index))
    }

    /// Opens a vendor's account in `currency`, in the given categories, with the phone it
    /// uses for SMS, if any (kept in the registry, never in the log).
    ///
    /// # Errors
    /// [`Error::Duplicate`] when another vendor has the phone; [`Error::InvalidPhone`];
    /// rejections; storage errors.
    pub fn open_vendor(
        &self,
        currency: Currency,
        categories: &[Id],
        phone: Option<&str>,
    ) -> Result<Id, Error> {
        Ok(self.open_vendor_logged(currency, categories, phone, &[])?.0)
    }

    /// [`Self::open_vendor`], enrolled at once in the value voucher programmes `enrolments`
    /// (all or nothing: the opening and its enrolments are one linked group, so a programme
    /// that refuses the vendor leaves no vendor behind), with the log index of the account's
    /// opening.
    ///
    /// # Errors
    /// As [`Self::open_vendor`], and the enrolments' rejections.
    pub fn open_vendor_logged(
        &self,
        currency: Currency,
        categories: &[Id],
        phone: Option<&str>,
        enrolments: &[Id],
    ) -> Result<(Id, Option<u64>), Error> {
        if let Some(phone) = phone {
            let e164 = self.registry().normalise_phone(phone)?;
            if let Some(existing) = self.registry().find_vendor_by_phone(&e164)? {
                return Err(Error::Duplicate { field: "phone", existing });
            }
        }
        let vendor = random_id("vnd-", 16);
        let mut group = vec![Command::OpenAccount {
            id: vendor.clone(),
            kind: AccountKind::Vendor,
            currency,
            owner: vendor.clone(),
        }];
        if !categories.is_empty() {
            group.push(Command::SetVendorCategories {
                vendor: vendor.clone(),
                categories: categories.iter().cloned().collect(),
            });
        }
        group.extend(enrolments.iter().map(|programme| Command::EnrolVendor {
            programme: programme.clone(),
            vendor: vendor.clone(),
            prices: BTreeMap::new(),
        }));
        let applied = self.calls().execute_linked(group)??;
        if let Some(phone) = phone {
            self.registry().register_vendor_phone(&vendor, phone)?;
        }
        Ok((vendor, applied.log_index))
    }

    /// Enrols a vendor in a voucher programme, with its prices per item (commodity
    /// programmes).
    ///
    /// # Errors
    /// Rejections; storage errors.
    pub fn enrol_vendor(
        &self,
        programme: &Id,
        vendor: &Id,
        prices: BTreeMap<Id, Amount>,
    ) -> Result<(), Error> {
        let command =
            Command::EnrolVendor { programme: programme.clone(), vendor: vendor.clone(), prices };
        self.calls().execute(command)??;
        Ok(())
    }

    /// Issues a voucher to a beneficiary with a new random id and code.
    ///
    /// # Errors
    /// Rejections ([`Error::Rejected`]); storage errors.
    pub fn issue_voucher(
        &self,
        programme: &Id,
        beneficiary: &Id,
        value: Option<Amount>,
        items: Vec<ItemQuantity>,
    ) -> Result<IssuedVoucher, Error> {
        self.issue_voucher_as(&random_id("v-", 20), programme, beneficiary, value, items)
    }

    /// Issues a voucher under `voucher` (an id derived from a file row, say): a retry with the
    /// same id answers the same voucher and code.
    ///
    /// # Errors
    /// As [`Self::issue_voucher`].
    pub fn issue_voucher_as(
        &self,
        voucher: &Id,
        programme: &Id,
        beneficiary: &Id,
        value: Option<Amount>,
        items: Vec<ItemQuantity>,
    ) -> Result<IssuedVoucher, Error> {
        // The code first, durably: a voucher in the log without a code could never be used.
        let code = self.codes_for(std::slice::from_ref(voucher))?[0];
        let command = Command::IssueVoucher {
            id: voucher.clone(),
            programme: programme.clone(),
            beneficiary: beneficiary.clone(),
            value,
            items,
            expires_at_ms: None,
            actor: Actor::Operator,
        };
        match self.calls().execute(command)? {
            Ok(applied) => {
                Ok(IssuedVoucher { id: voucher.clone(), code, log_index: applied.log_index })
            }
            Err(rejection) => {
                if self.ledger().read(|state| state.voucher(voucher).is_none()) {
                    self.registry().forget_voucher_code(voucher)?;
                }
                Err(rejection.into())
            }
        }
    }

    /// The codes of `vouchers`: the registry's where it has one (an issuance tried before),
    /// new ones from the OS's CSPRNG otherwise, recorded durably with one flush.
    fn codes_for(&self, vouchers: &[Id]) -> Result<Vec<VoucherCode>, Error> {
        let mut codes = Vec::with_capacity(vouchers.len());
        let mut new = Vec::new();
        for (n, voucher) in vouchers.iter().enumerate() {
            match self.registry().code_of(voucher)? {
                Some(code) => codes.push(code),
                None => {
                    let code = VoucherCode::from_random(rand::rngs::OsRng.r#gen());
                    codes.push(code);
                    new.push((n, voucher.clone(), code));
                }
            }
        }
        // A new code that another voucher holds (one chance in 2^60 per pair) is drawn again.
        while !new.is_empty() {
            let pairs: Vec<(Id, VoucherCode)> =
                new.iter().map(|(_, voucher, code)| (voucher.clone(), *code)).collect();
            let stored = self.registry().store_voucher_codes(&pairs)?;
            new = new
                .into_iter()
                .zip(stored)
                .filter(|(_, stored)| !stored)
                .map(|((n, voucher, _), _)| {
                    let code = VoucherCode::from_random(rand::rngs::OsRng.r#gen());
                    codes[n] = code;
                    (n, voucher, code)
                })
                .collect();
        }
        Ok(codes)
    }

    /// Issues a voucher per row of a CSV file in the disbursement shape (see
    /// [`crate::disburse`]): `phone` and, for value vouchers, `amount` (commodity vouchers get
    /// the programme's basket and have no `amount` column). Rows are validated first and the
    /// budget checked, as for a disbursement. Each voucher's id derives from the file and the
    /// line, so running the same file again issues nothing twice and answers the same vouchers
    /// and codes.
    ///
    /// # Errors
    /// [`Error::Disbursement`] for a file that cannot be read; the ledger's rejection of the
    /// programme; storage errors. Rows refused while issuing are reported, not errors.
    pub fn issue_vouchers_from_csv(
        &self,
        programme: &Id,
        csv: &[u8],
        options: DisburseOptions,
    ) -> Result<IssueReport, Error> {
        let (kind, currency, available, basket) = self
            .ledger()
            .read(|state| {
                let known = state.programme(programme)?;
                let terms = state.voucher_terms(programme);
                let basket: i64 = terms.map_or(0, |terms| {
                    terms
                        .items
                        .iter()
                        .map(|i| i64::from(i.quantity) * i.unit_value.minor_units())
                        .sum()
                });
                let available = state.account(&known.funding)?.available();
                Some((known.kind, known.currency, available, basket))
            })
            .ok_or_else(|| Rejection::ProgrammeNotFound(programme.clone()))?;
        let amounts = match kind {
            ProgrammeKind::Cash => {
                return Err(Rejection::NotAVoucherProgramme(programme.clone()).into());
            }
            ProgrammeKind::ValueVoucher => AmountColumn::Required,
            ProgrammeKind::CommodityVoucher => AmountColumn::Absent,
        };
        let run = run_of(programme, csv);
        let mut report = IssueReport { run: run.clone(), ..IssueReport::default() };
        let (rows, problems) =
            validate(self, csv, currency, options, &format!("v-{run}"), amounts)?;
        report.rows = rows.len() + problems.len();
        report.rejected = problems;
        if !report.rejected.is_empty() && !options.skip_invalid {
            report.refusal = Some(format!(
                "{} bad rows, no voucher issued (use --skip-invalid to issue the others)",
                report.rejected.len()
            ));
            return Ok(report);
        }
        let value_of = |row: &Row| row.amount.map_or(basket, |amount| amount.minor_units());
        let needed: i64 = self.ledger().read(|state| {
            rows.iter().filter(|row| state.voucher(&row.transfer).is_none()).map(value_of).sum()
        });
        if needed > available.minor_units() {
            report.refusal = Some(format!(
                "the programme has {available} available and the vouchers not yet issued need {}; \
                 no voucher issued",
                Amount::from_minor_units(needed, currency)
            ));
            return Ok(report);
        }
        for chunk in rows.chunks(1_000) {
            let mut lines = Vec::with_capacity(chunk.len());
            let mut commands = Vec::with_capacity(chunk.len());
            for row in chunk {
                let beneficiary = match beneficiary_of(self, row, currency) {
                    Ok((beneficiary, registered)) => {
                        report.registered += usize::from(registered);
                        beneficiary
                    }
                    Err(error) => {
                        report
                            .rejected
                            .push(RowProblem { line: row.line, reason: error.to_string() });
                        continue;
                    }
                };
                lines.push((row.line, row.transfer.clone()));
                commands.push(Command::IssueVoucher {
                    id: row.transfer.clone(),
                    programme: programme.clone(),
                    beneficiary,
                    value: row.amount,
                    items: Vec::new(),
                    expires_at_ms: None,
                    actor: Actor::Operator,
                });
            }
            if commands.is_empty() {
                continue;
            }
            let vouchers: Vec<Id> = lines.iter().map(|(_, voucher)| voucher.clone()).collect();
            let codes = self.codes_for(&vouchers)?;
            let results = self.calls().execute_each(commands)?;
            for (((line, voucher), code), result) in lines.into_iter().zip(codes).zip(results) {
                match result {
                    Ok(applied) => {
                        if applied.events.is_empty() {
                            report.already_issued += 1;
                        } else {
                            report.issued += 1;
                        }
                        let issued =
                            IssuedVoucher { id: voucher, code, log_index: applied.log_index };
                        report.vouchers.push((line, issued));
                    }
                    Err(rejection) => {
                        self.registry().forget_voucher_code(&voucher)?;
                        report.rejected.push(RowProblem { line, reason: rejection.to_string() });
                    }
                }
            }
        }
        report.rejected.sort_by_key(|problem| problem.line);
        Ok(report)
    }

    /// The voucher a code (as typed or read out) belongs to.
    ///
    /// # Errors
    /// [`Error::VoucherCode`] for a typo or a malformed code (not counted as a guess);
    /// [`Error::UnknownVoucherCode`] for a code nobody holds, counted against `vendor`;
    /// [`Error::TooManyGuesses`] once `vendor` guessed too often.
    pub fn voucher_by_code(&self, code: &str, vendor: &Id) -> Result<Id, Error> {
        let now_ms = self.now_ms();
        let guesser = Subject::Vendor(vendor);
        if let Some(retry_after_ms) = self.registry().limit_wait(&GUESSES, guesser, now_ms)? {
            return Err(Error::TooManyGuesses { retry_after_ms });
        }
        let code = VoucherCode::parse(code)?;
        match self.registry().voucher_by_code(code)? {
            Some(voucher) if self.ledger().read(|state| state.voucher(&voucher).is_some()) => {
                Ok(voucher)
            }
            _ => {
                self.registry().count_against(&GUESSES, guesser, now_ms)?;
                Err(Error::UnknownVoucherCode)
            }
        }
    }

    /// A vendor asks to redeem the voucher with `code`: for `amount` (value vouchers) or
    /// `items` (commodity vouchers), or all that remains when both are left out. The amount is
    /// held until the beneficiary authorises ([`Self::authorise_with_pin`],
    /// [`Self::answer_confirmation`]) or refuses, or the time runs out.
    ///
    /// # Errors
    /// As [`Self::voucher_by_code`]; the ledger's rejections; storage errors.
    pub fn request_redemption(
        &self,
        code: &str,
        vendor: &Id,
        amount: Option<Amount>,
        items: Vec<ItemQuantity>,
        redemption: Option<Id>,
    ) -> Result<RedemptionRequest, Error> {
        let voucher = self.voucher_by_code(code, vendor)?;
        let redemption = redemption.unwrap_or_else(|| random_id("rd-", 20));
        let command = Command::RequestRedemption {
            id: redemption.clone(),
            voucher: voucher.clone(),
            vendor: vendor.clone(),
            amount,
            items,
            timeout_ms: REDEMPTION_TIMEOUT_MS,
            actor: Actor::Vendor,
        };
        let applied = self.calls().execute(command)??;
        let amount = self
            .ledger()
            .read(|state| state.redemption(&redemption).map(|r| r.amount))
            .ok_or_else(|| Error::Corrupt(format!("redemption {redemption} vanished")))?;
        Ok(RedemptionRequest { id: redemption, voucher, amount, log_index: applied.log_index })
    }

    /// The beneficiary of a redemption's voucher.
    fn beneficiary_of(&self, redemption: &Id) -> Result<Id, Error> {
        self.ledger()
            .read(|state| {
                let voucher = state.redemption(redemption)?.voucher.clone();
                Some(state.voucher(&voucher)?.beneficiary.clone())
            })
            .ok_or_else(|| Rejection::RedemptionNotFound(redemption.clone()).into())
    }

    /// The beneficiary authorises a redemption with their PIN. A wrong PIN is logged; the
    /// programme's limit locks the voucher.
    ///
    /// # Errors
    /// [`Error::WrongPin`]; the ledger's rejections; storage errors.
    pub fn authorise_with_pin(&self, redemption: &Id, pin: &str) -> Result<Option<u64>, Error> {
        let beneficiary = self.beneficiary_of(redemption)?;
        // Refuse early what the ledger would refuse anyway, before the costly PIN check.
        self.ledger().read(|state| match state.redemption(redemption).map(|r| r.state) {
            Some(sanad_ledger::RedemptionState::Voided(_)) => {
                Err(Rejection::RedemptionNotPending(redemption.clone()))
            }
            _ => Ok(()),
        })?;
        if self.registry().verify_pin(&beneficiary, pin)? {
            self.authorise(redemption, Authorisation::Pin)
        } else {
            Err(self.wrong_answer(redemption)?)
        }
    }

    fn authorise(&self, redemption: &Id, by: Authorisation) -> Result<Option<u64>, Error> {
        let command = Command::AuthoriseRedemption { redemption: redemption.clone(), by };
        Ok(self.calls().execute(command)??.log_index)
    }

    /// Logs a wrong PIN or confirmation; the error says what follows.
    fn wrong_answer(&self, redemption: &Id) -> Result<Error, Error> {
        let command = Command::RecordPinFailure { redemption: redemption.clone() };
        let applied = self.calls().execute(command)??;
        let (failures, locked_until_ms) = match applied.events.first() {
            Some(Event::RedemptionPinFailed { failures, locked_until_ms, .. }) => {
                (*failures, *locked_until_ms)
            }
            _ => return Err(Error::Corrupt("a PIN failure without its event".into())),
        };
        let allowed = self.ledger().read(|state| {
            let voucher = state.voucher(&state.redemption(redemption)?.voucher)?;
            Some(state.voucher_terms(&voucher.programme)?.pin_attempts)
        });
        let attempts_left = allowed.unwrap_or(0).saturating_sub(failures);
        Ok(Error::WrongPin { attempts_left, locked_until_ms })
    }

    /// Starts a confirmation by phone: returns the beneficiary's E.164 number and the six
    /// digits they must send back to authorise (the SMS layer sends them).
    ///
    /// # Errors
    /// The ledger's rejections; storage errors.
    pub fn confirmation_for(&self, redemption: &Id) -> Result<(String, String), Error> {
        let beneficiary = self.beneficiary_of(redemption)?;
        let (person, _) = self
            .registry()
            .person(&beneficiary)?
            .ok_or_else(|| Error::BeneficiaryNotFound(beneficiary.clone()))?;
        let answer = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
        let expected = digest(&[redemption.as_str().as_bytes(), answer.as_bytes()]);
        self.registry().put_confirmation(redemption, &beneficiary, &expected)?;
        Ok((person.phone, answer))
    }

    /// The beneficiary answered a confirmation: `accept` with the right digits authorises;
    /// a refusal releases the hold; wrong digits count as a wrong PIN.
    ///
    /// # Errors
    /// [`Error::WrongPin`]; the ledger's rejections; storage errors.
    pub fn answer_confirmation(
        &self,
        redemption: &Id,
        digits: &str,
        accept: bool,
    ) -> Result<Option<u64>, Error> {
        let expected = self.registry().confirmation(redemption)?.map(|(_, expected)| expected);
        let given = digest(&[redemption.as_str().as_bytes(), digits.trim().as_bytes()]);
        // Compared whole, never byte by byte with an early exit.
        let right = expected.is_some_and(|expected| {
            expected.iter().zip(given.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
        });
        if !right {
            return Err(self.wrong_answer(redemption)?);
        }
        self.registry().forget_confirmation(redemption)?;
        if accept {
            self.authorise(redemption, Authorisation::Confirmation)
        } else {
            self.refuse_redemption(redemption)
        }
    }

    /// The beneficiary answered by SMS, with the digits only: the redemption is the one of
    /// theirs awaiting confirmation whose digits these are. Wrong digits count as a wrong PIN
    /// on their latest one.
    ///
    /// # Errors
    /// [`Error::NoPendingConfirmation`] when nothing of theirs awaits an answer;
    /// [`Error::WrongPin`]; the ledger's rejections; storage errors.
    pub fn answer_confirmation_from(
        &self,
        beneficiary: &Id,
        digits: &str,
        accept: bool,
    ) -> Result<(Id, Option<u64>), Error> {
        // Another process may have asked for the confirmation: see its redemption first.
        self.ledger().sync()?;
        let mut waiting: Vec<(Id, [u8; 32])> = Vec::new();
        for (redemption, owner, expected) in self.registry().confirmations()? {
            let open = self.ledger().read(|state| {
                state
                    .redemption(&redemption)
                    .is_some_and(|r| r.state == sanad_ledger::RedemptionState::Open)
            });
            if !open {
                // Ended meanwhile (authorised elsewhere, refused, timed out): forget it.
                self.registry().forget_confirmation(&redemption)?;
            } else if owner == *beneficiary {
                waiting.push((redemption, expected));
            }
        }
        let matching = waiting.iter().find(|(redemption, expected)| {
            let given = digest(&[redemption.as_str().as_bytes(), digits.trim().as_bytes()]);
            bool::from(subtle::ConstantTimeEq::ct_eq(&given[..], &expected[..]))
        });
        match matching {
            Some((redemption, _)) => {
                let index = self.answer_confirmation(redemption, digits, accept)?;
                Ok((redemption.clone(), index))
            }
            None => {
                let latest = waiting
                    .iter()
                    .max_by_key(|(redemption, _)| {
                        self.ledger()
                            .read(|state| state.redemption(redemption).map(|r| r.requested_index))
                    })
                    .map(|(redemption, _)| redemption.clone())
                    .ok_or(Error::NoPendingConfirmation)?;
                Err(self.wrong_answer(&latest)?)
            }
        }
    }

    /// The beneficiary refused a redemption, or the vendor withdrew it.
    ///
    /// # Errors
    /// The ledger's rejections; storage errors.
    pub fn refuse_redemption(&self, redemption: &Id) -> Result<Option<u64>, Error> {
        let command = Command::RefuseRedemption { redemption: redemption.clone() };
        Ok(self.calls().execute(command)??.log_index)
    }

    /// Revokes a voucher: its value returns to the programme.
    ///
    /// # Errors
    /// The ledger's rejections; storage errors.
    pub fn revoke_voucher(&self, voucher: &Id) -> Result<Option<u64>, Error> {
        let command = Command::RevokeVoucher { voucher: voucher.clone() };
        Ok(self.calls().execute(command)??.log_index)
    }

    /// Settles every vendor of a programme that redeemed something since its last
    /// settlement, into the agency's settlement account. `run` names the run: running the
    /// same run again pays nothing twice and answers the same settlements.
    ///
    /// # Errors
    /// The ledger's rejections; storage errors.
    pub fn settle(&self, programme: &Id, run: Option<&str>) -> Result<SettlementRun, Error> {
        let currency = self
            .ledger()
            .read(|state| state.programme(programme).map(|p| p.currency))
            .ok_or_else(|| Rejection::ProgrammeNotFound(programme.clone()))?;
        let to = Self::settlement_account(currency);
        self.ensure_account(to.clone(), AccountKind::Settlement, currency, id(AGENCY_OWNER))?;
        let run = run.map_or_else(|| random_id("run-", 12).as_str().to_owned(), str::to_owned);
        let settlement_of = |vendor: &Id| {
            derived_id(
                "st-",
                &[run.as_bytes(), programme.as_str().as_bytes(), vendor.as_str().as_bytes()],
            )
        };
        let vendors: Vec<Id> = self.ledger().read(|state| {
            state
                .programme_vendors(programme)
                .filter(|(vendor, record)| {
                    record.unsettled_minor > 0 || state.settlement(&settlement_of(vendor)).is_some()
                })
                .map(|(vendor, _)| vendor.clone())
                .collect()
        });
        let mut settled = SettlementRun { run: run.clone(), vendors: Vec::new() };
        if vendors.is_empty() {
            return Ok(settled);
        }
        let commands = vendors
            .iter()
            .map(|vendor| Command::Settle {
                id: settlement_of(vendor),
                programme: programme.clone(),
                vendor: vendor.clone(),
                to: to.clone(),
                actor: Actor::Operator,
            })
            .collect();
        for (vendor, result) in vendors.iter().zip(self.calls().execute_each(commands)?) {
            let applied = result?;
            let settlement = settlement_of(vendor);
            let (amount, redemptions) = self
                .ledger()
                .read(|state| state.settlement(&settlement).map(|s| (s.amount, s.redemptions)))
                .ok_or_else(|| Error::Corrupt(format!("settlement {settlement} vanished")))?;
            settled.vendors.push(VendorSettlement {
                vendor: vendor.clone(),
                settlement,
                amount,
                redemptions,
                log_index: applied.log_index,
            });
        }
        Ok(settled)
    }

    /// A settlement's statement, as CSV built from the log: one row per redemption it pays,
    /// with the log index of its authorisation (which any auditor can prove is in the log).
    ///
    /// Columns: `settlement, vendor, programme, redemption, voucher, log_index, authorised_at,
    /// authorised_by, amount, currency, items` (items as `rice:4;oil:1`).
    ///
    /// # Errors
    /// [`Error::Rejected`] for an unknown settlement; storage errors.
    pub fn settlement_statement(&self, settlement: &Id) -> Result<String, Error> {
        let record = self
            .ledger()
            .read(|state| state.settlement(settlement).cloned())
            .ok_or_else(|| Error::Corrupt(format!("no settlement {settlement}")))?;
        let mut out = csv::Writer::from_writer(Vec::new());
        let csv_error = |e: csv::Error| Error::Corrupt(format!("writing a statement: {e}"));
        out.write_record([
            "settlement",
            "vendor",
            "programme",
            "redemption",
            "voucher",
            "log_index",
            "authorised_at",
            "authorised_by",
            "amount",
            "currency",
            "items",
        ])
        .map_err(csv_error)?;
        let mut cursor = record.since_index;
        'pages: loop {
            let page = self.ledger().history(&record.vendor, cursor, 512)?;
            for (index, event) in &page.items {
                if *index >= record.index {
                    break 'pages;
                }
                let Event::RedemptionAuthorised { redemption, by, at_ms } = event else { continue };
                let Some(paid) = self.ledger().read(|state| state.redemption(redemption).cloned())
                else {
                    continue;
                };
                let programme = self
                    .ledger()
                    .read(|state| state.voucher(&paid.voucher).map(|v| v.programme.clone()));
                if programme.as_ref() != Some(&record.programme) {
                    continue;
                }
                let items: Vec<String> =
                    paid.items.iter().map(|i| format!("{}:{}", i.item, i.quantity)).collect();
                let by = match by {
                    Authorisation::Pin => "pin",
                    Authorisation::Confirmation => "confirmation",
                };
                out.write_record([
                    settlement.as_str(),
                    record.vendor.as_str(),
                    record.programme.as_str(),
                    redemption.as_str(),
                    paid.voucher.as_str(),
                    &index.to_string(),
                    &rfc3339(*at_ms),
                    by,
                    &paid.amount.to_decimal_string(),
                    paid.amount.currency().code(),
                    &items.join(";"),
                ])
                .map_err(csv_error)?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let bytes = out.into_inner().map_err(|e| Error::Corrupt(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| Error::Corrupt(e.to_string()))
    }
}

/// A time in ms since the Unix epoch as RFC 3339 UTC with milliseconds.
fn rfc3339(at_ms: u64) -> String {
    let nanos = i128::from(at_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| at_ms.to_string())
}
