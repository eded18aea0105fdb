//! Versioned tenant migrations ([`Migrations`]) and [`TenantMigrator`], which applies them to every
//! tenant schema with `sqlx::migrate` (ordered, checksummed, recorded).
//!
//! Architecture invariant: a tenant's pending files and their rows in the schema's own
//! `tenancy_schema_migrations` table are written in one transaction, together with the schema comment
//! `tenancy:version=N`; the table is the source of truth, the comment lets one catalog query tell
//! which schemas are current. Each tenant's transaction takes that schema's advisory lock, so
//! different tenants migrate concurrently and one tenant never twice at once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::StreamExt;
use sqlx::migrate::{Migrate, MigrateError, Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, SqlSafeStr};
use tenancy_core::{TenantError, TenantId};

use crate::ident::{quote_ident, tenant_of_schema, tenant_schema};

/// The prefix of the schema comment that records a tenant schema's migration version.
pub const VERSION_COMMENT_PREFIX: &str = "tenancy:version=";

/// One versioned SQL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    version: u32,
    name: String,
    sql: String,
}

impl Migration {
    /// A migration; `version` must be at least 1.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when `version` is 0.
    pub fn new(
        version: u32,
        name: impl Into<String>,
        sql: impl Into<String>,
    ) -> Result<Self, TenantError> {
        if version == 0 {
            return Err(TenantError::invalid("migration", "versions start at 1"));
        }
        Ok(Self {
            version,
            name: name.into(),
            sql: sql.into(),
        })
    }

    /// The version.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The name (the file name without the version and `.sql`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// An ordered set of migrations with unique versions. New files must take versions above every
/// released one: a schema is current when its recorded version is the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrations {
    list: Vec<Migration>,
}

impl Migrations {
    /// Orders `list` by version.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when two migrations share a version.
    pub fn new(mut list: Vec<Migration>) -> Result<Self, TenantError> {
        list.sort_by_key(|m| m.version);
        if let Some(pair) = list.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(TenantError::invalid(
                "migration",
                format!(
                    "version {} is used by {} and {}",
                    pair[0].version, pair[0].name, pair[1].name
                ),
            ));
        }
        Ok(Self { list })
    }

    /// Loads every `NNNN_name.sql` file of `dir` (other files are an error, so a typo is not
    /// silently skipped).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the directory cannot be read or a file is misnamed.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TenantError> {
        let dir = dir.as_ref();
        let read_err = |e: std::io::Error| {
            TenantError::Configuration(format!(
                "reading the migrations directory {}: {e}",
                dir.display()
            ))
        };
        let mut list = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if !path.is_file() {
                continue;
            }
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let parsed = file
                .strip_suffix(".sql")
                .and_then(|stem| stem.split_once('_'))
                .and_then(|(v, name)| Some((v.parse::<u32>().ok()?, name)))
                .filter(|(v, name)| *v > 0 && !name.is_empty());
            let Some((version, name)) = parsed else {
                return Err(TenantError::Configuration(format!(
                    "migration file {} is not named NNNN_name.sql",
                    path.display()
                )));
            };
            let sql = std::fs::read_to_string(&path).map_err(read_err)?;
            list.push(Migration::new(version, name, sql)?);
        }
        Self::new(list).map_err(|e| TenantError::Configuration(e.to_string()))
    }

    /// The migrations of `config.migrations_dir`, or none when it is unset.
    ///
    /// # Errors
    /// As [`from_dir`](Self::from_dir).
    pub fn from_config(config: &crate::config::IsolationConfig) -> Result<Self, TenantError> {
        config
            .migrations_dir
            .as_deref()
            .map_or_else(|| Ok(Self::default()), Self::from_dir)
    }

    /// The highest version (0 when empty).
    #[must_use]
    pub fn latest(&self) -> u32 {
        self.list.last().map_or(0, |m| m.version)
    }

    /// The migrations, in order.
    #[must_use]
    pub fn as_slice(&self) -> &[Migration] {
        &self.list
    }
}

fn migration_err(tenant: TenantId, what: &str) -> impl FnOnce(sqlx::Error) -> TenantError + '_ {
    move |e| TenantError::migration(format!("{what} for tenant {tenant}"), e)
}

/// The table of a tenant schema that records its applied migrations.
pub(crate) const MIGRATIONS_TABLE: &str = "tenancy_schema_migrations";
/// The version table of releases before [`MIGRATIONS_TABLE`]; adopted and dropped when found.
const LEGACY_TABLE: &str = "tenancy_migrations";

