//! The ledger's state, how commands are decided against it, and how events change it.

use std::collections::{BTreeMap, HashMap};

use sanad_money::{Amount, Currency, Id};
use serde::{Deserialize, Serialize};

use crate::{Actor, Command, Context, Event, Rejection};

/// Kinds of account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// The agency's money for one programme.
    ProgrammeFunding,
    /// A beneficiary's wallet.
    Wallet,
    /// A vendor (shop) that redeems vouchers and receives payments.
    Vendor,
    /// A cash-out agent that pays out physical cash.
    CashOutAgent,
    /// Money on its way out to a bank or mobile-money payout.
    Settlement,
    /// Money entering or leaving the system (a donor, a bank): the only kind that may go
    /// negative, since issuance is a transfer out of it.
    External,
}

impl AccountKind {
    /// Whether the balance may go below zero.
    pub fn may_go_negative(self) -> bool {
        self == Self::External
    }
}

/// One account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    id: Id,
    kind: AccountKind,
    currency: Currency,
    owner: Id,
    // Invariant: balance_minor >= 0 unless kind.may_go_negative().
    balance_minor: i64,
    frozen: bool,
    closed: bool,
}

impl Account {
    /// The account's id.
    pub fn id(&self) -> &Id {
        &self.id
    }
    /// Its kind.
    pub fn kind(&self) -> AccountKind {
        self.kind
    }
    /// Its currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// Its pseudonymous owner.
    pub fn owner(&self) -> &Id {
        &self.owner
    }
    /// Its balance.
    pub fn balance(&self) -> Amount {
        Amount::from_minor_units(self.balance_minor, self.currency)
    }
    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }
    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A posted transfer, kept to answer retries and queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// Debited account.
    pub from: Id,
    /// Credited account.
    pub to: Id,
    /// Amount.
    pub amount: Amount,
    /// Programme.
    pub programme: Id,
    /// Who asked.
    pub actor: Actor,
    /// Reference.
    pub reference: Option<String>,
}

/// The whole state: rebuilt by replaying the log, changed only by [`Ledger::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<Id, Account>,
    transfers: HashMap<Id, TransferRecord>,
}

/// An event that cannot apply to the state: in a replayed log, a bad log; in the engine, a bug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event does not apply: {0}")]
pub struct Inconsistency(pub String);

impl Ledger {
    /// An account by id.
    pub fn account(&self, id: &Id) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// All accounts, by id.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// A posted transfer by id.
    pub fn transfer(&self, id: &Id) -> Option<&TransferRecord> {
        self.transfers.get(id)
    }

    /// The sum of all balances per currency; zero for every currency in a consistent ledger.
    pub fn totals(&self) -> BTreeMap<&'static str, i128> {
        let mut totals = BTreeMap::new();
        for account in self.accounts.values() {
            *totals.entry(account.currency.code()).or_insert(0) +=
                i128::from(account.balance_minor);
        }
        totals
    }

    fn live_account(&self, id: &Id) -> Result<&Account, Rejection> {
        self.accounts.get(id).ok_or_else(|| Rejection::AccountNotFound(id.clone()))
    }

    /// Applies one event. Checks everything a replayed, untrusted log could get wrong.
    ///
    /// # Errors
    /// [`Inconsistency`] when the event cannot follow the current state.
    pub fn apply(&mut self, event: &Event) -> Result<(), Inconsistency> {
        let fail = |what: String| Err(Inconsistency(what));
        match event {
            Event::AccountOpened { account, kind, currency, owner, .. } => {
                if self.accounts.contains_key(account) {
                    return fail(format!("account {account} opened twice"));
                }
                let opened = Account {
                    id: account.clone(),
                    kind: *kind,
                    currency: *currency,
                    owner: owner.clone(),
                    balance_minor: 0,
                    frozen: false,
                    closed: false,
                };
                self.accounts.insert(account.clone(), opened);
            }
            Event::TransferPosted {
                transfer,
                from,
                to,
                amount,
                programme,
                actor,
                reference,
                ..
            } => {
                if self.transfers.contains_key(transfer) {
                    return fail(format!("transfer {transfer} posted twice"));
                }
                let minor = amount.minor_units();
                let (Some(debit), Some(credit)) = (self.accounts.get(from), self.accounts.get(to))
                else {
                    return fail(format!("transfer {transfer} names an unknown account"));
                };
                if from == to || minor <= 0 {
                    return fail(format!("transfer {transfer} is not a transfer"));
                }
                for account in [debit, credit] {
                    if account.currency != amount.currency() || account.frozen || account.closed {
                        return fail(format!(
                            "transfer {transfer} touches account {} that may not move",
                            account.id
                        ));
                    }
                }
                let Some(new_debit) = debit.balance_minor.checked_sub(minor) else {
                    return fail(format!("transfer {transfer} overflows {from}"));
                };
                let Some(new_credit) = credit.balance_minor.checked_add(minor) else {
                    return fail(format!("transfer {transfer} overflows {to}"));
                };
                if new_debit < 0 && !debit.kind.may_go_negative() {
                    return fail(format!("transfer {transfer} overdraws {from}"));
                }
                // The two legs of a double entry: one debit, one credit, the same amount.
                if let Some(account) = self.accounts.get_mut(from) {
                    account.balance_minor = new_debit;
                }
                if let Some(account) = self.accounts.get_mut(to) {
                    account.balance_minor = new_credit;
                }
                self.transfers.insert(
                    transfer.clone(),
                    TransferRecord {
                        from: from.clone(),
                        to: to.clone(),
                        amount: *amount,
                        programme: programme.clone(),
                        actor: *actor,
                        reference: reference.clone(),
                    },
                );
            }
            Event::AccountFrozen { account, .. }
            | Event::AccountUnfrozen { account, .. }
            | Event::AccountClosed { account, .. } => {
                let Some(state) = self.accounts.get_mut(account) else {
                    return fail(format!("unknown account {account}"));
                };
                if state.closed {
                    return fail(format!("account {account} is closed"));
                }
                match event {
                    Event::AccountFrozen { .. } => state.frozen = true,
                    Event::AccountUnfrozen { .. } => state.frozen = false,
                    _ => {
                        if state.balance_minor != 0 {
                            return fail(format!("account {account} closed with a balance"));
                        }
                        state.closed = true;
                    }
                }
            }
        }
        debug_assert!(self.totals().values().all(|total| *total == 0), "money created or lost");
        Ok(())
    }
}

