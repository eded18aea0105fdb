//! Bearer tokens verified against a JWKS served by a real HTTP server started in each test (axum
//! on 127.0.0.1, port chosen by the system). The server counts its fetches, can rotate its set,
//! answer errors, hold answers back, or stop; fetch limits are asserted by count, never by time.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::CountingStore;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tenancy_core::{HealthStatus, TenantError, TenantRef, TenantStatus};
use tenancy_resolution::{
    Builtin, JwksCache, JwksConfig, JwksError, JwtVerifyConfig, KeyKind, RequireTenantLayer,
    ResolutionConfig, ResolutionContext, ResolveTenantLayer, ResolverRegistry, TenantResolver,
    TenantValidator,
};
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

const ID: &str = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293";
const RSA_1: &str = include_str!("fixtures/rsa-private.pem");
const RSA_2: &str = include_str!("fixtures/other-rsa-private.pem");
const RSA_PUBLIC_1: &str = include_str!("fixtures/rsa-public.pem");
const EC_P256: &str = include_str!("fixtures/ec-p256-private.pem");
const EC_P384: &str = include_str!("fixtures/ec-p384-private.pem");
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// The JWKS server.

struct ServerState {
    answer: Mutex<(StatusCode, String)>,
    fetches: AtomicUsize,
    /// Answers wait while this is false.
    open: watch::Sender<bool>,
    /// Send the body in chunks, without a `content-length`.
    chunked: AtomicBool,
}

struct JwksServer {
    url: String,
    state: Arc<ServerState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let mut open = state.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    let (status, body) = state.answer.lock().unwrap().clone();
    if state.chunked.load(Ordering::SeqCst) {
        let chunks: Vec<Result<String, Infallible>> = body
            .as_bytes()
            .chunks(256)
            .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
            .collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        return (status, [("content-type", "application/json")], body).into_response();
    }
    (status, [("content-type", "application/json")], body).into_response()
}

