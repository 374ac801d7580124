//! The log on a real PostgreSQL server, started by the test itself: the same entries give the
//! same tree as on sled, a reopened log carries on, its export verifies offline, two writers
//! on one database make one linear log (and a commit at an index another took is refused), a server crash loses no acknowledged
//! append, and the schema's migrations apply once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sanad_log::{Backend, Error, Log};
use sanad_postgres::PgBackend;
use sanad_postgres::testing::TestServer;

fn server() -> TestServer {
    TestServer::for_test()
}

fn backend(url: &str) -> Arc<PgBackend> {
    Arc::new(PgBackend::connect(url).unwrap())
}

fn entries(from: usize, count: usize) -> Vec<Vec<u8>> {
    (from..from + count)
        .map(|n| format!("entry {n:06} {}", "x".repeat(n % 50)).into_bytes())
        .collect()
}

#[test]
fn a_log_on_postgres_holds_the_same_tree_as_on_sled_and_reopens() {
    let server = server();
    let url = server.database("same_tree").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let sled_dir = tempfile::tempdir().unwrap();
    let on_pg = Log::create_on(keys.path(), "example.org/pg", backend(&url)).unwrap();
    let on_sled = Log::create(sled_dir.path(), "example.org/pg").unwrap();
    // Batches of several sizes, across tile boundaries (256) and a level-1 tile (65,536 would
    // be slow here; level-1 tiles are covered by the sled tests on the same code).
    for (from, count) in [(0, 1), (1, 255), (256, 1000), (1256, 3)] {
        let batch = entries(from, count);
        let appended = on_pg.append(batch.clone()).unwrap();
        assert_eq!(appended.first_index, from as u64);
        on_sled.append(batch).unwrap();
    }
    let size = 1259;
    let pg_checkpoint = on_pg.wait_for_checkpoint(size).unwrap();
    let sled_checkpoint = on_sled.wait_for_checkpoint(size).unwrap();
    assert_eq!(pg_checkpoint.checkpoint().root(), sled_checkpoint.checkpoint().root());
    let proof = on_pg.inclusion_proof(300, size).unwrap();
    assert_eq!(proof, on_sled.inclusion_proof(300, size).unwrap());
    let verifier = on_pg.verifier();
    drop(on_pg);

    // Reopened from the database and the key alone: the same head, and appends carry on.
    let reopened = Log::open_on(keys.path(), backend(&url)).unwrap();
    assert_eq!(reopened.size(), size);
    assert_eq!(reopened.checkpoint().checkpoint().root(), pg_checkpoint.checkpoint().root());
    assert_eq!(reopened.entry(1000).unwrap(), entries(1000, 1)[0]);
    reopened.append(entries(size as usize, 10)).unwrap();
    reopened.wait_for_checkpoint(size + 10).unwrap();

    // The export verifies offline, with nothing but the verifier key.
    let export = tempfile::tempdir().unwrap();
    reopened.export(export.path()).unwrap();
    let report =
        sanad_audit::verify_export(export.path(), &verifier, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.tree_size, size + 10);
}

