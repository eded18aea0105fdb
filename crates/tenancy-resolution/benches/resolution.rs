//! Criterion bench `resolution`, each part against a baseline measured in the same run:
//!
//! 1. header resolve + validator cache hit, and the same through the `domain` resolver (host
//!    normalised, domain cache, id cache), against parsing the UUID and a
//!    `HashMap<TenantId, Arc<TenantInfo>>` lookup (with feature `metrics`, also the hit counted
//!    into a Prometheus recorder);
//! 2. a request through an axum `Router` with the tenancy middleware and guard (two layers), and
//!    with the single `ResolveTenantLayer::require_tenant` layer, against the same router without them
//!    (in-process `oneshot`), with no-op layers placed the same way as controls;
//! 3. heap allocations per cached request, counted with a counting global allocator (printed
//!    before the timings).
//!
//! Before the criterion timings it also prints, for each router stack, the median ratio of its
//! request time to the baseline router's over interleaved batches, which a loaded machine
//! distorts less than ratios of separately timed criterion lines.

#[path = "../tests/common/mod.rs"]
mod common;

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
    DomainResolver, HeaderResolver, RequireTenantLayer, Resolution, ResolutionConfig,
    ResolutionContext, ResolveTenant, ResolveTenantLayer, TenantResolver, TenantValidator,
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
    /// The same store through a validator whose metrics go to a Prometheus recorder (feature
    /// `metrics`): `validator` registered its counters with no recorder installed.
    #[cfg(feature = "metrics")]
    recorded: TenantValidator,
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
        let domain = "acme.com".parse().unwrap();
        store.add_domain(tenant.id, &domain, true).await.unwrap();
        // The header is set by a trusted gateway in this setup: no membership check.
        let config = ResolutionConfig {
            trusted_resolvers: Some(vec!["jwt_claim".into(), "header".into(), "path".into()]),
            ..ResolutionConfig::default()
        };
        #[cfg(feature = "metrics")]
        let recorded = {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let recorded = metrics::with_local_recorder(&recorder, || {
                TenantValidator::new(store.clone(), &config.validator).unwrap()
            });
            recorded.validate(TenantRef::Id(tenant.id)).await.unwrap();
            recorded
        };
        let validator = TenantValidator::new(store, &config.validator).unwrap();
        validator.validate(TenantRef::Id(tenant.id)).await.unwrap();
        validator.lookup_domain(&domain).await.unwrap();
        Fixture {
            tenant,
            validator,
            #[cfg(feature = "metrics")]
            recorded,
            config,
        }
    })
}

/// A service under test: an axum `Router`, or the tenancy layer wrapped around one.
#[derive(Clone)]
enum Stack {
    Router(Router),
    Around(ResolveTenant<Router>),
}

impl Stack {
    async fn call(&self, request: Request<Body>) -> http::Response<Body> {
        let response = match self {
            Self::Router(router) => router.clone().oneshot(request).await,
            Self::Around(service) => service.clone().oneshot(request).await,
        };
        response.unwrap()
    }
}

