//! The SSE (`GET /v1/topics/{topic}/events`) and WebSocket (`GET /v1/topics/{topic}/ws`)
//! edges of the connection engine in `hub`.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::{BufMut, Bytes};
use futures_util::stream::{self, SplitSink};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use weft_auth::http::Authenticated;

use crate::Gateway;
use crate::hub::{self, AckOptions, Close, Cmd, Conn, ConnOptions, EngineCtx, Out};
use crate::kafka::Record;
use crate::position::{self, Filter, Format, Positions, Start};
use crate::problem::{ApiError, Principal, principal_of, problem};

pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/topics/{topic}/events", get(sse))
        .route("/topics/{topic}/ws", get(ws))
        .route("/topics/{topic}/live.html", get(live_page))
}

/// A minimal page that follows a topic with the browser's `EventSource` and writes every
/// event into the DOM: a demo, and what the headless-browser test loads.
async fn live_page(Path(topic): Path<String>) -> Response {
    let topic_js = serde_json::to_string(&topic).unwrap_or_else(|_| "\"\"".into());
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>weft live</title></head>
<body><h1>live</h1><ul id="events"></ul><p id="state">connecting</p>
<script>
const topic = {topic_js};
const params = new URLSearchParams(location.search);
const url = "/v1/topics/" + encodeURIComponent(topic) + "/events?start=" + (params.get("start") || "earliest");
const es = new EventSource(url);
const list = document.getElementById("events");
es.onopen = () => document.getElementById("state").textContent = "open";
es.onmessage = (e) => {{
  const li = document.createElement("li");
  li.setAttribute("data-id", e.lastEventId);
  li.textContent = e.data;
  list.appendChild(li);
  // `?close_after=N`: stop after N events (lets a headless browser finish the page).
  if (params.get("close_after") && list.children.length >= Number(params.get("close_after"))) {{
    es.close();
    document.getElementById("state").textContent = "closed";
  }}
}};
es.addEventListener("gap", (e) => {{
  const li = document.createElement("li");
  li.className = "gap";
  li.textContent = e.data;
  list.appendChild(li);
}});
</script></body></html>"#
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// Query parameters of both live endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// `latest` (default), `earliest`, `time:<ms>` or explicit `P:O,P:O` next offsets.
    pub start: Option<String>,
    /// Comma-separated partitions to follow (default: all).
    pub partitions: Option<String>,
    /// Only records with exactly this key (UTF-8).
    pub key: Option<String>,
    /// Only records carrying these headers: `name:value,name2:value2`.
    pub header: Option<String>,
    /// `auto` (JSON as JSON, text as string, other bytes as `{"base64"}`) or `base64`.
    pub format: Option<String>,
    /// Resume after this event id (WebSocket; SSE uses `Last-Event-ID`).
    pub resume: Option<String>,
    /// WebSocket: the client acknowledges events (`{"type":"ack","id":…}`); at most the
    /// gateway's `max_unacked` events are in flight unacknowledged.
    pub ack: Option<bool>,
    /// WebSocket acknowledgements are committed to this consumer group, and a connection
    /// without `resume` starts at its committed offsets (implies `ack=true`).
    pub group: Option<String>,
}

struct Opened {
    conn: Conn,
    format: Format,
    topic: String,
}

