//! The conformance suite every store implementation runs (feature `conformance`).
//!
//! Each check takes a store and asserts the contract of [`TenantStore`] and [`ConfigStore`]; it
//! panics with a message naming the broken rule. [`run_all`] runs them all and needs an empty store
//! (the listing check counts tenants). Implementations call it from their tests:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap().block_on(async {
//! let store = std::sync::Arc::new(tenancy_core::InMemoryStore::new());
//! tenancy_core::conformance::run_all(store).await;
//! # });
//! ```

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use crate::domain::{DomainName, TenantDomain};
use crate::error::TenantError;
use crate::id::{Slug, TenantId, TenantRef};
use crate::store::{ConfigStore, ListQuery, StatusChange, TenantStore};
use crate::tenant::{CreateTenant, TenantInfo, TenantStatus, UpdateTenant};

/// A tenant and config store, as the suite needs both.
pub trait Store: TenantStore + ConfigStore {}
impl<T: TenantStore + ConfigStore + ?Sized> Store for T {}

fn slug(s: &str) -> Slug {
    s.parse().expect("the suite uses valid slugs")
}

/// A new `provisioning` tenant with a unique slug starting with `prefix`.
#[must_use]
pub fn new_tenant(prefix: &str) -> TenantInfo {
    let id = TenantId::new();
    let slug = slug(&format!("{prefix}-{}", &id.simple().to_string()[20..]));
    let mut tenant = TenantInfo::from_command(
        CreateTenant::new(slug, format!("Tenant {prefix}"))
            .with_plan("free")
            .with_id(id),
        Utc::now(),
    )
    .expect("valid command");
    tenant.metadata.insert("region".into(), json!("eu"));
    tenant
}

/// Runs every check, in order, on an empty store.
pub async fn run_all<S: Store + 'static>(store: Arc<S>) {
    list_pages_and_filters(&*store).await;
    create_and_get(&*store).await;
    slug_conflicts(&*store).await;
    concurrent_creates_of_one_slug(store.clone(), 50).await;
    update_applies_given_fields(&*store).await;
    status_changes(&*store).await;
    status_reasons(&*store).await;
    racing_status_changes(store.clone()).await;
    concurrent_first_writes_of_a_key(store.clone(), 30).await;
    config_values(&*store).await;
    domains_and_primaries(&*store).await;
    concurrent_adds_of_one_domain(store.clone(), 30).await;
    concurrent_first_domains_of_a_tenant(store.clone(), 20).await;
}

fn domain(s: &str) -> DomainName {
    s.parse().expect("the suite uses valid domains")
}

/// A domain no other check uses, under `prefix`.
fn unique_domain(prefix: &str) -> DomainName {
    domain(&format!(
        "{prefix}-{}.example",
        &TenantId::new().simple().to_string()[20..]
    ))
}

fn names(domains: &[TenantDomain]) -> Vec<(&str, bool)> {
    domains
        .iter()
        .map(|d| (d.domain.as_str(), d.primary))
        .collect()
}

