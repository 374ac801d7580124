//! Vouchers, by property and by rule.
//!
//! The property test runs random sequences of issue / request / authorise / wrong PIN /
//! refuse / revoke / settle / time passing / expiry (with retries) over a value programme and a
//! commodity programme, and after every step checks, against tallies it keeps itself from the
//! events:
//!
//! - money is conserved per programme: issued = redeemed + returned + outstanding, and the
//!   escrow account holds exactly what is outstanding, its holds exactly what is held;
//! - no voucher is ever redeemed beyond its value, nor any item beyond its quantity;
//! - every vendor is settled exactly what it redeemed, never more;
//! - a refused command changes nothing, the whole state replays from the encoded log, and it
//!   survives the snapshot encoding.
//!
//! The rule tests then walk every refusal the issue names, each with nothing changed.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use sanad_ledger::{
    AccountKind, Actor, Authorisation, CloseReason, Command, Context, Event, Item, ItemQuantity,
    ProgrammeKind, Rejection, Role, State, Vendors, VoidReason, VoucherTerms, replay,
};
use sanad_money::{Amount, Currency, Id};

fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

fn jod(text: &str) -> Amount {
    Amount::parse(text, Currency::parse("JOD").unwrap()).unwrap()
}

const DAY_MS: u64 = 86_400_000;
const START_MS: u64 = 1_000 * DAY_MS;

/// A ledger and its log, with the time.
struct World {
    state: State,
    log: Vec<Vec<u8>>,
    now_ms: u64,
    /// The principal commands come from (`None`: the store's own holder).
    by: Option<Id>,
}

impl World {
    /// Runs a command; a refusal must change nothing.
    fn run(&mut self, command: &Command) -> Result<Vec<Event>, Rejection> {
        let before = self.state.clone();
        let context = Context { now_ms: self.now_ms, by: self.by.clone() };
        match self.state.execute(command, &context) {
            Ok(events) => {
                self.log.extend(events.iter().map(|event| event.to_entry_by(self.by.as_ref())));
                Ok(events)
            }
            Err(rejection) => {
                assert!(self.state == before, "a refused {command:?} changed the state");
                Err(rejection)
            }
        }
    }

    fn ok(&mut self, command: Command) -> Vec<Event> {
        self.run(&command).unwrap_or_else(|r| panic!("{command:?} refused: {r}"))
    }

    fn refused(&mut self, command: Command) -> &'static str {
        match self.run(&command) {
            Ok(events) => panic!("{command:?} was accepted: {events:?}"),
            Err(rejection) => rejection.code(),
        }
    }

    fn balance(&self, account: &str) -> i64 {
        self.state.account(&id(account)).unwrap().balance().minor_units()
    }

    /// The log replays to the live state, and the state survives the snapshot encoding (a
    /// format that cannot skip fields).
    fn replays(&self) {
        let replayed = replay(self.log.iter().map(Vec::as_slice)).unwrap();
        assert!(replayed == self.state, "replaying the log gives another state");
        let bytes = postcard::to_allocvec(&self.state).unwrap();
        let decoded: State = postcard::from_bytes(&bytes).unwrap();
        assert!(decoded == self.state, "the state does not survive its snapshot encoding");
    }
}

fn open(world: &mut World, account: &str, kind: AccountKind) {
    world.ok(Command::OpenAccount {
        id: id(account),
        kind,
        currency: Currency::parse("JOD").unwrap(),
        owner: id("agency"),
    });
}

fn terms(
    escrow: &str,
    vendors: Vendors,
    single_use: bool,
    partial: bool,
    items: Vec<Item>,
) -> VoucherTerms {
    VoucherTerms {
        escrow: id(escrow),
        valid_from_ms: START_MS,
        valid_until_ms: START_MS + 60 * DAY_MS,
        vendors,
        single_use,
        partial,
        items,
        pin_attempts: 3,
        lock_ms: DAY_MS / 2,
    }
}

fn item(name: &str, quantity: u32, unit_value: &str) -> Item {
    Item {
        id: id(name),
        name: name.to_owned(),
        unit: "kg".into(),
        quantity,
        unit_value: jod(unit_value),
    }
}

