//! The PostgreSQL commands against the test server, in a database of their own: tenants created
//! with schema isolation, `schemas status`, `schemas migrate` (resumable), and `audit`.

mod common;

use std::path::Path;

use common::tenancy;
use sqlx::{Connection as _, Executor as _, PgConnection};
use tenancy_core::{TenantId, conformance};

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}{query}")
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).unwrap();
}

#[tokio::test]
async fn schemas_migrate_status_and_audit_on_postgres() {
    let admin_url = conformance::test_database_url();
    let app_role = conformance::test_app_role();
    let name = format!("tenancy_cli_{}", TenantId::new().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let url = with_database(&admin_url, &name);

    // Tenants created with schema isolation get their schemas.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenancy.yaml");
    std::fs::write(&config, "tenancy:\n  isolation:\n    strategy: schema\n").unwrap();
    let config = config.to_str().unwrap();
    for slug in ["acme", "globex", "initech"] {
        let (code, tenant, stderr) = tenancy(
            &url,
            &[
                "--config", config, "tenants", "create", "--slug", slug, "--name", slug,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(tenant["status"], "active");
    }

    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    write(
        &migrations,
        "0001_items.sql",
        "CREATE TABLE items (id int PRIMARY KEY, tenant_id uuid NOT NULL)",
    );
    write(
        &migrations,
        "0002_names.sql",
        "ALTER TABLE items ADD COLUMN name text",
    );
    let m = migrations.to_str().unwrap();

    let (code, status, stderr) = tenancy(&url, &["schemas", "status", "--dir", m]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status["latest"], 2);
    assert_eq!(status["behind"], 3);
    assert_eq!(status["schemas"].as_array().unwrap().len(), 3);

    let (code, report, stderr) = tenancy(
        &url,
        &["schemas", "migrate", "--dir", m, "--concurrency", "2"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["migrated"].as_array().unwrap().len(), 3);
    assert_eq!(report["complete"], true);
    let (_, status, _) = tenancy(&url, &["schemas", "status", "--dir", m]);
    assert_eq!(status["behind"], 0);

    // A failing file stops the run; nothing of it is kept; fixed, the run resumes.
    write(
        &migrations,
        "0003_broken.sql",
        "ALTER TABLE no_such_table ADD COLUMN x int",
    );
    let (code, report, stderr) = tenancy(
        &url,
        &["schemas", "migrate", "--dir", m, "--concurrency", "1"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["complete"], false);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
    assert_eq!(report["pending"].as_array().unwrap().len(), 2);
    assert!(stderr.contains("migration incomplete"), "{stderr}");
    let (_, status, _) = tenancy(&url, &["schemas", "status", "--dir", m]);
    assert_eq!(
        status["behind"], 3,
        "the failed file left every schema at version 2"
    );
    write(
        &migrations,
        "0003_broken.sql",
        "ALTER TABLE items ADD COLUMN x int",
    );
    let (code, report, stderr) = tenancy(&url, &["schemas", "migrate", "--dir", m]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["migrated"].as_array().unwrap().len(), 3);
    let (code, report, _) = tenancy(&url, &["schemas", "migrate", "--dir", m]);
    assert_eq!((code, report["already_current"].as_u64()), (0, Some(3)));
    assert_eq!(report["migrated"].as_array().unwrap().len(), 0);

    // The audit: a tenant table without row-level security is a finding (exit 1); protected, clean.
    let mut db = PgConnection::connect(&url).await.unwrap();
    db.execute(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA app; CREATE TABLE app.notes (id int, tenant_id uuid); \
         GRANT USAGE ON SCHEMA app TO {app_role}; GRANT SELECT ON app.notes TO {app_role}"
    )))
    .await
    .unwrap();
    let audit = ["audit", "--role", app_role.as_str(), "--schema", "app"];
    let (code, report, _) = tenancy(&url, &audit);
    assert_eq!(code, 1);
    assert_eq!(report["clean"], false);
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("app.notes: row level security is not enabled"),
        "{findings}"
    );
    db.execute(
        "ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY; \
         ALTER TABLE app.notes FORCE ROW LEVEL SECURITY; \
         CREATE POLICY tenant ON app.notes \
           USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid) \
           WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)",
    )
    .await
    .unwrap();
    let (code, report, stderr) = tenancy(&url, &audit);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["tables"], serde_json::json!(["app.notes"]));
    assert_eq!(report["clean"], true);

    // Auditing a schema that holds no tenant table proves nothing: it fails, saying so.
    let typo = ["audit", "--role", app_role.as_str(), "--schema", "apps"];
    let (code, report, stderr) = tenancy(&url, &typo);
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["tables"], serde_json::json!([]));
    assert!(
        stderr.contains("no table with the tenant column"),
        "{stderr}"
    );

    db.close().await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
}

/// A certificate authority of its own, which issued nothing the servers hold, as a PEM file.
fn another_ca() -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(params.self_signed(&key).unwrap().pem().as_bytes())
        .unwrap();
    file
}

#[tokio::test]
async fn commands_connect_with_the_tls_of_the_url_or_the_configuration() {
    let admin_url = conformance::test_database_url();
    let name = format!("tenancy_cli_tls_{}", TenantId::new().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let plain = with_database(&admin_url, &name);
    let verified = with_database(&conformance::verify_full(&admin_url), &name);

    // verify-full in the URL: the store commands and the PostgreSQL-only commands connect.
    let (code, tenant, stderr) = tenancy(
        &verified,
        &["tenants", "create", "--slug", "acme", "--name", "Acme"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tenant["status"], "active");
    let (code, page, stderr) = tenancy(&verified, &["tenants", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(page["items"][0]["slug"], "acme", "{page}");
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let m = migrations.to_str().unwrap();
    let (code, status, stderr) = tenancy(&verified, &["schemas", "status", "--dir", m]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status["latest"], 0);

    // A root certificate that did not issue the server's: both kinds of command fail, naming TLS.
    let other = another_ca();
    let wrong = format!(
        "{plain}?sslmode=verify-full&sslrootcert={}",
        other.path().display()
    );
    for args in [&["tenants", "list"][..], &["schemas", "status", "--dir", m]] {
        let (code, _, stderr) = tenancy(&wrong, args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("TLS with the PostgreSQL server")
                && stderr.contains("invalid peer certificate: UnknownIssuer"),
            "{args:?}: {stderr}"
        );
    }

    // The same, from the configuration file's store.tls over a URL that says nothing of TLS.
    let config = dir.path().join("tenancy.yaml");
    let store_tls = |root: &Path| {
        format!(
            "tenancy:\n  store:\n    tls:\n      mode: verify-full\n      root_cert: {}\n",
            root.display()
        )
    };
    std::fs::write(&config, store_tls(other.path())).unwrap();
    let config_arg = config.to_str().unwrap();
    let (code, _, stderr) = tenancy(&plain, &["--config", config_arg, "tenants", "list"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    std::fs::write(&config, store_tls(Path::new(&conformance::test_pg_ca()))).unwrap();
    let (code, page, stderr) = tenancy(&plain, &["--config", config_arg, "tenants", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(page["items"][0]["slug"], "acme", "{page}");

    // A role the server admits only over TLS, with sslmode=disable: refused, saying why.
    let role = conformance::test_tls_only_role();
    let (_, host) = plain.split_once('@').unwrap();
    let refused = format!("postgres://{role}:{role}@{host}?sslmode=disable");
    let (code, _, stderr) = tenancy(&refused, &["tenants", "list"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refused a connection without TLS (sslmode=disable)"),
        "{stderr}"
    );

    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .await
        .unwrap();
}
