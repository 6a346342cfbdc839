//! Raw wire tests: bad input on one connection never hurts another; protocol-level errors
//! (v0 ApiVersions reply, produce errors, idempotent-producer errors) as Kafka reports them.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use common::TestBroker;
use common::raw::{Raw, creatable, healthy};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest,
    ProduceRequest, ProduceResponse, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use weft_log::batch::{self, BuildOptions, Compression, Record};

fn create(c: &mut Raw, name: &str, configs: &[(&str, &str)]) {
    let t = creatable(name, configs);
    let r: CreateTopicsResponse = c.request(
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn produce(c: &mut Raw, topic: &str, records: Bytes, acks: i16) -> Option<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    if acks == 0 {
        let f = c.frame(9, &req);
        c.send_raw(&f);
        return None;
    }
    let r: ProduceResponse = c.request(9, &req);
    let p = &r.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

fn batch(pid: i64, epoch: i16, seq: i32, keys: &[Option<&str>]) -> Bytes {
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            offset: i as u64,
            timestamp: 1_700_000_000_000 + i as i64,
            key: k.map(|k| Bytes::from(k.to_owned())),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![],
        })
        .collect();
    let opts = BuildOptions {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        compression: Compression::None,
        ..BuildOptions::default()
    };
    Bytes::from(batch::build(opts, &records).expect("build"))
}

fn log_end(c: &mut Raw, topic: &str) -> i64 {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let r: FetchResponse = c.request(12, &req);
    r.responses[0].partitions[0].high_watermark
}

#[test]
fn bad_input_closes_only_that_connection() {
    let b = TestBroker::start();
    let mut good = Raw::connect(&b);
    create(&mut good, "safe", &[]);
    assert_eq!(
        produce(
            &mut good,
            "safe",
            batch(-1, -1, -1, &[Some("a"), Some("b")]),
            -1
        ),
        Some((0, 0))
    );
    let before = log_end(&mut good, "safe");

    let frame_of = |api: i16, version: i16, body: &[u8]| {
        let mut f = Vec::new();
        f.put_i32((8 + body.len()) as i32);
        f.put_i16(api);
        f.put_i16(version);
        f.put_i32(1);
        f.extend_from_slice(body);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "huge length prefix",
            vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        ("negative length", vec![0xff, 0xff, 0xff, 0xfe, 0, 0]),
        ("frame shorter than a header", vec![0, 0, 0, 3, 0, 18, 0]),
        ("unknown api key", frame_of(9999, 0, &[])),
        (
            "api not served (JoinGroup)",
            frame_of(11, 0, &[0, 0, 0, 1, b'g']),
        ),
        ("version above the advertised range", frame_of(3, 99, &[])),
        // Lengths far beyond the frame: the codec would preallocate ~150 GB and abort the
        // process without the decoding guard.
        (
            "array length 2^31-1",
            frame_of(3, 1, &[0, 0, 0x7f, 0xff, 0xff, 0xff]),
        ),
        (
            "compact array length 2^32-2",
            frame_of(3, 12, &[0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ),
        (
            "produce v0 (message format v0)",
            frame_of(0, 0, &[0, 1, 0, 0, 0x75, 0x30, 0, 0, 0, 0]),
        ),
        (
            "metadata body truncated",
            frame_of(3, 1, &[0, 0, 0, 5, 0, 3, b'a']),
        ),
        ("produce body garbage", frame_of(0, 9, &[0xff; 40])),
        (
            "fetch with a bad string length",
            frame_of(1, 12, &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x10]),
        ),
    ];
    for (what, bytes) in cases {
        let mut bad = Raw::connect(&b);
        bad.send_raw(&bytes);
        bad.assert_closed(what);
        healthy(&mut good);
    }
    // A frame cut short by the peer closing.
    let mut bad = Raw::connect(&b);
    bad.send_raw(&[0, 0, 1, 0, 0, 3, 0, 1]);
    drop(bad);
    healthy(&mut good);
    // Nothing stored changed.
    assert_eq!(log_end(&mut good, "safe"), before);
}

#[test]
fn api_versions_too_new_gets_a_v0_error_reply() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    let frame = c.frame(4, &ApiVersionsRequest::default());
    let mut frame = frame;
    frame[6..8].copy_from_slice(&77i16.to_be_bytes()); // pretend v77
    c.send_raw(&frame);
    let mut resp = c.read_frame().expect("reply");
    assert_eq!(resp.get_i32(), c.correlation);
    let r = ApiVersionsResponse::decode(&mut resp, 0).expect("v0 body");
    assert_eq!(r.error_code, ResponseError::UnsupportedVersion.code());
    let produce = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("produce listed");
    assert_eq!(
        produce.min_version, 0,
        "librdkafka < 2.11.1 wants Produce 0 in range for compression"
    );
    // The connection stays usable.
    let r: ApiVersionsResponse = c.request(3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    for (api, v) in [
        (ApiKey::Fetch, 4),
        (ApiKey::Fetch, 10),
        (ApiKey::Produce, 3),
        (ApiKey::Produce, 7),
        (ApiKey::InitProducerId, 0),
        (ApiKey::ListOffsets, 1),
    ] {
        let k = r
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .expect("listed");
        assert!(
            k.min_version <= v && v <= k.max_version,
            "{api:?} v{v} not in range"
        );
    }
}

#[test]
fn produce_errors_as_kafka_reports_them() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "plain", &[("max.message.bytes", "200")]);
    create(&mut c, "compacted", &[("cleanup.policy", "compact")]);
    let code = |r: Option<(i16, i64)>| r.expect("response").0;
    // CRC mismatch.
    let mut bad = batch(-1, -1, -1, &[Some("k")]).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        code(produce(&mut c, "plain", Bytes::from(bad), 1)),
        ResponseError::CorruptMessage.code()
    );
    // Old message format (magic 1).
    let mut old = batch(-1, -1, -1, &[Some("k")]).to_vec();
    old[16] = 1;
    assert_eq!(
        code(produce(&mut c, "plain", Bytes::from(old), 1)),
        ResponseError::UnsupportedForMessageFormat.code()
    );
    // Truncated batch.
    let whole = batch(-1, -1, -1, &[Some("k")]);
    assert_eq!(
        code(produce(&mut c, "plain", whole.slice(..whole.len() - 3), 1)),
        ResponseError::CorruptMessage.code()
    );
    // Over max.message.bytes.
    let many: Vec<Option<&str>> = (0..20).map(|_| Some("key")).collect();
    assert_eq!(
        code(produce(&mut c, "plain", batch(-1, -1, -1, &many), 1)),
        ResponseError::MessageTooLarge.code()
    );
    // Keyless record on a compacted topic.
    assert_eq!(
        code(produce(&mut c, "compacted", batch(-1, -1, -1, &[None]), 1)),
        ResponseError::InvalidRecord.code()
    );
    // Produce never creates topics (Metadata does).
    assert_eq!(
        code(produce(&mut c, "nope", batch(-1, -1, -1, &[Some("k")]), 1)),
        ResponseError::UnknownTopicOrPartition.code()
    );
    // A good batch still goes through.
    assert_eq!(
        produce(&mut c, "plain", batch(-1, -1, -1, &[Some("k")]), 1),
        Some((0, 0))
    );
}

