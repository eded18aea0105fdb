//! The operator console (feature `console`): server-rendered HTML pages over the same services as
//! the JSON API, signed in to with the admin token, with live updates pushed over server-sent
//! events.
//!
//! - **Sign-in**: a form posting the admin token; a valid token opens a session held in this
//!   process (a random id in an `HttpOnly`, `SameSite=Strict` cookie scoped to the console's path,
//!   `Secure` unless [`Console::secure_cookie`] turned it off for plain HTTP). The token is never
//!   placed in a URL or a page.
//! - **CSRF**: every form that changes something carries the session's CSRF token, checked on each
//!   `POST` (and the cookie is `SameSite=Strict`).
//! - **Tenants**: a list searched by slug or name and filtered by status, paged by the store's
//!   keyset paging (a search reads at most a bounded number of tenants per page of results); a
//!   tenant page with its status and the history of events seen by this process, its domains, plan,
//!   configuration overrides (editable, the validation error shown next to the field), its
//!   placement where a [`PlacementSource`] reports one, and actions (activate, suspend with a
//!   reason, deactivate), the destructive ones after a confirmation page.
//! - **Live**: requests per second and p99 latency per tenant over the last minutes, and refusals
//!   by reason, sampled from the application's Prometheus text ([`Console::metrics`]) and drawn as
//!   inline SVG.
//! - **Push**: `GET {prefix}/events` is a stream of server-sent events (`tenant` on each tenant
//!   event, `metrics` after each sample); the page's small script re-fetches the fragments that
//!   depend on them. There is no polling loop in the browser.
//!
//! Everything a tenant or an operator can set (names, reasons, configuration values) reaches the
//! page through `maud`'s escaping; responses carry a `Content-Security-Policy` that allows only the
//! console's own script and style.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::Router;
//! use tenancy_admin::Admin;
//! use tenancy_admin::console::Console;
//! use tenancy_core::BroadcastPublisher;
//!
//! // `events`: the publisher the lifecycle and config services publish to (with the `tenancy`
//! // stack: `move || tenancy.subscribe()`).
//! # async fn example(admin: Admin, events: Arc<BroadcastPublisher>) {
//! let console = Console::new(admin.clone())
//!     .events(move || events.subscribe())
//!     // Over plain HTTP in development only: the session cookie without `Secure`.
//!     .secure_cookie(false)
//!     .router();
//! let app: Router = Router::new()
//!     .nest("/admin", admin.router())
//!     .nest("/console", console);
//! # let _ = app;
//! # }
//! ```

mod handlers;
mod live;
mod pages;
mod session;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, NestedPath, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tenancy_core::TenantEvent;
pub use tenancy_core::{Placement, PlacementSource};
use tokio::sync::broadcast;

use crate::Admin;
pub use live::MetricsSource;
use live::{Hub, Live};
use session::Sessions;

/// Subscribes to the application's tenant events (`Tenancy::subscribe`, or a
/// `BroadcastPublisher`'s `subscribe`).
pub type EventSubscriber = Arc<dyn Fn() -> broadcast::Receiver<TenantEvent> + Send + Sync>;

/// How long a console session lasts after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// How many sessions the console keeps at most (the oldest is dropped past it).
pub const MAX_SESSIONS: usize = 1024;

/// Builds the console's router. See the [module documentation](self).
#[derive(Clone)]
pub struct Console {
    admin: Admin,
    events: Option<EventSubscriber>,
    metrics: Option<MetricsSource>,
    placement: Option<Arc<dyn PlacementSource>>,
    secure_cookie: bool,
    sample_interval: Duration,
    window: Duration,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("admin", &self.admin)
            .field("events", &self.events.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("placement", &self.placement)
            .field("secure_cookie", &self.secure_cookie)
            .field("sample_interval", &self.sample_interval)
            .field("window", &self.window)
            .finish()
    }
}

impl Console {
    /// A console over `admin`'s services, signed in to with its token; without events, metrics
    /// or placements until they are given.
    #[must_use]
    pub fn new(admin: Admin) -> Self {
        Self {
            admin,
            events: None,
            metrics: None,
            placement: None,
            secure_cookie: true,
            sample_interval: Duration::from_secs(2),
            window: Duration::from_secs(5 * 60),
        }
    }

    /// The tenant events to show and push (status history, the list refreshed as tenants
    /// appear): usually `move || tenancy.subscribe()`.
    #[must_use]
    pub fn events(
        mut self,
        subscribe: impl Fn() -> broadcast::Receiver<TenantEvent> + Send + Sync + 'static,
    ) -> Self {
        self.events = Some(Arc::new(subscribe));
        self
    }

