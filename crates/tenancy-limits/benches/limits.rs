//! The limit layer's cost on the hit path: one request through a bare service, with and without
//! `TenantLimitLayer`, in the same run (a cached tenant, unlimited and limited).
//!
//! `cargo bench -p tenancy-limits --bench limits`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tenancy_core::{CreateTenant, TenantContext, TenantInfo};
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

criterion_group!(benches, bench);
criterion_main!(benches);
