//! The layer's and the validator's metrics (feature `metrics`), recorded by `metrics-util`'s
//! debugging recorder. Each test installs its own recorder for its thread only and runs a
//! current-thread runtime inside it, so tests running in parallel never see each other's counts.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use common::CountingStore;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tenancy_core::{TenantId, TenantLabels, TenantRef, TenantStatus};
use tenancy_resolution::{
    Builtin, ResolutionConfig, ResolveTenantLayer, TenantValidator, ValidatorConfig,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// One recorded value: metric name, labels, value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

/// Runs `test` on a current-thread runtime with `recorder` as this thread's recorder.
fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(test());
    });
    snapshotter
}

/// Every recorded value of `name` whose labels include `labels`, summed: counters by value,
/// histograms by the number of samples.
fn count(snapshot: &[Recorded], name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshot
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Counter(n) => *n,
            DebugValue::Histogram(samples) => samples.len() as u64,
            DebugValue::Gauge(_) => 0,
        })
        .sum()
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<Recorded> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            (
                key.name().to_owned(),
                key.labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                value,
            )
        })
        .collect()
}

fn request(tenant: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::builder().uri("/");
    if let Some(tenant) = tenant {
        request = request.header("x-tenant-id", tenant);
    }
    request.body(Full::default()).unwrap()
}

async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("ok")))
}

fn config() -> ResolutionConfig {
    ResolutionConfig {
        resolvers: Some(vec![Builtin::Header]),
        trusted_resolvers: Some(vec!["header".into()]),
        ..ResolutionConfig::default()
    }
}

#[test]
fn requests_are_counted_by_tenant_and_outcome_and_timed_when_admitted() {
    let store = CountingStore::new();
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let snapshotter = recorded(|| {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            let acme = store.tenant("acme", TenantStatus::Active).await;
            let globex = store.tenant("globex", TenantStatus::Active).await;
            let frozen = store.tenant("frozen", TenantStatus::Suspended).await;
            let validator =
                TenantValidator::new(store.clone(), &ResolutionConfig::default().validator)
                    .unwrap();
            let service = ServiceBuilder::new()
                .layer(
                    ResolveTenantLayer::new(&config(), validator)
                        .unwrap()
                        .require_tenant(),
                )
                .service(service_fn(ok));
            let unknown = TenantId::new().to_string();
            let sends = [
                (Some(acme.id.to_string()), StatusCode::OK, 3),
                (Some(globex.id.to_string()), StatusCode::OK, 1),
                (Some(frozen.id.to_string()), StatusCode::FORBIDDEN, 2),
                (Some(unknown), StatusCode::FORBIDDEN, 2),
                (None, StatusCode::FORBIDDEN, 1),
            ];
            for (tenant, status, times) in sends {
                for _ in 0..times {
                    let response = service
                        .clone()
                        .oneshot(request(tenant.as_deref()))
                        .await
                        .unwrap();
                    assert_eq!(response.status(), status);
                }
            }
            ids.lock().unwrap().extend([acme.id, globex.id, frozen.id]);
        }
    });
    let labels = TenantLabels::global();
    let ids = ids.lock().unwrap().clone();
    let [acme, globex, frozen] = [ids[0], ids[1], ids[2]].map(|id| labels.label(id));
    let snap = snapshot(&snapshotter);
    let requests = |tenant: &str, outcome: &str| {
        count(
            &snap,
            "tenancy_requests_total",
            &[("tenant", tenant), ("outcome", outcome)],
        )
    };
    assert_eq!(requests(&acme, "served"), 3);
    assert_eq!(requests(&globex, "served"), 1);
    assert_eq!(requests(&frozen, "tenant_suspended"), 2);
    assert_eq!(requests("none", "tenant_not_found"), 2);
    assert_eq!(requests("none", "tenant_required"), 1);
    assert_eq!(count(&snap, "tenancy_requests_total", &[]), 9);
    // Admitted requests only, by tenant: the first one on the miss path, the others on the hit
    // path.
    let duration = |tenant: &str| {
        count(
            &snap,
            "tenancy_request_duration_seconds",
            &[("tenant", tenant)],
        )
    };
    assert_eq!(duration(&acme), 3);
    assert_eq!(duration(&globex), 1);
    assert_eq!(count(&snap, "tenancy_request_duration_seconds", &[]), 4);
}

#[test]
fn validator_lookups_count_hits_misses_and_coalesced_loads() {
    let store = CountingStore::new();
    let snapshotter = recorded(|| {
        let store = store.clone();
        async move {
            let acme = store.tenant("acme", TenantStatus::Active).await;
            let validator =
                TenantValidator::new(store.clone(), &ValidatorConfig::default()).unwrap();
            // Ten concurrent lookups of a cold tenant: one loads it, nine wait for that load.
            store.set_slow(true);
            let tasks: Vec<_> = (0..10)
                .map(|_| {
                    let validator = validator.clone();
                    tokio::spawn(async move { validator.validate(TenantRef::Id(acme.id)).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap().id, acme.id);
            }
            store.set_slow(false);
            for _ in 0..5 {
                validator.validate(TenantRef::Id(acme.id)).await.unwrap();
            }
            // Loading by id cached the slug too: both are hits.
            let slug = TenantRef::Slug("acme".parse().unwrap());
            validator.validate(slug).await.unwrap();
            validator.validate(slug).await.unwrap();
            // An unknown tenant is a miss, then a hit of its negative entry.
            let unknown = TenantRef::Id(TenantId::new());
            validator.lookup(unknown).await.unwrap();
            validator.lookup(unknown).await.unwrap();
            assert_eq!(store.lookups(), 2);
        }
    });
    let snap = snapshot(&snapshotter);
    let lookups = |result: &str| {
        count(
            &snap,
            "tenancy_validator_lookups_total",
            &[("result", result)],
        )
    };
    assert_eq!(lookups("miss"), 2, "one per store call");
    assert_eq!(lookups("coalesced"), 9);
    assert_eq!(lookups("hit"), 5 + 2 + 1);
}

#[test]
fn without_a_recorder_nothing_is_recorded_and_nothing_fails() {
    // The validator registered its counters with the no-op recorder: lookups work, and a
    // recorder installed on this thread afterwards sees none of them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = CountingStore::new();
    let validator = runtime.block_on(async {
        let acme = store.tenant("acme", TenantStatus::Active).await;
        let validator = TenantValidator::new(store.clone(), &ValidatorConfig::default()).unwrap();
        validator.validate(TenantRef::Id(acme.id)).await.unwrap();
        (validator, acme.id)
    });
    let snapshotter = recorded(|| async move {
        validator
            .0
            .validate(TenantRef::Id(validator.1))
            .await
            .unwrap();
    });
    let snap = snapshot(&snapshotter);
    assert_eq!(count(&snap, "tenancy_validator_lookups_total", &[]), 0);
}