/// The router without tenancy; the same with one and two no-op layers placed like ours (what
/// axum's layering costs by itself); the same with the tenancy middleware and guard; with the
/// single layer that does both; and with that layer wrapped around the router (no axum layering).
fn stacks(fixture: &Fixture) -> [(&'static str, Stack); 6] {
    let handler = || async { "ok" };
    let router = || Router::new().route("/whoami", get(handler));
    let layer = || ResolveTenantLayer::new(&fixture.config, fixture.validator.clone()).unwrap();
    [
        ("baseline_router", Stack::Router(router())),
        (
            "baseline_router_one_noop_layer",
            Stack::Router(router().layer(Identity::new())),
        ),
        (
            "baseline_router_two_noop_layers",
            Stack::Router(router().route_layer(Identity::new()).layer(Identity::new())),
        ),
        (
            "tenancy_and_guard",
            Stack::Router(
                router()
                    .route_layer(RequireTenantLayer::new())
                    .layer(layer()),
            ),
        ),
        (
            "tenancy_require_tenant_one_layer",
            Stack::Router(router().layer(layer().require_tenant())),
        ),
        (
            "tenancy_require_tenant_around_router",
            Stack::Around(tower::Layer::layer(&layer().require_tenant(), router())),
        ),
    ]
}

/// Median over interleaved rounds of (time of one `subject` batch) / (time of one `baseline`
/// batch): load from other processes weighs on both sides of every ratio.
fn paired_ratio(mut baseline: impl FnMut(), mut subject: impl FnMut()) -> f64 {
    const ROUNDS: usize = 301;
    let time = |batch: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        batch();
        start.elapsed().as_secs_f64()
    };
    time(&mut baseline);
    time(&mut subject);
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let base = time(&mut baseline);
            time(&mut subject) / base
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

fn report_ratios(rt: &tokio::runtime::Runtime, fixture: &Fixture) {
    let lookup = Lookup::new(fixture);
    let ratio = paired_ratio(
        || {
            for _ in 0..1_000 {
                black_box(lookup.baseline());
            }
        },
        || {
            for _ in 0..1_000 {
                black_box(lookup.tenancy(&fixture.validator));
            }
        },
    );
    println!(
        "paired ratio to baseline_parse_uuid_hashmap, tenancy_header_resolver_validator_hit: {ratio:.3}"
    );
    let header_to_domain = paired_ratio(
        || {
            for _ in 0..1_000 {
                black_box(lookup.tenancy(&fixture.validator));
            }
        },
        || {
            for _ in 0..1_000 {
                black_box(lookup.domain(&fixture.validator));
            }
        },
    );
    println!(
        "paired ratio to tenancy_header_resolver_validator_hit, \
         tenancy_domain_resolver_validator_hit: {header_to_domain:.3}"
    );
    #[cfg(feature = "metrics")]
    {
        let recorded = paired_ratio(
            || {
                for _ in 0..1_000 {
                    black_box(lookup.tenancy(&fixture.validator));
                }
            },
            || {
                for _ in 0..1_000 {
                    black_box(lookup.tenancy(&fixture.recorded));
                }
            },
        );
        println!(
            "paired ratio to tenancy_header_resolver_validator_hit, \
             tenancy_header_resolver_validator_hit_prometheus_recorder: {recorded:.3}"
        );
    }
    let id = fixture.tenant.id.to_string();
    let stacks = stacks(fixture);
    let (_, baseline) = &stacks[0];
    let batch = |stack: &Stack| {
        rt.block_on(async {
            for _ in 0..200 {
                black_box(stack.call(request(&id)).await);
            }
        });
    };
    for (name, stack) in &stacks[1..] {
        let ratio = paired_ratio(|| batch(baseline), || batch(stack));
        println!("paired ratio to baseline_router, {name}: {ratio:.3}");
    }
    // Feature `metrics`: the request-level metrics (requests by tenant and outcome, the latency
    // histogram) counted into a Prometheus recorder, against the same layer counting into none.
    #[cfg(feature = "metrics")]
    {
        let (_, around) = &stacks[5];
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let ratio = paired_ratio(
            || batch(around),
            || metrics::with_local_recorder(&recorder, || batch(around)),
        );
        println!(
            "paired ratio to tenancy_require_tenant_around_router, the same with its request \
             metrics counted into a Prometheus recorder: {ratio:.3}"
        );
    }
}

/// Part (1): the baseline lookup and the tenancy one, over the same request parts.
struct Lookup {
    parts: http::request::Parts,
    map: HashMap<TenantId, Arc<TenantInfo>>,
    resolver: HeaderResolver,
    /// A request for `acme.com` (browsers send the host lower case).
    host_parts: http::request::Parts,
    domain: DomainResolver,
}

impl Lookup {
    fn new(fixture: &Fixture) -> Self {
        Self {
            parts: request(&fixture.tenant.id.to_string()).into_parts().0,
            map: [(fixture.tenant.id, Arc::new(fixture.tenant.clone()))].into(),
            resolver: HeaderResolver::from_config(&fixture.config).unwrap(),
            host_parts: Request::builder()
                .uri("/whoami")
                .header("host", "acme.com")
                .body(())
                .unwrap()
                .into_parts()
                .0,
            domain: DomainResolver::new(fixture.validator.clone(), 35),
        }
    }

    /// The domain resolver (a cache hit, answered synchronously), then the validator.
    fn domain(&self, validator: &TenantValidator) -> Arc<TenantInfo> {
        let cx = ResolutionContext::from_parts(black_box(&self.host_parts));
        let Resolution::Found(tenant) = self.domain.resolve(&cx) else {
            unreachable!()
        };
        validator.validate(tenant).now_or_never().unwrap().unwrap()
    }

    /// Parse the UUID from the header, look it up in a `HashMap`, clone the `Arc`.
    fn baseline(&self) -> Option<Arc<TenantInfo>> {
        let value = black_box(&self.parts).headers.get("x-tenant-id")?;
        let id = TenantId::try_from(value.as_bytes().trim_ascii()).ok()?;
        self.map.get(&id).cloned()
    }

    /// The header resolver, then the validator (a cache hit, polled once).
    fn tenancy(&self, validator: &TenantValidator) -> Arc<TenantInfo> {
        let cx = ResolutionContext::from_parts(black_box(&self.parts));
        let Resolution::Found(tenant) = self.resolver.resolve(&cx) else {
            unreachable!()
        };
        validator.validate(tenant).now_or_never().unwrap().unwrap()
    }
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
    let lookup = Lookup::new(fixture);
    let resolve_validate = allocations_per_run(10_000, || {
        black_box(lookup.tenancy(&fixture.validator));
    });
    println!("allocations per header resolve + validator hit: {resolve_validate:.2}");
    for (name, stack) in stacks(fixture) {
        let allocations = allocations_per_run(10_000, || {
            rt.block_on(async {
                let response = stack.call(request(&id)).await;
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
    let tenancy = ResolveTenantLayer::new(&fixture.config, fixture.validator.clone()).unwrap();
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
    let lookup = Lookup::new(fixture);
    let mut group = c.benchmark_group("header_resolve_validate");
    group.bench_function("baseline_parse_uuid_hashmap", |b| {
        b.iter(|| black_box(lookup.baseline()));
    });
    group.bench_function("tenancy_header_resolver_validator_hit", |b| {
        b.iter(|| black_box(lookup.tenancy(&fixture.validator)));
    });
    // Feature `metrics`: the hit counted into a Prometheus recorder (the line above then counts
    // into no recorder).
    #[cfg(feature = "metrics")]
    group.bench_function(
        "tenancy_header_resolver_validator_hit_prometheus_recorder",
        |b| {
            b.iter(|| black_box(lookup.tenancy(&fixture.recorded)));
        },
    );
    group.bench_function("tenancy_domain_resolver_validator_hit", |b| {
        b.iter(|| black_box(lookup.domain(&fixture.validator)));
    });
    // References: one read of a bare cache (no expiry policy) of each candidate, and the clock
    // read `std::time::Instant::now` would add (the validator reads the coarse clock instead).
    let moka: moka::future::Cache<TenantRef, Arc<TenantInfo>> =
        moka::future::Cache::builder().max_capacity(100_000).build();
    let key = TenantRef::Id(fixture.tenant.id);
    moka.insert(key, Arc::new(fixture.tenant.clone()))
        .now_or_never()
        .unwrap();
    group.bench_function("reference_moka_future_get", |b| {
        b.iter(|| black_box(moka.get(black_box(&key)).now_or_never()));
    });
    let moka_sync: moka::sync::Cache<TenantRef, Arc<TenantInfo>> =
        moka::sync::Cache::builder().max_capacity(100_000).build();
    moka_sync.insert(key, Arc::new(fixture.tenant.clone()));
    group.bench_function("reference_moka_sync_get", |b| {
        b.iter(|| black_box(moka_sync.get(black_box(&key))));
    });
    let quick: quick_cache::sync::Cache<TenantRef, Arc<TenantInfo>> =
        quick_cache::sync::Cache::new(100_000);
    quick.insert(key, Arc::new(fixture.tenant.clone()));
    group.bench_function("reference_quick_cache_get", |b| {
        b.iter(|| black_box(quick.get(black_box(&key))));
    });
    group.bench_function("reference_instant_now", |b| {
        b.iter(|| black_box(std::time::Instant::now()));
    });
    group.bench_function("reference_coarse_clock_now", |b| {
        b.iter(|| black_box(coarsetime::Instant::now_without_cache_update()));
    });
    group.finish();
}

fn bench_router(c: &mut Criterion, rt: &tokio::runtime::Runtime, fixture: &Fixture) {
    let id = fixture.tenant.id.to_string();
    let mut group = c.benchmark_group("axum_router_request");
    let stacks = stacks(fixture);
    for (name, stack) in &stacks {
        group.bench_function(*name, |b| {
            b.to_async(rt)
                .iter(|| async { black_box(stack.call(request(&id)).await) });
        });
    }
    // Feature `metrics`: the last stack with its request metrics counted into a Prometheus
    // recorder (local to this thread, so set around each request on the current-thread runtime).
    #[cfg(feature = "metrics")]
    {
        let (_, around) = &stacks[5];
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        group.bench_function(
            "tenancy_require_tenant_around_router_prometheus_recorder",
            |b| {
                b.iter(|| {
                    metrics::with_local_recorder(&recorder, || {
                        black_box(rt.block_on(around.call(request(&id))))
                    })
                });
            },
        );
    }
    group.finish();
}

/// 100,000 active tenants through a validator of the default capacity (100,000), each looked up
/// by id and by slug, in uniform passes: the share of lookups that miss once every tenant was
/// seen. A capacity that counted entries rather than tenants missed about half of them.
fn report_capacity(rt: &tokio::runtime::Runtime) {
    const TENANTS: usize = 100_000;
    rt.block_on(async {
        let store = common::CountingStore::new();
        let mut keys = Vec::with_capacity(TENANTS);
        for i in 0..TENANTS {
            let tenant = store.tenant(&format!("t{i}"), TenantStatus::Active).await;
            keys.push((tenant.id, tenant.slug));
        }
        let validator =
            TenantValidator::new(store.clone(), &ResolutionConfig::default().validator).unwrap();
        for pass in 0..3 {
            let before = store.lookups();
            for (id, slug) in &keys {
                validator.validate(TenantRef::Id(*id)).await.unwrap();
                validator.validate(TenantRef::Slug(*slug)).await.unwrap();
            }
            let misses = store.lookups() - before;
            println!(
                "validator capacity: pass {pass} over {TENANTS} tenants by id and slug: {misses} \
                 store loads for {} lookups ({:.2}% misses), {} tenants cached",
                2 * TENANTS,
                misses as f64 * 100.0 / (2 * TENANTS) as f64,
                validator.entry_count()
            );
        }
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = fixture(&rt);
    report_capacity(&rt);
    report_allocations(&rt, &fixture);
    report_ratios(&rt, &fixture);
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    bench_resolve_validate(&mut criterion, &fixture);
    bench_router(&mut criterion, &rt, &fixture);
    criterion.final_summary();
}
