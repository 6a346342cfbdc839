//! Dead-letter topics over HTTP: list a DLQ topic's records with their failure envelope,
//! and redrive selected records to their original topic (or another), like `weft dlq`.
//!
//! The decisions are `weft_resilience::dlq`'s, shared with `weft dlq` and the SDK:
//! [`dlq::decide`] (selection, already redriven, target from the envelope),
//! [`dlq::redrive_headers`] (original headers plus the redrive markers) and the marker
//! records on the compacted `<dlq>.redriven` topic keyed `<dlq>/<partition>/<offset>`.
//! Because the markers are the same, a record redriven here is skipped by `weft dlq
//! redrive` and the other way round: redrive is idempotent across both. Only this file's
//! I/O (reads through the gateway's Kafka readers, an idempotent `murmur2_random` producer
//! like the CLI's, so a key lands on the partition the SDK would pick) is the gateway's.
//!
//! The webhook DLQ (`weft.webhooks.dlq`) is a DLQ topic like any other: its records carry
//! the envelope (source `webhook`) and `weft-webhook-id`; `webhook_id` selects them. Redriving
//! them here re-publishes to the original topic, so every reader of it sees them again;
//! `POST /v1/webhooks/{id}/redrive` (`webhooks::api::redrive`) re-delivers to the one
//! subscription instead, through [`plan`] and [`mark`] below.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;
use utoipa::{IntoParams, ToSchema};
use weft_resilience::ErrorClass;
use weft_resilience::dlq::{
    self, DeadLetter, DlqRecord, Header, Plan, Republish, Selection, Skip, TopicNaming,
};

use crate::Gateway;
use crate::kafka::{Kafka, Record, base_config};
use crate::position::{Format, record_json};
use crate::problem::{ApiError, Problem};

/// Redrives run one at a time: each reads the markers, then publishes and marks; two at
/// once could both see a record unmarked. A webhook redrive marks each record only after
/// its delivery settled, in the background: until then its DLQ position is in `delivering`
/// and another redrive skips it.
pub(crate) struct Redrives {
    one_at_a_time: Semaphore,
    pub(crate) delivering: std::sync::Mutex<HashSet<(String, i32, i64)>>,
}

impl Default for Redrives {
    fn default() -> Self {
        Redrives {
            one_at_a_time: Semaphore::new(1),
            delivering: std::sync::Mutex::new(HashSet::new()),
        }
    }
}

impl Redrives {
    /// Waits for the other redrives to finish.
    pub(crate) async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        self.one_at_a_time
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("gateway is shutting down".into()))
    }
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/dlq/{topic}/records", get(list))
        .route("/dlq/{topic}/redrive", post(redrive))
}

/// Which DLQ records (all criteria must hold).
/// The query of `GET …/records` and, flattened, the body of both redrive routes: one list
/// of fields, so the two cannot drift.
#[derive(Debug, Default, Clone, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct DlqSelection {
    /// Only this DLQ partition.
    #[param(minimum = 0)]
    #[schema(minimum = 0)]
    pub partition: Option<i32>,
    /// DLQ offsets from (inclusive).
    #[param(minimum = 0)]
    #[schema(minimum = 0)]
    pub from_offset: Option<i64>,
    /// DLQ offsets to (inclusive).
    #[param(minimum = 0)]
    #[schema(minimum = 0)]
    pub to_offset: Option<i64>,
    /// Records with exactly this key (UTF-8).
    pub key: Option<String>,
    /// `retryable`, `non-retryable` or `park`.
    #[param(pattern = "^(retryable|non-retryable|park)$")]
    #[schema(pattern = "^(retryable|non-retryable|park)$")]
    pub error_class: Option<String>,
    /// Only records dead-lettered by this webhook (`weft-webhook-id`).
    pub webhook_id: Option<String>,
}

impl DlqSelection {
    pub(crate) fn selection(&self) -> Result<Selection, ApiError> {
        let error_class = self
            .error_class
            .as_deref()
            .map(|c| {
                c.parse::<ErrorClass>()
                    .map_err(|e| ApiError::Unprocessable {
                        message: format!("error_class: {e}"),
                        details: None,
                    })
            })
            .transpose()?;
        let offsets = match (self.from_offset, self.to_offset) {
            (None, None) => None,
            (from, to) => {
                let (from, to) = (from.unwrap_or(0), to.unwrap_or(i64::MAX));
                if from < 0 || to < from {
                    return Err(ApiError::Unprocessable {
                        message: format!("offsets {from}..{to} are not a range"),
                        details: None,
                    });
                }
                Some((from, to))
            }
        };
        Ok(Selection {
            partitions: self.partition.into_iter().collect(),
            offsets,
            key: self.key.as_ref().map(|k| k.as_bytes().to_vec()),
            error_class,
            min_age: None,
            max_age: None,
        })
    }

