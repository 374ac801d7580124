//! Rules outside the money-movement model: programmes, tiers, beneficiaries and linked groups
//! that open things. Each refusal is checked to leave the state unchanged and to replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sanad_ledger::{
    AccountKind, Actor, Command, Context, Event, Limits, ProgrammeKind, State, TransferRecord,
    replay,
};
use sanad_money::{Amount, Currency, Id};

fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

fn jod(text: &str) -> Amount {
    Amount::parse(text, Currency::parse("JOD").unwrap()).unwrap()
}

const NOW: Context = Context { now_ms: 1_000, by: None };

/// A state with a funded programme `prog`, wallets `w1`, `w2` and an external `donor`.
fn funded() -> (State, Vec<Event>) {
    let mut state = State::default();
    let mut log = Vec::new();
    let currency = Currency::parse("JOD").unwrap();
    let open = |name: &str, kind| Command::OpenAccount {
        id: id(name),
        kind,
        currency,
        owner: id("agency"),
    };
    let commands = [
        open("donor", AccountKind::External),
        open("prog", AccountKind::ProgrammeFunding),
        open("w1", AccountKind::Wallet),
        open("w2", AccountKind::Wallet),
        Command::CreateProgramme {
            id: id("prog"),
            name: "Winter cash".into(),
            kind: ProgrammeKind::Cash,
            funding: id("prog"),
        },
        transfer("fund", "donor", "prog", "1000"),
    ];
    for command in &commands {
        log.extend(state.execute(command, &NOW).unwrap());
    }
    (state, log)
}

fn transfer(transfer: &str, from: &str, to: &str, amount: &str) -> Command {
    Command::Transfer {
        id: id(transfer),
        from: id(from),
        to: id(to),
        amount: jod(amount),
        programme: id("prog"),
        actor: Actor::Operator,
        reference: None,
    }
}

fn refused(state: &mut State, command: &Command) -> &'static str {
    let before = state.clone();
    let code = state.execute(command, &NOW).unwrap_err().code();
    assert_eq!(*state, before, "a refusal changes nothing");
    code
}

fn replays(state: &State, log: &[Event]) {
    let entries: Vec<Vec<u8>> = log.iter().map(Event::to_entry).collect();
    assert_eq!(replay(entries.iter().map(Vec::as_slice)).unwrap(), *state);
}

#[test]
fn transfers_name_an_existing_programme_and_are_counted_under_it() {
    let (mut state, mut log) = funded();
    let mut other = transfer("t1", "prog", "w1", "10");
    if let Command::Transfer { programme, .. } = &mut other {
        *programme = id("nope");
    }
    assert_eq!(refused(&mut state, &other), "programme_not_found");
    log.extend(state.execute(&transfer("t1", "prog", "w1", "10"), &NOW).unwrap());
    // A reversal carries the original's content (read from the log); it must match what
    // the idempotency index remembers of it.
    let original = |amount: &str| {
        Some(TransferRecord::of(
            &id("prog"),
            &id("w1"),
            &jod(amount),
            &id("prog"),
            Actor::Operator,
            &None,
        ))
    };
    let reverse_as = |reversal: &str, record| Command::Reverse {
        id: id(reversal),
        original: id("t1"),
        actor: Actor::Operator,
        original_transfer: record,
    };
    let reverse = |record| reverse_as("r1", record);
    assert_eq!(refused(&mut state, &reverse(None)), "transfer_not_found");
    assert_eq!(refused(&mut state, &reverse(original("11"))), "transfer_not_found");
    log.extend(state.execute(&reverse(original("10")), &NOW).unwrap());
    assert_eq!(refused(&mut state, &reverse_as("r2", original("10"))), "already_reversed");
    assert!(state.execute(&reverse(original("10")), &NOW).unwrap().is_empty(), "a retry");
    let totals: Vec<_> = state.programme_totals(&id("prog")).collect();
    assert_eq!(totals.len(), 1);
    let (currency, totals) = totals[0];
    assert_eq!(currency.code(), "JOD");
    assert_eq!((totals.transfers, totals.moved_minor), (2, 1_010_000));
    assert_eq!((totals.reversals, totals.reversed_minor), (1, 10_000));
    replays(&state, &log);
}

#[test]
fn programmes_need_a_free_funding_account_and_a_clean_name() {
    let (mut state, _) = funded();
    let create = |name: &str, funding: &str| Command::CreateProgramme {
        id: id("prog-2"),
        name: name.into(),
        kind: ProgrammeKind::ValueVoucher,
        funding: id(funding),
    };
    assert_eq!(refused(&mut state, &create("Food", "w1")), "not_a_funding_account");
    assert_eq!(refused(&mut state, &create("Food", "prog")), "not_a_funding_account");
    assert_eq!(refused(&mut state, &create("", "prog")), "invalid_text");
    assert_eq!(refused(&mut state, &create("Food\nline", "prog")), "invalid_text");
    assert_eq!(refused(&mut state, &create(&"x".repeat(201), "prog")), "invalid_text");
    assert_eq!(refused(&mut state, &create("Food", "nobody")), "account_not_found");
}

