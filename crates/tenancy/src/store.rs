//! The tenant and config store the stack runs on: in memory, or SQL when `store.url` is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_core::{ConfigStore, Health, InMemoryStore, TenantError, TenantId, TenantStore};
use tenancy_store_sql::StoreConfig;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use tenancy_store_sql::SqlTenantStore;

/// How long the in-memory store may take to answer a health check.
const MEMORY_TIMEOUT: Duration = Duration::from_secs(1);

/// The store of a stack, shared by every provider that needs it.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Memory(Arc<InMemoryStore>),
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    Sql {
        store: Arc<SqlTenantStore>,
        timeout: Duration,
    },
}

impl Store {
    /// An in-memory store.
    pub(crate) fn memory() -> Self {
        Self::Memory(Arc::new(InMemoryStore::new()))
    }

    /// The store `config.url` names, or an in-memory store when it names none.
    pub(crate) async fn open(config: &StoreConfig) -> Result<Self, TenantError> {
        config.validate()?;
        if config.url.is_none() {
            return Ok(Self::memory());
        }
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        {
            let store = SqlTenantStore::connect(config).await?;
            tracing::info!(backend = store.backend(), "tenant store connected");
            Ok(Self::Sql {
                store: Arc::new(store),
                timeout: config.ping_timeout(),
            })
        }
        #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
        Err(TenantError::Configuration(
            "store.url is set, but this build of tenancy has no SQL store: enable the `sqlite` or \
             `postgres` feature, or remove store.url to use the in-memory store"
                .into(),
        ))
    }

    pub(crate) fn tenants(&self) -> Arc<dyn TenantStore> {
        match self {
            Self::Memory(store) => Arc::clone(store) as Arc<dyn TenantStore>,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Self::Sql { store, .. } => Arc::clone(store) as Arc<dyn TenantStore>,
        }
    }

    pub(crate) fn configs(&self) -> Arc<dyn ConfigStore> {
        match self {
            Self::Memory(store) => Arc::clone(store) as Arc<dyn ConfigStore>,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Self::Sql { store, .. } => Arc::clone(store) as Arc<dyn ConfigStore>,
        }
    }

    /// The PostgreSQL store, when the stack runs on one.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(&self) -> Option<&tenancy_store_sql::PgTenantStore> {
        match self {
            Self::Sql { store, .. } => store.postgres(),
            Self::Memory(_) => None,
        }
    }

    /// Closes the SQL pool (waiting for the connections to close); nothing for the in-memory
    /// store. Called once the stack has shut down: anything still using the store then gets a
    /// storage error.
    pub(crate) async fn close(&self) {
        match self {
            Self::Memory(_) => {}
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Self::Sql { store, .. } => store.close().await,
        }
    }

    /// Checks that the store answers within its timeout (a SQL store is pinged; the in-memory
    /// store answers a read); how long it took.
    pub(crate) async fn ping(&self) -> Result<Duration, TenantError> {
        match self {
            Self::Memory(store) => {
                let started = Instant::now();
                within(store.get(nil_tenant()), MEMORY_TIMEOUT, "the store").await?;
                Ok(started.elapsed())
            }
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Self::Sql { store, timeout } => store.ping(*timeout).await,
        }
    }

    /// Healthy when [`ping`](Self::ping) succeeds and the store takes writes (a SQLite file
    /// deleted, read-only or on a full disk is unhealthy).
    pub(crate) async fn health(&self) -> Health {
        let health = match self.ping().await {
            Ok(took) => Health::healthy().with_detail("ping", format!("{} ms", took.as_millis())),
            Err(e) => Health::unhealthy(e.to_string()),
        };
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        let health = match self {
            Self::Sql { store, timeout } if store.backend() == "sqlite" => {
                match store.check_writable(*timeout).await {
                    Ok(()) => health.with_detail("writable", "yes"),
                    Err(e) => Health::unhealthy(e.to_string()),
                }
            }
            _ => health,
        };
        health.with_detail("backend", self.backend())
    }

    /// Healthy when the config store answers a read within the store's timeout.
    pub(crate) async fn config_health(&self) -> Health {
        let configs = self.configs();
        let probe = configs.get_all_config(nil_tenant());
        let health = match within(probe, self.timeout(), "the config store").await {
            Ok(_) => Health::healthy(),
            Err(e) => Health::unhealthy(e.to_string()),
        };
        health.with_detail("backend", self.backend())
    }

    fn timeout(&self) -> Duration {
        match self {
            Self::Memory(_) => MEMORY_TIMEOUT,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Self::Sql { timeout, .. } => *timeout,
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Self::Sql { store, .. } => store.backend(),
        }
    }
}

/// An id no tenant has: probes read it to see that the store answers.
fn nil_tenant() -> TenantId {
    TenantId::from_uuid(tenancy_core::Uuid::nil())
}

/// `probe`'s result, or a storage error when it does not finish within `timeout`.
async fn within<T>(
    probe: impl Future<Output = Result<T, TenantError>>,
    timeout: Duration,
    what: &str,
) -> Result<T, TenantError> {
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| {
            Err(TenantError::Storage {
                message: format!("{what} did not answer within {} ms", timeout.as_millis()),
                source: None,
            })
        })
}
