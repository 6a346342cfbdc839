//! REST v1: topics, produce (one or a batch), read by offset with long polling.
//! Shapes follow the Confluent REST Proxy where it fits (`records`, `offsets`,
//! `value_schema_id`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::Gateway;
use crate::kafka::PartitionInfo;
use crate::position::{Format, record_json};
use crate::problem::{ApiError, Problem};

/// Records per produce request at most.
pub const MAX_BATCH: usize = 10_000;

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/topics", get(list_topics))
        .route("/topics/{topic}", get(get_topic))
        .route("/topics/{topic}/records", post(produce))
        .route(
            "/topics/{topic}/partitions/{partition}/records",
            get(read_records),
        )
}

#[derive(Serialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: usize,
}

#[derive(Serialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTopicsQuery {
    /// Include internal topics (`__consumer_offsets`).
    pub internal: Option<bool>,
}

/// Lists topics.
#[utoipa::path(get, path = "/v1/topics", params(ListTopicsQuery),
    responses((status = 200, body = TopicList), (status = 502, body = Problem)))]
pub(crate) async fn list_topics(
    State(gw): State<Gateway>,
    Query(q): Query<ListTopicsQuery>,
) -> Result<Json<TopicList>, ApiError> {
    let topics = gw.0.kafka.topics(q.internal.unwrap_or(false)).await?;
    Ok(Json(TopicList {
        topics: topics
            .into_iter()
            .map(|(name, partitions)| TopicSummary { name, partitions })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PartitionDetail {
    #[serde(flatten)]
    pub info: PartitionInfo,
    /// First offset still stored.
    pub earliest_offset: i64,
    /// Next offset to be written (high watermark).
    pub latest_offset: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TopicDetail {
    pub name: String,
    pub partitions: Vec<PartitionDetail>,
}

/// One topic with its partitions and their offsets.
#[utoipa::path(get, path = "/v1/topics/{topic}", params(("topic" = String, Path)),
    responses((status = 200, body = TopicDetail), (status = 404, body = Problem)))]
pub(crate) async fn get_topic(
    State(gw): State<Gateway>,
    Path(topic): Path<String>,
) -> Result<Json<TopicDetail>, ApiError> {
    let kafka = &gw.0.kafka;
    let mut partitions = Vec::new();
    for info in kafka.partitions(&topic).await? {
        let (low, high) = kafka.watermarks(&topic, info.partition).await?;
        partitions.push(PartitionDetail {
            info,
            earliest_offset: low,
            latest_offset: high,
        });
    }
    Ok(Json(TopicDetail {
        name: topic,
        partitions,
    }))
}

/// How keys and values of a produce request are given.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// Any JSON value, stored as its JSON text.
    #[default]
    Json,
    /// A JSON string, stored as its UTF-8 bytes.
    String,
    /// A base64 string, stored as the decoded bytes.
    Binary,
    /// JSON encoded to Avro with the schema `*_schema_id` (Confluent wire format).
    Avro,
    /// JSON validated against the JSON Schema `*_schema_id` (Confluent wire format).
    Jsonschema,
    /// base64 of a serialized message of the first message type of `*_schema_id`.
    Protobuf,
}

/// One record to produce.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecord {
    #[schema(value_type = Object)]
    pub key: Option<Value>,
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// Header name → UTF-8 value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Partition; by default the producer's partitioner (by key).
    pub partition: Option<i32>,
}

/// A produce request: one or more records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    #[schema(min_items = 1, max_items = 10000)]
    pub records: Vec<ProduceRecord>,
    #[serde(default)]
    pub key_format: PayloadFormat,
    #[serde(default)]
    pub value_format: PayloadFormat,
    pub key_schema_id: Option<i32>,
    pub value_schema_id: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProducedOffset {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProduceResponse {
    pub offsets: Vec<ProducedOffset>,
    pub key_schema_id: Option<i32>,
    pub value_schema_id: Option<i32>,
}

async fn encode_all(
    gw: &Gateway,
    format: PayloadFormat,
    schema_id: Option<i32>,
    items: Vec<Option<Value>>,
    what: &str,
) -> Result<Vec<Option<Vec<u8>>>, ApiError> {
    let schema = match (format, schema_id) {
        (PayloadFormat::Avro | PayloadFormat::Jsonschema | PayloadFormat::Protobuf, Some(id)) => {
            let registry =
                gw.0.registry
                    .as_ref()
                    .ok_or_else(|| ApiError::Unprocessable {
                        message: "no schema registry is configured".into(),
                        details: None,
                    })?;
            let loaded = registry.schema(id).await?;
            let expected = match format {
                PayloadFormat::Avro => weft_schema::SchemaType::Avro,
                PayloadFormat::Jsonschema => weft_schema::SchemaType::Json,
                _ => weft_schema::SchemaType::Protobuf,
            };
            if loaded.schema_type != expected {
                return Err(ApiError::Unprocessable {
                    message: format!(
                        "{what}_format {format:?} but schema {id} is {}",
                        loaded.schema_type
                    ),
                    details: None,
                });
            }
            Some(loaded)
        }
        (PayloadFormat::Avro | PayloadFormat::Jsonschema | PayloadFormat::Protobuf, None) => {
            return Err(ApiError::Unprocessable {
                message: format!("{what}_format {format:?} needs {what}_schema_id"),
                details: None,
            });
        }
        (_, Some(_)) => {
            return Err(ApiError::Unprocessable {
                message: format!(
                    "{what}_schema_id needs {what}_format avro, jsonschema or protobuf"
                ),
                details: None,
            });
        }
        _ => None,
    };
    // Encoding and validation are CPU work: off the reactor.
    let is_key = what == "key";
    let what = what.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some(v) = item else {
                out.push(None);
                continue;
            };
            let encoded = match (format, &schema) {
                (_, Some(s)) => crate::registry::encode(s, &v),
                // A key given as a JSON string is its text (so `"key": "a"` partitions,
                // filters and compacts as `a`); any other JSON is stored as JSON text.
                (PayloadFormat::Json, _) if is_key && v.is_string() => {
                    Ok(v.as_str().unwrap_or_default().as_bytes().to_vec())
                }
                (PayloadFormat::Json, _) => Ok(v.to_string().into_bytes()),
                (PayloadFormat::String, _) => v
                    .as_str()
                    .map(|s| s.as_bytes().to_vec())
                    .ok_or_else(|| "string format needs a JSON string".to_owned()),
                (PayloadFormat::Binary, _) => v
                    .as_str()
                    .ok_or_else(|| "binary format needs a base64 string".to_owned())
                    .and_then(|s| {
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .map_err(|e| format!("not base64: {e}"))
                    }),
                _ => Err("no schema".to_owned()),
            };
            match encoded {
                Ok(b) => out.push(Some(b)),
                Err(e) => errors.push(json!({"record": i, "field": what, "reason": e})),
            }
        }
        (out, errors)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (out, errors) = result;
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable {
            message: format!("{} record(s) refused; nothing was produced", errors.len()),
            details: Some(Value::Array(errors)),
        });
    }
    Ok(out)
}

