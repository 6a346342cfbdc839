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
//! the envelope (source `webhook`) and `weft-webhook-id`; `webhook_id` selects them.

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
    self, DeadLetter, Decision, DlqRecord, Header, RedriveMarker, Selection, TopicNaming,
};

use crate::Gateway;
use crate::kafka::{Kafka, Record, base_config};
use crate::position::{Format, record_json};
use crate::problem::{ApiError, Problem};

/// Redrives run one at a time: each reads the markers, then publishes and marks; two at
/// once could both see a record unmarked.
pub(crate) struct Redrives(Semaphore);

impl Default for Redrives {
    fn default() -> Self {
        Redrives(Semaphore::new(1))
    }
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/dlq/{topic}/records", get(list))
        .route("/dlq/{topic}/redrive", post(redrive))
}

/// Which DLQ records (all criteria must hold).
#[derive(Debug, Default, Clone, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct DlqSelection {
    /// Only this DLQ partition.
    #[param(minimum = 0)]
    pub partition: Option<i32>,
    /// DLQ offsets from (inclusive).
    #[param(minimum = 0)]
    pub from_offset: Option<i64>,
    /// DLQ offsets to (inclusive).
    #[param(minimum = 0)]
    pub to_offset: Option<i64>,
    /// Records with exactly this key (UTF-8).
    pub key: Option<String>,
    /// `retryable`, `non-retryable` or `park`.
    #[param(pattern = "^(retryable|non-retryable|park)$")]
    pub error_class: Option<String>,
    /// Only records dead-lettered by this webhook (`weft-webhook-id`).
    pub webhook_id: Option<String>,
}

