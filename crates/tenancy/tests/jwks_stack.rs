//! A configured stack verifying bearer tokens against a JWKS served by a real HTTP server started
//! in the test: fetched at boot, reported in health, kept when the server goes away; and the
//! `jwks` keys read from YAML and the environment.

// `figment::Jail` closures return `figment::Result`, whose error is large; that is its API.
#![allow(clippy::result_large_err)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::{app, create};
use figment::Jail;
use figment::providers::{Format, Yaml};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use tenancy::core::HealthStatus;
use tenancy::resolution::{Builtin, MembershipMode};
use tenancy::{ConfigError, Tenancy, TenancyConfig};
use tokio::sync::oneshot;
use tower::ServiceExt;

const RSA: &str = include_str!("../../tenancy-resolution/tests/fixtures/rsa-private.pem");

fn key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA.as_bytes()).unwrap()
}

fn jwks_document() -> String {
    let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("rsa-1".into());
    serde_json::json!({ "keys": [jwk] }).to_string()
}

/// Serves the JWKS at `/jwks.json`, counting fetches, until stopped.
struct JwksServer {
    url: String,
    fetches: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JwksServer {
    async fn start() -> Self {
        async fn serve(State(fetches): State<Arc<AtomicUsize>>) -> String {
            fetches.fetch_add(1, Ordering::SeqCst);
            jwks_document()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let fetches = Arc::new(AtomicUsize::new(0));
        let router = Router::new()
            .route("/jwks.json", get(serve))
            .with_state(Arc::clone(&fetches));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            fetches,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// The stub's stack, resolving by bearer token only, its keys from `url`.
fn config(url: &str) -> TenancyConfig {
    let yaml = format!(
        "tenancy:\n  resolution:\n    resolvers: [jwt_claim]\n    membership: off\n    \
         jwt_verify:\n      algorithms: [RS256]\n      jwks:\n        url: {url}\n        \
         min_refresh_interval: 1h\n"
    );
    let loaded = TenancyConfig::from_figment(&figment::Figment::from(Yaml::string(&yaml))).unwrap();
    let mut config = TenancyConfig::stub();
    config.resolution = loaded.resolution;
    assert_eq!(config.resolution.resolvers, Some(vec![Builtin::JwtClaim]));
    assert_eq!(config.resolution.membership, MembershipMode::Off);
    config
}

async fn whoami(tenancy: &Tenancy, token: &str) -> (StatusCode, String) {
    let request = Request::get("/whoami")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app(tenancy).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn token_for(tenant: &str) -> String {
    let header = Header {
        kid: Some("rsa-1".into()),
        ..Header::new(Algorithm::RS256)
    };
    let exp = chrono::Utc::now().timestamp() + 600;
    encode(
        &header,
        &serde_json::json!({ "tenant_id": tenant, "exp": exp }),
        &key(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_stack_fetches_the_jwks_at_boot_and_keeps_it_when_the_provider_goes_away() {
    let mut server = JwksServer::start().await;
    let tenancy = tenancy::configure(config(&server.url)).await.unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1, "fetched at boot");
    let report = tenancy.health().await;
    let resolution = &report.components["resolution"];
    assert_eq!(report.status, HealthStatus::Healthy, "{report:#?}");
    assert_eq!(resolution.details["jwks_keys"], "1");
    assert_eq!(resolution.details["jwks_url"], server.url);

    let acme = create(&tenancy, "acme").await;
    let token = token_for(&acme.id.to_string());
    assert_eq!(
        whoami(&tenancy, &token).await,
        (StatusCode::OK, "acme jwt_claim".to_owned())
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // The provider goes away: a refresh fails, the stack keeps verifying with the set it has,
    // and health says so.
    server.stop().await;
    let jwks = tenancy.layer().jwks().expect("configured").clone();
    assert!(jwks.refresh().await.is_err());
    assert_eq!(
        whoami(&tenancy, &token).await,
        (StatusCode::OK, "acme jwt_claim".to_owned())
    );
    let report = tenancy.health().await;
    let resolution = &report.components["resolution"];
    assert_eq!(resolution.status, HealthStatus::Degraded, "{report:#?}");
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(resolution.details["reason"].contains("last good key set"));
    assert!(resolution.details.contains_key("cached_tenants"));
    tenancy.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stack_whose_jwks_cannot_be_fetched_at_boot_starts_and_reports_unhealthy() {
    let mut server = JwksServer::start().await;
    let url = server.url.clone();
    server.stop().await;
    let tenancy = tenancy::configure(config(&url)).await.unwrap();
    let report = tenancy.health().await;
    let resolution = &report.components["resolution"];
    assert_eq!(resolution.status, HealthStatus::Unhealthy, "{report:#?}");
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(
        resolution.details["reason"].starts_with("no JWKS key set: the fetch failed"),
        "{report:#?}"
    );
    let acme = create(&tenancy, "acme").await;
    let (status, body) = whoami(&tenancy, &token_for(&acme.id.to_string())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    tenancy.shutdown().await.unwrap();
}

fn load(jail: &Jail) -> Result<TenancyConfig, ConfigError> {
    TenancyConfig::load(Some(&jail.directory().join("app.yaml")))
}

#[test]
fn jwks_keys_load_from_yaml_and_environment_and_are_checked() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "app.yaml",
            "tenancy:\n  resolution:\n    jwt_verify:\n      algorithms: [RS256, ES256]\n      \
             issuers: [https://idp.example.com/]\n      jwks:\n        \
             url: https://idp.example.com/.well-known/jwks.json\n        refresh_interval: 10m\n",
        )?;
        jail.set_env(
            "TENANCY__RESOLUTION__JWT_VERIFY__JWKS__MIN_REFRESH_INTERVAL",
            "2m",
        );
        let config = load(jail).unwrap();
        let verify = config.resolution.jwt_verify.unwrap();
        let jwks = verify.jwks.unwrap();
        assert_eq!(jwks.url, "https://idp.example.com/.well-known/jwks.json");
        assert_eq!(jwks.refresh_interval, Duration::from_secs(600));
        assert_eq!(jwks.min_refresh_interval, Duration::from_secs(120));
        assert_eq!(jwks.timeout, Duration::from_secs(5));
        assert_eq!(jwks.max_bytes, 1024 * 1024);
        assert_eq!(verify.issuers, ["https://idp.example.com/"]);

        // The environment overrides the URL; a scheme other than http(s) is refused at load.
        jail.set_env(
            "TENANCY__RESOLUTION__JWT_VERIFY__JWKS__URL",
            "ftp://idp.example.com/jwks.json",
        );
        match load(jail) {
            Err(ConfigError::Section { section, message }) => {
                assert_eq!(section, "resolution");
                assert!(
                    message.contains(
                        "jwt_verify.jwks: url `ftp://idp.example.com/jwks.json` has scheme `ftp`"
                    ),
                    "{message}"
                );
            }
            other => panic!("expected a section error, got {other:?}"),
        }
        jail.set_env("TENANCY__RESOLUTION__JWT_VERIFY__JWKS__URL", "not a url");
        let error = load(jail).unwrap_err().to_string();
        assert!(error.contains("is not absolute"), "{error}");
        jail.set_env(
            "TENANCY__RESOLUTION__JWT_VERIFY__JWKS__URL",
            "http://127.0.0.1:9/jwks",
        );
        assert!(load(jail).is_ok());

        // A duration without a unit, an unknown key, a missing URL.
        jail.set_env(
            "TENANCY__RESOLUTION__JWT_VERIFY__JWKS__MIN_REFRESH_INTERVAL",
            "30",
        );
        let error = load(jail).unwrap_err().to_string();
        assert!(
            error.contains("tenancy.resolution.jwt_verify.jwks.min_refresh_interval"),
            "{error}"
        );
        jail.clear_env();
        jail.create_file(
            "app.yaml",
            "tenancy:\n  resolution:\n    jwt_verify:\n      algorithms: [RS256]\n      \
             jwks:\n        refresh: 5m\n",
        )?;
        let error = load(jail).unwrap_err().to_string();
        assert!(error.contains("unknown field: found `refresh`"), "{error}");
        jail.create_file(
            "app.yaml",
            "tenancy:\n  resolution:\n    jwt_verify:\n      algorithms: [RS256]\n      \
             jwks:\n        timeout: 2s\n",
        )?;
        let error = load(jail).unwrap_err().to_string();
        assert!(
            error.contains("tenancy.resolution.jwt_verify.jwks.url") && error.contains("missing"),
            "{error}"
        );
        Ok(())
    });
}
