//! The change feed's metrics (feature `metrics`) on the throwaway PostgreSQL server: notices,
//! their lag, reconnects. One test in a binary of its own, with a process-wide debugging recorder.

mod common;

use std::time::Duration;

use common::{Stack, TestDb};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tenancy_core::conformance::new_tenant;
use tenancy_core::{HealthStatus, StatusChange, TenantId, TenantStatus, TenantStore};

/// Polls `condition` every 20 ms, at most `seconds`; panics with `what` when it never holds.
async fn eventually<F, Fut>(seconds: u64, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..seconds * 50 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within {seconds} s");
}

/// What was recorded since the last snapshot (a snapshot drains the debugging recorder): notices,
/// reconnects, lag samples.
fn snapshot(snapshotter: &Snapshotter) -> (u64, u64, Vec<f64>) {
    let (mut notices, mut reconnects, mut lag) = (0, 0, Vec::new());
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        match (key.key().name(), value) {
            ("tenancy_change_feed_notices_total", DebugValue::Counter(n)) => notices = n,
            ("tenancy_change_feed_reconnects_total", DebugValue::Counter(n)) => reconnects = n,
            ("tenancy_change_feed_lag_seconds", DebugValue::Histogram(samples)) => {
                lag = samples.into_iter().map(|s| s.into_inner()).collect();
            }
            _ => {}
        }
    }
    (notices, reconnects, lag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_counts_notices_measures_their_lag_and_counts_reconnects() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let db = TestDb::new().await;
    let writer = Stack::new(&db, false).await;
    let reader = Stack::new(&db, true).await;
    let tenant = writer.store.create(new_tenant("measured")).await.unwrap();
    writer
        .store
        .set_status(
            tenant.id,
            StatusChange {
                from: TenantStatus::Provisioning,
                to: TenantStatus::Active,
                reason: None,
            },
        )
        .await
        .unwrap();
    eventually(5, "the feed applying both notices", || async {
        reader.feed().notices() == 2
    })
    .await;
    let (notices, reconnects, lag) = snapshot(&snapshotter);
    assert_eq!(notices, 2);
    assert_eq!(reconnects, 0);
    assert_eq!(lag.len(), 2, "each notice carries when it was sent");
    assert!(lag.iter().all(|s| *s >= 0.0), "{lag:?}");

    // A notice without `sent_at` (a sender of an older version) counts, with no lag.
    let pool = db.pool(1).await;
    sqlx::query("SELECT pg_notify('tenancy_changes', $1)")
        .bind(format!(
            r#"{{"tenant_id":"{}","kind":"status"}}"#,
            TenantId::new()
        ))
        .execute(&pool)
        .await
        .unwrap();
    eventually(5, "the feed applying the old notice", || async {
        reader.feed().notices() == 3
    })
    .await;
    let (notices, _, lag) = snapshot(&snapshotter);
    assert_eq!(notices, 1);
    assert!(lag.is_empty(), "{lag:?}");

    // Losing the listening connection: one reconnect.
    assert_eq!(db.terminate(&reader.application_name).await, 1);
    eventually(10, "the feed reconnecting", || async {
        reader.feed().reconnects() == 1 && reader.feed().health().status == HealthStatus::Healthy
    })
    .await;
    let (_, reconnects, _) = snapshot(&snapshotter);
    assert_eq!(reconnects, 1);

    pool.close().await;
    drop((writer, reader));
    db.drop_db().await;
}
