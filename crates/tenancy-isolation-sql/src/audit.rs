//! [`RlsAudit`]: the boot-time check that row-level security really protects every tenant table.

use sqlx::{AssertSqlSafe, PgPool};
use tenancy_core::TenantError;

use crate::config::IsolationConfig;
use crate::finding::AuditFinding;
use crate::ident::{quote_ident, validate_identifier, validate_setting_name};

/// What the audit checked and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// The audited application role.
    pub role: String,
    /// The tables with the tenant column (`schema.table`).
    pub tables: Vec<String>,
    /// Everything wrong; empty when clean.
    pub findings: Vec<AuditFinding>,
}

impl AuditReport {
    /// Whether nothing was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// `Ok` when clean, else a [`TenantError::Configuration`] listing every finding: for a service
    /// that refuses to start with broken isolation.
    ///
    /// # Errors
    /// As described.
    pub fn into_result(self) -> Result<Self, TenantError> {
        if self.is_clean() {
            return Ok(self);
        }
        let list: Vec<String> = self.findings.iter().map(ToString::to_string).collect();
        Err(TenantError::Configuration(format!(
            "row level security audit failed: {}",
            list.join("; ")
        )))
    }
}

/// The schemas a catalog query of the audit covers: `$3` (a text array) or every non-system one.
const AUDITED_SCHEMAS: &str = "CASE WHEN $3::text[] IS NULL \
    THEN n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
    ELSE n.nspname = ANY($3) END";

/// A permissive policy as `pg_policies` shows it: table, name, USING, WITH CHECK, command.
type PolicyRow = (String, String, Option<String>, Option<String>, String);

/// The row-level-security audit.
///
/// ```no_run
/// # async fn example(app_pool: sqlx::PgPool) -> Result<(), tenancy_core::TenantError> {
/// // Connected as the application role: audits every table holding `tenant_id`.
/// let report = tenancy_isolation_sql::RlsAudit::new().run(&app_pool).await?.into_result()?;
/// println!("{} tenant tables protected", report.tables.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RlsAudit {
    tenant_column: String,
    setting: String,
    role: Option<String>,
    schemas: Option<Vec<String>>,
}

impl Default for RlsAudit {
    fn default() -> Self {
        Self::new()
    }
}

impl RlsAudit {
    /// Audits the column `tenant_id`, the setting `app.tenant_id`, the connected role, every
    /// non-system schema.
    #[must_use]
    pub fn new() -> Self {
        Self {
            tenant_column: "tenant_id".into(),
            setting: "app.tenant_id".into(),
            role: None,
            schemas: None,
        }
    }

    /// The audit `config` describes (its tenant column and setting).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the config is invalid.
    pub fn from_config(config: &IsolationConfig) -> Result<Self, TenantError> {
        config.validate()?;
        Ok(Self {
            tenant_column: config.tenant_column.clone(),
            setting: config.tenant_setting.clone(),
            ..Self::new()
        })
    }

    /// Audits `role` instead of the connected role.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] for an invalid role name.
    pub fn role(mut self, role: &str) -> Result<Self, TenantError> {
        validate_identifier("role", role)?;
        self.role = Some(role.to_owned());
        Ok(self)
    }