#[test]
fn a_tier_fills_the_limits_an_account_leaves_out() {
    let (mut state, mut log) = funded();
    let tier = Command::DefineTier {
        id: id("tier-1"),
        currency: Currency::parse("JOD").unwrap(),
        limits: Limits {
            max_balance: Some(jod("100")),
            max_transfer: Some(jod("30")),
            ..Limits::default()
        },
    };
    log.extend(state.execute(&tier, &NOW).unwrap());
    assert!(state.execute(&tier, &NOW).unwrap().is_empty(), "redefining identically is a no-op");
    let set = Command::SetTier { account: id("w1"), tier: Some(id("tier-1")) };
    log.extend(state.execute(&set, &NOW).unwrap());
    log.extend(state.execute(&transfer("t1", "prog", "w1", "100"), &NOW).unwrap());
    assert_eq!(refused(&mut state, &transfer("t2", "prog", "w1", "0.001")), "limit_exceeded");
    assert_eq!(refused(&mut state, &transfer("t3", "w1", "w2", "30.001")), "limit_exceeded");
    log.extend(state.execute(&transfer("t3", "w1", "w2", "30"), &NOW).unwrap());
    // The account's own limit wins over the tier's, field by field.
    let own = Command::SetLimits {
        account: id("w1"),
        limits: Limits { max_transfer: Some(jod("50")), ..Limits::default() },
    };
    log.extend(state.execute(&own, &NOW).unwrap());
    log.extend(state.execute(&transfer("t4", "w1", "w2", "50"), &NOW).unwrap());
    assert_eq!(refused(&mut state, &transfer("t5", "prog", "w1", "80.001")), "limit_exceeded");
    // Tiers keep their currency and must exist.
    let usd = Command::DefineTier {
        id: id("tier-1"),
        currency: Currency::parse("USD").unwrap(),
        limits: Limits::default(),
    };
    assert_eq!(refused(&mut state, &usd), "currency_mismatch");
    let missing = Command::SetTier { account: id("w2"), tier: Some(id("tier-9")) };
    assert_eq!(refused(&mut state, &missing), "tier_not_found");
    assert_eq!(state.limits_of(state.account(&id("w1")).unwrap()).max_balance, Some(jod("100")));
    replays(&state, &log);
}

#[test]
fn beneficiaries_are_registered_once_and_erased_once() {
    let (mut state, mut log) = funded();
    let commitment = "ab".repeat(32);
    let register = Command::RegisterBeneficiary { id: id("b-1"), commitment };
    log.extend(state.execute(&register, &NOW).unwrap());
    assert!(state.execute(&register, &NOW).unwrap().is_empty(), "a retry is answered");
    let other = Command::RegisterBeneficiary { id: id("b-1"), commitment: "cd".repeat(32) };
    assert_eq!(refused(&mut state, &other), "beneficiary_exists");
    for bad in ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)] {
        let bad = Command::RegisterBeneficiary { id: id("b-2"), commitment: bad };
        assert_eq!(refused(&mut state, &bad), "invalid_commitment");
    }
    let erase = Command::EraseBeneficiary { id: id("b-1") };
    log.extend(state.execute(&erase, &NOW).unwrap());
    assert!(state.beneficiary(&id("b-1")).unwrap().erased);
    assert!(state.execute(&erase, &NOW).unwrap().is_empty());
    assert_eq!(
        refused(&mut state, &Command::EraseBeneficiary { id: id("b-9") }),
        "beneficiary_not_found"
    );
    replays(&state, &log);
}

#[test]
fn a_linked_group_that_opens_and_funds_applies_all_or_nothing() {
    let (mut state, mut log) = funded();
    let currency = Currency::parse("JOD").unwrap();
    let group = |fee: &str| {
        vec![
            Command::OpenAccount {
                id: id("agent"),
                kind: AccountKind::CashOutAgent,
                currency,
                owner: id("a"),
            },
            transfer("pay", "prog", "w1", "900"),
            transfer("fee", "prog", "agent", fee),
        ]
    };
    let before = state.clone();
    let refused = state.execute_linked(&group("100.001"), &NOW).unwrap_err();
    assert_eq!((refused.index, refused.rejection.code()), (2, "insufficient_funds"));
    assert_eq!(state, before, "the opened account and the first payment were undone");
    let expire = [transfer("x", "prog", "w1", "1"), Command::ExpireDue { at_most: 10 }];
    assert_eq!(state.execute_linked(&expire, &NOW).unwrap_err().rejection.code(), "not_linkable");
    assert_eq!(state, before);
    log.extend(state.execute_linked(&group("100"), &NOW).unwrap());
    assert_eq!(state.account(&id("prog")).unwrap().balance(), jod("0"));
    replays(&state, &log);
}
