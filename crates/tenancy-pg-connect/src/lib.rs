//! Connecting to PostgreSQL for the `tenancy` crates: one function builds every connection's
//! options from a URL and the TLS settings of the configuration, and one function turns a failed
//! connection into an error that says what failed.
//!
//! - [`TlsConfig`] and [`SslMode`]: the `tls` keys of the `store` and `isolation` sections (plain
//!   types, no sqlx);
//! - [`connect_options`] (feature `postgres`): a URL (`sslmode`, `sslrootcert` in its query) and a
//!   [`TlsConfig`] (which overrides the URL, key by key, where set) into sqlx's
//!   `PgConnectOptions`, checked: an unsupported mode, a mode that needs TLS in a build without it,
//!   and an unreadable root certificate are [`TenantError::Configuration`];
//! - [`connect_error`] (feature `postgres`): a sqlx error into a [`ConnectError`] that names TLS
//!   when TLS is what failed (an untrusted certificate, a server without TLS, a server that
//!   refuses connections without it).
//!
//! Every connection the `tenancy` crates make to PostgreSQL (the store's pool, the change feed,
//! the database-per-tenant router, the command line) is built by [`connect_options`], so a
//! `sslmode` means the same everywhere.
//!
//! TLS itself is sqlx's rustls support (ring, with Mozilla's root certificates from
//! `webpki-roots` when no root certificate is given), behind the default feature `tls-rustls`.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # fn main() -> Result<(), tenancy_core::TenantError> {
//! use tenancy_pg_connect::{SslMode, TlsConfig, connect_options};
//!
//! let tls = TlsConfig {
//!     mode: Some(SslMode::VerifyFull),
//!     root_cert: Some("/etc/ssl/db-ca.pem".into()),
//! };
//! let options = connect_options("postgres://app@db.internal/app", "store.url", &tls, "store.tls")?;
//! # drop(options); Ok(()) }
//! # #[cfg(not(feature = "postgres"))]
//! # fn main() {}
//! ```

#[cfg(feature = "postgres")]
mod connect;
mod tls;

#[cfg(feature = "postgres")]
pub use connect::{ConnectError, connect_error, connect_options, ssl_mode};
pub use tls::{SslMode, TlsConfig};

/// Whether this build can connect with TLS (feature `tls-rustls`).
pub const TLS_AVAILABLE: bool = cfg!(feature = "tls-rustls");
