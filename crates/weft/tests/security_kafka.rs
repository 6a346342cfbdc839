//! SASL on the Kafka listener, end to end: a real `weft serve` with a `[security]`
//! SASL_PLAINTEXT listener beside the PLAINTEXT one, driven by clients written by others
//! (kafka-python, kcat/librdkafka) and by raw protocol frames where a client would hide the
//! answer (error codes, closed connections, KIP-368 lifetimes, handshake v0).
//!
//! Users are seeded into the state store with weft-auth's ScramStore before the server
//! starts (one credential per SCRAM mechanism; PLAIN verifies against them).

mod common;
mod oidc_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{SAFETY, Server};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};

const USER: &str = "alice";
const PASSWORD: &str = "alice-secret";

/// Seeds `users` (name, password) with both SCRAM mechanisms into `dir/data/state.db`.
fn seed_users(dir: &Path, users: &[(&str, &str)]) {
    common::seed_state(dir, async |store| {
        let scram = weft_auth::store::ScramStore::new(store.clone());
        for (user, password) in users {
            for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                let cred = ScramCredential::derive(mech, password, b"test-salt-0123456789", 4096);
                scram.upsert(user, mech, &cred).await.expect("upsert");
            }
        }
    });
}

/// A `weft serve` with a SASL_PLAINTEXT listener (and others); `security` is appended to
/// `[security]`.
struct Sasl {
    dir: tempfile::TempDir,
    server: Server,
    /// The SASL_PLAINTEXT listener.
    sasl: SocketAddr,
    /// `PROTOCOL://address` of every `[security]` listener, from the `ready` line.
    listeners: String,
}

impl Sasl {
    fn start(security: &str) -> Sasl {
        Sasl::start_with(&["SASL_PLAINTEXT"], security, |_| String::new())
    }

    /// Listeners of `protocols` on ephemeral ports; `tables` runs on the directory before
    /// the server starts (certificates) and returns sub-tables such as `[security.tls]`.
    fn start_with(
        protocols: &[&str],
        security: &str,
        tables: impl FnOnce(&Path) -> String,
    ) -> Sasl {
        let dir = tempfile::tempdir().expect("tempdir");
        seed_users(dir.path(), &[(USER, PASSWORD), ("bob", "bob-secret")]);
        let tables = tables(dir.path());
        let listeners: Vec<String> = protocols
            .iter()
            .map(|p| format!("\"{p}://127.0.0.1:0\""))
            .collect();
        std::fs::write(
            dir.path().join("weft.toml"),
            format!(
                "[security]\nlisteners = [{}]\n{security}\n{tables}",
                listeners.join(", ")
            ),
        )
        .expect("weft.toml");
        let server = Server::start(dir.path());
        let listeners = server
            .ready_field("kafka_listeners")
            .expect("kafka_listeners in the ready line");
        let mut s = Sasl {
            dir,
            server,
            sasl: "0.0.0.0:0".parse().expect("addr"),
            listeners,
        };
        if protocols.contains(&"SASL_PLAINTEXT") {
            s.sasl = s.addr("SASL_PLAINTEXT");
        }
        s
    }

    /// The bound address of the listener with `protocol`.
    fn addr(&self, protocol: &str) -> SocketAddr {
        self.listeners
            .split(',')
            .find_map(|l| l.strip_prefix(&format!("{protocol}://")))
            .unwrap_or_else(|| panic!("no {protocol} listener in {:?}", self.listeners))
            .parse()
            .expect("listener address")
    }

    fn plain(&self) -> String {
        self.server.kafka_addr().to_string()
    }
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdin.take());
    let (status, out, err) = common::wait_with_output(&mut child, "client");
    (status.success(), out, err)
}

/// kcat with `args` and SASL settings; `input` goes to its stdin.
fn kcat(
    bootstrap: &str,
    sasl: Option<(&str, &str, &str)>,
    args: &[&str],
    input: &str,
) -> (bool, String, String) {
    let mut cmd = Command::new("kcat");
    // `cargo test` points LD_LIBRARY_PATH at rdkafka-sys's own librdkafka (built without
    // SSL, so without SCRAM): kcat must load the system library it was built against.
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.args(["-b", bootstrap, "-X", "api.version.request=true"]);
    if let Some((mech, user, password)) = sasl {
        cmd.args(["-X", "security.protocol=SASL_PLAINTEXT"])
            .args(["-X", &format!("sasl.mechanisms={mech}")])
            .args(["-X", &format!("sasl.username={user}")])
            .args(["-X", &format!("sasl.password={password}")]);
    }
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = common::spawn_kcat(&mut cmd, input);
    let (status, out, err) = common::wait_with_output(&mut child, "kcat");
    (status.success(), out, err)
}

