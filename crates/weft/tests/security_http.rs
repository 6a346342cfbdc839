//! HTTP authentication end to end: the test OIDC issuer (tests/oidc_support) checked against
//! weft-auth's production validator, then a real `weft serve` with `[security.http]`:
//! Confluent's Python schema-registry client with a static bearer token, with its
//! OAUTHBEARER client-credentials flow and with HTTP Basic; every bad token refused with
//! RFC 6750's 401; ACL denials answered 403 with nothing written.

mod common;
mod oidc_support;

use std::sync::Arc;

use oidc_support::Issuer;
use serde_json::{Value, json};
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

// ---- a real weft serve ----

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{Server, http_request as request};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
use weft_auth::store::{AclStore, ScramStore};
use weft_auth::{AclBinding, Operation, Permission, ResourcePattern, ResourceType};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn www_authenticate(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// ACLs and a SCRAM user written into the state database before `weft serve` opens it.
async fn seed_store(dir: &Path, acls: &[AclBinding], users: &[(&str, &str)]) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let store = weft_store::Store::open_sqlite(&data.join("state.db"))
        .await
        .expect("open state db");
    weft_auth::store::migrate(&store).await.expect("migrate");
    AclStore::new(store.clone()).add(acls).await.expect("acls");
    for (user, password) in users {
        let cred = ScramCredential::generate(ScramMechanism::Sha512, password, 4096).expect("cred");
        ScramStore::new(store.clone())
            .upsert(user, ScramMechanism::Sha512, &cred)
            .await
            .expect("user");
    }
    store.close().await;
}

fn allow(resource: ResourcePattern, principal: &str, op: Operation) -> AclBinding {
    AclBinding::new(resource, principal, op, Permission::Allow)
}

/// `weft serve` with `[security]` from `issuer` and `extra` settings, debug logs.
fn serve(dir: &Path, issuer: &Issuer) -> Server {
    let config = format!(
        r#"[security]
authorization = true
# `weft topic create` run by this test connects anonymously on the PLAINTEXT listener; HTTP
# callers are authorised at the gateway with their own principal. admin is the operator.
super_users = ["User:admin", "User:ANONYMOUS"]

{}jwks_min_refresh_secs = 3600

[security.http]
require_auth = true
basic = true

[security.http.scopes]
registry_read = "registry-read"
registry_write = "registry-write"
gateway_read = "gateway-read"
gateway_write = "gateway-write"
"#,
        issuer.jwt_toml()
    );
    Server::start_with_config(dir, &config, &["--log-level", "debug"])
}

/// Confluent's SchemaRegistryClient: `action` (register | read) on `subject`; prints
/// `{"ok": …}` or the SchemaRegistryError's status and code.
const SR_SCRIPT: &str = r#"
import json, sys
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
url, mode, cred, subject, action = sys.argv[1:6]
conf = {"url": url}
if mode == "static":
    conf.update({"bearer.auth.credentials.source": "STATIC_TOKEN",
                 "bearer.auth.token": cred, "bearer.auth.logical.cluster": "weft"})
elif mode == "oauth":
    cid, secret, scope, endpoint = cred.split("|")
    conf.update({"bearer.auth.credentials.source": "OAUTHBEARER",
                 "bearer.auth.client.id": cid, "bearer.auth.client.secret": secret,
                 "bearer.auth.scope": scope, "bearer.auth.issuer.endpoint.url": endpoint,
                 "bearer.auth.logical.cluster": "weft"})
elif mode == "basic":
    conf["basic.auth.user.info"] = cred
sr = SchemaRegistryClient(conf)
schema = Schema(json.dumps({"type": "record", "name": "R",
                            "fields": [{"name": "id", "type": "long"}]}), "AVRO")
out = {}
try:
    if action == "register":
        out["id"] = sr.register_schema(subject, schema)
    out["latest"] = sr.get_latest_version(subject).version
    out["ok"] = True
except SchemaRegistryError as e:
    out.update(ok=False, status=e.http_status_code, code=e.error_code)
print(json.dumps(out))
"#;

