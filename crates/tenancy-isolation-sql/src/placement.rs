//! Where tenants live on a Citus cluster, and moving them: [`CitusPlacement`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tenancy_core::{
    EventPublisher, NoopPublisher, Placement, PlacementOperation, PlacementSource, TenantError,
    TenantEvent, TenantEventKind, TenantId, TenantInfo,
};
use tracing::Instrument as _;

use crate::config::{CitusConfig, ShardTransferMode};
use crate::ident::{TableName, tenant_of_schema, tenant_schema};

/// Why a placement operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The database is not a Citus coordinator (no `citus` extension).
    #[error("the database is not a Citus coordinator: the citus extension is not installed")]
    NotCitus,
    /// The tenant has no distributed tenant schema, and (row level) no tenant table is
    /// configured to find its shard through.
    #[error(
        "tenant {tenant} is not placed on the cluster: no distributed schema {schema} and no \
         row-level tenant table (isolation.citus.tenant_table)",
        schema = tenant_schema(*tenant)
    )]
    NotPlaced {
        /// The tenant.
        tenant: TenantId,
    },
    /// The operation applies to row-level tenants only (a tenant schema is a shard group of
    /// its own already).
    #[error(
        "tenant {tenant} lives in a distributed schema: {operation} applies to row-level tenants"
    )]
    NotRowLevel {
        /// The tenant.
        tenant: TenantId,
        /// The operation asked for.
        operation: PlacementOperation,
    },
    /// No primary node of the cluster is the one named.
    #[error("no node {node} in the cluster; its nodes: {known}")]
    UnknownNode {
        /// The node as named.
        node: String,
        /// The cluster's primary nodes (`id host:port`).
        known: String,
    },
    /// A node was named in a form that is neither a node id nor `host:port`.
    #[error("invalid node {0:?}: give a node id (`2`) or `host:port`")]
    InvalidNode(String),
    /// Citus refused a non-blocking transfer because a table of the tenant has no primary key
    /// or replica identity; nothing moved. Give the table a primary key, or use the
    /// `block_writes` (or `force_logical`) shard transfer mode.
    #[error(
        "tenant {tenant}: {message}; nothing moved. Give the table a primary key, or set the \
         shard transfer mode to block_writes (writes wait during the move) or force_logical"
    )]
    NoReplicaIdentity {
        /// The tenant.
        tenant: TenantId,
        /// Citus's message, naming the table.
        message: String,
    },
    /// The `force_logical` transfer mode was asked for a table that forces row-level security:
    /// Citus's logical replication cannot write into it on PostgreSQL 15 (its subscription
    /// runs as a role that owns the table through membership, neither superuser nor
    /// BYPASSRLS, so the forced policy applies to it), and the transfer would wait forever;
    /// nothing moved. Use `auto` or `block_writes`.
    #[error(
        "tenant {tenant}: table {table} forces row-level security, which Citus's logical \
         replication cannot write into; nothing moved. Use the auto or block_writes shard \
         transfer mode"
    )]
    ForcedRowSecurity {
        /// The tenant.
        tenant: TenantId,
        /// The first such table of the tenant's co-location group.
        table: String,
    },
    /// The `force_logical` transfer mode was asked while a worker commits asynchronously
    /// (`synchronous_commit = off`): Citus's logical replication ends its catch-up at the WAL
    /// position written so far (`pg_current_wal_lsn()`), which can be before commits already
    /// acknowledged, and those writes are lost with the old placement; nothing moved. Use
    /// `auto` or `block_writes`, or turn synchronous commit on.
    #[error(
        "tenant {tenant}: worker {node} runs with synchronous_commit = off, under which a \
         logical-replication move can lose acknowledged writes; nothing moved. Use the auto or \
         block_writes shard transfer mode, or synchronous_commit = on"
    )]
    AsynchronousCommit {
        /// The tenant.
        tenant: TenantId,
        /// The first such worker (`host:port`).
        node: String,
    },
    /// Another shard move, split or co-located table creation held the lock the operation
    /// needs, through every retry; nothing moved. Run it again later.
    #[error(
        "tenant {tenant}: {message}; nothing moved, run it again when the other operation ended"
    )]
    Busy {
        /// The tenant.
        tenant: TenantId,
        /// Citus's message.
        message: String,
    },
    /// The rebalance job ended without finishing.
    #[error("rebalance job {job_id} ended {state}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rebalance {
        /// Citus's background job.
        job_id: i64,
        /// Its final state (`failed`, `cancelled`).
        state: String,
        /// The first failed task's message, if any.
        message: Option<String>,
    },
    /// A query to the coordinator failed.
    #[error("{what}{}: {source}", tenant.map(|t| format!(" for tenant {t}")).unwrap_or_default())]
    Database {
        /// What was being done.
        what: &'static str,
        /// The tenant concerned, if one.
        tenant: Option<TenantId>,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
}

impl From<PlacementError> for TenantError {
    /// Naming a node that does not exist, or a tenant schema to isolate, is bad input;
    /// everything else is an isolation failure.
    fn from(error: PlacementError) -> Self {
        match error {
            PlacementError::UnknownNode { .. } | PlacementError::InvalidNode(_) => {
                Self::invalid("node", error.to_string())
            }
            PlacementError::NotRowLevel { .. } => Self::invalid("tenant", error.to_string()),
            other => Self::isolation(other.to_string(), other),
        }
    }
}

/// How many times an operation runs again while Citus reports its lock taken.
const BUSY_RETRIES: u32 = 20;

