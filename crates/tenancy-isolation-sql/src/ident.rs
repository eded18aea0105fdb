//! Identifier rules: validation and quoting of the names that reach SQL text.
//!
//! Architecture invariant: a name is spliced into SQL text only after [`validate_identifier`] (or
//! [`tenant_schema`], which derives it from a [`TenantId`]) and only through [`quote_ident`].

use tenancy_core::{TenantError, TenantId};

/// PostgreSQL's identifier limit in bytes (`NAMEDATALEN - 1`); longer names are silently truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The prefix of every tenant schema name: `tenant_<32 hex>`.
pub const TENANT_SCHEMA_PREFIX: &str = "tenant_";

/// The prefix of an archived tenant schema: `archived_<32 hex>_<unix seconds>`.
pub const ARCHIVED_SCHEMA_PREFIX: &str = "archived_";

/// Checks that `name` is a safe identifier: 1 to 63 bytes of lowercase ASCII letters, digits and `_`,
/// starting with a letter or `_`, and not starting with the reserved `pg_` prefix.
///
/// Lowercase-only keeps one spelling per name (PostgreSQL folds unquoted names to lowercase).
///
/// # Errors
/// [`TenantError::InvalidInput`] naming `field` and the rule broken.
///
/// ```
/// use tenancy_isolation_sql::validate_identifier;
///
/// assert!(validate_identifier("table", "orders").is_ok());
/// assert!(validate_identifier("table", "Orders").is_err());
/// assert!(validate_identifier("table", "pg_orders").is_err());
/// assert!(validate_identifier("table", "x\"; DROP TABLE t; --").is_err());
/// ```
pub fn validate_identifier(field: &'static str, name: &str) -> Result<(), TenantError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES {
        return Err(TenantError::invalid(
            field,
            format!("{name:?} must be 1 to {MAX_IDENTIFIER_BYTES} bytes long"),
        ));
    }
    let bytes = name.as_bytes();
    if !(bytes[0].is_ascii_lowercase() || bytes[0] == b'_') {
        return Err(TenantError::invalid(
            field,
            format!("{name:?} must start with a lowercase ASCII letter or '_'"),
        ));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err(TenantError::invalid(
            field,
            format!("{name:?} may hold only lowercase ASCII letters, digits and '_'"),
        ));
    }
    if name.starts_with("pg_") {
        return Err(TenantError::invalid(
            field,
            format!("{name:?} starts with the reserved prefix 'pg_'"),
        ));
    }
    Ok(())
}

/// Checks a custom setting name such as `app.tenant_id`: two or more valid identifiers joined by `.`.
///
/// # Errors
/// [`TenantError::InvalidInput`] (field `tenant_setting`).
pub fn validate_setting_name(name: &str) -> Result<(), TenantError> {
    let mut parts = 0;
    for part in name.split('.') {
        validate_identifier("tenant_setting", part)?;
        parts += 1;
    }
    if parts < 2 {
        return Err(TenantError::invalid(
            "tenant_setting",
            format!("{name:?} must be a custom setting with a prefix, such as 'app.tenant_id'"),
        ));
    }
    Ok(())
}

/// Quotes an identifier for SQL text: wraps it in `"` and doubles any `"` inside.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A validated, possibly schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    /// Parses `table` or `schema.table`, validating each part.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] (field `table`).
    pub fn parse(name: &str) -> Result<Self, TenantError> {
        match name.split_once('.') {
            Some((schema, table)) => {
                validate_identifier("table", schema)?;
                validate_identifier("table", table)?;
                Ok(Self {
                    schema: Some(schema.to_owned()),
                    table: table.to_owned(),
                })
            }
            None => {
                validate_identifier("table", name)?;
                Ok(Self {
                    schema: None,
                    table: name.to_owned(),
                })
            }
        }
    }

    /// The table's bare name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The quoted (and qualified, when a schema was given) name for SQL text.
    #[must_use]
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&self.table)),
            None => quote_ident(&self.table),
        }
    }
}

/// The schema name of a tenant: `tenant_<32 hex>` (39 bytes), derived from the id alone.
///
/// ```
/// use tenancy_isolation_sql::tenant_schema;
///
/// let id = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293".parse()?;
/// assert_eq!(tenant_schema(id), "tenant_0190d5a07c1e7a2b9c3d4e5f60718293");
/// # Ok::<(), tenancy_core::IdError>(())
/// ```
#[must_use]
pub fn tenant_schema(tenant: TenantId) -> String {
    format!("{TENANT_SCHEMA_PREFIX}{}", tenant.simple())
}

/// The name a tenant schema is renamed to when archived at `unix_seconds`.
#[must_use]
pub fn archived_schema(tenant: TenantId, unix_seconds: u64) -> String {
    format!("{ARCHIVED_SCHEMA_PREFIX}{}_{unix_seconds}", tenant.simple())
}

/// The tenant a schema name belongs to, when it is a tenant schema (`tenant_<32 hex>`).
#[must_use]
pub fn tenant_of_schema(schema: &str) -> Option<TenantId> {
    let hex = schema.strip_prefix(TENANT_SCHEMA_PREFIX)?;
    if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_reject_what_could_collide_or_inject() {
        for bad in [
            "",
            "Orders",
            "ORDERS",
            "pg_orders",
            "1abc",
            "a-b",
            "a\"b",
            "a'b",
            "a b",
            "é",
            &"a".repeat(64),
            // A multibyte character crossing byte 63.
            &format!("{}é", "a".repeat(62)),
        ] {
            assert!(validate_identifier("t", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_identifier("t", &"a".repeat(63)).is_ok());
        assert!(validate_identifier("t", "_x1").is_ok());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("orders"), "\"orders\"");
    }

    #[test]
    fn settings_need_a_prefix() {
        assert!(validate_setting_name("app.tenant_id").is_ok());
        assert!(validate_setting_name("tenant_id").is_err());
        assert!(validate_setting_name("app.Tenant").is_err());
        assert!(validate_setting_name("app.x'; select 1").is_err());
    }

    #[test]
    fn schema_names_round_trip_and_fit() {
        let id = TenantId::new();
        let schema = tenant_schema(id);
        assert_eq!(schema.len(), 39);
        assert!(validate_identifier("schema", &schema).is_ok());
        assert_eq!(tenant_of_schema(&schema), Some(id));
        assert_eq!(tenant_of_schema("tenant_XYZ"), None);
        assert_eq!(tenant_of_schema(&schema.to_uppercase()), None);
        let archived = archived_schema(id, 1_800_000_000);
        assert!(archived.len() <= MAX_IDENTIFIER_BYTES);
        assert!(validate_identifier("schema", &archived).is_ok());
    }

    #[test]
    fn table_names_parse() {
        assert_eq!(TableName::parse("s.t").unwrap().quoted(), "\"s\".\"t\"");
        assert!(TableName::parse("s.t.u").is_err());
        assert!(TableName::parse("T").is_err());
    }
}
