//! The routes: each maps HTTP to one library call and back. No rule lives here.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sanad_engine::Agency;
use sanad_engine::registry::NewPerson;
use sanad_ledger::{Actor, Command, Event, ProgrammeKind};
use sanad_money::{Amount, Currency, Id};
use sanad_sms::Channel;

use serde_json::Value;

use crate::problem::Problem;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::*;
use crate::extract::{ApiBody, ApiPath, ApiQuery, WriteRequest};
use crate::store::{Role, Store, TokenRecord};

/// The most transfers one request may carry (a group commit's worth).
pub(crate) const TRANSFERS_PER_REQUEST_MAX: usize = 8_190;

pub(crate) struct AppState {
    pub(crate) agency: Arc<Agency>,
    pub(crate) channel: Channel,
    pub(crate) store: Store,
    pub(crate) secrets: crate::Secrets,
    /// The URL gateways are configured with (what Twilio signs), without a trailing slash.
    pub(crate) public_url: String,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) token_limits: Option<TokenLimits>,
}

/// How fast each API token may call: a token bucket per principal (GCRA, `governor`), so that
/// a leaked or runaway token cannot crowd out the others or hammer the ledger. Answered with
/// 429 and `Retry-After` when spent.
pub(crate) struct TokenLimits {
    limiter: governor::DefaultKeyedRateLimiter<String>,
    per_second: u32,
}

impl TokenLimits {
    /// `per_second` requests a second per token, in bursts of up to twice as many; `None` for
    /// no limit (0).
    pub(crate) fn per_second(per_second: u32) -> Option<Self> {
        let rate = std::num::NonZeroU32::new(per_second)?;
        let burst = rate.saturating_mul(std::num::NonZeroU32::new(2)?);
        let quota = governor::Quota::per_second(rate).allow_burst(burst);
        Some(Self { limiter: governor::RateLimiter::keyed(quota), per_second })
    }

    fn check(&self, principal: &str) -> Result<(), Problem> {
        use governor::clock::Clock as _;
        self.limiter.check_key(&principal.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            Problem::too_many(
                "too_many_requests",
                format!("this token may make {} requests a second; wait", self.per_second),
                wait,
            )
        })
    }
}

type Shared = State<Arc<AppState>>;
type Answer = Result<Response, Problem>;

/// Every route. The `/v1`, `/log` and webhook routes are registered from their handlers'
/// `#[utoipa::path]` annotations, so the OpenAPI document served at `/openapi.json` lists
/// exactly the routes there are, with their bodies and answers.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let (routes, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(log_key))
        .routes(routes!(log_checkpoint))
        .routes(routes!(log_receipt))
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(create_programme))
        .routes(routes!(programme))
        .routes(routes!(register))
        .routes(routes!(beneficiary))
        .routes(routes!(erase))
        .routes(routes!(create_vendor))
        .routes(routes!(vendor))
        .routes(routes!(transfers))
        .routes(routes!(transfer))
        .routes(routes!(post_pending))
        .routes(routes!(void_pending))
        .routes(routes!(issue_voucher))
        .routes(routes!(voucher))
        .routes(routes!(revoke_voucher))
        .routes(routes!(request_redemption))
        .routes(routes!(authorise_redemption))
        .routes(routes!(refuse_redemption))
        .routes(routes!(settle))
        .routes(routes!(settlement))
        .routes(routes!(disburse))
        .routes(routes!(disbursement))
        .routes(routes!(balance))
        .routes(routes!(history))
        .routes(routes!(sms_twilio))
        .routes(routes!(sms_africastalking))
        .routes(routes!(ussd_africastalking))
        .routes(routes!(sms_kannel))
        .routes(routes!(sms_rapidpro, sms_rapidpro_get))
        .routes(routes!(sms_json))
        .split_for_parts();
    // A tile's path holds slashes: axum matches it with a wildcard, which OpenAPI has no
    // syntax for; the document describes it as one parameter.
    document.merge(TileDocument::openapi());
    let document: Arc<str> = document.to_json().unwrap_or_default().into();
    routes
        .route("/log/tile/{*path}", get(log_tile))
        .route(
            "/openapi.json",
            get(move || async move {
                ([(header::CONTENT_TYPE, "application/json")], document.to_string())
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), catch_up))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// On a database other servers write too, brings this one's ledger up to what they committed
/// before the request arrived, so that it reads and decides on that: a client may send its
/// next request to any server behind the load balancer. One read when nothing is new; nothing
/// on an embedded store.
async fn catch_up(
    State(state): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.agency.ledger().log().is_shared() {
        let agency = Arc::clone(&state.agency);
        if let Err(problem) = blocking(move || Ok(agency.ledger().sync()?)).await {
            return problem.into_response();
        }
    }
    next.run(request).await
}

#[derive(OpenApi)]
#[openapi(paths(log_tile))]
struct TileDocument;

/// Whether the server is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics (OpenMetrics text): requests, latency, group-commit sizes, log size.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text")))]
async fn metrics(State(state): Shared) -> Response {
    crate::metrics::response(&state.metrics, state.agency.ledger().log().size())
}

/// Runs blocking library work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work).await.map_err(Problem::internal)?
}

fn json_response(status: StatusCode, json: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The caller's token, if its role is one of `roles`.
fn authorise(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
) -> Result<TokenRecord, Problem> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is needed")
        })?;
    let record = state
        .store
        .token(token.trim())
        .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
    if let Some(limits) = &state.token_limits {
        limits.check(&record.principal)?;
    }
    if record.role != Role::Admin && !roles.contains(&record.role) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token's role may not do this",
        ));
    }
    Ok(record)
}

const READERS: &[Role] = &[Role::Operator, Role::Auditor, Role::Vendor];
const OPERATORS: &[Role] = &[Role::Operator];

/// Parses a JSON body, refusing unknown fields and wrong types.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request("invalid_json", e.to_string()))
}

fn id(text: &str, what: &str) -> Result<Id, Problem> {
    Id::parse(text).map_err(|e| Problem::bad_request("invalid_id", format!("{what}: {e}")))
}

fn currency(code: &str) -> Result<Currency, Problem> {
    Currency::parse(code).map_err(|e| Problem::bad_request("invalid_currency", e.to_string()))
}

fn amount(text: &str, currency: Currency) -> Result<Amount, Problem> {
    Amount::parse(text, currency).map_err(|e| Problem::bad_request("invalid_amount", e.to_string()))
}

fn money(amount: Amount) -> Money {
    Money::from(amount)
}

/// An answer's JSON.
fn to_json<T: serde::Serialize>(answer: &T) -> String {
    // Invariant: answers hold strings, numbers, booleans and lists: they always serialize.
    serde_json::to_string(answer).unwrap_or_default()
}

/// Minor units as a decimal string in `currency` (totals are kept as i128).
fn decimal(minor: i128, currency: Currency) -> String {
    Amount::from_minor_units(i64::try_from(minor).unwrap_or(i64::MAX), currency).to_decimal_string()
}

/// Who makes a write: the token, and the agency acting as its principal, so that the ledger
/// checks the token's role again and names the token in every entry the write causes.
struct Caller {
    token: TokenRecord,
    agency: Agency,
}

