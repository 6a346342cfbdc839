//! The registry's per-subject authorisation end to end: a real `weft serve` with
//! `[security] authorization = true` and `[security.http] require_auth = true`, JWTs from the
//! test OIDC issuer (tests/oidc_support), subject ACLs in the state store. A principal with
//! READ on the prefix `a-` lists only `a-*` subjects — over raw HTTP and through Confluent's
//! Python `SchemaRegistryClient` — gets 403 (40301) on a schema id only `b-*` subjects hold
//! and 200 on an id an `a-*` subject shares. The event store on the HTTP listener decides
//! per stream the same way (`stream` ACLs). `weft acl --subject/--stream` manages both
//! through Kafka's ACL APIs (Weft's resource types 100/101), which Kafka tools' ANY filters
//! do not reach.

mod common;
mod oidc_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::Server;
use oidc_support::Issuer;
use serde_json::{Value, json};
use weft_auth::store::AclStore;
use weft_auth::{AclBinding, Operation, Permission, ResourcePattern, ResourceType};

const SCOPES: [&str; 2] = ["registry-read", "registry-write"];

/// `weft serve` with authentication and authorisation on, `admin` a super-user.
fn serve(dir: &Path, issuer: &Issuer) -> Server {
    let config = format!(
        r#"[security]
authorization = true
# The `weft acl` CLI run by these tests connects anonymously on the PLAINTEXT listener.
super_users = ["User:admin", "User:ANONYMOUS"]

{}jwks_min_refresh_secs = 3600

[security.http]
require_auth = true

[security.http.scopes]
registry_read = "registry-read"
registry_write = "registry-write"
"#,
        issuer.jwt_toml()
    );
    Server::start_with_config(dir, &config, &[])
}

/// One HTTP/1.1 request with a bearer token: (status, body as JSON, or as a JSON string).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(common::SAFETY)).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {out}"));
    let text = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    (status, json)
}

fn record(name: &str) -> String {
    json!({ "type": "record", "name": name, "fields": [{ "name": "id", "type": "long" }] })
        .to_string()
}

/// Confluent's SchemaRegistryClient with a static bearer token: `get_subjects()`, then
/// `get_schema(id)` for each id (`{"ok": schema}` or the SchemaRegistryError's status and
/// code), as one JSON line.
const SR_SCRIPT: &str = r#"
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
url, token = sys.argv[1:3]
ids = [int(i) for i in sys.argv[3:]]
sr = SchemaRegistryClient({"url": url, "bearer.auth.credentials.source": "STATIC_TOKEN",
                           "bearer.auth.token": token, "bearer.auth.logical.cluster": "weft"})
out = {"subjects": sr.get_subjects(), "prefixed": sr.get_subjects(subject_prefix="b-"),
       "ids": {}}
for i in ids:
    try:
        out["ids"][str(i)] = {"ok": json.loads(sr.get_schema(i).schema_str)["name"]}
    except SchemaRegistryError as e:
        out["ids"][str(i)] = {"status": e.http_status_code, "code": e.error_code}
print(json.dumps(out))
"#;

