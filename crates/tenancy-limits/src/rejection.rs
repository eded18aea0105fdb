//! [`LimitRejection`]: why a tenant's request was refused by its limits, and how the layer answers
//! it ([`LimitResponse`], with [`JsonLimitRejection`]).

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

/// Why a request of a tenant was refused by the tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum LimitRejection {
    /// The tenant is over its request rate; a token is available again in `retry_after` seconds.
    #[error("the tenant is over its request rate; retry in {retry_after} s")]
    RateLimited {
        /// Whole seconds until the next request can be admitted, rounded up, at least 1.
        retry_after: u64,
    },
    /// The tenant has as many requests in flight as its plan allows.
    #[error("the tenant has too many requests in flight")]
    TooManyInFlight,
}

impl LimitRejection {
    /// The HTTP status: 429 for the rate, 503 for requests in flight.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyInFlight => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable machine-readable code: `tenant_rate_limited`, `tenant_too_many_in_flight`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "tenant_rate_limited",
            Self::TooManyInFlight => "tenant_too_many_in_flight",
        }
    }

    /// The `Retry-After` value in seconds: the bucket's wait, or 1 for requests in flight.
    #[must_use]
    pub const fn retry_after(self) -> u64 {
        match self {
            Self::RateLimited { retry_after } => retry_after,
            Self::TooManyInFlight => 1,
        }
    }

    /// The JSON body of [`JsonLimitRejection`]: `{"error": code, "message": ..., "retry_after": s}`.
    #[must_use]
    pub fn json_body(self) -> String {
        let message = match self {
            Self::RateLimited { .. } => {
                "the tenant of this request is over its request rate; retry after the given seconds"
            }
            Self::TooManyInFlight => {
                "the tenant of this request has too many requests in flight; retry shortly"
            }
        };
        format!(
            r#"{{"error":"{}","message":"{message}","retry_after":{}}}"#,
            self.code(),
            self.retry_after()
        )
    }

    /// The gRPC status code: RESOURCE_EXHAUSTED (8) for both.
    #[must_use]
    pub const fn grpc_code(self) -> u8 {
        8
    }
}

/// Turns a [`LimitRejection`] into the response the layer answers with. Implemented by
/// [`JsonLimitRejection`] (the default), [`GrpcLimitRejection`] and any
/// `Fn(LimitRejection) -> Response<B>` closure, as `tenancy_resolution::RejectionResponse` is for
/// tenant rejections.
///
/// ```
/// use tenancy_limits::{LimitRejection, LimitResponse};
///
/// let plain = |rejection: LimitRejection| {
///     let mut response = http::Response::new(rejection.to_string());
///     *response.status_mut() = rejection.status();
///     response
/// };
/// let response = plain.respond(LimitRejection::TooManyInFlight);
/// assert_eq!(response.status(), 503);
/// ```
pub trait LimitResponse<B>: Clone + Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: LimitRejection) -> Response<B>;
}

impl<B, F> LimitResponse<B> for F
where
    F: Fn(LimitRejection) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond(&self, rejection: LimitRejection) -> Response<B> {
        self(rejection)
    }
}

/// The default answer: the rejection's [status](LimitRejection::status), its
/// [JSON body](LimitRejection::json_body) and `Retry-After`. Needs a body built from a `String`
/// (axum's `Body`, http-body-util's `Full<Bytes>`, `String`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLimitRejection;

impl<B: From<String>> LimitResponse<B> for JsonLimitRejection {
    fn respond(&self, rejection: LimitRejection) -> Response<B> {
        let mut response = Response::new(B::from(rejection.json_body()));
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(RETRY_AFTER, HeaderValue::from(rejection.retry_after()));
        response
    }
}

/// The answer for gRPC services (tonic): a trailers-only response with `grpc-status` 8
/// (RESOURCE_EXHAUSTED), the code as `grpc-message`, and `retry-after`, for any body with a
/// `Default`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcLimitRejection;

impl<B: Default> LimitResponse<B> for GrpcLimitRejection {
    fn respond(&self, rejection: LimitRejection) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_code())),
        );
        headers.insert("grpc-message", HeaderValue::from_static(rejection.code()));
        headers.insert(RETRY_AFTER, HeaderValue::from(rejection.retry_after()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_carry_status_code_and_retry_after() {
        let response: Response<String> =
            JsonLimitRejection.respond(LimitRejection::RateLimited { retry_after: 3 });
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"], "tenant_rate_limited");
        assert_eq!(body["retry_after"], 3);

        let response: Response<String> =
            JsonLimitRejection.respond(LimitRejection::TooManyInFlight);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"], "tenant_too_many_in_flight");
    }
}
