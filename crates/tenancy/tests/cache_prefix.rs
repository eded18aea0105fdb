//! Tenant-prefixed cache keys under concurrent tenant scopes.

use std::sync::Arc;

use chrono::Utc;
use tenancy::IntegrationConfig;
use tenancy::core::{CreateTenant, TenantContext, TenantInfo, context};
use tenancy::integration::{InMemoryCache, KeyValueCache, TenantPrefixedCache};

fn tenant(slug: &str) -> TenantContext {
    let info = TenantInfo::from_command(CreateTenant::new(slug.parse().unwrap(), slug), Utc::now())
        .unwrap();
    TenantContext::new(Arc::new(info), Arc::from("header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tenants_never_share_an_entry() {
    let cache = Arc::new(TenantPrefixedCache::from_config(
        InMemoryCache::new(),
        &IntegrationConfig::default(),
    ));
    let mut tasks = Vec::new();
    let mut expected_keys = Vec::new();
    let tenants: Vec<TenantContext> = (0..50).map(|i| tenant(&format!("t{i}"))).collect();
    for (i, ctx) in tenants.iter().cloned().enumerate() {
        expected_keys.push(format!("t:{}:profile", ctx.id()));
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(context::scope(ctx, async move {
            let mine = format!("value {i}").into_bytes();
            cache.set("profile", mine.clone(), None).await.unwrap();
            for _ in 0..10 {
                tokio::task::yield_now().await;
                assert_eq!(cache.get("profile").await.unwrap(), Some(mine.clone()));
            }
        })));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Outside any tenant scope, the key is the plain key: nothing was stored under it.
    assert_eq!(cache.get("profile").await.unwrap(), None);
    cache
        .set("profile", b"global".to_vec(), None)
        .await
        .unwrap();
    expected_keys.push("profile".to_owned());
    expected_keys.sort();
    assert_eq!(cache.inner().keys(), expected_keys);

    // Delete within one tenant's scope removes that tenant's entry only.
    let one = tenants[0].clone();
    let key = format!("t:{}:profile", one.id());
    let deleted = context::scope(one, cache.delete("profile")).await.unwrap();
    assert!(deleted);
    assert!(!cache.inner().keys().contains(&key));
    assert_eq!(
        cache.get("profile").await.unwrap(),
        Some(b"global".to_vec())
    );
}

#[tokio::test]
async fn disabled_by_config_keys_pass_unchanged() {
    let cache =
        TenantPrefixedCache::from_config(InMemoryCache::new(), &IntegrationConfig::disabled());
    assert!(!cache.is_enabled());
    let acme = tenant("acme");
    context::scope(acme, async {
        assert_eq!(cache.scoped_key("k"), "k");
        cache.set("k", b"v".to_vec(), None).await.unwrap();
    })
    .await;
    assert_eq!(cache.inner().keys(), ["k"]);
    assert_eq!(cache.get("k").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let cache = InMemoryCache::new();
    cache
        .set("short", b"v".to_vec(), Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    cache.set("long", b"v".to_vec(), None).await.unwrap();
    assert_eq!(cache.get("short").await.unwrap(), None);
    assert!(!cache.delete("short").await.unwrap());
    assert_eq!(cache.keys(), ["long"]);
}

#[tokio::test]
async fn a_ttl_past_the_clocks_range_never_expires_instead_of_panicking() {
    let cache = InMemoryCache::new();
    cache
        .set("forever", b"v".to_vec(), Some(std::time::Duration::MAX))
        .await
        .unwrap();
    assert_eq!(cache.get("forever").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(cache.keys(), ["forever"]);
}

#[tokio::test]
async fn a_configured_stack_prefixes_and_the_stub_does_not() {
    // The default configuration has an untrusted header resolver under strict membership: it needs
    // a membership checker, so configure the resolvers the way a JWT-only service would.
    let error = tenancy::configure(tenancy::TenancyConfig::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("resolution.membership"),
        "{error}"
    );
    let mut config = tenancy::TenancyConfig::default();
    config.resolution.resolvers = Some(vec![tenancy::resolution::Builtin::JwtClaim]);
    let tenancy = tenancy::configure(config).await.unwrap();
    let cache = tenancy.prefixed_cache(InMemoryCache::new());
    assert!(cache.is_enabled());
    let acme = tenant("acme");
    let expected = format!("t:{}:k", acme.id());
    context::scope(acme, async {
        assert_eq!(cache.scoped_key("k"), expected);
    })
    .await;
    tenancy.shutdown().await.unwrap();

    let stub = tenancy::stub().await.unwrap();
    let cache = stub.prefixed_cache(InMemoryCache::new());
    context::scope(tenant("acme"), async {
        assert_eq!(cache.scoped_key("k"), "k");
    })
    .await;
    stub.shutdown().await.unwrap();
}