#[test]
fn idempotent_dedup_gaps_and_epochs() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "idem", &[]);
    let init: InitProducerIdResponse = c.request(
        4,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    );
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    let epoch = init.producer_epoch;
    let b3 = |seq: i32| batch(pid, epoch, seq, &[Some("a"), Some("b"), Some("c")]);
    assert_eq!(produce(&mut c, "idem", b3(0), -1), Some((0, 0)));
    assert_eq!(produce(&mut c, "idem", b3(3), -1), Some((0, 3)));
    // A retry gets the original offset and appends nothing.
    assert_eq!(produce(&mut c, "idem", b3(0), -1), Some((0, 0)));
    assert_eq!(produce(&mut c, "idem", b3(3), 1), Some((0, 3)));
    assert_eq!(log_end(&mut c, "idem"), 6);
    // A gap.
    assert_eq!(
        produce(&mut c, "idem", b3(9), 1).map(|r| r.0),
        Some(ResponseError::OutOfOrderSequenceNumber.code())
    );
    // Epoch bump (KIP-360) and then the old epoch is fenced.
    let bumped: InitProducerIdResponse = c.request(
        4,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch),
    );
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (pid, epoch + 1)
    );
    assert_eq!(
        produce(&mut c, "idem", batch(pid, epoch + 1, 0, &[Some("x")]), 1),
        Some((0, 6))
    );
    assert_eq!(
        produce(&mut c, "idem", b3(6), 1).map(|r| r.0),
        Some(ResponseError::InvalidProducerEpoch.code())
    );
    // acks=0: no response; the next request on the connection is still answered in order.
    assert_eq!(
        produce(&mut c, "idem", batch(-1, -1, -1, &[Some("z")]), 0),
        None
    );
    assert_eq!(log_end(&mut c, "idem"), 8);
    // The state survives a restart: the retry is still recognised.
    let dir = b.dir.clone();
    let tmp = b.stop();
    let b = TestBroker::start_in(&dir, |_| {});
    let mut c = Raw::connect(&b);
    assert_eq!(
        produce(&mut c, "idem", batch(pid, epoch + 1, 0, &[Some("x")]), 1),
        Some((0, 6))
    );
    assert_eq!(log_end(&mut c, "idem"), 8);
    // New producer ids never repeat across restarts.
    let again: InitProducerIdResponse = c.request(
        4,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    );
    assert_ne!(again.producer_id.0, pid);
    drop(b);
    drop(tmp);
}

fn fetch_req(
    topic: &str,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(max_bytes),
                ]),
        ])
}

