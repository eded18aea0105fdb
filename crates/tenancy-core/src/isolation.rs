//! The isolation-strategy trait and the plan a strategy applies to a unit of database work.
//!
//! A strategy (row level, schema per tenant, database per tenant, or an application's own) provisions
//! a tenant's isolation, deprovisions it, and says how to isolate one unit of database work for a
//! tenant as an [`IsolationPlan`]. The SQL layer (`tenancy-isolation-sql`) carries the plan out
//! inside a transaction, so whatever it sets ends with the transaction.

use std::borrow::Cow;
use std::fmt;

use async_trait::async_trait;

use crate::error::TenantError;
use crate::id::TenantId;
use crate::tenant::TenantInfo;

/// One step of isolating a unit of database work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsolationStep {
    /// Run the work on the connection pool of this placement (database per tenant). Must come first.
    Route {
        /// The placement key the router understands.
        placement: String,
    },
    /// Set a transaction-local setting: `SET LOCAL name = 'value'`, or `set_config(name, value, true)`
    /// for a value that cannot be written into SQL text (row level).
    SetLocal {
        /// The setting name, such as `app.tenant_id`.
        name: Cow<'static, str>,
        /// Its value.
        value: String,
    },
    /// Set the transaction-local `search_path` to this schema, then `pg_temp` (schema per tenant).
    SearchPath {
        /// The schema name; the executor quotes it.
        schema: String,
    },
}

/// How to isolate one unit of database work for one tenant: steps applied in order, at the start of
/// a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IsolationPlan {
    /// The steps, in order.
    pub steps: Vec<IsolationStep>,
}

impl IsolationPlan {
    /// A plan with the given steps.
    #[must_use]
    pub fn new(steps: Vec<IsolationStep>) -> Self {
        Self { steps }
    }

    /// The placement the work must be routed to, if the plan routes it.
    #[must_use]
    pub fn placement(&self) -> Option<&str> {
        self.steps.iter().find_map(|step| match step {
            IsolationStep::Route { placement } => Some(placement.as_str()),
            _ => None,
        })
    }
}

/// A way of isolating tenants' data.
///
/// `provision` and `deprovision` are idempotent: running either twice is the same as once.
#[async_trait]
pub trait IsolationStrategy: Send + Sync + fmt::Debug {
    /// The strategy's registry name (`row_level`, `schema`, `database`, ...).
    fn name(&self) -> &str;

    /// Prepares the tenant's isolation (creates a schema, a database, ...).
    async fn provision(&self, tenant: TenantId) -> Result<(), TenantError>;

    /// Removes (or archives) the tenant's isolation.
    async fn deprovision(&self, tenant: TenantId) -> Result<(), TenantError>;

    /// How to isolate one unit of database work for `tenant`.
    async fn plan(&self, tenant: TenantId) -> Result<IsolationPlan, TenantError>;
}

/// Where a tenant's data lives, as its isolation reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// One line: the node, database or shard group holding the tenant's data.
    pub summary: String,
    /// Further facts, as (name, value) pairs, shown in a table.
    pub details: Vec<(String, String)>,
}

impl Placement {
    /// A placement described by `summary`, without details.
    #[must_use]
    pub fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    /// Adds a (name, value) detail.
    #[must_use]
    pub fn detail(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((name.into(), value.into()));
        self
    }
}

/// The hook through which an isolation reports a tenant's placement (a database per tenant, a
/// Citus worker...), for operators: the admin console (`tenancy-admin`) shows it on a tenant's
/// page. `tenancy-isolation-sql`'s `CitusPlacement` implements it.
#[async_trait]
pub trait PlacementSource: Send + Sync + fmt::Debug {
    /// Where `tenant`'s data lives, or `None` when the isolation has nothing to say about it.
    ///
    /// # Errors
    /// The isolation's error; the page shows it in place of the placement.
    async fn placement(&self, tenant: &TenantInfo) -> Result<Option<Placement>, TenantError>;
}
