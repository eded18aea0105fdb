//! [`SqlStore`]: the tenant and config store, written once for every backend ([`SqlBackend`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type};
use tenancy_core::{
    ConfigStore, DomainChange, DomainName, JsonObject, ListQuery, Page, Slug, StatusChange,
    TenantDomain, TenantError, TenantId, TenantInfo, TenantStatus, TenantStore, UpdateTenant, Uuid,
};
use tracing::debug;

use crate::config::Identifier;
use crate::error::{
    database_error, duplicate_id, is_foreign_key_violation, not_found, ping, storage,
    tenant_storage,
};
use crate::migrate::StoreMigrations;
use crate::notice::{ChangeKind, ChangeNotice as Notice};
use crate::row::{TenantRow, page, parse_config_value, parse_optional_value, to_json_text};
use crate::shared::{parse_status, refused_status_change, refused_status_reason};
use crate::statements::{Sql, Statements, q};

pub(crate) mod sealed {
    /// The unique constraint a refused insert or update broke.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Unique {
        /// `tenants.slug`.
        Slug,
        /// `tenants.id`.
        Id,
        /// `domains.domain`.
        Domain,
    }

    /// What the shared store code asks of a backend.
    pub trait Backend: sqlx::Database {
        /// The backend's name: `postgres` or `sqlite`.
        const BACKEND: &'static str;
        /// The statement that begins a write transaction.
        const BEGIN: &'static str;
        /// What only this backend's stores hold (PostgreSQL: the change feed's channel).
        type Extra: std::fmt::Debug + Send + Sync + 'static;
        /// How many rows a statement changed.
        fn rows_affected(result: &Self::QueryResult) -> u64;
        /// Which unique constraint of the tenants table `err` reports, if any.
        fn unique_violation(err: &dyn sqlx::error::DatabaseError) -> Option<Unique>;
    }
}

use sealed::Unique;

/// A database the store runs on: [`sqlx::Postgres`] (feature `postgres`) or [`sqlx::Sqlite`]
/// (feature `sqlite`). Implemented by this crate only.
pub trait SqlBackend: sealed::Backend {}

#[cfg(feature = "postgres")]
impl SqlBackend for sqlx::Postgres {}
#[cfg(feature = "sqlite")]
impl SqlBackend for sqlx::Sqlite {}

/// The tenant and config store on the database `DB`: [`PgTenantStore`](crate::PgTenantStore)
/// on PostgreSQL, [`SqliteTenantStore`](crate::SqliteTenantStore) on SQLite.
///
/// Both behave like [`InMemoryStore`](tenancy_core::InMemoryStore) (they pass
/// `tenancy_core::conformance`); only their SQL differs. Slug uniqueness is a unique constraint,
/// status changes are one conditional `UPDATE`, and every mutation is one transaction which, when
/// the store notifies (PostgreSQL's change feed), also sends its [`ChangeNotice`](crate::ChangeNotice).
///
/// Cloning is cheap: the pool and statements are shared.
pub struct SqlStore<DB: SqlBackend> {
    inner: Arc<Parts<DB>>,
}

impl<DB: SqlBackend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<DB: SqlBackend> fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &DB::BACKEND)
            .field("pool", &self.inner.pool)
            .field("notify", &self.inner.notify)
            .finish_non_exhaustive()
    }
}

/// What a store is made of; each backend's constructor builds it.
pub(crate) struct Parts<DB: SqlBackend> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Statements,
    pub(crate) migrations: StoreMigrations,
    /// The change channel, when mutations notify.
    pub(crate) notify: Option<Identifier>,
    pub(crate) extra: DB::Extra,
}

impl<DB: SqlBackend> SqlStore<DB> {
    /// Wraps a backend's parts; runs the migrations when `migrate` is set.
    pub(crate) async fn from_parts(parts: Parts<DB>, migrate: bool) -> Result<Self, TenantError>
    where
        DB::Connection: sqlx::migrate::Migrate,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
        (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        let store = Self {
            inner: Arc::new(parts),
        };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &Pool<DB> {
        &self.inner.pool
    }

    /// The backend's name: `postgres` or `sqlite`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    /// Closes the pool, waiting for its connections to close; every later call fails with
    /// [`TenantError::Storage`].
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// What only this backend's stores hold.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn extra(&self) -> &DB::Extra {
        &self.inner.extra
    }

