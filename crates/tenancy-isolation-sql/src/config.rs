//! [`IsolationConfig`], the `isolation` section of the tenancy configuration.

use std::collections::BTreeMap;

use serde::Deserialize;
use tenancy_core::TenantError;
use tenancy_pg_connect::TlsConfig;

use crate::ident::validate_setting_name;

/// What deprovisioning a tenant schema does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeprovisionPolicy {
    /// Rename the schema to `archived_<32 hex>_<unix seconds>`, keeping its data (the default).
    #[default]
    Rename,
    /// Drop the schema and everything in it (`DROP SCHEMA ... CASCADE`).
    Drop,
}

impl std::str::FromStr for DeprovisionPolicy {
    type Err = TenantError;

    /// Parses `rename` or `drop`; anything else is a configuration error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rename" => Ok(Self::Rename),
            "drop" => Ok(Self::Drop),
            other => Err(TenantError::Configuration(format!(
                "isolation.deprovision: unknown policy {other:?}; expected \"rename\" or \"drop\""
            ))),
        }
    }
}

/// Configuration of tenant data isolation (the `isolation` section).
///
/// Every field has a default; unknown fields and unknown deprovision policies are errors.
///
/// ```
/// use tenancy_isolation_sql::{DeprovisionPolicy, IsolationConfig};
///
/// let config: IsolationConfig = serde_json::from_str(r#"{"deprovision": "drop"}"#).unwrap();
/// assert_eq!(config.strategy, "row_level");
/// assert_eq!(config.deprovision, DeprovisionPolicy::Drop);
/// assert!(serde_json::from_str::<IsolationConfig>(r#"{"deprovision": "truncate"}"#).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IsolationConfig {
    /// The default strategy's registry name (`row_level`).
    pub strategy: String,
    /// The transaction-local setting that carries the tenant id for row-level security
    /// (`app.tenant_id`).
    pub tenant_setting: String,
    /// The column that holds the tenant id in row-level tables (`tenant_id`), audited at boot.
    pub tenant_column: String,
    /// What deprovisioning a tenant schema does (`rename`).
    pub deprovision: DeprovisionPolicy,
    /// A directory of versioned SQL files (`0001_name.sql`, ...) applied to each tenant schema on
    /// provisioning and by the migrator (none by default).
    pub migrations_dir: Option<String>,
    /// How many tenants the migrator migrates at once (2). Concurrent DDL across schemas can
    /// deadlock on shared catalogs: keep it small.
    pub migrator_concurrency: usize,
    /// Database per tenant: the servers tenants can be placed on, by key, as connection URLs of the
    /// application role (the database part is replaced by each tenant's database); each may carry
    /// `sslmode` and `sslrootcert`.
    pub servers: BTreeMap<String, String>,
    /// Database per tenant: TLS of the connections to every server of `servers`; each key set
    /// overrides the URL's parameter.
    pub tls: TlsConfig,
    /// Database per tenant: how many tenant pools the router keeps open at most (100); the least
    /// recently used pool beyond that is closed.
    pub pool_cache_capacity: u64,
    /// Database per tenant: the connection limit of each tenant pool (5).
    pub pool_max_connections: u32,
    /// Running on a Citus coordinator (the `citus` section: off by default).
    pub citus: CitusConfig,
}

/// How Citus copies a tenant's shards to another node (`citus.shard_transfer_mode`).
///
/// Citus's non-blocking transfers use logical replication, which can carry the `UPDATE` and
/// `DELETE` of a table only when it has a primary key (or another replica identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardTransferMode {
    /// Writes go on during the transfer (logical replication); Citus refuses the transfer when a
    /// table of the tenant has no replica identity (the default).
    #[default]
    Auto,
    /// Writes go on during the transfer, also for tables without a replica identity, whose
    /// `UPDATE` and `DELETE` then fail while the transfer runs.
    ForceLogical,
    /// Writes to the tenant wait while its shards are copied; reads go on.
    BlockWrites,
}

impl ShardTransferMode {
    /// The value of Citus's `citus.shard_transfer_mode` type.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ForceLogical => "force_logical",
            Self::BlockWrites => "block_writes",
        }
    }
}

impl std::str::FromStr for ShardTransferMode {
    type Err = TenantError;

    /// Parses `auto`, `force_logical` or `block_writes`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "force_logical" => Ok(Self::ForceLogical),
            "block_writes" => Ok(Self::BlockWrites),
            other => Err(TenantError::invalid(
                "shard_transfer_mode",
                format!("{other:?}: expected auto, force_logical or block_writes"),
            )),
        }
    }
}

/// Running on a Citus coordinator (the `isolation.citus` section).
///
/// ```
/// use tenancy_isolation_sql::{IsolationConfig, ShardTransferMode};
///
/// let config: IsolationConfig = serde_json::from_str(
///     r#"{"citus": {"enabled": true, "tenant_table": "items", "shard_transfer_mode": "block_writes"}}"#,
/// ).unwrap();
/// assert!(config.citus.enabled);
/// assert_eq!(config.citus.shard_transfer_mode, ShardTransferMode::BlockWrites);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CitusConfig {
    /// The database is a Citus coordinator (false): row-level transactions send the tenant
    /// setting so that the workers' policies see it (`TenantDatabase::on_citus`), tenant schemas
    /// are provisioned as distributed schemas (`SchemaStrategy::distributed_on_citus`), and the
    /// stack offers placement operations.
    pub enabled: bool,
    /// Row level: a distributed table of the tenants' co-location group (`items`, or
    /// `schema.items`), through which a tenant's shard is found, isolated and moved (none: only
    /// tenant schemas are placed).
    pub tenant_table: Option<String>,
    /// How tenants' shards are copied when they move (`auto`).
    pub shard_transfer_mode: ShardTransferMode,
}

