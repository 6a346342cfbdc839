//! The edge of the group coordinator: Kafka group requests to and from
//! [`crate::group::Coordinator`] (the clock is read here, replies that wait are oneshot
//! channels) and committed offsets to and from [`crate::group::offsets::Offsets`] (written
//! off the reactor).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseKind,
    SyncGroupRequest, SyncGroupResponse, TopicName, delete_groups_response::DeletableGroupResult,
    describe_groups_response::DescribedGroup, describe_groups_response::DescribedGroupMember,
    find_coordinator_response::Coordinator as CoordinatorKey,
    join_group_response::JoinGroupResponseMember, leave_group_response::MemberResponse,
    list_groups_response::ListedGroup, offset_commit_response::OffsetCommitResponsePartition,
    offset_commit_response::OffsetCommitResponseTopic,
    offset_delete_response::OffsetDeleteResponsePartition,
    offset_delete_response::OffsetDeleteResponseTopic,
    offset_fetch_response::OffsetFetchResponseGroup,
    offset_fetch_response::OffsetFetchResponsePartition,
    offset_fetch_response::OffsetFetchResponsePartitions,
    offset_fetch_response::OffsetFetchResponseTopic,
    offset_fetch_response::OffsetFetchResponseTopics,
};
use tokio::sync::{oneshot, watch};
use tracing::warn;

use super::{Reply, str};
use crate::group::offsets::{Committed, MAX_METADATA_BYTES, Offsets};
use crate::group::{self, Coordinator, Join, JoinReply, Ready, State, SyncReply, Waiter};
use crate::server::{Inner, blocking, now_ms};
use crate::topics::lock;

/// The coordinator and the channels of the requests waiting on it.
pub(crate) struct Groups {
    state: Mutex<Machine>,
    next_waiter: AtomicU64,
    /// Held while a commit is written, so files are written in the order of commits.
    offsets: Arc<Mutex<Offsets>>,
    /// Per-group locks (striped by group id: bounded memory, and groups sharing a stripe
    /// lose nothing since every write already serializes on `offsets`). Held, off the
    /// reactor, across the check and the write of OffsetCommit, DeleteGroups and
    /// OffsetDelete: see [`Groups::commit`].
    group_locks: Box<[Mutex<()>]>,
    /// Held by a pass of [`Groups::persist`], so passes write in order.
    persisting: Mutex<()>,
}

const GROUP_LOCK_STRIPES: usize = 64;

struct Machine {
    coordinator: Coordinator,
    waiting: HashMap<Waiter, oneshot::Sender<group::Reply>>,
}

impl Machine {
    fn deliver(&mut self, ready: Ready) {
        for (w, reply) in ready {
            if let Some(tx) = self.waiting.remove(&w) {
                let _ = tx.send(reply);
            }
        }
    }
}

