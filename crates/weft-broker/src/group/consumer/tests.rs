//! The KIP-848 coordinator driven by a fake clock: every transition, fencing error and
//! assignor, and a property test of the ownership invariant.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use super::assignor::{self, Subscriptions};
use super::*;
use crate::group::{self as classic, Config};

const G: &str = "g";

fn tid(n: u128) -> Uuid {
    Uuid::from_u128(n + 1)
}

/// Topics "t0", "t1"... with the given partition counts.
fn meta(counts: &[i32]) -> Metadata {
    counts
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("t{i}"), (tid(i as u128), *n)))
        .collect()
}

fn parts(a: &Assignment) -> BTreeSet<(Uuid, i32)> {
    partitions(a).collect()
}

fn settings() -> Settings {
    Settings {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        max_size: usize::MAX,
    }
}

fn join(member: &str, topics: &[&str]) -> Heartbeat {
    Heartbeat {
        group_id: G.into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 60_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    }
}

fn beat(member: &str, epoch: i32, owned: Option<&Assignment>) -> Heartbeat {
    Heartbeat {
        group_id: G.into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..Heartbeat::default()
    }
}

/// A coordinator with a clock and the topic metadata, checking the ownership invariant
/// after every call.
struct Sim {
    c: ConsumerGroups,
    now: i64,
    meta: Metadata,
}

impl Sim {
    fn new(counts: &[i32]) -> Sim {
        Sim {
            c: ConsumerGroups::default(),
            now: 1_000,
            meta: meta(counts),
        }
    }

    fn hb(&mut self, req: Heartbeat) -> HeartbeatReply {
        let r = self.c.heartbeat(self.now, &settings(), &self.meta, req);
        self.c.check_invariants().expect("ownership invariant");
        r
    }

    fn tick(&mut self, advance: i64) {
        self.now += advance;
        self.c.tick(self.now);
        self.c.check_invariants().expect("ownership invariant");
    }

    fn ok(&mut self, req: Heartbeat) -> HeartbeatReply {
        let r = self.hb(req);
        assert_eq!(r.error, NONE, "{r:?}");
        r
    }

    fn state(&self) -> GroupState {
        self.c.describe(G).expect("group").state
    }
}

fn err(r: &HeartbeatReply) -> i16 {
    r.error
}

#[test]
fn first_member_joins_and_gets_every_partition() {
    let mut s = Sim::new(&[3]);
    let r = s.ok(join("a", &["t0"]));
    assert_eq!(r.member_id.as_deref(), Some("a"));
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5_000);
    let a = r.assignment.expect("assignment on join");
    assert_eq!(parts(&a).len(), 3);
    assert_eq!(s.state(), GroupState::Stable);
    // A heartbeat that acknowledges it changes nothing and carries no assignment.
    let r = s.ok(beat("a", 1, Some(&a)));
    assert_eq!((r.member_epoch, r.assignment), (1, None));
    assert_eq!(s.c.group_epoch(G), Some(1));
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revoked_them() {
    let mut s = Sim::new(&[4]);
    let a_all = s.ok(join("a", &["t0"])).assignment.expect("a");
    let r = s.ok(join("b", &["t0"]));
    assert_eq!(s.c.group_epoch(G), Some(2));
    // b's target is owned by a: nothing yet, but b is at the new epoch.
    assert_eq!(r.assignment.as_ref().map(count), Some(0));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        s.c.member_state(G, "b"),
        Some((MemberState::UnreleasedPartitions, 2))
    );
    assert_eq!(s.state(), GroupState::Reconciling);
    // a is told to give up two partitions and keeps its epoch until it has.
    let r = s.ok(beat("a", 1, Some(&a_all)));
    let a_kept = r.assignment.expect("a's reduced assignment");
    assert_eq!(count(&a_kept), 2);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(
        s.c.member_state(G, "a"),
        Some((MemberState::UnrevokedPartitions, 1))
    );
    // b still gets nothing while a has not acknowledged.
    let r = s.ok(beat("b", 2, Some(&Assignment::new())));
    assert_eq!(r.assignment, None);
    // Heartbeats without owned partitions do not count as a revocation.
    let r = s.ok(beat("a", 1, None));
    assert_eq!(r.member_epoch, 1);
    // a acknowledges: it moves to epoch 2.
    let r = s.ok(beat("a", 1, Some(&a_kept)));
    assert_eq!((r.member_epoch, r.assignment), (2, None));
    // b gets the two released partitions.
    let r = s.ok(beat("b", 2, Some(&Assignment::new())));
    let b = r.assignment.expect("b's partitions");
    assert_eq!(count(&b), 2);
    assert!(parts(&b).is_disjoint(&parts(&a_kept)));
    assert_eq!(s.state(), GroupState::Stable);
}

