//! `tenancy demo`: a tenant-aware application on the tenancy stack, seeded with three tenants.
//!
//! Routes:
//! - `GET /api/whoami` and `GET /api/config`, also under `/tenants/{slug}/api/...`: behind the
//!   resolving middleware in require-tenant mode (403 with the reason without an active tenant),
//!   membership checked for authenticated users on untrusted resolvers;
//! - `GET /healthz`: the stack's aggregated health (200 healthy, 503 otherwise);
//! - `GET /metrics`: the stack's metrics in the Prometheus text format, open like `/healthz`
//!   (a production service serves them on an internal port; the demo has one port);
//! - `/admin/...`: the admin API (see the crate documentation);
//! - `/console`: the operator console (`tenancy-admin`'s, feature `console`), signed in to with
//!   the admin token.
//!
//! ```no_run
//! use tenancy_cli::demo::{self, DemoOptions};
//!
//! # async fn example() -> Result<(), tenancy_cli::CliError> {
//! let demo = demo::start(DemoOptions::new("127.0.0.1:0".parse().unwrap(), "sqlite://demo.db")).await?;
//! println!("{}", demo.banner()?);
//! demo.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tenancy::core::{
    CreateTenant, HealthStatus, ListQuery, Slug, TenantError, TenantInfo, TenantRef, TenantStatus,
};
use tenancy::overrides::ConfigService;
use tenancy::resolution::{AuthenticatedUser, Builtin, MembershipMode, ResolutionConfig, Tenant};
use tenancy::{Tenancy, TenancyConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{self, DemoMembership, TokenKeys};
use crate::error::CliError;
use crate::serve::ServeLimits;
use crate::stack;
use tenancy_admin::Admin;
use tenancy_admin::console::Console;
use tenancy_admin::http::ApiError;

/// The base domain of the demo's subdomain resolver (`acme.localhost`).
pub const BASE_DOMAIN: &str = "localhost";

/// The custom domain the demo gives `acme` (`.test` is reserved for testing: it is nobody's).
pub const ACME_DOMAIN: &str = "acme.test";

/// How long the demo caches a tenant and its configuration.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// How the demo starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoOptions {
    /// Where to listen (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The store: `sqlite://FILE` or `postgres://...`.
    pub database: String,
    /// The admin API's bearer token; generated when `None`.
    pub admin_token: Option<String>,
    /// The HS256 secret of user tokens (at least 32 bytes); generated when `None`.
    pub jwt_secret: Option<String>,
    /// The limits of the HTTP edge (timeouts, connection cap, shutdown deadline).
    pub limits: ServeLimits,
}

impl DemoOptions {
    /// Options for `addr` and `database`, with generated secrets.
    #[must_use]
    pub fn new(addr: SocketAddr, database: impl Into<String>) -> Self {
        Self {
            addr,
            database: database.into(),
            admin_token: None,
            jwt_secret: None,
            limits: ServeLimits::default(),
        }
    }
}

/// The tenancy configuration of the demo: the five resolvers (the token claim trusted), the
/// subdomain under [`BASE_DOMAIN`], custom domains, and two configuration defaults for
/// `/api/config` to show.
fn config(database: &str) -> Result<TenancyConfig, CliError> {
    let mut config = TenancyConfig::default();
    config.store = stack::store(database)?;
    config.resolution = ResolutionConfig {
        resolvers: Some(Builtin::ALL.to_vec()),
        subdomain_base_domain: Some(BASE_DOMAIN.to_owned()),
        // The token claim is trusted (the default); a tenant named any other way needs an
        // authenticated user to be a member, and stays open to anonymous requests.
        membership: MembershipMode::Authenticated,
        ..ResolutionConfig::default()
    };
    // Changes made through the admin API reach the caches at once; changes that `tenancy`
    // commands make from another process reach them when the entries expire (SQLite has no change
    // feed), so the demo keeps them briefly.
    config.resolution.validator.cache_ttl = CACHE_TTL;
    config.overrides.cache_ttl = CACHE_TTL;
    config
        .overrides
        .defaults
        .insert("theme".into(), "light".into());
    config
        .overrides
        .defaults
        .insert("max_users".into(), 10.into());
    Ok(config)
}