/// The records of `topic` read through the PLAINTEXT listener (none when it does not exist).
fn records_via_plaintext(s: &Sasl, topic: &str) -> Vec<String> {
    let (_, out, _) = kcat(
        &s.plain(),
        None,
        &[
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-m",
            "10",
            "-X",
            "topic.auto.offset.reset=earliest",
        ],
        "",
    );
    out.lines().map(str::to_owned).collect()
}

const KAFKA_PYTHON: &str = r#"
import logging, sys
from kafka import KafkaProducer, KafkaConsumer
# Authentication errors are logged by the connection, then bootstrap times out. The long
# bootstrap timeout only matters on a loaded machine (a first attempt that times out before
# authenticating is retried); with the right password bootstrap returns at once.
logging.basicConfig(level=logging.ERROR)
bootstrap, mech, user, password, topic = sys.argv[1:6]
common = dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
              sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=password,
              bootstrap_timeout_ms=45000)
p = KafkaProducer(**common)
for i in range(3):
    p.send(topic, f"{mech}-{i}".encode()).get(timeout=60)
p.close()
c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000,
                  group_id=None, **common)
got = []
for m in c:
    got.append(m.value.decode())
    if len(got) == 3:
        break
c.close()
print(",".join(got))
"#;

fn kafka_python(
    bootstrap: SocketAddr,
    mech: &str,
    user: &str,
    password: &str,
    topic: &str,
) -> (bool, String, String) {
    run(Command::new("python3").args([
        "-c",
        KAFKA_PYTHON,
        &bootstrap.to_string(),
        mech,
        user,
        password,
        topic,
    ]))
}

#[test]
fn kafka_python_plain_and_scram_produce_and_consume() {
    let s = Sasl::start("");
    for (mech, topic) in [
        ("PLAIN", "kp-plain"),
        ("SCRAM-SHA-256", "kp-scram256"),
        ("SCRAM-SHA-512", "kp-scram512"),
    ] {
        let (ok, out, err) = kafka_python(s.sasl, mech, USER, PASSWORD, topic);
        assert!(ok, "kafka-python {mech} failed:\n{out}\n{err}");
        assert_eq!(out.trim(), format!("{mech}-0,{mech}-1,{mech}-2"), "{err}");
        assert_eq!(records_via_plaintext(&s, topic).len(), 3);
    }
}

