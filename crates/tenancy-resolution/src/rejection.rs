//! [`TenantRejection`]: why a request has no tenant, and how the layers answer it
//! ([`RejectionResponse`], with [`JsonRejection`] and [`GrpcRejection`]).

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use tenancy_core::{TenantInfo, TenantStatus};

/// Why a request has no tenant.
///
/// [`ResolveTenantLayer`](crate::ResolveTenantLayer) leaves it in the request extensions whenever it
/// sets no [`ResolvedTenant`](crate::ResolvedTenant), so that a handler, the
/// [`RequireTenantLayer`](crate::RequireTenantLayer) or the axum extractor can answer with the
/// reason ("this account is suspended") rather than a generic refusal.
///
/// For a tenant named by an untrusted resolver, [`NotMember`](Self::NotMember) comes before every
/// other reason: a client that may not see a tenant learns neither whether it exists nor its
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TenantRejection {
    /// No resolver found a tenant in the request.
    #[error("the request names no tenant")]
    Missing,
    /// The request names a tenant that does not exist.
    #[error("the tenant named by the request does not exist")]
    NotFound,
    /// The tenant is suspended.
    #[error("the tenant is suspended")]
    Suspended,
    /// The tenant was switched off.
    #[error("the tenant is inactive")]
    Inactive,
    /// The tenant's data isolation is not ready yet.
    #[error("the tenant is still being provisioned")]
    Provisioning,
    /// The tenant was named by an untrusted resolver, and the request is not authenticated as one
    /// of its members.
    #[error("the request is not authenticated as a member of the tenant it names")]
    NotMember,
    /// The tenant store (or membership checker) failed and nothing was cached: retry later.
    #[error("the tenant could not be checked: the tenant store is unavailable")]
    Unavailable,
    /// No [`ResolveTenantLayer`](crate::ResolveTenantLayer) ran for this request: the route is
    /// wired without it. A server error, not the client's.
    #[error("no tenant resolution layer covers this route")]
    MissingLayer,
}

impl TenantRejection {
    /// The rejection a tenant's status calls for; `None` for an active tenant.
    #[must_use]
    pub fn for_status(tenant: &TenantInfo) -> Option<Self> {
        match tenant.status {
            TenantStatus::Active => None,
            TenantStatus::Suspended => Some(Self::Suspended),
            TenantStatus::Inactive => Some(Self::Inactive),
            TenantStatus::Provisioning => Some(Self::Provisioning),
        }
    }

    /// The HTTP status: 403 for the tenant's reasons, 503 for [`Unavailable`](Self::Unavailable),
    /// 500 for [`MissingLayer`](Self::MissingLayer).
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// A stable machine-readable code (`tenant_required`, `tenant_suspended`, ...).
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Missing => "tenant_required",
            Self::NotFound => "tenant_not_found",
            Self::Suspended => "tenant_suspended",
            Self::Inactive => "tenant_inactive",
            Self::Provisioning => "tenant_provisioning",
            Self::NotMember => "tenant_not_member",
            Self::Unavailable => "tenant_store_unavailable",
            Self::MissingLayer => "tenant_layer_missing",
        }
    }

    /// The JSON body of [`JsonRejection`]: `{"error": code, "message": ...}`.
    #[must_use]
    pub const fn json_body(self) -> &'static str {
        match self {
            Self::Missing => {
                r#"{"error":"tenant_required","message":"this endpoint needs an active tenant, and the request names none"}"#
            }
            Self::NotFound => {
                r#"{"error":"tenant_not_found","message":"the tenant named by the request does not exist"}"#
            }
            Self::Suspended => {
                r#"{"error":"tenant_suspended","message":"the tenant named by the request is suspended"}"#
            }
            Self::Inactive => {
                r#"{"error":"tenant_inactive","message":"the tenant named by the request is inactive"}"#
            }
            Self::Provisioning => {
                r#"{"error":"tenant_provisioning","message":"the tenant named by the request is still being set up; retry shortly"}"#
            }
            Self::NotMember => {
                r#"{"error":"tenant_not_member","message":"the request is not authenticated as a member of the tenant it names"}"#
            }
            Self::Unavailable => {
                r#"{"error":"tenant_store_unavailable","message":"the tenant of this request could not be checked because the tenant store is unavailable; retry shortly"}"#
            }
            Self::MissingLayer => {
                r#"{"error":"tenant_layer_missing","message":"the server is misconfigured: no tenant resolution layer covers this route"}"#
            }
        }
    }

    /// The gRPC status code: PERMISSION_DENIED (7) for the tenant's reasons, UNAVAILABLE (14),
    /// INTERNAL (13) for a missing layer.
    #[must_use]
    pub const fn grpc_code(self) -> u8 {
        match self {
            Self::Unavailable => 14,
            Self::MissingLayer => 13,
            _ => 7,
        }
    }
}

/// Turns a [`TenantRejection`] into the response a layer answers with. Implemented by
/// [`JsonRejection`] (the default), [`GrpcRejection`], and any `Fn(TenantRejection) ->
/// Response<B>` closure, so an application can shape its own answers for any body type.
///
/// ```
/// use tenancy_resolution::{RejectionResponse, TenantRejection};
///
/// let plain = |rejection: TenantRejection| {
///     let mut response = http::Response::new(rejection.to_string());
///     *response.status_mut() = rejection.status();
///     response
/// };
/// let response = plain.respond(TenantRejection::Suspended);
/// assert_eq!(response.status(), 403);
/// assert_eq!(response.body(), "the tenant is suspended");
/// ```
pub trait RejectionResponse<B>: Clone + Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: TenantRejection) -> Response<B>;
}

impl<B, F> RejectionResponse<B> for F
where
    F: Fn(TenantRejection) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond(&self, rejection: TenantRejection) -> Response<B> {
        self(rejection)
    }
}

/// The default answer: the rejection's [status](TenantRejection::status) and its
/// [JSON body](TenantRejection::json_body), with `retry-after: 1` on 503. Needs a body built from
/// `&'static str` (axum's `Body`, http-body-util's `Full<Bytes>`, `String`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRejection;

impl<B: From<&'static str>> RejectionResponse<B> for JsonRejection {
    fn respond(&self, rejection: TenantRejection) -> Response<B> {
        let mut response = Response::new(B::from(rejection.json_body()));
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if rejection == TenantRejection::Unavailable {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The answer for gRPC services (tonic): a trailers-only gRPC response (HTTP 200, `grpc-status`
/// [`grpc_code`](TenantRejection::grpc_code), `grpc-message` the rejection's text) with an
/// empty body, for any body type with a `Default` (tonic's body has one). Clients see a gRPC
/// status (`PERMISSION_DENIED`, `UNAVAILABLE`) rather than an HTTP error.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcRejection;

impl<B: Default> RejectionResponse<B> for GrpcRejection {
    fn respond(&self, rejection: TenantRejection) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_code())),
        );
        headers.insert("grpc-message", HeaderValue::from_static(rejection.code()));
        response
    }
}
