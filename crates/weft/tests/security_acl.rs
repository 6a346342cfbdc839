//! Kafka authorisation end to end: a real `weft serve` with `[security] authorization = true`,
//! ACLs managed through kafka-python's admin client and `weft acl` / `weft user`, and
//! produce / fetch / join / commit / create / alter denied by ACL with the protocol's error
//! and nothing written.
//!
//! Clients connect on the PLAINTEXT listener, where every connection is `User:ANONYMOUS`
//! (Kafka's principal for unauthenticated clients). ANONYMOUS is given ALTER and DESCRIBE on
//! the cluster by ACLs seeded into the state store before the server starts, so it can
//! manage ACLs through the admin APIs; every other right comes from ACLs the test creates.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Run, Server, run_weft};
use weft_auth::{AclBinding, Operation, Permission, ResourcePattern, ResourceType};

const ANON: &str = "User:ANONYMOUS";

fn ok(r: &Run) -> bool {
    r.code == Some(0)
}

/// Seeds `acls` into `dir/data/state.db`.
fn seed_acls(dir: &Path, acls: &[AclBinding]) {
    seed(dir, acls, &[]);
}

/// Seeds `acls` and SCRAM-SHA-512 users `(name, password)` into `dir/data/state.db`.
fn seed(dir: &Path, acls: &[AclBinding], users: &[(&str, &str)]) {
    common::seed_state(dir, async |store| {
        if !acls.is_empty() {
            weft_auth::store::AclStore::new(store.clone())
                .add(acls)
                .await
                .expect("seed acls");
        }
        let scram = weft_auth::store::ScramStore::new(store.clone());
        for (user, password) in users {
            let mech = weft_auth::sasl::scram::ScramMechanism::Sha512;
            let cred = weft_auth::sasl::scram::ScramCredential::generate(mech, password, 4096)
                .expect("credential");
            scram.upsert(user, mech, &cred).await.expect("seed user");
        }
    });
}

fn cluster(op: Operation) -> AclBinding {
    AclBinding::new(
        ResourcePattern::literal(ResourceType::Cluster, "kafka-cluster"),
        ANON,
        op,
        Permission::Allow,
    )
}

/// `weft serve` with authorisation on and `security` appended to `[security]`.
fn start(dir: &Path, security: &str, acls: &[AclBinding]) -> Server {
    seed_acls(dir, acls);
    std::fs::write(
        dir.join("weft.toml"),
        format!("[security]\nauthorization = true\n{security}\n"),
    )
    .expect("weft.toml");
    Server::start(dir)
}

/// Runs a kafka-python script with the bootstrap address as its argument; its stdout lines.
fn python(script: &str, bootstrap: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", script, bootstrap])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with kafka-python (cargo xtask test installs it)");
    let (status, out, err) = common::wait_with_output(&mut child, "kafka-python");
    assert!(status.success(), "kafka-python failed:\n{out}\n{err}");
    out.lines().map(str::to_owned).collect()
}

/// Prints one `name=outcome` line per step: `ok` or the exception's class name.
const ACL_FLOW: &str = r#"
import sys, time
from kafka import KafkaAdminClient, KafkaProducer, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from kafka.admin import (ACL, ACLFilter, ResourcePattern, ResourcePatternFilter, ResourceType,
    ACLOperation, ACLPermissionType, ACLResourcePatternType, NewTopic, NewPartitions,
    ConfigResource, ConfigResourceType)

bootstrap = sys.argv[1]
A = "User:ANONYMOUS"
def acl(op, rtype, name, pattern=ACLResourcePatternType.LITERAL, perm=ACLPermissionType.ALLOW):
    return ACL(principal=A, host="*", operation=op, permission_type=perm,
               resource_pattern=ResourcePattern(rtype, name, pattern))
