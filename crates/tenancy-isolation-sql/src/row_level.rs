//! Row-level isolation: [`RowLevelStrategy`] and the SQL that protects a table
//! ([`protect_table_sql`]).

use std::borrow::Cow;

use async_trait::async_trait;
use tenancy_core::{IsolationPlan, IsolationStep, IsolationStrategy, TenantError, TenantId};

use crate::ident::{TableName, quote_ident, validate_identifier, validate_setting_name};

/// The default setting that carries the tenant id.
pub const DEFAULT_TENANT_SETTING: &str = "app.tenant_id";

/// Row-level isolation (`row_level`): every tenant shares the tables; PostgreSQL row-level security
/// policies compare each row's tenant column with the transaction-local `app.tenant_id`.
///
/// Provisioning and deprovisioning do nothing (the policies are per table, see
/// [`protect_table_sql`]); the plan sets the tenant setting for the transaction.
///
/// ```
/// use tenancy_core::{IsolationStep, IsolationStrategy, TenantId};
/// use tenancy_isolation_sql::RowLevelStrategy;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let id = TenantId::new();
/// let plan = RowLevelStrategy::default().plan(id).await.unwrap();
/// assert_eq!(plan.steps, [IsolationStep::SetLocal { name: "app.tenant_id".into(), value: id.to_string() }]);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct RowLevelStrategy {
    setting: Cow<'static, str>,
}

impl Default for RowLevelStrategy {
    fn default() -> Self {
        Self {
            setting: Cow::Borrowed(DEFAULT_TENANT_SETTING),
        }
    }
}

impl RowLevelStrategy {
    /// A strategy that carries the tenant id in `setting` (such as `app.tenant_id`).
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] when `setting` is not `prefix.name` of valid identifiers.
    pub fn with_setting(setting: &str) -> Result<Self, TenantError> {
        validate_setting_name(setting)?;
        Ok(Self {
            setting: Cow::Owned(setting.to_owned()),
        })
    }

    /// The setting name.
    #[must_use]
    pub fn setting(&self) -> &str {
        &self.setting
    }
}

#[async_trait]
impl IsolationStrategy for RowLevelStrategy {
    fn name(&self) -> &str {
        "row_level"
    }

    async fn provision(&self, _tenant: TenantId) -> Result<(), TenantError> {
        Ok(())
    }

    async fn deprovision(&self, _tenant: TenantId) -> Result<(), TenantError> {
        Ok(())
    }

    async fn plan(&self, tenant: TenantId) -> Result<IsolationPlan, TenantError> {
        Ok(IsolationPlan::new(vec![IsolationStep::SetLocal {
            name: self.setting.clone(),
            value: tenant.to_string(),
        }]))
    }
}

/// The statements that put `table` under row-level security: ENABLE and FORCE row level security
/// and one policy (`tenant_isolation`) whose USING and WITH CHECK compare `column` with
/// `nullif(current_setting(setting, true), '')::uuid`, so that no tenant means no rows.
///
/// Run them as the table owner. `table` may be schema-qualified.
///
/// # Errors
/// [`TenantError::InvalidInput`] when a name is not a valid identifier.
///
/// ```
/// let sql = tenancy_isolation_sql::protect_table_sql("orders", "tenant_id", "app.tenant_id").unwrap();
/// assert_eq!(sql[0], r#"ALTER TABLE "orders" ENABLE ROW LEVEL SECURITY"#);
/// assert!(sql[3].contains("nullif(current_setting('app.tenant_id', true), '')::uuid"));
/// ```
pub fn protect_table_sql(
    table: &str,
    column: &str,
    setting: &str,
) -> Result<[String; 4], TenantError> {
    let table = TableName::parse(table)?.quoted();
    validate_identifier("column", column)?;
    validate_setting_name(setting)?;
    let column = quote_ident(column);
    // The setting name is validated ([a-z0-9_.]), so it cannot hold a quote.
    let predicate = format!("{column} = nullif(current_setting('{setting}', true), '')::uuid");
    Ok([
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY IF EXISTS tenant_isolation ON {table}"),
        format!(
            "CREATE POLICY tenant_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})"
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_sql_rejects_hostile_names() {
        assert!(protect_table_sql("orders; drop table x", "tenant_id", "app.tenant_id").is_err());
        assert!(protect_table_sql("orders", "tenant\"id", "app.tenant_id").is_err());
        assert!(protect_table_sql("orders", "tenant_id", "app.x', false) or true --").is_err());
        let sql = protect_table_sql("shop.orders", "tenant_id", "app.tenant_id").unwrap();
        assert_eq!(
            sql[1],
            r#"ALTER TABLE "shop"."orders" FORCE ROW LEVEL SECURITY"#
        );
        assert!(sql[3].contains("WITH CHECK (\"tenant_id\" = nullif("));
    }

    #[test]
    fn setting_is_validated() {
        assert!(RowLevelStrategy::with_setting("app.tenant").is_ok());
        assert!(RowLevelStrategy::with_setting("tenant").is_err());
    }
}