#[test]
fn long_poll_is_woken_by_an_append_on_another_connection() {
    let b = TestBroker::start();
    let mut consumer = Raw::connect(&b);
    let mut producer = Raw::connect(&b);
    create(&mut producer, "poll", &[]);
    // max_wait far beyond the socket read timeout: only an append can answer it in time.
    let frame = consumer.frame(12, &fetch_req("poll", 0, 600_000, 1, 1 << 20));
    consumer.send_raw(&frame);
    // Let the fetch park (were it not parked yet, it would answer from the log at once and
    // the test would still hold: the pause only makes the wake-up path the one exercised).
    std::thread::sleep(Duration::from_millis(200));
    // The waiting fetch does not hold up produce on another connection.
    assert_eq!(
        produce(&mut producer, "poll", batch(-1, -1, -1, &[Some("k")]), 1),
        Some((0, 0))
    );
    let mut resp = consumer
        .read_frame()
        .expect("fetch answered after the append");
    let _ = kafka_protocol::messages::ResponseHeader::decode(&mut resp, 1).expect("header");
    let r = FetchResponse::decode(&mut resp, 12).expect("fetch response");
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 1));
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
    // Requests on one connection stay in order after the long poll.
    healthy(&mut consumer);
}

#[test]
fn fetch_returns_at_least_one_whole_batch_and_respects_limits() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "big", &[]);
    let big: Vec<Option<&str>> = vec![Some("a-key-that-is-long-enough"); 200];
    let first = batch(-1, -1, -1, &big);
    assert_eq!(produce(&mut c, "big", first.clone(), -1), Some((0, 0)));
    assert_eq!(
        produce(&mut c, "big", batch(-1, -1, -1, &[Some("k")]), -1),
        Some((0, 200))
    );
    // max_bytes of 10: still the whole first batch, and only it.
    let r: FetchResponse = c.request(12, &fetch_req("big", 0, 0, 1, 10));
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    assert_eq!(records.len(), first.len());
    let h = batch::BatchHeader::parse(&records).expect("header");
    assert_eq!((h.base_offset, h.last_offset_delta), (0, 199));
    // From the middle of a batch: the batch containing the offset.
    let r: FetchResponse = c.request(12, &fetch_req("big", 150, 0, 1, 1 << 20));
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    assert_eq!(
        batch::BatchHeader::parse(&records)
            .expect("header")
            .base_offset,
        0
    );
    // Out of range.
    let r: FetchResponse = c.request(12, &fetch_req("big", 500, 0, 1, 1 << 20));
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    // At the end with min_bytes 0: an empty answer at once.
    let r: FetchResponse = c.request(12, &fetch_req("big", 201, 0, 0, 1 << 20));
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 201));
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
}

#[test]
fn admin_apis_over_the_wire() {
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
        DescribeLogDirsResponse, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListOffsetsRequest,
        ListOffsetsResponse,
    };
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "adm", &[]);
    // Timestamps 1_700_000_000_000 + 0..3; the second batch's records are older.
    assert_eq!(
        produce(
            &mut c,
            "adm",
            batch(-1, -1, -1, &[Some("a"), Some("b"), Some("c")]),
            -1
        ),
        Some((0, 0))
    );
    // DescribeCluster: this node at the advertised address, the stored cluster id.
    let r: DescribeClusterResponse =
        c.request(1, &DescribeClusterRequest::default().with_endpoint_type(1));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.brokers[0].port, i32::from(b.addr.port()));
    assert_eq!(r.cluster_id.len(), 22);
    // ListOffsets: max timestamp (v7) is the last record here.
    let lo = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("adm")))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ]),
            ])
    };
    let at = |r: ListOffsetsResponse| {
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].offset,
            r.topics[0].partitions[0].timestamp,
        )
    };
    assert_eq!(at(c.request(7, &lo(-3))), (0, 2, 1_700_000_000_002));
    assert_eq!(at(c.request(7, &lo(-2))), (0, 0, -1));
    assert_eq!(at(c.request(7, &lo(-1))), (0, 3, -1));
    assert_eq!(
        at(c.request(7, &lo(1_700_000_000_001))),
        (0, 1, 1_700_000_000_001)
    );
    assert_eq!(at(c.request(7, &lo(1_800_000_000_000))), (0, -1, -1));
    // IncrementalAlterConfigs: SET, APPEND to a list, DELETE; unknown names refused.
    let inc = |configs: Vec<(&str, i8, Option<&str>)>| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("adm"))
                .with_configs(
                    configs
                        .into_iter()
                        .map(|(n, op, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(n.to_owned()))
                                .with_config_operation(op)
                                .with_value(v.map(|v| StrBytes::from_string(v.to_owned())))
                        })
                        .collect(),
                ),
        ])
    };
    let r: IncrementalAlterConfigsResponse = c.request(
        1,
        &inc(vec![
            ("retention.ms", 0, Some("1000")),
            ("cleanup.policy", 2, Some("compact")),
        ]),
    );
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    let r: IncrementalAlterConfigsResponse = c.request(1, &inc(vec![("no.such", 0, Some("1"))]));
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let r: IncrementalAlterConfigsResponse = c.request(1, &inc(vec![("retention.ms", 1, None)]));
    assert_eq!(r.responses[0].error_code, 0);
    // (Read back through DescribeConfigs in the librdkafka and kafka-python tests.)
    // DescribeLogDirs: the partition with its size.
    let r: DescribeLogDirsResponse =
        c.request(4, &DescribeLogDirsRequest::default().with_topics(None));
    let t = r.results[0]
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "adm")
        .expect("topic listed");
    assert!(t.partitions[0].partition_size > 0);
    // DescribeTopicPartitions: paging with a cursor.
    create(&mut c, "adm2", &[]);
    let req = DescribeTopicPartitionsRequest::default()
        .with_response_partition_limit(1)
        .with_topics(vec![
            TopicRequest::default().with_name(TopicName(StrBytes::from_static_str("adm"))),
            TopicRequest::default().with_name(TopicName(StrBytes::from_static_str("adm2"))),
        ]);
    let r: DescribeTopicPartitionsResponse = c.request(0, &req);
    assert_eq!(r.topics.len(), 1);
    let cursor = r.next_cursor.expect("cursor to the next topic");
    assert_eq!(cursor.topic_name.0.as_str(), "adm2");
    let next = req.clone().with_cursor(Some(
        kafka_protocol::messages::describe_topic_partitions_request::Cursor::default()
            .with_topic_name(cursor.topic_name)
            .with_partition_index(cursor.partition_index),
    ));
    let r: DescribeTopicPartitionsResponse = c.request(0, &next);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(
        r.topics[0].name.as_ref().map(|n| n.0.as_str()),
        Some("adm2")
    );
    assert!(r.next_cursor.is_none());
}