/// Domains: the first is primary, one owner per domain, adding twice changes nothing, removing the
/// primary promotes the oldest remaining one, and mistakes get the errors the trait names.
pub async fn domains_and_primaries<S: Store + ?Sized>(store: &S) {
    let acme = store.create(new_tenant("dom-a")).await.expect("create");
    let other = store.create(new_tenant("dom-b")).await.expect("create");
    let (first, second, third) = (
        unique_domain("first"),
        unique_domain("second"),
        unique_domain("third"),
    );
    assert!(store.domains(acme.id).await.expect("domains").is_empty());
    assert_eq!(
        store.get_by_domain(&first).await.expect("get_by_domain"),
        None
    );

    let added = store.add_domain(acme.id, &first, false).await.expect("add");
    assert!(added.changed);
    assert_eq!(
        names(&added.domains),
        [(first.as_str(), true)],
        "the first domain is primary"
    );
    assert_eq!(added.domains[0].tenant_id, acme.id);
    let again = store
        .add_domain(acme.id, &first, false)
        .await
        .expect("add again");
    assert!(
        !again.changed,
        "adding a domain the tenant has changes nothing"
    );
    assert_eq!(again.domains, added.domains);

    store
        .add_domain(acme.id, &second, false)
        .await
        .expect("add");
    let added = store.add_domain(acme.id, &third, false).await.expect("add");
    assert_eq!(
        names(&added.domains),
        [
            (first.as_str(), true),
            (second.as_str(), false),
            (third.as_str(), false)
        ],
        "primary first, then by name"
    );
    let found = store.get_by_domain(&second).await.expect("get_by_domain");
    assert_eq!(found.map(|t| t.id), Some(acme.id));

    match store.add_domain(other.id, &second, true).await {
        Err(TenantError::DomainConflict { domain }) => assert_eq!(domain, second),
        other => panic!("another tenant's domain must be DomainConflict, got {other:?}"),
    }
    match store
        .add_domain(TenantId::new(), &unique_domain("orphan"), false)
        .await
    {
        Err(TenantError::NotFound { .. }) => {}
        other => panic!("a missing tenant must be NotFound, got {other:?}"),
    }
    for result in [
        store.remove_domain(other.id, &second).await,
        store.set_primary_domain(other.id, &second).await,
    ] {
        match result {
            Err(TenantError::DomainNotFound { tenant, domain }) => {
                assert_eq!((tenant, domain), (other.id, second.clone()));
            }
            other => {
                panic!("a domain the tenant does not own must be DomainNotFound, got {other:?}")
            }
        }
    }

    let promoted = store
        .set_primary_domain(acme.id, &third)
        .await
        .expect("set primary");
    assert!(promoted.changed);
    assert_eq!(
        names(&promoted.domains),
        [
            (third.as_str(), true),
            (first.as_str(), false),
            (second.as_str(), false)
        ]
    );
    let same = store
        .set_primary_domain(acme.id, &third)
        .await
        .expect("set primary again");
    assert!(!same.changed);
    let promoted = store
        .add_domain(acme.id, &second, true)
        .await
        .expect("add as primary");
    assert!(
        promoted.changed,
        "adding an owned domain as primary makes it primary"
    );
    assert_eq!(promoted.domains[0].domain, second);
    assert_eq!(promoted.domains.iter().filter(|d| d.primary).count(), 1);

    let removed = store.remove_domain(acme.id, &second).await.expect("remove");
    assert!(removed.changed);
    assert_eq!(
        names(&removed.domains),
        [(first.as_str(), true), (third.as_str(), false)],
        "removing the primary promotes the oldest remaining domain"
    );
    assert_eq!(
        store.get_by_domain(&second).await.expect("get_by_domain"),
        None
    );
    store
        .add_domain(other.id, &second, false)
        .await
        .expect("a freed domain can be taken");
    store.remove_domain(acme.id, &first).await.expect("remove");
    let last = store.remove_domain(acme.id, &third).await.expect("remove");
    assert!(last.domains.is_empty());
    assert_eq!(
        names(&store.domains(other.id).await.expect("domains")),
        [(second.as_str(), true)]
    );
}

