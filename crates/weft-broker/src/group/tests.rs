//! The coordinator driven by a fake clock: `now` is a number the tests advance.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i64 = 100;

fn err(e: ResponseError) -> i16 {
    e.code()
}

struct T {
    c: Coordinator,
    now: i64,
    next: Waiter,
    /// Replies delivered so far, by waiter.
    replies: HashMap<Waiter, Reply>,
}

impl T {
    fn new() -> T {
        T {
            c: Coordinator::new(
                Config {
                    initial_rebalance_delay_ms: DELAY,
                    ..Config::default()
                },
                "p".into(),
            ),
            now: 1_000_000,
            next: 0,
            replies: HashMap::new(),
        }
    }

    fn take(&mut self, ready: Ready) {
        for (w, r) in ready {
            assert!(
                self.replies.insert(w, r).is_none(),
                "waiter {w} answered twice"
            );
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let ready = self.c.tick(self.now);
        self.take(ready);
    }

    fn join_req(member: &str, protocols: &[(&str, &str)]) -> Join {
        Join {
            group_id: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: String::new(),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(n, m)| ((*n).to_owned(), Bytes::from((*m).to_owned())))
                .collect(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            require_known_member_id: true,
        }
    }

    /// Sends a JoinGroup; returns its waiter.
    fn join_with(&mut self, req: Join) -> Waiter {
        self.next += 1;
        let w = self.next;
        let ready = self.c.join(self.now, w, req);
        self.take(ready);
        w
    }

    fn join(&mut self, member: &str) -> Waiter {
        self.join_with(Self::join_req(member, &[("range", "m")]))
    }

    fn join_reply(&mut self, w: Waiter) -> Option<JoinReply> {
        match self.replies.remove(&w) {
            Some(Reply::Join(j)) => Some(j),
            Some(other) => panic!("not a join reply: {other:?}"),
            None => None,
        }
    }

    fn sync_reply(&mut self, w: Waiter) -> Option<SyncReply> {
        match self.replies.remove(&w) {
            Some(Reply::Sync(s)) => Some(s),
            Some(other) => panic!("not a sync reply: {other:?}"),
            None => None,
        }
    }

    /// A new member: MEMBER_ID_REQUIRED, then the join with the given id. Returns the member
    /// id and the waiter of the second join.
    fn new_member(&mut self) -> (String, Waiter) {
        let w = self.join("");
        let r = self.join_reply(w).expect("immediate reply");
        assert_eq!(r.error, err(ResponseError::MemberIdRequired));
        assert!(!r.member_id.is_empty());
        let w2 = self.join(&r.member_id);
        (r.member_id, w2)
    }

    fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &str)]) -> Waiter {
        self.next += 1;
        let w = self.next;
        let ready = self.c.sync(
            self.now,
            w,
            "g",
            generation,
            member,
            None,
            None,
            None,
            assignments
                .iter()
                .map(|(m, a)| ((*m).to_owned(), Bytes::from((*a).to_owned())))
                .collect(),
        );
        self.take(ready);
        w
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> i16 {
        self.c.heartbeat(self.now, "g", generation, member, None)
    }

    fn leave(&mut self, members: &[&str]) -> Result<Vec<i16>, i16> {
        let ids: Vec<(String, Option<String>)> =
            members.iter().map(|m| ((*m).to_owned(), None)).collect();
        let (r, ready) = self.c.leave(self.now, "g", &ids);
        self.take(ready);
        r
    }

    /// One member joined, synced and stable; returns its id and generation.
    fn stable_single(&mut self) -> (String, i32) {
        let (a, w) = self.new_member();
        assert_eq!(self.join_reply(w), None, "waits for the initial delay");
        self.advance(DELAY);
        let j = self.join_reply(w).expect("joined after the delay");
        assert_eq!(j.error, NONE);
        assert_eq!(j.leader, a);
        let s = self.sync(&a, j.generation_id, &[(&a, "all")]);
        assert_eq!(self.sync_reply(s).expect("sync").assignment, "all");
        assert_eq!(self.c.state("g"), State::Stable);
        (a, j.generation_id)
    }
}

#[test]
fn first_member_joins_after_the_initial_delay_and_syncs_its_own_assignment() {
    let mut t = T::new();
    assert_eq!(t.c.state("g"), State::Dead);
    let (a, w) = t.new_member();
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
    t.advance(DELAY - 1);
    assert_eq!(t.join_reply(w), None);
    t.advance(1);
    let j = t.join_reply(w).expect("joined");
    assert_eq!(
        j,
        JoinReply {
            error: NONE,
            generation_id: 1,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: a.clone(),
            member_id: a.clone(),
            members: vec![(a.clone(), None, Bytes::from("m"))],
        }
    );
    assert_eq!(t.c.state("g"), State::CompletingRebalance);
    // Heartbeats between join and sync are fine.
    assert_eq!(t.heartbeat(&a, 1), NONE);
    let s = t.sync(&a, 1, &[(&a, "p0")]);
    let s = t.sync_reply(s).expect("sync");
    assert_eq!((s.error, s.assignment), (NONE, Bytes::from("p0")));
    assert_eq!(t.c.state("g"), State::Stable);
    assert_eq!(t.heartbeat(&a, 1), NONE);
}