/// A write: authorised, answered again for a repeated `Idempotency-Key` (409 when the body
/// differs), otherwise done by `work` and remembered.
async fn write(
    state: Arc<AppState>,
    WriteRequest { uri, headers, body }: WriteRequest,
    roles: &'static [Role],
    work: impl FnOnce(Arc<AppState>, Caller, Bytes) -> Result<(StatusCode, String), Problem>
    + Send
    + 'static,
) -> Answer {
    let token = authorise(&state, &headers, roles)?;
    let principal = Id::parse(&token.principal).map_err(Problem::internal)?;
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let target = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.to_string());
    blocking(move || {
        // Answers are kept per token and request target: another caller's key, or the same
        // key on another route or resource, is another key.
        let scope = format!("{} {target}", token.principal);
        if let Some(key) = &key {
            if key.is_empty() || key.len() > 255 {
                return Err(Problem::bad_request("invalid_idempotency_key", "1 to 255 characters"));
            }
            if let Some((status, content_type, answer)) = state.store.answer(&scope, key, &body)? {
                let mut response = (status, answer).into_response();
                if let Ok(value) = HeaderValue::from_str(&content_type) {
                    response.headers_mut().insert(header::CONTENT_TYPE, value);
                }
                return Ok(response);
            }
        }
        let caller = Caller { agency: state.agency.acting_as(principal), token };
        let (status, value) = match work(Arc::clone(&state), caller, body.clone()) {
            Ok(done) => done,
            Err(problem) if problem.status.is_client_error() => {
                if let Some(key) = &key {
                    let answer = problem.body().into_bytes();
                    state.store.remember(
                        &scope,
                        key,
                        &body,
                        problem.status,
                        "application/problem+json",
                        &answer,
                    )?;
                }
                return Err(problem);
            }
            Err(problem) => return Err(problem),
        };
        if let Some(key) = &key {
            state.store.remember(
                &scope,
                key,
                &body,
                status,
                "application/json",
                value.as_bytes(),
            )?;
        }
        Ok(json_response(status, value))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The log, public.

/// The log's verifier key (a signed-note vkey string).
#[utoipa::path(
    get,
    path = "/log/key",
    tag = "log",
    responses((status = 200, description = "The verifier key", body = String, content_type = "text/plain"))
)]
async fn log_key(State(state): Shared) -> Response {
    let key = state.agency.ledger().log().verifier().to_vkey();
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{key}\n")).into_response()
}

/// The latest signed checkpoint (C2SP tlog-checkpoint).
#[utoipa::path(
    get,
    path = "/log/checkpoint",
    tag = "log",
    responses((status = 200, description = "The checkpoint", body = String, content_type = "text/plain"))
)]
async fn log_checkpoint(State(state): Shared) -> Response {
    let checkpoint = state.agency.ledger().log().checkpoint().to_bytes();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        checkpoint,
    )
        .into_response()
}

/// A tile or entry bundle in the C2SP tlog-tiles layout: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`; full tiles are immutable.
#[utoipa::path(
    get,
    path = "/log/tile/{path}",
    tag = "log",
    params(("path" = String, Path, description = "The tile's path under tile/ (it may hold slashes)")),
    responses((status = 200, description = "The tile", body = Vec<u8>, content_type = "application/octet-stream"), Problems)
)]
async fn log_tile(State(state): Shared, ApiPath(path): ApiPath<String>) -> Answer {
    blocking(move || {
        let (tile, entries) = sanad_tlog::tile::TileId::parse_path(&format!("tile/{path}"))
            .map_err(|e| Problem::not_found(e.to_string()))?;
        let log = state.agency.ledger().log();
        let size = log.checkpoint().checkpoint().size();
        // Tiles of the tree at the latest checkpoint, at the width they have in it or
        // narrower: a partial tile's first hashes never change, so a client that read an
        // older checkpoint still gets the tiles of its tree while the log grows.
        let current = sanad_tlog::tile::TileId::in_tree(tile.level, tile.index, size)
            .filter(|current| tile.width() <= current.width())
            .ok_or_else(|| {
                Problem::not_found("no such tile in the tree at the latest checkpoint")
            })?;
        let bytes = if entries {
            if tile.level != 0 {
                return Err(Problem::not_found("entry bundles are level 0"));
            }
            let start = tile.index * sanad_tlog::tile::TILE_WIDTH;
            let end = start + u64::from(tile.width());
            let mut bundle = Vec::new();
            log.for_each_entry(start, end, |_, entry| {
                sanad_tlog::tile::append_to_bundle(&mut bundle, entry)
                    .map_err(|e| sanad_log::Error::Corrupt(e.to_string()))
            })
            .map_err(Problem::internal)?;
            bundle
        } else {
            let hashes = log.read_tile(current).map_err(Problem::internal)?;
            let prefix = hashes
                .get(..usize::from(tile.width()))
                .ok_or_else(|| Problem::internal("a tile narrower than the tree says"))?;
            sanad_tlog::tile::tile_bytes(prefix)
        };
        let cache = if tile.is_full() { "public, max-age=31536000, immutable" } else { "no-cache" };
        Ok((
            [(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, cache)],
            bytes,
        )
            .into_response())
    })
    .await
}

/// A receipt for an entry: a c2sp.org/tlog-proof@v1 file against the latest checkpoint.
#[utoipa::path(
    get,
    path = "/log/receipt/{index}",
    tag = "log",
    params(("index" = u64, Path, description = "The entry's log index")),
    responses((status = 200, description = "The receipt", body = String, content_type = "text/plain"), Problems)
)]
async fn log_receipt(State(state): Shared, ApiPath(index): ApiPath<u64>) -> Answer {
    blocking(move || {
        let log = state.agency.ledger().log();
        if index >= log.size() {
            return Err(Problem::not_found(format!("no entry {index}")));
        }
        let receipt = log.receipt(index).map_err(Problem::internal)?;
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], receipt.to_text())
            .into_response())
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Tokens.

/// Create an API token (admin): a principal granted its role in the log.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    params(IdempotencyKey),
    responses((status = 201, description = "The token, shown once", body = TokenCreated), Problems),
    security(("bearer" = []))
)]
async fn create_token(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, &[], |state, caller, body| {
        let request: NewToken = parse(&body)?;
        let role = Role::parse(&request.role).ok_or_else(|| {
            Problem::bad_request("invalid_role", "admin, operator, vendor or auditor")
        })?;
        if request.name.is_empty() || request.name.len() > 100 {
            return Err(Problem::bad_request("invalid_name", "1 to 100 characters"));
        }
        let vendor = request.vendor.as_deref().map(|v| id(v, "vendor")).transpose()?;
        if let Some(vendor) =
            vendor.as_ref().filter(|v| caller.agency.ledger().account(v).is_none())
        {
            return Err(Problem::not_found(format!("vendor {vendor} not found")));
        }
        // Granted in the ledger first: a token that exists is always a logged principal.
        let principal = Store::new_principal();
        let log_index = caller.agency.grant_access(&principal, role, vendor.as_ref())?;
        let record = TokenRecord {
            principal: principal.as_str().to_owned(),
            name: request.name.clone(),
            role,
            vendor: request.vendor,
        };
        let token = state.store.create_token(&record).map_err(Problem::internal)?;
        Ok((
            StatusCode::CREATED,
            to_json(&TokenCreated {
                id: principal.as_str().to_owned(),
                name: request.name,
                role: request.role,
                token,
                log_index,
            }),
        ))
    })
    .await
}