fn sr_client(registry: SocketAddr, mode: &str, cred: &str, subject: &str, action: &str) -> Value {
    let output = Command::new("python3")
        .args(["-c", SR_SCRIPT])
        .arg(format!("http://{registry}"))
        .args([mode, cred, subject, action])
        .output()
        .expect("run python3 (cargo xtask test installs confluent-kafka)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The registry behind bearer tokens, OAUTHBEARER client credentials and HTTP Basic, with
/// Confluent's client; scopes and ACLs refuse with 403 and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_with_confluent_client_bearer_oauth_and_basic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start();
    issuer.add_client("svc-orders", "s3cret", &["registry-read", "registry-write"]);
    let subject = ResourceType::Subject;
    seed_store(
        dir.path(),
        &[
            allow(
                ResourcePattern::prefixed(subject, "orders-"),
                "User:svc-orders",
                Operation::All,
            ),
            allow(
                ResourcePattern::literal(subject, "orders-value"),
                "User:alice",
                Operation::Read,
            ),
        ],
        &[("alice", "alice-pw")],
    )
    .await;
    let server = serve(dir.path(), &issuer);
    let registry = server.registry_addr();
    let rw = ["registry-read", "registry-write"];

    // Static bearer token: register where the ACL allows.
    let token = issuer.token("svc-orders", &rw);
    let got = sr_client(registry, "static", &token, "orders-value", "register");
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["latest"], 1, "{got}");
    // OAUTHBEARER: the client fetches its own token from the issuer's token endpoint.
    let before = issuer.token_requests();
    let oauth = format!(
        "svc-orders|s3cret|registry-read registry-write|{}",
        issuer.token_url()
    );
    let got = sr_client(registry, "oauth", &oauth, "orders-key", "register");
    assert_eq!(got["ok"], true, "{got}");
    assert!(
        issuer.token_requests() > before,
        "the client used the token endpoint"
    );
    // HTTP Basic (a SCRAM user): alice reads orders-value, may not write it.
    let got = sr_client(registry, "basic", "alice:alice-pw", "orders-value", "read");
    assert_eq!(
        (got["ok"].clone(), got["latest"].clone()),
        (json!(true), json!(1)),
        "{got}"
    );
    let got = sr_client(
        registry,
        "basic",
        "alice:alice-pw",
        "orders-value",
        "register",
    );
    assert_eq!(
        (got["status"].clone(), got["code"].clone()),
        (json!(403), json!(40301)),
        "{got}"
    );
    let got = sr_client(registry, "basic", "alice:wrong", "orders-value", "read");
    assert_eq!(got["status"], 401, "{got}");

    // ACL deny: svc-orders has nothing on payments-*: 403 and the subject stays absent.
    let got = sr_client(registry, "static", &token, "payments-value", "register");
    assert_eq!(
        (got["status"].clone(), got["code"].clone()),
        (json!(403), json!(40301)),
        "{got}"
    );
    let admin = issuer.token("admin", &rw);
    let (status, _, body) = request(
        registry,
        "GET",
        "/subjects",
        &[("Authorization", &bearer(&admin))],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let subjects: Vec<String> = serde_json::from_str(&body).expect("subjects");
    assert_eq!(subjects, ["orders-key", "orders-value"]);
    // A token without the write scope: 403 insufficient_scope, nothing registered.
    let read_only = issuer.token("svc-orders", &["registry-read"]);
    let got = sr_client(registry, "static", &read_only, "orders-new", "register");
    assert_eq!(got["status"], 403, "{got}");
    let (status, head, _) = request(
        registry,
        "POST",
        "/subjects/orders-new/versions",
        &[("Authorization", &bearer(&read_only))],
        Some(r#"{"schema": "\"string\""}"#),
    );
    assert_eq!(status, 403);
    assert!(
        www_authenticate(&head).contains(r#"error="insufficient_scope""#)
            && www_authenticate(&head).contains(r#"scope="registry-write""#),
        "{head}"
    );
    let (_, _, body) = request(
        registry,
        "GET",
        "/subjects/orders-new/versions",
        &[("Authorization", &bearer(&admin))],
        None,
    );
    assert!(body.contains("40401"), "orders-new must not exist: {body}");

    // Missing credentials: the bare challenge.
    let (status, head, _) = request(registry, "GET", "/subjects", &[], None);
    assert_eq!(
        (status, www_authenticate(&head)),
        (401, r#"Bearer realm="weft""#.to_owned())
    );
}

/// Every bad token gets 401 `invalid_token` with its own description, on both listeners;
/// unknown `kid`s do not hammer the JWKS; `access_token` only on stream requests and never
/// in the logs; health checks open; gateway produce denied by ACL writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_acl_denials_and_query_tokens_on_weft_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start();
    let topic = ResourceType::Topic;
    seed_store(
        dir.path(),
        &[allow(
            ResourcePattern::literal(topic, "orders"),
            "User:svc-orders",
            Operation::All,
        )],
        &[],
    )
    .await;
    let server = serve(dir.path(), &issuer);
    let (http, registry) = (server.http_addr, server.registry_addr());
    let scopes = [
        "registry-read",
        "registry-write",
        "gateway-read",
        "gateway-write",
    ];
    let good = issuer.token("svc-orders", &scopes);
    let (status, _, body) = request(
        registry,
        "GET",
        "/subjects",
        &[("Authorization", &bearer(&good))],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let s = "svc-orders";
    let cases = [
        ("expired", issuer.expired(s, &scopes), "the token expired"),
        (
            "nbf",
            issuer.not_yet_valid(s, &scopes),
            "the token is not valid yet",
        ),
        (
            "iss",
            issuer.wrong_issuer(s, &scopes),
            "the token's issuer is not accepted",
        ),
        (
            "aud",
            issuer.wrong_audience(s, &scopes),
            "the token's audience is not accepted",
        ),
        (
            "forged",
            issuer.forged(s, &scopes),
            "the token's signature is invalid",
        ),
        (
            "none",
            issuer.alg_none(s, &scopes),
            "algorithm none is not accepted",
        ),
        (
            "hs256",
            issuer.hs256_with_public_key(s, &scopes),
            "algorithm HS256 is not accepted",
        ),
        (
            "kid",
            issuer.unknown_kid(s, &scopes),
            "no signing key with the token's key id",
        ),
    ];
    for (name, token, description) in &cases {
        for (addr, path) in [(registry, "/subjects"), (http, "/v1/topics/orders")] {
            let (status, head, _) = request(
                addr,
                "GET",
                path,
                &[("Authorization", &bearer(token))],
                None,
            );
            let challenge = www_authenticate(&head);
            assert_eq!(status, 401, "{name} on {path}: {head}");
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{name}: {challenge}"
            );
            assert!(challenge.contains(description), "{name}: {challenge}");
        }
    }
    let fetches = issuer.jwks_fetches();
    for _ in 0..30 {
        let token = issuer.unknown_kid(s, &scopes);
        let (status, _, _) = request(
            registry,
            "GET",
            "/subjects",
            &[("Authorization", &bearer(&token))],
            None,
        );
        assert_eq!(status, 401);
    }
    assert!(fetches <= 2, "jwks fetched {fetches} times");
    assert_eq!(
        issuer.jwks_fetches(),
        fetches,
        "unknown kids refetched the JWKS"
    );

    // Health checks stay open; metrics need a token.
    assert_eq!(request(http, "GET", "/healthz", &[], None).0, 200);
    assert_eq!(request(http, "GET", "/readyz", &[], None).0, 200);
    assert_eq!(request(http, "GET", "/metrics", &[], None).0, 401);

    // Gateway produce: allowed for svc-orders on orders, denied (403) for mallory.
    let created = common::run_weft(
        dir.path(),
        &server.kafka_addr().to_string(),
        &["topic", "create", "orders", "--partitions", "1"],
        None,
    );
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let record = r#"{"records": [{"value": {"n": 1}}]}"#;
    let auth = bearer(&good);
    let (status, _, body) = request(
        http,
        "POST",
        "/v1/topics/orders/records",
        &[("Authorization", &auth)],
        Some(record),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let mallory = issuer.token("mallory", &scopes);
    let (status, head, body) = request(
        http,
        "POST",
        "/v1/topics/orders/records",
        &[("Authorization", &bearer(&mallory))],
        Some(record),
    );
    assert_eq!(status, 403, "{head}\n{body}");
    assert!(
        body.contains("User:mallory is denied operation write on topic orders"),
        "{body}"
    );
    // Missing scope on the gateway: 403 insufficient_scope.
    let read_only = issuer.token("svc-orders", &["gateway-read"]);
    let (status, head, _) = request(
        http,
        "POST",
        "/v1/topics/orders/records",
        &[("Authorization", &bearer(&read_only))],
        Some(record),
    );
    assert_eq!(status, 403);
    assert!(
        www_authenticate(&head).contains("insufficient_scope"),
        "{head}"
    );
    // One record in the topic: the refused ones wrote nothing.
    let (status, _, body) = request(
        http,
        "GET",
        "/v1/topics/orders",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let detail: Value = serde_json::from_str(&body).expect("topic json");
    let records: i64 = detail["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            p["latest_offset"].as_i64().unwrap_or(0) - p["earliest_offset"].as_i64().unwrap_or(0)
        })
        .sum();
    assert_eq!(records, 1, "{detail}");

    // access_token in the query: accepted on an EventSource request, ignored elsewhere.
    let secret_token = issuer.token("svc-orders", &scopes);
    let path = format!("/v1/topics/orders/events?access_token={secret_token}");
    let (status, head, _) = request(http, "GET", &path, &[("Accept", "text/event-stream")], None);
    assert_eq!(status, 200, "{head}");
    let (status, _, _) = request(http, "GET", &path, &[], None);
    assert_eq!(status, 401);

    // Stop and read every log line: no token, in any form.
    let _ = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    let (_, lines) = server.wait();
    let logs = lines.join("\n");
    assert!(logs.contains("http request"), "debug request logs are on");
    let signature = secret_token.rsplit('.').next().expect("signature");
    for (what, needle) in [
        ("query token", signature),
        ("bearer token", good.rsplit('.').next().expect("sig")),
    ] {
        assert!(!logs.contains(needle), "{what} leaked into the logs");
    }
}
