//! The JSON API's bodies, requests and answers, as types: what handlers read and write, and
//! what the OpenAPI document at `/openapi.json` describes (utoipa derives it from these types
//! and from the handlers' `#[utoipa::path]` annotations, so the document follows the code).
//! Amounts travel as decimal strings at the currency's minor units (`"12.500"`), never as JSON
//! numbers; every write is answered with the `log_index` of its entry (`null` for a retry that
//! changed nothing).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

// ---------------------------------------------------------------------------------------------
// Requests.

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    pub(crate) name: String,
    pub(crate) role: String,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) vendor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProgramme {
    pub(crate) name: String,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub(crate) currency: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub(crate) budget: String,
    pub(crate) kind: String,
    /// Voucher programmes: their terms (defaults as `sanad programme create`).
    #[serde(default)]
    pub(crate) terms: Option<NewTerms>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTerms {
    #[serde(default = "default_valid_days")]
    pub(crate) valid_days: u64,
    /// `enrolled` or `category:CAT`.
    #[serde(default = "default_vendors")]
    pub(crate) vendors: String,
    #[serde(default)]
    pub(crate) single_use: bool,
    #[serde(default = "default_true")]
    pub(crate) partial: bool,
    #[serde(default)]
    pub(crate) items: Vec<NewItem>,
    #[serde(default = "default_pin_attempts")]
    pub(crate) pin_attempts: u8,
    #[serde(default = "default_lock_minutes")]
    pub(crate) lock_minutes: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewItem {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) quantity: u32,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub(crate) unit_value: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBeneficiary {
    pub(crate) phone: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) national_id: Option<String>,
    #[serde(default)]
    pub(crate) language: Option<String>,
    #[serde(default)]
    pub(crate) pin: Option<String>,
    /// The programme whose currency the wallet is opened in.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) programme: Option<String>,
    /// Or the currency itself.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub(crate) currency: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewVendor {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) phone: Option<String>,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub(crate) currency: String,
    #[serde(default)]
    pub(crate) categories: Vec<String>,
    /// Voucher programmes to enrol it in (value programmes: no prices).
    #[serde(default)]
    pub(crate) programmes: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTransfer {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) id: String,
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) from: String,
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) to: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub(crate) amount: String,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub(crate) currency: String,
    /// The programme the money belongs to; by default the one `from` funds.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) programme: Option<String>,
    #[serde(default)]
    pub(crate) reference: Option<String>,
    /// A hold, posted or voided later, lapsing after this many ms.
    #[serde(default)]
    pub(crate) hold_ms: Option<u64>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Operation {
    /// This operation's own id (by default derived from the hold's).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) id: Option<String>,
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub(crate) amount: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemAmount {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) item: String,
    pub(crate) quantity: u32,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewVoucher {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) programme: String,
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) beneficiary: String,
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) items: Vec<ItemAmount>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRedemption {
    pub(crate) code: String,
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) vendor: String,
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub(crate) amount: Option<String>,
    #[serde(default)]
    pub(crate) items: Vec<ItemAmount>,
    /// The redemption's id, for retries (by default a new one).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pin {
    pub(crate) pin: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSettlement {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) programme: String,
    #[serde(default)]
    pub(crate) run: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DisburseQuery {
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub(crate) programme: String,
    #[serde(default)]
    pub(crate) register: bool,
    #[serde(default)]
    pub(crate) skip_invalid: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    #[serde(default)]
    pub(crate) cursor: Option<u64>,
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

impl Default for NewTerms {
    fn default() -> Self {
        Self {
            valid_days: default_valid_days(),
            vendors: default_vendors(),
            single_use: false,
            partial: true,
            items: Vec::new(),
            pin_attempts: default_pin_attempts(),
            lock_minutes: default_lock_minutes(),
        }
    }
}

pub(crate) fn default_valid_days() -> u64 {
    90
}

pub(crate) fn default_vendors() -> String {
    "enrolled".into()
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn default_pin_attempts() -> u8 {
    3
}

pub(crate) fn default_lock_minutes() -> u64 {
    30
}

/// The header every write takes, described once for the document.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IdempotencyKey {
    /// Same key and body: the stored answer again; same key, another body: 409. A key belongs
    /// to the token and the request target (path and query) it was used with.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// `POST /v1/transfers`: one transfer, or an array of up to 8,190. The handler tells the two
/// forms apart before reading either, so that a bad item gets a precise error.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum TransferRequest {
    One(NewTransfer),
    Many(Vec<NewTransfer>),
}

/// `POST /v1/sms/json`: a message from any gateway, signed with HMAC-SHA256 of the raw body in
/// `X-Sanad-Signature: sha256=<hex>` (read by `sanad_sms::gateway::json`; this type describes
/// it).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct JsonMessage {
    /// The gateway's message id: a message is handled once per id.
    id: String,
    /// The sender's phone number.
    from: String,
    /// The number it was sent to.
    to: Option<String>,
    /// What the person typed.
    text: String,
}

