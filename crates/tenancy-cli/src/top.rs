//! `tenancy top`: the busiest tenants of a running service, from its Prometheus metrics endpoint.
//!
//! It reads `tenancy_requests_total`, `tenancy_requests_limited_total` (when the service limits
//! requests) and `tenancy_request_duration_seconds`, parsed with the `prometheus-parse` crate, and
//! ranks tenant labels by requests. Counts are totals since the service started; the latency
//! columns come from the histogram's buckets (a p99 is the upper bound of the bucket holding the
//! 99th percentile, so it is as coarse as the buckets are).

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_parse::{Scrape, Value};
use serde::Serialize;

use crate::error::CliError;
use crate::output;

/// The metrics `tenancy top` reads.
const REQUESTS: &str = "tenancy_requests_total";
const LIMITED: &str = "tenancy_requests_limited_total";
const DURATION: &str = "tenancy_request_duration_seconds";
/// The `tenant` label of requests without a verified tenant.
const NO_TENANT: &str = "none";
/// The largest metrics page read.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One tenant label's traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TenantRow {
    /// The tenant's id, or `other` for the tenants beyond the label cap.
    pub(crate) tenant: String,
    /// Every request that named it (served or refused).
    pub(crate) requests: u64,
    /// Requests admitted.
    pub(crate) served: u64,
    /// Requests refused by resolution (suspended, inactive, ...).
    pub(crate) refused: u64,
    /// Requests refused by the limits (0 when the service does not limit).
    pub(crate) limited: u64,
    /// The mean time of its admitted requests, in milliseconds.
    pub(crate) mean_ms: Option<f64>,
    /// The upper bound of the bucket holding the 99th percentile, in milliseconds; `None`
    /// without requests, or when it lies beyond the last finite bucket.
    pub(crate) p99_ms: Option<f64>,
}

/// What one read of the endpoint shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Top {
    /// The endpoint.
    pub(crate) url: String,
    /// The busiest tenants first (at most `--limit`).
    pub(crate) tenants: Vec<TenantRow>,
    /// How many tenant labels there are in all.
    pub(crate) tenant_labels: usize,
    /// Requests without a verified tenant, by outcome (`tenant_required`, `tenant_not_found`...).
    pub(crate) without_tenant: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Acc {
    served: u64,
    refused: u64,
    limited: u64,
    /// (upper bound, cumulative count), the `+Inf` bucket included.
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

/// Counter values are floats in the text format; counts are whole and non-negative.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// The busiest tenants of the Prometheus text `text`.
///
/// # Errors
/// [`CliError::Findings`] when the text has no `tenancy_requests_total` at all (not a tenancy
/// service, or one built without metrics).
pub(crate) fn summarize(url: &str, text: &str, limit: usize) -> Result<Top, CliError> {
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .map_err(|e| CliError::io(format!("parsing the metrics of {url}"), e))?;
    let mut tenants: BTreeMap<String, Acc> = BTreeMap::new();
    let mut without_tenant = BTreeMap::new();
    let mut found = false;
    let sum = format!("{DURATION}_sum");
    let count = format!("{DURATION}_count");
    for sample in &scrape.samples {
        let Some(tenant) = sample.labels.get("tenant") else {
            continue;
        };
        let scalar = match sample.value {
            Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v) => v,
            _ => 0.0,
        };
        let metric = sample.metric.as_str();
        if metric == REQUESTS {
            found = true;
            let outcome = sample.labels.get("outcome").unwrap_or("unknown");
            if tenant == NO_TENANT {
                *without_tenant.entry(outcome.to_owned()).or_default() += whole(scalar);
                continue;
            }
            let acc = tenants.entry(tenant.to_owned()).or_default();
            if outcome == "served" {
                acc.served += whole(scalar);
            } else {
                acc.refused += whole(scalar);
            }
        } else if metric == LIMITED && tenant != NO_TENANT {
            tenants.entry(tenant.to_owned()).or_default().limited += whole(scalar);
        } else if metric == DURATION {
            if let Value::Histogram(buckets) = &sample.value {
                tenants.entry(tenant.to_owned()).or_default().buckets =
                    buckets.iter().map(|b| (b.less_than, b.count)).collect();
            }
        } else if metric == sum {
            tenants.entry(tenant.to_owned()).or_default().sum = scalar;
        } else if metric == count {
            tenants.entry(tenant.to_owned()).or_default().count = scalar;
        }
    }
    if !found {
        return Err(CliError::Findings(format!(
            "{url} has no {REQUESTS}: is it the metrics endpoint of a tenancy service built with \
             the `metrics` feature (and has it served a request yet)?"
        )));
    }
    let tenant_labels = tenants.len();
    let mut rows: Vec<TenantRow> = tenants
        .into_iter()
        .map(|(tenant, acc)| {
            let requests = acc.served + acc.refused;
            TenantRow {
                mean_ms: (acc.count > 0.0).then(|| acc.sum / acc.count * 1000.0),
                p99_ms: p99(&acc.buckets).map(|s| s * 1000.0),
                tenant,
                requests,
                served: acc.served,
                refused: acc.refused,
                limited: acc.limited,
            }
        })
        .collect();
    // Busiest first: requests, then limited ones (a flooding tenant may be all limited), then by
    // label for a stable order.
    rows.sort_by(|a, b| {
        (b.requests + b.limited)
            .cmp(&(a.requests + a.limited))
            .then_with(|| a.tenant.cmp(&b.tenant))
    });
    rows.truncate(limit);
    Ok(Top {
        url: url.to_owned(),
        tenants: rows,
        tenant_labels,
        without_tenant,
    })
}

