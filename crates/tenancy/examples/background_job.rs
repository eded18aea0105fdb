//! A background job that keeps the tenant of the request that started it.
//!
//! Inside a request, the tenant lives in a task-local scope (`tenancy::context`). Work spawned
//! with `tenancy::context::spawn` runs in that tenant's scope too, also after the response has
//! gone; work spawned with plain `tokio::spawn` runs in none, so it can neither use nor leak a
//! tenant by accident.
//!
//! ```sh
//! cargo run -p tenancy --features axum --example background_job
//! ```
//!
//! It serves on a free port of 127.0.0.1, starts jobs as two tenants, prints what each job saw
//! and checks it; it exits non-zero when a job saw the wrong tenant.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tenancy::core::CreateTenant;
use tenancy::{Slug, Tenant, TenantError, context};
use tokio::sync::mpsc;

/// What a job reports: how it was spawned, and the tenant in its scope.
type Report = (&'static str, Option<Slug>);

/// Starts the request's tenant's report in the background and answers at once.
async fn start_report(
    State(reports): State<mpsc::UnboundedSender<Report>>,
    Tenant(tenant): Tenant,
) -> StatusCode {
    println!("POST /reports for {}", tenant.tenant().slug);

    // Keeps the tenant: the job runs in the request's tenant scope.
    let sender = reports.clone();
    context::spawn(async move {
        // `require` fails closed: code that must have a tenant gets an error without one.
        let tenant = context::require().map(|c| c.tenant().slug).ok();
        let _ = sender.send(("context::spawn", tenant));
    });

    // Loses it: a plain tokio task starts with no tenant in scope.
    tokio::spawn(async move {
        let tenant = context::current().map(|c| c.tenant().slug);
        let _ = reports.send(("tokio::spawn", tenant));
    });
    StatusCode::ACCEPTED
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Tenants are named by the `x-tenant-id` header. The service has no user accounts, so there
    // is no membership to check (see docs/security.md before turning it off in yours).
    let mut config = tenancy::TenancyConfig::default();
    config.resolution.resolvers = Some(vec![tenancy::resolution::Builtin::Header]);
    config.resolution.membership = tenancy::MembershipMode::Off;
    let tenancy = tenancy::configure(config).await?;

    let (sender, mut reports) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/reports", post(start_report))
        .with_state(sender)
        .layer(tenancy.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/reports", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    for slug in ["acme", "globex"] {
        let tenant = tenancy
            .lifecycle()
            .create(CreateTenant::new(slug.parse()?, slug))
            .await?
            .into_result()?;
        let response = client
            .post(&url)
            .header("x-tenant-id", tenant.id.to_string())
            .send()
            .await?;
        assert_eq!(response.status(), 202, "POST /reports as {slug}");

        // The request started two jobs: wait for both reports, in whichever order they come.
        let mut seen = [reports.recv().await, reports.recv().await];
        seen.sort();
        for (spawned_by, tenant) in seen.iter().flatten() {
            let tenant = tenant.map_or("no tenant".to_owned(), |slug| slug.to_string());
            println!("  the job started with {spawned_by} saw {tenant}");
        }
        assert_eq!(
            seen,
            [
                Some(("context::spawn", Some(tenant.slug))),
                Some(("tokio::spawn", None)),
            ],
            "the job started with context::spawn keeps {slug}; the plain task has no tenant"
        );
    }

    // Outside any request there is no tenant either, and code that needs one is told so.
    assert!(matches!(
        context::require(),
        Err(TenantError::Resolution(_))
    ));

    tenancy.shutdown().await?;
    println!("background_job: every job saw the expected tenant");
    Ok(())
}
