//! Produce: split the records into v2 batches, deduplicate idempotent retries, append, and
//! for acks=-1 wait until the partition's durability policy covers the batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tracing::{debug, warn};

use super::str;
use crate::codes;
use crate::producer_state::{BatchId, Check};
use crate::schema_validation::{self, Entry, Level, Refusal};
use crate::server::{Close, Inner, blocking, now_ms};
use crate::topics::{PartitionHandle, lock, validate_name};

/// Where one partition entry of a request goes.
enum Target {
    Partition(Arc<PartitionHandle>),
    /// The topic does not exist (or not this partition).
    Unknown,
    /// The topic name breaks Kafka's rule; the reason is shared by the topic's entries.
    InvalidName(Arc<str>),
}

/// The outcome for one partition.
struct Outcome {
    error: Option<ResponseError>,
    message: Option<String>,
    base_offset: i64,
    /// Offset of the last record written (or found as a duplicate), for acks=-1.
    last_offset: Option<u64>,
    log_append_time: i64,
    log_start: i64,
    /// Whether acks=-1 waits for the fsync, read from the partition's policy when the
    /// batches were appended: an AlterConfigs arriving before the answer must not let the
    /// broker acknowledge a batch appended under a stricter policy before it is durable.
    waits_for_fsync: bool,
    /// Under the `batch` policy the append did not fsync (so that this request's fsync
    /// overlaps the next request's append): the answer waits for a flush of the partition.
    flush_owed: bool,
    /// Produce v8+ `record_errors`: (record index, message).
    record_errors: Vec<(i32, String)>,
}

impl Outcome {
    fn error(error: ResponseError, message: impl Into<String>) -> Outcome {
        Outcome {
            error: Some(error),
            message: Some(message.into()),
            base_offset: -1,
            last_offset: None,
            log_append_time: -1,
            log_start: -1,
            waits_for_fsync: false,
            flush_owed: false,
            record_errors: Vec::new(),
        }
    }

    /// Refused by schema validation: nothing appended.
    fn refused(r: Refusal) -> Outcome {
        Outcome {
            record_errors: r.record_errors,
            ..Outcome::error(r.error, r.message)
        }
    }
}

/// Appends every batch in `records` to the partition. Blocking.
fn append_batches(h: &PartitionHandle, records: &Bytes, now: i64) -> Outcome {
    let mut flush_owed = false;
    let mut o = append_each(h, records, now, &mut flush_owed);
    // Even when a later batch is refused, the earlier ones are in the log: flush them so
    // that the durable offset (what consumers see) does not wait for the next produce.
    o.flush_owed = flush_owed;
    o
}

