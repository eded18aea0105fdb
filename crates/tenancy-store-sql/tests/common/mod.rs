//! Test fixtures shared by the PostgreSQL tests and the change-feed bench: a fresh database per
//! test on the throwaway server, and a small caching reader standing in for a validator.

#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tenancy_core::{
    CacheInvalidation, Invalidators, Slug, TenantError, TenantId, TenantInfo, TenantRef,
    TenantStore,
};
use tenancy_store_sql::{ChangeFeed, FeedSettings, PgTenantStore, StoreConfig};

/// A database of its own on the test server, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub name: String,
    pub options: PgConnectOptions,
    admin: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let url = tenancy_core::conformance::test_database_url();
        let admin_options = PgConnectOptions::from_str(&url).expect("test database URL");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(admin_options.clone())
            .await
            .expect("connect to the test server");
        let name = format!("tenancy_store_{}", TenantId::new().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .expect("create the test database");
        let options = admin_options.database(&name);
        Self {
            name,
            options,
            admin,
        }
    }

    /// A pool on the test database, as one process of the application would have.
    pub async fn pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.options.clone())
            .await
            .expect("connect to the test database")
    }

    /// A store with its own pool and the default configuration.
    pub async fn store(&self) -> PgTenantStore {
        PgTenantStore::from_pool(self.pool(10).await, &StoreConfig::default())
            .await
            .expect("store")
    }

    /// Runs SQL on the server's `postgres` database as superuser.
    pub async fn admin(&self, sql: String) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await
            .expect("admin statement");
    }

    /// Whether new connections to the test database are allowed.
    pub async fn allow_connections(&self, allow: bool) {
        self.admin(format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS {allow}",
            self.name
        ))
        .await;
    }

    /// Terminates the backends of connections named `application_name`; returns how many.
    pub async fn terminate(&self, application_name: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = $2) t",
        )
        .bind(application_name)
        .bind(&self.name)
        .fetch_one(&self.admin)
        .await
        .expect("terminate")
    }

    pub async fn drop_db(self) {
        self.admin(format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .await;
        self.admin.close().await;
    }
}

/// A caching reader of tenants, as a validator would keep one: 300 s TTL, refuses tenants that
/// are not active, and forgets a tenant when invalidated.
#[derive(Debug)]
pub struct CachingReader {
    store: PgTenantStore,
    cache: moka::future::Cache<TenantId, Arc<TenantInfo>>,
    pub loads: AtomicU64,
}

impl CachingReader {
    pub fn new(store: PgTenantStore) -> Self {
        Self {
            store,
            cache: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(300))
                .max_capacity(10_000)
                .build(),
            loads: AtomicU64::new(0),
        }
    }

    /// The tenant if it may serve requests.
    pub async fn check(&self, id: TenantId) -> Result<Arc<TenantInfo>, TenantError> {
        let tenant = self
            .cache
            .try_get_with(id, async {
                self.loads.fetch_add(1, Ordering::Relaxed);
                self.store
                    .get(id)
                    .await?
                    .map(Arc::new)
                    .ok_or(TenantError::NotFound {
                        tenant: TenantRef::Id(id),
                    })
            })
            .await
            .map_err(|e: Arc<TenantError>| TenantError::Resolution(e.to_string()))?;
        match TenantError::for_status(&tenant) {
            None => Ok(tenant),
            Some(refused) => Err(refused),
        }
    }

    /// Whether the tenant is cached (without loading it).
    pub async fn is_cached(&self, id: TenantId) -> bool {
        self.cache.get(&id).await.is_some()
    }
}

#[async_trait]
impl CacheInvalidation for CachingReader {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        self.cache.invalidate(&tenant).await;
    }

    async fn invalidate_slug(&self, _slug: &Slug) {}

    async fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

/// One application process: a store on its own pool, a cache registered in its own
/// `Invalidators`, and (optionally) a change feed.
pub struct Stack {
    pub store: PgTenantStore,
    pub reader: Arc<CachingReader>,
    pub invalidators: Invalidators,
    pub feed: Option<ChangeFeed>,
    pub application_name: String,
}

impl Stack {
    pub async fn new(db: &TestDb, with_feed: bool) -> Self {
        let store = db.store().await;
        let reader = Arc::new(CachingReader::new(store.clone()));
        let invalidators = Invalidators::new();
        invalidators.register(reader.clone());
        let application_name = format!(
            "tenancy-feed-{}",
            &TenantId::new().simple().to_string()[..16]
        );
        let feed = if with_feed {
            let mut settings = FeedSettings::new("tenancy_changes");
            settings.application_name.clone_from(&application_name);
            settings.min_backoff = Duration::from_millis(50);
            settings.max_backoff = Duration::from_millis(400);
            Some(
                ChangeFeed::start(
                    (*store.pool().connect_options()).clone(),
                    settings,
                    invalidators.clone(),
                )
                .await
                .expect("start the change feed"),
            )
        } else {
            None
        };
        Self {
            store,
            reader,
            invalidators,
            feed,
            application_name,
        }
    }

    pub fn feed(&self) -> &ChangeFeed {
        self.feed.as_ref().expect("stack with a feed")
    }
}
