//! The client commands (`weft topic|produce|consume|bench`) run as subprocesses against a
//! real `weft serve`. Timeouts are safety limits against hangs, never assertions about speed.

mod common;

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use common::{Run, Server, run_weft, weft};

/// A running `weft serve` in its own temporary directory, for the client commands.
struct Broker {
    // Declared first so the server is stopped before its directory is removed.
    server: Server,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path());
        Broker { server, dir }
    }

    /// Runs `weft <args>` against this server with `stdin` as input.
    fn cli(&self, args: &[&str], stdin: &str) -> Run {
        run_weft(
            self.dir.path(),
            &self.server.kafka_addr().to_string(),
            args,
            Some(stdin),
        )
    }

    /// Like [`Broker::cli`], and asserts exit code 0.
    fn ok(&self, args: &[&str], stdin: &str) -> Run {
        let run = self.cli(args, stdin);
        assert_eq!(run.code, Some(0), "weft {args:?} failed: {}", run.stderr);
        run
    }
}

/// Consumes `n` records of `topic` from `from` as parsed JSON objects.
fn consume_json(server: &Broker, topic: &str, from: &str, n: usize) -> Vec<Value> {
    let n_arg = n.to_string();
    let run = server.ok(
        &[
            "consume",
            topic,
            "--from",
            from,
            "--format",
            "json",
            "--max-messages",
            &n_arg,
            "--timeout-ms",
            "30000",
        ],
        "",
    );
    let records: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(records.len(), n, "{}", run.stdout);
    records
}

/// The record without its timestamp, after checking that it has one.
fn without_timestamp(mut record: Value) -> Value {
    let ts = record
        .as_object_mut()
        .and_then(|o| o.remove("timestamp"))
        .expect("timestamp field");
    assert!(ts.as_i64().is_some_and(|t| t > 0), "timestamp {ts}");
    record
}

#[test]
fn topic_create_list_describe_alter_delete() {
    let server = Broker::start();
    server.ok(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        "",
    );
    let list = server.ok(&["topic", "list"], "");
    assert!(
        list.stdout.lines().any(|l| l == "orders"),
        "{}",
        list.stdout
    );

    let describe = server.ok(&["topic", "describe", "orders"], "");
    assert!(describe.stdout.contains("partitions: 3\n"));
    assert!(describe.stdout.contains("  retention.ms=3600000 (topic)\n"));
    assert!(
        describe
            .stdout
            .contains("  cleanup.policy=delete (default)\n")
    );
    let rows: Vec<Vec<&str>> = describe
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 6 && w[0].parse::<i32>().is_ok())
        .collect();
    // partition, leader, replicas, isr, low, high: one empty partition each.
    let expected: Vec<Vec<String>> = (0..3)
        .map(|p| {
            [
                p.to_string(),
                "0".into(),
                "0".into(),
                "0".into(),
                "0".into(),
                "0".into(),
            ]
            .to_vec()
        })
        .collect();
    assert_eq!(rows, expected, "{}", describe.stdout);

    // A duplicate is refused with Kafka's error name.
    let again = server.cli(&["topic", "create", "orders"], "");
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("TOPIC_ALREADY_EXISTS"),
        "{}",
        again.stderr
    );

    // Altering one config keeps the others set on the topic; partitions only grow.
    server.ok(
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "cleanup.policy=compact",
            "--partitions",
            "4",
        ],
        "",
    );
    let describe = server.ok(&["topic", "describe", "orders"], "");
    assert!(describe.stdout.contains("partitions: 4\n"));
    assert!(
        describe
            .stdout
            .contains("  cleanup.policy=compact (topic)\n")
    );
    assert!(describe.stdout.contains("  retention.ms=3600000 (topic)\n"));
    let bad = server.cli(
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "cleanup.policy=bogus",
        ],
        "",
    );
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("INVALID_CONFIG"), "{}", bad.stderr);

    server.ok(&["topic", "delete", "orders"], "");
    let list = server.ok(&["topic", "list"], "");
    assert!(
        !list.stdout.lines().any(|l| l == "orders"),
        "{}",
        list.stdout
    );
    let gone = server.cli(&["topic", "delete", "orders"], "");
    assert_eq!(gone.code, Some(1));
    assert!(
        gone.stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        gone.stderr
    );
}