/// Two programmes: `pv`, value vouchers redeemable at the enrolled shops 1 and 2; `pc`,
/// commodity vouchers (rice and oil) redeemable at food shops (1 and 3), shop 1 with prices
/// for both, shop 3 for rice only. Budgets of 300 JOD each.
fn world(single_use: bool, partial: bool) -> World {
    let mut world = World { state: State::default(), log: Vec::new(), now_ms: START_MS, by: None };
    open(&mut world, "donor", AccountKind::External);
    for programme in ["pv", "pc"] {
        open(&mut world, programme, AccountKind::ProgrammeFunding);
        open(&mut world, &format!("{programme}-escrow"), AccountKind::Escrow);
    }
    for shop in ["shop1", "shop2", "shop3"] {
        open(&mut world, shop, AccountKind::Vendor);
    }
    open(&mut world, "payout", AccountKind::Settlement);
    for (programme, kind) in
        [("pv", ProgrammeKind::ValueVoucher), ("pc", ProgrammeKind::CommodityVoucher)]
    {
        world.ok(Command::CreateProgramme {
            id: id(programme),
            name: programme.into(),
            kind,
            funding: id(programme),
        });
        world.ok(Command::Transfer {
            id: id(&format!("{programme}-budget")),
            from: id("donor"),
            to: id(programme),
            amount: jod("300"),
            programme: id(programme),
            actor: Actor::Operator,
            reference: None,
        });
    }
    world.ok(Command::SetVoucherTerms {
        programme: id("pv"),
        terms: terms("pv-escrow", Vendors::Enrolled, single_use, partial, Vec::new()),
    });
    let basket = vec![item("rice", 10, "1"), item("oil", 2, "2.5")];
    world.ok(Command::SetVoucherTerms {
        programme: id("pc"),
        terms: terms("pc-escrow", Vendors::Category(id("food")), single_use, partial, basket),
    });
    for shop in ["shop1", "shop2"] {
        world.ok(Command::EnrolVendor {
            programme: id("pv"),
            vendor: id(shop),
            prices: BTreeMap::new(),
        });
    }
    for shop in ["shop1", "shop3"] {
        world.ok(Command::SetVendorCategories {
            vendor: id(shop),
            categories: BTreeSet::from([id("food")]),
        });
    }
    world.ok(Command::EnrolVendor {
        programme: id("pc"),
        vendor: id("shop1"),
        prices: BTreeMap::from([(id("rice"), jod("0.9")), (id("oil"), jod("2.5"))]),
    });
    world.ok(Command::EnrolVendor {
        programme: id("pc"),
        vendor: id("shop3"),
        prices: BTreeMap::from([(id("rice"), jod("1"))]),
    });
    for beneficiary in ["b1", "b2"] {
        world.ok(Command::RegisterBeneficiary { id: id(beneficiary), commitment: "ab".repeat(32) });
    }
    world
}

/// What the test knows from the events alone.
#[derive(Default)]
struct Tally {
    /// Per voucher: (programme, value, items issued).
    issued: HashMap<Id, (Id, i64, BTreeMap<Id, u32>)>,
    /// Per redemption: (voucher, vendor, amount, items).
    requested: HashMap<Id, (Id, Id, i64, Vec<ItemQuantity>)>,
    /// Per voucher: value and items paid to vendors.
    redeemed: HashMap<Id, (i64, BTreeMap<Id, u32>)>,
    /// Per programme: issued, redeemed, returned.
    programme: HashMap<Id, (i64, i64, i64)>,
    /// Per (programme, vendor): redeemed, settled.
    vendor: HashMap<(Id, Id), (i64, i64)>,
    /// Per voucher: returned.
    returned: HashMap<Id, i64>,
}

impl Tally {
    fn record(&mut self, event: &Event) {
        match event {
            Event::VoucherIssued { voucher, programme, value, items, .. } => {
                let items = items.iter().map(|i| (i.item.clone(), i.quantity)).collect();
                self.issued
                    .insert(voucher.clone(), (programme.clone(), value.minor_units(), items));
                self.programme.entry(programme.clone()).or_default().0 += value.minor_units();
            }
            Event::RedemptionRequested { redemption, voucher, vendor, amount, items, .. } => {
                self.requested.insert(
                    redemption.clone(),
                    (voucher.clone(), vendor.clone(), amount.minor_units(), items.clone()),
                );
            }
            Event::RedemptionAuthorised { redemption, .. } => {
                let (voucher, vendor, amount, items) = self.requested[redemption].clone();
                let programme = self.issued[&voucher].0.clone();
                let paid = self.redeemed.entry(voucher).or_default();
                paid.0 += amount;
                for asked in items {
                    *paid.1.entry(asked.item).or_default() += asked.quantity;
                }
                self.programme.entry(programme.clone()).or_default().1 += amount;
                self.vendor.entry((programme, vendor)).or_default().0 += amount;
            }
            Event::VoucherClosed { voucher, returned, .. } => {
                let programme = self.issued[voucher].0.clone();
                self.programme.entry(programme).or_default().2 += returned.minor_units();
                *self.returned.entry(voucher.clone()).or_default() += returned.minor_units();
            }
            Event::VendorSettled { programme, vendor, amount, .. } => {
                self.vendor.entry((programme.clone(), vendor.clone())).or_default().1 +=
                    amount.minor_units();
            }
            _ => {}
        }
    }