#[test]
fn idle_connections_are_closed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = TestBroker::start_in(tmp.path(), |c| {
        c.connections_max_idle = Duration::from_millis(200)
    });
    let mut idle = Raw::connect(&b);
    healthy(&mut idle);
    // Nothing sent: the broker closes it (the read timeout only bounds a hang).
    idle.assert_closed("idle connection");
    let mut fresh = Raw::connect(&b);
    healthy(&mut fresh);
    drop(b);
}

#[test]
fn incremental_fetch_sessions() {
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    for t in ["s1", "s2"] {
        create(&mut c, t, &[]);
        assert_eq!(
            produce(&mut c, t, batch(-1, -1, -1, &[Some("k")]), -1),
            Some((0, 0))
        );
    }
    let part = |offset: i64| {
        FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)
    };
    let topic = |name: &'static str, offset: i64| {
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(vec![part(offset)])
    };
    let req = |id: i32, epoch: i32, topics: Vec<FetchTopic>| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    };
    let names = |r: &FetchResponse| -> Vec<String> {
        r.responses.iter().map(|t| t.topic.0.to_string()).collect()
    };
    // New session: a full answer and a session id.
    let r: FetchResponse = c.request(12, &req(0, 0, vec![topic("s1", 0), topic("s2", 0)]));
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0);
    assert_eq!(names(&r), vec!["s1", "s2"]);
    // Incremental: both consumed up to 1 (clients name the partitions whose position
    // moved): nothing new anywhere, so nothing listed.
    let r: FetchResponse = c.request(12, &req(id, 1, vec![topic("s1", 1), topic("s2", 1)]));
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(names(&r).is_empty(), "{:?}", names(&r));
    // An append to s2: only s2 is listed, with the new record, though the request names
    // no partition (the session remembers the offsets).
    assert_eq!(
        produce(&mut c, "s2", batch(-1, -1, -1, &[Some("k")]), -1),
        Some((0, 1))
    );
    let r: FetchResponse = c.request(12, &req(id, 2, vec![]));
    assert_eq!(names(&r), vec!["s2"]);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 2);
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
    // Forget s2; a wrong epoch is refused; closing ends the session.
    let forget = req(id, 3, vec![]).with_forgotten_topics_data(vec![
        ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("s2")))
            .with_partitions(vec![0]),
    ]);
    let r: FetchResponse = c.request(12, &forget);
    assert_eq!(r.error_code, 0);
    assert_eq!(
        produce(&mut c, "s2", batch(-1, -1, -1, &[Some("k")]), -1),
        Some((0, 2))
    );
    let r: FetchResponse = c.request(12, &req(id, 4, vec![]));
    assert!(
        names(&r).is_empty(),
        "forgotten partition listed: {:?}",
        names(&r)
    );
    let r: FetchResponse = c.request(12, &req(id, 9, vec![]));
    assert_eq!(r.error_code, ResponseError::InvalidFetchSessionEpoch.code());
    let r: FetchResponse = c.request(12, &req(id, -1, vec![topic("s1", 0)]));
    assert_eq!((r.error_code, r.session_id), (0, 0));
    let r: FetchResponse = c.request(12, &req(id, 5, vec![]));
    assert_eq!(r.error_code, ResponseError::FetchSessionIdNotFound.code());
}

