//! Criterion bench `resolution`, each part against a baseline measured in the same run:
//!
//! 1. header resolve + validator cache hit, against parsing the UUID and a
//!    `HashMap<TenantId, Arc<TenantInfo>>` lookup;
//! 2. a request through an axum `Router` with the tenancy middleware and guard, against the same
//!    router without them (in-process `oneshot`);
//! 3. heap allocations per cached request, counted with a counting global allocator (printed
//!    before the timings).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::Criterion;
use futures_util::FutureExt as _;
use http::Request;
use tenancy_core::{
    CreateTenant, InMemoryStore, StatusChange, TenantId, TenantInfo, TenantRef, TenantStatus,
    TenantStore,
};
use tenancy_resolution::{
    HeaderResolver, Resolution, ResolutionConfig, ResolutionContext, TenancyLayer,
    TenantGuardLayer, TenantResolver, TenantValidator,
};
use tower::ServiceExt as _;
use tower::layer::util::Identity;
use tower::service_fn;

/// Counts every allocation and reallocation, then defers to the system allocator.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

struct Fixture {
    tenant: TenantInfo,
    validator: TenantValidator,
    config: ResolutionConfig,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    rt.block_on(async {
        let store = Arc::new(InMemoryStore::new());
        let tenant = TenantInfo::from_command(
            CreateTenant::new("acme".parse().unwrap(), "Acme"),
            chrono::Utc::now(),
        )
        .unwrap();
        let tenant = store.create(tenant).await.unwrap();
        let change = StatusChange {
            from: TenantStatus::Provisioning,
            to: TenantStatus::Active,
            reason: None,
        };
        let tenant = store.set_status(tenant.id, change).await.unwrap();
        // The header is set by a trusted gateway in this setup: no membership check.
        let config = ResolutionConfig {
            trusted_resolvers: vec!["jwt_claim".into(), "header".into(), "path".into()],
            ..ResolutionConfig::default()
        };
        let validator = TenantValidator::new(store, &config.validator).unwrap();
        validator.validate(TenantRef::Id(tenant.id)).await.unwrap();
        Fixture {
            tenant,
            validator,
            config,
        }
    })
}

/// The router without tenancy; the same with two no-op layers placed like ours (what axum's
/// layering costs by itself); the same with the tenancy middleware and guard.
fn routers(fixture: &Fixture) -> [(&'static str, Router); 3] {
    let handler = || async { "ok" };
    let plain = Router::new().route("/whoami", get(handler));
    let noop = Router::new()
        .route("/whoami", get(handler))
        .route_layer(Identity::new())
        .layer(Identity::new());
    let tenancy = Router::new()
        .route("/whoami", get(handler))
        .route_layer(TenantGuardLayer::new())
        .layer(TenancyLayer::new(&fixture.config, fixture.validator.clone()).unwrap());
    [
        ("baseline_router", plain),
        ("baseline_router_two_noop_layers", noop),
        ("tenancy_and_guard", tenancy),
    ]
}

fn request(id: &str) -> Request<Body> {
    Request::builder()
        .uri("/whoami")
        .header("x-tenant-id", id)
        .body(Body::empty())
        .unwrap()
}

/// Average allocations of `f` over `n` runs (after a warm-up run).
fn allocations_per_run(n: u64, mut f: impl FnMut()) -> f64 {
    f();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        f();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn report_allocations(rt: &tokio::runtime::Runtime, fixture: &Fixture) {
    let id = fixture.tenant.id.to_string();
    let resolver = HeaderResolver::from_config(&fixture.config).unwrap();
    let headers = request(&id).into_parts().0;
    let resolve_validate = allocations_per_run(10_000, || {
        let cx = ResolutionContext::from_parts(&headers);
        let Resolution::Found(tenant) = resolver.resolve(&cx) else {
            unreachable!()
        };
        let info = fixture
            .validator
            .validate(tenant)
            .now_or_never()
            .unwrap()
            .unwrap();
        black_box(info);
    });
    println!("allocations per header resolve + validator hit: {resolve_validate:.2}");
    for (name, router) in routers(fixture) {
        let allocations = allocations_per_run(10_000, || {
            rt.block_on(async {
                let response = router.clone().oneshot(request(&id)).await.unwrap();
                assert!(response.status().is_success());
                black_box(response);
            });
        });
        println!("allocations per request, {name}: {allocations:.2}");
    }
    // The middleware alone, around a bare tower service.
    let handler = service_fn(|request: Request<Body>| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(
            request.extensions().len().to_string(),
        )))
    });
    let tenancy = TenancyLayer::new(&fixture.config, fixture.validator.clone()).unwrap();
    let bare = allocations_per_run(10_000, || {
        rt.block_on(async { black_box(handler.oneshot(request(&id)).await.unwrap()) });
    });
    let layered = tower::Layer::layer(&tenancy, handler);
    let with_tenancy = allocations_per_run(10_000, || {
        rt.block_on(async { black_box(layered.clone().oneshot(request(&id)).await.unwrap()) });
    });
    println!("allocations per request, bare tower service: {bare:.2}");
    println!("allocations per request, bare tower service + tenancy: {with_tenancy:.2}");
}

fn bench_resolve_validate(c: &mut Criterion, fixture: &Fixture) {
    let id = fixture.tenant.id.to_string();
    let parts = request(&id).into_parts().0;
    let map: HashMap<TenantId, Arc<TenantInfo>> =
        [(fixture.tenant.id, Arc::new(fixture.tenant.clone()))].into();
    let resolver = HeaderResolver::from_config(&fixture.config).unwrap();

    let mut group = c.benchmark_group("header_resolve_validate");
    group.bench_function("baseline_parse_uuid_hashmap", |b| {
        b.iter(|| {
            let value = black_box(&parts).headers.get("x-tenant-id").unwrap();
            let id = TenantId::try_from(value.as_bytes().trim_ascii()).unwrap();
            black_box(map.get(&id).cloned())
        });
    });
    group.bench_function("tenancy_header_resolver_validator_hit", |b| {
        b.iter(|| {
            let cx = ResolutionContext::from_parts(black_box(&parts));
            let Resolution::Found(tenant) = resolver.resolve(&cx) else {
                unreachable!()
            };
            black_box(
                fixture
                    .validator
                    .validate(tenant)
                    .now_or_never()
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    // Reference: one read of a bare moka future cache (no expiry policy), the floor of any
    // moka-backed validator.
    let moka: moka::future::Cache<TenantRef, Arc<TenantInfo>> =
        moka::future::Cache::builder().max_capacity(100_000).build();
    let key = TenantRef::Id(fixture.tenant.id);
    moka.insert(key, Arc::new(fixture.tenant.clone()))
        .now_or_never()
        .unwrap();
    group.bench_function("reference_moka_get", |b| {
        b.iter(|| black_box(moka.get(black_box(&key)).now_or_never()));
    });
    group.finish();
}

fn bench_router(c: &mut Criterion, rt: &tokio::runtime::Runtime, fixture: &Fixture) {
    let id = fixture.tenant.id.to_string();
    let mut group = c.benchmark_group("axum_router_request");
    for (name, router) in &routers(fixture) {
        group.bench_function(*name, |b| {
            b.to_async(rt).iter(|| async {
                let response = router.clone().oneshot(request(&id)).await.unwrap();
                black_box(response)
            });
        });
    }
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = fixture(&rt);
    report_allocations(&rt, &fixture);
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    bench_resolve_validate(&mut criterion, &fixture);
    bench_router(&mut criterion, &rt, &fixture);
    criterion.final_summary();
}
