//! Structured log lines with a stable field set, masked before they are written.
//!
//! [`LogLayer`] is a `tracing_subscriber` layer that writes one line per event, JSON or text.
//! JSON lines always carry `timestamp` (RFC 3339, UTC, microseconds), `level`, `target` and
//! `message`, then — where known — `trace_id` and `span_id` (the active OpenTelemetry span, when
//! tracing is on), and `correlation_id`, `principal`, `topic`, `partition`, `group` taken from
//! the event or the nearest enclosing span that has them; then the event's other fields at the
//! top level (`jq .http_addr` works). Every value passes through the [`Masker`] first: by field
//! name, then by content, so a secret never reaches the writer, whichever field it hides in.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::mask::Masker;

/// Context fields looked up in enclosing spans when the event does not carry them, in the
/// order they are written.
pub const CONTEXT_FIELDS: &[&str] = &["correlation_id", "principal", "topic", "partition", "group"];

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// `timestamp LEVEL target: message key=value …` for people.
    Text,
}

/// Writes masked, structured lines to `W` (stderr in `weft serve`).
pub struct LogLayer<W> {
    format: Format,
    masker: Masker,
    make_writer: W,
}

impl<W> LogLayer<W> {
    pub fn new(format: Format, masker: Masker, make_writer: W) -> Self {
        LogLayer {
            format,
            masker,
            make_writer,
        }
    }
}

/// A span's fields, masked when recorded.
struct SpanFields(Vec<(&'static str, Value)>);

struct Visitor<'a> {
    masker: &'a Masker,
    fields: &'a mut Vec<(&'static str, Value)>,
}

impl Visitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let value = if self.masker.is_sensitive_field(name) {
            Value::String(crate::mask::MASK.to_owned())
        } else {
            value
        };
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            self.fields.push((name, value));
        }
    }

    fn put_text(&mut self, field: &Field, text: &str) {
        let masked = self.masker.text(text).into_owned();
        self.put(field, Value::String(masked));
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_text(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put_text(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put_text(field, &format!("{value:?}"));
    }
}

impl<S, W> tracing_subscriber::Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Vec::new();
        attrs.record(&mut Visitor {
            masker: &self.masker,
            fields: &mut fields,
        });
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
            values.record(&mut Visitor {
                masker: &self.masker,
                fields,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        event.record(&mut Visitor {
            masker: &self.masker,
            fields: &mut fields,
        });
        let message = match fields.iter().position(|(k, _)| *k == "message") {
            Some(i) => match fields.remove(i).1 {
                Value::String(s) => s,
                other => other.to_string(),
            },
            None => String::new(),
        };
        // Context fields from the nearest span that has them.
        let mut context: Vec<(&'static str, Value)> = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                let Some(SpanFields(span_fields)) = ext.get::<SpanFields>() else {
                    continue;
                };
                for (k, v) in span_fields {
                    if CONTEXT_FIELDS.contains(k)
                        && !fields.iter().any(|(f, _)| f == k)
                        && !context.iter().any(|(f, _)| f == k)
                    {
                        context.push((k, v.clone()));
                    }
                }
            }
        }
        let meta = event.metadata();
        let line = match self.format {
            Format::Json => {
                let mut obj = Map::new();
                obj.insert("timestamp".into(), rfc3339_now().into());
                obj.insert("level".into(), meta.level().as_str().into());
                obj.insert("target".into(), meta.target().into());
                obj.insert("message".into(), message.into());
                if let Some((trace_id, span_id)) = current_trace() {
                    obj.insert("trace_id".into(), trace_id.into());
                    obj.insert("span_id".into(), span_id.into());
                }
                for name in CONTEXT_FIELDS {
                    if let Some((_, v)) =
                        fields.iter().chain(context.iter()).find(|(k, _)| k == name)
                    {
                        obj.insert((*name).into(), v.clone());
                    }
                }
                for (k, v) in fields {
                    if !obj.contains_key(k) {
                        obj.insert(k.into(), v);
                    }
                }
                let mut s = Value::Object(obj).to_string();
                s.push('\n');
                s
            }
            Format::Text => {
                let mut s = format!(
                    "{} {:>5} {}: {}",
                    rfc3339_now(),
                    meta.level().as_str(),
                    meta.target(),
                    message
                );
                if let Some((trace_id, _)) = current_trace() {
                    let _ = write!(s, " trace_id={trace_id}");
                }
                for (k, v) in context.iter().chain(fields.iter()) {
                    match v {
                        // Quoted when a reader could not tell where it ends.
                        Value::String(t) if t.is_empty() || t.contains([' ', '=', '"']) => {
                            let _ = write!(s, " {k}={t:?}");
                        }
                        Value::String(t) => {
                            let _ = write!(s, " {k}={t}");
                        }
                        other => {
                            let _ = write!(s, " {k}={other}");
                        }
                    }
                }
                s.push('\n');
                s
            }
        };
        // One write per line so concurrent lines never interleave; a failed write to stderr
        // has nowhere to be reported.
        let _ = self.make_writer.make_writer().write_all(line.as_bytes());
    }
}

/// The active OpenTelemetry span's ids (hex), if tracing is on and a span is active.
fn current_trace() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Now as `2026-12-05T09:00:00.123456Z`.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_micros())
}

fn rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn capture(format: Format, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(LogLayer::new(
            format,
            Masker::default(),
            buf.clone(),
        ));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn json_lines_have_the_stable_fields_and_span_context() {
        let out = capture(Format::Json, || {
            let span = tracing::info_span!(
                "produce",
                topic = "orders",
                partition = 3,
                principal = "alice"
            );
            let _g = span.enter();
            tracing::info!(group = "billing", offset = 7, "appended");
        });
        let v: Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "appended");
        assert_eq!(v["topic"], "orders");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["principal"], "alice");
        assert_eq!(v["group"], "billing");
        assert_eq!(v["offset"], 7);
        assert!(v["target"].as_str().expect("target").contains("logs"));
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
        assert!(v.get("trace_id").is_none(), "no trace without tracing");
    }

    #[test]
    fn secrets_never_reach_the_writer() {
        for format in [Format::Json, Format::Text] {
            let out = capture(format, || {
                let span = tracing::info_span!("req", authorization = "Bearer abcdef123456");
                let _g = span.enter();
                tracing::warn!(
                    password = "hunter2",
                    body = "{\"email\":\"jane@example.com\",\"card\":\"4111 1111 1111 1111\"}",
                    "login for jane@example.com with password=hunter2 and Bearer abcdef123456"
                );
            });
            for secret in [
                "hunter2",
                "jane@example.com",
                "4111 1111 1111 1111",
                "abcdef123456",
            ] {
                assert!(
                    !out.contains(secret),
                    "{secret} leaked in {format:?}: {out}"
                );
            }
            assert!(out.contains("***"), "{out}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(
            rfc3339(1_796_461_199, 999_999),
            "2026-12-05T08:59:59.999999Z"
        );
    }
}