/// Produces one or more records. Every record is encoded and validated before any is
/// sent: a refused request produces nothing.
#[utoipa::path(post, path = "/v1/topics/{topic}/records", params(("topic" = String, Path)),
    request_body = ProduceRequest,
    responses((status = 200, body = ProduceResponse), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn produce(
    State(gw): State<Gateway>,
    Path(topic): Path<String>,
    body: Result<Json<ProduceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ProduceResponse>, ApiError> {
    let Json(req) = body.map_err(|e| match e {
        axum::extract::rejection::JsonRejection::JsonDataError(e) => ApiError::Unprocessable {
            message: format!("invalid produce request: {}", e.body_text()),
            details: None,
        },
        other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(other.body_text())
        }
        other => ApiError::BadRequest(other.body_text()),
    })?;
    if req.records.is_empty() {
        return Err(ApiError::BadRequest("records is empty".into()));
    }
    if req.records.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} records per request"
        )));
    }
    let partitions = gw.0.kafka.partitions(&topic).await?;
    for (i, r) in req.records.iter().enumerate() {
        if let Some(p) = r.partition
            && !partitions.iter().any(|x| x.partition == p)
        {
            return Err(ApiError::Unprocessable {
                message: format!("record {i}: topic {topic:?} has no partition {p}"),
                details: Some(
                    json!([{"record": i, "field": "partition", "reason": "unknown partition"}]),
                ),
            });
        }
    }
    let mut keys = Vec::with_capacity(req.records.len());
    let mut values = Vec::with_capacity(req.records.len());
    let mut meta = Vec::with_capacity(req.records.len());
    for r in req.records {
        keys.push(r.key);
        values.push(r.value);
        meta.push((r.headers, r.partition));
    }
    let keys = encode_all(&gw, req.key_format, req.key_schema_id, keys, "key").await?;
    let values = encode_all(&gw, req.value_format, req.value_schema_id, values, "value").await?;
    let producer = &gw.0.kafka.producer;
    let mut pending = Vec::with_capacity(keys.len());
    for ((key, value), (headers, partition)) in keys.iter().zip(&values).zip(&meta) {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (name, v) in headers {
            h = h.insert(Header {
                key: name,
                value: Some(v.as_bytes()),
            });
        }
        // The W3C context of this request's span, unless the record carries its own
        // (issue 9: HTTP request → produce → consume is one trace). Empty while traces are off.
        if !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("traceparent"))
        {
            for (name, v) in weft_observe::trace::current_headers() {
                h = h.insert(Header {
                    key: name,
                    value: Some(v.as_bytes()),
                });
            }
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(h);
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = value {
            record = record.payload(v.as_slice());
        }
        if let Some(p) = partition {
            record = record.partition(*p);
        }
        // Enqueue every record before awaiting any delivery (`send` would wait for each
        // acknowledgement in turn, one fsync per record); a full queue waits briefly.
        let mut record = record;
        let future = loop {
            match producer.send_result(record) {
                Ok(f) => break f,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    return Err(produce_error(&topic, &e));
                }
            }
        };
        pending.push(future);
    }
    let mut offsets = Vec::with_capacity(pending.len());
    for f in pending {
        let delivery = f
            .await
            .map_err(|_| ApiError::Kafka(format!("produce to {topic:?}: delivery canceled")))?
            .map_err(|(e, _)| produce_error(&topic, &e))?;
        offsets.push(ProducedOffset {
            partition: delivery.partition,
            offset: delivery.offset,
        });
    }
    Ok(Json(ProduceResponse {
        offsets,
        key_schema_id: req.key_schema_id,
        value_schema_id: req.value_schema_id,
    }))
}