T, G = ResourceType.TOPIC, ResourceType.GROUP
P = ACLResourcePatternType.PREFIXED
wanted = [
    acl(ACLOperation.ALL, T, "open-", P),
    # a literal allow that the prefixed deny below overrides
    acl(ACLOperation.WRITE, T, "open-secret-x"),
    acl(ACLOperation.ALL, T, "open-secret", P, ACLPermissionType.DENY),
    acl(ACLOperation.READ, T, "readonly"),
    acl(ACLOperation.CREATE, T, "readonly"),
    acl(ACLOperation.WRITE, T, "writeonly"),
    acl(ACLOperation.CREATE, T, "writeonly"),
    acl(ACLOperation.READ, G, "g-read"),
    acl(ACLOperation.DESCRIBE, G, "g-describe"),
]

def step(name, f):
    try:
        f()
        print(f"{name}=ok", flush=True)
    except Exception as e:
        print(f"{name}={type(e).__name__}", flush=True)

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="acl-test", request_timeout_ms=30000)
res = admin.create_acls(wanted)
print(f"created={len(res['succeeded'])} failed={len(res['failed'])}", flush=True)
any_filter = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
    permission_type=ACLPermissionType.ANY,
    resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
acls, err = admin.describe_acls(any_filter)
print(f"described={len(acls)} error={err.__name__ if isinstance(err, type) else err}", flush=True)
for a in sorted(acls, key=lambda a: (a.resource_pattern.resource_type, a.resource_pattern.resource_name, a.operation)):
    print(f"acl {a.permission_type.name} {a.operation.name} {a.resource_pattern.resource_type.name}:{a.resource_pattern.resource_name}:{a.resource_pattern.pattern_type.name}", flush=True)

def produce(topic):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, retries=0, max_block_ms=15000)
    try:
        p.send(topic, b"v").get(timeout=30)
    finally:
        p.close(timeout=5)

step("produce_open", lambda: produce("open-a"))
step("produce_readonly", lambda: produce("readonly"))
step("produce_secret", lambda: produce("open-secret-x"))
step("produce_writeonly", lambda: produce("writeonly"))

def read_all(topic):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      consumer_timeout_ms=3000)
    c.assign([TopicPartition(topic, 0)])
    c.seek_to_beginning()
    n = sum(1 for _ in c)
    c.close()
    return n
print(f"records_readonly={read_all('readonly')}", flush=True)
print(f"records_open={read_all('open-a')}", flush=True)
step("fetch_writeonly", lambda: read_all("writeonly"))

def join(group):
    c = KafkaConsumer("open-a", bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        c.poll(timeout_ms=10000)
        for _ in range(20):
            if c.assignment():
                break
            c.poll(timeout_ms=1000)
        if not c.assignment():
            raise RuntimeError("no assignment")
    finally:
        c.close(autocommit=False)
step("join_read", lambda: join("g-read"))
step("join_describe_only", lambda: join("g-describe"))
step("join_none", lambda: join("g-none"))

def commit(group, topic):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "", -1)})
    finally:
        c.close(autocommit=False)
step("commit_ok", lambda: commit("g-read", "open-a"))
step("commit_topic_denied", lambda: commit("g-read", "writeonly"))

step("create_open", lambda: admin.create_topics([NewTopic("open-created", 1, 1)]))
step("create_blocked", lambda: admin.create_topics([NewTopic("blocked", 1, 1)]))
step("partitions_readonly", lambda: admin.create_partitions({"readonly": NewPartitions(2)}))
def alter(topic):
    r = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "60000"})],
                            raise_on_unknown=False)
    return r["topic"][topic]
print(f"alter_open={alter('open-a')}", flush=True)
print(f"alter_readonly_denied={'TopicAuthorizationFailed' in alter('readonly')}", flush=True)

topics = admin.list_topics()
print("listed=" + ",".join(sorted(t for t in topics)), flush=True)

deleted = admin.delete_acls([ACLFilter(principal=A, host=None, operation=ACLOperation.ANY,
    permission_type=ACLPermissionType.ANY,
    resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, "open-", ACLResourcePatternType.PREFIXED))])
print(f"deleted={sum(len(d[1]) for d in deleted)}", flush=True)
step("produce_open_after_delete", lambda: produce("open-a"))
admin.close()
"#;

