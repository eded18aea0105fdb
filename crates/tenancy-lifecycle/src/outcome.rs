//! [`Outcome`]: a stored change, and whether its events were published.

use tenancy_core::{TenantError, TenantInfo};

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
