//! [`IsolationRegistry`] (strategies by name) and [`AssignedStrategy`] (each tenant's own strategy).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tenancy_core::{IsolationPlan, IsolationStrategy, TenantError, TenantId};

use crate::row_level::RowLevelStrategy;

/// Isolation strategies by registry name.
///
/// ```
/// use tenancy_isolation_sql::IsolationRegistry;
///
/// let registry = IsolationRegistry::with_defaults();
/// assert_eq!(registry.get("row_level").unwrap().name(), "row_level");
/// let err = registry.get("schema").unwrap_err();
/// assert!(err.to_string().contains("row_level"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct IsolationRegistry {
    strategies: BTreeMap<String, Arc<dyn IsolationStrategy>>,
}

impl IsolationRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding `row_level` (with the default `app.tenant_id` setting).
    #[must_use]
    pub fn with_defaults() -> Self {
        let mut registry = Self::new();
        registry.register(Arc::new(RowLevelStrategy::default()));
        registry
    }

    /// Registers `strategy` under its name, replacing any strategy of that name.
    pub fn register(&mut self, strategy: Arc<dyn IsolationStrategy>) -> &mut Self {
        self.strategies.insert(strategy.name().to_owned(), strategy);
        self
    }

    /// The strategy named `name`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the unknown strategy and the known ones.
    pub fn get(&self, name: &str) -> Result<Arc<dyn IsolationStrategy>, TenantError> {
        self.strategies.get(name).cloned().ok_or_else(|| {
            TenantError::Configuration(format!(
                "unknown isolation strategy {name:?}; registered: {}",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.strategies.keys().map(String::as_str)
    }
}

/// Where per-tenant strategy assignments are kept (see `PgIsolationStore` with feature `sql`).
#[async_trait]
pub trait AssignmentStore: Send + Sync + fmt::Debug {
    /// The name of the strategy assigned to `tenant`, if any.
    async fn assigned(&self, tenant: TenantId) -> Result<Option<String>, TenantError>;

    /// Assigns the strategy `name` to `tenant`, replacing any earlier assignment.
    async fn assign(&self, tenant: TenantId, name: &str) -> Result<(), TenantError>;

    /// Removes `tenant`'s assignment (idempotent).
    async fn unassign(&self, tenant: TenantId) -> Result<(), TenantError>;
}

/// A strategy that isolates each tenant with the strategy assigned to it, or the default one.
///
/// Assigning checks the name against the registry first, so a tenant is never assigned a strategy
/// that does not exist; an assignment found in the store naming an unregistered strategy is a
/// configuration error, never a silent fallback.
#[derive(Debug, Clone)]
pub struct AssignedStrategy {
    registry: Arc<IsolationRegistry>,
    default: Arc<dyn IsolationStrategy>,
    assignments: Arc<dyn AssignmentStore>,
}

impl AssignedStrategy {
    /// Delegates to `registry`, falling back to the strategy named `default`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `default` is not registered.
    pub fn new(
        registry: Arc<IsolationRegistry>,
        default: &str,
        assignments: Arc<dyn AssignmentStore>,
    ) -> Result<Self, TenantError> {
        let default = registry.get(default)?;
        Ok(Self {
            registry,
            default,
            assignments,
        })
    }

    /// Assigns the registered strategy `name` to `tenant`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `name` is not registered; store failures.
    pub async fn assign(&self, tenant: TenantId, name: &str) -> Result<(), TenantError> {
        self.registry.get(name)?;
        self.assignments.assign(tenant, name).await
    }

    /// The strategy that isolates `tenant`.
    ///
    /// # Errors
    /// Store failures; [`TenantError::Configuration`] when the stored name is not registered.
    pub async fn strategy_for(
        &self,
        tenant: TenantId,
    ) -> Result<Arc<dyn IsolationStrategy>, TenantError> {
        match self.assignments.assigned(tenant).await? {
            Some(name) => self.registry.get(&name),
            None => Ok(self.default.clone()),
        }
    }
}

#[async_trait]
impl IsolationStrategy for AssignedStrategy {
    fn name(&self) -> &str {
        "assigned"
    }

    async fn provision(&self, tenant: TenantId) -> Result<(), TenantError> {
        self.strategy_for(tenant).await?.provision(tenant).await
    }

    async fn deprovision(&self, tenant: TenantId) -> Result<(), TenantError> {
        self.strategy_for(tenant).await?.deprovision(tenant).await
    }

    async fn plan(&self, tenant: TenantId) -> Result<IsolationPlan, TenantError> {
        self.strategy_for(tenant).await?.plan(tenant).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_configuration_errors_listing_known_ones() {
        let registry = IsolationRegistry::with_defaults();
        assert_eq!(registry.names().collect::<Vec<_>>(), ["row_level"]);
        let err = registry.get("shema").unwrap_err();
        let TenantError::Configuration(message) = err else {
            panic!("not a configuration error: {err:?}");
        };
        assert!(message.contains("\"shema\"") && message.contains("row_level"));
        assert!(IsolationRegistry::new().get("row_level").is_err());
    }
}