/// `migrations` as the runner takes them.
fn prepare(migrations: &Migrations) -> Arc<[SqlxMigration]> {
    migrations
        .as_slice()
        .iter()
        .map(|m| {
            SqlxMigration::new(
                i64::from(m.version),
                m.name.clone().into(),
                MigrationType::Simple,
                AssertSqlSafe(m.sql.clone()).into_sql_str(),
                false,
            )
        })
        .collect()
}

/// A runner for one tenant schema: its table in that schema, no lock of its own (each tenant's
/// transaction takes the schema's advisory lock instead, so tenants migrate concurrently).
fn schema_migrator(migrations: Vec<SqlxMigration>, quoted_schema: &str) -> Migrator {
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(records_table(quoted_schema));
    migrator.set_locking(false);
    migrator
}

/// The migrations table of the schema `quoted_schema`.
fn records_table(quoted_schema: &str) -> String {
    format!("{quoted_schema}.{MIGRATIONS_TABLE}")
}

/// Applies `migrations` not yet recorded in the tenant schema, on `conn` inside the caller's
/// transaction; records them and the schema comment in that transaction. Returns how many ran.
async fn apply_pending(
    conn: &mut PgConnection,
    tenant: TenantId,
    migrations: &[SqlxMigration],
    latest: u32,
    grant_to: Option<&str>,
) -> Result<usize, TenantError> {
    let schema = tenant_schema(tenant);
    let quoted = quote_ident(&schema);
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&schema)
        .execute(&mut *conn)
        .await
        .map_err(migration_err(tenant, "locking the schema"))?;
    // Every migration runs with the tenant schema first on the search path.
    crate::tx::set_search_path(&mut *conn, tenant, &schema).await?;
    let migrator = schema_migrator(migrations.to_vec(), &quoted);
    let refused = |e: MigrateError| refused(tenant, migrations, e);
    let table = records_table(&quoted);
    conn.ensure_migrations_table(&table)
        .await
        .map_err(refused)?;
    adopt_legacy(&mut *conn, tenant, migrations, &quoted).await?;
    let applied = conn
        .list_applied_migrations(&table)
        .await
        .map_err(refused)?;
    let ran = migrations
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .count();
    migrator
        .run_direct(None, &mut *conn, false)
        .await
        .map_err(refused)?;
    // COMMENT takes no bind parameters; the value is a number we format.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "COMMENT ON SCHEMA {quoted} IS '{VERSION_COMMENT_PREFIX}{latest}'"
    )))
    .execute(&mut *conn)
    .await
    .map_err(migration_err(tenant, "recording the schema version"))?;
    if let Some(role) = grant_to {
        let role = quote_ident(role);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "GRANT USAGE ON SCHEMA {quoted} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {quoted} TO {role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted} TO {role}"
        )))
        .execute(&mut *conn)
        .await
        .map_err(migration_err(tenant, "granting the application role"))?;
    }
    Ok(ran)
}

/// Records the versions a schema's old version table lists as applied (without running them),
/// then drops that table.
async fn adopt_legacy(
    conn: &mut PgConnection,
    tenant: TenantId,
    migrations: &[SqlxMigration],
    quoted: &str,
) -> Result<(), TenantError> {
    let legacy = format!("{quoted}.{LEGACY_TABLE}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&legacy)
        .fetch_one(&mut *conn)
        .await
        .map_err(migration_err(tenant, "looking for the old version table"))?;
    if !exists {
        return Ok(());
    }
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version::bigint FROM {legacy}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(migration_err(tenant, "reading the old version table"))?;
    let known: Vec<SqlxMigration> = migrations
        .iter()
        .filter(|m| versions.contains(&m.version))
        .cloned()
        .collect();
    if let Some(unknown) = versions
        .iter()
        .find(|v| !known.iter().any(|m| m.version == **v))
    {
        return Err(refused(
            tenant,
            migrations,
            MigrateError::VersionMissing(*unknown),
        ));
    }
    schema_migrator(known, quoted)
        .run_direct(None, &mut *conn, true)
        .await
        .map_err(|e| refused(tenant, migrations, e))?;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {legacy}")))
        .execute(&mut *conn)
        .await
        .map_err(migration_err(tenant, "dropping the old version table"))?;
    tracing::debug!(tenant_id = %tenant, ?versions, "adopted the old version table");
    Ok(())
}

/// The error of a refused or failed run on a tenant schema.
fn refused(tenant: TenantId, migrations: &[SqlxMigration], e: MigrateError) -> TenantError {
    let file = |version: i64| {
        migrations
            .iter()
            .find(|m| m.version == version)
            .map_or_else(
                || format!("{version:04}"),
                |m| format!("{version:04}_{}", m.description),
            )
    };
    let message = match &e {
        MigrateError::ExecuteMigration(_, version) => {
            format!("migration {} for tenant {tenant}", file(*version))
        }
        MigrateError::VersionMissing(version) => format!(
            "tenant {tenant}: its schema records migration {version:04}, which this binary does \
             not have: migrate with the release that has it"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "tenant {tenant}: migration {} differs from the one recorded when it was applied: \
             released migrations must not change",
            file(*version)
        ),
        other => format!("migrating tenant {tenant}: {other}"),
    };
    TenantError::migration(message, e)
}

/// What one tenant's migration came to, passed to the progress callback.
#[derive(Debug)]
pub struct MigrationProgress<'a> {
    /// The tenant.
    pub tenant: TenantId,
    /// `Ok(n)`: `n` files applied; `Err`: why it failed.
    pub outcome: Result<usize, &'a TenantError>,
    /// Tenants finished so far in this run (including this one).
    pub finished: usize,
    /// Tenants this run had to migrate.
    pub total: usize,
}

