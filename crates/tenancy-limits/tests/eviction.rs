//! A tenant with traffic keeps its limiter state while thousands of others pass through a
//! limiter kept to 100 entries.

use tenancy_core::TenantId;
use tenancy_limits::{LimitsConfig, TenantLimits};

async fn pass(limits: &TenantLimits, tenants: usize) {
    for _ in 0..tenants {
        drop(
            limits
                .check(TenantId::new(), None)
                .await
                .expect("under its limits"),
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_tenant_keeps_its_limiter_while_thousands_pass() {
    let config: LimitsConfig = serde_json::from_value(serde_json::json!({
        "default_plan": "free",
        "plans": {"free": {"requests_per_second": 1000, "max_in_flight": 8}},
        "max_tenants": 100,
    }))
    .unwrap();
    let limits = TenantLimits::new(&config).unwrap();
    let busy = TenantId::new();
    let held = limits.check(busy, None).await.expect("under its limits");
    for round in 0..1_000 {
        pass(&limits, 10).await;
        // The busy tenant's requests between sweeps keep its entry, so its counters stay.
        drop(limits.check(busy, None).await.expect("under its limits"));
        let entry = limits.cached(busy).expect("a busy tenant is not forgotten");
        assert_eq!(
            entry.in_flight(),
            1,
            "round {round}: the held request counted"
        );
    }
    assert!(limits.entry_count() <= 100, "{}", limits.entry_count());
    drop(held);
    assert_eq!(limits.cached(busy).unwrap().in_flight(), 0);
}
