//! [`TenancyConfig`]: every section of the stack's configuration, loaded with figment from the
//! `tenancy:` section of a YAML file and `TENANCY__*` environment variables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Env, Format, Yaml};
use figment::value::Uncased;
use serde::Deserialize;
use tenancy_core::{InMemoryStore, TenantError};

use tenancy_isolation_sql::IsolationConfig;
use tenancy_lifecycle::LifecycleConfig;
use tenancy_overrides::OverridesConfig;
use tenancy_resolution::{
    Builtin, HEADER, MembershipMode, ResolutionConfig, ResolverRegistry, TenantValidator,
};
use tenancy_store_sql::StoreConfig;

use crate::integration::IntegrationConfig;
use crate::telemetry::MetricsConfig;

/// The key of the configuration's section in the YAML file.
pub const SECTION: &str = "tenancy";

/// The prefix of the environment variables that override the file (`TENANCY__RESOLUTION__HEADER_NAME`
/// sets `tenancy.resolution.header_name`; `__` separates nested keys).
pub const ENV_PREFIX: &str = "TENANCY__";

/// The configuration of the whole tenancy stack, one section per crate.
///
/// Every section and every key is optional; missing ones take their documented defaults.
/// Unknown keys are errors.
///
/// ```
/// use tenancy::TenancyConfig;
///
/// let config = TenancyConfig::default();
/// assert!(config.integration.cache_key_prefix);
/// ```
/// Its `Debug` output hides secrets: passwords in `store.url` and `isolation.servers`, and
/// `resolution.jwt_verify.secret`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TenancyConfig {
    /// Tenant resolution: resolvers, their settings, the validator cache, membership checks.
    pub resolution: ResolutionConfig,
    /// Tenant lifecycle: whether tenants are provisioned through `isolation.strategy`, and
    /// deprovisioned on deactivation.
    pub lifecycle: LifecycleConfig,
    /// Per-tenant configuration overrides: cache TTL, application defaults.
    pub overrides: OverridesConfig,
    /// Tenant data isolation: strategy, row-level setting, schema deprovisioning, database servers.
    pub isolation: IsolationConfig,
    /// The tenant and config store: in memory without a URL, SQLite or PostgreSQL with one.
    pub store: StoreConfig,
    /// Cache-key prefixing and the SQL context bridge.
    pub integration: IntegrationConfig,
    /// Per-tenant limits: plans, the default plan (feature `limits`).
    #[cfg(feature = "limits")]
    pub limits: tenancy_limits::LimitsConfig,
    /// Metrics: how many tenants get a label of their own (feature `metrics` records them).
    pub metrics: MetricsConfig,
}

/// The configuration could not be loaded: each case names the key (or file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file the caller named does not exist.
    #[error("configuration file {} does not exist", path.display())]
    MissingFile {
        /// The path as given.
        path: PathBuf,
    },
    /// The file could not be read or is not valid YAML; the message gives the line when known.
    #[error("configuration file {} is unreadable: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key is unknown, missing or has a value of the wrong type.
    #[error("invalid configuration key `{key}`{}: {message}", origin.as_deref().map(|o| format!(" (from {o})")).unwrap_or_default())]
    Invalid {
        /// The full key (`tenancy.resolution.header_name`).
        key: String,
        /// Where the value came from (a file, an environment variable), when known.
        origin: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A section's own validation refused a value; the message names the key.
    #[error("invalid configuration in section `tenancy.{section}`: {message}")]
    Section {
        /// The section (`isolation`, ...).
        section: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Values that are each well-formed do not fit together.
    #[error("invalid configuration key `{key}`: {reason}")]
    Rejected {
        /// The full key at fault.
        key: String,
        /// Why, and what to do.
        reason: String,
    },
}

impl From<ConfigError> for TenantError {
    fn from(error: ConfigError) -> Self {
        Self::Configuration(error.to_string())
    }
}

impl TenancyConfig {
    /// The configuration of [`stub`](crate::stub): in-memory store, the header resolver only
    /// (trusted: no membership check), no isolation provisioning, no integration.
    #[must_use]
    pub fn stub() -> Self {
        Self {
            resolution: ResolutionConfig {
                resolvers: Some(vec![Builtin::Header]),
                trusted_resolvers: Some(vec![HEADER.to_owned()]),
                membership: MembershipMode::Off,
                ..ResolutionConfig::default()
            },
            lifecycle: LifecycleConfig {
                auto_provision_isolation: false,
                ..LifecycleConfig::default()
            },
            store: StoreConfig::default(),
            integration: IntegrationConfig::disabled(),
            ..Self::default()
        }
    }

    /// Loads the `tenancy:` section of the YAML file at `path` (when given), overridden by
    /// `TENANCY__*` environment variables, and validates it.
    ///
    /// ```no_run
    /// let config = tenancy::TenancyConfig::load(Some("config/app.yaml".as_ref()))?;
    /// # Ok::<(), tenancy::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`]: a named file that does not exist, malformed YAML, an unknown key, a value
    /// of the wrong type, or sections that contradict each other.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(&Self::figment(path)?)
    }

    /// The figment [`load`](Self::load) extracts from: the YAML file at `path` (when given), then
    /// the `TENANCY__*` environment variables nested under `tenancy`. Merge providers of your own
    /// into it before calling [`from_figment`](Self::from_figment).
    ///
    /// # Errors
    /// [`ConfigError::MissingFile`] when `path` does not exist.
    pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::MissingFile {
                    path: path.to_owned(),
                });
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        Ok(figment.merge(environment()))
    }

    /// Extracts and validates the `tenancy` section of `figment` (absent: every default).
    ///
    /// ```
    /// use figment::{Figment, providers::{Format, Yaml}};
    /// use tenancy::TenancyConfig;
    ///
    /// let figment = Figment::from(Yaml::string("tenancy:\n  integration:\n    cache_key_prefix: false\n"));
    /// let config = TenancyConfig::from_figment(&figment)?;
    /// assert!(!config.integration.cache_key_prefix);
    /// assert!(config.integration.sql_context_bridge);
    /// # Ok::<(), tenancy::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let Root { tenancy: config } = figment.extract().map_err(|e| from_figment_error(&e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section (each section's own `validate`, called here and nowhere else) and
    /// what no single section can check alone. [`from_figment`](Self::from_figment) and
    /// [`StackBuilder::build`](crate::StackBuilder::build) call it.
    ///
    /// # Errors
    /// [`ConfigError::Section`] when a section's own checks fail, [`ConfigError::Rejected`] when
    /// sections contradict each other; both name the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let resolution = &self.resolution;
        if resolution.subdomain_base_domain.is_none()
            && resolution
                .resolvers
                .iter()
                .flatten()
                .any(|name| *name == Builtin::Subdomain)
        {
            return Err(ConfigError::Rejected {
                key: "tenancy.resolution.resolvers".to_owned(),
                reason: "lists `subdomain` but `tenancy.resolution.subdomain_base_domain` is not \
                         set: set the base domain (such as app.example.com) or remove `subdomain`"
                    .to_owned(),
            });
        }
        // Building the validator and the resolvers (over an empty store, which nothing asks)
        // checks the cache settings, names, header, path pattern and token settings.
        section(
            "resolution",
            TenantValidator::new(Arc::new(InMemoryStore::new()), &resolution.validator)
                .and_then(|validator| ResolverRegistry::from_config(resolution, &validator))
                .map(drop),
        )?;
        section("overrides", self.overrides.validate())?;
        section("isolation", self.isolation.validate())?;
        section("store", self.store.validate())?;
        #[cfg(feature = "limits")]
        section("limits", self.limits.validate())?;
        Ok(())
    }
}

