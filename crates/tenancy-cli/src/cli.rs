//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tenancy::core::{DomainName, IdError, Slug, TenantId, TenantRef};

/// The default database: the demo's SQLite file in the current directory.
pub(crate) const DEFAULT_DATABASE: &str = "sqlite://tenancy-demo.db";

/// Multi-tenancy for Rust web services: a demo server, tenant administration, and schema migrations
/// across tenants.
///
/// Exit status: 0 on success, 2 for bad arguments (nothing is changed), 1 when the operation
/// failed (unknown tenant, conflict, unreachable database, audit findings, failed migration).
#[derive(Debug, Parser)]
#[command(name = "tenancy", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The tenant store: `sqlite://FILE` or `postgres://...` [default: the `store.url` of
    /// `--config`, else sqlite://tenancy-demo.db]
    #[arg(
        long,
        global = true,
        env = "TENANCY_DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) database: Option<String>,

    /// A YAML file whose `tenancy:` section configures the stack (`TENANCY__*` variables override
    /// it); admin commands only: the demo configures itself.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Print JSON instead of human-readable tables (for scripts).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve a tenant-aware demo application.
    ///
    /// On an empty store it creates acme and globex (active) and initech (suspended), then prints
    /// their ids, the admin token, the JWT secret and ready-to-paste curl lines.
    ///
    /// The demo resolves tenants four ways: a JWT's `tenant_id` claim (trusted), the `x-tenant-id`
    /// header (a tenant id), the subdomain under `localhost` (`Host: acme.localhost`), and the path
    /// (`/tenants/acme/api/...`).
    ///
    /// Membership rule: a request with a valid bearer token is made by the user in its `sub` claim.
    /// When such a request names its tenant through the header, the subdomain or the path
    /// (resolvers that are not trusted), the user must be a member of that tenant, or the answer
    /// is 403. The demo's members: alice belongs to acme and initech, bob to globex. A token's own
    /// `tenant_id` claim is trusted. Requests without a token are anonymous and pass on the tenant
    /// alone.
    Demo(DemoArgs),
    /// Create, list, show, update and change the status of tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Add, remove and list a tenant's custom domains; make one primary.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// Read and write per-tenant configuration overrides.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Migrate every tenant schema (PostgreSQL).
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Audit row-level security, of a database or of migration files; exits 1 on findings.
    ///
    /// Every table with a `tenant_id` column (the `isolation.tenant_column` of `--config`) must
    /// enable and force row-level security under a fail-closed policy with WITH CHECK, and the
    /// application role must be neither superuser, nor BYPASSRLS, nor the owner.
    ///
    /// Without `--migrations` the audit reads the catalog of the PostgreSQL database. With
    /// `--migrations DIR` it reads the migration files of DIR instead, before they run, and needs
    /// no database: each file is parsed by PostgreSQL's own parser and replayed in version order,
    /// and each finding names the file and line of the statement it comes from. A file that
    /// cannot be read or parsed is an error (exit status 2) naming the file and line.
    Audit(AuditArgs),
    /// Show the busiest tenants of a running service, from its Prometheus metrics endpoint.
    ///
    /// Columns: requests naming the tenant (served + refused), served, refused (suspended,
    /// inactive, ...), limited (by per-tenant limits, when the service has them), mean and p99
    /// latency of served requests in milliseconds (the p99 is the upper bound of its histogram
    /// bucket). Counts are totals since the service started. Tenants beyond the service's label
    /// cap are counted together as `other`; requests naming no (existing) tenant are summed by
    /// outcome below the table.
    Top(TopArgs),
    /// Where tenants live on a Citus cluster, and moving them (needs `isolation.citus.enabled`
    /// in --config, and --database on the coordinator).
    ///
    /// A tenant schema is found as a Citus distributed schema; a row-level tenant through the
    /// shard of `isolation.citus.tenant_table` holding its id.
    #[command(subcommand)]
    Placement(PlacementCommand),
    /// Per-tenant activity on a Citus cluster, from `citus_stat_tenants`, the busiest first.
    ///
    /// Columns: queries and read queries in Citus's current period (`citus.stat_tenants_period`,
    /// 60 s by default) and the period before, CPU seconds in both, and the node that served
    /// them. Citus tracks tenants only with `citus.stat_tenants_track = 'all'` on every node.
    Stats(StatsArgs),
}

/// `tenancy placement ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PlacementCommand {
    /// The cluster's nodes and where each tenant (or one) lives.
    Show {
        /// Tenant id or slug [default: every tenant of the store, up to --limit]
        tenant: Option<TenantArg>,
        /// How many tenants to show at most, without a tenant (1 to 100000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
    },
    /// Move a tenant to another node while it is served (a row-level tenant gets a shard of
    /// its own first). Moving a tenant to the node it is on does nothing.
    Move {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// The node: its Citus node id, or `host:port` as registered (see `placement show`).
        #[arg(long)]
        to: NodeArg,
    },
    /// Give a row-level tenant a shard of its own, on the node it is on (does nothing when it
    /// has one).
    Isolate {
        /// Tenant id or slug.
        tenant: TenantArg,
    },
    /// Even out the shards over the nodes with Citus's rebalancer; waits until it ends.
    Rebalance,
}

