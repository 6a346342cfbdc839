//! Spans for Produce and Fetch handling (issue 9), as plain `tracing` spans.
//!
//! The broker knows nothing about OpenTelemetry: it opens one server span per Produce or
//! Fetch request with the semantic-convention fields (`otel.name`, `otel.kind = "server"`,
//! `messaging.system = "kafka"`, `messaging.operation.type`/`.name`,
//! `messaging.destination.name` for a single-topic request, `messaging.batch.message_count`
//! for a produce), and whatever layer the binary installed exports it. A produced batch whose
//! first record carries a W3C `traceparent` header makes the span that record's child, so an
//! SDK's produce → broker produce → consumer chain is one trace; the binary hands in the
//! function that sets a span's parent from a `traceparent` value ([`install`]), which is also
//! the switch: until it is installed (traces off) requests are handled without a span, at
//! the cost of one atomic load, and no record is looked at.
//!
//! A span lasts until its response has been sent (acks=all: after the data is durable;
//! Fetch: long polls included); the connection's writer records the request's queue,
//! processing and send histograms inside it, so their exemplars name its trace.

use std::sync::{Arc, OnceLock};

use kafka_protocol::messages::{FetchRequest, ProduceRequest, RequestHeader, RequestKind};
use tracing::Instrument;

use crate::handlers::{self, Reply};
use crate::server::Inner;

/// Sets `span`'s parent to the remote context of a W3C `traceparent` value (ignoring one
/// that does not parse). Called before the span is first entered.
pub type ParentHook = fn(&tracing::Span, &str);

static PARENT_HOOK: OnceLock<ParentHook> = OnceLock::new();

/// Turns broker spans on: called once by the binary when spans are exported. A second call
/// is ignored.
pub fn install(hook: ParentHook) {
    let _ = PARENT_HOOK.set(hook);
}

/// Whether broker spans are on.
pub fn installed() -> bool {
    PARENT_HOOK.get().is_some()
}

/// [`handlers::handle`] inside a Produce or Fetch span when spans are on, and that span
/// (disabled when spans are off or for other APIs). The caller keeps the span until the
/// response is sent and records the request's latency histograms inside it, so their
/// OpenMetrics exemplars carry its trace id.
pub(crate) async fn handle(
    inner: &Arc<Inner>,
    session: &crate::session::Session,
    header: &RequestHeader,
    request: RequestKind,
) -> (Option<Reply>, tracing::Span) {
    let Some(hook) = PARENT_HOOK.get() else {
        let reply = handlers::handle(inner, session, header, request).await;
        return (reply, tracing::Span::none());
    };
    let span = match &request {
        RequestKind::Produce(r) => produce_span(r, *hook),
        RequestKind::Fetch(r) => fetch_span(r),
        _ => tracing::Span::none(),
    };
    if span.is_disabled() {
        let reply = handlers::handle(inner, session, header, request).await;
        return (reply, span);
    }
    let reply = handlers::handle(inner, session, header, request)
        .instrument(span.clone())
        .await;
    let reply = match reply {
        // acks=all: the answer is produced inside the span.
        Some(Reply::Later(pending)) => {
            Some(Reply::Later(Box::pin(pending.instrument(span.clone()))))
        }
        other => other,
    };
    (reply, span)
}

/// The one topic a request names, if it names exactly one (by name: v13+ requests name
/// topics by id only, and the span then has no destination).
fn single_topic<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let first = names.next()?;
    if first.is_empty() || names.any(|n| n != first) {
        return None;
    }
    Some(first)
}

