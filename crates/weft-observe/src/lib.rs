//! Weft's observability: metrics, logs, traces and the live dashboard (issue 9).
//!
//! - [`metrics`]: the process-wide Prometheus recorder behind the `metrics` facade that every
//!   crate records through; [`http::metrics_router`] serves it at `/metrics`; [`process`] adds
//!   CPU, memory and file-descriptor gauges from `/proc` at scrape time; [`openmetrics`] the
//!   OpenMetrics format with exemplars carrying trace ids.
//! - [`logs`]: the JSON/text log layer with a stable field set; [`mask`] masks secrets and
//!   personal data by field name and content before a line or span attribute leaves.
//! - [`trace`]: OpenTelemetry over OTLP/HTTP, off unless an endpoint is configured; W3C
//!   context in Kafka headers; how the broker creates spans.
//! - [`ui`]: the dashboard at `/ui`, fed by server-sent events.
//!
//! Must not: know any component's internals (components record through the facade; the
//! dashboard reads `/metrics` back and takes groups through a closure), block the reactor
//! (rendering runs on the blocking pool), or let a masked value out through any path.

pub mod exposition;
pub mod http;
pub mod logs;
pub mod mask;
pub mod metrics;
pub mod openmetrics;
pub mod process;
pub mod trace;
pub mod ui;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::mask::Masker;
pub use crate::metrics::Metrics;

/// The `[observe]` table of `weft.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Record metrics and serve `/metrics` (on by default).
    pub metrics: bool,
    /// OTLP/HTTP endpoint (`http://collector:4318`); traces are off without one.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces recorded, 0..=1.
    pub trace_sample_ratio: f64,
    /// `service.name` of exported spans.
    pub service_name: String,
    /// Field names masked whole, in addition to [`mask::DEFAULT_FIELDS`].
    pub mask_fields: Vec<String>,
    /// Extra content patterns by name (regex; each match is masked).
    pub mask_patterns: BTreeMap<String, String>,
    /// How often the dashboard's event stream sends a snapshot, in milliseconds.
    pub ui_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metrics: true,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            service_name: "weft".to_owned(),
            mask_fields: Vec::new(),
            mask_patterns: BTreeMap::new(),
            ui_interval_ms: 1000,
        }
    }
}

/// Invalid `[observe]` settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Mask(#[from] mask::MaskError),
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    #[error("observe.ui_interval_ms must be between 100 and 60000")]
    UiInterval,
}

impl Config {
    /// Checks every value; the masker it builds is returned so it is built once.
    pub fn validate(&self) -> Result<Masker, ConfigError> {
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            return Err(trace::TraceError::Ratio(self.trace_sample_ratio).into());
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            trace::traces_url(endpoint)?;
        }
        if !(100..=60_000).contains(&self.ui_interval_ms) {
            return Err(ConfigError::UiInterval);
        }
        Ok(self.masker()?)
    }

    /// The masker: built-in rules, default and configured field names, extra patterns.
    pub fn masker(&self) -> Result<Masker, mask::MaskError> {
        Masker::new(
            mask::DEFAULT_FIELDS
                .iter()
                .copied()
                .chain(self.mask_fields.iter().map(String::as_str)),
            self.mask_patterns
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Trace settings, when an endpoint is configured.
    pub fn trace(&self) -> Option<trace::TraceConfig> {
        self.otlp_endpoint
            .as_ref()
            .map(|endpoint| trace::TraceConfig {
                endpoint: endpoint.clone(),
                sample_ratio: self.trace_sample_ratio,
                service_name: self.service_name.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(Config::default().validate().is_ok());
        let bad = [
            Config {
                trace_sample_ratio: 1.5,
                ..Config::default()
            },
            Config {
                otlp_endpoint: Some("https://x:4318".into()),
                ..Config::default()
            },
            Config {
                ui_interval_ms: 5,
                ..Config::default()
            },
            Config {
                mask_patterns: BTreeMap::from([("p".to_owned(), "(".to_owned())]),
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let c: Config = toml_like();
        assert!(c.masker().expect("masker").is_sensitive_field("iban"));
    }

    fn toml_like() -> Config {
        serde_json::from_str(r#"{"mask_fields":["iban"],"otlp_endpoint":"http://c:4318"}"#)
            .expect("valid")
    }
}

/// The shipped Grafana dashboard and the metrics guide stay in step with each other.
#[cfg(test)]
mod dashboard_json {
    const GRAFANA: &str = include_str!("../../../deploy/grafana/weft.json");
    const GUIDE: &str = include_str!("../../../docs/observability.md");

    #[test]
    fn grafana_dashboard_uses_only_documented_metrics() {
        let json: serde_json::Value = serde_json::from_str(GRAFANA).expect("valid JSON");
        let mut exprs = Vec::new();
        for panel in json["panels"].as_array().expect("panels") {
            for t in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(t["expr"].as_str().expect("expr").to_owned());
            }
        }
        assert!(exprs.len() > 20, "{exprs:?}");
        let names = regex::Regex::new(r"\b(?:weft|process)_[a-z0-9_]+").expect("regex");
        for expr in &exprs {
            for m in names.find_iter(expr) {
                // Histogram series are documented under the histogram's name.
                let name = m
                    .as_str()
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(
                    GUIDE.contains(&format!("`{name}`")) || GUIDE.contains(&format!("`{name}{{")),
                    "{name} (in {expr}) is not documented in docs/observability.md"
                );
            }
        }
    }
}
