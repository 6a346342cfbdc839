//! Fetch (long polling woken by appends and by the durable offset) and ListOffsets.
//!
//! What consumers see ends at the high watermark: the durable offset under the `batch` and
//! `group` durability policies (records past it may vanish in a crash and be replaced by
//! others at the same offsets), the log end under `os` (which promises no durability).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Notify, watch};
use tracing::warn;
use weft_log::batch::BatchHeader;
use weft_log::{Durability, Partition};

use weft_auth::Operation;

use crate::authz::Authz;
use crate::codes;
use crate::fetch_session::{MAX_SESSION_PARTITIONS, Plan, Requested, Sent};
use crate::fetch_wire::Region;
use crate::server::{Inner, blocking};
use crate::topics::{PartitionHandle, lock, validate_name};

/// Kafka's `fetch.max.bytes` default: the most one response carries (the first batch of
/// the first partition with data excepted). A constant rather than a `BrokerConfig` field
/// for now; the request's `max_bytes` and every `partition_max_bytes` are clamped to it.
const FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;

/// Partitions one fetch request may name (the same bound as a session's); those beyond it
/// are answered with INVALID_REQUEST and not read, so one request cannot make the broker
/// hold per-partition state without bound.
const MAX_FETCH_PARTITIONS: usize = MAX_SESSION_PARTITIONS;

/// The offset below which consumers may read: under the `os` policy the log end, otherwise
/// the durable offset (never past the log end nor below the log start).
fn high_watermark(log: &Partition) -> u64 {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let hw = match log.config().durability {
        Durability::Os => end,
        Durability::EveryBatch | Durability::GroupCommit { .. } => end.min(log.durable_offset()),
    };
    hw.max(start)
}

/// The whole batches at the front of `bytes` (as returned by `read_bytes`) that end below
/// `hw` and fit in `limit`; only when `first` (no data in the response yet) may the first
/// batch exceed `limit`, so that a batch larger than the limits still gets through.
fn trim(bytes: Bytes, hw: u64, limit: usize, first: bool) -> Bytes {
    let mut at = 0;
    while at < bytes.len() {
        let Ok(h) = BatchHeader::parse(&bytes[at..]) else {
            break;
        };
        let end = at + h.total_len();
        if h.last_offset() >= hw || end > bytes.len() || (end > limit && !(first && at == 0)) {
            break;
        }
        at = end;
    }
    bytes.slice(..at)
}

/// A partition's records in a response: in memory (copying path) or a file range (zero-copy).
enum Records {
    Memory(Bytes),
    File(weft_log::FileRegion),
}

struct Wanted {
    topic: Arc<str>,
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
    sent: Vec<(Arc<str>, i32, Sent)>,
    /// Partitions with appended but not yet durable records: their durable offset and the
    /// high watermark this read used. Its advance makes more visible.
    pending: Vec<(watch::Receiver<u64>, u64)>,
    /// Zero-copy: partitions whose records (left `None` in `responses`) are file ranges.
    regions: Vec<Region>,
    /// For metrics, once answered: each partition with data, its bytes and the offsets
    /// they cover from the fetch offset on.
    served: Vec<(Arc<PartitionHandle>, usize, u64)>,
}

/// Offsets covered from `from` on by batches ending at `next` (exclusive).
fn offsets_from(from: u64, next: u64) -> u64 {
    next.saturating_sub(from)
}

/// The offset after the last whole batch in `bytes`.
fn next_offset_of(bytes: &[u8]) -> Option<u64> {
    let mut at = 0;
    let mut next = None;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).ok()?;
        next = Some(h.last_offset() + 1);
        at += h.total_len();
    }
    next
}

