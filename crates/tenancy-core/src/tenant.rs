//! Tenants: [`TenantInfo`], [`TenantStatus`] and its transition table, and the commands that create
//! and update a tenant.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::TenantError;
use crate::id::{Slug, TenantId};

/// A JSON object, as used for a tenant's `metadata` and its configuration overrides.
pub type JsonObject = Map<String, Value>;

/// The longest tenant name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// The longest plan name, in bytes.
pub const PLAN_MAX_LEN: usize = 64;

/// The lifecycle status of a tenant.
///
/// Every status change in the project goes through [`TenantStatus::check_transition`]:
///
/// | from \ to      | provisioning | active | inactive | suspended |
/// |----------------|:---:|:---:|:---:|:---:|
/// | provisioning   |     | yes | yes |     |
/// | active         |     |     | yes | yes |
/// | inactive       | yes | yes |     |     |
/// | suspended      |     | yes | yes |     |
///
/// A new tenant starts as `provisioning` and becomes `active` once its isolation is provisioned.
/// `inactive -> provisioning` re-provisions a tenant whose isolation was deprovisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Being provisioned: its isolation is not ready yet, requests are refused.
    Provisioning,
    /// Serving requests.
    Active,
    /// Switched off by an operator; requests are refused.
    Inactive,
    /// Suspended (for a reason kept on the tenant); requests are refused.
    Suspended,
}

impl TenantStatus {
    /// Every status, in a fixed order (useful for exhaustive tests).
    pub const ALL: [Self; 4] = [
        Self::Provisioning,
        Self::Active,
        Self::Inactive,
        Self::Suspended,
    ];

    /// Whether the transition table allows moving from `self` to `to`.
    #[must_use]
    pub const fn can_transition_to(self, to: Self) -> bool {
        use TenantStatus::{Active, Inactive, Provisioning, Suspended};
        matches!(
            (self, to),
            (Provisioning, Active | Inactive)
                | (Active, Inactive | Suspended)
                | (Inactive, Provisioning | Active)
                | (Suspended, Active | Inactive)
        )
    }

    /// Checks a transition of `tenant` against the table.
    ///
    /// # Errors
    /// [`TenantError::IllegalTransition`] when the table forbids it.
    pub fn check_transition(self, to: Self, tenant: TenantId) -> Result<(), TenantError> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(TenantError::IllegalTransition {
                tenant,
                from: self,
                to,
            })
        }
    }

    /// The status as the lowercase word used in storage and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Suspended => "suspended",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of `provisioning`, `active`, `inactive`, `suspended`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant status {0:?}: expected provisioning, active, inactive or suspended")]
pub struct UnknownStatus(pub String);

impl FromStr for TenantStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Everything known about a tenant, except its configuration overrides: only the
/// [`ConfigStore`](crate::ConfigStore) holds those, so a cached tenant never carries stale ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Identity; never changes.
    pub id: TenantId,
    /// Unique, URL- and DNS-safe name; may be renamed.
    pub slug: Slug,
    /// Human-readable name.
    pub name: String,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Why the tenant is in its status, when there is a reason: the suspension reason, or the error
    /// of the last failed provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Billing plan, if any.
    #[serde(default)]
    pub plan: Option<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: JsonObject,
    /// When the tenant was created.
    pub created_at: DateTime<Utc>,
    /// When the tenant last changed.
    pub updated_at: DateTime<Utc>,
}

impl TenantInfo {
    /// A new tenant, `provisioning`, from a validated command.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when the command breaks a rule of [`CreateTenant::validate`].
    pub fn from_command(command: CreateTenant, now: DateTime<Utc>) -> Result<Self, TenantError> {
        command.validate()?;
        Ok(Self {
            id: command.id.unwrap_or_default(),
            slug: command.slug,
            name: command.name,
            status: TenantStatus::Provisioning,
            status_reason: None,
            plan: command.plan,
            metadata: command.metadata,
            created_at: now,
            updated_at: now,
        })
    }

    /// Whether the tenant may serve requests.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
}

