//! The admin API and the console mounted in an application's own router, under prefixes of its
//! choice, on the in-memory store.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tenancy_admin::{Admin, AdminError};
use tenancy_core::{InMemoryStore, IsolationPlan, IsolationStrategy, TenantError, TenantId};
use tenancy_lifecycle::{Provisioner, TenantLifecycle};
use tenancy_overrides::ConfigService;
use tower::ServiceExt as _;

#[derive(Debug)]
struct Nothing;

#[async_trait::async_trait]
impl IsolationStrategy for Nothing {
    fn name(&self) -> &str {
        "row_level"
    }
    async fn provision(&self, _: TenantId) -> Result<(), TenantError> {
        Ok(())
    }
    async fn deprovision(&self, _: TenantId) -> Result<(), TenantError> {
        Ok(())
    }
    async fn plan(&self, _: TenantId) -> Result<IsolationPlan, TenantError> {
        Ok(IsolationPlan::default())
    }
}

fn services() -> (Arc<TenantLifecycle>, Arc<ConfigService>) {
    let store = Arc::new(InMemoryStore::new());
    let lifecycle = Arc::new(TenantLifecycle::new(
        store.clone(),
        Provisioner::new(Arc::new(Nothing), true),
    ));
    let config = Arc::new(ConfigService::new(store, Default::default()).unwrap());
    (lifecycle, config)
}

fn admin() -> Admin {
    let (lifecycle, config) = services();
    Admin::new("the-admin-token", lifecycle, config).unwrap()
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

#[test]
fn tokens_that_no_client_could_send_are_refused() {
    let (lifecycle, config) = services();
    let made = Admin::new("", Arc::clone(&lifecycle), Arc::clone(&config));
    assert_eq!(made.unwrap_err(), AdminError::EmptyToken);
    let made = Admin::new(" padded ", lifecycle, config);
    assert_eq!(made.unwrap_err(), AdminError::TokenWhitespace);
}

#[tokio::test]
async fn the_json_api_works_under_the_applications_prefix() {
    let app: Router = Router::new().nest("/ops/api", admin().router());
    let response = app
        .clone()
        .oneshot(get("/ops/api/tenants", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .clone()
        .oneshot(get("/ops/api/tenants", Some("the-admin-tokeN")))
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .oneshot(get("/ops/api/tenants", Some("the-admin-token")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"items":[],"next":null}"#);
}

#[cfg(feature = "console")]
#[tokio::test]
async fn the_console_works_under_the_applications_prefix() {
    use tenancy_admin::console::Console;

    let app: Router = Router::new().nest("/ops/console", Console::new(admin()).router());
    let request = get;

    // The console: links, redirects and the cookie's path follow the prefix.
    let response = app
        .clone()
        .oneshot(request("/ops/console/tenants", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/ops/console/sign-in");
    let sign_in = Request::post("/ops/console/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("token=the-admin-token"))
        .unwrap();
    let response = app.clone().oneshot(sign_in).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/ops/console/tenants");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Path=/ops/console;"), "{cookie}");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = Request::get("/ops/console/tenants")
        .header(header::COOKIE, &session)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(page).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("href=\"/ops/console/assets/console.css\""));
    assert!(html.contains("data-events=\"/ops/console/events\""));
    assert!(html.contains("No tenant matches."));
}

/// An application's own placement source: one tenant on a named node, the others nowhere.
#[cfg(feature = "console")]
#[derive(Debug)]
struct OneNode(TenantId);

#[cfg(feature = "console")]
#[async_trait::async_trait]
impl tenancy_core::PlacementSource for OneNode {
    async fn placement(
        &self,
        tenant: &tenancy_core::TenantInfo,
    ) -> Result<Option<tenancy_core::Placement>, TenantError> {
        Ok((tenant.id == self.0)
            .then(|| tenancy_core::Placement::new("node <b>7</b>").detail("schema", "tenant_<x>")))
    }
}

#[cfg(feature = "console")]
#[tokio::test]
async fn a_tenant_page_shows_the_placement_its_source_reports_escaped() {
    use tenancy_admin::console::Console;
    use tenancy_core::CreateTenant;

    let (lifecycle, config) = services();
    let mut ids = Vec::new();
    for slug in ["placed", "nowhere"] {
        let created = lifecycle
            .create(CreateTenant::new(slug.parse().unwrap(), slug))
            .await
            .unwrap()
            .into_result()
            .unwrap();
        ids.push(created.id);
    }
    let admin = Admin::new("the-admin-token", lifecycle, config).unwrap();
    let console = Console::new(admin).placement(Arc::new(OneNode(ids[0])));
    let app: Router = Router::new().nest("/console", console.router());
    let sign_in = Request::post("/console/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("token=the-admin-token"))
        .unwrap();
    let response = app.clone().oneshot(sign_in).await.unwrap();
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = async |slug: &str| {
        let request = Request::get(format!("/console/tenants/{slug}"))
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let placed = page("placed").await;
    assert!(
        placed.contains(r#"<h2 id="placement">Placement</h2>"#),
        "{placed}"
    );
    assert!(
        placed.contains("<p>node &lt;b&gt;7&lt;/b&gt;</p>"),
        "{placed}"
    );
    assert!(
        placed.contains("<dt>schema</dt><dd>tenant_&lt;x&gt;</dd>"),
        "{placed}"
    );
    let nowhere = page("nowhere").await;
    assert!(
        !nowhere.contains("id=\"placement\""),
        "no placement, no section"
    );
}
