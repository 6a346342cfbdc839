//! JWT validation: every accepted algorithm, and a negative test for each rule. Keys are
//! test-only PEMs in tests/keys (generated with openssl; never used outside these tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use weft_auth::jwt::{
    Jwks, JwksFetcher, JwksSettings, JwtConfig, JwtError, JwtValidator, KeySource, StaticKey,
};
use weft_auth::{Clock, Principal, PrincipalMapping};

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("keys/rsa2_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed_public.pem");
const JWKS: &str = include_str!("keys/jwks.json");
const JWKS_ROTATED: &str = include_str!("keys/jwks_rotated.json");

const NOW: u64 = 1_800_000_000;

struct FakeClock(AtomicU64);

impl Clock for FakeClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock(AtomicU64::new(NOW)))
}

fn config() -> JwtConfig {
    JwtConfig {
        issuers: vec!["https://issuer.test".into()],
        audiences: vec!["weft".into()],
        leeway_secs: 30,
        ..JwtConfig::default()
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://issuer.test",
        "aud": ["other", "weft"],
        "sub": "svc-orders",
        "exp": NOW + 300,
        "nbf": NOW - 10,
        "scope": "orders:read orders:write",
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key")
}

fn static_validator(config: JwtConfig, clock: Arc<FakeClock>) -> JwtValidator {
    let keys = vec![
        StaticKey::from_pem(Some("rsa-1".into()), Algorithm::RS256, RSA_PUBLIC).expect("rsa"),
        StaticKey::from_pem(Some("ec-1".into()), Algorithm::ES256, EC_PUBLIC).expect("ec"),
        StaticKey::from_pem(Some("ed-1".into()), Algorithm::EdDSA, ED_PUBLIC).expect("ed"),
    ];
    JwtValidator::new(config, KeySource::Static(keys), clock)
}

/// Serves a JWKS from memory, counting fetches; `rotated` switches to the second key set,
/// `fail` makes fetches fail.
#[derive(Default)]
struct MemoryJwks {
    fetches: AtomicUsize,
    rotated: AtomicBool,
    fail: AtomicBool,
}

#[async_trait::async_trait]
impl JwksFetcher for MemoryJwks {
    async fn fetch(&self) -> Result<weft_auth::jwt::JwtKeySet, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        let text = if self.rotated.load(Ordering::SeqCst) {
            JWKS_ROTATED
        } else {
            JWKS
        };
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

fn jwks_validator(fetcher: Arc<MemoryJwks>, clock: Arc<FakeClock>) -> JwtValidator {
    let jwks = Jwks::new(
        fetcher,
        JwksSettings {
            min_refresh_interval_secs: 60,
            max_age_secs: 3600,
        },
    );
    JwtValidator::new(config(), KeySource::Jwks(jwks), clock)
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_with_static_keys() {
    let v = static_validator(config(), clock());
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", rsa()),
        (
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec"),
        ),
        (
            Algorithm::EdDSA,
            "ed-1",
            EncodingKey::from_ed_pem(ED_PRIVATE).expect("ed"),
        ),
    ] {
        let token = sign(alg, Some(kid), &key, &claims());
        let ok = v
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(ok.principal, Principal::user("svc-orders"));
        assert_eq!(ok.expires_at, NOW + 300);
        assert_eq!(ok.scopes, vec!["orders:read", "orders:write"]);
        // Without a kid: the only key for the algorithm.
        let token = sign(alg, None, &key, &claims());
        assert!(v.validate(&token).await.is_ok(), "{alg:?} without kid");
    }
}

#[tokio::test]
async fn accepts_all_three_through_a_jwks() {
    let fetcher = Arc::new(MemoryJwks::default());
    let v = jwks_validator(fetcher.clone(), clock());
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", rsa()),
        (
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec"),
        ),
        (
            Algorithm::EdDSA,
            "ed-1",
            EncodingKey::from_ed_pem(ED_PRIVATE).expect("ed"),
        ),
    ] {
        let token = sign(alg, Some(kid), &key, &claims());
        v.validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
    assert_eq!(
        fetcher.fetches.load(Ordering::SeqCst),
        1,
        "one fetch, then cached"
    );
}

/// Each case: a token and the error it must get.
async fn refused(v: &JwtValidator, token: &str, expected: JwtError) {
    let got = v.validate(token).await.expect_err("must be refused");
    assert_eq!(got, expected);
    // Never the token, nor a piece of it, in the message.
    let msg = got.to_string();
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!msg.contains(part), "{msg}");
    }
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        c.as_object_mut().expect("object").remove(key);
    } else {
        c[key] = value;
    }
    c
}

