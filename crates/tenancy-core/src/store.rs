//! Store traits: [`TenantStore`] for tenants, [`ConfigStore`] for per-tenant configuration overrides.
//!
//! Implementations: [`InMemoryStore`](crate::InMemoryStore) here, the SQL stores in
//! `tenancy-store-sql`. All of them pass one conformance suite and return the same errors.

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{DomainChange, DomainName, TenantDomain};
use crate::error::TenantError;
use crate::id::{Slug, TenantId, TenantRef};
use crate::tenant::{JsonObject, TenantInfo, TenantStatus, UpdateTenant};

/// The default page size of [`ListQuery`].
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page size a store returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which tenants to list, and which page.
///
/// Paging is by key: tenants are ordered by id (UUIDv7 ids sort by creation time), and `after` is the
/// last id of the previous page, so pages stay stable while tenants are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// Only `active` tenants.
    pub active_only: bool,
    /// Start after this id (exclusive); `None` starts at the beginning.
    pub after: Option<TenantId>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`]; larger values are clamped.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            active_only: false,
            after: None,
            limit: DEFAULT_PAGE_SIZE,
        }
    }
}

impl ListQuery {
    /// Only active tenants, first page.
    #[must_use]
    pub fn active() -> Self {
        Self {
            active_only: true,
            ..Self::default()
        }
    }

    /// The page size a store should use: `limit` clamped to `1..=MAX_PAGE_SIZE`.
    #[must_use]
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE_SIZE)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, ordered by id.
    pub items: Vec<T>,
    /// The `after` value for the next page, or `None` when this page is the last.
    pub next: Option<TenantId>,
}

/// A requested status change, applied only if the tenant is still in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The status the change is based on.
    pub from: TenantStatus,
    /// The new status.
    pub to: TenantStatus,
    /// Why (kept as [`TenantInfo::status_reason`]; `None` clears it).
    pub reason: Option<String>,
}

/// Persistent tenants.
///
/// Contract shared by every implementation (the conformance suite checks it):
/// - `create` enforces slug uniqueness atomically: of concurrent creates with one slug exactly one
///   succeeds, the others get [`TenantError::SlugConflict`]; the same goes for `update` to a taken slug.
/// - `set_status` checks the transition table and applies the change only if the tenant is still in
///   `change.from` ([`TenantError::StatusConflict`] otherwise), in one atomic step.
/// - Missing tenants are `Ok(None)` from getters and [`TenantError::NotFound`] from mutations.
/// - A domain belongs to one tenant at most: of concurrent adds of one domain exactly one tenant
///   gets it, the others get [`TenantError::DomainConflict`]. A tenant with domains has exactly one
///   primary: its first domain becomes primary, and removing the primary makes the oldest remaining
///   domain primary.
/// - Every mutation is all or nothing.
#[async_trait]
pub trait TenantStore: Send + Sync + fmt::Debug {
    /// The tenant with this id.
    async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError>;

    /// The tenant with this slug.
    async fn get_by_slug(&self, slug: &Slug) -> Result<Option<TenantInfo>, TenantError>;

    /// The tenant by id or slug.
    async fn find(&self, tenant: &TenantRef) -> Result<Option<TenantInfo>, TenantError> {
        match tenant {
            TenantRef::Id(id) => self.get(*id).await,
            TenantRef::Slug(slug) => self.get_by_slug(slug).await,
        }
    }

    /// One page of tenants, ordered by id.
    async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError>;

    /// Stores a new tenant as given (the caller sets its status, normally `provisioning`).
    async fn create(&self, tenant: TenantInfo) -> Result<TenantInfo, TenantError>;

    /// Applies the fields given and returns the updated tenant.
    async fn update(&self, id: TenantId, update: &UpdateTenant) -> Result<TenantInfo, TenantError>;

    /// Changes the status atomically, conditional on the current status.
    async fn set_status(
        &self,
        id: TenantId,
        change: StatusChange,
    ) -> Result<TenantInfo, TenantError>;

    /// The tenant that owns `domain`, whatever its status.
    async fn get_by_domain(&self, domain: &DomainName) -> Result<Option<TenantInfo>, TenantError>;

    /// The tenant's domains, primary first, then by name (empty for an unknown tenant).
    async fn domains(&self, tenant: TenantId) -> Result<Vec<TenantDomain>, TenantError>;

    /// Gives `domain` to the tenant; as its primary domain when `primary` or when it is the
    /// tenant's first. Adding a domain the tenant already has changes nothing, unless `primary`
    /// asks to make it primary.
    ///
    /// # Errors
    /// [`TenantError::NotFound`] for a missing tenant, [`TenantError::DomainConflict`] when another
    /// tenant owns the domain.
    async fn add_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
        primary: bool,
    ) -> Result<DomainChange, TenantError>;

    /// Takes `domain` from the tenant. When it was primary, the oldest remaining domain becomes
    /// primary.
    ///
    /// # Errors
    /// [`TenantError::NotFound`] for a missing tenant, [`TenantError::DomainNotFound`] when the
    /// tenant does not own the domain.
    async fn remove_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError>;

    /// Makes `domain`, which the tenant owns, its primary domain.
    ///
    /// # Errors
    /// [`TenantError::NotFound`] for a missing tenant, [`TenantError::DomainNotFound`] when the
    /// tenant does not own the domain.
    async fn set_primary_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<DomainChange, TenantError>;

    /// Records why the tenant is in its status (such as the error of a failed provisioning) without
    /// changing the status, only if the tenant is still in `status`; `None` clears the reason.
    ///
    /// # Errors
    /// [`TenantError::NotFound`] for a missing tenant, [`TenantError::StatusConflict`] when the
    /// tenant is no longer in `status`.
    async fn set_status_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError>;
}

/// Per-tenant configuration overrides (a JSON value per key). This is their only home:
/// [`TenantInfo`] does not carry them, so caching a tenant never caches its overrides.
///
/// Setting or removing a key of a tenant that does not exist is [`TenantError::NotFound`].
#[async_trait]
pub trait ConfigStore: Send + Sync + fmt::Debug {
    /// The value of one key, if set.
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError>;

    /// Every key set for the tenant (empty when none, or when the tenant does not exist).
    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError>;

    /// Sets one key; returns the previous value.
    async fn set_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, TenantError>;

    /// Removes one key; returns the value it had.
    async fn remove_config(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Value>, TenantError>;
}
