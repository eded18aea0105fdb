//! The demo server end to end over real HTTP: started in-process on 127.0.0.1:0 with a temporary
//! SQLite file, driven with reqwest.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tenancy_cli::demo::{self, Demo, DemoOptions};
use tenancy_core::TenantId;

struct Fixture {
    demo: Demo,
    http: Client,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let demo = demo::start(DemoOptions::new("127.0.0.1:0".parse().unwrap(), url))
        .await
        .unwrap();
    let base = format!("http://{}", demo.addr());
    Fixture {
        demo,
        http: Client::new(),
        base,
        _dir: dir,
    }
}

impl Fixture {
    fn id(&self, slug: &str) -> TenantId {
        self.demo.tenant(slug).unwrap().id
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn whoami_by_header(&self, id: TenantId) -> StatusCode {
        self.get("/api/whoami", &[("x-tenant-id", &id.to_string())])
            .await
            .0
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/admin{path}", self.base))
            .bearer_auth(self.demo.admin_token());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn tenant_count(&self) -> usize {
        let (status, page) = self.admin(reqwest::Method::GET, "/tenants", None).await;
        assert_eq!(status, StatusCode::OK);
        page["items"].as_array().unwrap().len()
    }
}

#[tokio::test]
async fn whoami_by_each_of_the_five_resolvers() {
    let f = start().await;
    assert!(f.demo.seeded());
    let acme = f.id("acme");
    let token = f.demo.token("alice", Some(acme)).unwrap();
    let bearer = format!("Bearer {token}");
    let acme_header = acme.to_string();
    let cases = [
        (
            "/api/whoami",
            vec![("x-tenant-id", acme_header.as_str())],
            "header",
        ),
        ("/api/whoami", vec![("host", "acme.localhost")], "subdomain"),
        ("/api/whoami", vec![("host", demo::ACME_DOMAIN)], "domain"),
        ("/api/whoami", vec![("host", "ACME.test:8080")], "domain"),
        ("/tenants/acme/api/whoami", vec![], "path"),
        (
            "/api/whoami",
            vec![("authorization", &*bearer)],
            "jwt_claim",
        ),
    ];
    for (path, headers, resolver) in cases {
        let (status, body) = f.get(path, &headers).await;
        assert_eq!(status, StatusCode::OK, "{resolver}: {body}");
        assert_eq!(body["id"], acme.to_string(), "{resolver}");
        assert_eq!(body["slug"], "acme");
        assert_eq!(body["name"], "Acme Corporation");
        assert_eq!(body["status"], "active");
        assert_eq!(body["plan"], "pro");
        assert_eq!(body["resolved_by"], resolver);
    }
    let (_, body) = f.get("/api/whoami", &[("authorization", &bearer)]).await;
    assert_eq!(body["user"], "alice", "the token's sub is the user");

    let (status, body) = f.get("/tenants/globex/api/config", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["config"], json!({"theme": "light", "max_users": 10}));
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn suspended_unknown_and_missing_tenants_get_403() {
    let f = start().await;
    let initech = f.id("initech");
    assert_eq!(f.whoami_by_header(initech).await, StatusCode::FORBIDDEN);
    assert_eq!(
        f.get("/tenants/initech/api/whoami", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.whoami_by_header(TenantId::new()).await,
        StatusCode::FORBIDDEN
    );
    let (status, body) = f.get("/tenants/nobody/api/whoami", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "tenant_not_found");
    let (status, body) = f.get("/tenants/initech/api/whoami", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "tenant_suspended");
    let (status, body) = f.get("/api/whoami", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "tenant_required");
    assert_eq!(
        f.get("/api/whoami", &[("host", "initech.localhost")])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.get("/api/whoami", &[]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        f.get("/api/config", &[("x-tenant-id", "not-a-uuid")])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn membership_applies_to_authenticated_users_on_untrusted_resolvers() {
    let f = start().await;
    let (acme, globex) = (f.id("acme"), f.id("globex"));
    let alice = format!("Bearer {}", f.demo.token("alice", None).unwrap());
    let bob = format!("Bearer {}", f.demo.token("bob", None).unwrap());

    // alice belongs to acme: the header is accepted, and she is the user.
    let acme_header = acme.to_string();
    let (status, body) = f
        .get(
            "/api/whoami",
            &[("authorization", &alice), ("x-tenant-id", &acme_header)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["user"].as_str(), body["resolved_by"].as_str()),
        (Some("alice"), Some("header"))
    );

    // bob does not, by header, subdomain or path.
    for (path, header) in [
        ("/api/whoami", ("x-tenant-id", acme_header.as_str())),
        ("/api/whoami", ("host", "acme.localhost")),
        ("/tenants/acme/api/whoami", ("x-unused", "")),
    ] {
        let (status, body) = f.get(path, &[("authorization", &bob), header]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} {header:?}");
        assert_eq!(body["error"], "tenant_not_member");
    }
    // bob belongs to globex.
    assert_eq!(
        f.get("/tenants/globex/api/whoami", &[("authorization", &bob)])
            .await
            .0,
        StatusCode::OK
    );
    // A token's own tenant claim is trusted.
    let bob_acme = format!("Bearer {}", f.demo.token("bob", Some(acme)).unwrap());
    assert_eq!(
        f.get("/api/whoami", &[("authorization", &bob_acme)])
            .await
            .0,
        StatusCode::OK
    );
    // A token that does not verify is refused, whatever else the request says.
    let forged = format!("Bearer {}x", f.demo.token("alice", Some(globex)).unwrap());
    let (status, body) = f
        .get("/tenants/globex/api/whoami", &[("authorization", &forged)])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    // Two Authorization headers (which one would be the caller's?) are refused.
    let (status, body) = f
        .get(
            "/tenants/globex/api/whoami",
            &[("authorization", &bob), ("authorization", &alice)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
    // A token not valid before next year is not valid now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let in_a_year = now + 365 * 24 * 3600;
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "exp": in_a_year + 3600, "nbf": in_a_year}),
        &jsonwebtoken::EncodingKey::from_secret(f.demo.jwt_secret().as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, _) = f
        .get(
            "/tenants/acme/api/whoami",
            &[("authorization", &format!("Bearer {early}"))],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Anonymous requests keep the tenant an untrusted resolver names.
    let (status, body) = f.get("/tenants/acme/api/whoami", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], Value::Null);
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_api_needs_the_token() {
    let f = start().await;
    let url = format!("{}/admin/tenants", f.base);
    let none = f.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = f.http.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let create = f
        .http
        .post(&url)
        .bearer_auth(format!("{}x", f.demo.admin_token()))
        .body(r#"{"slug":"sneaky","name":"Sneaky"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::UNAUTHORIZED);
    let body: Value = create.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        f.tenant_count().await,
        3,
        "nothing created without the token"
    );
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_changes_are_visible_on_the_next_request() {
    use reqwest::Method;
    let f = start().await;
    let (status, created) = f
        .admin(
            Method::POST,
            "/tenants",
            Some(r#"{"slug":"umbrella","name":"Umbrella Corp","plan":"pro"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "active");
    let id: TenantId = created["id"].as_str().unwrap().parse().unwrap();

    // Used at once, by id and by slug.
    assert_eq!(f.whoami_by_header(id).await, StatusCode::OK);
    let (status, body) = f.get("/tenants/umbrella/api/whoami", &[]).await;
    assert_eq!(
        (status, body["id"].as_str()),
        (StatusCode::OK, Some(&*id.to_string()))
    );

    // Suspended: the very next request is refused.
    let (status, body) = f
        .admin(
            Method::POST,
            &format!("/tenants/{id}/suspend"),
            Some(r#"{"reason":"unpaid"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["status_reason"].as_str()),
        (Some("suspended"), Some("unpaid"))
    );
    assert_eq!(f.whoami_by_header(id).await, StatusCode::FORBIDDEN);
    assert_eq!(
        f.get("/tenants/umbrella/api/whoami", &[]).await.0,
        StatusCode::FORBIDDEN
    );

    // Suspending again is an illegal transition; activating brings it back at once.
    let (status, body) = f
        .admin(Method::POST, "/tenants/umbrella/suspend", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = f
        .admin(Method::POST, &format!("/tenants/{id}/activate"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.whoami_by_header(id).await, StatusCode::OK);

    // Renamed: the new slug resolves, the old one no longer does.
    let (status, body) = f
        .admin(
            Method::PATCH,
            &format!("/tenants/{id}"),
            Some(r#"{"slug":"umbrella-2","plan":null}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plan"], Value::Null);
    assert_eq!(
        f.get("/tenants/umbrella-2/api/whoami", &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        f.get("/tenants/umbrella/api/whoami", &[]).await.0,
        StatusCode::FORBIDDEN
    );

    // Configuration overrides show at once in /api/config.
    let (status, change) = f
        .admin(
            Method::PUT,
            &format!("/tenants/{id}/config/theme"),
            Some(r#""dark""#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(change, json!({"key": "theme", "old": null, "new": "dark"}));
    let (_, body) = f.get("/tenants/umbrella-2/api/config", &[]).await;
    assert_eq!(body["config"], json!({"theme": "dark", "max_users": 10}));
    let (status, _) = f
        .admin(Method::DELETE, &format!("/tenants/{id}/config/theme"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = f.get("/tenants/umbrella-2/api/config", &[]).await;
    assert_eq!(body["config"]["theme"], "light");

    // Deactivated: refused.
    let (status, body) = f
        .admin(Method::POST, &format!("/tenants/{id}/deactivate"), None)
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("inactive"))
    );
    assert_eq!(f.whoami_by_header(id).await, StatusCode::FORBIDDEN);

    let (status, shown) = f.admin(Method::GET, &format!("/tenants/{id}"), None).await;
    assert_eq!(
        (status, shown["slug"].as_str()),
        (StatusCode::OK, Some("umbrella-2"))
    );
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_admin_requests_get_400_and_store_nothing() {
    use reqwest::Method;
    let f = start().await;
    let acme = f.id("acme");
    for (body, says) in [
        (r#"{"slug":"new","name":"#, "EOF"),
        ("not json", "expected"),
        (
            r#"{"slug":"new","name":"New","owner":"x"}"#,
            "unknown field `owner`",
        ),
        (r#"{"slug":"Not A Slug","name":"New"}"#, "slug"),
        (r#"{"slug":"-new","name":"New"}"#, "slug"),
        (r#"{"name":"New"}"#, "missing field `slug`"),
        (r#"{"slug":"new","name":42}"#, "invalid type"),
    ] {
        let (status, error) = f.admin(Method::POST, "/tenants", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"], "invalid_body");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // Valid JSON the lifecycle refuses: an empty name, a bad plan.
    for body in [
        r#"{"slug":"new","name":"  "}"#,
        r#"{"slug":"new","name":"New","plan":"a b"}"#,
    ] {
        let (status, error) = f.admin(Method::POST, "/tenants", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"], "invalid_input");
    }
    assert_eq!(f.tenant_count().await, 3, "nothing stored");

    // A taken slug, an unknown tenant, an unknown PATCH field, a bad config key.
    let (status, _) = f
        .admin(
            Method::POST,
            "/tenants",
            Some(r#"{"slug":"acme","name":"Again"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = f
        .admin(Method::GET, &format!("/tenants/{}", TenantId::new()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.admin(Method::GET, "/tenants/Bad%20Slug", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, error) = f
        .admin(
            Method::PATCH,
            &format!("/tenants/{acme}"),
            Some(r#"{"status":"inactive"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = f
        .admin(
            Method::POST,
            &format!("/tenants/{acme}/suspend"),
            Some(r#"{"why":"x"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f
        .admin(
            Method::PUT,
            &format!("/tenants/{acme}/config/Bad%20Key"),
            Some("1"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f
        .admin(
            Method::PUT,
            &format!("/tenants/{acme}/config/theme"),
            Some("{"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f.admin(Method::GET, "/tenants?limit=abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing of it reached acme.
    let (_, shown) = f.admin(Method::GET, "/tenants/acme", None).await;
    assert_eq!(
        (shown["status"].as_str(), shown["name"].as_str()),
        (Some("active"), Some("Acme Corporation"))
    );
    let (_, body) = f.get("/tenants/acme/api/config", &[]).await;
    assert_eq!(body["config"]["theme"], "light");
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn healthz_reports_every_component() {
    let f = start().await;
    let (status, report) = f.get("/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "healthy");
    for component in ["resolution", "lifecycle", "overrides", "isolation"] {
        assert_eq!(
            report["components"][component]["status"], "healthy",
            "{report}"
        );
    }
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_on_the_same_file_keeps_the_tenants_and_seeds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let options = DemoOptions::new("127.0.0.1:0".parse().unwrap(), url);
    let first = demo::start(options.clone()).await.unwrap();
    let acme = first.tenant("acme").unwrap().id;
    first.shutdown().await.unwrap();
    let second = demo::start(options).await.unwrap();
    assert!(!second.seeded());
    assert_eq!(second.tenants().len(), 3);
    assert_eq!(second.tenant("acme").unwrap().id, acme);
    assert!(second.banner().unwrap().contains("nothing seeded"));
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_options_are_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut options = DemoOptions::new("127.0.0.1:0".parse().unwrap(), url);
    options.jwt_secret = Some("too short".into());
    let err = demo::start(options).await.unwrap_err();
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    let options = DemoOptions::new("127.0.0.1:0".parse().unwrap(), "mysql://x/y");
    let err = demo::start(options).await.unwrap_err();
    assert!(err.to_string().contains("sqlite://FILE"), "{err}");
    // A token that no `Authorization` header could carry (bearer tokens are read trimmed).
    for token in [" admin-token", "admin-token\n"] {
        let url = format!("sqlite://{}", dir.path().join("demo.db").display());
        let mut options = DemoOptions::new("127.0.0.1:0".parse().unwrap(), url);
        options.admin_token = Some(token.into());
        let err = demo::start(options).await.unwrap_err();
        assert!(err.to_string().contains("whitespace"), "{token:?}: {err}");
    }
}

#[tokio::test]
async fn a_seed_left_half_done_is_completed_at_the_next_start() {
    use tenancy::StoreConfig;
    use tenancy::core::{ConfigStore, StatusChange, TenantStatus, TenantStore};
    use tenancy::store_sql::SqliteTenantStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    // A first start that stopped after storing acme (before its activation) and initech active
    // (before its suspension, the seed's last step).
    let first = demo::start(DemoOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        url.clone(),
    ))
    .await
    .unwrap();
    let acme = first.tenant("acme").unwrap().clone();
    let initech = first.tenant("initech").unwrap().clone();
    first.shutdown().await.unwrap();
    let store = SqliteTenantStore::connect(&StoreConfig::with_url(&url))
        .await
        .unwrap();
    let status = |from, to| StatusChange {
        from,
        to,
        reason: None,
    };
    store
        .set_status(
            acme.id,
            status(TenantStatus::Active, TenantStatus::Inactive),
        )
        .await
        .unwrap();
    store
        .set_status(
            acme.id,
            status(TenantStatus::Inactive, TenantStatus::Provisioning),
        )
        .await
        .unwrap();
    store
        .set_status(
            initech.id,
            status(TenantStatus::Suspended, TenantStatus::Active),
        )
        .await
        .unwrap();
    store
        .remove_config(initech.id, "demo.seeded")
        .await
        .unwrap();
    store.close().await;

    let second = demo::start(DemoOptions::new("127.0.0.1:0".parse().unwrap(), url))
        .await
        .unwrap();
    assert!(second.seeded(), "the seed was completed");
    assert_eq!(
        second.tenant("acme").unwrap().id,
        acme.id,
        "acme resumed, not made again"
    );
    assert_eq!(second.tenant("acme").unwrap().status, TenantStatus::Active);
    assert_eq!(
        second.tenant("globex").unwrap().status,
        TenantStatus::Active
    );
    assert_eq!(
        second.tenant("initech").unwrap().status,
        TenantStatus::Suspended
    );
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_error_is_json_and_unknown_routes_are_404() {
    let f = start().await;
    let expect_json = |response: reqwest::Response, status: StatusCode, code: &'static str| async move {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{body}");
    };
    let url = |path: &str| format!("{}{path}", f.base);
    // A path no route serves, with or without a tenant.
    for path in ["/nope", "/api/nope", "/tenants/acme/api/nope"] {
        let response = f.http.get(url(path)).send().await.unwrap();
        expect_json(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = f.http.post(url("/healthz")).send().await.unwrap();
    expect_json(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    // JSON bodies need a JSON content type, and a size within the limit.
    let admin = url("/admin/tenants");
    let response = f
        .http
        .post(&admin)
        .bearer_auth(f.demo.admin_token())
        .body(r#"{"slug":"plain","name":"Plain"}"#)
        .send()
        .await
        .unwrap();
    expect_json(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let response = f
        .http
        .post(&admin)
        .bearer_auth(f.demo.admin_token())
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"slug":"big","name":"{}"}}"#,
            "x".repeat(3 * 1024 * 1024)
        ))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::PAYLOAD_TOO_LARGE, "invalid_body").await;
    assert_eq!(f.tenant_count().await, 3, "nothing created");
    // A path segment that is not valid percent-encoded UTF-8.
    let response = f
        .http
        .get(url("/admin/tenants/%FF%FE"))
        .bearer_auth(f.demo.admin_token())
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::BAD_REQUEST, "invalid_path").await;
    f.demo.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_demo_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let options = || DemoOptions::new("127.0.0.1:0".parse().unwrap(), url.clone());
    let first = demo::start(options()).await.unwrap();
    let refused = demo::start(options()).await.unwrap_err().to_string();
    assert!(
        refused.contains("another `tenancy demo` serves"),
        "{refused}"
    );
    first.shutdown().await.unwrap();
    // Once the first has stopped, the file is free again.
    let second = demo::start(options()).await.unwrap();
    assert!(!second.seeded(), "the first demo's seed is there");
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_api_manages_domains_and_requests_follow() {
    use reqwest::Method;

    let f = start().await;
    let (status, body) = f.admin(Method::GET, "/tenants/acme/domains", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["domains"],
        json!([{
            "domain": "acme.test",
            "tenant_id": f.id("acme"),
            "primary": true,
            "created_at": body["domains"][0]["created_at"],
        }]),
        "the demo seeds acme.test"
    );

    // Unknown until added; added, it resolves at once (the admin API invalidates the cache).
    let whoami = async |host: &str| f.get("/api/whoami", &[("host", host)]).await;
    assert_eq!(whoami("globex.test").await.0, StatusCode::FORBIDDEN);
    let (status, body) = f
        .admin(Method::PUT, "/tenants/globex/domains/Globex.TEST", None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["domains"][0]["domain"], "globex.test");
    assert_eq!(body["domains"][0]["primary"], true);
    let (status, body) = whoami("globex.test").await;
    assert_eq!((status, &body["slug"]), (StatusCode::OK, &json!("globex")));
    let (status, _) = f
        .admin(Method::PUT, "/tenants/globex/domains/globex.test", None)
        .await;
    assert_eq!(status, StatusCode::OK, "adding it again is no change");

    // Another tenant's domain is a conflict; a domain the tenant lacks is 404; garbage is 400.
    let (status, body) = f
        .admin(Method::PUT, "/tenants/globex/domains/acme.test", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "domain_conflict");
    assert!(
        body["message"].as_str().unwrap().contains("acme.test"),
        "{body}"
    );
    let (status, body) = f
        .admin(Method::DELETE, "/tenants/globex/domains/acme.test", None)
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("domain_not_found"))
    );
    for bad in ["127.0.0.1", "localhost", "ac_me.test", "acme.test:443"] {
        let (status, body) = f
            .admin(Method::PUT, &format!("/tenants/globex/domains/{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_input");
    }
    let (status, _) = f
        .admin(
            Method::PUT,
            "/tenants/globex/domains/www.globex.test",
            Some(r#"{"primary": true}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = f
        .admin(
            Method::POST,
            "/tenants/globex/domains/globex.test/primary",
            None,
        )
        .await;
    assert_eq!(body["domains"][0]["domain"], "globex.test");
    assert_eq!(body["domains"][1]["primary"], false);

    let (status, body) = f
        .admin(Method::DELETE, "/tenants/globex/domains/globex.test", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["domains"],
        json!([{
            "domain": "www.globex.test",
            "tenant_id": f.id("globex"),
            "primary": true,
            "created_at": body["domains"][0]["created_at"],
        }]),
        "the remaining domain became primary"
    );
    assert_eq!(whoami("globex.test").await.0, StatusCode::FORBIDDEN);
    f.demo.shutdown().await.unwrap();
}
