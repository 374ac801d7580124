//! The money audit: replays a verified log's entries through the ledger's own rules and checks
//! what an auditor is asked to sign off.
//!
//! Replaying (`sanad_ledger::State::replay_entry`) holds every entry to the rules the engine
//! applied when it wrote it: both accounts exist and share the currency, no account but an
//! `external` one goes below zero, limits hold, ids are used once, a voucher is never redeemed
//! beyond what it holds and its escrow always equals what is outstanding, a settlement pays
//! exactly what the vendor redeemed since its last one, and every entry's principal was
//! granted a role that covers it. An entry that breaks a rule is an [`Anomaly`] at its log
//! index; the replay steps over it and goes on, so one audit lists every entry that does not
//! hold (those after the first may follow from it).
//!
//! At the end, the audit checks the totals independently of the rules: per currency the
//! balances sum to zero (money is only moved, and enters only through `external` accounts);
//! no other account is below zero or holds more than it has; per voucher programme, issued =
//! redeemed + returned + outstanding, the escrow account holds exactly the outstanding value,
//! and vendors were settled no more than they redeemed.

use std::collections::BTreeMap;

use sanad_ledger::{AccountKind, ProgrammeKind, State};
use sanad_money::{Amount, Currency, Id};
use serde::Serialize;

/// Something in the log that does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// The entry's log index; `None` for a finding about the final state.
    pub index: Option<u64>,
    /// What does not hold.
    pub problem: String,
}

/// What the audit found, by programme and by currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoneyReport {
    /// Entries replayed (key rotations included).
    pub entries: u64,
    /// Per programme.
    pub programmes: Vec<ProgrammeReport>,
    /// Per currency.
    pub currencies: Vec<CurrencyReport>,
    /// Principals granted in the log, with the number of entries each caused.
    pub principals: BTreeMap<String, PrincipalReport>,
    /// Entries caused by the store's holder (no principal named).
    pub entries_without_principal: u64,
    /// Every anomaly, in log order, then those of the final state.
    pub anomalies: Vec<Anomaly>,
}

impl MoneyReport {
    /// Whether everything held.
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// One programme's figures. Amounts are decimal strings in the programme's currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgrammeReport {
    /// The programme's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `cash`, `value_voucher` or `commodity_voucher`.
    pub kind: ProgrammeKind,
    /// Its currency.
    pub currency: String,
    /// What its funding account holds.
    pub funding_balance: String,
    /// Posted transfers under it (funding and payments).
    pub transfers: u64,
    /// Their sum.
    pub moved: String,
    /// Reversals.
    pub reversals: u64,
    /// Their sum.
    pub reversed: String,
    /// Voucher programmes: their vouchers.
    pub vouchers: Option<VoucherFigures>,
}

/// A voucher programme's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VoucherFigures {
    /// Vouchers issued.
    pub issued: u64,
    /// Their value.
    pub issued_value: String,
    /// Redemptions authorised.
    pub redemptions: u64,
    /// Their value.
    pub redeemed: String,
    /// Returned to the programme (revoked, expired, closed).
    pub returned: String,
    /// Still outstanding.
    pub outstanding: String,
    /// What the escrow account holds (equal to `outstanding`).
    pub escrow_balance: String,
    /// Paid out to vendors by settlements.
    pub settled: String,
}

/// One currency's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CurrencyReport {
    /// The ISO 4217 code.
    pub currency: String,
    /// Accounts in it.
    pub accounts: u64,
    /// Money that entered through `external` accounts (their balances, negated).
    pub entered: String,
    /// The sum of all balances: always zero.
    pub sum: String,
}

/// A principal's grant and activity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrincipalReport {
    /// Its role.
    pub role: sanad_ledger::Role,
    /// Its vendor, for a vendor principal.
    pub vendor: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Entries it caused.
    pub entries: u64,
}

/// The audit in progress: feed it every entry in order ([`Self::entry`]), then
/// [`Self::finish`].
#[derive(Debug, Default)]
pub struct MoneyAudit {
    state: State,
    entries: u64,
    by_principal: BTreeMap<String, u64>,
    without_principal: u64,
    anomalies: Vec<Anomaly>,
}

/// An amount of minor units as a decimal string in `currency`.
fn decimal(minor: i128, currency: Currency) -> String {
    match i64::try_from(minor) {
        Ok(minor) => Amount::from_minor_units(minor, currency).to_decimal_string(),
        Err(_) => format!("{minor} minor units"),
    }
}

