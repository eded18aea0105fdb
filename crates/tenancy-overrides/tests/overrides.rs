//! The cached config store and the config service over the in-memory store, observed through a
//! counting wrapper.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tenancy_core::{
    BoxError, CacheInvalidation, ConfigStore, CreateTenant, EventPublisher, InMemoryStore,
    JsonObject, TenantError, TenantEvent, TenantEventKind, TenantId, TenantInfo, TenantStore,
};
use tenancy_overrides::{CachedConfigStore, ConfigService, OverridesConfig};
use tokio::sync::{Notify, Semaphore};

/// The in-memory store, counting calls; loads can be held at a gate or made to fail.
#[derive(Debug)]
struct CountingStore {
    inner: InMemoryStore,
    loads: AtomicUsize,
    key_reads: AtomicUsize,
    writes: AtomicUsize,
    fail_loads: AtomicBool,
    gated: AtomicBool,
    entered: Notify,
    release: Semaphore,
}

impl CountingStore {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: InMemoryStore::new(),
            loads: AtomicUsize::new(0),
            key_reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            fail_loads: AtomicBool::new(false),
            gated: AtomicBool::new(false),
            entered: Notify::new(),
            release: Semaphore::new(0),
        })
    }

    async fn tenant(&self, slug: &str) -> TenantId {
        let tenant = TenantInfo::from_command(
            CreateTenant::new(slug.parse().unwrap(), "Tenant"),
            chrono::Utc::now(),
        )
        .unwrap();
        self.inner.create(tenant).await.unwrap().id
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ConfigStore for CountingStore {
    async fn get_config(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        self.key_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_config(tenant, key).await
    }

    async fn get_all_config(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err(TenantError::storage(
                "loading config",
                std::io::Error::other("connection reset"),
            ));
        }
        let config = self.inner.get_all_config(tenant).await?;
        if self.gated.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.acquire().await.unwrap().forget();
        }
        Ok(config)
    }

    async fn set_config(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, TenantError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.set_config(tenant, key, value).await
    }

    async fn remove_config(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Value>, TenantError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.remove_config(tenant, key).await
    }
}

/// Records events; fails every publish while `failing` is set.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<TenantEvent>>,
    failing: AtomicBool,
}

impl Recorder {
    fn taken(&self) -> Vec<TenantEventKind> {
        std::mem::take(&mut *self.events.lock().unwrap())
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
}

#[async_trait]
impl EventPublisher for Recorder {
    async fn publish(&self, event: &TenantEvent) -> Result<(), BoxError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("broker unreachable".into());
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

struct Setup {
    store: Arc<CountingStore>,
    cached: Arc<CachedConfigStore<CountingStore>>,
    recorder: Arc<Recorder>,
    service: ConfigService,
    tenant: TenantId,
}

async fn setup(defaults: Value) -> Setup {
    let store = CountingStore::new();
    let tenant = store.tenant("acme").await;
    let config: OverridesConfig = serde_json::from_value(json!({ "defaults": defaults })).unwrap();
    let cached = Arc::new(CachedConfigStore::from_config(store.clone(), &config).unwrap());
    let recorder = Arc::new(Recorder::default());
    let service =
        ConfigService::from_config(cached.clone(), &config).with_publisher(recorder.clone());
    Setup {
        store,
        cached,
        recorder,
        service,
        tenant,
    }
}

fn changed(key: &str, old: Option<Value>, new: Option<Value>) -> TenantEventKind {
    TenantEventKind::ConfigChanged {
        key: key.to_owned(),
        old,
        new,
    }
}

#[tokio::test]
async fn an_override_wins_over_the_default_which_wins_over_nothing() {
    let s = setup(json!({"max_users": 50, "theme": "light"})).await;
    assert_eq!(
        s.service.get(s.tenant, "max_users").await.unwrap(),
        Some(json!(50))
    );
    assert_eq!(s.service.get(s.tenant, "unset").await.unwrap(), None);

    s.service
        .set(s.tenant, "max_users", json!(500))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    s.service
        .set(s.tenant, "beta", json!(true))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        s.service.get(s.tenant, "max_users").await.unwrap(),
        Some(json!(500))
    );
    assert_eq!(
        s.service.get(s.tenant, "theme").await.unwrap(),
        Some(json!("light"))
    );

