//! Weft's real-time HTTP gateway: REST produce/read, Server-Sent Events and WebSocket live
//! streams resumable from the log, and signed webhooks — all through the Kafka protocol
//! (librdkafka), never broker internals, so it runs unchanged against any Kafka cluster.
//!
//! # Codemap
//! - [`Gateway`]: built from a [`Config`] and a [`weft_store::Store`]; [`Gateway::router`]
//!   is the axum router `weft serve` mounts on its HTTP listener, [`Gateway::run`] the
//!   background work (webhook delivery) and the drain on shutdown.
//! - `kafka`: the librdkafka clients (one producer, one metadata client, a bounded pool of
//!   readers).
//! - `hub`: fan-out — one live reader per topic broadcast to connections, catch-up through
//!   the reader pool, the per-connection engine (positions, gaps, limits, heartbeats).
//! - `position`: event ids (the position set), start points, filters, JSON rendering.
//! - `streams`: the SSE and WebSocket edges of the engine.
//! - `rest`: produce, read by offset with long polling, topic and group APIs.
//! - `registry`: the schema registry client (Confluent API by URL) for Avro/Protobuf/JSON
//!   Schema produce.
//! - `webhooks`: subscriptions (state store), signing (Standard Webhooks), delivery.
//! - `versioning`: `/v1`, `/v2` and the deprecation headers.
//! - `openapi`, `asyncapi`: the contracts.
//! - `problem`: the problem body, request ids, the `Principal` hook.

pub mod asyncapi;
pub mod consumers;
pub mod dlq;
mod hub;
pub mod kafka;
pub mod openapi;
mod outbox;
pub mod position;
pub mod problem;
mod registry;
pub mod rest;
pub mod streams;
pub mod versioning;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::watch;
use tracing::info;

pub use problem::{ApiError, Principal, Problem};

/// Library errors (start-up only; request errors are [`ApiError`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state store: {0}")]
    Store(Box<weft_store::Error>),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<weft_store::Error> for Error {
    fn from(e: weft_store::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

/// Limits of live connections (SSE and WebSocket).
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// SSE comment / WebSocket ping interval.
    pub heartbeat: Duration,
    /// Closed (`idle_timeout`) after this long without an event or a client message.
    pub idle_timeout: Duration,
    /// Closed (`max_lifetime`, with a retry hint) after this long whatever happens.
    pub max_lifetime: Duration,
    /// Events buffered per connection; a client further behind is closed `slow_consumer`.
    pub buffer_events: usize,
    pub max_connections: usize,
    pub max_connections_per_principal: usize,
    /// The `retry` hint sent when a connection is drained.
    pub retry_ms: u64,
    /// A client further behind than `buffer_events` gets a `gap` event (reason
    /// `slow_consumer`) and continues from the live end instead of being closed.
    pub slow_consumer_gap: bool,
    /// WebSocket acknowledgements: events delivered and not yet acknowledged, at most.
    pub max_unacked: usize,
    /// A connection writes at most once per this interval while events keep coming; what
    /// arrives meanwhile goes out in the same write. The first event after a quiet spell
    /// is written at once. A topic's live reader likewise gathers what arrives within this
    /// of a record into one batch for its connections under a steady stream (a batch went
    /// out less than four intervals ago). Zero: no waiting.
    pub flush_interval: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            heartbeat: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(3600),
            buffer_events: 1024,
            max_connections: 20_000,
            max_connections_per_principal: 20_000,
            retry_ms: 1000,
            slow_consumer_gap: false,
            max_unacked: 1000,
            flush_interval: Duration::from_millis(10),
        }
    }
}

/// A secret string whose `Debug` is `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka bootstrap servers (the embedded broker or an external cluster).
    pub bootstrap: String,
    /// Base URL of the schema registry's Confluent API (`http://host:port`).
    pub registry_url: Option<String>,
    /// The `Authorization` header value sent to the registry (`weft serve`: its internal
    /// credential once the registry requires authentication). `Debug` does not show it.
    pub registry_authorization: Option<Redacted>,
    /// librdkafka properties added to every Kafka client of the gateway (security).
    pub kafka_properties: kafka::ClientProperties,
    /// Largest accepted request body (413 above).
    pub max_body_bytes: usize,
    /// Pooled catch-up / read-by-offset readers (Kafka clients).
    pub readers: usize,
    /// Live batches buffered per topic for the connections of that topic (a batch is what
    /// the topic's reader gathered within `stream.flush_interval` under a steady stream;
    /// at most 256 records).
    pub fanout_capacity: usize,
    pub stream: StreamLimits,
    pub webhooks: webhooks::WebhookConfig,
    /// REST consumer instances (`/v1/consumers`).
    pub consumers: consumers::ConsumerConfig,
}

