//! The SQL context bridge: with it on, a handler begins a tenant transaction without naming the
//! tenant; with it off, the tenant must be named.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use common::pg::TestDb;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tenancy::core::{CreateTenant, TenantError, TenantInfo};
use tenancy::integration::TenantDatabase;
use tenancy::{Tenancy, TenancyConfig};
use tower::ServiceExt;

async fn stack(url: &str, bridge: bool) -> Tenancy {
    let mut config = TenancyConfig::default();
    config.store.url = Some(url.to_owned());
    config.store.change_feed = false;
    config.resolution.resolvers = Some(vec!["header".into()]);
    config.resolution.trusted_resolvers = vec!["header".into()];
    config.integration.sql_context_bridge = bridge;
    tenancy::configure(config).await.unwrap()
}

/// The tenant setting a transaction runs with.
async fn setting_in(tx: &mut tenancy::isolation::TenantTransaction) -> String {
    sqlx::query_scalar("SELECT current_setting('app.tenant_id')")
        .fetch_one(&mut ***tx)
        .await
        .unwrap()
}

async fn create(tenancy: &Tenancy, slug: &str) -> TenantInfo {
    tenancy
        .lifecycle()
        .unwrap()
        .create(CreateTenant::new(slug.parse().unwrap(), slug))
        .await
        .unwrap()
        .into_result()
        .unwrap()
}

#[tokio::test]
async fn handlers_begin_tenant_transactions_without_naming_the_tenant() {
    let db = TestDb::create("umbrella_bridge").await;
    let tenancy = stack(&db.url, true).await;
    let acme = create(&tenancy, "acme").await;
    let globex = create(&tenancy, "globex").await;
    let database = tenancy.database().unwrap();
    assert!(database.is_bridged());

    async fn setting(State(db): State<Arc<TenantDatabase>>) -> Result<String, StatusCode> {
        let mut tx = db
            .begin()
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        let value = setting_in(&mut tx).await;
        tx.commit()
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(value)
    }
    let app = Router::new()
        .route("/setting", get(setting))
        .with_state(Arc::clone(&database))
        .layer(tenancy.guard())
        .layer(tenancy.layer().unwrap());
    for tenant in [&acme, &globex] {
        let request = Request::get("/setting")
            .header("x-tenant-id", tenant.id.to_string())
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, tenant.id.to_string());
    }

    // Outside a tenant scope, the bridge fails closed.
    assert!(matches!(
        database.begin().await,
        Err(TenantError::Resolution(_))
    ));
    // Naming the tenant always works.
    let mut tx = database.begin_for(globex.id).await.unwrap();
    assert_eq!(setting_in(&mut tx).await, globex.id.to_string());
    tx.rollback().await.unwrap();

    let report = tenancy.health().await;
    let isolation = &report.components["isolation"];
    assert_eq!(
        isolation.status,
        tenancy::core::HealthStatus::Healthy,
        "{isolation:?}"
    );
    assert_eq!(isolation.details["strategy"], "row_level");
    assert!(isolation.details.contains_key("pool_size"));
    let registry = tenancy
        .require::<tenancy::isolation::IsolationRegistry>()
        .unwrap();
    assert!(
        registry.names().any(|n| n == "schema"),
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
    let refused = tenancy::core::context::scope(context, database.begin()).await;
    let Err(TenantError::Configuration(message)) = refused else {
        panic!("begin must be refused with the bridge off");
    };
    assert!(
        message.contains("integration.sql_context_bridge is off"),
        "{message}"
    );
    let mut tx = database.begin_for(acme.id).await.unwrap();
    assert_eq!(setting_in(&mut tx).await, acme.id.to_string());
    tx.commit().await.unwrap();
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
    let mut config = TenancyConfig::default();
    config.store.url = Some(db.app_role_url().await);
    config.resolution.resolvers = Some(vec!["header".into()]);
    config.resolution.trusted_resolvers = vec!["header".into()];
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
    assert_eq!(
        tenancy.health().await.status,
        tenancy::core::HealthStatus::Healthy
    );
    tenancy.shutdown().await.unwrap();
    db.drop_db().await;
}