/// Checks limits, resolves the start (a resume id wins, then the group's commits) and
/// starts the engine.
async fn open(
    gw: &Gateway,
    topic: &str,
    q: &StreamQuery,
    principal: &Principal,
    resume: Option<&str>,
    options: ConnOptions,
) -> Result<Opened, Response> {
    let inner = &gw.0;
    if *inner.shutdown_tx.borrow() {
        return Err(unavailable(
            "the gateway is shutting down",
            inner.config.stream.retry_ms,
        ));
    }
    let permit = inner
        .limits
        .acquire(principal)
        .map_err(|why| unavailable(why, inner.config.stream.retry_ms))?;
    let bad = |e: String| ApiError::BadRequest(e).into_response();
    let filter = Filter::parse(
        q.partitions.as_deref(),
        q.key.as_deref(),
        q.header.as_deref(),
    )
    .map_err(bad)?;
    let format = Format::parse(q.format.as_deref()).map_err(bad)?;
    let mut options = options;
    if options.sse.is_some() {
        options.sse = Some(format);
    }
    let start = match resume {
        Some(id) => Start::Positions(
            position::decode(id).map_err(|e| bad(format!("resume id {id:?}: {e}")))?,
        ),
        None => position::parse_start(q.start.as_deref().unwrap_or("latest")).map_err(bad)?,
    };
    let all: Vec<i32> = inner
        .kafka
        .partitions(topic)
        .await
        .map_err(IntoResponse::into_response)?
        .iter()
        .map(|p| p.partition)
        .collect();
    let followed: Vec<i32> = match &filter.partitions {
        None => all.clone(),
        Some(wanted) => {
            let known: BTreeSet<i32> = all.iter().copied().collect();
            if let Some(p) = wanted.iter().find(|p| !known.contains(p)) {
                return Err(bad(format!("topic {topic:?} has no partition {p}")));
            }
            wanted.iter().copied().collect()
        }
    };
    // Subscribe first, then read the positions: see the `hub` module docs.
    let live = inner
        .hubs
        .subscribe(&inner.kafka, topic, &all)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut positions = resolve(gw, topic, &followed, start)
        .await
        .map_err(IntoResponse::into_response)?;
    if let Some(group) = options.acks.as_ref().and_then(|a| a.group.as_deref())
        && resume.is_none()
    {
        // The group's committed offsets win over `start` where there are any.
        let committed = inner
            .kafka
            .committed(group, topic, &followed)
            .await
            .map_err(IntoResponse::into_response)?;
        for (p, o) in committed {
            let (_, high) = inner
                .kafka
                .watermarks(topic, p)
                .await
                .map_err(IntoResponse::into_response)?;
            // Below `low`: the engine reports the gap; beyond `high` (a log that was
            // recreated): the end.
            if o <= high {
                positions.insert(p, o);
            }
        }
    }
    let ctx = EngineCtx {
        kafka: inner.kafka.clone(),
        limits: inner.config.stream.clone(),
        shutdown: inner.shutdown_tx.subscribe(),
    };
    let conn = hub::open(
        ctx,
        topic.to_owned(),
        live,
        positions,
        filter,
        permit,
        options,
    );
    Ok(Opened {
        conn,
        format,
        topic: topic.to_owned(),
    })
}

fn unavailable(why: &str, retry_ms: u64) -> Response {
    let mut r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        why.to_owned(),
    );
    let secs = retry_ms.div_ceil(1000).max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

/// The next offset per followed partition for `start`.
async fn resolve(
    gw: &Gateway,
    topic: &str,
    partitions: &[i32],
    start: Start,
) -> Result<Positions, ApiError> {
    let kafka = &gw.0.kafka;
    let mut out = Positions::new();
    match start {
        Start::Time(ms) => {
            for (p, o) in kafka.offsets_for_time(topic, partitions, ms).await? {
                out.insert(p, o);
            }
        }
        Start::Latest | Start::Earliest | Start::Positions(_) => {
            for &p in partitions {
                let (low, high) = kafka.watermarks(topic, p).await?;
                let o = match &start {
                    Start::Latest => high,
                    Start::Earliest => low,
                    Start::Positions(given) => match given.get(&p) {
                        // A position below `low` is kept: the engine reports the gap.
                        Some(&o) if o > high => {
                            return Err(ApiError::BadRequest(format!(
                                "position {p}:{o} is beyond the end of the partition ({high})"
                            )));
                        }
                        Some(&o) => o,
                        None => low,
                    },
                    Start::Time(_) => high,
                };
                out.insert(p, o);
            }
        }
    }
    Ok(out)
}

/// A record's JSON in `format`, rendered once per record and format, by the first
/// connection that needs it, and shared by every connection the record is fanned out to.
fn record_data<'a>(topic: &str, record: &'a Record, format: Format) -> &'a str {
    let slot = match format {
        Format::Auto => &record.rendered[0],
        Format::Base64 => &record.rendered[1],
    };
    slot.get_or_init(|| position::record_json(topic, record, format).to_string())
}