#[test]
fn produced_keys_values_and_headers_come_back_as_json() {
    let server = Broker::start();
    server.ok(&["topic", "create", "events"], "");
    let input = "k1=v1\nk2=hello world\nno separator here\nk3=a=b\n=empty key\n";
    let produced = server.ok(
        &[
            "produce",
            "events",
            "--key-separator",
            "=",
            "--header",
            "source=test",
            "--header",
            "trace=x=y",
        ],
        input,
    );
    assert!(
        produced.stderr.contains("produced 5 of 5 record(s)"),
        "{}",
        produced.stderr
    );
    let headers = json!([
        { "key": "source", "value": "test" },
        { "key": "trace", "value": "x=y" },
    ]);
    let expected: Vec<Value> = [
        (Some("k1"), "v1"),
        (Some("k2"), "hello world"),
        (None, "no separator here"),
        (Some("k3"), "a=b"),
        (Some(""), "empty key"),
    ]
    .iter()
    .enumerate()
    .map(|(offset, (key, value))| {
        json!({
            "topic": "events",
            "partition": 0,
            "offset": offset,
            "key": key,
            "value": value,
            "headers": headers,
        })
    })
    .collect();
    let got: Vec<Value> = consume_json(&server, "events", "beginning", 5)
        .into_iter()
        .map(without_timestamp)
        .collect();
    assert_eq!(got, expected);

    // The same records through a template, from an offset.
    let run = server.ok(
        &[
            "consume",
            "events",
            "--from",
            "offset:3",
            "--format",
            "template",
            "--template",
            r"%p/%o %k|%v|%h|%K",
            "--max-messages",
            "2",
            "--timeout-ms",
            "30000",
        ],
        "",
    );
    assert_eq!(
        run.stdout,
        "0/3 k3|a=b|source=test,trace=x=y|2\n0/4 |empty key|source=test,trace=x=y|0\n"
    );
}

#[test]
fn consume_from_a_timestamp_starts_at_the_first_later_record() {
    let server = Broker::start();
    server.ok(&["topic", "create", "clock", "--partitions", "2"], "");
    server.ok(&["produce", "clock", "--partition", "0"], "a1\na2\n");
    server.ok(&["produce", "clock", "--partition", "1"], "a3\n");
    let first = consume_json(&server, "clock", "beginning", 3);
    let last_a = first
        .iter()
        .filter_map(|r| r["timestamp"].as_i64())
        .max()
        .expect("timestamps");
    // CreateTime comes from the producer's wall clock: wait until it has moved past every
    // first-batch timestamp so the second batch is strictly later.
    while now_ms() <= last_a {
        thread::sleep(Duration::from_millis(2));
    }
    server.ok(&["produce", "clock", "--partition", "0"], "b1\n");
    server.ok(&["produce", "clock", "--partition", "1"], "b2\nb3\n");
    let all = consume_json(&server, "clock", "beginning", 6);
    let first_b = all
        .iter()
        .filter(|r| r["value"].as_str().is_some_and(|v| v.starts_with('b')))
        .filter_map(|r| r["timestamp"].as_i64())
        .min()
        .expect("timestamps");
    assert!(first_b > last_a);
    let from = format!("timestamp:{first_b}");
    let mut values: Vec<String> = consume_json(&server, "clock", &from, 3)
        .iter()
        .map(|r| r["value"].as_str().expect("value").to_owned())
        .collect();
    values.sort();
    assert_eq!(values, ["b1", "b2", "b3"]);
    // Nothing more arrives after the three.
    let run = server.ok(
        &["consume", "clock", "--from", &from, "--timeout-ms", "1500"],
        "",
    );
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[test]
fn invalid_topic_name_fails_with_the_kafka_error_name() {
    let server = Broker::start();
    let run = server.cli(&["topic", "create", "bad name!"], "");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot create topic \"bad name!\": INVALID_TOPIC_EXCEPTION"),
        "{}",
        run.stderr
    );
    let run = server.cli(&["topic", "describe", "no/such/topic"], "");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
}

