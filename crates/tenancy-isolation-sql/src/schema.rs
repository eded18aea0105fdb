//! Schema per tenant: [`SchemaStrategy`].

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::{IsolationPlan, IsolationStep, IsolationStrategy, TenantError, TenantId};

use crate::config::DeprovisionPolicy;
use crate::ident::{archived_schema, quote_ident, tenant_schema};
use crate::migrate::{Migrations, TenantMigrator};

/// Schema per tenant (`schema`): each tenant's tables live in the schema `tenant_<32 hex>`, derived
/// from its id alone and always quoted; each tenant transaction sets `search_path` to that schema
/// and `pg_temp`, never `public`.
///
/// Provisioning creates the schema and applies the tenant migrations in one transaction
/// (idempotent); deprovisioning renames it to `archived_<32 hex>_<unix seconds>` or drops it
/// ([`DeprovisionPolicy`]), and is idempotent too.
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_core::IsolationStrategy;
/// use tenancy_isolation_sql::{DeprovisionPolicy, Migrations, SchemaStrategy, TenantDatabase, TenantMigrator};
///
/// # async fn example(owner: sqlx::PgPool, app: sqlx::PgPool, tenant: tenancy_core::TenantId) -> Result<(), tenancy_core::TenantError> {
/// let migrator = TenantMigrator::new(owner.clone(), Migrations::from_dir("migrations/tenant")?).grant_to("app")?;
/// let schema = Arc::new(SchemaStrategy::new(owner, migrator, DeprovisionPolicy::Rename));
/// schema.provision(tenant).await?;
/// let db = TenantDatabase::new(app, schema);
/// let tx = db.begin(tenant).await?; // search_path = "tenant_<hex>", pg_temp
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SchemaStrategy {
    pool: PgPool,
    migrator: TenantMigrator,
    policy: DeprovisionPolicy,
    distributed: bool,
}

impl SchemaStrategy {
    /// A strategy running DDL on `owner_pool` (the role that owns tenant schemas), applying
    /// `migrator`'s migrations on provisioning.
    #[must_use]
    pub fn new(owner_pool: PgPool, migrator: TenantMigrator, policy: DeprovisionPolicy) -> Self {
        Self {
            pool: owner_pool,
            migrator,
            policy,
            distributed: false,
        }
    }

    /// On a Citus coordinator: provisions each tenant schema as a distributed schema (Citus
    /// schema-based sharding), so the schema and its tables live together on one worker node,
    /// placed by Citus, and the tenant transaction (the same `search_path` transaction) is routed
    /// to that node. Schemas created before this was on stay where they are (Citus's
    /// `citus_schema_distribute` distributes one later).
    ///
    /// Only for a server with the `citus` extension: provisioning fails on plain PostgreSQL
    /// (creating the schema and its tables distributed requires Citus).
    #[must_use]
    pub fn distributed_on_citus(mut self, enabled: bool) -> Self {
        self.distributed = enabled;
        self
    }

    /// Whether tenant schemas are provisioned as Citus distributed schemas.
    #[must_use]
    pub fn is_distributed(&self) -> bool {
        self.distributed
    }

    /// A strategy without tenant migrations.
    #[must_use]
    pub fn without_migrations(owner_pool: PgPool, policy: DeprovisionPolicy) -> Self {
        let migrator = TenantMigrator::new(owner_pool.clone(), Migrations::default());
        Self::new(owner_pool, migrator, policy)
    }

    fn db_err(tenant: TenantId, what: &str) -> impl FnOnce(sqlx::Error) -> TenantError + '_ {
        move |e| TenantError::isolation(format!("{what} for tenant {tenant}"), e)
    }
}

#[async_trait]
impl IsolationStrategy for SchemaStrategy {
    fn name(&self) -> &str {
        "schema"
    }

    async fn provision(&self, tenant: TenantId) -> Result<(), TenantError> {
        let quoted = quote_ident(&tenant_schema(tenant));
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(Self::db_err(tenant, "beginning provisioning"))?;
        // Serialises concurrent provisioning of one tenant (CREATE SCHEMA IF NOT EXISTS can race).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(tenant_schema(tenant))
            .execute(&mut *tx)
            .await
            .map_err(Self::db_err(tenant, "locking the schema"))?;
        let create = if self.distributed {
            // Transaction-local: every schema this transaction creates becomes distributed, and
            // the tables the migrations create in it become its single-shard tables.
            format!(
                "SET LOCAL citus.enable_schema_based_sharding = on; \
                 CREATE SCHEMA IF NOT EXISTS {quoted}"
            )
        } else {
            format!("CREATE SCHEMA IF NOT EXISTS {quoted}")
        };
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .map_err(Self::db_err(tenant, "creating the schema"))?;
        let ran = self.migrator.apply_pending(&mut tx, tenant).await?;
        tx.commit()
            .await
            .map_err(Self::db_err(tenant, "committing provisioning"))?;
        tracing::info!(tenant_id = %tenant, migrations = ran, "tenant schema provisioned");
        Ok(())
    }

    async fn deprovision(&self, tenant: TenantId) -> Result<(), TenantError> {
        let schema = tenant_schema(tenant);
        let quoted = quote_ident(&schema);
        let sql = match self.policy {
            DeprovisionPolicy::Drop => format!("DROP SCHEMA IF EXISTS {quoted} CASCADE"),
            DeprovisionPolicy::Rename => {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                )
                .bind(&schema)
                .fetch_one(&self.pool)
                .await
                .map_err(Self::db_err(tenant, "looking up the schema"))?;
                if !exists {
                    return Ok(());
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!(
                    "ALTER SCHEMA {quoted} RENAME TO {}",
                    quote_ident(&archived_schema(tenant, now))
                )
            }
        };
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await {
            Ok(_) => {}
            // Renamed or dropped concurrently since we looked: the outcome is the same.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3F000") => {}
            Err(e) => return Err(Self::db_err(tenant, "deprovisioning the schema")(e)),
        }
        tracing::info!(tenant_id = %tenant, policy = ?self.policy, "tenant schema deprovisioned");
        Ok(())
    }

    async fn plan(&self, tenant: TenantId) -> Result<IsolationPlan, TenantError> {
        Ok(IsolationPlan::new(vec![IsolationStep::SearchPath {
            schema: tenant_schema(tenant),
        }]))
    }
}
