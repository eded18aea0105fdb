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
    /// algorithm, algorithms of several families, no key or two keys, a key that does not parse, a
    /// secret shorter than 32 bytes), or is set while the `jwt` feature is off.
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
            return found(
                verifier
                    .claims(token)
                    .and_then(|claims| self.parse_claim(claims.get(&*self.claim))),
            );
        }
        Resolution::NotFound
    }
}

#[cfg(feature = "jwt")]
mod verify {
    use std::fmt;
    use std::str::FromStr;

    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    use tenancy_core::{JsonObject, TenantError};

    use crate::config::JwtVerifyConfig;

    /// The shortest HMAC secret accepted (256 bits).
    const MIN_SECRET_LEN: usize = 32;

    pub(super) struct Verifier {
        key: DecodingKey,
        validation: Validation,
    }

    impl fmt::Debug for Verifier {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Verifier")
                .field("algorithms", &self.validation.algorithms)
                .finish_non_exhaustive()
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
                (Some(secret), None, jsonwebtoken::AlgorithmFamily::Hmac) => {
                    if secret.len() < MIN_SECRET_LEN {
                        return Err(invalid(format!(
                            "secret is {} bytes, at least {MIN_SECRET_LEN} are required",
                            secret.len()
                        )));
                    }
                    DecodingKey::from_secret(secret.as_bytes()).map_err(invalid)?
                }
                (None, Some(pem), jsonwebtoken::AlgorithmFamily::Rsa) => {
                    DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(invalid)?
                }
                (None, Some(pem), jsonwebtoken::AlgorithmFamily::Ec) => {
                    DecodingKey::from_ec_pem(pem.as_bytes()).map_err(invalid)?
                }
                (None, Some(pem), jsonwebtoken::AlgorithmFamily::Ed) => {
                    DecodingKey::from_ed_pem(pem.as_bytes()).map_err(invalid)?
                }
                (None, None, _) => return Err(invalid("no key: set secret or public_key_pem")),
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
            let mut validation = Validation::new(first);
            validation.algorithms = algorithms;
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
            Ok(Self { key, validation })
        }

        /// The claims of `token` if it verifies, else `None` (the reason is logged at debug).
        pub(super) fn claims(&self, token: &[u8]) -> Option<JsonObject> {
            match decode::<JsonObject>(token, &self.key, &self.validation) {
                Ok(data) => Some(data.claims),
                Err(err) => {
                    tracing::debug!(error = %err, "bearer token refused");
                    None
                }
            }
        }
    }
}
