//! Database per tenant over PostgreSQL: [`DatabaseRouter`] (one pool per placement, bounded cache)
//! and [`PgDatabaseProvisioner`] (CREATE / DROP DATABASE on one server).
//!
//! Architecture invariant: the router never holds more than its capacity of pools, and a pool
//! leaving the cache is closed.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use tenancy_core::{TenantError, TenantId};
use tenancy_pg_connect::{connect_error, connect_options};

use crate::config::IsolationConfig;
use crate::database::{DatabaseProvisioner, Placement, validate_server_key};
use crate::ident::quote_ident;

/// Routes tenant work to the pool of its placement, keeping at most `capacity` pools open.
///
/// ```no_run
/// use tenancy_isolation_sql::{DatabaseRouter, IsolationConfig, Placement};
///
/// # async fn example() -> Result<(), tenancy_core::TenantError> {
/// let mut config = IsolationConfig::default();
/// config.servers.insert("eu-1".into(), "postgres://app:secret@db-eu-1:5432/postgres".into());
/// let router = DatabaseRouter::from_config(&config)?;
/// let pool = router.pool(&Placement::new("eu-1", "tenant_0190d5a07c1e7a2b9c3d4e5f60718293")?).await?;
/// # let _ = pool; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DatabaseRouter {
    servers: Arc<HashMap<String, PgConnectOptions>>,
    pools: Cache<Placement, PgPool>,
    max_connections: u32,
}

impl DatabaseRouter {
    /// A router over `servers` (key to the application role's connect options).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when a server key is invalid.
    pub fn new(
        servers: impl IntoIterator<Item = (String, PgConnectOptions)>,
        capacity: u64,
        max_connections: u32,
    ) -> Result<Self, TenantError> {
        let servers: HashMap<_, _> = servers.into_iter().collect();
        for key in servers.keys() {
            validate_server_key(key)
                .map_err(|e| TenantError::Configuration(format!("isolation.servers: {e}")))?;
        }
        // LRU admits every new pool (TinyLFU could reject a new entry at once, closing the pool
        // just handed out); the least recently used pool is the one closed.
        let pools = Cache::builder()
            .max_capacity(capacity.max(1))
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(|placement: Arc<Placement>, pool: PgPool, cause| {
                tracing::debug!(%placement, ?cause, "closing an evicted tenant pool");
                close_in_background(pool);
            })
            .build();
        Ok(Self {
            servers: Arc::new(servers),
            pools,
            max_connections: max_connections.max(1),
        })
    }

