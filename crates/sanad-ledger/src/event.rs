//! Events — what the log stores — and their canonical encoding: RFC 8785 (JCS) JSON with a
//! `"type"` naming the event and a `"v"` schema version. Our values are only strings, booleans
//! and integers below 2^53, and object keys are ASCII, so serde_json's output with sorted keys
//! and no white space *is* the canonical form. Decoding refuses anything not canonical, so one
//! event has exactly one byte string, and the leaf hash an auditor recomputes is unambiguous.

use sanad_money::{Amount, Currency, Id};
use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, BTreeSet};

use crate::voucher::{Authorisation, CloseReason, ItemQuantity, VoidReason, VoucherTerms};
use crate::{AccountKind, Actor, Limits, ProgrammeKind, Role, TransferRecord};

/// Schema version written in every entry.
pub const ENTRY_VERSION: u64 = 1;

/// A change to the ledger, as stored in the log. Past tense: it has happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Event {
    /// An account was opened.
    #[serde(rename = "account.opened")]
    AccountOpened {
        /// The account.
        account: Id,
        /// Its kind.
        kind: AccountKind,
        /// Its currency.
        currency: Currency,
        /// Its pseudonymous owner.
        owner: Id,
        /// When, in ms since the Unix epoch.
        at_ms: u64,
    },
    /// Money moved from one account to another.
    #[serde(rename = "transfer.posted")]
    TransferPosted {
        /// The client-chosen transfer id.
        transfer: Id,
        /// The debited account.
        from: Id,
        /// The credited account.
        to: Id,
        /// The amount, as a decimal string and a currency.
        amount: Amount,
        /// The programme.
        programme: Id,
        /// Who asked.
        actor: Actor,
        /// The optional reference.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// When.
        at_ms: u64,
    },
    /// Funds were reserved for a later transfer.
    #[serde(rename = "transfer.pending")]
    TransferPending {
        /// The pending transfer's id.
        transfer: Id,
        /// The account whose funds are held.
        from: Id,
        /// The account to be credited.
        to: Id,
        /// The amount held.
        amount: Amount,
        /// The programme.
        programme: Id,
        /// Who asked.
        actor: Actor,
        /// The optional reference.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// When the hold lapses, in ms since the Unix epoch.
        expires_at_ms: u64,
        /// When.
        at_ms: u64,
    },
    /// A pending transfer was posted (the rest of the hold, if any, released).
    #[serde(rename = "pending.posted")]
    PendingPosted {
        /// The id of this operation.
        transfer: Id,
        /// The pending transfer.
        pending: Id,
        /// The amount moved.
        amount: Amount,
        /// When.
        at_ms: u64,
    },
    /// A pending transfer was released without moving money.
    #[serde(rename = "pending.voided")]
    PendingVoided {
        /// The id of this operation.
        transfer: Id,
        /// The pending transfer.
        pending: Id,
        /// When.
        at_ms: u64,
    },
    /// A pending transfer lapsed.
    #[serde(rename = "pending.expired")]
    PendingExpired {
        /// The pending transfer.
        pending: Id,
        /// When.
        at_ms: u64,
    },
    /// A posted transfer was undone by a new transfer the other way.
    #[serde(rename = "transfer.reversed")]
    TransferReversed {
        /// The reversal's id.
        transfer: Id,
        /// The transfer undone.
        original: Id,
        /// The original's content (so the entry stands on its own; a replay checks it against
        /// the original's fingerprint): the reversal moves its amount from `to` back to `from`.
        reverses: TransferRecord,
        /// Who asked.
        actor: Actor,
        /// When.
        at_ms: u64,
    },
    /// An account's limits were set (replacing earlier ones).
    #[serde(rename = "account.limits_set")]
    LimitsSet {
        /// The account.
        account: Id,
        /// The limits now in force.
        limits: Limits,
        /// When.
        at_ms: u64,
    },
    /// An account was frozen.
    #[serde(rename = "account.frozen")]
    AccountFrozen {
        /// The account.
        account: Id,
        /// When.
        at_ms: u64,
    },
    /// A freeze was lifted.
    #[serde(rename = "account.unfrozen")]
    AccountUnfrozen {
        /// The account.
        account: Id,
        /// When.
        at_ms: u64,
    },
    /// An account was closed for good.
    #[serde(rename = "account.closed")]
    AccountClosed {
        /// The account.
        account: Id,
        /// When.
        at_ms: u64,
    },
    /// A programme was created around its (already opened) funding account.
    #[serde(rename = "programme.created")]
    ProgrammeCreated {
        /// The programme's id.
        programme: Id,
        /// Its display name (never personal data).
        name: String,
        /// Cash or vouchers.
        kind: ProgrammeKind,
        /// Its funding account (of kind `programme_funding`).
        funding: Id,
        /// When.
        at_ms: u64,
    },
    /// A tier (a named set of limits) was defined or redefined.
    #[serde(rename = "tier.defined")]
    TierDefined {
        /// The tier's id.
        tier: Id,
        /// The currency of its amounts.
        currency: Currency,
        /// Its limits.
        limits: Limits,
        /// When.
        at_ms: u64,
    },
    /// An account was put in a tier (or taken out of one, when `tier` is absent).
    #[serde(rename = "account.tier_set")]
    TierSet {
        /// The account.
        account: Id,
        /// The tier, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tier: Option<Id>,
        /// When.
        at_ms: u64,
    },
    /// A beneficiary was registered. Only a pseudonymous id and a commitment enter the log;
    /// the personal data stay in the erasable registry.
    #[serde(rename = "beneficiary.registered")]
    BeneficiaryRegistered {
        /// The pseudonymous id.
        beneficiary: Id,
        /// HMAC-SHA-256 of the personal record under a per-person secret kept in the registry,
        /// as 64 lower-case hex digits; meaningless once the secret is erased.
        commitment: String,
        /// When.
        at_ms: u64,
    },
    /// A beneficiary's personal data (and per-person secret) were erased from the registry.
    #[serde(rename = "beneficiary.erased")]
    BeneficiaryErased {
        /// The pseudonymous id.
        beneficiary: Id,
        /// When.
        at_ms: u64,
    },
    /// A voucher programme's terms were set.
    #[serde(rename = "programme.voucher_terms_set")]
    VoucherTermsSet {
        /// The programme.
        programme: Id,
        /// Its terms.
        terms: VoucherTerms,
        /// When.
        at_ms: u64,
    },
    /// A vendor's categories were set (none: removed).
    #[serde(rename = "vendor.categories_set")]
    VendorCategoriesSet {
        /// The vendor's account.
        vendor: Id,
        /// Its categories.
        categories: BTreeSet<Id>,
        /// When.
        at_ms: u64,
    },
    /// A vendor was enrolled in a voucher programme, with its agreed prices.
    #[serde(rename = "vendor.enrolled")]
    VendorEnrolled {
        /// The programme.
        programme: Id,
        /// The vendor's account.
        vendor: Id,
        /// Commodity programmes: the price per unit of each item it sells.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        prices: BTreeMap<Id, Amount>,
        /// When.
        at_ms: u64,
    },
    /// A vendor was withdrawn from a voucher programme.
    #[serde(rename = "vendor.withdrawn")]
    VendorWithdrawn {
        /// The programme.
        programme: Id,
        /// The vendor's account.
        vendor: Id,
        /// When.
        at_ms: u64,
    },
    /// A voucher was issued: its value moved from the programme's funding account to escrow.
    #[serde(rename = "voucher.issued")]
    VoucherIssued {
        /// The voucher's id (never its code).
        voucher: Id,
        /// The programme.
        programme: Id,
        /// The beneficiary's pseudonymous id.
        beneficiary: Id,
        /// The value reserved.
        value: Amount,
        /// Commodity vouchers: the items.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<ItemQuantity>,
        /// When it expires.
        expires_at_ms: u64,
        /// Who asked.
        actor: Actor,
        /// When.
        at_ms: u64,
    },
    /// A vendor asked to redeem a voucher: the amount is held on escrow for it.
    #[serde(rename = "redemption.requested")]
    RedemptionRequested {
        /// The redemption's id.
        redemption: Id,
        /// The voucher.
        voucher: Id,
        /// The vendor's account.
        vendor: Id,
        /// What the vendor will be paid.
        amount: Amount,
        /// Commodity vouchers: the items.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<ItemQuantity>,
        /// When the hold lapses unless authorised.
        expires_at_ms: u64,
        /// Who asked.
        actor: Actor,
        /// When.
        at_ms: u64,
    },
    /// The beneficiary authorised a redemption: the vendor was paid from escrow.
    #[serde(rename = "redemption.authorised")]
    RedemptionAuthorised {
        /// The redemption.
        redemption: Id,
        /// How the beneficiary authorised it.
        by: Authorisation,
        /// When.
        at_ms: u64,
    },
    /// A wrong PIN was given for a redemption; at the programme's limit, the voucher locks.
    #[serde(rename = "redemption.pin_failed")]
    RedemptionPinFailed {
        /// The redemption.
        redemption: Id,
        /// Wrong PINs in a row on the voucher, this one included.
        failures: u8,
        /// When this failure locked the voucher: until when.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked_until_ms: Option<u64>,
        /// When.
        at_ms: u64,
    },
    /// A redemption's hold was released without paying the vendor.
    #[serde(rename = "redemption.voided")]
    RedemptionVoided {
        /// The redemption.
        redemption: Id,
        /// Why.
        reason: VoidReason,
        /// When.
        at_ms: u64,
    },
    /// A voucher closed; what it still had in escrow returned to the programme's funding.
    #[serde(rename = "voucher.closed")]
    VoucherClosed {
        /// The voucher.
        voucher: Id,
        /// Why.
        reason: CloseReason,
        /// The value returned to the programme (may be zero).
        returned: Amount,
        /// When.
        at_ms: u64,
    },
    /// A vendor was paid what it redeemed in a programme since its last settlement.
    #[serde(rename = "vendor.settled")]
    VendorSettled {
        /// The settlement's id.
        settlement: Id,
        /// The programme.
        programme: Id,
        /// The vendor's account.
        vendor: Id,
        /// The settlement account paid into.
        to: Id,
        /// How much.
        amount: Amount,
        /// How many redemptions it covers.
        redemptions: u64,
        /// The log index of the vendor's previous settlement in the programme.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_index: Option<u64>,
        /// Who asked.
        actor: Actor,
        /// When.
        at_ms: u64,
    },
    /// A principal was granted a role (see [`crate::access`]).
    #[serde(rename = "principal.granted")]
    PrincipalGranted {
        /// The principal granted.
        grantee: Id,
        /// Its role.
        role: Role,
        /// For a vendor principal: its vendor account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vendor: Option<Id>,
        /// When.
        at_ms: u64,
    },
    /// A principal was revoked.
    #[serde(rename = "principal.revoked")]
    PrincipalRevoked {
        /// The principal revoked.
        grantee: Id,
        /// When.
        at_ms: u64,
    },
}

