//! The classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a
//! sans-io state machine, and the committed-offset store (`offsets`).
//!
//! [`Coordinator`] takes requests and the current time (`now`, milliseconds: the injected
//! clock) and returns the replies that became ready. JoinGroup and SyncGroup may wait for
//! other members, so a caller hands in a [`Waiter`] token and gets `(Waiter, Reply)` pairs
//! back from this or any later call (another member's request, a [`Coordinator::tick`]).
//! Nothing here reads a clock, sleeps or touches a socket; `handlers::groups` is the edge.
//!
//! Group states follow Kafka's `GroupCoordinator`:
//! - `Empty`: no members (possibly committed offsets).
//! - `PreparingRebalance`: waiting for every member to (re)join, until the rebalance timeout;
//!   a group that was empty also waits `group.initial.rebalance.delay.ms`, extended by each
//!   new member up to the rebalance timeout, so consumers starting together share one
//!   rebalance.
//! - `CompletingRebalance`: joins answered (the leader got the member list), waiting for the
//!   leader's SyncGroup with the assignments.
//! - `Stable`: assignments handed out; heartbeats keep members alive.
//! - `Dead`: what DescribeGroups reports for a group this coordinator does not know.
//!
//! Static members (`group.instance.id`, KIP-345): an instance id maps to one member id at a
//! time. A static member that rejoins without a member id (it restarted) takes over its
//! old member's place: the old id is fenced (FENCED_INSTANCE_ID on its waiting requests,
//! heartbeats, syncs and commits), the assignment is kept and a Stable group does not
//! rebalance unless the group's protocol would change. Static members skip
//! MEMBER_ID_REQUIRED, and LeaveGroup may name them by instance id.
//!
//! Groups survive a broker restart: [`Coordinator::take_images`] hands what changed to the
//! offsets store (`offsets::state`: a classic group when it becomes Stable or Empty, a
//! consumer group and its members whenever they change) and [`Coordinator::restore`] resumes
//! them, Stable, with every session starting at the load.
//!
//! Assignment is the client's (the leader runs the assignor), so any assignor works,
//! including cooperative-sticky: the coordinator only selects a protocol every member
//! supports and relays metadata and assignments.

pub(crate) mod consumer;
pub(crate) mod metrics;
pub(crate) mod offsets;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A token the caller gives with a request whose reply may come later.
pub(crate) type Waiter = u64;

