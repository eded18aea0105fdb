//! [`TenantLimits`]: every tenant's effective limits and limiter state, bounded and cached.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tenancy_core::{
    CacheInvalidation, Generation, JsonObject, Stamp, TenantError, TenantId, TenantLabels,
    TenantRef,
};
use tenancy_overrides::ConfigService;
use tenancy_resolution::TenantValidator;
use tokio::sync::Semaphore;

use crate::config::LimitsConfig;
use crate::limits::Limits;
use crate::rejection::LimitRejection;
use crate::table::Table;

/// Every tenant's effective limits, with the state that enforces them: a token bucket
/// (governor's GCRA) for the request rate, a counter of requests in flight, and a semaphore of
/// transaction slots.
///
/// - **Cached**: a tenant's entry is built once from the `limits` section, its own plan and its
///   configuration overrides (`limits.*` keys through the [`ConfigService`]), and then read on
///   every request from a lock-free map (`papaya`): a cached tenant's request touches no lock
///   and no memory another tenant's requests write; the limiting itself is per-tenant atomics.
/// - **Bounded**: at most about `max_tenants` entries; past that, tenants idle since the last
///   sweep are forgotten (CLOCK), and a tenant that comes back starts with a full bucket.
/// - **Invalidated**: as a [`CacheInvalidation`], registered with the stack's `Invalidators`
///   (lifecycle changes, the change feed) and called on `limits.*` config changes. An
///   invalidation marks the tenant's entry stale (a [`Generation`] stamp); the next request
///   rebuilds it, keeping the counters and the bucket when the values they enforce did not change.
///
/// It is cheap to clone (an `Arc`).
///
/// ```
/// use tenancy_limits::{LimitsConfig, TenantLimits};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let config: LimitsConfig = serde_json::from_value(serde_json::json!({
///     "default_plan": "free",
///     "plans": {"free": {"requests_per_second": 1, "burst": 2}},
/// }))?;
/// let limits = TenantLimits::new(&config)?;
/// let tenant = tenancy_core::TenantId::new();
/// let entry = limits.load(tenant, None).await;
/// assert_eq!(entry.limits().plan.as_deref(), Some("free"));
/// assert!(limits.check(tenant, None).await.is_ok());
/// assert!(limits.check(tenant, None).await.is_ok());
/// assert!(limits.check(tenant, None).await.is_err(), "a burst of 2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TenantLimits {
    inner: Arc<Inner>,
}

struct Inner {
    config: LimitsConfig,
    entries: Table<TenantEntry>,
    generation: Generation,
    overrides: Option<Arc<ConfigService>>,
    tenants: Option<TenantValidator>,
}

/// One tenant's effective limits and the state that enforces them.
pub struct TenantEntry {
    tenant: TenantId,
    limits: Limits,
    rate: Option<Arc<DefaultDirectRateLimiter>>,
    in_flight: Arc<AtomicU32>,
    transactions: Option<Arc<Semaphore>>,
    label: Arc<str>,
    loaded: Stamp,
}