/// Every advertised version of every API gets an answer that decodes at that version: the
/// codec refuses to encode fields a version lacks, so this catches a response that sets one.
#[test]
fn every_advertised_version_answers() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::*;
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "v", &[]);
    let name = |s: &str| TopicName(StrBytes::from_string(s.to_owned()));
    let s = |x: &str| StrBytes::from_string(x.to_owned());
    let range = |api: ApiKey| {
        let (_, min, max) = weft_broker::advertised_versions()
            .into_iter()
            .find(|(k, _, _)| *k == api as i16)
            .expect("advertised");
        min..=max
    };
    for v in range(ApiKey::ApiVersions) {
        let r: ApiVersionsResponse = c.request(v, &ApiVersionsRequest::default());
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
    }
    for v in range(ApiKey::Produce).filter(|v| *v >= 3) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(name("v"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(-1, -1, -1, &[Some("k")]))),
                    ]),
            ]);
        let r: ProduceResponse = c.request(v, &req);
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce v{v}"
        );
    }
    for v in range(ApiKey::Fetch) {
        let r: FetchResponse = c.request(v, &fetch_req("v", 0, 0, 0, 1 << 20));
        assert_eq!(r.responses[0].partitions[0].error_code, 0, "Fetch v{v}");
    }
    for v in range(ApiKey::ListOffsets) {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("v"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        let r: ListOffsetsResponse = c.request(v, &req);
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
    }
    for v in range(ApiKey::Metadata) {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("v"))),
            ]))
            .with_allow_auto_topic_creation(true);
        let r: MetadataResponse = c.request(v, &req);
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
    }
    for v in range(ApiKey::CreateTopics) {
        let t = create_topics_request::CreatableTopic::default()
            .with_name(name(&format!("c{v}")))
            .with_num_partitions(1)
            .with_replication_factor(1);
        let r: CreateTopicsResponse = c.request(
            v,
            &CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(5000),
        );
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    for v in range(ApiKey::DeleteTopics) {
        let topic = format!("c{}", v + 1);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&topic))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let r: DeleteTopicsResponse = c.request(v, &req.with_timeout_ms(5000));
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }
    for v in range(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(name("v"))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(1),
                    ]),
            ]);
        let r: DeleteRecordsResponse = c.request(v, &req);
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "DeleteRecords v{v}"
        );
    }
    for v in range(ApiKey::InitProducerId) {
        let req = InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = c.request(v, &req);
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default()
            .with_include_synonyms(v >= 1)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("v"))
                    .with_configuration_keys(None),
            ]);
        let r: DescribeConfigsResponse = c.request(v, &req);
        assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
        assert!(!r.results[0].configs.is_empty());
    }
    for v in range(ApiKey::AlterConfigs) {
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("v"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000000"))),
                ]),
        ]);
        let r: AlterConfigsResponse = c.request(v, &req);
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("v"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("2000000"))),
                ]),
        ]);
        let r: IncrementalAlterConfigsResponse = c.request(v, &req);
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
    for v in range(ApiKey::DescribeLogDirs) {
        let r: DescribeLogDirsResponse =
            c.request(v, &DescribeLogDirsRequest::default().with_topics(None));
        assert_eq!(r.results[0].error_code, 0, "DescribeLogDirs v{v}");
    }
    for (i, v) in range(ApiKey::CreatePartitions).enumerate() {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(name("v"))
                    .with_count(2 + i as i32)
                    .with_assignments(None),
            ]);
        let r: CreatePartitionsResponse = c.request(v, &req);
        assert_eq!(
            r.results[0].error_code, 0,
            "CreatePartitions v{v}: {:?}",
            r.results[0].error_message
        );
    }
    for v in range(ApiKey::DescribeCluster) {
        let r: DescribeClusterResponse = c.request(v, &DescribeClusterRequest::default());
        assert_eq!(r.error_code, 0, "DescribeCluster v{v}");
    }
    for v in range(ApiKey::DescribeTopicPartitions) {
        let req = DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(100)
            .with_topics(vec![TopicRequest::default().with_name(name("v"))]);
        let r: DescribeTopicPartitionsResponse = c.request(v, &req);
        assert_eq!(r.topics[0].error_code, 0, "DescribeTopicPartitions v{v}");
    }
    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        };
        let r: FindCoordinatorResponse = c.request(v, &req);
        let (code, node) = if v >= 4 {
            (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
        } else {
            (r.error_code, r.node_id.0)
        };
        assert_eq!((code, node), (0, 1), "FindCoordinator v{v}: this broker");
        if v >= 1 {
            // No transaction coordinator yet.
            let r: FindCoordinatorResponse = c.request(v, &req.clone().with_key_type(1));
            let code = if v >= 4 {
                r.coordinators[0].error_code
            } else {
                r.error_code
            };
            assert_eq!(
                code,
                ResponseError::CoordinatorNotAvailable.code(),
                "FindCoordinator v{v} transaction"
            );
        }
    }
}