/// Of `n` tenants adding one domain at once, exactly one gets it; the rest get `DomainConflict`.
pub async fn concurrent_adds_of_one_domain<S: Store + 'static>(store: Arc<S>, n: usize) {
    let contested = unique_domain("contested");
    let mut tenants = Vec::with_capacity(n);
    for _ in 0..n {
        tenants.push(
            store
                .create(new_tenant("dom-race"))
                .await
                .expect("create")
                .id,
        );
    }
    let handles: Vec<_> = tenants
        .iter()
        .map(|&tenant| {
            let (store, contested) = (store.clone(), contested.clone());
            tokio::spawn(async move { store.add_domain(tenant, &contested, false).await })
        })
        .collect();
    let (mut won, mut conflicts) = (Vec::new(), 0);
    for (handle, tenant) in handles.into_iter().zip(&tenants) {
        match handle.await.expect("task") {
            Ok(change) => won.push((*tenant, change)),
            Err(TenantError::DomainConflict { domain }) if domain == contested => conflicts += 1,
            Err(other) => panic!("a losing add must be DomainConflict, got {other:?}"),
        }
    }
    assert_eq!(
        (won.len(), conflicts),
        (1, n - 1),
        "exactly one concurrent add wins"
    );
    let owner = store
        .get_by_domain(&contested)
        .await
        .expect("get_by_domain");
    assert_eq!(owner.map(|t| t.id), Some(won[0].0));
}

/// `n` domains added to one tenant at once leave exactly one of them primary.
pub async fn concurrent_first_domains_of_a_tenant<S: Store + 'static>(store: Arc<S>, n: usize) {
    let tenant = store
        .create(new_tenant("dom-first"))
        .await
        .expect("create")
        .id;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .add_domain(tenant, &unique_domain("many"), false)
                    .await
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task").expect("add_domain");
    }
    let domains = store.domains(tenant).await.expect("domains");
    assert_eq!(domains.len(), n);
    assert_eq!(
        domains.iter().filter(|d| d.primary).count(),
        1,
        "exactly one primary: {domains:?}"
    );
}

/// Created tenants read back equal, by id and by slug; unknown ones are `None`.
pub async fn create_and_get<S: Store + ?Sized>(store: &S) {
    let tenant = new_tenant("get");
    let created = store.create(tenant.clone()).await.expect("create");
    assert_eq!(created.id, tenant.id);
    assert_eq!(created.slug, tenant.slug);
    assert_eq!(created.status, TenantStatus::Provisioning);
    let by_id = store
        .get(tenant.id)
        .await
        .expect("get")
        .expect("stored tenant is found by id");
    assert_eq!(by_id.slug, tenant.slug);
    assert_eq!(by_id.name, tenant.name);
    assert_eq!(by_id.plan.as_deref(), Some("free"));
    assert_eq!(by_id.metadata, tenant.metadata);
    assert!(
        store
            .get_all_config(tenant.id)
            .await
            .expect("get all")
            .is_empty(),
        "a new tenant has no overrides"
    );
    assert_eq!(
        by_id.created_at.timestamp_millis(),
        tenant.created_at.timestamp_millis(),
        "created_at survives a round trip (to the millisecond)"
    );
    let by_slug = store
        .get_by_slug(&tenant.slug)
        .await
        .expect("get_by_slug")
        .expect("found");
    assert_eq!(by_slug.id, tenant.id);
    assert_eq!(
        store
            .find(&TenantRef::Slug(tenant.slug))
            .await
            .expect("find")
            .map(|t| t.id),
        Some(tenant.id)
    );
    assert!(
        store
            .get(TenantId::new())
            .await
            .expect("get unknown")
            .is_none()
    );
    assert!(
        store
            .get_by_slug(&slug("no-such-tenant"))
            .await
            .expect("get unknown")
            .is_none()
    );
}

/// A taken slug is refused on create and on update; renaming to one's own slug is fine.
pub async fn slug_conflicts<S: Store + ?Sized>(store: &S) {
    let a = store
        .create(new_tenant("conflict-a"))
        .await
        .expect("create a");
    let b = store
        .create(new_tenant("conflict-b"))
        .await
        .expect("create b");
    let mut dup = new_tenant("conflict-c");
    dup.slug = a.slug;
    match store.create(dup.clone()).await {
        Err(TenantError::SlugConflict { slug }) => assert_eq!(slug, a.slug),
        other => panic!("create with a taken slug must be SlugConflict, got {other:?}"),
    }
    assert!(
        store.get(dup.id).await.expect("get").is_none(),
        "the refused tenant is not stored"
    );
    let rename = UpdateTenant {
        slug: Some(a.slug),
        ..UpdateTenant::default()
    };
    match store.update(b.id, &rename).await {
        Err(TenantError::SlugConflict { slug }) => assert_eq!(slug, a.slug),
        other => panic!("update to a taken slug must be SlugConflict, got {other:?}"),
    }
    assert_eq!(
        store.get(b.id).await.expect("get").expect("b").slug,
        b.slug,
        "b is unchanged"
    );
    let same = UpdateTenant {
        slug: Some(a.slug),
        ..UpdateTenant::default()
    };
    store
        .update(a.id, &same)
        .await
        .expect("renaming to one's own slug is fine");
}