#[test]
fn leaving_members_release_their_partitions_to_the_others() {
    let mut s = Sim::new(&[2]);
    let a = s.ok(join("a", &["t0"])).assignment.expect("a");
    s.ok(join("b", &["t0"]));
    let a = s.ok(beat("a", 1, Some(&a))).assignment.expect("a kept");
    s.ok(beat("a", 1, Some(&a)));
    let b = s
        .ok(beat("b", 2, Some(&Assignment::new())))
        .assignment
        .expect("b");
    let r = s.ok(beat("b", 2, Some(&b)));
    assert_eq!(r.assignment, None);
    let left = s.ok(Heartbeat {
        member_epoch: LEAVE_EPOCH,
        ..beat("b", 0, None)
    });
    assert_eq!(
        (left.member_id.as_deref(), left.member_epoch),
        (Some("b"), -1)
    );
    let r = s.ok(beat("a", 2, Some(&a)));
    assert_eq!(r.member_epoch, 3);
    assert_eq!(r.assignment.as_ref().map(count), Some(2));
    // Leaving twice: the member is gone.
    let again = s.hb(Heartbeat {
        member_epoch: LEAVE_EPOCH,
        ..beat("b", 0, None)
    });
    assert_eq!(err(&again), ResponseError::UnknownMemberId.code());
}

#[test]
fn sessions_expire_exactly_at_the_session_timeout() {
    let mut s = Sim::new(&[2]);
    let a = s.ok(join("a", &["t0"])).assignment.expect("a");
    s.ok(join("b", &["t0"]));
    s.tick(44_999);
    assert!(s.c.is_member(G, "a"));
    let _ = s.ok(beat("b", 2, Some(&Assignment::new())));
    s.tick(1);
    assert!(!s.c.is_member(G, "a"), "a's session ran out");
    assert!(s.c.is_member(G, "b"), "b heartbeated");
    let r = s.ok(beat("b", 2, Some(&Assignment::new())));
    assert_eq!(r.member_epoch, 3);
    assert_eq!(r.assignment.map(|x| parts(&x)), Some(parts(&a)));
    let late = s.hb(beat("a", 1, Some(&a)));
    assert_eq!(err(&late), ResponseError::UnknownMemberId.code());
}

#[test]
fn a_member_that_never_revokes_is_removed_after_its_rebalance_timeout() {
    let mut s = Sim::new(&[2]);
    let a = s.ok(join("a", &["t0"])).assignment.expect("a");
    s.ok(join("b", &["t0"]));
    s.ok(beat("a", 1, Some(&a))); // told to revoke one partition, never does
    s.tick(30_000);
    s.ok(beat("a", 1, Some(&a)));
    s.ok(beat("b", 2, Some(&Assignment::new())));
    s.tick(30_000); // 60 s rebalance timeout
    assert!(!s.c.is_member(G, "a"));
    let r = s.ok(beat("b", 2, Some(&Assignment::new())));
    assert_eq!(r.assignment.as_ref().map(count), Some(2));
}

#[test]
fn fencing_by_member_epoch() {
    let mut s = Sim::new(&[2]);
    let a = s.ok(join("a", &["t0"])).assignment.expect("a");
    let fenced = ResponseError::FencedMemberEpoch.code();
    assert_eq!(err(&s.hb(beat("a", 2, Some(&a)))), fenced, "ahead");
    s.ok(join("b", &["t0"]));
    let kept = s.ok(beat("a", 1, Some(&a))).assignment.expect("kept");
    s.ok(beat("a", 1, Some(&kept)));
    assert_eq!(s.c.member_state(G, "a"), Some((MemberState::Stable, 2)));
    // The answer with epoch 2 was lost: epoch 1 with a subset of the assignment is fine
    // and gets the assignment again.
    let r = s.ok(beat("a", 1, Some(&kept)));
    assert_eq!(r.member_epoch, 2);
    assert!(r.assignment.is_some());
    // Epoch 1 claiming a partition it no longer has is fenced, and so is an older one.
    assert_eq!(err(&s.hb(beat("a", 1, Some(&a)))), fenced);
    assert_eq!(err(&s.hb(beat("a", 1, None))), fenced);
    // Unknown members.
    let unknown = ResponseError::UnknownMemberId.code();
    assert_eq!(err(&s.hb(beat("zz", 2, None))), unknown);
    let other = Heartbeat {
        group_id: "nope".into(),
        ..beat("a", 2, None)
    };
    assert_eq!(err(&s.hb(other)), unknown);
    // A fenced member rejoins with epoch 0 (having dropped its partitions) and gets its
    // target back without a rebalance.
    let before = s.c.group_epoch(G);
    let r = s.ok(join("a", &["t0"]));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment.map(|x| parts(&x)), Some(parts(&kept)));
    assert_eq!(s.c.group_epoch(G), before);
}