/// Revoke a token (admin): logged, and it authenticates no more.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The token's public id (tok-…)"), IdempotencyKey),
    responses((status = 200, description = "Revoked", body = Done), Problems),
    security(("bearer" = []))
)]
async fn revoke_token(
    State(state): Shared,
    ApiPath(principal): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, &[], move |state, caller, _| {
        let principal = id(&principal, "token")?;
        if caller.agency.ledger().read(|ledger| ledger.principal(&principal).is_none()) {
            return Err(Problem::not_found(format!("token {principal} not found")));
        }
        let log_index = caller.agency.revoke_access(&principal)?;
        state.store.forget_token(&principal).map_err(Problem::internal)?;
        Ok((
            StatusCode::OK,
            to_json(&Done {
                id: principal.as_str().to_owned(),
                status: Some("revoked".into()),
                log_index,
            }),
        ))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Programmes.

fn plan(terms: NewTerms, currency: Currency) -> Result<sanad_engine::VoucherPlan, Problem> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let vendors = match terms.vendors.split_once(':') {
        None if terms.vendors == "enrolled" => sanad_ledger::Vendors::Enrolled,
        Some(("category", category)) => sanad_ledger::Vendors::Category(id(category, "category")?),
        _ => {
            return Err(Problem::bad_request(
                "invalid_terms",
                "vendors is `enrolled` or `category:CAT`",
            ));
        }
    };
    let items = terms
        .items
        .into_iter()
        .map(|item| {
            Ok(sanad_ledger::Item {
                id: id(&item.id, "item")?,
                name: item.name,
                unit: item.unit,
                quantity: item.quantity,
                unit_value: amount(&item.unit_value, currency)?,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok(sanad_engine::VoucherPlan {
        valid_from_ms: now_ms,
        valid_until_ms: now_ms.saturating_add(terms.valid_days.saturating_mul(86_400_000)),
        vendors,
        single_use: terms.single_use,
        partial: terms.partial,
        items,
        pin_attempts: terms.pin_attempts,
        lock_ms: terms.lock_minutes.saturating_mul(60_000),
    })
}

/// A programme kind's name, as in requests and log entries.
fn kind_name(kind: ProgrammeKind) -> String {
    match kind {
        ProgrammeKind::Cash => "cash",
        ProgrammeKind::ValueVoucher => "value_voucher",
        ProgrammeKind::CommodityVoucher => "commodity_voucher",
    }
    .to_owned()
}

fn programme_kind(text: &str) -> Result<ProgrammeKind, Problem> {
    match text {
        "cash" => Ok(ProgrammeKind::Cash),
        "value_voucher" => Ok(ProgrammeKind::ValueVoucher),
        "commodity_voucher" => Ok(ProgrammeKind::CommodityVoucher),
        _ => Err(Problem::bad_request("invalid_kind", "cash, value_voucher or commodity_voucher")),
    }
}

/// Create a programme with its budget (a logged issuance into its funding account).
#[utoipa::path(
    post,
    path = "/v1/programmes",
    tag = "programmes",
    request_body = NewProgramme,
    params(IdempotencyKey),
    responses((status = 201, description = "Created", body = Created), Problems),
    security(("bearer" = []))
)]
async fn create_programme(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, OPERATORS, |_, caller, body| {
        let request: NewProgramme = parse(&body)?;
        let currency = currency(&request.currency)?;
        let budget = amount(&request.budget, currency)?;
        let kind = programme_kind(&request.kind)?;
        let (programme, log_index) = match (kind, request.terms) {
            (ProgrammeKind::Cash, None) => {
                caller.agency.create_programme_logged(&request.name, kind, budget)?
            }
            (ProgrammeKind::Cash, Some(_)) => {
                return Err(Problem::bad_request(
                    "invalid_terms",
                    "a cash programme has no voucher terms",
                ));
            }
            (_, terms) => {
                let plan = plan(terms.unwrap_or_default(), currency)?;
                caller.agency.create_voucher_programme_logged(&request.name, kind, budget, &plan)?
            }
        };
        Ok((
            StatusCode::CREATED,
            to_json(&Created { id: programme.as_str().to_owned(), log_index }),
        ))
    })
    .await
}

/// A programme, with its balance and totals.
#[utoipa::path(
    get,
    path = "/v1/programmes/{id}",
    tag = "programmes",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The programme")),
    responses((status = 200, description = "The programme", body = ProgrammeView), Problems),
    security(("bearer" = []))
)]
async fn programme(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(programme): ApiPath<String>,
) -> Answer {
    authorise(&state, &headers, READERS)?;
    let programme = id(&programme, "programme")?;
    let value = state
        .agency
        .ledger()
        .read(|ledger| {
            let known = ledger.programme(&programme)?;
            let funding = ledger.account(&known.funding)?;
            let totals = ledger
                .programme_totals(&programme)
                .map(|(currency, totals)| ProgrammeTotals {
                    currency: currency.code().to_owned(),
                    transfers: totals.transfers,
                    moved: decimal(totals.moved_minor, currency),
                    reversals: totals.reversals,
                    reversed: decimal(totals.reversed_minor, currency),
                })
                .collect();
            let vouchers = ledger.voucher_totals(&programme).map(|t| {
                let minor = |value: i128| decimal(value, known.currency);
                VoucherTotals {
                    issued: t.issued,
                    issued_value: minor(t.issued_minor),
                    redemptions: t.redemptions,
                    redeemed: minor(t.redeemed_minor),
                    returned: minor(t.returned_minor),
                    settled: minor(t.settled_minor),
                    outstanding: minor(t.outstanding_minor()),
                }
            });
            Some(to_json(&ProgrammeView {
                id: programme.as_str().to_owned(),
                name: known.name.clone(),
                kind: kind_name(known.kind),
                currency: known.currency.code().to_owned(),
                funding: known.funding.as_str().to_owned(),
                balance: funding.balance().to_decimal_string(),
                available: funding.available().to_decimal_string(),
                totals,
                vouchers,
            }))
        })
        .ok_or_else(|| Problem::not_found(format!("programme {programme} not found")))?;
    Ok(json_response(StatusCode::OK, value))
}

// ---------------------------------------------------------------------------------------------
// Beneficiaries.

/// Register a beneficiary: personal data in the erasable registry, a pseudonym in the log.
#[utoipa::path(
    post,
    path = "/v1/beneficiaries",
    tag = "beneficiaries",
    request_body = NewBeneficiary,
    params(IdempotencyKey),
    responses((status = 201, description = "Registered", body = BeneficiaryCreated), Problems),
    security(("bearer" = []))
)]
async fn register(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, OPERATORS, |state, caller, body| {
        let request: NewBeneficiary = parse(&body)?;
        let currency = match (&request.programme, &request.currency) {
            (Some(programme), _) => {
                let programme = id(programme, "programme")?;
                state
                    .agency
                    .ledger()
                    .read(|ledger| ledger.programme(&programme).map(|p| p.currency))
                    .ok_or_else(|| Problem::not_found(format!("programme {programme} not found")))?
            }
            (None, Some(code)) => currency(code)?,
            (None, None) => {
                return Err(Problem::bad_request(
                    "currency_required",
                    "give a programme or a currency",
                ));
            }
        };
        let person = NewPerson {
            phone: request.phone,
            name: request.name,
            national_id: request.national_id,
            language: request.language,
            pin: request.pin.map(zeroize::Zeroizing::new),
        };
        let (beneficiary, log_index) = caller.agency.register_logged(&person, currency)?;
        let wallet = Agency::wallet_of(&beneficiary, currency);
        Ok((
            StatusCode::CREATED,
            to_json(&BeneficiaryCreated {
                id: beneficiary.as_str().to_owned(),
                wallet: wallet.as_str().to_owned(),
                log_index,
            }),
        ))
    })
    .await
}

