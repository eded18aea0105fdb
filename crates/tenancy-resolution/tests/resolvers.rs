//! Every resolver rule, as tables, with hostile inputs; registry construction from configuration;
//! arbitrary request parts never panic and never yield an invalid reference.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Uri};
use proptest::prelude::*;
use tenancy_core::{JsonObject, Slug, TenantError, TenantId, TenantRef};
use tenancy_resolution::{
    Builtin, HeaderResolver, JwtClaimResolver, KeyKind, PathResolver, Resolution, ResolutionConfig,
    ResolutionContext, ResolverRegistry, SubdomainResolver, TenantResolver, VerifiedClaims,
};

const ID: &str = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293";

fn id() -> TenantRef {
    TenantRef::Id(ID.parse().unwrap())
}

fn slug(s: &str) -> TenantRef {
    TenantRef::Slug(s.parse().unwrap())
}

fn resolve(resolver: &dyn TenantResolver, request: &Request<()>) -> Option<TenantRef> {
    match resolver.resolve(&ResolutionContext::from_request(request)) {
        Resolution::Found(tenant) => Some(tenant),
        Resolution::NotFound => None,
        Resolution::Deferred => panic!("built-in resolvers never defer"),
    }
}

fn with_header(name: &str, value: &[u8]) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().append(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_bytes(value).unwrap(),
    );
    request
}

#[test]
fn header_rules() {
    let by_id = HeaderResolver::from_config(&ResolutionConfig::default()).unwrap();
    let by_slug = HeaderResolver::new("x-tenant".parse().unwrap(), KeyKind::Slug, 20);
    let huge = "a".repeat(64 * 1024);
    let upper = ID.to_uppercase();
    let padded = format!("  {ID}\t");
    let trailing = format!("{ID}x");
    /// Resolver, header name, header value, expected tenant.
    type Case<'a> = (&'a dyn TenantResolver, &'a str, &'a [u8], Option<TenantRef>);
    let cases: &[Case<'_>] = &[
        (&by_id, "x-tenant-id", ID.as_bytes(), Some(id())),
        (&by_id, "X-Tenant-Id", ID.as_bytes(), Some(id())),
        (&by_id, "x-tenant-id", padded.as_bytes(), Some(id())),
        (&by_id, "x-tenant-id", upper.as_bytes(), Some(id())),
        (&by_id, "x-tenant-id", b"acme", None),
        (&by_id, "x-tenant-id", b"", None),
        (&by_id, "x-tenant-id", b"   ", None),
        (&by_id, "x-tenant-id", &ID.as_bytes()[..35], None),
        (&by_id, "x-tenant-id", trailing.as_bytes(), None),
        (&by_id, "x-tenant-id", b"\xff\xfe\xfd", None),
        (&by_id, "x-tenant-id", huge.as_bytes(), None),
        (&by_id, "x-other", ID.as_bytes(), None),
        (&by_slug, "x-tenant", b"acme", Some(slug("acme"))),
        (
            &by_slug,
            "x-tenant",
            b" acme-corp ",
            Some(slug("acme-corp")),
        ),
        (&by_slug, "x-tenant", b"Acme", None),
        (&by_slug, "x-tenant", b"../acme", None),
        (&by_slug, "x-tenant", b"-acme", None),
        (&by_slug, "x-tenant", b"acme\xc3\xa9", None),
        (&by_slug, "x-tenant", huge.as_bytes(), None),
        (&by_slug, "x-tenant", ID.as_bytes(), Some(slug(ID))),
    ];
    for (resolver, name, value, expected) in cases {
        assert_eq!(
            resolve(*resolver, &with_header(name, value)),
            *expected,
            "{name}: {:?}",
            String::from_utf8_lossy(value)
        );
    }
    // A header sent twice is ambiguous: no tenant.
    let mut twice = with_header("x-tenant-id", ID.as_bytes());
    twice
        .headers_mut()
        .append("x-tenant-id", HeaderValue::from_static(ID));
    assert_eq!(resolve(&by_id, &twice), None);
    assert_eq!(by_id.name(), "header");
    assert_eq!(by_id.priority(), 20);
}

