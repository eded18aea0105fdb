//! [`CliError`]: why a command failed, and the exit status it maps to.

use std::process::ExitCode;

use tenancy::core::TenantError;

/// Why a `tenancy` command or the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The arguments are invalid (exit status 2); nothing was changed.
    #[error("{0}")]
    Usage(String),
    /// The tenancy stack refused or failed the operation (exit status 2 for invalid input, 1
    /// otherwise).
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The tenancy stack could not be built or started.
    #[error(transparent)]
    Stack(#[from] tenancy::Error),
    /// The configuration file is invalid (exit status 2).
    #[error(transparent)]
    Config(#[from] tenancy::ConfigError),
    /// Some providers of the stack failed to shut down.
    #[error(transparent)]
    Shutdown(#[from] tenancy::ShutdownError),
    /// A socket or a terminal failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The migration files given to `audit --migrations` cannot be audited: unreadable,
    /// misnamed, or refused by PostgreSQL's parser (exit status 2); the message names the file,
    /// and the line for a syntax error.
    #[error(transparent)]
    Migrations(#[from] tenancy::isolation::MigrationAuditError),
    /// The command ran and found problems (audit findings, failed tenant migrations); they were
    /// printed (exit status 1).
    #[error("{0}")]
    Findings(String),
}

impl CliError {
    /// An I/O error while doing `what`.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit status: 2 for bad input, 1 for failures.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        let usage = match self {
            Self::Usage(_)
            | Self::Config(_)
            | Self::Migrations(_)
            | Self::Stack(tenancy::Error::Config(_)) => true,
            Self::Tenant(e) | Self::Stack(tenancy::Error::Build(e)) => is_bad_input(e),
            Self::Stack(_) | Self::Shutdown(_) | Self::Io { .. } | Self::Findings(_) => false,
        };
        ExitCode::from(if usage { 2 } else { 1 })
    }
}

/// Whether the error blames the caller's input rather than the state of the tenants or the
/// infrastructure.
pub(crate) fn is_bad_input(error: &TenantError) -> bool {
    matches!(
        error,
        TenantError::InvalidInput { .. } | TenantError::Configuration(_)
    )
}
