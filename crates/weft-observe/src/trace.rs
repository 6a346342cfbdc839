//! OpenTelemetry traces exported over OTLP/HTTP (protobuf).
//!
//! Off by default: without an endpoint no OpenTelemetry layer is installed and no exporter
//! thread runs, so `tracing` spans cost what they cost for logging alone. With an endpoint,
//! [`Tracing::start`] builds an SDK tracer provider — parent-based sampling with a trace-id
//! ratio for roots, a batch processor (its own thread) behind a [`MaskingProcessor`] that
//! masks span and event attributes, and an exporter that posts through a small hyper client
//! running on the server's tokio runtime — and [`Tracing::layer`] bridges `tracing` spans to it.
//! The W3C `traceparent`/`tracestate` propagator is installed globally, and
//! [`inject_headers`]/[`extract_headers`] carry a context in Kafka record headers.
//!
//! # Broker spans
//! The broker (which depends on neither this crate nor OpenTelemetry) opens plain `tracing`
//! spans for Produce and Fetch in `weft_broker::trace`, with the semantic-convention fields
//! (`otel.kind = "server"`, `messaging.system = "kafka"`, …). `weft serve` switches them on when
//! traces are exported by installing [`set_remote_parent`] as the broker's hook, which makes a
//! produce span the child of its first record's W3C `traceparent`. [`kafka_request_span`] and
//! [`link_from_headers`] remain for other Kafka-facing components that may depend on this
//! crate; [`current_headers`] gives non-SDK producers (the gateway) the context to inject.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanProcessor,
};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::mask::Masker;

/// How long one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector response body read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Set once trace export starts: span helpers return `Span::none()` while it is off, so
/// the broker's hot path pays one relaxed load.
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported by this process.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The server span of one Kafka request (`api`: `Produce`, `Fetch`, …; `operation`: the
/// OpenTelemetry messaging operation type, `send` for Produce, `receive` for Fetch), to be
/// entered around its handler (`.instrument(span)`); record `messaging.destination.name` and
/// `messaging.batch.message_count` when known. `Span::none()` while traces are off.
pub fn kafka_request_span(api: &str, operation: &'static str) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "kafka.request",
        otel.name = format!("kafka {api}"),
        otel.kind = "server",
        messaging.system = "kafka",
        messaging.operation.type = operation,
        messaging.destination.name = tracing::field::Empty,
        messaging.batch.message_count = tracing::field::Empty,
    )
}

/// Errors starting the exporter.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("trace sample ratio {0} is not between 0 and 1")]
    Ratio(f64),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Trace export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// OTLP/HTTP base URL (`http://collector:4318`) or full traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Fraction of new traces (without a sampled parent) that are recorded, 0..=1.
    pub sample_ratio: f64,
    /// `service.name` of the resource.
    pub service_name: String,
}

/// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is kept.
pub fn traces_url(endpoint: &str) -> Result<String, TraceError> {
    let bad = |reason: &str| TraceError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = endpoint.parse().map_err(|e| bad(&format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "only http:// is supported (OTLP/HTTP, no TLS in this build)",
        ));
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

/// A running exporter. Dropping it does not flush; call [`Tracing::shutdown`].
#[derive(Debug, Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts the exporter; must be called inside a tokio runtime (exports run on it).
    pub fn start(config: &TraceConfig, masker: Masker) -> Result<Tracing, TraceError> {
        if !(0.0..=1.0).contains(&config.sample_ratio) {
            return Err(TraceError::Ratio(config.sample_ratio));
        }
        let url = traces_url(&config.endpoint)?;
        let client = RuntimeClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            runtime: tokio::runtime::Handle::current(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let batch = BatchSpanProcessor::builder(exporter).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(MaskingProcessor {
                inner: batch,
                masker,
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Tracing { provider })
    }

    /// The `tracing` → OpenTelemetry bridge layer.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("weft");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
    }

    /// Exports what is buffered (blocking; call off the reactor).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Flushes and stops the exporter thread (blocking; call off the reactor).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// Masks string attributes of spans and their events before the batch processor sees them.
#[derive(Debug)]
pub struct MaskingProcessor<P> {
    inner: P,
    masker: Masker,
}

impl<P: SpanProcessor> MaskingProcessor<P> {
    fn mask(&self, kvs: &mut [KeyValue]) {
        for kv in kvs {
            if self.masker.is_sensitive_field(kv.key.as_str()) {
                kv.value = Value::from(crate::mask::MASK);
            } else if let Value::String(s) = &kv.value {
                let masked = self.masker.text(s.as_str());
                if let std::borrow::Cow::Owned(m) = masked {
                    kv.value = Value::from(m);
                }
            }
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for MaskingProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        self.mask(&mut span.attributes);
        for event in span.events.events.iter_mut() {
            self.mask(&mut event.attributes);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: hyper on the server's runtime. The batch processor calls it
/// from its own thread, so each request is spawned onto the runtime and awaited from there.
#[derive(Debug, Clone)]
struct RuntimeClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let request = Request::from_parts(parts, Full::new(body));
            let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request))
                .await
                .map_err(|_| -> HttpError { "OTLP export timed out".into() })??;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        });
        task.await?
    }
}

