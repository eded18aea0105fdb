//! The metrics of tenant transactions, recorded through the `metrics` facade (feature `metrics`).
//! Without the feature [`TxRecord`] is empty and records nothing.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tenancy_tenant_transactions_total` | counter | `tenant`, `outcome` (`committed`, `rolled_back`, `failed_to_begin`) |
//! | `tenancy_tenant_transaction_duration_seconds` | histogram | `tenant` |
//!
//! The `tenant` label is [`TenantLabels::global`](tenancy_core::TenantLabels::global)'s label of
//! the tenant. The duration runs from `TenantDatabase::begin` being called to the
//! commit or rollback ending (a transaction dropped without either counts as `rolled_back` when it
//! is dropped; one taken out with `TenantTransaction::into_inner` is not
//! counted: its end is the caller's).

#[cfg(feature = "sql")]
use tenancy_core::TenantId;

/// `tenancy_tenant_transactions_total`.
pub const TENANT_TRANSACTIONS_TOTAL: &str = "tenancy_tenant_transactions_total";
/// `tenancy_tenant_transaction_duration_seconds`.
pub const TENANT_TRANSACTION_DURATION_SECONDS: &str = "tenancy_tenant_transaction_duration_seconds";

/// Registers the descriptions (units and help texts) of this crate's metrics with the installed
/// recorder. Optional: a recorder exports the metrics without them.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        TENANT_TRANSACTIONS_TOTAL,
        Unit::Count,
        "Tenant transactions by tenant and outcome: committed, rolled_back, failed_to_begin"
    );
    describe_histogram!(
        TENANT_TRANSACTION_DURATION_SECONDS,
        Unit::Seconds,
        "Time from beginning a tenant transaction to its commit or rollback"
    );
}

/// One tenant transaction's record: made when `begin` starts; records `failed_to_begin` when
/// dropped before [`begun`](Self::begun), `rolled_back` when dropped after it without
/// [`end`](Self::end).
#[cfg(all(feature = "sql", feature = "metrics"))]
#[derive(Debug)]
pub(crate) struct TxRecord {
    state: Option<(TenantId, std::time::Instant, &'static str)>,
}

#[cfg(all(feature = "sql", feature = "metrics"))]
impl TxRecord {
    /// `begin` was called for `tenant`.
    pub(crate) fn start(tenant: TenantId) -> Self {
        Self {
            state: Some((tenant, std::time::Instant::now(), "failed_to_begin")),
        }
    }

    /// The transaction is open: from now on, dropping this record means a rollback.
    pub(crate) fn begun(mut self) -> Self {
        if let Some(state) = &mut self.state {
            state.2 = "rolled_back";
        }
        self
    }

    /// Ends with a commit (`true`) or a rollback (`false`).
    pub(crate) fn end(mut self, committed: bool) {
        if committed && let Some(state) = &mut self.state {
            state.2 = "committed";
        }
    }

    /// Records nothing: the caller took the transaction over.
    pub(crate) fn forget(mut self) {
        self.state = None;
    }
}

#[cfg(all(feature = "sql", feature = "metrics"))]
impl Drop for TxRecord {
    fn drop(&mut self) {
        if let Some((tenant, started, outcome)) = self.state.take() {
            let label = tenancy_core::TenantLabels::global().label(tenant);
            metrics::counter!(
                TENANT_TRANSACTIONS_TOTAL,
                "tenant" => std::sync::Arc::clone(&label),
                "outcome" => outcome
            )
            .increment(1);
            if outcome != "failed_to_begin" {
                metrics::histogram!(TENANT_TRANSACTION_DURATION_SECONDS, "tenant" => label)
                    .record(started.elapsed());
            }
        }
    }
}

/// Records nothing (feature `metrics` off).
#[cfg(all(feature = "sql", not(feature = "metrics")))]
#[derive(Debug)]
pub(crate) struct TxRecord;

#[cfg(all(feature = "sql", not(feature = "metrics")))]
impl TxRecord {
    pub(crate) fn start(_: TenantId) -> Self {
        Self
    }

    pub(crate) fn begun(self) -> Self {
        self
    }

    pub(crate) fn end(self, _: bool) {}

    pub(crate) fn forget(self) {}
}