#[test]
fn kcat_scram_and_plain_produce_and_consume_and_metadata_names_the_sasl_listener() {
    // Debian's kcat links librdkafka 2.0.2, whose SCRAM client-final repeats the client nonce
    // (fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895); weft-auth accepts exactly
    // that form, as Kafka 3.8.1–3.9 did. Produce with SCRAM-SHA-512, consume with PLAIN.
    let s = Sasl::start("");
    let bootstrap = s.sasl.to_string();
    let scram = Some(("SCRAM-SHA-512", USER, PASSWORD));
    let auth = Some(("PLAIN", USER, PASSWORD));
    let (ok, out, err) = kcat(&bootstrap, scram, &["-P", "-t", "kcat-scram"], "one\ntwo\n");
    assert!(ok, "kcat produce (SCRAM-SHA-512) failed:\n{out}\n{err}");
    let (ok, out, err) = kcat(
        &bootstrap,
        auth,
        &["-C", "-t", "kcat-scram", "-o", "beginning", "-e", "-q"],
        "",
    );
    assert!(ok, "kcat consume failed:\n{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["one", "two"]);
    // /readyz probes the SASL listener too.
    let (status, body) = common::http_get(s.server.http_addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("listener:kafka-sasl_plaintext"), "{body}");
    // Metadata through the SASL listener advertises the SASL listener, not kafka_listen.
    let (ok, out, err) = kcat(&bootstrap, auth, &["-L", "-J"], "");
    assert!(ok, "kcat -L failed:\n{err}");
    assert!(
        out.contains(&format!("\"name\":\"{}\"", s.sasl)),
        "metadata should name {}: {out}",
        s.sasl
    );
}

#[test]
fn wrong_password_is_refused_and_nothing_is_written() {
    let s = Sasl::start("");
    let (ok, out, err) = kafka_python(
        s.sasl,
        "SCRAM-SHA-512",
        USER,
        "not-the-password",
        "wrong-pw",
    );
    assert!(!ok, "kafka-python with a wrong password succeeded:\n{out}");
    assert!(
        err.contains("SaslAuthenticationFailed") || err.contains("Authentication failed"),
        "{err}"
    );
    let (ok, _, err) = kcat(
        &s.sasl.to_string(),
        Some(("PLAIN", USER, "wrong")),
        &["-P", "-t", "wrong-pw", "-X", "message.timeout.ms=5000"],
        "x\n",
    );
    assert!(!ok, "kcat with a wrong password succeeded");
    assert!(
        err.contains("Authentication failed") || err.contains("SASL"),
        "{err}"
    );
    assert!(records_via_plaintext(&s, "wrong-pw").is_empty());

    // The protocol's answer: SASL_AUTHENTICATION_FAILED with a message, then the close.
    for mech in ["PLAIN", "SCRAM-SHA-256"] {
        let mut c = Raw::connect(s.sasl);
        assert_eq!(c.handshake(1, mech).error_code, 0);
        let first = if mech == "PLAIN" {
            format!("\0{USER}\0wrong").into_bytes()
        } else {
            format!("n,,n={USER},r=abcdefghijklmnop").into_bytes()
        };
        let mut r = c.authenticate(2, &first);
        if mech != "PLAIN" {
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
            let server_first = String::from_utf8(r.auth_bytes.to_vec()).expect("utf8");
            let nonce = server_first
                .split(',')
                .find_map(|p| p.strip_prefix("r="))
                .expect("nonce");
            let proof = base64_encode(&[0u8; 32]);
            let fin = format!("c=biws,r={nonce},p={proof}");
            r = c.authenticate(2, fin.as_bytes());
        }
        assert_eq!(r.error_code, 58, "{mech}: SASL_AUTHENTICATION_FAILED");
        let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains("authentication failed"), "{message}");
        assert!(
            !message.contains("wrong"),
            "the password must not echo: {message}"
        );
        assert!(
            c.closed(),
            "{mech}: connection must close after a failed authentication"
        );
    }
}

/// kafka-python connecting with a mechanism the broker does not enable: the first error it
/// reports (its connection logs it, then bootstrap would retry) is printed and the script
/// exits at once with status 3. Before the broker delayed the close of a refused
/// authentication, kafka-python sometimes saw the close first and reported a lost connection.
const KAFKA_PYTHON_FIRST_ERROR: &str = r#"
import logging, os, sys
from kafka import KafkaProducer
class FirstError(logging.Handler):
    def emit(self, record):
        print(f"first error: {record.getMessage()}", file=sys.stderr, flush=True)
        os._exit(3)
logging.getLogger().addHandler(FirstError(level=logging.ERROR))
bootstrap, mech, user, password = sys.argv[1:5]
KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
              sasl_mechanism=mech, sasl_plain_username=user, sasl_plain_password=password,
              bootstrap_timeout_ms=45000)
print("connected")
"#;

#[test]
fn mechanism_not_enabled_gets_the_enabled_list() {
    let s = Sasl::start("sasl_mechanisms = [\"PLAIN\", \"SCRAM-SHA-512\"]");
    let mut c = Raw::connect(s.sasl);
    let r = c.handshake(1, "SCRAM-SHA-256");
    assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let listed: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(listed, ["PLAIN", "SCRAM-SHA-512"]);
    assert!(c.closed());
    // kafka-python's first error is the refusal itself, not a lost connection or a bootstrap
    // timeout.
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        KAFKA_PYTHON_FIRST_ERROR,
        &s.sasl.to_string(),
        "SCRAM-SHA-256",
        USER,
        PASSWORD,
    ]));
    assert!(!ok, "{out}");
    let first = err
        .lines()
        .find_map(|l| l.strip_prefix("first error: "))
        .unwrap_or_else(|| panic!("kafka-python reported no error:\n{err}"));
    assert!(first.contains("UnsupportedSaslMechanism"), "{err}");
}