// ---------------------------------------------------------------------------------------------
// Answers.

/// An amount and its currency.
#[derive(Serialize, ToSchema)]
pub(crate) struct Money {
    /// A decimal string at the currency's minor units.
    #[schema(example = "12.500")]
    pub(crate) amount: String,
    /// ISO 4217.
    #[schema(example = "JOD")]
    pub(crate) currency: String,
}

impl From<sanad_money::Amount> for Money {
    fn from(amount: sanad_money::Amount) -> Self {
        Self { amount: amount.to_decimal_string(), currency: amount.currency().code().to_owned() }
    }
}

/// Something created: its id and the log index of its entry.
#[derive(Serialize, ToSchema)]
pub(crate) struct Created {
    pub(crate) id: String,
    pub(crate) log_index: Option<u64>,
}

/// A step on something that exists (posted, voided, authorised, refused, revoked).
#[derive(Serialize, ToSchema)]
pub(crate) struct Done {
    pub(crate) id: String,
    /// What it is now, where the route has more than one outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<String>,
    pub(crate) log_index: Option<u64>,
}

/// A new API token: shown once, stored hashed.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenCreated {
    /// The token's public id: the principal named in the log by every entry it causes.
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    /// The bearer token itself.
    pub(crate) token: String,
    /// The `principal.granted` entry.
    pub(crate) log_index: Option<u64>,
}

/// A programme's money in one currency, by posted transfers and reversals.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProgrammeTotals {
    pub(crate) currency: String,
    pub(crate) transfers: u64,
    pub(crate) moved: String,
    pub(crate) reversals: u64,
    pub(crate) reversed: String,
}

/// A voucher programme's vouchers.
#[derive(Serialize, ToSchema)]
pub(crate) struct VoucherTotals {
    pub(crate) issued: u64,
    pub(crate) issued_value: String,
    pub(crate) redemptions: u64,
    pub(crate) redeemed: String,
    pub(crate) returned: String,
    pub(crate) settled: String,
    pub(crate) outstanding: String,
}

/// A programme, with its funding account's balance and its totals.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProgrammeView {
    pub(crate) id: String,
    pub(crate) name: String,
    /// `cash`, `value_voucher` or `commodity_voucher`.
    pub(crate) kind: String,
    pub(crate) currency: String,
    pub(crate) funding: String,
    pub(crate) balance: String,
    pub(crate) available: String,
    pub(crate) totals: Vec<ProgrammeTotals>,
    pub(crate) vouchers: Option<VoucherTotals>,
}

/// A registered beneficiary.
#[derive(Serialize, ToSchema)]
pub(crate) struct BeneficiaryCreated {
    /// The pseudonym the log knows them by.
    pub(crate) id: String,
    /// Their wallet in the programme's currency.
    pub(crate) wallet: String,
    pub(crate) log_index: Option<u64>,
}

/// A wallet's balance.
#[derive(Serialize, ToSchema)]
pub(crate) struct WalletView {
    pub(crate) account: String,
    pub(crate) balance: Money,
    pub(crate) available: Money,
}

/// A beneficiary: the pseudonym, the wallets, and (not for auditors, not after erasure) the
/// registry's personal data.
#[derive(Serialize, ToSchema)]
pub(crate) struct BeneficiaryView {
    pub(crate) id: String,
    pub(crate) erased: bool,
    pub(crate) wallets: Vec<WalletView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) language: Option<String>,
}

