//! [`PgTenantStore`]: the tenant and config store on PostgreSQL (feature `postgres`), and the
//! [`ChangeFeed`] that keeps every process's caches fresh.
//!
//! The tables live in their own schema (default `tenancy`), never in a tenant's. Every mutation
//! runs in one transaction which, when the change feed is on, also sends a [`ChangeNotice`] with
//! `SELECT pg_notify($1, $2)`: the notice is delivered on commit, and never for a rolled-back change.
//!
//! [`ChangeNotice`]: crate::ChangeNotice

mod feed;

use std::str::FromStr;

use sqlx::Postgres;
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tenancy_core::{Invalidators, TenantError};

pub use feed::{ChangeFeed, FeedSettings};

use crate::config::{Identifier, StoreConfig};
use crate::error::storage;
use crate::migrate::{Embedded, Records, StoreMigrations};
use crate::sql_store::sealed::{Backend, Unique};
use crate::sql_store::{Parts, SqlStore};
use crate::statements::{Dialect, Statements};

/// The tenant and config store on PostgreSQL.
///
/// ```no_run
/// use tenancy_core::{Invalidators, TenantStore};
/// use tenancy_store_sql::{PgTenantStore, StoreConfig};
///
/// # async fn run() -> Result<(), tenancy_core::TenantError> {
/// let store = PgTenantStore::connect(&StoreConfig::with_url("postgres://app@localhost/app")).await?;
/// // Every cache registered in `invalidators` now learns of changes made by any process.
/// let invalidators = Invalidators::new();
/// let feed = store.start_change_feed(invalidators).await?;
/// let page = store.list(Default::default()).await?;
/// # drop(page);
/// feed.shutdown().await;
/// # Ok(()) }
/// ```
pub type PgTenantStore = SqlStore<Postgres>;

/// The embedded migrations (`{schema}` is replaced by the quoted schema name).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tenants and config overrides",
        r"
CREATE TABLE {schema}.tenants (
    id uuid PRIMARY KEY,
    slug text NOT NULL CONSTRAINT tenants_slug_key UNIQUE,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('provisioning', 'active', 'inactive', 'suspended')),
    status_reason text,
    plan text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX tenants_active_idx ON {schema}.tenants (id) WHERE status = 'active';
CREATE TABLE {schema}.config (
    tenant_id uuid NOT NULL REFERENCES {schema}.tenants (id) ON DELETE CASCADE,
    key text NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
",
    ),
    (
        2,
        "tenant domains",
        r"
CREATE TABLE {schema}.domains (
    domain text CONSTRAINT domains_pkey PRIMARY KEY CHECK (length(domain) BETWEEN 3 AND 253),
    tenant_id uuid NOT NULL REFERENCES {schema}.tenants (id) ON DELETE CASCADE,
    is_primary boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);
CREATE INDEX domains_tenant_idx ON {schema}.domains (tenant_id);
CREATE UNIQUE INDEX domains_one_primary_idx ON {schema}.domains (tenant_id) WHERE is_primary;
",
    ),
];

/// The unique constraint on `tenants.slug`.
const SLUG_CONSTRAINT: &str = "tenants_slug_key";
/// The primary key of `tenants`.
const ID_CONSTRAINT: &str = "tenants_pkey";
/// The primary key of `domains`.
const DOMAIN_CONSTRAINT: &str = "domains_pkey";

impl Backend for Postgres {
    const BACKEND: &'static str = "postgres";
    const BEGIN: &'static str = "BEGIN";
    /// The channel a change feed of this store listens on.
    type Extra = String;

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn unique_violation(err: &dyn DatabaseError) -> Option<Unique> {
        match err.constraint()? {
            SLUG_CONSTRAINT => Some(Unique::Slug),
            ID_CONSTRAINT => Some(Unique::Id),
            DOMAIN_CONSTRAINT => Some(Unique::Domain),
            _ => None,
        }
    }
}

/// The embedded migrations for the schema `quoted`.
fn embedded(quoted: &str) -> Vec<Embedded> {
    MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            (*version, *description, sql.replace("{schema}", quoted))
        })
        .collect()
}

/// The migrations for `schema`, recorded in its table `schema_migrations`.
fn migrations(schema: &Identifier) -> StoreMigrations {
    let quoted = schema.quoted();
    StoreMigrations::new(
        format!("the store schema {schema:?}"),
        embedded(&quoted),
        Records {
            table: format!("{quoted}.schema_migrations"),
            schema: Some(quoted.clone()),
            legacy_exists: format!(
                "SELECT count(*) FROM pg_catalog.pg_tables \
                 WHERE schemaname = '{}' AND tablename = 'schema_version'",
                schema.as_str()
            ),
            legacy_table: format!("{quoted}.schema_version"),
        },
    )
}

impl SqlStore<Postgres> {
    /// Connects to `config.url` (`postgres://...`) and runs the migrations unless `config.migrate`
    /// is off.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid configuration or URL,
    /// [`TenantError::Storage`] when the server cannot be reached, [`TenantError::Migration`] when
    /// migrating fails.
    pub async fn connect(config: &StoreConfig) -> Result<Self, TenantError> {
        config.validate()?;
        let options = PgConnectOptions::from_str(config.require_url()?).map_err(|e| {
            TenantError::Configuration(format!("store.url is not a PostgreSQL URL: {e}"))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout())
            .connect_with(options)
            .await
            .map_err(|e| storage("connecting to the PostgreSQL store", e))?;
        Self::from_pool(pool, config).await
    }

    /// Wraps an existing pool; `config` gives the schema, channel and whether to migrate and
    /// notify (its `url` and pool settings are not used).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid schema or channel, [`TenantError::Migration`]
    /// when migrating fails.
    pub async fn from_pool(pool: PgPool, config: &StoreConfig) -> Result<Self, TenantError> {
        let schema = Identifier::new("store.schema", &config.schema)?;
        let feed_channel = Identifier::new("store.notify_channel", &config.notify_channel)?;
        let quoted = schema.quoted();
        let dialect = Dialect {
            tenants: format!("{quoted}.tenants"),
            config: format!("{quoted}.config"),
            domains: format!("{quoted}.domains"),
            to_json: "::jsonb",
            to_text: "::text",
            lock: " FOR UPDATE",
            touch: ", updated_at = now()",
        };
        let parts = Parts {
            pool,
            sql: Statements::new(&dialect),
            migrations: migrations(&schema),
            notify: config.change_feed.then(|| feed_channel.clone()),
            extra: feed_channel.as_str().to_owned(),
        };
        Self::from_parts(parts, config.migrate).await
    }

    /// Starts a [`ChangeFeed`] on this store's server and channel, invalidating `invalidators`,
    /// with default [`FeedSettings`] otherwise.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when the first connection or `LISTEN` fails.
    pub async fn start_change_feed(
        &self,
        invalidators: Invalidators,
    ) -> Result<ChangeFeed, TenantError> {
        let settings = FeedSettings::new(self.extra().as_str());
        ChangeFeed::start(
            (*self.pool().connect_options()).clone(),
            settings,
            invalidators,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::is_gapless;

    #[test]
    fn migrations_are_gapless_and_schema_is_quoted() {
        let schema = Identifier::new("store.schema", "order").unwrap();
        let embedded = embedded(&schema.quoted());
        assert!(is_gapless(&embedded));
        assert!(embedded[0].2.contains("CREATE TABLE \"order\".config"));
        assert!(embedded[1].2.contains("REFERENCES \"order\".tenants"));
        assert_eq!(migrations(&schema).latest(), 2);
    }
}
