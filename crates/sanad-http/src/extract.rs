//! axum's extractors, answering what they refuse as problem documents (RFC 9457) like every
//! other error of the API, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A rejection's status and text as a problem with `code`.
fn problem(rejection: impl axum::response::IntoResponse, code: &str, detail: String) -> Problem {
    let status = rejection.into_response().status();
    Problem::new(status, code, detail)
}

/// Path parameters.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                let detail = rejection.body_text();
                Err(problem(rejection, "invalid_path", detail))
            }
        }
    }
}

/// Query parameters.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                let detail = rejection.body_text();
                Err(problem(rejection, "invalid_query", detail))
            }
        }
    }
}

/// The raw body, within the server's limit.
pub(crate) struct ApiBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) => {
                let detail = rejection.body_text();
                Err(problem(rejection, "invalid_body", detail))
            }
        }
    }
}

/// What a write needs of its request: the target (an `Idempotency-Key` belongs to it), the
/// headers (the token, the key) and the body.
pub(crate) struct WriteRequest {
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for WriteRequest {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (uri, headers) = (request.uri().clone(), request.headers().clone());
        let ApiBody(body) = ApiBody::from_request(request, state).await?;
        Ok(Self { uri, headers, body })
    }
}