/// Of `n` concurrent creates with one slug, exactly one succeeds; the rest get `SlugConflict`.
pub async fn concurrent_creates_of_one_slug<S: Store + 'static>(store: Arc<S>, n: usize) {
    let contested = new_tenant("race").slug;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let store = store.clone();
            let mut tenant = new_tenant("racer");
            tenant.slug = contested;
            tokio::spawn(async move { store.create(tenant).await })
        })
        .collect();
    let (mut won, mut conflicts) = (0, 0);
    for handle in handles {
        match handle.await.expect("task") {
            Ok(_) => won += 1,
            Err(TenantError::SlugConflict { slug }) if slug == contested => conflicts += 1,
            Err(other) => panic!("a losing create must be SlugConflict, got {other:?}"),
        }
    }
    assert_eq!(
        (won, conflicts),
        (1, n - 1),
        "exactly one concurrent create wins"
    );
}

/// `n` concurrent `set_config` calls of one key not stored yet report old values consistent with
/// one serial order: exactly one finds no old value, every other finds the value of exactly one
/// earlier write, and the value left stored is the one no write found.
pub async fn concurrent_first_writes_of_a_key<S: Store + 'static>(store: Arc<S>, n: usize) {
    let tenant = store
        .create(new_tenant("first-writes"))
        .await
        .expect("create");
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.set_config(tenant.id, "fresh", Value::from(i)).await })
        })
        .collect();
    let mut olds = Vec::with_capacity(n);
    for handle in handles {
        olds.push(handle.await.expect("task").expect("set_config"));
    }
    let firsts = olds.iter().filter(|old| old.is_none()).count();
    assert_eq!(firsts, 1, "exactly one write found no old value: {olds:?}");
    let mut found: Vec<u64> = olds.iter().flatten().filter_map(Value::as_u64).collect();
    found.sort_unstable();
    found.dedup();
    assert_eq!(
        found.len(),
        n - 1,
        "each earlier write was found exactly once: {olds:?}"
    );
    let last = store
        .get_config(tenant.id, "fresh")
        .await
        .expect("get_config")
        .and_then(|v| v.as_u64())
        .expect("a value is stored");
    assert!(
        !found.contains(&last),
        "the stored value {last} was overwritten: {olds:?}"
    );
}