impl Config {
    pub fn new(bootstrap: impl Into<String>) -> Config {
        Config {
            bootstrap: bootstrap.into(),
            registry_url: None,
            registry_authorization: None,
            kafka_properties: kafka::ClientProperties::default(),
            max_body_bytes: 1 << 20,
            readers: 4,
            fanout_capacity: 1024,
            stream: StreamLimits::default(),
            webhooks: webhooks::WebhookConfig::default(),
            consumers: consumers::ConsumerConfig::default(),
        }
    }

    /// Applies the `[gateway]` table of `weft.toml`, then the `WEFT_GATEWAY_<KEY>`
    /// environment variables (which win over the file): the precedence of every `weft serve`
    /// setting, environment over file over default.
    pub fn with_settings(self, file: &Settings) -> Result<Config> {
        self.with_settings_and_env(file, &|name| std::env::var(name).ok())
    }

    /// [`Config::with_settings`] with an injected environment lookup (tests).
    pub fn with_settings_and_env(
        mut self,
        file: &Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        for (key, from_file) in file.entries() {
            let var = format!("WEFT_GATEWAY_{}", key.to_ascii_uppercase());
            let from_env = match env(&var).filter(|v| !v.is_empty()) {
                Some(v) => Some(
                    v.parse::<u64>()
                        .map_err(|_| Error::Config(format!("{var}={v:?} is not a number")))?,
                ),
                None => None,
            };
            if let Some(v) = from_env.or(from_file) {
                self.set(key, v)?;
            }
        }
        Ok(self)
    }

    /// Overrides from `WEFT_GATEWAY_*` environment variables alone (no file).
    pub fn with_env(self) -> Result<Config> {
        self.with_settings(&Settings::default())
    }

    fn set(&mut self, key: &str, v: u64) -> Result<()> {
        let ms = Duration::from_millis;
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let s = &mut self.stream;
        let w = &mut self.webhooks;
        let c = &mut self.consumers;
        match key {
            "heartbeat_ms" => s.heartbeat = ms(v.max(10)),
            "idle_timeout_ms" => s.idle_timeout = ms(v),
            "max_lifetime_ms" => s.max_lifetime = ms(v),
            "buffer_events" => s.buffer_events = count(v),
            "max_connections" => s.max_connections = count(v),
            "max_connections_per_principal" => s.max_connections_per_principal = count(v),
            "retry_ms" => s.retry_ms = v,
            "slow_consumer_gap" => s.slow_consumer_gap = v != 0,
            "max_unacked" => s.max_unacked = count(v.max(1)),
            "flush_interval_ms" => s.flush_interval = ms(v),
            "max_body_bytes" => self.max_body_bytes = count(v),
            "readers" => self.readers = count(v.max(1)),
            "webhook_timeout_ms" => w.timeout = ms(v.max(1)),
            "webhook_attempts" => w.max_attempts = u32::try_from(v.max(1)).unwrap_or(u32::MAX),
            "webhook_backoff_ms" => w.backoff_base = ms(v),
            "webhook_disable_after_ms" => w.disable_after = ms(v),
            "consumer_instance_timeout_ms" => c.instance_timeout = ms(v.max(1)),
            "max_consumer_instances" => c.max_instances = count(v),
            other => return Err(Error::Config(format!("unknown gateway setting {other:?}"))),
        }
        Ok(())
    }
}

