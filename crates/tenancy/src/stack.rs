//! [`configure`] and [`stub`]: the full stack from a [`TenancyConfig`], and a test stack, as a
//! [`Tenancy`] whose parts are typed values.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tenancy_core::{
    BroadcastPublisher, CacheInvalidation, HealthReport, Invalidators, IsolationStrategy, Provider,
    TenantError, TenantEvent,
};
use tenancy_isolation_sql::{IsolationRegistry, RowLevelStrategy};
use tenancy_lifecycle::TenantLifecycle;
use tenancy_overrides::{CachedConfigStore, ConfigService};
use tenancy_resolution::{
    RequireTenantLayer, ResolveTenantLayer, TenantMembership, TenantResolver, TenantValidator,
};
use tokio::sync::broadcast;

use crate::bundle::{Bundle, DEFAULT_HEALTH_TIMEOUT, ShutdownError, bounded};
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
/// let acme = tenancy.lifecycle().create(CreateTenant::new("acme".parse()?, "Acme")).await?.into_result()?;
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
/// - resolution: the validator cache and the middleware layer (guard: [`RequireTenantLayer`]);
/// - lifecycle: the lifecycle service, provisioning through the isolation strategy that
///   `isolation.strategy` names in the isolation registry, publishing to an in-process
///   broadcast, invalidating the validator (and overrides) caches through [`Invalidators`];
/// - isolation: the registry (`row_level`, and `schema` on the PostgreSQL store with feature
///   `sql`) and, with `sql` on the PostgreSQL store, the [`TenantDatabase`](crate::TenantDatabase)
///   of tenant-scoped transactions, with the same strategy;
/// - integration settings, and the change feed when the store is PostgreSQL and its feed is on;
/// - the application's own [`provider`](Self::provider)s, booted after the stack's.
#[derive(Default)]
pub struct StackBuilder {
    config: TenancyConfig,
    membership: Option<Arc<dyn TenantMembership>>,
    resolvers: Vec<Arc<dyn TenantResolver>>,
    strategies: Vec<Arc<dyn IsolationStrategy>>,
    providers: Vec<Arc<dyn Provider>>,
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
            .field("providers", &self.providers)
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
    /// `resolution.membership` is not `off` and an untrusted resolver is active).
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
    /// `isolation.strategy` can then name.
    #[must_use]
    pub fn strategy(mut self, strategy: Arc<dyn IsolationStrategy>) -> Self {
        self.strategies.push(strategy);
        self
    }

    /// Adds an application provider: it boots after the stack's own providers (and so shuts
    /// down before them), and its health joins [`Tenancy::health`] under its name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use async_trait::async_trait;
    /// use tenancy::core::{Health, HealthStatus, Provider, TenantError};
    ///
    /// /// A mailer the application starts with the stack and checks in its health report.
    /// #[derive(Debug)]
    /// struct Mailer;
    ///
    /// #[async_trait]
    /// impl Provider for Mailer {
    ///     fn name(&self) -> &str { "mailer" }
    ///     async fn boot(&self) -> Result<(), TenantError> { Ok(()) }
    ///     async fn health(&self) -> Health { Health::healthy().with_detail("queue", "0") }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let tenancy = tenancy::StackBuilder::new(tenancy::TenancyConfig::stub())
    ///     .provider(Arc::new(Mailer))
    ///     .build()
    ///     .await?;
    /// assert_eq!(tenancy.provider_names().last(), Some("mailer"));
    /// let report = tenancy.health().await;
    /// assert_eq!(report.components["mailer"].details["queue"], "0");
    /// assert_eq!(report.status, HealthStatus::Healthy);
    /// tenancy.shutdown().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
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

    /// Builds the parts, then boots the providers: `resolution`, `lifecycle`, `overrides`,
    /// `isolation`, `integration`, `change_feed` on the PostgreSQL store, then the application's.
    ///
    /// # Errors
    /// See [`configure`].
    pub async fn build(self) -> Result<Tenancy, Error> {
        let Self {
            config,
            membership,
            resolvers,
            strategies,
            providers: application,
            health_timeout,
            #[cfg(feature = "sql")]
            audit,
        } = self;
        config.validate()?;
        config.metrics.apply();
        let health_timeout = health_timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT);

        let store = Store::open(&config.store).await?;
        // Fail fast: a stack whose store does not answer cannot resolve a single request.
        if let Err(error) = store.ping().await {
            store.close().await;
            return Err(error.into());
        }
        let parts = match Parts::build(&config, &store, membership, resolvers, strategies) {
            Ok(parts) => parts,
            Err(error) => {
                store.close().await;
                return Err(error.into());
            }
        };

