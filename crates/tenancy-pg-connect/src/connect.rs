//! [`connect_options`], the one builder of PostgreSQL connect options, and [`connect_error`],
//! which says what failed when connecting did.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tenancy_core::{TenantError, redact_url};

use crate::TLS_AVAILABLE;
use crate::tls::{SslMode, TlsConfig};

/// The connect options of `url` with the TLS settings of `tls` applied.
///
/// `url_key` and `tls_key` name where the URL and the TLS settings come from in the configuration
/// (`store.url`, `store.tls`), for error messages. Each key of `tls` that is set overrides the
/// URL's parameter; `sslmode=require` with a root certificate verifies like `verify-ca`, as libpq
/// does.
///
/// # Errors
/// [`TenantError::Configuration`], naming the key, when:
/// - the URL is not a PostgreSQL URL, or its `sslmode` is unknown;
/// - the mode is `allow` (sqlx would never use TLS);
/// - the mode needs TLS and this build has none (feature `tls-rustls` off);
/// - a root certificate is given with a mode that never checks it (`disable`, `prefer`);
/// - the root certificate file cannot be read or holds no PEM certificate.
///
/// ```
/// use tenancy_pg_connect::{SslMode, TlsConfig, connect_options};
///
/// let options = connect_options(
///     "postgres://app@db.internal/app?sslmode=disable",
///     "store.url",
///     &TlsConfig { mode: Some(SslMode::Require), root_cert: None },
///     "store.tls",
/// )
/// .unwrap();
/// assert_eq!(tenancy_pg_connect::ssl_mode(&options), Some(SslMode::Require));
///
/// let err = connect_options(
///     "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
///     "store.url",
///     &TlsConfig::default(),
///     "store.tls",
/// )
/// .unwrap_err();
/// assert!(err.to_string().contains("root certificate /nonexistent/ca.pem"), "{err}");
/// assert!(err.to_string().contains("cannot be read"), "{err}");
/// ```
pub fn connect_options(
    url: &str,
    url_key: &str,
    tls: &TlsConfig,
    tls_key: &str,
) -> Result<PgConnectOptions, TenantError> {
    tls.validate(tls_key)?;
    let not_postgres = |reason: &dyn fmt::Display| {
        TenantError::Configuration(format!(
            "{url_key} ({}) is not a PostgreSQL URL: {reason}",
            redact_url(url)
        ))
    };
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
        return Err(not_postgres(
            &"it must start with postgres:// or postgresql://",
        ));
    }
    let mut options = PgConnectOptions::from_str(url).map_err(|e| not_postgres(&e))?;
    if let Some(mode) = tls.mode {
        options = options.ssl_mode(to_sqlx(mode));
    }
    if let Some(root) = &tls.root_cert {
        options = options.ssl_root_cert(root);
    }
    let where_set = || {
        let mut keys = vec![format!("sslmode in {url_key}")];
        if !tls.is_empty() {
            keys.push(format!("{tls_key}.mode"));
        }
        keys.join(" or ")
    };
    let Some(mut mode) = from_sqlx(options.get_ssl_mode()) else {
        return Err(TenantError::Configuration(format!(
            "{}: sslmode=allow is not supported (it would never use TLS): use prefer, require, \
             verify-ca or verify-full",
            where_set()
        )));
    };
    let root = root_cert(&options);
    if let Some(root) = &root {
        if !mode.requires_tls() {
            return Err(TenantError::Configuration(format!(
                "a root certificate ({root}, from {tls_key}.root_cert or sslrootcert in {url_key}) \
                 is set, but sslmode is {mode}, which never checks the server's certificate: set \
                 {tls_key}.mode to verify-full"
            )));
        }
        if mode == SslMode::Require {
            mode = SslMode::VerifyCa;
            options = options.ssl_mode(PgSslMode::VerifyCa);
        }
    }
    if mode.requires_tls() && !TLS_AVAILABLE {
        return Err(TenantError::Configuration(format!(
            "{} asks for sslmode={mode}, but this build has no TLS: enable the `tls-rustls` \
             feature (on by default)",
            where_set()
        )));
    }
    if let Some(RootCert::File(path)) = &root {
        check_root_cert(path, url_key, tls_key)?;
    }
    Ok(options)
}

