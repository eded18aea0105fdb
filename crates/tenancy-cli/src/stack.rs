//! The database URL the command runs against, and the tenancy configuration built around it.

use std::path::Path;

use tenancy::TenancyConfig;
use tenancy::store_sql::StoreConfig;

use crate::cli::DEFAULT_DATABASE;
use crate::error::CliError;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Checks that `url` names a database this command can open.
pub(crate) fn backend(url: &str) -> Result<Backend, CliError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(CliError::Usage(format!(
            "--database {:?} is not a database URL: give sqlite://FILE or postgres://USER@HOST/DB",
            redact(url)
        )))
    }
}

/// The URL without its password, for messages.
/// The file a `sqlite:` URL names; `None` for an in-memory database or another backend.
pub(crate) fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    (!in_memory).then_some(Path::new(path))
}

pub(crate) fn redact(url: &str) -> String {
    tenancy::core::redact_url(url)
}

/// The configuration of an admin command: the `--config` file (and `TENANCY__*` variables), with
/// the store at `database` when given, else the file's `store.url`, else the demo's SQLite file.
pub(crate) fn admin_config(
    database: Option<&str>,
    file: Option<&Path>,
) -> Result<(TenancyConfig, Backend), CliError> {
    let mut config = TenancyConfig::load(file)?;
    let url = match (database, config.store.url.as_deref()) {
        (Some(url), _) | (None, Some(url)) => url.to_owned(),
        (None, None) => DEFAULT_DATABASE.to_owned(),
    };
    let backend = backend(&url)?;
    config.store.url = Some(url);
    // A command is one short process: no change feed listener for it.
    config.store.change_feed = false;
    // A command serves no requests, so it has no users to check memberships of (an application
    // configured with strict membership gives its checker in code, which the command cannot).
    config.resolution.membership = tenancy::resolution::MembershipMode::Off;
    // Recovering stuck tenants is a command of its own (`tenants recover`), not a side effect of
    // every other one.
    config.lifecycle.recover_after = None;
    Ok((config, backend))
}

/// The store section for `url` with the library's defaults.
pub(crate) fn store(url: &str) -> Result<StoreConfig, CliError> {
    backend(url)?;
    Ok(StoreConfig::with_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://data/t.db?mode=rwc"),
            Some(Path::new("data/t.db"))
        );
        assert_eq!(sqlite_file("sqlite:t.db"), Some(Path::new("t.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://db/x"), None);
    }

    #[test]
    fn urls_are_recognised_and_passwords_never_echoed() {
        assert_eq!(backend("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend("postgres://u:p@h/db").unwrap(), Backend::Postgres);
        let err = backend("mysql://u:secret@h/db").unwrap_err().to_string();
        assert!(err.contains("sqlite://FILE"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:<redacted>@h:5432/db"
        );
        assert_eq!(redact("sqlite://demo.db"), "sqlite://demo.db");
    }

    #[test]
    fn passwords_holding_at_signs_or_in_the_query_are_hidden() {
        let redacted = redact("postgres://u:p@ss@h:5432/db");
        assert_eq!(redacted, "postgres://u:<redacted>@h:5432/db");
        let redacted = redact("postgresql://u@h/db?sslmode=require&password=s3cret&x=1");
        assert_eq!(
            redacted,
            "postgresql://u@h/db?sslmode=require&password=<redacted>&x=1"
        );
        assert_eq!(
            redact("postgres://h/db?PASSWORD=s3cret"),
            "postgres://h/db?PASSWORD=<redacted>"
        );
        assert_eq!(redact("sqlite:///tmp/a@b.db"), "sqlite:///tmp/a@b.db");
        let err = backend("mysql://u:p@ss@h/db").unwrap_err().to_string();
        assert!(!err.contains("ss@"), "{err}");
    }
}
