//! [`MigrationAudit`]: the row-level-security audit of migration files, before they run.
//!
//! The files are parsed by PostgreSQL's own parser (`pg_query`, libpg_query), then replayed in
//! the order sqlx applies them, statement by statement, on a model of the tables they create:
//! which tables hold the tenant column, whether row-level security is enabled and forced on them,
//! and which policies they have. The rules applied to the model at the end are the live
//! [`RlsAudit`](crate::RlsAudit)'s, so both report the same [`AuditFinding`]s for the same tables.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use pg_query::protobuf::{
    self, AConst, AExprKind, AlterTableType, BoolExprType, ObjectType, RangeVar, Token, a_const,
};
use pg_query::{Node, NodeEnum, ParserOptions};
use tenancy_core::TenantError;

use crate::config::IsolationConfig;
use crate::finding::AuditFinding;
use crate::ident::{validate_identifier, validate_setting_name};

/// One migration file: where it is (for reports), its version, its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The file's path, as reports show it.
    pub path: PathBuf,
    /// The version sqlx reads from the name (`<version>_<name>.sql`).
    pub version: i64,
    /// The file's SQL.
    pub sql: String,
}

impl MigrationFile {
    /// A migration file.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, version: i64, sql: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            version,
            sql: sql.into(),
        }
    }

    /// The migrations of `dir` as sqlx reads them: every file named `<version>_<name>.sql` or
    /// `<version>_<name>.up.sql` (other files, `.down.sql` ones and directories are skipped), in
    /// version order; the version is an integer (`0001`, `20240101120000`).
    ///
    /// # Errors
    /// [`MigrationAuditError::ReadDir`] / [`ReadFile`](MigrationAuditError::ReadFile) when the
    /// directory or a file cannot be read, [`Version`](MigrationAuditError::Version) for a name
    /// without an integer version, [`DuplicateVersion`](MigrationAuditError::DuplicateVersion)
    /// for two files of one version, [`NoMigrations`](MigrationAuditError::NoMigrations) when no
    /// file is a migration.
    pub fn read_dir(dir: impl AsRef<Path>) -> Result<Vec<Self>, MigrationAuditError> {
        let dir = dir.as_ref();
        let read_dir = |source| MigrationAuditError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            let metadata =
                std::fs::metadata(&path).map_err(|source| MigrationAuditError::ReadFile {
                    file: path.clone(),
                    source,
                })?;
            if !metadata.is_file() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // sqlx's rule: `<version>_<rest>` where the rest ends in `.sql`; a down migration is
            // not applied going forward.
            let Some((version, rest)) = name.split_once('_') else {
                continue;
            };
            if !rest.ends_with(".sql") || rest.ends_with(".down.sql") {
                continue;
            }
            let Ok(version) = version.parse::<i64>() else {
                return Err(MigrationAuditError::Version { file: path });
            };
            let sql =
                std::fs::read_to_string(&path).map_err(|source| MigrationAuditError::ReadFile {
                    file: path.clone(),
                    source,
                })?;
            files.push(Self::new(path, version, sql));
        }
        files.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.path.cmp(&b.path)));
        if let Some(pair) = files.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(MigrationAuditError::DuplicateVersion {
                version: pair[0].version,
                first: pair[0].path.clone(),
                second: pair[1].path.clone(),
            });
        }
        if files.is_empty() {
            return Err(MigrationAuditError::NoMigrations {
                dir: dir.to_path_buf(),
            });
        }
        Ok(files)
    }
}

/// Why migration files could not be audited (their findings are not errors: they are in the
/// [`MigrationAuditReport`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationAuditError {
    /// The directory cannot be read.
    #[error("cannot read the migrations directory {}: {source}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file cannot be read (or is not UTF-8).
    #[error("cannot read the migration file {}: {source}", file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file named like a migration has no integer version before its first `_`.
    #[error(
        "{}: a migration file is named <version>_<name>.sql, with an integer version",
        file.display()
    )]
    Version {
        /// The file.
        file: PathBuf,
    },
    /// Two files have the same version.
    #[error("{} and {} both have version {version}", first.display(), second.display())]
    DuplicateVersion {
        /// The version.
        version: i64,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The directory holds no migration file.
    #[error(
        "{}: no migration files (<version>_<name>.sql or <version>_<name>.up.sql)",
        dir.display()
    )]
    NoMigrations {
        /// The directory.
        dir: PathBuf,
    },
    /// PostgreSQL's parser refused a file.
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The line (from 1) of the token the parser stopped at.
        line: usize,
        /// PostgreSQL's message.
        message: String,
    },
}

/// One finding of the static audit, with the statement it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFinding {
    /// The migration file.
    pub file: PathBuf,
    /// The line (from 1) where the statement that leaves the problem begins: the `CREATE
    /// TABLE` (or the `ADD COLUMN` of the tenant column) when something is missing, the `DISABLE`
    /// / `NO FORCE` / last `DROP POLICY` that removed protection, the `CREATE POLICY` (or its
    /// last `ALTER POLICY`) for a policy's own problem.
    pub line: usize,
    /// What is wrong.
    pub finding: AuditFinding,
}

impl fmt::Display for MigrationFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.finding)
    }
}

/// What the static audit read and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationAuditReport {
    /// The files, in the order they were replayed.
    pub files: Vec<PathBuf>,
    /// The tables that hold the tenant column once every file has run, as the files name them.
    pub tables: Vec<String>,
    /// Everything wrong, ordered by file and line; empty when clean.
    pub findings: Vec<MigrationFinding>,
}

