//! The ledger's state, how commands are decided against it, and how events change it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use sanad_money::{Amount, Currency, Id};
use serde::{Deserialize, Serialize};

use crate::{Actor, Command, Context, Event, Limits, Rejection};

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
    // Invariant: balance_minor - held_minor >= 0 unless kind.may_go_negative().
    balance_minor: i64,
    // Invariant: held_minor >= 0; the sum of the open pending transfers out of this account.
    held_minor: i64,
    frozen: bool,
    closed: bool,
    limits: Limits,
    // Money that left the account in the last 30 days: (time in ms, minor units), oldest first.
    outflows: VecDeque<(u64, i64)>,
}

/// The windows of the outflow limits.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
const MONTH_MS: u64 = 30 * DAY_MS;

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
    /// Its posted balance.
    pub fn balance(&self) -> Amount {
        Amount::from_minor_units(self.balance_minor, self.currency)
    }
    /// Its available balance: posted, less what pending transfers hold.
    pub fn available(&self) -> Amount {
        Amount::from_minor_units(self.balance_minor - self.held_minor, self.currency)
    }
    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }
    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What left the account within `window_ms` before `now_ms`.
    fn outflow_within(&self, window_ms: u64, now_ms: u64) -> i64 {
        self.outflows.iter().filter(|(at, _)| at + window_ms > now_ms).map(|(_, minor)| minor).sum()
    }
}

/// A transfer's content, kept to answer retries and queries.
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

impl TransferRecord {
    fn of(
        from: &Id,
        to: &Id,
        amount: &Amount,
        programme: &Id,
        actor: Actor,
        reference: &Option<String>,
    ) -> Self {
        Self {
            from: from.clone(),
            to: to.clone(),
            amount: *amount,
            programme: programme.clone(),
            actor,
            reference: reference.clone(),
        }
    }

    /// The event posting this transfer under `id`.
    fn posted(self, id: &Id, at_ms: u64) -> Event {
        Event::TransferPosted {
            transfer: id.clone(),
            from: self.from,
            to: self.to,
            amount: self.amount,
            programme: self.programme,
            actor: self.actor,
            reference: self.reference,
            at_ms,
        }
    }

    /// The event holding this transfer's amount under `id` until `expires_at_ms`.
    fn pending(self, id: &Id, expires_at_ms: u64, at_ms: u64) -> Event {
        Event::TransferPending {
            transfer: id.clone(),
            from: self.from,
            to: self.to,
            amount: self.amount,
            programme: self.programme,
            actor: self.actor,
            reference: self.reference,
            expires_at_ms,
            at_ms,
        }
    }
}

/// Where a pending transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingState {
    /// Funds are held.
    Open,
    /// Posted (for all or part of the hold).
    Posted,
    /// Released by request.
    Voided,
    /// Released because its time was up.
    Expired,
}

/// A pending (two-phase) transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// What it will move.
    pub record: TransferRecord,
    /// When it lapses.
    pub expires_at_ms: u64,
    /// Where it stands.
    pub state: PendingState,
}

/// What a transfer id was used for, to answer retries.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Used {
    Transfer(TransferRecord),
    /// The hold itself lives in `Ledger::pendings`.
    Pending,
    Posted {
        pending: Id,
        amount: Amount,
    },
    Voided {
        pending: Id,
    },
    Reversed {
        original: Id,
    },
}

/// The whole state: rebuilt by replaying the log, changed only by [`Ledger::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<Id, Account>,
    pendings: BTreeMap<Id, Pending>,
    used: HashMap<Id, Used>,
    // Invariant: every id here names a posted single-phase transfer.
    reversed: std::collections::HashSet<Id>,
}

/// An event that cannot apply to the state: in a replayed log, a bad log; in the engine, a bug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event does not apply: {0}")]
pub struct Inconsistency(pub String);

impl From<Rejection> for Inconsistency {
    fn from(rejection: Rejection) -> Self {
        Self(rejection.to_string())
    }
}

impl Ledger {
    /// An account by id.
    pub fn account(&self, id: &Id) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// All accounts, by id.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// A posted single-phase transfer by id.
    pub fn transfer(&self, id: &Id) -> Option<&TransferRecord> {
        // Single-phase transfers are remembered once, in the idempotency index.
        match self.used.get(id) {
            Some(Used::Transfer(record)) => Some(record),
            _ => None,
        }
    }

    /// A pending (two-phase) transfer by id, in whatever state it is.
    pub fn pending(&self, id: &Id) -> Option<&Pending> {
        self.pendings.get(id)
    }

    /// The sum of all posted balances per currency; zero for every currency in a consistent
    /// ledger.
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

