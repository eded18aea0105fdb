//! Isolation on a Citus cluster (a coordinator and two workers, `cargo xtask citus start`), as the
//! fixture's non-superuser application role: row level on distributed tables, schema per tenant
//! on distributed schemas, tenants on different workers.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::conformance::test_app_role;
use tenancy_core::{IsolationStrategy, TenantId};
use tenancy_isolation_sql::{
    DeprovisionPolicy, Migration, Migrations, RowLevelStrategy, SchemaStrategy, TenantDatabase,
    TenantMigrator, protect_table_sql, tenant_schema,
};

/// The coordinator's superuser URL (`TENANCY_TEST_CITUS_URL`); the test fails without it.
fn citus_url() -> String {
    std::env::var("TENANCY_TEST_CITUS_URL").unwrap_or_else(|_| {
        panic!(
            "TENANCY_TEST_CITUS_URL is not set: start the Citus cluster with \
             `cargo xtask citus start` and export what `cargo xtask citus url` prints"
        )
    })
}

/// A superuser pool and an application-role pool on the coordinator.
async fn pools(app_connections: u32) -> (PgPool, PgPool) {
    let options = PgConnectOptions::from_str(&citus_url()).expect("valid TENANCY_TEST_CITUS_URL");
    let admin = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .expect("connect to the Citus coordinator");
    let role = test_app_role();
    let app = PgPoolOptions::new()
        .max_connections(app_connections)
        .connect_lazy_with(options.username(&role).password(&role));
    (admin, app)
}