/// `update` changes the fields given and nothing else; a missing tenant is `NotFound`.
pub async fn update_applies_given_fields<S: Store + ?Sized>(store: &S) {
    let tenant = store.create(new_tenant("update")).await.expect("create");
    let patch = UpdateTenant {
        name: Some("Renamed".into()),
        ..UpdateTenant::default()
    };
    let updated = store.update(tenant.id, &patch).await.expect("update");
    assert_eq!(updated.name, "Renamed");
    assert_eq!(updated.slug, tenant.slug);
    assert_eq!(updated.plan, tenant.plan);
    assert_eq!(updated.metadata, tenant.metadata);
    assert!(updated.updated_at >= tenant.updated_at);
    let reread = store.get(tenant.id).await.expect("get").expect("found");
    assert_eq!(reread.name, "Renamed");

    let new_slug = new_tenant("renamed").slug;
    let patch = UpdateTenant {
        slug: Some(new_slug),
        plan: Some(None),
        metadata: Some(serde_json::Map::new()),
        ..UpdateTenant::default()
    };
    let updated = store.update(tenant.id, &patch).await.expect("update");
    assert_eq!((updated.slug, updated.plan.clone()), (new_slug, None));
    assert!(updated.metadata.is_empty());
    assert!(
        store
            .get_by_slug(&tenant.slug)
            .await
            .expect("get")
            .is_none(),
        "old slug is free"
    );
    assert_eq!(
        store
            .get_by_slug(&new_slug)
            .await
            .expect("get")
            .map(|t| t.id),
        Some(tenant.id)
    );

    let invalid = UpdateTenant {
        name: Some(String::new()),
        ..UpdateTenant::default()
    };
    assert!(matches!(
        store.update(tenant.id, &invalid).await,
        Err(TenantError::InvalidInput { field: "name", .. })
    ));
    match store.update(TenantId::new(), &patch).await {
        Err(TenantError::NotFound { .. }) => {}
        other => panic!("updating a missing tenant must be NotFound, got {other:?}"),
    }
}

/// Status changes follow the table, are conditional on the current status, and keep the reason.
pub async fn status_changes<S: Store + ?Sized>(store: &S) {
    let tenant = store.create(new_tenant("status")).await.expect("create");
    let change = |from, to, reason: Option<&str>| StatusChange {
        from,
        to,
        reason: reason.map(str::to_owned),
    };
    let active = store
        .set_status(
            tenant.id,
            change(TenantStatus::Provisioning, TenantStatus::Active, None),
        )
        .await
        .expect("provisioning -> active");
    assert_eq!(active.status, TenantStatus::Active);
    let suspended = store
        .set_status(
            tenant.id,
            change(
                TenantStatus::Active,
                TenantStatus::Suspended,
                Some("unpaid"),
            ),
        )
        .await
        .expect("active -> suspended");
    assert_eq!(suspended.status_reason.as_deref(), Some("unpaid"));
    let reread = store.get(tenant.id).await.expect("get").expect("found");
    assert_eq!(
        (reread.status, reread.status_reason.as_deref()),
        (TenantStatus::Suspended, Some("unpaid"))
    );

    match store
        .set_status(
            tenant.id,
            change(TenantStatus::Suspended, TenantStatus::Provisioning, None),
        )
        .await
    {
        Err(TenantError::IllegalTransition { from, to, .. }) => {
            assert_eq!(
                (from, to),
                (TenantStatus::Suspended, TenantStatus::Provisioning)
            );
        }
        other => panic!("an illegal transition must be IllegalTransition, got {other:?}"),
    }
    match store
        .set_status(
            tenant.id,
            change(TenantStatus::Active, TenantStatus::Inactive, None),
        )
        .await
    {
        Err(TenantError::StatusConflict {
            expected, actual, ..
        }) => {
            assert_eq!(
                (expected, actual),
                (TenantStatus::Active, TenantStatus::Suspended)
            );
        }
        other => panic!("a stale `from` must be StatusConflict, got {other:?}"),
    }
    let reread = store.get(tenant.id).await.expect("get").expect("found");
    assert_eq!(
        reread.status,
        TenantStatus::Suspended,
        "refused changes change nothing"
    );
    assert_eq!(reread.status_reason.as_deref(), Some("unpaid"));

    let active = store
        .set_status(
            tenant.id,
            change(TenantStatus::Suspended, TenantStatus::Active, None),
        )
        .await
        .expect("suspended -> active");
    assert_eq!(active.status_reason, None, "the reason is cleared");
    match store
        .set_status(
            TenantId::new(),
            change(TenantStatus::Active, TenantStatus::Inactive, None),
        )
        .await
    {
        Err(TenantError::NotFound { .. }) => {}
        other => panic!("changing a missing tenant must be NotFound, got {other:?}"),
    }
}

