//! Compatibility with librdkafka (through the `rdkafka` crate): admin, idempotent produce with
//! every codec, consume without a group, offsets by time, DeleteRecords, configs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::TestBroker;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Generous bound so a broken broker fails the test instead of hanging it; never a
/// performance threshold.
const HANG: Duration = Duration::from_secs(180);

fn admin(b: &TestBroker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin client")
}

fn create_topic(b: &TestBroker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let a = admin(b);
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r =
        b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
    assert_eq!(r.len(), 1);
    r[0].as_ref()
        .unwrap_or_else(|e| panic!("create topic {name}: {e:?}"));
}

#[derive(Default)]
struct Delivery {
    ok: AtomicUsize,
    errors: Mutex<Vec<String>>,
}
impl ClientContext for Delivery {}
impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.errors.lock().expect("lock").push(e.to_string()),
        }
    }
}

fn idempotent_producer(b: &TestBroker, codec: &str) -> BaseProducer<Delivery> {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("enable.idempotence", "true")
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create_with_context(Delivery::default())
        .expect("producer")
}

fn send(p: &BaseProducer<Delivery>, mut record: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

fn flush(p: &BaseProducer<Delivery>, expected: usize) {
    p.flush(HANG).expect("flush");
    let errors = p.context().errors.lock().expect("lock").clone();
    assert!(
        errors.is_empty(),
        "delivery errors: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(p.context().ok.load(Ordering::Relaxed), expected);
}

fn consumer(b: &TestBroker) -> BaseConsumer {
    // librdkafka's consumer needs a group.id even for assign(); the group is never joined
    // (no subscribe, no commits), so no group coordinator is involved.
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "weft-test-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// Consumes exactly `n` messages from the beginning of every partition of `topic`.
fn consume_all(
    b: &TestBroker,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    let c = consumer(b);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(n);
    let start = Instant::now();
    while out.len() < n {
        assert!(
            start.elapsed() < HANG,
            "consumed only {} of {n} messages",
            out.len()
        );
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(e)) => panic!("consume: {e}"),
        }
    }
    // Nothing beyond what was produced.
    let extra = c.poll(Duration::from_millis(300));
    assert!(
        extra.is_none(),
        "unexpected extra message: {:?}",
        extra.map(|m| m.map(|m| m.offset()))
    );
    out
}

/// Idempotent produce of `n` keyed records with `codec`, consumed back: every record exactly
/// once, in order per key.
fn produce_and_consume(b: &TestBroker, codec: &str, n: usize) {
    let topic = format!("codec-{codec}");
    create_topic(b, &topic, 4, &[]);
    let p = idempotent_producer(b, codec);
    const KEYS: usize = 97;
    for i in 0..n {
        let key = format!("k{}", i % KEYS);
        let value = format!("{key}:{}:{}", i / KEYS, "x".repeat(i % 50));
        send(
            &p,
            BaseRecord::to(&topic)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    flush(&p, n);
    let h = b.first_batch(&topic, 0);
    let want = ["none", "gzip", "snappy", "lz4", "zstd"]
        .iter()
        .position(|c| *c == codec);
    assert_eq!(
        Some(h.compression().expect("codec").id() as usize),
        want,
        "{codec}"
    );
    assert!(h.producer_id >= 0, "{codec}: not idempotent");
    let got = consume_all(b, &topic, 4, n);
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for (partition, offset, key, value) in got {
        let key = String::from_utf8(key).expect("utf8 key");
        let value = String::from_utf8(value).expect("utf8 value");
        let mut parts = value.split(':');
        assert_eq!(parts.next(), Some(key.as_str()));
        let seq: usize = parts.next().and_then(|s| s.parse().ok()).expect("seq");
        per_key.entry(key.clone()).or_default().push(seq);
        assert_eq!(
            *partition_of.entry(key).or_insert(partition),
            partition,
            "a key moved partitions"
        );
        let last = last_offset.entry(partition).or_insert(-1);
        assert!(
            offset > *last,
            "offsets go backwards in partition {partition}"
        );
        *last = offset;
    }
    assert_eq!(per_key.len(), KEYS);
    for (key, seqs) in per_key {
        let k: usize = key[1..].parse().expect("key number");
        let expected = (n - k).div_ceil(KEYS);
        assert_eq!(
            seqs,
            (0..expected).collect::<Vec<_>>(),
            "key {key}: order or exactly-once broken"
        );
    }
}

#[test]
fn idempotent_produce_and_consume_with_every_codec() {
    let b = TestBroker::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        produce_and_consume(&b, codec, 20_000);
    }
}

#[test]
fn admin_create_describe_partitions_and_invalid_names() {
    let b = TestBroker::start();
    create_topic(&b, "orders", 3, &[("retention.ms", "3600000")]);
    let a = admin(&b);
    // Already exists.
    let t = NewTopic::new("orders", 3, TopicReplication::Fixed(1));
    let r =
        b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
    assert_eq!(
        r[0],
        Err(("orders".to_owned(), RDKafkaErrorCode::TopicAlreadyExists))
    );
    // Invalid names are refused.
    for bad in ["bad name", "slash/topic", ".."] {
        let t = NewTopic::new(bad, 1, TopicReplication::Fixed(1));
        let r =
            b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
                .expect("create_topics");
        assert_eq!(
            r[0],
            Err((bad.to_owned(), RDKafkaErrorCode::InvalidTopic)),
            "{bad}"
        );
    }
    // Replication factor above the one broker.
    let t = NewTopic::new("replicated", 1, TopicReplication::Fixed(3));
    let r =
        b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
    assert_eq!(
        r[0],
        Err((
            "replicated".to_owned(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))
    );
    // Grow partitions, and refuse shrinking.
    let r = b
        .rt
        .block_on(a.create_partitions([&NewPartitions::new("orders", 5)], &AdminOptions::new()))
        .expect("create_partitions");
    assert_eq!(r[0], Ok("orders".to_owned()));
    let r = b
        .rt
        .block_on(a.create_partitions([&NewPartitions::new("orders", 2)], &AdminOptions::new()))
        .expect("create_partitions");
    assert_eq!(
        r[0],
        Err(("orders".to_owned(), RDKafkaErrorCode::InvalidPartitions))
    );
    let md = a
        .inner()
        .fetch_metadata(Some("orders"), TIMEOUT)
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 5);
    assert_eq!(md.brokers()[0].port() as u16, b.addr.port());
    // Metadata for an invalid name: INVALID_TOPIC_EXCEPTION, nothing created.
    let md = a
        .inner()
        .fetch_metadata(Some("no good"), TIMEOUT)
        .expect("metadata");
    assert_eq!(
        md.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::InvalidTopic)
    );
    // Delete.
    let r =
        b.rt.block_on(a.delete_topics(&["orders"], &AdminOptions::new()))
            .expect("delete_topics");
    assert_eq!(r[0], Ok("orders".to_owned()));
    let md = a.inner().fetch_metadata(None, TIMEOUT).expect("metadata");
    assert!(md.topics().iter().all(|t| t.name() != "orders"));
}

#[test]
fn auto_create_on_produce_and_headers_round_trip() {
    let b = TestBroker::start();
    let p = idempotent_producer(&b, "none");
    let headers = OwnedHeaders::new().insert(Header {
        key: "trace",
        value: Some("abc"),
    });
    send(
        &p,
        BaseRecord::to("auto-created")
            .key(&b"k"[..])
            .payload(&b"v"[..])
            .headers(headers),
    );
    flush(&p, 1);
    let c = consumer(&b);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("auto-created", 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let start = Instant::now();
    let m = loop {
        assert!(start.elapsed() < HANG, "no message");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            break m.expect("message").detach();
        }
    };
    assert_eq!(m.payload(), Some(&b"v"[..]));
    let h = m.headers().expect("headers");
    assert_eq!(h.get(0).key, "trace");
    assert_eq!(h.get(0).value, Some(&b"abc"[..]));
}

#[test]
fn offsets_by_timestamp_and_delete_records() {
    let b = TestBroker::start();
    create_topic(&b, "times", 1, &[]);
    let p = idempotent_producer(&b, "none");
    let base = 1_700_000_000_000i64;
    for i in 0..10i64 {
        let v = format!("v{i}");
        send(
            &p,
            BaseRecord::to("times")
                .partition(0)
                .key(&b"k"[..])
                .payload(v.as_bytes())
                .timestamp(base + i * 1000),
        );
    }
    flush(&p, 10);
    let c = consumer(&b);
    let cases: &[(i64, Offset)] = &[
        (base - 1, Offset::Offset(0)),
        (base, Offset::Offset(0)),
        (base + 2500, Offset::Offset(3)),
        (base + 9000, Offset::Offset(9)),
        (base + 9001, Offset::End),
    ];
    for (ts, want) in cases {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, Offset::Offset(*ts))
            .expect("tpl");
        let r = c
            .offsets_for_times(tpl, TIMEOUT)
            .expect("offsets_for_times");
        let got = r.find_partition("times", 0).expect("partition").offset();
        assert_eq!(got, *want, "timestamp {ts}");
    }
    assert_eq!(
        c.fetch_watermarks("times", 0, TIMEOUT).expect("watermarks"),
        (0, 10)
    );
    // DeleteRecords moves the low watermark.
    let a = admin(&b);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(4))
        .expect("tpl");
    let r =
        b.rt.block_on(a.delete_records(&tpl, &AdminOptions::new()))
            .expect("delete_records");
    let e = r.find_partition("times", 0).expect("partition");
    assert_eq!(e.error(), Ok(()));
    assert_eq!(e.offset(), Offset::Offset(4));
    assert_eq!(
        c.fetch_watermarks("times", 0, TIMEOUT).expect("watermarks"),
        (4, 10)
    );
    let got = consume_all(&b, "times", 1, 6);
    assert_eq!(got.first().map(|m| m.1), Some(4));
    // Beyond the end is refused.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(11))
        .expect("tpl");
    let r =
        b.rt.block_on(a.delete_records(&tpl, &AdminOptions::new()))
            .expect("delete_records");
    assert!(
        r.find_partition("times", 0)
            .expect("partition")
            .error()
            .is_err()
    );
}