#[test]
fn static_members_keep_their_partitions_across_a_restart() {
    let mut s = Sim::new(&[2]);
    let st = |member: &str, epoch: i32| Heartbeat {
        instance_id: Some("i1".into()),
        ..if epoch == 0 {
            join(member, &["t0"])
        } else {
            beat(member, epoch, None)
        }
    };
    let a = s.ok(st("a", 0)).assignment.expect("a");
    s.ok(join("b", &["t0"]));
    let kept = s.ok(Heartbeat {
        owned: Some(a.clone()),
        ..st("a", 1)
    });
    let kept = kept.assignment.expect("kept");
    s.ok(Heartbeat {
        owned: Some(kept.clone()),
        ..st("a", 1)
    });
    let epoch = s.c.group_epoch(G);
    // Another process with the same instance id while a is active.
    let r = s.hb(st("a2", 0));
    assert_eq!(err(&r), ResponseError::UnreleasedInstanceId.code());
    // A wrong member id for the instance.
    let r = s.hb(st("a2", 2));
    assert_eq!(err(&r), ResponseError::FencedInstanceId.code());
    // a leaves for now (-2): it stays in the group with its partitions.
    let r = s.ok(Heartbeat {
        member_epoch: STATIC_LEAVE_EPOCH,
        ..st("a", 2)
    });
    assert_eq!(r.member_epoch, -2);
    let b = s.ok(beat("b", 2, Some(&Assignment::new())));
    assert!(
        b.assignment
            .is_none_or(|x| parts(&x).is_disjoint(&parts(&kept))),
        "b never gets a's partitions while a is away"
    );
    // The restarted instance comes back under a new member id: same partitions, no
    // rebalance, the old id is gone.
    let r = s.ok(st("a2", 0));
    assert_eq!(r.assignment.map(|x| parts(&x)), Some(parts(&kept)));
    assert_eq!(s.c.group_epoch(G), epoch);
    assert!(!s.c.is_member(G, "a"));
    // A static member that stays away past its session timeout is removed.
    s.ok(Heartbeat {
        member_epoch: STATIC_LEAVE_EPOCH,
        ..st("a2", 2)
    });
    s.tick(45_000);
    assert!(!s.c.is_member(G, "a2"));
}

#[test]
fn malformed_heartbeats_are_refused_and_change_nothing() {
    let invalid = ResponseError::InvalidRequest.code();
    let cases: Vec<(Heartbeat, i16)> = vec![
        (
            Heartbeat {
                group_id: String::new(),
                ..join("a", &["t0"])
            },
            ResponseError::InvalidGroupId.code(),
        ),
        (join("", &["t0"]), invalid),
        (
            Heartbeat {
                instance_id: Some(String::new()),
                ..join("a", &["t0"])
            },
            invalid,
        ),
        (
            Heartbeat {
                member_epoch: -3,
                ..join("a", &["t0"])
            },
            invalid,
        ),
        (
            Heartbeat {
                member_epoch: STATIC_LEAVE_EPOCH,
                ..join("a", &["t0"])
            },
            invalid,
        ),
        (
            Heartbeat {
                rebalance_timeout_ms: -1,
                ..join("a", &["t0"])
            },
            invalid,
        ),
        (
            Heartbeat {
                owned: Some(Assignment::from([(tid(0), BTreeSet::from([0]))])),
                ..join("a", &["t0"])
            },
            invalid,
        ),
        (
            Heartbeat {
                subscribed_topic_names: None,
                ..join("a", &["t0"])
            },
            invalid,
        ),
        (
            Heartbeat {
                server_assignor: Some("sticky".into()),
                ..join("a", &["t0"])
            },
            ResponseError::UnsupportedAssignor.code(),
        ),
        (
            Heartbeat {
                subscribed_topic_regex: Some("t(".into()),
                ..join("a", &["t0"])
            },
            ResponseError::InvalidRegularExpression.code(),
        ),
    ];
    let mut s = Sim::new(&[1]);
    for (req, want) in cases {
        let r = s.hb(req.clone());
        assert_eq!(r.error, want, "{req:?}");
        assert!(r.message.is_some());
        assert!(!s.c.knows(G), "nothing stored for {req:?}");
    }
}

