use futures_util::future::BoxFuture;
use tenancy_core::{DomainName, TenantError, TenantRef, normalize_host};

use crate::config::{self, ResolutionConfig};
use crate::context::ResolutionContext;
use crate::resolver::{Resolution, TenantResolver};
use crate::validator::TenantValidator;

/// Finds the tenant that owns the request's host as one of its custom domains (`acme.com`,
/// `portal.acme.example`), through the [`TenantValidator`]'s domain cache.
///
/// The host (the `Host` header, else the URI authority) is normalised first
/// ([`normalize_host`]: lower case, port and trailing dot removed, internationalised labels in
/// punycode); a host that is no domain name (an IP address, `localhost`, bad characters) names no
/// tenant and costs no lookup. A cached host answers at once, like a cached header; a miss is
/// looked up in the store once however many requests wait for it, and an unknown host is cached
/// as such for `negative_ttl`. Adding or removing a domain invalidates its entry (across processes
/// through the change feed).
///
/// It runs at priority 35 by default, after `subdomain` (30): a host under the subdomain base
/// domain is the subdomain resolver's, so that no tenant can claim another's subdomain as its
/// custom domain.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::{CreateTenant, InMemoryStore, TenantInfo, TenantRef, TenantStore};
/// use tenancy_resolution::{DomainResolver, ResolutionContext, TenantResolver, TenantValidator, ValidatorConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let acme = store.create(TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?).await?;
/// store.add_domain(acme.id, &"acme.com".parse()?, true).await?;
///
/// let resolver = DomainResolver::new(TenantValidator::new(store, &ValidatorConfig::default())?, 35);
/// let request = http::Request::builder().header("host", "ACME.com:443").body(())?;
/// let cx = ResolutionContext::from_request(&request);
/// assert_eq!(resolver.resolve_deferred(&cx).await?, Some(TenantRef::Id(acme.id)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct DomainResolver {
    validator: TenantValidator,
    priority: i32,
}

impl DomainResolver {
    /// A resolver looking hosts up through `validator`.
    #[must_use]
    pub fn new(validator: TenantValidator, priority: i32) -> Self {
        Self {
            validator,
            priority,
        }
    }

    /// The resolver `config` describes.
    #[must_use]
    pub fn from_config(config: &ResolutionConfig, validator: TenantValidator) -> Self {
        Self::new(validator, config.priority(config::DOMAIN, 35))
    }
}

impl TenantResolver for DomainResolver {
    fn name(&self) -> &str {
        config::DOMAIN
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        let Some(host) = cx.host().and_then(|host| normalize_host(host).ok()) else {
            return Resolution::NotFound;
        };
        match self.validator.cached_domain(&host) {
            Some(Some(id)) => Resolution::Found(TenantRef::Id(id)),
            Some(None) => Resolution::NotFound,
            None => Resolution::Deferred,
        }
    }

    fn resolve_deferred<'a>(
        &'a self,
        cx: &'a ResolutionContext<'a>,
    ) -> BoxFuture<'a, Result<Option<TenantRef>, TenantError>> {
        Box::pin(async move {
            let Some(domain) = cx
                .host()
                .and_then(|host| normalize_host(host).ok())
                .and_then(|host| host.parse::<DomainName>().ok())
            else {
                return Ok(None);
            };
            Ok(self
                .validator
                .lookup_domain(&domain)
                .await?
                .map(TenantRef::Id))
        })
    }
}