#[test]
fn members_joining_during_the_initial_delay_share_one_rebalance() {
    let mut t = T::new();
    let (a, wa) = t.new_member();
    t.advance(DELAY / 2);
    let (b, wb) = t.new_member();
    // The delay restarts for b, so the join completes DELAY after b arrived.
    t.advance(DELAY / 2);
    assert_eq!(t.join_reply(wa), None);
    t.advance(DELAY / 2);
    let ja = t.join_reply(wa).expect("a");
    let jb = t.join_reply(wb).expect("b");
    assert_eq!((ja.generation_id, jb.generation_id), (1, 1));
    assert_eq!(ja.leader, a);
    assert_eq!(jb.leader, a);
    assert_eq!(ja.members.len(), 2, "the leader gets the member list");
    assert!(jb.members.is_empty(), "followers do not");
    // The follower waits for the leader's assignment.
    let sb = t.sync(&b, 1, &[]);
    assert_eq!(t.sync_reply(sb), None);
    let sa = t.sync(&a, 1, &[(&a, "A"), (&b, "B")]);
    assert_eq!(t.sync_reply(sa).expect("a").assignment, "A");
    assert_eq!(t.sync_reply(sb).expect("b").assignment, "B");
}

#[test]
fn a_new_member_makes_the_stable_group_rebalance_through_heartbeats() {
    let mut t = T::new();
    let (a, g1) = t.stable_single();
    let (b, wb) = t.new_member();
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
    assert_eq!(t.join_reply(wb), None, "waits for a to rejoin");
    assert_eq!(t.heartbeat(&a, g1), err(ResponseError::RebalanceInProgress));
    // A sync of the old generation during the rebalance.
    let s = t.sync(&a, g1, &[]);
    assert_eq!(
        t.sync_reply(s).expect("sync").error,
        err(ResponseError::RebalanceInProgress)
    );
    let wa = t.join(&a);
    let ja = t
        .join_reply(wa)
        .expect("complete: everyone joined, no initial delay");
    let jb = t.join_reply(wb).expect("b");
    assert_eq!(ja.generation_id, g1 + 1);
    assert_eq!(jb.generation_id, g1 + 1);
    assert_eq!(ja.leader, a, "the leader stays");
    // The old generation is fenced.
    assert_eq!(t.heartbeat(&b, g1), err(ResponseError::IllegalGeneration));
    assert_eq!(
        t.c.validate_commit(t.now, "g", g1, &a, None),
        err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        t.c.validate_commit(t.now, "g", g1 + 1, &a, None),
        err(ResponseError::RebalanceInProgress),
        "no commits between join and sync"
    );
    let sa = t.sync(&a, g1 + 1, &[(&a, "A"), (&b, "B")]);
    let sb = t.sync(&b, g1 + 1, &[]);
    assert_eq!(t.sync_reply(sa).expect("a").assignment, "A");
    assert_eq!(t.sync_reply(sb).expect("b").assignment, "B");
    assert_eq!(t.c.validate_commit(t.now, "g", g1 + 1, &b, None), NONE);
}

#[test]
fn fencing_errors() {
    let mut t = T::new();
    let (a, g) = t.stable_single();
    let unknown = err(ResponseError::UnknownMemberId);
    assert_eq!(t.heartbeat("nobody", g), unknown);
    assert_eq!(t.c.heartbeat(t.now, "other-group", g, &a, None), unknown);
    assert_eq!(
        t.heartbeat(&a, g + 1),
        err(ResponseError::IllegalGeneration)
    );
    let s = t.sync("nobody", g, &[]);
    assert_eq!(t.sync_reply(s).expect("sync").error, unknown);
    let s = t.sync(&a, g - 1, &[]);
    assert_eq!(
        t.sync_reply(s).expect("sync").error,
        err(ResponseError::IllegalGeneration)
    );
    // A member id nobody handed out.
    let w = t.join("made-up");
    assert_eq!(t.join_reply(w).expect("join").error, unknown);
    // Commits: unknown member, stale generation, outsiders while the group has members.
    assert_eq!(t.c.validate_commit(t.now, "g", g, "nobody", None), unknown);
    assert_eq!(t.c.validate_commit(t.now, "g", -1, "", None), unknown);
    assert_eq!(t.c.validate_commit(t.now, "fresh", -1, "", None), NONE);
    assert_eq!(t.c.validate_commit(t.now, "g", g, &a, None), NONE);
    // Sync before any join.
    let mut fresh = T::new();
    let s = fresh.sync("x", 0, &[]);
    assert_eq!(fresh.sync_reply(s).expect("sync").error, unknown);
}