/// An engine output as (id, event name, data); `None` for a heartbeat. The data is compact
/// JSON (`serde_json`), which never contains a raw CR or LF: it is one SSE `data:` line.
fn event_parts<'a>(
    topic: &str,
    out: &'a Out,
    format: Format,
) -> Option<(&'a str, &'static str, Cow<'a, str>)> {
    match out {
        Out::Event { record, id } => Some((
            id,
            "message",
            Cow::Borrowed(record_data(topic, record, format)),
        )),
        Out::Gap(gap) => {
            let hub::Gap {
                partition,
                from,
                to,
                id,
                reason,
            } = gap.as_ref();
            let data = json!({"topic": topic, "partition": partition, "from": from, "to": to,
                   "missed": to - from, "reason": reason});
            Some((id, "gap", Cow::Owned(data.to_string())))
        }
        Out::Heartbeat => None,
    }
}

/// Appends `out` in the SSE wire format, byte for byte what axum's `sse::Event` builder
/// made of it (`sse_bytes_are_axum_events` checks it) but without an `Event` and its
/// copies per connection: the shared JSON is copied once, into the connection's batch.
pub(crate) fn write_sse(buf: &mut impl BufMut, topic: &str, out: &Out, format: Format) {
    match event_parts(topic, out, format) {
        None => buf.put_slice(b": heartbeat\n\n"),
        Some((id, name, data)) => {
            sse_field(buf, "id", id);
            sse_field(buf, "event", name);
            sse_field(buf, "data", &data);
            buf.put_u8(b'\n');
        }
    }
}

/// [`write_sse`] of `Out::Event { record, id: encode(positions) }`, with the id written
/// straight from the positions.
pub(crate) fn write_sse_event(
    buf: &mut impl BufMut,
    topic: &str,
    record: &Record,
    positions: &Positions,
    format: Format,
) {
    buf.put_slice(b"id: ");
    position::encode_into(positions, buf);
    buf.put_slice(b"\nevent: message\n");
    sse_field(buf, "data", record_data(topic, record, format));
    buf.put_u8(b'\n');
}

/// The last SSE event of a stream: why it ended, with a `retry` hint on a drain.
fn write_sse_close(buf: &mut impl BufMut, close: &Close) {
    let Close { reason, retry_ms } = close;
    // Expired credentials end with their own event name, so a client can refresh its
    // token before reconnecting instead of retrying blindly.
    let name = if *reason == "auth_expired" {
        "auth_expired"
    } else {
        "close"
    };
    sse_field(buf, "event", name);
    let data = json!({"reason": reason, "retry_ms": retry_ms}).to_string();
    sse_field(buf, "data", &data);
    if let Some(ms) = retry_ms {
        sse_field(buf, "retry", &ms.to_string());
    }
    buf.put_u8(b'\n');
}

/// `name: value\n`; `value` has no CR or LF (ids, names, compact JSON). An empty `data`
/// is left out, as axum did.
fn sse_field(buf: &mut impl BufMut, name: &str, value: &str) {
    if name == "data" && value.is_empty() {
        return;
    }
    buf.put_slice(name.as_bytes());
    buf.put_slice(b": ");
    buf.put_slice(value.as_bytes());
    buf.put_u8(b'\n');
}

