//! The Citus commands against the throwaway cluster (`cargo xtask citus start`):
//! `placement show|move|isolate`, `stats`, and `audit` on the coordinator.

mod common;

use std::path::Path;

use common::tenancy;
use serde_json::Value;
use sqlx::{Connection as _, Executor as _, PgConnection};
use tenancy_core::{TenantId, conformance};

/// The coordinator's superuser URL (`TENANCY_TEST_CITUS_URL`); the test fails without it.
fn citus_url() -> String {
    std::env::var("TENANCY_TEST_CITUS_URL").unwrap_or_else(|_| {
        panic!(
            "TENANCY_TEST_CITUS_URL is not set: start the Citus cluster with \
             `cargo xtask citus start` and export what `cargo xtask citus url` prints"
        )
    })
}

/// A configuration choosing tenant schemas, distributed on Citus, with one tenant migration.
fn config(dir: &Path) -> String {
    let migrations = dir.join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_notes.sql"),
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
    )
    .unwrap();
    let file = dir.join("tenancy.yaml");
    std::fs::write(
        &file,
        format!(
            "tenancy:\n  isolation:\n    strategy: schema\n    migrations_dir: {}\n    citus:\n      \
             enabled: true\n",
            migrations.display()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_owned()
}

fn node_of(show: &Value) -> Value {
    let tenants = show["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{show}");
    tenants[0]["node"].clone()
}

#[tokio::test]
async fn placement_show_move_and_stats_through_the_cli() {
    let url = citus_url();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let slug = format!("cli-{}", &TenantId::new().simple().to_string()[20..]);
    let (code, tenant, stderr) = tenancy(
        &url,
        &[
            "--config", &config, "tenants", "create", "--slug", &slug, "--name", "CLI",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let id: TenantId = tenant["id"].as_str().unwrap().parse().unwrap();

    // Where it lives: a distributed schema on one of the two workers.
    let (code, before, stderr) = tenancy(&url, &["--config", &config, "placement", "show", &slug]);
    assert_eq!(code, 0, "{stderr}");
    let nodes = before["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{before}");
    let tenant = &before["tenants"][0];
    assert_eq!(tenant["tenant"], id.to_string());
    assert_eq!(tenant["slug"], slug.as_str());
    assert_eq!(tenant["kind"], "schema");
    let from = node_of(&before);
    let to = nodes.iter().find(|n| **n != from).unwrap().clone();

    // Moved by node id; the placement shown changed.
    let to_id = to["id"].to_string();
    let (code, moved, stderr) = tenancy(
        &url,
        &[
            "--config",
            &config,
            "placement",
            "move",
            &slug,
            "--to",
            &to_id,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(moved["outcome"], "moved", "{moved}");
    assert_eq!(moved["from"], from);
    assert_eq!(moved["to"], to);
    let (code, after, stderr) = tenancy(&url, &["--config", &config, "placement", "show", &slug]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(node_of(&after), to, "the placement changed");
    // Again, by address: nothing to do.
    let address = format!("{}:{}", to["host"].as_str().unwrap(), to["port"]);
    let (code, again, stderr) = tenancy(
        &url,
        &[
            "--config",
            &config,
            "placement",
            "move",
            &id.to_string(),
            "--to",
            &address,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again["outcome"], "already_there", "{again}");
    // Bad input: an unknown node, a malformed one, a tenant schema to isolate.
    for (args, message) in [
        (
            vec!["placement", "move", &slug, "--to", "9999"],
            "no node 9999",
        ),
        (
            vec!["placement", "move", &slug, "--to", "worker"],
            "invalid node",
        ),
        (vec!["placement", "isolate", &slug], "row-level tenants"),
    ] {
        let mut all = vec!["--config", &config];
        all.extend(args);
        let (code, _, stderr) = tenancy(&url, &all);
        assert_eq!(code, 2, "{all:?}: {stderr}");
        assert!(stderr.contains(message), "{all:?}: {stderr}");
    }
    // Without the Citus configuration, the command says what is missing.
    let (code, _, stderr) = tenancy(&url, &["placement", "show"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("isolation.citus.enabled"), "{stderr}");

    // Queries routed to the tenant's schema show in its statistics.
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let schema = tenancy::isolation::tenant_schema(id);
    for _ in 0..5 {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".notes"
        )))
        .await
        .unwrap();
    }
    let (code, stats, stderr) = tenancy(&url, &["--config", &config, "stats", "--limit", "10000"]);
    assert_eq!(code, 0, "{stderr}");
    // One row per node that ran the tenant's queries (its provisioning ran on the node it
    // was on): the queries after the move are the new node's.
    let rows: Vec<&Value> = stats["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["tenant"] == id.to_string())
        .collect();
    let mine = rows
        .iter()
        .find(|s| s["node_id"] == to["id"])
        .unwrap_or_else(|| panic!("{id} served by node {} in {rows:?}", to["id"]));
    assert_eq!(mine["attribute"], schema.as_str());
    let queries = mine["queries"].as_i64().unwrap() + mine["queries_last_period"].as_i64().unwrap();
    let reads = mine["reads"].as_i64().unwrap() + mine["reads_last_period"].as_i64().unwrap();
    assert!(queries >= 5 && reads >= 5, "{mine}");

    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .await
    .unwrap();
}

#[tokio::test]
async fn audit_on_the_coordinator_covers_distributed_and_reference_tables() {
    let url = citus_url();
    let role = conformance::test_app_role();
    let schema = format!("audit_{}", &TenantId::new().simple().to_string()[20..]);
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let protect = |table: &str| {
        tenancy::isolation::protect_table_sql(
            &format!("{schema}.{table}"),
            "tenant_id",
            "app.tenant_id",
        )
        .unwrap()
    };
    let mut ddl = vec![
        format!("CREATE SCHEMA {schema}"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!(
            "CREATE TABLE {schema}.items (tenant_id uuid NOT NULL, id bigserial, \
             PRIMARY KEY (tenant_id, id))"
        ),
        format!("SELECT create_distributed_table('{schema}.items', 'tenant_id')"),
        format!("CREATE TABLE {schema}.labels (tenant_id uuid NOT NULL, label text)"),
        format!("SELECT create_reference_table('{schema}.labels')"),
        format!("CREATE TABLE {schema}.plans (code text PRIMARY KEY)"),
        format!("SELECT create_reference_table('{schema}.plans')"),
    ];
    ddl.extend(protect("items"));
    for sql in &ddl {
        conn.execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    // The distributed table is protected; the reference table holding tenant rows is not: the
    // audit names it, and only it (the reference table without a tenant column is not audited).
    let args = ["audit", "--role", &role, "--schema", &schema];
    let (code, report, stderr) = tenancy(&url, &args);
    assert_eq!(code, 1, "{stderr}");
    let tables: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tables.len(), 2, "{report}");
    let findings = report["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{report}");
    for finding in findings {
        let text = finding.as_str().unwrap();
        assert!(
            text.contains("labels"),
            "only the reference table is unprotected: {report}"
        );
    }

    // Protected too (Citus propagates ENABLE, FORCE and the policy to reference tables): clean.
    for sql in protect("labels") {
        conn.execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let (code, report, stderr) = tenancy(&url, &args);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["clean"], true);
    assert_eq!(report["tables"].as_array().unwrap().len(), 2);

    conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
}
