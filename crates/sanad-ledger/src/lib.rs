//! # sanad-ledger: the pure double-entry core
//!
//! Accounts and transfers as a state machine with no I/O: [`decide`] checks a [`Command`]
//! against the current [`State`] and returns the [`Event`]s it causes (or a typed
//! [`Rejection`], changing nothing); [`State::apply`] applies events; [`replay`] rebuilds the
//! state from the log's entries with the same code. Every event has one canonical byte encoding
//! ([`Event::to_entry`]), RFC 8785 canonical JSON, which is what the signed log stores and what
//! an auditor in any language replays (see `docs/design/log-entries.md`).
//!
//! Money is never created or destroyed: every transfer debits one account and credits another
//! of the same currency, so the sum of all balances per currency is always zero; issuance is a
//! transfer out of an `external` account, the only kind allowed to go negative.
//!
//! What it covers: accounts (open, freeze, unfreeze, close); programmes around their funding
//! accounts; single-phase transfers and two-phase transfers (reserve, then post all or part,
//! void, or expire as a logged event); reversals; limits per account or by tier (balance,
//! single transfer, 24-hour and 30-day outflow); linked groups that apply all or nothing
//! ([`State::execute_linked`]); and beneficiaries as pseudonymous ids with commitments, whose
//! erasure is logged. Every transfer id is idempotent.
//!
//! ```
//! use sanad_ledger::{AccountKind, Actor, Command, Context, ProgrammeKind, State, decide};
//! use sanad_money::{Amount, Currency, Id};
//!
//! let jod = Currency::parse("JOD").unwrap();
//! let id = |s: &str| Id::parse(s).unwrap();
//! let mut ledger = State::default();
//! let context = Context { now_ms: 0 };
//! for (account, kind) in [("donor", AccountKind::External), ("prog-1", AccountKind::ProgrammeFunding)] {
//!     let open = Command::OpenAccount { id: id(account), kind, currency: jod, owner: id("agency") };
//!     for event in decide(&ledger, &open, &context).unwrap() {
//!         ledger.apply(&event).unwrap();
//!     }
//! }
//! let create = Command::CreateProgramme {
//!     id: id("prog-1"),
//!     name: "Winter cash 2026".into(),
//!     kind: ProgrammeKind::Cash,
//!     funding: id("prog-1"),
//! };
//! ledger.execute(&create, &context).unwrap();
//! let fund = Command::Transfer {
//!     id: id("t-1"),
//!     from: id("donor"),
//!     to: id("prog-1"),
//!     amount: Amount::parse("1000", jod).unwrap(),
//!     programme: id("prog-1"),
//!     actor: Actor::Operator,
//!     reference: None,
//! };
//! for event in decide(&ledger, &fund, &context).unwrap() {
//!     ledger.apply(&event).unwrap();
//! }
//! assert_eq!(ledger.account(&id("prog-1")).unwrap().balance().to_string(), "1000.000 JOD");
//! ```

mod event;
mod sharded;
mod state;
mod table;
pub mod voucher;

pub use event::{ENTRY_VERSION, EntryError, Event};
pub use state::{
    Account, AccountKind, Beneficiary, GroupRejection, IdArchive, IdUse, Inconsistency, Pending,
    PendingState, Programme, ProgrammeTotals, State, TransferRecord, UseKind, replay,
};
pub use table::{AccountNumber, Paged};
pub use voucher::code::{CodeError, VoucherCode};

use sanad_money::{Amount, Currency, Id};
use serde::{Deserialize, Serialize};

/// Who asked for a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// An agency operator (HTTP, CLI).
    Operator,
    /// A vendor (SMS, point of sale).
    Vendor,
    /// A beneficiary (SMS, USSD).
    Beneficiary,
    /// The system itself (expiries, settlements).
    System,
}

/// What a programme gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgrammeKind {
    /// Cash to wallets.
    Cash,
    /// Vouchers worth an amount of money.
    ValueVoucher,
    /// Vouchers for quantities of goods.
    CommodityVoucher,
}

/// Longest programme name or transfer reference, in characters: they travel in log entries,
/// CSV statements and SMS replies.
pub const TEXT_LENGTH_MAX: usize = 200;

impl Actor {
    /// The snake_case name, as in log entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Vendor => "vendor",
            Self::Beneficiary => "beneficiary",
            Self::System => "system",
        }
    }
}

