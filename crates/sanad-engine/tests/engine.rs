//! The shared ledger: durable answers, retries answered with the original's index, reopening
//! from a snapshot or a full replay, history pages, expiry by the engine's clock, and many
//! threads spending from one wallet without ever overdrawing it — each with the log on sled
//! and again on a throwaway PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sanad_engine::{Ledger, Options};
use sanad_ledger::{AccountKind, Actor, Command, ProgrammeKind};
use sanad_money::{Amount, Currency, Id};

/// Where a test's ledger keeps its log.
enum Store {
    /// sled in the ledger's folder (the default).
    Sled,
    /// A database on a throwaway server, which runs as long as this value lives.
    Postgres { _server: sanad_postgres::testing::TestServer, url: String },
}

impl Store {
    fn sled() -> Self {
        Self::Sled
    }

    fn postgres() -> Self {
        let server = sanad_postgres::testing::TestServer::for_test();
        let url = server.database("engine").unwrap();
        Self::Postgres { _server: server, url }
    }

    /// Options with this store's log backend (a new connection each time, as a new process
    /// would open one).
    fn options(&self) -> Options {
        match self {
            Self::Sled => Options::default(),
            Self::Postgres { url, .. } => {
                let backend = sanad_postgres::PgBackend::connect(url).unwrap();
                Options { log_backend: Some(Arc::new(backend)), ..Options::default() }
            }
        }
    }
}

/// Each test twice: on sled, and on PostgreSQL.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(#[test]
            fn $name() {
                super::$name(&super::Store::sled());
            })*
        }
        mod on_postgresql {
            $(#[test]
            fn $name() {
                super::$name(&super::Store::postgres());
            })*
        }
    };
}

on_both_stores!(
    answers_are_durable_retries_name_the_original_and_reopening_restores_everything,
    history_pages_through_an_account_oldest_first,
    holds_expire_by_the_engine_clock_as_logged_events,
    many_threads_spending_from_one_wallet_never_overdraw_it,
    a_reversal_reads_its_original_from_the_log,
    the_key_rotates_through_the_writer_and_the_ledger_carries_on,
    ids_moved_to_the_archive_are_still_answered_across_restarts
);

fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

fn jod(text: &str) -> Amount {
    Amount::parse(text, Currency::parse("JOD").unwrap()).unwrap()
}

