//! Consumer groups with librdkafka (through the `rdkafka` crate): two consumers share a
//! topic through `subscribe()`, commit, leave; a later consumer of the group resumes from
//! the committed offsets, also after a broker restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Generous bound so a broken broker fails the test instead of hanging it; never a
/// performance threshold.
const HANG: Duration = Duration::from_secs(120);
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 4;
const GROUP: &str = "workers";

fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_in(dir, |c| {
        c.group_initial_rebalance_delay = Duration::from_millis(50);
    })
}

fn create_topic(b: &TestBroker) {
    let a: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin client");
    let t = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    let r =
        b.rt.block_on(a.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
    r[0].as_ref().expect("topic created");
}

/// `per_partition` records to every partition, values `<partition>:<seq>` from `from`.
fn produce(b: &TestBroker, from: usize, per_partition: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for partition in 0..PARTITIONS {
        for i in from..from + per_partition {
            let value = format!("{partition}:{i}");
            p.send(
                BaseRecord::<[u8], [u8]>::to(TOPIC)
                    .partition(partition)
                    .payload(value.as_bytes()),
            )
            .expect("send");
        }
    }
    p.flush(HANG).expect("flush");
}

fn group_consumer(b: &TestBroker, name: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", GROUP)
        .set("client.id", name)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "300")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// (partition, offset, value) of one message, failing on errors.
fn poll(c: &BaseConsumer) -> Option<(i32, i64, String)> {
    match c.poll(Duration::from_millis(50))? {
        Ok(m) => Some((
            m.partition(),
            m.offset(),
            String::from_utf8(m.payload().unwrap_or_default().to_vec()).expect("utf8"),
        )),
        Err(e) => panic!("consume: {e}"),
    }
}

fn committed(c: &BaseConsumer) -> BTreeMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            other => panic!(
                "partition {} has no committed offset: {other:?}",
                e.partition()
            ),
        })
        .collect()
}

#[test]
fn two_subscribers_share_a_topic_and_a_successor_resumes_from_their_commits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = start(tmp.path());
    create_topic(&b);

    // Both members join; wait until the group settled on a split of the four partitions
    // (nothing is produced yet, so nothing is consumed twice while partitions move).
    let consumers = [group_consumer(&b, "a"), group_consumer(&b, "b")];
    let deadline = Instant::now() + HANG;
    loop {
        assert!(
            Instant::now() < deadline,
            "group never split the partitions"
        );
        for c in &consumers {
            assert!(poll(c).is_none(), "nothing was produced yet");
        }
        let (a, b) = (assigned(&consumers[0]), assigned(&consumers[1]));
        if !a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && a.len() + b.len() == 4 {
            break;
        }
    }
    let split = [assigned(&consumers[0]), assigned(&consumers[1])];

    produce(&b, 0, 100);
    let mut seen: BTreeMap<(i32, i64), (usize, String)> = BTreeMap::new();
    while seen.len() < 400 {
        assert!(Instant::now() < deadline, "consumed only {}", seen.len());
        for (i, c) in consumers.iter().enumerate() {
            if let Some((p, o, v)) = poll(c) {
                assert!(split[i].contains(&p), "member {i} got partition {p}");
                let before = seen.insert((p, o), (i, v));
                assert!(before.is_none(), "partition {p} offset {o} consumed twice");
            }
        }
    }
    for p in 0..PARTITIONS {
        let values: Vec<&str> = seen
            .range((p, 0)..(p, i64::MAX))
            .map(|(_, (_, v))| v.as_str())
            .collect();
        let want: Vec<String> = (0..100).map(|i| format!("{p}:{i}")).collect();
        assert_eq!(values, want, "partition {p}");
    }
    for c in &consumers {
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }
    let want: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 100)).collect();
    assert_eq!(committed(&consumers[0]), want);
    for c in &consumers {
        c.unsubscribe();
    }
    drop(consumers);

    // A successor in the same group starts where the two left off.
    produce(&b, 100, 25);
    let c = group_consumer(&b, "c");
    let mut got: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    while got.values().map(Vec::len).sum::<usize>() < 100 {
        assert!(Instant::now() < deadline, "successor consumed only {got:?}");
        if let Some((p, _, v)) = poll(&c) {
            got.entry(p).or_default().push(v);
        }
    }
    for p in 0..PARTITIONS {
        let want: Vec<String> = (100..125).map(|i| format!("{p}:{i}")).collect();
        assert_eq!(got.get(&p), Some(&want), "partition {p}");
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    c.unsubscribe();
    drop(c);

    // Committed offsets survive a restart.
    drop(b);
    let b = start(tmp.path());
    let c = group_consumer(&b, "d");
    let want: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 125)).collect();
    assert_eq!(committed(&c), want);
    drop(c);
    drop(b);
}