fn append_each(h: &PartitionHandle, records: &Bytes, now: i64, flush_owed: &mut bool) -> Outcome {
    let mut table = lock(&h.producers);
    // Read once, under the producers lock that serializes appends to this partition.
    let waits_for_fsync = h.acks_all_waits_for_fsync();
    let max_message_bytes = h.log.config().max_message_bytes;
    let mut at = 0usize;
    let mut base = None;
    let mut last = None;
    let mut append_time = -1;
    if records.is_empty() {
        return Outcome::error(ResponseError::CorruptMessage, "no record batch");
    }
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < 17 {
            return Outcome::error(
                ResponseError::CorruptMessage,
                format!("{} trailing bytes after the last batch", rest.len()),
            );
        }
        let magic = rest[16] as i8;
        if magic != 2 {
            return Outcome::error(
                ResponseError::UnsupportedForMessageFormat,
                format!("message format v{magic} is not supported; only record batch v2"),
            );
        }
        let declared = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = usize::try_from(declared)
            .ok()
            .and_then(|l| l.checked_add(12));
        let Some(total) = total.filter(|t| *t <= rest.len()) else {
            return Outcome::error(
                ResponseError::CorruptMessage,
                format!(
                    "batch length {declared} exceeds the {} bytes sent",
                    rest.len()
                ),
            );
        };
        let slice = &rest[..total];
        at += total;
        // Validate (size, framing, CRC) before the idempotence check, as Kafka does: a
        // corrupted retry whose header matches a remembered batch must get CORRUPT_MESSAGE,
        // not the original batch's offsets.
        if slice.len() > max_message_bytes {
            let e = weft_log::Error::MessageTooLarge {
                size: slice.len(),
                max: max_message_bytes,
            };
            return Outcome::error(codes::produce_error(&e), e.to_string());
        }
        // One pass over the bytes (CRC, record framing) serves both the idempotence check
        // and the append, which writes the records straight from the request frame.
        let checked = match weft_log::batch::check(slice) {
            Ok(checked) => checked,
            Err(e) => {
                let e = weft_log::Error::from(e);
                return Outcome::error(codes::produce_error(&e), e.to_string());
            }
        };
        let hdr = checked.header();
        if hdr.is_transactional() || hdr.is_control() {
            return Outcome::error(
                ResponseError::InvalidTxnState,
                "transactional batches are not supported yet",
            );
        }
        let id = BatchId {
            producer_id: hdr.producer_id,
            epoch: hdr.producer_epoch,
            first_seq: hdr.base_sequence,
            last_offset_delta: hdr.last_offset_delta,
        };
        match table.check(&id) {
            Check::Reject(e) => {
                debug!(topic = %h.tp.topic, partition = h.tp.partition, producer_id = id.producer_id, epoch = id.epoch, seq = id.first_seq, error = ?e, "idempotent batch refused");
                return Outcome::error(
                    e,
                    format!(
                        "producer {} epoch {} sequence {} refused",
                        id.producer_id, id.epoch, id.first_seq
                    ),
                );
            }
            Check::Duplicate {
                first_offset,
                last_offset,
            } => {
                debug!(topic = %h.tp.topic, partition = h.tp.partition, producer_id = id.producer_id, seq = id.first_seq, first_offset, "duplicate batch acknowledged with its original offset");
                base.get_or_insert(first_offset);
                last = Some(last_offset);
                // The original may still wait for its flush: the answer to the retry must not
                // overtake it.
                *flush_owed |= last_offset >= h.log.durable_offset()
                    && h.log.config().durability == weft_log::Durability::EveryBatch;
            }
            Check::Append => match h.log.append_unsynced(&checked) {
                Ok(info) => {
                    *flush_owed |= info.flush_owed;
                    let stats = h.stats();
                    stats.bytes_in.increment(slice.len() as u64);
                    stats.records_in.increment(u64::from(info.records));
                    table.record(&id, info.base_offset, info.last_offset, now);
                    base.get_or_insert(info.base_offset);
                    last = Some(info.last_offset);
                    if let Some(t) = info.log_append_time {
                        append_time = t;
                    }
                }
                Err(e) => {
                    let code = codes::produce_error(&e);
                    if code == ResponseError::KafkaStorageError
                        || code == ResponseError::UnknownServerError
                    {
                        warn!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "append failed");
                    } else {
                        debug!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "batch refused");
                    }
                    return Outcome::error(code, e.to_string());
                }
            },
        }
    }
    Outcome {
        error: None,
        message: None,
        base_offset: base.map_or(-1, |b| b as i64),
        last_offset: last,
        log_append_time: append_time,
        log_start: h.log.log_start_offset() as i64,
        waits_for_fsync,
        flush_owed: false,
        record_errors: Vec::new(),
    }
}

impl Outcome {
    fn code(&self) -> i16 {
        self.error.map_or(0, |e| e.code())
    }
}

/// The rest of a produce after its appends: the acks=-1 wait and the response.
pub(crate) type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = ProduceResponse> + Send>>;

/// The most partitions one produce request may name (summed over its topics; a topic with
/// no partitions counts as one). Kafka has no such limit, but real producers send at most
/// one entry per partition they lead on; a request far above it is an attack on memory,
/// since every entry costs a response entry and work, and is answered by closing.
pub(crate) const MAX_PARTITIONS_PER_PRODUCE: usize = 10_000;