#[test]
fn requests_before_authentication_close_the_connection_and_write_nothing() {
    let s = Sasl::start("");
    // Metadata: closed without an answer.
    let mut c = Raw::connect(s.sasl);
    c.send(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert!(c.closed(), "metadata before authentication must close");
    // Produce: closed, nothing appended (the topic is not even created).
    let mut c = Raw::connect(s.sasl);
    c.send(ApiKey::Produce, 9, &produce_request("unauthenticated"));
    assert!(c.closed(), "produce before authentication must close");
    // After a handshake but before SaslAuthenticate completes: the same.
    let mut c = Raw::connect(s.sasl);
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    c.send(ApiKey::Produce, 9, &produce_request("unauthenticated"));
    assert!(c.closed(), "produce mid-exchange must close");
    assert!(records_via_plaintext(&s, "unauthenticated").is_empty());
    // The PLAINTEXT listener answers SASL requests with ILLEGAL_SASL_STATE and stays open.
    let mut c = Raw::connect(s.server.kafka_addr());
    assert_eq!(c.handshake(1, "PLAIN").error_code, 34);
    let md: MetadataResponse = c.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert_eq!(md.brokers[0].port, i32::from(s.server.kafka_addr().port()));
}

#[test]
fn handshake_v0_exchanges_raw_tokens() {
    let s = Sasl::start("");
    // PLAIN: the raw token, an empty raw answer, then ordinary requests.
    let mut c = Raw::connect(s.sasl);
    assert_eq!(c.handshake(0, "PLAIN").error_code, 0);
    c.raw_send(format!("\0{USER}\0{PASSWORD}").as_bytes());
    assert_eq!(c.raw_recv(), Vec::<u8>::new());
    let md: MetadataResponse = c.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert_eq!(md.brokers[0].port, i32::from(s.sasl.port()));
    // A wrong password: v0 has no error frame, the connection closes.
    let mut c = Raw::connect(s.sasl);
    assert_eq!(c.handshake(0, "PLAIN").error_code, 0);
    c.raw_send(format!("\0{USER}\0nope").as_bytes());
    assert!(c.closed());
}

#[test]
fn session_lifetime_reauthentication_and_expiry() {
    // KIP-368 with connections.max.reauth.ms: the lifetime is told, re-authentication on the
    // live connection works, a session not renewed is closed on its next request.
    let s = Sasl::start("connections_max_reauth_ms = 3000");
    let mut c = Raw::connect(s.sasl);
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    let r = c.authenticate(2, format!("\0{USER}\0{PASSWORD}").as_bytes());
    assert_eq!(r.error_code, 0);
    assert!(
        r.session_lifetime_ms > 0 && r.session_lifetime_ms <= 3000,
        "{}",
        r.session_lifetime_ms
    );
    // SaslAuthenticate v0 carries no lifetime field; v1 does.
    let _: MetadataResponse = c.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    let r = c.authenticate(1, format!("\0{USER}\0{PASSWORD}").as_bytes());
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!(r.session_lifetime_ms > 0);
    let _: MetadataResponse = c.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    // Re-authenticating as someone else is refused and closes.
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    let r = c.authenticate(2, b"\0bob\0bob-secret");
    assert_eq!(r.error_code, 58);
    assert!(c.closed());
    // A session left to expire: the next request closes the connection.
    let mut c = Raw::connect(s.sasl);
    assert_eq!(c.handshake(1, "PLAIN").error_code, 0);
    let r = c.authenticate(2, format!("\0{USER}\0{PASSWORD}").as_bytes());
    std::thread::sleep(Duration::from_millis(r.session_lifetime_ms as u64 + 500));
    c.send(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert!(
        c.closed(),
        "an expired session must be closed on its next request"
    );
    drop(s.dir);
}

/// `weft dev-certs`' generator: a CA and a server certificate for 127.0.0.1 in `dir/certs`,
/// and the `[security.tls]` table using them.
fn dev_certs(dir: &Path) -> String {
    let files = weft_tls::dev::write_dev_certs(
        &dir.join("certs"),
        &["127.0.0.1".to_owned(), "localhost".to_owned()],
        "client",
    )
    .expect("dev certs");
    format!(
        "[security.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        files.server_cert.display(),
        files.server_key.display()
    )
}

fn ca_file(s: &Sasl) -> String {
    s.dir.path().join("certs/ca.pem").display().to_string()
}

/// librdkafka (the rdkafka crate's build, with OpenSSL) settings for `protocol`.
fn rdkafka_config(
    bootstrap: SocketAddr,
    protocol: &str,
    mechanism: &str,
    password: &str,
    ca: &str,
) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap.to_string())
        .set("security.protocol", protocol)
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", USER)
        .set("sasl.password", password)
        .set("message.timeout.ms", "20000");
    if !ca.is_empty() {
        c.set("ssl.ca.location", ca);
    }
    c
}

