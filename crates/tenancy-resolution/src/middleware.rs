//! The resolving middleware: [`TenancyLayer`] and its service [`Tenancy`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tenancy_core::context::{self, TenantContext};
use tenancy_core::{TenantError, TenantInfo, TenantRef};
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use crate::config::ResolutionConfig;
use crate::context::{ResolutionContext, ResolvedTenant};
use crate::membership::{Access, MembershipPolicy, TenantMembership};
use crate::resolver::{ResolverRegistry, SyncResolution, TenantResolver};
use crate::response;
use crate::validator::{self, CacheEntry, TenantValidator};

/// Everything the middleware needs, shared by every clone of the service.
#[derive(Debug)]
struct Pipeline {
    registry: ResolverRegistry,
    validator: TenantValidator,
    membership: MembershipPolicy,
}

/// Where the asynchronous path starts.
enum Stage {
    /// Resolve from resolver `index` (it must be awaited).
    Resolve(usize),
    /// The tenant is not cached: validate it through the store.
    Validate(TenantRef, usize),
    /// Valid; ask the membership checker.
    Authorize(Arc<TenantInfo>, usize),
}

/// What the synchronous path decided.
enum Decision {
    Tenant(TenantContext),
    NoTenant,
    Continue(Stage),
}

impl Pipeline {
    fn context(&self, info: Arc<TenantInfo>, index: usize) -> TenantContext {
        TenantContext::new(info, Arc::clone(self.registry.name_at(index)))
    }

    /// Everything that needs no await: sync resolvers, a cache hit, the trust rule.
    fn decide(&self, cx: &ResolutionContext<'_>) -> Decision {
        match self.registry.resolve_sync(cx, 0) {
            SyncResolution::NotFound => Decision::NoTenant,
            SyncResolution::Deferred(index) => Decision::Continue(Stage::Resolve(index)),
            SyncResolution::Found(tenant, index) => match self.validator.cached(&tenant) {
                Some(entry) => self.decide_entry(cx, tenant, entry, index),
                None => Decision::Continue(Stage::Validate(tenant, index)),
            },
        }
    }

    fn decide_entry(
        &self,
        cx: &ResolutionContext<'_>,
        tenant: TenantRef,
        entry: CacheEntry,
        index: usize,
    ) -> Decision {
        let info = match validator::check(tenant, entry) {
            Ok(info) => info,
            Err(reason) => {
                refused(tenant, index, &self.registry, &reason);
                return Decision::NoTenant;
            }
        };
        match self.membership.access(index, cx.user()) {
            Access::Granted => Decision::Tenant(self.context(info, index)),
            Access::Denied => {
                not_member(&info, index, &self.registry);
                Decision::NoTenant
            }
            Access::Check => Decision::Continue(Stage::Authorize(info, index)),
        }
    }

