//! What every JSON route shares: error responses (`{"error": code, "message": message}`), the
//! status of each [`TenantError`], and JSON bodies and paths whose every defect is a 400. An
//! application that mounts the admin API can answer its own errors the same way.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use tenancy_core::TenantError;

/// A JSON error response: `{"error": code, "message": message}`.
///
/// ```
/// use axum::http::StatusCode;
/// let response = tenancy_admin::http::error_response(StatusCode::BAD_REQUEST, "bad", "why");
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// ```
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

/// The answer to a path no route serves.
pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no route serves this path",
    )
}

/// The answer to a method a route does not serve.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve this method",
    )
}

/// A [`TenantError`] answered with the status that fits it.
#[derive(Debug)]
pub struct ApiError(pub TenantError);

impl From<TenantError> for ApiError {
    fn from(error: TenantError) -> Self {
        Self(error)
    }
}

/// The HTTP status and error code of a [`TenantError`].
pub fn classify(error: &TenantError) -> (StatusCode, &'static str) {
    match error {
        TenantError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        TenantError::SlugConflict { .. } => (StatusCode::CONFLICT, "slug_conflict"),
        TenantError::DomainConflict { .. } => (StatusCode::CONFLICT, "domain_conflict"),
        TenantError::DomainNotFound { .. } => (StatusCode::NOT_FOUND, "domain_not_found"),
        TenantError::IllegalTransition { .. } => (StatusCode::CONFLICT, "illegal_transition"),
        TenantError::StatusConflict { .. } => (StatusCode::CONFLICT, "status_conflict"),
        TenantError::Inactive { .. }
        | TenantError::Suspended { .. }
        | TenantError::Provisioning { .. } => (StatusCode::CONFLICT, "tenant_not_active"),
        TenantError::InvalidInput { .. } | TenantError::Resolution(_) => {
            (StatusCode::BAD_REQUEST, "invalid_input")
        }
        TenantError::Configuration(_) => (StatusCode::BAD_REQUEST, "invalid_configuration"),
        TenantError::Storage { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = classify(&self.0);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "admin request failed");
        }
        error_response(status, code, &self.0.to_string())
    }
}

/// A JSON request body; a body that is not valid JSON of the expected shape (unknown fields
/// included) is answered 400 with serde's message, before anything is stored.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || mime.to_ascii_lowercase().ends_with("+json")
            });
        if !json {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        // A body past the size limit, or cut short: the reason as JSON like every error here.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                error_response(rejection.status(), "invalid_body", &rejection.body_text())
            })?;
        parse_json(&bytes).map(Self).map_err(|e| *e)
    }
}

/// `bytes` as JSON of type `T`, or the 400 response saying why not (boxed: it is large).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            &format!("the request body is not valid: {e}"),
        ))
    })
}

/// Path parameters; a path whose segments cannot be read (invalid percent-encoding or UTF-8) is
/// answered 400 with a JSON body, like every other error here.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| {
                error_response(
                    rejection.status(),
                    "invalid_path",
                    "the path holds a segment that is not valid percent-encoded UTF-8",
                )
            })
    }
}
