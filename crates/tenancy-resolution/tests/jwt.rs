//! Bearer-token verification in the `jwt_claim` resolver: each attack yields no tenant.

use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use tenancy_core::{TenantError, TenantRef};
use tenancy_resolution::{
    JwtClaimResolver, JwtVerifyConfig, Resolution, ResolutionConfig, ResolutionContext,
    TenantResolver, VerifiedClaims,
};

const ID: &str = "0190d5a0-7c1e-7a2b-9c3d-4e5f60718293";
const PRIVATE: &str = include_str!("fixtures/rsa-private.pem");
const PUBLIC: &str = include_str!("fixtures/rsa-public.pem");
const OTHER_PRIVATE: &str = include_str!("fixtures/other-rsa-private.pem");
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rs256() -> JwtVerifyConfig {
    JwtVerifyConfig {
        algorithms: vec!["RS256".into()],
        public_key_pem: Some(PUBLIC.into()),
        ..JwtVerifyConfig::default()
    }
}

fn resolver(verify: JwtVerifyConfig) -> Result<JwtClaimResolver, TenantError> {
    JwtClaimResolver::from_config(&ResolutionConfig {
        jwt_verify: Some(verify),
        ..ResolutionConfig::default()
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn resolve_token(resolver: &JwtClaimResolver, authorization: &str) -> Option<TenantRef> {
    let request = Request::builder()
        .header("authorization", authorization)
        .body(())
        .unwrap();
    match resolver.resolve(&ResolutionContext::from_request(&request)) {
        Resolution::Found(tenant) => Some(tenant),
        _ => None,
    }
}

fn valid_claims() -> serde_json::Value {
    json!({ "tenant_id": ID, "sub": "user-1", "exp": now() + 600 })
}

#[test]
fn a_valid_token_names_its_tenant() {
    let resolver = resolver(rs256()).unwrap();
    let token = sign(Algorithm::RS256, &rsa(PRIVATE), &valid_claims());
    let expected = Some(TenantRef::Id(ID.parse().unwrap()));
    assert_eq!(
        resolve_token(&resolver, &format!("Bearer {token}")),
        expected
    );
    assert_eq!(
        resolve_token(&resolver, &format!("bearer  {token} ")),
        expected
    );
    assert_eq!(resolve_token(&resolver, &token), None, "no scheme");
    assert_eq!(resolve_token(&resolver, &format!("Basic {token}")), None);
    assert_eq!(resolve_token(&resolver, "Bearer "), None);
}

/// Unpadded base64url, as JWT segments use.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn base64url_matches_a_known_header() {
    assert_eq!(base64url(br#"{"alg":"none"}"#), "eyJhbGciOiJub25lIn0");
}

#[test]
fn alg_none_is_refused() {
    let resolver = resolver(rs256()).unwrap();
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(valid_claims().to_string().as_bytes());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(resolve_token(&resolver, &format!("Bearer {token}")), None);
    }
    // A real signature under a header rewritten to "none" is refused too.
    let token = sign(Algorithm::RS256, &rsa(PRIVATE), &valid_claims());
    let signature = token.rsplit('.').next().unwrap();
    let forged = format!("{header}.{payload}.{signature}");
    assert_eq!(resolve_token(&resolver, &format!("Bearer {forged}")), None);
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let resolver = resolver(rs256()).unwrap();
    let token = sign(Algorithm::RS256, &rsa(OTHER_PRIVATE), &valid_claims());
    assert_eq!(resolve_token(&resolver, &format!("Bearer {token}")), None);

    let hs = resolver_hs();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long!").unwrap(),
        &valid_claims(),
    );
    assert_eq!(resolve_token(&hs, &format!("Bearer {token}")), None);
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &valid_claims(),
    );
    assert!(resolve_token(&hs, &format!("Bearer {token}")).is_some());
}

fn resolver_hs() -> JwtClaimResolver {
    resolver(JwtVerifyConfig {
        algorithms: vec!["HS256".into()],
        secret: Some(SECRET.into()),
        ..JwtVerifyConfig::default()
    })
    .unwrap()
}

#[test]
fn expired_tokens_and_tokens_without_exp_are_refused() {
    let resolver = resolver(rs256()).unwrap();
    let expired = json!({ "tenant_id": ID, "exp": now() - 3600 });
    let token = sign(Algorithm::RS256, &rsa(PRIVATE), &expired);
    assert_eq!(resolve_token(&resolver, &format!("Bearer {token}")), None);
    let no_exp = json!({ "tenant_id": ID });
    let token = sign(Algorithm::RS256, &rsa(PRIVATE), &no_exp);
    assert_eq!(resolve_token(&resolver, &format!("Bearer {token}")), None);
}

#[test]
fn tokens_not_yet_valid_are_refused() {
    let resolver = resolver(rs256()).unwrap();
    let early = json!({ "tenant_id": ID, "nbf": now() + 3600, "exp": now() + 7200 });
    let token = sign(Algorithm::RS256, &rsa(PRIVATE), &early);
    assert_eq!(resolve_token(&resolver, &format!("Bearer {token}")), None);
    // Within the leeway, and in the past, `nbf` passes.
    for nbf in [now() + 30, now() - 3600] {
        let claims = json!({ "tenant_id": ID, "nbf": nbf, "exp": now() + 7200 });
        let token = sign(Algorithm::RS256, &rsa(PRIVATE), &claims);
        assert_eq!(
            resolve_token(&resolver, &format!("Bearer {token}")),
            Some(TenantRef::Id(ID.parse().unwrap())),
            "nbf {nbf}"
        );
    }
}

#[test]
fn hs_rs_algorithm_confusion_is_refused() {
    // The attacker signs HS256 with the (public) RSA key as the HMAC secret.
    let resolver = resolver(rs256()).unwrap();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(PUBLIC.as_bytes()).unwrap(),
        &valid_claims(),
    );
    assert_eq!(resolve_token(&resolver, &format!("Bearer {token}")), None);
    // Nor can HS256 be allowed next to RS256 with one key.
    let mixed = resolver_err(JwtVerifyConfig {
        algorithms: vec!["RS256".into(), "HS256".into()],
        ..rs256()
    });
    assert!(mixed.contains("mix families"), "{mixed}");
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let resolver = resolver(JwtVerifyConfig {
        issuers: vec!["https://auth.example.com".into()],
        audiences: vec!["api".into()],
        ..rs256()
    })
    .unwrap();
    let key = rsa(PRIVATE);
    let claims = |iss: &str, aud: &str| json!({ "tenant_id": ID, "exp": now() + 600, "iss": iss, "aud": aud });
    let ok = sign(
        Algorithm::RS256,
        &key,
        &claims("https://auth.example.com", "api"),
    );
    assert!(resolve_token(&resolver, &format!("Bearer {ok}")).is_some());
    let wrong_iss = sign(
        Algorithm::RS256,
        &key,
        &claims("https://evil.example.com", "api"),
    );
    assert_eq!(
        resolve_token(&resolver, &format!("Bearer {wrong_iss}")),
        None
    );
    let wrong_aud = sign(
        Algorithm::RS256,
        &key,
        &claims("https://auth.example.com", "other"),
    );
    assert_eq!(
        resolve_token(&resolver, &format!("Bearer {wrong_aud}")),
        None
    );
    let missing = sign(Algorithm::RS256, &key, &valid_claims());
    assert_eq!(resolve_token(&resolver, &format!("Bearer {missing}")), None);
}

