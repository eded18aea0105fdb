use tenancy_core::{SLUG_MAX_LEN, Slug, TenantError, TenantRef};

use crate::config::{self, ResolutionConfig};
use crate::context::ResolutionContext;
use crate::resolver::{Resolution, TenantResolver};

/// Reads the tenant slug from the host: exactly one label before the configured base domain,
/// compared case-insensitively, port and trailing dot ignored. The bare base domain, deeper
/// subdomains (`a.b.app.example.com`) and IP literals name no tenant.
///
/// ```
/// use tenancy_resolution::{Resolution, ResolutionContext, SubdomainResolver, TenantResolver};
///
/// let resolver = SubdomainResolver::new("App.Example.com", 30)?;
/// let request = http::Request::builder().header("host", "ACME.app.example.com:443").body(())?;
/// match resolver.resolve(&ResolutionContext::from_request(&request)) {
///     Resolution::Found(tenant) => assert_eq!(tenant.to_string(), "slug:acme"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SubdomainResolver {
    /// Lowercase, without leading or trailing dot.
    base: Box<str>,
    priority: i32,
}

impl SubdomainResolver {
    /// A resolver for subdomains of `base_domain`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `base_domain` is not a domain name.
    pub fn new(base_domain: &str, priority: i32) -> Result<Self, TenantError> {
        let base = base_domain.trim().trim_matches('.').to_ascii_lowercase();
        let valid = !base.is_empty()
            && base.len() <= 253
            && base.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= SLUG_MAX_LEN
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(TenantError::Configuration(format!(
                "resolution.subdomain_base_domain `{base_domain}` is not a domain name such as \
                 app.example.com"
            )));
        }
        Ok(Self {
            base: base.into_boxed_str(),
            priority,
        })
    }

    /// The resolver `config` describes.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `subdomain_base_domain` is missing or invalid.
    pub fn from_config(config: &ResolutionConfig) -> Result<Self, TenantError> {
        let base = config.subdomain_base_domain.as_deref().ok_or_else(|| {
            TenantError::Configuration(
                "resolution.resolvers lists `subdomain` but resolution.subdomain_base_domain is \
                 not set: set it (app.example.com) or remove `subdomain`"
                    .into(),
            )
        })?;
        Self::new(base, config.priority(config::SUBDOMAIN, 30))
    }

    /// The slug `host` names under the base domain, if any.
    fn slug(&self, host: &str) -> Option<Slug> {
        let host = host.as_bytes();
        if host.first() == Some(&b'[') {
            return None; // IPv6 literal
        }
        let host = match host.iter().rposition(|b| *b == b':') {
            Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
            Some(_) => return None,
            None => host,
        };
        let host = host.strip_suffix(b".").unwrap_or(host);
        let base = self.base.as_bytes();
        let label_len = host.len().checked_sub(base.len() + 1)?;
        let (label, rest) = host.split_at(label_len);
        let (dot, domain) = rest.split_first()?;
        if *dot != b'.' || !domain.eq_ignore_ascii_case(base) || label.contains(&b'.') {
            return None;
        }
        let mut lower = [0u8; SLUG_MAX_LEN];
        let lower = lower.get_mut(..label.len())?;
        lower.copy_from_slice(label);
        lower.make_ascii_lowercase();
        Slug::from_bytes(lower).ok()
    }
}

impl TenantResolver for SubdomainResolver {
    fn name(&self) -> &str {
        config::SUBDOMAIN
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        cx.host()
            .and_then(|host| self.slug(host))
            .map_or(Resolution::NotFound, |slug| {
                Resolution::Found(TenantRef::Slug(slug))
            })
    }
}