#[test]
fn pipelined_responses_keep_request_order_while_acks_all_waits() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    // A slow group commit: the acks=-1 reply waits for it while later requests are served.
    create(
        &mut c,
        "slow",
        &[("weft.durability", "group:300:1000000000")],
    );
    let produce_req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("slow")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(-1, -1, -1, &[Some("k")]))),
                ]),
        ]);
    let mut frames = c.frame(9, &produce_req);
    let produce_id = c.correlation;
    frames.extend(c.frame(12, &MetadataRequest::default().with_topics(None)));
    let metadata_id = c.correlation;
    c.send_raw(&frames);
    let mut first = c.read_frame().expect("first reply");
    let mut second = c.read_frame().expect("second reply");
    let h1 = kafka_protocol::messages::ResponseHeader::decode(&mut first, 1).expect("header");
    let h2 = kafka_protocol::messages::ResponseHeader::decode(&mut second, 1).expect("header");
    assert_eq!(
        (h1.correlation_id, h2.correlation_id),
        (produce_id, metadata_id)
    );
    let p = ProduceResponse::decode(&mut first, 9).expect("produce reply");
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
}

fn list_latest(c: &mut Raw, topic: &str) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let r: ListOffsetsResponse = c.request(
        7,
        &ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Records appended but not yet fsynced may vanish in a crash and be replaced by others at
/// the same offsets: consumers see them only once durable, and a long poll is woken by the
/// flush. Under `os` durability the log end is the high watermark.
#[test]
fn consumers_see_only_durable_records() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "lazy", &[("weft.durability", "group:2000")]);
    assert_eq!(
        produce(
            &mut c,
            "lazy",
            batch(-1, -1, -1, &[Some("k"), Some("l")]),
            1
        ),
        Some((0, 0))
    );
    // Right after the append, long before the 2 s flush: nothing visible.
    let r: FetchResponse = c.request(12, &fetch_req("lazy", 0, 0, 0, 1 << 20));
    let p = &r.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.last_stable_offset),
        (0, 0, 0)
    );
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    assert_eq!(list_latest(&mut c, "lazy"), 0);
    // A long poll (20 s) is answered by the flush, not by its deadline.
    let started = std::time::Instant::now();
    let r: FetchResponse = c.request(12, &fetch_req("lazy", 0, 20_000, 1, 1 << 20));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "long poll not woken by the flush: {:?}",
        started.elapsed()
    );
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 2));
    let records = p.records.clone().expect("records");
    let h = batch::BatchHeader::parse(&records).expect("header");
    assert_eq!((h.base_offset, h.last_offset()), (0, 1));
    assert_eq!(list_latest(&mut c, "lazy"), 2);

    create(&mut c, "loose", &[("weft.durability", "os")]);
    assert_eq!(
        produce(&mut c, "loose", batch(-1, -1, -1, &[Some("k")]), 1),
        Some((0, 0))
    );
    assert_eq!(log_end(&mut c, "loose"), 1);
    assert_eq!(list_latest(&mut c, "loose"), 1);
}

/// A request of under 1 MiB naming one 32 KiB topic name with 20 000 partitions: the name
/// is refused once (not copied per partition), partitions beyond the per-request cap get an
/// error without being read, and the broker stays up.
#[test]
fn a_fetch_naming_a_huge_topic_with_many_partitions_is_bounded() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "real", &[]);
    let parts = |n: i32| -> Vec<FetchPartition> {
        (0..n)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect()
    };
    let huge = "a".repeat(32 * 1024);
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(huge.clone())))
                .with_partitions(parts(20_000)),
        ]);
    let frame = c.frame(12, &req);
    assert!(frame.len() < 1 << 20, "{}", frame.len());
    let r: FetchResponse = c.request(12, &req);
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].topic.0.len(), huge.len());
    assert_eq!(r.responses[0].partitions.len(), 20_000);
    assert!(
        r.responses[0]
            .partitions
            .iter()
            .all(|p| p.error_code == ResponseError::InvalidTopicException.code())
    );
    // A valid name with 20 000 partitions: 10 000 looked at, the rest refused.
    let r: FetchResponse = c.request(
        12,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("real")))
                    .with_partitions(parts(20_000)),
            ]),
    );
    let codes: Vec<i16> = r
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes.len(), 20_000);
    let count = |code: ResponseError| codes.iter().filter(|c| **c == code.code()).count();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1);
    assert_eq!(count(ResponseError::UnknownTopicOrPartition), 9_999);
    assert_eq!(count(ResponseError::InvalidRequest), 10_000);
    healthy(&mut c);
    healthy(&mut Raw::connect(&b));
}

