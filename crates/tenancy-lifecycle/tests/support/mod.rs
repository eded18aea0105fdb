//! Test doubles around real parts: a recording or failing publisher, a controllable isolation
//! strategy, a recording cache, and a moka-backed validator-like cache.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tenancy_core::{
    BoxError, CacheInvalidation, CreateTenant, DomainName, EventPublisher, InMemoryStore,
    IsolationPlan, IsolationStrategy, Slug, StatusChange, TenantError, TenantEvent, TenantId,
    TenantInfo, TenantRef, TenantStatus, TenantStore,
};
use tenancy_lifecycle::{Provisioner, TenantLifecycle};

/// Records every event; fails every publish while `failing` is set.
#[derive(Debug, Default)]
pub struct RecordingPublisher {
    pub events: Mutex<Vec<TenantEvent>>,
    pub failing: AtomicBool,
}

impl RecordingPublisher {
    pub fn taken(&self) -> Vec<TenantEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.name())
            .collect()
    }
}

#[async_trait]
impl EventPublisher for RecordingPublisher {
    async fn publish(&self, event: &TenantEvent) -> Result<(), BoxError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("broker unreachable".into());
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// An isolation strategy that counts calls, can fail, and records the status the tenant has in
/// the store when it is provisioned.
#[derive(Debug, Default)]
pub struct TestStrategy {
    pub fail_provision: AtomicBool,
    pub fail_deprovision: AtomicBool,
    pub provisions: AtomicUsize,
    pub deprovisions: AtomicUsize,
    pub seen: Mutex<Vec<TenantStatus>>,
    pub store: Option<Arc<InMemoryStore>>,
    /// When set, every provision waits here, so concurrent callers are provisioning together.
    pub barrier: Mutex<Option<Arc<tokio::sync::Barrier>>>,
    /// When set (a barrier of two), a provision waits here twice: once to say it has begun, once
    /// for the test to let it finish, so the test can act in between.
    pub pause: Mutex<Option<Arc<tokio::sync::Barrier>>>,
}

impl TestStrategy {
    pub fn observing(store: Arc<InMemoryStore>) -> Self {
        Self {
            store: Some(store),
            ..Self::default()
        }
    }
}

#[async_trait]
impl IsolationStrategy for TestStrategy {
    fn name(&self) -> &str {
        "row_level"
    }

    async fn provision(&self, tenant: TenantId) -> Result<(), TenantError> {
        self.provisions.fetch_add(1, Ordering::SeqCst);
        let barrier = self.barrier.lock().unwrap().clone();
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
        let pause = self.pause.lock().unwrap().clone();
        if let Some(pause) = pause {
            pause.wait().await;
            pause.wait().await;
        }
        if let Some(store) = &self.store
            && let Some(info) = store.get(tenant).await?
        {
            self.seen.lock().unwrap().push(info.status);
        }
        if self.fail_provision.load(Ordering::SeqCst) {
            return Err(TenantError::isolation(
                "creating schema",
                std::io::Error::other("permission denied for database app"),
            ));
        }
        Ok(())
    }

    async fn deprovision(&self, _tenant: TenantId) -> Result<(), TenantError> {
        self.deprovisions.fetch_add(1, Ordering::SeqCst);
        if self.fail_deprovision.load(Ordering::SeqCst) {
            return Err(TenantError::isolation(
                "dropping schema",
                std::io::Error::other("schema is in use"),
            ));
        }
        Ok(())
    }

    async fn plan(&self, _tenant: TenantId) -> Result<IsolationPlan, TenantError> {
        Ok(IsolationPlan::default())
    }
}

/// Records what it was asked to invalidate.
#[derive(Debug, Default)]
pub struct RecordingCache {
    pub tenants: Mutex<Vec<TenantId>>,
    pub slugs: Mutex<Vec<Slug>>,
    pub domains: Mutex<Vec<DomainName>>,
}

impl RecordingCache {
    pub fn tenant_count(&self) -> usize {
        self.tenants.lock().unwrap().len()
    }
}

#[async_trait]
impl CacheInvalidation for RecordingCache {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        self.tenants.lock().unwrap().push(tenant);
    }

