//! The lifecycle service over the in-memory store: transitions, provisioning, events, cache
//! invalidation, publisher failures.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tenancy_core::{
    CreateTenant, DomainName, Invalidators, TenantError, TenantEventKind, TenantId, TenantStatus,
    TenantStore, UpdateTenant,
};
use tenancy_lifecycle::{LifecycleConfig, Outcome, TenantLifecycle};

use support::{Harness, RecordingPublisher, TestStrategy, ValidatorCache, done};

#[derive(Debug, Clone, Copy)]
enum Op {
    Activate,
    Deactivate,
    Suspend,
}

impl Op {
    fn target(self) -> TenantStatus {
        match self {
            Self::Activate => TenantStatus::Active,
            Self::Deactivate => TenantStatus::Inactive,
            Self::Suspend => TenantStatus::Suspended,
        }
    }

    async fn run(self, lifecycle: &TenantLifecycle, id: TenantId) -> Result<Outcome, TenantError> {
        match self {
            Self::Activate => lifecycle.activate(id).await,
            Self::Deactivate => lifecycle.deactivate(id).await,
            Self::Suspend => lifecycle.suspend(id, Some("unpaid".into())).await,
        }
    }
}

/// Every (from, to) pair whose target an operation has: legal ones succeed with exactly one event
/// and an invalidation; illegal ones are `IllegalTransition` and change, invalidate and publish
/// nothing. The one legal pair into `provisioning` (inactive -> provisioning) is the first step
/// of activating an inactive tenant, which the strategy observes.
#[tokio::test]
async fn every_status_pair_follows_the_transition_table() {
    let mut checked = 0;
    for from in TenantStatus::ALL {
        for op in [Op::Activate, Op::Deactivate, Op::Suspend] {
            let to = op.target();
            let h = Harness::new();
            let before = h.tenant_in("pair", from).await;
            let result = op.run(&h.lifecycle, before.id).await;
            let after = h.stored(before.id).await;
            let events = h.publisher.taken();
            if from.can_transition_to(to) {
                let outcome = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert!(outcome.is_published());
                assert_eq!(outcome.tenant, after);
                assert_eq!(after.status, to, "{from} -> {to}");
                assert_eq!(events.len(), 1, "{from} -> {to}: {events:?}");
                let expected = match (from, op) {
                    (TenantStatus::Provisioning, Op::Activate) => TenantEventKind::Provisioned,
                    (_, Op::Activate) => TenantEventKind::Activated,
                    (_, Op::Deactivate) => TenantEventKind::Deactivated,
                    (_, Op::Suspend) => TenantEventKind::Suspended {
                        reason: Some("unpaid".into()),
                    },
                };
                assert_eq!(events[0].kind, expected, "{from} -> {to}");
                assert_eq!(events[0].tenant_id, before.id);
                assert!(h.cache.tenants.lock().unwrap().contains(&before.id));
                let expected_reason = (to == TenantStatus::Suspended).then_some("unpaid");
                assert_eq!(after.status_reason.as_deref(), expected_reason);
            } else {
                match result {
                    Err(TenantError::IllegalTransition {
                        tenant,
                        from: f,
                        to: t,
                    }) => assert_eq!((tenant, f, t), (before.id, from, to)),
                    other => panic!("{from} -> {to} must be illegal, got {other:?}"),
                }
                assert_eq!(after, before, "{from} -> {to} changed the tenant");
                assert!(events.is_empty(), "{from} -> {to} published {events:?}");
                assert_eq!(h.cache.tenant_count(), 0, "{from} -> {to} invalidated");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12);

    // inactive -> provisioning -> active: isolation is provisioned while the tenant is stored as
    // provisioning, so it is refused until the isolation is ready.
    let h = Harness::new();
    let tenant = h.tenant_in("reactivate", TenantStatus::Inactive).await;
    done(h.lifecycle.activate(tenant.id)).await;
    assert_eq!(
        *h.strategy.seen.lock().unwrap(),
        [TenantStatus::Provisioning]
    );
    assert_eq!(h.publisher.names(), ["activated"]);
}

#[tokio::test]
async fn a_failing_strategy_leaves_the_tenant_provisioning_until_a_retry_succeeds() {
    let h = Harness::new();
    let validator = Arc::new(ValidatorCache::new(h.store.clone()));
    h.lifecycle.invalidators().register(validator.clone());
    h.strategy.fail_provision.store(true, Ordering::SeqCst);

    let err = h
        .lifecycle
        .create(CreateTenant::new("acme".parse().unwrap(), "Acme"))
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::Isolation { .. }), "{err:?}");

    let tenant = h
        .store
        .get_by_slug(&"acme".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.status, TenantStatus::Provisioning);
    assert_eq!(
        tenant.status_reason.as_deref(),
        Some("isolation failed: creating schema: permission denied for database app")
    );
    assert_eq!(h.publisher.names(), ["created"], "no provisioned event");

    // Requests for it are refused, with the recorded error.
    match validator.validate(tenant.id).await {
        Err(TenantError::Provisioning {
            tenant: id,
            last_error,
        }) => {
            assert_eq!(id, tenant.id);
            assert_eq!(last_error, tenant.status_reason);
        }
        other => panic!("a provisioning tenant must be refused, got {other:?}"),
    }

    // Still failing: the retry fails the same way and changes nothing else.
    assert!(h.lifecycle.retry_provisioning(tenant.id).await.is_err());
    assert_eq!(h.stored(tenant.id).await.status, TenantStatus::Provisioning);

    h.strategy.fail_provision.store(false, Ordering::SeqCst);
    let outcome = h.lifecycle.retry_provisioning(tenant.id).await.unwrap();
    assert!(outcome.is_published());
    assert_eq!(outcome.tenant.status, TenantStatus::Active);
    assert_eq!(outcome.tenant.status_reason, None, "the error is cleared");
    assert_eq!(h.publisher.names(), ["created", "provisioned"]);
    assert_eq!(validator.validate(tenant.id).await.unwrap().id, tenant.id);

    let provisions = h.strategy.provisions.load(Ordering::SeqCst);
    let again = h.lifecycle.retry_provisioning(tenant.id).await.unwrap();
    assert_eq!(again.tenant, h.stored(tenant.id).await);
    assert_eq!(again.tenant.status, TenantStatus::Active);
    assert_eq!(
        h.strategy.provisions.load(Ordering::SeqCst),
        provisions,
        "no-op"
    );
    assert_eq!(h.publisher.names(), ["created", "provisioned"], "no event");
}

