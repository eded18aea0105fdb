//! Cache invalidation: the trait that lets lifecycle changes and the change feed drop stale entries
//! from caches they do not know by name.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::id::{Slug, TenantId};

/// A cache holding tenant data that must forget a tenant when it changes.
#[async_trait]
pub trait CacheInvalidation: Send + Sync + fmt::Debug {
    /// Drops everything cached for this tenant (by id, and by the slug it is cached under).
    async fn invalidate_tenant(&self, tenant: TenantId);

    /// Drops whatever is cached under this slug (a negative entry for a slug just taken, or the slug
    /// a tenant was renamed from). Caches that are not keyed by slug ignore it.
    async fn invalidate_slug(&self, _slug: &Slug) {}

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

    async fn invalidate_all(&self) {
        for cache in self.snapshot() {
            cache.invalidate_all().await;
        }
    }
}
