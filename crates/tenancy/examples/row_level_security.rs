//! Row-level security with sqlx: tenants share one `notes` table, and PostgreSQL itself keeps
//! each tenant's rows from every other tenant.
//!
//! The table has a tenant column, row-level security enabled and forced, and one policy that
//! compares the column with the transaction's tenant setting (`app.tenant_id`). The application
//! connects as a role that the policy applies to (not superuser, not BYPASSRLS, not the table's
//! owner) and reaches the table only through `TenantDatabase` transactions, which set the tenant
//! for the transaction alone.
//!
//! ```sh
//! cargo xtask pg start   # or any PostgreSQL: DATABASE_URL=postgres://user@host/db
//! export ...             # the lines it prints
//! cargo run -p tenancy --features sql,axum --example row_level_security
//! ```
//!
//! It creates a database of its own (and a role for the application), serves on a free port of
//! 127.0.0.1, writes and reads notes as two tenants, checks that neither can read or write the
//! other's, and drops what it created; it exits non-zero when a check fails.

mod support;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use sqlx::AssertSqlSafe;
use support::{BoxError, ScratchDatabase};
use tenancy::core::CreateTenant;
use tenancy::isolation::RlsAudit;
use tenancy::{StackBuilder, TenancyConfig, TenantDatabase};

/// The application's migration, run by the table's owner (here the server URL's user).
/// `tenancy::isolation::protect_table_sql` writes the same three row-level security statements.
const MIGRATION: &str = "
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- An insert that names no tenant gets the transaction's.
    tenant_id uuid NOT NULL DEFAULT nullif(current_setting('app.tenant_id', true), '')::uuid,
    body text NOT NULL
);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
-- FORCE: the policy applies to the table's owner too.
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
-- USING filters what is read, WITH CHECK refuses what is written. With no tenant set, the
-- setting is NULL and no row matches: no tenant means no rows, not all of them.
CREATE POLICY tenant_isolation ON notes
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
";

/// `POST /notes`: stores a note for the request's tenant.
async fn add_note(
    State(db): State<TenantDatabase>,
    body: String,
) -> Result<StatusCode, StatusCode> {
    // The request's tenant, from the tenancy layer: its id is the transaction's `app.tenant_id`.
    let mut tx = db.begin_current().await.map_err(internal)?;
    sqlx::query("INSERT INTO notes (body) VALUES ($1)")
        .bind(body)
        .execute(&mut **tx)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(StatusCode::CREATED)
}

/// `GET /notes`: every note the request's tenant can see. No `WHERE tenant_id = ...`: the policy
/// is the filter, so a forgotten condition cannot leak another tenant's rows.
async fn notes(State(db): State<TenantDatabase>) -> Result<Json<Vec<String>>, StatusCode> {
    let mut tx = db.begin_current().await.map_err(internal)?;
    let bodies = sqlx::query_scalar("SELECT body FROM notes ORDER BY id")
        .fetch_all(&mut **tx)
        .await
        .map_err(internal)?;
    Ok(Json(bodies))
}

fn internal(error: impl std::fmt::Display) -> StatusCode {
    eprintln!("tenant data: {error}");
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn run(owner_url: String, app_role: String, app_url: String) -> Result<(), BoxError> {
    // The schema, by its owner; the application role may read and write, nothing more.
    let owner = sqlx::PgPool::connect(&owner_url).await?;
    sqlx::raw_sql(MIGRATION).execute(&owner).await?;
    let grant = format!("GRANT SELECT, INSERT ON notes TO \"{app_role}\"");
    sqlx::raw_sql(AssertSqlSafe(grant)).execute(&owner).await?;

    // The stack, as the application role: tenants in the PostgreSQL store, `row_level` isolation
    // (the default strategy), tenants named by the `x-tenant-id` header. The service has no user
    // accounts, so there is no membership to check (docs/security.md).
    let mut config = TenancyConfig::default();
    config.store.url = Some(app_url.clone());
    config.resolution.resolvers = Some(vec![tenancy::resolution::Builtin::Header]);
    config.resolution.membership = tenancy::MembershipMode::Off;
    // At boot, the audit checks the role and every table of `public` with a tenant column: a
    // table without ENABLE + FORCE and a tenant policy would stop the stack from starting.
    let audit = RlsAudit::from_config(&config.isolation)?.schemas(&["public"])?;
    let tenancy = StackBuilder::new(config).rls_audit(audit).build().await?;
    let mut tenants = Vec::new();
    for slug in ["acme", "globex"] {
        let command = CreateTenant::new(slug.parse()?, slug);
        tenants.push(tenancy.lifecycle().create(command).await?.into_result()?);
    }
    let (acme, globex) = (&tenants[0], &tenants[1]);

    // `database()` is there because the store is PostgreSQL.
    let db = tenancy
        .database()
        .ok_or("the stack runs on PostgreSQL")?
        .clone();
    let app = Router::new()
        .route("/notes", get(notes).post(add_note))
        .with_state(db.clone())
        .layer(tenancy.guard())
        .layer(tenancy.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/notes", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    for (tenant, note) in [(acme, "acme's roadmap"), (globex, "globex's payroll")] {
        let response = client
            .post(&url)
            .header("x-tenant-id", tenant.id.to_string())
            .body(note)
            .send()
            .await?;
        println!(
            "POST /notes as {}: {note:?} -> {}",
            tenant.slug,
            response.status()
        );
        assert_eq!(response.status(), 201);
    }
    for (tenant, expected) in [(acme, "acme's roadmap"), (globex, "globex's payroll")] {
        let response = client
            .get(&url)
            .header("x-tenant-id", tenant.id.to_string())
            .send()
            .await?;
        let notes: Vec<String> = response.error_for_status()?.json().await?;
        println!("GET /notes as {} -> {notes:?}", tenant.slug);
        assert_eq!(notes, [expected], "{} sees its own note only", tenant.slug);
    }

    // Even asking for them by name, globex cannot read acme's rows or write rows as acme.
    let mut tx = db.begin(globex.id).await?;
    let acme_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM notes WHERE tenant_id = $1")
        .bind(acme.id.as_uuid())
        .fetch_one(&mut **tx)
        .await?;
    println!("as globex, rows of acme: {acme_rows}");
    assert_eq!(acme_rows, 0);
    let forged = sqlx::query("INSERT INTO notes (tenant_id, body) VALUES ($1, 'forged')")
        .bind(acme.id.as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(|e| e.to_string());
    println!("as globex, insert a note for acme -> {forged:?}");
    let refused = forged.is_err_and(|e| e.contains("violates row-level security policy"));
    assert!(refused, "the policy's WITH CHECK refuses the row");
    tx.rollback().await?;

    // Outside a tenant transaction, the application role sees no rows at all.
    let plain = sqlx::PgPool::connect(&app_url).await?;
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&plain)
        .await?;
    println!("as the application role, no tenant set: {visible} rows");
    assert_eq!(visible, 0);
    plain.close().await;

    owner.close().await;
    tenancy.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut scratch = ScratchDatabase::create("rls").await?;
    let (app_role, app_url) = scratch.application_role().await?;
    // In a task of its own, so that a failed check (a panic) still drops the database below.
    let outcome = tokio::spawn(run(scratch.url.clone(), app_role, app_url)).await;
    scratch.remove().await?;
    outcome??;
    println!("row_level_security: no tenant could reach another's rows");
    Ok(())
}