fn produce_span(r: &ProduceRequest, hook: ParentHook) -> tracing::Span {
    let topic = single_topic(r.topic_data.iter().map(|t| t.name.0.as_str()));
    let span = tracing::info_span!(
        "kafka.produce",
        otel.name = format!("Produce {}", topic.unwrap_or("")).trim_end(),
        otel.kind = "server",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "Produce",
        messaging.destination.name = topic,
        messaging.batch.message_count = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let batches = || {
        r.topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .filter_map(|p| p.records.as_deref())
            .flat_map(batches_of)
    };
    let count: i64 = batches()
        .filter_map(|b| weft_log::batch::BatchHeader::parse(b).ok())
        .map(|h| i64::from(h.records_count))
        .sum();
    span.record("messaging.batch.message_count", count);
    if let Some(traceparent) = batches().next().and_then(first_traceparent) {
        hook(&span, &traceparent);
    }
    span
}

fn fetch_span(r: &FetchRequest) -> tracing::Span {
    let topic = single_topic(r.topics.iter().map(|t| t.topic.0.as_str()));
    tracing::info_span!(
        "kafka.fetch",
        otel.name = format!("Fetch {}", topic.unwrap_or("")).trim_end(),
        otel.kind = "server",
        messaging.system = "kafka",
        messaging.operation.type = "receive",
        messaging.operation.name = "Fetch",
        messaging.destination.name = topic,
    )
}

/// The record batches of a partition's `records` (framing by each batch's length field; a
/// truncated tail is left out — the append path refuses it anyway).
fn batches_of(records: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        let len = rest.get(8..12)?;
        let len = usize::try_from(i32::from_be_bytes([len[0], len[1], len[2], len[3]])).ok()?;
        let total = len.checked_add(12).filter(|t| *t <= rest.len())?;
        let (batch, tail) = rest.split_at(total);
        rest = tail;
        Some(batch)
    })
}

/// The `traceparent` header of the first record of `batch` (decompressed if need be), when
/// it has one that is text.
fn first_traceparent(batch: &[u8]) -> Option<String> {
    let records = weft_log::batch::records(batch).ok()?;
    let first = records.into_iter().next()?;
    first.headers.into_iter().find_map(|(k, v)| {
        if !k.eq_ignore_ascii_case(b"traceparent") {
            return None;
        }
        String::from_utf8(v?.to_vec()).ok()
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use weft_log::batch::{BuildOptions, Compression};

    use super::*;

    type Headers = Vec<(Bytes, Option<Bytes>)>;

    fn batch(headers: Headers, compression: Compression) -> Vec<u8> {
        let records = vec![
            weft_log::batch::Record {
                offset: 0,
                timestamp: 1,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers,
            },
            weft_log::batch::Record {
                offset: 1,
                timestamp: 1,
                key: None,
                value: Some(Bytes::from_static(b"w")),
                headers: vec![(
                    Bytes::from_static(b"traceparent"),
                    Some(Bytes::from_static(b"second")),
                )],
            },
        ];
        weft_log::batch::build(
            BuildOptions {
                compression,
                ..BuildOptions::default()
            },
            &records,
        )
        .expect("batch")
    }

    #[test]
    fn traceparent_of_the_first_record() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases: Vec<(Headers, Compression, Option<&str>)> = vec![
            (
                vec![(Bytes::from_static(b"traceparent"), Some(Bytes::from(tp)))],
                Compression::None,
                Some(tp),
            ),
            (
                vec![
                    (Bytes::from_static(b"x"), Some(Bytes::from_static(b"y"))),
                    (Bytes::from_static(b"TraceParent"), Some(Bytes::from(tp))),
                ],
                Compression::Gzip,
                Some(tp),
            ),
            (vec![], Compression::None, None),
            (
                vec![(Bytes::from_static(b"traceparent"), None)],
                Compression::None,
                None,
            ),
        ];
        for (headers, compression, expected) in cases {
            let b = batch(headers.clone(), compression);
            let mut two = b.clone();
            two.extend_from_slice(&b);
            let found: Vec<_> = batches_of(&two).collect();
            assert_eq!(found.len(), 2, "{headers:?}");
            assert_eq!(
                batches_of(&two)
                    .next()
                    .and_then(first_traceparent)
                    .as_deref(),
                expected,
                "{headers:?}"
            );
        }
        // A truncated batch is not framed; garbage is not decoded.
        let b = batch(vec![], Compression::None);
        assert_eq!(batches_of(&b[..b.len() - 1]).count(), 0);
        assert_eq!(first_traceparent(b"not a batch at all, not at all"), None);
    }

    #[test]
    fn single_topics() {
        let cases: [(&[&str], Option<&str>); 5] = [
            (&[], None),
            (&["a"], Some("a")),
            (&["a", "a"], Some("a")),
            (&["a", "b"], None),
            (&[""], None),
        ];
        for (names, expected) in cases {
            assert_eq!(single_topic(names.iter().copied()), expected, "{names:?}");
        }
    }
}
