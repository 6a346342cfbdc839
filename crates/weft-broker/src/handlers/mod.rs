//! One handler per API: decoded request in, response out.

mod acls;
mod admin;
mod authorize;
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

use weft_auth::Operation;

use crate::authz::Authz;
use crate::server::{Close, Inner, blocking};
use crate::topics::lock;
use crate::versions;

const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;

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
    session: &crate::session::Session,
    header: &RequestHeader,
    req: RequestKind,
) -> Option<Reply> {
    let version = header.request_api_version;
    let az = Authz::new(&inner.config.authorization, session);
    Some(Reply::Now(Box::new(match req {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions_response(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(inner, az, r, version).await)
        }
        RequestKind::Produce(mut r) => {
            let refused = authorize::produce(az, &mut r);
            let pending = match produce::produce(inner, r).await {
                Ok(pending) => pending?,
                Err(close) => return Some(Reply::Close(close)),
            };
            return Some(Reply::Later(Box::pin(async move {
                ResponseKind::Produce(authorize::produce_answer(pending.await, refused))
            })));
        }
        RequestKind::Fetch(r) => {
            let (response, regions) = fetch::fetch(inner, az, r).await;
            if !regions.is_empty() {
                return Some(Reply::Fetch(Box::new(response), regions));
            }
            ResponseKind::Fetch(response)
        }
        RequestKind::ListOffsets(r) => {
            let mut resp = fetch::list_offsets(inner, r, version).await;
            authorize::mask_list_offsets(az, &mut resp);
            ResponseKind::ListOffsets(resp)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id(inner, az, r).await)
        }
        RequestKind::CreateTopics(mut r) => {
            let refused = authorize::create_topics(az, &mut r);
            let resp = admin::create_topics(inner, r, version).await;
            ResponseKind::CreateTopics(authorize::create_topics_answer(resp, refused))
        }
        RequestKind::DeleteTopics(mut r) => {
            let refused = authorize::delete_topics(inner, az, &mut r);
            let resp = consumer_groups::delete_topics(inner, r).await;
            ResponseKind::DeleteTopics(authorize::delete_topics_answer(resp, refused))
        }
        RequestKind::CreatePartitions(mut r) => {
            let refused = authorize::create_partitions(az, &mut r);
            let resp = admin::create_partitions(inner, r).await;
            ResponseKind::CreatePartitions(authorize::create_partitions_answer(resp, refused))
        }
        RequestKind::DeleteRecords(mut r) => {
            let refused = authorize::delete_records(az, &mut r);
            let resp = consumer_groups::delete_records(inner, r).await;
            ResponseKind::DeleteRecords(authorize::delete_records_answer(resp, refused))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(inner, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            if !az.cluster(Operation::Describe) {
                ResponseKind::DescribeLogDirs(
                    kafka_protocol::messages::DescribeLogDirsResponse::default()
                        .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
                )
            } else {
                ResponseKind::DescribeLogDirs(admin::describe_log_dirs(inner, r))
            }
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(metadata::describe_topic_partitions(inner, az, r))
        }
        RequestKind::FindCoordinator(mut r) => {
            match authorize::find_coordinator(az, &mut r, version) {
                Err(denied) => ResponseKind::FindCoordinator(*denied),
                Ok(refused) => {
                    let mut resp = groups::find_coordinator(inner, r, version);
                    resp.coordinators.extend(refused);
                    ResponseKind::FindCoordinator(resp)
                }
            }
        }
        RequestKind::JoinGroup(r) => {
            if !az.group(Operation::Read, r.group_id.0.as_str()) {
                return Some(Reply::Now(Box::new(ResponseKind::JoinGroup(
                    kafka_protocol::messages::JoinGroupResponse::default()
                        .with_error_code(GROUP_DENIED.code())
                        .with_generation_id(-1)
                        .with_member_id(str("")),
                ))));
            }
            return Some(groups::join_group(inner, header, r, version));
        }
        RequestKind::SyncGroup(r) => {
            if !az.group(Operation::Read, r.group_id.0.as_str()) {
                return Some(Reply::Now(Box::new(ResponseKind::SyncGroup(
                    kafka_protocol::messages::SyncGroupResponse::default()
                        .with_error_code(GROUP_DENIED.code()),
                ))));
            }
            return Some(groups::sync_group(inner, r, version));
        }
        RequestKind::Heartbeat(r) => {
            if !az.group(Operation::Read, r.group_id.0.as_str()) {
                ResponseKind::Heartbeat(
                    kafka_protocol::messages::HeartbeatResponse::default()
                        .with_error_code(GROUP_DENIED.code()),
                )
            } else {
                ResponseKind::Heartbeat(groups::heartbeat(inner, r))
            }
        }
        RequestKind::LeaveGroup(r) => {
            if !az.group(Operation::Read, r.group_id.0.as_str()) {
                ResponseKind::LeaveGroup(
                    kafka_protocol::messages::LeaveGroupResponse::default()
                        .with_error_code(GROUP_DENIED.code()),
                )
            } else {
                ResponseKind::LeaveGroup(groups::leave_group(inner, r, version))
            }
        }
        RequestKind::OffsetCommit(mut r) => {
            let group_denied = authorize::group_read_denied(az, r.group_id.0.as_str());
            let refused = authorize::offset_commit(az, &mut r);
            // A refused group is not touched at all (no commit, no membership check).
            let resp = if group_denied {
                kafka_protocol::messages::OffsetCommitResponse::default()
            } else {
                consumer_groups::offset_commit(inner, r, version).await
            };
            ResponseKind::OffsetCommit(authorize::offset_commit_answer(resp, refused))
        }
        RequestKind::OffsetFetch(r) => {
            let masked = r.clone();
            let mut resp = consumer_groups::offset_fetch(inner, r, version);
            authorize::mask_offset_fetch(az, &masked, &mut resp, version);
            ResponseKind::OffsetFetch(resp)
        }
        RequestKind::ListGroups(r) => {
            let mut resp = consumer_groups::list_groups(inner, r, version);
            authorize::mask_list_groups(az, &mut resp);
            ResponseKind::ListGroups(resp)
        }
        RequestKind::DescribeGroups(r) => {
            let mut resp = consumer_groups::describe_groups(inner, r, version);
            authorize::mask_describe_groups(az, &mut resp);
            ResponseKind::DescribeGroups(resp)
        }
        RequestKind::DeleteGroups(mut r) => {
            let refused = authorize::delete_groups(az, &mut r);
            let resp = groups::delete_groups(inner, r).await;
            ResponseKind::DeleteGroups(authorize::delete_groups_answer(resp, refused))
        }
        RequestKind::OffsetDelete(mut r) => match authorize::offset_delete(az, &mut r) {
            Err(denied) => ResponseKind::OffsetDelete(denied),
            Ok(refused) => {
                let resp = groups::offset_delete(inner, r).await;
                ResponseKind::OffsetDelete(authorize::offset_delete_answer(resp, refused))
            }
        },
        RequestKind::ConsumerGroupHeartbeat(r) => {
            if let Some(denied) = authorize::consumer_group_heartbeat(az, &r) {
                ResponseKind::ConsumerGroupHeartbeat(denied)
            } else {
                ResponseKind::ConsumerGroupHeartbeat(consumer_groups::consumer_group_heartbeat(
                    inner, header, r,
                ))
            }
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            let mut resp = consumer_groups::consumer_group_describe(inner, r);
            authorize::mask_consumer_group_describe(az, &mut resp);
            ResponseKind::ConsumerGroupDescribe(resp)
        }
        RequestKind::DescribeConfigs(r) => {
            let mut resp = configs::describe_configs(inner, r);
            authorize::mask_describe_configs(az, &mut resp);
            ResponseKind::DescribeConfigs(resp)
        }
        RequestKind::AlterConfigs(mut r) => {
            let refused = authorize::alter_configs(az, &mut r);
            let resp = configs::alter_configs(inner, r).await;
            ResponseKind::AlterConfigs(authorize::alter_configs_answer(resp, refused))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let refused = authorize::incremental_alter_configs(az, &mut r);
            let resp = configs::incremental_alter_configs(inner, r).await;
            ResponseKind::IncrementalAlterConfigs(authorize::incremental_alter_configs_answer(
                resp, refused,
            ))
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create_acls(az, r).await),
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::describe_acls(az, r, version).await)
        }
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete_acls(az, r).await),
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            acls::describe_user_scram_credentials(az, r).await,
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(acls::alter_user_scram_credentials(az, r).await)
        }
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
///
/// Authorisation (KafkaApis, Kafka 3.x): IDEMPOTENT_WRITE on the cluster or (KIP-679)
/// WRITE on any topic; else CLUSTER_AUTHORIZATION_FAILED.
async fn init_producer_id(
    inner: &Arc<Inner>,
    az: Authz<'_>,
    r: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default();
    if r.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
        warn!("InitProducerId with a transactional id: transactions are not supported yet");
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    if !az.idempotent_producer() {
        return resp
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
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
