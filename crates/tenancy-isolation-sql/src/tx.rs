//! [`TenantDatabase`]: tenant-scoped transactions, the one way application code reaches tenant
//! data.
//!
//! Architecture invariant: isolation is applied only with transaction-local settings
//! (`SET LOCAL`, or `set_config(.., true)` for a value that cannot be inlined) inside a
//! transaction that [`TenantTransaction`] owns, so it ends with the transaction and a pooled
//! connection never carries a tenant to its next borrower.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use tenancy_core::{
    Health, IsolationStep, IsolationStrategy, TenantError, TenantId, TenantLabels, context,
};
use tokio::sync::OwnedSemaphorePermit;

use crate::budget::{BudgetError, TransactionBudget, TransactionBudgets};

use crate::ident::{validate_identifier, validate_setting_name};
use crate::router::DatabaseRouter;
use crate::telemetry::TxRecord;

/// Tenant-scoped database access: begins transactions isolated for one tenant (row-level setting,
/// schema search path, or the tenant's own database, as the isolation strategy says).
///
/// It is cheap to clone (a pool and two `Arc`s), so an axum application hands it to handlers as
/// router state (`State<TenantDatabase>`). A handler behind the tenancy middleware calls
/// [`begin_current`](Self::begin_current), which takes the tenant the middleware put in scope;
/// code outside a request names the tenant with [`begin`](Self::begin).
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_isolation_sql::{RowLevelStrategy, TenantDatabase};
///
/// # async fn example(pool: sqlx::PgPool, tenant: tenancy_core::TenantId) -> Result<(), tenancy_core::TenantError> {
/// let db = TenantDatabase::new(pool, Arc::new(RowLevelStrategy::default()));
/// let mut tx = db.begin(tenant).await?;
/// let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
///     .fetch_one(&mut **tx)
///     .await
///     .map_err(|e| tenancy_core::TenantError::storage("counting orders", e))?;
/// tx.commit().await?;
/// # let _ = orders; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantDatabase {
    pool: PgPool,
    strategy: Arc<dyn IsolationStrategy>,
    router: Option<DatabaseRouter>,
    from_context: bool,
    citus: bool,
    budgets: Option<Budgets>,
}

