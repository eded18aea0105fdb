//! [`SqliteTenantStore`]: the tenant and config store on SQLite (feature `sqlite`).
//!
//! SQLite is embedded and single-process, so there is no change feed: the lifecycle service's
//! in-process invalidation (through [`Invalidators`](tenancy_core::Invalidators)) keeps this
//! process's caches fresh, and no other process shares the file in a supported deployment.
//!
//! Tables are named `tenancy_tenants`, `tenancy_config` and `tenancy_schema_migrations`. Ids are
//! stored as 16-byte BLOBs, so `ORDER BY id` matches [`TenantId`](tenancy_core::TenantId)'s
//! order; JSON is stored as TEXT; write transactions begin `IMMEDIATE` so that concurrent writers
//! queue on the busy timeout instead of failing to upgrade a read lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Connection as _, Sqlite};
use tenancy_core::TenantError;

use crate::config::StoreConfig;
use crate::error::storage;
use crate::migrate::{Embedded, Records, StoreMigrations};
use crate::sql_store::sealed::{Backend, Unique};
use crate::sql_store::{Parts, SqlStore};
use crate::statements::{Dialect, Statements};

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
pub type SqliteTenantStore = SqlStore<Sqlite>;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tenants and config overrides",
        r"
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
    ),
    (
        2,
        "tenant domains",
        r"
CREATE TABLE tenancy_domains (
    domain TEXT PRIMARY KEY NOT NULL CHECK (length(domain) BETWEEN 3 AND 253),
    tenant_id BLOB NOT NULL REFERENCES tenancy_tenants (id) ON DELETE CASCADE,
    is_primary INTEGER NOT NULL DEFAULT 0 CHECK (is_primary IN (0, 1)),
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX tenancy_domains_tenant ON tenancy_domains (tenant_id);
CREATE UNIQUE INDEX tenancy_domains_one_primary ON tenancy_domains (tenant_id) WHERE is_primary;
",
    ),
];

impl Backend for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    type Extra = ();

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn unique_violation(err: &dyn DatabaseError) -> Option<Unique> {
        let message = err.message();
        if message.contains("tenancy_tenants.slug") {
            Some(Unique::Slug)
        } else if message.contains("tenancy_tenants.id") {
            Some(Unique::Id)
        } else if message.contains("tenancy_domains.domain") {
            Some(Unique::Domain)
        } else {
            None
        }
    }
}

fn embedded() -> Vec<Embedded> {
    MIGRATIONS
        .iter()
        .map(|(version, description, sql)| (*version, *description, (*sql).to_owned()))
        .collect()
}

fn migrations() -> StoreMigrations {
    StoreMigrations::new(
        "the SQLite store".to_owned(),
        embedded(),
        Records {
            table: "tenancy_schema_migrations".to_owned(),
            schema: None,
            legacy_exists: "SELECT count(*) FROM sqlite_master \
                            WHERE type = 'table' AND name = 'tenancy_schema_version'"
                .to_owned(),
            legacy_table: "tenancy_schema_version".to_owned(),
        },
    )
}

impl SqlStore<Sqlite> {
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
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| TenantError::Configuration(format!("store.url is not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if !is_in_memory(url) {
            // The file is created once, here; the pool's connections never create it again, so
            // a file deleted under a running store makes them fail rather than start an empty
            // database in its place.
            let created = SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| storage("opening the SQLite store", e))?;
            let _ = created.close().await;
            options = options.create_if_missing(false);
        }
        let mut pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout());
        if !is_in_memory(url) {
            // SQLite rolls a transaction back by itself on some errors ("database or disk is
            // full"); the connection then still counts the transaction as open and would refuse
            // every later one. Such a connection is closed rather than pooled again. (Not for an
            // in-memory database: closing its connections would lose it.)
            pool = pool.after_release(|conn, _| {
                let reusable = !conn.is_in_transaction();
                if !reusable {
                    tracing::warn!("closing a SQLite connection left inside a failed transaction");
                }
                Box::pin(std::future::ready(Ok(reusable)))
            });
        } else {
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
    /// the migrations when `migrate` is set. Give the pool the `after_release` check
    /// [`connect`](Self::connect) uses (close a connection still inside a transaction), or a
    /// write that fails with a full disk leaves connections that refuse every later write.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when migrating fails.
    pub async fn from_pool(pool: SqlitePool, migrate: bool) -> Result<Self, TenantError> {
        let dialect = Dialect {
            tenants: "tenancy_tenants".to_owned(),
            config: "tenancy_config".to_owned(),
            domains: "tenancy_domains".to_owned(),
            to_json: "",
            to_text: "",
            // Write transactions begin IMMEDIATE: they hold the database's write lock throughout.
            lock: "",
            touch: "",
        };
        let parts = Parts {
            pool,
            sql: Statements::new(&dialect),
            migrations: migrations(),
            notify: None,
            extra: (),
        };
        Self::from_parts(parts, migrate).await
    }
}

impl SqlStore<Sqlite> {
    /// Checks that the database can still be written, within `timeout`: its file is still where
    /// it was opened (a deleted file takes writes that vanish with the process), and a write
    /// transaction commits (it does not on a read-only file, and it needs room on the disk for
    /// one page).
    ///
    /// # Errors
    /// [`TenantError::Storage`] naming what failed.
    pub async fn check_writable(&self, timeout: Duration) -> Result<(), TenantError> {
        let pool = self.pool();
        let probe = async {
            let file: Option<String> =
                sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| storage("reading the SQLite file's name", e))?;
            if let Some(file) = file.filter(|file| !file.is_empty())
                && !std::path::Path::new(&file).exists()
            {
                return Err(TenantError::storage(
                    format!("the SQLite file {file} was deleted"),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            let write = async {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let version: i64 = sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA user_version = {version}"
                )))
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            };
            write
                .await
                .map_err(|e| storage("writing to the SQLite store", e))
        };
        tokio::time::timeout(timeout, probe).await.map_err(|e| {
            TenantError::storage(
                format!("the SQLite store took more than {timeout:?} to take a write"),
                e,
            )
        })?
    }
}

/// Whether a SQLite URL names an in-memory database (`sqlite::memory:`, `mode=memory`).
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_gapless() {
        assert!(crate::migrate::is_gapless(&embedded()));
        assert_eq!(migrations().latest(), 2);
    }
}