/// A beneficiary and their wallets (personal data for operators only).
#[utoipa::path(
    get,
    path = "/v1/beneficiaries/{id}",
    tag = "beneficiaries",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The beneficiary's pseudonym")),
    responses((status = 200, description = "The beneficiary", body = BeneficiaryView), Problems),
    security(("bearer" = []))
)]
async fn beneficiary(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(person): ApiPath<String>,
) -> Answer {
    let token = authorise(&state, &headers, &[Role::Operator, Role::Auditor])?;
    let person = id(&person, "beneficiary")?;
    let Some(known) = state.agency.ledger().read(|ledger| ledger.beneficiary(&person).cloned())
    else {
        return Err(Problem::not_found(format!("beneficiary {person} not found")));
    };
    let wallets = state
        .agency
        .wallets(&person)
        .iter()
        .map(|wallet| WalletView {
            account: wallet.id().as_str().to_owned(),
            balance: money(wallet.balance()),
            available: money(wallet.available()),
        })
        .collect();
    let mut view = BeneficiaryView {
        id: person.as_str().to_owned(),
        erased: known.erased,
        wallets,
        phone: None,
        name: None,
        language: None,
    };
    // Personal data for those who work with people, never for auditors.
    if token.role != Role::Auditor {
        let registry = state.agency.registry();
        if let Some((record, _)) = registry.person(&person).map_err(Problem::from)? {
            view.phone = Some(record.phone);
            view.name = record.name;
            view.language = record.language;
        }
    }
    Ok(json_response(StatusCode::OK, to_json(&view)))
}

/// Erase a beneficiary's personal data (logged; open vouchers are revoked).
#[utoipa::path(
    delete,
    path = "/v1/beneficiaries/{id}/personal-data",
    tag = "beneficiaries",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The beneficiary's pseudonym"), IdempotencyKey),
    responses((status = 200, description = "Erased", body = Erased), Problems),
    security(("bearer" = []))
)]
async fn erase(
    State(state): Shared,
    ApiPath(person): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, OPERATORS, move |_, caller, _| {
        let person = id(&person, "beneficiary")?;
        let log_index = caller.agency.erase(&person)?;
        let erased = Erased { id: person.as_str().to_owned(), erased: true, log_index };
        Ok((StatusCode::OK, to_json(&erased)))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Vendors.

/// Open a vendor (shop) account, optionally enrolled in voucher programmes.
#[utoipa::path(
    post,
    path = "/v1/vendors",
    tag = "vendors",
    request_body = NewVendor,
    params(IdempotencyKey),
    responses((status = 201, description = "Created", body = Created), Problems),
    security(("bearer" = []))
)]
async fn create_vendor(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, OPERATORS, |state, caller, body| {
        let request: NewVendor = parse(&body)?;
        if request.name.trim().is_empty() || request.name.chars().count() > 200 {
            return Err(Problem::bad_request("invalid_name", "1 to 200 characters"));
        }
        let currency = currency(&request.currency)?;
        let categories =
            request.categories.iter().map(|c| id(c, "category")).collect::<Result<Vec<_>, _>>()?;
        let programmes =
            request.programmes.iter().map(|p| id(p, "programme")).collect::<Result<Vec<_>, _>>()?;
        let (vendor, log_index) = caller.agency.open_vendor_logged(
            currency,
            &categories,
            request.phone.as_deref(),
            &programmes,
        )?;
        state.store.set_vendor_name(&vendor, &request.name).map_err(Problem::internal)?;
        Ok((StatusCode::CREATED, to_json(&Created { id: vendor.as_str().to_owned(), log_index })))
    })
    .await
}

/// A vendor.
#[utoipa::path(
    get,
    path = "/v1/vendors/{id}",
    tag = "vendors",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The vendor's account")),
    responses((status = 200, description = "The vendor", body = VendorView), Problems),
    security(("bearer" = []))
)]
async fn vendor(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(vendor): ApiPath<String>,
) -> Answer {
    let token = authorise(&state, &headers, READERS)?;
    let vendor = id(&vendor, "vendor")?;
    if token.role == Role::Vendor && token.vendor.as_deref() != Some(vendor.as_str()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a vendor token reads its own vendor only",
        ));
    }
    let account = state
        .agency
        .ledger()
        .account(&vendor)
        .filter(|a| a.kind() == sanad_ledger::AccountKind::Vendor)
        .ok_or_else(|| Problem::not_found(format!("vendor {vendor} not found")))?;
    let categories: Vec<String> = state
        .agency
        .ledger()
        .read(|ledger| {
            ledger.vendor_categories(&vendor).map(|c| c.iter().map(|c| c.to_string()).collect())
        })
        .unwrap_or_default();
    let view = VendorView {
        id: vendor.as_str().to_owned(),
        name: state.store.vendor_name(&vendor),
        balance: money(account.balance()),
        available: money(account.available()),
        categories,
    };
    Ok(json_response(StatusCode::OK, to_json(&view)))
}

// ---------------------------------------------------------------------------------------------
// Transfers.

fn transfer_command(state: &AppState, request: NewTransfer) -> Result<Command, Problem> {
    let currency = currency(&request.currency)?;
    let amount = amount(&request.amount, currency)?;
    let from = id(&request.from, "from")?;
    let programme = match &request.programme {
        Some(programme) => id(programme, "programme")?,
        None => state
            .agency
            .ledger()
            .read(|ledger| {
                ledger
                    .programmes()
                    .find(|(_, p)| p.funding == from)
                    .map(|(programme, _)| programme.clone())
            })
            .ok_or_else(|| {
                Problem::bad_request("programme_required", "name the programme: `from` funds none")
            })?,
    };
    let (transfer, to) = (id(&request.id, "id")?, id(&request.to, "to")?);
    Ok(match request.hold_ms {
        None => Command::Transfer {
            id: transfer,
            from,
            to,
            amount,
            programme,
            actor: Actor::Operator,
            reference: request.reference,
        },
        Some(timeout_ms) => Command::Reserve {
            id: transfer,
            from,
            to,
            amount,
            programme,
            actor: Actor::Operator,
            reference: request.reference,
            timeout_ms,
        },
    })
}

fn transfer_result(
    id: String,
    result: Result<sanad_engine::Applied, sanad_ledger::Rejection>,
) -> TransferResult {
    match result {
        Ok(applied) => TransferResult {
            id,
            status: "applied".into(),
            log_index: applied.log_index,
            replayed: Some(applied.events.is_empty()),
            code: None,
            detail: None,
        },
        Err(rejection) => TransferResult {
            id,
            status: "rejected".into(),
            log_index: None,
            replayed: None,
            code: Some(rejection.code().to_owned()),
            detail: Some(rejection.to_string()),
        },
    }
}