fn strip_nulls(object: &mut serde_json::Map<String, serde_json::Value>) {
    object.retain(|_, value| !value.is_null());
    for value in object.values_mut() {
        if let serde_json::Value::Object(inner) = value {
            strip_nulls(inner);
        }
    }
}

/// `transfer.posted`, the bulk of every log, written straight out with its members in sorted
/// order: the same bytes as [`Event::to_entry_generic`] (a property test holds them equal) at
/// a fraction of the cost. Strings go through serde_json's own escaping.
#[allow(clippy::too_many_arguments)]
fn transfer_posted_entry(
    transfer: &Id,
    from: &Id,
    to: &Id,
    amount: &Amount,
    programme: &Id,
    actor: Actor,
    reference: Option<&str>,
    at_ms: u64,
    by: Option<&Id>,
) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &str) {
        serde_json::to_writer(&mut *out, text)
            .unwrap_or_else(|_| unreachable!("writing to a Vec cannot fail"));
    }
    // Ids are ASCII letters, digits and `-_.:` (see `Id::parse`): nothing to escape.
    fn id(out: &mut Vec<u8>, id: &Id) {
        debug_assert!(!id.as_str().bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        out.push(b'"');
        out.extend_from_slice(id.as_str().as_bytes());
        out.push(b'"');
    }
    fn number(out: &mut Vec<u8>, value: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[at..]);
    }
    let mut out = Vec::with_capacity(192 + reference.map_or(0, str::len));
    out.extend_from_slice(b"{\"actor\":\"");
    out.extend_from_slice(actor.as_str().as_bytes());
    out.extend_from_slice(b"\",\"amount\":{\"amount\":\"");
    // A decimal string: digits, a sign and a point, nothing to escape.
    out.extend_from_slice(amount.to_decimal_string().as_bytes());
    out.extend_from_slice(b"\",\"currency\":\"");
    out.extend_from_slice(amount.currency().code().as_bytes());
    out.extend_from_slice(b"\"},\"at_ms\":");
    number(&mut out, at_ms);
    out.extend_from_slice(b",\"from\":");
    id(&mut out, from);
    if let Some(by) = by {
        out.extend_from_slice(b",\"principal\":");
        id(&mut out, by);
    }
    out.extend_from_slice(b",\"programme\":");
    id(&mut out, programme);
    if let Some(reference) = reference {
        out.extend_from_slice(b",\"reference\":");
        string(&mut out, reference);
    }
    out.extend_from_slice(b",\"to\":");
    id(&mut out, to);
    out.extend_from_slice(b",\"transfer\":");
    id(&mut out, transfer);
    out.extend_from_slice(b",\"type\":\"transfer.posted\",\"v\":");
    number(&mut out, ENTRY_VERSION);
    out.push(b'}');
    out
}