/// `set_status_reason` records a reason without changing the status, only while the tenant is in
/// the given status; `set_status` then replaces the reason.
pub async fn status_reasons<S: Store + ?Sized>(store: &S) {
    let tenant = store.create(new_tenant("reason")).await.expect("create");
    let recorded = store
        .set_status_reason(
            tenant.id,
            TenantStatus::Provisioning,
            Some("schema creation failed".to_owned()),
        )
        .await
        .expect("recording a reason in the current status");
    assert_eq!(
        recorded.status,
        TenantStatus::Provisioning,
        "the status is kept"
    );
    assert_eq!(
        recorded.status_reason.as_deref(),
        Some("schema creation failed")
    );
    let reread = store.get(tenant.id).await.expect("get").expect("found");
    assert_eq!(
        reread.status_reason.as_deref(),
        Some("schema creation failed")
    );
    assert_eq!(
        TenantError::for_status(&reread).map(|e| e.to_string()),
        Some(format!(
            "tenant {} is still provisioning (last attempt failed: schema creation failed)",
            tenant.id
        ))
    );

    match store
        .set_status_reason(tenant.id, TenantStatus::Active, Some("stale".to_owned()))
        .await
    {
        Err(TenantError::StatusConflict {
            expected, actual, ..
        }) => assert_eq!(
            (expected, actual),
            (TenantStatus::Active, TenantStatus::Provisioning)
        ),
        other => panic!("a reason for another status must be StatusConflict, got {other:?}"),
    }
    let reread = store.get(tenant.id).await.expect("get").expect("found");
    assert_eq!(
        reread.status_reason.as_deref(),
        Some("schema creation failed"),
        "a refused reason changes nothing"
    );

    let active = store
        .set_status(
            tenant.id,
            StatusChange {
                from: TenantStatus::Provisioning,
                to: TenantStatus::Active,
                reason: None,
            },
        )
        .await
        .expect("provisioning -> active");
    assert_eq!(
        active.status_reason, None,
        "a status change replaces the reason"
    );
    match store
        .set_status_reason(TenantId::new(), TenantStatus::Active, None)
        .await
    {
        Err(TenantError::NotFound { .. }) => {}
        other => panic!("a reason for a missing tenant must be NotFound, got {other:?}"),
    }
}