impl fmt::Debug for TenantEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantEntry")
            .field("tenant", &self.tenant)
            .field("limits", &self.limits)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl TenantEntry {
    fn new(tenant: TenantId, limits: Limits, loaded: Stamp, previous: Option<&Self>) -> Self {
        let values = &limits.values;
        let same = |f: fn(&Limits) -> (Option<NonZeroU32>, Option<NonZeroU32>)| {
            previous.filter(|p| f(&p.limits) == f(&limits))
        };
        let rate = match same(|l| (l.values.requests_per_second, l.values.burst)) {
            Some(previous) => previous.rate.clone(),
            None => values.requests_per_second.map(|rate| {
                let quota = Quota::per_second(rate).allow_burst(values.burst.unwrap_or(rate));
                Arc::new(RateLimiter::direct(quota))
            }),
        };
        let transactions = match same(|l| (l.values.max_transactions, None)) {
            Some(previous) => previous.transactions.clone(),
            None => values
                .max_transactions
                .map(|max| Arc::new(Semaphore::new(max.get() as usize))),
        };
        Self {
            tenant,
            rate,
            in_flight: previous.map_or_else(Default::default, |p| Arc::clone(&p.in_flight)),
            transactions,
            label: TenantLabels::global().label(tenant),
            limits,
            loaded,
        }
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The tenant's effective limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many of the tenant's requests are in flight (counted only when `max_in_flight` is
    /// set).
    #[must_use]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The tenant's transaction slots (`max_transactions` permits), when it has a cap.
    #[must_use]
    pub fn transaction_slots(&self) -> Option<&Arc<Semaphore>> {
        self.transactions.as_ref()
    }

    /// The tenant's metric label ([`TenantLabels::global`]).
    #[must_use]
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// Admits one request: a slot in flight, then a token of the bucket; or the reason not.
    pub(crate) fn admit(&self) -> Result<Option<InFlight>, LimitRejection> {
        let slot = match self.limits.values.max_in_flight {
            None => None,
            Some(max) => {
                if self.in_flight.fetch_add(1, Ordering::AcqRel) >= max.get() {
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    self.refused("in_flight");
                    return Err(LimitRejection::TooManyInFlight);
                }
                Some(InFlight(Arc::clone(&self.in_flight)))
            }
        };
        if let Some(rate) = &self.rate
            && let Err(not_until) = rate.check()
        {
            // `slot`, dropped here, gives its place back.
            let wait = not_until.wait_time_from(rate.clock().now());
            self.refused("rate");
            return Err(LimitRejection::RateLimited {
                retry_after: retry_after_secs(wait),
            });
        }
        Ok(slot)
    }

    fn refused(&self, reason: &'static str) {
        metrics::counter!(
            "tenancy_requests_limited_total",
            "tenant" => Arc::clone(&self.label),
            "reason" => reason,
        )
        .increment(1);
        tracing::debug!(tenant_id = %self.tenant, reason, "request refused by the tenant's limits");
    }
}

/// Whole seconds, rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// A request's place among its tenant's requests in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for TenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLimits")
            .field("plans", &self.inner.config.plans.keys().collect::<Vec<_>>())
            .field("default_plan", &self.inner.config.default_plan)
            .field("entries", &self.entry_count())
            .field("overrides", &self.inner.overrides.is_some())
            .finish_non_exhaustive()
    }
}