    /// Every invariant, against the state.
    fn check(&self, world: &World) {
        let state = &world.state;
        for (_, total) in state.totals() {
            assert_eq!(total, 0, "money created or lost");
        }
        for programme in ["pv", "pc"] {
            let programme = id(programme);
            let (issued, redeemed, returned) =
                self.programme.get(&programme).copied().unwrap_or_default();
            let escrow = state.account(&id(&format!("{programme}-escrow"))).unwrap();
            let outstanding = escrow.balance().minor_units();
            assert_eq!(
                issued,
                redeemed + returned + outstanding,
                "{programme}: money not conserved"
            );
            let totals = state.voucher_totals(&programme).unwrap();
            assert_eq!(
                (totals.issued_minor, totals.redeemed_minor, totals.returned_minor),
                (i128::from(issued), i128::from(redeemed), i128::from(returned))
            );
            let (mut held, mut left) = (0, 0);
            for (voucher_id, voucher) in state.vouchers().filter(|(_, v)| v.programme == programme)
            {
                held += voucher.held().minor_units();
                left += voucher.outstanding().minor_units();
                let (_, value, items) = &self.issued[voucher_id];
                let paid = self.redeemed.get(voucher_id).cloned().unwrap_or_default();
                assert!(paid.0 <= *value, "voucher {voucher_id} redeemed beyond its value");
                assert_eq!(voucher.redeemed().minor_units(), paid.0);
                assert!(
                    voucher.redeemed().minor_units()
                        + voucher.held().minor_units()
                        + voucher.returned().minor_units()
                        <= *value,
                    "voucher {voucher_id} promised beyond its value"
                );
                assert!(voucher.available().minor_units() >= 0);
                for (item, issued) in items {
                    let balance = voucher.item(item).unwrap();
                    assert_eq!(balance.redeemed, paid.1.get(item).copied().unwrap_or(0));
                    assert!(balance.redeemed + balance.held <= *issued, "{item} over-redeemed");
                }
                if voucher.closed.is_some() {
                    assert_eq!(
                        voucher.outstanding().minor_units(),
                        0,
                        "a closed voucher kept value"
                    );
                    assert!(voucher.open_redemptions.is_empty());
                }
            }
            assert_eq!(outstanding, left, "{programme}: escrow differs from its vouchers");
            assert_eq!(escrow.balance().minor_units() - escrow.available().minor_units(), held);
            for (vendor, record) in state.programme_vendors(&programme) {
                let (redeemed, settled) = self
                    .vendor
                    .get(&(programme.clone(), vendor.clone()))
                    .copied()
                    .unwrap_or_default();
                assert_eq!(redeemed, settled + record.unsettled_minor, "{vendor} settled wrongly");
            }
        }
        let settled: i64 = self.vendor.values().map(|(_, settled)| settled).sum();
        assert_eq!(world.balance("payout"), settled);
    }
}

