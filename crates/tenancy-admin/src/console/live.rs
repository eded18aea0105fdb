//! What the console follows while it runs: the tenant events (each tenant's recent history, and a
//! push to every open page), and the per-tenant metrics, sampled into a ring of recent points.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_parse::{Scrape, Value};
use tenancy_core::{TenantEvent, TenantEventKind, TenantId};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::EventSubscriber;

/// Renders the application's metrics as Prometheus text (`PrometheusHandle::render`).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// The metrics read (the names `tenancy-resolution` and `tenancy-limits` record).
const REQUESTS: &str = "tenancy_requests_total";
const LIMITED: &str = "tenancy_requests_limited_total";
const DURATION: &str = "tenancy_request_duration_seconds";
/// The outcome of an admitted request.
const SERVED: &str = "served";
/// The `tenant` label of requests without a verified tenant.
const NO_TENANT: &str = "none";

/// How many events of one tenant are kept.
const HISTORY_PER_TENANT: usize = 32;
/// How many tenants' histories are kept.
const HISTORY_TENANTS: usize = 10_000;

/// What is pushed to the open pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Push {
    /// Something happened to a tenant (`None`: events were missed, everything may have changed).
    Tenant(Option<TenantId>),
    /// A new metrics sample.
    Metrics,
}

/// Aborts the console's tasks when the last router holding them is dropped.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The tasks, what they collect, and the channel they push on.
pub(crate) struct Hub {
    pub(crate) live: Arc<Live>,
    pub(crate) history: Arc<History>,
    pub(crate) push: broadcast::Sender<Push>,
    _tasks: Tasks,
}

impl Hub {
    pub(crate) fn start(
        events: Option<EventSubscriber>,
        metrics: Option<MetricsSource>,
        interval: Duration,
        points: usize,
    ) -> Self {
        let (push, _) = broadcast::channel(256);
        let live = Arc::new(Live::new(points));
        let history = Arc::new(History::default());
        let mut tasks = Vec::new();
        if let Some(subscribe) = events {
            let mut receiver = subscribe();
            let (history, push) = (Arc::clone(&history), push.clone());
            tasks.push(
                tokio::spawn(async move {
                    loop {
                        match receiver.recv().await {
                            Ok(event) => {
                                history.record(&event);
                                let _ = push.send(Push::Tenant(Some(event.tenant_id)));
                            }
                            Err(broadcast::error::RecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "console: tenant events missed");
                                let _ = push.send(Push::Tenant(None));
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                })
                .abort_handle(),
            );
        }
        if let Some(render) = metrics {
            let (live, push) = (Arc::clone(&live), push.clone());
            tasks.push(
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval(interval);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        live.sample(&render(), Instant::now());
                        let _ = push.send(Push::Metrics);
                    }
                })
                .abort_handle(),
            );
        }
        Self {
            live,
            history,
            push,
            _tasks: Tasks(tasks),
        }
    }
}

/// One line of a tenant's history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistoryEntry {
    pub(crate) at: DateTime<Utc>,
    pub(crate) what: &'static str,
    pub(crate) detail: String,
}

/// The recent events of each tenant, as this process saw them.
#[derive(Debug, Default)]
pub(crate) struct History {
    tenants: Mutex<HashMap<TenantId, VecDeque<HistoryEntry>>>,
}

/// The longest detail kept per history entry, in characters: config values may be 64 KiB each,
/// and the history holds up to [`HISTORY_PER_TENANT`] x [`HISTORY_TENANTS`] entries.
const DETAIL_MAX_CHARS: usize = 200;

fn detail(kind: &TenantEventKind) -> String {
    let mut detail = full_detail(kind);
    if let Some((cut, _)) = detail.char_indices().nth(DETAIL_MAX_CHARS) {
        detail.truncate(cut);
        detail.push('…');
    }
    detail
}