/// Citus's answer when a concurrent shard move, split or co-located table creation holds the
/// lock an operation needs (it does not wait).
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.message().starts_with("could not acquire the lock required to"))
}

fn db(what: &'static str, tenant: Option<TenantId>) -> impl FnOnce(sqlx::Error) -> PlacementError {
    move |source| PlacementError::Database {
        what,
        tenant,
        source,
    }
}

/// A node of the cluster (`pg_dist_node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Citus's node id.
    pub id: i32,
    /// Its host name, as registered.
    pub host: String,
    /// Its port.
    pub port: i32,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A node as an operator names it: its Citus node id, or `host:port`.
///
/// ```
/// use tenancy_isolation_sql::NodeName;
///
/// assert_eq!("2".parse::<NodeName>().unwrap(), NodeName::Id(2));
/// assert_eq!(
///     "10.0.0.7:5432".parse::<NodeName>().unwrap(),
///     NodeName::Address { host: "10.0.0.7".into(), port: 5432 }
/// );
/// assert!("worker-2".parse::<NodeName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeName {
    /// `pg_dist_node.nodeid`.
    Id(i32),
    /// The host and port the node is registered with.
    Address {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl std::str::FromStr for NodeName {
    type Err = PlacementError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.parse::<i32>() {
            return Ok(Self::Id(id));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                let port = port
                    .parse()
                    .map_err(|_| PlacementError::InvalidNode(s.to_owned()))?;
                Ok(Self::Address {
                    host: host.to_owned(),
                    port,
                })
            }
            _ => Err(PlacementError::InvalidNode(s.to_owned())),
        }
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Address { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// How a tenant's data is held on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlacementKind {
    /// A distributed tenant schema (schema per tenant): all its tables on one node.
    Schema {
        /// The schema, `tenant_<32 hex>`.
        schema: String,
    },
    /// Row level: the shard of the tenant table (and its co-located shards) holding the
    /// tenant's rows.
    Shard {
        /// The tenant table it was found through.
        table: String,
        /// The shard of that table.
        shard_id: i64,
        /// Whether the shard holds this tenant only (after
        /// [`isolate`](CitusPlacement::isolate)); otherwise it is shared with the tenants whose
        /// ids hash into the same range.
        isolated: bool,
    },
}

/// Where one tenant lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantPlacement {
    /// The tenant.
    pub tenant: TenantId,
    /// The node holding its data.
    pub node: Node,
    /// How its data is held.
    #[serde(flatten)]
    pub kind: PlacementKind,
}

/// What [`move_tenant`](CitusPlacement::move_tenant) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MoveOutcome {
    /// The tenant's data moved.
    Moved {
        /// The node it was on.
        from: Node,
        /// Where it is now.
        to: Node,
    },
    /// The tenant already was on the node: nothing was done, no event published.
    AlreadyThere {
        /// The node.
        node: Node,
    },
}

/// What [`isolate`](CitusPlacement::isolate) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IsolateOutcome {
    /// The tenant's rows now have a shard of their own, on the same node.
    Isolated {
        /// The tenant table's new shard.
        shard_id: i64,
        /// The node it is on.
        node: Node,
    },
    /// The tenant had a shard of its own already: nothing was done.
    AlreadyIsolated {
        /// The tenant table's shard.
        shard_id: i64,
        /// The node it is on.
        node: Node,
    },
}

/// One tenant schema the rebalancer moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebalancedTenant {
    /// The tenant.
    pub tenant: TenantId,
    /// The node it was on.
    pub from: Node,
    /// Where it is now.
    pub to: Node,
}

/// What [`rebalance`](CitusPlacement::rebalance) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebalanceReport {
    /// Citus's background job (none: the cluster was balanced, nothing moved).
    pub job_id: Option<i64>,
    /// How many shard moves the job ran.
    pub moves: u64,
    /// The tenant schemas that changed node.
    pub tenants: Vec<RebalancedTenant>,
}

/// How far a rebalance job is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceProgress {
    /// Shard moves finished.
    pub done: u64,
    /// Shard moves in all.
    pub total: u64,
}

/// One tenant's activity, from `citus_stat_tenants`: counts of the queries Citus routed to a
/// single tenant (by its distribution value or its distributed schema), over the current period
/// (`citus.stat_tenants_period`, 60 s by default) and the one before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantStats {
    /// The tenant, when the attribute is a tenant id or a tenant schema.
    pub tenant: Option<TenantId>,
    /// What Citus tracks the tenant by: the distribution value, or the schema name.
    pub attribute: String,
    /// The node that served the queries.
    pub node_id: i32,
    /// Queries in the current period.
    pub queries: i64,
    /// Queries in the period before.
    pub queries_last_period: i64,
    /// Read queries in the current period.
    pub reads: i64,
    /// Read queries in the period before.
    pub reads_last_period: i64,
    /// CPU seconds in the current period.
    pub cpu_seconds: f64,
    /// CPU seconds in the period before.
    pub cpu_seconds_last_period: f64,
}