/// One transfer, or an array of up to 8,190 applied in one group commit and answered item by item.
#[utoipa::path(
    post,
    path = "/v1/transfers",
    tag = "transfers",
    request_body = TransferRequest,
    params(IdempotencyKey),
    responses((status = 201, description = "One transfer made", body = TransferDone), (status = 200, description = "An array, answered item by item", body = TransferResults), Problems),
    security(("bearer" = []))
)]
async fn transfers(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, OPERATORS, |state, caller, body| {
        // An array or one object: told apart by the first byte, so that a bad item's error
        // names it in the form it was sent.
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            let requests: Vec<NewTransfer> = parse(&body)?;
            if requests.is_empty() || requests.len() > TRANSFERS_PER_REQUEST_MAX {
                return Err(Problem::bad_request(
                    "too_many_items",
                    "1 to 8,190 transfers per request",
                ));
            }
            let ids: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
            let commands = requests
                .into_iter()
                .map(|r| transfer_command(&state, r))
                .collect::<Result<Vec<_>, _>>()?;
            let results = caller.agency.calls().execute_each(commands)?;
            let results = ids
                .into_iter()
                .zip(results)
                .map(|(id, result)| transfer_result(id, result))
                .collect();
            return Ok((StatusCode::OK, to_json(&TransferResults { results })));
        }
        let request: NewTransfer = parse(&body)?;
        let transfer_id = request.id.clone();
        let command = transfer_command(&state, request)?;
        let applied = caller.agency.calls().execute(command)??;
        let done = TransferDone {
            id: transfer_id,
            log_index: applied.log_index,
            replayed: applied.events.is_empty(),
        };
        Ok((StatusCode::CREATED, to_json(&done)))
    })
    .await
}

fn event_json(event: &Event) -> Value {
    serde_json::from_slice(&event.to_entry()).unwrap_or(Value::Null)
}

/// A transfer as the log has it.
#[utoipa::path(
    get,
    path = "/v1/transfers/{id}",
    tag = "transfers",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The transfer")),
    responses((status = 200, description = "The transfer", body = TransferView), Problems),
    security(("bearer" = []))
)]
async fn transfer(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(transfer): ApiPath<String>,
) -> Answer {
    authorise(&state, &headers, &[Role::Operator, Role::Auditor])?;
    let transfer = id(&transfer, "transfer")?;
    let agency = Arc::clone(&state.agency);
    let found = blocking(move || {
        agency.ledger().transfer(&transfer).map_err(Problem::from).map(|f| (transfer, f))
    })
    .await?;
    let (transfer, Some((log_index, event))) = found else {
        return Err(Problem::not_found("no such transfer"));
    };
    let pending = state
        .agency
        .ledger()
        .read(|ledger| ledger.pending(&transfer).map(|p| format!("{:?}", p.state).to_lowercase()));
    Ok(json_response(
        StatusCode::OK,
        to_json(&TransferView {
            id: transfer.as_str().to_owned(),
            log_index,
            entry: event_json(&event),
            hold: pending,
        }),
    ))
}

fn operation_id(given: Option<&str>, pending: &Id, suffix: &str) -> Result<Id, Problem> {
    match given {
        Some(given) => id(given, "id"),
        None => {
            use sha2::Digest as _;
            let hash = sha2::Sha256::digest(format!("{pending}:{suffix}").as_bytes());
            let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
            id(&format!("{suffix}-{hex}"), "id")
        }
    }
}

/// Post a hold (all or part of it).
#[utoipa::path(
    post,
    path = "/v1/transfers/{id}/post",
    tag = "transfers",
    request_body = Option<Operation>,
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The hold"), IdempotencyKey),
    responses((status = 200, description = "Posted", body = Done), Problems),
    security(("bearer" = []))
)]
async fn post_pending(
    State(state): Shared,
    ApiPath(pending): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, OPERATORS, move |state, caller, body| {
        let request: Operation = if body.is_empty() { Operation::default() } else { parse(&body)? };
        let pending = id(&pending, "transfer")?;
        let currency = state
            .agency
            .ledger()
            .read(|ledger| ledger.pending(&pending).map(|p| p.record.amount.currency()))
            .ok_or_else(|| Problem::not_found(format!("pending transfer {pending} not found")))?;
        let amount = request.amount.as_deref().map(|a| amount(a, currency)).transpose()?;
        let op = operation_id(request.id.as_deref(), &pending, "post")?;
        let applied = caller.agency.calls().execute(Command::PostPending {
            id: op.clone(),
            pending,
            amount,
        })??;
        let done = Done { id: op.as_str().to_owned(), status: None, log_index: applied.log_index };
        Ok((StatusCode::OK, to_json(&done)))
    })
    .await
}

/// Void a hold.
#[utoipa::path(
    post,
    path = "/v1/transfers/{id}/void",
    tag = "transfers",
    request_body = Option<Operation>,
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The hold"), IdempotencyKey),
    responses((status = 200, description = "Voided", body = Done), Problems),
    security(("bearer" = []))
)]
async fn void_pending(
    State(state): Shared,
    ApiPath(pending): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, OPERATORS, move |_, caller, body| {
        let request: Operation = if body.is_empty() { Operation::default() } else { parse(&body)? };
        if request.amount.is_some() {
            return Err(Problem::bad_request("invalid_json", "a void takes no amount"));
        }
        let pending = id(&pending, "transfer")?;
        let op = operation_id(request.id.as_deref(), &pending, "void")?;
        let applied =
            caller.agency.calls().execute(Command::VoidPending { id: op.clone(), pending })??;
        let done = Done { id: op.as_str().to_owned(), status: None, log_index: applied.log_index };
        Ok((StatusCode::OK, to_json(&done)))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Vouchers, redemptions, settlements.

fn items(list: &[ItemAmount]) -> Result<Vec<sanad_ledger::ItemQuantity>, Problem> {
    list.iter()
        .map(|i| {
            Ok(sanad_ledger::ItemQuantity { item: id(&i.item, "item")?, quantity: i.quantity })
        })
        .collect()
}

fn programme_currency(state: &AppState, programme: &Id) -> Result<Currency, Problem> {
    state
        .agency
        .ledger()
        .read(|ledger| ledger.programme(programme).map(|p| p.currency))
        .ok_or_else(|| Problem::not_found(format!("programme {programme} not found")))
}

/// Issue a voucher: its value moves from the programme to escrow; the code never enters the log.
#[utoipa::path(
    post,
    path = "/v1/vouchers",
    tag = "vouchers",
    request_body = NewVoucher,
    params(IdempotencyKey),
    responses((status = 201, description = "Issued", body = VoucherIssued), Problems),
    security(("bearer" = []))
)]
async fn issue_voucher(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, OPERATORS, |state, caller, body| {
        let request: NewVoucher = parse(&body)?;
        let programme = id(&request.programme, "programme")?;
        let currency = programme_currency(&state, &programme)?;
        let value = request.value.as_deref().map(|v| amount(v, currency)).transpose()?;
        let beneficiary = id(&request.beneficiary, "beneficiary")?;
        let issued =
            caller.agency.issue_voucher(&programme, &beneficiary, value, items(&request.items)?)?;
        Ok((
            StatusCode::CREATED,
            to_json(&VoucherIssued {
                id: issued.id.as_str().to_owned(),
                code: issued.code.letters(),
                code_digits: issued.code.digits(),
                log_index: issued.log_index,
            }),
        ))
    })
    .await
}

