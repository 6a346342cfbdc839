//! Prometheus series of the registry, recorded through the `metrics` facade (a no-op when no
//! recorder is installed):
//!
//! - `weft_registry_requests_total{route,method,status}` and
//!   `weft_registry_request_duration_seconds{route}`: every HTTP request, labelled by the
//!   matched route template (`/subjects/{subject}/versions`), never the raw path, and the
//!   status class (`2xx`, `4xx`, …), so cardinality is bounded;
//! - `weft_registry_schemas`: schemas stored (counted at start, raised by registrations
//!   that created an id);
//! - `weft_registry_schemas_registered_total`: registrations that created a new id.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The largest id this process has counted, so a registration that returns an existing id
/// is not counted as new.
static MAX_ID: AtomicI64 = AtomicI64::new(0);

/// At start: the stored count and the id counter.
pub(crate) fn opened(schemas: i64, max_id: i64) {
    MAX_ID.fetch_max(max_id, Ordering::Relaxed);
    metrics::gauge!("weft_registry_schemas").set(schemas as f64);
}

/// After a successful registration that answered `id`.
pub(crate) fn registered(id: i64) {
    if MAX_ID.fetch_max(id, Ordering::Relaxed) < id {
        metrics::counter!("weft_registry_schemas_registered_total").increment(1);
        metrics::gauge!("weft_registry_schemas").increment(1.0);
    }
}

fn status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Middleware: counts and times each request.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = status_class(response.status().as_u16());
    metrics::counter!(
        "weft_registry_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status
    )
    .increment(1);
    metrics::histogram!("weft_registry_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for (code, class) in [(200, "2xx"), (404, "4xx"), (409, "4xx"), (500, "5xx")] {
            assert_eq!(status_class(code), class);
        }
    }
}
