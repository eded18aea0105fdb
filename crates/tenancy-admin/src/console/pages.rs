//! The console's HTML, written with `maud`: every value is escaped where it is interpolated.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};
use tenancy_core::{JsonObject, TenantDomain, TenantInfo, TenantStatus};

use super::Base;
use super::Placement;
use super::live::{HistoryEntry, Point};
use super::session::Session;

/// The statuses an operator can filter by.
pub(crate) const STATUSES: [TenantStatus; 4] = TenantStatus::ALL;

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The whole page around `content`. `session`: signed in (navigation, sign-out, live updates).
pub(crate) fn layout(
    base: &Base,
    title: &str,
    session: Option<&Session>,
    content: &Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tenancy console" }
                link rel="stylesheet" href=(base.at("/assets/console.css"));
                @if session.is_some() {
                    script src=(base.at("/assets/console.js")) defer {}
                }
            }
            body data-events=[session.map(|_| base.at("/events"))] {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "tenancy console" }
                    @if let Some(session) = session {
                        nav aria-label="Console" {
                            a href=(base.at("/tenants")) { "Tenants" }
                            a href=(base.at("/live")) { "Live" }
                        }
                        form.signout method="post" action=(base.at("/sign-out")) {
                            (csrf(session))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (content) }
            }
        }
    }
}

/// The hidden CSRF field of every form that changes something.
pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

pub(crate) fn sign_in(base: &Base, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        p { "Sign in with the service's admin token." }
        form.card method="post" action=(base.at("/sign-in")) {
            label for="token" { "Admin token" }
            input #token name="token" type="password" autocomplete="current-password" required
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
            @if let Some(error) = error {
                p.error #token-error role="alert" { (error) }
            }
            button type="submit" { "Sign in" }
        }
    }
}

/// A notice after an action (fixed texts, chosen by a code in the URL).
pub(crate) fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "Tenant created.",
        "activated" => "Tenant activated.",
        "suspended" => "Tenant suspended.",
        "deactivated" => "Tenant deactivated.",
        "config_set" => "Override saved.",
        "plan_saved" => "Plan saved.",
        "config_removed" => "Override removed: the default applies.",
        _ => return None,
    })
}

fn status_badge(status: TenantStatus) -> Markup {
    html! { span class={"status status-" (status.as_str())} { (status.as_str()) } }
}

/// What the list page was asked for.
#[derive(Debug, Default, Clone)]
pub(crate) struct ListView {
    pub(crate) q: String,
    pub(crate) status: Option<TenantStatus>,
    pub(crate) items: Vec<TenantInfo>,
    /// The cursor of the next page.
    pub(crate) next: Option<String>,
    /// The first page's URL when this is not the first page.
    pub(crate) first: Option<String>,
    /// How many tenants were read to make this page.
    pub(crate) scanned: usize,
    /// The scan stopped at its bound before the page filled.
    pub(crate) scan_capped: bool,
    /// This page's URL (what the live refresh fetches).
    pub(crate) src: String,
}

pub(crate) fn tenants_page(
    base: &Base,
    session: &Session,
    view: &ListView,
    create_error: Option<&CreateForm>,
    done: Option<&str>,
) -> Markup {
    html! {
        h1 { "Tenants" }
        @if let Some(notice) = notice(done) { p.notice role="status" { (notice) } }
        form.search role="search" method="get" action=(base.at("/tenants")) {
            div.field {
                label for="q" { "Search by slug or name" }
                input #q name="q" type="search" value=(view.q);
            }
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" selected[view.status.is_none()] { "any" }
                    @for status in STATUSES {
                        option value=(status.as_str()) selected[view.status == Some(status)] {
                            (status.as_str())
                        }
                    }
                }
            }
            button type="submit" { "Search" }
        }
        div #tenant-list data-src=(view.src) data-on="tenant" aria-live="polite" {
            (tenant_list(base, view))
        }
        details.card open[create_error.is_some()] {
            summary { "New tenant" }
            (create_form(base, session, create_error))
        }
    }
}

