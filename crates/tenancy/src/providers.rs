//! The sub-providers of a configured stack: each wraps one sub-crate's services, registers them,
//! and checks its real dependencies for health.

use std::sync::Arc;

use async_trait::async_trait;
use tenancy_core::{BroadcastPublisher, Components, Health, Provider, TenantError};
use tenancy_isolation_sql::IsolationRegistry;
use tenancy_lifecycle::TenantLifecycle;
use tenancy_overrides::{CachedConfigStore, ConfigService};
use tenancy_resolution::{TenancyLayer, TenantValidator};

use crate::integration::IntegrationConfig;
use crate::store::Store;

/// Resolution: the validator and the middleware layer; healthy when the store answers.
#[derive(Debug)]
pub(crate) struct ResolutionProvider {
    pub(crate) validator: TenantValidator,
    pub(crate) layer: TenancyLayer,
    pub(crate) store: Store,
}

#[async_trait]
impl Provider for ResolutionProvider {
    fn name(&self) -> &str {
        "resolution"
    }

    async fn register(&self, components: &mut Components) -> Result<(), TenantError> {
        components.insert(Arc::new(self.validator.clone()));
        components.insert(Arc::new(self.layer.clone()));
        Ok(())
    }

    async fn boot(&self, _components: &Components) -> Result<(), TenantError> {
        // Fail fast: a stack whose store does not answer cannot resolve a single request.
        self.store.ping().await.map(drop)
    }

    /// The first provider booted is the last shut down: the store every provider shares is
    /// closed here, after the others have stopped.
    async fn shutdown(&self) -> Result<(), TenantError> {
        self.store.close().await;
        Ok(())
    }

    async fn health(&self) -> Health {
        self.store
            .health()
            .await
            .with_detail("cached_tenants", self.validator.entry_count().to_string())
    }
}

/// Lifecycle: the lifecycle service and the event publisher; healthy when the store answers.
#[derive(Debug)]
pub(crate) struct LifecycleProvider {
    pub(crate) lifecycle: Arc<TenantLifecycle>,
    pub(crate) events: Arc<BroadcastPublisher>,
    pub(crate) store: Store,
}

#[async_trait]
impl Provider for LifecycleProvider {
    fn name(&self) -> &str {
        "lifecycle"
    }

    async fn register(&self, components: &mut Components) -> Result<(), TenantError> {
        components.insert(Arc::clone(&self.lifecycle));
        components.insert(Arc::clone(&self.events));
        Ok(())
    }

    async fn health(&self) -> Health {
        let provisioner = self.lifecycle.provisioner();
        self.store
            .health()
            .await
            .with_detail("isolation_strategy", provisioner.strategy().name())
            .with_detail("auto_provision", provisioner.auto_provision().to_string())
    }
}

/// Overrides: the config service over the cached config store; healthy when the store answers.
#[derive(Debug)]
pub(crate) struct OverridesProvider {
    pub(crate) service: Arc<ConfigService>,
    pub(crate) cache: Arc<CachedConfigStore>,
    pub(crate) store: Store,
}

#[async_trait]
impl Provider for OverridesProvider {
    fn name(&self) -> &str {
        "overrides"
    }

    async fn register(&self, components: &mut Components) -> Result<(), TenantError> {
        components.insert(Arc::clone(&self.service));
        components.insert(Arc::clone(&self.cache));
        Ok(())
    }

    async fn health(&self) -> Health {
        self.store
            .config_health()
            .await
            .with_detail("defaults", self.service.defaults().len().to_string())
    }
}

/// Isolation: the strategy registry (and tenant-scoped database access with feature `sql`);
/// healthy when the configured strategy is registered and the pool answers.
#[derive(Debug)]
pub(crate) struct IsolationProvider {
    pub(crate) registry: Arc<IsolationRegistry>,
    pub(crate) strategy: String,
    #[cfg(feature = "sql")]
    pub(crate) database: Option<(crate::integration::TenantDatabase, sqlx::PgPool)>,
    /// Run at boot on the tenant transactions' pool; a finding fails the boot.
    #[cfg(feature = "sql")]
    pub(crate) audit: Option<tenancy_isolation_sql::RlsAudit>,
    pub(crate) timeout: std::time::Duration,
}

