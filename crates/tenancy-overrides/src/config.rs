//! [`OverridesConfig`], the `overrides` section of the tenancy configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenancy_core::{JsonObject, TenantError};

use crate::rules::{DEFAULT_MAX_VALUE_BYTES, validate_key, validate_value};

/// The longest `cache_ttl` accepted: ten years (the cache refuses durations past 1000 years).
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Per-tenant configuration overrides (the `overrides` configuration section).
///
/// ```
/// use std::time::Duration;
/// use tenancy_overrides::OverridesConfig;
///
/// let config: OverridesConfig =
///     serde_json::from_str(r#"{"cache_ttl": "30s", "defaults": {"max_users": 50}}"#)?;
/// assert_eq!(config.cache_ttl, Duration::from_secs(30));
/// assert_eq!(config.max_value_bytes, 65536);
/// assert_eq!(config.defaults["max_users"], 50);
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverridesConfig {
    /// How long a tenant's whole configuration stays cached, as a human-readable duration
    /// (`90s`, `5m`; default `1m`, at least 1 second, at most [`MAX_CACHE_TTL`]: ten years).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How many tenants' configurations the cache holds at most (default 10 000, at least 1).
    pub cache_capacity: u64,
    /// The largest value, in bytes of serialized JSON (default 65 536).
    pub max_value_bytes: usize,
    /// Application defaults, used for keys a tenant does not override (default empty).
    pub defaults: JsonObject,
}

impl Default for OverridesConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            defaults: JsonObject::new(),
        }
    }
}

impl OverridesConfig {
    /// Checks what serde cannot: bounds, and that every default follows the key and value rules.
    /// The `tenancy` crate calls it once, when the configuration is loaded or a stack is built;
    /// the constructors that take this section do not check it again.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the setting.
    pub fn validate(&self) -> Result<(), TenantError> {
        if self.cache_ttl < Duration::from_secs(1) {
            return Err(TenantError::Configuration(
                "overrides.cache_ttl must be at least 1 second".to_owned(),
            ));
        }
        if self.cache_ttl > MAX_CACHE_TTL {
            return Err(TenantError::Configuration(format!(
                "overrides.cache_ttl is {}; at most {} (ten years) is allowed",
                humantime_serde::re::humantime::format_duration(self.cache_ttl),
                humantime_serde::re::humantime::format_duration(MAX_CACHE_TTL)
            )));
        }
        if self.cache_capacity == 0 {
            return Err(TenantError::Configuration(
                "overrides.cache_capacity must be at least 1".to_owned(),
            ));
        }
        if self.max_value_bytes == 0 {
            return Err(TenantError::Configuration(
                "overrides.max_value_bytes must be at least 1".to_owned(),
            ));
        }
        validate_defaults(&self.defaults, self.max_value_bytes)
    }
}

/// Checks every default against the key and value rules.
pub(crate) fn validate_defaults(
    defaults: &JsonObject,
    max_bytes: usize,
) -> Result<(), TenantError> {
    for (key, value) in defaults {
        validate_key(key)
            .and_then(|()| validate_value(key, value, max_bytes))
            .map_err(|e| TenantError::Configuration(format!("overrides.defaults: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_round_trip_and_bad_settings_are_refused() {
        let config: OverridesConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, OverridesConfig::default());
        assert_eq!(config.cache_ttl, Duration::from_secs(60));
        config.validate().unwrap();
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(value["cache_ttl"], "1m");
        assert_eq!(
            serde_json::from_value::<OverridesConfig>(value).unwrap(),
            config
        );

        let err = serde_json::from_str::<OverridesConfig>(r#"{"ttl": 5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
        let five_minutes: OverridesConfig = serde_json::from_str(r#"{"cache_ttl": "5m"}"#).unwrap();
        assert_eq!(five_minutes.cache_ttl, Duration::from_secs(300));
        // One convention: a bare number has no unit and is refused.
        assert!(serde_json::from_str::<OverridesConfig>(r#"{"cache_ttl": 60}"#).is_err());
        assert!(serde_json::from_str::<OverridesConfig>(r#"{"cache_ttl": "soon"}"#).is_err());

        for bad in [
            json!({"cache_ttl": "0s"}),
            json!({"cache_ttl": "500ms"}),
            json!({"cache_capacity": 0}),
            json!({"max_value_bytes": 0}),
            json!({"defaults": {"Bad Key": 1}}),
            json!({"defaults": {"null": null}}),
            json!({"max_value_bytes": 4, "defaults": {"big": "abcdef"}}),
            json!({"cache_ttl": "11years"}),
            json!({"cache_ttl": "500000years"}),
        ] {
            let config: OverridesConfig = serde_json::from_value(bad.clone()).unwrap();
            assert!(
                matches!(config.validate(), Err(TenantError::Configuration(_))),
                "{bad}"
            );
        }
    }
}
