//! The resolving middleware: [`ResolveTenantLayer`] and its service [`ResolveTenant`].
//!
//! Every request takes one path through [`Pipeline`]: resolve (resolvers in priority order),
//! membership rule, validator, membership check, status. The decisions are made by the same three
//! functions whether the answer comes from the cache at once (no future created) or after awaiting
//! a resolver, the store or the membership checker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tenancy_core::context::{self, Scope, TenantContext};
use tenancy_core::{TenantError, TenantId, TenantInfo, TenantRef};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use crate::config::ResolutionConfig;
use crate::context::{ResolutionContext, ResolvedTenant};
use crate::membership::{Access, MembershipPolicy, TenantMembership};
use crate::rejection::{JsonRejection, RejectionResponse, TenantRejection};
use crate::resolver::{ResolverRegistry, SyncResolution, TenantResolver};
use crate::telemetry::{self, Timer};
use crate::validator::{CacheEntry, TenantValidator};

/// Everything the middleware needs, shared by every clone of the service.
#[derive(Debug)]
struct Pipeline {
    registry: ResolverRegistry,
    validator: TenantValidator,
    membership: MembershipPolicy,
}

/// Work that must be awaited before the request's tenant is decided.
enum Stage {
    /// Resolve from resolver `index` on (it must be awaited).
    Resolve(usize),
    /// Found by resolver `index`, not cached: look it up in the store.
    Lookup(TenantRef, usize),
    /// Ask the membership checker about the tenant found by resolver `index`.
    Authorize(Arc<TenantInfo>, usize),
}

/// One step of the admission decision.
enum Step {
    Admit(TenantContext),
    Reject(TenantRejection),
    Await(Stage),
}

impl Pipeline {
    /// The synchronous start: resolvers that need no await, then the cache. Creates no future.
    fn start(&self, cx: &ResolutionContext<'_>) -> Step {
        match self.registry.resolve_sync(cx, 0) {
            SyncResolution::NotFound => missing(),
            SyncResolution::Deferred(index) => Step::Await(Stage::Resolve(index)),
            SyncResolution::Found(tenant, index) => self.found(cx, tenant, index),
        }
    }

    /// Resolver `index` named `tenant`: the membership rule, then the cache.
    fn found(&self, cx: &ResolutionContext<'_>, tenant: TenantRef, index: usize) -> Step {
        match self.membership.access(index, cx) {
            // Decided without looking the tenant up: a non-member learns nothing about it.
            Access::Denied => self.refuse(TenantRejection::NotMember, &tenant, index),
            access => match self.validator.cached(&tenant) {
                Some(entry) => self.admit(tenant, entry, index, access),
                None => Step::Await(Stage::Lookup(tenant, index)),
            },
        }
    }

    /// What the store says about the tenant resolver `index` found.
    fn admit(&self, tenant: TenantRef, entry: CacheEntry, index: usize, access: Access) -> Step {
        match (entry, access) {
            (None, Access::Check) => self.refuse(TenantRejection::NotMember, &tenant, index),
            (None, _) => self.refuse(TenantRejection::NotFound, &tenant, index),
            (Some(info), Access::Check) => Step::Await(Stage::Authorize(info, index)),
            (Some(info), _) => self.status(info, index),
        }
    }

    /// The last check: only an active tenant is admitted.
    fn status(&self, info: Arc<TenantInfo>, index: usize) -> Step {
        match TenantRejection::for_status(&info) {
            None => {
                telemetry::served(info.id);
                Step::Admit(TenantContext::new(
                    info,
                    Arc::clone(self.registry.name_at(index)),
                ))
            }
            Some(rejection) => {
                // The tenant exists: its refusals are counted under its label.
                telemetry::refused(rejection, Some(info.id));
                self.log_refusal(rejection, &TenantRef::Id(info.id), index)
            }
        }
    }

    /// Refuses a tenant that was not verified to exist: counted under no tenant label.
    fn refuse(&self, rejection: TenantRejection, tenant: &TenantRef, index: usize) -> Step {
        telemetry::refused(rejection, None);
        self.log_refusal(rejection, tenant, index)
    }

    fn log_refusal(&self, rejection: TenantRejection, tenant: &TenantRef, index: usize) -> Step {
        tracing::debug!(tenant = %tenant, resolver = %self.registry.name_at(index), reason = %rejection, "tenant refused");
        Step::Reject(rejection)
    }

