//! The log on a real PostgreSQL server, started by the test itself: the same entries give the
//! same tree as on sled, a reopened log carries on, its export verifies offline, a second
//! writer can never append at an index another took, a server crash loses no acknowledged
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
fn a_second_writer_never_appends_at_an_index_another_took() {
    let server = server();
    let url = server.database("two_writers").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let first = Log::create_on(keys.path(), "example.org/two", backend(&url)).unwrap();
    first.append(entries(0, 5)).unwrap();
    // A second process's view, opened now: it knows 5 entries.
    let second = Log::open_on(keys.path(), backend(&url)).unwrap();
    first.append(entries(5, 3)).unwrap();
    // Its append would land at 5, which the first writer took: refused, nothing written.
    match second.append(entries(100, 2)) {
        Err(Error::AnotherWriter { index: 5, next: 8 }) => {}
        other => panic!("expected AnotherWriter, got {other:?}"),
    }
    assert!(matches!(second.append(entries(100, 1)), Err(Error::WriterStopped)));
    drop((first, second));
    let reopened = Log::open_on(keys.path(), backend(&url)).unwrap();
    assert_eq!(reopened.size(), 8);
    for index in 0..8 {
        let expected = entries(0, 8).remove(index as usize);
        assert_eq!(reopened.entry(index).unwrap(), expected);
    }
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
    assert_eq!(sanad_postgres::migrate(&mut client).unwrap(), vec![1]);
    assert!(sanad_postgres::migrate(&mut client).unwrap().is_empty(), "already applied");
    let recorded: i64 =
        client.query_one("SELECT count(*) FROM sanad_schema_migrations", &[]).unwrap().get(0);
    assert_eq!(recorded, 1);
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
