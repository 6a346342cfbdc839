//! Observability of a real `weft serve` (issue 9): `/metrics` series move as records flow and
//! follow Prometheus conventions; a secret sent in a request never reaches the log; spans
//! reach an OTLP/HTTP receiver started here with the caller's W3C parent and correct
//! parent/child links; the `/ui` dashboard, loaded in headless Chromium, shows live numbers
//! and the lagging group first. Timeouts are safety limits, never assertions about speed.

mod common;
mod groups_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{SAFETY, Server};
use groups_support::{Cluster, produce_with};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

/// One HTTP/1.1 exchange: (status, headers lower-cased, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect_timeout(&addr, SAFETY).expect("connect");
    stream.set_read_timeout(Some(SAFETY)).expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (code, headers, body.to_owned())
}

/// The value of the first sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

fn scrape(addr: SocketAddr) -> String {
    let (code, headers, body) = http(addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    body
}

/// Scrapes until `done` holds, within the safety limit; returns that scrape.
fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SAFETY;
    loop {
        let text = scrape(addr);
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "/metrics never {what}:\n{text}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn lagging_cluster(extra: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "--kafka-listen",
        "127.0.0.1:0",
        "--registry-listen",
        "127.0.0.1:0",
        "--lag-interval-ms",
        "200",
        "--lag-window",
        "4",
    ];
    args.extend_from_slice(extra);
    let server = Server::start_with(dir.path(), &args);
    Cluster { server, dir }
}

#[test]
fn metrics_move_as_records_flow_and_follow_conventions() {
    let cluster = lagging_cluster(&[]);
    let addr = cluster.server.http_addr;
    let before = scrape(addr);
    assert!(sample(&before, "process_resident_memory_bytes", &[]).expect("rss") > 0.0);
    assert!(sample(&before, "process_open_fds", &[]).expect("fds") > 0.0);
    assert!(sample(&before, "process_cpu_seconds_total", &[]).is_some());

    cluster.ok(&["topic", "create", "events"]);
    cluster.produce("events", 0, &[None; 10]);
    cluster.commit("app", &[("events", 0, 4)]);
    let text = scrape_until(addr, "showed the group's lag of 6 and its age", |t| {
        sample(
            t,
            "weft_group_lag_records",
            &[("group", "app"), ("topic", "events"), ("partition", "0")],
        ) == Some(6.0)
            && sample(
                t,
                "weft_group_lag_seconds",
                &[("group", "app"), ("topic", "events")],
            )
            .is_some()
    });
    assert_eq!(
        sample(&text, "weft_group_lag_total_records", &[("group", "app")]),
        Some(6.0)
    );
    assert_eq!(
        sample(&text, "weft_group_lag_members", &[("group", "app")]),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "weft_group_lag_seconds",
            &[("group", "app"), ("topic", "events")]
        )
        .expect("lag seconds")
            >= 0.0
    );
    let statuses: f64 = ["OK", "WARN", "STALL", "STOP"]
        .iter()
        .map(|s| {
            sample(
                &text,
                "weft_group_lag_status",
                &[("group", "app"), ("status", s)],
            )
            .expect("status series")
        })
        .sum();
    assert_eq!(statuses, 1.0, "exactly one status is current");
    assert!(sample(&text, "weft_lag_rounds_total", &[("result", "ok")]).expect("rounds") >= 1.0);
    assert!(
        sample(&text, "weft_lag_round_duration_seconds_count", &[]).expect("round histogram")
            >= 1.0
    );
    // The broker's own series (weft-broker instruments itself through the same facade).
    assert!(
        sample(
            &text,
            "weft_broker_records_in_total",
            &[("topic", "events")]
        )
        .expect("records in")
            >= 10.0
    );

    // More records: the lag and the broker's counter move.
    cluster.produce("events", 0, &[None; 5]);
    scrape_until(addr, "showed the lag grow to 11", |t| {
        sample(
            t,
            "weft_group_lag_records",
            &[("group", "app"), ("topic", "events"), ("partition", "0")],
        ) == Some(11.0)
    });

    // Registry requests and schemas.
    let registry = cluster.server.registry_addr();
    let ct = [("Content-Type", "application/vnd.schemaregistry.v1+json")];
    let (code, _, body) = http(
        registry,
        "POST",
        "/subjects/obs-value/versions",
        &ct,
        r#"{"schema":"\"string\""}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = http(registry, "GET", "/subjects/nope/versions", &[], "");
    assert_eq!(code, 404);
    let text = scrape(addr);
    assert_eq!(
        sample(&text, "weft_registry_schemas", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "weft_registry_schemas_registered_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "weft_registry_requests_total",
            &[
                ("route", "/subjects/{subject}/versions"),
                ("method", "POST"),
                ("status", "2xx")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "weft_registry_requests_total",
            &[("method", "GET"), ("status", "4xx")]
        )
        .is_some()
    );
    // The main listener counts its own requests by route template, not raw path.
    let _ = http(addr, "GET", "/v1/groups/some-group-id", &[], "");
    let text = scrape(addr);
    assert!(
        sample(
            &text,
            "weft_http_requests_total",
            &[("route", "/metrics"), ("status", "2xx")]
        )
        .expect("http")
            >= 3.0
    );
    assert_eq!(
        sample(
            &text,
            "weft_http_requests_total",
            &[("route", "/v1/groups/{id}"), ("status", "4xx")]
        ),
        Some(1.0)
    );
    assert!(
        !text.contains("some-group-id"),
        "raw paths are never labels"
    );

    // Conventions: prefixes, `_total` counters, units in histogram names.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
        assert!(
            name.starts_with("weft_") || name.starts_with("process_"),
            "{line}"
        );
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {line}");
        }
        if kind == "histogram" {
            assert!(
                name.ends_with("_seconds")
                    || name.ends_with("_bytes")
                    || name.ends_with("_records"),
                "histogram without a unit: {line}"
            );
        }
    }
}

