//! CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords, DescribeLogDirs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use tracing::warn;
use uuid::Uuid;

use super::str;
use crate::codes;
use crate::server::{Inner, blocking};
use crate::topic_config;

pub(crate) async fn create_topics(
    inner: &Arc<Inner>,
    r: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let fail = |e: ResponseError, m: String| {
            result
                .clone()
                .with_error_code(e.code())
                .with_error_message(Some(str(m)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        };
        if t.replication_factor > 1 {
            results.push(fail(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {} is larger than the 1 available broker",
                    t.replication_factor
                ),
            ));
            continue;
        }
        if !t.assignments.is_empty() {
            results.push(fail(
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignment is not supported".into(),
            ));
            continue;
        }
        let partitions = if t.num_partitions == -1 {
            inner.config.num_partitions
        } else {
            t.num_partitions
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let i = Arc::clone(inner);
        let validate_only = r.validate_only;
        let created =
            blocking(move || i.topics.create(&name, partitions, configs, validate_only)).await;
        results.push(match created {
            Ok(Ok(topic)) => {
                let mut res = result
                    .with_topic_id(topic.id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1);
                if version >= 5 {
                    let effective = topic_config::effective(inner.log.defaults(), &topic.configs);
                    let configs = topic_config::CONFIGS
                        .iter()
                        .map(|d| {
                            let stored = topic.configs.get(d.name);
                            let overridden = stored.is_some();
                            let value = match stored {
                                Some(v) => topic_config::shown(d, &effective, v),
                                None => d.render(&effective),
                            };
                            CreatableTopicConfigs::default()
                                .with_name(str(d.name))
                                .with_value(Some(str(value)))
                                .with_config_source(if overridden {
                                    topic_config::SOURCE_DYNAMIC_TOPIC
                                } else {
                                    topic_config::SOURCE_DEFAULT
                                })
                        })
                        .collect();
                    res = res.with_configs(Some(configs));
                }
                res
            }
            Ok(Err(refusal)) => fail(refusal.error, refusal.message),
            Err(e) => fail(ResponseError::UnknownServerError, e.to_string()),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(crate) async fn delete_topics(
    inner: &Arc<Inner>,
    r: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v0–v5 list names; v6 lists (name or id) pairs.
    let mut targets: Vec<(Option<String>, Uuid)> = r
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    targets.extend(
        r.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = match name {
            Some(n) => Some(n),
            None => inner.topics.get_by_id(id).map(|t| t.name.clone()),
        };
        let res = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(str(n))))
            .with_topic_id(id);
        let Some(name) = name else {
            responses.push(res.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let i = Arc::clone(inner);
        responses.push(match blocking(move || i.topics.delete(&name)).await {
            Ok(Ok(t)) => res.with_topic_id(t.id),
            Ok(Err(refusal)) => res
                .with_error_code(refusal.error.code())
                .with_error_message(Some(str(refusal.message))),
            Err(e) => res
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(str(e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) async fn create_partitions(
    inner: &Arc<Inner>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            results.push(
                res.with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(str("manual replica assignment is not supported"))),
            );
            continue;
        }
        let i = Arc::clone(inner);
        let name = t.name.0.to_string();
        let (count, validate_only) = (t.count, r.validate_only);
        results.push(
            match blocking(move || i.topics.add_partitions(&name, count, validate_only)).await {
                Ok(Ok(())) => res,
                Ok(Err(refusal)) => res
                    .with_error_code(refusal.error.code())
                    .with_error_message(Some(str(refusal.message))),
                Err(e) => res
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(str(e.to_string()))),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(crate) async fn delete_records(
    inner: &Arc<Inner>,
    r: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let work: Vec<_> = r
        .topics
        .into_iter()
        .map(|t| {
            let parts: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        inner.topics.partition(t.name.0.as_str(), p.partition_index),
                        p.offset,
                    )
                })
                .collect();
            (t.name, parts)
        })
        .collect();
    let topics = blocking(move || {
        work.into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(idx, h, offset)| {
                        let res = DeleteRecordsPartitionResult::default().with_partition_index(idx).with_low_watermark(-1);
                        let Some(h) = h else {
                            return res.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        // -1: up to the high watermark.
                        let target = if offset == -1 { h.log.log_end_offset() } else {
                            match u64::try_from(offset) {
                                Ok(o) => o,
                                Err(_) => return res.with_error_code(ResponseError::OffsetOutOfRange.code()),
                            }
                        };
                        match h.log.delete_records_before(target) {
                            Ok(low) => {
                                crate::topics::lock(&h.producers).truncate_below(low);
                                res.with_low_watermark(low as i64)
                            }
                            Err(e) => {
                                let code = codes::read_error(&e);
                                if code == ResponseError::KafkaStorageError {
                                    warn!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "delete records failed");
                                }
                                res.with_error_code(code.code())
                            }
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default().with_name(name).with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    DeleteRecordsResponse::default().with_topics(topics)
}

pub(crate) fn describe_log_dirs(
    inner: &Inner,
    r: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics = Vec::new();
    for t in inner.topics.all() {
        let filter = match &wanted {
            None => None,
            Some(w) => match w.get(&t.name) {
                Some(ps) => Some(ps),
                None => continue,
            },
        };
        let partitions = t
            .partitions
            .iter()
            .filter(|h| filter.is_none_or(|ps| ps.contains(&h.tp.partition)))
            .map(|h| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(h.tp.partition)
                    .with_partition_size(h.log.size_bytes() as i64)
                    .with_offset_lag(0)
            })
            .collect();
        topics.push(
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str(&t.name)))
                .with_partitions(partitions),
        );
    }
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str(inner.log.root().display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    DescribeLogDirsResponse::default().with_results(vec![result])
}
