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
use tenancy::core::{CreateTenant, TenantInfo, context};
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
        .layer(tenancy.layer())
}

/// The providers every configured stack boots, in order.
pub const STACK_PROVIDERS: [&str; 5] = [
    "resolution",
    "lifecycle",
    "overrides",
    "isolation",
    "integration",
];

/// Asserts that `tenancy` boots the stack's providers, then `more`, in that order.
pub fn assert_providers(tenancy: &Tenancy, more: &[&str]) {
    let expected: Vec<&str> = STACK_PROVIDERS.iter().chain(more).copied().collect();
    assert_eq!(tenancy.provider_names().collect::<Vec<_>>(), expected);
}

/// Asserts that one health pass checked the store once: only the `store` component pings it.
pub fn assert_store_pinged_once(report: &tenancy::HealthReport) {
    let pinged: Vec<&str> = report
        .components
        .iter()
        .filter(|(_, health)| health.details.contains_key("ping"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(pinged, ["store"], "{report:#?}");
}

/// Creates the tenant `slug` (named as its slug) through the lifecycle; the stored tenant.
pub async fn create(tenancy: &Tenancy, slug: &str) -> TenantInfo {
    tenancy
        .lifecycle()
        .create(CreateTenant::new(slug.parse().unwrap(), slug))
        .await
        .unwrap()
        .into_result()
        .unwrap()
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
