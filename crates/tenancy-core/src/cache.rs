//! Cache invalidation: the trait that lets lifecycle changes and the change feed drop stale entries
//! from caches they do not know by name, and [`Generation`], the one guard every tenant cache of
//! the workspace uses against a load that races an invalidation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::domain::DomainName;
use crate::id::{Slug, TenantId};

/// A cache holding tenant data that must forget a tenant when it changes.
#[async_trait]
pub trait CacheInvalidation: Send + Sync + fmt::Debug {
    /// Drops everything cached for this tenant (by id, and by the slug it is cached under).
    async fn invalidate_tenant(&self, tenant: TenantId);

    /// Drops whatever is cached under this slug (a negative entry for a slug just taken, or the slug
    /// a tenant was renamed from). Caches that are not keyed by slug ignore it.
    async fn invalidate_slug(&self, _slug: &Slug) {}

    /// Drops whatever is cached under this domain (a negative entry for a domain just added, or
    /// the owner of a domain just removed). Caches that are not keyed by domain ignore it.
    async fn invalidate_domain(&self, _domain: &DomainName) {}

    /// Drops everything.
    async fn invalidate_all(&self);
}

/// A set of caches invalidated together; itself a [`CacheInvalidation`].
///
/// Lifecycle services and change feeds hold one `Invalidators` and every cache registers with it.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::{CacheInvalidation, Invalidators, TenantId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let invalidators = Invalidators::new();
/// // invalidators.register(Arc::new(my_validator));
/// invalidators.invalidate_tenant(TenantId::new()).await;
/// assert!(invalidators.is_empty());
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct Invalidators {
    caches: Arc<RwLock<Vec<Arc<dyn CacheInvalidation>>>>,
}

impl Invalidators {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cache; clones of this set see it too.
    pub fn register(&self, cache: Arc<dyn CacheInvalidation>) {
        self.caches
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cache);
    }

    /// How many caches are registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.caches
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no cache is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Vec<Arc<dyn CacheInvalidation>> {
        self.caches
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl CacheInvalidation for Invalidators {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        for cache in self.snapshot() {
            cache.invalidate_tenant(tenant).await;
        }
    }

    async fn invalidate_slug(&self, slug: &Slug) {
        for cache in self.snapshot() {
            cache.invalidate_slug(slug).await;
        }
    }

    async fn invalidate_domain(&self, domain: &DomainName) {
        for cache in self.snapshot() {
            cache.invalidate_domain(domain).await;
        }
    }

    async fn invalidate_all(&self) {
        for cache in self.snapshot() {
            cache.invalidate_all().await;
        }
    }
}

/// A key a [`Generation`] counts invalidations for: its bits spread keys over the counters.
pub trait StampKey {
    /// Bits of the key whose low ones pick the counter (equal keys, equal bits).
    fn stamp_key(&self) -> u64;
}

impl StampKey for TenantId {
    /// The low half of the UUID: random bits in generated (v7 and v4) ids.
    fn stamp_key(&self) -> u64 {
        self.as_uuid().as_u64_pair().1
    }
}

impl StampKey for str {
    /// FNV-1a of the bytes.
    fn stamp_key(&self) -> u64 {
        self.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

impl StampKey for Slug {
    /// FNV-1a of the slug's bytes.
    fn stamp_key(&self) -> u64 {
        self.as_str().stamp_key()
    }
}

impl StampKey for DomainName {
    /// FNV-1a of the domain's bytes: the same as its `&str`, so either may name it.
    fn stamp_key(&self) -> u64 {
        self.as_str().stamp_key()
    }
}

/// How many counters a [`Generation`] spreads its keys over.
const STRIPES: usize = 64;

/// The moment a caller or a load began, as a [`Generation`] counted it for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(u64);

/// Invalidation counters that decide whether a cached value may serve a caller.
///
/// A cache keeps, with every value, the [`Stamp`] its key had when the *load* of that value began;
/// a caller takes the key's stamp when *it* begins. A value serves the caller only when its stamp
/// is at least the caller's: no invalidation of that key landed between the start of the load and
/// the start of the caller. This one rule gives:
/// - read-your-writes: a caller that starts after an acknowledged change (which invalidates the
///   key before it returns) never accepts a value whose load began before the change, also when it
///   joins a load already in flight;
/// - no stale entry after a race: a load that overlapped an invalidation leaves a value that no
///   later caller accepts (the next one loads again).
///
/// Keys are spread over 64 counters, so an invalidation of one tenant makes a concurrent load of
/// another tenant reload only when they share a counter; [`advance_all`](Self::advance_all)
/// advances every counter.
///
/// ```
/// use tenancy_core::{Generation, TenantId};
///
/// let generation = Generation::new();
/// let acme = TenantId::new();
/// let loaded = generation.stamp(&acme); // a load of acme begins
/// generation.advance(&acme);            // acme changes and is invalidated
/// let caller = generation.stamp(&acme); // a caller begins after the change
/// assert!(!Generation::serves(loaded, caller), "the value predates the change");
/// assert!(Generation::serves(generation.stamp(&acme), caller));
/// ```
pub struct Generation {
    stripes: [AtomicU64; STRIPES],
    /// Advanced by every invalidation, before its key's counter.
    epoch: AtomicU64,
}

/// The count of every invalidation of a [`Generation`] at one moment (see
/// [`Generation::stamp_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

impl Generation {
    /// Counters at zero.
    #[must_use]
    pub fn new() -> Self {
        Self {
            stripes: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: AtomicU64::new(0),
        }
    }

    fn stripe(&self, key: &(impl StampKey + ?Sized)) -> &AtomicU64 {
        // `STRIPES` is a power of two: the low bits pick the counter.
        &self.stripes[(key.stamp_key() as usize) & (STRIPES - 1)]
    }

    /// The stamp of `key` now. Take it when a load or a caller begins.
    #[must_use]
    pub fn stamp(&self, key: &(impl StampKey + ?Sized)) -> Stamp {
        Stamp(self.stripe(key).load(Ordering::SeqCst))
    }

    /// Marks `key` changed. Call it *before* removing the key's entries, so that a load running
    /// meanwhile cannot store a value a later caller accepts.
    pub fn advance(&self, key: &(impl StampKey + ?Sized)) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }

    /// Marks every key changed.
    pub fn advance_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for stripe in &self.stripes {
            stripe.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The count of every invalidation now: take it when a load begins whose keys are known only
    /// once it ends (a tenant looked up by slug is cached by id too).
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::SeqCst))
    }

    /// The stamp `key` had at `began`, when no invalidation of any key has landed since; `None`
    /// otherwise (the loaded value must then not be cached under `key`).
    #[must_use]
    pub fn stamp_since(&self, key: &(impl StampKey + ?Sized), began: Epoch) -> Option<Stamp> {
        let stamp = self.stamp(key);
        // `advance` counts the epoch before the key: a stamp that includes an invalidation after
        // `began` comes with an epoch that shows it.
        (self.epoch() == began).then_some(stamp)
    }

    /// Whether a value loaded at `loaded` may serve a caller that began at `caller`.
    #[must_use]
    pub fn serves(loaded: Stamp, caller: Stamp) -> bool {
        loaded >= caller
    }

    /// Whether a value loaded at `loaded` for `key` is still current (serves a caller beginning
    /// now).
    #[must_use]
    pub fn is_current(&self, key: &(impl StampKey + ?Sized), loaded: Stamp) -> bool {
        Self::serves(loaded, self.stamp(key))
    }
}

impl Default for Generation {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self
            .stripes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add);
        f.debug_struct("Generation")
            .field("invalidations", &total)
            .finish()
    }
}
