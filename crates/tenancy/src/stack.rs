//! [`configure`] and [`stub`]: the full stack from a [`TenancyConfig`], and a test stack; typed
//! accessors on [`Tenancy`] for what applications use.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tenancy_core::{
    BroadcastPublisher, CacheInvalidation, Invalidators, IsolationStrategy, TenantError,
    TenantEvent,
};
use tenancy_isolation_sql::{IsolationRegistry, RowLevelStrategy};
use tenancy_lifecycle::TenantLifecycle;
use tenancy_overrides::{CachedConfigStore, ConfigService};
use tenancy_resolution::{
    TenancyLayer, TenantGuardLayer, TenantMembership, TenantResolver, TenantValidator,
};
use tokio::sync::broadcast;

use crate::bundle::{DEFAULT_HEALTH_TIMEOUT, Tenancy};
use crate::config::TenancyConfig;
use crate::error::Error;
use crate::integration::{IntegrationConfig, KeyValueCache, TenantPrefixedCache};
use crate::providers::{
    IntegrationProvider, IsolationProvider, LifecycleProvider, OverridesProvider,
    ResolutionProvider,
};
use crate::store::Store;

/// How many events a subscriber of [`Tenancy::subscribe`] may lag behind.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Builds the full tenancy stack from `config`: see [`StackBuilder`] for what it builds, and to add
/// a membership checker, application resolvers or isolation strategies.
///
/// # Errors
/// [`Error`]: an invalid configuration, a store that cannot be reached, a provider that fails to
/// boot (named).
pub async fn configure(config: TenancyConfig) -> Result<Tenancy, Error> {
    StackBuilder::new(config).build().await
}

/// A stack for tests: in-memory store, the header resolver only (trusted: no membership check),
/// no isolation provisioning, no integration (no cache-key prefix, no SQL bridge).
///
/// ```
/// use tenancy::core::{CreateTenant, HealthStatus};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let tenancy = tenancy::stub().await?;
/// let acme = tenancy.lifecycle()?.create(CreateTenant::new("acme".parse()?, "Acme")).await?.into_result()?;
/// assert!(acme.is_active());
/// assert_eq!(tenancy.health().await.status, HealthStatus::Healthy);
/// tenancy.shutdown().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// # Errors
/// As [`configure`]; the stub's own configuration is always valid.
pub async fn stub() -> Result<Tenancy, Error> {
    StackBuilder::new(TenancyConfig::stub()).build().await
}

/// Builds a configured stack, with the application's own parts.
///
/// What [`build`](Self::build) assembles:
/// - the store `store.url` names (SQLite or PostgreSQL, by feature), in memory without a URL;
/// - resolution: the validator cache and the middleware layer (guard: [`TenantGuardLayer`]);
/// - lifecycle: the lifecycle service, provisioning through the isolation strategy that
///   `lifecycle.isolation_strategy` names in the isolation registry, publishing to an in-process
///   broadcast, invalidating the validator (and overrides) caches through [`Invalidators`];
/// - isolation: the registry (`row_level`, and `schema` on the PostgreSQL store with feature
///   `sql`) and, with `sql` on the PostgreSQL store, tenant-scoped database access;
/// - integration settings, and the change feed when the store is PostgreSQL and its feed is on.
#[derive(Default)]
pub struct StackBuilder {
    config: TenancyConfig,
    membership: Option<Arc<dyn TenantMembership>>,
    resolvers: Vec<Arc<dyn TenantResolver>>,
    strategies: Vec<Arc<dyn IsolationStrategy>>,
    health_timeout: Option<Duration>,
    #[cfg(feature = "sql")]
    audit: Option<tenancy_isolation_sql::RlsAudit>,
}

impl fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackBuilder")
            .field("config", &self.config)
            .field("membership", &self.membership)
            .field("resolvers", &self.resolvers)
            .field("strategies", &self.strategies)
            .finish_non_exhaustive()
    }
}