    /// Runs the awaited stages to a decision. `Err` only for infrastructure failures.
    async fn finish(
        &self,
        mut stage: Stage,
        parts: &Parts,
    ) -> Result<Result<TenantContext, TenantRejection>, TenantError> {
        let cx = ResolutionContext::from_parts(parts);
        loop {
            let step = match stage {
                Stage::Resolve(start) => match self.registry.resolve_from(&cx, start).await? {
                    Some((tenant, index)) => self.found(&cx, tenant, index),
                    None => missing(),
                },
                Stage::Lookup(tenant, index) => {
                    let entry = self.validator.lookup(tenant).await?;
                    self.admit(tenant, entry, index, self.membership.access(index, &cx))
                }
                Stage::Authorize(info, index) => {
                    let member = match cx.user() {
                        Some(user) => self.membership.is_member(user, &info).await,
                        None => Ok(false),
                    };
                    match member {
                        Ok(true) => self.status(info, index),
                        Err(err) if err.is_infrastructure() => return Err(err),
                        Ok(false) | Err(_) => {
                            self.refuse(TenantRejection::NotMember, &TenantRef::Id(info.id), index)
                        }
                    }
                }
            };
            match step {
                Step::Admit(tenant) => return Ok(Ok(tenant)),
                Step::Reject(rejection) => return Ok(Err(rejection)),
                Step::Await(next) => stage = next,
            }
        }
    }
}

/// No resolver found a tenant.
fn missing() -> Step {
    telemetry::refused(TenantRejection::Missing, None);
    Step::Reject(TenantRejection::Missing)
}

/// Puts the tenant in the request extensions; returns the span to run the request in.
fn attach<B>(tenant: &TenantContext, request: &mut Request<B>) -> tracing::Span {
    request
        .extensions_mut()
        .insert(ResolvedTenant(tenant.clone()));
    tracing::info_span!("tenancy", tenant_id = %tenant.id(), resolver = tenant.resolved_by())
}

/// Puts the reason in the request extensions; returns the span to run the request in.
fn reject<B>(rejection: TenantRejection, request: &mut Request<B>) -> tracing::Span {
    request.extensions_mut().insert(rejection);
    tracing::info_span!(
        "tenancy",
        tenant_id = tracing::field::Empty,
        rejection = rejection.code()
    )
}

/// The tower [`Layer`] that resolves each request's tenant.
///
/// For each request it resolves the tenant (resolvers in priority order), applies the membership
/// rule, validates the tenant (cache, then store), then inserts [`ResolvedTenant`] into the
/// request extensions and runs the inner service inside [`tenancy_core::context::scope`] and a
/// `tenancy` tracing span carrying `tenant_id`. When it sets no tenant it inserts the
/// [`TenantRejection`] saying why, and by default lets the request through (put a
/// [`RequireTenantLayer`](crate::RequireTenantLayer) on routes that need a tenant, or use
/// [`require_tenant`](Self::require_tenant) when all of them do). When the store fails and nothing
/// is cached, it answers [`TenantRejection::Unavailable`] (503).
///
/// Its answers come from `R`, a [`RejectionResponse`]: [`JsonRejection`] by default (any body
/// built from `&'static str`, such as axum's), [`GrpcRejection`](crate::GrpcRejection) for tonic
/// (any body with a `Default`), or the application's own (see [`rejection`](Self::rejection)).
///
/// A request whose tenant is cached and whose resolvers are synchronous is handled without boxing
/// a future; a cache miss, an awaiting resolver or a membership check takes a boxed path. Both
/// make the same decisions.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use tenancy_core::InMemoryStore;
/// use tenancy_resolution::{
///     MembershipMode, RequireTenantLayer, ResolutionConfig, ResolveTenantLayer, TenantValidator,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ResolutionConfig { membership: MembershipMode::Off, ..ResolutionConfig::default() };
/// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
/// let app: Router = Router::new()
///     .route("/whoami", get(|| async { "ok" }))
///     .layer(RequireTenantLayer::new())
///     .layer(ResolveTenantLayer::new(&config, validator)?);
/// # Ok(()) }
/// ```
pub struct ResolveTenantLayer<R = JsonRejection> {
    pipeline: Arc<Pipeline>,
    required: bool,
    rejection: R,
}

impl<R: Clone> Clone for ResolveTenantLayer<R> {
    fn clone(&self) -> Self {
        Self {
            pipeline: Arc::clone(&self.pipeline),
            required: self.required,
            rejection: self.rejection.clone(),
        }
    }
}

