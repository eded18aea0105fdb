//! End to end through an axum `Router`: the `Tenant` extractor, the guard layer, subdomain and
//! path resolution, 403 and 503 bodies.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use common::{CountingStore, TableMembership};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tenancy_core::{TenantStatus, context};
use tenancy_resolution::{
    AuthenticatedUser, RequireTenantLayer, ResolutionConfig, ResolveTenantLayer, Tenant,
    TenantRejection, TenantValidator,
};
use tower::ServiceExt;

async fn whoami(Tenant(tenant): Tenant) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": tenant.id,
        "slug": tenant.slug,
        "resolved_by": tenant.resolved_by(),
        "context": context::current_id(),
    }))
}

async fn maybe(tenant: Option<Tenant>) -> String {
    tenant.map_or_else(|| "anonymous".to_owned(), |t| t.slug.to_string())
}

fn config() -> ResolutionConfig {
    ResolutionConfig {
        subdomain_base_domain: Some("app.example.com".into()),
        ..ResolutionConfig::default()
    }
}

fn app(store: &Arc<CountingStore>, membership: Arc<TableMembership>) -> Router {
    let validator = TenantValidator::new(store.clone(), &config().validator).unwrap();
    let tenancy = ResolveTenantLayer::builder(&config(), validator)
        .membership(membership)
        .build()
        .unwrap();
    Router::new()
        .route("/whoami", get(whoami))
        .route("/tenants/{tenant}/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .merge(
            Router::new()
                .route("/guarded", get(|| async { "inside" }))
                .route_layer(RequireTenantLayer::new()),
        )
        .layer(tenancy)
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get_as(uri: &str, host: &str, user: &str) -> Request<Body> {
    let mut request = Request::builder()
        .uri(uri)
        .header("host", host)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(AuthenticatedUser(user.into()));
    request
}

#[tokio::test]
async fn whoami_sees_the_tenant_by_subdomain_path_and_header() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let app = app(&store, TableMembership::with([("alice", acme.id)]));

    let (status, body) = call(
        &app,
        get_as("/whoami", "ACME.app.example.com:8080", "alice"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["slug"], "acme");
    assert_eq!(body["resolved_by"], "subdomain");
    assert_eq!(body["id"], acme.id.to_string());
    assert_eq!(
        body["context"],
        acme.id.to_string(),
        "handler runs in the tenant scope"
    );

    let (_, body) = call(
        &app,
        get_as("/tenants/acme/whoami", "api.example.org", "alice"),
    )
    .await;
    assert!(body.contains(r#""resolved_by":"path""#), "{body}");

    let mut by_header = get_as("/whoami", "api.example.org", "alice");
    by_header
        .headers_mut()
        .insert("x-tenant-id", acme.id.to_string().parse().unwrap());
    let (_, body) = call(&app, by_header).await;
    assert!(body.contains(r#""resolved_by":"header""#), "{body}");

    assert_eq!(
        call(&app, get_as("/guarded", "acme.app.example.com", "alice")).await,
        (StatusCode::OK, "inside".into())
    );
    assert_eq!(
        call(&app, get_as("/maybe", "acme.app.example.com", "alice"))
            .await
            .1,
        "acme"
    );
    assert_eq!(store.lookups(), 1);
}

#[tokio::test]
async fn inactive_suspended_and_unknown_tenants_get_403_saying_why() {
    let store = CountingStore::new();
    let off = store.tenant("off", TenantStatus::Inactive).await;
    let banned = store.tenant("banned", TenantStatus::Suspended).await;
    let app = app(
        &store,
        TableMembership::with([("alice", off.id), ("alice", banned.id)]),
    );
    for (host, code) in [
        ("off.app.example.com", "tenant_inactive"),
        ("banned.app.example.com", "tenant_suspended"),
        // Named by an untrusted resolver: a tenant the user does not belong to, existing or not.
        ("ghost.app.example.com", "tenant_not_member"),
        ("app.example.com", "tenant_required"),
    ] {
        for uri in ["/whoami", "/guarded"] {
            let response = app
                .clone()
                .oneshot(get_as(uri, host, "alice"))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host}{uri}");
            assert_eq!(response.headers()["content-type"], "application/json");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], code, "{host}{uri}");
            assert!(body["message"].is_string());
        }
        // The middleware itself never rejects: an optional extractor sees no tenant.
        assert_eq!(
            call(&app, get_as("/maybe", host, "alice")).await,
            (StatusCode::OK, "anonymous".into())
        );
    }
}

#[tokio::test]
async fn a_non_member_gets_no_tenant_through_the_router() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let app = app(&store, TableMembership::with([("alice", acme.id)]));
    assert_eq!(
        call(&app, get_as("/whoami", "acme.app.example.com", "mallory"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, get_as("/whoami", "acme.app.example.com", "alice"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_store_failure_gives_503_through_the_router() {
    let store = CountingStore::new();
    store.tenant("acme", TenantStatus::Active).await;
    let app = app(&store, TableMembership::with([]));
    store.set_failing(true);
    let (status, body) = call(&app, get_as("/whoami", "acme.app.example.com", "alice")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "tenant_store_unavailable");
    // Requests that name no tenant do not touch the store and still work.
    assert_eq!(
        call(&app, get_as("/maybe", "www.example.org", "alice")).await,
        (StatusCode::OK, "anonymous".into())
    );
}

#[tokio::test]
async fn require_tenant_guards_a_whole_router_with_one_layer() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let off = store.tenant("off", TenantStatus::Inactive).await;
    let validator = TenantValidator::new(store.clone(), &config().validator).unwrap();
    let tenancy = ResolveTenantLayer::builder(&config(), validator)
        .membership(TableMembership::with([
            ("alice", acme.id),
            ("alice", off.id),
        ]))
        .build()
        .unwrap()
        .require_tenant();
    let app = Router::new().route("/whoami", get(whoami)).layer(tenancy);
    let (status, body) = call(&app, get_as("/whoami", "acme.app.example.com", "alice")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["slug"], "acme");
    assert_eq!(body["context"], acme.id.to_string());
    for (host, user, rejection) in [
        ("off.app.example.com", "alice", TenantRejection::Inactive),
        ("ghost.app.example.com", "alice", TenantRejection::NotMember),
        (
            "acme.app.example.com",
            "mallory",
            TenantRejection::NotMember,
        ),
        ("app.example.com", "alice", TenantRejection::Missing),
    ] {
        let (status, body) = call(&app, get_as("/whoami", host, user)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host} as {user}");
        assert_eq!(body, rejection.json_body(), "{host} as {user}");
    }
}

#[tokio::test]
async fn the_extractor_on_a_route_without_the_layer_is_a_server_error() {
    let app: Router = Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe));
    for uri in ["/whoami", "/maybe"] {
        let (status, body) = call(&app, get_as(uri, "acme.app.example.com", "alice")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(body, TenantRejection::MissingLayer.json_body());
    }
    // The guard without the resolving layer in front of it says the same.
    let guarded = Router::new()
        .route("/guarded", get(|| async { "ok" }))
        .layer(RequireTenantLayer::new());
    assert_eq!(
        call(
            &guarded,
            get_as("/guarded", "acme.app.example.com", "alice")
        )
        .await
        .0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn a_handler_can_answer_the_reason_itself() {
    async fn status(tenant: Result<Tenant, TenantRejection>) -> String {
        match tenant {
            Ok(tenant) => format!("welcome to {}", tenant.slug),
            Err(TenantRejection::Suspended) => "this account is suspended".to_owned(),
            Err(other) => other.code().to_owned(),
        }
    }
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let banned = store.tenant("banned", TenantStatus::Suspended).await;
    let validator = TenantValidator::new(store.clone(), &config().validator).unwrap();
    let layer = ResolveTenantLayer::builder(&config(), validator)
        .membership(TableMembership::with([
            ("alice", acme.id),
            ("alice", banned.id),
        ]))
        .build()
        .unwrap();
    let app = Router::new().route("/status", get(status)).layer(layer);
    for (host, user, expected) in [
        ("acme.app.example.com", "alice", "welcome to acme"),
        (
            "banned.app.example.com",
            "alice",
            "this account is suspended",
        ),
        ("banned.app.example.com", "mallory", "tenant_not_member"),
        ("app.example.com", "alice", "tenant_required"),
    ] {
        assert_eq!(
            call(&app, get_as("/status", host, user)).await,
            (StatusCode::OK, expected.to_owned()),
            "{host} as {user}"
        );
    }
}
