//! Ledger crash test: a child process runs the ledger under load from several threads (single
//! transfers, batches, holds that are posted, linked groups) and is killed with SIGKILL at
//! random moments, again and again. After every kill: the ledger reopens; its export passes
//! the offline auditor; every transfer the child saw acknowledged is present exactly once, at
//! the log index it was given, with its content; no linked group is half applied, whether or
//! not it was acknowledged before the kill; the balances sum to zero per currency and
//! only external accounts are negative; and replaying the whole log from scratch gives
//! exactly the reopened state.
//!
//! The child is this test binary re-run with `SANAD_LEDGER_CRASH_CHILD` set; it prints
//! `ack <id> <log index>` after each durable answer. Each cycle's child also retries an id
//! acknowledged in an earlier cycle and checks it is answered, not applied again.
//! `SANAD_CRASH_CYCLES` runs a longer campaign.
//!
//! The campaign runs with the log on sled, and on a throwaway PostgreSQL server
//! (`SANAD_CRASH_DATABASE` tells the child where), where the killed writer's connection, locks
//! and open transaction die with it and the next process takes over the log. On PostgreSQL it
//! also runs with two writing processes at once, each with its own folder and a copy of the
//! key: in each cycle one is killed mid-load while the other carries on alone for a moment
//! (taking over from a turn the dead one may have held), then the other is killed too; each
//! child retries a transfer the *other* process acknowledged earlier, which must be answered.
//!
//! The ledger keeps only [`RECENT_IDS`] idempotency entries in memory here, so that older ones
//! move to the on-disk archive every few hundred transfers and kills land while sets are being
//! written; every acknowledged id must still be answered (most of them from the archive).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sanad::engine::{Ledger, Options};
use sanad::ledger::{AccountKind, Actor, Command, ProgrammeKind, replay};
use sanad::money::{Amount, Currency, Id};

use crate::campaign::{
    assert_money_holds, complete_lines, kill_one_then_the_rest, process_folders, rounds_from_env,
    seeded_rng,
};

const CHILD_ENV: &str = "SANAD_LEDGER_CRASH_CHILD";
const DATABASE_ENV: &str = "SANAD_CRASH_DATABASE";
const THREADS: u64 = 4;
const WALLETS: u64 = 6;
/// How the payment and the fee of a linked pair are named: `…-pair` and `…-pair-fee`.
const PAIR: &str = "-pair";
const FEE: &str = "-fee";
/// Idempotency entries kept in memory before a set moves to the archive.
const RECENT_IDS: usize = 300;

/// The ledger's options: its log on PostgreSQL at `database`, or on sled in its folder.
pub(crate) fn options(database: Option<&str>) -> Options {
    let log_backend = database.map(|url| {
        let backend = sanad_postgres::PgBackend::connect(url).expect("connect to PostgreSQL");
        Arc::new(backend) as Arc<dyn sanad::log::Backend>
    });
    Options { recent_ids_max: RECENT_IDS, log_backend, ..Options::default() }
}

fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

fn jod() -> Currency {
    Currency::parse("JOD").unwrap()
}

/// The transfer a given id stands for: its content follows from the id, so a retry in a later
/// process is the same transfer.
pub(crate) fn payment(transfer: &str, seq: u64) -> Command {
    Command::Transfer {
        id: id(transfer),
        from: id("prog"),
        to: id(&format!("w{}", seq % WALLETS)),
        amount: Amount::from_minor_units(1 + (seq % 9) as i64 * 250, jod()),
        programme: id("prog"),
        actor: Actor::Operator,
        reference: None,
    }
}

pub(crate) fn setup(dir: &Path, database: Option<&str>) {
    let ledger = Ledger::create(dir, "example.org/ledger-crash", options(database)).unwrap();
    let open = |name: &str, kind| Command::OpenAccount {
        id: id(name),
        kind,
        currency: jod(),
        owner: id("agency"),
    };
    let mut commands = vec![
        open("donor", AccountKind::External),
        open("prog", AccountKind::ProgrammeFunding),
        open("agent", AccountKind::CashOutAgent),
        Command::CreateProgramme {
            id: id("prog"),
            name: "Crash test".into(),
            kind: ProgrammeKind::Cash,
            funding: id("prog"),
        },
        Command::Transfer {
            id: id("budget"),
            from: id("donor"),
            to: id("prog"),
            amount: Amount::parse("1000000000", jod()).unwrap(),
            programme: id("prog"),
            actor: Actor::Operator,
            reference: None,
        },
    ];
    commands.extend((0..WALLETS).map(|w| open(&format!("w{w}"), AccountKind::Wallet)));
    for result in ledger.execute_each(commands).unwrap() {
        result.unwrap();
    }
}