#[test]
fn join_validation() {
    let mut t = T::new();
    let mut r = T::join_req("", &[("range", "")]);
    r.session_timeout_ms = 10;
    let w = t.join_with(r);
    assert_eq!(
        t.join_reply(w).expect("join").error,
        err(ResponseError::InvalidSessionTimeout)
    );
    let mut r = T::join_req("", &[("range", "")]);
    r.group_id = String::new();
    let w = t.join_with(r);
    assert_eq!(
        t.join_reply(w).expect("join").error,
        err(ResponseError::InvalidGroupId)
    );
    // Before v4 a member without id is admitted directly.
    let mut r = T::join_req("", &[("range", "")]);
    r.require_known_member_id = false;
    let w = t.join_with(r);
    t.advance(DELAY);
    let j = t.join_reply(w).expect("join");
    assert_eq!(j.error, NONE);
    assert!(!j.member_id.is_empty());
    // A member with no protocol in common is refused.
    let w = t.join_with(T::join_req("", &[("roundrobin", "")]));
    let id = t.join_reply(w).expect("id").member_id;
    let w = t.join_with(T::join_req(&id, &[("roundrobin", "")]));
    assert_eq!(
        t.join_reply(w).expect("join").error,
        err(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn the_protocol_is_one_all_members_support() {
    let mut t = T::new();
    let w = t.join_with(T::join_req(
        "",
        &[("range", "1"), ("cooperative-sticky", "2")],
    ));
    let a = t.join_reply(w).expect("id").member_id;
    let wa = t.join_with(T::join_req(
        &a,
        &[("range", "1"), ("cooperative-sticky", "2")],
    ));
    let w = t.join_with(T::join_req("", &[("cooperative-sticky", "3")]));
    let b = t.join_reply(w).expect("id").member_id;
    let wb = t.join_with(T::join_req(&b, &[("cooperative-sticky", "3")]));
    t.advance(DELAY);
    let ja = t.join_reply(wa).expect("a");
    assert_eq!(ja.protocol_name.as_deref(), Some("cooperative-sticky"));
    let metadata: Vec<&[u8]> = ja.members.iter().map(|(_, _, m)| m.as_ref()).collect();
    assert_eq!(metadata, vec![b"2".as_ref(), b"3".as_ref()]);
    assert_eq!(
        t.join_reply(wb).expect("b").protocol_name.as_deref(),
        Some("cooperative-sticky")
    );
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let mut t = T::new();
    let (a, g) = t.stable_single();
    let (b, wb) = t.new_member();
    let wa = t.join(&a);
    let g2 = t.join_reply(wa).expect("a").generation_id;
    assert_eq!(g2, g + 1);
    t.join_reply(wb).expect("b");
    let sa = t.sync(&a, g2, &[(&a, "A"), (&b, "B")]);
    t.sync_reply(sa).expect("a");
    // b never heartbeats; a does.
    for _ in 0..9 {
        t.advance(1000);
        assert_eq!(t.heartbeat(&a, g2), NONE);
    }
    assert_eq!(t.c.state("g"), State::Stable);
    t.advance(1000);
    assert_eq!(t.c.state("g"), State::PreparingRebalance, "b expired");
    assert_eq!(t.heartbeat(&b, g2), err(ResponseError::UnknownMemberId));
    assert_eq!(t.heartbeat(&a, g2), err(ResponseError::RebalanceInProgress));
    let wa = t.join(&a);
    let j = t.join_reply(wa).expect("a alone");
    assert_eq!(j.generation_id, g2 + 1);
    assert_eq!(j.members.len(), 1);
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut t = T::new();
    let (a, _) = t.stable_single();
    let (_b, wb) = t.new_member();
    // a keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for _ in 0..29 {
        t.advance(1000);
        t.heartbeat(&a, 1);
    }
    assert_eq!(t.join_reply(wb), None);
    t.advance(1000);
    let jb = t.join_reply(wb).expect("b after the rebalance timeout");
    assert_eq!(jb.generation_id, 2);
    assert_eq!(jb.members.len(), 1, "only b, now the leader");
    assert_eq!(t.heartbeat(&a, 2), err(ResponseError::UnknownMemberId));
}

#[test]
fn leaving_single_and_batched() {
    let mut t = T::new();
    let (a, wa) = t.new_member();
    let (b, wb) = t.new_member();
    let (c, wc) = t.new_member();
    t.advance(DELAY);
    for w in [wa, wb, wc] {
        t.join_reply(w).expect("joined");
    }
    let s = t.sync(&a, 1, &[]);
    t.sync_reply(s).expect("sync");
    // Batched: two members and an unknown one.
    assert_eq!(
        t.leave(&[&b, "nobody", &c]),
        Ok(vec![NONE, err(ResponseError::UnknownMemberId), NONE])
    );
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
    let wa = t.join(&a);
    assert_eq!(t.join_reply(wa).expect("a").generation_id, 2);
    let s = t.sync(&a, 2, &[]);
    t.sync_reply(s).expect("sync");
    // Single: the last member leaves, the group is empty.
    assert_eq!(t.leave(&[&a]), Ok(vec![NONE]));
    assert_eq!(t.c.state("g"), State::Empty);
    assert_eq!(t.heartbeat(&a, 2), err(ResponseError::UnknownMemberId));
    assert_eq!(
        t.c.leave(t.now, "unknown-group", &[("x".to_owned(), None)])
            .0,
        Err(err(ResponseError::UnknownMemberId))
    );
    // An empty group accepts commits from outside again.
    assert_eq!(t.c.validate_commit(t.now, "g", -1, "", None), NONE);
}

#[test]
fn leaving_during_a_rebalance_answers_the_waiting_join() {
    let mut t = T::new();
    let (a, wa) = t.new_member();
    assert_eq!(t.leave(&[&a]), Ok(vec![NONE]));
    assert_eq!(
        t.join_reply(wa).expect("answered").error,
        err(ResponseError::UnknownMemberId)
    );
    assert_eq!(t.c.state("g"), State::Empty);
}

#[test]
fn a_leader_that_never_syncs_is_dropped() {
    let mut t = T::new();
    let (a, wa) = t.new_member();
    let (b, wb) = t.new_member();
    t.advance(DELAY);
    t.join_reply(wa).expect("a");
    t.join_reply(wb).expect("b");
    let sb = t.sync(&b, 1, &[]);
    t.advance(i64::from(REBALANCE));
    assert_eq!(
        t.sync_reply(sb).expect("b").error,
        err(ResponseError::RebalanceInProgress)
    );
    assert_eq!(t.heartbeat(&a, 1), err(ResponseError::UnknownMemberId));
    let wb = t.join(&b);
    let jb = t.join_reply(wb).expect("b rejoined alone");
    assert_eq!((jb.generation_id, jb.leader), (2, b));
}

#[test]
fn unused_member_ids_expire() {
    let mut t = T::new();
    let w = t.join("");
    let id = t.join_reply(w).expect("id").member_id;
    t.advance(i64::from(SESSION));
    let w = t.join(&id);
    assert_eq!(
        t.join_reply(w).expect("join").error,
        err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_follower_rejoining_with_the_same_metadata_keeps_the_generation() {
    let mut t = T::new();
    let (a, wa) = t.new_member();
    let (b, wb) = t.new_member();
    t.advance(DELAY);
    t.join_reply(wa).expect("a");
    t.join_reply(wb).expect("b");
    let sa = t.sync(&a, 1, &[(&a, "A"), (&b, "B")]);
    t.sync_reply(sa).expect("a");
    let wb = t.join(&b);
    let jb = t.join_reply(wb).expect("immediate");
    assert_eq!((jb.error, jb.generation_id), (NONE, 1));
    assert_eq!(t.c.state("g"), State::Stable);
    // Different metadata (cooperative: owned partitions changed) rebalances.
    let wb = t.join_with(T::join_req(&b, &[("range", "other")]));
    assert_eq!(t.join_reply(wb), None);
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
}

#[test]
fn list_and_describe() {
    let mut t = T::new();
    let (a, _) = t.stable_single();
    assert_eq!(
        t.c.list(),
        vec![("g".to_owned(), "consumer".to_owned(), State::Stable)]
    );
    let d = t.c.describe("g").expect("known");
    assert_eq!(d.state, State::Stable);
    assert_eq!(d.protocol, "range");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, a);
    assert_eq!(d.members[0].assignment, "all");
    assert_eq!(d.members[0].metadata, "m");
    assert!(t.c.describe("other").is_none());
}

impl T {
    /// A JoinGroup of a static member (no MEMBER_ID_REQUIRED round trip).
    fn join_static(&mut self, member: &str, instance: &str) -> Waiter {
        let mut req = Self::join_req(member, &[("range", "m")]);
        req.group_instance_id = Some(instance.to_owned());
        self.join_with(req)
    }

    fn sync_static(&mut self, member: &str, instance: &str, generation: i32) -> Waiter {
        self.next += 1;
        let w = self.next;
        let ready = self.c.sync(
            self.now,
            w,
            "g",
            generation,
            member,
            Some(instance),
            None,
            None,
            Vec::new(),
        );
        self.take(ready);
        w
    }

    fn heartbeat_static(&mut self, member: &str, instance: &str, generation: i32) -> i16 {
        self.c
            .heartbeat(self.now, "g", generation, member, Some(instance))
    }

    /// Static member "a" (instance "ia", leader) and dynamic member "b", Stable in
    /// generation 1 with assignments "A" and "B": (a, b).
    fn stable_static_pair(&mut self) -> (String, String) {
        let wa = self.join_static("", "ia");
        assert_eq!(self.join_reply(wa), None, "a static member joins at once");
        let (b, wb) = self.new_member();
        self.advance(DELAY);
        let ja = self.join_reply(wa).expect("a joined");
        let jb = self.join_reply(wb).expect("b joined");
        assert_eq!((ja.error, jb.error, ja.generation_id), (NONE, NONE, 1));
        let a = ja.member_id;
        assert_eq!(ja.leader, a);
        let sb = self.sync(&b, 1, &[]);
        let sa = self.sync(&a, 1, &[(&a, "A"), (&b, "B")]);
        assert_eq!(self.sync_reply(sa).expect("a").assignment, "A");
        assert_eq!(self.sync_reply(sb).expect("b").assignment, "B");
        (a, b)
    }
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_assignment_without_rebalance() {
    let mut t = T::new();
    let (a, b) = t.stable_static_pair();
    t.advance(SESSION as i64 / 2);
    assert_eq!(t.heartbeat(&b, 1), NONE);
    // a restarts: no member id, same instance id, and never sent LeaveGroup.
    let w = t.join_static("", "ia");
    let j = t.join_reply(w).expect("answered at once");
    assert_eq!(j.error, NONE);
    assert_eq!(j.generation_id, 1, "no new generation");
    assert_ne!(j.member_id, a, "a new member id replaces the old one");
    assert_eq!(
        j.leader, a,
        "the leader as it was: the restarted leader does not assign"
    );
    assert!(j.members.is_empty());
    let a2 = j.member_id;
    assert_eq!(t.c.state("g"), State::Stable);
    assert_eq!(t.heartbeat(&b, 1), NONE, "b sees no rebalance");
    assert_eq!(t.heartbeat_static(&a2, "ia", 1), NONE);
    let s = t.sync_static(&a2, "ia", 1);
    assert_eq!(
        t.sync_reply(s).expect("sync").assignment,
        "A",
        "assignment kept"
    );
    // The old member id of the instance is fenced everywhere.
    let fenced = err(ResponseError::FencedInstanceId);
    assert_eq!(t.heartbeat_static(&a, "ia", 1), fenced);
    let s = t.sync_static(&a, "ia", 1);
    assert_eq!(t.sync_reply(s).expect("sync").error, fenced);
    assert_eq!(t.c.validate_commit(t.now, "g", 1, &a, Some("ia")), fenced);
    assert_eq!(t.c.validate_commit(t.now, "g", 1, &a2, Some("ia")), NONE);
    let w = t.join_static(&a, "ia");
    assert_eq!(t.join_reply(w).expect("join").error, fenced);
    let ids: Vec<String> =
        t.c.describe("g")
            .expect("group")
            .members
            .into_iter()
            .map(|m| m.member_id)
            .collect();
    assert_eq!(ids, vec![a2.clone(), b.clone()]);
    // The new id is the leader from now on: its session is what keeps it in.
    t.advance(SESSION as i64 - 1);
    assert_eq!(t.heartbeat(&b, 1), NONE);
    assert_eq!(t.heartbeat_static(&a2, "ia", 1), NONE);
}

#[test]
fn a_static_member_replaced_during_a_rebalance_fences_the_waiting_join() {
    let mut t = T::new();
    let w_old = t.join_static("", "ia");
    let w_new = t.join_static("", "ia");
    let old = t.join_reply(w_old).expect("old join answered");
    assert_eq!(old.error, err(ResponseError::FencedInstanceId));
    assert_eq!(t.join_reply(w_new), None, "still in the initial delay");
    t.advance(DELAY);
    let j = t.join_reply(w_new).expect("joined");
    assert_eq!((j.error, j.generation_id), (NONE, 1));
    assert_eq!(j.leader, j.member_id);
    assert_eq!(j.members.len(), 1, "the old member id is gone");
}

#[test]
fn a_static_member_back_with_protocols_the_group_lacks_is_refused_and_not_replaced() {
    let mut t = T::new();
    let (a, b) = t.stable_static_pair();
    let mut req = T::join_req("", &[("roundrobin", "m"), ("range", "m")]);
    req.group_instance_id = Some("ia".into());
    let w = t.join_with(req);
    // range is still the protocol every member supports: nothing changes.
    let a2 = t.join_reply(w).expect("at once");
    assert_eq!((a2.error, a2.generation_id), (NONE, 1));
    let mut req = T::join_req("", &[("roundrobin", "m")]);
    req.group_instance_id = Some("ia".into());
    let w = t.join_with(req);
    assert_eq!(
        t.join_reply(w).expect("at once").error,
        err(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        t.heartbeat_static(&a2.member_id, "ia", 1),
        NONE,
        "not replaced"
    );
    assert_eq!(
        t.heartbeat_static(&a, "ia", 1),
        err(ResponseError::FencedInstanceId)
    );
    assert_eq!(t.heartbeat(&b, 1), NONE);
}

#[test]
fn leaving_by_instance_id_and_session_expiry_of_static_members() {
    let mut t = T::new();
    let (a, b) = t.stable_static_pair();
    let fenced = err(ResponseError::FencedInstanceId);
    let unknown = err(ResponseError::UnknownMemberId);
    let (r, ready) = t.c.leave(
        t.now,
        "g",
        &[
            ("stale".to_owned(), Some("ia".to_owned())),
            (String::new(), Some("nobody".to_owned())),
        ],
    );
    t.take(ready);
    assert_eq!(r, Ok(vec![fenced, unknown]));
    assert_eq!(t.heartbeat_static(&a, "ia", 1), NONE, "still in");
    let (r, ready) =
        t.c.leave(t.now, "g", &[(String::new(), Some("ia".to_owned()))]);
    t.take(ready);
    assert_eq!(r, Ok(vec![NONE]), "by instance id alone");
    assert_eq!(t.heartbeat_static(&a, "ia", 1), unknown);
    assert_eq!(t.heartbeat(&b, 1), err(ResponseError::RebalanceInProgress));

    // A static member that stays away past its session is removed like any other; coming
    // back later it is a new member.
    let mut t = T::new();
    let (a, b) = t.stable_static_pair();
    for _ in 0..4 {
        t.advance(SESSION as i64 / 3);
        let hb = t.heartbeat(&b, 1);
        assert!(hb == NONE || hb == err(ResponseError::RebalanceInProgress));
    }
    assert_eq!(t.heartbeat_static(&a, "ia", 1), unknown, "expired");
    let w = t.join_static("", "ia");
    assert_eq!(t.join_reply(w), None, "joins the rebalance");
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
}

/// A leader whose JoinGroup answer was lost joins again with the same metadata before
/// syncing: Kafka answers with the current generation and the member list again, instead of
/// a new rebalance that would throw away the followers' waiting syncs.
#[test]
fn a_leader_rejoining_with_the_same_metadata_before_syncing_gets_the_member_list_again() {
    let mut t = T::new();
    let (a, wa) = t.new_member();
    let (b, wb) = t.new_member();
    t.advance(DELAY);
    assert_eq!(t.join_reply(wa).expect("a").members.len(), 2);
    t.join_reply(wb).expect("b");
    let sb = t.sync(&b, 1, &[]);
    assert_eq!(
        t.sync_reply(sb),
        None,
        "b waits for the leader's assignment"
    );
    let wa = t.join(&a);
    let again = t.join_reply(wa).expect("answered at once");
    assert_eq!((again.error, again.generation_id), (NONE, 1));
    assert_eq!(again.leader, a);
    let listed: Vec<&str> = again.members.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        listed,
        vec![a.as_str(), b.as_str()],
        "the member list again"
    );
    assert_eq!(t.c.state("g"), State::CompletingRebalance);
    assert_eq!(t.sync_reply(sb), None, "b's sync still waits");
    let sa = t.sync(&a, 1, &[(&a, "A"), (&b, "B")]);
    assert_eq!(t.sync_reply(sa).expect("a").assignment, "A");
    assert_eq!(t.sync_reply(sb).expect("b").assignment, "B");
    // In Stable a leader's JoinGroup still rebalances (it may have seen metadata change).
    let wa = t.join(&a);
    assert_eq!(t.join_reply(wa), None);
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
}

/// Groups whose members all left do not stay in memory forever (tools such as
/// kafka-console-consumer use a fresh group id per run): like Kafka's periodic cleanup of
/// empty groups, an empty group is forgotten once it stayed empty for
/// `empty_group_retention_ms`. Its committed offsets live apart and are not touched.
#[test]
fn an_empty_group_is_forgotten_after_the_retention() {
    let mut t = T::new();
    let retention = Config::default().empty_group_retention_ms;
    let (a, _) = t.stable_single();
    assert_eq!(t.leave(&[&a]), Ok(vec![NONE]));
    assert_eq!(t.c.state("g"), State::Empty);
    t.advance(retention - 1);
    assert_eq!(t.c.state("g"), State::Empty, "kept for a while");
    assert_eq!(t.c.list().len(), 1);
    t.advance(1);
    assert_eq!(t.c.state("g"), State::Dead, "forgotten");
    assert!(t.c.list().is_empty());
    assert!(t.c.describe("g").is_none());
    // A group that only ever handed out a member id goes once that id expired.
    let w = t.join("");
    let id = t.join_reply(w).expect("id").member_id;
    t.advance(i64::from(SESSION) - 1);
    assert_eq!(
        t.c.state("g"),
        State::Empty,
        "the member id is still pending"
    );
    t.advance(1);
    assert_eq!(t.c.state("g"), State::Dead);
    let w = t.join(&id);
    assert_eq!(
        t.join_reply(w).expect("join").error,
        err(ResponseError::UnknownMemberId)
    );
    // A group that is used again is not forgotten.
    let (a, g) = t.stable_single();
    for _ in 0..=retention / 9000 {
        t.advance(9000);
        assert_eq!(t.heartbeat(&a, g), NONE);
    }
    assert_eq!(t.c.state("g"), State::Stable);
}

/// Persists `t`'s groups into a store in `dir` and returns a fresh coordinator restored from
/// a reopened store at `now` (a broker restart).
fn restart(t: &mut T, dir: &std::path::Path, now: i64) -> Coordinator {
    let mut store = offsets::tests::store(dir);
    store.store_groups(t.c.take_images()).expect("store groups");
    drop(store);
    let store = offsets::tests::store(dir);
    let mut c = Coordinator::new(
        Config {
            initial_rebalance_delay_ms: DELAY,
            ..Config::default()
        },
        "q".into(),
    );
    c.restore(now, &store);
    c
}

#[test]
fn a_stable_group_resumes_after_a_restart_without_rebalancing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = T::new();
    let (a, wa) = t.new_member();
    let (b, wb) = t.new_member();
    t.advance(DELAY);
    let ja = t.join_reply(wa).expect("a joined");
    let jb = t.join_reply(wb).expect("b joined");
    let generation = ja.generation_id;
    let (leader, follower) = if ja.leader == a { (&a, &b) } else { (&b, &a) };
    assert_eq!(jb.generation_id, generation);
    let sl = t.sync(leader, generation, &[(&a, "pa"), (&b, "pb")]);
    let sf = t.sync(follower, generation, &[]);
    assert!(t.sync_reply(sl).is_some() && t.sync_reply(sf).is_some());
    let before = t.c.describe("g").expect("group");

    // Restart SESSION - 1 after the last heartbeat: sessions start again at the load.
    let later = t.now + i64::from(SESSION) - 1;
    t.c = restart(&mut t, dir.path(), later);
    t.now = later;
    assert_eq!(t.c.state("g"), State::Stable);
    assert_eq!(
        t.c.describe("g"),
        Some(before),
        "members, protocol, assignments"
    );
    assert_eq!(t.heartbeat(&a, generation), NONE);
    assert_eq!(t.heartbeat(&b, generation), NONE);
    assert_eq!(
        t.c.validate_commit(t.now, "g", generation, &a, None),
        NONE,
        "commits of the generation are accepted"
    );
    // A follower's rejoin with the same metadata keeps the generation.
    let w = t.join(follower);
    assert_eq!(t.join_reply(w).expect("join").generation_id, generation);
    // A stale generation is still refused, and a member that stops heartbeating expires
    // one session after the load.
    assert_eq!(
        t.heartbeat(&a, generation - 1),
        err(ResponseError::IllegalGeneration)
    );
    t.advance(i64::from(SESSION) - 1);
    assert_eq!(t.heartbeat(&a, generation), NONE);
    t.advance(1);
    assert_eq!(
        t.heartbeat(&b, generation),
        err(ResponseError::UnknownMemberId),
        "b expired"
    );
    assert_eq!(
        t.heartbeat(&a, generation),
        err(ResponseError::RebalanceInProgress),
        "a rebalance starts for the rest"
    );
}

#[test]
fn a_rebalancing_group_resumes_as_it_was_last_stable_and_a_deleted_one_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = T::new();
    let (a, generation) = t.stable_single();
    let mut store = offsets::tests::store(dir.path());
    store.store_groups(t.c.take_images()).expect("store");
    drop(store);
    // A second member starts a rebalance that is not finished at the restart.
    let (_b, _wb) = t.new_member();
    assert_eq!(t.c.state("g"), State::PreparingRebalance);
    let now = t.now;
    t.c = restart(&mut t, dir.path(), now);
    assert_eq!(t.c.state("g"), State::Stable);
    assert_eq!(t.heartbeat(&a, generation), NONE);
    let d = t.c.describe("g").expect("group");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].assignment, "all");
    // The member leaves: the group is Empty (persisted), then deleted (tombstoned).
    assert_eq!(t.leave(&[&a]), Ok(vec![NONE]));
    let now = t.now;
    t.c = restart(&mut t, dir.path(), now);
    assert_eq!(t.c.state("g"), State::Empty);
    assert_eq!(t.c.delete_group("g"), Ok(true));
    t.c = restart(&mut t, dir.path(), now);
    assert_eq!(t.c.state("g"), State::Dead);
}

