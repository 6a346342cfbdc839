//! The edge of the KIP-848 coordinator ([`crate::group::consumer`]): ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe, and the parts of the group APIs shared with classic groups
//! that differ for consumer groups (OffsetCommit v9+ and OffsetFetch v9+ check member
//! epochs; ListGroups and DescribeGroups report consumer groups as Kafka does). The clock
//! and the topic metadata are read here and handed to the state machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
    consumer_group_describe_response, consumer_group_heartbeat_response,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    delete_topics_response::DeletableTopicResult,
    describe_groups_response::DescribedGroup,
    list_groups_response::ListedGroup,
    offset_commit_response::OffsetCommitResponsePartition,
    offset_commit_response::OffsetCommitResponseTopic,
};
use uuid::Uuid;

use tracing::{info, warn};

use super::{groups, str};
use crate::group::consumer::{Assignment, Heartbeat, Metadata, Settings};
use crate::group::offsets;
use crate::server::{Inner, blocking, now_ms};
use crate::topics::lock;

fn s(x: &kafka_protocol::protocol::StrBytes) -> String {
    x.as_str().to_owned()
}

fn settings(inner: &Inner) -> Settings {
    let ms = |d: std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    Settings {
        session_timeout_ms: ms(inner.config.group_consumer_session_timeout),
        heartbeat_interval_ms: ms(inner.config.group_consumer_heartbeat_interval),
        max_size: inner.config.group_consumer_max_size,
    }
}

/// Topics as consumer groups see them: name to (id, partition count); the internal
/// offsets topic is not subscribable.
fn metadata(inner: &Inner) -> Metadata {
    inner
        .topics
        .all()
        .iter()
        .filter(|t| t.name != offsets::TOPIC)
        .map(|t| {
            let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            (t.name.clone(), (t.id, n))
        })
        .collect()
}

pub(crate) fn consumer_group_heartbeat(
    inner: &Inner,
    header: &RequestHeader,
    r: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let owned = r.topic_partitions.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a.retain(|_, ps| !ps.is_empty());
        a
    });
    let req = Heartbeat {
        group_id: s(&r.group_id.0),
        member_id: s(&r.member_id),
        member_epoch: r.member_epoch,
        instance_id: r.instance_id.as_ref().map(s),
        rack_id: r.rack_id.as_ref().map(s),
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        subscribed_topic_names: r
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| s(&n.0)).collect()),
        subscribed_topic_regex: r.subscribed_topic_regex.as_ref().map(s),
        server_assignor: r.server_assignor.as_ref().map(s),
        owned,
        client_id: header.client_id.as_ref().map(s).unwrap_or_default(),
        client_host: String::new(),
    };
    let (settings, meta) = (settings(inner), metadata(inner));
    let reply = inner.groups.with(|c| {
        (
            c.consumer_heartbeat(now_ms(), &settings, &meta, req),
            Vec::new(),
        )
    });
    let assignment = reply.assignment.map(|a| {
        consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(t, ps)| {
                    consumer_group_heartbeat_response::TopicPartitions::default()
                        .with_topic_id(t)
                        .with_partitions(ps.into_iter().collect())
                })
                .collect(),
        )
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(reply.error)
        .with_error_message(reply.message.map(str))
        .with_member_id(reply.member_id.map(str))
        .with_member_epoch(reply.member_epoch)
        .with_heartbeat_interval_ms(reply.heartbeat_interval_ms)
        .with_assignment(assignment)
}

