//! The `metrics` section: how many tenants get a metric label of their own; and
//! [`describe_metrics`], the descriptions of every metric the stack records.
//!
//! The crates record through the [`metrics`](https://docs.rs/metrics) facade when this crate's
//! feature `metrics` is on; the application installs a recorder (a Prometheus exporter, say)
//! *before* building the stack, since the validator and the change feed register their metrics
//! when they are built. docs/operations.md lists the metrics.

use serde::Deserialize;
use tenancy_core::{DEFAULT_LABELLED_TENANTS, TenantLabels};

/// The `metrics` section.
///
/// ```
/// use figment::{Figment, providers::{Format, Yaml}};
/// use tenancy::TenancyConfig;
///
/// let figment = Figment::from(Yaml::string("tenancy:\n  metrics:\n    max_tenant_labels: 500\n"));
/// let config = TenancyConfig::from_figment(&figment)?;
/// assert_eq!(config.metrics.max_tenant_labels, 500);
/// assert_eq!(TenancyConfig::default().metrics.max_tenant_labels, 100);
/// # Ok::<(), tenancy::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// How many tenants get their id as the `tenant` label of the metrics (the first ones seen);
    /// every later tenant is counted under `other`. It bounds the number of series a metrics
    /// backend stores. Process-wide: the first stack built in a process sets it, later ones keep
    /// it (and log a warning when theirs differs). 0 labels every tenant `other`.
    pub max_tenant_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_tenant_labels: DEFAULT_LABELLED_TENANTS,
        }
    }
}

impl MetricsConfig {
    /// Sets the process-wide label capacity ([`TenantLabels::init_global`]) unless it is set
    /// already; `false` (and a warning) when it was set with another capacity.
    pub fn apply(&self) -> bool {
        if TenantLabels::init_global(self.max_tenant_labels) {
            return true;
        }
        let capacity = TenantLabels::global().capacity();
        if capacity != self.max_tenant_labels {
            tracing::warn!(
                configured = self.max_tenant_labels,
                in_effect = capacity,
                "metrics.max_tenant_labels is process-wide and was already set by an earlier \
                 stack (or an earlier label); keeping {capacity}"
            );
            return false;
        }
        true
    }
}

/// Registers the unit and description of every metric the tenancy crates record with the
/// installed recorder (exporters show them as `# HELP` lines). Optional.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    tenancy_resolution::telemetry::describe_metrics();
    tenancy_store_sql::telemetry::describe_metrics();
    tenancy_isolation_sql::telemetry::describe_metrics();
}
