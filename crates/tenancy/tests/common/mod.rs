//! What the end-to-end tests share: an axum app over a stack, and a request helper.

#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "postgres")]
pub mod pg;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tenancy::Tenancy;
use tenancy::core::context;
use tenancy::resolution::ResolvedTenant;
use tower::ServiceExt;

/// `GET /whoami` and `GET /tenants/{tenant}/whoami` answer `slug resolver` of the request's
/// tenant, checking that the task-local context agrees with the extension.
pub fn app(tenancy: &Tenancy) -> Router {
    async fn whoami(Extension(tenant): Extension<ResolvedTenant>) -> String {
        assert_eq!(
            context::current_id(),
            Some(tenant.id()),
            "the context is the request's tenant"
        );
        format!("{} {}", tenant.tenant().slug, tenant.resolved_by())
    }
    Router::new()
        .route("/whoami", get(whoami))
        .route("/tenants/{tenant}/whoami", get(whoami))
        .layer(tenancy.guard())
        .layer(tenancy.layer().unwrap())
}

/// Sends `GET uri` (with `x-tenant-id` when given); the status and body.
pub async fn get_with(
    app: &Router,
    uri: &str,
    tenant_header: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    if let Some(value) = tenant_header {
        request = request.header("x-tenant-id", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
