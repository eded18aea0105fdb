//! Criterion bench `jwks`: the `jwt_claim` resolver verifying a bearer token (synchronous phase,
//! the whole cost of a request whose key is known), against the same resolver with the key
//! configured as a PEM:
//!
//! 1. RS256, key from `public_key_pem` (the baseline);
//! 2. RS256, key from a JWKS (fetched once, before measuring, from an axum server on 127.0.0.1);
//! 3. ES256, key from the same JWKS;
//! 4. a token with an unknown `kid` while no refresh is allowed (what each request of a flood of
//!    random key ids costs).

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use tenancy_resolution::{
    Builtin, JwksConfig, JwtClaimResolver, JwtVerifyConfig, Resolution, ResolutionConfig,
    ResolutionContext, TenantResolver,
};

const RSA: &str = include_str!("../tests/fixtures/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa-public.pem");
const EC: &str = include_str!("../tests/fixtures/ec-p256-private.pem");
const ID: &str = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293";

fn key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA.as_bytes()).unwrap(),
    }
}

fn jwk(kid: &str, alg: Algorithm) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key(alg), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn request(alg: Algorithm, kid: Option<&str>) -> Request<()> {
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    let claims = serde_json::json!({
        "tenant_id": ID,
        "sub": "user-1",
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    let token = encode(&header, &claims, &key(alg)).unwrap();
    Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn resolver(verify: JwtVerifyConfig) -> JwtClaimResolver {
    JwtClaimResolver::from_config(&ResolutionConfig {
        resolvers: Some(vec![Builtin::JwtClaim]),
        jwt_verify: Some(verify),
        ..ResolutionConfig::default()
    })
    .unwrap()
}

fn bench(c: &mut Criterion, name: &str, resolver: &JwtClaimResolver, request: &Request<()>) {
    c.bench_function(name, |b| {
        b.iter(|| {
            black_box(resolver.resolve(&ResolutionContext::from_request(black_box(request))))
        });
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let document = serde_json::json!({
        "keys": [jwk("rsa-1", Algorithm::RS256), jwk("ec-1", Algorithm::ES256)],
    })
    .to_string();
    let url = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let app = Router::new().route("/jwks.json", get(move || async move { document }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });

    let pem = resolver(JwtVerifyConfig {
        algorithms: vec!["RS256".into()],
        public_key_pem: Some(RSA_PUBLIC.into()),
        ..JwtVerifyConfig::default()
    });
    let jwks = resolver(JwtVerifyConfig {
        algorithms: vec!["RS256".into(), "ES256".into()],
        jwks: Some(JwksConfig {
            min_refresh_interval: Duration::from_secs(3600),
            ..JwksConfig::new(url)
        }),
        ..JwtVerifyConfig::default()
    });
    let cache = jwks.jwks().unwrap().clone();
    assert_eq!(rt.block_on(cache.refresh()), Ok(2));

    let rs256 = request(Algorithm::RS256, Some("rsa-1"));
    let es256 = request(Algorithm::ES256, Some("ec-1"));
    let unknown = request(Algorithm::RS256, Some("random"));
    let found = Resolution::Found(tenancy_core::TenantRef::Id(ID.parse().unwrap()));
    for (resolver, request) in [(&pem, &rs256), (&jwks, &rs256), (&jwks, &es256)] {
        assert_eq!(
            resolver.resolve(&ResolutionContext::from_request(request)),
            found
        );
    }
    // Spend the one refresh an unknown kid may trigger, so the flood case measures a refusal.
    let cx = ResolutionContext::from_request(&unknown);
    assert_eq!(jwks.resolve(&cx), Resolution::Deferred);
    assert_eq!(rt.block_on(jwks.resolve_deferred(&cx)).unwrap(), None);
    assert_eq!(jwks.resolve(&cx), Resolution::NotFound);
    let fetches = cache.fetches();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    bench(&mut criterion, "jwt_rs256_public_key_pem", &pem, &rs256);
    bench(&mut criterion, "jwt_rs256_jwks", &jwks, &rs256);
    bench(&mut criterion, "jwt_es256_jwks", &jwks, &es256);
    bench(&mut criterion, "jwt_unknown_kid_refused", &jwks, &unknown);
    criterion.final_summary();
    assert_eq!(
        cache.fetches(),
        fetches,
        "nothing was fetched while measuring"
    );
}
