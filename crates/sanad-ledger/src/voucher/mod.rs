//! Vouchers: restricted assistance that beneficiaries spend at eligible vendors.
//!
//! A voucher programme is a programme of kind `value_voucher` or `commodity_voucher` with
//! [`VoucherTerms`]: an **escrow** account, a validity window, which vendors are eligible,
//! single- or multi-use, whether partial redemption is allowed, and, for commodities, the items.
//! The money moves like this (see `docs/design/vouchers.md`):
//!
//! | step | money | voucher |
//! |---|---|---|
//! | issue | funding → escrow, the voucher's value | `available = value` |
//! | a vendor asks to redeem | hold on escrow for the vendor | `available -= amount` |
//! | the beneficiary authorises | the hold is posted: escrow → vendor | `redeemed += amount` |
//! | refused, PIN lock, timeout | the hold is released | `available += amount` |
//! | revoked, expired, used up | escrow → funding, what is left | closed |
//! | settlement | vendor → settlement account, what the vendor redeemed | — |
//!
//! The escrow account's balance is always the value of the programme's vouchers still
//! outstanding, so per programme: issued = redeemed + returned + outstanding. The one writer
//! decides redemptions in order against each voucher's own `available` figure, so two vendors
//! racing for its last value get one acceptance and one refusal: no voucher is ever redeemed
//! beyond its value.
//!
//! A commodity voucher reserves each item at its `unit_value`, the most any vendor may be paid
//! per unit; a vendor is paid its own agreed price, and what the voucher reserved beyond that
//! returns to the programme when the voucher closes.
//!
//! Codes ([`code`]) never enter the log: the log names a voucher by a random id, and the
//! engine's registry maps codes to ids.

pub mod code;
pub(crate) mod rules;

use std::collections::{BTreeMap, BTreeSet};

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use sanad_money::{Amount, Id};
use serde::{Deserialize, Serialize};

/// The most items a commodity programme lists.
pub const ITEMS_MAX: usize = 64;
/// The most categories a vendor belongs to.
pub const CATEGORIES_MAX: usize = 16;
/// The most redemptions of one voucher awaiting authorisation at once.
pub const OPEN_REDEMPTIONS_MAX: usize = 16;

/// Which vendors may redeem a programme's vouchers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendors {
    /// The vendors enrolled in the programme (`EnrolVendor`), a list that the agency keeps.
    Enrolled,
    /// Every vendor of this category (`SetVendorCategories`), and any enrolled vendor.
    Category(Id),
}

/// One good that a commodity programme gives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Its id within the programme, such as `rice`.
    pub id: Id,
    /// Display name, such as `Rice`.
    pub name: String,
    /// The unit quantities count, such as `kg`.
    pub unit: String,
    /// Units per voucher, unless the issuance says otherwise.
    pub quantity: u32,
    /// The value reserved per unit: the most a vendor may be paid for one.
    pub unit_value: Amount,
}

/// How a programme's vouchers work.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherTerms {
    /// The account holding the value of outstanding vouchers: of kind `escrow`, in the
    /// programme's currency, serving this programme only. It never changes.
    pub escrow: Id,
    /// Vouchers cannot be redeemed before this time (ms since the Unix epoch).
    pub valid_from_ms: u64,
    /// Vouchers expire at this time at the latest, and none is issued after it.
    pub valid_until_ms: u64,
    /// Which vendors may redeem.
    pub vendors: Vendors,
    /// A voucher is redeemed once; what the redemption leaves returns to the programme.
    pub single_use: bool,
    /// A redemption may take less than all that remains.
    pub partial: bool,
    /// Commodity programmes: the items (1 to [`ITEMS_MAX`]); value programmes: none. Always
    /// written, also empty: the state keeps these terms in snapshots, whose format cannot
    /// skip a field.
    pub items: Vec<Item>,
    /// Wrong PINs in a row that lock a voucher (1 to 10).
    pub pin_attempts: u8,
    /// How long a lock lasts, in ms.
    pub lock_ms: u64,
}

impl VoucherTerms {
    /// An item by id.
    pub fn item(&self, id: &Id) -> Option<&Item> {
        self.items.iter().find(|item| item.id == *id)
    }
}

