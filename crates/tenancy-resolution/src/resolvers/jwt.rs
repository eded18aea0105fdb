use serde_json::Value;
use tenancy_core::{TenantError, TenantRef};

use super::found;
use crate::config::{self, KeyKind, ResolutionConfig};
use crate::context::ResolutionContext;
use crate::resolver::{Resolution, TenantResolver};

/// Reads the tenant from a JWT claim (default `tenant_id`, an id).
///
/// Two modes:
/// - [`VerifiedClaims`](crate::VerifiedClaims) in the request extensions (an auth layer verified
///   the token) are read first, and need no feature;
/// - with `jwt_verify` configured (feature `jwt`), otherwise, the `Authorization: Bearer` token is
///   verified here: configured key and algorithms, `exp` required, `nbf` checked when present,
///   optional issuers and audiences.
///   `alg: none`, a wrong key, an expired token or an algorithm of another family than the key's
///   (HS/RS confusion) name no tenant.
/// - with `jwt_verify.jwks` (feature `jwks`), the key is the one of the provider's key set that the
///   token's `kid` names ([`JwksCache`](crate::JwksCache)); a token with an unknown `kid` waits for
///   one rate-limited refresh of the set ([`Resolution::Deferred`]), or names no tenant when no
///   refresh is allowed.
#[derive(Debug)]
pub struct JwtClaimResolver {
    claim: Box<str>,
    kind: KeyKind,
    priority: i32,
    #[cfg(feature = "jwt")]
    verifier: Option<verify::Verifier>,
}

impl JwtClaimResolver {
    /// A resolver reading `claim` from verified claims only.
    #[must_use]
    pub fn new(claim: &str, kind: KeyKind, priority: i32) -> Self {
        Self {
            claim: Box::from(claim),
            kind,
            priority,
            #[cfg(feature = "jwt")]
            verifier: None,
        }
    }

    /// The resolver `config` describes.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when `jwt_verify` is invalid (no algorithm, unknown
    /// algorithm, algorithms of several families for one key, no key or two keys, a key that does
    /// not parse, a secret shorter than 32 bytes, an HMAC algorithm with a JWKS, a JWKS URL that
    /// does not parse or is not http(s), a zero interval), or is set while the `jwt` feature (for
    /// `jwks`, the `jwks` feature) is off.
    pub fn from_config(config: &ResolutionConfig) -> Result<Self, TenantError> {
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
        let mut resolver = Self::new(
            &config.jwt_claim_key,
            config.jwt_claim_kind,
            config.priority(config::JWT_CLAIM, 10),
        );
        if let Some(settings) = &config.jwt_verify {
            #[cfg(feature = "jwt")]
            {
                resolver.verifier = Some(verify::Verifier::new(settings)?);
            }
            #[cfg(not(feature = "jwt"))]
            {
                let _ = settings;
                return Err(TenantError::Configuration(
                    "resolution.jwt_verify is set but tenancy-resolution was built without the \
                     `jwt` feature: enable it, or let an auth layer insert VerifiedClaims"
                        .into(),
                ));
            }
        }
        Ok(resolver)
    }

    /// The key set this resolver verifies tokens with, when `jwt_verify.jwks` is configured.
    #[cfg(feature = "jwks")]
    #[must_use]
    pub fn jwks(&self) -> Option<&crate::JwksCache> {
        self.verifier.as_ref().and_then(verify::Verifier::jwks)
    }

    /// A string claim as it is; an integer claim (`"tenant": 42`) as its decimal text; any other
    /// JSON type names no tenant.
    fn parse_claim(&self, value: Option<&Value>) -> Option<TenantRef> {
        match value? {
            Value::String(s) => self.kind.parse(s.as_bytes()),
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                use std::io::Write as _;
                // The longest integer, i64::MIN, is 20 bytes: written on the stack.
                let mut digits = [0u8; 20];
                let mut cursor = std::io::Cursor::new(&mut digits[..]);
                write!(cursor, "{n}").ok()?;
                let len = usize::try_from(cursor.position()).ok()?;
                self.kind.parse(&digits[..len])
            }
            _ => None,
        }
    }
}

