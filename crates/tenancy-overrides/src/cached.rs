//! [`CachedConfigStore`]: a caching decorator over any [`ConfigStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use serde_json::Value;
use tenancy_core::{
    CacheInvalidation, ConfigStore, Generation, JsonObject, Stamp, TenantError, TenantId,
};

use crate::config::{MAX_CACHE_TTL, OverridesConfig};

/// Caches the whole configuration of a tenant as one unit in front of a [`ConfigStore`].
///
/// - A read of any key loads the tenant's whole configuration once (`get_all_config`) and serves
///   every key from it until the TTL expires; concurrent misses on one tenant coalesce into one
///   store call. The cache is bounded (`cache_capacity` tenants).
/// - A write (`set_config`, `remove_config`) goes through to the store, then drops the tenant's
///   unit, so the next read sees it. Every unit carries the [`Stamp`] its load began at, and a
///   read accepts only a unit whose load began after the last change of its tenant that preceded
///   the read ([`Generation`]): a read that starts after a write returns never sees an older
///   value, also when it joins a load already in flight or meets a unit a racing load left.
/// - As a [`CacheInvalidation`], it forgets tenants changed elsewhere (register it with the
///   `Invalidators` a change feed drives).
///
/// `S` may be a concrete store or `dyn ConfigStore` (the default).
///
/// ```
/// use std::sync::Arc;
/// use serde_json::json;
/// use tenancy_core::{ConfigStore, CreateTenant, InMemoryStore, TenantInfo, TenantStore};
/// use tenancy_overrides::{CachedConfigStore, OverridesConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?;
/// let tenant = store.create(tenant).await?;
///
/// let cached = CachedConfigStore::from_config(store.clone(), &OverridesConfig::default())?;
/// cached.set_config(tenant.id, "theme", json!("dark")).await?;
/// assert_eq!(cached.get_config(tenant.id, "theme").await?, Some(json!("dark")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct CachedConfigStore<S: ?Sized = dyn ConfigStore> {
    inner: Arc<S>,
    units: Cache<TenantId, Unit>,
    /// Advanced by every write and invalidation, before the unit is dropped.
    generation: Generation,
}

/// A tenant's configuration and the stamp of its tenant when its load began.
#[derive(Clone)]
struct Unit {
    config: Arc<JsonObject>,
    loaded: Stamp,
}

/// How often a read retries through the cache when the unit it got predates a change it must
/// see; after that it reads the store directly.
const CACHED_ATTEMPTS: usize = 3;

impl<S: ConfigStore + ?Sized + 'static> CachedConfigStore<S> {
    /// A cache in front of `inner`, keeping a tenant's configuration for `ttl` (at most
    /// [`MAX_CACHE_TTL`]: a longer one is cut to it), for at most `capacity` tenants.
    #[must_use]
    pub fn new(inner: Arc<S>, ttl: Duration, capacity: u64) -> Self {
        Self {
            inner,
            units: Cache::builder()
                .name("tenancy-config-overrides")
                // Capped: the cache panics on a time to live past 1000 years.
                .time_to_live(ttl.min(MAX_CACHE_TTL))
                .max_capacity(capacity)
                .build(),
            generation: Generation::new(),
        }
    }

    /// A cache configured by `config` (`cache_ttl`, `cache_capacity`).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `config` is invalid.
    pub fn from_config(inner: Arc<S>, config: &OverridesConfig) -> Result<Self, TenantError> {
        config.validate()?;
        Ok(Self::new(inner, config.cache_ttl, config.cache_capacity))
    }

    /// The store behind the cache.
    #[must_use]
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Whether the tenant's configuration is cached right now.
    #[must_use]
    pub fn is_cached(&self, tenant: TenantId) -> bool {
        self.units.contains_key(&tenant)
    }

    /// The tenant's whole configuration, shared: from the cache, or loaded once however many
    /// callers wait for it.
    ///
    /// # Errors
    /// The store's error (not cached: the next call asks the store again).
    pub async fn config(&self, tenant: TenantId) -> Result<Arc<JsonObject>, TenantError> {
        let caller = self.generation.stamp(&tenant);
        for _ in 0..CACHED_ATTEMPTS {
            let unit = match self.units.get(&tenant).await {
                Some(unit) => unit,
                None => self
                    .units
                    .try_get_with(tenant, self.load(tenant))
                    .await
                    .map_err(unshare)?,
            };
            if Generation::serves(unit.loaded, caller) {
                return Ok(unit.config);
            }
            // The unit's load began before a change this read must see.
            self.units.invalidate(&tenant).await;
        }
        Ok(self.load(tenant).await?.config)
    }

    async fn load(&self, tenant: TenantId) -> Result<Unit, TenantError> {
        let loaded = self.generation.stamp(&tenant);
        let config = self.inner.get_all_config(tenant).await?;
        Ok(Unit {
            config: Arc::new(config),
            loaded,
        })
    }

    async fn forget(&self, tenant: TenantId) {
        self.generation.advance(&tenant);
        self.units.invalidate(&tenant).await;
    }
}

/// An error that several coalesced callers share: the original when this caller is the last
/// holder, otherwise a storage error wrapping the shared one.
fn unshare(error: Arc<TenantError>) -> TenantError {
    Arc::try_unwrap(error).unwrap_or_else(|shared| TenantError::Storage {
        message: format!("loading tenant configuration: {shared}"),
        source: Some(Box::new(shared)),
    })
}

impl<S: ?Sized + fmt::Debug> fmt::Debug for CachedConfigStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedConfigStore")
            .field("inner", &&*self.inner)
            .field("cached_tenants", &self.units.entry_count())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: ConfigStore + ?Sized + 'static> ConfigStore for CachedConfigStore<S> {
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        Ok(self.config(tenant).await?.get(key).cloned())
    }

    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        Ok(JsonObject::clone(&*self.config(tenant).await?))
    }

    async fn set_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, TenantError> {
        let result = self.inner.set_config(tenant, key, value).await;
        // Dropped even on error: a failed call may still have reached the store.
        self.forget(tenant).await;
        result
    }

    async fn remove_config(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Value>, TenantError> {
        let result = self.inner.remove_config(tenant, key).await;
        self.forget(tenant).await;
        result
    }
}

#[async_trait]
impl<S: ConfigStore + ?Sized + 'static> CacheInvalidation for CachedConfigStore<S> {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        self.forget(tenant).await;
    }

    async fn invalidate_all(&self) {
        self.generation.advance_all();
        self.units.invalidate_all();
    }
}
