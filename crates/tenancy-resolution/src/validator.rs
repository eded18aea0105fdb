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
    CacheInvalidation, DomainName, Generation, Slug, Stamp, TenantError, TenantId, TenantInfo,
    TenantRef, TenantStore,
};

use crate::config::ValidatorConfig;
use crate::telemetry::LookupCounters;

/// What a lookup found: the tenant, or `None` for "no such tenant" (a negative entry).
pub(crate) type CacheEntry = Option<Arc<TenantInfo>>;

/// A tenant by id: what the store answered, until when it is served, and the id's stamp when its
/// load began.
#[derive(Clone)]
struct IdEntry {
    tenant: CacheEntry,
    expires: Instant,
    loaded: Stamp,
}

/// A slug: the id of the tenant holding it (`None`: no tenant holds it), until when, and the
/// slug's stamp when its load began. The tenant itself is read from the id cache.
#[derive(Clone, Copy)]
struct SlugEntry {
    id: Option<TenantId>,
    expires: Instant,
    loaded: Stamp,
}

/// A domain: the id of the tenant owning it (`None`: no tenant does), until when, and the
/// domain's stamp when its load began. The tenant itself is read from the id cache.
#[derive(Clone, Copy)]
struct DomainEntry {
    id: Option<TenantId>,
    expires: Instant,
    loaded: Stamp,
}

type Guard<'a, K, V> = PlaceholderGuard<
    'a,
    K,
    V,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    quick_cache::sync::DefaultLifecycle<K, V>,
>;

/// The failure a request gets when the load it waited for failed.
#[derive(Debug, thiserror::Error)]
#[error("a concurrent load of the same tenant failed")]
struct ConcurrentLoadFailed;

struct Shared {
    /// One entry per tenant (or unknown id): the capacity counts tenants.
    ids: Cache<TenantId, IdEntry>,
    /// Slugs to ids, as many as tenants.
    slugs: Cache<Slug, SlugEntry>,
    /// Domains (normalised hosts) to ids, as many as tenants.
    domains: Cache<DomainName, DomainEntry>,
    store: Arc<dyn TenantStore>,
    capacity: u64,
    ttl: coarsetime::Duration,
    negative_ttl: coarsetime::Duration,
    /// Advanced before every invalidation: an entry serves only callers that began after its
    /// load did, unless an invalidation of its key came between.
    generation: Generation,
    /// Bumped on every failed load: a miss that waited through one shares its failure.
    failures: AtomicU64,
    /// `tenancy_validator_lookups_total` (feature `metrics`).
    lookups: LookupCounters,
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

/// How many entries a cache sized for `capacity` keys holds at most, with `shards` shards.
///
/// Keys hash unevenly over shards, and quick_cache bounds each shard alone: a shard given exactly
/// `capacity / shards` overflows as soon as more keys than the average hash to it, and then
/// evicts keys the cache as a whole has room for (a cyclic pass over as many tenants as the
/// capacity then missed a third of its lookups). Each shard gets room for its share plus four
/// standard deviations of the binomial spread, so `capacity` keys fit whatever their hashes: about
/// 4% more entries at 100,000, 11% at 10,000.
fn max_entries(capacity: u64, shards: u64) -> u64 {
    let share = capacity.div_ceil(shards);
    if shards == 1 {
        return share;
    }
    // 4 sigma of Binomial(capacity, 1/shards), at most `share`: sqrt(share) is within 1 of it.
    let slack = 4 * (share.isqrt() + 1);
    (share + slack.min(share)) * shards
}

/// A cache that holds `capacity` keys without evicting any (and at most [`max_entries`]).
/// Shards hold at least 32 entries each.
fn bounded_cache<K, V>(capacity: u64) -> Result<Cache<K, V>, TenantError>
where
    K: Eq + std::hash::Hash,
    V: Clone,
{
    let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
    let mut shards = u64::try_from((parallelism * 4).next_power_of_two()).unwrap_or(1);
    while shards > 1 && capacity / shards < 32 {
        shards /= 2;
    }
    let options = OptionsBuilder::new()
        .shards(usize::try_from(shards).unwrap_or(1))
        // Only a sizing hint (tables grow past it); bounded so a huge capacity allocates nothing up front.
        .estimated_items_capacity(usize::try_from(capacity.min(65_536)).unwrap_or(65_536))
        .weight_capacity(max_entries(capacity, shards))
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
/// - Tenants are cached by id, one entry per tenant, so `cache_capacity` counts tenants; a second
///   cache of as many entries maps slugs to ids, and a third domains to ids (for the `domain`
///   resolver). A tenant loaded by any is reachable by id and slug.
///   Shards are sized with headroom for uneven hashing, so `cache_capacity` tenants fit without
///   eviction; the cache holds at most a few percent more.
/// - Found tenants stay `cache_ttl`, unknown keys `negative_ttl` (an expired entry is a miss); at
///   most `cache_capacity` tenants (S3-FIFO eviction).
/// - Concurrent misses on one key make one store call; store failures are not cached and come back
///   as [`TenantError::Storage`], distinct from [`TenantError::NotFound`]. Misses that waited for
///   a load that failed get a storage error too, without calling the store again (failures are
///   counted per validator, so a miss that starts just as another key's load fails gets one
///   as well: only while the store is failing).
/// - An invalidation that lands while a load is in flight wins: the load's result is returned to
///   its caller, and no caller that begins after the invalidation accepts it
///   ([`Generation`], the guard the config cache uses too).
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
            .field("tenants", &self.entry_count())
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
                ids: bounded_cache(config.cache_capacity)?,
                slugs: bounded_cache(config.cache_capacity)?,
                domains: bounded_cache(config.cache_capacity)?,
                store,
                capacity: config.cache_capacity,
                ttl: coarse(config.cache_ttl),
                negative_ttl: coarse(config.negative_ttl),
                generation: Generation::new(),
                failures: AtomicU64::new(0),
                lookups: LookupCounters::register(),
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
        let entry = self.cached_entry(tenant);
        if entry.is_some() {
            self.shared.lookups.hit();
        }
        entry
    }

