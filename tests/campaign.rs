//! What the campaigns (`crash`, `ledger_crash`, `agency_crash`, `full_disk`) share: how long
//! to run and the random seed, the folders of several writing processes on one database, a
//! child's complete output lines, killing the children one first, the others a moment later,
//! and the money invariants checked after each kill.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::thread::JoinHandle;
use std::time::Duration;

/// The money invariants after a kill: the sum over all accounts is zero in every currency, and
/// no account but an external one is below zero.
pub(crate) fn assert_money_holds(when: &str, state: &sanad::ledger::State) {
    assert!(state.totals().values().all(|total| *total == 0), "{when}: money created");
    for account in state.accounts() {
        assert!(
            account.available().minor_units() >= 0
                || account.kind() == sanad::ledger::AccountKind::External,
            "{when}: {} below zero",
            account.id()
        );
    }
}

/// How long a campaign runs: the number in the environment variable `name`, or `default`.
pub(crate) fn rounds_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// A campaign's random generator, from `SANAD_CRASH_SEED` to replay a run, or a new seed; the
/// seed is printed with `what` so that a failed run can be replayed.
pub(crate) fn seeded_rng(what: &str) -> rand::rngs::StdRng {
    use rand::{Rng as _, SeedableRng as _};
    let seed: u64 = std::env::var("SANAD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("{what}: seed {seed} (SANAD_CRASH_SEED={seed} to replay)");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// One folder per writing process: `first` (which holds the log's key), then one for each
/// further process under `parent`, named `{name}-{n}`, holding a copy of the key.
pub(crate) fn process_folders(
    parent: &Path,
    first: &Path,
    name: &str,
    processes: usize,
) -> Vec<PathBuf> {
    (0..processes)
        .map(|p| {
            if p == 0 {
                return first.to_owned();
            }
            let folder = parent.join(format!("{name}-{p}"));
            std::fs::create_dir(&folder).unwrap();
            std::fs::copy(first.join("log.key"), folder.join("log.key")).unwrap();
            folder
        })
        .collect()
}

/// Reads a child's output to its end; only complete lines count, since a line cut by the kill
/// was never fully acknowledged.
pub(crate) fn complete_lines(stdout: ChildStdout) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(complete) = line.strip_suffix('\n') {
                lines.push(complete.to_owned());
            }
            line.clear();
        }
        lines
    })
}

/// SIGKILLs one child chosen at random, lets the others carry on alone for `alone` (when there
/// are others), then kills them too; returns each child's output lines, in order, and which
/// was killed first.
pub(crate) fn kill_one_then_the_rest(
    children: Vec<(Child, JoinHandle<Vec<String>>)>,
    alone: std::ops::Range<u64>,
    rng: &mut impl rand::Rng,
) -> (Vec<Vec<String>>, usize) {
    let mut children = children;
    let first = rng.gen_range(0..children.len());
    children[first].0.kill().unwrap();
    children[first].0.wait().unwrap();
    if children.len() > 1 {
        std::thread::sleep(Duration::from_millis(rng.gen_range(alone)));
    }
    let outputs = children
        .into_iter()
        .map(|(mut child, reader)| {
            child.kill().unwrap();
            child.wait().unwrap();
            reader.join().unwrap()
        })
        .collect();
    (outputs, first)
}

/// Runs `campaign` with a throwaway PostgreSQL server's database `name`; in a child (the test
/// re-run, `child_env` set), runs it with none, for the child must not start a server of its
/// own (it finds the database in its environment).
pub(crate) fn on_postgresql(child_env: &str, name: &str, campaign: impl FnOnce(Option<&str>)) {
    if std::env::var(child_env).is_ok() {
        return campaign(None);
    }
    let server = sanad_postgres::testing::TestServer::for_test();
    let url = server.database(name).unwrap();
    campaign(Some(&url));
}
