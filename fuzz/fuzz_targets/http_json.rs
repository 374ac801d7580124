//! Any request body (and query) at any write route of the HTTP binding is answered, never a
//! server error or a panic: a bad one gets a 4xx problem document (RFC 9457, with its stable
//! `code`) and leaves the log as it was — except a wrong PIN, which the ledger logs so that
//! lockouts survive restarts.
//!
//! The binding runs in-process on a real agency in a temporary folder, through the same router
//! and limits a listening server has (`sanad_http::Binding`), with one funded programme, a
//! beneficiary, a pending hold, a voucher programme, a shop, a voucher and a redemption made at
//! start. The first byte of an input picks the route (and whether an Idempotency-Key is sent);
//! the rest is the body. In a body (or query) given as UTF-8, `{P}` `{W}` `{B}` `{H}` `{F}` `{V}`
//! `{C}` `{R}` stand for those ids, so that inputs can reach past the lookups into the rules.
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
    ("POST", "/v1/vouchers/{C}/revoke"),
    ("POST", "/v1/redemptions"),
    ("POST", "/v1/redemptions/{R}/authorise"),
    ("POST", "/v1/redemptions/{R}/refuse"),
    ("POST", "/v1/settlements"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/beneficiaries/{B}/personal-data"),
    // The body is the query string.
    ("POST", "/v1/disbursements?"),
    ("GET", "/v1/accounts/{W}/history?"),
];

impl Server {
    fn start() -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let config = sanad_http::Config {
            data: folder.path().join("data"),
            listen: "127.0.0.1:0".parse().expect("an address"),
            origin: "fuzz.sanad.example/ledger".into(),
            public_url: None,
            region: Some("JO".into()),
            secrets: sanad_http::Secrets::default(),
            database_url: None,
            token_rate: 0,
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
        let mut server = Self { runtime, router, binding, admin, ids: Vec::new(), _folder: folder };
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
        server.ids = vec![
            ("{P}", programme),
            ("{W}", wallet),
            ("{B}", id(&amal, "id")),
            ("{H}", "h-1".into()),
            ("{F}", food),
            ("{V}", shop),
            ("{C}", code),
            ("{R}", id(&redemption, "id")),
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
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.admin))
            .header(
                header::CONTENT_TYPE,
                if uri.contains("/disbursements") { "text/csv" } else { "application/json" },
            );
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
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
    let method: Method = method.parse().expect("a method");
    let before = server.log_size();
    let (status, kind, answer) = server.call(method, &path, key, body);
    let shown = String::from_utf8_lossy(&answer);
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
