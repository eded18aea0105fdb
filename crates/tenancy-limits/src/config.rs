//! [`LimitsConfig`] (the `limits` section) and [`Plan`], the limits a plan names.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;
use tenancy_core::TenantError;

/// The longest `statement_timeout` or `lock_timeout` PostgreSQL accepts (`i32::MAX` milliseconds).
pub const MAX_DATABASE_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// How many tenants' limiters are kept unless configured otherwise.
pub const DEFAULT_MAX_TENANTS: u64 = 10_000;

/// How long a tenant transaction waits for a free slot unless configured otherwise.
pub const DEFAULT_TRANSACTION_WAIT: Duration = Duration::from_secs(5);

/// The limits of one plan. Every field is optional: an absent one is unlimited.
///
/// ```
/// let plan: tenancy_limits::Plan = serde_json::from_value(serde_json::json!({
///     "requests_per_second": 10, "burst": 20, "max_in_flight": 8,
///     "statement_timeout": "5s", "lock_timeout": "1s", "max_transactions": 4,
/// }))?;
/// assert_eq!(plan.burst.map(|b| b.get()), Some(20));
/// assert_eq!(plan.statement_timeout, Some(std::time::Duration::from_secs(5)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Plan {
    /// Sustained request rate per tenant (a token bucket refilled at this rate).
    pub requests_per_second: Option<NonZeroU32>,
    /// How many requests a tenant may send at once after being idle (the bucket's size); the
    /// rate itself when absent. Needs `requests_per_second`.
    pub burst: Option<NonZeroU32>,
    /// Requests of the tenant being served at the same time.
    pub max_in_flight: Option<NonZeroU32>,
    /// PostgreSQL `statement_timeout` of the tenant's transactions (1 ms to ~24.8 days).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL `lock_timeout` of the tenant's transactions (1 ms to ~24.8 days).
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Option<Duration>,
    /// Transactions of the tenant open at the same time (the others wait, then fail).
    pub max_transactions: Option<NonZeroU32>,
}

impl Plan {
    /// A plan with no limit at all.
    #[must_use]
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Checks the plan's values; `name` is the key the error names.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the key: a burst without a rate, a timeout under
    /// 1 ms or beyond [`MAX_DATABASE_TIMEOUT`].
    pub fn validate(&self, name: &str) -> Result<(), TenantError> {
        if self.burst.is_some() && self.requests_per_second.is_none() {
            return Err(TenantError::Configuration(format!(
                "{name}.burst needs {name}.requests_per_second"
            )));
        }
        for (key, timeout) in [
            ("statement_timeout", self.statement_timeout),
            ("lock_timeout", self.lock_timeout),
        ] {
            if let Some(timeout) = timeout {
                check_database_timeout(timeout).map_err(|reason| {
                    TenantError::Configuration(format!("{name}.{key} {reason}"))
                })?;
            }
        }
        Ok(())
    }

    /// Whether the plan limits nothing.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self == &Self::default()
    }
}

/// Whether a PostgreSQL timeout is within 1 ms and [`MAX_DATABASE_TIMEOUT`].
pub(crate) fn check_database_timeout(timeout: Duration) -> Result<(), String> {
    if timeout < Duration::from_millis(1) {
        return Err(format!(
            "must be at least 1ms (0 would turn the timeout off), not {}",
            humantime::format_duration(timeout)
        ));
    }
    if timeout > MAX_DATABASE_TIMEOUT {
        return Err(format!(
            "must be at most {} (PostgreSQL's largest), not {}",
            humantime::format_duration(MAX_DATABASE_TIMEOUT),
            humantime::format_duration(timeout)
        ));
    }
    Ok(())
}