/// A quantity of one item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemQuantity {
    /// The item's id.
    pub item: Id,
    /// How many units.
    pub quantity: u32,
}

/// One item of a commodity voucher: what it gave and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemBalance {
    /// The item.
    pub item: Id,
    /// The value reserved per unit at issuance.
    pub unit_value: Amount,
    /// Units issued.
    pub issued: u32,
    /// Units redeemed.
    pub redeemed: u32,
    /// Units held by redemptions awaiting authorisation.
    pub held: u32,
}

impl ItemBalance {
    /// Units neither redeemed nor held.
    pub fn remaining(&self) -> u32 {
        self.issued - self.redeemed - self.held
    }
}

/// Why a voucher closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// A single-use voucher was redeemed.
    Used,
    /// Nothing is left to redeem.
    Exhausted,
    /// The agency revoked it.
    Revoked,
    /// Its time was up.
    Expired,
}

/// How a beneficiary authorised a redemption (the engine checked it before asking).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authorisation {
    /// Their PIN, given at the counter.
    Pin,
    /// A reply to the one-time confirmation sent to their phone.
    Confirmation,
}

/// Why a redemption was released without paying the vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoidReason {
    /// The beneficiary refused it, or the vendor withdrew it.
    Refused,
    /// Too many wrong PINs locked the voucher.
    Locked,
    /// Nobody authorised it in time.
    Timeout,
    /// The voucher was revoked or expired while it waited.
    VoucherClosed,
}

/// A voucher as the ledger knows it: no code, no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// Its programme.
    pub programme: Id,
    /// The beneficiary's pseudonymous id.
    pub beneficiary: Id,
    /// The value reserved at issuance.
    pub value: Amount,
    // Invariant: redeemed + held + returned <= value's minor units, each >= 0.
    redeemed_minor: i64,
    held_minor: i64,
    returned_minor: i64,
    /// Commodity vouchers: the items.
    pub items: Vec<ItemBalance>,
    /// When it expires.
    pub expires_at_ms: u64,
    /// Wrong PINs in a row since the last authorisation or lock.
    pub wrong_pins: u8,
    /// Locked until this time (0: never locked).
    pub locked_until_ms: u64,
    /// Redemptions awaiting authorisation, oldest first.
    pub open_redemptions: Vec<Id>,
    /// Redemptions authorised.
    pub redemptions: u32,
    /// `None` while open.
    pub closed: Option<CloseReason>,
    /// The log index of its issuance.
    pub issued_index: u64,
    /// The log index of its closing.
    pub closed_index: Option<u64>,
}

impl Voucher {
    fn minor(&self, minor: i64) -> Amount {
        Amount::from_minor_units(minor, self.value.currency())
    }

    /// Value neither redeemed, held nor returned.
    pub fn available(&self) -> Amount {
        self.minor(self.available_minor())
    }

    fn available_minor(&self) -> i64 {
        self.value.minor_units() - self.redeemed_minor - self.held_minor - self.returned_minor
    }

    /// Value paid to vendors.
    pub fn redeemed(&self) -> Amount {
        self.minor(self.redeemed_minor)
    }

    /// Value held by redemptions awaiting authorisation.
    pub fn held(&self) -> Amount {
        self.minor(self.held_minor)
    }

    /// Value returned to the programme.
    pub fn returned(&self) -> Amount {
        self.minor(self.returned_minor)
    }

    /// Value still in escrow for it: available plus held.
    pub fn outstanding(&self) -> Amount {
        self.minor(self.value.minor_units() - self.redeemed_minor - self.returned_minor)
    }

    /// One item's balance.
    pub fn item(&self, id: &Id) -> Option<&ItemBalance> {
        self.items.iter().find(|balance| balance.item == *id)
    }

    /// Whether nothing remains to be asked for: no value (value vouchers) or no units
    /// (commodity vouchers) beyond what redemptions hold.
    fn nothing_remains(&self) -> bool {
        if self.items.is_empty() {
            self.available_minor() == 0
        } else {
            self.items.iter().all(|item| item.remaining() == 0)
        }
    }

