//! The sub-providers of a configured stack: each reports on one sub-crate's part, and the change
//! feed and the boot audit start what must run. The store they share is checked and closed by the
//! stack itself, once.

use std::sync::Arc;

use async_trait::async_trait;
use tenancy_core::{Health, Provider, TenantError};
use tenancy_lifecycle::TenantLifecycle;
use tenancy_overrides::ConfigService;
use tenancy_resolution::TenantValidator;

use crate::integration::IntegrationConfig;
use crate::store::Store;

/// Resolution: how many tenants the validator holds and, with a JWKS configured, the state of its
/// key set (fetched at boot).
#[derive(Debug)]
pub(crate) struct ResolutionProvider {
    pub(crate) validator: TenantValidator,
    /// The key set of `resolution.jwt_verify.jwks`.
    #[cfg(feature = "jwks")]
    pub(crate) jwks: Option<tenancy_resolution::JwksCache>,
}

#[async_trait]
impl Provider for ResolutionProvider {
    fn name(&self) -> &str {
        "resolution"
    }

    /// Fetches the JWKS, when one is configured. A failure does not stop the boot: resolvers
    /// that need no token keep working, the first token with a key id retries (rate-limited), and
    /// health reports the stack unhealthy until a set is fetched.
    async fn boot(&self) -> Result<(), TenantError> {
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.jwks
            && let Err(error) = jwks.refresh().await
        {
            tracing::error!(jwks = jwks.url(), error = %error, "the JWKS could not be fetched at start-up: bearer tokens verified against it name no tenant until it is");
        }
        Ok(())
    }

    async fn health(&self) -> Health {
        #[cfg(feature = "jwks")]
        let health = self
            .jwks
            .as_ref()
            .map_or_else(Health::healthy, tenancy_resolution::JwksCache::health);
        #[cfg(not(feature = "jwks"))]
        let health = Health::healthy();
        health.with_detail("cached_tenants", self.validator.entry_count().to_string())
    }
}

/// Lifecycle: the provisioning strategy and whether it runs.
#[derive(Debug)]
pub(crate) struct LifecycleProvider {
    pub(crate) lifecycle: Arc<TenantLifecycle>,
    /// `lifecycle.recover_after`: at boot, finish tenants left provisioning longer than this.
    pub(crate) recover_after: Option<std::time::Duration>,
}

#[async_trait]
impl Provider for LifecycleProvider {
    fn name(&self) -> &str {
        "lifecycle"
    }

    /// Runs the recovery sweep. Its failures are logged, never fatal: a tenant that cannot be
    /// provisioned now keeps its error recorded and the stack serves every other tenant.
    async fn boot(&self) -> Result<(), TenantError> {
        let Some(older_than) = self.recover_after else {
            return Ok(());
        };
        match self.lifecycle.recover_stuck(older_than).await {
            Ok(recovery) => {
                for (tenant, error) in &recovery.failed {
                    tracing::warn!(tenant_id = %tenant, error = %error, "tenant still provisioning after the recovery sweep");
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "the recovery sweep could not list tenants");
            }
        }
        Ok(())
    }

    async fn health(&self) -> Health {
        let provisioner = self.lifecycle.provisioner();
        Health::healthy()
            .with_detail("isolation_strategy", provisioner.strategy().name())
            .with_detail("auto_provision", provisioner.auto_provision().to_string())
    }
}

/// Overrides: healthy when the config store answers a read.
#[derive(Debug)]
pub(crate) struct OverridesProvider {
    pub(crate) service: Arc<ConfigService>,
    pub(crate) store: Store,
}

#[async_trait]
impl Provider for OverridesProvider {
    fn name(&self) -> &str {
        "overrides"
    }

    async fn health(&self) -> Health {
        self.store
            .config_health()
            .await
            .with_detail("defaults", self.service.defaults().len().to_string())
    }
}

/// Isolation: runs the row-level-security audit at boot (feature `sql`); healthy when the pool of
/// tenant transactions answers.
#[derive(Debug)]
pub(crate) struct IsolationProvider {
    pub(crate) strategy: String,
    #[cfg(feature = "sql")]
    pub(crate) database: Option<tenancy_isolation_sql::TenantDatabase>,
    /// Run at boot on the tenant transactions' pool; a finding fails the boot.
    #[cfg(feature = "sql")]
    pub(crate) audit: Option<tenancy_isolation_sql::RlsAudit>,
    /// How long the pool may take to answer a health check.
    #[cfg(feature = "sql")]
    pub(crate) timeout: std::time::Duration,
}

#[async_trait]
impl Provider for IsolationProvider {
    fn name(&self) -> &str {
        "isolation"
    }

    #[cfg(feature = "sql")]
    async fn boot(&self) -> Result<(), TenantError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let Some(database) = &self.database else {
            return Err(TenantError::Configuration(
                "a row-level-security audit was requested, but the stack has no PostgreSQL \
                 store to audit: set store.url to a postgres:// URL"
                    .into(),
            ));
        };
        let report = audit.run(database.pool()).await?.into_result()?;
        tracing::info!(
            tables = report.tables.len(),
            "row-level-security audit passed"
        );
        Ok(())
    }

    async fn health(&self) -> Health {
        #[cfg(feature = "sql")]
        let health = match &self.database {
            Some(database) => database.health(self.timeout).await,
            None => Health::healthy().with_detail("database", "none (no PostgreSQL store)"),
        };
        #[cfg(not(feature = "sql"))]
        let health = Health::healthy().with_detail("database", "none (feature sql off)");
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
    use tenancy_core::{Health, Invalidators, Provider, TenantError};
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

        async fn boot(&self) -> Result<(), TenantError> {
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