        let mut providers: Vec<Arc<dyn Provider>> = vec![
            Arc::new(ResolutionProvider {
                validator: parts.validator.clone(),
                #[cfg(feature = "jwks")]
                jwks: parts.layer.jwks().cloned(),
            }),
            Arc::new(LifecycleProvider {
                lifecycle: Arc::clone(&parts.lifecycle),
                recover_after: config.lifecycle.recover_after,
            }),
            Arc::new(OverridesProvider {
                service: Arc::clone(&parts.config),
                store: store.clone(),
            }),
            Arc::new(IsolationProvider {
                strategy: config.isolation.strategy.clone(),
                #[cfg(feature = "sql")]
                database: parts.database.clone(),
                #[cfg(feature = "sql")]
                audit,
                #[cfg(feature = "sql")]
                timeout: health_timeout,
            }),
            Arc::new(IntegrationProvider {
                config: config.integration.clone(),
            }),
        ];
        #[cfg(feature = "postgres")]
        if let Some(pg) = store.postgres()
            && config.store.change_feed
        {
            providers.push(Arc::new(crate::providers::ChangeFeedProvider {
                store: pg.clone(),
                invalidators: parts.invalidators.clone(),
                feed: std::sync::Mutex::new(None),
            }));
        }
        providers.extend(application);

        match Bundle::start(providers, health_timeout).await {
            Ok(bundle) => Ok(Tenancy {
                bundle,
                store,
                parts,
                integration: config.integration,
                stopped: AtomicBool::new(false),
            }),
            Err(error) => {
                store.close().await;
                Err(error.into())
            }
        }
    }
}

/// The typed parts of a stack, built once from the configuration.
#[derive(Debug)]
struct Parts {
    validator: TenantValidator,
    layer: ResolveTenantLayer,
    lifecycle: Arc<TenantLifecycle>,
    config: Arc<ConfigService>,
    config_cache: Arc<CachedConfigStore>,
    events: Arc<BroadcastPublisher>,
    invalidators: Invalidators,
    isolation: Arc<IsolationRegistry>,
    #[cfg(feature = "sql")]
    database: Option<tenancy_isolation_sql::TenantDatabase>,
    #[cfg(feature = "sql")]
    placement: Option<tenancy_isolation_sql::CitusPlacement>,
    #[cfg(feature = "limits")]
    limits: tenancy_limits::TenantLimits,
}

