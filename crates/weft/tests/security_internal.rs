//! `weft serve`'s own clients under full security (issue 8): authorisation on, HTTP
//! authentication required, a SASL listener, and no rights for `User:ANONYMOUS`. The
//! gateway, the lag sampler and the event store's registry lookups keep working through the
//! internal identity (`User:weft-internal`: a loopback SASL_PLAINTEXT listener and a bearer
//! credential, both with a per-process secret); anonymous Kafka clients get nothing; the
//! internal listener takes no other credential; the secret never reaches the logs. Then
//! mutual TLS on HTTP: a client certificate is `User:<CN>`, and ACL hosts see the peer IP.

mod common;
mod oidc_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use oidc_support::Issuer;
use serde_json::{Value, json};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
use weft_auth::store::{AclStore, ScramStore};
use weft_auth::{AclBinding, Operation, Permission, ResourcePattern, ResourceType};

const BOB: &str = "bob";
const BOB_PASSWORD: &str = "bob-pw-0123";
const SCOPES: [&str; 5] = [
    "registry-read",
    "registry-write",
    "gateway-read",
    "gateway-write",
    "admin",
];

/// [`common::http_request`] with an optional bearer token and a JSON body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body = body.map(Value::to_string);
    common::http_request(addr, method, path, &headers, body.as_deref())
}

fn allow(resource: ResourcePattern, principal: &str, op: Operation) -> AclBinding {
    AclBinding::new(resource, principal, op, Permission::Allow)
}

/// Records in `topic` as the gateway reports them (alice's token).
fn records_in(http: SocketAddr, token: &str, topic: &str) -> i64 {
    let (status, _, body) = request(
        http,
        "GET",
        &format!("/v1/topics/{topic}"),
        Some(token),
        &[],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let detail: Value = serde_json::from_str(&body).expect("topic json");
    detail["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            p["latest_offset"].as_i64().unwrap_or(0) - p["earliest_offset"].as_i64().unwrap_or(0)
        })
        .sum()
}

/// A Python script run with `args`: (success, stdout, stderr).
fn python(script: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (cargo xtask test installs kafka-python)");
    let (status, out, err) = common::wait_with_output(&mut child, "python3");
    (status.success(), out, err)
}

/// kafka-python: bob (SCRAM-SHA-512 on the SASL listener) reads one record of `orders` as
/// group `lag-g` and commits: committed offset 1.
const COMMIT_ONE: &str = r#"
import sys
from kafka import KafkaConsumer, TopicPartition
bootstrap, user, password = sys.argv[1:4]
c = KafkaConsumer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                  sasl_plain_password=password, group_id="lag-g", enable_auto_commit=False,
                  auto_offset_reset="earliest", max_poll_records=1)
tp = TopicPartition("orders", 0)
c.assign([tp])
got = []
for _ in range(60):
    got += c.poll(timeout_ms=1000, max_records=1).get(tp, [])
    if got:
        break
c.commit()
print(len(got), c.committed(tp))
c.close()
"#;

/// kafka-python: bob (SCRAM-SHA-512 on the SASL listener, CREATE on the topic) creates
/// `orders` with one partition (the gateway does not create topics); prints `CREATED`.
const CREATE_ORDERS: &str = r#"
import sys
from kafka.admin import KafkaAdminClient, NewTopic
bootstrap, user, password = sys.argv[1:4]
a = KafkaAdminClient(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                     sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                     sasl_plain_password=password)
a.create_topics([NewTopic("orders", num_partitions=1, replication_factor=1)])
print("CREATED")
a.close()
"#;

/// kafka-python: an anonymous producer on `kafka_listen`; prints the exception's class.
const ANONYMOUS_PRODUCE: &str = r#"
import sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers=sys.argv[1], retries=0, max_block_ms=20000)
try:
    p.send("orders", b"anonymous").get(timeout=30)
    print("WRITTEN")
