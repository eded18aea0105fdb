//! [`TenantValidator`]: looks tenants up through a bounded cache; only active tenants pass.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use tenancy_core::{
    CacheInvalidation, Slug, TenantError, TenantId, TenantInfo, TenantRef, TenantStore,
};

use crate::config::ValidatorConfig;

/// A cache value: the tenant, or `None` for "no such tenant" (a negative entry).
pub(crate) type CacheEntry = Option<Arc<TenantInfo>>;

/// Positive entries live `ttl`, negative ones `negative_ttl`.
struct EntryExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl EntryExpiry {
    fn of(&self, entry: &CacheEntry) -> Duration {
        if entry.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        }
    }
}

impl Expiry<TenantRef, CacheEntry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _: &TenantRef,
        entry: &CacheEntry,
        _: Instant,
    ) -> Option<Duration> {
        Some(self.of(entry))
    }

    fn expire_after_update(
        &self,
        _: &TenantRef,
        entry: &CacheEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(entry))
    }
}

/// Validates tenant references against a [`TenantStore`] through a bounded cache (moka).
///
/// - Keys are [`TenantRef`]s, so one cache serves ids and slugs; a tenant loaded by one is cached
///   under the other too.
/// - Found tenants stay `cache_ttl_secs`, unknown keys `negative_ttl_secs`; at most
///   `cache_capacity` entries.
/// - Concurrent misses on one key make one store call; store failures are not cached and come back
///   as [`TenantError::Storage`], distinct from [`TenantError::NotFound`].
/// - Only `active` tenants pass [`validate`](Self::validate); otherwise the error says why.
/// - Implements [`CacheInvalidation`]: register it with the lifecycle's `Invalidators`.
///
/// Cloning is cheap and clones share the cache.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::{CacheInvalidation, CreateTenant, InMemoryStore, StatusChange, TenantInfo, TenantRef, TenantStatus, TenantStore};
/// use tenancy_resolution::{TenantValidator, ValidatorConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let acme = store.create(TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?).await?;
/// let validator = TenantValidator::new(store.clone(), &ValidatorConfig::default())?;
///
/// // Still provisioning: refused, and the error says why.
/// let err = validator.validate(TenantRef::Id(acme.id)).await.unwrap_err();
/// assert!(err.to_string().contains("provisioning"));
///
/// let change = StatusChange { from: TenantStatus::Provisioning, to: TenantStatus::Active, reason: None };
/// store.set_status(acme.id, change).await?;
/// validator.invalidate_tenant(acme.id).await;
/// let tenant = validator.validate(TenantRef::Slug("acme".parse()?)).await?;
/// assert_eq!(tenant.id, acme.id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TenantValidator {
    cache: Cache<TenantRef, CacheEntry>,
    store: Arc<dyn TenantStore>,
}

impl fmt::Debug for TenantValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantValidator")
            .field("store", &self.store)
            .field("entries", &self.cache.entry_count())
            .field("capacity", &self.cache.policy().max_capacity())
            .finish()
    }
}

impl TenantValidator {
    /// A validator over `store`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `cache_capacity` is 0.
    pub fn new(store: Arc<dyn TenantStore>, config: &ValidatorConfig) -> Result<Self, TenantError> {
        if config.cache_capacity == 0 {
            return Err(TenantError::Configuration(
                "resolution.validator.cache_capacity is 0: it must be at least 1".into(),
            ));
        }
        let cache = Cache::builder()
            .name("tenancy-validator")
            .max_capacity(config.cache_capacity)
            .expire_after(EntryExpiry {
                ttl: config.cache_ttl(),
                negative_ttl: config.negative_ttl(),
            })
            .build();
        Ok(Self { cache, store })
    }

    /// The tenant `tenant` names, if it exists and is active.
    ///
    /// # Errors
    /// [`TenantError::NotFound`], [`TenantError::Inactive`], [`TenantError::Suspended`],
    /// [`TenantError::Provisioning`] say why the tenant may not serve requests;
    /// [`TenantError::Storage`] that the store failed (nothing cached).
    pub async fn validate(&self, tenant: TenantRef) -> Result<Arc<TenantInfo>, TenantError> {
        check(tenant, self.lookup(tenant).await?)
    }

    /// The tenant `tenant` names, whatever its status, through the cache.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the store failed.
    pub async fn lookup(&self, tenant: TenantRef) -> Result<Option<Arc<TenantInfo>>, TenantError> {
        // A plain read first: `try_get_with` allocates its key even on a hit.
        if let Some(entry) = self.cache.get(&tenant).await {
            return Ok(entry);
        }
        self.cache
            .try_get_with(tenant, self.load(tenant))
            .await
            .map_err(|err| TenantError::storage(format!("loading tenant {tenant}"), err))
    }

    /// The cached entry only: `Some(entry)` on a hit, `None` on a miss. Never calls the store.
    pub(crate) async fn cached(&self, tenant: &TenantRef) -> Option<CacheEntry> {
        self.cache.get(tenant).await
    }

    async fn load(&self, tenant: TenantRef) -> Result<CacheEntry, TenantError> {
        let entry = self.store.find(&tenant).await?.map(Arc::new);
        if let Some(info) = &entry {
            let other = match tenant {
                TenantRef::Id(_) => TenantRef::Slug(info.slug),
                TenantRef::Slug(_) => TenantRef::Id(info.id),
            };
            self.cache.insert(other, entry.clone()).await;
        }
        Ok(entry)
    }

    /// How many entries the cache holds (approximate until pending maintenance ran).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The most entries the cache holds.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.cache.policy().max_capacity().unwrap_or(u64::MAX)
    }

    /// Runs pending cache maintenance (evictions, expirations) now; for tests and metrics.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

/// `Ok` for an active tenant; otherwise the reason.
pub(crate) fn check(tenant: TenantRef, entry: CacheEntry) -> Result<Arc<TenantInfo>, TenantError> {
    let info = entry.ok_or(TenantError::NotFound { tenant })?;
    match TenantError::for_status(&info) {
        None => Ok(info),
        Some(reason) => Err(reason),
    }
}

#[async_trait]
impl CacheInvalidation for TenantValidator {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        let key = TenantRef::Id(tenant);
        match self.cache.remove(&key).await {
            Some(Some(info)) => self.cache.invalidate(&TenantRef::Slug(info.slug)).await,
            // "No such id": a slug load since would have replaced it, so no slug entry holds it.
            Some(None) => {}
            // The id entry is gone (evicted): find slug entries by value.
            None => {
                let stale: Vec<TenantRef> = self
                    .cache
                    .iter()
                    .filter(|(_, entry)| entry.as_ref().is_some_and(|info| info.id == tenant))
                    .map(|(key, _)| *key)
                    .collect();
                for key in stale {
                    self.cache.invalidate(&key).await;
                }
            }
        }
    }

    async fn invalidate_slug(&self, slug: &Slug) {
        self.cache.invalidate(&TenantRef::Slug(*slug)).await;
    }

    async fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}