impl<R> fmt::Debug for ResolveTenantLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveTenantLayer")
            .field(
                "resolvers",
                &self.pipeline.registry.names().collect::<Vec<_>>(),
            )
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl ResolveTenantLayer {
    /// The middleware with the built-in resolvers `config` names and no membership checker.
    ///
    /// # Errors
    /// [`TenantError::Configuration`], see [`ResolveTenantBuilder::build`].
    pub fn new(config: &ResolutionConfig, validator: TenantValidator) -> Result<Self, TenantError> {
        Self::builder(config, validator).build()
    }

    /// A builder, to add application resolvers and a membership checker.
    #[must_use]
    pub fn builder(
        config: &ResolutionConfig,
        validator: TenantValidator,
    ) -> ResolveTenantBuilder<'_> {
        ResolveTenantBuilder {
            config,
            validator,
            resolvers: Vec::new(),
            membership: None,
        }
    }
}

impl<R> ResolveTenantLayer<R> {
    /// The key set the `jwt_claim` resolver verifies bearer tokens with, when
    /// `resolution.jwt_verify.jwks` is configured (feature `jwks`): fetch it before serving, report
    /// its health.
    #[cfg(feature = "jwks")]
    #[must_use]
    pub fn jwks(&self) -> Option<&crate::JwksCache> {
        self.pipeline.registry.jwks()
    }

    /// The same middleware, also answering the [`TenantRejection`] itself when it sets no tenant,
    /// exactly as [`RequireTenantLayer`](crate::RequireTenantLayer) would behind it: one layer
    /// does both jobs. Keep the separate guard for routers that mix public and tenant routes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use axum::{Router, routing::get};
    /// use tenancy_core::InMemoryStore;
    /// use tenancy_resolution::{MembershipMode, ResolutionConfig, ResolveTenantLayer, TenantValidator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ResolutionConfig { membership: MembershipMode::Off, ..ResolutionConfig::default() };
    /// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
    /// let app: Router = Router::new()
    ///     .route("/whoami", get(|| async { "ok" }))
    ///     .layer(ResolveTenantLayer::new(&config, validator)?.require_tenant());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn require_tenant(mut self) -> Self {
        self.required = true;
        self
    }

    /// The same middleware, answering its rejections with `rejection`:
    /// [`GrpcRejection`](crate::GrpcRejection) for a tonic service, or a closure of the
    /// application's.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tenancy_core::InMemoryStore;
    /// use tenancy_resolution::{GrpcRejection, MembershipMode, ResolutionConfig, ResolveTenantLayer, TenantValidator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ResolutionConfig { membership: MembershipMode::Off, ..ResolutionConfig::default() };
    /// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
    /// let grpc = ResolveTenantLayer::new(&config, validator)?.require_tenant().rejection(GrpcRejection);
    /// # let _ = grpc;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn rejection<T>(self, rejection: T) -> ResolveTenantLayer<T> {
        ResolveTenantLayer {
            pipeline: self.pipeline,
            required: self.required,
            rejection,
        }
    }
}

/// Builds a [`ResolveTenantLayer`].
#[derive(Debug)]
pub struct ResolveTenantBuilder<'c> {
    config: &'c ResolutionConfig,
    validator: TenantValidator,
    resolvers: Vec<Arc<dyn TenantResolver>>,
    membership: Option<Arc<dyn TenantMembership>>,
}

impl ResolveTenantBuilder<'_> {
    /// Adds an application resolver (after the built-in ones of the same priority).
    #[must_use]
    pub fn resolver(mut self, resolver: Arc<dyn TenantResolver>) -> Self {
        self.resolvers.push(resolver);
        self
    }

    /// Sets the membership checker used for untrusted resolvers.
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
    /// and priorities: a second `jwt_claim` would be trusted as the first is), or a membership
    /// mode other than `off` with an untrusted resolver and no membership checker.
    pub fn build(self) -> Result<ResolveTenantLayer, TenantError> {
        let mut registry = ResolverRegistry::from_config(self.config, &self.validator)?;
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
        Ok(ResolveTenantLayer {
            pipeline: Arc::new(Pipeline {
                registry,
                validator: self.validator,
                membership,
            }),
            required: false,
            rejection: JsonRejection,
        })
    }
}

impl<S, R: Clone> Layer<S> for ResolveTenantLayer<R> {
    type Service = ResolveTenant<S, R>;

