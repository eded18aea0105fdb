//! Schema per tenant: each tenant gets a PostgreSQL schema of its own (`tenant_<32 hex>`),
//! created and migrated when the tenant is created, and the application's queries, written without
//! any schema name or tenant column, reach the request's tenant's tables only.
//!
//! The tenant migrations are the files of `examples/schema_per_tenant/migrations/`
//! (`NNNN_name.sql`, `isolation.migrations_dir`). A tenant transaction sets the search path to the
//! tenant's schema (never `public`) for the transaction alone.
//!
//! ```sh
//! cargo xtask pg start   # or any PostgreSQL: DATABASE_URL=postgres://user@host/db
//! export ...             # the lines it prints
//! cargo run -p tenancy --features sql,axum --example schema_per_tenant
//! ```
//!
//! It creates a database of its own, serves on a free port of 127.0.0.1, writes and reads notes
//! as two tenants, checks that each has its own schema, tables and rows, and drops the database;
//! it exits non-zero when a check fails.

#[path = "../support/mod.rs"]
mod support;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use support::{BoxError, ScratchDatabase};
use tenancy::core::CreateTenant;
use tenancy::isolation::{Migrations, TenantMigrator, tenant_schema};
use tenancy::{TenancyConfig, TenantDatabase};

/// The tenant migrations, next to this file.
const MIGRATIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/schema_per_tenant/migrations"
);

/// `POST /notes`: stores a note in the request's tenant's own `notes` table.
async fn add_note(
    State(db): State<TenantDatabase>,
    body: String,
) -> Result<StatusCode, StatusCode> {
    let mut tx = db.begin_current().await.map_err(internal)?;
    sqlx::query("INSERT INTO notes (body) VALUES ($1)")
        .bind(body)
        .execute(&mut **tx)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(StatusCode::CREATED)
}

/// `GET /notes`: the request's tenant's notes, and the schema they came from.
async fn notes(
    State(db): State<TenantDatabase>,
) -> Result<Json<(String, Vec<String>)>, StatusCode> {
    let mut tx = db.begin_current().await.map_err(internal)?;
    let schema = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut **tx)
        .await
        .map_err(internal)?;
    let bodies = sqlx::query_scalar("SELECT body FROM notes ORDER BY created_at, id")
        .fetch_all(&mut **tx)
        .await
        .map_err(internal)?;
    Ok(Json((schema, bodies)))
}

fn internal(error: impl std::fmt::Display) -> StatusCode {
    eprintln!("tenant data: {error}");
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn run(url: String) -> Result<(), BoxError> {
    // Tenants in the PostgreSQL store; `schema` isolation: creating a tenant creates its schema
    // and applies the migrations to it. Tenants are named by the `x-tenant-id` header; the
    // service has no user accounts, so there is no membership to check (docs/security.md).
    let mut config = TenancyConfig::default();
    config.store.url = Some(url);
    config.isolation.strategy = "schema".into();
    config.isolation.migrations_dir = Some(MIGRATIONS.into());
    config.resolution.resolvers = Some(vec![tenancy::resolution::Builtin::Header]);
    config.resolution.membership = tenancy::MembershipMode::Off;
    let tenancy = tenancy::configure(config).await?;
    let mut tenants = Vec::new();
    for slug in ["acme", "globex"] {
        let command = CreateTenant::new(slug.parse()?, slug);
        let tenant = tenancy.lifecycle().create(command).await?.into_result()?;
        println!(
            "created {} with the schema {}",
            tenant.slug,
            tenant_schema(tenant.id)
        );
        tenants.push(tenant);
    }

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
    for tenant in &tenants {
        let note = format!("{}'s plan", tenant.slug);
        let response = client
            .post(&url)
            .header("x-tenant-id", tenant.id.to_string())
            .body(note.clone())
            .send()
            .await?;
        println!(
            "POST /notes as {}: {note:?} -> {}",
            tenant.slug,
            response.status()
        );
        assert_eq!(response.status(), 201);
    }
    for tenant in &tenants {
        let response = client
            .get(&url)
            .header("x-tenant-id", tenant.id.to_string())
            .send()
            .await?;
        let (schema, notes): (String, Vec<String>) = response.error_for_status()?.json().await?;
        println!("GET /notes as {} -> {notes:?} from {schema}", tenant.slug);
        assert_eq!(
            schema,
            tenant_schema(tenant.id),
            "{}'s own schema",
            tenant.slug
        );
        assert_eq!(notes, [format!("{}'s plan", tenant.slug)]);
    }

    // Each schema recorded the version it is at (one catalog query tells which are behind). A
    // release that adds `0003_...sql` migrates every existing tenant with the same migrator, one
    // transaction per tenant, resumable (or `tenancy schemas migrate --dir ...`); here every
    // tenant is current already.
    let migrator = TenantMigrator::new(db.pool().clone(), Migrations::from_dir(MIGRATIONS)?);
    for (tenant, version) in migrator.schema_versions().await? {
        println!("{} is at version {version}", tenant_schema(tenant));
        assert_eq!(
            version, 2,
            "both files were applied when the tenant was created"
        );
    }
    let report = migrator.run(|_| {}).await?;
    println!(
        "migrator: {} schemas, {} already current, {} migrated",
        report.schemas,
        report.already_current,
        report.done.len()
    );
    assert!(report.is_complete() && report.already_current == tenants.len());

    tenancy.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let scratch = ScratchDatabase::create("schemas").await?;
    // In a task of its own, so that a failed check (a panic) still drops the database below.
    let outcome = tokio::spawn(run(scratch.url.clone())).await;
    scratch.remove().await?;
    outcome??;
    println!("schema_per_tenant: every tenant had its own schema, tables and rows");
    Ok(())
}
