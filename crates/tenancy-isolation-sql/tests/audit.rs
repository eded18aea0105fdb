//! The row-level-security audit: one test per finding, and the clean case.

mod common;

use common::TestDb;
use tenancy_core::TenantId;
use tenancy_isolation_sql::{AuditFinding, IsolationConfig, RlsAudit, audit_row_level_security};

const SAFE: &str = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid";

/// A database with `public.t` (tenant column, RLS as `setup` leaves it), SELECT granted to the app.
async fn db_with(prefix: &str, setup: &str) -> TestDb {
    let db = TestDb::new(prefix).await;
    db.exec("CREATE TABLE t (id int, tenant_id uuid NOT NULL); CREATE TABLE other (id int)")
        .await;
    db.exec(setup).await;
    db.exec(&format!(
        "GRANT SELECT ON t, other TO \"{}\"",
        db.app_role()
    ))
    .await;
    db
}

async fn findings(db: &TestDb) -> Vec<AuditFinding> {
    RlsAudit::new().run(&db.app).await.unwrap().findings
}

fn table() -> String {
    "public.t".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_schema_is_clean() {
    let db = db_with(
        "audclean",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE})"
        ),
    )
    .await;
    let report = audit_row_level_security(&db.app, &IsolationConfig::default())
        .await
        .unwrap();
    assert_eq!(report.role, db.app_role());
    assert_eq!(
        report.tables,
        [table()],
        "only tables with the tenant column"
    );
    assert!(report.is_clean(), "{:?}", report.findings);
    assert!(report.into_result().is_ok());
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_not_enabled_is_flagged() {
    let db = db_with(
        "auddis",
        &format!(
            "ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE})"
        ),
    )
    .await;
    assert_eq!(
        findings(&db).await,
        [AuditFinding::RlsDisabled { table: table() }]
    );
    let err = RlsAudit::new()
        .run(&db.app)
        .await
        .unwrap()
        .into_result()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("public.t: row level security is not enabled")
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_not_forced_is_flagged() {
    let db = db_with(
        "audforce",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE})"
        ),
    )
    .await;
    assert_eq!(
        findings(&db).await,
        [AuditFinding::RlsNotForced { table: table() }]
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_policy_is_flagged() {
    let db = db_with(
        "audnopol",
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY",
    )
    .await;
    assert_eq!(
        findings(&db).await,
        [AuditFinding::NoPolicy { table: table() }]
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_read_through_select_policies_alone_needs_no_with_check() {
    // PostgreSQL refuses WITH CHECK on a FOR SELECT policy: asking for one would be unanswerable.
    let db = db_with(
        "audselect",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t FOR SELECT USING ({SAFE})"
        ),
    )
    .await;
    assert_eq!(findings(&db).await, []);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_with_check_is_flagged() {
    let db = db_with(
        "audcheck",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE})"
        ),
    )
    .await;
    assert_eq!(
        findings(&db).await,
        [AuditFinding::NoWithCheck { table: table() }]
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_using_true_policy_is_flagged_as_fail_open() {
    let db = db_with(
        "audtrue",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE}); \
             CREATE POLICY open ON t USING (true)"
        ),
    )
    .await;
    assert_eq!(
        findings(&db).await,
        [AuditFinding::FailOpenPolicy {
            table: table(),
            policy: "open".into(),
            expression: "true".into()
        }]
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_current_setting_policy_is_flagged_as_fail_open() {
    let bare = "tenant_id = current_setting('app.tenant_id')::uuid";
    let db = db_with(
        "audbare",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({bare}) WITH CHECK ({bare})"
        ),
    )
    .await;
    let found = findings(&db).await;
    assert_eq!(found.len(), 2, "USING and WITH CHECK: {found:?}");
    for finding in found {
        let AuditFinding::FailOpenPolicy {
            table: t,
            policy,
            expression,
        } = finding
        else {
            panic!("unexpected finding {finding:?}");
        };
        assert_eq!((t.as_str(), policy.as_str()), ("public.t", "p"));
        assert!(
            expression.contains("current_setting('app.tenant_id'::text)"),
            "{expression}"
        );
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_that_mention_the_setting_but_open_without_it_are_flagged() {
    // Each mentions the column and a NULLIF-wrapped setting, yet shows rows with no tenant set
    // (or other tenants' rows); the last one is closed (an AND with the tenant comparison).
    let open = [
        format!("({SAFE}) IS NOT FALSE"),
        "tenant_id <> nullif(current_setting('app.tenant_id', true), '')::uuid".to_owned(),
        "tenant_id = coalesce(nullif(current_setting('app.tenant_id', true), '')::uuid, tenant_id)"
            .to_owned(),
        format!("NOT ({SAFE}) IS NULL"),
    ];
    let mut setup = String::from(
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
         ALTER TABLE t ADD COLUMN deleted boolean NOT NULL DEFAULT false;",
    );
    for (i, expression) in open.iter().enumerate() {
        setup.push_str(&format!(
            "CREATE POLICY open{i} ON t USING ({expression}) WITH CHECK ({SAFE});"
        ));
    }
    setup.push_str(&format!(
        "CREATE POLICY closed ON t USING ({SAFE} AND NOT deleted) WITH CHECK (NOT deleted AND {SAFE})"
    ));
    let db = db_with("audopen", &setup).await;
    let mut flagged: Vec<String> = findings(&db)
        .await
        .into_iter()
        .map(|finding| match finding {
            AuditFinding::FailOpenPolicy { policy, .. } => policy,
            other => panic!("unexpected finding {other:?}"),
        })
        .collect();
    flagged.sort();
    assert_eq!(flagged, ["open0", "open1", "open2", "open3"]);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_that_read_tenant_rows_past_the_policies_are_flagged() {
    // The table is protected, but the tests' admin is a superuser: a view it owns reads the
    // table with its owner's rights (no policy applies) unless it is security_invoker, and a
    // materialized view holds every tenant's rows with no row level security at all.
    let db = db_with(
        "audview",
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE}); \
             INSERT INTO t VALUES (1, gen_random_uuid()); \
             CREATE VIEW open_view AS SELECT * FROM t; \
             CREATE VIEW invoker_view WITH (security_invoker = on) AS SELECT * FROM t; \
             CREATE MATERIALIZED VIEW open_matview AS SELECT * FROM t; \
             CREATE MATERIALIZED VIEW hidden_matview AS SELECT * FROM t"
        ),
    )
    .await;
    db.exec(&format!(
        "GRANT SELECT ON open_view, invoker_view, open_matview TO \"{}\"",
        db.app_role()
    ))
    .await;
    // What the findings are about: with no tenant set, the app role reads a row through them.
    let leaked: i64 = sqlx::query_scalar("SELECT count(*) FROM open_view")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert_eq!(leaked, 1);
    let found = findings(&db).await;
    assert_eq!(
        found,
        [
            AuditFinding::ViewBypassesRls {
                view: "public.open_matview".into()
            },
            AuditFinding::ViewBypassesRls {
                view: "public.open_view".into()
            },
        ]
    );
    db.drop().await;
}

