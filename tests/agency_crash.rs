//! The agency under mixed load, killed with SIGKILL at random moments again and again, on sled
//! and on PostgreSQL: a child process pays from a programme (ledger transfers), holds money and
//! then posts part of each hold or voids it (pendings), redeems vouchers at a shop with the
//! beneficiary's PIN (request, then authorisation), and takes payments through the HTTP
//! binding's webhooks over real HTTP — SMS from the signed JSON gateway and USSD sessions from
//! Africa's Talking, in turn — each thread printing what was acknowledged. After every kill
//! the agency reopens and:
//! - the log's export passes the offline auditor;
//! - every acknowledged operation is in the log exactly once, at the index it was given (a
//!   payment by SMS or USSD under the id the channel derives from its message or session id);
//! - the state replayed from the log equals the reopened one, money sums to zero per currency,
//!   no account but external ones is negative, and each voucher programme's escrow equals what
//!   its vouchers still hold (checked by the replay itself);
//! - an SMS acknowledged in an earlier cycle, delivered again, and a USSD session's final step
//!   acknowledged in an earlier cycle, sent again, are answered and not paid twice.
//!
//! `SANAD_CRASH_CYCLES` runs a longer campaign; `SANAD_CRASH_SEED` replays one.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sanad::engine::registry::NewPerson;
use sanad::engine::{Agency, Options, VoucherPlan};
use sanad::ledger::{Actor, Command, ProgrammeKind, Vendors, replay};
use sanad::money::{Amount, Currency, Id};
use sha2::Digest as _;

use crate::campaign::{
    assert_money_holds, complete_lines, kill_one_then_the_rest, on_postgresql, rounds_from_env,
    seeded_rng,
};

const CHILD_ENV: &str = "SANAD_AGENCY_CRASH_CHILD";
const DATABASE_ENV: &str = "SANAD_CRASH_DATABASE";
const AMAL: &str = "+962791234567";
const SHOP: &str = "+962771234567";
const PIN: &str = "4821";
const VOUCHERS: usize = 4;

fn jod(text: &str) -> Amount {
    Amount::parse(text, Currency::parse("JOD").unwrap()).unwrap()
}

fn id(text: &str) -> Id {
    Id::parse(text).unwrap()
}

/// The agency's options: on PostgreSQL at `database` (log and registry), or in its folder.
fn options(database: Option<&str>) -> Options {
    match database {
        Some(url) => Options {
            log_backend: Some(Arc::new(sanad_postgres::PgBackend::connect(url).unwrap())),
            shared_store: Some(Arc::new(sanad_postgres::PgKv::connect(url).unwrap())),
            ..Options::default()
        },
        None => Options::default(),
    }
}

/// What the children need to know of the setup, through their environment.
struct Setup {
    cash: Id,
    amal_wallet: Id,
    shop: Id,
    codes: Vec<String>,
}

fn setup(dir: &Path, database: Option<&str>) -> Setup {
    let agency =
        Agency::create(dir, "example.org/agency-crash", Some("JO"), options(database)).unwrap();
    let currency = Currency::parse("JOD").unwrap();
    let amal = agency
        .register(
            &NewPerson {
                phone: AMAL.into(),
                language: Some("en".into()),
                pin: Some(zeroize::Zeroizing::new(PIN.into())),
                ..NewPerson::default()
            },
            currency,
        )
        .unwrap();
    let cash = agency.create_programme("Cash", ProgrammeKind::Cash, jod("10000000")).unwrap();
    let amal_wallet = Agency::wallet_of(&amal, currency);
    let fund = Command::Transfer {
        id: id("fund-amal"),
        from: cash.clone(),
        to: amal_wallet.clone(),
        amount: jod("1000000"),
        programme: cash.clone(),
        actor: Actor::Operator,
        reference: None,
    };
    agency.ledger().execute(fund).unwrap().unwrap();
    let shop = agency.open_vendor(currency, &[], Some(SHOP)).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let now_ms = u64::try_from(now.as_millis()).unwrap();
    let plan = VoucherPlan {
        valid_from_ms: now_ms - 60_000,
        valid_until_ms: now_ms + 30 * 86_400_000,
        vendors: Vendors::Enrolled,
        single_use: false,
        partial: true,
        items: Vec::new(),
        pin_attempts: 3,
        lock_ms: 60_000,
    };
    let food = agency
        .create_voucher_programme("Food", ProgrammeKind::ValueVoucher, jod("1000000"), &plan)
        .unwrap();
    agency.enrol_vendor(&food, &shop, std::collections::BTreeMap::new()).unwrap();
    let codes = (0..VOUCHERS)
        .map(|_| {
            let voucher =
                agency.issue_voucher(&food, &amal, Some(jod("100000")), Vec::new()).unwrap();
            voucher.code.to_string()
        })
        .collect();
    Setup { cash, amal_wallet, shop, codes }
}