/// The WebSocket text message of an engine output; `None` for a heartbeat (WebSocket
/// pings are the writer's own).
fn ws_text(topic: &str, out: &Out, format: Format) -> Option<String> {
    let (id, name, data) = event_parts(topic, out, format)?;
    let kind = if name == "message" { "event" } else { name };
    // One allocation, one copy of the shared JSON.
    let mut text = String::with_capacity(32 + kind.len() + id.len() + data.len());
    text.push_str(r#"{"type":""#);
    text.push_str(kind);
    text.push_str(r#"","id":""#);
    text.push_str(id);
    text.push_str(r#"","data":"#);
    text.push_str(&data);
    text.push('}');
    Some(text)
}

/// Waits until `every` has passed since the `last` write (no wait after a quiet spell).
async fn flush_due(last: Option<Instant>, every: Duration) {
    if let Some(due) = last.map(|l| l + every)
        && due > Instant::now()
    {
        tokio::time::sleep_until(due).await;
    }
}

/// When the caller's credentials expire (the HTTP auth layer's `Authenticated` extension).
fn expiry(auth: Option<&Authenticated>) -> Option<SystemTime> {
    auth.and_then(|a| a.expires_at)
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

async fn sse(
    State(gw): State<Gateway>,
    Path(topic): Path<String>,
    Query(q): Query<StreamQuery>,
    auth: Option<Extension<Authenticated>>,
    headers: HeaderMap,
) -> Response {
    let principal = principal_of(&headers);
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    // Acknowledgements need a way back from the client: WebSocket only.
    let options = ConnOptions {
        acks: None,
        expires_at: expiry(auth.as_deref()),
        commands: false,
        // Rendered in the requested format (set by `open`).
        sse: Some(Format::Auto),
    };
    let opened = match open(&gw, &topic, &q, &principal, last_id.as_deref(), options).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let retry = gw.0.config.stream.retry_ms;
    let first = stream::once(async move {
        Ok::<_, Infallible>(Bytes::from(format!("retry: {retry}\n: ok\n\n")))
    });
    let every = gw.0.config.stream.flush_interval;
    // Each chunk holds what the engine has buffered (already in the wire format) when the
    // writer wakes up: one HTTP chunk, and one write, for a burst instead of one per event.
    // Under a steady stream the writer waits out the flush interval since its last write.
    let body = stream::unfold(Some((opened, None)), move |state| async move {
        let (mut o, last) = state?;
        if o.conn.rx.ready().await {
            flush_due(last, every).await;
        }
        let taken = o.conn.rx.take();
        if taken.ended {
            let mut buf = taken.bytes.to_vec();
            write_sse_close(&mut buf, &o.conn.close_reason());
            return Some((Ok(Bytes::from(buf)), None));
        }
        Some((Ok(taken.bytes), Some((o, Some(Instant::now())))))
    });
    // The headers axum's `Sse` response sets, and no proxy buffering.
    let mut r = Body::from_stream(first.chain(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

async fn ws(
    State(gw): State<Gateway>,
    Path(topic): Path<String>,
    Query(q): Query<StreamQuery>,
    auth: Option<Extension<Authenticated>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let principal = principal_of(&headers);
    let group = q.group.clone().filter(|g| !g.is_empty());
    let acks = (q.ack == Some(true) || group.is_some()).then(|| AckOptions {
        window: gw.0.config.stream.max_unacked,
        group,
    });
    let options = ConnOptions {
        acks,
        expires_at: expiry(auth.as_deref()),
        commands: true,
        sse: None,
    };
    let opened = open(&gw, &topic, &q, &principal, q.resume.as_deref(), options).await;
    match opened {
        Ok(o) => {
            let heartbeat = gw.0.config.stream.heartbeat;
            let every = gw.0.config.stream.flush_interval;
            upgrade.on_upgrade(move |socket| run_ws(socket, o, heartbeat, every))
        }
        // A full gateway answers on the WebSocket itself (close 1013, "try again later")
        // so browser clients see the reason; other refusals are plain HTTP problems.
        Err(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
            upgrade.on_upgrade(|mut socket| async move {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1013,
                        reason: "too_many_connections".into(),
                    })))
                    .await;
            })
        }
        Err(r) => r,
    }
}

async fn run_ws(socket: WebSocket, mut o: Opened, heartbeat: Duration, every: Duration) {
    let (mut sink, mut incoming) = socket.split();
    let Some(cmds) = o.conn.cmds.clone() else {
        return;
    };
    // Client messages: resume, ack, pongs. Anything else is ignored.
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = incoming.next().await {
            let cmd = match msg {
                Message::Text(t) => match serde_json::from_str::<serde_json::Value>(&t) {
                    Ok(v) if v["type"] == "resume" => {
                        match v["id"].as_str().map(position::decode) {
                            Some(Ok(p)) => Cmd::Resume(p),
                            _ => Cmd::Activity,
                        }
                    }
                    Ok(v) if v["type"] == "ack" => match v["id"].as_str().map(position::decode) {
                        Some(Ok(p)) => Cmd::Ack(p),
                        _ => Cmd::Activity,
                    },
                    _ => Cmd::Activity,
                },
                Message::Close(_) => break,
                _ => Cmd::Activity,
            };
            if cmds.send(cmd).await.is_err() {
                break;
            }
        }
    });
    let mut reader = reader;
    let mut ping = tokio::time::interval(heartbeat);
    ping.tick().await;
    let mut last_flush = None;
    let close = loop {
        tokio::select! {
            // The client closed (or its socket failed): stop; dropping the connection
            // ends the engine.
            _ = &mut reader => break None,
            out = o.conn.rx.recv() => match out {
                Some(out) => {
                    flush_due(last_flush, every).await;
                    last_flush = Some(Instant::now());
                    match send_ws_batch(&mut sink, &mut o, out).await {
                    Ok(false) => {}
                    Ok(true) => break Some(o.conn.close_reason()),
                    Err(_) => break None,
                    }
                }
                None => break Some(o.conn.close_reason()),
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(bytes::Bytes::from_static(b"hb"))).await.is_err() {
                    break None;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    };
    if let Some(Close { reason, retry_ms }) = close {
        let text = json!({"type": "close", "reason": reason, "retry_ms": retry_ms}).to_string();
        let _ = sink.send(Message::Text(text.into())).await;
        let code = match reason {
            "shutdown" | "max_lifetime" => 1001,
            // Policy violations: too slow, credentials expired, acknowledgements overdue.
            "slow_consumer" | "auth_expired" | "ack_timeout" => 1008,
            "kafka_error" | "reader_stopped" => 1011,
            _ => 1000,
        };
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    reader.abort();
}

/// At most this many WebSocket messages are written before one flush.
const WS_BATCH: usize = 64;

/// Writes `first` and what else the engine has buffered, then flushes once: one write
/// for a burst instead of one per message. `Ok(true)` when the engine has ended.
async fn send_ws_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    o: &mut Opened,
    first: Out,
) -> Result<bool, axum::Error> {
    let mut out = first;
    let mut ended = false;
    for written in 1.. {
        if let Some(text) = ws_text(&o.topic, &out, o.format) {
            sink.feed(Message::Text(text.into())).await?;
        }
        if written >= WS_BATCH {
            break;
        }
        out = match o.conn.rx.try_recv() {
            Ok(Some(out)) => out,
            Ok(None) => break,
            Err(()) => {
                ended = true;
                break;
            }
        };
    }
    sink.flush().await?;
    Ok(ended)
}

/// Server-Sent Events of a topic. Each `message` event's id is the position set after it;
/// reconnecting with `Last-Event-ID` resumes exactly there. Other events: `gap` (records
/// deleted by retention were skipped), `close` (reason, and a `retry` hint on drain).
#[utoipa::path(get, path = "/v1/topics/{topic}/events",
    params(("topic" = String, Path), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")),
    responses((status = 200, description = "an event stream", content_type = "text/event-stream", body = String),
        (status = 400, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem),
        (status = 503, body = crate::problem::Problem)))]
#[allow(dead_code)] // documentation only: the route is `sse`
pub(crate) async fn sse_doc() {}

/// WebSocket of a topic: server messages `{"type":"event"|"gap"|"close","id",…}`; the client
/// may send `{"type":"resume","id":…}` at any time and, with `ack=true` or `group=…`,
/// `{"type":"ack","id":…}` (everything up to that id is processed).
#[utoipa::path(get, path = "/v1/topics/{topic}/ws", params(("topic" = String, Path), StreamQuery),
    responses((status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
#[allow(dead_code)] // documentation only: the route is `ws`
pub(crate) async fn ws_doc() {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::sse::{Event, Sse};

    use super::*;

    fn record(
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Out {
        let record = Record {
            partition,
            offset,
            timestamp: Some(1_700_000_000_000 + offset),
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(Bytes::copy_from_slice)))
                .collect(),
            rendered: Default::default(),
        };
        let mut positions = Positions::new();
        positions.insert(partition, offset + 1);
        positions.insert(partition + 1, 7);
        Out::Event {
            record: Arc::new(record),
            id: position::encode(&positions),
        }
    }

    /// What every connection built for itself before: the record rendered per
    /// connection, then axum's `Event` builder.
    fn axum_event(topic: &str, out: &Out, format: Format) -> Event {
        match out {
            Out::Event { record, id } => Event::default()
                .id(id)
                .event("message")
                .data(position::record_json(topic, record, format).to_string()),
            Out::Gap(gap) => Event::default().id(&gap.id).event("gap").data(
                json!({"topic": topic, "partition": gap.partition, "from": gap.from,
                    "to": gap.to, "missed": gap.to - gap.from, "reason": gap.reason})
                .to_string(),
            ),
            Out::Heartbeat => Event::default().comment("heartbeat"),
        }
    }

    fn axum_close(close: &Close) -> Event {
        let name = if close.reason == "auth_expired" {
            "auth_expired"
        } else {
            "close"
        };
        let mut ev = Event::default()
            .event(name)
            .data(json!({"reason": close.reason, "retry_ms": close.retry_ms}).to_string());
        if let Some(ms) = close.retry_ms {
            ev = ev.retry(Duration::from_millis(ms));
        }
        ev
    }

    /// The bytes of an axum SSE response made of `events`.
    async fn axum_bytes(events: Vec<Event>) -> Vec<u8> {
        let stream = stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        let body = Sse::new(stream).into_response().into_body();
        axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("in-memory body")
            .to_vec()
    }

    fn outs() -> Vec<Out> {
        let bin: &[u8] = &[0, 0xff, 0x10];
        vec![
            record(0, 0, None, None, &[]),
            record(0, 1, Some(b"k1"), Some(br#"{"a":1,"b":[true,null]}"#), &[]),
            record(
                3,
                41,
                Some(br#"{"id":"x"}"#),
                Some(b"plain text, with \"quotes\"\nand a newline"),
                &[
                    ("type", Some(b"created")),
                    ("empty", None),
                    ("raw", Some(bin)),
                ],
            ),
            record(1, 9, Some(bin), Some(bin), &[("trace", Some(b"00-ab-01"))]),
            record(2, 5, Some(b""), Some(b"\r\n"), &[("", Some(b""))]),
            record(
                0,
                2,
                Some("clé".as_bytes()),
                Some("∑ ünïcode".as_bytes()),
                &[],
            ),
            Out::Gap(Box::new(hub::Gap {
                partition: 1,
                from: 3,
                to: 10,
                id: "0:4,1:10".into(),
                reason: "deleted_by_retention",
            })),
            Out::Heartbeat,
        ]
    }

    #[tokio::test]
    async fn sse_bytes_are_axum_events() {
        let topic = "orders.v1";
        for format in [Format::Auto, Format::Base64] {
            let outs = outs();
            let expected =
                axum_bytes(outs.iter().map(|o| axum_event(topic, o, format)).collect()).await;
            // Twice: the first connection renders the record, the second uses what it left.
            for round in 0..2 {
                let mut got = Vec::new();
                for out in &outs {
                    write_sse(&mut got, topic, out, format);
                }
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected),
                    "{format:?}, round {round}"
                );
                // The outbox's path: ids written straight from the positions they encode.
                let mut direct = Vec::new();
                for out in &outs {
                    match out {
                        Out::Event { record, id } => {
                            let at = position::decode(id).expect("an id");
                            write_sse_event(&mut direct, topic, record, &at, format);
                        }
                        other => write_sse(&mut direct, topic, other, format),
                    }
                }
                assert_eq!(
                    String::from_utf8_lossy(&direct),
                    String::from_utf8_lossy(&expected),
                    "{format:?}, round {round}, ids from positions"
                );
            }
        }
        let closes = [
            close_of("slow_consumer", None),
            close_of("shutdown", Some(2_000)),
            close_of("max_lifetime", Some(1_005)),
            close_of("auth_expired", None),
            close_of("closed", Some(250)),
        ];
        for c in &closes {
            let mut got = Vec::new();
            write_sse_close(&mut got, c);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&axum_bytes(vec![axum_close(c)]).await),
                "{c:?}"
            );
        }
    }

    fn close_of(reason: &'static str, retry_ms: Option<u64>) -> Close {
        Close { reason, retry_ms }
    }

    #[test]
    fn ws_texts_are_the_old_messages() {
        let topic = "orders.v1";
        for format in [Format::Auto, Format::Base64] {
            for out in outs() {
                let old = match &out {
                    Out::Heartbeat => None,
                    Out::Event { record, id } => Some(format!(
                        r#"{{"type":"event","id":"{id}","data":{}}}"#,
                        position::record_json(topic, record, format)
                    )),
                    Out::Gap(gap) => Some(format!(
                        r#"{{"type":"gap","id":"{}","data":{}}}"#,
                        gap.id,
                        json!({"topic": topic, "partition": gap.partition, "from": gap.from,
                            "to": gap.to, "missed": gap.to - gap.from, "reason": gap.reason})
                    )),
                };
                assert_eq!(ws_text(topic, &out, format), old, "{format:?} {out:?}");
                if let Some(text) = ws_text(topic, &out, format) {
                    serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
                }
            }
        }
    }
}