/// A running demo server.
#[derive(Debug)]
pub struct Demo {
    addr: SocketAddr,
    admin_token: String,
    jwt_secret: String,
    keys: Arc<TokenKeys>,
    seeded: bool,
    tenants: Vec<TenantInfo>,
    membership: Vec<(String, Vec<String>)>,
    tenancy: Arc<Tenancy>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    /// Drains the metrics recorder while nobody scrapes it.
    _upkeep: Option<crate::exporter::Upkeep>,
    /// Held while the demo serves a SQLite file: a second demo on it refuses to start.
    _lock: Option<std::fs::File>,
}

/// Takes the lock that keeps a second demo off the SQLite file of `database` (a file beside it,
/// `<file>.demo-lock`, locked exclusively for as long as the demo runs; the system releases it
/// when the process ends, also when it is killed). Two demos on one file would each serve from
/// caches the other's changes never invalidate (SQLite has no change feed).
fn lock_sqlite_file(database: &str) -> Result<Option<std::fs::File>, CliError> {
    let Some(file) = stack::sqlite_file(database) else {
        return Ok(None);
    };
    let mut path = file.as_os_str().to_owned();
    path.push(".demo-lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            CliError::io(
                format!("opening {}", std::path::Path::new(&path).display()),
                e,
            )
        })?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Usage(format!(
            "another `tenancy demo` serves {}: two demos on one SQLite file would serve stale \
             data to each other (SQLite has no change feed); stop the other one, or give this one \
             another --database",
            file.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(CliError::io(
            format!("locking {}", std::path::Path::new(&path).display()),
            e,
        )),
    }
}