#[test]
fn kafka_python_manages_acls_and_they_are_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        dir.path(),
        "",
        &[cluster(Operation::Alter), cluster(Operation::Describe)],
    );
    let out = python(ACL_FLOW, &server.kafka_addr().to_string());
    let text = out.join("\n");
    let has = |line: &str| {
        assert!(
            out.iter().any(|l| l == line),
            "expected {line:?} in the kafka-python output:\n{text}"
        );
    };
    has("created=9 failed=0");
    // The two seeded cluster ACLs and the nine created.
    has("described=11 error=NoError");
    has("acl DENY ALL TOPIC:open-secret:PREFIXED");
    has("acl ALLOW WRITE TOPIC:open-secret-x:LITERAL");
    has("produce_open=ok");
    has("produce_readonly=TopicAuthorizationFailedError");
    // The prefixed deny beats the literal allow.
    has("produce_secret=TopicAuthorizationFailedError");
    has("produce_writeonly=ok");
    // Nothing written where WRITE was denied; what was allowed is there.
    has("records_readonly=0");
    has("records_open=1");
    has("fetch_writeonly=TopicAuthorizationFailedError");
    has("join_read=ok");
    has("join_describe_only=GroupAuthorizationFailedError");
    has("join_none=GroupAuthorizationFailedError");
    has("commit_ok=ok");
    has("commit_topic_denied=TopicAuthorizationFailedError");
    has("create_open=ok");
    has("create_blocked=TopicAuthorizationFailedError");
    has("partitions_readonly=TopicAuthorizationFailedError");
    has("alter_open=OK");
    has("alter_readonly_denied=True");
    // Metadata lists only what ANONYMOUS may describe ("blocked" was never created).
    has("listed=open-a,open-created,readonly,writeonly");
    has("deleted=1");
    has("produce_open_after_delete=TopicAuthorizationFailedError");
    // The server logs every denial with principal, operation and resource.
    drop(out);
    let (_, rest) = {
        let mut server = server;
        server.kill().expect("kill");
        server.wait()
    };
    assert!(
        rest.iter().any(|l| l.contains("authorization denied")
            && l.contains("User:ANONYMOUS")
            && l.contains("\"reason\":\"DeniedByAcl\"")
            && l.contains("\"resource\":\"open-secret-x\"")),
        "no denial log line for the prefixed deny:\n{}",
        rest.join("\n")
    );
}

#[test]
fn super_user_is_allowed_everything_without_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "super_users = [\"User:ANONYMOUS\"]", &[]);
    let bootstrap = server.kafka_addr().to_string();
    let r = run_weft(
        dir.path(),
        &bootstrap,
        &["topic", "create", "su-topic"],
        None,
    );
    assert!(ok(&r), "{}", r.stderr);
    let r = run_weft(
        dir.path(),
        &bootstrap,
        &["produce", "su-topic"],
        Some("a\nb\n"),
    );
    assert!(ok(&r), "{}", r.stderr);
    let r = run_weft(
        dir.path(),
        &bootstrap,
        &[
            "acl",
            "add",
            "--topic",
            "t",
            "--principal",
            "User:bob",
            "--operation",
            "read",
        ],
        None,
    );
    assert!(ok(&r), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("added: allow User:bob read topic:t (literal) from *"),
        "{}",
        r.stderr
    );
}