#[test]
fn regex_subscriptions_follow_topic_creation_and_partition_changes() {
    let mut s = Sim::new(&[1, 1]);
    let r = s.ok(Heartbeat {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("t[01]".into()),
        ..join("a", &[])
    });
    assert_eq!(r.assignment.as_ref().map(count), Some(2));
    // "t" alone does not match: Kafka's regex matches the whole name.
    s.meta.insert("t".into(), (tid(99), 1));
    let r = s.ok(beat("a", 1, None));
    assert_eq!((r.member_epoch, r.assignment), (1, None));
    // Partitions added to t0 and a new matching topic t1x... t1 grows: a new epoch.
    s.meta.insert("t0".into(), (tid(0), 3));
    let r = s.ok(beat("a", 1, None));
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment.as_ref().map(count), Some(4));
    // A deleted topic is revoked.
    s.meta.remove("t1");
    let all = r.assignment.expect("all");
    let r = s.ok(beat("a", 2, Some(&all)));
    let kept = r.assignment.expect("t1 revoked");
    assert_eq!(count(&kept), 3);
    let r = s.ok(beat("a", 2, Some(&kept)));
    assert_eq!(r.member_epoch, 3);
    assert_eq!(s.state(), GroupState::Stable);
}

#[test]
fn a_full_group_refuses_new_members() {
    let mut s = Sim::new(&[1]);
    let small = Settings {
        max_size: 1,
        ..settings()
    };
    let r = s.c.heartbeat(s.now, &small, &s.meta, join("a", &["t0"]));
    assert_eq!(r.error, NONE);
    let r = s.c.heartbeat(s.now, &small, &s.meta, join("b", &["t0"]));
    assert_eq!(r.error, ResponseError::GroupMaxSizeReached.code());
    assert!(!s.c.is_member(G, "b"));
}

#[test]
fn offset_commits_and_fetches_check_the_member_epoch() {
    let mut s = Sim::new(&[1]);
    assert_eq!(s.c.validate_commit(G, 1, "a"), None, "not a consumer group");
    s.ok(join("a", &["t0"]));
    assert_eq!(s.c.validate_commit(G, 1, "a"), Some(NONE));
    let stale = ResponseError::StaleMemberEpoch.code();
    let unknown = ResponseError::UnknownMemberId.code();
    assert_eq!(s.c.validate_commit(G, 0, "a"), Some(stale));
    assert_eq!(s.c.validate_commit(G, 2, "a"), Some(stale));
    assert_eq!(s.c.validate_commit(G, 1, "b"), Some(unknown));
    assert_eq!(
        s.c.validate_commit(G, -1, ""),
        Some(unknown),
        "group has members"
    );
    assert_eq!(s.c.validate_fetch(G, Some("a"), 1), None);
    assert_eq!(s.c.validate_fetch(G, Some("a"), 0), Some(stale));
    assert_eq!(s.c.validate_fetch(G, Some("b"), 1), Some(unknown));
    assert_eq!(s.c.validate_fetch(G, None, -1), None);
    s.ok(Heartbeat {
        member_epoch: LEAVE_EPOCH,
        ..beat("a", 0, None)
    });
    assert_eq!(s.c.validate_commit(G, -1, ""), Some(NONE), "empty group");
}

fn classic_join(group: &str) -> classic::Join {
    classic::Join {
        group_id: group.into(),
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: String::new(),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        require_known_member_id: false,
    }
}

fn join_error(ready: &classic::Ready) -> i16 {
    match ready.first() {
        Some((_, classic::Reply::Join(j))) => j.error,
        other => panic!("no join reply: {other:?}"),
    }
}

