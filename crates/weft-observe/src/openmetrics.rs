//! OpenMetrics 1.0 text with exemplars carrying trace ids, at `/metrics` for scrapers that ask
//! for it (`Accept: application/openmetrics-text`, which Prometheus sends when exemplar storage
//! is on).
//!
//! `metrics-exporter-prometheus` stays the one store of counters and gauges and renders the
//! 0.0.4 text format; it has no OpenMetrics output and no exemplars. So:
//! - [`ExemplarRecorder`] wraps its recorder: every histogram is also kept in a
//!   `prometheus-client` [`HistogramWithExemplars`] with the same buckets, which remembers,
//!   per bucket, the last observation made inside a sampled span — `trace_id` and `span_id`
//!   of the current span, its value and time. While traces are off no exemplar is taken (one
//!   atomic load).
//! - [`render`] encodes one scrape with `prometheus-client`'s OpenMetrics encoder: counters
//!   and gauges read back from the exporter's rendering (the same values the 0.0.4 format
//!   shows), histograms with their exemplars from [`Histograms`]. No line is formatted here.
//!
//! Counter families lose their `_total` suffix in the descriptor (OpenMetrics names the
//! family without it; the encoder adds it to the sample), so series names are the same in both
//! formats.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::{Exemplar, HistogramWithExemplars};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::registry::Registry;

use crate::exposition;

/// The OpenMetrics text content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (any version; we serve 1.0.0).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let (media, params) = part.split_once(';').unwrap_or((part, ""));
        media
            .trim()
            .eq_ignore_ascii_case("application/openmetrics-text")
            && !params
                .split(';')
                .any(|p| p.trim().replace(' ', "").eq_ignore_ascii_case("q=0"))
    })
}

