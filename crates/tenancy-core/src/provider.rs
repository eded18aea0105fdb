//! The provider trait that the `tenancy` bundle drives, and health types.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::TenantError;

/// How well a component works. Ordered from best to worst, so the aggregate is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Works.
    Healthy,
    /// Works, with reduced guarantees (a change feed reconnecting, say).
    Degraded,
    /// Does not work.
    Unhealthy,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        })
    }
}

/// The result of one health check: a status and details that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// What was checked and what was found (`"store" => "answered in 3 ms"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl Health {
    /// A healthy result without details.
    #[must_use]
    pub fn healthy() -> Self {
        Self {
            status: HealthStatus::Healthy,
            details: BTreeMap::new(),
        }
    }

    /// A degraded result, with the reason as detail `reason`.
    #[must_use]
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self::healthy()
            .with_status(HealthStatus::Degraded)
            .with_detail("reason", reason)
    }

    /// An unhealthy result, with the reason as detail `reason`.
    #[must_use]
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Self::healthy()
            .with_status(HealthStatus::Unhealthy)
            .with_detail("reason", reason)
    }

    /// Replaces the status.
    #[must_use]
    pub fn with_status(mut self, status: HealthStatus) -> Self {
        self.status = status;
        self
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// The health of several named components: the worst status, and each component's own report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The worst status of the components (healthy when there are none).
    pub status: HealthStatus,
    /// Each component's health, by name.
    pub components: BTreeMap<String, Health>,
}

impl HealthReport {
    /// Aggregates named results.
    #[must_use]
    pub fn from_components(components: impl IntoIterator<Item = (String, Health)>) -> Self {
        let components: BTreeMap<String, Health> = components.into_iter().collect();
        let status = components
            .values()
            .map(|h| h.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        Self { status, components }
    }
}

/// A component of the tenancy stack that the bundle boots, shuts down and checks.
///
/// The bundle calls `boot` on every provider in order and `shutdown` in reverse order; if a `boot`
/// fails, the providers already booted are shut down. A provider holds the typed parts it needs
/// (given when it is built), so it has nothing to look up at boot.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// A short, stable name (`resolution`, `lifecycle`, ...), used in health reports and errors.
    fn name(&self) -> &str;

    /// Starts whatever must run (background tasks, connections, boot-time checks).
    async fn boot(&self) -> Result<(), TenantError> {
        Ok(())
    }

    /// Stops what `boot` started. Called once, in reverse boot order.
    async fn shutdown(&self) -> Result<(), TenantError> {
        Ok(())
    }

    /// A real check of the provider's dependencies.
    async fn health(&self) -> Health;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_is_the_worst_status() {
        let report = HealthReport::from_components([
            ("a".to_owned(), Health::healthy()),
            ("b".to_owned(), Health::degraded("reconnecting")),
        ]);
        assert_eq!(report.status, HealthStatus::Degraded);
        let report = HealthReport::from_components([
            ("a".to_owned(), Health::unhealthy("store down")),
            ("b".to_owned(), Health::degraded("reconnecting")),
        ]);
        assert_eq!(report.status, HealthStatus::Unhealthy);
        assert_eq!(report.components["a"].details["reason"], "store down");
        assert_eq!(
            HealthReport::from_components([]).status,
            HealthStatus::Healthy
        );
    }
}
