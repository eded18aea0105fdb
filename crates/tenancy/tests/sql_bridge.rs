//! Tenant-scoped transactions from axum handlers: with the SQL context bridge on, a handler begins
//! a transaction for the request's tenant without naming it, and row-level security keeps every
//! other tenant's rows out of reach; with the bridge off, the tenant must be named.

mod common;

use std::sync::Arc;

use common::create;
use common::pg::TestDb;
use http::Request;
use http_body_util::BodyExt;
use tenancy::TenancyConfig;
use tenancy::core::{HealthStatus, TenantError};
use tower::ServiceExt;

// getting-started: begin
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tenancy::{Tenancy, TenantDatabase};

/// Stores a note for the request's tenant.
async fn add_note(
    State(db): State<TenantDatabase>,
    body: String,
) -> Result<StatusCode, StatusCode> {
    let mut tx = db.begin_current().await.map_err(internal)?;
    sqlx::query(
        "INSERT INTO notes (tenant_id, body) VALUES (current_setting('app.tenant_id')::uuid, $1)",
    )
    .bind(body)
    .execute(&mut **tx)
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(StatusCode::CREATED)
}

/// The request's tenant's notes: row-level security hides every other tenant's.
async fn notes(State(db): State<TenantDatabase>) -> Result<String, StatusCode> {
    let mut tx = db.begin_current().await.map_err(internal)?;
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM notes ORDER BY body")
        .fetch_all(&mut **tx)
        .await
        .map_err(internal)?;
    Ok(bodies.join(","))
}

fn internal(error: impl std::fmt::Display) -> StatusCode {
    tracing::error!(%error, "tenant data");
    StatusCode::INTERNAL_SERVER_ERROR
}

fn notes_app(tenancy: &Tenancy) -> Router {
    let db = tenancy
        .database()
        .expect("the stack runs on PostgreSQL")
        .clone();
    Router::new()
        .route("/notes", get(notes).post(add_note))
        .with_state(db)
        .layer(tenancy.guard())
        .layer(tenancy.layer())
}
// getting-started: end

/// A stack on `url` resolving by the trusted header, with the bridge as given.
async fn stack(url: &str, bridge: bool) -> Tenancy {
    tenancy::configure(config(url, bridge)).await.unwrap()
}

fn config(url: &str, bridge: bool) -> TenancyConfig {
    let mut config = TenancyConfig::default();
    config.store.url = Some(url.to_owned());
    config.store.change_feed = false;
    config.resolution.resolvers = Some(vec![tenancy::resolution::Builtin::Header]);
    config.resolution.trusted_resolvers = Some(vec!["header".into()]);
    config.integration.sql_context_bridge = bridge;
    config
}

