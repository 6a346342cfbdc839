//! HTTP authentication end to end: the test OIDC issuer (tests/oidc_support) checked against
//! weft-auth's production validator, then a real `weft serve` with `[security.http]`.

mod oidc_support;

use std::sync::Arc;

use oidc_support::Issuer;
use serde_json::Value;
use weft_auth::jwt::{
    Jwks, JwksFetcher, JwksSettings, JwtConfig, JwtError, JwtValidator, KeySource,
};
use weft_auth::{Principal, SystemClock};

/// Reads the issuer's JWKS over HTTP with a blocking std socket (kept off the runtime).
struct HttpFetch(String);

#[async_trait::async_trait]
impl JwksFetcher for HttpFetch {
    async fn fetch(&self) -> Result<weft_auth::jwt::JwtKeySet, String> {
        let url = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let body = raw_get(&url);
            serde_json::from_str(&body).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

fn raw_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn raw_post(url: &str, auth: Option<&str>, form: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (code, serde_json::from_str(body).expect("json body"))
}

fn validator(issuer: &Issuer) -> JwtValidator {
    let jwks = Jwks::new(
        Arc::new(HttpFetch(issuer.jwks_url())),
        JwksSettings {
            min_refresh_interval_secs: 3600,
            max_age_secs: 3600,
        },
    );
    JwtValidator::new(
        JwtConfig {
            issuers: vec![issuer.url()],
            audiences: vec![oidc_support::AUDIENCE.into()],
            ..JwtConfig::default()
        },
        KeySource::Jwks(jwks),
        Arc::new(SystemClock),
    )
}

/// The issuer's good tokens validate and each bad one fails for its own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_issuer_tokens_against_the_validator() {
    let issuer = Issuer::start();
    let discovery: Value = serde_json::from_str(&raw_get(&issuer.discovery_url())).expect("json");
    assert_eq!(discovery["issuer"], issuer.url());
    assert_eq!(discovery["jwks_uri"], issuer.jwks_url());
    assert_eq!(discovery["token_endpoint"], issuer.token_url());

    let v = validator(&issuer);
    let ok = v
        .validate(&issuer.token("alice", &["registry-read"]))
        .await
        .expect("rs256");
    assert_eq!(ok.principal, Principal::user("alice"));
    assert_eq!(ok.scopes, vec!["registry-read".to_owned()]);
    let ok = v
        .validate(&issuer.token_es256("bob", &[]))
        .await
        .expect("es256");
    assert_eq!(ok.principal, Principal::user("bob"));

    let s = "mallory";
    let cases: Vec<(&str, String, JwtError)> = vec![
        ("expired", issuer.expired(s, &[]), JwtError::Expired),
        ("nbf", issuer.not_yet_valid(s, &[]), JwtError::NotYetValid),
        ("iss", issuer.wrong_issuer(s, &[]), JwtError::WrongIssuer),
        (
            "aud",
            issuer.wrong_audience(s, &[]),
            JwtError::WrongAudience,
        ),
        ("forged", issuer.forged(s, &[]), JwtError::BadSignature),
        (
            "none",
            issuer.alg_none(s, &[]),
            JwtError::AlgorithmNotAllowed("none".into()),
        ),
        (
            "hs256",
            issuer.hs256_with_public_key(s, &[]),
            JwtError::AlgorithmNotAllowed("HS256".into()),
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(v.validate(&token).await.err(), Some(want), "{name}");
    }
    let fetches = issuer.jwks_fetches();
    assert_eq!(fetches, 1, "one fetch serves every known kid");
    for _ in 0..20 {
        let err = v.validate(&issuer.unknown_kid(s, &[])).await.err();
        assert!(
            matches!(
                err,
                Some(JwtError::UnknownKeyRefreshLimited | JwtError::UnknownKey)
            ),
            "{err:?}"
        );
    }
    assert!(
        issuer.jwks_fetches() <= fetches + 1,
        "unknown kids hammered the JWKS"
    );

    // Client credentials: Basic (librdkafka's way) and in the body; errors per RFC 6749.
    issuer.add_client("svc-orders", "s3cret", &["registry-read", "registry-write"]);
    let basic = format!("Basic {}", b64("svc-orders:s3cret"));
    let (code, body) = raw_post(
        &issuer.token_url(),
        Some(&basic),
        "grant_type=client_credentials&scope=registry-read",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let t = v
        .validate(body["access_token"].as_str().expect("token"))
        .await
        .expect("valid");
    assert_eq!(t.principal, Principal::user("svc-orders"));
    assert_eq!(t.scopes, vec!["registry-read".to_owned()]);
    let (code, body) = raw_post(
        &issuer.token_url(),
        None,
        "grant_type=client_credentials&client_id=svc-orders&client_secret=s3cret",
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = raw_post(
        &issuer.token_url(),
        Some(&format!("Basic {}", b64("svc-orders:nope"))),
        "grant_type=client_credentials",
    );
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (code, body) = raw_post(
        &issuer.token_url(),
        Some(&basic),
        "grant_type=client_credentials&scope=admin",
    );
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid_scope")));
    assert_eq!(issuer.token_requests(), 4);

    // Rotation: the new kid is unknown to the cache; a refresh finds it (fresh validator:
    // the one above is rate-limited for an hour).
    issuer.rotate_keys();
    let v2 = validator(&issuer);
    v2.validate(&issuer.token("alice", &[]))
        .await
        .expect("rotated key");
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
