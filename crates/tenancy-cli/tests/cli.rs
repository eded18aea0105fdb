//! The `tenancy` binary on a temporary SQLite file: each command's output and exit status, tables
//! and `--json`, and bad input (a clear message, a non-zero status, nothing changed).

mod common;

use std::process::Command;

use common::{http, spawn_demo, stop_demo};

use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// The value of `field` in the output of `tenants show` (and the other single-tenant commands).
fn field(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no {name} in {stdout}"))
        .trim()
        .to_owned()
}

struct Db {
    url: String,
    _dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tenants.db").display());
        Self { url, _dir: dir }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(&self.url, args)
    }

    /// Runs with the database in `TENANCY_DATABASE_URL` instead of `--database`.
    fn run_with(&self, database: &str, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_tenancy"))
            .args(args)
            .env("TENANCY_DATABASE_URL", database)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let run = Run {
            code: output.status.code().unwrap(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "{args:?} panicked: {}",
            run.stderr
        );
        run
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
        run
    }

    /// Runs a command that must fail with `code`, saying `says` on stderr and nothing on stdout.
    fn fails(&self, code: i32, args: &[&str], says: &str) {
        let run = self.run(args);
        assert_eq!(run.code, code, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(says),
            "{args:?} should say {says:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{args:?}");
    }

    fn listed(&self) -> Value {
        self.ok(&["--json", "tenants", "list"]).json()
    }
}

#[test]
fn tenants_commands_print_tables_and_json() {
    let db = Db::new();
    let created = db.ok(&[
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme Corp",
        "--plan",
        "pro",
    ]);
    assert!(created.stdout.starts_with("FIELD"), "{}", created.stdout);
    assert_eq!(field(&created.stdout, "slug"), "acme");
    assert_eq!(field(&created.stdout, "status"), "active");
    assert_eq!(field(&created.stdout, "plan"), "pro");

    let globex = db
        .ok(&[
            "--json", "tenants", "create", "--slug", "globex", "--name", "Globex",
        ])
        .json();
    assert_eq!(globex["slug"], "globex");
    assert_eq!(globex["status"], "active");
    assert_eq!(globex["plan"], Value::Null);
    let globex_id = globex["id"].as_str().unwrap().to_owned();

    let table = db.ok(&["tenants", "list"]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("SLUG") && lines[0].contains("STATUS"));
    assert!(
        lines[1].contains("acme") && lines[1].contains("Acme Corp") && lines[1].contains("pro")
    );
    assert!(lines[2].contains(&globex_id) && lines[2].contains("globex"));
    let page = db.ok(&["--json", "tenants", "list", "--limit", "1"]).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let next = page["next"].as_str().unwrap().to_owned();
    let rest = db
        .ok(&["--json", "tenants", "list", "--after", &next])
        .json();
    assert_eq!(rest["items"][0]["slug"], "globex");
    assert!(
        db.ok(&["tenants", "list", "--limit", "1"])
            .stdout
            .contains(&format!("more: --after {next}"))
    );

    // show by slug and by id.
    assert_eq!(
        db.ok(&["--json", "tenants", "show", "globex"]).json()["id"],
        globex_id.as_str()
    );
    assert!(
        db.ok(&["tenants", "show", &globex_id])
            .stdout
            .contains("Globex")
    );

    // update, then status changes.
    let updated = db
        .ok(&[
            "--json",
            "tenants",
            "update",
            "acme",
            "--name",
            "Acme Inc",
            "--clear-plan",
        ])
        .json();
    assert_eq!(
        (updated["name"].as_str(), updated["plan"].as_str()),
        (Some("Acme Inc"), None)
    );
    let renamed = db
        .ok(&["--json", "tenants", "update", "acme", "--slug", "acme-inc"])
        .json();
    assert_eq!(renamed["slug"], "acme-inc");
    let suspended = db
        .ok(&[
            "--json", "tenants", "suspend", "acme-inc", "--reason", "unpaid",
        ])
        .json();
    assert_eq!(
        (
            suspended["status"].as_str(),
            suspended["status_reason"].as_str()
        ),
        (Some("suspended"), Some("unpaid"))
    );
    assert_eq!(
        field(
            &db.ok(&["tenants", "show", "acme-inc"]).stdout,
            "status reason"
        ),
        "unpaid"
    );
    assert_eq!(
        db.ok(&["--json", "tenants", "list", "--active"]).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        db.ok(&["--json", "tenants", "activate", "acme-inc"]).json()["status"],
        "active"
    );
    assert_eq!(
        db.ok(&["--json", "tenants", "deactivate", "acme-inc"])
            .json()["status"],
        "inactive"
    );
    assert_eq!(
        field(
            &db.ok(&["tenants", "activate", "acme-inc"]).stdout,
            "status"
        ),
        "active"
    );
}