#[test]
fn weft_acl_and_user_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    // DESCRIBE on the cluster only: listing works, changing is refused.
    let server = start(dir.path(), "", &[cluster(Operation::Describe)]);
    let bootstrap = server.kafka_addr().to_string();
    let weft = |args: &[&str]| run_weft(dir.path(), &bootstrap, args, None);

    let r = weft(&[
        "acl",
        "add",
        "--group",
        "g",
        "--principal",
        "User:bob",
        "--operation",
        "read",
    ]);
    assert!(!ok(&r), "{}", r.stderr);
    assert!(
        r.stderr.contains("ClusterAuthorizationFailed"),
        "{}",
        r.stderr
    );
    let r = weft(&["acl", "list"]);
    assert!(ok(&r), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "allow User:ANONYMOUS describe cluster:kafka-cluster (literal) from *"
    );

    // Granting ALTER on the cluster (through the store, as an operator would with a
    // super-user) is picked up by the running broker's reload.
    seed_acls(dir.path(), &[cluster(Operation::Alter)]);
    let mut added = None;
    for _ in 0..50 {
        let r = weft(&[
            "acl",
            "add",
            "--topic",
            "orders-",
            "--prefixed",
            "--principal",
            "User:bob",
            "--operation",
            "read",
            "--operation",
            "describe",
            "--deny",
        ]);
        if ok(&r) {
            added = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = added.expect("ALTER on the cluster reached the broker");
    assert!(
        r.stdout
            .contains("added: deny User:bob read topic:orders- (prefixed) from *"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout
            .contains("added: deny User:bob describe topic:orders- (prefixed) from *"),
        "{}",
        r.stderr
    );

    // Every ACL that applies to topic orders-eu: the prefixed ones.
    let r = weft(&["acl", "list", "--topic", "orders-eu", "--applying"]);
    assert!(ok(&r), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stderr);
    let r = weft(&["acl", "list", "--principal", "User:nobody"]);
    assert!(ok(&r) && r.stdout.trim().is_empty(), "{}", r.stderr);

    let r = weft(&["acl", "remove"]);
    assert!(!ok(&r), "remove without a filter must be refused");
    let r = weft(&[
        "acl",
        "remove",
        "--topic",
        "orders-",
        "--prefixed",
        "--operation",
        "read",
    ]);
    assert!(ok(&r), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "removed: deny User:bob read topic:orders- (prefixed) from *"
    );

    // SCRAM users: stored salted and hashed, listed by mechanism, removed.
    let r = run_weft(
        dir.path(),
        &bootstrap,
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--iterations",
            "4096",
        ],
        Some("s3cret\n"),
    );
    assert!(ok(&r), "{}", r.stderr);
    let r = weft(&["user", "list"]);
    assert!(ok(&r), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "alice SCRAM-SHA-256 (4096 iterations), SCRAM-SHA-512 (4096 iterations)"
    );
    let r = weft(&[
        "user",
        "add",
        "bob",
        "--password-stdin",
        "--iterations",
        "100",
    ]);
    assert!(!ok(&r), "{}", r.stderr);
    let r = run_weft(
        dir.path(),
        &bootstrap,
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--iterations",
            "100",
        ],
        Some("pw\n"),
    );
    assert!(
        !ok(&r) && r.stderr.contains("UnacceptableCredential"),
        "{}",
        r.stderr
    );
    let r = weft(&["user", "list", "nobody"]);
    assert!(
        !ok(&r) && r.stderr.contains("ResourceNotFound"),
        "{}",
        r.stderr
    );
    let r = weft(&["user", "remove", "alice"]);
    assert!(ok(&r), "{}", r.stderr);
    let r = weft(&["user", "list"]);
    assert!(ok(&r) && r.stdout.trim().is_empty(), "{}", r.stderr);
}

/// Over SASL: the principal is the authenticated user. `User:admin` is a super-user and
/// grants `User:alice` WRITE through kafka-python's admin client; alice's produce is refused
/// before and accepted after, and `User:bob` stays refused.
const SASL_FLOW: &str = r#"
import sys
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ACL, ResourcePattern, ResourceType, ACLOperation, ACLPermissionType, ACLResourcePatternType

bootstrap = sys.argv[1]
def sasl(user):
    return dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                sasl_plain_password=user + "-pw")
def produce(user):
    try:
        p = KafkaProducer(acks=1, retries=0, max_block_ms=15000, **sasl(user))
        try:
            p.send("payments", b"v").get(timeout=30)
        finally:
            p.close(timeout=5)
        return "ok"
    except Exception as e:
        return type(e).__name__
print(f"alice_before={produce('alice')}", flush=True)
admin = KafkaAdminClient(client_id="acl-sasl", **sasl("admin"))
res = admin.create_acls([ACL(principal="User:alice", host="*", operation=op,
    permission_type=ACLPermissionType.ALLOW,
    resource_pattern=ResourcePattern(ResourceType.TOPIC, "payments", ACLResourcePatternType.LITERAL))
    for op in (ACLOperation.WRITE, ACLOperation.CREATE)])
print(f"created={len(res['succeeded'])}", flush=True)
admin.close()
print(f"alice_after={produce('alice')}", flush=True)
print(f"bob={produce('bob')}", flush=True)
"#;

