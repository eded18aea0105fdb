//! `configure` on the PostgreSQL store: the change feed joins the bundle and carries changes
//! (status, domains, limit plans) between processes; health names a killed listener and a
//! stopped store, then recovers.

mod common;

use std::time::Duration;

use common::pg::TestDb;
use common::{assert_providers, assert_store_pinged_once, create};
use figment::Figment;
use figment::providers::{Format, Yaml};
use tenancy::core::{HealthReport, HealthStatus};
use tenancy::{StackBuilder, Tenancy, TenancyConfig};

fn config(url: &str) -> TenancyConfig {
    let yaml = format!(
        "tenancy:
  store:
    url: {url}
    ping_timeout_ms: 500
    acquire_timeout_ms: 500
  resolution:
    resolvers: [header]
    trusted_resolvers: [header]
"
    );
    TenancyConfig::from_figment(&Figment::from(Yaml::string(&yaml))).unwrap()
}

/// Polls health until `done` holds (at most ~10 s); the last report.
async fn health_until(tenancy: &Tenancy, done: impl Fn(&HealthReport) -> bool) -> HealthReport {
    let mut report = tenancy.health().await;
    for _ in 0..400 {
        if done(&report) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        report = tenancy.health().await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_a_killed_listener_and_a_stopped_store_then_recovers() {
    let db = TestDb::create("umbrella_health").await;
    let tenancy = StackBuilder::new(config(&db.url))
        .health_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    assert_providers(&tenancy, &["change_feed"]);
    let acme = create(&tenancy, "acme").await;
    assert!(acme.is_active());
    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{report:#?}");
    assert_eq!(report.components["store"].details["backend"], "postgres");
    assert_store_pinged_once(&report);
    assert_eq!(
        report.components["change_feed"].details["channel"],
        "tenancy_changes"
    );

    // Kill the listener and keep it from reconnecting: the feed, and so the stack, is degraded.
    db.allow_connections(false).await;
    assert_eq!(db.terminate(Some("tenancy-change-feed")).await, 1);
    let report = health_until(&tenancy, |r| {
        r.components["change_feed"].status != HealthStatus::Healthy
    })
    .await;
    let feed = &report.components["change_feed"];
    assert_eq!(feed.status, HealthStatus::Degraded, "{report:#?}");
    assert!(
        feed.details["reason"].starts_with("reconnecting"),
        "{feed:?}"
    );
    assert!(report.status >= HealthStatus::Degraded);

    // Stop the store: every connection gone, none allowed. The store, and the config reads of
    // overrides, turn unhealthy.
    db.terminate(None).await;
    let report = health_until(&tenancy, |r| {
        r.status == HealthStatus::Unhealthy
            && r.components["store"].status == HealthStatus::Unhealthy
    })
    .await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:#?}");
    for name in ["store", "overrides"] {
        let component = &report.components[name];
        assert_eq!(
            component.status,
            HealthStatus::Unhealthy,
            "{name}: {component:?}"
        );
        assert!(!component.details["reason"].is_empty());
    }

    // The database comes back: the pool and the listener reconnect, the stack is healthy again.
    db.allow_connections(true).await;
    let report = health_until(&tenancy, |r| r.status == HealthStatus::Healthy).await;
    assert_eq!(report.status, HealthStatus::Healthy, "{report:#?}");
    assert_ne!(report.components["change_feed"].details["reconnects"], "0");

    tenancy.shutdown().await.unwrap();
    let report = tenancy.health().await;
    assert_eq!(
        report.components["change_feed"].status,
        HealthStatus::Unhealthy,
        "stopped"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreachable_store_fails_configure_with_a_storage_error() {
    let db = TestDb::create("umbrella_down").await;
    db.allow_connections(false).await;
    let error = tenancy::configure(config(&db.url)).await.unwrap_err();
    assert!(
        matches!(error, tenancy::Error::Build(ref e) if e.is_infrastructure()),
        "{error}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_one_process_reaches_the_other_through_the_change_feed() {
    use common::{app, get_with};
    use http::StatusCode;

    let db = TestDb::create("umbrella_feed").await;
    // Two stacks on one database stand for two processes of one service.
    let first = tenancy::configure(config(&db.url)).await.unwrap();
    let second = tenancy::configure(config(&db.url)).await.unwrap();
    let acme = create(&first, "acme").await;
    let id = acme.id.to_string();
    let served_by_second = app(&second);
    // The second process caches acme as active.
    assert_eq!(
        get_with(&served_by_second, "/whoami", Some(&id)).await.0,
        StatusCode::OK
    );

    first
        .lifecycle()
        .suspend(acme.id, Some("unpaid".into()))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    // Well within the validator's 300 s TTL, the second process refuses acme.
    let mut status = StatusCode::OK;
    for _ in 0..400 {
        status = get_with(&served_by_second, "/whoami", Some(&id)).await.0;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, StatusCode::FORBIDDEN);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_added_in_one_process_resolves_in_the_other_through_the_change_feed() {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let db = TestDb::create("umbrella_domains").await;
    let yaml = format!(
        "tenancy:
  store: {{ url: '{}' }}
  resolution: {{ resolvers: [domain], trusted_resolvers: [domain] }}
",
        db.url
    );
    let config = || TenancyConfig::from_figment(&Figment::from(Yaml::string(&yaml))).unwrap();
    let first = tenancy::configure(config()).await.unwrap();
    let second = tenancy::configure(config()).await.unwrap();
    let acme = create(&first, "acme").await;
    let served_by_second = common::app(&second);
    let get = async |host: &str| {
        let request = Request::get("/whoami")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        let response = served_by_second.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    // The second process caches the unknown host as such (for `negative_ttl`, 5 s by default).
    assert_eq!(get("shop.acme.example").await.0, StatusCode::FORBIDDEN);

    let domain = "Shop.ACME.example".parse().unwrap();
    first
        .lifecycle()
        .add_domain(acme.id, &domain, true)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    // The change feed drops the negative entry: no wait for its TTL to run out.
    let mut answer = get("shop.acme.example:443").await;
    for _ in 0..100 {
        if answer.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        answer = get("shop.acme.example:443").await;
    }
    assert_eq!(answer, (StatusCode::OK, "acme domain".to_owned()));

    first
        .lifecycle()
        .remove_domain(acme.id, &domain)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let mut status = StatusCode::OK;
    for _ in 0..400 {
        status = get("shop.acme.example").await.0;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the removal reached the second process"
    );
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    db.drop_db().await;
}

#[cfg(feature = "limits")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_changed_in_one_process_lifts_the_limit_in_the_other_through_the_change_feed() {
    use common::get_with;
    use http::StatusCode;

    let db = TestDb::create("umbrella_limits").await;
    let yaml = format!(
        "tenancy:
  store: {{ url: '{}' }}
  resolution: {{ resolvers: [header], trusted_resolvers: [header] }}
  limits:
    default_plan: free
    plans:
      free: {{ requests_per_second: 1, burst: 1 }}
      pro: {{ requests_per_second: 1000, burst: 1000 }}
",
        db.url
    );
    let config = || TenancyConfig::from_figment(&Figment::from(Yaml::string(&yaml))).unwrap();
    let first = tenancy::configure(config()).await.unwrap();
    let second = tenancy::configure(config()).await.unwrap();
    let acme = create(&first, "acme").await;
    let id = acme.id.to_string();
    let served_by_second = axum::Router::new()
        .route("/whoami", axum::routing::get(|| async { "ok" }))
        .layer(second.limit_layer())
        .layer(second.guard())
        .layer(second.layer());
    // The second process holds acme to the free plan: one request, then 429.
    assert_eq!(
        get_with(&served_by_second, "/whoami", Some(&id)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&served_by_second, "/whoami", Some(&id)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // The first process moves acme to the pro plan through its configuration.
    first
        .config()
        .set(acme.id, "limits.plan", serde_json::json!("pro"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    // The second process keeps a tenant's limits until they are invalidated (no expiry): only
    // the change feed's notice can make it apply the pro plan.
    let mut plan = None;
    for _ in 0..100 {
        plan = second.limits().entry(acme.id).await.limits().plan.clone();
        if plan.as_deref() == Some("pro") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        plan.as_deref(),
        Some("pro"),
        "the notice reached the second process"
    );
    for _ in 0..20 {
        assert_eq!(
            get_with(&served_by_second, "/whoami", Some(&id)).await.0,
            StatusCode::OK
        );
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    db.drop_db().await;
}