impl Parts {
    fn build(
        config: &TenancyConfig,
        store: &Store,
        membership: Option<Arc<dyn TenantMembership>>,
        resolvers: Vec<Arc<dyn TenantResolver>>,
        strategies: Vec<Arc<dyn IsolationStrategy>>,
    ) -> Result<Self, TenantError> {
        let invalidators = Invalidators::new();
        let events = Arc::new(BroadcastPublisher::new(DEFAULT_EVENT_CAPACITY));

        // Resolution: the validator (invalidated by lifecycle changes) and the middleware layer.
        let validator = TenantValidator::new(store.tenants(), &config.resolution.validator)?;
        invalidators.register(Arc::new(validator.clone()) as Arc<dyn CacheInvalidation>);
        let mut layer = ResolveTenantLayer::builder(&config.resolution, validator.clone());
        for resolver in resolvers {
            layer = layer.resolver(resolver);
        }
        if let Some(membership) = membership {
            layer = layer.membership(membership);
        }
        let layer = layer.build()?;

        // Overrides: the config service over the cached config store.
        let config_cache = Arc::new(CachedConfigStore::from_config(
            store.configs(),
            &config.overrides,
        )?);
        invalidators.register(Arc::clone(&config_cache) as Arc<dyn CacheInvalidation>);
        let service = ConfigService::from_config(Arc::clone(&config_cache) as _, &config.overrides);

        // Limits: read through the config service (reads publish nothing); a `limits.*` change
        // written through the stack's service makes the tenant's limits stale at once.
        #[cfg(feature = "limits")]
        let limits = tenancy_limits::TenantLimits::new(&config.limits)?
            .with_overrides(Arc::new(service.clone()))
            .with_validator(validator.clone());
        #[cfg(feature = "limits")]
        invalidators.register(Arc::new(limits.clone()) as Arc<dyn CacheInvalidation>);
        #[cfg(feature = "limits")]
        let service =
            service.with_publisher(Arc::new(crate::limits_wiring::LimitsOnConfigChange {
                inner: Arc::clone(&events) as _,
                limits: limits.clone(),
            }));
        #[cfg(not(feature = "limits"))]
        let service = service.with_publisher(Arc::clone(&events) as _);

        // Isolation: one strategy, for provisioning and for tenant transactions alike.
        let isolation = isolation_registry(config, store, strategies)?;
        let strategy = isolation.get(&config.isolation.strategy).map_err(|error| {
            TenantError::Configuration(format!(
                "isolation.strategy: {} (`schema` needs feature `sql` and the PostgreSQL store; \
                 register your own with StackBuilder::strategy)",
                match error {
                    TenantError::Configuration(message) => message,
                    other => other.to_string(),
                }
            ))
        })?;
        #[cfg(feature = "sql")]
        let database = tenant_database(config, store, Arc::clone(&strategy))?;
        #[cfg(feature = "sql")]
        let placement = match store.postgres() {
            Some(pg) if config.isolation.citus.enabled => Some(
                tenancy_isolation_sql::CitusPlacement::from_config(
                    pg.pool().clone(),
                    &config.isolation.citus,
                )?
                .with_publisher(Arc::clone(&events) as _),
            ),
            _ => None,
        };
        #[cfg(all(feature = "sql", feature = "limits"))]
        let database = database.map(|db| {
            db.with_budgets(
                Arc::new(crate::limits_wiring::PlanBudgets(limits.clone())),
                config.limits.transaction_wait,
            )
        });
        let lifecycle = TenantLifecycle::from_config(store.tenants(), strategy, &config.lifecycle)
            .with_publisher(Arc::clone(&events) as _)
            .with_invalidators(invalidators.clone());

        Ok(Self {
            validator,
            layer,
            lifecycle: Arc::new(lifecycle),
            config: Arc::new(service),
            config_cache,
            events,
            invalidators,
            isolation: Arc::new(isolation),
            #[cfg(feature = "sql")]
            database,
            #[cfg(feature = "sql")]
            placement,
            #[cfg(feature = "limits")]
            limits,
        })
    }
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

/// Tenant-scoped transactions on the PostgreSQL store's pool, isolated by `strategy` (routed
/// through a [`DatabaseRouter`](tenancy_isolation_sql::DatabaseRouter) when `isolation.servers`
/// is set), bridged to the task-local context as `integration.sql_context_bridge` says; none on
/// another store.
#[cfg(feature = "sql")]
fn tenant_database(
    config: &TenancyConfig,
    store: &Store,
    strategy: Arc<dyn IsolationStrategy>,
) -> Result<Option<tenancy_isolation_sql::TenantDatabase>, TenantError> {
    let Some(pg) = store.postgres() else {
        return Ok(None);
    };
    let mut db = tenancy_isolation_sql::TenantDatabase::new(pg.pool().clone(), strategy)
        .with_context_bridge(config.integration.sql_context_bridge)
        .on_citus(config.isolation.citus.enabled);
    if !config.isolation.servers.is_empty() {
        db = db.with_router(tenancy_isolation_sql::DatabaseRouter::from_config(
            &config.isolation,
        )?);
    }
    Ok(Some(db))
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
    }
    .distributed_on_citus(isolation.citus.enabled))
}

/// A running tenancy stack: its parts, and the providers that boot, shut down and report on them.
///
/// Build one with [`configure`], [`stub`] or [`StackBuilder`]. Every part the configuration asks
/// for is there once it is built, so the accessors return it directly. Call
/// [`shutdown`](Self::shutdown) before dropping it: that stops background work (the change feed's
/// listener, say) in reverse boot order, then closes the store.
pub struct Tenancy {
    bundle: Bundle,
    store: Store,
    parts: Parts,
    integration: IntegrationConfig,
    stopped: AtomicBool,
}