impl MigrationAuditReport {
    /// Whether nothing was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The static row-level-security audit of a set of migration files.
///
/// It checks what the live [`RlsAudit`](crate::RlsAudit) checks on the tables, before the files
/// run: every table that holds the tenant column once the whole set has run must have row-level
/// security enabled and forced and a permissive policy; its write policies must not all lack
/// WITH CHECK; and each permissive policy's USING and WITH CHECK must hold the tenant comparison
/// `<column> = nullif(current_setting('<setting>', true), '')::uuid`, alone or as an operand of a
/// top-level `AND` (so `USING (true)`, an `OR`, a `coalesce` around the setting, a
/// `current_setting(..)` without `nullif` are reported). Later files count: a policy added in a
/// later file protects the table, a later `DISABLE`, `NO FORCE` or `DROP POLICY` undoes it.
///
/// What it cannot see: SQL run by functions, `DO` blocks or dynamic `EXECUTE`, tables created
/// by `CREATE TABLE ... AS`, columns inherited from tables outside the set, and the roles and
/// views the live audit also checks.
///
/// ```
/// use tenancy_isolation_sql::{AuditFinding, MigrationAudit, MigrationFile};
///
/// let files = [
///     MigrationFile::new("0001_notes.sql", 1, "CREATE TABLE notes (id int, tenant_id uuid);"),
///     MigrationFile::new(
///         "0002_rls.sql",
///         2,
///         "ALTER TABLE notes ENABLE ROW LEVEL SECURITY;\n\
///          CREATE POLICY open ON notes USING (true) WITH CHECK (true);",
///     ),
/// ];
/// let report = MigrationAudit::new().run(&files)?;
/// assert_eq!(report.tables, ["notes"]);
/// let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
/// assert_eq!(found, [
///     "0001_notes.sql:1: notes: row level security is not forced (the owner bypasses it)",
///     "0002_rls.sql:2: notes: policy open can fail open: true",
///     "0002_rls.sql:2: notes: policy open can fail open: true",
/// ]);
/// # Ok::<(), tenancy_isolation_sql::MigrationAuditError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MigrationAudit {
    tenant_column: String,
    setting: String,
}

impl Default for MigrationAudit {
    fn default() -> Self {
        Self::new()
    }
}

impl MigrationAudit {
    /// Audits the column `tenant_id` and the setting `app.tenant_id`.
    #[must_use]
    pub fn new() -> Self {
        Self {
            tenant_column: "tenant_id".into(),
            setting: crate::row_level::DEFAULT_TENANT_SETTING.into(),
        }
    }