/// Limits on one account's movements. A limit left out does not apply. Amounts are in the
/// account's currency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The highest balance the account may reach.
    #[serde(default)]
    pub max_balance: Option<Amount>,
    /// The largest single transfer out of the account.
    #[serde(default)]
    pub max_transfer: Option<Amount>,
    /// The most that may leave the account in any 24 hours.
    #[serde(default)]
    pub max_daily_outflow: Option<Amount>,
    /// The most that may leave the account in any 30 days.
    #[serde(default)]
    pub max_monthly_outflow: Option<Amount>,
}

impl Limits {
    /// These limits, with each one left out taken from `fallback`.
    fn or(&self, fallback: &Self) -> Self {
        Self {
            max_balance: self.max_balance.or(fallback.max_balance),
            max_transfer: self.max_transfer.or(fallback.max_transfer),
            max_daily_outflow: self.max_daily_outflow.or(fallback.max_daily_outflow),
            max_monthly_outflow: self.max_monthly_outflow.or(fallback.max_monthly_outflow),
        }
    }

    /// Whether an outflow window applies, so that outflows must be remembered.
    fn limits_outflow(&self) -> bool {
        self.max_daily_outflow.is_some() || self.max_monthly_outflow.is_some()
    }

    fn amounts(&self) -> [Option<&Amount>; 4] {
        [
            self.max_balance.as_ref(),
            self.max_transfer.as_ref(),
            self.max_daily_outflow.as_ref(),
            self.max_monthly_outflow.as_ref(),
        ]
    }
}

/// What the engine supplies that the core must not read itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The time of the batch, in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// A request to change the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Open an account.
    OpenAccount {
        /// The account's id.
        id: Id,
        /// Its kind.
        kind: AccountKind,
        /// Its one currency.
        currency: Currency,
        /// A pseudonymous owner reference (never a name or phone number).
        owner: Id,
    },
    /// Move `amount` from one account to another.
    Transfer {
        /// Client-chosen id; retrying with the same id and content is answered, not applied.
        id: Id,
        /// The debited account.
        from: Id,
        /// The credited account.
        to: Id,
        /// A positive amount in both accounts' currency.
        amount: Amount,
        /// The programme the money belongs to.
        programme: Id,
        /// Who asked.
        actor: Actor,
        /// Optional free reference (no personal data).
        reference: Option<String>,
    },
    /// Reserve `amount` for a later transfer: the debited account's available balance drops
    /// at once, its posted balance only when the reservation is posted.
    Reserve {
        /// Client-chosen id of the pending transfer.
        id: Id,
        /// The account whose funds are held.
        from: Id,
        /// The account that will be credited.
        to: Id,
        /// A positive amount.
        amount: Amount,
        /// The programme.
        programme: Id,
        /// Who asked.
        actor: Actor,
        /// Optional free reference (no personal data).
        reference: Option<String>,
        /// How long the hold lasts, in milliseconds from the batch's time.
        timeout_ms: u64,
    },
    /// Post a pending transfer, for its whole amount or a smaller one; the rest is released.
    PostPending {
        /// Client-chosen id of this operation (retries are answered).
        id: Id,
        /// The pending transfer.
        pending: Id,
        /// The amount to post; `None` posts the whole hold.
        amount: Option<Amount>,
    },
    /// Release a pending transfer without moving money.
    VoidPending {
        /// Client-chosen id of this operation.
        id: Id,
        /// The pending transfer.
        pending: Id,
    },
    /// Release pending transfers whose time is up, at most `at_most` of them, earliest first
    /// (issued by the engine with each batch, so expiry is a logged event and replays
    /// identically; the bound keeps one batch within the log's batch limits).
    ExpireDue {
        /// The most holds to release in one go.
        at_most: usize,
    },
    /// Undo a posted transfer with a new transfer the other way; the original is never changed
    /// and can be reversed once.
    Reverse {
        /// Client-chosen id of the reversal.
        id: Id,
        /// The posted transfer to undo.
        original: Id,
        /// Who asked.
        actor: Actor,
        /// The original's content, read from its log entry (the engine fills it in; the state
        /// keeps only a fingerprint, which it must match). `None` is refused as not found.
        original_transfer: Option<TransferRecord>,
    },
    /// Set (replace) an account's limits.
    SetLimits {
        /// The account.
        account: Id,
        /// Its new limits.
        limits: Limits,
    },
    /// Stop all movements out of and into an account.
    FreezeAccount {
        /// The account.
        id: Id,
    },
    /// Lift a freeze.
    UnfreezeAccount {
        /// The account.
        id: Id,
    },
    /// Close an account for good; its balance must be zero.
    CloseAccount {
        /// The account.
        id: Id,
    },
    /// Create a programme around an open funding account of kind `programme_funding` (the
    /// programme's currency is the account's). Transfers name a programme that exists.
    CreateProgramme {
        /// The programme's id.
        id: Id,
        /// Its display name: 1 to 200 characters, no control characters, no personal data.
        name: String,
        /// Cash or vouchers.
        kind: ProgrammeKind,
        /// Its funding account.
        funding: Id,
    },
    /// Define (or redefine) a tier: limits that apply to every account in it, field by field,
    /// where the account has no limit of its own.
    DefineTier {
        /// The tier's id.
        id: Id,
        /// The currency of its amounts.
        currency: Currency,
        /// Its limits.
        limits: Limits,
    },
    /// Put an account in a tier of its currency, or (with `None`) take it out.
    SetTier {
        /// The account.
        account: Id,
        /// The tier.
        tier: Option<Id>,
    },
    /// Register a beneficiary by pseudonymous id and commitment (see [`Event`]).
    RegisterBeneficiary {
        /// The pseudonymous id.
        id: Id,
        /// 64 lower-case hex digits.
        commitment: String,
    },
    /// Record that a beneficiary's personal data were erased.
    EraseBeneficiary {
        /// The pseudonymous id.
        id: Id,
    },
}