    fn cached_entry(&self, tenant: &TenantRef) -> Option<CacheEntry> {
        let now = now();
        match *tenant {
            TenantRef::Id(id) => self.cached_id(id, now),
            TenantRef::Slug(slug) => {
                let shared = &*self.shared;
                let entry = shared.slugs.get(&slug)?;
                if !(now < entry.expires && shared.generation.is_current(&slug, entry.loaded)) {
                    return None;
                }
                match entry.id {
                    None => Some(None),
                    // The id entry decides; one that went away or holds another slug is a miss.
                    Some(id) => self
                        .cached_id(id, now)?
                        .filter(|info| info.slug == slug)
                        .map(Some),
                }
            }
        }
    }

    fn cached_id(&self, id: TenantId, now: Instant) -> Option<CacheEntry> {
        let shared = &*self.shared;
        let entry = shared.ids.get(&id)?;
        (now < entry.expires && shared.generation.is_current(&id, entry.loaded))
            .then_some(entry.tenant)
    }

    /// A miss: join the load in flight for `tenant`, or load it.
    async fn load(&self, tenant: TenantRef) -> Result<CacheEntry, TenantError> {
        let shared = &*self.shared;
        let failures = shared.failures.load(Ordering::SeqCst);
        let now = now();
        match tenant {
            TenantRef::Id(id) => {
                let caller = shared.generation.stamp(&id);
                let found = shared
                    .ids
                    .entry_async(&id, |_, entry| {
                        if now < entry.expires && Generation::serves(entry.loaded, caller) {
                            EntryAction::Retain(entry.tenant.clone())
                        } else {
                            EntryAction::ReplaceWithGuard
                        }
                    })
                    .await;
                let guard = match found {
                    EntryResult::Retained(entry) => {
                        shared.lookups.coalesced();
                        return Ok(entry);
                    }
                    EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
                    // Neither comes out of `entry_async` with this callback; load uncoalesced.
                    EntryResult::Removed(..) | EntryResult::Timeout => None,
                };
                shared_failure(shared, failures, &tenant)
                    .inspect_err(|_| shared.lookups.coalesced())?;
                self.fetch(tenant, guard.map(Placeholder::Id)).await
            }
            TenantRef::Slug(slug) => {
                let caller = shared.generation.stamp(&slug);
                let found = shared
                    .slugs
                    .entry_async(&slug, |_, entry| {
                        if now < entry.expires && Generation::serves(entry.loaded, caller) {
                            EntryAction::Retain(entry.id)
                        } else {
                            EntryAction::ReplaceWithGuard
                        }
                    })
                    .await;
                let guard = match found {
                    EntryResult::Retained(None) => {
                        shared.lookups.coalesced();
                        return Ok(None);
                    }
                    EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
                    // Mapped to an id whose entry is gone: load by slug, uncoalesced.
                    EntryResult::Retained(Some(_))
                    | EntryResult::Removed(..)
                    | EntryResult::Timeout => None,
                };
                shared_failure(shared, failures, &tenant)
                    .inspect_err(|_| shared.lookups.coalesced())?;
                self.fetch(tenant, guard.map(Placeholder::Slug)).await
            }
        }
    }

