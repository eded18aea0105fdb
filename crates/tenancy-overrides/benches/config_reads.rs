//! Reading a tenant's configuration: the in-memory store read directly (baseline: no cache, no
//! I/O, one lock) and a bare moka lookup (the floor of any hit) against the cached store on a hit
//! and the config service on top of it.
//!
//! `cargo bench -p tenancy-overrides --bench config_reads`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tenancy_core::{ConfigStore, CreateTenant, InMemoryStore, TenantInfo, TenantStore};
use tenancy_overrides::{CachedConfigStore, ConfigService, OverridesConfig};

fn config_reads(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(InMemoryStore::new());
    let tenant = rt.block_on(async {
        let info = TenantInfo::from_command(
            CreateTenant::new("bench".parse().expect("slug"), "Bench"),
            chrono::Utc::now(),
        )
        .expect("tenant");
        let id = store.create(info).await.expect("create").id;
        for i in 0..20 {
            store
                .set_config(id, &format!("key_{i}"), json!(i))
                .await
                .expect("override");
        }
        id
    });
    let config: OverridesConfig =
        serde_json::from_value(json!({"defaults": {"max_users": 50}})).expect("config");
    let cached = Arc::new(CachedConfigStore::from_config(store.clone(), &config).expect("cache"));
    let service = ConfigService::from_config(cached.clone(), &config);
    rt.block_on(cached.get_config(tenant, "key_10"))
        .expect("warm");

    let mut group = c.benchmark_group("config_reads");
    group.bench_function("baseline_in_memory_store_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(store.get_config(tenant, "key_10").await) });
    });
    // The floor of any hit: a bare moka future cache lookup of the same unit.
    let raw: moka::future::Cache<tenancy_core::TenantId, Arc<tenancy_core::JsonObject>> =
        moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(Duration::from_secs(60))
            .build();
    let unit = Arc::new(rt.block_on(store.get_all_config(tenant)).expect("unit"));
    rt.block_on(raw.insert(tenant, unit));
    group.bench_function("moka_get_floor", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                raw.get(&tenant)
                    .await
                    .and_then(|u| u.get("key_10").cloned()),
            )
        });
    });
    group.bench_function("cached_store_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached.get_config(tenant, "key_10").await) });
    });
    group.bench_function("service_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(service.get(tenant, "key_10").await) });
    });
    group.bench_function("service_get_default_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(service.get_as::<u32>(tenant, "max_users").await) });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = config_reads
}
criterion_main!(benches);