fn validate_name(name: &str) -> Result<(), TenantError> {
    if name.trim().is_empty() {
        return Err(TenantError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(TenantError::invalid(
            "name",
            "must be at most 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(TenantError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    if name.chars().any(is_bidi_control) {
        return Err(TenantError::invalid(
            "name",
            "must not contain bidirectional formatting characters (U+202A-U+202E, \
             U+2066-U+2069, U+200E, U+200F, U+061C): they reorder the text around them where \
             names are printed, such as in terminals",
        ));
    }
    Ok(())
}

/// The characters that change the direction of the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

fn validate_slug(slug: &Slug) -> Result<(), TenantError> {
    if TenantId::try_from(slug.as_str().as_bytes()).is_ok() {
        return Err(TenantError::invalid(
            "slug",
            "must not be shaped like a tenant id (a UUID): it would shadow that id in paths and \
             admin URLs that accept either",
        ));
    }
    Ok(())
}

fn validate_plan(plan: &str) -> Result<(), TenantError> {
    if plan.is_empty() || plan.len() > PLAN_MAX_LEN {
        return Err(TenantError::invalid("plan", "must be 1 to 64 bytes"));
    }
    if !plan
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(TenantError::invalid(
            "plan",
            "may hold only A-Z, a-z, 0-9, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// The command that creates a tenant. Configuration overrides are set through
/// [`ConfigStore::set_config`](crate::ConfigStore::set_config) once the tenant exists.
///
/// ```
/// use tenancy_core::CreateTenant;
///
/// let command = CreateTenant::new("acme".parse()?, "Acme Corp").with_plan("pro");
/// command.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The id to use; a new UUIDv7 when absent.
    #[serde(default)]
    pub id: Option<TenantId>,
    /// Unique slug.
    pub slug: Slug,
    /// Human-readable name (1 to 200 characters, no control characters).
    pub name: String,
    /// Billing plan (1 to 64 bytes of `A-Za-z0-9-_.`).
    #[serde(default)]
    pub plan: Option<String>,
    /// Initial metadata.
    #[serde(default)]
    pub metadata: JsonObject,
}

impl CreateTenant {
    /// A command with the required fields only.
    #[must_use]
    pub fn new(slug: Slug, name: impl Into<String>) -> Self {
        Self {
            id: None,
            slug,
            name: name.into(),
            plan: None,
            metadata: JsonObject::new(),
        }
    }

    /// Sets the plan.
    #[must_use]
    pub fn with_plan(mut self, plan: impl Into<String>) -> Self {
        self.plan = Some(plan.into());
        self
    }

    /// Sets the id instead of generating one.
    #[must_use]
    pub fn with_id(mut self, id: TenantId) -> Self {
        self.id = Some(id);
        self
    }

    /// Checks the fields that their types do not already guarantee.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), TenantError> {
        validate_slug(&self.slug)?;
        validate_name(&self.name)?;
        if let Some(plan) = &self.plan {
            validate_plan(plan)?;
        }
        Ok(())
    }
}

/// The command that updates a tenant: only the fields given change.
///
/// `plan` distinguishes "leave as is" (`None`) from "clear" (`Some(None)`); in JSON an absent field
/// leaves the plan and `null` clears it.
///
/// ```
/// use tenancy_core::UpdateTenant;
///
/// let patch: UpdateTenant = serde_json::from_str(r#"{"name": "Acme Inc", "plan": null}"#)?;
/// assert_eq!(patch.name.as_deref(), Some("Acme Inc"));
/// assert_eq!(patch.plan, Some(None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<Slug>,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New plan (`Some(None)` clears it).
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub plan: Option<Option<String>>,
    /// Replacement metadata object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl UpdateTenant {
    /// Whether the command changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slug.is_none() && self.name.is_none() && self.plan.is_none() && self.metadata.is_none()
    }

    /// Checks the fields given.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), TenantError> {
        if let Some(slug) = &self.slug {
            validate_slug(slug)?;
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if let Some(Some(plan)) = &self.plan {
            validate_plan(plan)?;
        }
        Ok(())
    }

    /// Applies the fields given to `tenant` and stamps `updated_at`.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when a field is invalid; `tenant` is then unchanged.
    pub fn apply(&self, tenant: &mut TenantInfo, now: DateTime<Utc>) -> Result<(), TenantError> {
        self.validate()?;
        if let Some(slug) = self.slug {
            tenant.slug = slug;
        }
        if let Some(name) = &self.name {
            tenant.name.clone_from(name);
        }
        if let Some(plan) = &self.plan {
            tenant.plan.clone_from(plan);
        }
        if let Some(metadata) = &self.metadata {
            tenant.metadata.clone_from(metadata);
        }
        tenant.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_shaped_like_ids_and_names_with_bidi_controls_are_refused() {
        let id = TenantId::new();
        for shaped in [id.to_string(), id.as_uuid().simple().to_string()] {
            let command = CreateTenant::new(shaped.parse().unwrap(), "Acme");
            let err = command.validate().unwrap_err().to_string();
            assert!(err.contains("shaped like a tenant id"), "{err}");
        }
        // Hex that is not a UUID is an ordinary slug.
        CreateTenant::new("deadbeef".parse().unwrap(), "Acme")
            .validate()
            .unwrap();
        for name in ["Acme\u{202E}moc.evil", "\u{2066}Acme", "Ac\u{200F}me"] {
            let err = CreateTenant::new("acme".parse().unwrap(), name)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains("bidirectional"), "{err}");
        }
        let update = UpdateTenant {
            name: Some("Acme\u{202E}".into()),
            ..UpdateTenant::default()
        };
        assert!(update.validate().is_err());
        let update = UpdateTenant {
            slug: Some(id.to_string().parse().unwrap()),
            ..UpdateTenant::default()
        };
        assert!(update.validate().is_err());
    }

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        use TenantStatus::{Active, Inactive, Provisioning, Suspended};
        let legal = [
            (Provisioning, Active),
            (Provisioning, Inactive),
            (Active, Inactive),
            (Active, Suspended),
            (Inactive, Provisioning),
            (Inactive, Active),
            (Suspended, Active),
            (Suspended, Inactive),
        ];
        let id = TenantId::new();
        for from in TenantStatus::ALL {
            for to in TenantStatus::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
                match from.check_transition(to, id) {
                    Ok(()) => assert!(expected),
                    Err(TenantError::IllegalTransition {
                        tenant,
                        from: f,
                        to: t,
                    }) => {
                        assert!(!expected);
                        assert_eq!((tenant, f, t), (id, from, to));
                    }
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
        }
    }

    #[test]
    fn status_strings_round_trip() {
        for status in TenantStatus::ALL {
            assert_eq!(status.as_str().parse::<TenantStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
        }
        assert!("Active".parse::<TenantStatus>().is_err());
    }

    #[test]
    fn create_validates_and_starts_provisioning() {
        let now = Utc::now();
        let tenant = TenantInfo::from_command(
            CreateTenant::new("acme".parse().unwrap(), "Acme").with_plan("pro"),
            now,
        )
        .unwrap();
        assert_eq!(tenant.status, TenantStatus::Provisioning);
        assert_eq!(tenant.plan.as_deref(), Some("pro"));
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(201)] {
            let err = CreateTenant::new("acme".parse().unwrap(), bad)
                .validate()
                .unwrap_err();
            assert!(
                matches!(err, TenantError::InvalidInput { field: "name", .. }),
                "{bad:?}"
            );
        }
        let err = CreateTenant::new("acme".parse().unwrap(), "Acme")
            .with_plan("pro plan")
            .validate()
            .unwrap_err();
        assert!(matches!(
            err,
            TenantError::InvalidInput { field: "plan", .. }
        ));
        let json = r#"{"slug": "acme", "name": "Acme", "extra": 1}"#;
        assert!(serde_json::from_str::<CreateTenant>(json).is_err());
        let json = r#"{"slug": "Not A Slug", "name": "Acme"}"#;
        assert!(serde_json::from_str::<CreateTenant>(json).is_err());
    }

    #[test]
    fn update_applies_only_given_fields() {
        let now = Utc::now();
        let mut tenant = TenantInfo::from_command(
            CreateTenant::new("acme".parse().unwrap(), "Acme").with_plan("pro"),
            now,
        )
        .unwrap();
        let before = tenant.clone();
        let patch: UpdateTenant = serde_json::from_str(r#"{"name": "Acme Inc"}"#).unwrap();
        patch.apply(&mut tenant, now).unwrap();
        assert_eq!(tenant.name, "Acme Inc");
        assert_eq!(tenant.plan, before.plan);
        assert_eq!(tenant.slug, before.slug);

        let clear: UpdateTenant = serde_json::from_str(r#"{"plan": null}"#).unwrap();
        clear.apply(&mut tenant, now).unwrap();
        assert_eq!(tenant.plan, None);

        let invalid = UpdateTenant {
            name: Some(String::new()),
            ..UpdateTenant::default()
        };
        let snapshot = tenant.clone();
        assert!(invalid.apply(&mut tenant, now).is_err());
        assert_eq!(tenant, snapshot, "a rejected update changes nothing");
        assert!(UpdateTenant::default().is_empty());
    }
}