/// The `[gateway]` table of `weft.toml`; every key can also be given as the environment
/// variable `WEFT_GATEWAY_<KEY>` (upper case), which wins over the file. Unset keys keep
/// [`Config`]'s defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// SSE comment / WebSocket ping interval (15000; at least 10).
    pub heartbeat_ms: Option<u64>,
    /// A live connection without traffic is closed after this (300000).
    pub idle_timeout_ms: Option<u64>,
    /// A live connection is closed after this whatever happens (3600000).
    pub max_lifetime_ms: Option<u64>,
    /// Events buffered per live connection (1024).
    pub buffer_events: Option<u64>,
    /// Live connections at most (20000).
    pub max_connections: Option<u64>,
    /// Live connections per principal at most (20000).
    pub max_connections_per_principal: Option<u64>,
    /// The `retry` hint sent when connections are drained (1000).
    pub retry_ms: Option<u64>,
    /// 1: a client further behind than `buffer_events` gets a `gap` event and continues
    /// from the live end; 0 (default): it is closed with `slow_consumer`.
    pub slow_consumer_gap: Option<u64>,
    /// WebSocket acknowledgements: unacknowledged events in flight at most (1000).
    pub max_unacked: Option<u64>,
    /// A live connection under a steady stream writes at most once per this (10; 0: at
    /// every wake-up); the first event after a quiet spell goes out at once.
    pub flush_interval_ms: Option<u64>,
    /// Largest request body (1 MiB).
    pub max_body_bytes: Option<u64>,
    /// Concurrent catch-up / read-by-offset reads (4).
    pub readers: Option<u64>,
    /// A webhook delivery succeeds on a 2xx within this (10000).
    pub webhook_timeout_ms: Option<u64>,
    /// Attempts per webhook delivery before the DLQ (8).
    pub webhook_attempts: Option<u64>,
    /// First webhook retry delay, doubled per attempt (500).
    pub webhook_backoff_ms: Option<u64>,
    /// A webhook target failing without success for this long is disabled (86400000).
    pub webhook_disable_after_ms: Option<u64>,
    /// A REST consumer instance unused for this long is deleted (300000; Confluent's
    /// `consumer.instance.timeout.ms`).
    pub consumer_instance_timeout_ms: Option<u64>,
    /// REST consumer instances at most (100).
    pub max_consumer_instances: Option<u64>,
}

impl Settings {
    /// (key, value) of every setting, in the order they are applied.
    fn entries(&self) -> [(&'static str, Option<u64>); 18] {
        [
            ("heartbeat_ms", self.heartbeat_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_lifetime_ms", self.max_lifetime_ms),
            ("buffer_events", self.buffer_events),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_principal",
                self.max_connections_per_principal,
            ),
            ("retry_ms", self.retry_ms),
            ("slow_consumer_gap", self.slow_consumer_gap),
            ("max_unacked", self.max_unacked),
            ("flush_interval_ms", self.flush_interval_ms),
            ("max_body_bytes", self.max_body_bytes),
            ("readers", self.readers),
            ("webhook_timeout_ms", self.webhook_timeout_ms),
            ("webhook_attempts", self.webhook_attempts),
            ("webhook_backoff_ms", self.webhook_backoff_ms),
            ("webhook_disable_after_ms", self.webhook_disable_after_ms),
            (
                "consumer_instance_timeout_ms",
                self.consumer_instance_timeout_ms,
            ),
            ("max_consumer_instances", self.max_consumer_instances),
        ]
    }
}

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) kafka: Arc<kafka::Kafka>,
    pub(crate) registry: Option<registry::RegistryClient>,
    pub(crate) hubs: hub::Hubs,
    pub(crate) limits: Arc<hub::ConnLimits>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) webhooks: Arc<webhooks::Webhooks>,
    pub(crate) deprecations: versioning::Deprecations,
    pub(crate) consumers: Arc<consumers::Consumers>,
    pub(crate) redrives: dlq::Redrives,
}

impl Gateway {
    /// Creates the Kafka clients and applies the gateway's migrations to `store`.
    pub async fn open(config: Config, store: weft_store::Store) -> Result<Gateway> {
        kafka::register_properties(&config.bootstrap, &config.kafka_properties);
        let kafka = Arc::new(
            kafka::Kafka::new(&config.bootstrap, config.readers)
                .map_err(|e| Error::Kafka(e.to_string()))?,
        );
        let registry = config.registry_url.as_deref().map(|url| {
            registry::RegistryClient::new(url)
                .with_authorization(config.registry_authorization.as_ref().map(|r| &r.0))
        });
        let (shutdown_tx, _) = watch::channel(false);
        let webhooks =
            webhooks::Webhooks::open(store, config.webhooks.clone(), Arc::clone(&kafka)).await?;
        Ok(Gateway(Arc::new(Inner {
            hubs: hub::Hubs::new(
                &config.bootstrap,
                config.fanout_capacity,
                config.stream.flush_interval,
            ),
            limits: Arc::new(hub::ConnLimits::new(
                config.stream.max_connections,
                config.stream.max_connections_per_principal,
            )),
            kafka,
            registry,
            shutdown_tx,
            webhooks: Arc::new(webhooks),
            deprecations: versioning::Deprecations::default(),
            consumers: Arc::new(consumers::Consumers::new(
                config.consumers.clone(),
                &config.bootstrap,
            )),
            redrives: dlq::Redrives::default(),
            config,
        })))
    }