/// Every advertised version of every group API, through one raw client: a member joins,
/// syncs, heartbeats, commits, fetches, is listed and described, and leaves; stale
/// generations and unknown members get their errors and persist nothing.
#[test]
fn every_advertised_group_api_version_answers() {
    use common::raw::Raw;
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let tmp = tempfile::tempdir().expect("tempdir");
    let b = start(tmp.path());
    let mut c = Raw::connect(&b);
    let s = |x: &str| StrBytes::from_string(x.to_owned());
    let range = |api: ApiKey| {
        let (_, min, max) = weft_broker::advertised_versions()
            .into_iter()
            .find(|(k, _, _)| *k == api as i16)
            .expect("advertised");
        min..=max
    };
    let max = |api: ApiKey| *range(api).end();
    let min = |api: ApiKey| *range(api).start();
    // One group per JoinGroup version; the other APIs cycle through their versions.
    for (round, jv) in range(ApiKey::JoinGroup).enumerate() {
        let r0 = round as i16;
        let pick = |api: ApiKey| min(api) + r0 % (max(api) - min(api) + 1);
        let group = GroupId(s(&format!("g{jv}")));
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(group.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(bytes::Bytes::from_static(b"meta")),
                ])
        };
        let mut r: JoinGroupResponse = c.request(jv, &join(""));
        if jv >= 4 {
            assert_eq!(
                r.error_code,
                ResponseError::MemberIdRequired.code(),
                "v{jv}"
            );
            let id = r.member_id.to_string();
            r = c.request(jv, &join(&id));
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{jv}");
        assert_eq!(r.leader, r.member_id, "JoinGroup v{jv}");
        assert_eq!(r.members.len(), 1, "JoinGroup v{jv}");
        let (member, generation) = (r.member_id.to_string(), r.generation_id);

        let sv = pick(ApiKey::SyncGroup);
        let mut sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(generation)
            .with_member_id(s(&member))
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(bytes::Bytes::from_static(b"assignment")),
            ]);
        if sv >= 5 {
            sync = sync
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
        }
        let r: SyncGroupResponse = c.request(sv, &sync);
        assert_eq!(r.error_code, 0, "SyncGroup v{sv}");
        assert_eq!(r.assignment.as_ref(), b"assignment", "SyncGroup v{sv}");

        let hv = pick(ApiKey::Heartbeat);
        let hb = |generation: i32, member: &str| {
            HeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(generation)
                .with_member_id(s(member))
        };
        let r: HeartbeatResponse = c.request(hv, &hb(generation, &member));
        assert_eq!(r.error_code, 0, "Heartbeat v{hv}");
        let r: HeartbeatResponse = c.request(hv, &hb(generation + 1, &member));
        assert_eq!(r.error_code, ResponseError::IllegalGeneration.code());
        let r: HeartbeatResponse = c.request(hv, &hb(generation, "nobody"));
        assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());

        let cv = pick(ApiKey::OffsetCommit);
        let commit = |generation: i32, member: &str, offset: i64| {
            OffsetCommitRequest::default()
                .with_group_id(group.clone())
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member))
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(3)
                                .with_committed_offset(offset)
                                .with_committed_metadata(Some(s("md"))),
                        ]),
                ])
        };
        let r: OffsetCommitResponse = c.request(cv, &commit(generation, &member, 42));
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{cv}"
        );
        // Fenced commits are refused and do not overwrite.
        let r: OffsetCommitResponse = c.request(cv, &commit(generation - 1, &member, 7));
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ResponseError::IllegalGeneration.code()
        );
        let r: OffsetCommitResponse = c.request(cv, &commit(generation, "nobody", 7));
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ResponseError::UnknownMemberId.code()
        );

        for fv in range(ApiKey::OffsetFetch) {
            let (offset, metadata) = if fv >= 8 {
                let topics = Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![3, 4]),
                ]);
                let req = OffsetFetchRequest::default().with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group.clone())
                        .with_topics(topics),
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group.clone())
                        .with_topics(None),
                ]);
                let r: OffsetFetchResponse = c.request(fv, &req);
                let asked = &r.groups[0].topics[0].partitions;
                assert_eq!(asked[1].committed_offset, -1, "no commit: -1");
                let all = &r.groups[1].topics[0].partitions;
                assert_eq!(all.len(), 1, "all-partitions form");
                (asked[0].committed_offset, asked[0].metadata.clone())
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group.clone())
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![3]),
                    ]));
                let r: OffsetFetchResponse = c.request(fv, &req);
                if fv >= 2 {
                    let all: OffsetFetchResponse = c.request(fv, &req.clone().with_topics(None));
                    assert_eq!(all.topics.len(), 1, "all-partitions form v{fv}");
                }
                let p = &r.topics[0].partitions[0];
                (p.committed_offset, p.metadata.clone())
            };
            assert_eq!(offset, 42, "OffsetFetch v{fv}");
            assert_eq!(metadata.as_deref(), Some("md"), "OffsetFetch v{fv}");
        }

        let lv = pick(ApiKey::ListGroups);
        let r: ListGroupsResponse = c.request(lv, &ListGroupsRequest::default());
        let listed = r
            .groups
            .iter()
            .find(|g| g.group_id == group)
            .expect("listed");
        assert_eq!(listed.protocol_type.as_str(), "consumer");
        if lv >= 4 {
            assert_eq!(listed.group_state.as_str(), "Stable");
        }

        let dv = pick(ApiKey::DescribeGroups);
        let r: DescribeGroupsResponse = c.request(
            dv,
            &DescribeGroupsRequest::default().with_groups(vec![group.clone(), GroupId(s("none"))]),
        );
        assert_eq!(
            r.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{dv}"
        );
        assert_eq!(r.groups[0].protocol_data.as_str(), "range");
        assert_eq!(r.groups[0].members[0].member_id.as_str(), member);
        assert_eq!(
            r.groups[0].members[0].member_assignment.as_ref(),
            b"assignment"
        );
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");

        let leave_v = pick(ApiKey::LeaveGroup);
        let req = if leave_v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(s(&member)),
                    MemberIdentity::default().with_member_id(s("nobody")),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(s(&member))
        };
        let r: LeaveGroupResponse = c.request(leave_v, &req);
        assert_eq!(r.error_code, 0, "LeaveGroup v{leave_v}");
        if leave_v >= 3 {
            let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
            assert_eq!(codes, vec![0, ResponseError::UnknownMemberId.code()]);
        }
        // A group the coordinator does not know: from v3 each member is UNKNOWN_MEMBER_ID
        // under a top-level NONE, before that the top-level error, as Kafka answers.
        let unknown = GroupId(s("never-joined"));
        let req = if leave_v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(unknown)
                .with_members(vec![MemberIdentity::default().with_member_id(s("x"))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(unknown)
                .with_member_id(s("x"))
        };
        let r: LeaveGroupResponse = c.request(leave_v, &req);
        let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
        let unknown_member = ResponseError::UnknownMemberId.code();
        if leave_v >= 3 {
            assert_eq!(
                (r.error_code, codes),
                (0, vec![unknown_member]),
                "v{leave_v}"
            );
        } else {
            assert_eq!(r.error_code, unknown_member, "v{leave_v}");
        }
        let r: HeartbeatResponse = c.request(hv, &hb(generation, &member));
        assert_eq!(
            r.error_code,
            ResponseError::UnknownMemberId.code(),
            "after leaving"
        );
        // An empty group takes commits from outside (generation -1, no member).
        let r: OffsetCommitResponse = c.request(cv, &commit(-1, "", 43));
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "outside commit v{cv}"
        );
    }
}