/// The broker's refusals that are the caller's doing are 4xx; the rest is a 502.
fn produce_error(topic: &str, e: &rdkafka::error::KafkaError) -> ApiError {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e.rdkafka_error_code() {
        // Internal topics (`__consumer_offsets`) take no records from clients.
        Some(Code::InvalidTopic) => ApiError::Unprocessable {
            message: format!(
                "topic {topic:?} does not take records from clients (internal or invalid)"
            ),
            details: None,
        },
        Some(Code::MessageSizeTooLarge | Code::InvalidRecord) => {
            ApiError::TooLarge(format!("produce to {topic:?}: {e}"))
        }
        _ => ApiError::Kafka(format!("produce to {topic:?}: {e}")),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// First offset to read (default: earliest).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// At most this many records (default 100, at most 10,000).
    pub max_records: Option<usize>,
    /// Long polling: wait up to this long for a first record (default 0; more than 30,000
    /// is taken as 30,000).
    #[param(minimum = 0)]
    pub timeout_ms: Option<i64>,
    /// `auto` (or `json`) or `base64` (or `binary`).
    #[param(value_type = Option<FormatName>)]
    pub format: Option<String>,
}

/// How keys and values are shown in JSON (the `format` query parameter).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum FormatName {
    Auto,
    Json,
    Base64,
    Binary,
}

#[derive(Serialize, ToSchema)]
pub struct ReadResponse {
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Value>,
    /// Offset to pass as `offset` for the next read.
    pub next_offset: i64,
    pub earliest_offset: i64,
    pub latest_offset: i64,
}

/// Reads records of one partition from an offset, waiting up to `timeout_ms` for the first.
#[utoipa::path(get, path = "/v1/topics/{topic}/partitions/{partition}/records",
    params(("topic" = String, Path), ("partition" = i32, Path), ReadQuery),
    responses((status = 200, body = ReadResponse), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem)))]
pub(crate) async fn read_records(
    State(gw): State<Gateway>,
    Path((topic, partition)): Path<(String, i32)>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<ReadResponse>, ApiError> {
    let format = Format::parse(q.format.as_deref()).map_err(ApiError::BadRequest)?;
    let kafka = &gw.0.kafka;
    if !kafka
        .partitions(&topic)
        .await?
        .iter()
        .any(|p| p.partition == partition)
    {
        return Err(ApiError::NotFound(format!(
            "topic {topic:?} has no partition {partition}"
        )));
    }
    let (low, high) = kafka.watermarks(&topic, partition).await?;
    let offset = q.offset.unwrap_or(low);
    if offset < low || offset > high {
        return Err(ApiError::Unprocessable {
            message: format!(
                "offset {offset} is outside the stored range [{low}, {high}] of {topic}/{partition}"
            ),
            details: Some(json!({"earliest_offset": low, "latest_offset": high})),
        });
    }
    let max = q.max_records.unwrap_or(100).clamp(1, 10_000);
    let timeout_ms = q.timeout_ms.unwrap_or(0);
    if timeout_ms < 0 {
        return Err(ApiError::BadRequest(format!(
            "timeout_ms {timeout_ms} is negative"
        )));
    }
    let wait = Duration::from_millis(timeout_ms.unsigned_abs().min(30_000));
    let read = kafka
        .read(
            &topic,
            partition,
            offset,
            None,
            max,
            wait.max(Duration::from_millis(200)),
        )
        .await?;
    let next = read.records.last().map_or(offset, |r| r.offset + 1);
    Ok(Json(ReadResponse {
        records: read
            .records
            .iter()
            .map(|r| record_json(&topic, r, format))
            .collect(),
        next_offset: next,
        earliest_offset: low,
        latest_offset: high.max(next),
    }))
}