    /// The asynchronous path. `Err` only for infrastructure failures (answered with 503).
    async fn resolve(
        &self,
        stage: Stage,
        parts: &Parts,
    ) -> Result<Option<TenantContext>, TenantError> {
        let cx = ResolutionContext::from_parts(parts);
        let (tenant, index) = match stage {
            Stage::Authorize(info, index) => return self.authorize(&cx, info, index).await,
            Stage::Validate(tenant, index) => (tenant, index),
            Stage::Resolve(start) => match self.registry.resolve_from(&cx, start).await? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        let info = match self.validator.validate(tenant).await {
            Ok(info) => info,
            Err(err) if err.is_infrastructure() => return Err(err),
            Err(reason) => {
                refused(tenant, index, &self.registry, &reason);
                return Ok(None);
            }
        };
        match self.membership.access(index, cx.user()) {
            Access::Granted => Ok(Some(self.context(info, index))),
            Access::Denied => {
                not_member(&info, index, &self.registry);
                Ok(None)
            }
            Access::Check => self.authorize(&cx, info, index).await,
        }
    }

    async fn authorize(
        &self,
        cx: &ResolutionContext<'_>,
        info: Arc<TenantInfo>,
        index: usize,
    ) -> Result<Option<TenantContext>, TenantError> {
        let Some(user) = cx.user() else {
            return Ok(None);
        };
        match self.membership.is_member(user, &info).await {
            Ok(true) => Ok(Some(self.context(info, index))),
            Ok(false) => {
                not_member(&info, index, &self.registry);
                Ok(None)
            }
            Err(err) if err.is_infrastructure() => Err(err),
            Err(err) => {
                tracing::debug!(tenant_id = %info.id, error = %err, "membership check refused");
                Ok(None)
            }
        }
    }
}

fn refused(tenant: TenantRef, index: usize, registry: &ResolverRegistry, reason: &TenantError) {
    tracing::debug!(tenant = %tenant, resolver = %registry.name_at(index), reason = %reason, "tenant refused");
}

fn not_member(info: &TenantInfo, index: usize, registry: &ResolverRegistry) {
    tracing::debug!(
        tenant_id = %info.id,
        resolver = %registry.name_at(index),
        "tenant not set: the user is not a member and the resolver is not trusted"
    );
}

/// Puts the tenant in the request extensions; returns the span to run the request in.
fn attach<B>(tenant: &TenantContext, request: &mut Request<B>) -> tracing::Span {
    request
        .extensions_mut()
        .insert(ResolvedTenant(tenant.clone()));
    tracing::info_span!("tenancy", tenant_id = %tenant.id(), resolver = tenant.resolved_by())
}

fn no_tenant_span() -> tracing::Span {
    tracing::info_span!("tenancy", tenant_id = tracing::field::Empty)
}

/// The tower [`Layer`] of the resolving middleware.
///
/// For each request it resolves the tenant (resolvers in priority order), validates it (cache,
/// then store), applies the membership rule, then inserts [`ResolvedTenant`] into the request
/// extensions and runs the inner service inside [`tenancy_core::context::scope`] and a `tenancy`
/// tracing span carrying `tenant_id`. By default it never rejects a request for lacking a tenant
/// (put a [`TenantGuardLayer`](crate::TenantGuardLayer) on routes that need one, or opt in to
/// [`require_tenant`](Self::require_tenant) when all of them do). When the store fails and
/// nothing is cached, it answers 503 with a JSON body ([`STORE_UNAVAILABLE_BODY`](crate::response::STORE_UNAVAILABLE_BODY)).
///
/// The response body type must implement `From<&'static str>` for that 503: axum's `Body` and
/// http-body-util's `Full<Bytes>` (hyper) do, so no body is re-boxed on the way. tonic's
/// `tonic::body::Body` does not: under tonic, map the inner response body to one of those first
/// (tower-http's `MapResponseBody`) and back with `tonic::body::Body::new` outside this layer.
///
/// A request whose tenant is cached and whose resolvers are synchronous is handled without boxing
/// a future; a cache miss, an awaiting resolver or a membership check takes a boxed path.
///
/// [`require_tenant`](Self::require_tenant) makes the layer answer the guard's 403 itself, so that
/// a router whose routes all need a tenant needs one layer instead of two.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use tenancy_core::InMemoryStore;
/// use tenancy_resolution::{ResolutionConfig, TenancyLayer, TenantGuardLayer, TenantValidator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ResolutionConfig { strict_membership: false, ..ResolutionConfig::default() };
/// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
/// let app: Router = Router::new()
///     .route("/whoami", get(|| async { "ok" }))
///     .layer(TenantGuardLayer::new())
///     .layer(TenancyLayer::new(&config, validator)?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TenancyLayer {
    pipeline: Arc<Pipeline>,
    required: bool,
}

impl fmt::Debug for TenancyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenancyLayer")
            .field(
                "resolvers",
                &self.pipeline.registry.names().collect::<Vec<_>>(),
            )
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl TenancyLayer {
    /// The same middleware, also answering 403 `tenant_required`
    /// ([`TENANT_REQUIRED_BODY`](crate::response::TENANT_REQUIRED_BODY)) when it sets no tenant,
    /// exactly as [`TenantGuardLayer`](crate::TenantGuardLayer) would behind it: one layer does
    /// both jobs. Keep the separate guard for routers that mix public and tenant routes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use axum::{Router, routing::get};
    /// use tenancy_core::InMemoryStore;
    /// use tenancy_resolution::{ResolutionConfig, TenancyLayer, TenantValidator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ResolutionConfig { strict_membership: false, ..ResolutionConfig::default() };
    /// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
    /// let app: Router = Router::new()
    ///     .route("/whoami", get(|| async { "ok" }))
    ///     .layer(TenancyLayer::new(&config, validator)?.require_tenant());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn require_tenant(mut self) -> Self {
        self.required = true;
        self
    }

    /// The middleware with the built-in resolvers `config` names and no membership checker.
    ///
    /// # Errors
    /// [`TenantError::Configuration`], see [`TenancyLayerBuilder::build`].
    pub fn new(config: &ResolutionConfig, validator: TenantValidator) -> Result<Self, TenantError> {
        Self::builder(config, validator).build()
    }

    /// A builder, to add application resolvers and a membership checker.
    #[must_use]
    pub fn builder(
        config: &ResolutionConfig,
        validator: TenantValidator,
    ) -> TenancyLayerBuilder<'_> {
        TenancyLayerBuilder {
            config,
            validator,
            resolvers: Vec::new(),
            membership: None,
        }
    }
}

/// Builds a [`TenancyLayer`].
#[derive(Debug)]
pub struct TenancyLayerBuilder<'c> {
    config: &'c ResolutionConfig,
    validator: TenantValidator,
    resolvers: Vec<Arc<dyn TenantResolver>>,
    membership: Option<Arc<dyn TenantMembership>>,
}