#[test]
fn delete_groups_and_offset_delete_refuse_what_is_in_use() {
    use bytes::{BufMut, BytesMut};
    use common::raw::Raw;
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    let tmp = tempfile::tempdir().expect("tempdir");
    let b = start(tmp.path());
    let mut c = Raw::connect(&b);
    let s = |x: &str| StrBytes::from_string(x.to_owned());
    let gid = |g: &str| GroupId(s(g));
    let commit = |group: &str, generation: i32, member: &str| {
        OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(
                ["t", "u"]
                    .iter()
                    .map(|t| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(5),
                            ])
                    })
                    .collect(),
            )
    };
    let fetched = |c: &mut Raw, group: &str| -> Vec<i64> {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(Some(
                ["t", "u"]
                    .iter()
                    .map(|t| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(vec![0])
                    })
                    .collect(),
            ));
        let r: OffsetFetchResponse = c.request(7, &req);
        r.topics
            .iter()
            .map(|t| t.partitions[0].committed_offset)
            .collect()
    };
    let offset_delete = |group: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(gid(group))
            .with_topics(
                ["t", "u"]
                    .iter()
                    .map(|t| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(vec![
                                OffsetDeleteRequestPartition::default().with_partition_index(0),
                            ])
                    })
                    .collect(),
            )
    };

    // A consumer-protocol member of "busy" subscribed to topic t.
    let mut meta = BytesMut::new();
    meta.put_i16(1);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s("t")])
        .encode(&mut meta, 1)
        .expect("encode subscription");
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(gid("busy"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(meta.clone().freeze()),
            ])
    };
    let r: JoinGroupResponse = c.request(5, &join(""));
    let member = r.member_id.to_string();
    let r: JoinGroupResponse = c.request(5, &join(&member));
    assert_eq!(r.error_code, 0);
    let generation = r.generation_id;
    let r: SyncGroupResponse = c.request(
        3,
        &SyncGroupRequest::default()
            .with_group_id(gid("busy"))
            .with_generation_id(generation)
            .with_member_id(s(&member)),
    );
    assert_eq!(r.error_code, 0);
    let r: OffsetCommitResponse = c.request(7, &commit("busy", generation, &member));
    assert!(r.topics.iter().all(|t| t.partitions[0].error_code == 0));

    // OffsetDelete: the subscribed topic is refused, the other one is deleted.
    let r: OffsetDeleteResponse = c.request(0, &offset_delete("busy"));
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, vec![ResponseError::GroupSubscribedToTopic.code(), 0]);
    assert_eq!(fetched(&mut c, "busy"), vec![5, -1]);
    let r: OffsetDeleteResponse = c.request(0, &offset_delete("nobody"));
    assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());

    for v in 0..=2 {
        // A group known only by its offsets (commits from outside a group).
        let outside = format!("outside{v}");
        let r: OffsetCommitResponse = c.request(7, &commit(&outside, -1, ""));
        assert!(r.topics.iter().all(|t| t.partitions[0].error_code == 0));
        let r: DeleteGroupsResponse = c.request(
            v,
            &DeleteGroupsRequest::default().with_groups_names(vec![
                gid("busy"),
                gid("nobody"),
                gid(&outside),
            ]),
        );
        let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::NonEmptyGroup.code(),
                ResponseError::GroupIdNotFound.code(),
                0
            ],
            "DeleteGroups v{v}"
        );
        assert_eq!(fetched(&mut c, &outside), vec![-1, -1], "v{v}");
    }
    assert_eq!(
        fetched(&mut c, "busy"),
        vec![5, -1],
        "a refused delete keeps offsets"
    );

    // Once the member left, the group and its offsets go.
    let r: LeaveGroupResponse = c.request(
        1,
        &LeaveGroupRequest::default()
            .with_group_id(gid("busy"))
            .with_member_id(s(&member)),
    );
    assert_eq!(r.error_code, 0);
    let r: DeleteGroupsResponse = c.request(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![gid("busy")]),
    );
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(fetched(&mut c, "busy"), vec![-1, -1]);
    let r: DescribeGroupsResponse = c.request(
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid("busy")]),
    );
    assert_eq!(r.groups[0].group_state.as_str(), "Dead");
}

