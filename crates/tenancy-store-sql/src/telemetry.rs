//! The metrics of the change feed, recorded through the `metrics` facade (feature `metrics`,
//! with `postgres`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tenancy_change_feed_notices_total` | counter | |
//! | `tenancy_change_feed_reconnects_total` | counter | |
//! | `tenancy_change_feed_lag_seconds` | histogram | |
//!
//! The lag is the time from the store sending a notice (its
//! [`sent_at`](crate::ChangeNotice::sent_at), stamped by the sending process's clock) to this
//! process having applied it, so it includes the clock skew between the two hosts (clamped at
//! zero). The feed registers its metrics when it starts: install the recorder before.

/// `tenancy_change_feed_notices_total`: change notices applied.
pub const CHANGE_FEED_NOTICES_TOTAL: &str = "tenancy_change_feed_notices_total";
/// `tenancy_change_feed_reconnects_total`: reconnections after the feed lost its connection.
pub const CHANGE_FEED_RECONNECTS_TOTAL: &str = "tenancy_change_feed_reconnects_total";
/// `tenancy_change_feed_lag_seconds`: from a notice being sent to its being applied.
pub const CHANGE_FEED_LAG_SECONDS: &str = "tenancy_change_feed_lag_seconds";

/// Registers the descriptions (units and help texts) of this crate's metrics with the installed
/// recorder. Optional: a recorder exports the metrics without them.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        CHANGE_FEED_NOTICES_TOTAL,
        Unit::Count,
        "Change notices the change feed applied"
    );
    describe_counter!(
        CHANGE_FEED_RECONNECTS_TOTAL,
        Unit::Count,
        "Times the change feed reconnected after losing its connection"
    );
    describe_histogram!(
        CHANGE_FEED_LAG_SECONDS,
        Unit::Seconds,
        "Time from a change notice being sent to its being applied"
    );
}
