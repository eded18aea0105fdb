//! The middleware records the tenant id on a tracing span. In its own test binary: tracing caches
//! callsite interest process-wide, so spans created by concurrently running tests without a
//! subscriber would race with the subscriber installed here.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::CountingStore;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tenancy_core::TenantStatus;
use tenancy_resolution::{ResolutionConfig, ResolveTenantLayer, TenantValidator};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// Collects the `tenant_id` fields of new spans.
#[derive(Default, Clone)]
struct SpanFields(Arc<Mutex<Vec<String>>>);

struct Visitor<'a>(&'a mut Vec<String>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "tenant_id" {
            self.0.push(format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for SpanFields {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Visitor(&mut self.0.lock().unwrap()));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_tenant_id_is_recorded_on_a_span() {
    let fields = SpanFields::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acme = rt.block_on(async {
        let store = CountingStore::new();
        let acme = store.tenant("acme", TenantStatus::Active).await;
        let config = ResolutionConfig {
            trusted_resolvers: Some(vec!["jwt_claim".into(), "header".into(), "path".into()]),
            ..ResolutionConfig::default()
        };
        let validator = TenantValidator::new(store.clone(), &config.validator).unwrap();
        let service = ServiceBuilder::new()
            .layer(ResolveTenantLayer::new(&config, validator).unwrap())
            .service(service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }));
        let _guard = tracing::subscriber::set_default(fields.clone());
        // Cold (boxed path), then cached (inline path).
        for _ in 0..2 {
            let request = Request::builder()
                .header("x-tenant-id", acme.id.to_string())
                .body(Full::default())
                .unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        acme
    });
    let recorded = fields.0.lock().unwrap().clone();
    let id = acme.id.to_string();
    assert_eq!(recorded, [id.clone(), id]);
}
