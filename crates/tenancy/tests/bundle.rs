//! The bundle: providers boot in order, shut down in reverse, a failed boot unwinds, health is
//! the worst of bounded real checks. Application providers join a stub stack after its own.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::assert_providers;
use tenancy::core::{Health, HealthStatus, Provider, TenantError};
use tenancy::{Phase, StackBuilder, Tenancy, TenancyConfig};

type Journal = Arc<Mutex<Vec<String>>>;

/// A provider that records every call in a shared journal and fails or hangs on demand.
#[derive(Debug)]
struct Recording {
    name: &'static str,
    journal: Journal,
    fail_boot: bool,
    fail_shutdown: bool,
    health: Option<Health>,
}

impl Recording {
    fn new(name: &'static str, journal: &Journal) -> Self {
        Self {
            name,
            journal: Arc::clone(journal),
            fail_boot: false,
            fail_shutdown: false,
            health: Some(Health::healthy()),
        }
    }

    fn log(&self, what: &str) {
        self.journal
            .lock()
            .unwrap()
            .push(format!("{what} {}", self.name));
    }
}

#[async_trait]
impl Provider for Recording {
    fn name(&self) -> &str {
        self.name
    }

    async fn boot(&self) -> Result<(), TenantError> {
        self.log("boot");
        if self.fail_boot {
            return Err(TenantError::Configuration(format!(
                "{} cannot start",
                self.name
            )));
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), TenantError> {
        self.log("shutdown");
        if self.fail_shutdown {
            return Err(TenantError::Configuration(format!(
                "{} is stuck",
                self.name
            )));
        }
        Ok(())
    }

    async fn health(&self) -> Health {
        match &self.health {
            Some(health) => health.clone(),
            // A check that never answers.
            None => std::future::pending().await,
        }
    }
}

fn entries(journal: &Journal) -> Vec<String> {
    journal.lock().unwrap().clone()
}

/// A stub stack with `providers` added after its own, started with `health_timeout` when given.
async fn start(
    providers: Vec<Recording>,
    health_timeout: Option<Duration>,
) -> Result<Tenancy, tenancy::Error> {
    let mut builder = StackBuilder::new(TenancyConfig::stub());
    for provider in providers {
        builder = builder.provider(Arc::new(provider));
    }
    if let Some(timeout) = health_timeout {
        builder = builder.health_timeout(timeout);
    }
    builder.build().await
}

/// The provider error of a failed start.
fn provider_error(error: tenancy::Error) -> tenancy::ProviderError {
    match error {
        tenancy::Error::Provider(error) => error,
        other => panic!("expected a provider error, got {other}"),
    }
}

#[tokio::test]
async fn boots_in_order_and_shuts_down_in_reverse_once() {
    let journal = Journal::default();
    let providers = ["first", "second", "third"]
        .map(|name| Recording::new(name, &journal))
        .into();
    let tenancy = start(providers, None).await.unwrap();
    assert_providers(&tenancy, &["first", "second", "third"]);
    tenancy.shutdown().await.unwrap();
    tenancy.shutdown().await.unwrap();
    assert_eq!(
        entries(&journal),
        [
            "boot first",
            "boot second",
            "boot third",
            "shutdown third",
            "shutdown second",
            "shutdown first",
        ]
    );
}

#[tokio::test]
async fn a_failed_boot_shuts_down_the_providers_already_booted_and_names_the_culprit() {
    let journal = Journal::default();
    let failing = Recording {
        fail_boot: true,
        ..Recording::new("third", &journal)
    };
    let providers = vec![
        Recording::new("first", &journal),
        Recording::new("second", &journal),
        failing,
        Recording::new("fourth", &journal),
    ];
    let error = provider_error(start(providers, None).await.unwrap_err());
    assert_eq!(error.provider, "third");
    assert_eq!(error.phase, Phase::Boot);
    assert_eq!(
        error.to_string(),
        "provider `third` failed to boot: invalid configuration: third cannot start"
    );
    assert_eq!(
        entries(&journal),
        [
            "boot first",
            "boot second",
            "boot third",
            "shutdown second",
            "shutdown first",
        ]
    );
}

#[tokio::test]
async fn health_is_the_worst_check_and_a_hung_check_turns_unhealthy() {
    let journal = Journal::default();
    let degraded = Recording {
        health: Some(Health::degraded("change feed reconnecting")),
        ..Recording::new("feed", &journal)
    };
    let tenancy = start(vec![Recording::new("first", &journal), degraded], None)
        .await
        .unwrap();
    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.components["first"].status, HealthStatus::Healthy);
    assert_eq!(
        report.components["feed"].details["reason"],
        "change feed reconnecting"
    );
    tenancy.shutdown().await.unwrap();

    let hung = Recording {
        health: None,
        ..Recording::new("hung", &journal)
    };
    let tenancy = start(
        vec![Recording::new("first", &journal), hung],
        Some(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(report.components["first"].status, HealthStatus::Healthy);
    assert_eq!(report.components["store"].status, HealthStatus::Healthy);
    assert_eq!(
        report.components["hung"].details["reason"],
        "health check did not answer within 50 ms"
    );
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_shutdown_is_reported_and_the_others_still_shut_down() {
    let journal = Journal::default();
    let stuck = Recording {
        fail_shutdown: true,
        ..Recording::new("second", &journal)
    };
    let providers = vec![
        Recording::new("first", &journal),
        stuck,
        Recording::new("third", &journal),
    ];
    let tenancy = start(providers, None).await.unwrap();
    let error = tenancy.shutdown().await.unwrap_err();
    assert_eq!(error.failures.len(), 1);
    assert_eq!(
        error.to_string(),
        "1 provider(s) failed to shut down: second"
    );
    assert_eq!(
        entries(&journal)[3..],
        ["shutdown third", "shutdown second", "shutdown first"]
    );
}
