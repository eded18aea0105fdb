//! Isolation on a Citus cluster (a coordinator and two workers, `cargo xtask citus start`), as the
//! fixture's non-superuser application role: row level on distributed tables, schema per tenant
//! on distributed schemas, tenants on different workers.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::conformance::test_app_role;
use tenancy_core::{
    BroadcastPublisher, CreateTenant, IsolationStrategy, PlacementOperation, PlacementSource,
    TenantEvent, TenantEventKind, TenantId, TenantInfo,
};
use tenancy_isolation_sql::{
    CitusPlacement, DeprovisionPolicy, IsolateOutcome, Migration, Migrations, MoveOutcome, Node,
    NodeName, PlacementError, PlacementKind, RowLevelStrategy, SchemaStrategy, ShardTransferMode,
    TableName, TenantDatabase, TenantMigrator, protect_table_sql, tenant_schema,
};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, broadcast};

/// The rebalance test moves every test's shards: it runs alone, the others share the cluster.
static CLUSTER: std::sync::LazyLock<RwLock<()>> = std::sync::LazyLock::new(|| RwLock::new(()));

async fn shared() -> RwLockReadGuard<'static, ()> {
    CLUSTER.read().await
}

async fn alone() -> RwLockWriteGuard<'static, ()> {
    CLUSTER.write().await
}

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
    let _cluster = shared().await;
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
    let _cluster = shared().await;
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
    let _cluster = shared().await;
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

/// What a writer saw while it wrote to one tenant, each transaction reading the tenant's rows
/// (as the tenant) before inserting one more and committing.
#[derive(Debug, Default)]
struct Writes {
    /// Bodies whose commit succeeded.
    acked: Vec<String>,
    /// Transactions that failed, with the error.
    failed: Vec<String>,
    /// Reads that saw a row of another tenant.
    foreign: Vec<i64>,
    /// Reads that saw fewer rows than were acknowledged before they began: (acked, seen).
    missing: Vec<(usize, i64)>,
}

/// Writes to `tenant` through `db` until `stop`: each transaction reads with `read` (the count
/// of rows not of this tenant, and of all rows it sees), then inserts one body with `insert`
/// (`$1`), then commits.
async fn write_continuously(
    db: TenantDatabase,
    tenant: TenantId,
    read: String,
    insert: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Writes>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = format!("a-{n}");
        let acked_before = log.lock().unwrap().acked.len();
        let result: Result<(i64, i64), String> = async {
            let mut tx = db.begin(tenant).await.map_err(|e| e.to_string())?;
            let seen: (i64, i64) = sqlx::query_as(AssertSqlSafe(read.clone()))
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(AssertSqlSafe(insert.clone()))
                .bind(&body)
                .execute(&mut **tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(seen)
        }
        .await;
        let mut log = log.lock().unwrap();
        match result {
            Ok((foreign, seen)) => {
                if foreign != 0 {
                    log.foreign.push(foreign);
                }
                if seen < i64::try_from(acked_before).unwrap() {
                    log.missing.push((acked_before, seen));
                }
                log.acked.push(body);
            }
            Err(e) => log.failed.push(e),
        }
    }
}

/// Runs `operation` while a writer writes to `tenant` continuously: the writer has committed
/// before it starts, and commits again after it ended. Returns the operation's result, what the
/// writer saw, and how many writes were acknowledged while the operation ran.
async fn while_writing<T>(
    db: &TenantDatabase,
    tenant: TenantId,
    read: String,
    insert: String,
    operation: impl Future<Output = T>,
) -> (T, Writes, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Writes::default()));
    let writer = tokio::spawn(write_continuously(
        db.clone(),
        tenant,
        read,
        insert,
        Arc::clone(&stop),
        Arc::clone(&log),
    ));
    let acked = || log.lock().unwrap().acked.len();
    wait_acked(&log, 10).await;
    let at_start = acked();
    let result = operation.await;
    let at_end = acked();
    wait_acked(&log, at_end + 10).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let writes = std::mem::take(&mut *log.lock().unwrap());
    (result, writes, at_end - at_start)
}

