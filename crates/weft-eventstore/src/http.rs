//! HTTP/JSON under `/v1/streams`, for the gateway's listener (`weft serve` merges
//! [`router`] into its HTTP router).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/streams/{stream}` | append `{"expected_version", "events": [{"id"?, "type", "data", "metadata"?}]}` → 201 (200 for an idempotent retry) |
//! | `POST /v1/streams` | atomic multi-stream append `{"appends": [{"stream", "expected_version", "events"}]}` |
//! | `GET /v1/streams/{stream}?from=&direction=&limit=` | read a stream (`from` is a revision) |
//! | `GET /v1/streams/$all?from=&direction=&limit=&category=&type=&prefix=` | read `$all` (`from` is a position) |
//! | `GET /v1/streams/{stream}/subscribe?after=` | Server-Sent Events, `id:` = position; resumes after `Last-Event-ID` |
//! | `GET /v1/streams/{stream}/metadata`, `PUT …` | stream info / retention metadata |
//! | `DELETE /v1/streams/{stream}?expected_version=&hard=` | soft delete, or tombstone with `hard=true` |
//! | `PUT`/`GET /v1/event-types/{type}` | declare (JSON Schema, visibility, public mapping) / show an event type |
//! | `GET /v1/projections/{name}` | a projection's checkpoint, head and lag (events, seconds) |
//! | `GET /v1/subscriptions/{group}` | a persistent subscription group's checkpoint and parked count |
//! | `POST /v1/scavenge?batch=` | delete what reads no longer return (metadata, deletes), in batches |
//!
//! Errors are `{"code", "message"}` with a stable code: `wrong_expected_version` (409, with
//! `actual_revision`), `stream_deleted` (410), `event_too_large` (413), `invalid_request`
//! (400), `schema_mismatch` (400), `not_found` (404), `forbidden` (403), `internal` (500).
//!
//! Authorisation, when the listener enforces ACLs (weft-auth's `Permissions` request
//! extension), is EventStoreDB's per-stream ACL (`$acl` with `$r`, `$w`, `$d`, `$mr`, `$mw`)
//! in the one ACL model, on `stream` resources: a literal ACL names one stream, a prefixed
//! one a category (`order-` covers `order-1`, `order-2`…, what `$ce-order` gathers).
//!
//! | route | check | EventStoreDB |
//! |---|---|---|
//! | `GET /v1/streams/{s}`, `…/subscribe` | READ stream `s` | `$r` |
//! | `POST /v1/streams/{s}`; each stream of `POST /v1/streams` (all or nothing) | WRITE stream `s` | `$w` |
//! | `DELETE /v1/streams/{s}` | DELETE stream `s` | `$d` |
//! | `GET /v1/streams/{s}/metadata` | DESCRIBE_CONFIGS stream `s` | `$mr` |
//! | `PUT /v1/streams/{s}/metadata` | ALTER_CONFIGS stream `s` | `$mw` |
//! | `GET /v1/streams/$all…`, `…/$all/subscribe` (any filter) | READ stream `$all` | `$all`'s `$r` (admins by default) |
//!
//! Default deny applies as everywhere: a stream without an ACL is open to super-users only,
//! as EventStoreDB's `$`-system streams are. Event types, projections, subscription groups
//! and scavenging keep the listener's route checks.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use weft_auth::http::Permissions;
use weft_auth::{Operation, ResourceType};

use crate::store::MAX_READ;
use crate::subscription::Message;
use crate::types::{Direction, EventData, ExpectedVersion, Filter, StreamAppend, StreamMetadata};
use crate::{Error, EventStore};

/// The `/v1/streams` routes over `store`.
pub fn router(store: EventStore) -> Router {
    // Whole requests up to a few events of the largest size; each event is checked again.
    let limit = store
        .options()
        .max_event_bytes
        .saturating_mul(4)
        .max(1 << 20);
    Router::new()
        .route("/v1/streams", post(append_multi))
        .route(
            "/v1/streams/{stream}",
            post(append).get(read).delete(delete),
        )
        .route("/v1/streams/{stream}/subscribe", get(subscribe))
        .route("/v1/streams/{stream}/metadata", get(info).put(set_metadata))
        .route("/v1/event-types/{event_type}", get(get_type).put(put_type))
        .route("/v1/projections/{name}", get(projection))
        .route("/v1/subscriptions/{group}", get(group))
        .route("/v1/scavenge", post(scavenge))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(store)
}

