//! The process-wide Prometheus recorder behind the `metrics` facade.
//!
//! Every crate records through the facade (`metrics::counter!("weft_…_total", "topic" =>
//! t).increment(1)`); [`Metrics::install`] installs `metrics-exporter-prometheus`'s recorder
//! once, without its own listener, and [`Metrics::render`] is what `/metrics` answers.
//! Histograms are exported as Prometheus histograms (`_bucket`, `_sum`, `_count`) with
//! [`LATENCY_BUCKETS`] for names ending in `_seconds` and [`SIZE_BUCKETS`] for `_bytes`, so
//! Grafana can aggregate and take quantiles. Process metrics are read from `/proc` at scrape
//! time ([`crate::process`]).
//!
//! The recorder is wrapped by [`crate::openmetrics::ExemplarRecorder`], which also keeps
//! histograms with exemplars for the OpenMetrics format ([`Metrics::render_openmetrics`]).
//!
//! When metrics are disabled no recorder is installed: the facade's calls then go to its
//! no-op recorder (one relaxed atomic load each) and `/metrics` answers 404.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds (seconds) for latency histograms: 100 µs … 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Bucket bounds (bytes) for size histograms: 64 B … 64 MiB.
pub const SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Bucket bounds for other histograms (counts such as batch sizes): 1 … 10 000.
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// The buckets of histogram `name`: by its unit suffix, as in both exposition formats.
pub fn buckets_for(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        LATENCY_BUCKETS
    } else if name.ends_with("_bytes") {
        SIZE_BUCKETS
    } else {
        COUNT_BUCKETS
    }
}

/// How often histogram storage is drained when nobody scrapes (bounds memory).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Errors installing the recorder.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot configure the Prometheus recorder: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// The installed recorder's handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    handle: PrometheusHandle,
    histograms: std::sync::Arc<crate::openmetrics::Histograms>,
}

impl Metrics {
    /// Installs the recorder as the process's global one (once; a second call returns the
    /// first handle) and describes Weft's own metrics.
    pub fn install() -> Result<Metrics, MetricsError> {
        if let Some(m) = INSTALLED.get() {
            return Ok(m.clone());
        }
        let recorder = PrometheusBuilder::new()
            .set_buckets(COUNT_BUCKETS)?
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
            .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), SIZE_BUCKETS)?
            .build_recorder();
        let handle = recorder.handle();
        let histograms = std::sync::Arc::default();
        let recorder =
            crate::openmetrics::ExemplarRecorder::new(recorder, std::sync::Arc::clone(&histograms));
        metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
        let m = INSTALLED.get_or_init(|| Metrics { handle, histograms });
        describe();
        Ok(m.clone())
    }

    /// The installed recorder, if [`Metrics::install`] ran.
    pub fn get() -> Option<Metrics> {
        INSTALLED.get().cloned()
    }

    /// Prometheus text exposition format 0.0.4, process metrics refreshed first.
    pub fn render(&self) -> String {
        crate::process::record();
        self.handle.render()
    }

    /// OpenMetrics 1.0 text with exemplars (see [`crate::openmetrics`]), process metrics
    /// refreshed first.
    pub fn render_openmetrics(&self) -> String {
        crate::openmetrics::render(&self.render(), &self.histograms)
    }

    /// Drains histogram storage; call every [`UPKEEP_INTERVAL`] (the HTTP wiring does).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// `# HELP` lines for the metrics this crate and weft-lag/weft-registry record. Other crates
/// describe their own with `metrics::describe_*!`.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "user and system CPU time of the weft process"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "resident set size of the weft process"
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "virtual memory size of the weft process"
    );
    describe_gauge!(
        "process_open_fds",
        "open file descriptors of the weft process"
    );
    describe_gauge!(
        "process_max_fds",
        "limit on open file descriptors (RLIMIT_NOFILE soft)"
    );
    describe_gauge!("process_threads", "threads of the weft process");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "start time of the weft process since the Unix epoch"
    );
    describe_gauge!(
        "weft_group_lag_records",
        "records between a group's committed offset and the log end, per partition"
    );
    describe_gauge!(
        "weft_group_lag_seconds",
        Unit::Seconds,
        "age of the oldest record a group has not consumed, per partition"
    );
    describe_gauge!(
        "weft_group_lag_status",
        "Burrow-style status of a group: 1 for the current status label, 0 for the others"
    );
    describe_gauge!(
        "weft_group_lag_total_records",
        "records a group has not consumed, summed over its partitions"
    );
    describe_gauge!(
        "weft_group_lag_members",
        "members of a group as the lag monitor saw it"
    );
    describe_counter!(
        "weft_lag_rounds_total",
        "lag-monitor sampling rounds, by result (ok|error)"
    );
    describe_histogram!(
        "weft_lag_round_duration_seconds",
        Unit::Seconds,
        "duration of one lag-monitor sampling round"
    );
    describe_counter!(
        "weft_registry_requests_total",
        "schema-registry HTTP requests by route, method and status class"
    );
    describe_histogram!(
        "weft_registry_request_duration_seconds",
        Unit::Seconds,
        "schema-registry HTTP request latency by route"
    );
    describe_gauge!(
        "weft_registry_schemas",
        "distinct schemas (ids) the registry holds, as of its last registration or start"
    );
    describe_counter!(
        "weft_registry_schemas_registered_total",
        "register calls that created a new schema id"
    );
    describe_counter!(
        "weft_http_requests_total",
        "requests on the main HTTP listener by route, method and status class"
    );
    describe_histogram!(
        "weft_http_request_duration_seconds",
        Unit::Seconds,
        "main HTTP listener request latency by route"
    );
    describe_counter!(
        "weft_mask_classified_fields_total",
        "field names masked because a registry schema tags them as sensitive"
    );
    describe_gauge!(
        "weft_ui_clients",
        "dashboard event streams (SSE) currently open"
    );
}
