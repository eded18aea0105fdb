//! Row mapping shared by both backends: a tenant row as the database returns it, and its
//! conversion (with validation) into a [`TenantInfo`].
//!
//! Both backends select JSON columns as text, so one parser turns every unreadable stored value
//! into a [`TenantError::Storage`] naming the tenant and the column or key instead of a panic or a
//! bare driver error.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{ColumnIndex, Decode, Row, Type};
use tenancy_core::{JsonObject, Page, TenantError, TenantId, TenantInfo, TenantStatus, Uuid};

/// A tenant row, decoded but not yet validated.
#[derive(Debug)]
pub(crate) struct TenantRow {
    id: Uuid,
    slug: String,
    name: String,
    status: String,
    status_reason: Option<String>,
    plan: Option<String>,
    metadata: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'r, R> sqlx::FromRow<'r, R> for TenantRow
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            status: row.try_get("status")?,
            status_reason: row.try_get("status_reason")?,
            plan: row.try_get("plan")?,
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl TenantRow {
    /// Validates the row into a tenant.
    ///
    /// # Errors
    /// [`TenantError::Storage`] naming the tenant and the column (or config key) that does not
    /// hold a valid value.
    pub(crate) fn into_info(self) -> Result<TenantInfo, TenantError> {
        let id = TenantId::from(self.id);
        let slug = self
            .slug
            .parse()
            .map_err(|e| corrupt(id, "column slug", e))?;
        let status = self
            .status
            .parse::<TenantStatus>()
            .map_err(|e| corrupt(id, "column status", e))?;
        let metadata = serde_json::from_str::<JsonObject>(&self.metadata)
            .map_err(|e| corrupt(id, "column metadata", e))?;
        Ok(TenantInfo {
            id,
            slug,
            name: self.name,
            status,
            status_reason: self.status_reason,
            plan: self.plan,
            metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Parses one stored config value.
///
/// # Errors
/// [`TenantError::Storage`] naming the tenant and key when the text is not JSON.
pub(crate) fn parse_config_value(
    tenant: TenantId,
    key: &str,
    text: &str,
) -> Result<Value, TenantError> {
    serde_json::from_str(text).map_err(|e| corrupt(tenant, &format!("config key {key:?}"), e))
}

/// A value as stored JSON text.
pub(crate) fn to_json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, TenantError> {
    serde_json::to_string(value).map_err(|e| TenantError::invalid("value", e.to_string()))
}

/// Parses an optional stored config value.
pub(crate) fn parse_optional_value(
    tenant: TenantId,
    key: &str,
    text: Option<String>,
) -> Result<Option<Value>, TenantError> {
    text.map(|t| parse_config_value(tenant, key, &t))
        .transpose()
}

fn corrupt(tenant: TenantId, what: &str, source: impl Into<tenancy_core::BoxError>) -> TenantError {
    TenantError::storage(
        format!("tenant {tenant}: stored {what} is unreadable; repair the row"),
        source,
    )
}

/// One page from `limit + 1` rows.
pub(crate) fn page(mut rows: Vec<TenantRow>, limit: u32) -> Result<Page<TenantInfo>, TenantError> {
    let limit = limit as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let items = rows
        .into_iter()
        .map(TenantRow::into_info)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        items.last().map(|t| t.id)
    } else {
        None
    };
    Ok(Page { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metadata: &str, status: &str) -> TenantRow {
        TenantRow {
            id: Uuid::nil(),
            slug: "acme".into(),
            name: "Acme".into(),
            status: status.into(),
            status_reason: None,
            plan: None,
            metadata: metadata.into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn valid_rows_convert() {
        let info = row(r#"{"a":1}"#, "active").into_info().unwrap();
        assert_eq!(info.metadata["a"], 1);
        assert_eq!(info.status, TenantStatus::Active);
    }

    #[test]
    fn unreadable_rows_are_storage_errors_naming_what() {
        let cases = [
            (row("[1]", "active"), "column metadata"),
            (row("{}", "deleted"), "column status"),
        ];
        let config = parse_config_value(TenantId::from(Uuid::nil()), "theme", "{oops");
        for (err, what) in cases
            .into_iter()
            .map(|(row, what)| (row.into_info().unwrap_err(), what))
            .chain([(config.unwrap_err(), "config key \"theme\"")])
        {
            let message = err.to_string();
            assert!(matches!(err, TenantError::Storage { .. }), "{message}");
            assert!(message.contains(what), "{message}");
            assert!(message.contains(&Uuid::nil().to_string()), "{message}");
        }
    }
}
