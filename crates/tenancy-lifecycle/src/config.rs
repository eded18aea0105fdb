//! [`LifecycleConfig`], the `lifecycle` section of the tenancy configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How tenants are provisioned and deprovisioned (the `lifecycle` configuration section).
///
/// The strategy that provisions tenants is not set here: it is the one strategy of the stack,
/// `isolation.strategy`, which the `tenancy` crate hands to the lifecycle. Every value serde
/// accepts is valid, so the section has no further checks.
///
/// ```
/// use tenancy_lifecycle::LifecycleConfig;
///
/// let config: LifecycleConfig = serde_json::from_str(r#"{"deprovision_on_deactivate": true}"#)?;
/// assert!(config.auto_provision_isolation);
/// assert!(config.deprovision_on_deactivate);
/// assert!(serde_json::from_str::<LifecycleConfig>(r#"{"auto_provision": false}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Whether the provisioner runs the strategy (default `true`); `false` makes provisioning and
    /// deprovisioning succeed without doing anything, for tests and for isolation managed elsewhere.
    pub auto_provision_isolation: bool,
    /// Whether deactivating a tenant deprovisions its isolation (default `false`).
    pub deprovision_on_deactivate: bool,
    /// At start-up, finish the provisioning of tenants left `provisioning` for longer than this
    /// (a crash between a create and its activation); default `5m`, `null` to skip the sweep.
    #[serde(with = "humantime_serde")]
    pub recover_after: Option<Duration>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            auto_provision_isolation: true,
            deprovision_on_deactivate: false,
            recover_after: Some(Duration::from_secs(300)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_provision_and_keep_data_and_unknown_fields_are_refused() {
        let config: LifecycleConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, LifecycleConfig::default());
        assert!(config.auto_provision_isolation);
        assert!(!config.deprovision_on_deactivate);

        // The strategy is `isolation.strategy`: this section does not name one.
        for unknown in ["isolation", "isolation_strategy"] {
            let err =
                serde_json::from_str::<LifecycleConfig>(&format!(r#"{{"{unknown}": "schema"}}"#))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(&format!("unknown field `{unknown}`")), "{err}");
        }
    }
}
