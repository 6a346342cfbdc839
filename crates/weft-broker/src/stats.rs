//! Broker metrics through the `metrics` facade (a no-op until the binary installs a
//! recorder; `weft serve` installs the Prometheus one). Install the recorder before the
//! broker serves: handles are taken on first use and kept.
//!
//! Names (all labels are bounded sets: API names, version numbers, error classes, topics
//! and partitions that exist):
//! - `weft_broker_requests_total{api,version,error}`: requests by outcome. `error` is
//!   `none` (answered by its handler; per-partition errors are inside the answer),
//!   `unsupported_version` (a refused version: Produce v0–v2, ApiVersions newer than ours),
//!   `invalid_request` (an undecodable ApiVersions, answered as Kafka does) or `closed`
//!   (malformed, unknown or abusive: the connection was closed).
//! - `weft_broker_request_processing_seconds{api}`: from the whole request frame read to its
//!   response complete, including long polls (Fetch `max_wait_ms`) and acks=-1 waits.
//! - `weft_broker_request_queue_seconds{api}`: how long a request, once handled, waited in
//!   its connection's reply queue behind earlier requests (responses leave in order).
//! - `weft_broker_response_send_seconds{api}`: writing the response to the socket
//!   (buffered bytes and `sendfile` ranges), until the kernel took the last byte.
//!   The three latency histograms of a Produce or Fetch are recorded inside its span (when
//!   spans are on), so the OpenMetrics exposition's exemplars carry the request's trace id.
//! - `weft_broker_bytes_in_total{topic}`, `weft_broker_records_in_total{topic}`: appended
//!   record-batch bytes and records (duplicates of idempotent retries not counted).
//! - `weft_broker_bytes_out_total{topic}`: record bytes in Fetch responses;
//!   `weft_broker_records_out_total{topic}`: offsets those bytes cover from the fetch offset
//!   on (records, except across compaction gaps; a consumer's re-fetch counts again).
//! - `weft_broker_partition_log_size_bytes{topic,partition}`,
//!   `weft_broker_partition_log_start_offset{topic,partition}`,
//!   `weft_broker_partition_log_end_offset{topic,partition}`: refreshed every 10 s.
//! - `weft_broker_connections_active`.
//! - `weft_broker_produce_purgatory_size`: acks=-1 produce requests waiting for durability;
//!   `weft_broker_fetch_purgatory_size`: fetches long-polling for data.
//!
//! The storage engine adds `weft_log_fsync_seconds` (one observation per flush).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge, histogram};

/// The API's name (`Produce`, `Fetch`...) for labels; `unknown` for keys we do not serve.
pub(crate) fn api_name(key: i16) -> &'static str {
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            crate::versions::advertised_versions()
                .into_iter()
                .filter_map(|(k, _, _)| {
                    let api = kafka_protocol::messages::ApiKey::try_from(k).ok()?;
                    // Leaked once per served API (a fixed, small set).
                    Some((k, &*Box::leak(format!("{api:?}").into_boxed_str())))
                })
                .collect()
        })
        .get(&key)
        .copied()
        .unwrap_or("unknown")
}

fn version_label(v: i16) -> &'static str {
    const V: [&str; 20] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19",
    ];
    usize::try_from(v)
        .ok()
        .and_then(|v| V.get(v))
        .copied()
        .unwrap_or("other")
}

pub(crate) fn request(api_key: i16, version: i16, error: &'static str) {
    counter!(
        "weft_broker_requests_total",
        "api" => api_name(api_key),
        "version" => version_label(version),
        "error" => error
    )
    .increment(1);
}

pub(crate) fn processing(api: &'static str, d: Duration) {
    histogram!("weft_broker_request_processing_seconds", "api" => api).record(d.as_secs_f64());
}

pub(crate) fn queue(api: &'static str, d: Duration) {
    histogram!("weft_broker_request_queue_seconds", "api" => api).record(d.as_secs_f64());
}

pub(crate) fn send(api: &'static str, d: Duration) {
    histogram!("weft_broker_response_send_seconds", "api" => api).record(d.as_secs_f64());
}

/// Counts itself in a gauge while it lives (connections, waiting requests).
pub(crate) struct Occupancy(Gauge);

impl Occupancy {
    fn new(g: Gauge) -> Self {
        g.increment(1.0);
        Occupancy(g)
    }
    pub(crate) fn connection() -> Self {
        Self::new(gauge!("weft_broker_connections_active"))
    }
    pub(crate) fn produce_wait() -> Self {
        Self::new(gauge!("weft_broker_produce_purgatory_size"))
    }
    pub(crate) fn fetch_wait() -> Self {
        Self::new(gauge!("weft_broker_fetch_purgatory_size"))
    }
}

