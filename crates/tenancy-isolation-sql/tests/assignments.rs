//! Per-tenant strategy assignment persisted in PostgreSQL survives a restart.

mod common;

use std::sync::Arc;

use common::TestDb;
use sqlx::postgres::PgPoolOptions;
use tenancy_core::{IsolationStep, IsolationStrategy, TenantError, TenantId};
use tenancy_isolation_sql::{
    AssignedStrategy, AssignmentStore, DeprovisionPolicy, IsolationRegistry, PgIsolationStore,
    SchemaStrategy,
};

fn registry(db: &TestDb) -> Arc<IsolationRegistry> {
    let mut registry = IsolationRegistry::with_defaults();
    registry.register(Arc::new(SchemaStrategy::without_migrations(
        db.admin.clone(),
        DeprovisionPolicy::Rename,
    )));
    Arc::new(registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_survive_a_restart_and_unknown_names_are_errors() {
    let db = TestDb::new("assign").await;
    PgIsolationStore::install(&db.admin).await.unwrap();
    PgIsolationStore::install(&db.admin).await.unwrap(); // idempotent
    PgIsolationStore::grant(&db.admin, &db.app_role())
        .await
        .unwrap();
    let (on_schema, on_default) = (TenantId::new(), TenantId::new());

    let store = Arc::new(PgIsolationStore::new(db.app.clone()));
    let assigned = AssignedStrategy::new(registry(&db), "row_level", store).unwrap();
    assigned.assign(on_schema, "schema").await.unwrap();
    let err = assigned.assign(on_default, "shema").await.unwrap_err();
    assert!(matches!(err, TenantError::Configuration(_)), "{err:?}");

    // A new pool, store and registry: the assignment is still there.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            common::app_options(&tenancy_core::conformance::test_database_url()).database(&db.name),
        )
        .await
        .unwrap();
    let store = Arc::new(PgIsolationStore::new(pool.clone()));
    let restarted = AssignedStrategy::new(registry(&db), "row_level", store.clone()).unwrap();
    assert_eq!(
        restarted.strategy_for(on_schema).await.unwrap().name(),
        "schema"
    );
    assert_eq!(
        restarted.strategy_for(on_default).await.unwrap().name(),
        "row_level"
    );
    let plan = restarted.plan(on_schema).await.unwrap();
    assert!(
        matches!(&plan.steps[..], [IsolationStep::SearchPath { .. }]),
        "{plan:?}"
    );
    let plan = restarted.plan(on_default).await.unwrap();
    assert!(
        matches!(&plan.steps[..], [IsolationStep::SetLocal { .. }]),
        "{plan:?}"
    );

    // A stored name no longer registered is a configuration error, never a silent fallback.
    store.assign(on_default, "gone").await.unwrap();
    let err = restarted.plan(on_default).await.unwrap_err();
    assert!(
        matches!(&err, TenantError::Configuration(m) if m.contains("gone")),
        "{err:?}"
    );
    store.unassign(on_default).await.unwrap();
    store.unassign(on_default).await.unwrap();
    assert_eq!(
        restarted.strategy_for(on_default).await.unwrap().name(),
        "row_level"
    );

    // An unknown default is rejected up front.
    assert!(AssignedStrategy::new(registry(&db), "nope", store).is_err());
    pool.close().await;
    db.drop().await;
}