/// The voucher a code in a path names (operators only: a code is a bearer secret).
fn voucher_of_code(state: &AppState, code: &str) -> Result<Id, Problem> {
    let code = sanad_ledger::VoucherCode::parse(code).map_err(sanad_engine::Error::from)?;
    state.agency.registry().voucher_by_code(code)?.ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "voucher_not_found", "no voucher has this code")
    })
}

/// A voucher, by its code (operators only: a code is a bearer secret).
#[utoipa::path(
    get,
    path = "/v1/vouchers/{code}",
    tag = "vouchers",
    params(("code" = String, Path, description = "The voucher code, letters or digits")),
    responses((status = 200, description = "The voucher", body = VoucherView), Problems),
    security(("bearer" = []))
)]
async fn voucher(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> Answer {
    authorise(&state, &headers, OPERATORS)?;
    let voucher = voucher_of_code(&state, &code)?;
    let value = state
        .agency
        .ledger()
        .read(|ledger| {
            let known = ledger.voucher(&voucher)?;
            let items = known
                .items
                .iter()
                .map(|i| VoucherItem {
                    item: i.item.as_str().to_owned(),
                    issued: i.issued,
                    redeemed: i.redeemed,
                    held: i.held,
                })
                .collect();
            Some(to_json(&VoucherView {
                id: voucher.as_str().to_owned(),
                programme: known.programme.as_str().to_owned(),
                beneficiary: known.beneficiary.as_str().to_owned(),
                value: money(known.value),
                available: money(known.available()),
                held: money(known.held()),
                redeemed: money(known.redeemed()),
                returned: money(known.returned()),
                items,
                expires_at_ms: known.expires_at_ms,
                locked_until_ms: known.locked_until_ms,
                closed: known.closed.map(|reason| format!("{reason:?}").to_lowercase()),
            }))
        })
        .ok_or_else(|| Problem::not_found("voucher not found"))?;
    Ok(json_response(StatusCode::OK, value))
}

/// Revoke a voucher: what it holds returns to the programme.
#[utoipa::path(
    post,
    path = "/v1/vouchers/{code}/revoke",
    tag = "vouchers",
    params(("code" = String, Path, description = "The voucher code"), IdempotencyKey),
    responses((status = 200, description = "Revoked", body = Done), Problems),
    security(("bearer" = []))
)]
async fn revoke_voucher(
    State(state): Shared,
    ApiPath(code): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, OPERATORS, move |state, caller, _| {
        let voucher = voucher_of_code(&state, &code)?;
        let log_index = caller.agency.revoke_voucher(&voucher)?;
        let done =
            Done { id: voucher.as_str().to_owned(), status: Some("revoked".into()), log_index };
        Ok((StatusCode::OK, to_json(&done)))
    })
    .await
}

const SHOPS: &[Role] = &[Role::Operator, Role::Vendor];

/// A vendor token acts for its own vendor only.
fn own_vendor(token: &TokenRecord, vendor: &Id) -> Result<(), Problem> {
    if token.role == Role::Vendor && token.vendor.as_deref() != Some(vendor.as_str()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a vendor token acts for its own vendor only",
        ));
    }
    Ok(())
}

/// A vendor asks to redeem a voucher: the amount or items are held until the beneficiary authorises.
#[utoipa::path(
    post,
    path = "/v1/redemptions",
    tag = "redemptions",
    request_body = NewRedemption,
    params(IdempotencyKey),
    responses((status = 201, description = "Waiting for the beneficiary", body = RedemptionCreated), Problems),
    security(("bearer" = []))
)]
async fn request_redemption(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, SHOPS, |state, caller, body| {
        let request: NewRedemption = parse(&body)?;
        let vendor = id(&request.vendor, "vendor")?;
        own_vendor(&caller.token, &vendor)?;
        let currency = state
            .agency
            .ledger()
            .account(&vendor)
            .map(|a| a.currency())
            .ok_or_else(|| Problem::not_found(format!("vendor {vendor} not found")))?;
        let value = request.amount.as_deref().map(|a| amount(a, currency)).transpose()?;
        let redemption = request.id.as_deref().map(|r| id(r, "id")).transpose()?;
        let asked = caller.agency.request_redemption(
            &request.code,
            &vendor,
            value,
            items(&request.items)?,
            redemption,
        )?;
        Ok((
            StatusCode::CREATED,
            to_json(&RedemptionCreated {
                id: asked.id.as_str().to_owned(),
                voucher: asked.voucher.as_str().to_owned(),
                amount: money(asked.amount),
                log_index: asked.log_index,
            }),
        ))
    })
    .await
}

/// The vendor of a redemption, for a vendor token's check.
fn redemption_vendor(state: &AppState, redemption: &Id) -> Result<Id, Problem> {
    state
        .agency
        .ledger()
        .read(|ledger| ledger.redemption(redemption).map(|r| r.vendor.clone()))
        .ok_or_else(|| Problem::not_found(format!("redemption {redemption} not found")))
}

/// Authorise a redemption with the beneficiary's PIN: the vendor is paid.
#[utoipa::path(
    post,
    path = "/v1/redemptions/{id}/authorise",
    tag = "redemptions",
    request_body = Pin,
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The redemption"), IdempotencyKey),
    responses((status = 200, description = "Authorised", body = Done), Problems),
    security(("bearer" = []))
)]
async fn authorise_redemption(
    State(state): Shared,
    ApiPath(redemption): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, SHOPS, move |state, caller, body| {
        let request: Pin = parse(&body)?;
        let redemption = id(&redemption, "redemption")?;
        own_vendor(&caller.token, &redemption_vendor(&state, &redemption)?)?;
        let log_index = caller.agency.authorise_with_pin(&redemption, &request.pin)?;
        Ok((
            StatusCode::OK,
            to_json(&Done {
                id: redemption.as_str().to_owned(),
                status: Some("authorised".into()),
                log_index,
            }),
        ))
    })
    .await
}

/// Refuse (or withdraw) a redemption: the hold is released.
#[utoipa::path(
    post,
    path = "/v1/redemptions/{id}/refuse",
    tag = "redemptions",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The redemption"), IdempotencyKey),
    responses((status = 200, description = "Refused", body = Done), Problems),
    security(("bearer" = []))
)]
async fn refuse_redemption(
    State(state): Shared,
    ApiPath(redemption): ApiPath<String>,
    request: WriteRequest,
) -> Answer {
    write(state, request, SHOPS, move |state, caller, _| {
        let redemption = id(&redemption, "redemption")?;
        own_vendor(&caller.token, &redemption_vendor(&state, &redemption)?)?;
        let log_index = caller.agency.refuse_redemption(&redemption)?;
        Ok((
            StatusCode::OK,
            to_json(&Done {
                id: redemption.as_str().to_owned(),
                status: Some("refused".into()),
                log_index,
            }),
        ))
    })
    .await
}

