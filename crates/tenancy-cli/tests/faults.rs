//! Faults: the demo killed with SIGKILL in the middle of concurrent admin writes, round after
//! round, restarted on the same store (a SQLite file; a PostgreSQL database): every acknowledged
//! write is there and active, the recovery leaves no tenant `provisioning`, and the store is
//! intact. And the PostgreSQL server stopped mid-traffic, then started again: 503 meanwhile,
//! served again without a restart of the demo, nothing acknowledged lost.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::{Read as _, Write as _};

use common::{ADMIN_TOKEN, spawn_demo, tenancy};

/// Concurrent writers per round.
const WRITERS: usize = 6;
/// Rounds of writes cut by a kill; the kill lands at a different moment in each.
const ROUNDS: u64 = 6;

/// `GET path`: the response's status, or `None` when the server is gone.
fn get(addr: &str, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, &request)
}

/// Sends `request`, returns the response's status.
fn exchange(addr: &str, request: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.get(9..12)?.parse().ok()
}

/// `POST /admin/tenants` for `slug`: the response's status, or `None` when the server is gone.
fn create(addr: &str, slug: &str) -> Option<u16> {
    let body = format!(r#"{{"slug":"{slug}","name":"Tenant {slug}"}}"#);
    let request = format!(
        "POST /admin/tenants HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, &request)
}

/// Every tenant of `database`: slug -> status.
fn all_tenants(database: &str) -> Vec<(String, String)> {
    let mut tenants = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["tenants", "list", "--limit", "1000"];
        if let Some(after) = &after {
            args.extend(["--after", after.as_str()]);
        }
        let (code, page, _) = tenancy(database, &args);
        assert_eq!(code, 0, "{page}");
        for tenant in page["items"].as_array().unwrap() {
            tenants.push((
                tenant["slug"].as_str().unwrap().to_owned(),
                tenant["status"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return tenants,
        }
    }
}

/// One round: the demo on `database`, `WRITERS` clients creating tenants as fast as they can, a
/// SIGKILL after `after`. Returns the slugs whose create was acknowledged (201).
fn killed_round(database: &str, round: u64, after: Duration) -> Vec<String> {
    let (mut child, addr, _) = spawn_demo(database, Stdio::null());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let gone = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (addr, acknowledged, gone) =
                (addr.clone(), Arc::clone(&acknowledged), Arc::clone(&gone));
            std::thread::spawn(move || {
                // Bounded: at most 10,000 creates per writer.
                for n in 0..10_000 {
                    if gone.load(Ordering::SeqCst) {
                        return;
                    }
                    let slug = format!("r{round}-w{writer}-n{n}");
                    match create(&addr, &slug) {
                        Some(201) => acknowledged.lock().unwrap().push(slug),
                        // Refused while the store was busy: not acknowledged, nothing promised.
                        Some(500..=599) => {}
                        Some(other) => panic!("create {slug} answered {other}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(after);
    child.kill().unwrap();
    child.wait().unwrap();
    gone.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        !acknowledged.is_empty(),
        "round {round} acknowledged no write"
    );
    acknowledged
}

/// The rounds on `database`, then the checks.
fn kill_rounds(database: &str) {
    let mut acknowledged = Vec::new();
    for round in 0..ROUNDS {
        acknowledged.extend(killed_round(
            database,
            round,
            Duration::from_millis(400 + 137 * round),
        ));
    }
    // A restart serves again (and completes its own seed if a kill cut it).
    let (mut child, addr, banner) = spawn_demo(database, Stdio::null());
    assert!(banner.contains("acme"), "{banner}");
    assert_eq!(create(&addr, "after-the-kills"), Some(201));
    common::stop_demo(&mut child, "-TERM");

    let (code, recovery, _) = tenancy(database, &["tenants", "recover", "--older-than", "0s"]);
    assert_eq!(code, 0, "{recovery}");
    eprintln!(
        "{} acknowledged creates over {ROUNDS} killed rounds; the recovery finished {} tenant(s) \
         a kill left provisioning",
        acknowledged.len(),
        recovery["recovered"].as_array().map_or(0, Vec::len)
    );
    let tenants = all_tenants(database);
    let by_slug: std::collections::HashMap<_, _> = tenants.iter().cloned().collect();
    for slug in &acknowledged {
        assert_eq!(
            by_slug.get(slug).map(String::as_str),
            Some("active"),
            "acknowledged create {slug}"
        );
    }
    let provisioning: Vec<_> = tenants
        .iter()
        .filter(|(_, status)| status == "provisioning")
        .collect();
    assert!(
        provisioning.is_empty(),
        "left provisioning: {provisioning:?}"
    );
    let unique: HashSet<_> = tenants.iter().map(|(slug, _)| slug).collect();
    assert_eq!(unique.len(), tenants.len(), "a slug stored twice");
    for seed in ["acme", "globex", "initech"] {
        assert!(by_slug.contains_key(seed), "the seed's {seed}");
    }
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("faults.db").display());
    kill_rounds(&url);
    let integrity: String = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store =
            tenancy::store_sql::SqliteTenantStore::connect(&tenancy::StoreConfig::with_url(&url))
                .await
                .unwrap();
        let integrity = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.close().await;
        integrity
    });
    assert_eq!(integrity, "ok");
}

/// A database of its own on the test server, dropped at the end.
struct PgDatabase {
    name: String,
    url: String,
    admin_url: String,
    runtime: tokio::runtime::Runtime,
}

impl PgDatabase {
    /// A database on the server of `admin_url` (its superuser URL).
    fn on(admin_url: String) -> Self {
        let name = format!("tenancy_faults_{}", tenancy_core::TenantId::new().simple());
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        let database = Self {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            name,
            url,
            admin_url,
        };
        database.admin(&format!("CREATE DATABASE {}", database.name));
        database
    }

    /// Runs `sql` as superuser on the server's `postgres` database.
    fn admin(&self, sql: &str) {
        use sqlx::{Connection as _, Executor as _};
        self.runtime.block_on(async {
            let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .unwrap();
        });
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write_on_postgres() {
    let database = PgDatabase::on(tenancy_core::conformance::test_database_url());
    kill_rounds(&database.url);
}

/// Polls `what` every 50 ms until it holds, at most 30 s.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..600 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 30 s");
}

/// Runs `pg_ctl` of the test servers on the second one (as the `postgres` user when root, as the
/// fixture started it), with `args`; panics when it fails.
fn pg_ctl_2(args: &[&str]) {
    let bin = required("TENANCY_TEST_PG_BIN");
    let data = required("TENANCY_TEST_PG_DATA_2");
    let pg_ctl = std::path::Path::new(&bin).join("pg_ctl");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let mut command = if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        command
    } else {
        Command::new(&pg_ctl)
    };
    let status = command
        .arg("-D")
        .arg(&data)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `cargo xtask ci` (or `cargo xtask pg start`)")
    })
}

#[test]
fn postgres_stopped_mid_traffic_gives_503_then_serves_again_without_a_restart() {
    // The second test server: this binary's other tests use the first.
    let database = PgDatabase::on(tenancy_core::conformance::test_database_url_2());
    let (mut child, addr, _) = spawn_demo(&database.url, Stdio::null());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0_usize));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let (addr, acknowledged, refused, done) = (
                addr.clone(),
                Arc::clone(&acknowledged),
                Arc::clone(&refused),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                for n in 0..100_000 {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    let slug = format!("outage-w{writer}-n{n}");
                    match create(&addr, &slug) {
                        Some(201) => acknowledged.lock().unwrap().push(slug),
                        Some(503) => {
                            *refused.lock().unwrap() += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("create {slug} answered {other:?}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The server stops (its clients disconnected), mid-traffic.
    pg_ctl_2(&["-m", "fast", "-w", "stop"]);
    eventually("/healthz answering 503", || {
        get(&addr, "/healthz") == Some(503)
    });
    eventually("a create refused with 503", || *refused.lock().unwrap() > 0);
    // Started again: the same demo process serves again.
    let options = required("TENANCY_TEST_PG_OPTIONS_2");
    let log = format!("{}/server.log", required("TENANCY_TEST_PG_DATA_2"));
    pg_ctl_2(&["-l", &log, "-o", &options, "-w", "-t", "60", "start"]);
    eventually("/healthz answering 200", || {
        get(&addr, "/healthz") == Some(200)
    });
    let before = acknowledged.lock().unwrap().len();
    eventually("creates acknowledged again", || {
        acknowledged.lock().unwrap().len() > before
    });
    done.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    common::stop_demo(&mut child, "-TERM");

    let tenants = all_tenants(&database.url);
    let by_slug: std::collections::HashMap<_, _> = tenants.into_iter().collect();
    let acknowledged = acknowledged.lock().unwrap();
    for slug in acknowledged.iter() {
        assert_eq!(
            by_slug.get(slug).map(String::as_str),
            Some("active"),
            "acknowledged create {slug}"
        );
    }
}