#[test]
fn sasl_principals_are_authorised() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed(
        dir.path(),
        &[],
        &[
            ("admin", "admin-pw"),
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
        ],
    );
    std::fs::write(
        dir.path().join("weft.toml"),
        "[security]\nauthorization = true\nsuper_users = [\"User:admin\"]\n\
         listeners = [\"SASL_PLAINTEXT://127.0.0.1:0\"]\n",
    )
    .expect("weft.toml");
    let server = Server::start(dir.path());
    let listeners = server
        .ready_field("kafka_listeners")
        .expect("kafka_listeners in the ready line");
    let sasl = listeners
        .split(',')
        .find_map(|l| l.strip_prefix("SASL_PLAINTEXT://"))
        .unwrap_or_else(|| panic!("no SASL_PLAINTEXT listener in {listeners}"))
        .to_owned();
    let out = python(SASL_FLOW, &sasl);
    assert_eq!(
        out,
        [
            "alice_before=TopicAuthorizationFailedError",
            "created=2",
            "alice_after=ok",
            "bob=TopicAuthorizationFailedError",
        ],
    );
}

/// `weft serve` with authorisation on, `User:admin` a super-user, `users` seeded (SCRAM-SHA-512)
/// and one listener `protocol://127.0.0.1:0`; `tables` is appended to `weft.toml`. Returns
/// the server and the listener's bound address.
fn start_sasl(
    dir: &Path,
    protocol: &str,
    acls: &[AclBinding],
    users: &[(&str, &str)],
    tables: &str,
) -> (Server, String) {
    seed(dir, acls, users);
    std::fs::write(
        dir.join("weft.toml"),
        format!(
            "[security]\nauthorization = true\nsuper_users = [\"User:admin\"]\n\
             listeners = [\"{protocol}://127.0.0.1:0\"]\n{tables}"
        ),
    )
    .expect("weft.toml");
    let server = Server::start(dir);
    let listeners = server
        .ready_field("kafka_listeners")
        .expect("kafka_listeners in the ready line");
    let addr = listeners
        .split(',')
        .find_map(|l| l.strip_prefix(&format!("{protocol}://")))
        .unwrap_or_else(|| panic!("no {protocol} listener in {listeners}"))
        .to_owned();
    (server, addr)
}

/// Idempotent producers (kafka-python, `enable_idempotence=True`) as four users. The topic
/// is created by the super-user; each user then sends three records and the outcome is the
/// exception's class name. Finally the records of the topic as the super-user reads them.
const IDEMPOTENT_FLOW: &str = r#"
import sys
from kafka import KafkaAdminClient, KafkaProducer, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

bootstrap = sys.argv[1]
def sasl(user):
    return dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                sasl_plain_password=user + "-pw")
admin = KafkaAdminClient(client_id="idem-admin", **sasl("admin"))
admin.create_topics([NewTopic("idem", 1, 1)])
admin.close()
def produce(user):
    try:
        p = KafkaProducer(enable_idempotence=True, max_block_ms=15000, **sasl(user))
        try:
            for i in range(3):
                p.send("idem", f"{user}-{i}".encode()).get(timeout=30)
        finally:
            p.close(timeout=5)
        return "ok"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
for user in ("alice", "bob", "carol", "dave"):
    print(f"{user}={produce(user)}", flush=True)
c = KafkaConsumer(group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=3000,
                  **sasl("admin"))
c.assign([TopicPartition("idem", 0)])
c.seek_to_beginning()
print("records=" + ",".join(m.value.decode() for m in c), flush=True)
c.close()
"#;