    /// The checks every movement of money passes, in precedence order. `released` is a hold on
    /// `from` that the movement itself releases first (posting a pending transfer).
    fn check_movement(
        &self,
        record: &TransferRecord,
        released: i64,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let debit = self.live_account(&record.from)?;
        let credit = self.live_account(&record.to)?;
        if record.from == record.to {
            return Err(Rejection::SameAccount);
        }
        if !record.amount.is_positive() {
            return Err(Rejection::AmountMustBePositive);
        }
        for account in [debit, credit] {
            if account.currency != record.amount.currency() {
                return Err(Rejection::CurrencyMismatch {
                    account: account.id.clone(),
                    expected: account.currency,
                    got: record.amount.currency(),
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
        let minor = record.amount.minor_units();
        let available = debit.balance_minor - (debit.held_minor - released);
        match available.checked_sub(minor) {
            Some(left) if left >= 0 || debit.kind.may_go_negative() => {}
            Some(_) => return Err(Rejection::InsufficientFunds(record.from.clone())),
            None => return Err(Rejection::AmountOverflow(record.from.clone())),
        }
        if debit.balance_minor.checked_sub(minor).is_none() {
            return Err(Rejection::AmountOverflow(record.from.clone()));
        }
        let Some(credited) = credit.balance_minor.checked_add(minor) else {
            return Err(Rejection::AmountOverflow(record.to.clone()));
        };
        let exceeded =
            |account: &Id, limit| Err(Rejection::LimitExceeded { account: account.clone(), limit });
        let limit = |amount: &Option<Amount>| amount.map(|a| a.minor_units());
        if limit(&debit.limits.max_transfer).is_some_and(|max| minor > max) {
            return exceeded(&record.from, "max_transfer");
        }
        let windows = [
            (&debit.limits.max_daily_outflow, DAY_MS, "daily_outflow"),
            (&debit.limits.max_monthly_outflow, MONTH_MS, "monthly_outflow"),
        ];
        for (max, window_ms, name) in windows {
            if let Some(max) = limit(max)
                && debit.outflow_within(window_ms, now_ms).saturating_add(minor) > max
            {
                return exceeded(&record.from, name);
            }
        }
        if limit(&credit.limits.max_balance).is_some_and(|max| credited > max) {
            return exceeded(&record.to, "max_balance");
        }
        Ok(())
    }

    fn check_limits(&self, account: &Id, limits: &Limits) -> Result<(), Rejection> {
        let state = self.live_account(account)?;
        if state.closed {
            return Err(Rejection::AccountClosed(account.clone()));
        }
        for amount in limits.amounts().into_iter().flatten() {
            if amount.currency() != state.currency {
                return Err(Rejection::CurrencyMismatch {
                    account: account.clone(),
                    expected: state.currency,
                    got: amount.currency(),
                });
            }
            if amount.is_negative() {
                return Err(Rejection::NegativeLimit);
            }
        }
        Ok(())
    }

    fn account_mut(&mut self, id: &Id) -> Result<&mut Account, Inconsistency> {
        self.accounts.get_mut(id).ok_or_else(|| Inconsistency(format!("unknown account {id}")))
    }

    /// The two legs of a double entry: one debit, one credit, the same amount. Checked first.
    /// The debit is remembered for the outflow limits.
    fn move_money(
        &mut self,
        from: &Id,
        to: &Id,
        minor: i64,
        at_ms: u64,
    ) -> Result<(), Inconsistency> {
        let debit = self.account_mut(from)?;
        debit.balance_minor -= minor;
        while debit.outflows.front().is_some_and(|(at, _)| at + MONTH_MS <= at_ms) {
            debit.outflows.pop_front();
        }
        debit.outflows.push_back((at_ms, minor));
        self.account_mut(to)?.balance_minor += minor;
        Ok(())
    }

    fn claim_id(&mut self, id: &Id, used: Used) -> Result<(), Inconsistency> {
        if self.used.contains_key(id) {
            return Err(Inconsistency(format!("transfer id {id} used twice")));
        }
        self.used.insert(id.clone(), used);
        Ok(())
    }

    /// The transfer that undoes `original`, if it may still be reversed.
    fn reversal_of(&self, original: &Id, actor: Actor) -> Result<TransferRecord, Rejection> {
        let posted =
            self.transfer(original).ok_or_else(|| Rejection::TransferNotFound(original.clone()))?;
        if self.reversed.contains(original) {
            return Err(Rejection::AlreadyReversed(original.clone()));
        }
        Ok(TransferRecord {
            from: posted.to.clone(),
            to: posted.from.clone(),
            amount: posted.amount,
            programme: posted.programme.clone(),
            actor,
            reference: Some(format!("reversal of {original}")),
        })
    }

    /// Whether a posted transfer has been reversed.
    pub fn is_reversed(&self, id: &Id) -> bool {
        self.reversed.contains(id)
    }

    fn open_pending(&self, id: &Id) -> Result<&Pending, Rejection> {
        let pending =
            self.pendings.get(id).ok_or_else(|| Rejection::PendingNotFound(id.clone()))?;
        if pending.state != PendingState::Open {
            return Err(Rejection::PendingNotOpen(id.clone()));
        }
        Ok(pending)
    }

    /// Ends a pending transfer: releases its hold and records how it ended.
    fn finish_pending(
        &mut self,
        id: &Id,
        state: PendingState,
    ) -> Result<TransferRecord, Inconsistency> {
        let pending = self.open_pending(id)?.clone();
        self.account_mut(&pending.record.from)?.held_minor -= pending.record.amount.minor_units();
        if let Some(entry) = self.pendings.get_mut(id) {
            entry.state = state;
        }
        Ok(pending.record)
    }

    /// Applies one event. Checks everything a replayed, untrusted log could get wrong, with the
    /// same checks `decide` makes.
    ///
    /// # Errors
    /// [`Inconsistency`] when the event cannot follow the current state.
    pub fn apply(&mut self, event: &Event) -> Result<(), Inconsistency> {
        match event {
            Event::AccountOpened { account, kind, currency, owner, .. } => {
                if self.accounts.contains_key(account) {
                    return Err(Inconsistency(format!("account {account} opened twice")));
                }
                let opened = Account {
                    id: account.clone(),
                    kind: *kind,
                    currency: *currency,
                    owner: owner.clone(),
                    balance_minor: 0,
                    held_minor: 0,
                    frozen: false,
                    closed: false,
                    limits: Limits::default(),
                    outflows: VecDeque::new(),
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
                at_ms,
            } => {
                let record = TransferRecord::of(from, to, amount, programme, *actor, reference);
                self.check_movement(&record, 0, *at_ms)?;
                self.claim_id(transfer, Used::Transfer(record))?;
                self.move_money(from, to, amount.minor_units(), *at_ms)?;
            }
            Event::TransferPending {
                transfer,
                from,
                to,
                amount,
                programme,
                actor,
                reference,
                expires_at_ms,
                at_ms,
            } => {
                let record = TransferRecord::of(from, to, amount, programme, *actor, reference);
                self.check_movement(&record, 0, *at_ms)?;
                self.claim_id(transfer, Used::Pending)?;
                self.account_mut(from)?.held_minor += amount.minor_units();
                let pending =
                    Pending { record, expires_at_ms: *expires_at_ms, state: PendingState::Open };
                self.pendings.insert(transfer.clone(), pending);
            }
            Event::PendingPosted { transfer, pending, amount, at_ms } => {
                let held = self.open_pending(pending)?.record.clone();
                if amount.checked_cmp(&held.amount).map_err(|e| Inconsistency(e.to_string()))?
                    == std::cmp::Ordering::Greater
                {
                    return Err(Rejection::ExceedsPending(held.amount).into());
                }
                let posted = TransferRecord { amount: *amount, ..held.clone() };
                self.check_movement(&posted, held.amount.minor_units(), *at_ms)?;
                self.claim_id(
                    transfer,
                    Used::Posted { pending: pending.clone(), amount: *amount },
                )?;
                self.finish_pending(pending, PendingState::Posted)?;
                self.move_money(&held.from, &held.to, amount.minor_units(), *at_ms)?;
            }
            Event::PendingVoided { transfer, pending, .. } => {
                self.open_pending(pending)?;
                self.claim_id(transfer, Used::Voided { pending: pending.clone() })?;
                self.finish_pending(pending, PendingState::Voided)?;
            }
            Event::PendingExpired { pending, .. } => {
                self.finish_pending(pending, PendingState::Expired)?;
            }
            Event::TransferReversed { transfer, original, actor, at_ms } => {
                let back = self.reversal_of(original, *actor)?;
                self.check_movement(&back, 0, *at_ms)?;
                self.claim_id(transfer, Used::Reversed { original: original.clone() })?;
                self.move_money(&back.from, &back.to, back.amount.minor_units(), *at_ms)?;
                self.reversed.insert(original.clone());
            }
            Event::LimitsSet { account, limits, .. } => {
                self.check_limits(account, limits)?;
                self.account_mut(account)?.limits = limits.clone();
            }
            Event::AccountFrozen { account, .. }
            | Event::AccountUnfrozen { account, .. }
            | Event::AccountClosed { account, .. } => {
                let state = self.account_mut(account)?;
                if state.closed {
                    return Err(Inconsistency(format!("account {account} is closed")));
                }
                match event {
                    Event::AccountFrozen { .. } => state.frozen = true,
                    Event::AccountUnfrozen { .. } => state.frozen = false,
                    _ => {
                        if state.balance_minor != 0 || state.held_minor != 0 {
                            return Err(Rejection::BalanceNotZero(account.clone()).into());
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

/// Answers a retry: `Ok(true)` when `id` was used for exactly `used` before (nothing to do),
/// `Ok(false)` when it is new, a rejection when it was used for something else.
fn retried(ledger: &Ledger, id: &Id, used: &Used) -> Result<bool, Rejection> {
    match ledger.used.get(id) {
        None => Ok(false),
        Some(existing) if existing == used => Ok(true),
        Some(_) => Err(Rejection::IdempotencyKeyReused(id.clone())),
    }
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
            let record = TransferRecord::of(from, to, amount, programme, *actor, reference);
            if retried(ledger, id, &Used::Transfer(record.clone()))? {
                return Ok(Vec::new());
            }
            ledger.check_movement(&record, 0, at_ms)?;
            Ok(vec![record.posted(id, at_ms)])
        }
        Command::Reserve { id, from, to, amount, programme, actor, reference, timeout_ms } => {
            let record = TransferRecord::of(from, to, amount, programme, *actor, reference);
            // A retry is the same hold whatever its time, so compare the hold as first decided.
            match ledger.used.get(id) {
                None => {}
                Some(Used::Pending)
                    if ledger.pendings.get(id).is_some_and(|p| p.record == record) =>
                {
                    return Ok(Vec::new());
                }
                Some(_) => return Err(Rejection::IdempotencyKeyReused(id.clone())),
            }
            let expires_at_ms = at_ms.saturating_add(*timeout_ms);
            ledger.check_movement(&record, 0, at_ms)?;
            Ok(vec![record.pending(id, expires_at_ms, at_ms)])
        }
        Command::PostPending { id, pending, amount } => {
            let known = ledger.pendings.get(pending);
            let posted_amount = match (amount, known) {
                (Some(amount), _) => *amount,
                (None, Some(known)) => known.record.amount,
                (None, None) => return Err(Rejection::PendingNotFound(pending.clone())),
            };
            let used = Used::Posted { pending: pending.clone(), amount: posted_amount };
            if retried(ledger, id, &used)? {
                return Ok(Vec::new());
            }
            let held = ledger.open_pending(pending)?;
            if at_ms >= held.expires_at_ms {
                return Err(Rejection::PendingExpired(pending.clone()));
            }
            if posted_amount.currency() == held.record.amount.currency()
                && posted_amount.minor_units() > held.record.amount.minor_units()
            {
                return Err(Rejection::ExceedsPending(held.record.amount));
            }
            let posted = TransferRecord { amount: posted_amount, ..held.record.clone() };
            ledger.check_movement(&posted, held.record.amount.minor_units(), at_ms)?;
            Ok(vec![Event::PendingPosted {
                transfer: id.clone(),
                pending: pending.clone(),
                amount: posted_amount,
                at_ms,
            }])
        }
        Command::VoidPending { id, pending } => {
            if retried(ledger, id, &Used::Voided { pending: pending.clone() })? {
                return Ok(Vec::new());
            }
            ledger.open_pending(pending)?;
            Ok(vec![Event::PendingVoided { transfer: id.clone(), pending: pending.clone(), at_ms }])
        }
        Command::Reverse { id, original, actor } => {
            if retried(ledger, id, &Used::Reversed { original: original.clone() })? {
                return Ok(Vec::new());
            }
            let back = ledger.reversal_of(original, *actor)?;
            ledger.check_movement(&back, 0, at_ms)?;
            Ok(vec![Event::TransferReversed {
                transfer: id.clone(),
                original: original.clone(),
                actor: *actor,
                at_ms,
            }])
        }
        Command::SetLimits { account, limits } => {
            ledger.check_limits(account, limits)?;
            if ledger.live_account(account)?.limits == *limits {
                return Ok(Vec::new());
            }
            Ok(vec![Event::LimitsSet { account: account.clone(), limits: limits.clone(), at_ms }])
        }
        Command::ExpireDue => Ok(ledger
            .pendings
            .iter()
            .filter(|(_, p)| p.state == PendingState::Open && p.expires_at_ms <= at_ms)
            .map(|(id, _)| Event::PendingExpired { pending: id.clone(), at_ms })
            .collect()),
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
            if account.balance_minor != 0 || account.held_minor != 0 {
                return Err(Rejection::BalanceNotZero(id.clone()));
            }
            Ok(vec![Event::AccountClosed { account: id.clone(), at_ms }])
        }
    }
}
