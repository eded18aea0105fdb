//! SQL tenant and config store for the `tenancy` library, and the PostgreSQL change feed.
//!
//! - [`SqlStore`] is the store, written once for every backend: [`PgTenantStore`] (feature
//!   `postgres`) and [`SqliteTenantStore`] (feature `sqlite`) implement
//!   [`TenantStore`](tenancy_core::TenantStore) and [`ConfigStore`](tenancy_core::ConfigStore)
//!   with the same behaviour and errors as [`InMemoryStore`](tenancy_core::InMemoryStore): both
//!   pass `tenancy_core::conformance`. [`SqlTenantStore`] picks one from a URL; it is the only
//!   place that chooses between backends.
//! - Each store embeds its migrations and runs them with `sqlx::migrate` (ordered, checksummed,
//!   recorded). PostgreSQL tables live in their own schema (default `tenancy`); running the
//!   migrations again is harmless, and a binary older than the schema refuses it with
//!   [`TenantError::Migration`](tenancy_core::TenantError::Migration).
//! - Slug uniqueness is a unique constraint (reported as `SlugConflict`); status changes are one
//!   conditional `UPDATE`; every mutation is one transaction.
//! - [`ChangeFeed`] (PostgreSQL): every mutation sends a [`ChangeNotice`] with `pg_notify` in its
//!   transaction; the feed of every process invalidates its caches for that tenant, and flushes
//!   them all whenever its connection was lost. SQLite is single-process: in-process invalidation
//!   through the lifecycle service is enough there, and it has no feed.
//!
//! [`StoreConfig`] is the `store` section of the tenancy configuration.
//!
//! Design: one store generic over the database ([`SqlBackend`]); the statements are written once
//! with placeholders that each backend's dialect fills (table names, JSON casts, row locks), and
//! a backend adds only what is its own: connecting, its migrations, how it reports a broken
//! unique constraint, and (PostgreSQL) the change feed.
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tenancy_core::{CreateTenant, StatusChange, TenantInfo, TenantStatus, TenantStore};
//! use tenancy_store_sql::{SqlTenantStore, StoreConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let config = StoreConfig::with_url(format!("sqlite://{}", dir.path().join("t.db").display()));
//! let store = SqlTenantStore::connect(&config).await?;
//! let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?;
//! let tenant = store.create(tenant).await?;
//! let change = StatusChange { from: TenantStatus::Provisioning, to: TenantStatus::Active, reason: None };
//! assert!(store.set_status(tenant.id, change).await?.is_active());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
// The crate docs link to items of both backends; a build with one of them leaves some unresolved.
#![cfg_attr(
    not(all(feature = "postgres", feature = "sqlite")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod config;

pub use config::StoreConfig;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod error;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod migrate;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod notice;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod row;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod shared;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql_store;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod statements;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod store;
pub mod telemetry;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use notice::{ChangeKind, ChangeNotice};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql_store::{SqlBackend, SqlStore};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use store::SqlTenantStore;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{ChangeFeed, FeedSettings, PgTenantStore};

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteTenantStore;
