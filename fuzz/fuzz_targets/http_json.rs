//! Any request body (and query) at any write route of the HTTP binding is answered, never a
//! server error or a panic: a bad one gets a 4xx problem document (RFC 9457, with its stable
//! `code`) and leaves the log as it was — except a wrong PIN, which the ledger logs so that
//! lockouts survive restarts. The same holds for any text a person sends by SMS (the signed
//! JSON gateway) and any USSD session's inputs (Africa's Talking), from the beneficiary's phone
//! or the shop's: the channel answers every one with a screen or a reply.
//!
//! The binding runs in-process on a real agency in a temporary folder, through the same router
//! and limits a listening server has (`sanad_http::Binding`), with one funded programme, a
//! beneficiary, a pending hold, a voucher programme, a shop, a voucher and a redemption made at
//! start. The first byte of an input picks the route (and whether an Idempotency-Key is sent);
//! the rest is the body. In a body (or query) given as UTF-8, `{P}` `{W}` `{B}` `{H}` `{F}` `{V}`
//! `{C}` `{R}` stand for those ids (and `{E}` `{X}` for a second beneficiary, whom the erasure
//! route erases, and her voucher, which the revocation route revokes), so that inputs can reach
//! past the lookups into the rules.
//! State carries over between inputs, as on a server: what one input spends, the next finds
//! spent.
#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    binding: sanad_http::Binding,
    admin: String,
    ids: Vec<(&'static str, String)>,
    messages: std::sync::atomic::AtomicU64,
    _folder: tempfile::TempDir,
}

/// The routes an input may pick; `{X}` in a path is one of the ids made at start.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/programmes"),
    ("POST", "/v1/beneficiaries"),
    ("POST", "/v1/vendors"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/transfers/{H}/post"),
    ("POST", "/v1/transfers/{H}/void"),
    ("POST", "/v1/vouchers"),
    ("POST", "/v1/vouchers/{X}/revoke"),
    ("POST", "/v1/redemptions"),
    ("POST", "/v1/redemptions/{R}/authorise"),
    ("POST", "/v1/redemptions/{R}/refuse"),
    ("POST", "/v1/settlements"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/beneficiaries/{E}/personal-data"),
    // The body is the query string.
    ("POST", "/v1/disbursements?"),
    ("GET", "/v1/accounts/{W}/history?"),
    // The body is the text of an SMS or the inputs of a USSD session, properly signed.
    ("SMS", "/v1/sms/json"),
    ("USSD", "/v1/ussd/africastalking?secret=fuzz-ussd-secret"),
];

/// The signed JSON gateway's key.
const JSON_SECRET: &str = "fuzz-json-secret";

/// Who sends an SMS or dials: the beneficiary or the shop.
const PHONES: [&str; 2] = ["+962791234567", "+962771234567"];

impl Server {
    fn start() -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let config = sanad_http::Config {
            data: folder.path().join("data"),
            listen: "127.0.0.1:0".parse().expect("an address"),
            origin: "fuzz.sanad.example/ledger".into(),
            public_url: None,
            region: Some("JO".into()),
            secrets: sanad_http::Secrets {
                json: Some(JSON_SECRET.into()),
                africastalking: Some("fuzz-ussd-secret".into()),
                ..sanad_http::Secrets::default()
            },
            database_url: None,
            token_rate: 0,
            // Deep paths over the rate limit's refusal, which one input in a few hundred meets.
            sms_per_minute: 600,
        };
        let binding = sanad_http::Binding::open(config, "http://fuzz.invalid").expect("opened");
        let admin = std::fs::read_to_string(binding.admin_token_file().expect("a new ledger"))
            .expect("the admin token")
            .trim()
            .to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let router = binding.router();
        let mut server = Self {
            runtime,
            router,
            binding,
            admin,
            ids: Vec::new(),
            messages: 0.into(),
            _folder: folder,
        };
        let id = |answer: &Value, field: &str| answer[field].as_str().expect(field).to_owned();
        let cash = server.setup(
            "/v1/programmes",
            json!({"name": "Cash", "currency": "JOD", "budget": "1000", "kind": "cash"}),
        );
        let programme = id(&cash, "id");
        let amal = server.setup(
            "/v1/beneficiaries",
            json!({"phone": "0791234567", "name": "Amal", "pin": "4821", "programme": programme}),
        );
        let wallet = id(&amal, "wallet");
        server.setup("/v1/transfers", json!({"id": "t-fund", "from": programme, "to": wallet, "amount": "100", "currency": "JOD"}));
        server.setup("/v1/transfers", json!({"id": "h-1", "from": programme, "to": wallet, "amount": "5", "currency": "JOD", "hold_ms": 86_400_000u64}));
        let food = server.setup(
            "/v1/programmes",
            json!({"name": "Food", "currency": "JOD", "budget": "500", "kind": "value_voucher"}),
        );
        let food = id(&food, "id");
        let shop = server.setup(
            "/v1/vendors",
            json!({"name": "Shop", "phone": "0771234567", "currency": "JOD", "programmes": [food]}),
        );
        let shop = id(&shop, "id");
        let voucher = server.setup(
            "/v1/vouchers",
            json!({"programme": food, "beneficiary": id(&amal, "id"), "value": "40"}),
        );
        let code = id(&voucher, "code");
        let redemption =
            server.setup("/v1/redemptions", json!({"code": code, "vendor": shop, "amount": "5"}));
        // Someone to erase and a voucher to revoke, so that inputs doing that leave Amal and her
        // voucher for the others.
        let huda = server.setup(
            "/v1/beneficiaries",
            json!({"phone": "0791234500", "name": "Huda", "pin": "1357", "programme": programme}),
        );
        let spare = server.setup(
            "/v1/vouchers",
            json!({"programme": food, "beneficiary": id(&huda, "id"), "value": "10"}),
        );
        server.ids = vec![
            ("{P}", programme),
            ("{W}", wallet),
            ("{B}", id(&amal, "id")),
            ("{H}", "h-1".into()),
            ("{F}", food),
            ("{V}", shop),
            ("{C}", code),
            ("{R}", id(&redemption, "id")),
            ("{E}", id(&huda, "id")),
            ("{X}", id(&spare, "code")),
        ];
        server
    }

    fn setup(&self, path: &str, body: Value) -> Value {
        let (status, _, answer) =
            self.call(Method::POST, path, None, body.to_string().into_bytes());
        assert!(
            status.is_success(),
            "setting up {path}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
        serde_json::from_slice(&answer).expect("a JSON answer")
    }

    fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Option<String>, Vec<u8>) {
        let kind = if uri.contains("/disbursements") {
            "text/csv"
        } else if uri.contains("/ussd/") {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.admin))
            .header(header::CONTENT_TYPE, kind);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if uri.ends_with("/sms/json") {
            let signature = sanad_sms::gateway::json::signature(JSON_SECRET.as_bytes(), &body);
            request = request.header("X-Sanad-Signature", signature);
        }
        let request = request.body(Body::from(body)).expect("a request");
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let kind = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body =
                axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
            (status, kind, body.to_vec())
        })
    }

    fn fill(&self, text: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(text) else { return text.to_vec() };
        let mut text = text.to_owned();
        for (placeholder, id) in &self.ids {
            text = text.replace(placeholder, id);
        }
        text.into_bytes()
    }

    /// A new gateway message or USSD session id.
    fn next_message(&self) -> u64 {
        self.messages.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn log_size(&self) -> u64 {
        self.binding.agency().ledger().log().size()
    }
}

