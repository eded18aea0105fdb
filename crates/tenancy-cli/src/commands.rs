//! The admin commands: tenants, configuration overrides, tenant schema migrations, the audit.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenancy::core::{CreateTenant, ListQuery, TenantDomain, TenantError, TenantInfo, UpdateTenant};
use tenancy::isolation::{
    AuditFinding, MigrationAudit, Migrations, RlsAudit, TenantMigrator, tenant_schema,
};
use tenancy::lifecycle::TenantLifecycle;
use tenancy::pg_connect::{connect_error, connect_options};
use tenancy::{Tenancy, TenancyConfig};

use crate::cli::{
    AuditArgs, ConfigCommand, DomainsCommand, SchemasCommand, TenantArg, TenantsCommand,
};
use crate::error::CliError;
use crate::output;
use crate::stack::{self, Backend};

/// Where a command prints, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) json: bool,
}

impl Output {
    pub(crate) fn print(self, text: &str) {
        output::out(text);
    }

    /// Prints `value` as JSON, or `human` as text.
    pub(crate) fn emit(
        self,
        value: &Value,
        human: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let text = if self.json {
            output::json(value)?
        } else {
            human()
        };
        self.print(&text);
        Ok(())
    }

    fn tenant(self, tenant: &TenantInfo) -> Result<(), CliError> {
        let text = if self.json {
            output::json(tenant)?
        } else {
            output::tenant_details(tenant)
        };
        self.print(&text);
        Ok(())
    }
}

/// What a command runs against: the database and the configuration file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) database: Option<&'a str>,
    pub(crate) config: Option<&'a Path>,
}

/// Runs `body` on a stack built for `target`, then shuts the stack down.
pub(crate) async fn with_stack<T>(
    target: Target<'_>,
    body: impl AsyncFnOnce(&Tenancy) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let (config, _) = stack::admin_config(target.database, target.config)?;
    let tenancy = tenancy::configure(config).await?;
    let result = body(&tenancy).await;
    let shutdown = tenancy.shutdown().await;
    let value = result?;
    shutdown?;
    Ok(value)
}

pub(crate) async fn find(
    lifecycle: &TenantLifecycle,
    tenant: TenantArg,
) -> Result<TenantInfo, CliError> {
    Ok(lifecycle
        .find(&tenant.0)
        .await?
        .ok_or(TenantError::NotFound { tenant: tenant.0 })?)
}

/// `tenancy domains ...`: prints the tenant's domains after the command.
pub(crate) async fn domains(
    command: DomainsCommand,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    with_stack(target, async |tenancy| {
        let lifecycle = tenancy.lifecycle();
        let domains = match command {
            DomainsCommand::List { tenant } => {
                lifecycle.domains(find(lifecycle, tenant).await?.id).await?
            }
            DomainsCommand::Add {
                tenant,
                domain,
                primary,
            } => {
                let id = find(lifecycle, tenant).await?.id;
                let outcome = lifecycle.add_domain(id, &domain, primary).await?;
                outcome.into_result()?.domains
            }
            DomainsCommand::Remove { tenant, domain } => {
                let id = find(lifecycle, tenant).await?.id;
                lifecycle
                    .remove_domain(id, &domain)
                    .await?
                    .into_result()?
                    .domains
            }
            DomainsCommand::Primary { tenant, domain } => {
                let id = find(lifecycle, tenant).await?.id;
                let outcome = lifecycle.set_primary_domain(id, &domain).await?;
                outcome.into_result()?.domains
            }
        };
        out.emit(&json!({ "domains": domains }), || domain_lines(&domains))
    })
    .await
}

/// One line per domain, the primary marked, international names shown decoded too.
fn domain_lines(domains: &[TenantDomain]) -> String {
    if domains.is_empty() {
        return "no domains\n".to_owned();
    }
    domains
        .iter()
        .map(|d| {
            let unicode = d.domain.to_unicode();
            let shown = if unicode == d.domain.as_str() {
                unicode
            } else {
                format!("{} ({unicode})", d.domain)
            };
            format!("{shown}{}\n", if d.primary { "  primary" } else { "" })
        })
        .collect()
}