/// A tenant whose migration failed.
#[derive(Debug)]
pub struct TenantFailure {
    /// The tenant.
    pub tenant: TenantId,
    /// Why.
    pub error: TenantError,
}

/// The outcome of a [`TenantMigrator::run`].
#[derive(Debug, Default)]
pub struct MigrationReport {
    /// Tenant schemas found.
    pub schemas: usize,
    /// Schemas already at the latest version (found from the catalog, never connected to).
    pub already_current: usize,
    /// Tenants migrated in this run.
    pub done: Vec<TenantId>,
    /// Tenants whose migration failed (the run stopped starting new ones at the first).
    pub failed: Vec<TenantFailure>,
    /// Tenants not migrated because the run stopped; run again to resume.
    pub pending: Vec<TenantId>,
    /// Queries the run sent outside tenant transactions (the catalog query: 1).
    pub catalog_queries: usize,
    /// Tenant transactions the run opened.
    pub tenant_transactions: usize,
}

impl MigrationReport {
    /// Whether every tenant schema is now current.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.pending.is_empty()
    }
}

/// Applies [`Migrations`] to every tenant schema (`tenant_<32 hex>`) of a database: one transaction
/// per tenant, at most `concurrency` at once, stopping at the first failure; run it again to resume.
///
/// ```no_run
/// use tenancy_isolation_sql::{Migrations, TenantMigrator};
///
/// # async fn example(owner_pool: sqlx::PgPool) -> Result<(), tenancy_core::TenantError> {
/// let migrator = TenantMigrator::new(owner_pool, Migrations::from_dir("migrations/tenant")?);
/// let report = migrator.run(|p| println!("{}/{} {}", p.finished, p.total, p.tenant)).await?;
/// assert!(report.is_complete(), "failed: {:?}, pending: {}", report.failed, report.pending.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantMigrator {
    pool: PgPool,
    migrations: Arc<Migrations>,
    /// `migrations` as the runner takes them.
    prepared: Arc<[SqlxMigration]>,
    concurrency: usize,
    grant_to: Option<String>,
}

impl TenantMigrator {
    /// A migrator running on `pool` (a role that owns the tenant schemas), concurrency 2.
    #[must_use]
    pub fn new(pool: PgPool, migrations: Migrations) -> Self {
        Self {
            pool,
            prepared: prepare(&migrations),
            migrations: Arc::new(migrations),
            concurrency: 2,
            grant_to: None,
        }
    }

    /// At most `n` tenants at once (at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// After migrating a tenant, grants `role` usage of its schema and DML on its tables.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when `role` is not a valid identifier.
    pub fn grant_to(mut self, role: &str) -> Result<Self, TenantError> {
        crate::ident::validate_identifier("role", role)?;
        self.grant_to = Some(role.to_owned());
        Ok(self)
    }

    /// The migrations.
    #[must_use]
    pub fn migrations(&self) -> &Migrations {
        &self.migrations
    }