    /// The per-tenant metrics, as Prometheus text (for instance
    /// `metrics_exporter_prometheus::PrometheusHandle::render`), sampled every
    /// [`sample_interval`](Self::sample_interval) for the live view.
    #[must_use]
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The hook that reports tenants' placements.
    #[must_use]
    pub fn placement(mut self, source: Arc<dyn PlacementSource>) -> Self {
        self.placement = Some(source);
        self
    }

    /// Whether the session cookie is `Secure` (default `true`). Turn it off only when the console
    /// is served over plain HTTP, as the demo on loopback is.
    #[must_use]
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure_cookie = secure;
        self
    }

    /// How often the metrics are sampled (default 2 s, at least 100 ms).
    #[must_use]
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// How far back the live charts reach (default 5 minutes).
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.max(self.sample_interval);
        self
    }

    /// The console's routes; nest them under the prefix of your choice (`/console`). Must be
    /// called within a Tokio runtime: it starts the tasks that follow the events and sample the
    /// metrics, which stop when the last clone of the router is dropped.
    pub fn router(self) -> Router {
        let points = usize::try_from(
            (self.window.as_millis() / self.sample_interval.as_millis().max(1)).max(2),
        )
        .unwrap_or(usize::MAX);
        let hub = Hub::start(
            self.events.clone(),
            self.metrics.clone(),
            self.sample_interval,
            points,
        );
        let state = ConsoleState(Arc::new(Inner {
            admin: self.admin,
            placement: self.placement,
            sessions: Sessions::new(SESSION_LIFETIME, MAX_SESSIONS),
            secure_cookie: self.secure_cookie,
            has_metrics: self.metrics.is_some(),
            window: self.window,
            hub,
        }));
        let signed_in = Router::new()
            .route(
                "/",
                get(|base: Base| async move { Redirect::to(&base.at("/tenants")) }),
            )
            .route("/tenants", get(handlers::tenants).post(handlers::create))
            .route("/tenants/{tenant}", get(handlers::tenant))
            .route("/tenants/{tenant}/history", get(handlers::history))
            .route("/tenants/{tenant}/live", get(handlers::tenant_live))
            .route("/tenants/{tenant}/activate", post(handlers::activate))
            .route("/tenants/{tenant}/suspend", post(handlers::suspend))
            .route("/tenants/{tenant}/deactivate", post(handlers::deactivate))
            .route("/tenants/{tenant}/plan", post(handlers::set_plan))
            .route("/tenants/{tenant}/config", post(handlers::set_config))
            .route(
                "/tenants/{tenant}/config/remove",
                post(handlers::remove_config),
            )
            .route("/live", get(handlers::live))
            .route("/events", get(handlers::events))
            .route("/sign-out", post(handlers::sign_out))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                session::require_session,
            ));
        Router::new()
            .merge(signed_in)
            .route(
                "/sign-in",
                get(handlers::sign_in_page).post(handlers::sign_in),
            )
            .route("/assets/console.js", get(handlers::script))
            .route("/assets/console.css", get(handlers::style))
            .fallback(handlers::not_found)
            .layer(middleware::from_fn(security_headers))
            .with_state(state)
    }
}

/// The console's state, shared by its handlers.
#[derive(Clone)]
pub(crate) struct ConsoleState(Arc<Inner>);

pub(crate) struct Inner {
    admin: Admin,
    placement: Option<Arc<dyn PlacementSource>>,
    sessions: Sessions,
    secure_cookie: bool,
    has_metrics: bool,
    window: Duration,
    hub: Hub,
}

impl std::ops::Deref for ConsoleState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    fn live(&self) -> &Live {
        &self.hub.live
    }
}

/// The path the console is mounted at (`""` at the root), from which every link is made.
#[derive(Debug, Clone)]
pub(crate) struct Base(String);

impl Base {
    /// `path` (starting with `/`) under the console's prefix.
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// The cookie path: the prefix, or `/`.
    pub(crate) fn cookie_path(&self) -> &str {
        if self.0.is_empty() { "/" } else { &self.0 }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let prefix = NestedPath::from_request_parts(parts, state)
            .await
            .map(|nested| nested.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(Self(prefix))
    }
}

/// Headers on every console response: only the console's own script and style run, the page is
/// never framed or cached, and no referrer leaves it.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A request that is not signed in: pages go to the sign-in form, everything else is 401.
fn unauthenticated(method: &Method, base: &Base, fragment: bool) -> Response {
    if method == Method::GET && !fragment {
        Redirect::to(&base.at("/sign-in")).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "sign in to the console first (the session is missing or has expired)",
        )
            .into_response()
    }
}