impl TenantLimits {
    /// The limits `config` names, without per-tenant overrides (add them with
    /// [`with_overrides`](Self::with_overrides)).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `config` is invalid ([`LimitsConfig::validate`]).
    pub fn new(config: &LimitsConfig) -> Result<Self, TenantError> {
        config.validate()?;
        let capacity = usize::try_from(config.max_tenants).unwrap_or(usize::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                entries: Table::new(capacity),
                generation: Generation::new(),
                overrides: None,
                tenants: None,
            }),
        })
    }

    /// Reads each tenant's `limits.*` configuration keys (overrides over application defaults)
    /// through `service`. Call before cloning.
    #[must_use]
    pub fn with_overrides(mut self, service: Arc<ConfigService>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.overrides = Some(service);
        }
        self
    }

    /// Looks up a tenant's own `plan` through `validator` when the limits are asked for by id
    /// alone ([`entry`](Self::entry), the transaction budgets). Call before cloning.
    #[must_use]
    pub fn with_validator(mut self, validator: TenantValidator) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tenants = Some(validator);
        }
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &LimitsConfig {
        &self.inner.config
    }

    /// How many tenants have an entry (about `max_tenants` at most: inserts that race a sweep
    /// can pass it briefly).
    #[must_use]
    pub fn entry_count(&self) -> usize {
        self.inner.entries.len()
    }

    /// The tenant's entry when it is cached and current: no I/O, no allocation.
    #[must_use]
    pub fn cached(&self, tenant: TenantId) -> Option<Arc<TenantEntry>> {
        let caller = self.inner.generation.stamp(&tenant);
        self.inner
            .entries
            .get(&tenant)
            .filter(|entry| Generation::serves(entry.loaded, caller))
    }

    /// The tenant's entry: cached, or built from the configuration and its overrides.
    /// `tenant_plan` is the tenant's own `plan` field.
    ///
    /// When the overrides cannot be read (the store is down), the entry is built from the plans
    /// alone, logged, and not cached: the next request tries again.
    pub async fn load(&self, tenant: TenantId, tenant_plan: Option<&str>) -> Arc<TenantEntry> {
        if let Some(entry) = self.cached(tenant) {
            return entry;
        }
        let entries = &self.inner.entries;
        let previous = entries.peek(&tenant);
        let (entry, cacheable) = self.build(tenant, tenant_plan, previous.as_deref()).await;
        if !cacheable {
            return entry;
        }
        if previous.is_some() {
            entries.insert(tenant, Arc::clone(&entry));
            return entry;
        }
        // Concurrent first requests of a tenant build side by side (the overrides cache
        // coalesces their store read into one) and share the first entry stored: one bucket.
        let loaded = entry.loaded;
        entries.insert_first(tenant, entry, |stored| {
            Generation::serves(stored.loaded, loaded)
        })
    }

    /// The tenant's entry, by id alone: its own plan comes from the validator when one is set
    /// ([`with_validator`](Self::with_validator)).
    pub async fn entry(&self, tenant: TenantId) -> Arc<TenantEntry> {
        if let Some(entry) = self.cached(tenant) {
            return entry;
        }
        let info = match &self.inner.tenants {
            Some(validator) => match validator.lookup(TenantRef::Id(tenant)).await {
                Ok(info) => info,
                Err(error) => {
                    tracing::warn!(tenant_id = %tenant, %error, "the tenant's plan could not be read; its limits use the default plan");
                    None
                }
            },
            None => None,
        };
        self.load(tenant, info.as_ref().and_then(|t| t.plan.as_deref()))
            .await
    }

    /// Admits one request of the tenant (for callers outside the layer: a job queue, a gRPC
    /// stream): `Ok` holds the request's place in flight until it is dropped.
    ///
    /// # Errors
    /// The [`LimitRejection`] when the tenant is over its rate or its requests in flight.
    pub async fn check(
        &self,
        tenant: TenantId,
        tenant_plan: Option<&str>,
    ) -> Result<Permit, LimitRejection> {
        let entry = self.load(tenant, tenant_plan).await;
        entry.admit().map(|slot| Permit { _slot: slot })
    }

    async fn build(
        &self,
        tenant: TenantId,
        tenant_plan: Option<&str>,
        previous: Option<&TenantEntry>,
    ) -> (Arc<TenantEntry>, bool) {
        let loaded = self.inner.generation.stamp(&tenant);
        let (config, cacheable) = match &self.inner.overrides {
            None => (JsonObject::new(), true),
            Some(service) => match service.effective(tenant).await {
                Ok(config) => (config, true),
                Err(error) => {
                    tracing::error!(tenant_id = %tenant, %error, "the tenant's limit overrides could not be read; its plan's limits apply to this request");
                    (JsonObject::new(), false)
                }
            },
        };
        let limits = Limits::resolve(&self.inner.config, tenant, tenant_plan, &config);
        tracing::debug!(tenant_id = %tenant, plan = limits.plan.as_deref(), "tenant limits loaded");
        (
            Arc::new(TenantEntry::new(tenant, limits, loaded, previous)),
            cacheable,
        )
    }
}

/// A request admitted by [`TenantLimits::check`]: holds its place in flight until dropped.
#[derive(Debug)]
#[must_use = "the request's place in flight is given back when the permit is dropped"]
pub struct Permit {
    _slot: Option<InFlight>,
}

#[async_trait]
impl CacheInvalidation for TenantLimits {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        // The entry stays until the next request rebuilds it (keeping its counters).
        self.inner.generation.advance(&tenant);
    }

    async fn invalidate_all(&self) {
        self.inner.generation.advance_all();
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after_secs;
    use std::time::Duration;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