/// Shows the server URLs without their passwords.
impl std::fmt::Debug for IsolationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: BTreeMap<&str, String> = self
            .servers
            .iter()
            .map(|(key, url)| (key.as_str(), tenancy_core::redact_url(url)))
            .collect();
        f.debug_struct("IsolationConfig")
            .field("strategy", &self.strategy)
            .field("tenant_setting", &self.tenant_setting)
            .field("tenant_column", &self.tenant_column)
            .field("deprovision", &self.deprovision)
            .field("migrations_dir", &self.migrations_dir)
            .field("migrator_concurrency", &self.migrator_concurrency)
            .field("servers", &servers)
            .field("tls", &self.tls)
            .field("pool_cache_capacity", &self.pool_cache_capacity)
            .field("pool_max_connections", &self.pool_max_connections)
            .field("citus", &self.citus)
            .finish()
    }
}

impl Default for IsolationConfig {
    fn default() -> Self {
        Self {
            strategy: "row_level".to_owned(),
            tenant_setting: "app.tenant_id".to_owned(),
            tenant_column: "tenant_id".to_owned(),
            deprovision: DeprovisionPolicy::Rename,
            migrations_dir: None,
            migrator_concurrency: 2,
            servers: BTreeMap::new(),
            tls: TlsConfig::default(),
            pool_cache_capacity: 100,
            pool_max_connections: 5,
            citus: CitusConfig::default(),
        }
    }
}

impl IsolationConfig {
    /// Checks the values serde cannot: names, positive sizes.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the key and what is expected.
    pub fn validate(&self) -> Result<(), TenantError> {
        let config =
            |key: &str, e: TenantError| TenantError::Configuration(format!("isolation.{key}: {e}"));
        validate_setting_name(&self.tenant_setting).map_err(|e| config("tenant_setting", e))?;
        crate::ident::validate_identifier("tenant_column", &self.tenant_column)
            .map_err(|e| config("tenant_column", e))?;
        if self.migrator_concurrency == 0 {
            return Err(TenantError::Configuration(
                "isolation.migrator_concurrency must be at least 1".into(),
            ));
        }
        if self.pool_cache_capacity == 0 || self.pool_max_connections == 0 {
            return Err(TenantError::Configuration(
                "isolation.pool_cache_capacity and isolation.pool_max_connections must be at least 1"
                    .into(),
            ));
        }
        for key in self.servers.keys() {
            crate::database::validate_server_key(key).map_err(|e| config("servers", e))?;
        }
        self.tls.validate("isolation.tls")?;
        if let Some(table) = &self.citus.tenant_table {
            crate::ident::TableName::parse(table).map_err(|e| config("citus.tenant_table", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn debug_hides_server_passwords() {
        let mut config = IsolationConfig::default();
        config
            .servers
            .insert("eu1".into(), "postgres://app:s3cret@eu1/x".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:<redacted>@eu1/x"), "{shown}");
    }

    use super::*;

    #[test]
    fn defaults_match_and_validate() {
        let config = IsolationConfig::default();
        assert_eq!(config.strategy, "row_level");
        assert_eq!(config.tenant_setting, "app.tenant_id");
        assert_eq!(config.deprovision, DeprovisionPolicy::Rename);
        assert_eq!(config.migrator_concurrency, 2);
        config.validate().unwrap();
        let parsed: IsolationConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn bad_values_are_configuration_errors() {
        assert!(serde_json::from_str::<IsolationConfig>(r#"{"deprovision":"archive"}"#).is_err());
        assert!(serde_json::from_str::<IsolationConfig>(r#"{"stratgy":"x"}"#).is_err());
        let config = IsolationConfig {
            tenant_setting: "tenant".into(),
            ..IsolationConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert!(matches!(err, TenantError::Configuration(m) if m.contains("tenant_setting")));
        assert_eq!(
            "drop".parse::<DeprovisionPolicy>().unwrap(),
            DeprovisionPolicy::Drop
        );
        let err = "archive".parse::<DeprovisionPolicy>().unwrap_err();
        assert!(matches!(err, TenantError::Configuration(m) if m.contains("archive")));
        let config = IsolationConfig {
            migrator_concurrency: 0,
            ..IsolationConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn citus_section_is_off_by_default_and_checked() {
        assert_eq!(IsolationConfig::default().citus, CitusConfig::default());
        assert!(!CitusConfig::default().enabled);
        assert!(
            serde_json::from_str::<IsolationConfig>(r#"{"citus":{"shard_transfer_mode":"fast"}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<IsolationConfig>(r#"{"citus":{"enable":true}}"#).is_err());
        let config: IsolationConfig =
            serde_json::from_str(r#"{"citus":{"enabled":true,"tenant_table":"Items; --"}}"#)
                .unwrap();
        let err = config.validate().unwrap_err();
        assert!(
            matches!(&err, TenantError::Configuration(m) if m.contains("citus.tenant_table")),
            "{err}"
        );
        assert_eq!(
            "force_logical".parse::<ShardTransferMode>().unwrap(),
            ShardTransferMode::ForceLogical
        );
        assert!("fast".parse::<ShardTransferMode>().is_err());
        assert_eq!(ShardTransferMode::BlockWrites.as_str(), "block_writes");
    }
}
