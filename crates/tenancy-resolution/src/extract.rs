//! The axum extractor [`Tenant`] (feature `axum`).

use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::context::ResolvedTenant;
use crate::response;

/// The active tenant of the request, as [`TenancyLayer`](crate::TenancyLayer) resolved it.
///
/// Extracting it fails with [`TenantRequired`] (403, JSON `{"error":"tenant_required",...}`) when
/// no active tenant was resolved. `Option<Tenant>` never fails.
///
/// ```
/// use tenancy_resolution::Tenant;
///
/// async fn whoami(Tenant(tenant): Tenant) -> String {
///     format!("{} (by {})", tenant.slug, tenant.resolved_by())
/// }
/// # let _ = axum::Router::<()>::new().route("/whoami", axum::routing::get(whoami));
/// ```
#[derive(Debug, Clone)]
pub struct Tenant(pub ResolvedTenant);

impl Deref for Tenant {
    type Target = ResolvedTenant;

    fn deref(&self) -> &ResolvedTenant {
        &self.0
    }
}

/// The rejection of [`Tenant`]: 403 `tenant_required`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("this request has no active tenant")]
pub struct TenantRequired;

impl IntoResponse for TenantRequired {
    fn into_response(self) -> Response {
        response::tenant_required()
    }
}

fn active(parts: &Parts) -> Option<Tenant> {
    parts
        .extensions
        .get::<ResolvedTenant>()
        .filter(|tenant| tenant.tenant().is_active())
        .cloned()
        .map(Tenant)
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = TenantRequired;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, TenantRequired> {
        active(parts).ok_or(TenantRequired)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(active(parts))
    }
}