/// Placement operations on a Citus coordinator: where each tenant lives, moving one tenant to
/// another node while it is served, giving a row-level tenant a shard of its own, rebalancing,
/// and per-tenant statistics.
///
/// Tenants are found two ways: a tenant schema (`tenant_<32 hex>`) that is a Citus distributed
/// schema ([`SchemaStrategy::distributed_on_citus`](crate::SchemaStrategy::distributed_on_citus)),
/// or, for row level, the shard of the tenant table (`isolation.citus.tenant_table`, a table
/// distributed by the tenant column) that holds the tenant's id; its co-located tables' shards
/// move with it.
///
/// Moves and isolations publish [`TenantEventKind::PlacementStarted`], then `PlacementCompleted`
/// or `PlacementFailed`, through the publisher given; a failure to publish is logged and never
/// fails the operation. Every operation is safe to run again: a tenant already on the target
/// node, or already isolated, is reported as such (no event), and Citus cleans what a failed
/// move left behind before the next one.
///
/// The pool must reach the coordinator as the owner of the distributed tables (or a superuser):
/// Citus allows moves to table owners only.
///
/// ```no_run
/// use tenancy_isolation_sql::{CitusPlacement, NodeName};
///
/// # async fn example(owner: sqlx::PgPool, tenant: tenancy_core::TenantId) -> Result<(), tenancy_isolation_sql::PlacementError> {
/// let placement = CitusPlacement::new(owner);
/// let here = placement.locate(tenant).await?;
/// println!("{tenant} lives on {}", here.node);
/// placement.move_tenant(tenant, &"2".parse::<NodeName>()?).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CitusPlacement {
    pool: PgPool,
    tenant_table: Option<TableName>,
    mode: ShardTransferMode,
    publisher: Arc<dyn EventPublisher>,
    poll: Duration,
}

/// A row of the placement queries.
type PlacementRow = (
    String,
    i32,
    String,
    i32,
    Option<i64>,
    Option<bool>,
    Option<sqlx::types::Uuid>,
);

