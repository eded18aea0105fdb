//! Isolation benchmarks against the PostgreSQL of `TENANCY_TEST_DATABASE_URL` (as `cargo xtask
//! bench` exports it), each with a baseline measured in the same run:
//!
//! 1. provisioning 1,000 tenant schemas with a 10-table migration (baseline: the same DDL run bare,
//!    one transaction per schema, on 200 schemas);
//! 2. a no-op migration run over those 1,000 schemas (target < 2 s; baseline: the catalog query
//!    alone);
//! 3. a row-level tenant transaction plus one indexed select, against a plain transaction with the
//!    same select and an explicit `WHERE tenant_id = $1` (target ratio <= 1.2).
//!
//! Set `TENANCY_BENCH_SCHEMAS` to change the 1,000.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::conformance::{test_app_role, test_database_url};
use tenancy_core::{IsolationStrategy, TenantId};
use tenancy_isolation_sql::{
    DeprovisionPolicy, Migration, Migrations, RowLevelStrategy, SchemaStrategy, TenantDatabase,
    TenantMigrator, protect_table_sql,
};

fn ten_tables() -> String {
    (1..=10)
        .map(|i| {
            format!(
                "CREATE TABLE t{i} (id bigint PRIMARY KEY, ref_id bigint, body text, \
                 created_at timestamptz NOT NULL DEFAULT now()); CREATE INDEX t{i}_ref ON t{i} (ref_id);"
            )
        })
        .collect()
}

async fn exec(pool: &PgPool, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let schemas: usize = std::env::var("TENANCY_BENCH_SCHEMAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = PgConnectOptions::from_str(&test_database_url()).expect("valid URL");
    let name = format!("tiso_bench_{}", &TenantId::new().simple().to_string()[16..]);
    let maintenance = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server.clone())
        .await
        .unwrap();
    exec(&maintenance, format!("CREATE DATABASE \"{name}\"")).await;
    let owner = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(server.clone().database(&name))
        .await
        .unwrap();

    println!("isolation benches (database {name}, {schemas} tenant schemas)");
    schema_benches(&owner, schemas).await;
    let role = test_app_role();
    let app = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            server
                .clone()
                .username(&role)
                .password(&role)
                .database(&name),
        )
        .await
        .unwrap();
    row_level_bench(&owner, &app, &role).await;

    app.close().await;
    owner.close().await;
    exec(
        &maintenance,
        format!("DROP DATABASE \"{name}\" WITH (FORCE)"),
    )
    .await;
}

async fn schema_benches(owner: &PgPool, schemas: usize) {
    let ddl = ten_tables();
    // Baseline: the bare DDL, one transaction per schema, 200 schemas, concurrency 2.
    let baseline_n = 200.min(schemas);
    let start = Instant::now();
    futures_util::stream::iter(0..baseline_n)
        .for_each_concurrent(2, |i| {
            let sql = format!(
                "BEGIN; CREATE SCHEMA bare_{i}; SET LOCAL search_path = bare_{i}; {ddl} COMMIT;"
            );
            async move { exec(owner, sql).await }
        })
        .await;
    let bare = start.elapsed();

    let migrations =
        Migrations::new(vec![Migration::new(1, "ten_tables", ddl.clone()).unwrap()]).unwrap();
    let migrator = TenantMigrator::new(owner.clone(), migrations.clone());
    let strategy = Arc::new(SchemaStrategy::new(
        owner.clone(),
        migrator,
        DeprovisionPolicy::Drop,
    ));
    let start = Instant::now();
    futures_util::stream::iter((0..schemas).map(|_| TenantId::new()))
        .for_each_concurrent(2, |t| {
            let strategy = strategy.clone();
            async move { strategy.provision(t).await.unwrap() }
        })
        .await;
    let provision = start.elapsed();
    let per_bare = secs(bare) / baseline_n as f64 * 1e3;
    let per_tenant = secs(provision) / schemas as f64 * 1e3;
    println!(
        "provision {schemas} schemas x 10 tables: {:.1} s ({per_tenant:.1} ms/schema); bare DDL baseline \
         {:.1} ms/schema over {baseline_n}; ratio {:.2}",
        secs(provision),
        per_bare,
        per_tenant / per_bare
    );

    // No-op migration run, 5 times; baseline: the catalog query alone.
    let migrator = TenantMigrator::new(owner.clone(), migrations);
    let mut runs = Vec::new();
    let mut catalog = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let versions = migrator.schema_versions().await.unwrap();
        catalog.push(start.elapsed());
        assert_eq!(versions.len(), schemas);
        let start = Instant::now();
        let report = migrator.run(|_| {}).await.unwrap();
        runs.push(start.elapsed());
        assert_eq!(report.already_current, schemas);
        assert_eq!(report.tenant_transactions, 0);
    }
    runs.sort();
    catalog.sort();
    println!(
        "no-op migration run over {schemas} schemas: median {:.3} s (max {:.3} s; target < 2 s); \
         catalog query alone: median {:.3} s",
        secs(runs[2]),
        secs(runs[4]),
        secs(catalog[2])
    );
}

