//! Domain events and their publishers.
//!
//! Every successful mutation of a tenant publishes one [`TenantEvent`] after the store accepted the
//! change. [`BroadcastPublisher`] fans events out in process (tokio broadcast); [`NoopPublisher`]
//! drops them.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::domain::DomainName;
use crate::error::BoxError;
use crate::id::{Slug, TenantId};

/// What happened to a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TenantEventKind {
    /// The tenant was stored (as `provisioning`).
    Created {
        /// Its slug.
        slug: Slug,
    },
    /// Its isolation was provisioned and it became `active`.
    Provisioned,
    /// Its name, slug, plan or metadata changed.
    Updated {
        /// The names of the fields that changed.
        fields: Vec<String>,
    },
    /// It became `active` again.
    Activated,
    /// It was suspended.
    Suspended {
        /// Why, when given.
        reason: Option<String>,
    },
    /// It was deactivated.
    Deactivated,
    /// A domain was added to the tenant.
    DomainAdded {
        /// The domain.
        domain: DomainName,
        /// Whether it became the primary domain.
        primary: bool,
    },
    /// A domain was removed from the tenant.
    DomainRemoved {
        /// The domain.
        domain: DomainName,
        /// The tenant's primary domain after the removal (another one when the removed domain was
        /// primary), if any is left.
        primary: Option<DomainName>,
    },
    /// Another of the tenant's domains became its primary domain.
    PrimaryDomainChanged {
        /// The new primary domain.
        domain: DomainName,
    },
    /// A configuration override was set or removed.
    ConfigChanged {
        /// The configuration key.
        key: String,
        /// The value before (`None`: there was no override).
        old: Option<Value>,
        /// The value after (`None`: the override was removed).
        new: Option<Value>,
    },
    /// A change of where the tenant's data lives (a move to another node, a shard of its own)
    /// started.
    PlacementStarted {
        /// What changes.
        operation: PlacementOperation,
        /// The node the tenant's data is on (`host:port`), when known.
        from: Option<String>,
        /// The node it goes to (`host:port`), when known.
        to: Option<String>,
    },
    /// A change of the tenant's placement completed: its data is where `to` says.
    PlacementCompleted {
        /// What changed.
        operation: PlacementOperation,
        /// The node the tenant's data was on, when known.
        from: Option<String>,
        /// The node it is on now, when known.
        to: Option<String>,
    },
    /// A change of the tenant's placement failed; the tenant is served from where it was, and
    /// the operation can be run again.
    PlacementFailed {
        /// What was to change.
        operation: PlacementOperation,
        /// The node the tenant's data is on, when known.
        from: Option<String>,
        /// The node it was to go to, when known.
        to: Option<String>,
        /// Why it failed.
        error: String,
    },
}

/// Which change of a tenant's placement a placement event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlacementOperation {
    /// The tenant's data is moved to another node.
    Move,
    /// The tenant gets a shard of its own (row level), on the node it is on.
    Isolate,
    /// The cluster's rebalancer moves the tenant's data to another node.
    Rebalance,
}

impl PlacementOperation {
    /// The operation's name in snake case.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Move => "move",
            Self::Isolate => "isolate",
            Self::Rebalance => "rebalance",
        }
    }
}

impl fmt::Display for PlacementOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TenantEventKind {
    /// The event's name in snake case (`created`, `provisioned`, `config_changed`, ...).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Provisioned => "provisioned",
            Self::Updated { .. } => "updated",
            Self::Activated => "activated",
            Self::Suspended { .. } => "suspended",
            Self::Deactivated => "deactivated",
            Self::DomainAdded { .. } => "domain_added",
            Self::DomainRemoved { .. } => "domain_removed",
            Self::PrimaryDomainChanged { .. } => "primary_domain_changed",
            Self::ConfigChanged { .. } => "config_changed",
            Self::PlacementStarted { .. } => "placement_started",
            Self::PlacementCompleted { .. } => "placement_completed",
            Self::PlacementFailed { .. } => "placement_failed",
        }
    }
}

/// A domain event: what happened to which tenant, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantEvent {
    /// The tenant concerned.
    pub tenant_id: TenantId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: TenantEventKind,
}

