//! [`ResolutionConfig`]: the `resolution` section of the tenancy configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenancy_core::{Slug, TenantId, TenantRef};

/// Name of the JWT claim resolver.
pub const JWT_CLAIM: &str = Builtin::JwtClaim.name();
/// Name of the header resolver.
pub const HEADER: &str = Builtin::Header.name();
/// Name of the subdomain resolver.
pub const SUBDOMAIN: &str = Builtin::Subdomain.name();
/// Name of the path resolver.
pub const PATH: &str = Builtin::Path.name();
/// Name of the custom domain resolver.
pub const DOMAIN: &str = Builtin::Domain.name();

/// A built-in resolver, as `resolution.resolvers` names it. Parsed when the configuration is
/// loaded: an unknown name fails there, naming the ones that exist.
///
/// ```
/// use tenancy_resolution::Builtin;
///
/// let names: Vec<Builtin> = serde_json::from_str(r#"["header", "path"]"#)?;
/// assert_eq!(names, [Builtin::Header, Builtin::Path]);
/// let err = serde_json::from_str::<Vec<Builtin>>(r#"["cookie"]"#).unwrap_err();
/// assert!(err.to_string().contains("unknown variant `cookie`"), "{err}");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// A claim of a verified token (priority 10).
    JwtClaim,
    /// A request header (priority 20).
    Header,
    /// The first label of the host under a base domain (priority 30).
    Subdomain,
    /// The whole host, as a tenant's custom domain (priority 35).
    Domain,
    /// A segment of the path (priority 40).
    Path,
}

impl Builtin {
    /// Every built-in resolver, in default priority order.
    pub const ALL: [Self; 5] = [
        Self::JwtClaim,
        Self::Header,
        Self::Subdomain,
        Self::Domain,
        Self::Path,
    ];

    /// The resolver's name, as configuration, logs and trust decisions use it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::JwtClaim => "jwt_claim",
            Self::Header => "header",
            Self::Subdomain => "subdomain",
            Self::Domain => "domain",
            Self::Path => "path",
        }
    }

    /// The priority it runs at unless `resolution.priorities` overrides it (lower runs first).
    #[must_use]
    pub const fn default_priority(self) -> i32 {
        match self {
            Self::JwtClaim => 10,
            Self::Header => 20,
            Self::Subdomain => 30,
            Self::Domain => 35,
            Self::Path => 40,
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a tenant found by an untrusted resolver (one not in `resolution.trusted_resolvers`) needs
/// the authenticated user to be a member of it ([`TenantMembership`](crate::TenantMembership)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipMode {
    /// Always: an anonymous request gets no tenant from an untrusted resolver, an authenticated
    /// one only when its user is a member (the default).
    #[default]
    Strict,
    /// When a user is authenticated: anonymous requests keep the tenant an untrusted resolver
    /// found (public pages of a tenant), authenticated users must be members.
    Authenticated,
    /// Never: every resolver is trusted.
    Off,
}

/// What a resolved string names: a tenant id (UUID) or a slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A [`TenantId`] (UUID).
    #[default]
    Id,
    /// A [`Slug`].
    Slug,
}

impl KeyKind {
    /// Parses raw bytes (a header value, a path segment, a claim) as this kind of key.
    ///
    /// Never allocates and never touches a store; `None` when the bytes do not parse.
    ///
    /// ```
    /// use tenancy_resolution::KeyKind;
    ///
    /// assert!(KeyKind::Slug.parse(b"acme").is_some());
    /// assert!(KeyKind::Id.parse(b"acme").is_none());
    /// assert!(KeyKind::Slug.parse(b"../etc").is_none());
    /// ```
    #[must_use]
    pub fn parse(self, bytes: &[u8]) -> Option<TenantRef> {
        match self {
            Self::Id => TenantId::try_from(bytes).ok().map(TenantRef::Id),
            Self::Slug => Slug::from_bytes(bytes).ok().map(TenantRef::Slug),
        }
    }
}

/// Settings of the [`TenantValidator`](crate::TenantValidator) cache. Durations are written the
/// human way (`300s`, `5m`, `1h 30m`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// How long a tenant found in the store stays cached (default `5m`).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long "no such tenant" stays cached (default `5s`).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// The most tenants the cache holds (default 100,000); at least 1.
    pub cache_capacity: u64,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
            cache_capacity: 100_000,
        }
    }
}