/// Appends the request's batches (in request order, before the next request on the
/// connection is read) and returns the wait for durability as a future, so that a
/// connection's next requests are served while this one waits for its fsync.
pub(crate) async fn produce(
    inner: &Arc<Inner>,
    r: ProduceRequest,
) -> Result<Option<Pending>, Close> {
    let acks = r.acks;
    let transactional = r.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty());
    let entries: usize = r
        .topic_data
        .iter()
        .map(|t| t.partition_data.len().max(1))
        .sum();
    if entries > MAX_PARTITIONS_PER_PRODUCE {
        return Err(Close(format!(
            "produce request names {entries} partitions, the limit is {MAX_PARTITIONS_PER_PRODUCE}"
        )));
    }
    let work: Work = r
        .topic_data
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            // The name is checked once per topic, before its partitions are looked at; no
            // per-partition work or message carries the (possibly huge) name.
            let invalid = validate_name(&name)
                .err()
                .or_else(|| {
                    // Only the group coordinator writes the offsets topic (Kafka answers
                    // INVALID_TOPIC_EXCEPTION too).
                    (name == crate::group::offsets::TOPIC)
                        .then(|| format!("Cannot append to internal topic {name}"))
                })
                .map(Arc::<str>::from);
            let parts = t
                .partition_data
                .into_iter()
                .map(|p| {
                    let target = match &invalid {
                        Some(reason) => Target::InvalidName(Arc::clone(reason)),
                        None => match inner.topics.partition(&name, p.index) {
                            Some(h) => Target::Partition(h),
                            None => Target::Unknown,
                        },
                    };
                    (p.index, target, p.records)
                })
                .collect();
            (name, parts)
        })
        .collect();
    // Broker-side schema validation: a refused entry is answered without appending.
    let mut refused = schema_refusals(inner, &work).await;
    let now = now_ms();
    let results = blocking(move || {
        work.into_iter()
            .enumerate()
            .map(|(ti, (name, parts))| {
                let outcomes: Vec<(i32, Option<Arc<PartitionHandle>>, Outcome)> = parts
                    .into_iter()
                    .enumerate()
                    .map(|(pi, (idx, target, records))| {
                        let h = match target {
                            Target::Partition(h) => Some(h),
                            Target::InvalidName(reason) => {
                                let o = Outcome::error(
                                    ResponseError::InvalidTopicException,
                                    reason.to_string(),
                                );
                                return (idx, None, o);
                            }
                            Target::Unknown => None,
                        };
                        let outcome = if !(-1..=1).contains(&acks) {
                            Outcome::error(
                                ResponseError::InvalidRequiredAcks,
                                format!("acks={acks}"),
                            )
                        } else if transactional {
                            Outcome::error(
                                ResponseError::TransactionalIdAuthorizationFailed,
                                "transactions are not supported yet",
                            )
                        } else {
                            match (&h, records) {
                                (None, _) => Outcome::error(
                                    ResponseError::UnknownTopicOrPartition,
                                    "this topic or partition does not exist",
                                ),
                                (Some(_), None) => {
                                    Outcome::error(ResponseError::CorruptMessage, "null records")
                                }
                                (Some(h), Some(records)) => match refused.remove(&(ti, pi)) {
                                    Some(r) => Outcome::refused(r),
                                    None => {
                                        let mut o = append_batches(h, &records, now);
                                        if o.flush_owed && acks == 0 {
                                            // Nobody waits for an answer: flush before the
                                            // next request is read, as an append that
                                            // fsyncs itself would.
                                            o.flush_owed = false;
                                            if let Err(e) = h.log.flush() {
                                                warn!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "flush failed");
                                            }
                                        }
                                        if o.last_offset.is_some() {
                                            h.wake_waiters();
                                        }
                                        o
                                    }
                                },
                            }
                        };
                        (idx, h, outcome)
                    })
                    .collect();
                (name, outcomes)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "produce task failed");
            return Ok(
                (acks != 0).then(|| Box::pin(async { ProduceResponse::default() }) as Pending)
            );
        }
    };
    if acks == 0 {
        return Ok(None);
    }
    let timeout_ms = r.timeout_ms;
    // acks=-1: in the produce purgatory from here until answered.
    let waiting = (acks == -1).then(crate::stats::Occupancy::produce_wait);
    Ok(Some(Box::pin(async move {
        let response = respond(results, acks, timeout_ms).await;
        drop(waiting);
        response
    })))
}

