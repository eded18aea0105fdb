//! The embedded, versioned migration runner's shared part: the migration list type and the
//! version check.
//!
//! Each backend keeps its migrations as an ordered list of [`Migration`]s and a version table
//! (`schema_version`); a run applies the migrations newer than the recorded version, in one
//! transaction, and records each. Migrations are append-only: a released one never changes.

use tenancy_core::TenantError;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Its version: 1, 2, 3, ... without gaps.
    pub(crate) version: i64,
    /// What it does (recorded in the version table).
    pub(crate) description: &'static str,
    /// The SQL (several statements; PostgreSQL's mention `{schema}`, replaced by the quoted schema).
    pub(crate) sql: &'static str,
}

/// The latest version in `migrations`.
pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

/// Whether the versions run 1, 2, 3, ... without gaps (checked by each backend's tests).
#[cfg(test)]
pub(crate) fn is_gapless(migrations: &[Migration]) -> bool {
    migrations
        .iter()
        .zip(1..)
        .all(|(m, expected)| m.version == expected)
}

/// The migrations to apply on a database at version `current`.
///
/// # Errors
/// [`TenantError::Migration`] when the database is newer than this binary knows: an older
/// binary must not write to a schema it does not understand.
pub(crate) fn pending(migrations: &[Migration], current: i64) -> Result<&[Migration], TenantError> {
    let latest = latest(migrations);
    if current > latest {
        return Err(TenantError::Migration {
            message: format!(
                "schema version {current} is newer than this binary supports ({latest}): upgrade tenancy"
            ),
            source: None,
        });
    }
    let applied = migrations
        .iter()
        .take_while(|m| m.version <= current)
        .count();
    Ok(&migrations[applied..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: [Migration; 3] = [
        Migration {
            version: 1,
            description: "a",
            sql: "",
        },
        Migration {
            version: 2,
            description: "b",
            sql: "",
        },
        Migration {
            version: 3,
            description: "c",
            sql: "",
        },
    ];

    #[test]
    fn pending_migrations_follow_the_recorded_version() {
        assert_eq!(pending(&LIST, 0).unwrap().len(), 3);
        assert_eq!(pending(&LIST, 2).unwrap()[0].version, 3);
        assert!(pending(&LIST, 3).unwrap().is_empty());
        let err = pending(&LIST, 7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "migration failed: schema version 7 is newer than this binary supports (3): upgrade tenancy"
        );
    }
}
