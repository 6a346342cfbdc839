//! The consumer group protocol (KIP-848, `group.protocol=consumer`) with librdkafka: a group
//! scales from one member to three and back to two while a keyed producer writes the whole
//! time; the broker assigns (uniform), members reconcile incrementally. Also: a group is
//! one protocol at a time, over the wire.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestBroker;
use common::raw::Raw;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, GroupId, JoinGroupRequest,
    ListGroupsRequest, OffsetCommitRequest, TopicName,
    join_group_request::JoinGroupRequestProtocol,
    offset_commit_request::OffsetCommitRequestPartition,
    offset_commit_request::OffsetCommitRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Generous bound so a broken broker fails the test instead of hanging it; never a
/// performance threshold.
const HANG: Duration = Duration::from_secs(120);
const TOPIC: &str = "events";
const PARTITIONS: i32 = 6;
const GROUP: &str = "kip848";
const KEYS: usize = 24;

fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_in(dir, |c| {
        c.group_consumer_heartbeat_interval = Duration::from_millis(300);
        c.group_consumer_session_timeout = Duration::from_secs(10);
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

/// Who owns which partition right now, by the members' rebalance callbacks; every
/// violation (a partition assigned while another member holds it) is recorded.
#[derive(Default)]
struct Ownership {
    owner: HashMap<i32, String>,
    violations: Vec<String>,
    /// (member, assigned?, partitions) in the order the callbacks ran.
    events: Vec<(String, bool, BTreeSet<i32>)>,
    /// Assignments each member has received so far.
    assigns: HashMap<String, usize>,
}

struct Ctx {
    name: String,
    shared: Arc<Mutex<Ownership>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Assignments count from before the consumer starts fetching.
        if let Rebalance::Assign(tpl) = rebalance {
            let mut o = self.shared.lock().expect("lock");
            let ps: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            for p in &ps {
                if let Some(other) = o.owner.insert(*p, self.name.clone())
                    && other != self.name
                {
                    let v = format!(
                        "partition {p} assigned to {} while {other} owns it",
                        self.name
                    );
                    o.violations.push(v);
                }
            }
            o.events.push((self.name.clone(), true, ps));
            *o.assigns.entry(self.name.clone()).or_default() += 1;
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Revocations count once the consumer has stopped.
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut o = self.shared.lock().expect("lock");
            let ps: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            for p in &ps {
                if o.owner.get(p) == Some(&self.name) {
                    o.owner.remove(p);
                }
            }
            o.events.push((self.name.clone(), false, ps));
        }
    }
}

struct Member {
    name: String,
    c: BaseConsumer<Ctx>,
    shared: Arc<Mutex<Ownership>>,
    /// (key, seq, assignments received before) in processing order.
    seen: Vec<(usize, u64, usize)>,
}

fn member(b: &TestBroker, name: &str, shared: &Arc<Mutex<Ownership>>) -> Member {
    let ctx = Ctx {
        name: name.to_owned(),
        shared: Arc::clone(shared),
    };
    let c: BaseConsumer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", GROUP)
        .set("group.protocol", "consumer")
        .set("client.id", name)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create_with_context(ctx)
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    Member {
        name: name.to_owned(),
        c,
        shared: Arc::clone(shared),
        seen: Vec::new(),
    }
}

fn assigned(m: &Member) -> BTreeSet<i32> {
    m.c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

fn poll(m: &mut Member) {
    match m.c.poll(Duration::from_millis(20)) {
        None => {}
        Some(Ok(msg)) => {
            let key = std::str::from_utf8(msg.key().unwrap_or_default()).expect("key");
            let value = std::str::from_utf8(msg.payload().unwrap_or_default()).expect("value");
            let k: usize = key.trim_start_matches('k').parse().expect("key number");
            let seq: u64 = value.parse().expect("seq");
            let stint = m.shared.lock().expect("lock").assigns.get(&m.name).copied();
            m.seen.push((k, seq, stint.unwrap_or(0)));
        }
        Some(Err(e)) => panic!("{}: consume: {e}", m.name),
    }
}

/// Polls everyone until `done` holds.
fn poll_until(members: &mut [&mut Member], what: &str, done: impl Fn(&[&mut Member]) -> bool) {
    let deadline = Instant::now() + HANG;
    while !done(members) {
        assert!(Instant::now() < deadline, "timed out: {what}");
        for m in members.iter_mut() {
            poll(m);
        }
    }
}

#[test]
fn members_join_and_leave_while_records_flow_and_no_partition_has_two_owners() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = start(tmp.path());
    create_topic(&b);

    // A keyed producer writes the whole time: key kN, values 0, 1, 2... per key.
    let stop = Arc::new(AtomicBool::new(false));
    let produced = {
        let (stop, bootstrap) = (Arc::clone(&stop), b.bootstrap());
        std::thread::spawn(move || {
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("linger.ms", "2")
                .set("acks", "all")
                .create()
                .expect("producer");
            let mut next = vec![0u64; KEYS];
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let k = n % KEYS;
                let (key, value) = (format!("k{k}"), next[k].to_string());
                let mut record = BaseRecord::to(TOPIC).key(&key).payload(&value);
                loop {
                    match p.send(record) {
                        Ok(()) => break,
                        Err((e, r)) => {
                            assert!(
                                matches!(
                                    e,
                                    rdkafka::error::KafkaError::MessageProduction(
                                        rdkafka::types::RDKafkaErrorCode::QueueFull
                                    )
                                ),
                                "send: {e}"
                            );
                            record = r;
                            p.poll(Duration::from_millis(10));
                        }
                    }
                }
                next[k] += 1;
                n += 1;
                p.poll(Duration::ZERO);
                if n.is_multiple_of(KEYS) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            p.flush(HANG).expect("flush");
            next
        })
    };

    let shared = Arc::new(Mutex::new(Ownership::default()));
    let mut a = member(&b, "a", &shared);
    poll_until(&mut [&mut a], "a owns every partition", |ms| {
        assigned(ms[0]).len() == PARTITIONS as usize
    });
    let events_before_scale_out = shared.lock().expect("lock").events.len();

    // Scale out to three: the broker's uniform assignor gives two partitions each.
    let mut bm = member(&b, "b", &shared);
    let mut c = member(&b, "c", &shared);
    poll_until(
        &mut [&mut a, &mut bm, &mut c],
        "three members share",
        |ms| ms.iter().all(|m| assigned(m).len() == 2),
    );
    let a_kept = assigned(&a);
    {
        let o = shared.lock().expect("lock");
        // Incremental: a never gave up the partitions it kept.
        for (who, assign, ps) in &o.events[events_before_scale_out..] {
            if who == "a" && !assign {
                assert!(ps.is_disjoint(&a_kept), "a revoked {ps:?} it kept");
            }
        }
    }

    // b leaves: a and c take its partitions.
    bm.c.unsubscribe();
    poll_until(&mut [&mut bm], "b gave up its partitions", |ms| {
        assigned(ms[0]).is_empty()
    });
    let b_seen = std::mem::take(&mut bm.seen);
    drop(bm);
    poll_until(&mut [&mut a, &mut c], "a and c share everything", |ms| {
        ms.iter().all(|m| assigned(m).len() == 3)
    });

    // Stop producing, then everything produced is consumed.
    stop.store(true, Ordering::Relaxed);
    let next = produced.join().expect("producer thread");
    let total: u64 = next.iter().sum();
    assert!(total > 0);
    poll_until(&mut [&mut a, &mut c], "every record consumed", |ms| {
        let mut got: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); KEYS];
        for m in ms {
            for (k, s, _) in &m.seen {
                got[*k].insert(*s);
            }
        }
        got.iter()
            .zip(&next)
            .all(|(g, n)| (0..*n).all(|s| g.contains(&s)))
    });

    let o = shared.lock().expect("lock");
    assert!(o.violations.is_empty(), "{:?}", o.violations);
    // Per-key order within each member's processing: between two assignments a key's
    // records come exactly in sequence (an assignment may resume a partition elsewhere,
    // from the last commit).
    for (name, seen) in [("a", &a.seen), ("b", &b_seen), ("c", &c.seen)] {
        let mut last: HashMap<usize, (u64, usize)> = HashMap::new();
        for (k, s, stint) in seen.iter() {
            if let Some((prev, prev_stint)) = last.insert(*k, (*s, *stint))
                && prev_stint == *stint
            {
                assert_eq!(*s, prev + 1, "{name}: key {k} went from {prev} to {s}");
            }
        }
    }
    let all: usize = a.seen.len() + b_seen.len() + c.seen.len();
    assert!(all as u64 >= total, "at least once: {all} of {total}");
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn heartbeat(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_member_id(str(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
        .with_subscribed_topic_names(Some(vec![TopicName(str(TOPIC))]))
        .with_topic_partitions(if epoch == 0 { Some(Vec::new()) } else { None })
}

fn join(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(str("range"))
                .with_metadata(bytes::Bytes::new()),
        ])
}