/// The upper bound of the first bucket whose cumulative count reaches 99% of the total.
fn p99(buckets: &[(f64, f64)]) -> Option<f64> {
    let mut buckets = buckets.to_vec();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = total * 0.99;
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= target)
        .map(|(bound, _)| *bound)
        .filter(|bound| bound.is_finite())
}

/// The text table of `top`.
pub(crate) fn render(top: &Top) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let rows: Vec<[String; 7]> = top
        .tenants
        .iter()
        .map(|row| {
            [
                row.tenant.clone(),
                row.requests.to_string(),
                row.served.to_string(),
                row.refused.to_string(),
                row.limited.to_string(),
                ms(row.mean_ms),
                ms(row.p99_ms),
            ]
        })
        .collect();
    let mut out = output::table(
        [
            "TENANT", "REQUESTS", "SERVED", "REFUSED", "LIMITED", "MEAN_MS", "P99_MS",
        ],
        &rows,
    );
    if top.tenant_labels > top.tenants.len() {
        out.push_str(&format!(
            "({} of {} tenant labels shown)\n",
            top.tenants.len(),
            top.tenant_labels
        ));
    }
    if !top.without_tenant.is_empty() {
        let outcomes: Vec<String> = top
            .without_tenant
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        out.push_str(&format!("without a tenant: {}\n", outcomes.join(", ")));
    }
    out
}