#[test]
fn metrics_can_be_switched_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        &["--kafka-listen", "127.0.0.1:0", "--metrics", "false"],
    );
    let (code, _, _) = http(server.http_addr, "GET", "/metrics", &[], "");
    assert_eq!(code, 404);
    let (code, _, _) = http(server.http_addr, "GET", "/healthz", &[], "");
    assert_eq!(code, 200);
}

#[test]
fn bad_observe_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, expected) in [
        (
            &["--otlp-endpoint", "https://collector:4318"][..],
            "only http://",
        ),
        (&["--trace-sample-ratio", "2"][..], "between 0 and 1"),
    ] {
        let out = common::weft(dir.path())
            .args([
                "serve",
                "--data-dir",
                "data",
                "--http-listen",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run weft serve");
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Secrets a client puts in a request: none may appear in any log line.
const SECRETS: &[&str] = &[
    "S3cretT0ken99",
    "jane.doe@example.com",
    "4111111111111111",
    "hunter2hunter2",
    "eyJsecretbearer",
];

fn secret_request(addr: SocketAddr, path: &str, traceparent: Option<&str>) -> u16 {
    let target = format!(
        "{path}?access_token=S3cretT0ken99&email=jane.doe@example.com&card=4111111111111111"
    );
    let mut headers = vec![
        ("User-Agent", "probe password=hunter2hunter2"),
        ("Authorization", "Bearer eyJsecretbearer"),
    ];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    http(addr, "GET", &target, &headers, "").0
}

fn terminate(server: Server) -> Vec<String> {
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let (exit, lines) = server.wait();
    assert!(exit.success(), "weft serve exited with {exit}: {lines:?}");
    lines
}

#[test]
fn a_secret_sent_in_a_request_never_reaches_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Debug for the request middleware: it logs the query string and user agent.
    let server = Server::start_with(
        dir.path(),
        &[
            "--kafka-listen",
            "127.0.0.1:0",
            "--log-level",
            "info,weft_observe=debug",
        ],
    );
    assert_eq!(
        secret_request(server.http_addr, "/v1/no-such-route", None),
        404
    );
    let lines = terminate(server);
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(r#""message":"http request""#))
        .collect();
    assert!(
        !logged.is_empty(),
        "the request was not logged at all: {lines:?}"
    );
    let line = logged[0];
    let json: serde_json::Value = serde_json::from_str(line).expect("JSON line");
    for key in ["timestamp", "level", "target", "message"] {
        assert!(json.get(key).is_some(), "no {key} in {line}");
    }
    assert!(
        json["url.query"]
            .as_str()
            .expect("query logged")
            .contains("access_token=***"),
        "{line}"
    );
    for secret in SECRETS {
        for l in &lines {
            assert!(!l.contains(secret), "{secret} leaked: {l}");
        }
    }
}

/// A minimal OTLP/HTTP receiver: accepts `POST /v1/traces` (protobuf), answers 200 and keeps
/// every span.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (Arc::clone(&spans), Arc::clone(&raw));
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                thread::spawn(move || {
                    let _ = serve_otlp(stream, &s, &r);
                });
            }
        });
        Receiver { addr, spans, raw }
    }

    fn wait(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + SAFETY;
        loop {
            let spans = self.spans.lock().expect("lock").clone();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never got {what}: {spans:#?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn serve_otlp(
    stream: TcpStream,
    spans: &Mutex<Vec<Span>>,
    raw: &Mutex<Vec<u8>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if request_line.starts_with("POST /v1/traces") {
            raw.lock().expect("lock").extend_from_slice(&body);
            let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            let mut out = spans.lock().expect("lock");
            for rs in req.resource_spans {
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        let attributes = s
                            .attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                    Some(AnyValue::StringValue(s)) => s,
                                    Some(AnyValue::IntValue(i)) => i.to_string(),
                                    other => format!("{other:?}"),
                                };
                                (kv.key.clone(), v)
                            })
                            .collect();
                        out.push(Span {
                            name: s.name,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent_span_id: hex(&s.parent_span_id),
                            attributes,
                        });
                    }
                }
            }
        }
        writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        )?;
    }
}

