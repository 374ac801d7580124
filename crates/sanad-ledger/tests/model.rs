//! Model-based property test: random command sequences (with retries, freezes, closes,
//! overdrafts and bad input) applied to the engine and to a tiny reference model that shares no
//! code with it agree at every step. After every step: per currency the balances sum to zero,
//! no account but an external one is negative, and replaying the encoded log from scratch gives
//! exactly the live state.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use sanad_ledger::{AccountKind, Actor, Command, Context, Ledger, decide, replay};
use sanad_money::{Amount, Currency, Id};

/// The reference model: plain maps and the rules written out naively.
#[derive(Default)]
struct Model {
    accounts: HashMap<String, (AccountKind, &'static str, i64, bool, bool)>, // kind, currency, balance, frozen, closed
    transfers: HashMap<String, (String, String, i64, &'static str)>,
}

impl Model {
    /// Returns whether the command changes the state (`Some(true)`), is an accepted retry
    /// (`Some(false)`), or is refused (`None`).
    fn step(&mut self, command: &Command) -> Option<bool> {
        match command {
            Command::OpenAccount { id, kind, currency, .. } => {
                if self.accounts.contains_key(id.as_str()) {
                    return None;
                }
                self.accounts.insert(id.to_string(), (*kind, currency.code(), 0, false, false));
                Some(true)
            }
            Command::Transfer { id, from, to, amount, .. } => {
                let content = (
                    from.to_string(),
                    to.to_string(),
                    amount.minor_units(),
                    amount.currency().code(),
                );
                if let Some(existing) = self.transfers.get(id.as_str()) {
                    return if *existing == content { Some(false) } else { None };
                }
                let source = *self.accounts.get(from.as_str())?;
                let target = *self.accounts.get(to.as_str())?;
                let code = amount.currency().code();
                let minor = amount.minor_units();
                if from == to || minor <= 0 || source.1 != code || target.1 != code {
                    return None;
                }
                if source.3 || source.4 || target.3 || target.4 {
                    return None;
                }
                if source.0 != AccountKind::External && source.2 < minor {
                    return None;
                }
                self.accounts.get_mut(from.as_str())?.2 -= minor;
                self.accounts.get_mut(to.as_str())?.2 += minor;
                self.transfers.insert(id.to_string(), content);
                Some(true)
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
            Command::CloseAccount { id } => {
                let account = self.accounts.get_mut(id.as_str())?;
                if account.4 {
                    return Some(false);
                }
                if account.2 != 0 {
                    return None;
                }
                account.4 = true;
                Some(true)
            }
        }
    }
}

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

fn command() -> impl Strategy<Value = Command> {
    let account = 0..ACCOUNTS.len();
    prop_oneof![
        account.clone().prop_map(|a| Command::OpenAccount {
            id: id(ACCOUNTS[a].0),
            kind: ACCOUNTS[a].1,
            currency: Currency::parse(ACCOUNTS[a].2).unwrap(),
            owner: id("owner"),
        }),
        // A small id space for transfer ids, so that retries and reuses happen often.
        (0u8..12, account.clone(), account.clone(), -5i64..2_000, prop::bool::weighted(0.9))
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
        account.clone().prop_map(|a| Command::FreezeAccount { id: id(ACCOUNTS[a].0) }),
        account.clone().prop_map(|a| Command::UnfreezeAccount { id: id(ACCOUNTS[a].0) }),
        account.prop_map(|a| Command::CloseAccount { id: id(ACCOUNTS[a].0) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_agrees_with_the_model_and_replays_exactly(commands in prop::collection::vec(command(), 1..120)) {
        let mut ledger = Ledger::default();
        let mut model = Model::default();
        let mut log: Vec<Vec<u8>> = Vec::new();
        for (step, command) in commands.iter().enumerate() {
            let context = Context { now_ms: step as u64 };
            let expected = model.step(command);
            match decide(&ledger, command, &context) {
                Ok(events) => {
                    prop_assert_eq!(expected, Some(!events.is_empty()), "step {}: {:?}", step, command);
                    for event in &events {
                        ledger.apply(event).unwrap();
                        log.push(event.to_entry());
                    }
                }
                Err(rejection) => {
                    prop_assert_eq!(expected, None, "step {}: {:?} rejected as {}", step, command, rejection.code());
                }
            }
            // Balances match the model, sum to zero per currency, and only external ones go below zero.
            for account in ledger.accounts() {
                let modelled = model.accounts[account.id().as_str()];
                prop_assert_eq!(account.balance().minor_units(), modelled.2);
                prop_assert!(account.balance().minor_units() >= 0 || account.kind() == AccountKind::External);
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
    let context = Context { now_ms: 0 };
    let mut ledger = Ledger::default();
    for (name, kind, _) in &ACCOUNTS[..3] {
        let open =
            Command::OpenAccount { id: id(name), kind: *kind, currency: jod, owner: id("o") };
        for event in decide(&ledger, &open, &context).unwrap() {
            ledger.apply(&event).unwrap();
        }
    }
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
