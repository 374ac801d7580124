//! The binding end to end: the binary started on a fresh folder, driven over HTTP as an agency
//! system and an SMS gateway would, then stopped with SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const TWILIO_TOKEN: &str = "twilio-test-token";
const JSON_SECRET: &str = "json-gateway-test-secret";

struct Server {
    child: Child,
    base: String,
    admin: String,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Server {
    fn start() -> Self {
        Self::start_on(None)
    }

    /// A server on a fresh folder, with its log on PostgreSQL at `database` if given.
    fn start_on(database: Option<&str>) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), database, &[])
    }

    /// A server on `dir/data` (fresh, or holding what a test put there), with `extra` flags.
    fn start_in(dir: tempfile::TempDir, database: Option<&str>, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sanad-http"));
        if let Some(url) = database {
            command.args(["--database-url", url]);
        }
        command.args(extra);
        let mut child = command
            .args([
                "--data",
                dir.path().join("data").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--region",
                "JO",
            ])
            .env("SANAD_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
            .env("SANAD_JSON_SECRET", JSON_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        let base = loop {
            let line = lines.next().expect("the server printed its address").unwrap();
            printed.push(line.clone());
            if let Some(address) = line.strip_prefix("listening on ") {
                break address.to_owned();
            }
        };
        assert!(
            printed.iter().any(|l| l.starts_with("verifier key: sanad.localhost/ledger+")),
            "{printed:?}"
        );
        std::thread::spawn(move || for _ in lines {});
        // The first admin token, written by the server that made the first; a server joining
        // a database that holds tokens already writes none.
        let token_file = dir.path().join("data/admin.token");
        use std::os::unix::fs::PermissionsExt as _;
        let admin = match std::fs::metadata(&token_file) {
            Ok(metadata) => {
                assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
                std::fs::read_to_string(token_file).unwrap().trim().to_owned()
            }
            Err(_) => String::new(),
        };
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { child, base, admin, dir, agent }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let request = request
            .header("Content-Type", "application/json")
            .body(body.unwrap_or("").to_owned())
            .unwrap();
        let mut response = self.agent.run(request).unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.body_mut().read_to_vec().unwrap();
        (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn json(&self, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
        let (status, _, text) = self.call(method, path, Some(token), None, Some(&body.to_string()));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (status, _, text) = self.call("GET", path, Some(token), None, None);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A text message through the signed JSON gateway: the reply and the notices for others.
    fn sms(&self, id: &str, from: &str, text: &str) -> Value {
        let body = json!({"id": id, "from": from, "text": text}).to_string();
        let signature =
            sanad_sms::gateway::json::signature(JSON_SECRET.as_bytes(), body.as_bytes());
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/v1/sms/json", self.base))
            .header(sanad_sms::gateway::json::SIGNATURE_HEADER, signature)
            .header("Content-Type", "application/json")
            .body(body)
            .unwrap();
        let mut response = self.agent.run(request).unwrap();
        assert_eq!(response.status().as_u16(), 200);
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// POSTs a CSV disbursement file; the report.
    fn disburse(&self, token: &str, programme: &str, csv: &str) -> (u16, Value) {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/v1/disbursements?programme={programme}&register=true", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "text/csv")
            .body(csv.to_owned())
            .unwrap();
        let mut response = self.agent.run(request).unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
    }

    fn stop(&mut self) {
        unsafe_free_sigterm(self.child.id());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "a graceful stop: {status:?}");
    }
}

/// A failed test must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGTERM through the `kill` command (no unsafe code in this workspace).
fn unsafe_free_sigterm(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn an_agency_system_and_a_gateway_drive_the_ledger_over_http() {
    let mut server = Server::start();
    let admin = server.admin.clone();
    assert_eq!(server.call("GET", "/healthz", None, None, None).2, "ok");

    let (status, programme) = server.json(
        "POST",
        "/v1/programmes",
        &admin,
        json!({"name": "Winter cash", "currency": "JOD", "budget": "1000", "kind": "cash"}),
    );
    assert_eq!(status, 201, "{programme}");
    let programme = programme["id"].as_str().unwrap().to_owned();
    let (status, amal) = server.json("POST", "/v1/beneficiaries", &admin, json!({"phone": "0791234567", "name": "Amal", "language": "en", "pin": "4821", "programme": programme}));
    assert_eq!(status, 201, "{amal}");
    let wallet = amal["wallet"].as_str().unwrap().to_owned();

    // One transfer, retried with its Idempotency-Key: the same answer; another body: 409.
    let transfer = json!({"id": "t-1", "from": programme, "to": wallet, "amount": "25.500", "currency": "JOD"}).to_string();
    let first = server.call("POST", "/v1/transfers", Some(&admin), Some("k-1"), Some(&transfer));
    assert_eq!(first.0, 201, "{}", first.2);
    let again = server.call("POST", "/v1/transfers", Some(&admin), Some("k-1"), Some(&transfer));
    assert_eq!((again.0, &again.2), (201, &first.2));
    let other =
        json!({"id": "t-2", "from": programme, "to": wallet, "amount": "1", "currency": "JOD"})
            .to_string();
    let conflict = server.call("POST", "/v1/transfers", Some(&admin), Some("k-1"), Some(&other));
    assert_eq!((conflict.0, conflict.1.as_str()), (409, "application/problem+json"));
    let log_index = serde_json::from_str::<Value>(&first.2).unwrap()["log_index"].as_u64().unwrap();
    // A key is the caller's for one request target: the same key elsewhere is another key.
    let elsewhere =
        json!({"name": "Spring cash", "currency": "JOD", "budget": "1", "kind": "cash"});
    let (status, _, text) = server.call(
        "POST",
        "/v1/programmes",
        Some(&admin),
        Some("k-1"),
        Some(&elsewhere.to_string()),
    );
    assert_eq!(status, 201, "{text}");
    assert!(text.contains("\"id\":\"prog-"), "{text}");

    // An array, answered item by item.
    let batch: Vec<Value> = (0..3).map(|n| json!({"id": format!("b-{n}"), "from": programme, "to": wallet, "amount": "1", "currency": "JOD"})).collect();
    let (status, answers) = server.json("POST", "/v1/transfers", &admin, Value::Array(batch));
    assert_eq!(status, 200);
    assert_eq!(answers["results"].as_array().unwrap().len(), 3);
    let (_, balance) = server.get(&format!("/v1/accounts/{wallet}/balance"), &admin);
    assert_eq!(balance["available"], "28.500");
    let (_, history) = server.get(&format!("/v1/accounts/{wallet}/history?limit=2"), &admin);
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    let (_, found) = server.get("/v1/transfers/t-1", &admin);
    assert_eq!(found["entry"]["type"], "transfer.posted");

    // Roles and bad requests: problem+json, nothing changed.
    let (status, auditor) = server.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "audit-office", "role": "auditor"}),
    );
    assert_eq!(status, 201);
    let auditor = auditor["token"].as_str().unwrap().to_owned();
    let refused = server.call("POST", "/v1/transfers", Some(&auditor), None, Some(&other));
    assert_eq!((refused.0, refused.1.as_str()), (403, "application/problem+json"));
    assert_eq!(
        server.get(&format!("/v1/programmes/{programme}"), &auditor).1["available"],
        "971.500"
    );
    assert_eq!(server.call("POST", "/v1/transfers", None, None, Some(&other)).0, 401);
    assert_eq!(server.call("POST", "/v1/transfers", Some("nope"), None, Some(&other)).0, 401);
    for bad in [
        "{",
        "[]",
        r#"{"id": 5}"#,
        r#"{"id":"x","from":"a","to":"b","amount":"1","currency":"JOD","extra":1}"#,
    ] {
        let (status, content_type, text) =
            server.call("POST", "/v1/transfers", Some(&admin), None, Some(bad));
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/problem+json"),
            "{bad}: {text}"
        );
    }
    // An oversized body: 413, or the connection closed while it was still being sent.
    let big = "x".repeat(5 << 20);
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/v1/transfers", server.base))
        .header("Authorization", format!("Bearer {admin}"))
        .body(big)
        .unwrap();
    match server.agent.run(request) {
        Ok(response) => assert_eq!(response.status().as_u16(), 413),
        Err(ureq::Error::Io(error)) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{error}"
        ),
        Err(other) => panic!("{other}"),
    }
    let (status, problem) = server.json("POST", "/v1/transfers", &admin, json!({"id": "t-9", "from": wallet, "to": programme, "amount": "1000", "currency": "JOD", "programme": programme}));
    assert_eq!((status, problem["code"].as_str()), (422, Some("insufficient_funds")));
    assert_eq!(
        server.get(&format!("/v1/accounts/{wallet}/balance"), &admin).1["available"],
        "28.500"
    );

    // The SMS webhook, signed as Twilio signs it, over the URL the server is reached at.
    let form =
        "MessageSid=SM0001&AccountSid=AC1&From=%2B962791234567&To=%2B96264000000&Body=BAL+4821";
    let pairs = sanad_sms::gateway::form_pairs(form.as_bytes());
    let url = format!("{}/v1/sms/twilio", server.base);
    let signature = sanad_sms::gateway::twilio::signature(TWILIO_TOKEN.as_bytes(), &url, &pairs);
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("X-Twilio-Signature", &signature)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .unwrap();
    let mut response = server.agent.run(request).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let twiml = response.body_mut().read_to_string().unwrap();
    assert!(twiml.contains("<Message>Your balance: 28.500 JOD</Message>"), "{twiml}");
    let forged = ureq::http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("X-Twilio-Signature", "AAAA")
        .body(form.to_owned())
        .unwrap();
    assert_eq!(server.agent.run(forged).unwrap().status().as_u16(), 403);

    // Vouchers over HTTP: a programme with terms, a shop with its own token, a redemption
    // authorised with the beneficiary's PIN at the counter, a settlement with its statement.
    let (status, food) = server.json("POST", "/v1/programmes", &admin, json!({"name": "Food", "currency": "JOD", "budget": "500", "kind": "value_voucher", "terms": {"valid_days": 30}}));
    assert_eq!(status, 201, "{food}");
    let food = food["id"].as_str().unwrap().to_owned();
    let (status, shop) = server.json("POST", "/v1/vendors", &admin, json!({"name": "Corner shop", "phone": "0771234567", "currency": "JOD", "programmes": [food]}));
    assert_eq!(status, 201, "{shop}");
    let shop = shop["id"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&format!("/v1/vendors/{shop}"), &admin).1["name"], "Corner shop");
    let (_, shop_token) = server.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "corner-shop", "role": "vendor", "vendor": shop}),
    );
    let shop_token = shop_token["token"].as_str().unwrap().to_owned();
    let amal_id = amal["id"].as_str().unwrap();
    let (status, voucher) = server.json(
        "POST",
        "/v1/vouchers",
        &admin,
        json!({"programme": food, "beneficiary": amal_id, "value": "40"}),
    );
    assert_eq!(status, 201, "{voucher}");
    let code = voucher["code"].as_str().unwrap().to_owned();
    assert_eq!(
        server.get(&format!("/v1/vouchers/{code}"), &admin).1["available"]["amount"],
        "40.000"
    );
    assert_eq!(
        server.get(&format!("/v1/vouchers/{code}"), &shop_token).0,
        403,
        "a code is for operators to look up"
    );
    let (status, redemption) = server.json(
        "POST",
        "/v1/redemptions",
        &shop_token,
        json!({"code": code, "vendor": shop, "amount": "15"}),
    );
    assert_eq!(status, 201, "{redemption}");
    let redemption = redemption["id"].as_str().unwrap().to_owned();
    let (status, wrong) = server.json(
        "POST",
        &format!("/v1/redemptions/{redemption}/authorise"),
        &shop_token,
        json!({"pin": "0000"}),
    );
    assert_eq!((status, wrong["code"].as_str()), (403, Some("wrong_pin")));
    let (status, _) = server.json(
        "POST",
        &format!("/v1/redemptions/{redemption}/authorise"),
        &shop_token,
        json!({"pin": "4821"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        server.get(&format!("/v1/accounts/{shop}/balance"), &shop_token).1["available"],
        "15.000"
    );
    assert_eq!(server.get(&format!("/v1/accounts/{wallet}/balance"), &shop_token).0, 403);
    let (status, run) =
        server.json("POST", "/v1/settlements", &admin, json!({"programme": food, "run": "dec"}));
    assert_eq!(status, 201, "{run}");
    let settlement = run["vendors"][0]["settlement"].as_str().unwrap().to_owned();
    let request = ureq::http::Request::builder()
        .uri(format!("{}/v1/settlements/{settlement}", server.base))
        .header("Authorization", format!("Bearer {admin}"))
        .header("Accept", "text/csv")
        .body(())
        .unwrap();
    let statement = server.agent.run(request).unwrap().body_mut().read_to_string().unwrap();
    assert!(statement.lines().nth(1).unwrap().contains(",pin,15.000,JOD,"), "{statement}");

    // A disbursement file.
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/v1/disbursements?programme={programme}&register=true", server.base))
        .header("Authorization", format!("Bearer {admin}"))
        .header("Content-Type", "text/csv")
        .body("phone,amount\n0791234599,5\n".to_owned())
        .unwrap();
    let mut response = server.agent.run(request).unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let report: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    // A file with a row it cannot pay is refused as a whole: a problem document that carries
    // the report, each rejected row with its line (found by fuzzing: it was plain JSON).
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/v1/disbursements?programme={programme}", server.base))
        .header("Authorization", format!("Bearer {admin}"))
        .header("Content-Type", "text/csv")
        .body("phone,amount\n0791234567,1\n0791230000,5\n".to_owned())
        .unwrap();
    let mut refused = server.agent.run(request).unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let problem: Value =
        serde_json::from_str(&refused.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(problem["code"], "disbursement_refused", "{problem}");
    assert_eq!(
        (problem["report"]["paid"].as_u64(), problem["report"]["rejected"][0]["line"].as_u64()),
        (Some(0), Some(3)),
        "{problem}"
    );
    assert_eq!((report["paid"].as_u64(), report["registered"].as_u64()), (Some(1), Some(1)));
    let run_id = report["id"].as_str().unwrap();
    assert_eq!(server.get(&format!("/v1/disbursements/{run_id}"), &admin).1["paid"], 1);

    // The log, public: key, checkpoint, a receipt for the first transfer, tiles.
    let key = server.call("GET", "/log/key", None, None, None).2;
    assert!(key.starts_with("sanad.localhost/ledger+"));
    let checkpoint = server.call("GET", "/log/checkpoint", None, None, None).2;
    assert!(checkpoint.starts_with("sanad.localhost/ledger\n"), "{checkpoint}");
    let size: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
    let receipt = server.call("GET", &format!("/log/receipt/{log_index}"), None, None, None);
    assert_eq!(receipt.0, 200);
    assert!(receipt.2.starts_with("c2sp.org/tlog-proof@v1"), "{}", receipt.2);
    let width = size % 256;
    let tile = server.call("GET", &format!("/log/tile/entries/000.p/{width}"), None, None, None);
    assert_eq!(tile.0, 200, "a partial bundle of {width}");
    assert_eq!(
        server.call("GET", "/log/tile/entries/000", None, None, None).0,
        404,
        "not full yet"
    );

    // The OpenAPI document lists every route the issue names, with the method it has.
    let (status, content_type, document) = server.call("GET", "/openapi.json", None, None, None);
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let document: Value = serde_json::from_str(&document).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in [
        ("post", "/v1/programmes"),
        ("get", "/v1/programmes/{id}"),
        ("post", "/v1/beneficiaries"),
        ("get", "/v1/beneficiaries/{id}"),
        ("delete", "/v1/beneficiaries/{id}/personal-data"),
        ("post", "/v1/vendors"),
        ("get", "/v1/vendors/{id}"),
        ("post", "/v1/transfers"),
        ("get", "/v1/transfers/{id}"),
        ("post", "/v1/transfers/{id}/post"),
        ("post", "/v1/transfers/{id}/void"),
        ("post", "/v1/disbursements"),
        ("get", "/v1/disbursements/{id}"),
        ("post", "/v1/vouchers"),
        ("get", "/v1/vouchers/{code}"),
        ("post", "/v1/vouchers/{code}/revoke"),
        ("post", "/v1/redemptions"),
        ("post", "/v1/redemptions/{id}/authorise"),
        ("post", "/v1/redemptions/{id}/refuse"),
        ("post", "/v1/settlements"),
        ("get", "/v1/settlements/{id}"),
        ("get", "/v1/accounts/{id}/balance"),
        ("get", "/v1/accounts/{id}/history"),
        ("post", "/v1/sms/twilio"),
        ("post", "/v1/sms/africastalking"),
        ("post", "/v1/ussd/africastalking"),
        ("get", "/v1/sms/kannel"),
        ("post", "/v1/sms/rapidpro"),
        ("post", "/v1/sms/json"),
        ("get", "/log/key"),
        ("get", "/log/checkpoint"),
        ("get", "/log/tile/{path}"),
        ("get", "/log/receipt/{index}"),
        ("get", "/healthz"),
        ("get", "/metrics"),
    ] {
        assert!(document["paths"][path][method].is_object(), "{method} {path} in /openapi.json");
    }

    // Metrics: requests by route and status, latency, group commits, the log's size.
    let (status, content_type, metrics) = server.call("GET", "/metrics", None, None, None);
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    for expected in [
        r#"sanad_http_requests_total{method="POST",route="/v1/transfers",status="201"} "#,
        r#"sanad_http_request_duration_seconds_bucket{le="#,
        "sanad_ledger_commit_commands_count ",
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }
    let entries = metrics.lines().find_map(|l| l.strip_prefix("sanad_log_entries ")).unwrap();
    assert!(entries.parse::<u64>().unwrap() >= size, "{entries}");
    server.stop();
}

/// The auditor's whole check: verify the log and replay its money, from `source`.
fn audit(
    source: &dyn sanad_audit::TileSource,
    verifier: &sanad_tlog::NoteVerifier,
) -> (sanad_audit::ExportReport, sanad_audit::money::MoneyReport) {
    let mut money = sanad_audit::money::MoneyAudit::new();
    let verified =
        sanad_audit::verify_tiles(source, verifier, None, &mut |_, _| {}, &mut |i, e| {
            money.entry(i, e)
        })
        .unwrap();
    (verified, money.finish())
}

/// A whole programme over HTTP as an agency runs one: an operator's token, a cash tranche from
/// a file, vouchers redeemed by SMS at a shop and confirmed by the beneficiary's phone, a
/// settlement; then the log audited live from the server and from an export, with the same
/// findings, every write attributed to the token that made it.
#[test]
fn a_whole_programme_over_http_audited_live_and_from_an_export() {
    whole_programme(None);
}

/// The same on PostgreSQL: the server's log on a throwaway database server.
#[test]
fn a_whole_programme_on_postgresql_audited_live_and_from_an_export() {
    let postgres = sanad_postgres::testing::TestServer::for_test();
    let url = postgres.database("http").unwrap();
    whole_programme(Some(&url));
}

/// Two servers on one database, as an agency runs them behind a load balancer: the second
/// joins with copies of the first's log and registry keys. The registry, tokens, answers by
/// Idempotency-Key and answers to gateways' deliveries are shared;
/// a transfer made at one from a programme made at the other is decided on the whole log, its
/// retry at the other is answered, not applied again; wrong PINs sent to both count against
/// one limit; and both show the same balance and sign the same checkpoint.
#[test]
fn two_servers_on_one_postgresql_database_keep_one_ledger() {
    let postgres = sanad_postgres::testing::TestServer::for_test();
    let url = postgres.database("two_servers").unwrap();
    let a = Server::start_on(Some(&url));
    let joining = tempfile::tempdir().unwrap();
    std::fs::create_dir(joining.path().join("data")).unwrap();
    for key in [sanad_log::KEY_FILE, sanad_engine::registry::AGENCY_KEY_FILE] {
        let path = |dir: &std::path::Path| dir.join("data").join(key);
        std::fs::copy(path(a.dir.path()), path(joining.path())).unwrap();
    }
    let mut b = Server::start_in(joining, Some(&url), &[]);
    assert!(b.admin.is_empty(), "the joining server made no admin token of its own");
    b.admin = a.admin.clone();

    // A programme made at one; the same request, key and all, at the other: the same answer.
    let programme =
        json!({"name": "Winter cash", "currency": "JOD", "budget": "1000", "kind": "cash"})
            .to_string();
    let made = a.call("POST", "/v1/programmes", Some(&a.admin), Some("p-1"), Some(&programme));
    let again = b.call("POST", "/v1/programmes", Some(&b.admin), Some("p-1"), Some(&programme));
    assert_eq!(made.0, 201, "{made:?}");
    assert_eq!((again.0, &again.2), (made.0, &made.2), "a retry at another server is answered");
    let cash: Value = serde_json::from_str(&made.2).unwrap();
    let programme = a.get(&format!("/v1/programmes/{}", cash["id"].as_str().unwrap()), &a.admin).1;
    let funding = programme["funding"].as_str().unwrap().to_owned();
    let (status, amal) = a.json(
        "POST",
        "/v1/beneficiaries",
        &a.admin,
        json!({"phone": "0791234567", "name": "Amal", "pin": "4821", "programme": cash["id"]}),
    );
    assert_eq!(status, 201, "{amal}");
    let wallet = amal["wallet"].as_str().unwrap().to_owned();

    // A voucher made at one; the shop redeems by SMS at one, the beneficiary confirms at the
    // other: the confirmation waits in the shared registry, not in one server's memory.
    let (status, food) = a.json(
        "POST",
        "/v1/programmes",
        &a.admin,
        json!({"name": "Food",
        "currency": "JOD", "budget": "500", "kind": "value_voucher", "terms": {"valid_days": 30}}),
    );
    assert_eq!(status, 201, "{food}");
    let (status, shop) = a.json(
        "POST",
        "/v1/vendors",
        &a.admin,
        json!({"name": "Corner shop",
        "phone": "0771234567", "currency": "JOD", "programmes": [food["id"]]}),
    );
    assert_eq!(status, 201, "{shop}");
    let voucher = json!({"programme": food["id"], "beneficiary": amal["id"], "value": "40"});
    let (status, voucher) = b.json("POST", "/v1/vouchers", &b.admin, voucher);
    assert_eq!(status, 201, "{voucher}");
    let code = voucher["code"].as_str().unwrap();
    let asked = a.sms("m-3", "+962771234567", &format!("REDEEM {code} 15"));
    let text = asked["notices"][0]["text"].as_str().unwrap_or_else(|| panic!("{asked}"));
    let digits = text.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 6).unwrap();
    let confirmed = b.sms("m-4", "+962791234567", &format!("YES {digits}"));
    assert!(confirmed["reply"].is_string(), "{confirmed}");
    let shop = shop["id"].as_str().unwrap();
    for server in [&a, &b] {
        let balance = server.get(&format!("/v1/accounts/{shop}/balance"), &server.admin).1;
        assert_eq!(balance["available"], "15.000", "{balance}");
    }

    let pay =
        json!({"id": "t-1", "from": funding, "to": wallet, "amount": "25", "currency": "JOD"});
    let (status, paid) = b.json("POST", "/v1/transfers", &b.admin, pay.clone());
    assert_eq!(status, 201, "{paid}");
    let (_, again) = a.json("POST", "/v1/transfers", &a.admin, pay);
    assert_eq!((&again["log_index"], &again["replayed"]), (&paid["log_index"], &json!(true)));
    let overdraw = json!({"id": "t-2", "from": wallet, "to": funding, "amount": "26",
        "currency": "JOD", "programme": cash["id"]});
    let (status, refused) = b.json("POST", "/v1/transfers", &b.admin, overdraw);
    assert_eq!((status, &refused["code"]), (422, &json!("insufficient_funds")), "{refused}");

    // A gateway's delivery at one and its retry at the other: answered, not acted on twice.
    let asked = a.sms("m-1", "+962791234567", "BAL 4821");
    let retried = b.sms("m-1", "+962791234567", "BAL 4821");
    assert_eq!((&retried["reply"], &retried["replayed"]), (&asked["reply"], &json!(true)));
    assert!(asked["reply"].as_str().unwrap().contains("25"), "{asked}");
    // A new message at the other: it knows her too (the registry is shared).
    let again = b.sms("m-2", "+962791234567", "BAL 4821");
    assert_eq!((&again["reply"], &again["replayed"]), (&asked["reply"], &json!(false)));
    // Wrong PINs count against one limit, whichever server a gateway reaches: five spread over
    // both lock the phone's PIN at both, even for the right one.
    for n in 0..5 {
        let server = if n % 2 == 0 { &a } else { &b };
        let wrong = server.sms(&format!("m-wrong-{n}"), "+962791234567", "BAL 1111");
        let expected = if n < 4 { "Wrong PIN" } else { "Too many wrong PINs" };
        assert!(wrong["reply"].as_str().unwrap().starts_with(expected), "{n}: {wrong}");
    }
    for (n, server) in [&a, &b].into_iter().enumerate() {
        let locked = server.sms(&format!("m-locked-{n}"), "+962791234567", "BAL 4821");
        assert!(locked["reply"].as_str().unwrap().starts_with("Too many wrong PINs"), "{locked}");
    }

    // Each request sees what any server committed before it: the same balance at once.
    for server in [&a, &b] {
        let balance = server.get(&format!("/v1/accounts/{wallet}/balance"), &server.admin).1;
        assert_eq!(balance["available"], "25.000", "{balance}");
    }
    // Both sign the same tree with the same key: the same checkpoint, once each has signed.
    let size = paid["log_index"].as_u64().unwrap() + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let checkpoints = [&a, &b].map(|s| s.call("GET", "/log/checkpoint", None, None, None).2);
        if checkpoints[0] == checkpoints[1] && checkpoints[0].contains(&format!("\n{size}\n")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{checkpoints:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Each token has its own rate (`--token-rate`): one over it is answered 429 with
/// Retry-After and a problem document, and the others are not slowed.
#[test]
fn a_token_over_its_rate_is_told_to_wait_and_others_are_not() {
    let server = Server::start_in(tempfile::tempdir().unwrap(), None, &["--token-rate", "5"]);
    let admin = server.admin.clone();
    let (status, other) =
        server.json("POST", "/v1/tokens", &admin, json!({"name": "other", "role": "auditor"}));
    assert_eq!(status, 201, "{other}");
    let other = other["token"].as_str().unwrap().to_owned();
    let answers: Vec<_> = (0..40)
        .map(|_| {
            let url = format!("{}/v1/accounts/nobody/balance", server.base);
            let request = ureq::http::Request::builder()
                .uri(&url)
                .header("Authorization", format!("Bearer {admin}"))
                .body(())
                .unwrap();
            let response = server.agent.run(request).unwrap();
            let retry =
                response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), retry)
        })
        .collect();
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert!(refused.len() >= 20, "a burst of 40 at 5 a second: {answers:?}");
    assert!(
        refused
            .iter()
            .all(|(_, retry)| retry.as_deref().is_some_and(|r| r.parse::<u64>().unwrap() >= 1))
    );
    let (status, _, body) =
        server.call("GET", "/v1/accounts/nobody/balance", Some(&admin), None, None);
    assert_eq!(status, 429);
    assert!(body.contains("\"code\":\"too_many_requests\""), "{body}");
    // The other token is not slowed by the first one's burst.
    let (status, _) = server.get("/v1/accounts/nobody/balance", &other);
    assert_eq!(status, 404);
}

fn whole_programme(database: Option<&str>) {
    let mut server = Server::start_on(database);
    let admin = server.admin.clone();
    let (status, ops) = server.json(
        "POST",
        "/v1/tokens",
        &admin,
        json!({"name": "field office", "role": "operator"}),
    );
    assert_eq!(status, 201, "{ops}");
    let (ops, ops_principal) =
        (ops["token"].as_str().unwrap().to_owned(), ops["id"].as_str().unwrap().to_owned());
    assert!(ops_principal.starts_with("tok-"), "{ops_principal}");

    let (status, cash) = server.json(
        "POST",
        "/v1/programmes",
        &ops,
        json!({"name": "Winter cash", "currency": "JOD", "budget": "1000", "kind": "cash"}),
    );
    assert_eq!(status, 201, "{cash}");
    let cash = cash["id"].as_str().unwrap().to_owned();
    let (status, amal) = server.json("POST", "/v1/beneficiaries", &ops, json!({"phone": "0791234567", "name": "Amal", "language": "en", "pin": "4821", "programme": cash}));
    assert_eq!(status, 201, "{amal}");
    let amal = amal["id"].as_str().unwrap().to_owned();
    let (status, report) = server.disburse(
        &ops,
        &cash,
        "phone,amount
0791234567,20
0791234599,5
",
    );
    assert_eq!((status, report["paid"].as_u64()), (201, Some(2)), "{report}");

    let (status, food) = server.json("POST", "/v1/programmes", &ops, json!({"name": "Food", "currency": "JOD", "budget": "500", "kind": "value_voucher", "terms": {"valid_days": 30}}));
    assert_eq!(status, 201, "{food}");
    let food = food["id"].as_str().unwrap().to_owned();
    let (status, shop) = server.json("POST", "/v1/vendors", &ops, json!({"name": "Corner shop", "phone": "0771234567", "currency": "JOD", "programmes": [food]}));
    assert_eq!(status, 201, "{shop}");
    let shop = shop["id"].as_str().unwrap().to_owned();
    let (status, voucher) = server.json(
        "POST",
        "/v1/vouchers",
        &ops,
        json!({"programme": food, "beneficiary": amal, "value": "40"}),
    );
    assert_eq!(status, 201, "{voucher}");
    let code = voucher["code"].as_str().unwrap().to_owned();

    // The shop redeems by SMS; the beneficiary's phone gets six digits and answers YES.
    let asked = server.sms("m-1", "+962771234567", &format!("REDEEM {code} 15"));
    let notice = &asked["notices"][0];
    assert_eq!(notice["to"], "+962791234567", "{asked}");
    let text = notice["text"].as_str().unwrap();
    let digits: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("six digits in {text}"))
        .to_owned();
    let confirmed = server.sms("m-2", "+962791234567", &format!("YES {digits}"));
    assert!(confirmed["reply"].is_string(), "{confirmed}");
    assert_eq!(server.get(&format!("/v1/accounts/{shop}/balance"), &ops).1["available"], "15.000");
    let (status, run) =
        server.json("POST", "/v1/settlements", &ops, json!({"programme": food, "run": "dec"}));
    assert_eq!(status, 201, "{run}");
    let last = run["vendors"][0]["log_index"].as_u64().unwrap();

    // Live: the server's /log, with its published key, once its checkpoint covers the
    // settlement (a checkpoint follows an answered write within milliseconds).
    let covered = (0..500).any(|_| {
        let checkpoint = server.call("GET", "/log/checkpoint", None, None, None).2;
        let size: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
        size > last || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            false
        }
    });
    assert!(covered, "no checkpoint covers entry {last} after 5 s");
    let key = server.call("GET", "/log/key", None, None, None).2;
    let verifier = sanad_tlog::NoteVerifier::parse(key.trim()).unwrap();
    let (verified, live) = audit(&sanad_audit::live::LiveLog::new(&server.base), &verifier);
    assert!(live.is_clean(), "{:?}", live.anomalies);
    assert_eq!(live.entries, verified.tree_size);
    let figures = |id: &str| live.programmes.iter().find(|p| p.id == id).unwrap().clone();
    assert_eq!(figures(&cash).funding_balance, "975.000");
    let vouchers = figures(&food).vouchers.unwrap();
    assert_eq!(
        (vouchers.issued_value.as_str(), vouchers.redeemed.as_str(), vouchers.settled.as_str()),
        ("40.000", "15.000", "15.000")
    );
    assert_eq!(vouchers.outstanding, vouchers.escrow_balance);
    assert!(live.currencies.iter().all(|c| c.sum == "0.000"), "{:?}", live.currencies);
    // Every write over HTTP names the operator's token; the SMS steps are the channel's own.
    let operator = &live.principals[&ops_principal];
    assert_eq!(operator.role, sanad_ledger::Role::Operator);
    assert!(operator.entries >= 10, "{operator:?}");
    assert!(live.entries_without_principal > 0);

    // From an export of the stopped server's store: the same log, the same findings.
    server.stop();
    let data = server.dir.path().join("data");
    let export = server.dir.path().join("export");
    let log = match database {
        Some(url) => {
            let backend = std::sync::Arc::new(sanad_postgres::PgBackend::connect(url).unwrap());
            sanad_log::Log::open_on(&data, backend).unwrap()
        }
        None => sanad_log::Log::open(&data).unwrap(),
    };
    log.export(&export).unwrap();
    let (exported, offline) = audit(&sanad_audit::Folder(&export), &verifier);
    assert_eq!(exported.root, verified.root);
    assert_eq!(offline, live);
}