impl Drop for Occupancy {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// One partition's handles, taken once (labels are built here, not per request).
pub(crate) struct PartitionStats {
    pub(crate) bytes_in: Counter,
    pub(crate) records_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) records_out: Counter,
    size: Gauge,
    start: Gauge,
    end: Gauge,
}

impl PartitionStats {
    pub(crate) fn new(topic: &str, partition: i32) -> Self {
        let t = topic.to_owned();
        let p = partition.to_string();
        PartitionStats {
            bytes_in: counter!("weft_broker_bytes_in_total", "topic" => t.clone()),
            records_in: counter!("weft_broker_records_in_total", "topic" => t.clone()),
            bytes_out: counter!("weft_broker_bytes_out_total", "topic" => t.clone()),
            records_out: counter!("weft_broker_records_out_total", "topic" => t.clone()),
            size: gauge!("weft_broker_partition_log_size_bytes", "topic" => t.clone(), "partition" => p.clone()),
            start: gauge!("weft_broker_partition_log_start_offset", "topic" => t.clone(), "partition" => p.clone()),
            end: gauge!("weft_broker_partition_log_end_offset", "topic" => t, "partition" => p),
        }
    }

    pub(crate) fn set_positions(&self, log: &weft_log::Partition) {
        self.size.set(log.size_bytes() as f64);
        self.start.set(log.log_start_offset() as f64);
        self.end.set(log.log_end_offset() as f64);
    }
}

/// Reading what the `metrics` facade recorded, for this crate's tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use metrics_util::debugging::{DebugValue, Snapshotter};

    /// Values by `name{label=value,…}` since the last read (a snapshot drains the recorder):
    /// a counter's or gauge's value as one number, a histogram's observations.
    pub(crate) fn values(s: &Snapshotter) -> BTreeMap<String, Vec<f64>> {
        s.snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| {
                let key = k.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let v = match v {
                    DebugValue::Counter(n) => vec![n as f64],
                    DebugValue::Gauge(x) => vec![x.0],
                    DebugValue::Histogram(xs) => xs.into_iter().map(|x| x.0).collect(),
                };
                (format!("{}{{{}}}", key.name(), labels.join(",")), v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn names_and_labels() {
        let rec = DebuggingRecorder::new();
        let snapshotter = rec.snapshotter();
        // A produce still waiting when the values are read.
        let waiting = metrics::with_local_recorder(&rec, || {
            request(0, 9, "none");
            request(0, 9, "none");
            request(0, 1, "unsupported_version");
            request(999, -3, "closed");
            processing(api_name(1), Duration::from_millis(3));
            queue(api_name(1), Duration::ZERO);
            send(api_name(1), Duration::ZERO);
            let s = PartitionStats::new("orders", 2);
            s.bytes_in.increment(100);
            s.records_in.increment(3);
            s.bytes_out.increment(50);
            s.records_out.increment(2);
            let conn = Occupancy::connection();
            let produce = Occupancy::produce_wait();
            drop(Occupancy::fetch_wait());
            drop(conn);
            produce
        });
        let v = testing::values(&snapshotter);
        let want: [(&str, &[f64]); 13] = [
            (
                "weft_broker_requests_total{api=Produce,version=9,error=none}",
                &[2.0],
            ),
            (
                "weft_broker_requests_total{api=Produce,version=1,error=unsupported_version}",
                &[1.0],
            ),
            (
                "weft_broker_requests_total{api=unknown,version=other,error=closed}",
                &[1.0],
            ),
            (
                "weft_broker_request_processing_seconds{api=Fetch}",
                &[0.003],
            ),
            ("weft_broker_request_queue_seconds{api=Fetch}", &[0.0]),
            ("weft_broker_response_send_seconds{api=Fetch}", &[0.0]),
            ("weft_broker_bytes_in_total{topic=orders}", &[100.0]),
            ("weft_broker_records_in_total{topic=orders}", &[3.0]),
            ("weft_broker_bytes_out_total{topic=orders}", &[50.0]),
            ("weft_broker_records_out_total{topic=orders}", &[2.0]),
            ("weft_broker_connections_active{}", &[0.0]),
            ("weft_broker_produce_purgatory_size{}", &[1.0]),
            ("weft_broker_fetch_purgatory_size{}", &[0.0]),
        ];
        for (k, n) in want {
            assert_eq!(v.get(k).map(Vec::as_slice), Some(n), "{k} in {v:#?}");
        }
        drop(waiting);
        // The read drained the gauge to 0: the drop shows as -1 (1 - 1 = 0 waiting).
        assert_eq!(
            testing::values(&snapshotter)["weft_broker_produce_purgatory_size{}"],
            [-1.0]
        );
    }
}
