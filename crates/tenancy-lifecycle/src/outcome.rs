//! [`Outcome`]: a stored change, and whether its events were published.

use tenancy_core::{DomainChange, TenantError, TenantInfo};

/// The result of a lifecycle operation whose change the store accepted.
///
/// The change is stored whatever the publisher did: a publisher failure never undoes it. Each
/// failure is logged (with `tenant_id`) and kept here as a [`TenantError::Publish`], so a caller that
/// must not miss an event can retry publishing, or turn the outcome into an error with
/// [`Outcome::into_result`].
#[derive(Debug)]
#[must_use = "an outcome may carry publish failures"]
pub struct Outcome {
    /// The tenant as stored after the operation.
    pub tenant: TenantInfo,
    /// The events that could not be published, each a [`TenantError::Publish`]; empty when every
    /// event was published.
    pub publish_errors: Vec<TenantError>,
}

impl Outcome {
    pub(crate) fn new(tenant: TenantInfo) -> Self {
        Self {
            tenant,
            publish_errors: Vec::new(),
        }
    }

    /// Whether every event of the operation was published.
    #[must_use]
    pub fn is_published(&self) -> bool {
        self.publish_errors.is_empty()
    }

    /// The tenant, dropping any publish failure (they were logged).
    #[must_use]
    pub fn into_tenant(self) -> TenantInfo {
        self.tenant
    }

    /// The tenant, or the first publish failure (the change is stored either way).
    ///
    /// # Errors
    /// The first [`TenantError::Publish`].
    pub fn into_result(self) -> Result<TenantInfo, TenantError> {
        match self.publish_errors.into_iter().next() {
            None => Ok(self.tenant),
            Some(error) => Err(error),
        }
    }
}

/// The result of a change to a tenant's domains that the store accepted: the tenant's domains
/// after it, and the events that could not be published (as in [`Outcome`]).
#[derive(Debug)]
#[must_use = "an outcome may carry publish failures"]
pub struct DomainOutcome {
    /// The tenant's domains after the change, and whether anything changed.
    pub change: DomainChange,
    /// The events that could not be published, each a [`TenantError::Publish`].
    pub publish_errors: Vec<TenantError>,
}

impl DomainOutcome {
    /// The change, or the first publish failure (the change is stored either way).
    ///
    /// # Errors
    /// The first [`TenantError::Publish`].
    pub fn into_result(self) -> Result<DomainChange, TenantError> {
        match self.publish_errors.into_iter().next() {
            None => Ok(self.change),
            Some(error) => Err(error),
        }
    }
}
