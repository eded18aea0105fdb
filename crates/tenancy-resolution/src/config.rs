//! [`ResolutionConfig`]: the `resolution` section of the tenancy configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenancy_core::{Slug, TenantId, TenantRef};

/// Names of the built-in resolvers, in their default priority order.
pub const JWT_CLAIM: &str = "jwt_claim";
/// Name of the header resolver.
pub const HEADER: &str = "header";
/// Name of the subdomain resolver.
pub const SUBDOMAIN: &str = "subdomain";
/// Name of the path resolver.
pub const PATH: &str = "path";

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

/// Settings of the [`TenantValidator`](crate::TenantValidator) cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// How long a tenant found in the store stays cached, in seconds (default 300).
    pub cache_ttl_secs: u64,
    /// How long "no such tenant" stays cached, in seconds (default 5).
    pub negative_ttl_secs: u64,
    /// The most entries the cache holds (default 100,000); at least 1.
    pub cache_capacity: u64,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            cache_ttl_secs: 300,
            negative_ttl_secs: 5,
            cache_capacity: 100_000,
        }
    }
}

impl ValidatorConfig {
    /// The positive TTL as a [`Duration`].
    #[must_use]
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// The negative TTL as a [`Duration`].
    #[must_use]
    pub fn negative_ttl(&self) -> Duration {
        Duration::from_secs(self.negative_ttl_secs)
    }
}

/// Settings for verifying bearer tokens in the `jwt_claim` resolver (needs feature `jwt`).
///
/// Exactly one key: `secret` for the HMAC algorithms (HS256/384/512), `public_key_pem` for the
/// others (RS*, PS*, ES*, EdDSA). All `algorithms` must belong to the key's family, so a token
/// signed with HS256 and an RSA public key as secret is refused.
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
    /// Accepted issuers (`iss`); empty accepts any.
    pub issuers: Vec<String>,
    /// Accepted audiences (`aud`); empty does not check `aud`.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 60).
    pub leeway_secs: u64,
}

impl fmt::Debug for JwtVerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifyConfig")
            .field("algorithms", &self.algorithms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_pem", &self.public_key_pem)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl Default for JwtVerifyConfig {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            secret: None,
            public_key_pem: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 60,
        }
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
    /// Resolver names to activate. When absent (the default): `jwt_claim`, `header`, `path`, and
    /// `subdomain` too when `subdomain_base_domain` is set. When listed explicitly, `subdomain`
    /// without a base domain, or an unknown name, is a configuration error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolvers: Option<Vec<String>>,
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
    /// Resolvers whose answer needs no membership check (default `["jwt_claim"]`).
    pub trusted_resolvers: Vec<String>,
    /// Check that the authenticated user belongs to a tenant found by an untrusted resolver
    /// (default true).
    pub strict_membership: bool,
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
            trusted_resolvers: vec![JWT_CLAIM.to_owned()],
            strict_membership: true,
        }
    }
}

impl ResolutionConfig {
    /// The resolver names that will be activated (see [`ResolutionConfig::resolvers`]).
    #[must_use]
    pub fn active_resolvers(&self) -> Vec<&str> {
        match &self.resolvers {
            Some(names) => names.iter().map(String::as_str).collect(),
            None => [JWT_CLAIM, HEADER, SUBDOMAIN, PATH]
                .into_iter()
                .filter(|name| *name != SUBDOMAIN || self.subdomain_base_domain.is_some())
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
    fn defaults_match_the_original() {
        let config = ResolutionConfig::default();
        assert_eq!(config.active_resolvers(), ["jwt_claim", "header", "path"]);
        let with_domain = ResolutionConfig {
            subdomain_base_domain: Some("app.example.com".into()),
            ..ResolutionConfig::default()
        };
        assert_eq!(
            with_domain.active_resolvers(),
            ["jwt_claim", "header", "subdomain", "path"]
        );
        assert_eq!(config.validator.cache_ttl(), Duration::from_secs(300));
        assert_eq!(config.validator.negative_ttl(), Duration::from_secs(5));
        assert_eq!(config.validator.cache_capacity, 100_000);
        assert_eq!(config.trusted_resolvers, ["jwt_claim"]);
        assert!(config.strict_membership);
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
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<ResolutionConfig>(r#"{"validator": {"ttl": 1}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `ttl`"), "{err}");
    }
}
