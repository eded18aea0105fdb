//! The `metrics` section: the label capacity is set by the first stack built in the process (a
//! test binary of its own, since the capacity is process-wide).

use figment::Figment;
use figment::providers::{Format, Yaml};
use tenancy::core::TenantLabels;
use tenancy::{ConfigError, StackBuilder, TenancyConfig};

fn config(yaml: &str) -> Result<TenancyConfig, ConfigError> {
    TenancyConfig::from_figment(&Figment::from(Yaml::string(yaml)))
}

#[tokio::test]
async fn the_first_stack_sets_the_process_wide_label_capacity() {
    let mut first = TenancyConfig::stub();
    first.metrics = config("tenancy:\n  metrics:\n    max_tenant_labels: 3\n")
        .unwrap()
        .metrics;
    let one = StackBuilder::new(first).build().await.unwrap();
    assert_eq!(TenantLabels::global().capacity(), 3);

    let mut second = TenancyConfig::stub();
    second.metrics.max_tenant_labels = 7;
    let two = StackBuilder::new(second).build().await.unwrap();
    assert_eq!(TenantLabels::global().capacity(), 3, "first stack wins");
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[test]
fn unknown_and_malformed_metrics_keys_are_refused_by_name() {
    let err = config("tenancy:\n  metrics:\n    max_labels: 3\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "tenancy.metrics.max_labels"),
        "{err}"
    );
    let err = config("tenancy:\n  metrics:\n    max_tenant_labels: -1\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "tenancy.metrics.max_tenant_labels"),
        "{err}"
    );
}