/// Reads every wanted partition once, within the response budget. Blocking. In an
/// incremental session (`only_news`), partitions with nothing new are left out.
fn read_once(
    topics: &[(TopicName, uuid::Uuid, Vec<Wanted>)],
    max_bytes: usize,
    only_news: bool,
    zero_copy: bool,
) -> ReadOnce {
    let mut budget = max_bytes;
    let mut out = ReadOnce {
        responses: Vec::with_capacity(topics.len()),
        bytes: 0,
        any_error: false,
        sent: Vec::new(),
        pending: Vec::new(),
        regions: Vec::new(),
        served: Vec::new(),
    };
    for (name, id, parts) in topics {
        let mut pds = Vec::with_capacity(parts.len());
        let mut regions = Vec::new();
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
            let hw = high_watermark(&h.log);
            if hw < end {
                out.pending.push((h.durable.clone(), hw));
            }
            let now = Sent {
                high_watermark: hw as i64,
                log_start: start as i64,
            };
            let pd = pd
                .with_high_watermark(hw as i64)
                .with_last_stable_offset(hw as i64)
                .with_log_start_offset(start as i64);
            let in_range = u64::try_from(w.fetch_offset)
                .ok()
                .filter(|o| *o >= start && *o <= end);
            let Some(offset) = in_range else {
                out.any_error = true;
                pds.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                out.sent.push((Arc::clone(&w.topic), w.partition, now));
                continue;
            };
            // The first data in a response may exceed the limits (one whole batch, so that
            // large records progress); after it, partitions get only what fits.
            let first = out.bytes == 0;
            let limit = (w.max_bytes.max(0) as usize)
                .min(FETCH_MAX_BYTES)
                .min(budget);
            let read = if offset >= hw || (limit == 0 && !first) {
                Ok(Records::Memory(Bytes::new()))
            } else if zero_copy {
                h.log.read_below(offset, limit, hw).map(|r| match r {
                    // Only the first data of a response may exceed its limit (by one batch).
                    Some(r) if r.len > limit && !first => Records::Memory(Bytes::new()),
                    Some(r) => Records::File(r),
                    None => Records::Memory(Bytes::new()),
                })
            } else {
                h.log
                    .read_bytes(offset, limit)
                    .map(|bytes| Records::Memory(trim(bytes, hw, limit, first)))
            };
            let records = match read {
                Ok(records) => records,
                Err(e) => {
                    let code = codes::read_error(&e);
                    if code == ResponseError::KafkaStorageError {
                        warn!(topic = %h.tp.topic, partition = h.tp.partition, offset, error = %e, "read failed");
                    }
                    out.any_error = true;
                    pds.push(pd.with_error_code(code.code()));
                    out.sent.push((Arc::clone(&w.topic), w.partition, now));
                    continue;
                }
            };
            let len = match &records {
                Records::Memory(b) => b.len(),
                Records::File(r) => r.len,
            };
            if only_news && len == 0 && w.sent == Some(now) {
                continue;
            }
            out.bytes += len;
            budget = budget.saturating_sub(len);
            out.sent.push((Arc::clone(&w.topic), w.partition, now));
            match records {
                Records::Memory(b) => {
                    if let Some(next) = next_offset_of(&b) {
                        out.served
                            .push((Arc::clone(h), len, offsets_from(offset, next)));
                    }
                    pds.push(pd.with_records(Some(b)));
                }
                Records::File(r) => {
                    out.served
                        .push((Arc::clone(h), len, offsets_from(offset, r.next_offset)));
                    regions.push((pds.len(), r));
                    pds.push(pd.with_records(None));
                }
            }
        }
        if only_news && pds.is_empty() {
            continue;
        }
        let ti = out.responses.len();
        out.regions
            .extend(regions.into_iter().map(|(pi, r)| (ti, pi, r)));
        out.responses.push(
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
                .with_partitions(pds),
        );
    }
    out
}

/// Partitions answered with an error without being read: (topic as the request named it,
/// its id, (partition, error)).
type Refused = Vec<(TopicName, uuid::Uuid, Vec<(i32, ResponseError)>)>;

/// The request's topic name (or, from v13, the name of its id), checked once per topic:
/// `Err` for a name Kafka does not allow, which no partition is looked up for.
fn topic_name(inner: &Inner, t: &TopicName, id: uuid::Uuid) -> Result<Arc<str>, ResponseError> {
    if t.0.is_empty() {
        return inner
            .topics
            .get_by_id(id)
            .map(|t| Arc::from(t.name.as_str()))
            .ok_or(ResponseError::UnknownTopicOrPartition);
    }
    validate_name(t.0.as_str()).map_err(|_| ResponseError::InvalidTopicException)?;
    Ok(Arc::from(t.0.as_str()))
}

