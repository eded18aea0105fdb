//! [`InMemoryStore`]: a tenant and config store in process memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;

use crate::domain::{DomainChange, DomainName, TenantDomain, sort_domains};
use crate::error::TenantError;
use crate::id::{Slug, TenantId, TenantRef};
use crate::store::{ConfigStore, ListQuery, Page, StatusChange, TenantStore};
use crate::tenant::{JsonObject, TenantInfo, TenantStatus, UpdateTenant};

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<TenantId, TenantInfo>,
    slugs: HashMap<Slug, TenantId>,
    /// Configuration overrides, by tenant (only tenants that have some).
    configs: HashMap<TenantId, JsonObject>,
    /// Every tenant's domains.
    domains: HashMap<DomainName, TenantDomain>,
}

impl State {
    fn tenant_domains(&self, tenant: TenantId) -> Vec<TenantDomain> {
        let mut domains: Vec<TenantDomain> = self
            .domains
            .values()
            .filter(|d| d.tenant_id == tenant)
            .cloned()
            .collect();
        sort_domains(&mut domains);
        domains
    }

    fn change(&self, tenant: TenantId, changed: bool) -> DomainChange {
        DomainChange {
            domains: self.tenant_domains(tenant),
            changed,
        }
    }

    /// Makes `domain` the tenant's only primary domain.
    fn make_primary(&mut self, tenant: TenantId, domain: &DomainName) {
        for entry in self.domains.values_mut() {
            if entry.tenant_id == tenant {
                entry.primary = entry.domain == *domain;
            }
        }
    }

    fn owned(&self, tenant: TenantId, domain: &DomainName) -> Result<&TenantDomain, TenantError> {
        if !self.tenants.contains_key(&tenant) {
            return Err(not_found(tenant));
        }
        self.domains
            .get(domain)
            .filter(|d| d.tenant_id == tenant)
            .ok_or_else(|| TenantError::DomainNotFound {
                tenant,
                domain: domain.clone(),
            })
    }
}

/// A tenant store and config store in memory: for tests, examples and single-process tools.
///
/// One lock guards all state, so slug uniqueness and conditional status changes are atomic. State is
/// lost with the process and not shared between processes; use `tenancy-store-sql` for that.
///
/// ```
/// use tenancy_core::{CreateTenant, InMemoryStore, TenantInfo, TenantStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryStore::new();
/// let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?;
/// let created = store.create(tenant).await?;
/// assert_eq!(store.get_by_slug(&"acme".parse()?).await?, Some(created));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: RwLock<State>,
}

impl InMemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }
}

fn not_found(id: TenantId) -> TenantError {
    TenantError::NotFound {
        tenant: TenantRef::Id(id),
    }
}

#[async_trait]
impl TenantStore for InMemoryStore {
    async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError> {
        Ok(self.read(|s| s.tenants.get(&id).cloned()))
    }

    async fn get_by_slug(&self, slug: &Slug) -> Result<Option<TenantInfo>, TenantError> {
        Ok(self.read(|s| s.slugs.get(slug).and_then(|id| s.tenants.get(id)).cloned()))
    }

