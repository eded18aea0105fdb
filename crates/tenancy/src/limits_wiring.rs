//! Feature `limits`: how the stack connects [`TenantLimits`] to configuration changes and to the
//! tenants' transaction budgets.

use std::sync::Arc;

use async_trait::async_trait;
use tenancy_core::{BoxError, CacheInvalidation, EventPublisher, TenantEvent, TenantEventKind};
use tenancy_limits::{KEY_PREFIX, TenantLimits};

/// Publishes to the stack's broadcast, then makes the limits of a tenant whose `limits.*`
/// configuration changed in this process stale (other processes learn it from the change feed).
#[derive(Debug)]
pub(crate) struct LimitsOnConfigChange {
    pub(crate) inner: Arc<dyn EventPublisher>,
    pub(crate) limits: TenantLimits,
}

#[async_trait]
impl EventPublisher for LimitsOnConfigChange {
    async fn publish(&self, event: &TenantEvent) -> Result<(), BoxError> {
        if let TenantEventKind::ConfigChanged { key, .. } = &event.kind
            && key.starts_with(KEY_PREFIX)
        {
            self.limits.invalidate_tenant(event.tenant_id).await;
        }
        self.inner.publish(event).await
    }
}

/// A tenant's transaction budget from its effective limits.
#[cfg(feature = "sql")]
#[derive(Debug)]
pub(crate) struct PlanBudgets(pub(crate) TenantLimits);

#[cfg(feature = "sql")]
#[async_trait]
impl tenancy_isolation_sql::TransactionBudgets for PlanBudgets {
    async fn budget(
        &self,
        tenant: tenancy_core::TenantId,
    ) -> tenancy_isolation_sql::TransactionBudget {
        let entry = self.0.entry(tenant).await;
        let values = &entry.limits().values;
        let mut budget = tenancy_isolation_sql::TransactionBudget::unlimited();
        if let Some(timeout) = values.statement_timeout {
            budget = budget.with_statement_timeout(timeout);
        }
        if let Some(timeout) = values.lock_timeout {
            budget = budget.with_lock_timeout(timeout);
        }
        if let Some(slots) = entry.transaction_slots() {
            budget = budget.with_slots(Arc::clone(slots));
        }
        budget
    }
}