/// Runs each statement on its own (Citus propagates DDL statement by statement).
async fn exec(pool: &PgPool, statements: &[String]) {
    for sql in statements {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn suffix() -> String {
    TenantId::new().simple().to_string()[20..].to_owned()
}

/// The worker port holding `tenant`'s shard of the distributed table `table`.
async fn shard_port(admin: &PgPool, table: &str, tenant: TenantId) -> i32 {
    sqlx::query_scalar(
        "SELECT nodeport FROM citus_shards \
         WHERE shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid)",
    )
    .bind(table)
    .bind(tenant.as_uuid())
    .fetch_one(admin)
    .await
    .expect("shard placement")
}

fn is_rls_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42501"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_isolation_holds_on_distributed_tables_across_workers() {
    let (admin, app) = pools(2).await;
    let s = suffix();
    let (items, notes, plans) = (
        format!("items_{s}"),
        format!("notes_{s}"),
        format!("plans_{s}"),
    );
    let role = test_app_role();
    let mut ddl = vec![
        format!(
            "CREATE TABLE {items} (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT \
             gen_random_uuid(), body text NOT NULL, plan text NOT NULL, PRIMARY KEY (tenant_id, id))"
        ),
        format!("SELECT create_distributed_table('{items}', 'tenant_id')"),
        format!(
            "CREATE TABLE {notes} (tenant_id uuid NOT NULL, id uuid NOT NULL DEFAULT \
             gen_random_uuid(), note text NOT NULL, PRIMARY KEY (tenant_id, id))"
        ),
        format!(
            "SELECT create_distributed_table('{notes}', 'tenant_id', colocate_with => '{items}')"
        ),
        format!("CREATE TABLE {plans} (code text PRIMARY KEY, name text NOT NULL)"),
        format!("SELECT create_reference_table('{plans}')"),
        format!("INSERT INTO {plans} VALUES ('free', 'Free'), ('pro', 'Pro')"),
    ];
    for table in [&items, &notes] {
        ddl.extend(protect_table_sql(table, "tenant_id", "app.tenant_id").unwrap());
        ddl.push(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO \"{role}\""
        ));
    }
    ddl.push(format!("GRANT SELECT ON {plans} TO \"{role}\""));
    exec(&admin, &ddl).await;

    // Co-located, and the lookup table is a reference table (a copy on every node).
    let kinds: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT table_name::text, citus_table_type, colocation_id FROM citus_tables \
         WHERE table_name::text = ANY($1) ORDER BY table_name::text",
    )
    .bind(vec![items.clone(), notes.clone(), plans.clone()])
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[0].1, "distributed");
    assert_eq!(kinds[1].1, "distributed");
    assert_eq!(kinds[0].2, kinds[1].2, "items and notes are co-located");
    assert_eq!(kinds[2].1, "reference");

    // Two tenants whose shards live on different workers.
    let a = TenantId::new();
    let a_port = shard_port(&admin, &items, a).await;
    let mut b = TenantId::new();
    let mut tries = 0;
    while shard_port(&admin, &items, b).await == a_port {
        b = TenantId::new();
        tries += 1;
        assert!(tries < 64, "no tenant landed on the second worker");
    }
    let b_port = shard_port(&admin, &items, b).await;
    let coordinator: i32 = sqlx::query_scalar("SELECT current_setting('port')::int")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_ne!(a_port, b_port);
    assert_ne!(a_port, coordinator, "shards live on the workers");
    assert_ne!(b_port, coordinator, "shards live on the workers");
    exec(
        &admin,
        &[
            format!(
                "INSERT INTO {items} (tenant_id, body, plan) VALUES ('{a}', 'a1', 'free'), \
                 ('{b}', 'b1', 'pro')"
            ),
            format!(
                "INSERT INTO {notes} (tenant_id, note) VALUES ('{a}', 'a note'), ('{b}', 'b note')"
            ),
        ],
    )
    .await;

    let tenants =
        TenantDatabase::new(app.clone(), Arc::new(RowLevelStrategy::default())).on_citus(true);
    let q = |sql: String| AssertSqlSafe(sql);

    // A sees its rows only, in a multi-shard query, a co-located join and a reference-table join.
    let mut tx = tenants.begin(a).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(q(format!(
        "SELECT i.body, n.note, p.name FROM {items} i JOIN {notes} n USING (tenant_id) \
         JOIN {plans} p ON p.code = i.plan ORDER BY 1"
    )))
    .fetch_all(&mut **tx)
    .await
    .unwrap();
    assert_eq!(rows, [("a1".into(), "a note".into(), "Free".into())]);
    // Asking for B's rows by its key (routed to B's worker) finds none, changes none.
    let n: i64 = sqlx::query_scalar(q(format!(
        "SELECT count(*) FROM {items} WHERE tenant_id = $1"
    )))
    .bind(b.as_uuid())
    .fetch_one(&mut **tx)
    .await
    .unwrap();
    assert_eq!(n, 0);
    for sql in [
        format!("UPDATE {items} SET body = 'stolen' WHERE tenant_id = $1"),
        format!("DELETE FROM {notes} WHERE tenant_id = $1"),
    ] {
        let done = sqlx::query(q(sql))
            .bind(b.as_uuid())
            .execute(&mut **tx)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 0);
    }
    tx.commit().await.unwrap();
    // Writing a row for B as A is refused by the policy on B's worker.
    let mut tx = tenants.begin(a).await.unwrap();
    let err = sqlx::query(q(format!(
        "INSERT INTO {items} (tenant_id, body, plan) VALUES ($1, 'planted', 'free')"
    )))
    .bind(b.as_uuid())
    .execute(&mut **tx)
    .await
    .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();

    // B sees its own.
    let mut tx = tenants.begin(b).await.unwrap();
    let bodies: Vec<String> = sqlx::query_scalar(q(format!("SELECT body FROM {items}")))
        .fetch_all(&mut **tx)
        .await
        .unwrap();
    assert_eq!(bodies, ["b1"]);
    tx.commit().await.unwrap();

    // No tenant, no rows: a plain transaction of the application role.
    let mut plain = app.begin().await.unwrap();
    let n: i64 = sqlx::query_scalar(q(format!("SELECT count(*) FROM {items}")))
        .fetch_one(&mut *plain)
        .await
        .unwrap();
    assert_eq!(n, 0);
    plain.rollback().await.unwrap();

    // Why the Citus path exists: a set_config call is evaluated on the coordinator only, so the
    // workers' policies see no tenant, even for A's own key.
    let mut plain = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(a.to_string())
        .execute(&mut *plain)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(q(format!(
        "SELECT count(*) FROM {items} WHERE tenant_id = $1"
    )))
    .bind(a.as_uuid())
    .fetch_one(&mut *plain)
    .await
    .unwrap();
    assert_eq!(n, 0);
    plain.rollback().await.unwrap();

    exec(&admin, &[format!("DROP TABLE {notes}, {items}, {plans}")]).await;
}

fn notes_migrations() -> Migrations {
    Migrations::new(vec![
        Migration::new(
            1,
            "notes",
            "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
        )
        .unwrap(),
    ])
    .unwrap()
}

fn distributed_schemas(admin: &PgPool) -> Arc<SchemaStrategy> {
    let migrator = TenantMigrator::new(admin.clone(), notes_migrations())
        .grant_to(&test_app_role())
        .unwrap();
    Arc::new(
        SchemaStrategy::new(admin.clone(), migrator, DeprovisionPolicy::Drop)
            .distributed_on_citus(true),
    )
}

