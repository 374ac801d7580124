//! The ledger's state, how commands are decided against it, and how events change it.

use std::collections::{BTreeMap, VecDeque};

use sanad_money::{Amount, Currency, Id};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Actor, Command, Context, Event, Limits, ProgrammeKind, Rejection, TEXT_LENGTH_MAX};

// Hash maps keyed by client-chosen ids: foldhash is fast and seeded per process, so crafted
// ids cannot be made to collide (SipHash was a tenth of the time of a transfer).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

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
    /// The value of a voucher programme's outstanding vouchers; only voucher steps move it.
    Escrow,
}

impl AccountKind {
    /// Whether the balance may go below zero.
    pub fn may_go_negative(self) -> bool {
        self == Self::External
    }
}

/// One account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    // Boxed: most accounts have none, and a million accounts should not carry 100 bytes each.
    limits: Option<Box<Limits>>,
    tier: Option<Id>,
    // While an outflow limit applies (the account's own or its tier's): the money that left
    // the account in the last 30 days, as (time in ms, minor units), oldest first. Empty
    // otherwise, so that busy accounts without such limits remember nothing.
    // Boxed: most accounts have no outflow limit, and a million accounts should not carry an
    // empty queue each.
    #[allow(clippy::box_collection, reason = "one pointer instead of an empty queue per account")]
    outflows: Option<Box<VecDeque<(u64, i64)>>>,
}

const NO_LIMITS: Limits = Limits {
    max_balance: None,
    max_transfer: None,
    max_daily_outflow: None,
    max_monthly_outflow: None,
};

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
    /// Its own limits (a tier's fill the ones left out; see [`State::limits_of`]).
    pub fn limits(&self) -> &Limits {
        self.limits.as_deref().unwrap_or(&NO_LIMITS)
    }
    /// Its tier, if any.
    pub fn tier(&self) -> Option<&Id> {
        self.tier.as_ref()
    }

    /// What left the account within `window_ms` before `now_ms`.
    fn outflow_within(&self, window_ms: u64, now_ms: u64) -> i64 {
        self.outflows
            .iter()
            .flat_map(|outflows| outflows.iter())
            .filter(|(at, _)| at + window_ms > now_ms)
            .map(|(_, minor)| minor)
            .sum()
    }
}

/// A transfer's content: what a hold will move, and what a reversal undoes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub reference: Option<String>,
}

impl TransferRecord {
    /// The record of these fields.
    pub fn of(
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// What it will move.
    pub record: TransferRecord,
    /// When it lapses.
    pub expires_at_ms: u64,
    /// Where it stands.
    pub state: PendingState,
}

/// What a client-chosen id is used for, described by its content: the idempotency index keeps
/// only a fingerprint of it (see [`IdUse`]).
pub(crate) enum Used<'a> {
    Transfer(&'a TransferRecord),
    Pending(&'a TransferRecord),
    Posted { pending: &'a Id, amount: &'a Amount },
    Voided { pending: &'a Id },
    Reversed { original: &'a Id },
    // Vouchers, redemptions and settlements keep their full records in the state, which
    // is where retries are told from reuses; the index makes their ids unique among all.
    Voucher { programme: &'a Id, beneficiary: &'a Id },
    Redemption { voucher: &'a Id, vendor: &'a Id },
    Settled { programme: &'a Id, vendor: &'a Id, to: &'a Id },
}

/// What kind of operation an id was used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UseKind {
    /// A single-phase transfer.
    Transfer,
    /// A hold (pending transfer).
    Pending,
    /// The posting of a hold.
    Posted,
    /// The voiding of a hold.
    Voided,
    /// A reversal.
    Reversed,
    /// A voucher's issuance.
    Voucher,
    /// A redemption request.
    Redemption,
    /// A vendor settlement.
    Settled,
}

impl UseKind {
    // Codes are positions here and stored in snapshots and the archive: only append.
    const ALL: [Self; 8] = [
        Self::Transfer,
        Self::Pending,
        Self::Posted,
        Self::Voided,
        Self::Reversed,
        Self::Voucher,
        Self::Redemption,
        Self::Settled,
    ];

    /// A one-byte code for compact storage.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|kind| *kind == self).unwrap_or(0) as u8
    }

    /// The kind with this code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// One entry of the idempotency index: what an id was used for, a fingerprint of the content
/// (to tell a retry from a reuse), and the log index of its entry (where the full content is).
/// Keyed by a fingerprint of the id, an entry costs about 50 bytes, so that tens of millions of
/// transfers fit in memory; the content itself stays in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdUse {
    /// What it was used for.
    pub kind: UseKind,
    /// The log index of its entry.
    pub index: u64,
    /// A fingerprint of the content (64 bits of SHA-256), to tell a retry from a reuse.
    pub content: u64,
}

/// The idempotency index in snapshots: a sequence of plain tuples (key, kind, index, content),
/// which binary formats stream without building an object per entry.
mod used_records {
    use serde::de::{SeqAccess, Visitor};
    use serde::ser::SerializeSeq as _;
    use serde::{Deserializer, Serializer};

    use super::{HashMap, IdUse, UseKind};

    pub(super) fn serialize<S: Serializer>(
        used: &HashMap<u128, IdUse>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(used.len()))?;
        for (key, value) in used {
            seq.serialize_element(&(key, value.kind.code(), value.index, value.content))?;
        }
        seq.end()
    }

    struct Records;

    impl<'de> Visitor<'de> for Records {
        type Value = HashMap<u128, IdUse>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("idempotency records")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut used =
                HashMap::with_capacity_and_hasher(seq.size_hint().unwrap_or(0), Default::default());
            while let Some((key, kind, index, content)) =
                seq.next_element::<(u128, u8, u64, u64)>()?
            {
                let kind = UseKind::from_code(kind)
                    .ok_or_else(|| serde::de::Error::custom("unknown id use"))?;
                used.insert(key, IdUse { kind, index, content });
            }
            Ok(used)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<HashMap<u128, IdUse>, D::Error> {
        deserializer.deserialize_seq(Records)
    }
}

/// The idempotency index's key for an id: the first 128 bits of SHA-256 over it. Collisions
/// are out of reach (2^64 work), so the id itself need not be stored.
fn id_key(id: &Id) -> u128 {
    let digest = Sha256::new().chain_update(b"sanad.id/v1\0").chain_update(id.as_str()).finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(key)
}

impl Used<'_> {
    fn kind(&self) -> UseKind {
        match self {
            Self::Transfer(_) => UseKind::Transfer,
            Self::Pending(_) => UseKind::Pending,
            Self::Posted { .. } => UseKind::Posted,
            Self::Voided { .. } => UseKind::Voided,
            Self::Reversed { .. } => UseKind::Reversed,
            Self::Voucher { .. } => UseKind::Voucher,
            Self::Redemption { .. } => UseKind::Redemption,
            Self::Settled { .. } => UseKind::Settled,
        }
    }

    /// 64 bits of SHA-256 over the content, each field length-prefixed.
    fn fingerprint(&self) -> u64 {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u32).to_be_bytes());
            hash.update(bytes);
        };
        let amount = |amount: &Amount, field: &mut dyn FnMut(&[u8])| {
            field(&amount.minor_units().to_be_bytes());
            field(amount.currency().code().as_bytes());
        };
        match self {
            Self::Transfer(record) | Self::Pending(record) => {
                field(if matches!(self, Self::Transfer(_)) { b"transfer" } else { b"pending" });
                field(record.from.as_str().as_bytes());
                field(record.to.as_str().as_bytes());
                amount(&record.amount, &mut field);
                field(record.programme.as_str().as_bytes());
                field(record.actor.as_str().as_bytes());
                match &record.reference {
                    Some(reference) => field(reference.as_bytes()),
                    None => field(b"\xff"),
                }
            }
            Self::Posted { pending, amount: posted } => {
                field(b"posted");
                field(pending.as_str().as_bytes());
                amount(posted, &mut field);
            }
            Self::Voided { pending } => {
                field(b"voided");
                field(pending.as_str().as_bytes());
            }
            Self::Reversed { original } => {
                field(b"reversed");
                field(original.as_str().as_bytes());
            }
            Self::Voucher { programme, beneficiary } => {
                field(b"voucher");
                field(programme.as_str().as_bytes());
                field(beneficiary.as_str().as_bytes());
            }
            Self::Redemption { voucher, vendor } => {
                field(b"redemption");
                field(voucher.as_str().as_bytes());
                field(vendor.as_str().as_bytes());
            }
            Self::Settled { programme, vendor, to } => {
                field(b"settled");
                field(programme.as_str().as_bytes());
                field(vendor.as_str().as_bytes());
                field(to.as_str().as_bytes());
            }
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    fn matches(&self, existing: &IdUse) -> bool {
        existing.kind == self.kind() && existing.content == self.fingerprint()
    }
}

/// A programme: the agency's money for one purpose, held in its funding account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Programme {
    /// Display name.
    pub name: String,
    /// Cash or vouchers.
    pub kind: ProgrammeKind,
    /// Its currency (the funding account's).
    pub currency: Currency,
    /// Its funding account.
    pub funding: Id,
}

