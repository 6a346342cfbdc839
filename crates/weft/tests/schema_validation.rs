//! Broker-side schema validation (`weft.schema.validation`) against a real `weft serve`:
//! schemas registered over the registry's HTTP API, records produced with librdkafka (the
//! real client) and with raw Produce v9 requests (to read `error_message` and
//! `record_errors`, which librdkafka does not hand to the application).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use serde_json::{Value, json};
use weft_log::batch::{BuildOptions, Compression, Record};

use common::SAFETY;

const INVALID_RECORD: i16 = 87;

/// A record's (key, value), either possibly null.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);
const INVALID_CONFIG: i16 = 40;

// ---- the server ----

struct Weft {
    kafka: SocketAddr,
    registry: SocketAddr,
    // Dropped (killed) before `_dir` is removed.
    _server: common::Server,
    _dir: tempfile::TempDir,
}

/// `weft serve` with Kafka, HTTP and registry listeners on ephemeral ports.
fn start() -> Weft {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::Server::start(dir.path());
    Weft {
        kafka: server.kafka_addr(),
        registry: server.registry_addr(),
        _server: server,
        _dir: dir,
    }
}

// ---- the registry over HTTP ----

/// A minimal HTTP/1.1 exchange: (status, JSON body).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect registry");
    s.set_read_timeout(Some(SAFETY)).expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text.split_once("\r\n\r\n").expect("http head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn register(w: &Weft, subject: &str, schema: &str) -> u32 {
    let (status, body) = http(
        w.registry,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&json!({ "schema": schema })),
    );
    assert_eq!(status, 200, "register under {subject}: {body}");
    body["id"].as_u64().expect("id") as u32
}

const ORDER: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string"}]}"#;
const CUSTOMER: &str =
    r#"{"type":"record","name":"Customer","fields":[{"name":"name","type":"string"}]}"#;

// ---- payloads ----

fn zigzag(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// An `Order` in Avro binary behind the Confluent prefix for schema `id`.
fn framed_order(id: u32, order_id: i64, note: &str) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    zigzag(order_id, &mut out);
    zigzag(note.len() as i64, &mut out);
    out.extend_from_slice(note.as_bytes());
    out
}

/// The Confluent prefix for `id` followed by `body`.
fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

// ---- a raw Kafka client ----

struct Raw {
    s: TcpStream,
    correlation: i32,
}

impl Raw {
    fn connect(w: &Weft) -> Raw {
        let s = TcpStream::connect(w.kafka).expect("connect kafka");
        s.set_read_timeout(Some(SAFETY)).expect("timeout");
        Raw { s, correlation: 0 }
    }

    fn request<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("schema-validation-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("header");
        req.encode(&mut body, version).expect("body");
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.s.write_all(&frame).expect("send");
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).expect("response length");
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf).expect("response");
        let mut resp = Bytes::from(buf);
        let hv = <R::Response as HeaderVersion>::header_version(version);
        let h = ResponseHeader::decode(&mut resp, hv).expect("response header");
        assert_eq!(h.correlation_id, self.correlation);
        R::Response::decode(&mut resp, version).expect("response body")
    }

    /// Creates `topic` with `configs`; the error code.
    fn create_topic(&mut self, topic: &str, configs: &[(&str, &str)]) -> i16 {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string((*k).to_owned()))
                    .with_value(Some(StrBytes::from_string((*v).to_owned())))
            })
            .collect();
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
                    .with_configs(configs),
            ]);
        self.request(5, &req).topics[0].error_code
    }

    /// IncrementalAlterConfigs SET of `name`; the error code.
    fn set_config(&mut self, topic: &str, name: &str, value: &str) -> i16 {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(name.to_owned()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(value.to_owned()))),
                ]),
        ]);
        self.request(1, &req).responses[0].error_code
    }

    /// The topic's configs as DescribeConfigs reports them.
    fn describe(&mut self, topic: &str) -> Vec<(String, String)> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(None),
        ]);
        let resp = self.request(3, &req);
        resp.results[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Produce v9 of one batch of `(key, value)` records to partition 0.
    fn produce(
        &mut self,
        topic: &str,
        records: &[KeyValue],
        compression: Compression,
    ) -> ProduceResponse {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                offset: i as u64,
                timestamp: 1_700_000_000_000,
                key: k.clone().map(Bytes::from),
                value: v.clone().map(Bytes::from),
                headers: Vec::new(),
            })
            .collect();
        let batch = weft_log::batch::build(
            BuildOptions {
                compression,
                ..BuildOptions::default()
            },
            &records,
        )
        .expect("batch");
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(batch))),
                    ]),
            ]);
        self.request(9, &req)
    }
}

