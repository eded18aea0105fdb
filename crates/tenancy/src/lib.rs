//! Multi-tenancy for Rust web services, in one bundle: tenant resolution, lifecycle, per-tenant
//! configuration and PostgreSQL data isolation.
//!
//! This is the crate applications add first. It loads a [`TenancyConfig`] (the `tenancy:` section
//! of a YAML file plus `TENANCY__*` environment variables), builds the whole stack with
//! [`configure`] (or a test stack with [`stub`]), and runs it as a [`Tenancy`] bundle of providers
//! (`resolution`, `lifecycle`, `overrides`, `isolation`, `integration`, and `change_feed` on the
//! PostgreSQL store) that boot in order, shut down in reverse, and report real health.
//!
//! # End to end with axum
//!
//! ```no_run
//! use axum::{Extension, Router, routing::get};
//! use tenancy::{ResolvedTenant, TenancyConfig};
//! use tenancy::core::CreateTenant;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Configuration: config/app.yaml's `tenancy:` section, then TENANCY__* variables.
//! let config = TenancyConfig::load(Some("config/app.yaml".as_ref()))?;
//! let tenancy = tenancy::configure(config).await?;
//!
//! // Tenants are created through the lifecycle service (provisioned, then active).
//! let lifecycle = tenancy.lifecycle();
//! lifecycle.create(CreateTenant::new("acme".parse()?, "Acme")).await?.into_result()?;
//!
//! // Every request is resolved (header, path, subdomain, verified JWT claim), validated
//! // (active tenants only, cached) and run inside the tenant's task-local scope; the guard
//! // answers 403 when there is no active tenant.
//! async fn whoami(Extension(tenant): Extension<ResolvedTenant>) -> String {
//!     format!("tenant {} (found by {})", tenant.tenant().slug, tenant.resolved_by())
//! }
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(tenancy.guard())
//!     .layer(tenancy.layer());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! tenancy.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! The same router, exercised without a network on the test stack:
//!
//! ```
//! use axum::{Extension, Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tenancy::ResolvedTenant;
//! use tenancy::core::CreateTenant;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tenancy = tenancy::stub().await?;
//! let acme = tenancy.lifecycle().create(CreateTenant::new("acme".parse()?, "Acme")).await?.into_result()?;
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(|Extension(t): Extension<ResolvedTenant>| async move { t.tenant().slug.to_string() }))
//!     .layer(tenancy.guard())
//!     .layer(tenancy.layer());
//!
//! let request = Request::get("/whoami").header("x-tenant-id", acme.id.to_string()).body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(request).await?.status(), StatusCode::OK);
//! let anonymous = Request::get("/whoami").body(Body::empty())?;
//! assert_eq!(app.oneshot(anonymous).await?.status(), StatusCode::FORBIDDEN);
//! tenancy.shutdown().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! | feature    | adds |
//! |------------|------|
//! | (none)     | the whole stack on the in-memory store, without SQL |
//! | `sql`      | schema-per-tenant isolation, tenant-scoped transactions (`TenantDatabase`, from `Tenancy::database`) and the PostgreSQL store |
//! | `postgres` | the PostgreSQL store and its change feed |
//! | `sqlite`   | the SQLite store |
//! | `tls-rustls` (default) | TLS to PostgreSQL through rustls: `sslmode` and `sslrootcert` in URLs, the `store.tls` and `isolation.tls` keys; nothing without `postgres` or `sql` |
//! | `axum`     | the `Tenant` axum extractor |
//! | `jwt`      | bearer-token verification in the `jwt_claim` resolver |
//! | `jwks`     | `jwt`, with the keys fetched from an identity provider's JWKS endpoint (an HTTPS client: hyper, rustls with ring) |
//! | `migration-audit` | `isolation::MigrationAudit`, the row-level-security audit of migration files before they run (PostgreSQL's own parser, built from C: needs libclang) |
//!
//! Without `sql`, `postgres` or `sqlite`, nothing here depends on sqlx. Every PostgreSQL
//! connection is built by `pg_connect::connect_options` (feature `postgres`), so a `sslmode`
//! means the same for the store, the change feed, tenant transactions and the database router.
//!
//! # Crates
//!
//! The sub-crates are re-exported: [`core`] (ids, tenants, errors, events, store traits, the
//! task-local [`core::context`]), [`resolution`], [`lifecycle`], [`overrides`], [`isolation`],
//! [`store_sql`] and [`pg_connect`] (PostgreSQL connect options and TLS). See `docs/getting-started.md`, `docs/configuration.md`, `docs/isolation.md` and
//! `docs/security.md` in the repository.

mod bundle;
mod config;
mod error;
pub mod integration;
#[cfg(feature = "limits")]
mod limits_wiring;
mod providers;
mod stack;
mod store;
pub mod telemetry;

pub use bundle::{DEFAULT_HEALTH_TIMEOUT, Phase, ProviderError, ShutdownError};
pub use config::{ConfigError, ENV_PREFIX, SECTION, TenancyConfig};
pub use error::Error;
pub use integration::IntegrationConfig;
pub use stack::{DEFAULT_EVENT_CAPACITY, StackBuilder, Tenancy, configure, stub};
pub use telemetry::MetricsConfig;
#[cfg(feature = "metrics")]
pub use telemetry::describe_metrics;
#[cfg(feature = "sql")]
pub use tenancy_isolation_sql::TenantDatabase;

pub use tenancy_core as core;
pub use tenancy_isolation_sql as isolation;
pub use tenancy_lifecycle as lifecycle;
#[cfg(feature = "limits")]
pub use tenancy_limits as limits;
pub use tenancy_overrides as overrides;
pub use tenancy_pg_connect as pg_connect;
pub use tenancy_resolution as resolution;
pub use tenancy_store_sql as store_sql;

// The types applications name most.
pub use tenancy_core::{
    Health, HealthReport, HealthStatus, Slug, TenantError, TenantEvent, TenantId, TenantInfo,
    TenantStatus, context,
};
pub use tenancy_isolation_sql::IsolationConfig;
pub use tenancy_lifecycle::{LifecycleConfig, TenantLifecycle};
pub use tenancy_overrides::{ConfigService, OverridesConfig};
#[cfg(feature = "axum")]
pub use tenancy_resolution::Tenant;
pub use tenancy_resolution::{
    MembershipMode, RequireTenantLayer, ResolutionConfig, ResolveTenantLayer, ResolvedTenant,
    TenantMembership, TenantRejection,
};
pub use tenancy_store_sql::StoreConfig;