impl TenantResolver for JwtClaimResolver {
    fn name(&self) -> &str {
        config::JWT_CLAIM
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        if let Some(claims) = cx.claims() {
            return found(self.parse_claim(claims.get(&self.claim)));
        }
        #[cfg(feature = "jwt")]
        if let Some(verifier) = &self.verifier
            && let Some(token) = crate::bearer_token(cx.headers())
        {
            return match verifier.check(token) {
                verify::Checked::Claims(claims) => {
                    found(self.parse_claim(claims.get(&*self.claim)))
                }
                verify::Checked::Refused => Resolution::NotFound,
                #[cfg(feature = "jwks")]
                verify::Checked::Refresh => Resolution::Deferred,
            };
        }
        Resolution::NotFound
    }

    /// A token whose `kid` the key set does not hold: refresh the set (single-flight, rate
    /// limited), then verify.
    #[cfg(feature = "jwks")]
    fn resolve_deferred<'a>(
        &'a self,
        cx: &'a ResolutionContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<TenantRef>, TenantError>> {
        Box::pin(async move {
            let (Some(jwks), None, Some(token)) =
                (self.jwks(), cx.claims(), crate::bearer_token(cx.headers()))
            else {
                return Ok(None);
            };
            Ok(jwks
                .verify_after_refresh(token)
                .await
                .and_then(|claims| self.parse_claim(claims.get(&*self.claim))))
        })
    }
}

#[cfg(feature = "jwt")]
mod verify {
    use std::fmt;
    use std::str::FromStr;

