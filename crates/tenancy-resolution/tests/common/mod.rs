//! Test fixtures: a counting (and optionally failing) wrapper around the real in-memory store,
//! tenant factories and a membership table.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tenancy_core::{
    CreateTenant, DomainChange, DomainName, InMemoryStore, ListQuery, Page, Slug, StatusChange,
    TenantDomain, TenantError, TenantId, TenantInfo, TenantStatus, TenantStore, UpdateTenant,
};
use tenancy_resolution::{AuthenticatedUser, TenantMembership};

/// Wraps [`InMemoryStore`], counting lookups; can be switched to fail, or to answer slowly.
#[derive(Debug, Default)]
pub struct CountingStore {
    pub inner: InMemoryStore,
    lookups: AtomicUsize,
    failing: AtomicBool,
    slow: AtomicBool,
}

impl CountingStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Lookups wait 20 ms, so that concurrent requests pile up on one miss.
    pub fn set_slow(&self, slow: bool) {
        self.slow.store(slow, Ordering::SeqCst);
    }

    async fn lookup<T>(&self, answer: impl FnOnce() -> T) -> Result<T, TenantError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(TenantError::storage(
                "reading tenants",
                std::io::Error::other("connection refused"),
            ));
        }
        Ok(answer())
    }

    /// Creates a tenant with this slug and status.
    pub async fn tenant(&self, slug: &str, status: TenantStatus) -> TenantInfo {
        let mut info = TenantInfo::from_command(
            CreateTenant::new(slug.parse().unwrap(), slug.to_uppercase()),
            chrono::Utc::now(),
        )
        .unwrap();
        info.status = status;
        if status == TenantStatus::Suspended {
            info.status_reason = Some("unpaid invoice".into());
        }
        self.inner.create(info).await.unwrap()
    }
}

#[async_trait]
impl TenantStore for CountingStore {
    async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError> {
        let found = self.inner.get(id).await?;
        self.lookup(|| found).await
    }

    async fn get_by_slug(&self, slug: &Slug) -> Result<Option<TenantInfo>, TenantError> {
        let found = self.inner.get_by_slug(slug).await?;
        self.lookup(|| found).await
    }

    async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError> {
        self.inner.list(query).await
    }

    async fn create(&self, tenant: TenantInfo) -> Result<TenantInfo, TenantError> {
        self.inner.create(tenant).await
    }

    async fn update(&self, id: TenantId, update: &UpdateTenant) -> Result<TenantInfo, TenantError> {
        self.inner.update(id, update).await
    }

    async fn set_status(
        &self,
        id: TenantId,
        change: StatusChange,
    ) -> Result<TenantInfo, TenantError> {
        self.inner.set_status(id, change).await
    }

    async fn set_status_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError> {
        self.inner.set_status_reason(id, status, reason).await
    }

    async fn get_by_domain(&self, domain: &DomainName) -> Result<Option<TenantInfo>, TenantError> {
        let found = self.inner.get_by_domain(domain).await?;
        self.lookup(|| found).await
    }

    async fn domains(&self, tenant: TenantId) -> Result<Vec<TenantDomain>, TenantError> {
        self.inner.domains(tenant).await
    }

    async fn add_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
        primary: bool,
    ) -> Result<DomainChange, TenantError> {
        self.inner.add_domain(tenant, domain, primary).await
    }

    async fn remove_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        self.inner.remove_domain(tenant, domain).await
    }

    async fn set_primary_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        self.inner.set_primary_domain(tenant, domain).await
    }
}

/// Membership from a fixed table of (user, tenant) pairs; counts its calls.
#[derive(Debug, Default)]
pub struct TableMembership {
    pub members: HashSet<(String, TenantId)>,
    pub calls: AtomicUsize,
}

impl TableMembership {
    pub fn with(members: impl IntoIterator<Item = (&'static str, TenantId)>) -> Arc<Self> {
        Arc::new(Self {
            members: members
                .into_iter()
                .map(|(user, id)| (user.to_owned(), id))
                .collect(),
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl TenantMembership for TableMembership {
    async fn is_member(
        &self,
        user: &AuthenticatedUser,
        tenant: &TenantInfo,
    ) -> Result<bool, TenantError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.members.contains(&(user.id().to_owned(), tenant.id)))
    }
}
