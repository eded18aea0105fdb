//! [`TenantLifecycle`]: the service that creates tenants and changes their status.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tenancy_core::{
    CacheInvalidation as _, CreateTenant, DomainName, EventPublisher, Invalidators,
    IsolationStrategy, ListQuery, MAX_PAGE_SIZE, NoopPublisher, Page, StatusChange, TenantDomain,
    TenantError, TenantEvent, TenantEventKind, TenantId, TenantInfo, TenantRef, TenantStatus,
    TenantStore, UpdateTenant,
};

use crate::config::LifecycleConfig;

/// What [`TenantLifecycle::recover_stuck`] did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The tenants whose provisioning was finished, as stored after it.
    pub recovered: Vec<TenantInfo>,
    /// The tenants whose provisioning failed again, with the error (also recorded on them).
    pub failed: Vec<(TenantId, TenantError)>,
}
use crate::outcome::{DomainOutcome, Outcome};
use crate::provisioner::Provisioner;

/// The longest status reason kept on a tenant, in characters: longer suspension reasons are
/// refused, longer provisioning errors are cut.
pub(crate) const REASON_MAX_CHARS: usize = 1000;

/// Creates tenants and changes their status, with events and cache invalidation.
///
/// Rules every operation follows:
/// - A status change reads the tenant, checks the core transition table, and asks the store to
///   apply it only if the tenant is still in the status it was read in
///   ([`TenantError::StatusConflict`] when a concurrent change won). An illegal change is
///   [`TenantError::IllegalTransition`]: nothing is stored, invalidated or published.
/// - After the store accepts a change, the tenant is invalidated in every cache registered in the
///   [`Invalidators`] (and by slug, for a new or renamed slug), then the event is published.
/// - A publisher failure never undoes the change: it is logged with `tenant_id` and returned in
///   [`Outcome::publish_errors`].
///
/// Provisioning: [`create`](Self::create) stores the tenant as `provisioning`, provisions its
/// isolation, then makes it `active`. When provisioning fails, the tenant stays `provisioning` with
/// the error recorded as its [`status_reason`](TenantInfo::status_reason) (so requests for it are
/// refused with [`TenantError::Provisioning`] carrying that error), the error is returned, and
/// [`retry_provisioning`](Self::retry_provisioning) finishes the job.
///
/// See the crate documentation for an example.
#[derive(Debug, Clone)]
pub struct TenantLifecycle {
    store: Arc<dyn TenantStore>,
    provisioner: Provisioner,
    publisher: Arc<dyn EventPublisher>,
    invalidators: Invalidators,
    deprovision_on_deactivate: bool,
}

impl TenantLifecycle {
    /// A service over `store` provisioning through `provisioner`, publishing nothing
    /// ([`NoopPublisher`]), with no cache registered and without deprovisioning on deactivation.
    #[must_use]
    pub fn new(store: Arc<dyn TenantStore>, provisioner: Provisioner) -> Self {
        Self {
            store,
            provisioner,
            publisher: Arc::new(NoopPublisher),
            invalidators: Invalidators::new(),
            deprovision_on_deactivate: false,
        }
    }

    /// A service configured by `config`, provisioning through `strategy`.
    #[must_use]
    pub fn from_config(
        store: Arc<dyn TenantStore>,
        strategy: Arc<dyn IsolationStrategy>,
        config: &LifecycleConfig,
    ) -> Self {
        Self::new(store, Provisioner::from_config(strategy, config))
            .with_deprovision_on_deactivate(config.deprovision_on_deactivate)
    }

    /// Publishes events through `publisher`.
    #[must_use]
    pub fn with_publisher(mut self, publisher: Arc<dyn EventPublisher>) -> Self {
        self.publisher = publisher;
        self
    }

    /// Invalidates the caches registered in `invalidators` (a shared set: caches registered later
    /// are invalidated too).
    #[must_use]
    pub fn with_invalidators(mut self, invalidators: Invalidators) -> Self {
        self.invalidators = invalidators;
        self
    }

    /// Whether [`deactivate`](Self::deactivate) deprovisions the tenant's isolation.
    #[must_use]
    pub fn with_deprovision_on_deactivate(mut self, deprovision: bool) -> Self {
        self.deprovision_on_deactivate = deprovision;
        self
    }