/// An erasure: the registry's record and the person's secret are gone.
#[derive(Serialize, ToSchema)]
pub(crate) struct Erased {
    pub(crate) id: String,
    pub(crate) erased: bool,
    /// The `beneficiary.erased` entry (`null` when erased before).
    pub(crate) log_index: Option<u64>,
}

/// A vendor.
#[derive(Serialize, ToSchema)]
pub(crate) struct VendorView {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) balance: Money,
    pub(crate) available: Money,
    pub(crate) categories: Vec<String>,
}

/// One transfer made.
#[derive(Serialize, ToSchema)]
pub(crate) struct TransferDone {
    pub(crate) id: String,
    pub(crate) log_index: Option<u64>,
    /// A retry of a transfer made before: answered, not applied again.
    pub(crate) replayed: bool,
}

/// One item of an array of transfers.
#[derive(Serialize, ToSchema)]
pub(crate) struct TransferResult {
    pub(crate) id: String,
    /// `applied` or `rejected`.
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replayed: Option<bool>,
    /// Why it was rejected: a stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
}

/// An array of transfers, answered item by item in the order given.
#[derive(Serialize, ToSchema)]
pub(crate) struct TransferResults {
    pub(crate) results: Vec<TransferResult>,
}

/// A transfer as the log has it.
#[derive(Serialize, ToSchema)]
pub(crate) struct TransferView {
    pub(crate) id: String,
    pub(crate) log_index: u64,
    /// The log entry (canonical JSON, see docs/design/log-entries.md).
    #[schema(value_type = Object)]
    pub(crate) entry: serde_json::Value,
    /// For a hold: `open`, `posted`, `voided` or `expired`.
    pub(crate) hold: Option<String>,
}

/// A voucher issued: its code is shown to operators only, and never enters the log.
#[derive(Serialize, ToSchema)]
pub(crate) struct VoucherIssued {
    pub(crate) id: String,
    /// The code in letters (Crockford base32 with a check symbol).
    pub(crate) code: String,
    /// The same code in digits, for keypads.
    pub(crate) code_digits: String,
    pub(crate) log_index: Option<u64>,
}

/// A commodity voucher's item.
#[derive(Serialize, ToSchema)]
pub(crate) struct VoucherItem {
    pub(crate) item: String,
    pub(crate) issued: u32,
    pub(crate) redeemed: u32,
    pub(crate) held: u32,
}

/// A voucher.
#[derive(Serialize, ToSchema)]
pub(crate) struct VoucherView {
    pub(crate) id: String,
    pub(crate) programme: String,
    pub(crate) beneficiary: String,
    pub(crate) value: Money,
    pub(crate) available: Money,
    pub(crate) held: Money,
    pub(crate) redeemed: Money,
    pub(crate) returned: Money,
    pub(crate) items: Vec<VoucherItem>,
    pub(crate) expires_at_ms: u64,
    pub(crate) locked_until_ms: u64,
    /// Why it closed: `used`, `exhausted`, `revoked` or `expired`.
    pub(crate) closed: Option<String>,
}

/// A redemption waiting for the beneficiary's PIN or confirmation.
#[derive(Serialize, ToSchema)]
pub(crate) struct RedemptionCreated {
    pub(crate) id: String,
    pub(crate) voucher: String,
    pub(crate) amount: Money,
    pub(crate) log_index: Option<u64>,
}

/// One vendor paid by a settlement run.
#[derive(Serialize, ToSchema)]
pub(crate) struct VendorSettled {
    pub(crate) vendor: String,
    pub(crate) settlement: String,
    pub(crate) amount: Money,
    pub(crate) redemptions: u64,
    pub(crate) log_index: Option<u64>,
}

/// A settlement run: every vendor of the programme with something to be paid.
#[derive(Serialize, ToSchema)]
pub(crate) struct SettlementRun {
    pub(crate) run: String,
    pub(crate) vendors: Vec<VendorSettled>,
}

/// One vendor's settlement (its statement is CSV by `Accept: text/csv`).
#[derive(Serialize, ToSchema)]
pub(crate) struct SettlementView {
    pub(crate) id: String,
    pub(crate) programme: String,
    pub(crate) vendor: String,
    pub(crate) to: String,
    pub(crate) amount: Money,
    pub(crate) redemptions: u64,
    /// The log index of the vendor's settlement before this one.
    pub(crate) since_index: Option<u64>,
    pub(crate) log_index: u64,
}