/// Reads the root certificate file once, so that a wrong path is a configuration error at start
/// rather than a failure of every connection.
fn check_root_cert(
    path: &std::path::Path,
    url_key: &str,
    tls_key: &str,
) -> Result<(), TenantError> {
    let origin = format!("{tls_key}.root_cert or sslrootcert in {url_key}");
    let pem = std::fs::read(path).map_err(|e| {
        TenantError::Configuration(format!(
            "the root certificate {} ({origin}) cannot be read: {e}",
            path.display()
        ))
    })?;
    let pem = String::from_utf8_lossy(&pem);
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(TenantError::Configuration(format!(
            "the root certificate {} ({origin}) holds no PEM certificate \
             (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(())
}

/// Where the root certificate of a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootCert {
    File(PathBuf),
    Inline,
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Inline => f.write_str("an inline PEM certificate"),
        }
    }
}

/// The root certificate of `options`, which sqlx shows only through its URL form (`file: PATH`
/// for a file, the PEM text for an inline certificate).
fn root_cert(options: &PgConnectOptions) -> Option<RootCert> {
    let url = options.to_url_lossy();
    let value = url
        .query_pairs()
        .find(|(key, _)| key == "sslrootcert")
        .map(|(_, value)| value.into_owned())?;
    if value.trim_start().starts_with("-----BEGIN") {
        return Some(RootCert::Inline);
    }
    let path = value.strip_prefix("file: ").unwrap_or(&value);
    Some(RootCert::File(PathBuf::from(path)))
}

const fn to_sqlx(mode: SslMode) -> PgSslMode {
    match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// The `sslmode` of `options`; `None` for `allow`, which this crate does not offer.
///
/// ```
/// use tenancy_pg_connect::{SslMode, ssl_mode};
///
/// let options = "postgres://db/app?sslmode=verify-ca".parse().unwrap();
/// assert_eq!(ssl_mode(&options), Some(SslMode::VerifyCa));
/// ```
#[must_use]
pub fn ssl_mode(options: &PgConnectOptions) -> Option<SslMode> {
    from_sqlx(options.get_ssl_mode())
}

/// The mode, or `None` for `allow`.
const fn from_sqlx(mode: PgSslMode) -> Option<SslMode> {
    Some(match mode {
        PgSslMode::Disable => SslMode::Disable,
        PgSslMode::Allow => return None,
        PgSslMode::Prefer => SslMode::Prefer,
        PgSslMode::Require => SslMode::Require,
        PgSslMode::VerifyCa => SslMode::VerifyCa,
        PgSslMode::VerifyFull => SslMode::VerifyFull,
    })
}

const fn mode_name(mode: PgSslMode) -> &'static str {
    match from_sqlx(mode) {
        Some(mode) => mode.as_str(),
        None => "allow",
    }
}

/// A failed connection to PostgreSQL, saying whether TLS is what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// TLS could not be set up: the server's certificate is not trusted or does not name the
    /// host, the server does not offer TLS, or the root certificate is unusable.
    #[error(
        "TLS with the PostgreSQL server {server} failed (sslmode={mode}, trusting {trusted}): \
         {detail}{hint}",
        hint = if *verifies {
            "; the server's certificate must be issued by a trusted root certificate and, \
             with verify-full, name the host connected to"
        } else {
            ""
        }
    )]
    Tls {
        /// `host:port` or the socket path.
        server: String,
        /// The connection's `sslmode`.
        mode: &'static str,
        /// The root certificates trusted: a file, or Mozilla's roots.
        trusted: String,
        /// Whether the mode checks the certificate.
        verifies: bool,
        /// What rustls or sqlx reported (`invalid peer certificate: UnknownIssuer`).
        detail: String,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
    /// The root certificate file could not be read when connecting.
    #[error(
        "the root certificate {path} for the PostgreSQL server {server} cannot be read: {source}"
    )]
    RootCertificate {
        /// `host:port` or the socket path.
        server: String,
        /// The file.
        path: String,
        /// The read error.
        #[source]
        source: sqlx::Error,
    },
    /// The server refused a connection made without TLS (`sslmode=disable`), as a server that
    /// accepts only TLS connections does.
    #[error(
        "the PostgreSQL server {server} refused a connection without TLS (sslmode={mode}): \
         {source}; if the server accepts only TLS connections, connect with \
         sslmode=verify-full and its root certificate"
    )]
    TlsRequired {
        /// `host:port` or the socket path.
        server: String,
        /// The connection's `sslmode`.
        mode: &'static str,
        /// The server's refusal.
        #[source]
        source: sqlx::Error,
    },
    /// Any other failure, as sqlx reported it.
    #[error(transparent)]
    Other(sqlx::Error),
}

