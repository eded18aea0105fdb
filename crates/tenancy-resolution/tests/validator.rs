//! The validator cache against a counting wrapper around the real in-memory store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::CountingStore;
use tenancy_core::{
    CacheInvalidation, StatusChange, TenantError, TenantId, TenantRef, TenantStatus, TenantStore,
};
use tenancy_resolution::{TenantValidator, ValidatorConfig};

fn validator(store: &Arc<CountingStore>, config: &ValidatorConfig) -> TenantValidator {
    TenantValidator::new(store.clone(), config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_store_call() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    store.set_slow(true);
    let validator = validator(&store, &ValidatorConfig::default());
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let validator = validator.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                validator
                    .validate(TenantRef::Id(acme.id))
                    .await
                    .map(|t| t.id)
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), acme.id);
    }
    assert_eq!(store.lookups(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_ids_stays_within_capacity() {
    // A small capacity keeps the test quick; the flood is the full 100,000 distinct UUIDs.
    let store = CountingStore::new();
    let config = ValidatorConfig {
        cache_capacity: 1_000,
        ..ValidatorConfig::default()
    };
    let validator = validator(&store, &config);
    for _ in 0..100_000 {
        let err = validator
            .validate(TenantRef::Id(TenantId::new()))
            .await
            .unwrap_err();
        assert!(matches!(err, TenantError::NotFound { .. }));
    }
    assert!(
        validator.entry_count() <= validator.max_entries(),
        "{} entries for at most {}",
        validator.entry_count(),
        validator.max_entries()
    );
    assert!(validator.max_entries() < 2 * config.cache_capacity);
    assert_eq!(validator.capacity(), 1_000);
    assert_eq!(store.lookups(), 100_000);
}

#[tokio::test]
async fn the_capacity_counts_tenants_looked_up_by_id_and_by_slug() {
    // Each tenant is looked up by both its keys, pass after pass in the same order (the access
    // pattern that thrashes a cache that runs out of room): a capacity of 1,000 holds 950 tenants.
    let store = CountingStore::new();
    let config = ValidatorConfig {
        cache_capacity: 1_000,
        ..ValidatorConfig::default()
    };
    let validator = validator(&store, &config);
    let mut tenants = Vec::new();
    for i in 0..950 {
        let info = store.tenant(&format!("t{i}"), TenantStatus::Active).await;
        tenants.push((info.id, info.slug));
    }
    for (id, slug) in &tenants {
        validator.validate(TenantRef::Id(*id)).await.unwrap();
        validator.validate(TenantRef::Slug(*slug)).await.unwrap();
    }
    assert_eq!(
        store.lookups(),
        950,
        "one load per tenant: the slug comes with it"
    );
    for _ in 0..3 {
        for (id, slug) in &tenants {
            validator.validate(TenantRef::Id(*id)).await.unwrap();
            validator.validate(TenantRef::Slug(*slug)).await.unwrap();
        }
    }
    assert_eq!(
        store.lookups(),
        950,
        "a cache sized for the tenants missed on later passes"
    );
    assert_eq!(validator.entry_count(), 950);
}

#[tokio::test]
async fn only_active_tenants_pass_and_the_reason_is_kept() {
    let store = CountingStore::new();
    let validator = validator(&store, &ValidatorConfig::default());
    let active = store.tenant("active", TenantStatus::Active).await;
    let inactive = store.tenant("inactive", TenantStatus::Inactive).await;
    let suspended = store.tenant("suspended", TenantStatus::Suspended).await;
    let provisioning = store
        .tenant("provisioning", TenantStatus::Provisioning)
        .await;

    assert_eq!(
        validator
            .validate(TenantRef::Id(active.id))
            .await
            .unwrap()
            .id,
        active.id
    );
    let check = |err: TenantError, expected: &str| {
        assert!(
            err.to_string().contains(expected),
            "{err} should say {expected}"
        );
        assert!(!err.is_infrastructure());
    };
    check(
        validator
            .validate(TenantRef::Id(inactive.id))
            .await
            .unwrap_err(),
        "inactive",
    );
    check(
        validator
            .validate(TenantRef::Id(suspended.id))
            .await
            .unwrap_err(),
        "suspended: unpaid invoice",
    );
    check(
        validator
            .validate(TenantRef::Id(provisioning.id))
            .await
            .unwrap_err(),
        "provisioning",
    );
    check(
        validator
            .validate(TenantRef::Slug("nobody".parse().unwrap()))
            .await
            .unwrap_err(),
        "not found",
    );
    // `lookup` returns the tenant whatever its status.
    let looked = validator
        .lookup(TenantRef::Id(suspended.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(looked.status, TenantStatus::Suspended);
}

#[tokio::test]
async fn slug_and_id_share_entries_and_invalidation_drops_both() {
    let store = CountingStore::new();
    let validator = validator(&store, &ValidatorConfig::default());
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let by_slug = TenantRef::Slug(acme.slug);
    let by_id = TenantRef::Id(acme.id);

    validator.validate(by_slug).await.unwrap();
    validator.validate(by_id).await.unwrap();
    validator.validate(by_slug).await.unwrap();
    assert_eq!(
        store.lookups(),
        1,
        "loading by slug caches under the id too"
    );

    let change = StatusChange {
        from: TenantStatus::Active,
        to: TenantStatus::Suspended,
        reason: Some("abuse".into()),
    };
    store.set_status(acme.id, change).await.unwrap();
    assert!(validator.validate(by_slug).await.is_ok(), "still cached");
    validator.invalidate_tenant(acme.id).await;
    let err = validator.validate(by_slug).await.unwrap_err();
    assert!(matches!(err, TenantError::Suspended { .. }), "{err}");
    assert_eq!(store.lookups(), 2);
    let err = validator.validate(by_id).await.unwrap_err();
    assert!(matches!(err, TenantError::Suspended { .. }), "{err}");
    assert_eq!(
        store.lookups(),
        2,
        "the slug load cached the id entry again"
    );

    validator.invalidate_all().await;
    assert!(validator.validate(by_id).await.is_err());
    assert_eq!(store.lookups(), 3);
}

#[tokio::test]
async fn negative_entries_are_cached_and_invalidated_by_slug() {
    let store = CountingStore::new();
    let validator = validator(&store, &ValidatorConfig::default());
    let newco = TenantRef::Slug("newco".parse().unwrap());
    assert!(matches!(
        validator.validate(newco).await,
        Err(TenantError::NotFound { .. })
    ));
    assert!(validator.validate(newco).await.is_err());
    assert_eq!(store.lookups(), 1, "the miss is cached");

    store.tenant("newco", TenantStatus::Active).await;
    assert!(
        validator.validate(newco).await.is_err(),
        "negative entry still cached"
    );
    validator.invalidate_slug(&"newco".parse().unwrap()).await;
    assert!(validator.validate(newco).await.is_ok());
    assert_eq!(store.lookups(), 2);
}

#[tokio::test]
async fn negative_entries_expire_sooner_than_positive_ones() {
    let store = CountingStore::new();
    let config = ValidatorConfig {
        negative_ttl: Duration::from_secs(1),
        ..ValidatorConfig::default()
    };
    let validator = validator(&store, &config);
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let unknown = TenantRef::Id(TenantId::new());
    validator.validate(TenantRef::Id(acme.id)).await.unwrap();
    let _ = validator.validate(unknown).await;
    assert_eq!(store.lookups(), 2);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    validator.validate(TenantRef::Id(acme.id)).await.unwrap();
    assert_eq!(store.lookups(), 2, "positive entry still cached");
    let _ = validator.validate(unknown).await;
    assert_eq!(store.lookups(), 3, "negative entry expired");
}

#[tokio::test]
async fn store_failures_are_reported_as_such_and_not_cached() {
    let store = CountingStore::new();
    let validator = validator(&store, &ValidatorConfig::default());
    let acme = store.tenant("acme", TenantStatus::Active).await;
    store.set_failing(true);
    let err = validator
        .validate(TenantRef::Id(acme.id))
        .await
        .unwrap_err();
    assert!(err.is_infrastructure(), "{err}");
    assert!(matches!(err, TenantError::Storage { .. }));
    assert!(err.to_string().contains("loading tenant id:"), "{err}");
    store.set_failing(false);
    assert_eq!(
        validator.validate(TenantRef::Id(acme.id)).await.unwrap().id,
        acme.id
    );
    assert_eq!(store.lookups(), 2, "the failure was not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_failed_load() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    store.set_slow(true);
    store.set_failing(true);
    let validator = validator(&store, &ValidatorConfig::default());
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let validator = validator.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                validator.validate(TenantRef::Id(acme.id)).await
            })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, TenantError::Storage { .. }), "{err}");
        assert!(err.to_string().contains("loading tenant id:"), "{err}");
    }
    assert_eq!(
        store.lookups(),
        1,
        "the waiters did not call the failing store again"
    );
    store.set_failing(false);
    assert!(validator.validate(TenantRef::Id(acme.id)).await.is_ok());
    assert_eq!(store.lookups(), 2, "the failure was not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_load_keeps_the_old_answer_out_of_the_cache() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let validator = validator(&store, &ValidatorConfig::default());
    // The wrapper reads the tenant, then waits 20 ms before answering: the load in flight holds
    // the active tenant while it is suspended and invalidated.
    store.set_slow(true);
    let loading = tokio::spawn({
        let validator = validator.clone();
        async move { validator.validate(TenantRef::Id(acme.id)).await }
    });
    while store.lookups() == 0 {
        tokio::task::yield_now().await;
    }
    let change = StatusChange {
        from: TenantStatus::Active,
        to: TenantStatus::Suspended,
        reason: Some("abuse".into()),
    };
    store.set_status(acme.id, change).await.unwrap();
    validator.invalidate_tenant(acme.id).await;
    assert_eq!(
        loading.await.unwrap().unwrap().id,
        acme.id,
        "the request that started the load gets what it read"
    );
    store.set_slow(false);
    for key in [TenantRef::Id(acme.id), TenantRef::Slug(acme.slug)] {
        let err = validator.validate(key).await.unwrap_err();
        assert!(matches!(err, TenantError::Suspended { .. }), "{key}: {err}");
    }
    assert_eq!(
        store.lookups(),
        2,
        "the invalidated load cached nothing; one reload"
    );
}

#[test]
fn zero_capacity_is_a_configuration_error() {
    let config = ValidatorConfig {
        cache_capacity: 0,
        ..ValidatorConfig::default()
    };
    let err = TenantValidator::new(CountingStore::new(), &config).unwrap_err();
    assert!(matches!(err, TenantError::Configuration(m) if m.contains("cache_capacity")));
}
