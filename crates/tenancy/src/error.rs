//! [`Error`]: why a tenancy stack could not be built or started.

use tenancy_core::TenantError;

use crate::bundle::ProviderError;
use crate::config::ConfigError;

/// Why [`configure`](crate::configure) or [`stub`](crate::stub) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A part of the stack could not be built (the store could not be reached, a strategy is not
    /// registered, ...).
    #[error("building the tenancy stack failed: {0}")]
    Build(#[from] TenantError),
    /// A provider failed to boot; the providers booted before it were shut down.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}