/// `tenancy tenants ...`
pub(crate) async fn tenants(
    command: TenantsCommand,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    if let TenantsCommand::Update {
        name: None,
        slug: None,
        plan: None,
        clear_plan: false,
        ..
    } = command
    {
        return Err(CliError::Usage(
            "nothing to update: give --name, --slug, --plan or --clear-plan".into(),
        ));
    }
    with_stack(target, async |tenancy| {
        let lifecycle = tenancy.lifecycle();
        match command {
            TenantsCommand::Create { slug, name, plan } => {
                let mut create = CreateTenant::new(slug, name);
                create.plan = plan;
                let tenant = lifecycle.create(create).await?.into_tenant();
                out.tenant(&tenant)
            }
            TenantsCommand::List {
                active,
                limit,
                after,
            } => {
                let page = lifecycle
                    .list(ListQuery {
                        active_only: active,
                        after,
                        limit,
                    })
                    .await?;
                out.emit(&json!({ "items": page.items, "next": page.next }), || {
                    let mut text = output::tenant_table(&page.items);
                    if let Some(next) = page.next {
                        text.push_str(&format!("more: --after {next}\n"));
                    }
                    text
                })
            }
            TenantsCommand::Show { tenant } => out.tenant(&find(lifecycle, tenant).await?),
            TenantsCommand::Recover { older_than } => {
                let recovery = lifecycle.recover_stuck(older_than).await?;
                let failed: Vec<_> = recovery
                    .failed
                    .iter()
                    .map(|(id, error)| json!({ "id": id, "error": error.to_string() }))
                    .collect();
                out.emit(
                    &json!({ "recovered": recovery.recovered, "failed": failed }),
                    || {
                        let mut text = format!(
                            "recovered {} tenant(s), {} still failing\n",
                            recovery.recovered.len(),
                            recovery.failed.len()
                        );
                        text.push_str(&output::tenant_table(&recovery.recovered));
                        for (id, error) in &recovery.failed {
                            text.push_str(&format!("failed: {id}: {error}\n"));
                        }
                        text
                    },
                )?;
                match recovery.failed.first() {
                    None => Ok(()),
                    Some((id, _)) => Err(CliError::Findings(format!(
                        "{} tenant(s) still provisioning, the first {id}: see the errors above",
                        recovery.failed.len()
                    ))),
                }
            }
            TenantsCommand::Update {
                tenant,
                name,
                slug,
                plan,
                clear_plan,
            } => {
                let id = find(lifecycle, tenant).await?.id;
                let update = UpdateTenant {
                    slug,
                    name,
                    plan: if clear_plan {
                        Some(None)
                    } else {
                        plan.map(Some)
                    },
                    metadata: None,
                };
                out.tenant(&lifecycle.update(id, &update).await?.into_tenant())
            }
            TenantsCommand::Activate { tenant } => {
                let id = find(lifecycle, tenant).await?.id;
                out.tenant(&lifecycle.activate(id).await?.into_tenant())
            }
            TenantsCommand::Suspend { tenant, reason } => {
                let id = find(lifecycle, tenant).await?.id;
                out.tenant(&lifecycle.suspend(id, reason).await?.into_tenant())
            }
            TenantsCommand::Deactivate { tenant } => {
                let id = find(lifecycle, tenant).await?.id;
                out.tenant(&lifecycle.deactivate(id).await?.into_tenant())
            }
        }
    })
    .await
}

/// `tenancy config ...`
pub(crate) async fn config(
    command: ConfigCommand,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    // The value is checked before anything is opened.
    let value = match &command {
        ConfigCommand::Set { value, .. } => {
            Some(serde_json::from_str::<Value>(value).map_err(|e| {
                CliError::Usage(format!(
                    "the value {value:?} is not JSON ({e}): quote strings, as in '\"dark\"'"
                ))
            })?)
        }
        _ => None,
    };
    with_stack(target, async |tenancy| {
        let lifecycle = tenancy.lifecycle();
        let service = tenancy.config();
        match command {
            ConfigCommand::Get { tenant, key } => {
                let id = find(lifecycle, tenant).await?.id;
                match service.get(id, &key).await? {
                    Some(value) => out.emit(&value, || format!("{value}\n")),
                    None => Err(CliError::Findings(format!(
                        "{key} is not set for this tenant and has no default"
                    ))),
                }
            }
            ConfigCommand::Set { tenant, key, .. } => {
                let id = find(lifecycle, tenant).await?.id;
                let value = value.unwrap_or_default();
                let change = service.set(id, &key, value).await?;
                changed(out, &key, change.old.as_ref(), change.new.as_ref())
            }
            ConfigCommand::Unset { tenant, key } => {
                let id = find(lifecycle, tenant).await?.id;
                let change = service.remove(id, &key).await?;
                changed(out, &key, change.old.as_ref(), change.new.as_ref())
            }
            ConfigCommand::Effective { tenant } => {
                let id = find(lifecycle, tenant).await?.id;
                let effective = service.effective(id).await?;
                let rows: Vec<[String; 2]> = effective
                    .iter()
                    .map(|(k, v)| [k.clone(), v.to_string()])
                    .collect();
                let rendered = Value::Object(effective);
                out.emit(&rendered, || output::table(["KEY", "VALUE"], &rows))
            }
        }
    })
    .await
}