#[tokio::test]
async fn retry_refuses_inactive_and_suspended_tenants() {
    let h = Harness::new();
    let inactive = h.tenant_in("off", TenantStatus::Inactive).await;
    let suspended = h.tenant_in("held", TenantStatus::Suspended).await;
    assert!(matches!(
        h.lifecycle.retry_provisioning(inactive.id).await,
        Err(TenantError::Inactive { .. })
    ));
    assert!(matches!(
        h.lifecycle.retry_provisioning(suspended.id).await,
        Err(TenantError::Suspended {
            reason: Some(_),
            ..
        })
    ));
    assert!(matches!(
        h.lifecycle.retry_provisioning(TenantId::new()).await,
        Err(TenantError::NotFound { .. })
    ));
    assert_eq!(h.stored(inactive.id).await, inactive);
    assert_eq!(h.stored(suspended.id).await, suspended);
    assert!(h.publisher.names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_creates_of_one_slug_make_one_tenant() {
    let h = Harness::new();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let lifecycle = h.lifecycle.clone();
            tokio::spawn(async move {
                lifecycle
                    .create(CreateTenant::new(
                        "contested".parse().unwrap(),
                        format!("T{i}"),
                    ))
                    .await
            })
        })
        .collect();
    let (mut created, mut conflicts) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => created.push(outcome.into_result().unwrap()),
            Err(TenantError::SlugConflict { slug }) => {
                assert_eq!(slug.as_str(), "contested");
                conflicts += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created.len(), conflicts), (1, 99));
    assert_eq!(created[0].status, TenantStatus::Active);
    let page = h.lifecycle.list(Default::default()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let names = h.publisher.names();
    assert_eq!(names.iter().filter(|n| **n == "provisioned").count(), 1);
    assert_eq!(names.iter().filter(|n| **n == "created").count(), 1);
    assert_eq!(h.strategy.provisions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn suspend_drops_the_tenant_from_a_registered_cache() {
    let h = Harness::new();
    let validator = Arc::new(ValidatorCache::new(h.store.clone()));
    h.lifecycle.invalidators().register(validator.clone());
    let tenant = h
        .lifecycle
        .create(CreateTenant::new("acme".parse().unwrap(), "Acme"))
        .await
        .unwrap()
        .into_tenant();

    assert!(validator.validate(tenant.id).await.is_ok());
    assert!(validator.cache.contains_key(&tenant.id));

    done(h.lifecycle.suspend(tenant.id, Some("unpaid".into()))).await;
    assert!(!validator.cache.contains_key(&tenant.id), "still cached");
    match validator.validate(tenant.id).await {
        Err(TenantError::Suspended { reason, .. }) => assert_eq!(reason.as_deref(), Some("unpaid")),
        other => panic!("the next request must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_publisher_failure_keeps_the_change_and_is_reported() {
    let h = Harness::new();
    h.publisher.failing.store(true, Ordering::SeqCst);
    let outcome = h
        .lifecycle
        .create(CreateTenant::new("acme".parse().unwrap(), "Acme"))
        .await
        .unwrap();
    let id = outcome.tenant.id;
    assert_eq!(
        outcome.tenant.status,
        TenantStatus::Active,
        "provisioning went on"
    );
    let failed: Vec<_> = outcome
        .publish_errors
        .iter()
        .map(|e| match e {
            TenantError::Publish { event, tenant, .. } => {
                assert_eq!(*tenant, id);
                *event
            }
            other => panic!("not a publish error: {other:?}"),
        })
        .collect();
    assert_eq!(failed, ["created", "provisioned"]);

    let outcome = h.lifecycle.suspend(id, None).await.unwrap();
    assert!(!outcome.is_published());
    assert_eq!(h.stored(id).await.status, TenantStatus::Suspended, "stored");
    let err = outcome.into_result().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("publishing suspended for tenant {id} failed")
    );
    assert!(
        h.cache.tenants.lock().unwrap().contains(&id),
        "still invalidated"
    );
}

#[tokio::test]
async fn update_changes_only_given_fields_and_invalidates_both_slugs() {
    let h = Harness::new();
    let tenant = h.tenant_in("old-name", TenantStatus::Active).await;
    let patch = UpdateTenant {
        slug: Some("new-name".parse().unwrap()),
        name: Some("New".into()),
        ..UpdateTenant::default()
    };
    let updated = done(h.lifecycle.update(tenant.id, &patch)).await;
    assert_eq!(
        (updated.slug.as_str(), updated.name.as_str()),
        ("new-name", "New")
    );
    assert_eq!(updated.plan, tenant.plan);
    assert_eq!(updated.status, TenantStatus::Active);
    let events = h.publisher.taken();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].kind,
        TenantEventKind::Updated {
            fields: vec!["slug".into(), "name".into()]
        }
    );
    let slugs: Vec<String> = h
        .cache
        .slugs
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(slugs, ["old-name", "new-name"]);
    assert!(h.cache.tenants.lock().unwrap().contains(&tenant.id));

    // Nothing to change, or nothing that changes: no event.
    done(h.lifecycle.update(tenant.id, &UpdateTenant::default())).await;
    done(h.lifecycle.update(tenant.id, &patch)).await;
    assert!(h.publisher.taken().is_empty());

    // Refused updates change nothing and publish nothing.
    let other = h.tenant_in("taken", TenantStatus::Active).await;
    let before = h.stored(tenant.id).await;
    let conflict = UpdateTenant {
        slug: Some(other.slug),
        ..UpdateTenant::default()
    };
    assert!(matches!(
        h.lifecycle.update(tenant.id, &conflict).await,
        Err(TenantError::SlugConflict { .. })
    ));
    let invalid = UpdateTenant {
        name: Some(" ".into()),
        ..UpdateTenant::default()
    };
    assert!(matches!(
        h.lifecycle.update(tenant.id, &invalid).await,
        Err(TenantError::InvalidInput { field: "name", .. })
    ));
    assert_eq!(h.stored(tenant.id).await, before);
    assert!(h.publisher.taken().is_empty());
}

#[tokio::test]
async fn deactivation_deprovisions_only_when_configured() {
    let h = Harness::with(true, false);
    let tenant = h.tenant_in("keep", TenantStatus::Active).await;
    done(h.lifecycle.deactivate(tenant.id)).await;
    assert_eq!(h.strategy.deprovisions.load(Ordering::SeqCst), 0);

    let h = Harness::with(true, true);
    let tenant = h.tenant_in("drop", TenantStatus::Active).await;
    done(h.lifecycle.deactivate(tenant.id)).await;
    assert_eq!(h.strategy.deprovisions.load(Ordering::SeqCst), 1);
    // Activating again re-provisions.
    done(h.lifecycle.activate(tenant.id)).await;
    assert_eq!(h.strategy.provisions.load(Ordering::SeqCst), 1);
    assert_eq!(h.publisher.names(), ["deactivated", "activated"]);

    // A failed deprovisioning: the tenant is inactive anyway, the error is recorded and returned,
    // and `deprovision` retries and clears it.
    h.strategy.fail_deprovision.store(true, Ordering::SeqCst);
    let err = h.lifecycle.deactivate(tenant.id).await.unwrap_err();
    assert!(matches!(err, TenantError::Isolation { .. }));
    let stored = h.stored(tenant.id).await;
    assert_eq!(stored.status, TenantStatus::Inactive);
    assert_eq!(
        stored.status_reason.as_deref(),
        Some("deprovisioning failed: isolation failed: dropping schema: schema is in use")
    );
    h.strategy.fail_deprovision.store(false, Ordering::SeqCst);
    let cleared = h.lifecycle.deprovision(tenant.id).await.unwrap();
    assert_eq!(cleared.status_reason, None);
    assert_eq!(h.stored(tenant.id).await, cleared);
    assert_eq!(h.strategy.deprovisions.load(Ordering::SeqCst), 3);

    let active = h.tenant_in("busy", TenantStatus::Active).await;
    assert!(matches!(
        h.lifecycle.deprovision(active.id).await,
        Err(TenantError::InvalidInput {
            field: "tenant",
            ..
        })
    ));
}

#[tokio::test]
async fn auto_provisioning_off_never_calls_the_strategy() {
    let h = Harness::with(false, true);
    h.strategy.fail_provision.store(true, Ordering::SeqCst);
    h.strategy.fail_deprovision.store(true, Ordering::SeqCst);
    let tenant = done(
        h.lifecycle
            .create(CreateTenant::new("quiet".parse().unwrap(), "Quiet")),
    )
    .await;
    assert_eq!(tenant.status, TenantStatus::Active);
    done(h.lifecycle.deactivate(tenant.id)).await;
    assert_eq!(h.strategy.provisions.load(Ordering::SeqCst), 0);
    assert_eq!(h.strategy.deprovisions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn invalid_commands_and_reasons_store_nothing() {
    let h = Harness::new();
    let err = h
        .lifecycle
        .create(CreateTenant::new("acme".parse().unwrap(), ""))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        TenantError::InvalidInput { field: "name", .. }
    ));
    assert!(
        h.lifecycle
            .list(Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let tenant = h.tenant_in("acme", TenantStatus::Active).await;
    for reason in [
        "x".repeat(1001),
        "unpaid\u{1b}[2J".to_owned(),
        "unpaid\nstatus: active".to_owned(),
    ] {
        let err = h
            .lifecycle
            .suspend(tenant.id, Some(reason.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TenantError::InvalidInput {
                    field: "reason",
                    ..
                }
            ),
            "{reason:?}: {err:?}"
        );
    }
    assert_eq!(h.stored(tenant.id).await, tenant);
    assert!(h.publisher.names().is_empty());
    assert_eq!(h.cache.tenant_count(), 0);
}

#[tokio::test]
async fn config_provisions_through_the_given_strategy() {
    let store = Arc::new(tenancy_core::InMemoryStore::new());
    let config = LifecycleConfig {
        deprovision_on_deactivate: true,
        ..LifecycleConfig::default()
    };
    let strategy = Arc::new(TestStrategy::default());
    let lifecycle = TenantLifecycle::from_config(store, strategy.clone(), &config)
        .with_publisher(Arc::new(RecordingPublisher::default()))
        .with_invalidators(Invalidators::new());
    assert!(lifecycle.provisioner().auto_provision());
    let tenant = lifecycle
        .create(CreateTenant::new("acme".parse().unwrap(), "Acme"))
        .await
        .unwrap()
        .into_tenant();
    done(lifecycle.deactivate(tenant.id)).await;
    assert_eq!(
        strategy.deprovisions.load(Ordering::SeqCst),
        1,
        "deprovision_on_deactivate is applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_activate_once_and_announce_once() {
    for round in 0..5 {
        let h = Harness::new();
        *h.strategy.barrier.lock().unwrap() = Some(Arc::new(tokio::sync::Barrier::new(2)));
        let tenant = h
            .tenant_in(&format!("retry-{round}"), TenantStatus::Provisioning)
            .await;
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let lifecycle = h.lifecycle.clone();
                tokio::spawn(async move { lifecycle.retry_provisioning(tenant.id).await })
            })
            .collect();
        for task in tasks {
            let outcome = task.await.unwrap().unwrap();
            assert_eq!(outcome.tenant.status, TenantStatus::Active);
        }
        assert_eq!(
            h.strategy.provisions.load(Ordering::SeqCst),
            2,
            "both provisioned"
        );
        assert_eq!(h.publisher.names(), ["provisioned"], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_a_deactivation_overtakes_answers_the_tenant_it_created() {
    let h = Arc::new(Harness::new());
    let pause = Arc::new(tokio::sync::Barrier::new(2));
    *h.strategy.pause.lock().unwrap() = Some(pause.clone());
    let create = {
        let h = h.clone();
        tokio::spawn(async move {
            h.lifecycle
                .create(CreateTenant::new("racy".parse().unwrap(), "Racy"))
                .await
        })
    };
    // The tenant is stored as provisioning and being provisioned: deactivate it now.
    pause.wait().await;
    let racy = h
        .lifecycle
        .find(&tenancy_core::TenantRef::Slug("racy".parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    done(h.lifecycle.deactivate(racy.id)).await;
    pause.wait().await;
    let created = create
        .await
        .unwrap()
        .expect("the tenant was created: the answer says so, not a conflict");
    let tenant = created.into_tenant();
    assert_eq!(tenant.id, racy.id);
    assert_eq!(
        tenant.status,
        TenantStatus::Inactive,
        "as the deactivation left it"
    );
    assert_eq!(h.stored(racy.id).await.status, TenantStatus::Inactive);
}

#[tokio::test]
async fn a_create_of_a_slug_left_provisioning_resumes_that_tenant() {
    let h = Harness::new();
    // A create that stored the tenant and stopped there (a crash before its activation).
    let stranded = h.tenant_in("acme", TenantStatus::Provisioning).await;
    let resumed = done(
        h.lifecycle
            .create(CreateTenant::new("acme".parse().unwrap(), "Acme Again")),
    )
    .await;
    assert_eq!(
        resumed.id, stranded.id,
        "the stranded tenant, not a new one"
    );
    assert_eq!(resumed.status, TenantStatus::Active);
    assert_eq!(resumed.name, "Tenant", "as the first create stored it");
    assert_eq!(h.strategy.provisions.load(Ordering::SeqCst), 1);
    // Once active, the slug is taken.
    let again = h
        .lifecycle
        .create(CreateTenant::new("acme".parse().unwrap(), "Acme"))
        .await
        .unwrap_err();
    assert!(
        matches!(again, TenantError::SlugConflict { .. }),
        "{again:?}"
    );
}

#[tokio::test]
async fn the_recovery_sweep_finishes_tenants_stuck_provisioning() {
    let h = Harness::new();
    let stuck = h.tenant_in("stuck", TenantStatus::Provisioning).await;
    let active = h.tenant_in("fine", TenantStatus::Active).await;
    let off = h.tenant_in("off", TenantStatus::Inactive).await;
    // Younger than the threshold: left alone (another process may be provisioning it).
    let early = h
        .lifecycle
        .recover_stuck(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(early.recovered.is_empty() && early.failed.is_empty());
    assert_eq!(h.stored(stuck.id).await.status, TenantStatus::Provisioning);

    h.strategy.fail_provision.store(true, Ordering::SeqCst);
    let failing = h
        .lifecycle
        .recover_stuck(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(failing.failed.len(), 1);
    assert_eq!(failing.failed[0].0, stuck.id);
    let reason = h.stored(stuck.id).await.status_reason.unwrap_or_default();
    assert!(reason.contains("permission denied"), "{reason}");

    h.strategy.fail_provision.store(false, Ordering::SeqCst);
    let recovery = h
        .lifecycle
        .recover_stuck(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        recovery.recovered.iter().map(|t| t.id).collect::<Vec<_>>(),
        [stuck.id]
    );
    assert_eq!(h.stored(stuck.id).await.status, TenantStatus::Active);
    assert_eq!(h.stored(active.id).await.status, TenantStatus::Active);
    assert_eq!(h.stored(off.id).await.status, TenantStatus::Inactive);
}

#[tokio::test]
async fn domains_change_with_events_and_invalidations() {
    let h = Harness::new();
    let acme = h.tenant_in("acme", TenantStatus::Active).await;
    let other = h.tenant_in("other", TenantStatus::Active).await;
    h.publisher.taken();
    let (com, portal): (DomainName, DomainName) = (
        "acme.com".parse().unwrap(),
        "portal.acme.example".parse().unwrap(),
    );

    let outcome = h.lifecycle.add_domain(acme.id, &com, false).await.unwrap();
    assert!(outcome.publish_errors.is_empty());
    let change = outcome.into_result().unwrap();
    assert!(change.changed);
    assert!(change.domains[0].primary, "the first domain is primary");
    let outcome = h
        .lifecycle
        .add_domain(acme.id, &portal, true)
        .await
        .unwrap();
    assert_eq!(
        outcome.change.domains[0].domain, portal,
        "asked to be primary"
    );
    let again = h
        .lifecycle
        .add_domain(acme.id, &portal, true)
        .await
        .unwrap();
    assert!(!again.change.changed, "adding it again changes nothing");
    assert_eq!(
        h.publisher.names(),
        ["domain_added", "domain_added", "primary_domain_changed"]
    );
    let events = h.publisher.taken();
    assert_eq!(
        events[0].kind,
        TenantEventKind::DomainAdded {
            domain: com.clone(),
            primary: true
        }
    );
    assert_eq!(
        events[1].kind,
        TenantEventKind::DomainAdded {
            domain: portal.clone(),
            primary: false
        }
    );

    match h.lifecycle.add_domain(other.id, &com, false).await {
        Err(TenantError::DomainConflict { domain }) => assert_eq!(domain, com),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match h.lifecycle.remove_domain(other.id, &com).await {
        Err(TenantError::DomainNotFound { .. }) => {}
        other => panic!("expected DomainNotFound, got {other:?}"),
    }
    assert!(
        h.publisher.taken().is_empty(),
        "refused changes publish nothing"
    );

    let outcome = h.lifecycle.remove_domain(acme.id, &portal).await.unwrap();
    assert_eq!(outcome.change.domains.len(), 1);
    let events = h.publisher.taken();
    assert_eq!(
        events[0].kind,
        TenantEventKind::DomainRemoved {
            domain: portal.clone(),
            primary: Some(com.clone())
        },
        "the remaining domain became primary"
    );
    assert_eq!(
        *h.cache.domains.lock().unwrap(),
        [com.clone(), portal.clone(), portal.clone()],
        "every add and removal invalidated its domain"
    );
    let listed = h.lifecycle.domains(acme.id).await.unwrap();
    assert_eq!(listed.iter().map(|d| &d.domain).collect::<Vec<_>>(), [&com]);
}
