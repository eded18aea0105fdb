//! [`ConfigService`]: per-tenant configuration with application defaults and change events.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tenancy_core::{
    ConfigStore, EventPublisher, JsonObject, NoopPublisher, TenantError, TenantEvent,
    TenantEventKind, TenantId,
};

use crate::config::{OverridesConfig, validate_defaults};
use crate::rules::{DEFAULT_MAX_VALUE_BYTES, validate_key, validate_value};

/// A stored configuration change.
///
/// The change is stored whatever the publisher did; a publisher failure is logged (with
/// `tenant_id`) and kept in `publish_error`.
#[derive(Debug)]
#[must_use = "a change may carry a publish failure"]
pub struct ConfigChange {
    /// The value before (`None`: there was no override).
    pub old: Option<Value>,
    /// The value after (`None`: the override is removed).
    pub new: Option<Value>,
    /// Whether the value changed (and so whether `config_changed` was published).
    pub changed: bool,
    /// The [`TenantError::Publish`] of the `config_changed` event, if publishing failed.
    pub publish_error: Option<TenantError>,
}

impl ConfigChange {
    /// The previous value, or the publish failure (the change is stored either way).
    ///
    /// # Errors
    /// The [`TenantError::Publish`] of the event.
    pub fn into_result(self) -> Result<Option<Value>, TenantError> {
        match self.publish_error {
            None => Ok(self.old),
            Some(error) => Err(error),
        }
    }
}

/// Per-tenant configuration: a tenant's override of a key, else the application default, else
/// nothing.
///
/// Keys are 1 to 128 bytes of `a-z`, `0-9`, `_`, `.`, `-`; values are JSON, not `null`, at most
/// `max_value_bytes` (64 KiB by default) serialized. A bad key or value is
/// [`TenantError::Configuration`] and stores nothing. Every write that changes a value publishes
/// [`TenantEventKind::ConfigChanged`] with the old and the new value, after the store accepted it.
///
/// Put a [`CachedConfigStore`](crate::CachedConfigStore) in front of the store to serve reads
/// from memory.
///
/// ```
/// use std::sync::Arc;
/// use serde_json::json;
/// use tenancy_core::{CreateTenant, InMemoryStore, TenantInfo, TenantStore};
/// use tenancy_overrides::{CachedConfigStore, ConfigService, OverridesConfig};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let tenant = TenantInfo::from_command(CreateTenant::new("acme".parse()?, "Acme"), chrono::Utc::now())?;
/// let id = store.create(tenant).await?.id;
///
/// let config: OverridesConfig = serde_json::from_value(json!({"defaults": {"max_users": 50}}))?;
/// let cached = Arc::new(CachedConfigStore::from_config(store, &config)?);
/// let service = ConfigService::from_config(cached, &config);
///
/// assert_eq!(service.get_as::<u32>(id, "max_users").await?, Some(50));
/// service.set(id, "max_users", json!(500)).await?.into_result()?;
/// assert_eq!(service.get_as::<u32>(id, "max_users").await?, Some(500));
/// assert_eq!(service.get(id, "unknown").await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ConfigService {
    store: Arc<dyn ConfigStore>,
    defaults: Arc<JsonObject>,
    publisher: Arc<dyn EventPublisher>,
    max_value_bytes: usize,
}

impl ConfigService {
    /// A service over `store` with application `defaults`, a 64 KiB value limit, publishing
    /// nothing ([`NoopPublisher`]).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when a default breaks the key or value rules.
    pub fn new(store: Arc<dyn ConfigStore>, defaults: JsonObject) -> Result<Self, TenantError> {
        validate_defaults(&defaults, DEFAULT_MAX_VALUE_BYTES)?;
        Ok(Self {
            store,
            defaults: Arc::new(defaults),
            publisher: Arc::new(NoopPublisher),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        })
    }

