//! Multi-tenancy for Rust web services, in one bundle.

mod bundle;
mod config;
mod error;
pub mod integration;
mod providers;
mod stack;
mod store;

pub use bundle::{
    DEFAULT_HEALTH_TIMEOUT, Phase, ProviderError, ShutdownError, Tenancy, TenancyBuilder,
};
pub use config::{ConfigError, ENV_PREFIX, SECTION, TenancyConfig};
pub use error::Error;
pub use integration::IntegrationConfig;
pub use stack::{DEFAULT_EVENT_CAPACITY, StackBuilder, configure, stub};

pub use tenancy_core as core;
pub use tenancy_isolation_sql as isolation;
pub use tenancy_lifecycle as lifecycle;
pub use tenancy_overrides as overrides;
pub use tenancy_resolution as resolution;
pub use tenancy_store_sql as store_sql;
