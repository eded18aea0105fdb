//! Schema per tenant, as the application role: separation, deprovisioning, hostile input.

mod common;

use std::sync::Arc;

use common::TestDb;
use tenancy_core::{IsolationStrategy, TenantError, TenantId};
use tenancy_isolation_sql::{
    DeprovisionPolicy, Migration, Migrations, SchemaStrategy, TenantDatabase, TenantMigrator,
    tenant_of_schema, tenant_schema, validate_identifier,
};

fn notes_migrations() -> Migrations {
    Migrations::new(vec![
        Migration::new(
            1,
            "notes",
            "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)",
        )
        .unwrap(),
    ])
    .unwrap()
}

/// A schema strategy (DDL as the superuser, DML granted to the application role), and a `public`
/// table named like the tenant table, holding a row no tenant may ever read.
async fn setup(
    prefix: &str,
    policy: DeprovisionPolicy,
) -> (TestDb, Arc<SchemaStrategy>, TenantDatabase) {
    let db = TestDb::with_app_connections(prefix, 1).await;
    db.exec(&format!(
        "CREATE TABLE public.notes (id int, body text); \
         INSERT INTO public.notes VALUES (1, 'public secret'); \
         GRANT SELECT ON public.notes TO \"{}\"",
        db.app_role()
    ))
    .await;
    let migrator = TenantMigrator::new(db.admin.clone(), notes_migrations())
        .grant_to(&db.app_role())
        .unwrap();
    let strategy = Arc::new(SchemaStrategy::new(db.admin.clone(), migrator, policy));
    let tenants = TenantDatabase::new(db.app.clone(), strategy.clone());
    (db, strategy, tenants)
}

async fn write_note(tenants: &TenantDatabase, tenant: TenantId, body: &str) {
    let mut tx = tenants.begin(tenant).await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ($1)")
        .bind(body)
        .execute(&mut **tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn read_notes(
    tenants: &TenantDatabase,
    tenant: TenantId,
) -> Result<Vec<String>, TenantError> {
    let mut tx = tenants.begin(tenant).await?;
    let notes = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| TenantError::storage("reading notes", e))?;
    tx.commit().await?;
    Ok(notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_sees_only_its_tenant_schema() {
    let (db, strategy, tenants) = setup("schsep", DeprovisionPolicy::Rename).await;
    let (a, b) = (TenantId::new(), TenantId::new());
    strategy.provision(a).await.unwrap();
    strategy.provision(a).await.unwrap(); // idempotent
    strategy.provision(b).await.unwrap();
    write_note(&tenants, a, "a note").await;
    write_note(&tenants, b, "b note").await;
    assert_eq!(read_notes(&tenants, a).await.unwrap(), ["a note"]);
    assert_eq!(read_notes(&tenants, b).await.unwrap(), ["b note"]);

    let mut tx = tenants.begin(a).await.unwrap();
    let (path, resolved): (String, String) = sqlx::query_as(
        "SELECT current_setting('search_path'), n.nspname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 'notes'::regclass",
    )
    .fetch_one(&mut **tx)
    .await
    .unwrap();
    assert_eq!(path, format!("{}, pg_temp", tenant_schema(a)));
    assert_eq!(resolved, tenant_schema(a));
    // B's tables are not on A's path.
    let b_visible: bool = sqlx::query_scalar(
        "SELECT pg_table_is_visible(c.oid) FROM pg_class c JOIN pg_namespace n \
         ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'notes'",
    )
    .bind(tenant_schema(b))
    .fetch_one(&mut **tx)
    .await
    .unwrap();
    assert!(!b_visible);
    tx.commit().await.unwrap();

    // The single pooled connection is back to the default path after commit.
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert!(!path.contains("tenant_"), "{path}");

    // Provisioning again keeps data and the migration record.
    strategy.provision(a).await.unwrap();
    assert_eq!(read_notes(&tenants, a).await.unwrap(), ["a note"]);
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".tenancy_schema_migrations",
        tenant_schema(a)
    )))
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(applied, 1);
    db.drop().await;
}