    async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError> {
        let limit = query.effective_limit() as usize;
        Ok(self.read(|s| {
            let start = match query.after {
                Some(after) => std::ops::Bound::Excluded(after),
                None => std::ops::Bound::Unbounded,
            };
            let mut items: Vec<TenantInfo> = s
                .tenants
                .range((start, std::ops::Bound::Unbounded))
                .map(|(_, t)| t)
                .filter(|t| !query.active_only || t.is_active())
                .take(limit + 1)
                .cloned()
                .collect();
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|t| t.id)
            } else {
                None
            };
            Page { items, next }
        }))
    }

    async fn create(&self, tenant: TenantInfo) -> Result<TenantInfo, TenantError> {
        self.write(|s| {
            if s.slugs.contains_key(&tenant.slug) {
                return Err(TenantError::SlugConflict { slug: tenant.slug });
            }
            if s.tenants.contains_key(&tenant.id) {
                return Err(TenantError::invalid(
                    "id",
                    format!("tenant {} already exists", tenant.id),
                ));
            }
            s.slugs.insert(tenant.slug, tenant.id);
            s.tenants.insert(tenant.id, tenant.clone());
            Ok(tenant)
        })
    }

    async fn update(&self, id: TenantId, update: &UpdateTenant) -> Result<TenantInfo, TenantError> {
        self.write(|s| {
            let current = s.tenants.get(&id).ok_or_else(|| not_found(id))?;
            if let Some(slug) = update.slug
                && s.slugs.get(&slug).is_some_and(|owner| *owner != id)
            {
                return Err(TenantError::SlugConflict { slug });
            }
            let mut updated = current.clone();
            update.apply(&mut updated, Utc::now())?;
            if updated.slug != current.slug {
                s.slugs.remove(&current.slug);
                s.slugs.insert(updated.slug, id);
            }
            s.tenants.insert(id, updated.clone());
            Ok(updated)
        })
    }

    async fn set_status(
        &self,
        id: TenantId,
        change: StatusChange,
    ) -> Result<TenantInfo, TenantError> {
        self.write(|s| {
            let tenant = s.tenants.get_mut(&id).ok_or_else(|| not_found(id))?;
            if tenant.status != change.from {
                return Err(TenantError::StatusConflict {
                    tenant: id,
                    expected: change.from,
                    actual: tenant.status,
                });
            }
            change.from.check_transition(change.to, id)?;
            tenant.status = change.to;
            tenant.status_reason = change.reason;
            tenant.updated_at = Utc::now();
            Ok(tenant.clone())
        })
    }

    async fn get_by_domain(&self, domain: &DomainName) -> Result<Option<TenantInfo>, TenantError> {
        Ok(self.read(|s| {
            s.domains
                .get(domain)
                .and_then(|d| s.tenants.get(&d.tenant_id))
                .cloned()
        }))
    }

    async fn domains(&self, tenant: TenantId) -> Result<Vec<TenantDomain>, TenantError> {
        Ok(self.read(|s| s.tenant_domains(tenant)))
    }

    async fn add_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
        primary: bool,
    ) -> Result<DomainChange, TenantError> {
        self.write(|s| {
            if !s.tenants.contains_key(&tenant) {
                return Err(not_found(tenant));
            }
            match s.domains.get(domain) {
                Some(owned) if owned.tenant_id != tenant => Err(TenantError::DomainConflict {
                    domain: domain.clone(),
                }),
                Some(owned) => {
                    let promote = primary && !owned.primary;
                    if promote {
                        s.make_primary(tenant, domain);
                    }
                    Ok(s.change(tenant, promote))
                }
                None => {
                    let first = !s.domains.values().any(|d| d.tenant_id == tenant);
                    s.domains.insert(
                        domain.clone(),
                        TenantDomain {
                            domain: domain.clone(),
                            tenant_id: tenant,
                            primary: false,
                            created_at: Utc::now(),
                        },
                    );
                    if primary || first {
                        s.make_primary(tenant, domain);
                    }
                    Ok(s.change(tenant, true))
                }
            }
        })
    }

    async fn remove_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        self.write(|s| {
            let was_primary = s.owned(tenant, domain)?.primary;
            s.domains.remove(domain);
            if was_primary
                && let Some(next) = s
                    .domains
                    .values()
                    .filter(|d| d.tenant_id == tenant)
                    .min_by(|a, b| {
                        a.created_at
                            .cmp(&b.created_at)
                            .then_with(|| a.domain.cmp(&b.domain))
                    })
                    .map(|d| d.domain.clone())
            {
                s.make_primary(tenant, &next);
            }
            Ok(s.change(tenant, true))
        })
    }

    async fn set_primary_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError> {
        self.write(|s| {
            let changed = !s.owned(tenant, domain)?.primary;
            if changed {
                s.make_primary(tenant, domain);
            }
            Ok(s.change(tenant, changed))
        })
    }

    async fn set_status_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError> {
        self.write(|s| {
            let tenant = s.tenants.get_mut(&id).ok_or_else(|| not_found(id))?;
            if tenant.status != status {
                return Err(TenantError::StatusConflict {
                    tenant: id,
                    expected: status,
                    actual: tenant.status,
                });
            }
            tenant.status_reason = reason;
            tenant.updated_at = Utc::now();
            Ok(tenant.clone())
        })
    }
}

#[async_trait]
impl ConfigStore for InMemoryStore {
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        Ok(self.read(|s| {
            s.configs
                .get(&tenant)
                .and_then(|config| config.get(key))
                .cloned()
        }))
    }

    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        Ok(self.read(|s| s.configs.get(&tenant).cloned().unwrap_or_default()))
    }

    async fn set_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, TenantError> {
        self.write(|s| {
            if !s.tenants.contains_key(&tenant) {
                return Err(not_found(tenant));
            }
            Ok(s.configs
                .entry(tenant)
                .or_default()
                .insert(key.to_owned(), value))
        })
    }

    async fn remove_config(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Value>, TenantError> {
        self.write(|s| {
            if !s.tenants.contains_key(&tenant) {
                return Err(not_found(tenant));
            }
            Ok(s.configs
                .get_mut(&tenant)
                .and_then(|config| config.remove(key)))
        })
    }
}
