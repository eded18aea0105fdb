//! The bundle: providers registered and booted in order, shut down in reverse, health aggregated.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tenancy_core::{Components, Health, HealthReport, Provider, TenantError};

/// How long one provider's health check may take before it counts as unhealthy.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The phase of a provider's life in which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// [`Provider::register`].
    Register,
    /// [`Provider::boot`].
    Boot,
    /// [`Provider::shutdown`].
    Shutdown,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Register => "register",
            Self::Boot => "boot",
            Self::Shutdown => "shut down",
        })
    }
}

/// A provider failed to register, boot or shut down.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}` failed to {phase}: {source}")]
pub struct ProviderError {
    /// The provider's name.
    pub provider: String,
    /// What it was doing.
    pub phase: Phase,
    /// Its error.
    #[source]
    pub source: TenantError,
}

/// Some providers failed to shut down; the others were shut down all the same.
#[derive(Debug, thiserror::Error)]
#[error("{} provider(s) failed to shut down: {}", failures.len(), names(failures))]
pub struct ShutdownError {
    /// Each failure, in shutdown order.
    pub failures: Vec<ProviderError>,
}

fn names(failures: &[ProviderError]) -> String {
    failures
        .iter()
        .map(|f| f.provider.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds a [`Tenancy`] bundle from providers, in the order they must boot.
#[derive(Debug)]
pub struct TenancyBuilder {
    providers: Vec<Arc<dyn Provider>>,
    components: Components,
    health_timeout: Duration,
}

impl Default for TenancyBuilder {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            components: Components::new(),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
        }
    }
}

impl TenancyBuilder {
    /// Adds a provider; providers boot in the order they are added.
    #[must_use]
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Registers a service before any provider registers (a store the providers share, say).
    #[must_use]
    pub fn component<T: Send + Sync + 'static>(mut self, service: Arc<T>) -> Self {
        self.components.insert(service);
        self
    }

    /// How long one provider's health check may take before it counts as unhealthy
    /// (default [`DEFAULT_HEALTH_TIMEOUT`]).
    #[must_use]
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// Registers every provider in order, then boots them in order.
    ///
    /// # Errors
    /// [`ProviderError`] naming the first provider that failed to register (nothing has booted then)
    /// or to boot; the providers booted before it have been shut down, in reverse order.
    pub async fn start(self) -> Result<Tenancy, ProviderError> {
        let Self {
            providers,
            mut components,
            health_timeout,
        } = self;
        for provider in &providers {
            provider
                .register(&mut components)
                .await
                .map_err(|source| failure(provider.as_ref(), Phase::Register, source))?;
        }
        for (booted, provider) in providers.iter().enumerate() {
            tracing::debug!(provider = provider.name(), "booting");
            if let Err(source) = provider.boot(&components).await {
                let error = failure(provider.as_ref(), Phase::Boot, source);
                tracing::error!(provider = provider.name(), error = %error, "boot failed; shutting down the providers already booted");
                if let Err(shutdown) = shutdown_in_reverse(&providers[..booted]).await {
                    tracing::error!(error = %shutdown, "shutdown after a failed boot");
                }
                return Err(error);
            }
        }
        Ok(Tenancy {
            providers,
            components,
            health_timeout,
            stopped: AtomicBool::new(false),
        })
    }
}

fn failure(provider: &dyn Provider, phase: Phase, source: TenantError) -> ProviderError {
    ProviderError {
        provider: provider.name().to_owned(),
        phase,
        source,
    }
}

/// Shuts every provider down in reverse order, going on after failures.
async fn shutdown_in_reverse(providers: &[Arc<dyn Provider>]) -> Result<(), ShutdownError> {
    let mut failures = Vec::new();
    for provider in providers.iter().rev() {
        tracing::debug!(provider = provider.name(), "shutting down");
        if let Err(source) = provider.shutdown().await {
            failures.push(failure(provider.as_ref(), Phase::Shutdown, source));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ShutdownError { failures })
    }
}

/// A running tenancy stack: booted providers and the services they registered.
///
/// Build one with [`configure`](crate::configure), [`stub`](crate::stub), or
/// [`Tenancy::builder`] from providers of your own. Call [`shutdown`](Self::shutdown) before
/// dropping it: that stops background work (the change feed's listener, say) in reverse boot order.
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use tenancy::Tenancy;
/// use tenancy::core::{Health, HealthStatus, Provider};
///
/// #[derive(Debug)]
/// struct Clock;
///
/// #[async_trait]
/// impl Provider for Clock {
///     fn name(&self) -> &str { "clock" }
///     async fn health(&self) -> Health { Health::healthy() }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let tenancy = Tenancy::builder().provider(Arc::new(Clock)).start().await?;
/// assert_eq!(tenancy.health().await.status, HealthStatus::Healthy);
/// tenancy.shutdown().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Tenancy {
    providers: Vec<Arc<dyn Provider>>,
    components: Components,
    health_timeout: Duration,
    stopped: AtomicBool,
}

impl fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("providers", &self.provider_names().collect::<Vec<_>>())
            .field("health_timeout", &self.health_timeout)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// A builder without providers.
    #[must_use]
    pub fn builder() -> TenancyBuilder {
        TenancyBuilder::default()
    }

    /// The providers' names, in boot order.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.name())
    }

    /// The services the providers registered.
    #[must_use]
    pub fn components(&self) -> &Components {
        &self.components
    }

    /// The registered service of type `T`, or a configuration error naming the type.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when no provider registered one.
    pub fn require<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, TenantError> {
        self.components.require::<T>()
    }

    /// Every provider's real health check, run concurrently, each bounded by the health timeout (a
    /// check that does not answer in time counts as unhealthy); the report's status is the worst.
    pub async fn health(&self) -> HealthReport {
        let timeout = self.health_timeout;
        let checks = self.providers.iter().map(|provider| async move {
            let health = match tokio::time::timeout(timeout, provider.health()).await {
                Ok(health) => health,
                Err(_) => Health::unhealthy(format!(
                    "health check did not answer within {} ms",
                    timeout.as_millis()
                )),
            };
            (provider.name().to_owned(), health)
        });
        HealthReport::from_components(join_all(checks).await)
    }

    /// Shuts the providers down in reverse boot order (once: later calls do nothing).
    ///
    /// # Errors
    /// [`ShutdownError`] listing the providers whose shutdown failed; the others were shut down.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        shutdown_in_reverse(&self.providers).await
    }
}
