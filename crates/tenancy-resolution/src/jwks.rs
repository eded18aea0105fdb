//! [`JwksCache`]: the key set of an identity provider, fetched from its JWKS endpoint, cached, and
//! refreshed on rotation (feature `jwks`).
//!
//! The set lives behind an [`ArcSwapOption`]: a token whose `kid` is in it is verified with one
//! atomic load and no lock, no I/O. Fetches happen off that path:
//! - a set older than `refresh_interval` is refreshed by a background task that the next request
//!   using it spawns (that request is verified with the current set);
//! - a token with an unknown `kid` is deferred to a refresh, single-flight (concurrent requests
//!   wait for the one fetch in progress) and made at most once per `min_refresh_interval`; while
//!   no refresh is allowed such tokens name no tenant, so a flood of random key ids costs the
//!   provider one fetch per interval.
//!
//! A failed fetch, or a set with no usable key, keeps the last good set and is reported by
//! [`JwksCache::health`]. Keys the set holds that cannot serve (malformed, no `kid`, symmetric,
//! for encryption, of a type or `alg` matching none of the accepted algorithms) are skipped with a
//! warning, the rest of the set is used.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tenancy_core::{Health, JsonObject, TenantError};

use crate::config::JwksConfig;

/// Why fetching the key set failed. The last good set, if any, stays in use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request could not be made: connection refused, TLS handshake or certificate refused,
    /// connection closed.
    #[error("the request failed: {0}")]
    Request(String),
    /// The whole fetch took longer than `timeout`.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with a status other than 2xx.
    #[error("the endpoint answered HTTP {0}")]
    Status(u16),
    /// The body is larger than `max_bytes`.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not a JSON Web Key Set (`{"keys": [...]}`).
    #[error("the answer is not a JSON Web Key Set: {0}")]
    Malformed(String),
    /// The set holds no key that can verify one of the accepted algorithms.
    #[error("the key set holds no usable key ({skipped} skipped)")]
    NoUsableKey {
        /// How many keys were skipped.
        skipped: usize,
    },
}

/// The key set of an identity provider's JWKS endpoint, as the `jwt_claim` resolver uses it.
///
/// Built by [`JwtClaimResolver::from_config`](crate::JwtClaimResolver::from_config) from
/// `resolution.jwt_verify.jwks`; reach it with
/// [`ResolveTenantLayer::jwks`](crate::ResolveTenantLayer::jwks) to fetch the set before serving
/// ([`refresh`](Self::refresh)) and to report on it ([`health`](Self::health)). Clones share the
/// set. Building it makes no request: the first fetch is [`refresh`](Self::refresh) or the first
/// token that needs a key.
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_core::InMemoryStore;
/// use tenancy_resolution::{JwksConfig, JwtVerifyConfig, ResolutionConfig, ResolveTenantLayer, TenantValidator};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ResolutionConfig {
///     jwt_verify: Some(JwtVerifyConfig {
///         algorithms: vec!["RS256".into(), "ES256".into()],
///         jwks: Some(JwksConfig::new("https://idp.example.com/.well-known/jwks.json")),
///         issuers: vec!["https://idp.example.com/".into()],
///         ..JwtVerifyConfig::default()
///     }),
///     ..ResolutionConfig::default()
/// };
/// let validator = TenantValidator::new(Arc::new(InMemoryStore::new()), &config.validator)?;
/// let layer = ResolveTenantLayer::new(&config, validator)?;
/// let jwks = layer.jwks().expect("jwt_verify.jwks is set");
/// jwks.refresh().await?; // or let the first token fetch it
/// println!("{:?}", jwks.health());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Inner {
    uri: Uri,
    /// The URL as logs and health show it: no query.
    shown: String,
    client: HttpClient,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    timeout: Duration,
    max_bytes: usize,
    /// The accepted algorithms (never HMAC).
    algorithms: Vec<Algorithm>,
    /// Claim checks shared by every key; each key narrows `algorithms` to the ones it serves.
    template: Validation,
    keys: ArcSwapOption<KeySet>,
    /// Held while fetching: one fetch at a time.
    flight: tokio::sync::Mutex<()>,
    clocks: Mutex<Clocks>,
    /// A background refresh is running.
    background: AtomicBool,
    status: Mutex<Status>,
    fetches: AtomicU64,
}