/// Produces `values` to `topic` and reads them back from the beginning, both with `config`.
fn rdkafka_roundtrip(config: &rdkafka::ClientConfig, topic: &str, values: &[&str]) -> Vec<String> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = config.create().expect("producer");
    for v in values {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(*v))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    producer.flush(SAFETY).expect("every record acknowledged");
    let mut c = config.clone();
    c.set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + SAFETY;
    while got.len() < values.len() && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.expect("message");
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    got
}

#[test]
fn rdkafka_scram_sha512_over_sasl_plaintext_and_sasl_ssl() {
    let s = Sasl::start_with(&["SASL_PLAINTEXT", "SASL_SSL"], "", dev_certs);
    let ca = ca_file(&s);
    for (protocol, topic) in [
        ("SASL_PLAINTEXT", "rd-scram-plain"),
        ("SASL_SSL", "rd-scram-ssl"),
    ] {
        let config = rdkafka_config(s.addr(protocol), protocol, "SCRAM-SHA-512", PASSWORD, &ca);
        let got = rdkafka_roundtrip(&config, topic, &["a", "b", "c"]);
        assert_eq!(got, ["a", "b", "c"], "{protocol}");
        assert_eq!(records_via_plaintext(&s, topic), ["a", "b", "c"]);
    }
    // A wrong password over SASL_SSL: refused, nothing written.
    let config = rdkafka_config(s.addr("SASL_SSL"), "SASL_SSL", "SCRAM-SHA-512", "nope", &ca);
    let producer: rdkafka::producer::BaseProducer = config.create().expect("producer");
    producer
        .send(rdkafka::producer::BaseRecord::<(), str>::to("rd-wrong").payload("x"))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    let flushed = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
    assert!(
        flushed.is_err(),
        "a producer with a wrong password delivered"
    );
    assert!(records_via_plaintext(&s, "rd-wrong").is_empty());
}