/// The list and its pager (also the fragment refreshed on tenant events).
pub(crate) fn tenant_list(base: &Base, view: &ListView) -> Markup {
    html! {
        @if view.items.is_empty() {
            p { "No tenant matches." }
        } @else {
            div.scroll {
                table {
                    caption.visually-hidden { "Tenants" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Slug" }
                        th scope="col" { "Status" } th scope="col" { "Plan" } } }
                    tbody {
                        @for tenant in &view.items {
                            tr data-slug=(tenant.slug) {
                                td { a href=(base.at(&format!("/tenants/{}", tenant.id))) { (tenant.name) } }
                                td { code { (tenant.slug) } }
                                td { (status_badge(tenant.status)) }
                                td { (tenant.plan.as_deref().unwrap_or("-")) }
                            }
                        }
                    }
                }
            }
        }
        @if view.scan_capped {
            p.hint { "Searched " (view.scanned) " tenants for this page; more follow." }
        }
        nav.pager aria-label="Pages" {
            @if let Some(first) = &view.first { a href=(first) { "First page" } }
            @if let Some(next) = &view.next { a href=(next) rel="next" { "Next page" } }
        }
    }
}

/// The values a create form was sent with, and what was wrong.
#[derive(Debug, Default, Clone)]
pub(crate) struct CreateForm {
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) plan: String,
    pub(crate) error: String,
}

fn create_form(base: &Base, session: &Session, sent: Option<&CreateForm>) -> Markup {
    let empty = CreateForm::default();
    let sent = sent.unwrap_or(&empty);
    let error = (!sent.error.is_empty()).then_some(sent.error.as_str());
    html! {
        form method="post" action=(base.at("/tenants")) {
            (csrf(session))
            div.field {
                label for="new-slug" { "Slug" }
                input #new-slug name="slug" required value=(sent.slug)
                    aria-describedby=[error.map(|_| "new-error")];
            }
            div.field {
                label for="new-name" { "Name" }
                input #new-name name="name" required value=(sent.name);
            }
            div.field {
                label for="new-plan" { "Plan (optional)" }
                input #new-plan name="plan" value=(sent.plan);
            }
            @if let Some(error) = error { p.error #new-error role="alert" { (error) } }
            button type="submit" { "Create" }
        }
    }
}

/// An error next to a configuration field.
#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    /// The key of the row (or of the new override) the form was for.
    pub(crate) key: String,
    /// Whether the form was the "new override" one.
    pub(crate) new: bool,
    /// `key` or `value`.
    pub(crate) field: &'static str,
    pub(crate) message: String,
    /// The value as sent, shown again for correction.
    pub(crate) value: String,
}

/// What the tenant page shows.
#[derive(Debug)]
pub(crate) struct TenantView {
    pub(crate) tenant: TenantInfo,
    pub(crate) domains: Vec<TenantDomain>,
    pub(crate) effective: JsonObject,
    pub(crate) overrides: JsonObject,
    pub(crate) placement: Option<Result<Placement, String>>,
    pub(crate) history: Vec<HistoryEntry>,
    pub(crate) has_metrics: bool,
    pub(crate) action_error: Option<String>,
    pub(crate) field_error: Option<FieldError>,
}

fn tenant_url(base: &Base, tenant: &TenantInfo, path: &str) -> String {
    base.at(&format!("/tenants/{}{path}", tenant.id))
}