    /// The audit `config` describes (its `tenant_column` and `tenant_setting`).
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the config is invalid.
    pub fn from_config(config: &IsolationConfig) -> Result<Self, TenantError> {
        config.validate()?;
        Ok(Self {
            tenant_column: config.tenant_column.clone(),
            setting: config.tenant_setting.clone(),
        })
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

    /// Audits the migrations of `dir` (read by [`MigrationFile::read_dir`]).
    ///
    /// # Errors
    /// As [`MigrationFile::read_dir`] and [`run`](Self::run).
    pub fn run_dir(
        &self,
        dir: impl AsRef<Path>,
    ) -> Result<MigrationAuditReport, MigrationAuditError> {
        self.run(&MigrationFile::read_dir(dir)?)
    }

    /// Audits `files`, replayed in the order given.
    ///
    /// # Errors
    /// [`MigrationAuditError::Syntax`] for a file PostgreSQL's parser refuses, with the line it
    /// stopped at.
    pub fn run(
        &self,
        files: &[MigrationFile],
    ) -> Result<MigrationAuditReport, MigrationAuditError> {
        let mut model = Model::new(&self.tenant_column);
        for (index, file) in files.iter().enumerate() {
            let statements =
                parse_file(&file.sql).map_err(|(line, message)| MigrationAuditError::Syntax {
                    file: file.path.clone(),
                    line,
                    message,
                })?;
            for (statement, line) in statements {
                model.apply(&statement, At { file: index, line }, None);
            }
        }
        let mut found = model.findings(self);
        found.sort_by_key(|(at, _)| (at.file, at.line));
        Ok(MigrationAuditReport {
            files: files.iter().map(|f| f.path.clone()).collect(),
            tables: model
                .tables
                .iter()
                .filter(|t| t.tenant.is_some())
                .map(Table::label)
                .collect(),
            findings: found
                .into_iter()
                .map(|(at, finding)| MigrationFinding {
                    file: files[at.file].path.clone(),
                    line: at.line,
                    finding,
                })
                .collect(),
        })
    }

    /// Whether a policy expression fails closed: it is the tenant comparison (either side first),
    /// alone or as an operand of a top-level `AND` (nested `AND`s included). The live audit's
    /// rule, on the parse tree instead of the deparsed text.
    fn is_closed(&self, node: &Node) -> bool {
        match &node.node {
            Some(NodeEnum::BoolExpr(b)) if b.boolop() == BoolExprType::AndExpr => {
                b.args.iter().any(|arg| self.is_closed(arg))
            }
            Some(NodeEnum::AExpr(e)) if e.kind() == AExprKind::AexprOp && is_name(&e.name, "=") => {
                match (e.lexpr.as_deref(), e.rexpr.as_deref()) {
                    (Some(l), Some(r)) => {
                        (self.is_column(l) && self.is_setting(r))
                            || (self.is_setting(l) && self.is_column(r))
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// `tenant_id`, or qualified (`notes.tenant_id`): in a policy it can only be the table's.
    fn is_column(&self, node: &Node) -> bool {
        let Some(NodeEnum::ColumnRef(c)) = &node.node else {
            return false;
        };
        c.fields
            .last()
            .and_then(string)
            .is_some_and(|name| name == self.tenant_column)
    }

    /// `nullif(current_setting('<setting>', true), '')::uuid` (or `CAST(.. AS uuid)`).
    fn is_setting(&self, node: &Node) -> bool {
        let Some(NodeEnum::TypeCast(cast)) = &node.node else {
            return false;
        };
        if !cast.type_name.as_ref().is_some_and(|t| is_type(t, "uuid")) {
            return false;
        }
        let Some(NodeEnum::AExpr(nullif)) = cast.arg.as_deref().and_then(|n| n.node.as_ref())
        else {
            return false;
        };
        if nullif.kind() != AExprKind::AexprNullif {
            return false;
        }
        let empty = nullif
            .rexpr
            .as_deref()
            .and_then(|n| text_const(n))
            .is_some_and(str::is_empty);
        let Some(NodeEnum::FuncCall(call)) = nullif.lexpr.as_deref().and_then(|n| n.node.as_ref())
        else {
            return false;
        };
        let names: Vec<&str> = call.funcname.iter().filter_map(string).collect();
        let current_setting = matches!(
            names.as_slice(),
            ["current_setting"] | ["pg_catalog", "current_setting"]
        );
        empty
            && current_setting
            && call.args.len() == 2
            && text_const(&call.args[0]).is_some_and(|s| s == self.setting)
            && is_true(&call.args[1])
    }
}

/// Where a statement begins: the file's index and the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    file: usize,
    line: usize,
}

/// The commands a policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    All,
    Select,
    Insert,
    Update,
    Delete,
}

impl Command {
    fn parse(name: &str) -> Self {
        match name {
            "select" => Self::Select,
            "insert" => Self::Insert,
            "update" => Self::Update,
            "delete" => Self::Delete,
            _ => Self::All,
        }
    }

    /// Whether rows written under the policy pass its WITH CHECK (PostgreSQL allows one only
    /// on these).
    fn writes(self) -> bool {
        matches!(self, Self::All | Self::Insert | Self::Update)
    }
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    command: Command,
    permissive: bool,
    using: Option<Node>,
    check: Option<Node>,
    at: At,
}

#[derive(Debug, Clone)]
struct Table {
    schema: Option<String>,
    name: String,
    /// Where the tenant column appeared (its `CREATE TABLE` or `ADD COLUMN`); `None` without it.
    tenant: Option<At>,
    enabled: bool,
    /// The `DISABLE ROW LEVEL SECURITY` that left it off.
    disabled: Option<At>,
    forced: bool,
    /// The `NO FORCE ROW LEVEL SECURITY` that left it unforced.
    unforced: Option<At>,
    policies: Vec<Policy>,
    /// The last `DROP POLICY` on the table.
    dropped_policy: Option<At>,
}

impl Table {
    /// `schema.table` as PostgreSQL's `quote_ident` writes each part, or `table` when the files
    /// do not qualify it.
    fn label(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", pg_quote(schema), pg_quote(&self.name)),
            None => pg_quote(&self.name),
        }
    }
}

/// The tables the files have created so far.
#[derive(Debug)]
struct Model<'a> {
    column: &'a str,
    tables: Vec<Table>,
}

impl<'a> Model<'a> {
    fn new(column: &'a str) -> Self {
        Self {
            column,
            tables: Vec::new(),
        }
    }

    /// The table a name refers to: the same schema and name, else (one side unqualified) the
    /// only table of that name. The files' search path is unknown, so `notes` and `app.notes`
    /// are one table when nothing else is called `notes`.
    fn find(&self, schema: Option<&str>, name: &str) -> Option<usize> {
        if let Some(i) = self
            .tables
            .iter()
            .position(|t| t.schema.as_deref() == schema && t.name == name)
        {
            return Some(i);
        }
        let mut same_name = self
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.name == name && (schema.is_none() || t.schema.is_none()));
        match (same_name.next(), same_name.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    fn find_range(&self, relation: Option<&RangeVar>, schema: Option<&str>) -> Option<usize> {
        let relation = relation?;
        let (s, name) = range_name(relation, schema);
        self.find(s.as_deref(), &name)
    }

    /// Replays one statement. `schema` is the schema of an enclosing `CREATE SCHEMA`.
    fn apply(&mut self, node: &NodeEnum, at: At, schema: Option<&str>) {
        match node {
            NodeEnum::CreateSchemaStmt(s) => {
                for element in &s.schema_elts {
                    if let Some(element) = &element.node {
                        self.apply(element, at, Some(&s.schemaname));
                    }
                }
            }
            NodeEnum::CreateStmt(s) => self.create_table(s, at, schema),
            NodeEnum::AlterTableStmt(s) if s.objtype() == ObjectType::ObjectTable => {
                let Some(i) = self.find_range(s.relation.as_ref(), schema) else {
                    return;
                };
                for cmd in &s.cmds {
                    if let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node {
                        self.alter_table(i, cmd, at);
                    }
                }
            }
            NodeEnum::RenameStmt(s) => self.rename(s, at, schema),
            NodeEnum::AlterObjectSchemaStmt(s) if s.object_type() == ObjectType::ObjectTable => {
                if let Some(i) = self.find_range(s.relation.as_ref(), schema) {
                    self.tables[i].schema = Some(s.newschema.clone());
                }
            }
            NodeEnum::DropStmt(s) => self.drop(s, at),
            NodeEnum::CreatePolicyStmt(s) => {
                let Some(i) = self.find_range(s.table.as_ref(), schema) else {
                    return;
                };
                let policies = &mut self.tables[i].policies;
                policies.retain(|p| p.name != s.policy_name);
                policies.push(Policy {
                    name: s.policy_name.clone(),
                    command: Command::parse(&s.cmd_name),
                    permissive: s.permissive,
                    using: s.qual.as_deref().cloned(),
                    check: s.with_check.as_deref().cloned(),
                    at,
                });
            }
            NodeEnum::AlterPolicyStmt(s) => {
                let Some(i) = self.find_range(s.table.as_ref(), schema) else {
                    return;
                };
                let Some(policy) = self.tables[i]
                    .policies
                    .iter_mut()
                    .find(|p| p.name == s.policy_name)
                else {
                    return;
                };
                if let Some(using) = &s.qual {
                    policy.using = Some((**using).clone());
                    policy.at = at;
                }
                if let Some(check) = &s.with_check {
                    policy.check = Some((**check).clone());
                    policy.at = at;
                }
            }
            _ => {}
        }
    }

    fn create_table(&mut self, s: &protobuf::CreateStmt, at: At, schema: Option<&str>) {
        let Some(relation) = &s.relation else {
            return;
        };
        let (table_schema, name) = range_name(relation, schema);
        if let Some(i) = self.find(table_schema.as_deref(), &name) {
            if s.if_not_exists {
                return;
            }
            // PostgreSQL refuses it; the files will not run as written. Model the new one.
            self.tables.remove(i);
        }
        // Its own columns, and those of the tables it copies (`LIKE`), inherits from
        // (`INHERITS`) or is a partition of (`PARTITION OF`), when the files created them.
        let mut has_column = false;
        for element in &s.table_elts {
            match &element.node {
                Some(NodeEnum::ColumnDef(c)) => has_column |= c.colname == self.column,
                Some(NodeEnum::TableLikeClause(like)) => {
                    has_column |= self.has_tenant_column(like.relation.as_ref(), schema);
                }
                _ => {}
            }
        }
        for parent in &s.inh_relations {
            if let Some(NodeEnum::RangeVar(parent)) = &parent.node {
                has_column |= self.has_tenant_column(Some(parent), schema);
            }
        }
        self.tables.push(Table {
            schema: table_schema,
            name,
            tenant: has_column.then_some(at),
            enabled: false,
            disabled: None,
            forced: false,
            unforced: None,
            policies: Vec::new(),
            dropped_policy: None,
        });
    }

    fn has_tenant_column(&self, relation: Option<&RangeVar>, schema: Option<&str>) -> bool {
        self.find_range(relation, schema)
            .is_some_and(|i| self.tables[i].tenant.is_some())
    }

    fn alter_table(&mut self, i: usize, cmd: &protobuf::AlterTableCmd, at: At) {
        let column = self.column;
        let table = &mut self.tables[i];
        match cmd.subtype() {
            AlterTableType::AtAddColumn => {
                if let Some(NodeEnum::ColumnDef(c)) =
                    cmd.def.as_deref().and_then(|d| d.node.as_ref())
                    && c.colname == column
                    && table.tenant.is_none()
                {
                    table.tenant = Some(at);
                }
            }
            AlterTableType::AtDropColumn if cmd.name == column => table.tenant = None,
            AlterTableType::AtEnableRowSecurity => {
                table.enabled = true;
                table.disabled = None;
            }
            AlterTableType::AtDisableRowSecurity => {
                table.enabled = false;
                table.disabled = Some(at);
            }
            AlterTableType::AtForceRowSecurity => {
                table.forced = true;
                table.unforced = None;
            }
            AlterTableType::AtNoForceRowSecurity => {
                table.forced = false;
                table.unforced = Some(at);
            }
            _ => {}
        }
    }

    fn rename(&mut self, s: &protobuf::RenameStmt, at: At, schema: Option<&str>) {
        let Some(i) = self.find_range(s.relation.as_ref(), schema) else {
            return;
        };
        let column = self.column;
        let table = &mut self.tables[i];
        match s.rename_type() {
            ObjectType::ObjectTable => table.name.clone_from(&s.newname),
            ObjectType::ObjectColumn => {
                if s.subname == column {
                    table.tenant = None;
                } else if s.newname == column {
                    table.tenant = Some(at);
                }
            }
            ObjectType::ObjectPolicy => {
                if let Some(p) = table.policies.iter_mut().find(|p| p.name == s.subname) {
                    p.name.clone_from(&s.newname);
                }
            }
            _ => {}
        }
    }

    fn drop(&mut self, s: &protobuf::DropStmt, at: At) {
        for object in &s.objects {
            let Some(NodeEnum::List(list)) = &object.node else {
                continue;
            };
            let mut names: Vec<&str> = list.items.iter().filter_map(string).collect();
            match s.remove_type() {
                ObjectType::ObjectTable => {
                    let Some(name) = names.pop() else { continue };
                    if let Some(i) = self.find(names.last().copied(), name) {
                        self.tables.remove(i);
                    }
                }
                ObjectType::ObjectPolicy => {
                    let (Some(policy), Some(name)) = (names.pop(), names.pop()) else {
                        continue;
                    };
                    if let Some(i) = self.find(names.last().copied(), name) {
                        let table = &mut self.tables[i];
                        let before = table.policies.len();
                        table.policies.retain(|p| p.name != policy);
                        if table.policies.len() != before {
                            table.dropped_policy = Some(at);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The live audit's rules, on the tables as the files leave them.
    fn findings(&self, audit: &MigrationAudit) -> Vec<(At, AuditFinding)> {
        let mut found = Vec::new();
        for table in &self.tables {
            let Some(created) = table.tenant else {
                continue;
            };
            let label = table.label();
            if !table.enabled {
                found.push((
                    table.disabled.unwrap_or(created),
                    AuditFinding::RlsDisabled {
                        table: label.clone(),
                    },
                ));
            }
            if !table.forced {
                found.push((
                    table.unforced.unwrap_or(created),
                    AuditFinding::RlsNotForced {
                        table: label.clone(),
                    },
                ));
            }
            let permissive: Vec<&Policy> = table.policies.iter().filter(|p| p.permissive).collect();
            if permissive.is_empty() {
                found.push((
                    table.dropped_policy.unwrap_or(created),
                    AuditFinding::NoPolicy { table: label },
                ));
                continue;
            }
            // As the live audit: WITH CHECK is asked for when the table has write policies and
            // none of them has one (PostgreSQL refuses it on SELECT and DELETE policies).
            let mut writes = permissive.iter().filter(|p| p.command.writes()).peekable();
            if let Some(first) = writes.peek().map(|p| p.at)
                && writes.all(|p| p.check.is_none())
            {
                found.push((
                    first,
                    AuditFinding::NoWithCheck {
                        table: label.clone(),
                    },
                ));
            }
            for policy in permissive {
                for expression in [&policy.using, &policy.check].into_iter().flatten() {
                    if !audit.is_closed(expression) {
                        found.push((
                            policy.at,
                            AuditFinding::FailOpenPolicy {
                                table: label.clone(),
                                policy: policy.name.clone(),
                                expression: deparse(expression),
                            },
                        ));
                    }
                }
            }
        }
        found
    }
}

/// The statements of a file, each with the line of its first token; or the line and message of
/// the parser's refusal.
fn parse_file(sql: &str) -> Result<Vec<(NodeEnum, usize)>, (usize, String)> {
    let parsed = match pg_query::parse(sql, ParserOptions::DEFAULT) {
        Ok(parsed) => parsed,
        Err(e) => return Err(locate_error(sql, &e)),
    };
    // A statement's location is where the previous one ended: its first token (comments
    // skipped) is where it begins.
    let starts = token_starts(sql).unwrap_or_default();
    Ok(parsed
        .protobuf
        .stmts
        .into_iter()
        .filter_map(|raw| {
            let location = usize::try_from(raw.stmt_location).unwrap_or(0);
            let first = starts.partition_point(|&s| s < location);
            let start = starts.get(first).copied().unwrap_or(location);
            Some((raw.stmt?.node?, line_of(sql, start)))
        })
        .collect())
}

/// The byte offsets of the file's tokens, comments left out.
fn token_starts(sql: &str) -> Option<Vec<usize>> {
    let scanned = pg_query::scan(sql).ok()?;
    Some(
        scanned
            .tokens
            .iter()
            .filter(|t| !matches!(t.token(), Token::SqlComment | Token::CComment))
            .filter_map(|t| usize::try_from(t.start).ok())
            .collect(),
    )
}

/// The line and message of a parse error. The parser reports the token it stopped at but not
/// its place; the place is found by parsing prefixes of the file that end after each token: the
/// first prefix refused for another reason than ending early ends at that token.
fn locate_error(sql: &str, error: &pg_query::Error) -> (usize, String) {
    let message = match error {
        pg_query::Error::Parse(message) => message.clone(),
        pg_query::Error::Conversion(_) => {
            let at = sql.find('\0').unwrap_or(0);
            return (line_of(sql, at), "the file holds a NUL byte".to_owned());
        }
        other => other.to_string(),
    };
    let Ok(scanned) = pg_query::scan(sql) else {
        // The lexer itself failed (an unterminated string, identifier or comment): PostgreSQL
        // quotes the rest of the file from where the literal begins.
        let rest = message
            .split_once(" at or near \"")
            .and_then(|(_, near)| near.strip_suffix('"'))
            .filter(|near| !near.is_empty() && sql.ends_with(near));
        let at = rest.map_or(0, |near| sql.len() - near.len());
        return (line_of(sql, at), message);
    };
    let tokens: Vec<(usize, usize)> = scanned
        .tokens
        .iter()
        .filter(|t| !matches!(t.token(), Token::SqlComment | Token::CComment))
        .filter_map(|t| Some((usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?)))
        .collect();
    let fine_so_far = |&(_, end): &(usize, usize)| {
        let Some(prefix) = sql.get(..end) else {
            return true;
        };
        match pg_query::parse(prefix, ParserOptions::DEFAULT) {
            Ok(_) => true,
            Err(pg_query::Error::Parse(m)) => m.ends_with("at end of input"),
            Err(_) => false,
        }
    };
    let failing = tokens.partition_point(fine_so_far);
    let at = tokens
        .get(failing)
        .or(tokens.last())
        .map_or(0, |&(start, _)| start);
    (line_of(sql, at), message)
}

/// The line (from 1) of byte offset `at`.
fn line_of(sql: &str, at: usize) -> usize {
    let at = at.min(sql.len());
    sql.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A relation's schema (its own, else the enclosing `CREATE SCHEMA`'s) and name.
fn range_name(relation: &RangeVar, schema: Option<&str>) -> (Option<String>, String) {
    let own = (!relation.schemaname.is_empty()).then(|| relation.schemaname.clone());
    (
        own.or_else(|| schema.map(str::to_owned)),
        relation.relname.clone(),
    )
}

/// The text of a `String` node.
fn string(node: &Node) -> Option<&str> {
    match &node.node {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

/// Whether a list of `String` nodes is the one name `name`.
fn is_name(names: &[Node], name: &str) -> bool {
    matches!(names, [only] if string(only) == Some(name))
}

/// Whether a type name is `name` or `pg_catalog.name`.
fn is_type(type_name: &protobuf::TypeName, name: &str) -> bool {
    let names: Vec<&str> = type_name.names.iter().filter_map(string).collect();
    names == [name] || names == ["pg_catalog", name]
}

/// A string constant, through `::text` casts.
fn text_const(node: &Node) -> Option<&str> {
    match &node.node {
        Some(NodeEnum::AConst(AConst {
            val: Some(a_const::Val::Sval(s)),
            ..
        })) => Some(&s.sval),
        Some(NodeEnum::TypeCast(cast))
            if cast.type_name.as_ref().is_some_and(|t| is_type(t, "text")) =>
        {
            cast.arg.as_deref().and_then(text_const)
        }
        _ => None,
    }
}

/// `true`, or a string constant PostgreSQL reads as true (`'on'`, `'yes'`, ...), with or without
/// a `::boolean` cast.
fn is_true(node: &Node) -> bool {
    match &node.node {
        Some(NodeEnum::AConst(AConst {
            val: Some(a_const::Val::Boolval(b)),
            ..
        })) => b.boolval,
        Some(NodeEnum::AConst(AConst {
            val: Some(a_const::Val::Sval(s)),
            ..
        })) => matches!(
            s.sval.trim().to_ascii_lowercase().as_str(),
            "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1"
        ),
        Some(NodeEnum::TypeCast(cast))
            if cast
                .type_name
                .as_ref()
                .is_some_and(|t| is_type(t, "bool") || is_type(t, "boolean")) =>
        {
            cast.arg.as_deref().is_some_and(is_true)
        }
        _ => false,
    }
}

/// An expression as PostgreSQL's deparser writes it (for messages).
fn deparse(expression: &Node) -> String {
    let shown = pg_query::parse("SELECT NULL", ParserOptions::DEFAULT)
        .ok()
        .and_then(|mut parsed| {
            let raw = parsed.protobuf.stmts.first_mut()?;
            let Some(NodeEnum::SelectStmt(select)) = raw.stmt.as_mut()?.node.as_mut() else {
                return None;
            };
            let Some(NodeEnum::ResTarget(target)) = select.target_list.first_mut()?.node.as_mut()
            else {
                return None;
            };
            target.val = Some(Box::new(expression.clone()));
            let text = pg_query::deparse(&parsed.protobuf, Default::default()).ok()?;
            text.strip_prefix("SELECT ").map(str::to_owned)
        });
    shown.unwrap_or_else(|| "(an expression)".to_owned())
}

/// `name` as PostgreSQL's `quote_ident` shows it: bare when it is a plain lower-case name.
fn pg_quote(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if plain {
        name.to_owned()
    } else {
        crate::ident::quote_ident(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAFE: &str = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid";

    fn audit(files: &[(&str, &str)]) -> Vec<String> {
        let files: Vec<MigrationFile> = files
            .iter()
            .enumerate()
            .map(|(i, (name, sql))| MigrationFile::new(*name, i as i64 + 1, *sql))
            .collect();
        MigrationAudit::new()
            .run(&files)
            .unwrap()
            .findings
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn protected(table: &str) -> String {
        format!(
            "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
             ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY p ON {table} USING ({SAFE}) WITH CHECK ({SAFE});\n"
        )
    }

    fn closed(expression: &str) -> bool {
        let sql = format!("SELECT {expression}");
        let parsed = pg_query::parse(&sql, ParserOptions::DEFAULT).unwrap();
        let Some(NodeEnum::SelectStmt(select)) = parsed.protobuf.stmts[0]
            .stmt
            .as_ref()
            .and_then(|s| s.node.clone())
        else {
            panic!("not a select")
        };
        let Some(NodeEnum::ResTarget(target)) = select.target_list[0].node.clone() else {
            panic!("no target")
        };
        MigrationAudit::new().is_closed(target.val.as_deref().unwrap())
    }

    #[test]
    fn expressions_are_classified_as_the_live_audit_does() {
        let setting = "nullif(current_setting('app.tenant_id', true), '')::uuid";
        assert!(closed(SAFE));
        assert!(closed(&format!("{setting} = tenant_id")));
        assert!(closed(&format!("notes.tenant_id = {setting}")));
        assert!(closed(&format!("({SAFE}) AND NOT deleted")));
        assert!(closed(&format!("owner = 'a' AND (b AND {SAFE})")));
        assert!(closed(
            "\"tenant_id\" = CAST(NULLIF(pg_catalog.current_setting('app.tenant_id'::text, 'on'), \
             ''::text) AS uuid)"
        ));
        assert!(!closed("true"));
        assert!(!closed(&format!("{SAFE} OR true")));
        assert!(!closed(&format!("({SAFE}) IS NOT FALSE")));
        assert!(!closed(&format!("NOT ({SAFE})")));
        assert!(!closed(&format!("tenant_id <> {setting}")));
        assert!(!closed(
            "tenant_id = current_setting('app.tenant_id')::uuid"
        ));
        assert!(!closed(
            "tenant_id = current_setting('app.tenant_id', true)::uuid"
        ));
        assert!(!closed(
            "tenant_id = nullif(current_setting('app.tenant_id', false), '')::uuid"
        ));
        assert!(!closed(
            "tenant_id = nullif(current_setting('app.other', true), '')::uuid"
        ));
        assert!(!closed(
            "tenant_id = nullif(current_setting('app.tenant_id', true), 'x')::uuid"
        ));
        assert!(!closed(&format!(
            "tenant_id = coalesce({setting}, tenant_id)"
        )));
        assert!(!closed(
            "current_setting('app.tenant_id', true) IS NULL OR tenant_id = \
             current_setting('app.tenant_id', true)::uuid"
        ));
        assert!(!closed(&format!("other_id = {setting}")));
    }

    #[test]
    fn a_protected_table_is_clean_across_files() {
        let found = audit(&[
            (
                "1_t.sql",
                "CREATE TABLE t (id int, tenant_id uuid NOT NULL);",
            ),
            ("2_rls.sql", &protected("t")),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn missing_protection_points_at_the_table() {
        let found = audit(&[(
            "1_t.sql",
            "-- notes\n\nCREATE TABLE other (id int);\n/* the\n tenant table */ CREATE TABLE t (\n  tenant_id uuid\n);",
        )]);
        assert_eq!(
            found,
            [
                "1_t.sql:5: t: row level security is not enabled",
                "1_t.sql:5: t: row level security is not forced (the owner bypasses it)",
                "1_t.sql:5: t: no permissive policy",
            ]
        );
    }

    #[test]
    fn later_statements_undo_protection_and_are_blamed() {
        let found = audit(&[
            (
                "1_t.sql",
                &format!("CREATE TABLE t (tenant_id uuid);\n{}", protected("t")),
            ),
            (
                "2_undo.sql",
                "ALTER TABLE t DISABLE ROW LEVEL SECURITY;\nALTER TABLE t NO FORCE ROW LEVEL SECURITY;\nDROP POLICY p ON t;",
            ),
        ]);
        assert_eq!(
            found,
            [
                "2_undo.sql:1: t: row level security is not enabled",
                "2_undo.sql:2: t: row level security is not forced (the owner bypasses it)",
                "2_undo.sql:3: t: no permissive policy",
            ]
        );
    }

    #[test]
    fn the_tenant_column_added_later_makes_a_tenant_table() {
        let found = audit(&[
            ("1_t.sql", "CREATE TABLE t (id int);"),
            (
                "2_col.sql",
                "SELECT 1;\nALTER TABLE t ADD COLUMN tenant_id uuid;",
            ),
        ]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("2_col.sql:2: t: "), "{found:?}");
        let dropped = audit(&[
            ("1_t.sql", "CREATE TABLE t (id int, tenant_id uuid);"),
            ("2_col.sql", "ALTER TABLE t DROP COLUMN tenant_id;"),
        ]);
        assert!(dropped.is_empty(), "{dropped:?}");
    }

    #[test]
    fn write_policies_without_with_check_are_reported_as_the_live_audit_does() {
        let table = "CREATE TABLE t (tenant_id uuid);\n\
                     ALTER TABLE t ENABLE ROW LEVEL SECURITY;\n\
                     ALTER TABLE t FORCE ROW LEVEL SECURITY;\n";
        let all = audit(&[(
            "1.sql",
            &format!("{table}CREATE POLICY p ON t USING ({SAFE});"),
        )]);
        assert_eq!(all, ["1.sql:4: t: no policy has WITH CHECK"]);
        let update = audit(&[(
            "1.sql",
            &format!("{table}CREATE POLICY p ON t FOR UPDATE USING ({SAFE});"),
        )]);
        assert_eq!(update, ["1.sql:4: t: no policy has WITH CHECK"]);
        let select_only = audit(&[(
            "1.sql",
            &format!("{table}CREATE POLICY p ON t FOR SELECT USING ({SAFE});"),
        )]);
        assert!(select_only.is_empty(), "{select_only:?}");
        let one_has_it = audit(&[(
            "1.sql",
            &format!(
                "{table}CREATE POLICY r ON t FOR SELECT USING ({SAFE});\n\
                 CREATE POLICY w ON t FOR INSERT WITH CHECK ({SAFE});\n\
                 CREATE POLICY u ON t FOR UPDATE USING ({SAFE});"
            ),
        )]);
        assert!(one_has_it.is_empty(), "{one_has_it:?}");
    }

    #[test]
    fn policies_follow_alter_rename_and_restrictive_ones_do_not_count() {
        let table = "CREATE TABLE t (tenant_id uuid);\n\
                     ALTER TABLE t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\n";
        let altered = audit(&[
            (
                "1.sql",
                &format!("{table}CREATE POLICY p ON t USING (true) WITH CHECK (true);"),
            ),
            (
                "2.sql",
                &format!("ALTER POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE});"),
            ),
        ]);
        assert!(altered.is_empty(), "{altered:?}");
        let opened = audit(&[
            (
                "1.sql",
                &format!("{table}CREATE POLICY p ON t USING ({SAFE}) WITH CHECK ({SAFE});"),
            ),
            (
                "2.sql",
                "ALTER POLICY p ON t RENAME TO q;\nALTER POLICY q ON t USING (true);",
            ),
        ]);
        assert_eq!(opened, ["2.sql:2: t: policy q can fail open: true"]);
        let restrictive = audit(&[(
            "1.sql",
            &format!(
                "{table}CREATE POLICY p ON t AS RESTRICTIVE USING ({SAFE}) WITH CHECK ({SAFE});"
            ),
        )]);
        assert_eq!(restrictive, ["1.sql:1: t: no permissive policy"]);
    }

    #[test]
    fn tables_are_matched_across_schemas_renames_and_copies() {
        let found = audit(&[
            (
                "1.sql",
                "CREATE SCHEMA app CREATE TABLE notes (tenant_id uuid);",
            ),
            ("2.sql", &protected("notes")),
            ("3.sql", "ALTER TABLE app.notes RENAME TO memos;"),
            (
                "4.sql",
                "CREATE TABLE app.copy (LIKE app.memos);\nCREATE TABLE app.child () INHERITS (memos);",
            ),
        ]);
        assert_eq!(
            found
                .iter()
                .map(|f| f.split(": ").nth(1).unwrap())
                .collect::<Vec<_>>(),
            [
                "app.copy",
                "app.copy",
                "app.copy",
                "app.child",
                "app.child",
                "app.child"
            ],
            "{found:?}"
        );
        let dropped = audit(&[
            ("1.sql", "CREATE TABLE \"Notes\" (tenant_id uuid);"),
            ("2.sql", "DROP TABLE IF EXISTS \"Notes\";"),
        ]);
        assert!(dropped.is_empty(), "{dropped:?}");
    }

    #[test]
    fn the_configured_column_and_setting_are_audited() {
        let files = [MigrationFile::new(
            "1.sql",
            1,
            "CREATE TABLE t (org uuid, tenant_id uuid);\n\
             ALTER TABLE t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY p ON t USING (org = nullif(current_setting('app.org', true), '')::uuid) \
             WITH CHECK (org = nullif(current_setting('app.org', true), '')::uuid);",
        )];
        let audit = MigrationAudit::new()
            .tenant_column("org")
            .unwrap()
            .setting("app.org")
            .unwrap();
        let report = audit.run(&files).unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        assert_eq!(report.tables, ["t"]);
        let default = MigrationAudit::new().run(&files).unwrap();
        assert_eq!(default.findings.len(), 2, "{:?}", default.findings);
        assert!(MigrationAudit::new().tenant_column("Org").is_err());
        assert!(MigrationAudit::new().setting("nodot").is_err());
    }

    #[test]
    fn the_statements_of_protect_table_sql_pass() {
        for (table, column, setting) in [
            ("orders", "tenant_id", "app.tenant_id"),
            ("shop.orders", "org", "app.org"),
        ] {
            let mut sql = format!("CREATE TABLE {table} (id int, {column} uuid NOT NULL);\n");
            for statement in crate::protect_table_sql(table, column, setting).unwrap() {
                sql.push_str(&statement);
                sql.push_str(";\n");
            }
            let audit = MigrationAudit::new()
                .tenant_column(column)
                .unwrap()
                .setting(setting)
                .unwrap();
            let report = audit.run(&[MigrationFile::new("1.sql", 1, sql)]).unwrap();
            assert!(report.is_clean(), "{table}: {:?}", report.findings);
            assert_eq!(report.tables, [table]);
        }
    }

    #[test]
    fn syntax_errors_name_the_line_of_the_token() {
        let files = [MigrationFile::new(
            "3_bad.sql",
            3,
            "CREATE TABLE t (id int);\n-- a comment\nCREATE TABLE u (\n  id int,\n  name text text text\n);",
        )];
        let err = MigrationAudit::new().run(&files).unwrap_err();
        let MigrationAuditError::Syntax { line, message, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, 5, "{err}");
        assert!(message.contains("syntax error"), "{message}");
        assert!(
            err.to_string().starts_with("3_bad.sql:5: syntax error"),
            "{err}"
        );
        let unterminated = [MigrationFile::new(
            "1.sql",
            1,
            "SELECT 1;\nSELECT 'abc;\nSELECT 2;",
        )];
        let err = MigrationAudit::new().run(&unterminated).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("1.sql:2: unterminated quoted string"),
            "{err}"
        );
        let truncated = [MigrationFile::new(
            "1.sql",
            1,
            "SELECT 1;\n\nCREATE TABLE t (",
        )];
        let err = MigrationAudit::new().run(&truncated).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("1.sql:3: syntax error at end of input"),
            "{err}"
        );
        let nul = [MigrationFile::new("1.sql", 1, "SELECT 1;\nSELECT '\0';")];
        let err = MigrationAudit::new().run(&nul).unwrap_err();
        assert!(err.to_string().starts_with("1.sql:2: "), "{err}");
    }
}
