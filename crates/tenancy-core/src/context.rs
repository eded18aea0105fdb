//! The current tenant of a request, kept task-local.
//!
//! The tower middleware runs each request inside [`scope`]; code below it reads the tenant with
//! [`current`] or [`with_current`]. The context never lives in a static: two concurrent requests
//! never see each other's tenant. `tokio::spawn` does not carry task-locals, so spawn tenant work
//! with [`spawn`], which re-scopes the new task.
//!
//! A [`Scope`] future holds its tenant and lends it to its thread only while it is polled (or
//! dropped), as `tokio::task_local!` does, through a scoped thread-local (the `scoped-tls`
//! crate): entering a scope sets one pointer and leaving restores it, where the general
//! task-local machinery swaps the value through a `RefCell` on every poll. It sits on every
//! request's path (docs/benchmarks.md, instructions per request).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::error::TenantError;
use crate::id::TenantId;
use crate::tenant::TenantInfo;

scoped_tls::scoped_thread_local! {
    /// The tenant of the scope being polled (or run) on this thread.
    static CURRENT: TenantContext
}

pin_project! {
    /// A future run with a tenant as the current one: see [`scope`].
    pub struct Scope<F> {
        context: TenantContext,
        #[pin]
        future: Option<F>,
    }

    impl<F> PinnedDrop for Scope<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                // The future's destructors see the tenant too.
                CURRENT.set(this.context, || this.future.set(None));
            }
        }
    }
}

impl<F: Future> Future for Scope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        CURRENT.set(this.context, || {
            let Some(future) = this.future.as_mut().as_pin_mut() else {
                panic!("context::Scope polled after completion");
            };
            let output = future.poll(cx);
            if output.is_ready() {
                // Dropped here, still in the scope, rather than entering it again on drop.
                this.future.set(None);
            }
            output
        })
    }
}

impl<F> fmt::Debug for Scope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("tenant", &self.context.id())
            .finish_non_exhaustive()
    }
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
pub fn scope<F: Future>(context: TenantContext, future: F) -> Scope<F> {
    Scope {
        context,
        future: Some(future),
    }
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
/// assert_eq!(context::sync_scope(&ctx, context::current_id), Some(id));
/// assert!(context::current().is_none());
/// ```
pub fn sync_scope<R>(context: &TenantContext, f: impl FnOnce() -> R) -> R {
    CURRENT.set(context, f)
}

/// The current tenant, if the task runs inside a tenant scope.
#[must_use]
pub fn current() -> Option<TenantContext> {
    with_current(|current| current.cloned())
}

/// The current tenant's id, if any (no reference count touched).
#[must_use]
pub fn current_id() -> Option<TenantId> {
    with_current(|current| current.map(TenantContext::id))
}

/// Calls `f` with the current tenant, without cloning it.
pub fn with_current<R>(f: impl FnOnce(Option<&TenantContext>) -> R) -> R {
    if CURRENT.is_set() {
        CURRENT.with(|current| f(Some(current)))
    } else {
        f(None)
    }
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

    #[test]
    fn scopes_nest_and_restore_the_outer_tenant() {
        let (outer, inner) = (ctx("outer"), ctx("inner"));
        let (outer_id, inner_id) = (outer.id(), inner.id());
        sync_scope(&outer, || {
            assert_eq!(current_id(), Some(outer_id));
            sync_scope(&inner, || assert_eq!(current_id(), Some(inner_id)));
            assert_eq!(current_id(), Some(outer_id));
        });
        assert_eq!(current_id(), None);
    }

    #[test]
    fn a_dropped_scope_drops_its_future_inside_the_scope() {
        struct Probe(Arc<std::sync::Mutex<Option<Option<TenantId>>>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(current_id());
            }
        }
        let seen = Arc::new(std::sync::Mutex::new(None));
        let context = ctx("acme");
        let id = context.id();
        let probe = Probe(Arc::clone(&seen));
        drop(scope(context, async move {
            let _probe = probe;
            std::future::pending::<()>().await;
        }));
        assert_eq!(*seen.lock().unwrap(), Some(Some(id)));
        assert_eq!(current_id(), None);
    }

    #[test]
    fn a_panicking_scope_leaves_no_tenant_behind() {
        let result = std::panic::catch_unwind(|| sync_scope(&ctx("acme"), || panic!("boom")));
        assert!(result.is_err());
        assert_eq!(current_id(), None);
    }
}