    /// Applies the embedded migrations the database lacks (each recorded with its checksum, under
    /// the migration lock, so that concurrent processes queue); returns the schema version.
    /// Running it again is harmless.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when a migration fails, or the database is newer than this
    /// binary supports.
    pub async fn migrate(&self) -> Result<i64, TenantError>
    where
        DB::Connection: sqlx::migrate::Migrate,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
        (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        self.inner.migrations.run(&self.inner.pool).await
    }

    /// Checks that the database answers within `timeout` (a cheap `SELECT 1`); returns how long
    /// it took.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the query fails or times out.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, TenantError>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        ping(
            &format!("the {} store", DB::BACKEND),
            timeout,
            sqlx::query("SELECT 1").execute(&self.inner.pool),
        )
        .await
    }
}

/// An impl block for [`SqlStore`] over any backend, with the bounds the shared code needs (every
/// [`SqlBackend`] meets them).
macro_rules! for_every_backend {
    ($(#[$attr:meta])* impl $($trait:ident for)? { $($body:tt)* }) => {
        $(#[$attr])*
        impl<DB: SqlBackend> $($trait for)? SqlStore<DB>
        where
            for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
            DB::Arguments: IntoArguments<DB>,
            for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> &'q str: Encode<'q, DB> + Type<DB>,
            for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
            for<'q> i64: Encode<'q, DB> + Type<DB>,
            for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> DateTime<Utc>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> Option<String>: Decode<'q, DB> + Type<DB>,
            &'static str: sqlx::ColumnIndex<DB::Row>,
            for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
            for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
            for<'r> (String, bool, DateTime<Utc>): sqlx::FromRow<'r, DB::Row>,
            for<'r> (Uuid, bool): sqlx::FromRow<'r, DB::Row>,
        {
            $($body)*
        }
    };
}

for_every_backend! {
impl {
    async fn begin(
        &self,
        operation: &str,
        id: TenantId,
    ) -> Result<Transaction<'static, DB>, TenantError> {
        self.inner
            .pool
            .begin_with(DB::BEGIN)
            .await
            .map_err(|e| tenant_storage(operation, id, e))
    }

    /// Sends `notice` in the transaction, when the store notifies (only PostgreSQL does): the
    /// notice is delivered on commit, and never for a rolled-back change.
    async fn notify(
        &self,
        tx: &mut Transaction<'static, DB>,
        notice: Notice,
    ) -> Result<(), TenantError> {
        let Some(channel) = &self.inner.notify else {
            return Ok(());
        };
        let notice = notice.sent_now();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel.as_str())
            .bind(notice.to_payload())
            .execute(&mut **tx)
            .await
            .map_err(|e| tenant_storage("notifying the change", notice.tenant_id, e))?;
        Ok(())
    }

    /// Locks `tenant`'s row, or answers `NotFound`. Every config and domain write of a tenant
    /// takes it first: writes of a key not stored yet have no row to lock, so without it
    /// concurrent first writes would each report no old value and announce their own change as
    /// the first (and concurrent first domains would each become primary).
    async fn lock_tenant(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: TenantId,
        operation: &str,
    ) -> Result<(), TenantError> {
        let exists = sqlx::query(q(&self.inner.sql.lock_tenant))
            .bind(Uuid::from(tenant))
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| tenant_storage(operation, tenant, e))?
            .is_some();
        if exists {
            Ok(())
        } else {
            Err(not_found(tenant))
        }
    }

    /// The tenant's domains, read in `tx`.
    async fn domains_in(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: TenantId,
    ) -> Result<Vec<TenantDomain>, TenantError> {
        self.list_domains(&mut **tx, tenant).await
    }

    async fn list_domains<'e>(
        &self,
        executor: impl Executor<'e, Database = DB>,
        tenant: TenantId,
    ) -> Result<Vec<TenantDomain>, TenantError> {
        let rows: Vec<(String, bool, DateTime<Utc>)> =
            sqlx::query_as(q(&self.inner.sql.list_domains))
                .bind(Uuid::from(tenant))
                .fetch_all(executor)
                .await
                .map_err(|e| tenant_storage("loading domains", tenant, e))?;
        rows.into_iter()
            .map(|(domain, primary, created_at)| {
                Ok(TenantDomain {
                    domain: stored_domain(tenant, &domain)?,
                    tenant_id: tenant,
                    primary,
                    created_at,
                })
            })
            .collect()
    }

    /// Who owns `domain` and whether it is their primary one, locked for the transaction.
    async fn domain_owner(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<Option<(TenantId, bool)>, TenantError> {
        let owner: Option<(Uuid, bool)> = sqlx::query_as(q(&self.inner.sql.domain_owner))
            .bind(domain.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| tenant_storage("loading domain owner", tenant, e))?;
        Ok(owner.map(|(id, primary)| (TenantId::from_uuid(id), primary)))
    }

    /// The tenant's oldest domain, if it has any.
    async fn oldest_domain(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: TenantId,
    ) -> Result<Option<DomainName>, TenantError> {
        let oldest: Option<String> = sqlx::query_scalar(q(&self.inner.sql.oldest_domain))
            .bind(Uuid::from(tenant))
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| tenant_storage("loading domains", tenant, e))?;
        oldest.map(|text| stored_domain(tenant, &text)).transpose()
    }

    /// Runs one statement of a domain write in `tx`, binding the tenant and then `domain` if given.
    async fn domain_write(
        &self,
        tx: &mut Transaction<'static, DB>,
        statement: &Sql,
        tenant: TenantId,
        domain: Option<&DomainName>,
    ) -> Result<(), TenantError> {
        let mut query = sqlx::query(q(statement)).bind(Uuid::from(tenant));
        if let Some(domain) = domain {
            query = query.bind(domain.as_str());
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| tenant_storage("changing domains", tenant, e))?;
        Ok(())
    }

    /// Makes `domain` the tenant's only primary domain, in `tx`.
    async fn make_primary(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<(), TenantError> {
        self.domain_write(tx, &self.inner.sql.clear_primary, tenant, None)
            .await?;
        self.domain_write(tx, &self.inner.sql.set_primary, tenant, Some(domain))
            .await
    }

    /// Ends a domain write: notifies when something changed, reads the tenant's domains, commits.
    async fn domains_changed(
        &self,
        mut tx: Transaction<'static, DB>,
        tenant: TenantId,
        domain: &DomainName,
        changed: bool,
    ) -> Result<DomainChange, TenantError> {
        if changed {
            let notice = Notice::new(tenant, ChangeKind::Domains).with_domain(domain.clone());
            self.notify(&mut tx, notice).await?;
        }
        let domains = self.domains_in(&mut tx, tenant).await?;
        tx.commit()
            .await
            .map_err(|e| tenant_storage("changing domains", tenant, e))?;
        Ok(DomainChange { domains, changed })
    }

    /// The tenant's current status (`None`: no such tenant), read to explain a refused change.
    async fn status_of(
        &self,
        tx: &mut Transaction<'static, DB>,
        id: TenantId,
    ) -> Result<Option<TenantStatus>, TenantError> {
        let status: Option<String> = sqlx::query_scalar(q(&self.inner.sql.status_of))
            .bind(Uuid::from(id))
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| tenant_storage("reading tenant status", id, e))?;
        status.map(|s| parse_status(id, &s)).transpose()
    }

    async fn fetch<'e>(
        &self,
        executor: impl Executor<'e, Database = DB>,
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

    /// Runs a conditional `UPDATE` of one tenant in `tx`; whether it changed the row.
    async fn updated(
        &self,
        tx: &mut Transaction<'static, DB>,
        update: sqlx::query::Query<'_, DB, DB::Arguments>,
        operation: &str,
        id: TenantId,
    ) -> Result<bool, TenantError> {
        let done = update
            .execute(&mut **tx)
            .await
            .map_err(|e| tenant_storage(operation, id, e))?;
        Ok(DB::rows_affected(&done) == 1)
    }

    /// The tenant read in `tx` after a status change applied.
    async fn changed(
        &self,
        mut tx: Transaction<'static, DB>,
        id: TenantId,
        operation: &str,
    ) -> Result<TenantInfo, TenantError> {
        let tenant = self
            .fetch(&mut *tx, &self.inner.sql.get_by_id, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.notify(&mut tx, Notice::new(id, ChangeKind::Status)).await?;
        tx.commit().await.map_err(|e| tenant_storage(operation, id, e))?;
        Ok(tenant)
    }
}
}

