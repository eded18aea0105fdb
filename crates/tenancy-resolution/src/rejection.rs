//! [`TenantRejection`]: why a request has no tenant, and how the layers answer it
//! ([`RejectionResponse`], with [`JsonRejection`] and [`GrpcRejection`]).

use std::borrow::Cow;

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

/// A reason a tenancy layer refuses a request, as the answers of [`RejectionResponse`] need it.
/// Implemented by [`TenantRejection`] and by the limit layer's `LimitRejection`
/// (`tenancy-limits`), so that one [`JsonRejection`], one [`GrpcRejection`] and one closure form
/// answer both.
pub trait Refusal: Copy + Send + 'static {
    /// The HTTP status.
    fn status(self) -> StatusCode;
    /// A stable machine-readable code, also the `grpc-message` of [`GrpcRejection`].
    fn code(self) -> &'static str;
    /// The JSON body of [`JsonRejection`]: `{"error": code, "message": ...}` and any details.
    fn json_body(self) -> Cow<'static, str>;
    /// The gRPC status code of [`GrpcRejection`].
    fn grpc_code(self) -> u8;
    /// Seconds for a `Retry-After` header, when the client should retry.
    fn retry_after(self) -> Option<u64>;
}

impl Refusal for TenantRejection {
    fn status(self) -> StatusCode {
        Self::status(self)
    }

    fn code(self) -> &'static str {
        Self::code(self)
    }

    fn json_body(self) -> Cow<'static, str> {
        Cow::Borrowed(Self::json_body(self))
    }

    fn grpc_code(self) -> u8 {
        Self::grpc_code(self)
    }

    /// One second for [`Unavailable`](Self::Unavailable), else none.
    fn retry_after(self) -> Option<u64> {
        (self == Self::Unavailable).then_some(1)
    }
}

/// Turns a refusal (a [`TenantRejection`] by default, or another [`Refusal`]) into the response
/// a layer answers with. Implemented by [`JsonRejection`] (the default), [`GrpcRejection`], and
/// any `Fn(R) -> Response<B>` closure, so an application can shape its own answers for any body
/// type.
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
pub trait RejectionResponse<B, R: Refusal = TenantRejection>:
    Clone + Send + Sync + 'static
{
    /// The response for `rejection`.
    fn respond(&self, rejection: R) -> Response<B>;
}

impl<B, R, F> RejectionResponse<B, R> for F
where
    R: Refusal,
    F: Fn(R) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond(&self, rejection: R) -> Response<B> {
        self(rejection)
    }
}

/// The default answer: the refusal's status and JSON body, with `Retry-After` when it has one
/// (a [`TenantRejection`]: 1 s on 503). Needs a body built from `&'static str` and `String`
/// (axum's `Body`, http-body-util's `Full<Bytes>`, `String`); a tenant rejection's body is
/// static, not allocated.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRejection;

impl<B, R> RejectionResponse<B, R> for JsonRejection
where
    B: From<&'static str> + From<String>,
    R: Refusal,
{
    fn respond(&self, rejection: R) -> Response<B> {
        let body = match rejection.json_body() {
            Cow::Borrowed(body) => B::from(body),
            Cow::Owned(body) => B::from(body),
        };
        let mut response = Response::new(body);
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = rejection.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The answer for gRPC services (tonic): a trailers-only gRPC response (HTTP 200, `grpc-status`
/// the refusal's gRPC code, `grpc-message` its code, `retry-after` when it has one) with an
/// empty body, for any body type with a `Default` (tonic's body has one). Clients see a gRPC
/// status (`PERMISSION_DENIED`, `UNAVAILABLE`, `RESOURCE_EXHAUSTED`) rather than an HTTP error.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcRejection;

impl<B: Default, R: Refusal> RejectionResponse<B, R> for GrpcRejection {
    fn respond(&self, rejection: R) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_code())),
        );
        headers.insert("grpc-message", HeaderValue::from_static(rejection.code()));
        if let Some(seconds) = rejection.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
