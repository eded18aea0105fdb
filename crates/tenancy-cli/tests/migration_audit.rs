//! `tenancy audit --migrations DIR`, the static audit of migration files, through the binary: the
//! fixtures under `tests/fixtures/migrations` (a clean set, one set per defect, a syntax error),
//! bad input, the project's own row-level-security statements, and the same findings as the live
//! audit once the fixtures have run on PostgreSQL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sqlx::{Connection as _, Executor as _, PgConnection};
use tenancy_core::{TenantId, conformance};

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }
}

/// Runs `tenancy` with `args`; `TENANCY_DATABASE_URL` points at a server that does not exist,
/// so a run that tried to connect would fail.
fn tenancy(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(args)
        .env(
            "TENANCY_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/nothing",
        )
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    run
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrations")
        .join(name)
        .display()
        .to_string()
}

/// The findings of a JSON report as (kind, file name, line).
fn findings(report: &Value) -> Vec<(String, String, u64)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = Path::new(f["file"].as_str().unwrap());
            (
                f["kind"].as_str().unwrap().to_owned(),
                file.file_name().unwrap().to_string_lossy().into_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_clean_set_passes_and_needs_no_database() {
    let dir = fixture("clean");
    let run = tenancy(&["--json", "audit", "--migrations", &dir]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["clean"], true);
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["tables"], serde_json::json!(["notes", "projects"]));
    let files: Vec<String> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = Path::new(f.as_str().unwrap());
            file.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(
        files,
        ["0001_notes.sql", "0002_row_level_security.up.sql"],
        "sqlx's files, in its order: no .down.sql, no other file"
    );

    let human = tenancy(&["audit", "--migrations", &dir]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human
            .stdout
            .contains("2 migration files, 2 tenant tables, 0 findings"),
        "{}",
        human.stdout
    );
}

#[test]
fn each_defect_is_found_with_its_file_and_line() {
    /// A fixture and its findings: kind, file name, line.
    type Case = (&'static str, &'static [(&'static str, &'static str, u64)]);
    let cases: &[Case] = &[
        (
            "no_rls",
            &[
                ("rls_disabled", "0001_notes.sql", 4),
                ("rls_not_forced", "0001_notes.sql", 4),
                ("no_policy", "0001_notes.sql", 4),
            ],
        ),
        ("not_forced", &[("rls_not_forced", "0001_notes.sql", 1)]),
        ("no_with_check", &[("no_with_check", "0001_notes.sql", 6)]),
        (
            "fail_open_true",
            &[("fail_open_policy", "0001_notes.sql", 8)],
        ),
        (
            "fail_open_null_check",
            &[("fail_open_policy", "0001_notes.sql", 5)],
        ),
        (
            "fail_open_coalesce",
            &[("fail_open_policy", "0001_notes.sql", 5)],
        ),
        (
            "added_column",
            &[
                ("rls_disabled", "0002_notes_tenant.sql", 2),
                ("rls_not_forced", "0002_notes_tenant.sql", 2),
                ("no_policy", "0002_notes_tenant.sql", 2),
            ],
        ),
        (
            "disabled_later",
            &[("rls_disabled", "0002_bulk_load.sql", 2)],
        ),
        (
            "no_force_later",
            &[("rls_not_forced", "0002_owner_reads.sql", 2)],
        ),
        ("dropped_policy", &[("no_policy", "0002_rework.sql", 2)]),
    ];
    for (name, expected) in cases {
        let run = tenancy(&["--json", "audit", "--migrations", &fixture(name)]);
        assert_eq!(run.code, 1, "{name}: {}{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(report["clean"], false, "{name}");
        assert_eq!(report["tables"], serde_json::json!(["notes"]), "{name}");
        let expected: Vec<(String, String, u64)> = expected
            .iter()
            .map(|(k, f, l)| ((*k).to_owned(), (*f).to_owned(), *l))
            .collect();
        assert_eq!(findings(&report), expected, "{name}");
        assert!(
            run.stderr
                .contains(&format!("migration audit: {} findings", expected.len())),
            "{name}: {}",
            run.stderr
        );
    }

    // Fail-open findings name the policy and show its expression.
    let report = tenancy(&[
        "--json",
        "audit",
        "--migrations",
        &fixture("fail_open_coalesce"),
    ])
    .json();
    let finding = &report["findings"][0];
    assert_eq!(finding["table"], "notes");
    assert_eq!(finding["policy"], "tenant_isolation");
    assert!(
        finding["expression"]
            .as_str()
            .unwrap()
            .contains("COALESCE("),
        "{finding}"
    );

    // The human format: one `file:line: finding` line each.
    let human = tenancy(&["audit", "--migrations", &fixture("no_rls")]);
    assert_eq!(human.code, 1);
    assert!(
        human.stdout.contains(&format!(
            "{}:4: notes: row level security is not enabled",
            Path::new(&fixture("no_rls"))
                .join("0001_notes.sql")
                .display()
        )),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("1 tenant tables, 3 findings"));
}

#[test]
fn syntax_errors_and_unreadable_input_are_clear_errors() {
    // Exit status 2, the file and line, nothing on stdout.
    let fails = |args: &[&str], says: &str| {
        let run = tenancy(args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
    };
    let broken = Path::new(&fixture("syntax_error")).join("0002_broken.sql");
    fails(
        &["--json", "audit", "--migrations", &fixture("syntax_error")],
        &format!("{}:4: syntax error at or near \"USNIG\"", broken.display()),
    );
    fails(
        &["audit", "--migrations", &fixture("no_such_fixture")],
        "cannot read the migrations directory",
    );
    let empty = tempfile::tempdir().unwrap();
    let empty_dir = empty.path().to_str().unwrap();
    fails(&["audit", "--migrations", empty_dir], "no migration files");
    std::fs::write(empty.path().join("first_notes.sql"), "SELECT 1").unwrap();
    fails(
        &["audit", "--migrations", empty_dir],
        "first_notes.sql: a migration file is named <version>_<name>.sql",
    );
    std::fs::remove_file(empty.path().join("first_notes.sql")).unwrap();
    std::fs::write(empty.path().join("1_a.sql"), "SELECT 1").unwrap();
    std::fs::write(empty.path().join("01_b.sql"), "SELECT 2").unwrap();
    fails(&["audit", "--migrations", empty_dir], "both have version 1");
    fails(
        &["audit", "--migrations", &fixture("clean"), "--role", "app"],
        "cannot be used with",
    );
}

#[test]
fn the_configured_tenant_column_and_setting_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenancy.yaml");
    std::fs::write(
        &config,
        "tenancy:\n  isolation:\n    tenant_column: org_id\n    tenant_setting: app.org\n",
    )
    .unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("1_orders.sql"),
        "CREATE TABLE orders (id int, org_id uuid NOT NULL);\n\
         ALTER TABLE orders ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE orders FORCE ROW LEVEL SECURITY;\n\
         CREATE POLICY org ON orders\n\
           USING (org_id = nullif(current_setting('app.org', true), '')::uuid)\n\
           WITH CHECK (org_id = nullif(current_setting('app.tenant_id', true), '')::uuid);\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = tenancy(&[
        "--json",
        "--config",
        config,
        "audit",
        "--migrations",
        migrations.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["tables"], serde_json::json!(["orders"]));
    assert_eq!(
        findings(&report),
        [("fail_open_policy".to_owned(), "1_orders.sql".to_owned(), 4)],
        "the WITH CHECK compares with another setting than app.org"
    );

    // The clean fixture has no `org_id` table: an audit of nothing fails, saying so.
    let run = tenancy(&[
        "--config",
        config,
        "audit",
        "--migrations",
        &fixture("clean"),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("no table with the tenant column `org_id`"),
        "{}",
        run.stderr
    );
}

/// Directories named `migrations` in the workspace (outside the build output and these tests'
/// fixtures).
fn workspace_migration_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if !path.is_dir() || [".git", "target", "fixtures"].contains(&name.to_str().unwrap_or("")) {
            continue;
        }
        if name == "migrations" {
            found.push(path);
        } else {
            workspace_migration_dirs(&path, found);
        }
    }
}