/// The response, and the partitions whose records are to be sent from the segment files
/// (zero-copy; their `records` are `None` in the response).
///
/// Authorisation: READ on each topic; refused topics are answered TOPIC_AUTHORIZATION_FAILED
/// and never enter the fetch session. A partition already in an incremental session whose
/// READ was revoked since is answered UNKNOWN_TOPIC_OR_PARTITION and not read.
pub(crate) async fn fetch(
    inner: &Arc<Inner>,
    az: Authz<'_>,
    r: FetchRequest,
) -> (FetchResponse, Vec<Region>) {
    let mut requested: Vec<Requested> = Vec::new();
    let mut refused: Refused = Vec::new();
    for t in &r.topics {
        let name = topic_name(inner, &t.topic, t.topic_id).and_then(|n| {
            if az.topic(Operation::Read, &n) {
                Ok(n)
            } else {
                Err(ResponseError::TopicAuthorizationFailed)
            }
        });
        let room = MAX_FETCH_PARTITIONS.saturating_sub(requested.len());
        let (take, rest) = match &name {
            Ok(_) => t.partitions.split_at(room.min(t.partitions.len())),
            Err(_) => t.partitions.split_at(0),
        };
        if let Ok(name) = &name {
            requested.extend(take.iter().map(|p| {
                (
                    Arc::clone(name),
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes,
                )
            }));
        }
        if !rest.is_empty() {
            let error = name.err().unwrap_or(ResponseError::InvalidRequest);
            refused.push((
                t.topic.clone(),
                t.topic_id,
                rest.iter().map(|p| (p.partition, error)).collect(),
            ));
        }
    }
    if !refused.is_empty() {
        warn!(
            partitions = requested.len(),
            refused = refused.iter().map(|(_, _, p)| p.len()).sum::<usize>(),
            "fetch names invalid topics or too many partitions"
        );
    }
    let mut forgotten: Vec<(Arc<str>, i32)> = Vec::new();
    for t in &r.forgotten_topics_data {
        // A name that could not be in a session is ignored.
        if let Ok(name) = topic_name(inner, &t.topic, t.topic_id) {
            forgotten.extend(t.partitions.iter().map(|p| (Arc::clone(&name), *p)));
        }
    }
    let plan = lock(&inner.fetch_sessions).plan(
        r.session_id,
        r.session_epoch,
        &requested,
        &forgotten,
        Instant::now(),
    );
    drop(forgotten);
    // One topic lookup per run of partitions of the same topic.
    let mut last: Option<(Arc<str>, Option<Arc<crate::topics::Topic>>)> = None;
    let mut handle_of = |topic: &Arc<str>, partition: i32| {
        if last.as_ref().is_none_or(|(n, _)| n != topic) {
            let t = if az.topic(Operation::Read, topic) {
                inner.topics.get(topic)
            } else {
                None
            };
            last = Some((Arc::clone(topic), t));
        }
        let t = last.as_ref().and_then(|(_, t)| t.as_ref())?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .cloned()
    };
    let (session_id, only_news, wanted): (i32, bool, Vec<Wanted>) = match plan {
        Plan::Error(e) => {
            return (
                FetchResponse::default().with_error_code(e.code()),
                Vec::new(),
            );
        }
        Plan::Full { session_id } => (
            session_id,
            false,
            requested
                .into_iter()
                .map(|(topic, partition, fetch_offset, max_bytes)| Wanted {
                    handle: handle_of(&topic, partition),
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
                    handle: handle_of(&p.topic, p.partition),
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
    let mut group_topic: Option<Arc<str>> = None;
    for w in wanted {
        match grouped.last_mut() {
            Some((_, _, parts)) if group_topic.as_ref() == Some(&w.topic) => parts.push(w),
            _ => {
                let id = inner
                    .topics
                    .get(&w.topic)
                    .map_or(uuid::Uuid::nil(), |t| t.id);
                group_topic = Some(Arc::clone(&w.topic));
                grouped.push((
                    TopicName(StrBytes::from_string(w.topic.to_string())),
                    id,
                    vec![w],
                ));
            }
        }
    }
    let topics = Arc::new(grouped);
    let max_bytes = if r.max_bytes <= 0 {
        FETCH_MAX_BYTES
    } else {
        (r.max_bytes as usize).min(FETCH_MAX_BYTES)
    };
    let min_bytes = r.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64);
    let notify = Arc::new(Notify::new());
    let any_refused = !refused.is_empty();
    let zero_copy = inner.config.zero_copy_fetch;
    let answer = |read: ReadOnce| {
        if session_id != 0 {
            lock(&inner.fetch_sessions).record_sent(session_id, &read.sent);
        }
        for (h, bytes, offsets) in &read.served {
            let s = h.stats();
            s.bytes_out.increment(*bytes as u64);
            s.records_out.increment(*offsets);
        }
        let mut responses = read.responses;
        responses.extend(refused.into_iter().map(|(name, id, parts)| {
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(id)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, e)| {
                            PartitionData::default()
                                .with_partition_index(p)
                                .with_error_code(e.code())
                                .with_high_watermark(-1)
                        })
                        .collect(),
                )
        }));
        (
            FetchResponse::default()
                .with_session_id(session_id)
                .with_responses(responses),
            read.regions,
        )
    };
    let mut waiting: Option<crate::stats::Occupancy> = None;
    loop {
        // Register before reading: an append after the read still wakes us.
        for (_, _, parts) in topics.iter() {
            for h in parts.iter().filter_map(|w| w.handle.as_ref()) {
                h.register_waiter(&notify);
            }
        }
        let t = Arc::clone(&topics);
        let mut read = match blocking(move || read_once(&t, max_bytes, only_news, zero_copy)).await
        {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "fetch task failed");
                return (
                    FetchResponse::default()
                        .with_error_code(ResponseError::UnknownServerError.code()),
                    Vec::new(),
                );
            }
        };
        if read.bytes >= min_bytes
            || read.any_error
            || any_refused
            || tokio::time::Instant::now() >= deadline
        {
            return answer(read);
        }
        // Long polling from here on: counted in the fetch purgatory until answered.
        waiting.get_or_insert_with(crate::stats::Occupancy::fetch_wait);
        // Also woken when a durable offset passes the high watermark this read used: the
        // receivers compare against it, so an advance since the read is not missed.
        let mut durable: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> =
            std::mem::take(&mut read.pending)
                .into_iter()
                .map(|(mut rx, hw)| {
                    Box::pin(async move {
                        if rx.wait_for(|d| *d > hw).await.is_err() {
                            // The partition is gone: only an append or the deadline wakes.
                            std::future::pending::<()>().await;
                        }
                    }) as Pin<Box<dyn Future<Output = ()> + Send>>
                })
                .collect();
        let durable_advanced = std::future::poll_fn(|cx| {
            if durable.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let woken = tokio::select! {
            () = notify.notified() => true,
            () = durable_advanced => true,
            () = tokio::time::sleep_until(deadline) => false,
        };
        if !woken {
            // Deadline passed: one last read so the answer reflects the newest state.
            let t = Arc::clone(&topics);
            let last = blocking(move || read_once(&t, max_bytes, only_news, zero_copy)).await;
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
                        let hw = high_watermark(&h.log);
                        let found: Result<Option<(i64, i64)>, Option<weft_log::Error>> = match ts {
                            LATEST => Ok(Some((hw as i64, -1))),
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
                        // Like fetch, nothing at or past the high watermark is told.
                        let found = if ts == MAX_TIMESTAMP || ts >= 0 {
                            found.map(|f| f.filter(|(offset, _)| u64::try_from(*offset).is_ok_and(|o| o < hw)))
                        } else {
                            found
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