#[test]
fn alter_config_and_read_it_back() {
    let b = TestBroker::start();
    create_topic(&b, "configured", 1, &[("cleanup.policy", "compact")]);
    let a = admin(&b);
    let describe = |name: &str| {
        let r = b
            .rt
            .block_on(a.describe_configs([&ResourceSpecifier::Topic(name)], &AdminOptions::new()))
            .expect("describe");
        r.into_iter().next().expect("one").expect("resource")
    };
    let res = describe("configured");
    let e = res.get("cleanup.policy").expect("cleanup.policy");
    assert_eq!(
        (e.value.as_deref(), &e.source),
        (Some("compact"), &ConfigSource::DynamicTopic)
    );
    let e = res.get("retention.ms").expect("retention.ms");
    assert_eq!(
        (e.value.as_deref(), &e.source, e.is_default),
        (Some("604800000"), &ConfigSource::Default, true)
    );
    assert!(res.get("weft.durability").is_some());
    // AlterConfigs replaces the overrides.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("configured"))
        .set("retention.ms", "12345")
        .set("weft.durability", "batch");
    let r =
        b.rt.block_on(a.alter_configs([&alter], &AdminOptions::new()))
            .expect("alter");
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let res = describe("configured");
    assert_eq!(
        res.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("12345")
    );
    assert_eq!(
        res.get("weft.durability").and_then(|e| e.value.as_deref()),
        Some("batch")
    );
    assert_eq!(
        res.get("cleanup.policy").map(|e| &e.source),
        Some(&ConfigSource::Default)
    );
    // Invalid values are refused and change nothing.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("configured")).set("retention.ms", "soon");
    // (The rdkafka crate drops per-resource AlterConfigs errors, so only the effect is checked.)
    b.rt.block_on(a.alter_configs([&alter], &AdminOptions::new()))
        .expect("alter");
    assert_eq!(
        describe("configured")
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("12345")
    );
    // CreateTopics with a bad config is refused.
    let t = NewTopic::new("badly-configured", 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "shred");
    let r =
        b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
    assert_eq!(
        r[0],
        Err((
            "badly-configured".to_owned(),
            RDKafkaErrorCode::InvalidConfig
        ))
    );
    // Configs survive a restart.
    let dir = b.dir.clone();
    let tmp = b.stop();
    let b = TestBroker::start_in(&dir, |_| {});
    let a = admin(&b);
    let r =
        b.rt.block_on(a.describe_configs(
            [&ResourceSpecifier::Topic("configured")],
            &AdminOptions::new(),
        ))
        .expect("describe");
    let res = r.into_iter().next().expect("one").expect("resource");
    assert_eq!(
        res.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("12345")
    );
    drop(b);
    drop(tmp);
}

#[test]
fn records_and_producer_state_survive_restart() {
    let b = TestBroker::start();
    create_topic(&b, "durable", 2, &[]);
    let p = idempotent_producer(&b, "lz4");
    for i in 0..2000 {
        let v = format!("{i}");
        send(
            &p,
            BaseRecord::to("durable")
                .key(v.as_bytes())
                .payload(v.as_bytes()),
        );
    }
    flush(&p, 2000);
    drop(p);
    let dir = b.dir.clone();
    let tmp = b.stop();
    let b = TestBroker::start_in(&dir, |_| {});
    let got = consume_all(&b, "durable", 2, 2000);
    let mut values: Vec<usize> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.3).parse().expect("number"))
        .collect();
    values.sort_unstable();
    assert_eq!(values, (0..2000).collect::<Vec<_>>());
    drop(b);
    drop(tmp);
}