/// (topic name, [(partition, handle, records)])
type Work = Vec<(String, Vec<(i32, Target, Option<Bytes>)>)>;

/// The entries of `work` that schema validation refuses, by (topic index, entry index).
async fn schema_refusals(inner: &Inner, work: &Work) -> HashMap<(usize, usize), Refusal> {
    let mut entries = Vec::new();
    for (ti, (name, parts)) in work.iter().enumerate() {
        let Some(topic) = inner.topics.get(name) else {
            continue;
        };
        let levels = schema_validation::levels(&topic.configs);
        if levels == (Level::None, Level::None) {
            continue;
        }
        for (pi, (_, target, records)) in parts.iter().enumerate() {
            if let (Target::Partition(_), Some(records)) = (target, records) {
                entries.push(Entry {
                    key: (ti, pi),
                    topic: name.clone(),
                    records: records.clone(),
                    levels,
                });
            }
        }
    }
    schema_validation::screen(inner.config.schemas.as_ref(), entries)
        .await
        .into_iter()
        .collect()
}

type Results = Vec<(String, Vec<(i32, Option<Arc<PartitionHandle>>, Outcome)>)>;

/// Runs the flushes the appends owe (`batch` policy), one blocking task per partition so
/// that partitions sync in parallel, and answers a failed flush with its error. This runs
/// when the response's turn comes on the connection, while later requests are already
/// being appended: one fsync then covers everything appended to the partition so far
/// (concurrent flushes share it).
async fn flush_owed(results: &mut Results) {
    let mut flushes = Vec::new();
    for (ti, (_, outcomes)) in results.iter().enumerate() {
        for (pi, (_, h, o)) in outcomes.iter().enumerate() {
            if let (Some(h), true) = (h, o.flush_owed) {
                let log = Arc::clone(&h.log);
                flushes.push((ti, pi, tokio::task::spawn_blocking(move || log.flush())));
            }
        }
    }
    for (ti, pi, task) in flushes {
        let failed = match task.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(Outcome::error(codes::produce_error(&e), e.to_string())),
            Err(e) => Some(Outcome::error(
                ResponseError::KafkaStorageError,
                format!("flush task failed: {e}"),
            )),
        };
        if let Some(failed) = failed {
            let (_, h, o) = &mut results[ti].1[pi];
            if let Some(h) = h {
                warn!(topic = %h.tp.topic, partition = h.tp.partition, error = failed.message.as_deref().unwrap_or_default(), "flush failed");
            }
            *o = failed;
        }
    }
}

async fn respond(mut results: Results, acks: i16, timeout_ms: i32) -> ProduceResponse {
    flush_owed(&mut results).await;
    if acks == -1 {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
        for (_, outcomes) in &mut results {
            for (_, h, o) in outcomes.iter_mut() {
                let (Some(h), Some(last)) = (h.as_ref(), o.last_offset) else {
                    continue;
                };
                if o.code() != 0 || !o.waits_for_fsync {
                    continue;
                }
                let mut rx = h.durable.clone();
                let waited = tokio::time::timeout_at(deadline, rx.wait_for(|d| *d > last)).await;
                if !matches!(waited, Ok(Ok(_))) {
                    *o = Outcome::error(
                        ResponseError::RequestTimedOut,
                        "batch appended but not yet durable within the request timeout",
                    );
                }
            }
        }
    }
    let responses = results
        .into_iter()
        .map(|(name, outcomes)| {
            let partition_responses = outcomes
                .into_iter()
                .map(|(idx, _, o)| {
                    let record_errors = o
                        .record_errors
                        .iter()
                        .map(|(i, m)| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(*i)
                                .with_batch_index_error_message(Some(str(m.clone())))
                        })
                        .collect();
                    PartitionProduceResponse::default()
                        .with_record_errors(record_errors)
                        .with_index(idx)
                        .with_error_code(o.code())
                        .with_base_offset(o.base_offset)
                        .with_log_append_time_ms(o.log_append_time)
                        .with_log_start_offset(o.log_start)
                        .with_error_message(if o.code() != 0 {
                            o.message.map(str)
                        } else {
                            None
                        })
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(str(name)))
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