    /// A router over the `servers` of `config` (checked by [`IsolationConfig::validate`]), with
    /// the TLS of `config.tls` (and of each URL's `sslmode` and `sslrootcert`), its pool cache
    /// capacity and connection limit.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when a server URL does not parse or its TLS settings are
    /// refused (see [`tenancy_pg_connect::connect_options`]).
    pub fn from_config(config: &IsolationConfig) -> Result<Self, TenantError> {
        let servers = config
            .servers
            .iter()
            .map(|(key, url)| {
                connect_options(
                    url,
                    &format!("isolation.servers.{key}"),
                    &config.tls,
                    "isolation.tls",
                )
                .map(|options| (key.clone(), options))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(
            servers,
            config.pool_cache_capacity,
            config.pool_max_connections,
        )
    }

    /// The pool of `placement` (created lazily; connects on first use).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the placement's server is not configured.
    pub async fn pool(&self, placement: &Placement) -> Result<PgPool, TenantError> {
        if let Some(pool) = self.pools.get(placement).await {
            return Ok(pool);
        }
        let options = self.servers.get(placement.server()).ok_or_else(|| {
            TenantError::Configuration(format!(
                "placement {placement} names the server {:?}, which isolation.servers does not configure",
                placement.server()
            ))
        })?;
        let options = options.clone().database(placement.database());
        let max_connections = self.max_connections;
        Ok(self
            .pools
            .get_with_by_ref(placement, async move {
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .connect_lazy_with(options)
            })
            .await)
    }

    /// The pool of a placement key (`server/database`, as [`IsolationStep::Route`] carries it).
    ///
    /// [`IsolationStep::Route`]: tenancy_core::IsolationStep::Route
    ///
    /// # Errors
    /// As [`pool`](Self::pool), and [`TenantError::InvalidInput`] for a malformed key.
    pub async fn pool_for_key(&self, key: &str) -> Result<PgPool, TenantError> {
        self.pool(&Placement::parse_key(key)?).await
    }

    /// Begins a transaction with `statement` (`BEGIN` and, optionally, more statements of the
    /// simple protocol) on the pool of the placement key `key`. A pool evicted (and closed) between
    /// lookup and use is replaced once.
    ///
    /// # Errors
    /// As [`pool_for_key`](Self::pool_for_key), and [`TenantError::Isolation`] when beginning fails
    /// (saying so when TLS is what failed).
    pub(crate) async fn begin_with(
        &self,
        key: &str,
        statement: String,
    ) -> Result<Transaction<'static, Postgres>, TenantError> {
        let placement = Placement::parse_key(key)?;
        let statement: Arc<str> = statement.into();
        let mut retried = false;
        loop {
            let pool = self.pool(&placement).await?;
            match pool.begin_with(AssertSqlSafe(Arc::clone(&statement))).await {
                Err(sqlx::Error::PoolClosed) if !retried => {
                    self.pools.invalidate(&placement).await;
                    retried = true;
                }
                Err(e) => {
                    let e = connect_error(&pool.connect_options(), e);
                    return Err(TenantError::isolation(
                        format!("beginning a transaction on {placement}: {e}"),
                        e,
                    ));
                }
                Ok(tx) => return Ok(tx),
            }
        }
    }

    /// Closes and forgets the pool of `placement` (before dropping its database, say); returns
    /// once its connections in use have come back and every connection is closed.
    pub async fn evict(&self, placement: &Placement) {
        if let Some(pool) = self.pools.remove(placement).await {
            pool.close().await;
        }
        self.pools.run_pending_tasks().await;
    }

    /// How many pools are open, after finishing pending evictions.
    pub async fn open_pools(&self) -> u64 {
        self.pools.run_pending_tasks().await;
        self.pools.entry_count()
    }
}

/// Closes an evicted pool: at once for new work, and in a task for the connections still in use.
///
/// The eviction runs inside whichever cache call triggered it, often another tenant's lookup;
/// awaiting the close there would make that call wait for this placement's open transactions,
/// and deadlock a task that holds one of them.
fn close_in_background(pool: PgPool) {
    // Calling `close` marks the pool closed (new acquires fail); its future, not polled here,
    // is the part that waits for connections in use and closes them.
    drop(pool.close());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { pool.close().await });
    }
}

/// The reference [`DatabaseProvisioner`]: runs `CREATE DATABASE` / `DROP DATABASE` on one server,
/// naming each tenant's database `tenant_<32 hex>`.
///
/// These statements cannot run in a transaction nor take bind parameters: the name is derived from
/// the tenant id and quoted.
#[derive(Debug, Clone)]
pub struct PgDatabaseProvisioner {
    server: String,
    admin: PgPool,
}

impl PgDatabaseProvisioner {
    /// A provisioner for the server `server` (its key in `isolation.servers`), through `admin`, a
    /// pool of a role with CREATEDB connected to that server.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when the server key is invalid.
    pub fn new(server: impl Into<String>, admin: PgPool) -> Result<Self, TenantError> {
        let server = server.into();
        validate_server_key(&server)?;
        Ok(Self { server, admin })
    }
}

#[async_trait]
impl DatabaseProvisioner for PgDatabaseProvisioner {
    async fn create(&self, tenant: TenantId) -> Result<Placement, TenantError> {
        let placement = Placement::for_tenant(self.server.clone(), tenant)?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(placement.database())
                .fetch_one(&self.admin)
                .await
                .map_err(|e| {
                    TenantError::isolation(format!("looking up the database of tenant {tenant}"), e)
                })?;
        if !exists {
            let sql = format!("CREATE DATABASE {}", quote_ident(placement.database()));
            match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.admin).await {
                Ok(_) => {}
                // Created concurrently (duplicate_database; or the catalog's unique index).
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(e) => {
                    return Err(TenantError::isolation(
                        format!("creating the database of tenant {tenant}"),
                        e,
                    ));
                }
            }
        }
        Ok(placement)
    }

    async fn drop_database(
        &self,
        tenant: TenantId,
        placement: &Placement,
    ) -> Result<(), TenantError> {
        if placement.server() != self.server {
            return Err(TenantError::Configuration(format!(
                "placement {placement} of tenant {tenant} is not on the server {} of this provisioner",
                self.server
            )));
        }
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(placement.database())
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.admin)
            .await
            .map_err(|e| {
                TenantError::isolation(format!("dropping the database of tenant {tenant}"), e)
            })?;
        Ok(())
    }
}
