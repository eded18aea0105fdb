//! Mapping of sqlx errors to [`TenantError`].

use sqlx::error::DatabaseError;
use tenancy_core::{TenantError, TenantId, TenantRef};

/// A storage error for a failed operation, with the sqlx error as its source; input the database
/// cannot hold is [`TenantError::InvalidInput`] instead.
pub(crate) fn storage(operation: &str, err: sqlx::Error) -> TenantError {
    unstorable(operation, &err)
        .unwrap_or_else(|| TenantError::storage(format!("{operation}: {err}"), err))
}

/// `storage` for an operation on one tenant.
pub(crate) fn tenant_storage(operation: &str, tenant: TenantId, err: sqlx::Error) -> TenantError {
    unstorable(operation, &err).unwrap_or_else(|| {
        TenantError::storage(format!("{operation} (tenant {tenant}): {err}"), err)
    })
}

/// The error for text PostgreSQL refuses to hold, such as the NUL character in a key, a name or a
/// JSON string (`character_not_in_repertoire`, `untranslatable_character`): the caller's input,
/// not a storage failure.
fn unstorable(operation: &str, err: &sqlx::Error) -> Option<TenantError> {
    let db = database_error(err)?;
    matches!(db.code().as_deref(), Some("22021" | "22P05")).then(|| {
        TenantError::invalid(
            "value",
            format!(
                "{operation}: the database cannot store this text (the NUL character, say): {}",
                db.message()
            ),
        )
    })
}

/// The database error inside `err`, if the database refused the statement.
pub(crate) fn database_error(err: &sqlx::Error) -> Option<&dyn DatabaseError> {
    match err {
        sqlx::Error::Database(db) => Some(db.as_ref()),
        _ => None,
    }
}

/// Whether the database refused the statement for a missing referenced row.
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    database_error(err).is_some_and(DatabaseError::is_foreign_key_violation)
}

/// The error of a mutation on a tenant that does not exist.
pub(crate) fn not_found(id: TenantId) -> TenantError {
    TenantError::NotFound {
        tenant: TenantRef::Id(id),
    }
}

/// The error of a create whose id is taken (as the in-memory store reports it).
pub(crate) fn duplicate_id(id: TenantId) -> TenantError {
    TenantError::invalid("id", format!("tenant {id} already exists"))
}

/// Runs a cheap query with a timeout; returns how long it took.
pub(crate) async fn ping<T>(
    what: &str,
    timeout: std::time::Duration,
    query: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<std::time::Duration, TenantError> {
    let start = std::time::Instant::now();
    tokio::time::timeout(timeout, query)
        .await
        .map_err(|e| TenantError::storage(format!("{what} did not answer within {timeout:?}"), e))?
        .map_err(|e| storage(&format!("pinging {what}"), e))?;
    Ok(start.elapsed())
}