/// One random step.
#[derive(Clone, Debug)]
enum Step {
    Issue {
        programme: usize,
        beneficiary: usize,
        value_cents: i64,
        rice: u32,
        oil: u32,
    },
    Request {
        voucher: usize,
        vendor: usize,
        amount_cents: Option<i64>,
        rice: u32,
        oil: u32,
        timeout_ms: u64,
    },
    Authorise {
        redemption: usize,
        confirmation: bool,
    },
    WrongPin {
        redemption: usize,
    },
    Refuse {
        redemption: usize,
    },
    Revoke {
        voucher: usize,
    },
    Settle {
        programme: usize,
        vendor: usize,
    },
    Wait {
        ms: u64,
    },
    Retry {
        back: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..2usize, 0..5usize, 1..6_000i64, 0..12u32, 0..3u32).prop_map(
            |(programme, beneficiary, value_cents, rice, oil)| Step::Issue { programme, beneficiary, value_cents, rice, oil }
        ),
        8 => (0..12usize, 0..4usize, prop::option::of(1..7_000i64), 0..6u32, 0..3u32, 1..DAY_MS).prop_map(
            |(voucher, vendor, amount_cents, rice, oil, timeout_ms)| Step::Request { voucher, vendor, amount_cents, rice, oil, timeout_ms }
        ),
        6 => (0..16usize, any::<bool>()).prop_map(|(redemption, confirmation)| Step::Authorise { redemption, confirmation }),
        1 => (0..16usize).prop_map(|redemption| Step::WrongPin { redemption }),
        1 => (0..16usize).prop_map(|redemption| Step::Refuse { redemption }),
        1 => (0..12usize).prop_map(|voucher| Step::Revoke { voucher }),
        2 => (0..2usize, 0..3usize).prop_map(|(programme, vendor)| Step::Settle { programme, vendor }),
        2 => (1..(4 * DAY_MS)).prop_map(|ms| Step::Wait { ms }),
        1 => (0..8usize).prop_map(|back| Step::Retry { back }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn vouchers_conserve_money_and_are_never_over_redeemed(
        single_use in any::<bool>(),
        partial in any::<bool>(),
        steps in prop::collection::vec(step(), 1..70),
    ) {
        let mut world = world(single_use, partial);
        let mut tally = Tally::default();
        let mut vouchers: Vec<Id> = Vec::new();
        let mut redemptions: Vec<Id> = Vec::new();
        let mut commands: Vec<Command> = Vec::new();
        let shops = ["shop1", "shop2", "shop3", "shop1"];
        for (n, step) in steps.iter().enumerate() {
            // Mostly the latest few, so that steps meet each other.
            let pick = |list: &[Id], at: usize| {
                let reach = if at.is_multiple_of(4) { list.len() } else { list.len().min(3) };
                list.len().checked_sub(1 + at % reach.max(1)).map(|at| list[at].clone())
            };
            let items = |rice: u32, oil: u32| {
                let mut items = Vec::new();
                if rice > 0 { items.push(ItemQuantity { item: id("rice"), quantity: rice }); }
                if oil > 0 { items.push(ItemQuantity { item: id("oil"), quantity: oil }); }
                items
            };
            let command = match step {
                Step::Issue { programme, beneficiary, value_cents, rice, oil } => {
                    let commodity = *programme == 1;
                    Command::IssueVoucher {
                        id: id(&format!("v{n}")),
                        programme: id(if commodity { "pc" } else { "pv" }),
                        beneficiary: id(["b1", "b2", "b1", "b2", "nobody"][*beneficiary]),
                        value: (!commodity).then(|| Amount::from_minor_units(value_cents * 10, jod("1").currency())),
                        items: if commodity { items(*rice, *oil) } else { Vec::new() },
                        expires_at_ms: None,
                        actor: Actor::Operator,
                    }
                }
                Step::Request { voucher, vendor, amount_cents, rice, oil, timeout_ms } => {
                    let Some(voucher) = pick(&vouchers, *voucher) else { continue };
                    let commodity = world.state.voucher(&voucher).is_some_and(|v| !v.items.is_empty());
                    Command::RequestRedemption {
                        id: id(&format!("r{n}")),
                        voucher,
                        vendor: id(shops[*vendor]),
                        amount: if commodity { None } else {
                            amount_cents.map(|c| Amount::from_minor_units(c * 10, jod("1").currency()))
                        },
                        items: if commodity { items(*rice, *oil) } else { Vec::new() },
                        timeout_ms: *timeout_ms,
                        actor: Actor::Vendor,
                    }
                }
                Step::Authorise { redemption, confirmation } => {
                    let Some(redemption) = pick(&redemptions, *redemption) else { continue };
                    let by = if *confirmation { Authorisation::Confirmation } else { Authorisation::Pin };
                    Command::AuthoriseRedemption { redemption, by }
                }
                Step::WrongPin { redemption } => {
                    let Some(redemption) = pick(&redemptions, *redemption) else { continue };
                    Command::RecordPinFailure { redemption }
                }
                Step::Refuse { redemption } => {
                    let Some(redemption) = pick(&redemptions, *redemption) else { continue };
                    Command::RefuseRedemption { redemption }
                }
                Step::Revoke { voucher } => {
                    let Some(voucher) = pick(&vouchers, *voucher) else { continue };
                    Command::RevokeVoucher { voucher }
                }
                Step::Settle { programme, vendor } => Command::Settle {
                    id: id(&format!("s{n}")),
                    programme: id(["pv", "pc"][*programme]),
                    vendor: id(shops[*vendor % 3]),
                    to: id("payout"),
                    actor: Actor::Operator,
                },
                Step::Wait { ms } => {
                    world.now_ms += ms;
                    Command::ExpireDue { at_most: 1_000 }
                }
                Step::Retry { back } => {
                    let Some(earlier) = commands.len().checked_sub(1 + back % commands.len().max(1))
                        .and_then(|at| commands.get(at)).cloned() else { continue };
                    earlier
                }
            };
            // The engine runs expiry ahead of every batch.
            let due = world.run(&Command::ExpireDue { at_most: 1_000 }).unwrap();
            for event in &due {
                tally.record(event);
            }
            let before = world.state.clone();
            let retry = matches!(step, Step::Retry { .. });
            match world.run(&command) {
                Ok(events) => {
                    if retry && events.is_empty() {
                        // An answered retry: nothing changed.
                        prop_assert!(world.state == before);
                    }
                    for event in &events {
                        tally.record(event);
                        match event {
                            Event::VoucherIssued { voucher, .. } => vouchers.push(voucher.clone()),
                            Event::RedemptionRequested { redemption, .. } => redemptions.push(redemption.clone()),
                            _ => {}
                        }
                    }
                }
                Err(rejection) => {
                    // Over-redemption is refused with the reason the tally predicts.
                    if let (Command::RequestRedemption { voucher, amount: Some(amount), .. }, "amount_exceeds_voucher") =
                        (&command, rejection.code())
                    {
                        let known = world.state.voucher(voucher).unwrap();
                        prop_assert!(amount.minor_units() > known.available().minor_units());
                    }
                }
            }
            commands.push(command);
            tally.check(&world);
        }
        world.replays();
    }
}

/// A world with one voucher issued to b1 from each programme: `v-value` (50 JOD) and
/// `v-goods` (the standard basket: 10 kg rice at 1 JOD, 2 oil at 2.5 JOD: 15 JOD).
fn issued(single_use: bool, partial: bool) -> World {
    let mut world = world(single_use, partial);
    world.ok(Command::IssueVoucher {
        id: id("v-value"),
        programme: id("pv"),
        beneficiary: id("b1"),
        value: Some(jod("50")),
        items: Vec::new(),
        expires_at_ms: None,
        actor: Actor::Operator,
    });
    world.ok(Command::IssueVoucher {
        id: id("v-goods"),
        programme: id("pc"),
        beneficiary: id("b1"),
        value: None,
        items: Vec::new(),
        expires_at_ms: None,
        actor: Actor::Operator,
    });
    world
}

fn request(
    redemption: &str,
    voucher: &str,
    vendor: &str,
    amount: Option<&str>,
    items: &[(&str, u32)],
) -> Command {
    Command::RequestRedemption {
        id: id(redemption),
        voucher: id(voucher),
        vendor: id(vendor),
        amount: amount.map(jod),
        items: items
            .iter()
            .map(|(item, quantity)| ItemQuantity { item: id(item), quantity: *quantity })
            .collect(),
        timeout_ms: 10 * 60_000,
        actor: Actor::Vendor,
    }
}

fn authorise(redemption: &str) -> Command {
    Command::AuthoriseRedemption { redemption: id(redemption), by: Authorisation::Pin }
}

#[test]
fn a_value_voucher_is_redeemed_in_parts_and_settled_once() {
    let mut world = issued(false, true);
    assert_eq!(world.balance("pv"), 250_000);
    assert_eq!(world.balance("pv-escrow"), 50_000);
    world.ok(request("r1", "v-value", "shop1", Some("20"), &[]));
    // Held, not paid: the vendor has nothing yet, the voucher has 30 left.
    assert_eq!(world.balance("shop1"), 0);
    assert_eq!(world.state.voucher(&id("v-value")).unwrap().available(), jod("30"));
    world.ok(authorise("r1"));
    assert_eq!(world.balance("shop1"), 20_000);
    // A retry of the authorisation is answered with its entry, not applied again.
    assert!(world.ok(authorise("r1")).is_empty());
    assert_eq!(
        world.state.answer_index(&authorise("r1")),
        world.state.redemption(&id("r1")).unwrap().ended_index
    );
    world.ok(request("r2", "v-value", "shop2", None, &[]));
    let events = world.ok(authorise("r2"));
    assert!(matches!(
        events.last(),
        Some(Event::VoucherClosed { reason: CloseReason::Exhausted, .. })
    ));
    // Settlement: each vendor once; a re-run of the same settlement is answered.
    let settle = |run: &str, vendor: &str| Command::Settle {
        id: id(&format!("{run}-{vendor}")),
        programme: id("pv"),
        vendor: id(vendor),
        to: id("payout"),
        actor: Actor::Operator,
    };
    let settled = world.ok(settle("s1", "shop1"));
    assert!(matches!(&settled[0], Event::VendorSettled { redemptions: 1, since_index: None, .. }));
    assert!(world.ok(settle("s1", "shop1")).is_empty());
    assert_eq!(world.refused(settle("s2", "shop1")), "nothing_to_settle");
    world.ok(settle("s1", "shop2"));
    assert_eq!(world.balance("payout"), 50_000);
    assert_eq!(world.balance("shop1") + world.balance("shop2"), 0);
    world.replays();
}

#[test]
fn a_commodity_voucher_pays_the_vendors_price_and_returns_the_rest() {
    let mut world = issued(false, true);
    assert_eq!(world.balance("pc-escrow"), 15_000);
    // Shop 3 sells rice only.
    assert_eq!(
        world.refused(request("r0", "v-goods", "shop3", None, &[("oil", 1)])),
        "item_not_priced"
    );
    world.ok(request("r1", "v-goods", "shop3", None, &[("rice", 4)]));
    world.ok(authorise("r1"));
    assert_eq!(world.balance("shop3"), 4_000);
    // Shop 1: rice at 0.9 and oil at 2.5, for all that remains.
    world.ok(request("r2", "v-goods", "shop1", None, &[]));
    let events = world.ok(authorise("r2"));
    assert_eq!(world.balance("shop1"), 6 * 900 + 2 * 2_500);
    // The 0.1 per kg of rice that shop 1 charged less returns to the programme.
    assert!(matches!(
        events.last(),
        Some(Event::VoucherClosed { reason: CloseReason::Exhausted, returned, .. }) if *returned == jod("0.6")
    ));
    assert_eq!(world.balance("pc-escrow"), 0);
    assert_eq!(world.balance("pc"), 300_000 - 15_000 + 600);
    world.replays();
}

#[test]
fn every_bad_redemption_is_refused_with_its_reason_and_nothing_changes() {
    let mut world = issued(false, false);
    let mut refused = |command| world.refused(command);
    assert_eq!(refused(request("r", "v-none", "shop1", Some("1"), &[])), "voucher_not_found");
    assert_eq!(refused(request("r", "v-value", "shop3", Some("50"), &[])), "vendor_not_eligible");
    assert_eq!(refused(request("r", "v-value", "payout", Some("50"), &[])), "not_a_vendor");
    assert_eq!(
        refused(request("r", "v-value", "shop1", Some("60"), &[])),
        "amount_exceeds_voucher"
    );
    assert_eq!(
        refused(request("r", "v-value", "shop1", Some("20"), &[])),
        "partial_redemption_not_allowed"
    );
    let mut negative = request("r", "v-value", "shop1", None, &[]);
    if let Command::RequestRedemption { amount, .. } = &mut negative {
        *amount = Some(Amount::from_minor_units(-50_000, jod("1").currency()));
    }
    assert_eq!(refused(negative), "amount_must_be_positive");
    assert_eq!(
        refused(request("r", "v-value", "shop1", None, &[("rice", 1)])),
        "invalid_voucher_request"
    );
    assert_eq!(refused(request("r", "v-goods", "shop2", None, &[])), "vendor_not_eligible");
    assert_eq!(refused(request("r", "v-goods", "shop1", None, &[("flour", 1)])), "item_unknown");
    assert_eq!(
        refused(request("r", "v-goods", "shop1", None, &[("rice", 11)])),
        "item_exceeds_voucher"
    );
    assert_eq!(
        refused(request("r", "v-goods", "shop1", None, &[("rice", 10)])),
        "partial_redemption_not_allowed"
    );
    assert_eq!(
        refused(request("r", "v-goods", "shop1", Some("1"), &[])),
        "invalid_voucher_request"
    );
    assert_eq!(refused(authorise("r-none")), "redemption_not_found");
    // A withdrawn vendor may not redeem any more.
    world.ok(Command::WithdrawVendor { programme: id("pv"), vendor: id("shop2") });
    assert_eq!(world.refused(request("r", "v-value", "shop2", None, &[])), "vendor_not_eligible");
    // Not yet valid, then expired.
    world.now_ms = START_MS - 1;
    assert_eq!(world.refused(request("r", "v-value", "shop1", None, &[])), "voucher_not_yet_valid");
    world.now_ms = START_MS + 60 * DAY_MS;
    assert_eq!(world.refused(request("r", "v-value", "shop1", None, &[])), "voucher_expired");
    let expired = world.ok(Command::ExpireDue { at_most: 100 });
    assert_eq!(expired.len(), 2, "both vouchers expire: {expired:?}");
    assert_eq!(world.balance("pv"), 300_000);
    assert_eq!(world.balance("pc"), 300_000);
    assert_eq!(world.refused(request("r", "v-value", "shop1", None, &[])), "voucher_expired");
    world.replays();
}

#[test]
fn revocation_releases_holds_and_returns_the_value() {
    let mut world = issued(false, true);
    world.ok(request("r1", "v-value", "shop1", Some("10"), &[]));
    world.ok(authorise("r1"));
    world.ok(request("r2", "v-value", "shop2", Some("15"), &[]));
    let events = world.ok(Command::RevokeVoucher { voucher: id("v-value") });
    assert!(matches!(
        &events[0],
        Event::RedemptionVoided { reason: VoidReason::VoucherClosed, .. }
    ));
    assert!(
        matches!(&events[1], Event::VoucherClosed { reason: CloseReason::Revoked, returned, .. } if *returned == jod("40"))
    );
    assert_eq!(world.balance("pv"), 300_000 - 10_000);
    assert_eq!(world.refused(request("r3", "v-value", "shop1", Some("1"), &[])), "voucher_revoked");
    assert_eq!(world.refused(authorise("r2")), "redemption_not_pending");
    // Revoking again is answered; the funding account cannot close while vouchers are out.
    assert!(world.ok(Command::RevokeVoucher { voucher: id("v-value") }).is_empty());
    assert_eq!(world.refused(Command::CloseAccount { id: id("pc") }), "balance_not_zero");
    world.replays();
}

#[test]
fn wrong_pins_lock_the_voucher_for_a_while() {
    let mut world = issued(false, true);
    world.ok(request("r1", "v-value", "shop1", Some("5"), &[]));
    world.ok(Command::RecordPinFailure { redemption: id("r1") });
    world.ok(Command::RecordPinFailure { redemption: id("r1") });
    let third = world.ok(Command::RecordPinFailure { redemption: id("r1") });
    assert!(matches!(
        &third[0],
        Event::RedemptionPinFailed { failures: 3, locked_until_ms: Some(_), .. }
    ));
    assert!(matches!(&third[1], Event::RedemptionVoided { reason: VoidReason::Locked, .. }));
    assert_eq!(world.refused(request("r2", "v-value", "shop1", Some("5"), &[])), "voucher_locked");
    world.now_ms += DAY_MS / 2;
    world.ok(request("r2", "v-value", "shop1", Some("5"), &[]));
    world.ok(authorise("r2"));
    assert_eq!(world.state.voucher(&id("v-value")).unwrap().wrong_pins, 0);
    world.replays();
}

#[test]
fn a_single_use_voucher_closes_after_one_redemption_and_returns_what_it_left() {
    let mut world = issued(true, true);
    world.ok(request("r1", "v-value", "shop1", Some("30"), &[]));
    assert_eq!(
        world.refused(request("r2", "v-value", "shop2", Some("5"), &[])),
        "redemption_pending"
    );
    let events = world.ok(authorise("r1"));
    assert!(
        matches!(events.last(), Some(Event::VoucherClosed { reason: CloseReason::Used, returned, .. }) if *returned == jod("20"))
    );
    assert_eq!(
        world.refused(request("r2", "v-value", "shop2", Some("5"), &[])),
        "voucher_exhausted"
    );
    world.replays();
}

#[test]
fn unanswered_redemptions_time_out_and_free_the_value() {
    let mut world = issued(false, true);
    world.ok(request("r1", "v-value", "shop1", Some("50"), &[]));
    assert_eq!(
        world.refused(request("r2", "v-value", "shop2", Some("1"), &[])),
        "redemption_pending"
    );
    world.now_ms += 10 * 60_000;
    let released = world.ok(Command::ExpireDue { at_most: 10 });
    assert!(matches!(&released[..], [Event::RedemptionVoided { reason: VoidReason::Timeout, .. }]));
    assert_eq!(world.refused(authorise("r1")), "redemption_not_pending");
    world.ok(request("r2", "v-value", "shop2", Some("1"), &[]));
    world.replays();
}

#[test]
fn issuance_needs_money_terms_and_a_beneficiary() {
    let mut world = issued(false, true);
    let issue = |voucher: &str, programme: &str, beneficiary: &str, value: Option<&str>| {
        Command::IssueVoucher {
            id: id(voucher),
            programme: id(programme),
            beneficiary: id(beneficiary),
            value: value.map(jod),
            items: Vec::new(),
            expires_at_ms: None,
            actor: Actor::Operator,
        }
    };
    assert_eq!(world.refused(issue("v1", "pv", "b1", Some("251"))), "insufficient_funds");
    assert_eq!(world.refused(issue("v1", "pv", "b9", Some("1"))), "beneficiary_not_found");
    assert_eq!(world.refused(issue("v1", "pv", "b1", None)), "invalid_voucher_request");
    assert_eq!(world.refused(issue("v1", "pc", "b1", Some("1"))), "invalid_voucher_request");
    assert_eq!(world.refused(issue("v1", "nope", "b1", Some("1"))), "programme_not_found");
    assert_eq!(world.refused(issue("v-value", "pv", "b2", Some("1"))), "idempotency_key_reused");
    assert_eq!(world.refused(issue("pv-budget", "pv", "b1", Some("1"))), "idempotency_key_reused");
    // A retry of an issuance is answered, not applied twice.
    assert!(world.ok(issue("v-value", "pv", "b1", Some("50"))).is_empty());
    // Plain transfers never touch escrow.
    let raid = Command::Transfer {
        id: id("raid"),
        from: id("pv-escrow"),
        to: id("shop1"),
        amount: jod("1"),
        programme: id("pv"),
        actor: Actor::Operator,
        reference: None,
    };
    assert_eq!(world.refused(raid), "escrow_account");
    world.ok(request("r1", "v-value", "shop1", Some("1"), &[]));
    let post = Command::PostPending { id: id("p1"), pending: id("r1"), amount: None };
    assert_eq!(world.refused(post), "is_a_redemption");
    world.now_ms = START_MS + 60 * DAY_MS;
    assert_eq!(world.refused(issue("v2", "pv", "b1", Some("1"))), "programme_ended");
    world.replays();
}

#[test]
fn voucher_terms_are_checked() {
    let mut world = world(false, true);
    let set = |terms: VoucherTerms| Command::SetVoucherTerms { programme: id("pv"), terms };
    let good = terms("pv-escrow", Vendors::Enrolled, false, true, Vec::new());
    assert_eq!(
        world.refused(set(VoucherTerms { escrow: id("pc-escrow"), ..good.clone() })),
        "not_an_escrow_account"
    );
    assert_eq!(
        world.refused(set(VoucherTerms { escrow: id("pv"), ..good.clone() })),
        "not_an_escrow_account"
    );
    assert_eq!(
        world.refused(set(VoucherTerms { valid_until_ms: START_MS, ..good.clone() })),
        "invalid_voucher_terms"
    );
    assert_eq!(
        world.refused(set(VoucherTerms { pin_attempts: 0, ..good.clone() })),
        "invalid_voucher_terms"
    );
    assert_eq!(
        world.refused(set(VoucherTerms { items: vec![item("rice", 1, "1")], ..good.clone() })),
        "invalid_voucher_terms"
    );
    assert!(world.ok(set(good)).is_empty(), "the same terms again change nothing");
    let prices = BTreeMap::from([(id("rice"), jod("1.5"))]);
    let enrol = Command::EnrolVendor { programme: id("pc"), vendor: id("shop2"), prices };
    assert_eq!(world.refused(enrol), "price_above_value");
    world.replays();
}

fn grant(principal: &str, role: Role, vendor: Option<&str>) -> Command {
    Command::GrantAccess { principal: id(principal), role, vendor: vendor.map(id) }
}

/// Principals: a store holder grants an admin, the admin grants the rest; each may cause only
/// what its role covers, a vendor only for its own shop, and the log replays with every entry
/// checked against its principal.
#[test]
fn principals_act_only_within_their_roles() {
    let mut world = world(true, true);
    world.ok(grant("tok-admin", Role::Admin, None));
    world.by = Some(id("tok-admin"));
    world.ok(grant("tok-op", Role::Operator, None));
    world.ok(grant("tok-shop1", Role::Vendor, Some("shop1")));
    world.ok(grant("tok-audit", Role::Auditor, None));
    // Grants are checked, and a retried grant is answered.
    assert!(world.ok(grant("tok-op", Role::Operator, None)).is_empty());
    assert_eq!(world.refused(grant("tok-op", Role::Admin, None)), "principal_exists");
    assert_eq!(world.refused(grant("tok-x", Role::Vendor, None)), "invalid_grant");
    assert_eq!(world.refused(grant("tok-x", Role::Vendor, Some("pv"))), "invalid_grant");
    assert_eq!(world.refused(grant("tok-x", Role::Operator, Some("shop1"))), "invalid_grant");

    let issue = Command::IssueVoucher {
        id: id("v-value"),
        programme: id("pv"),
        beneficiary: id("b1"),
        value: Some(jod("50")),
        items: Vec::new(),
        expires_at_ms: None,
        actor: Actor::Operator,
    };
    for principal in ["tok-audit", "tok-shop1"] {
        world.by = Some(id(principal));
        assert_eq!(world.refused(issue.clone()), "not_permitted", "{principal} issued");
    }
    world.by = Some(id("tok-op"));
    assert_eq!(world.refused(grant("tok-y", Role::Auditor, None)), "not_permitted");
    world.ok(issue);

    // The vendor principal redeems for its own shop only, and its authorisation may close the
    // single-use voucher; it may not settle.
    world.by = Some(id("tok-shop1"));
    assert_eq!(world.refused(request("r0", "v-value", "shop2", None, &[])), "not_permitted");
    world.ok(request("r1", "v-value", "shop1", Some("20"), &[]));
    let events = world.ok(authorise("r1"));
    assert!(matches!(events.last(), Some(Event::VoucherClosed { reason: CloseReason::Used, .. })));
    let settle = Command::Settle {
        id: id("s1"),
        programme: id("pv"),
        vendor: id("shop1"),
        to: id("payout"),
        actor: Actor::Operator,
    };
    assert_eq!(world.refused(settle.clone()), "not_permitted");
    world.by = Some(id("tok-op"));
    world.ok(settle);

    // Revoked and unknown principals cause nothing.
    world.by = Some(id("tok-admin"));
    world.ok(Command::RevokeAccess { principal: id("tok-shop1") });
    assert!(world.ok(Command::RevokeAccess { principal: id("tok-shop1") }).is_empty());
    assert_eq!(
        world.refused(Command::RevokeAccess { principal: id("tok-z") }),
        "unknown_principal"
    );
    for principal in ["tok-shop1", "tok-z"] {
        world.by = Some(id(principal));
        let refusal = world.refused(request("r2", "v-value", "shop1", None, &[]));
        assert_eq!(refusal, "unknown_principal");
    }
    assert!(world.state.principal(&id("tok-shop1")).unwrap().revoked);
    world.replays();
}

/// An auditor replaying a log finds an entry its principal had no right to cause, though the
/// entry is otherwise valid.
#[test]
fn an_entry_beyond_its_principals_role_does_not_replay() {
    let mut world = world(false, true);
    world.ok(grant("tok-shop1", Role::Vendor, Some("shop1")));
    world.ok(grant("tok-op", Role::Operator, None));
    let at_ms = world.now_ms;
    let payment = Event::TransferPosted {
        transfer: id("t-sneak"),
        from: id("pv"),
        to: id("shop1"),
        amount: jod("5"),
        programme: id("pv"),
        actor: Actor::Vendor,
        reference: None,
        at_ms,
    };
    let honest = world.log.len();
    for (by, accepted) in [("tok-op", true), ("tok-shop1", false), ("tok-nobody", false)] {
        world.log.truncate(honest);
        world.log.push(payment.to_entry_by(Some(&id(by))));
        let replayed = replay(world.log.iter().map(Vec::as_slice));
        match replayed {
            Ok(_) => assert!(accepted, "a payment by {by} replayed"),
            Err(inconsistency) => {
                assert!(!accepted, "the payment by {by} did not replay: {inconsistency}");
                assert!(
                    inconsistency.to_string().contains(&format!("entry {honest}: principal {by}")),
                    "{inconsistency}"
                );
            }
        }
    }
}
