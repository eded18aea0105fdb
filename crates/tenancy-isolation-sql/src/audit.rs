//! [`RlsAudit`]: the boot-time check that row-level security really protects every tenant table.

use std::fmt;

use sqlx::PgPool;
use tenancy_core::TenantError;

use crate::config::IsolationConfig;
use crate::ident::{validate_identifier, validate_setting_name};

/// One thing the audit found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditFinding {
    /// The table has the tenant column but row-level security is not enabled.
    RlsDisabled {
        /// `schema.table`.
        table: String,
    },
    /// Row-level security is enabled but not forced, so the table owner bypasses it.
    RlsNotForced {
        /// `schema.table`.
        table: String,
    },
    /// No permissive policy: with RLS on, every row is hidden (or, RLS off, none is).
    NoPolicy {
        /// `schema.table`.
        table: String,
    },
    /// No permissive policy has a WITH CHECK clause.
    NoWithCheck {
        /// `schema.table`.
        table: String,
    },
    /// A permissive policy can let rows through without the tenant setting (`USING (true)`,
    /// `OR true`, a bare `current_setting(..)` without `nullif(.., '')` and `missing_ok = true`, or
    /// no comparison of the tenant column with the setting).
    FailOpenPolicy {
        /// `schema.table`.
        table: String,
        /// The policy name.
        policy: String,
        /// The offending expression as PostgreSQL prints it.
        expression: String,
    },
    /// The application role is a superuser: it bypasses every policy.
    RoleIsSuperuser {
        /// The role.
        role: String,
    },
    /// The application role has BYPASSRLS.
    RoleBypassesRls {
        /// The role.
        role: String,
    },
    /// The application role owns (or is a member of the owner of) a tenant table.
    RoleOwnsTable {
        /// The role.
        role: String,
        /// `schema.table`.
        table: String,
    },
}

impl fmt::Display for AuditFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RlsDisabled { table } => write!(f, "{table}: row level security is not enabled"),
            Self::RlsNotForced { table } => write!(
                f,
                "{table}: row level security is not forced (the owner bypasses it)"
            ),
            Self::NoPolicy { table } => write!(f, "{table}: no permissive policy"),
            Self::NoWithCheck { table } => write!(f, "{table}: no policy has WITH CHECK"),
            Self::FailOpenPolicy {
                table,
                policy,
                expression,
            } => {
                write!(f, "{table}: policy {policy} can fail open: {expression}")
            }
            Self::RoleIsSuperuser { role } => write!(f, "role {role} is a superuser"),
            Self::RoleBypassesRls { role } => write!(f, "role {role} has BYPASSRLS"),
            Self::RoleOwnsTable { role, table } => write!(f, "role {role} owns {table}"),
        }
    }
}

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
    /// [`TenantError::InvalidInput`] for an invalid schema name.
    pub fn schemas(mut self, schemas: &[&str]) -> Result<Self, TenantError> {
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
        let tables: Vec<(String, bool, bool, bool)> = sqlx::query_as(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relrowsecurity, \
                    c.relforcerowsecurity, pg_has_role($2::name, c.relowner, 'MEMBER') \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 \
                  AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p') \
               AND CASE WHEN $3::text[] IS NULL \
                        THEN n.nspname NOT IN ('pg_catalog', 'information_schema') \
                             AND n.nspname NOT LIKE 'pg\\_toast%' \
                        ELSE n.nspname = ANY($3) END \
             ORDER BY 1",
        )
        .bind(&self.tenant_column)
        .bind(&role)
        .bind(self.schemas.as_deref())
        .fetch_all(pool)
        .await
        .map_err(err)?;
        let policies: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename), policyname::text, \
                    qual, with_check \
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
            if mine.iter().all(|p| p.3.is_none()) {
                findings.push(AuditFinding::NoWithCheck {
                    table: table.clone(),
                });
            }
            for (_, policy, qual, check) in mine {
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
        Ok(AuditReport {
            role,
            tables: tables.into_iter().map(|t| t.0).collect(),
            findings,
        })
    }

    /// Whether a policy expression (as `pg_policies` prints it) fails closed: it compares the
    /// tenant column with the setting, every `current_setting` call is wrapped in `NULLIF(.., '')`
    /// with `missing_ok = true`, and no `OR` can bypass it.
    fn is_closed_expression(&self, expression: &str) -> bool {
        let lower = expression.to_ascii_lowercase();
        if lower.contains(" or ") || !lower.contains(&self.tenant_column) {
            return false;
        }
        let setting = format!("current_setting('{}'::text, true)", self.setting);
        let calls = lower.matches("current_setting(").count();
        calls > 0
            && lower
                .matches(&format!("nullif({setting}, ''::text)"))
                .count()
                == calls
    }
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
    }
}