type Labels = Vec<(String, String)>;
/// Exemplar labels: `trace_id` and `span_id` (62 characters with their names, within
/// OpenMetrics' 128).
type ExemplarLabels = Vec<(&'static str, String)>;
type Hist = HistogramWithExemplars<ExemplarLabels>;

/// Bucket bounds of a family, chosen by name as the exporter's are.
#[derive(Debug, Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Hist> for Buckets {
    fn new_metric(&self) -> Hist {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

type HistFamily = Family<Labels, Hist, Buckets>;

/// Every histogram recorded through the facade, with exemplars.
#[derive(Debug, Default)]
pub struct Histograms {
    families: RwLock<BTreeMap<String, HistFamily>>,
}

impl Histograms {
    fn get(&self, key: &Key) -> Hist {
        let labels: Labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let name = key.name();
        {
            let families = self
                .families
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(f) = families.get(name) {
                return (*f.get_or_create(&labels)).clone();
            }
        }
        let mut families = self
            .families
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = families.entry(name.to_owned()).or_insert_with(|| {
            Family::new_with_constructor(Buckets(crate::metrics::buckets_for(name)))
        });
        (*f.get_or_create(&labels)).clone()
    }

    fn snapshot(&self) -> Vec<(String, HistFamily)> {
        self.families
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The trace context of the current span as exemplar labels, when traces are exported and
/// the span is sampled.
fn current_exemplar() -> Option<ExemplarLabels> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !crate::trace::enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| {
        vec![
            ("trace_id", sc.trace_id().to_string()),
            ("span_id", sc.span_id().to_string()),
        ]
    })
}

/// A histogram handle that records into the exporter's histogram and the exemplar store.
struct Both {
    exporter: Histogram,
    openmetrics: Hist,
}

impl HistogramFn for Both {
    fn record(&self, value: f64) {
        self.exporter.record(value);
        match current_exemplar() {
            Some(ex) => self
                .openmetrics
                .observe(value, Some(ex), Some(SystemTime::now())),
            None => self.openmetrics.observe(value, None, None),
        }
    }
}

/// The exporter's recorder with histograms also kept, with exemplars, in [`Histograms`].
pub struct ExemplarRecorder<R> {
    inner: R,
    histograms: Arc<Histograms>,
}

impl<R> ExemplarRecorder<R> {
    pub fn new(inner: R, histograms: Arc<Histograms>) -> Self {
        ExemplarRecorder { inner, histograms }
    }
}

impl<R: Recorder> Recorder for ExemplarRecorder<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Both {
            exporter: self.inner.register_histogram(key, metadata),
            openmetrics: self.histograms.get(key),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug)]
struct Plain {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(Labels, f64)>,
}

/// One scrape: the exporter's counters and gauges, and the histogram families.
#[derive(Debug)]
struct Scrape {
    plain: Vec<Plain>,
    histograms: Vec<(String, String, HistFamily)>,
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for p in &self.plain {
            let (name, ty) = match p.kind {
                Kind::Counter => (
                    p.name.strip_suffix("_total").unwrap_or(&p.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (p.name.as_str(), MetricType::Gauge),
            };
            let mut metric = encoder.encode_descriptor(name, &p.help, None, ty)?;
            for (labels, value) in &p.samples {
                let mut sample = metric.encode_family(labels)?;
                match p.kind {
                    Kind::Counter => sample.encode_counter::<ExemplarLabels, f64, f64>(
                        value,
                        None::<&Exemplar<_, f64>>,
                    )?,
                    Kind::Gauge => sample.encode_gauge(value)?,
                }
            }
        }
        for (name, help, family) in &self.histograms {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            family.encode(metric)?;
        }
        Ok(())
    }
}

/// The OpenMetrics exposition of one scrape: `text` is the exporter's 0.0.4 rendering (for
/// counters, gauges and every `# HELP`), histograms come from `histograms`.
pub fn render(text: &str, histograms: &Histograms) -> String {
    let mut help: BTreeMap<&str, &str> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let mut plain: Vec<Plain> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, h)) = rest.split_once(' ') {
                help.insert(name, h);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                kinds.insert(name, kind.trim());
            }
            continue;
        }
        let Some(sample) = exposition::parse(line).into_iter().next() else {
            continue;
        };
        let kind = match kinds.get(sample.name.as_str()).copied() {
            Some("counter") => Kind::Counter,
            Some("gauge") | Some("untyped") | None => Kind::Gauge,
            // Histogram and summary samples (`_bucket`, `_sum`, `_count` have no TYPE line of
            // their own): histograms are taken from the exemplar store.
            Some(_) => continue,
        };
        if kind == Kind::Gauge
            && ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                sample
                    .name
                    .strip_suffix(suffix)
                    .is_some_and(|base| kinds.contains_key(base))
            })
        {
            continue;
        }
        let i = *index.entry(sample.name.clone()).or_insert_with(|| {
            plain.push(Plain {
                name: sample.name.clone(),
                help: String::new(),
                kind,
                samples: Vec::new(),
            });
            plain.len() - 1
        });
        plain[i].samples.push((sample.labels, sample.value));
    }
    for p in &mut plain {
        p.help = help.get(p.name.as_str()).copied().unwrap_or("").to_owned();
    }
    let histograms = histograms
        .snapshot()
        .into_iter()
        .map(|(name, family)| {
            let h = help.get(name.as_str()).copied().unwrap_or("").to_owned();
            (name, h, family)
        })
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { plain, histograms }));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would mean a bug, shown as such.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        out = format!("# openmetrics encoding failed: {e}\n# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let cases = [
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                true,
            ),
            ("application/openmetrics-text", true),
            ("Application/OpenMetrics-Text; version=1.0.0", true),
            ("text/plain;version=0.0.4", false),
            ("*/*", false),
            ("", false),
            ("application/openmetrics-text;q=0", false),
        ];
        for (accept, expected) in cases {
            assert_eq!(wants_openmetrics(accept), expected, "{accept}");
        }
    }

    #[test]
    fn counters_gauges_and_histograms_with_exemplars() {
        let histograms = Arc::new(Histograms::default());
        let recorder = ExemplarRecorder::new(
            metrics_util::debugging::DebuggingRecorder::new(),
            Arc::clone(&histograms),
        );
        let key = Key::from_parts(
            "weft_x_seconds",
            vec![metrics::Label::new("api", "Produce")],
        );
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        let h = recorder.register_histogram(&key, &meta);
        h.record(0.003);
        h.record(0.2);
        let text = "# HELP weft_requests_total requests\n# TYPE weft_requests_total counter\nweft_requests_total{api=\"Produce\",error=\"none\"} 3\n# TYPE weft_conn gauge\nweft_conn 2\n# HELP weft_x_seconds latency\n# TYPE weft_x_seconds histogram\nweft_x_seconds_bucket{api=\"Produce\",le=\"0.005\"} 1\nweft_x_seconds_sum{api=\"Produce\"} 0.203\nweft_x_seconds_count{api=\"Produce\"} 2\n";
        let out = render(text, &histograms);
        for expected in [
            "# TYPE weft_requests counter\n",
            "# HELP weft_requests requests\n",
            "weft_requests_total{api=\"Produce\",error=\"none\"} 3",
            "# TYPE weft_conn gauge\n",
            "weft_conn 2",
            "# TYPE weft_x_seconds histogram\n",
            "# HELP weft_x_seconds latency\n",
            "weft_x_seconds_bucket{le=\"0.005\",api=\"Produce\"} 1\n",
            "weft_x_seconds_count{api=\"Produce\"} 2\n",
        ] {
            assert!(out.contains(expected), "{expected:?} not in\n{out}");
        }
        assert!(out.ends_with("# EOF\n"), "{out}");
        // Traces are off in unit tests: no exemplar.
        assert!(!out.contains("trace_id"), "{out}");
    }
}