    let effective = s.service.effective(s.tenant).await.unwrap();
    assert_eq!(
        Value::Object(effective),
        json!({"max_users": 500, "theme": "light", "beta": true})
    );

    // Another tenant sees the defaults only.
    let other = s.store.tenant("other").await;
    assert_eq!(
        s.service.get(other, "max_users").await.unwrap(),
        Some(json!(50))
    );
    assert_eq!(
        Value::Object(s.service.effective(other).await.unwrap()),
        json!({"max_users": 50, "theme": "light"})
    );

    s.service
        .remove(s.tenant, "max_users")
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        s.service.get(s.tenant, "max_users").await.unwrap(),
        Some(json!(50)),
        "default again"
    );
}

#[tokio::test]
async fn typed_gets_read_values_and_name_a_wrong_shape() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct Limits {
        users: u32,
        projects: u32,
    }
    let s = setup(json!({"max_users": 50})).await;
    assert_eq!(
        s.service
            .get_as::<u32>(s.tenant, "max_users")
            .await
            .unwrap(),
        Some(50)
    );
    assert_eq!(
        s.service.get_as::<u32>(s.tenant, "absent").await.unwrap(),
        None
    );
    s.service
        .set(s.tenant, "limits", json!({"users": 5, "projects": 2}))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        s.service
            .get_as::<Limits>(s.tenant, "limits")
            .await
            .unwrap(),
        Some(Limits {
            users: 5,
            projects: 2
        })
    );

    s.service
        .set(s.tenant, "max_users", json!("lots"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    match s.service.get_as::<u32>(s.tenant, "max_users").await {
        Err(TenantError::Configuration(message)) => {
            assert!(message.contains("\"max_users\""), "{message}");
            assert!(message.contains(&s.tenant.to_string()), "{message}");
            assert!(message.contains("u32"), "{message}");
            assert!(
                message.contains("invalid type: string \"lots\""),
                "{message}"
            );
        }
        other => panic!("a wrong shape must be a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn changes_publish_old_and_new_values() {
    let s = setup(json!({})).await;
    let first = s
        .service
        .set(s.tenant, "theme", json!("dark"))
        .await
        .unwrap();
    assert!(first.changed);
    assert_eq!((first.old, first.new), (None, Some(json!("dark"))));
    s.service
        .set(s.tenant, "theme", json!("blue"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let same = s
        .service
        .set(s.tenant, "theme", json!("blue"))
        .await
        .unwrap();
    assert!(!same.changed, "setting the same value changes nothing");
    s.service
        .remove(s.tenant, "theme")
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let absent = s.service.remove(s.tenant, "theme").await.unwrap();
    assert!(!absent.changed);
    assert_eq!(absent.old, None);
    assert_eq!(
        s.recorder.taken(),
        [
            changed("theme", None, Some(json!("dark"))),
            changed("theme", Some(json!("dark")), Some(json!("blue"))),
            changed("theme", Some(json!("blue")), None),
        ]
    );
}

#[tokio::test]
async fn a_cache_hit_makes_no_store_call_and_a_write_invalidates() {
    let s = setup(json!({"max_users": 50})).await;
    s.store
        .inner
        .set_config(s.tenant, "theme", json!("dark"))
        .await
        .unwrap();

    assert_eq!(
        s.service.get(s.tenant, "theme").await.unwrap(),
        Some(json!("dark"))
    );
    assert_eq!(s.store.loads(), 1);
    for _ in 0..10 {
        assert_eq!(
            s.service.get(s.tenant, "theme").await.unwrap(),
            Some(json!("dark"))
        );
        assert_eq!(
            s.service.get(s.tenant, "max_users").await.unwrap(),
            Some(json!(50))
        );
        s.service.effective(s.tenant).await.unwrap();
    }
    assert_eq!(
        s.store.loads(),
        1,
        "every read after the first is a cache hit"
    );
    assert_eq!(
        s.store.key_reads.load(Ordering::SeqCst),
        0,
        "keys are served from the unit"
    );
    assert!(s.cached.is_cached(s.tenant));

    s.service
        .set(s.tenant, "theme", json!("light"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(!s.cached.is_cached(s.tenant), "a write drops the unit");
    assert_eq!(
        s.service.get(s.tenant, "theme").await.unwrap(),
        Some(json!("light"))
    );
    assert_eq!(s.store.loads(), 2);

    s.service
        .remove(s.tenant, "theme")
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(s.service.get(s.tenant, "theme").await.unwrap(), None);
    assert_eq!(s.store.loads(), 3);

    // Invalidation from elsewhere (a change feed, the lifecycle).
    s.cached.invalidate_tenant(s.tenant).await;
    assert!(!s.cached.is_cached(s.tenant));
    s.service.get(s.tenant, "theme").await.unwrap();
    s.cached.invalidate_all().await;
    s.service.get(s.tenant, "theme").await.unwrap();
    assert_eq!(s.store.loads(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_coalesce_into_one_load() {
    let s = setup(json!({})).await;
    s.store
        .inner
        .set_config(s.tenant, "theme", json!("dark"))
        .await
        .unwrap();
    s.store.gated.store(true, Ordering::SeqCst);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let service = s.service.clone();
            let tenant = s.tenant;
            tokio::spawn(async move { service.get(tenant, "theme").await })
        })
        .collect();
    // The first load has read the store and waits at the gate; every other reader either joins
    // it or, after the release, hits the cached unit.
    s.store.entered.notified().await;
    s.store.release.add_permits(1000);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Some(json!("dark")));
    }
    assert_eq!(s.store.loads(), 1);
}

/// A read of `theme` in a task of its own.
fn read_theme(s: &Setup) -> tokio::task::JoinHandle<Result<Option<Value>, TenantError>> {
    let (service, tenant) = (s.service.clone(), s.tenant);
    tokio::spawn(async move { service.get(tenant, "theme").await })
}

/// `theme` stored as "old"; a read whose load has read it and is held at the gate; then a write of
/// "new", acknowledged. Returns the held read (release the gate to let it finish).
async fn write_during_a_held_load(
    s: &Setup,
) -> tokio::task::JoinHandle<Result<Option<Value>, TenantError>> {
    s.store
        .inner
        .set_config(s.tenant, "theme", json!("old"))
        .await
        .unwrap();
    s.store.gated.store(true, Ordering::SeqCst);
    let held = read_theme(s);
    s.store.entered.notified().await;
    s.service
        .set(s.tenant, "theme", json!("new"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_load_leaves_no_stale_unit() {
    let s = setup(json!({})).await;
    // The write lands while the load is held, and drops the (not yet cached) unit.
    let reader = write_during_a_held_load(&s).await;
    s.store.release.add_permits(1000);
    assert_eq!(
        reader.await.unwrap().unwrap(),
        Some(json!("old")),
        "read before the write"
    );
    assert_eq!(
        s.service.get(s.tenant, "theme").await.unwrap(),
        Some(json!("new")),
        "the unit loaded before the write was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_an_acknowledged_write_never_joins_an_older_load() {
    let s = setup(json!({})).await;
    // A load that read "old" is in flight when the write is acknowledged.
    let early = write_during_a_held_load(&s).await;
    // A read that starts now may find that load in flight; it must not take its value.
    let late = read_theme(&s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.store.release.add_permits(1000);
    assert_eq!(early.await.unwrap().unwrap(), Some(json!("old")));
    assert_eq!(
        late.await.unwrap().unwrap(),
        Some(json!("new")),
        "a read issued after the write's acknowledgement returned the value before it"
    );
}

#[tokio::test]
async fn invalid_keys_and_values_store_nothing() {
    let s = setup(json!({})).await;
    let too_big = json!("x".repeat(65_536));
    let cases = [
        ("", json!(1)),
        ("Max_Users", json!(1)),
        ("max users", json!(1)),
        ("a/b", json!(1)),
        (&*"k".repeat(129), json!(1)),
        ("big", too_big),
        ("nothing", Value::Null),
    ];
    for (key, value) in cases {
        match s.service.set(s.tenant, key, value).await {
            Err(TenantError::Configuration(message)) => {
                assert!(message.contains("config key"), "{message}");
            }
            other => panic!("{key:?} must be refused, got {other:?}"),
        }
    }
    assert_eq!(
        s.store.writes.load(Ordering::SeqCst),
        0,
        "nothing reached the store"
    );
    assert!(
        s.store
            .inner
            .get_all_config(s.tenant)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.recorder.taken().is_empty());
    assert!(matches!(
        s.service.get(s.tenant, "Bad Key").await,
        Err(TenantError::Configuration(_))
    ));
    assert!(matches!(
        s.service.remove(s.tenant, "").await,
        Err(TenantError::Configuration(_))
    ));

    // The largest value allowed: 65 536 bytes of JSON (65 534 characters and two quotes).
    let largest = json!("x".repeat(65_534));
    s.service
        .set(s.tenant, "big", largest.clone())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(s.service.get(s.tenant, "big").await.unwrap(), Some(largest));

    let bad_defaults = ConfigService::new(
        s.cached.clone(),
        json!({"Bad": 1}).as_object().unwrap().clone(),
    );
    assert!(matches!(bad_defaults, Err(TenantError::Configuration(_))));
}

#[tokio::test]
async fn unknown_tenants_and_store_failures() {
    let s = setup(json!({"max_users": 50})).await;
    let unknown = TenantId::new();
    assert_eq!(
        s.service.get(unknown, "max_users").await.unwrap(),
        Some(json!(50))
    );
    assert!(matches!(
        s.service.set(unknown, "max_users", json!(1)).await,
        Err(TenantError::NotFound { .. })
    ));
    assert!(s.recorder.taken().is_empty());

    s.store.fail_loads.store(true, Ordering::SeqCst);
    let err = s.service.get(s.tenant, "max_users").await.unwrap_err();
    assert!(matches!(err, TenantError::Storage { .. }), "{err:?}");
    s.store.fail_loads.store(false, Ordering::SeqCst);
    assert_eq!(
        s.service.get(s.tenant, "max_users").await.unwrap(),
        Some(json!(50)),
        "errors are not cached"
    );
}

#[tokio::test]
async fn a_publisher_failure_keeps_the_change() {
    let s = setup(json!({})).await;
    s.recorder.failing.store(true, Ordering::SeqCst);
    let change = s
        .service
        .set(s.tenant, "theme", json!("dark"))
        .await
        .unwrap();
    assert!(change.changed);
    match &change.publish_error {
        Some(TenantError::Publish { event, tenant, .. }) => {
            assert_eq!((*event, *tenant), ("config_changed", s.tenant));
        }
        other => panic!("expected a publish error, got {other:?}"),
    }
    assert!(change.into_result().is_err());
    assert_eq!(
        s.service.get(s.tenant, "theme").await.unwrap(),
        Some(json!("dark")),
        "stored"
    );
}

#[tokio::test]
async fn the_cache_expires_after_its_ttl() {
    let store = CountingStore::new();
    let tenant = store.tenant("acme").await;
    let cached = CachedConfigStore::new(store.clone(), Duration::from_millis(50), 10);
    cached.get_config(tenant, "theme").await.unwrap();
    cached.get_config(tenant, "theme").await.unwrap();
    assert_eq!(store.loads(), 1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    cached.get_config(tenant, "theme").await.unwrap();
    assert_eq!(store.loads(), 2, "an expired unit is loaded again");
}

#[tokio::test]
async fn a_huge_ttl_is_refused_by_the_config_and_capped_by_the_cache() {
    // From a config file or TENANCY__OVERRIDES__CACHE_TTL: an error, not a panic at boot.
    let config: OverridesConfig =
        serde_json::from_value(json!({ "cache_ttl": "500000years" })).unwrap();
    let store = CountingStore::new();
    assert!(matches!(
        CachedConfigStore::from_config(store.clone(), &config),
        Err(TenantError::Configuration(message)) if message.contains("overrides.cache_ttl")
    ));
    assert!(config.validate().is_err());
    // Built directly, the cache caps the duration instead of panicking.
    let tenant = store.tenant("acme").await;
    let cached = CachedConfigStore::new(store.clone(), Duration::MAX, 10);
    cached.get_config(tenant, "theme").await.unwrap();
    cached.get_config(tenant, "theme").await.unwrap();
    assert_eq!(store.loads(), 1, "cached");
}