    /// Whether the voucher must close after its last open redemption ended: used once
    /// (single-use), or nothing left at all.
    fn spent(&self, single_use: bool) -> bool {
        self.open_redemptions.is_empty()
            && ((single_use && self.redemptions > 0) || self.nothing_remains())
    }
}

/// Where a redemption stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionState {
    /// Held, awaiting the beneficiary.
    Open,
    /// Authorised and paid.
    Authorised(Authorisation),
    /// Released.
    Voided(VoidReason),
}

/// A redemption: a vendor's claim on a voucher. Its money is a pending transfer from the escrow
/// account to the vendor under the same id (see [`crate::State::pending`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    /// The voucher.
    pub voucher: Id,
    /// The vendor's account.
    pub vendor: Id,
    /// What the vendor is paid.
    pub amount: Amount,
    /// Commodity vouchers: the items and quantities.
    pub items: Vec<ItemQuantity>,
    /// Where it stands.
    pub state: RedemptionState,
    /// The log index of its request.
    pub requested_index: u64,
    /// The log index of its authorisation or release.
    pub ended_index: Option<u64>,
}

/// A vendor in one programme: enrolment, agreed prices, and what it redeemed and was not
/// yet settled for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammeVendor {
    /// Enrolled (and not withdrawn since).
    pub enrolled: bool,
    /// Withdrawn: not eligible, whatever its category.
    pub withdrawn: bool,
    /// Commodity programmes: the agreed price per unit of each item it sells.
    pub prices: BTreeMap<Id, Amount>,
    /// Redeemed and not yet settled, in minor units.
    pub unsettled_minor: i64,
    /// Redemptions not yet settled.
    pub unsettled_redemptions: u64,
    /// The log index of its last settlement in this programme.
    pub last_settlement: Option<u64>,
}

/// What a programme's vouchers did, in minor units: issued = redeemed + returned +
/// outstanding, and outstanding is the escrow account's balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherTotals {
    /// Vouchers issued.
    pub issued: u64,
    /// Their value.
    pub issued_minor: i128,
    /// Redemptions authorised.
    pub redemptions: u64,
    /// Their value.
    pub redeemed_minor: i128,
    /// Value returned to the programme.
    pub returned_minor: i128,
    /// Value settled to vendors.
    pub settled_minor: i128,
}

impl VoucherTotals {
    /// Value issued and neither redeemed nor returned.
    pub fn outstanding_minor(&self) -> i128 {
        self.issued_minor - self.redeemed_minor - self.returned_minor
    }
}

/// One vendor's settlement in one programme.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The programme.
    pub programme: Id,
    /// The vendor's account.
    pub vendor: Id,
    /// The account paid into.
    pub to: Id,
    /// How much.
    pub amount: Amount,
    /// How many redemptions it covers.
    pub redemptions: u64,
    /// The log index of the vendor's previous settlement in the programme: the redemptions it
    /// covers are the vendor's authorised ones between that entry and this one.
    pub since_index: Option<u64>,
    /// Its own log index.
    pub index: u64,
}

/// Everything the ledger knows about vouchers; part of [`crate::State`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VoucherBook {
    /// By programme.
    pub(crate) terms: BTreeMap<Id, VoucherTerms>,
    /// Escrow account → its programme.
    pub(crate) escrows: BTreeMap<Id, Id>,
    // Hash maps: looked up by every redemption step, where ordered maps spent a sixth of the
    // time comparing ids.
    pub(crate) vouchers: HashMap<Id, Voucher>,
    // Invariant: exactly the open vouchers, as (expires_at_ms, id).
    pub(crate) expiries: BTreeSet<(u64, Id)>,
    pub(crate) redemptions: HashMap<Id, Redemption>,
    /// By (programme, vendor).
    pub(crate) vendors: BTreeMap<(Id, Id), ProgrammeVendor>,
    /// Vendor → categories.
    pub(crate) categories: BTreeMap<Id, BTreeSet<Id>>,
    /// By programme.
    pub(crate) totals: BTreeMap<Id, VoucherTotals>,
    pub(crate) settlements: BTreeMap<Id, Settlement>,
}
