//! [`RequireTenantLayer`]: lets through only requests with a resolved tenant.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Extensions, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::ResolvedTenant;
use crate::rejection::{JsonRejection, RejectionResponse, TenantRejection};

/// A tower [`Layer`] that lets a request through only when
/// [`ResolveTenantLayer`](crate::ResolveTenantLayer) resolved an active tenant for it; otherwise
/// it answers the [`TenantRejection`] the resolving layer recorded (403 with the reason, by
/// default as JSON), or [`TenantRejection::MissingLayer`] (500) when no resolving layer ran in
/// front of it. Place it inside (after) the resolving layer.
///
/// Its answers come from `R`, as the resolving layer's do ([`rejection`](Self::rejection)).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequireTenantLayer<R = JsonRejection> {
    rejection: R,
}

impl RequireTenantLayer {
    /// The guard, answering with [`JsonRejection`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            rejection: JsonRejection,
        }
    }
}

impl<R> RequireTenantLayer<R> {
    /// The guard, answering with `rejection`.
    #[must_use]
    pub fn rejection<T>(self, rejection: T) -> RequireTenantLayer<T> {
        RequireTenantLayer { rejection }
    }
}

impl<S, R: Clone> Layer<S> for RequireTenantLayer<R> {
    type Service = RequireTenant<S, R>;

    fn layer(&self, inner: S) -> RequireTenant<S, R> {
        RequireTenant {
            inner,
            rejection: self.rejection.clone(),
        }
    }
}

/// The service of [`RequireTenantLayer`].
#[derive(Debug, Clone)]
pub struct RequireTenant<S, R = JsonRejection> {
    inner: S,
    rejection: R,
}

/// Why `extensions` hold no active tenant; `None` when they hold one.
pub(crate) fn refusal(extensions: &Extensions) -> Option<TenantRejection> {
    match extensions.get::<ResolvedTenant>() {
        Some(tenant) if tenant.tenant().is_active() => None,
        Some(tenant) => {
            Some(TenantRejection::for_status(tenant.tenant()).unwrap_or(TenantRejection::Missing))
        }
        None => Some(
            extensions
                .get::<TenantRejection>()
                .copied()
                .unwrap_or(TenantRejection::MissingLayer),
        ),
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireTenant<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RejectionResponse<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let state = match refusal(request.extensions()) {
            None => State::Inner {
                future: self.inner.call(request),
            },
            Some(rejection) => State::Refused {
                response: Some(self.rejection.respond(rejection)),
            },
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The response future of [`RequireTenant`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("RequireTenant's ResponseFuture polled after completion"),
            },
        }
    }
}