impl Groups {
    pub(crate) fn open(offsets: Offsets, delay_ms: i64) -> crate::Result<Groups> {
        let prefix = crate::store::new_uuid().simple().to_string();
        let config = group::Config {
            initial_rebalance_delay_ms: delay_ms,
            ..group::Config::default()
        };
        let mut coordinator = Coordinator::new(config, prefix[..8].to_owned());
        coordinator.restore(now_ms(), &offsets);
        Ok(Groups {
            state: Mutex::new(Machine {
                coordinator,
                waiting: HashMap::new(),
            }),
            next_waiter: AtomicU64::new(1),
            offsets: Arc::new(Mutex::new(offsets)),
            group_locks: (0..GROUP_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            persisting: Mutex::new(()),
        })
    }

    /// Writes the membership of groups that changed since the last pass to the offsets
    /// topic (blocking). On failure the groups stay to be written by the next pass.
    pub(crate) fn persist(&self) -> crate::Result<usize> {
        let _pass = lock(&self.persisting);
        let images = self.with(|c| (c.take_images(), Vec::new()));
        if images.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = images.iter().map(|(id, _)| id.clone()).collect();
        let written = lock(&self.offsets).store_groups(images);
        if written.is_err() {
            self.with(|c| {
                c.mark_dirty(ids);
                ((), Vec::new())
            });
        }
        written
    }

    /// The committed-offset store (lock it after the coordinator, never across a call).
    pub(crate) fn offsets(&self) -> &Arc<Mutex<Offsets>> {
        &self.offsets
    }

    /// Offset expiry (blocking: writes tombstones): each group with offsets is checked
    /// under its group lock, so a commit is never tombstoned by a check that preceded it.
    pub(crate) fn expire_offsets(&self, now: i64, retention_ms: i64) -> crate::Result<usize> {
        let groups: Vec<String> = lock(&self.offsets).groups().map(str::to_owned).collect();
        let mut expired = 0;
        for g in groups {
            let _group = lock(self.group_lock(&g));
            let busy = self.with(|c| (c.has_members(&g), Vec::new()));
            expired += lock(&self.offsets).expire_group(&g, now, retention_ms, busy)?;
        }
        Ok(expired)
    }

    fn group_lock(&self, group: &str) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        group.hash(&mut h);
        &self.group_locks[(h.finish() % GROUP_LOCK_STRIPES as u64) as usize]
    }

    /// OffsetCommit's check of generation and member and its durable write, as one step per
    /// group: blocking (file I/O), so callers run it off the reactor. `Err` is the refusal
    /// code; `Ok` the write's outcome (nothing is written when `commits` is empty).
    ///
    /// Without the group lock a member could pass the check, be fenced by a rebalance, and
    /// have its write land after a commit of the new generation, overwriting it. With it,
    /// a commit that passed the check is written before any later commit or delete of the
    /// group is even checked; fencing itself need not take the lock (a commit checked before
    /// the fence is ordered before it, as in Kafka).
    pub(crate) fn commit(
        &self,
        now: i64,
        group: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
        commits: Vec<((String, i32), Committed)>,
    ) -> Result<crate::Result<()>, i16> {
        let _group = lock(self.group_lock(group));
        let check = self.with(|c| {
            (
                c.validate_commit(now, group, generation, member_id, instance),
                Vec::new(),
            )
        });
        if check != 0 {
            return Err(check);
        }
        if commits.is_empty() {
            return Ok(Ok(()));
        }
        Ok(lock(&self.offsets).commit(group, commits))
    }

    /// DeleteGroups of one group under its lock (blocking): `Err` is the refusal code,
    /// `Ok(Ok(false))` a group neither coordinated nor with offsets.
    pub(crate) fn delete_group(&self, group: &str) -> Result<crate::Result<bool>, i16> {
        let _group = lock(self.group_lock(group));
        let known = self.with(|c| (c.delete_group(group), Vec::new()))?;
        let mut offsets = lock(&self.offsets);
        let had = offsets.has_group(group);
        Ok(offsets.delete(group, None).map(|()| known || had))
    }

    /// OffsetDelete under the group's lock (blocking): a code per asked partition (refused
    /// for subscribed topics) and whether the group was known, or the group's error.
    pub(crate) fn delete_offsets(
        &self,
        group: &str,
        asked: Vec<(String, Vec<i32>)>,
    ) -> Result<(Vec<Vec<i16>>, crate::Result<bool>), i16> {
        let _group = lock(self.group_lock(group));
        let (subscribed, known) = self.with(|c| {
            let r = c.subscribed_topics(group).map(|s| (s, c.knows(group)));
            (r, Vec::new())
        })?;
        let mut deleted = Vec::new();
        let codes = asked
            .into_iter()
            .map(|(topic, ps)| {
                let busy = subscribed.as_ref().is_some_and(|st| st.contains(&topic));
                ps.into_iter()
                    .map(|p| {
                        if busy {
                            error_code(ResponseError::GroupSubscribedToTopic)
                        } else {
                            deleted.push((topic.clone(), p));
                            0
                        }
                    })
                    .collect()
            })
            .collect();
        let mut offsets = lock(&self.offsets);
        let had = offsets.has_group(group);
        Ok((
            codes,
            offsets.delete(group, Some(&deleted)).map(|()| known || had),
        ))
    }