/// A cluster-wide role with a unique name; dropped by the caller.
async fn unique_role(db: &TestDb, attributes: &str) -> String {
    let role = format!("tiso_role_{}", &TenantId::new().simple().to_string()[16..]);
    db.exec(&format!("CREATE ROLE \"{role}\" NOLOGIN {attributes}"))
        .await;
    role
}

async fn drop_role(role: &str) {
    let admin = sqlx::PgPool::connect(&tenancy_core::conformance::test_database_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP ROLE IF EXISTS \"{role}\""
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

async fn clean_db(prefix: &str) -> TestDb {
    db_with(
        prefix,
        &format!(
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY; \
             CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE})"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superuser_application_role_is_flagged() {
    let db = clean_db("audsuper").await;
    // The fixture's superuser connection audits itself.
    let report = RlsAudit::new().run(&db.admin).await.unwrap();
    assert!(
        report.findings.contains(&AuditFinding::RoleIsSuperuser {
            role: report.role.clone()
        }),
        "{:?}",
        report.findings
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bypassrls_application_role_is_flagged() {
    let db = clean_db("audbypass").await;
    let role = unique_role(&db, "BYPASSRLS").await;
    let found = RlsAudit::new()
        .role(&role)
        .unwrap()
        .run(&db.app)
        .await
        .unwrap()
        .findings;
    assert_eq!(
        found,
        [AuditFinding::RoleBypassesRls { role: role.clone() }]
    );
    db.drop().await;
    drop_role(&role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_role_owning_a_tenant_table_is_flagged() {
    let db = clean_db("audowner").await;
    let role = unique_role(&db, "").await;
    db.exec(&format!("ALTER TABLE t OWNER TO \"{role}\"")).await;
    let found = RlsAudit::new()
        .role(&role)
        .unwrap()
        .run(&db.app)
        .await
        .unwrap()
        .findings;
    assert_eq!(
        found,
        [AuditFinding::RoleOwnsTable {
            role: role.clone(),
            table: table()
        }]
    );
    db.drop().await;
    drop_role(&role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_role_is_a_configuration_error() {
    let db = clean_db("audnorole").await;
    let err = RlsAudit::new()
        .role("tiso_no_such_role")
        .unwrap()
        .run(&db.app)
        .await
        .unwrap_err();
    assert!(
        matches!(err, tenancy_core::TenantError::Configuration(_)),
        "{err:?}"
    );
    db.drop().await;
}