/// InitProducerId without a transactional id is authorised as KafkaApis does it:
/// IDEMPOTENT_WRITE on the cluster, or else (KIP-679) WRITE on any topic. alice has
/// IDEMPOTENT_WRITE and WRITE on the one topic and produces; bob only WRITE on the topic
/// (KIP-679) and produces too. carol and dave may only describe the topic: carol, with
/// IDEMPOTENT_WRITE, gets her producer id and is refused at Produce
/// (TOPIC_AUTHORIZATION_FAILED); dave, without it, is refused at InitProducerId
/// (CLUSTER_AUTHORIZATION_FAILED). Neither writes anything.
#[test]
fn idempotent_producers_need_idempotent_write_or_write_on_a_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = |user: &str, op| {
        AclBinding::new(
            ResourcePattern::literal(ResourceType::Topic, "idem"),
            format!("User:{user}"),
            op,
            Permission::Allow,
        )
    };
    let idempotent_write = |user: &str| {
        AclBinding::new(
            ResourcePattern::literal(ResourceType::Cluster, "kafka-cluster"),
            format!("User:{user}"),
            Operation::IdempotentWrite,
            Permission::Allow,
        )
    };
    let acls = [
        idempotent_write("alice"),
        topic("alice", Operation::Write),
        topic("bob", Operation::Write),
        idempotent_write("carol"),
        topic("carol", Operation::Describe),
        topic("dave", Operation::Describe),
    ];
    let users: Vec<(&str, String)> = ["admin", "alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| (*u, format!("{u}-pw")))
        .collect();
    let users: Vec<(&str, &str)> = users.iter().map(|(u, p)| (*u, p.as_str())).collect();
    let (_server, addr) = start_sasl(dir.path(), "SASL_PLAINTEXT", &acls, &users, "");
    let out = python(IDEMPOTENT_FLOW, &addr);
    let text = out.join("\n");
    assert_eq!(out.len(), 5, "{text}");
    assert_eq!(out[0], "alice=ok", "{text}");
    assert_eq!(out[1], "bob=ok", "{text}");
    // carol got a producer id (IDEMPOTENT_WRITE): Produce is what refuses her.
    assert!(
        out[2].starts_with("carol=TopicAuthorizationFailedError"),
        "{text}"
    );
    // dave did not: kafka-python reports InitProducerId's CLUSTER_AUTHORIZATION_FAILED.
    assert!(
        out[3].starts_with("dave=")
            && out[3].contains("InitProducerId")
            && out[3].contains("ClusterAuthorizationFailedError"),
        "{text}"
    );
    assert_eq!(
        out[4], "records=alice-0,alice-1,alice-2,bob-0,bob-1,bob-2",
        "{text}"
    );
}

/// A Kafka client properties file, as `--command-config` takes it.
fn properties(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("properties file");
    path.display().to_string()
}

