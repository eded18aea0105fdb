//! Custom domains: a tenant brings its own host names, and a request is resolved by its `Host`.
//!
//! The `domain` resolver looks the request's host up among tenants' domains (through the
//! validator's cache). Hosts are normalised first: `ACME.Example.:443` is `acme.example`.
//! Domains are added and removed through the lifecycle service, which invalidates the caches.
//!
//! ```sh
//! cargo run -p tenancy --features axum --example custom_domains
//! ```
//!
//! It serves on a free port of 127.0.0.1 and sends itself requests with chosen `Host` headers (as
//! `curl -H 'Host: acme.example' http://127.0.0.1:PORT/whoami` would), prints what each got and
//! checks it; it exits non-zero when an answer is not the expected one.

use axum::Router;
use axum::routing::get;
use figment::Figment;
use figment::providers::{Format, Yaml};
use tenancy::core::{CreateTenant, DomainName};
use tenancy::{TenancyConfig, Tenant};

const CONFIG: &str = "
tenancy:
  resolution:
    # The whole host as a tenant's custom domain. Listed alone here; next to `subdomain` it runs
    # after it, so a tenant can never claim another tenant's subdomain.
    resolvers: [domain]
    # The Host header is the client's choice: without user accounts to check membership of,
    # membership is off (a service with users keeps `strict`, see docs/security.md).
    membership: off
";

async fn whoami(Tenant(tenant): Tenant) -> String {
    format!(
        "{} (found by {})",
        tenant.tenant().slug,
        tenant.resolved_by()
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TenancyConfig::from_figment(&Figment::from(Yaml::string(CONFIG)))?;
    let tenancy = tenancy::configure(config).await?;
    let lifecycle = tenancy.lifecycle();
    let acme = lifecycle
        .create(CreateTenant::new("acme".parse()?, "Acme"))
        .await?
        .into_result()?;

    // A domain is parsed first: lower case, ASCII (internationalised names in punycode), at least
    // two labels, never an IP address. Each belongs to one tenant; one of a tenant's is primary.
    let main_domain: DomainName = "acme.example".parse()?;
    let portal: DomainName = "Portal.ACME.example".parse()?;
    lifecycle
        .add_domain(acme.id, &main_domain, true)
        .await?
        .into_result()?;
    lifecycle
        .add_domain(acme.id, &portal, false)
        .await?
        .into_result()?;
    for domain in lifecycle.domains(acme.id).await? {
        let primary = if domain.primary { " (primary)" } else { "" };
        println!("acme owns {}{primary}", domain.domain);
    }

    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(tenancy.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/whoami", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    for host in ["acme.example", "ACME.Example.:8080", "portal.acme.example"] {
        let (status, body) = send(&client, &url, Some(host)).await?;
        assert_eq!(
            (status, body.as_str()),
            (200, "acme (found by domain)"),
            "{host}"
        );
    }
    // A host no tenant owns, and an IP address (never a tenant's domain): no tenant, 403.
    for host in [Some("globex.example"), None] {
        let (status, body) = send(&client, &url, host).await?;
        assert_eq!(status, 403, "{host:?}");
        assert!(body.contains("\"tenant_required\""), "{body}");
    }

    // Removing a domain takes effect at once: its cache entry is invalidated.
    lifecycle
        .remove_domain(acme.id, &portal)
        .await?
        .into_result()?;
    let (status, _) = send(&client, &url, Some("portal.acme.example")).await?;
    assert_eq!(status, 403, "a removed domain no longer resolves");

    tenancy.shutdown().await?;
    println!("custom_domains: every answer was the expected one");
    Ok(())
}

/// Sends `GET url` with the given `Host` header (by default the client sends the server's
/// address, `127.0.0.1:PORT`); prints and returns the status and body.
async fn send(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
) -> Result<(u16, String), reqwest::Error> {
    let mut request = client.get(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    println!(
        "GET /whoami (Host: {}) -> {status} {body}",
        host.unwrap_or("127.0.0.1:PORT")
    );
    Ok((status, body))
}
