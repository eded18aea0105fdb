//! Core types of the `tenancy` library.
//!
//! This crate holds what every other tenancy crate shares, and depends on none of them:
//!
//! - validated identifiers: [`TenantId`], [`Slug`], [`TenantRef`], and tenants' own host names
//!   ([`DomainName`], [`normalize_host`]);
//! - tenants: [`TenantInfo`], [`TenantStatus`] with its one transition table, the commands
//!   [`CreateTenant`] and [`UpdateTenant`];
//! - [`TenantError`], the one error type;
//! - domain events ([`TenantEvent`]) and publishers ([`EventPublisher`], [`BroadcastPublisher`],
//!   [`NoopPublisher`]);
//! - store traits ([`TenantStore`], [`ConfigStore`]) and [`InMemoryStore`];
//! - the [`IsolationStrategy`] trait, the [`CacheInvalidation`] trait, the [`Provider`] trait and
//!   health types;
//! - the task-local current tenant ([`context`]);
//! - [`TenantLabels`], the bounded set of tenants that get a metric label of their own.
//!
//! ```
//! use tenancy_core::{CreateTenant, InMemoryStore, StatusChange, TenantInfo, TenantStatus, TenantStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = InMemoryStore::new();
//! let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?;
//! let tenant = store.create(tenant).await?;
//! assert_eq!(tenant.status, TenantStatus::Provisioning);
//!
//! let change = StatusChange { from: TenantStatus::Provisioning, to: TenantStatus::Active, reason: None };
//! let tenant = store.set_status(tenant.id, change).await?;
//! assert!(tenant.is_active());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod cache;
pub mod context;
mod domain;
mod error;
mod events;
mod id;
mod isolation;
mod labels;
mod memory;
mod provider;
mod redact;
mod store;
mod tenant;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use cache::{CacheInvalidation, Epoch, Generation, Invalidators, Stamp, StampKey};
pub use context::TenantContext;
pub use domain::{
    DOMAIN_MAX_LEN, DomainChange, DomainError, DomainName, TenantDomain, normalize_host,
    sort_domains,
};
pub use error::{BoxError, TenantError};
pub use events::{
    BroadcastPublisher, EventPublisher, NoopPublisher, PlacementOperation, TenantEvent,
    TenantEventKind,
};
pub use id::{IdError, SLUG_MAX_LEN, Slug, TenantId, TenantRef};
pub use isolation::{IsolationPlan, IsolationStep, IsolationStrategy, Placement, PlacementSource};
pub use labels::{DEFAULT_LABELLED_TENANTS, OTHER, TenantLabels};
pub use memory::InMemoryStore;
pub use provider::{Health, HealthReport, HealthStatus, Provider};
pub use redact::{REDACTED, redact_url};
pub use store::{
    ConfigStore, DEFAULT_PAGE_SIZE, ListQuery, MAX_PAGE_SIZE, Page, StatusChange, TenantStore,
};
pub use tenant::{
    CreateTenant, JsonObject, NAME_MAX_CHARS, PLAN_MAX_LEN, TenantInfo, TenantStatus,
    UnknownStatus, UpdateTenant,
};

/// Re-exported so that users name the same UUID type.
pub use uuid::Uuid;