struct HeaderInjector<'a>(&'a mut Vec<(String, Vec<u8>)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.into_bytes()));
    }
}

struct HeaderExtractor<'a>(&'a [(&'a str, &'a [u8])]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// Writes `cx` as W3C `traceparent` (and `tracestate`) Kafka record headers, replacing any.
pub fn inject_headers(cx: &Context, headers: &mut Vec<(String, Vec<u8>)>) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// The context carried by W3C headers of a record (an empty context when absent or invalid).
pub fn extract_headers(headers: &[(&str, &[u8])]) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The W3C `traceparent` (and `tracestate`) headers of the current `tracing` span, for a
/// record produced by a component that is not the client SDK (the gateway); empty while
/// traces are off (one atomic load) or outside a recorded span.
pub fn current_headers() -> Vec<(&'static str, String)> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !enabled() {
        return Vec::new();
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut raw = Vec::new();
    inject_headers(&cx, &mut raw);
    raw.into_iter()
        .filter_map(|(k, v)| {
            let name = match k.as_str() {
                "traceparent" => "traceparent",
                "tracestate" => "tracestate",
                _ => return None,
            };
            Some((name, String::from_utf8(v).ok()?)).filter(|(_, v)| !v.is_empty())
        })
        .collect()
}

/// Makes `span` the child of the remote span named by a W3C `traceparent` value (ignored when
/// it does not parse). Must run before the span is first entered. This is the hook the binary
/// hands to the broker (`weft_broker::trace::install`), which knows no OpenTelemetry.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = extract_headers(&[("traceparent", traceparent.as_bytes())]);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Links the current `tracing` span to the producer context carried in `headers` (for a
/// broker span that handles records of many traces). No-op when tracing is off.
pub fn link_from_headers(span: &tracing::Span, headers: &[(&str, &[u8])]) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = extract_headers(headers);
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    #[test]
    fn kafka_spans_are_free_while_traces_are_off() {
        assert!(!enabled());
        assert!(kafka_request_span("Produce", "send").is_none());
        assert!(current_headers().is_empty());
    }

    #[test]
    fn endpoint_urls() {
        let ok = [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("http://c:4318/custom/traces", "http://c:4318/custom/traces"),
        ];
        for (input, expected) in ok {
            assert_eq!(traces_url(input).expect(input), expected);
        }
        for bad in ["https://c:4318", "c:4318", "not a url", ""] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_round_trip() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut headers = vec![("traceparent".to_owned(), b"stale".to_vec())];
        inject_headers(&cx, &mut headers);
        let tp = headers
            .iter()
            .find(|(k, _)| k == "traceparent")
            .expect("traceparent");
        assert_eq!(
            tp.1,
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            headers.iter().filter(|(k, _)| k == "traceparent").count(),
            1
        );
        let borrowed: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let back = extract_headers(&borrowed);
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());
        assert_eq!(back.span().span_context().span_id(), sc.span_id());
        assert!(!extract_headers(&[("traceparent", b"garbage")]).has_active_span());
    }
}
