//! The authorisation step of each API, Kafka's way (`KafkaApis`): what a request may touch is
//! decided here, per resource, before (or, for read-only APIs, after) its handler runs.
//!
//! - APIs that change something are *gated*: the resources the principal may not touch are
//!   taken out of the request, so the handler never sees them, and answered with the
//!   protocol's error ([`Refused`] values appended to the handler's response).
//! - Read-only APIs are *masked*: the handler answers, then what the principal may not
//!   describe is replaced by the error or left out (Kafka leaves unauthorised topics out of
//!   "all topics" answers and answers TOPIC_AUTHORIZATION_FAILED for named ones, whether or
//!   not they exist, so nothing about them leaks).
//!
//! Operations per API (Kafka 3.x): Produce WRITE topic; Fetch READ topic; ListOffsets,
//! Metadata, OffsetFetch (topics), DescribeTopicPartitions DESCRIBE topic; CreateTopics
//! CREATE cluster or topic; DeleteTopics, DeleteRecords DELETE topic; CreatePartitions ALTER
//! topic; DescribeConfigs DESCRIBE_CONFIGS, (Incremental)AlterConfigs ALTER_CONFIGS on the
//! topic or the cluster (broker resources); FindCoordinator DESCRIBE group/transactional
//! id; Join/Sync/Heartbeat/Leave, ConsumerGroupHeartbeat READ group; OffsetCommit READ group
//! then READ topic; OffsetFetch, DescribeGroups, ConsumerGroupDescribe DESCRIBE group;
//! ListGroups DESCRIBE cluster or else only groups with DESCRIBE; DeleteGroups DELETE group;
//! OffsetDelete DELETE group then READ topic; InitProducerId (no transactional id)
//! IDEMPOTENT_WRITE cluster or else WRITE on any topic (KIP-679); DescribeLogDirs DESCRIBE
//! cluster; the ACL and SCRAM APIs ALTER / DESCRIBE cluster (in `acls.rs`).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ConsumerGroupDescribeResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteGroupsRequest, DeleteGroupsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsResponse, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ListGroupsResponse, ListOffsetsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::messages::{
    alter_configs_response,
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult,
    delete_groups_response::DeletableGroupResult,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    delete_topics_response::DeletableTopicResult,
    find_coordinator_response::Coordinator,
    incremental_alter_configs_response, offset_commit_response, offset_delete_response,
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
};
use kafka_protocol::messages::{
    delete_records_request::DeleteRecordsPartition,
    offset_commit_request::OffsetCommitRequestPartition,
    offset_delete_request::OffsetDeleteRequestPartition, produce_request::PartitionProduceData,
};
use weft_auth::Operation;

use super::str;
use crate::authz::Authz;
use crate::server::Inner;

const TOPIC_DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;
const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;
const CLUSTER_DENIED: ResponseError = ResponseError::ClusterAuthorizationFailed;

/// Config resource types (`ConfigResource.Type`).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;

/// The error for a config resource the principal may not `op`, `None` when allowed (unknown
/// resource types are left to the handler, which refuses them).
fn config_denied(az: Authz<'_>, op: Operation, rtype: i8, name: &str) -> Option<ResponseError> {
    match rtype {
        CONFIG_TOPIC => (!az.topic(op, name)).then_some(TOPIC_DENIED),
        CONFIG_BROKER | CONFIG_BROKER_LOGGER => (!az.cluster(op)).then_some(CLUSTER_DENIED),
        _ => None,
    }
}

// ---- gated: the refused part never reaches the handler ----

/// Takes out of `items` each item `refused` builds a refused entry for, keeping the rest in
/// order, and returns those entries in request order.
fn split_refused<T, R>(items: &mut Vec<T>, mut refused: impl FnMut(&T) -> Option<R>) -> Vec<R> {
    let mut out = Vec::new();
    items.retain(|t| match refused(t) {
        Some(r) => {
            out.push(r);
            false
        }
        None => true,
    });
    out
}

