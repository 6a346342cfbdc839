//! The next-generation consumer group protocol (KIP-848: ConsumerGroupHeartbeat), sans io.
//!
//! The broker assigns: every heartbeat may change a member's subscription, which bumps the
//! *group epoch*; the coordinator then computes a *target assignment* for the whole group
//! with a server assignor (`uniform` or `range`, see `assignor`) and tags it with the
//! group epoch (the *assignment epoch*). Each member then reconciles towards its target
//! on its own heartbeats, never stopping the others:
//!
//! 1. partitions it owns that its target no longer holds are revoked first: its answer
//!    leaves them out while its *member epoch* stays, and it is in `UnrevokedPartitions`
//!    until a heartbeat lists its owned partitions without them (or its rebalance timeout
//!    passes and it is removed);
//! 2. then it gets the partitions of its target that nobody owns any more and its member
//!    epoch becomes the assignment epoch; partitions still owned (or being revoked) by
//!    another member are handed over on a later heartbeat, once released
//!    (`UnreleasedPartitions`).
//!
//! Hence the invariant, checked by the property test: a partition is owned (assigned or
//! pending revocation) by at most one member at any time. `owners` records who.
//!
//! Fencing follows Kafka's `GroupMetadataManager`: a member epoch ahead of the coordinator's,
//! or behind it (other than the previous epoch with owned partitions it still holds), is
//! FENCED_MEMBER_EPOCH; unknown members UNKNOWN_MEMBER_ID; a static member (instance id)
//! that joins while another member holds the instance UNRELEASED_INSTANCE_ID, a member id
//! that is not the instance's current one FENCED_INSTANCE_ID. Epoch -1 leaves, -2 leaves
//! for now (static members: the assignment is kept for the same instance until the session
//! times out). Sessions expire after `group.consumer.session.timeout.ms` without heartbeat.
//!
//! A group uses one protocol at a time: the hooks in `group` refuse JoinGroup on a
//! non-empty consumer group (INCONSISTENT_GROUP_PROTOCOL) and a heartbeat on a non-empty
//! classic group (GROUP_ID_NOT_FOUND); an empty group of the other kind is converted.
//!
//! Nothing here reads a clock or topic metadata: `now` (ms) and a [`Metadata`] snapshot are
//! arguments. State lives in memory and is persisted by the group ticker in
//! `__consumer_offsets` ([`ConsumerGroups::image`], [`ConsumerGroups::restore`]): after a
//! broker restart members carry on with their epochs and assignments. A group that is
//! still unknown (a crash before its records were written) answers UNKNOWN_MEMBER_ID,
//! which makes clients rejoin with epoch 0 (Kafka, whose groups never go missing, answers
//! GROUP_ID_NOT_FOUND).

pub(crate) mod assignor;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use self::assignor::{ASSIGNORS, Subscriptions, UNIFORM};
use super::offsets::state::{
    ConsumerGroup as StoredGroup, ConsumerImage, ConsumerMember as StoredMember,
};
use super::{Coordinator, NONE};

/// Partitions by topic id.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Topics a group may subscribe to: name to (topic id, partition count). Internal topics
/// are left out by the caller.
pub(crate) type Metadata = BTreeMap<String, (Uuid, i32)>;

/// Member epoch of a member leaving the group.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for now (it may come back as the same instance).
pub(crate) const STATIC_LEAVE_EPOCH: i32 = -2;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Broker settings of consumer groups.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `group.consumer.session.timeout.ms`.
    pub(crate) session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub(crate) heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub(crate) max_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// A ConsumerGroupHeartbeat request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    /// -1: unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    /// `None`: unchanged; empty: no regex.
    pub(crate) subscribed_topic_regex: Option<String>,
    /// `None`: unchanged.
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns; `None`: unchanged since its last report.
    pub(crate) owned: Option<Assignment>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

/// A ConsumerGroupHeartbeat answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct HeartbeatReply {
    pub(crate) error: i16,
    pub(crate) message: Option<String>,
    pub(crate) member_id: Option<String>,
    pub(crate) member_epoch: i32,
    pub(crate) heartbeat_interval_ms: i32,
    /// The member's whole assignment, sent when it changed (or the member needs it again).
    pub(crate) assignment: Option<Assignment>,
}

impl HeartbeatReply {
    fn error(e: ResponseError, message: impl Into<String>) -> HeartbeatReply {
        HeartbeatReply {
            error: code(e),
            message: Some(message.into()),
            ..HeartbeatReply::default()
        }
    }
}

