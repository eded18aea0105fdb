//! [`StoreConfig`], the `store` section of the tenancy configuration, and validated identifiers.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenancy_core::TenantError;
use tenancy_pg_connect::TlsConfig;

/// Configuration of the SQL store (the `store` section of `TenancyConfig`).
///
/// ```
/// use tenancy_store_sql::StoreConfig;
///
/// let config: StoreConfig = serde_json::from_str(r#"{"url": "postgres://localhost/app"}"#)?;
/// assert_eq!(config.schema, "tenancy");
/// assert_eq!(config.notify_channel, "tenancy_changes");
/// assert!(serde_json::from_str::<StoreConfig>(r#"{"shema": "x"}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database URL: `postgres://...` or `sqlite://...`; `None` means no SQL store is configured.
    /// A PostgreSQL URL may carry `sslmode` and `sslrootcert`.
    pub url: Option<String>,
    /// TLS of the PostgreSQL connections (the pool, the change feed, tenant transactions on the
    /// store's pool): each key set overrides the URL's parameter. Refused with SQLite.
    pub tls: TlsConfig,
    /// PostgreSQL schema holding the store's tables (a plain identifier: `a-z`, `0-9`, `_`, not
    /// starting with a digit or `pg_`, at most 63 bytes). SQLite has no schemas and ignores it.
    pub schema: String,
    /// The pool's maximum number of connections.
    pub max_connections: u32,
    /// How long to wait for a pooled connection, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// How long [`ping`](crate::SqlTenantStore::ping) waits for the database, in milliseconds.
    pub ping_timeout_ms: u64,
    /// Whether to run the store's embedded migrations when connecting.
    pub migrate: bool,
    /// PostgreSQL channel of the change feed (same identifier rules as `schema`).
    pub notify_channel: String,
    /// Whether mutations notify on `notify_channel` so that other processes invalidate their caches
    /// (PostgreSQL only; a SQLite store lives in one process).
    pub change_feed: bool,
}

/// Shows the URL without its password.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(tenancy_core::redact_url))
            .field("tls", &self.tls)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("ping_timeout_ms", &self.ping_timeout_ms)
            .field("migrate", &self.migrate)
            .field("notify_channel", &self.notify_channel)
            .field("change_feed", &self.change_feed)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            tls: TlsConfig::default(),
            schema: "tenancy".to_owned(),
            max_connections: 10,
            acquire_timeout_ms: 5_000,
            ping_timeout_ms: 2_000,
            migrate: true,
            notify_channel: "tenancy_changes".to_owned(),
            change_feed: true,
        }
    }
}