impl DlqSelection {
    fn selection(&self) -> Result<Selection, ApiError> {
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

    fn matches_webhook(&self, headers: &[Header]) -> bool {
        self.webhook_id.as_deref().is_none_or(|id| {
            dlq::last_header(headers, "weft-webhook-id").and_then(Header::value_str) == Some(id)
        })
    }
}

fn headers_of(r: &Record) -> Vec<Header> {
    r.headers
        .iter()
        .map(|(k, v)| Header {
            key: k.clone(),
            value: v.as_ref().map(|b| b.to_vec()),
        })
        .collect()
}

fn view<'a>(r: &'a Record, headers: &'a [Header]) -> DlqRecord<'a> {
    DlqRecord {
        partition: r.partition,
        offset: r.offset,
        key: r.key.as_deref(),
        timestamp: r.timestamp,
        headers,
    }
}

/// Every record of `topic` up to its end as of now (`None` when the topic does not exist).
async fn read_all(kafka: &Kafka, topic: &str) -> Result<Option<Vec<Record>>, ApiError> {
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
async fn redriven(kafka: &Kafka, dlq_topic: &str) -> Result<HashSet<(i32, i64)>, ApiError> {
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
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Only this DLQ partition.
    #[schema(minimum = 0)]
    pub partition: Option<i32>,
    /// DLQ offsets from (inclusive).
    #[schema(minimum = 0)]
    pub from_offset: Option<i64>,
    /// DLQ offsets to (inclusive).
    #[schema(minimum = 0)]
    pub to_offset: Option<i64>,
    /// Records with exactly this key (UTF-8).
    pub key: Option<String>,
    /// `retryable`, `non-retryable` or `park`.
    #[schema(pattern = "^(retryable|non-retryable|park)$")]
    pub error_class: Option<String>,
    /// Only records dead-lettered by this webhook (`weft-webhook-id`).
    pub webhook_id: Option<String>,
    /// Publish to this topic instead of each record's original topic.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,249}$")]
    pub to: Option<String>,
    /// Only report what would be redriven.
    #[serde(default)]
    pub dry_run: bool,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
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
    let req = body.map(|Json(b)| b).map_err(|e| match e {
        axum::extract::rejection::JsonRejection::JsonDataError(e) => ApiError::Unprocessable {
            message: e.body_text(),
            details: None,
        },
        other => ApiError::BadRequest(other.body_text()),
    })?;
    let select = DlqSelection {
        partition: req.partition,
        from_offset: req.from_offset,
        to_offset: req.to_offset,
        key: req.key.clone(),
        error_class: req.error_class.clone(),
        webhook_id: req.webhook_id.clone(),
    };
    let selection = select.selection()?;
    if let Some(to) = &req.to {
        dlq::validate_topic_name(to).map_err(|e| ApiError::Unprocessable {
            message: format!("to: {e}"),
            details: None,
        })?;
    }
    let _one_at_a_time =
        gw.0.redrives
            .0
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("gateway is shutting down".into()))?;
    let kafka = &gw.0.kafka;
    let records = read_all(kafka, &topic)
        .await?
        .ok_or_else(|| ApiError::TopicNotFound(topic.clone()))?;
    let done = redriven(kafka, &topic).await?;
    let now = weft_store::now_ms();
    let mut plan: Vec<(&Record, Vec<Header>, String)> = Vec::new();
    let mut skipped = Vec::new();
    for r in &records {
        let headers = headers_of(r);
        if !select.matches_webhook(&headers) {
            continue;
        }
        match dlq::decide(
            &view(r, &headers),
            &selection,
            &done,
            req.to.as_deref(),
            now,
        ) {
            Decision::Redrive { target } => plan.push((r, headers, target)),
            Decision::AlreadyRedriven => skipped.push(Skipped {
                partition: r.partition,
                offset: r.offset,
                reason: "already_redriven".into(),
            }),
            Decision::NoTarget(e) => skipped.push(Skipped {
                partition: r.partition,
                offset: r.offset,
                reason: format!("no target ({e}); give `to`"),
            }),
            Decision::NotSelected => {}
        }
    }
    // Every target must exist before anything is published.
    let targets: BTreeMap<&str, ()> = plan.iter().map(|(_, _, t)| (t.as_str(), ())).collect();
    for t in targets.keys() {
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
                .into_iter()
                .map(|(r, _, target)| Redriven {
                    partition: r.partition,
                    offset: r.offset,
                    target,
                    target_partition: None,
                    target_offset: None,
                })
                .collect(),
            skipped,
        }));
    }
    let markers = TopicNaming::default().redriven_topic(&topic);
    if !plan.is_empty() {
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
    for (r, headers, target) in plan {
        let at = weft_store::now_ms();
        let headers = dlq::redrive_headers(&headers, &topic, r.partition, r.offset, at);
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&target).headers(kafka_headers(&headers));
        if let Some(k) = r.key.as_deref() {
            record = record.key(k);
        }
        if let Some(v) = r.value.as_deref() {
            record = record.payload(v);
        }
        let delivery = producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| {
                ApiError::Kafka(format!(
                    "cannot publish {topic}/{}/{} to {target:?} after {} redriven: {e}",
                    r.partition,
                    r.offset,
                    redriven.len()
                ))
            })?;
        let marker = RedriveMarker {
            target_topic: target.clone(),
            target_partition: delivery.partition,
            target_offset: delivery.offset,
            redriven_at: at,
        }
        .encode();
        let key = dlq::redrive_marker_key(&topic, r.partition, r.offset);
        producer
            .send(
                FutureRecord::to(&markers)
                    .key(key.as_bytes())
                    .payload(&marker),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| {
                ApiError::Kafka(format!(
                    "published {key} to {target}/{}/{} but cannot record it on {markers:?}: {e} \
                     (it may be redriven again)",
                    delivery.partition, delivery.offset
                ))
            })?;
        redriven.push(Redriven {
            partition: r.partition,
            offset: r.offset,
            target,
            target_partition: Some(delivery.partition),
            target_offset: Some(delivery.offset),
        });
    }
    tracing::info!(topic, redriven = redriven.len(), "dlq redrive");
    Ok(Json(RedriveResponse {
        dry_run: false,
        redriven,
        skipped,
    }))
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
async fn ensure_marker_topic(bootstrap: &str, name: &str) -> Result<(), ApiError> {
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