fn full_detail(kind: &TenantEventKind) -> String {
    let json = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "(default)".to_owned(), ToString::to_string)
    };
    let nodes = |from: &Option<String>, to: &Option<String>| {
        let node = |n: &Option<String>| n.clone().unwrap_or_else(|| "?".to_owned());
        format!("{} → {}", node(from), node(to))
    };
    match kind {
        TenantEventKind::PlacementStarted {
            operation,
            from,
            to,
        }
        | TenantEventKind::PlacementCompleted {
            operation,
            from,
            to,
        } => format!("{operation}: {}", nodes(from, to)),
        TenantEventKind::PlacementFailed {
            operation,
            from,
            to,
            error,
        } => format!("{operation}: {}: {error}", nodes(from, to)),
        TenantEventKind::Created { slug } => format!("slug {slug}"),
        TenantEventKind::Updated { fields } => fields.join(", "),
        TenantEventKind::Suspended { reason } => reason.clone().unwrap_or_default(),
        TenantEventKind::DomainAdded { domain, primary } => {
            format!("{domain}{}", if *primary { " (primary)" } else { "" })
        }
        TenantEventKind::DomainRemoved { domain, .. }
        | TenantEventKind::PrimaryDomainChanged { domain } => domain.to_string(),
        TenantEventKind::ConfigChanged { key, old, new } => {
            format!("{key}: {} → {}", json(old), json(new))
        }
        _ => String::new(),
    }
}

impl History {
    pub(crate) fn record(&self, event: &TenantEvent) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if !tenants.contains_key(&event.tenant_id) && tenants.len() >= HISTORY_TENANTS {
            // Full: forget the tenant whose latest event is the oldest.
            let quietest = tenants
                .iter()
                .min_by_key(|(_, entries)| entries.back().map(|e| e.at))
                .map(|(id, _)| *id);
            if let Some(quietest) = quietest {
                tenants.remove(&quietest);
            }
        }
        let entries = tenants.entry(event.tenant_id).or_default();
        if entries.len() >= HISTORY_PER_TENANT {
            entries.pop_front();
        }
        entries.push_back(HistoryEntry {
            at: event.at,
            what: event.kind.name(),
            detail: detail(&event.kind),
        });
    }

    /// The tenant's events, the latest first.
    pub(crate) fn of(&self, tenant: TenantId) -> Vec<HistoryEntry> {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .map(|entries| entries.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// A tenant's traffic over one sampling interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TenantPoint {
    /// Requests per second (admitted and refused).
    pub(crate) rps: f64,
    /// The upper bound of the latency bucket holding the 99th percentile of the interval's
    /// admitted requests, in milliseconds (`None` without requests, or beyond the last bucket).
    pub(crate) p99_ms: Option<f64>,
}

/// One sampling interval.
#[derive(Debug, Clone, Default)]
pub(crate) struct Point {
    pub(crate) tenants: HashMap<String, TenantPoint>,
    /// Refused requests by reason during the interval.
    pub(crate) refusals: BTreeMap<String, f64>,
}

#[derive(Debug, Default)]
struct TenantTotals {
    requests: f64,
    /// (upper bound, cumulative count), `+Inf` included.
    buckets: Vec<(f64, f64)>,
}

#[derive(Debug, Default)]
struct Totals {
    tenants: HashMap<String, TenantTotals>,
    refusals: BTreeMap<String, f64>,
}

fn scalar(value: &Value) -> f64 {
    match value {
        Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v) => *v,
        _ => 0.0,
    }
}

/// The cumulative counts of `text`.
fn totals(text: &str) -> Result<Totals, std::io::Error> {
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))?;
    let mut totals = Totals::default();
    for sample in &scrape.samples {
        let Some(tenant) = sample.labels.get("tenant") else {
            continue;
        };
        match sample.metric.as_str() {
            REQUESTS => {
                let value = scalar(&sample.value);
                let outcome = sample.labels.get("outcome").unwrap_or("unknown");
                if outcome != SERVED {
                    *totals.refusals.entry(outcome.to_owned()).or_default() += value;
                }
                if tenant != NO_TENANT {
                    totals
                        .tenants
                        .entry(tenant.to_owned())
                        .or_default()
                        .requests += value;
                }
            }
            LIMITED => {
                let reason = sample.labels.get("reason").unwrap_or("unknown");
                *totals
                    .refusals
                    .entry(format!("limited: {reason}"))
                    .or_default() += scalar(&sample.value);
            }
            DURATION => {
                if let Value::Histogram(buckets) = &sample.value {
                    totals.tenants.entry(tenant.to_owned()).or_default().buckets =
                        buckets.iter().map(|b| (b.less_than, b.count)).collect();
                }
            }
            _ => {}
        }
    }
    Ok(totals)
}