/// Rebuilds a ledger from log entries, in order.
///
/// # Errors
/// [`Inconsistency`] naming the first entry that is malformed or does not apply.
pub fn replay<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Ledger, Inconsistency> {
    let mut ledger = Ledger::default();
    for (index, entry) in entries.into_iter().enumerate() {
        let event =
            Event::from_entry(entry).map_err(|e| Inconsistency(format!("entry {index}: {e}")))?;
        ledger.apply(&event).map_err(|e| Inconsistency(format!("entry {index}: {}", e.0)))?;
    }
    Ok(ledger)
}

pub(crate) fn decide(
    ledger: &Ledger,
    command: &Command,
    context: &Context,
) -> Result<Vec<Event>, Rejection> {
    let at_ms = context.now_ms;
    match command {
        Command::OpenAccount { id, kind, currency, owner } => {
            if ledger.accounts.contains_key(id) {
                return Err(Rejection::AccountExists(id.clone()));
            }
            Ok(vec![Event::AccountOpened {
                account: id.clone(),
                kind: *kind,
                currency: *currency,
                owner: owner.clone(),
                at_ms,
            }])
        }
        Command::Transfer { id, from, to, amount, programme, actor, reference } => {
            let record = TransferRecord {
                from: from.clone(),
                to: to.clone(),
                amount: *amount,
                programme: programme.clone(),
                actor: *actor,
                reference: reference.clone(),
            };
            if let Some(existing) = ledger.transfers.get(id) {
                return if *existing == record {
                    Ok(Vec::new())
                } else {
                    Err(Rejection::IdempotencyKeyReused(id.clone()))
                };
            }
            let debit = ledger.live_account(from)?;
            let credit = ledger.live_account(to)?;
            if from == to {
                return Err(Rejection::SameAccount);
            }
            if !amount.is_positive() {
                return Err(Rejection::AmountMustBePositive);
            }
            for account in [debit, credit] {
                if account.currency != amount.currency() {
                    return Err(Rejection::CurrencyMismatch {
                        account: account.id.clone(),
                        expected: account.currency,
                        got: amount.currency(),
                    });
                }
            }
            for account in [debit, credit] {
                if account.closed {
                    return Err(Rejection::AccountClosed(account.id.clone()));
                }
                if account.frozen {
                    return Err(Rejection::AccountFrozen(account.id.clone()));
                }
            }
            let minor = amount.minor_units();
            match debit.balance_minor.checked_sub(minor) {
                Some(left) if left >= 0 || debit.kind.may_go_negative() => {}
                Some(_) => return Err(Rejection::InsufficientFunds(from.clone())),
                None => return Err(Rejection::AmountOverflow(from.clone())),
            }
            if credit.balance_minor.checked_add(minor).is_none() {
                return Err(Rejection::AmountOverflow(to.clone()));
            }
            Ok(vec![Event::TransferPosted {
                transfer: id.clone(),
                from: from.clone(),
                to: to.clone(),
                amount: *amount,
                programme: programme.clone(),
                actor: *actor,
                reference: reference.clone(),
                at_ms,
            }])
        }
        Command::FreezeAccount { id } | Command::UnfreezeAccount { id } => {
            let account = ledger.live_account(id)?;
            if account.closed {
                return Err(Rejection::AccountClosed(id.clone()));
            }
            let freeze = matches!(command, Command::FreezeAccount { .. });
            if account.frozen == freeze {
                return Ok(Vec::new());
            }
            Ok(vec![if freeze {
                Event::AccountFrozen { account: id.clone(), at_ms }
            } else {
                Event::AccountUnfrozen { account: id.clone(), at_ms }
            }])
        }
        Command::CloseAccount { id } => {
            let account = ledger.live_account(id)?;
            if account.closed {
                return Ok(Vec::new());
            }
            if account.balance_minor != 0 {
                return Err(Rejection::BalanceNotZero(id.clone()));
            }
            Ok(vec![Event::AccountClosed { account: id.clone(), at_ms }])
        }
    }
}