#[test]
fn subdomain_rules() {
    let resolver = SubdomainResolver::new("app.example.com", 30).unwrap();
    let long_label = format!("{}.app.example.com", "a".repeat(64));
    let max_label = format!("{}.app.example.com", "a".repeat(63));
    let cases: &[(&str, Option<TenantRef>)] = &[
        ("acme.app.example.com", Some(slug("acme"))),
        ("ACME.App.Example.COM", Some(slug("acme"))),
        ("acme.app.example.com:8443", Some(slug("acme"))),
        ("acme.app.example.com.", Some(slug("acme"))),
        ("acme-corp.app.example.com", Some(slug("acme-corp"))),
        (&max_label, Some(slug(&"a".repeat(63)))),
        (&long_label, None),
        ("app.example.com", None),
        ("app.example.com:80", None),
        (".app.example.com", None),
        ("a.b.app.example.com", None),
        ("acme.app.example.com.evil.com", None),
        ("acmeapp.example.com", None),
        ("acme.otherapp.example.com", None),
        ("acme.example.com", None),
        ("-acme.app.example.com", None),
        ("ac_me.app.example.com", None),
        ("acme.app.example.com:", Some(slug("acme"))),
        ("acme.app.example.com:80x", None),
        ("[::1]:8080", None),
        ("127.0.0.1", None),
        ("", None),
        (":", None),
        ("acme.app.example.com:8080:80", None),
    ];
    for (host, expected) in cases {
        let request = with_header("host", host.as_bytes());
        assert_eq!(resolve(&resolver, &request), *expected, "host {host:?}");
    }
    // Non-UTF-8 host, two Host headers, and no host at all.
    assert_eq!(
        resolve(&resolver, &with_header("host", b"acme\xff.app.example.com")),
        None
    );
    let mut twice = with_header("host", b"acme.app.example.com");
    twice
        .headers_mut()
        .append("host", HeaderValue::from_static("evil.app.example.com"));
    assert_eq!(resolve(&resolver, &twice), None);
    assert_eq!(resolve(&resolver, &Request::new(())), None);
    // HTTP/2: the authority of the URI, user info ignored.
    let h2 = Request::builder()
        .uri("https://user@Acme.app.example.com:443/x")
        .body(())
        .unwrap();
    assert_eq!(resolve(&resolver, &h2), Some(slug("acme")));
    // The base domain is normalised: case, dots.
    let normalised = SubdomainResolver::new(".APP.example.com.", 30).unwrap();
    assert_eq!(
        resolve(&normalised, &with_header("host", b"acme.app.example.com")),
        Some(slug("acme"))
    );
    for bad in [
        "",
        ".",
        "app..com",
        "app_x.com",
        "app.example.com/x",
        "ex ample.com",
    ] {
        assert!(
            matches!(
                SubdomainResolver::new(bad, 30),
                Err(TenantError::Configuration(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn path_rules() {
    let default = PathResolver::from_config(&ResolutionConfig::default()).unwrap();
    let nested = PathResolver::new("/api/orgs/{org}/v1", KeyKind::Slug, 40).unwrap();
    let by_id = PathResolver::new("/t/{id}", KeyKind::Id, 40).unwrap();
    let cases: &[(&PathResolver, &str, Option<TenantRef>)] = &[
        (&default, "/tenants/acme", Some(slug("acme"))),
        (&default, "/tenants/acme/", Some(slug("acme"))),
        (&default, "/tenants/acme/orders/7", Some(slug("acme"))),
        (&default, "/tenants/acme?x=1", Some(slug("acme"))),
        (&default, "/tenants/", None),
        (&default, "/tenants", None),
        (&default, "/", None),
        (&default, "/tenants//acme", None),
        (&default, "//tenants/acme", None),
        (&default, "/api/tenants/acme", None),
        (&default, "/tenantsx/acme", None),
        (&default, "/Tenants/acme", None),
        (&default, "/tenants/Acme", None),
        (&default, "/tenants/../admin", None),
        (&default, "/tenants/..", None),
        (&default, "/x/../tenants/acme", None),
        (&default, "/tenants/%61cme", None),
        (&default, "/tenants/acme%2Fevil", None),
        (&default, "/tenants/ac.me", None),
        (&nested, "/api/orgs/acme/v1", Some(slug("acme"))),
        (&nested, "/api/orgs/acme/v1/users", Some(slug("acme"))),
        (&nested, "/api/orgs/acme/v2", None),
        (&nested, "/api/orgs/acme", None),
        (&by_id, &format!("/t/{ID}/x"), Some(id())),
        (&by_id, "/t/acme", None),
    ];
    for (resolver, path, expected) in cases {
        let request = Request::builder().uri(*path).body(()).unwrap();
        assert_eq!(resolve(*resolver, &request), *expected, "path {path:?}");
    }
    let huge = format!("/tenants/{}", "a".repeat(60_000));
    let request = Request::builder().uri(huge.as_str()).body(()).unwrap();
    assert_eq!(resolve(&default, &request), None);
    for bad in [
        "tenants/{t}",
        "/tenants",
        "/{a}/{b}",
        "/tenants/x{t}",
        "/tenants//{t}",
        "/tenants/{}",
        "/{{t}}",
        "",
    ] {
        let err = PathResolver::new(bad, KeyKind::Slug, 40).unwrap_err();
        assert!(
            matches!(&err, TenantError::Configuration(m) if m.contains("path_pattern")),
            "{bad:?}: {err}"
        );
    }
}

fn claims(value: serde_json::Value) -> VerifiedClaims {
    let serde_json::Value::Object(map) = value else {
        unreachable!()
    };
    VerifiedClaims::new(map)
}

#[test]
fn jwt_claim_rules_with_verified_claims() {
    let by_id = JwtClaimResolver::from_config(&ResolutionConfig::default()).unwrap();
    let by_slug = JwtClaimResolver::new("org", KeyKind::Slug, 10);
    let cases: &[(&JwtClaimResolver, Option<VerifiedClaims>, Option<TenantRef>)] = &[
        (
            &by_id,
            Some(claims(serde_json::json!({"tenant_id": ID}))),
            Some(id()),
        ),
        (
            &by_id,
            Some(claims(serde_json::json!({"tenant_id": "acme"}))),
            None,
        ),
        (
            &by_id,
            Some(claims(serde_json::json!({"tenant_id": 42}))),
            None,
        ),
        (
            &by_id,
            Some(claims(serde_json::json!({"tenant_id": [ID]}))),
            None,
        ),
        (
            &by_id,
            Some(claims(serde_json::json!({"tenant_id": null}))),
            None,
        ),
        (
            &by_id,
            Some(claims(serde_json::json!({"tenant": ID}))),
            None,
        ),
        (&by_id, Some(VerifiedClaims::new(JsonObject::new())), None),
        (&by_id, None, None),
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": "acme"}))),
            Some(slug("acme")),
        ),
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": "ACME"}))),
            None,
        ),
        // An integer claim is read as its decimal text; other JSON types name nothing.
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": 42}))),
            Some(slug("42")),
        ),
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": i64::MIN}))),
            None,
        ),
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": u64::MAX}))),
            Some(slug("18446744073709551615")),
        ),
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": 4.2}))),
            None,
        ),
        (
            &by_slug,
            Some(claims(serde_json::json!({"org": true}))),
            None,
        ),
    ];
    for (resolver, claims, expected) in cases {
        let mut request = Request::new(());
        if let Some(claims) = claims {
            request.extensions_mut().insert(claims.clone());
        }
        assert_eq!(resolve(*resolver, &request), *expected, "{claims:?}");
    }
    // Without verification configured, a bearer token alone names no tenant.
    let request = with_header(
        "authorization",
        b"Bearer eyJhbGciOiJub25lIn0.eyJ0ZW5hbnRfaWQiOiIxIn0.",
    );
    assert_eq!(resolve(&by_id, &request), None);
}