/// The id the channel gives the payment a message makes: `sms-` and 24 hex digits of SHA-256 of
/// `gateway:id` (see `sanad-sms`'s `derived_id`): the JSON gateway and its message id for an
/// SMS, `ussd` and the session id for a USSD session.
fn channel_payment_id(gateway: &str, message_id: &str) -> String {
    let hash = sha2::Sha256::digest(format!("{gateway}:{message_id}").as_bytes());
    let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("sms-{hex}")
}

/// The gateways' secrets the child's HTTP binding is configured with.
const JSON_SECRET: &str = "crash-json-secret";
const USSD_SECRET: &str = "crash-ussd-secret";

/// The HTTP binding over the child's folder (and database), listening on a free port, served
/// on a thread of its own for as long as the child lives; returns its agency and base URL.
/// The gateways' webhooks are called over real HTTP, as the gateways call them.
fn serve_binding(dir: &Path, database: Option<&str>) -> (Arc<Agency>, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = sanad_http::Config {
        data: dir.to_path_buf(),
        listen: listener.local_addr().unwrap(),
        origin: "example.org/agency-crash".into(),
        public_url: None,
        region: None,
        secrets: sanad_http::Secrets {
            json: Some(JSON_SECRET.into()),
            africastalking: Some(USSD_SECRET.into()),
            ..sanad_http::Secrets::default()
        },
        database_url: database.map(str::to_owned),
        token_rate: 0,
        // One beneficiary pays as fast as the ledger answers.
        sms_per_minute: usize::MAX,
    };
    let binding = sanad_http::Binding::open(config, &base).expect("child opens the binding");
    let agency = Arc::clone(binding.agency());
    std::thread::spawn(move || {
        let router = binding.router();
        runtime.block_on(async { axum::serve(listener, router).await }).unwrap();
    });
    (agency, base)
}

/// Amal pays the shop 0.010 JOD by SMS: `message` delivered to the signed JSON gateway's
/// webhook. Returns the status and the answer.
fn pay_by_sms(agent: &ureq::Agent, base: &str, message: &str) -> (u16, serde_json::Value) {
    let text = format!("PAY {SHOP} 0.010 {PIN}");
    let body = serde_json::json!({"id": message, "from": AMAL, "text": text}).to_string();
    let signature = sanad::sms::gateway::json::signature(JSON_SECRET.as_bytes(), body.as_bytes());
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{base}/v1/sms/json"))
        .header("Content-Type", "application/json")
        .header("X-Sanad-Signature", signature)
        .body(body)
        .unwrap();
    let mut response = agent.run(request).unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), serde_json::from_str(&text).unwrap_or_default())
}

/// Amal pays the shop 0.010 JOD by USSD: the final step of `session` (menu 2, the shop's
/// phone, the amount, the PIN, 1 to confirm — Africa's Talking sends every input with each
/// step) delivered to its webhook. Returns the status and the screen.
fn pay_by_ussd(agent: &ureq::Agent, base: &str, session: &str) -> (u16, String) {
    let plus = |phone: &str| phone.replace('+', "%2B");
    let text = format!("2%2A{}%2A0.010%2A{PIN}%2A1", plus(SHOP));
    let form =
        format!("sessionId={session}&serviceCode=%2A384%23&phoneNumber={}&text={text}", plus(AMAL));
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{base}/v1/ussd/africastalking?secret={USSD_SECRET}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .unwrap();
    let mut response = agent.run(request).unwrap();
    let screen = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), screen)
}