/// Only the first partition with data may exceed the response budget (by one batch);
/// later partitions get only what fits.
#[test]
fn only_the_first_partition_with_data_may_exceed_the_budget() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    let big: Vec<Option<&str>> = vec![Some("a-key-that-is-long-enough"); 200];
    let one = batch(-1, -1, -1, &big);
    for t in ["b1", "b2"] {
        create(&mut c, t, &[]);
        assert_eq!(produce(&mut c, t, one.clone(), -1), Some((0, 0)));
    }
    let topic = |name: &'static str| {
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(vec![
                FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20),
            ])
    };
    // Room for the first batch and a little more: the second partition's batch does not fit.
    let r: FetchResponse = c.request(
        12,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(one.len() as i32 + 100)
            .with_topics(vec![topic("b1"), topic("b2")]),
    );
    let sizes: Vec<usize> = r
        .responses
        .iter()
        .map(|t| t.partitions[0].records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert_eq!(sizes, vec![one.len(), 0]);
    // A budget smaller than one batch: the first partition still gets its batch.
    let r: FetchResponse = c.request(
        12,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(10)
            .with_topics(vec![topic("b1"), topic("b2")]),
    );
    let sizes: Vec<usize> = r
        .responses
        .iter()
        .map(|t| t.partitions[0].records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert_eq!(sizes, vec![one.len(), 0]);
}

/// A Produce v0–v2 frame built by hand (the codec cannot encode those versions): request
/// header v1, then acks, timeout and one partition of `topic` carrying `records`.
fn legacy_produce_frame(
    version: i16,
    correlation: i32,
    acks: i16,
    topic: &str,
    records: &[u8],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_i16(ApiKey::Produce as i16);
    b.put_i16(version);
    b.put_i32(correlation);
    b.put_i16(8);
    b.put_slice(b"raw-test");
    b.put_i16(acks);
    b.put_i32(5000);
    b.put_i32(1);
    b.put_i16(topic.len() as i16);
    b.put_slice(topic.as_bytes());
    b.put_i32(2);
    for partition in [0, 7] {
        b.put_i32(partition);
        b.put_i32(records.len() as i32);
        b.put_slice(records);
    }
    let mut out = Vec::new();
    out.put_i32(b.len() as i32);
    out.extend_from_slice(&b);
    out
}

/// A message set of one magic-1 message (the format Produce v0–v2 carry), CRC left zero:
/// the broker must refuse it by version, without looking at it.
fn magic1_message_set() -> Vec<u8> {
    let mut m = Vec::new();
    m.put_u32(0); // crc
    m.put_i8(1); // magic
    m.put_i8(0); // attributes
    m.put_i64(1_700_000_000_000); // timestamp
    m.put_i32(-1); // key
    m.put_i32(5);
    m.put_slice(b"hello");
    let mut set = Vec::new();
    set.put_i64(0); // offset
    set.put_i32(m.len() as i32);
    set.extend_from_slice(&m);
    set
}

#[test]
fn produce_v0_to_v2_get_unsupported_version_in_their_own_layout() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "legacy", &[]);
    let set = magic1_message_set();
    for version in 0..=2i16 {
        let corr = 1000 + i32::from(version);
        assert!(c.send_raw(&legacy_produce_frame(version, corr, 1, "legacy", &set)));
        let mut r = c.read_frame().expect("an answer, not a closed connection");
        assert_eq!(r.get_i32(), corr, "v{version} correlation id");
        assert_eq!(r.get_i32(), 1, "v{version} topics");
        assert_eq!(r.get_i16(), 6);
        assert_eq!(&r.split_to(6)[..], b"legacy");
        assert_eq!(r.get_i32(), 2, "v{version} partitions");
        for partition in [0, 7] {
            assert_eq!(r.get_i32(), partition);
            assert_eq!(
                r.get_i16(),
                ResponseError::UnsupportedVersion.code(),
                "v{version} error code"
            );
            assert_eq!(r.get_i64(), -1, "base offset");
            if version >= 2 {
                assert_eq!(r.get_i64(), -1, "log append time");
            }
        }
        if version >= 1 {
            assert_eq!(r.get_i32(), 0, "throttle time");
        }
        assert!(
            !r.has_remaining(),
            "v{version}: {} bytes too many",
            r.remaining()
        );
    }
    // acks=0: no answer at all; the next response on the connection is the next request's.
    assert!(c.send_raw(&legacy_produce_frame(2, 5000, 0, "legacy", &set)));
    healthy(&mut c);
    // Nothing was appended.
    assert_eq!(log_end(&mut c, "legacy"), 0);
    // A truncated v0 body closes only that connection.
    let mut bad = Raw::connect(&b);
    let mut frame = legacy_produce_frame(0, 1, 1, "legacy", &set);
    let cut = frame.len() - 3;
    frame.truncate(cut);
    frame[0..4].copy_from_slice(&((cut - 4) as i32).to_be_bytes());
    assert!(bad.send_raw(&frame));
    bad.assert_closed("truncated produce v0");
    healthy(&mut c);
}

/// Fetch requests of every served version over two topics: from the start with room for
/// everything, from the middle, and with a one-byte budget (one whole batch).
fn zero_copy_requests() -> Vec<(i16, FetchRequest)> {
    let mut out = Vec::new();
    for version in 4..=12i16 {
        for (offset, max) in [(0i64, 64 << 20), (3, 64 << 20), (1, 1)] {
            let topics = ["zc", "zc-small"]
                .into_iter()
                .map(|t| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_owned())))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(max),
                        ])
                })
                .collect();
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(64 << 20)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(topics);
            out.push((version, req));
        }
    }
    out
}