async fn row_level_bench(owner: &PgPool, app: &PgPool, role: &str) {
    // Two identical tables, 100 tenants x 1,000 rows, index (tenant_id, id); only one under RLS.
    for table in ["items_rls", "items_plain"] {
        exec(
            owner,
            format!(
                "SET search_path = public; \
                 CREATE TABLE {table} (id bigint, tenant_id uuid NOT NULL, body text NOT NULL, \
                 PRIMARY KEY (tenant_id, id)); \
                 INSERT INTO {table} SELECT g % 1000, t.id, 'row ' || g \
                 FROM (SELECT ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid AS id \
                       FROM generate_series(1, 100) n) t, generate_series(1, 1000) g \
                 ON CONFLICT DO NOTHING; \
                 ANALYZE {table}; GRANT SELECT ON {table} TO \"{role}\""
            ),
        )
        .await;
    }
    for statement in protect_table_sql("public.items_rls", "tenant_id", "app.tenant_id").unwrap() {
        exec(owner, statement).await;
    }
    let tenants: Vec<TenantId> = (1..=100)
        .map(|n| format!("00000000-0000-7000-8000-{n:012}").parse().unwrap())
        .collect();
    let db = TenantDatabase::new(app.clone(), Arc::new(RowLevelStrategy::default()));

    let rls_op = |tenant: TenantId| {
        let db = &db;
        async move {
            let mut tx = db.begin(tenant).await.unwrap();
            let rows: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, body FROM public.items_rls ORDER BY id LIMIT 10")
                    .fetch_all(&mut **tx)
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(rows.len(), 10);
        }
    };
    let plain_op = |tenant: TenantId| async move {
        let mut tx = app.begin().await.unwrap();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, body FROM public.items_plain WHERE tenant_id = $1 ORDER BY id LIMIT 10",
        )
        .bind(tenant.as_uuid())
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(rows.len(), 10);
    };
    // Warm up both, then interleave rounds so that noise hits both alike.
    for t in &tenants {
        rls_op(*t).await;
        plain_op(*t).await;
    }
    let (mut rls, mut plain) = (Duration::ZERO, Duration::ZERO);
    let rounds = 30;
    for round in 0..rounds {
        let start = Instant::now();
        for t in &tenants {
            plain_op(*t).await;
        }
        plain += start.elapsed();
        let start = Instant::now();
        for t in &tenants {
            rls_op(*t).await;
        }
        rls += start.elapsed();
        let _ = round;
    }
    let n = (rounds * tenants.len()) as f64;
    let (rls_us, plain_us) = (secs(rls) / n * 1e6, secs(plain) / n * 1e6);
    println!(
        "row-level tenant transaction + indexed select: {rls_us:.0} us; plain transaction + same select \
         with WHERE tenant_id = $1: {plain_us:.0} us; ratio {:.2} (target <= 1.2; {} ops each)",
        rls_us / plain_us,
        n
    );
}
