//! Per-tenant configuration overrides for the `tenancy` library.
//!
//! - [`CachedConfigStore`] caches each tenant's whole configuration as one unit in front of any
//!   [`ConfigStore`](tenancy_core::ConfigStore) (moka, TTL, bounded, coalesced loads); writes go
//!   through and drop the unit. It is a [`CacheInvalidation`](tenancy_core::CacheInvalidation), so
//!   lifecycle changes and change feeds can drop it too.
//! - [`ConfigService`] answers a tenant's override, else the application default, else nothing;
//!   reads typed values; validates keys and values; publishes `config_changed` with the old and the
//!   new value.
//! - [`OverridesConfig`] is the `overrides` configuration section.
//!
//! See [`ConfigService`] for an example.

mod cached;
mod config;
mod rules;
mod service;

pub use cached::CachedConfigStore;
pub use config::{MAX_CACHE_TTL, OverridesConfig};
pub use rules::{DEFAULT_MAX_VALUE_BYTES, KEY_MAX_LEN, RuleError, validate_key, validate_value};
pub use service::{ConfigChange, ConfigService};