#[tokio::test]
async fn negative_cases() {
    let clock = clock();
    let v = static_validator(config(), clock.clone());
    let c = claims();
    let rs = |c: &Value| sign(Algorithm::RS256, Some("rsa-1"), &rsa(), c);

    // Time: expired (past the leeway), inside the leeway, not yet valid, missing exp.
    refused(
        &v,
        &rs(&with(c.clone(), "exp", json!(NOW - 31))),
        JwtError::Expired,
    )
    .await;
    assert!(
        v.validate(&rs(&with(c.clone(), "exp", json!(NOW - 30))))
            .await
            .is_ok()
    );
    refused(
        &v,
        &rs(&with(c.clone(), "nbf", json!(NOW + 31))),
        JwtError::NotYetValid,
    )
    .await;
    assert!(
        v.validate(&rs(&with(c.clone(), "nbf", json!(NOW + 30))))
            .await
            .is_ok()
    );
    refused(
        &v,
        &rs(&with(c.clone(), "exp", Value::Null)),
        JwtError::MissingClaim("exp"),
    )
    .await;
    refused(
        &v,
        &rs(&with(c.clone(), "exp", json!("soon"))),
        JwtError::MissingClaim("exp"),
    )
    .await;
    // The same token expires when the clock moves on.
    let token = rs(&c);
    assert!(v.validate(&token).await.is_ok());
    clock.0.store(NOW + 331, Ordering::SeqCst);
    refused(&v, &token, JwtError::Expired).await;
    clock.0.store(NOW, Ordering::SeqCst);

    // Issuer and audience.
    refused(
        &v,
        &rs(&with(c.clone(), "iss", json!("https://evil.test"))),
        JwtError::WrongIssuer,
    )
    .await;
    refused(
        &v,
        &rs(&with(c.clone(), "iss", Value::Null)),
        JwtError::WrongIssuer,
    )
    .await;
    refused(
        &v,
        &rs(&with(c.clone(), "aud", json!("other"))),
        JwtError::WrongAudience,
    )
    .await;
    refused(
        &v,
        &rs(&with(c.clone(), "aud", json!([]))),
        JwtError::WrongAudience,
    )
    .await;
    refused(
        &v,
        &rs(&with(c.clone(), "aud", Value::Null)),
        JwtError::WrongAudience,
    )
    .await;
    assert!(
        v.validate(&rs(&with(c.clone(), "aud", json!("weft"))))
            .await
            .is_ok()
    );

    // Unknown kid, forged signature (another key under rsa-1's kid), tampered payload.
    refused(
        &v,
        &sign(Algorithm::RS256, Some("nope"), &rsa(), &c),
        JwtError::UnknownKey,
    )
    .await;
    let forged = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &EncodingKey::from_rsa_pem(RSA2_PRIVATE).expect("rsa2"),
        &c,
    );
    refused(&v, &forged, JwtError::BadSignature).await;
    let good = rs(&c);
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil = URL_SAFE_NO_PAD.encode(with(c.clone(), "sub", json!("admin")).to_string());
    parts[1] = &evil;
    refused(&v, &parts.join("."), JwtError::BadSignature).await;

    // A key used for another algorithm than it is declared for: an ES256 token under the
    // RSA key's kid.
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec");
    refused(
        &v,
        &sign(Algorithm::ES256, Some("rsa-1"), &ec, &c),
        JwtError::KeyAlgorithmMismatch,
    )
    .await;

    // alg none: header {"alg":"none"}, empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    refused(&v, &none, JwtError::AlgorithmNotAllowed("none".into())).await;
    // HS256 "signed" with the RSA public key as the HMAC secret (the classic key confusion).
    let hs = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(RSA_PUBLIC),
        &c,
    );
    refused(&v, &hs, JwtError::AlgorithmNotAllowed("HS256".into())).await;
    // Even a misconfiguration listing HS256 cannot enable it.
    let mut cfg = config();
    cfg.algorithms.push(Algorithm::HS256);
    let lenient = static_validator(cfg, clock.clone());
    refused(&lenient, &hs, JwtError::AlgorithmNotAllowed("HS256".into())).await;
    assert!(StaticKey::from_pem(None, Algorithm::HS256, RSA_PUBLIC).is_err());

    // Malformed.
    for bad in ["", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.x"] {
        refused(&v, bad, JwtError::Malformed).await;
    }
    refused(&v, &"a".repeat(16 * 1024 + 1), JwtError::TooLong).await;
}