impl JwksServer {
    async fn start(set: &Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let state = Arc::new(ServerState {
            answer: Mutex::new((StatusCode::OK, set.to_string())),
            fetches: AtomicUsize::new(0),
            open: watch::channel(true).0,
            chunked: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn serve(&self, set: &Value) {
        *self.state.answer.lock().unwrap() = (StatusCode::OK, set.to_string());
    }

    fn answer(&self, status: StatusCode, body: &str) {
        *self.state.answer.lock().unwrap() = (status, body.to_owned());
    }

    fn hold(&self, held: bool) {
        self.state.open.send_replace(!held);
    }

    /// Stops accepting and closes every connection: the port refuses connections afterwards.
    async fn stop(&mut self) {
        self.hold(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, sets and tokens.

fn encoding_key(alg: Algorithm, pem: &str) -> EncodingKey {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    }
}

/// The public JWK of a private key, with `kid` and, when given, `alg`.
fn jwk(kid: &str, alg: Algorithm, pem: &str, named_alg: bool) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, pem), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    if !named_alg {
        jwk.common.key_algorithm = None;
    }
    serde_json::to_value(jwk).unwrap()
}

fn set(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({ "tenant_id": ID, "sub": "user-1", "exp": now() + 600 })
}

fn token(alg: Algorithm, kid: Option<&str>, pem: &str, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    encode(&header, claims, &encoding_key(alg, pem)).unwrap()
}

fn verify_config(url: &str, algorithms: &[&str], min_refresh: Duration) -> JwtVerifyConfig {
    JwtVerifyConfig {
        algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
        jwks: Some(JwksConfig {
            min_refresh_interval: min_refresh,
            ..JwksConfig::new(url)
        }),
        ..JwtVerifyConfig::default()
    }
}

fn resolution(verify: JwtVerifyConfig) -> ResolutionConfig {
    ResolutionConfig {
        resolvers: Some(vec![Builtin::JwtClaim]),
        jwt_verify: Some(verify),
        ..ResolutionConfig::default()
    }
}

/// The registry of `jwt_claim` alone, and its key set.
fn registry(verify: JwtVerifyConfig) -> (ResolverRegistry, JwksCache) {
    let registry = ResolverRegistry::from_config(&resolution(verify), &empty_validator()).unwrap();
    let jwks = registry.jwks().expect("a JWKS is configured").clone();
    (registry, jwks)
}

fn bearer(token: &str) -> Request<()> {
    Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

/// Both phases of resolution, as the middleware runs them.
async fn resolve(registry: &ResolverRegistry, token: &str) -> Option<TenantRef> {
    let request = bearer(token);
    registry
        .resolve(&ResolutionContext::from_request(&request))
        .await
        .unwrap()
        .map(|found| found.tenant)
}

fn tenant() -> Option<TenantRef> {
    Some(TenantRef::Id(ID.parse().unwrap()))
}

fn two_rsa_and_ec() -> Value {
    set(&[
        jwk("rsa-1", Algorithm::RS256, RSA_1, true),
        jwk("ec-1", Algorithm::ES256, EC_P256, true),
        jwk("ec-384", Algorithm::ES384, EC_P384, true),
        jwk("rsa-any", Algorithm::RS256, RSA_2, false),
    ])
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn rs256_es256_es384_and_ps256_tokens_resolve_through_the_key_set() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let (registry, jwks) = registry(verify_config(
        &server.url,
        &["RS256", "ES256", "ES384", "PS256"],
        HOUR,
    ));
    assert_eq!(server.fetches(), 0, "building the resolver fetches nothing");
    assert_eq!(jwks.refresh().await, Ok(4));
    assert_eq!(jwks.key_ids(), ["ec-1", "ec-384", "rsa-1", "rsa-any"]);

    for (alg, kid, pem) in [
        (Algorithm::RS256, "rsa-1", RSA_1),
        (Algorithm::ES256, "ec-1", EC_P256),
        (Algorithm::ES384, "ec-384", EC_P384),
        // A key without `alg` serves every accepted algorithm of its type.
        (Algorithm::RS256, "rsa-any", RSA_2),
        (Algorithm::PS256, "rsa-any", RSA_2),
    ] {
        let token = token(alg, Some(kid), pem, &claims());
        assert_eq!(resolve(&registry, &token).await, tenant(), "{alg:?} {kid}");
    }
    assert_eq!(server.fetches(), 1, "known key ids need no fetch");
    let health = jwks.health();
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert_eq!(health.details["jwks_keys"], "4");
    assert_eq!(health.details["jwks_url"], server.url);
}

#[tokio::test]
async fn the_first_token_fetches_the_set_when_nothing_did() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    assert_eq!(jwks.health().status, HealthStatus::Unhealthy);
    assert_eq!(
        jwks.health().details["reason"],
        "no JWKS key set fetched yet"
    );
    let token = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    assert_eq!(resolve(&registry, &token).await, tenant());
    assert_eq!(server.fetches(), 1);
    assert_eq!(jwks.health().status, HealthStatus::Healthy);
}

#[tokio::test]
async fn a_numeric_claim_in_an_rs256_token_is_read_as_its_decimal_text() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let registry = ResolverRegistry::from_config(
        &ResolutionConfig {
            jwt_claim_key: "org".into(),
            jwt_claim_kind: KeyKind::Slug,
            ..resolution(verify_config(&server.url, &["RS256"], HOUR))
        },
        &empty_validator(),
    )
    .unwrap();
    let numeric = json!({ "org": 42, "exp": now() + 600 });
    let token_42 = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &numeric);
    assert_eq!(
        resolve(&registry, &token_42).await,
        Some(TenantRef::Slug("42".parse().unwrap()))
    );
    for other in [json!(4.2), json!(true), json!(["42"]), json!({"id": 42})] {
        let claims = json!({ "org": other, "exp": now() + 600 });
        let token = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims);
        assert_eq!(resolve(&registry, &token).await, None, "{other}");
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_on_its_first_token() {
    let server = JwksServer::start(&set(&[jwk("rsa-1", Algorithm::RS256, RSA_1, true)])).await;
    // The limit concerns refreshes for unknown kids: the start-up fetch does not count.
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    jwks.refresh().await.unwrap();
    let old = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    let new = token(Algorithm::RS256, Some("rsa-2"), RSA_2, &claims());
    assert_eq!(resolve(&registry, &old).await, tenant());

    // The provider rotates: rsa-2 replaces rsa-1.
    server.serve(&set(&[jwk("rsa-2", Algorithm::RS256, RSA_2, true)]));
    assert_eq!(resolve(&registry, &new).await, tenant());
    assert_eq!(server.fetches(), 2, "one refresh for the new kid");
    assert_eq!(jwks.key_ids(), ["rsa-2"]);
    // Tokens of the retired key are refused now; the new one needs no more fetches.
    assert_eq!(resolve(&registry, &old).await, None);
    assert_eq!(resolve(&registry, &new).await, tenant());
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_interval() {
    let server = JwksServer::start(&set(&[jwk("rsa-1", Algorithm::RS256, RSA_1, true)])).await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    jwks.refresh().await.unwrap();
    let registry = Arc::new(registry);

    // Concurrent requests with random kids: they share one refresh.
    let flood: Vec<_> = (0..32)
        .map(|i| {
            let registry = Arc::clone(&registry);
            let token = token(
                Algorithm::RS256,
                Some(&format!("random-{i}")),
                RSA_1,
                &claims(),
            );
            tokio::spawn(async move { resolve(&registry, &token).await })
        })
        .collect();
    for request in flood {
        assert_eq!(request.await.unwrap(), None);
    }
    assert_eq!(server.fetches(), 2, "32 unknown kids, one refresh");

    // Within the interval, no unknown kid fetches again, and none is even deferred.
    for i in 32..132 {
        let token = token(
            Algorithm::RS256,
            Some(&format!("random-{i}")),
            RSA_1,
            &claims(),
        );
        assert_eq!(resolve(&registry, &token).await, None);
    }
    assert_eq!(server.fetches(), 2, "the second unknown kid does not fetch");

    // The price of the limit: a key published now waits for the interval, or a refresh.
    server.serve(&set(&[
        jwk("rsa-1", Algorithm::RS256, RSA_1, true),
        jwk("rsa-2", Algorithm::RS256, RSA_2, true),
    ]));
    let new = token(Algorithm::RS256, Some("rsa-2"), RSA_2, &claims());
    assert_eq!(resolve(&registry, &new).await, None);
    assert_eq!(server.fetches(), 2);
    assert_eq!(jwks.refresh().await, Ok(2));
    assert_eq!(resolve(&registry, &new).await, tenant());
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn an_unknown_kid_is_not_deferred_while_no_refresh_is_allowed() {
    let server = JwksServer::start(&set(&[jwk("rsa-1", Algorithm::RS256, RSA_1, true)])).await;
    let config = resolution(verify_config(&server.url, &["RS256"], HOUR));
    let resolver = tenancy_resolution::JwtClaimResolver::from_config(&config).unwrap();
    let jwks = resolver.jwks().unwrap().clone();
    jwks.refresh().await.unwrap();
    let unknown = bearer(&token(Algorithm::RS256, Some("x"), RSA_1, &claims()));
    let cx = ResolutionContext::from_request(&unknown);
    // Allowed: deferred, and the deferred phase fetches once.
    assert_eq!(
        resolver.resolve(&cx),
        tenancy_resolution::Resolution::Deferred
    );
    assert_eq!(resolver.resolve_deferred(&cx).await.unwrap(), None);
    assert_eq!(server.fetches(), 2);
    // Not allowed: answered at once, as an invalid token is.
    assert_eq!(
        resolver.resolve(&cx),
        tenancy_resolution::Resolution::NotFound
    );
    assert_eq!(resolver.resolve_deferred(&cx).await.unwrap(), None);
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn concurrent_requests_for_a_new_kid_share_one_fetch() {
    let server = JwksServer::start(&set(&[jwk("rsa-1", Algorithm::RS256, RSA_1, true)])).await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    jwks.refresh().await.unwrap();
    server.serve(&set(&[
        jwk("rsa-1", Algorithm::RS256, RSA_1, true),
        jwk("rsa-2", Algorithm::RS256, RSA_2, true),
    ]));
    // The server holds its answer until every request is waiting on the one fetch.
    server.hold(true);
    let registry = Arc::new(registry);
    let new = token(Algorithm::RS256, Some("rsa-2"), RSA_2, &claims());
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let (registry, new) = (Arc::clone(&registry), new.clone());
            tokio::spawn(async move { resolve(&registry, &new).await })
        })
        .collect();
    while server.fetches() < 2 {
        tokio::task::yield_now().await;
    }
    server.hold(false);
    for request in requests {
        assert_eq!(request.await.unwrap(), tenant());
    }
    assert_eq!(server.fetches(), 2, "16 requests, one fetch");
}

#[tokio::test]
async fn a_server_gone_after_the_first_fetch_leaves_the_last_good_set_working() {
    let mut server = JwksServer::start(&two_rsa_and_ec()).await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256", "ES256"], HOUR));
    jwks.refresh().await.unwrap();
    server.stop().await;

    let error = jwks.refresh().await.unwrap_err();
    assert!(matches!(error, JwksError::Request(_)), "{error:?}");
    assert!(error.to_string().contains("refused"), "{error}");
    assert_eq!(jwks.last_error(), Some(error.clone()));
    // Known keys keep working.
    let rs = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    let es = token(Algorithm::ES256, Some("ec-1"), EC_P256, &claims());
    assert_eq!(resolve(&registry, &rs).await, tenant());
    assert_eq!(resolve(&registry, &es).await, tenant());
    // Health says so: degraded, with the error, the keys still held.
    let health = jwks.health();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert!(
        health.details["reason"].contains("last good key set"),
        "{health:?}"
    );
    assert!(
        health.details["reason"].contains(&error.to_string()),
        "{health:?}"
    );
    // ec-384 serves none of RS256 and ES256: skipped.
    assert_eq!(health.details["jwks_keys"], "3");
    assert_eq!(health.details["jwks_failures"], "1");
}

#[tokio::test]
async fn an_error_answer_degrades_health_until_a_fetch_succeeds() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    jwks.refresh().await.unwrap();
    server.answer(StatusCode::SERVICE_UNAVAILABLE, "maintenance");
    assert_eq!(jwks.refresh().await, Err(JwksError::Status(503)));
    assert_eq!(jwks.health().status, HealthStatus::Degraded);
    assert!(jwks.health().details["reason"].contains("HTTP 503"));
    let rs = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    assert_eq!(resolve(&registry, &rs).await, tenant());

    // Redirects are not followed.
    server.answer(StatusCode::FOUND, "");
    assert_eq!(jwks.refresh().await, Err(JwksError::Status(302)));

    server.serve(&two_rsa_and_ec());
    assert_eq!(jwks.refresh().await, Ok(2), "the two RSA keys serve RS256");
    let health = jwks.health();
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert!(!health.details.contains_key("reason"));
}

#[tokio::test]
async fn without_any_set_health_is_unhealthy_and_tokens_name_nothing() {
    let mut server = JwksServer::start(&two_rsa_and_ec()).await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    server.stop().await;
    let token = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    assert_eq!(resolve(&registry, &token).await, None);
    assert_eq!(jwks.fetches(), 1, "the token tried one fetch");
    let health = jwks.health();
    assert_eq!(health.status, HealthStatus::Unhealthy, "{health:?}");
    assert!(health.details["reason"].starts_with("no JWKS key set: the fetch failed"));
    assert_eq!(health.details["jwks_keys"], "0");
}

#[tokio::test]
async fn hs256_with_the_kid_of_an_rsa_key_is_refused() {
    let server = JwksServer::start(&set(&[
        jwk("rsa-1", Algorithm::RS256, RSA_1, false),
        // A symmetric key in the set is never used.
        json!({ "kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" }),
    ]))
    .await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256", "RS384"], HOUR));
    assert_eq!(jwks.refresh().await, Ok(1));
    assert_eq!(jwks.key_ids(), ["rsa-1"]);

    // The attacker signs HS256 with what is public: the PEM, or the JWK's modulus.
    let rsa_jwk = jwk("rsa-1", Algorithm::RS256, RSA_1, false);
    for secret in [
        RSA_PUBLIC_1.as_bytes(),
        rsa_jwk["n"].as_str().unwrap().as_bytes(),
    ] {
        let header = Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        };
        let forged = encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        assert_eq!(resolve(&registry, &forged).await, None);
    }
    let header = Header {
        kid: Some("shared".into()),
        ..Header::new(Algorithm::HS256)
    };
    let secret = b"secret-secret-secret-secret-secret";
    let forged = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap();
    assert_eq!(resolve(&registry, &forged).await, None);

    // Nor can HMAC be configured next to a JWKS.
    let error = ResolverRegistry::from_config(
        &resolution(verify_config(&server.url, &["RS256", "HS256"], HOUR)),
        &empty_validator(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("HS256 cannot be verified with a JWKS"),
        "{error}"
    );
}

/// Unpadded base64url.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn an_algorithm_the_key_does_not_serve_is_refused() {
    let server = JwksServer::start(&set(&[
        jwk("rsa-256", Algorithm::RS256, RSA_1, true),
        jwk("rsa-any", Algorithm::RS256, RSA_2, false),
        jwk("ec-1", Algorithm::ES256, EC_P256, true),
        jwk("ec-384", Algorithm::ES384, EC_P384, false),
    ]))
    .await;
    let (registry, jwks) = registry(verify_config(
        &server.url,
        &["RS256", "RS384", "ES256", "ES384"],
        HOUR,
    ));
    jwks.refresh().await.unwrap();

    let cases = [
        // The key names RS256: RS384 with it is refused, though its type would serve it.
        (Algorithm::RS384, "rsa-256", RSA_1),
        // RSA signatures under an EC key's kid, EC signatures under an RSA key's kid.
        (Algorithm::RS256, "ec-1", RSA_1),
        (Algorithm::ES256, "rsa-any", EC_P256),
        // ES256 under a P-384 key: the curve decides.
        (Algorithm::ES256, "ec-384", EC_P256),
        // PS256 is not accepted at all, even with a key that would serve it.
        (Algorithm::PS256, "rsa-any", RSA_2),
    ];
    for (alg, kid, pem) in cases {
        let token = token(alg, Some(kid), pem, &claims());
        assert_eq!(
            resolve(&registry, &token).await,
            None,
            "{alg:?} under {kid}"
        );
    }
    // The same keys with fitting algorithms resolve, so the refusals above are the algorithms'.
    for (alg, kid, pem) in [
        (Algorithm::RS256, "rsa-256", RSA_1),
        (Algorithm::RS384, "rsa-any", RSA_2),
        (Algorithm::ES384, "ec-384", EC_P384),
    ] {
        let token = token(alg, Some(kid), pem, &claims());
        assert_eq!(
            resolve(&registry, &token).await,
            tenant(),
            "{alg:?} under {kid}"
        );
    }

    // `alg: none` with a known kid, and a token without kid.
    let header = base64url(br#"{"alg":"none","kid":"rsa-256"}"#);
    let payload = base64url(claims().to_string().as_bytes());
    assert_eq!(
        resolve(&registry, &format!("{header}.{payload}.")).await,
        None
    );
    let no_kid = token(Algorithm::RS256, None, RSA_1, &claims());
    assert_eq!(resolve(&registry, &no_kid).await, None);
    assert_eq!(server.fetches(), 1, "none of these fetched");
}

#[tokio::test]
async fn expired_early_and_foreign_tokens_are_refused() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let (registry, jwks) = registry(JwtVerifyConfig {
        issuers: vec!["https://idp.example.com/".into()],
        audiences: vec!["api".into()],
        ..verify_config(&server.url, &["RS256"], HOUR)
    });
    jwks.refresh().await.unwrap();
    let with = |extra: Value| {
        let mut claims = json!({
            "tenant_id": ID, "exp": now() + 600, "iss": "https://idp.example.com/", "aud": "api",
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims)
    };
    assert_eq!(resolve(&registry, &with(json!({}))).await, tenant());
    for (why, extra) in [
        ("expired", json!({ "exp": now() - 3600 })),
        ("not yet valid", json!({ "nbf": now() + 3600 })),
        (
            "other issuer",
            json!({ "iss": "https://evil.example.com/" }),
        ),
        ("other audience", json!({ "aud": "other" })),
    ] {
        assert_eq!(resolve(&registry, &with(extra)).await, None, "{why}");
    }
    // Signed by another key under a known kid.
    let forged = token(Algorithm::RS256, Some("rsa-1"), RSA_2, &claims());
    assert_eq!(resolve(&registry, &forged).await, None);
}

#[tokio::test]
async fn malformed_keys_are_skipped_and_the_rest_of_the_set_is_used() {
    let good = jwk("rsa-1", Algorithm::RS256, RSA_1, true);
    let server = JwksServer::start(&set(&[
        json!({ "kty": "RSA", "kid": "no-modulus", "e": "AQAB" }),
        json!({ "kty": "RSA", "kid": "bad-base64", "n": "!!!", "e": "AQAB" }),
        json!({ "kty": "XYZ", "kid": "unknown-type" }),
        json!({ "kty": "EC", "kid": "unknown-curve", "crv": "secp256k1", "x": "AA", "y": "AA" }),
        json!("not an object"),
        json!({ "kty": "RSA", "n": good["n"], "e": "AQAB" }),
        json!({ "kty": "RSA", "kid": "encryption", "use": "enc", "n": good["n"], "e": "AQAB" }),
        json!({ "kty": "RSA", "kid": "odd-alg", "alg": "RSA-OAEP", "n": good["n"], "e": "AQAB" }),
        good.clone(),
        good.clone(),
    ]))
    .await;
    let (registry, jwks) = registry(verify_config(&server.url, &["RS256"], HOUR));
    assert_eq!(jwks.refresh().await, Ok(1));
    assert_eq!(jwks.key_ids(), ["rsa-1"]);
    assert_eq!(jwks.health().status, HealthStatus::Healthy);
    let token = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    assert_eq!(resolve(&registry, &token).await, tenant());

    // A set with nothing usable, or no set at all, keeps the last good one.
    server.serve(&set(&[
        json!({ "kty": "RSA", "kid": "no-modulus", "e": "AQAB" }),
    ]));
    assert_eq!(
        jwks.refresh().await,
        Err(JwksError::NoUsableKey { skipped: 1 })
    );
    for body in ["<html>login</html>", r#"{"keys": 1}"#, "{}"] {
        server.answer(StatusCode::OK, body);
        let error = jwks.refresh().await.unwrap_err();
        assert!(
            matches!(error, JwksError::Malformed(_)),
            "{body}: {error:?}"
        );
    }
    assert_eq!(jwks.key_ids(), ["rsa-1"]);
    assert_eq!(resolve(&registry, &token).await, tenant());
    assert_eq!(jwks.health().status, HealthStatus::Degraded);
}

#[tokio::test]
async fn answers_over_the_size_limit_are_refused() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let (_registry, jwks) = registry(JwtVerifyConfig {
        jwks: Some(JwksConfig {
            max_bytes: 1024,
            ..JwksConfig::new(&server.url)
        }),
        ..verify_config(&server.url, &["RS256"], HOUR)
    });
    assert!(two_rsa_and_ec().to_string().len() > 1024);
    // Announced by content-length, and streamed without one.
    assert_eq!(jwks.refresh().await, Err(JwksError::TooLarge(1024)));
    server.state.chunked.store(true, Ordering::SeqCst);
    assert_eq!(jwks.refresh().await, Err(JwksError::TooLarge(1024)));
    // Under the limit, chunked, it is read.
    server.serve(&set(&[jwk("ec-1", Algorithm::ES256, EC_P256, true)]));
    let (_registry, roomy) = registry(verify_config(&server.url, &["ES256"], HOUR));
    assert_eq!(roomy.refresh().await, Ok(1));
}

#[tokio::test]
async fn a_fetch_that_does_not_answer_times_out() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let (_registry, jwks) = registry(JwtVerifyConfig {
        jwks: Some(JwksConfig {
            timeout: Duration::from_millis(200),
            ..JwksConfig::new(&server.url)
        }),
        ..verify_config(&server.url, &["RS256"], HOUR)
    });
    server.hold(true);
    assert_eq!(
        jwks.refresh().await,
        Err(JwksError::Timeout(Duration::from_millis(200)))
    );
    server.hold(false);
}