fn ack(id: &Id, index: Option<u64>) {
    println!("ack {id} {}", index.expect("an applied transfer has a log index"));
}

/// The child: each thread loops over one kind of work, acknowledging each durable answer.
fn run_child(dir: &Path, database: Option<&str>, label: String, retry: Option<(String, u64)>) -> ! {
    let ledger = Arc::new(Ledger::open(dir, options(database)).expect("child opens the ledger"));
    if let Some((transfer, seq)) = retry {
        let answer = ledger.execute(payment(&transfer, seq)).unwrap().unwrap();
        assert!(answer.events.is_empty(), "a retry across restarts must not apply again");
        println!("retried {transfer} {}", answer.log_index.unwrap());
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let ledger = Arc::clone(&ledger);
            let label = label.clone();
            std::thread::spawn(move || {
                for seq in 0.. {
                    let name = |n: u64| format!("{label}-t{thread}-{n}");
                    match thread {
                        // Single transfers.
                        0 => {
                            let answer = ledger.execute(payment(&name(seq), seq)).unwrap().unwrap();
                            ack(&id(&name(seq)), answer.log_index);
                        }
                        // Batches of 50 in one call.
                        1 => {
                            let batch: Vec<Command> = (0..50)
                                .map(|k| payment(&name(seq * 50 + k), seq * 50 + k))
                                .collect();
                            for (k, result) in
                                ledger.execute_each(batch).unwrap().into_iter().enumerate()
                            {
                                ack(&id(&name(seq * 50 + k as u64)), result.unwrap().log_index);
                            }
                        }
                        // A hold, then its posting.
                        2 => {
                            let hold = Command::Reserve {
                                id: id(&name(seq)),
                                from: id("prog"),
                                to: id("agent"),
                                amount: Amount::from_minor_units(1_000, jod()),
                                programme: id("prog"),
                                actor: Actor::System,
                                reference: None,
                                timeout_ms: 3_600_000,
                            };
                            let held = ledger.execute(hold).unwrap().unwrap();
                            ack(&id(&name(seq)), held.log_index);
                            let post = Command::PostPending {
                                id: id(&format!("{}-post", name(seq))),
                                pending: id(&name(seq)),
                                amount: None,
                            };
                            let posted = ledger.execute(post).unwrap().unwrap();
                            ack(&id(&format!("{}-post", name(seq))), posted.log_index);
                        }
                        // A linked pair: pay a wallet and the agent's fee, all or nothing.
                        _ => {
                            let pair = format!("{}{PAIR}", name(seq));
                            let fee = Command::Transfer {
                                id: id(&format!("{pair}{FEE}")),
                                from: id("prog"),
                                to: id("agent"),
                                amount: Amount::from_minor_units(10, jod()),
                                programme: id("prog"),
                                actor: Actor::System,
                                reference: None,
                            };
                            let group = vec![payment(&pair, seq), fee];
                            let applied = ledger.execute_linked(group).unwrap().unwrap();
                            let first = applied.log_index.unwrap();
                            println!("ack {pair} {first}");
                            println!("ack {pair}{FEE} {}", first + 1);
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    unreachable!("the load never ends")
}

/// The state without its in-memory idempotency entries.
fn without_recent_ids(state: &sanad::ledger::State) -> sanad::ledger::State {
    let mut bare = state.detached();
    let recent: Vec<_> = bare.recent_ids().collect();
    bare.forget_archived(&recent);
    bare
}

#[test]
fn sigkill_under_ledger_load_loses_no_acknowledged_transfer() {
    campaign("ledger_crash::sigkill_under_ledger_load_loses_no_acknowledged_transfer", None, 1);
}

#[test]
fn sigkill_under_ledger_load_on_postgresql_loses_no_acknowledged_transfer() {
    on_postgresql(
        "ledger_crash::sigkill_under_ledger_load_on_postgresql_loses_no_acknowledged_transfer",
        1,
    );
}

/// Two writing processes on one database at once, each with its own folder and a copy of the
/// key; in every cycle one is killed mid-load while the other carries on, then the other too.
#[test]
fn two_writers_on_postgresql_one_killed_mid_load_lose_no_acknowledged_transfer() {
    on_postgresql(
        "ledger_crash::two_writers_on_postgresql_one_killed_mid_load_lose_no_acknowledged_transfer",
        2,
    );
}

/// The campaign with the log on a throwaway PostgreSQL server.
fn on_postgresql(test: &str, processes: usize) {
    crate::campaign::on_postgresql(CHILD_ENV, "ledger_crash", |url| campaign(test, url, processes));
}

/// Kills `processes` children under load `SANAD_CRASH_CYCLES` times (each is the test `test`
/// re-run; with two, one is killed first and the other a moment later, having carried on
/// alone), checking after each cycle; or, in the child, runs the load.
fn campaign(test: &str, database: Option<&str>, processes: usize) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let label = std::env::var("SANAD_CRASH_LABEL").unwrap();
        let retry = std::env::var("SANAD_CRASH_RETRY").ok().map(|r| {
            let (transfer, seq) = r.split_once(' ').unwrap();
            (transfer.to_owned(), seq.parse().unwrap())
        });
        let database = std::env::var(DATABASE_ENV).ok();
        run_child(Path::new(&dir), database.as_deref(), label, retry);
    }
    let cycles = rounds_from_env("SANAD_CRASH_CYCLES", 10);
    let mut rng = seeded_rng(&format!(
        "ledger crash campaign: {processes} writing process(es), {cycles} cycles"
    ));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    setup(&data, database);
    // Each further process has a folder of its own, with a copy of the key.
    let folders = process_folders(dir.path(), &data, "ledger", processes);

    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    let (mut retries, mut carried_on) = (0, 0);
    for cycle in 0..cycles {
        let mut children = Vec::new();
        for (p, folder) in folders.iter().enumerate() {
            let label = format!("c{cycle}-p{p}");
            let mut child = Process::new(std::env::current_exe().unwrap());
            child
                .args([test, "--exact", "--nocapture"])
                .env(CHILD_ENV, folder)
                .env("SANAD_CRASH_LABEL", &label)
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            // Retry a single transfer from an earlier cycle (thread 0's ids map to `payment`),
            // one another process acknowledged when there is one.
            let other = format!("-p{}-t0-", (p + 1) % processes);
            let earlier = acknowledged.keys().find(|k| k.contains(&other)).cloned();
            if let Some(transfer) = &earlier {
                let seq: u64 = transfer.rsplit('-').next().unwrap().parse().unwrap();
                child.env("SANAD_CRASH_RETRY", format!("{transfer} {seq}"));
            }
            if let Some(url) = database {
                child.env(DATABASE_ENV, url);
            }
            let mut child = child.spawn().unwrap();
            let lines = complete_lines(child.stdout.take().unwrap());
            children.push((child, lines));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        // One is killed mid-load; the others carry on a moment, alone, before they are too.
        let (outputs, first) = kill_one_then_the_rest(children, 200..500, &mut rng);
        let mut lines = Vec::new();
        for (p, printed) in outputs.into_iter().enumerate() {
            if p != first && printed.iter().any(|l| l.starts_with("ack")) {
                carried_on += 1;
            }
            lines.extend(printed);
        }
        for line in lines {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("ack"), Some(transfer), Some(index)) => {
                    acknowledged.insert(transfer.to_owned(), index.parse().unwrap());
                }
                (Some("retried"), Some(transfer), Some(index)) => {
                    assert_eq!(
                        acknowledged[transfer],
                        index.parse::<u64>().unwrap(),
                        "a retry names the original"
                    );
                    retries += 1;
                }
                _ => {}
            }
        }

        let ledger = check_reopened(&format!("cycle {cycle}"), &data, database, &acknowledged);
        // Closing writes a snapshot; half the time it is removed, so that the next child
        // rebuilds its state from the whole log instead.
        drop(ledger);
        for folder in &folders {
            let snapshot = folder.join("ledger.snapshot");
            if snapshot.exists() && rng.gen_bool(0.5) {
                std::fs::remove_file(snapshot).unwrap();
            }
        }
    }
    println!(
        "ledger crash campaign: {processes} writing process(es), {cycles} cycles, {} acknowledged transfers checked, {retries} retries across restarts",
        acknowledged.len()
    );
    if processes > 1 {
        assert!(carried_on > 0, "no process carried on beside a killed one");
    }
    assert!(
        acknowledged.len() > 100,
        "the child barely acknowledged anything: the test proved little"
    );
    assert!(retries > 0, "no retry across a restart was exercised");
    let sets = std::fs::read_dir(data.join("ids")).unwrap().count();
    assert!(sets > 0, "no idempotency set was archived: the archive went untested");
}

/// Reopens the ledger after a kill (or a fault) and checks it, as `when` ("cycle 3"): every
/// acknowledged transfer is in the log once at its index and answered as a retry; the export
/// verifies offline; the reopened state is the log's replayed; money sums to zero and only
/// external accounts are negative. Returns the reopened ledger.
pub(crate) fn check_reopened(
    when: &str,
    data: &Path,
    database: Option<&str>,
    acknowledged: &HashMap<String, u64>,
) -> Ledger {
    let ledger = Ledger::open(data, options(database))
        .unwrap_or_else(|e| panic!("{when}: reopen failed: {e}"));
    // Every id in the log, counted.
    let mut in_log: HashMap<String, (u64, u32)> = HashMap::new();
    let mut entries = Vec::new();
    let log = ledger.log();
    log.for_each_entry(0, log.size(), |index, entry| {
        let event = sanad::ledger::Event::from_entry(entry).unwrap();
        if let Some(transfer) = event.transfer_id() {
            let seen = in_log.entry(transfer.to_string()).or_insert((index, 0));
            seen.1 += 1;
        }
        entries.push(entry.to_vec());
        Ok(())
    })
    .unwrap();
    for (transfer, index) in acknowledged {
        let (logged_at, times) = in_log
            .get(transfer)
            .unwrap_or_else(|| panic!("{when}: acknowledged {transfer} is missing"));
        assert_eq!((*logged_at, *times), (*index, 1), "{when}: {transfer}");
    }
    // No half-applied group, acknowledged or not when the kill came: a linked pair's payment
    // and fee are both in the log, one after the other, or neither is.
    for (transfer, (at, _)) in &in_log {
        let partner = if transfer.ends_with(PAIR) {
            Some((format!("{transfer}{FEE}"), at + 1))
        } else {
            transfer.strip_suffix(FEE).filter(|p| p.ends_with(PAIR)).map(|p| (p.to_owned(), at - 1))
        };
        if let Some((partner, expected)) = partner {
            let found = in_log.get(&partner).map(|(index, _)| *index);
            assert_eq!(found, Some(expected), "{when}: {transfer} logged without {partner}");
        }
    }
    // The log verifies offline, as an auditor would check it: every tile and checkpoint.
    let scratch = tempfile::tempdir().unwrap();
    let export = scratch.path().join("export");
    log.wait_for_checkpoint(log.size()).unwrap();
    log.export(&export).unwrap();
    let verified = sanad_audit::verify_export(&export, &log.verifier(), None, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{when}: the export does not verify: {e}"));
    assert_eq!(verified.tree_size, log.size(), "{when}: the export is the whole log");
    let replayed = replay(entries.iter().map(Vec::as_slice)).unwrap();
    ledger.read(|state| {
        // Which idempotency entries sit in memory differs (the replay archives none); the
        // rest must be equal, and every acknowledged id answered, from memory or archive.
        assert_eq!(
            without_recent_ids(state),
            without_recent_ids(&replayed),
            "{when}: the reopened state is the log's"
        );
        for (transfer, index) in acknowledged {
            let answered = state.id_use(&id(transfer)).map(|used| used.index);
            assert_eq!(answered, Some(*index), "{when}: {transfer} is not answered");
        }
        assert_money_holds(when, state);
    });
    ledger
}