impl MoneyAudit {
    /// A new audit, from an empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replays entry `index` (entries must come in log order, from 0).
    pub fn entry(&mut self, index: u64, entry: &[u8]) {
        self.entries += 1;
        match self.state.replay_entry(index, entry) {
            Ok(Some((_, Some(by)))) => {
                *self.by_principal.entry(by.as_str().to_owned()).or_default() += 1;
            }
            Ok(Some((_, None))) => self.without_principal += 1,
            // The log's own key hand-over.
            Ok(None) => {}
            Err(inconsistency) => {
                let prefix = format!("entry {index}: ");
                let problem = inconsistency.0.strip_prefix(&prefix).unwrap_or(&inconsistency.0);
                let problem = problem.to_owned();
                self.anomalies.push(Anomaly { index: Some(index), problem });
                self.state.step_over(index);
            }
        }
    }

    /// The final checks and the report.
    pub fn finish(mut self) -> MoneyReport {
        let state = &self.state;
        let mut final_anomalies = Vec::new();
        let mut found = |problem: String| final_anomalies.push(Anomaly { index: None, problem });

        let mut currencies: BTreeMap<&'static str, (Currency, u64, i128, i128)> = BTreeMap::new();
        for account in state.accounts() {
            let currency = account.currency();
            let figures = currencies.entry(currency.code()).or_insert((currency, 0, 0, 0));
            let balance = i128::from(account.balance().minor_units());
            figures.1 += 1;
            figures.3 += balance;
            if account.kind() == AccountKind::External {
                figures.2 -= balance;
            } else if account.balance().is_negative() {
                found(format!("account {} is below zero: {}", account.id(), account.balance()));
            }
            if !account.kind().may_go_negative() && account.available().is_negative() {
                found(format!("account {} holds more than it has", account.id()));
            }
        }
        for (code, (_, _, _, sum)) in &currencies {
            if *sum != 0 {
                found(format!("balances in {code} sum to {sum} minor units, not zero"));
            }
        }

        let mut programmes = Vec::new();
        for (id, programme) in state.programmes() {
            let currency = programme.currency;
            let totals = state.programme_totals(id).find(|(c, _)| *c == currency);
            let (transfers, moved, reversals, reversed) = totals.map_or((0, 0, 0, 0), |(_, t)| {
                (t.transfers, t.moved_minor, t.reversals, t.reversed_minor)
            });
            let balance_of = |account: &Id| {
                state.account(account).map_or(0, |a| i128::from(a.balance().minor_units()))
            };
            let vouchers = match (state.voucher_totals(id), state.voucher_terms(id)) {
                (Some(totals), Some(terms)) => {
                    let outstanding = totals.outstanding_minor();
                    let escrow = balance_of(&terms.escrow);
                    if outstanding < 0 {
                        found(format!("programme {id}: more redeemed and returned than issued"));
                    }
                    if escrow != outstanding {
                        found(format!(
                            "programme {id}: escrow holds {} but {} is outstanding",
                            decimal(escrow, currency),
                            decimal(outstanding, currency)
                        ));
                    }
                    if totals.settled_minor > totals.redeemed_minor {
                        found(format!("programme {id}: vendors settled more than they redeemed"));
                    }
                    Some(VoucherFigures {
                        issued: totals.issued,
                        issued_value: decimal(totals.issued_minor, currency),
                        redemptions: totals.redemptions,
                        redeemed: decimal(totals.redeemed_minor, currency),
                        returned: decimal(totals.returned_minor, currency),
                        outstanding: decimal(outstanding, currency),
                        escrow_balance: decimal(escrow, currency),
                        settled: decimal(totals.settled_minor, currency),
                    })
                }
                _ => None,
            };
            programmes.push(ProgrammeReport {
                id: id.as_str().to_owned(),
                name: programme.name.clone(),
                kind: programme.kind,
                currency: currency.code().to_owned(),
                funding_balance: decimal(balance_of(&programme.funding), currency),
                transfers,
                moved: decimal(moved, currency),
                reversals,
                reversed: decimal(reversed, currency),
                vouchers,
            });
        }
        for (_, voucher) in state.vouchers() {
            if voucher.redeemed().checked_cmp(&voucher.value).is_ok_and(|o| o.is_gt()) {
                found(format!("a voucher of programme {} is over-redeemed", voucher.programme));
            }
        }

        let mut granted = BTreeMap::new();
        for (principal, grant) in state.principals() {
            let entries = self.by_principal.get(principal.as_str()).copied().unwrap_or(0);
            granted.insert(
                principal.as_str().to_owned(),
                PrincipalReport {
                    role: grant.role,
                    vendor: grant.vendor.as_ref().map(|v| v.as_str().to_owned()),
                    revoked: grant.revoked,
                    entries,
                },
            );
        }

        self.anomalies.extend(final_anomalies);
        MoneyReport {
            entries: self.entries,
            programmes,
            currencies: currencies
                .into_iter()
                .map(|(code, (currency, accounts, entered, sum))| CurrencyReport {
                    currency: code.to_owned(),
                    accounts,
                    entered: decimal(entered, currency),
                    sum: decimal(sum, currency),
                })
                .collect(),
            principals: granted,
            entries_without_principal: self.without_principal,
            anomalies: self.anomalies,
        }
    }
}