impl ConnectError {
    /// Whether TLS is what failed (or what the server asked for).
    #[must_use]
    pub const fn is_tls(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

/// What `err`, from connecting with `options` (or from a pool built on them), means.
///
/// - a TLS error from sqlx, or an I/O error of the TLS layer (rustls reports an untrusted
///   certificate as invalid data), on a connection that tried TLS: [`ConnectError::Tls`];
/// - the root certificate file missing when connecting: [`ConnectError::RootCertificate`];
/// - the server refusing the authorization (`28000`, `pg_hba.conf` rejects) of a connection
///   without TLS: [`ConnectError::TlsRequired`];
/// - anything else: [`ConnectError::Other`], unchanged.
///
/// ```
/// use sqlx::postgres::PgConnectOptions;
/// use tenancy_pg_connect::{ConnectError, connect_error};
///
/// let options: PgConnectOptions = "postgres://db.internal/app?sslmode=verify-full".parse().unwrap();
/// let err = connect_error(&options, sqlx::Error::Tls("server does not support TLS".into()));
/// assert!(err.is_tls());
/// assert!(err.to_string().starts_with("TLS with the PostgreSQL server db.internal:5432 failed"));
/// ```
#[must_use]
pub fn connect_error(options: &PgConnectOptions, err: sqlx::Error) -> ConnectError {
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let ssl_mode = options.get_ssl_mode();
    let tried_tls = !matches!(ssl_mode, PgSslMode::Disable | PgSslMode::Allow);
    let root = root_cert(options);
    match &err {
        sqlx::Error::Io(io) if tried_tls => match (io.kind(), &root) {
            (
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied,
                Some(RootCert::File(path)),
            ) => ConnectError::RootCertificate {
                server,
                path: path.display().to_string(),
                source: err,
            },
            (io::ErrorKind::InvalidData, _) if io.get_ref().is_some() => {
                tls(server, ssl_mode, root, err)
            }
            _ => ConnectError::Other(err),
        },
        sqlx::Error::Tls(_) => tls(server, ssl_mode, root, err),
        sqlx::Error::Database(db) if !tried_tls && db.code().as_deref() == Some("28000") => {
            ConnectError::TlsRequired {
                server,
                mode: mode_name(ssl_mode),
                source: err,
            }
        }
        _ => ConnectError::Other(err),
    }
}

fn tls(server: String, mode: PgSslMode, root: Option<RootCert>, err: sqlx::Error) -> ConnectError {
    let verifies = matches!(mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull);
    let trusted = match (verifies, root) {
        (false, _) => "any certificate".to_owned(),
        (true, Some(root)) => format!("the root certificate {root}"),
        (true, None) => "Mozilla's root certificates".to_owned(),
    };
    // Without sqlx's "error communicating with database: " before what the TLS layer said.
    let detail = match &err {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(tls) => tls.to_string(),
        other => other.to_string(),
    };
    ConnectError::Tls {
        server,
        mode: mode_name(mode),
        trusted,
        verifies,
        detail,
        source: err,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn options(url: &str, tls: &TlsConfig) -> Result<PgConnectOptions, String> {
        connect_options(url, "store.url", tls, "store.tls").map_err(|e| e.to_string())
    }

    fn pem_file() -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        file.write_all(cert.cert.pem().as_bytes()).unwrap();
        file
    }

    #[test]
    fn the_configuration_overrides_the_url_key_by_key() {
        let ca = pem_file();
        let url = "postgres://app@db/app?sslmode=disable";
        let plain = options(url, &TlsConfig::default()).unwrap();
        assert_eq!(ssl_mode(&plain), Some(SslMode::Disable));
        let tls = TlsConfig {
            mode: Some(SslMode::VerifyFull),
            root_cert: Some(ca.path().to_path_buf()),
        };
        let verified = options(url, &tls).unwrap();
        assert_eq!(ssl_mode(&verified), Some(SslMode::VerifyFull));
        assert_eq!(
            root_cert(&verified),
            Some(RootCert::File(ca.path().to_path_buf()))
        );
        // Only the root certificate from the configuration: the URL's mode stays.
        let url = "postgres://app@db/app?sslmode=verify-ca";
        let root_only = TlsConfig {
            mode: None,
            root_cert: Some(ca.path().to_path_buf()),
        };
        assert_eq!(
            ssl_mode(&options(url, &root_only).unwrap()),
            Some(SslMode::VerifyCa)
        );
    }

    #[test]
    fn require_with_a_root_certificate_verifies_like_verify_ca() {
        let ca = pem_file();
        let url = format!(
            "postgres://app@db/app?sslmode=require&sslrootcert={}",
            ca.path().display()
        );
        assert_eq!(
            ssl_mode(&options(&url, &TlsConfig::default()).unwrap()),
            Some(SslMode::VerifyCa)
        );
        let plain = options(
            "postgres://app@db/app?sslmode=require",
            &TlsConfig::default(),
        )
        .unwrap();
        assert_eq!(ssl_mode(&plain), Some(SslMode::Require));
    }

    #[test]
    fn allow_unknown_modes_and_bad_urls_are_configuration_errors() {
        let err =
            options("postgres://app@db/app?sslmode=allow", &TlsConfig::default()).unwrap_err();
        assert!(
            err.contains("sslmode in store.url") && err.contains("allow is not supported"),
            "{err}"
        );
        let err = options(
            "postgres://app@db/app?sslmode=sometimes",
            &TlsConfig::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("store.url") && err.contains("sometimes"),
            "{err}"
        );
        let err = options("mysql://app:s3cret@db/app", &TlsConfig::default()).unwrap_err();
        assert!(err.contains("is not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_root_certificate_that_would_never_be_checked_is_refused() {
        let ca = pem_file();
        let tls = TlsConfig {
            mode: None,
            root_cert: Some(ca.path().to_path_buf()),
        };
        let err = options("postgres://app@db/app?sslmode=prefer", &tls).unwrap_err();
        assert!(
            err.contains("never checks") && err.contains("store.tls.mode"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_or_empty_root_certificate_is_refused_at_once() {
        let tls = TlsConfig {
            mode: Some(SslMode::VerifyFull),
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let err = options("postgres://app@db/app", &tls).unwrap_err();
        assert!(
            err.contains("/nonexistent/ca.pem")
                && err.contains("cannot be read")
                && err.contains("store.tls.root_cert"),
            "{err}"
        );
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        let tls = TlsConfig {
            mode: Some(SslMode::VerifyFull),
            root_cert: Some(not_pem.path().to_path_buf()),
        };
        let err = options("postgres://app@db/app", &tls).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn tls_errors_name_tls_and_what_was_trusted() {
        let ca = pem_file();
        let tls = TlsConfig {
            mode: Some(SslMode::VerifyFull),
            root_cert: Some(ca.path().to_path_buf()),
        };
        let options = options("postgres://app@db.internal:6432/app", &tls).unwrap();
        let rustls_like = io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        let err = connect_error(&options, sqlx::Error::Io(rustls_like));
        assert!(err.is_tls());
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "TLS with the PostgreSQL server db.internal:6432 failed (sslmode=verify-full"
            ),
            "{shown}"
        );
        let trusting = format!(
            "trusting the root certificate {}): invalid peer",
            ca.path().display()
        );
        assert!(shown.contains(&trusting), "{shown}");
        assert!(
            shown.contains("invalid peer certificate: UnknownIssuer"),
            "{shown}"
        );
        assert!(
            shown.contains("must be issued by a trusted root certificate"),
            "{shown}"
        );
        // A refused TCP connection is not a TLS failure.
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let err = connect_error(&options, sqlx::Error::Io(refused));
        assert!(!err.is_tls(), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
