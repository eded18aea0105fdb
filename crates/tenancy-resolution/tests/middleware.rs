//! The middleware and the guard as a bare tower stack (hyper-style `Full<Bytes>` bodies), over a
//! counting wrapper around the real in-memory store.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{CountingStore, TableMembership};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tenancy_core::{TenantError, TenantInfo, TenantStatus, context};
use tenancy_resolution::{
    AuthenticatedUser, Builtin, KeyKind, RequireTenantLayer, Resolution, ResolutionConfig,
    ResolutionContext, ResolveTenantLayer, ResolvedTenant, TenantMembership, TenantRejection,
    TenantResolver, TenantValidator, VerifiedClaims,
};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

type Service = BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

/// Answers `<slug from extensions> <resolver> <slug from the task-local context>`, or
/// `none <no task-local tenant> <the rejection's code>`.
async fn whoami(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.extensions().get::<ResolvedTenant>() {
        Some(tenant) => format!(
            "{} {} {}",
            tenant.slug,
            tenant.resolved_by(),
            context::current()
                .map(|c| c.tenant().slug.to_string())
                .unwrap_or_default()
        ),
        None => format!(
            "none {} {}",
            context::current().is_none(),
            request
                .extensions()
                .get::<TenantRejection>()
                .map_or("no-rejection", |r| r.code())
        ),
    };
    Ok(Response::new(Full::from(body)))
}

/// Header and path resolvers; the header is trusted unless `strict` membership is tested.
fn config() -> ResolutionConfig {
    ResolutionConfig {
        resolvers: Some(vec![Builtin::JwtClaim, Builtin::Header, Builtin::Path]),
        trusted_resolvers: Some(vec!["jwt_claim".into(), "header".into(), "path".into()]),
        ..ResolutionConfig::default()
    }
}

fn stack(
    store: &Arc<CountingStore>,
    layer: impl FnOnce(TenantValidator) -> ResolveTenantLayer,
    guard: bool,
) -> Service {
    let validator =
        TenantValidator::new(store.clone(), &ResolutionConfig::default().validator).unwrap();
    let tenancy = layer(validator);
    if guard {
        BoxCloneService::new(
            ServiceBuilder::new()
                .layer(tenancy)
                .layer(RequireTenantLayer::new())
                .service(service_fn(whoami)),
        )
    } else {
        BoxCloneService::new(
            ServiceBuilder::new()
                .layer(tenancy)
                .service(service_fn(whoami)),
        )
    }
}

fn validator(store: &Arc<CountingStore>) -> TenantValidator {
    TenantValidator::new(store.clone(), &ResolutionConfig::default().validator).unwrap()
}

fn trusted_stack(store: &Arc<CountingStore>, guard: bool) -> Service {
    stack(
        store,
        |v| ResolveTenantLayer::new(&config(), v).unwrap(),
        guard,
    )
}

fn send(
    service: &Service,
    request: Request<Full<Bytes>>,
) -> impl Future<Output = (StatusCode, String)> + Send + use<> {
    let service = service.clone();
    async move {
        let response = service.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

fn with_header(value: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri("/whoami")
        .header("x-tenant-id", value)
        .body(Full::default())
        .unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn the_handler_sees_the_tenant_in_extensions_and_task_local_context() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let service = trusted_stack(&store, true);
    let (status, body) = send(&service, with_header(&acme.id.to_string())).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "acme header acme")
    );
    // By path (slug); the second request is served from the cache.
    let by_path = Request::builder()
        .uri("/tenants/acme/whoami")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&service, by_path).await.1, "acme path acme");
    let (_, body) = send(&service, with_header(&acme.id.to_string())).await;
    assert_eq!(body, "acme header acme");
    assert_eq!(
        store.lookups(),
        1,
        "the slug load cached the id; later requests hit the cache"
    );
}

#[tokio::test]
async fn the_inner_services_call_runs_in_the_tenant_scope_too() {
    // A layer may read the tenant in `call` itself, before any future exists (a trace layer
    // naming its span, say): the scope must cover it, on the cached and the uncached path.
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let service: Service = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(ResolveTenantLayer::new(&config(), validator(&store)).unwrap())
            .service(service_fn(|_: Request<Full<Bytes>>| {
                let seen = context::current_id().map(|id| id.to_string());
                std::future::ready(Ok::<_, Infallible>(Response::new(Full::from(
                    seen.unwrap_or_else(|| "none".into()),
                ))))
            })),
    );
    let expected = acme.id.to_string();
    // Cold (validated through the store), then cached.
    for _ in 0..2 {
        let (status, body) = send(&service, with_header(&expected)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, expected.as_str()));
    }
    assert_eq!(store.lookups(), 1);
}

