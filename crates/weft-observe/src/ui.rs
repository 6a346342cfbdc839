//! The live dashboard at `/ui`: one HTML page and one script embedded in the binary (no build
//! step, no external network), fed by server-sent events from `/ui/events`.
//!
//! Every [`Dashboard::interval`] the server takes a [`Snapshot`] — what `/metrics` renders,
//! read back by [`crate::exposition`], plus the lag monitor's groups — and sends it as one
//! `snapshot` event. The browser keeps the last five minutes and derives rates from counter
//! deltas, so the server keeps no history. `/ui/snapshot` answers the same JSON once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;

use crate::exposition::{self, Sample};
use crate::metrics::Metrics;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");

/// Counters whose per-topic sums are shown as throughput.
pub const RECORDS_IN: &str = "weft_broker_records_in_total";
pub const BYTES_IN: &str = "weft_broker_bytes_in_total";
pub const RECORDS_OUT: &str = "weft_broker_records_out_total";
/// Request counters summed into the request rate; a sample counts as an error when its
/// `error` label is not `none` or its `status` label is `4xx`/`5xx`.
pub const REQUEST_COUNTERS: &[&str] = &[
    "weft_broker_requests_total",
    "weft_http_requests_total",
    "weft_registry_requests_total",
    "weft_gateway_requests_total",
];
/// The end-to-end latency histogram (record timestamp → handler), recorded by the SDK.
pub const E2E_LATENCY: &str = "weft_client_e2e_latency_seconds";
/// The lag monitor's per-partition age of the oldest unconsumed record: the dashboard's
/// end-to-end stand-in when no SDK consumer records [`E2E_LATENCY`] in this process.
pub const LAG_SECONDS: &str = "weft_group_lag_seconds";

/// One consumer group as the lag monitor last saw it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupRow {
    pub group: String,
    /// Burrow status: `OK`, `WARN`, `ERR`, `STOP`, `STALL`, `REWIND`.
    pub status: String,
    pub members: usize,
    pub lag_records: i64,
    /// The largest partition lag in seconds, if known.
    pub lag_seconds: Option<f64>,
    pub partitions: usize,
    /// Per topic: sum over its partitions of the log end offset (a throughput fallback
    /// when the broker's counters are absent, e.g. against an external cluster).
    pub log_end_by_topic: BTreeMap<String, i64>,
}

/// Where the dashboard gets its groups from (the binary wires weft-lag in).
pub type GroupSource = Arc<dyn Fn() -> Vec<GroupRow> + Send + Sync>;

/// The dashboard's state.
#[derive(Clone)]
pub struct Dashboard {
    pub metrics: Option<Metrics>,
    pub groups: GroupSource,
    pub interval: Duration,
}

/// Per-topic cumulative counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TopicRow {
    pub topic: String,
    pub records_in_total: f64,
    pub bytes_in_total: f64,
    pub records_out_total: f64,
    /// Highest log end offset sum seen by the lag monitor (fallback throughput source).
    pub log_end: i64,
}

/// What one SSE event carries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub time_ms: i64,
    pub topics: Vec<TopicRow>,
    /// Worst first: status severity, then lag in seconds, then records.
    pub groups: Vec<GroupRow>,
    pub requests_total: f64,
    pub errors_total: f64,
    pub connections: f64,
    /// Cumulative e2e-latency buckets `(le, count)`; the page takes quantiles of deltas.
    pub e2e_buckets: Vec<(f64, f64)>,
    /// p50 and p99 (nearest rank) over partitions of [`LAG_SECONDS`]: how long the next record
    /// each group will handle has waited, shown when `e2e_buckets` has no observations.
    pub lag_age_p50: Option<f64>,
    pub lag_age_p99: Option<f64>,
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub open_fds: f64,
}

fn severity(status: &str) -> u8 {
    match status {
        "ERR" | "STOP" | "STALL" => 3,
        "REWIND" => 2,
        "WARN" => 1,
        _ => 0,
    }
}

/// The `q` quantile of `values` by nearest rank; `None` when empty.
fn nearest_rank(q: f64, values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = (q * n as f64).ceil().max(1.0) as usize;
    values.get(rank.min(n).checked_sub(1)?).copied()
}

fn topic<'a>(topics: &'a mut BTreeMap<String, TopicRow>, s: &Sample) -> &'a mut TopicRow {
    let t = s.label("topic").unwrap_or("");
    topics.entry(t.to_owned()).or_insert_with(|| TopicRow {
        topic: t.to_owned(),
        ..TopicRow::default()
    })
}