/// How long a transaction waits for a slot of its tenant unless configured otherwise.
pub const DEFAULT_TRANSACTION_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Budgets {
    source: Arc<dyn TransactionBudgets>,
    wait: Duration,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl TenantDatabase {
    /// Tenant transactions on `pool` (the application role's pool), isolated by `strategy`;
    /// [`begin_current`](Self::begin_current) takes the tenant from the context.
    #[must_use]
    pub fn new(pool: PgPool, strategy: Arc<dyn IsolationStrategy>) -> Self {
        Self {
            pool,
            strategy,
            router: None,
            from_context: true,
            citus: false,
            budgets: None,
        }
    }

    /// Whether the pool's server is a Citus coordinator (default `false`). Row-level settings
    /// then reach the workers that evaluate the policies: after the `BEGIN`, one message sets
    /// `citus.propagate_set_commands = 'local'` and the tenant setting with `SET LOCAL`, which
    /// Citus replays at the start of the transaction on every worker it uses. On plain
    /// PostgreSQL the settings ride on the `BEGIN` message itself (one round trip); Citus replays
    /// the whole message, `BEGIN` included, which each worker answers with a warning, hence the
    /// separate message on Citus.
    #[must_use]
    pub fn on_citus(mut self, enabled: bool) -> Self {
        self.citus = enabled;
        self
    }

    /// Gives every tenant transaction the tenant's [`TransactionBudget`] from `budgets`: its
    /// `statement_timeout` and `lock_timeout` set transaction-locally (`SET LOCAL`, ended with
    /// the transaction like the isolation settings), and one of its slots held from begin to end,
    /// waited for at most `wait` (then [`BudgetError::TooManyTransactions`]).
    ///
    /// ```no_run
    /// use std::{sync::Arc, time::Duration};
    /// use tenancy_isolation_sql::{BudgetError, RowLevelStrategy, TenantDatabase, TransactionBudget};
    ///
    /// # async fn example(pool: sqlx::PgPool, tenant: tenancy_core::TenantId) -> Result<(), tenancy_core::TenantError> {
    /// let slots = Arc::new(tokio::sync::Semaphore::new(4));
    /// let budgets = move |_tenant| {
    ///     TransactionBudget::unlimited()
    ///         .with_statement_timeout(Duration::from_secs(5))
    ///         .with_slots(Arc::clone(&slots))
    /// };
    /// let db = TenantDatabase::new(pool, Arc::new(RowLevelStrategy::default()))
    ///     .with_budgets(Arc::new(budgets), Duration::from_secs(2));
    /// let mut tx = db.begin(tenant).await?;
    /// let result = sqlx::query("SELECT pg_sleep(10)").execute(&mut **tx).await;
    /// if let Err(error) = result {
    ///     let error = tx.query_error("sleeping", error);
    ///     assert!(matches!(BudgetError::of(&error), Some(BudgetError::StatementTimeout { .. })));
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_budgets(mut self, budgets: Arc<dyn TransactionBudgets>, wait: Duration) -> Self {
        self.budgets = Some(Budgets {
            source: budgets,
            wait,
        });
        self
    }

    /// Routes plans that name a placement (database per tenant) through `router`.
    #[must_use]
    pub fn with_router(mut self, router: DatabaseRouter) -> Self {
        self.router = Some(router);
        self
    }

    /// Whether [`begin_current`](Self::begin_current) may take the tenant from the task-local
    /// context (default `true`, the `integration.sql_context_bridge` setting); when `false` it is
    /// refused and every transaction names its tenant with [`begin`](Self::begin).
    #[must_use]
    pub fn with_context_bridge(mut self, enabled: bool) -> Self {
        self.from_context = enabled;
        self
    }

    /// Whether [`begin_current`](Self::begin_current) takes the tenant from the context.
    #[must_use]
    pub fn is_bridged(&self) -> bool {
        self.from_context
    }

    /// The strategy.
    #[must_use]
    pub fn strategy(&self) -> &Arc<dyn IsolationStrategy> {
        &self.strategy
    }

    /// The pool transactions begin on (tenants routed to their own database aside).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a transaction for the current task-local tenant.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the context bridge is off; [`TenantError::Resolution`]
    /// when no tenant is in scope (it fails closed); and the errors of [`begin`](Self::begin).
    pub async fn begin_current(&self) -> Result<TenantTransaction, TenantError> {
        if !self.from_context {
            return Err(TenantError::Configuration(
                "integration.sql_context_bridge is off: name the tenant with begin(tenant)".into(),
            ));
        }
        let tenant = context::current_id().ok_or_else(|| {
            TenantError::Resolution(
                "no tenant in scope: tenant data is reachable only inside a tenant scope".into(),
            )
        })?;
        self.begin(tenant).await
    }

    /// Whether the pool hands out a working connection within `timeout`, with its size as
    /// details.
    pub async fn health(&self, timeout: Duration) -> Health {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        let health = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(_)) => Health::healthy(),
            Ok(Err(e)) => Health::unhealthy(format!("the isolation pool failed: {e}")),
            Err(_) => Health::unhealthy(format!(
                "the isolation pool did not answer within {} ms",
                timeout.as_millis()
            )),
        };
        health
            .with_detail("pool_size", self.pool.size().to_string())
            .with_detail("pool_idle", self.pool.num_idle().to_string())
    }

    /// Begins a transaction for `tenant`: asks the strategy for its plan, picks the pool (the
    /// tenant's own when the plan routes it), begins, and applies the plan's steps.
    ///
    /// With budgets ([`with_budgets`](Self::with_budgets)), it first takes one of the tenant's
    /// transaction slots, and sets the tenant's timeouts transaction-locally.
    ///
    /// # Errors
    /// The strategy's errors; [`TenantError::Isolation`] when the database fails or the tenant's
    /// schema does not exist (deprovisioned), or with a [`BudgetError::TooManyTransactions`]
    /// source when no slot of the tenant freed up in time; [`TenantError::Configuration`] when
    /// the plan routes but no router is set.
    pub async fn begin(&self, tenant: TenantId) -> Result<TenantTransaction, TenantError> {
        // Counts `failed_to_begin` if this returns early (feature `metrics`).
        let record = TxRecord::start(tenant);
        let (budget, slot) = match &self.budgets {
            None => (TransactionBudget::unlimited(), None),
            Some(budgets) => {
                let budget = budgets.source.budget(tenant).await;
                let slot = take_slot(tenant, &budget, budgets.wait).await?;
                (budget, slot)
            }
        };
        let plan = self.strategy.plan(tenant).await?;
        // Settings with plain values ride on the BEGIN as `SET LOCAL` (one round trip, simple
        // protocol), or on Citus in one message right after it (see `on_citus`); any other step
        // runs after it with bind parameters. The timeouts are whole milliseconds.
        let mut begin = String::from("BEGIN");
        let mut citus_settings = String::new();
        for (name, timeout) in [
            ("statement_timeout", budget.statement_timeout),
            ("lock_timeout", budget.lock_timeout),
        ] {
            if let Some(timeout) = timeout {
                let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
                begin.push_str(&format!("; SET LOCAL {name} = {ms}"));
            }
        }
        let mut rest = Vec::new();
        for step in &plan.steps {
            match step {
                IsolationStep::SetLocal { name, value } if inlinable(name, value) => {
                    if !self.citus {
                        push_set_local(&mut begin, name, value);
                    } else {
                        if citus_settings.is_empty() {
                            citus_settings.push_str(CITUS_PROPAGATE_SET);
                        }
                        push_set_local(&mut citus_settings, name, value);
                    }
                }
                IsolationStep::Route { .. } => {}
                other => rest.push(other),
            }
        }
        let mut tx = match plan.placement() {
            None => self
                .pool
                .begin_with(AssertSqlSafe(begin))
                .await
                .map_err(|e| {
                    let e = tenancy_pg_connect::connect_error(&self.pool.connect_options(), e);
                    TenantError::isolation(
                        format!("beginning a transaction for tenant {tenant}: {e}"),
                        e,
                    )
                })?,
            Some(key) => {
                let router = self.router.as_ref().ok_or_else(|| {
                    TenantError::Configuration(format!(
                        "the isolation strategy {:?} routes tenants to their own database, but no \
                         DatabaseRouter is set on TenantDatabase",
                        self.strategy.name()
                    ))
                })?;
                router.begin_with(key, begin).await?
            }
        };
        if !citus_settings.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(citus_settings))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    TenantError::isolation(format!("setting up tenant {tenant} on Citus"), e)
                })?;
        }
        for step in rest {
            apply_step(&mut tx, tenant, step).await?;
        }
        tracing::trace!(tenant_id = %tenant, strategy = self.strategy.name(), "tenant transaction begun");
        Ok(TenantTransaction {
            tenant,
            tx,
            statement_timeout: budget.statement_timeout,
            lock_timeout: budget.lock_timeout,
            _slot: slot,
            record: record.begun(),
        })
    }
}

