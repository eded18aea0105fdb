//! The bundle: register and boot in order, shut down in reverse, a failed boot unwinds, health is
//! the worst of bounded real checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tenancy::core::{Components, Health, HealthStatus, Provider, TenantError};
use tenancy::{Phase, Tenancy};

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

    async fn register(&self, components: &mut Components) -> Result<(), TenantError> {
        self.log("register");
        components.insert(Arc::new(self.name.to_owned()));
        Ok(())
    }

    async fn boot(&self, components: &Components) -> Result<(), TenantError> {
        self.log("boot");
        assert!(
            components.get::<String>().is_some(),
            "boot runs after every register"
        );
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

#[tokio::test]
async fn boots_in_order_and_shuts_down_in_reverse_once() {
    let journal = Journal::default();
    let mut builder = Tenancy::builder();
    for name in ["resolution", "lifecycle", "overrides"] {
        builder = builder.provider(Arc::new(Recording::new(name, &journal)));
    }
    let tenancy = builder.start().await.unwrap();
    assert_eq!(
        tenancy.provider_names().collect::<Vec<_>>(),
        ["resolution", "lifecycle", "overrides"]
    );
    tenancy.shutdown().await.unwrap();
    tenancy.shutdown().await.unwrap();
    assert_eq!(
        entries(&journal),
        [
            "register resolution",
            "register lifecycle",
            "register overrides",
            "boot resolution",
            "boot lifecycle",
            "boot overrides",
            "shutdown overrides",
            "shutdown lifecycle",
            "shutdown resolution",
        ]
    );
}

#[tokio::test]
async fn a_failed_boot_shuts_down_the_providers_already_booted_and_names_the_culprit() {
    let journal = Journal::default();
    let failing = Recording {
        fail_boot: true,
        ..Recording::new("overrides", &journal)
    };
    let error = Tenancy::builder()
        .provider(Arc::new(Recording::new("resolution", &journal)))
        .provider(Arc::new(Recording::new("lifecycle", &journal)))
        .provider(Arc::new(failing))
        .provider(Arc::new(Recording::new("isolation", &journal)))
        .start()
        .await
        .unwrap_err();
    assert_eq!(error.provider, "overrides");
    assert_eq!(error.phase, Phase::Boot);
    assert_eq!(
        error.to_string(),
        "provider `overrides` failed to boot: invalid configuration: overrides cannot start"
    );
    assert_eq!(
        entries(&journal),
        [
            "register resolution",
            "register lifecycle",
            "register overrides",
            "register isolation",
            "boot resolution",
            "boot lifecycle",
            "boot overrides",
            "shutdown lifecycle",
            "shutdown resolution",
        ]
    );
}

#[tokio::test]
async fn health_is_the_worst_check_and_a_hung_check_turns_unhealthy() {
    let journal = Journal::default();
    let degraded = Recording {
        health: Some(Health::degraded("change feed reconnecting")),
        ..Recording::new("change_feed", &journal)
    };
    let tenancy = Tenancy::builder()
        .provider(Arc::new(Recording::new("resolution", &journal)))
        .provider(Arc::new(degraded))
        .start()
        .await
        .unwrap();
    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(
        report.components["resolution"].status,
        HealthStatus::Healthy
    );
    assert_eq!(
        report.components["change_feed"].details["reason"],
        "change feed reconnecting"
    );

    let hung = Recording {
        health: None,
        ..Recording::new("lifecycle", &journal)
    };
    let tenancy = Tenancy::builder()
        .provider(Arc::new(Recording::new("resolution", &journal)))
        .provider(Arc::new(hung))
        .health_timeout(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(
        report.components["resolution"].status,
        HealthStatus::Healthy
    );
    assert_eq!(
        report.components["lifecycle"].details["reason"],
        "health check did not answer within 50 ms"
    );
}

#[tokio::test]
async fn a_failed_register_boots_nothing() {
    #[derive(Debug)]
    struct Broken;
    #[async_trait]
    impl Provider for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn register(&self, _: &mut Components) -> Result<(), TenantError> {
            Err(TenantError::Configuration("no store".into()))
        }
        async fn health(&self) -> Health {
            Health::healthy()
        }
    }
    let journal = Journal::default();
    let error = Tenancy::builder()
        .provider(Arc::new(Recording::new("resolution", &journal)))
        .provider(Arc::new(Broken))
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        (error.provider.as_str(), error.phase),
        ("broken", Phase::Register)
    );
    assert_eq!(entries(&journal), ["register resolution"]);
}

#[tokio::test]
async fn a_failed_shutdown_is_reported_and_the_others_still_shut_down() {
    let journal = Journal::default();
    let stuck = Recording {
        fail_shutdown: true,
        ..Recording::new("lifecycle", &journal)
    };
    let tenancy = Tenancy::builder()
        .provider(Arc::new(Recording::new("resolution", &journal)))
        .provider(Arc::new(stuck))
        .provider(Arc::new(Recording::new("overrides", &journal)))
        .start()
        .await
        .unwrap();
    let error = tenancy.shutdown().await.unwrap_err();
    assert_eq!(error.failures.len(), 1);
    assert_eq!(
        error.to_string(),
        "1 provider(s) failed to shut down: lifecycle"
    );
    assert_eq!(
        entries(&journal)[6..],
        [
            "shutdown overrides",
            "shutdown lifecycle",
            "shutdown resolution"
        ]
    );
}