fn is_error(s: &Sample) -> bool {
    if let Some(e) = s.label("error") {
        return !matches!(e, "" | "none" | "NONE" | "0");
    }
    matches!(s.label("status"), Some(v) if v.starts_with('4') || v.starts_with('5'))
}

impl Snapshot {
    /// Builds a snapshot from rendered metrics text and the groups.
    pub fn build(time_ms: i64, metrics_text: &str, mut groups: Vec<GroupRow>) -> Snapshot {
        let samples = exposition::parse(metrics_text);
        let mut topics: BTreeMap<String, TopicRow> = BTreeMap::new();
        let mut requests_total = 0.0;
        let mut errors_total = 0.0;
        let mut connections = 0.0;
        let mut e2e: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut single = BTreeMap::new();
        let mut lag_ages = Vec::new();
        for s in &samples {
            match s.name.as_str() {
                LAG_SECONDS if s.value.is_finite() => lag_ages.push(s.value),
                RECORDS_IN => topic(&mut topics, s).records_in_total += s.value,
                BYTES_IN => topic(&mut topics, s).bytes_in_total += s.value,
                RECORDS_OUT => topic(&mut topics, s).records_out_total += s.value,
                n if REQUEST_COUNTERS.contains(&n) => {
                    requests_total += s.value;
                    if is_error(s) {
                        errors_total += s.value;
                    }
                }
                n if n.ends_with("_connections") || n.ends_with("_connections_active") => {
                    connections += s.value;
                }
                n if n == format!("{E2E_LATENCY}_bucket") => {
                    if let Some(le) = s.label("le") {
                        let bound = if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap_or(f64::INFINITY)
                        };
                        let slot = e2e.entry(le.to_owned()).or_insert((bound, 0.0));
                        slot.1 += s.value;
                    }
                }
                "process_cpu_seconds_total"
                | "process_resident_memory_bytes"
                | "process_open_fds" => {
                    single.insert(s.name.clone(), s.value);
                }
                _ => {}
            }
        }
        for g in &groups {
            for (topic, end) in &g.log_end_by_topic {
                let row = topics.entry(topic.clone()).or_insert_with(|| TopicRow {
                    topic: topic.clone(),
                    ..TopicRow::default()
                });
                row.log_end = row.log_end.max(*end);
            }
        }
        groups.sort_by(|a, b| {
            severity(&b.status)
                .cmp(&severity(&a.status))
                .then(
                    b.lag_seconds
                        .unwrap_or(0.0)
                        .total_cmp(&a.lag_seconds.unwrap_or(0.0)),
                )
                .then(b.lag_records.cmp(&a.lag_records))
                .then(a.group.cmp(&b.group))
        });
        let mut e2e_buckets: Vec<(f64, f64)> = e2e.into_values().collect();
        e2e_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        // JSON has no infinity: the last bucket's bound is sent as a large number.
        for b in &mut e2e_buckets {
            if b.0.is_infinite() {
                b.0 = f64::MAX;
            }
        }
        Snapshot {
            time_ms,
            topics: topics
                .into_values()
                .filter(|t| !t.topic.is_empty())
                .collect(),
            groups,
            requests_total,
            errors_total,
            connections,
            e2e_buckets,
            lag_age_p50: nearest_rank(0.5, &mut lag_ages),
            lag_age_p99: nearest_rank(0.99, &mut lag_ages),
            cpu_seconds: single
                .get("process_cpu_seconds_total")
                .copied()
                .unwrap_or(0.0),
            resident_bytes: single
                .get("process_resident_memory_bytes")
                .copied()
                .unwrap_or(0.0),
            open_fds: single.get("process_open_fds").copied().unwrap_or(0.0),
        }
    }
}

impl Dashboard {
    /// Runs on the blocking pool; `parent` is the request's span (the blocking thread does
    /// not inherit it).
    fn snapshot(&self, parent: &tracing::Span) -> Snapshot {
        let _span = tracing::info_span!(parent: parent, "ui.snapshot").entered();
        let text = self
            .metrics
            .as_ref()
            .map(Metrics::render)
            .unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Snapshot::build(now, &text, (self.groups)())
    }
}