/// `Some(entry())` when `op` on topic `name` is refused.
fn topic_refused<R>(
    az: Authz<'_>,
    op: Operation,
    name: &str,
    entry: impl FnOnce() -> R,
) -> Option<R> {
    (!az.topic(op, name)).then(entry)
}

/// `<name>(resp, refused)`: the handler's response with the refused entries appended to
/// `resp.<field>`.
macro_rules! answer {
    ($($name:ident: $resp:ty, $entry:ty, $field:ident;)*) => {$(
        pub(crate) fn $name(mut resp: $resp, refused: Vec<$entry>) -> $resp {
            resp.$field.extend(refused);
            resp
        }
    )*};
}

answer! {
    produce_answer: ProduceResponse, TopicProduceResponse, responses;
    create_topics_answer: CreateTopicsResponse, CreatableTopicResult, topics;
    delete_topics_answer: DeleteTopicsResponse, DeletableTopicResult, responses;
    create_partitions_answer: CreatePartitionsResponse, CreatePartitionsTopicResult, results;
    delete_records_answer: DeleteRecordsResponse, DeleteRecordsTopicResult, topics;
    alter_configs_answer:
        AlterConfigsResponse, alter_configs_response::AlterConfigsResourceResponse, responses;
    incremental_alter_configs_answer:
        IncrementalAlterConfigsResponse,
        incremental_alter_configs_response::AlterConfigsResourceResponse,
        responses;
    offset_commit_answer:
        OffsetCommitResponse, offset_commit_response::OffsetCommitResponseTopic, topics;
    delete_groups_answer: DeleteGroupsResponse, DeletableGroupResult, results;
    offset_delete_answer:
        OffsetDeleteResponse, offset_delete_response::OffsetDeleteResponseTopic, topics;
}

/// Produce: WRITE on each topic; the partitions of refused topics are answered
/// TOPIC_AUTHORIZATION_FAILED (and nothing is appended).
pub(crate) fn produce(az: Authz<'_>, r: &mut ProduceRequest) -> Vec<TopicProduceResponse> {
    split_refused(&mut r.topic_data, |t| {
        topic_refused(az, Operation::Write, t.name.0.as_str(), || {
            let partition = |p: &PartitionProduceData| {
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_error_code(TOPIC_DENIED.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1)
            };
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(t.partition_data.iter().map(partition).collect())
        })
    })
}

/// CreateTopics: CREATE on the cluster, or else on each topic.
pub(crate) fn create_topics(
    az: Authz<'_>,
    r: &mut CreateTopicsRequest,
) -> Vec<CreatableTopicResult> {
    if !az.auth.enabled() || az.cluster(Operation::Create) {
        return Vec::new();
    }
    split_refused(&mut r.topics, |t| {
        topic_refused(az, Operation::Create, t.name.0.as_str(), || {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(TOPIC_DENIED.code())
                .with_error_message(Some(str("Authorization failed.")))
                .with_topic_config_error_code(TOPIC_DENIED.code())
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
    })
}

/// DeleteTopics: DELETE on each topic (named, or by id from v6).
pub(crate) fn delete_topics(
    inner: &Inner,
    az: Authz<'_>,
    r: &mut DeleteTopicsRequest,
) -> Vec<DeletableTopicResult> {
    let mut refused = split_refused(&mut r.topic_names, |n| {
        topic_refused(az, Operation::Delete, n.0.as_str(), || {
            DeletableTopicResult::default()
                .with_name(Some(n.clone()))
                .with_error_code(TOPIC_DENIED.code())
        })
    });
    refused.extend(split_refused(&mut r.topics, |t| {
        let name = match &t.name {
            Some(n) => Some(n.0.to_string()),
            None => inner.topics.get_by_id(t.topic_id).map(|t| t.name.clone()),
        };
        // An unknown id is left to the handler (UNKNOWN_TOPIC_ID): there is nothing to
        // protect and nothing to leak.
        topic_refused(az, Operation::Delete, name.as_deref()?, || {
            DeletableTopicResult::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_error_code(TOPIC_DENIED.code())
        })
    }));
    refused
}

/// CreatePartitions: ALTER on each topic.
pub(crate) fn create_partitions(
    az: Authz<'_>,
    r: &mut CreatePartitionsRequest,
) -> Vec<CreatePartitionsTopicResult> {
    split_refused(&mut r.topics, |t| {
        topic_refused(az, Operation::Alter, t.name.0.as_str(), || {
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(TOPIC_DENIED.code())
        })
    })
}

/// DeleteRecords: DELETE on each topic.
pub(crate) fn delete_records(
    az: Authz<'_>,
    r: &mut DeleteRecordsRequest,
) -> Vec<DeleteRecordsTopicResult> {
    split_refused(&mut r.topics, |t| {
        topic_refused(az, Operation::Delete, t.name.0.as_str(), || {
            let partition = |p: &DeleteRecordsPartition| {
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1)
                    .with_error_code(TOPIC_DENIED.code())
            };
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(t.partitions.iter().map(partition).collect())
        })
    })
}

/// AlterConfigs: ALTER_CONFIGS on each topic / the cluster.
pub(crate) fn alter_configs(
    az: Authz<'_>,
    r: &mut AlterConfigsRequest,
) -> Vec<alter_configs_response::AlterConfigsResourceResponse> {
    split_refused(&mut r.resources, |res| {
        let e = config_denied(
            az,
            Operation::AlterConfigs,
            res.resource_type,
            &res.resource_name,
        )?;
        Some(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(e.code())
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone()),
        )
    })
}