/// `now - before`, or `now` when the counter went back (the process restarted).
fn delta(now: f64, before: f64) -> f64 {
    if now >= before { now - before } else { now }
}

/// The upper bound (in ms) of the first bucket whose count reaches 99% of the interval's.
fn p99_ms(now: &[(f64, f64)], before: Option<&[(f64, f64)]>) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = now
        .iter()
        .map(|&(bound, count)| {
            let old = before
                .and_then(|b| b.iter().find(|(b, _)| *b == bound))
                .map_or(0.0, |(_, c)| *c);
            (bound, delta(count, old))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= total * 0.99)
        .map(|(bound, _)| *bound)
        .filter(|bound| bound.is_finite())
        .map(|bound| bound * 1000.0)
}

#[derive(Debug, Default)]
struct LiveInner {
    previous: Option<(Instant, Totals)>,
    points: VecDeque<Point>,
    error: Option<String>,
}

/// The ring of recent samples.
#[derive(Debug)]
pub(crate) struct Live {
    inner: Mutex<LiveInner>,
    capacity: usize,
}

impl Live {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(LiveInner::default()),
            capacity: capacity.max(2),
        }
    }

    /// Takes one sample of `text` (read at `now`); the first only sets the baseline.
    pub(crate) fn sample(&self, text: &str, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let current = match totals(text) {
            Ok(current) => current,
            Err(e) => {
                inner.error = Some(format!("the metrics cannot be parsed: {e}"));
                return;
            }
        };
        inner.error = None;
        if let Some((then, previous)) = &inner.previous {
            let seconds = now.duration_since(*then).as_secs_f64();
            if seconds > 0.0 {
                let tenants = current
                    .tenants
                    .iter()
                    .map(|(label, totals)| {
                        let before = previous.tenants.get(label);
                        let requests = delta(totals.requests, before.map_or(0.0, |b| b.requests));
                        let point = TenantPoint {
                            rps: requests / seconds,
                            p99_ms: p99_ms(&totals.buckets, before.map(|b| b.buckets.as_slice())),
                        };
                        (label.clone(), point)
                    })
                    .collect();
                let refusals = current
                    .refusals
                    .iter()
                    .map(|(reason, count)| {
                        let before = previous.refusals.get(reason).copied().unwrap_or(0.0);
                        (reason.clone(), delta(*count, before))
                    })
                    .filter(|(_, count)| *count > 0.0)
                    .collect();
                if inner.points.len() >= self.capacity {
                    inner.points.pop_front();
                }
                inner.points.push_back(Point { tenants, refusals });
            }
        }
        inner.previous = Some((now, current));
    }

    /// The points, the oldest first.
    pub(crate) fn points(&self) -> Vec<Point> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.points.iter().cloned().collect()
    }

    /// Why the last sample failed, if it did.
    pub(crate) fn error(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error
            .clone()
    }

    /// How many points the ring holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The tenant labels with the most requests over `points`, the busiest first (at most `n`).
pub(crate) fn busiest(points: &[Point], n: usize) -> Vec<String> {
    let mut sums: HashMap<&str, f64> = HashMap::new();
    for point in points {
        for (label, tenant) in &point.tenants {
            *sums.entry(label).or_default() += tenant.rps;
        }
    }
    let mut labels: Vec<(&str, f64)> = sums.into_iter().filter(|(_, s)| *s > 0.0).collect();
    labels.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    labels
        .into_iter()
        .take(n)
        .map(|(l, _)| l.to_owned())
        .collect()
}