/// No error.
pub(crate) const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `group.initial.rebalance.delay.ms`.
    pub(crate) initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub(crate) min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub(crate) max_session_timeout_ms: i32,
    /// How long a group without members stays known before it is forgotten (Kafka drops
    /// empty groups at its periodic cleanup, `offsets.retention.check.interval.ms`).
    /// Committed offsets are kept apart (`offsets`) and outlive it.
    pub(crate) empty_group_retention_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            empty_group_retention_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub(crate) struct Join {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// JoinGroup v4+: a member without id gets MEMBER_ID_REQUIRED and an id to rejoin with.
    pub(crate) require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct JoinReply {
    pub(crate) error: i16,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Only for the leader: (member id, group instance id, metadata of the chosen protocol).
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SyncReply {
    pub(crate) error: i16,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Join(JoinReply),
    Sync(SyncReply),
}

/// Replies that became ready.
pub(crate) type Ready = Vec<(Waiter, Reply)>;

/// DescribeGroups' view of one member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MemberDescription {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// DescribeGroups' view of one group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Description {
    pub(crate) state: State,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Last heartbeat (or any request of this member).
    last_seen: i64,
    /// Order of arrival: the first member becomes the leader.
    seq: u64,
    pending_join: Option<Waiter>,
    pending_sync: Option<Waiter>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct Group {
    /// The group id (metric labels).
    id: String,
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they expire.
    pending_members: HashMap<String, i64>,
    /// Static members: group instance id to its current member id (kept in step with
    /// `members` by `prune_static`).
    static_members: HashMap<String, String>,
    /// PreparingRebalance: join completes at this time even if members are missing;
    /// CompletingRebalance: members that have not synced by then are removed.
    deadline: i64,
    /// PreparingRebalance of a group that was empty: join completes no earlier than this.
    not_before: i64,
    /// When the current PreparingRebalance started from Empty (for the initial delay).
    initial_since: Option<i64>,
    /// When the group last became Empty (0: never had members).
    empty_since: i64,
    /// When the current rebalance started (for its duration metric).
    rebalance_since: Option<i64>,
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_owned(),
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            deadline: 0,
            not_before: 0,
            initial_since: None,
            empty_since: 0,
            rebalance_since: None,
        }
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports, in `first`'s order of preference.
    fn common_protocols<'a>(&self, first: &'a [(String, Bytes)]) -> Vec<&'a str> {
        first
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    /// Kafka's vote: every member votes for its most preferred protocol among those all
    /// support; the most votes wins, ties going to the earliest member's preference.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().min_by_key(|m| m.seq)?;
        let candidates = self.common_protocols(&first.protocols);
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((p, _)) = m
                .protocols
                .iter()
                .find(|(p, _)| candidates.contains(&p.as_str()))
                && let Some(v) = votes.iter_mut().find(|(c, _)| c == p)
            {
                v.1 += 1;
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes
            .iter()
            .find(|(_, n)| *n == best)
            .map(|(c, _)| (*c).to_owned())
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.pending_join.is_some())
    }

    /// Whether `member_id` speaks for `instance` although another member id holds it now.
    fn fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        instance
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// Forgets instance ids whose member is gone.
    fn prune_static(&mut self) {
        let members = &self.members;
        self.static_members
            .retain(|_, id| members.contains_key(id.as_str()));
    }

    /// What the leader's JoinGroup answer lists: (member id, group instance id, metadata of
    /// `protocol`) in order of arrival.
    fn member_list(&self, protocol: &str) -> Vec<(String, Option<String>, Bytes)> {
        let mut listed: Vec<(&String, &Member)> = self.members.iter().collect();
        listed.sort_by_key(|(_, m)| m.seq);
        listed
            .into_iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata(protocol),
                )
            })
            .collect()
    }

    /// The persisted form of this group (members in order of arrival).
    fn image(&self) -> offsets::state::ClassicGroup {
        let mut members: Vec<(&String, &Member)> = self.members.iter().collect();
        members.sort_by_key(|(_, m)| m.seq);
        offsets::state::ClassicGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: members
                .into_iter()
                .map(|(id, m)| offsets::state::ClassicMember {
                    member_id: id.clone(),
                    instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn sync_reply(&self, error: i16, assignment: Bytes) -> SyncReply {
        SyncReply {
            error,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }
}

fn join_error(error: ResponseError, member_id: &str) -> Reply {
    Reply::Join(JoinReply {
        error: code(error),
        generation_id: -1,
        member_id: member_id.to_owned(),
        ..JoinReply::default()
    })
}

fn sync_error(error: ResponseError) -> Reply {
    Reply::Sync(SyncReply {
        error: code(error),
        ..SyncReply::default()
    })
}

/// Every group this broker coordinates (it is the coordinator of all of them).
#[derive(Debug)]
pub(crate) struct Coordinator {
    config: Config,
    groups: HashMap<String, Group>,
    seq: u64,
    /// Source of member ids: a per-process random prefix plus a counter.
    id_prefix: String,
    /// KIP-848 groups (`consumer`); a group id is in `groups` or here, never both with
    /// members.
    pub(crate) consumer: consumer::ConsumerGroups,
    /// Groups that may have changed since [`Coordinator::take_images`] last ran.
    dirty: BTreeSet<String>,
    gauges: metrics::Gauges,
}

impl Coordinator {
    pub(crate) fn new(config: Config, id_prefix: String) -> Coordinator {
        Coordinator {
            config,
            groups: HashMap::new(),
            seq: 0,
            id_prefix,
            consumer: consumer::ConsumerGroups::default(),
            dirty: BTreeSet::new(),
            gauges: metrics::Gauges::default(),
        }
    }

    /// Refreshes the member and state gauges of every group (see `metrics`).
    pub(crate) fn export_gauges(&mut self) {
        let mut samples: Vec<metrics::Sample> = self
            .groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    metrics::CLASSIC,
                    g.state.name(),
                    g.members.len(),
                )
            })
            .collect();
        samples.extend(
            self.consumer
                .gauges()
                .map(|(id, state, n)| (id, metrics::CONSUMER, state.name(), n)),
        );
        self.gauges.update(samples);
    }

    /// Resumes the groups persisted in `__consumer_offsets` (see `offsets`): classic
    /// groups Stable (or Empty) with their generation, leader and assignments, consumer
    /// groups with their epochs and assignments. Every session starts at `now`.
    pub(crate) fn restore(&mut self, now: i64, store: &offsets::Offsets) {
        for (id, g) in store.classic_groups() {
            let mut group = Group::new(id);
            group.generation = g.generation;
            group.protocol_type = Some(g.protocol_type.clone());
            group.empty_since = now;
            if !g.members.is_empty() {
                group.state = State::Stable;
                group.protocol = g.protocol.clone();
                group.leader = g.leader.clone();
            }
            for m in &g.members {
                self.seq += 1;
                if let Some(instance) = &m.instance_id {
                    group
                        .static_members
                        .insert(instance.clone(), m.member_id.clone());
                }
                group.members.insert(
                    m.member_id.clone(),
                    Member {
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout_ms: m.session_timeout_ms,
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        protocols: m.protocols.clone(),
                        assignment: m.assignment.clone(),
                        last_seen: now,
                        seq: self.seq,
                        pending_join: None,
                        pending_sync: None,
                    },
                );
            }
            self.groups.insert(id.to_owned(), group);
        }
        for (id, g, members) in store.consumer_groups() {
            if self.groups.get(id).is_some_and(|c| !c.members.is_empty()) {
                // Never written that way (one kind at a time); the classic group wins.
                continue;
            }
            self.groups.remove(id);
            self.consumer.restore(id, g, members, now);
        }
    }

    /// What changed since the last call, as records to persist: for every group that may
    /// have changed, what the coordinator holds now (nothing for a group that is gone).
    pub(crate) fn take_images(&mut self) -> Vec<(String, offsets::state::GroupImage)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|id| {
                let (classic, classic_unchanged) = match self.groups.get(&id) {
                    None => (None, false),
                    Some(g) => match g.state {
                        State::Stable | State::Empty | State::Dead
                            if g.generation == 0 && g.members.is_empty() =>
                        {
                            (None, false)
                        }
                        State::Stable | State::Empty | State::Dead => (Some(g.image()), false),
                        State::PreparingRebalance | State::CompletingRebalance => (None, true),
                    },
                };
                let consumer = self.consumer.image(&id);
                (
                    id,
                    offsets::state::GroupImage {
                        classic,
                        classic_unchanged,
                        consumer,
                    },
                )
            })
            .collect()
    }

    /// Whether a group may have changed since the last [`Coordinator::take_images`].
    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Marks groups to be written again (their last write failed).
    pub(crate) fn mark_dirty(&mut self, ids: Vec<String>) {
        self.dirty.extend(ids);
    }

    fn touch(&mut self, group_id: &str) {
        if !self.dirty.contains(group_id) {
            self.dirty.insert(group_id.to_owned());
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.seq += 1;
        format!("{client_id}-{}-{}", self.id_prefix, self.seq)
    }

    /// JoinGroup. The reply to `waiter` may come now or from a later call.
    pub(crate) fn join(&mut self, now: i64, waiter: Waiter, req: Join) -> Ready {
        self.touch(&req.group_id);
        let mut ready = Vec::new();
        let reply_now = |e| vec![(waiter, join_error(e, &req.member_id))];
        if req.group_id.is_empty() {
            return reply_now(ResponseError::InvalidGroupId);
        }
        if let Some(e) = self.consumer_refuses_join(&req.group_id) {
            return reply_now(e);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return reply_now(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return reply_now(ResponseError::InconsistentGroupProtocol);
        }
        let new_id = req
            .member_id
            .is_empty()
            .then(|| self.new_member_id(&req.client_id));
        let delay = self.config.initial_rebalance_delay_ms;
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id));
        let known = group.members.contains_key(&req.member_id);
        if !known && !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            if !same_type || group.common_protocols(&req.protocols).is_empty() {
                return reply_now(ResponseError::InconsistentGroupProtocol);
            }
        }
        if group.members.is_empty() && group.state == State::Empty {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = req.group_instance_id.clone() {
            let current = group
                .static_members
                .get(&instance)
                .filter(|id| group.members.contains_key(id.as_str()))
                .cloned();
            match (current, &new_id) {
                (Some(old), Some(new)) => {
                    let new = new.clone();
                    replace_static(
                        group, now, delay, waiter, req, instance, old, new, &mut ready,
                    );
                    return ready;
                }
                (Some(current), None) if current != req.member_id => {
                    return reply_now(ResponseError::FencedInstanceId);
                }
                _ => {}
            }
        }
        let member_id = match new_id {
            // Static members skip MEMBER_ID_REQUIRED (their instance id identifies them).
            Some(id) if req.require_known_member_id && req.group_instance_id.is_none() => {
                group
                    .pending_members
                    .insert(id.clone(), now + i64::from(req.session_timeout_ms));
                return vec![(
                    waiter,
                    join_error(ResponseError::MemberIdRequired, id.as_str()),
                )];
            }
            Some(id) => id,
            None if known => req.member_id.clone(),
            None if group.pending_members.remove(&req.member_id).is_some() => req.member_id.clone(),
            None => return reply_now(ResponseError::UnknownMemberId),
        };
        if let Some(m) = group.members.get_mut(&member_id) {
            // A known member rejoining.
            let changed = m.protocols != req.protocols;
            m.protocols = req.protocols;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.last_seen = now;
            if let Some(old) = m.pending_join.replace(waiter) {
                ready.push((
                    old,
                    join_error(ResponseError::RebalanceInProgress, &member_id),
                ));
            }
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            match group.state {
                State::PreparingRebalance => {}
                // Same metadata: answer with the current generation. Before the sync this
                // holds for the leader too (its answer may have been lost), which gets the
                // member list again; once Stable, a leader's JoinGroup rebalances (as in
                // Kafka: it may have seen a change the metadata does not show).
                State::CompletingRebalance | State::Stable
                    if !changed && (!is_leader || group.state == State::CompletingRebalance) =>
                {
                    if let Some(m) = group.members.get_mut(&member_id) {
                        m.pending_join = None;
                    }
                    let members = if is_leader {
                        let protocol = group.protocol.clone().unwrap_or_default();
                        group.member_list(&protocol)
                    } else {
                        Vec::new()
                    };
                    ready.push((
                        waiter,
                        Reply::Join(JoinReply {
                            error: NONE,
                            generation_id: group.generation,
                            protocol_type: group.protocol_type.clone(),
                            protocol_name: group.protocol.clone(),
                            leader: group.leader.clone().unwrap_or_default(),
                            member_id,
                            members,
                        }),
                    ));
                    return ready;
                }
                _ => prepare_rebalance(group, now, delay, &mut ready),
            }
        } else {
            self.seq += 1;
            if let Some(instance) = &req.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member_id.clone());
            }
            group.members.insert(
                member_id.clone(),
                Member {
                    group_instance_id: req.group_instance_id,
                    client_id: req.client_id,
                    client_host: req.client_host,
                    session_timeout_ms: req.session_timeout_ms,
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    protocols: req.protocols,
                    assignment: Bytes::new(),
                    last_seen: now,
                    seq: self.seq,
                    pending_join: Some(waiter),
                    pending_sync: None,
                },
            );
            if group.state == State::PreparingRebalance {
                if let Some(since) = group.initial_since {
                    // Another member arrived during the initial delay: wait a bit more,
                    // never past the rebalance timeout.
                    let limit = since + group.max_rebalance_timeout();
                    group.not_before = (now + delay).min(limit).max(group.not_before);
                    group.deadline = group.deadline.max(limit);
                }
            } else {
                prepare_rebalance(group, now, delay, &mut ready);
            }
        }
        try_complete_join(group, now, &mut ready);
        group.prune_static();
        ready
    }

    /// SyncGroup: the leader's `assignments` are handed to every member.
    #[allow(clippy::too_many_arguments)] // one argument per request field
    pub(crate) fn sync(
        &mut self,
        now: i64,
        waiter: Waiter,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Ready {
        let reply_now = |e| vec![(waiter, sync_error(e))];
        self.touch(group_id);
        let Some(group) = self.groups.get_mut(group_id) else {
            return reply_now(ResponseError::UnknownMemberId);
        };
        if group.fenced(group_instance_id, member_id) {
            return reply_now(ResponseError::FencedInstanceId);
        }
        let Some(member) = group.members.get_mut(member_id) else {
            return reply_now(ResponseError::UnknownMemberId);
        };
        if generation != group.generation {
            return reply_now(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != group.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != group.protocol.as_deref())
        {
            return reply_now(ResponseError::InconsistentGroupProtocol);
        }
        member.last_seen = now;
        match group.state {
            State::PreparingRebalance => reply_now(ResponseError::RebalanceInProgress),
            State::Stable => {
                let a = member.assignment.clone();
                vec![(waiter, Reply::Sync(group.sync_reply(NONE, a)))]
            }
            State::CompletingRebalance => {
                let mut ready = Vec::new();
                if let Some(old) = member.pending_sync.replace(waiter) {
                    ready.push((old, sync_error(ResponseError::RebalanceInProgress)));
                }
                if group.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    group.state = State::Stable;
                    if let Some(since) = group.rebalance_since.take() {
                        metrics::rebalance_took(metrics::CLASSIC, now - since);
                    }
                    let replies: Vec<_> = group
                        .members
                        .values_mut()
                        .filter_map(|m| {
                            m.last_seen = now;
                            Some((m.pending_sync.take()?, m.assignment.clone()))
                        })
                        .collect();
                    for (w, a) in replies {
                        ready.push((w, Reply::Sync(group.sync_reply(NONE, a))));
                    }
                }
                ready
            }
            State::Empty | State::Dead => reply_now(ResponseError::UnknownMemberId),
        }
    }

    /// Heartbeat: the error code to answer.
    pub(crate) fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if group.fenced(group_instance_id, member_id) {
            return code(ResponseError::FencedInstanceId);
        }
        let Some(member) = group.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if generation != group.generation {
            return code(ResponseError::IllegalGeneration);
        }
        member.last_seen = now;
        match group.state {
            State::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            State::CompletingRebalance | State::Stable => NONE,
            State::Empty | State::Dead => code(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup of `members` (member id, group instance id): one error code per member,
    /// or the group's error. A member named by instance id leaves whatever its member id
    /// (an empty one), unless the request names an older member id of that instance.
    pub(crate) fn leave(
        &mut self,
        now: i64,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> (Result<Vec<i16>, i16>, Ready) {
        let mut ready = Vec::new();
        let delay = self.config.initial_rebalance_delay_ms;
        self.touch(group_id);
        let Some(group) = self.groups.get_mut(group_id) else {
            return (Err(code(ResponseError::UnknownMemberId)), ready);
        };
        let mut codes = Vec::with_capacity(members.len());
        let mut removed = false;
        for (id, instance) in members {
            let id = match instance.as_ref().map(|i| group.static_members.get(i)) {
                None => id,
                Some(None) => {
                    codes.push(code(ResponseError::UnknownMemberId));
                    continue;
                }
                Some(Some(current)) if !id.is_empty() && current != id => {
                    codes.push(code(ResponseError::FencedInstanceId));
                    continue;
                }
                Some(Some(current)) => current,
            };
            let id = id.clone();
            match group.members.remove(&id) {
                Some(m) => {
                    answer_removed(&m, &id, &mut ready);
                    removed = true;
                    codes.push(NONE);
                }
                None => codes.push(code(ResponseError::UnknownMemberId)),
            }
        }
        if removed {
            member_gone(group, now, delay, &mut ready);
        }
        group.prune_static();
        (Ok(codes), ready)
    }

    /// Whether an OffsetCommit from `member_id` in `generation` is accepted (the error code
    /// otherwise). Generation -1 with no member id is a commit from outside the group
    /// (`assign()` consumers, admin tools), accepted only while the group has no members.
    pub(crate) fn validate_commit(
        &mut self,
        now: i64,
        group_id: &str,
        generation: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> i16 {
        if group_id.is_empty() {
            return code(ResponseError::InvalidGroupId);
        }
        if let Some(check) = self
            .consumer
            .validate_commit(group_id, generation, member_id)
        {
            return check;
        }
        let group = self.groups.get_mut(group_id);
        let Some(group) = group else {
            return if generation < 0 {
                NONE
            } else {
                code(ResponseError::IllegalGeneration)
            };
        };
        if generation < 0 && group.members.is_empty() {
            return NONE;
        }
        if group.fenced(group_instance_id, member_id) {
            return code(ResponseError::FencedInstanceId);
        }
        let Some(member) = group.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if generation != group.generation {
            return code(ResponseError::IllegalGeneration);
        }
        member.last_seen = now;
        match group.state {
            State::CompletingRebalance => code(ResponseError::RebalanceInProgress),
            _ => NONE,
        }
    }

    pub(crate) fn knows(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id) || self.consumer.knows(group_id)
    }

    /// DeleteGroups of one group: refused with GROUP_NOT_EMPTY while it has members,
    /// otherwise forgotten; `Ok(false)` when the coordinator did not know it (it may still
    /// have committed offsets).
    pub(crate) fn delete_group(&mut self, group_id: &str) -> Result<bool, i16> {
        self.touch(group_id);
        if let Some(r) = self.consumer.delete(group_id) {
            return r;
        }
        match self.groups.get(group_id) {
            None => Ok(false),
            Some(g) if !g.members.is_empty() => Err(code(ResponseError::NonEmptyGroup)),
            Some(_) => {
                self.groups.remove(group_id);
                Ok(true)
            }
        }
    }

    /// What OffsetDelete may remove in `group_id`: `Ok(None)` for everything (no members,
    /// or a group the coordinator does not know), `Ok(Some(topics))` for all but the topics
    /// its members subscribe to (consumer protocol), or the group's error (a non-empty
    /// group of another protocol type).
    pub(crate) fn subscribed_topics(
        &self,
        group_id: &str,
    ) -> Result<Option<std::collections::BTreeSet<String>>, i16> {
        if let Some(topics) = self.consumer.subscribed_topics(group_id) {
            return Ok(Some(topics));
        }
        let Some(g) = self.groups.get(group_id) else {
            return Ok(None);
        };
        if g.members.is_empty() {
            return Ok(None);
        }
        if g.protocol_type.as_deref() != Some("consumer") {
            return Err(code(ResponseError::NonEmptyGroup));
        }
        let mut topics = std::collections::BTreeSet::new();
        for m in g.members.values() {
            // Before the first generation no protocol is selected: any offered one counts.
            let offered: Vec<&Bytes> = match &g.protocol {
                Some(p) => m
                    .protocols
                    .iter()
                    .filter(|(n, _)| n == p)
                    .map(|(_, b)| b)
                    .collect(),
                None => m.protocols.iter().map(|(_, b)| b).collect(),
            };
            for meta in offered {
                topics.extend(subscription_topics(meta));
            }
        }
        Ok(Some(topics))
    }

    /// Advances time: expires members whose session ran out, completes rebalances whose
    /// delay or timeout passed.
    pub(crate) fn tick(&mut self, now: i64) -> Ready {
        let mut ready = Vec::new();
        let delay = self.config.initial_rebalance_delay_ms;
        for id in self.consumer.tick(now) {
            self.dirty.insert(id);
        }
        for (id, group) in self.groups.iter_mut() {
            let before = (group.state, group.generation, group.members.len());
            group.pending_members.retain(|_, expiry| *expiry > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.pending_join.is_none()
                        && m.pending_sync.is_none()
                        && m.last_seen + i64::from(m.session_timeout_ms) <= now
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                if let Some(m) = group.members.remove(id) {
                    answer_removed(&m, id, &mut ready);
                }
            }
            if !expired.is_empty() {
                member_gone(group, now, delay, &mut ready);
            }
            if group.state == State::CompletingRebalance && now >= group.deadline {
                // The leader never sent the assignments (or members never synced): drop
                // those that did not sync and rebalance the rest.
                let silent: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.pending_sync.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &silent {
                    group.members.remove(id);
                }
                prepare_rebalance(group, now, delay, &mut ready);
            }
            try_complete_join(group, now, &mut ready);
            group.prune_static();
            if before != (group.state, group.generation, group.members.len())
                && !self.dirty.contains(id)
            {
                self.dirty.insert(id.clone());
            }
        }
        let retention = self.config.empty_group_retention_ms;
        let dirty = &mut self.dirty;
        self.groups.retain(|id, g| {
            let keep = !(g.state == State::Empty
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && now - g.empty_since >= retention);
            if !keep {
                dirty.insert(id.clone());
            }
            keep
        });
        ready
    }

    #[cfg(test)]
    pub(crate) fn state(&self, group_id: &str) -> State {
        self.groups.get(group_id).map_or(State::Dead, |g| g.state)
    }

    /// (group id, protocol type, state) of every group.
    pub(crate) fn list(&self) -> Vec<(String, String, State)> {
        let mut all: Vec<_> = self
            .groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn describe(&self, group_id: &str) -> Option<Description> {
        let g = self.groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == State::Stable;
        let mut members: Vec<(&String, &Member)> = g.members.iter().collect();
        members.sort_by_key(|(_, m)| m.seq);
        let members = members
            .into_iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata(&protocol),
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Some(Description {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        })
    }
}

/// The topics of a consumer-protocol subscription (`ConsumerProtocolSubscription`: a version,
/// then the body); unreadable metadata subscribes to nothing.
fn subscription_topics(meta: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = meta.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    // Newer versions only append fields: read them as the newest we know, as Kafka does.
    let version = version.clamp(0, 3);
    match ConsumerProtocolSubscription::decode(&mut buf, version) {
        Ok(sub) => sub.topics.iter().map(|t| t.as_str().to_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A static member rejoined without a member id (it restarted): `new` takes the place of
/// `old`, which is fenced. Its assignment stays; a Stable group whose protocol would not
/// change answers at once with the current generation and does not rebalance.
#[allow(clippy::too_many_arguments)] // the join's parts, kept apart to avoid re-borrowing
fn replace_static(
    group: &mut Group,
    now: i64,
    delay: i64,
    waiter: Waiter,
    req: Join,
    instance: String,
    old: String,
    new: String,
    ready: &mut Ready,
) {
    let Some(mut m) = group.members.remove(&old) else {
        // Not reached: the caller checked that `old` is a member. Never leave a join waiting.
        ready.push((waiter, join_error(ResponseError::UnknownMemberId, "")));
        return;
    };
    if let Some(w) = m.pending_join.take() {
        ready.push((w, join_error(ResponseError::FencedInstanceId, &old)));
    }
    if let Some(w) = m.pending_sync.take() {
        ready.push((w, sync_error(ResponseError::FencedInstanceId)));
    }
    m.protocols = req.protocols;
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    m.client_id = req.client_id;
    m.client_host = req.client_host;
    m.last_seen = now;
    // Kafka answers with the leader as it was, so a restarted leader does not assign
    // partitions for a generation that is not rebalancing.
    let leader_before = group.leader.clone().unwrap_or_default();
    if group.leader.as_deref() == Some(old.as_str()) {
        group.leader = Some(new.clone());
    }
    group.static_members.insert(instance, new.clone());
    group.members.insert(new.clone(), m);
    let keeps_protocol = group.select_protocol() == group.protocol;
    match group.state {
        State::Stable if keeps_protocol => {
            ready.push((
                waiter,
                Reply::Join(JoinReply {
                    error: NONE,
                    generation_id: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    leader: leader_before,
                    member_id: new,
                    members: Vec::new(),
                }),
            ));
        }
        state => {
            if let Some(m) = group.members.get_mut(&new) {
                m.pending_join = Some(waiter);
            }
            if state != State::PreparingRebalance {
                prepare_rebalance(group, now, delay, ready);
            }
            try_complete_join(group, now, ready);
        }
    }
}

/// Answers the requests a removed member was waiting on.
fn answer_removed(m: &Member, id: &str, ready: &mut Ready) {
    if let Some(w) = m.pending_join {
        ready.push((w, join_error(ResponseError::UnknownMemberId, id)));
    }
    if let Some(w) = m.pending_sync {
        ready.push((w, sync_error(ResponseError::UnknownMemberId)));
    }
}

/// After members left or expired: the others rebalance (or the group becomes empty).
fn member_gone(group: &mut Group, now: i64, delay: i64, ready: &mut Ready) {
    match group.state {
        State::Stable | State::CompletingRebalance => prepare_rebalance(group, now, delay, ready),
        _ => {}
    }
    try_complete_join(group, now, ready);
}

fn prepare_rebalance(group: &mut Group, now: i64, delay: i64, ready: &mut Ready) {
    if group.state == State::CompletingRebalance {
        // Members waiting for the assignment of a generation that will not be used.
        for m in group.members.values_mut() {
            if let Some(w) = m.pending_sync.take() {
                ready.push((w, sync_error(ResponseError::RebalanceInProgress)));
            }
        }
    }
    let timeout = group.max_rebalance_timeout();
    group.rebalance_since.get_or_insert(now);
    if group.state == State::Empty {
        group.initial_since = Some(now);
        group.not_before = now + delay.min(timeout);
    } else {
        group.initial_since = None;
        group.not_before = now;
    }
    group.deadline = now + timeout;
    group.state = State::PreparingRebalance;
}

fn try_complete_join(group: &mut Group, now: i64, ready: &mut Ready) {
    if group.state != State::PreparingRebalance {
        return;
    }
    let timed_out = now >= group.deadline;
    let nobody = group.members.is_empty();
    if !(timed_out || nobody || (now >= group.not_before && group.all_joined())) {
        return;
    }
    // Members that did not rejoin in time are out.
    group.members.retain(|_, m| m.pending_join.is_some());
    group.generation += 1;
    group.initial_since = None;
    if group.members.is_empty() {
        group.state = State::Empty;
        group.empty_since = now;
        group.protocol = None;
        group.leader = None;
        group.rebalance_since = None;
        return;
    }
    metrics::rebalanced(&group.id, metrics::CLASSIC);
    group.protocol = group.select_protocol();
    let protocol = group.protocol.clone().unwrap_or_default();
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group
            .members
            .iter()
            .min_by_key(|(_, m)| m.seq)
            .map(|(id, _)| id.clone());
    }
    let leader = group.leader.clone().unwrap_or_default();
    let member_list = group.member_list(&protocol);
    group.state = State::CompletingRebalance;
    group.deadline = now + group.max_rebalance_timeout();
    for (id, m) in group.members.iter_mut() {
        m.last_seen = now;
        m.assignment = Bytes::new();
        let Some(w) = m.pending_join.take() else {
            continue;
        };
        ready.push((
            w,
            Reply::Join(JoinReply {
                error: NONE,
                generation_id: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader {
                    member_list.clone()
                } else {
                    Vec::new()
                },
            }),
        ));
    }
}

#[cfg(test)]
mod tests;
