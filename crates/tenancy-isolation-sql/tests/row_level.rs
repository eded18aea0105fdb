//! Row-level security through `TenantDatabase`, as the fixture's non-superuser application role.

mod common;

use std::sync::Arc;

use common::TestDb;
use sqlx::postgres::PgPoolOptions;
use tenancy_core::{CreateTenant, TenantContext, TenantError, TenantId, TenantInfo, context};
use tenancy_isolation_sql::{
    RlsAudit, RowLevelStrategy, TenantDatabase, TenantTransaction, protect_table_sql,
};

/// A database with the protected table `items` (owned by the superuser, RLS forced), one row per
/// tenant, DML granted to the application role.
async fn items_db(prefix: &str, app_connections: u32) -> (TestDb, TenantId, TenantId) {
    let db = TestDb::with_app_connections(prefix, app_connections).await;
    db.exec(
        "CREATE TABLE items (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), \
         tenant_id uuid NOT NULL, body text NOT NULL); \
         CREATE INDEX items_tenant ON items (tenant_id)",
    )
    .await;
    for statement in protect_table_sql("items", "tenant_id", "app.tenant_id").unwrap() {
        db.exec(&statement).await;
    }
    db.exec(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON items TO \"{}\"",
        db.app_role()
    ))
    .await;
    let (a, b) = (TenantId::new(), TenantId::new());
    db.exec(&format!(
        "INSERT INTO items (tenant_id, body) VALUES ('{a}', 'a1'), ('{b}', 'b1')"
    ))
    .await;
    (db, a, b)
}

async fn bodies(tx: &mut sqlx::PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT body FROM items ORDER BY body")
        .fetch_all(tx)
        .await
        .unwrap()
}

/// Runs `sql` in `tx` with `tenant` as `$1`; how many rows it affected.
async fn run(
    tx: &mut TenantTransaction,
    sql: &'static str,
    tenant: TenantId,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(sql)
        .bind(tenant.as_uuid())
        .execute(&mut ***tx)
        .await?;
    Ok(done.rows_affected())
}