#[test]
fn a_group_speaks_one_protocol_at_a_time_over_the_wire() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = TestBroker::start_in(tmp.path(), |c| {
        c.group_initial_rebalance_delay = Duration::from_millis(0);
    });
    create_topic(&b);
    let mut raw = Raw::connect(&b);

    // A consumer group with a member refuses classic joins.
    let r = raw.request(1, &heartbeat("new", "m1", 0));
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.member_epoch, 1);
    let assigned: usize = r
        .assignment
        .as_ref()
        .map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum())
        .unwrap_or(0);
    assert_eq!(assigned, PARTITIONS as usize);
    let j = raw.request(7, &join("new"));
    assert_eq!(
        j.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );

    // A classic group with a member refuses consumer heartbeats.
    let j = raw.request(3, &join("old"));
    assert_eq!(j.error_code, 0, "{j:?}");
    let r = raw.request(1, &heartbeat("old", "m2", 0));
    assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());
    assert_eq!(
        r.error_message.as_ref().map(|m| m.as_str()),
        Some("Group old is not a consumer group.")
    );

    // Each is reported with its own type and state.
    let l = raw.request(4, &ListGroupsRequest::default());
    let listed: BTreeMap<String, (String, String)> = l
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                (g.protocol_type.to_string(), g.group_state.to_string()),
            )
        })
        .collect();
    assert_eq!(
        listed.get("new"),
        Some(&("consumer".to_owned(), "Stable".to_owned()))
    );
    assert_eq!(listed.get("old").map(|(t, _)| t.as_str()), Some("consumer"));
    let by_type = |t: &str, raw: &mut Raw| -> Vec<(String, String)> {
        let l = raw.request(
            5,
            &ListGroupsRequest::default().with_types_filter(vec![str(t)]),
        );
        l.groups
            .iter()
            .map(|g| (g.group_id.0.to_string(), g.group_type.to_string()))
            .collect()
    };
    assert_eq!(
        by_type("consumer", &mut raw),
        vec![("new".to_owned(), "consumer".to_owned())]
    );
    assert_eq!(
        by_type("classic", &mut raw),
        vec![("old".to_owned(), "classic".to_owned())]
    );
    let d = raw.request(
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![
            GroupId(str("new")),
            GroupId(str("old")),
            GroupId(str("none")),
        ]),
    );
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members.len(), 1);
    assert_eq!(
        d.groups[0].members[0].assignment.topic_partitions[0]
            .topic_name
            .0
            .as_str(),
        TOPIC
    );
    assert_eq!(
        d.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert_eq!(
        d.groups[2].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    // Commits by the member's epoch: the current one lands, a stale one does not, and
    // a consumer-group member must use v9.
    let commit = |epoch: i32, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(str("new")))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(str("m1"))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(str(TOPIC)))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ])
    };
    let code =
        |r: kafka_protocol::messages::OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    assert_eq!(code(raw.request(9, &commit(1, 5))), 0);
    assert_eq!(
        code(raw.request(9, &commit(0, 6))),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        code(raw.request(8, &commit(1, 7))),
        ResponseError::UnsupportedVersion.code()
    );
    // The member leaves; the empty consumer group becomes a classic group on JoinGroup.
    let r = raw.request(1, &heartbeat("new", "m1", -1));
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    let j = raw.request(3, &join("new"));
    assert_eq!(j.error_code, 0, "{j:?}");
}