pub(crate) fn consumer_group_describe(
    inner: &Inner,
    r: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let names: BTreeMap<Uuid, String> = inner
        .topics
        .all()
        .iter()
        .map(|t| (t.id, t.name.clone()))
        .collect();
    let described = inner.groups.with(|c| {
        let d: Vec<_> = r
            .group_ids
            .iter()
            .map(|g| {
                let id = g.0.as_str();
                (c.consumer.describe(id), c.knows(id))
            })
            .collect();
        (d, Vec::new())
    });
    let assignment = |a: Assignment| {
        consumer_group_describe_response::Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(t, ps)| {
                    consumer_group_describe_response::TopicPartitions::default()
                        .with_topic_id(t)
                        .with_topic_name(TopicName(str(names.get(&t).cloned().unwrap_or_default())))
                        .with_partitions(ps.into_iter().collect())
                })
                .collect(),
        )
    };
    let groups = r
        .group_ids
        .into_iter()
        .zip(described)
        .map(|(id, (d, known))| {
            let base = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            match d {
                None => {
                    let message = if known {
                        format!("Group {} is not a consumer group.", id.0.as_str())
                    } else {
                        format!("Group {} not found.", id.0.as_str())
                    };
                    base.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str(message)))
                        .with_group_state(str("Dead"))
                }
                Some(d) => base
                    .with_group_state(str(d.state.name()))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(str(d.assignor))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                consumer_group_describe_response::Member::default()
                                    .with_member_id(str(m.member_id))
                                    .with_instance_id(m.instance_id.map(str))
                                    .with_rack_id(m.rack_id.map(str))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str(m.client_id))
                                    .with_client_host(str(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .into_iter()
                                            .map(|n| TopicName(str(n)))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(m.subscribed_topic_regex.map(str))
                                    .with_assignment(assignment(m.assignment))
                                    .with_target_assignment(assignment(m.target_assignment))
                                    // v1: 1 is a member of the consumer protocol.
                                    .with_member_type(1)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

/// Offset expiry, from the group ticker (the store writes tombstones, off the reactor).
pub(crate) async fn expire_offsets(inner: &Arc<Inner>) {
    let retention = i64::try_from(inner.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
    let i = Arc::clone(inner);
    match blocking(move || i.groups.expire_offsets(now_ms(), retention)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => info!(offsets = n, "expired committed offsets of empty groups"),
        Ok(Err(e)) | Err(e) => warn!(error = %e, "expiring committed offsets failed"),
    }
}

/// Records the group's protocol type in the offsets topic after its first commit, so the
/// group's kind survives a restart (best effort: the commit itself is already durable).
async fn note_group(inner: &Arc<Inner>, group: String) {
    let kind = inner
        .groups
        .with(|c| (c.group_kind(&group).unwrap_or(""), Vec::new()));
    let store = Arc::clone(inner.groups.offsets());
    let noted = blocking(move || {
        let mut o = lock(&store);
        if !o.has_group(&group) || o.protocol_type(&group) == Some(kind) {
            return Ok(());
        }
        o.note_group(&group, kind, now_ms())
    })
    .await;
    if let Ok(Err(e)) | Err(e) = noted {
        warn!(error = %e, "recording group metadata failed");
    }
}

/// OffsetCommit: members of consumer groups must send v9+ (their member epoch is checked
/// in place of the generation, in `group::Coordinator::validate_commit`); the rest is the
/// classic handler's.
pub(crate) async fn offset_commit(
    inner: &Arc<Inner>,
    r: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group = s(&r.group_id.0);
    let member = s(&r.member_id);
    let old_version_member = version < 9
        && inner
            .groups
            .with(|c| (c.consumer.is_member(&group, &member), Vec::new()));
    if !old_version_member {
        let resp = groups::offset_commit(inner, r).await;
        note_group(inner, group).await;
        return resp;
    }
    let code = ResponseError::UnsupportedVersion.code();
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
                .with_name(t.name)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch: from v9 a consumer-group member names itself and its epoch; an unknown
/// member or a stale epoch gets the group's error and no offsets.
pub(crate) fn offset_fetch(
    inner: &Inner,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let refused: Vec<Option<i16>> = if version >= 9 {
        inner.groups.with(|c| {
            let codes = r
                .groups
                .iter()
                .map(|g| {
                    c.consumer.validate_fetch(
                        g.group_id.0.as_str(),
                        g.member_id.as_ref().map(|m| m.as_str()),
                        g.member_epoch,
                    )
                })
                .collect();
            (codes, Vec::new())
        })
    } else {
        Vec::new()
    };
    let mut resp = groups::offset_fetch(inner, r, version);
    for (g, code) in resp.groups.iter_mut().zip(refused) {
        if let Some(code) = code {
            g.error_code = code;
            g.topics.clear();
        }
    }
    resp
}

/// ListGroups with consumer groups under their own states (Empty, Assigning,
/// Reconciling, Stable) and protocol type `consumer`; from v5 every group has its type
/// (`classic` or `consumer`) and the types filter applies.
pub(crate) fn list_groups(inner: &Inner, r: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let filter: Vec<String> = if version >= 4 {
        r.states_filter
            .iter()
            .map(|f| f.as_str().to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        r.types_filter
            .iter()
            .map(|t| t.as_str().to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let wanted = |t: &str| types.is_empty() || types.iter().any(|w| w == t);
    let consumer = inner.groups.with(|c| (c.consumer.list(), Vec::new()));
    let mut resp = groups::list_groups(inner, r, version);
    resp.groups
        .retain(|g| !consumer.iter().any(|(id, _)| id == g.group_id.0.as_str()));
    // Groups known only by their offsets (after a restart, or commits from outside a
    // group): the kind recorded with them.
    let recorded: Vec<Option<String>> = {
        let store = lock(inner.groups.offsets());
        resp.groups
            .iter()
            .map(|g| {
                let kind = store.protocol_type(g.group_id.0.as_str());
                kind.filter(|_| g.protocol_type.is_empty())
                    .map(str::to_owned)
            })
            .collect()
    };
    for (g, kind) in resp.groups.iter_mut().zip(&recorded) {
        if kind.as_deref().is_some_and(|k| !k.is_empty()) {
            g.protocol_type = str("consumer");
        }
    }
    if version >= 5 {
        let typed: Vec<_> = std::mem::take(&mut resp.groups)
            .into_iter()
            .zip(recorded)
            .filter_map(|(g, kind)| {
                let t = if kind.as_deref() == Some("consumer") {
                    "consumer"
                } else {
                    "classic"
                };
                wanted(t).then(|| g.with_group_type(str(t)))
            })
            .collect();
        resp.groups = typed;
    }
    for (id, state) in consumer {
        if !filter.is_empty() && !filter.contains(&state.name().to_lowercase()) {
            continue;
        }
        if !wanted("consumer") {
            continue;
        }
        let g = ListedGroup::default()
            .with_group_id(GroupId(str(id)))
            .with_protocol_type(str("consumer"));
        let g = if version >= 4 {
            g.with_group_state(str(state.name()))
        } else {
            g
        };
        resp.groups.push(if version >= 5 {
            g.with_group_type(str("consumer"))
        } else {
            g
        });
    }
    resp
}

/// DescribeGroups (classic groups only): a consumer group is `Dead` there, as Kafka
/// answers before DescribeGroups v6; ConsumerGroupDescribe describes it.
pub(crate) fn describe_groups(
    inner: &Inner,
    r: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let consumer: Vec<bool> = inner.groups.with(|c| {
        let k = r
            .groups
            .iter()
            .map(|g| c.consumer.knows(g.0.as_str()))
            .collect();
        (k, Vec::new())
    });
    let mut resp = groups::describe_groups(inner, r, version);
    for (g, is_consumer) in resp.groups.iter_mut().zip(consumer) {
        if is_consumer {
            *g = DescribedGroup::default()
                .with_group_id(g.group_id.clone())
                .with_group_state(str("Dead"))
                .with_protocol_type(str(""))
                .with_protocol_data(str(""));
        }
    }
    resp
}

/// Whether a DeleteTopics entry (by name, or by id from v6) names the offsets topic.
fn names_offsets_topic(inner: &Inner, name: Option<&str>, id: Uuid) -> bool {
    name == Some(offsets::TOPIC)
        || (!id.is_nil() && inner.topics.get(offsets::TOPIC).is_some_and(|t| t.id == id))
}

const INTERNAL_REFUSAL: &str =
    "__consumer_offsets is internal: only the group coordinator changes it";

/// DeleteTopics, except that the offsets topic is refused (INVALID_TOPIC_EXCEPTION): the
/// committed offsets live in it.
pub(crate) async fn delete_topics(
    inner: &Arc<Inner>,
    mut r: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut refused = Vec::new();
    r.topic_names.retain(|n| {
        let hit = n.0.as_str() == offsets::TOPIC;
        if hit {
            refused.push((Some(n.clone()), Uuid::nil()));
        }
        !hit
    });
    r.topics.retain(|t| {
        let hit = names_offsets_topic(inner, t.name.as_ref().map(|n| n.0.as_str()), t.topic_id);
        if hit {
            refused.push((t.name.clone(), t.topic_id));
        }
        !hit
    });
    let mut resp = super::admin::delete_topics(inner, r).await;
    for (name, id) in refused {
        resp.responses.push(
            DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(id)
                .with_error_code(ResponseError::InvalidTopicException.code())
                .with_error_message(Some(str(INTERNAL_REFUSAL))),
        );
    }
    resp
}

/// DeleteRecords, except on the offsets topic (INVALID_TOPIC_EXCEPTION).
pub(crate) async fn delete_records(
    inner: &Arc<Inner>,
    mut r: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let (internal, rest): (Vec<_>, Vec<_>) = r
        .topics
        .into_iter()
        .partition(|t| t.name.0.as_str() == offsets::TOPIC);
    r.topics = rest;
    let mut resp = super::admin::delete_records(inner, r).await;
    for t in internal {
        resp.topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(ResponseError::InvalidTopicException.code())
                        })
                        .collect(),
                ),
        );
    }
    resp
}
