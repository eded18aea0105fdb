//! `configure` end to end on the SQLite store, through an axum router.

// `figment::Jail` closures return `figment::Result`, whose error is large; that is its API.
#![allow(clippy::result_large_err)]

mod common;

use common::{app, assert_providers, assert_store_pinged_once, create, get_with};
use figment::Figment;
use figment::providers::{Format, Yaml};
use http::StatusCode;
use tenancy::TenancyConfig;
use tenancy::core::{HealthStatus, TenantStatus};

fn config(dir: &std::path::Path) -> TenancyConfig {
    let yaml = format!(
        "tenancy:
  store:
    url: sqlite://{}?mode=rwc
  resolution:
    resolvers: [header, path]
    trusted_resolvers: []
    membership: off
  lifecycle:
    auto_provision_isolation: true
",
        dir.join("tenants.db").display()
    );
    TenancyConfig::from_figment(&Figment::from(Yaml::string(&yaml))).unwrap()
}

#[tokio::test]
async fn configure_on_sqlite_serves_tenants_by_header_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let tenancy = tenancy::configure(config(dir.path())).await.unwrap();
    assert_providers(&tenancy, &[]);
    let lifecycle = tenancy.lifecycle();
    let acme = create(&tenancy, "acme").await;
    assert_eq!(
        acme.status,
        TenantStatus::Active,
        "row-level provisioning needs no DDL"
    );

    let app = app(&tenancy);
    assert_eq!(
        get_with(&app, "/whoami", Some(&acme.id.to_string())).await,
        (StatusCode::OK, "acme header".to_owned())
    );
    assert_eq!(
        get_with(&app, "/tenants/acme/whoami", None).await,
        (StatusCode::OK, "acme path".to_owned())
    );
    assert_eq!(
        get_with(&app, "/tenants/nobody/whoami", None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_with(&app, "/whoami", None).await.0,
        StatusCode::FORBIDDEN
    );

    // Deactivation reaches the middleware at once: lifecycle invalidates the validator's cache.
    assert!(
        !lifecycle
            .deactivate(acme.id)
            .await
            .unwrap()
            .into_tenant()
            .is_active()
    );
    assert_eq!(
        get_with(&app, "/tenants/acme/whoami", None).await.0,
        StatusCode::FORBIDDEN
    );

    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{report:?}");
    assert_eq!(report.components["store"].details["backend"], "sqlite");
    assert_store_pinged_once(&report);
    assert_eq!(
        report.components["isolation"].details["strategy"],
        "row_level"
    );
    assert_eq!(
        report.components["integration"].details["cache_key_prefix"],
        "true"
    );
    tenancy.shutdown().await.unwrap();
    // Shutting down closes the store's pool: nothing keeps the database open afterwards.
    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:?}");
    assert_eq!(
        report.components["store"].status,
        HealthStatus::Unhealthy,
        "{report:?}"
    );

    // The tenants outlive the stack: a second stack on the same file sees them.
    let again = tenancy::configure(config(dir.path())).await.unwrap();
    let stored = again.lifecycle().get(acme.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TenantStatus::Inactive);
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn strict_membership_without_a_checker_is_refused_and_a_checker_is_accepted() {
    use std::sync::Arc;
    use tenancy::core::{TenantError, TenantInfo};
    use tenancy::resolution::{AuthenticatedUser, TenantMembership};

    #[derive(Debug)]
    struct Everyone;
    #[async_trait::async_trait]
    impl TenantMembership for Everyone {
        async fn is_member(
            &self,
            _: &AuthenticatedUser,
            _: &TenantInfo,
        ) -> Result<bool, TenantError> {
            Ok(true)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let mut strict = config(dir.path());
    strict.resolution.membership = tenancy::MembershipMode::Strict;
    let error = tenancy::configure(strict.clone()).await.unwrap_err();
    assert!(matches!(error, tenancy::Error::Build(_)), "{error}");
    assert!(error.to_string().contains("membership"), "{error}");

    let tenancy = tenancy::StackBuilder::new(strict)
        .membership(Arc::new(Everyone))
        .build()
        .await
        .unwrap();
    assert_eq!(tenancy.health().await.status, HealthStatus::Healthy);
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_store_is_closed_only_after_every_provider_has_shut_down() {
    use std::sync::{Arc, Mutex};
    use tenancy::core::{Health, Provider, TenantError, TenantId};
    use tenancy::lifecycle::TenantLifecycle;

    /// Reads the store through the lifecycle when it shuts down; records whether that worked.
    #[derive(Debug)]
    struct ReadsOnShutdown {
        lifecycle: Mutex<Option<Arc<TenantLifecycle>>>,
        read: Arc<Mutex<Option<Result<(), String>>>>,
    }
    #[async_trait::async_trait]
    impl Provider for ReadsOnShutdown {
        fn name(&self) -> &str {
            "reads_on_shutdown"
        }
        async fn shutdown(&self) -> Result<(), TenantError> {
            let lifecycle = self.lifecycle.lock().unwrap().clone().unwrap();
            let read = lifecycle.get(TenantId::new()).await.map(drop);
            *self.read.lock().unwrap() = Some(read.map_err(|e| e.to_string()));
            Ok(())
        }
        async fn health(&self) -> Health {
            Health::healthy()
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let read = Arc::new(Mutex::new(None));
    let provider = Arc::new(ReadsOnShutdown {
        lifecycle: Mutex::new(None),
        read: Arc::clone(&read),
    });
    let tenancy = tenancy::StackBuilder::new(config(dir.path()))
        .provider(provider.clone())
        .build()
        .await
        .unwrap();
    assert_providers(&tenancy, &["reads_on_shutdown"]);
    *provider.lifecycle.lock().unwrap() = Some(Arc::clone(tenancy.lifecycle()));
    let acme = create(&tenancy, "acme").await;

    tenancy.shutdown().await.unwrap();
    assert_eq!(
        *read.lock().unwrap(),
        Some(Ok(())),
        "the store still answers while providers shut down"
    );
    // Then the stack closes it: the store no longer answers.
    let error = tenancy.lifecycle().get(acme.id).await.unwrap_err();
    assert!(error.is_infrastructure(), "{error}");
    // A second shutdown does nothing.
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn booting_finishes_tenants_left_provisioning() {
    use tenancy::core::{StatusChange, TenantStore};
    use tenancy::store_sql::SqliteTenantStore;

    let dir = tempfile::tempdir().unwrap();
    let tenancy = tenancy::configure(config(dir.path())).await.unwrap();
    let acme = create(&tenancy, "acme").await;
    tenancy.shutdown().await.unwrap();
    // Back to provisioning, as a create that stopped before its activation leaves a tenant.
    let store = SqliteTenantStore::connect(&config(dir.path()).store)
        .await
        .unwrap();
    for (from, to) in [
        (TenantStatus::Active, TenantStatus::Inactive),
        (TenantStatus::Inactive, TenantStatus::Provisioning),
    ] {
        let change = StatusChange {
            from,
            to,
            reason: None,
        };
        store.set_status(acme.id, change).await.unwrap();
    }
    store.close().await;

    // Younger than `lifecycle.recover_after` (default 5m): left for whoever is provisioning it.
    let young = tenancy::configure(config(dir.path())).await.unwrap();
    let stored = young.lifecycle().get(acme.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TenantStatus::Provisioning);
    young.shutdown().await.unwrap();

    let mut sweeping = config(dir.path());
    sweeping.lifecycle.recover_after = Some(std::time::Duration::ZERO);
    let recovered = tenancy::configure(sweeping).await.unwrap();
    let stored = recovered.lifecycle().get(acme.id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        TenantStatus::Active,
        "the boot's recovery sweep finished it"
    );
    recovered.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_reports_a_sqlite_file_that_cannot_take_writes() {
    let dir = tempfile::tempdir().unwrap();
    let tenancy = tenancy::configure(config(dir.path())).await.unwrap();
    let report = tenancy.health().await;
    assert_eq!(report.components["store"].details["writable"], "yes");
    assert_eq!(report.status, HealthStatus::Healthy);
    std::fs::remove_file(dir.path().join("tenants.db")).unwrap();
    let report = tenancy.health().await;
    assert_eq!(
        report.components["store"].status,
        HealthStatus::Unhealthy,
        "{report:?}"
    );
    assert_eq!(report.status, HealthStatus::Unhealthy);
    let _ = tenancy.shutdown().await;
}
