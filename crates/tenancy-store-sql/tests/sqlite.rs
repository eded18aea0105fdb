//! The SQLite store against a real SQLite file: the core conformance suite, the concurrent-create
//! race, unreadable rows, migrations and connection failures.

use std::sync::Arc;

use tenancy_core::conformance::{self, new_tenant};
use tenancy_core::{ConfigStore, TenantError, TenantStore};
use tenancy_store_sql::{SqlTenantStore, SqliteTenantStore, StoreConfig};

struct Db {
    _dir: tempfile::TempDir,
    config: StoreConfig,
}

fn temp_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenants.db").display());
    Db {
        _dir: dir,
        config: StoreConfig::with_url(url),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_core_conformance_suite() {
    let db = temp_db();
    let store = Arc::new(SqliteTenantStore::connect(&db.config).await.unwrap());
    conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enum_store_passes_the_suite_too() {
    let db = temp_db();
    let store = Arc::new(SqlTenantStore::connect(&db.config).await.unwrap());
    assert_eq!(store.backend(), "sqlite");
    conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_is_one_database_for_the_whole_pool() {
    let config = StoreConfig::with_url("sqlite::memory:");
    let store = Arc::new(SqliteTenantStore::connect(&config).await.unwrap());
    conformance::run_all(store.clone()).await;
    // The suite's tenants (7 listed, 1 read, 2 conflicting, 1 race winner, 1 updated, 1 status,
    // 1 status reason, 10 racing, 1 concurrent config writes, 1 config, 2 with domains, 30
    // racing for a domain, 1 with many domains), written through many pooled connections, are
    // all in one database.
    assert_eq!(
        store.list(Default::default()).await.unwrap().items.len(),
        59
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_fifty_concurrent_creates_of_one_slug_wins() {
    let db = temp_db();
    let store = Arc::new(SqliteTenantStore::connect(&db.config).await.unwrap());
    conformance::concurrent_creates_of_one_slug(store.clone(), 50).await;
    let page = store.list(Default::default()).await.unwrap();
    assert_eq!(page.items.len(), 1, "only the winner is stored");
}

#[tokio::test]
async fn an_unreadable_config_row_is_a_storage_error_naming_tenant_and_key() {
    let db = temp_db();
    let store = SqliteTenantStore::connect(&db.config).await.unwrap();
    let tenant = store.create(new_tenant("corrupt")).await.unwrap();
    let healthy = store.create(new_tenant("healthy")).await.unwrap();
    store
        .set_config(tenant.id, "theme", serde_json::json!("light"))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE tenancy_config SET value = '{not json' WHERE key = 'theme' AND tenant_id = ?1",
    )
    .bind(tenancy_core::Uuid::from(tenant.id))
    .execute(store.pool())
    .await
    .unwrap();

    let check = |err: TenantError| {
        let message = err.to_string();
        assert!(matches!(err, TenantError::Storage { .. }), "{message}");
        assert!(message.contains(&tenant.id.to_string()), "{message}");
        assert!(message.contains("\"theme\""), "{message}");
    };
    check(store.get_config(tenant.id, "theme").await.unwrap_err());
    check(store.get_all_config(tenant.id).await.unwrap_err());
    // The tenant itself stays readable: its overrides are not part of it.
    assert_eq!(store.get(tenant.id).await.unwrap().unwrap().id, tenant.id);
    assert_eq!(store.list(Default::default()).await.unwrap().items.len(), 2);

    // Other tenants are unaffected. Overwriting or removing the value fails without changing
    // anything: the unreadable row is kept for repair, not silently dropped.
    assert_eq!(store.get(healthy.id).await.unwrap().unwrap().id, healthy.id);
    check(
        store
            .set_config(tenant.id, "theme", serde_json::json!("dark"))
            .await
            .unwrap_err(),
    );
    check(store.remove_config(tenant.id, "theme").await.unwrap_err());
    let raw: String = sqlx::query_scalar(
        "SELECT value FROM tenancy_config WHERE key = 'theme' AND tenant_id = ?1",
    )
    .bind(tenancy_core::Uuid::from(tenant.id))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(raw, "{not json", "the refused writes rolled back");

    // An unreadable status or metadata column is reported the same way.
    sqlx::query("UPDATE tenancy_tenants SET metadata = '[1, 2]' WHERE id = ?1")
        .bind(tenancy_core::Uuid::from(healthy.id))
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get(healthy.id).await.unwrap_err();
    assert!(err.to_string().contains("metadata"), "{err}");
}

#[tokio::test]
async fn migrations_run_twice_harmlessly_and_refuse_a_newer_schema() {
    let db = temp_db();
    let store = SqliteTenantStore::connect(&db.config).await.unwrap();
    let tenant = store.create(new_tenant("kept")).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), 2);
    assert_eq!(store.migrate().await.unwrap(), 2);
    let reopened = SqliteTenantStore::connect(&db.config).await.unwrap();
    assert_eq!(
        reopened.get(tenant.id).await.unwrap().unwrap().id,
        tenant.id
    );

    sqlx::query(
        "INSERT INTO tenancy_schema_migrations \
         (version, description, success, checksum, execution_time) \
         VALUES (7, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = SqliteTenantStore::connect(&db.config).await.unwrap_err();
    assert!(matches!(err, TenantError::Migration { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "migration failed: schema version 7 is newer than this binary supports (2): upgrade tenancy"
    );
}

#[tokio::test]
async fn a_database_of_the_version_table_release_is_adopted() {
    let db = temp_db();
    let tenant = new_tenant("legacy");
    {
        // The database as the release with a plain version table left it, with one tenant.
        let store = SqliteTenantStore::connect(&StoreConfig {
            migrate: false,
            ..db.config.clone()
        })
        .await
        .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE tenancy_schema_version (version INTEGER PRIMARY KEY NOT NULL, \
                 description TEXT NOT NULL, applied_at TEXT NOT NULL); \
             INSERT INTO tenancy_schema_version VALUES (1, 'tenants and config overrides', '2025-01-01'); \
             CREATE TABLE tenancy_tenants (id BLOB PRIMARY KEY NOT NULL, slug TEXT NOT NULL UNIQUE, \
                 name TEXT NOT NULL, status TEXT NOT NULL, status_reason TEXT, plan TEXT, \
                 metadata TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, \
                 updated_at TEXT NOT NULL); \
             CREATE TABLE tenancy_config (tenant_id BLOB NOT NULL REFERENCES tenancy_tenants (id) \
                 ON DELETE CASCADE, key TEXT NOT NULL, value TEXT NOT NULL, \
                 PRIMARY KEY (tenant_id, key)) WITHOUT ROWID;",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tenancy_tenants (id, slug, name, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'provisioning', ?4, ?4)",
        )
        .bind(tenancy_core::Uuid::from(tenant.id))
        .bind(tenant.slug.as_str())
        .bind(&tenant.name)
        .bind(tenant.created_at)
        .execute(store.pool())
        .await
        .unwrap();
        store.close().await;
    }
    let store = SqliteTenantStore::connect(&db.config).await.unwrap();
    assert_eq!(
        store.get(tenant.id).await.unwrap().unwrap().slug,
        tenant.slug
    );
    let recorded: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM tenancy_schema_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        recorded,
        [1, 2],
        "the old table's version is recorded, not run again; the later ones run"
    );
    let old: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE name = 'tenancy_schema_version'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(old, 0, "the old version table is gone");
}

#[tokio::test]
async fn connection_failures_and_bad_urls_are_typed_errors() {
    let err = SqliteTenantStore::connect(&StoreConfig::with_url(
        "sqlite:///nonexistent-dir-for-tenancy-tests/x/tenants.db",
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, TenantError::Storage { .. }), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps the sqlx error"
    );

    for url in ["mysql://localhost/x", "nonsense"] {
        let err = SqlTenantStore::connect(&StoreConfig::with_url(url))
            .await
            .unwrap_err();
        assert!(matches!(err, TenantError::Configuration(_)), "{url}: {err}");
    }
    let err = SqlTenantStore::connect(&StoreConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("store.url"), "{err}");
}

#[tokio::test]
async fn ping_reports_a_closed_pool() {
    let db = temp_db();
    let store = SqlTenantStore::connect(&db.config).await.unwrap();
    let timeout = std::time::Duration::from_secs(2);
    assert!(store.ping(timeout).await.is_ok());
    store.close().await;
    let err = store.ping(timeout).await.unwrap_err();
    assert!(matches!(err, TenantError::Storage { .. }), "{err}");
    assert!(matches!(
        store.get(tenancy_core::TenantId::new()).await,
        Err(TenantError::Storage { .. })
    ));
}

/// Sets SQLite's page limit (the "disk size") on both connections of a two-connection pool.
async fn set_page_limit(pool: &sqlx::SqlitePool, pages: i64) {
    let mut first = pool.acquire().await.unwrap();
    let mut second = pool.acquire().await.unwrap();
    for conn in [&mut first, &mut second] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&mut **conn)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_recover_once_a_full_disk_has_room_again() {
    let db = temp_db();
    let config = StoreConfig {
        max_connections: 2,
        ..db.config.clone()
    };
    let store = SqliteTenantStore::connect(&config).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    // The disk is full: the file cannot grow past its size now.
    set_page_limit(store.pool(), pages).await;
    let mut full = None;
    for i in 0..500 {
        let mut tenant = new_tenant(&format!("t{i}"));
        tenant.name = format!("tenant {i} {}", "x".repeat(150));
        if let Err(error) = store.create(tenant).await {
            full = Some(error);
            break;
        }
    }
    let full = full.expect("the disk filled up");
    assert!(full.to_string().contains("full"), "{full}");

    // Room again: every pooled connection, including those that saw the failure, writes.
    set_page_limit(store.pool(), 1_000_000).await;
    for i in 0..10 {
        store
            .create(new_tenant(&format!("after{i}")))
            .await
            .unwrap_or_else(|e| panic!("write {i} after room was freed: {e}"));
    }
}

#[tokio::test]
async fn a_store_that_cannot_take_writes_says_so() {
    let db = temp_db();
    let store = SqliteTenantStore::connect(&db.config).await.unwrap();
    let timeout = std::time::Duration::from_secs(5);
    store.check_writable(timeout).await.unwrap();
    store.create(new_tenant("acme")).await.unwrap();
    store.close().await;

    // Opened read-only: reads work, the write check fails.
    let read_only = StoreConfig {
        migrate: false,
        ..StoreConfig::with_url(format!("{}?mode=ro", db.config.url.as_deref().unwrap()))
    };
    let store = SqliteTenantStore::connect(&read_only).await.unwrap();
    assert!(store.ping(timeout).await.is_ok());
    let err = store.check_writable(timeout).await.unwrap_err().to_string();
    assert!(err.contains("readonly"), "{err}");
    store.close().await;

    // The file deleted under a running store: writes would vanish with the process.
    let store = SqliteTenantStore::connect(&db.config).await.unwrap();
    let path = db
        .config
        .url
        .as_deref()
        .unwrap()
        .trim_start_matches("sqlite://")
        .to_owned();
    std::fs::remove_file(&path).unwrap();
    // Pooled connections opened before still reach the unlinked file, new ones cannot open it:
    // either way the check fails, and no empty database is created in its place.
    let err = store.check_writable(timeout).await.unwrap_err().to_string();
    assert!(
        err.contains("was deleted") || err.contains("unable to open database file"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&path).exists(),
        "the deleted file was created again"
    );
}
