//! `weft dlq list|inspect|redrive` as subprocesses against a real `weft serve`. DLQ records
//! are produced with the envelope of `weft_resilience::dlq`; every redrive effect is checked
//! by reading the target topics through the Kafka protocol, not through the CLI's output.
//! Timeouts are safety limits against hangs.

mod common;

use std::time::{Duration, Instant};

use rdkafka::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header as KafkaHeader, Headers as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use weft_resilience::ErrorClass;
use weft_resilience::dlq::{self, DeadLetter, Header, RedriveMarker};

use common::{Run, SAFETY, Server, run_weft};

struct Broker {
    // Declared first so the server is stopped before its directory is removed.
    server: Server,
    dir: tempfile::TempDir,
}

/// A record as read back: key, value and headers.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<Header>,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path());
        Broker { server, dir }
    }

    fn bootstrap(&self) -> String {
        self.server.kafka_addr().to_string()
    }

    fn cli(&self, args: &[&str]) -> Run {
        run_weft(self.dir.path(), &self.bootstrap(), args, None)
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.cli(args);
        assert_eq!(run.code, Some(0), "weft {args:?} failed: {}", run.stderr);
        run
    }

    fn create(&self, topic: &str) {
        self.ok(&["topic", "create", topic, "--partitions", "1"]);
    }

    /// Produces `(key, value, headers)` records to partition 0 of `topic`.
    fn produce(&self, topic: &str, records: &[(Option<&str>, &str, Vec<Header>)]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        for (key, value, headers) in records {
            let hs = headers.iter().fold(OwnedHeaders::new(), |hs, h| {
                hs.insert(KafkaHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
            });
            let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic)
                .payload(*value)
                .partition(0)
                .headers(hs);
            if let Some(key) = key {
                record = record.key(*key);
            }
            producer.send(record).map_err(|(e, _)| e).expect("send");
        }
        producer.flush(SAFETY).expect("flush");
    }

    /// Every record of partition 0 of `topic` (empty when the topic does not exist).
    fn read(&self, topic: &str) -> Vec<Got> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "dlq-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), SAFETY)
            .expect("metadata");
        let exists = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none());
        if !exists {
            return Vec::new();
        }
        let (low, high) = consumer
            .fetch_watermarks(topic, 0, SAFETY)
            .expect("watermarks");
        let mut out = Vec::new();
        if high <= low {
            return out;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + SAFETY;
        while out.last().is_none_or(|r: &Got| r.offset + 1 < high) {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.expect("message");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
            out.push(Got {
                offset: m.offset(),
                key: text(m.key()),
                value: text(m.payload()),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| Header {
                                key: h.key.to_owned(),
                                value: h.value.map(<[u8]>::to_vec),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        out
    }
}

fn letter(offset: i64, class: ErrorClass, message: &str, last_failure: i64) -> DeadLetter {
    DeadLetter::builder("orders", 0, offset)
        .timestamp(1_767_225_600_000 + offset)
        .consumer_group("billing")
        .error(class, message)
        .attempts(3)
        .failures(last_failure - 5_000, last_failure)
        .build()
}

fn now_ms() -> i64 {
    dlq::epoch_millis(std::time::SystemTime::now())
}

/// `orders.dlq` with five records: 0 k1 non-retryable, 1 k2 retryable (two days old),
/// 2 k3 park, 3 k1 non-retryable, 4 a record without an envelope.
fn dlq_with_records(b: &Broker) -> Vec<Vec<Header>> {
    for topic in ["orders", "orders.dlq", "orders.replay"] {
        b.create(topic);
    }
    let now = now_ms();
    let original = vec![
        Header::new("weft-message-id", "m-0"),
        Header::new(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let headers = vec![
        letter(10, ErrorClass::NonRetryable, "amount must be positive", now).to_headers(&original),
        letter(
            11,
            ErrorClass::Retryable,
            "payment service timed out",
            now - 2 * 86_400_000,
        )
        .to_headers(&[Header::new("weft-message-id", "m-1")]),
        letter(12, ErrorClass::Park, "payment service in maintenance", now)
            .to_headers(&[Header::new("weft-message-id", "m-2")]),
        letter(13, ErrorClass::NonRetryable, "unknown currency", now)
            .to_headers(&[Header::new("weft-message-id", "m-3")]),
        vec![Header::new("note", "hand-made, no envelope")],
    ];
    b.produce(
        "orders.dlq",
        &[
            (Some("k1"), "order-10", headers[0].clone()),
            (Some("k2"), "order-11", headers[1].clone()),
            (Some("k3"), "order-12", headers[2].clone()),
            (Some("k1"), "order-13", headers[3].clone()),
            (None, "junk", headers[4].clone()),
        ],
    );
    headers
}

fn value_of<'a>(headers: &'a [Header], key: &str) -> Option<&'a str> {
    dlq::last_header(headers, key).and_then(Header::value_str)
}

#[test]
fn list_inspect_and_redrive_once() {
    let b = Broker::start();
    let written = dlq_with_records(&b);

    // list: the DLQ topic (not orders, orders.replay), counts and classes.
    let run = b.ok(&["dlq", "list"]);
    let rows: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [vec![
            "orders.dlq",
            "1",
            "5",
            "0",
            "non-retryable=2",
            "park=1",
            "retryable=1",
            "unknown=1"
        ]]
    );

    // inspect: every header, the parsed envelope, in order.
    let run = b.ok(&["dlq", "inspect", "orders.dlq", "--format", "json"]);
    let records: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(records.len(), 5);
    for (i, (record, headers)) in records.iter().zip(&written).enumerate() {
        assert_eq!(record["offset"], i as i64);
        let shown: Vec<(String, String)> = record["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().expect("key").to_owned(),
                    h["value"].as_str().expect("value").to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.key.clone(), h.value_str().expect("text").to_owned()))
            .collect();
        assert_eq!(shown, expected, "record {i}");
        assert_eq!(record["redriven"], false);
    }
    assert_eq!(records[0]["envelope"]["original_topic"], "orders");
    assert_eq!(records[0]["envelope"]["original_offset"], 10);
    assert_eq!(records[0]["envelope"]["consumer_group"], "billing");
    assert_eq!(records[0]["envelope"]["error_class"], "non-retryable");
    assert_eq!(records[0]["envelope"]["attempts"], 3);
    assert_eq!(
        records[1]["envelope"]["error_message"],
        "payment service timed out"
    );
    assert!(
        records[4]["envelope"]["error"]
            .as_str()
            .expect("envelope error")
            .contains("missing"),
        "{}",
        records[4]
    );
    // Text output names the envelope too; a selection narrows it.
    let run = b.ok(&["dlq", "inspect", "orders.dlq", "--key", "k3"]);
    assert!(run.stdout.contains("orders.dlq 0:2 "), "{}", run.stdout);
    assert!(run.stdout.contains("class=park"), "{}", run.stdout);
    assert!(
        run.stdout.contains("header weft-message-id: m-2"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("0:0 "), "{}", run.stdout);

    // Dry run: a plan, nothing published, no marker topic.
    let select = ["--error-class", "non-retryable"];
    let run = b.ok(&[&["dlq", "redrive", "orders.dlq"][..], &select].concat());
    assert!(
        run.stdout.contains("redrive orders.dlq/0/0 -> orders"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("redrive orders.dlq/0/3 -> orders"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("dry run"), "{}", run.stderr);
    assert!(b.read("orders").is_empty());
    assert!(b.read("orders.dlq.redriven").is_empty());

    // Execute: the two non-retryable records go back to orders with key, value and
    // headers kept, plus the redrive markers.
    let run = b.ok(&[&["dlq", "redrive", "orders.dlq", "--execute"][..], &select].concat());
    assert!(
        run.stderr.contains("redriven 2 record(s)"),
        "{}",
        run.stderr
    );
    let orders = b.read("orders");
    assert_eq!(orders.len(), 2);
    for (got, (dlq_offset, value)) in orders.iter().zip([(0usize, "order-10"), (3, "order-13")]) {
        assert_eq!(got.key.as_deref(), Some("k1"));
        assert_eq!(got.value.as_deref(), Some(value));
        let kept = &written[dlq_offset];
        assert_eq!(
            &got.headers[..kept.len()],
            &kept[..],
            "original + envelope headers kept"
        );
        assert_eq!(value_of(&got.headers, dlq::REDRIVE_COUNT), Some("1"));
        assert_eq!(
            value_of(&got.headers, dlq::REDRIVEN_FROM),
            Some(format!("orders.dlq/0/{dlq_offset}").as_str())
        );
    }
    // The markers say where each went.
    let markers = b.read("orders.dlq.redriven");
    let marked: Vec<(String, RedriveMarker)> = markers
        .iter()
        .map(|m| {
            (
                m.key.clone().expect("marker key"),
                RedriveMarker::decode(m.value.as_deref().expect("marker value").as_bytes())
                    .expect("marker"),
            )
        })
        .collect();
    assert_eq!(marked.len(), 2);
    assert_eq!(marked[0].0, "orders.dlq/0/0");
    assert_eq!(marked[1].0, "orders.dlq/0/3");
    assert_eq!(
        (
            marked[1].1.target_topic.as_str(),
            marked[1].1.target_partition,
            marked[1].1.target_offset
        ),
        ("orders", 0, orders[1].offset)
    );

    // The same selection again: nothing is published a second time.
    let run = b.ok(&[&["dlq", "redrive", "orders.dlq", "--execute"][..], &select].concat());
    assert!(
        run.stdout.contains("skip orders.dlq/0/0: already redriven"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("redriven 0 record(s), 2 already redriven"),
        "{}",
        run.stderr
    );
    assert_eq!(b.read("orders").len(), 2);
    assert_eq!(b.read("orders.dlq.redriven").len(), 2);

    // list and inspect show what was redriven.
    let run = b.ok(&["dlq", "list"]);
    let row: Vec<&str> = run
        .stdout
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["orders.dlq", "1", "5", "2"]);
    let run = b.ok(&[
        "dlq",
        "inspect",
        "orders.dlq",
        "--format",
        "json",
        "--offsets",
        "3",
    ]);
    let one: Value = serde_json::from_str(run.stdout.trim()).expect("one record");
    assert_eq!(one["redriven"], true);
}

#[test]
fn redrive_by_offsets_age_and_key_to_another_topic() {
    let b = Broker::start();
    dlq_with_records(&b);

    // Older than a day: only record 1 (two days old); to orders.replay.
    let run = b.ok(&[
        "dlq",
        "redrive",
        "orders.dlq",
        "--older-than",
        "1d",
        "--to",
        "orders.replay",
        "--execute",
    ]);
    assert!(
        run.stderr.contains("redriven 1 record(s)"),
        "{}",
        run.stderr
    );
    let replay = b.read("orders.replay");
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].value.as_deref(), Some("order-11"));
    assert!(
        b.read("orders").is_empty(),
        "--to: nothing to the original topic"
    );

    // Offsets 1..2: record 1 is marked already, record 2 goes.
    let run = b.ok(&[
        "dlq",
        "redrive",
        "orders.dlq",
        "--offsets",
        "1..2",
        "--to",
        "orders.replay",
        "--execute",
    ]);
    assert!(
        run.stdout.contains("skip orders.dlq/0/1: already redriven"),
        "{}",
        run.stdout
    );
    let replay = b.read("orders.replay");
    assert_eq!(
        replay
            .iter()
            .map(|r| r.value.as_deref())
            .collect::<Vec<_>>(),
        [Some("order-11"), Some("order-12")]
    );

    // Newer than an hour and key k1: records 0 and 3, to the original topic.
    b.ok(&[
        "dlq",
        "redrive",
        "orders.dlq",
        "--newer-than",
        "1h",
        "--key",
        "k1",
        "--execute",
    ]);
    assert_eq!(
        b.read("orders")
            .iter()
            .map(|r| r.value.as_deref())
            .collect::<Vec<_>>(),
        [Some("order-10"), Some("order-13")]
    );

    // The record without an envelope has no original topic: reported, not published.
    let run = b.ok(&[
        "dlq",
        "redrive",
        "orders.dlq",
        "--offsets",
        "4",
        "--execute",
    ]);
    assert!(
        run.stdout.contains("skip orders.dlq/0/4: no target"),
        "{}",
        run.stdout
    );
    assert_eq!(b.read("orders").len(), 2);
    // With --to it can go.
    b.ok(&[
        "dlq",
        "redrive",
        "orders.dlq",
        "--offsets",
        "4",
        "--to",
        "orders.replay",
        "--execute",
    ]);
    assert_eq!(b.read("orders.replay").len(), 3);
    // Everything is redriven now: a full redrive does nothing.
    let run = b.ok(&[
        "dlq",
        "redrive",
        "orders.dlq",
        "--to",
        "orders.replay",
        "--execute",
    ]);
    assert!(
        run.stderr
            .contains("redriven 0 record(s), 5 already redriven"),
        "{}",
        run.stderr
    );
    assert_eq!(b.read("orders.replay").len(), 3);
}

#[test]
fn bad_input_is_refused_and_publishes_nothing() {
    let b = Broker::start();
    dlq_with_records(&b);
    let cases: &[(&[&str], &str)] = &[
        (
            &["dlq", "redrive", "orders.dlq", "--error-class", "fatal"],
            "retryable, non-retryable or park",
        ),
        (
            &["dlq", "redrive", "orders.dlq", "--offsets", "5..2"],
            "empty offset range",
        ),
        (
            &["dlq", "redrive", "orders.dlq", "--older-than", "5"],
            "needs a unit",
        ),
        (
            &[
                "dlq",
                "redrive",
                "orders.dlq",
                "--to",
                "bad topic",
                "--execute",
            ],
            "not a valid topic name",
        ),
        (
            &[
                "dlq",
                "redrive",
                "orders.dlq",
                "--to",
                "nowhere",
                "--execute",
            ],
            "do not exist",
        ),
        (&["dlq", "inspect", "missing.dlq"], "not found"),
        (&["dlq", "redrive", "missing.dlq", "--execute"], "not found"),
    ];
    for (args, message) in cases {
        let run = b.cli(args);
        assert_ne!(run.code, Some(0), "{args:?} should fail");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    assert!(b.read("orders").is_empty());
    assert!(b.read("orders.replay").is_empty());
    assert!(b.read("nowhere").is_empty());
    assert!(b.read("orders.dlq.redriven").is_empty());
}