#[test]
fn tls_listeners_serve_tls_clients_and_refuse_plaintext_ones() {
    let s = Sasl::start_with(&["SSL", "SASL_SSL"], "", dev_certs);
    let ca = ca_file(&s);
    // kcat (the system librdkafka) over SSL.
    let ssl = s.addr("SSL").to_string();
    let tls_args = ["-X", "security.protocol=SSL", "-X"];
    let ca_arg = format!("ssl.ca.location={ca}");
    let mut produce = tls_args.to_vec();
    produce.extend([ca_arg.as_str(), "-P", "-t", "over-tls"]);
    let (ok, out, err) = kcat(&ssl, None, &produce, "secret\n");
    assert!(ok, "kcat over SSL failed:\n{out}\n{err}");
    let mut consume = tls_args.to_vec();
    consume.extend([
        ca_arg.as_str(),
        "-C",
        "-t",
        "over-tls",
        "-o",
        "beginning",
        "-e",
        "-q",
    ]);
    let (ok, out, err) = kcat(&ssl, None, &consume, "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "secret");

    // A plaintext Kafka client on each TLS port: the handshake fails, no Kafka answer, the
    // connection closes, nothing is written, and the broker keeps serving.
    for protocol in ["SSL", "SASL_SSL"] {
        let mut c = Raw::connect(s.addr(protocol));
        c.send(ApiKey::Produce, 9, &produce_request("plaintext-on-tls"));
        let mut answer = Vec::new();
        let _ = c.stream.read_to_end(&mut answer);
        assert!(
            answer.first().is_none_or(|b| *b == 0x15),
            "{protocol}: expected a TLS alert or nothing, got {answer:?}"
        );
    }
    assert!(records_via_plaintext(&s, "plaintext-on-tls").is_empty());
    let (ok, out, err) = kcat(&ssl, None, &consume, "");
    assert!(ok, "the SSL listener stopped serving: {err}");
    assert_eq!(out.trim(), "secret");
}

#[test]
fn oauthbearer_with_librdkafka_oidc_client_credentials() {
    let issuer = oidc_support::Issuer::start();
    issuer.add_client("svc-orders", "orders-secret", &[]);
    let s = Sasl::start_with(&["SASL_PLAINTEXT"], "", |_| issuer.jwt_toml());
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", s.sasl.to_string())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("sasl.oauthbearer.method", "oidc")
        .set("sasl.oauthbearer.client.id", "svc-orders")
        .set("sasl.oauthbearer.client.secret", "orders-secret")
        .set("sasl.oauthbearer.token.endpoint.url", issuer.token_url())
        .set("message.timeout.ms", "20000");
    let got = rdkafka_roundtrip(&config, "oauth-topic", &["x", "y"]);
    assert_eq!(got, ["x", "y"]);
    assert!(
        issuer.token_requests() >= 1,
        "the token came from the token endpoint"
    );
    assert!(
        issuer.jwks_fetches() >= 1,
        "weft validated it against the issuer's JWKS"
    );
    assert_eq!(records_via_plaintext(&s, "oauth-topic"), ["x", "y"]);
}

#[test]
fn oauthbearer_bad_tokens_are_refused_and_lifetime_follows_the_token() {
    let issuer = oidc_support::Issuer::start();
    let s = Sasl::start_with(&["SASL_PLAINTEXT"], "", |_| issuer.jwt_toml());
    let bearer = |token: &str| format!("n,,\x01auth=Bearer {token}\x01\x01");
    // A valid token: the session lasts until it expires (KIP-368).
    issuer.set_lifetime(120);
    let mut c = Raw::connect(s.sasl);
    assert_eq!(c.handshake(1, "OAUTHBEARER").error_code, 0);
    let r = c.authenticate(2, bearer(&issuer.token("svc-a", &[])).as_bytes());
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!(
        r.session_lifetime_ms > 0 && r.session_lifetime_ms <= 120_000,
        "{}",
        r.session_lifetime_ms
    );
    let _: MetadataResponse = c.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    // Bad tokens: RFC 7628's error JSON, the client's %x01, SASL_AUTHENTICATION_FAILED, close.
    for (what, token) in [
        ("expired", issuer.expired("svc-a", &[])),
        ("wrong issuer", issuer.wrong_issuer("svc-a", &[])),
        ("forged", issuer.forged("svc-a", &[])),
        ("alg none", issuer.alg_none("svc-a", &[])),
    ] {
        let mut c = Raw::connect(s.sasl);
        assert_eq!(c.handshake(1, "OAUTHBEARER").error_code, 0);
        let r = c.authenticate(2, bearer(&token).as_bytes());
        assert_eq!(r.error_code, 0, "{what}: the error travels as a challenge");
        let challenge = String::from_utf8_lossy(&r.auth_bytes).into_owned();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
        let r = c.authenticate(2, b"\x01");
        assert_eq!(r.error_code, 58, "{what}");
        assert!(c.closed(), "{what}: connection must close");
        // Nothing can be written through such a connection.
        let mut c = Raw::connect(s.sasl);
        assert_eq!(c.handshake(1, "OAUTHBEARER").error_code, 0);
        let _ = c.authenticate(2, bearer(&token).as_bytes());
        c.send(ApiKey::Produce, 9, &produce_request("oauth-refused"));
        assert!(
            c.closed(),
            "{what}: produce after a refused token must close"
        );
    }
    assert!(records_via_plaintext(&s, "oauth-refused").is_empty());
}

#[test]
fn librdkafka_reauthenticates_before_the_session_expires() {
    // KIP-368 with a real client: sessions of 2 s, a producer sending for longer than that on
    // its connections. librdkafka re-authenticates at ~90% of the lifetime it was told; the
    // broker logs each re-authentication and would close a connection that let its session
    // expire (which librdkafka would hide by reconnecting: hence the log check).
    let s = Sasl::start("connections_max_reauth_ms = 2000");
    let config = rdkafka_config(s.sasl, "SASL_PLAINTEXT", "SCRAM-SHA-512", PASSWORD, "");
    let producer: rdkafka::producer::BaseProducer = config.create().expect("producer");
    for i in 0..6 {
        producer
            .send(rdkafka::producer::BaseRecord::<(), str>::to("reauth").payload(&i.to_string()))
            .map_err(|(e, _)| e)
            .expect("enqueue");
        rdkafka::producer::Producer::flush(&producer, SAFETY).expect("delivered");
        std::thread::sleep(Duration::from_millis(700));
    }
    drop(producer);
    assert_eq!(records_via_plaintext(&s, "reauth").len(), 6);
    let mut server = s.server;
    server.kill().expect("kill");
    let (_, lines) = server.wait();
    let reauths = lines
        .iter()
        .filter(|l| l.contains("sasl authentication succeeded") && l.contains(r#""reauth":true"#))
        .count();
    assert!(
        reauths >= 1,
        "no re-authentication logged:\n{}",
        lines.join("\n")
    );
    assert!(
        !lines.iter().any(|l| l.contains("SASL session expired")),
        "a session expired instead of being renewed:\n{}",
        lines.join("\n")
    );
}

#[test]
fn kafka_python_reauthenticates_with_scram() {
    // kafka-python implements KIP-368 too: a producer outliving several 2 s sessions.
    let s = Sasl::start("connections_max_reauth_ms = 2000");
    let script = r#"
import logging, sys, time
from kafka import KafkaProducer
logging.basicConfig(level=logging.ERROR)
p = KafkaProducer(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=sys.argv[2],
                  sasl_plain_password=sys.argv[3], bootstrap_timeout_ms=20000)
for i in range(6):
    p.send("kp-reauth", str(i).encode()).get(timeout=60)
    time.sleep(0.7)
p.close()
print("sent")
"#;
    let (ok, out, err) =
        run(Command::new("python3").args(["-c", script, &s.sasl.to_string(), USER, PASSWORD]));
    assert!(
        ok && out.trim() == "sent",
        "kafka-python failed:\n{out}\n{err}"
    );
    assert_eq!(records_via_plaintext(&s, "kp-reauth").len(), 6);
    let mut server = s.server;
    server.kill().expect("kill");
    let (_, lines) = server.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("sasl authentication succeeded") && l.contains(r#""reauth":true"#)),
        "no re-authentication logged:\n{}",
        lines.join("\n")
    );
    assert!(!lines.iter().any(|l| l.contains("SASL session expired")));
}

// ---- raw protocol client ----

struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(SAFETY)).expect("timeout");
        Raw {
            stream,
            correlation: 0,
        }
    }

    fn send<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")))
            .encode(&mut buf, api.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        self.raw_send(&buf);
    }

    fn raw_send(&mut self, bytes: &[u8]) {
        let mut framed = Vec::with_capacity(bytes.len() + 4);
        framed.put_u32(bytes.len() as u32);
        framed.extend_from_slice(bytes);
        self.stream.write_all(&framed).expect("write");
    }

    fn raw_recv(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("response length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).expect("response body");
        body
    }

    fn call<T: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, body: &T) -> R {
        self.send(api, version, body);
        let mut b = Bytes::from(self.raw_recv());
        let header =
            ResponseHeader::decode(&mut b, api.response_header_version(version)).expect("header");
        assert_eq!(header.correlation_id, self.correlation);
        R::decode(&mut b, version).expect("response")
    }

    fn handshake(&mut self, version: i16, mechanism: &str) -> SaslHandshakeResponse {
        let req = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(mechanism.to_owned()));
        self.call(ApiKey::SaslHandshake, version, &req)
    }

    fn authenticate(&mut self, version: i16, bytes: &[u8]) -> SaslAuthenticateResponse {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(bytes));
        self.call(ApiKey::SaslAuthenticate, version, &req)
    }

    /// The peer closed the connection (end of stream, or a reset) without sending more.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn produce_request(topic: &str) -> ProduceRequest {
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use weft_log::batch::{BuildOptions, Record};
    let record = Record {
        offset: 0,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"must not be written")),
        headers: Vec::new(),
    };
    let batch = weft_log::batch::build(BuildOptions::default(), &[record]).expect("batch");
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch))),
                ]),
        ])
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
