//! Hardening over the wire: validation before deduplication, bounded work for hostile
//! produce requests, config ranges, producer-id epoch bumps and producer snapshots across
//! delete and recreate.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::TestBroker;
use common::raw::{Raw, creatable, healthy};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weft_log::batch::{self, BuildOptions, Compression, Record};

/// Creates a topic; returns the error code and message.
fn try_create(c: &mut Raw, name: &str, configs: &[(&str, &str)]) -> (i16, Option<String>) {
    let r: CreateTopicsResponse = c.request(
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![creatable(name, configs)])
            .with_timeout_ms(5000),
    );
    (
        r.topics[0].error_code,
        r.topics[0].error_message.as_ref().map(|m| m.to_string()),
    )
}

fn create(c: &mut Raw, name: &str, configs: &[(&str, &str)]) {
    let (code, message) = try_create(c, name, configs);
    assert_eq!(code, 0, "{message:?}");
}

fn produce(c: &mut Raw, topic: &str, records: Bytes, acks: i16) -> (i16, i64) {
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
    let r: ProduceResponse = c.request(9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn batch(pid: i64, epoch: i16, seq: i32, keys: &[&str]) -> Bytes {
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            offset: i as u64,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from((*k).to_owned())),
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

fn init_producer_id(c: &mut Raw, pid: i64, epoch: i16) -> InitProducerIdResponse {
    c.request(
        4,
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch),
    )
}

fn new_producer(c: &mut Raw) -> (i64, i16) {
    let r = init_producer_id(c, -1, -1);
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

#[test]
fn corrupted_retry_is_refused_not_deduplicated() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "crc", &[]);
    let (pid, epoch) = new_producer(&mut c);
    let good = batch(pid, epoch, 0, &["a", "b"]);
    assert_eq!(produce(&mut c, "crc", good.clone(), -1), (0, 0));
    // The same header, one flipped byte in the records: the CRC no longer matches.
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let (code, _) = produce(&mut c, "crc", Bytes::from(bad), -1);
    assert_eq!(code, ResponseError::CorruptMessage.code());
    // The intact retry is still recognized as a duplicate.
    assert_eq!(produce(&mut c, "crc", good, -1), (0, 0));
    healthy(&mut c);
}

/// A produce v8 request (not flexible) encoded by hand, so that millions of partition
/// entries cost the test only their bytes.
fn raw_produce(correlation: i32, topic: &[u8], partitions: i32) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i16(0); // api key: Produce
    body.put_i16(8);
    body.put_i32(correlation);
    body.put_i16(-1); // client id
    body.put_i16(-1); // transactional id
    body.put_i16(1); // acks
    body.put_i32(5_000);
    body.put_i32(1); // one topic
    body.put_i16(topic.len() as i16);
    body.put_slice(topic);
    body.put_i32(partitions);
    for i in 0..partitions {
        body.put_i32(i);
        body.put_i32(-1); // null records
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out
}

#[test]
fn huge_produce_requests_cost_bounded_memory() {
    let b = TestBroker::start();
    let mut good = Raw::connect(&b);
    create(&mut good, "fine", &[]);
    let long_name = vec![b'x'; 32 * 1024 - 1]; // the longest an INT16 length allows

    // Millions of partitions of a 32 KiB unknown name: the connection is closed.
    let mut bad = Raw::connect(&b);
    let frame = raw_produce(1, &long_name, 2_000_000);
    let _ = bad.send_raw(&frame);
    assert!(
        bad.read_frame().is_none(),
        "expected the connection to be closed"
    );
    healthy(&mut good);

    // Under the limit, an invalid name is refused per partition without looking it up.
    let mut c = Raw::connect(&b);
    c.correlation = 7;
    assert!(c.send_raw(&raw_produce(7, &long_name, 1_000)));
    let resp = c.read_frame().expect("response");
    let r: ProduceResponse = c.decode::<ProduceRequest>(8, resp);
    let parts = &r.responses[0].partition_responses;
    assert_eq!(parts.len(), 1_000);
    assert!(
        parts
            .iter()
            .all(|p| p.error_code == ResponseError::InvalidTopicException.code())
    );
    // A valid but unknown name: UNKNOWN_TOPIC_OR_PARTITION.
    c.correlation = 8;
    assert!(c.send_raw(&raw_produce(8, b"nope", 3)));
    let resp = c.read_frame().expect("response");
    let r: ProduceResponse = c.decode::<ProduceRequest>(8, resp);
    assert!(
        r.responses[0]
            .partition_responses
            .iter()
            .all(|p| p.error_code == ResponseError::UnknownTopicOrPartition.code())
    );
    // The healthy client keeps working.
    assert_eq!(
        produce(&mut good, "fine", batch(-1, -1, -1, &["k"]), 1),
        (0, 0)
    );
    healthy(&mut good);
}

