//! [`LimitRejection`]: why a tenant's request was refused by its limits. The layer answers it
//! through `tenancy_resolution`'s [`RejectionResponse`](tenancy_resolution::RejectionResponse),
//! as it answers tenant rejections: [`LimitRejection`] is a [`Refusal`].

use std::borrow::Cow;

use http::StatusCode;
use tenancy_resolution::Refusal;

/// Why a request of a tenant was refused by the tenant's limits.
///
/// ```
/// use tenancy_limits::LimitRejection;
/// use tenancy_resolution::{Refusal, RejectionResponse};
///
/// let plain = |rejection: LimitRejection| {
///     let mut response = http::Response::new(rejection.to_string());
///     *response.status_mut() = rejection.status();
///     response
/// };
/// let response = plain.respond(LimitRejection::TooManyInFlight);
/// assert_eq!(response.status(), 503);
/// assert_eq!(LimitRejection::RateLimited { retry_after: 3 }.retry_after(), Some(3));
/// ```
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

impl Refusal for LimitRejection {
    /// 429 for the rate, 503 for requests in flight.
    fn status(self) -> StatusCode {
        match self {
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyInFlight => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `tenant_rate_limited`, `tenant_too_many_in_flight`.
    fn code(self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "tenant_rate_limited",
            Self::TooManyInFlight => "tenant_too_many_in_flight",
        }
    }

    /// `{"error": code, "message": ..., "retry_after": seconds}`.
    fn json_body(self) -> Cow<'static, str> {
        let message = match self {
            Self::RateLimited { .. } => {
                "the tenant of this request is over its request rate; retry after the given seconds"
            }
            Self::TooManyInFlight => {
                "the tenant of this request has too many requests in flight; retry shortly"
            }
        };
        Cow::Owned(format!(
            r#"{{"error":"{}","message":"{message}","retry_after":{}}}"#,
            self.code(),
            self.retry_after().unwrap_or(1)
        ))
    }

    /// RESOURCE_EXHAUSTED (8) for both.
    fn grpc_code(self) -> u8 {
        8
    }

    /// The bucket's wait, or 1 for requests in flight.
    fn retry_after(self) -> Option<u64> {
        Some(match self {
            Self::RateLimited { retry_after } => retry_after,
            Self::TooManyInFlight => 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;
    use http::header::RETRY_AFTER;
    use tenancy_resolution::{GrpcRejection, JsonRejection, RejectionResponse};

    #[test]
    fn json_answers_carry_status_code_and_retry_after() {
        let response: Response<String> =
            JsonRejection.respond(LimitRejection::RateLimited { retry_after: 3 });
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"], "tenant_rate_limited");
        assert_eq!(body["retry_after"], 3);

        let response: Response<String> = JsonRejection.respond(LimitRejection::TooManyInFlight);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"], "tenant_too_many_in_flight");
    }

    #[test]
    fn grpc_answers_are_resource_exhausted_with_retry_after() {
        let response: Response<String> =
            GrpcRejection.respond(LimitRejection::RateLimited { retry_after: 2 });
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-message"], "tenant_rate_limited");
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }
}