    /// Every gateway route: `/v1/…`, `/v2/…`, `/openapi.json`, `/asyncapi.json`.
    pub fn router(&self) -> Router {
        let v1 = rest::routes()
            .merge(streams::routes())
            .merge(webhooks::routes())
            .merge(consumers::routes())
            .merge(dlq::routes())
            .merge(versioning::v1_routes());
        Router::new()
            .nest("/v1", v1)
            .nest("/v2", versioning::v2_routes())
            .merge(openapi::routes())
            .merge(asyncapi::routes())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                versioning::deprecation_layer,
            ))
            .layer(axum::middleware::from_fn(problem::rejections_layer))
            .layer(DefaultBodyLimit::max(self.0.config.max_body_bytes))
            .layer(axum::middleware::from_fn(problem::request_id_layer))
            .with_state(self.clone())
    }

    /// Background work until `shutdown` resolves (webhook delivery), then the drain: live
    /// connections get a `close` with the `retry` hint, readers stop.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let mut workers = self.0.webhooks.start(self.0.shutdown_tx.subscribe());
        workers.push(tokio::spawn(
            Arc::clone(&self.0.consumers).reap(self.0.shutdown_tx.subscribe()),
        ));
        shutdown.await;
        info!(
            connections = self.0.limits.open(),
            "gateway draining live connections"
        );
        let _ = self.0.shutdown_tx.send(true);
        self.0.hubs.stop_all();
        for w in workers {
            let _ = w.await;
        }
        Ok(())
    }

    /// Live connections open now.
    pub fn open_connections(&self) -> usize {
        self.0.limits.open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str, env: &[(&str, &str)]) -> Result<Config> {
        let file: Settings = toml::from_str(toml).map_err(|e| Error::Config(e.to_string()))?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::new("b:9092").with_settings_and_env(&file, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn env_over_file_over_default() {
        let c = resolve("", &[]).expect("valid");
        assert_eq!(c.stream.heartbeat, Duration::from_secs(15));
        assert_eq!(c.consumers.max_instances, 100);
        let c = resolve("heartbeat_ms = 200\nmax_consumer_instances = 3", &[]).expect("valid");
        assert_eq!(c.stream.heartbeat, Duration::from_millis(200));
        assert_eq!(c.consumers.max_instances, 3);
        let c = resolve(
            "heartbeat_ms = 200\nreaders = 2",
            &[
                ("WEFT_GATEWAY_HEARTBEAT_MS", "300"),
                ("WEFT_GATEWAY_READERS", ""),
            ],
        )
        .expect("valid");
        assert_eq!(c.stream.heartbeat, Duration::from_millis(300));
        assert_eq!(c.readers, 2, "an empty variable counts as unset");
        let c =
            resolve("", &[("WEFT_GATEWAY_CONSUMER_INSTANCE_TIMEOUT_MS", "1500")]).expect("valid");
        assert_eq!(c.consumers.instance_timeout, Duration::from_millis(1500));
        assert_eq!(
            resolve("", &[]).expect("valid").stream.flush_interval,
            Duration::from_millis(10)
        );
        let c = resolve(
            "flush_interval_ms = 25",
            &[("WEFT_GATEWAY_FLUSH_INTERVAL_MS", "0")],
        )
        .expect("valid");
        assert_eq!(c.stream.flush_interval, Duration::ZERO);
    }

    #[test]
    fn errors() {
        let e = resolve("heartbeat = 1", &[])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = resolve("readers = \"four\"", &[])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = resolve("", &[("WEFT_GATEWAY_READERS", "four")])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("WEFT_GATEWAY_READERS"), "{e}");
    }
}