#[test]
fn spans_reach_an_otlp_receiver_with_parent_child_links() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{}", receiver.addr);
    let server = Server::start_with(
        dir.path(),
        &[
            "--kafka-listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &endpoint,
        ],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{caller}-01");
    assert_eq!(
        secret_request(server.http_addr, "/ui/snapshot", Some(&traceparent)),
        200
    );

    let spans = receiver.wait("the request's server span and its child", |spans| {
        spans
            .iter()
            .any(|s| s.name == "ui.snapshot" && s.trace_id == trace_id)
            && spans
                .iter()
                .any(|s| s.name == "GET /ui/snapshot" && s.trace_id == trace_id)
    });
    let server_span = spans
        .iter()
        .find(|s| s.name == "GET /ui/snapshot" && s.trace_id == trace_id)
        .expect("server span");
    assert_eq!(
        server_span.parent_span_id, caller,
        "the caller's traceparent is the parent"
    );
    assert_eq!(
        server_span.attributes.get("http.route").map(String::as_str),
        Some("/ui/snapshot")
    );
    assert_eq!(
        server_span
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );
    let child = spans
        .iter()
        .find(|s| s.name == "ui.snapshot" && s.trace_id == trace_id)
        .expect("child span");
    assert_eq!(
        child.parent_span_id, server_span.span_id,
        "the handler's span is the server span's child"
    );
    let query = server_span
        .attributes
        .get("url.query")
        .expect("url.query attribute");
    assert!(query.contains("access_token=***"), "{query}");

    // Nothing secret left the process in any exported byte.
    let _ = terminate(server);
    let raw = receiver.raw.lock().expect("lock").clone();
    let raw = String::from_utf8_lossy(&raw);
    for secret in SECRETS {
        assert!(!raw.contains(secret), "{secret} was exported");
    }
}

