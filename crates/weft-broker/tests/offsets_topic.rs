//! Committed offsets in the internal compacted topic `__consumer_offsets`: they survive a
//! restart with their metadata, an `offsets.v1` state file is migrated on start, clients
//! see the topic as internal and cannot write to it.

mod common;

use std::time::Duration;

use common::TestBroker;
use common::raw::Raw;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, DeleteRecordsRequest, DeleteTopicsRequest, GroupId,
    ListGroupsRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetFetchRequest,
    TopicName, delete_records_request::DeleteRecordsPartition,
    delete_records_request::DeleteRecordsTopic,
    offset_commit_request::OffsetCommitRequestPartition,
    offset_commit_request::OffsetCommitRequestTopic, offset_fetch_request::OffsetFetchRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const INTERNAL: &str = "__consumer_offsets";

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// A commit from outside any group (generation -1), as admin tools and `assign()`
/// consumers make.
fn commit(raw: &mut Raw, group: &str, topic: &str, partition: i32, offset: i64, meta: &str) {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(str(topic)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_committed_metadata(Some(str(meta))),
                ]),
        ]);
    let r = raw.request(8, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, 0, "{r:?}");
}

/// (offset, metadata) committed for `group` at `topic`-`partition`.
fn fetch(raw: &mut Raw, group: &str, topic: &str, partition: i32) -> (i64, String) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(str(topic)))
                .with_partition_indexes(vec![partition]),
        ]));
    let r = raw.request(7, &req);
    let p = &r.topics[0].partitions[0];
    (
        p.committed_offset,
        p.metadata
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn committed_offsets_and_their_metadata_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = TestBroker::start_in(tmp.path(), |_| {});
    let mut raw = Raw::connect(&b);
    commit(&mut raw, "g1", "orders", 0, 10, "first");
    commit(&mut raw, "g1", "orders", 0, 42, "checkpoint é 42");
    commit(&mut raw, "g1", "orders", 3, 7, "");
    commit(&mut raw, "g2", "other", 1, 5, "x");
    drop(raw);
    b.stop();
    let b = TestBroker::start_in(tmp.path(), |_| {});
    let mut raw = Raw::connect(&b);
    assert_eq!(
        fetch(&mut raw, "g1", "orders", 0),
        (42, "checkpoint é 42".into())
    );
    assert_eq!(fetch(&mut raw, "g1", "orders", 3), (7, String::new()));
    assert_eq!(fetch(&mut raw, "g2", "other", 1), (5, "x".into()));
    assert_eq!(fetch(&mut raw, "g2", "other", 0).0, -1);
    let l = raw.request(4, &ListGroupsRequest::default());
    let ids: Vec<&str> = l.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert!(ids.contains(&"g1") && ids.contains(&"g2"), "{ids:?}");
}

#[test]
fn an_offsets_v1_file_is_migrated_on_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("broker");
    std::fs::create_dir_all(&state).expect("state dir");
    // Group "g", topic "t", partition 2: offset 42, leader epoch 3, metadata "m".
    std::fs::write(
        state.join("offsets.v1"),
        "weft-broker offsets 1\n67 74 2 42 3 1700000000000 6d\nend\n",
    )
    .expect("fixture");
    let b = TestBroker::start_in(tmp.path(), |_| {});
    let mut raw = Raw::connect(&b);
    assert_eq!(fetch(&mut raw, "g", "t", 2), (42, "m".into()));
    assert!(!state.join("offsets.v1").exists());
    drop(raw);
    b.stop();
    let b = TestBroker::start_in(tmp.path(), |_| {});
    let mut raw = Raw::connect(&b);
    assert_eq!(fetch(&mut raw, "g", "t", 2), (42, "m".into()));
}

#[test]
fn the_offsets_topic_is_internal_and_refuses_produce() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = TestBroker::start_in(tmp.path(), |_| {});
    let mut raw = Raw::connect(&b);
    let m: MetadataResponse = raw.request(12, &MetadataRequest::default().with_topics(None));
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(INTERNAL))
        .expect("the offsets topic is listed");
    assert!(t.is_internal);
    assert_eq!(t.partitions.len(), 1);
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let sent = b.rt.block_on(p.send(
        FutureRecord::to(INTERNAL).key("k").payload("v"),
        Duration::from_secs(10),
    ));
    let err = sent
        .expect_err("producing to the internal topic is refused")
        .0;
    assert_eq!(
        err.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::InvalidTopic),
        "{err}"
    );
    // Nor can it be deleted or truncated.
    let d = raw.request(
        5,
        &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(str(INTERNAL))]),
    );
    assert_eq!(
        d.responses[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let d = raw.request(
        2,
        &DeleteRecordsRequest::default().with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(TopicName(str(INTERNAL)))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(-1),
                ]),
        ]),
    );
    assert_eq!(
        d.topics[0].partitions[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    // Commits still work (only the coordinator writes the topic).
    commit(&mut raw, "g", "t", 0, 1, "");
    assert_eq!(fetch(&mut raw, "g", "t", 0).0, 1);
}

#[test]
fn the_ticker_expires_offsets_of_groups_without_members() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = TestBroker::start_in(tmp.path(), |c| {
        c.offsets_retention = Duration::from_millis(300);
    });
    let mut raw = Raw::connect(&b);
    // A KIP-848 group with a member keeps its offsets however old they are.
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str("busy")))
        .with_member_id(str("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(str("t"))]))
        .with_topic_partitions(Some(Vec::new()));
    let joined = raw.request(1, &hb);
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let busy = OffsetCommitRequest::default()
        .with_group_id(GroupId(str("busy")))
        .with_generation_id_or_member_epoch(joined.member_epoch)
        .with_member_id(str("m1"))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(str("t")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(4),
                ]),
        ]);
    assert_eq!(raw.request(9, &busy).topics[0].partitions[0].error_code, 0);
    commit(&mut raw, "idle", "t", 0, 9, "m");
    // Bounded wait for the ticker (it checks once a second); never a timing assertion.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fetch(&mut raw, "idle", "t", 0).0 != -1 {
        assert!(
            std::time::Instant::now() < deadline,
            "offsets never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let l = raw.request(4, &ListGroupsRequest::default());
    assert!(l.groups.iter().all(|g| g.group_id.0.as_str() != "idle"));
    // Expiry of "idle" ran several ticks after the retention: "busy" (still a member, its
    // session is 45 s) was checked by the same ticks and kept.
    assert_eq!(fetch(&mut raw, "busy", "t", 0).0, 4);
    // The tombstones are durable: still gone after a restart.
    drop(raw);
    b.stop();
    let b = TestBroker::start_in(tmp.path(), |_| {});
    let mut raw = Raw::connect(&b);
    assert_eq!(fetch(&mut raw, "idle", "t", 0).0, -1);
}