async fn schemas_like(db: &TestDb, pattern: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
        .bind(pattern)
        .fetch_all(&db.admin)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rename_the_tenant_fails_instead_of_reading_public() {
    let (db, strategy, tenants) = setup("schren", DeprovisionPolicy::Rename).await;
    let a = TenantId::new();
    strategy.provision(a).await.unwrap();
    write_note(&tenants, a, "kept").await;
    strategy.deprovision(a).await.unwrap();
    strategy.deprovision(a).await.unwrap(); // idempotent

    let err = read_notes(&tenants, a).await.unwrap_err();
    assert!(matches!(err, TenantError::Isolation { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not exist") || format!("{err:?}").contains("does not exist")
    );
    // The data is archived, not lost.
    let archived = schemas_like(&db, &format!("archived_{}_%", a.simple())).await;
    assert_eq!(archived.len(), 1, "{archived:?}");
    let kept: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT body FROM \"{}\".notes",
        archived[0]
    )))
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(kept, "kept");
    assert!(schemas_like(&db, &tenant_schema(a)).await.is_empty());
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_drop_the_tenant_fails_instead_of_reading_public() {
    let (db, strategy, tenants) = setup("schdrop", DeprovisionPolicy::Drop).await;
    let (a, b) = (TenantId::new(), TenantId::new());
    strategy.provision(a).await.unwrap();
    strategy.provision(b).await.unwrap();
    write_note(&tenants, b, "b stays").await;
    strategy.deprovision(a).await.unwrap();
    strategy.deprovision(a).await.unwrap(); // idempotent
    let err = read_notes(&tenants, a).await.unwrap_err();
    assert!(matches!(err, TenantError::Isolation { .. }), "{err:?}");
    assert!(
        schemas_like(&db, &format!("%{}%", a.simple()))
            .await
            .is_empty()
    );
    // Never provisioned: fails the same way.
    assert!(read_notes(&tenants, TenantId::new()).await.is_err());
    assert_eq!(read_notes(&tenants, b).await.unwrap(), ["b stays"]);

    // Even a raw path set like a tenant transaction does would not fall back to public:
    // with the schema gone, the unqualified name does not resolve.
    let mut tx = db.app.begin().await.unwrap();
    sqlx::query("SELECT set_config('search_path', quote_ident($1) || ', pg_temp', true)")
        .bind(tenant_schema(a))
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("SELECT body FROM notes")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01")),
        "{err}"
    );
    tx.rollback().await.unwrap();
    db.drop().await;
}

#[test]
fn hostile_inputs_never_become_names() {
    let long = "a".repeat(64);
    let multibyte = format!("{}é", "a".repeat(62)); // 'é' crosses byte 63
    let hostile = [
        "tenant\"; DROP SCHEMA public CASCADE; --",
        "x'; SELECT pg_sleep(10); --",
        long.as_str(),
        multibyte.as_str(),
        "pg_catalog",
        "pg_temp",
        "PUBLIC",
        "Public",
        "public",
        "TENANT_0190D5A07C1E7A2B9C3D4E5F60718293",
        "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293; drop table x",
        "",
    ];
    for input in hostile {
        // They do not parse into a TenantId, the only input of schema names.
        assert!(input.parse::<TenantId>().is_err(), "{input:?} parsed");
        // Nor pass for a tenant schema, nor for an identifier (except plain lowercase words).
        assert_eq!(tenant_of_schema(input), None, "{input:?}");
    }
    for input in [
        long.as_str(),
        multibyte.as_str(),
        "pg_catalog",
        "Public",
        "a\"b",
        "a'b",
    ] {
        assert!(validate_identifier("schema", input).is_err(), "{input:?}");
    }
    // Case variants of a real id parse to the same id and so to one schema name.
    let id: TenantId = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293".parse().unwrap();
    let upper: TenantId = "0190D5A0-7C1E-7A2B-9C3D-4E5F60718293".parse().unwrap();
    assert_eq!(tenant_schema(id), tenant_schema(upper));
    assert_eq!(tenant_schema(id), "tenant_0190d5a07c1e7a2b9c3d4e5f60718293");
}
