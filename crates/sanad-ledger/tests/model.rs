//! Model-based property test: random command sequences (with retries, holds that are posted in
//! part, voided or expire, freezes, closes, overdrafts, bad input, and linked groups that apply
//! all or nothing) applied to the engine and to a tiny reference model that shares no code with
//! it agree at every step. After every step: per currency the balances sum to zero,
//! no account but an external one is negative, and replaying the encoded log from scratch gives
//! exactly the live state.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use sanad_ledger::{AccountKind, Actor, Command, Context, ProgrammeKind, State, decide, replay};
use sanad_money::{Amount, Currency, Id};

/// The reference model: plain maps and the rules written out naively.
#[derive(Clone, Default)]
struct Model {
    now: u64,
    reversed: std::collections::HashSet<String>,
    // Per account: [max_balance, max_transfer, max_daily_outflow, max_monthly_outflow] in minor
    // units, and every outflow as (time, minor units).
    limits: HashMap<String, [Option<i64>; 4]>,
    outflows: HashMap<String, Vec<(u64, i64)>>,
    // kind, currency, balance, frozen, closed, held
    accounts: HashMap<String, (AccountKind, &'static str, i64, bool, bool, i64)>,
    // What each transfer id was used for.
    used: HashMap<String, Use>,
    // from, to, amount, currency, expires at, still open
    pendings: HashMap<String, (String, String, i64, &'static str, u64, bool)>,
}

#[derive(Clone, PartialEq, Eq)]
enum Use {
    Transfer(String, String, i64, &'static str),
    Pending(String, String, i64, &'static str),
    Posted(String, i64),
    Voided(String),
    Reversed(String),
}

impl Model {
    /// Whether `amount` may move from `from` to `to`, with a hold of `released` on `from`
    /// released first.
    fn can_move(&self, from: &str, to: &str, amount: &Amount, released: i64) -> Option<()> {
        let source = self.accounts.get(from)?;
        let target = self.accounts.get(to)?;
        let (code, minor) = (amount.currency().code(), amount.minor_units());
        let ok = from != to
            && minor > 0
            && source.1 == code
            && target.1 == code
            && !source.3
            && !source.4
            && !target.3
            && !target.4
            && (source.0 == AccountKind::External || source.2 - (source.5 - released) >= minor);
        if !ok {
            return None;
        }
        let none = [None; 4];
        let from_limits = self.limits.get(from).unwrap_or(&none);
        let to_limits = self.limits.get(to).unwrap_or(&none);
        let spent = |window: u64| -> i64 {
            self.outflows.get(from).map_or(0, |o| {
                o.iter().filter(|(at, _)| at + window > self.now).map(|(_, m)| m).sum()
            })
        };
        const DAY: u64 = 86_400_000;
        let within = from_limits[1].is_none_or(|max| minor <= max)
            && from_limits[2].is_none_or(|max| spent(DAY) + minor <= max)
            && from_limits[3].is_none_or(|max| spent(30 * DAY) + minor <= max)
            && to_limits[0].is_none_or(|max| target.2 + minor <= max);
        within.then_some(())
    }

    /// Outflows are remembered only while an outflow limit applies; a movement without one
    /// forgets them.
    fn record_outflow(&mut self, from: &str, minor: i64) {
        let limited = self.limits.get(from).is_some_and(|l| l[2].is_some() || l[3].is_some());
        let outflows = self.outflows.entry(from.to_owned()).or_default();
        if limited {
            outflows.push((self.now, minor));
        } else {
            outflows.clear();
        }
    }

    /// Returns whether the command changes the state (`Some(true)`), is an accepted retry
    /// (`Some(false)`), or is refused (`None`).
    /// A linked group: all commands apply, or the model is left as it was.
    fn step_linked(&mut self, commands: &[Command]) -> Option<bool> {
        let mut trial = self.clone();
        let mut changed = false;
        for command in commands {
            if matches!(command, Command::ExpireDue { .. }) {
                return None;
            }
            changed |= trial.step(command)?;
        }
        *self = trial;
        Some(changed)
    }

    fn step(&mut self, command: &Command) -> Option<bool> {
        match command {
            Command::OpenAccount { id, kind, currency, .. } => {
                if self.accounts.contains_key(id.as_str()) {
                    return None;
                }
                self.accounts.insert(id.to_string(), (*kind, currency.code(), 0, false, false, 0));
                Some(true)
            }
            Command::Transfer { id, from, to, amount, .. } => {
                let content = Use::Transfer(
                    from.to_string(),
                    to.to_string(),
                    amount.minor_units(),
                    amount.currency().code(),
                );
                if let Some(existing) = self.used.get(id.as_str()) {
                    return if *existing == content { Some(false) } else { None };
                }
                self.can_move(from.as_str(), to.as_str(), amount, 0)?;
                self.accounts.get_mut(from.as_str())?.2 -= amount.minor_units();
                self.accounts.get_mut(to.as_str())?.2 += amount.minor_units();
                self.record_outflow(from.as_str(), amount.minor_units());
                self.used.insert(id.to_string(), content);
                Some(true)
            }
            Command::Reserve { id, from, to, amount, timeout_ms, .. } => {
                let content = Use::Pending(
                    from.to_string(),
                    to.to_string(),
                    amount.minor_units(),
                    amount.currency().code(),
                );
                if let Some(existing) = self.used.get(id.as_str()) {
                    return if *existing == content { Some(false) } else { None };
                }
                self.can_move(from.as_str(), to.as_str(), amount, 0)?;
                self.accounts.get_mut(from.as_str())?.5 += amount.minor_units();
                let expires = self.now + timeout_ms;
                self.pendings.insert(
                    id.to_string(),
                    (
                        from.to_string(),
                        to.to_string(),
                        amount.minor_units(),
                        amount.currency().code(),
                        expires,
                        true,
                    ),
                );
                self.used.insert(id.to_string(), content);
                Some(true)
            }
            Command::PostPending { id, pending, amount } => {
                let known = self.pendings.get(pending.as_str()).cloned();
                let concrete = match (amount, &known) {
                    (Some(amount), _) => amount.minor_units(),
                    (None, Some(known)) => known.2,
                    (None, None) => return None,
                };
                let content = Use::Posted(pending.to_string(), concrete);
                if let Some(existing) = self.used.get(id.as_str()) {
                    return if *existing == content { Some(false) } else { None };
                }
                let held = known?;
                if !held.5 || self.now >= held.4 {
                    return None;
                }
                let currency = amount.map_or(held.3, |a| a.currency().code());
                if currency == held.3 && concrete > held.2 {
                    return None;
                }
                let posted = Amount::from_minor_units(concrete, Currency::parse(currency).unwrap());
                self.can_move(&held.0, &held.1, &posted, held.2)?;
                self.accounts.get_mut(&held.0)?.5 -= held.2;
                self.accounts.get_mut(&held.0)?.2 -= concrete;
                self.accounts.get_mut(&held.1)?.2 += concrete;
                self.record_outflow(&held.0, concrete);
                self.pendings.get_mut(pending.as_str())?.5 = false;
                self.used.insert(id.to_string(), content);
                Some(true)
            }
            Command::VoidPending { id, pending } => {
                let content = Use::Voided(pending.to_string());
                if let Some(existing) = self.used.get(id.as_str()) {
                    return if *existing == content { Some(false) } else { None };
                }
                let held = self.pendings.get(pending.as_str())?.clone();
                if !held.5 {
                    return None;
                }
                self.accounts.get_mut(&held.0)?.5 -= held.2;
                self.pendings.get_mut(pending.as_str())?.5 = false;
                self.used.insert(id.to_string(), content);
                Some(true)
            }
            Command::Reverse { id, original, .. } => {
                let content = Use::Reversed(original.to_string());
                if let Some(existing) = self.used.get(id.as_str()) {
                    return if *existing == content { Some(false) } else { None };
                }
                let Some(Use::Transfer(from, to, minor, code)) =
                    self.used.get(original.as_str()).cloned()
                else {
                    return None;
                };
                if self.reversed.contains(original.as_str()) {
                    return None;
                }
                let amount = Amount::from_minor_units(minor, Currency::parse(code).unwrap());
                self.can_move(&to, &from, &amount, 0)?;
                self.accounts.get_mut(&to)?.2 -= minor;
                self.accounts.get_mut(&from)?.2 += minor;
                self.record_outflow(&to, minor);
                self.reversed.insert(original.to_string());
                self.used.insert(id.to_string(), content);
                Some(true)
            }
            Command::SetLimits { account, limits } => {
                let state = self.accounts.get(account.as_str())?;
                if state.4 {
                    return None;
                }
                let amounts = [
                    &limits.max_balance,
                    &limits.max_transfer,
                    &limits.max_daily_outflow,
                    &limits.max_monthly_outflow,
                ];
                if amounts.iter().any(|a| {
                    a.is_some_and(|a| a.currency().code() != state.1 || a.minor_units() < 0)
                }) {
                    return None;
                }
                let new = amounts.map(|a| a.map(|a| a.minor_units()));
                let old = self.limits.get(account.as_str()).copied().unwrap_or([None; 4]);
                self.limits.insert(account.to_string(), new);
                Some(new != old)
            }
            Command::ExpireDue { .. } => {
                let now = self.now;
                let due: Vec<String> = self
                    .pendings
                    .iter()
                    .filter(|(_, p)| p.5 && p.4 <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &due {
                    let held = self.pendings.get(id)?.clone();
                    self.accounts.get_mut(&held.0)?.5 -= held.2;
                    self.pendings.get_mut(id)?.5 = false;
                }
                Some(!due.is_empty())
            }
            Command::FreezeAccount { id } | Command::UnfreezeAccount { id } => {
                let account = self.accounts.get_mut(id.as_str())?;
                if account.4 {
                    return None;
                }
                let freeze = matches!(command, Command::FreezeAccount { .. });
                let changed = account.3 != freeze;
                account.3 = freeze;
                Some(changed)
            }
            Command::CreateProgramme { .. } => Some(true),
            // Tiers and beneficiaries have their own tests; this model covers money movement.
            Command::DefineTier { .. }
            | Command::SetTier { .. }
            | Command::RegisterBeneficiary { .. }
            | Command::EraseBeneficiary { .. } => unreachable!("not generated: {command:?}"),
            Command::CloseAccount { id } => {
                let account = self.accounts.get_mut(id.as_str())?;
                if account.4 {
                    return Some(false);
                }
                if account.2 != 0 || account.5 != 0 {
                    return None;
                }
                account.4 = true;
                Some(true)
            }
            // Vouchers have their own model test (tests/vouchers.rs).
            _ => unreachable!("not generated: {command:?}"),
        }
    }
}

const STEP_MS: u64 = 6 * 60 * 60 * 1000;

const ACCOUNTS: [(&str, AccountKind, &str); 6] = [
    ("donor", AccountKind::External, "JOD"),
    ("prog", AccountKind::ProgrammeFunding, "JOD"),
    ("w1", AccountKind::Wallet, "JOD"),
    ("w2", AccountKind::Wallet, "JOD"),
    ("shop", AccountKind::Vendor, "JOD"),
    ("usd-w", AccountKind::Wallet, "USD"),
];

fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

/// What the engine does before a reversal: read the original's content from the log.
fn with_original(command: &Command, log: &[Vec<u8>]) -> Command {
    if !matches!(command, Command::Reverse { original_transfer: None, .. }) {
        return command.clone();
    }
    let events: Vec<sanad_ledger::Event> =
        log.iter().filter_map(|entry| sanad_ledger::Event::from_entry(entry).ok()).collect();
    command.with_original_among(&events).unwrap_or_else(|| command.clone())
}

/// One step of a run: a command on its own, or a linked group.
#[derive(Clone, Debug)]
enum Step {
    One(Command),
    Linked(Vec<Command>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => command().prop_map(Step::One),
        1 => prop::collection::vec(command(), 1..4).prop_map(Step::Linked),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let account = 0..ACCOUNTS.len();
    // Weighted towards moving money; closes and freezes are rarer so that accounts stay usable.
    prop_oneof![
        1 => account.clone().prop_map(|a| Command::OpenAccount {
            id: id(ACCOUNTS[a].0),
            kind: ACCOUNTS[a].1,
            currency: Currency::parse(ACCOUNTS[a].2).unwrap(),
            owner: id("owner"),
        }),
        // A small id space for transfer ids, so that retries and reuses happen often.
        8 => (0u8..12, account.clone(), account.clone(), -5i64..2_000, prop::bool::weighted(0.9))
            .prop_map(|(t, from, to, minor, jod)| Command::Transfer {
                id: id(&format!("t{t}")),
                from: id(ACCOUNTS[from].0),
                to: id(ACCOUNTS[to].0),
                amount: Amount::from_minor_units(
                    minor,
                    Currency::parse(if jod { "JOD" } else { "USD" }).unwrap()
                ),
                programme: id("prog"),
                actor: Actor::Operator,
                reference: None,
            }),
        5 => (0u8..12, account.clone(), account.clone(), 1i64..1_500, (0u64..96).prop_map(|hours| hours * 3_600_000)).prop_map(
            |(t, from, to, minor, timeout_ms)| Command::Reserve {
                id: id(&format!("t{t}")),
                from: id(ACCOUNTS[from].0),
                to: id(ACCOUNTS[to].0),
                amount: Amount::from_minor_units(minor, Currency::parse("JOD").unwrap()),
                programme: id("prog"),
                actor: Actor::Vendor,
                reference: None,
                timeout_ms,
            }
        ),
        5 => (0u8..12, 0u8..12, prop::option::of(1i64..2_000)).prop_map(|(t, p, minor)| {
            Command::PostPending {
                id: id(&format!("p{t}")),
                pending: id(&format!("t{p}")),
                amount: minor.map(|m| Amount::from_minor_units(m, Currency::parse("JOD").unwrap())),
            }
        }),
        2 => (0u8..12, 0u8..12).prop_map(|(t, p)| Command::VoidPending {
            id: id(&format!("v{t}")),
            pending: id(&format!("t{p}")),
        }),
        2 => (0u8..12, 0u8..12).prop_map(|(t, o)| Command::Reverse {
            id: id(&format!("r{t}")),
            original: id(&format!("t{o}")),
            actor: Actor::Operator,
            // Filled in from the log by `with_original`, as the engine does.
            original_transfer: None,
        }),
        1 => Just(Command::ExpireDue { at_most: usize::MAX }),
        1 => (account.clone(), prop::array::uniform4(prop::option::weighted(0.4, -10i64..4_000))).prop_map(
            |(a, [balance, transfer, daily, monthly])| {
                let jod = |m: Option<i64>| m.map(|m| Amount::from_minor_units(m, Currency::parse("JOD").unwrap()));
                Command::SetLimits {
                    account: id(ACCOUNTS[a].0),
                    limits: sanad_ledger::Limits {
                        max_balance: jod(balance),
                        max_transfer: jod(transfer),
                        max_daily_outflow: jod(daily),
                        max_monthly_outflow: jod(monthly),
                    },
                }
            }
        ),
        1 => account.clone().prop_map(|a| Command::FreezeAccount { id: id(ACCOUNTS[a].0) }),
        2 => account.clone().prop_map(|a| Command::UnfreezeAccount { id: id(ACCOUNTS[a].0) }),
        1 => account.prop_map(|a| Command::CloseAccount { id: id(ACCOUNTS[a].0) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_agrees_with_the_model_and_replays_exactly(random in prop::collection::vec(step(), 1..160)) {
        // Every account exists from the start and the donor has funded the programme, so that
        // the random part moves money rather than failing on missing accounts.
        let mut commands: Vec<Step> = ACCOUNTS
            .iter()
            .map(|(name, kind, currency)| Step::One(Command::OpenAccount {
                id: id(name),
                kind: *kind,
                currency: Currency::parse(currency).unwrap(),
                owner: id("owner"),
            }))
            .collect();
        commands.push(Step::One(Command::CreateProgramme {
            id: id("prog"),
            name: "Programme".into(),
            kind: ProgrammeKind::Cash,
            funding: id("prog"),
        }));
        commands.push(Step::One(Command::Transfer {
            id: id("funding"),
            from: id("donor"),
            to: id("prog"),
            amount: Amount::from_minor_units(5_000, Currency::parse("JOD").unwrap()),
            programme: id("prog"),
            actor: Actor::Operator,
            reference: None,
        }));
        commands.extend(random);
        let mut ledger = State::default();
        let mut model = Model::default();
        let mut log: Vec<Vec<u8>> = Vec::new();
        for (step, command) in commands.iter().enumerate() {
            // Six hours a step, so that 24-hour windows roll over often and 30-day ones do too
            // in long runs.
            let now_ms = step as u64 * STEP_MS;
            let context = Context::at(now_ms);
            model.now = now_ms;
            let before = ledger.clone();
            let command = &match command {
                Step::One(command) => Step::One(with_original(command, &log)),
                Step::Linked(commands) => Step::Linked(commands.iter().map(|c| with_original(c, &log)).collect()),
            };
            let (expected, outcome) = match command {
                Step::One(command) => (
                    model.step(command),
                    decide(&ledger, command, &context).map_err(|r| r.code()),
                ),
                Step::Linked(commands) => (
                    model.step_linked(commands),
                    ledger.execute_linked(commands, &context).map_err(|r| r.rejection.code()),
                ),
            };
            match outcome {
                Ok(events) => {
                    prop_assert_eq!(expected, Some(!events.is_empty()), "step {}: {:?}", step, command);
                    if let Step::One(_) = command {
                        for event in &events {
                            ledger.apply(event).unwrap();
                        }
                    }
                    log.extend(events.iter().map(sanad_ledger::Event::to_entry));
                }
                Err(code) => {
                    prop_assert_eq!(expected, None, "step {}: {:?} rejected as {}", step, command, code);
                    // A refusal, of one command or of a whole group, changes nothing.
                    prop_assert_eq!(&ledger, &before);
                }
            }
            // Balances match the model, sum to zero per currency, and only external ones go below zero.
            for account in ledger.accounts() {
                let modelled = model.accounts[account.id().as_str()];
                prop_assert_eq!(account.balance().minor_units(), modelled.2);
                prop_assert_eq!(account.balance().minor_units() - account.available().minor_units(), modelled.5);
                prop_assert!(account.available().minor_units() >= 0 || account.kind() == AccountKind::External);
            }
            prop_assert!(ledger.totals().values().all(|total| *total == 0));
            // Replaying the encoded log from scratch gives exactly the live state.
            let replayed = replay(log.iter().map(Vec::as_slice)).unwrap();
            prop_assert_eq!(&replayed, &ledger);
        }
    }
}

#[test]
fn rejections_change_nothing_and_have_stable_codes() {
    let jod = Currency::parse("JOD").unwrap();
    let context = Context::at(0);
    let mut ledger = State::default();
    for (name, kind, _) in &ACCOUNTS[..3] {
        let open =
            Command::OpenAccount { id: id(name), kind: *kind, currency: jod, owner: id("o") };
        ledger.execute(&open, &context).unwrap();
    }
    let create = Command::CreateProgramme {
        id: id("prog"),
        name: "Programme".into(),
        kind: ProgrammeKind::Cash,
        funding: id("prog"),
    };
    ledger.execute(&create, &context).unwrap();
    let transfer =
        |t: &str, from: &str, to: &str, amount: &str, currency: Currency| Command::Transfer {
            id: id(t),
            from: id(from),
            to: id(to),
            amount: Amount::parse_signed(amount, currency).unwrap(),
            programme: id("prog"),
            actor: Actor::Operator,
            reference: None,
        };
    let usd = Currency::parse("USD").unwrap();
    let cases = [
        (transfer("a", "nobody", "w1", "1", jod), "account_not_found"),
        (transfer("b", "w1", "w1", "1", jod), "same_account"),
        (transfer("c", "donor", "w1", "0", jod), "amount_must_be_positive"),
        (transfer("d", "donor", "w1", "-1", jod), "amount_must_be_positive"),
        (transfer("e", "donor", "w1", "1", usd), "currency_mismatch"),
        (transfer("f", "w1", "prog", "1", jod), "insufficient_funds"),
    ];
    let before = ledger.clone();
    for (command, code) in cases {
        let rejection = decide(&ledger, &command, &context).unwrap_err();
        assert_eq!(rejection.code(), code, "{command:?}");
        assert_eq!(ledger, before);
    }
    // The same id with other content is its own rejection; the same content is answered.
    let pay = transfer("g", "donor", "w1", "5", jod);
    for event in decide(&ledger, &pay, &context).unwrap() {
        ledger.apply(&event).unwrap();
    }
    assert!(decide(&ledger, &pay, &context).unwrap().is_empty());
    let other = transfer("g", "donor", "w1", "6", jod);
    assert_eq!(decide(&ledger, &other, &context).unwrap_err().code(), "idempotency_key_reused");
}