for_every_backend! {
#[async_trait]
impl TenantStore for {
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
        let metadata = to_json_text(&tenant.metadata)?;
        let mut tx = self.begin("creating tenant", id).await?;
        let inserted = sqlx::query(q(&self.inner.sql.insert_tenant))
            .bind(Uuid::from(id))
            .bind(tenant.slug.as_str())
            .bind(tenant.name.as_str())
            .bind(tenant.status.as_str())
            .bind(tenant.status_reason.as_deref())
            .bind(tenant.plan.as_deref())
            .bind(metadata)
            .bind(tenant.created_at)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await;
        if let Err(e) = inserted {
            return Err(refused_write::<DB>(e, "creating tenant", id, tenant.slug));
        }
        self.notify(&mut tx, Notice::new(id, ChangeKind::Created).with_slug(tenant.slug))
            .await?;
        tx.commit()
            .await
            .map_err(|e| tenant_storage("creating tenant", id, e))?;
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
            .bind(tenant.name.as_str())
            .bind(tenant.plan.as_deref())
            .bind(to_json_text(&tenant.metadata)?)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await;
        if let Err(e) = written {
            return Err(refused_write::<DB>(e, "updating tenant", id, tenant.slug));
        }
        let notice = Notice::new(id, ChangeKind::Updated)
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
        const OPERATION: &str = "changing tenant status";
        let mut tx = self.begin(OPERATION, id).await?;
        let update = sqlx::query(q(&self.inner.sql.set_status))
            .bind(Uuid::from(id))
            .bind(change.from.as_str())
            .bind(change.to.as_str())
            .bind(change.reason.as_deref())
            .bind(Utc::now());
        let applied = change.from.can_transition_to(change.to)
            && self.updated(&mut tx, update, OPERATION, id).await?;
        if !applied {
            let actual = self.status_of(&mut tx, id).await?;
            return Err(refused_status_change(id, &change, actual));
        }
        let tenant = self.changed(tx, id, OPERATION).await?;
        debug!(tenant_id = %id, from = %change.from, to = %change.to, "tenant status changed");
        Ok(tenant)
    }

    async fn get_by_domain(&self, domain: &DomainName) -> Result<Option<TenantInfo>, TenantError> {
        sqlx::query_as::<_, TenantRow>(q(&self.inner.sql.get_by_domain))
            .bind(domain.as_str())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| storage(&format!("loading the tenant of domain {domain}"), e))?
            .map(TenantRow::into_info)
            .transpose()
    }

    async fn domains(&self, tenant: TenantId) -> Result<Vec<TenantDomain>, TenantError> {
        self.list_domains(&self.inner.pool, tenant).await
    }

    async fn add_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
        primary: bool,
    ) -> Result<DomainChange, TenantError> {
        const OPERATION: &str = "adding a domain";
        let mut tx = self.begin(OPERATION, tenant).await?;
        self.lock_tenant(&mut tx, tenant, OPERATION).await?;
        let changed = match self.domain_owner(&mut tx, tenant, domain).await? {
            Some((owner, _)) if owner != tenant => {
                return Err(TenantError::DomainConflict {
                    domain: domain.clone(),
                });
            }
            Some((_, is_primary)) => {
                let promote = primary && !is_primary;
                if promote {
                    self.make_primary(&mut tx, tenant, domain).await?;
                }
                promote
            }
            None => {
                let primary = primary || self.oldest_domain(&mut tx, tenant).await?.is_none();
                if primary {
                    self.domain_write(&mut tx, &self.inner.sql.clear_primary, tenant, None)
                        .await?;
                }
                let inserted = sqlx::query(q(&self.inner.sql.insert_domain))
                    .bind(domain.as_str())
                    .bind(Uuid::from(tenant))
                    .bind(primary)
                    .bind(Utc::now())
                    .execute(&mut *tx)
                    .await;
                if let Err(e) = inserted {
                    let taken = database_error(&e)
                        .filter(|db| db.is_unique_violation())
                        .and_then(DB::unique_violation)
                        == Some(Unique::Domain);
                    return Err(if taken {
                        TenantError::DomainConflict {
                            domain: domain.clone(),
                        }
                    } else {
                        tenant_storage(OPERATION, tenant, e)
                    });
                }
                true
            }
        };
        let change = self.domains_changed(tx, tenant, domain, changed).await?;
        debug!(tenant_id = %tenant, %domain, changed, "domain added");
        Ok(change)
    }

    async fn remove_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        const OPERATION: &str = "removing a domain";
        let mut tx = self.begin(OPERATION, tenant).await?;
        self.lock_tenant(&mut tx, tenant, OPERATION).await?;
        let was_primary = match self.domain_owner(&mut tx, tenant, domain).await? {
            Some((owner, is_primary)) if owner == tenant => is_primary,
            _ => {
                return Err(TenantError::DomainNotFound {
                    tenant,
                    domain: domain.clone(),
                });
            }
        };
        self.domain_write(&mut tx, &self.inner.sql.delete_domain, tenant, Some(domain))
            .await?;
        if was_primary && let Some(oldest) = self.oldest_domain(&mut tx, tenant).await? {
            self.domain_write(&mut tx, &self.inner.sql.set_primary, tenant, Some(&oldest))
                .await?;
        }
        let change = self.domains_changed(tx, tenant, domain, true).await?;
        debug!(tenant_id = %tenant, %domain, "domain removed");
        Ok(change)
    }

    async fn set_primary_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        const OPERATION: &str = "changing the primary domain";
        let mut tx = self.begin(OPERATION, tenant).await?;
        self.lock_tenant(&mut tx, tenant, OPERATION).await?;
        let changed = match self.domain_owner(&mut tx, tenant, domain).await? {
            Some((owner, is_primary)) if owner == tenant => !is_primary,
            _ => {
                return Err(TenantError::DomainNotFound {
                    tenant,
                    domain: domain.clone(),
                });
            }
        };
        if changed {
            self.make_primary(&mut tx, tenant, domain).await?;
        }
        let change = self.domains_changed(tx, tenant, domain, changed).await?;
        debug!(tenant_id = %tenant, %domain, changed, "primary domain set");
        Ok(change)
    }

    async fn set_status_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError> {
        const OPERATION: &str = "recording tenant status reason";
        let mut tx = self.begin(OPERATION, id).await?;
        let update = sqlx::query(q(&self.inner.sql.set_status_reason))
            .bind(Uuid::from(id))
            .bind(status.as_str())
            .bind(reason.as_deref())
            .bind(Utc::now());
        let applied = self.updated(&mut tx, update, OPERATION, id).await?;
        if !applied {
            let actual = self.status_of(&mut tx, id).await?;
            return Err(refused_status_reason(id, status, actual));
        }
        let tenant = self.changed(tx, id, OPERATION).await?;
        debug!(tenant_id = %id, %status, "tenant status reason recorded");
        Ok(tenant)
    }
}
}