    fn layer(&self, inner: S) -> ResolveTenant<S, R> {
        ResolveTenant {
            inner,
            pipeline: Arc::clone(&self.pipeline),
            required: self.required,
            rejection: self.rejection.clone(),
        }
    }
}

/// The service of [`ResolveTenantLayer`].
#[derive(Clone)]
pub struct ResolveTenant<S, R = JsonRejection> {
    inner: S,
    pipeline: Arc<Pipeline>,
    required: bool,
    rejection: R,
}

impl<S: fmt::Debug, R> fmt::Debug for ResolveTenant<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveTenant")
            .field("inner", &self.inner)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Runs `call` in the tenant's scope and span.
fn scoped<S, B>(
    inner: &mut S,
    tenant: TenantContext,
    mut request: Request<B>,
) -> Admitted<S::Future>
where
    S: Service<Request<B>>,
{
    let span = attach(&tenant, &mut request);
    // `call` itself runs in the scope too (a layer may read the tenant there).
    let future = context::sync_scope(&tenant, || inner.call(request));
    let future = context::scope(tenant, future);
    // A disabled span records nothing: skip entering it on every poll and on drop. A recorded
    // one is boxed, so that the future of every request stays as small as the untraced one.
    if span.is_disabled() {
        Admitted::Scoped { future }
    } else {
        Admitted::Traced {
            future: Box::pin(future.instrument(span)),
        }
    }
}

pin_project! {
    /// The inner service's future for an admitted request: in the tenant's scope, and in its
    /// span when that records.
    #[project = AdmittedProj]
    enum Admitted<F> {
        Scoped { #[pin] future: Scope<F> },
        Traced { future: Pin<Box<Instrumented<Scope<F>>>> },
    }
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            AdmittedProj::Scoped { future } => future.poll(cx),
            AdmittedProj::Traced { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ResolveTenant<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
    R: RejectionResponse<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let timer = Timer::start();
        let step = self
            .pipeline
            .start(&ResolutionContext::from_request(&request));
        let state = match step {
            Step::Admit(tenant) => State::Admitted {
                timing: Some((timer, tenant.id())),
                future: scoped(&mut self.inner, tenant, request),
            },
            Step::Reject(rejection) if self.required => State::Ready {
                output: Some(Ok(self.rejection.respond(rejection))),
            },
            Step::Reject(rejection) => {
                let span = reject(rejection, &mut request);
                let future = self.inner.call(request);
                if span.is_disabled() {
                    State::Plain { future }
                } else {
                    State::Boxed {
                        future: Box::pin(future.instrument(span)),
                    }
                }
            }
            Step::Await(stage) => {
                // The clone is not necessarily ready: keep the ready one for this request.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let pipeline = Arc::clone(&self.pipeline);
                let required = self.required;
                let rejection = self.rejection.clone();
                State::Boxed {
                    future: Box::pin(async move {
                        // Parts, not the request: a body need not be `Sync`.
                        let (parts, body) = request.into_parts();
                        let decided = pipeline.finish(stage, &parts).await;
                        let mut request = Request::from_parts(parts, body);
                        match decided {
                            Ok(Ok(tenant)) => {
                                let id = tenant.id();
                                let response = scoped(&mut inner, tenant, request).await;
                                timer.finish(id);
                                response
                            }
                            Ok(Err(refused)) if required => Ok(rejection.respond(refused)),
                            Ok(Err(refused)) => {
                                let span = reject(refused, &mut request);
                                inner.call(request).instrument(span).await
                            }
                            Err(err) => {
                                tracing::error!(error = %err, "tenant store unavailable, answering 503");
                                telemetry::refused(TenantRejection::Unavailable, None);
                                Ok(rejection.respond(TenantRejection::Unavailable))
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
    /// The response future of [`ResolveTenant`].
    pub struct ResponseFuture<F: Future> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F: Future> {
        Admitted { #[pin] future: Admitted<F>, timing: Option<(Timer, TenantId)> },
        Plain { #[pin] future: F },
        Boxed { future: BoxFuture<'static, F::Output> },
        Ready { output: Option<F::Output> },
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitted { .. } => "admitted",
            State::Plain { .. } => "plain",
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
            StateProj::Admitted { future, timing } => {
                let output = ready!(future.poll(cx));
                if let Some((timer, tenant)) = timing.take() {
                    timer.finish(tenant);
                }
                Poll::Ready(output)
            }
            StateProj::Plain { future } => future.poll(cx),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
            StateProj::Ready { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                None => panic!("ResolveTenant's ResponseFuture polled after completion"),
            },
        }
    }
}