/// Asserts that some stdout line starts with `prefix` and contains every one of `parts`.
fn assert_line(run: &Run, prefix: &str, parts: &[&str]) {
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p))),
        "no {prefix:?} line with {parts:?} in {}",
        run.stdout
    );
}

#[test]
fn bench_produce_prints_throughput_and_percentiles() {
    let server = Broker::start();
    let pid = server.server.pid().to_string();
    let run = server.ok(
        &[
            "bench",
            "produce",
            "--records",
            "20000",
            "--broker-pid",
            &pid,
        ],
        "",
    );
    // CPU per payload byte of the client and of the broker (its /proc entry, read in 10 ms
    // ticks, so a short run may show 0), and the machine's busy cores.
    for prefix in ["client CPU: ", "broker CPU: "] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {}", run.stdout));
        let ns: f64 = line
            .split_once('(')
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no ns per byte in {line}"));
        assert!(ns >= 0.0 && line.contains("ns per payload byte"), "{line}");
    }
    assert_line(&run, "machine CPU: ", &["cores busy"]);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("ack latency ms: "))
        .unwrap_or_else(|| panic!("no percentile line in {}", run.stdout));
    for label in ["p50=", "p99=", "p99.9=", "max=", "(20000 samples)"] {
        assert!(line.contains(label), "{line}");
    }
    assert_line(&run, "produce: ", &["msgs/s", "MB/s"]);

    let run = server.ok(
        &[
            "bench",
            "consume",
            "--records",
            "5000",
            "--broker-pid",
            &pid,
        ],
        "",
    );
    assert!(run.stdout.contains("consume: "), "{}", run.stdout);
    assert_line(&run, "broker CPU: ", &["ns per payload byte"]);
    let run = server.ok(&["bench", "e2e", "--records", "2000", "--rate", "2000"], "");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("e2e latency ms: ")),
        "{}",
        run.stdout
    );
}

// `weft group list|describe|reset-offsets|delete` are tested in `group_cli.rs`.

#[test]
fn reset_offsets_is_refused_while_the_group_has_members() {
    let server = Broker::start();
    server.ok(&["topic", "create", "jobs"], "");
    server.ok(&["produce", "jobs"], "a\n");
    // A member that stays: no --max-messages, no --timeout-ms.
    let mut member = weft(server.dir.path())
        .args(["consume", "jobs", "--group", "busy"])
        .env("WEFT_BOOTSTRAP", server.server.kafka_addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft consume");
    // Wait (up to the safety limit) until the member has joined and been assigned.
    let deadline = std::time::Instant::now() + common::SAFETY;
    loop {
        let describe = server.cli(&["group", "describe", "busy"], "");
        if describe.stdout.contains("state: Stable\n")
            && describe.stdout.contains("assignment=[jobs:0]")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "member never joined: {}",
            describe.stdout
        );
        thread::sleep(Duration::from_millis(100));
    }
    let list = server.ok(&["group", "list"], "");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["busy", "Stable", "consumer", "range"]),
        "{}",
        list.stdout
    );
    let refused = server.cli(
        &[
            "group",
            "reset-offsets",
            "busy",
            "--topic",
            "jobs",
            "--to",
            "earliest",
            "--execute",
        ],
        "",
    );
    let _ = member.kill();
    let _ = member.wait();
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "can only be reset while group \"busy\" is inactive, but its state is Stable"
        ),
        "{}",
        refused.stderr
    );
}