    /// Runs `f` on the coordinator with a fresh waiter and returns the receiver of its reply.
    fn call(
        &self,
        f: impl FnOnce(&mut Coordinator, Waiter) -> Ready,
    ) -> oneshot::Receiver<group::Reply> {
        let w = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut m = lock(&self.state);
        m.waiting.insert(w, tx);
        let ready = f(&mut m.coordinator, w);
        m.deliver(ready);
        rx
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Coordinator) -> (T, Ready)) -> T {
        let mut m = lock(&self.state);
        let (t, ready) = f(&mut m.coordinator);
        m.deliver(ready);
        t
    }
}

impl Drop for Groups {
    /// The last membership changes, once nothing serves the groups any more (the ticker's
    /// last pass may precede the last requests of closing connections).
    fn drop(&mut self) {
        if let Err(e) = self.persist() {
            warn!(error = %e, "writing group membership at shutdown failed");
        }
    }
}

/// Drives session and rebalance timeouts and writes changed group membership
/// ([`Groups::persist`]) every 100 ms. After shutdown is signalled it stops expiring
/// anything (members cannot reach a stopping broker) but keeps writing changes, more often,
/// until the server stops it once every connection is closed.
pub(crate) async fn tick_loop(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut ticks: u64 = 0;
    let mut stopping = *shutdown.borrow();
    loop {
        if stopping {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        } else {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => stopping = true,
            }
        }
        if !stopping {
            inner.groups.with(|c| ((), c.tick(now_ms())));
        }
        persist_groups(&inner).await;
        ticks += 1;
        if !stopping && ticks.is_multiple_of(10) {
            inner.groups.with(|c| {
                c.export_gauges();
                ((), Vec::new())
            });
            super::consumer_groups::expire_offsets(&inner).await;
        }
    }
}

async fn persist_groups(inner: &Arc<Inner>) {
    // Idle groups: no blocking task at all.
    if !inner.groups.with(|c| (c.has_dirty(), Vec::new())) {
        return;
    }
    let i = Arc::clone(inner);
    match blocking(move || i.groups.persist()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) | Err(e) => warn!(error = %e, "writing group membership failed"),
    }
}

fn s(x: &kafka_protocol::protocol::StrBytes) -> String {
    x.as_str().to_owned()
}

fn error_code(e: ResponseError) -> i16 {
    e.code()
}

/// This broker coordinates every group; transactions have no coordinator yet.
pub(crate) fn find_coordinator(
    inner: &Inner,
    r: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = str(inner.config.advertised_host.clone());
    let port = i32::from(inner.config.advertised_port);
    let node = inner.config.node_id;
    let answer = |key_type: i8| -> (i16, Option<&'static str>) {
        if key_type == 0 {
            (0, None)
        } else {
            (
                error_code(ResponseError::CoordinatorNotAvailable),
                Some("weft has no transaction coordinator yet"),
            )
        }
    };
    if version < 4 {
        let (code, msg) = answer(r.key_type);
        let resp = FindCoordinatorResponse::default().with_error_code(code);
        return if code == 0 {
            resp.with_node_id(node.into())
                .with_host(host)
                .with_port(port)
        } else {
            resp.with_error_message(msg.map(str))
                .with_node_id((-1).into())
                .with_port(-1)
        };
    }
    let coordinators = r
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let (code, msg) = answer(r.key_type);
            let c = CoordinatorKey::default()
                .with_key(key)
                .with_error_code(code);
            if code == 0 {
                c.with_node_id(node.into())
                    .with_host(host.clone())
                    .with_port(port)
            } else {
                c.with_error_message(msg.map(str))
                    .with_node_id((-1).into())
                    .with_port(-1)
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

fn join_response(r: JoinReply, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str(id))
                .with_group_instance_id(if version >= 5 {
                    instance.map(str)
                } else {
                    None
                })
                .with_metadata(metadata)
        })
        .collect();
    let (ptype, pname) = if version >= 7 {
        (r.protocol_type.map(str), r.protocol_name.map(str))
    } else {
        (None, Some(str(r.protocol_name.unwrap_or_default())))
    };
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        .with_protocol_type(ptype)
        .with_protocol_name(pname)
        .with_leader(str(r.leader))
        .with_member_id(str(r.member_id))
        .with_members(members)
}