#[tokio::test]
async fn the_guard_answers_403_for_inactive_suspended_provisioning_and_unknown_tenants() {
    let store = CountingStore::new();
    let guarded = trusted_stack(&store, true);
    let open = trusted_stack(&store, false);
    for (slug, status, reason) in [
        ("off", TenantStatus::Inactive, "tenant_inactive"),
        ("banned", TenantStatus::Suspended, "tenant_suspended"),
        ("new", TenantStatus::Provisioning, "tenant_provisioning"),
    ] {
        let tenant = store.tenant(slug, status).await;
        let (code, body) = send(&guarded, with_header(&tenant.id.to_string())).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{slug}");
        assert_eq!(json(&body)["error"], reason);
        // Without the guard the middleware never rejects: the handler runs without a tenant,
        // and finds the reason in the extensions.
        let (code, body) = send(&open, with_header(&tenant.id.to_string())).await;
        assert_eq!(
            (code, body),
            (StatusCode::OK, format!("none true {reason}")),
            "{slug}"
        );
    }
    let unknown = tenancy_core::TenantId::new().to_string();
    let response = guarded
        .clone()
        .oneshot(with_header(&unknown))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = json(std::str::from_utf8(&body).unwrap());
    assert_eq!(body["error"], "tenant_not_found");
    assert!(body["message"].as_str().unwrap().contains("does not exist"));
    let no_tenant = Request::builder()
        .uri("/whoami")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&guarded, no_tenant).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn require_tenant_makes_one_layer_answer_the_guards_403() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let off = store.tenant("off", TenantStatus::Inactive).await;
    let required = stack(
        &store,
        |v| {
            ResolveTenantLayer::new(&config(), v)
                .unwrap()
                .require_tenant()
        },
        false,
    );
    let unknown = tenancy_core::TenantId::new().to_string();
    // Twice each: the first request is a cache miss (async path), the second a hit (sync path).
    for _ in 0..2 {
        let (code, body) = send(&required, with_header(&acme.id.to_string())).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "acme header acme"));
        for (request, rejection) in [
            (with_header(&off.id.to_string()), TenantRejection::Inactive),
            (with_header(&unknown), TenantRejection::NotFound),
            (with_header("not-a-uuid"), TenantRejection::Missing),
            (
                Request::builder()
                    .uri("/whoami")
                    .body(Full::default())
                    .unwrap(),
                TenantRejection::Missing,
            ),
        ] {
            let response = required.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert_eq!(response.headers()["content-type"], "application/json");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, rejection.json_body());
        }
    }
    assert_eq!(
        store.lookups(),
        3,
        "acme, off and the unknown id, each loaded once"
    );
    // A store failure is still a 503, not a 403.
    let cold = store.tenant("cold", TenantStatus::Active).await;
    store.set_failing(true);
    let (code, _) = send(&required, with_header(&cold.id.to_string())).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn malformed_ids_cost_no_store_call() {
    let store = CountingStore::new();
    let service = trusted_stack(&store, true);
    let huge = "7".repeat(16 * 1024);
    for value in [
        "not-a-uuid",
        "../../etc/passwd",
        "",
        "0190d5a0-7c1e-7a2b-9c3d",
        &huge,
        "' OR 1=1 --",
    ] {
        assert_eq!(
            send(&service, with_header(value)).await.0,
            StatusCode::FORBIDDEN,
            "{value:?}"
        );
    }
    let non_utf8 = Request::builder()
        .header(
            "x-tenant-id",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&service, non_utf8).await.0, StatusCode::FORBIDDEN);
    for path in [
        "/tenants/../admin",
        "/tenants/ACME",
        "/tenants/%61cme/x",
        "/tenants/-x-/",
    ] {
        let request = Request::builder().uri(path).body(Full::default()).unwrap();
        assert_eq!(
            send(&service, request).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(store.lookups(), 0);
}

#[tokio::test]
async fn a_store_failure_with_nothing_cached_answers_503() {
    let store = CountingStore::new();
    let cached = store.tenant("cached", TenantStatus::Active).await;
    let cold = store.tenant("cold", TenantStatus::Active).await;
    let service = trusted_stack(&store, false);
    assert_eq!(
        send(&service, with_header(&cached.id.to_string())).await.0,
        StatusCode::OK
    );

    store.set_failing(true);
    let response = service
        .clone()
        .oneshot(with_header(&cold.id.to_string()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        json(std::str::from_utf8(&body).unwrap())["error"],
        "tenant_store_unavailable"
    );
    // A cached tenant keeps working while the store is down.
    let (status, body) = send(&service, with_header(&cached.id.to_string())).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "cached header cached")
    );
    // The failure was not cached.
    store.set_failing(false);
    assert_eq!(
        send(&service, with_header(&cold.id.to_string())).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_a_cold_tenant_make_one_store_call() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    store.set_slow(true);
    let service = trusted_stack(&store, true);
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let service = service.clone();
            let barrier = barrier.clone();
            let id = acme.id.to_string();
            tokio::spawn(async move {
                barrier.wait().await;
                send(&service, with_header(&id)).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            (StatusCode::OK, "acme header acme".to_owned())
        );
    }
    assert_eq!(store.lookups(), 1);
}

fn strict_config() -> ResolutionConfig {
    ResolutionConfig {
        resolvers: Some(vec![Builtin::JwtClaim, Builtin::Header]),
        ..ResolutionConfig::default()
    }
}

fn strict_stack(store: &Arc<CountingStore>, membership: Arc<dyn TenantMembership>) -> Service {
    stack(
        store,
        |v| {
            ResolveTenantLayer::builder(&strict_config(), v)
                .membership(membership)
                .build()
                .unwrap()
        },
        true,
    )
}

fn as_user(mut request: Request<Full<Bytes>>, user: &str) -> Request<Full<Bytes>> {
    request
        .extensions_mut()
        .insert(AuthenticatedUser(user.into()));
    request
}

#[tokio::test]
async fn strict_membership_keeps_users_out_of_other_tenants() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let globex = store.tenant("globex", TenantStatus::Active).await;
    let membership = TableMembership::with([("alice", acme.id), ("bob", globex.id)]);
    let service = strict_stack(&store, membership.clone());

    // A member passes.
    let (status, body) = send(
        &service,
        as_user(with_header(&acme.id.to_string()), "alice"),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "acme header acme")
    );
    // A spoofed header naming someone else's tenant sets no tenant.
    let spoofed = as_user(with_header(&globex.id.to_string()), "alice");
    assert_eq!(send(&service, spoofed).await.0, StatusCode::FORBIDDEN);
    // No authenticated user: no tenant, and the checker is not even asked.
    let calls = membership.calls.load(Ordering::SeqCst);
    assert_eq!(
        send(&service, with_header(&acme.id.to_string())).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(membership.calls.load(Ordering::SeqCst), calls);
    assert_eq!(calls, 2);

    // A trusted resolver (jwt_claim over verified claims) passes without the check, for anyone.
    let mut trusted = as_user(Request::new(Full::default()), "bob");
    let serde_json::Value::Object(claims) = serde_json::json!({ "tenant_id": acme.id.to_string() })
    else {
        unreachable!()
    };
    trusted.extensions_mut().insert(VerifiedClaims::new(claims));
    let (status, body) = send(&service, trusted).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "acme jwt_claim acme")
    );
    assert_eq!(membership.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_anonymous_request_under_strict_membership_costs_no_store_lookup() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let service = strict_stack(&store, TableMembership::with([("alice", acme.id)]));
    for id in [acme.id, tenancy_core::TenantId::new()] {
        let (status, body) = send(&service, with_header(&id.to_string())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Existing or not, the answer is the same: a non-member learns nothing of the tenant.
        assert_eq!(json(&body)["error"], "tenant_not_member");
    }
    assert_eq!(store.lookups(), 0);
}

#[tokio::test]
async fn authenticated_membership_lets_anonymous_requests_in_and_checks_users() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let membership = TableMembership::with([("alice", acme.id)]);
    let config = ResolutionConfig {
        membership: tenancy_resolution::MembershipMode::Authenticated,
        ..strict_config()
    };
    let service = stack(
        &store,
        |v| {
            ResolveTenantLayer::builder(&config, v)
                .membership(membership.clone())
                .build()
                .unwrap()
        },
        true,
    );
    let id = acme.id.to_string();
    // Twice each: a cache miss (async path), then a hit (sync path) decide the same.
    for _ in 0..2 {
        assert_eq!(
            send(&service, with_header(&id)).await,
            (StatusCode::OK, "acme header acme".to_owned()),
            "anonymous"
        );
        assert_eq!(
            send(&service, as_user(with_header(&id), "alice")).await,
            (StatusCode::OK, "acme header acme".to_owned()),
            "a member"
        );
        let (status, body) = send(&service, as_user(with_header(&id), "mallory")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "not a member");
        assert_eq!(json(&body)["error"], "tenant_not_member");
    }
    assert_eq!(membership.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn without_strict_membership_untrusted_resolvers_pass_unchecked() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let membership = TableMembership::with([]);
    let config = ResolutionConfig {
        membership: tenancy_resolution::MembershipMode::Off,
        ..strict_config()
    };
    let service = stack(
        &store,
        |v| {
            ResolveTenantLayer::builder(&config, v)
                .membership(membership.clone())
                .build()
                .unwrap()
        },
        true,
    );
    let request = as_user(with_header(&acme.id.to_string()), "mallory");
    assert_eq!(send(&service, request).await.0, StatusCode::OK);
    assert_eq!(membership.calls.load(Ordering::SeqCst), 0);
}

/// A membership checker whose backing store is down.
#[derive(Debug)]
struct FailingMembership;

#[async_trait::async_trait]
impl TenantMembership for FailingMembership {
    async fn is_member(&self, _: &AuthenticatedUser, _: &TenantInfo) -> Result<bool, TenantError> {
        Err(TenantError::storage(
            "membership",
            std::io::Error::other("down"),
        ))
    }
}

#[tokio::test]
async fn a_failing_membership_store_answers_503() {
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let service = strict_stack(&store, Arc::new(FailingMembership));
    let request = as_user(with_header(&acme.id.to_string()), "alice");
    assert_eq!(
        send(&service, request).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn layer_configuration_errors_name_the_problem() {
    let validator = TenantValidator::new(CountingStore::new(), &Default::default()).unwrap();
    let error = |config: ResolutionConfig| match ResolveTenantLayer::new(&config, validator.clone())
    {
        Err(TenantError::Configuration(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let message = error(strict_config());
    assert!(
        message.contains("`header`") && message.contains("TenantMembership"),
        "{message}"
    );
    let message = error(ResolutionConfig {
        trusted_resolvers: Some(vec!["jwt_clam".into()]),
        membership: tenancy_resolution::MembershipMode::Off,
        ..strict_config()
    });
    assert!(
        message.contains("trusted_resolvers names `jwt_clam`"),
        "{message}"
    );
    let message = error(ResolutionConfig {
        priorities: [("cookie".to_owned(), 1)].into(),
        membership: tenancy_resolution::MembershipMode::Off,
        ..strict_config()
    });
    assert!(message.contains("priorities names `cookie`"), "{message}");
    let message = error(ResolutionConfig {
        resolvers: Some(vec![Builtin::Subdomain]),
        ..ResolutionConfig::default()
    });
    assert!(message.contains("subdomain_base_domain"), "{message}");
    // The default trust of `jwt_claim` is no error where it is not active; a listed one is.
    let header_only = ResolutionConfig {
        resolvers: Some(vec![Builtin::Header]),
        membership: tenancy_resolution::MembershipMode::Off,
        ..ResolutionConfig::default()
    };
    assert!(ResolveTenantLayer::new(&header_only, validator.clone()).is_ok());
    let message = error(ResolutionConfig {
        trusted_resolvers: Some(vec!["jwt_claim".into()]),
        ..header_only
    });
    assert!(
        message.contains("trusted_resolvers names `jwt_claim`"),
        "{message}"
    );
}

/// An application resolver that calls itself `jwt_claim` but reads a plain request header.
#[derive(Debug)]
struct HeaderCalledJwtClaim;

impl TenantResolver for HeaderCalledJwtClaim {
    fn name(&self) -> &str {
        "jwt_claim"
    }

    fn priority(&self) -> i32 {
        1
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        match cx.headers().get("x-tenant-id") {
            Some(value) => KeyKind::Id
                .parse(value.as_bytes())
                .map_or(Resolution::NotFound, Resolution::Found),
            None => Resolution::NotFound,
        }
    }
}

#[test]
fn an_application_resolver_cannot_take_a_trusted_resolvers_name() {
    // Trust goes by name: were this resolver accepted, a spoofable header would be trusted as
    // `jwt_claim` is and skip the membership check.
    let validator = TenantValidator::new(CountingStore::new(), &Default::default()).unwrap();
    let result = ResolveTenantLayer::builder(&strict_config(), validator)
        .membership(TableMembership::with([]))
        .resolver(Arc::new(HeaderCalledJwtClaim))
        .build();
    match result {
        Err(TenantError::Configuration(message)) => {
            assert!(
                message.contains("two resolvers are named `jwt_claim`"),
                "{message}"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_service_made_ready_is_the_one_called_on_the_async_path() {
    // `ConcurrencyLimit` holds its permit in the instance `poll_ready` was called on and refuses a
    // call on any other instance: a cold request (boxed path) must use the ready one.
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let validator = TenantValidator::new(store.clone(), &Default::default()).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(ResolveTenantLayer::new(&config(), validator).unwrap())
        .concurrency_limit(1)
        .service(service_fn(whoami));
    for _ in 0..3 {
        let ready = service.ready().await.unwrap();
        let response = tower::Service::call(ready, with_header(&acme.id.to_string()))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"acme header acme");
    }
    assert_eq!(
        store.lookups(),
        1,
        "first request cold (boxed path), then cached (inline)"
    );
}
