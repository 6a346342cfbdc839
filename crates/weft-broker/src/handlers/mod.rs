//! One handler per API: decoded request in, response out.

mod admin;
mod configs;
mod consumer_groups;
mod fetch;
pub(crate) mod groups;
mod metadata;
mod produce;

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse, RequestHeader, RequestKind,
    ResponseKind, api_versions_response::ApiVersion,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, warn};

use crate::server::{Close, Inner, blocking};
use crate::topics::lock;
use crate::versions;

pub(crate) fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A handler's answer: ready now, or later (after the connection's next requests are read).
pub(crate) enum Reply {
    Now(Box<ResponseKind>),
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = ResponseKind> + Send>>),
    /// No answer: the request is abusive and the connection is closed.
    Close(Close),
    /// A Fetch response whose listed partitions' records are sent from the segment files.
    Fetch(
        Box<kafka_protocol::messages::FetchResponse>,
        Vec<crate::fetch_wire::Region>,
    ),
}

pub(crate) async fn handle(
    inner: &Arc<Inner>,
    _session: &crate::session::Session,
    header: &RequestHeader,
    req: RequestKind,
) -> Option<Reply> {
    let version = header.request_api_version;
    Some(Reply::Now(Box::new(match req {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions_response(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(inner, r, version).await)
        }
        RequestKind::Produce(r) => {
            let pending = match produce::produce(inner, r).await {
                Ok(pending) => pending?,
                Err(close) => return Some(Reply::Close(close)),
            };
            return Some(Reply::Later(Box::pin(async move {
                ResponseKind::Produce(pending.await)
            })));
        }
        RequestKind::Fetch(r) => {
            let (response, regions) = fetch::fetch(inner, r).await;
            if !regions.is_empty() {
                return Some(Reply::Fetch(Box::new(response), regions));
            }
            ResponseKind::Fetch(response)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(fetch::list_offsets(inner, r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id(inner, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(inner, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(consumer_groups::delete_topics(inner, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(inner, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(consumer_groups::delete_records(inner, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(inner, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(admin::describe_log_dirs(inner, r))
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(metadata::describe_topic_partitions(inner, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(inner, r, version))
        }
        RequestKind::JoinGroup(r) => return Some(groups::join_group(inner, header, r, version)),
        RequestKind::SyncGroup(r) => return Some(groups::sync_group(inner, r, version)),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(inner, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(inner, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(consumer_groups::offset_commit(inner, r, version).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(consumer_groups::offset_fetch(inner, r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(consumer_groups::list_groups(inner, r, version))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(consumer_groups::describe_groups(inner, r, version))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(inner, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(inner, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_groups::consumer_group_heartbeat(inner, header, r),
        ),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_groups::consumer_group_describe(inner, r))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe_configs(inner, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::alter_configs(inner, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(inner, r).await,
        ),
        other => {
            // Unreachable through the version table; answered by closing in the server.
            warn!(request = ?std::mem::discriminant(&other), "request kind without a handler");
            return None;
        }
    })))
}

pub(crate) fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = versions::advertised_versions()
        .into_iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

/// InitProducerId without a transactional id. With producer id and epoch -1 a new id is
/// allocated. With both set (KIP-360: a producer asking for an epoch bump) the epoch is
/// bumped only for an id this broker allocated whose current epoch is the one sent;
/// anything else is INVALID_PRODUCER_EPOCH, so one client cannot fence another's id. A
/// bump of an id whose state this broker no longer knows (after a restart, before it
/// wrote) or whose epoch is exhausted gets a fresh id, as Kafka answers non-transactional
/// producers.
async fn init_producer_id(inner: &Arc<Inner>, r: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default();
    if r.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
        warn!("InitProducerId with a transactional id: transactions are not supported yet");
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    if (pid == -1) != (epoch == -1) || pid < -1 || epoch < -1 {
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    let i = Arc::clone(inner);
    let answer = blocking(move || {
        // Read before taking the allocator lock: produce never takes it, so the order of
        // locks cannot invert.
        let written = (pid >= 0).then(|| i.topics.producer_epoch(pid)).flatten();
        let mut ids = lock(&i.producer_ids);
        if pid >= 0 {
            if !ids.allocated(pid) {
                return Ok(Err(ResponseError::InvalidProducerEpoch));
            }
            match ids.epoch(pid).max(written) {
                Some(current) if current != epoch => {
                    return Ok(Err(ResponseError::InvalidProducerEpoch));
                }
                Some(current) if current < i16::MAX - 1 => {
                    ids.note_epoch(pid, current + 1);
                    return Ok(Ok((pid, current + 1)));
                }
                _ => {}
            }
        }
        ids.allocate().map(|id| Ok((id, 0)))
    })
    .await;
    match answer {
        Ok(Ok(Ok((id, epoch)))) => resp.with_producer_id(id.into()).with_producer_epoch(epoch),
        Ok(Ok(Err(code))) => {
            debug!(producer_id = pid, epoch, error = ?code, "epoch bump refused");
            resp.with_error_code(code.code())
        }
        Ok(Err(e)) => {
            warn!(error = %e, "allocating a producer id failed");
            resp.with_error_code(ResponseError::KafkaStorageError.code())
        }
        Err(e) => {
            warn!(error = %e, "allocating a producer id failed");
            resp.with_error_code(ResponseError::UnknownServerError.code())
        }
    }
}
