//! The console's routes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::Stream;
use maud::Markup;
use serde::Deserialize;
use tenancy_core::{
    CreateTenant, ListQuery, Slug, TenantError, TenantId, TenantInfo, TenantStatus, UpdateTenant,
};
use tokio::sync::broadcast;

use super::live::{self, Push};
use super::pages::{self, CreateForm, FieldError, ListView, LiveRow, TenantView};
use super::session::{self, Session};
use super::{Base, ConsoleState};
use crate::http::classify;

/// Results per page of the tenant list.
pub(crate) const PAGE_SIZE: usize = 25;
/// How many tenants one page of search results reads from the store at most.
pub(crate) const SCAN_LIMIT: usize = 1000;
/// How many tenants the live page charts.
const LIVE_TENANTS: usize = 10;

/// The header the console's script sends when it fetches a fragment.
const FRAGMENT: &str = "x-console-fragment";

fn is_fragment(headers: &HeaderMap) -> bool {
    headers.contains_key(FRAGMENT)
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn page(
    base: &Base,
    session: &Session,
    title: &str,
    status: StatusCode,
    body: &Markup,
) -> Response {
    html(status, pages::layout(base, title, Some(session), body))
}

/// A failure answered with a page (or the bare message to a fragment request).
fn failure(base: &Base, session: Option<&Session>, error: &TenantError) -> Response {
    let (status, _) = classify(error);
    if status.is_server_error() {
        tracing::error!(%error, "console request failed");
    }
    let body = pages::error(&error.to_string(), base);
    html(status, pages::layout(base, "Error", session, &body))
}

// ----- sign-in -----

pub(crate) async fn sign_in_page(base: Base) -> Response {
    html(
        StatusCode::OK,
        pages::layout(&base, "Sign in", None, &pages::sign_in(&base, None)),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
}

pub(crate) async fn sign_in(
    State(state): State<ConsoleState>,
    base: Base,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    if !state.admin.token_matches(token.as_bytes()) {
        tracing::warn!("console: sign-in with a wrong admin token");
        let body = pages::sign_in(&base, Some("That is not the admin token."));
        return html(
            StatusCode::UNAUTHORIZED,
            pages::layout(&base, "Sign in", None, &body),
        );
    }
    // A new sign-in ends the session the browser had: one session per sign-in.
    if let Some(previous) = session::cookie(&headers, session::COOKIE_NAME) {
        state.sessions.close(previous);
    }
    let session = state.sessions.open();
    let cookie = session::set_cookie(
        &base,
        Some(&session.id),
        state.sessions.lifetime(),
        state.secure_cookie,
    );
    tracing::info!("console: signed in");
    ([cookie], Redirect::to(&base.at("/tenants"))).into_response()
}

pub(crate) async fn sign_out(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
) -> Response {
    state.sessions.close(&session.id);
    let cookie = session::set_cookie(&base, None, state.sessions.lifetime(), state.secure_cookie);
    ([cookie], Redirect::to(&base.at("/sign-in"))).into_response()
}

// ----- tenant list -----

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    q: Option<String>,
    status: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

fn query_string(q: &str, status: Option<TenantStatus>, after: Option<TenantId>) -> String {
    let mut pairs = Vec::new();
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    if !q.is_empty() {
        pairs.push(format!("q={}", encode(q)));
    }
    if let Some(status) = status {
        pairs.push(format!("status={}", status.as_str()));
    }
    if let Some(after) = after {
        pairs.push(format!("after={after}"));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// One page of tenants matching `q` (a substring of the slug or name, any case; an exact id
/// finds that tenant) and `status`, in the store's order, after `after`. Pages through the store
/// (100 at a time) and stops when the page is full or [`SCAN_LIMIT`] tenants were read.
async fn search(
    state: &ConsoleState,
    q: &str,
    status: Option<TenantStatus>,
    after: Option<TenantId>,
) -> Result<ListView, TenantError> {
    let mut view = ListView {
        q: q.to_owned(),
        status,
        ..ListView::default()
    };
    let lifecycle = state.admin.lifecycle();
    if let Ok(id) = q.parse::<TenantId>() {
        view.items = lifecycle
            .get(id)
            .await?
            .into_iter()
            .filter(|t| status.is_none_or(|s| t.status == s))
            .collect();
        return Ok(view);
    }
    let needle = q.to_lowercase();
    let matches = |t: &TenantInfo| {
        status.is_none_or(|s| t.status == s)
            && (needle.is_empty()
                || t.slug.as_str().contains(&needle)
                || t.name.to_lowercase().contains(&needle))
    };
    let filtered = !needle.is_empty() || status.is_some();
    let mut cursor = after;
    let mut next = None;
    'pages: loop {
        let page = lifecycle
            .list(ListQuery {
                active_only: status == Some(TenantStatus::Active),
                after: cursor,
                limit: if filtered { 100 } else { PAGE_SIZE as u32 },
            })
            .await?;
        for tenant in page.items {
            view.scanned += 1;
            cursor = Some(tenant.id);
            if matches(&tenant) {
                view.items.push(tenant);
                if view.items.len() == PAGE_SIZE {
                    next = cursor;
                    break 'pages;
                }
            }
            if view.scanned >= SCAN_LIMIT {
                view.scan_capped = true;
                next = cursor;
                break 'pages;
            }
        }
        match page.next {
            Some(_) if filtered => {}
            Some(more) => {
                next = Some(more);
                break;
            }
            None => break,
        }
    }
    // A full last page has no successor: do not offer an empty one.
    if let Some(last) = next {
        let probe = lifecycle
            .list(ListQuery {
                active_only: status == Some(TenantStatus::Active),
                after: Some(last),
                limit: 1,
            })
            .await?;
        if probe.items.is_empty() {
            next = None;
        }
    }
    view.next = next.map(|n| query_string(q, status, Some(n)));
    Ok(view)
}

fn parse_list(
    params: &ListParams,
) -> Result<(String, Option<TenantStatus>, Option<TenantId>), TenantError> {
    let q: String = params
        .q
        .as_deref()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(200)
        .collect();
    let status = match params.status.as_deref().unwrap_or_default() {
        "" => None,
        raw => Some(
            raw.parse::<TenantStatus>()
                .map_err(|_| TenantError::invalid("status", format!("{raw:?} is not a status")))?,
        ),
    };
    let after =
        match params.after.as_deref().unwrap_or_default() {
            "" => None,
            raw => Some(raw.parse::<TenantId>().map_err(|_| {
                TenantError::invalid("after", format!("{raw:?} is not a tenant id"))
            })?),
        };
    Ok((q, status, after))
}

async fn list_view(
    state: &ConsoleState,
    base: &Base,
    params: &ListParams,
) -> Result<ListView, TenantError> {
    let (q, status, after) = parse_list(params)?;
    let mut view = search(state, &q, status, after).await?;
    let list = base.at("/tenants");
    view.src = format!("{list}{}", query_string(&q, status, after));
    view.next = view.next.map(|query| format!("{list}{query}"));
    if after.is_some() {
        view.first = Some(format!("{list}{}", query_string(&q, status, None)));
    }
    Ok(view)
}

pub(crate) async fn tenants(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    let view = match list_view(&state, &base, &params).await {
        Ok(view) => view,
        Err(e) => return failure(&base, Some(&session), &e),
    };
    if is_fragment(&headers) {
        return html(StatusCode::OK, pages::tenant_list(&base, &view));
    }
    let body = pages::tenants_page(&base, &session, &view, None, params.done.as_deref());
    page(&base, &session, "Tenants", StatusCode::OK, &body)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CreateParams {
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    plan: String,
}

pub(crate) async fn create(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Form(form): Form<CreateParams>,
) -> Response {
    let result = async {
        let slug =
            form.slug.trim().parse::<Slug>().map_err(|e| {
                TenantError::invalid("slug", format!("{:?}: {e}", form.slug.trim()))
            })?;
        let mut command = CreateTenant::new(slug, form.name.trim());
        let plan = form.plan.trim();
        command.plan = (!plan.is_empty()).then(|| plan.to_owned());
        state.admin.lifecycle().create(command).await
    }
    .await;
    match result {
        Ok(outcome) => {
            let tenant = outcome.into_tenant();
            tracing::info!(tenant_id = %tenant.id, "console: tenant created");
            Redirect::to(&base.at(&format!("/tenants/{}?done=created", tenant.id))).into_response()
        }
        Err(e) => {
            let (status, _) = classify(&e);
            if status.is_server_error() {
                return failure(&base, Some(&session), &e);
            }
            let view = match list_view(&state, &base, &ListParams::default()).await {
                Ok(view) => view,
                Err(e) => return failure(&base, Some(&session), &e),
            };
            let sent = CreateForm {
                slug: form.slug,
                name: form.name,
                plan: form.plan,
                error: e.to_string(),
            };
            let body = pages::tenants_page(&base, &session, &view, Some(&sent), None);
            page(&base, &session, "Tenants", status, &body)
        }
    }
}

// ----- one tenant -----

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TenantParams {
    done: Option<String>,
}

async fn tenant_view(state: &ConsoleState, raw: &str) -> Result<TenantView, TenantError> {
    let tenant = crate::api::find(state.admin.lifecycle(), raw)
        .await
        .map_err(|e| e.0)?;
    let domains = state.admin.lifecycle().domains(tenant.id).await?;
    let effective = state.admin.config().effective(tenant.id).await?;
    let overrides = state.admin.config().overrides(tenant.id).await?;
    let placement = match &state.placement {
        Some(source) => match source.placement(&tenant).await {
            Ok(placement) => placement.map(Ok),
            Err(e) => Some(Err(format!("the placement cannot be read: {e}"))),
        },
        None => None,
    };
    Ok(TenantView {
        history: state.hub.history.of(tenant.id),
        tenant,
        domains,
        effective,
        overrides,
        placement,
        has_metrics: state.has_metrics,
        action_error: None,
        field_error: None,
    })
}

fn tenant_page(
    base: &Base,
    session: &Session,
    view: &TenantView,
    status: StatusCode,
    done: Option<&str>,
) -> Response {
    let body = pages::tenant_page(base, session, view, done);
    page(base, session, &view.tenant.name, status, &body)
}

pub(crate) async fn tenant(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Query(params): Query<TenantParams>,
) -> Response {
    match tenant_view(&state, &raw).await {
        Ok(view) => tenant_page(
            &base,
            &session,
            &view,
            StatusCode::OK,
            params.done.as_deref(),
        ),
        Err(e) => failure(&base, Some(&session), &e),
    }
}

pub(crate) async fn history(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    match crate::api::find(state.admin.lifecycle(), &raw).await {
        Ok(tenant) => html(
            StatusCode::OK,
            pages::status(&tenant, &state.hub.history.of(tenant.id)),
        ),
        Err(e) => failure(&base, Some(&session), &e.0),
    }
}

pub(crate) async fn tenant_live(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    match crate::api::find(state.admin.lifecycle(), &raw).await {
        Ok(tenant) => {
            let live = state.live();
            let markup = maud::html! {
                @if let Some(error) = live.error() { p.error { (error) } }
                (pages::charts(&tenant.id.to_string(), &live.points(), live.capacity()))
            };
            html(StatusCode::OK, markup)
        }
        Err(e) => failure(&base, Some(&session), &e.0),
    }
}

/// After an action: back to the tenant page with a notice, or the page with the error.
async fn after_action(
    state: &ConsoleState,
    base: &Base,
    session: &Session,
    raw: &str,
    result: Result<TenantInfo, TenantError>,
    done: &str,
) -> Response {
    match result {
        Ok(tenant) => {
            Redirect::to(&base.at(&format!("/tenants/{}?done={done}", tenant.id))).into_response()
        }
        Err(error) => {
            let (status, _) = classify(&error);
            match tenant_view(state, raw).await {
                Ok(mut view) if !status.is_server_error() => {
                    view.action_error = Some(error.to_string());
                    tenant_page(base, session, &view, status, None)
                }
                _ => failure(base, Some(session), &error),
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    confirmed: Option<String>,
}

pub(crate) async fn activate(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let result = async {
        let id = crate::api::find(state.admin.lifecycle(), &raw)
            .await
            .map_err(|e| e.0)?
            .id;
        Ok(state.admin.lifecycle().activate(id).await?.into_tenant())
    }
    .await;
    after_action(&state, &base, &session, &raw, result, "activated").await
}

/// The tenant `raw` names once the form confirms `action` (`Err`: the confirmation page, or the
/// failure to find the tenant).
async fn confirmed(
    state: &ConsoleState,
    base: &Base,
    session: &Session,
    raw: &str,
    form: &ActionForm,
    (action, title): (&str, &str),
    reason: Option<&str>,
) -> Result<TenantInfo, Response> {
    let tenant = crate::api::find(state.admin.lifecycle(), raw)
        .await
        .map_err(|e| failure(base, Some(session), &e.0))?;
    if form.confirmed.as_deref() != Some("yes") {
        let body = pages::confirm(base, session, &tenant, action, reason);
        return Err(page(base, session, title, StatusCode::OK, &body));
    }
    Ok(tenant)
}

pub(crate) async fn suspend(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let reason = form
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let action = ("suspend", "Suspend?");
    let tenant = match confirmed(
        &state,
        &base,
        &session,
        &raw,
        &form,
        action,
        reason.as_deref(),
    )
    .await
    {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let result = state
        .admin
        .lifecycle()
        .suspend(tenant.id, reason)
        .await
        .map(tenancy_lifecycle::Outcome::into_tenant);
    if result.is_ok() {
        tracing::info!(tenant_id = %tenant.id, "console: tenant suspended");
    }
    after_action(&state, &base, &session, &raw, result, "suspended").await
}

pub(crate) async fn deactivate(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let action = ("deactivate", "Deactivate?");
    let tenant = match confirmed(&state, &base, &session, &raw, &form, action, None).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let result = state
        .admin
        .lifecycle()
        .deactivate(tenant.id)
        .await
        .map(tenancy_lifecycle::Outcome::into_tenant);
    if result.is_ok() {
        tracing::info!(tenant_id = %tenant.id, "console: tenant deactivated");
    }
    after_action(&state, &base, &session, &raw, result, "deactivated").await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PlanForm {
    #[serde(default)]
    plan: String,
}

/// Sets the tenant's plan; an empty one clears it.
pub(crate) async fn set_plan(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Form(form): Form<PlanForm>,
) -> Response {
    let result = async {
        let id = crate::api::find(state.admin.lifecycle(), &raw)
            .await
            .map_err(|e| e.0)?
            .id;
        let plan = form.plan.trim();
        let update = UpdateTenant {
            plan: Some((!plan.is_empty()).then(|| plan.to_owned())),
            ..UpdateTenant::default()
        };
        Ok(state
            .admin
            .lifecycle()
            .update(id, &update)
            .await?
            .into_tenant())
    }
    .await;
    if let Ok(tenant) = &result {
        tracing::info!(tenant_id = %tenant.id, plan = ?tenant.plan, "console: plan set");
    }
    after_action(&state, &base, &session, &raw, result, "plan_saved").await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConfigForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    new: Option<String>,
}

pub(crate) async fn set_config(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Form(form): Form<ConfigForm>,
) -> Response {
    let tenant = match crate::api::find(state.admin.lifecycle(), &raw).await {
        Ok(tenant) => tenant,
        Err(e) => return failure(&base, Some(&session), &e.0),
    };
    let key = form.key.trim().to_owned();
    let field_error = |field: &'static str, message: String| FieldError {
        key: key.clone(),
        new: form.new.is_some(),
        field,
        message,
        value: form.value.clone(),
    };
    let error = if let Err(e) = tenancy_overrides::validate_key(&key) {
        Some(field_error("key", e.to_string()))
    } else {
        match serde_json::from_str::<serde_json::Value>(&form.value) {
            Err(e) => Some(field_error(
                "value",
                format!("not valid JSON: {e} (a text needs quotes: \"dark\")"),
            )),
            Ok(value) => match state.admin.config().set(tenant.id, &key, value).await {
                Ok(_) => None,
                Err(e @ TenantError::Configuration(_)) => Some(field_error("value", e.to_string())),
                Err(e) => return failure(&base, Some(&session), &e),
            },
        }
    };
    let Some(error) = error else {
        tracing::info!(tenant_id = %tenant.id, key, "console: override set");
        return Redirect::to(&base.at(&format!("/tenants/{}?done=config_set", tenant.id)))
            .into_response();
    };
    match tenant_view(&state, &raw).await {
        Ok(mut view) => {
            view.field_error = Some(error);
            tenant_page(
                &base,
                &session,
                &view,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            )
        }
        Err(e) => failure(&base, Some(&session), &e),
    }
}

pub(crate) async fn remove_config(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    Form(form): Form<ConfigForm>,
) -> Response {
    let result = async {
        let tenant = crate::api::find(state.admin.lifecycle(), &raw)
            .await
            .map_err(|e| e.0)?;
        let _change = state
            .admin
            .config()
            .remove(tenant.id, form.key.trim())
            .await?;
        Ok(tenant)
    }
    .await;
    after_action(&state, &base, &session, &raw, result, "config_removed").await
}

// ----- live -----

pub(crate) async fn live(
    State(state): State<ConsoleState>,
    base: Base,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let live = state.live();
    let points = live.points();
    let mut rows = Vec::new();
    for label in live::busiest(&points, LIVE_TENANTS) {
        let tenant = match label.parse::<TenantId>() {
            Ok(id) => state.admin.lifecycle().get(id).await.ok().flatten(),
            Err(_) => None,
        };
        rows.push(LiveRow { label, tenant });
    }
    let window = match state.window.as_secs() {
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    };
    let fragment = pages::live(
        &base,
        &rows,
        &points,
        live.capacity(),
        &live::refusals(&points),
        live.error().as_deref(),
        &window,
    );
    if is_fragment(&headers) {
        return html(StatusCode::OK, fragment);
    }
    let body = pages::live_page(&base, &fragment, state.has_metrics);
    page(&base, &session, "Live", StatusCode::OK, &body)
}

/// `GET /events`: server-sent events, `tenant` (data: the tenant's id, or `*` after missed
/// events) and `metrics` (data: `sample`).
///
/// The stream ends at the first push after its session ended (signed out or expired).
pub(crate) async fn events(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.hub.push.subscribe();
    let stream = futures_util::stream::unfold(receiver, move |mut receiver| {
        let (state, session) = (state.clone(), Arc::clone(&session.id));
        async move {
            let pushed = receiver.recv().await;
            state.sessions.get(&session)?;
            let event = match pushed {
                Ok(Push::Tenant(Some(id))) => Event::default().event("tenant").data(id.to_string()),
                Ok(Push::Tenant(None)) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    Event::default().event("tenant").data("*")
                }
                Ok(Push::Metrics) => Event::default().event("metrics").data("sample"),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), receiver))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ----- assets -----

pub(crate) async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}

pub(crate) async fn style() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

pub(crate) async fn not_found(base: Base) -> Response {
    let body = maud::html! {
        h1 { "Not found" }
        p { a href=(base.at("/tenants")) { "Back to the tenants" } }
    };
    html(
        StatusCode::NOT_FOUND,
        pages::layout(&base, "Not found", None, &body),
    )
}
