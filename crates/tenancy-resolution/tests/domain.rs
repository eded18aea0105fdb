//! The `domain` resolver through the middleware: hosts normalised, hits from the validator's
//! cache, unknown hosts cached as such, changes invalidating, bad hosts costing no lookup.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use common::CountingStore;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tenancy_core::{CacheInvalidation, DomainName, TenantStatus, TenantStore};
use tenancy_resolution::{
    Builtin, ResolutionConfig, ResolveTenantLayer, ResolvedTenant, TenantRejection, TenantValidator,
};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

type Service = BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

/// Answers `<slug> <resolver>`, or the rejection's code.
async fn whoami(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.extensions().get::<ResolvedTenant>() {
        Some(tenant) => format!("{} {}", tenant.slug, tenant.resolved_by()),
        None => request
            .extensions()
            .get::<TenantRejection>()
            .map_or("no-rejection", |r| r.code())
            .to_owned(),
    };
    Ok(Response::new(Full::from(body)))
}

fn config(resolvers: Vec<Builtin>) -> ResolutionConfig {
    ResolutionConfig {
        trusted_resolvers: Some(resolvers.iter().map(|r| r.name().to_owned()).collect()),
        resolvers: Some(resolvers),
        subdomain_base_domain: Some("app.example.com".into()),
        ..ResolutionConfig::default()
    }
}

fn stack(store: &Arc<CountingStore>, config: &ResolutionConfig) -> (Service, TenantValidator) {
    let validator = TenantValidator::new(store.clone(), &config.validator).unwrap();
    let layer = ResolveTenantLayer::new(config, validator.clone()).unwrap();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(whoami));
    (BoxCloneService::new(service), validator)
}

async fn send(service: &Service, host: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .uri("/whoami")
        .header("host", host)
        .body(Full::default())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn domain(name: &str) -> DomainName {
    name.parse().unwrap()
}

#[tokio::test]
async fn a_tenants_domain_resolves_in_any_spelling_and_hits_cost_no_lookup() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    store
        .inner
        .add_domain(acme.id, &domain("acme.com"), true)
        .await
        .unwrap();
    store
        .inner
        .add_domain(acme.id, &domain("münchen.example"), false)
        .await
        .unwrap();
    let (service, _) = stack(&store, &config(vec![Builtin::Domain]));

    assert_eq!(
        send(&service, "acme.com").await,
        (StatusCode::OK, "acme domain".to_owned())
    );
    assert_eq!(
        store.lookups(),
        1,
        "one lookup loads the domain and the tenant"
    );
    for host in ["ACME.com", "acme.com:8443", "acme.com.", "Acme.Com.:443"] {
        assert_eq!(
            send(&service, host).await,
            (StatusCode::OK, "acme domain".to_owned()),
            "{host}"
        );
    }
    assert_eq!(store.lookups(), 1, "every spelling hits the cache");
    // An internationalised name arrives in its ASCII form.
    assert_eq!(
        send(&service, "xn--mnchen-3ya.example").await.1,
        "acme domain"
    );
}

#[tokio::test]
async fn unknown_hosts_are_cached_as_such_until_a_domain_is_added() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let (service, validator) = stack(&store, &config(vec![Builtin::Domain]));

    for _ in 0..3 {
        assert_eq!(
            send(&service, "shop.acme.example").await.1,
            "tenant_required"
        );
    }
    assert_eq!(store.lookups(), 1, "an unknown host is looked up once");

    // The lifecycle invalidates the domain it adds (here by hand, as it would).
    let shop = domain("shop.acme.example");
    store.inner.add_domain(acme.id, &shop, false).await.unwrap();
    validator.invalidate_domain(&shop).await;
    assert_eq!(send(&service, "shop.acme.example").await.1, "acme domain");

    // And the one it removes.
    store.inner.remove_domain(acme.id, &shop).await.unwrap();
    validator.invalidate_domain(&shop).await;
    assert_eq!(
        send(&service, "shop.acme.example").await.1,
        "tenant_required"
    );
}

#[tokio::test]
async fn hosts_that_are_no_domain_cost_no_lookup() {
    let store = CountingStore::new();
    let (service, _) = stack(&store, &config(vec![Builtin::Domain]));
    for host in [
        "localhost",
        "localhost:3000",
        "127.0.0.1:8080",
        "[::1]:8080",
        "ac_me.com",
        "acme.com:https",
        "-acme.com",
        &format!("{}.com", "a".repeat(64)),
    ] {
        assert_eq!(send(&service, host).await.1, "tenant_required", "{host}");
    }
    assert_eq!(store.lookups(), 0);
}

#[tokio::test]
async fn a_domain_follows_its_tenants_status_and_a_store_failure_answers_503() {
    let store = CountingStore::new();
    let beta = store.tenant("beta", TenantStatus::Suspended).await;
    store
        .inner
        .add_domain(beta.id, &domain("beta.example"), true)
        .await
        .unwrap();
    let (service, _) = stack(&store, &config(vec![Builtin::Domain]));
    assert_eq!(
        send(&service, "beta.example").await,
        (StatusCode::OK, "tenant_suspended".to_owned()),
        "the layer lets the request through with the reason; a guard answers 403"
    );

    store.set_failing(true);
    let (status, body) = send(&service, "cold.example").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("tenant_store_unavailable"), "{body}");
    store.set_failing(false);
    assert_eq!(send(&service, "cold.example").await.1, "tenant_required");
}

#[tokio::test]
async fn subdomains_of_the_base_domain_stay_the_subdomain_resolvers() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let evil = store.tenant("evil", TenantStatus::Active).await;
    // A tenant claiming another's subdomain as its custom domain gains nothing.
    store
        .inner
        .add_domain(evil.id, &domain("acme.app.example.com"), true)
        .await
        .unwrap();
    store
        .inner
        .add_domain(acme.id, &domain("acme.com"), true)
        .await
        .unwrap();
    let (service, _) = stack(&store, &config(vec![Builtin::Subdomain, Builtin::Domain]));
    assert_eq!(
        send(&service, "acme.app.example.com").await.1,
        "acme subdomain"
    );
    assert_eq!(send(&service, "acme.com").await.1, "acme domain");
}
