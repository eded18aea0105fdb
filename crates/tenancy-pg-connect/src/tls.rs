//! [`SslMode`] and [`TlsConfig`]: the TLS settings of a PostgreSQL connection, as configured.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tenancy_core::TenantError;

/// How a connection uses TLS, as libpq's `sslmode` (`allow` is not offered: sqlx never retries
/// with TLS after a refused plain connection, so it would mean `disable`).
///
/// | mode | encrypted | server certificate checked | host name checked |
/// |---|---|---|---|
/// | `disable` | never | no | no |
/// | `prefer` | when the server offers TLS | no | no |
/// | `require` | always | no (as `verify-ca` when a root certificate is given, like libpq) | no |
/// | `verify-ca` | always | issued by a trusted root | no |
/// | `verify-full` | always | issued by a trusted root | the certificate names the host |
///
/// ```
/// use tenancy_pg_connect::SslMode;
///
/// assert_eq!("verify-full".parse::<SslMode>().unwrap(), SslMode::VerifyFull);
/// assert_eq!(SslMode::VerifyCa.to_string(), "verify-ca");
/// assert!("allow".parse::<SslMode>().unwrap_err().to_string().contains("not supported"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain otherwise (sqlx's
    /// and libpq's default).
    Prefer,
    /// Always TLS, without checking the certificate (unless a root certificate is given).
    Require,
    /// Always TLS; the server's certificate must be issued by a trusted root certificate.
    VerifyCa,
    /// Always TLS; the certificate must be issued by a trusted root and name the host connected
    /// to. The mode to use in production.
    VerifyFull,
}

impl SslMode {
    /// The mode as written in a URL and the configuration (`verify-full`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether every connection is encrypted (`require`, `verify-ca`, `verify-full`).
    #[must_use]
    pub const fn requires_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }

    /// Whether the server's certificate is checked against the root certificates (`verify-ca`,
    /// `verify-full`).
    #[must_use]
    pub const fn verifies_certificate(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = TenantError;

    /// Parses a mode, ignoring ASCII case as sqlx does; `allow` and unknown names are
    /// configuration errors.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err(TenantError::Configuration(
                    "sslmode=allow is not supported (it would never use TLS): use prefer, \
                     require, verify-ca or verify-full"
                        .into(),
                ));
            }
            other => {
                return Err(TenantError::Configuration(format!(
                    "unknown sslmode {other:?}: expected disable, prefer, require, verify-ca or \
                     verify-full"
                )));
            }
        })
    }
}

/// The TLS settings of a section's PostgreSQL connections (`store.tls`, `isolation.tls`).
///
/// Each key, when set, overrides the URL's own parameter (`sslmode`, `sslrootcert`); unset, the
/// URL decides, and without either the mode is `prefer`.
///
/// ```
/// use tenancy_pg_connect::{SslMode, TlsConfig};
///
/// let tls: TlsConfig =
///     serde_json::from_str(r#"{"mode": "verify-full", "root_cert": "/etc/ssl/db-ca.pem"}"#).unwrap();
/// assert_eq!(tls.mode, Some(SslMode::VerifyFull));
/// assert!(serde_json::from_str::<TlsConfig>(r#"{"mode": "allow"}"#).is_err());
/// assert!(serde_json::from_str::<TlsConfig>(r#"{"ca": "x.pem"}"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The `sslmode` of every connection; `None` keeps the URL's.
    pub mode: Option<SslMode>,
    /// A PEM file of the root certificate(s) that issued the server's certificate, trusted
    /// instead of Mozilla's public roots; `None` keeps the URL's `sslrootcert`.
    pub root_cert: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether neither key is set (the URL decides everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.root_cert.is_none()
    }

    /// Checks what serde cannot: a root certificate is a non-empty path, and is not given with
    /// `mode: disable`, which would never use it. `key` names the section's `tls` key in errors
    /// (`store.tls`).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] naming the key.
    pub fn validate(&self, key: &str) -> Result<(), TenantError> {
        if let Some(path) = &self.root_cert {
            if path.as_os_str().is_empty() {
                return Err(TenantError::Configuration(format!(
                    "{key}.root_cert is empty: give the path of a PEM file, or leave it unset"
                )));
            }
            if self.mode == Some(SslMode::Disable) {
                return Err(TenantError::Configuration(format!(
                    "{key}.root_cert is set but {key}.mode is disable, which never uses TLS: \
                     use verify-full (or verify-ca), or remove root_cert"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_round_trips_through_its_name() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<SslMode>().unwrap(), mode);
            assert_eq!(
                mode.as_str().to_uppercase().parse::<SslMode>().unwrap(),
                mode
            );
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
        }
        let err = "verify_full".parse::<SslMode>().unwrap_err().to_string();
        assert!(
            err.contains("unknown sslmode") && err.contains("verify-full"),
            "{err}"
        );
    }

    #[test]
    fn only_the_three_strict_modes_require_tls() {
        assert!(!SslMode::Disable.requires_tls());
        assert!(!SslMode::Prefer.requires_tls());
        assert!(SslMode::Require.requires_tls());
        assert!(!SslMode::Require.verifies_certificate());
        assert!(SslMode::VerifyCa.verifies_certificate());
        assert!(SslMode::VerifyFull.verifies_certificate());
    }

    #[test]
    fn a_root_certificate_with_mode_disable_or_empty_is_refused() {
        assert!(TlsConfig::default().validate("store.tls").is_ok());
        assert!(TlsConfig::default().is_empty());
        let contradiction = TlsConfig {
            mode: Some(SslMode::Disable),
            root_cert: Some("ca.pem".into()),
        };
        let err = contradiction.validate("store.tls").unwrap_err().to_string();
        assert!(
            err.contains("store.tls.root_cert") && err.contains("disable"),
            "{err}"
        );
        let empty = TlsConfig {
            mode: Some(SslMode::VerifyFull),
            root_cert: Some(PathBuf::new()),
        };
        let err = empty.validate("isolation.tls").unwrap_err().to_string();
        assert!(err.contains("isolation.tls.root_cert is empty"), "{err}");
    }
}