#[tokio::test]
async fn an_https_url_speaks_tls_and_never_plain_http() {
    // The server speaks plain HTTP: the TLS handshake fails, nothing is read.
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let https = server.url.replace("http://", "https://");
    let (_registry, jwks) = registry(verify_config(&https, &["RS256"], HOUR));
    let error = jwks.refresh().await.unwrap_err();
    assert!(matches!(error, JwksError::Request(_)), "{error:?}");
    assert!(jwks.key_ids().is_empty());
}

/// A throwaway CA (PEM) and a TLS server for 127.0.0.1 whose certificate it signed, serving
/// `document` at `/jwks.json`; the server's URL.
async fn tls_jwks_server(document: String) -> (String, String) {
    use rustls::pki_types::PrivatePkcs8KeyDer;

    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tenancy test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone()],
        PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, document) = (acceptor.clone(), document.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request| {
                    let body = http_body_util::Full::new(bytes::Bytes::from(document.clone()));
                    async move { Ok::<_, Infallible>(http::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, ca.pem())
}

fn with_ca_file(url: &str, ca_file: Option<&std::path::Path>) -> JwtVerifyConfig {
    JwtVerifyConfig {
        jwks: Some(JwksConfig {
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            ..JwksConfig::new(url)
        }),
        ..verify_config(url, &["RS256"], HOUR)
    }
}

#[tokio::test]
async fn an_https_endpoint_is_verified_against_the_system_roots_and_ca_file() {
    let document = set(&[jwk("rsa-1", Algorithm::RS256, RSA_1, true)]).to_string();
    let (url, ca_pem) = tls_jwks_server(document.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    // Trusted through ca_file: fetched over TLS, tokens resolve.
    let (registry, jwks) = registry(with_ca_file(&url, Some(&ca_file)));
    assert_eq!(jwks.refresh().await, Ok(1));
    let token = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    assert_eq!(resolve(&registry, &token).await, tenant());

    // The system's roots alone do not know this CA; another CA does not vouch for the server.
    let (_, other_ca) = tls_jwks_server(document).await;
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, &other_ca).unwrap();
    for ca_file in [None, Some(other_file.as_path())] {
        let (untrusting, jwks) = self::registry(with_ca_file(&url, ca_file));
        let error = jwks.refresh().await.unwrap_err();
        let JwksError::Request(message) = &error else {
            panic!("expected a request error, got {error:?}");
        };
        assert!(message.contains("certificate"), "{ca_file:?}: {message}");
        assert_eq!(resolve(&untrusting, &token).await, None);
    }
}

#[test]
fn a_ca_file_must_hold_certificates_and_serve_https() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://idp.example.com/jwks.json";
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let key_only = dir.path().join("key.pem");
    std::fs::write(&key_only, EC_P256).unwrap();
    let missing = dir.path().join("missing.pem");
    for (verify, expected) in [
        (with_ca_file(url, Some(&missing)), "cannot be read"),
        (with_ca_file(url, Some(&garbage)), "holds no certificate"),
        (with_ca_file(url, Some(&key_only)), "holds no certificate"),
        (
            with_ca_file("http://127.0.0.1:9/jwks.json", Some(&garbage)),
            "a CA file serves https:// only",
        ),
    ] {
        match ResolverRegistry::from_config(&resolution(verify), &empty_validator()) {
            Err(TenantError::Configuration(message)) => {
                assert!(
                    message.contains(expected),
                    "{message} should contain {expected}"
                );
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_set_past_its_refresh_interval_is_refreshed_in_the_background() {
    let server = JwksServer::start(&set(&[jwk("rsa-1", Algorithm::RS256, RSA_1, true)])).await;
    let (registry, jwks) = registry(JwtVerifyConfig {
        jwks: Some(JwksConfig {
            refresh_interval: Duration::from_millis(1),
            min_refresh_interval: HOUR,
            ..JwksConfig::new(&server.url)
        }),
        ..verify_config(&server.url, &["RS256"], HOUR)
    });
    jwks.refresh().await.unwrap();
    server.serve(&set(&[
        jwk("rsa-1", Algorithm::RS256, RSA_1, true),
        jwk("rsa-2", Algorithm::RS256, RSA_2, true),
    ]));
    tokio::time::sleep(Duration::from_millis(5)).await;
    // This request is verified with the set in hand; it starts the refresh behind it.
    let old = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims());
    assert_eq!(resolve(&registry, &old).await, tenant());
    for _ in 0..1000 {
        if jwks.key_ids().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(jwks.key_ids(), ["rsa-1", "rsa-2"]);
    assert_eq!(server.fetches(), 2);
}

#[test]
fn jwks_settings_are_validated() {
    let build = |verify: JwtVerifyConfig| match ResolverRegistry::from_config(
        &resolution(verify),
        &empty_validator(),
    ) {
        Err(TenantError::Configuration(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let url = "https://idp.example.com/jwks.json";
    let with = |jwks: JwksConfig| JwtVerifyConfig {
        jwks: Some(jwks),
        ..verify_config(url, &["RS256"], HOUR)
    };
    for (verify, expected) in [
        (
            with(JwksConfig::new("ftp://idp.example.com/jwks")),
            "scheme `ftp`",
        ),
        (
            with(JwksConfig::new("idp.example.com/jwks")),
            "not absolute",
        ),
        (with(JwksConfig::new("https://a b")), "does not parse"),
        (
            with(JwksConfig {
                min_refresh_interval: Duration::ZERO,
                ..JwksConfig::new(url)
            }),
            "min_refresh_interval must be longer than zero",
        ),
        (
            with(JwksConfig {
                timeout: Duration::ZERO,
                ..JwksConfig::new(url)
            }),
            "timeout must be longer than zero",
        ),
        (
            with(JwksConfig {
                max_bytes: 0,
                ..JwksConfig::new(url)
            }),
            "max_bytes must be at least 1",
        ),
        (
            JwtVerifyConfig {
                public_key_pem: Some(RSA_PUBLIC_1.into()),
                ..verify_config(url, &["RS256"], HOUR)
            },
            "not several",
        ),
        (verify_config(url, &[], HOUR), "algorithms is empty"),
    ] {
        let message = build(verify);
        assert!(
            message.contains(expected),
            "{message} should contain {expected}"
        );
        assert!(message.starts_with("resolution.jwt_verify"), "{message}");
    }
    // Public-key families may mix: each key serves its own.
    assert!(
        ResolverRegistry::from_config(
            &resolution(verify_config(url, &["RS256", "ES256", "EdDSA"], HOUR)),
            &empty_validator()
        )
        .is_ok()
    );
}

#[test]
fn jwks_settings_read_from_configuration() {
    let config: ResolutionConfig = serde_json::from_value(json!({
        "jwt_verify": {
            "algorithms": ["RS256"],
            "jwks": {
                "url": "https://idp.example.com/jwks.json",
                "refresh_interval": "10m",
                "min_refresh_interval": "1m",
                "timeout": "2s",
                "max_bytes": 65536,
            },
        },
    }))
    .unwrap();
    let jwks = config.jwt_verify.unwrap().jwks.unwrap();
    assert_eq!(jwks.refresh_interval, Duration::from_secs(600));
    assert_eq!(jwks.min_refresh_interval, Duration::from_secs(60));
    assert_eq!(jwks.timeout, Duration::from_secs(2));
    assert_eq!(jwks.max_bytes, 65536);
    let missing = serde_json::from_value::<JwksConfig>(json!({ "refresh_interval": "1m" }))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing field `url`"), "{missing}");
    let unknown = serde_json::from_value::<JwksConfig>(json!({ "url": "https://x/", "ttl": "1m" }))
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown field `ttl`"), "{unknown}");
}

// ---------------------------------------------------------------------------------------------
// Through the tower layer, in an axum router.

#[tokio::test]
async fn the_layer_resolves_jwks_tokens_and_refuses_the_rest() {
    let server = JwksServer::start(&two_rsa_and_ec()).await;
    let store = CountingStore::new();
    let acme = store.tenant("acme", TenantStatus::Active).await;
    let config = resolution(verify_config(&server.url, &["RS256", "ES256"], HOUR));
    let validator = TenantValidator::new(store.clone(), &config.validator).unwrap();
    let layer = ResolveTenantLayer::new(&config, validator).unwrap();
    let jwks = layer.jwks().expect("configured").clone();
    jwks.refresh().await.unwrap();
    let app = Router::new()
        .route(
            "/whoami",
            get(
                |tenant: axum::Extension<tenancy_resolution::ResolvedTenant>| async move {
                    format!("{} by {}", tenant.slug, tenant.resolved_by())
                },
            ),
        )
        .route_layer(RequireTenantLayer::new())
        .layer(layer);
    let call = |authorization: Option<String>| {
        let app = app.clone();
        async move {
            let mut request = Request::builder().uri("/whoami");
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = app
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let claims = json!({ "tenant_id": acme.id.to_string(), "exp": now() + 600 });
    let rs = token(Algorithm::RS256, Some("rsa-1"), RSA_1, &claims);
    let es = token(Algorithm::ES256, Some("ec-1"), EC_P256, &claims);
    for token in [&rs, &es] {
        assert_eq!(
            call(Some(format!("Bearer {token}"))).await,
            (StatusCode::OK, "acme by jwt_claim".to_owned())
        );
    }
    let unknown = token(Algorithm::RS256, Some("rotated-away"), RSA_1, &claims);
    let expired = token(
        Algorithm::RS256,
        Some("rsa-1"),
        RSA_1,
        &json!({ "tenant_id": acme.id.to_string(), "exp": now() - 3600 }),
    );
    for authorization in [
        Some(format!("Bearer {unknown}")),
        Some(format!("Bearer {expired}")),
        None,
    ] {
        let (status, body) = call(authorization).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("tenant_required"), "{body}");
    }
    assert_eq!(
        server.fetches(),
        2,
        "start-up, then one for the unknown kid"
    );
}

/// A validator over an empty store, for registries whose `domain` resolver is not asked.
fn empty_validator() -> TenantValidator {
    TenantValidator::new(
        Arc::new(tenancy_core::InMemoryStore::new()),
        &ResolutionConfig::default().validator,
    )
    .unwrap()
}
