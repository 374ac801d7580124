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
//! let context = Context::at(0);
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

pub mod access;
mod event;
mod sharded;
mod state;
mod table;
pub mod voucher;

pub use access::{Grant, Role};
pub use event::{ENTRY_VERSION, EntryError, Event};
pub use state::{
    Account, AccountKind, Beneficiary, GroupRejection, IdArchive, IdUse, Inconsistency, Pending,
    PendingState, Programme, ProgrammeTotals, State, TransferRecord, UseKind, replay,
};
pub use table::{AccountNumber, Paged};
pub use voucher::code::{CodeError, VoucherCode};
pub use voucher::{
    Authorisation, CloseReason, Item, ItemBalance, ItemQuantity, ProgrammeVendor, Redemption,
    RedemptionState, Settlement, Vendors, VoidReason, Voucher, VoucherTerms, VoucherTotals,
};

use std::collections::{BTreeMap, BTreeSet};

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The time of the batch, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The principal the command comes from (see [`access`]); `None` for the store's own
    /// holder. The events it causes name it in their entries.
    pub by: Option<Id>,
}

impl Context {
    /// The store's own holder at `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        Self { now_ms, by: None }
    }
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
    /// Set (or change) a voucher programme's terms. Its escrow account never changes. A
    /// voucher's value, items and expiry are fixed when it is issued; the other terms
    /// (vendors, single-use, partial, PIN attempts, lock, the start of validity) apply to all
    /// the programme's vouchers from this entry on.
    SetVoucherTerms {
        /// The programme (of a voucher kind).
        programme: Id,
        /// Its terms.
        terms: VoucherTerms,
    },
    /// Set (replace) the categories a vendor belongs to; none removes them.
    SetVendorCategories {
        /// The vendor's account.
        vendor: Id,
        /// At most [`voucher::CATEGORIES_MAX`] categories.
        categories: BTreeSet<Id>,
    },
    /// Enrol a vendor in a voucher programme (or again, after a withdrawal), with its agreed
    /// prices per item for a commodity programme (none for a value programme).
    EnrolVendor {
        /// The programme.
        programme: Id,
        /// The vendor's account.
        vendor: Id,
        /// The price per unit of each item it sells: at most the item's `unit_value`.
        prices: BTreeMap<Id, Amount>,
    },
    /// Withdraw a vendor from a programme: it may redeem no more of its vouchers, whatever its
    /// category. What it redeemed is still settled.
    WithdrawVendor {
        /// The programme.
        programme: Id,
        /// The vendor's account.
        vendor: Id,
    },
    /// Issue a voucher to a beneficiary: its value moves from the programme's funding account
    /// to escrow.
    IssueVoucher {
        /// The voucher's id (random, from the engine; a retry with the same id is answered).
        id: Id,
        /// The programme.
        programme: Id,
        /// The beneficiary's pseudonymous id.
        beneficiary: Id,
        /// Value vouchers: the value. Commodity vouchers: `None`.
        value: Option<Amount>,
        /// Commodity vouchers: the items, or none for the programme's standard basket.
        items: Vec<ItemQuantity>,
        /// An expiry before the programme's end, if wanted.
        expires_at_ms: Option<u64>,
        /// Who asked.
        actor: Actor,
    },
    /// A vendor asks to redeem a voucher: the amount (value vouchers) or items (commodity
    /// vouchers) are held until the beneficiary authorises, refuses, or time runs out.
    RequestRedemption {
        /// The redemption's id (a retry with the same id is answered).
        id: Id,
        /// The voucher.
        voucher: Id,
        /// The vendor's account.
        vendor: Id,
        /// Value vouchers: the amount; `None` for all that remains.
        amount: Option<Amount>,
        /// Commodity vouchers: the items; none for all that remain.
        items: Vec<ItemQuantity>,
        /// How long the beneficiary has to authorise, in ms.
        timeout_ms: u64,
        /// Who asked.
        actor: Actor,
    },
    /// The beneficiary authorised a redemption (the engine checked the PIN or confirmation):
    /// the vendor is paid.
    AuthoriseRedemption {
        /// The redemption.
        redemption: Id,
        /// How.
        by: Authorisation,
    },
    /// A wrong PIN was given for a redemption; the last allowed one locks the voucher and
    /// releases the redemption.
    RecordPinFailure {
        /// The redemption.
        redemption: Id,
    },
    /// The beneficiary refused a redemption (or the vendor withdrew it): the hold is released.
    RefuseRedemption {
        /// The redemption.
        redemption: Id,
    },
    /// Revoke a voucher: open redemptions are released and its value returns to the programme.
    RevokeVoucher {
        /// The voucher.
        voucher: Id,
    },
    /// Pay a vendor what it redeemed in a programme since its last settlement, into a
    /// settlement account.
    Settle {
        /// The settlement's id (a retry with the same id is answered).
        id: Id,
        /// The programme.
        programme: Id,
        /// The vendor's account.
        vendor: Id,
        /// The settlement (payout) account.
        to: Id,
        /// Who asked.
        actor: Actor,
    },
    /// Grant a principal (an API token, say) a role; see [`access`].
    GrantAccess {
        /// The principal's id (never a secret: the token's public id).
        principal: Id,
        /// Its role.
        role: Role,
        /// For a vendor principal: its vendor account.
        vendor: Option<Id>,
    },
    /// Revoke a principal: it may cause no more entries.
    RevokeAccess {
        /// The principal.
        principal: Id,
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
            | Self::Reverse { id, .. }
            | Self::IssueVoucher { id, .. }
            | Self::RequestRedemption { id, .. }
            | Self::Settle { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether the command may be part of a linked group: the ones that set things up.
    /// Expiry and the voucher steps that move money are applied one by one.
    pub fn is_linkable(&self) -> bool {
        !matches!(
            self,
            Self::ExpireDue { .. }
                | Self::IssueVoucher { .. }
                | Self::RequestRedemption { .. }
                | Self::AuthoriseRedemption { .. }
                | Self::RecordPinFailure { .. }
                | Self::RefuseRedemption { .. }
                | Self::RevokeVoucher { .. }
                | Self::Settle { .. }
                | Self::GrantAccess { .. }
                | Self::RevokeAccess { .. }
        )
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
    /// Generic transfers never touch an escrow account: only voucher steps move its money.
    #[error("account {0} is an escrow account; only voucher operations move its money")]
    EscrowAccount(Id),
    /// A redemption's hold is ended by authorisation, refusal or timeout, not as a plain hold.
    #[error("{0} is a voucher redemption; it is authorised or refused, not posted or voided")]
    IsARedemption(Id),
    /// A cash programme has no vouchers.
    #[error("programme {0} is not a voucher programme")]
    NotAVoucherProgramme(Id),
    /// A voucher programme without terms yet.
    #[error("programme {0} has no voucher terms yet")]
    VoucherTermsMissing(Id),
    /// Voucher terms that do not hold together.
    #[error("invalid voucher terms: {0}")]
    InvalidVoucherTerms(&'static str),
    /// A voucher request of the wrong shape.
    #[error("invalid voucher request: {0}")]
    InvalidVoucherRequest(&'static str),
    /// Not an open escrow account of the programme's currency serving no other programme.
    #[error("account {0} cannot be the programme's escrow account")]
    NotAnEscrowAccount(Id),
    /// Not a vendor account.
    #[error("account {0} is not a vendor")]
    NotAVendor(Id),
    /// Not a settlement account.
    #[error("account {0} is not a settlement account")]
    NotASettlementAccount(Id),
    /// A vendor price above what the voucher reserves for the item.
    #[error("the price of {0} is above its value in the voucher")]
    PriceAboveValue(Id),
    /// No voucher programme accepts new vouchers after its end.
    #[error("programme {0} has ended")]
    ProgrammeEnded(Id),
    /// No voucher with this id.
    #[error("voucher {0} not found")]
    VoucherNotFound(Id),
    /// The voucher expired.
    #[error("voucher {0} has expired")]
    VoucherExpired(Id),
    /// The voucher was revoked.
    #[error("voucher {0} was revoked")]
    VoucherRevoked(Id),
    /// Too many wrong PINs locked the voucher for a while.
    #[error("voucher {voucher} is locked after wrong PINs")]
    VoucherLocked {
        /// The voucher.
        voucher: Id,
        /// Until when, in ms since the Unix epoch.
        until_ms: u64,
    },
    /// Nothing is left on the voucher.
    #[error("voucher {0} is used up")]
    VoucherExhausted(Id),
    /// The voucher's programme has not started.
    #[error("voucher {0} is not valid yet")]
    VoucherNotYetValid(Id),
    /// The vendor may not redeem this programme's vouchers.
    #[error("vendor {0} may not redeem this voucher")]
    VendorNotEligible(Id),
    /// More than the voucher has available.
    #[error("the voucher has only {0} available")]
    AmountExceedsVoucher(Amount),
    /// The programme's vouchers are redeemed whole.
    #[error("this voucher must be redeemed for all that remains")]
    PartialRedemptionNotAllowed,
    /// An item the voucher does not give.
    #[error("item {0} is not on this voucher")]
    ItemUnknown(Id),
    /// More of an item than the voucher has left.
    #[error("the voucher has not that much {0} left")]
    ItemExceedsVoucher(Id),
    /// An item the vendor has no agreed price for.
    #[error("the vendor has no agreed price for {0}")]
    ItemNotPriced(Id),
    /// Another redemption of the voucher awaits authorisation.
    #[error("a redemption of voucher {0} is awaiting authorisation")]
    RedemptionPending(Id),
    /// No redemption with this id.
    #[error("redemption {0} not found")]
    RedemptionNotFound(Id),
    /// The redemption was authorised, released or timed out already.
    #[error("redemption {0} is no longer awaiting authorisation")]
    RedemptionNotPending(Id),
    /// The vendor has nothing redeemed and unsettled in the programme.
    #[error("vendor {0} has nothing to settle")]
    NothingToSettle(Id),
    /// No principal with this id, or it was revoked.
    #[error("principal {0} is not granted (unknown or revoked)")]
    UnknownPrincipal(Id),
    /// The principal's role does not cover what the command would do.
    #[error("principal {principal} ({}) may not cause {event}", role.as_str())]
    NotPermitted {
        /// The principal.
        principal: Id,
        /// Its role.
        role: Role,
        /// The entry type it would have caused.
        event: &'static str,
    },
    /// A principal with this id was granted already, with another role.
    #[error("principal {0} exists already")]
    PrincipalExists(Id),
    /// A grant that does not fit its role.
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
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
            Self::EscrowAccount(_) => "escrow_account",
            Self::IsARedemption(_) => "is_a_redemption",
            Self::NotAVoucherProgramme(_) => "not_a_voucher_programme",
            Self::VoucherTermsMissing(_) => "voucher_terms_missing",
            Self::InvalidVoucherTerms(_) => "invalid_voucher_terms",
            Self::InvalidVoucherRequest(_) => "invalid_voucher_request",
            Self::NotAnEscrowAccount(_) => "not_an_escrow_account",
            Self::NotAVendor(_) => "not_a_vendor",
            Self::NotASettlementAccount(_) => "not_a_settlement_account",
            Self::PriceAboveValue(_) => "price_above_value",
            Self::ProgrammeEnded(_) => "programme_ended",
            Self::VoucherNotFound(_) => "voucher_not_found",
            Self::VoucherExpired(_) => "voucher_expired",
            Self::VoucherRevoked(_) => "voucher_revoked",
            Self::VoucherLocked { .. } => "voucher_locked",
            Self::VoucherExhausted(_) => "voucher_exhausted",
            Self::VoucherNotYetValid(_) => "voucher_not_yet_valid",
            Self::VendorNotEligible(_) => "vendor_not_eligible",
            Self::AmountExceedsVoucher(_) => "amount_exceeds_voucher",
            Self::PartialRedemptionNotAllowed => "partial_redemption_not_allowed",
            Self::ItemUnknown(_) => "item_unknown",
            Self::ItemExceedsVoucher(_) => "item_exceeds_voucher",
            Self::ItemNotPriced(_) => "item_not_priced",
            Self::RedemptionPending(_) => "redemption_pending",
            Self::RedemptionNotFound(_) => "redemption_not_found",
            Self::RedemptionNotPending(_) => "redemption_not_pending",
            Self::NothingToSettle(_) => "nothing_to_settle",
            Self::UnknownPrincipal(_) => "unknown_principal",
            Self::NotPermitted { .. } => "not_permitted",
            Self::PrincipalExists(_) => "principal_exists",
            Self::InvalidGrant(_) => "invalid_grant",
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