    /// Audits only these schemas.
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] for an invalid schema name, or for no schema at all (an
    /// audit of nothing would report clean).
    pub fn schemas(mut self, schemas: &[&str]) -> Result<Self, TenantError> {
        if schemas.is_empty() {
            return Err(TenantError::invalid(
                "schemas",
                "is empty: an audit of no schema finds nothing; list the schemas that hold \
                 tenant tables (such as public), or leave them unset to audit every schema",
            ));
        }
        for schema in schemas {
            validate_identifier("schema", schema)?;
        }
        self.schemas = Some(schemas.iter().map(|s| (*s).to_owned()).collect());
        Ok(self)
    }

    /// The tenant column (default `tenant_id`).
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] for an invalid name.
    pub fn tenant_column(mut self, column: &str) -> Result<Self, TenantError> {
        validate_identifier("tenant_column", column)?;
        column.clone_into(&mut self.tenant_column);
        Ok(self)
    }

    /// The tenant setting (default `app.tenant_id`).
    ///
    /// # Errors
    /// [`TenantError::InvalidInput`] for an invalid name.
    pub fn setting(mut self, setting: &str) -> Result<Self, TenantError> {
        validate_setting_name(setting)?;
        setting.clone_into(&mut self.setting);
        Ok(self)
    }

    /// Runs the audit on `pool`.
    ///
    /// # Errors
    /// [`TenantError::Storage`] when a catalog query fails; [`TenantError::Configuration`] when
    /// the role does not exist.
    pub async fn run(&self, pool: &PgPool) -> Result<AuditReport, TenantError> {
        let err = |e| TenantError::storage("auditing row level security", e);
        let role_row: Option<(String, bool, bool)> = sqlx::query_as(
            "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles \
             WHERE rolname = coalesce($1, current_user)",
        )
        .bind(self.role.as_deref())
        .fetch_optional(pool)
        .await
        .map_err(err)?;
        let Some((role, superuser, bypass)) = role_row else {
            return Err(TenantError::Configuration(format!(
                "the audited role {:?} does not exist",
                self.role
            )));
        };
        let mut findings = Vec::new();
        if superuser {
            findings.push(AuditFinding::RoleIsSuperuser { role: role.clone() });
        }
        if bypass {
            findings.push(AuditFinding::RoleBypassesRls { role: role.clone() });
        }
        let tables: Vec<(String, bool, bool, bool)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relrowsecurity, \
                    c.relforcerowsecurity, pg_has_role($2::name, c.relowner, 'MEMBER') \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 \
                  AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p') AND {AUDITED_SCHEMAS} \
             ORDER BY 1",
        )))
        .bind(&self.tenant_column)
        .bind(&role)
        .bind(self.schemas.as_deref())
        .fetch_all(pool)
        .await
        .map_err(err)?;
        let policies: Vec<PolicyRow> = sqlx::query_as(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename), \
                        policyname::text, qual, with_check, cmd::text \
                 FROM pg_policies WHERE permissive = 'PERMISSIVE' ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .map_err(err)?;
        for (table, enabled, forced, owned) in &tables {
            if !enabled {
                findings.push(AuditFinding::RlsDisabled {
                    table: table.clone(),
                });
            }
            if !forced {
                findings.push(AuditFinding::RlsNotForced {
                    table: table.clone(),
                });
            }
            if *owned {
                findings.push(AuditFinding::RoleOwnsTable {
                    role: role.clone(),
                    table: table.clone(),
                });
            }
            let mine: Vec<_> = policies.iter().filter(|p| &p.0 == table).collect();
            if mine.is_empty() {
                findings.push(AuditFinding::NoPolicy {
                    table: table.clone(),
                });
                continue;
            }
            // WITH CHECK guards the rows a write leaves; PostgreSQL allows it only on policies
            // for writes (ALL, INSERT, UPDATE): tables read through SELECT policies alone need
            // none.
            let writes = |cmd: &str| matches!(cmd, "ALL" | "INSERT" | "UPDATE");
            if mine.iter().any(|p| writes(&p.4))
                && mine.iter().filter(|p| writes(&p.4)).all(|p| p.3.is_none())
            {
                findings.push(AuditFinding::NoWithCheck {
                    table: table.clone(),
                });
            }
            for (_, policy, qual, check, _) in mine {
                for expression in [qual, check].into_iter().flatten() {
                    if !self.is_closed_expression(expression) {
                        findings.push(AuditFinding::FailOpenPolicy {
                            table: table.clone(),
                            policy: policy.clone(),
                            expression: expression.clone(),
                        });
                    }
                }
            }
        }
        // Views run with their owner's rights (unless security_invoker): an owner that bypasses
        // row level security shows every tenant's rows; a materialized view has none at all.
        let views: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_roles o ON o.oid = c.relowner \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 \
                  AND NOT a.attisdropped \
             WHERE (c.relkind = 'm' \
                    OR (c.relkind = 'v' AND (o.rolsuper OR o.rolbypassrls) \
                        AND NOT coalesce((SELECT option_value::boolean \
                                          FROM pg_options_to_table(c.reloptions) \
                                          WHERE option_name = 'security_invoker'), false))) \
               AND has_table_privilege($2::name, c.oid, 'SELECT') AND {AUDITED_SCHEMAS} \
             ORDER BY 1"
        )))
        .bind(&self.tenant_column)
        .bind(&role)
        .bind(self.schemas.as_deref())
        .fetch_all(pool)
        .await
        .map_err(err)?;
        findings.extend(
            views
                .into_iter()
                .map(|view| AuditFinding::ViewBypassesRls { view }),
        );
        Ok(AuditReport {
            role,
            tables: tables.into_iter().map(|t| t.0).collect(),
            findings,
        })
    }

    /// Whether a policy expression (as `pg_policies` prints it) fails closed: it is the tenant
    /// comparison `<column> = NULLIF(current_setting('<setting>', true), '')::uuid` (either side
    /// first), alone or as one operand of a top-level `AND`. Anything else (an `OR`, `NOT`,
    /// `IS NOT FALSE`, `<>`, a `COALESCE` around the setting) could let rows through without it.
    fn is_closed_expression(&self, expression: &str) -> bool {
        let setting = format!(
            "(NULLIF(current_setting('{}'::text, true), ''::text))::uuid",
            self.setting
        );
        let quoted = quote_ident(&self.tenant_column);
        let is_column = |s: &str| s == self.tenant_column || s == quoted;
        top_level_conjuncts(expression).into_iter().any(|part| {
            part.split_once(" = ").is_some_and(|(left, right)| {
                (is_column(left) && right == setting) || (left == setting && is_column(right))
            })
        })
    }
}