#[test]
fn verified_claims_come_first() {
    let resolver = resolver(rs256()).unwrap();
    let token = sign(Algorithm::RS256, &rsa(PRIVATE), &valid_claims());
    let other = "0190d5a0-7c1e-7a2b-9c3d-000000000001";
    let mut request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let serde_json::Value::Object(map) = json!({ "tenant_id": other }) else {
        unreachable!()
    };
    request.extensions_mut().insert(VerifiedClaims::new(map));
    assert_eq!(
        resolver.resolve(&ResolutionContext::from_request(&request)),
        Resolution::Found(TenantRef::Id(other.parse().unwrap()))
    );
}

#[test]
fn garbage_tokens_are_refused() {
    let resolver = resolver(rs256()).unwrap();
    let huge = "a".repeat(20_000);
    for token in [
        "",
        ".",
        "..",
        "a.b.c",
        "ey.ey.ey",
        &huge,
        "t\u{f6}k\u{20ac}n.x.y",
    ] {
        assert_eq!(
            resolve_token(&resolver, &format!("Bearer {token}")),
            None,
            "{token:?}"
        );
    }
}

fn resolver_err(verify: JwtVerifyConfig) -> String {
    match resolver(verify) {
        Err(TenantError::Configuration(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn verification_settings_are_validated() {
    let cases: Vec<(JwtVerifyConfig, &str)> = vec![
        (
            JwtVerifyConfig {
                algorithms: vec![],
                ..rs256()
            },
            "algorithms is empty",
        ),
        (
            JwtVerifyConfig {
                algorithms: vec!["RS999".into()],
                ..rs256()
            },
            "unknown algorithm `RS999`",
        ),
        (
            JwtVerifyConfig {
                public_key_pem: None,
                ..rs256()
            },
            "no key",
        ),
        (
            JwtVerifyConfig {
                secret: Some(SECRET.into()),
                ..rs256()
            },
            "not both",
        ),
        (
            JwtVerifyConfig {
                public_key_pem: Some("not a pem".into()),
                ..rs256()
            },
            "jwt_verify",
        ),
        (
            JwtVerifyConfig {
                algorithms: vec!["HS256".into()],
                secret: Some("short".into()),
                public_key_pem: None,
                ..JwtVerifyConfig::default()
            },
            "at least 32",
        ),
        (
            JwtVerifyConfig {
                algorithms: vec!["HS256".into()],
                ..rs256()
            },
            "needs a secret",
        ),
        (
            JwtVerifyConfig {
                secret: Some(SECRET.into()),
                public_key_pem: None,
                ..rs256()
            },
            "needs public_key_pem",
        ),
    ];
    for (settings, expected) in cases {
        let message = resolver_err(settings);
        assert!(
            message.contains(expected),
            "{message} should contain {expected}"
        );
    }
}