impl StackBuilder {
    /// A builder for `config`.
    #[must_use]
    pub fn new(config: TenancyConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The membership checker for tenants found by untrusted resolvers (needed when
    /// `resolution.strict_membership` is on and an untrusted resolver is active).
    #[must_use]
    pub fn membership(mut self, membership: Arc<dyn TenantMembership>) -> Self {
        self.membership = Some(membership);
        self
    }

    /// Adds an application resolver.
    #[must_use]
    pub fn resolver(mut self, resolver: Arc<dyn TenantResolver>) -> Self {
        self.resolvers.push(resolver);
        self
    }

    /// Registers an isolation strategy (database per tenant, or an application's own), which
    /// `lifecycle.isolation_strategy` and `isolation.strategy` can then name.
    #[must_use]
    pub fn strategy(mut self, strategy: Arc<dyn IsolationStrategy>) -> Self {
        self.strategies.push(strategy);
        self
    }

    /// Runs `audit` when the `isolation` provider boots, on the pool of tenant transactions (feature
    /// `sql`, PostgreSQL store): a table holding the tenant column without `ENABLE` + `FORCE ROW
    /// LEVEL SECURITY` and a fail-closed policy, or a role that bypasses policies, fails the boot.
    ///
    /// ```no_run
    /// # async fn example(config: tenancy::TenancyConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// use tenancy::isolation::RlsAudit;
    ///
    /// let audit = RlsAudit::from_config(&config.isolation)?.schemas(&["public"])?;
    /// let tenancy = tenancy::StackBuilder::new(config).rls_audit(audit).build().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sql")]
    #[must_use]
    pub fn rls_audit(mut self, audit: tenancy_isolation_sql::RlsAudit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// How long one provider's health check may take (default
    /// [`DEFAULT_HEALTH_TIMEOUT`](crate::DEFAULT_HEALTH_TIMEOUT)).
    #[must_use]
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = Some(timeout);
        self
    }

    /// Builds the parts, then registers and boots the providers: `resolution`, `lifecycle`,
    /// `overrides`, `isolation`, `integration`, and `change_feed` on the PostgreSQL store.
    ///
    /// # Errors
    /// See [`configure`].
    pub async fn build(self) -> Result<Tenancy, Error> {
        let Self {
            config,
            membership,
            resolvers,
            strategies,
            health_timeout,
            #[cfg(feature = "sql")]
            audit,
        } = self;
        config.validate()?;
        let health_timeout = health_timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT);

        let store = Store::open(&config.store).await?;
        let invalidators = Invalidators::new();
        let events = Arc::new(BroadcastPublisher::new(DEFAULT_EVENT_CAPACITY));

        let resolution = resolution(&config, &store, &invalidators, membership, resolvers)?;
        let overrides = overrides(&config, &store, &invalidators, &events)?;
        let registry = isolation_registry(&config, &store, strategies)?;
        // The strategy of tenant transactions must exist even where none are begun yet.
        registry.get(&config.isolation.strategy)?;

        let provisioning = registry.get(&config.lifecycle.isolation_strategy)?;
        let lifecycle =
            TenantLifecycle::from_config(store.tenants(), provisioning, &config.lifecycle)?
                .with_publisher(Arc::clone(&events) as _)
                .with_invalidators(invalidators.clone());

        let isolation = IsolationProvider {
            #[cfg(feature = "sql")]
            database: tenant_database(&config, &store, &registry)?,
            #[cfg(feature = "sql")]
            audit,
            strategy: config.isolation.strategy.clone(),
            registry: Arc::new(registry),
            timeout: health_timeout,
        };

        let builder = Tenancy::builder()
            .health_timeout(health_timeout)
            .component(Arc::new(invalidators.clone()))
            .provider(Arc::new(resolution))
            .provider(Arc::new(LifecycleProvider {
                lifecycle: Arc::new(lifecycle),
                events,
                store: store.clone(),
            }))
            .provider(Arc::new(overrides))
            .provider(Arc::new(isolation))
            .provider(Arc::new(IntegrationProvider {
                config: config.integration.clone(),
            }));
        #[cfg(feature = "postgres")]
        let builder = match store.postgres() {
            Some(pg) if config.store.change_feed => {
                builder.provider(Arc::new(crate::providers::ChangeFeedProvider {
                    store: pg.clone(),
                    invalidators,
                    feed: std::sync::Mutex::new(None),
                }))
            }
            _ => builder,
        };
        Ok(builder.start().await?)
    }
}

/// The validator (registered for invalidation) and the middleware layer.
fn resolution(
    config: &TenancyConfig,
    store: &Store,
    invalidators: &Invalidators,
    membership: Option<Arc<dyn TenantMembership>>,
    resolvers: Vec<Arc<dyn TenantResolver>>,
) -> Result<ResolutionProvider, TenantError> {
    let validator = TenantValidator::new(store.tenants(), &config.resolution.validator)?;
    invalidators.register(Arc::new(validator.clone()) as Arc<dyn CacheInvalidation>);
    let mut layer = TenancyLayer::builder(&config.resolution, validator.clone());
    for resolver in resolvers {
        layer = layer.resolver(resolver);
    }
    if let Some(membership) = membership {
        layer = layer.membership(membership);
    }
    Ok(ResolutionProvider {
        validator,
        layer: layer.build()?,
        store: store.clone(),
    })
}

/// The config service over the cached config store (registered for invalidation).
fn overrides(
    config: &TenancyConfig,
    store: &Store,
    invalidators: &Invalidators,
    events: &Arc<BroadcastPublisher>,
) -> Result<OverridesProvider, TenantError> {
    let cache = Arc::new(CachedConfigStore::from_config(
        store.configs(),
        &config.overrides,
    )?);
    invalidators.register(Arc::clone(&cache) as Arc<dyn CacheInvalidation>);
    let service = ConfigService::from_config(Arc::clone(&cache) as _, &config.overrides)?
        .with_publisher(Arc::clone(events) as _);
    Ok(OverridesProvider {
        service: Arc::new(service),
        cache,
        store: store.clone(),
    })
}

/// `row_level` with the configured setting, `schema` on the PostgreSQL store (feature `sql`), and
/// the application's strategies (which may replace them).
fn isolation_registry(
    config: &TenancyConfig,
    #[cfg_attr(not(feature = "sql"), allow(unused_variables))] store: &Store,
    strategies: Vec<Arc<dyn IsolationStrategy>>,
) -> Result<IsolationRegistry, TenantError> {
    let mut registry = IsolationRegistry::new();
    registry.register(Arc::new(RowLevelStrategy::with_setting(
        &config.isolation.tenant_setting,
    )?));
    #[cfg(feature = "sql")]
    if let Some(pg) = store.postgres() {
        registry.register(Arc::new(schema_strategy(pg.pool().clone(), config)?));
    }
    for strategy in strategies {
        registry.register(strategy);
    }
    Ok(registry)
}

/// Tenant-scoped database access on the PostgreSQL store's pool, with the configured strategy
/// (routed through a [`DatabaseRouter`](tenancy_isolation_sql::DatabaseRouter) when
/// `isolation.servers` is set); none on another store.
#[cfg(feature = "sql")]
fn tenant_database(
    config: &TenancyConfig,
    store: &Store,
    registry: &IsolationRegistry,
) -> Result<Option<(crate::integration::TenantDatabase, sqlx::PgPool)>, TenantError> {
    let Some(pg) = store.postgres() else {
        return Ok(None);
    };
    let strategy = registry.get(&config.isolation.strategy)?;
    let mut db = tenancy_isolation_sql::TenantDb::new(pg.pool().clone(), strategy);
    if !config.isolation.servers.is_empty() {
        db = db.with_router(tenancy_isolation_sql::DatabaseRouter::from_config(
            &config.isolation,
        )?);
    }
    let database = crate::integration::TenantDatabase::from_config(db, &config.integration);
    Ok(Some((database, pg.pool().clone())))
}

/// The schema-per-tenant strategy on the store's pool, with the configured tenant migrations.
#[cfg(feature = "sql")]
fn schema_strategy(
    pool: sqlx::PgPool,
    config: &TenancyConfig,
) -> Result<tenancy_isolation_sql::SchemaStrategy, TenantError> {
    use tenancy_isolation_sql::{Migrations, SchemaStrategy, TenantMigrator};
    let isolation = &config.isolation;
    Ok(match &isolation.migrations_dir {
        Some(dir) => {
            let migrator = TenantMigrator::new(pool.clone(), Migrations::from_dir(dir)?)
                .with_concurrency(isolation.migrator_concurrency);
            SchemaStrategy::new(pool, migrator, isolation.deprovision)
        }
        None => SchemaStrategy::without_migrations(pool, isolation.deprovision),
    })
}

/// Typed access to what a configured stack registered.
impl Tenancy {
    /// The middleware layer that resolves each request's tenant (put it outside the guard).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no resolution provider.
    pub fn layer(&self) -> Result<TenancyLayer, TenantError> {
        self.require::<TenancyLayer>().map(|layer| (*layer).clone())
    }