/// The operands of a top-level `AND` of a deparsed expression (the expression itself when it is
/// no `AND`), each without the parentheses that wrap it whole.
fn top_level_conjuncts(expression: &str) -> Vec<&str> {
    let expression = unwrap_parens(expression);
    let mut parts = Vec::new();
    let mut start = 0;
    scan(expression, |i, depth| {
        if depth == 0 && expression[i..].starts_with(" AND ") {
            parts.push(unwrap_parens(&expression[start..i]));
            start = i + " AND ".len();
        }
        true
    });
    parts.push(unwrap_parens(&expression[start..]));
    parts
}

/// `s` without the parentheses that wrap all of it.
fn unwrap_parens(mut s: &str) -> &str {
    loop {
        s = s.trim();
        let Some(inner) = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
            return s;
        };
        // `(a) AND (b)` starts and ends with parentheses that are not one pair.
        let mut balanced = true;
        let end = scan(inner, |_, depth| {
            balanced = depth >= 0;
            balanced
        });
        if !balanced || end != 0 {
            return s;
        }
        s = inner;
    }
}

/// Calls `visit(byte offset, parenthesis depth)` for every byte of `s` outside string literals
/// and quoted identifiers, until it returns false; returns the final depth.
fn scan(s: &str, mut visit: impl FnMut(usize, i32) -> bool) -> i32 {
    let (mut depth, mut quote) = (0, None);
    for (i, b) in s.bytes().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (None, b'\'' | b'"') => quote = Some(b),
            (None, b'(') => depth += 1,
            (None, b')') => depth -= 1,
            _ => {}
        }
        if quote.is_none() && !visit(i, depth) {
            break;
        }
    }
    depth
}

/// Runs [`RlsAudit`] as `config` describes it, on `pool` (connected as the application role).
///
/// # Errors
/// As [`RlsAudit::run`].
pub async fn audit_row_level_security(
    pool: &PgPool,
    config: &IsolationConfig,
) -> Result<AuditReport, TenantError> {
    RlsAudit::from_config(config)?.run(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_schema_list_is_refused() {
        let err = RlsAudit::new().schemas(&[]).unwrap_err().to_string();
        assert!(err.contains("audit of no schema"), "{err}");
        assert!(RlsAudit::new().schemas(&["public"]).is_ok());
    }

    #[test]
    fn expressions_are_classified() {
        let audit = RlsAudit::new();
        let safe =
            "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)";
        assert!(audit.is_closed_expression(safe));
        assert!(!audit.is_closed_expression("true"));
        assert!(!audit.is_closed_expression(&format!("({safe} OR true)")));
        assert!(
            !audit.is_closed_expression(
                "(tenant_id = (current_setting('app.tenant_id'::text))::uuid)"
            )
        );
        assert!(!audit.is_closed_expression(
            "(tenant_id = (current_setting('app.tenant_id'::text, true))::uuid)"
        ));
        assert!(!audit.is_closed_expression(
            "(tenant_id = (NULLIF(current_setting('app.other'::text, true), ''::text))::uuid)"
        ));
        let setting = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid";
        assert!(audit.is_closed_expression(&format!("({setting} = tenant_id)")));
        assert!(audit.is_closed_expression(&format!("({safe} AND (NOT deleted))")));
        assert!(audit.is_closed_expression(&format!("((note = 'a) AND (b'::text) AND {safe})")));
        assert!(!audit.is_closed_expression(&format!("({safe} IS NOT FALSE)")));
        assert!(!audit.is_closed_expression(&format!("(tenant_id <> {setting})")));
        assert!(!audit.is_closed_expression(&format!("(NOT {safe})")));
        assert!(!audit.is_closed_expression(&format!("(({safe}) OR true)")));
        assert!(!audit.is_closed_expression(&format!("((note = '{safe} AND x'::text) AND true)")));
        assert!(
            !audit.is_closed_expression(&format!("(tenant_id = COALESCE({setting}, tenant_id))"))
        );
    }
}