for_every_backend! {
#[async_trait]
impl ConfigStore for {
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
        self.lock_tenant(&mut tx, tenant, "setting config")
            .await?;
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
        self.notify(&mut tx, Notice::new(tenant, ChangeKind::Config))
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
        self.lock_tenant(&mut tx, tenant, "removing config")
            .await?;
        let old: Option<String> = sqlx::query_scalar(q(&sql.delete_config))
            .bind(Uuid::from(tenant))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        // Nothing removed: nothing changed, nothing to notify.
        if old.is_some() {
            self.notify(&mut tx, Notice::new(tenant, ChangeKind::Config))
                .await?;
        }
        let old = parse_optional_value(tenant, key, old)?;
        tx.commit().await.map_err(fail)?;
        debug!(tenant_id = %tenant, key, "config removed");
        Ok(old)
    }
}
}

/// A domain read from the database; one that does not parse is a storage error (the row is kept).
fn stored_domain(tenant: TenantId, text: &str) -> Result<DomainName, TenantError> {
    text.parse().map_err(|e| {
        TenantError::storage(
            format!("reading stored domain {text:?} of tenant {tenant}"),
            e,
        )
    })
}

/// The error of a tenant insert or update the database refused: a taken slug or id, or a
/// storage failure.
fn refused_write<DB: SqlBackend>(
    err: sqlx::Error,
    operation: &str,
    id: TenantId,
    slug: Slug,
) -> TenantError {
    let unique = database_error(&err)
        .filter(|db| db.is_unique_violation())
        .and_then(DB::unique_violation);
    match unique {
        Some(Unique::Slug) => TenantError::SlugConflict { slug },
        Some(Unique::Id) => duplicate_id(id),
        Some(Unique::Domain) | None => tenant_storage(operation, id, err),
    }
}