/// Waits until the writer has `n` acknowledged writes (failing if its writes keep failing).
async fn wait_acked(log: &Mutex<Writes>, n: usize) {
    loop {
        {
            let log = log.lock().unwrap();
            if log.acked.len() >= n {
                return;
            }
            assert!(
                log.failed.len() < 100,
                "the writer fails: {:?}",
                &log.failed[..3]
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The placement events of `tenant` received so far.
fn placement_events(
    events: &mut broadcast::Receiver<TenantEvent>,
    tenant: TenantId,
) -> Vec<TenantEventKind> {
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event.tenant_id == tenant {
            kinds.push(event.kind);
        }
    }
    kinds
}

fn started_and_completed(
    operation: PlacementOperation,
    from: &Node,
    to: &Node,
) -> Vec<TenantEventKind> {
    let (from, to) = (Some(from.to_string()), Some(to.to_string()));
    vec![
        TenantEventKind::PlacementStarted {
            operation,
            from: from.clone(),
            to: to.clone(),
        },
        TenantEventKind::PlacementCompleted {
            operation,
            from,
            to,
        },
    ]
}

/// Asserts what a move under writes must keep: every acknowledged write, nothing of another
/// tenant seen, no read missing an acknowledged write, no failed write (writes blocked during
/// a copy wait, they do not fail).
fn assert_writes_kept(writes: &Writes, stored: &[String]) {
    assert!(
        writes.failed.is_empty(),
        "writes failed during the move: {:?}",
        writes.failed
    );
    assert!(
        writes.foreign.is_empty(),
        "reads saw other tenants' rows: {:?}",
        writes.foreign
    );
    let lost: Vec<&String> = writes
        .acked
        .iter()
        .filter(|b| !stored.contains(b))
        .collect();
    let unacked: Vec<&String> = stored
        .iter()
        .filter(|b| !writes.acked.contains(b))
        .collect();
    assert!(
        lost.is_empty() && unacked.is_empty(),
        "the tenant's rows after the move must be exactly its {} acknowledged writes: lost \
         {lost:?}, never acknowledged {unacked:?}",
        writes.acked.len()
    );
    assert!(
        writes.missing.is_empty(),
        "reads missed acknowledged writes: {:?}",
        writes.missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_schema_moves_to_another_node_while_written_to() {
    let _cluster = shared().await;
    let (admin, app) = pools(4).await;
    let strategy = distributed_schemas(&admin);
    let tenants = TenantDatabase::new(app.clone(), strategy.clone());
    let publisher = BroadcastPublisher::new(64);
    let mut events = publisher.subscribe();
    let placement = CitusPlacement::new(admin.clone()).with_publisher(Arc::new(publisher));

    // a, and b on the other worker: a moves to b's node.
    let a = TenantId::new();
    strategy.provision(a).await.unwrap();
    let from = placement.locate(a).await.unwrap().node;
    let mut extra = Vec::new();
    let b = loop {
        let b = TenantId::new();
        strategy.provision(b).await.unwrap();
        if placement.locate(b).await.unwrap().node != from {
            break b;
        }
        extra.push(b);
        assert!(
            extra.len() < 8,
            "no tenant schema landed on the second worker"
        );
    };
    let to = placement.locate(b).await.unwrap().node;
    let mut tx = tenants.begin(b).await.unwrap();
    sqlx::query("INSERT INTO notes (body) VALUES ('b-1'), ('b-2')")
        .execute(&mut **tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (moved, writes, during) = while_writing(
        &tenants,
        a,
        "SELECT count(*) FILTER (WHERE body NOT LIKE 'a-%'), count(*) FROM notes".into(),
        "INSERT INTO notes (body) VALUES ($1)".into(),
        placement.move_tenant(a, &NodeName::Id(to.id)),
    )
    .await;
    assert_eq!(
        moved.unwrap(),
        MoveOutcome::Moved {
            from: from.clone(),
            to: to.clone()
        }
    );
    let now = placement.locate(a).await.unwrap();
    assert_eq!(now.node, to, "the placement changed");
    assert_eq!(
        now.kind,
        PlacementKind::Schema {
            schema: tenant_schema(a)
        }
    );
    // What the admin console shows on the tenant's page (`PlacementSource`): the new node.
    let info = |id| {
        let command = CreateTenant::new("acme".parse().unwrap(), "Acme").with_id(id);
        TenantInfo::from_command(command, chrono::Utc::now()).unwrap()
    };
    let shown = PlacementSource::placement(&placement, &info(a))
        .await
        .unwrap()
        .expect("a placed tenant has a placement");
    assert_eq!(shown.summary, format!("Citus node {to} (id {})", to.id));
    assert!(
        shown
            .details
            .contains(&("schema".to_owned(), tenant_schema(a))),
        "{shown:?}"
    );
    let unplaced = info(TenantId::new());
    let unplaced = PlacementSource::placement(&placement, &unplaced).await;
    assert_eq!(unplaced.unwrap(), None, "no placement, no section");
    let mut tx = tenants.begin(a).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_all(&mut **tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_writes_kept(&writes, &stored);
    // The schema's tables have primary keys and no row-level security: the move was the
    // non-blocking one, and writes went on while it ran.
    assert!(
        during > 0,
        "no write was acknowledged while the tenant moved"
    );
    // b, now on the same node as a, still sees only its own.
    let mut tx = tenants.begin(b).await.unwrap();
    let mut b_notes: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_all(&mut **tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    b_notes.sort();
    assert_eq!(b_notes, ["b-1", "b-2"]);
    assert_eq!(
        placement_events(&mut events, a),
        started_and_completed(PlacementOperation::Move, &from, &to)
    );

    // Safe to retry: a move to where the tenant is does nothing and publishes nothing.
    let again = placement
        .move_tenant(a, &format!("{}:{}", to.host, to.port).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(again, MoveOutcome::AlreadyThere { node: to.clone() });
    assert_eq!(placement_events(&mut events, a), []);
    // A node that is not in the cluster is refused before anything is done.
    let err = placement
        .move_tenant(a, &NodeName::Id(9999))
        .await
        .unwrap_err();
    assert!(matches!(err, PlacementError::UnknownNode { .. }), "{err}");
    // A tenant that is not placed is named as such.
    let err = placement.locate(TenantId::new()).await.unwrap_err();
    assert!(matches!(err, PlacementError::NotPlaced { .. }), "{err}");
    // Isolation is for row-level tenants.
    let err = placement.isolate(a).await.unwrap_err();
    assert!(matches!(err, PlacementError::NotRowLevel { .. }), "{err}");

    for tenant in [a, b].into_iter().chain(extra) {
        strategy.deprovision(tenant).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_schema_without_primary_key_is_refused_a_non_blocking_move() {
    let _cluster = shared().await;
    let (admin, _app) = pools(1).await;
    let migrator = TenantMigrator::new(
        admin.clone(),
        Migrations::new(vec![
            Migration::new(1, "log", "CREATE TABLE log (line text NOT NULL)").unwrap(),
        ])
        .unwrap(),
    );
    let strategy = SchemaStrategy::new(admin.clone(), migrator, DeprovisionPolicy::Drop)
        .distributed_on_citus(true);
    let tenant = TenantId::new();
    strategy.provision(tenant).await.unwrap();
    let publisher = BroadcastPublisher::new(16);
    let mut events = publisher.subscribe();
    let placement = CitusPlacement::new(admin.clone()).with_publisher(Arc::new(publisher));
    let from = placement.locate(tenant).await.unwrap().node;
    let to = placement
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| *n != from)
        .unwrap();
    let err = placement
        .move_tenant(tenant, &NodeName::Id(to.id))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlacementError::NoReplicaIdentity { message, .. } if message.contains("log")),
        "{err}"
    );
    assert_eq!(
        placement.locate(tenant).await.unwrap().node,
        from,
        "nothing moved"
    );
    let kinds = placement_events(&mut events, tenant);
    assert!(
        matches!(&kinds[..], [TenantEventKind::PlacementStarted { .. }, TenantEventKind::PlacementFailed { operation: PlacementOperation::Move, error, .. }] if error.contains("REPLICA IDENTITY")),
        "{kinds:?}"
    );
    // With writes blocked during the copy, the same move goes through.
    let blocking = placement
        .clone()
        .transfer_mode(ShardTransferMode::BlockWrites);
    assert_eq!(
        blocking
            .move_tenant(tenant, &NodeName::Id(to.id))
            .await
            .unwrap(),
        MoveOutcome::Moved {
            from,
            to: to.clone()
        }
    );
    assert_eq!(placement.locate(tenant).await.unwrap().node, to);
    strategy.deprovision(tenant).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn row_level_tenant_is_isolated_and_moved_while_written_to() {
    let _cluster = shared().await;
    let (admin, app) = pools(4).await;
    let s = suffix();
    let (items, notes) = (format!("items_{s}"), format!("notes_{s}"));
    let role = test_app_role();
    let mut ddl = vec![
        format!(
            "CREATE TABLE {items} (tenant_id uuid NOT NULL, id bigserial, body text NOT NULL, \
             PRIMARY KEY (tenant_id, id))"
        ),
        format!("SELECT create_distributed_table('{items}', 'tenant_id')"),
        format!(
            "CREATE TABLE {notes} (tenant_id uuid NOT NULL, id bigserial, note text NOT NULL, \
             PRIMARY KEY (tenant_id, id))"
        ),
        format!(
            "SELECT create_distributed_table('{notes}', 'tenant_id', colocate_with => '{items}')"
        ),
    ];
    for table in [&items, &notes] {
        ddl.extend(protect_table_sql(table, "tenant_id", "app.tenant_id").unwrap());
        ddl.push(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO \"{role}\""
        ));
        ddl.push(format!(
            "GRANT USAGE ON SEQUENCE {table}_id_seq TO \"{role}\""
        ));
    }
    exec(&admin, &ddl).await;

    let publisher = BroadcastPublisher::new(64);
    let mut events = publisher.subscribe();
    let placement = CitusPlacement::new(admin.clone())
        .tenant_table(TableName::parse(&items).unwrap())
        .with_publisher(Arc::new(publisher));
    // a, a neighbour sharing a's shard, and tenants everywhere else.
    let a = TenantId::new();
    let others: Vec<TenantId> = (0..200).map(|_| TenantId::new()).collect();
    let here = placement.locate(a).await.unwrap();
    let PlacementKind::Shard {
        shard_id: shared_shard,
        isolated: false,
        ..
    } = here.kind
    else {
        panic!("a is in a shared shard: {here:?}");
    };
    let from = here.node.clone();
    let placed = placement.locate_many(&others).await.unwrap();
    assert_eq!(placed.len(), others.len());
    let neighbour = placed
        .iter()
        .find(
            |p| matches!(p.kind, PlacementKind::Shard { shard_id, .. } if shard_id == shared_shard),
        )
        .expect("a tenant sharing a's shard among 200")
        .tenant;
    let to = placement
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| *n != from)
        .unwrap();
    let mut values = Vec::new();
    for t in &others {
        values.push(format!("('{t}', 'other-{t}')"));
    }
    exec(
        &admin,
        &[
            format!("INSERT INTO {items} (tenant_id, body) VALUES {}", values.join(", ")),
            format!("INSERT INTO {notes} (tenant_id, note) VALUES ('{a}', 'a note'), ('{neighbour}', 'n note')"),
        ],
    )
    .await;

    let tenants =
        TenantDatabase::new(app.clone(), Arc::new(RowLevelStrategy::default())).on_citus(true);
    let (moved, writes, during) = while_writing(
        &tenants,
        a,
        format!("SELECT count(*) FILTER (WHERE tenant_id <> '{a}' OR body NOT LIKE 'a-%'), count(*) FROM {items}"),
        format!("INSERT INTO {items} (tenant_id, body) VALUES ('{a}', $1)"),
        placement.move_tenant(a, &NodeName::Id(to.id)),
    )
    .await;
    assert_eq!(
        moved.unwrap(),
        MoveOutcome::Moved {
            from: from.clone(),
            to: to.clone()
        }
    );
    // a has a shard of its own, on the target node; its neighbour stayed where it was.
    let now = placement.locate(a).await.unwrap();
    assert_eq!(now.node, to, "the placement changed");
    let PlacementKind::Shard {
        shard_id, isolated, ..
    } = now.kind
    else {
        panic!("{now:?}")
    };
    assert!(isolated);
    assert_ne!(shard_id, shared_shard);
    assert_eq!(placement.locate(neighbour).await.unwrap().node, from);
    // The co-located table's shard moved with it.
    let note_port: i32 = sqlx::query_scalar(
        "SELECT nodeport FROM citus_shards \
         WHERE shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid)",
    )
    .bind(&notes)
    .bind(a.as_uuid())
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(note_port, to.port);

    let mut tx = tenants.begin(a).await.unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT body FROM {items}")))
            .fetch_all(&mut **tx)
            .await
            .unwrap();
    let a_notes: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT note FROM {notes}")))
            .fetch_all(&mut **tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    // The tables force row-level security, so the shards were copied with writes blocked
    // (waiting, not failing): `during` may be 0.
    let _ = during;
    assert_writes_kept(&writes, &stored);
    assert_eq!(a_notes, ["a note"]);
    let mut tx = tenants.begin(neighbour).await.unwrap();
    let bodies: Vec<String> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT body FROM {items}")))
            .fetch_all(&mut **tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(bodies, [format!("other-{neighbour}")]);
    assert_eq!(
        placement_events(&mut events, a),
        started_and_completed(PlacementOperation::Move, &from, &to)
    );

    // Retries: isolated already, and on the target already.
    assert_eq!(
        placement.isolate(a).await.unwrap(),
        IsolateOutcome::AlreadyIsolated {
            shard_id,
            node: to.clone()
        }
    );
    assert_eq!(
        placement
            .move_tenant(a, &NodeName::Id(to.id))
            .await
            .unwrap(),
        MoveOutcome::AlreadyThere { node: to.clone() }
    );
    // Isolating the neighbour alone keeps it where it is.
    let isolated = placement.isolate(neighbour).await.unwrap();
    assert!(
        matches!(&isolated, IsolateOutcome::Isolated { node, .. } if *node == from),
        "{isolated:?}"
    );
    assert_eq!(
        placement_events(&mut events, neighbour),
        started_and_completed(PlacementOperation::Isolate, &from, &from)
    );
    assert_eq!(placement_events(&mut events, a), []);
    // Logical replication cannot write into tables that force row-level security: asked for
    // explicitly, it is refused before anything is done (it would wait forever).
    let err = placement
        .clone()
        .transfer_mode(ShardTransferMode::ForceLogical)
        .move_tenant(neighbour, &NodeName::Id(to.id))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlacementError::ForcedRowSecurity { table, .. } if table.contains(&items) || table.contains(&notes)),
        "{err}"
    );
    assert_eq!(placement.locate(neighbour).await.unwrap().node, from);

    exec(&admin, &[format!("DROP TABLE {notes}, {items}")]).await;
}

/// Tenant schemas on the first node minus those on the second.
async fn spread(placement: &CitusPlacement, nodes: &[Node]) -> i64 {
    let all = placement.tenant_schemas().await.unwrap();
    let on = |n: &Node| i64::try_from(all.iter().filter(|p| p.node == *n).count()).unwrap();
    on(&nodes[0]) - on(&nodes[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_spreads_tenant_schemas_piled_on_one_worker() {
    // The rebalancer moves every group's shards: no other test runs meanwhile.
    let _cluster = alone().await;
    let (admin, _app) = pools(1).await;
    let strategy = distributed_schemas(&admin);
    let publisher = BroadcastPublisher::new(256);
    let mut events = publisher.subscribe();
    let placement = CitusPlacement::new(admin.clone())
        .transfer_mode(ShardTransferMode::BlockWrites)
        .with_publisher(Arc::new(publisher));
    let nodes = placement.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    // Balance first, so that only the pile below is to spread.
    placement.rebalance(|_| {}).await.unwrap();
    let balanced = spread(&placement, &nodes).await;
    let pile: Vec<TenantId> = (0..8).map(|_| TenantId::new()).collect();
    for tenant in &pile {
        strategy.provision(*tenant).await.unwrap();
        placement
            .move_tenant(*tenant, &NodeName::Id(nodes[0].id))
            .await
            .unwrap();
    }
    while events.try_recv().is_ok() {}
    let before = spread(&placement, &nodes).await;
    assert_eq!(before, balanced + 8, "the pile is on the first worker");

    let mut seen = Vec::new();
    let report = placement.rebalance(|p| seen.push(p)).await.unwrap();
    assert!(report.job_id.is_some(), "{report:?}");
    assert!(report.moves > 0, "{report:?}");
    assert!(!report.tenants.is_empty(), "{report:?}");
    let last = seen.last().expect("progress was reported");
    assert_eq!(last.done, last.total);
    let mut received = Vec::new();
    while let Ok(event) = events.try_recv() {
        received.push(event);
    }
    // Which schemas move is the rebalancer's choice (tenant schemas other tests left behind
    // count too); they all leave the piled worker, and the pile is spread.
    let after = spread(&placement, &nodes).await;
    assert!(
        after.abs() < before,
        "imbalance {before} before, {after} after: {report:?}"
    );
    for moved in &report.tenants {
        assert_eq!(moved.from, nodes[0]);
        assert_eq!(moved.to, nodes[1]);
        assert_eq!(placement.locate(moved.tenant).await.unwrap().node, nodes[1]);
        let kinds: Vec<&TenantEventKind> = received
            .iter()
            .filter(|e| e.tenant_id == moved.tenant)
            .map(|e| &e.kind)
            .collect();
        assert_eq!(
            kinds.last().copied(),
            Some(&TenantEventKind::PlacementCompleted {
                operation: PlacementOperation::Rebalance,
                from: Some(nodes[0].to_string()),
                to: Some(nodes[1].to_string()),
            }),
            "{kinds:?}"
        );
    }
    // Balanced now: nothing to do, no job.
    let again = placement.rebalance(|_| {}).await.unwrap();
    assert_eq!(again.job_id, None, "{again:?}");
    assert!(again.tenants.is_empty());
    for tenant in pile {
        strategy.deprovision(tenant).await.unwrap();
    }
}

/// Sets `synchronous_commit` on every worker and waits until the coordinator's connections to
/// them report it.
async fn workers_synchronous_commit(admin: &PgPool, value: &str) {
    let ports: Vec<i32> =
        sqlx::query_scalar("SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY 1")
            .fetch_all(admin)
            .await
            .unwrap();
    let options = PgConnectOptions::from_str(&citus_url()).unwrap();
    for port in ports {
        let worker = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().port(u16::try_from(port).unwrap()))
            .await
            .unwrap();
        let set = format!("ALTER SYSTEM SET synchronous_commit = {value}");
        exec(&worker, &[set, "SELECT pg_reload_conf()".to_owned()]).await;
        worker.close().await;
    }
    for _ in 0..200 {
        let values: Vec<String> = sqlx::query_scalar(
            "SELECT result FROM run_command_on_workers('SHOW synchronous_commit')",
        )
        .fetch_all(admin)
        .await
        .unwrap();
        if values.iter().all(|v| v == value) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the workers' synchronous_commit did not become {value}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_commit_on_a_worker_makes_moves_block_writes() {
    // Changes the workers' configuration: no other test runs meanwhile.
    let _cluster = alone().await;
    let (admin, _app) = pools(1).await;
    let strategy = distributed_schemas(&admin);
    let tenant = TenantId::new();
    strategy.provision(tenant).await.unwrap();
    let placement = CitusPlacement::new(admin.clone());
    let from = placement.locate(tenant).await.unwrap().node;
    let to = placement
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| *n != from)
        .unwrap();

    let before: String = sqlx::query_scalar(
        "SELECT result FROM run_command_on_workers('SHOW synchronous_commit') LIMIT 1",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(before, "on", "the fixture's workers commit synchronously");
    workers_synchronous_commit(&admin, "off").await;
    let forced = placement
        .clone()
        .transfer_mode(ShardTransferMode::ForceLogical)
        .move_tenant(tenant, &NodeName::Id(to.id))
        .await;
    let stayed = placement.locate(tenant).await.map(|p| p.node);
    // `auto` moves it, with writes blocked.
    let auto = placement.move_tenant(tenant, &NodeName::Id(to.id)).await;
    workers_synchronous_commit(&admin, "on").await;

    let err = forced.unwrap_err();
    assert!(
        matches!(&err, PlacementError::AsynchronousCommit { .. }),
        "{err}"
    );
    assert_eq!(stayed.unwrap(), from, "nothing moved");
    assert_eq!(
        auto.unwrap(),
        MoveOutcome::Moved {
            from,
            to: to.clone()
        }
    );
    assert_eq!(placement.locate(tenant).await.unwrap().node, to);
    strategy.deprovision(tenant).await.unwrap();
}