impl TenantEvent {
    /// An event that happens now.
    #[must_use]
    pub fn now(tenant_id: TenantId, kind: TenantEventKind) -> Self {
        Self {
            tenant_id,
            at: Utc::now(),
            kind,
        }
    }
}

/// Publishes domain events.
///
/// Implementations decide where events go (in process, a message broker, an outbox table). A
/// failure is returned to the caller, which never undoes the stored change because of it.
#[async_trait]
pub trait EventPublisher: Send + Sync + fmt::Debug {
    /// Publishes one event.
    ///
    /// # Errors
    /// Whatever the transport reports.
    async fn publish(&self, event: &TenantEvent) -> Result<(), BoxError>;
}

/// Drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopPublisher;

#[async_trait]
impl EventPublisher for NoopPublisher {
    async fn publish(&self, _event: &TenantEvent) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Fans events out to in-process subscribers through a tokio broadcast channel.
///
/// Publishing with no subscriber is not an error. A subscriber that falls more than `capacity` events
/// behind receives [`broadcast::error::RecvError::Lagged`].
///
/// ```
/// use tenancy_core::{BroadcastPublisher, EventPublisher, TenantEvent, TenantEventKind, TenantId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let publisher = BroadcastPublisher::new(16);
/// let mut events = publisher.subscribe();
/// let id = TenantId::new();
/// publisher.publish(&TenantEvent::now(id, TenantEventKind::Activated)).await.unwrap();
/// assert_eq!(events.recv().await.unwrap().tenant_id, id);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct BroadcastPublisher {
    sender: broadcast::Sender<TenantEvent>,
}

impl BroadcastPublisher {
    /// A publisher whose subscribers may lag `capacity` events behind (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// A new subscription receiving every event published from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<TenantEvent> {
        self.sender.subscribe()
    }
}

impl Default for BroadcastPublisher {
    fn default() -> Self {
        Self::new(1024)
    }
}

#[async_trait]
impl EventPublisher for BroadcastPublisher {
    async fn publish(&self, event: &TenantEvent) -> Result<(), BoxError> {
        // An error only means nobody is subscribed right now.
        let _ = self.sender.send(event.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn broadcast_reaches_every_subscriber_and_tolerates_none() {
        let publisher = BroadcastPublisher::new(4);
        let id = TenantId::new();
        publisher
            .publish(&TenantEvent::now(id, TenantEventKind::Provisioned))
            .await
            .unwrap();
        let (mut a, mut b) = (publisher.subscribe(), publisher.subscribe());
        let event = TenantEvent::now(
            id,
            TenantEventKind::Suspended {
                reason: Some("unpaid".into()),
            },
        );
        publisher.publish(&event).await.unwrap();
        assert_eq!(a.recv().await.unwrap(), event);
        assert_eq!(b.recv().await.unwrap(), event);
        NoopPublisher.publish(&event).await.unwrap();
    }

    #[test]
    fn events_serialize_with_their_type() {
        let id: TenantId = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293".parse().unwrap();
        let event = TenantEvent::now(
            id,
            TenantEventKind::ConfigChanged {
                key: "theme".into(),
                old: None,
                new: Some(json!("dark")),
            },
        );
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "config_changed");
        assert_eq!(value["tenant_id"], "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293");
        assert_eq!(value["new"], "dark");
        assert_eq!(serde_json::from_value::<TenantEvent>(value).unwrap(), event);
        assert_eq!(event.kind.name(), "config_changed");
    }

    #[test]
    fn placement_events_serialize_with_their_operation() {
        let id = TenantId::new();
        let event = TenantEvent::now(
            id,
            TenantEventKind::PlacementFailed {
                operation: PlacementOperation::Move,
                from: Some("10.0.0.1:5432".into()),
                to: Some("10.0.0.2:5432".into()),
                error: "node down".into(),
            },
        );
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "placement_failed");
        assert_eq!(value["operation"], "move");
        assert_eq!(value["to"], "10.0.0.2:5432");
        assert_eq!(serde_json::from_value::<TenantEvent>(value).unwrap(), event);
        assert_eq!(event.kind.name(), "placement_failed");
        assert_eq!(PlacementOperation::Isolate.to_string(), "isolate");
    }
}
