//! Errors as RFC 9457 problem details (`application/problem+json`), each with a stable
//! machine-readable `code`: the ledger's rejection codes, and the binding's own.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sanad_ledger::Rejection;

/// A problem to answer.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) detail: String,
    /// For a 429: when to come back, in seconds.
    pub(crate) retry_after_s: Option<u64>,
    /// For a refused disbursement file: its report (JSON), every rejected row with its line.
    pub(crate) report: Option<String>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            detail: detail.into(),
            retry_after_s: None,
            report: None,
        }
    }

    /// 422: a disbursement file refused as a whole (nothing paid), with its report.
    pub(crate) fn disbursement_refused(refusal: &str, report: String) -> Self {
        Self {
            report: Some(report),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "disbursement_refused", refusal)
        }
    }

    /// 429: come back in `after` (said in the `Retry-After` header, whole seconds, at least 1).
    pub(crate) fn too_many(code: &str, detail: impl Into<String>, after: Duration) -> Self {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        Self {
            retry_after_s: Some(seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
        }
    }

    pub(crate) fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the ledger could not act: {error}"),
        )
    }
}

/// A refusal by the ledger: 404 for what does not exist, 403 for a principal beyond its role,
/// 409 for a conflict with the state, 422 for the rest (the request was understood and refused).
impl From<Rejection> for Problem {
    fn from(rejection: Rejection) -> Self {
        let code = rejection.code();
        let status = if code.ends_with("_not_found") {
            StatusCode::NOT_FOUND
        } else if matches!(code, "not_permitted" | "unknown_principal") {
            // The ledger's own check of the token's role (or a token revoked meanwhile).
            StatusCode::FORBIDDEN
        } else if matches!(
            code,
            "idempotency_key_reused"
                | "account_exists"
                | "programme_exists"
                | "beneficiary_exists"
                | "principal_exists"
        ) {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        Self::new(status, code, rejection.to_string())
    }
}

impl From<sanad_engine::Error> for Problem {
    fn from(error: sanad_engine::Error) -> Self {
        use sanad_engine::Error as E;
        match error {
            E::Rejected(rejection) => rejection.into(),
            E::GroupRejected(group) => {
                let mut problem = Self::from(group.rejection);
                problem.detail =
                    format!("command {} of the group: {}", group.index, problem.detail);
                problem
            }
            E::InvalidPhone(detail) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_phone", detail)
            }
            E::InvalidPin => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_pin", "a PIN is 4 to 8 digits")
            }
            E::InvalidField { field } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("invalid {field}"),
            ),
            E::Duplicate { field, existing } => Self::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!("{field} already registered to {existing}"),
            ),
            E::BeneficiaryNotFound(id) => Self::not_found(format!("beneficiary {id} not found")),
            E::VoucherCode(error) => {
                let code = if matches!(error, sanad_ledger::CodeError::Mistyped) {
                    "voucher_code_mistyped"
                } else {
                    "voucher_code_malformed"
                };
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
            }
            E::UnknownVoucherCode => {
                Self::new(StatusCode::NOT_FOUND, "voucher_not_found", "no voucher has this code")
            }
            E::TooManyGuesses { retry_after_ms } => {
                let after = Duration::from_millis(retry_after_ms);
                Self::too_many("too_many_guesses", error.to_string(), after)
            }
            E::WrongPin { .. } => Self::new(StatusCode::FORBIDDEN, "wrong_pin", error.to_string()),
            E::NoPendingConfirmation => {
                Self::new(StatusCode::CONFLICT, "no_pending_confirmation", error.to_string())
            }
            E::Disbursement(detail) => Self::bad_request("invalid_csv", detail),
            E::BadCall(count) => {
                Self::bad_request("too_many_items", format!("1 to 8,190 items, not {count}"))
            }
            other => Self::internal(other),
        }
    }
}

impl Problem {
    /// The problem document (RFC 9457).
    pub(crate) fn body(&self) -> String {
        let document = crate::api::ProblemDocument {
            kind: format!("https://sanad.invalid/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("error").to_owned(),
            status: self.status.as_u16(),
            code: self.code.clone(),
            detail: self.detail.clone(),
            report: self.report.as_deref().and_then(|report| serde_json::from_str(report).ok()),
        };
        // Invariant: strings and a number always serialize.
        serde_json::to_string(&document).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
