//! What resolvers read ([`ResolutionContext`]), what an auth layer leaves in the request extensions
//! ([`AuthenticatedUser`], [`VerifiedClaims`]), and what the middleware leaves there
//! ([`ResolvedTenant`]).

use std::ops::Deref;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Request, Uri, header::HOST, request::Parts};
use tenancy_core::{JsonObject, TenantContext, TenantId, TenantInfo};

/// The borrowed parts of a request that resolvers look at. Building one copies three references.
///
/// ```
/// use tenancy_resolution::ResolutionContext;
///
/// let request = http::Request::builder()
///     .uri("/tenants/acme/orders")
///     .header("host", "acme.app.example.com:8080")
///     .body(())?;
/// let cx = ResolutionContext::from_request(&request);
/// assert_eq!(cx.path(), "/tenants/acme/orders");
/// assert_eq!(cx.host(), Some("acme.app.example.com:8080"));
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ResolutionContext<'a> {
    headers: &'a HeaderMap,
    uri: &'a Uri,
    extensions: &'a Extensions,
}

impl<'a> ResolutionContext<'a> {
    /// A context over these request parts.
    #[must_use]
    pub fn new(headers: &'a HeaderMap, uri: &'a Uri, extensions: &'a Extensions) -> Self {
        Self {
            headers,
            uri,
            extensions,
        }
    }

    /// A context over the parts of a request.
    #[must_use]
    pub fn from_parts(parts: &'a Parts) -> Self {
        Self::new(&parts.headers, &parts.uri, &parts.extensions)
    }

    /// A context over a request.
    #[must_use]
    pub fn from_request<B>(request: &'a Request<B>) -> Self {
        Self::new(request.headers(), request.uri(), request.extensions())
    }

    /// The request headers.
    #[must_use]
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request URI.
    #[must_use]
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request path (without the query).
    #[must_use]
    pub fn path(&self) -> &'a str {
        self.uri.path()
    }

    /// The host the client asked for, port included: the `Host` header (HTTP/1), else the URI's
    /// authority (HTTP/2 `:authority`). `None` when absent, repeated or not visible ASCII.
    #[must_use]
    pub fn host(&self) -> Option<&'a str> {
        let mut hosts = self.headers.get_all(HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(host), None) => host.to_str().ok(),
            (Some(_), Some(_)) => None,
            (None, _) => self
                .uri
                .authority()
                .map(|authority| authority.as_str().rsplit('@').next().unwrap_or_default()),
        }
    }

    /// The request extensions.
    #[must_use]
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }

    /// The user an auth layer authenticated, if any.
    #[must_use]
    pub fn user(&self) -> Option<&'a AuthenticatedUser> {
        self.extensions.get()
    }

    /// The claims an auth layer verified, if any.
    #[must_use]
    pub fn claims(&self) -> Option<&'a VerifiedClaims> {
        self.extensions.get()
    }
}

/// The id of the user an authentication layer authenticated; put it in the request extensions
/// before the tenancy middleware runs, for the membership check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthenticatedUser(pub String);

impl AuthenticatedUser {
    /// The user id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.0
    }
}

/// The claims of a token an authentication layer already verified; put them in the request
/// extensions and the `jwt_claim` resolver reads the tenant claim from them.
///
/// Only code that verified the token may insert this: the resolver trusts it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifiedClaims(pub Arc<JsonObject>);

impl VerifiedClaims {
    /// Wraps verified claims.
    #[must_use]
    pub fn new(claims: JsonObject) -> Self {
        Self(Arc::new(claims))
    }

    /// One claim.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }
}

/// The tenant the middleware resolved and validated, in the request extensions: an active tenant
/// and the name of the resolver that found it. Cheap to clone (two reference counts).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTenant(pub(crate) TenantContext);

impl ResolvedTenant {
    /// A resolved tenant from a context.
    #[must_use]
    pub fn new(context: TenantContext) -> Self {
        Self(context)
    }

    /// The tenant (always active when the middleware set it).
    #[must_use]
    pub fn tenant(&self) -> &Arc<TenantInfo> {
        self.0.tenant()
    }

    /// The tenant's id.
    #[must_use]
    pub fn id(&self) -> TenantId {
        self.0.id()
    }

    /// The name of the resolver that found it.
    #[must_use]
    pub fn resolved_by(&self) -> &str {
        self.0.resolved_by()
    }

    /// The task-local context the middleware scoped the request with.
    #[must_use]
    pub fn context(&self) -> &TenantContext {
        &self.0
    }
}

impl Deref for ResolvedTenant {
    type Target = TenantInfo;

    fn deref(&self) -> &TenantInfo {
        self.0.tenant()
    }
}

impl From<ResolvedTenant> for TenantContext {
    fn from(resolved: ResolvedTenant) -> Self {
        resolved.0
    }
}
