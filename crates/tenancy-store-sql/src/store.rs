//! [`SqlTenantStore`]: the store of whichever backend a URL names.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tenancy_core::{
    ConfigStore, DomainChange, DomainName, JsonObject, ListQuery, Page, Slug, StatusChange,
    TenantDomain, TenantError, TenantId, TenantInfo, TenantStatus, TenantStore, UpdateTenant,
};

use crate::config::StoreConfig;
#[cfg(feature = "postgres")]
use crate::postgres::PgTenantStore;
#[cfg(feature = "sqlite")]
use crate::sqlite::SqliteTenantStore;

/// A tenant and config store on PostgreSQL or SQLite, chosen by the URL's scheme.
///
/// Each backend is also usable directly ([`PgTenantStore`], [`SqliteTenantStore`]); this enum is
/// what configuration-driven code (the `tenancy` bundle, the CLI) holds, and the one place that
/// chooses between backends.
///
/// ```
/// use tenancy_core::TenantStore;
/// use tenancy_store_sql::{SqlTenantStore, StoreConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let url = format!("sqlite://{}", dir.path().join("tenants.db").display());
/// let store = SqlTenantStore::connect(&StoreConfig::with_url(url)).await?;
/// assert!(store.list(Default::default()).await?.items.is_empty());
/// assert!(store.ping(std::time::Duration::from_secs(2)).await.is_ok());
/// assert_eq!(store.backend(), "sqlite");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SqlTenantStore {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(PgTenantStore),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteTenantStore),
}

/// Calls `$call` on the backend store inside `$store`.
macro_rules! delegate {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            #[cfg(feature = "postgres")]
            SqlTenantStore::Postgres($s) => $call,
            #[cfg(feature = "sqlite")]
            SqlTenantStore::Sqlite($s) => $call,
        }
    };
}

impl SqlTenantStore {
    /// Connects to the store `config.url` names (`postgres://`/`postgresql://` or `sqlite:`),
    /// running the migrations unless `config.migrate` is off.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the URL is missing, names another database, or needs a
    /// feature this build lacks; otherwise what the backend's `connect` returns.
    pub async fn connect(config: &StoreConfig) -> Result<Self, TenantError> {
        let url = config.require_url()?;
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Self::Postgres(PgTenantStore::connect(config).await?)),
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Self::Sqlite(SqliteTenantStore::connect(config).await?)),
            // Reached only for a backend whose feature is off.
            #[allow(unreachable_patterns)]
            "postgres" | "postgresql" | "sqlite" => Err(TenantError::Configuration(format!(
                "store.url uses {scheme}, but tenancy-store-sql was built without its feature \
                 (enable `{}`)",
                if scheme == "sqlite" {
                    "sqlite"
                } else {
                    "postgres"
                }
            ))),
            _ => Err(TenantError::Configuration(format!(
                "store.url must start with postgres:// or sqlite://, got scheme {scheme:?}"
            ))),
        }
    }

    /// The backend's name: `postgres` or `sqlite`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        delegate!(self, s => s.backend())
    }

    /// The PostgreSQL store, when this is one.
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn postgres(&self) -> Option<&PgTenantStore> {
        match self {
            Self::Postgres(store) => Some(store),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Closes the pool, waiting for its connections to close; every later call fails with
    /// [`TenantError::Storage`].
    pub async fn close(&self) {
        delegate!(self, s => s.close().await);
    }

    /// Checks that the database answers within `timeout` (a cheap `SELECT 1`); returns how long it
    /// took. Use `config.ping_timeout()` for the configured timeout.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when it fails or times out.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, TenantError> {
        delegate!(self, s => s.ping(timeout).await)
    }

    /// Checks that the store takes writes (SQLite: its file is still there and a write
    /// transaction commits); PostgreSQL answers for itself, so its check is the ping.
    ///
    /// # Errors
    /// [`TenantError::Storage`] naming what failed.
    pub async fn check_writable(&self, timeout: Duration) -> Result<(), TenantError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => store.check_writable(timeout).await,
            #[allow(unreachable_patterns)]
            _ => self.ping(timeout).await.map(drop),
        }
    }
}

#[async_trait]
impl TenantStore for SqlTenantStore {
    async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError> {
        delegate!(self, s => s.get(id).await)
    }

    async fn get_by_slug(&self, slug: &Slug) -> Result<Option<TenantInfo>, TenantError> {
        delegate!(self, s => s.get_by_slug(slug).await)
    }

    async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError> {
        delegate!(self, s => s.list(query).await)
    }

    async fn create(&self, tenant: TenantInfo) -> Result<TenantInfo, TenantError> {
        delegate!(self, s => s.create(tenant).await)
    }

    async fn update(&self, id: TenantId, update: &UpdateTenant) -> Result<TenantInfo, TenantError> {
        delegate!(self, s => s.update(id, update).await)
    }

    async fn set_status(
        &self,
        id: TenantId,
        change: StatusChange,
    ) -> Result<TenantInfo, TenantError> {
        delegate!(self, s => s.set_status(id, change).await)
    }

    async fn set_status_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError> {
        delegate!(self, s => s.set_status_reason(id, status, reason).await)
    }

    async fn get_by_domain(&self, domain: &DomainName) -> Result<Option<TenantInfo>, TenantError> {
        delegate!(self, s => s.get_by_domain(domain).await)
    }

    async fn domains(&self, tenant: TenantId) -> Result<Vec<TenantDomain>, TenantError> {
        delegate!(self, s => s.domains(tenant).await)
    }

    async fn add_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
        primary: bool,
    ) -> Result<DomainChange, TenantError> {
        delegate!(self, s => s.add_domain(tenant, domain, primary).await)
    }

    async fn remove_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        delegate!(self, s => s.remove_domain(tenant, domain).await)
    }

    async fn set_primary_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        delegate!(self, s => s.set_primary_domain(tenant, domain).await)
    }
}

#[async_trait]
impl ConfigStore for SqlTenantStore {
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        delegate!(self, s => s.get_config(tenant, key).await)
    }

    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        delegate!(self, s => s.get_all_config(tenant).await)
    }

    async fn set_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, TenantError> {
        delegate!(self, s => s.set_config(tenant, key, value).await)
    }

    async fn remove_config(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Value>, TenantError> {
        delegate!(self, s => s.remove_config(tenant, key).await)
    }
}
