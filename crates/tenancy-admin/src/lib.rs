//! The admin HTTP API of the `tenancy` library as an axum [`Router`](axum::Router), and (feature
//! `console`) an operator console: HTML pages to see and steer every tenant from a browser.
//!
//! Both are built from an [`Admin`]: the lifecycle and config services of the stack and the admin
//! token. Every change goes through [`TenantLifecycle`] or [`ConfigService`], which invalidate the
//! caches, so the next request sees it.
//!
//! The JSON API ([`Admin::router`]) needs `Authorization: Bearer <admin token>` on every route:
//! `GET|POST /tenants` (create from `{"slug", "name", "plan"?}`: 201 with the tenant; `?limit=`,
//! `?after=` and `?active=true` page through the store), `GET|PATCH /tenants/{id or slug}`,
//! `POST /tenants/{id}/activate|suspend|deactivate` (suspend takes `{"reason"}`),
//! `PUT|DELETE /tenants/{id}/config/{key}` (the body of `PUT` is the JSON value),
//! `GET /tenants/{id}/domains`, `PUT|DELETE /tenants/{id}/domains/{domain}`,
//! `POST /tenants/{id}/domains/{domain}/primary`. Invalid bodies are answered 400 with a JSON
//! message (`{"error", "message"}`); nothing is stored.
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use tenancy_admin::Admin;
//! use tenancy_core::{InMemoryStore, IsolationPlan, IsolationStrategy, TenantError, TenantId};
//! use tenancy_lifecycle::{Provisioner, TenantLifecycle};
//! use tenancy_overrides::ConfigService;
//! # #[derive(Debug)]
//! # struct Nothing;
//! # #[async_trait::async_trait]
//! # impl IsolationStrategy for Nothing {
//! #     fn name(&self) -> &str { "row_level" }
//! #     async fn provision(&self, _: TenantId) -> Result<(), TenantError> { Ok(()) }
//! #     async fn deprovision(&self, _: TenantId) -> Result<(), TenantError> { Ok(()) }
//! #     async fn plan(&self, _: TenantId) -> Result<IsolationPlan, TenantError> { Ok(IsolationPlan::default()) }
//! # }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(InMemoryStore::new());
//! // Usually all three come from the `tenancy` stack: `tenancy.lifecycle()`, `tenancy.config()`.
//! let lifecycle = Arc::new(TenantLifecycle::new(store.clone(), Provisioner::new(Arc::new(Nothing), true)));
//! let config = Arc::new(ConfigService::new(store, Default::default())?);
//! let admin = Admin::new("a-long-random-admin-token", lifecycle, config)?;
//! // The application's own routes, with the admin API under /admin.
//! let app: Router = Router::new().nest("/admin", admin.router());
//! # let _ = app;
//! # Ok(()) }
//! ```

mod api;
mod auth;
#[cfg(feature = "console")]
pub mod console;
pub mod http;

use std::fmt;
use std::sync::Arc;

use tenancy_lifecycle::TenantLifecycle;
use tenancy_overrides::ConfigService;

/// Why an [`Admin`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The admin token is empty.
    #[error("the admin token must not be empty")]
    EmptyToken,
    /// The admin token starts or ends with whitespace (a copy-and-paste accident that no client
    /// could send back in a header).
    #[error("the admin token must not start or end with whitespace")]
    TokenWhitespace,
}

/// What the admin API and the console need: the admin token and the services every change goes
/// through. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    token: Arc<str>,
    lifecycle: Arc<TenantLifecycle>,
    config: Arc<ConfigService>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin API over `lifecycle` and `config`, guarded by `token`.
    ///
    /// # Errors
    /// [`AdminError`] for an empty token, or one with whitespace around it.
    pub fn new(
        token: impl Into<String>,
        lifecycle: Arc<TenantLifecycle>,
        config: Arc<ConfigService>,
    ) -> Result<Self, AdminError> {
        let token = token.into();
        if token.is_empty() {
            return Err(AdminError::EmptyToken);
        }
        if token.trim() != token {
            return Err(AdminError::TokenWhitespace);
        }
        Ok(Self {
            token: Arc::from(token),
            lifecycle,
            config,
        })
    }

    /// The JSON API's routes (see the crate documentation), each requiring
    /// `Authorization: Bearer <admin token>`; nest it under the prefix of your choice.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// The lifecycle service.
    #[must_use]
    pub fn lifecycle(&self) -> &Arc<TenantLifecycle> {
        &self.lifecycle
    }

    /// The config service.
    #[must_use]
    pub fn config(&self) -> &Arc<ConfigService> {
        &self.config
    }

    /// Whether `candidate` is the admin token (compared in time that depends only on lengths).
    pub(crate) fn token_matches(&self, candidate: &[u8]) -> bool {
        auth::constant_time_eq(candidate, self.token.as_bytes())
    }
}
