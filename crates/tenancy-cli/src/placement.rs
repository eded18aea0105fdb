//! `tenancy placement ...` and `tenancy stats`: tenants on a Citus cluster.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tenancy::Tenancy;
use tenancy::core::{ListQuery, TenantId};
use tenancy::isolation::{
    CitusPlacement, IsolateOutcome, MoveOutcome, PlacementKind, TenantPlacement,
};

use crate::cli::{PlacementCommand, StatsArgs};
use crate::commands::{Output, Target, find, with_stack};
use crate::error::CliError;
use crate::output;

/// The stack's placement operations, or why there are none.
fn operations(tenancy: &Tenancy) -> Result<&CitusPlacement, CliError> {
    tenancy.placement().ok_or_else(|| {
        CliError::Usage(
            "placement needs a Citus coordinator: set `isolation.citus.enabled: true` in \
             --config (or TENANCY__ISOLATION__CITUS__ENABLED=true) and give --database \
             postgres://... on the coordinator"
                .into(),
        )
    })
}

/// A spinner on stderr while a long operation runs, only when stdout is a terminal and the
/// output is not JSON.
fn spinner(out: Output, message: String) -> ProgressBar {
    if out.json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn row(placement: &TenantPlacement, slug: &str) -> [String; 5] {
    let (how, shard) = match &placement.kind {
        PlacementKind::Schema { schema } => (format!("schema {schema}"), "-".to_owned()),
        PlacementKind::Shard {
            table,
            shard_id,
            isolated,
        } => (
            format!("rows of {table}"),
            format!("{shard_id}{}", if *isolated { " (own)" } else { "" }),
        ),
    };
    [
        placement.tenant.to_string(),
        slug.to_owned(),
        placement.node.to_string(),
        how,
        shard,
    ]
}

/// `tenancy placement ...`
pub(crate) async fn placement(
    command: PlacementCommand,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    with_stack(target, async |tenancy| {
        let placement = operations(tenancy)?;
        let lifecycle = tenancy.lifecycle();
        match command {
            PlacementCommand::Show { tenant, limit } => {
                let nodes = placement
                    .nodes()
                    .await
                    .map_err(tenancy::core::TenantError::from)?;
                let tenants = match tenant {
                    Some(tenant) => vec![find(lifecycle, tenant).await?],
                    None => {
                        let mut all = Vec::new();
                        let mut after = None;
                        while all.len() < limit as usize {
                            let page = lifecycle
                                .list(ListQuery {
                                    active_only: false,
                                    after,
                                    limit: 1000.min(limit),
                                })
                                .await?;
                            all.extend(page.items);
                            match page.next {
                                Some(next) => after = Some(next),
                                None => break,
                            }
                        }
                        all.truncate(limit as usize);
                        all
                    }
                };
                let ids: Vec<TenantId> = tenants.iter().map(|t| t.id).collect();
                let found = placement
                    .locate_many(&ids)
                    .await
                    .map_err(tenancy::core::TenantError::from)?;
                let unplaced: Vec<&tenancy::core::TenantInfo> = tenants
                    .iter()
                    .filter(|t| !found.iter().any(|p| p.tenant == t.id))
                    .collect();
                if tenants.len() == 1 && found.is_empty() {
                    return Err(tenancy::core::TenantError::from(
                        tenancy::isolation::PlacementError::NotPlaced {
                            tenant: tenants[0].id,
                        },
                    )
                    .into());
                }
                let slug = |id: TenantId| {
                    tenants
                        .iter()
                        .find(|t| t.id == id)
                        .map(|t| t.slug.to_string())
                        .unwrap_or_default()
                };
                let placed: Vec<Value> = found
                    .iter()
                    .map(|p| {
                        let mut value = json!(p);
                        value["slug"] = json!(slug(p.tenant));
                        value
                    })
                    .collect();
                let value = json!({
                    "nodes": nodes,
                    "tenants": placed,
                    "unplaced": unplaced.iter().map(|t| t.id).collect::<Vec<_>>(),
                });
                out.emit(&value, || {
                    let node_rows: Vec<[String; 2]> = nodes
                        .iter()
                        .map(|n| {
                            let held = found.iter().filter(|p| p.node == *n).count();
                            [n.id.to_string(), format!("{n} ({held} tenants)")]
                        })
                        .collect();
                    let mut text = output::table(["NODE", "ADDRESS"], &node_rows);
                    text.push('\n');
                    let rows: Vec<[String; 5]> =
                        found.iter().map(|p| row(p, &slug(p.tenant))).collect();
                    text.push_str(&output::table(
                        ["TENANT", "SLUG", "NODE", "HELD AS", "SHARD"],
                        &rows,
                    ));
                    if !unplaced.is_empty() {
                        text.push_str(&format!(
                            "{} tenants not placed on the cluster (no distributed schema, no \
                             isolation.citus.tenant_table)\n",
                            unplaced.len()
                        ));
                    }
                    text
                })
            }
            PlacementCommand::Move { tenant, to } => {
                let tenant = find(lifecycle, tenant).await?;
                let bar = spinner(out, format!("moving {} to {}", tenant.slug, to.0));
                let moved = placement.move_tenant(tenant.id, &to.0).await;
                bar.finish_and_clear();
                let moved = moved.map_err(tenancy::core::TenantError::from)?;
                out.emit(&json!(moved), || match &moved {
                    MoveOutcome::Moved { from, to } => {
                        format!("moved {} from {from} to {to}\n", tenant.slug)
                    }
                    MoveOutcome::AlreadyThere { node } => {
                        format!("{} is on {node} already: nothing to do\n", tenant.slug)
                    }
                })
            }
            PlacementCommand::Isolate { tenant } => {
                let tenant = find(lifecycle, tenant).await?;
                let bar = spinner(out, format!("isolating {}", tenant.slug));
                let isolated = placement.isolate(tenant.id).await;
                bar.finish_and_clear();
                let isolated = isolated.map_err(tenancy::core::TenantError::from)?;
                out.emit(&json!(isolated), || match &isolated {
                    IsolateOutcome::Isolated { shard_id, node } => format!(
                        "{} has a shard of its own: {shard_id} on {node}\n",
                        tenant.slug
                    ),
                    IsolateOutcome::AlreadyIsolated { shard_id, node } => format!(
                        "{} has a shard of its own already: {shard_id} on {node}\n",
                        tenant.slug
                    ),
                })
            }
            PlacementCommand::Rebalance => {
                let bar = if out.json || !std::io::stdout().is_terminal() {
                    ProgressBar::hidden()
                } else {
                    ProgressBar::new(0)
                };
                bar.set_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} shard moves")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                let report = placement
                    .rebalance(|p| {
                        bar.set_length(p.total);
                        bar.set_position(p.done);
                    })
                    .await;
                bar.finish_and_clear();
                let report = report.map_err(tenancy::core::TenantError::from)?;
                out.emit(&json!(report), || {
                    let mut text = match report.job_id {
                        Some(job) => format!(
                            "rebalance job {job}: {} shard moves, {} tenant schemas moved\n",
                            report.moves,
                            report.tenants.len()
                        ),
                        None => "the cluster is balanced: nothing to move\n".to_owned(),
                    };
                    for moved in &report.tenants {
                        text.push_str(&format!(
                            "  {}: {} -> {}\n",
                            moved.tenant, moved.from, moved.to
                        ));
                    }
                    text
                })
            }
        }
    })
    .await
}

