//! Tenant-prefixed cache keys: a small cache trait, an in-memory cache, and the prefixing decorator.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tenancy_core::{TenantError, TenantId, context};

use super::IntegrationConfig;

/// A key-value cache of bytes, the shape of an application cache (in memory, Redis, ...).
#[async_trait]
pub trait KeyValueCache: Send + Sync + fmt::Debug {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TenantError>;

    /// Stores `value` under `key`, expiring after `ttl` when given.
    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), TenantError>;

    /// Removes `key`; whether it was present.
    async fn delete(&self, key: &str) -> Result<bool, TenantError>;
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A [`KeyValueCache`] in process memory, for tests and single-process applications. Expired
/// entries are dropped when read or overwritten.
#[derive(Debug, Default)]
pub struct InMemoryCache {
    entries: RwLock<HashMap<String, Entry>>,
}

impl InMemoryCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every live key, sorted (for inspection and tests).
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        let now = Instant::now();
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut keys: Vec<String> = entries
            .iter()
            .filter(|(_, e)| e.is_live(now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[async_trait]
impl KeyValueCache for InMemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TenantError> {
        let now = Instant::now();
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            match entries.get(key) {
                None => return Ok(None),
                Some(entry) if entry.is_live(now) => return Ok(Some(entry.value.clone())),
                Some(_) => {}
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.get(key).is_some_and(|e| !e.is_live(now)) {
            entries.remove(key);
        }
        Ok(None)
    }

    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), TenantError> {
        // A ttl too long to represent as an instant never expires (`+` would panic).
        let expires_at = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), Entry { value, expires_at });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, TenantError> {
        let now = Instant::now();
        Ok(self
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
            .is_some_and(|e| e.is_live(now)))
    }
}

/// A [`KeyValueCache`] decorator that keeps tenants' entries apart: while a tenant is in scope
/// (see [`tenancy_core::context`]) every key becomes `t:{tenant id}:{key}`; outside a tenant scope,
/// or when disabled, keys pass unchanged.
///
/// ```
/// use std::sync::Arc;
/// use tenancy::integration::{InMemoryCache, KeyValueCache, TenantPrefixedCache};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = TenantPrefixedCache::new(InMemoryCache::new(), true);
/// cache.set("greeting", b"hello".to_vec(), None).await?;
/// // No tenant in scope: the key is unchanged.
/// assert_eq!(cache.inner().keys(), ["greeting"]);
/// # Ok::<(), tenancy::core::TenantError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct TenantPrefixedCache<C> {
    inner: C,
    enabled: bool,
}

impl<C: KeyValueCache> TenantPrefixedCache<C> {
    /// Wraps `inner`; `enabled = false` passes keys through unchanged.
    pub fn new(inner: C, enabled: bool) -> Self {
        Self { inner, enabled }
    }

    /// Wraps `inner`, prefixing when [`IntegrationConfig::cache_key_prefix`] is on.
    pub fn from_config(inner: C, config: &IntegrationConfig) -> Self {
        Self::new(inner, config.cache_key_prefix)
    }

    /// The wrapped cache.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Whether keys are prefixed.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The key `key` is stored under in the current context (allocates only when it prefixes).
    pub fn scoped_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if !self.enabled {
            return Cow::Borrowed(key);
        }
        match context::current_id() {
            Some(tenant) => Cow::Owned(prefixed(tenant, key)),
            None => Cow::Borrowed(key),
        }
    }
}

/// The length of a hyphenated UUID.
const UUID_LEN: usize = 36;

/// `t:{tenant}:{key}` in one exactly-sized allocation (no formatting machinery).
fn prefixed(tenant: TenantId, key: &str) -> String {
    let mut buffer = [0_u8; UUID_LEN];
    let id = tenant.as_uuid().hyphenated().encode_lower(&mut buffer);
    let mut out = String::with_capacity(2 + UUID_LEN + 1 + key.len());
    out.push_str("t:");
    out.push_str(id);
    out.push(':');
    out.push_str(key);
    out
}

#[async_trait]
impl<C: KeyValueCache> KeyValueCache for TenantPrefixedCache<C> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TenantError> {
        self.inner.get(&self.scoped_key(key)).await
    }

    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), TenantError> {
        self.inner.set(&self.scoped_key(key), value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool, TenantError> {
        self.inner.delete(&self.scoped_key(key)).await
    }
}

#[async_trait]
impl<C: KeyValueCache + ?Sized> KeyValueCache for std::sync::Arc<C> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TenantError> {
        (**self).get(key).await
    }

    async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), TenantError> {
        (**self).set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool, TenantError> {
        (**self).delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_the_hyphenated_id() {
        let tenant = TenantId::new();
        assert_eq!(prefixed(tenant, "k:1"), format!("t:{tenant}:k:1"));
        assert_eq!(prefixed(tenant, "").len(), 2 + UUID_LEN + 1);
    }
}