fn sync_response(r: SyncReply, version: i16) -> SyncGroupResponse {
    let resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(r.protocol_type.map(str))
            .with_protocol_name(r.protocol_name.map(str))
    } else {
        resp
    }
}

pub(crate) fn join_group(
    inner: &Arc<Inner>,
    header: &RequestHeader,
    r: JoinGroupRequest,
    version: i16,
) -> Reply {
    let join = Join {
        group_id: s(&r.group_id.0),
        member_id: s(&r.member_id),
        group_instance_id: r.group_instance_id.as_ref().map(s),
        client_id: header.client_id.as_ref().map(s).unwrap_or_default(),
        client_host: String::new(),
        protocol_type: s(&r.protocol_type),
        protocols: r
            .protocols
            .into_iter()
            .map(|p| (s(&p.name), p.metadata))
            .collect(),
        session_timeout_ms: r.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            r.rebalance_timeout_ms
        } else {
            r.session_timeout_ms
        },
        require_known_member_id: version >= 4,
    };
    let rx = inner.groups.call(|c, w| c.join(now_ms(), w, join));
    Reply::Later(Box::pin(async move {
        let reply = match rx.await {
            Ok(group::Reply::Join(j)) => j,
            _ => JoinReply {
                error: error_code(ResponseError::UnknownServerError),
                generation_id: -1,
                ..JoinReply::default()
            },
        };
        ResponseKind::JoinGroup(join_response(reply, version))
    }))
}

pub(crate) fn sync_group(inner: &Arc<Inner>, r: SyncGroupRequest, version: i16) -> Reply {
    let assignments: Vec<(String, Bytes)> = r
        .assignments
        .into_iter()
        .map(|a| (s(&a.member_id), a.assignment))
        .collect();
    let group_id = s(&r.group_id.0);
    let member_id = s(&r.member_id);
    let ptype = r.protocol_type.as_ref().map(s);
    let pname = r.protocol_name.as_ref().map(s);
    let instance = r.group_instance_id.as_ref().map(s);
    let rx = inner.groups.call(|c, w| {
        c.sync(
            now_ms(),
            w,
            &group_id,
            r.generation_id,
            &member_id,
            instance.as_deref(),
            ptype.as_deref(),
            pname.as_deref(),
            assignments,
        )
    });
    Reply::Later(Box::pin(async move {
        let reply = match rx.await {
            Ok(group::Reply::Sync(r)) => r,
            _ => SyncReply {
                error: error_code(ResponseError::UnknownServerError),
                ..SyncReply::default()
            },
        };
        ResponseKind::SyncGroup(sync_response(reply, version))
    }))
}

pub(crate) fn heartbeat(inner: &Inner, r: HeartbeatRequest) -> HeartbeatResponse {
    let code = inner.groups.with(|c| {
        (
            c.heartbeat(
                now_ms(),
                &s(&r.group_id.0),
                r.generation_id,
                &s(&r.member_id),
                r.group_instance_id.as_ref().map(|i| i.as_str()),
            ),
            Vec::new(),
        )
    });
    HeartbeatResponse::default().with_error_code(code)
}

