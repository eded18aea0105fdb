//! A minimal multi-tenant axum service: the tenancy stack on the in-memory store, its resolving
//! layer, its guard and the `Tenant` extractor.
//!
//! ```sh
//! cargo run -p tenancy --features axum --example axum_minimal
//! ```
//!
//! It serves on a free port of 127.0.0.1, sends itself a few requests, prints what each got and
//! checks it; it exits non-zero when an answer is not the expected one.

use axum::Router;
use axum::routing::get;
use figment::Figment;
use figment::providers::{Format, Yaml};
use tenancy::core::CreateTenant;
use tenancy::{TenancyConfig, Tenant, TenantRejection};

/// The `tenancy:` section of the application's configuration file (here inline; an application
/// calls `TenancyConfig::load(Some("config/app.yaml".as_ref()))`). No `store.url`: the in-memory
/// store.
const CONFIG: &str = "
tenancy:
  resolution:
    # Tried in this order: the `x-tenant-id` header (a tenant id), then the path
    # `/tenants/{slug}/...`.
    resolvers: [header, path]
    # This service has no user accounts, so there is no one whose membership to check. A service
    # with users keeps the default `strict` and gives a `TenantMembership` (docs/security.md).
    membership: off
";

/// Needs an active tenant: the `Tenant` extractor answers 403, with the reason, when there is
/// none.
async fn whoami(Tenant(tenant): Tenant) -> String {
    format!(
        "{} (found by {})",
        tenant.tenant().slug,
        tenant.resolved_by()
    )
}

/// Takes the reason a request has no tenant as a value, to answer it its own way.
async fn status(tenant: Result<Tenant, TenantRejection>) -> String {
    match tenant {
        Ok(tenant) => format!("welcome to {}", tenant.tenant().name),
        Err(TenantRejection::Suspended) => "this account is suspended".to_owned(),
        Err(other) => format!("no tenant: {}", other.code()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TenancyConfig::from_figment(&Figment::from(Yaml::string(CONFIG)))?;
    // Validates the configuration, opens the store, builds and boots every part.
    let tenancy = tenancy::configure(config).await?;

    // Tenants are created (and later suspended, reactivated...) through the lifecycle service.
    let lifecycle = tenancy.lifecycle();
    let acme = lifecycle
        .create(CreateTenant::new("acme".parse()?, "Acme Corp"))
        .await?
        .into_result()?;
    let initech = lifecycle
        .create(CreateTenant::new("initech".parse()?, "Initech"))
        .await?
        .into_result()?;
    lifecycle
        .suspend(initech.id, Some("unpaid invoice".into()))
        .await?
        .into_result()?;

    // The resolving layer wraps every route: it finds the tenant and runs the request in its
    // scope. The guard refuses requests without an active tenant on the routes it wraps.
    let tenant_routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/tenants/{slug}/whoami", get(whoami))
        .layer(tenancy.guard());
    let app = Router::new()
        .merge(tenant_routes)
        .route("/status", get(status))
        .layer(tenancy.layer());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("serving on {base}");
    tokio::spawn(async move { axum::serve(listener, app).await });

    // What a client gets.
    let acme_id = acme.id.to_string();
    let initech_id = initech.id.to_string();
    let client = reqwest::Client::new();
    let (status, body) = send(&client, &base, "/whoami", Some(&acme_id)).await?;
    assert_eq!((status, body.as_str()), (200, "acme (found by header)"));

    let (status, body) = send(&client, &base, "/tenants/acme/whoami", None).await?;
    assert_eq!((status, body.as_str()), (200, "acme (found by path)"));

    // No tenant named: the guard answers 403 with a JSON body saying why.
    let (status, body) = send(&client, &base, "/whoami", None).await?;
    assert_eq!(status, 403);
    assert!(body.contains("\"tenant_required\""), "{body}");

    // A suspended tenant is refused by the guard, and answered by the handler that asks why.
    let (status, body) = send(&client, &base, "/whoami", Some(&initech_id)).await?;
    assert_eq!(status, 403);
    assert!(body.contains("\"tenant_suspended\""), "{body}");
    let (status, body) = send(&client, &base, "/status", Some(&initech_id)).await?;
    assert_eq!((status, body.as_str()), (200, "this account is suspended"));
    let (status, body) = send(&client, &base, "/status", Some(&acme_id)).await?;
    assert_eq!((status, body.as_str()), (200, "welcome to Acme Corp"));

    // Stops every part in reverse boot order, then closes the store.
    tenancy.shutdown().await?;
    println!("axum_minimal: every answer was the expected one");
    Ok(())
}

/// Sends `GET {base}{path}`, naming `tenant` in the `x-tenant-id` header when given; prints and
/// returns the status and body.
async fn send(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    tenant: Option<&str>,
) -> Result<(u16, String), reqwest::Error> {
    let mut request = client.get(format!("{base}{path}"));
    if let Some(tenant) = tenant {
        request = request.header("x-tenant-id", tenant);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    println!(
        "GET {path} (x-tenant-id: {}) -> {status} {body}",
        tenant.unwrap_or("none")
    );
    Ok((status, body))
}
