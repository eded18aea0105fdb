//! Citus benchmarks, against the cluster of `TENANCY_TEST_CITUS_URL` and the PostgreSQL server
//! of `TENANCY_TEST_DATABASE_URL` (both started and exported by `cargo xtask bench`), in one run:
//!
//! 1. a single-tenant row-level transaction (select by key, then a small insert), on a Citus
//!    distributed table and on the same table on plain PostgreSQL, one client, interleaved
//!    rounds: the latencies and their ratio;
//! 2. the aggregate throughput of 16 concurrent tenants (tenant schemas, each writing its own
//!    schema in a loop) with all 16 on one worker, then spread over both (moved there with
//!    `CitusPlacement`).
//!
//! `TENANCY_BENCH_SECONDS` sets how long each throughput phase runs (5).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::conformance::{test_app_role, test_database_url};
use tenancy_core::{IsolationStrategy, TenantId};
use tenancy_isolation_sql::{
    CitusPlacement, DeprovisionPolicy, Migration, Migrations, NodeName, RowLevelStrategy,
    SchemaStrategy, ShardTransferMode, TenantDatabase, TenantMigrator, protect_table_sql,
};

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Both servers alike: no TLS (the Citus nodes take none from clients) and synchronous commit
/// on (the Citus workers' setting: see docs/scale-out.md); both fixtures run with fsync off.
async fn pools(url: &str, connections: u32) -> (PgPool, PgPool) {
    let options = PgConnectOptions::from_str(url)
        .expect("valid URL")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .options([("synchronous_commit", "on")]);
    let owner = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .expect("connect");
    let role = test_app_role();
    let app = PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options.username(&role).password(&role))
        .await
        .expect("connect as the application role");
    (owner, app)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let citus = std::env::var("TENANCY_TEST_CITUS_URL").expect(
        "TENANCY_TEST_CITUS_URL is not set: run `cargo xtask bench`, or start `cargo xtask citus \
         start` and export what `cargo xtask citus url` prints",
    );
    let seconds: u64 = std::env::var("TENANCY_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    single_tenant_transaction(&citus, &test_database_url()).await;
    concurrent_tenants(&citus, Duration::from_secs(seconds)).await;
}

/// Creates the row-level table on `owner`'s server (distributed on Citus), 100 tenants x 100
/// rows, protected by the policy.
async fn row_level_table(owner: &PgPool, table: &str, distributed: bool) {
    let role = test_app_role();
    exec(
        owner,
        &format!(
            "CREATE TABLE {table} (tenant_id uuid NOT NULL, id bigint NOT NULL, body text NOT NULL, \
             PRIMARY KEY (tenant_id, id))"
        ),
    )
    .await;
    if distributed {
        exec(
            owner,
            &format!("SELECT create_distributed_table('{table}', 'tenant_id')"),
        )
        .await;
    }
    exec(
        owner,
        &format!(
            "INSERT INTO {table} SELECT ('00000000-0000-7000-8000-' || lpad(t::text, 12, '0'))::uuid, \
             g, 'row ' || g FROM generate_series(1, 100) t, generate_series(1, 100) g; \
             ANALYZE {table}; GRANT SELECT, INSERT ON {table} TO \"{role}\""
        ),
    )
    .await;
    for statement in protect_table_sql(table, "tenant_id", "app.tenant_id").unwrap() {
        exec(owner, &statement).await;
    }
}