pub(crate) fn tenant_page(
    base: &Base,
    session: &Session,
    view: &TenantView,
    done: Option<&str>,
) -> Markup {
    let t = &view.tenant;
    html! {
        p.crumbs { a href=(base.at("/tenants")) { "Tenants" } " / " (t.slug) }
        h1 { (t.name) }
        @if let Some(notice) = notice(done) { p.notice role="status" { (notice) } }
        @if let Some(error) = &view.action_error { p.error role="alert" { (error) } }
        div.grid {
            section.card aria-labelledby="about" {
                h2 #about { "Tenant" }
                dl {
                    dt { "Id" } dd { code { (t.id) } }
                    dt { "Slug" } dd { code { (t.slug) } }
                    dt { label for="plan" { "Plan" } }
                    dd {
                        form.inline method="post" action=(tenant_url(base, t, "/plan")) {
                            (csrf(session))
                            input #plan name="plan" value=(t.plan.as_deref().unwrap_or_default())
                                aria-describedby="plan-hint";
                            button type="submit" { "Save" }
                            span.hint #plan-hint { "Empty: no plan (the default applies)." }
                        }
                    }
                    dt { "Created" } dd { (time(t.created_at)) }
                }
            }
            section.card aria-labelledby="state" {
                h2 #state { "Status" }
                div #status data-src=(tenant_url(base, t, "/history")) data-on="tenant"
                    data-tenant=(t.id) aria-live="polite" {
                    (status(t, &view.history))
                }
                (actions(base, session, t))
            }
        }
        section.card aria-labelledby="config" {
            h2 #config { "Configuration" }
            p.hint { "Values are JSON: " code { "\"dark\"" } ", " code { "25" } ", " code { "true" } "." }
            (config(base, session, view))
        }
        div.grid {
            section.card aria-labelledby="domains" {
                h2 #domains { "Domains" }
                @if view.domains.is_empty() { p { "No domain of its own." } }
                ul {
                    @for domain in &view.domains {
                        li { code { (domain.domain) } @if domain.primary { " (primary)" } }
                    }
                }
            }
            @if let Some(placement) = &view.placement {
                section.card aria-labelledby="placement" {
                    h2 #placement { "Placement" }
                    @match placement {
                        Ok(placement) => {
                            p { (placement.summary) }
                            @if !placement.details.is_empty() {
                                dl { @for (name, value) in &placement.details { dt { (name) } dd { (value) } } }
                            }
                        }
                        Err(error) => { p.error { (error) } }
                    }
                }
            }
        }
        @if view.has_metrics {
            section.card aria-labelledby="traffic" {
                h2 #traffic { "Traffic" }
                div data-src=(tenant_url(base, t, "/live")) data-on="metrics" {
                    p.hint { "Waiting for the first samples…" }
                }
            }
        }
    }
}

/// The status and the history (the fragment refreshed on this tenant's events).
pub(crate) fn status(tenant: &TenantInfo, history: &[HistoryEntry]) -> Markup {
    html! {
        p { (status_badge(tenant.status))
            @if let Some(reason) = &tenant.status_reason { " " span.reason { (reason) } } }
        p.hint { "Last changed " (time(tenant.updated_at)) }
        h3 { "History" }
        @if history.is_empty() {
            p.hint { "No event since the console started." }
        } @else {
            ol.history {
                @for entry in history {
                    li { time datetime=(time(entry.at)) { (time(entry.at)) } " "
                        strong { (entry.what) }
                        @if !entry.detail.is_empty() { " " span { (entry.detail) } } }
                }
            }
        }
    }
}

fn actions(base: &Base, session: &Session, t: &TenantInfo) -> Markup {
    html! {
        div.actions {
            @if t.status.can_transition_to(TenantStatus::Active) && t.status != TenantStatus::Provisioning {
                form method="post" action=(tenant_url(base, t, "/activate")) {
                    (csrf(session))
                    button type="submit" { "Activate" }
                }
            }
            @if t.status.can_transition_to(TenantStatus::Suspended) {
                form method="post" action=(tenant_url(base, t, "/suspend")) {
                    (csrf(session))
                    label for="reason" { "Reason" }
                    input #reason name="reason" maxlength="1000";
                    button.danger type="submit" { "Suspend…" }
                }
            }
            @if t.status.can_transition_to(TenantStatus::Inactive) {
                form method="post" action=(tenant_url(base, t, "/deactivate")) {
                    (csrf(session))
                    button.danger type="submit" { "Deactivate…" }
                }
            }
        }
    }
}

fn field_id(prefix: &str, key: &str) -> String {
    // Keys are `[a-z0-9_.-]`; anything else (none is stored) is hex-encoded.
    let mut id = String::from(prefix);
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            id.push(c);
        } else {
            let _ = write!(id, "x{:x}", u32::from(c));
        }
    }
    id
}