impl StoreConfig {
    /// A default configuration for this URL.
    #[must_use]
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the field and what is expected.
    pub fn validate(&self) -> Result<(), TenantError> {
        self.tls.validate("store.tls")?;
        if !self.tls.is_empty()
            && self
                .url
                .as_deref()
                .is_some_and(|url| url.to_ascii_lowercase().starts_with("sqlite:"))
        {
            return Err(TenantError::Configuration(
                "store.tls is set, but store.url is a SQLite database, which has no TLS: remove \
                 store.tls"
                    .into(),
            ));
        }
        Identifier::new("store.schema", &self.schema)?;
        Identifier::new("store.notify_channel", &self.notify_channel)?;
        if self.max_connections == 0 {
            return Err(TenantError::Configuration(
                "store.max_connections must be at least 1".into(),
            ));
        }
        if self.acquire_timeout_ms == 0 || self.ping_timeout_ms == 0 {
            return Err(TenantError::Configuration(
                "store.acquire_timeout_ms and store.ping_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// `acquire_timeout_ms` as a duration.
    #[must_use]
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// `ping_timeout_ms` as a duration.
    #[must_use]
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    /// The configured URL.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] saying it is missing.
    pub fn require_url(&self) -> Result<&str, TenantError> {
        self.url.as_deref().ok_or_else(|| {
            TenantError::Configuration(
                "store.url is not set: give a postgres:// or sqlite:// URL".into(),
            )
        })
    }
}

/// A validated SQL identifier (schema or channel name), safe to embed in SQL once quoted.
///
/// Rules: 1 to 63 bytes of `a-z`, `0-9` and `_`, not starting with a digit, not starting with `pg_`
/// (reserved by PostgreSQL). Lowercase only, so the quoted and unquoted forms name the same object.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identifier(String);

impl Identifier {
    /// Validates `value`; `field` names the configuration key in the error.
    pub(crate) fn new(field: &str, value: &str) -> Result<Self, TenantError> {
        let reason = if value.is_empty() || value.len() > 63 {
            Some("must be 1 to 63 bytes")
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            Some("may hold only a-z, 0-9 and '_'")
        } else if value.as_bytes()[0].is_ascii_digit() {
            Some("must not start with a digit")
        } else if value.starts_with("pg_") {
            Some("must not start with 'pg_' (reserved by PostgreSQL)")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(TenantError::Configuration(format!(
                "{field} {value:?} {reason}"
            ))),
            None => Ok(Self(value.to_owned())),
        }
    }

    /// The identifier as given.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier double-quoted, for SQL text. Validation rules out `"`, so nothing needs
    /// escaping, but quoting keeps keywords (`user`, `order`) usable.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn debug_hides_the_password() {
        let config = StoreConfig::with_url("postgres://app:hunter2@db/app");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:<redacted>@db/app"),
            "{shown}"
        );
    }

    use super::*;

    #[test]
    fn tls_keys_parse_and_are_refused_with_sqlite() {
        let config: StoreConfig = serde_json::from_str(
            r#"{"url": "postgres://db/app", "tls": {"mode": "verify-full", "root_cert": "/ca.pem"}}"#,
        )
        .unwrap();
        assert_eq!(
            config.tls.mode,
            Some(tenancy_pg_connect::SslMode::VerifyFull)
        );
        assert!(config.validate().is_ok());
        assert!(serde_json::from_str::<StoreConfig>(r#"{"tls": {"mode": "sometimes"}}"#).is_err());
        let sqlite = StoreConfig {
            url: Some("sqlite://t.db".into()),
            ..config
        };
        let err = sqlite.validate().unwrap_err().to_string();
        assert!(
            err.contains("store.tls is set") && err.contains("SQLite"),
            "{err}"
        );
    }

    #[test]
    fn identifiers_are_validated() {
        for good in ["tenancy", "t", "tenancy_v2", "_x", &"a".repeat(63)] {
            let id = Identifier::new("store.schema", good).unwrap();
            assert_eq!(id.quoted(), format!("\"{good}\""));
        }
        for bad in [
            "",
            "Tenancy",
            "ten-ancy",
            "a\"b",
            "a; DROP TABLE x",
            "1abc",
            "pg_catalog",
            "é",
            &"a".repeat(64),
        ] {
            let err = Identifier::new("store.schema", bad).unwrap_err();
            assert!(
                matches!(&err, TenantError::Configuration(m) if m.starts_with("store.schema")),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn defaults_and_validation() {
        let config = StoreConfig::default();
        assert_eq!(config.url, None);
        assert_eq!(config.schema, "tenancy");
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.notify_channel, "tenancy_changes");
        assert!(config.change_feed && config.migrate);
        config.validate().unwrap();
        assert!(config.require_url().is_err());
        let bad = StoreConfig {
            schema: "Bad Schema".into(),
            ..StoreConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = StoreConfig {
            max_connections: 0,
            ..StoreConfig::default()
        };
        assert!(bad.validate().is_err());
        let parsed: StoreConfig =
            serde_json::from_str(r#"{"url": "sqlite://x.db", "max_connections": 2}"#).unwrap();
        assert_eq!(parsed.max_connections, 2);
        assert_eq!(parsed.schema, "tenancy");
        assert!(serde_json::from_str::<StoreConfig>(r#"{"unknown": 1}"#).is_err());
    }
}