/// One of the tenant's transaction slots, waited for at most `wait`.
async fn take_slot(
    tenant: TenantId,
    budget: &TransactionBudget,
    wait: Duration,
) -> Result<Option<OwnedSemaphorePermit>, TenantError> {
    let Some(slots) = &budget.slots else {
        return Ok(None);
    };
    if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
        return Ok(Some(permit));
    }
    match tokio::time::timeout(wait, Arc::clone(slots).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        // A closed semaphore: the budget's owner gave the cap up.
        Ok(Err(_)) => Ok(None),
        Err(_) => {
            let error = BudgetError::TooManyTransactions {
                tenant,
                waited: wait,
            };
            tracing::warn!(tenant_id = %tenant, %error, "tenant transaction refused");
            Err(error.into_tenant_error())
        }
    }
}

/// Whether a setting can be written into SQL text: a validated name and a value of characters
/// that need no quoting (a UUID, say). Anything else goes through bind parameters.
fn inlinable(name: &str, value: &str) -> bool {
    validate_setting_name(name).is_ok()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Appends `; SET LOCAL name = 'value'` to `sql`, for a setting that is [`inlinable`].
fn push_set_local(sql: &mut String, name: &str, value: &str) {
    sql.push_str("; SET LOCAL ");
    // Validated parts ([a-z0-9_]); quoted so that a part that is a keyword stays a name.
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            sql.push('.');
        }
        sql.push('"');
        sql.push_str(part);
        sql.push('"');
    }
    sql.push_str(" = '");
    sql.push_str(value);
    sql.push('\'');
}

