//! The current tenant of a request, kept task-local.
//!
//! The tower middleware runs each request inside [`scope`]; code below it reads the tenant with
//! [`current`] or [`with_current`]. The context never lives in a static: two concurrent requests
//! never see each other's tenant. `tokio::spawn` does not carry task-locals, so spawn tenant work
//! with [`spawn`], which re-scopes the new task.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;

use crate::error::TenantError;
use crate::id::TenantId;
use crate::tenant::TenantInfo;

tokio::task_local! {
    static CURRENT: TenantContext;
}

/// The resolved tenant of a request and the name of the resolver that found it. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantContext {
    tenant: Arc<TenantInfo>,
    resolved_by: Arc<str>,
}

impl TenantContext {
    /// A context for `tenant`, found by the resolver named `resolved_by`.
    #[must_use]
    pub fn new(tenant: Arc<TenantInfo>, resolved_by: Arc<str>) -> Self {
        Self {
            tenant,
            resolved_by,
        }
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> &Arc<TenantInfo> {
        &self.tenant
    }

    /// The tenant's id.
    #[must_use]
    pub fn id(&self) -> TenantId {
        self.tenant.id
    }

    /// The name of the resolver that found the tenant (`header`, `jwt_claim`, ...).
    #[must_use]
    pub fn resolved_by(&self) -> &str {
        &self.resolved_by
    }
}

/// Runs `future` with `context` as the current tenant.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::{context, CreateTenant, TenantContext, TenantInfo};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse().unwrap(), "Acme"), chrono::Utc::now()).unwrap();
/// let ctx = TenantContext::new(Arc::new(tenant), "header".into());
/// let slug = context::scope(ctx, async { context::current().map(|c| c.tenant().slug) }).await;
/// assert_eq!(slug.map(|s| s.to_string()).as_deref(), Some("acme"));
/// assert!(context::current().is_none());
/// # });
/// ```
pub fn scope<F: Future>(context: TenantContext, future: F) -> TaskLocalFuture<TenantContext, F> {
    CURRENT.scope(context, future)
}

/// Runs the synchronous `f` with `context` as the current tenant: for work done before a future
/// exists, such as a tower service's `call` (which [`scope`] does not cover, as it only wraps the
/// future `call` returns).
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::{context, CreateTenant, TenantContext, TenantInfo};
///
/// let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse().unwrap(), "Acme"), chrono::Utc::now()).unwrap();
/// let ctx = TenantContext::new(Arc::new(tenant), "header".into());
/// let id = ctx.id();
/// assert_eq!(context::sync_scope(ctx, context::current_id), Some(id));
/// assert!(context::current().is_none());
/// ```
pub fn sync_scope<R>(context: TenantContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(context, f)
}

/// The current tenant, if the task runs inside a tenant scope.
#[must_use]
pub fn current() -> Option<TenantContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The current tenant's id, if any (no reference count touched).
#[must_use]
pub fn current_id() -> Option<TenantId> {
    CURRENT.try_with(TenantContext::id).ok()
}

/// Calls `f` with the current tenant, without cloning it.
pub fn with_current<R>(f: impl FnOnce(Option<&TenantContext>) -> R) -> R {
    if CURRENT.try_with(|_| ()).is_err() {
        return f(None);
    }
    // In a scope (checked just above, on this same task): `with` finds the value.
    CURRENT.with(|ctx| f(Some(ctx)))
}

/// The current tenant, or an error when there is none: for code that must fail closed.
///
/// # Errors
/// [`TenantError::Resolution`] when the task runs outside a tenant scope.
pub fn require() -> Result<TenantContext, TenantError> {
    current().ok_or_else(|| {
        TenantError::Resolution(
            "no tenant in scope: run this inside the tenancy middleware or context::scope".into(),
        )
    })
}

/// Spawns `future` on the tokio runtime, keeping the current tenant (if any) as its tenant.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(ctx) => tokio::spawn(scope(ctx, future)),
        None => tokio::spawn(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::CreateTenant;
    use chrono::Utc;

    fn ctx(slug: &str) -> TenantContext {
        let info =
            TenantInfo::from_command(CreateTenant::new(slug.parse().unwrap(), slug), Utc::now())
                .unwrap();
        TenantContext::new(Arc::new(info), Arc::from("test"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_scopes_never_see_each_other() {
        let mut handles = Vec::new();
        for i in 0..200 {
            let context = ctx(&format!("t{i}"));
            let expected = context.id();
            handles.push(tokio::spawn(scope(context, async move {
                for _ in 0..20 {
                    assert_eq!(current_id(), Some(expected));
                    tokio::task::yield_now().await;
                    with_current(|c| assert_eq!(c.map(TenantContext::id), Some(expected)));
                }
                // A spawned child keeps the tenant only through `spawn`.
                let kept = spawn(async { current_id() }).await.unwrap();
                let lost = tokio::spawn(async { current_id() }).await.unwrap();
                (kept == Some(expected), lost.is_none())
            })));
        }
        for handle in handles {
            assert_eq!(handle.await.unwrap(), (true, true));
        }
        assert!(current().is_none());
        assert!(require().is_err());
        assert!(with_current(|c| c.is_none()));
    }
}