/// Money moved under one programme in one currency, by posted transfers (reversals counted
/// apart, so that the figures only grow and an auditor can recompute them from the log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammeTotals {
    /// Posted transfers (single-phase and posted holds).
    pub transfers: u64,
    /// Their sum, in minor units.
    pub moved_minor: i128,
    /// Reversals.
    pub reversals: u64,
    /// Their sum, in minor units.
    pub reversed_minor: i128,
}

/// A beneficiary as the log knows them: a pseudonym and a commitment, nothing personal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneficiary {
    /// HMAC-SHA-256 of the personal record under the per-person secret, hex.
    pub commitment: String,
    /// Whether the registry record (and the secret) were erased.
    pub erased: bool,
}

/// The whole state: rebuilt by replaying the log, changed only by [`State::apply`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub(crate) accounts: crate::table::AccountTable,
    pub(crate) pendings: BTreeMap<Id, Pending>,
    // Invariant: exactly the open pendings, as (expires_at_ms, id): expiry reads only the due.
    expiries: std::collections::BTreeSet<(u64, Id)>,
    // The idempotency index's recent part; older parts move to `archive` (see `IdArchive`).
    #[serde(with = "used_records")]
    used: HashMap<u128, IdUse>,
    #[serde(skip)]
    archive: Option<std::sync::Arc<dyn IdArchive>>,
    // The id key of the command being executed, computed once for both `decide` and `apply`
    // (SHA-256 was a tenth of a transfer's cost, paid twice). A cache: checked by id.
    #[serde(skip)]
    key_memo: Option<(Id, u128)>,
    // The log index the next event will have.
    pub(crate) next_index: u64,
    // Invariant: every id here names a posted single-phase transfer.
    reversed: HashSet<Id>,
    pub(crate) programmes: BTreeMap<Id, Programme>,
    // Invariant: every funding account here funds exactly one programme.
    funding_accounts: HashSet<Id>,
    totals: BTreeMap<Id, BTreeMap<Currency, ProgrammeTotals>>,
    tiers: BTreeMap<Id, (Currency, Limits)>,
    pub(crate) beneficiaries: BTreeMap<Id, Beneficiary>,
    pub(crate) vouchers: crate::voucher::VoucherBook,
    pub(crate) principals: BTreeMap<Id, crate::access::Grant>,
}

/// The idempotency index's older part, kept out of memory by the engine (on disk). The state
/// asks it when an id is not among the recent ones; it never changes what is archived.
pub trait IdArchive: std::fmt::Debug + Send + Sync {
    /// What `key` (see [`State::recent_ids`]) was used for, if it is archived.
    fn get(&self, key: u128) -> Option<IdUse>;
}

/// States are equal when everything held in memory is: the accounts, holds, programmes,
/// beneficiaries and the recent idempotency entries (the archived part, on disk, is not
/// compared).
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            accounts,
            pendings,
            expiries,
            used,
            archive: _,
            key_memo: _,
            next_index,
            reversed,
            programmes,
            funding_accounts,
            totals,
            tiers,
            beneficiaries,
            vouchers,
            principals,
        } = self;
        *accounts == other.accounts
            && *pendings == other.pendings
            && *expiries == other.expiries
            && *used == other.used
            && *next_index == other.next_index
            && *reversed == other.reversed
            && *programmes == other.programmes
            && *funding_accounts == other.funding_accounts
            && *totals == other.totals
            && *tiers == other.tiers
            && *beneficiaries == other.beneficiaries
            && *vouchers == other.vouchers
            && *principals == other.principals
    }
}

impl Eq for State {}

/// Why a linked group was refused: which command, and why. Nothing in the group applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("command {index} of the linked group: {rejection}")]
pub struct GroupRejection {
    /// The position of the refused command in the group.
    pub index: usize,
    /// Why it was refused.
    pub rejection: Rejection,
}

/// A value as it was before a linked group touched it, to put back if the group fails.
enum Saved {
    Account(Id, Option<Account>),
    Pending(Id, Option<Pending>),
    Used(u128, Option<IdUse>),
    Reversed(Id, bool),
    Programme(Id, Option<Programme>, Id, bool),
    Totals(Id, Option<BTreeMap<Currency, ProgrammeTotals>>),
    Tier(Id, Option<(Currency, Limits)>),
    Beneficiary(Id, Option<Beneficiary>),
    VoucherTerms {
        programme: Id,
        terms: Option<crate::VoucherTerms>,
        escrow: Id,
        escrow_of: Option<Id>,
        totals: Option<crate::VoucherTotals>,
    },
    VendorCategories(Id, Option<std::collections::BTreeSet<Id>>),
    ProgrammeVendor((Id, Id), Option<crate::ProgrammeVendor>),
}

/// The limits in force on `account` given the defined tiers (see [`State::limits_of`]).
fn limits_with_tiers<'a>(
    account: &'a Account,
    tiers: &'a BTreeMap<Id, (Currency, Limits)>,
) -> std::borrow::Cow<'a, Limits> {
    match account.tier.as_ref().and_then(|tier| tiers.get(tier)) {
        Some((_, tier)) => std::borrow::Cow::Owned(account.limits().or(tier)),
        // Most accounts: no tier, and their own limits (or none) as they are.
        None => std::borrow::Cow::Borrowed(account.limits()),
    }
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