fn sr_client(registry: SocketAddr, token: &str, ids: &[i64]) -> Value {
    let output = Command::new("python3")
        .args(["-c", SR_SCRIPT])
        .arg(format!("http://{registry}"))
        .arg(token)
        .args(ids.iter().map(i64::to_string))
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

#[test]
fn subject_lists_and_schema_ids_follow_subject_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start();
    common::seed_state(dir.path(), async |store| {
        let read_a = AclBinding::new(
            ResourcePattern::prefixed(ResourceType::Subject, "a-"),
            "User:alice",
            Operation::Read,
            Permission::Allow,
        );
        AclStore::new(store).add(&[read_a]).await.expect("acl");
    });
    let server = serve(dir.path(), &issuer);
    let registry = server.registry_addr();
    let admin = issuer.token("admin", &SCOPES);
    let alice = issuer.token("alice", &SCOPES);

    let register = |subject: &str, name: &str| -> i64 {
        let (status, body) = call(
            registry,
            "POST",
            &format!("/subjects/{subject}/versions"),
            &admin,
            Some(&json!({ "schema": record(name) })),
        );
        assert_eq!(status, 200, "register {subject}: {body}");
        body["id"].as_i64().expect("id")
    };
    let a_only = register("a-orders", "A");
    let shared = register("a-shared", "S");
    assert_eq!(register("b-shared", "S"), shared);
    let b_only = register("b-payments", "B");

    // Raw HTTP: the filtered list, 403 on the b-only id, 200 on the shared one.
    let (status, body) = call(registry, "GET", "/subjects", &alice, None);
    assert_eq!((status, body), (200, json!(["a-orders", "a-shared"])));
    let (status, body) = call(registry, "GET", "/subjects", &admin, None);
    assert_eq!(
        (status, body),
        (
            200,
            json!(["a-orders", "a-shared", "b-payments", "b-shared"])
        )
    );
    for suffix in ["", "/schema", "/subjects", "/versions"] {
        let (status, body) = call(
            registry,
            "GET",
            &format!("/schemas/ids/{b_only}{suffix}"),
            &alice,
            None,
        );
        assert_eq!(
            (status, body["error_code"].clone()),
            (403, json!(40301)),
            "{suffix}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("User:alice"),
            "{body}"
        );
    }
    let (status, body) = call(
        registry,
        "GET",
        &format!("/schemas/ids/{shared}/subjects"),
        &alice,
        None,
    );
    assert_eq!((status, body), (200, json!(["a-shared"])));
    let (status, body) = call(registry, "GET", "/schemas/ids/9999", &alice, None);
    assert_eq!((status, body["error_code"].clone()), (404, json!(40403)));
    let (status, body) = call(registry, "GET", "/schemas", &alice, None);
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> = body
        .as_array()
        .expect("schemas")
        .iter()
        .filter_map(|s| s["subject"].as_str())
        .collect();
    assert_eq!(listed, ["a-orders", "a-shared"]);

    // Confluent's Python client sees the same.
    let got = sr_client(registry, &alice, &[a_only, shared, b_only]);
    assert_eq!(got["subjects"], json!(["a-orders", "a-shared"]), "{got}");
    assert_eq!(got["prefixed"], json!([]), "{got}");
    assert_eq!(
        got["ids"][a_only.to_string()],
        json!({ "ok": "A" }),
        "{got}"
    );
    assert_eq!(
        got["ids"][shared.to_string()],
        json!({ "ok": "S" }),
        "{got}"
    );
    assert_eq!(
        got["ids"][b_only.to_string()],
        json!({ "status": 403, "code": 40301 }),
        "{got}"
    );
    let got = sr_client(registry, &admin, &[b_only]);
    assert_eq!(
        got["subjects"],
        json!(["a-orders", "a-shared", "b-payments", "b-shared"]),
        "{got}"
    );
    assert_eq!(
        got["ids"][b_only.to_string()],
        json!({ "ok": "B" }),
        "{got}"
    );
}