fn changed(
    out: Output,
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), CliError> {
    let show = |v: Option<&Value>| v.map_or_else(|| "(unset)".to_owned(), Value::to_string);
    let text = format!("{key}: {} -> {}\n", show(old), show(new));
    out.emit(&json!({ "key": key, "old": old, "new": new }), || text)
}

/// A pool on the PostgreSQL database of `target` (these commands need PostgreSQL).
async fn postgres(
    target: Target<'_>,
    what: &str,
    connections: u32,
) -> Result<(PgPool, TenancyConfig), CliError> {
    let (config, backend) = stack::admin_config(target.database, target.config)?;
    let url = config.store.url.clone().unwrap_or_default();
    if backend != Backend::Postgres {
        return Err(CliError::Usage(format!(
            "{what} needs PostgreSQL (tenant schemas and row-level security live there), and \
             --database is {}: give --database postgres://...",
            stack::redact(&url)
        )));
    }
    let options = connect_options(&url, "--database", &config.store.tls, "store.tls")?;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await
        .map_err(|e| {
            let e = connect_error(&options, e);
            TenantError::storage(format!("connecting to {}: {e}", stack::redact(&url)), e)
        })?;
    Ok((pool, config))
}

fn migrations(dir: &Path) -> Result<Migrations, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "--dir {} is not a directory of NNNN_name.sql files",
            dir.display()
        )));
    }
    Ok(Migrations::from_dir(dir)?)
}