/// The `limits` section: the plans, the plan of tenants that name none, and the bounds of the
/// limiter's own state.
///
/// A tenant's plan is, in order: its configuration override `limits.plan`, the tenant's own
/// `plan` field when it names a configured plan, `default_plan`; with none of them, the tenant is
/// unlimited. Overrides `limits.<field>` then replace single fields of that plan for that tenant.
///
/// ```
/// let config: tenancy_limits::LimitsConfig = serde_json::from_value(serde_json::json!({
///     "default_plan": "free",
///     "plans": {
///         "free": { "requests_per_second": 10, "burst": 20, "max_in_flight": 8 },
///         "pro": { "requests_per_second": 200 },
///     },
/// }))?;
/// config.validate()?;
/// assert_eq!(config.plan("free").and_then(|p| p.max_in_flight).map(|n| n.get()), Some(8));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// The plan of a tenant that names none (absent: such tenants are unlimited).
    pub default_plan: Option<String>,
    /// The plans by name.
    pub plans: BTreeMap<String, Plan>,
    /// How many tenants' limiters are kept; past it, those idle since the last sweep are
    /// forgotten (and start afresh when they come back). At least 1.
    pub max_tenants: u64,
    /// How long a tenant transaction waits for one of its `max_transactions` slots before it
    /// fails.
    #[serde(with = "humantime_serde")]
    pub transaction_wait: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            default_plan: None,
            plans: BTreeMap::new(),
            max_tenants: DEFAULT_MAX_TENANTS,
            transaction_wait: DEFAULT_TRANSACTION_WAIT,
        }
    }
}

impl LimitsConfig {
    /// The plan named `name`.
    #[must_use]
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// Checks the section.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the key: a `default_plan` that names no plan, a plan
    /// name that is not 1 to 64 bytes of `a-z0-9_-`, a plan's own errors ([`Plan::validate`]),
    /// `max_tenants` 0, `transaction_wait` 0.
    pub fn validate(&self) -> Result<(), TenantError> {
        for (name, plan) in &self.plans {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(TenantError::Configuration(format!(
                    "plans: the plan name {name:?} must be 1 to 64 bytes of a-z, 0-9, _ and -"
                )));
            }
            plan.validate(&format!("plans.{name}"))?;
        }
        if let Some(default) = &self.default_plan
            && !self.plans.contains_key(default)
        {
            return Err(TenantError::Configuration(format!(
                "default_plan {default:?} names no plan under plans (known: {})",
                self.known_plans()
            )));
        }
        if self.max_tenants == 0 {
            return Err(TenantError::Configuration(
                "max_tenants must be at least 1".into(),
            ));
        }
        if self.transaction_wait.is_zero() {
            return Err(TenantError::Configuration(
                "transaction_wait must be more than 0".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn known_plans(&self) -> String {
        if self.plans.is_empty() {
            return "none".into();
        }
        self.plans
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: serde_json::Value) -> Result<LimitsConfig, String> {
        let config: LimitsConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn bad_sections_are_refused_with_the_key() {
        let cases = [
            (
                serde_json::json!({"default_plan": "gold"}),
                "default_plan \"gold\"",
            ),
            (
                serde_json::json!({"plans": {"free": {"burst": 3}}}),
                "plans.free.burst needs plans.free.requests_per_second",
            ),
            (
                serde_json::json!({"plans": {"free": {"statement_timeout": "0s"}}}),
                "plans.free.statement_timeout must be at least 1ms",
            ),
            (
                serde_json::json!({"plans": {"free": {"lock_timeout": "30days"}}}),
                "plans.free.lock_timeout must be at most",
            ),
            (
                serde_json::json!({"plans": {"Free": {}}}),
                "plan name \"Free\"",
            ),
            (
                serde_json::json!({"plans": {"free": {"requests_per_second": 0}}}),
                "nonzero",
            ),
            (
                serde_json::json!({"plans": {"free": {"rate": 3}}}),
                "unknown field `rate`",
            ),
            (serde_json::json!({"max_tenants": 0}), "max_tenants"),
        ];
        for (value, expected) in cases {
            let error = parse(value.clone()).expect_err(&value.to_string());
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(serde_json::json!({
            "default_plan": "free",
            "plans": {"free": {"requests_per_second": 5, "statement_timeout": "250ms"}, "unlimited": {}},
            "max_tenants": 100,
            "transaction_wait": "2s",
        }))
        .unwrap();
        assert_eq!(
            config.plan("free").unwrap().statement_timeout,
            Some(Duration::from_millis(250))
        );
        assert!(config.plan("unlimited").unwrap().is_unlimited());
        assert_eq!(config.transaction_wait, Duration::from_secs(2));
    }
}