/// `tenancy stats`
pub(crate) async fn stats(
    args: &StatsArgs,
    target: Target<'_>,
    out: Output,
) -> Result<(), CliError> {
    with_stack(target, async |tenancy| {
        let placement = operations(tenancy)?;
        let mut stats = placement
            .stats()
            .await
            .map_err(tenancy::core::TenantError::from)?;
        stats.truncate(args.limit as usize);
        out.emit(&json!({ "tenants": stats }), || {
            let rows: Vec<[String; 6]> = stats
                .iter()
                .map(|s| {
                    [
                        s.tenant
                            .map_or_else(|| s.attribute.clone(), |t| t.to_string()),
                        s.node_id.to_string(),
                        format!("{} / {}", s.queries, s.queries_last_period),
                        format!("{} / {}", s.reads, s.reads_last_period),
                        format!("{:.3} / {:.3}", s.cpu_seconds, s.cpu_seconds_last_period),
                        if s.tenant.is_some() {
                            ""
                        } else {
                            "(not a tenant id)"
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            let mut text = output::table(
                [
                    "TENANT",
                    "NODE",
                    "QUERIES (NOW / LAST)",
                    "READS (NOW / LAST)",
                    "CPU S (NOW / LAST)",
                    "",
                ],
                &rows,
            );
            if stats.is_empty() {
                text.push_str(
                    "no tenant activity tracked (Citus tracks tenants with \
                     citus.stat_tenants_track = 'all')\n",
                );
            }
            text
        })
    })
    .await
}
