//! [`TenantValidator`]: looks tenants up through a bounded cache; only active tenants pass.
//!
//! The cache is `quick_cache` (S3-FIFO, sharded), not moka: a cache hit must cost well under the
//! 2x budget of the header-resolve bench, and a bare moka future-cache read alone measured 2.9x
//! the baseline (see docs/benchmarks.md). Expiry is an instant of the coarse monotonic clock
//! (`CLOCK_MONOTONIC_COARSE` on Linux: a few nanoseconds to read, where `Instant::now` cost as much
//! as the cache read itself) stored in each entry and checked on read; an expired entry is a miss.
//! The coarse clock ticks every few milliseconds, which is all a TTL of seconds needs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use coarsetime::Instant;
use quick_cache::OptionsBuilder;
use quick_cache::sync::{Cache, EntryAction, EntryResult, PlaceholderGuard};
use tenancy_core::{
    CacheInvalidation, Slug, TenantError, TenantId, TenantInfo, TenantRef, TenantStore,
};

use crate::config::ValidatorConfig;

/// A cache value: the tenant, or `None` for "no such tenant" (a negative entry).
pub(crate) type CacheEntry = Option<Arc<TenantInfo>>;

/// What the cache stores: the entry and when it stops being served.
#[derive(Clone)]
struct Entry {
    tenant: CacheEntry,
    expires: Instant,
}

impl Entry {
    fn fresh(&self, now: Instant) -> bool {
        now < self.expires
    }
}

type Guard<'a> = PlaceholderGuard<
    'a,
    TenantRef,
    Entry,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    quick_cache::sync::DefaultLifecycle<TenantRef, Entry>,
>;

/// The failure a request gets when the load it waited for failed.
#[derive(Debug, thiserror::Error)]
#[error("a concurrent load of the same tenant failed")]
struct ConcurrentLoadFailed;

struct Shared {
    cache: Cache<TenantRef, Entry>,
    store: Arc<dyn TenantStore>,
    capacity: u64,
    ttl: coarsetime::Duration,
    negative_ttl: coarsetime::Duration,
    /// Bumped before every invalidation: a load that saw another value cannot cache what it read.
    generation: AtomicU64,
    /// Bumped on every failed load: a miss that waited through one shares its failure.
    failures: AtomicU64,
}

/// Now, on the coarse clock.
fn now() -> Instant {
    Instant::now_without_cache_update()
}

/// `ttl` on the coarse clock, at most ten years (the clock counts seconds in 32 bits).
fn coarse(ttl: Duration) -> coarsetime::Duration {
    const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    ttl.min(MAX).into()
}

/// A cache of at most `capacity` entries.
///
/// quick_cache gives each shard `ceil(weight / shards)`; a weight that the shard count divides
/// keeps the total at or under `capacity`. Shards hold at least 32 entries each.
fn bounded_cache(capacity: u64) -> Result<Cache<TenantRef, Entry>, TenantError> {
    let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
    let mut shards = u64::try_from((parallelism * 4).next_power_of_two()).unwrap_or(1);
    while shards > 1 && capacity / shards < 32 {
        shards /= 2;
    }
    let options = OptionsBuilder::new()
        .shards(usize::try_from(shards).unwrap_or(1))
        // Only a sizing hint (tables grow past it); bounded so a huge capacity allocates nothing up front.
        .estimated_items_capacity(usize::try_from(capacity.min(65_536)).unwrap_or(65_536))
        .weight_capacity(capacity / shards * shards)
        .build()
        .map_err(|err| {
            TenantError::Configuration(format!("resolution.validator cache options: {err:?}"))
        })?;
    Ok(Cache::with_options(
        options,
        Default::default(),
        Default::default(),
        Default::default(),
    ))
}

/// Validates tenant references against a [`TenantStore`] through a bounded cache.
///
/// - Keys are [`TenantRef`]s, so one cache serves ids and slugs; a tenant loaded by one is cached
///   under the other too.
/// - Found tenants stay `cache_ttl_secs`, unknown keys `negative_ttl_secs` (an expired entry is a
///   miss); at most `cache_capacity` entries (S3-FIFO eviction).
/// - Concurrent misses on one key make one store call; store failures are not cached and come back
///   as [`TenantError::Storage`], distinct from [`TenantError::NotFound`]. Misses that waited for
///   a load that failed get a storage error too, without calling the store again (failures are
///   counted per validator, so a miss that starts just as another key's load fails gets one
///   as well: only while the store is failing).
/// - An invalidation that lands while a load is in flight wins: the load's result is returned to
///   its caller but not cached (or dropped again if it was cached meanwhile).
/// - Only `active` tenants pass [`validate`](Self::validate); otherwise the error says why.
/// - Implements [`CacheInvalidation`]: register it with the lifecycle's `Invalidators`.
///
/// The cache is `quick_cache` rather than moka: a cache hit here costs a shard read lock and a
/// coarse clock read, where a bare moka read alone measured 2.9 times the whole header-resolve baseline
/// (docs/benchmarks.md, section "Tenant resolution").
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
    shared: Arc<Shared>,
}

