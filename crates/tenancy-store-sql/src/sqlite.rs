//! [`SqliteTenantStore`]: the tenant and config store on SQLite (feature `sqlite`).
//!
//! SQLite is embedded and single-process, so there is no change feed: the lifecycle service's
//! in-process invalidation (through [`Invalidators`](tenancy_core::Invalidators)) keeps this
//! process's caches fresh, and no other process shares the file in a supported deployment.
//!
//! Tables are named `tenancy_tenants`, `tenancy_config` and `tenancy_schema_version`. Ids are stored
//! as 16-byte BLOBs, so `ORDER BY id` matches [`TenantId`]'s order; JSON is stored as TEXT; write
//! transactions begin `IMMEDIATE` so that concurrent writers queue on the busy timeout instead of
//! failing to upgrade a read lock.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};
use tenancy_core::{
    ConfigStore, JsonObject, ListQuery, Page, Slug, StatusChange, TenantError, TenantId,
    TenantInfo, TenantStatus, TenantStore, UpdateTenant, Uuid,
};
use tracing::debug;

use crate::config::StoreConfig;
use crate::error::{
    database_error, duplicate_id, is_foreign_key_violation, not_found, ping, storage,
    tenant_storage,
};
use crate::migrate::{self, Migration};
use crate::row::{TenantRow, page, parse_config_value, parse_optional_value, to_json_text};
use crate::shared::{parse_status, refused_status_change, refused_status_reason};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "tenants and config overrides",
    sql: r"
CREATE TABLE tenancy_tenants (
    id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'inactive', 'suspended')),
    status_reason TEXT,
    plan TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX tenancy_tenants_active ON tenancy_tenants (id) WHERE status = 'active';
CREATE TABLE tenancy_config (
    tenant_id BLOB NOT NULL REFERENCES tenancy_tenants (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
",
}];

macro_rules! select_tenants {
    ($tail:literal) => {
        concat!(
            "SELECT t.id, t.slug, t.name, t.status, t.status_reason, t.plan, t.metadata, \
             COALESCE((SELECT json_group_array(json_array(c.key, c.value)) \
                       FROM tenancy_config c WHERE c.tenant_id = t.id), '[]') AS config, \
             t.created_at, t.updated_at FROM tenancy_tenants t ",
            $tail
        )
    };
}

const GET_BY_ID: &str = select_tenants!("WHERE t.id = ?1");
const GET_BY_SLUG: &str = select_tenants!("WHERE t.slug = ?1");
const LIST_FIRST: &str =
    select_tenants!("WHERE (?1 = 0 OR t.status = 'active') ORDER BY t.id LIMIT ?2");
const LIST_AFTER: &str =
    select_tenants!("WHERE t.id > ?1 AND (?2 = 0 OR t.status = 'active') ORDER BY t.id LIMIT ?3");
const INSERT_TENANT: &str = "INSERT INTO tenancy_tenants \
    (id, slug, name, status, status_reason, plan, metadata, created_at, updated_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const UPSERT_CONFIG: &str = "INSERT INTO tenancy_config (tenant_id, key, value) VALUES (?1, ?2, ?3) \
    ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value";
const UPDATE_TENANT: &str = "UPDATE tenancy_tenants \
    SET slug = ?2, name = ?3, plan = ?4, metadata = ?5, updated_at = ?6 WHERE id = ?1";
const SET_STATUS: &str = "UPDATE tenancy_tenants SET status = ?3, status_reason = ?4, updated_at = ?5 \
    WHERE id = ?1 AND status = ?2";
const SET_STATUS_REASON: &str = "UPDATE tenancy_tenants SET status_reason = ?3, updated_at = ?4 \
    WHERE id = ?1 AND status = ?2";
