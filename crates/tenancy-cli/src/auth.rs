//! The demo's authentication: HS256 user tokens, the admin token, and the membership table.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header::AUTHORIZATION};
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use tenancy::core::{JsonObject, TenantError, TenantId, TenantInfo};
use tenancy::resolution::{AuthenticatedUser, TenantMembership, VerifiedClaims, bearer_token};

use crate::error::CliError;

/// Shortest accepted JWT secret, in bytes (as the library's own verifier requires).
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// How long a token printed by the demo stays valid.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A random secret: 32 bytes as 64 hex digits.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        use fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Signs and verifies the demo's HS256 user tokens.
#[derive(Clone)]
pub(crate) struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys for `secret` (at least [`MIN_SECRET_BYTES`] bytes).
    pub(crate) fn new(secret: &str) -> Result<Self, CliError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(CliError::Usage(format!(
                "the JWT secret (TENANCY_DEMO_JWT_SECRET or --jwt-secret) must be at least \
                 {MIN_SECRET_BYTES} bytes; it has {}",
                secret.len()
            )));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        // A token is not valid before its `nbf` (RFC 7519).
        validation.validate_nbf = true;
        let invalid = |e: jsonwebtoken::errors::Error| {
            CliError::Usage(format!(
                "the JWT secret cannot be used as an HS256 key: {e}"
            ))
        };
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()).map_err(invalid)?,
            decoding: DecodingKey::from_secret(secret.as_bytes()).map_err(invalid)?,
            validation,
        })
    }

    /// A token for user `sub`, naming `tenant` in its `tenant_id` claim when given, valid for
    /// [`TOKEN_LIFETIME`].
    pub(crate) fn issue(&self, sub: &str, tenant: Option<TenantId>) -> Result<String, CliError> {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(TOKEN_LIFETIME)
            .as_secs();
        let mut claims = JsonObject::new();
        claims.insert("sub".into(), sub.into());
        claims.insert("exp".into(), exp.into());
        if let Some(tenant) = tenant {
            claims.insert("tenant_id".into(), tenant.to_string().into());
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| CliError::Usage(format!("signing a demo token failed: {e}")))
    }

    /// The claims of a valid token (signature, `exp`, a string `sub`), or `None`.
    pub(crate) fn verify(&self, token: &[u8]) -> Option<JsonObject> {
        let token = std::str::from_utf8(token).ok()?;
        let data =
            jsonwebtoken::decode::<JsonObject>(token, &self.decoding, &self.validation).ok()?;
        data.claims.get("sub")?.as_str()?;
        Some(data.claims)
    }
}

/// Axum middleware of the tenant API: an `Authorization` header, when present, must hold one
/// valid bearer token; its claims go into the request extensions as [`VerifiedClaims`] (read by
/// the `jwt_claim` resolver) and its `sub` as the [`AuthenticatedUser`]. Without the header the
/// request is anonymous.
pub(crate) async fn authenticate(
    State(keys): State<Arc<TokenKeys>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.headers().contains_key(AUTHORIZATION) {
        let claims = bearer_token(request.headers()).and_then(|token| keys.verify(token));
        let Some(claims) = claims else {
            return tenancy_admin::http::error_response(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the Authorization header must hold one bearer token, a valid demo token \
                 (HS256 with the demo's secret, with `sub`, an unexpired `exp` and no future `nbf`)",
            );
        };
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned();
        request.extensions_mut().insert(AuthenticatedUser(sub));
        request.extensions_mut().insert(VerifiedClaims::new(claims));
    }
    next.run(request).await
}

/// The demo's membership table: which users belong to which tenants, by slug.
#[derive(Debug, Default)]
pub(crate) struct DemoMembership {
    members: HashMap<String, HashSet<String>>,
}

impl DemoMembership {
    /// alice: acme and initech; bob: globex.
    pub(crate) fn seeded() -> Self {
        let mut members = HashMap::new();
        members.insert(
            "alice".to_owned(),
            HashSet::from(["acme".to_owned(), "initech".to_owned()]),
        );
        members.insert("bob".to_owned(), HashSet::from(["globex".to_owned()]));
        Self { members }
    }

    /// The members, for the start-up banner.
    pub(crate) fn describe(&self) -> Vec<(String, Vec<String>)> {
        let mut rows: Vec<(String, Vec<String>)> = self
            .members
            .iter()
            .map(|(user, slugs)| {
                let mut slugs: Vec<String> = slugs.iter().cloned().collect();
                slugs.sort_unstable();
                (user.clone(), slugs)
            })
            .collect();
        rows.sort_unstable();
        rows
    }
}

#[async_trait::async_trait]
impl TenantMembership for DemoMembership {
    async fn is_member(
        &self,
        user: &AuthenticatedUser,
        tenant: &TenantInfo,
    ) -> Result<bool, TenantError> {
        Ok(self
            .members
            .get(user.id())
            .is_some_and(|slugs| slugs.contains(tenant.slug.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let keys = TokenKeys::new(&random_secret()).unwrap();
        let id = TenantId::new();
        let token = keys.issue("alice", Some(id)).unwrap();
        let claims = keys.verify(token.as_bytes()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["tenant_id"], id.to_string());
        let other = TokenKeys::new(&random_secret()).unwrap();
        assert!(other.verify(token.as_bytes()).is_none());
        assert!(keys.verify(b"not.a.token").is_none());
        assert!(matches!(TokenKeys::new("short"), Err(CliError::Usage(_))));
    }

    #[test]
    fn secrets_are_random() {
        assert_eq!(random_secret().len(), 64);
        assert_ne!(random_secret(), random_secret());
    }
}