    /// Reads the store and caches the answer under its id and its slug, each stamped with its
    /// key's stamp when the load began.
    async fn fetch(
        &self,
        tenant: TenantRef,
        placeholder: Option<Placeholder<'_>>,
    ) -> Result<CacheEntry, TenantError> {
        let shared = &*self.shared;
        shared.lookups.miss();
        let generation = &shared.generation;
        let began = generation.epoch();
        let stamp = match tenant {
            TenantRef::Id(id) => generation.stamp(&id),
            TenantRef::Slug(slug) => generation.stamp(&slug),
        };
        let (found, expires) = self.loaded(
            shared.store.find(&tenant).await,
            &format_args!("tenant {tenant}"),
        )?;
        // The key the load did not name is known only now: cache it only when its stamp then
        // is the one it had when the load began.
        let (id, id_stamp, slug, slug_stamp) = match (tenant, &found) {
            (TenantRef::Id(id), info) => (
                Some(id),
                Some(stamp),
                info.as_ref().map(|info| info.slug),
                info.as_ref()
                    .and_then(|info| generation.stamp_since(&info.slug, began)),
            ),
            (TenantRef::Slug(slug), info) => (
                info.as_ref().map(|info| info.id),
                info.as_ref()
                    .and_then(|info| generation.stamp_since(&info.id, began)),
                Some(slug),
                Some(stamp),
            ),
        };
        let id_entry = id.zip(id_stamp).map(|(id, loaded)| {
            (
                id,
                IdEntry {
                    tenant: found.clone(),
                    expires,
                    loaded,
                },
            )
        });
        let slug_entry = slug.zip(slug_stamp).map(|(slug, loaded)| {
            (
                slug,
                SlugEntry {
                    id: found.as_ref().map(|info| info.id),
                    expires,
                    loaded,
                },
            )
        });
        match placeholder {
            // `Err` from `insert`: an invalidation removed the placeholder; the stamp covers it.
            Some(Placeholder::Id(guard)) => {
                if let Some((_, entry)) = id_entry {
                    let _ = guard.insert(entry);
                }
                if let Some((slug, entry)) = slug_entry {
                    shared.slugs.insert(slug, entry);
                }
            }
            Some(Placeholder::Slug(guard)) => {
                if let Some((_, entry)) = slug_entry {
                    let _ = guard.insert(entry);
                }
                if let Some((id, entry)) = id_entry {
                    shared.ids.insert(id, entry);
                }
            }
            None => {
                if let Some((id, entry)) = id_entry {
                    shared.ids.insert(id, entry);
                }
                if let Some((slug, entry)) = slug_entry {
                    shared.slugs.insert(slug, entry);
                }
            }
        }
        Ok(found)
    }

    /// The id of the tenant owning `domain` (a host as [`tenancy_core::normalize_host`] returns it),
    /// from a fresh cache entry only: `Some(Some(id))` on a hit, `Some(None)` for a domain cached
    /// as owned by no tenant, `None` on a miss. Never calls the store and never waits.
    #[must_use]
    pub fn cached_domain(&self, domain: &str) -> Option<Option<TenantId>> {
        let shared = &*self.shared;
        let entry = shared.domains.get(domain)?;
        (now() < entry.expires && shared.generation.is_current(domain, entry.loaded))
            .then_some(entry.id)
    }

    /// The id of the tenant owning `domain`, whatever its status, through the cache: concurrent
    /// misses make one store call, an unowned domain is cached for `negative_ttl`, and the tenant
    /// found is cached by id and slug too.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the store failed (nothing cached).
    pub async fn lookup_domain(
        &self,
        domain: &DomainName,
    ) -> Result<Option<TenantId>, TenantError> {
        if let Some(found) = self.cached_domain(domain.as_str()) {
            return Ok(found);
        }
        let shared = &*self.shared;
        let failures = shared.failures.load(Ordering::SeqCst);
        let caller = shared.generation.stamp(domain);
        let now = now();
        let found = shared
            .domains
            .entry_async(domain, |_, entry| {
                if now < entry.expires && Generation::serves(entry.loaded, caller) {
                    EntryAction::Retain(entry.id)
                } else {
                    EntryAction::ReplaceWithGuard
                }
            })
            .await;
        let guard = match found {
            EntryResult::Retained(id) => return Ok(id),
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
            EntryResult::Removed(..) | EntryResult::Timeout => None,
        };
        shared_failure(shared, failures, &format_args!("of domain {domain}"))?;
        Box::pin(self.fetch_domain(domain, guard)).await
    }

