//! [`TenantGuardLayer`]: answers 403 when the middleware set no tenant.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::ResolvedTenant;
use crate::response;

/// A tower [`Layer`] that lets a request through only when [`TenancyLayer`](crate::TenancyLayer)
/// resolved an active tenant for it; otherwise it answers 403 with the JSON body
/// [`TENANT_REQUIRED_BODY`](crate::response::TENANT_REQUIRED_BODY)
/// (`{"error":"tenant_required","message":...}`). Place it inside (after) the tenancy layer.
///
/// The response body type must implement `From<&'static str>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantGuardLayer;

impl TenantGuardLayer {
    /// The guard.
    #[must_use]
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for TenantGuardLayer {
    type Service = TenantGuard<S>;

    fn layer(&self, inner: S) -> TenantGuard<S> {
        TenantGuard { inner }
    }
}

/// The service of [`TenantGuardLayer`].
#[derive(Debug, Clone)]
pub struct TenantGuard<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TenantGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let active = request
            .extensions()
            .get::<ResolvedTenant>()
            .is_some_and(|tenant| tenant.tenant().is_active());
        let state = if active {
            State::Inner {
                future: self.inner.call(request),
            }
        } else {
            State::Forbidden {
                response: Some(response::tenant_required()),
            }
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// The response future of [`TenantGuard`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] future: F },
        Forbidden { response: Option<Response<B>> },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Forbidden { .. } => "forbidden",
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
            StateProj::Forbidden { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("guard ResponseFuture polled after completion"),
            },
        }
    }
}