#[test]
fn a_static_member_keeps_its_place_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = T::new();
    let (a, b) = t.stable_static_pair();
    let generation = t.c.groups.get("g").expect("group").generation;
    let now = t.now;
    t.c = restart(&mut t, dir.path(), now);
    assert_eq!(t.heartbeat(&b, generation), NONE);
    // The instance restarts (no member id): it takes over without a rebalance.
    let w = t.join_static("", "ia");
    let j = t.join_reply(w).expect("answered at once");
    assert_eq!((j.error, j.generation_id), (NONE, generation));
    assert_ne!(j.member_id, a);
    assert_eq!(
        t.heartbeat_static(&a, "ia", generation),
        err(ResponseError::FencedInstanceId)
    );
    assert_eq!(t.c.state("g"), State::Stable);
    let s = t.sync_static(&j.member_id, "ia", generation);
    assert_eq!(t.sync_reply(s).expect("sync").assignment, "A");
}

/// A new member with the given rebalance timeout (MEMBER_ID_REQUIRED round trip first).
fn new_member_with_timeout(t: &mut T, rebalance_ms: i32) -> Waiter {
    let mut req = T::join_req("", &[("range", "m")]);
    req.rebalance_timeout_ms = rebalance_ms;
    let w = t.join_with(req.clone());
    let id = t.join_reply(w).expect("member id").member_id;
    req.member_id = id;
    t.join_with(req)
}