/// `/ui`, `/ui/app.js`, `/ui/snapshot`, `/ui/events`.
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/snapshot", get(snapshot))
        .route("/ui/events", get(events))
        .with_state(Arc::new(dashboard))
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn snapshot(State(d): State<Arc<Dashboard>>) -> Json<Snapshot> {
    // Rendering walks every series; keep it off the reactor.
    let parent = tracing::Span::current();
    let snap = tokio::task::spawn_blocking(move || d.snapshot(&parent))
        .await
        .unwrap_or_else(|_| Snapshot::build(0, "", Vec::new()));
    Json(snap)
}

/// Decrements `weft_ui_clients` when an event stream ends.
struct ClientGuard;

impl Drop for ClientGuard {
    fn drop(&mut self) {
        metrics::gauge!("weft_ui_clients").decrement(1.0);
    }
}

async fn events(
    State(d): State<Arc<Dashboard>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    metrics::gauge!("weft_ui_clients").increment(1.0);
    let mut ticker = tokio::time::interval(d.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold(
        (d, ticker, ClientGuard),
        |(d, mut ticker, guard)| async move {
            ticker.tick().await;
            let snap = {
                let d = Arc::clone(&d);
                // No parent: an event stream lives for minutes, each push is its own trace.
                tokio::task::spawn_blocking(move || d.snapshot(&tracing::Span::none()))
                    .await
                    .ok()
            };
            let event = match snap.and_then(|s| serde_json::to_string(&s).ok()) {
                Some(json) => Event::default().event("snapshot").data(json),
                None => Event::default().comment("snapshot failed"),
            };
            Some((Ok(event), (d, ticker, guard)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, status: &str, lag_seconds: Option<f64>, lag: i64) -> GroupRow {
        GroupRow {
            group: group.into(),
            status: status.into(),
            members: 1,
            lag_records: lag,
            lag_seconds,
            partitions: 1,
            log_end_by_topic: BTreeMap::from([("t".to_owned(), 10)]),
        }
    }

    #[test]
    fn snapshot_from_metrics_and_groups() {
        let text = "\
weft_broker_records_in_total{topic=\"t\",partition=\"0\"} 5
weft_broker_records_in_total{topic=\"t\",partition=\"1\"} 7
weft_broker_bytes_in_total{topic=\"t\"} 700
weft_broker_requests_total{api=\"Produce\",version=\"9\",error=\"none\"} 10
weft_broker_requests_total{api=\"Fetch\",version=\"12\",error=\"NOT_LEADER_OR_FOLLOWER\"} 2
weft_http_requests_total{route=\"/x\",method=\"GET\",status=\"5xx\"} 1
weft_broker_connections_active 3
weft_client_e2e_latency_seconds_bucket{le=\"0.1\"} 4
weft_client_e2e_latency_seconds_bucket{le=\"+Inf\"} 5
weft_group_lag_seconds{group=\"g\",topic=\"t\",partition=\"0\"} 4
weft_group_lag_seconds{group=\"g\",topic=\"t\",partition=\"1\"} 1
weft_group_lag_seconds{group=\"h\",topic=\"t\",partition=\"0\"} 30
process_open_fds 12
";
        let groups = vec![
            row("ok", "OK", Some(0.0), 0),
            row("err", "ERR", Some(3.0), 9),
            row("warn", "WARN", Some(100.0), 50),
        ];
        let s = Snapshot::build(1, text, groups);
        assert_eq!(s.topics.len(), 1);
        assert_eq!(s.topics[0].records_in_total, 12.0);
        assert_eq!(s.topics[0].bytes_in_total, 700.0);
        assert_eq!(s.topics[0].log_end, 10);
        assert_eq!(s.requests_total, 13.0);
        assert_eq!(s.errors_total, 3.0);
        assert_eq!(s.connections, 3.0);
        assert_eq!(s.open_fds, 12.0);
        assert_eq!(s.e2e_buckets, vec![(0.1, 4.0), (f64::MAX, 5.0)]);
        assert_eq!((s.lag_age_p50, s.lag_age_p99), (Some(4.0), Some(30.0)));
        assert_eq!(Snapshot::build(1, "", vec![]).lag_age_p50, None);
        let order: Vec<&str> = s.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(order, ["err", "warn", "ok"]);
    }

    #[test]
    fn assets_are_embedded_and_self_contained() {
        assert!(INDEX_HTML.contains("app.js"));
        assert!(APP_JS.contains("/ui/events"));
        for asset in [INDEX_HTML, APP_JS] {
            assert!(!asset.contains("https://"), "no external network");
            assert!(!asset.contains("http://"), "no external network");
        }
    }
}