async fn single_tenant_transaction(citus: &str, postgres: &str) {
    let table = format!(
        "bench_items_{}",
        &TenantId::new().simple().to_string()[20..]
    );
    let (c_owner, c_app) = pools(citus, 2).await;
    let (p_owner, p_app) = pools(postgres, 2).await;
    row_level_table(&c_owner, &table, true).await;
    row_level_table(&p_owner, &table, false).await;
    let on_citus =
        TenantDatabase::new(c_app.clone(), Arc::new(RowLevelStrategy::default())).on_citus(true);
    let on_postgres = TenantDatabase::new(p_app.clone(), Arc::new(RowLevelStrategy::default()));
    let tenants: Vec<TenantId> = (1..=100)
        .map(|n| format!("00000000-0000-7000-8000-{n:012}").parse().unwrap())
        .collect();
    let select = format!("SELECT body FROM {table} WHERE tenant_id = $1 AND id = $2");
    let insert = format!("INSERT INTO {table} (tenant_id, id, body) VALUES ($1, $2, 'new')");
    let mut next_id = 1_000;
    let op = async |db: &TenantDatabase, tenant: TenantId, id: i64| {
        let mut tx = db.begin(tenant).await.unwrap();
        let body: String = sqlx::query_scalar(AssertSqlSafe(select.clone()))
            .bind(tenant.as_uuid())
            .bind(7_i64)
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        assert_eq!(body, "row 7");
        sqlx::query(AssertSqlSafe(insert.clone()))
            .bind(tenant.as_uuid())
            .bind(id)
            .execute(&mut **tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    // Warm up both, then interleave rounds so that noise hits both alike.
    for t in &tenants {
        next_id += 1;
        op(&on_citus, *t, next_id).await;
        op(&on_postgres, *t, next_id).await;
    }
    let (mut on_c, mut on_p) = (Duration::ZERO, Duration::ZERO);
    let rounds = 10;
    for _ in 0..rounds {
        let start = Instant::now();
        for t in &tenants {
            next_id += 1;
            op(&on_postgres, *t, next_id).await;
        }
        on_p += start.elapsed();
        let start = Instant::now();
        for t in &tenants {
            op(&on_citus, *t, next_id).await;
        }
        on_c += start.elapsed();
    }
    let n = (rounds * tenants.len()) as f64;
    let (c_us, p_us) = (on_c.as_secs_f64() / n * 1e6, on_p.as_secs_f64() / n * 1e6);
    println!(
        "single-tenant row-level transaction (select by key + insert), one client: Citus \
         {c_us:.0} us, PostgreSQL {p_us:.0} us, ratio {:.2} ({n} transactions each)",
        c_us / p_us
    );
    exec(&c_owner, &format!("DROP TABLE {table}")).await;
    exec(&p_owner, &format!("DROP TABLE {table}")).await;
}

async fn concurrent_tenants(citus: &str, phase: Duration) {
    const TENANTS: usize = 16;
    let (owner, app) = pools(citus, TENANTS as u32).await;
    let migrator = TenantMigrator::new(
        owner.clone(),
        Migrations::new(vec![
            Migration::new(
                1,
                "items",
                "CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL); \
                 INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 100) g",
            )
            .unwrap(),
        ])
        .unwrap(),
    )
    .grant_to(&test_app_role())
    .unwrap();
    let strategy = Arc::new(
        SchemaStrategy::new(owner.clone(), migrator, DeprovisionPolicy::Drop)
            .distributed_on_citus(true),
    );
    let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::new()).collect();
    for t in &tenants {
        strategy.provision(*t).await.unwrap();
    }
    let placement =
        CitusPlacement::new(owner.clone()).transfer_mode(ShardTransferMode::BlockWrites);
    let nodes = placement.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let db = TenantDatabase::new(app.clone(), strategy.clone());

    let mut results = Vec::new();
    for spread in [false, true] {
        for (i, t) in tenants.iter().enumerate() {
            let node = if spread && i % 2 == 1 {
                &nodes[1]
            } else {
                &nodes[0]
            };
            placement
                .move_tenant(*t, &NodeName::Id(node.id))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + phase;
        let mut tasks = Vec::new();
        for (i, t) in tenants.iter().enumerate() {
            let (db, t) = (db.clone(), *t);
            tasks.push(tokio::spawn(async move {
                let mut done = 0_u64;
                let mut id = 1_000_000 * (i as i64 + 1) + if spread { 500_000 } else { 0 };
                while Instant::now() < deadline {
                    id += 1;
                    let mut tx = db.begin(t).await.unwrap();
                    let _: String = sqlx::query_scalar("SELECT body FROM items WHERE id = $1")
                        .bind(7_i64)
                        .fetch_one(&mut **tx)
                        .await
                        .unwrap();
                    sqlx::query("INSERT INTO items (id, body) VALUES ($1, 'new')")
                        .bind(id)
                        .execute(&mut **tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    done += 1;
                }
                done
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        results.push(total as f64 / phase.as_secs_f64());
    }
    println!(
        "{TENANTS} concurrent tenants (tenant schemas, select by key + insert each): \
         {:.0} transactions/s on 1 worker, {:.0} transactions/s on 2 workers, x{:.2} \
         ({} s each)",
        results[0],
        results[1],
        results[1] / results[0],
        phase.as_secs()
    );
    for t in tenants {
        strategy.deprovision(t).await.unwrap();
    }
}
