//! The migrator over 200 tenant schemas: stop at a failure, resume, and a no-op run from one catalog
//! query.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::TestDb;
use futures_util::StreamExt;
use tenancy_core::{IsolationStrategy, TenantId};
use tenancy_isolation_sql::{
    DeprovisionPolicy, Migration, Migrations, SchemaStrategy, TenantMigrator, tenant_schema,
};

const TENANTS: usize = 200;

fn v1() -> Vec<Migration> {
    vec![
        Migration::new(
            1,
            "notes",
            "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        )
        .unwrap(),
    ]
}

fn v2() -> Migrations {
    let mut list = v1();
    list.push(
        Migration::new(
            2,
            "tags",
            "CREATE TABLE tags (id int PRIMARY KEY); ALTER TABLE notes ADD COLUMN tag int",
        )
        .unwrap(),
    );
    Migrations::new(list).unwrap()
}

async fn comment_version(db: &TestDb, tenant: TenantId) -> Option<String> {
    sqlx::query_scalar(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
    )
    .bind(tenant_schema(tenant))
    .fetch_one(&db.admin)
    .await
    .unwrap()
}

async fn applied_versions(db: &TestDb, tenant: TenantId) -> Vec<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM \"{}\".tenancy_schema_migrations ORDER BY version",
        tenant_schema(tenant)
    )))
    .fetch_all(&db.admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_schemas_stop_at_a_failure_resume_and_noop_from_one_query() {
    let db = TestDb::new("migr").await;
    let v1_migrator = TenantMigrator::new(db.admin.clone(), Migrations::new(v1()).unwrap());
    let strategy = Arc::new(SchemaStrategy::new(
        db.admin.clone(),
        v1_migrator,
        DeprovisionPolicy::Drop,
    ));
    let mut tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::new()).collect();
    tenants.sort_unstable();
    futures_util::stream::iter(tenants.iter().copied())
        .for_each_concurrent(4, |t| {
            let strategy = strategy.clone();
            async move { strategy.provision(t).await.unwrap() }
        })
        .await;

    // A tenant in the middle has a table in the way of migration 2.
    let broken = tenants[TENANTS / 2];
    db.exec(&format!(
        "CREATE TABLE \"{}\".tags (x text)",
        tenant_schema(broken)
    ))
    .await;

    let migrator = TenantMigrator::new(db.admin.clone(), v2());
    let calls = AtomicUsize::new(0);
    let report = migrator
        .run(|p| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!(p.total, TENANTS);
        })
        .await
        .unwrap();
    assert_eq!(report.schemas, TENANTS);
    assert_eq!(report.already_current, 0);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].tenant, broken);
    assert!(
        report.failed[0].error.to_string().contains("0002_tags"),
        "{}",
        report.failed[0].error
    );
    assert!(
        !report.pending.is_empty(),
        "the run stops at the first failure"
    );
    assert_eq!(
        report.done.len() + report.failed.len() + report.pending.len(),
        TENANTS
    );
    assert_eq!(calls.load(Ordering::Relaxed), report.done.len() + 1);
    assert!(!report.is_complete());
    // Done tenants have migration 2 and its record, committed together; the broken one kept nothing
    // of it; pending ones are untouched.
    for t in &report.done {
        assert_eq!(applied_versions(&db, *t).await, [1, 2]);
        assert_eq!(
            comment_version(&db, *t).await.as_deref(),
            Some("tenancy:version=2")
        );
    }
    assert_eq!(applied_versions(&db, broken).await, [1]);
    assert_eq!(
        comment_version(&db, broken).await.as_deref(),
        Some("tenancy:version=1")
    );
    for t in &report.pending {
        assert_eq!(applied_versions(&db, *t).await, [1]);
    }

    // Fix the broken tenant and resume: only the rest run.
    db.exec(&format!("DROP TABLE \"{}\".tags", tenant_schema(broken)))
        .await;
    let first_done = report.done.len();
    let report = migrator.run(|_| {}).await.unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(report.already_current, first_done);
    assert_eq!(report.done.len(), TENANTS - first_done);
    for t in &tenants {
        assert_eq!(applied_versions(&db, *t).await, [1, 2]);
    }

    // Nothing to do: the run finds it from one catalog query and opens no tenant transaction, even
    // with every tenant's migrations table locked by another transaction.
    let mut locker = db.admin.begin().await.unwrap();
    for t in &tenants {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE \"{}\".tenancy_schema_migrations IN ACCESS EXCLUSIVE MODE",
            tenant_schema(*t)
        )))
        .execute(&mut *locker)
        .await
        .unwrap();
    }
    // The timeout only turns a hang (a migrator touching a locked table) into a failure.
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        migrator.run(|_| panic!("no tenant to migrate")),
    )
    .await
    .expect("the no-op run touched a tenant table")
    .unwrap();
    locker.rollback().await.unwrap();
    assert_eq!(report.schemas, TENANTS);
    assert_eq!(report.already_current, TENANTS);
    assert_eq!(report.catalog_queries, 1);
    assert_eq!(report.tenant_transactions, 0);
    assert!(report.done.is_empty() && report.is_complete());
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_of_the_version_table_release_are_adopted_and_changed_files_refused() {
    let db = TestDb::new("migadopt").await;
    // A schema as the release with a plain version table left it: migration 1 applied.
    let tenant = TenantId::new();
    let schema = tenant_schema(tenant);
    db.exec(&format!(
        "CREATE SCHEMA \"{schema}\"; \
         CREATE TABLE \"{schema}\".notes (id int PRIMARY KEY, body text); \
         CREATE TABLE \"{schema}\".tenancy_migrations (version integer PRIMARY KEY, \
             name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO \"{schema}\".tenancy_migrations (version, name) VALUES (1, 'notes'); \
         COMMENT ON SCHEMA \"{schema}\" IS 'tenancy:version=1'"
    ))
    .await;
    let migrator = TenantMigrator::new(db.admin.clone(), v2());
    let report = migrator.run(|_| {}).await.unwrap();
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(report.done, [tenant]);
    assert_eq!(
        applied_versions(&db, tenant).await,
        [1, 2],
        "1 adopted, 2 applied"
    );
    let old: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_regclass('\"{schema}\".tenancy_migrations')::text"
    )))
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(old, None, "the old version table is gone");

    // A released file that changed is refused, naming it; nothing of the run is kept.
    let mut changed = v2().as_slice().to_vec();
    changed[0] = Migration::new(1, "notes", "CREATE TABLE notes (id bigint PRIMARY KEY)").unwrap();
    changed.push(Migration::new(3, "more", "CREATE TABLE more (id int)").unwrap());
    let migrator = TenantMigrator::new(db.admin.clone(), Migrations::new(changed).unwrap());
    let err = migrator.migrate_tenant(tenant).await.unwrap_err();
    assert!(err.to_string().contains("0001_notes differs"), "{err}");

    // A schema recording a migration this binary does not have is refused too.
    let migrator = TenantMigrator::new(db.admin.clone(), Migrations::new(v1()).unwrap());
    let err = migrator.migrate_tenant(tenant).await.unwrap_err();
    assert!(err.to_string().contains("records migration 0002"), "{err}");
    assert_eq!(applied_versions(&db, tenant).await, [1, 2]);
    db.drop().await;
}
