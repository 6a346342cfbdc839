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
    ConsumerGroupHeartbeatResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
    consumer_group_describe_response, consumer_group_heartbeat_response,
    describe_groups_response::DescribedGroup, list_groups_response::ListedGroup,
    offset_commit_response::OffsetCommitResponsePartition,
    offset_commit_response::OffsetCommitResponseTopic,
};
use uuid::Uuid;

use super::{groups, str};
use crate::group::consumer::{Assignment, Heartbeat, Metadata, Settings};
use crate::server::{Inner, now_ms};

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

/// Topics as consumer groups see them: name to (id, partition count).
fn metadata(inner: &Inner) -> Metadata {
    inner
        .topics
        .all()
        .iter()
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
        return groups::offset_commit(inner, r).await;
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
    if version >= 5 {
        resp.groups.retain(|_| wanted("classic"));
        for g in &mut resp.groups {
            g.group_type = str("classic");
        }
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