/// A node named on the command line (parsed before anything is opened).
#[derive(Debug, Clone)]
pub(crate) struct NodeArg(pub(crate) tenancy::isolation::NodeName);

impl std::str::FromStr for NodeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|e| e.to_string())
    }
}

/// Options of `tenancy stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// How many tenants to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,
}

/// Options of `tenancy top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The metrics endpoint (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8080/metrics")]
    pub(crate) url: String,

    /// How many tenants to show.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,

    /// Refresh every second until interrupted (with --json: one JSON document per line).
    #[arg(long)]
    pub(crate) watch: bool,

    /// With --watch: stop after this many refreshes.
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
}

/// Options of `tenancy demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,

    /// Bearer token of the admin API [default: generated at start]
    #[arg(long, env = "TENANCY_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,

    /// HS256 secret the demo signs and verifies JWTs with, at least 32 bytes [default: generated at
    /// start]
    #[arg(long, env = "TENANCY_DEMO_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
}

/// A tenant named on the command line: its id or its slug.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TenantArg(pub(crate) TenantRef);

impl std::str::FromStr for TenantArg {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.parse::<TenantId>() {
            return Ok(Self(TenantRef::Id(id)));
        }
        s.parse::<Slug>().map(|slug| Self(TenantRef::Slug(slug)))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Create a tenant (it is provisioned, then active).
    Create {
        /// Unique slug: lowercase a-z, 0-9 and '-', 1 to 63 bytes.
        #[arg(long)]
        slug: Slug,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// Billing plan.
        #[arg(long)]
        plan: Option<String>,
    },
    /// List tenants.
    List {
        /// Only active tenants.
        #[arg(long)]
        active: bool,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Start after this tenant id (from the previous page).
        #[arg(long)]
        after: Option<TenantId>,
    },
    /// Show one tenant.
    Show {
        /// Tenant id or slug.
        tenant: TenantArg,
    },
    /// Change a tenant's name, slug or plan.
    Update {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New slug.
        #[arg(long)]
        slug: Option<Slug>,
        /// New plan.
        #[arg(long, conflicts_with = "clear_plan")]
        plan: Option<String>,
        /// Remove the plan.
        #[arg(long)]
        clear_plan: bool,
    },
    /// Activate a tenant.
    Activate {
        /// Tenant id or slug.
        tenant: TenantArg,
    },
    /// Suspend a tenant.
    Suspend {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// Why (kept on the tenant).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deactivate a tenant.
    Deactivate {
        /// Tenant id or slug.
        tenant: TenantArg,
    },
    /// Finish the provisioning of tenants left `provisioning` (a create interrupted before its
    /// activation); exits 1 when one still fails.
    Recover {
        /// Only tenants unchanged for at least this long (`30s`, `5m`, `1h`): younger ones may be
        /// in the middle of a create in another process.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
}

/// `tenancy domains ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DomainsCommand {
    /// List a tenant's domains, primary first.
    List {
        /// Tenant id or slug.
        tenant: TenantArg,
    },
    /// Give a tenant a domain (its first domain becomes primary).
    Add {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// A full host name such as `acme.com` (any case; international names are stored in
        /// their ASCII form).
        domain: DomainName,
        /// Make it the tenant's primary domain.
        #[arg(long)]
        primary: bool,
    },
    /// Take a domain from a tenant (when it was primary, the oldest remaining one becomes
    /// primary).
    Remove {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// The domain.
        domain: DomainName,
    },
    /// Make one of a tenant's domains its primary domain.
    Primary {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// The domain.
        domain: DomainName,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// The tenant's value for a key (override, else default).
    Get {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// Configuration key.
        key: String,
    },
    /// Set an override; the value is JSON (`'"dark"'`, `42`, `'{"a":1}'`).
    Set {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// Configuration key.
        key: String,
        /// JSON value.
        value: String,
    },
    /// Remove an override.
    Unset {
        /// Tenant id or slug.
        tenant: TenantArg,
        /// Configuration key.
        key: String,
    },
    /// The tenant's effective configuration: the defaults of `--config` (`overrides.defaults`)
    /// merged with the tenant's overrides.
    Effective {
        /// Tenant id or slug.
        tenant: TenantArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasCommand {
    /// Apply a directory of versioned SQL files to every tenant schema; resumable.
    Migrate {
        /// Directory of `NNNN_name.sql` files.
        #[arg(long)]
        dir: PathBuf,
        /// Tenants migrated at once (1 to 32).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
        concurrency: u16,
    },
    /// Which tenant schemas are current and which are behind.
    Status {
        /// Directory of `NNNN_name.sql` files.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Audit the migration files of DIR, not a database: sqlx's `<version>_<name>.sql` and
    /// `<version>_<name>.up.sql` files, in version order (`.down.sql` and other files are
    /// skipped)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["role", "schema"])]
    pub(crate) migrations: Option<PathBuf>,
    /// The role the application connects as [default: the connected role]
    #[arg(long)]
    pub(crate) role: Option<String>,
    /// Audit only these schemas (repeatable) [default: every non-system schema, the tenant
    /// store's own schema included]
    #[arg(long)]
    pub(crate) schema: Vec<String>,
}