/// Reads the metrics page at `url` (plain HTTP).
///
/// # Errors
/// [`CliError::Usage`] for a URL that is not `http://`; [`CliError::Io`] when the server cannot
/// be reached, answers an error status, or does not answer within 10 s.
pub(crate) async fn fetch(url: &str) -> Result<String, CliError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| CliError::Usage(format!("--url {url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(CliError::Usage(format!(
            "--url {url:?}: only http://HOST[:PORT]/PATH is supported (metrics endpoints are \
             served on internal ports, without TLS)"
        )));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let failed = |e: &dyn std::fmt::Display| {
        CliError::io(
            format!("reading {url}"),
            std::io::Error::other(e.to_string()),
        )
    };
    let read = async {
        let response = client.get(uri).await.map_err(|e| failed(&e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(failed(&format!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        String::from_utf8(body.to_vec()).map_err(|e| failed(&e))
    };
    tokio::time::timeout(FETCH_TIMEOUT, read)
        .await
        .map_err(|_| failed(&format!("no answer within {} s", FETCH_TIMEOUT.as_secs())))?
}

/// `tenancy top`: one read, or `count` reads a second apart (`watch`; endless without `count`).
pub(crate) async fn run(
    url: &str,
    limit: usize,
    watch: bool,
    count: Option<u64>,
    json: bool,
) -> Result<(), CliError> {
    let reads = if watch { count } else { Some(1) };
    let mut done = 0u64;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let top = summarize(url, &fetch(url).await?, limit)?;
        let text = if json {
            // One document per line when watching.
            let mut line = serde_json::to_string(&top)
                .map_err(|e| CliError::io("writing JSON", std::io::Error::other(e)))?;
            line.push('\n');
            if watch { line } else { output::json(&top)? }
        } else if watch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            // Clear the screen and go home, as top does.
            format!("\x1b[2J\x1b[H{}", render(&top))
        } else {
            render(&top)
        };
        output::out(&text);
        done += 1;
        if reads.is_some_and(|reads| done >= reads) {
            return Ok(());
        }
        if watch && !json {
            output::out("\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# TYPE tenancy_requests_total counter
tenancy_requests_total{tenant=\"a\",outcome=\"served\"} 10
tenancy_requests_total{tenant=\"b\",outcome=\"served\"} 30
tenancy_requests_total{tenant=\"b\",outcome=\"tenant_suspended\"} 2
tenancy_requests_total{tenant=\"none\",outcome=\"tenant_required\"} 4
# TYPE tenancy_requests_limited_total counter
tenancy_requests_limited_total{tenant=\"a\",reason=\"rate\"} 50
# TYPE tenancy_request_duration_seconds histogram
tenancy_request_duration_seconds_bucket{tenant=\"b\",le=\"0.001\"} 10
tenancy_request_duration_seconds_bucket{tenant=\"b\",le=\"0.01\"} 29
tenancy_request_duration_seconds_bucket{tenant=\"b\",le=\"0.1\"} 30
tenancy_request_duration_seconds_bucket{tenant=\"b\",le=\"+Inf\"} 30
tenancy_request_duration_seconds_sum{tenant=\"b\"} 0.15
tenancy_request_duration_seconds_count{tenant=\"b\"} 30
";

    #[test]
    fn tenants_rank_by_traffic_with_latency_from_the_buckets() {
        let top = summarize("http://x/metrics", PAGE, 10).unwrap();
        assert_eq!(top.tenant_labels, 2);
        let [first, second] = &top.tenants[..] else {
            panic!("{top:?}")
        };
        // a: 10 requests and 50 limited outranks b's 32 requests.
        assert_eq!(
            (first.tenant.as_str(), first.requests, first.limited),
            ("a", 10, 50)
        );
        assert_eq!(
            (
                second.tenant.as_str(),
                second.requests,
                second.served,
                second.refused
            ),
            ("b", 32, 30, 2)
        );
        assert_eq!(second.p99_ms, Some(100.0));
        assert!((second.mean_ms.unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(first.p99_ms, None);
        assert_eq!(top.without_tenant["tenant_required"], 4);
        let table = render(&top);
        assert!(table.starts_with("TENANT"), "{table}");
        assert!(
            table.contains("without a tenant: tenant_required 4"),
            "{table}"
        );
        assert_eq!(summarize("u", PAGE, 1).unwrap().tenants.len(), 1);
    }

    #[test]
    fn a_page_without_tenancy_metrics_is_a_clear_error() {
        let err = summarize("http://x/metrics", "# nothing here\nup 1\n", 10).unwrap_err();
        assert!(
            err.to_string().contains("has no tenancy_requests_total"),
            "{err}"
        );
    }

    #[test]
    fn p99_beyond_the_last_finite_bucket_is_unknown() {
        assert_eq!(p99(&[(0.1, 1.0), (f64::INFINITY, 100.0)]), None);
        assert_eq!(p99(&[]), None);
        assert_eq!(p99(&[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
    }
}