/// Two racing transitions from one status: one wins, the other gets `StatusConflict`.
pub async fn racing_status_changes<S: Store + 'static>(store: Arc<S>) {
    for _ in 0..10 {
        let tenant = store.create(new_tenant("racing")).await.expect("create");
        let handles: Vec<_> = [TenantStatus::Active, TenantStatus::Inactive]
            .into_iter()
            .map(|to| {
                let store = store.clone();
                let change = StatusChange {
                    from: TenantStatus::Provisioning,
                    to,
                    reason: None,
                };
                tokio::spawn(async move { store.set_status(tenant.id, change).await })
            })
            .collect();
        let mut winners = Vec::new();
        for handle in handles {
            match handle.await.expect("task") {
                Ok(t) => winners.push(t.status),
                Err(TenantError::StatusConflict {
                    expected: TenantStatus::Provisioning,
                    ..
                }) => {}
                Err(other) => panic!("the losing transition must be StatusConflict, got {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one of two racing transitions wins"
        );
        let stored = store.get(tenant.id).await.expect("get").expect("found");
        assert_eq!(stored.status, winners[0]);
    }
}

/// Listing is ordered by id, filters active tenants, and pages stably.
pub async fn list_pages_and_filters<S: Store + ?Sized>(store: &S) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let tenant = store.create(new_tenant("list")).await.expect("create");
        if i % 2 == 0 {
            let change = StatusChange {
                from: TenantStatus::Provisioning,
                to: TenantStatus::Active,
                reason: None,
            };
            store.set_status(tenant.id, change).await.expect("activate");
        }
        ids.push(tenant.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut query = ListQuery {
        limit: 3,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(query).await.expect("list");
        assert!(
            page.items.len() <= 3,
            "a page holds at most `limit` tenants"
        );
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen, ids,
        "pages cover every tenant once, in id order (the store must start empty)"
    );
    let active = store
        .list(ListQuery {
            active_only: true,
            limit: 100,
            after: None,
        })
        .await
        .expect("list");
    let expected: Vec<_> = ids
        .iter()
        .copied()
        .filter(|id| active.items.iter().any(|t| t.id == *id))
        .collect();
    assert_eq!(active.items.len(), 4, "four of seven are active");
    assert!(active.items.iter().all(TenantInfo::is_active));
    assert_eq!(
        active.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        expected
    );
    assert!(active.next.is_none());
}

/// Config values: set returns the old value, get and get-all read them, remove returns what it
/// removed; an unknown tenant is `NotFound` for writes.
pub async fn config_values<S: Store + ?Sized>(store: &S) {
    let tenant = store.create(new_tenant("config")).await.expect("create");
    let old = store
        .set_config(tenant.id, "theme", json!("light"))
        .await
        .expect("set");
    assert_eq!(old, None);
    assert_eq!(
        store.get_config(tenant.id, "theme").await.expect("get"),
        Some(json!("light"))
    );
    assert_eq!(
        store.get_config(tenant.id, "missing").await.expect("get"),
        None
    );
    let old = store
        .set_config(tenant.id, "theme", json!("dark"))
        .await
        .expect("set");
    assert_eq!(old, Some(json!("light")));
    let old = store
        .set_config(tenant.id, "limits", json!({"users": 10, "tags": ["a"]}))
        .await
        .expect("set");
    assert_eq!(old, None);
    let all = store.get_all_config(tenant.id).await.expect("get all");
    assert_eq!(all.get("theme"), Some(&json!("dark")));
    assert_eq!(
        all.get("limits"),
        Some(&json!({"users": 10, "tags": ["a"]}))
    );
    assert_eq!(all.len(), 2);
    let removed = store
        .remove_config(tenant.id, "theme")
        .await
        .expect("remove");
    assert_eq!(removed, Some(json!("dark")));
    assert_eq!(
        store
            .remove_config(tenant.id, "theme")
            .await
            .expect("remove again"),
        None
    );
    assert_eq!(
        store.get_config(tenant.id, "theme").await.expect("get"),
        None
    );
    assert!(
        store
            .get_all_config(TenantId::new())
            .await
            .expect("get all unknown")
            .is_empty()
    );
    match store.set_config(TenantId::new(), "theme", json!(1)).await {
        Err(TenantError::NotFound { .. }) => {}
        other => panic!("setting config of a missing tenant must be NotFound, got {other:?}"),
    }
    match store.remove_config(TenantId::new(), "theme").await {
        Err(TenantError::NotFound { .. }) => {}
        other => panic!("removing config of a missing tenant must be NotFound, got {other:?}"),
    }
}

/// The URL of the test PostgreSQL server (`TENANCY_TEST_DATABASE_URL`, a superuser URL).
///
/// # Panics
/// When the variable is not set: tests that need PostgreSQL never pass silently without one.
#[must_use]
pub fn test_database_url() -> String {
    required_env("TENANCY_TEST_DATABASE_URL")
}

/// The URL of the second test PostgreSQL server (`TENANCY_TEST_DATABASE_URL_2`).
///
/// # Panics
/// When the variable is not set.
#[must_use]
pub fn test_database_url_2() -> String {
    required_env("TENANCY_TEST_DATABASE_URL_2")
}

/// The non-superuser, non-BYPASSRLS login role of the test servers (`TENANCY_TEST_APP_ROLE`); its
/// password is its name.
///
/// # Panics
/// When the variable is not set.
#[must_use]
pub fn test_app_role() -> String {
    required_env("TENANCY_TEST_APP_ROLE")
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: this test needs the throwaway PostgreSQL. Run the tests with \
             `cargo xtask ci`, or start it with `cargo xtask pg start` and export what it prints."
        ),
    }
}
