//! The metrics of the resolving layer and the validator, recorded through the `metrics` facade
//! (feature `metrics`). Without the feature every type here is empty and every function does
//! nothing, so the request path compiles to what it was.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tenancy_requests_total` | counter | `tenant`, `outcome` (`served` or a [`TenantRejection::code`]) |
//! | `tenancy_request_duration_seconds` | histogram | `tenant` (admitted requests only) |
//! | `tenancy_validator_lookups_total` | counter | `result` (`hit`, `miss`, `coalesced`) |
//!
//! The `tenant` label is [`TenantLabels::global`](tenancy_core::TenantLabels::global)'s label of
//! the tenant (its id for the first tenants seen, `other` beyond the cap), or `none` when the
//! request has no verified tenant: it named none, or one that does not exist or that it may not
//! see. An id nobody verified never takes one of the capped labels, so a client sending random
//! ids cannot push real tenants under `other`.

use tenancy_core::TenantId;

use crate::rejection::TenantRejection;

/// `tenancy_requests_total`.
pub const REQUESTS_TOTAL: &str = "tenancy_requests_total";
/// `tenancy_request_duration_seconds`.
pub const REQUEST_DURATION_SECONDS: &str = "tenancy_request_duration_seconds";
/// `tenancy_validator_lookups_total`.
pub const VALIDATOR_LOOKUPS_TOTAL: &str = "tenancy_validator_lookups_total";
/// The `tenant` label of a request without a verified tenant.
pub const NO_TENANT: &str = "none";
/// The `outcome` of an admitted request.
pub const SERVED: &str = "served";

/// Registers the descriptions (units and help texts) of this crate's metrics with the installed
/// recorder. Optional: a recorder exports the metrics without them.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests by tenant and outcome: served, or the rejection code"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from the resolving layer receiving an admitted request to its response"
    );
    describe_counter!(
        VALIDATOR_LOOKUPS_TOTAL,
        Unit::Count,
        "Validator cache lookups: hit, miss (loaded from the store), coalesced (waited on another's load)"
    );
}

/// An admitted request of `tenant`.
#[inline]
pub(crate) fn served(tenant: TenantId) {
    #[cfg(feature = "metrics")]
    {
        let label = tenancy_core::TenantLabels::global().label(tenant);
        metrics::counter!(REQUESTS_TOTAL, "tenant" => label, "outcome" => SERVED).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = tenant;
}

/// A refused request; `tenant` only when the tenant is known to exist (a status refusal).
#[inline]
pub(crate) fn refused(rejection: TenantRejection, tenant: Option<TenantId>) {
    #[cfg(feature = "metrics")]
    {
        let counter = match tenant {
            Some(tenant) => {
                let label = tenancy_core::TenantLabels::global().label(tenant);
                metrics::counter!(REQUESTS_TOTAL, "tenant" => label, "outcome" => rejection.code())
            }
            None => {
                metrics::counter!(REQUESTS_TOTAL, "tenant" => NO_TENANT, "outcome" => rejection.code())
            }
        };
        counter.increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (rejection, tenant);
}

/// When the layer received a request (nothing without the feature).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Timer {
    #[inline]
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    /// Records the time since [`start`](Self::start) for `tenant`.
    #[inline]
    pub(crate) fn finish(self, tenant: TenantId) {
        #[cfg(feature = "metrics")]
        {
            let label = tenancy_core::TenantLabels::global().label(tenant);
            metrics::histogram!(REQUEST_DURATION_SECONDS, "tenant" => label)
                .record(self.started.elapsed());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = tenant;
    }
}

/// The validator's counters, registered once when it is built: a hit costs one atomic add with a
/// recorder installed, a branch without. A validator built before the recorder was installed
/// records nothing (install the recorder first).
#[derive(Clone)]
pub(crate) struct LookupCounters {
    #[cfg(feature = "metrics")]
    hit: metrics::Counter,
    #[cfg(feature = "metrics")]
    miss: metrics::Counter,
    #[cfg(feature = "metrics")]
    coalesced: metrics::Counter,
}

impl LookupCounters {
    pub(crate) fn register() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            hit: metrics::counter!(VALIDATOR_LOOKUPS_TOTAL, "result" => "hit"),
            #[cfg(feature = "metrics")]
            miss: metrics::counter!(VALIDATOR_LOOKUPS_TOTAL, "result" => "miss"),
            #[cfg(feature = "metrics")]
            coalesced: metrics::counter!(VALIDATOR_LOOKUPS_TOTAL, "result" => "coalesced"),
        }
    }

    #[inline]
    pub(crate) fn hit(&self) {
        #[cfg(feature = "metrics")]
        self.hit.increment(1);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        #[cfg(feature = "metrics")]
        self.miss.increment(1);
    }

    #[inline]
    pub(crate) fn coalesced(&self) {
        #[cfg(feature = "metrics")]
        self.coalesced.increment(1);
    }
}