static SERVER: LazyLock<Server> = LazyLock::new(Server::start);

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let server = &*SERVER;
    let (method, template) = ROUTES[usize::from(pick) % ROUTES.len()];
    let key = (pick >= 128).then_some("fuzz-key");
    let mut path = String::from_utf8(server.fill(template.as_bytes())).expect("UTF-8");
    let body = if template.ends_with('?') {
        // The query: only what a URI may hold.
        let Ok(query) = String::from_utf8(server.fill(rest)) else { return };
        if format!("{path}{query}").parse::<axum::http::Uri>().is_err() {
            return;
        }
        path.push_str(&query);
        if template.contains("/disbursements") {
            b"phone,amount\n0791234599,1\n".to_vec()
        } else {
            Vec::new()
        }
    } else {
        server.fill(rest)
    };
    let phone = PHONES[usize::from(pick >= 128)];
    let (method, body) = match method {
        "SMS" => {
            let text = String::from_utf8_lossy(&body);
            let message =
                json!({"id": format!("m-{}", server.next_message()), "from": phone, "text": text});
            ("POST", message.to_string().into_bytes())
        }
        "USSD" => {
            let mut form = format!(
                "sessionId=s-{}&serviceCode=%2A384%23&phoneNumber={}&text=",
                server.next_message(),
                phone.replace('+', "%2B")
            );
            for byte in &body {
                form.push_str(&format!("%{byte:02X}"));
            }
            ("POST", form.into_bytes())
        }
        other => (other, body),
    };
    let method: Method = method.parse().expect("a method");
    let before = server.log_size();
    let (status, kind, answer) = server.call(method, &path, key, body);
    let shown = String::from_utf8_lossy(&answer);
    // To see what the seeds reach: SANAD_FUZZ_SHOW=1 cargo fuzz run http_json seeds/http_json -runs=0
    if std::env::var_os("SANAD_FUZZ_SHOW").is_some() {
        eprintln!("{path} -> {status} {shown}");
    }
    assert!(!status.is_server_error(), "{path}: {status} {shown}");
    if status.is_client_error() {
        assert_eq!(kind.as_deref(), Some("application/problem+json"), "{path}: {status} {shown}");
        let problem: Value = serde_json::from_slice(&answer).expect("a problem document");
        let code = problem["code"].as_str().expect("a stable code");
        assert_eq!(problem["status"].as_u64(), Some(u64::from(status.as_u16())));
        if code != "wrong_pin" {
            assert_eq!(server.log_size(), before, "{path}: refused ({code}) but the log grew");
        }
    } else {
        assert!(status.is_success(), "{path}: {status} {shown}");
    }
});