impl fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("providers", &self.provider_names().collect::<Vec<_>>())
            .field("store", &self.store)
            .field("health_timeout", &self.bundle.health_timeout())
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// The providers' names, in boot order.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.bundle.names()
    }

    /// The health of the stack: the store (checked once, as component `store`) and every
    /// provider's own check, run concurrently, each bounded by the health timeout (a check that
    /// does not answer in time counts as unhealthy); the report's status is the worst.
    pub async fn health(&self) -> HealthReport {
        let (store, mut components) = futures_util::future::join(
            bounded(self.bundle.health_timeout(), self.store.health()),
            self.bundle.health(),
        )
        .await;
        components.push(("store".to_owned(), store));
        HealthReport::from_components(components)
    }

    /// Shuts the providers down in reverse boot order, then closes the store they share (once:
    /// later calls do nothing).
    ///
    /// # Errors
    /// [`ShutdownError`] listing the providers whose shutdown failed; the others were shut down,
    /// and the store is closed all the same.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.bundle.shutdown().await;
        self.store.close().await;
        result
    }

    /// The middleware layer that resolves each request's tenant (put it outside the guard).
    #[must_use]
    pub fn layer(&self) -> ResolveTenantLayer {
        self.parts.layer.clone()
    }

    /// The guard layer that answers 403 to requests without an active tenant.
    #[must_use]
    pub fn guard(&self) -> RequireTenantLayer {
        RequireTenantLayer::new()
    }

    /// The validator (its cache is what the middleware consults).
    #[must_use]
    pub fn validator(&self) -> &TenantValidator {
        &self.parts.validator
    }

    /// The lifecycle service: create, update, activate, suspend, deactivate tenants.
    #[must_use]
    pub fn lifecycle(&self) -> &Arc<TenantLifecycle> {
        &self.parts.lifecycle
    }

    /// The per-tenant configuration service (overrides over application defaults, cached).
    #[must_use]
    pub fn config(&self) -> &Arc<ConfigService> {
        &self.parts.config
    }

    /// The cache in front of the config store that [`config`](Self::config) reads through.
    #[must_use]
    pub fn config_cache(&self) -> &Arc<CachedConfigStore> {
        &self.parts.config_cache
    }

    /// A new subscription to the stack's tenant events (from now on).
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<TenantEvent> {
        self.parts.events.subscribe()
    }

    /// The caches that lifecycle changes and the change feed invalidate; register the
    /// application's own tenant caches here.
    #[must_use]
    pub fn invalidators(&self) -> &Invalidators {
        &self.parts.invalidators
    }

    /// The isolation strategies the stack knows, by name.
    #[must_use]
    pub fn isolation(&self) -> &IsolationRegistry {
        &self.parts.isolation
    }

    /// The integration settings the stack runs with.
    #[must_use]
    pub fn integration(&self) -> &IntegrationConfig {
        &self.integration
    }

    /// Wraps the application's cache so that keys are prefixed with `t:{tenant}:` while a tenant is
    /// in scope, when `integration.cache_key_prefix` is on (unchanged otherwise).
    ///
    /// ```
    /// use tenancy::integration::{InMemoryCache, KeyValueCache};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let tenancy = tenancy::configure(tenancy::TenancyConfig::stub()).await?;
    /// let cache = tenancy.prefixed_cache(InMemoryCache::new());
    /// assert!(!cache.is_enabled(), "the stub runs without integration");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn prefixed_cache<C: KeyValueCache>(&self, inner: C) -> TenantPrefixedCache<C> {
        TenantPrefixedCache::from_config(inner, &self.integration)
    }

    /// Every tenant's effective limits (feature `limits`): the plans of the `limits` section with
    /// the tenants' `limits.*` overrides. Registered with the [`invalidators`](Self::invalidators).
    #[cfg(feature = "limits")]
    #[must_use]
    pub fn limits(&self) -> &tenancy_limits::TenantLimits {
        &self.parts.limits
    }

    /// The layer that enforces each tenant's request rate and requests in flight (feature
    /// `limits`): put it inside [`layer`](Self::layer) (it reads the resolved tenant).
    ///
    /// ```
    /// # #[cfg(feature = "axum")]
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use axum::{Router, routing::get};
    ///
    /// let tenancy = tenancy::stub().await?;
    /// let app: Router = Router::new()
    ///     .route("/api/orders", get(|| async { "orders" }))
    ///     .layer(tenancy.limit_layer())
    ///     .layer(tenancy.guard())
    ///     .layer(tenancy.layer());
    /// # let _ = app;
    /// tenancy.shutdown().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "limits")]
    #[must_use]
    pub fn limit_layer(&self) -> tenancy_limits::TenantLimitLayer {
        tenancy_limits::TenantLimitLayer::new(self.parts.limits.clone())
    }

    /// Tenant-scoped transactions (feature `sql`): present when the stack runs on the PostgreSQL
    /// store, absent on another store. It is `Clone`: hand it to axum handlers as state.
    #[cfg(feature = "sql")]
    #[must_use]
    pub fn database(&self) -> Option<&tenancy_isolation_sql::TenantDatabase> {
        self.parts.database.as_ref()
    }

    /// Placement operations on a Citus coordinator (feature `sql`): present when
    /// `isolation.citus.enabled` is set and the stack runs on the PostgreSQL store (the
    /// coordinator). Moves publish their `placement_*` events through the stack's events
    /// ([`subscribe`](Self::subscribe)).
    #[cfg(feature = "sql")]
    #[must_use]
    pub fn placement(&self) -> Option<&tenancy_isolation_sql::CitusPlacement> {
        self.parts.placement.as_ref()
    }
}
