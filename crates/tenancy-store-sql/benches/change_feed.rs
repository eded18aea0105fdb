//! Propagation latency of the change feed: from a status change committed through one stack to
//! the invalidation of the other stack's cache, on the throwaway PostgreSQL server.
//!
//! Baseline, measured in the same run: a bare `SELECT pg_notify(...)` on one connection to its
//! receipt by a bare `PgListener` on another, i.e. what PostgreSQL itself costs.
//!
//! Run with `cargo xtask bench`, or
//! `cargo bench -p tenancy-store-sql --all-features --bench change_feed` with the
//! `TENANCY_TEST_DATABASE_URL` of a running server exported.

#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::TestDb;
use sqlx::postgres::PgListener;
use tenancy_core::conformance::new_tenant;
use tenancy_core::{
    CacheInvalidation, Invalidators, StatusChange, TenantId, TenantStatus, TenantStore,
};
use tenancy_store_sql::{ChangeFeed, FeedSettings};
use tokio::sync::mpsc;

const CHANGES: usize = 1_000;
const WARMUP: usize = 50;

/// Reports the instant each tenant invalidation arrives.
#[derive(Debug)]
struct Probe(mpsc::UnboundedSender<(TenantId, Instant)>);

#[async_trait]
impl CacheInvalidation for Probe {
    async fn invalidate_tenant(&self, tenant: TenantId) {
        let _ = self.0.send((tenant, Instant::now()));
    }

    async fn invalidate_all(&self) {}
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn baseline(db: &TestDb) -> Vec<Duration> {
    let sender = db.pool(1).await;
    let mut listener = PgListener::connect_with(&db.pool(1).await).await.unwrap();
    listener.listen("bench_baseline").await.unwrap();
    let mut samples = Vec::with_capacity(CHANGES);
    for i in 0..WARMUP + CHANGES {
        let start = Instant::now();
        sqlx::query("SELECT pg_notify('bench_baseline', $1)")
            .bind(i.to_string())
            .execute(&sender)
            .await
            .unwrap();
        let notification = listener.recv().await.unwrap();
        assert_eq!(notification.payload(), i.to_string());
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    samples
}

async fn feed(db: &TestDb) -> (Vec<Duration>, Vec<Duration>) {
    // Stack one: the store that changes tenants. Stack two: its own pool, feed and caches.
    let one = db.store().await;
    let two = db.store().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let invalidators = Invalidators::new();
    invalidators.register(Arc::new(Probe(tx)));
    let feed = ChangeFeed::start(
        (*two.pool().connect_options()).clone(),
        FeedSettings::new("tenancy_changes"),
        invalidators,
    )
    .await
    .unwrap();

    let tenant = one.create(new_tenant("bench")).await.unwrap();
    let mut status = TenantStatus::Provisioning;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {}

    let (mut propagation, mut mutation) =
        (Vec::with_capacity(CHANGES), Vec::with_capacity(CHANGES));
    for i in 0..WARMUP + CHANGES {
        let to = if status == TenantStatus::Active {
            TenantStatus::Suspended
        } else {
            TenantStatus::Active
        };
        let change = StatusChange {
            from: status,
            to,
            reason: None,
        };
        let start = Instant::now();
        one.set_status(tenant.id, change).await.unwrap();
        let committed = start.elapsed();
        let (id, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the invalidation arrives within 5 s")
            .unwrap();
        assert_eq!(id, tenant.id);
        status = to;
        if i >= WARMUP {
            propagation.push(at - start);
            mutation.push(committed);
        }
    }
    feed.shutdown().await;
    (propagation, mutation)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = TestDb::new().await;
        let base = stats(baseline(&db).await);
        let (propagation, mutation) = feed(&db).await;
        let (full, mutation) = (stats(propagation), stats(mutation));
        db.drop_db().await;

        println!(
            "change_feed: {CHANGES} status changes, stack one -> PostgreSQL -> stack two's caches"
        );
        println!(
            "  baseline  bare pg_notify -> PgListener:        p50 {}  p99 {}  max {}",
            ms(base.p50),
            ms(base.p99),
            ms(base.max)
        );
        println!(
            "  mutation  set_status (begin..commit):           p50 {}  p99 {}  max {}",
            ms(mutation.p50),
            ms(mutation.p99),
            ms(mutation.max)
        );
        println!(
            "  feed      set_status start -> invalidation:     p50 {}  p99 {}  max {}",
            ms(full.p50),
            ms(full.p99),
            ms(full.max)
        );
        println!(
            "  ratio to baseline: p50 {:.1}x  p99 {:.1}x; target p99 < 100 ms: {}",
            full.p50.as_secs_f64() / base.p50.as_secs_f64(),
            full.p99.as_secs_f64() / base.p99.as_secs_f64(),
            if full.p99 < Duration::from_millis(100) {
                "met"
            } else {
                "NOT met"
            }
        );
    });
}
