//! Metadata, DescribeCluster, DescribeTopicPartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use tracing::{info, warn};
use uuid::Uuid;

use weft_auth::Operation;

use super::str;
use crate::authz::Authz;
use crate::server::{Inner, blocking};
use crate::topics::{Topic, validate_name};

fn node(inner: &Inner) -> BrokerId {
    BrokerId(inner.config.node_id)
}

fn metadata_topic(inner: &Inner, t: &Topic) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node(inner))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node(inner)])
                .with_isr_nodes(vec![node(inner)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str(&t.name))))
        .with_topic_id(t.id)
        .with_is_internal(t.name == crate::group::offsets::TOPIC)
        .with_partitions(partitions)
}

fn topic_error(name: Option<&str>, id: Uuid, e: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(e.code())
        .with_name(name.map(|n| TopicName(str(n))))
        .with_topic_id(id)
}

/// Authorisation (Kafka's): DESCRIBE on each topic. Asked for all topics, the unauthorised
/// ones are left out; named, they are answered TOPIC_AUTHORIZATION_FAILED whether or not
/// they exist. Auto-creating a named topic needs CREATE on the cluster or on the topic.
pub(crate) async fn metadata(
    inner: &Arc<Inner>,
    az: Authz<'_>,
    r: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(node(inner))
            .with_host(str(&inner.config.advertised_host))
            .with_port(i32::from(inner.config.advertised_port)),
    ];
    // v0: an empty list means all topics; v1+: null means all.
    let requested = match r.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    // Before v4 clients cannot say no, and Kafka creates.
    let allow_create =
        (version < 4 || r.allow_auto_topic_creation) && inner.config.auto_create_topics;
    let topics = match requested {
        None => inner
            .topics
            .all()
            .iter()
            .filter(|t| az.topic(Operation::Describe, &t.name))
            .map(|t| metadata_topic(inner, t))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for rt in list {
                let Some(name) = rt.name.as_ref().map(|n| n.0.to_string()) else {
                    out.push(match inner.topics.get_by_id(rt.topic_id) {
                        Some(t) if !az.topic(Operation::Describe, &t.name) => {
                            topic_error(None, rt.topic_id, ResponseError::TopicAuthorizationFailed)
                        }
                        Some(t) => metadata_topic(inner, &t),
                        None => topic_error(None, rt.topic_id, ResponseError::UnknownTopicId),
                    });
                    continue;
                };
                if !az.topic(Operation::Describe, &name) {
                    out.push(topic_error(
                        Some(&name),
                        Uuid::nil(),
                        ResponseError::TopicAuthorizationFailed,
                    ));
                    continue;
                }
                if let Some(t) = inner.topics.get(&name) {
                    out.push(metadata_topic(inner, &t));
                    continue;
                }
                if let Err(reason) = validate_name(&name) {
                    info!(topic = name, reason, "metadata for an invalid topic name");
                    out.push(topic_error(
                        Some(&name),
                        Uuid::nil(),
                        ResponseError::InvalidTopicException,
                    ));
                    continue;
                }
                if !allow_create {
                    out.push(topic_error(
                        Some(&name),
                        Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition,
                    ));
                    continue;
                }
                if !az.cluster(Operation::Create) && !az.topic(Operation::Create, &name) {
                    out.push(topic_error(
                        Some(&name),
                        Uuid::nil(),
                        ResponseError::TopicAuthorizationFailed,
                    ));
                    continue;
                }
                let i = Arc::clone(inner);
                let n = name.clone();
                let partitions = inner.config.num_partitions.max(1);
                let created =
                    blocking(move || i.topics.create(&n, partitions, BTreeMap::new(), false)).await;
                match created {
                    Ok(Ok(t)) => {
                        info!(topic = name, partitions, "topic auto-created");
                        out.push(metadata_topic(inner, &t));
                    }
                    Ok(Err(refusal)) if refusal.error == ResponseError::TopicAlreadyExists => {
                        match inner.topics.get(&name) {
                            Some(t) => out.push(metadata_topic(inner, &t)),
                            None => out.push(topic_error(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::LeaderNotAvailable,
                            )),
                        }
                    }
                    Ok(Err(refusal)) => {
                        warn!(topic = name, error = refusal.message, "auto-create failed");
                        out.push(topic_error(Some(&name), Uuid::nil(), refusal.error));
                    }
                    Err(e) => {
                        warn!(topic = name, error = %e, "auto-create failed");
                        out.push(topic_error(
                            Some(&name),
                            Uuid::nil(),
                            ResponseError::UnknownServerError,
                        ));
                    }
                }
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str(&inner.cluster_id)))
        .with_controller_id(node(inner))
        .with_topics(topics)
}

pub(crate) fn describe_cluster(
    inner: &Inner,
    r: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(str(&inner.cluster_id))
        .with_controller_id(node(inner))
        .with_endpoint_type(r.endpoint_type);
    // endpoint_type 1 = brokers; 2 = controllers, which this single node does not expose.
    if r.endpoint_type != 1 {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str("only broker endpoints are served")));
    }
    resp.with_brokers(vec![
        DescribeClusterBroker::default()
            .with_broker_id(node(inner))
            .with_host(str(&inner.config.advertised_host))
            .with_port(i32::from(inner.config.advertised_port)),
    ])
}

/// Authorisation: DESCRIBE on each topic; left out of "all topics", TOPIC_AUTHORIZATION_FAILED
/// when named.
pub(crate) fn describe_topic_partitions(
    inner: &Inner,
    az: Authz<'_>,
    r: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let mut remaining = r.response_partition_limit.max(1) as usize;
    let (cursor_topic, cursor_partition) = match &r.cursor {
        Some(c) => (
            Some(c.topic_name.0.to_string()),
            c.partition_index.max(0) as usize,
        ),
        None => (None, 0),
    };
    // Requested names (sorted, as Kafka pages through them) or all topics.
    let mut names: Vec<String> = if r.topics.is_empty() {
        inner
            .topics
            .all()
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| az.topic(Operation::Describe, n))
            .collect()
    } else {
        r.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if cursor_topic.as_ref().is_some_and(|c| name < *c) {
            continue;
        }
        if !az.topic(Operation::Describe, &name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_name(Some(TopicName(str(&name)))),
            );
            continue;
        }
        let Some(t) = inner.topics.get(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(str(&name)))),
            );
            continue;
        };
        if remaining == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str(&name)))
                    .with_partition_index(0),
            );
            break;
        }
        let first = if cursor_topic.as_deref() == Some(name.as_str()) {
            cursor_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for p in first..t.partitions.len() {
            if remaining == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(str(&name)))
                        .with_partition_index(p as i32),
                );
                break;
            }
            remaining -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p as i32)
                    .with_leader_id(node(inner))
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![node(inner)])
                    .with_isr_nodes(vec![node(inner)])
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![])),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str(&name))))
                .with_topic_id(t.id)
                .with_partitions(partitions),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