fn is_rls_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42501"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_cannot_select_insert_update_or_delete_b_rows() {
    let (db, a, b) = items_db("rls", 2).await;
    let tenants = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()));

    let mut tx = tenants.begin(a).await.unwrap();
    assert_eq!(bodies(&mut tx).await, ["a1"]);
    // Explicitly asking for B's rows finds none.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE tenant_id = $1")
        .bind(b.as_uuid())
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    for sql in [
        "UPDATE items SET body = 'stolen' WHERE tenant_id = $1",
        "DELETE FROM items WHERE tenant_id = $1",
    ] {
        assert_eq!(run(&mut tx, sql, b).await.unwrap(), 0, "{sql}");
    }
    // Own rows are writable.
    let inserted = run(
        &mut tx,
        "INSERT INTO items (tenant_id, body) VALUES ($1, 'a2')",
        a,
    );
    assert_eq!(inserted.await.unwrap(), 1);
    tx.commit().await.unwrap();

    // Inserting a row for B, or moving an own row to B, violates WITH CHECK.
    for sql in [
        "INSERT INTO items (tenant_id, body) VALUES ($1, 'planted')",
        "UPDATE items SET tenant_id = $1 WHERE body = 'a1'",
    ] {
        let mut tx = tenants.begin(a).await.unwrap();
        let err = run(&mut tx, sql, b).await.unwrap_err();
        assert!(is_rls_violation(&err), "{sql}: {err}");
        tx.rollback().await.unwrap();
    }

    // B's data is untouched (read as the superuser, who bypasses RLS).
    let b_rows: Vec<String> =
        sqlx::query_scalar("SELECT body FROM items WHERE tenant_id = $1 ORDER BY body")
            .bind(b.as_uuid())
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(b_rows, ["b1"]);
    let mut tx = tenants.begin(b).await.unwrap();
    assert_eq!(bodies(&mut tx).await, ["b1"]);
    tx.commit().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_sees_no_rows_and_begin_current_fails_closed() {
    let (db, a, _b) = items_db("rlsnone", 1).await;
    let tenants = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()));
    // A fresh session: the setting is NULL.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // After a tenant transaction on the same (only) connection: the setting is '' and still 0 rows,
    // no cast error.
    tenants.begin(a).await.unwrap().commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert_eq!(n, 0);

    let err = tenants.begin_current().await.unwrap_err();
    assert!(matches!(err, TenantError::Resolution(_)), "{err:?}");

    let info = TenantInfo::from_command(
        CreateTenant::new("acme".parse().unwrap(), "Acme").with_id(a),
        chrono_now(),
    )
    .unwrap();
    let info = Arc::new(info);
    let ctx = TenantContext::new(Arc::clone(&info), "test".into());
    let seen = context::scope(ctx, async {
        let mut tx = tenants.begin_current().await.unwrap();
        let seen = bodies(&mut tx).await;
        tx.commit().await.unwrap();
        seen
    })
    .await;
    assert_eq!(seen, ["a1"]);

    // With the context bridge off, even a tenant in scope must be named.
    let named_only = tenants.clone().with_context_bridge(false);
    assert!(!named_only.is_bridged());
    let ctx = TenantContext::new(info, "test".into());
    let err = context::scope(ctx, named_only.begin_current())
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::Configuration(_)), "{err:?}");
    db.drop().await;
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_handed_from_a_to_b_carries_nothing_of_a() {
    let (db, a, b) = items_db("rlspool", 1).await;
    let tenants = TenantDatabase::new(db.app.clone(), Arc::new(RowLevelStrategy::default()));

    let mut tx = tenants.begin(a).await.unwrap();
    let pid_a: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    assert_eq!(bodies(&mut tx).await, ["a1"]);
    tx.commit().await.unwrap();

    // Same connection (the pool holds one), outside any tenant transaction: nothing of A.
    let (pid, setting): (i32, Option<String>) =
        sqlx::query_as("SELECT pg_backend_pid(), current_setting('app.tenant_id', true)")
            .fetch_one(&db.app)
            .await
            .unwrap();
    assert_eq!(pid, pid_a, "the pool of one must reuse the connection");
    assert!(
        setting.as_deref().unwrap_or("").is_empty(),
        "A leaked: {setting:?}"
    );

    // A rolled-back transaction leaks nothing either.
    let tx = tenants.begin(a).await.unwrap();
    tx.rollback().await.unwrap();
    let setting: Option<String> =
        sqlx::query_scalar("SELECT current_setting('app.tenant_id', true)")
            .fetch_one(&db.app)
            .await
            .unwrap();
    assert!(setting.as_deref().unwrap_or("").is_empty());

    let mut tx = tenants.begin(b).await.unwrap();
    let pid_b: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut **tx)
        .await
        .unwrap();
    assert_eq!(pid_b, pid_a);
    assert_eq!(bodies(&mut tx).await, ["b1"]);
    tx.commit().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_name_is_configurable() {
    let db = TestDb::new("rlsset").await;
    db.exec("CREATE TABLE docs (tenant_id uuid NOT NULL, body text NOT NULL)")
        .await;
    for statement in protect_table_sql("docs", "tenant_id", "shop.tenant").unwrap() {
        db.exec(&statement).await;
    }
    let (a, b) = (TenantId::new(), TenantId::new());
    db.exec(&format!(
        "INSERT INTO docs VALUES ('{a}', 'a'), ('{b}', 'b'); GRANT SELECT ON docs TO \"{}\"",
        db.app_role()
    ))
    .await;
    let strategy = RowLevelStrategy::with_setting("shop.tenant").unwrap();
    let tenants = TenantDatabase::new(db.app.clone(), Arc::new(strategy));
    let mut tx = tenants.begin(b).await.unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT body FROM docs")
        .fetch_all(&mut **tx)
        .await
        .unwrap();
    assert_eq!(seen, ["b"]);
    tx.commit().await.unwrap();
    let report = RlsAudit::new()
        .setting("shop.tenant")
        .unwrap()
        .run(&db.app)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_an_isolation_error() {
    let options = common::app_options(&tenancy_core::conformance::test_database_url())
        .database("tiso_no_such_database");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(options);
    let tenants = TenantDatabase::new(pool, Arc::new(RowLevelStrategy::default()));
    let err = tenants.begin(TenantId::new()).await.unwrap_err();
    assert!(matches!(err, TenantError::Isolation { .. }), "{err:?}");
}