#[test]
fn the_initial_delay_extended_by_joins_never_passes_the_rebalance_timeout() {
    let mut t = T::new();
    let rebalance = 250;
    let mut waiting = vec![new_member_with_timeout(&mut t, rebalance)];
    // A member every 80 ms: each pushes the join DELAY (100 ms) further, up to 250 ms after
    // the first one.
    for _ in 0..3 {
        t.advance(80);
        waiting.push(new_member_with_timeout(&mut t, rebalance));
    }
    t.advance(250 - 240 - 1);
    assert!(waiting.iter().all(|w| !t.replies.contains_key(w)));
    t.advance(1);
    for w in waiting {
        assert_eq!(t.join_reply(w).expect("joined at the cap").generation_id, 1);
    }
}

#[test]
fn no_initial_delay_when_set_to_zero_or_when_the_group_was_not_empty() {
    let mut t = T::new();
    t.c.config.initial_rebalance_delay_ms = 0;
    let (a, w) = t.new_member();
    let j = t.join_reply(w).expect("joined at once");
    assert_eq!((j.error, j.generation_id), (NONE, 1));
    let s = t.sync(&a, 1, &[(&a, "all")]);
    assert!(t.sync_reply(s).is_some());

    // With a delay: only a group that was empty waits for it.
    let mut t = T::new();
    let (a, generation) = t.stable_single();
    let (b, wb) = t.new_member();
    let wa = t.join(&a);
    let ja = t
        .join_reply(wa)
        .expect("a rejoined: all members in, no delay");
    let jb = t.join_reply(wb).expect("b joined");
    assert_eq!(
        (ja.generation_id, jb.generation_id),
        (generation + 1, generation + 1)
    );
    assert_ne!(jb.member_id, a);
    assert_eq!(jb.member_id, b);
}