except Exception as e:
    print(type(e).__name__, e)
p.close()
"#;

/// kafka-python on the internal listener with the given mechanism and credentials; prints
/// `CONNECTED` or the exception's class.
const INTERNAL_LOGIN: &str = r#"
import logging, sys
from kafka import KafkaConsumer
logging.basicConfig(level=logging.ERROR)
bootstrap, mech, user, password = sys.argv[1:5]
try:
    c = KafkaConsumer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism=mech, sasl_plain_username=user,
                      sasl_plain_password=password, bootstrap_timeout_ms=15000)
    c.topics()
    print("CONNECTED")
except Exception as e:
    print(type(e).__name__, e)
"#;

fn serve(dir: &Path, issuer: &Issuer) -> Server {
    let config = format!(
        r#"[security]
authorization = true
# No User:ANONYMOUS here: weft serve's own clients do not need it any more.
super_users = ["User:admin"]
listeners = ["SASL_PLAINTEXT://127.0.0.1:0"]
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-512"]

{}jwks_min_refresh_secs = 3600

[security.http]
require_auth = true

[security.http.scopes]
registry_read = "registry-read"
registry_write = "registry-write"
gateway_read = "gateway-read"
gateway_write = "gateway-write"
admin = "admin"
"#,
        issuer.jwt_toml()
    );
    Server::start_with_config(
        dir,
        &config,
        &["--lag-interval-ms", "200", "--log-level", "debug"],
    )
}

/// Runs of `[A-Za-z0-9_-]` exactly as long as the internal secret (43: 32 bytes in
/// unpadded base64url) in `text`.
fn secret_shaped(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| w.len() == 43)
        .map(str::to_owned)
        .collect()
}