/// `tenancy schemas ...`
pub(crate) async fn schemas(
    command: SchemasCommand,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    match command {
        SchemasCommand::Migrate { dir, concurrency } => {
            let migrations = migrations(&dir)?;
            let (pool, _) = postgres(target, "schemas migrate", u32::from(concurrency) + 1).await?;
            let migrator = TenantMigrator::new(pool.clone(), migrations)
                .with_concurrency(usize::from(concurrency));
            let bar = if out.json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0)
            };
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = migrator
                .run(|p| {
                    bar.set_length(p.total as u64);
                    bar.set_position(p.finished as u64);
                    if let Err(e) = p.outcome {
                        bar.println(format!("tenant {} failed: {e}", p.tenant));
                    }
                })
                .await;
            bar.finish_and_clear();
            pool.close().await;
            let report = report?;
            let failed: Vec<Value> = report
                .failed
                .iter()
                .map(|f| json!({ "tenant_id": f.tenant, "error": f.error.to_string() }))
                .collect();
            let summary = json!({
                "schemas": report.schemas,
                "already_current": report.already_current,
                "migrated": report.done,
                "failed": failed,
                "pending": report.pending,
                "complete": report.is_complete(),
            });
            out.emit(&summary, || {
                let mut text = format!(
                    "{} tenant schemas: {} already current, {} migrated, {} failed, {} pending\n",
                    report.schemas,
                    report.already_current,
                    report.done.len(),
                    report.failed.len(),
                    report.pending.len()
                );
                for failure in &report.failed {
                    text.push_str(&format!("failed: {}: {}\n", failure.tenant, failure.error));
                }
                if !report.is_complete() {
                    text.push_str(
                        "fix the failure and run the command again: it resumes where it stopped\n",
                    );
                }
                text
            })?;
            if report.is_complete() {
                Ok(())
            } else {
                Err(CliError::Findings(format!(
                    "migration incomplete: {} failed, {} pending",
                    report.failed.len(),
                    report.pending.len()
                )))
            }
        }
        SchemasCommand::Status { dir } => {
            let migrations = migrations(&dir)?;
            let latest = migrations.latest();
            let (pool, _) = postgres(target, "schemas status", 1).await?;
            let migrator = TenantMigrator::new(pool.clone(), migrations);
            let versions = migrator.schema_versions().await;
            pool.close().await;
            let versions = versions?;
            let rows: Vec<[String; 4]> = versions
                .iter()
                .map(|(tenant, version)| {
                    [
                        tenant.to_string(),
                        tenant_schema(*tenant),
                        version.to_string(),
                        if *version >= latest {
                            "current"
                        } else {
                            "behind"
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            let behind = versions.iter().filter(|(_, v)| *v < latest).count();
            let schemas: Vec<Value> = versions
                .iter()
                .map(|(tenant, version)| {
                    json!({
                        "tenant_id": tenant,
                        "schema": tenant_schema(*tenant),
                        "version": version,
                        "current": *version >= latest,
                    })
                })
                .collect();
            out.emit(
                &json!({ "latest": latest, "behind": behind, "schemas": schemas }),
                || {
                    let mut text = output::table(["TENANT", "SCHEMA", "VERSION", "STATUS"], &rows);
                    text.push_str(&format!(
                        "latest version {latest}: {} of {} schemas behind\n",
                        behind,
                        versions.len()
                    ));
                    text
                },
            )
        }
    }
}

/// `tenancy audit`
pub(crate) async fn audit(
    args: AuditArgs,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    if let Some(dir) = &args.migrations {
        return audit_migrations(dir, target, out);
    }
    let (pool, config) = postgres(target, "audit", 1).await?;
    let run = async {
        let mut audit = RlsAudit::from_config(&config.isolation)?;
        if let Some(role) = &args.role {
            audit = audit.role(role)?;
        }
        if !args.schema.is_empty() {
            let schemas: Vec<&str> = args.schema.iter().map(String::as_str).collect();
            audit = audit.schemas(&schemas)?;
        }
        audit.run(&pool).await
    };
    let report = run.await;
    pool.close().await;
    let report = report?;
    let findings: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    out.emit(
        &json!({
            "role": report.role,
            "tables": report.tables,
            "findings": findings,
            "clean": report.is_clean(),
        }),
        || {
            let mut text = format!(
                "role {}: {} tenant tables audited, {} findings\n",
                report.role,
                report.tables.len(),
                findings.len()
            );
            for finding in &findings {
                text.push_str(&format!("  {finding}\n"));
            }
            text
        },
    )?;
    if !report.is_clean() {
        return Err(CliError::Findings(format!(
            "row level security audit: {} findings",
            findings.len()
        )));
    }
    if report.tables.is_empty() {
        // An audit of nothing proves nothing: a mistyped --schema or tenant column looks clean.
        return Err(CliError::Findings(format!(
            "row level security audit: no table with the tenant column `{}` in the audited \
             schemas; check --schema and isolation.tenant_column",
            config.isolation.tenant_column
        )));
    }
    Ok(())
}

/// `tenancy audit --migrations DIR`: the static audit of migration files; no database.
fn audit_migrations(dir: &Path, target: Target<'_>, out: Output) -> Result<(), CliError> {
    let config = TenancyConfig::load(target.config)?;
    let report = MigrationAudit::from_config(&config.isolation)?.run_dir(dir)?;
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut value = json!({
                "file": f.file.display().to_string(),
                "line": f.line,
                "kind": f.finding.kind(),
                "table": f.finding.table(),
                "message": f.finding.to_string(),
            });
            if let AuditFinding::FailOpenPolicy {
                policy, expression, ..
            } = &f.finding
            {
                value["policy"] = json!(policy);
                value["expression"] = json!(expression);
            }
            value
        })
        .collect();
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    out.emit(
        &json!({
            "migrations": dir.display().to_string(),
            "files": files,
            "tables": report.tables,
            "findings": findings,
            "clean": report.is_clean(),
        }),
        || {
            let mut text = format!(
                "{}: {} migration files, {} tenant tables, {} findings\n",
                dir.display(),
                report.files.len(),
                report.tables.len(),
                report.findings.len()
            );
            for finding in &report.findings {
                text.push_str(&format!("  {finding}\n"));
            }
            text
        },
    )?;
    if !report.is_clean() {
        return Err(CliError::Findings(format!(
            "migration audit: {} findings",
            report.findings.len()
        )));
    }
    if report.tables.is_empty() {
        // As the live audit: an audit of nothing proves nothing.
        return Err(CliError::Findings(format!(
            "migration audit: no table with the tenant column `{}` in the migrations of {}; \
             check --migrations and isolation.tenant_column",
            config.isolation.tenant_column,
            dir.display()
        )));
    }
    Ok(())
}
