//! [`PgTenantStore`]: the tenant and config store on PostgreSQL (feature `postgres`), and the
//! [`ChangeFeed`] that keeps every process's caches fresh.
//!
//! The tables live in their own schema (default `tenancy`), never in a tenant's. Every mutation
//! runs in one transaction which, when the change feed is on, also sends a [`ChangeNotice`] with
//! `SELECT pg_notify($1, $2)`: the notice is delivered on commit, and never for a rolled-back change.

mod feed;
mod sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgExecutor, Postgres, Transaction};
use tenancy_core::{
    ConfigStore, Invalidators, JsonObject, ListQuery, Page, Slug, StatusChange, TenantError,
    TenantId, TenantInfo, TenantStatus, TenantStore, UpdateTenant, Uuid,
};
use tracing::debug;

pub use feed::{ChangeFeed, FeedSettings};

use self::sql::{ID_CONSTRAINT, MIGRATIONS, SLUG_CONSTRAINT, Sql, Statements};
use crate::config::{Identifier, StoreConfig};
use crate::error::{
    database_error, duplicate_id, is_foreign_key_violation, not_found, ping, storage,
    tenant_storage,
};
use crate::migrate;
use crate::notice::{ChangeKind, ChangeNotice};
use crate::row::{TenantRow, page, parse_config_value, parse_optional_value, to_json_text};
use crate::shared::{parse_status, refused_status_change, refused_status_reason};

/// A statement with the embedded (validated, quoted) schema name.
fn q(sql: &Sql) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(sql))
}

/// The tenant and config store on PostgreSQL.
///
/// Cloning is cheap (the pool and statements are shared).
///
/// ```no_run
/// use tenancy_core::{Invalidators, TenantStore};
/// use tenancy_store_sql::{PgTenantStore, StoreConfig};
///
/// # async fn run() -> Result<(), tenancy_core::TenantError> {
/// let store = PgTenantStore::connect(&StoreConfig::with_url("postgres://app@localhost/app")).await?;
/// // Every cache registered in `invalidators` now learns of changes made by any process.
/// let invalidators = Invalidators::new();
/// let feed = store.start_change_feed(invalidators).await?;
/// let page = store.list(Default::default()).await?;
/// # drop(page);
/// feed.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgTenantStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    schema: Identifier,
    sql: Statements,
    /// The change channel, when mutations notify.
    channel: Option<Identifier>,
    feed_channel: Identifier,
}

