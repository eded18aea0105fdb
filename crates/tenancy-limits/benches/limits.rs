//! The limit layer's cost on the hit path: one request through a bare service, with and without
//! `TenantLimitLayer`, in the same run (a cached tenant, unlimited and limited); and the entry
//! lookup alone (`TenantLimits::cached`) against a `quick_cache` read of the same kind of value,
//! on one thread and on two threads each reading its own tenant.
//!
//! `cargo bench -p tenancy-limits --bench limits`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tenancy_core::{CreateTenant, TenantContext, TenantId, TenantInfo};
use tenancy_limits::{LimitsConfig, TenantLimitLayer, TenantLimits};
use tenancy_resolution::ResolvedTenant;
use tower::{Layer, Service, ServiceExt, service_fn};

fn request(tenant: &ResolvedTenant) -> Request<String> {
    let mut request = Request::new(String::new());
    request.extensions_mut().insert(tenant.clone());
    request
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let info = |plan: &str| {
        let command = CreateTenant::new("acme".parse().unwrap(), "Acme").with_plan(plan);
        Arc::new(TenantInfo::from_command(command, chrono::Utc::now()).unwrap())
    };
    let resolved = |plan| ResolvedTenant::new(TenantContext::new(info(plan), Arc::from("header")));
    let (open, limited) = (resolved("open"), resolved("busy"));
    let config: LimitsConfig = serde_json::from_value(serde_json::json!({
        "plans": {"open": {}, "busy": {"requests_per_second": 4000000, "max_in_flight": 1000}},
    }))
    .unwrap();
    let limits = TenantLimits::new(&config).unwrap();
    let inner = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let layered = TenantLimitLayer::new(limits).layer(inner);

    let mut group = c.benchmark_group("limit_layer");
    group.bench_function("no_layer", |b| {
        b.iter(|| {
            runtime
                .block_on(inner.oneshot(black_box(request(&open))))
                .unwrap()
        });
    });
    group.bench_function("layer_unlimited_tenant", |b| {
        b.iter(|| {
            runtime
                .block_on(layered.clone().oneshot(black_box(request(&open))))
                .unwrap()
        });
    });
    group.bench_function("layer_limited_tenant", |b| {
        b.iter(|| {
            let mut service = layered.clone();
            runtime.block_on(async {
                service.ready().await.unwrap();
                service.call(black_box(request(&limited))).await.unwrap()
            })
        });
    });
    group.finish();
}

/// One thread per tenant, each looking its own tenant up `iters` times in `lookup`: the wall time
/// of the slowest.
fn parallel(tenants: &[TenantId], iters: u64, lookup: &(impl Fn(TenantId) + Sync)) -> Duration {
    let barrier = std::sync::Barrier::new(tenants.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = tenants
            .iter()
            .map(|&tenant| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    for _ in 0..iters {
                        lookup(black_box(tenant));
                    }
                    started.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn bench_lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config: LimitsConfig =
        serde_json::from_value(serde_json::json!({"plans": {"open": {}}})).unwrap();
    let limits = TenantLimits::new(&config).unwrap();
    let reference: quick_cache::sync::Cache<TenantId, Arc<tenancy_limits::TenantEntry>> =
        quick_cache::sync::Cache::new(100_000);
    let mut tenants = Vec::new();
    for _ in 0..1_000 {
        let tenant = TenantId::new();
        let entry = runtime.block_on(limits.load(tenant, Some("open")));
        reference.insert(tenant, entry);
        tenants.push(tenant);
    }
    let limits_lookup = |tenant: TenantId| {
        black_box(limits.cached(tenant));
    };
    let reference_lookup = |tenant: TenantId| {
        black_box(reference.get(&tenant));
    };
    let mut group = c.benchmark_group("limit_entry_lookup");
    group.bench_function("tenancy_limits_cached", |b| {
        b.iter(|| black_box(limits.cached(black_box(tenants[7]))));
    });
    group.bench_function("reference_quick_cache_get", |b| {
        b.iter(|| black_box(reference.get(&black_box(tenants[7]))));
    });
    group.bench_function("tenancy_limits_cached_two_threads", |b| {
        b.iter_custom(|iters| parallel(&tenants[..2], iters, &limits_lookup));
    });
    group.bench_function("reference_quick_cache_get_two_threads", |b| {
        b.iter_custom(|iters| parallel(&tenants[..2], iters, &reference_lookup));
    });
    group.finish();
}

criterion_group!(benches, bench, bench_lookup);
criterion_main!(benches);