#[test]
fn the_projects_own_row_level_security_passes() {
    // The statements `protect_table_sql` writes, as a migration after the table's.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_notes.sql"),
        "CREATE TABLE public.notes (tenant_id uuid NOT NULL, body text NOT NULL);\n",
    )
    .unwrap();
    let protect =
        tenancy::isolation::protect_table_sql("public.notes", "tenant_id", "app.tenant_id")
            .unwrap()
            .join(";\n");
    std::fs::write(dir.path().join("0002_protect.sql"), format!("{protect};\n")).unwrap();
    let run = tenancy(&[
        "--json",
        "audit",
        "--migrations",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["tables"], serde_json::json!(["public.notes"]));

    // Every migration directory of the project: no finding (a set without tenant tables, for
    // schema per tenant, has nothing to find).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = Vec::new();
    workspace_migration_dirs(&root, &mut dirs);
    for dir in dirs {
        let run = tenancy(&["--json", "audit", "--migrations", dir.to_str().unwrap()]);
        let report = run.json();
        assert_eq!(
            report["findings"],
            serde_json::json!([]),
            "{}: {}",
            dir.display(),
            run.stderr
        );
    }
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}{query}")
}

/// A finding's text without what the two audits write differently: the schema the live audit
/// names (the fixtures use `public`) and the expression (PostgreSQL's deparser against
/// libpg_query's).
fn comparable(message: &str) -> String {
    let message = message.strip_prefix("public.").unwrap_or(message);
    match message.split_once(" can fail open: ") {
        Some((head, _)) => format!("{head} can fail open"),
        None => message.to_owned(),
    }
}

#[tokio::test]
async fn the_live_audit_finds_the_same_once_the_fixtures_have_run() {
    let admin_url = conformance::test_database_url();
    let app_role = conformance::test_app_role();
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrations");
    let mut fixtures: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "syntax_error")
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "{fixtures:?}");
    for name in fixtures {
        let database = format!("tenancy_static_{}", TenantId::new().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .await
            .unwrap();
        let url = with_database(&admin_url, &database);
        // Applied by sqlx's own migrator: its order, its choice of files.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(root.join(&name))
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        pool.execute(sqlx::AssertSqlSafe(format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{app_role}\""
        )))
        .await
        .unwrap();
        pool.close().await;

        let (live_code, live, stderr) =
            common::tenancy(&url, &["audit", "--role", &app_role, "--schema", "public"]);
        let static_run = tenancy(&["--json", "audit", "--migrations", &fixture(&name)]);
        assert_eq!(live_code, static_run.code, "{name}: {live} {stderr}");
        let mut live: Vec<String> = live["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| comparable(f.as_str().unwrap()))
            .collect();
        let mut found: Vec<String> = static_run.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| comparable(f["message"].as_str().unwrap()))
            .collect();
        live.sort();
        found.sort();
        assert_eq!(found, live, "{name}: the static and the live audit differ");

        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {database} WITH (FORCE)"
            )))
            .await
            .unwrap();
    }
}