#[test]
fn serve_own_clients_work_under_full_security_and_anonymous_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start();
    let (topic, group) = (ResourceType::Topic, ResourceType::Group);
    common::seed_state(dir.path(), async |store| {
        let acls = [
            allow(
                ResourcePattern::literal(topic, "orders"),
                "User:alice",
                Operation::All,
            ),
            allow(
                ResourcePattern::literal(group, "lag-g"),
                "User:alice",
                Operation::Describe,
            ),
            // The event store decides per stream (EventStoreDB's $w on the `order` category).
            allow(
                ResourcePattern::prefixed(ResourceType::Stream, "order-"),
                "User:alice",
                Operation::Write,
            ),
            allow(
                ResourcePattern::literal(topic, "orders"),
                "User:bob",
                Operation::Read,
            ),
            allow(
                ResourcePattern::literal(group, "lag-g"),
                "User:bob",
                Operation::Read,
            ),
            allow(
                ResourcePattern::literal(topic, "orders"),
                "User:bob",
                Operation::Create,
            ),
        ];
        AclStore::new(store.clone()).add(&acls).await.expect("acls");
        let cred = ScramCredential::generate(ScramMechanism::Sha512, BOB_PASSWORD, 4096)
            .expect("credential");
        ScramStore::new(store)
            .upsert(BOB, ScramMechanism::Sha512, &cred)
            .await
            .expect("user");
    });
    let server = serve(dir.path(), &issuer);
    let (http, registry) = (server.http_addr, server.registry_addr());
    let internal: SocketAddr = server
        .ready_field("kafka_internal")
        .expect("the ready line names the internal listener")
        .parse()
        .expect("address");
    assert!(internal.ip().is_loopback(), "{internal}");
    let sasl: SocketAddr = server
        .ready_field("kafka_listeners")
        .and_then(|l| l.strip_prefix("SASL_PLAINTEXT://").map(str::to_owned))
        .expect("the SASL listener")
        .parse()
        .expect("address");
    let alice = issuer.token("alice", &SCOPES);
    let admin = issuer.token("admin", &SCOPES);

    // bob creates the topic over the SASL listener; then gateway REST produce (the
    // gateway's producer and metadata client are serve's own clients), three records.
    let (ok, out, err) = python(
        CREATE_ORDERS,
        &[sasl.to_string().as_str(), BOB, BOB_PASSWORD],
    );
    assert!(ok && out.contains("CREATED"), "create orders: {out}\n{err}");
    for n in 0..3 {
        let (status, _, body) = request(
            http,
            "POST",
            "/v1/topics/orders/records",
            Some(&alice),
            &[],
            Some(&json!({"records": [{"value": {"n": n}}]})),
        );
        assert!((200..300).contains(&status), "produce {n}: {status} {body}");
    }
    assert_eq!(records_in(http, &alice, "orders"), 3);
    // SSE: the stream opens for alice.
    let (status, head, _) = request(
        http,
        "GET",
        "/v1/topics/orders/events",
        Some(&alice),
        &[("Accept", "text/event-stream")],
        None,
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    // The event store validates against the registry through serve's own client.
    let schema = json!({"type": "object", "required": ["total"],
                        "properties": {"total": {"type": "number"}}});
    let (status, _, body) = request(
        registry,
        "POST",
        "/subjects/orders-value/versions",
        Some(&admin),
        &[],
        Some(&json!({"schemaType": "JSON", "schema": schema.to_string()})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = request(
        http,
        "PUT",
        "/v1/event-types/OrderPlaced",
        Some(&alice),
        &[],
        Some(&json!({"registry": {"subject": "orders-value"}})),
    );
    assert_eq!(status, 204, "{body}");
    let append = |data: Value| {
        request(
            http,
            "POST",
            "/v1/streams/order-1",
            Some(&alice),
            &[],
            Some(&json!({"events": [{"type": "OrderPlaced", "data": data}]})),
        )
    };
    let (status, _, body) = append(json!({"total": 5}));
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = append(json!({"total": "five"}));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("schema_mismatch"), "{body}");

    // A SCRAM user commits offset 1 of 3; the lag sampler (serve's own client) reports 2.
    let (ok, out, err) = python(COMMIT_ONE, &[sasl.to_string().as_str(), BOB, BOB_PASSWORD]);
    assert!(ok && out.starts_with("1 1"), "commit: {out}\n{err}");
    let deadline = Instant::now() + common::SAFETY;
    loop {
        let (status, _, body) = request(http, "GET", "/v1/groups/lag-g", Some(&alice), &[], None);
        if status == 200 {
            let json: Value = serde_json::from_str(&body).expect("group json");
            if json["total_lag"] == 2 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no lag of 2 for lag-g: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // An anonymous client on kafka_listen is refused and writes nothing.
    let (_, out, err) = python(
        ANONYMOUS_PRODUCE,
        &[server.kafka_addr().to_string().as_str()],
    );
    assert!(
        out.contains("TopicAuthorizationFailed"),
        "anonymous produce: {out}\n{err}"
    );
    assert_eq!(records_in(http, &alice, "orders"), 3);

    // The internal listener takes the internal credential only: not a wrong password, not
    // a SCRAM user's credentials (over PLAIN or SCRAM).
    for (mech, user, password) in [
        ("PLAIN", "weft-internal", "not-the-secret-at-all"),
        ("PLAIN", BOB, BOB_PASSWORD),
        ("SCRAM-SHA-512", BOB, BOB_PASSWORD),
    ] {
        let (_, out, err) = python(
            INTERNAL_LOGIN,
            &[internal.to_string().as_str(), mech, user, password],
        );
        assert!(
            !out.contains("CONNECTED") && !out.trim().is_empty(),
            "{mech} {user} on the internal listener: {out}\n{err}"
        );
    }
    // The same SCRAM user is fine on the SASL listener (the refusals above are the
    // internal listener's doing).
    let (_, out, err) = python(
        INTERNAL_LOGIN,
        &[
            sasl.to_string().as_str(),
            "SCRAM-SHA-512",
            BOB,
            BOB_PASSWORD,
        ],
    );
    assert!(out.contains("CONNECTED"), "{out}\n{err}");
    // The reserved name cannot be taken over HTTP either.
    let forged = issuer.token("weft-internal", &SCOPES);
    let (status, _, _) = request(http, "GET", "/v1/topics/orders", Some(&forged), &[], None);
    assert_eq!(status, 401);

    // Stop; no log line (debug level) carries anything shaped like the secret.
    let _ = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    let early = server.early_lines().join("\n");
    let (_, lines) = server.wait();
    let logs = format!("{early}\n{}", lines.join("\n"));
    assert!(logs.contains("http request"), "debug logs are on");
    assert!(
        logs.contains("kafka sasl mechanisms"),
        "start-up logs are in"
    );
    let shaped = secret_shaped(&logs);
    assert!(
        shaped.is_empty(),
        "secret-shaped strings in logs: {shaped:?}"
    );
}

fn certs(dir: &Path, client: &str) -> PathBuf {
    let run = common::run_weft(
        dir,
        "127.0.0.1:1",
        &["dev-certs", "--dir", "certs", "--client-name", client],
        None,
    );
    assert_eq!(run.code, Some(0), "weft dev-certs: {}", run.stderr);
    std::fs::canonicalize(dir.join("certs")).expect("certs dir")
}

fn curl(certs: &Path, url: &str, with_cert: bool) -> (u16, String) {
    let p = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "60"])
        .args(["--cacert", &p("ca.pem")])
        .args(["--write-out", "\n%{http_code}"]);
    if with_cert {
        cmd.args(["--cert", &p("client.pem"), "--key", &p("client.key")]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn client_certificates_on_https_are_principals_and_acl_hosts_are_peer_ips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = certs(dir.path(), "carol");
    let topic = ResourceType::Topic;
    common::seed_state(dir.path(), async |store| {
        let mut on_host = allow(
            ResourcePattern::literal(topic, "from-loopback"),
            "User:carol",
            Operation::Describe,
        );
        on_host.host = "127.0.0.1".into();
        let mut elsewhere = allow(
            ResourcePattern::literal(topic, "from-elsewhere"),
            "User:carol",
            Operation::Describe,
        );
        elsewhere.host = "10.9.9.9".into();
        AclStore::new(store)
            .add(&[on_host, elsewhere])
            .await
            .expect("acls");
    });
    let p = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let config = format!(
        r#"[security]
authorization = true

[security.tls]
cert_file = "{}"
key_file = "{}"
client_ca_file = "{}"
client_auth = "requested"

[security.http]
require_auth = true
# require_auth needs a password or token method besides certificates (no user exists).
basic = true
tls = true
"#,
        p("server.pem"),
        p("server.key"),
        p("ca.pem"),
    );
    std::fs::write(dir.path().join("weft.toml"), config).expect("weft.toml");
    let server = Server::start_with(
        dir.path(),
        &["--config", "weft.toml", "--kafka-listen", "127.0.0.1:0"],
    );
    let base = format!("https://{}", server.http_addr);
    // No certificate, no token: 401.
    let (code, body) = curl(&certs, &format!("{base}/v1/topics/from-loopback"), false);
    assert_eq!(code, 401, "{body}");
    // The certificate is User:carol; the ACL for host 127.0.0.1 lets her past the check
    // (the topic does not exist: 404, not 403).
    let (code, body) = curl(&certs, &format!("{base}/v1/topics/from-loopback"), true);
    assert_eq!(code, 404, "{body}");
    // Her ACL for another host does not apply to a loopback peer.
    let (code, body) = curl(&certs, &format!("{base}/v1/topics/from-elsewhere"), true);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("User:carol is denied operation describe on topic from-elsewhere"),
        "{body}"
    );
    // No ACL at all: denied.
    let (code, body) = curl(&certs, &format!("{base}/v1/topics/other"), true);
    assert_eq!(code, 403, "{body}");
}