#[tokio::test]
async fn scopes_and_principal_mapping() {
    let mut cfg = config();
    cfg.required_scopes = vec!["orders:read".into()];
    cfg.principal = PrincipalMapping::Claim("client_id".into());
    let v = static_validator(cfg, clock());
    let c = with(claims(), "client_id", json!("orders-app"));
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &c);
    let ok = v.validate(&token).await.expect("valid");
    assert_eq!(ok.principal, Principal::user("orders-app"));
    let err = v
        .validate_with_scopes(&token, &["registry:write"])
        .await
        .expect_err("missing scope");
    assert_eq!(err, JwtError::MissingScope("registry:write".into()));
    assert_eq!(err.bearer_error().as_str(), "insufficient_scope");
    let no_scope = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &with(c.clone(), "scope", Value::Null),
    );
    refused(&v, &no_scope, JwtError::MissingScope("orders:read".into())).await;
    let no_claim = sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &claims());
    let err = v.validate(&no_claim).await.expect_err("no client_id");
    assert!(matches!(err, JwtError::Principal(_)), "{err}");
}

#[tokio::test]
async fn unknown_kid_refreshes_the_jwks_at_most_once_per_interval() {
    let clock = clock();
    let fetcher = Arc::new(MemoryJwks::default());
    let v = jwks_validator(fetcher.clone(), clock.clone());
    let fetches = || fetcher.fetches.load(Ordering::SeqCst);
    let rsa2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE).expect("rsa2");
    let rotated_token = sign(Algorithm::RS256, Some("rsa-2"), &rsa2, &claims());

    // First use fetches; rsa-2 is not published yet.
    assert!(
        v.validate(&sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &claims()))
            .await
            .is_ok()
    );
    assert_eq!(fetches(), 1);
    // A flood of unknown kids right after: no further fetch.
    for i in 0..50 {
        let t = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &rsa(),
            &claims(),
        );
        refused(&v, &t, JwtError::UnknownKeyRefreshLimited).await;
    }
    refused(&v, &rotated_token, JwtError::UnknownKeyRefreshLimited).await;
    assert_eq!(fetches(), 1);

    // The issuer rotates; after the interval one unknown kid triggers one refresh.
    fetcher.rotated.store(true, Ordering::SeqCst);
    clock.0.store(NOW + 60, Ordering::SeqCst);
    let t = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &rsa2,
        &with(claims(), "exp", json!(NOW + 600)),
    );
    let ok = v
        .validate(&t)
        .await
        .expect("rotated key found after refresh");
    assert_eq!(ok.principal, Principal::user("svc-orders"));
    assert_eq!(fetches(), 2);
    // The old key is gone with the rotation.
    let old = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &with(claims(), "exp", json!(NOW + 600)),
    );
    refused(&v, &old, JwtError::UnknownKeyRefreshLimited).await;
    assert_eq!(fetches(), 2);

    // A failing issuer: keys kept, errors say unavailable only when nothing is cached.
    fetcher.fail.store(true, Ordering::SeqCst);
    clock.0.store(NOW + 200, Ordering::SeqCst);
    refused(&v, &old, JwtError::KeysUnavailable).await;
    assert_eq!(fetches(), 3);
    assert!(v.validate(&t).await.is_ok(), "cached rsa-2 still works");
    assert_eq!(fetches(), 3);
}

#[tokio::test]
async fn stale_keys_are_refetched_after_max_age() {
    let clock = clock();
    let fetcher = Arc::new(MemoryJwks::default());
    let v = jwks_validator(fetcher.clone(), clock.clone());
    let long = with(claims(), "exp", json!(NOW + 10_000));
    let t = sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &long);
    assert!(v.validate(&t).await.is_ok());
    clock.0.store(NOW + 3599, Ordering::SeqCst);
    assert!(v.validate(&t).await.is_ok());
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
    clock.0.store(NOW + 3600, Ordering::SeqCst);
    assert!(v.validate(&t).await.is_ok());
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let fetcher = Arc::new(MemoryJwks::default());
    let v = Arc::new(jwks_validator(fetcher.clone(), clock()));
    let good = sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &claims());
    let unknown = sign(Algorithm::RS256, Some("nope"), &rsa(), &claims());
    let mut tasks = Vec::new();
    for i in 0..32 {
        let v = v.clone();
        let t = if i % 2 == 0 {
            good.clone()
        } else {
            unknown.clone()
        };
        tasks.push(tokio::spawn(async move { v.validate(&t).await.is_ok() }));
    }
    let mut oks = 0;
    for t in tasks {
        oks += usize::from(t.await.expect("task"));
    }
    assert_eq!(
        oks, 16,
        "every good token passes, no unknown-kid token does"
    );
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
}