    pub(crate) fn matches_webhook(&self, headers: &[Header]) -> bool {
        self.webhook_id.as_deref().is_none_or(|id| {
            dlq::last_header(headers, crate::webhooks::WEBHOOK_ID_HEADER)
                .and_then(Header::value_str)
                == Some(id)
        })
    }
}

pub(crate) fn headers_of(r: &Record) -> Vec<Header> {
    r.headers
        .iter()
        .map(|(k, v)| Header {
            key: k.clone(),
            value: v.as_ref().map(|b| b.to_vec()),
        })
        .collect()
}

pub(crate) fn view<'a>(r: &'a Record, headers: &'a [Header]) -> DlqRecord<'a> {
    DlqRecord {
        partition: r.partition,
        offset: r.offset,
        key: r.key.as_deref(),
        timestamp: r.timestamp,
        headers,
    }
}

/// Every record of `topic` up to its end as of now (`None` when the topic does not exist).
pub(crate) async fn read_all(kafka: &Kafka, topic: &str) -> Result<Option<Vec<Record>>, ApiError> {
    let partitions = match kafka.partitions(topic).await {
        Ok(p) => p,
        Err(ApiError::TopicNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for p in partitions {
        let (low, high) = kafka.watermarks(topic, p.partition).await?;
        let mut next = low;
        while next < high {
            let read = kafka
                .read(
                    topic,
                    p.partition,
                    next,
                    Some(high),
                    1000,
                    Duration::from_secs(5),
                )
                .await?;
            // An empty read stopped at the end as the broker sees it: the rest of
            // `next..high` holds no record (compacted away, control markers).
            if read.records.is_empty() {
                break;
            }
            next = read.next.max(next + 1);
            out.extend(read.records);
        }
    }
    Ok(Some(out))
}

/// `(partition, offset)` of the records of `dlq_topic` with a redrive marker.
pub(crate) async fn redriven(
    kafka: &Kafka,
    dlq_topic: &str,
) -> Result<HashSet<(i32, i64)>, ApiError> {
    let markers = TopicNaming::default().redriven_topic(dlq_topic);
    let mut done = HashSet::new();
    for r in read_all(kafka, &markers).await?.unwrap_or_default() {
        let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        if let Some((topic, p, o)) = dlq::parse_redrive_marker_key(key)
            && topic == dlq_topic
        {
            if r.value.is_some() {
                done.insert((p, o));
            } else {
                done.remove(&(p, o));
            }
        }
    }
    Ok(done)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many records (default 100, at most 10000).
    pub max_records: Option<usize>,
    /// `auto` (or `json`) or `base64` (or `binary`).
    #[param(value_type = Option<crate::rest::FormatName>)]
    pub format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DlqList {
    pub topic: String,
    /// Records with `dead_letter` (the parsed envelope, or null with `envelope_error`)
    /// and `redriven`.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Value>,
    /// True when more records matched than were returned.
    pub truncated: bool,
}

/// Records of a DLQ topic with their failure envelope and whether they were redriven.
#[utoipa::path(get, path = "/v1/dlq/{topic}/records", operation_id = "list_dlq_records",
    params(("topic" = String, Path), DlqSelection, ListQuery),
    responses((status = 200, body = DlqList), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem)))]
pub(crate) async fn list(
    State(gw): State<Gateway>,
    Path(topic): Path<String>,
    Query(select): Query<DlqSelection>,
    Query(q): Query<ListQuery>,
) -> Result<Json<DlqList>, ApiError> {
    let selection = select.selection()?;
    let format = Format::parse(q.format.as_deref()).map_err(ApiError::BadRequest)?;
    let max = q.max_records.unwrap_or(100).clamp(1, 10_000);
    let kafka = &gw.0.kafka;
    let records = read_all(kafka, &topic)
        .await?
        .ok_or_else(|| ApiError::TopicNotFound(topic.clone()))?;
    let done = redriven(kafka, &topic).await?;
    let now = weft_store::now_ms();
    let mut out = Vec::new();
    let mut truncated = false;
    for r in &records {
        let headers = headers_of(r);
        if !selection.matches(&view(r, &headers), now) || !select.matches_webhook(&headers) {
            continue;
        }
        if out.len() >= max {
            truncated = true;
            break;
        }
        let mut v = record_json(&topic, r, format);
        match DeadLetter::parse(&headers) {
            Ok(l) => v["dead_letter"] = l.to_json(),
            Err(e) => {
                v["dead_letter"] = Value::Null;
                v["envelope_error"] = Value::String(e.to_string());
            }
        }
        v["redriven"] = Value::Bool(done.contains(&(r.partition, r.offset)));
        out.push(v);
    }
    Ok(Json(DlqList {
        topic,
        records: out,
        truncated,
    }))
}