/// IncrementalAlterConfigs: ALTER_CONFIGS on each topic / the cluster.
pub(crate) fn incremental_alter_configs(
    az: Authz<'_>,
    r: &mut IncrementalAlterConfigsRequest,
) -> Vec<incremental_alter_configs_response::AlterConfigsResourceResponse> {
    use incremental_alter_configs_response::AlterConfigsResourceResponse;
    split_refused(&mut r.resources, |res| {
        let e = config_denied(
            az,
            Operation::AlterConfigs,
            res.resource_type,
            &res.resource_name,
        )?;
        Some(
            AlterConfigsResourceResponse::default()
                .with_error_code(e.code())
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone()),
        )
    })
}

/// FindCoordinator: DESCRIBE on the group (key type 0) or transactional id (1). Before v4
/// one key: `Err` is the whole answer; from v4 the refused keys' entries.
pub(crate) fn find_coordinator(
    az: Authz<'_>,
    r: &mut FindCoordinatorRequest,
    version: i16,
) -> Result<Vec<Coordinator>, Box<FindCoordinatorResponse>> {
    let key_type = r.key_type;
    let denied = |key: &str| -> Option<ResponseError> {
        match key_type {
            0 => (!az.group(Operation::Describe, key)).then_some(GROUP_DENIED),
            1 => (!az.allowed(
                Operation::Describe,
                weft_auth::ResourceType::TransactionalId,
                key,
            ))
            .then_some(ResponseError::TransactionalIdAuthorizationFailed),
            _ => None,
        }
    };
    if version < 4 {
        return match denied(r.key.as_str()) {
            Some(e) => Err(Box::new(
                FindCoordinatorResponse::default()
                    .with_error_code(e.code())
                    .with_node_id((-1).into())
                    .with_host(str(""))
                    .with_port(-1),
            )),
            None => Ok(Vec::new()),
        };
    }
    Ok(split_refused(&mut r.coordinator_keys, |k| {
        let e = denied(k.as_str())?;
        Some(
            Coordinator::default()
                .with_key(k.clone())
                .with_node_id((-1).into())
                .with_host(str(""))
                .with_port(-1)
                .with_error_code(e.code()),
        )
    }))
}

/// OffsetCommit: READ on the group (else every partition GROUP_AUTHORIZATION_FAILED), then
/// READ on each topic.
pub(crate) fn offset_commit(
    az: Authz<'_>,
    r: &mut OffsetCommitRequest,
) -> Vec<offset_commit_response::OffsetCommitResponseTopic> {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    let group_ok = az.group(Operation::Read, r.group_id.0.as_str());
    split_refused(&mut r.topics, |t| {
        let error = if !group_ok {
            GROUP_DENIED
        } else if !az.topic(Operation::Read, t.name.0.as_str()) {
            TOPIC_DENIED
        } else {
            return None;
        };
        let partition = |p: &OffsetCommitRequestPartition| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(error.code())
        };
        Some(
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(t.partitions.iter().map(partition).collect()),
        )
    })
}

