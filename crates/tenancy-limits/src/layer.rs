//! [`TenantLimitLayer`]: the tower layer that enforces each tenant's request rate and requests in
//! flight, after tenant resolution.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tenancy_resolution::ResolvedTenant;
use tower_layer::Layer;
use tower_service::Service;

use crate::registry::{InFlight, TenantLimits};
use tenancy_resolution::{JsonRejection, RejectionResponse};

use crate::rejection::LimitRejection;

/// Enforces each tenant's limits ([`TenantLimits`]) on the requests that reach it. Place it
/// inside (after) `ResolveTenantLayer`: it reads the [`ResolvedTenant`] the resolution put in the
/// request's extensions. A request without one passes untouched (the guard or the handler
/// decides about it).
///
/// Over the rate: 429 with `Retry-After` (the bucket's wait, whole seconds rounded up); over the
/// requests in flight: 503 with `Retry-After: 1`; both shaped by `R` ([`JsonRejection`] by
/// default, any [`RejectionResponse`] of a [`LimitRejection`]). A request's place in flight is
/// given back when its response future completes or is dropped.
///
/// The path of a tenant whose entry is cached creates no future of its own, performs no I/O and
/// allocates nothing; an unlimited tenant's touches no counter.
///
/// ```
/// use axum::{Router, routing::get};
/// use tenancy_limits::{LimitsConfig, TenantLimitLayer, TenantLimits};
///
/// # fn example(resolve: tenancy_resolution::ResolveTenantLayer) -> Result<(), tenancy_core::TenantError> {
/// let limits = TenantLimits::new(&LimitsConfig::default())?;
/// let app: Router = Router::new()
///     .route("/api/orders", get(|| async { "orders" }))
///     .layer(TenantLimitLayer::new(limits)) // runs second
///     .layer(resolve); // runs first
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantLimitLayer<R = JsonRejection> {
    limits: TenantLimits,
    respond: R,
}

impl TenantLimitLayer {
    /// A layer enforcing `limits`, answering refusals with [`JsonRejection`].
    #[must_use]
    pub fn new(limits: TenantLimits) -> Self {
        Self {
            limits,
            respond: JsonRejection,
        }
    }
}

impl<R> TenantLimitLayer<R> {
    /// Answers refusals with `respond` instead (a [`GrpcRejection`](tenancy_resolution::GrpcRejection),
    /// a closure).
    #[must_use]
    pub fn with_response<R2>(self, respond: R2) -> TenantLimitLayer<R2> {
        TenantLimitLayer {
            limits: self.limits,
            respond,
        }
    }

    /// The limits it enforces.
    #[must_use]
    pub fn limits(&self) -> &TenantLimits {
        &self.limits
    }
}

impl<S, R: Clone> Layer<S> for TenantLimitLayer<R> {
    type Service = TenantLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantLimit {
            inner,
            limits: self.limits.clone(),
            respond: self.respond.clone(),
        }
    }
}

/// The service of [`TenantLimitLayer`].
#[derive(Debug, Clone)]
pub struct TenantLimit<S, R = JsonRejection> {
    inner: S,
    limits: TenantLimits,
    respond: R,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

pin_project! {
    /// The response future of [`TenantLimit`].
    pub struct ResponseFuture<F, T, E> {
        #[pin]
        state: State<F, T, E>,
    }
}

pin_project! {
    #[project = Projection]
    enum State<F, T, E> {
        // The inner service's future, with the request's place in flight.
        Inner { #[pin] future: F, slot: Option<InFlight> },
        // A refusal, answered at once.
        Refused { response: Option<T> },
        // The tenant's limits had to be loaded first.
        Loading { future: BoxFuture<T, E> },
    }
}

impl<F, T, E> ResponseFuture<F, T, E> {
    fn inner(future: F, slot: Option<InFlight>) -> Self {
        Self {
            state: State::Inner { future, slot },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projection::Inner { future, slot } => {
                let output = std::task::ready!(future.poll(cx));
                // The place in flight ends with the response, not with this future's drop.
                slot.take();
                Poll::Ready(output)
            }
            Projection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("a refused response future is polled once"))),
            Projection::Loading { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, R, B, ResB> Service<Request<B>> for TenantLimit<S, R>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Send + 'static,
    ResB: 'static,
    R: RejectionResponse<ResB, LimitRejection>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(resolved) = request.extensions().get::<ResolvedTenant>() else {
            return ResponseFuture::inner(self.inner.call(request), None);
        };
        let tenant = resolved.id();
        if let Some(entry) = self.limits.cached(tenant) {
            return match entry.admit() {
                Ok(slot) => ResponseFuture::inner(self.inner.call(request), slot),
                Err(rejection) => ResponseFuture {
                    state: State::Refused {
                        response: Some(self.respond.respond(rejection)),
                    },
                },
            };
        }
        let plan = resolved.tenant().plan.clone();
        let limits = self.limits.clone();
        let respond = self.respond.clone();
        // The ready service serves this request; the clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Loading {
                future: Box::pin(async move {
                    let entry = limits.load(tenant, plan.as_deref()).await;
                    match entry.admit() {
                        Ok(slot) => {
                            let response = inner.call(request).await;
                            drop(slot);
                            response
                        }
                        Err(rejection) => Ok(respond.respond(rejection)),
                    }
                }),
            },
        }
    }
}