impl State {
    /// An account by id.
    pub fn account(&self, id: &Id) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// All accounts, in the order they were opened.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }

    /// An account's number: its place in the order of opening, the same on every replay.
    pub fn account_number(&self, id: &Id) -> Option<crate::AccountNumber> {
        self.accounts.number_of(id)
    }

    /// How many accounts were opened.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// What a transfer id (or hold, or operation on one) was used for, and the log index of its
    /// entry, where its full content is.
    pub fn id_use(&self, id: &Id) -> Option<IdUse> {
        self.used_get(id_key(id))
    }

    /// The log index of the entry that already did what `command` asks, when it was answered
    /// as a retry (decided to no events): the original's, for a command with a claimed id;
    /// the authorisation's, refusal's or closing's for the voucher steps on a redemption or a
    /// voucher.
    pub fn answer_index(&self, command: &Command) -> Option<u64> {
        self.voucher_answer_index(command)
            .or_else(|| command.claimed_id().and_then(|id| self.id_use(id)).map(|used| used.index))
    }

    /// A voucher by id.
    pub fn voucher(&self, id: &Id) -> Option<&crate::Voucher> {
        self.vouchers.vouchers.get(id)
    }

    /// All vouchers, in no particular order.
    pub fn vouchers(&self) -> impl Iterator<Item = (&Id, &crate::Voucher)> {
        self.vouchers.vouchers.iter()
    }

    /// A redemption by id.
    pub fn redemption(&self, id: &Id) -> Option<&crate::Redemption> {
        self.vouchers.redemptions.get(id)
    }

    /// A voucher programme's terms.
    pub fn voucher_terms(&self, programme: &Id) -> Option<&crate::VoucherTerms> {
        self.vouchers.terms.get(programme)
    }

    /// What a voucher programme's vouchers did.
    pub fn voucher_totals(&self, programme: &Id) -> Option<crate::VoucherTotals> {
        self.vouchers.totals.get(programme).copied()
    }