/// The event store on the HTTP listener decides per stream (`stream` ACLs, EventStoreDB's
/// per-stream `$r`/`$w`): READ+WRITE on the prefix `order-` lets alice append to and read
/// `order-1`, not `invoice-1` nor `$all`; the refused append writes nothing.
#[test]
fn event_store_streams_follow_stream_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start();
    common::seed_state(dir.path(), async |store| {
        let acls: Vec<AclBinding> = [Operation::Read, Operation::Write]
            .into_iter()
            .map(|op| {
                AclBinding::new(
                    ResourcePattern::prefixed(ResourceType::Stream, "order-"),
                    "User:alice",
                    op,
                    Permission::Allow,
                )
            })
            .collect();
        AclStore::new(store).add(&acls).await.expect("acls");
    });
    let server = serve(dir.path(), &issuer);
    let http = server.http_addr;
    let admin = issuer.token("admin", &SCOPES);
    let alice = issuer.token("alice", &SCOPES);
    let events = json!({ "events": [{ "type": "Placed", "data": { "n": 1 } }] });
    let read = |token: &str, stream: &str| {
        call(http, "GET", &format!("/v1/streams/{stream}"), token, None)
    };

    let (status, body) = call(http, "POST", "/v1/streams/order-1", &alice, Some(&events));
    assert_eq!(status, 201, "{body}");
    let (status, body) = read(&alice, "order-1");
    assert_eq!(
        (status, body["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    let (status, body) = call(http, "POST", "/v1/streams/invoice-1", &alice, Some(&events));
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("forbidden")),
        "{body}"
    );
    assert_eq!(
        body["message"],
        json!("User:alice is denied operation write on stream invoice-1")
    );
    let (status, body) = read(&alice, "$all");
    assert_eq!(status, 403, "{body}");
    // The refused append wrote nothing; the super-user reads everything.
    let (status, body) = read(&admin, "invoice-1");
    assert_eq!((status, body["events"].clone()), (200, json!([])), "{body}");
    let (status, body) = read(&admin, "$all");
    assert_eq!(
        (status, body["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
}

/// kafka-python's admin client with Kafka's ANY filters: `describe_acls` (one `acl …` line
/// per ACL; it would raise on a resource type code it does not know), then `delete_acls` of
/// everything alice has (`deleted=N`).
const KAFKA_ANY_SCRIPT: &str = r#"
import sys
from kafka.admin import (KafkaAdminClient, ACLFilter, ResourcePatternFilter, ResourceType,
    ACLOperation, ACLPermissionType, ACLResourcePatternType)
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1], client_id="any-filter",
                         request_timeout_ms=30000)
def any_filter(principal):
    return ACLFilter(principal=principal, host=None, operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
acls, err = admin.describe_acls(any_filter(None))
print(f"error={err.__name__ if isinstance(err, type) else err}", flush=True)
for a in acls:
    p = a.resource_pattern
    print(f"acl {p.resource_type.name}:{p.resource_name}:{p.pattern_type.name} {a.operation.name}", flush=True)
deleted = admin.delete_acls([any_filter("User:alice")])
print(f"deleted={sum(len(d[1]) for d in deleted)}", flush=True)
admin.close()
"#;

/// Subject and stream ACLs managed the Kafka way (issue 8): `weft acl add --subject a-
/// --prefixed` (Weft's resource type 100 over CreateAcls, as User:ANONYMOUS, a super-user,
/// on the PLAINTEXT listener) makes the registry list the `a-*` subjects to alice; `--stream`
/// (101) opens the event store's `order-*` streams; `weft acl list --subject` shows the ACL;
/// kafka-python's ANY filters neither return nor delete them; `weft acl remove --subject`
/// takes the subject ACL away.
#[test]
fn weft_acl_manages_subject_and_stream_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start();
    let server = serve(dir.path(), &issuer);
    let registry = server.registry_addr();
    let http = server.http_addr;
    let bootstrap = server.kafka_addr().to_string();
    let admin = issuer.token("admin", &SCOPES);
    let alice = issuer.token("alice", &SCOPES);
    let weft = |args: &[&str]| {
        let r = common::run_weft(dir.path(), &bootstrap, args, None);
        assert_eq!(r.code, Some(0), "weft {args:?}: {}", r.stderr);
        r.stdout
    };
    for subject in ["a-orders", "a-items", "b-payments"] {
        let (status, body) = call(
            registry,
            "POST",
            &format!("/subjects/{subject}/versions"),
            &admin,
            Some(&json!({ "schema": record("R") })),
        );
        assert_eq!(status, 200, "register {subject}: {body}");
    }
    let subjects = |token: &str| call(registry, "GET", "/subjects", token, None);
    let stream = |token: &str| call(http, "GET", "/v1/streams/order-1", token, None).0;
    // Waits (within the safety limit) until the HTTP side's ACLs satisfy `done`.
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + common::SAFETY;
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    assert_eq!(subjects(&alice), (200, json!([])));
    assert_eq!(stream(&alice), 403);

    let out = weft(&[
        "acl",
        "add",
        "--subject",
        "a-",
        "--prefixed",
        "--principal",
        "User:alice",
        "--operation",
        "read",
    ]);
    assert_eq!(
        out.trim(),
        "added: allow User:alice read subject:a- (prefixed) from *"
    );
    weft(&[
        "acl",
        "add",
        "--stream",
        "order-",
        "--prefixed",
        "--principal",
        "User:alice",
        "--operation",
        "read",
    ]);
    weft(&[
        "acl",
        "add",
        "--topic",
        "orders",
        "--principal",
        "User:alice",
        "--operation",
        "read",
    ]);
    // CREATE means nothing to the registry: refused by the broker.
    let r = common::run_weft(
        dir.path(),
        &bootstrap,
        &[
            "acl",
            "add",
            "--subject",
            "a-",
            "--principal",
            "User:alice",
            "--operation",
            "create",
        ],
        None,
    );
    assert!(
        r.code != Some(0) && r.stderr.contains("does not apply to subject ACLs"),
        "{}",
        r.stderr
    );

    until("alice lists the a- subjects", &|| {
        subjects(&alice) == (200, json!(["a-items", "a-orders"]))
    });
    until("alice reads order-1", &|| stream(&alice) == 200);

    assert_eq!(
        weft(&["acl", "list", "--subject", "a-"]).trim(),
        "allow User:alice read subject:a- (prefixed) from *"
    );
    assert_eq!(
        weft(&["acl", "list", "--stream", "order-1", "--applying"]).trim(),
        "allow User:alice read stream:order- (prefixed) from *"
    );
    // Without a resource: Kafka's types only, unless --all-types.
    assert_eq!(
        weft(&["acl", "list"]).trim(),
        "allow User:alice read topic:orders (literal) from *"
    );
    assert_eq!(
        weft(&["acl", "list", "--all-types"])
            .lines()
            .collect::<Vec<_>>(),
        [
            "allow User:alice read topic:orders (literal) from *",
            "allow User:alice read subject:a- (prefixed) from *",
            "allow User:alice read stream:order- (prefixed) from *",
        ]
    );

    // kafka-python with ANY: sees and deletes the topic ACL only.
    let output = Command::new("python3")
        .args(["-c", KAFKA_ANY_SCRIPT, &bootstrap])
        .output()
        .expect("python3 with kafka-python (cargo xtask test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kafka-python failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "error=NoError",
            "acl TOPIC:orders:LITERAL READ",
            "deleted=1"
        ],
        "{stdout}"
    );
    assert_eq!(
        weft(&["acl", "list", "--all-types", "--principal", "User:alice"])
            .lines()
            .collect::<Vec<_>>(),
        [
            "allow User:alice read subject:a- (prefixed) from *",
            "allow User:alice read stream:order- (prefixed) from *",
        ]
    );
    assert_eq!(
        subjects(&alice),
        (200, json!(["a-items", "a-orders"])),
        "the ANY delete left the subject ACL"
    );

    let out = weft(&["acl", "remove", "--subject", "a-", "--prefixed"]);
    assert_eq!(
        out.trim(),
        "removed: allow User:alice read subject:a- (prefixed) from *"
    );
    until("alice lists no subject", &|| {
        subjects(&alice) == (200, json!([]))
    });
    assert_eq!(stream(&alice), 200, "the stream ACL stays");
    assert_eq!(
        weft(&["acl", "remove", "--principal", "User:alice", "--all-types"]).trim(),
        "removed: allow User:alice read stream:order- (prefixed) from *"
    );
    until("alice may not read order-1", &|| stream(&alice) == 403);
    assert_eq!(weft(&["acl", "list", "--all-types"]).trim(), "");
}
