//! [`LifecycleConfig`], the `lifecycle` section of the tenancy configuration.

use serde::{Deserialize, Serialize};
use tenancy_core::TenantError;

/// How tenants are provisioned and deprovisioned (the `lifecycle` configuration section).
///
/// ```
/// use tenancy_lifecycle::LifecycleConfig;
///
/// let config: LifecycleConfig = serde_json::from_str(r#"{"deprovision_on_deactivate": true}"#)?;
/// assert_eq!(config.isolation_strategy, "row_level");
/// assert!(config.auto_provision_isolation);
/// assert!(config.deprovision_on_deactivate);
/// assert!(serde_json::from_str::<LifecycleConfig>(r#"{"auto_provision": false}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// The registry name of the isolation strategy that provisions tenants (default `row_level`).
    /// The `tenancy` crate resolves it through its isolation registry.
    pub isolation_strategy: String,
    /// Whether the provisioner runs the strategy (default `true`); `false` makes provisioning and
    /// deprovisioning succeed without doing anything, for tests and for isolation managed elsewhere.
    pub auto_provision_isolation: bool,
    /// Whether deactivating a tenant deprovisions its isolation (default `false`).
    pub deprovision_on_deactivate: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            isolation_strategy: "row_level".to_owned(),
            auto_provision_isolation: true,
            deprovision_on_deactivate: false,
        }
    }
}

impl LifecycleConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `isolation_strategy` is empty.
    pub fn validate(&self) -> Result<(), TenantError> {
        if self.isolation_strategy.trim().is_empty() {
            return Err(TenantError::Configuration(
                "lifecycle.isolation_strategy must name an isolation strategy (such as row_level)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_original_and_unknown_fields_are_refused() {
        let config: LifecycleConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, LifecycleConfig::default());
        assert_eq!(config.isolation_strategy, "row_level");
        assert!(config.auto_provision_isolation);
        assert!(!config.deprovision_on_deactivate);
        config.validate().unwrap();

        let err = serde_json::from_str::<LifecycleConfig>(r#"{"isolation": "schema"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `isolation`"), "{err}");

        let blank = LifecycleConfig {
            isolation_strategy: " ".to_owned(),
            ..LifecycleConfig::default()
        };
        assert!(matches!(
            blank.validate(),
            Err(TenantError::Configuration(_))
        ));
    }
}