/// Refusals by reason over `points`.
pub(crate) fn refusals(points: &[Point]) -> BTreeMap<String, u64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for point in points {
        for (reason, count) in &point.refusals {
            *sums.entry(reason.clone()).or_default() += count;
        }
    }
    sums.into_iter()
        // Counts are whole and non-negative.
        .map(|(reason, count)| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let count = count.round().max(0.0) as u64;
            (reason, count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(served: u64, refused: u64, fast: u64, slow: u64) -> String {
        format!(
            "# TYPE tenancy_requests_total counter\n\
             tenancy_requests_total{{tenant=\"t1\",outcome=\"served\"}} {served}\n\
             tenancy_requests_total{{tenant=\"t1\",outcome=\"tenant_suspended\"}} {refused}\n\
             tenancy_requests_total{{tenant=\"none\",outcome=\"tenant_not_found\"}} 1\n\
             # TYPE tenancy_request_duration_seconds histogram\n\
             tenancy_request_duration_seconds_bucket{{tenant=\"t1\",le=\"0.001\"}} {fast}\n\
             tenancy_request_duration_seconds_bucket{{tenant=\"t1\",le=\"0.1\"}} {}\n\
             tenancy_request_duration_seconds_bucket{{tenant=\"t1\",le=\"+Inf\"}} {}\n\
             tenancy_request_duration_seconds_sum{{tenant=\"t1\"}} 1\n\
             tenancy_request_duration_seconds_count{{tenant=\"t1\"}} {}\n\
             # TYPE tenancy_requests_limited_total counter\n\
             tenancy_requests_limited_total{{tenant=\"t1\",reason=\"rate\"}} {refused}\n",
            fast + slow,
            fast + slow,
            fast + slow
        )
    }

    #[test]
    fn rates_and_p99_come_from_the_difference_of_two_samples() {
        let live = Live::new(3);
        let start = Instant::now();
        live.sample(&text(10, 0, 10, 0), start);
        // The first sample is the baseline only.
        assert!(live.points().is_empty());
        // 2 s later: 20 more served, 4 refused; of the 20 timed, one slow.
        live.sample(&text(30, 4, 29, 1), start + Duration::from_secs(2));
        let points = live.points();
        assert_eq!(points.len(), 1);
        let t1 = points[0].tenants["t1"];
        assert!((t1.rps - 12.0).abs() < 1e-9, "{t1:?}");
        // 19 of 20 in the first bucket is under 99%: the p99 is the second bucket's bound.
        assert_eq!(t1.p99_ms, Some(100.0));
        assert_eq!(points[0].refusals["tenant_suspended"], 4.0);
        assert_eq!(points[0].refusals["limited: rate"], 4.0);
        assert!(!points[0].refusals.contains_key("tenant_not_found"));
        assert_eq!(busiest(&points, 5), vec!["t1".to_owned()]);
        assert_eq!(refusals(&points)["tenant_suspended"], 4);

        // A ring: at most three points.
        for i in 3..8 {
            live.sample(&text(30 + i, 4, 29, 1), start + Duration::from_secs(i));
        }
        assert_eq!(live.points().len(), 3);
        // Nothing timed in the interval: no p99.
        assert_eq!(live.points()[2].tenants["t1"].p99_ms, None);
    }

    #[test]
    fn history_keeps_the_latest_events_of_each_tenant() {
        let history = History::default();
        let id = TenantId::new();
        for i in 0..40 {
            history.record(&TenantEvent::now(
                id,
                TenantEventKind::Suspended {
                    reason: Some(format!("reason {i}")),
                },
            ));
        }
        let entries = history.of(id);
        assert_eq!(entries.len(), HISTORY_PER_TENANT);
        assert_eq!(entries[0].detail, "reason 39");
        assert_eq!(entries[0].what, "suspended");
        assert!(history.of(TenantId::new()).is_empty());
    }

    #[test]
    fn history_details_are_bounded_and_name_placements() {
        let history = History::default();
        let id = TenantId::new();
        let big = serde_json::Value::String("x".repeat(60_000));
        history.record(&TenantEvent::now(
            id,
            TenantEventKind::ConfigChanged {
                key: "theme".into(),
                old: None,
                new: Some(big),
            },
        ));
        history.record(&TenantEvent::now(
            id,
            TenantEventKind::PlacementFailed {
                operation: tenancy_core::PlacementOperation::Move,
                from: Some("w1:5432".into()),
                to: Some("w2:5432".into()),
                error: "could not acquire the lock".into(),
            },
        ));
        let entries = history.of(id);
        assert_eq!(
            entries[0].detail,
            "move: w1:5432 → w2:5432: could not acquire the lock"
        );
        assert_eq!(entries[1].detail.chars().count(), DETAIL_MAX_CHARS + 1);
        assert!(entries[1].detail.starts_with("theme: (default) → \"xxx"));
        assert!(entries[1].detail.ends_with('…'));
    }
}
