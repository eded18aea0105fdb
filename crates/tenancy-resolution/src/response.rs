//! The JSON error responses of the middleware and the guard.

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

/// Body of the 403 the guard and the extractor answer.
pub const TENANT_REQUIRED_BODY: &str = r#"{"error":"tenant_required","message":"this endpoint needs an active tenant, and the request names none: send the tenant (token claim, x-tenant-id header, subdomain or /tenants/{slug}/ path) of an active tenant you belong to"}"#;

/// Body of the 503 the middleware answers when the tenant store fails and nothing is cached.
pub const STORE_UNAVAILABLE_BODY: &str = r#"{"error":"tenant_store_unavailable","message":"the tenant of this request could not be checked because the tenant store is unavailable; retry shortly"}"#;

fn json<B: From<&'static str>>(status: StatusCode, body: &'static str) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 403 `tenant_required`.
pub(crate) fn tenant_required<B: From<&'static str>>() -> Response<B> {
    json(StatusCode::FORBIDDEN, TENANT_REQUIRED_BODY)
}

/// 503 `tenant_store_unavailable`, with `retry-after: 1`.
pub(crate) fn store_unavailable<B: From<&'static str>>() -> Response<B> {
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE_BODY);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