/// (error code, error message, record errors) of the only partition of `r`.
fn outcome(r: &ProduceResponse) -> (i16, String, Vec<(i32, String)>) {
    let p = &r.responses[0].partition_responses[0];
    (
        p.error_code,
        p.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        p.record_errors
            .iter()
            .map(|e| {
                (
                    e.batch_index,
                    e.batch_index_error_message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect(),
    )
}

// ---- librdkafka ----

/// Collects delivery results: Ok(offset) or the error code.
struct Collect(std::sync::mpsc::Sender<Result<i64, RDKafkaErrorCode>>);

impl ClientContext for Collect {}

impl ProducerContext for Collect {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let out = match r {
            Ok(m) => Ok(m.offset()),
            Err((KafkaError::MessageProduction(code), _)) => Err(*code),
            Err((e, _)) => panic!("unexpected delivery error {e}"),
        };
        let _ = self.0.send(out);
    }
}

/// Produces `(key, value)` records with librdkafka (`compression.type` = `codec`, all in
/// one batch when possible) and returns each delivery result in order.
fn rd_produce(
    w: &Weft,
    topic: &str,
    codec: &str,
    records: &[(Option<Vec<u8>>, Vec<u8>)],
) -> Vec<Result<i64, RDKafkaErrorCode>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let producer: ThreadedProducer<Collect> = ClientConfig::new()
        .set("bootstrap.servers", w.kafka.to_string())
        .set("compression.type", codec)
        .set("linger.ms", "200")
        .set("message.timeout.ms", "60000")
        .create_with_context(Collect(tx))
        .expect("producer");
    for (k, v) in records {
        let mut r: BaseRecord<'_, Vec<u8>, Vec<u8>> = BaseRecord::to(topic).payload(v);
        if let Some(k) = k {
            r = r.key(k);
        }
        producer.send(r).map_err(|(e, _)| e).expect("enqueue");
    }
    producer.flush(SAFETY).expect("flush");
    (0..records.len())
        .map(|_| rx.recv_timeout(SAFETY).expect("delivery report"))
        .collect()
}

/// Every value in partition 0 of `topic`, read with librdkafka from the beginning.
fn read_all(w: &Weft, topic: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", w.kafka.to_string())
        .set("group.id", format!("read-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, SAFETY)
        .expect("watermarks");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + SAFETY;
    while (out.len() as i64) < high {
        assert!(
            Instant::now() < deadline,
            "read only {} of {high}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}

fn high_watermark(w: &Weft, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", w.kafka.to_string())
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, 0, SAFETY)
        .expect("watermarks")
        .1
}

// ---- tests ----

#[test]
fn config_values_are_checked_and_described() {
    let w = start();
    let mut raw = Raw::connect(&w);
    for (name, value) in [
        ("weft.schema.validation", "strict"),
        ("weft.schema.validation", "inherit"),
        ("weft.value.schema.validation", "yes"),
    ] {
        assert_eq!(
            raw.create_topic("bad", &[(name, value)]),
            INVALID_CONFIG,
            "{name}={value}"
        );
    }
    assert_eq!(
        raw.create_topic("checked", &[("weft.schema.validation", "FULL")]),
        0
    );
    assert_eq!(
        raw.set_config("checked", "weft.key.schema.validation", "sometimes"),
        INVALID_CONFIG
    );
    assert_eq!(
        raw.set_config("checked", "weft.key.schema.validation", "none"),
        0
    );
    let described = raw.describe("checked");
    let get = |n: &str| {
        described
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{n} not described: {described:?}"))
    };
    // IncrementalAlterConfigs SET replaced only the key setting.
    assert_eq!(get("weft.schema.validation"), "full");
    assert_eq!(get("weft.key.schema.validation"), "none");
    assert_eq!(get("weft.value.schema.validation"), "inherit");
    // Nothing was created for the refused topic.
    assert_eq!(
        raw.set_config("bad", "weft.schema.validation", "id"),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION for a topic whose creation was refused"
    );
}

#[test]
fn id_level_with_librdkafka() {
    let w = start();
    let order = register(&w, "orders-value", ORDER);
    let customer = register(&w, "customers-value", CUSTOMER);
    assert_ne!(order, customer);
    let mut raw = Raw::connect(&w);
    assert_eq!(
        raw.create_topic("orders", &[("weft.schema.validation", "id")]),
        0
    );
    let good = framed_order(order, 1, "first");
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("valid Avro", good.clone(), true),
        ("plain JSON", br#"{"id":1,"note":"x"}"#.to_vec(), false),
        ("unknown id", framed_order(9_999, 1, "x"), false),
        (
            "another subject's id",
            framed_order(customer, 1, "x"),
            false,
        ),
        ("empty value", Vec::new(), false),
    ];
    let mut accepted = Vec::new();
    for (what, value, ok) in cases {
        // One record per producer: a refused record refuses its whole batch.
        let got = rd_produce(&w, "orders", "none", &[(None, value.clone())]);
        match (ok, &got[0]) {
            (true, Ok(_)) => accepted.push(value),
            (false, Err(RDKafkaErrorCode::InvalidRecord)) => {}
            _ => panic!("{what}: got {got:?}"),
        }
    }
    assert_eq!(read_all(&w, "orders"), accepted);
}

#[test]
fn refusals_name_the_problem_and_append_nothing() {
    let w = start();
    let order = register(&w, "orders-value", ORDER);
    let customer = register(&w, "customers-value", CUSTOMER);
    let mut raw = Raw::connect(&w);
    assert_eq!(
        raw.create_topic("orders", &[("weft.schema.validation", "id")]),
        0
    );
    let resp = raw.produce(
        "orders",
        &[
            (None, Some(framed_order(order, 1, "ok"))),
            (None, Some(br#"{"id":1}"#.to_vec())),
            (None, Some(framed_order(17_000, 1, "x"))),
            (None, Some(framed_order(customer, 1, "x"))),
            (None, None),
            (None, Some(vec![0, 0, 1])),
        ],
        Compression::None,
    );
    let (code, message, errors) = outcome(&resp);
    assert_eq!(code, INVALID_RECORD, "{message}");
    assert!(
        message.starts_with("record 1 value: no Confluent wire-format prefix"),
        "{message}"
    );
    assert!(message.contains("4 records refused"), "{message}");
    let indexes: Vec<i32> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, vec![1, 2, 3, 5], "{errors:?}");
    assert!(errors[0].1.contains("magic byte"), "{errors:?}");
    assert!(
        errors[1].1.contains("schema id 17000 is unknown"),
        "{errors:?}"
    );
    assert!(
        errors[2].1.contains(&format!(
            "schema id {customer} is not registered under subject orders-value"
        )),
        "{errors:?}"
    );
    assert!(errors[3].1.contains("too short"), "{errors:?}");
    assert_eq!(
        high_watermark(&w, "orders"),
        0,
        "nothing of the batch was appended"
    );

    // The same batch without the bad records goes in whole; a null value (tombstone) passes.
    let resp = raw.produce(
        "orders",
        &[(None, Some(framed_order(order, 1, "ok"))), (None, None)],
        Compression::None,
    );
    assert_eq!(outcome(&resp).0, 0, "{:?}", outcome(&resp));
    assert_eq!(high_watermark(&w, "orders"), 2);
}

#[test]
fn full_level_decodes_payloads() {
    let w = start();
    let order = register(&w, "strict-value", ORDER);
    register(&w, "lenient-value", ORDER);
    let mut raw = Raw::connect(&w);
    assert_eq!(
        raw.create_topic("strict", &[("weft.schema.validation", "full")]),
        0
    );
    assert_eq!(
        raw.create_topic("lenient", &[("weft.schema.validation", "id")]),
        0
    );
    // A long, then a string claiming 60 bytes that are not there.
    let truncated = framed(order, &[2, 120, b'a']);
    let resp = raw.produce(
        "strict",
        &[(None, Some(truncated.clone()))],
        Compression::None,
    );
    let (code, message, errors) = outcome(&resp);
    assert_eq!(code, INVALID_RECORD);
    assert!(
        message.contains(&format!(
            "record 0 value: does not decode with schema id {order} of subject strict-value"
        )),
        "{message}"
    );
    assert_eq!(errors.len(), 1);
    // Trailing bytes after a complete datum do not decode either.
    let trailing = [framed_order(order, 5, "n"), vec![9, 9]].concat();
    let (code, message, _) =
        outcome(&raw.produce("strict", &[(None, Some(trailing))], Compression::None));
    assert_eq!(code, INVALID_RECORD, "{message}");
    // A valid datum passes.
    let good = framed_order(order, 7, "fine");
    assert_eq!(
        outcome(&raw.produce("strict", &[(None, Some(good.clone()))], Compression::None)).0,
        0
    );
    // `id` only checks the prefix: the same broken payload is accepted there.
    assert_eq!(
        outcome(&raw.produce("lenient", &[(None, Some(truncated))], Compression::None)).0,
        0
    );
    assert_eq!(read_all(&w, "strict"), vec![good]);
}

#[test]
fn compressed_batches_are_validated() {
    let w = start();
    let order = register(&w, "packed-value", ORDER);
    let mut raw = Raw::connect(&w);
    assert_eq!(
        raw.create_topic("packed", &[("weft.schema.validation", "full")]),
        0
    );
    let mut expected = Vec::new();
    for (n, (codec, compression)) in [
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
    ]
    .into_iter()
    .enumerate()
    {
        // Raw: a compressed batch with one bad record in the middle is refused whole.
        let mut records: Vec<KeyValue> = (0..20)
            .map(|i| {
                (
                    None,
                    Some(framed_order(order, i, "compressible compressible")),
                )
            })
            .collect();
        records[13].1 = Some(b"not framed".to_vec());
        let (code, message, errors) = outcome(&raw.produce("packed", &records, compression));
        assert_eq!(code, INVALID_RECORD, "{codec}: {message}");
        assert_eq!(errors.len(), 1, "{codec}");
        assert_eq!(errors[0].0, 13, "{codec}");

        // librdkafka: all valid in one compressed batch goes in; one bad record in the
        // same batch refuses every record of it.
        let valid: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..10)
            .map(|i| (None, framed_order(order, (n * 100 + i) as i64, codec)))
            .collect();
        let got = rd_produce(&w, "packed", codec, &valid);
        assert!(got.iter().all(Result::is_ok), "{codec}: {got:?}");
        expected.extend(valid.into_iter().map(|(_, v)| v));
        let mut mixed = valid_with_bad(order, codec);
        let got = rd_produce(&w, "packed", codec, &mixed);
        assert!(
            got.iter()
                .all(|r| *r == Err(RDKafkaErrorCode::InvalidRecord)),
            "{codec}: {got:?}"
        );
        mixed.clear();
    }
    assert_eq!(read_all(&w, "packed"), expected);
}

/// Ten valid records with a truncated one among them.
fn valid_with_bad(id: u32, codec: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let mut v: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..10)
        .map(|i| (None, framed_order(id, 1000 + i, codec)))
        .collect();
    v[4].1 = framed(id, &[2, 120]);
    v
}

#[test]
fn key_and_value_levels_are_independent() {
    let w = start();
    let order = register(&w, "keyed-value", ORDER);
    let key = register(&w, "keyed-key", r#""long""#);
    let mut raw = Raw::connect(&w);
    // Keys checked, values not.
    assert_eq!(
        raw.create_topic(
            "keyed",
            &[
                ("weft.key.schema.validation", "full"),
                ("weft.value.schema.validation", "none")
            ]
        ),
        0
    );
    let mut long_key = vec![0];
    long_key.extend_from_slice(&key.to_be_bytes());
    zigzag(42, &mut long_key);
    let json = br#"{"free":"form"}"#.to_vec();
    let resp = raw.produce(
        "keyed",
        &[(Some(long_key.clone()), Some(json.clone()))],
        Compression::None,
    );
    assert_eq!(outcome(&resp).0, 0, "{:?}", outcome(&resp));
    let (code, message, _) = outcome(&raw.produce(
        "keyed",
        &[(Some(b"order-1".to_vec()), Some(framed_order(order, 1, "x")))],
        Compression::None,
    ));
    assert_eq!(code, INVALID_RECORD);
    assert!(
        message.starts_with("record 0 key: no Confluent wire-format prefix"),
        "{message}"
    );
    assert!(
        message.contains("weft.key.schema.validation=none"),
        "{message}"
    );
    // A value id is no key id: keyed-key does not hold the Order schema.
    let (code, message, _) = outcome(&raw.produce(
        "keyed",
        &[(Some(framed_order(order, 1, "x")), None)],
        Compression::None,
    ));
    assert_eq!(code, INVALID_RECORD);
    assert!(
        message.contains("not registered under subject keyed-key"),
        "{message}"
    );

    // Values checked (topic-wide id), keys left alone by an override: string keys pass.
    register(&w, "plainkeys-value", ORDER);
    assert_eq!(
        raw.create_topic(
            "plainkeys",
            &[
                ("weft.schema.validation", "id"),
                ("weft.key.schema.validation", "none")
            ]
        ),
        0
    );
    let got = rd_produce(
        &w,
        "plainkeys",
        "none",
        &[(Some(b"order-1".to_vec()), framed_order(order, 1, "x"))],
    );
    assert!(got[0].is_ok(), "{got:?}");
    let got = rd_produce(
        &w,
        "plainkeys",
        "none",
        &[(Some(b"order-2".to_vec()), json)],
    );
    assert_eq!(got[0], Err(RDKafkaErrorCode::InvalidRecord));
}

#[test]
fn a_newly_registered_schema_is_accepted_soon_after() {
    let w = start();
    let customer = register(&w, "customers-value", CUSTOMER);
    let mut raw = Raw::connect(&w);
    assert_eq!(
        raw.create_topic("late", &[("weft.schema.validation", "id")]),
        0
    );
    let mut value = vec![0];
    value.extend_from_slice(&customer.to_be_bytes());
    zigzag(3, &mut value);
    value.extend_from_slice(b"Ada");
    let (code, message, _) =
        outcome(&raw.produce("late", &[(None, Some(value.clone()))], Compression::None));
    assert_eq!(code, INVALID_RECORD);
    assert!(
        message.contains("not registered under subject late-value"),
        "{message}"
    );
    // The same schema under this topic's subject gets the same id; the broker's negative
    // answer expires after a second, so a retry loop sees it accepted.
    assert_eq!(register(&w, "late-value", CUSTOMER), customer);
    let deadline = Instant::now() + SAFETY;
    loop {
        let (code, message, _) =
            outcome(&raw.produce("late", &[(None, Some(value.clone()))], Compression::None));
        if code == 0 {
            break;
        }
        assert_eq!(code, INVALID_RECORD, "{message}");
        assert!(Instant::now() < deadline, "still refused: {message}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_all(&w, "late"), vec![value]);
}

#[test]
fn protobuf_message_indexes_are_checked() {
    let w = start();
    let (status, body) = http(
        w.registry,
        "POST",
        "/subjects/payments-value/versions",
        Some(&json!({
            "schemaType": "PROTOBUF",
            "schema": "syntax = \"proto3\";\npackage shop;\nmessage Payment {\n  int64 cents = 1;\n}\n",
        })),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().expect("id") as u32;
    let mut raw = Raw::connect(&w);
    assert_eq!(
        raw.create_topic("payments", &[("weft.schema.validation", "full")]),
        0
    );
    // Index list [0] (the one-byte shorthand), then cents = 42.
    let good = framed(id, &[0, 0x08, 42]);
    let (code, message, _) =
        outcome(&raw.produce("payments", &[(None, Some(good.clone()))], Compression::None));
    assert_eq!(code, 0, "{message}");
    // Index list [3]: there is no fourth message.
    let (code, message, _) = outcome(&raw.produce(
        "payments",
        &[(None, Some(framed(id, &[2, 6, 0x08, 42])))],
        Compression::None,
    ));
    assert_eq!(code, INVALID_RECORD);
    assert!(
        message.contains("name no message of schema id"),
        "{message}"
    );
    // Field 1 as a length-delimited string instead of a varint does not decode.
    let (code, message, _) = outcome(&raw.produce(
        "payments",
        &[(None, Some(framed(id, &[0, 0x0a, 1, b'x'])))],
        Compression::None,
    ));
    assert_eq!(code, INVALID_RECORD, "{message}");
    assert!(message.contains("does not decode"), "{message}");
    assert_eq!(read_all(&w, "payments"), vec![good]);
}