/// One table from errors to answers.
fn problem(e: &Error) -> Response {
    let (status, code) = match e {
        Error::WrongExpectedVersion { .. } => (StatusCode::CONFLICT, "wrong_expected_version"),
        Error::PartialDuplicate { .. } => (StatusCode::CONFLICT, "partial_duplicate"),
        Error::StreamDeleted(_) => (StatusCode::GONE, "stream_deleted"),
        Error::EventTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "event_too_large"),
        Error::SchemaMismatch { .. } => (StatusCode::BAD_REQUEST, "schema_mismatch"),
        Error::InvalidStreamName { .. }
        | Error::InvalidExpectedVersion(_)
        | Error::InvalidEvent(_)
        | Error::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Error::Corrupt(_) | Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let mut body = json!({ "code": code, "message": e.to_string() });
    if let Error::WrongExpectedVersion { actual, .. } = e {
        body["actual_revision"] = json!(actual);
    }
    (status, Json(body)).into_response()
}

fn bad_request(message: String) -> Response {
    problem(&Error::Invalid(message))
}

/// The caller's rights when the listener authorises (see the module docs).
type Perms = Option<Extension<Permissions>>;

/// The stream resource reading `$all` needs.
const ALL: &str = "$all";

/// 403 unless the caller may do `operation` on `stream`; no permissions (authorisation off)
/// allow everything.
// The error is the answer itself, returned at once: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn allowed(p: &Perms, operation: Operation, stream: &str) -> Result<(), Response> {
    match p {
        Some(Extension(p)) if !p.allows(operation, ResourceType::Stream, stream) => {
            let message = format!(
                "{} is denied operation {operation} on stream {stream}",
                p.principal()
            );
            let body = json!({ "code": "forbidden", "message": message });
            Err((StatusCode::FORBIDDEN, Json(body)).into_response())
        }
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody {
    #[serde(default = "any")]
    expected_version: ExpectedVersion,
    events: Vec<EventData>,
}

fn any() -> ExpectedVersion {
    ExpectedVersion::Any
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiBody {
    appends: Vec<StreamBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamBody {
    stream: String,
    #[serde(default = "any")]
    expected_version: ExpectedVersion,
    events: Vec<EventData>,
}

// The error is the answer itself, returned at once: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}")))
}

async fn append(
    State(store): State<EventStore>,
    Path(stream): Path<String>,
    p: Perms,
    body: Bytes,
) -> Response {
    if let Err(r) = allowed(&p, Operation::Write, &stream) {
        return r;
    }
    let body: AppendBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match store
        .append(&stream, body.expected_version, body.events)
        .await
    {
        Ok(w) => {
            let status = if w.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, Json(w)).into_response()
        }
        Err(e) => problem(&e),
    }
}

async fn append_multi(State(store): State<EventStore>, p: Perms, body: Bytes) -> Response {
    let body: MultiBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // All or nothing, like the append itself: one denied stream refuses the request.
    for a in &body.appends {
        if let Err(r) = allowed(&p, Operation::Write, &a.stream) {
            return r;
        }
    }
    let appends = body
        .appends
        .into_iter()
        .map(|a| StreamAppend {
            stream: a.stream,
            expected: a.expected_version,
            events: a.events,
        })
        .collect();
    match store.append_multi(appends).await {
        Ok(w) => (StatusCode::CREATED, Json(json!({ "results": w }))).into_response(),
        Err(e) => problem(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    from: Option<String>,
    #[serde(default)]
    direction: Direction,
    limit: Option<usize>,
    category: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    prefix: Option<String>,
}

impl ReadQuery {
    fn filter(&self) -> Filter {
        Filter {
            stream: None,
            category: self.category.clone(),
            stream_prefix: self.prefix.clone(),
            event_types: self.event_type.iter().cloned().collect(),
        }
    }
}

/// `start`, `end` or a number.
// The error is the answer itself, returned at once: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn parse_from(from: Option<&str>, direction: Direction) -> Result<u64, Response> {
    match (from, direction) {
        (None | Some("start"), Direction::Forwards) => Ok(0),
        (None | Some("end"), Direction::Backwards) => Ok(u64::MAX),
        (Some("start"), Direction::Backwards) => Ok(0),
        (Some("end"), Direction::Forwards) => Ok(u64::MAX),
        (Some(n), _) => n
            .parse()
            .map_err(|_| bad_request(format!("from={n:?}: expected start, end or a number"))),
    }
}

async fn read(
    State(store): State<EventStore>,
    Path(stream): Path<String>,
    p: Perms,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = allowed(&p, Operation::Read, &stream) {
        return r;
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let from = match parse_from(q.from.as_deref(), q.direction) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_READ);
    let result = if stream == ALL {
        let from = if q.direction == Direction::Forwards {
            from.max(1)
        } else {
            from
        };
        store.read_all(from, q.direction, limit, &q.filter()).await
    } else {
        if q.category.is_some() || q.event_type.is_some() || q.prefix.is_some() {
            return bad_request("category, type and prefix filter $all only".to_owned());
        }
        store.read_stream(&stream, from, q.direction, limit).await
    };
    match result {
        Ok(events) => Json(json!({ "events": events })).into_response(),
        Err(e) => problem(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeQuery {
    after: Option<u64>,
    category: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    prefix: Option<String>,
}

async fn subscribe(
    State(store): State<EventStore>,
    Path(stream): Path<String>,
    p: Perms,
    headers: HeaderMap,
    query: Result<Query<SubscribeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = allowed(&p, Operation::Read, &stream) {
        return r;
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let filter = if stream == ALL {
        Filter {
            stream: None,
            category: q.category,
            stream_prefix: q.prefix,
            event_types: q.event_type.into_iter().collect(),
        }
    } else {
        if let Err(e) = crate::validate_stream_name(&stream) {
            return problem(&e);
        }
        Filter {
            stream: Some(stream),
            category: q.category,
            stream_prefix: q.prefix,
            event_types: q.event_type.into_iter().collect(),
        }
    };
    // Resume: the browser's EventSource sends the last `id:` it saw.
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    let after = match (q.after, last_id) {
        (_, Some(Ok(id))) => id,
        (_, Some(Err(_))) => return bad_request("Last-Event-ID is not a position".to_owned()),
        (Some(a), None) => a,
        (None, None) => 0,
    };
    let sub = store.subscribe(filter, after);
    let events = futures_util::stream::unfold(sub, |mut sub| async move {
        let event = match sub.next().await? {
            Ok(Message::Event(e)) => {
                let position = e.position;
                let event_type = e.event_type.clone();
                match Event::default()
                    .id(position.to_string())
                    .event(event_type)
                    .json_data(&e)
                {
                    Ok(ev) => ev,
                    Err(err) => Event::default().event("error").data(err.to_string()),
                }
            }
            Ok(Message::CaughtUp { position }) => Event::default()
                .event("caught_up")
                .data(position.to_string()),
            Err(e) => Event::default().event("error").data(e.to_string()),
        };
        Some((Ok::<_, Infallible>(event), sub))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn info(State(store): State<EventStore>, Path(stream): Path<String>, p: Perms) -> Response {
    if let Err(r) = allowed(&p, Operation::DescribeConfigs, &stream) {
        return r;
    }
    match store.stream_info(&stream).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => problem(&Error::NotFound(format!("stream {stream} does not exist"))),
        Err(e) => problem(&e),
    }
}

async fn set_metadata(
    State(store): State<EventStore>,
    Path(stream): Path<String>,
    p: Perms,
    body: Bytes,
) -> Response {
    if let Err(r) = allowed(&p, Operation::AlterConfigs, &stream) {
        return r;
    }
    let meta: StreamMetadata = match parse(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match store.set_stream_metadata(&stream, meta).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    expected_version: Option<String>,
    #[serde(default)]
    hard: bool,
}

async fn delete(
    State(store): State<EventStore>,
    Path(stream): Path<String>,
    p: Perms,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = allowed(&p, Operation::Delete, &stream) {
        return r;
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let expected = match q.expected_version.as_deref().map(str::parse) {
        None => ExpectedVersion::Any,
        Some(Ok(v)) => v,
        Some(Err(e)) => return problem(&e),
    };
    match store.delete_stream(&stream, expected, q.hard).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(&e),
    }
}

async fn put_type(
    State(store): State<EventStore>,
    Path(event_type): Path<String>,
    body: Bytes,
) -> Response {
    let mut body: serde_json::Value = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match body.get("event_type") {
        None => body["event_type"] = json!(event_type),
        Some(t) if *t == json!(event_type) => {}
        Some(t) => return bad_request(format!("event_type {t} in the body differs from the path")),
    }
    let decl: crate::TypeDeclaration = match serde_json::from_value(body) {
        Ok(d) => d,
        Err(e) => return bad_request(format!("event type declaration: {e}")),
    };
    match store.declare_type(decl).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(&e),
    }
}

async fn get_type(State(store): State<EventStore>, Path(event_type): Path<String>) -> Response {
    match store.declared_type(&event_type) {
        Some(d) => Json(d).into_response(),
        None => problem(&Error::NotFound(format!(
            "event type {event_type} is not declared"
        ))),
    }
}

async fn projection(State(store): State<EventStore>, Path(name): Path<String>) -> Response {
    match store.projection_status(&name).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => problem(&e),
    }
}

async fn group(State(store): State<EventStore>, Path(group): Path<String>) -> Response {
    match store.group_status(&group).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => problem(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScavengeQuery {
    batch: Option<usize>,
}

async fn scavenge(
    State(store): State<EventStore>,
    query: Result<Query<ScavengeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    match store.scavenge(q.batch.unwrap_or(500)).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => problem(&e),
    }
}
