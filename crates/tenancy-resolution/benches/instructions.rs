//! Bench target `instructions`: an HTTP/1.1 server whose requests `cargo xtask instructions`
//! counts in user-space instructions under valgrind's callgrind.
//!
//! `instructions <variant>` binds `127.0.0.1` on a free port, prints
//! `listening <address> tenant <tenant id>` on one line of standard output, accepts ONE
//! connection, serves every request on it (keep-alive) and exits when the client closes it, so
//! that callgrind writes its totals. One route, `GET /whoami`, answers `"ok"`, on a
//! current-thread tokio runtime, in one of four variants:
//!
//! - `bare`: the axum `Router` alone;
//! - `handwritten`: the router behind a hand-written tower middleware that reads `x-tenant-id`,
//!   parses the UUID, looks it up in a `HashMap<TenantId, Arc<TenantInfo>>`, puts the `Arc` in
//!   the request extensions and answers 403 when there is none;
//! - `layer`: the router behind the tenancy middleware as one layer that answers the 403 itself;
//! - `layer_guard`: the router behind the tenancy middleware and the separate guard;
//! - `handwritten_around`, `layer_around`: the same middleware wrapped around the router as a
//!   tower service (`Layer::layer(&layer, router)`) instead of added with `Router::layer`, which
//!   boxes every layer's service and future;
//! - `domain_around`: `layer_around` with the `domain` resolver instead of the header one: the
//!   tenant is named by `host: acme.example`, its custom domain.
//!
//! The tenancy variants use only the header resolver, trusted, with membership off, on an
//! `InMemoryStore` holding one active tenant whose validator cache entry is warm before the
//! first request. Run under `cargo bench` (argument `--bench`), it only says how to run it.

use std::collections::HashMap;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use http::header::HeaderName;
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tenancy_core::{
    CreateTenant, InMemoryStore, StatusChange, TenantError, TenantId, TenantInfo, TenantRef,
    TenantStatus, TenantStore,
};
use tenancy_resolution::{
    Builtin, MembershipMode, RequireTenantLayer, ResolutionConfig, ResolveTenantLayer,
    TenantValidator,
};
use tower_layer::Layer;
use tower_service::Service;

/// The server variants, by the name given on the command line.
#[derive(Debug, Clone, Copy)]
enum Variant {
    Bare,
    Handwritten,
    Layer,
    LayerGuard,
    HandwrittenAround,
    LayerAround,
    DomainAround,
}

