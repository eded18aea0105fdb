//! The cap on tenant labels (a test binary of its own: it sets the process-wide label capacity).

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::CountingStore;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tenancy_core::{TenantLabels, TenantStatus};
use tenancy_resolution::{Builtin, ResolutionConfig, ResolveTenantLayer, TenantValidator};
use tower::{ServiceBuilder, ServiceExt, service_fn};

async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("ok")))
}

#[test]
fn tenants_beyond_the_label_cap_are_counted_under_other() {
    assert!(TenantLabels::init_global(2), "the first capacity set wins");
    assert!(!TenantLabels::init_global(50), "later ones are ignored");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let store = CountingStore::new();
    let mut tenants = Vec::new();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let config = ResolutionConfig {
                    resolvers: Some(vec![Builtin::Header]),
                    trusted_resolvers: Some(vec!["header".into()]),
                    ..ResolutionConfig::default()
                };
                let validator = TenantValidator::new(store.clone(), &config.validator).unwrap();
                let service = ServiceBuilder::new()
                    .layer(ResolveTenantLayer::new(&config, validator).unwrap())
                    .service(service_fn(ok));
                for n in 0..5 {
                    let tenant = store
                        .tenant(&format!("tenant-{n}"), TenantStatus::Active)
                        .await;
                    // Two requests each: the label a tenant got the first time stays.
                    for _ in 0..2 {
                        let request = Request::builder()
                            .header("x-tenant-id", tenant.id.to_string())
                            .body(Full::default())
                            .unwrap();
                        let response = service.clone().oneshot(request).await.unwrap();
                        assert_eq!(response.status(), StatusCode::OK);
                    }
                    tenants.push(tenant.id);
                }
            });
    });
    let mut served: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "tenancy_requests_total")
        .map(|(key, _, _, value)| {
            let tenant = key
                .key()
                .labels()
                .find(|l| l.key() == "tenant")
                .unwrap()
                .value()
                .to_owned();
            let DebugValue::Counter(n) = value else {
                panic!("a counter")
            };
            (tenant, n)
        })
        .collect();
    served.sort();
    let mut expected = vec![
        (tenants[0].to_string(), 2),
        (tenants[1].to_string(), 2),
        ("other".to_owned(), 6),
    ];
    expected.sort();
    assert_eq!(served, expected);
    assert_eq!(TenantLabels::global().len(), 2);
}