/// A field that a registered schema tags as PII (`confluent:tags`) is classified as sensitive
/// by the running server: counted in `weft_mask_classified_fields_total` and logged by name
/// (masking by field name itself is covered by weft-observe's unit tests).
#[test]
fn fields_the_registry_classifies_as_sensitive_are_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        dir.path(),
        &[
            "--kafka-listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
        ],
    );
    let schema = r#"{"type":"record","name":"Customer","fields":[{"name":"id","type":"long"},{"name":"loyalty_number","type":"string","confluent:tags":["PII"]}]}"#;
    let body = serde_json::json!({ "schema": schema }).to_string();
    let (code, _, answer) = http(
        server.registry_addr(),
        "POST",
        "/subjects/customers-value/versions",
        &[("content-type", "application/vnd.schemaregistry.v1+json")],
        &body,
    );
    assert_eq!(code, 200, "{answer}");
    scrape_until(server.http_addr, "counted the classified field", |text| {
        sample(text, "weft_mask_classified_fields_total", &[]).is_some_and(|v| v >= 1.0)
    });
    let lines = terminate(server);
    assert!(
        lines.iter().any(
            |l| l.contains("masking a field the registry classifies as sensitive")
                && l.contains("loyalty_number")
        ),
        "{lines:#?}"
    );
}

// ---- OpenMetrics with exemplars ----

/// What Prometheus sends when exemplar storage is on.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Parses OpenMetrics text from stdin with the Prometheus client's own parser (which refuses
/// anything out of spec) and prints the families' types and every exemplar as JSON.
const OPENMETRICS_PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {"families": {}, "exemplars": []}
for f in text_string_to_metric_families(sys.stdin.read()):
    out["families"][f.name] = f.type
    for s in f.samples:
        if s.exemplar is not None:
            out["exemplars"].append({"sample": s.name, "labels": s.labels,
                                     "exemplar": s.exemplar.labels, "value": s.exemplar.value})
print(json.dumps(out))
"#;

