//! The built-in resolvers. Each is synchronous and allocation-free on the request path (except
//! bearer-token verification, which decodes JSON, and a domain cache miss, which is awaited).

mod domain;
mod header;
mod jwt;
mod path;
mod subdomain;

pub use domain::DomainResolver;
pub use header::HeaderResolver;
pub use jwt::JwtClaimResolver;
pub use path::PathResolver;
pub use subdomain::SubdomainResolver;

use tenancy_core::TenantRef;

use crate::resolver::Resolution;

/// `Found` for a parsed key, `NotFound` otherwise.
fn found(tenant: Option<TenantRef>) -> Resolution {
    tenant.map_or(Resolution::NotFound, Resolution::Found)
}