pub(crate) fn leave_group(inner: &Inner, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let ids: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| (s(&m.member_id), m.group_instance_id.as_ref().map(s)))
            .collect()
    } else {
        vec![(s(&r.member_id), None)]
    };
    let result = inner
        .groups
        .with(|c| c.leave(now_ms(), &s(&r.group_id.0), &ids));
    let resp = LeaveGroupResponse::default();
    // An unknown group: from v3 Kafka answers each member UNKNOWN_MEMBER_ID under a
    // top-level NONE (v0-v2 carry the member's error at the top).
    let unknown = error_code(ResponseError::UnknownMemberId);
    let result = match result {
        Err(code) if code == unknown && version >= 3 => Ok(vec![unknown; r.members.len()]),
        other => other,
    };
    match result {
        Err(code) => resp.with_error_code(code),
        Ok(codes) if version < 3 => resp.with_error_code(codes[0]),
        Ok(codes) => resp.with_members(
            r.members
                .into_iter()
                .zip(codes)
                .map(|(m, code)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code)
                })
                .collect(),
        ),
    }
}

pub(crate) async fn offset_commit(
    inner: &Arc<Inner>,
    r: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = s(&r.group_id.0);
    let now = now_ms();
    let mut codes: Vec<Vec<i16>> = Vec::new();
    let mut commits = Vec::new();
    for t in &r.topics {
        let mut tc = Vec::new();
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_ref().map(s).unwrap_or_default();
            if metadata.len() > MAX_METADATA_BYTES {
                tc.push(error_code(ResponseError::OffsetMetadataTooLarge));
            } else {
                commits.push((
                    (s(&t.name.0), p.partition_index),
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_ms: now,
                    },
                ));
                tc.push(0);
            }
        }
        codes.push(tc);
    }
    let (i, g, m) = (Arc::clone(inner), group_id.clone(), s(&r.member_id));
    let instance = r.group_instance_id.as_ref().map(s);
    let generation = r.generation_id_or_member_epoch;
    let outcome = blocking(move || {
        let instance = instance.as_deref();
        i.groups
            .commit(now_ms(), &g, generation, &m, instance, commits)
    })
    .await;
    let failed = match outcome {
        Ok(Err(check)) => {
            // Refused: every partition gets the group's error, as Kafka answers.
            codes.iter_mut().flatten().for_each(|c| *c = check);
            None
        }
        Ok(Ok(written)) => write_failure(&group_id, written),
        Err(e) => write_failure(&group_id, Err(e)),
    };
    if let Some(e) = failed {
        for c in codes.iter_mut().flatten() {
            if *c == 0 {
                *c = error_code(e);
            }
        }
    }
    let topics = r
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (partition, offset, leader epoch, metadata).
type Fetched = (i32, i64, i32, String);

/// (topic, partition, offset, leader epoch, metadata) of one group: the partitions asked
/// for (`None`: every committed one), -1 for partitions without a commit.
fn fetch_group(
    offsets: &Offsets,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<Fetched>)> {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let ps = parts
                    .into_iter()
                    .map(|p| match offsets.get(group, &t, p) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone()),
                        None => (p, -1, -1, String::new()),
                    })
                    .collect();
                (t, ps)
            })
            .collect(),
        None => {
            let mut out: Vec<(String, Vec<Fetched>)> = Vec::new();
            for (t, p, c) in offsets.all(group) {
                let entry = (p, c.offset, c.leader_epoch, c.metadata.clone());
                match out.last_mut() {
                    Some((last, ps)) if last == t => ps.push(entry),
                    _ => out.push((t.to_owned(), vec![entry])),
                }
            }
            out
        }
    }
}

