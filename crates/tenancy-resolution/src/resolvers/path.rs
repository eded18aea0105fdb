use tenancy_core::TenantError;

use super::found;
use crate::config::{self, KeyKind, ResolutionConfig};
use crate::context::ResolutionContext;
use crate::resolver::{Resolution, TenantResolver};

/// Reads the tenant from the request path, by a pattern with one `{placeholder}` segment
/// (default `/tenants/{tenant}/`), matched on whole segments from the start of the path:
/// `/tenants/acme` and `/tenants/acme/x` match, `/api/tenants/acme` and `/tenantsacme` do not.
/// Segments are compared as sent (no percent-decoding, no `..` normalisation), so `..` or an
/// encoded value simply fails to parse as a key.
///
/// ```
/// use tenancy_resolution::{KeyKind, PathResolver, Resolution, ResolutionContext, TenantResolver};
///
/// let resolver = PathResolver::new("/orgs/{org}/", KeyKind::Slug, 40)?;
/// let request = http::Request::builder().uri("/orgs/acme/projects?x=1").body(())?;
/// assert!(matches!(resolver.resolve(&ResolutionContext::from_request(&request)), Resolution::Found(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PathResolver {
    /// Literal segments before the placeholder.
    before: Box<[Box<str>]>,
    /// Literal segments after the placeholder.
    after: Box<[Box<str>]>,
    kind: KeyKind,
    priority: i32,
}

impl PathResolver {
    /// A resolver for `pattern`, reading the placeholder segment as `kind`.
    ///
    /// # Errors
    /// [`TenantError::Configuration`] when the pattern does not start with `/`, has no or several
    /// placeholders, a placeholder that is not a whole segment, or an empty segment.
    pub fn new(pattern: &str, kind: KeyKind, priority: i32) -> Result<Self, TenantError> {
        let invalid = |why: &str| {
            TenantError::Configuration(format!(
                "resolution.path_pattern `{pattern}` {why}; expected something like /tenants/{{tenant}}/"
            ))
        };
        let body = pattern
            .strip_prefix('/')
            .ok_or_else(|| invalid("does not start with '/'"))?;
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut placeholder = false;
        for segment in body.split('/') {
            if segment.is_empty() {
                return Err(invalid("has an empty segment"));
            }
            let is_placeholder = segment.len() > 2
                && segment.starts_with('{')
                && segment.ends_with('}')
                && !segment[1..segment.len() - 1].contains(['{', '}']);
            if is_placeholder {
                if placeholder {
                    return Err(invalid("has more than one placeholder"));
                }
                placeholder = true;
            } else if segment.contains(['{', '}']) {
                return Err(invalid("has a placeholder that is not a whole segment"));
            } else if placeholder {
                after.push(Box::from(segment));
            } else {
                before.push(Box::from(segment));
            }
        }
        if !placeholder {
            return Err(invalid("has no {placeholder} segment"));
        }
        Ok(Self {
            before: before.into_boxed_slice(),
            after: after.into_boxed_slice(),
            kind,
            priority,
        })
    }

    /// The resolver `config` describes.
    ///
    /// # Errors
    /// As [`PathResolver::new`].
    pub fn from_config(config: &ResolutionConfig) -> Result<Self, TenantError> {
        Self::new(
            &config.path_pattern,
            config.path_kind,
            config.priority(config::PATH, 40),
        )
    }

    /// The placeholder segment of `path`, if the path matches.
    fn segment<'p>(&self, path: &'p str) -> Option<&'p str> {
        let mut segments = path.strip_prefix('/')?.split('/');
        for literal in &self.before {
            if segments.next()? != &**literal {
                return None;
            }
        }
        let value = segments.next()?;
        for literal in &self.after {
            if segments.next()? != &**literal {
                return None;
            }
        }
        Some(value)
    }
}

impl TenantResolver for PathResolver {
    fn name(&self) -> &str {
        config::PATH
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        found(
            self.segment(cx.path())
                .and_then(|value| self.kind.parse(value.as_bytes())),
        )
    }
}
