//! [`Provisioner`]: runs an isolation strategy's provision and deprovision for the lifecycle.

use std::sync::Arc;

use tenancy_core::{IsolationStrategy, TenantError, TenantId};
use tracing::Instrument as _;

use crate::config::LifecycleConfig;

/// Provisions and deprovisions tenants' isolation through an [`IsolationStrategy`].
///
/// With auto-provisioning off, both operations succeed without calling the strategy. The strategy
/// itself is chosen by the caller (the `tenancy` crate hands over the one its `isolation.strategy`
/// names), so this crate depends on no isolation implementation.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::{IsolationPlan, IsolationStrategy, TenantError, TenantId};
/// use tenancy_lifecycle::{LifecycleConfig, Provisioner};
///
/// #[derive(Debug)]
/// struct Nothing;
///
/// #[async_trait::async_trait]
/// impl IsolationStrategy for Nothing {
///     fn name(&self) -> &str { "row_level" }
///     async fn provision(&self, _: TenantId) -> Result<(), TenantError> { Ok(()) }
///     async fn deprovision(&self, _: TenantId) -> Result<(), TenantError> { Ok(()) }
///     async fn plan(&self, _: TenantId) -> Result<IsolationPlan, TenantError> { Ok(IsolationPlan::default()) }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let provisioner = Provisioner::from_config(Arc::new(Nothing), &LifecycleConfig::default());
/// provisioner.provision(TenantId::new()).await?;
/// # Ok::<(), TenantError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Provisioner {
    strategy: Arc<dyn IsolationStrategy>,
    auto_provision: bool,
}

impl Provisioner {
    /// A provisioner running `strategy`, or doing nothing when `auto_provision` is `false`.
    #[must_use]
    pub fn new(strategy: Arc<dyn IsolationStrategy>, auto_provision: bool) -> Self {
        Self {
            strategy,
            auto_provision,
        }
    }

    /// A provisioner running `strategy` when `config.auto_provision_isolation` is on.
    #[must_use]
    pub fn from_config(strategy: Arc<dyn IsolationStrategy>, config: &LifecycleConfig) -> Self {
        Self::new(strategy, config.auto_provision_isolation)
    }

    /// The strategy.
    #[must_use]
    pub fn strategy(&self) -> &Arc<dyn IsolationStrategy> {
        &self.strategy
    }

    /// Whether provisioning runs the strategy.
    #[must_use]
    pub fn auto_provision(&self) -> bool {
        self.auto_provision
    }

    /// Prepares the tenant's isolation (idempotent, as the strategy is).
    ///
    /// # Errors
    /// The strategy's error.
    pub async fn provision(&self, tenant: TenantId) -> Result<(), TenantError> {
        if !self.auto_provision {
            tracing::debug!(tenant_id = %tenant, "auto-provisioning off: isolation not provisioned");
            return Ok(());
        }
        let span =
            tracing::info_span!("provision", tenant_id = %tenant, strategy = self.strategy.name());
        self.strategy.provision(tenant).instrument(span).await
    }

    /// Removes or archives the tenant's isolation (idempotent, as the strategy is).
    ///
    /// # Errors
    /// The strategy's error.
    pub async fn deprovision(&self, tenant: TenantId) -> Result<(), TenantError> {
        if !self.auto_provision {
            tracing::debug!(tenant_id = %tenant, "auto-provisioning off: isolation not deprovisioned");
            return Ok(());
        }
        let span = tracing::info_span!("deprovision", tenant_id = %tenant, strategy = self.strategy.name());
        self.strategy.deprovision(tenant).instrument(span).await
    }
}