impl PgTenantStore {
    /// Connects to `config.url` (`postgres://...`) and runs the migrations unless `config.migrate`
    /// is off.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid configuration or URL,
    /// [`TenantError::Storage`] when the server cannot be reached, [`TenantError::Migration`] when
    /// migrating fails.
    pub async fn connect(config: &StoreConfig) -> Result<Self, TenantError> {
        config.validate()?;
        let options = PgConnectOptions::from_str(config.require_url()?).map_err(|e| {
            TenantError::Configuration(format!("store.url is not a PostgreSQL URL: {e}"))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout())
            .connect_with(options)
            .await
            .map_err(|e| storage("connecting to the PostgreSQL store", e))?;
        Self::from_pool(pool, config).await
    }

    /// Wraps an existing pool; `config` gives the schema, channel and whether to migrate and
    /// notify (its `url` and pool settings are not used).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid schema or channel, [`TenantError::Migration`]
    /// when migrating fails.
    pub async fn from_pool(pool: PgPool, config: &StoreConfig) -> Result<Self, TenantError> {
        let schema = Identifier::new("store.schema", &config.schema)?;
        let feed_channel = Identifier::new("store.notify_channel", &config.notify_channel)?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                sql: Statements::new(&schema),
                schema,
                channel: config.change_feed.then(|| feed_channel.clone()),
                feed_channel,
            }),
        };
        if config.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Applies the embedded migrations the schema lacks, in one transaction under an advisory
    /// lock (so concurrent migrators queue); returns the schema version. Running it again is
    /// harmless.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when a migration fails or the schema is newer than this binary
    /// supports.
    pub async fn migrate(&self) -> Result<i64, TenantError> {
        let schema = &self.inner.schema;
        let fail = |e: sqlx::Error| {
            TenantError::migration(format!("migrating the store schema {schema:?}: {e}"), e)
        };
        let sql = &self.inner.sql;
        let mut tx = self.inner.pool.begin().await.map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("tenancy-store-sql migrate {}", schema.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::raw_sql(q(&sql.prepare_schema))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let current: i64 = sqlx::query_scalar(q(&sql.current_version))
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        for migration in migrate::pending(MIGRATIONS, current)? {
            debug!(
                version = migration.version,
                schema = schema.as_str(),
                "applying store migration"
            );
            sqlx::raw_sql(AssertSqlSafe(Statements::migration(schema, migration)))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            sqlx::query(q(&sql.record_version))
                .bind(migration.version)
                .bind(migration.description)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(migrate::latest(MIGRATIONS).max(current))
    }

    /// Checks that the server answers within `timeout`; returns how long it took.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the query fails or times out.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, TenantError> {
        ping(
            "the PostgreSQL store",
            timeout,
            sqlx::query("SELECT 1").execute(&self.inner.pool),
        )
        .await
    }

    /// Starts a [`ChangeFeed`] on this store's server and channel, invalidating `invalidators`,
    /// with default [`FeedSettings`] otherwise.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the first connection or `LISTEN` fails.
    pub async fn start_change_feed(
        &self,
        invalidators: Invalidators,
    ) -> Result<ChangeFeed, TenantError> {
        let settings = FeedSettings::new(self.inner.feed_channel.as_str());
        ChangeFeed::start(
            (*self.inner.pool.connect_options()).clone(),
            settings,
            invalidators,
        )
        .await
    }

    async fn begin(
        &self,
        operation: &str,
        id: TenantId,
    ) -> Result<Transaction<'static, Postgres>, TenantError> {
        self.inner
            .pool
            .begin()
            .await
            .map_err(|e| tenant_storage(operation, id, e))
    }

    /// Sends `notice` in the transaction, when the change feed is on.
    async fn notify(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        notice: ChangeNotice,
    ) -> Result<(), TenantError> {
        let Some(channel) = &self.inner.channel else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel.as_str())
            .bind(notice.to_payload())
            .execute(&mut **tx)
            .await
            .map_err(|e| tenant_storage("notifying the change", notice.tenant_id, e))?;
        Ok(())
    }

    /// The tenant's current status (`None`: no such tenant), read to explain a refused change.
    async fn status_of(
        &self,
        executor: impl PgExecutor<'_>,
        id: TenantId,
    ) -> Result<Option<TenantStatus>, TenantError> {
        let status: Option<String> = sqlx::query_scalar(q(&self.inner.sql.status_of))
            .bind(Uuid::from(id))
            .fetch_optional(executor)
            .await
            .map_err(|e| tenant_storage("reading tenant status", id, e))?;
        status.map(|s| parse_status(id, &s)).transpose()
    }

    async fn fetch(
        &self,
        executor: impl PgExecutor<'_>,
        statement: &Sql,
        id: TenantId,
    ) -> Result<Option<TenantInfo>, TenantError> {
        sqlx::query_as::<_, TenantRow>(q(statement))
            .bind(Uuid::from(id))
            .fetch_optional(executor)
            .await
            .map_err(|e| tenant_storage("loading tenant", id, e))?
            .map(TenantRow::into_info)
            .transpose()
    }
}

fn violates(err: &sqlx::Error, constraint: &str) -> bool {
    database_error(err)
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(constraint))
}

#[async_trait]
impl TenantStore for PgTenantStore {
    async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError> {
        self.fetch(&self.inner.pool, &self.inner.sql.get_by_id, id)
            .await
    }