fn parse_openmetrics(text: &str) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args(["-c", OPENMETRICS_PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (cargo xtask test installs prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

#[test]
fn openmetrics_with_trace_exemplars_parses_with_the_prometheus_parser() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{}", receiver.addr);
    let server = Server::start_with(
        dir.path(),
        &[
            "--kafka-listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &endpoint,
        ],
    );
    let addr = server.http_addr;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b8-01");
    let (code, _, body) = http(
        addr,
        "GET",
        "/ui/snapshot",
        &[("traceparent", &traceparent)],
        "",
    );
    assert_eq!(code, 200, "{body}");
    // A record produced through the gateway in another trace: the gateway carries the
    // context in a `traceparent` record header, the broker's Produce span joins it, and the
    // broker's latency histograms are recorded inside that span.
    let produce_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created = common::run_weft(
        dir.path(),
        &server.kafka_addr().to_string(),
        &["topic", "create", "exemplars"],
        None,
    );
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let (code, _, body) = http(
        addr,
        "POST",
        "/v1/topics/exemplars/records",
        &[
            ("content-type", "application/json"),
            (
                "traceparent",
                &format!("00-{produce_trace}-00f067aa0ba902b7-01"),
            ),
        ],
        r#"{"records":[{"value":"traced"}]}"#,
    );
    assert_eq!(code, 200, "{body}");

    // Without asking, the 0.0.4 text format as before.
    let plain = scrape(addr);
    assert!(!plain.contains("# EOF"), "{plain}");

    let (code, headers, text) = http(
        addr,
        "GET",
        "/metrics",
        &[("accept", PROMETHEUS_ACCEPT)],
        "",
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let parsed = parse_openmetrics(&text);
    let families = &parsed["families"];
    for (name, ty) in [
        ("weft_http_requests", "counter"),
        ("weft_http_request_duration_seconds", "histogram"),
        ("weft_registry_schemas", "gauge"),
        ("process_open_fds", "gauge"),
    ] {
        assert_eq!(families[name], ty, "{name} in {families}");
    }
    let exemplars = parsed["exemplars"].as_array().expect("exemplars");
    let traced = exemplars.iter().find(|e| {
        e["sample"] == "weft_http_request_duration_seconds_bucket"
            && e["labels"]["route"] == "/ui/snapshot"
            && e["exemplar"]["trace_id"] == trace_id
    });
    let traced = traced.unwrap_or_else(|| {
        panic!("no exemplar with the request's trace id: {exemplars:#?}\n{text}")
    });
    assert_eq!(
        traced["exemplar"]["span_id"].as_str().map(str::len),
        Some(16),
        "{traced}"
    );
    for histogram in [
        "weft_broker_request_processing_seconds_bucket",
        "weft_broker_response_send_seconds_bucket",
    ] {
        assert!(
            exemplars.iter().any(|e| e["sample"] == histogram
                && e["labels"]["api"] == "Produce"
                && e["exemplar"]["trace_id"] == produce_trace),
            "no {histogram} exemplar with the produce's trace id: {exemplars:#?}"
        );
    }
    // Every exemplar names a trace (requests without a caller's context start their own).
    for e in exemplars {
        let id = e["exemplar"]["trace_id"].as_str().unwrap_or("");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{e}"
        );
    }
}

// ---- the dashboard in a real browser ----

/// Drives headless Chromium over the DevTools protocol (Node's WebSocket; no npm package):
/// opens the page, polls a probe until the condition holds, saves a screenshot and prints
/// the first and last probes as JSON.
const CDP_SCRIPT: &str = r##"
const { spawn } = require("child_process");
const fs = require("fs"), path = require("path"), os = require("os");
const [url, shot, bin, group, topic, timeoutMs] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-ui-"));
const chrome = spawn(bin, ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--no-default-browser-check", "--remote-debugging-port=0", "--user-data-dir=" + dir,
  "--window-size=1280,900", "about:blank"], { stdio: ["ignore", "ignore", "pipe"] });
let err = ""; chrome.stderr.on("data", (d) => { err += d; });
(async () => {
  const deadline = Date.now() + Number(timeoutMs);
  let port;
  while (!port) {
    try { port = fs.readFileSync(path.join(dir, "DevToolsActivePort"), "utf8").split("\n"); } catch (e) {
      if (Date.now() > deadline) throw new Error("chromium did not start: " + err);
      await sleep(100);
    }
  }
  // Node >= 22 (or 20 with --experimental-websocket) has WebSocket; older ones use `ws` from
  // NODE_PATH (xtask installs it).
  const WS = typeof WebSocket !== "undefined" ? WebSocket : require("ws");
  const ws = new WS("ws://127.0.0.1:" + port[0] + port[1]);
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
  let id = 0; const pending = new Map();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id && pending.has(m.id)) {
      const p = pending.get(m.id); pending.delete(m.id);
      m.error ? p.rej(new Error(JSON.stringify(m.error))) : p.res(m.result);
    }
  };
  const send = (method, params, sessionId) => new Promise((res, rej) => {
    const i = ++id; pending.set(i, { res, rej });
    ws.send(JSON.stringify({ id: i, method, params: params || {}, sessionId }));
  });
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  await send("Page.enable", {}, sessionId);
  await send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
  await send("Page.navigate", { url }, sessionId);
  const probe = `(() => {
    const rows = (sel) => [...document.querySelectorAll(sel)];
    return {
      updates: (window.weft || { updates: 0 }).updates,
      conn: document.getElementById("conn") ? document.getElementById("conn").textContent : "",
      records: document.getElementById("t-records") ? document.getElementById("t-records").textContent : "",
      e2e: document.getElementById("t-e2e") ? document.getElementById("t-e2e").textContent : "",
      e2eLabel: document.getElementById("k-e2e") ? document.getElementById("k-e2e").textContent : "",
      groups: rows("#groups tbody tr").map((r) => ({ group: r.dataset.group, status: r.dataset.status, lag: Number(r.dataset.lag) })),
      topics: rows("#topics tbody tr").map((r) => ({ topic: r.dataset.topic, rate: r.dataset.rate === "" ? null : Number(r.dataset.rate) })),
    };
  })()`;
  const evaluate = async () => (await send("Runtime.evaluate", { expression: probe, returnByValue: true }, sessionId)).result.value;
  let first = null, last = null;
  while (Date.now() < deadline) {
    last = await evaluate();
    if (!first && last.updates > 0) first = last;
    const g = last.groups.find((x) => x.group === group);
    const t = last.topics.find((x) => x.topic === topic);
    if (first && last.updates >= first.updates + 3 && g && g.status !== "OK" && g.lag > first.groups.concat([{ group, lag: 0 }]).find((x) => x.group === group).lag && t && t.rate > 0) break;
    await sleep(250);
  }
  const png = await send("Page.captureScreenshot", { format: "png" }, sessionId);
  fs.writeFileSync(shot, Buffer.from(png.data, "base64"));
  console.log(JSON.stringify({ first, last }));
  chrome.kill("SIGKILL");
  process.exit(0);
})().catch((e) => { console.error(String(e && e.stack || e)); chrome.kill("SIGKILL"); process.exit(1); });
"##;