    /// The vendors a voucher programme knows (enrolled, withdrawn, or with redemptions), with
    /// their records.
    pub fn programme_vendors<'a>(
        &'a self,
        programme: &'a Id,
    ) -> impl Iterator<Item = (&'a Id, &'a crate::ProgrammeVendor)> + 'a {
        self.vouchers
            .vendors
            .iter()
            .filter(move |((owner, _), _)| owner == programme)
            .map(|((_, vendor), record)| (vendor, record))
    }

    /// A settlement by id.
    pub fn settlement(&self, id: &Id) -> Option<&crate::Settlement> {
        self.vouchers.settlements.get(id)
    }

    /// A vendor's categories.
    pub fn vendor_categories(&self, vendor: &Id) -> Option<&std::collections::BTreeSet<Id>> {
        self.vouchers.categories.get(vendor)
    }

    /// The idempotency key of `id`, from the memo when it is the command being executed.
    pub(crate) fn key_of(&self, id: &Id) -> u128 {
        match &self.key_memo {
            Some((memo, key)) if memo == id => *key,
            _ => id_key(id),
        }
    }

    /// Remembers the key of the id `command` claims, for its decision and its application.
    fn memo_key(&mut self, command: &Command) {
        let Some(id) = command.claimed_id() else { return };
        if self.key_memo.as_ref().is_none_or(|(memo, _)| memo != id) {
            self.key_memo = Some((id.clone(), id_key(id)));
        }
    }

    pub(crate) fn used_get(&self, key: u128) -> Option<IdUse> {
        self.used.get(&key).copied().or_else(|| self.archive.as_ref()?.get(key))
    }

    /// The recent idempotency entries, as `(key, use)`, for the engine to archive; they stay
    /// here until [`Self::forget_archived`] is told the archive holds them.
    pub fn recent_ids(&self) -> impl Iterator<Item = (u128, IdUse)> + '_ {
        self.used.iter().map(|(key, value)| (*key, *value))
    }

    /// A copy without the archive handle, to keep after the ledger closes (the archive's
    /// storage stays locked while any handle lives). Its archived ids are not answerable.
    pub fn detached(&self) -> Self {
        Self { archive: None, ..self.clone() }
    }

    /// Installs the archive of older idempotency entries.
    pub fn set_archive(&mut self, archive: std::sync::Arc<dyn IdArchive>) {
        self.archive = Some(archive);
    }

    /// Forgets recent entries that the archive now holds (exactly these values).
    pub fn forget_archived(&mut self, archived: &[(u128, IdUse)]) {
        for (key, value) in archived {
            if self.used.get(key) == Some(value) {
                self.used.remove(key);
            }
        }
    }

    /// How many idempotency entries are held in memory.
    pub fn recent_id_count(&self) -> usize {
        self.used.len()
    }

    /// The log index the next event will have: the number of log entries this state reflects.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// A pending (two-phase) transfer by id, in whatever state it is.
    pub fn pending(&self, id: &Id) -> Option<&Pending> {
        self.pendings.get(id)
    }

    /// A programme by id.
    pub fn programme(&self, id: &Id) -> Option<&Programme> {
        self.programmes.get(id)
    }

    /// All programmes, by id.
    pub fn programmes(&self) -> impl Iterator<Item = (&Id, &Programme)> {
        self.programmes.iter()
    }

    /// What moved under a programme, per currency.
    pub fn programme_totals(&self, id: &Id) -> impl Iterator<Item = (Currency, &ProgrammeTotals)> {
        self.totals.get(id).into_iter().flatten().map(|(currency, totals)| (*currency, totals))
    }

    /// A beneficiary by pseudonymous id.
    pub fn beneficiary(&self, id: &Id) -> Option<&Beneficiary> {
        self.beneficiaries.get(id)
    }

    /// The limits in force on an account: its own, with each one left out taken from its tier.
    pub fn limits_of<'a>(&'a self, account: &'a Account) -> std::borrow::Cow<'a, Limits> {
        limits_with_tiers(account, &self.tiers)
    }

    /// The accounts an applied event moved money in or changed: what an account's history
    /// lists. Holds and posted transfers stay known, so this works on any later state too.
    pub fn accounts_of<'a>(&'a self, event: &'a Event) -> [Option<&'a Id>; 2] {
        let pair = |record: &'a TransferRecord| [Some(&record.from), Some(&record.to)];
        match event {
            Event::AccountOpened { account, .. }
            | Event::LimitsSet { account, .. }
            | Event::AccountFrozen { account, .. }
            | Event::AccountUnfrozen { account, .. }
            | Event::AccountClosed { account, .. }
            | Event::TierSet { account, .. } => [Some(account), None],
            Event::TransferPosted { from, to, .. } | Event::TransferPending { from, to, .. } => {
                [Some(from), Some(to)]
            }
            Event::PendingPosted { pending, .. }
            | Event::PendingVoided { pending, .. }
            | Event::PendingExpired { pending, .. } => {
                self.pendings.get(pending).map_or([None, None], |p| pair(&p.record))
            }
            Event::TransferReversed { reverses, .. } => pair(reverses),
            Event::ProgrammeCreated { funding, .. } => [Some(funding), None],
            Event::TierDefined { .. }
            | Event::BeneficiaryRegistered { .. }
            | Event::BeneficiaryErased { .. } => [None, None],
            _ => self.voucher_accounts_of(event),
        }
    }

    /// The sum of all posted balances per currency; zero for every currency in a consistent
    /// ledger.
    pub fn totals(&self) -> BTreeMap<&'static str, i128> {
        let mut totals = BTreeMap::new();
        for account in self.accounts.iter() {
            *totals.entry(account.currency.code()).or_insert(0) +=
                i128::from(account.balance_minor);
        }
        totals
    }

    pub(crate) fn live_account(&self, id: &Id) -> Result<&Account, Rejection> {
        self.accounts.get(id).ok_or_else(|| Rejection::AccountNotFound(id.clone()))
    }

    /// The checks of a transfer, a hold, or a reversal: every check of [`Self::check_money`],
    /// and no escrow account on either side (only voucher steps move escrow money, so that
    /// its balance always equals the programme's outstanding vouchers).
    fn check_movement(
        &self,
        record: &TransferRecord,
        released: i64,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        self.check_money(record, released, now_ms)?;
        for account in [&record.from, &record.to] {
            if self.live_account(account)?.kind == AccountKind::Escrow {
                return Err(Rejection::EscrowAccount(account.clone()));
            }
        }
        Ok(())
    }

    /// The checks every movement of money passes, in precedence order. `released` is a hold on
    /// `from` that the movement itself releases first (posting a pending transfer).
    pub(crate) fn check_money(
        &self,
        record: &TransferRecord,
        released: i64,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let debit = self.live_account(&record.from)?;
        let credit = self.live_account(&record.to)?;
        if !self.programmes.contains_key(&record.programme) {
            return Err(Rejection::ProgrammeNotFound(record.programme.clone()));
        }
        if let Some(reference) = &record.reference {
            check_text(reference, "reference")?;
        }
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
        let (debit_limits, credit_limits) = (self.limits_of(debit), self.limits_of(credit));
        if limit(&debit_limits.max_transfer).is_some_and(|max| minor > max) {
            return exceeded(&record.from, "max_transfer");
        }
        let windows = [
            (&debit_limits.max_daily_outflow, DAY_MS, "daily_outflow"),
            (&debit_limits.max_monthly_outflow, MONTH_MS, "monthly_outflow"),
        ];
        for (max, window_ms, name) in windows {
            if let Some(max) = limit(max)
                && debit.outflow_within(window_ms, now_ms).saturating_add(minor) > max
            {
                return exceeded(&record.from, name);
            }
        }
        if limit(&credit_limits.max_balance).is_some_and(|max| credited > max) {
            return exceeded(&record.to, "max_balance");
        }
        Ok(())
    }

    fn check_limits(&self, account: &Id, limits: &Limits) -> Result<(), Rejection> {
        let state = self.live_account(account)?;
        if state.closed {
            return Err(Rejection::AccountClosed(account.clone()));
        }
        check_limit_amounts(account, state.currency, limits)
    }

    fn check_tier(&self, account: &Id, tier: Option<&Id>) -> Result<(), Rejection> {
        let state = self.live_account(account)?;
        if state.closed {
            return Err(Rejection::AccountClosed(account.clone()));
        }
        if let Some(tier) = tier {
            let (currency, _) =
                self.tiers.get(tier).ok_or_else(|| Rejection::TierNotFound(tier.clone()))?;
            if *currency != state.currency {
                return Err(Rejection::CurrencyMismatch {
                    account: account.clone(),
                    expected: state.currency,
                    got: *currency,
                });
            }
        }
        Ok(())
    }

    fn check_programme(&self, id: &Id, name: &str, funding: &Id) -> Result<(), Rejection> {
        if self.programmes.contains_key(id) {
            return Err(Rejection::ProgrammeExists(id.clone()));
        }
        check_text(name, "name")?;
        let account = self.live_account(funding)?;
        if account.kind != AccountKind::ProgrammeFunding
            || account.closed
            || self.funding_accounts.contains(funding)
        {
            return Err(Rejection::NotAFundingAccount(funding.clone()));
        }
        Ok(())
    }

    fn check_registration(&self, id: &Id, commitment: &str) -> Result<(), Rejection> {
        if self.beneficiaries.contains_key(id) {
            return Err(Rejection::BeneficiaryExists(id.clone()));
        }
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if commitment.len() != 64 || !commitment.bytes().all(hex) {
            return Err(Rejection::InvalidCommitment);
        }
        Ok(())
    }

    fn check_erasure(&self, id: &Id) -> Result<(), Rejection> {
        match self.beneficiaries.get(id) {
            None => Err(Rejection::BeneficiaryNotFound(id.clone())),
            Some(beneficiary) if beneficiary.erased => {
                Err(Rejection::BeneficiaryErased(id.clone()))
            }
            Some(_) => Ok(()),
        }
    }

    fn account_mut(&mut self, id: &Id) -> Result<&mut Account, Inconsistency> {
        self.accounts.get_mut(id).ok_or_else(|| unknown_account(id))
    }

    fn count(&mut self, record: &TransferRecord, minor: i64, reversal: bool) {
        let by_currency = match self.totals.get_mut(&record.programme) {
            Some(by_currency) => by_currency,
            None => self.totals.entry(record.programme.clone()).or_default(),
        };
        let totals = by_currency.entry(record.amount.currency()).or_default();
        if reversal {
            totals.reversals += 1;
            totals.reversed_minor += i128::from(minor);
        } else {
            totals.transfers += 1;
            totals.moved_minor += i128::from(minor);
        }
    }

    /// The two legs of a double entry: one debit, one credit, the same amount. Checked first.
    /// The debit is remembered for the outflow limits.
    pub(crate) fn move_money(
        &mut self,
        from: &Id,
        to: &Id,
        minor: i64,
        at_ms: u64,
    ) -> Result<(), Inconsistency> {
        let debit = self.accounts.get_mut(from).ok_or_else(|| unknown_account(from))?;
        let remember = limits_with_tiers(debit, &self.tiers).limits_outflow();
        debit.balance_minor -= minor;
        if remember {
            let outflows = debit.outflows.get_or_insert_with(Box::default);
            while outflows.front().is_some_and(|(at, _)| at + MONTH_MS <= at_ms) {
                outflows.pop_front();
            }
            outflows.push_back((at_ms, minor));
        } else {
            debit.outflows = None;
        }
        self.account_mut(to)?.balance_minor += minor;
        Ok(())
    }

    /// Records what `id` is used for. `verify` checks the archive too: only an event `decide`
    /// just produced (which looked there) may skip it.
    pub(crate) fn claim_id(
        &mut self,
        id: &Id,
        used: &Used<'_>,
        verify: bool,
    ) -> Result<(), Inconsistency> {
        let entry =
            IdUse { kind: used.kind(), index: self.next_index, content: used.fingerprint() };
        let key = self.key_of(id);
        let archived = if verify { self.archive.as_ref().and_then(|a| a.get(key)) } else { None };
        if let Some(archived) = archived {
            // Replaying entries the archive already took in (it ran ahead of the snapshot) is
            // fine; anything else is an id used twice.
            return if archived == entry {
                Ok(())
            } else {
                Err(Inconsistency(format!("transfer id {id} used twice")))
            };
        }
        match self.used.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => {
                Err(Inconsistency(format!("transfer id {id} used twice")))
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(entry);
                Ok(())
            }
        }
    }

    /// The transfer that undoes `original`, if it may still be reversed. `posted` is the
    /// original's content as read from the log; it must match what the index remembers.
    fn reversal_of(
        &self,
        original: &Id,
        posted: Option<&TransferRecord>,
        actor: Actor,
    ) -> Result<TransferRecord, Rejection> {
        let not_found = || Rejection::TransferNotFound(original.clone());
        let posted = posted.ok_or_else(not_found)?;
        let known = self.used_get(id_key(original)).ok_or_else(not_found)?;
        let known = &known;
        if !Used::Transfer(posted).matches(known) {
            return Err(not_found());
        }
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

    /// Whether `account` funds a voucher programme with vouchers outstanding: their value will
    /// return to it, so it must stay open.
    fn funds_outstanding_vouchers(&self, account: &Id) -> bool {
        self.funding_accounts.contains(account)
            && self.programmes.iter().any(|(id, programme)| {
                programme.funding == *account
                    && self.vouchers.totals.get(id).is_some_and(|t| t.outstanding_minor() != 0)
            })
    }

    /// Whether a posted transfer has been reversed.
    pub fn is_reversed(&self, id: &Id) -> bool {
        self.reversed.contains(id)
    }

    pub(crate) fn open_pending(&self, id: &Id) -> Result<&Pending, Rejection> {
        let pending =
            self.pendings.get(id).ok_or_else(|| Rejection::PendingNotFound(id.clone()))?;
        if pending.state != PendingState::Open {
            return Err(Rejection::PendingNotOpen(id.clone()));
        }
        Ok(pending)
    }

    /// Holds `record`'s amount on its debited account under `id` until `expires_at_ms`.
    pub(crate) fn hold(
        &mut self,
        id: &Id,
        record: TransferRecord,
        expires_at_ms: u64,
    ) -> Result<(), Inconsistency> {
        self.account_mut(&record.from)?.held_minor += record.amount.minor_units();
        self.pendings
            .insert(id.clone(), Pending { record, expires_at_ms, state: PendingState::Open });
        self.expiries.insert((expires_at_ms, id.clone()));
        Ok(())
    }

    /// Ends a pending transfer: releases its hold and records how it ended.
    pub(crate) fn finish_pending(
        &mut self,
        id: &Id,
        state: PendingState,
    ) -> Result<TransferRecord, Inconsistency> {
        let pending = self.open_pending(id)?.clone();
        self.account_mut(&pending.record.from)?.held_minor -= pending.record.amount.minor_units();
        if let Some(entry) = self.pendings.get_mut(id) {
            entry.state = state;
        }
        self.expiries.remove(&(pending.expires_at_ms, id.clone()));
        Ok(pending.record)
    }

    /// Decides `command` and applies its events; returns them (none for an answered retry).
    ///
    /// # Errors
    /// The [`Rejection`]; nothing changed.
    pub fn execute(
        &mut self,
        command: &Command,
        context: &Context,
    ) -> Result<Vec<Event>, Rejection> {
        // An unknown or revoked principal learns nothing, not even why the command would fail.
        if let Some(principal) = &context.by {
            self.granted(principal)?;
        }
        self.memo_key(command);
        let events = decide(self, command, context)?;
        self.check_all_permitted(context, &events)?;
        for event in &events {
            self.apply_decided(event);
        }
        Ok(events)
    }

    /// Decides and applies a linked group: every command sees the ones before it, and either
    /// all apply or none does. Returns the events of the whole group, in order.
    ///
    /// # Errors
    /// [`GroupRejection`] naming the first refused command; nothing in the group applied.
    pub fn execute_linked(
        &mut self,
        commands: &[Command],
        context: &Context,
    ) -> Result<Vec<Event>, GroupRejection> {
        if let Some(principal) = &context.by {
            self.granted(principal).map_err(|rejection| GroupRejection { index: 0, rejection })?;
        }
        let mut saved = Vec::new();
        let mut events = Vec::new();
        let next_index = self.next_index;
        for (index, command) in commands.iter().enumerate() {
            let decided = match command {
                _ if !command.is_linkable() => Err(Rejection::NotLinkable),
                // A reversal of a transfer made earlier in this group finds it among the
                // group's own events: it is not in the log yet.
                _ => match command.with_original_among(&events) {
                    Some(filled) => decide(self, &filled, context),
                    None => decide(self, command, context),
                },
            };
            let decided = decided
                .and_then(|events| self.check_all_permitted(context, &events).map(|()| events));
            match decided {
                Ok(decided) => {
                    for event in &decided {
                        self.save_touched(event, &mut saved);
                        self.apply_decided(event);
                    }
                    events.extend(decided);
                }
                Err(rejection) => {
                    self.restore(saved);
                    self.next_index = next_index;
                    return Err(GroupRejection { index, rejection });
                }
            }
        }
        Ok(events)
    }

    /// Whether the context's principal may cause all of `events` (one command's), checked
    /// against the state before they apply.
    fn check_all_permitted(&self, context: &Context, events: &[Event]) -> Result<(), Rejection> {
        if context.by.is_some() {
            for event in events {
                self.check_permitted(context.by.as_ref(), event)?;
            }
        }
        Ok(())
    }

    /// Applies an event `decide` just produced from this state: the checks are the same, so a
    /// failure here is a bug in the engine, not bad input.
    fn apply_decided(&mut self, event: &Event) {
        if let Err(inconsistency) = self.apply_event(event, false) {
            panic!("a decided event must apply: {inconsistency} ({event:?})");
        }
    }

    /// Remembers, before `event` applies, every value it can change.
    fn save_touched(&self, event: &Event, saved: &mut Vec<Saved>) {
        let mut account =
            |id: &Id| saved.push(Saved::Account(id.clone(), self.accounts.get(id).cloned()));
        // Programmes whose totals the event changes, beyond the one it names.
        let mut programmes = Vec::new();
        match event {
            Event::AccountOpened { account: id, .. }
            | Event::LimitsSet { account: id, .. }
            | Event::AccountFrozen { account: id, .. }
            | Event::AccountUnfrozen { account: id, .. }
            | Event::AccountClosed { account: id, .. }
            | Event::TierSet { account: id, .. } => account(id),
            Event::TransferPosted { from, to, .. } | Event::TransferPending { from, to, .. } => {
                account(from);
                account(to);
            }
            Event::PendingPosted { pending, .. }
            | Event::PendingVoided { pending, .. }
            | Event::PendingExpired { pending, .. } => {
                if let Some(held) = self.pendings.get(pending) {
                    account(&held.record.from);
                    account(&held.record.to);
                    programmes.push(held.record.programme.clone());
                }
            }
            Event::TransferReversed { reverses, .. } => {
                account(&reverses.from);
                account(&reverses.to);
                programmes.push(reverses.programme.clone());
            }
            // The voucher events of a linked group (terms, vendors) move no money.
            _ => {}
        }
        match event {
            Event::TransferPosted { transfer, programme, .. } => {
                saved
                    .push(Saved::Used(id_key(transfer), self.used.get(&id_key(transfer)).copied()));
                saved.push(Saved::Totals(programme.clone(), self.totals.get(programme).cloned()));
            }
            Event::TransferPending { transfer, .. } => {
                saved
                    .push(Saved::Used(id_key(transfer), self.used.get(&id_key(transfer)).copied()));
                saved.push(Saved::Pending(transfer.clone(), self.pendings.get(transfer).cloned()));
            }
            Event::PendingPosted { transfer, pending, .. }
            | Event::PendingVoided { transfer, pending, .. } => {
                saved
                    .push(Saved::Used(id_key(transfer), self.used.get(&id_key(transfer)).copied()));
                saved.push(Saved::Pending(pending.clone(), self.pendings.get(pending).cloned()));
            }
            Event::PendingExpired { pending, .. } => {
                saved.push(Saved::Pending(pending.clone(), self.pendings.get(pending).cloned()));
            }
            Event::TransferReversed { transfer, original, .. } => {
                saved
                    .push(Saved::Used(id_key(transfer), self.used.get(&id_key(transfer)).copied()));
                saved.push(Saved::Reversed(original.clone(), self.reversed.contains(original)));
            }
            Event::ProgrammeCreated { programme, funding, .. } => saved.push(Saved::Programme(
                programme.clone(),
                self.programmes.get(programme).cloned(),
                funding.clone(),
                self.funding_accounts.contains(funding),
            )),
            Event::TierDefined { tier, .. } => {
                saved.push(Saved::Tier(tier.clone(), self.tiers.get(tier).cloned()));
            }
            Event::BeneficiaryRegistered { beneficiary, .. }
            | Event::BeneficiaryErased { beneficiary, .. } => saved.push(Saved::Beneficiary(
                beneficiary.clone(),
                self.beneficiaries.get(beneficiary).cloned(),
            )),
            Event::VoucherTermsSet { programme, terms, .. } => saved.push(Saved::VoucherTerms {
                programme: programme.clone(),
                terms: self.vouchers.terms.get(programme).cloned(),
                escrow: terms.escrow.clone(),
                escrow_of: self.vouchers.escrows.get(&terms.escrow).cloned(),
                totals: self.vouchers.totals.get(programme).copied(),
            }),
            Event::VendorCategoriesSet { vendor, .. } => saved.push(Saved::VendorCategories(
                vendor.clone(),
                self.vouchers.categories.get(vendor).cloned(),
            )),
            Event::VendorEnrolled { programme, vendor, .. }
            | Event::VendorWithdrawn { programme, vendor, .. } => {
                let key = (programme.clone(), vendor.clone());
                let record = self.vouchers.vendors.get(&key).cloned();
                saved.push(Saved::ProgrammeVendor(key, record));
            }
            _ => {}
        }
        for programme in programmes {
            saved.push(Saved::Totals(programme.clone(), self.totals.get(&programme).cloned()));
        }
    }

    /// Puts back what [`Self::save_touched`] remembered, newest first.
    fn restore(&mut self, saved: Vec<Saved>) {
        fn put<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        fn flag(set: &mut HashSet<Id>, key: Id, present: bool) {
            if present {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
        for value in saved.into_iter().rev() {
            match value {
                Saved::Account(id, account) => match account {
                    Some(account) => {
                        *self.accounts.get_mut(&id).expect("accounts are never removed") = account;
                    }
                    None => self.accounts.pop(&id),
                },
                Saved::Pending(id, pending) => {
                    if let Some(current) = self.pendings.get(&id) {
                        self.expiries.remove(&(current.expires_at_ms, id.clone()));
                    }
                    if let Some(restored) = &pending
                        && restored.state == PendingState::Open
                    {
                        self.expiries.insert((restored.expires_at_ms, id.clone()));
                    }
                    put(&mut self.pendings, id, pending);
                }
                Saved::Used(id, used) => match used {
                    Some(used) => {
                        self.used.insert(id, used);
                    }
                    None => {
                        self.used.remove(&id);
                    }
                },
                Saved::Reversed(id, present) => flag(&mut self.reversed, id, present),
                Saved::Programme(id, programme, funding, present) => {
                    put(&mut self.programmes, id, programme);
                    flag(&mut self.funding_accounts, funding, present);
                }
                Saved::Totals(id, totals) => put(&mut self.totals, id, totals),
                Saved::Tier(id, tier) => put(&mut self.tiers, id, tier),
                Saved::Beneficiary(id, beneficiary) => {
                    put(&mut self.beneficiaries, id, beneficiary)
                }
                Saved::VoucherTerms { programme, terms, escrow, escrow_of, totals } => {
                    put(&mut self.vouchers.terms, programme.clone(), terms);
                    put(&mut self.vouchers.escrows, escrow, escrow_of);
                    put(&mut self.vouchers.totals, programme, totals);
                }
                Saved::VendorCategories(vendor, categories) => {
                    put(&mut self.vouchers.categories, vendor, categories)
                }
                Saved::ProgrammeVendor(key, record) => put(&mut self.vouchers.vendors, key, record),
            }
        }
    }

    /// Applies one event. Checks everything a replayed, untrusted log could get wrong, with the
    /// same checks `decide` makes.
    ///
    /// # Errors
    /// [`Inconsistency`] when the event cannot follow the current state.
    pub fn apply(&mut self, event: &Event) -> Result<(), Inconsistency> {
        self.apply_event(event, true)
    }

    /// Applies one event; `verify` makes the movement checks `decide` makes. Only events that
    /// `decide` just produced from this very state may skip them.
    fn apply_event(&mut self, event: &Event, verify: bool) -> Result<(), Inconsistency> {
        match event {
            Event::AccountOpened { account, kind, currency, owner, .. } => {
                if self.accounts.contains(account) {
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
                    limits: None,
                    tier: None,
                    outflows: None,
                };
                self.accounts.push(opened);
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
                if verify {
                    self.check_movement(&record, 0, *at_ms)?;
                }
                self.claim_id(transfer, &Used::Transfer(&record), verify)?;
                self.count(&record, amount.minor_units(), false);
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
                if verify {
                    self.check_movement(&record, 0, *at_ms)?;
                }
                self.claim_id(transfer, &Used::Pending(&record), verify)?;
                self.hold(transfer, record, *expires_at_ms)?;
            }
            Event::PendingPosted { pending, .. }
            | Event::PendingVoided { pending, .. }
            | Event::PendingExpired { pending, .. }
                if self.vouchers.redemptions.contains_key(pending) =>
            {
                return Err(Rejection::IsARedemption(pending.clone()).into());
            }
            Event::PendingPosted { transfer, pending, amount, at_ms } => {
                let held = self.open_pending(pending)?.record.clone();
                if amount.checked_cmp(&held.amount).map_err(|e| Inconsistency(e.to_string()))?
                    == std::cmp::Ordering::Greater
                {
                    return Err(Rejection::ExceedsPending(held.amount).into());
                }
                let posted = TransferRecord { amount: *amount, ..held.clone() };
                if verify {
                    self.check_movement(&posted, held.amount.minor_units(), *at_ms)?;
                }
                self.claim_id(transfer, &Used::Posted { pending, amount }, verify)?;
                self.finish_pending(pending, PendingState::Posted)?;
                self.count(&posted, amount.minor_units(), false);
                self.move_money(&held.from, &held.to, amount.minor_units(), *at_ms)?;
            }
            Event::PendingVoided { transfer, pending, .. } => {
                self.open_pending(pending)?;
                self.claim_id(transfer, &Used::Voided { pending }, verify)?;
                self.finish_pending(pending, PendingState::Voided)?;
            }
            Event::PendingExpired { pending, .. } => {
                self.finish_pending(pending, PendingState::Expired)?;
            }
            Event::TransferReversed { transfer, original, reverses, actor, at_ms } => {
                let back = self.reversal_of(original, Some(reverses), *actor)?;
                if verify {
                    self.check_movement(&back, 0, *at_ms)?;
                }
                self.claim_id(transfer, &Used::Reversed { original }, verify)?;
                self.move_money(&back.from, &back.to, back.amount.minor_units(), *at_ms)?;
                self.count(&back, back.amount.minor_units(), true);
                self.reversed.insert(original.clone());
            }
            Event::LimitsSet { account, limits, .. } => {
                self.check_limits(account, limits)?;
                self.account_mut(account)?.limits =
                    (*limits != NO_LIMITS).then(|| Box::new(limits.clone()));
            }
            Event::AccountFrozen { account, .. }
            | Event::AccountUnfrozen { account, .. }
            | Event::AccountClosed { account, .. } => {
                if matches!(event, Event::AccountClosed { .. })
                    && self.funds_outstanding_vouchers(account)
                {
                    return Err(Rejection::BalanceNotZero(account.clone()).into());
                }
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
            Event::ProgrammeCreated { programme, name, kind, funding, .. } => {
                self.check_programme(programme, name, funding)?;
                let currency = self.live_account(funding)?.currency;
                let created = Programme {
                    name: name.clone(),
                    kind: *kind,
                    currency,
                    funding: funding.clone(),
                };
                self.programmes.insert(programme.clone(), created);
                self.funding_accounts.insert(funding.clone());
            }
            Event::TierDefined { tier, currency, limits, .. } => {
                check_limit_amounts(tier, *currency, limits)?;
                if self.tiers.get(tier).is_some_and(|(defined, _)| defined != currency) {
                    return Err(Inconsistency(format!("tier {tier} changed currency")));
                }
                self.tiers.insert(tier.clone(), (*currency, limits.clone()));
            }
            Event::TierSet { account, tier, .. } => {
                self.check_tier(account, tier.as_ref())?;
                self.account_mut(account)?.tier = tier.clone();
            }
            Event::BeneficiaryRegistered { beneficiary, commitment, .. } => {
                self.check_registration(beneficiary, commitment)?;
                let registered = Beneficiary { commitment: commitment.clone(), erased: false };
                self.beneficiaries.insert(beneficiary.clone(), registered);
            }
            Event::BeneficiaryErased { beneficiary, .. } => {
                self.check_erasure(beneficiary)?;
                if let Some(erased) = self.beneficiaries.get_mut(beneficiary) {
                    erased.erased = true;
                }
            }
            Event::PrincipalGranted { .. } | Event::PrincipalRevoked { .. } => {
                self.apply_access(event)?;
            }
            _ => self.apply_voucher(event, verify)?,
        }
        debug_assert!(self.totals().values().all(|total| *total == 0), "money created or lost");
        self.next_index += 1;
        Ok(())
    }
}

/// Rebuilds a ledger from log entries, in order. The log's own key hand-overs (entries starting
/// with [`sanad_tlog::rotation::ROTATION_PREFIX`]) carry no ledger event and are skipped.
///
/// # Errors
/// [`Inconsistency`] naming the first entry that is malformed or does not apply.
pub fn replay<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<State, Inconsistency> {
    let mut ledger = State::default();
    for (index, entry) in entries.into_iter().enumerate() {
        ledger.replay_entry(index as u64, entry)?;
    }
    Ok(ledger)
}

impl State {
    /// Applies one log entry (entry `index` of the log, for messages); returns its event and
    /// the principal that caused it (see [`crate::access`]), or `None` for a key hand-over.
    ///
    /// # Errors
    /// [`Inconsistency`] when the entry is malformed, does not apply, or goes beyond its
    /// principal's role.
    pub fn replay_entry(
        &mut self,
        index: u64,
        entry: &[u8],
    ) -> Result<Option<(Event, Option<Id>)>, Inconsistency> {
        if index != self.next_index {
            return Err(Inconsistency(format!(
                "entry {index} replayed where entry {} was expected",
                self.next_index
            )));
        }
        if entry.starts_with(sanad_tlog::rotation::ROTATION_PREFIX) {
            self.next_index += 1;
            return Ok(None);
        }
        let (event, by) =
            Event::decode_entry(entry).map_err(|e| Inconsistency(format!("entry {index}: {e}")))?;
        self.check_permitted(by.as_ref(), &event)
            .map_err(|e| Inconsistency(format!("entry {index}: {e}")))?;
        self.apply(&event).map_err(|e| Inconsistency(format!("entry {index}: {}", e.0)))?;
        Ok(Some((event, by)))
    }

    /// Steps over entry `index` without applying it, for an auditor that reports an entry
    /// [`Self::replay_entry`] refused and goes on to find what else does not hold (what it
    /// finds next may follow from the entry stepped over).
    pub fn step_over(&mut self, index: u64) {
        if index == self.next_index {
            self.next_index += 1;
        }
    }

    /// The principals granted in the log, with their grants (see [`crate::access`]).
    pub fn principals(&self) -> impl Iterator<Item = (&Id, &crate::Grant)> {
        self.principals.iter()
    }
}

fn unknown_account(id: &Id) -> Inconsistency {
    Inconsistency(format!("unknown account {id}"))
}

/// Names and references: short, printable text.
pub(crate) fn check_text(text: &str, field: &'static str) -> Result<(), Rejection> {
    let length = text.chars().count();
    if length == 0 || length > TEXT_LENGTH_MAX || text.chars().any(char::is_control) {
        return Err(Rejection::InvalidText { field });
    }
    Ok(())
}

/// Limit amounts are in the account's (or tier's) currency and not negative.
fn check_limit_amounts(owner: &Id, currency: Currency, limits: &Limits) -> Result<(), Rejection> {
    for amount in limits.amounts().into_iter().flatten() {
        if amount.currency() != currency {
            return Err(Rejection::CurrencyMismatch {
                account: owner.clone(),
                expected: currency,
                got: amount.currency(),
            });
        }
        if amount.is_negative() {
            return Err(Rejection::NegativeLimit);
        }
    }
    Ok(())
}

/// Answers a retry: `Ok(true)` when `id` was used for exactly `used` before (nothing to do),
/// `Ok(false)` when it is new, a rejection when it was used for something else.
fn retried(ledger: &State, id: &Id, used: &Used<'_>) -> Result<bool, Rejection> {
    match ledger.used_get(ledger.key_of(id)).as_ref() {
        None => Ok(false),
        Some(existing) if used.matches(existing) => Ok(true),
        Some(_) => Err(Rejection::IdempotencyKeyReused(id.clone())),
    }
}

pub(crate) fn decide(
    ledger: &State,
    command: &Command,
    context: &Context,
) -> Result<Vec<Event>, Rejection> {
    let at_ms = context.now_ms;
    match command {
        Command::OpenAccount { id, kind, currency, owner } => {
            if ledger.accounts.contains(id) {
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
            if retried(ledger, id, &Used::Transfer(&record))? {
                return Ok(Vec::new());
            }
            ledger.check_movement(&record, 0, at_ms)?;
            Ok(vec![record.posted(id, at_ms)])
        }
        Command::Reserve { id, from, to, amount, programme, actor, reference, timeout_ms } => {
            let record = TransferRecord::of(from, to, amount, programme, *actor, reference);
            // A retry is the same hold whatever its time: its timeout is not part of the content.
            if retried(ledger, id, &Used::Pending(&record))? {
                return Ok(Vec::new());
            }
            let expires_at_ms = at_ms.saturating_add(*timeout_ms);
            ledger.check_movement(&record, 0, at_ms)?;
            Ok(vec![record.pending(id, expires_at_ms, at_ms)])
        }
        Command::PostPending { pending, .. } | Command::VoidPending { pending, .. }
            if ledger.vouchers.redemptions.contains_key(pending) =>
        {
            Err(Rejection::IsARedemption(pending.clone()))
        }
        Command::PostPending { id, pending, amount } => {
            let known = ledger.pendings.get(pending);
            let posted_amount = match (amount, known) {
                (Some(amount), _) => *amount,
                (None, Some(known)) => known.record.amount,
                (None, None) => return Err(Rejection::PendingNotFound(pending.clone())),
            };
            let used = Used::Posted { pending, amount: &posted_amount };
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
            if retried(ledger, id, &Used::Voided { pending })? {
                return Ok(Vec::new());
            }
            ledger.open_pending(pending)?;
            Ok(vec![Event::PendingVoided { transfer: id.clone(), pending: pending.clone(), at_ms }])
        }
        Command::Reverse { id, original, actor, original_transfer } => {
            if retried(ledger, id, &Used::Reversed { original })? {
                return Ok(Vec::new());
            }
            let back = ledger.reversal_of(original, original_transfer.as_ref(), *actor)?;
            ledger.check_movement(&back, 0, at_ms)?;
            let reverses = original_transfer
                .clone()
                .ok_or_else(|| Rejection::TransferNotFound(original.clone()))?;
            Ok(vec![Event::TransferReversed {
                transfer: id.clone(),
                original: original.clone(),
                reverses,
                actor: *actor,
                at_ms,
            }])
        }
        Command::SetLimits { account, limits } => {
            ledger.check_limits(account, limits)?;
            if ledger.live_account(account)?.limits() == limits {
                return Ok(Vec::new());
            }
            Ok(vec![Event::LimitsSet { account: account.clone(), limits: limits.clone(), at_ms }])
        }
        Command::ExpireDue { at_most } => {
            // Holds first (a redemption's hold is released as the redemption), then vouchers.
            let mut released = std::collections::BTreeSet::new();
            let mut events: Vec<Event> = ledger
                .expiries
                .iter()
                .take_while(|(expires_at_ms, _)| *expires_at_ms <= at_ms)
                .take(*at_most)
                .map(|(_, id)| {
                    if ledger.vouchers.redemptions.contains_key(id) {
                        released.insert(id.clone());
                        Event::RedemptionVoided {
                            redemption: id.clone(),
                            reason: crate::VoidReason::Timeout,
                            at_ms,
                        }
                    } else {
                        Event::PendingExpired { pending: id.clone(), at_ms }
                    }
                })
                .collect();
            let room = at_most.saturating_sub(events.len());
            events.extend(ledger.expire_vouchers(at_ms, room, &released));
            Ok(events)
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
            if account.balance_minor != 0
                || account.held_minor != 0
                || ledger.funds_outstanding_vouchers(id)
            {
                return Err(Rejection::BalanceNotZero(id.clone()));
            }
            Ok(vec![Event::AccountClosed { account: id.clone(), at_ms }])
        }
        Command::CreateProgramme { id, name, kind, funding } => {
            if let Some(existing) = ledger.programmes.get(id)
                && existing.name == *name
                && existing.kind == *kind
                && existing.funding == *funding
            {
                return Ok(Vec::new());
            }
            ledger.check_programme(id, name, funding)?;
            Ok(vec![Event::ProgrammeCreated {
                programme: id.clone(),
                name: name.clone(),
                kind: *kind,
                funding: funding.clone(),
                at_ms,
            }])
        }
        Command::DefineTier { id, currency, limits } => {
            check_limit_amounts(id, *currency, limits)?;
            match ledger.tiers.get(id) {
                Some((defined, _)) if defined != currency => Err(Rejection::CurrencyMismatch {
                    account: id.clone(),
                    expected: *defined,
                    got: *currency,
                }),
                Some((_, defined)) if defined == limits => Ok(Vec::new()),
                _ => Ok(vec![Event::TierDefined {
                    tier: id.clone(),
                    currency: *currency,
                    limits: limits.clone(),
                    at_ms,
                }]),
            }
        }
        Command::SetTier { account, tier } => {
            ledger.check_tier(account, tier.as_ref())?;
            if ledger.live_account(account)?.tier == *tier {
                return Ok(Vec::new());
            }
            Ok(vec![Event::TierSet { account: account.clone(), tier: tier.clone(), at_ms }])
        }
        Command::RegisterBeneficiary { id, commitment } => {
            if ledger.beneficiaries.get(id).is_some_and(|b| b.commitment == *commitment) {
                return Ok(Vec::new());
            }
            ledger.check_registration(id, commitment)?;
            Ok(vec![Event::BeneficiaryRegistered {
                beneficiary: id.clone(),
                commitment: commitment.clone(),
                at_ms,
            }])
        }
        Command::EraseBeneficiary { id } => {
            if ledger.beneficiaries.get(id).is_some_and(|b| b.erased) {
                return Ok(Vec::new());
            }
            ledger.check_erasure(id)?;
            Ok(vec![Event::BeneficiaryErased { beneficiary: id.clone(), at_ms }])
        }
        Command::SetVoucherTerms { .. }
        | Command::SetVendorCategories { .. }
        | Command::EnrolVendor { .. }
        | Command::WithdrawVendor { .. }
        | Command::IssueVoucher { .. }
        | Command::RequestRedemption { .. }
        | Command::AuthoriseRedemption { .. }
        | Command::RecordPinFailure { .. }
        | Command::RefuseRedemption { .. }
        | Command::RevokeVoucher { .. }
        | Command::Settle { .. } => ledger.decide_voucher(command, context),
        Command::GrantAccess { .. } | Command::RevokeAccess { .. } => {
            ledger.decide_access(command, context)
        }
    }
}
