//! What the HTTP listener needs from observability: `/metrics`, and a middleware that counts
//! and times every request (`weft_http_requests_total`, `weft_http_request_duration_seconds`,
//! labelled by the matched route — never the raw path, so cardinality stays bounded) and
//! runs it inside a server span whose parent is the caller's W3C `traceparent`, if any.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The Prometheus text exposition content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the recorder rendered as Prometheus text 0.0.4, or as OpenMetrics 1.0 with
/// exemplars when the `Accept` header asks for `application/openmetrics-text`.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
}

async fn render(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(crate::openmetrics::wants_openmetrics);
    // Rendering walks every series and reads /proc: off the reactor.
    let rendered = tokio::task::spawn_blocking(move || {
        if openmetrics {
            (
                crate::openmetrics::CONTENT_TYPE,
                metrics.render_openmetrics(),
            )
        } else {
            (PROMETHEUS_CONTENT_TYPE, metrics.render())
        }
    })
    .await;
    match rendered {
        Ok((content_type, text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics rendering failed",
        )
            .into_response(),
    }
}

/// `"2xx"`, `"4xx"`, … for a status code.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `axum::middleware::from_fn(weft_observe::http::observe)`: metrics and a server span per
/// request. Unmatched paths are labelled `route="unmatched"`.
pub async fn observe(request: Request, next: Next) -> Response {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.path = request.uri().path(),
        url.query = %query,
        http.response.status_code = tracing::field::Empty,
    );
    // Before the span is first entered: entering starts it, and a started span's parent is
    // fixed.
    if request.headers().contains_key("traceparent") {
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&HeaderExtractor(request.headers()));
        let _ = span.set_parent(parent);
    }
    // Query strings and user agents carry whatever callers put there (tokens, e-mail
    // addresses): the log layer and the span processor mask them.
    span.in_scope(|| {
        tracing::debug!(
            url.query = %query,
            user_agent = request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            "http request"
        );
    });
    let start = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    let labels = [
        ("route", route),
        ("method", method),
        ("status", status_class(status).to_owned()),
    ];
    metrics::counter!("weft_http_requests_total", &labels).increment(1);
    // Inside the span: its trace id becomes the bucket's OpenMetrics exemplar.
    span.in_scope(|| {
        metrics::histogram!("weft_http_request_duration_seconds", &labels[..1])
            .record(start.elapsed().as_secs_f64());
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let cases = [
            (200, "2xx"),
            (204, "2xx"),
            (404, "4xx"),
            (503, "5xx"),
            (101, "1xx"),
        ];
        for (code, class) in cases {
            assert_eq!(
                status_class(StatusCode::from_u16(code).expect("code")),
                class
            );
        }
    }
}
