//! Multi-tenancy for Rust web services, in one bundle.

mod bundle;
mod config;
pub mod integration;

pub use bundle::{
    DEFAULT_HEALTH_TIMEOUT, Phase, ProviderError, ShutdownError, Tenancy, TenancyBuilder,
};
pub use config::{ConfigError, ENV_PREFIX, SECTION, TenancyConfig};
pub use integration::IntegrationConfig;

pub use tenancy_core as core;
