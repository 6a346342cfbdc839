//! Fetch (long polling woken by appends) and ListOffsets.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use tokio::sync::Notify;
use tracing::warn;

use crate::codes;
use crate::server::{Inner, blocking};
use crate::topics::PartitionHandle;

struct Wanted {
    partition: i32,
    handle: Option<Arc<PartitionHandle>>,
    fetch_offset: i64,
    max_bytes: i32,
}

/// Reads every wanted partition once, within the response budget. Blocking.
/// Returns the response topics, the record bytes found, and whether an error must be
/// answered at once.
fn read_once(
    topics: &[(TopicName, uuid::Uuid, Vec<Wanted>)],
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut budget = max_bytes;
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(topics.len());
    for (name, id, parts) in topics {
        let mut pds = Vec::with_capacity(parts.len());
        for w in parts {
            let mut pd = PartitionData::default().with_partition_index(w.partition);
            let Some(h) = &w.handle else {
                any_error = true;
                pds.push(
                    pd.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_high_watermark(-1),
                );
                continue;
            };
            let start = h.log.log_start_offset();
            let end = h.log.log_end_offset();
            pd = pd
                .with_high_watermark(end as i64)
                .with_last_stable_offset(end as i64)
                .with_log_start_offset(start as i64);
            let Ok(offset) = u64::try_from(w.fetch_offset) else {
                any_error = true;
                pds.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            };
            if offset < start || offset > end {
                any_error = true;
                pds.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            }
            // The first data in a response may exceed the limits (one whole batch, so that
            // large records progress); after the budget is spent, partitions get nothing.
            if offset == end || (budget == 0 && total > 0) {
                pds.push(pd.with_records(Some(Default::default())));
                continue;
            }
            let limit = (w.max_bytes.max(0) as usize).min(budget);
            match h.log.read_bytes(offset, limit) {
                Ok(bytes) => {
                    total += bytes.len();
                    budget = budget.saturating_sub(bytes.len());
                    pds.push(pd.with_records(Some(bytes)));
                }
                Err(e) => {
                    let code = codes::read_error(&e);
                    if code == ResponseError::KafkaStorageError {
                        warn!(topic = %h.tp.topic, partition = h.tp.partition, offset, error = %e, "read failed");
                    }
                    any_error = true;
                    pds.push(pd.with_error_code(code.code()));
                }
            }
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
                .with_partitions(pds),
        );
    }
    (out, total, any_error)
}

pub(crate) async fn fetch(inner: &Arc<Inner>, r: FetchRequest) -> FetchResponse {
    let topics: Arc<Vec<(TopicName, uuid::Uuid, Vec<Wanted>)>> = Arc::new(
        r.topics
            .into_iter()
            .map(|t| {
                // v13+ name topics by id; up to v12 (what we serve) by name.
                let topic = if t.topic.0.is_empty() {
                    inner.topics.get_by_id(t.topic_id)
                } else {
                    inner.topics.get(t.topic.0.as_str())
                };
                let wanted = t
                    .partitions
                    .into_iter()
                    .map(|p| Wanted {
                        partition: p.partition,
                        handle: topic.as_ref().and_then(|tt| {
                            usize::try_from(p.partition)
                                .ok()
                                .and_then(|i| tt.partitions.get(i))
                                .cloned()
                        }),
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                    })
                    .collect();
                (t.topic, t.topic_id, wanted)
            })
            .collect(),
    );
    let max_bytes = if r.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        r.max_bytes as usize
    };
    let min_bytes = r.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64);
    let notify = Arc::new(Notify::new());
    loop {
        // Register before reading: an append after the read still wakes us.
        for (_, _, parts) in topics.iter() {
            for h in parts.iter().filter_map(|w| w.handle.as_ref()) {
                h.register_waiter(&notify);
            }
        }
        let t = Arc::clone(&topics);
        let (responses, total, any_error) = match blocking(move || read_once(&t, max_bytes)).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "fetch task failed");
                return FetchResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code());
            }
        };
        if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            // Fetch sessions (KIP-227) are declined with session id 0: every fetch is full.
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            // Deadline passed: one last read so the answer reflects the newest state.
            let t = Arc::clone(&topics);
            let responses = match blocking(move || read_once(&t, max_bytes)).await {
                Ok((responses, _, _)) => responses,
                Err(_) => responses,
            };
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
    }
}

/// (partition index, its handle if it exists, requested timestamp)
type PartitionTimestamp = (i32, Option<Arc<PartitionHandle>>, i64);

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(crate) async fn list_offsets(inner: &Arc<Inner>, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let work: Vec<(TopicName, Vec<PartitionTimestamp>)> = r
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    (
                        p.partition_index,
                        inner.topics.partition(t.name.0.as_str(), p.partition_index),
                        p.timestamp,
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
                    .map(|(idx, h, ts)| {
                        let resp = ListOffsetsPartitionResponse::default().with_partition_index(idx).with_leader_epoch(0);
                        let Some(h) = h else {
                            return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code()).with_offset(-1).with_timestamp(-1);
                        };
                        let found: Result<Option<(i64, i64)>, Option<weft_log::Error>> = match ts {
                            LATEST => Ok(Some((h.log.log_end_offset() as i64, -1))),
                            EARLIEST => Ok(Some((h.log.log_start_offset() as i64, -1))),
                            MAX_TIMESTAMP => h
                                .log
                                .max_timestamp_offset()
                                .map(|o| o.map(|o| (o.offset as i64, o.timestamp)))
                                .map_err(Some),
                            // -4 (earliest local) and -5 (latest tiered) come with v8+.
                            ts if ts < 0 => Err(None),
                            ts => h
                                .log
                                .offset_for_timestamp(ts)
                                .map(|o| o.map(|o| (o.offset as i64, o.timestamp)))
                                .map_err(Some),
                        };
                        match found {
                            Ok(Some((offset, timestamp))) => resp.with_offset(offset).with_timestamp(timestamp),
                            // No record at or after the timestamp: Kafka answers -1.
                            Ok(None) => resp.with_offset(-1).with_timestamp(-1),
                            Err(None) => resp
                                .with_error_code(ResponseError::UnsupportedVersion.code())
                                .with_offset(-1)
                                .with_timestamp(-1),
                            Err(Some(e)) => {
                                warn!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "list offsets failed");
                                resp.with_error_code(codes::read_error(&e).code()).with_offset(-1).with_timestamp(-1)
                            }
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default().with_name(name).with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    ListOffsetsResponse::default().with_topics(topics)
}