impl Variant {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "bare" => Some(Self::Bare),
            "handwritten" => Some(Self::Handwritten),
            "layer" => Some(Self::Layer),
            "layer_guard" => Some(Self::LayerGuard),
            "handwritten_around" => Some(Self::HandwrittenAround),
            "layer_around" => Some(Self::LayerAround),
            "domain_around" => Some(Self::DomainAround),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench` (after any filter, which may name a variant).
    if args.iter().any(|arg| arg == "--bench") {
        println!(
            "instructions: counts instructions per request under callgrind; \
             run it with `cargo xtask instructions`"
        );
        return ExitCode::SUCCESS;
    }
    let Some(variant) = args.first().and_then(|name| Variant::parse(name)) else {
        eprintln!(
            "usage: instructions \
             <bare|handwritten|layer|layer_guard|handwritten_around|layer_around|domain_around>"
        );
        return ExitCode::from(2);
    };
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(Box::<dyn Error>::from)
        .and_then(|runtime| runtime.block_on(serve(variant)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("instructions {variant:?}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the variant's service, announces the address, serves one connection to its end.
async fn serve(variant: Variant) -> Result<(), Box<dyn Error>> {
    let (tenant, validator) = one_active_tenant().await?;
    let router = Router::new().route("/whoami", get(|| async { "ok" }));
    let handwritten = || HandwrittenLayer {
        tenants: Arc::new(HashMap::from([(tenant.id, Arc::new(tenant.clone()))])),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {} tenant {}", listener.local_addr()?, tenant.id);
    match variant {
        Variant::Bare => serve_one(listener, router).await,
        Variant::Handwritten => serve_one(listener, router.layer(handwritten())).await,
        Variant::Layer => serve_one(listener, with_tenancy(router, validator, false)?).await,
        Variant::LayerGuard => serve_one(listener, with_tenancy(router, validator, true)?).await,
        Variant::HandwrittenAround => serve_one(listener, handwritten().layer(router)).await,
        Variant::LayerAround => {
            let layer = ResolveTenantLayer::new(&header_only_config(), validator)?;
            serve_one(listener, layer.require_tenant().layer(router)).await
        }
        Variant::DomainAround => {
            let config = ResolutionConfig {
                resolvers: Some(vec![Builtin::Domain]),
                trusted_resolvers: Some(vec!["domain".into()]),
                ..header_only_config()
            };
            let layer = ResolveTenantLayer::new(&config, validator)?;
            serve_one(listener, layer.require_tenant().layer(router)).await
        }
    }
}

/// Serves the one connection `listener` accepts with `app`, to its end.
async fn serve_one<S>(listener: tokio::net::TcpListener, app: S) -> Result<(), Box<dyn Error>>
where
    S: Service<Request<hyper::body::Incoming>, Response = Response> + Clone + Send + 'static,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await?;
    Ok(())
}

/// The tenancy middleware around `router`: one layer that answers the 403 itself, or
/// (`with_guard`) the middleware and the separate guard, placed as the crate's docs show.
fn with_tenancy(
    router: Router,
    validator: TenantValidator,
    with_guard: bool,
) -> Result<Router, TenantError> {
    let config = header_only_config();
    let layer = ResolveTenantLayer::new(&config, validator)?;
    Ok(if with_guard {
        router.route_layer(RequireTenantLayer::new()).layer(layer)
    } else {
        router.layer(layer.require_tenant())
    })
}

/// Only the header resolver, trusted (a gateway sets the header), so no membership check.
fn header_only_config() -> ResolutionConfig {
    ResolutionConfig {
        resolvers: Some(vec![Builtin::Header]),
        trusted_resolvers: Some(vec!["header".into()]),
        membership: MembershipMode::Off,
        ..ResolutionConfig::default()
    }
}

/// An `InMemoryStore` with one active tenant owning the domain `acme.example`, and a validator
/// whose cache already holds both.
async fn one_active_tenant() -> Result<(TenantInfo, TenantValidator), Box<dyn Error>> {
    let store = Arc::new(InMemoryStore::new());
    let tenant = TenantInfo::from_command(
        CreateTenant::new("acme".parse()?, "Acme"),
        chrono::Utc::now(),
    )?;
    let tenant = store.create(tenant).await?;
    let change = StatusChange {
        from: TenantStatus::Provisioning,
        to: TenantStatus::Active,
        reason: None,
    };
    let tenant = store.set_status(tenant.id, change).await?;
    let domain = "acme.example".parse()?;
    store.add_domain(tenant.id, &domain, true).await?;
    let validator = TenantValidator::new(store, &header_only_config().validator)?;
    validator.validate(TenantRef::Id(tenant.id)).await?;
    validator.lookup_domain(&domain).await?;
    Ok((tenant, validator))
}

/// The header the hand-written middleware reads.
static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// A hand-written tenant middleware: header, UUID parse, `HashMap` lookup, `Arc` in the
/// extensions, 403 without a body when the tenant is unknown. No boxing anywhere.
#[derive(Clone)]
struct HandwrittenLayer {
    tenants: Arc<HashMap<TenantId, Arc<TenantInfo>>>,
}

impl<S> Layer<S> for HandwrittenLayer {
    type Service = Handwritten<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Handwritten {
            inner,
            tenants: Arc::clone(&self.tenants),
        }
    }
}

/// The service of [`HandwrittenLayer`].
#[derive(Clone)]
struct Handwritten<S> {
    inner: S,
    tenants: Arc<HashMap<TenantId, Arc<TenantInfo>>>,
}

impl<S, B> Service<Request<B>> for Handwritten<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = HandwrittenFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let tenant = request
            .headers()
            .get(&X_TENANT_ID)
            .and_then(|value| TenantId::try_from(value.as_bytes()).ok())
            .and_then(|id| self.tenants.get(&id));
        match tenant {
            Some(tenant) => {
                let tenant = Arc::clone(tenant);
                request.extensions_mut().insert(tenant);
                HandwrittenFuture::Inner {
                    future: self.inner.call(request),
                }
            }
            None => HandwrittenFuture::Forbidden,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Handwritten`]: the inner service's, or a ready 403.
    #[project = HandwrittenProjection]
    enum HandwrittenFuture<F> {
        Inner { #[pin] future: F },
        Forbidden,
    }
}

impl<F, E> Future for HandwrittenFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandwrittenProjection::Inner { future } => future.poll(cx),
            HandwrittenProjection::Forbidden => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::FORBIDDEN;
                Poll::Ready(Ok(response))
            }
        }
    }
}