/// When the rate-limited refreshes last started.
#[derive(Default)]
struct Clocks {
    unknown_kid: Option<Instant>,
    background: Option<Instant>,
}

#[derive(Default)]
struct Status {
    last_error: Option<JwksError>,
    failures: u64,
}

/// A fetched set: verification keys by `kid`.
struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Instant,
}

struct VerifyingKey {
    key: DecodingKey,
    /// The template, with only the algorithms this key serves.
    validation: Validation,
}

/// What a token's check found, synchronously.
pub(crate) enum Checked {
    /// Verified: its claims.
    Claims(JsonObject),
    /// Refused (bad token, bad signature, expired, ...), or its key is unknown and no refresh is
    /// allowed now.
    Refused,
    /// Its `kid` is not in the set and a refresh is allowed: await
    /// [`JwksCache::verify_after_refresh`].
    Refresh,
}

fn invalid(why: impl fmt::Display) -> TenantError {
    TenantError::Configuration(format!("resolution.jwt_verify.jwks: {why}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JwksCache {
    /// Checks `config` and builds the client; fetches nothing.
    pub(crate) fn new(
        config: &JwksConfig,
        algorithms: Vec<Algorithm>,
        template: Validation,
    ) -> Result<Self, TenantError> {
        let uri = parse_url(&config.url)?;
        for (name, value) in [
            ("refresh_interval", config.refresh_interval),
            ("min_refresh_interval", config.min_refresh_interval),
            ("timeout", config.timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(format!("{name} must be longer than zero")));
            }
        }
        if config.max_bytes == 0 {
            return Err(invalid("max_bytes must be at least 1"));
        }
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let tls = match (https, config.ca_file.as_deref()) {
            (true, ca_file) => tls_config(ca_file)?,
            (false, Some(_)) => {
                return Err(invalid(
                    "ca_file is set but url is http://: a CA file serves https:// only",
                ));
            }
            // Never used: plain HTTP, and redirects are not followed. No system roots are loaded.
            (false, None) => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid(format!("the TLS client cannot be set up: {err}")))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        // An https URL never falls back to plain HTTP.
        let connector = if https {
            builder.https_only().enable_http1().build()
        } else {
            builder.https_or_http().enable_http1().build()
        };
        // Fetches are minutes apart: no idle connection is kept (a provider closing it meanwhile
        // would fail the next fetch).
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        Ok(Self {
            inner: Arc::new(Inner {
                uri,
                shown,
                client,
                refresh_interval: config.refresh_interval,
                min_refresh_interval: config.min_refresh_interval,
                timeout: config.timeout,
                max_bytes: config.max_bytes,
                algorithms,
                template,
                keys: ArcSwapOption::empty(),
                flight: tokio::sync::Mutex::new(()),
                clocks: Mutex::new(Clocks::default()),
                background: AtomicBool::new(false),
                status: Mutex::new(Status::default()),
                fetches: AtomicU64::new(0),
            }),
        })
    }

    /// The endpoint, as logs and health show it (without its query).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.inner.shown
    }

    /// Fetches the set now (waiting for a fetch already in progress first) and, when it holds a
    /// usable key, replaces the cached one. Not rate-limited: call it at start-up, or on a signal
    /// that the provider rotated its keys.
    ///
    /// # Errors
    /// [`JwksError`]: the cached set, if any, stays in use, and [`health`](Self::health) reports
    /// the failure until a fetch succeeds.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _flight = self.inner.flight.lock().await;
        self.inner.fetch_and_store().await
    }

    /// The key ids of the cached set, sorted (empty before the first successful fetch).
    #[must_use]
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .keys
            .load()
            .as_ref()
            .map(|set| set.keys.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// How many fetches were started (successful or not).
    #[must_use]
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// The last fetch's error, until a fetch succeeds.
    #[must_use]
    pub fn last_error(&self) -> Option<JwksError> {
        lock(&self.inner.status).last_error.clone()
    }

    /// The state of the key set:
    /// - healthy: a set is cached and the last fetch succeeded;
    /// - degraded: the last fetch failed, tokens are verified with the last good set (detail
    ///   `reason` holds the error);
    /// - unhealthy: no set was ever fetched (none tried yet, or every fetch failed): tokens
    ///   verified against the JWKS name no tenant.
    ///
    /// Details: `jwks_url`, `jwks_keys` (count), `jwks_age` (seconds since the cached set was
    /// fetched), `jwks_fetches`, `jwks_failures`. Makes no request.
    #[must_use]
    pub fn health(&self) -> Health {
        let set = self.inner.keys.load_full();
        let (error, failures) = {
            let status = lock(&self.inner.status);
            (status.last_error.clone(), status.failures)
        };
        let health = match (&set, error) {
            (Some(_), None) => Health::healthy(),
            (Some(_), Some(error)) => Health::degraded(format!(
                "the last JWKS fetch failed, tokens are verified with the last good key set: {error}"
            )),
            (None, Some(error)) => {
                Health::unhealthy(format!("no JWKS key set: the fetch failed: {error}"))
            }
            (None, None) => Health::unhealthy("no JWKS key set fetched yet"),
        };
        let health = health
            .with_detail("jwks_url", self.inner.shown.as_str())
            .with_detail("jwks_fetches", self.fetches().to_string())
            .with_detail("jwks_failures", failures.to_string());
        match set {
            Some(set) => health
                .with_detail("jwks_keys", set.keys.len().to_string())
                .with_detail(
                    "jwks_age",
                    format!("{}s", set.fetched_at.elapsed().as_secs()),
                ),
            None => health.with_detail("jwks_keys", "0"),
        }
    }

    /// Checks `token` against the cached set, without I/O. A set due for refresh is refreshed in
    /// the background.
    pub(crate) fn check(&self, token: &[u8]) -> Checked {
        let Some(kid) = key_id(token) else {
            return Checked::Refused;
        };
        let guard = self.inner.keys.load();
        match guard
            .as_ref()
            .and_then(|set| set.keys.get(&kid).map(|key| (set, key)))
        {
            Some((set, key)) => {
                if set.fetched_at.elapsed() >= self.inner.refresh_interval {
                    self.refresh_in_background();
                }
                key.verify(token).map_or(Checked::Refused, Checked::Claims)
            }
            // A fetch in progress may bring the key: wait for it rather than refuse.
            None if self.inner.unknown_kid_refresh_allowed()
                || self.inner.flight.try_lock().is_err() =>
            {
                Checked::Refresh
            }
            None => {
                tracing::debug!(kid = %kid, jwks = %self.inner.shown, "bearer token refused: unknown key id, no refresh allowed yet");
                Checked::Refused
            }
        }
    }

    /// Waits for a fetch in progress, then refreshes the set for `token`'s unknown `kid` unless
    /// that fetch brought it or the rate limit forbids it, then checks `token` again.
    pub(crate) async fn verify_after_refresh(&self, token: &[u8]) -> Option<JsonObject> {
        let kid = key_id(token)?;
        {
            let _flight = self.inner.flight.lock().await;
            // The fetch this request waited for may have brought the key.
            if !self.inner.has(&kid) && self.inner.take_unknown_kid_slot() {
                tracing::info!(kid = %kid, jwks = %self.inner.shown, "unknown key id: refreshing the key set");
                let _ = self.inner.fetch_and_store().await;
            }
        }
        match self.check(token) {
            Checked::Claims(claims) => Some(claims),
            Checked::Refused | Checked::Refresh => None,
        }
    }

    /// Spawns one background refresh, unless one runs, the last one started less than
    /// `min_refresh_interval` ago, or there is no Tokio runtime.
    fn refresh_in_background(&self) {
        let inner = &self.inner;
        if inner.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            inner.background.store(false, Ordering::Release);
            return;
        };
        {
            let mut clocks = lock(&inner.clocks);
            if clocks
                .background
                .is_some_and(|at| at.elapsed() < inner.min_refresh_interval)
            {
                inner.background.store(false, Ordering::Release);
                return;
            }
            clocks.background = Some(Instant::now());
        }
        let inner = Arc::clone(inner);
        runtime.spawn(async move {
            /// Clears the flag however the task ends.
            struct Done(Arc<Inner>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.background.store(false, Ordering::Release);
                }
            }
            let done = Done(inner);
            let _flight = done.0.flight.lock().await;
            tracing::debug!(jwks = %done.0.shown, "key set due: refreshing in the background");
            let _ = done.0.fetch_and_store().await;
        });
    }
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.inner.shown)
            .field("algorithms", &self.inner.algorithms)
            .field("refresh_interval", &self.inner.refresh_interval)
            .field("min_refresh_interval", &self.inner.min_refresh_interval)
            .field("keys", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn has(&self, kid: &str) -> bool {
        self.keys
            .load()
            .as_ref()
            .is_some_and(|set| set.keys.contains_key(kid))
    }

    fn unknown_kid_refresh_allowed(&self) -> bool {
        lock(&self.clocks)
            .unknown_kid
            .is_none_or(|at| at.elapsed() >= self.min_refresh_interval)
    }

    /// Claims the unknown-kid refresh if the rate limit allows it now.
    fn take_unknown_kid_slot(&self) -> bool {
        let mut clocks = lock(&self.clocks);
        if clocks
            .unknown_kid
            .is_some_and(|at| at.elapsed() < self.min_refresh_interval)
        {
            return false;
        }
        clocks.unknown_kid = Some(Instant::now());
        true
    }

    /// One fetch; a usable set replaces the cached one. The caller holds `flight`.
    async fn fetch_and_store(&self) -> Result<usize, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(JwksError::Timeout(self.timeout)),
        };
        let mut status = lock(&self.status);
        match result {
            Ok(set) => {
                let count = set.keys.len();
                self.keys.store(Some(Arc::new(set)));
                status.last_error = None;
                tracing::info!(jwks = %self.shown, keys = count, "key set fetched");
                Ok(count)
            }
            Err(error) => {
                status.failures += 1;
                status.last_error = Some(error.clone());
                tracing::warn!(jwks = %self.shown, error = %error, "key set fetch failed; the last good set stays in use");
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let request = http::Request::get(self.uri.clone())
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .header(
                http::header::USER_AGENT,
                concat!("tenancy-resolution/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|err| JwksError::Request(err.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|err| JwksError::Request(chain(&err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status(status.as_u16()));
        }
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(JwksError::TooLarge(self.max_bytes));
        }
        let body = Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    JwksError::TooLarge(self.max_bytes)
                } else {
                    JwksError::Request(chain(&*err))
                }
            })?
            .to_bytes();
        self.parse(&body)
    }

    /// The usable keys of a JWKS document; the others are skipped with a warning.
    fn parse(&self, body: &[u8]) -> Result<KeySet, JwksError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|err| JwksError::Malformed(err.to_string()))?;
        let mut keys = HashMap::with_capacity(document.keys.len());
        let mut skipped = 0;
        for (index, value) in document.keys.into_iter().enumerate() {
            match self.key(value) {
                Ok((kid, key)) => match keys.entry(kid) {
                    std::collections::hash_map::Entry::Occupied(taken) => {
                        skipped += 1;
                        tracing::warn!(jwks = %self.shown, kid = %taken.key(), "key skipped: its kid is used by an earlier key of the set");
                    }
                    std::collections::hash_map::Entry::Vacant(free) => {
                        free.insert(key);
                    }
                },
                Err(why) => {
                    skipped += 1;
                    tracing::warn!(jwks = %self.shown, index, reason = %why, "key skipped");
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
        })
    }

    /// One key of the set, with the accepted algorithms it serves.
    fn key(&self, value: serde_json::Value) -> Result<(String, VerifyingKey), String> {
        let kid = value
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .filter(|kid| !kid.is_empty())
            .ok_or("no kid")?
            .to_owned();
        let jwk: Jwk = serde_json::from_value(value)
            .map_err(|err| format!("kid `{kid}`: not a JSON Web Key: {err}"))?;
        if let Some(usage) = &jwk.common.public_key_use
            && *usage != PublicKeyUse::Signature
        {
            return Err(format!("kid `{kid}`: not a signature key (use {usage:?})"));
        }
        if let Some(operations) = &jwk.common.key_operations
            && !operations.contains(&KeyOperations::Verify)
        {
            return Err(format!("kid `{kid}`: key_ops does not include verify"));
        }
        let algorithms: Vec<Algorithm> = self
            .algorithms
            .iter()
            .copied()
            .filter(|alg| serves(&jwk, *alg))
            .collect();
        if algorithms.is_empty() {
            return Err(format!(
                "kid `{kid}`: its type{} serves none of the accepted algorithms {:?}",
                jwk.common
                    .key_algorithm
                    .map(|alg| format!(" and alg {alg}"))
                    .unwrap_or_default(),
                self.algorithms
            ));
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|err| format!("kid `{kid}`: unreadable key: {err}"))?;
        let mut validation = self.template.clone();
        validation.algorithms = algorithms;
        Ok((kid, VerifyingKey { key, validation }))
    }
}