/// The log end offset of `__consumer_offsets` (ListOffsets latest).
fn offsets_topic_end(raw: &mut Raw) -> i64 {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(str("__consumer_offsets")))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
    let r = raw.request(1, &req);
    r.topics[0].partitions[0].offset
}

/// Over the wire, through a broker restart: a stable classic group keeps its generation,
/// members and assignments (heartbeats answer NONE, DescribeGroups says Stable), a stable
/// consumer group its epochs and assignments (the member's heartbeat at its epoch is
/// answered at that epoch, with no new assignment).
#[test]
fn stable_groups_of_both_protocols_survive_a_broker_restart() {
    use kafka_protocol::messages::{
        DescribeGroupsRequest, HeartbeatRequest, SyncGroupRequest,
        consumer_group_heartbeat_request::TopicPartitions,
        sync_group_request::SyncGroupRequestAssignment,
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = TestBroker::start_in(tmp.path(), |c| {
        c.group_initial_rebalance_delay = Duration::from_millis(0);
    });
    create_topic(&b);
    let mut raw = Raw::connect(&b);
    let before_groups = offsets_topic_end(&mut raw);

    // Classic: join (member id required first), sync, Stable.
    let j = raw.request(5, &join("classic"));
    assert_eq!(j.error_code, ResponseError::MemberIdRequired.code());
    let j = raw.request(5, &join("classic").with_member_id(j.member_id));
    assert_eq!(j.error_code, 0, "{j:?}");
    let (member, generation) = (j.member_id.clone(), j.generation_id);
    let s = raw.request(
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(str("classic")))
            .with_generation_id(generation)
            .with_member_id(member.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(member.clone())
                    .with_assignment(bytes::Bytes::from_static(b"all of it")),
            ]),
    );
    assert_eq!(s.error_code, 0);

    // KIP-848: join, then acknowledge the assignment: Stable.
    let r = raw.request(1, &heartbeat("kip", "k1", 0));
    assert_eq!((r.error_code, r.member_epoch), (0, 1), "{r:?}");
    let owned: Vec<TopicPartitions> = r
        .assignment
        .expect("assignment")
        .topic_partitions
        .iter()
        .map(|t| {
            TopicPartitions::default()
                .with_topic_id(t.topic_id)
                .with_partitions(t.partitions.clone())
        })
        .collect();
    let ack = heartbeat("kip", "k1", 1).with_topic_partitions(Some(owned));
    let r = raw.request(1, &ack);
    assert_eq!((r.error_code, r.member_epoch), (0, 1));
    assert!(r.assignment.is_none());

    // The group ticker writes the classic group, the consumer group and its member.
    let deadline = std::time::Instant::now() + HANG;
    while offsets_topic_end(&mut raw) < before_groups + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "membership never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(raw);
    b.stop();

    let b = TestBroker::start_in(tmp.path(), |c| {
        c.group_initial_rebalance_delay = Duration::from_millis(0);
    });
    let mut raw = Raw::connect(&b);
    let hb = raw.request(
        3,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(str("classic")))
            .with_generation_id(generation)
            .with_member_id(member.clone()),
    );
    assert_eq!(hb.error_code, 0, "the classic member carries on");
    let d = raw.request(
        3,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(str("classic"))]),
    );
    let g = &d.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_id, member);
    assert_eq!(g.members[0].member_assignment.as_ref(), b"all of it");
    // A stale generation is still fenced.
    let hb = raw.request(
        3,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(str("classic")))
            .with_generation_id(generation - 1)
            .with_member_id(member),
    );
    assert_eq!(hb.error_code, ResponseError::IllegalGeneration.code());

    let r = raw.request(1, &heartbeat("kip", "k1", 1));
    assert_eq!((r.error_code, r.member_epoch), (0, 1), "{r:?}");
    assert!(r.assignment.is_none(), "no new assignment: {r:?}");
    let d = raw.request(
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(str("kip"))]),
    );
    let g = &d.groups[0];
    assert_eq!((g.error_code, g.group_epoch, g.assignment_epoch), (0, 1, 1));
    assert_eq!(g.group_state.as_str(), "Stable");
    let assigned: usize = g.members[0]
        .assignment
        .topic_partitions
        .iter()
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(assigned, PARTITIONS as usize);
}