/// Pay every vendor of a programme what it redeemed since its last settlement (a run pays nothing twice).
#[utoipa::path(
    post,
    path = "/v1/settlements",
    tag = "settlements",
    request_body = NewSettlement,
    params(IdempotencyKey),
    responses((status = 201, description = "The run", body = SettlementRun), Problems),
    security(("bearer" = []))
)]
async fn settle(State(state): Shared, request: WriteRequest) -> Answer {
    write(state, request, OPERATORS, |_, caller, body| {
        let request: NewSettlement = parse(&body)?;
        let programme = id(&request.programme, "programme")?;
        let run = caller.agency.settle(&programme, request.run.as_deref())?;
        let vendors = run
            .vendors
            .iter()
            .map(|v| VendorSettled {
                vendor: v.vendor.as_str().to_owned(),
                settlement: v.settlement.as_str().to_owned(),
                amount: money(v.amount),
                redemptions: v.redemptions,
                log_index: v.log_index,
            })
            .collect();
        Ok((StatusCode::CREATED, to_json(&SettlementRun { run: run.run, vendors })))
    })
    .await
}

/// A vendor's settlement; its statement as CSV with `Accept: text/csv`.
#[utoipa::path(
    get,
    path = "/v1/settlements/{id}",
    tag = "settlements",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The settlement")),
    responses((status = 200, description = "The settlement (JSON), or its statement (text/csv)", content((SettlementView = "application/json"), (String = "text/csv"))), Problems),
    security(("bearer" = []))
)]
async fn settlement(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(settlement): ApiPath<String>,
) -> Answer {
    authorise(&state, &headers, &[Role::Operator, Role::Auditor])?;
    let settlement = id(&settlement, "settlement")?;
    let record = state
        .agency
        .ledger()
        .read(|ledger| ledger.settlement(&settlement).cloned())
        .ok_or_else(|| Problem::not_found(format!("settlement {settlement} not found")))?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"));
    if wants_csv {
        let agency = Arc::clone(&state.agency);
        let csv = blocking(move || agency.settlement_statement(&settlement).map_err(Problem::from))
            .await?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response());
    }
    Ok(json_response(
        StatusCode::OK,
        to_json(&SettlementView {
            id: settlement.as_str().to_owned(),
            programme: record.programme.as_str().to_owned(),
            vendor: record.vendor.as_str().to_owned(),
            to: record.to.as_str().to_owned(),
            amount: money(record.amount),
            redemptions: record.redemptions,
            since_index: record.since_index,
            log_index: record.index,
        }),
    ))
}

/// Pay a tranche from a CSV file (header: phone, amount; optional name, national_id, language, reference, currency). The same file is the same run: re-sending it pays nothing twice.
#[utoipa::path(
    post,
    path = "/v1/disbursements",
    tag = "disbursements",
    request_body(content = String, content_type = "text/csv", description = "The disbursement file"),
    params(DisburseQuery, IdempotencyKey),
    responses((status = 201, description = "Paid", body = DisbursementReport), Problems),
    security(("bearer" = []))
)]
async fn disburse(
    State(state): Shared,
    ApiQuery(query): ApiQuery<DisburseQuery>,
    request: WriteRequest,
) -> Answer {
    let is_csv = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/csv"));
    if !is_csv {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as text/csv",
        ));
    }
    write(state, request, OPERATORS, move |state, caller, body| {
        let programme = id(&query.programme, "programme")?;
        let options = sanad_engine::disburse::DisburseOptions {
            register: query.register,
            skip_invalid: query.skip_invalid,
        };
        let report = sanad_engine::disburse::disburse(
            &caller.agency,
            &programme,
            &body,
            options,
            &mut |_, _| {},
        )?;
        let value = report_json(&report);
        state.store.remember_report(&report.run, &value).map_err(Problem::internal)?;
        // Refused as a whole, nothing paid: a problem document, with the report in it.
        match &report.refusal {
            Some(refusal) => Err(Problem::disbursement_refused(refusal, value)),
            None => Ok((StatusCode::CREATED, value)),
        }
    })
    .await
}

fn report_json(report: &sanad_engine::disburse::Report) -> String {
    let count = |n: usize| n as u64;
    to_json(&DisbursementReport {
        id: report.run.clone(),
        rows: count(report.rows),
        paid: count(report.paid),
        already_paid: count(report.already_paid),
        registered: count(report.registered),
        rejected: report
            .rejected
            .iter()
            .map(|p| RejectedRow { line: p.line, reason: p.reason.clone() })
            .collect(),
        paid_totals: report.paid_totals.values().map(|a| money(*a)).collect(),
        refusal: report.refusal.clone(),
    })
}

/// A disbursement run's latest report.
#[utoipa::path(
    get,
    path = "/v1/disbursements/{id}",
    tag = "disbursements",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The run")),
    responses((status = 200, description = "The report", body = DisbursementReport), Problems),
    security(("bearer" = []))
)]
async fn disbursement(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(run): ApiPath<String>,
) -> Answer {
    authorise(&state, &headers, &[Role::Operator, Role::Auditor])?;
    let value = state
        .store
        .report(&run)
        .ok_or_else(|| Problem::not_found(format!("disbursement {run} not found")))?;
    Ok(json_response(StatusCode::OK, value))
}

// ---------------------------------------------------------------------------------------------
// Accounts.

/// An account's balance.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/balance",
    tag = "accounts",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The account")),
    responses((status = 200, description = "The balance", body = BalanceView), Problems),
    security(("bearer" = []))
)]
async fn balance(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(account): ApiPath<String>,
) -> Answer {
    let token = authorise(&state, &headers, READERS)?;
    let account = id(&account, "account")?;
    if token.role == Role::Vendor && token.vendor.as_deref() != Some(account.as_str()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a vendor token reads its own account only",
        ));
    }
    let known = state
        .agency
        .ledger()
        .account(&account)
        .ok_or_else(|| Problem::not_found(format!("account {account} not found")))?;
    Ok(json_response(
        StatusCode::OK,
        to_json(&BalanceView {
            account: account.as_str().to_owned(),
            currency: known.currency().code().to_owned(),
            balance: known.balance().to_decimal_string(),
            available: known.available().to_decimal_string(),
            frozen: known.is_frozen(),
            closed: known.is_closed(),
        }),
    ))
}

/// An account's history, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/history",
    tag = "accounts",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "The account"), Page),
    responses((status = 200, description = "A page", body = HistoryPage), Problems),
    security(("bearer" = []))
)]
async fn history(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(account): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Answer {
    let token = authorise(&state, &headers, READERS)?;
    let account = id(&account, "account")?;
    if token.role == Role::Vendor && token.vendor.as_deref() != Some(account.as_str()) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a vendor token reads its own account only",
        ));
    }
    if state.agency.ledger().account(&account).is_none() {
        return Err(Problem::not_found(format!("account {account} not found")));
    }
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let agency = Arc::clone(&state.agency);
    let found = blocking(move || {
        agency.ledger().history(&account, page.cursor, limit).map_err(Problem::from)
    })
    .await?;
    let items = found
        .items
        .iter()
        .map(|(index, event)| HistoryItem { log_index: *index, entry: event_json(event) })
        .collect();
    Ok(json_response(StatusCode::OK, to_json(&HistoryPage { items, next: found.next })))
}