/// Why bytes are not a valid ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Not JSON, or not an event this version knows.
    #[error("not a ledger event: {0}")]
    Malformed(String),
    /// A schema version this code does not know.
    #[error("unknown entry version {0}")]
    UnknownVersion(u64),
    /// Valid JSON, but not in its one canonical form.
    #[error("entry is not in canonical form")]
    NotCanonical,
}

impl Event {
    /// When the event happened (its batch's time), in ms since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        match self {
            Self::AccountOpened { at_ms, .. }
            | Self::TransferPosted { at_ms, .. }
            | Self::TransferPending { at_ms, .. }
            | Self::PendingPosted { at_ms, .. }
            | Self::PendingVoided { at_ms, .. }
            | Self::PendingExpired { at_ms, .. }
            | Self::TransferReversed { at_ms, .. }
            | Self::LimitsSet { at_ms, .. }
            | Self::AccountFrozen { at_ms, .. }
            | Self::AccountUnfrozen { at_ms, .. }
            | Self::AccountClosed { at_ms, .. }
            | Self::ProgrammeCreated { at_ms, .. }
            | Self::TierDefined { at_ms, .. }
            | Self::TierSet { at_ms, .. }
            | Self::BeneficiaryRegistered { at_ms, .. }
            | Self::BeneficiaryErased { at_ms, .. }
            | Self::VoucherTermsSet { at_ms, .. }
            | Self::VendorCategoriesSet { at_ms, .. }
            | Self::VendorEnrolled { at_ms, .. }
            | Self::VendorWithdrawn { at_ms, .. }
            | Self::VoucherIssued { at_ms, .. }
            | Self::RedemptionRequested { at_ms, .. }
            | Self::RedemptionAuthorised { at_ms, .. }
            | Self::RedemptionPinFailed { at_ms, .. }
            | Self::RedemptionVoided { at_ms, .. }
            | Self::VoucherClosed { at_ms, .. }
            | Self::VendorSettled { at_ms, .. }
            | Self::PrincipalGranted { at_ms, .. }
            | Self::PrincipalRevoked { at_ms, .. } => *at_ms,
        }
    }

    /// The entry's `"type"`: the event's name in past tense.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::AccountOpened { .. } => "account.opened",
            Self::TransferPosted { .. } => "transfer.posted",
            Self::TransferPending { .. } => "transfer.pending",
            Self::PendingPosted { .. } => "pending.posted",
            Self::PendingVoided { .. } => "pending.voided",
            Self::PendingExpired { .. } => "pending.expired",
            Self::TransferReversed { .. } => "transfer.reversed",
            Self::LimitsSet { .. } => "account.limits_set",
            Self::AccountFrozen { .. } => "account.frozen",
            Self::AccountUnfrozen { .. } => "account.unfrozen",
            Self::AccountClosed { .. } => "account.closed",
            Self::ProgrammeCreated { .. } => "programme.created",
            Self::TierDefined { .. } => "tier.defined",
            Self::TierSet { .. } => "account.tier_set",
            Self::BeneficiaryRegistered { .. } => "beneficiary.registered",
            Self::BeneficiaryErased { .. } => "beneficiary.erased",
            Self::VoucherTermsSet { .. } => "programme.voucher_terms_set",
            Self::VendorCategoriesSet { .. } => "vendor.categories_set",
            Self::VendorEnrolled { .. } => "vendor.enrolled",
            Self::VendorWithdrawn { .. } => "vendor.withdrawn",
            Self::VoucherIssued { .. } => "voucher.issued",
            Self::RedemptionRequested { .. } => "redemption.requested",
            Self::RedemptionAuthorised { .. } => "redemption.authorised",
            Self::RedemptionPinFailed { .. } => "redemption.pin_failed",
            Self::RedemptionVoided { .. } => "redemption.voided",
            Self::VoucherClosed { .. } => "voucher.closed",
            Self::VendorSettled { .. } => "vendor.settled",
            Self::PrincipalGranted { .. } => "principal.granted",
            Self::PrincipalRevoked { .. } => "principal.revoked",
        }
    }

    /// Whether it is a voucher event (see [`crate::voucher`]).
    pub fn is_voucher(&self) -> bool {
        matches!(
            self,
            Self::VoucherTermsSet { .. }
                | Self::VendorCategoriesSet { .. }
                | Self::VendorEnrolled { .. }
                | Self::VendorWithdrawn { .. }
                | Self::VoucherIssued { .. }
                | Self::RedemptionRequested { .. }
                | Self::RedemptionAuthorised { .. }
                | Self::RedemptionPinFailed { .. }
                | Self::RedemptionVoided { .. }
                | Self::VoucherClosed { .. }
                | Self::VendorSettled { .. }
        )
    }

    /// A posted single-phase transfer's id and content (what a reversal of it needs); `None`
    /// for any other event.
    pub fn posted_transfer(&self) -> Option<(&Id, TransferRecord)> {
        let Self::TransferPosted {
            transfer, from, to, amount, programme, actor, reference, ..
        } = self
        else {
            return None;
        };
        Some((transfer, TransferRecord::of(from, to, amount, programme, *actor, reference)))
    }

    /// The client-chosen id the event answers for (transfers, holds and operations on them),
    /// by which retries and queries find it.
    pub fn transfer_id(&self) -> Option<&Id> {
        match self {
            Self::TransferPosted { transfer, .. }
            | Self::TransferPending { transfer, .. }
            | Self::PendingPosted { transfer, .. }
            | Self::PendingVoided { transfer, .. }
            | Self::TransferReversed { transfer, .. } => Some(transfer),
            _ => None,
        }
    }

    /// The canonical entry bytes of an event the store's own holder caused.
    pub fn to_entry(&self) -> Vec<u8> {
        self.to_entry_by(None)
    }

    /// The canonical entry bytes, naming the principal that caused the event (`"principal"`, see
    /// [`crate::access`]) if there is one.
    pub fn to_entry_by(&self, by: Option<&Id>) -> Vec<u8> {
        match self {
            Self::TransferPosted {
                transfer,
                from,
                to,
                amount,
                programme,
                actor,
                reference,
                at_ms,
            } => transfer_posted_entry(
                transfer,
                from,
                to,
                amount,
                programme,
                *actor,
                reference.as_deref(),
                *at_ms,
                by,
            ),
            _ => self.to_entry_generic(by),
        }
    }

    /// The canonical bytes by way of a sorted JSON object: right for every event, and the
    /// reference the fast paths are tested against.
    fn to_entry_generic(&self, by: Option<&Id>) -> Vec<u8> {
        // Invariant: events hold only strings, booleans and integers, which always serialize.
        let Ok(serde_json::Value::Object(mut object)) = serde_json::to_value(self) else {
            unreachable!("an event serializes to a JSON object")
        };
        // An absent optional member is left out, never written as null.
        strip_nulls(&mut object);
        object.insert("v".to_owned(), ENTRY_VERSION.into());
        if let Some(by) = by {
            object.insert("principal".to_owned(), by.as_str().into());
        }
        // serde_json's map is a BTreeMap (no `preserve_order`): keys come out sorted.
        serde_json::to_vec(&object).unwrap_or_else(|_| unreachable!("a JSON object serializes"))
    }

    /// Decodes canonical entry bytes, leaving out who caused the event.
    ///
    /// # Errors
    /// The [`EntryError`] saying why the bytes are not a valid entry.
    pub fn from_entry(bytes: &[u8]) -> Result<Self, EntryError> {
        Self::decode_entry(bytes).map(|(event, _)| event)
    }

    /// Decodes canonical entry bytes: the event and the principal that caused it, if any.
    ///
    /// # Errors
    /// The [`EntryError`] saying why the bytes are not a valid entry.
    pub fn decode_entry(bytes: &[u8]) -> Result<(Self, Option<Id>), EntryError> {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        let version = object
            .remove("v")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| EntryError::Malformed("missing version".into()))?;
        if version != ENTRY_VERSION {
            return Err(EntryError::UnknownVersion(version));
        }
        let by = match object.remove("principal") {
            None => None,
            Some(serde_json::Value::String(by)) => {
                Some(Id::parse(&by).map_err(|e| EntryError::Malformed(format!("principal: {e}")))?)
            }
            Some(_) => return Err(EntryError::Malformed("principal: not a string".into())),
        };
        let event: Self = serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| EntryError::Malformed(e.to_string()))?;
        if event.to_entry_by(by.as_ref()) != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok((event, by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_fast_transfer_encoding_is_the_canonical_one(
            minor in any::<i64>(),
            at_ms in any::<u64>(),
            reference in prop::option::of(".{0,40}"),
            actor in prop::sample::select(vec![Actor::Operator, Actor::Vendor, Actor::Beneficiary, Actor::System]),
            currency in prop::sample::select(vec!["JOD", "USD", "XOF", "KWD", "EUR"]),
            ids in prop::array::uniform3("[A-Za-z0-9_.:-]{1,64}"),
        ) {
            let id = |s: &str| Id::parse(s).unwrap();
            let event = Event::TransferPosted {
                transfer: id(&ids[0]),
                from: id(&ids[1]),
                to: id(&ids[2]),
                amount: Amount::from_minor_units(minor, Currency::parse(currency).unwrap()),
                programme: id("prog-1"),
                actor,
                reference,
                at_ms,
            };
            prop_assert_eq!(event.to_entry(), event.to_entry_generic(None));
            prop_assert_eq!(&Event::from_entry(&event.to_entry()).unwrap(), &event);
            let by = Id::parse(&ids[0]).unwrap();
            let attributed = event.to_entry_by(Some(&by));
            prop_assert_eq!(&attributed, &event.to_entry_generic(Some(&by)));
            prop_assert_eq!(Event::decode_entry(&attributed).unwrap(), (event, Some(by)));
        }
    }

    #[test]
    fn entries_are_canonical_json_with_sorted_keys() {
        let jod = Currency::parse("JOD").unwrap();
        let id = |s: &str| Id::parse(s).unwrap();
        let event = Event::TransferPosted {
            transfer: id("t-1"),
            from: id("prog-1"),
            to: id("w-7"),
            amount: Amount::parse("12.5", jod).unwrap(),
            programme: id("prog-1"),
            actor: Actor::Operator,
            reference: None,
            at_ms: 1_764_000_000_000,
        };
        let entry = event.to_entry();
        assert_eq!(
            String::from_utf8(entry.clone()).unwrap(),
            r#"{"actor":"operator","amount":{"amount":"12.500","currency":"JOD"},"at_ms":1764000000000,"from":"prog-1","programme":"prog-1","to":"w-7","transfer":"t-1","type":"transfer.posted","v":1}"#
        );
        assert_eq!(Event::from_entry(&entry).unwrap(), event);
        // The same event with white space, or keys in another order, is refused.
        let spaced = String::from_utf8(entry).unwrap().replace(',', ", ");
        assert_eq!(Event::from_entry(spaced.as_bytes()), Err(EntryError::NotCanonical));
        assert!(matches!(
            Event::from_entry(b"{\"type\":\"nope\",\"v\":1}"),
            Err(EntryError::Malformed(_))
        ));
        assert_eq!(
            Event::from_entry(br#"{"account":"a","at_ms":1,"type":"account.frozen","v":2}"#),
            Err(EntryError::UnknownVersion(2))
        );
    }
}
