//! Durable transfers per second on PostgreSQL through the `Ledger` handle (its log on a real
//! server: one transaction and one synchronous commit per group commit), next to the naive
//! design a typical agency system starts from, measured in the same run on the same server:
//! one SQL transaction per transfer that inserts the transfer and updates both balances, with
//! a balance check. Target: at least ten times the naive figure.
//!
//! `cargo bench --bench postgres` (add `-- --quick` for a smoke run). The server is a throwaway
//! one the bench starts itself (initdb, pg_ctl), with fsync and synchronous commit on.

// Bench code: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use common::{WALLETS, median, per_second, through_ledger_on};
use sanad::engine::Options;
use sanad_postgres::PgBackend;
use sanad_postgres::testing::TestServer;

/// The naive design: accounts with balances, one transaction per transfer.
fn naive(url: &str, total: usize, callers: usize) -> f64 {
    let mut setup = postgres::Client::connect(url, postgres::NoTls).unwrap();
    setup
        .batch_execute(
            "CREATE TABLE naive_accounts (id text PRIMARY KEY, balance bigint NOT NULL);
             CREATE TABLE naive_transfers (id text PRIMARY KEY, from_account text NOT NULL,
                 to_account text NOT NULL, amount bigint NOT NULL);
             INSERT INTO naive_accounts VALUES ('prog', 1000000000000);",
        )
        .unwrap();
    for w in 0..WALLETS {
        setup.execute("INSERT INTO naive_accounts VALUES ($1, 0)", &[&format!("w{w}")]).unwrap();
    }
    let per_caller = total / callers;
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                for n in 0..per_caller {
                    let amount = 1_000 + (n % 97) as i64;
                    let to = format!("w{}", n % WALLETS);
                    let mut tx = client.transaction().unwrap();
                    tx.execute(
                        "INSERT INTO naive_transfers VALUES ($1, 'prog', $2, $3)",
                        &[&format!("t-{c}-{n}"), &to, &amount],
                    )
                    .unwrap();
                    let debited = tx
                        .execute(
                            "UPDATE naive_accounts SET balance = balance - $1
                             WHERE id = 'prog' AND balance >= $1",
                            &[&amount],
                        )
                        .unwrap();
                    assert_eq!(debited, 1, "insufficient funds");
                    tx.execute(
                        "UPDATE naive_accounts SET balance = balance + $1 WHERE id = $2",
                        &[&amount, &to],
                    )
                    .unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    per_second(per_caller * callers, start.elapsed())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (total, naive_total, rounds) = if quick { (16_000, 1_000, 1) } else { (160_000, 8_000, 3) };
    let server = TestServer::start()
        .unwrap_or_else(|error| panic!("THE POSTGRESQL BENCH CANNOT RUN: {error}"));
    println!(
        "sanad PostgreSQL benchmarks: {total} transfers through the Ledger, {naive_total} naive, {rounds} paired runs{}",
        if quick { " (quick)" } else { "" }
    );
    println!("naive: one transaction per transfer (insert it, debit with a balance check, credit)");
    let mut database = 0;
    for (callers, per_call) in [(8usize, 1_000usize), (64, 1)] {
        let (mut ours, mut base, mut ratio) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            database += 1;
            let url = server.database(&format!("naive{database}")).unwrap();
            let naive_rate = naive(&url, naive_total, callers);
            let url = server.database(&format!("ledger{database}")).unwrap();
            let backend: Arc<dyn sanad::log::Backend> = Arc::new(PgBackend::connect(&url).unwrap());
            let options = Options { log_backend: Some(backend), ..Options::default() };
            let count = if per_call == 1 { naive_total * 4 } else { total };
            let rate = through_ledger_on(count, per_call, callers, options);
            ours.push(rate);
            base.push(naive_rate);
            ratio.push(rate / naive_rate);
        }
        println!(
            "{:<52} {:>9.0} transfers/s  naive ({callers} connections) {:>7.0}/s  ratio {:>6.1}x (median of {rounds})",
            format!("Ledger on PostgreSQL, {callers} callers x {per_call} per call"),
            median(ours),
            median(base),
            median(ratio)
        );
    }
}
