//! [`TenantError`], the one error type of the tenancy crates.

use crate::domain::DomainName;
use crate::id::{Slug, TenantId, TenantRef};
use crate::tenant::TenantStatus;

/// A boxed error that can cross threads, used as the source of wrapped failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the tenancy crates.
///
/// Each case carries what a caller needs to act on it. `Storage`, `Isolation`, `Migration` and
/// `Publish` keep the underlying error as their [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// No tenant has this id or slug.
    #[error("tenant {tenant} not found")]
    NotFound {
        /// The reference that was looked up.
        tenant: TenantRef,
    },
    /// The tenant exists but is inactive.
    #[error("tenant {tenant} is inactive")]
    Inactive {
        /// The tenant.
        tenant: TenantId,
    },
    /// The tenant exists but is suspended.
    #[error("tenant {tenant} is suspended{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Suspended {
        /// The tenant.
        tenant: TenantId,
        /// Why it was suspended, when known.
        reason: Option<String>,
    },
    /// The tenant's isolation is not provisioned yet.
    #[error("tenant {tenant} is still provisioning{}", last_error.as_deref().map(|r| format!(" (last attempt failed: {r})")).unwrap_or_default())]
    Provisioning {
        /// The tenant.
        tenant: TenantId,
        /// The error of the last failed provisioning attempt, if any.
        last_error: Option<String>,
    },
    /// The tenant of a request could not be determined.
    #[error("tenant resolution failed: {0}")]
    Resolution(String),
    /// The configuration is invalid; the message names the key and what is expected.
    #[error("invalid configuration: {0}")]
    Configuration(String),
    /// A field of a command or argument is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field or argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Another tenant already has this slug.
    #[error("slug {slug} is already taken by another tenant")]
    SlugConflict {
        /// The contested slug.
        slug: Slug,
    },
    /// Another tenant already owns this domain.
    #[error("domain {domain} already belongs to another tenant")]
    DomainConflict {
        /// The contested domain.
        domain: DomainName,
    },
    /// The tenant does not own this domain.
    #[error("tenant {tenant} has no domain {domain}")]
    DomainNotFound {
        /// The tenant.
        tenant: TenantId,
        /// The domain.
        domain: DomainName,
    },
    /// The transition table forbids this status change.
    #[error("tenant {tenant} cannot go from {from} to {to}")]
    IllegalTransition {
        /// The tenant.
        tenant: TenantId,
        /// Its current status.
        from: TenantStatus,
        /// The requested status.
        to: TenantStatus,
    },
    /// The tenant's status changed between reading it and writing the new one (a concurrent change
    /// won); read it again and decide.
    #[error("tenant {tenant} changed concurrently: expected status {expected}, found {actual}")]
    StatusConflict {
        /// The tenant.
        tenant: TenantId,
        /// The status the change was based on.
        expected: TenantStatus,
        /// The status found.
        actual: TenantStatus,
    },
    /// A schema migration failed.
    #[error("migration failed: {message}")]
    Migration {
        /// What was being migrated.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Applying, provisioning or deprovisioning isolation failed.
    #[error("isolation failed: {message}")]
    Isolation {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The store failed (connection lost, query failed, stored data unreadable).
    #[error("storage failed: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// An event could not be published.
    #[error("publishing {event} for tenant {tenant} failed")]
    Publish {
        /// The event kind.
        event: &'static str,
        /// The tenant of the event.
        tenant: TenantId,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl TenantError {
    /// A storage failure with its source.
    pub fn storage(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Storage {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An isolation failure with its source.
    pub fn isolation(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Isolation {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A migration failure with its source.
    pub fn migration(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Migration {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An invalid field.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    /// The error that explains why `tenant` may not serve requests, or `None` when it is active.
    #[must_use]
    pub fn for_status(tenant: &crate::TenantInfo) -> Option<Self> {
        match tenant.status {
            TenantStatus::Active => None,
            TenantStatus::Inactive => Some(Self::Inactive { tenant: tenant.id }),
            TenantStatus::Suspended => Some(Self::Suspended {
                tenant: tenant.id,
                reason: tenant.status_reason.clone(),
            }),
            TenantStatus::Provisioning => Some(Self::Provisioning {
                tenant: tenant.id,
                last_error: tenant.status_reason.clone(),
            }),
        }
    }

    /// Whether the error comes from infrastructure (store, isolation, migration, publisher) rather
    /// than from the tenant's state or the caller's input; such errors may succeed when retried.
    #[must_use]
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            Self::Storage { .. }
                | Self::Isolation { .. }
                | Self::Migration { .. }
                | Self::Publish { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn messages_say_what_is_wrong() {
        let id: TenantId = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293".parse().unwrap();
        let err = TenantError::Suspended {
            tenant: id,
            reason: Some("unpaid".into()),
        };
        assert_eq!(
            err.to_string(),
            "tenant 0190d5a0-7c1e-7a2b-9c3d-4e5f60718293 is suspended: unpaid"
        );
        let err = TenantError::NotFound {
            tenant: TenantRef::Slug("acme".parse().unwrap()),
        };
        assert_eq!(err.to_string(), "tenant slug:acme not found");
        let err = TenantError::storage("loading tenant", std::io::Error::other("connection reset"));
        assert_eq!(err.to_string(), "storage failed: loading tenant");
        assert_eq!(err.source().unwrap().to_string(), "connection reset");
        assert!(err.is_infrastructure());
        assert!(!TenantError::Inactive { tenant: id }.is_infrastructure());
    }
}