/// Sends `method /notes` as `tenant` with `body`; the status and the response body.
async fn send(app: &Router, method: &str, tenant: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri("/notes")
        .header("x-tenant-id", tenant)
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The tenant setting a transaction runs with.
async fn setting_in(tx: &mut tenancy::isolation::TenantTransaction) -> String {
    sqlx::query_scalar("SELECT current_setting('app.tenant_id')")
        .fetch_one(&mut ***tx)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_handler_writes_through_the_tenant_database_and_other_tenants_cannot_read_it() {
    let db = TestDb::create("umbrella_notes").await;
    db.run_as_owner("CREATE TABLE public.notes (tenant_id uuid NOT NULL, body text NOT NULL)")
        .await;
    for statement in
        tenancy::isolation::protect_table_sql("public.notes", "tenant_id", "app.tenant_id").unwrap()
    {
        db.run_as_owner(&statement).await;
    }
    let role = tenancy::core::conformance::test_app_role();
    db.run_as_owner(&format!(
        "GRANT SELECT, INSERT ON public.notes TO \"{role}\""
    ))
    .await;
    // The application role: row-level security applies to it.
    let tenancy = stack(&db.app_role_url().await, true).await;
    let acme = create(&tenancy, "acme").await.id.to_string();
    let globex = create(&tenancy, "globex").await.id.to_string();
    let app = notes_app(&tenancy);

    assert_eq!(
        send(&app, "POST", &acme, "ship it").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        send(&app, "POST", &globex, "globex plan").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        send(&app, "GET", &acme, "").await,
        (StatusCode::OK, "ship it".to_owned())
    );
    assert_eq!(
        send(&app, "GET", &globex, "").await,
        (StatusCode::OK, "globex plan".to_owned())
    );
    // The rows are there, one per tenant: the superuser (who bypasses policies) sees both.
    let owner = sqlx::PgPool::connect(&db.url).await.unwrap();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM public.notes")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(all, 2);
    owner.close().await;
    tenancy.shutdown().await.unwrap();
    db.drop_db().await;
}

#[test]
fn the_getting_started_guide_shows_the_handlers_tested_here() {
    let source = include_str!("sql_bridge.rs");
    let begin = source.find("// getting-started: begin\n").unwrap();
    let end = source.find("// getting-started: end").unwrap();
    let handlers = &source[begin + "// getting-started: begin\n".len()..end];
    let guide = include_str!("../../../docs/getting-started.md");
    assert!(
        guide.contains(handlers),
        "docs/getting-started.md must show the handlers of tests/sql_bridge.rs verbatim:\n{handlers}"
    );
}

#[tokio::test]
async fn handlers_begin_tenant_transactions_without_naming_the_tenant() {
    let db = TestDb::create("umbrella_bridge").await;
    let tenancy = stack(&db.url, true).await;
    let acme = create(&tenancy, "acme").await;
    let globex = create(&tenancy, "globex").await;
    let database = tenancy.database().unwrap().clone();
    assert!(database.is_bridged());

    async fn setting(State(db): State<TenantDatabase>) -> Result<String, StatusCode> {
        let mut tx = db.begin_current().await.map_err(internal)?;
        let value = setting_in(&mut tx).await;
        tx.commit().await.map_err(internal)?;
        Ok(value)
    }
    let app = Router::new()
        .route("/notes", get(setting))
        .with_state(database.clone())
        .layer(tenancy.guard())
        .layer(tenancy.layer());
    for tenant in [&acme, &globex] {
        let id = tenant.id.to_string();
        assert_eq!(send(&app, "GET", &id, "").await, (StatusCode::OK, id));
    }

    // Outside a tenant scope, the bridge fails closed.
    assert!(matches!(
        database.begin_current().await,
        Err(TenantError::Resolution(_))
    ));
    // Naming the tenant always works.
    let mut tx = database.begin(globex.id).await.unwrap();
    assert_eq!(setting_in(&mut tx).await, globex.id.to_string());
    tx.rollback().await.unwrap();

    let report = tenancy.health().await;
    let isolation = &report.components["isolation"];
    assert_eq!(isolation.status, HealthStatus::Healthy, "{isolation:?}");
    assert_eq!(isolation.details["strategy"], "row_level");
    assert!(isolation.details.contains_key("pool_size"));
    assert!(
        tenancy.isolation().names().any(|n| n == "schema"),
        "schema per tenant is registered with sql"
    );
    tenancy.shutdown().await.unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn with_the_bridge_off_the_tenant_must_be_named() {
    let db = TestDb::create("umbrella_nobridge").await;
    let tenancy = stack(&db.url, false).await;
    let acme = create(&tenancy, "acme").await;
    let database = tenancy.database().unwrap();
    assert!(!database.is_bridged());

    let context = tenancy::core::TenantContext::new(Arc::new(acme.clone()), Arc::from("test"));
    let refused = tenancy::core::context::scope(context, database.begin_current()).await;
    let Err(TenantError::Configuration(message)) = refused else {
        panic!("begin_current must be refused with the bridge off");
    };
    assert!(
        message.contains("integration.sql_context_bridge is off"),
        "{message}"
    );
    let mut tx = database.begin(acme.id).await.unwrap();
    assert_eq!(setting_in(&mut tx).await, acme.id.to_string());
    tx.commit().await.unwrap();
    tenancy.shutdown().await.unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn one_strategy_setting_provisions_tenants_and_isolates_their_transactions() {
    let db = TestDb::create("umbrella_schema").await;
    let mut config = config(&db.url, true);
    config.isolation.strategy = "schema".into();
    let tenancy = tenancy::configure(config).await.unwrap();
    let acme = create(&tenancy, "acme").await;
    assert_eq!(
        tenancy.lifecycle().provisioner().strategy().name(),
        "schema"
    );
    let database = tenancy.database().unwrap();
    assert_eq!(database.strategy().name(), "schema");
    // Provisioning made the schema that the tenant's transactions search first.
    let mut tx = database.begin(acme.id).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    assert_eq!(schema, tenancy::isolation::tenant_schema(acme.id));
    tx.rollback().await.unwrap();
    tenancy.shutdown().await.unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn the_boot_audit_refuses_an_unprotected_table_and_passes_once_it_is_protected() {
    use tenancy::isolation::RlsAudit;
    use tenancy::{Phase, StackBuilder};

    let db = TestDb::create("umbrella_audit").await;
    db.run_as_owner("CREATE TABLE public.orders (id bigint PRIMARY KEY, tenant_id uuid NOT NULL)")
        .await;
    let config = config(&db.app_role_url().await, true);
    let audit = RlsAudit::from_config(&config.isolation)
        .unwrap()
        .schemas(&["public"])
        .unwrap();

    let error = StackBuilder::new(config.clone())
        .rls_audit(audit.clone())
        .build()
        .await
        .unwrap_err();
    let tenancy::Error::Provider(error) = error else {
        panic!("the audit fails the isolation provider's boot, got {error}");
    };
    assert_eq!(
        (error.provider.as_str(), error.phase),
        ("isolation", Phase::Boot)
    );
    assert!(error.to_string().contains("public.orders"), "{error}");

    for statement in
        tenancy::isolation::protect_table_sql("public.orders", "tenant_id", "app.tenant_id")
            .unwrap()
    {
        db.run_as_owner(&statement).await;
    }
    let tenancy = StackBuilder::new(config)
        .rls_audit(audit)
        .build()
        .await
        .unwrap();
    assert_eq!(tenancy.health().await.status, HealthStatus::Healthy);
    tenancy.shutdown().await.unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn the_store_its_change_feed_and_tenant_transactions_run_over_verified_tls() {
    use tenancy::pg_connect::{SslMode, TlsConfig};

    let db = TestDb::create("umbrella_tls").await;
    let mut verified = config(&db.url, true);
    verified.store.change_feed = true;
    verified.store.tls = TlsConfig {
        mode: Some(SslMode::VerifyFull),
        root_cert: Some(tenancy::core::conformance::test_pg_ca().into()),
    };
    let tenancy = tenancy::configure(verified).await.unwrap();
    let acme = create(&tenancy, "acme").await;
    let health = tenancy.health().await;
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");

    // The transaction's connection, and every connection of the store's database (the pool and
    // the change feed's), are encrypted.
    let mut tx = tenancy.database().unwrap().begin(acme.id).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
    assert!(encrypted);
    assert_eq!(setting_in(&mut tx).await, acme.id.to_string());
    tx.commit().await.unwrap();
    let (connections, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert!(
        connections >= 2,
        "the pool and the change feed: {connections}"
    );
    assert_eq!(
        plain, 0,
        "every connection to the store's database uses TLS"
    );
    tenancy.shutdown().await.unwrap();

    // The same configuration with a root certificate that did not issue the server's: the
    // stack does not start, and says TLS is why.
    let other = tempfile::NamedTempFile::new().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(other.path(), params.self_signed(&key).unwrap().pem()).unwrap();
    let mut wrong = config(&db.url, true);
    wrong.store.tls = TlsConfig {
        mode: Some(SslMode::VerifyFull),
        root_cert: Some(other.path().to_path_buf()),
    };
    let err = tenancy::configure(wrong).await.unwrap_err().to_string();
    assert!(
        err.contains("TLS with the PostgreSQL server")
            && err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    db.drop_db().await;
}