/// The group states Kafka reports for consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// A member's reconciliation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// It owns its target at the assignment epoch.
    Stable,
    /// It must first give up `revoking`.
    UnrevokedPartitions,
    /// Part of its target is still owned by others.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    topics: BTreeSet<String>,
    regex: Option<String>,
    assignor: Option<String>,
    state: MemberState,
    epoch: i32,
    previous_epoch: i32,
    assigned: Assignment,
    revoking: Assignment,
    last_seen: i64,
    session_timeout_ms: i32,
    /// UnrevokedPartitions: removed if still not revoked by then.
    revoke_deadline: i64,
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    assignment_epoch: i32,
    assignor: String,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
    /// Who owns each partition (assigned or pending revocation): at most one member.
    owners: HashMap<(Uuid, i32), String>,
    /// The subscribed topics as resolved at the last group epoch bump.
    resolved: Metadata,
    /// When the group last left Stable (for the rebalance duration metric).
    unstable_since: Option<i64>,
}

/// Every KIP-848 group of this broker.
#[derive(Debug, Default)]
pub(crate) struct ConsumerGroups {
    groups: HashMap<String, Group>,
}

/// ConsumerGroupDescribe's view of a member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MemberDescription {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) member_epoch: i32,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) subscribed_topic_names: Vec<String>,
    pub(crate) subscribed_topic_regex: Option<String>,
    pub(crate) assignment: Assignment,
    pub(crate) target_assignment: Assignment,
}

/// ConsumerGroupDescribe's view of a group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Description {
    pub(crate) state: GroupState,
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) assignor: String,
    pub(crate) members: Vec<MemberDescription>,
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn contains(a: &Assignment, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|ps| ps.contains(&p))
}

fn partitions(a: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

fn collect(parts: impl IntoIterator<Item = (Uuid, i32)>) -> Assignment {
    let mut a = Assignment::new();
    for (t, p) in parts {
        a.entry(t).or_default().insert(p);
    }
    a
}

/// Whether every partition of `a` is in `b`.
fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    partitions(a).all(|(t, p)| contains(b, &t, p))
}

/// A regex subscription as Kafka evaluates it: the whole topic name must match.
fn compile(regex: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{regex})$"))
}