/// Whether an OffsetCommit is left with nothing to do after [`offset_commit`] took every
/// topic out because the group is refused (the handler must not run: it would touch the
/// group).
pub(crate) fn group_read_denied(az: Authz<'_>, group: &str) -> bool {
    !az.group(Operation::Read, group)
}

/// DeleteGroups: DELETE on each group.
pub(crate) fn delete_groups(
    az: Authz<'_>,
    r: &mut DeleteGroupsRequest,
) -> Vec<DeletableGroupResult> {
    split_refused(&mut r.groups_names, |g| {
        (!az.group(Operation::Delete, g.0.as_str())).then(|| {
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(GROUP_DENIED.code())
        })
    })
}

/// OffsetDelete: DELETE on the group (`Err`: the whole answer), then READ on each topic.
pub(crate) fn offset_delete(
    az: Authz<'_>,
    r: &mut OffsetDeleteRequest,
) -> Result<Vec<offset_delete_response::OffsetDeleteResponseTopic>, OffsetDeleteResponse> {
    use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    if !az.group(Operation::Delete, r.group_id.0.as_str()) {
        return Err(OffsetDeleteResponse::default().with_error_code(GROUP_DENIED.code()));
    }
    Ok(split_refused(&mut r.topics, |t| {
        topic_refused(az, Operation::Read, t.name.0.as_str(), || {
            let partition = |p: &OffsetDeleteRequestPartition| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(TOPIC_DENIED.code())
            };
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(t.partitions.iter().map(partition).collect())
        })
    }))
}

/// ConsumerGroupHeartbeat: READ on the group, DESCRIBE on every subscribed topic named
/// (Kafka answers TOPIC_AUTHORIZATION_FAILED naming none of them); `Some` is the answer.
pub(crate) fn consumer_group_heartbeat(
    az: Authz<'_>,
    r: &kafka_protocol::messages::ConsumerGroupHeartbeatRequest,
) -> Option<kafka_protocol::messages::ConsumerGroupHeartbeatResponse> {
    let denied = |e: ResponseError, msg: &str| {
        Some(
            kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(str(msg))),
        )
    };
    if !az.group(Operation::Read, r.group_id.0.as_str()) {
        return denied(GROUP_DENIED, "Authorization failed.");
    }
    let unauthorized = r
        .subscribed_topic_names
        .iter()
        .flatten()
        .filter(|t| !az.topic(Operation::Describe, t.0.as_str()))
        .count();
    if unauthorized > 0 {
        return denied(
            TOPIC_DENIED,
            &format!("Unauthorized topics in the subscription: {unauthorized}"),
        );
    }
    None
}

// ---- masked: the handler answers, then what may not be described is hidden ----

/// ListOffsets: DESCRIBE on each topic.
pub(crate) fn mask_list_offsets(az: Authz<'_>, resp: &mut ListOffsetsResponse) {
    for t in &mut resp.topics {
        if az.topic(Operation::Describe, t.name.0.as_str()) {
            continue;
        }
        for p in &mut t.partitions {
            p.error_code = TOPIC_DENIED.code();
            p.timestamp = -1;
            p.offset = -1;
            p.leader_epoch = -1;
        }
    }
}

/// DescribeConfigs: DESCRIBE_CONFIGS on each topic / the cluster.
pub(crate) fn mask_describe_configs(az: Authz<'_>, resp: &mut DescribeConfigsResponse) {
    for res in &mut resp.results {
        if let Some(e) = config_denied(
            az,
            Operation::DescribeConfigs,
            res.resource_type,
            res.resource_name.as_str(),
        ) {
            res.error_code = e.code();
            res.error_message = Some(str("Authorization failed."));
            res.configs.clear();
        }
    }
}