impl Command {
    /// The transfer id the command claims in the idempotency index (a retry with the same id
    /// and content is answered with the original), if it is a command that claims one.
    pub fn claimed_id(&self) -> Option<&Id> {
        match self {
            Self::Transfer { id, .. }
            | Self::Reserve { id, .. }
            | Self::PostPending { id, .. }
            | Self::VoidPending { id, .. }
            | Self::Reverse { id, .. } => Some(id),
            _ => None,
        }
    }

    /// A reversal without its original's content, filled in from `earlier` when the original
    /// transfer is among them: events decided in the same batch or group, not in the log yet
    /// (where the engine otherwise reads it). `None` for anything else.
    pub fn with_original_among(&self, earlier: &[Event]) -> Option<Self> {
        let Self::Reverse { id, original, actor, original_transfer: None } = self else {
            return None;
        };
        let found = earlier.iter().rev().find_map(|event| {
            event
                .posted_transfer()
                .and_then(|(transfer, record)| (transfer == original).then_some(record))
        })?;
        Some(Self::Reverse {
            id: id.clone(),
            original: original.clone(),
            actor: *actor,
            original_transfer: Some(found),
        })
    }
}

/// Why a command was refused. Nothing changed. Codes are stable and in precedence order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// An account with this id exists already.
    #[error("account {0} already exists")]
    AccountExists(Id),
    /// No such account.
    #[error("account {0} not found")]
    AccountNotFound(Id),
    /// The same transfer id was used before with different content.
    #[error("transfer id {0} was already used for a different transfer")]
    IdempotencyKeyReused(Id),
    /// A transfer from an account to itself.
    #[error("a transfer needs two different accounts")]
    SameAccount,
    /// Zero or negative amount.
    #[error("amount must be positive")]
    AmountMustBePositive,
    /// The amount's currency differs from an account's.
    #[error("currency mismatch: account {account} holds {expected}, the amount is in {got}")]
    CurrencyMismatch {
        /// The account.
        account: Id,
        /// Its currency.
        expected: Currency,
        /// The amount's currency.
        got: Currency,
    },
    /// The account is frozen.
    #[error("account {0} is frozen")]
    AccountFrozen(Id),
    /// The account is closed.
    #[error("account {0} is closed")]
    AccountClosed(Id),
    /// The debit would take the account below zero.
    #[error("insufficient funds in account {0}")]
    InsufficientFunds(Id),
    /// The credit would overflow the largest representable amount.
    #[error("amount overflow in account {0}")]
    AmountOverflow(Id),
    /// Closing an account that still holds money or holds.
    #[error("account {0} still has a balance or pending holds")]
    BalanceNotZero(Id),
    /// No such pending transfer.
    #[error("pending transfer {0} not found")]
    PendingNotFound(Id),
    /// The pending transfer was already posted, voided or expired.
    #[error("pending transfer {0} is no longer pending")]
    PendingNotOpen(Id),
    /// The pending transfer's time is up.
    #[error("pending transfer {0} has expired")]
    PendingExpired(Id),
    /// A movement would break one of an account's limits; nothing was applied.
    #[error("account {account} would exceed its {limit} limit")]
    LimitExceeded {
        /// The account whose limit it is.
        account: Id,
        /// Which limit: `max_transfer`, `daily_outflow`, `monthly_outflow` or `max_balance`.
        limit: &'static str,
    },
    /// A limit that is negative.
    #[error("limits must not be negative")]
    NegativeLimit,
    /// No posted transfer with this id.
    #[error("transfer {0} not found")]
    TransferNotFound(Id),
    /// The transfer was reversed already.
    #[error("transfer {0} was already reversed")]
    AlreadyReversed(Id),
    /// Posting more than was reserved.
    #[error("cannot post more than the {0} reserved")]
    ExceedsPending(Amount),
    /// A programme with this id exists already.
    #[error("programme {0} already exists")]
    ProgrammeExists(Id),
    /// No such programme.
    #[error("programme {0} not found")]
    ProgrammeNotFound(Id),
    /// A programme's funding account must be an open `programme_funding` account that funds
    /// no other programme.
    #[error("account {0} cannot fund a programme")]
    NotAFundingAccount(Id),
    /// No such tier.
    #[error("tier {0} not found")]
    TierNotFound(Id),
    /// A beneficiary with this id exists already.
    #[error("beneficiary {0} already exists")]
    BeneficiaryExists(Id),
    /// No such beneficiary.
    #[error("beneficiary {0} not found")]
    BeneficiaryNotFound(Id),
    /// The beneficiary's personal data were erased already.
    #[error("beneficiary {0} was erased")]
    BeneficiaryErased(Id),
    /// A commitment that is not 64 lower-case hex digits.
    #[error("a commitment is 64 lower-case hex digits")]
    InvalidCommitment,
    /// A name or reference that is empty, too long or holds control characters.
    #[error("{field} must be 1 to 200 characters without control characters")]
    InvalidText {
        /// Which field.
        field: &'static str,
    },
    /// A command that cannot be part of a linked group.
    #[error("this command cannot be part of a linked group")]
    NotLinkable,
}

