//! Per-tenant limits over real HTTP: the stack's limit layer on an axum server on 127.0.0.1,
//! driven by a reqwest client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};
use serde_json::json;
use tenancy::core::{CreateTenant, TenantInfo};
use tenancy::{Tenancy, TenancyConfig};
use tokio::sync::watch;

/// The stub stack with `limits` as its limits section.
async fn stack(limits: serde_json::Value) -> Tenancy {
    let mut config = TenancyConfig::stub();
    config.limits = serde_json::from_value(limits).unwrap();
    tenancy::StackBuilder::new(config).build().await.unwrap()
}

async fn create(tenancy: &Tenancy, slug: &str) -> TenantInfo {
    tenancy
        .lifecycle()
        .create(CreateTenant::new(slug.parse().unwrap(), slug))
        .await
        .unwrap()
        .into_result()
        .unwrap()
}

/// Requests held in `/slow` until the gate opens, counted as they arrive.
#[derive(Clone)]
struct Gate {
    arrived: Arc<AtomicUsize>,
    open: watch::Receiver<bool>,
}

/// Serves `/fast` and `/slow` behind resolution, the guard and the limits; the base URL.
async fn serve(tenancy: &Tenancy, gate: Gate) -> String {
    let slow = move || {
        let mut gate = gate.clone();
        async move {
            gate.arrived.fetch_add(1, Ordering::SeqCst);
            gate.open.wait_for(|open| *open).await.unwrap();
            "slow"
        }
    };
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route("/slow", get(slow))
        .layer(tenancy.limit_layer())
        .layer(tenancy.guard())
        .layer(tenancy.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn gate() -> (Gate, watch::Sender<bool>) {
    let (open, receiver) = watch::channel(false);
    (
        Gate {
            arrived: Arc::new(AtomicUsize::new(0)),
            open: receiver,
        },
        open,
    )
}

async fn get_as(client: &reqwest::Client, url: &str, tenant: &TenantInfo) -> reqwest::Response {
    client
        .get(url)
        .header("x-tenant-id", tenant.id.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn over_its_rate_a_tenant_gets_429_while_another_is_served_and_an_override_lifts_it() {
    let tenancy = stack(json!({
        "default_plan": "free",
        "plans": {
            "free": {"requests_per_second": 1, "burst": 2},
            "pro": {"requests_per_second": 1000, "burst": 1000},
        },
    }))
    .await;
    let (noisy, quiet) = (
        create(&tenancy, "noisy").await,
        create(&tenancy, "quiet").await,
    );
    // The quiet tenant's plan, named by its configuration.
    tenancy
        .config()
        .set(quiet.id, "limits.plan", json!("pro"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let (gate, _open) = gate();
    let base = serve(&tenancy, gate).await;
    let client = reqwest::Client::new();
    let fast = format!("{base}/fast");

    // 20 requests against a bucket of 2 refilled once a second: most are refused.
    let mut refused = 0;
    for _ in 0..20 {
        let response = get_as(&client, &fast, &noisy).await;
        if response.status() == 429 {
            refused += 1;
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry_after >= 1);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"], "tenant_rate_limited");
            // At the same moment, the quiet tenant is served.
            let quiet_response = get_as(&client, &fast, &quiet).await;
            assert_eq!(quiet_response.status(), 200);
            assert_eq!(quiet_response.text().await.unwrap(), "fast");
        } else {
            assert_eq!(response.status(), 200);
        }
    }
    assert!(refused >= 1, "a burst of 2 cannot admit 20 requests");

    // Raising its limit through a configuration override takes effect without a restart.
    let config = tenancy.config();
    config
        .set(noisy.id, "limits.requests_per_second", json!(1000))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    config
        .set(noisy.id, "limits.burst", json!(1000))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    for _ in 0..50 {
        assert_eq!(get_as(&client, &fast, &noisy).await.status(), 200);
    }
    let entry = tenancy.limits().entry(noisy.id).await;
    assert_eq!(entry.limits().values.burst.map(|n| n.get()), Some(1000));

    assert_eq!(entry.limits().plan.as_deref(), Some("free"));
    assert_eq!(
        tenancy
            .limits()
            .entry(quiet.id)
            .await
            .limits()
            .plan
            .as_deref(),
        Some("pro")
    );
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_in_flight_are_capped_per_tenant_under_concurrency() {
    let tenancy = stack(json!({
        "default_plan": "small",
        "plans": {"small": {"max_in_flight": 2}},
    }))
    .await;
    let (busy, other) = (
        create(&tenancy, "busy").await,
        create(&tenancy, "other").await,
    );
    let (gate, open) = gate();
    let arrived = Arc::clone(&gate.arrived);
    let base = serve(&tenancy, gate).await;
    let client = reqwest::Client::new();

    // Two slow requests of `busy` held open in the handler.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (client, url, busy) = (client.clone(), format!("{base}/slow"), busy.clone());
            tokio::spawn(async move { get_as(&client, &url, &busy).await.status() })
        })
        .collect();
    for _ in 0..3000 {
        if arrived.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "both requests are in the handler"
    );

    // A third is refused with 503 and Retry-After: 1; another tenant is served meanwhile.
    let refused = get_as(&client, &format!("{base}/fast"), &busy).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "tenant_too_many_in_flight");
    assert_eq!(
        get_as(&client, &format!("{base}/fast"), &other)
            .await
            .status(),
        200
    );
    assert_eq!(tenancy.limits().entry(busy.id).await.in_flight(), 2);

    open.send(true).unwrap();
    for request in held {
        assert_eq!(request.await.unwrap(), 200);
    }
    // The places are given back with the responses.
    assert_eq!(
        get_as(&client, &format!("{base}/fast"), &busy)
            .await
            .status(),
        200
    );
    assert_eq!(tenancy.limits().entry(busy.id).await.in_flight(), 0);
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "the refused request never reached it"
    );
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_limits_section_is_refused_at_load() {
    let figment = figment::Figment::from(figment::providers::Yaml::string(
        "tenancy:\n  limits:\n    default_plan: gold\n    plans:\n      free:\n        requests_per_second: 10\n",
    ));
    use figment::providers::Format as _;
    let error = TenancyConfig::from_figment(&figment).unwrap_err();
    assert!(
        error.to_string().contains("tenancy.limits")
            && error.to_string().contains("default_plan \"gold\""),
        "{error}"
    );
    let figment = figment::Figment::from(figment::providers::Yaml::string(
        "tenancy:\n  limits:\n    plans:\n      free:\n        statement_timeout: soon\n",
    ));
    let error = TenancyConfig::from_figment(&figment).unwrap_err();
    assert!(error.to_string().contains("statement_timeout"), "{error}");
}