/// OffsetFetch: DESCRIBE on the group(s); topics without DESCRIBE are answered
/// TOPIC_AUTHORIZATION_FAILED when named and left out when the request asked for all.
pub(crate) fn mask_offset_fetch(
    az: Authz<'_>,
    req: &OffsetFetchRequest,
    resp: &mut OffsetFetchResponse,
    version: i16,
) {
    if version < 8 {
        if !az.group(Operation::Describe, req.group_id.0.as_str()) {
            resp.topics.clear();
            resp.error_code = GROUP_DENIED.code();
            return;
        }
        let all = req.topics.is_none();
        resp.topics.retain_mut(|t| {
            if az.topic(Operation::Describe, t.name.0.as_str()) {
                return true;
            }
            for p in &mut t.partitions {
                p.error_code = TOPIC_DENIED.code();
                p.committed_offset = -1;
                p.metadata = None;
            }
            !all
        });
        return;
    }
    for g in &mut resp.groups {
        if !az.group(Operation::Describe, g.group_id.0.as_str()) {
            g.topics.clear();
            g.error_code = GROUP_DENIED.code();
            continue;
        }
        let all = req
            .groups
            .iter()
            .find(|rg| rg.group_id == g.group_id)
            .is_none_or(|rg| rg.topics.is_none());
        g.topics.retain_mut(|t| {
            if az.topic(Operation::Describe, t.name.0.as_str()) {
                return true;
            }
            for p in &mut t.partitions {
                p.error_code = TOPIC_DENIED.code();
                p.committed_offset = -1;
                p.metadata = None;
            }
            !all
        });
    }
}

/// ListGroups: everything with DESCRIBE on the cluster, else the groups with DESCRIBE.
pub(crate) fn mask_list_groups(az: Authz<'_>, resp: &mut ListGroupsResponse) {
    if !az.auth.enabled() || az.cluster(Operation::Describe) {
        return;
    }
    resp.groups
        .retain(|g| az.group(Operation::Describe, g.group_id.0.as_str()));
}

/// DescribeGroups: DESCRIBE on each group.
pub(crate) fn mask_describe_groups(az: Authz<'_>, resp: &mut DescribeGroupsResponse) {
    for g in &mut resp.groups {
        if !az.group(Operation::Describe, g.group_id.0.as_str()) {
            let id = g.group_id.clone();
            *g = kafka_protocol::messages::describe_groups_response::DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(GROUP_DENIED.code())
                .with_group_state(str(""))
                .with_protocol_type(str(""))
                .with_protocol_data(str(""));
        }
    }
}

/// ConsumerGroupDescribe: DESCRIBE on each group.
pub(crate) fn mask_consumer_group_describe(
    az: Authz<'_>,
    resp: &mut ConsumerGroupDescribeResponse,
) {
    for g in &mut resp.groups {
        if !az.group(Operation::Describe, g.group_id.0.as_str()) {
            let id = g.group_id.clone();
            *g = kafka_protocol::messages::consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(GROUP_DENIED.code());
        }
    }
}

#[cfg(test)]
mod tests {
    //! The decision table per API: which resources a request keeps and which are answered
    //! with which error, for a principal holding exactly the ACLs of each case.

    use super::*;
    use crate::authz::Authorization;
    use crate::authz::tests::{acl, authorization, session};
    use kafka_protocol::messages::{GroupId, TopicName};
    use weft_auth::{Permission, ResourcePattern, ResourceType};

    const ME: &str = "User:alice";

    fn allow(rt: ResourceType, name: &str, op: Operation) -> weft_auth::AclBinding {
        acl(
            ResourcePattern::literal(rt, name),
            ME,
            op,
            Permission::Allow,
        )
    }

    fn topic(n: &str) -> TopicName {
        TopicName(str(n))
    }