    /// A service configured by `config` (`defaults`, `max_value_bytes`), which
    /// [`OverridesConfig::validate`] has checked.
    #[must_use]
    pub fn from_config(store: Arc<dyn ConfigStore>, config: &OverridesConfig) -> Self {
        Self {
            store,
            defaults: Arc::new(config.defaults.clone()),
            publisher: Arc::new(NoopPublisher),
            max_value_bytes: config.max_value_bytes,
        }
    }

    /// Publishes `config_changed` events through `publisher`.
    #[must_use]
    pub fn with_publisher(mut self, publisher: Arc<dyn EventPublisher>) -> Self {
        self.publisher = publisher;
        self
    }

    /// The application defaults.
    #[must_use]
    pub fn defaults(&self) -> &JsonObject {
        &self.defaults
    }

    /// The largest value accepted, in bytes of serialized JSON.
    #[must_use]
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// The tenant's override of `key`, else the application default, else `None`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid key; the store's error.
    pub async fn get(&self, tenant: TenantId, key: &str) -> Result<Option<Value>, TenantError> {
        validate_key(key)?;
        Ok(match self.store.get_config(tenant, key).await? {
            Some(value) => Some(value),
            None => self.defaults.get(key).cloned(),
        })
    }

    /// [`get`](Self::get), deserialized as `T`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid key, or when the value does not have the shape
    /// of `T` (the message names the key, the tenant, the type and what serde found); the store's
    /// error.
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<T>, TenantError> {
        let Some(value) = self.get(tenant, key).await? else {
            return Ok(None);
        };
        serde_json::from_value(value).map(Some).map_err(|e| {
            TenantError::Configuration(format!(
                "config key {key:?} of tenant {tenant} cannot be read as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Sets the tenant's override of `key`, and publishes `config_changed` (old and new value)
    /// unless the value is the one already set.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid key or value (nothing stored);
    /// [`TenantError::NotFound`] for an unknown tenant; the store's error.
    pub async fn set(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
    ) -> Result<ConfigChange, TenantError> {
        validate_key(key)?;
        validate_value(key, &value, self.max_value_bytes)?;
        let old = self.store.set_config(tenant, key, value.clone()).await?;
        self.announce(tenant, key, old, Some(value)).await
    }

    /// Removes the tenant's override of `key` (the default applies again), and publishes
    /// `config_changed` with `new: None` when there was an override.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] for an invalid key; [`TenantError::NotFound`] for an unknown
    /// tenant; the store's error.
    pub async fn remove(&self, tenant: TenantId, key: &str) -> Result<ConfigChange, TenantError> {
        validate_key(key)?;
        let old = self.store.remove_config(tenant, key).await?;
        self.announce(tenant, key, old, None).await
    }

    /// The tenant's own overrides, without the defaults.
    ///
    /// # Errors
    /// The store's error.
    pub async fn overrides(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        self.store.get_all_config(tenant).await
    }

    /// The application defaults merged with the tenant's overrides, overrides winning.
    ///
    /// # Errors
    /// The store's error.
    pub async fn effective(&self, tenant: TenantId) -> Result<JsonObject, TenantError> {
        let overrides = self.store.get_all_config(tenant).await?;
        let mut merged = JsonObject::clone(&self.defaults);
        merged.extend(overrides);
        Ok(merged)
    }

    async fn announce(
        &self,
        tenant: TenantId,
        key: &str,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Result<ConfigChange, TenantError> {
        let mut change = ConfigChange {
            changed: old != new,
            old,
            new,
            publish_error: None,
        };
        if !change.changed {
            return Ok(change);
        }
        tracing::info!(tenant_id = %tenant, key, removed = change.new.is_none(), "tenant config changed");
        let event = TenantEvent::now(
            tenant,
            TenantEventKind::ConfigChanged {
                key: key.to_owned(),
                old: change.old.clone(),
                new: change.new.clone(),
            },
        );
        if let Err(source) = self.publisher.publish(&event).await {
            tracing::error!(tenant_id = %tenant, key, error = %source, "publishing config_changed failed; the change stays stored");
            change.publish_error = Some(TenantError::Publish {
                event: event.kind.name(),
                tenant,
                source,
            });
        }
        Ok(change)
    }
}