/// Earlier cycles' acknowledged channel payments, sent again by the next child.
struct Retries {
    sms: Option<String>,
    ussd: Option<String>,
}

/// The child: four kinds of work at once, acknowledging each durable answer on stdout as
/// `ack <kind> <id> <log index>`.
fn run_child(dir: &Path, database: Option<&str>, label: String, retry: Retries) -> ! {
    let env = |name: &str| std::env::var(name).unwrap();
    let (agency, base) = serve_binding(dir, database);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    if let Some(message) = retry.sms {
        let (status, answer) = pay_by_sms(&agent, &base, &message);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replayed"], true, "a delivery retried across restarts is answered");
        println!("retried {message}");
    }
    if let Some(session) = retry.ussd {
        // Answered from the stored screen; that it did not pay twice, the check counts.
        let (status, screen) = pay_by_ussd(&agent, &base, &session);
        assert_eq!(status, 200, "{screen}");
        assert!(screen.starts_with("END Paid "), "{screen}");
        println!("retried {session}");
    }
    let (cash, wallet, shop) = (
        id(&env("SANAD_CRASH_CASH")),
        id(&env("SANAD_CRASH_WALLET")),
        id(&env("SANAD_CRASH_SHOP")),
    );
    let codes: Vec<String> = env("SANAD_CRASH_CODES").split(',').map(str::to_owned).collect();
    let transfers = {
        let agency = Arc::clone(&agency);
        let label = label.clone();
        let (cash, wallet) = (cash.clone(), wallet.clone());
        std::thread::spawn(move || {
            for n in 0.. {
                let name = format!("{label}-t-{n}");
                let pay = Command::Transfer {
                    id: id(&name),
                    from: cash.clone(),
                    to: wallet.clone(),
                    amount: jod("0.005"),
                    programme: cash.clone(),
                    actor: Actor::Operator,
                    reference: None,
                };
                let applied = agency.ledger().execute(pay).unwrap().unwrap();
                println!("ack transfer {name} {}", applied.log_index.unwrap());
            }
        })
    };
    let holds = {
        let agency = Arc::clone(&agency);
        let label = label.clone();
        std::thread::spawn(move || {
            for n in 0.. {
                let name = format!("{label}-h-{n}");
                let hold = Command::Reserve {
                    id: id(&name),
                    from: cash.clone(),
                    to: wallet.clone(),
                    amount: jod("0.004"),
                    programme: cash.clone(),
                    actor: Actor::Operator,
                    reference: None,
                    timeout_ms: 3_600_000,
                };
                let held = agency.ledger().execute(hold).unwrap().unwrap();
                println!("ack hold {name} {}", held.log_index.unwrap());
                // Every other hold is posted in part (the rest released), the others voided.
                let (kind, operation, command) = if n % 2 == 0 {
                    let post = format!("{name}-post");
                    let amount = Some(jod("0.003"));
                    (
                        "posted",
                        post.clone(),
                        Command::PostPending { id: id(&post), pending: id(&name), amount },
                    )
                } else {
                    let void = format!("{name}-void");
                    (
                        "voided",
                        void.clone(),
                        Command::VoidPending { id: id(&void), pending: id(&name) },
                    )
                };
                let done = agency.ledger().execute(command).unwrap().unwrap();
                println!("ack {kind} {operation} {}", done.log_index.unwrap());
            }
        })
    };
    let redemptions = {
        let agency = Arc::clone(&agency);
        let label = label.clone();
        std::thread::spawn(move || {
            for n in 0.. {
                let name = format!("{label}-rd-{n}");
                let code = &codes[n % codes.len()];
                let asked = agency
                    .request_redemption(
                        code,
                        &shop,
                        Some(jod("0.010")),
                        Vec::new(),
                        Some(id(&name)),
                    )
                    .unwrap();
                println!("ack redemption {name} {}", asked.log_index.unwrap());
                let authorised = agency.authorise_with_pin(&id(&name), PIN).unwrap();
                println!("ack authorised {name} {}", authorised.unwrap());
            }
        })
    };
    // Payments through the gateways' webhooks, by SMS and by USSD in turn.
    for n in 0.. {
        if n % 2 == 0 {
            let message = format!("{label}-m-{n}");
            let (status, answer) = pay_by_sms(&agent, &base, &message);
            assert_eq!(status, 200, "{answer}");
            let reply = answer["reply"].as_str().unwrap_or_default();
            assert!(reply.starts_with("Paid "), "{answer}");
            println!("ack sms {message} 0");
        } else {
            let session = format!("{label}-s-{n}");
            let (status, screen) = pay_by_ussd(&agent, &base, &session);
            assert_eq!(status, 200, "{screen}");
            assert!(screen.starts_with("END Paid "), "{screen}");
            println!("ack ussd {session} 0");
        }
    }
    let _ = (transfers.join(), holds.join(), redemptions.join());
    unreachable!("the load never ends")
}