#[test]
fn topic_configs_are_held_to_kafka_types_and_ranges() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    let invalid = ResponseError::InvalidConfig.code();
    let refused: &[(&str, &str)] = &[
        ("index.interval.bytes", "0"),
        ("segment.bytes", "9223372036854775807"),
        ("segment.bytes", "2147483648"),
        ("segment.bytes", "13"),
        ("max.message.bytes", "4294967296"),
        ("segment.ms", "0"),
        ("retention.ms", "-2"),
        ("retention.bytes", "-2"),
        ("min.compaction.lag.ms", "-1"),
        ("delete.retention.ms", "-1"),
    ];
    for (i, (k, v)) in refused.iter().enumerate() {
        let (code, message) = try_create(&mut c, &format!("bad-{i}"), &[(k, v)]);
        assert_eq!(code, invalid, "{k}={v}");
        let message = message.expect("a message");
        assert!(message.contains(k), "{message}");
    }
    create(
        &mut c,
        "cfg",
        &[
            ("segment.bytes", "2147483647"),
            ("index.interval.bytes", "4"),
        ],
    );
    let inc = |k: &str, v: &str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.to_owned()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v.to_owned()))),
                ]),
        ])
    };
    for (k, v) in refused {
        let r: IncrementalAlterConfigsResponse = c.request(1, &inc(k, v));
        assert_eq!(r.responses[0].error_code, invalid, "{k}={v}");
    }
    let r: IncrementalAlterConfigsResponse = c.request(1, &inc("segment.bytes", "14"));
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    // The topic still takes writes, and the broker restarts over what was accepted.
    assert_eq!(produce(&mut c, "cfg", batch(-1, -1, -1, &["k"]), 1), (0, 0));
    let dir = b.dir.clone();
    let tmp = b.stop();
    let b = TestBroker::start_in(&dir, |_| {});
    let mut c = Raw::connect(&b);
    healthy(&mut c);
    drop(b);
    drop(tmp);
}

#[test]
fn epoch_bumps_only_for_our_ids_at_their_current_epoch() {
    let b = TestBroker::start();
    let mut c = Raw::connect(&b);
    create(&mut c, "bump", &[]);
    let (pid, epoch) = new_producer(&mut c);
    let bad_epoch = ResponseError::InvalidProducerEpoch.code();
    // An id this broker never handed out is not bumped.
    let r = init_producer_id(&mut c, pid + 1_000_000, 0);
    assert_eq!(r.error_code, bad_epoch);
    // Nor one of ours at an epoch that is not its current one.
    let r = init_producer_id(&mut c, pid, epoch + 5);
    assert_eq!(r.error_code, bad_epoch);
    // The producer's own bump works once; repeating it with the old epoch is refused.
    let r = init_producer_id(&mut c, pid, epoch);
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, pid, epoch + 1)
    );
    let r = init_producer_id(&mut c, pid, epoch);
    assert_eq!(r.error_code, bad_epoch);
    // The epoch written to a partition counts too.
    assert_eq!(
        produce(&mut c, "bump", batch(pid, epoch + 1, 0, &["a"]), -1),
        (0, 0)
    );
    let r = init_producer_id(&mut c, pid, epoch + 1);
    assert_eq!((r.error_code, r.producer_epoch), (0, epoch + 2));
    // Half-set ids are malformed; -1/-1 always gets a fresh id.
    let r = init_producer_id(&mut c, pid, -1);
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
    let (other, other_epoch) = new_producer(&mut c);
    assert_ne!(other, pid);
    assert_eq!(other_epoch, 0);
}

#[test]
fn recreated_topic_never_starts_from_an_old_producer_snapshot() {
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let snapshot = dir.join("broker/producers/re-0.snapshot");
    let b = TestBroker::start_in(&dir, |_| {});
    let mut c = Raw::connect(&b);
    create(&mut c, "re", &[]);
    let (pid, epoch) = new_producer(&mut c);
    assert_eq!(
        produce(&mut c, "re", batch(pid, epoch, 0, &["a", "b", "c"]), -1),
        (0, 0)
    );
    b.stop();
    let old = std::fs::read(&snapshot).expect("snapshot written at shutdown");

    let b = TestBroker::start_in(&dir, |_| {});
    let mut c = Raw::connect(&b);
    let r: DeleteTopicsResponse = c.request(
        5,
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(StrBytes::from_static_str("re"))])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.responses[0].error_code, 0);
    // A snapshot written late for the deleted topic (or left by a crash).
    std::fs::write(&snapshot, &old).expect("plant stale snapshot");
    create(&mut c, "re", &[]);
    assert!(!snapshot.exists(), "create removes an old snapshot");
    // The new topic's producer state starts empty: sequence 0 is appended, not a duplicate
    // of the old topic's batch.
    assert_eq!(
        produce(&mut c, "re", batch(pid, epoch, 0, &["x"]), -1),
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, "re", batch(pid, epoch, 1, &["y"]), -1),
        (0, 1)
    );
    b.stop();
    let b = TestBroker::start_in(&dir, |_| {});
    let mut c = Raw::connect(&b);
    // Rebuilt from the new topic: the retry is a duplicate at its new offset, the next
    // sequence continues.
    assert_eq!(
        produce(&mut c, "re", batch(pid, epoch, 1, &["y"]), -1),
        (0, 1)
    );
    assert_eq!(
        produce(&mut c, "re", batch(pid, epoch, 2, &["z"]), -1),
        (0, 2)
    );
    drop(b);
}
