//! The axum extractor [`Tenant`] (feature `axum`).

use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::context::ResolvedTenant;
use crate::rejection::{JsonRejection, RejectionResponse, TenantRejection};
use crate::require::refusal;

/// The active tenant of the request, as [`ResolveTenantLayer`](crate::ResolveTenantLayer)
/// resolved it.
///
/// Extracting it fails with the [`TenantRejection`] the layer recorded (403 with the reason:
/// none named, unknown, suspended, inactive, not a member), or with
/// [`TenantRejection::MissingLayer`] (500) on a route the layer does not cover: that is a wiring
/// mistake, not a client without a tenant. `Option<Tenant>` is `None` instead of a 403, and still
/// fails with the 500.
///
/// ```
/// use tenancy_resolution::{Tenant, TenantRejection};
///
/// async fn whoami(Tenant(tenant): Tenant) -> String {
///     format!("{} (by {})", tenant.slug, tenant.resolved_by())
/// }
///
/// async fn status(tenant: Result<Tenant, TenantRejection>) -> String {
///     match tenant {
///         Ok(tenant) => format!("welcome to {}", tenant.name),
///         Err(TenantRejection::Suspended) => "this account is suspended".to_owned(),
///         Err(other) => other.to_string(),
///     }
/// }
/// # let _ = axum::Router::<()>::new().route("/whoami", axum::routing::get(whoami)).route("/status", axum::routing::get(status));
/// ```
#[derive(Debug, Clone)]
pub struct Tenant(pub ResolvedTenant);

impl Deref for Tenant {
    type Target = ResolvedTenant;

    fn deref(&self) -> &ResolvedTenant {
        &self.0
    }
}

impl IntoResponse for TenantRejection {
    /// The [`JsonRejection`] answer.
    fn into_response(self) -> Response {
        JsonRejection.respond(self)
    }
}

fn extract(parts: &Parts) -> Result<Tenant, TenantRejection> {
    match refusal(&parts.extensions) {
        None => parts
            .extensions
            .get::<ResolvedTenant>()
            .cloned()
            .map(Tenant)
            .ok_or(TenantRejection::MissingLayer),
        Some(rejection) => Err(rejection),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, TenantRejection> {
        extract(parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Tenant {
    type Rejection = TenantRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match extract(parts) {
            Ok(tenant) => Ok(Some(tenant)),
            Err(TenantRejection::MissingLayer) => Err(TenantRejection::MissingLayer),
            Err(_) => Ok(None),
        }
    }
}