/// What the admin console shows on a tenant's page: the node, and the schema or shard.
#[async_trait::async_trait]
impl PlacementSource for CitusPlacement {
    async fn placement(&self, tenant: &TenantInfo) -> Result<Option<Placement>, TenantError> {
        let found = match self.locate(tenant.id).await {
            Ok(found) => found,
            Err(PlacementError::NotPlaced { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let placement = Placement::new(format!("Citus node {} (id {})", found.node, found.node.id));
        Ok(Some(match found.kind {
            PlacementKind::Schema { schema } => placement
                .detail("kind", "distributed schema")
                .detail("schema", schema),
            PlacementKind::Shard {
                table,
                shard_id,
                isolated,
            } => placement
                .detail("kind", "row level")
                .detail("table", table)
                .detail("shard", shard_id.to_string())
                .detail(
                    "shard holds",
                    if isolated {
                        "this tenant only"
                    } else {
                        "tenants hashing to its range"
                    },
                ),
        }))
    }
}

impl CitusPlacement {
    /// Placement operations through `owner_pool` (the coordinator), for tenant schemas only,
    /// in the `auto` transfer mode, publishing nothing.
    #[must_use]
    pub fn new(owner_pool: PgPool) -> Self {
        Self {
            pool: owner_pool,
            tenant_table: None,
            mode: ShardTransferMode::default(),
            publisher: Arc::new(NoopPublisher),
            poll: Duration::from_millis(500),
        }
    }

    /// Placement operations as `config` says (its tenant table and transfer mode).
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`](tenancy_core::TenantError) when the tenant table is not a
    /// valid table name.
    pub fn from_config(owner_pool: PgPool, config: &CitusConfig) -> Result<Self, TenantError> {
        let mut placement = Self::new(owner_pool).transfer_mode(config.shard_transfer_mode);
        if let Some(table) = &config.tenant_table {
            placement = placement.tenant_table(TableName::parse(table)?);
        }
        Ok(placement)
    }

    /// Row level: finds tenants' shards through `table`, a table distributed by the tenant
    /// column (its co-located tables move with it).
    #[must_use]
    pub fn tenant_table(mut self, table: TableName) -> Self {
        self.tenant_table = Some(table);
        self
    }

    /// How shards are copied when tenants move ([`ShardTransferMode::Auto`] by default).
    #[must_use]
    pub fn transfer_mode(mut self, mode: ShardTransferMode) -> Self {
        self.mode = mode;
        self
    }

    /// Publishes the placement events through `publisher`.
    #[must_use]
    pub fn with_publisher(mut self, publisher: Arc<dyn EventPublisher>) -> Self {
        self.publisher = publisher;
        self
    }

    /// The cluster's primary nodes that may hold shards (the workers, and the coordinator when
    /// it holds shards), by node id.
    ///
    /// # Errors
    /// [`PlacementError::NotCitus`] or [`PlacementError::Database`].
    pub async fn nodes(&self) -> Result<Vec<Node>, PlacementError> {
        self.ensure_citus().await?;
        let rows: Vec<(i32, String, i32)> = sqlx::query_as(
            "SELECT nodeid, nodename::text, nodeport FROM pg_dist_node \
             WHERE noderole = 'primary' AND isactive AND shouldhaveshards ORDER BY nodeid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing the nodes", None))?;
        Ok(rows
            .into_iter()
            .map(|(id, host, port)| Node { id, host, port })
            .collect())
    }

    /// The node `name` names, among the nodes that may hold shards.
    ///
    /// # Errors
    /// [`PlacementError::UnknownNode`] naming the known ones.
    pub async fn node(&self, name: &NodeName) -> Result<Node, PlacementError> {
        let nodes = self.nodes().await?;
        let found = nodes.iter().find(|n| match name {
            NodeName::Id(id) => n.id == *id,
            NodeName::Address { host, port } => n.host == *host && n.port == i32::from(*port),
        });
        found.cloned().ok_or_else(|| PlacementError::UnknownNode {
            node: name.to_string(),
            known: nodes
                .iter()
                .map(|n| format!("{} {n}", n.id))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    async fn ensure_citus(&self) -> Result<(), PlacementError> {
        let installed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db("checking for the citus extension", None))?;
        if installed {
            Ok(())
        } else {
            Err(PlacementError::NotCitus)
        }
    }

    /// Where `tenant` lives: its distributed schema, else its row-level shard.
    ///
    /// # Errors
    /// [`PlacementError::NotPlaced`] when neither is found.
    pub async fn locate(&self, tenant: TenantId) -> Result<TenantPlacement, PlacementError> {
        self.locate_many(&[tenant])
            .await?
            .pop()
            .ok_or(PlacementError::NotPlaced { tenant })
    }

    /// Where each of `tenants` lives (two queries whatever their number); tenants found
    /// neither way are left out. In the order of `tenants`.
    ///
    /// # Errors
    /// [`PlacementError::NotCitus`] or [`PlacementError::Database`].
    pub async fn locate_many(
        &self,
        tenants: &[TenantId],
    ) -> Result<Vec<TenantPlacement>, PlacementError> {
        self.ensure_citus().await?;
        let schemas: Vec<String> = tenants.iter().map(|t| tenant_schema(*t)).collect();
        let mut found = self.schema_rows(Some(&schemas)).await?;
        if let Some(table) = &self.tenant_table {
            let rest: Vec<sqlx::types::Uuid> = tenants
                .iter()
                .filter(|t| !found.iter().any(|p| p.tenant == **t))
                .map(|t| *t.as_uuid())
                .collect();
            if !rest.is_empty() {
                let rows: Vec<PlacementRow> = sqlx::query_as(
                    "SELECT $1::text, n.nodeid, n.nodename::text, n.nodeport, s.shardid, \
                            s.shardminvalue = s.shardmaxvalue, t.tenant \
                     FROM unnest($2::uuid[]) AS t(tenant) \
                     JOIN pg_dist_shard s \
                       ON s.shardid = get_shard_id_for_distribution_column($1::regclass, t.tenant) \
                     JOIN pg_dist_placement pl ON pl.shardid = s.shardid \
                     JOIN pg_dist_node n ON n.groupid = pl.groupid AND n.noderole = 'primary'",
                )
                .bind(table.quoted())
                .bind(rest)
                .fetch_all(&self.pool)
                .await
                .map_err(db("finding the tenants' shards", None))?;
                found.extend(rows.into_iter().filter_map(Self::placement));
            }
        }
        found.sort_by_key(|p| tenants.iter().position(|t| *t == p.tenant));
        Ok(found)
    }

    /// Every distributed tenant schema and its node, by tenant id.
    ///
    /// # Errors
    /// [`PlacementError::NotCitus`] or [`PlacementError::Database`].
    pub async fn tenant_schemas(&self) -> Result<Vec<TenantPlacement>, PlacementError> {
        self.ensure_citus().await?;
        let mut all = self.schema_rows(None).await?;
        all.sort_by_key(|p| p.tenant);
        Ok(all)
    }

    /// Distributed tenant schemas (those of `only`, or all) with the node of their shards.
    async fn schema_rows(
        &self,
        only: Option<&[String]>,
    ) -> Result<Vec<TenantPlacement>, PlacementError> {
        let rows: Vec<PlacementRow> = sqlx::query_as(
            "SELECT DISTINCT ON (cs.schema_name) cs.schema_name::text, n.nodeid, \
                    n.nodename::text, n.nodeport, NULL::bigint, NULL::bool, NULL::uuid \
             FROM citus_schemas cs \
             JOIN pg_dist_partition p ON p.colocationid = cs.colocation_id \
             JOIN pg_dist_shard s ON s.logicalrelid = p.logicalrelid \
             JOIN pg_dist_placement pl ON pl.shardid = s.shardid \
             JOIN pg_dist_node n ON n.groupid = pl.groupid AND n.noderole = 'primary' \
             WHERE cs.schema_name::text LIKE 'tenant\\_%' \
               AND ($1::text[] IS NULL OR cs.schema_name::text = ANY($1)) \
             ORDER BY cs.schema_name",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await
        .map_err(db("finding the tenant schemas", None))?;
        Ok(rows.into_iter().filter_map(Self::placement).collect())
    }

    fn placement(row: PlacementRow) -> Option<TenantPlacement> {
        let (name, id, host, port, shard, isolated, tenant) = row;
        let node = Node { id, host, port };
        match (shard, tenant) {
            (Some(shard_id), Some(tenant)) => Some(TenantPlacement {
                tenant: TenantId::from_uuid(tenant),
                node,
                kind: PlacementKind::Shard {
                    table: name,
                    shard_id,
                    isolated: isolated.unwrap_or(false),
                },
            }),
            _ => Some(TenantPlacement {
                tenant: tenant_of_schema(&name)?,
                node,
                kind: PlacementKind::Schema { schema: name },
            }),
        }
    }

    async fn publish(&self, tenant: TenantId, kind: TenantEventKind) {
        let event = TenantEvent::now(tenant, kind);
        if let Err(error) = self.publisher.publish(&event).await {
            tracing::error!(
                tenant_id = %tenant,
                event = event.kind.name(),
                %error,
                "publishing a placement event failed; the operation goes on"
            );
        }
    }

    /// Moves `tenant` to the node `to` while it is served: its distributed schema with
    /// `citus_schema_move`, or (row level) its shard, isolated first with
    /// `isolate_tenant_to_new_shard` when it shares it, with `citus_move_shard_placement`.
    ///
    /// In the default `auto` transfer mode writes go on during the move (Citus copies the data,
    /// then replays the changes made meanwhile by logical replication, and blocks writes only
    /// for the final switch); Citus refuses it when a table has no primary key
    /// ([`PlacementError::NoReplicaIdentity`]).
    ///
    /// Publishes `placement_started`, then `placement_completed` or `placement_failed`. Safe to
    /// run again: a tenant already on `to` is [`MoveOutcome::AlreadyThere`] (nothing published).
    ///
    /// # Errors
    /// [`PlacementError::UnknownNode`], [`PlacementError::NotPlaced`],
    /// [`PlacementError::NoReplicaIdentity`], [`PlacementError::Database`].
    pub async fn move_tenant(
        &self,
        tenant: TenantId,
        to: &NodeName,
    ) -> Result<MoveOutcome, PlacementError> {
        let span = tracing::info_span!("tenant_move", tenant_id = %tenant, to = %to);
        async {
            let target = self.node(to).await?;
            let here = self.locate(tenant).await?;
            if here.node.id == target.id {
                tracing::info!(node = %target, "the tenant is on the target node already");
                return Ok(MoveOutcome::AlreadyThere { node: target });
            }
            self.publish(
                tenant,
                TenantEventKind::PlacementStarted {
                    operation: PlacementOperation::Move,
                    from: Some(here.node.to_string()),
                    to: Some(target.to_string()),
                },
            )
            .await;
            tracing::info!(from = %here.node, "moving the tenant");
            let moved = self.transfer(tenant, &here, &target).await;
            self.finish(tenant, PlacementOperation::Move, &here.node, &target, moved)
                .await?;
            Ok(MoveOutcome::Moved {
                from: here.node,
                to: target,
            })
        }
        .instrument(span)
        .await
    }

    /// Publishes the end of an operation; a failed one whose tenant is at the target anyway (a
    /// concurrent run moved it) counts as done.
    async fn finish(
        &self,
        tenant: TenantId,
        operation: PlacementOperation,
        from: &Node,
        to: &Node,
        result: Result<(), PlacementError>,
    ) -> Result<(), PlacementError> {
        let result = match result {
            Err(error) => match self.locate(tenant).await {
                Ok(now) if now.node.id == to.id && operation == PlacementOperation::Move => {
                    tracing::info!(%error, "the move failed, but the tenant is on the target node");
                    Ok(())
                }
                _ => Err(error),
            },
            ok => ok,
        };
        let (from, to) = (Some(from.to_string()), Some(to.to_string()));
        match &result {
            Ok(()) => {
                tracing::info!("placement {operation} completed");
                self.publish(
                    tenant,
                    TenantEventKind::PlacementCompleted {
                        operation,
                        from,
                        to,
                    },
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(%error, "placement {operation} failed");
                self.publish(
                    tenant,
                    TenantEventKind::PlacementFailed {
                        operation,
                        from,
                        to,
                        error: error.to_string(),
                    },
                )
                .await;
            }
        }
        result
    }

    async fn transfer(
        &self,
        tenant: TenantId,
        here: &TenantPlacement,
        target: &Node,
    ) -> Result<(), PlacementError> {
        let table = self.group_table(tenant, &here.kind).await?;
        let mode = self.mode_for(tenant, &table).await?;
        match &here.kind {
            PlacementKind::Schema { schema } => {
                let schema = crate::ident::quote_ident(schema);
                self.citus_op(tenant, "moving the tenant schema", || {
                    sqlx::query(
                        "SELECT citus_schema_move($1::regnamespace, $2, \
                         $3::citus.shard_transfer_mode)",
                    )
                    .bind(&schema)
                    .bind(target.id)
                    .bind(mode.as_str())
                    .execute(&self.pool)
                })
                .await?;
            }
            PlacementKind::Shard {
                isolated, shard_id, ..
            } => {
                // The new shard stays on the node of the one it was split from.
                let shard_id = if *isolated {
                    *shard_id
                } else {
                    self.split(tenant, mode).await?
                };
                self.citus_op(tenant, "moving the tenant's shard", || {
                    sqlx::query(
                        "SELECT citus_move_shard_placement($1, $2, $3, \
                         $4::citus.shard_transfer_mode)",
                    )
                    .bind(shard_id)
                    .bind(here.node.id)
                    .bind(target.id)
                    .bind(mode.as_str())
                    .execute(&self.pool)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Runs one Citus operation, again (up to [`BUSY_RETRIES`] times, `poll` apart) while Citus
    /// answers that a concurrent move or table creation holds the lock it needs: Citus does
    /// not wait for that lock, it fails at once and asks to run the operation again.
    async fn citus_op<T, F, Fut>(
        &self,
        tenant: TenantId,
        what: &'static str,
        op: F,
    ) -> Result<T, PlacementError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) if is_busy(&e) && attempt < BUSY_RETRIES => {
                    attempt += 1;
                    tracing::info!(attempt, error = %e, "{what}: Citus is busy; trying again");
                    tokio::time::sleep(self.poll).await;
                }
                Err(e) => return Err(Self::transfer_error(tenant, what, e)),
            }
        }
    }

    fn transfer_error(tenant: TenantId, what: &'static str, e: sqlx::Error) -> PlacementError {
        if let sqlx::Error::Database(d) = &e {
            if d.message().contains("REPLICA IDENTITY") {
                return PlacementError::NoReplicaIdentity {
                    tenant,
                    message: d.message().to_owned(),
                };
            }
            if is_busy(&e) {
                return PlacementError::Busy {
                    tenant,
                    message: d.message().to_owned(),
                };
            }
        }
        PlacementError::Database {
            what,
            tenant: Some(tenant),
            source: e,
        }
    }

    /// The transfer mode for the co-location group of `table` (a table of the tenant):
    /// `auto` becomes `block_writes` when a table of the group forces row-level security (see
    /// [`PlacementError::ForcedRowSecurity`]) or a worker commits asynchronously (see
    /// [`PlacementError::AsynchronousCommit`]); `force_logical` is refused then.
    async fn mode_for(
        &self,
        tenant: TenantId,
        table: &str,
    ) -> Result<ShardTransferMode, PlacementError> {
        if self.mode == ShardTransferMode::BlockWrites {
            return Ok(self.mode);
        }
        let forced: Option<String> = sqlx::query_scalar(
            "SELECT c.oid::regclass::text FROM pg_dist_partition p \
             JOIN pg_class c ON c.oid = p.logicalrelid \
             WHERE p.colocationid = \
                   (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = $1::regclass) \
               AND c.relrowsecurity AND c.relforcerowsecurity \
             ORDER BY 1 LIMIT 1",
        )
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(
            "checking the tenant's tables for row-level security",
            Some(tenant),
        ))?;
        if let Some(table) = forced {
            if self.mode == ShardTransferMode::ForceLogical {
                return Err(PlacementError::ForcedRowSecurity { tenant, table });
            }
            tracing::info!(
                %table,
                "a table forces row-level security: its shards are copied with writes blocked \
                 (block_writes)"
            );
            return Ok(ShardTransferMode::BlockWrites);
        }
        if let Some(node) = self.asynchronous_worker().await? {
            if self.mode == ShardTransferMode::ForceLogical {
                return Err(PlacementError::AsynchronousCommit { tenant, node });
            }
            tracing::warn!(
                %node,
                "a worker commits asynchronously (synchronous_commit = off): the shards are \
                 copied with writes blocked (block_writes), since a logical-replication move \
                 can lose acknowledged writes there"
            );
            return Ok(ShardTransferMode::BlockWrites);
        }
        Ok(self.mode)
    }

    /// The first worker whose `synchronous_commit` is `off` (as its sessions start with it).
    async fn asynchronous_worker(&self) -> Result<Option<String>, PlacementError> {
        sqlx::query_scalar(
            "SELECT nodename || ':' || nodeport FROM run_command_on_workers('SHOW synchronous_commit') \
             WHERE success AND result = 'off' ORDER BY 1 LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading the workers' synchronous_commit", None))
    }

    /// A table of the tenant's co-location group, for [`mode_for`](Self::mode_for).
    async fn group_table(
        &self,
        tenant: TenantId,
        kind: &PlacementKind,
    ) -> Result<String, PlacementError> {
        match kind {
            PlacementKind::Shard { table, .. } => Ok(table.clone()),
            PlacementKind::Schema { schema } => sqlx::query_scalar(
                "SELECT p.logicalrelid::regclass::text FROM citus_schemas cs \
                 JOIN pg_dist_partition p ON p.colocationid = cs.colocation_id \
                 WHERE cs.schema_name::text = $1 LIMIT 1",
            )
            .bind(schema)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("finding the tenant schema's tables", Some(tenant)))?
            .ok_or(PlacementError::NotPlaced { tenant }),
        }
    }

    /// `isolate_tenant_to_new_shard` with CASCADE (the co-located tables too); the new shard.
    async fn split(
        &self,
        tenant: TenantId,
        mode: ShardTransferMode,
    ) -> Result<i64, PlacementError> {
        let Some(table) = &self.tenant_table else {
            return Err(PlacementError::NotPlaced { tenant });
        };
        let table = table.quoted();
        self.citus_op(tenant, "isolating the tenant's shard", || {
            sqlx::query_scalar(
                "SELECT isolate_tenant_to_new_shard($1::regclass, $2::uuid, 'CASCADE', \
                 $3::citus.shard_transfer_mode)",
            )
            .bind(&table)
            .bind(tenant.as_uuid())
            .bind(mode.as_str())
            .fetch_one(&self.pool)
        })
        .await
    }

    /// Gives a row-level tenant a shard of its own (of the tenant table and every co-located
    /// table), on the node it is on, with `isolate_tenant_to_new_shard`; writes go on meanwhile
    /// in the `auto` mode. A large tenant is isolated first, then moved
    /// ([`move_tenant`](Self::move_tenant) does both).
    ///
    /// Publishes `placement_started`, then `placement_completed` or `placement_failed`. Safe to
    /// run again: an isolated tenant is [`IsolateOutcome::AlreadyIsolated`] (nothing published).
    ///
    /// # Errors
    /// [`PlacementError::NotRowLevel`] for a tenant schema, [`PlacementError::NotPlaced`],
    /// [`PlacementError::NoReplicaIdentity`], [`PlacementError::Database`].
    pub async fn isolate(&self, tenant: TenantId) -> Result<IsolateOutcome, PlacementError> {
        let span = tracing::info_span!("tenant_isolate", tenant_id = %tenant);
        async {
            let here = self.locate(tenant).await?;
            let PlacementKind::Shard {
                shard_id, isolated, ..
            } = &here.kind
            else {
                return Err(PlacementError::NotRowLevel {
                    tenant,
                    operation: PlacementOperation::Isolate,
                });
            };
            if *isolated {
                return Ok(IsolateOutcome::AlreadyIsolated {
                    shard_id: *shard_id,
                    node: here.node,
                });
            }
            let node = Some(here.node.to_string());
            self.publish(
                tenant,
                TenantEventKind::PlacementStarted {
                    operation: PlacementOperation::Isolate,
                    from: node.clone(),
                    to: node,
                },
            )
            .await;
            let table = self.group_table(tenant, &here.kind).await?;
            let split = match self.mode_for(tenant, &table).await {
                Ok(mode) => self.split(tenant, mode).await.map(|_| ()),
                Err(e) => Err(e),
            };
            // Whatever Citus answered, what counts is whether the tenant has its shard now.
            let result = match (split, self.locate(tenant).await) {
                (
                    _,
                    Ok(TenantPlacement {
                        kind:
                            PlacementKind::Shard {
                                isolated: true,
                                shard_id,
                                ..
                            },
                        node,
                        ..
                    }),
                ) => Ok((shard_id, node)),
                (Err(e), _) | (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(_)) => Err(PlacementError::NotPlaced { tenant }),
            };
            let end = match &result {
                Ok((_, node)) => Ok(node.clone()),
                Err(e) => Err(e.to_string()),
            };
            match end {
                Ok(node) => {
                    self.publish(
                        tenant,
                        TenantEventKind::PlacementCompleted {
                            operation: PlacementOperation::Isolate,
                            from: Some(node.to_string()),
                            to: Some(node.to_string()),
                        },
                    )
                    .await;
                }
                Err(error) => {
                    let node = Some(here.node.to_string());
                    self.publish(
                        tenant,
                        TenantEventKind::PlacementFailed {
                            operation: PlacementOperation::Isolate,
                            from: node.clone(),
                            to: node,
                            error,
                        },
                    )
                    .await;
                }
            }
            let (shard_id, node) = result?;
            tracing::info!(shard_id, node = %node, "the tenant has a shard of its own");
            Ok(IsolateOutcome::Isolated { shard_id, node })
        }
        .instrument(span)
        .await
    }

    /// Rebalances the cluster with Citus's background rebalancer (`citus_rebalance_start`, by
    /// shard count), waiting until its job ends and calling `progress` as its moves finish.
    /// When any distributed table forces row-level security, or a worker commits
    /// asynchronously, the job copies with writes blocked, whatever the transfer mode (see
    /// [`PlacementError::ForcedRowSecurity`] and [`PlacementError::AsynchronousCommit`]).
    /// Each tenant schema the plan moves gets `placement_started`, then `placement_completed`
    /// or `placement_failed` (row-level shards move too, but hold tenants by hash range, so
    /// they publish nothing).
    ///
    /// # Errors
    /// [`PlacementError::Rebalance`] when the job fails or is cancelled; the moves it finished
    /// stay. [`PlacementError::Database`].
    pub async fn rebalance(
        &self,
        mut progress: impl FnMut(RebalanceProgress),
    ) -> Result<RebalanceReport, PlacementError> {
        self.ensure_citus().await?;
        // The plan names the shards; a tenant schema's shards all move together.
        let plan: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT n.nspname::text FROM get_rebalance_table_shards_plan() p \
             JOIN pg_class c ON c.oid = p.table_name JOIN pg_namespace n ON n.oid = c.relnamespace",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("planning the rebalance", None))?;
        let planned: Vec<TenantId> = plan
            .iter()
            .filter_map(|(schema,)| tenant_of_schema(schema))
            .collect();
        let before = self.locate_many(&planned).await?;
        // As for one tenant: logical replication cannot write into tables that force row-level
        // security, so with any of them the rebalancer copies with writes blocked.
        let forced: Option<String> = sqlx::query_scalar(
            "SELECT c.oid::regclass::text FROM pg_dist_partition p \
             JOIN pg_class c ON c.oid = p.logicalrelid \
             WHERE c.relrowsecurity AND c.relforcerowsecurity ORDER BY 1 LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db("checking the tables for row-level security", None))?;
        let asynchronous = self.asynchronous_worker().await?;
        let mode = match forced.or(asynchronous) {
            Some(table) => {
                tracing::info!(
                    reason = %table,
                    "a table forcing row-level security, or a worker committing asynchronously: \
                     the rebalancer copies shards with writes blocked (block_writes)"
                );
                ShardTransferMode::BlockWrites
            }
            None => self.mode,
        };
        // Started only now that everything that could refuse the rebalance has been asked: each
        // started event is followed by a completed or a failed one.
        for p in &before {
            self.publish(
                p.tenant,
                TenantEventKind::PlacementStarted {
                    operation: PlacementOperation::Rebalance,
                    from: Some(p.node.to_string()),
                    to: None,
                },
            )
            .await;
        }
        let started: Result<Option<i64>, PlacementError> = sqlx::query_scalar(
            "SELECT citus_rebalance_start(shard_transfer_mode => $1::citus.shard_transfer_mode)",
        )
        .bind(mode.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db("starting the rebalance", None));
        let job_id = match started {
            Ok(job_id) => job_id,
            Err(error) => return Err(self.rebalance_failed(&before, error).await),
        };
        let outcome = match job_id {
            Some(job_id) => self.wait_for_job(job_id, &mut progress).await,
            None => Ok(0),
        };
        let after = match self.locate_many(&planned).await {
            Ok(after) => after,
            Err(error) => return Err(self.rebalance_failed(&before, error).await),
        };
        let mut tenants = Vec::new();
        for was in &before {
            let now = after.iter().find(|p| p.tenant == was.tenant);
            let from = Some(was.node.to_string());
            match (now, &outcome) {
                (Some(now), _) if now.node.id != was.node.id => {
                    tenants.push(RebalancedTenant {
                        tenant: was.tenant,
                        from: was.node.clone(),
                        to: now.node.clone(),
                    });
                    self.publish(
                        was.tenant,
                        TenantEventKind::PlacementCompleted {
                            operation: PlacementOperation::Rebalance,
                            from,
                            to: Some(now.node.to_string()),
                        },
                    )
                    .await;
                }
                (_, Err(error)) => {
                    self.publish(
                        was.tenant,
                        TenantEventKind::PlacementFailed {
                            operation: PlacementOperation::Rebalance,
                            from,
                            to: None,
                            error: error.to_string(),
                        },
                    )
                    .await;
                }
                // Planned, but the rebalancer left it where it was: done, and still there.
                (_, Ok(_)) => {
                    self.publish(
                        was.tenant,
                        TenantEventKind::PlacementCompleted {
                            operation: PlacementOperation::Rebalance,
                            from: from.clone(),
                            to: from,
                        },
                    )
                    .await;
                }
            }
        }
        let moves = outcome?;
        tracing::info!(
            ?job_id,
            moves,
            tenants = tenants.len(),
            "rebalance finished"
        );
        Ok(RebalanceReport {
            job_id,
            moves,
            tenants,
        })
    }

    /// Polls Citus's background job until it ends; the number of tasks it ran.
    /// Publishes `placement_failed` for every tenant a rebalance had started, and returns the
    /// error.
    async fn rebalance_failed(
        &self,
        started: &[TenantPlacement],
        error: PlacementError,
    ) -> PlacementError {
        for p in started {
            self.publish(
                p.tenant,
                TenantEventKind::PlacementFailed {
                    operation: PlacementOperation::Rebalance,
                    from: Some(p.node.to_string()),
                    to: None,
                    error: error.to_string(),
                },
            )
            .await;
        }
        error
    }

    async fn wait_for_job(
        &self,
        job_id: i64,
        progress: &mut impl FnMut(RebalanceProgress),
    ) -> Result<u64, PlacementError> {
        loop {
            let (state, done, total): (String, i64, i64) = sqlx::query_as(
                "SELECT j.state::text, \
                        (SELECT count(*) FROM pg_dist_background_task t \
                          WHERE t.job_id = j.job_id AND t.status = 'done'), \
                        (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id) \
                 FROM pg_dist_background_job j WHERE j.job_id = $1",
            )
            .bind(job_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db("following the rebalance", None))?;
            let (done, total) = (done.unsigned_abs(), total.unsigned_abs());
            progress(RebalanceProgress { done, total });
            match state.as_str() {
                "finished" => return Ok(total),
                "failed" | "cancelled" => {
                    let message: Option<String> = sqlx::query_scalar(
                        "SELECT message FROM pg_dist_background_task \
                         WHERE job_id = $1 AND status IN ('error', 'cancelled') \
                         ORDER BY task_id LIMIT 1",
                    )
                    .bind(job_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("reading the rebalance's failure", None))?
                    .flatten();
                    return Err(PlacementError::Rebalance {
                        job_id,
                        state,
                        message,
                    });
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Per-tenant activity from `citus_stat_tenants`, the busiest first (by queries over both
    /// periods). Needs `citus.stat_tenants_track = 'all'` on every node (Citus tracks no tenant
    /// by default).
    ///
    /// # Errors
    /// [`PlacementError::NotCitus`] or [`PlacementError::Database`].
    pub async fn stats(&self) -> Result<Vec<TenantStats>, PlacementError> {
        self.ensure_citus().await?;
        type Row = (String, i32, i64, i64, i64, i64, f64, f64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT tenant_attribute, nodeid, \
                    query_count_in_this_period::bigint, query_count_in_last_period::bigint, \
                    read_count_in_this_period::bigint, read_count_in_last_period::bigint, \
                    cpu_usage_in_this_period, cpu_usage_in_last_period \
             FROM citus_stat_tenants \
             WHERE tenant_attribute IS NOT NULL \
             ORDER BY query_count_in_this_period + query_count_in_last_period DESC, \
                      tenant_attribute",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading citus_stat_tenants", None))?;
        Ok(rows
            .into_iter()
            .map(
                |(attribute, node_id, queries, queries_last, reads, reads_last, cpu, cpu_last)| {
                    TenantStats {
                        tenant: attribute
                            .parse::<TenantId>()
                            .ok()
                            .or_else(|| tenant_of_schema(&attribute)),
                        attribute,
                        node_id,
                        queries,
                        queries_last_period: queries_last,
                        reads,
                        reads_last_period: reads_last,
                        cpu_seconds: cpu,
                        cpu_seconds_last_period: cpu_last,
                    }
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_parse_as_ids_or_addresses() {
        assert_eq!("7".parse::<NodeName>().unwrap(), NodeName::Id(7));
        let name: NodeName = "db-2.internal:6432".parse().unwrap();
        assert_eq!(name.to_string(), "db-2.internal:6432");
        for bad in [
            "",
            ":5432",
            "host:",
            "host:99999",
            "two words:5432",
            "worker",
        ] {
            let err = bad.parse::<NodeName>().unwrap_err();
            assert!(
                matches!(err, PlacementError::InvalidNode(_)),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_nodes_are_bad_input_and_the_rest_isolation_failures() {
        let err: TenantError = PlacementError::UnknownNode {
            node: "9".into(),
            known: "2 a:1".into(),
        }
        .into();
        assert!(matches!(err, TenantError::InvalidInput { .. }));
        let err: TenantError = PlacementError::NotCitus.into();
        assert!(matches!(err, TenantError::Isolation { .. }));
    }
}
