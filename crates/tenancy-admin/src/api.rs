//! The admin JSON API, behind the admin bearer token.
//!
//! Every change goes through the lifecycle or config service, which invalidate the validator and
//! overrides caches: the next request sees it.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tenancy_core::{
    CreateTenant, DomainChange, DomainName, ListQuery, Slug, TenantError, TenantId, TenantInfo,
    TenantRef, UpdateTenant,
};
use tenancy_lifecycle::TenantLifecycle;
use tenancy_resolution::bearer_token;

use crate::Admin;
use crate::http::{ApiError, JsonBody, PathParams, error_response, parse_json};

type AdminState = Admin;

/// The admin routes, each requiring `Authorization: Bearer <token>`.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/tenants", get(list).post(create))
        .route("/tenants/{tenant}", get(show).patch(update))
        .route("/tenants/{tenant}/activate", post(activate))
        .route("/tenants/{tenant}/suspend", post(suspend))
        .route("/tenants/{tenant}/deactivate", post(deactivate))
        .route(
            "/tenants/{tenant}/config/{key}",
            put(set_config).delete(unset_config),
        )
        .route("/tenants/{tenant}/domains", get(list_domains))
        .route(
            "/tenants/{tenant}/domains/{domain}",
            put(add_domain).delete(remove_domain),
        )
        .route(
            "/tenants/{tenant}/domains/{domain}/primary",
            post(make_primary),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    match bearer_token(request.headers()) {
        Some(token) if state.token_matches(token) => next.run(request).await,
        _ => error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs `Authorization: Bearer <admin token>`",
        ),
    }
}

/// A tenant named in a path: its id or its slug.
pub(crate) async fn find(lifecycle: &TenantLifecycle, raw: &str) -> Result<TenantInfo, ApiError> {
    let tenant = match raw.parse::<TenantId>() {
        Ok(id) => TenantRef::Id(id),
        Err(_) => TenantRef::Slug(raw.parse::<Slug>().map_err(|e| {
            TenantError::invalid(
                "tenant",
                format!("{raw:?} is neither a tenant id nor a slug: {e}"),
            )
        })?),
    };
    Ok(lifecycle
        .find(&tenant)
        .await?
        .ok_or(TenantError::NotFound { tenant })?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    active: bool,
    limit: Option<u32>,
    after: Option<TenantId>,
}

async fn list(
    State(state): State<AdminState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = match params {
        Ok(params) => params,
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &e.body_text(),
            ));
        }
    };
    let query = ListQuery {
        active_only: params.active,
        after: params.after,
        limit: params.limit.unwrap_or(tenancy_core::DEFAULT_PAGE_SIZE),
    };
    let page = state.lifecycle.list(query).await?;
    Ok(Json(json!({ "items": page.items, "next": page.next })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    slug: Slug,
    name: String,
    #[serde(default)]
    plan: Option<String>,
}

async fn create(
    State(state): State<AdminState>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let mut command = CreateTenant::new(body.slug, body.name);
    command.plan = body.plan;
    let tenant = state.lifecycle.create(command).await?.into_tenant();
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

async fn show(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    find(&state.lifecycle, &tenant).await.map(Json)
}

async fn update(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<Json<TenantInfo>, ApiError> {
    let id = find(&state.lifecycle, &tenant).await?.id;
    Ok(Json(state.lifecycle.update(id, &body).await?.into_tenant()))
}

async fn activate(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    let id = find(&state.lifecycle, &tenant).await?.id;
    Ok(Json(state.lifecycle.activate(id).await?.into_tenant()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn suspend(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // An empty body suspends without a reason.
    let body: SuspendBody = match optional_json(&body) {
        Ok(body) => body,
        Err(rejection) => return Ok(*rejection),
    };
    let id = find(&state.lifecycle, &tenant).await?.id;
    let tenant = state
        .lifecycle
        .suspend(id, body.reason)
        .await?
        .into_tenant();
    Ok(Json(tenant).into_response())
}

async fn deactivate(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    let id = find(&state.lifecycle, &tenant).await?.id;
    Ok(Json(state.lifecycle.deactivate(id).await?.into_tenant()))
}

async fn set_config(
    State(state): State<AdminState>,
    PathParams((tenant, key)): PathParams<(String, String)>,
    JsonBody(value): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let id = find(&state.lifecycle, &tenant).await?.id;
    let change = state.config.set(id, &key, value).await?;
    Ok(Json(
        json!({ "key": key, "old": change.old, "new": change.new }),
    ))
}

async fn unset_config(
    State(state): State<AdminState>,
    PathParams((tenant, key)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = find(&state.lifecycle, &tenant).await?.id;
    let change = state.config.remove(id, &key).await?;
    Ok(Json(
        json!({ "key": key, "old": change.old, "new": change.new }),
    ))
}

/// A JSON body that may be left out: an empty (or blank) body is `T::default()`.
fn optional_json<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

/// A domain named in a path.
fn domain(raw: &str) -> Result<DomainName, ApiError> {
    Ok(raw
        .parse::<DomainName>()
        .map_err(|e| TenantError::invalid("domain", format!("{raw:?}: {e}")))?)
}

fn domains_body(change: &DomainChange) -> Value {
    json!({ "domains": change.domains })
}

async fn list_domains(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let id = find(&state.lifecycle, &tenant).await?.id;
    let domains = state.lifecycle.domains(id).await?;
    Ok(Json(json!({ "domains": domains })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDomainBody {
    #[serde(default)]
    primary: bool,
}

/// `PUT`: 201 when the domain was added, 200 when the tenant had it; 409 when another tenant
/// owns it.
async fn add_domain(
    State(state): State<AdminState>,
    PathParams((tenant, raw)): PathParams<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // An empty body adds the domain without making it primary.
    let body: AddDomainBody = match optional_json(&body) {
        Ok(body) => body,
        Err(rejection) => return Ok(*rejection),
    };
    let domain = domain(&raw)?;
    let id = find(&state.lifecycle, &tenant).await?.id;
    let before = state.lifecycle.domains(id).await?;
    let change = state
        .lifecycle
        .add_domain(id, &domain, body.primary)
        .await?
        .into_result()?;
    let added = !before.iter().any(|d| d.domain == domain);
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(domains_body(&change))).into_response())
}

async fn remove_domain(
    State(state): State<AdminState>,
    PathParams((tenant, raw)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let domain = domain(&raw)?;
    let id = find(&state.lifecycle, &tenant).await?.id;
    let change = state
        .lifecycle
        .remove_domain(id, &domain)
        .await?
        .into_result()?;
    Ok(Json(domains_body(&change)))
}

async fn make_primary(
    State(state): State<AdminState>,
    PathParams((tenant, raw)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let domain = domain(&raw)?;
    let id = find(&state.lifecycle, &tenant).await?.id;
    let change = state
        .lifecycle
        .set_primary_domain(id, &domain)
        .await?
        .into_result()?;
    Ok(Json(domains_body(&change)))
}