    async fn get_by_slug(&self, slug: &Slug) -> Result<Option<TenantInfo>, TenantError> {
        sqlx::query_as::<_, TenantRow>(q(&self.inner.sql.get_by_slug))
            .bind(slug.as_str())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| storage(&format!("loading tenant slug:{slug}"), e))?
            .map(TenantRow::into_info)
            .transpose()
    }

    async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError> {
        let limit = query.effective_limit();
        let sql = &self.inner.sql;
        let rows = match query.after {
            Some(after) => {
                sqlx::query_as::<_, TenantRow>(q(&sql.list_after)).bind(Uuid::from(after))
            }
            None => sqlx::query_as::<_, TenantRow>(q(&sql.list_first)),
        }
        .bind(query.active_only)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(|e| storage("listing tenants", e))?;
        page(rows, limit)
    }

    async fn create(&self, tenant: TenantInfo) -> Result<TenantInfo, TenantError> {
        let id = tenant.id;
        let sql = &self.inner.sql;
        let fail = |e| tenant_storage("creating tenant", id, e);
        let metadata = to_json_text(&tenant.metadata)?;
        let mut tx = self.begin("creating tenant", id).await?;
        let inserted = sqlx::query(q(&sql.insert_tenant))
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
            Err(e) if violates(&e, SLUG_CONSTRAINT) => {
                return Err(TenantError::SlugConflict { slug: tenant.slug });
            }
            Err(e) if violates(&e, ID_CONSTRAINT) => return Err(duplicate_id(id)),
            Err(e) => return Err(fail(e)),
            Ok(_) => {}
        }
        for (key, value) in &tenant.config {
            sqlx::query(q(&sql.upsert_config))
                .bind(Uuid::from(id))
                .bind(key)
                .bind(to_json_text(value)?)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        self.notify(
            &mut tx,
            ChangeNotice::new(id, ChangeKind::Created).with_slug(tenant.slug),
        )
        .await?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, slug = %tenant.slug, "tenant created");
        Ok(tenant)
    }

    async fn update(&self, id: TenantId, update: &UpdateTenant) -> Result<TenantInfo, TenantError> {
        let fail = |e| tenant_storage("updating tenant", id, e);
        let mut tx = self.begin("updating tenant", id).await?;
        let mut tenant = self
            .fetch(&mut *tx, &self.inner.sql.get_by_id_for_update, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let old_slug = tenant.slug;
        update.apply(&mut tenant, Utc::now())?;
        let written = sqlx::query(q(&self.inner.sql.update_tenant))
            .bind(Uuid::from(id))
            .bind(tenant.slug.as_str())
            .bind(&tenant.name)
            .bind(tenant.plan.as_deref())
            .bind(to_json_text(&tenant.metadata)?)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await;
        match written {
            Err(e) if violates(&e, SLUG_CONSTRAINT) => {
                return Err(TenantError::SlugConflict { slug: tenant.slug });
            }
            Err(e) => return Err(fail(e)),
            Ok(_) => {}
        }
        let notice = ChangeNotice::new(id, ChangeKind::Updated)
            .with_slug(old_slug)
            .with_slug(tenant.slug);
        self.notify(&mut tx, notice).await?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, "tenant updated");
        Ok(tenant)
    }

    async fn set_status(
        &self,
        id: TenantId,
        change: StatusChange,
    ) -> Result<TenantInfo, TenantError> {
        let sql = &self.inner.sql;
        let fail = |e| tenant_storage("changing tenant status", id, e);
        let mut tx = self.begin("changing tenant status", id).await?;
        let applied = change.from.can_transition_to(change.to)
            && sqlx::query(q(&sql.set_status))
                .bind(Uuid::from(id))
                .bind(change.from.as_str())
                .bind(change.to.as_str())
                .bind(change.reason.as_deref())
                .bind(Utc::now())
                .execute(&mut *tx)
                .await
                .map_err(fail)?
                .rows_affected()
                == 1;
        if !applied {
            let actual = self.status_of(&mut *tx, id).await?;
            return Err(refused_status_change(id, &change, actual));
        }
        let tenant = self
            .fetch(&mut *tx, &sql.get_by_id, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.notify(&mut tx, ChangeNotice::new(id, ChangeKind::Status))
            .await?;
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
        let sql = &self.inner.sql;
        let fail = |e| tenant_storage("recording tenant status reason", id, e);
        let mut tx = self.begin("recording tenant status reason", id).await?;
        let applied = sqlx::query(q(&sql.set_status_reason))
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
            .fetch(&mut *tx, &sql.get_by_id, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.notify(&mut tx, ChangeNotice::new(id, ChangeKind::Status))
            .await?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %id, %status, "tenant status reason recorded");
        Ok(tenant)
    }
}

#[async_trait]
impl ConfigStore for PgTenantStore {
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        let text: Option<String> = sqlx::query_scalar(q(&self.inner.sql.get_config))
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| tenant_storage("loading config", tenant, e))?;
        parse_optional_value(tenant, key, text)
    }

    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        let rows: Vec<(String, String)> = sqlx::query_as(q(&self.inner.sql.get_all_config))
            .bind(Uuid::from(tenant))
            .fetch_all(&self.inner.pool)
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
        let sql = &self.inner.sql;
        let fail = |e| tenant_storage("setting config", tenant, e);
        let text = to_json_text(&value)?;
        let mut tx = self.begin("setting config", tenant).await?;
        let old: Option<String> = sqlx::query_scalar(q(&sql.get_config_for_update))
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        let written = sqlx::query(q(&sql.upsert_config))
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
        self.notify(&mut tx, ChangeNotice::new(tenant, ChangeKind::Config))
            .await?;
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
        let sql = &self.inner.sql;
        let fail = |e| tenant_storage("removing config", tenant, e);
        let mut tx = self.begin("removing config", tenant).await?;
        let old: Option<String> = sqlx::query_scalar(q(&sql.delete_config))
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        if old.is_none() {
            let exists = sqlx::query(q(&sql.exists))
                .bind(Uuid::from(tenant))
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?
                .is_some();
            if !exists {
                return Err(not_found(tenant));
            }
            // Nothing changed: nothing to notify.
        } else {
            self.notify(&mut tx, ChangeNotice::new(tenant, ChangeKind::Config))
                .await?;
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
    fn migrations_are_gapless_and_schema_is_quoted() {
        assert!(migrate::is_gapless(MIGRATIONS));
        let schema = Identifier::new("store.schema", "order").unwrap();
        let statements = Statements::new(&schema);
        assert!(statements.get_by_id.contains("FROM \"order\".tenants t"));
        assert!(!statements.list_after.contains("{schema}"));
        assert!(
            Statements::migration(&schema, &MIGRATIONS[0])
                .contains("CREATE TABLE \"order\".config")
        );
    }
}
