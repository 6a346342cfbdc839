//! The context headers every record carries, and the "current message" a handler runs in.
//!
//! - `weft-message-id`: a UUIDv7, new for every record produced.
//! - `weft-correlation-id`: inherited from the message being handled; at the edge (no
//!   message being handled) the new record's own id.
//! - `weft-causation-id`: the id of the message being handled; absent at the edge.
//! - `traceparent` / `tracestate`: W3C trace context of the current `tracing` span (through
//!   `tracing-opentelemetry`), else of the current OpenTelemetry `Context`, else passed
//!   through from the message being handled.
//!
//! The consumer runtime sets the current message ([`current`]) for the duration of a handler,
//! so records produced inside a handler get their correlation and causation ids without the
//! handler passing anything.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

pub const MESSAGE_ID: &str = "weft-message-id";
pub const CORRELATION_ID: &str = "weft-correlation-id";
pub const CAUSATION_ID: &str = "weft-causation-id";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The ids of the message a handler is processing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageContext {
    /// The message's `weft-message-id` (or `topic/partition/offset` when it has none).
    pub message_id: String,
    /// Its correlation id (its own id when it carried none).
    pub correlation_id: String,
    /// Its `traceparent`, kept to pass through when no OpenTelemetry context is active.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

tokio::task_local! {
    static CURRENT: MessageContext;
}

/// The message being handled by the current task, if any.
pub fn current() -> Option<MessageContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `ctx` as the current message (what the consumer runtime does around each
/// handler call; also useful to propagate context into spawned tasks).
pub async fn scope<F: Future>(ctx: MessageContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// A new message id: UUIDv7, so ids sort roughly by creation time.
pub fn new_message_id() -> String {
    Uuid::now_v7().to_string()
}

/// The context headers of a new record produced now, in the current context.
pub(crate) fn outgoing_headers(parent: Option<&MessageContext>) -> Vec<(&'static str, String)> {
    let id = new_message_id();
    let mut headers = Vec::with_capacity(5);
    let parent = parent.cloned().or_else(current);
    let correlation = parent
        .as_ref()
        .map(|p| p.correlation_id.clone())
        .unwrap_or_else(|| id.clone());
    headers.push((MESSAGE_ID, id));
    headers.push((CORRELATION_ID, correlation));
    if let Some(p) = &parent {
        headers.push((CAUSATION_ID, p.message_id.clone()));
    }
    match current_trace() {
        Some((tp, ts)) => {
            headers.push((TRACEPARENT, tp));
            if !ts.is_empty() {
                headers.push((TRACESTATE, ts));
            }
        }
        None => {
            if let Some(p) = parent
                && let Some(tp) = p.traceparent
            {
                headers.push((TRACEPARENT, tp));
                if let Some(ts) = p.tracestate {
                    headers.push((TRACESTATE, ts));
                }
            }
        }
    }
    headers
}

/// `traceparent` and `tracestate` of the active span context, if one is valid.
fn current_trace() -> Option<(String, String)> {
    let from_tracing = tracing::Span::current().context();
    let cx = if from_tracing.span().span_context().is_valid() {
        from_tracing
    } else {
        Context::current()
    };
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format_traceparent(sc))
}

fn format_traceparent(sc: &SpanContext) -> (String, String) {
    (
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ),
        sc.trace_state().header(),
    )
}

/// The remote span context a `traceparent` (and `tracestate`) describe; `None` when malformed
/// (W3C: version `00`, 32 and 16 lowercase hex digits, neither all zeros).
pub fn parse_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version) || !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        state,
    );
    sc.is_valid().then_some(sc)
}

/// The OpenTelemetry context a consumed message's trace headers describe (empty when absent
/// or malformed).
pub(crate) fn remote_context(ctx: &MessageContext) -> Context {
    match ctx
        .traceparent
        .as_deref()
        .and_then(|tp| parse_traceparent(tp, ctx.tracestate.as_deref()))
    {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => Context::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_refusals() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(tp, Some("congo=t61rcWkgMzE")).expect("valid traceparent");
        assert!(sc.is_remote());
        assert!(sc.is_sampled());
        let (out, state) = format_traceparent(&sc);
        assert_eq!(out, tp);
        assert_eq!(state, "congo=t61rcWkgMzE");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad, None).is_none(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn ids_at_the_edge_and_inside_a_handler() {
        let edge = outgoing_headers(None);
        let get =
            |h: &[(&str, String)], k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let id = get(&edge, MESSAGE_ID).expect("message id");
        assert_eq!(get(&edge, CORRELATION_ID), Some(id.clone()));
        assert_eq!(get(&edge, CAUSATION_ID), None);
        assert_eq!(get(&edge, TRACEPARENT), None);

        let parent = MessageContext {
            message_id: "m1".into(),
            correlation_id: "c1".into(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
        };
        let inner = scope(parent.clone(), async { outgoing_headers(None) }).await;
        assert_ne!(get(&inner, MESSAGE_ID), Some("m1".into()));
        assert_eq!(get(&inner, CORRELATION_ID), Some("c1".into()));
        assert_eq!(get(&inner, CAUSATION_ID), Some("m1".into()));
        assert_eq!(get(&inner, TRACEPARENT), parent.traceparent);
        // Two records never share an id.
        assert_ne!(
            get(&inner, MESSAGE_ID),
            get(&outgoing_headers(None), MESSAGE_ID)
        );
    }
}