/// Makes Citus send the transaction's later `SET LOCAL` commands to the workers it uses, where
/// the row-level security policies are evaluated (a `set_config` call does not reach them).
const CITUS_PROPAGATE_SET: &str = "SET LOCAL citus.propagate_set_commands = 'local'";

async fn apply_step(
    conn: &mut PgConnection,
    tenant: TenantId,
    step: &IsolationStep,
) -> Result<(), TenantError> {
    match step {
        IsolationStep::Route { .. } => Ok(()),
        IsolationStep::SetLocal { name, value } => {
            sqlx::query("SELECT set_config($1, $2, true)")
                .bind(name.as_ref())
                .bind(value.as_str())
                .execute(conn)
                .await
                .map_err(|e| {
                    TenantError::isolation(format!("setting {name} for tenant {tenant}"), e)
                })?;
            Ok(())
        }
        IsolationStep::SearchPath { schema } => set_search_path(conn, tenant, schema).await,
        other => Err(TenantError::Isolation {
            message: format!("unsupported isolation step {other:?} for tenant {tenant}"),
            source: None,
        }),
    }
}

/// Sets the transaction-local search_path to `schema, pg_temp` (never `public`) and fails when the
/// schema does not exist, so a deprovisioned tenant's work fails instead of reading elsewhere.
pub(crate) async fn set_search_path(
    conn: &mut PgConnection,
    tenant: TenantId,
    schema: &str,
) -> Result<(), TenantError> {
    validate_identifier("schema", schema)?;
    // The outer projection runs after the subquery's set_config: current_schema() is the first
    // existing schema of the new path, NULL when the tenant schema is gone.
    let current: Option<String> = sqlx::query_scalar(
        "SELECT current_schema()::text FROM \
         (SELECT set_config('search_path', quote_ident($1) || ', pg_temp', true) OFFSET 0) s",
    )
    .bind(schema)
    .fetch_one(conn)
    .await
    .map_err(|e| {
        TenantError::isolation(format!("setting the search_path of tenant {tenant}"), e)
    })?;
    if current.as_deref() != Some(schema) {
        return Err(TenantError::Isolation {
            message: format!(
                "the schema {schema} of tenant {tenant} does not exist (not provisioned, or deprovisioned)"
            ),
            source: None,
        });
    }
    Ok(())
}

/// A transaction isolated for one tenant; derefs to the [`sqlx::Transaction`]. Dropping it without
/// [`commit`](Self::commit) rolls it back.
#[derive(Debug)]
pub struct TenantTransaction {
    tenant: TenantId,
    tx: Transaction<'static, Postgres>,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
    /// The tenant's transaction slot, given back when the transaction ends.
    _slot: Option<OwnedSemaphorePermit>,
    /// Its outcome and duration (feature `metrics`); dropped with it: a rollback.
    record: TxRecord,
}

