//! Membership: whether the authenticated user belongs to the tenant a resolver found.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tenancy_core::{TenantError, TenantInfo};

use crate::config::{JWT_CLAIM, MembershipMode, ResolutionConfig};
use crate::context::{AuthenticatedUser, ResolutionContext};
use crate::resolver::ResolverRegistry;

/// Does user U belong to tenant T. Implemented by the application (a membership table, a
/// directory lookup, ...).
///
/// ```
/// use async_trait::async_trait;
/// use tenancy_core::{TenantError, TenantInfo};
/// use tenancy_resolution::{AuthenticatedUser, TenantMembership};
///
/// /// Users whose id starts with the tenant's slug, for a demo.
/// #[derive(Debug)]
/// struct PrefixMembership;
///
/// #[async_trait]
/// impl TenantMembership for PrefixMembership {
///     async fn is_member(&self, user: &AuthenticatedUser, tenant: &TenantInfo) -> Result<bool, TenantError> {
///         Ok(user.id().starts_with(tenant.slug.as_str()))
///     }
/// }
/// ```
#[async_trait]
pub trait TenantMembership: Send + Sync + fmt::Debug {
    /// Whether `user` belongs to `tenant`.
    ///
    /// # Errors
    /// An infrastructure error ([`TenantError::Storage`]) makes the middleware answer 503.
    async fn is_member(
        &self,
        user: &AuthenticatedUser,
        tenant: &TenantInfo,
    ) -> Result<bool, TenantError>;
}

/// What the membership rule says about a tenant found by a resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Trusted resolver, membership off, or an anonymous request in `authenticated` mode.
    Granted,
    /// Strict membership and no authenticated user: no tenant.
    Denied,
    /// Ask the membership checker.
    Check,
}

/// The membership rule: trusted resolvers pass; for the others, the [`MembershipMode`] says
/// whether the authenticated user must belong to the tenant.
#[derive(Clone)]
pub(crate) struct MembershipPolicy {
    /// Indexed like the registry.
    trusted: Box<[bool]>,
    mode: MembershipMode,
    checker: Option<Arc<dyn TenantMembership>>,
}

impl fmt::Debug for MembershipPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembershipPolicy")
            .field("trusted", &self.trusted)
            .field("mode", &self.mode)
            .field("checker", &self.checker)
            .finish()
    }
}

impl MembershipPolicy {
    /// The policy of `config` for the resolvers of `registry`.
    pub(crate) fn new(
        config: &ResolutionConfig,
        registry: &ResolverRegistry,
        checker: Option<Arc<dyn TenantMembership>>,
    ) -> Result<Self, TenantError> {
        let names: HashSet<&str> = registry.names().collect();
        let listed: Vec<&str> = match &config.trusted_resolvers {
            Some(listed) => listed.iter().map(String::as_str).collect(),
            // The default trusts the token claim where it runs, and nothing where it does not.
            None => vec![JWT_CLAIM],
        };
        if let Some(listed) = &config.trusted_resolvers {
            for name in listed {
                if !names.contains(name.as_str()) {
                    return Err(TenantError::Configuration(format!(
                        "resolution.trusted_resolvers names `{name}`, which is not an active \
                         resolver (active: {})",
                        registry.names().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        for name in registry.priority_overrides() {
            if !names.contains(name) {
                return Err(TenantError::Configuration(format!(
                    "resolution.priorities names `{name}`, which is not an active resolver"
                )));
            }
        }
        let trusted: Box<[bool]> = registry
            .names()
            .map(|name| listed.contains(&name))
            .collect();
        if config.membership != MembershipMode::Off
            && checker.is_none()
            && let Some((untrusted, _)) = registry.names().zip(&trusted).find(|(_, t)| !**t)
        {
            return Err(TenantError::Configuration(format!(
                "resolver `{untrusted}` is not in resolution.trusted_resolvers and \
                 resolution.membership is `{}`, but no TenantMembership was given: provide \
                 one, trust the resolver, or set resolution.membership to off",
                serde_json::to_value(config.membership)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        Ok(Self {
            trusted,
            mode: config.membership,
            checker,
        })
    }

    /// The rule for a tenant found by resolver `index`, for the user of `cx` (looked up only
    /// when the rule depends on it).
    pub(crate) fn access(&self, index: usize, cx: &ResolutionContext<'_>) -> Access {
        if self.mode == MembershipMode::Off || self.trusted.get(index).copied().unwrap_or(false) {
            return Access::Granted;
        }
        match (cx.user(), self.mode) {
            (Some(_), _) if self.checker.is_some() => Access::Check,
            (None, MembershipMode::Authenticated) => Access::Granted,
            _ => Access::Denied,
        }
    }

    /// Asks the checker (after [`Access::Check`]).
    pub(crate) async fn is_member(
        &self,
        user: &AuthenticatedUser,
        tenant: &TenantInfo,
    ) -> Result<bool, TenantError> {
        match &self.checker {
            Some(checker) => checker.is_member(user, tenant).await,
            None => Ok(false),
        }
    }
}