/// Builds the stack on `options.database`, seeds an empty store with acme and globex (active) and
/// initech (suspended), and serves on `options.addr` until [`Demo::shutdown`].
///
/// # Errors
/// [`CliError::Usage`] for an invalid database URL or a short JWT secret; the stack's error when
/// the store cannot be opened; [`CliError::Io`] when the address cannot be bound.
pub async fn start(options: DemoOptions) -> Result<Demo, CliError> {
    let admin_token = match options.admin_token {
        Some(token) if token.trim().is_empty() => {
            return Err(CliError::Usage(
                "the admin token (TENANCY_ADMIN_TOKEN or --admin-token) must not be empty".into(),
            ));
        }
        // The bearer token of a request is read trimmed: such a token could never match.
        Some(token) if token.trim() != token => {
            return Err(CliError::Usage(
                "the admin token (TENANCY_ADMIN_TOKEN or --admin-token) must not start or end \
                 with whitespace"
                    .into(),
            ));
        }
        Some(token) => token,
        None => auth::random_secret(),
    };
    let jwt_secret = options.jwt_secret.unwrap_or_else(auth::random_secret);
    let keys = Arc::new(TokenKeys::new(&jwt_secret)?);
    let config = config(&options.database)?;
    let lock = lock_sqlite_file(&options.database)?;

    let listener = TcpListener::bind(options.addr)
        .await
        .map_err(|e| CliError::io(format!("binding {}", options.addr), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::io("reading the bound address", e))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the demo serves plain HTTP beyond this host: the admin token, bearer tokens and the \
             console's session cookie cross the network unencrypted"
        );
    }

    // Before the stack: its parts register their metrics when they are built.
    let recorder = crate::exporter::recorder();
    if let Err(reason) = &recorder {
        tracing::warn!(%reason, "no Prometheus recorder: /metrics answers 503");
    }
    let tenancy = Arc::new(
        tenancy::StackBuilder::new(config)
            .membership(Arc::new(DemoMembership::seeded()))
            .build()
            .await?,
    );
    let upkeep = recorder.clone().ok().map(crate::exporter::Upkeep::spawn);
    let result = prepare(&tenancy, &admin_token, &keys, recorder).await;
    let (app, seeded, tenants) = match result {
        Ok(prepared) => prepared,
        Err(e) => {
            if let Err(shutdown) = tenancy.shutdown().await {
                tracing::warn!(error = %shutdown, "shutting the stack down after a failed start");
            }
            return Err(e);
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = options.limits;
    let server = tokio::spawn(crate::serve::serve(listener, app, limits, async {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "demo listening");
    Ok(Demo {
        addr,
        admin_token,
        jwt_secret,
        keys,
        seeded,
        tenants,
        membership: DemoMembership::seeded().describe(),
        tenancy,
        stop: Some(stop),
        server,
        _upkeep: upkeep,
        _lock: lock,
    })
}

/// Seeds the store when empty, and builds the application.
async fn prepare(
    tenancy: &Arc<Tenancy>,
    admin_token: &str,
    keys: &Arc<TokenKeys>,
    recorder: Result<PrometheusHandle, String>,
) -> Result<(Router, bool, Vec<TenantInfo>), CliError> {
    let lifecycle = Arc::clone(tenancy.lifecycle());
    let seeded = seed(tenancy).await?;
    let tenants = lifecycle.list(ListQuery::default()).await?.items;
    let admin = Admin::new(admin_token, lifecycle, Arc::clone(tenancy.config()))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let app = app(tenancy, keys, &admin, recorder)?;
    Ok((app, seeded, tenants))
}

/// The override set on `initech` as the seed's last step: a store holding `acme` without it holds
/// a seed a previous start left half done.
const SEEDED: &str = "demo.seeded";

/// Creates acme and globex (active) and initech (suspended) when the store has no tenant, and
/// completes a seed that a previous start left half done (stopped between two steps). Every step
/// is idempotent: a create resumes a tenant left provisioning.
async fn seed(tenancy: &Tenancy) -> Result<bool, CliError> {
    let lifecycle = Arc::clone(tenancy.lifecycle());
    let first = lifecycle
        .list(ListQuery {
            limit: 1,
            ..ListQuery::default()
        })
        .await?;
    if !first.items.is_empty() {
        let acme = lifecycle.find(&TenantRef::Slug(seed_slug("acme")?)).await?;
        let initech = lifecycle
            .find(&TenantRef::Slug(seed_slug("initech")?))
            .await?;
        let done = match initech {
            Some(initech) => tenancy.config().get(initech.id, SEEDED).await?.is_some(),
            None => false,
        };
        // Someone else's tenants, or a seed that finished: leave them be.
        if acme.is_none() || done {
            return Ok(false);
        }
        tracing::warn!("completing the demo seed a previous start left half done");
    }
    for (slug, name, plan) in [
        ("acme", "Acme Corporation", "pro"),
        ("globex", "Globex Corporation", "free"),
        ("initech", "Initech", "free"),
    ] {
        let slug = seed_slug(slug)?;
        let tenant = match lifecycle
            .create(CreateTenant::new(slug, name).with_plan(plan))
            .await
        {
            Ok(outcome) => outcome.into_tenant(),
            // Made by the start that stopped half way.
            Err(TenantError::SlugConflict { .. }) => lifecycle
                .find(&TenantRef::Slug(slug))
                .await?
                .ok_or_else(|| CliError::Usage(format!("seed tenant {slug} vanished")))?,
            Err(other) => return Err(other.into()),
        };
        if tenant.slug.as_str() == "acme" {
            let domain = ACME_DOMAIN
                .parse()
                .map_err(|e| CliError::Usage(format!("seed domain {ACME_DOMAIN}: {e}")))?;
            // Adding it again (a seed completed after a stop) changes nothing.
            lifecycle
                .add_domain(tenant.id, &domain, true)
                .await?
                .into_result()?;
        }
        if tenant.slug.as_str() == "initech" {
            if tenant.status == TenantStatus::Active {
                let _ = lifecycle
                    .suspend(tenant.id, Some("demo: invoices unpaid".into()))
                    .await?
                    .into_tenant();
            }
            tenancy
                .config()
                .set(tenant.id, SEEDED, serde_json::Value::Bool(true))
                .await?
                .into_result()?;
        }
    }
    Ok(true)
}

fn seed_slug(slug: &str) -> Result<Slug, CliError> {
    slug.parse()
        .map_err(|e| CliError::Usage(format!("seed slug {slug}: {e}")))
}

/// The whole application: tenant API, health, admin API.
fn app(
    tenancy: &Arc<Tenancy>,
    keys: &Arc<TokenKeys>,
    admin: &Admin,
    recorder: Result<PrometheusHandle, String>,
) -> Result<Router, CliError> {
    let api = Router::new()
        .route("/whoami", get(whoami))
        .route("/config", get(effective_config));
    // Route layers: a path no route matches is a 404, not a request without a tenant.
    let tenant_api = Router::new()
        .nest("/api", api.clone())
        .nest("/tenants/{slug}/api", api)
        // Each tenant's rate and requests in flight, by its plan (`tenancy.limits`).
        .route_layer(tenancy.limit_layer())
        .route_layer(tenancy.layer().require_tenant())
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(keys),
            auth::authenticate,
        ))
        .layer(Extension(Arc::clone(tenancy.config())));
    // The operator console: signed in to with the admin token; the demo serves plain HTTP, so
    // its session cookie cannot be `Secure`.
    let events = Arc::clone(tenancy);
    let mut console = Console::new(admin.clone())
        .events(move || events.subscribe())
        .secure_cookie(false);
    if let Ok(handle) = recorder.clone() {
        console = console.metrics(move || handle.render());
    }
    Ok(Router::new()
        .merge(tenant_api)
        .route("/healthz", get(healthz).with_state(Arc::clone(tenancy)))
        .route(
            "/metrics",
            get(crate::exporter::render).with_state(recorder),
        )
        .nest("/admin", admin.router())
        .nest("/console", console.router())
        .fallback(tenancy_admin::http::not_found)
        .method_not_allowed_fallback(tenancy_admin::http::method_not_allowed))
}

async fn whoami(
    tenant: Tenant,
    user: Option<Extension<AuthenticatedUser>>,
) -> Json<serde_json::Value> {
    Json(json!({
        "id": tenant.id,
        "slug": tenant.slug,
        "name": tenant.name,
        "status": tenant.status,
        "plan": tenant.plan,
        "resolved_by": tenant.resolved_by(),
        "user": user.map(|Extension(user)| user.0),
    }))
}

async fn effective_config(
    tenant: Tenant,
    Extension(config): Extension<Arc<ConfigService>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let effective = config.effective(tenant.id).await?;
    Ok(Json(json!({ "tenant_id": tenant.id, "config": effective })))
}

async fn healthz(State(tenancy): State<Arc<Tenancy>>) -> Response {
    let report = tenancy.health().await;
    let status = if report.status == HealthStatus::Healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

impl Demo {
    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API's bearer token.
    #[must_use]
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The HS256 secret of user tokens.
    #[must_use]
    pub fn jwt_secret(&self) -> &str {
        &self.jwt_secret
    }

    /// Whether this start seeded the store (it was empty).
    #[must_use]
    pub fn seeded(&self) -> bool {
        self.seeded
    }

    /// The tenants in the store at start (first page).
    #[must_use]
    pub fn tenants(&self) -> &[TenantInfo] {
        &self.tenants
    }

    /// The tenant with `slug` among [`tenants`](Self::tenants).
    #[must_use]
    pub fn tenant(&self, slug: &str) -> Option<&TenantInfo> {
        self.tenants.iter().find(|t| t.slug.as_str() == slug)
    }

    /// The stack the demo runs on.
    #[must_use]
    pub fn tenancy(&self) -> &Arc<Tenancy> {
        &self.tenancy
    }

    /// A user token for `sub`, naming `tenant` in its `tenant_id` claim when given (valid 24 h).
    ///
    /// # Errors
    /// When signing fails.
    pub fn token(
        &self,
        sub: &str,
        tenant: Option<tenancy::core::TenantId>,
    ) -> Result<String, CliError> {
        self.keys.issue(sub, tenant)
    }

    /// What `tenancy demo` prints at start: tenants, secrets, members and ready-to-paste curl
    /// lines.
    ///
    /// # Errors
    /// When signing the example tokens fails.
    pub fn banner(&self) -> Result<String, CliError> {
        use std::fmt::Write as _;
        let base = format!("http://{}", self.addr);
        let mut out = String::new();
        let _ = writeln!(out, "tenancy demo listening on {base}");
        let _ = writeln!(
            out,
            "{}",
            if self.seeded {
                "The store was empty: seeded acme and globex (active) and initech (suspended)."
            } else {
                "The store already had tenants: nothing seeded."
            }
        );
        let _ = writeln!(out, "\nTenants:");
        out.push_str(&crate::output::tenant_table(&self.tenants));
        let _ = writeln!(out, "\nAdmin token: {}", self.admin_token);
        let _ = writeln!(
            out,
            "Console: {base}/console (sign in with the admin token)"
        );
        let _ = writeln!(out, "JWT secret (HS256): {}", self.jwt_secret);
        let _ = writeln!(
            out,
            "Members (checked when a token's user reaches a tenant by header, subdomain or path):"
        );
        for (user, slugs) in &self.membership {
            let _ = writeln!(out, "  {user}: {}", slugs.join(", "));
        }
        let _ = writeln!(out, "\nTry:");
        let acme = self.tenant("acme").or_else(|| self.tenants.first());
        if let Some(acme) = acme {
            let (id, slug) = (acme.id, &acme.slug);
            let alice = self.keys.issue("alice", Some(id))?;
            let bob = self.keys.issue("bob", None)?;
            let _ = writeln!(
                out,
                "  # by header (tenant id)\n  curl -s -H 'x-tenant-id: {id}' {base}/api/whoami"
            );
            let _ = writeln!(
                out,
                "  # by subdomain\n  curl -s -H 'Host: {slug}.{BASE_DOMAIN}' {base}/api/whoami"
            );
            let _ = writeln!(
                out,
                "  # by custom domain\n  curl -s -H 'Host: {ACME_DOMAIN}' {base}/api/whoami"
            );
            let _ = writeln!(
                out,
                "  # by path\n  curl -s {base}/tenants/{slug}/api/whoami"
            );
            let _ = writeln!(
                out,
                "  # by JWT (tenant_id claim, user alice; valid 24 h)\n  curl -s -H 'Authorization: Bearer {alice}' {base}/api/whoami"
            );
            let _ = writeln!(
                out,
                "  # membership: bob is not a member of {slug}: 403\n  curl -s -H 'Authorization: Bearer {bob}' -H 'x-tenant-id: {id}' {base}/api/whoami"
            );
            let _ = writeln!(
                out,
                "  # effective configuration\n  curl -s {base}/tenants/{slug}/api/config"
            );
        }
        if let Some(initech) = self.tenant("initech") {
            let _ = writeln!(
                out,
                "  # a suspended tenant: 403\n  curl -s -i {base}/tenants/{}/api/whoami",
                initech.slug
            );
        }
        let token = &self.admin_token;
        let _ = writeln!(out, "  # health\n  curl -s {base}/healthz");
        let _ = writeln!(
            out,
            "  # metrics (Prometheus text), and the busiest tenants\n  curl -s {base}/metrics\n  tenancy top --url {base}/metrics"
        );
        let _ = writeln!(
            out,
            "  # admin: list, create, suspend, set a config value, add a domain"
        );
        let _ = writeln!(
            out,
            "  curl -s -H 'Authorization: Bearer {token}' {base}/admin/tenants"
        );
        let _ = writeln!(
            out,
            "  curl -s -H 'Authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"slug\":\"umbrella\",\"name\":\"Umbrella\",\"plan\":\"pro\"}}' {base}/admin/tenants"
        );
        let _ = writeln!(
            out,
            "  curl -s -H 'Authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"reason\":\"unpaid\"}}' {base}/admin/tenants/umbrella/suspend"
        );
        let _ = writeln!(
            out,
            "  curl -s -X PUT -H 'Authorization: Bearer {token}' -H 'content-type: application/json' -d '\"dark\"' {base}/admin/tenants/globex/config/theme"
        );
        let _ = writeln!(
            out,
            "  curl -s -X PUT -H 'Authorization: Bearer {token}' {base}/admin/tenants/globex/domains/globex.test"
        );
        let _ = writeln!(
            out,
            "\nAdmin API changes show at once; `tenancy tenants|config ...` run from another \
             terminal on the same file show within {} s.",
            CACHE_TTL.as_secs()
        );
        let _ = writeln!(out, "\nCtrl-C stops the server.");
        Ok(out)
    }

    /// Stops accepting connections, lets open requests finish, then shuts the stack down.
    ///
    /// # Errors
    /// [`CliError::Io`] when the server failed; [`CliError::Shutdown`] when a provider failed to
    /// shut down.
    pub async fn shutdown(mut self) -> Result<(), CliError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match (&mut self.server).await {
            Ok(result) => result.map_err(|e| CliError::io("serving", e)),
            Err(e) => Err(CliError::io("serving", std::io::Error::other(e))),
        };
        self.tenancy.shutdown().await?;
        served
    }
}

/// `tenancy demo`: starts, prints the banner, serves until Ctrl-C (or SIGTERM), shuts down
/// cleanly.
pub(crate) async fn run(options: DemoOptions) -> Result<(), CliError> {
    let demo = start(options).await?;
    crate::output::out(&format!("{}\n", demo.banner()?));
    stop_signal().await?;
    crate::output::err_line("shutting down...");
    demo.shutdown().await?;
    crate::output::err_line("stopped cleanly");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (as a service manager stops a process).
async fn stop_signal() -> Result<(), CliError> {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| CliError::io("listening for SIGTERM", e))?;
        tokio::select! {
            result = ctrl_c => result.map_err(|e| CliError::io("waiting for Ctrl-C", e)),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    ctrl_c
        .await
        .map_err(|e| CliError::io("waiting for Ctrl-C", e))
}