#[test]
fn registry_orders_by_priority_and_first_answer_wins() {
    let config = ResolutionConfig {
        resolvers: Some(vec![Builtin::Path, Builtin::Header, Builtin::Subdomain]),
        subdomain_base_domain: Some("app.example.com".into()),
        header_kind: KeyKind::Slug,
        ..ResolutionConfig::default()
    };
    let registry = ResolverRegistry::from_config(&config, &empty_validator()).unwrap();
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["header", "subdomain", "path"]
    );
    let request = Request::builder()
        .uri("/tenants/from-path")
        .header("host", "from-host.app.example.com")
        .header("x-tenant-id", "from-header")
        .body(())
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let found = rt
        .block_on(registry.resolve(&ResolutionContext::from_request(&request)))
        .unwrap()
        .unwrap();
    assert_eq!(found.tenant, slug("from-header"));
    assert_eq!(&*found.resolver, "header");

    // Overridden priorities reorder; an unparsable header falls through to the next resolver.
    let config = ResolutionConfig {
        priorities: [("path".to_owned(), 1)].into(),
        ..config
    };
    let registry = ResolverRegistry::from_config(&config, &empty_validator()).unwrap();
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["path", "header", "subdomain"]
    );
    let request = Request::builder()
        .uri("/nothing")
        .header("host", "from-host.app.example.com")
        .header("x-tenant-id", "Not A Slug")
        .body(())
        .unwrap();
    let found = rt
        .block_on(registry.resolve(&ResolutionContext::from_request(&request)))
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.tenant, &*found.resolver),
        (slug("from-host"), "subdomain")
    );
}

