//! [`AuditFinding`]: what the row-level-security audits report, one value per problem: the live
//! `RlsAudit` (feature `sql`) and the static `MigrationAudit` (feature `migration-audit`).

use std::fmt;

/// One thing the audit found wrong.
///
/// The live audit names tables `schema.table`, as the catalog knows them; the static audit of
/// migration files names them as the files write them (`notes`, `app.notes`), and reports only the
/// table and policy findings (roles and views are not in migration files).
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
    /// A permissive policy can let rows through without the tenant setting: its expression is
    /// not `<column> = nullif(current_setting('<setting>', true), '')::uuid`, alone or as one
    /// operand of a top-level `AND` (`USING (true)`, `OR true`, `IS NOT FALSE`, `<>`, a bare
    /// `current_setting(..)` without `nullif(.., '')` and `missing_ok = true`, ...).
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
    /// The application role can read a view or materialized view with the tenant column that
    /// does not apply its row level security: a materialized view (which has none), or a view
    /// without `security_invoker` owned by a superuser or BYPASSRLS role.
    ViewBypassesRls {
        /// `schema.view`.
        view: String,
    },
}

impl AuditFinding {
    /// A stable snake-case name of the finding's kind (`rls_disabled`, `fail_open_policy`, ...),
    /// for JSON output and scripts.
    ///
    /// ```
    /// use tenancy_isolation_sql::AuditFinding;
    ///
    /// let finding = AuditFinding::NoWithCheck { table: "public.notes".into() };
    /// assert_eq!(finding.kind(), "no_with_check");
    /// assert_eq!(finding.table(), Some("public.notes"));
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RlsDisabled { .. } => "rls_disabled",
            Self::RlsNotForced { .. } => "rls_not_forced",
            Self::NoPolicy { .. } => "no_policy",
            Self::NoWithCheck { .. } => "no_with_check",
            Self::FailOpenPolicy { .. } => "fail_open_policy",
            Self::RoleIsSuperuser { .. } => "role_is_superuser",
            Self::RoleBypassesRls { .. } => "role_bypasses_rls",
            Self::RoleOwnsTable { .. } => "role_owns_table",
            Self::ViewBypassesRls { .. } => "view_bypasses_rls",
        }
    }

    /// The table (or view) the finding is about; `None` for the role findings that name none.
    #[must_use]
    pub fn table(&self) -> Option<&str> {
        match self {
            Self::RlsDisabled { table }
            | Self::RlsNotForced { table }
            | Self::NoPolicy { table }
            | Self::NoWithCheck { table }
            | Self::FailOpenPolicy { table, .. }
            | Self::RoleOwnsTable { table, .. } => Some(table),
            Self::ViewBypassesRls { view } => Some(view),
            Self::RoleIsSuperuser { .. } | Self::RoleBypassesRls { .. } => None,
        }
    }
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
            Self::ViewBypassesRls { view } => write!(
                f,
                "{view}: the application role reads tenant rows through it without row level security"
            ),
        }
    }
}
