//! How voucher commands are decided and their events applied. Each check is written once and
//! used twice: by `decide` on a command's request, and by `apply` on a replayed event's explicit
//! values, so that a log that was not written by this code is held to the same rules.

use std::collections::BTreeSet;

use sanad_money::{Amount, Id};

use super::{
    CATEGORIES_MAX, CloseReason, ITEMS_MAX, ItemBalance, ItemQuantity, OPEN_REDEMPTIONS_MAX,
    ProgrammeVendor, Redemption, RedemptionState, Settlement, Vendors, VoidReason, Voucher,
    VoucherTerms,
};
use crate::state::{Inconsistency, PendingState, State, TransferRecord, Used, check_text};
use crate::{AccountKind, Actor, Command, Context, Event, ProgrammeKind, Rejection};

/// The most wrong PINs in a row a programme may allow before a lock.
const PIN_ATTEMPTS_MAX: u8 = 10;

/// An issuance, checked and resolved.
struct Issue {
    value: Amount,
    items: Vec<ItemQuantity>,
    balances: Vec<ItemBalance>,
    expires_at_ms: u64,
    record: TransferRecord,
}

/// A redemption request, checked and resolved.
struct Request {
    amount: Amount,
    items: Vec<ItemQuantity>,
    record: TransferRecord,
}

fn inconsistent(what: String) -> Inconsistency {
    Inconsistency(what)
}

fn minor_sum(parts: impl IntoIterator<Item = (u32, i64)>, on: &Id) -> Result<i64, Rejection> {
    parts.into_iter().try_fold(0i64, |sum, (quantity, unit)| {
        i64::from(quantity)
            .checked_mul(unit)
            .and_then(|part| sum.checked_add(part))
            .ok_or_else(|| Rejection::AmountOverflow(on.clone()))
    })
}

impl State {
    /// A voucher programme's kind and terms.
    fn terms_of(&self, programme: &Id) -> Result<(ProgrammeKind, &VoucherTerms), Rejection> {
        let known = self
            .programmes
            .get(programme)
            .ok_or_else(|| Rejection::ProgrammeNotFound(programme.clone()))?;
        if known.kind == ProgrammeKind::Cash {
            return Err(Rejection::NotAVoucherProgramme(programme.clone()));
        }
        let terms = self
            .vouchers
            .terms
            .get(programme)
            .ok_or_else(|| Rejection::VoucherTermsMissing(programme.clone()))?;
        Ok((known.kind, terms))
    }