impl Group {
    fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch != self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.epoch != self.assignment_epoch)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    fn static_member(&self, instance: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id)
    }

    /// Topic names each member subscribes to, resolved against `meta`.
    fn subscriptions(&self, meta: &Metadata) -> Subscriptions {
        self.members
            .iter()
            .map(|(id, m)| {
                let re = m.regex.as_deref().and_then(|r| compile(r).ok());
                let topics = meta
                    .keys()
                    .filter(|t| m.topics.contains(*t) || re.as_ref().is_some_and(|r| r.is_match(t)))
                    .cloned()
                    .collect();
                (id.clone(), topics)
            })
            .collect()
    }

    /// The part of `meta` the group subscribes to.
    fn resolve(&self, meta: &Metadata) -> Metadata {
        let subs = self.subscriptions(meta);
        let names: BTreeSet<&String> = subs.values().flatten().collect();
        meta.iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, v)| (n.clone(), *v))
            .collect()
    }

    /// The assignor most members ask for (`uniform` when none asks or on a tie with it).
    fn preferred_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            *votes
                .entry(m.assignor.as_deref().unwrap_or(UNIFORM))
                .or_default() += 1;
        }
        let best = votes.values().copied().max().unwrap_or(0);
        ASSIGNORS
            .iter()
            .find(|a| votes.get(**a) == Some(&best))
            .unwrap_or(&UNIFORM)
            .to_string()
    }

    fn bump(&mut self) {
        self.epoch += 1;
    }

    /// Recomputes the target assignment when the group epoch moved past it.
    fn maybe_assign(&mut self, meta: &Metadata) {
        if self.epoch == self.assignment_epoch {
            return;
        }
        let subs = self.subscriptions(meta);
        let resolved = self.resolve(meta);
        self.assignor = self.preferred_assignor();
        self.target = assignor::assign(&self.assignor, &subs, &resolved, &self.target);
        self.assignment_epoch = self.epoch;
    }

    /// Moves `id` towards its target (Kafka's `CurrentAssignmentBuilder`): first revoke,
    /// then take what is free.
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now: i64) {
        let Some(m) = self.members.get(id) else {
            return;
        };
        match m.state {
            MemberState::UnrevokedPartitions => {
                let revoked = owned
                    .is_some_and(|o| partitions(&m.revoking).all(|(t, p)| !contains(o, &t, p)));
                if !revoked {
                    return;
                }
            }
            MemberState::Stable if m.epoch == self.assignment_epoch => return,
            _ => {}
        }
        let target = self.target.get(id).cloned().unwrap_or_default();
        let kept = collect(partitions(&m.assigned).filter(|(t, p)| contains(&target, t, *p)));
        let revoke = collect(partitions(&m.assigned).filter(|(t, p)| !contains(&target, t, *p)));
        let mut next = m.clone();
        if !revoke.is_empty() {
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = kept;
            next.revoking = revoke;
            next.revoke_deadline = now + i64::from(m.rebalance_timeout_ms.max(0));
        } else {
            let mut assigned = kept;
            let mut unreleased = false;
            for (t, p) in partitions(&target) {
                if contains(&assigned, &t, p) {
                    continue;
                }
                match self.owners.get(&(t, p)) {
                    Some(owner) if owner != id => unreleased = true,
                    _ => {
                        assigned.entry(t).or_default().insert(p);
                    }
                }
            }
            next.assigned = assigned;
            next.revoking = Assignment::new();
            next.previous_epoch = m.epoch;
            next.epoch = self.assignment_epoch;
            next.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
        }
        self.replace(id, next);
    }

    /// Stores `next` as member `id`, keeping `owners` in step.
    fn replace(&mut self, id: &str, next: Member) {
        self.release(id);
        for tp in partitions(&next.assigned).chain(partitions(&next.revoking)) {
            self.owners.insert(tp, id.to_owned());
        }
        self.members.insert(id.to_owned(), next);
    }

    fn release(&mut self, id: &str) {
        if let Some(m) = self.members.get(id) {
            for tp in partitions(&m.assigned).chain(partitions(&m.revoking)) {
                if self.owners.get(&tp).is_some_and(|o| o == id) {
                    self.owners.remove(&tp);
                }
            }
        }
    }

    /// Removes a member (left, expired or fenced): its partitions are free and the others
    /// rebalance.
    fn remove(&mut self, id: &str) {
        self.release(id);
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.bump();
        }
    }
}

/// Rebalance metrics of a group after a change: duration from leaving Stable until Stable
/// again.
fn observe(g: &mut Group, now: i64) {
    match g.state() {
        GroupState::Stable => {
            if let Some(since) = g.unstable_since.take() {
                super::metrics::rebalance_took(super::metrics::CONSUMER, now - since);
            }
        }
        GroupState::Empty => g.unstable_since = None,
        GroupState::Assigning | GroupState::Reconciling => {
            g.unstable_since.get_or_insert(now);
        }
    }
}

