use http::HeaderName;
use tenancy_core::TenantError;

use super::found;
use crate::config::{self, KeyKind, ResolutionConfig};
use crate::context::ResolutionContext;
use crate::resolver::{Resolution, TenantResolver};

/// Reads the tenant from a request header (default `x-tenant-id`), value trimmed, parsed as an id
/// (default) or a slug. A header sent more than once names no tenant.
///
/// ```
/// use tenancy_resolution::{HeaderResolver, KeyKind, Resolution, ResolutionContext, TenantResolver};
///
/// let resolver = HeaderResolver::new("x-tenant".parse()?, KeyKind::Slug, 20);
/// let request = http::Request::builder().header("x-tenant", " acme ").body(())?;
/// assert!(matches!(resolver.resolve(&ResolutionContext::from_request(&request)), Resolution::Found(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HeaderResolver {
    header: HeaderName,
    kind: KeyKind,
    priority: i32,
}

impl HeaderResolver {
    /// A resolver reading `header` as `kind`.
    #[must_use]
    pub fn new(header: HeaderName, kind: KeyKind, priority: i32) -> Self {
        Self {
            header,
            kind,
            priority,
        }
    }

    /// The resolver `config` describes.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `header_name` is not a valid header name.
    pub fn from_config(config: &ResolutionConfig) -> Result<Self, TenantError> {
        let header = HeaderName::try_from(config.header_name.trim()).map_err(|_| {
            TenantError::Configuration(format!(
                "resolution.header_name `{}` is not a valid HTTP header name",
                config.header_name
            ))
        })?;
        Ok(Self::new(
            header,
            config.header_kind,
            config.priority(config::HEADER, 20),
        ))
    }
}

impl TenantResolver for HeaderResolver {
    fn name(&self) -> &str {
        config::HEADER
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        let mut values = cx.headers().get_all(&self.header).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => found(self.kind.parse(value.as_bytes().trim_ascii())),
            _ => Resolution::NotFound,
        }
    }
}