impl VerifyingKey {
    fn verify(&self, token: &[u8]) -> Option<JsonObject> {
        match decode::<JsonObject>(token, &self.key, &self.validation) {
            Ok(data) => Some(data.claims),
            Err(err) => {
                tracing::debug!(error = %err, "bearer token refused");
                None
            }
        }
    }
}

/// Whether `jwk` can verify `alg`: RSA keys the RS and PS algorithms, EC keys the ES algorithm
/// of their curve, OKP Ed25519 keys EdDSA; symmetric keys never. A key naming its `alg` serves
/// that one only.
fn serves(jwk: &Jwk, alg: Algorithm) -> bool {
    let by_type = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    by_type
        && jwk
            .common
            .key_algorithm
            .is_none_or(|named| named == KeyAlgorithm::from(alg))
}

/// The token's `kid`, if its header parses and names one (the header's `alg` must be a known
/// algorithm: `none` is refused here).
fn key_id(token: &[u8]) -> Option<String> {
    match decode_header(token) {
        Ok(header) => {
            if header.kid.is_none() {
                tracing::debug!("bearer token refused: no kid to choose a JWKS key");
            }
            header.kid
        }
        Err(err) => {
            tracing::debug!(error = %err, "bearer token refused");
            None
        }
    }
}

/// TLS with the ring provider, certificates verified by the platform's verifier against the
/// system's trust store (read now), plus the roots of `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, TenantError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|err| {
                invalid(format!("ca_file {} cannot be read: {err}", path.display()))
            })?;
            let roots = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| {
                    invalid(format!(
                        "ca_file {} is not a PEM certificate file: {err}",
                        path.display()
                    ))
                })?;
            if roots.is_empty() {
                return Err(invalid(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            roots
        }
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, Arc::clone(&provider))
            .map_err(|err| {
                invalid(format!(
                    "the TLS verifier cannot be set up ({err}): install the system's CA \
                     certificates, or name the provider's CA in ca_file"
                ))
            })?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(format!("the TLS client cannot be set up: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// `url` as a request target: it must parse, be `http` or `https`, name a host, and carry no
/// credentials.
fn parse_url(url: &str) -> Result<Uri, TenantError> {
    let trimmed = url.trim();
    match trimmed.split_once("://") {
        Some(("https" | "http", _)) => {}
        Some((other, _)) => {
            return Err(invalid(format!(
                "url `{url}` has scheme `{other}`: use https:// (or http://)"
            )));
        }
        None => {
            return Err(invalid(format!(
                "url `{url}` is not absolute: use https://host/path"
            )));
        }
    }
    let uri: Uri = trimmed
        .parse()
        .map_err(|err| invalid(format!("url `{url}` does not parse: {err}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(format!("url `{url}` names no host")))?;
    if authority.as_str().contains('@') {
        return Err(invalid(format!(
            "url `{url}` carries credentials, which are not supported"
        )));
    }
    if authority.host().is_empty() {
        return Err(invalid(format!("url `{url}` names no host")));
    }
    Ok(uri)
}

/// An error and its sources, as one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/jwks").is_ok());
        for (url, expected) in [
            ("ftp://idp.example.com/jwks", "scheme `ftp`"),
            ("/jwks.json", "not absolute"),
            ("idp.example.com/jwks", "not absolute"),
            ("https://user:pw@idp.example.com/jwks", "credentials"),
            ("https:// bad", "does not parse"),
            ("https://", "does not parse"),
            ("", "not absolute"),
        ] {
            let Err(TenantError::Configuration(message)) = parse_url(url) else {
                panic!("{url} should be refused");
            };
            assert!(message.contains(expected), "{url}: {message}");
            assert!(
                message.starts_with("resolution.jwt_verify.jwks: "),
                "{message}"
            );
        }
    }
}