#[test]
fn sigkill_under_mixed_agency_load_loses_nothing_acknowledged() {
    campaign("agency_crash::sigkill_under_mixed_agency_load_loses_nothing_acknowledged", None);
}

#[test]
fn sigkill_under_mixed_agency_load_on_postgresql_loses_nothing_acknowledged() {
    let test =
        "agency_crash::sigkill_under_mixed_agency_load_on_postgresql_loses_nothing_acknowledged";
    on_postgresql(CHILD_ENV, "agency_crash", |url| campaign(test, url));
}

/// One acknowledged operation: its kind, and the log index it was given (none for an SMS,
/// whose reply carries no index: it is found by its derived id).
type Acknowledged = HashMap<(String, String), Option<u64>>;

fn campaign(test: &str, database: Option<&str>) {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let database = std::env::var(DATABASE_ENV).ok();
        let label = std::env::var("SANAD_CRASH_LABEL").unwrap();
        let retry = Retries {
            sms: std::env::var("SANAD_CRASH_RETRY_SMS").ok(),
            ussd: std::env::var("SANAD_CRASH_RETRY_USSD").ok(),
        };
        run_child(Path::new(&dir), database.as_deref(), label, retry);
    }
    let cycles = rounds_from_env("SANAD_CRASH_CYCLES", 8);
    let mut rng = seeded_rng(&format!("agency crash campaign, {cycles} cycles"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agency");
    let setup = setup(&data, database);

    let mut acknowledged: Acknowledged = HashMap::new();
    let mut retries = 0;
    for cycle in 0..cycles {
        let mut child = Process::new(std::env::current_exe().unwrap());
        child
            .args([test, "--exact", "--nocapture"])
            .env(CHILD_ENV, &data)
            .env("SANAD_CRASH_LABEL", format!("c{cycle}"))
            .env("SANAD_CRASH_CASH", setup.cash.as_str())
            .env("SANAD_CRASH_WALLET", setup.amal_wallet.as_str())
            .env("SANAD_CRASH_SHOP", setup.shop.as_str())
            .env("SANAD_CRASH_CODES", setup.codes.join(","))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (kind, variable) in
            [("sms", "SANAD_CRASH_RETRY_SMS"), ("ussd", "SANAD_CRASH_RETRY_USSD")]
        {
            let earlier = acknowledged.keys().find(|(k, _)| k == kind).map(|(_, m)| m.clone());
            if let Some(message) = &earlier {
                child.env(variable, message);
            }
        }
        if let Some(url) = database {
            child.env(DATABASE_ENV, url);
        }
        let mut child = child.spawn().unwrap();
        let lines = complete_lines(child.stdout.take().unwrap());
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1_200)));
        let (outputs, _) = kill_one_then_the_rest(vec![(child, lines)], 0..1, &mut rng);
        for line in outputs.into_iter().flatten() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["ack", kind @ ("sms" | "ussd"), message, _] => {
                    acknowledged.insert(((*kind).to_owned(), (*message).to_owned()), None);
                }
                ["ack", kind, name, index] => {
                    let index = index.parse().unwrap();
                    acknowledged.insert(((*kind).to_owned(), (*name).to_owned()), Some(index));
                }
                ["retried", _] => retries += 1,
                _ => {}
            }
        }
        check(cycle, dir.path(), &data, database, &acknowledged);
    }
    let count = |kind: &str| acknowledged.keys().filter(|(k, _)| k == kind).count();
    println!(
        "agency crash campaign: {cycles} cycles, {} transfers, {} holds ({} posted, {} voided), {} redemptions ({} authorised), {} SMS and {} USSD payments checked, {retries} channel retries across restarts",
        count("transfer"),
        count("hold"),
        count("posted"),
        count("voided"),
        count("redemption"),
        count("authorised"),
        count("sms"),
        count("ussd"),
    );
    for kind in ["transfer", "hold", "posted", "voided", "redemption", "authorised", "sms", "ussd"]
    {
        assert!(count(kind) > 0, "no {kind} was acknowledged: the campaign proved little");
    }
    assert!(retries >= 2, "the SMS and USSD retries across restarts were not both exercised");
}

