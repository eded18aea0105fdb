//! The test stack end to end: `stub()` through an axum router.

mod common;

use std::collections::BTreeSet;

use common::{app, assert_providers, assert_store_pinged_once, create, get_with};
use http::StatusCode;
use tenancy::core::{HealthStatus, TenantEventKind, TenantStatus};

#[tokio::test]
async fn stub_resolves_by_header_guards_and_follows_lifecycle_changes() {
    let tenancy = tenancy::stub().await.unwrap();
    assert_providers(&tenancy, &[]);
    let integration = tenancy.integration();
    assert!(!integration.cache_key_prefix && !integration.sql_context_bridge);

    let mut events = tenancy.subscribe();
    let lifecycle = tenancy.lifecycle();
    let acme = create(&tenancy, "acme").await;
    // No provisioning in the stub: the tenant is active at once.
    assert_eq!(acme.status, TenantStatus::Active);
    assert_eq!(events.recv().await.unwrap().kind.name(), "created");
    assert_eq!(
        events.recv().await.unwrap().kind,
        TenantEventKind::Provisioned
    );

    let app = app(&tenancy);
    let id = acme.id.to_string();
    assert_eq!(
        get_with(&app, "/whoami", Some(&id)).await,
        (StatusCode::OK, "acme header".to_owned())
    );
    // No tenant, an unknown tenant, a malformed header: the guard answers 403.
    assert_eq!(
        get_with(&app, "/whoami", None).await.0,
        StatusCode::FORBIDDEN
    );
    let unknown = tenancy::core::TenantId::new().to_string();
    assert_eq!(
        get_with(&app, "/whoami", Some(&unknown)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_with(&app, "/whoami", Some("'; drop")).await.0,
        StatusCode::FORBIDDEN
    );
    // The stub resolves by header only: the path resolver is off.
    assert_eq!(
        get_with(&app, "/tenants/acme/whoami", None).await.0,
        StatusCode::FORBIDDEN
    );

    // Suspending invalidates the validator's cached entry at once (through Invalidators).
    let suspended = lifecycle
        .suspend(acme.id, Some("unpaid".into()))
        .await
        .unwrap()
        .into_tenant();
    assert_eq!(suspended.status, TenantStatus::Suspended);
    assert_eq!(
        get_with(&app, "/whoami", Some(&id)).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(
        lifecycle
            .activate(acme.id)
            .await
            .unwrap()
            .into_tenant()
            .is_active()
    );
    assert_eq!(get_with(&app, "/whoami", Some(&id)).await.0, StatusCode::OK);

    // Per-tenant configuration through the config service, with its event.
    let configs = tenancy.config();
    set_theme_dark(configs, acme.id).await;
    let mut saw_change = false;
    while let Ok(event) = events.try_recv() {
        saw_change |= event.kind.name() == "config_changed";
    }
    assert!(saw_change, "config_changed was published");

    let report = tenancy.health().await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(
        report
            .components
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "integration",
            "isolation",
            "lifecycle",
            "overrides",
            "resolution",
            "store"
        ])
    );
    assert_eq!(report.components["store"].details["backend"], "memory");
    assert_store_pinged_once(&report);
    assert_eq!(
        report.components["lifecycle"].details["auto_provision"],
        "false"
    );
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn lifecycle_changes_invalidate_the_config_cache_too() {
    let tenancy = tenancy::stub().await.unwrap();
    let acme = create(&tenancy, "acme").await;
    let configs = tenancy.config();
    set_theme_dark(configs, acme.id).await;

    // Behind the cache's back, the stored value changes: the cache still answers the old one.
    let cache = tenancy.config_cache();
    cache
        .inner()
        .set_config(acme.id, "theme", serde_json::json!("light"))
        .await
        .unwrap();
    assert_eq!(
        configs.get(acme.id, "theme").await.unwrap(),
        Some(serde_json::json!("dark"))
    );

    // A lifecycle change invalidates the tenant in every registered cache, the config cache too.
    tenancy
        .lifecycle()
        .suspend(acme.id, None)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        configs.get(acme.id, "theme").await.unwrap(),
        Some(serde_json::json!("light"))
    );
    assert_eq!(
        tenancy.invalidators().len(),
        2 + usize::from(cfg!(feature = "limits")),
        "validator and config cache (and the limits, with feature limits)"
    );
    tenancy.shutdown().await.unwrap();
}

/// Sets the tenant's `theme` to `dark` and reads it back.
async fn set_theme_dark(configs: &tenancy::ConfigService, tenant: tenancy::TenantId) {
    configs
        .set(tenant, "theme", serde_json::json!("dark"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        configs.get(tenant, "theme").await.unwrap(),
        Some(serde_json::json!("dark"))
    );
}

#[tokio::test]
async fn an_isolation_strategy_the_stack_does_not_know_is_named_at_build() {
    let mut config = tenancy::TenancyConfig::stub();
    config.isolation.strategy = "schema".into();
    let error = tenancy::configure(config).await.unwrap_err();
    assert!(matches!(error, tenancy::Error::Build(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("isolation.strategy: unknown isolation strategy \"schema\"")
            && message.contains("registered: row_level"),
        "{message}"
    );
}