/// An application resolver that awaits (an API-key table).
#[derive(Debug)]
struct ApiKeyResolver;

impl TenantResolver for ApiKeyResolver {
    fn name(&self) -> &str {
        "api_key"
    }

    fn priority(&self) -> i32 {
        5
    }

    fn resolve(&self, cx: &ResolutionContext<'_>) -> Resolution {
        if cx.headers().contains_key("x-api-key") {
            Resolution::Deferred
        } else {
            Resolution::NotFound
        }
    }

    fn resolve_deferred<'a>(
        &'a self,
        cx: &'a ResolutionContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<TenantRef>, TenantError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let key = cx.headers().get("x-api-key").map(HeaderValue::as_bytes);
            Ok(match key {
                Some(b"key-of-acme") => Some(slug("acme")),
                _ => None,
            })
        })
    }
}

#[test]
fn awaiting_application_resolvers_take_part() {
    let registry = ResolverRegistry::from_config(&ResolutionConfig::default(), &empty_validator())
        .unwrap()
        .with(Arc::new(ApiKeyResolver));
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["api_key", "jwt_claim", "header", "path"]
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run = |request: Request<()>| {
        rt.block_on(registry.resolve(&ResolutionContext::from_request(&request)))
            .unwrap()
            .map(|found| (found.tenant, found.resolver.to_string()))
    };
    let keyed = Request::builder()
        .uri("/tenants/other")
        .header("x-api-key", "key-of-acme")
        .body(())
        .unwrap();
    assert_eq!(run(keyed), Some((slug("acme"), "api_key".into())));
    // A deferred miss falls through to the next resolvers.
    let unknown_key = Request::builder()
        .uri("/tenants/other")
        .header("x-api-key", "nope")
        .body(())
        .unwrap();
    assert_eq!(run(unknown_key), Some((slug("other"), "path".into())));
}