/// Settings for verifying bearer tokens in the `jwt_claim` resolver (needs feature `jwt`).
///
/// Exactly one key source: `secret` for the HMAC algorithms (HS256/384/512), `public_key_pem`
/// for the others (RS*, PS*, ES*, EdDSA), or `jwks`, a key set fetched from an identity provider
/// (feature `jwks`; public-key algorithms only). With one key, all `algorithms` must belong to
/// its family, so a token signed with HS256 and an RSA public key as secret is refused; with a
/// JWKS, each key serves only the listed algorithms of its own type (and its `alg`, when the key
/// names one).
///
/// Its `Debug` output shows `secret` as `<redacted>`, so that logging the configuration does not
/// leak the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtVerifyConfig {
    /// Accepted algorithms (`"RS256"`, `"HS256"`, ...); at least one.
    pub algorithms: Vec<String>,
    /// Shared secret for HS* algorithms, at least 32 bytes.
    pub secret: Option<String>,
    /// PEM-encoded public key for RS*, PS*, ES* and EdDSA.
    pub public_key_pem: Option<String>,
    /// Keys fetched from an identity provider's JWKS endpoint, chosen by the token's `kid`
    /// (feature `jwks`).
    pub jwks: Option<JwksConfig>,
    /// Accepted issuers (`iss`); empty accepts any.
    pub issuers: Vec<String>,
    /// Accepted audiences (`aud`); empty does not check `aud`.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf` (default `60s`).
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl fmt::Debug for JwtVerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifyConfig")
            .field("algorithms", &self.algorithms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_pem", &self.public_key_pem)
            .field("jwks", &self.jwks)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl Default for JwtVerifyConfig {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            secret: None,
            public_key_pem: None,
            jwks: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: Duration::from_secs(60),
        }
    }
}

/// Where and how often the `jwt_claim` resolver fetches its JSON Web Key Set (feature `jwks`).
///
/// The set is fetched once and cached; a token whose `kid` is in the set is verified without any
/// I/O. A set older than `refresh_interval` is refreshed in the background by the next request
/// that uses it. A token with an unknown `kid` triggers one refresh (concurrent requests share
/// it), at most once per `min_refresh_interval`; meanwhile such tokens name no tenant. A failed
/// fetch keeps the last good set. Durations are written the human way (`30s`, `5m`).
///
/// ```
/// use std::time::Duration;
/// use tenancy_resolution::JwksConfig;
///
/// let jwks: JwksConfig = serde_json::from_value(serde_json::json!({
///     "url": "https://idp.example.com/.well-known/jwks.json",
///     "refresh_interval": "10m",
/// }))?;
/// assert_eq!(jwks.refresh_interval, Duration::from_secs(600));
/// assert_eq!(jwks.min_refresh_interval, Duration::from_secs(30));
/// assert_eq!(jwks, JwksConfig { refresh_interval: Duration::from_secs(600), ..JwksConfig::new("https://idp.example.com/.well-known/jwks.json") });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// The JWKS endpoint, `https://` (or `http://`, for a provider on a trusted network).
    pub url: String,
    /// Age after which the set is refreshed in the background (default `5m`).
    #[serde(
        default = "JwksConfig::default_refresh_interval",
        with = "humantime_serde"
    )]
    pub refresh_interval: Duration,
    /// Least time between two refreshes triggered by unknown key ids, and between two retries
    /// after a failed fetch (default `30s`); not zero.
    #[serde(
        default = "JwksConfig::default_min_refresh_interval",
        with = "humantime_serde"
    )]
    pub min_refresh_interval: Duration,
    /// Limit on one fetch: connecting, sending, receiving the whole body (default `5s`).
    #[serde(default = "JwksConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest accepted response body, in bytes (default 1 MiB).
    #[serde(default = "JwksConfig::default_max_bytes")]
    pub max_bytes: usize,
    /// A PEM file of root certificates trusted for the endpoint in addition to the system's (an
    /// identity provider behind a private CA); none by default. Read when the resolver is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl JwksConfig {
    /// The settings for `url`, every other one at its default.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh_interval: Self::default_refresh_interval(),
            min_refresh_interval: Self::default_min_refresh_interval(),
            timeout: Self::default_timeout(),
            max_bytes: Self::default_max_bytes(),
            ca_file: None,
        }
    }

    fn default_refresh_interval() -> Duration {
        Duration::from_secs(300)
    }

    fn default_min_refresh_interval() -> Duration {
        Duration::from_secs(30)
    }

    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }

    fn default_max_bytes() -> usize {
        1024 * 1024
    }
}

