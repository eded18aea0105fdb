//! The demo's `GET /metrics`: the stack's metrics in the Prometheus text format, rendered by
//! `metrics-exporter-prometheus` (without its own HTTP listener: the demo's router serves them).
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder): the first demo
//! of a process installs it, every later one renders the same. It must be installed before the
//! stack is built, since the validator and the change feed register their metrics then.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

/// The buckets of every histogram, in seconds: request latencies from half a millisecond,
/// transactions and change-feed lag up to ten seconds. `tenancy top` computes percentiles from
/// them.
pub(crate) const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder drains recorded samples into its histograms when nobody scrapes, so
/// that memory stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use; `Err` (with the reason) when
/// another recorder was installed before it.
pub(crate) fn recorder() -> Result<PrometheusHandle, String> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())?;
            tenancy::describe_metrics();
            Ok(handle)
        })
        .clone()
}

/// The task that runs the recorder's upkeep; aborted when dropped.
#[derive(Debug)]
pub(crate) struct Upkeep(JoinHandle<()>);

impl Upkeep {
    pub(crate) fn spawn(handle: PrometheusHandle) -> Self {
        Self(tokio::spawn(async move {
            let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                handle.run_upkeep();
            }
        }))
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `GET /metrics`.
pub(crate) async fn render(State(recorder): State<Result<PrometheusHandle, String>>) -> Response {
    match recorder {
        Ok(handle) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        )
            .into_response(),
        Err(reason) => tenancy_admin::http::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            &format!("this process has another metrics recorder: {reason}"),
        ),
    }
}
