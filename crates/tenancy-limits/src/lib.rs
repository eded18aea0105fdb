//! Per-tenant limits for `tenancy`: one tenant cannot take everyone's capacity.
//!
//! - [`TenantLimitLayer`]: a tower layer, placed after tenant resolution, that enforces each
//!   tenant's request rate (a token bucket: sustained rate and burst, governor's GCRA) and its
//!   requests in flight; refusals are a typed [`LimitRejection`] (429 or 503 with `Retry-After`),
//!   answered like tenant rejections, by a
//!   [`RejectionResponse`](tenancy_resolution::RejectionResponse) (JSON, gRPC or a closure).
//! - [`LimitsConfig`] and [`Plan`]: the `limits` section names plans and a default plan; a tenant's
//!   plan and single limits can be overridden through its configuration (`limits.plan`,
//!   `limits.requests_per_second`, ...), effective on the next request after the change's
//!   invalidation.
//! - [`TenantLimits`]: the bounded cache of every tenant's effective [`Limits`] and limiter state,
//!   also the source of the tenant's database budgets (`statement_timeout`, `lock_timeout`,
//!   `max_transactions`).
//!
//! These limits hold per process: N processes admit up to N times a tenant's rate.
//!
//! Metrics (through the `metrics` facade): counter `tenancy_requests_limited_total{tenant,
//! reason}` with `reason` `rate` or `in_flight`, the tenant labelled by
//! [`TenantLabels::global`](tenancy_core::TenantLabels::global).

mod config;
mod layer;
mod limits;
mod registry;
mod rejection;
mod table;

pub use config::{
    DEFAULT_MAX_TENANTS, DEFAULT_TRANSACTION_WAIT, LimitsConfig, MAX_DATABASE_TIMEOUT, Plan,
};
pub use layer::{ResponseFuture, TenantLimit, TenantLimitLayer};
pub use limits::{
    BURST_KEY, KEY_PREFIX, LOCK_TIMEOUT_KEY, Limits, MAX_IN_FLIGHT_KEY, MAX_TRANSACTIONS_KEY,
    PLAN_KEY, REQUESTS_PER_SECOND_KEY, STATEMENT_TIMEOUT_KEY,
};
pub use registry::{Permit, TenantEntry, TenantLimits};
pub use rejection::LimitRejection;