/// After a kill: the export verifies, every acknowledged operation is in the log once where it
/// was said to be, and the state replays.
fn check(
    cycle: u64,
    scratch: &Path,
    data: &Path,
    database: Option<&str>,
    acknowledged: &Acknowledged,
) {
    let agency = Agency::open(data, options(database))
        .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
    let log = agency.ledger().log();
    log.wait_for_checkpoint(log.size()).unwrap();
    let export = scratch.join(format!("export-{cycle}"));
    log.export(&export).unwrap();
    sanad::audit::verify_export(&export, &log.verifier(), None, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("cycle {cycle}: the export does not verify: {e}"));
    std::fs::remove_dir_all(&export).unwrap();

    // Where each operation is in the log, and how many times.
    let mut found: HashMap<(String, String), (u64, u32)> = HashMap::new();
    let mut entries = Vec::new();
    log.for_each_entry(0, log.size(), |index, entry| {
        let json: serde_json::Value = serde_json::from_slice(entry).unwrap_or_default();
        let key = match json["type"].as_str() {
            // A payment by SMS or USSD: the channel's id is all that tells them apart.
            Some("transfer.posted") => json["transfer"].as_str().map(|t| {
                let kind = if t.starts_with("sms-") { "channel" } else { "transfer" };
                (kind.to_owned(), t.to_owned())
            }),
            Some("transfer.pending") => {
                json["transfer"].as_str().map(|t| ("hold".to_owned(), t.to_owned()))
            }
            Some("pending.posted") => {
                json["transfer"].as_str().map(|t| ("posted".to_owned(), t.to_owned()))
            }
            Some("pending.voided") => {
                json["transfer"].as_str().map(|t| ("voided".to_owned(), t.to_owned()))
            }
            Some("redemption.requested") => {
                json["redemption"].as_str().map(|r| ("redemption".to_owned(), r.to_owned()))
            }
            Some("redemption.authorised") => {
                json["redemption"].as_str().map(|r| ("authorised".to_owned(), r.to_owned()))
            }
            _ => None,
        };
        if let Some(key) = key {
            let seen = found.entry(key).or_insert((index, 0));
            seen.1 += 1;
        }
        entries.push(entry.to_vec());
        Ok(())
    })
    .unwrap();
    for ((kind, name), index) in acknowledged {
        let key = match kind.as_str() {
            "sms" => ("channel".to_owned(), channel_payment_id("json", name)),
            "ussd" => ("channel".to_owned(), channel_payment_id("ussd", name)),
            _ => (kind.clone(), name.clone()),
        };
        let (at, times) = found
            .get(&key)
            .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged {kind} {name} is missing"));
        assert_eq!(*times, 1, "cycle {cycle}: {kind} {name} is in the log {times} times");
        if let Some(index) = index {
            assert_eq!(at, index, "cycle {cycle}: {kind} {name} moved");
        }
    }
    let replayed = replay(entries.iter().map(Vec::as_slice))
        .unwrap_or_else(|e| panic!("cycle {cycle}: the log does not replay: {e}"));
    agency.ledger().read(|state| {
        assert_eq!(state.totals(), replayed.totals(), "cycle {cycle}: totals differ");
        assert_money_holds(&format!("cycle {cycle}"), state);
    });
}
