//! [`ChangeNotice`], the payload every PostgreSQL mutation sends on the change channel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tenancy_core::{DomainName, Slug, TenantId};

/// What a mutation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A tenant was created.
    Created,
    /// A tenant's fields (slug, name, plan, metadata) were updated.
    Updated,
    /// A tenant's status changed.
    Status,
    /// A tenant's configuration overrides changed.
    Config,
    /// A tenant's domains changed.
    Domains,
}

/// The JSON payload of a change notification: small (well under PostgreSQL's 8000-byte limit),
/// naming the tenant, what changed, and the slugs and domains that caches may hold entries under
/// (the new slug of a created tenant, the old and new slug of a renamed one, a domain added or
/// removed). One notice names at most two slugs or one domain (253 bytes at most).
///
/// ```
/// use tenancy_store_sql::{ChangeKind, ChangeNotice};
///
/// let payload = r#"{"tenant_id":"0190d5a0-7c1e-7a2b-9c3d-4e5f60718293","kind":"status"}"#;
/// let notice: ChangeNotice = serde_json::from_str(payload)?;
/// assert_eq!(notice.kind, ChangeKind::Status);
/// assert!(notice.slugs.is_empty());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    /// The tenant that changed.
    pub tenant_id: TenantId,
    /// What changed.
    pub kind: ChangeKind,
    /// Slugs whose cache entries are stale (possibly negative entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slugs: Vec<Slug>,
    /// Domains whose cache entries are stale (possibly negative entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DomainName>,
    /// When the store sent it, in milliseconds since the Unix epoch (absent from notices of
    /// older versions): the change feed measures its lag with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

impl ChangeNotice {
    /// A notice without slugs.
    #[must_use]
    pub fn new(tenant_id: TenantId, kind: ChangeKind) -> Self {
        Self {
            tenant_id,
            kind,
            slugs: Vec::new(),
            domains: Vec::new(),
            sent_at: None,
        }
    }

    /// Stamps it with the current time as its [`sent_at`](Self::sent_at).
    #[must_use]
    pub fn sent_now(mut self) -> Self {
        self.sent_at = Some(epoch_millis(SystemTime::now()));
        self
    }

    /// How long ago it was sent, by the clock of this host (zero when the sender's clock is
    /// ahead); `None` without [`sent_at`](Self::sent_at).
    #[must_use]
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        let sent = self.sent_at?;
        Some(Duration::from_millis(
            epoch_millis(now).saturating_sub(sent),
        ))
    }

    /// Adds a domain.
    #[must_use]
    pub fn with_domain(mut self, domain: DomainName) -> Self {
        if !self.domains.contains(&domain) {
            self.domains.push(domain);
        }
        self
    }

    /// Adds a slug.
    #[must_use]
    pub fn with_slug(mut self, slug: Slug) -> Self {
        if !self.slugs.contains(&slug) {
            self.slugs.push(slug);
        }
        self
    }

    /// The payload text.
    #[must_use]
    pub fn to_payload(&self) -> String {
        // Serialising ids, an enum, slugs and domains cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_stays_small() {
        let slug: Slug = "a".repeat(63).parse().unwrap();
        let other: Slug = "b".repeat(63).parse().unwrap();
        let notice = ChangeNotice::new(TenantId::new(), ChangeKind::Updated)
            .with_slug(slug)
            .with_slug(other)
            .with_slug(slug)
            .with_domain(
                format!(
                    "{}.{}.{}.example",
                    "a".repeat(63),
                    "b".repeat(63),
                    "c".repeat(63)
                )
                .parse()
                .unwrap(),
            );
        let payload = notice.to_payload();
        assert!(payload.len() < 8000);
        assert_eq!(
            serde_json::from_str::<ChangeNotice>(&payload).unwrap(),
            notice
        );
        assert_eq!(notice.slugs.len(), 2);
        assert!(payload.contains(r#""kind":"updated""#), "{payload}");
        assert!(!payload.contains("sent_at"), "{payload}");
    }

    #[test]
    fn sent_at_round_trips_and_ages_never_below_zero() {
        let notice = ChangeNotice::new(TenantId::new(), ChangeKind::Status).sent_now();
        let sent = notice.sent_at.unwrap();
        let parsed: ChangeNotice = serde_json::from_str(&notice.to_payload()).unwrap();
        assert_eq!(parsed.sent_at, Some(sent));
        let later = UNIX_EPOCH + Duration::from_millis(sent + 1500);
        assert_eq!(notice.age(later), Some(Duration::from_millis(1500)));
        let earlier = UNIX_EPOCH + Duration::from_millis(sent - 1000);
        assert_eq!(notice.age(earlier), Some(Duration::ZERO));
        assert_eq!(
            ChangeNotice::new(TenantId::new(), ChangeKind::Status).age(later),
            None
        );
    }
}
