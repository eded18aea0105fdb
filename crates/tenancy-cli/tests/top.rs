//! The demo binary's `/metrics` and `tenancy top` against it: real processes, real HTTP.

mod common;

use std::process::Stdio;

use common::{http, spawn_demo, stop_demo, tenancy};
use serde_json::Value;

fn get(addr: &str, path: &str) -> (u16, String) {
    let response = http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    );
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A tenant's id, from its whoami.
fn id_of(addr: &str, slug: &str) -> String {
    let (status, body) = get(addr, &format!("/tenants/{slug}/api/whoami"));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[test]
fn top_shows_the_busiest_tenant_first_with_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("tenants.db").display());
    let (mut child, addr, banner) = spawn_demo(&database, Stdio::null());
    assert!(banner.contains("/metrics"), "{banner}");

    // acme: 5 served, globex: 2, initech (suspended): 1 refused, and one request naming none.
    let acme = id_of(&addr, "acme");
    for _ in 0..4 {
        assert_eq!(get(&addr, "/tenants/acme/api/whoami").0, 200);
    }
    let globex = id_of(&addr, "globex");
    assert_eq!(get(&addr, "/tenants/globex/api/config").0, 200);
    let (status, body) = get(&addr, "/tenants/initech/api/whoami");
    assert_eq!(status, 403, "{body}");
    assert_eq!(get(&addr, "/api/whoami").0, 403);

    // The Prometheus text itself, open like /healthz.
    let (status, page) = get(&addr, "/metrics");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!(
            "tenancy_requests_total{{tenant=\"{acme}\",outcome=\"served\"}} 5"
        )),
        "{page}"
    );
    assert!(
        page.contains("# TYPE tenancy_request_duration_seconds histogram"),
        "{page}"
    );
    assert!(
        page.contains("tenancy_validator_lookups_total{result=\"hit\"}"),
        "{page}"
    );
    assert!(page.contains("# HELP tenancy_requests_total"), "{page}");

    let url = format!("http://{addr}/metrics");
    let (code, top, stderr) = tenancy(&database, &["top", "--url", &url]);
    assert_eq!(code, 0, "{stderr}");
    let tenants = top["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 3, "{top}");
    assert_eq!(tenants[0]["tenant"], acme.as_str());
    assert_eq!(tenants[0]["requests"], 5);
    assert_eq!(tenants[0]["served"], 5);
    assert_eq!(tenants[0]["refused"], 0);
    assert_eq!(tenants[0]["limited"], 0);
    assert!(tenants[0]["mean_ms"].as_f64().unwrap() >= 0.0, "{top}");
    assert!(tenants[0]["p99_ms"].as_f64().is_some(), "{top}");
    assert_eq!(tenants[1]["tenant"], globex.as_str());
    assert_eq!(tenants[1]["requests"], 2);
    assert_eq!(tenants[2]["refused"], 1);
    assert_eq!(tenants[2]["served"], 0);
    assert_eq!(top["without_tenant"]["tenant_required"], 1);

    // --limit, and --watch --count: one JSON document per line per refresh.
    let (code, top, _) = tenancy(&database, &["top", "--url", &url, "--limit", "1"]);
    assert_eq!(code, 0);
    assert_eq!(top["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(top["tenant_labels"], 3);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["--json", "top", "--url", &url, "--watch", "--count", "2"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines
            .iter()
            .all(|l| l["tenants"][0]["tenant"] == acme.as_str())
    );

    // The table.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["top", "--url", &url])
        .output()
        .unwrap();
    let table = String::from_utf8(output.stdout).unwrap();
    let first_row = table.lines().nth(1).unwrap();
    assert!(first_row.starts_with(&acme), "{table}");
    assert!(
        table.contains("without a tenant: tenant_required 1"),
        "{table}"
    );

    assert!(stop_demo(&mut child, "-INT").success());
}

#[test]
fn top_refuses_bad_urls_and_unreachable_or_foreign_endpoints() {
    let (code, _, stderr) = tenancy(
        "sqlite://unused.db",
        &["top", "--url", "https://example.com/metrics"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("only http://"), "{stderr}");
    let (code, _, stderr) = tenancy("sqlite://unused.db", &["top", "--url", "not a url"]);
    assert_eq!(code, 2, "{stderr}");
    // Nothing listens there (a port just released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, stderr) = tenancy(
        "sqlite://unused.db",
        &["top", "--url", &format!("http://127.0.0.1:{port}/metrics")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("reading http://127.0.0.1"), "{stderr}");
    let (code, _, stderr) = tenancy("sqlite://unused.db", &["top", "--count", "2"]);
    assert_eq!(code, 2, "--count needs --watch: {stderr}");
}