#[test]
fn two_writers_on_one_database_make_one_linear_log() {
    let server = server();
    let url = server.database("two_writers").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let first = Log::create_on(keys.path(), "example.org/two", backend(&url)).unwrap();
    first.append(entries(0, 5)).unwrap();
    // A second process's view, opened now: it knows 5 entries.
    let second = Log::open_on(keys.path(), backend(&url)).unwrap();
    first.append(entries(5, 3)).unwrap();
    // Its append catches up on the first writer's three entries, then lands after them.
    let appended = second.append(entries(8, 2)).unwrap();
    assert_eq!((appended.first_index, appended.tree_size), (8, 10));
    let turn = first.begin_turn().unwrap();
    assert_eq!(turn.caught_up(), &[(8, entries(8, 1).remove(0)), (9, entries(9, 1).remove(0))]);
    turn.end().unwrap();

    // Both at once, from threads: every append lands once, none at an index another took.
    let (first, second) = (Arc::new(first), Arc::new(second));
    let writers: Vec<_> = [(Arc::clone(&first), 10_000), (Arc::clone(&second), 20_000)]
        .into_iter()
        .map(|(log, base)| {
            std::thread::spawn(move || {
                for k in 0..60 {
                    log.append(entries(base + k * 4, 4)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let size = 10 + 2 * 60 * 4;
    for log in [&first, &second] {
        log.begin_turn().unwrap().end().unwrap();
        assert_eq!(log.size(), size);
    }
    // Each signed the same tree: with one key, the same checkpoint, byte for byte.
    let (a, b) =
        (first.wait_for_checkpoint(size).unwrap(), second.wait_for_checkpoint(size).unwrap());
    assert_eq!(a.checkpoint().size(), size);
    assert_eq!(a.to_bytes(), b.to_bytes());
    let verifier = first.verifier();
    drop((first, second));

    // A commit outside a turn at an index another took is refused, and writes nothing.
    let raw = backend(&url);
    let entry: &[u8] = b"late";
    let late =
        sanad_log::Commit { first_index: 5, entries: &[entry], tiles: &[], checkpoint: None };
    match raw.commit(&late) {
        Err(Error::AnotherWriter { index: 5, next }) => assert_eq!(next, size),
        other => panic!("expected AnotherWriter, got {other:?}"),
    }

    let reopened = Log::open_on(keys.path(), backend(&url)).unwrap();
    assert_eq!(reopened.size(), size);
    let mut seen = Vec::new();
    reopened
        .for_each_entry(0, size, |_, entry| {
            seen.push(entry.to_vec());
            Ok(())
        })
        .unwrap();
    let mut expected = entries(0, 10);
    for base in [10_000, 20_000] {
        expected.extend(entries(base, 240));
    }
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "every append once, nothing else");
    let export = tempfile::tempdir().unwrap();
    reopened.export(export.path()).unwrap();
    let report =
        sanad_audit::verify_export(export.path(), &verifier, None, &mut |_, _| {}).unwrap();
    assert_eq!(report.tree_size, size);
}

#[test]
fn a_server_crash_loses_no_acknowledged_append() {
    let server = server();
    let url = server.database("crash").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let log = Log::create_on(keys.path(), "example.org/crash", backend(&url)).unwrap();
    for n in 0..20 {
        log.append(entries(n * 10, 10)).unwrap();
    }
    drop(log);
    // The server dies without a clean shutdown; every acknowledged commit is in its WAL.
    server.crash_and_restart().unwrap();
    let reopened = Log::open_on(keys.path(), backend(&url)).unwrap();
    assert_eq!(reopened.size(), 200);
    assert_eq!(reopened.entry(199).unwrap(), entries(199, 1)[0]);
}

#[test]
fn migrations_apply_once_and_are_recorded() {
    let server = server();
    let url = server.database("migrations").unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert_eq!(sanad_postgres::migrate(&mut client).unwrap(), vec![1, 2, 3]);
    assert!(sanad_postgres::migrate(&mut client).unwrap().is_empty(), "already applied");
    let recorded: i64 =
        client.query_one("SELECT count(*) FROM sanad_schema_migrations", &[]).unwrap().get(0);
    assert_eq!(recorded, 3);
    // A backend on an empty, migrated database holds no log yet, and opening one says so.
    assert_eq!(PgBackend::connect(&url).unwrap().origin().unwrap(), None);
    let keys = tempfile::tempdir().unwrap();
    Log::create(keys.path(), "example.org/key-only").unwrap();
    assert!(matches!(Log::open_on(keys.path(), backend(&url)), Err(Error::NotFound(_))));
}

/// An agency that outgrows one machine: its sled log copied into PostgreSQL, past a level-1
/// tile, opens there with the same signed root and carries on.
#[test]
fn a_sled_log_copied_into_postgres_opens_with_the_same_root() {
    let server = server();
    let url = server.database("copy").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let size = 70_000u64;
    let root = {
        let log = Log::create(dir.path(), "example.org/grown").unwrap();
        for from in (0..size as usize).step_by(5_000) {
            log.append(entries(from, 5_000)).unwrap();
        }
        log.wait_for_checkpoint(size).unwrap().checkpoint().root()
    };
    let sled = sanad_log::SledBackend::open(&dir.path().join(sanad_log::DB_DIR)).unwrap();
    let target = backend(&url);
    let mut reported = 0;
    let copied = sanad_log::copy(&sled, target.as_ref(), &mut |done, _| reported = done).unwrap();
    assert_eq!((copied, reported), (size, size));
    drop(sled);
    // A second copy into the same database is refused.
    let again = sanad_log::SledBackend::open(&dir.path().join(sanad_log::DB_DIR)).unwrap();
    assert!(sanad_log::copy(&again, target.as_ref(), &mut |_, _| {}).is_err());
    drop(again);

    let moved = Log::open_on(dir.path(), target).unwrap();
    assert_eq!(moved.size(), size);
    assert_eq!(moved.checkpoint().checkpoint().root(), root);
    assert_eq!(moved.entry(65_600).unwrap(), entries(65_600, 1)[0]);
    moved.append(entries(size as usize, 1)).unwrap();
    moved.wait_for_checkpoint(size + 1).unwrap();
    let export = tempfile::tempdir().unwrap();
    moved.export(export.path()).unwrap();
    let verified =
        sanad_audit::verify_export(export.path(), &moved.verifier(), None, &mut |_, _| {}).unwrap();
    assert_eq!(verified.tree_size, size + 1);
}

#[test]
fn connections_use_tls_and_verify_the_server() {
    let server = TestServer::start_with_tls()
        .unwrap_or_else(|error| panic!("POSTGRESQL TESTS CANNOT RUN: {error}"));
    let url = server.database("tls").unwrap();
    let ca = server.ca_file();
    // Trusting the server's authority, in libpq's strictest mode: encrypted and verified.
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let over_tls = PgBackend::connect(&verified).unwrap();
    assert!(over_tls.encrypted().unwrap());
    // Not trusting it, the certificate is refused, with TLS required or merely preferred:
    // never a silent fall back to plain text.
    for untrusted in [format!("{url}?sslmode=require"), url.clone()] {
        let refused = PgBackend::connect(&untrusted).unwrap_err();
        assert!(format!("{refused:?}").contains("UnknownIssuer"), "{untrusted}: {refused:?}");
    }
    // Plain text only when asked for.
    let plain = PgBackend::connect(&format!("{url}?sslmode=disable")).unwrap();
    assert!(!plain.encrypted().unwrap());

    // The log over TLS.
    let keys = tempfile::tempdir().unwrap();
    let log = Log::create_on(keys.path(), "example.org/tls", Arc::new(over_tls)).unwrap();
    log.append(entries(0, 10)).unwrap();
    drop(log);
    let reopened = Log::open_on(keys.path(), backend(&verified)).unwrap();
    assert_eq!(reopened.entry(9).unwrap(), entries(9, 1)[0]);
}

/// The key-value store's counters: atomic across connections (processes), stored as on sled,
/// and a sliding window over them counts every server's events against one limit.
#[test]
fn counters_on_postgres_add_atomically_across_connections() {
    use sanad_log::kv::{KeyValue, SlidingWindow, counter_value};
    let server = server();
    let url = server.database("counters").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let kv = sanad_postgres::PgKv::connect(&url).unwrap();
                (0..50).map(|_| kv.add("c", b"k", 1).unwrap()).max()
            })
        })
        .collect();
    let highest = threads.into_iter().filter_map(|t| t.join().unwrap()).max();
    assert_eq!(highest, Some(200), "every increment counted once");
    let kv = sanad_postgres::PgKv::connect(&url).unwrap();
    assert_eq!(kv.get("c", b"k").unwrap(), Some(200u64.to_be_bytes().to_vec()));
    assert_eq!(counter_value(kv.get("c", b"k").unwrap().as_deref()), 200);
    assert_eq!(kv.add("c", b"new", 3).unwrap(), 3);

    let other = sanad_postgres::PgKv::connect(&url).unwrap();
    let window = SlidingWindow { limit: 3, window_ms: 60_000 };
    let now = 6_000_000;
    window.count(&kv, "w", b"vendor", now).unwrap();
    window.count(&other, "w", b"vendor", now + 1).unwrap();
    assert_eq!(window.check(&kv, "w", b"vendor", now + 2).unwrap(), None);
    window.count(&kv, "w", b"vendor", now + 2).unwrap();
    assert!(window.check(&other, "w", b"vendor", now + 3).unwrap().is_some(), "one limit for both");
}