impl Rejection {
    /// The stable snake_case code shown to users and clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccountExists(_) => "account_exists",
            Self::AccountNotFound(_) => "account_not_found",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::SameAccount => "same_account",
            Self::AmountMustBePositive => "amount_must_be_positive",
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::AccountFrozen(_) => "account_frozen",
            Self::AccountClosed(_) => "account_closed",
            Self::InsufficientFunds(_) => "insufficient_funds",
            Self::AmountOverflow(_) => "amount_overflow",
            Self::BalanceNotZero(_) => "balance_not_zero",
            Self::PendingNotFound(_) => "pending_not_found",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::NegativeLimit => "negative_limit",
            Self::TransferNotFound(_) => "transfer_not_found",
            Self::AlreadyReversed(_) => "already_reversed",
            Self::PendingNotOpen(_) => "pending_not_open",
            Self::PendingExpired(_) => "pending_expired",
            Self::ExceedsPending(_) => "exceeds_pending",
            Self::ProgrammeExists(_) => "programme_exists",
            Self::ProgrammeNotFound(_) => "programme_not_found",
            Self::NotAFundingAccount(_) => "not_a_funding_account",
            Self::TierNotFound(_) => "tier_not_found",
            Self::BeneficiaryExists(_) => "beneficiary_exists",
            Self::BeneficiaryNotFound(_) => "beneficiary_not_found",
            Self::BeneficiaryErased(_) => "beneficiary_erased",
            Self::InvalidCommitment => "invalid_commitment",
            Self::InvalidText { .. } => "invalid_text",
            Self::NotLinkable => "not_linkable",
        }
    }
}

/// Checks `command` against `ledger` and returns the events it causes. An empty list means the
/// command was already applied (an idempotent retry): answer it, append nothing.
///
/// # Errors
/// The [`Rejection`] that says why nothing may change.
pub fn decide(
    ledger: &State,
    command: &Command,
    context: &Context,
) -> Result<Vec<Event>, Rejection> {
    state::decide(ledger, command, context)
}