    /// Runs `f` with an enabled authoriser holding `acls` for `User:alice`.
    fn with<T>(acls: Vec<weft_auth::AclBinding>, f: impl FnOnce(Authz<'_>) -> T) -> T {
        let auth = authorization(acls, &[]);
        let s = session(ME);
        f(Authz::new(&auth, &s))
    }

    #[test]
    fn produce_needs_write_per_topic() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let req = || {
            ProduceRequest::default().with_topic_data(
                ["ok", "ro", "none"]
                    .iter()
                    .map(|n| {
                        TopicProduceData::default()
                            .with_name(topic(n))
                            .with_partition_data(vec![
                                PartitionProduceData::default().with_index(0),
                                PartitionProduceData::default().with_index(1),
                            ])
                    })
                    .collect(),
            )
        };
        let acls = vec![
            allow(ResourceType::Topic, "ok", Operation::Write),
            // READ (and the DESCRIBE it implies) does not grant WRITE.
            allow(ResourceType::Topic, "ro", Operation::Read),
        ];
        let (kept, refused) = with(acls, |az| {
            let mut r = req();
            let refused = produce(az, &mut r);
            (r, refused)
        });
        let names: Vec<_> = kept
            .topic_data
            .iter()
            .map(|t| t.name.0.to_string())
            .collect();
        assert_eq!(names, ["ok"]);
        let refused: Vec<_> = refused
            .iter()
            .map(|t| {
                let codes: Vec<_> = t
                    .partition_responses
                    .iter()
                    .map(|p| (p.index, p.error_code))
                    .collect();
                (t.name.0.to_string(), codes)
            })
            .collect();
        let code = TOPIC_DENIED.code();
        assert_eq!(
            refused,
            [
                ("ro".to_owned(), vec![(0, code), (1, code)]),
                ("none".to_owned(), vec![(0, code), (1, code)])
            ]
        );
        // Authorisation off: nothing refused.
        let auth = Authorization::disabled();
        let s = session(ME);
        let mut r = req();
        assert!(produce(Authz::new(&auth, &s), &mut r).is_empty());
        assert_eq!(r.topic_data.len(), 3);
    }

    #[test]
    fn topic_admin_gates() {
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        use kafka_protocol::messages::delete_records_request::DeleteRecordsTopic;
        let acls = vec![
            allow(ResourceType::Topic, "ok", Operation::All),
            allow(ResourceType::Topic, "ro", Operation::Read),
        ];
        with(acls.clone(), |az| {
            let mut r = CreateTopicsRequest::default().with_topics(
                ["ok", "ro"]
                    .iter()
                    .map(|n| CreatableTopic::default().with_name(topic(n)))
                    .collect(),
            );
            let refused = create_topics(az, &mut r);
            assert_eq!(r.topics.len(), 1);
            assert_eq!(r.topics[0].name.0.as_str(), "ok");
            assert_eq!(refused.len(), 1);
            assert_eq!(
                (refused[0].name.0.as_str(), refused[0].error_code),
                ("ro", TOPIC_DENIED.code())
            );

            let mut r = CreatePartitionsRequest::default().with_topics(
                ["ok", "ro"]
                    .iter()
                    .map(|n| CreatePartitionsTopic::default().with_name(topic(n)))
                    .collect(),
            );
            let refused = create_partitions(az, &mut r);
            assert_eq!(r.topics.len(), 1);
            assert_eq!(refused[0].name.0.as_str(), "ro");

            let mut r = DeleteRecordsRequest::default().with_topics(
                ["ok", "ro"]
                    .iter()
                    .map(|n| DeleteRecordsTopic::default().with_name(topic(n)))
                    .collect(),
            );
            let refused = delete_records(az, &mut r);
            assert_eq!(r.topics.len(), 1);
            assert_eq!(refused[0].name.0.as_str(), "ro");
        });
        // CREATE on the cluster creates any topic.
        let mut cluster = acls;
        cluster.push(allow(
            ResourceType::Cluster,
            "kafka-cluster",
            Operation::Create,
        ));
        with(cluster, |az| {
            let mut r = CreateTopicsRequest::default().with_topics(
                ["ok", "ro", "new"]
                    .iter()
                    .map(|n| CreatableTopic::default().with_name(topic(n)))
                    .collect(),
            );
            assert!(create_topics(az, &mut r).is_empty());
            assert_eq!(r.topics.len(), 3);
        });
    }