pub(crate) fn offset_fetch(
    inner: &Inner,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let offsets = lock(&inner.groups.offsets);
    let epoch = |e: i32| if version >= 5 { e } else { -1 };
    if version >= 8 {
        let groups = r
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (s(&t.name.0), t.partition_indexes))
                        .collect()
                });
                let found = fetch_group(&offsets, g.group_id.0.as_str(), topics);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        found
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str(t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, o, e, m)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(str(m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (s(&t.name.0), t.partition_indexes))
            .collect()
    });
    // v0/v1 have no "all partitions" form; an empty answer is what Kafka gives there.
    let found = fetch_group(&offsets, r.group_id.0.as_str(), topics);
    let topics = found
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str(t)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, o, e, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(epoch(e))
                                .with_metadata(Some(str(m)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub(crate) fn list_groups(inner: &Inner, r: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut all = lock(&inner.groups.state).coordinator.list();
    {
        // Groups known only by their committed offsets (commits from outside a group).
        let offsets = lock(&inner.groups.offsets);
        for g in offsets.groups() {
            if !all.iter().any(|(id, _, _)| id == g) {
                all.push((g.to_owned(), String::new(), State::Empty));
            }
        }
    }
    let filter: Vec<String> = if version >= 4 {
        r.states_filter
            .iter()
            .map(|f| f.as_str().to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let groups = all
        .into_iter()
        .filter(|(_, _, st)| filter.is_empty() || filter.contains(&st.name().to_lowercase()))
        .map(|(id, ptype, st)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(str(id)))
                .with_protocol_type(str(ptype));
            if version >= 4 {
                g.with_group_state(str(st.name()))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) fn describe_groups(
    inner: &Inner,
    r: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    // Groups known only by their committed offsets are Empty, as in ListGroups.
    let with_offsets: Vec<bool> = {
        let offsets = lock(&inner.groups.offsets);
        r.groups
            .iter()
            .map(|g| offsets.groups().any(|o| o == g.0.as_str()))
            .collect()
    };
    let m = lock(&inner.groups.state);
    let groups = r
        .groups
        .into_iter()
        .zip(with_offsets)
        .map(|(id, has_offsets)| {
            let base = DescribedGroup::default().with_group_id(id.clone());
            let unknown = if has_offsets {
                State::Empty
            } else {
                State::Dead
            };
            match m.coordinator.describe(id.0.as_str()) {
                None => base
                    .with_group_state(str(unknown.name()))
                    .with_protocol_type(str(""))
                    .with_protocol_data(str("")),
                Some(d) => base
                    .with_group_state(str(d.state.name()))
                    .with_protocol_type(str(d.protocol_type))
                    .with_protocol_data(str(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|mb| {
                                DescribedGroupMember::default()
                                    .with_member_id(str(mb.member_id))
                                    .with_group_instance_id(if version >= 4 {
                                        mb.group_instance_id.map(str)
                                    } else {
                                        None
                                    })
                                    .with_client_id(str(mb.client_id))
                                    .with_client_host(str(mb.client_host))
                                    .with_member_metadata(mb.metadata)
                                    .with_member_assignment(mb.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// Maps a failed offsets write (or its task) to the error code sent back, logging it.
fn write_failure(group: &str, written: crate::Result<()>) -> Option<ResponseError> {
    match written {
        Ok(()) => None,
        Err(e @ crate::Error::Task(_)) => {
            warn!(group, error = %e, "writing committed offsets failed");
            Some(ResponseError::UnknownServerError)
        }
        Err(e) => {
            warn!(group, error = %e, "writing committed offsets failed");
            Some(ResponseError::KafkaStorageError)
        }
    }
}

/// DeleteGroups: groups without members are forgotten with their committed offsets.
pub(crate) async fn delete_groups(
    inner: &Arc<Inner>,
    r: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for name in r.groups_names {
        let group = s(&name.0);
        let code = if group.is_empty() {
            error_code(ResponseError::InvalidGroupId)
        } else {
            let (i, g) = (Arc::clone(inner), group.clone());
            match blocking(move || i.groups.delete_group(&g)).await {
                Ok(Err(code)) => code,
                Ok(Ok(Ok(true))) => 0,
                Ok(Ok(Ok(false))) => error_code(ResponseError::GroupIdNotFound),
                Ok(Ok(Err(e))) | Err(e) => write_failure(&group, Err(e)).map_or(0, error_code),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(name)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete: committed offsets of partitions the group's members do not subscribe to.
pub(crate) async fn offset_delete(
    inner: &Arc<Inner>,
    r: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = s(&r.group_id.0);
    let answer = |code: i16| OffsetDeleteResponse::default().with_error_code(code);
    if group.is_empty() {
        return answer(error_code(ResponseError::InvalidGroupId));
    }
    let asked: Vec<(String, Vec<i32>)> = r
        .topics
        .iter()
        .map(|t| {
            let ps = t.partitions.iter().map(|p| p.partition_index).collect();
            (s(&t.name.0), ps)
        })
        .collect();
    let (i, g) = (Arc::clone(inner), group.clone());
    let (mut codes, failed) = match blocking(move || i.groups.delete_offsets(&g, asked)).await {
        Ok(Err(code)) => return answer(code),
        Ok(Ok((_, Ok(false)))) => return answer(error_code(ResponseError::GroupIdNotFound)),
        Ok(Ok((codes, Ok(true)))) => (codes, None),
        Ok(Ok((codes, Err(e)))) => (codes, write_failure(&group, Err(e))),
        Err(e) => (
            r.topics
                .iter()
                .map(|t| vec![0; t.partitions.len()])
                .collect(),
            write_failure(&group, Err(e)),
        ),
    };
    if let Some(e) = failed {
        for c in codes.iter_mut().flatten() {
            if *c == 0 {
                *c = error_code(e);
            }
        }
    }
    let topics = r
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, code)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stable group "g" with one member: (groups, member id, generation).
    fn stable_group(dir: &std::path::Path) -> (Groups, String, i32) {
        let groups = Groups::open(crate::group::offsets::tests::store(dir), 0).expect("open");
        let join = Join {
            group_id: "g".into(),
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            require_known_member_id: false,
        };
        let mut rx = groups.call(|c, w| c.join(0, w, join));
        let Ok(group::Reply::Join(j)) = rx.try_recv() else {
            panic!("join answered at once");
        };
        let (member, generation) = (j.member_id, j.generation_id);
        let mut rx = groups
            .call(|c, w| c.sync(0, w, "g", generation, &member, None, None, None, Vec::new()));
        assert!(matches!(rx.try_recv(), Ok(group::Reply::Sync(r)) if r.error == 0));
        (groups, member, generation)
    }

    fn one(offset: i64) -> Vec<((String, i32), Committed)> {
        let c = Committed {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 0,
        };
        vec![(("t".to_owned(), 0), c)]
    }

    #[test]
    fn a_member_fenced_while_its_commit_waits_for_the_group_lock_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (groups, member, generation) = stable_group(dir.path());
        assert!(matches!(
            groups.commit(1, "g", generation, &member, None, one(5)),
            Ok(Ok(()))
        ));
        std::thread::scope(|scope| {
            // Whatever the commit thread has done before, it checks only after taking the
            // group lock, which is released only after the member was fenced.
            let held = lock(groups.group_lock("g"));
            let late = scope.spawn(|| groups.commit(2, "g", generation, &member, None, one(9)));
            let left = groups.with(|c| c.leave(2, "g", &[(member.clone(), None)]));
            assert_eq!(left, Ok(vec![0]));
            drop(held);
            let refused = late.join().expect("commit thread");
            assert_eq!(
                refused.err(),
                Some(ResponseError::UnknownMemberId.code()),
                "fenced before its check"
            );
        });
        let committed = lock(&groups.offsets).get("g", "t", 0).map(|c| c.offset);
        assert_eq!(committed, Some(5), "the fenced commit wrote nothing");
    }
}