fn raw_fetches(c: &mut Raw, reqs: &[(i16, FetchRequest)]) -> Vec<Bytes> {
    reqs.iter()
        .map(|(v, r)| {
            let f = c.frame(*v, r);
            assert!(c.send_raw(&f), "send");
            c.read_frame().expect("fetch response")
        })
        .collect()
}

/// The zero-copy path (records sent with sendfile from the segment file) and the copying
/// path answer every served Fetch version with the same bytes, including a 6 MB batch whose
/// sending has to wait for the socket to drain. The paths differ in one documented way,
/// which also shows which one ran: only the copying path re-checks CRCs on read.
#[test]
fn zero_copy_and_copying_fetch_send_the_same_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let reqs = zero_copy_requests();
    let zero_copy = {
        let b = TestBroker::start_in(dir, |c| c.zero_copy_fetch = true);
        let mut c = Raw::connect(&b);
        create(&mut c, "zc", &[("max.message.bytes", "8000000")]);
        create(&mut c, "zc-small", &[]);
        for (i, topic) in ["zc", "zc", "zc", "zc", "zc-small"].iter().enumerate() {
            let keys: Vec<Option<&str>> = vec![Some("k"); i + 1];
            let (code, _) = produce(&mut c, topic, batch(-1, -1, -1, &keys), -1).expect("ack");
            assert_eq!(code, 0);
        }
        // A 6 MB batch last.
        let big: Vec<Record> = (0..6)
            .map(|i| Record {
                offset: i,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(vec![b'a' + i as u8; 1 << 20])),
                headers: vec![],
            })
            .collect();
        let big = Bytes::from(batch::build(BuildOptions::default(), &big).expect("build"));
        let (code, _) = produce(&mut c, "zc", big, -1).expect("ack");
        assert_eq!(code, 0);
        let got = raw_fetches(&mut c, &reqs);
        b.stop();
        got
    };
    // The first request of the newest version: every record of both topics.
    let mut all = zero_copy[zero_copy.len() - 3].clone();
    all.advance(5); // correlation id, empty tagged fields (response header v1)
    let all = FetchResponse::decode(&mut all, 12).expect("v12 fetch");
    let zc = &all.responses[0].partitions[0];
    assert_eq!(zc.error_code, 0);
    assert!(
        zc.records.as_ref().expect("records").len() > 6 << 20,
        "the big batch is in the response"
    );
    assert_eq!(all.responses[1].partitions[0].high_watermark, 5);

    let copying = {
        let b = TestBroker::start_in(dir, |c| c.zero_copy_fetch = false);
        let mut c = Raw::connect(&b);
        let got = raw_fetches(&mut c, &reqs);
        b.stop();
        got
    };
    for (i, ((v, _), (z, c))) in reqs.iter().zip(zero_copy.iter().zip(&copying)).enumerate() {
        // Past the correlation ids (the first connection sent other requests before).
        let (z, c) = (&z[4..], &c[4..]);
        let at = z.iter().zip(c.iter()).position(|(a, b)| a != b);
        assert!(
            z == c,
            "request {i} (v{v}): zero-copy and copying answers differ: lengths {} / {}, first difference at {at:?}: {:?} / {:?}",
            z.len(),
            c.len(),
            &z[..z.len().min(80)],
            &c[..c.len().min(80)]
        );
    }

    // Flip a byte inside the first batch's record while a broker runs (a restart would
    // find the bad CRC and truncate), fetch it, and put it back.
    let seg = std::fs::read_dir(dir.join("log").join("zc-0"))
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("segment");
    let original = std::fs::read(&seg).expect("read segment");
    let first_len =
        12 + u32::from_be_bytes([original[8], original[9], original[10], original[11]]) as usize;
    let at = first_len - 2;
    let fetch_corrupted = |zero_copy: bool| {
        use std::os::unix::fs::FileExt;
        let b = TestBroker::start_in(dir, |c| c.zero_copy_fetch = zero_copy);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open segment");
        f.write_all_at(&[original[at] ^ 0xff], at as u64)
            .expect("corrupt");
        let mut c = Raw::connect(&b);
        let r: FetchResponse = c.request(12, &fetch_req("zc", 0, 0, 0, 1));
        f.write_all_at(&[original[at]], at as u64).expect("restore");
        b.stop();
        let p = r.responses[0].partitions[0].clone();
        (p.error_code, p.records.unwrap_or_default())
    };
    let (code, _) = fetch_corrupted(false);
    assert_ne!(code, 0, "the copying path re-checks the CRC");
    let (code, records) = fetch_corrupted(true);
    assert_eq!(code, 0, "zero-copy sends what the file holds");
    let mut want = original[..first_len].to_vec();
    want[at] ^= 0xff;
    assert_eq!(
        &records[..],
        &want[..],
        "byte for byte, corruption included"
    );
}
