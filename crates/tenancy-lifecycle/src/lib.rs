//! Tenant lifecycle for the `tenancy` library.
//!
//! [`TenantLifecycle`] creates tenants, provisions their isolation through a [`Provisioner`],
//! updates, activates, deactivates and suspends them. Every status change goes through the core
//! transition table (conditionally on the status it was read in); every change the store accepts
//! invalidates the tenant in every registered cache ([`tenancy_core::Invalidators`]) and then
//! publishes its event ([`tenancy_core::TenantEvent`]). A publisher failure never undoes a stored
//! change: it is logged and reported in the returned [`Outcome`].
//!
//! ```
//! use std::sync::Arc;
//! use tenancy_core::{
//!     BroadcastPublisher, CreateTenant, InMemoryStore, IsolationPlan, IsolationStrategy,
//!     TenantError, TenantEventKind, TenantId, TenantStatus,
//! };
//! use tenancy_lifecycle::{Provisioner, TenantLifecycle};
//!
//! #[derive(Debug)]
//! struct RowLevel;
//!
//! #[async_trait::async_trait]
//! impl IsolationStrategy for RowLevel {
//!     fn name(&self) -> &str { "row_level" }
//!     async fn provision(&self, _: TenantId) -> Result<(), TenantError> { Ok(()) }
//!     async fn deprovision(&self, _: TenantId) -> Result<(), TenantError> { Ok(()) }
//!     async fn plan(&self, _: TenantId) -> Result<IsolationPlan, TenantError> { Ok(IsolationPlan::default()) }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let publisher = Arc::new(BroadcastPublisher::new(16));
//! let mut events = publisher.subscribe();
//! let lifecycle = TenantLifecycle::new(
//!     Arc::new(InMemoryStore::new()),
//!     Provisioner::new(Arc::new(RowLevel), true),
//! )
//! .with_publisher(publisher);
//!
//! let tenant = lifecycle.create(CreateTenant::new("acme".parse()?, "Acme")).await?.into_result()?;
//! assert_eq!(tenant.status, TenantStatus::Active);
//! assert_eq!(events.recv().await?.kind.name(), "created");
//! assert_eq!(events.recv().await?.kind, TenantEventKind::Provisioned);
//!
//! let suspended = lifecycle.suspend(tenant.id, Some("unpaid".into())).await?.into_tenant();
//! assert_eq!(suspended.status_reason.as_deref(), Some("unpaid"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod config;
mod outcome;
mod provisioner;
mod service;

pub use config::LifecycleConfig;
pub use outcome::{DomainOutcome, Outcome};
pub use provisioner::Provisioner;
pub use service::{Recovery, TenantLifecycle};