impl TenancyLayerBuilder<'_> {
    /// Adds an application resolver (after the built-in ones of the same priority).
    #[must_use]
    pub fn resolver(mut self, resolver: Arc<dyn TenantResolver>) -> Self {
        self.resolvers.push(resolver);
        self
    }

    /// Sets the membership checker used for untrusted resolvers under strict membership.
    #[must_use]
    pub fn membership(mut self, membership: Arc<dyn TenantMembership>) -> Self {
        self.membership = Some(membership);
        self
    }

    /// The layer.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid resolver configuration (see
    /// [`ResolverRegistry::from_config`]), a trusted resolver or priority override naming no
    /// active resolver, an application resolver named like another resolver (names decide trust
    /// and priorities: a second `jwt_claim` would be trusted as the first is), or strict
    /// membership with an untrusted resolver and no membership checker.
    pub fn build(self) -> Result<TenancyLayer, TenantError> {
        let mut registry = ResolverRegistry::from_config(self.config)?;
        for resolver in self.resolvers {
            if registry.names().any(|name| name == resolver.name()) {
                return Err(TenantError::Configuration(format!(
                    "two resolvers are named `{}`: names decide trust \
                     (resolution.trusted_resolvers) and priorities, so each must be unique; \
                     rename the application resolver or drop the other from resolution.resolvers",
                    resolver.name()
                )));
            }
            registry.register(resolver);
        }
        let membership = MembershipPolicy::new(self.config, &registry, self.membership)?;
        Ok(TenancyLayer {
            pipeline: Arc::new(Pipeline {
                registry,
                validator: self.validator,
                membership,
            }),
            required: false,
        })
    }
}

impl<S> Layer<S> for TenancyLayer {
    type Service = Tenancy<S>;

    fn layer(&self, inner: S) -> Tenancy<S> {
        Tenancy {
            inner,
            pipeline: Arc::clone(&self.pipeline),
            required: self.required,
        }
    }
}

/// The service of [`TenancyLayer`].
#[derive(Clone)]
pub struct Tenancy<S> {
    inner: S,
    pipeline: Arc<Pipeline>,
    required: bool,
}

impl<S: fmt::Debug> fmt::Debug for Tenancy<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("inner", &self.inner)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Tenancy<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let decision = self
            .pipeline
            .decide(&ResolutionContext::from_request(&request));
        let state = match decision {
            Decision::Tenant(tenant) => {
                let span = attach(&tenant, &mut request);
                // `call` itself runs in the scope too (a layer may read the tenant there).
                let inner = &mut self.inner;
                let future = context::sync_scope(tenant.clone(), || inner.call(request));
                let future = context::scope(tenant, future);
                // A disabled span records nothing: skip entering it on every poll and on drop.
                if span.is_disabled() {
                    State::Scoped { future }
                } else {
                    State::ScopedTraced {
                        future: future.instrument(span),
                    }
                }
            }
            Decision::NoTenant if self.required => State::Ready {
                output: Some(Ok(response::tenant_required())),
            },
            Decision::NoTenant => {
                let span = no_tenant_span();
                let future = self.inner.call(request);
                if span.is_disabled() {
                    State::Plain { future }
                } else {
                    State::PlainTraced {
                        future: future.instrument(span),
                    }
                }
            }
            Decision::Continue(stage) => {
                // The clone is not necessarily ready: keep the ready one for this request.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let pipeline = Arc::clone(&self.pipeline);
                let required = self.required;
                State::Boxed {
                    future: Box::pin(async move {
                        // Parts, not the request: a body need not be `Sync`.
                        let (parts, body) = request.into_parts();
                        let resolved = pipeline.resolve(stage, &parts).await;
                        let mut request = Request::from_parts(parts, body);
                        match resolved {
                            Ok(Some(tenant)) => {
                                let span = attach(&tenant, &mut request);
                                let future =
                                    context::sync_scope(tenant.clone(), || inner.call(request));
                                context::scope(tenant, future).instrument(span).await
                            }
                            Ok(None) if required => Ok(response::tenant_required()),
                            Ok(None) => inner.call(request).instrument(no_tenant_span()).await,
                            Err(err) => {
                                tracing::error!(error = %err, "tenant store unavailable, answering 503");
                                Ok(response::store_unavailable())
                            }
                        }
                    }),
                }
            }
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The response future of [`Tenancy`].
    pub struct ResponseFuture<F: Future> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F: Future> {
        Scoped { #[pin] future: TaskLocalFuture<TenantContext, F> },
        ScopedTraced { #[pin] future: Instrumented<TaskLocalFuture<TenantContext, F>> },
        Plain { #[pin] future: F },
        PlainTraced { #[pin] future: Instrumented<F> },
        Boxed { future: BoxFuture<'static, F::Output> },
        Ready { output: Option<F::Output> },
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Scoped { .. } | State::ScopedTraced { .. } => "scoped",
            State::Plain { .. } | State::PlainTraced { .. } => "plain",
            State::Boxed { .. } => "boxed",
            State::Ready { .. } => "ready",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project().state.project() {
            StateProj::Scoped { future } => future.poll(cx),
            StateProj::ScopedTraced { future } => future.poll(cx),
            StateProj::Plain { future } => future.poll(cx),
            StateProj::PlainTraced { future } => future.poll(cx),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
            StateProj::Ready { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                None => panic!("tenancy ResponseFuture polled after completion"),
            },
        }
    }
}