    fn check_terms(&self, programme: &Id, terms: &VoucherTerms) -> Result<(), Rejection> {
        let known = self
            .programmes
            .get(programme)
            .ok_or_else(|| Rejection::ProgrammeNotFound(programme.clone()))?;
        if known.kind == ProgrammeKind::Cash {
            return Err(Rejection::NotAVoucherProgramme(programme.clone()));
        }
        let escrow = self.live_account(&terms.escrow)?;
        let serves_another =
            self.vouchers.escrows.get(&terms.escrow).is_some_and(|owner| owner != programme);
        if escrow.kind() != AccountKind::Escrow
            || escrow.currency() != known.currency
            || escrow.is_closed()
            || serves_another
        {
            return Err(Rejection::NotAnEscrowAccount(terms.escrow.clone()));
        }
        if let Some(existing) = self.vouchers.terms.get(programme)
            && existing.escrow != terms.escrow
        {
            return Err(Rejection::InvalidVoucherTerms("the escrow account cannot change"));
        }
        if terms.valid_from_ms >= terms.valid_until_ms {
            return Err(Rejection::InvalidVoucherTerms("the validity window is empty"));
        }
        if terms.pin_attempts == 0 || terms.pin_attempts > PIN_ATTEMPTS_MAX {
            return Err(Rejection::InvalidVoucherTerms("pin_attempts is 1 to 10"));
        }
        if terms.lock_ms == 0 {
            return Err(Rejection::InvalidVoucherTerms("lock_ms must be positive"));
        }
        match known.kind {
            ProgrammeKind::ValueVoucher if !terms.items.is_empty() => {
                Err(Rejection::InvalidVoucherTerms("a value voucher programme has no items"))
            }
            ProgrammeKind::CommodityVoucher => {
                if terms.items.is_empty() || terms.items.len() > ITEMS_MAX {
                    return Err(Rejection::InvalidVoucherTerms(
                        "a commodity programme lists 1 to 64 items",
                    ));
                }
                let mut seen = BTreeSet::new();
                for item in &terms.items {
                    if !seen.insert(&item.id) {
                        return Err(Rejection::InvalidVoucherTerms("an item is listed twice"));
                    }
                    check_text(&item.name, "name")?;
                    check_text(&item.unit, "unit")?;
                    if item.quantity == 0 {
                        return Err(Rejection::InvalidVoucherTerms("item quantities are positive"));
                    }
                    self.check_price(&item.unit_value, known.currency, &item.id)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_price(
        &self,
        price: &Amount,
        currency: sanad_money::Currency,
        item: &Id,
    ) -> Result<(), Rejection> {
        if price.currency() != currency {
            return Err(Rejection::CurrencyMismatch {
                account: item.clone(),
                expected: currency,
                got: price.currency(),
            });
        }
        if !price.is_positive() {
            return Err(Rejection::AmountMustBePositive);
        }
        Ok(())
    }

    fn vendor_account(&self, vendor: &Id) -> Result<&crate::Account, Rejection> {
        let account = self.live_account(vendor)?;
        if account.kind() != AccountKind::Vendor {
            return Err(Rejection::NotAVendor(vendor.clone()));
        }
        Ok(account)
    }

    fn check_categories(&self, vendor: &Id, categories: &BTreeSet<Id>) -> Result<(), Rejection> {
        self.vendor_account(vendor)?;
        if categories.len() > CATEGORIES_MAX {
            return Err(Rejection::InvalidVoucherTerms("a vendor has at most 16 categories"));
        }
        Ok(())
    }

    fn check_enrolment(
        &self,
        programme: &Id,
        vendor: &Id,
        prices: &std::collections::BTreeMap<Id, Amount>,
    ) -> Result<(), Rejection> {
        let (kind, terms) = self.terms_of(programme)?;
        let account = self.vendor_account(vendor)?;
        let currency = self.programmes[programme].currency;
        if account.currency() != currency {
            return Err(Rejection::CurrencyMismatch {
                account: vendor.clone(),
                expected: account.currency(),
                got: currency,
            });
        }
        if account.is_closed() {
            return Err(Rejection::AccountClosed(vendor.clone()));
        }
        if kind == ProgrammeKind::ValueVoucher && !prices.is_empty() {
            return Err(Rejection::InvalidVoucherTerms("a value voucher programme has no prices"));
        }
        for (item, price) in prices {
            let listed = terms.item(item).ok_or_else(|| Rejection::ItemUnknown(item.clone()))?;
            self.check_price(price, currency, item)?;
            if price.minor_units() > listed.unit_value.minor_units() {
                return Err(Rejection::PriceAboveValue(item.clone()));
            }
        }
        Ok(())
    }

    /// Whether `vendor` may redeem the programme's vouchers.
    fn check_eligible(
        &self,
        programme: &Id,
        terms: &VoucherTerms,
        vendor: &Id,
    ) -> Result<(), Rejection> {
        self.vendor_account(vendor)?;
        let record = self.vouchers.vendors.get(&(programme.clone(), vendor.clone()));
        let eligible = match record {
            Some(record) if record.withdrawn => false,
            Some(record) if record.enrolled => true,
            _ => match &terms.vendors {
                Vendors::Enrolled => false,
                Vendors::Category(category) => self
                    .vouchers
                    .categories
                    .get(vendor)
                    .is_some_and(|categories| categories.contains(category)),
            },
        };
        if !eligible {
            return Err(Rejection::VendorNotEligible(vendor.clone()));
        }
        Ok(())
    }

    /// The checks of an issuance. `value` is given for value vouchers only; `expires_at_ms` is
    /// the latest expiry asked for.
    #[allow(clippy::too_many_arguments)]
    fn check_issue(
        &self,
        programme: &Id,
        beneficiary: &Id,
        value: Option<&Amount>,
        items: &[ItemQuantity],
        expires_at_ms: Option<u64>,
        actor: Actor,
        now_ms: u64,
    ) -> Result<Issue, Rejection> {
        let (kind, terms) = self.terms_of(programme)?;
        match self.beneficiaries.get(beneficiary) {
            None => return Err(Rejection::BeneficiaryNotFound(beneficiary.clone())),
            Some(known) if known.erased => {
                return Err(Rejection::BeneficiaryErased(beneficiary.clone()));
            }
            Some(_) => {}
        }
        if now_ms >= terms.valid_until_ms {
            return Err(Rejection::ProgrammeEnded(programme.clone()));
        }
        let expires_at_ms = expires_at_ms.unwrap_or(u64::MAX).min(terms.valid_until_ms);
        if expires_at_ms <= now_ms || expires_at_ms <= terms.valid_from_ms {
            return Err(Rejection::InvalidVoucherRequest("the voucher would never be valid"));
        }
        let currency = self.programmes[programme].currency;
        let (value, items, balances) = match kind {
            ProgrammeKind::CommodityVoucher => {
                if value.is_some() {
                    return Err(Rejection::InvalidVoucherRequest(
                        "a commodity voucher's value comes from its items",
                    ));
                }
                let items: Vec<ItemQuantity> = if items.is_empty() {
                    terms
                        .items
                        .iter()
                        .map(|item| ItemQuantity { item: item.id.clone(), quantity: item.quantity })
                        .collect()
                } else {
                    items.to_vec()
                };
                let mut balances: Vec<ItemBalance> = Vec::with_capacity(items.len());
                for asked in &items {
                    let listed = terms
                        .item(&asked.item)
                        .ok_or_else(|| Rejection::ItemUnknown(asked.item.clone()))?;
                    if asked.quantity == 0 {
                        return Err(Rejection::InvalidVoucherRequest("quantities are positive"));
                    }
                    if balances.iter().any(|b| b.item == asked.item) {
                        return Err(Rejection::InvalidVoucherRequest("an item is named twice"));
                    }
                    balances.push(ItemBalance {
                        item: asked.item.clone(),
                        unit_value: listed.unit_value,
                        issued: asked.quantity,
                        redeemed: 0,
                        held: 0,
                    });
                }
                let minor = minor_sum(
                    balances.iter().map(|b| (b.issued, b.unit_value.minor_units())),
                    programme,
                )?;
                (Amount::from_minor_units(minor, currency), items, balances)
            }
            _ => {
                if !items.is_empty() {
                    return Err(Rejection::InvalidVoucherRequest("a value voucher has no items"));
                }
                let value = value
                    .ok_or(Rejection::InvalidVoucherRequest("a value voucher needs a value"))?;
                (*value, Vec::new(), Vec::new())
            }
        };
        let funding = self.programmes[programme].funding.clone();
        let record = TransferRecord {
            from: funding,
            to: terms.escrow.clone(),
            amount: value,
            programme: programme.clone(),
            actor,
            reference: None,
        };
        self.check_money(&record, 0, now_ms)?;
        Ok(Issue { value, items, balances, expires_at_ms, record })
    }

    /// A command claiming `id` whose record may exist already: `same` says whether that record
    /// is what the command asks for (`None`: there is none). The same again is an answered
    /// retry (no events); anything else under a used id is a reuse.
    fn retry_of(&self, id: &Id, same: Option<bool>) -> Result<Vec<Event>, Rejection> {
        match same {
            Some(true) => Ok(Vec::new()),
            Some(false) => Err(Rejection::IdempotencyKeyReused(id.clone())),
            None if self.used_get(self.key_of(id)).is_some() => {
                Err(Rejection::IdempotencyKeyReused(id.clone()))
            }
            None => Ok(Vec::new()),
        }
    }

    /// An open voucher that may be redeemed now.
    fn redeemable(&self, id: &Id, now_ms: u64) -> Result<&Voucher, Rejection> {
        let voucher =
            self.vouchers.vouchers.get(id).ok_or_else(|| Rejection::VoucherNotFound(id.clone()))?;
        match voucher.closed {
            Some(CloseReason::Revoked) => return Err(Rejection::VoucherRevoked(id.clone())),
            Some(CloseReason::Expired) => return Err(Rejection::VoucherExpired(id.clone())),
            Some(CloseReason::Used | CloseReason::Exhausted) => {
                return Err(Rejection::VoucherExhausted(id.clone()));
            }
            None => {}
        }
        if now_ms >= voucher.expires_at_ms {
            return Err(Rejection::VoucherExpired(id.clone()));
        }
        let terms = &self.vouchers.terms[&voucher.programme];
        if now_ms < terms.valid_from_ms {
            return Err(Rejection::VoucherNotYetValid(id.clone()));
        }
        if voucher.locked_until_ms > now_ms {
            return Err(Rejection::VoucherLocked {
                voucher: id.clone(),
                until_ms: voucher.locked_until_ms,
            });
        }
        Ok(voucher)
    }

    /// The checks of a redemption request. `amount` is for value vouchers, `items` for
    /// commodity vouchers; either left out asks for all that remains.
    fn check_request(
        &self,
        id: &Id,
        vendor: &Id,
        amount: Option<&Amount>,
        items: &[ItemQuantity],
        actor: Actor,
        now_ms: u64,
    ) -> Result<Request, Rejection> {
        let voucher = self.redeemable(id, now_ms)?;
        let terms = &self.vouchers.terms[&voucher.programme];
        self.check_eligible(&voucher.programme, terms, vendor)?;
        let busy = (terms.single_use && !voucher.open_redemptions.is_empty())
            || voucher.open_redemptions.len() >= OPEN_REDEMPTIONS_MAX;
        if busy {
            return Err(Rejection::RedemptionPending(id.clone()));
        }
        if voucher.nothing_remains() {
            return Err(if voucher.open_redemptions.is_empty() {
                Rejection::VoucherExhausted(id.clone())
            } else {
                Rejection::RedemptionPending(id.clone())
            });
        }
        let (amount, items) = if voucher.items.is_empty() {
            if !items.is_empty() {
                return Err(Rejection::InvalidVoucherRequest(
                    "a value voucher is redeemed by amount",
                ));
            }
            let available = voucher.available();
            let amount = *amount.unwrap_or(&available);
            if !amount.is_positive() {
                return Err(Rejection::AmountMustBePositive);
            }
            if amount.currency() == available.currency()
                && amount.minor_units() > available.minor_units()
            {
                return Err(Rejection::AmountExceedsVoucher(available));
            }
            if !terms.partial && amount != available {
                return Err(Rejection::PartialRedemptionNotAllowed);
            }
            (amount, Vec::new())
        } else {
            if amount.is_some() {
                return Err(Rejection::InvalidVoucherRequest(
                    "a commodity voucher is redeemed by items",
                ));
            }
            let remaining: Vec<ItemQuantity> = voucher
                .items
                .iter()
                .filter(|item| item.remaining() > 0)
                .map(|item| ItemQuantity { item: item.item.clone(), quantity: item.remaining() })
                .collect();
            let items = if items.is_empty() { remaining.clone() } else { items.to_vec() };
            let prices = self
                .vouchers
                .vendors
                .get(&(voucher.programme.clone(), vendor.clone()))
                .map(|record| &record.prices);
            let mut parts = Vec::with_capacity(items.len());
            for (n, asked) in items.iter().enumerate() {
                let balance = voucher
                    .item(&asked.item)
                    .ok_or_else(|| Rejection::ItemUnknown(asked.item.clone()))?;
                if asked.quantity == 0 {
                    return Err(Rejection::InvalidVoucherRequest("quantities are positive"));
                }
                if items[..n].iter().any(|earlier| earlier.item == asked.item) {
                    return Err(Rejection::InvalidVoucherRequest("an item is named twice"));
                }
                if asked.quantity > balance.remaining() {
                    return Err(Rejection::ItemExceedsVoucher(asked.item.clone()));
                }
                let price = prices
                    .and_then(|prices| prices.get(&asked.item))
                    .ok_or_else(|| Rejection::ItemNotPriced(asked.item.clone()))?;
                if price.minor_units() > balance.unit_value.minor_units() {
                    return Err(Rejection::PriceAboveValue(asked.item.clone()));
                }
                parts.push((asked.quantity, price.minor_units()));
            }
            let mut sorted = items.clone();
            sorted.sort();
            let mut all = remaining;
            all.sort();
            if !terms.partial && sorted != all {
                return Err(Rejection::PartialRedemptionNotAllowed);
            }
            let minor = minor_sum(parts, vendor)?;
            (Amount::from_minor_units(minor, voucher.value.currency()), items)
        };
        let record = TransferRecord {
            from: terms.escrow.clone(),
            to: vendor.clone(),
            amount,
            programme: voucher.programme.clone(),
            actor,
            reference: None,
        };
        self.check_money(&record, 0, now_ms)?;
        Ok(Request { amount, items, record })
    }

    /// An open redemption and its voucher.
    fn open_redemption(&self, id: &Id) -> Result<(&Redemption, &Voucher), Rejection> {
        let redemption = self
            .vouchers
            .redemptions
            .get(id)
            .ok_or_else(|| Rejection::RedemptionNotFound(id.clone()))?;
        if redemption.state != RedemptionState::Open {
            return Err(Rejection::RedemptionNotPending(id.clone()));
        }
        Ok((redemption, &self.vouchers.vouchers[&redemption.voucher]))
    }

    /// The checks of an authorisation.
    fn check_authorisation(&self, id: &Id, now_ms: u64) -> Result<TransferRecord, Rejection> {
        let (redemption, voucher) = self.open_redemption(id)?;
        if voucher.locked_until_ms > now_ms {
            return Err(Rejection::VoucherLocked {
                voucher: redemption.voucher.clone(),
                until_ms: voucher.locked_until_ms,
            });
        }
        let pending = &self.pendings[id];
        if now_ms >= pending.expires_at_ms {
            return Err(Rejection::RedemptionNotPending(id.clone()));
        }
        self.check_money(&pending.record, pending.record.amount.minor_units(), now_ms)?;
        Ok(pending.record.clone())
    }

    /// The voucher as it is once `redemption` is paid.
    fn after_authorisation(voucher: &Voucher, id: &Id, redemption: &Redemption) -> Voucher {
        let mut after = voucher.clone();
        let minor = redemption.amount.minor_units();
        after.held_minor -= minor;
        after.redeemed_minor += minor;
        for asked in &redemption.items {
            if let Some(balance) = after.items.iter_mut().find(|b| b.item == asked.item) {
                balance.held -= asked.quantity;
                balance.redeemed += asked.quantity;
            }
        }
        after.open_redemptions.retain(|open| open != id);
        after.redemptions += 1;
        after.wrong_pins = 0;
        after
    }

    /// What must go back to the programme when `voucher` closes (its holds released): all it
    /// still has in escrow.
    fn check_return(&self, voucher: &Voucher) -> Result<(Amount, TransferRecord), Rejection> {
        let returned = voucher.outstanding();
        let terms = &self.vouchers.terms[&voucher.programme];
        let record = TransferRecord {
            from: terms.escrow.clone(),
            to: self.programmes[&voucher.programme].funding.clone(),
            amount: returned,
            programme: voucher.programme.clone(),
            actor: Actor::System,
            reference: None,
        };
        // The programme's own money coming back: no limit may keep it in escrow, only a
        // closed or frozen account stops it.
        if returned.is_positive() {
            for account in [&record.from, &record.to] {
                let account = self.live_account(account)?;
                if account.is_closed() {
                    return Err(Rejection::AccountClosed(account.id().clone()));
                }
                if account.is_frozen() {
                    return Err(Rejection::AccountFrozen(account.id().clone()));
                }
            }
        }
        Ok((returned, record))
    }

    /// The events that close `voucher` for `reason`: its open redemptions released first.
    fn closing(
        &self,
        id: &Id,
        voucher: &Voucher,
        reason: CloseReason,
        released: VoidReason,
        at_ms: u64,
    ) -> Result<Vec<Event>, Rejection> {
        let (returned, _) = self.check_return(voucher)?;
        let mut events: Vec<Event> = voucher
            .open_redemptions
            .iter()
            .map(|redemption| Event::RedemptionVoided {
                redemption: redemption.clone(),
                reason: released,
                at_ms,
            })
            .collect();
        events.push(Event::VoucherClosed { voucher: id.clone(), reason, returned, at_ms });
        Ok(events)
    }

    fn check_settlement(
        &self,
        programme: &Id,
        vendor: &Id,
        to: &Id,
        actor: Actor,
        now_ms: u64,
    ) -> Result<(&ProgrammeVendor, TransferRecord), Rejection> {
        self.terms_of(programme)?;
        self.vendor_account(vendor)?;
        let record = self
            .vouchers
            .vendors
            .get(&(programme.clone(), vendor.clone()))
            .filter(|record| record.unsettled_minor > 0)
            .ok_or_else(|| Rejection::NothingToSettle(vendor.clone()))?;
        if self.live_account(to)?.kind() != AccountKind::Settlement {
            return Err(Rejection::NotASettlementAccount(to.clone()));
        }
        let currency = self.programmes[programme].currency;
        let transfer = TransferRecord {
            from: vendor.clone(),
            to: to.clone(),
            amount: Amount::from_minor_units(record.unsettled_minor, currency),
            programme: programme.clone(),
            actor,
            reference: None,
        };
        self.check_money(&transfer, 0, now_ms)?;
        Ok((record, transfer))
    }

    /// Decides a voucher command (see [`crate::decide`]).
    pub(crate) fn decide_voucher(
        &self,
        command: &Command,
        context: &Context,
    ) -> Result<Vec<Event>, Rejection> {
        let at_ms = context.now_ms;
        match command {
            Command::SetVoucherTerms { programme, terms } => {
                if self.vouchers.terms.get(programme) == Some(terms) {
                    return Ok(Vec::new());
                }
                self.check_terms(programme, terms)?;
                Ok(vec![Event::VoucherTermsSet {
                    programme: programme.clone(),
                    terms: terms.clone(),
                    at_ms,
                }])
            }
            Command::SetVendorCategories { vendor, categories } => {
                self.check_categories(vendor, categories)?;
                let current = self.vouchers.categories.get(vendor);
                if current.map_or(categories.is_empty(), |current| current == categories) {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::VendorCategoriesSet {
                    vendor: vendor.clone(),
                    categories: categories.clone(),
                    at_ms,
                }])
            }
            Command::EnrolVendor { programme, vendor, prices } => {
                self.check_enrolment(programme, vendor, prices)?;
                let key = (programme.clone(), vendor.clone());
                if self
                    .vouchers
                    .vendors
                    .get(&key)
                    .is_some_and(|record| record.enrolled && record.prices == *prices)
                {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::VendorEnrolled {
                    programme: programme.clone(),
                    vendor: vendor.clone(),
                    prices: prices.clone(),
                    at_ms,
                }])
            }
            Command::WithdrawVendor { programme, vendor } => {
                self.terms_of(programme)?;
                self.vendor_account(vendor)?;
                let key = (programme.clone(), vendor.clone());
                if self.vouchers.vendors.get(&key).is_some_and(|record| record.withdrawn) {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::VendorWithdrawn {
                    programme: programme.clone(),
                    vendor: vendor.clone(),
                    at_ms,
                }])
            }
            Command::IssueVoucher {
                id,
                programme,
                beneficiary,
                value,
                items,
                expires_at_ms,
                actor,
            } => {
                if let Some(existing) = self.vouchers.vouchers.get(id) {
                    let same = existing.programme == *programme
                        && existing.beneficiary == *beneficiary
                        && value.is_none_or(|value| value == existing.value)
                        && (items.is_empty()
                            || items
                                .iter()
                                .map(|i| (&i.item, i.quantity))
                                .eq(existing.items.iter().map(|b| (&b.item, b.issued))));
                    return self.retry_of(id, Some(same));
                }
                self.retry_of(id, None)?;
                let issue = self.check_issue(
                    programme,
                    beneficiary,
                    value.as_ref(),
                    items,
                    *expires_at_ms,
                    *actor,
                    at_ms,
                )?;
                Ok(vec![Event::VoucherIssued {
                    voucher: id.clone(),
                    programme: programme.clone(),
                    beneficiary: beneficiary.clone(),
                    value: issue.value,
                    items: issue.items,
                    expires_at_ms: issue.expires_at_ms,
                    actor: *actor,
                    at_ms,
                }])
            }
            Command::RequestRedemption {
                id,
                voucher,
                vendor,
                amount,
                items,
                timeout_ms,
                actor,
            } => {
                if let Some(existing) = self.vouchers.redemptions.get(id) {
                    let same = existing.voucher == *voucher
                        && existing.vendor == *vendor
                        && amount.is_none_or(|amount| amount == existing.amount)
                        && (items.is_empty() || *items == existing.items);
                    return self.retry_of(id, Some(same));
                }
                self.retry_of(id, None)?;
                let request =
                    self.check_request(voucher, vendor, amount.as_ref(), items, *actor, at_ms)?;
                let expires_by = self.vouchers.vouchers[voucher].expires_at_ms;
                Ok(vec![Event::RedemptionRequested {
                    redemption: id.clone(),
                    voucher: voucher.clone(),
                    vendor: vendor.clone(),
                    amount: request.amount,
                    items: request.items,
                    expires_at_ms: at_ms.saturating_add(*timeout_ms).min(expires_by),
                    actor: *actor,
                    at_ms,
                }])
            }
            Command::AuthoriseRedemption { redemption, by } => {
                if let Some(RedemptionState::Authorised(_)) =
                    self.vouchers.redemptions.get(redemption).map(|r| r.state)
                {
                    return Ok(Vec::new());
                }
                self.check_authorisation(redemption, at_ms)?;
                let known = &self.vouchers.redemptions[redemption];
                let voucher = &self.vouchers.vouchers[&known.voucher];
                let mut events = vec![Event::RedemptionAuthorised {
                    redemption: redemption.clone(),
                    by: *by,
                    at_ms,
                }];
                let after = Self::after_authorisation(voucher, redemption, known);
                let single_use = self.vouchers.terms[&voucher.programme].single_use;
                if after.spent(single_use) {
                    let reason =
                        if single_use { CloseReason::Used } else { CloseReason::Exhausted };
                    // Nothing is open any more: the closing releases nothing.
                    events.extend(self.closing(
                        &known.voucher,
                        &after,
                        reason,
                        VoidReason::VoucherClosed,
                        at_ms,
                    )?);
                }
                Ok(events)
            }
            Command::RecordPinFailure { redemption } => {
                let (_, voucher) = self.open_redemption(redemption)?;
                let terms = &self.vouchers.terms[&voucher.programme];
                let failures = voucher.wrong_pins.saturating_add(1);
                if failures < terms.pin_attempts {
                    return Ok(vec![Event::RedemptionPinFailed {
                        redemption: redemption.clone(),
                        failures,
                        locked_until_ms: None,
                        at_ms,
                    }]);
                }
                Ok(vec![
                    Event::RedemptionPinFailed {
                        redemption: redemption.clone(),
                        failures,
                        locked_until_ms: Some(at_ms.saturating_add(terms.lock_ms)),
                        at_ms,
                    },
                    Event::RedemptionVoided {
                        redemption: redemption.clone(),
                        reason: VoidReason::Locked,
                        at_ms,
                    },
                ])
            }
            Command::RefuseRedemption { redemption } => {
                if let Some(RedemptionState::Voided(VoidReason::Refused)) =
                    self.vouchers.redemptions.get(redemption).map(|r| r.state)
                {
                    return Ok(Vec::new());
                }
                self.open_redemption(redemption)?;
                Ok(vec![Event::RedemptionVoided {
                    redemption: redemption.clone(),
                    reason: VoidReason::Refused,
                    at_ms,
                }])
            }
            Command::RevokeVoucher { voucher: id } => {
                let voucher = self
                    .vouchers
                    .vouchers
                    .get(id)
                    .ok_or_else(|| Rejection::VoucherNotFound(id.clone()))?;
                match voucher.closed {
                    Some(CloseReason::Revoked) => Ok(Vec::new()),
                    Some(CloseReason::Expired) => Err(Rejection::VoucherExpired(id.clone())),
                    Some(_) => Err(Rejection::VoucherExhausted(id.clone())),
                    None => self.closing(
                        id,
                        voucher,
                        CloseReason::Revoked,
                        VoidReason::VoucherClosed,
                        at_ms,
                    ),
                }
            }
            Command::Settle { id, programme, vendor, to, actor } => {
                if let Some(existing) = self.vouchers.settlements.get(id) {
                    let same = existing.programme == *programme
                        && existing.vendor == *vendor
                        && existing.to == *to;
                    return self.retry_of(id, Some(same));
                }
                self.retry_of(id, None)?;
                let (record, transfer) =
                    self.check_settlement(programme, vendor, to, *actor, at_ms)?;
                Ok(vec![Event::VendorSettled {
                    settlement: id.clone(),
                    programme: programme.clone(),
                    vendor: vendor.clone(),
                    to: to.clone(),
                    amount: transfer.amount,
                    redemptions: record.unsettled_redemptions,
                    since_index: record.last_settlement,
                    actor: *actor,
                    at_ms,
                }])
            }
            _ => unreachable!("not a voucher command: {command:?}"),
        }
    }

    /// The vouchers due to expire by `now_ms`, with their open redemptions released first;
    /// vouchers whose value cannot go back (a frozen or closed account) wait. At most `room`
    /// events, skipping redemptions already released in `released`.
    pub(crate) fn expire_vouchers(
        &self,
        now_ms: u64,
        room: usize,
        released: &BTreeSet<Id>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for (_, id) in self.vouchers.expiries.iter().take_while(|(at, _)| *at <= now_ms) {
            if events.len() >= room {
                break;
            }
            let voucher = &self.vouchers.vouchers[id];
            let Ok((returned, _)) = self.check_return(voucher) else { continue };
            events.extend(
                voucher.open_redemptions.iter().filter(|open| !released.contains(*open)).map(
                    |open| Event::RedemptionVoided {
                        redemption: open.clone(),
                        reason: VoidReason::Timeout,
                        at_ms: now_ms,
                    },
                ),
            );
            events.push(Event::VoucherClosed {
                voucher: id.clone(),
                reason: CloseReason::Expired,
                returned,
                at_ms: now_ms,
            });
        }
        events
    }

    /// Applies a voucher event; `verify` checks it as [`Self::decide_voucher`] would have.
    pub(crate) fn apply_voucher(
        &mut self,
        event: &Event,
        verify: bool,
    ) -> Result<(), Inconsistency> {
        match event {
            Event::VoucherTermsSet { programme, terms, .. } => {
                self.check_terms(programme, terms)?;
                self.vouchers.escrows.insert(terms.escrow.clone(), programme.clone());
                self.vouchers.totals.entry(programme.clone()).or_default();
                self.vouchers.terms.insert(programme.clone(), terms.clone());
            }
            Event::VendorCategoriesSet { vendor, categories, .. } => {
                self.check_categories(vendor, categories)?;
                if categories.is_empty() {
                    self.vouchers.categories.remove(vendor);
                } else {
                    self.vouchers.categories.insert(vendor.clone(), categories.clone());
                }
            }
            Event::VendorEnrolled { programme, vendor, prices, .. } => {
                self.check_enrolment(programme, vendor, prices)?;
                let record =
                    self.vouchers.vendors.entry((programme.clone(), vendor.clone())).or_default();
                record.enrolled = true;
                record.withdrawn = false;
                record.prices = prices.clone();
            }
            Event::VendorWithdrawn { programme, vendor, .. } => {
                self.terms_of(programme)?;
                self.vendor_account(vendor)?;
                let record =
                    self.vouchers.vendors.entry((programme.clone(), vendor.clone())).or_default();
                record.enrolled = false;
                record.withdrawn = true;
            }
            Event::VoucherIssued {
                voucher,
                programme,
                beneficiary,
                value,
                items,
                expires_at_ms,
                actor,
                at_ms,
            } => {
                let commodity = self.programmes.get(programme).map(|p| p.kind)
                    == Some(ProgrammeKind::CommodityVoucher);
                let issue = self.check_issue(
                    programme,
                    beneficiary,
                    (!commodity).then_some(value),
                    items,
                    Some(*expires_at_ms),
                    *actor,
                    *at_ms,
                )?;
                if issue.value != *value
                    || issue.expires_at_ms != *expires_at_ms
                    || issue.items != *items
                {
                    return Err(inconsistent(format!(
                        "voucher {voucher}: value or expiry do not add up"
                    )));
                }
                if self.vouchers.vouchers.contains_key(voucher) {
                    return Err(inconsistent(format!("voucher {voucher} issued twice")));
                }
                self.claim_id(voucher, &Used::Voucher { programme, beneficiary }, verify)?;
                let minor = value.minor_units();
                self.move_money(&issue.record.from, &issue.record.to, minor, *at_ms)?;
                let totals = self.vouchers.totals.entry(programme.clone()).or_default();
                totals.issued += 1;
                totals.issued_minor += i128::from(minor);
                self.vouchers.expiries.insert((*expires_at_ms, voucher.clone()));
                let issued = Voucher {
                    programme: programme.clone(),
                    beneficiary: beneficiary.clone(),
                    value: *value,
                    redeemed_minor: 0,
                    held_minor: 0,
                    returned_minor: 0,
                    items: issue.balances,
                    expires_at_ms: *expires_at_ms,
                    wrong_pins: 0,
                    locked_until_ms: 0,
                    open_redemptions: Vec::new(),
                    redemptions: 0,
                    closed: None,
                    issued_index: self.next_index,
                    closed_index: None,
                };
                self.vouchers.vouchers.insert(voucher.clone(), issued);
                self.check_escrow(programme)?;
            }
            Event::RedemptionRequested {
                redemption,
                voucher,
                vendor,
                amount,
                items,
                expires_at_ms,
                actor,
                at_ms,
            } => {
                let record = if verify {
                    let by_value =
                        self.vouchers.vouchers.get(voucher).is_some_and(|v| v.items.is_empty());
                    let request = self.check_request(
                        voucher,
                        vendor,
                        by_value.then_some(amount),
                        items,
                        *actor,
                        *at_ms,
                    )?;
                    let known = &self.vouchers.vouchers[voucher];
                    if request.amount != *amount
                        || request.items != *items
                        || *expires_at_ms > known.expires_at_ms
                    {
                        return Err(inconsistent(format!(
                            "redemption {redemption} does not add up"
                        )));
                    }
                    request.record
                } else {
                    // Just decided from this state: the checks held.
                    let programme = &self.vouchers.vouchers[voucher].programme;
                    TransferRecord {
                        from: self.vouchers.terms[programme].escrow.clone(),
                        to: vendor.clone(),
                        amount: *amount,
                        programme: programme.clone(),
                        actor: *actor,
                        reference: None,
                    }
                };
                self.claim_id(redemption, &Used::Redemption { voucher, vendor }, verify)?;
                self.hold(redemption, record, *expires_at_ms)?;
                let held = self
                    .vouchers
                    .vouchers
                    .get_mut(voucher)
                    .ok_or_else(|| inconsistent(format!("unknown voucher {voucher}")))?;
                held.held_minor += amount.minor_units();
                for asked in items {
                    if let Some(balance) = held.items.iter_mut().find(|b| b.item == asked.item) {
                        balance.held += asked.quantity;
                    }
                }
                held.open_redemptions.push(redemption.clone());
                self.vouchers.redemptions.insert(
                    redemption.clone(),
                    Redemption {
                        voucher: voucher.clone(),
                        vendor: vendor.clone(),
                        amount: *amount,
                        items: items.clone(),
                        state: RedemptionState::Open,
                        requested_index: self.next_index,
                        ended_index: None,
                    },
                );
            }
            Event::RedemptionAuthorised { redemption, by, at_ms } => {
                if verify {
                    self.check_authorisation(redemption, *at_ms)?;
                }
                let record = self.finish_pending(redemption, PendingState::Posted)?;
                let minor = record.amount.minor_units();
                self.move_money(&record.from, &record.to, minor, *at_ms)?;
                let known = self.vouchers.redemptions[redemption].clone();
                let voucher = &self.vouchers.vouchers[&known.voucher];
                let after = Self::after_authorisation(voucher, redemption, &known);
                let programme = after.programme.clone();
                self.vouchers.vouchers.insert(known.voucher.clone(), after);
                let vendor =
                    self.vouchers.vendors.entry((programme.clone(), known.vendor)).or_default();
                vendor.unsettled_minor += minor;
                vendor.unsettled_redemptions += 1;
                let totals = self.vouchers.totals.entry(programme.clone()).or_default();
                totals.redemptions += 1;
                totals.redeemed_minor += i128::from(minor);
                self.end_redemption(redemption, RedemptionState::Authorised(*by));
                self.check_escrow(&programme)?;
            }
            Event::RedemptionPinFailed { redemption, failures, locked_until_ms, at_ms } => {
                let (_, voucher) = self.open_redemption(redemption)?;
                let terms = &self.vouchers.terms[&voucher.programme];
                let expected = voucher.wrong_pins.saturating_add(1);
                let lock =
                    (expected >= terms.pin_attempts).then(|| at_ms.saturating_add(terms.lock_ms));
                if *failures != expected || *locked_until_ms != lock {
                    return Err(inconsistent(format!(
                        "redemption {redemption}: PIN failure count does not follow"
                    )));
                }
                let voucher_id = self.vouchers.redemptions[redemption].voucher.clone();
                let voucher = self.voucher_mut(&voucher_id)?;
                match lock {
                    Some(until) => {
                        voucher.locked_until_ms = until;
                        voucher.wrong_pins = 0;
                    }
                    None => voucher.wrong_pins = *failures,
                }
            }
            Event::RedemptionVoided { redemption, reason, at_ms } => {
                let (_, voucher) = self.open_redemption(redemption)?;
                let pending = &self.pendings[redemption];
                let allowed = match reason {
                    VoidReason::Refused | VoidReason::VoucherClosed => true,
                    VoidReason::Locked => voucher.locked_until_ms > *at_ms,
                    VoidReason::Timeout => *at_ms >= pending.expires_at_ms,
                };
                if !allowed {
                    return Err(inconsistent(format!(
                        "redemption {redemption} cannot be released for {reason:?}"
                    )));
                }
                let state = if *reason == VoidReason::Timeout {
                    PendingState::Expired
                } else {
                    PendingState::Voided
                };
                self.finish_pending(redemption, state)?;
                let known = self.vouchers.redemptions[redemption].clone();
                let voucher = self.voucher_mut(&known.voucher)?;
                voucher.held_minor -= known.amount.minor_units();
                for asked in &known.items {
                    if let Some(balance) = voucher.items.iter_mut().find(|b| b.item == asked.item) {
                        balance.held -= asked.quantity;
                    }
                }
                voucher.open_redemptions.retain(|open| open != redemption);
                self.end_redemption(redemption, RedemptionState::Voided(*reason));
            }
            Event::VoucherClosed { voucher: id, reason, returned, at_ms } => {
                let voucher = self
                    .vouchers
                    .vouchers
                    .get(id)
                    .ok_or_else(|| inconsistent(format!("unknown voucher {id}")))?;
                let single_use = self.vouchers.terms[&voucher.programme].single_use;
                let allowed = voucher.closed.is_none()
                    && voucher.open_redemptions.is_empty()
                    && match reason {
                        CloseReason::Used => single_use && voucher.redemptions > 0,
                        CloseReason::Exhausted => voucher.nothing_remains(),
                        CloseReason::Revoked => true,
                        CloseReason::Expired => *at_ms >= voucher.expires_at_ms,
                    };
                if !allowed {
                    return Err(inconsistent(format!("voucher {id} cannot close as {reason:?}")));
                }
                let (owed, record) = self.check_return(voucher)?;
                if owed != *returned {
                    return Err(inconsistent(format!(
                        "voucher {id} returns {returned}, not {owed}"
                    )));
                }
                let programme = voucher.programme.clone();
                let expires_at_ms = voucher.expires_at_ms;
                let minor = returned.minor_units();
                if minor > 0 {
                    self.move_money(&record.from, &record.to, minor, *at_ms)?;
                }
                let index = self.next_index;
                let closed = self.voucher_mut(id)?;
                closed.returned_minor += minor;
                closed.closed = Some(*reason);
                closed.closed_index = Some(index);
                self.vouchers.expiries.remove(&(expires_at_ms, id.clone()));
                self.vouchers.totals.entry(programme.clone()).or_default().returned_minor +=
                    i128::from(minor);
                self.check_escrow(&programme)?;
            }
            Event::VendorSettled {
                settlement,
                programme,
                vendor,
                to,
                amount,
                redemptions,
                since_index,
                actor,
                at_ms,
            } => {
                let (record, transfer) =
                    self.check_settlement(programme, vendor, to, *actor, *at_ms)?;
                if transfer.amount != *amount
                    || record.unsettled_redemptions != *redemptions
                    || record.last_settlement != *since_index
                {
                    return Err(inconsistent(format!("settlement {settlement} does not add up")));
                }
                self.claim_id(settlement, &Used::Settled { programme, vendor, to }, verify)?;
                self.move_money(vendor, to, amount.minor_units(), *at_ms)?;
                let index = self.next_index;
                let record =
                    self.vouchers.vendors.entry((programme.clone(), vendor.clone())).or_default();
                record.unsettled_minor = 0;
                record.unsettled_redemptions = 0;
                record.last_settlement = Some(index);
                self.vouchers.totals.entry(programme.clone()).or_default().settled_minor +=
                    i128::from(amount.minor_units());
                self.vouchers.settlements.insert(
                    settlement.clone(),
                    Settlement {
                        programme: programme.clone(),
                        vendor: vendor.clone(),
                        to: to.clone(),
                        amount: *amount,
                        redemptions: *redemptions,
                        since_index: *since_index,
                        index,
                    },
                );
            }
            _ => unreachable!("not a voucher event: {event:?}"),
        }
        Ok(())
    }

    fn voucher_mut(&mut self, id: &Id) -> Result<&mut Voucher, Inconsistency> {
        self.vouchers
            .vouchers
            .get_mut(id)
            .ok_or_else(|| inconsistent(format!("unknown voucher {id}")))
    }

    fn end_redemption(&mut self, id: &Id, state: RedemptionState) {
        let index = self.next_index;
        if let Some(redemption) = self.vouchers.redemptions.get_mut(id) {
            redemption.state = state;
            redemption.ended_index = Some(index);
        }
    }

    /// The escrow invariant: the escrow account holds exactly the value of the programme's
    /// vouchers still outstanding, and its holds are their open redemptions.
    fn check_escrow(&self, programme: &Id) -> Result<(), Inconsistency> {
        let terms = &self.vouchers.terms[programme];
        let totals = self.vouchers.totals.get(programme).copied().unwrap_or_default();
        let escrow = self
            .accounts
            .get(&terms.escrow)
            .ok_or_else(|| inconsistent(format!("unknown escrow {}", terms.escrow)))?;
        if i128::from(escrow.balance().minor_units()) != totals.outstanding_minor() {
            return Err(inconsistent(format!(
                "escrow {} holds {} but the programme's vouchers have {} outstanding",
                terms.escrow,
                escrow.balance(),
                totals.outstanding_minor()
            )));
        }
        Ok(())
    }

    /// The log index of the entry that already did what a voucher command asks, for answering
    /// a retry (see [`State::answer_index`]).
    pub(crate) fn voucher_answer_index(&self, command: &Command) -> Option<u64> {
        match command {
            Command::AuthoriseRedemption { redemption, .. }
            | Command::RefuseRedemption { redemption } => {
                self.vouchers.redemptions.get(redemption)?.ended_index
            }
            Command::RevokeVoucher { voucher } => self.vouchers.vouchers.get(voucher)?.closed_index,
            Command::IssueVoucher { id, .. } => Some(self.vouchers.vouchers.get(id)?.issued_index),
            Command::RequestRedemption { id, .. } => {
                Some(self.vouchers.redemptions.get(id)?.requested_index)
            }
            Command::Settle { id, .. } => Some(self.vouchers.settlements.get(id)?.index),
            _ => None,
        }
    }

    /// The accounts a voucher event touched, for account histories.
    pub(crate) fn voucher_accounts_of<'a>(&'a self, event: &'a Event) -> [Option<&'a Id>; 2] {
        let escrow_of = |programme: &Id| self.vouchers.terms.get(programme).map(|t| &t.escrow);
        let funding_of = |programme: &Id| self.programmes.get(programme).map(|p| &p.funding);
        match event {
            Event::VoucherTermsSet { terms, .. } => [Some(&terms.escrow), None],
            Event::VendorCategoriesSet { vendor, .. }
            | Event::VendorEnrolled { vendor, .. }
            | Event::VendorWithdrawn { vendor, .. } => [Some(vendor), None],
            Event::VoucherIssued { programme, .. } => [funding_of(programme), escrow_of(programme)],
            Event::RedemptionRequested { voucher, vendor, .. } => {
                let programme = self.vouchers.vouchers.get(voucher).map(|v| &v.programme);
                [programme.and_then(escrow_of), Some(vendor)]
            }
            Event::RedemptionAuthorised { redemption, .. }
            | Event::RedemptionVoided { redemption, .. } => self
                .pendings
                .get(redemption)
                .map_or([None, None], |p| [Some(&p.record.from), Some(&p.record.to)]),
            Event::VoucherClosed { voucher, returned, .. } if returned.is_positive() => {
                let programme = self.vouchers.vouchers.get(voucher).map(|v| &v.programme);
                [programme.and_then(escrow_of), programme.and_then(funding_of)]
            }
            Event::VendorSettled { vendor, to, .. } => [Some(vendor), Some(to)],
            _ => [None, None],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_quantities_and_prices_refuse_overflow() {
        let id = Id::parse("v").unwrap_or_else(|_| unreachable!());
        assert_eq!(minor_sum([(2, 150), (3, 10)], &id), Ok(330));
        assert_eq!(minor_sum([(u32::MAX, i64::MAX)], &id), Err(Rejection::AmountOverflow(id)));
    }
}