#[test]
fn group_metrics_count_rebalances_time_them_and_show_members_and_state() {
    use crate::stats::testing::values;
    use metrics_util::debugging::DebuggingRecorder;
    // One recorder per step, so a gauge shows only if that step set it.
    let step = |f: &mut dyn FnMut()| {
        let rec = DebuggingRecorder::new();
        ::metrics::with_local_recorder(&rec, f);
        values(&rec.snapshotter())
    };
    let mut t = T::new();
    let mut a = String::new();
    let v = step(&mut || {
        a = t.stable_single().0;
        t.c.export_gauges();
    });
    let get = |k: &str| v.get(k).cloned();
    assert_eq!(
        get("weft_group_rebalances_total{group=g,protocol=classic}"),
        Some(vec![1.0])
    );
    // From the first join to the leader's sync: the initial delay (the fake clock).
    assert_eq!(
        get("weft_group_rebalance_duration_seconds{protocol=classic}"),
        Some(vec![DELAY as f64 / 1000.0])
    );
    assert_eq!(
        get("weft_group_members{group=g,protocol=classic}"),
        Some(vec![1.0])
    );
    assert_eq!(
        get("weft_group_state{group=g,protocol=classic,state=Stable}"),
        Some(vec![1.0])
    );
    let v = step(&mut || {
        assert_eq!(t.leave(&[&a]), Ok(vec![NONE]));
        t.c.export_gauges();
    });
    let get = |k: &str| v.get(k).cloned();
    assert_eq!(
        get("weft_group_members{group=g,protocol=classic}"),
        Some(vec![0.0])
    );
    assert_eq!(
        get("weft_group_state{group=g,protocol=classic,state=Stable}"),
        Some(vec![0.0])
    );
    assert_eq!(
        get("weft_group_state{group=g,protocol=classic,state=Empty}"),
        Some(vec![1.0])
    );
    // A rebalance that ends empty is counted as no generation with members, not timed.
    assert_eq!(
        get("weft_group_rebalance_duration_seconds{protocol=classic}").map_or(0, |v| v.len()),
        0
    );
    // Gone groups drop to 0.
    let v = step(&mut || {
        assert_eq!(t.c.delete_group("g"), Ok(true));
        t.c.export_gauges();
    });
    assert_eq!(
        v.get("weft_group_state{group=g,protocol=classic,state=Empty}"),
        Some(&vec![0.0])
    );
}
