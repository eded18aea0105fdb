//! [`TransactionBudget`]: what one tenant's transactions may use (statement and lock timeouts, a
//! cap on concurrent transactions), supplied per tenant by [`TransactionBudgets`]; and
//! [`BudgetError`], the typed error when a budget ran out.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tenancy_core::{TenantError, TenantId};
use tokio::sync::Semaphore;

/// What one tenant's transactions may use. `None`: no limit.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TransactionBudget {
    /// `SET LOCAL statement_timeout`: PostgreSQL cancels a statement of the transaction that runs
    /// longer (SQLSTATE 57014).
    pub statement_timeout: Option<Duration>,
    /// `SET LOCAL lock_timeout`: PostgreSQL cancels a statement that waits longer for a lock
    /// (SQLSTATE 55P03).
    pub lock_timeout: Option<Duration>,
    /// The tenant's transaction slots: a transaction holds one permit from begin to its end. The
    /// same semaphore must come back for the same tenant for the cap to hold.
    pub slots: Option<Arc<Semaphore>>,
}

impl TransactionBudget {
    /// A budget with no limit.
    #[must_use]
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// With a statement timeout.
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// With a lock timeout.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// With transaction slots.
    #[must_use]
    pub fn with_slots(mut self, slots: Arc<Semaphore>) -> Self {
        self.slots = Some(slots);
        self
    }
}

/// Supplies each tenant's [`TransactionBudget`] to [`TenantDatabase`](crate::TenantDatabase)
/// (the umbrella crate wires the tenant's plan; a closure works too).
///
/// ```
/// use std::time::Duration;
/// use tenancy_isolation_sql::{TransactionBudget, TransactionBudgets};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let budgets = |_tenant| TransactionBudget::unlimited().with_statement_timeout(Duration::from_secs(5));
/// let budget = budgets.budget(tenancy_core::TenantId::new()).await;
/// assert_eq!(budget.statement_timeout, Some(Duration::from_secs(5)));
/// # });
/// ```
#[async_trait]
pub trait TransactionBudgets: Send + Sync {
    /// The budget of `tenant`'s next transaction.
    async fn budget(&self, tenant: TenantId) -> TransactionBudget;
}

#[async_trait]
impl<F> TransactionBudgets for F
where
    F: Fn(TenantId) -> TransactionBudget + Send + Sync,
{
    async fn budget(&self, tenant: TenantId) -> TransactionBudget {
        self(tenant)
    }
}

/// A tenant transaction ran out of its budget. Carried as the source of a
/// [`TenantError::Isolation`]; find it with [`BudgetError::of`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// Every transaction slot of the tenant stayed taken for the whole wait.
    #[error("every transaction slot of tenant {tenant} is taken (its cap of concurrent transactions); none freed up within {}", humantime_ms(*waited))]
    TooManyTransactions {
        /// The tenant.
        tenant: TenantId,
        /// How long the transaction waited for a slot.
        waited: Duration,
    },
    /// PostgreSQL cancelled a statement at the tenant's `statement_timeout` (SQLSTATE 57014).
    #[error("PostgreSQL cancelled a statement of tenant {tenant} at its statement_timeout of {}", humantime_ms(*timeout))]
    StatementTimeout {
        /// The tenant.
        tenant: TenantId,
        /// The timeout.
        timeout: Duration,
    },
    /// PostgreSQL cancelled a statement at the tenant's `lock_timeout` (SQLSTATE 55P03).
    #[error("PostgreSQL cancelled a statement of tenant {tenant} at its lock_timeout of {}", humantime_ms(*timeout))]
    LockTimeout {
        /// The tenant.
        tenant: TenantId,
        /// The timeout.
        timeout: Duration,
    },
}

fn humantime_ms(duration: Duration) -> impl fmt::Display {
    struct Ms(Duration);
    impl fmt::Display for Ms {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} ms", self.0.as_millis())
        }
    }
    Ms(duration)
}

impl BudgetError {
    /// The budget error somewhere in `error`'s chain of sources.
    ///
    /// ```
    /// use tenancy_isolation_sql::BudgetError;
    ///
    /// let error = tenancy_core::TenantError::storage("x", std::io::Error::other("y"));
    /// assert!(BudgetError::of(&error).is_none());
    /// ```
    #[must_use]
    pub fn of(error: &TenantError) -> Option<&Self> {
        let mut source = error.source();
        while let Some(error) = source {
            if let Some(budget) = error.downcast_ref::<Self>() {
                return Some(budget);
            }
            source = error.source();
        }
        None
    }

    /// As a [`TenantError::Isolation`] that names it.
    #[must_use]
    pub fn into_tenant_error(self) -> TenantError {
        TenantError::Isolation {
            message: self.to_string(),
            source: Some(Box::new(self)),
        }
    }
}