impl TenantTransaction {
    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The `statement_timeout` the transaction runs under, from the tenant's budget.
    #[must_use]
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// The `lock_timeout` the transaction runs under, from the tenant's budget.
    #[must_use]
    pub fn lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// The error of a query of this transaction, as a [`TenantError`]: a statement PostgreSQL
    /// cancelled at the tenant's `statement_timeout` (SQLSTATE 57014) or `lock_timeout` (55P03)
    /// becomes [`TenantError::Isolation`] with a [`BudgetError`] source (and counts in
    /// `tenancy_tenant_transaction_timeouts_total{tenant, kind}`); anything else is
    /// [`TenantError::Storage`] with `what` as its message.
    #[must_use]
    pub fn query_error(&self, what: impl Into<String>, error: sqlx::Error) -> TenantError {
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|code| code.into_owned());
        let budget = match (code.as_deref(), self.statement_timeout, self.lock_timeout) {
            (Some("57014"), Some(timeout), _) => Some((
                "statement",
                BudgetError::StatementTimeout {
                    tenant: self.tenant,
                    timeout,
                },
            )),
            (Some("55P03"), _, Some(timeout)) => Some((
                "lock",
                BudgetError::LockTimeout {
                    tenant: self.tenant,
                    timeout,
                },
            )),
            _ => None,
        };
        match budget {
            Some((kind, budget)) => {
                metrics::counter!(
                    "tenancy_tenant_transaction_timeouts_total",
                    "tenant" => TenantLabels::global().label(self.tenant),
                    "kind" => kind,
                )
                .increment(1);
                tracing::warn!(tenant_id = %self.tenant, kind, error = %budget, "tenant statement cancelled by its budget");
                budget.into_tenant_error()
            }
            None => TenantError::storage(what, error),
        }
    }

    /// Commits; the isolation settings end with it.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the commit fails.
    pub async fn commit(self) -> Result<(), TenantError> {
        // The slot is held until the commit is done.
        let Self {
            tenant,
            tx,
            record,
            _slot: slot,
            ..
        } = self;
        let committed = tx.commit().await;
        drop(slot);
        record.end(committed.is_ok());
        committed.map_err(|e| {
            TenantError::storage(format!("committing tenant {tenant}'s transaction"), e)
        })
    }

    /// Rolls back.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the rollback fails.
    pub async fn rollback(self) -> Result<(), TenantError> {
        let Self {
            tenant,
            tx,
            record,
            _slot: slot,
            ..
        } = self;
        let rolled_back = tx.rollback().await;
        drop(slot);
        record.end(false);
        rolled_back.map_err(|e| {
            TenantError::storage(format!("rolling back tenant {tenant}'s transaction"), e)
        })
    }

    /// The inner transaction, for APIs that take it by value. Its timeouts stay; its
    /// transaction slot is given back now.
    #[must_use]
    pub fn into_inner(self) -> Transaction<'static, Postgres> {
        self.record.forget();
        self.tx
    }
}

impl Deref for TenantTransaction {
    type Target = Transaction<'static, Postgres>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl DerefMut for TenantTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::{inlinable, push_set_local};

    #[test]
    fn settings_ride_on_begin_as_quoted_set_local() {
        let mut sql = String::from("BEGIN");
        push_set_local(
            &mut sql,
            "app.tenant_id",
            "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293",
        );
        push_set_local(&mut sql, "app.user", "u1");
        assert_eq!(
            sql,
            "BEGIN; SET LOCAL \"app\".\"tenant_id\" = '0190d5a0-7c1e-7a2b-9c3d-4e5f60718293'; \
             SET LOCAL \"app\".\"user\" = 'u1'"
        );
    }

    #[test]
    fn only_plain_settings_are_inlined() {
        assert!(inlinable(
            "app.tenant_id",
            "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293"
        ));
        assert!(!inlinable("app.tenant_id", "x', true); DROP TABLE t; --"));
        assert!(!inlinable("app.tenant_id", "a\\b"));
        assert!(inlinable("app.tenant_id", ""));
        assert!(!inlinable("tenant_id", "abc"));
        assert!(!inlinable("app.x'", "abc"));
    }
}
