//! The SQL context bridge: tenant-scoped transactions that take the tenant from the task-local
//! context when the bridge is on.

use std::time::Duration;

use tenancy_core::{Health, TenantError, TenantId};
use tenancy_isolation_sql::{TenantDb, TenantTransaction};

use super::IntegrationConfig;

/// Tenant-scoped database access: every transaction is isolated for one tenant (row-level
/// setting, schema search path, or the tenant's own database, as the isolation strategy says).
///
/// With the SQL context bridge on ([`IntegrationConfig::sql_context_bridge`]), [`begin`](Self::begin)
/// takes the tenant the middleware put in scope, so handlers never name it; with the bridge off,
/// `begin` refuses and the tenant must be named with [`begin_for`](Self::begin_for).
#[derive(Debug, Clone)]
pub struct TenantDatabase {
    db: TenantDb,
    bridge: bool,
}

impl TenantDatabase {
    /// Access through `db`; `bridge` as [`IntegrationConfig::sql_context_bridge`].
    #[must_use]
    pub fn new(db: TenantDb, bridge: bool) -> Self {
        Self { db, bridge }
    }

    /// Access through `db`, bridged as `config` says.
    #[must_use]
    pub fn from_config(db: TenantDb, config: &IntegrationConfig) -> Self {
        Self::new(db, config.sql_context_bridge)
    }

    /// Whether [`begin`](Self::begin) takes the tenant from the context.
    #[must_use]
    pub fn is_bridged(&self) -> bool {
        self.bridge
    }

    /// The underlying transaction factory.
    #[must_use]
    pub fn inner(&self) -> &TenantDb {
        &self.db
    }

    /// Begins a transaction for the tenant in scope.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the bridge is off; [`TenantError::Resolution`] when no
    /// tenant is in scope (it fails closed); otherwise as [`TenantDb::begin`].
    pub async fn begin(&self) -> Result<TenantTransaction, TenantError> {
        if !self.bridge {
            return Err(TenantError::Configuration(
                "integration.sql_context_bridge is off: name the tenant with begin_for(tenant)"
                    .into(),
            ));
        }
        self.db.begin_current().await
    }

    /// Begins a transaction for `tenant`, whatever the context holds.
    ///
    /// # Errors
    /// As [`TenantDb::begin`].
    pub async fn begin_for(&self, tenant: TenantId) -> Result<TenantTransaction, TenantError> {
        self.db.begin(tenant).await
    }
}

/// Whether `pool` hands out a working connection within `timeout`, with its size as details.
pub(crate) async fn pool_health(pool: &sqlx::PgPool, timeout: Duration) -> Health {
    let probe = sqlx::query("SELECT 1").execute(pool);
    let health = match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(_)) => Health::healthy(),
        Ok(Err(e)) => Health::unhealthy(format!("the isolation pool failed: {e}")),
        Err(_) => Health::unhealthy(format!(
            "the isolation pool did not answer within {} ms",
            timeout.as_millis()
        )),
    };
    health
        .with_detail("pool_size", pool.size().to_string())
        .with_detail("pool_idle", pool.num_idle().to_string())
}
