//! The [`TenantResolver`] trait and the [`ResolverRegistry`], the composite resolver that asks
//! resolvers in priority order.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tenancy_core::{TenantError, TenantRef};

use crate::config::{Builtin, ResolutionConfig};
use crate::context::ResolutionContext;
use crate::resolvers::{
    DomainResolver, HeaderResolver, JwtClaimResolver, PathResolver, SubdomainResolver,
};
use crate::validator::TenantValidator;

/// The answer of [`TenantResolver::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// This tenant.
    Found(TenantRef),
    /// This resolver finds no tenant in the request; the next one is asked.
    NotFound,
    /// The answer needs I/O: [`TenantResolver::resolve_deferred`] is awaited.
    Deferred,
}

/// Finds which tenant a request names.
///
/// Resolution is two-phase so that the common case costs no future and no allocation: `resolve`
/// answers synchronously from the request; a resolver that must await (an API-key lookup, say)
/// answers [`Resolution::Deferred`] and does its work in `resolve_deferred`, which the registry
/// awaits only then.
///
/// ```
/// use tenancy_resolution::{Resolution, ResolutionContext, TenantResolver};
///
/// /// Tenants by `?tenant=<slug>`, for a demo.
/// #[derive(Debug)]
/// struct QueryResolver;
///
/// impl TenantResolver for QueryResolver {
///     fn name(&self) -> &str { "query" }
///     fn priority(&self) -> i32 { 50 }
///     fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
///         cx.uri().query()
///             .and_then(|q| q.strip_prefix("tenant="))
///             .and_then(|v| tenancy_resolution::KeyKind::Slug.parse(v.as_bytes()))
///             .map_or(Resolution::NotFound, Resolution::Found)
///     }
/// }
/// ```
pub trait TenantResolver: Send + Sync + fmt::Debug {
    /// The resolver's name (`header`, `jwt_claim`, ...), used in configuration, logs and trust
    /// decisions.
    fn name(&self) -> &str;

    /// Lower runs first.
    fn priority(&self) -> i32;

    /// Answers from the request alone. Must not block.
    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution;

    /// Answers when [`resolve`](Self::resolve) said [`Resolution::Deferred`].
    ///
    /// An error whose [`is_infrastructure`](TenantError::is_infrastructure) is true makes the
    /// middleware answer 503; any other error counts as "no tenant".
    fn resolve_deferred<'a>(
        &'a self,
        _cx: &'a ResolutionContext<'a>,
    ) -> BoxFuture<'a, Result<Option<TenantRef>, TenantError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// A resolver in a registry, with its effective priority and shared name.
#[derive(Debug, Clone)]
struct Entry {
    priority: i32,
    name: Arc<str>,
    resolver: Arc<dyn TenantResolver>,
}

/// What the registry found: the tenant and the name of the resolver that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The tenant, as the resolver named it.
    pub tenant: TenantRef,
    /// The resolver's name.
    pub resolver: Arc<str>,
}

/// The outcome of the synchronous phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncResolution {
    /// Resolver `index` found the tenant.
    Found(TenantRef, usize),
    /// No resolver found one.
    NotFound,
    /// Resolver `index` must be awaited; the ones before it found nothing.
    Deferred(usize),
}

/// The composite resolver: resolvers ordered by priority (ties keep registration order), asked in
/// turn; the first answer wins, with the name of the resolver that gave it.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::InMemoryStore;
/// use tenancy_resolution::{ResolutionConfig, ResolutionContext, ResolverRegistry, TenantValidator};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let config = ResolutionConfig::default();
/// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
/// let registry = ResolverRegistry::from_config(&config, &validator)?;
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["jwt_claim", "header", "path"]);
///
/// let request = http::Request::builder().uri("/tenants/acme/orders").body(())?;
/// let found = registry.resolve(&ResolutionContext::from_request(&request)).await?.unwrap();
/// assert_eq!(found.tenant.to_string(), "slug:acme");
/// assert_eq!(&*found.resolver, "path");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct ResolverRegistry {
    entries: Vec<Entry>,
    priorities: std::collections::BTreeMap<String, i32>,
    /// The key set of the built-in `jwt_claim` resolver, when it verifies against a JWKS.
    #[cfg(feature = "jwks")]
    jwks: Option<crate::JwksCache>,
}