/// A row of a disbursement file that was not paid.
#[derive(Serialize, ToSchema)]
pub(crate) struct RejectedRow {
    pub(crate) line: u64,
    pub(crate) reason: String,
}

/// What a disbursement file did.
#[derive(Serialize, ToSchema)]
pub(crate) struct DisbursementReport {
    /// The run (derived from the file and programme: the same file is the same run).
    pub(crate) id: String,
    pub(crate) rows: u64,
    pub(crate) paid: u64,
    pub(crate) already_paid: u64,
    pub(crate) registered: u64,
    pub(crate) rejected: Vec<RejectedRow>,
    pub(crate) paid_totals: Vec<Money>,
    /// Why nothing was paid, when the file was refused as a whole.
    pub(crate) refusal: Option<String>,
}

/// An account's balance.
#[derive(Serialize, ToSchema)]
pub(crate) struct BalanceView {
    pub(crate) account: String,
    pub(crate) currency: String,
    pub(crate) balance: String,
    /// The balance less what holds reserve.
    pub(crate) available: String,
    pub(crate) frozen: bool,
    pub(crate) closed: bool,
}

/// One entry of an account's history.
#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryItem {
    pub(crate) log_index: u64,
    #[schema(value_type = Object)]
    pub(crate) entry: serde_json::Value,
}

/// A page of an account's history, newest first; `next` is the cursor of the next page.
#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryPage {
    pub(crate) items: Vec<HistoryItem>,
    pub(crate) next: Option<u64>,
}

/// A message for another phone, for the integrator's sender.
#[derive(Serialize, ToSchema)]
pub(crate) struct Notice {
    pub(crate) to: String,
    pub(crate) text: String,
}

/// The answer to a message, for gateways that take replies through their own API.
#[derive(Serialize, ToSchema)]
pub(crate) struct SmsAnswer {
    pub(crate) reply: String,
    pub(crate) notices: Vec<Notice>,
    /// A retried delivery, answered from the store.
    pub(crate) replayed: bool,
}

/// An error (RFC 9457), with a stable machine-readable `code`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProblemDocument {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: String,
    pub(crate) status: u16,
    /// Stable: `invalid_json`, `unauthorized`, `forbidden`, `insufficient_funds`, …
    pub(crate) code: String,
    pub(crate) detail: String,
    /// `disbursement_refused` only: the file's report, each rejected row with its line.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DisbursementReport>)]
    pub(crate) report: Option<serde_json::Value>,
}

/// The problems any API route may answer (RFC 9457 documents with a stable `code`); listed in
/// every route's responses, never built.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Problems {
    /// Malformed: not JSON, wrong types, unknown fields, a bad id, amount or CSV.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDocument),
    /// No bearer token, or an unknown one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDocument),
    /// The token's role may not do this; a wrong PIN; an unauthenticated webhook.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDocument),
    /// No such programme, beneficiary, account, voucher, …
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDocument),
    /// An `Idempotency-Key` or an id reused for something else; an existing thing.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDocument),
    /// A body over 4 MiB.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDocument),
    /// A disbursement that is not `text/csv`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDocument),
    /// Understood and refused by the ledger (insufficient funds, a closed voucher, …).
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDocument),
    /// Too many wrong voucher codes from one vendor.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(ProblemDocument),
}

/// The document's frame; paths come from the handlers (see `app::router`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sanad",
        description = "Cash and voucher assistance on a signed, append-only ledger. Writes take \
                       an `Idempotency-Key` header; errors are `application/problem+json`.",
        license(name = "Apache-2.0 OR MIT")
    ),
    modifiers(&BearerTokens),
    components(schemas(ProblemDocument)),
    tags(
        (name = "log", description = "The signed log, public, in the C2SP tlog-tiles layout"),
        (name = "tokens", description = "API tokens: principals with roles, granted in the log"),
        (name = "programmes"), (name = "beneficiaries"), (name = "vendors"), (name = "transfers"),
        (name = "disbursements"), (name = "vouchers"), (name = "redemptions"),
        (name = "settlements"), (name = "accounts"),
        (name = "gateways", description = "SMS and USSD webhooks, authenticated by each gateway's own scheme")
    )
)]
pub(crate) struct ApiDoc;

/// Bearer API tokens.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
