//! [`Limits`]: a tenant's effective limits, its plan with its own overrides applied.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tenancy_core::{JsonObject, TenantId};

use crate::config::{LimitsConfig, Plan, check_database_timeout};

/// The configuration key naming a tenant's plan.
pub const PLAN_KEY: &str = "limits.plan";
/// The configuration key overriding a tenant's sustained request rate.
pub const REQUESTS_PER_SECOND_KEY: &str = "limits.requests_per_second";
/// The configuration key overriding a tenant's burst.
pub const BURST_KEY: &str = "limits.burst";
/// The configuration key overriding a tenant's requests in flight.
pub const MAX_IN_FLIGHT_KEY: &str = "limits.max_in_flight";
/// The configuration key overriding a tenant's statement timeout (`"5s"`, or milliseconds).
pub const STATEMENT_TIMEOUT_KEY: &str = "limits.statement_timeout";
/// The configuration key overriding a tenant's lock timeout (`"1s"`, or milliseconds).
pub const LOCK_TIMEOUT_KEY: &str = "limits.lock_timeout";
/// The configuration key overriding a tenant's concurrent transactions.
pub const MAX_TRANSACTIONS_KEY: &str = "limits.max_transactions";

/// The prefix of every configuration key this crate reads.
pub const KEY_PREFIX: &str = "limits.";

/// A tenant's effective limits: its plan's, with the tenant's overrides applied. `None`:
/// unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The plan they came from (`None`: no plan applies).
    pub plan: Option<Arc<str>>,
    /// The limits themselves.
    pub values: Plan,
}

impl Limits {
    /// Limits without a plan and without a limit.
    #[must_use]
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The limits of a tenant whose own `plan` field is `tenant_plan` and whose configuration
    /// (overrides over application defaults) is `config`, under `limits`.
    ///
    /// A value that cannot be read (an unknown plan, a rate of `"fast"`) is logged with the
    /// tenant's id and ignored: the plan's value stands.
    ///
    /// ```
    /// use tenancy_limits::{Limits, LimitsConfig};
    ///
    /// let limits: LimitsConfig = serde_json::from_value(serde_json::json!({
    ///     "default_plan": "free",
    ///     "plans": {"free": {"requests_per_second": 10}, "pro": {"requests_per_second": 100}},
    /// }))?;
    /// let overrides = serde_json::json!({"limits.plan": "pro", "limits.burst": 500});
    /// let resolved = Limits::resolve(&limits, tenancy_core::TenantId::new(), None, overrides.as_object().unwrap());
    /// assert_eq!(resolved.plan.as_deref(), Some("pro"));
    /// assert_eq!(resolved.values.requests_per_second.map(|n| n.get()), Some(100));
    /// assert_eq!(resolved.values.burst.map(|n| n.get()), Some(500));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn resolve(
        limits: &LimitsConfig,
        tenant: TenantId,
        tenant_plan: Option<&str>,
        config: &JsonObject,
    ) -> Self {
        let overridden = config.get(PLAN_KEY).and_then(|value| match value.as_str() {
            Some(name) if limits.plans.contains_key(name) => Some(name),
            _ => {
                tracing::warn!(tenant_id = %tenant, key = PLAN_KEY, value = %value, known = %limits.known_plans(), "the tenant's plan override names no configured plan; ignored");
                None
            }
        });
        let name = overridden
            .or_else(|| tenant_plan.filter(|name| limits.plans.contains_key(*name)))
            .or(limits.default_plan.as_deref());
        let mut values = name
            .and_then(|name| limits.plans.get(name))
            .cloned()
            .unwrap_or_default();
        override_count(
            config,
            tenant,
            REQUESTS_PER_SECOND_KEY,
            &mut values.requests_per_second,
        );
        override_count(config, tenant, BURST_KEY, &mut values.burst);
        override_count(config, tenant, MAX_IN_FLIGHT_KEY, &mut values.max_in_flight);
        override_count(
            config,
            tenant,
            MAX_TRANSACTIONS_KEY,
            &mut values.max_transactions,
        );
        override_timeout(
            config,
            tenant,
            STATEMENT_TIMEOUT_KEY,
            &mut values.statement_timeout,
        );
        override_timeout(config, tenant, LOCK_TIMEOUT_KEY, &mut values.lock_timeout);
        Self {
            plan: name.map(Arc::from),
            values,
        }
    }

    /// Whether nothing is limited.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self.values.is_unlimited()
    }
}