/// `weft acl` and `weft user` over a SASL_SSL listener with `--command-config` (SCRAM-SHA-512,
/// the `weft dev-certs` CA), as Kafka's tools are used against a secured cluster; and the
/// ways it must fail: wrong password, untrusted CA, plaintext against the TLS port.
#[test]
fn acl_and_user_commands_over_sasl_ssl_with_a_command_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let r = run_weft(
        dir.path(),
        "unused:0",
        &[
            "dev-certs",
            "--dir",
            certs.to_str().expect("utf-8"),
            "--hosts",
            "127.0.0.1",
        ],
        None,
    );
    assert!(ok(&r), "{}", r.stderr);
    let tls = format!(
        "[security.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        certs.join("server.pem").display(),
        certs.join("server.key").display()
    );
    let (_server, addr) = start_sasl(dir.path(), "SASL_SSL", &[], &[("admin", "admin-pw")], &tls);
    let ca = certs.join("ca.pem").display().to_string();
    let config = |user: &str, password: &str, ca: &str| {
        vec![
            "# weft acl/user against the SASL_SSL listener".to_owned(),
            "security.protocol=SASL_SSL".to_owned(),
            "sasl.mechanism=SCRAM-SHA-512".to_owned(),
            format!("sasl.username={user}"),
            format!("sasl.password={password}"),
            format!("ssl.ca.location={ca}"),
        ]
    };
    let admin = properties(
        dir.path(),
        "admin.properties",
        &config("admin", "admin-pw", &ca),
    );
    let weft = |file: &str, args: &[&str], stdin: Option<&str>| {
        // `weft acl --command-config <file> list`: the client options follow the command.
        let mut all = vec![args[0], "--command-config", file];
        all.extend_from_slice(&args[1..]);
        run_weft(dir.path(), &addr, &all, stdin)
    };

    // Over SASL_SSL as the super-user: ACLs added and listed, a user created.
    let r = weft(
        &admin,
        &[
            "acl",
            "add",
            "--cluster",
            "--principal",
            "User:bob",
            "--operation",
            "idempotent-write",
        ],
        None,
    );
    assert!(ok(&r), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "added: allow User:bob idempotent-write cluster:kafka-cluster (literal) from *"
    );
    let r = weft(&admin, &["acl", "list"], None);
    assert!(ok(&r), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "allow User:bob idempotent-write cluster:kafka-cluster (literal) from *"
    );
    // IDEMPOTENT_WRITE on a topic is refused (a cluster operation).
    let r = weft(
        &admin,
        &[
            "acl",
            "add",
            "--topic",
            "t",
            "--principal",
            "User:bob",
            "--operation",
            "idempotent-write",
        ],
        None,
    );
    assert!(
        !ok(&r) && r.stderr.contains("InvalidRequest"),
        "{}",
        r.stderr
    );
    let r = weft(
        &admin,
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--mechanism",
            "SCRAM-SHA-512",
        ],
        Some("bob-pw\n"),
    );
    assert!(ok(&r), "{}", r.stderr);
    let r = weft(&admin, &["user", "list"], None);
    assert!(ok(&r), "{}", r.stderr);
    assert!(r.stdout.contains("bob SCRAM-SHA-512"), "{}", r.stdout);

    // bob's new credential authenticates (the refusal is authorisation's, not SASL's).
    let bob = properties(dir.path(), "bob.properties", &config("bob", "bob-pw", &ca));
    let r = weft(&bob, &["acl", "list"], None);
    assert!(
        !ok(&r) && r.stderr.contains("ClusterAuthorizationFailed"),
        "{}",
        r.stderr
    );
    // PLAIN checks the same stored credential.
    let r = weft(&bob, &["acl", "-X", "sasl.mechanism=PLAIN", "list"], None);
    assert!(
        !ok(&r) && r.stderr.contains("ClusterAuthorizationFailed"),
        "{}",
        r.stderr
    );
    // -X overrides the file: a wrong password is refused by SASL.
    let r = weft(&bob, &["acl", "-X", "sasl.password=nope", "list"], None);
    assert!(
        !ok(&r)
            && r.stderr.contains("SASL authentication")
            && r.stderr.contains("SaslAuthenticationFailed"),
        "{}",
        r.stderr
    );
    // A CA that did not sign the listener's certificate: the TLS handshake fails.
    let other = dir.path().join("other-certs");
    let r = run_weft(
        dir.path(),
        "unused:0",
        &["dev-certs", "--dir", other.to_str().expect("utf-8")],
        None,
    );
    assert!(ok(&r), "{}", r.stderr);
    let untrusted = properties(
        dir.path(),
        "untrusted.properties",
        &config(
            "admin",
            "admin-pw",
            &other.join("ca.pem").display().to_string(),
        ),
    );
    let r = weft(&untrusted, &["acl", "list"], None);
    assert!(
        !ok(&r) && r.stderr.contains("TLS handshake"),
        "{}",
        r.stderr
    );
    // The librdkafka commands take the same file: a short bench over SASL_SSL, labelled.
    let r = weft(
        &admin,
        &[
            "bench",
            "produce",
            "--records",
            "200",
            "--record-size",
            "64",
        ],
        None,
    );
    assert!(ok(&r), "{}", r.stderr);
    assert!(r.stdout.contains("SASL_SSL/SCRAM-SHA-512"), "{}", r.stdout);
    assert!(
        r.stdout.contains("(200 records, 12800 bytes"),
        "{}",
        r.stdout
    );
    // produce-raw writes a plain socket: refused rather than sent in clear.
    let r = weft(&admin, &["bench", "produce-raw", "--records", "10"], None);
    assert!(
        !ok(&r) && r.stderr.contains("PLAINTEXT only"),
        "{}",
        r.stderr
    );
    // No command config: plaintext against the TLS port gets no Kafka answer.
    let r = run_weft(dir.path(), &addr, &["acl", "list"], None);
    assert!(!ok(&r), "{}", r.stdout);
    // Nothing was added by the refused attempts.
    let r = weft(&admin, &["acl", "list"], None);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
}