/// The `resolution` section: which resolvers run, how they read requests, how the validator
/// caches, and which resolvers are trusted without a membership check.
///
/// ```
/// use tenancy_resolution::ResolutionConfig;
///
/// let config: ResolutionConfig = serde_json::from_value(serde_json::json!({
///     "resolvers": ["header", "subdomain"],
///     "subdomain_base_domain": "app.example.com",
/// }))?;
/// assert_eq!(config.header_name, "x-tenant-id");
/// assert!(serde_json::from_value::<ResolutionConfig>(serde_json::json!({"headr_name": "x"})).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolutionConfig {
    /// Built-in resolvers to activate. When absent (the default): `jwt_claim`, `header`, `path`,
    /// and `subdomain` too when `subdomain_base_domain` is set; `domain` (tenants' custom
    /// domains) only when listed. When listed explicitly, `subdomain` without a base domain is a
    /// configuration error (an unknown name fails to load).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolvers: Option<Vec<Builtin>>,
    /// Header read by the `header` resolver (default `x-tenant-id`).
    pub header_name: String,
    /// What the header holds (default `id`).
    pub header_kind: KeyKind,
    /// Base domain of the `subdomain` resolver (`app.example.com`); none by default.
    pub subdomain_base_domain: Option<String>,
    /// Pattern of the `path` resolver, one `{placeholder}` segment (default `/tenants/{tenant}/`).
    pub path_pattern: String,
    /// What the path segment holds (default `slug`).
    pub path_kind: KeyKind,
    /// Claim read by the `jwt_claim` resolver (default `tenant_id`).
    pub jwt_claim_key: String,
    /// What the claim holds (default `id`).
    pub jwt_claim_kind: KeyKind,
    /// Verify bearer tokens in the `jwt_claim` resolver (feature `jwt`); none by default, in which
    /// case the resolver reads only [`VerifiedClaims`](crate::VerifiedClaims).
    pub jwt_verify: Option<JwtVerifyConfig>,
    /// Priority overrides by resolver name (lower runs first); defaults: jwt_claim 10, header 20,
    /// subdomain 30, path 40.
    pub priorities: BTreeMap<String, i32>,
    /// Validator cache settings.
    pub validator: ValidatorConfig,
    /// Resolvers whose answer needs no membership check; application resolvers may be named
    /// too. Each one listed must be active. When absent (the default), `jwt_claim` is trusted if
    /// it is active, so `resolvers: [header]` alone needs no other setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_resolvers: Option<Vec<String>>,
    /// When a tenant found by an untrusted resolver needs the user to be a member (default
    /// `strict`).
    pub membership: MembershipMode,
}

impl Default for ResolutionConfig {
    fn default() -> Self {
        Self {
            resolvers: None,
            header_name: "x-tenant-id".to_owned(),
            header_kind: KeyKind::Id,
            subdomain_base_domain: None,
            path_pattern: "/tenants/{tenant}/".to_owned(),
            path_kind: KeyKind::Slug,
            jwt_claim_key: "tenant_id".to_owned(),
            jwt_claim_kind: KeyKind::Id,
            jwt_verify: None,
            priorities: BTreeMap::new(),
            validator: ValidatorConfig::default(),
            trusted_resolvers: None,
            membership: MembershipMode::Strict,
        }
    }
}

impl ResolutionConfig {
    /// The built-in resolvers that will be activated (see [`ResolutionConfig::resolvers`]).
    #[must_use]
    pub fn active_resolvers(&self) -> Vec<Builtin> {
        match &self.resolvers {
            Some(names) => names.clone(),
            None => Builtin::ALL
                .into_iter()
                .filter(|b| match b {
                    Builtin::Subdomain => self.subdomain_base_domain.is_some(),
                    Builtin::Domain => false,
                    _ => true,
                })
                .collect(),
        }
    }

    /// The priority of a resolver: the override if any, else `default`.
    #[must_use]
    pub fn priority(&self, name: &str, default: i32) -> i32 {
        self.priorities.get(name).copied().unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = ResolutionConfig::default();
        assert_eq!(
            config.active_resolvers(),
            [Builtin::JwtClaim, Builtin::Header, Builtin::Path]
        );
        let with_base = ResolutionConfig {
            subdomain_base_domain: Some("app.example.com".into()),
            ..ResolutionConfig::default()
        };
        assert_eq!(
            with_base.active_resolvers(),
            [
                Builtin::JwtClaim,
                Builtin::Header,
                Builtin::Subdomain,
                Builtin::Path
            ],
            "`domain` runs only when listed"
        );
        assert_eq!(config.validator.cache_ttl, Duration::from_secs(300));
        assert_eq!(config.validator.negative_ttl, Duration::from_secs(5));
        assert_eq!(config.validator.cache_capacity, 100_000);
        assert_eq!(config.trusted_resolvers, None);
        assert_eq!(config.membership, MembershipMode::Strict);
        let empty: ResolutionConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, config);
        let round = serde_json::to_value(&config).unwrap();
        assert_eq!(
            serde_json::from_value::<ResolutionConfig>(round).unwrap(),
            config
        );
    }

    #[test]
    fn debug_output_hides_the_jwt_secret() {
        let config = ResolutionConfig {
            jwt_verify: Some(JwtVerifyConfig {
                algorithms: vec!["HS256".into()],
                secret: Some("a-shared-secret-of-at-least-32-bytes!".into()),
                ..JwtVerifyConfig::default()
            }),
            ..ResolutionConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("a-shared-secret"), "{debug}");
        assert!(debug.contains("secret: Some(\"<redacted>\")"), "{debug}");
        assert!(debug.contains("HS256"), "{debug}");
    }

    #[test]
    fn durations_are_human_readable() {
        let config: ResolutionConfig = serde_json::from_value(serde_json::json!({
            "validator": {"cache_ttl": "1m 30s", "negative_ttl": "250ms"},
            "membership": "authenticated",
        }))
        .unwrap();
        assert_eq!(config.validator.cache_ttl, Duration::from_secs(90));
        assert_eq!(config.validator.negative_ttl, Duration::from_millis(250));
        assert_eq!(config.membership, MembershipMode::Authenticated);
        let err = serde_json::from_value::<ResolutionConfig>(
            serde_json::json!({"validator": {"cache_ttl": 300}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<ResolutionConfig>(r#"{"validator": {"ttl": 1}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `ttl`"), "{err}");
    }
}