impl fmt::Debug for TenantValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantValidator")
            .field("store", &self.shared.store)
            .field("entries", &self.entry_count())
            .field("capacity", &self.shared.capacity)
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
        Ok(Self {
            shared: Arc::new(Shared {
                cache: bounded_cache(config.cache_capacity)?,
                store,
                capacity: config.cache_capacity,
                ttl: coarse(config.cache_ttl()),
                negative_ttl: coarse(config.negative_ttl()),
                generation: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        })
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
        match self.cached(&tenant) {
            Some(entry) => Ok(entry),
            // Boxed, so that this future (and `validate`'s) stays a few words: a hit then
            // moves no large state machine around, and a miss awaits the store anyway.
            None => Box::pin(self.load(tenant)).await,
        }
    }

    /// The fresh cached entry only: `Some(entry)` on a hit, `None` on a miss. Never calls the
    /// store and never waits.
    pub(crate) fn cached(&self, tenant: &TenantRef) -> Option<CacheEntry> {
        let entry = self.shared.cache.get(tenant)?;
        entry.fresh(now()).then_some(entry.tenant)
    }

    /// A miss: join the load in flight for `tenant`, or load it.
    async fn load(&self, tenant: TenantRef) -> Result<CacheEntry, TenantError> {
        let shared = &*self.shared;
        let failures = shared.failures.load(Ordering::SeqCst);
        let now = now();
        let found = shared
            .cache
            .entry_async(&tenant, |_, entry| {
                if entry.fresh(now) {
                    EntryAction::Retain(entry.tenant.clone())
                } else {
                    EntryAction::ReplaceWithGuard
                }
            })
            .await;
        let guard = match found {
            EntryResult::Retained(entry) => return Ok(entry),
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
            // Neither comes out of `entry_async` with this callback; load uncoalesced.
            EntryResult::Removed(..) | EntryResult::Timeout => None,
        };
        if shared.failures.load(Ordering::SeqCst) != failures {
            // The load this miss waited for failed: share that failure rather than queueing
            // another store call behind it.
            return Err(TenantError::storage(
                format!("loading tenant {tenant}"),
                ConcurrentLoadFailed,
            ));
        }
        self.fetch(tenant, guard).await
    }

    /// Reads the store and caches the answer unless an invalidation landed meanwhile.
    async fn fetch(
        &self,
        tenant: TenantRef,
        guard: Option<Guard<'_>>,
    ) -> Result<CacheEntry, TenantError> {
        let shared = &*self.shared;
        let generation = shared.generation.load(Ordering::SeqCst);
        let found = match shared.store.find(&tenant).await {
            Ok(found) => found.map(Arc::new),
            Err(err) => {
                // Before the guard drops, so that the misses it wakes see it.
                shared.failures.fetch_add(1, Ordering::SeqCst);
                return Err(TenantError::storage(
                    format!("loading tenant {tenant}"),
                    err,
                ));
            }
        };
        if shared.generation.load(Ordering::SeqCst) != generation {
            return Ok(found);
        }
        let ttl = if found.is_some() {
            shared.ttl
        } else {
            shared.negative_ttl
        };
        let entry = Entry {
            tenant: found.clone(),
            expires: now() + ttl,
        };
        let other = found.as_ref().map(|info| match tenant {
            TenantRef::Id(_) => TenantRef::Slug(info.slug),
            TenantRef::Slug(_) => TenantRef::Id(info.id),
        });
        if let Some(other) = other {
            shared.cache.insert(other, entry.clone());
        }
        match guard {
            // `Err`: an invalidation removed the placeholder; the check below covers it.
            Some(guard) => drop(guard.insert(entry)),
            None => shared.cache.insert(tenant, entry),
        }
        // An invalidation that bumped the generation before its removals cannot have missed
        // these entries unless it bumped after the first check: drop them then.
        if shared.generation.load(Ordering::SeqCst) != generation {
            shared.cache.remove(&tenant);
            if let Some(other) = other {
                shared.cache.remove(&other);
            }
        }
        Ok(found)
    }

    /// How many entries the cache holds, expired ones not yet read or evicted included.
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        u64::try_from(self.shared.cache.len()).unwrap_or(u64::MAX)
    }

    /// The most entries the cache holds.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Runs pending cache maintenance now. The cache evicts on insert and expires entries when
    /// they are read, so nothing is ever pending and this returns at once; kept so that callers
    /// written for a cache with deferred maintenance keep working.
    pub async fn run_pending_tasks(&self) {}

    /// Called first by every invalidation: loads in flight will not cache what they read.
    fn begin_invalidation(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
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
        self.begin_invalidation();
        let cache = &self.shared.cache;
        match cache.remove(&TenantRef::Id(tenant)) {
            Some((
                _,
                Entry {
                    tenant: Some(info), ..
                },
            )) => {
                cache.remove(&TenantRef::Slug(info.slug));
            }
            // "No such id": a slug load since would have replaced it, so no slug entry holds it.
            Some((_, Entry { tenant: None, .. })) => {}
            // The id entry is gone (evicted): find slug entries by value.
            None => {
                cache.retain(|_, entry| entry.tenant.as_ref().is_none_or(|info| info.id != tenant));
            }
        }
    }

    async fn invalidate_slug(&self, slug: &Slug) {
        self.begin_invalidation();
        self.shared.cache.remove(&TenantRef::Slug(*slug));
    }

    async fn invalidate_all(&self) {
        self.begin_invalidation();
        self.shared.cache.clear();
    }
}