    use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation, decode};
    use tenancy_core::{JsonObject, TenantError};

    use crate::config::JwtVerifyConfig;

    /// The shortest HMAC secret accepted (256 bits).
    const MIN_SECRET_LEN: usize = 32;

    /// Verifies bearer tokens with one configured key, or with the key set of a JWKS endpoint.
    pub(super) enum Verifier {
        Key {
            key: DecodingKey,
            validation: Box<Validation>,
        },
        #[cfg(feature = "jwks")]
        Jwks(crate::JwksCache),
    }

    /// What checking a token found.
    pub(super) enum Checked {
        Claims(JsonObject),
        Refused,
        /// Its key is unknown, a refresh of the key set is allowed: defer.
        #[cfg(feature = "jwks")]
        Refresh,
    }

    impl fmt::Debug for Verifier {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Key { validation, .. } => f
                    .debug_struct("Verifier")
                    .field("algorithms", &validation.algorithms)
                    .finish_non_exhaustive(),
                #[cfg(feature = "jwks")]
                Self::Jwks(jwks) => f.debug_tuple("Verifier").field(jwks).finish(),
            }
        }
    }

    fn invalid(why: impl fmt::Display) -> TenantError {
        TenantError::Configuration(format!("resolution.jwt_verify: {why}"))
    }

    impl Verifier {
        pub(super) fn new(settings: &JwtVerifyConfig) -> Result<Self, TenantError> {
            let algorithms = settings
                .algorithms
                .iter()
                .map(|name| {
                    Algorithm::from_str(name.trim()).map_err(|_| {
                        invalid(format!(
                            "unknown algorithm `{name}` (HS256, RS256, ES256, EdDSA, ...)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let first = *algorithms
                .first()
                .ok_or_else(|| invalid("algorithms is empty: list at least one, e.g. RS256"))?;
            let validation = validation(settings, first, &algorithms);
            if let Some(jwks) = &settings.jwks {
                if settings.secret.is_some() || settings.public_key_pem.is_some() {
                    return Err(invalid(
                        "set one of secret, public_key_pem and jwks, not several",
                    ));
                }
                if let Some(hmac) = algorithms
                    .iter()
                    .find(|alg| alg.family() == AlgorithmFamily::Hmac)
                {
                    return Err(invalid(format!(
                        "{hmac:?} cannot be verified with a JWKS, whose keys are public keys: \
                         list public-key algorithms (RS256, ES256, ...), or use secret"
                    )));
                }
                #[cfg(feature = "jwks")]
                return Ok(Self::Jwks(crate::JwksCache::new(
                    jwks, algorithms, validation,
                )?));
                #[cfg(not(feature = "jwks"))]
                {
                    let _ = jwks;
                    return Err(invalid(
                        "jwks is set but tenancy-resolution was built without the `jwks` feature",
                    ));
                }
            }
            let family = first.family();
            if algorithms.iter().any(|alg| alg.family() != family) {
                return Err(invalid(
                    "algorithms mix families (HMAC with public-key algorithms): one key serves one family",
                ));
            }
            let key = match (&settings.secret, &settings.public_key_pem, family) {
                (Some(_), Some(_), _) => {
                    return Err(invalid("set either secret or public_key_pem, not both"));
                }
                (Some(secret), None, AlgorithmFamily::Hmac) => {
                    if secret.len() < MIN_SECRET_LEN {
                        return Err(invalid(format!(
                            "secret is {} bytes, at least {MIN_SECRET_LEN} are required",
                            secret.len()
                        )));
                    }
                    DecodingKey::from_secret(secret.as_bytes()).map_err(invalid)?
                }
                (None, Some(pem), AlgorithmFamily::Rsa) => {
                    DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(invalid)?
                }
                (None, Some(pem), AlgorithmFamily::Ec) => {
                    DecodingKey::from_ec_pem(pem.as_bytes()).map_err(invalid)?
                }
                (None, Some(pem), AlgorithmFamily::Ed) => {
                    DecodingKey::from_ed_pem(pem.as_bytes()).map_err(invalid)?
                }
                (None, None, _) => {
                    return Err(invalid("no key: set secret, public_key_pem or jwks"));
                }
                (Some(_), None, _) => {
                    return Err(invalid(format!(
                        "{first:?} needs public_key_pem, a secret was given"
                    )));
                }
                (None, Some(_), _) => {
                    return Err(invalid(format!(
                        "{first:?} needs a secret, a public key was given"
                    )));
                }
            };
            Ok(Self::Key {
                key,
                validation: Box::new(validation),
            })
        }

        /// The key set, for a JWKS verifier.
        #[cfg(feature = "jwks")]
        pub(super) fn jwks(&self) -> Option<&crate::JwksCache> {
            match self {
                Self::Jwks(jwks) => Some(jwks),
                Self::Key { .. } => None,
            }
        }

        /// Checks `token` without I/O (the reason of a refusal is logged at debug).
        pub(super) fn check(&self, token: &[u8]) -> Checked {
            match self {
                Self::Key { key, validation } => {
                    match decode::<JsonObject>(token, key, validation) {
                        Ok(data) => Checked::Claims(data.claims),
                        Err(err) => {
                            tracing::debug!(error = %err, "bearer token refused");
                            Checked::Refused
                        }
                    }
                }
                #[cfg(feature = "jwks")]
                Self::Jwks(jwks) => match jwks.check(token) {
                    crate::jwks::Checked::Claims(claims) => Checked::Claims(claims),
                    crate::jwks::Checked::Refused => Checked::Refused,
                    crate::jwks::Checked::Refresh => Checked::Refresh,
                },
            }
        }
    }

    /// The claim checks: `exp` required, `nbf` checked, issuers and audiences when configured.
    fn validation(
        settings: &JwtVerifyConfig,
        first: Algorithm,
        algorithms: &[Algorithm],
    ) -> Validation {
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms.to_vec();
        validation.leeway = settings.leeway.as_secs();
        // Off by default in jsonwebtoken: a token is not valid before its `nbf` (RFC 7519).
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if settings.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&settings.issuers);
            required.push("iss");
        }
        if settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&settings.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}
