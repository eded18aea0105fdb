//! Integration with the application's other layers: tenant-prefixed cache keys, and the setting of
//! the SQL context bridge ([`TenantDatabase::begin_current`](crate::TenantDatabase)).

mod cache;

pub use cache::{InMemoryCache, KeyValueCache, TenantPrefixedCache};

use serde::{Deserialize, Serialize};

/// The `integration` section of [`TenancyConfig`](crate::TenancyConfig).
///
/// ```
/// let config = tenancy::IntegrationConfig::default();
/// assert!(config.cache_key_prefix && config.sql_context_bridge);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Prefix cache keys with `t:{tenant}:` while a tenant is in scope ([`TenantPrefixedCache`]).
    pub cache_key_prefix: bool,
    /// Tenant-scoped database access takes the tenant from the task-local context, so handlers
    /// begin a transaction without naming the tenant (`TenantDatabase::begin_current`); when off,
    /// the tenant must be named (`TenantDatabase::begin`).
    pub sql_context_bridge: bool,
}

impl Default for IntegrationConfig {
    fn default() -> Self {
        Self {
            cache_key_prefix: true,
            sql_context_bridge: true,
        }
    }
}

impl IntegrationConfig {
    /// Both integrations off (what [`stub`](crate::stub) uses).
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            cache_key_prefix: false,
            sql_context_bridge: false,
        }
    }
}
