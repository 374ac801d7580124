//! The HTTP binding under load: durable transfers per second over HTTP, one per request and in
//! arrays of 1,000, with p99 latency, next to the library's own figure (the `Ledger` handle with
//! the same callers and the same transfers per call) measured in the same run. Target: arrays
//! of 1,000 over HTTP reach at least half the library's figure.
//!
//! `cargo bench --bench http` (add `-- --quick` for a smoke run). The server is the binding
//! itself, started in-process on a fresh folder for each run (`sanad_http::serve`); the client
//! is blocking HTTP/1.1 with keep-alive, one connection per caller thread. Client and server
//! share the machine's cores, as a load tool on the same host would.

// Bench code: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use common::{latencies, median, per_second, through_ledger};
use serde_json::{Value, json};

/// Wallets the transfers pay into (registered through a disbursement file).
const WALLETS: usize = 200;

/// A server on a fresh folder, with a funded programme and [`WALLETS`] wallets.
struct Server {
    base: String,
    token: String,
    programme: String,
    wallets: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// POSTs `body`; the answer's text (any status but success fails the run).
fn post_text(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> String {
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
    assert!(status < 300, "{url}: {status} {text}");
    text
}

fn post(agent: &ureq::Agent, url: &str, token: &str, content_type: &str, body: String) -> Value {
    serde_json::from_str(&post_text(agent, url, token, content_type, body)).unwrap()
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = sanad_http::Config {
            data: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            origin: "bench.example/http".into(),
            public_url: None,
            region: Some("JO".into()),
            secrets: sanad_http::Secrets::default(),
            database_url: None,
            // The binding's own cost is measured, not a limit on one token's rate.
            token_rate: 0,
            sms_per_minute: 12,
        };
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let announce = |started: &sanad_http::Started| {
                started_tx.send(started.address).unwrap();
            };
            sanad_http::serve(config, announce, async {
                let _ = stopped.await;
            })
            .unwrap();
        });
        let address = started_rx.recv().unwrap();
        let base = format!("http://{address}");
        let token =
            std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap().trim().to_owned();
        let agent = agent();
        let created = post(
            &agent,
            &format!("{base}/v1/programmes"),
            &token,
            "application/json",
            json!({"name": "Bench", "currency": "JOD", "budget": "1000000000", "kind": "cash"})
                .to_string(),
        );
        let programme = created["id"].as_str().unwrap().to_owned();
        let mut csv = String::from("phone,amount\n");
        for n in 0..WALLETS {
            csv.push_str(&format!("+96279{n:07},1\n"));
        }
        let report = post(
            &agent,
            &format!("{base}/v1/disbursements?programme={programme}&register=true"),
            &token,
            "text/csv",
            csv,
        );
        assert_eq!(report["paid"].as_u64(), Some(WALLETS as u64), "{report}");
        // The wallets, from the registration entries' transfers in the log.
        let mut wallets = Vec::new();
        let history = agent
            .get(&format!("{base}/v1/accounts/{programme}/history?limit=500"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let history: Value = serde_json::from_str(&history).unwrap();
        for item in history["items"].as_array().unwrap() {
            if let Some(to) = item["entry"]["to"].as_str().filter(|to| *to != programme) {
                wallets.push(to.to_owned());
            }
        }
        assert_eq!(wallets.len(), WALLETS);
        Self { base, token, programme, wallets, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    fn transfer(&self, caller: usize, n: usize) -> Value {
        json!({
            "id": format!("h-{caller}-{n}"),
            "from": self.programme,
            "to": self.wallets[n % WALLETS],
            "amount": format!("1.{:03}", n % 97),
            "currency": "JOD",
            "programme": self.programme,
        })
    }

    /// `callers` threads each posting `total / callers` transfers, `per_request` per request
    /// (1: one object per request; more: arrays). Transfers per second and every request's
    /// latency, sorted.
    fn load(&self, total: usize, per_request: usize, callers: usize) -> (f64, Vec<Duration>) {
        let per_caller = total / callers;
        let url = format!("{}/v1/transfers", self.base);
        let bodies: Vec<Vec<(String, usize)>> = (0..callers)
            .map(|c| {
                let mine: Vec<Value> = (0..per_caller).map(|n| self.transfer(c, n)).collect();
                mine.chunks(per_request)
                    .map(|chunk| match chunk {
                        [one] => (one.to_string(), 1),
                        many => (Value::Array(many.to_vec()).to_string(), many.len()),
                    })
                    .collect()
            })
            .collect();
        let start = Instant::now();
        let threads: Vec<_> = bodies
            .into_iter()
            .map(|mine| {
                let (url, token) = (url.clone(), self.token.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    mine.into_iter()
                        .map(|(body, count)| {
                            let sent = Instant::now();
                            let answer = post_text(&agent, &url, &token, "application/json", body);
                            // Every transfer applied: counted in the text, as a load tool
                            // would, rather than parsed (the client shares the cores).
                            let applied = answer.matches("\"status\":\"applied\"").count();
                            assert!(count == 1 || applied == count, "{applied} of {count} applied");
                            sent.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let rate = per_second(per_caller * callers, start.elapsed());
        all.sort();
        (rate, all)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn p99(sorted: &[Duration]) -> f64 {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (total, single, rounds) = if quick { (16_000, 2_000, 1) } else { (160_000, 20_000, 5) };
    println!(
        "sanad HTTP benchmarks: {total} transfers in arrays, {single} one per request, {rounds} paired runs{}",
        if quick { " (quick)" } else { "" }
    );
    println!("library: the Ledger handle with the same callers and transfers per call, same run");

    let (callers, per_request) = (8usize, 1_000usize);
    let (mut http, mut library, mut ratio, mut tail) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let ours = through_ledger(total, per_request, callers);
        let server = Server::start();
        let (rate, sorted) = server.load(total, per_request, callers);
        drop(server);
        library.push(ours);
        http.push(rate);
        ratio.push(rate / ours);
        tail.push(p99(&sorted));
    }
    println!(
        "{:<48} {:>9.0} transfers/s  p99 {:>7.1} ms/request  library {:>9.0}/s  ratio {:>5.1}% (median of {rounds})",
        format!("HTTP, {callers} callers x arrays of {per_request}"),
        median(http),
        median(tail),
        median(library),
        100.0 * median(ratio)
    );

    let callers = 64usize;
    let (mut http, mut library, mut ratio, mut tail, mut lib_tail) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (ours, ours_sorted) = latencies(single, callers);
        let server = Server::start();
        let (rate, sorted) = server.load(single, 1, callers);
        drop(server);
        library.push(ours);
        lib_tail.push(p99(&ours_sorted));
        http.push(rate);
        ratio.push(rate / ours);
        tail.push(p99(&sorted));
    }
    println!(
        "{:<48} {:>9.0} transfers/s  p99 {:>7.1} ms/request  library {:>9.0}/s (p99 {:.1} ms)  ratio {:>5.1}% (median of {rounds})",
        format!("HTTP, {callers} callers x 1 transfer per request"),
        median(http),
        median(tail),
        median(library),
        median(lib_tail),
        100.0 * median(ratio)
    );
}