/// What to redrive and where.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RedriveRequest {
    #[serde(flatten)]
    pub select: DlqSelection,
    /// Publish to this topic instead of each record's original topic.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,249}$")]
    pub to: Option<String>,
    /// Only report what would be redriven.
    #[serde(default)]
    pub dry_run: bool,
    /// Anything else: refused (`deny_unknown_fields` does not mix with `flatten`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, Value>,
}

/// Refuses a body with fields outside its schema (collected by a flattened map).
pub(crate) fn refuse_unknown(unknown: &BTreeMap<String, Value>) -> Result<(), ApiError> {
    match unknown.keys().next() {
        None => Ok(()),
        Some(field) => Err(ApiError::Unprocessable {
            message: format!("unknown field `{field}`"),
            details: None,
        }),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redriven {
    pub partition: i32,
    pub offset: i64,
    pub target: String,
    /// Where it was published (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_offset: Option<i64>,
}

impl Redriven {
    /// Taken for a redrive not done yet (a dry run, a webhook's background delivery).
    pub(crate) fn planned(partition: i32, offset: i64, target: String) -> Redriven {
        Redriven {
            partition,
            offset,
            target,
            target_partition: None,
            target_offset: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
}

impl Skipped {
    /// `already_redriven`, or `no target (…)` followed by `hint`.
    pub(crate) fn new(r: &Record, skip: &Skip, hint: &str) -> Skipped {
        Skipped {
            partition: r.partition,
            offset: r.offset,
            reason: match skip {
                Skip::AlreadyRedriven => "already_redriven".into(),
                Skip::NoTarget(e) => format!("no target ({e}); {hint}"),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveResponse {
    pub dry_run: bool,
    pub redriven: Vec<Redriven>,
    /// Selected but not redriven: `already_redriven`, or no target (no `to` and no
    /// readable envelope).
    pub skipped: Vec<Skipped>,
}

/// Re-publishes selected DLQ records to their original topic (or `to`) with their key,
/// value and headers plus the redrive markers; each is marked on `<dlq>.redriven` once
/// the broker acknowledged it, so a record is redriven once (here or by `weft dlq`).
#[utoipa::path(post, path = "/v1/dlq/{topic}/redrive", operation_id = "redrive_dlq", params(("topic" = String, Path)),
    request_body = RedriveRequest,
    responses((status = 200, body = RedriveResponse), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem)))]
pub(crate) async fn redrive(
    State(gw): State<Gateway>,
    Path(topic): Path<String>,
    body: Result<Json<RedriveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RedriveResponse>, ApiError> {
    let req = crate::consumers::json_body(body)?;
    refuse_unknown(&req.unknown)?;
    if let Some(to) = &req.to {
        dlq::validate_topic_name(to).map_err(|e| ApiError::Unprocessable {
            message: format!("to: {e}"),
            details: None,
        })?;
    }
    let _turn = gw.0.redrives.turn().await?;
    let kafka = &gw.0.kafka;
    let (records, plan) = plan(&gw, &topic, &req.select, req.to.as_deref()).await?;
    let skipped = plan
        .skipped
        .iter()
        .map(|(i, skip)| Skipped::new(&records[*i].0, skip, "give `to`"))
        .collect();
    // Every target must exist before anything is published.
    for t in plan.targets() {
        match kafka.partitions(t).await {
            Ok(_) => {}
            Err(ApiError::TopicNotFound(_)) => {
                return Err(ApiError::Unprocessable {
                    message: format!(
                        "target topic {t:?} does not exist; create it first (nothing was redriven)"
                    ),
                    details: None,
                });
            }
            Err(e) => return Err(e),
        }
    }
    if req.dry_run {
        return Ok(Json(RedriveResponse {
            dry_run: true,
            redriven: plan
                .redrive
                .into_iter()
                .map(|(i, target)| {
                    Redriven::planned(records[i].0.partition, records[i].0.offset, target)
                })
                .collect(),
            skipped,
        }));
    }
    let markers = TopicNaming::default().redriven_topic(&topic);
    if !plan.redrive.is_empty() {
        ensure_marker_topic(kafka.bootstrap(), &markers).await?;
    }
    let producer: FutureProducer = base_config(kafka.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(|e| ApiError::Kafka(format!("cannot create the redrive producer: {e}")))?;
    let mut redriven = Vec::new();
    for (i, target) in plan.redrive {
        let (r, headers) = &records[i];
        let out = Republish::new(&topic, &view(r, headers), target, weft_store::now_ms());
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&out.target).headers(kafka_headers(&out.headers));
        if let Some(k) = r.key.as_deref() {
            record = record.key(k);
        }
        if let Some(v) = r.value.as_deref() {
            record = record.payload(v);
        }
        let (partition, offset) = producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| ApiError::Kafka(out.publish_failed(redriven.len(), &e)))?;
        mark(&producer, &markers, &out, partition, offset).await?;
        redriven.push(Redriven {
            partition: r.partition,
            offset: r.offset,
            target: out.target,
            target_partition: Some(partition),
            target_offset: Some(offset),
        });
    }
    tracing::info!(topic, redriven = redriven.len(), "dlq redrive");
    Ok(Json(RedriveResponse {
        dry_run: false,
        redriven,
        skipped,
    }))
}

/// A DLQ record with its headers (as `weft_resilience::dlq` sees them).
pub(crate) type DlqEntry = (Record, Vec<Header>);

/// Reads DLQ `topic` and its markers and decides for every record: the plan refers to
/// the records by index. Without `to`, a record's target is its original topic. A record
/// a webhook redrive is still delivering counts as redriven.
pub(crate) async fn plan(
    gw: &Gateway,
    topic: &str,
    select: &DlqSelection,
    to: Option<&str>,
) -> Result<(Vec<DlqEntry>, Plan<usize>), ApiError> {
    let selection = select.selection()?;
    let kafka = &gw.0.kafka;
    let records: Vec<DlqEntry> = read_all(kafka, topic)
        .await?
        .ok_or_else(|| ApiError::TopicNotFound(topic.to_owned()))?
        .into_iter()
        .map(|r| {
            let headers = headers_of(&r);
            (r, headers)
        })
        .filter(|(_, headers)| select.matches_webhook(headers))
        .collect();
    let mut done = redriven(kafka, topic).await?;
    if let Ok(delivering) = gw.0.redrives.delivering.lock() {
        done.extend(
            delivering
                .iter()
                .filter(|(t, _, _)| t == topic)
                .map(|(_, p, o)| (*p, *o)),
        );
    }
    let now = weft_store::now_ms();
    let mut plan = Plan::default();
    for (i, (r, headers)) in records.iter().enumerate() {
        plan.add(
            i,
            dlq::decide(&view(r, headers), &selection, &done, to, now),
        );
    }
    Ok((records, plan))
}

/// Writes the marker of `out`, re-published at `partition`/`offset` of its target, on
/// `markers`.
pub(crate) async fn mark(
    producer: &FutureProducer,
    markers: &str,
    out: &Republish,
    partition: i32,
    offset: i64,
) -> Result<(), ApiError> {
    let key = out.marker_key();
    let value = out.marker(partition, offset);
    producer
        .send(
            FutureRecord::to(markers)
                .key(key.as_bytes())
                .payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| ApiError::Kafka(out.mark_failed(markers, partition, offset, &e)))
}

fn kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |hs, h| {
        hs.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        })
    })
}

/// Creates the compacted marker topic if it does not exist yet (as `weft dlq` does).
pub(crate) async fn ensure_marker_topic(bootstrap: &str, name: &str) -> Result<(), ApiError> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap)
        .create()
        .map_err(|e| ApiError::Kafka(format!("cannot create an admin client: {e}")))?;
    let options = AdminOptions::new()
        .request_timeout(Some(crate::kafka::META_TIMEOUT))
        .operation_timeout(Some(crate::kafka::META_TIMEOUT));
    let topic =
        NewTopic::new(name, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|e| ApiError::Kafka(format!("cannot create {name:?}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ApiError::Kafka(format!(
                    "cannot create the redrive marker topic {topic:?}: {code}"
                )));
            }
        }
    }
    Ok(())
}