    #[test]
    fn configs_by_resource_type() {
        use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
        let req = || {
            AlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(CONFIG_TOPIC)
                    .with_resource_name(str("ok")),
                AlterConfigsResource::default()
                    .with_resource_type(CONFIG_TOPIC)
                    .with_resource_name(str("ro")),
                AlterConfigsResource::default()
                    .with_resource_type(CONFIG_BROKER)
                    .with_resource_name(str("1")),
            ])
        };
        let acls = vec![
            allow(ResourceType::Topic, "ok", Operation::AlterConfigs),
            allow(ResourceType::Topic, "ro", Operation::DescribeConfigs),
        ];
        let (r, refused) = with(acls, |az| {
            let mut r = req();
            let refused = alter_configs(az, &mut r);
            (r, refused)
        });
        assert_eq!(r.resources.len(), 1);
        let refused: Vec<_> = refused
            .iter()
            .map(|x| (x.resource_name.to_string(), x.error_code))
            .collect();
        assert_eq!(
            refused,
            [
                ("ro".to_owned(), TOPIC_DENIED.code()),
                ("1".to_owned(), CLUSTER_DENIED.code())
            ]
        );
        // DescribeConfigs: ALTER_CONFIGS implies DESCRIBE_CONFIGS; nothing leaks when denied.
        use kafka_protocol::messages::describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult,
        };
        let mut resp = DescribeConfigsResponse::default().with_results(
            ["ok", "none"]
                .iter()
                .map(|n| {
                    DescribeConfigsResult::default()
                        .with_resource_type(CONFIG_TOPIC)
                        .with_resource_name(str(*n))
                        .with_configs(vec![
                            DescribeConfigsResourceResult::default().with_name(str("retention.ms")),
                        ])
                })
                .collect(),
        );
        with(
            vec![allow(ResourceType::Topic, "ok", Operation::AlterConfigs)],
            |az| mask_describe_configs(az, &mut resp),
        );
        assert_eq!(
            (resp.results[0].error_code, resp.results[0].configs.len()),
            (0, 1)
        );
        assert_eq!(
            (resp.results[1].error_code, resp.results[1].configs.len()),
            (TOPIC_DENIED.code(), 0)
        );
    }

    #[test]
    fn groups_and_commits() {
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        let commit = |group: &str| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(str(group)))
                .with_topics(
                    ["ok", "wo"]
                        .iter()
                        .map(|n| {
                            OffsetCommitRequestTopic::default()
                                .with_name(topic(n))
                                .with_partitions(vec![OffsetCommitRequestPartition::default()])
                        })
                        .collect(),
                )
        };
        let acls = vec![
            allow(ResourceType::Group, "g", Operation::Read),
            allow(ResourceType::Group, "d", Operation::Describe),
            allow(ResourceType::Topic, "ok", Operation::Read),
            allow(ResourceType::Topic, "wo", Operation::Write),
        ];
        with(acls, |az| {
            // Group allowed: the topic without READ is refused.
            let mut r = commit("g");
            let refused = offset_commit(az, &mut r);
            assert!(!group_read_denied(az, "g"));
            assert_eq!(r.topics.len(), 1);
            assert_eq!(refused[0].name.0.as_str(), "wo");
            assert_eq!(refused[0].partitions[0].error_code, TOPIC_DENIED.code());
            // DESCRIBE on the group is not READ: every partition GROUP_AUTHORIZATION_FAILED.
            let mut r = commit("d");
            let refused = offset_commit(az, &mut r);
            assert!(group_read_denied(az, "d"));
            assert!(r.topics.is_empty());
            assert!(
                refused
                    .iter()
                    .all(|t| t.partitions[0].error_code == GROUP_DENIED.code())
            );
            // FindCoordinator: DESCRIBE is enough (implied by READ).
            for (key, want) in [("g", None), ("d", None), ("x", Some(GROUP_DENIED.code()))] {
                let mut r = FindCoordinatorRequest::default().with_key(str(key));
                let got = find_coordinator(az, &mut r, 3).err().map(|e| e.error_code);
                assert_eq!(got, want, "{key}");
            }
            let mut r =
                FindCoordinatorRequest::default().with_coordinator_keys(vec![str("g"), str("x")]);
            let refused = find_coordinator(az, &mut r, 4).unwrap_or_default();
            assert_eq!(r.coordinator_keys, vec![str("g")]);
            assert_eq!(refused[0].key.as_str(), "x");
            // DeleteGroups needs DELETE.
            let mut r = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str("g"))]);
            let refused = delete_groups(az, &mut r);
            assert!(r.groups_names.is_empty());
            assert_eq!(refused[0].error_code, GROUP_DENIED.code());
            // ListGroups without DESCRIBE on the cluster: only describable groups.
            use kafka_protocol::messages::list_groups_response::ListedGroup;
            let mut resp = ListGroupsResponse::default().with_groups(
                ["g", "d", "x"]
                    .iter()
                    .map(|g| ListedGroup::default().with_group_id(GroupId(str(*g))))
                    .collect(),
            );
            mask_list_groups(az, &mut resp);
            let listed: Vec<_> = resp
                .groups
                .iter()
                .map(|g| g.group_id.0.to_string())
                .collect();
            assert_eq!(listed, ["g", "d"]);
        });
    }

    #[test]
    fn list_offsets_and_offset_fetch_hide_undescribable_topics() {
        use kafka_protocol::messages::list_offsets_response::{
            ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
        };
        use kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponsePartition, OffsetFetchResponseTopic,
        };
        let acls = vec![
            allow(ResourceType::Topic, "ok", Operation::Write),
            allow(ResourceType::Group, "g", Operation::Read),
        ];
        with(acls, |az| {
            let mut resp = ListOffsetsResponse::default().with_topics(
                ["ok", "no"]
                    .iter()
                    .map(|n| {
                        ListOffsetsTopicResponse::default()
                            .with_name(topic(n))
                            .with_partitions(vec![
                                ListOffsetsPartitionResponse::default().with_offset(42),
                            ])
                    })
                    .collect(),
            );
            mask_list_offsets(az, &mut resp);
            assert_eq!(
                (
                    resp.topics[0].partitions[0].error_code,
                    resp.topics[0].partitions[0].offset
                ),
                (0, 42)
            );
            assert_eq!(
                (
                    resp.topics[1].partitions[0].error_code,
                    resp.topics[1].partitions[0].offset
                ),
                (TOPIC_DENIED.code(), -1)
            );
            let fetched = || {
                OffsetFetchResponse::default().with_topics(
                    ["ok", "no"]
                        .iter()
                        .map(|n| {
                            OffsetFetchResponseTopic::default()
                                .with_name(topic(n))
                                .with_partitions(vec![
                                    OffsetFetchResponsePartition::default()
                                        .with_committed_offset(7),
                                ])
                        })
                        .collect(),
                )
            };
            // All topics asked for: the undescribable one is left out.
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(str("g")))
                .with_topics(None);
            let mut resp = fetched();
            mask_offset_fetch(az, &req, &mut resp, 7);
            assert_eq!(resp.topics.len(), 1);
            // Named: answered TOPIC_AUTHORIZATION_FAILED.
            let req = req.with_topics(Some(vec![]));
            let mut resp = fetched();
            mask_offset_fetch(az, &req, &mut resp, 7);
            assert_eq!(resp.topics[1].partitions[0].error_code, TOPIC_DENIED.code());
            assert_eq!(resp.topics[1].partitions[0].committed_offset, -1);
            // A group without DESCRIBE: nothing but the error.
            let req = OffsetFetchRequest::default().with_group_id(GroupId(str("other")));
            let mut resp = fetched();
            mask_offset_fetch(az, &req, &mut resp, 7);
            assert!(resp.topics.is_empty());
            assert_eq!(resp.error_code, GROUP_DENIED.code());
        });
    }
}