#[test]
fn one_protocol_per_group() {
    let config = Config {
        initial_rebalance_delay_ms: 0,
        ..Config::default()
    };
    let mut c = Coordinator::new(config, "p".into());
    let meta = meta(&[1]);
    // A classic group with a member refuses consumer heartbeats.
    assert_eq!(join_error(&c.join(0, 1, classic_join("classic"))), NONE);
    let r = c.consumer_heartbeat(
        0,
        &settings(),
        &meta,
        Heartbeat {
            group_id: "classic".into(),
            ..join("a", &["t0"])
        },
    );
    assert_eq!(r.error, ResponseError::GroupIdNotFound.code());
    assert_eq!(
        r.message.as_deref(),
        Some("Group classic is not a consumer group.")
    );
    assert!(!c.consumer.knows("classic"));
    // A consumer group with a member refuses JoinGroup.
    let r = c.consumer_heartbeat(0, &settings(), &meta, join("a", &["t0"]));
    assert_eq!(r.error, NONE);
    let ready = c.join(0, 2, classic_join(G));
    assert_eq!(
        join_error(&ready),
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(c.delete_group(G), Err(ResponseError::NonEmptyGroup.code()));
    // Once empty, it becomes a classic group on JoinGroup.
    c.consumer_heartbeat(
        0,
        &settings(),
        &meta,
        Heartbeat {
            member_epoch: LEAVE_EPOCH,
            ..beat("a", 0, None)
        },
    );
    assert_eq!(join_error(&c.join(0, 3, classic_join(G))), NONE);
    assert!(!c.consumer.knows(G));
}

#[test]
fn an_empty_classic_group_becomes_a_consumer_group() {
    let config = Config {
        initial_rebalance_delay_ms: 0,
        ..Config::default()
    };
    let mut c = Coordinator::new(config, "p".into());
    assert_eq!(join_error(&c.join(0, 1, classic_join("x"))), NONE);
    c.tick(100_000); // never synced nor heartbeated: expired
    assert!(
        c.list()
            .iter()
            .any(|(id, _, st)| id == "x" && *st == classic::State::Empty)
    );
    let r = c.consumer_heartbeat(
        200_000,
        &settings(),
        &meta(&[1]),
        Heartbeat {
            group_id: "x".into(),
            ..join("a", &["t0"])
        },
    );
    assert_eq!(r.error, NONE, "{r:?}");
    assert!(c.consumer.knows("x"));
    assert!(c.list().iter().all(|(id, _, _)| id != "x"));
}

fn subs(members: &[(&str, &[&str])]) -> Subscriptions {
    members
        .iter()
        .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
        .collect()
}

fn check_complete(out: &BTreeMap<String, Assignment>, subs: &Subscriptions, meta: &Metadata) {
    let mut seen = BTreeSet::new();
    for (m, a) in out {
        for (t, p) in partitions(a) {
            assert!(seen.insert((t, p)), "{t}/{p} assigned twice");
            let name = meta.iter().find(|(_, (id, _))| *id == t).map(|(n, _)| n);
            assert!(
                name.is_some_and(|n| subs[m].contains(n)),
                "{m} got a partition of a topic it does not subscribe to"
            );
        }
    }
    let want: usize = meta
        .iter()
        .filter(|(n, _)| subs.values().any(|s| s.contains(*n)))
        .map(|(_, (_, c))| *c as usize)
        .sum();
    assert_eq!(seen.len(), want, "every subscribed partition is assigned");
}

#[test]
fn uniform_balances_within_one_and_is_sticky() {
    let cases: &[(&[i32], usize)] = &[(&[4], 2), (&[7], 3), (&[1, 2, 3], 4), (&[10], 1), (&[2], 5)];
    for (counts, n) in cases {
        let m = meta(counts);
        let names: Vec<String> = m.keys().cloned().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let ids: Vec<String> = (0..*n).map(|i| format!("m{i}")).collect();
        let s = subs(
            &ids.iter()
                .map(|i| (i.as_str(), refs.as_slice()))
                .collect::<Vec<_>>(),
        );
        let out = assignor::uniform(&s, &m, &BTreeMap::new());
        check_complete(&out, &s, &m);
        let sizes: Vec<usize> = out.values().map(count).collect();
        let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
        assert!(
            hi.zip(lo).is_some_and(|(h, l)| h - l <= 1),
            "{counts:?} {n}: {sizes:?}"
        );
        // One more member: only what it needs moves.
        let mut s2 = s.clone();
        s2.insert("new".into(), refs.iter().map(|t| t.to_string()).collect());
        let out2 = assignor::uniform(&s2, &m, &out);
        check_complete(&out2, &s2, &m);
        let moved: usize = out
            .iter()
            .map(|(mid, a)| parts(a).difference(&parts(&out2[mid])).count())
            .sum();
        assert_eq!(
            moved,
            count(&out2["new"]),
            "{counts:?} {n}: only the newcomer's share moved"
        );
    }
}

#[test]
fn uniform_respects_heterogeneous_subscriptions() {
    let m = meta(&[4, 2]);
    let s = subs(&[("a", &["t0"]), ("b", &["t0", "t1"]), ("c", &["t1"])]);
    let out = assignor::uniform(&s, &m, &BTreeMap::new());
    check_complete(&out, &s, &m);
    let sizes: Vec<usize> = out.values().map(count).collect();
    assert_eq!(sizes, vec![2, 2, 2]);
}

#[test]
fn range_gives_contiguous_ranges_per_topic() {
    let m = meta(&[5, 2]);
    let s = subs(&[("a", &["t0", "t1"]), ("b", &["t0", "t1"])]);
    let out = assignor::range(&s, &m);
    check_complete(&out, &s, &m);
    let of = |mem: &str, t: u128| out[mem].get(&tid(t)).cloned().unwrap_or_default();
    assert_eq!(of("a", 0), BTreeSet::from([0, 1, 2]));
    assert_eq!(of("b", 0), BTreeSet::from([3, 4]));
    assert_eq!(of("a", 1), BTreeSet::from([0]));
    assert_eq!(of("b", 1), BTreeSet::from([1]));
    // The group picks the assignor its members ask for.
    let mut sim = Sim::new(&[4]);
    let r = sim.ok(Heartbeat {
        server_assignor: Some("range".into()),
        ..join("a", &["t0"])
    });
    assert_eq!(r.error, NONE);
    assert_eq!(sim.c.describe(G).map(|d| d.assignor), Some("range".into()));
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Leave(usize),
    StaticLeave(usize),
    /// Heartbeat acknowledging what the client owns.
    Beat(usize),
    /// Heartbeat without owned partitions (not a full request).
    Light(usize),
    Tick(i64),
    Grow,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5usize).prop_map(Op::Join),
        1 => (0..5usize).prop_map(Op::Leave),
        1 => (0..5usize).prop_map(Op::StaticLeave),
        8 => (0..5usize).prop_map(Op::Beat),
        2 => (0..5usize).prop_map(Op::Light),
        2 => (1..30_000i64).prop_map(Op::Tick),
        1 => Just(Op::Grow),
    ]
}

