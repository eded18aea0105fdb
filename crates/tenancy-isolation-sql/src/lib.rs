//! Tenant data isolation for the `tenancy` library, in PostgreSQL.
//!
//! Without features this crate holds what needs no database driver: the strategy registry
//! ([`IsolationRegistry`], [`AssignedStrategy`]), row-level isolation ([`RowLevelStrategy`],
//! [`protect_table_sql`]), the database-per-tenant contracts ([`DatabaseProvisioner`],
//! [`PlacementStore`], [`Placement`], [`DatabaseStrategy`]), identifier rules and
//! [`IsolationConfig`].
//!
//! Feature `sql` adds everything that talks to PostgreSQL (sqlx): [`TenantDatabase`] (tenant-scoped
//! transactions), [`SchemaStrategy`], [`RlsAudit`], [`DatabaseRouter`], [`PgDatabaseProvisioner`],
//! [`PgIsolationStore`], [`TenantMigrator`] and, on a Citus coordinator, [`CitusPlacement`]
//! (where tenants live, moving them between nodes, per-tenant statistics).
//!
//! Every isolation setting is transaction-local: a [`TenantDatabase`] transaction sets
//! `app.tenant_id` (row level) with `SET LOCAL`, or the `search_path` to
//! `"tenant_<32 hex>", pg_temp` (schema), or runs on the tenant's own pool (database), and nothing
//! of it survives the transaction on a pooled connection.
//!
//! ```
//! use std::sync::Arc;
//! use tenancy_core::{IsolationStep, TenantId};
//! use tenancy_isolation_sql::{IsolationConfig, IsolationRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let config = IsolationConfig::default();
//! let registry = IsolationRegistry::with_defaults();
//! let strategy = registry.get(&config.strategy).unwrap();
//! let tenant = TenantId::new();
//! let plan = strategy.plan(tenant).await.unwrap();
//! assert!(matches!(&plan.steps[0], IsolationStep::SetLocal { name, .. } if name == "app.tenant_id"));
//! # });
//! ```

mod config;
mod database;
mod finding;
mod ident;
mod registry;
mod row_level;
pub mod telemetry;

#[cfg(feature = "sql")]
mod audit;
#[cfg(feature = "sql")]
mod budget;
#[cfg(feature = "sql")]
mod migrate;
#[cfg(feature = "migration-audit")]
mod migration_audit;
#[cfg(feature = "sql")]
mod placement;
#[cfg(feature = "sql")]
mod router;
#[cfg(feature = "sql")]
mod schema;
#[cfg(feature = "sql")]
mod store;
#[cfg(feature = "sql")]
mod tx;

pub use config::{CitusConfig, DeprovisionPolicy, IsolationConfig, ShardTransferMode};
pub use database::{
    DatabaseProvisioner, DatabaseStrategy, Placement, PlacementStore, validate_server_key,
};
pub use finding::AuditFinding;
pub use ident::{
    ARCHIVED_SCHEMA_PREFIX, MAX_IDENTIFIER_BYTES, TENANT_SCHEMA_PREFIX, TableName, archived_schema,
    quote_ident, tenant_of_schema, tenant_schema, validate_identifier, validate_setting_name,
};
pub use registry::{AssignedStrategy, AssignmentStore, IsolationRegistry};
pub use row_level::{DEFAULT_TENANT_SETTING, RowLevelStrategy, protect_table_sql};

#[cfg(feature = "sql")]
pub use audit::{AuditReport, RlsAudit, audit_row_level_security};
#[cfg(feature = "sql")]
pub use budget::{BudgetError, TransactionBudget, TransactionBudgets};
#[cfg(feature = "sql")]
pub use migrate::{
    Migration, MigrationProgress, MigrationReport, Migrations, TenantFailure, TenantMigrator,
    VERSION_COMMENT_PREFIX,
};
#[cfg(feature = "migration-audit")]
pub use migration_audit::{
    MigrationAudit, MigrationAuditError, MigrationAuditReport, MigrationFile, MigrationFinding,
};
#[cfg(feature = "sql")]
pub use placement::{
    CitusPlacement, IsolateOutcome, MoveOutcome, Node, NodeName, PlacementError, PlacementKind,
    RebalanceProgress, RebalanceReport, RebalancedTenant, TenantPlacement, TenantStats,
};
#[cfg(feature = "sql")]
pub use router::{DatabaseRouter, PgDatabaseProvisioner};
#[cfg(feature = "sql")]
pub use schema::SchemaStrategy;
#[cfg(feature = "sql")]
pub use store::{PgIsolationStore, STORE_SCHEMA};
#[cfg(feature = "sql")]
pub use tx::{DEFAULT_TRANSACTION_WAIT, TenantDatabase, TenantTransaction};
