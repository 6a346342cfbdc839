//! Process-wide observability of `weft serve`: masked structured logs on stderr (stdout stays
//! free for commands that print data, such as `weft consume`), the metrics recorder, and —
//! when an OTLP endpoint is configured — trace export. The pieces live in `weft-observe`;
//! this module only composes them from the settings.

use anyhow::{Context, anyhow};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use weft_observe::logs::{Format, LogLayer};
use weft_observe::trace::Tracing;
use weft_observe::{Masker, Metrics};

use crate::settings::LogFormat;

/// What `weft serve` keeps of its observability for the life of the process.
pub(crate) struct Observability {
    /// The Prometheus recorder; `None` when metrics are off (`/metrics` is then not served).
    pub(crate) metrics: Option<Metrics>,
    /// The trace exporter; `None` unless an OTLP endpoint is configured.
    pub(crate) tracing: Option<Tracing>,
    /// The masking rules (the registry may classify more fields at run time).
    pub(crate) masker: Masker,
    pub(crate) config: weft_observe::Config,
}

impl Observability {
    /// Exports the spans still buffered and stops the exporter (blocking work off the reactor).
    pub(crate) async fn shutdown(&self) {
        if let Some(t) = self.tracing.clone() {
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
    }
}

/// The level filter: `RUST_LOG`, when set and not empty, wins over `level`.
fn filter(level: &str) -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).with_context(|| format!("invalid RUST_LOG={v:?}"))
        }
        _ => EnvFilter::try_new(level).with_context(|| format!("invalid log level {level:?}")),
    }
}

/// Installs the global subscriber (masked log lines, plus the OpenTelemetry bridge when
/// tracing is on) and the metrics recorder. Must run inside the tokio runtime.
pub(crate) fn init(
    format: LogFormat,
    level: &str,
    config: &weft_observe::Config,
) -> anyhow::Result<Observability> {
    let masker = config.validate().context("invalid [observe] settings")?;
    let format = match format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    let tracing = match config.trace() {
        Some(t) => Some(Tracing::start(&t, masker.clone()).context("cannot start trace export")?),
        None => None,
    };
    let otel = tracing.as_ref().map(|t| t.layer());
    if tracing.is_some() {
        // Broker Produce/Fetch spans, parented on records' W3C context (off until this).
        weft_broker::trace::install(weft_observe::trace::set_remote_parent);
    }
    tracing_subscriber::registry()
        .with(filter(level)?)
        .with(otel)
        .with(LogLayer::new(format, masker.clone(), std::io::stderr))
        .try_init()
        .map_err(|e| anyhow!("cannot install the logger: {e}"))?;

    let metrics = if config.metrics {
        let m = Metrics::install().context("cannot install the metrics recorder")?;
        // Histogram storage is drained by scrapes too; this bounds it when nobody scrapes.
        let upkeep = m.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(weft_observe::metrics::UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                let m = upkeep.clone();
                let _ = tokio::task::spawn_blocking(move || m.run_upkeep()).await;
            }
        });
        Some(m)
    } else {
        None
    };
    Ok(Observability {
        metrics,
        tracing,
        masker,
        config: config.clone(),
    })
}

/// How often the registry is checked for new schemas whose fields are tagged as sensitive.
const CLASSIFY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Masks, from now on, the fields the registry's schemas tag as sensitive (`confluent:tags`
/// with PII, SENSITIVE, … on an Avro field or a JSON Schema property; see
/// `weft_observe::mask::classified_fields`): every schema at start, then each new id as it
/// is registered. Runs until shutdown.
pub(crate) async fn classify_registry_fields(
    registry: weft_registry::Registry,
    masker: Masker,
    mut shutdown: crate::supervisor::Shutdown,
) -> anyhow::Result<()> {
    let mut next = 1i64;
    let mut tick = tokio::time::interval(CLASSIFY_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.requested() => return Ok(()),
            _ = tick.tick() => {}
        }
        let max = match registry.max_schema_id().await {
            Ok(max) => max,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the registry's schema ids for masking");
                continue;
            }
        };
        while next <= max {
            // Ids of hard-deleted schemas are gone: nothing to classify.
            if let Ok(schema) = registry.schema_by_id(next, None).await {
                for field in masker.classify_schema(&schema.schema) {
                    tracing::info!(field = %field, schema_id = next, "masking a field the registry classifies as sensitive");
                }
            }
            next += 1;
        }
    }
}