/// A section's validation error as a [`ConfigError::Section`].
fn section(name: &'static str, result: Result<(), TenantError>) -> Result<(), ConfigError> {
    result.map_err(|error| ConfigError::Section {
        section: name,
        message: match error {
            TenantError::Configuration(message) => message,
            other => other.to_string(),
        },
    })
}

/// The root of the configuration: the `tenancy` section, beside whatever else the application keeps.
#[derive(Deserialize)]
struct Root {
    #[serde(default)]
    tenancy: TenancyConfig,
}

/// `TENANCY__A__B` as `tenancy.a.b`.
fn environment() -> Env {
    Env::prefixed(ENV_PREFIX)
        .split("__")
        .map(|key| Uncased::from(format!("{SECTION}.{key}")))
}

fn from_figment_error(error: &figment::Error) -> ConfigError {
    use figment::error::Kind;

    let file = error
        .metadata
        .as_ref()
        .and_then(|md| md.source.as_ref())
        .and_then(|source| source.file_path())
        .map(Path::to_path_buf);
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|md| md.name.contains("environment"));

    let mut path = error.path.clone();
    // figment's path of an unknown field already ends with the field; a missing one's may not.
    if let Kind::MissingField(field) = &error.kind
        && path.last().map(String::as_str) != Some(field)
    {
        path.push(field.to_string());
    }
    if path.is_empty()
        && let Some(file) = file.clone()
    {
        // Nothing was extracted yet: the file itself failed to parse.
        return ConfigError::Malformed {
            path: file,
            message: error.kind.to_string(),
        };
    }
    let origin = if from_env {
        let var = path
            .iter()
            .skip(1)
            .map(|k| k.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("__");
        Some(format!("environment variable {ENV_PREFIX}{var}"))
    } else {
        file.map(|f| format!("file {}", f.display()))
    };
    ConfigError::Invalid {
        key: if path.is_empty() {
            SECTION.to_owned()
        } else {
            path.join(".")
        },
        origin,
        message: error.kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let mut config = TenancyConfig::default();
        config.store.url =
            Some("postgres://app:hunter2@db.internal:5432/app?sslmode=require".into());
        config
            .isolation
            .servers
            .insert("eu1".into(), "postgres://app:s3cret@eu1/x".into());
        config.resolution.jwt_verify = Some(tenancy_resolution::JwtVerifyConfig {
            secret: Some("an-hmac-secret-of-at-least-32-bytes!".into()),
            ..Default::default()
        });
        let shown = format!("{config:?}");
        for secret in ["hunter2", "s3cret", "an-hmac-secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("postgres://app:<redacted>@db.internal:5432/app?sslmode=require"));
    }
}