impl ResolverRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in resolvers that `config` names, with their configured priorities; the
    /// `domain` resolver looks hosts up through `validator`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for a name listed twice,
    /// `subdomain` without `subdomain_base_domain`, an invalid header name, path pattern or JWT
    /// verification setting.
    pub fn from_config(
        config: &ResolutionConfig,
        validator: &TenantValidator,
    ) -> Result<Self, TenantError> {
        let mut registry = Self {
            entries: Vec::new(),
            priorities: config.priorities.clone(),
            #[cfg(feature = "jwks")]
            jwks: None,
        };
        for builtin in config.active_resolvers() {
            if registry.names().any(|n| n == builtin.name()) {
                return Err(TenantError::Configuration(format!(
                    "resolution.resolvers lists `{builtin}` twice"
                )));
            }
            let resolver: Arc<dyn TenantResolver> = match builtin {
                Builtin::JwtClaim => {
                    let resolver = JwtClaimResolver::from_config(config)?;
                    #[cfg(feature = "jwks")]
                    {
                        registry.jwks = resolver.jwks().cloned();
                    }
                    Arc::new(resolver)
                }
                Builtin::Header => Arc::new(HeaderResolver::from_config(config)?),
                Builtin::Subdomain => Arc::new(SubdomainResolver::from_config(config)?),
                Builtin::Domain => Arc::new(DomainResolver::from_config(config, validator.clone())),
                Builtin::Path => Arc::new(PathResolver::from_config(config)?),
            };
            registry.register(resolver);
        }
        Ok(registry)
    }

    /// Adds a resolver; a priority override configured for its name applies.
    pub fn register(&mut self, resolver: Arc<dyn TenantResolver>) -> &mut Self {
        let name: Arc<str> = Arc::from(resolver.name());
        let priority = self
            .priorities
            .get(&*name)
            .copied()
            .unwrap_or_else(|| resolver.priority());
        let at = self.entries.partition_point(|e| e.priority <= priority);
        self.entries.insert(
            at,
            Entry {
                priority,
                name,
                resolver,
            },
        );
        self
    }

    /// Adds a resolver (builder style).
    #[must_use]
    pub fn with(mut self, resolver: Arc<dyn TenantResolver>) -> Self {
        self.register(resolver);
        self
    }

    /// The key set the built-in `jwt_claim` resolver verifies tokens with, when
    /// `resolution.jwt_verify.jwks` is configured (feature `jwks`).
    #[cfg(feature = "jwks")]
    #[must_use]
    pub fn jwks(&self) -> Option<&crate::JwksCache> {
        self.jwks.as_ref()
    }

    /// Resolver names in the order they are asked.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.name)
    }

    /// The number of resolvers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the registry has no resolver.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The priority overrides this registry applies.
    pub(crate) fn priority_overrides(&self) -> impl Iterator<Item = &str> {
        self.priorities.keys().map(String::as_str)
    }

    pub(crate) fn name_at(&self, index: usize) -> &Arc<str> {
        &self.entries[index].name
    }

    /// The synchronous phase, from resolver `start` on.
    pub(crate) fn resolve_sync(&self, cx: &ResolutionContext<'_>, start: usize) -> SyncResolution {
        for (index, entry) in self.entries.iter().enumerate().skip(start) {
            match entry.resolver.resolve(cx) {
                Resolution::Found(tenant) => return SyncResolution::Found(tenant, index),
                Resolution::NotFound => {}
                Resolution::Deferred => return SyncResolution::Deferred(index),
            }
        }
        SyncResolution::NotFound
    }

    /// Both phases, from resolver `start` on: the tenant and the index of the resolver.
    pub(crate) async fn resolve_from(
        &self,
        cx: &ResolutionContext<'_>,
        mut start: usize,
    ) -> Result<Option<(TenantRef, usize)>, TenantError> {
        loop {
            match self.resolve_sync(cx, start) {
                SyncResolution::Found(tenant, index) => return Ok(Some((tenant, index))),
                SyncResolution::NotFound => return Ok(None),
                SyncResolution::Deferred(index) => {
                    let resolver = &self.entries[index].resolver;
                    match resolver.resolve_deferred(cx).await {
                        Ok(Some(tenant)) => return Ok(Some((tenant, index))),
                        Ok(None) => {}
                        Err(err) if err.is_infrastructure() => return Err(err),
                        Err(err) => {
                            tracing::debug!(resolver = resolver.name(), error = %err, "resolver found no tenant");
                        }
                    }
                    start = index + 1;
                }
            }
        }
    }

    /// Asks each resolver in turn; the first answer wins.
    ///
    /// # Errors
    /// An infrastructure error of an application resolver's deferred phase.
    pub async fn resolve(
        &self,
        cx: &ResolutionContext<'_>,
    ) -> Result<Option<Resolved>, TenantError> {
        Ok(self
            .resolve_from(cx, 0)
            .await?
            .map(|(tenant, index)| Resolved {
                tenant,
                resolver: Arc::clone(self.name_at(index)),
            }))
    }
}