    /// The tenant store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
    }

    /// The provisioner.
    #[must_use]
    pub fn provisioner(&self) -> &Provisioner {
        &self.provisioner
    }

    /// The caches invalidated on every change.
    #[must_use]
    pub fn invalidators(&self) -> &Invalidators {
        &self.invalidators
    }

    /// The tenant with this id (straight from the store).
    ///
    /// # Errors
    /// The store's error.
    pub async fn get(&self, id: TenantId) -> Result<Option<TenantInfo>, TenantError> {
        self.store.get(id).await
    }

    /// The tenant by id or slug (straight from the store).
    ///
    /// # Errors
    /// The store's error.
    pub async fn find(&self, tenant: &TenantRef) -> Result<Option<TenantInfo>, TenantError> {
        self.store.find(tenant).await
    }

    /// One page of tenants (straight from the store).
    ///
    /// # Errors
    /// The store's error.
    pub async fn list(&self, query: ListQuery) -> Result<Page<TenantInfo>, TenantError> {
        self.store.list(query).await
    }

    /// Creates a tenant: validates the command, stores the tenant as `provisioning` (publishing
    /// `created`), provisions its isolation, then makes it `active` (publishing `provisioned`).
    ///
    /// Idempotent for a tenant left half made: when the slug belongs to a tenant still
    /// `provisioning` (a create that crashed, or failed to provision, before it finished), the
    /// create resumes that tenant's provisioning and answers it, as stored (its name and plan are
    /// the first create's). Concurrent creates of one slug therefore all answer the one tenant the
    /// store let exactly one of them insert.
    ///
    /// # Errors
    /// - [`TenantError::InvalidInput`] for an invalid command (nothing stored);
    /// - [`TenantError::SlugConflict`] when the slug belongs to a tenant past provisioning (the
    ///   store decides atomically which create inserts);
    /// - the provisioner's error: the tenant is then stored as `provisioning`, with the error as its
    ///   status reason; find it by slug and call [`retry_provisioning`](Self::retry_provisioning);
    /// - the store's error.
    #[tracing::instrument(name = "create_tenant", skip_all, fields(slug = %command.slug))]
    pub async fn create(&self, command: CreateTenant) -> Result<Outcome, TenantError> {
        let tenant = TenantInfo::from_command(command, Utc::now())?;
        let slug = tenant.slug;
        let tenant = match self.store.create(tenant).await {
            Ok(tenant) => tenant,
            Err(conflict @ TenantError::SlugConflict { .. }) => {
                return match self.store.find(&TenantRef::Slug(slug)).await? {
                    Some(stranded) if stranded.status == TenantStatus::Provisioning => {
                        tracing::info!(tenant_id = %stranded.id, "slug held by a tenant left provisioning: resuming it");
                        self.provision_and_activate(&stranded, TenantEventKind::Provisioned)
                            .await
                    }
                    _ => Err(conflict),
                };
            }
            Err(other) => return Err(other),
        };
        self.invalidators.invalidate_tenant(tenant.id).await;
        self.invalidators.invalidate_slug(&tenant.slug).await;
        tracing::info!(tenant_id = %tenant.id, "tenant created; provisioning");
        let mut publish_errors = Vec::new();
        self.publish(
            &mut publish_errors,
            tenant.id,
            TenantEventKind::Created { slug: tenant.slug },
        )
        .await;
        let mut outcome = self
            .provision_and_activate(&tenant, TenantEventKind::Provisioned)
            .await?;
        publish_errors.append(&mut outcome.publish_errors);
        outcome.publish_errors = publish_errors;
        Ok(outcome)
    }

    /// Finishes provisioning a `provisioning` tenant and makes it `active` (publishing
    /// `provisioned`). Idempotent: on an `active` tenant it does nothing and publishes nothing.
    ///
    /// # Errors
    /// [`TenantError::NotFound`]; [`TenantError::Inactive`] or [`TenantError::Suspended`] for a
    /// tenant in those statuses (use [`activate`](Self::activate)); the provisioner's error (recorded
    /// on the tenant, which stays `provisioning`); the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn retry_provisioning(&self, id: TenantId) -> Result<Outcome, TenantError> {
        let tenant = self.load(id).await?;
        match TenantError::for_status(&tenant) {
            None => {
                tracing::debug!(tenant_id = %id, "already active: nothing to provision");
                Ok(Outcome::new(tenant))
            }
            Some(TenantError::Provisioning { .. }) => {
                self.provision_and_activate(&tenant, TenantEventKind::Provisioned)
                    .await
            }
            Some(refusal) => Err(refusal),
        }
    }

    /// Finishes every tenant left `provisioning` for longer than `older_than` (a create or a
    /// re-activation that crashed, or whose provisioning failed): each is provisioned again and
    /// made `active`, as [`retry_provisioning`](Self::retry_provisioning) does. Run it at start-up
    /// (the `tenancy` stack does, after `lifecycle.recover_after`) or from the command line
    /// (`tenancy tenants recover`). It pages through every tenant, so its cost grows with their
    /// number; tenants changed meanwhile are left as they are.
    ///
    /// # Errors
    /// The store's error while listing; a tenant that fails again is reported in
    /// [`Recovery::failed`] (its error recorded on it) and the sweep goes on.
    #[tracing::instrument(skip_all)]
    pub async fn recover_stuck(&self, older_than: Duration) -> Result<Recovery, TenantError> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let mut recovery = Recovery::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .list(ListQuery {
                    after,
                    limit: MAX_PAGE_SIZE,
                    ..ListQuery::default()
                })
                .await?;
            for tenant in &page.items {
                if tenant.status != TenantStatus::Provisioning || tenant.updated_at > cutoff {
                    continue;
                }
                match self.retry_provisioning(tenant.id).await {
                    Ok(outcome) => recovery.recovered.push(outcome.into_tenant()),
                    Err(error) => {
                        tracing::warn!(tenant_id = %tenant.id, error = %describe(&error), "recovery failed");
                        recovery.failed.push((tenant.id, error));
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tracing::info!(
            recovered = recovery.recovered.len(),
            failed = recovery.failed.len(),
            "recovery sweep done"
        );
        Ok(recovery)
    }

    /// Updates the fields given (slug, name, plan, metadata) and publishes `updated` naming the
    /// fields whose value changed. An empty command, or one that changes no value, publishes
    /// nothing; an empty command does not reach the store.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`], [`TenantError::NotFound`], [`TenantError::SlugConflict`], or
    /// the store's error; nothing is changed then.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn update(
        &self,
        id: TenantId,
        update: &UpdateTenant,
    ) -> Result<Outcome, TenantError> {
        update.validate()?;
        let before = self.load(id).await?;
        if update.is_empty() {
            return Ok(Outcome::new(before));
        }
        let after = self.store.update(id, update).await?;
        self.invalidators.invalidate_tenant(id).await;
        if before.slug != after.slug {
            self.invalidators.invalidate_slug(&before.slug).await;
            self.invalidators.invalidate_slug(&after.slug).await;
        }
        let fields = changed_fields(&before, &after);
        let mut outcome = Outcome::new(after);
        if !fields.is_empty() {
            tracing::info!(tenant_id = %id, ?fields, "tenant updated");
            self.publish(
                &mut outcome.publish_errors,
                id,
                TenantEventKind::Updated { fields },
            )
            .await;
        }
        Ok(outcome)
    }

    /// The tenant's domains, primary first, then by name.
    ///
    /// # Errors
    /// The store's error.
    pub async fn domains(&self, id: TenantId) -> Result<Vec<TenantDomain>, TenantError> {
        self.store.domains(id).await
    }

    /// Gives the tenant `domain` (its primary domain when `primary`, or when it is its first):
    /// invalidates the domain in every cache (a request for it may have been cached as "no
    /// tenant"), then publishes `domain_added`, and `primary_domain_changed` when an existing
    /// domain became primary. Adding a domain the tenant has changes and publishes nothing.
    ///
    /// # Errors
    /// [`TenantError::NotFound`], [`TenantError::DomainConflict`] when another tenant owns the
    /// domain, or the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id, %domain))]
    pub async fn add_domain(
        &self,
        id: TenantId,
        domain: &DomainName,
        primary: bool,
    ) -> Result<DomainOutcome, TenantError> {
        let change = self.store.add_domain(id, domain, false).await?;
        let mut outcome = DomainOutcome {
            change,
            publish_errors: Vec::new(),
        };
        let is_primary = |change: &tenancy_core::DomainChange| {
            change
                .domains
                .iter()
                .any(|d| d.primary && d.domain == *domain)
        };
        if outcome.change.changed {
            self.invalidators.invalidate_domain(domain).await;
            let primary = is_primary(&outcome.change);
            tracing::info!(tenant_id = %id, %domain, primary, "domain added");
            let kind = TenantEventKind::DomainAdded {
                domain: domain.clone(),
                primary,
            };
            self.publish(&mut outcome.publish_errors, id, kind).await;
        }
        if primary && !is_primary(&outcome.change) {
            let errors = std::mem::take(&mut outcome.publish_errors);
            outcome = self.set_primary_domain(id, domain).await?;
            outcome.publish_errors.splice(0..0, errors);
        }
        Ok(outcome)
    }

    /// Takes `domain` from the tenant (the oldest remaining domain becomes primary when it was),
    /// invalidates it in every cache, and publishes `domain_removed`.
    ///
    /// # Errors
    /// [`TenantError::NotFound`], [`TenantError::DomainNotFound`] when the tenant does not own the
    /// domain, or the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id, %domain))]
    pub async fn remove_domain(
        &self,
        id: TenantId,
        domain: &DomainName,
    ) -> Result<DomainOutcome, TenantError> {
        let change = self.store.remove_domain(id, domain).await?;
        self.invalidators.invalidate_domain(domain).await;
        let mut outcome = DomainOutcome {
            change,
            publish_errors: Vec::new(),
        };
        let primary = outcome
            .change
            .domains
            .iter()
            .find(|d| d.primary)
            .map(|d| d.domain.clone());
        tracing::info!(tenant_id = %id, %domain, "domain removed");
        let kind = TenantEventKind::DomainRemoved {
            domain: domain.clone(),
            primary,
        };
        self.publish(&mut outcome.publish_errors, id, kind).await;
        Ok(outcome)
    }

    /// Makes `domain`, which the tenant owns, its primary domain; publishes
    /// `primary_domain_changed` when it was not.
    ///
    /// # Errors
    /// [`TenantError::NotFound`], [`TenantError::DomainNotFound`], or the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id, %domain))]
    pub async fn set_primary_domain(
        &self,
        id: TenantId,
        domain: &DomainName,
    ) -> Result<DomainOutcome, TenantError> {
        let change = self.store.set_primary_domain(id, domain).await?;
        let mut outcome = DomainOutcome {
            change,
            publish_errors: Vec::new(),
        };
        if outcome.change.changed {
            tracing::info!(tenant_id = %id, %domain, "primary domain changed");
            let kind = TenantEventKind::PrimaryDomainChanged {
                domain: domain.clone(),
            };
            self.publish(&mut outcome.publish_errors, id, kind).await;
        }
        Ok(outcome)
    }

    /// Makes a tenant `active`:
    /// - `suspended -> active` publishes `activated` and clears the suspension reason;
    /// - `inactive -> provisioning -> active` re-provisions the isolation first (a deactivation may
    ///   have deprovisioned it, or the tenant may never have finished provisioning; provisioning is
    ///   idempotent, so this is safe when nothing was removed), then publishes `activated`; if
    ///   provisioning fails the tenant stays `provisioning` as after a failed [`create`](Self::create);
    /// - `provisioning -> active` is [`retry_provisioning`](Self::retry_provisioning) (publishes
    ///   `provisioned`).
    ///
    /// # Errors
    /// [`TenantError::IllegalTransition`] for an `active` tenant; [`TenantError::NotFound`];
    /// [`TenantError::StatusConflict`]; the provisioner's or the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn activate(&self, id: TenantId) -> Result<Outcome, TenantError> {
        let tenant = self.load(id).await?;
        tenant.status.check_transition(TenantStatus::Active, id)?;
        match tenant.status {
            TenantStatus::Provisioning => {
                self.provision_and_activate(&tenant, TenantEventKind::Provisioned)
                    .await
            }
            TenantStatus::Inactive => {
                let provisioning = self
                    .transition(&tenant, TenantStatus::Provisioning, None)
                    .await?;
                self.provision_and_activate(&provisioning, TenantEventKind::Activated)
                    .await
            }
            _ => {
                self.change_status(
                    &tenant,
                    TenantStatus::Active,
                    None,
                    TenantEventKind::Activated,
                )
                .await
            }
        }
    }

    /// Makes a tenant `inactive` (from `provisioning`, `active` or `suspended`) and publishes
    /// `deactivated`; then, when configured to, deprovisions its isolation.
    ///
    /// # Errors
    /// [`TenantError::IllegalTransition`] for an `inactive` tenant; [`TenantError::NotFound`];
    /// [`TenantError::StatusConflict`]; the store's error. When deprovisioning fails, the tenant is
    /// inactive all the same (its event published), the error is recorded as its status reason and
    /// returned; [`deprovision`](Self::deprovision) retries.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn deactivate(&self, id: TenantId) -> Result<Outcome, TenantError> {
        let tenant = self.load(id).await?;
        let mut outcome = self
            .change_status(
                &tenant,
                TenantStatus::Inactive,
                None,
                TenantEventKind::Deactivated,
            )
            .await?;
        if self.deprovision_on_deactivate {
            outcome.tenant = self.deprovision_inactive(&outcome.tenant).await?;
        }
        Ok(outcome)
    }

    /// Suspends an `active` tenant, keeping `reason` on it, and publishes `suspended`.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] for a reason longer than 1000 characters or holding control
    /// characters;
    /// [`TenantError::IllegalTransition`] for a tenant that is not `active`;
    /// [`TenantError::NotFound`]; [`TenantError::StatusConflict`]; the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn suspend(
        &self,
        id: TenantId,
        reason: Option<String>,
    ) -> Result<Outcome, TenantError> {
        if reason
            .as_deref()
            .is_some_and(|r| r.chars().count() > REASON_MAX_CHARS)
        {
            return Err(TenantError::invalid(
                "reason",
                "must be at most 1000 characters",
            ));
        }
        // As for names: the reason is shown in terminals and logs, where control characters
        // (escape sequences, forged line breaks) must not reach.
        if reason
            .as_deref()
            .is_some_and(|r| r.chars().any(char::is_control))
        {
            return Err(TenantError::invalid(
                "reason",
                "must not contain control characters",
            ));
        }
        let tenant = self.load(id).await?;
        self.change_status(
            &tenant,
            TenantStatus::Suspended,
            reason.clone(),
            TenantEventKind::Suspended { reason },
        )
        .await
    }

    /// Deprovisions the isolation of an `inactive` tenant (idempotent, as strategies are), and
    /// clears a recorded deprovisioning error. Publishes nothing: the status does not change. Do not
    /// run it concurrently with [`activate`](Self::activate) of the same tenant.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when the tenant is not `inactive`; [`TenantError::NotFound`];
    /// the provisioner's error (recorded as the tenant's status reason); the store's error.
    #[tracing::instrument(skip_all, fields(tenant_id = %id))]
    pub async fn deprovision(&self, id: TenantId) -> Result<TenantInfo, TenantError> {
        let tenant = self.load(id).await?;
        if tenant.status != TenantStatus::Inactive {
            return Err(TenantError::invalid(
                "tenant",
                format!(
                    "tenant {id} is {}: only an inactive tenant can be deprovisioned (deactivate it first)",
                    tenant.status
                ),
            ));
        }
        self.deprovision_inactive(&tenant).await
    }

    async fn load(&self, id: TenantId) -> Result<TenantInfo, TenantError> {
        self.store.get(id).await?.ok_or(TenantError::NotFound {
            tenant: TenantRef::Id(id),
        })
    }

    /// [`transition`](Self::transition)s `tenant` to `to`, then publishes `kind`.
    async fn change_status(
        &self,
        tenant: &TenantInfo,
        to: TenantStatus,
        reason: Option<String>,
        kind: TenantEventKind,
    ) -> Result<Outcome, TenantError> {
        let changed = self.transition(tenant, to, reason).await?;
        let mut outcome = Outcome::new(changed);
        self.publish(&mut outcome.publish_errors, tenant.id, kind)
            .await;
        Ok(outcome)
    }

    /// Checks the table, applies the change conditionally on the status `tenant` was read in, and
    /// invalidates the tenant.
    async fn transition(
        &self,
        tenant: &TenantInfo,
        to: TenantStatus,
        reason: Option<String>,
    ) -> Result<TenantInfo, TenantError> {
        tenant.status.check_transition(to, tenant.id)?;
        let change = StatusChange {
            from: tenant.status,
            to,
            reason,
        };
        let changed = self.store.set_status(tenant.id, change).await?;
        self.invalidators.invalidate_tenant(tenant.id).await;
        tracing::info!(tenant_id = %tenant.id, from = %tenant.status, to = %to, "tenant status changed");
        Ok(changed)
    }

    /// Provisions a `provisioning` tenant and makes it `active`, then publishes `event`. On
    /// failure the error is recorded on the tenant, which stays `provisioning`. When a concurrent
    /// call changed the tenant first (made it active, or deactivated it), this call publishes
    /// nothing and answers the tenant as that call left it.
    async fn provision_and_activate(
        &self,
        tenant: &TenantInfo,
        event: TenantEventKind,
    ) -> Result<Outcome, TenantError> {
        let id = tenant.id;
        if let Err(error) = self.provisioner.provision(id).await {
            tracing::warn!(tenant_id = %id, error = %describe(&error), "provisioning failed; the tenant stays provisioning");
            self.record_reason(id, TenantStatus::Provisioning, Some(describe(&error)))
                .await;
            return Err(error);
        }
        match self.transition(tenant, TenantStatus::Active, None).await {
            Ok(active) => {
                let mut outcome = Outcome::new(active);
                self.publish(&mut outcome.publish_errors, id, event).await;
                Ok(outcome)
            }
            // Another call changed the tenant meanwhile (made it active, or deactivated it while
            // it was provisioned): the tenant exists, in the state that call left it in.
            Err(TenantError::StatusConflict { actual, .. }) => {
                tracing::info!(tenant_id = %id, status = %actual, "changed while provisioned; keeping its status");
                Ok(Outcome::new(self.load(id).await?))
            }
            Err(error) => Err(error),
        }
    }

    /// Deprovisions an inactive tenant, recording a failure as its status reason and clearing a
    /// previously recorded one on success.
    async fn deprovision_inactive(&self, tenant: &TenantInfo) -> Result<TenantInfo, TenantError> {
        let id = tenant.id;
        match self.provisioner.deprovision(id).await {
            Ok(()) => {
                tracing::info!(tenant_id = %id, "isolation deprovisioned");
                if tenant.status_reason.is_some()
                    && let Some(cleared) =
                        self.record_reason(id, TenantStatus::Inactive, None).await
                {
                    return Ok(cleared);
                }
                Ok(tenant.clone())
            }
            Err(error) => {
                tracing::warn!(tenant_id = %id, error = %describe(&error), "deprovisioning failed");
                let reason = format!("deprovisioning failed: {}", describe(&error));
                self.record_reason(id, TenantStatus::Inactive, Some(reason))
                    .await;
                Err(error)
            }
        }
    }

    /// Records a status reason (best effort: a failure is logged, the operation's own outcome
    /// matters more) and invalidates the tenant.
    async fn record_reason(
        &self,
        id: TenantId,
        status: TenantStatus,
        reason: Option<String>,
    ) -> Option<TenantInfo> {
        let reason = reason.map(|r| truncate(r, REASON_MAX_CHARS));
        match self.store.set_status_reason(id, status, reason).await {
            Ok(tenant) => {
                self.invalidators.invalidate_tenant(id).await;
                Some(tenant)
            }
            Err(error) => {
                tracing::error!(tenant_id = %id, error = %describe(&error), "recording the status reason failed");
                None
            }
        }
    }

    /// Publishes one event; a failure is logged and pushed to `errors`.
    async fn publish(
        &self,
        errors: &mut Vec<TenantError>,
        tenant: TenantId,
        kind: TenantEventKind,
    ) {
        let event = TenantEvent::now(tenant, kind);
        if let Err(source) = self.publisher.publish(&event).await {
            let name = event.kind.name();
            tracing::error!(tenant_id = %tenant, event = name, error = %source, "publishing failed; the change stays stored");
            errors.push(TenantError::Publish {
                event: name,
                tenant,
                source,
            });
        }
    }
}

/// The names of the fields an update changed.
fn changed_fields(before: &TenantInfo, after: &TenantInfo) -> Vec<String> {
    [
        ("slug", before.slug != after.slug),
        ("name", before.name != after.name),
        ("plan", before.plan != after.plan),
        ("metadata", before.metadata != after.metadata),
    ]
    .into_iter()
    .filter(|&(_, changed)| changed)
    .map(|(field, _)| field.to_owned())
    .collect()
}

/// An error and its sources, `outer: inner: innermost`.
fn describe(error: &TenantError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_includes_sources_and_truncate_respects_chars() {
        let error = TenantError::isolation(
            "creating schema",
            std::io::Error::other("permission denied"),
        );
        assert_eq!(
            describe(&error),
            "isolation failed: creating schema: permission denied"
        );
        assert_eq!(truncate("ééé".to_owned(), 2), "éé");
        assert_eq!(truncate("ab".to_owned(), 2), "ab");
    }
}