fn output_dir() -> PathBuf {
    // target/test-output next to the test binary's target dir.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("test-output");
    std::fs::create_dir_all(&dir).expect("create test-output");
    dir
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

#[test]
fn dashboard_shows_live_numbers_and_the_lagging_group_first() {
    let chromium = on_path("chromium").unwrap_or_else(|| {
        panic!(
            "chromium is not installed (Debian package `chromium`; cargo xtask test installs it)"
        )
    });
    let node = on_path("node")
        .unwrap_or_else(|| panic!("node is not installed (Debian package `nodejs`)"));
    let cluster = lagging_cluster(&[]);
    cluster.ok(&["topic", "create", "orders"]);
    cluster.produce("orders", 0, &[None; 20]);
    // "slow" committed once and stops; "fast" keeps committing the log end.
    cluster.commit("slow", &[("orders", 0, 1)]);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = Arc::clone(&stop);
        let p = cluster.producer();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                produce_with(&p, "orders", 0, &[None; 5]);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let committer = {
        let stop = Arc::clone(&stop);
        let client = cluster.group_client("fast");
        thread::spawn(move || {
            use rdkafka::consumer::{CommitMode, Consumer};
            while !stop.load(Ordering::Relaxed) {
                let end = client
                    .fetch_watermarks("orders", 0, SAFETY)
                    .map(|(_, high)| high)
                    .unwrap_or(0);
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset("orders", 0, rdkafka::Offset::Offset(end))
                    .expect("offset");
                let _ = client.commit(&tpl, CommitMode::Sync);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let script = cluster.dir.path().join("cdp.js");
    std::fs::write(&script, CDP_SCRIPT).expect("write script");
    let shot = output_dir().join("observe-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("http://{}/ui", cluster.server.http_addr);
    // Node 20 has WebSocket behind a flag that Node 18 refuses: probe it.
    let flag = Command::new(&node)
        .args(["--experimental-websocket", "-e", "0"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let out = Command::new(&node)
        .args(flag.then_some("--experimental-websocket"))
        .arg(&script)
        .args([
            url.as_str(),
            shot.to_str().expect("utf-8 path"),
            chromium.to_str().expect("utf-8 path"),
            "slow",
            "orders",
        ])
        .arg(SAFETY.as_millis().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer");
    committer.join().expect("committer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let (first, last) = (&result["first"], &result["last"]);
    assert_eq!(last["conn"], "live", "{result}");
    assert!(
        last["updates"].as_i64() > first["updates"].as_i64().map(|u| u + 2),
        "the page kept updating: {result}"
    );
    let groups = last["groups"].as_array().expect("groups");
    let slow = groups
        .iter()
        .position(|g| g["group"] == "slow")
        .unwrap_or_else(|| panic!("slow not shown: {result}"));
    assert_ne!(
        groups[slow]["status"], "OK",
        "the lagging group is shown lagging: {result}"
    );
    let first_lag = first["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == "slow"))
        .map_or(0, |g| g["lag"].as_i64().unwrap_or(0));
    assert!(
        groups[slow]["lag"].as_i64().expect("lag") > first_lag,
        "its lag grew on the page: {result}"
    );
    if let Some(fast) = groups.iter().position(|g| g["group"] == "fast") {
        assert!(slow < fast, "worst first: {result}");
    }
    let orders = last["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == "orders"))
        .unwrap_or_else(|| panic!("no orders row: {result}"));
    assert!(
        orders["rate"].as_f64().expect("rate") > 0.0,
        "throughput shown: {result}"
    );
    // No SDK consumer in weft serve: the e2e tile shows the lag monitor's lag age instead,
    // and says so.
    assert!(
        last["e2eLabel"]
            .as_str()
            .is_some_and(|l| l.starts_with("lag age"))
            && last["e2e"].as_str().is_some_and(|v| v.contains(" / ")),
        "the e2e tile shows lag age p50 / p99: {result}"
    );
    let png = std::fs::read(&shot).expect("screenshot saved");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    eprintln!("dashboard screenshot: {}", shot.display());
}

// ---- a trace across Kafka: request → produce → consume → handler → produce → consume ----

/// One trace from an HTTP request to the second consumer: a caller's `traceparent` on a
/// gateway `POST /v1/topics/chain-in/records` to a real `weft serve` (exporting to the
/// receiver), the gateway's record carrying the request span's context, the broker's Produce
/// span parented on it, a client-SDK consumer in this process (exporting to the same receiver)
/// whose handler produces to `chain-out`, the broker's Produce span for that record and the
/// second handler: the receiver sees the whole tree with the right parents.
#[test]
fn a_trace_follows_a_gateway_request_through_the_broker_and_the_sdk() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use weft_client::{
        Consumer, ConsumerConfig, HandlerError, Message, Producer, ProducerConfig, Record,
    };

    let receiver = Receiver::start();
    let endpoint = format!("http://{}", receiver.addr);
    let cluster = lagging_cluster(&["--otlp-endpoint", &endpoint]);
    cluster.ok(&["topic", "create", "chain-in"]);
    cluster.ok(&["topic", "create", "chain-out"]);
    let bootstrap = cluster.bootstrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller = "b7ad6b7169203331";
    let (code, _, body) = http(
        cluster.server.http_addr,
        "POST",
        "/v1/topics/chain-in/records",
        &[
            ("content-type", "application/json"),
            ("traceparent", &format!("00-{trace_id}-{caller}-01")),
        ],
        r#"{"records":[{"value":"first"}]}"#,
    );
    assert_eq!(code, 200, "{body}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let config = weft_observe::trace::TraceConfig {
            endpoint,
            sample_ratio: 1.0,
            service_name: "chain-test".into(),
        };
        let tracing = weft_observe::trace::Tracing::start(&config, weft_observe::Masker::default())
            .expect("start tracing");
        // This test binary's only in-process subscriber.
        tracing_subscriber::registry()
            .with(tracing.layer())
            .try_init()
            .expect("global subscriber");
        let producer = Producer::new(&ProducerConfig::new(&bootstrap)).expect("producer");

        let consumer_config = |group: &str, topic: &str| {
            let mut c = ConsumerConfig::new(&bootstrap, group, &[topic]);
            c.commit_interval = Duration::from_millis(100);
            c.set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "500");
            c
        };
        let done = Arc::new(AtomicBool::new(false));
        let first = Consumer::new(consumer_config("chain-g1", "chain-in")).expect("consumer");
        let second = Consumer::new(consumer_config("chain-g2", "chain-out")).expect("consumer");
        let (stop1, stop2) = (first.shutdown_handle(), second.shutdown_handle());
        let p = producer.clone();
        let run1 = tokio::spawn(first.run(move |_m: Message| {
            let p = p.clone();
            async move {
                p.send(Record::new("chain-out").payload("second"))
                    .await
                    .map(|_| ())
                    .map_err(HandlerError::retryable)
            }
        }));
        let d = Arc::clone(&done);
        let run2 = tokio::spawn(second.run(move |_m: Message| {
            let d = Arc::clone(&d);
            async move {
                d.store(true, Ordering::Relaxed);
                Ok(())
            }
        }));
        let deadline = Instant::now() + SAFETY;
        while !done.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "the second record was never handled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop1.shutdown();
        stop2.shutdown();
        run1.await.expect("join").expect("run");
        run2.await.expect("join").expect("run");
        let t = tracing.clone();
        tokio::task::spawn_blocking(move || t.flush())
            .await
            .expect("flush");

        let spans = receiver.wait("the request, broker and handler spans", |spans| {
            let of_trace = |name: &str| {
                spans
                    .iter()
                    .filter(|s| s.trace_id == trace_id && s.name == name)
                    .count()
            };
            of_trace("POST /v1/topics/{topic}/records") == 1
                && of_trace("Produce chain-in") >= 1
                && of_trace("Produce chain-out") >= 1
                && of_trace("weft.handle") >= 2
        });
        let find = |name: &str, topic: Option<&str>| {
            spans
                .iter()
                .find(|s| {
                    s.trace_id == trace_id
                        && s.name == name
                        && topic.is_none_or(|t| {
                            s.attributes.get("topic").map(String::as_str) == Some(t)
                        })
                })
                .unwrap_or_else(|| panic!("no {name} span ({topic:?}): {spans:#?}"))
        };
        let request = find("POST /v1/topics/{topic}/records", None);
        assert_eq!(
            request.parent_span_id, caller,
            "the caller's traceparent is the parent"
        );
        let produce_in = find("Produce chain-in", None);
        let h1 = find("weft.handle", Some("chain-in"));
        let produce_out = find("Produce chain-out", None);
        let h2 = find("weft.handle", Some("chain-out"));
        assert_eq!(
            produce_in.parent_span_id, request.span_id,
            "the broker's produce is the gateway request's child"
        );
        for (k, v) in [
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "send"),
            ("messaging.destination.name", "chain-in"),
            ("messaging.batch.message_count", "1"),
        ] {
            assert_eq!(
                produce_in.attributes.get(k).map(String::as_str),
                Some(v),
                "{k}: {produce_in:#?}"
            );
        }
        assert_eq!(
            h1.parent_span_id, request.span_id,
            "the first handler is the gateway request's child"
        );
        assert_eq!(
            produce_out.parent_span_id, h1.span_id,
            "the broker's second produce is the first handler's child"
        );
        assert_eq!(
            h2.parent_span_id, h1.span_id,
            "the second handler is the first handler's child"
        );
        // Fetches serve many traces: roots of their own, named after their topic.
        assert!(
            spans.iter().any(|s| s.name == "Fetch chain-in"
                && s.parent_span_id.is_empty()
                && s.attributes
                    .get("messaging.operation.type")
                    .map(String::as_str)
                    == Some("receive")),
            "no broker Fetch span: {spans:#?}"
        );
        tokio::task::spawn_blocking(move || tracing.shutdown())
            .await
            .expect("shutdown");
    });
}