    /// The guard layer that answers 403 to requests without an active tenant.
    #[must_use]
    pub fn guard(&self) -> TenantGuardLayer {
        TenantGuardLayer::new()
    }

    /// The validator (its cache is what the middleware consults).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no resolution provider.
    pub fn validator(&self) -> Result<Arc<TenantValidator>, TenantError> {
        self.require()
    }

    /// The lifecycle service: create, update, activate, suspend, deactivate tenants.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no lifecycle provider.
    pub fn lifecycle(&self) -> Result<Arc<TenantLifecycle>, TenantError> {
        self.require()
    }

    /// The per-tenant configuration service (overrides over application defaults, cached).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no overrides provider.
    pub fn config_service(&self) -> Result<Arc<ConfigService>, TenantError> {
        self.require()
    }

    /// A new subscription to the stack's tenant events (from now on).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no lifecycle provider.
    pub fn subscribe(&self) -> Result<broadcast::Receiver<TenantEvent>, TenantError> {
        Ok(self.require::<BroadcastPublisher>()?.subscribe())
    }

    /// The caches that lifecycle changes and the change feed invalidate; register the
    /// application's own tenant caches here.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack was not built by [`configure`].
    pub fn invalidators(&self) -> Result<Arc<Invalidators>, TenantError> {
        self.require()
    }