const STATUS_OF: &str = "SELECT status FROM tenancy_tenants WHERE id = ?1";
const EXISTS: &str = "SELECT 1 FROM tenancy_tenants WHERE id = ?1";
const GET_CONFIG: &str = "SELECT value FROM tenancy_config WHERE tenant_id = ?1 AND key = ?2";
const GET_ALL_CONFIG: &str =
    "SELECT key, value FROM tenancy_config WHERE tenant_id = ?1 ORDER BY key";
const DELETE_CONFIG: &str =
    "DELETE FROM tenancy_config WHERE tenant_id = ?1 AND key = ?2 RETURNING value";

/// The tenant and config store on SQLite.
///
/// ```
/// use tenancy_core::{CreateTenant, TenantInfo, TenantStore};
/// use tenancy_store_sql::{SqliteTenantStore, StoreConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let url = format!("sqlite://{}", dir.path().join("tenants.db").display());
/// let store = SqliteTenantStore::connect(&StoreConfig::with_url(url)).await?;
/// let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?;
/// let created = store.create(tenant).await?;
/// assert_eq!(store.get_by_slug(&"acme".parse()?).await?.map(|t| t.id), Some(created.id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteTenantStore {
    pool: SqlitePool,
}

impl SqliteTenantStore {
    /// Opens (creating if missing) the database of `config.url` (`sqlite://path`, in WAL mode, or
    /// `sqlite::memory:`, kept alive by one pinned connection), and runs the migrations unless
    /// `config.migrate` is off.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid configuration or URL,
    /// [`TenantError::Storage`] when the file cannot be opened, [`TenantError::Migration`] when
    /// migrating fails.
    pub async fn connect(config: &StoreConfig) -> Result<Self, TenantError> {
        config.validate()?;
        let url = config.require_url()?;
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| TenantError::Configuration(format!("store.url is not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let mut pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout());
        if is_in_memory(url) {
            // An in-memory database lives as long as one connection to it: keep one open.
            pool = pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(|e| storage("opening the SQLite store", e))?;
        Self::from_pool(pool, config.migrate).await
    }

    /// Wraps an existing pool (which must enable foreign keys, as sqlx does by default), running
    /// the migrations when `migrate` is set.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when migrating fails.
    pub async fn from_pool(pool: SqlitePool, migrate: bool) -> Result<Self, TenantError> {
        let store = Self { pool };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies the embedded migrations that the database lacks; returns the schema version.
    /// Running it again is harmless.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when a migration fails or the database is newer than this
    /// binary supports.
    pub async fn migrate(&self) -> Result<i64, TenantError> {
        let fail =
            |e: sqlx::Error| TenantError::migration(format!("migrating the SQLite store: {e}"), e);
        let mut tx = self.begin().await.map_err(fail)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS tenancy_schema_version (\
             version INTEGER PRIMARY KEY NOT NULL, description TEXT NOT NULL, \
             applied_at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM tenancy_schema_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
        let pending = migrate::pending(MIGRATIONS, current)?;
        for migration in pending {
            debug!(
                version = migration.version,
                "applying SQLite store migration"
            );
            sqlx::raw_sql(migration.sql)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            sqlx::query(
                "INSERT INTO tenancy_schema_version (version, description, applied_at) \
                 VALUES (?1, ?2, ?3)",
            )
            .bind(migration.version)
            .bind(migration.description)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(migrate::latest(MIGRATIONS).max(current))
    }

    /// Checks that the database answers within `timeout`; returns how long it took.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the query fails or times out.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, TenantError> {
        ping(
            "the SQLite store",
            timeout,
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The tenant's current status (`None`: no such tenant), read to explain a refused change.
    async fn status_of(
        &self,
        executor: impl sqlx::SqliteExecutor<'_>,
        id: TenantId,
    ) -> Result<Option<TenantStatus>, TenantError> {
        let status: Option<String> = sqlx::query_scalar(STATUS_OF)
            .bind(Uuid::from(id))
            .fetch_optional(executor)
            .await
            .map_err(|e| tenant_storage("reading tenant status", id, e))?;
        status.map(|s| parse_status(id, &s)).transpose()
    }

    async fn fetch(
        &self,
        executor: impl sqlx::SqliteExecutor<'_>,
        id: TenantId,
    ) -> Result<Option<TenantInfo>, TenantError> {
        sqlx::query_as::<_, TenantRow>(GET_BY_ID)
            .bind(Uuid::from(id))
            .fetch_optional(executor)
            .await
            .map_err(|e| tenant_storage("loading tenant", id, e))?
            .map(TenantRow::into_info)
            .transpose()
    }

    async fn exists(
        tx: &mut Transaction<'static, Sqlite>,
        id: TenantId,
    ) -> Result<bool, TenantError> {
        let found = sqlx::query(EXISTS)
            .bind(Uuid::from(id))
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| tenant_storage("checking tenant", id, e))?;
        Ok(found.is_some())
    }
}

/// Whether a SQLite URL names an in-memory database (`sqlite::memory:`, `mode=memory`).
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

fn is_slug_violation(err: &sqlx::Error) -> bool {
    database_error(err)
        .is_some_and(|db| db.is_unique_violation() && db.message().contains("tenancy_tenants.slug"))
}

fn is_id_violation(err: &sqlx::Error) -> bool {
    database_error(err)
        .is_some_and(|db| db.is_unique_violation() && db.message().contains("tenancy_tenants.id"))
}

#[async_trait]
impl TenantStore for SqliteTenantStore {
    async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError> {
        self.fetch(&self.pool, id).await
    }

    async fn get_by_slug(&self, slug: &Slug) -> Result<Option<TenantInfo>, TenantError> {
        sqlx::query_as::<_, TenantRow>(GET_BY_SLUG)
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| storage(&format!("loading tenant slug:{slug}"), e))?
            .map(TenantRow::into_info)
            .transpose()
    }

    async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError> {
        let limit = query.effective_limit();
        let rows = match query.after {
            Some(after) => sqlx::query_as::<_, TenantRow>(LIST_AFTER).bind(Uuid::from(after)),
            None => sqlx::query_as::<_, TenantRow>(LIST_FIRST),
        }
        .bind(query.active_only)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| storage("listing tenants", e))?;
        page(rows, limit)
    }

    async fn create(&self, tenant: TenantInfo) -> Result<TenantInfo, TenantError> {
        let id = tenant.id;
        let metadata = to_json_text(&tenant.metadata)?;
        let fail = |e| tenant_storage("creating tenant", id, e);
        let mut tx = self.begin().await.map_err(fail)?;
        let inserted = sqlx::query(INSERT_TENANT)
            .bind(Uuid::from(id))
            .bind(tenant.slug.as_str())
            .bind(&tenant.name)
            .bind(tenant.status.as_str())
            .bind(tenant.status_reason.as_deref())
            .bind(tenant.plan.as_deref())
            .bind(metadata)
            .bind(tenant.created_at)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(e) if is_slug_violation(&e) => {
                return Err(TenantError::SlugConflict { slug: tenant.slug });
            }
            Err(e) if is_id_violation(&e) => return Err(duplicate_id(id)),
            Err(e) => return Err(fail(e)),
            Ok(_) => {}
        }
        for (key, value) in &tenant.config {
            sqlx::query(UPSERT_CONFIG)
                .bind(Uuid::from(id))
                .bind(key)
                .bind(to_json_text(value)?)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, slug = %tenant.slug, "tenant created");
        Ok(tenant)
    }

    async fn update(&self, id: TenantId, update: &UpdateTenant) -> Result<TenantInfo, TenantError> {
        let fail = |e| tenant_storage("updating tenant", id, e);
        let mut tx = self.begin().await.map_err(fail)?;
        let mut tenant = self
            .fetch(&mut *tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        update.apply(&mut tenant, Utc::now())?;
        let written = sqlx::query(UPDATE_TENANT)
            .bind(Uuid::from(id))
            .bind(tenant.slug.as_str())
            .bind(&tenant.name)
            .bind(tenant.plan.as_deref())
            .bind(to_json_text(&tenant.metadata)?)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await;
        match written {
            Err(e) if is_slug_violation(&e) => {
                return Err(TenantError::SlugConflict { slug: tenant.slug });
            }
            Err(e) => return Err(fail(e)),
            Ok(_) => {}
        }
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, "tenant updated");
        Ok(tenant)
    }

    async fn set_status(
        &self,
        id: TenantId,
        change: StatusChange,
    ) -> Result<TenantInfo, TenantError> {
        let fail = |e| tenant_storage("changing tenant status", id, e);
        let mut tx = self.begin().await.map_err(fail)?;
        let applied = if change.from.can_transition_to(change.to) {
            sqlx::query(SET_STATUS)
                .bind(Uuid::from(id))
                .bind(change.from.as_str())
                .bind(change.to.as_str())
                .bind(change.reason.as_deref())
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(fail)?
                .rows_affected()
                == 1
        } else {
            false
        };
        if !applied {
            let actual = self.status_of(&mut *tx, id).await?;
            return Err(refused_status_change(id, &change, actual));
        }
        let tenant = self
            .fetch(&mut *tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, from = %change.from, to = %change.to, "tenant status changed");
        Ok(tenant)
    }

    async fn set_status_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError> {
        let fail = |e| tenant_storage("recording tenant status reason", id, e);
        let mut tx = self.begin().await.map_err(fail)?;
        let applied = sqlx::query(SET_STATUS_REASON)
            .bind(Uuid::from(id))
            .bind(status.as_str())
            .bind(reason.as_deref())
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(fail)?
            .rows_affected()
            == 1;
        if !applied {
            let actual = self.status_of(&mut *tx, id).await?;
            return Err(refused_status_reason(id, status, actual));
        }
        let tenant = self
            .fetch(&mut *tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, %status, "tenant status reason recorded");
        Ok(tenant)
    }
}

#[async_trait]
impl ConfigStore for SqliteTenantStore {
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        let text: Option<String> = sqlx::query_scalar(GET_CONFIG)
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| tenant_storage("loading config", tenant, e))?;
        parse_optional_value(tenant, key, text)
    }

    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        let rows: Vec<(String, String)> = sqlx::query_as(GET_ALL_CONFIG)
            .bind(Uuid::from(tenant))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| tenant_storage("loading config", tenant, e))?;
        rows.into_iter()
            .map(|(key, text)| {
                let value = parse_config_value(tenant, &key, &text)?;
                Ok((key, value))
            })
            .collect()
    }

    async fn set_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, TenantError> {
        let fail = |e| tenant_storage("setting config", tenant, e);
        let text = to_json_text(&value)?;
        let mut tx = self.begin().await.map_err(fail)?;
        let old: Option<String> = sqlx::query_scalar(GET_CONFIG)
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        let written = sqlx::query(UPSERT_CONFIG)
            .bind(Uuid::from(tenant))
            .bind(key)
            .bind(text)
            .execute(&mut *tx)
            .await;
        match written {
            Err(e) if is_foreign_key_violation(&e) => return Err(not_found(tenant)),
            Err(e) => return Err(fail(e)),
            Ok(_) => {}
        }
        // An unreadable old value fails the call before commit: the row is kept for repair.
        let old = parse_optional_value(tenant, key, old)?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %tenant, key, "config set");
        Ok(old)
    }

    async fn remove_config(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Value>, TenantError> {
        let fail = |e| tenant_storage("removing config", tenant, e);
        let mut tx = self.begin().await.map_err(fail)?;
        let old: Option<String> = sqlx::query_scalar(DELETE_CONFIG)
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        if old.is_none() && !Self::exists(&mut tx, tenant).await? {
            return Err(not_found(tenant));
        }
        let old = parse_optional_value(tenant, key, old)?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %tenant, key, "config removed");
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_gapless() {
        assert!(migrate::is_gapless(MIGRATIONS));
    }
}