#[test]
fn config_commands_set_get_unset_and_merge() {
    let db = Db::new();
    db.ok(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    assert_eq!(
        db.ok(&["config", "set", "acme", "theme", r#""dark""#])
            .stdout,
        "theme: (unset) -> \"dark\"\n"
    );
    let change = db
        .ok(&["--json", "config", "set", "acme", "limits.users", "50"])
        .json();
    assert_eq!(
        change,
        serde_json::json!({"key": "limits.users", "old": null, "new": 50})
    );
    assert_eq!(
        db.ok(&["config", "get", "acme", "theme"]).stdout,
        "\"dark\"\n"
    );
    assert_eq!(
        db.ok(&["--json", "config", "get", "acme", "limits.users"])
            .json(),
        50
    );
    let table = db.ok(&["config", "effective", "acme"]).stdout;
    assert_eq!(
        table,
        "KEY           VALUE\nlimits.users  50\ntheme         \"dark\"\n"
    );
    assert_eq!(
        db.ok(&["--json", "config", "effective", "acme"]).json(),
        serde_json::json!({"theme": "dark", "limits.users": 50})
    );
    assert_eq!(
        db.ok(&["config", "unset", "acme", "theme"]).stdout,
        "theme: \"dark\" -> (unset)\n"
    );
    db.fails(1, &["config", "get", "acme", "theme"], "theme is not set");
    assert_eq!(
        db.ok(&["--json", "config", "effective", "acme"]).json(),
        serde_json::json!({"limits.users": 50})
    );
}

#[test]
fn bad_input_gets_a_message_a_non_zero_status_and_changes_nothing() {
    let db = Db::new();
    db.ok(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    let before = db.listed();

    // Usage errors: 2.
    db.fails(
        2,
        &["tenants", "create", "--slug", "Not A Slug", "--name", "X"],
        "invalid value 'Not A Slug'",
    );
    db.fails(2, &["tenants", "create", "--slug", "x"], "--name");
    db.fails(
        2,
        &["tenants", "create", "--slug", "new", "--name", " "],
        "invalid name",
    );
    db.fails(
        2,
        &[
            "tenants",
            "create",
            "--slug",
            "new",
            "--name",
            "New",
            "--plan",
            "no spaces",
        ],
        "invalid plan",
    );
    db.fails(2, &["tenants", "list", "--limit", "0"], "--limit");
    db.fails(2, &["tenants", "list", "--after", "nope"], "--after");
    db.fails(2, &["tenants", "update", "acme"], "nothing to update");
    db.fails(
        2,
        &["tenants", "update", "acme", "--plan", "x", "--clear-plan"],
        "cannot be used with",
    );
    db.fails(2, &["tenants", "show", "Bad_Slug"], "invalid value");
    db.fails(
        2,
        &["config", "set", "acme", "theme", "dark"],
        "is not JSON",
    );
    db.fails(
        2,
        &["config", "set", "acme", "Bad Key", "1"],
        "invalid configuration",
    );
    db.fails(
        2,
        &["config", "set", "acme", "theme", "null"],
        "invalid configuration",
    );
    db.fails(2, &["nonsense"], "unrecognized subcommand");
    let mysql = db.run_with("mysql://u:secret@h/db", &["tenants", "list"]);
    assert_eq!(mysql.code, 2);
    assert!(
        mysql.stderr.contains("sqlite://FILE") && !mysql.stderr.contains("secret"),
        "{}",
        mysql.stderr
    );
    db.fails(
        2,
        &["schemas", "status", "--dir", "/nonexistent"],
        "not a directory",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_init.sql"), "CREATE TABLE t (id int)").unwrap();
    let migrations = dir.path().to_str().unwrap();
    db.fails(
        2,
        &["schemas", "migrate", "--dir", migrations],
        "needs PostgreSQL",
    );
    db.fails(
        2,
        &[
            "schemas",
            "migrate",
            "--dir",
            migrations,
            "--concurrency",
            "0",
        ],
        "--concurrency",
    );
    db.fails(2, &["audit"], "needs PostgreSQL");
    db.fails(
        2,
        &["--config", "/nonexistent.yaml", "tenants", "list"],
        "does not exist",
    );
    db.fails(
        2,
        &["demo", "--jwt-secret", "short", "--addr", "127.0.0.1:0"],
        "at least 32 bytes",
    );

    // Failures: 1.
    db.fails(1, &["tenants", "show", "nobody"], "not found");
    db.fails(
        1,
        &["tenants", "show", "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293"],
        "not found",
    );
    db.fails(
        1,
        &["tenants", "create", "--slug", "acme", "--name", "Again"],
        "already taken",
    );
    db.fails(
        1,
        &["tenants", "activate", "acme"],
        "cannot go from active to active",
    );
    db.fails(1, &["config", "set", "nobody", "theme", "1"], "not found");

    assert_eq!(db.listed(), before, "nothing changed");
    assert_eq!(
        db.ok(&["--json", "config", "effective", "acme"]).json(),
        serde_json::json!({})
    );

    // Help is not an error.
    let help = db.ok(&["demo", "--help"]).stdout;
    assert!(help.contains("must be a member"), "{help}");
}

#[test]
fn a_config_file_configures_the_commands() {
    let db = Db::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenancy.yaml");
    std::fs::write(
        &file,
        "tenancy:\n  overrides:\n    defaults:\n      theme: light\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    db.ok(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    assert_eq!(
        db.ok(&["--config", file, "--json", "config", "effective", "acme"])
            .json(),
        serde_json::json!({"theme": "light"})
    );
    std::fs::write(dir.path().join("bad.yaml"), "tenancy:\n  overides: {}\n").unwrap();
    let bad = dir.path().join("bad.yaml");
    db.fails(
        2,
        &["--config", bad.to_str().unwrap(), "tenants", "list"],
        "overides",
    );
}

/// `tenancy demo` as a user runs it: it serves, and Ctrl-C (SIGINT) stops it cleanly with status 0.
#[cfg(unix)]
#[test]
fn the_demo_binary_serves_and_stops_cleanly_on_ctrl_c() {
    use std::io::Read as _;
    use std::process::Stdio;

    let db = Db::new();
    let (mut child, addr, banner) = spawn_demo(&db.url, Stdio::piped());
    assert!(
        banner.contains("Admin token: token-from-the-environment"),
        "{banner}"
    );
    for slug in ["acme", "globex", "initech"] {
        assert!(banner.contains(slug), "{banner}");
    }
    let response = http(
        &addr,
        &format!(
            "GET /tenants/acme/api/whoami HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""resolved_by":"path""#), "{response}");
    // The custom domain line of the banner works as printed.
    assert!(
        banner.contains("curl -s -H 'Host: acme.test' http://"),
        "{banner}"
    );
    let response = http(
        &addr,
        "GET /api/whoami HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""resolved_by":"domain""#), "{response}");
    assert!(response.contains(r#""slug":"acme""#), "{response}");

    let status = stop_demo(&mut child, "-INT");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
}

#[test]
fn a_closed_stderr_takes_down_no_request_and_no_shutdown() {
    let db = Db::new();
    // Every log line and message goes to a pipe nobody reads any more: each write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let (mut child, addr, _) = spawn_demo(&db.url, writer.into());
    let body = r#"{"slug":"umbrella","name":"Umbrella"}"#;
    let created = http(
        &addr,
        &format!(
            "POST /admin/tenants HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: Bearer token-from-the-environment\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let served = http(
        &addr,
        &format!(
            "GET /tenants/umbrella/api/whoami HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(
        served.starts_with("HTTP/1.1 200"),
        "created and active: {served}"
    );
    let status = stop_demo(&mut child, "-TERM");
    assert!(status.success(), "{status}");
}

#[test]
fn recover_finishes_tenants_left_provisioning() {
    use tenancy::StoreConfig;
    use tenancy::core::{StatusChange, TenantStatus, TenantStore};
    use tenancy::store_sql::SqliteTenantStore;

    let db = Db::new();
    db.ok(&["tenants", "create", "--slug", "stuck", "--name", "Stuck"]);
    let id: tenancy::core::TenantId = db.ok(&["--json", "tenants", "show", "stuck"]).json()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Back to provisioning, as a create that stopped before its activation leaves a tenant.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SqliteTenantStore::connect(&StoreConfig::with_url(&db.url))
            .await
            .unwrap();
        for (from, to) in [
            (TenantStatus::Active, TenantStatus::Inactive),
            (TenantStatus::Inactive, TenantStatus::Provisioning),
        ] {
            let change = StatusChange {
                from,
                to,
                reason: None,
            };
            store.set_status(id, change).await.unwrap();
        }
        store.close().await;
    });
    assert_eq!(
        field(&db.ok(&["tenants", "show", "stuck"]).stdout, "status"),
        "provisioning"
    );
    // Other commands leave it be; `recover` with a threshold it is younger than does too.
    let young = db
        .ok(&["--json", "tenants", "recover", "--older-than", "1h"])
        .json();
    assert_eq!(young["recovered"], serde_json::json!([]));
    let run = db
        .ok(&["--json", "tenants", "recover", "--older-than", "0s"])
        .json();
    assert_eq!(run["recovered"][0]["slug"], "stuck");
    assert_eq!(run["failed"], serde_json::json!([]));
    assert_eq!(
        field(&db.ok(&["tenants", "show", "stuck"]).stdout, "status"),
        "active"
    );
    db.fails(
        2,
        &["tenants", "recover", "--older-than", "soon"],
        "older-than",
    );
}

#[test]
fn domains_commands_add_list_promote_and_remove() {
    let db = Db::new();
    db.ok(&["tenants", "create", "--slug", "acme", "--name", "Acme"]);
    db.ok(&["tenants", "create", "--slug", "globex", "--name", "Globex"]);

    let added = db.ok(&["domains", "add", "acme", "ACME.example"]);
    assert_eq!(added.stdout, "acme.example  primary\n");
    let added = db.ok(&["domains", "add", "acme", "münchen.example", "--primary"]);
    assert_eq!(
        added.stdout,
        "xn--mnchen-3ya.example (münchen.example)  primary\nacme.example\n"
    );
    let listed = db.ok(&["--json", "domains", "list", "acme"]).json();
    let names: Vec<_> = listed["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["domain"].as_str().unwrap(),
                d["primary"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("xn--mnchen-3ya.example", true), ("acme.example", false)]
    );

    // Another tenant's domain: a clear conflict, exit 1, nothing changed.
    db.fails(
        1,
        &["domains", "add", "globex", "acme.example"],
        "domain acme.example already belongs to another tenant",
    );
    db.fails(
        2,
        &["domains", "add", "globex", "localhost"],
        "at least two labels",
    );
    db.fails(
        2,
        &["domains", "add", "globex", "acme.example:443"],
        "no port",
    );
    db.fails(
        1,
        &["domains", "remove", "globex", "acme.example"],
        "has no domain acme.example",
    );
    assert_eq!(db.ok(&["domains", "list", "globex"]).stdout, "no domains\n");

    db.ok(&["domains", "primary", "acme", "acme.example"]);
    let removed = db.ok(&["domains", "remove", "acme", "acme.example"]);
    assert_eq!(
        removed.stdout,
        "xn--mnchen-3ya.example (münchen.example)  primary\n"
    );
}
