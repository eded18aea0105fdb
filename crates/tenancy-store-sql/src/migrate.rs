//! The store's embedded migrations, run by [`sqlx::migrate::Migrator`]: ordered, checksummed and
//! recorded in a migrations table, each in its own transaction, under the migrator's lock.
//!
//! A database newer than this binary (a recorded migration it does not know) is refused. A
//! database written by a release that kept its version in a plain version table (`schema_version`)
//! is adopted on the first run: the versions it lists are recorded as applied and the old table is
//! dropped. Migrations are append-only: a released one never changes (its checksum would no longer
//! match the recorded one, and the run would be refused).

use std::ops::DerefMut;

use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::{Database, Executor, IntoArguments, Pool, SqlSafeStr};
use tenancy_core::TenantError;

use crate::statements::{Sql, q};

/// One embedded migration: version (1, 2, 3, ... without gaps), description, SQL.
pub(crate) type Embedded = (i64, &'static str, String);

/// A backend's migrations, where they are recorded, and the version table they replace.
#[derive(Debug)]
pub(crate) struct StoreMigrations {
    migrator: Migrator,
    latest: i64,
    /// What is migrated, for error messages ("the store schema \"tenancy\"").
    what: String,
    /// Counts the old version tables (0 or 1).
    legacy_exists: Sql,
    /// The versions the old table lists.
    legacy_versions: Sql,
    /// Drops the old table.
    legacy_drop: Sql,
}

/// Where a backend keeps its migration records.
#[derive(Debug)]
pub(crate) struct Records {
    /// The migrations table (quoted and qualified as needed).
    pub(crate) table: String,
    /// A schema to create first, if any (quoted).
    pub(crate) schema: Option<String>,
    /// Counts the old version tables (0 or 1).
    pub(crate) legacy_exists: String,
    /// The old version table (quoted and qualified as needed).
    pub(crate) legacy_table: String,
}

impl StoreMigrations {
    pub(crate) fn new(what: String, migrations: Vec<Embedded>, records: Records) -> Self {
        let latest = migrations.iter().map(|m| m.0).max().unwrap_or(0);
        let migrations = migrations
            .into_iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(records.table);
        if let Some(schema) = records.schema {
            migrator.create_schema(schema);
        }
        let legacy = records.legacy_table;
        Self {
            migrator,
            latest,
            what,
            legacy_exists: records.legacy_exists.into(),
            legacy_versions: format!("SELECT version FROM {legacy}").into(),
            legacy_drop: format!("DROP TABLE IF EXISTS {legacy}").into(),
        }
    }

    /// The latest version this binary knows.
    #[cfg(test)]
    pub(crate) fn latest(&self) -> i64 {
        self.latest
    }

    /// Applies the migrations the database lacks, after adopting an old version table; returns
    /// the schema version.
    ///
    /// # Errors
    /// [`TenantError::Migration`] when a migration fails, one recorded is unknown to this binary
    /// or differs from the one it embeds.
    pub(crate) async fn run<DB>(&self, pool: &Pool<DB>) -> Result<i64, TenantError>
    where
        DB: Database,
        DB::Connection: Migrate,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
        (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        let mut pooled = pool.acquire().await.map_err(|e| self.failed(e))?;
        let conn = pooled.deref_mut();
        let outcome = async {
            let legacy: i64 = sqlx::query_scalar(q(&self.legacy_exists))
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| self.failed(e))?;
            if legacy > 0 {
                // Under the migration lock, so that concurrent processes adopt it once.
                conn.lock().await.map_err(|e| self.refused(e))?;
                let versions: Vec<i64> = sqlx::query_scalar(q(&self.legacy_versions))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| self.failed(e))?;
                if let Some(&newest) = versions.iter().max() {
                    if newest > self.latest {
                        return Err(newer(newest, self.latest));
                    }
                    // Records the migrations up to `newest` as applied, without running them.
                    self.migrator
                        .run_direct(Some(newest), &mut *conn, true)
                        .await
                        .map_err(|e| self.refused(e))?;
                }
                sqlx::query(q(&self.legacy_drop))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| self.failed(e))?;
                conn.unlock().await.map_err(|e| self.refused(e))?;
                tracing::info!(what = %self.what, ?versions, "adopted the old version table");
            }
            // `run_direct` is `run` on a connection already acquired (`run` takes a pool or
            // connection through `Acquire`, whose bounds a `Send` future cannot meet here).
            self.migrator
                .run_direct(None, &mut *conn, false)
                .await
                .map_err(|e| self.refused(e))
        }
        .await;
        if outcome.is_err() {
            // A failed run may still hold the migration lock of its session: end the session.
            let _ = pooled.close().await;
        }
        outcome.map(|()| self.latest)
    }

    fn failed(&self, e: sqlx::Error) -> TenantError {
        TenantError::migration(format!("migrating {}: {e}", self.what), e)
    }

    fn refused(&self, e: MigrateError) -> TenantError {
        match e {
            MigrateError::VersionMissing(version) if version > self.latest => {
                newer(version, self.latest)
            }
            MigrateError::VersionMissing(version) => TenantError::migration(
                format!(
                    "migrating {}: migration {version} is recorded but this binary does not have \
                     it: run the release that applied it",
                    self.what
                ),
                e,
            ),
            MigrateError::VersionMismatch(version) => TenantError::migration(
                format!(
                    "migrating {}: migration {version} differs from the one recorded when it was \
                     applied: released migrations must not change",
                    self.what
                ),
                e,
            ),
            e => TenantError::migration(format!("migrating {}: {e}", self.what), e),
        }
    }
}

/// The error of a database newer than this binary: it must not write to a schema it does not
/// understand.
fn newer(version: i64, latest: i64) -> TenantError {
    TenantError::Migration {
        message: format!(
            "schema version {version} is newer than this binary supports ({latest}): upgrade tenancy"
        ),
        source: None,
    }
}

/// Whether the versions run 1, 2, 3, ... without gaps (checked by each backend's tests).
#[cfg(test)]
pub(crate) fn is_gapless(migrations: &[Embedded]) -> bool {
    migrations
        .iter()
        .zip(1..)
        .all(|(m, expected)| m.0 == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_database_is_refused_by_name() {
        assert_eq!(
            newer(7, 1).to_string(),
            "migration failed: schema version 7 is newer than this binary supports (1): upgrade tenancy"
        );
        assert!(is_gapless(&[
            (1, "a", String::new()),
            (2, "b", String::new())
        ]));
        assert!(!is_gapless(&[
            (1, "a", String::new()),
            (3, "b", String::new())
        ]));
    }
}