fn open(name: &str, kind: AccountKind) -> Command {
    Command::OpenAccount {
        id: id(name),
        kind,
        currency: Currency::parse("JOD").unwrap(),
        owner: id("agency"),
    }
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

/// A ledger with a programme funded with `budget` and wallets `w0`..`w{wallets}`.
fn funded(dir: &std::path::Path, options: Options, budget: &str, wallets: usize) -> Ledger {
    let ledger = Ledger::create(dir, "example.org/engine-test", options).unwrap();
    let mut setup = vec![
        open("donor", AccountKind::External),
        open("prog", AccountKind::ProgrammeFunding),
        Command::CreateProgramme {
            id: id("prog"),
            name: "Test programme".into(),
            kind: ProgrammeKind::Cash,
            funding: id("prog"),
        },
        transfer("fund", "donor", "prog", budget),
    ];
    setup.extend((0..wallets).map(|w| open(&format!("w{w}"), AccountKind::Wallet)));
    for result in ledger.execute_each(setup).unwrap() {
        result.unwrap();
    }
    ledger
}

fn answers_are_durable_retries_name_the_original_and_reopening_restores_everything(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = funded(dir.path(), store.options(), "1000", 2);
    let first = ledger.execute(transfer("t1", "prog", "w0", "10")).unwrap().unwrap();
    let index = first.log_index.unwrap();
    assert_eq!(ledger.log().size(), index + 1, "answered only once in the log");
    let retry = ledger.execute(transfer("t1", "prog", "w0", "10")).unwrap().unwrap();
    assert_eq!((retry.log_index, retry.events.len()), (Some(index), 0));
    let reused = ledger.execute(transfer("t1", "prog", "w0", "11")).unwrap().unwrap_err();
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(ledger.log().size(), index + 1, "a refusal appends nothing");
    let size = ledger.size();
    drop(ledger);

    // Closing wrote a snapshot: reopening replays nothing.
    let ledger = Ledger::open(dir.path(), store.options()).unwrap();
    assert_eq!(ledger.open_report().snapshot_size, size, "{:?}", ledger.open_report());
    assert_eq!(ledger.open_report().replayed, 0);
    assert_eq!(ledger.account(&id("w0")).unwrap().balance(), jod("10"));
    let retry = ledger.execute(transfer("t1", "prog", "w0", "10")).unwrap().unwrap();
    assert_eq!(retry.log_index, Some(index), "ids survive restarts");
    drop(ledger);

    // As after a crash: the snapshot is older than the log.
    let no_snapshot = Options { snapshot_on_close: false, ..store.options() };
    let ledger = Ledger::open(dir.path(), no_snapshot).unwrap();
    ledger.execute(transfer("t2", "prog", "w1", "5")).unwrap().unwrap();
    let live = ledger.read(sanad_ledger::State::detached);
    drop(ledger);

    // The stale snapshot is used and the entry after it replayed.
    let ledger = Ledger::open(dir.path(), store.options()).unwrap();
    assert_eq!(ledger.open_report().replayed, 1);
    assert_eq!(ledger.read(Clone::clone), live);
    drop(ledger);

    // A damaged snapshot is ignored; the log is the truth.
    let path = dir.path().join("ledger.snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let ledger = Ledger::open(dir.path(), store.options()).unwrap();
    assert!(ledger.open_report().snapshot_ignored.is_some());
    assert_eq!(ledger.read(Clone::clone), live);
}

fn history_pages_through_an_account_oldest_first(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = funded(dir.path(), store.options(), "1000", 2);
    let payments: Vec<Command> =
        (0..25).map(|n| transfer(&format!("p{n}"), "prog", "w0", "1")).collect();
    for result in ledger.execute_each(payments).unwrap() {
        result.unwrap();
    }
    ledger.execute(transfer("other", "prog", "w1", "1")).unwrap().unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = ledger.history(&id("w0"), cursor, 10).unwrap();
        seen.extend(page.items.iter().map(|(index, event)| (*index, event.transfer_id().cloned())));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // Opened, then 25 payments, in log order, and nothing of w1's.
    assert_eq!(seen.len(), 26);
    assert!(seen.windows(2).all(|pair| pair[0].0 < pair[1].0));
    assert_eq!(seen[1].1, Some(id("p0")));
    assert_eq!(seen[25].1, Some(id("p24")));
}

fn holds_expire_by_the_engine_clock_as_logged_events(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock = Arc::clone(&now);
    let options =
        Options { clock: Arc::new(move || clock.load(Ordering::SeqCst)), ..store.options() };
    let ledger = funded(dir.path(), options, "100", 1);
    let hold = Command::Reserve {
        id: id("h1"),
        from: id("prog"),
        to: id("w0"),
        amount: jod("60"),
        programme: id("prog"),
        actor: Actor::System,
        reference: None,
        timeout_ms: 5_000,
    };
    ledger.execute(hold).unwrap().unwrap();
    assert_eq!(ledger.account(&id("prog")).unwrap().available(), jod("40"));
    assert_eq!(
        ledger.execute(transfer("t", "prog", "w0", "50")).unwrap().unwrap_err().code(),
        "insufficient_funds"
    );
    now.fetch_add(5_000, Ordering::SeqCst);
    // The next batch releases the hold first, then decides the call: each answer carries its
    // own events and the index of the first, past the expiry's entry.
    let size = ledger.size();
    let answers = ledger
        .execute_each(vec![
            transfer("t", "prog", "w0", "50"),
            transfer("t-too-much", "prog", "w0", "51"),
            transfer("t", "prog", "w0", "50"),
            transfer("t2", "w0", "prog", "1"),
        ])
        .unwrap();
    let paid = answers[0].as_ref().unwrap();
    assert_eq!(paid.log_index, Some(size + 1), "the expiry's entry comes first");
    assert!(
        matches!(paid.events[..], [sanad_ledger::Event::TransferPosted { ref transfer, .. }] if *transfer == id("t"))
    );
    assert_eq!(answers[1].as_ref().unwrap_err().code(), "insufficient_funds");
    let retry = answers[2].as_ref().unwrap();
    assert_eq!((retry.log_index, retry.events.len()), (Some(size + 1), 0));
    let returned = answers[3].as_ref().unwrap();
    assert_eq!(returned.log_index, Some(size + 2));
    assert!(
        matches!(returned.events[..], [sanad_ledger::Event::TransferPosted { ref transfer, .. }] if *transfer == id("t2"))
    );
    assert_eq!(ledger.size(), size + 3);
    assert_eq!(ledger.account(&id("prog")).unwrap().available(), jod("51"));
    let expired = ledger.history(&id("prog"), None, 100).unwrap();
    assert!(
        expired.items.iter().any(|(_, e)| matches!(e, sanad_ledger::Event::PendingExpired { .. }))
    );
}

fn many_threads_spending_from_one_wallet_never_overdraw_it(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(funded(dir.path(), store.options(), "1000", 9));
    ledger.execute(transfer("load", "prog", "w0", "100")).unwrap().unwrap();
    // 100 / 0.75 = 133 payments fit, and exactly those were made.
    assert_eq!(spenders_race(std::slice::from_ref(&ledger)), 133);
    let wallet = ledger.account(&id("w0")).unwrap();
    assert_eq!(wallet.balance(), jod("0.25"));
    let spent: i64 = (1..9)
        .map(|w| ledger.account(&id(&format!("w{w}"))).unwrap().balance().minor_units())
        .sum();
    assert_eq!(spent, 133 * 750);
    ledger.read(|state| assert!(state.totals().values().all(|total| *total == 0)));
}

/// Eight threads, spread over `ledgers`, each trying 40 times to pay 0.75 from `w0` to a
/// wallet of its own (`w1`..`w8`); how many payments were made. Every refusal must be for
/// insufficient funds.
fn spenders_race(ledgers: &[Arc<Ledger>]) -> i64 {
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let ledger = Arc::clone(&ledgers[thread % ledgers.len()]);
            std::thread::spawn(move || {
                let mut paid = 0;
                for n in 0..40 {
                    let to = format!("w{}", thread + 1);
                    let spend = transfer(&format!("s{thread}-{n}"), "w0", &to, "0.75");
                    match ledger.execute(spend).unwrap() {
                        Ok(_) => paid += 1,
                        Err(rejection) => assert_eq!(rejection.code(), "insufficient_funds"),
                    }
                }
                paid
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn a_reversal_reads_its_original_from_the_log(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = funded(dir.path(), store.options(), "100", 1);
    let paid = ledger.execute(transfer("t1", "prog", "w0", "30")).unwrap().unwrap();
    let reverse = |id_: &str, original: &str| Command::Reverse {
        id: id(id_),
        original: id(original),
        actor: Actor::Operator,
        original_transfer: None,
    };
    let (index, _) = ledger.transfer(&id("t1")).unwrap().unwrap();
    assert_eq!(Some(index), paid.log_index);
    ledger.execute(reverse("r1", "t1")).unwrap().unwrap();
    assert_eq!(ledger.account(&id("w0")).unwrap().balance(), jod("0"));
    let again = ledger.execute(reverse("r2", "t1")).unwrap().unwrap_err();
    assert_eq!(again.code(), "already_reversed");
    let missing = ledger.execute(reverse("r3", "nope")).unwrap().unwrap_err();
    assert_eq!(missing.code(), "transfer_not_found");
    // A transfer and its reversal in one call: the original is found in the same batch, as
    // it would be in two calls (how calls are batched must not change their answers).
    let both =
        ledger.execute_each(vec![transfer("t2", "prog", "w0", "20"), reverse("r4", "t2")]).unwrap();
    assert!(both.iter().all(Result::is_ok), "{both:?}");
    assert_eq!(ledger.account(&id("w0")).unwrap().balance(), jod("0"));
    // The reversal's entry names what it undid; replaying it checks that against the original.
    drop(ledger);
    std::fs::remove_file(dir.path().join("ledger.snapshot")).unwrap();
    let ledger = Ledger::open(dir.path(), store.options()).unwrap();
    assert_eq!(ledger.account(&id("prog")).unwrap().balance(), jod("100"));
}

fn the_key_rotates_through_the_writer_and_the_ledger_carries_on(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = funded(dir.path(), store.options(), "100", 1);
    let old = ledger.log().verifier();
    ledger.execute(transfer("t1", "prog", "w0", "1")).unwrap().unwrap();
    let new = ledger.rotate_key().unwrap();
    assert_ne!(new, old);
    let after = ledger.execute(transfer("t2", "prog", "w0", "2")).unwrap().unwrap();
    assert_eq!(after.log_index, Some(ledger.size() - 1));
    drop(ledger);
    std::fs::remove_file(dir.path().join("ledger.snapshot")).unwrap();
    let ledger = Ledger::open(dir.path(), store.options()).unwrap();
    assert_eq!(ledger.account(&id("w0")).unwrap().balance(), jod("3"));
    assert_eq!(ledger.log().verifier(), new);
}

fn ids_moved_to_the_archive_are_still_answered_across_restarts(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let small = || Options { recent_ids_max: 7, ..store.options() };
    let ledger = funded(dir.path(), small(), "1000", 3);
    let mut indexes = Vec::new();
    for call in 0..10 {
        let batch: Vec<Command> = (0..10)
            .map(|n| transfer(&format!("t{call}-{n}"), "prog", &format!("w{}", n % 3), "1"))
            .collect();
        for result in ledger.execute_each(batch).unwrap() {
            indexes.push(result.unwrap().log_index.unwrap());
        }
    }
    assert!(ledger.read(sanad_ledger::State::recent_id_count) < 7, "older ids moved out");
    let check = |ledger: &Ledger| {
        // A retry of an archived id is answered with its original index; a reuse is refused.
        let retry = ledger.execute(transfer("t0-3", "prog", "w0", "1")).unwrap().unwrap();
        assert_eq!((retry.log_index, retry.events.len()), (Some(indexes[3]), 0));
        let reused = ledger.execute(transfer("t0-4", "prog", "w1", "2")).unwrap().unwrap_err();
        assert_eq!(reused.code(), "idempotency_key_reused");
        assert_eq!(ledger.log_index_of(&id("t5-5")), Some(indexes[55]));
    };
    check(&ledger);
    let reverse = Command::Reverse {
        id: id("r-archived"),
        original: id("t0-0"),
        actor: Actor::Operator,
        original_transfer: None,
    };
    ledger.execute(reverse).unwrap().unwrap();
    let balances = ledger.read(|state| state.totals());
    drop(ledger);
    // With the snapshot and the archive.
    let ledger = Ledger::open(dir.path(), small()).unwrap();
    assert_eq!(ledger.open_report().replayed, 0);
    check(&ledger);
    drop(ledger);
    // From the log alone: the archive is rebuilt as the log replays.
    std::fs::remove_file(dir.path().join("ledger.snapshot")).unwrap();
    let ledger = Ledger::open(dir.path(), small()).unwrap();
    assert!(ledger.open_report().replayed > 100);
    check(&ledger);
    assert_eq!(ledger.read(|state| state.totals()), balances);
    assert_eq!(ledger.account(&id("w0")).unwrap().balance(), jod("39"));
}

/// Two ledgers on one PostgreSQL database, as two server processes would run them (each with
/// its own folder and a copy of the key): each decides on the whole log, so together they
/// never overdraw a wallet, a retry at one is answered with what the other applied, and both
/// see the same balances.
#[test]
fn two_ledgers_on_one_database_decide_on_the_whole_log() {
    let store = Store::postgres();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(funded(dir_a.path(), store.options(), "1000", 9));
    let loaded = a.execute(transfer("load", "prog", "w0", "100")).unwrap().unwrap();
    std::fs::copy(dir_a.path().join("log.key"), dir_b.path().join("log.key")).unwrap();
    let b = Arc::new(Ledger::open(dir_b.path(), store.options()).unwrap());
    assert_eq!(b.account(&id("w0")).unwrap().balance(), jod("100"));

    // Eight spenders, four at each ledger, racing for one wallet's 100.
    let paid = spenders_race(&[a.clone(), b.clone()]);
    assert_eq!(paid, 133, "100 / 0.75 = 133 payments fit, across both ledgers together");

    // A retry at the other ledger is answered with the original's entry, not applied again.
    let retry = b.execute(transfer("load", "prog", "w0", "100")).unwrap().unwrap();
    assert_eq!(retry.log_index, loaded.log_index);
    assert!(retry.events.is_empty());

    // An idle ledger catches up on its own within moments.
    let size = b.size();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while a.size() < size && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for ledger in [&a, &b] {
        assert_eq!(ledger.size(), size);
        assert_eq!(ledger.account(&id("w0")).unwrap().balance(), jod("0.25"));
        ledger.read(|state| assert!(state.totals().values().all(|total| *total == 0)));
    }
    let spent = |ledger: &Ledger| -> i64 {
        (1..9).map(|w| ledger.account(&id(&format!("w{w}"))).unwrap().balance().minor_units()).sum()
    };
    assert_eq!((spent(&a), spent(&b)), (133 * 750, 133 * 750));

    // A key rotated at one stops the other, which holds the old key only.
    a.rotate_key().unwrap();
    // (It finds out at its next turn: the call, or its idle refresh before it.)
    let stale = b.execute(transfer("late", "prog", "w1", "1")).unwrap_err();
    assert!(stale.to_string().contains("another process rotated the log's key"), "{stale}");
    drop((a, b));
    // Rebuilt from the log alone, the state is the same.
    std::fs::remove_file(dir_a.path().join("ledger.snapshot")).unwrap();
    let rebuilt = Ledger::open(dir_a.path(), store.options()).unwrap();
    assert_eq!(rebuilt.account(&id("w0")).unwrap().balance(), jod("0.25"));
    assert_eq!(spent(&rebuilt), 133 * 750);
}
