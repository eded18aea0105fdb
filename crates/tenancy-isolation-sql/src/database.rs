//! Database per tenant: the contracts ([`Placement`], [`PlacementStore`], [`DatabaseProvisioner`])
//! and [`DatabaseStrategy`], which ties them into an [`IsolationStrategy`].
//!
//! The SQL parts (the router, the reference provisioner, the placement table) need feature `sql`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tenancy_core::{IsolationPlan, IsolationStep, IsolationStrategy, TenantError, TenantId};

use crate::ident::validate_identifier;

/// Checks a server key: 1 to 63 bytes of lowercase ASCII letters, digits, `_` or `-`.
///
/// # Errors
/// [`TenantError::InvalidInput`] (field `server`).
pub fn validate_server_key(key: &str) -> Result<(), TenantError> {
    if key.is_empty()
        || key.len() > 63
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(TenantError::invalid(
            "server",
            format!("{key:?} must be 1 to 63 lowercase ASCII letters, digits, '_' or '-'"),
        ));
    }
    Ok(())
}

/// Where a tenant's database lives: a server (by its configured key) and a database name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    server: String,
    database: String,
}

impl Placement {
    /// A placement, validating both names.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when the server key or the database name is invalid.
    pub fn new(
        server: impl Into<String>,
        database: impl Into<String>,
    ) -> Result<Self, TenantError> {
        let (server, database) = (server.into(), database.into());
        validate_server_key(&server)?;
        validate_identifier("database", &database)?;
        Ok(Self { server, database })
    }

    /// The placement of `tenant` on `server`, in the database `tenant_<32 hex>`.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when the server key is invalid.
    pub fn for_tenant(server: impl Into<String>, tenant: TenantId) -> Result<Self, TenantError> {
        Self::new(server, crate::ident::tenant_schema(tenant))
    }

    /// The server key.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The database name.
    #[must_use]
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The key carried by [`IsolationStep::Route`]: `server/database`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.server, self.database)
    }

    /// Parses a [`key`](Self::key) back.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when it is not `server/database` of valid names.
    pub fn parse_key(key: &str) -> Result<Self, TenantError> {
        let (server, database) = key.split_once('/').ok_or_else(|| {
            TenantError::invalid("placement", format!("{key:?} is not server/database"))
        })?;
        Self::new(server, database)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.database)
    }
}

/// Where placements are kept (see `PgIsolationStore` with feature `sql`).
#[async_trait]
pub trait PlacementStore: Send + Sync + fmt::Debug {
    /// The placement of `tenant`, if it has one.
    async fn placement(&self, tenant: TenantId) -> Result<Option<Placement>, TenantError>;

    /// Records `tenant`'s placement, replacing any earlier one.
    async fn set_placement(
        &self,
        tenant: TenantId,
        placement: &Placement,
    ) -> Result<(), TenantError>;

    /// Forgets `tenant`'s placement (idempotent).
    async fn remove_placement(&self, tenant: TenantId) -> Result<(), TenantError>;
}

/// Creates and drops tenant databases wherever they live; the application implements it (or uses
/// `PgDatabaseProvisioner` with feature `sql`). Both methods are idempotent.
#[async_trait]
pub trait DatabaseProvisioner: Send + Sync + fmt::Debug {
    /// Creates the database of `tenant` (if absent) and says where it is.
    async fn create(&self, tenant: TenantId) -> Result<Placement, TenantError>;

    /// Drops the database at `placement` (absent: Ok).
    async fn drop_database(
        &self,
        tenant: TenantId,
        placement: &Placement,
    ) -> Result<(), TenantError>;
}

/// Database per tenant (`database`): provisioning creates the tenant's database and records its
/// placement; the plan routes the work to that placement.
#[derive(Debug, Clone)]
pub struct DatabaseStrategy {
    provisioner: Arc<dyn DatabaseProvisioner>,
    placements: Arc<dyn PlacementStore>,
}

impl DatabaseStrategy {
    /// A strategy creating databases with `provisioner` and recording them in `placements`.
    #[must_use]
    pub fn new(
        provisioner: Arc<dyn DatabaseProvisioner>,
        placements: Arc<dyn PlacementStore>,
    ) -> Self {
        Self {
            provisioner,
            placements,
        }
    }
}

#[async_trait]
impl IsolationStrategy for DatabaseStrategy {
    fn name(&self) -> &str {
        "database"
    }

    async fn provision(&self, tenant: TenantId) -> Result<(), TenantError> {
        let placement = self.provisioner.create(tenant).await?;
        self.placements.set_placement(tenant, &placement).await?;
        tracing::info!(tenant_id = %tenant, %placement, "tenant database provisioned");
        Ok(())
    }

    async fn deprovision(&self, tenant: TenantId) -> Result<(), TenantError> {
        let Some(placement) = self.placements.placement(tenant).await? else {
            return Ok(());
        };
        self.provisioner.drop_database(tenant, &placement).await?;
        self.placements.remove_placement(tenant).await?;
        tracing::info!(tenant_id = %tenant, %placement, "tenant database dropped");
        Ok(())
    }

    async fn plan(&self, tenant: TenantId) -> Result<IsolationPlan, TenantError> {
        let placement =
            self.placements
                .placement(tenant)
                .await?
                .ok_or(TenantError::Provisioning {
                    tenant,
                    last_error: Some("the tenant has no database placement".into()),
                })?;
        Ok(IsolationPlan::new(vec![IsolationStep::Route {
            placement: placement.key(),
        }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_validate_and_round_trip() {
        let p = Placement::new("eu-1", "tenant_abc").unwrap();
        assert_eq!(Placement::parse_key(&p.key()).unwrap(), p);
        assert!(Placement::new("EU", "x").is_err());
        assert!(Placement::new("eu", "x\"y").is_err());
        assert!(Placement::new("eu", "pg_x").is_err());
        assert!(Placement::parse_key("eu").is_err());
        assert!(Placement::parse_key("eu/a/b").is_err());
    }
}