fn override_count(config: &JsonObject, tenant: TenantId, key: &str, slot: &mut Option<NonZeroU32>) {
    let Some(value) = config.get(key) else { return };
    match value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
    {
        Some(n) => *slot = Some(n),
        None => {
            tracing::warn!(tenant_id = %tenant, key, value = %value, "the tenant's limit override is not a whole number from 1 to 4294967295; ignored");
        }
    }
}

fn override_timeout(config: &JsonObject, tenant: TenantId, key: &str, slot: &mut Option<Duration>) {
    let Some(value) = config.get(key) else { return };
    let parsed = match value {
        Value::String(text) => humantime::parse_duration(text).map_err(|e| e.to_string()),
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| "a number must be whole milliseconds".to_owned()),
        _ => Err("must be a duration such as \"5s\" or whole milliseconds".to_owned()),
    }
    .and_then(|timeout| check_database_timeout(timeout).map(|()| timeout));
    match parsed {
        Ok(timeout) => *slot = Some(timeout),
        Err(reason) => {
            tracing::warn!(tenant_id = %tenant, key, value = %value, reason, "the tenant's timeout override is invalid; ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LimitsConfig {
        serde_json::from_value(serde_json::json!({
            "default_plan": "free",
            "plans": {
                "free": {"requests_per_second": 10, "max_in_flight": 2, "statement_timeout": "5s"},
                "pro": {"requests_per_second": 100},
                "open": {},
            },
        }))
        .unwrap()
    }

    fn resolve(tenant_plan: Option<&str>, overrides: &Value) -> Limits {
        Limits::resolve(
            &config(),
            TenantId::new(),
            tenant_plan,
            overrides.as_object().unwrap(),
        )
    }

    #[test]
    fn the_plan_comes_from_the_override_then_the_tenant_then_the_default() {
        assert_eq!(
            resolve(None, &serde_json::json!({})).plan.as_deref(),
            Some("free")
        );
        assert_eq!(
            resolve(Some("pro"), &serde_json::json!({})).plan.as_deref(),
            Some("pro")
        );
        assert_eq!(
            resolve(Some("gold"), &serde_json::json!({}))
                .plan
                .as_deref(),
            Some("free"),
            "a tenant plan that is not configured falls back to the default"
        );
        let open = resolve(Some("pro"), &serde_json::json!({"limits.plan": "open"}));
        assert_eq!(open.plan.as_deref(), Some("open"));
        assert!(open.is_unlimited());
        assert_eq!(
            resolve(Some("pro"), &serde_json::json!({"limits.plan": "nope"}))
                .plan
                .as_deref(),
            Some("pro"),
            "an unknown override is ignored"
        );
    }

    #[test]
    fn field_overrides_replace_the_plans_values_and_bad_ones_are_ignored() {
        let limits = resolve(
            None,
            &serde_json::json!({
                "limits.requests_per_second": 50,
                "limits.max_in_flight": 0,
                "limits.statement_timeout": "250ms",
                "limits.lock_timeout": 1500,
                "limits.max_transactions": "many",
            }),
        );
        let v = &limits.values;
        assert_eq!(v.requests_per_second.map(NonZeroU32::get), Some(50));
        assert_eq!(
            v.max_in_flight.map(NonZeroU32::get),
            Some(2),
            "0 is ignored"
        );
        assert_eq!(v.statement_timeout, Some(Duration::from_millis(250)));
        assert_eq!(v.lock_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(v.max_transactions, None);
        let zero = resolve(None, &serde_json::json!({"limits.statement_timeout": "0s"}));
        assert_eq!(zero.values.statement_timeout, Some(Duration::from_secs(5)));
    }
}