#[async_trait]
impl Provider for IsolationProvider {
    fn name(&self) -> &str {
        "isolation"
    }

    async fn register(&self, components: &mut Components) -> Result<(), TenantError> {
        components.insert(Arc::clone(&self.registry));
        #[cfg(feature = "sql")]
        if let Some((database, _)) = &self.database {
            components.insert(Arc::new(database.clone()));
        }
        Ok(())
    }

    #[cfg(feature = "sql")]
    async fn boot(&self, _components: &Components) -> Result<(), TenantError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let Some((_, pool)) = &self.database else {
            return Err(TenantError::Configuration(
                "a row-level-security audit was requested, but the stack has no PostgreSQL \
                 store to audit: set store.url to a postgres:// URL"
                    .into(),
            ));
        };
        let report = audit.run(pool).await?.into_result()?;
        tracing::info!(
            tables = report.tables.len(),
            "row-level-security audit passed"
        );
        Ok(())
    }

    async fn health(&self) -> Health {
        if let Err(e) = self.registry.get(&self.strategy) {
            return Health::unhealthy(e.to_string());
        }
        #[cfg(feature = "sql")]
        let health = match &self.database {
            Some((_, pool)) => crate::integration::sql::pool_health(pool, self.timeout).await,
            None => Health::healthy().with_detail("database", "none (no PostgreSQL store)"),
        };
        #[cfg(not(feature = "sql"))]
        let health = {
            let _ = self.timeout;
            Health::healthy().with_detail("database", "none (feature sql off)")
        };
        health.with_detail("strategy", self.strategy.as_str())
    }
}

/// Integration: the cache-key prefix and SQL bridge settings the application's layers read.
#[derive(Debug)]
pub(crate) struct IntegrationProvider {
    pub(crate) config: IntegrationConfig,
}

#[async_trait]
impl Provider for IntegrationProvider {
    fn name(&self) -> &str {
        "integration"
    }

    async fn register(&self, components: &mut Components) -> Result<(), TenantError> {
        components.insert(Arc::new(self.config.clone()));
        Ok(())
    }

    /// Integration has no connection of its own: its health states what is on.
    async fn health(&self) -> Health {
        Health::healthy()
            .with_detail("cache_key_prefix", self.config.cache_key_prefix.to_string())
            .with_detail(
                "sql_context_bridge",
                self.config.sql_context_bridge.to_string(),
            )
    }
}

#[cfg(feature = "postgres")]
pub(crate) use change_feed::ChangeFeedProvider;

#[cfg(feature = "postgres")]
mod change_feed {
    use std::sync::{Arc, Mutex, PoisonError};

    use async_trait::async_trait;
    use tenancy_core::{Components, Health, Invalidators, Provider, TenantError};
    use tenancy_store_sql::{ChangeFeed, PgTenantStore};

    /// The change feed: listens for other processes' changes and invalidates the caches; healthy
    /// while listening, degraded while reconnecting.
    #[derive(Debug)]
    pub(crate) struct ChangeFeedProvider {
        pub(crate) store: PgTenantStore,
        pub(crate) invalidators: Invalidators,
        pub(crate) feed: Mutex<Option<Arc<ChangeFeed>>>,
    }

    impl ChangeFeedProvider {
        fn feed(&self) -> Option<Arc<ChangeFeed>> {
            self.feed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    #[async_trait]
    impl Provider for ChangeFeedProvider {
        fn name(&self) -> &str {
            "change_feed"
        }

        async fn boot(&self, _components: &Components) -> Result<(), TenantError> {
            let feed = self
                .store
                .start_change_feed(self.invalidators.clone())
                .await?;
            *self.feed.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(feed));
            Ok(())
        }

        async fn shutdown(&self) -> Result<(), TenantError> {
            let feed = self
                .feed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(feed) = feed {
                feed.shutdown().await;
            }
            Ok(())
        }

        async fn health(&self) -> Health {
            match self.feed() {
                Some(feed) => feed
                    .health()
                    .with_detail("reconnects", feed.reconnects().to_string()),
                None => Health::unhealthy("the change feed is not running"),
            }
        }
    }
}