/// The worker port of each given tenant schema, from `citus_schemas` and `citus_shards`.
async fn schema_ports(admin: &PgPool, tenants: &[TenantId]) -> Vec<i32> {
    let mut ports = Vec::new();
    for tenant in tenants {
        let port: i32 = sqlx::query_scalar(
            "SELECT DISTINCT sh.nodeport FROM citus_schemas cs \
             JOIN citus_shards sh ON sh.colocation_id = cs.colocation_id \
             WHERE cs.schema_name::text = $1",
        )
        .bind(tenant_schema(*tenant))
        .fetch_one(admin)
        .await
        .unwrap_or_else(|e| panic!("placement of {}: {e}", tenant_schema(*tenant)));
        ports.push(port);
    }
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_per_tenant_on_distributed_schemas_across_workers() {
    let (admin, app) = pools(1).await;
    let strategy = distributed_schemas(&admin);
    let tenants = TenantDatabase::new(app.clone(), strategy.clone());

    // Provision until two tenants sit on different workers (Citus places each new schema).
    let a = TenantId::new();
    strategy.provision(a).await.unwrap();
    strategy.provision(a).await.unwrap(); // idempotent
    let a_port = schema_ports(&admin, &[a]).await[0];
    let mut extra = Vec::new();
    let b = loop {
        let b = TenantId::new();
        strategy.provision(b).await.unwrap();
        if schema_ports(&admin, &[b]).await[0] != a_port {
            break b;
        }
        extra.push(b);
        assert!(
            extra.len() < 8,
            "no tenant schema landed on the second worker"
        );
    };
    for (tenant, body) in [(a, "a note"), (b, "b note")] {
        let mut tx = tenants.begin(tenant).await.unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES ($1)")
            .bind(body)
            .execute(&mut **tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    for (tenant, other, body) in [(a, b, "a note"), (b, a, "b note")] {
        let mut tx = tenants.begin(tenant).await.unwrap();
        let notes: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
            .fetch_all(&mut **tx)
            .await
            .unwrap();
        assert_eq!(notes, [body]);
        // The other tenant's table is not on this tenant's path.
        let visible: bool = sqlx::query_scalar(
            "SELECT pg_table_is_visible(c.oid) FROM pg_class c JOIN pg_namespace n \
             ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'notes'",
        )
        .bind(tenant_schema(other))
        .fetch_one(&mut **tx)
        .await
        .unwrap();
        assert!(!visible);
        tx.commit().await.unwrap();
    }
    // The notes tables are the schemas' distributed (single-shard) tables.
    let kind: String = sqlx::query_scalar(
        "SELECT citus_table_type FROM citus_tables WHERE table_name = $1::regclass",
    )
    .bind(format!("{}.notes", tenant_schema(a)))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(kind, "schema");
    // No tenant: the application role's default path has no `notes`.
    let err = sqlx::query("SELECT count(*) FROM notes")
        .execute(&app)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01")),
        "{err}"
    );
    for tenant in [a, b].into_iter().chain(extra) {
        strategy.deprovision(tenant).await.unwrap();
    }
}

/// How many tenant schemas the spread test provisions.
const SPREAD_TENANTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_tenant_schemas_spread_over_both_workers() {
    let (admin, _app) = pools(1).await;
    let strategy = distributed_schemas(&admin);
    let tenants: Vec<TenantId> = (0..SPREAD_TENANTS).map(|_| TenantId::new()).collect();
    for tenant in &tenants {
        strategy.provision(*tenant).await.unwrap();
    }
    let ports = schema_ports(&admin, &tenants).await;
    let workers: Vec<i32> = sqlx::query_scalar(
        "SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(workers.len(), 2, "{workers:?}");
    for worker in &workers {
        let here = ports.iter().filter(|p| *p == worker).count();
        // Citus places each new schema on the node with the fewest; allow for other tests'
        // schemas on the same cluster, but each worker must hold a fair share.
        assert!(
            here >= SPREAD_TENANTS / 4,
            "worker {worker} holds {here} of {SPREAD_TENANTS} tenant schemas: {ports:?}"
        );
    }
    assert_eq!(ports.iter().filter(|p| !workers.contains(p)).count(), 0);
    for tenant in tenants {
        strategy.deprovision(tenant).await.unwrap();
    }
}
