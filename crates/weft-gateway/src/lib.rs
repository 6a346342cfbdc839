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
mod hub;
pub mod kafka;
pub mod openapi;
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
        }
    }
}

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka bootstrap servers (the embedded broker or an external cluster).
    pub bootstrap: String,
    /// Base URL of the schema registry's Confluent API (`http://host:port`).
    pub registry_url: Option<String>,
    /// Largest accepted request body (413 above).
    pub max_body_bytes: usize,
    /// Pooled catch-up / read-by-offset readers (Kafka clients).
    pub readers: usize,
    /// Live records buffered per topic for the connections of that topic.
    pub fanout_capacity: usize,
    pub stream: StreamLimits,
    pub webhooks: webhooks::WebhookConfig,
}

impl Config {
    pub fn new(bootstrap: impl Into<String>) -> Config {
        Config {
            bootstrap: bootstrap.into(),
            registry_url: None,
            max_body_bytes: 1 << 20,
            readers: 4,
            fanout_capacity: 8192,
            stream: StreamLimits::default(),
            webhooks: webhooks::WebhookConfig::default(),
        }
    }

    /// Overrides from `WEFT_GATEWAY_*` environment variables (until these become flags of
    /// `weft serve`): `HEARTBEAT_MS`, `IDLE_TIMEOUT_MS`, `MAX_LIFETIME_MS`, `BUFFER_EVENTS`,
    /// `MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_PRINCIPAL`, `RETRY_MS`, `SLOW_CONSUMER_GAP` (0|1),
    /// `MAX_UNACKED`, `MAX_BODY_BYTES`,
    /// `READERS`, `WEBHOOK_TIMEOUT_MS`, `WEBHOOK_ATTEMPTS`, `WEBHOOK_BACKOFF_MS`,
    /// `WEBHOOK_DISABLE_AFTER_MS`.
    pub fn with_env(mut self) -> Result<Config> {
        fn var(name: &str) -> Result<Option<u64>> {
            match std::env::var(format!("WEFT_GATEWAY_{name}")) {
                Ok(v) => v.parse().map(Some).map_err(|_| {
                    Error::Config(format!("WEFT_GATEWAY_{name}={v:?} is not a number"))
                }),
                Err(_) => Ok(None),
            }
        }
        let ms = Duration::from_millis;
        let s = &mut self.stream;
        if let Some(v) = var("HEARTBEAT_MS")? {
            s.heartbeat = ms(v.max(10));
        }
        if let Some(v) = var("IDLE_TIMEOUT_MS")? {
            s.idle_timeout = ms(v);
        }
        if let Some(v) = var("MAX_LIFETIME_MS")? {
            s.max_lifetime = ms(v);
        }
        if let Some(v) = var("BUFFER_EVENTS")? {
            s.buffer_events = v as usize;
        }
        if let Some(v) = var("MAX_CONNECTIONS")? {
            s.max_connections = v as usize;
        }
        if let Some(v) = var("MAX_CONNECTIONS_PER_PRINCIPAL")? {
            s.max_connections_per_principal = v as usize;
        }
        if let Some(v) = var("RETRY_MS")? {
            s.retry_ms = v;
        }
        if let Some(v) = var("SLOW_CONSUMER_GAP")? {
            s.slow_consumer_gap = v != 0;
        }
        if let Some(v) = var("MAX_UNACKED")? {
            s.max_unacked = (v as usize).max(1);
        }
        if let Some(v) = var("MAX_BODY_BYTES")? {
            self.max_body_bytes = v as usize;
        }
        if let Some(v) = var("READERS")? {
            self.readers = v as usize;
        }
        let w = &mut self.webhooks;
        if let Some(v) = var("WEBHOOK_TIMEOUT_MS")? {
            w.timeout = ms(v);
        }
        if let Some(v) = var("WEBHOOK_ATTEMPTS")? {
            w.max_attempts = v as u32;
        }
        if let Some(v) = var("WEBHOOK_BACKOFF_MS")? {
            w.backoff_base = ms(v);
        }
        if let Some(v) = var("WEBHOOK_DISABLE_AFTER_MS")? {
            w.disable_after = ms(v);
        }
        Ok(self)
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
}

impl Gateway {
    /// Creates the Kafka clients and applies the gateway's migrations to `store`.
    pub async fn open(config: Config, store: weft_store::Store) -> Result<Gateway> {
        let kafka = Arc::new(
            kafka::Kafka::new(&config.bootstrap, config.readers)
                .map_err(|e| Error::Kafka(e.to_string()))?,
        );
        let registry = config
            .registry_url
            .as_deref()
            .map(registry::RegistryClient::new);
        let (shutdown_tx, _) = watch::channel(false);
        let webhooks =
            webhooks::Webhooks::open(store, config.webhooks.clone(), Arc::clone(&kafka)).await?;
        Ok(Gateway(Arc::new(Inner {
            hubs: hub::Hubs::new(&config.bootstrap, config.fanout_capacity),
            limits: Arc::new(hub::ConnLimits::new(
                config.stream.max_connections,
                config.stream.max_connections_per_principal,
            )),
            kafka,
            registry,
            shutdown_tx,
            webhooks: Arc::new(webhooks),
            deprecations: versioning::Deprecations::default(),
            config,
        })))
    }

    /// Every gateway route: `/v1/…`, `/v2/…`, `/openapi.json`, `/asyncapi.json`.
    pub fn router(&self) -> Router {
        let v1 = rest::routes()
            .merge(streams::routes())
            .merge(webhooks::routes())
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
        let workers = self.0.webhooks.start(self.0.shutdown_tx.subscribe());
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
