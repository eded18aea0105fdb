//! The bundle: providers booted in order, shut down in reverse, health checked within a timeout.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tenancy_core::{Health, Provider, TenantError};

/// How long one provider's health check may take before it counts as unhealthy.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The phase of a provider's life in which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// [`Provider::boot`].
    Boot,
    /// [`Provider::shutdown`].
    Shutdown,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Boot => "boot",
            Self::Shutdown => "shut down",
        })
    }
}

/// A provider failed to boot or shut down.
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

/// Providers in boot order, and how long one health check may take.
#[derive(Debug)]
pub(crate) struct Bundle {
    providers: Vec<Arc<dyn Provider>>,
    health_timeout: Duration,
}

impl Bundle {
    /// Boots `providers` in order. When one fails, the providers booted before it are shut down
    /// in reverse order and the failure names it.
    pub(crate) async fn start(
        providers: Vec<Arc<dyn Provider>>,
        health_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        for (booted, provider) in providers.iter().enumerate() {
            tracing::debug!(provider = provider.name(), "booting");
            if let Err(source) = provider.boot().await {
                let error = failure(provider.as_ref(), Phase::Boot, source);
                tracing::error!(provider = provider.name(), error = %error, "boot failed; shutting down the providers already booted");
                if let Err(shutdown) = shutdown_in_reverse(&providers[..booted]).await {
                    tracing::error!(error = %shutdown, "shutdown after a failed boot");
                }
                return Err(error);
            }
        }
        Ok(Self {
            providers,
            health_timeout,
        })
    }

    /// The providers' names, in boot order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.name())
    }

    /// How long one health check may take.
    pub(crate) fn health_timeout(&self) -> Duration {
        self.health_timeout
    }

    /// Every provider's health check, run concurrently, each bounded by the health timeout (a
    /// check that does not answer in time counts as unhealthy).
    pub(crate) async fn health(&self) -> Vec<(String, Health)> {
        let checks = self.providers.iter().map(|provider| async move {
            (
                provider.name().to_owned(),
                bounded(self.health_timeout, provider.health()).await,
            )
        });
        join_all(checks).await
    }

    /// Shuts every provider down in reverse boot order.
    pub(crate) async fn shutdown(&self) -> Result<(), ShutdownError> {
        shutdown_in_reverse(&self.providers).await
    }
}

/// `check`'s health, or unhealthy when it does not answer within `timeout`.
pub(crate) async fn bounded(timeout: Duration, check: impl Future<Output = Health>) -> Health {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| {
            Health::unhealthy(format!(
                "health check did not answer within {} ms",
                timeout.as_millis()
            ))
        })
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
