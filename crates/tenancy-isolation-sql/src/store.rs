//! [`PgIsolationStore`]: strategy assignments and database placements, persisted in PostgreSQL.

use async_trait::async_trait;
use sqlx::PgPool;
use tenancy_core::{TenantError, TenantId};

use crate::database::{Placement, PlacementStore};
use crate::registry::AssignmentStore;

/// The schema holding the store's tables.
pub const STORE_SCHEMA: &str = "tenancy_isolation";

const INSTALL: &str = "\
CREATE SCHEMA IF NOT EXISTS tenancy_isolation;
CREATE TABLE IF NOT EXISTS tenancy_isolation.strategy_assignments (
    tenant_id uuid PRIMARY KEY,
    strategy text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tenancy_isolation.placements (
    tenant_id uuid PRIMARY KEY,
    server text NOT NULL,
    database text NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now()
);";

/// Per-tenant strategy assignments and placements in the tables of the schema `tenancy_isolation`
/// (`strategy_assignments`, `placements`), so they survive restarts.
#[derive(Debug, Clone)]
pub struct PgIsolationStore {
    pool: PgPool,
}

impl PgIsolationStore {
    /// A store on `pool` (its role needs SELECT, INSERT, UPDATE, DELETE on the tables).
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates the schema and tables if absent (run as the owning role).
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the DDL fails.
    pub async fn install(pool: &PgPool) -> Result<(), TenantError> {
        sqlx::raw_sql(INSTALL)
            .execute(pool)
            .await
            .map_err(|e| TenantError::storage("installing the tenancy_isolation tables", e))?;
        Ok(())
    }

    /// Grants `role` what the store needs on its tables.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] for an invalid role name; [`TenantError::Storage`].
    pub async fn grant(pool: &PgPool, role: &str) -> Result<(), TenantError> {
        crate::ident::validate_identifier("role", role)?;
        let role = crate::ident::quote_ident(role);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "GRANT USAGE ON SCHEMA tenancy_isolation TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenancy_isolation TO {role}"
        )))
        .execute(pool)
        .await
        .map_err(|e| TenantError::storage("granting the tenancy_isolation tables", e))?;
        Ok(())
    }
}

fn storage(what: &'static str, tenant: TenantId) -> impl FnOnce(sqlx::Error) -> TenantError {
    move |e| TenantError::storage(format!("{what} of tenant {tenant}"), e)
}

impl PgIsolationStore {
    /// Runs `sql`, whose one parameter is the tenant id; `what` names it in the error.
    async fn execute_for(
        &self,
        sql: &'static str,
        tenant: TenantId,
        what: &'static str,
    ) -> Result<(), TenantError> {
        sqlx::query(sql)
            .bind(tenant.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(storage(what, tenant))?;
        Ok(())
    }
}

#[async_trait]
impl AssignmentStore for PgIsolationStore {
    async fn assigned(&self, tenant: TenantId) -> Result<Option<String>, TenantError> {
        sqlx::query_scalar(
            "SELECT strategy FROM tenancy_isolation.strategy_assignments WHERE tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(storage("reading the strategy assignment", tenant))
    }

    async fn assign(&self, tenant: TenantId, name: &str) -> Result<(), TenantError> {
        sqlx::query(
            "INSERT INTO tenancy_isolation.strategy_assignments (tenant_id, strategy) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET strategy = EXCLUDED.strategy, assigned_at = now()",
        )
        .bind(tenant.as_uuid())
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(storage("writing the strategy assignment", tenant))?;
        Ok(())
    }

    async fn unassign(&self, tenant: TenantId) -> Result<(), TenantError> {
        self.execute_for(
            "DELETE FROM tenancy_isolation.strategy_assignments WHERE tenant_id = $1",
            tenant,
            "removing the strategy assignment",
        )
        .await
    }
}

#[async_trait]
impl PlacementStore for PgIsolationStore {
    async fn placement(&self, tenant: TenantId) -> Result<Option<Placement>, TenantError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT server, database FROM tenancy_isolation.placements WHERE tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(storage("reading the placement", tenant))?;
        row.map(|(server, database)| {
            Placement::new(server, database).map_err(|e| TenantError::Storage {
                message: format!("the stored placement of tenant {tenant} is invalid: {e}"),
                source: None,
            })
        })
        .transpose()
    }

    async fn set_placement(
        &self,
        tenant: TenantId,
        placement: &Placement,
    ) -> Result<(), TenantError> {
        sqlx::query(
            "INSERT INTO tenancy_isolation.placements (tenant_id, server, database) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET server = EXCLUDED.server, \
             database = EXCLUDED.database, placed_at = now()",
        )
        .bind(tenant.as_uuid())
        .bind(placement.server())
        .bind(placement.database())
        .execute(&self.pool)
        .await
        .map_err(storage("writing the placement", tenant))?;
        Ok(())
    }

    async fn remove_placement(&self, tenant: TenantId) -> Result<(), TenantError> {
        self.execute_for(
            "DELETE FROM tenancy_isolation.placements WHERE tenant_id = $1",
            tenant,
            "removing the placement",
        )
        .await
    }
}
