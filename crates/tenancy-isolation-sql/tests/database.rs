//! Database per tenant across the fixture's two PostgreSQL servers, as the application role.

mod common;

use std::sync::Arc;

use common::{TestDb, app_options, second_server_url, superuser_options};
use sqlx::postgres::PgPoolOptions;
use tenancy_core::conformance::test_database_url;
use tenancy_core::{IsolationStrategy, TenantError, TenantId};
use tenancy_isolation_sql::{
    DatabaseRouter, DatabaseStrategy, PgDatabaseProvisioner, PgIsolationStore, Placement,
    PlacementStore, TenantDatabase,
};

async fn admin_pool(url: &str) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(superuser_options(url))
        .await
        .unwrap()
}

fn port(url: &str) -> u16 {
    superuser_options(url).get_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_on_two_servers_each_land_on_their_own() {
    let (url_one, url_two) = (test_database_url(), second_server_url());
    // The placement store lives in a database of its own on the first server.
    let db = TestDb::new("dbroute").await;
    PgIsolationStore::install(&db.admin).await.unwrap();
    PgIsolationStore::grant(&db.admin, &db.app_role())
        .await
        .unwrap();
    let store = Arc::new(PgIsolationStore::new(db.app.clone()));

    let (admin_one, admin_two) = (admin_pool(&url_one).await, admin_pool(&url_two).await);
    let on_one = DatabaseStrategy::new(
        Arc::new(PgDatabaseProvisioner::new("one", admin_one.clone()).unwrap()),
        store.clone(),
    );
    let on_two = DatabaseStrategy::new(
        Arc::new(PgDatabaseProvisioner::new("two", admin_two.clone()).unwrap()),
        store.clone(),
    );
    let (a, b) = (TenantId::new(), TenantId::new());
    on_one.provision(a).await.unwrap();
    on_one.provision(a).await.unwrap(); // idempotent
    on_two.provision(b).await.unwrap();

    let router = DatabaseRouter::new(
        [
            ("one".to_owned(), app_options(&url_one)),
            ("two".to_owned(), app_options(&url_two)),
        ],
        10,
        2,
    )
    .unwrap();
    // Either strategy plans from the shared placement store.
    let tenants =
        TenantDatabase::new(db.app.clone(), Arc::new(on_one.clone())).with_router(router.clone());
    for (tenant, url) in [(a, &url_one), (b, &url_two)] {
        let mut tx = tenants.begin(tenant).await.unwrap();
        let (database, server_port): (String, i32) =
            sqlx::query_as("SELECT current_database()::text, inet_server_port()")
                .fetch_one(&mut **tx)
                .await
                .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(database, format!("tenant_{}", tenant.simple()));
        assert_eq!(
            server_port,
            i32::from(port(url)),
            "tenant {tenant} on the wrong server"
        );
    }
    assert_eq!(router.open_pools().await, 2);

    // Placements survive a restart: a new pool and store find them.
    let restarted = PgIsolationStore::new(
        PgPoolOptions::new()
            .max_connections(1)
            .connect_with(app_options(&url_one).database(&db.name))
            .await
            .unwrap(),
    );
    assert_eq!(
        restarted.placement(b).await.unwrap(),
        Some(Placement::for_tenant("two", b).unwrap())
    );

    // Deprovisioning drops the database and the placement; the tenant then fails closed.
    router
        .evict(&Placement::for_tenant("one", a).unwrap())
        .await;
    on_one.deprovision(a).await.unwrap();
    on_one.deprovision(a).await.unwrap(); // idempotent
    let err = tenants.begin(a).await.unwrap_err();
    assert!(matches!(err, TenantError::Provisioning { .. }), "{err:?}");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(format!("tenant_{}", a.simple()))
            .fetch_one(&admin_one)
            .await
            .unwrap();
    assert!(!exists);

    router
        .evict(&Placement::for_tenant("two", b).unwrap())
        .await;
    on_two.deprovision(b).await.unwrap();
    admin_one.close().await;
    admin_two.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_pools_are_closed() {
    let url = test_database_url();
    let router = DatabaseRouter::new([("one".to_owned(), app_options(&url))], 1, 1).unwrap();
    // The pools point at the maintenance database; connecting is not needed to show eviction.
    let first = router
        .pool(&Placement::new("one", "postgres").unwrap())
        .await
        .unwrap();
    let second = router
        .pool(&Placement::new("one", "template1").unwrap())
        .await
        .unwrap();
    assert_eq!(router.open_pools().await, 1);
    assert!(first.is_closed(), "the evicted pool must be closed");
    assert!(!second.is_closed(), "the new pool is admitted and open");
    // Asking again for an evicted placement opens a fresh pool.
    let again = router
        .pool(&Placement::new("one", "postgres").unwrap())
        .await
        .unwrap();
    assert!(!again.is_closed());
    assert_eq!(router.open_pools().await, 1);
    assert!(second.is_closed());
    // An unconfigured server is a configuration error.
    let err = router
        .pool(&Placement::new("nine", "postgres").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::Configuration(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_a_pool_in_use_does_not_wait_for_its_transaction() {
    let url = test_database_url();
    let (one, two) = (TestDb::new("dbevict1").await, TestDb::new("dbevict2").await);
    let router = DatabaseRouter::new([("one".to_owned(), app_options(&url))], 1, 1).unwrap();
    let (a, b) = (
        Placement::new("one", &one.name).unwrap(),
        Placement::new("one", &two.name).unwrap(),
    );
    let pool_a = router.pool(&a).await.unwrap();
    let mut held = pool_a.begin().await.unwrap();
    // Another tenant's lookup pushes a's pool out (capacity 1) while this task's transaction on
    // it is open: finishing the eviction must not wait for that transaction, or this task
    // deadlocks on itself. (The timeout only turns a hang into a failure.)
    let pool_b = router.pool(&b).await.unwrap();
    let open = tokio::time::timeout(std::time::Duration::from_secs(30), router.open_pools())
        .await
        .expect("evicting a pool waited for a transaction still open on it");
    assert_eq!(open, 1);
    assert!(pool_a.is_closed(), "the evicted pool takes no new work");
    assert!(matches!(
        pool_a.acquire().await,
        Err(sqlx::Error::PoolClosed)
    ));
    // The open transaction still finishes on its connection; b's pool serves.
    sqlx::query("SELECT 1").execute(&mut *held).await.unwrap();
    held.commit().await.unwrap();
    sqlx::query("SELECT 1").execute(&pool_b).await.unwrap();
    router.evict(&b).await;
    assert!(pool_b.is_closed());
    drop((pool_a, pool_b));
    one.drop().await;
    two.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_plan_without_router_is_a_configuration_error() {
    let db = TestDb::new("dbnorouter").await;
    PgIsolationStore::install(&db.admin).await.unwrap();
    let store = Arc::new(PgIsolationStore::new(db.admin.clone()));
    let tenant = TenantId::new();
    store
        .set_placement(tenant, &Placement::for_tenant("one", tenant).unwrap())
        .await
        .unwrap();
    let strategy = DatabaseStrategy::new(
        Arc::new(PgDatabaseProvisioner::new("one", db.admin.clone()).unwrap()),
        store,
    );
    let tenants = TenantDatabase::new(db.app.clone(), Arc::new(strategy));
    let err = tenants.begin(tenant).await.unwrap_err();
    assert!(matches!(err, TenantError::Configuration(_)), "{err:?}");
    db.drop().await;
}

/// The application role's URL on the server of `url` (no query).
fn app_url(url: &str) -> String {
    let role = tenancy_core::conformance::test_app_role();
    let (_, rest) = url.split_once('@').expect("the test URL names its user");
    format!("postgres://{role}:{role}@{rest}")
}

/// A certificate authority of its own, which issued nothing the servers hold, as a PEM file.
fn another_ca() -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(params.self_signed(&key).unwrap().pem().as_bytes())
        .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_connects_to_tenant_databases_with_the_configured_tls() {
    use tenancy_isolation_sql::IsolationConfig;
    use tenancy_pg_connect::{SslMode, TlsConfig};

    let url_two = second_server_url();
    let db = TestDb::new("dbtls").await;
    PgIsolationStore::install(&db.admin).await.unwrap();
    PgIsolationStore::grant(&db.admin, &db.app_role())
        .await
        .unwrap();
    let store = Arc::new(PgIsolationStore::new(db.app.clone()));
    let admin_two = admin_pool(&url_two).await;
    let strategy = DatabaseStrategy::new(
        Arc::new(PgDatabaseProvisioner::new("two", admin_two.clone()).unwrap()),
        store,
    );
    let tenant = TenantId::new();
    strategy.provision(tenant).await.unwrap();

    // verify-full against the fixture's CA, from `isolation.tls`.
    let mut config = IsolationConfig::default();
    config.servers.insert("two".into(), app_url(&url_two));
    config.tls = TlsConfig {
        mode: Some(SslMode::VerifyFull),
        root_cert: Some(tenancy_core::conformance::test_pg_ca().into()),
    };
    let router = DatabaseRouter::from_config(&config).unwrap();
    let tenants =
        TenantDatabase::new(db.app.clone(), Arc::new(strategy.clone())).with_router(router.clone());
    let mut tx = tenants.begin(tenant).await.unwrap();
    let (database, encrypted): (String, bool) = sqlx::query_as(
        "SELECT current_database()::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(&mut **tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(database, format!("tenant_{}", tenant.simple()));
    assert!(encrypted, "the tenant's connection must be encrypted");
    router
        .evict(&Placement::for_tenant("two", tenant).unwrap())
        .await;

    // A root certificate that did not issue the server's: the transaction fails naming TLS.
    let other = another_ca();
    config.tls.root_cert = Some(other.path().to_path_buf());
    let wrong = DatabaseRouter::from_config(&config).unwrap();
    let tenants =
        TenantDatabase::new(db.app.clone(), Arc::new(strategy.clone())).with_router(wrong);
    let err = tenants.begin(tenant).await.unwrap_err();
    assert!(matches!(err, TenantError::Isolation { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("TLS with the PostgreSQL server")
            && shown.contains("invalid peer certificate: UnknownIssuer"),
        "{shown}"
    );

    // A server URL whose TLS settings are refused is a configuration error at once.
    config.tls = TlsConfig::default();
    config
        .servers
        .insert("two".into(), format!("{}?sslmode=allow", app_url(&url_two)));
    let err = DatabaseRouter::from_config(&config).unwrap_err();
    assert!(
        matches!(&err, TenantError::Configuration(m) if m.contains("isolation.servers.two")),
        "{err:?}"
    );

    strategy.deprovision(tenant).await.unwrap();
    admin_two.close().await;
    db.drop().await;
}
