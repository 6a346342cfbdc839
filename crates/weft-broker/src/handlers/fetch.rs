//! Fetch (long polling woken by appends) and ListOffsets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use tracing::warn;

use crate::codes;
use crate::fetch_session::{Plan, Requested, Sent};
use crate::server::{Inner, blocking};
use crate::topics::{PartitionHandle, lock};

struct Wanted {
    topic: String,
    partition: i32,
    handle: Option<Arc<PartitionHandle>>,
    fetch_offset: i64,
    max_bytes: i32,
    /// In an incremental session: what the client was last told.
    sent: Option<Sent>,
}

/// One read of every wanted partition.
struct ReadOnce {
    responses: Vec<FetchableTopicResponse>,
    bytes: usize,
    any_error: bool,
    /// For the session: what this response tells about each partition it includes.
    sent: Vec<(String, i32, Sent)>,
}

/// Reads every wanted partition once, within the response budget. Blocking. In an
/// incremental session (`only_news`), partitions with nothing new are left out.
fn read_once(
    topics: &[(TopicName, uuid::Uuid, Vec<Wanted>)],
    max_bytes: usize,
    only_news: bool,
) -> ReadOnce {
    let mut budget = max_bytes;
    let mut out = ReadOnce {
        responses: Vec::with_capacity(topics.len()),
        bytes: 0,
        any_error: false,
        sent: Vec::new(),
    };
    for (name, id, parts) in topics {
        let mut pds = Vec::with_capacity(parts.len());
        for w in parts {
            let pd = PartitionData::default().with_partition_index(w.partition);
            let Some(h) = &w.handle else {
                out.any_error = true;
                pds.push(
                    pd.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_high_watermark(-1),
                );
                continue;
            };
            let start = h.log.log_start_offset();
            let end = h.log.log_end_offset();
            let now = Sent {
                high_watermark: end as i64,
                log_start: start as i64,
            };
            let pd = pd
                .with_high_watermark(end as i64)
                .with_last_stable_offset(end as i64)
                .with_log_start_offset(start as i64);
            let in_range = u64::try_from(w.fetch_offset)
                .ok()
                .filter(|o| *o >= start && *o <= end);
            let Some(offset) = in_range else {
                out.any_error = true;
                pds.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                out.sent.push((w.topic.clone(), w.partition, now));
                continue;
            };
            // The first data in a response may exceed the limits (one whole batch, so that
            // large records progress); after the budget is spent, partitions get nothing.
            let records = if offset == end || (budget == 0 && out.bytes > 0) {
                bytes::Bytes::new()
            } else {
                let limit = (w.max_bytes.max(0) as usize).min(budget);
                match h.log.read_bytes(offset, limit) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let code = codes::read_error(&e);
                        if code == ResponseError::KafkaStorageError {
                            warn!(topic = %h.tp.topic, partition = h.tp.partition, offset, error = %e, "read failed");
                        }
                        out.any_error = true;
                        pds.push(pd.with_error_code(code.code()));
                        out.sent.push((w.topic.clone(), w.partition, now));
                        continue;
                    }
                }
            };
            if only_news && records.is_empty() && w.sent == Some(now) {
                continue;
            }
            out.bytes += records.len();
            budget = budget.saturating_sub(records.len());
            out.sent.push((w.topic.clone(), w.partition, now));
            pds.push(pd.with_records(Some(records)));
        }
        if only_news && pds.is_empty() {
            continue;
        }
        out.responses.push(
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
                .with_partitions(pds),
        );
    }
    out
}

pub(crate) async fn fetch(inner: &Arc<Inner>, r: FetchRequest) -> FetchResponse {
    // v13+ name topics by id; up to v12 (what we serve) by name.
    let name_of = |t: &TopicName, id: uuid::Uuid| -> String {
        if t.0.is_empty() {
            inner
                .topics
                .get_by_id(id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        } else {
            t.0.to_string()
        }
    };
    let requested: Vec<Requested> = r
        .topics
        .iter()
        .flat_map(|t| {
            let name = name_of(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| {
                (
                    name.clone(),
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes,
                )
            })
        })
        .collect();
    let forgotten: Vec<(String, i32)> = r
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let name = name_of(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect();
    let plan = lock(&inner.fetch_sessions).plan(
        r.session_id,
        r.session_epoch,
        &requested,
        &forgotten,
        Instant::now(),
    );
    let (session_id, only_news, wanted): (i32, bool, Vec<Wanted>) = match plan {
        Plan::Error(e) => return FetchResponse::default().with_error_code(e.code()),
        Plan::Full { session_id } => (
            session_id,
            false,
            requested
                .into_iter()
                .map(|(topic, partition, fetch_offset, max_bytes)| Wanted {
                    handle: inner.topics.partition(&topic, partition),
                    topic,
                    partition,
                    fetch_offset,
                    max_bytes,
                    sent: None,
                })
                .collect(),
        ),
        Plan::Incremental {
            session_id,
            partitions,
        } => (
            session_id,
            true,
            partitions
                .into_iter()
                .map(|p| Wanted {
                    handle: inner.topics.partition(&p.topic, p.partition),
                    topic: p.topic,
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.max_bytes,
                    sent: p.sent,
                })
                .collect(),
        ),
    };
    // Group consecutive partitions of a topic, keeping the order.
    let mut grouped: Vec<(TopicName, uuid::Uuid, Vec<Wanted>)> = Vec::new();
    for w in wanted {
        match grouped.last_mut() {
            Some((name, _, parts)) if name.0.as_str() == w.topic => parts.push(w),
            _ => {
                let id = inner
                    .topics
                    .get(&w.topic)
                    .map_or(uuid::Uuid::nil(), |t| t.id);
                grouped.push((
                    TopicName(StrBytes::from_string(w.topic.clone())),
                    id,
                    vec![w],
                ));
            }
        }
    }
    let topics = Arc::new(grouped);
    let max_bytes = if r.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        r.max_bytes as usize
    };
    let min_bytes = r.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64);
    let notify = Arc::new(Notify::new());
    let answer = |read: ReadOnce| {
        if session_id != 0 {
            lock(&inner.fetch_sessions).record_sent(session_id, &read.sent);
        }
        FetchResponse::default()
            .with_session_id(session_id)
            .with_responses(read.responses)
    };
    loop {
        // Register before reading: an append after the read still wakes us.
        for (_, _, parts) in topics.iter() {
            for h in parts.iter().filter_map(|w| w.handle.as_ref()) {
                h.register_waiter(&notify);
            }
        }
        let t = Arc::clone(&topics);
        let read = match blocking(move || read_once(&t, max_bytes, only_news)).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "fetch task failed");
                return FetchResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code());
            }
        };
        if read.bytes >= min_bytes || read.any_error || tokio::time::Instant::now() >= deadline {
            return answer(read);
        }
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            // Deadline passed: one last read so the answer reflects the newest state.
            let t = Arc::clone(&topics);
            let last = blocking(move || read_once(&t, max_bytes, only_news)).await;
            return answer(last.unwrap_or(read));
        }
    }
}

/// (partition index, its handle if it exists, requested timestamp)
type PartitionTimestamp = (i32, Option<Arc<PartitionHandle>>, i64);

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(crate) async fn list_offsets(
    inner: &Arc<Inner>,
    r: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // The leader epoch field exists from v4; setting it earlier is an encoding error.
    let leader_epoch = if version >= 4 { 0 } else { -1 };
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
                        let resp = ListOffsetsPartitionResponse::default().with_partition_index(idx).with_leader_epoch(leader_epoch);
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