/// Counts the rebalances a consumer goes through (eager `range`: every rebalance revokes).
#[derive(Default)]
struct Revokes(std::sync::atomic::AtomicUsize);

impl rdkafka::ClientContext for Revokes {}

impl rdkafka::consumer::ConsumerContext for Revokes {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Revoke(_)) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn static_group_consumer<C: rdkafka::consumer::ConsumerContext>(
    b: &TestBroker,
    instance: Option<&str>,
    context: C,
) -> BaseConsumer<C> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "static")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "300")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    if let Some(i) = instance {
        config.set("group.instance.id", i);
    }
    let c: BaseConsumer<C> = config.create_with_context(context).expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

fn assigned_to<C: rdkafka::consumer::ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// librdkafka with `group.instance.id`: a static member that restarts within its session
/// timeout gets its partitions back and the other member never rebalances.
#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = start(tmp.path());
    create_topic(&b);
    let other = static_group_consumer(&b, None, Revokes::default());
    let a = static_group_consumer(
        &b,
        Some("static-a"),
        rdkafka::consumer::DefaultConsumerContext,
    );
    let deadline = Instant::now() + HANG;
    let split = loop {
        assert!(
            Instant::now() < deadline,
            "group never split the partitions"
        );
        assert!(other.poll(Duration::from_millis(50)).is_none());
        assert!(a.poll(Duration::from_millis(50)).is_none());
        let (x, y) = (assigned_to(&a), assigned_to(&other));
        if !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && x.len() + y.len() == 4 {
            break (x, y);
        }
    };
    let revokes = other.context().0.load(std::sync::atomic::Ordering::SeqCst);
    // A static member closes without LeaveGroup: its place waits for it.
    drop(a);
    let a2 = static_group_consumer(
        &b,
        Some("static-a"),
        rdkafka::consumer::DefaultConsumerContext,
    );
    while assigned_to(&a2).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restarted member got nothing"
        );
        assert!(other.poll(Duration::from_millis(50)).is_none());
        assert!(a2.poll(Duration::from_millis(50)).is_none());
    }
    // Had the group rebalanced, the other member would have revoked (eager range) before
    // anyone got an assignment of the new generation.
    assert_eq!(assigned_to(&a2), split.0, "same partitions back");
    assert_eq!(assigned_to(&other), split.1);
    assert_eq!(
        other.context().0.load(std::sync::atomic::Ordering::SeqCst),
        revokes,
        "the other member did not rebalance"
    );
}