fn config(base: &Base, session: &Session, view: &TenantView) -> Markup {
    let t = &view.tenant;
    let error_for = |key: &str, new: bool| {
        view.field_error
            .as_ref()
            .filter(|e| e.new == new && (new || e.key == key))
    };
    let new_error = error_for("", true);
    html! {
        div.scroll {
            table.config {
                caption.visually-hidden { "Configuration" }
                thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "From" } th scope="col" { span.visually-hidden { "Remove" } } } }
                tbody {
                    @for (key, value) in &view.effective {
                        @let id = field_id("value-", key);
                        @let error = error_for(key, false);
                        @let overridden = view.overrides.contains_key(key);
                        tr {
                            th scope="row" { code { (key) } }
                            td {
                                form.inline method="post" action=(tenant_url(base, t, "/config")) {
                                    (csrf(session))
                                    input type="hidden" name="key" value=(key);
                                    label.visually-hidden for=(id) { "Value of " (key) }
                                    input id=(id) name="value" class="json"
                                        value=(error.map_or_else(|| value.to_string(), |e| e.value.clone()))
                                        aria-invalid=[error.map(|_| "true")]
                                        aria-describedby=[error.map(|_| format!("{id}-error"))];
                                    button type="submit" { "Save" }
                                    @if let Some(error) = error {
                                        p.error id={(id) "-error"} role="alert" { (error.message) }
                                    }
                                }
                            }
                            td { @if overridden { "override" } @else { "default" } }
                            td {
                                @if overridden {
                                    form.inline method="post" action=(tenant_url(base, t, "/config/remove")) {
                                        (csrf(session))
                                        input type="hidden" name="key" value=(key);
                                        button type="submit" aria-label={"Remove the override of " (key)} { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.new-override method="post" action=(tenant_url(base, t, "/config")) {
            (csrf(session))
            input type="hidden" name="new" value="1";
            div.field {
                label for="new-key" { "Key" }
                input #new-key name="key" required value=[new_error.map(|e| e.key.as_str())]
                    aria-invalid=[new_error.filter(|e| e.field == "key").map(|_| "true")]
                    aria-describedby=[new_error.filter(|e| e.field == "key").map(|_| "new-key-error")];
                @if let Some(error) = new_error.filter(|e| e.field == "key") {
                    p.error #new-key-error role="alert" { (error.message) }
                }
            }
            div.field {
                label for="new-value" { "Value (JSON)" }
                input #new-value name="value" class="json" required value=[new_error.map(|e| e.value.as_str())]
                    aria-invalid=[new_error.filter(|e| e.field == "value").map(|_| "true")]
                    aria-describedby=[new_error.filter(|e| e.field == "value").map(|_| "new-value-error")];
                @if let Some(error) = new_error.filter(|e| e.field == "value") {
                    p.error #new-value-error role="alert" { (error.message) }
                }
            }
            button type="submit" { "Add override" }
        }
    }
}

/// The confirmation of a destructive action.
pub(crate) fn confirm(
    base: &Base,
    session: &Session,
    tenant: &TenantInfo,
    action: &str,
    reason: Option<&str>,
) -> Markup {
    let verb = if action == "suspend" {
        "Suspend"
    } else {
        "Deactivate"
    };
    html! {
        h1 { (verb) " " (tenant.name) "?" }
        p { "Every request for " code { (tenant.slug) } " will be refused until it is activated again." }
        @if let Some(reason) = reason.filter(|r| !r.is_empty()) {
            p { "Reason: " span.reason { (reason) } }
        }
        form.card method="post" action=(tenant_url(base, tenant, &format!("/{action}"))) {
            (csrf(session))
            input type="hidden" name="confirmed" value="yes";
            @if let Some(reason) = reason { input type="hidden" name="reason" value=(reason); }
            button.danger type="submit" { (verb) " " (tenant.slug) }
            " "
            a href=(tenant_url(base, tenant, "")) { "Cancel" }
        }
    }
}

/// An error page.
pub(crate) fn error(message: &str, base: &Base) -> Markup {
    html! {
        h1 { "Something went wrong" }
        p.error role="alert" { (message) }
        p { a href=(base.at("/tenants")) { "Back to the tenants" } }
    }
}

/// A line chart of `values` (gaps where `None`), 0 at the bottom.
fn sparkline(label: &str, unit: &str, values: &[Option<f64>], capacity: usize) -> Markup {
    const W: f64 = 240.0;
    const H: f64 = 40.0;
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { (H - 4.0) / max } else { 0.0 };
    #[allow(clippy::cast_precision_loss)]
    let step = W / (capacity.max(2) - 1) as f64;
    // Right-aligned: the latest point at the right edge.
    let offset = capacity.saturating_sub(values.len());
    let mut segments: Vec<String> = vec![String::new()];
    let mut dot = None;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) => {
                #[allow(clippy::cast_precision_loss)]
                let x = (offset + i) as f64 * step;
                let y = H - 2.0 - v * scale;
                if let Some(segment) = segments.last_mut() {
                    let _ = write!(segment, "{x:.1},{y:.1} ");
                }
                dot = Some((format!("{x:.1}"), format!("{y:.1}")));
            }
            None => segments.push(String::new()),
        }
    }
    let last = values.iter().rev().flatten().next();
    let now = last.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} {unit}"));
    let description = format!("{label}: now {now}, highest {max:.1} {unit}");
    html! {
        figure.chart {
            svg viewBox="0 0 240 40" width="240" height="40" role="img" aria-label=(description) {
                title { (description) }
                line x1="0" y1="39" x2="240" y2="39" class="axis" {}
                @for segment in segments.iter().filter(|s| !s.is_empty()) {
                    polyline points=(segment.trim_end()) class="line" {}
                }
                @if let Some((x, y)) = &dot {
                    circle cx=(x) cy=(y) r="2.5" class="dot" {}
                }
            }
            figcaption { (label) " " strong { (now) } }
        }
    }
}

/// One tenant label's charts over `points`.
pub(crate) fn charts(label: &str, points: &[Point], capacity: usize) -> Markup {
    let rps: Vec<Option<f64>> = points
        .iter()
        .map(|p| Some(p.tenants.get(label).map_or(0.0, |t| t.rps)))
        .collect();
    let p99: Vec<Option<f64>> = points
        .iter()
        .map(|p| p.tenants.get(label).and_then(|t| t.p99_ms))
        .collect();
    html! {
        div.charts {
            (sparkline("requests/s", "/s", &rps, capacity))
            (sparkline("p99", "ms", &p99, capacity))
        }
    }
}

/// A row of the live page: the tenant's name (or its label), linked when it is a tenant.
#[derive(Debug)]
pub(crate) struct LiveRow {
    pub(crate) label: String,
    pub(crate) tenant: Option<TenantInfo>,
}

pub(crate) fn live(
    base: &Base,
    rows: &[LiveRow],
    points: &[Point],
    capacity: usize,
    refusals: &std::collections::BTreeMap<String, u64>,
    error: Option<&str>,
    window: &str,
) -> Markup {
    html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        h2 { "Busiest tenants, last " (window) }
        @if rows.is_empty() {
            p.hint { "No request in the window yet." }
        }
        ul.live {
            @for row in rows {
                li {
                    @match &row.tenant {
                        Some(t) => a href=(base.at(&format!("/tenants/{}", t.id))) { (t.name) },
                        None => code { (row.label) },
                    }
                    (charts(&row.label, points, capacity))
                }
            }
        }
        h2 { "Refusals by reason, last " (window) }
        @if refusals.is_empty() {
            p.hint { "None." }
        } @else {
            table {
                thead { tr { th scope="col" { "Reason" } th scope="col" { "Requests" } } }
                tbody { @for (reason, count) in refusals { tr { td { code { (reason) } } td { (count) } } } }
            }
        }
    }
}

pub(crate) fn live_page(base: &Base, fragment: &Markup, enabled: bool) -> Markup {
    html! {
        h1 { "Live" }
        @if enabled {
            div #live data-src=(base.at("/live")) data-on="metrics" aria-live="off" { (fragment) }
        } @else {
            p { "This service gives the console no metrics." }
        }
    }
}