    /// Reads the owner of `domain` from the store and caches it under the domain, and the tenant
    /// under its id and slug (each only if no invalidation of it came since the load began).
    async fn fetch_domain(
        &self,
        domain: &DomainName,
        guard: Option<Guard<'_, DomainName, DomainEntry>>,
    ) -> Result<Option<TenantId>, TenantError> {
        let shared = &*self.shared;
        let generation = &shared.generation;
        let began = generation.epoch();
        let stamp = generation.stamp(domain);
        let (found, expires) = self.loaded(
            shared.store.get_by_domain(domain).await,
            &format_args!("the tenant of domain {domain}"),
        )?;
        let entry = DomainEntry {
            id: found.as_ref().map(|info| info.id),
            expires,
            loaded: stamp,
        };
        match guard {
            Some(guard) => {
                let _ = guard.insert(entry);
            }
            None => shared.domains.insert(domain.clone(), entry),
        }
        if let Some(info) = &found {
            if let Some(loaded) = generation.stamp_since(&info.id, began) {
                let tenant = Some(Arc::clone(info));
                shared.ids.insert(
                    info.id,
                    IdEntry {
                        tenant,
                        expires,
                        loaded,
                    },
                );
            }
            if let Some(loaded) = generation.stamp_since(&info.slug, began) {
                let id = Some(info.id);
                shared.slugs.insert(
                    info.slug,
                    SlugEntry {
                        id,
                        expires,
                        loaded,
                    },
                );
            }
        }
        Ok(entry.id)
    }

    /// What a store load answered, with the instant its entry expires (`cache_ttl` for a tenant,
    /// `negative_ttl` for none); a failure is counted (before the placeholder drops, so that the
    /// misses it wakes see it) and becomes a storage error naming `what`.
    fn loaded(
        &self,
        answer: Result<Option<TenantInfo>, TenantError>,
        what: &dyn fmt::Display,
    ) -> Result<(CacheEntry, Instant), TenantError> {
        let shared = &*self.shared;
        match answer {
            Ok(found) => {
                let ttl = if found.is_some() {
                    shared.ttl
                } else {
                    shared.negative_ttl
                };
                Ok((found.map(Arc::new), now() + ttl))
            }
            Err(err) => {
                shared.failures.fetch_add(1, Ordering::SeqCst);
                Err(TenantError::storage(format!("loading {what}"), err))
            }
        }
    }

    /// How many tenants (and unknown ids) the cache holds, expired ones not yet read or evicted
    /// included.
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        u64::try_from(self.shared.ids.len()).unwrap_or(u64::MAX)
    }

    /// How many tenants the cache holds without evicting any (`cache_capacity`).
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// The most tenants (and unknown ids) the cache ever holds: [`capacity`](Self::capacity) plus
    /// the headroom its shards get for uneven hashing.
    #[must_use]
    pub fn max_entries(&self) -> u64 {
        self.shared.ids.capacity()
    }
}

/// The placeholder a miss holds while it loads, in the cache of the key it was asked for.
enum Placeholder<'a> {
    Id(Guard<'a, TenantId, IdEntry>),
    Slug(Guard<'a, Slug, SlugEntry>),
}

/// A storage error when a load this miss waited for failed: it shares that failure rather than
/// queueing another store call behind it.
fn shared_failure(
    shared: &Shared,
    failures: u64,
    key: &dyn fmt::Display,
) -> Result<(), TenantError> {
    if shared.failures.load(Ordering::SeqCst) == failures {
        Ok(())
    } else {
        Err(TenantError::storage(
            format!("loading tenant {key}"),
            ConcurrentLoadFailed,
        ))
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
        let shared = &*self.shared;
        shared.generation.advance(&tenant);
        if let Some((_, entry)) = shared.ids.remove(&tenant)
            && let Some(info) = entry.tenant
        {
            shared.slugs.remove(&info.slug);
        }
    }

    async fn invalidate_slug(&self, slug: &Slug) {
        self.shared.generation.advance(slug);
        self.shared.slugs.remove(slug);
    }

    async fn invalidate_domain(&self, domain: &DomainName) {
        self.shared.generation.advance(domain);
        self.shared.domains.remove(domain);
    }

    async fn invalidate_all(&self) {
        self.shared.generation.advance_all();
        self.shared.ids.clear();
        self.shared.slugs.clear();
        self.shared.domains.clear();
    }
}