/// What a client believes: its member id, epoch and owned partitions.
#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: Assignment,
    joined: bool,
    generation: u32,
}

fn apply(client: &mut Client, r: &HeartbeatReply) {
    if r.error != NONE {
        // Fenced or unknown: the client drops everything and must rejoin.
        client.joined = false;
        client.owned.clear();
        return;
    }
    client.epoch = r.member_epoch;
    if let Some(a) = &r.assignment {
        client.owned = a.clone();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over random joins, leaves, heartbeats and timeouts: no partition is ever owned by
    /// two members (server side), a live client never holds a partition the coordinator
    /// has not recorded as its own, and once everyone heartbeats the group converges to a
    /// stable, complete assignment.
    #[test]
    fn no_partition_is_ever_owned_by_two_members(ops in proptest::collection::vec(op(), 1..80)) {
        let mut s = Sim::new(&[3, 2]);
        let topics = ["t0", "t1"];
        let mut clients: Vec<Client> = vec![Client::default(); 5];
        for op in ops {
            match op {
                Op::Join(i) if !clients[i].joined => {
                    let c = &mut clients[i];
                    c.generation += 1;
                    c.member_id = format!("m{i}-{}", c.generation);
                    let static_id = (i % 2 == 0).then(|| format!("inst{i}"));
                    let req = Heartbeat { instance_id: static_id, ..join(&c.member_id, &topics) };
                    let r = s.hb(req);
                    c.owned.clear();
                    c.joined = r.error == NONE;
                    apply(c, &r);
                }
                Op::Join(_) => {}
                Op::Leave(i) | Op::StaticLeave(i) if clients[i].joined => {
                    let c = &mut clients[i];
                    let epoch = if matches!(op, Op::Leave(_)) { LEAVE_EPOCH } else { STATIC_LEAVE_EPOCH };
                    let instance = (i % 2 == 0).then(|| format!("inst{i}"));
                    if epoch == STATIC_LEAVE_EPOCH && instance.is_none() {
                        continue;
                    }
                    let _ = s.hb(Heartbeat { member_epoch: epoch, instance_id: instance, ..beat(&c.member_id, 0, None) });
                    c.joined = false;
                    c.owned.clear();
                }
                Op::Leave(_) | Op::StaticLeave(_) => {}
                Op::Beat(i) | Op::Light(i) if clients[i].joined => {
                    let c = &mut clients[i];
                    let owned = matches!(op, Op::Beat(_)).then(|| c.owned.clone());
                    let instance = (i % 2 == 0).then(|| format!("inst{i}"));
                    let r = s.hb(Heartbeat { instance_id: instance, ..beat(&c.member_id, c.epoch, owned.as_ref()) });
                    apply(c, &r);
                }
                Op::Beat(_) | Op::Light(_) => {}
                Op::Tick(ms) => s.tick(ms),
                Op::Grow => {
                    if let Some((_, n)) = s.meta.get_mut("t0") {
                        *n += 1;
                    }
                }
            }
            // Live clients hold only what the coordinator records as theirs.
            for c in clients.iter().filter(|c| c.joined && s.c.is_member(G, &c.member_id)) {
                let d = s.c.describe(G).expect("group");
                let m = d.members.iter().find(|m| m.member_id == c.member_id).expect("member");
                let owners = &s.c.groups[G].owners;
                for tp in partitions(&c.owned) {
                    prop_assert_eq!(owners.get(&tp), Some(&m.member_id), "client {} holds {:?}", c.member_id, tp);
                }
            }
        }
        // Convergence: everyone alive heartbeats a few rounds (joined clients the
        // coordinator dropped rejoin).
        for _ in 0..6 {
            for (i, c) in clients.iter_mut().enumerate() {
                if !c.joined {
                    continue;
                }
                let instance = (i % 2 == 0).then(|| format!("inst{i}"));
                if !s.c.is_member(G, &c.member_id) {
                    c.generation += 1;
                    c.member_id = format!("m{i}-{}", c.generation);
                    let r = s.hb(Heartbeat { instance_id: instance, ..join(&c.member_id, &topics) });
                    c.owned.clear();
                    apply(c, &r);
                    continue;
                }
                let r = s.hb(Heartbeat { instance_id: instance, ..beat(&c.member_id, c.epoch, Some(&c.owned)) });
                apply(c, &r);
            }
        }
        let live: Vec<&Client> = clients.iter().filter(|c| c.joined && s.c.is_member(G, &c.member_id)).collect();
        let d = s.c.describe(G);
        if let Some(d) = d.filter(|d| d.members.iter().any(|m| m.member_epoch >= 0)) {
            let active = d.members.iter().filter(|m| m.member_epoch >= 0).count();
            if active == d.members.len() {
                prop_assert_eq!(d.state, GroupState::Stable, "{:?}", d);
                let total: usize = live.iter().map(|c| count(&c.owned)).sum();
                let want: usize = s.meta.values().map(|(_, n)| *n as usize).sum();
                prop_assert_eq!(total, want, "every partition is owned once converged");
            }
        }
    }
}

/// The groups of `s` written to a store in `dir`, read back by a fresh coordinator at `now`.
fn restart(s: &mut Sim, dir: &std::path::Path) {
    let mut images = Vec::new();
    for (id, _) in s.c.list() {
        images.push((
            id.clone(),
            crate::group::offsets::state::GroupImage {
                consumer: s.c.image(&id),
                ..Default::default()
            },
        ));
    }
    let mut store = crate::group::offsets::tests::store(dir);
    store.store_groups(images).expect("store");
    drop(store);
    let store = crate::group::offsets::tests::store(dir);
    let mut c = ConsumerGroups::default();
    for (id, g, members) in store.consumer_groups() {
        c.restore(id, g, members, s.now);
    }
    c.check_invariants()
        .expect("ownership invariant after restore");
    s.c = c;
}

#[test]
fn a_reconciling_group_resumes_after_a_restart_with_its_epochs_and_assignments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Sim::new(&[4]);
    let a_all = s.ok(join("a", &["t0"])).assignment.expect("a");
    let r = s.ok(join("b", &["t0"]));
    assert_eq!(r.member_epoch, 2);
    let before = s.c.describe(G).expect("group");
    assert_eq!(before.state, GroupState::Reconciling);

    s.now += 40_000; // within the 45 s session: it restarts from the load
    restart(&mut s, dir.path());
    assert_eq!(s.c.describe(G), Some(before), "epochs, members, targets");
    // a still has to revoke two partitions and keeps epoch 1 meanwhile.
    let r = s.ok(beat("a", 1, Some(&a_all)));
    assert_eq!(r.member_epoch, 1);
    let kept = r.assignment.expect("a's remaining partitions");
    assert_eq!(count(&kept), 2);
    let r = s.ok(beat("a", 1, Some(&kept)));
    assert_eq!(r.member_epoch, 2);
    let r = s.ok(beat("b", 2, Some(&Assignment::new())));
    assert_eq!(r.assignment.as_ref().map(count), Some(2), "released to b");
    assert_eq!(s.state(), GroupState::Stable);
    let b_parts = r.assignment.expect("b");

    // Stable: a restart changes nothing, no epoch moves, no assignment is sent.
    let epoch = s.c.group_epoch(G);
    restart(&mut s, dir.path());
    assert_eq!(s.c.group_epoch(G), epoch);
    let r = s.ok(beat("a", 2, Some(&kept)));
    assert_eq!((r.member_epoch, r.assignment), (2, None));
    let r = s.ok(beat("b", 2, Some(&b_parts)));
    assert_eq!((r.member_epoch, r.assignment), (2, None));
    // Sessions count from the load: b goes silent and expires 45 s later.
    s.tick(44_999);
    s.ok(beat("a", 2, Some(&kept)));
    s.tick(1);
    assert_eq!(
        err(&s.hb(beat("b", 2, Some(&b_parts)))),
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn consumer_group_rebalances_are_counted_and_timed_until_every_member_reconciled() {
    use std::collections::BTreeMap as Map;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    type Values = Arc<Mutex<Map<String, Vec<f64>>>>;
    struct Cell(String, Values);
    impl CounterFn for Cell {
        fn increment(&self, v: u64) {
            let mut m = self.1.lock().expect("values");
            let e = m.entry(self.0.clone()).or_insert_with(|| vec![0.0]);
            e[0] += v as f64;
        }
        fn absolute(&self, _: u64) {}
    }
    impl HistogramFn for Cell {
        fn record(&self, v: f64) {
            let mut m = self.1.lock().expect("values");
            m.entry(self.0.clone()).or_default().push(v);
        }
    }
    struct Rec(Values);
    impl Rec {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Arc::new(Cell(name, Arc::clone(&self.0)))
        }
    }
    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.cell(key))
        }
    }

    let values = Values::default();
    let rec = Rec(Arc::clone(&values));
    metrics::with_local_recorder(&rec, || {
        let mut s = Sim::new(&[4]);
        let a_all = s.ok(join("a", &["t0"])).assignment.expect("a");
        s.ok(join("b", &["t0"]));
        assert_eq!(s.state(), GroupState::Reconciling);
        s.now += 700;
        let kept = s
            .ok(beat("a", 1, Some(&a_all)))
            .assignment
            .expect("a keeps two");
        s.ok(beat("a", 1, Some(&kept)));
        s.now += 300;
        s.ok(beat("b", 2, Some(&Assignment::new())));
        assert_eq!(s.state(), GroupState::Stable);
    });
    let v = values.lock().expect("values").clone();
    assert_eq!(
        v.get("weft_group_rebalances_total{group=g,protocol=consumer}"),
        Some(&vec![2.0]),
        "a's join and b's join each computed a target assignment"
    );
    assert_eq!(
        v.get("weft_group_rebalance_duration_seconds{protocol=consumer}"),
        Some(&vec![1.0]),
        "from b's join to b reconciled: 1 s of the fake clock"
    );
}

/// A static member that left for now (epoch -2, its process restarting) is still held for
/// its instance after a *broker* restart: the instance comes back under a new member id to
/// the same partitions, with no rebalance.
#[test]
fn a_static_member_away_during_a_broker_restart_gets_its_partitions_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Sim::new(&[2]);
    let st = |member: &str, epoch: i32| Heartbeat {
        instance_id: Some("i1".into()),
        ..if epoch == 0 {
            join(member, &["t0"])
        } else {
            beat(member, epoch, None)
        }
    };
    let a = s.ok(st("a", 0)).assignment.expect("a");
    s.ok(Heartbeat {
        owned: Some(a.clone()),
        ..st("a", 1)
    });
    s.ok(Heartbeat {
        member_epoch: STATIC_LEAVE_EPOCH,
        ..st("a", 1)
    });
    let epoch = s.c.group_epoch(G);
    restart(&mut s, dir.path());
    let r = s.ok(st("a2", 0));
    assert_eq!(r.assignment.map(|x| parts(&x)), Some(parts(&a)));
    assert_eq!(r.member_epoch, 1);
    assert_eq!(s.c.group_epoch(G), epoch, "no rebalance");
    assert!(!s.c.is_member(G, "a"));
}
