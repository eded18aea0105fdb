//! The PostgreSQL store and change feed against the throwaway PostgreSQL server (a fresh database
//! per test): the core conformance suite, the concurrent-create race, migrations, notifications,
//! and cross-process invalidation between two independent stacks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Stack, TestDb};
use sqlx::postgres::PgListener;
use tenancy_core::conformance::{self, new_tenant};
use tenancy_core::{
    ConfigStore, HealthStatus, StatusChange, TenantError, TenantStatus, TenantStore, UpdateTenant,
};
use tenancy_store_sql::{ChangeKind, ChangeNotice, PgTenantStore, SqlTenantStore, StoreConfig};

/// Polls `condition` every 20 ms, at most `seconds`; panics with `what` when it never holds.
async fn eventually<F, Fut>(seconds: u64, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let attempts = seconds * 50;
    for _ in 0..attempts {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within {seconds} s");
}

fn change(from: TenantStatus, to: TenantStatus) -> StatusChange {
    StatusChange {
        from,
        to,
        reason: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_core_conformance_suite() {
    let db = TestDb::new().await;
    conformance::run_all(Arc::new(db.store().await)).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_fifty_concurrent_creates_of_one_slug_wins() {
    let db = TestDb::new().await;
    let store = Arc::new(db.store().await);
    conformance::concurrent_creates_of_one_slug(store.clone(), 50).await;
    assert_eq!(store.list(Default::default()).await.unwrap().items.len(), 1);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_from_a_url_into_a_custom_schema() {
    let db = TestDb::new().await;
    let url = format!(
        "{}/{}",
        conformance::test_database_url().rsplit_once('/').unwrap().0,
        db.name
    );
    let config = StoreConfig {
        schema: "tenant_registry".into(),
        ..StoreConfig::with_url(url)
    };
    let store = SqlTenantStore::connect(&config).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    let tenant = store.create(new_tenant("schema")).await.unwrap();
    let SqlTenantStore::Postgres(pg) = &store else {
        panic!("a postgres URL opens the PostgreSQL store")
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(pg.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "tenant_registry.config",
            "tenant_registry.domains",
            "tenant_registry.schema_migrations",
            "tenant_registry.tenants"
        ],
        "the store's tables live in its own schema, nowhere else"
    );
    assert_eq!(store.get(tenant.id).await.unwrap().unwrap().id, tenant.id);
    assert!(store.ping(Duration::from_secs(2)).await.is_ok());
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_serialised_and_refuse_a_newer_schema() {
    let db = TestDb::new().await;
    // Four processes migrating one fresh database at once: all succeed, one schema results.
    let config = StoreConfig {
        migrate: false,
        ..StoreConfig::default()
    };
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(
            PgTenantStore::from_pool(db.pool(2).await, &config)
                .await
                .unwrap(),
        );
    }
    let runs: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap(), 2);
    }
    let store = &stores[0];
    let tenant = store.create(new_tenant("migrate")).await.unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        2,
        "running again is harmless"
    );
    assert_eq!(store.get(tenant.id).await.unwrap().unwrap().id, tenant.id);
    let versions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tenancy.schema_migrations WHERE success AND length(checksum) > 0",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        versions, 2,
        "each migration is recorded once, with its checksum"
    );

    sqlx::query(
        "INSERT INTO tenancy.schema_migrations \
         (version, description, success, checksum, execution_time) \
         VALUES (7, 'future', true, '\\x00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = PgTenantStore::from_pool(db.pool(1).await, &StoreConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::Migration { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "migration failed: schema version 7 is newer than this binary supports (2): upgrade tenancy"
    );
    drop(stores);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_the_version_table_release_is_adopted_and_a_changed_migration_refused() {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    // The schema as the release with a plain version table left it, with one tenant.
    let tenant = new_tenant("legacy");
    sqlx::raw_sql(
        "CREATE SCHEMA tenancy; \
         CREATE TABLE tenancy.schema_version (version bigint PRIMARY KEY, \
             description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO tenancy.schema_version (version, description) \
             VALUES (1, 'tenants and config overrides'); \
         CREATE TABLE tenancy.tenants (id uuid PRIMARY KEY, \
             slug text NOT NULL CONSTRAINT tenants_slug_key UNIQUE, name text NOT NULL, \
             status text NOT NULL, status_reason text, plan text, \
             metadata jsonb NOT NULL DEFAULT '{}'::jsonb, created_at timestamptz NOT NULL, \
             updated_at timestamptz NOT NULL); \
         CREATE TABLE tenancy.config (tenant_id uuid NOT NULL REFERENCES tenancy.tenants (id) \
             ON DELETE CASCADE, key text NOT NULL, value jsonb NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, key))",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO tenancy.tenants (id, slug, name, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'provisioning', now(), now())",
    )
    .bind(tenancy_core::Uuid::from(tenant.id))
    .bind(tenant.slug.as_str())
    .bind(&tenant.name)
    .execute(&pool)
    .await
    .unwrap();

    let store = PgTenantStore::from_pool(pool.clone(), &StoreConfig::default())
        .await
        .unwrap();
    assert_eq!(
        store.get(tenant.id).await.unwrap().unwrap().slug,
        tenant.slug
    );
    let recorded: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM tenancy.schema_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        recorded,
        [1, 2],
        "the old table's version is recorded, not run again; the later ones run"
    );
    let old: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('tenancy.schema_version')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old, None, "the old version table is gone");
    assert_eq!(store.migrate().await.unwrap(), 2);

    // A recorded migration whose text differs from the embedded one is refused.
    sqlx::query("UPDATE tenancy.schema_migrations SET checksum = '\\x00' WHERE version = 1")
        .execute(&pool)
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(matches!(err, TenantError::Migration { .. }), "{err}");
    assert!(err.to_string().contains("migration 1 differs"), "{err}");
    drop(store);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_table_newer_than_the_binary_is_refused() {
    let db = TestDb::new().await;
    let pool = db.pool(1).await;
    sqlx::raw_sql(
        "CREATE SCHEMA tenancy; \
         CREATE TABLE tenancy.schema_version (version bigint PRIMARY KEY, \
             description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO tenancy.schema_version (version, description) VALUES (1, 'a'), (3, 'c')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let err = PgTenantStore::from_pool(pool, &StoreConfig::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "migration failed: schema version 3 is newer than this binary supports (2): upgrade tenancy"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn connection_failures_are_storage_errors_and_bad_schemas_configuration_errors() {
    let config = StoreConfig {
        acquire_timeout_ms: 500,
        ..StoreConfig::with_url("postgres://nobody@127.0.0.1:1/nothing")
    };
    let err = PgTenantStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, TenantError::Storage { .. }), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps the sqlx error"
    );

    let config = StoreConfig {
        schema: "tenancy\"; DROP SCHEMA public; --".into(),
        ..StoreConfig::with_url("postgres://nobody@127.0.0.1:1/nothing")
    };
    let err = PgTenantStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, TenantError::Configuration(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_mutation_notifies_and_refused_ones_do_not() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut listener = PgListener::connect_with(store.pool()).await.unwrap();
    listener.listen("tenancy_changes").await.unwrap();
    let mut next = async || -> ChangeNotice {
        let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .unwrap();
        serde_json::from_str(notification.payload()).unwrap()
    };

    // A store configured without the change feed sends nothing.
    let quiet = PgTenantStore::from_pool(
        db.pool(1).await,
        &StoreConfig {
            change_feed: false,
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    quiet.create(new_tenant("quiet")).await.unwrap();

    let tenant = store.create(new_tenant("notify")).await.unwrap();
    let notice = next().await;
    assert_eq!(
        (notice.tenant_id, notice.kind, notice.slugs.clone()),
        (tenant.id, ChangeKind::Created, vec![tenant.slug])
    );

    // Refused mutations roll back, and their notifications with them.
    let mut dup = new_tenant("dup");
    dup.slug = tenant.slug;
    assert!(matches!(
        store.create(dup).await,
        Err(TenantError::SlugConflict { .. })
    ));
    assert!(
        store
            .set_status(
                tenant.id,
                change(TenantStatus::Active, TenantStatus::Inactive)
            )
            .await
            .is_err()
    );

    let renamed = new_tenant("renamed").slug;
    let update = UpdateTenant {
        slug: Some(renamed),
        ..UpdateTenant::default()
    };
    store.update(tenant.id, &update).await.unwrap();
    let notice = next().await;
    assert_eq!(
        notice.kind,
        ChangeKind::Updated,
        "no notice from the refused changes"
    );
    assert_eq!(notice.slugs, vec![tenant.slug, renamed]);

    store
        .set_status(
            tenant.id,
            change(TenantStatus::Provisioning, TenantStatus::Active),
        )
        .await
        .unwrap();
    assert_eq!(next().await.kind, ChangeKind::Status);
    store
        .set_config(tenant.id, "theme", serde_json::json!("dark"))
        .await
        .unwrap();
    assert_eq!(next().await.kind, ChangeKind::Config);
    store.remove_config(tenant.id, "theme").await.unwrap();
    let notice = next().await;
    assert_eq!(
        (notice.tenant_id, notice.kind),
        (tenant.id, ChangeKind::Config)
    );

    // Domain changes name the domain; one that changes nothing sends nothing.
    let domain: tenancy_core::DomainName = "notify.example".parse().unwrap();
    store.add_domain(tenant.id, &domain, false).await.unwrap();
    let notice = next().await;
    assert_eq!(
        (notice.tenant_id, notice.kind, notice.domains),
        (tenant.id, ChangeKind::Domains, vec![domain.clone()])
    );
    store.add_domain(tenant.id, &domain, true).await.unwrap();
    store.remove_domain(tenant.id, &domain).await.unwrap();
    let notice = next().await;
    assert_eq!(
        (notice.kind, notice.domains),
        (ChangeKind::Domains, vec![domain]),
        "adding an owned primary domain again sent nothing"
    );
    drop(listener);
    drop((store, quiet));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_through_one_stack_reaches_the_other_without_waiting_for_the_ttl() {
    let db = TestDb::new().await;
    let one = Stack::new(&db, true).await;
    let two = Stack::new(&db, true).await;
    // A third process without a feed shows what a 300 s cache alone would do.
    let stale = Stack::new(&db, false).await;

    let tenant = one.store.create(new_tenant("suspend")).await.unwrap();
    one.store
        .set_status(
            tenant.id,
            change(TenantStatus::Provisioning, TenantStatus::Active),
        )
        .await
        .unwrap();
    // Let the creation and activation notices reach stack two before it caches the tenant.
    eventually(5, "stack two applying both notices", || async {
        two.feed().notices() == 2
    })
    .await;
    two.reader.check(tenant.id).await.unwrap();
    stale.reader.check(tenant.id).await.unwrap();
    let loads = two.reader.loads.load(std::sync::atomic::Ordering::Relaxed);
    two.reader.check(tenant.id).await.unwrap();
    assert_eq!(
        two.reader.loads.load(std::sync::atomic::Ordering::Relaxed),
        loads,
        "stack two answers from its cache"
    );

    let suspend = StatusChange {
        from: TenantStatus::Active,
        to: TenantStatus::Suspended,
        reason: Some("unpaid".into()),
    };
    one.store.set_status(tenant.id, suspend).await.unwrap();
    eventually(5, "stack two refusing the suspended tenant", || async {
        matches!(
            two.reader.check(tenant.id).await,
            Err(TenantError::Suspended { reason: Some(ref r), .. }) if r == "unpaid"
        )
    })
    .await;
    assert!(
        stale.reader.check(tenant.id).await.is_ok(),
        "without the feed, a cached tenant stays active until its TTL"
    );
    assert!(two.feed().notices() >= 1);
    assert_eq!(two.feed().health().status, HealthStatus::Healthy);

    one.feed().shutdown().await;
    two.feed().shutdown().await;
    assert_eq!(
        two.feed().health().status,
        HealthStatus::Unhealthy,
        "a stopped feed says so"
    );
    drop((one, two, stale));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_degrades_flushes_reconnects_and_works_again() {
    let db = TestDb::new().await;
    let one = Stack::new(&db, true).await;
    let two = Stack::new(&db, true).await;
    let tenant = one.store.create(new_tenant("killed")).await.unwrap();
    one.store
        .set_status(
            tenant.id,
            change(TenantStatus::Provisioning, TenantStatus::Active),
        )
        .await
        .unwrap();
    eventually(5, "stack two applying both notices", || async {
        two.feed().notices() == 2
    })
    .await;
    two.reader.check(tenant.id).await.unwrap();
    assert!(two.reader.is_cached(tenant.id).await);
    assert_eq!(two.feed().reconnects(), 0);

    // Keep the feed from reconnecting while the test looks at it; existing pool connections stay.
    db.allow_connections(false).await;
    assert_eq!(
        db.terminate(&two.application_name).await,
        1,
        "one listener backend"
    );
    eventually(5, "the feed reporting degraded", || async {
        two.feed().health().status == HealthStatus::Degraded
    })
    .await;
    let health = two.feed().health();
    assert!(
        health.details["reason"].starts_with("reconnecting"),
        "{health:?}"
    );
    assert!(
        !two.reader.is_cached(tenant.id).await,
        "losing the connection flushes the caches (changes may be missed meanwhile)"
    );
    // While it is away, stack two caches the tenant again and a change made elsewhere is lost.
    two.reader.check(tenant.id).await.unwrap();
    let away = UpdateTenant {
        name: Some("renamed while the feed was away".into()),
        ..UpdateTenant::default()
    };
    one.store.update(tenant.id, &away).await.unwrap();

    db.allow_connections(true).await;
    eventually(10, "the feed reconnecting", || async {
        two.feed().reconnects() == 1 && two.feed().health().status == HealthStatus::Healthy
    })
    .await;
    assert!(
        !two.reader.is_cached(tenant.id).await,
        "listening again flushes what was cached while the feed was away"
    );
    assert_eq!(
        two.reader.check(tenant.id).await.unwrap().name,
        "renamed while the feed was away"
    );

    // Invalidation works again: cache the tenant, suspend it elsewhere, see it refused.
    two.reader.check(tenant.id).await.unwrap();
    assert!(two.reader.is_cached(tenant.id).await);
    one.store
        .set_status(
            tenant.id,
            change(TenantStatus::Active, TenantStatus::Suspended),
        )
        .await
        .unwrap();
    eventually(
        5,
        "stack two refusing the suspended tenant after reconnecting",
        || async {
            matches!(
                two.reader.check(tenant.id).await,
                Err(TenantError::Suspended { .. })
            )
        },
    )
    .await;
    one.feed().shutdown().await;
    two.feed().shutdown().await;
    drop((one, two));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_postgresql_cannot_store_is_invalid_input_and_changes_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let tenant = store.create(new_tenant("nul")).await.unwrap();
    store
        .set_config(tenant.id, "theme", serde_json::json!("dark"))
        .await
        .unwrap();

    // NUL in a JSON string (jsonb refuses \u0000) and in a key (text refuses 0x00).
    let err = store
        .set_config(tenant.id, "theme", serde_json::json!("da\u{0}rk"))
        .await;
    assert!(
        matches!(err, Err(TenantError::InvalidInput { .. })),
        "{err:?}"
    );
    let err = store
        .set_config(tenant.id, "the\u{0}me", serde_json::json!("x"))
        .await;
    assert!(
        matches!(err, Err(TenantError::InvalidInput { .. })),
        "{err:?}"
    );
    let mut metadata = tenancy_core::JsonObject::new();
    metadata.insert("note".into(), serde_json::json!("a\u{0}b"));
    let update = UpdateTenant {
        metadata: Some(metadata),
        ..UpdateTenant::default()
    };
    let err = store.update(tenant.id, &update).await;
    assert!(
        matches!(err, Err(TenantError::InvalidInput { .. })),
        "{err:?}"
    );

    // Nothing was lost or changed.
    assert_eq!(
        store.get_config(tenant.id, "theme").await.unwrap(),
        Some(serde_json::json!("dark"))
    );
    assert_eq!(
        store.get(tenant.id).await.unwrap().unwrap().metadata,
        tenant.metadata
    );
    drop(store);
    db.drop_db().await;
}
