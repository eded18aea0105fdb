//! What tenant-prefixed cache keys cost: a `get` through `TenantPrefixedCache` inside a tenant
//! scope, against the same `get` on the undecorated cache in the same scope (the baseline), and
//! through the decorator outside any scope (keys unchanged), and the undecorated cache with the key
//! prefixed by hand (what the decorator replaces).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tenancy::core::{CreateTenant, TenantContext, TenantInfo, context};
use tenancy::integration::{InMemoryCache, KeyValueCache, TenantPrefixedCache};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let info = TenantInfo::from_command(
        CreateTenant::new("acme".parse().unwrap(), "Acme"),
        chrono::Utc::now(),
    )
    .unwrap();
    let ctx = TenantContext::new(Arc::new(info), Arc::from("header"));
    let key = "profile:42";
    let prefixed_key = format!("t:{}:{key}", ctx.id());

    let plain = InMemoryCache::new();
    let by_hand = InMemoryCache::new();
    let decorated = TenantPrefixedCache::new(InMemoryCache::new(), true);
    runtime.block_on(async {
        plain.set(key, vec![1; 64], None).await.unwrap();
        by_hand.set(&prefixed_key, vec![1; 64], None).await.unwrap();
        decorated
            .inner()
            .set(&prefixed_key, vec![1; 64], None)
            .await
            .unwrap();
        decorated.inner().set(key, vec![1; 64], None).await.unwrap();
    });

    let mut group = c.benchmark_group("cache_prefix_get");
    group.bench_function("baseline: undecorated, in scope", |b| {
        b.to_async(&runtime).iter(|| {
            context::scope(ctx.clone(), async {
                black_box(plain.get(black_box(key)).await.unwrap())
            })
        });
    });
    group.bench_function(
        "undecorated, key prefixed by hand with format!, in scope",
        |b| {
            b.to_async(&runtime).iter(|| {
                context::scope(ctx.clone(), async {
                    let tenant = context::current_id().unwrap();
                    let key = format!("t:{tenant}:{}", black_box(key));
                    black_box(by_hand.get(&key).await.unwrap())
                })
            });
        },
    );
    group.bench_function("prefixed, in scope", |b| {
        b.to_async(&runtime).iter(|| {
            context::scope(ctx.clone(), async {
                black_box(decorated.get(black_box(key)).await.unwrap())
            })
        });
    });
    group.bench_function("decorated, no tenant (unchanged key)", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(decorated.get(black_box(key)).await.unwrap()) });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
