//! Bench `flood`: one tenant floods a service while four others send at a steady pace; the quiet
//! tenants' latency (p50, p99) without and with `TenantLimitLayer`, over real HTTP/1.1 on
//! loopback, both runs in one process.
//!
//! `cargo bench -p tenancy-limits --bench flood`
//!
//! The service (axum, a two-worker tokio runtime) spends about 200 us of CPU per request, so a
//! flood of 32 connections sending back to back takes the machine's cores. The quiet tenants, one
//! connection each, send a request every 5 ms. With limits, the flooding tenant's plan allows 200
//! requests per second: the rest of its requests get a 429 at the cost of a header read. The
//! tenant is put into the request by a small middleware reading `x-tenant` (resolution is measured
//! elsewhere); the limit layer sits after it, as in an application.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use tenancy_core::{CreateTenant, TenantContext, TenantInfo};
use tenancy_limits::{LimitsConfig, TenantLimitLayer, TenantLimits};
use tenancy_resolution::ResolvedTenant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long each run lasts.
const RUN: Duration = Duration::from_secs(4);
/// The flooding tenant's connections.
const FLOOD_CONNECTIONS: usize = 32;
/// The quiet tenants, one connection each, one request every `QUIET_PACE`.
const QUIET: [&str; 4] = ["quiet-a", "quiet-b", "quiet-c", "quiet-d"];
const QUIET_PACE: Duration = Duration::from_millis(5);
/// CPU time the handler spends per request.
const WORK: Duration = Duration::from_micros(200);

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for limited in [false, true] {
            let report = run(limited).await;
            println!(
                "flood, {}: quiet tenants p50 {:.2} ms, p99 {:.2} ms over {} requests; flooding \
                 tenant {} served, {} refused with 429",
                if limited {
                    "with limits"
                } else {
                    "without limits"
                },
                report.p50.as_secs_f64() * 1e3,
                report.p99.as_secs_f64() * 1e3,
                report.quiet_requests,
                report.flood_served,
                report.flood_refused,
            );
        }
    });
}

struct Report {
    p50: Duration,
    p99: Duration,
    quiet_requests: usize,
    flood_served: u64,
    flood_refused: u64,
}

/// Serves the app (with or without limits), floods it, and measures the quiet tenants.
async fn run(limited: bool) -> Report {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let server = tokio::spawn(async move {
        axum::serve(listener, app(limited)).await.expect("serve");
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (served, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flood = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        let (addr, stop) = (addr.clone(), Arc::clone(&stop));
        let (served, refused) = (Arc::clone(&served), Arc::clone(&refused));
        flood.push(tokio::spawn(async move {
            let mut client = Client::connect(&addr).await;
            while !stop.load(Ordering::Relaxed) {
                match client.get("flood").await {
                    200 => served.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("the flooding tenant got {other}"),
                };
            }
        }));
    }
    let mut quiet = Vec::new();
    for tenant in QUIET {
        let addr = addr.clone();
        quiet.push(tokio::spawn(async move {
            let mut client = Client::connect(&addr).await;
            let mut latencies = Vec::new();
            let end = Instant::now() + RUN;
            let mut next = Instant::now();
            while Instant::now() < end {
                tokio::time::sleep_until(next.into()).await;
                next += QUIET_PACE;
                let started = Instant::now();
                let status = client.get(tenant).await;
                assert_eq!(status, 200, "a quiet tenant must always be served");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for handle in quiet {
        latencies.extend(handle.await.expect("a quiet client"));
    }
    stop.store(true, Ordering::Relaxed);
    for handle in flood {
        handle.await.expect("a flooding client");
    }
    server.abort();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Report {
        p50: at(0.50),
        p99: at(0.99),
        quiet_requests: latencies.len(),
        flood_served: served.load(Ordering::Relaxed),
        flood_refused: refused.load(Ordering::Relaxed),
    }
}

/// `GET /work`: about [`WORK`] of CPU. The tenant comes from `x-tenant`; with `limited`, the
/// flooding tenant's plan allows 200 requests per second, the others' plan nothing less.
fn app(limited: bool) -> Router {
    let tenants: Arc<HashMap<String, ResolvedTenant>> = Arc::new(
        QUIET
            .iter()
            .map(|slug| (*slug, "quiet"))
            .chain([("flood", "flood")])
            .map(|(slug, plan)| {
                let command =
                    CreateTenant::new(slug.parse().expect("a slug"), slug).with_plan(plan);
                let info = TenantInfo::from_command(command, chrono::Utc::now()).expect("a tenant");
                let context = TenantContext::new(Arc::new(info), Arc::from("header"));
                (slug.to_owned(), ResolvedTenant::new(context))
            })
            .collect(),
    );
    let router = Router::new().route("/work", get(work));
    let router = if limited {
        let config: LimitsConfig = serde_json::from_value(serde_json::json!({
            "plans": {"quiet": {}, "flood": {"requests_per_second": 200, "burst": 50}},
        }))
        .expect("a limits configuration");
        router.layer(TenantLimitLayer::new(
            TenantLimits::new(&config).expect("limits"),
        ))
    } else {
        router
    };
    router.layer(middleware::from_fn(
        move |mut request: Request, next: Next| {
            let tenants = Arc::clone(&tenants);
            async move {
                let tenant = request
                    .headers()
                    .get("x-tenant")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|slug| tenants.get(slug))
                    .cloned();
                if let Some(tenant) = tenant {
                    request.extensions_mut().insert(tenant);
                }
                next.run(request).await
            }
        },
    ))
}

async fn work() -> &'static str {
    let started = Instant::now();
    let mut x = 0u64;
    while started.elapsed() < WORK {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    "ok"
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
    body: Vec<u8>,
}

impl Client {
    async fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (reader, writer) = stream.into_split();
        Self {
            reader: BufReader::new(reader),
            writer,
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// `GET /work` as `tenant`; the status.
    async fn get(&mut self, tenant: &str) -> u16 {
        let request = format!("GET /work HTTP/1.1\r\nhost: bench\r\nx-tenant: {tenant}\r\n\r\n");
        self.writer
            .write_all(request.as_bytes())
            .await
            .expect("send");
        let mut status = 0;
        let mut length = 0;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).await.expect("read");
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest[..3].parse().expect("a status");
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a length");
            }
        }
        self.body.resize(length, 0);
        self.reader
            .read_exact(&mut self.body)
            .await
            .expect("a body");
        status
    }
}