    /// The integration settings the stack runs with.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no integration provider.
    pub fn integration(&self) -> Result<Arc<IntegrationConfig>, TenantError> {
        self.require()
    }

    /// Wraps the application's cache so that keys are prefixed with `t:{tenant}:` while a tenant is
    /// in scope, when `integration.cache_key_prefix` is on (unchanged otherwise).
    ///
    /// ```
    /// use tenancy::integration::{InMemoryCache, KeyValueCache};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let tenancy = tenancy::configure(tenancy::TenancyConfig::stub()).await?;
    /// let cache = tenancy.prefixed_cache(InMemoryCache::new())?;
    /// assert!(!cache.is_enabled(), "the stub runs without integration");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack has no integration provider.
    pub fn prefixed_cache<C: KeyValueCache>(
        &self,
        inner: C,
    ) -> Result<TenantPrefixedCache<C>, TenantError> {
        Ok(TenantPrefixedCache::from_config(
            inner,
            &*self.integration()?,
        ))
    }

    /// Tenant-scoped database access (feature `sql`, PostgreSQL store).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the stack does not run on a PostgreSQL store.
    #[cfg(feature = "sql")]
    pub fn database(&self) -> Result<Arc<crate::integration::TenantDatabase>, TenantError> {
        self.components().get().ok_or_else(|| {
            TenantError::Configuration(
                "tenant-scoped database access needs the PostgreSQL store: set store.url to a \
                 postgres:// URL"
                    .into(),
            )
        })
    }
}