// ---------------------------------------------------------------------------------------------
// SMS and USSD webhooks: authenticated by the gateways' own schemes, not by API tokens.

fn gateway_problem(error: &sanad_sms::gateway::GatewayError) -> Problem {
    use sanad_sms::gateway::GatewayError as G;
    match error {
        G::Unauthenticated => {
            Problem::new(StatusCode::FORBIDDEN, "unauthenticated", error.to_string())
        }
        G::Malformed(_) => Problem::bad_request("malformed", error.to_string()),
        G::TooLarge => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", error.to_string()),
    }
}

fn secret(configured: Option<&String>) -> Result<Vec<u8>, Problem> {
    configured.map(|s| s.as_bytes().to_vec()).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "gateway_not_configured",
            "this gateway has no secret configured",
        )
    })
}

/// The public URL of a request, as the gateway was configured with it.
fn public_url(state: &AppState, path_and_query: &str) -> String {
    format!("{}{path_and_query}", state.public_url)
}

fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

fn sms_answer(outcome: sanad_sms::Outcome) -> SmsAnswer {
    let notices = outcome
        .notices
        .into_iter()
        .map(|notice| Notice { to: notice.to, text: notice.text })
        .collect();
    SmsAnswer { reply: outcome.reply, notices, replayed: outcome.replayed }
}

async fn handle_sms(
    state: Arc<AppState>,
    inbound: sanad_sms::gateway::Inbound,
) -> Result<sanad_sms::Outcome, Problem> {
    blocking(move || state.channel.handle(&inbound).map_err(Problem::internal)).await
}

/// Twilio's SMS webhook (X-Twilio-Signature over the public URL); answers TwiML.
#[utoipa::path(
    post,
    path = "/v1/sms/twilio",
    tag = "gateways",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "TwiML", body = String, content_type = "text/xml"), Problems)
)]
async fn sms_twilio(
    State(state): Shared,
    uri: axum::http::Uri,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Answer {
    use sanad_sms::gateway::twilio;
    let token = secret(state.secrets.twilio.as_ref())?;
    let url = public_url(&state, &path_and_query(&uri));
    let signature = headers.get(twilio::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let inbound = twilio::parse(&token, &url, signature, &body).map_err(|e| gateway_problem(&e))?;
    let outcome = handle_sms(state, inbound).await?;
    Ok(([(header::CONTENT_TYPE, twilio::REPLY_CONTENT_TYPE)], twilio::reply(Some(&outcome.reply)))
        .into_response())
}

/// Africa's Talking SMS callback (secret in the URL); the reply and notices go to the integrator's sender.
#[utoipa::path(
    post,
    path = "/v1/sms/africastalking",
    tag = "gateways",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The reply and notices", body = SmsAnswer), Problems)
)]
async fn sms_africastalking(
    State(state): Shared,
    uri: axum::http::Uri,
    ApiBody(body): ApiBody,
) -> Answer {
    let secret = secret(state.secrets.africastalking.as_ref())?;
    let url = public_url(&state, &path_and_query(&uri));
    let inbound = sanad_sms::gateway::africastalking::parse_sms(&secret, &url, &body)
        .map_err(|e| gateway_problem(&e))?;
    let outcome = handle_sms(state, inbound).await?;
    // AT takes replies through its API: the integrator's sender sends `reply` and `notices`.
    Ok(json_response(StatusCode::OK, to_json(&sms_answer(outcome))))
}

/// Africa's Talking USSD callback; answers `CON …` or `END …`.
#[utoipa::path(
    post,
    path = "/v1/ussd/africastalking",
    tag = "gateways",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The reply in the gateway's format", body = String, content_type = "text/plain"), Problems)
)]
async fn ussd_africastalking(
    State(state): Shared,
    uri: axum::http::Uri,
    ApiBody(body): ApiBody,
) -> Answer {
    use sanad_sms::gateway::africastalking;
    let secret = secret(state.secrets.africastalking.as_ref())?;
    let url = public_url(&state, &path_and_query(&uri));
    let step = africastalking::parse_ussd(&secret, &url, &body).map_err(|e| gateway_problem(&e))?;
    let answer = blocking(move || state.channel.ussd(&step).map_err(Problem::internal)).await?;
    Ok((
        [(header::CONTENT_TYPE, africastalking::USSD_CONTENT_TYPE)],
        africastalking::ussd_reply(&answer.screen, answer.end),
    )
        .into_response())
}

/// Kannel's get-url (shared secret in the query); answers the reply text.
#[utoipa::path(
    get,
    path = "/v1/sms/kannel",
    tag = "gateways",
    responses((status = 200, description = "The reply in the gateway's format", body = String, content_type = "text/plain"), Problems)
)]
async fn sms_kannel(State(state): Shared, uri: axum::http::Uri) -> Answer {
    use sanad_sms::gateway::kannel;
    let secret = secret(state.secrets.kannel.as_ref())?;
    let inbound =
        kannel::parse(&secret, uri.query().unwrap_or_default()).map_err(|e| gateway_problem(&e))?;
    let outcome = handle_sms(state, inbound).await?;
    Ok(([(header::CONTENT_TYPE, kannel::REPLY_CONTENT_TYPE)], outcome.reply).into_response())
}

/// RapidPro external channel (POST form).
#[utoipa::path(
    post,
    path = "/v1/sms/rapidpro",
    tag = "gateways",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The reply in the gateway's format", body = String, content_type = "text/plain"), Problems)
)]
async fn sms_rapidpro(
    State(state): Shared,
    uri: axum::http::Uri,
    ApiBody(body): ApiBody,
) -> Answer {
    let secret = secret(state.secrets.rapidpro.as_ref())?;
    let url = public_url(&state, &path_and_query(&uri));
    let inbound = sanad_sms::gateway::rapidpro::parse(&secret, &url, &body)
        .map_err(|e| gateway_problem(&e))?;
    let outcome = handle_sms(state, inbound).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], outcome.reply).into_response())
}

/// RapidPro external channel (GET).
#[utoipa::path(
    get,
    path = "/v1/sms/rapidpro",
    tag = "gateways",
    responses((status = 200, description = "The reply in the gateway's format", body = String, content_type = "text/plain"), Problems)
)]
async fn sms_rapidpro_get(state: Shared, uri: axum::http::Uri) -> Answer {
    sms_rapidpro(state, uri, ApiBody(Bytes::new())).await
}

/// Any gateway: a JSON message signed with HMAC-SHA256 in X-Sanad-Signature.
#[utoipa::path(
    post,
    path = "/v1/sms/json",
    tag = "gateways",
    request_body(content = JsonMessage, content_type = "application/json"),
    responses((status = 200, description = "The reply and notices", body = SmsAnswer), Problems)
)]
async fn sms_json(State(state): Shared, headers: HeaderMap, ApiBody(body): ApiBody) -> Answer {
    use sanad_sms::gateway::json as signed;
    let secret = secret(state.secrets.json.as_ref())?;
    let signature = headers.get(signed::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let inbound = signed::parse(&secret, signature, &body).map_err(|e| gateway_problem(&e))?;
    let outcome = handle_sms(state, inbound).await?;
    Ok(json_response(StatusCode::OK, to_json(&sms_answer(outcome))))
}