#[test]
fn configuration_errors_name_the_problem() {
    let error =
        |config: ResolutionConfig| match ResolverRegistry::from_config(&config, &empty_validator())
        {
            Err(TenantError::Configuration(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        };
    let unknown =
        serde_json::from_str::<ResolutionConfig>(r#"{"resolvers": ["header", "cookie"]}"#)
            .unwrap_err()
            .to_string();
    assert!(unknown.contains("unknown variant `cookie`"), "{unknown}");
    let message = error(ResolutionConfig {
        resolvers: Some(vec![Builtin::Subdomain]),
        ..ResolutionConfig::default()
    });
    assert!(message.contains("subdomain_base_domain"), "{message}");
    let message = error(ResolutionConfig {
        resolvers: Some(vec![Builtin::Header, Builtin::Header]),
        ..ResolutionConfig::default()
    });
    assert!(message.contains("twice"), "{message}");
    let message = error(ResolutionConfig {
        header_name: "x tenant".into(),
        ..ResolutionConfig::default()
    });
    assert!(message.contains("header_name"), "{message}");
    // The default list leaves subdomain out when no base domain is set.
    let registry =
        ResolverRegistry::from_config(&ResolutionConfig::default(), &empty_validator()).unwrap();
    assert!(!registry.names().any(|n| n == "subdomain"));
}

/// Checks that a yielded reference is valid and came from the request.
fn assert_valid(tenant: TenantRef, sources: &[&[u8]]) {
    match tenant {
        TenantRef::Id(id) => {
            assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        }
        TenantRef::Slug(slug) => {
            assert_eq!(slug.as_str().parse::<Slug>().unwrap(), slug);
            let needle = slug.as_str().as_bytes();
            assert!(
                sources.iter().any(|source| source
                    .to_ascii_lowercase()
                    .windows(needle.len())
                    .any(|w| w == needle)),
                "slug {slug} does not come from the request"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_request_parts_never_panic(
        header in proptest::collection::vec(any::<u8>(), 0..120),
        host in proptest::collection::vec(any::<u8>(), 0..120),
        path in "(/[a-zA-Z0-9%._~{}-]{0,12}){0,5}",
        claim in proptest::option::of(".{0,40}"),
    ) {
        let config = ResolutionConfig {
            resolvers: Some(vec![Builtin::JwtClaim, Builtin::Header, Builtin::Subdomain, Builtin::Path]),
            subdomain_base_domain: Some("app.example.com".into()),
            ..ResolutionConfig::default()
        };
        let registry = ResolverRegistry::from_config(&config, &empty_validator()).unwrap();
        let slug_header = HeaderResolver::new("x-tenant-id".parse().unwrap(), KeyKind::Slug, 1);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&header) {
            headers.insert("x-tenant-id", value);
        }
        if let Ok(value) = HeaderValue::from_bytes(&host) {
            headers.insert("host", value);
        }
        let uri: Uri = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
        let mut extensions = http::Extensions::new();
        if let Some(claim) = &claim {
            extensions.insert(claims(serde_json::json!({ "tenant_id": claim })));
        }
        let cx = ResolutionContext::new(&headers, &uri, &extensions);
        let sources: [&[u8]; 3] = [&header, &host, uri.path().as_bytes()];
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        if let Some(found) = rt.block_on(registry.resolve(&cx)).unwrap() {
            assert_valid(found.tenant, &sources);
        }
        if let Resolution::Found(tenant) = slug_header.resolve(&cx) {
            assert_valid(tenant, &sources);
        }
    }
}

#[cfg(not(feature = "jwt"))]
#[test]
fn token_verification_needs_the_jwt_feature() {
    let config = ResolutionConfig {
        jwt_verify: Some(tenancy_resolution::JwtVerifyConfig::default()),
        ..ResolutionConfig::default()
    };
    match JwtClaimResolver::from_config(&config) {
        Err(TenantError::Configuration(message)) => assert!(message.contains("`jwt` feature")),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// A validator over an empty store, for registries whose `domain` resolver is not asked.
fn empty_validator() -> tenancy_resolution::TenantValidator {
    tenancy_resolution::TenantValidator::new(
        Arc::new(tenancy_core::InMemoryStore::new()),
        &ResolutionConfig::default().validator,
    )
    .unwrap()
}
