//! Tenant resolution for the `tenancy` library: everything between an incoming HTTP request and a
//! validated, active tenant in the handler's hands.
//!
//! - [`TenantResolver`]s find which tenant a request names: built in, [`JwtClaimResolver`]
//!   (`jwt_claim`, priority 10), [`HeaderResolver`] (`header`, 20), [`SubdomainResolver`]
//!   (`subdomain`, 30), [`DomainResolver`] (`domain`, 35: tenants' custom domains, through the
//!   validator's cache), [`PathResolver`] (`path`, 40); application resolvers may await.
//! - [`ResolverRegistry`], the composite resolver, asks them in priority order; the first answer
//!   wins, with the resolver's name.
//! - [`TenantValidator`] looks the tenant up through a bounded cache; only active tenants pass.
//!   The cache is `quick_cache` (S3-FIFO) rather than the moka cache first planned: a bare moka
//!   read alone cost 2.9 times the whole header-resolve baseline, beyond the 2x budget of a
//!   cached resolution (figures in docs/benchmarks.md, "Tenant resolution").
//! - [`TenantMembership`]: for untrusted resolvers, the [`AuthenticatedUser`] must belong to the
//!   tenant, always ([`MembershipMode::Strict`]) or when a user is authenticated
//!   ([`MembershipMode::Authenticated`]).
//! - [`ResolveTenantLayer`] (tower) ties it together and puts a [`ResolvedTenant`] in the request
//!   extensions, or the [`TenantRejection`] saying why there is none; [`RequireTenantLayer`] and
//!   the axum extractor `Tenant` (feature `axum`) answer that rejection, and
//!   [`ResolveTenantLayer::require_tenant`] makes the middleware answer it itself when every route
//!   needs a tenant (one layer instead of two). Answers come from a [`RejectionResponse`]:
//!   JSON by default, gRPC statuses with [`GrpcRejection`], or the application's own, so the
//!   layers serve any response body (axum, hyper, tonic).
//! - [`ResolutionConfig`] is the `resolution` configuration section.
//!
//! ```
//! use std::sync::Arc;
//! use tenancy_core::{CreateTenant, InMemoryStore, StatusChange, TenantInfo, TenantStatus, TenantStore};
//! use tenancy_resolution::{Builtin, ResolutionConfig, ResolvedTenant, ResolveTenantLayer, TenantValidator};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = Arc::new(InMemoryStore::new());
//! let acme = store.create(TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?).await?;
//! let change = StatusChange { from: TenantStatus::Provisioning, to: TenantStatus::Active, reason: None };
//! store.set_status(acme.id, change).await?;
//!
//! // Only the header resolver, trusted here (a gateway sets it), so no membership check is needed.
//! let config = ResolutionConfig {
//!     resolvers: Some(vec![Builtin::Header]),
//!     trusted_resolvers: Some(vec!["header".into()]),
//!     ..Default::default()
//! };
//! let validator = TenantValidator::new(store, &config.validator)?;
//! let mut service = ServiceBuilder::new()
//!     .layer(ResolveTenantLayer::new(&config, validator)?)
//!     .service(service_fn(|request: http::Request<String>| async move {
//!         let tenant = request.extensions().get::<ResolvedTenant>().map(|t| t.slug.to_string());
//!         Ok::<_, std::convert::Infallible>(http::Response::new(tenant.unwrap_or_default()))
//!     }));
//! let request = http::Request::builder().header("x-tenant-id", acme.id.to_string()).body(String::new())?;
//! let response = service.ready().await?.call(request).await?;
//! assert_eq!(response.body(), "acme");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//! - `jwt`: the `jwt_claim` resolver verifies bearer tokens itself (jsonwebtoken).
//! - `jwks`: it verifies them against an identity provider's key set, fetched over HTTP(S),
//!   cached and refreshed on rotation ([`JwksCache`]); implies `jwt`.
//! - `axum`: the `Tenant` extractor.

mod config;
mod context;
#[cfg(feature = "jwks")]
mod jwks;
mod membership;
pub mod rejection;
pub mod require;
pub mod resolve;
mod resolver;
mod resolvers;
pub mod telemetry;
mod validator;

#[cfg(feature = "axum")]
mod extract;

pub use config::{
    Builtin, DOMAIN, HEADER, JWT_CLAIM, JwksConfig, JwtVerifyConfig, KeyKind, MembershipMode, PATH,
    ResolutionConfig, SUBDOMAIN, ValidatorConfig,
};
pub use context::{
    AuthenticatedUser, MAX_BEARER_TOKEN_LEN, ResolutionContext, ResolvedTenant, VerifiedClaims,
    bearer_token,
};
#[cfg(feature = "axum")]
pub use extract::Tenant;
#[cfg(feature = "jwks")]
pub use jwks::{JwksCache, JwksError};
pub use membership::TenantMembership;
pub use rejection::{GrpcRejection, JsonRejection, Refusal, RejectionResponse, TenantRejection};
pub use require::{RequireTenant, RequireTenantLayer};
pub use resolve::{ResolveTenant, ResolveTenantBuilder, ResolveTenantLayer};
pub use resolver::{Resolution, Resolved, ResolverRegistry, TenantResolver};
pub use resolvers::{
    DomainResolver, HeaderResolver, JwtClaimResolver, PathResolver, SubdomainResolver,
};
pub use validator::TenantValidator;
