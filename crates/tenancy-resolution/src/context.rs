//! What resolvers read ([`ResolutionContext`]), what an auth layer leaves in the request extensions
//! ([`AuthenticatedUser`], [`VerifiedClaims`]), and what the middleware leaves there
//! ([`ResolvedTenant`]).

use std::ops::Deref;
use std::sync::Arc;

use http::header::{AUTHORIZATION, HOST};
use http::{Extensions, HeaderMap, Request, Uri, request::Parts};
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

/// The longest bearer token looked at; a longer one is refused before any decoding.
pub const MAX_BEARER_TOKEN_LEN: usize = 8 * 1024;

/// The token of the request's single `Authorization: Bearer <token>` header: the scheme matched
/// without regard to case, spaces around the token trimmed.
///
/// `None` when the header is absent, repeated (which one would be the caller's?), of another
/// scheme, empty, or longer than [`MAX_BEARER_TOKEN_LEN`]. The one parser of bearer tokens in the
/// workspace: the JWT resolver and applications' auth layers read tokens through it.
///
/// ```
/// use http::{HeaderMap, header::AUTHORIZATION};
/// use tenancy_resolution::bearer_token;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, "bearer  abc ".parse()?);
/// assert_eq!(bearer_token(&headers), Some(&b"abc"[..]));
/// headers.append(AUTHORIZATION, "Bearer def".parse()?);
/// assert_eq!(bearer_token(&headers), None, "two Authorization headers");
/// let huge = format!("Bearer {}", "a".repeat(tenancy_resolution::MAX_BEARER_TOKEN_LEN + 1));
/// headers.insert(AUTHORIZATION, huge.parse()?);
/// assert_eq!(bearer_token(&headers), None, "past the size cap");
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
#[must_use]
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.as_bytes().trim_ascii();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
        .filter(|token| !token.is_empty() && token.len() <= MAX_BEARER_TOKEN_LEN)
}