impl ConsumerGroups {
    /// (group id, state, members) of every consumer group, for the gauges.
    pub(crate) fn gauges(&self) -> impl Iterator<Item = (String, GroupState, usize)> + '_ {
        self.groups
            .iter()
            .map(|(id, g)| (id.clone(), g.state(), g.members.len()))
    }

    /// Whether `group_id` is a consumer group.
    pub(crate) fn knows(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether `group_id` is a consumer group with members.
    pub(crate) fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// Whether `member_id` is a member of consumer group `group_id`.
    pub(crate) fn is_member(&self, group_id: &str, member_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| g.members.contains_key(member_id))
    }

    /// Forgets an empty consumer group (it becomes a classic group).
    pub(crate) fn forget_empty(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.is_empty())
        {
            self.groups.remove(group_id);
        }
    }

    /// ConsumerGroupHeartbeat. The caller has checked that no classic group of this id has
    /// members.
    pub(crate) fn heartbeat(
        &mut self,
        now: i64,
        settings: &Settings,
        meta: &Metadata,
        req: Heartbeat,
    ) -> HeartbeatReply {
        if let Some(refusal) = validate(&req) {
            return refusal;
        }
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            let reply = self.leave(&req);
            if let Some(g) = self.groups.get_mut(&req.group_id) {
                observe(g, now);
            }
            return reply;
        }
        let interval = settings.heartbeat_interval_ms;
        let joining = req.member_epoch == 0;
        if !joining && !self.groups.contains_key(&req.group_id) {
            // Kafka answers GROUP_ID_NOT_FOUND; group state here does not survive a restart,
            // and UNKNOWN_MEMBER_ID makes the client rejoin instead of failing.
            return HeartbeatReply::error(
                ResponseError::UnknownMemberId,
                format!("consumer group {} not found", req.group_id),
            );
        }
        let group = self.groups.entry(req.group_id.clone()).or_default();
        let id = req.member_id.clone();

        // Which member speaks, and may it?
        let mut bumped = false;
        match (&req.instance_id, joining) {
            (Some(instance), true) => match group.static_member(instance).cloned() {
                Some(old) if old != id => {
                    let Some(prev) = group.members.get(&old) else {
                        return HeartbeatReply::error(ResponseError::UnknownServerError, "");
                    };
                    if prev.epoch != STATIC_LEAVE_EPOCH {
                        return HeartbeatReply::error(
                            ResponseError::UnreleasedInstanceId,
                            format!(
                                "static member {old} with instance id {instance} is not released yet"
                            ),
                        );
                    }
                    // The instance came back under a new member id: it takes the old
                    // member's place and target, without a rebalance.
                    let m = prev.clone();
                    group.release(&old);
                    group.members.remove(&old);
                    if let Some(t) = group.target.remove(&old) {
                        group.target.insert(id.clone(), t);
                    }
                    group.replace(&id, m);
                }
                Some(_) => {}
                None => {
                    if group.members.contains_key(&id) {
                        return HeartbeatReply::error(
                            ResponseError::InvalidRequest,
                            format!(
                                "member {id} joins with instance id {instance} it did not have"
                            ),
                        );
                    }
                }
            },
            (Some(instance), false) => match group.static_member(instance) {
                None => {
                    return HeartbeatReply::error(
                        ResponseError::UnknownMemberId,
                        format!("instance id {instance} is unknown"),
                    );
                }
                Some(current) if *current != id => {
                    return HeartbeatReply::error(
                        ResponseError::FencedInstanceId,
                        format!("instance id {instance} is held by member {current}"),
                    );
                }
                Some(_) => {}
            },
            (None, false) if !group.members.contains_key(&id) => {
                return HeartbeatReply::error(
                    ResponseError::UnknownMemberId,
                    format!("member {id} is not in group {}", req.group_id),
                );
            }
            (None, _) => {}
        }
        let existing = group.members.get(&id).cloned();
        let mut force_assignment = joining;
        let mut member = match existing {
            None => {
                if group.members.len() >= settings.max_size {
                    return HeartbeatReply::error(
                        ResponseError::GroupMaxSizeReached,
                        format!(
                            "consumer group {} has reached its maximum size of {}",
                            req.group_id, settings.max_size
                        ),
                    );
                }
                bumped = true;
                Member {
                    instance_id: req.instance_id.clone(),
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    topics: BTreeSet::new(),
                    regex: None,
                    assignor: None,
                    state: MemberState::Stable,
                    epoch: 0,
                    previous_epoch: 0,
                    assigned: Assignment::new(),
                    revoking: Assignment::new(),
                    last_seen: now,
                    session_timeout_ms: settings.session_timeout_ms,
                    revoke_deadline: 0,
                }
            }
            Some(m) if joining => {
                // A member rejoining with epoch 0 has given up everything it owned
                // (clients rejoin after being fenced only once they dropped their
                // partitions): release them; its target stays, so it gets them back.
                let mut m = m;
                m.assigned.clear();
                m.revoking.clear();
                m.state = MemberState::Stable;
                m.previous_epoch = m.epoch;
                m.epoch = 0;
                m
            }
            Some(m) if !joining => {
                if req.member_epoch > m.epoch {
                    return fenced(&id, req.member_epoch, m.epoch);
                }
                if req.member_epoch < m.epoch {
                    // A lost answer: the previous epoch is fine while the member owns only
                    // partitions it still holds.
                    let in_step = req.member_epoch == m.previous_epoch
                        && req
                            .owned
                            .as_ref()
                            .is_some_and(|o| is_subset(o, &m.assigned));
                    if !in_step {
                        return fenced(&id, req.member_epoch, m.epoch);
                    }
                    force_assignment = true;
                }
                m
            }
            Some(m) => m,
        };

        // Subscription and member fields.
        member.last_seen = now;
        member.session_timeout_ms = settings.session_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        if let Some(rack) = &req.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if req.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(names) = &req.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.topics {
                member.topics = names;
                bumped = true;
            }
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.regex {
                member.regex = regex;
                bumped = true;
            }
        }
        if let Some(a) = &req.server_assignor
            && member.assignor.as_ref() != Some(a)
        {
            member.assignor = Some(a.clone());
            bumped = true;
        }
        if let Some(owned) = &req.owned
            && *owned != member.assigned
        {
            force_assignment = true;
        }
        let before = group
            .members
            .get(&id)
            .map(|m| m.assigned.clone())
            .unwrap_or_default();
        group.replace(&id, member);
        if bumped {
            group.bump();
        }
        // Topic changes (created, deleted, partitions added) rebalance the group.
        let resolved = group.resolve(meta);
        if resolved != group.resolved {
            group.resolved = resolved;
            if !bumped {
                group.bump();
            }
        }
        let assigned_at = group.assignment_epoch;
        group.maybe_assign(meta);
        if group.assignment_epoch != assigned_at {
            super::metrics::rebalanced(&req.group_id, super::metrics::CONSUMER);
        }
        group.reconcile(&id, req.owned.as_ref(), now);
        observe(group, now);
        let Some(m) = group.members.get(&id) else {
            return HeartbeatReply::error(ResponseError::UnknownServerError, "");
        };
        let changed = m.assigned != before;
        HeartbeatReply {
            error: NONE,
            message: None,
            member_id: Some(id.clone()),
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment: (changed || force_assignment).then(|| m.assigned.clone()),
        }
    }

    fn leave(&mut self, req: &Heartbeat) -> HeartbeatReply {
        let unknown = || {
            HeartbeatReply::error(
                ResponseError::UnknownMemberId,
                format!("member {} is not in group {}", req.member_id, req.group_id),
            )
        };
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return unknown();
        };
        let id = match &req.instance_id {
            Some(instance) => match group.static_member(instance) {
                None => return unknown(),
                Some(current) if *current != req.member_id => {
                    return HeartbeatReply::error(
                        ResponseError::FencedInstanceId,
                        format!("instance id {instance} is held by member {current}"),
                    );
                }
                Some(current) => current.clone(),
            },
            None if group.members.contains_key(&req.member_id) => req.member_id.clone(),
            None => return unknown(),
        };
        if req.member_epoch == STATIC_LEAVE_EPOCH {
            // Kept with its assignment until its session expires or the instance returns.
            if let Some(m) = group.members.get_mut(&id) {
                if m.epoch != STATIC_LEAVE_EPOCH {
                    m.previous_epoch = m.epoch;
                }
                m.epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            group.remove(&id);
        }
        HeartbeatReply {
            member_id: Some(id),
            member_epoch: req.member_epoch,
            ..HeartbeatReply::default()
        }
    }

    /// Expires members whose session ran out and members that did not revoke within their
    /// rebalance timeout; returns the groups that changed.
    pub(crate) fn tick(&mut self, now: i64) -> Vec<String> {
        let mut changed = Vec::new();
        for (gid, group) in self.groups.iter_mut() {
            let gone: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.last_seen + i64::from(m.session_timeout_ms) <= now
                        || (m.state == MemberState::UnrevokedPartitions && m.revoke_deadline <= now)
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !gone.is_empty() {
                changed.push(gid.clone());
            }
            for id in gone {
                group.remove(&id);
            }
            observe(group, now);
        }
        changed
    }

    /// The persisted form of `group_id` (`None` when it is not a consumer group).
    pub(crate) fn image(&self, group_id: &str) -> Option<ConsumerImage> {
        let g = self.groups.get(group_id)?;
        let group = StoredGroup {
            epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.clone(),
            resolved: g
                .resolved
                .iter()
                .map(|(name, (id, n))| (name.clone(), *id, *n))
                .collect(),
        };
        let members = g
            .members
            .iter()
            .map(|(id, m)| {
                let stored = StoredMember {
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    topics: m.topics.iter().cloned().collect(),
                    regex: m.regex.clone(),
                    assignor: m.assignor.clone(),
                    state: match m.state {
                        MemberState::Stable => 0,
                        MemberState::UnrevokedPartitions => 1,
                        MemberState::UnreleasedPartitions => 2,
                    },
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    assigned: m.assigned.clone(),
                    revoking: m.revoking.clone(),
                    target: g.target.get(id).cloned().unwrap_or_default(),
                };
                (id.clone(), stored)
            })
            .collect();
        Some((group, members))
    }

    /// Resumes a persisted group; sessions (and revocation deadlines) start at `now`.
    pub(crate) fn restore(
        &mut self,
        group_id: &str,
        stored: &StoredGroup,
        members: &BTreeMap<String, StoredMember>,
        now: i64,
    ) {
        let mut g = Group {
            epoch: stored.epoch,
            assignment_epoch: stored.assignment_epoch,
            assignor: stored.assignor.clone(),
            resolved: stored
                .resolved
                .iter()
                .map(|(name, id, n)| (name.clone(), (*id, *n)))
                .collect(),
            ..Group::default()
        };
        for (id, m) in members {
            let member = Member {
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                topics: m.topics.iter().cloned().collect(),
                regex: m.regex.clone(),
                assignor: m.assignor.clone(),
                state: match m.state {
                    1 => MemberState::UnrevokedPartitions,
                    2 => MemberState::UnreleasedPartitions,
                    _ => MemberState::Stable,
                },
                epoch: m.epoch,
                previous_epoch: m.previous_epoch,
                assigned: m.assigned.clone(),
                revoking: m.revoking.clone(),
                last_seen: now,
                session_timeout_ms: m.session_timeout_ms,
                revoke_deadline: now + i64::from(m.rebalance_timeout_ms.max(0)),
            };
            g.target.insert(id.clone(), m.target.clone());
            g.replace(id, member);
        }
        self.groups.insert(group_id.to_owned(), g);
    }

    /// OffsetCommit's check for a consumer group: `None` when `group_id` is not one.
    /// Epoch -1 commits from outside the group are accepted only while it has no members.
    pub(crate) fn validate_commit(
        &self,
        group_id: &str,
        epoch: i32,
        member_id: &str,
    ) -> Option<i16> {
        let g = self.groups.get(group_id)?;
        if epoch < 0 && g.members.is_empty() {
            return Some(NONE);
        }
        let Some(m) = g.members.get(member_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        if epoch != m.epoch {
            return Some(code(ResponseError::StaleMemberEpoch));
        }
        Some(NONE)
    }

    /// OffsetFetch v9's check for a consumer group: `None` when there is nothing to refuse.
    pub(crate) fn validate_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Option<i16> {
        let g = self.groups.get(group_id)?;
        let member_id = member_id?;
        if epoch < 0 && member_id.is_empty() {
            return None;
        }
        let Some(m) = g.members.get(member_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        (epoch != m.epoch).then(|| code(ResponseError::StaleMemberEpoch))
    }

    /// DeleteGroups: `None` when `group_id` is not a consumer group.
    pub(crate) fn delete(&mut self, group_id: &str) -> Option<Result<bool, i16>> {
        let g = self.groups.get(group_id)?;
        if !g.members.is_empty() {
            return Some(Err(code(ResponseError::NonEmptyGroup)));
        }
        self.groups.remove(group_id);
        Some(Ok(true))
    }

    /// Topic names the members of `group_id` subscribe to (OffsetDelete refuses them);
    /// `None` when it is not a consumer group.
    pub(crate) fn subscribed_topics(&self, group_id: &str) -> Option<BTreeSet<String>> {
        let g = self.groups.get(group_id)?;
        if g.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let mut topics: BTreeSet<String> = g.resolved.keys().cloned().collect();
        for m in g.members.values() {
            topics.extend(m.topics.iter().cloned());
        }
        Some(topics)
    }

    /// (group id, state) of every consumer group.
    pub(crate) fn list(&self) -> Vec<(String, GroupState)> {
        let mut all: Vec<_> = self
            .groups
            .iter()
            .map(|(id, g)| (id.clone(), g.state()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn describe(&self, group_id: &str) -> Option<Description> {
        let g = self.groups.get(group_id)?;
        let members = g
            .members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.topics.iter().cloned().collect(),
                subscribed_topic_regex: m.regex.clone(),
                assignment: m.assigned.clone(),
                target_assignment: g.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        Some(Description {
            state: g.state(),
            group_epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: if g.assignor.is_empty() {
                UNIFORM.to_owned()
            } else {
                g.assignor.clone()
            },
            members,
        })
    }

    /// Owner of every owned partition, checked against each member's partitions: the
    /// ownership invariant (no partition owned by two members) for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (gid, g) in &self.groups {
            let mut seen: HashMap<(Uuid, i32), &String> = HashMap::new();
            for (id, m) in &g.members {
                for tp in partitions(&m.assigned).chain(partitions(&m.revoking)) {
                    if let Some(other) = seen.insert(tp, id) {
                        return Err(format!("{gid}: {tp:?} owned by {other} and {id}"));
                    }
                    if g.owners.get(&tp) != Some(id) {
                        return Err(format!("{gid}: owners disagree on {tp:?}"));
                    }
                }
            }
            if seen.len() != g.owners.len() {
                return Err(format!("{gid}: stale owners"));
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn member_state(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Option<(MemberState, i32)> {
        let m = self.groups.get(group_id)?.members.get(member_id)?;
        Some((m.state, m.epoch))
    }

    #[cfg(test)]
    pub(crate) fn group_epoch(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.epoch)
    }
}

fn fenced(id: &str, got: i32, current: i32) -> HeartbeatReply {
    HeartbeatReply::error(
        ResponseError::FencedMemberEpoch,
        format!("member {id} sent epoch {got}, its epoch is {current}"),
    )
}

/// Kafka's checks of a ConsumerGroupHeartbeat before it looks at the group.
fn validate(req: &Heartbeat) -> Option<HeartbeatReply> {
    let invalid = |m: &str| Some(HeartbeatReply::error(ResponseError::InvalidRequest, m));
    if req.group_id.is_empty() {
        return Some(HeartbeatReply::error(
            ResponseError::InvalidGroupId,
            "GroupId can't be empty.",
        ));
    }
    if req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if req.member_epoch < STATIC_LEAVE_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if req.member_epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_none() {
        return invalid("InstanceId can't be null.");
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if req.owned.as_ref().is_none_or(|o| count(o) > 0) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return invalid(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
    }
    if let Some(a) = &req.server_assignor
        && !ASSIGNORS.contains(&a.as_str())
    {
        return Some(HeartbeatReply::error(
            ResponseError::UnsupportedAssignor,
            format!(
                "ServerAssignor {a} is not supported. Supported assignors: {}.",
                ASSIGNORS.join(", ")
            ),
        ));
    }
    if let Some(re) = &req.subscribed_topic_regex
        && !re.is_empty()
        && let Err(e) = compile(re)
    {
        return Some(HeartbeatReply::error(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex `{re}` is not a valid regular expression: {e}"),
        ));
    }
    None
}

/// The hooks between the two protocols: one group id is one kind of group at a time.
impl Coordinator {
    /// ConsumerGroupHeartbeat, refused with GROUP_ID_NOT_FOUND while a classic group of
    /// that id has members; an empty classic group becomes a consumer group.
    pub(crate) fn consumer_heartbeat(
        &mut self,
        now: i64,
        settings: &Settings,
        meta: &Metadata,
        req: Heartbeat,
    ) -> HeartbeatReply {
        self.touch(&req.group_id);
        if let Some(g) = self.groups.get(&req.group_id) {
            if !g.members.is_empty() {
                return HeartbeatReply::error(
                    ResponseError::GroupIdNotFound,
                    format!("Group {} is not a consumer group.", req.group_id),
                );
            }
            if req.member_epoch == 0 {
                self.groups.remove(&req.group_id);
            }
        }
        self.consumer.heartbeat(now, settings, meta, req)
    }

    /// Whether `group_id` (of either kind) has members.
    pub(crate) fn has_members(&self, group_id: &str) -> bool {
        self.consumer.has_members(group_id)
            || self
                .groups
                .get(group_id)
                .is_some_and(|g| !g.members.is_empty())
    }

    /// The protocol type `group_id` is known under: `consumer` for KIP-848 groups, the
    /// classic group's (`consumer` for consumers too), `None` for groups it does not know.
    pub(crate) fn group_kind(&self, group_id: &str) -> Option<&'static str> {
        if self.consumer.knows(group_id) {
            Some("consumer")
        } else if self.groups.contains_key(group_id) {
            Some("classic")
        } else {
            None
        }
    }

    /// JoinGroup's check: INCONSISTENT_GROUP_PROTOCOL while a consumer group of that id
    /// has members; an empty consumer group becomes a classic group.
    pub(crate) fn consumer_refuses_join(&mut self, group_id: &str) -> Option<ResponseError> {
        if self.consumer.has_members(group_id) {
            return Some(ResponseError::InconsistentGroupProtocol);
        }
        self.consumer.forget_empty(group_id);
        None
    }
}

#[cfg(test)]
mod tests;
