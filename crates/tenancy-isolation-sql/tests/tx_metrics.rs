//! Tenant transactions' metrics (feature `metrics`) on the throwaway PostgreSQL server: outcomes
//! and durations by tenant. One test in a binary of its own, with a process-wide debugging
//! recorder.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::TestDb;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sqlx::postgres::PgPoolOptions;
use tenancy_core::{TenantId, TenantLabels};
use tenancy_isolation_sql::{RowLevelStrategy, TenantDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_transactions_are_counted_by_tenant_and_outcome_and_timed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let db = TestDb::new("txm").await;
    let tenants = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()));
    let (a, b) = (TenantId::new(), TenantId::new());

    for _ in 0..3 {
        tenants.begin(a).await.unwrap().commit().await.unwrap();
    }
    tenants.begin(a).await.unwrap().rollback().await.unwrap();
    // Dropped without commit: rolled back.
    drop(tenants.begin(b).await.unwrap());
    tenants.begin(b).await.unwrap().commit().await.unwrap();
    // Taken over by the caller: not counted.
    let inner = tenants.begin(b).await.unwrap().into_inner();
    inner.commit().await.unwrap();

    // A database that does not exist: BEGIN fails.
    let missing = PgPoolOptions::new().max_connections(1).connect_lazy_with(
        common::app_options(&tenancy_core::conformance::test_database_url())
            .database("tiso_missing_database"),
    );
    let nowhere = TenantDatabase::new(missing, Arc::new(RowLevelStrategy::default()));
    assert!(nowhere.begin(b).await.is_err());

    let labels = TenantLabels::global();
    let (a, b) = (labels.label(a).to_string(), labels.label(b).to_string());
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    let mut durations: HashMap<String, usize> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        match (key.name(), value) {
            ("tenancy_tenant_transactions_total", DebugValue::Counter(n)) => {
                counts.insert((label("tenant"), label("outcome")), n);
            }
            ("tenancy_tenant_transaction_duration_seconds", DebugValue::Histogram(samples)) => {
                durations.insert(label("tenant"), samples.len());
            }
            _ => {}
        }
    }
    let expected: HashMap<(String, String), u64> = [
        ((a.clone(), "committed".to_owned()), 3),
        ((a.clone(), "rolled_back".to_owned()), 1),
        ((b.clone(), "committed".to_owned()), 1),
        ((b.clone(), "rolled_back".to_owned()), 1),
        ((b.clone(), "failed_to_begin".to_owned()), 1),
    ]
    .into();
    assert_eq!(counts, expected);
    // Every transaction that began and ended here is timed; a failed BEGIN is not.
    assert_eq!(durations, [(a, 4), (b, 2)].into());
    db.drop().await;
}