    async fn invalidate_slug(&self, slug: &Slug) {
        self.slugs.lock().unwrap().push(*slug);
    }

    async fn invalidate_domain(&self, domain: &DomainName) {
        self.domains.lock().unwrap().push(domain.clone());
    }

    async fn invalidate_all(&self) {}
}

/// A validator-like cache: tenants by id from the store, cached in moka (whatever their status);
/// `validate` lets only active ones through.
#[derive(Debug)]
pub struct ValidatorCache {
    pub store: Arc<InMemoryStore>,
    pub cache: moka::future::Cache<TenantId, TenantInfo>,
}

impl ValidatorCache {
    pub fn new(store: Arc<InMemoryStore>) -> Self {
        Self {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(1000)
                .time_to_live(std::time::Duration::from_secs(300))
                .build(),
        }
    }

    pub async fn validate(&self, id: TenantId) -> Result<TenantInfo, TenantError> {
        let tenant = self
            .cache
            .try_get_with(id, async {
                self.store.get(id).await?.ok_or(TenantError::NotFound {
                    tenant: TenantRef::Id(id),
                })
            })
            .await
            .map_err(|e| TenantError::Resolution(e.to_string()))?;
        match TenantError::for_status(&tenant) {
            None => Ok(tenant),
            Some(refusal) => Err(refusal),
        }
    }
}

#[async_trait]
impl CacheInvalidation for ValidatorCache {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        self.cache.invalidate(&tenant).await;
    }

    async fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

/// A service over a fresh in-memory store with an observing strategy, a recording publisher and a
/// recording cache.
#[derive(Debug)]
pub struct Harness {
    pub store: Arc<InMemoryStore>,
    pub strategy: Arc<TestStrategy>,
    pub publisher: Arc<RecordingPublisher>,
    pub cache: Arc<RecordingCache>,
    pub lifecycle: TenantLifecycle,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(true, false)
    }

    pub fn with(auto_provision: bool, deprovision_on_deactivate: bool) -> Self {
        let store = Arc::new(InMemoryStore::new());
        let strategy = Arc::new(TestStrategy::observing(store.clone()));
        let publisher = Arc::new(RecordingPublisher::default());
        let cache = Arc::new(RecordingCache::default());
        let invalidators = tenancy_core::Invalidators::new();
        invalidators.register(cache.clone());
        let lifecycle = TenantLifecycle::new(
            store.clone(),
            Provisioner::new(strategy.clone(), auto_provision),
        )
        .with_publisher(publisher.clone())
        .with_invalidators(invalidators)
        .with_deprovision_on_deactivate(deprovision_on_deactivate);
        Self {
            store,
            strategy,
            publisher,
            cache,
            lifecycle,
        }
    }

    /// A tenant put in `status` straight through the store (no service, no event).
    pub async fn tenant_in(&self, slug: &str, status: TenantStatus) -> TenantInfo {
        let tenant = TenantInfo::from_command(
            CreateTenant::new(slug.parse().unwrap(), "Tenant"),
            chrono::Utc::now(),
        )
        .unwrap();
        let mut tenant = self.store.create(tenant).await.unwrap();
        let path: &[TenantStatus] = match status {
            TenantStatus::Provisioning => &[],
            TenantStatus::Active => &[TenantStatus::Active],
            TenantStatus::Inactive => &[TenantStatus::Active, TenantStatus::Inactive],
            TenantStatus::Suspended => &[TenantStatus::Active, TenantStatus::Suspended],
        };
        for &to in path {
            let reason = (to == TenantStatus::Suspended).then(|| "old reason".to_owned());
            tenant = self
                .store
                .set_status(
                    tenant.id,
                    StatusChange {
                        from: tenant.status,
                        to,
                        reason,
                    },
                )
                .await
                .unwrap();
        }
        assert_eq!(tenant.status, status);
        tenant
    }

    pub async fn stored(&self, id: TenantId) -> TenantInfo {
        self.store.get(id).await.unwrap().unwrap()
    }
}

/// The tenant of a lifecycle change that must succeed, its events published.
pub async fn done(
    change: impl Future<Output = Result<tenancy_lifecycle::Outcome, TenantError>>,
) -> TenantInfo {
    change.await.unwrap().into_result().unwrap()
}