    /// Applies the pending migrations to the tenant's schema in the caller's transaction `conn`
    /// (recording them and the schema comment there too); returns how many ran.
    pub(crate) async fn apply_pending(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<usize, TenantError> {
        apply_pending(
            conn,
            tenant,
            &self.prepared,
            self.migrations.latest(),
            self.grant_to.as_deref(),
        )
        .await
    }

    /// Every tenant schema and the version its comment records, from one catalog query.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when the query fails.
    pub async fn schema_versions(&self) -> Result<Vec<(TenantId, u32)>, TenantError> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT nspname::text, obj_description(oid, 'pg_namespace') FROM pg_namespace \
             WHERE nspname ~ '^tenant_[0-9a-f]{32}$'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| TenantError::migration("listing tenant schemas", e))?;
        let mut versions: Vec<(TenantId, u32)> = rows
            .into_iter()
            .filter_map(|(schema, comment)| {
                let version = comment
                    .as_deref()
                    .and_then(|c| c.strip_prefix(VERSION_COMMENT_PREFIX))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Some((tenant_of_schema(&schema)?, version))
            })
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Migrates one tenant's schema in one transaction; returns how many files ran.
    ///
    /// # Errors
    /// [`TenantError::Migration`] naming the failed file; nothing of it is kept.
    pub async fn migrate_tenant(&self, tenant: TenantId) -> Result<usize, TenantError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(migration_err(tenant, "beginning the migration"))?;
        let ran = self.apply_pending(&mut tx, tenant).await?;
        tx.commit()
            .await
            .map_err(migration_err(tenant, "committing the migration"))?;
        tracing::debug!(tenant_id = %tenant, files = ran, "tenant schema migrated");
        Ok(ran)
    }

    /// Migrates every tenant schema that is behind, reporting each one to `progress`.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when the catalog query fails; tenants' failures are in the report.
    pub async fn run(
        &self,
        progress: impl Fn(&MigrationProgress<'_>) + Send + Sync,
    ) -> Result<MigrationReport, TenantError> {
        let versions = self.schema_versions().await?;
        let latest = self.migrations.latest();
        let behind: Vec<TenantId> = versions
            .iter()
            .filter(|(_, v)| *v < latest)
            .map(|(t, _)| *t)
            .collect();
        let mut report = MigrationReport {
            schemas: versions.len(),
            already_current: versions.len() - behind.len(),
            catalog_queries: 1,
            ..MigrationReport::default()
        };
        let total = behind.len();
        let stop = AtomicBool::new(false);
        let finished = AtomicUsize::new(0);
        let (stop, finished, progress) = (&stop, &finished, &progress);
        let mut outcomes = futures_util::stream::iter(behind)
            .map(|tenant| async move {
                if stop.load(Ordering::Acquire) {
                    return (tenant, None);
                }
                let outcome = self.migrate_tenant(tenant).await;
                if outcome.is_err() {
                    stop.store(true, Ordering::Release);
                }
                let n = finished.fetch_add(1, Ordering::AcqRel) + 1;
                progress(&MigrationProgress {
                    tenant,
                    outcome: outcome.as_ref().map(|ran| *ran),
                    finished: n,
                    total,
                });
                (tenant, Some(outcome))
            })
            .buffer_unordered(self.concurrency);
        while let Some((tenant, outcome)) = outcomes.next().await {
            match outcome {
                None => report.pending.push(tenant),
                Some(Ok(_)) => {
                    report.tenant_transactions += 1;
                    report.done.push(tenant);
                }
                Some(Err(error)) => {
                    report.tenant_transactions += 1;
                    tracing::warn!(tenant_id = %tenant, %error, "tenant migration failed; stopping");
                    report.failed.push(TenantFailure { tenant, error });
                }
            }
        }
        report.pending.sort_unstable();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_load_in_order_and_reject_misnamed_files() {
        let dir = std::env::temp_dir().join(format!("tenancy-mig-{}", TenantId::new().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0002_second.sql"), "SELECT 2").unwrap();
        std::fs::write(dir.join("0001_first.sql"), "SELECT 1").unwrap();
        let m = Migrations::from_dir(&dir).unwrap();
        assert_eq!(m.latest(), 2);
        assert_eq!(m.as_slice()[0].name(), "first");
        std::fs::write(dir.join("0002_dup.sql"), "SELECT 2").unwrap();
        assert!(matches!(
            Migrations::from_dir(&dir),
            Err(TenantError::Configuration(_))
        ));
        std::fs::remove_file(dir.join("0002_dup.sql")).unwrap();
        std::fs::write(dir.join("notes.sql"), "").unwrap();
        assert!(
            matches!(Migrations::from_dir(&dir), Err(TenantError::Configuration(m)) if m.contains("notes.sql"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Migrations::from_dir(&dir).is_err());
    }
}
