//! The binding end to end: the binary started on a fresh folder, driven over HTTP as an agency
//! system and an SMS gateway would, then stopped with SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const TWILIO_TOKEN: &str = "twilio-test-token";

struct Server {
    child: Child,
    base: String,
    admin: String,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sanad-http"))
            .args([
                "--data",
                dir.path().join("data").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--region",
                "JO",
            ])
            .env("SANAD_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
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
        let token_file = dir.path().join("data/admin.token");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
        let admin = std::fs::read_to_string(token_file).unwrap().trim().to_owned();
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { child, base, admin, _dir: dir, agent }
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

    fn stop(mut self) {
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
    let server = Server::start();
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
    server.stop();
}
