//! Weft's transactional outbox: a service writes its business rows and the events describing
//! them in one local transaction; the relay publishes those events to Kafka, in order per
//! aggregate, without two-phase commit and without the service talking to the broker.
//!
//! - [`table`]: the outbox table layout for PostgreSQL, MariaDB/MySQL and SQLite (Debezium
//!   outbox-event-router columns `id`, `aggregatetype`, `aggregateid`, `type`, `payload`, plus
//!   `headers`, `created_at`, and the relay's `seq` and `published_at`), applied by
//!   [`table::init`] (`weft outbox init --database …`).
//! - [`insert`]: the SDK helper a service calls inside its own sqlx transaction; it stamps
//!   the message id (UUIDv7), correlation/causation ids and W3C trace context.
//! - [`relay`]: the relay `weft serve` runs per `[[outbox.sources]]`: polling or PostgreSQL
//!   logical decoding, an idempotent rdkafka producer (`acks=all`), the row marked or deleted
//!   in the source database only after the broker acknowledged it, backoff with jitter while
//!   the broker is down, and the bad-row policies (stop the aggregate and alert, or DLQ).
//! - [`status`]: per-source figures for `weft outbox status`, `GET /v1/outbox` and metrics.
//!
//! # Why polling never skips a row
//!
//! The relay keeps no "last id" cursor. It reads the rows whose `published_at` is NULL that
//! its snapshot sees, in `seq` order, and marks (or deletes) exactly the rows the broker
//! acknowledged. A row whose transaction commits late — after rows with a higher `seq` were
//! published — is still unpublished and is picked up by the next poll: the classic
//! `WHERE id > last` gap cannot happen because nothing is skipped by position. This holds on
//! every database without visibility tricks (see `docs/outbox.md` for why an xid-window
//! cursor on PostgreSQL would break per-aggregate order instead).
//!
//! Per-aggregate order: `seq` is taken when the row is inserted. A service that changes an
//! aggregate locks its row first (an `UPDATE` of the aggregate, or `SELECT … FOR UPDATE`),
//! so the next event of that aggregate is inserted only after the previous transaction
//! committed: it gets a higher `seq`, and any snapshot that sees it also sees its
//! predecessor. Logical decoding gives commit order without that discipline.

pub mod config;
pub mod event;
pub mod logical;
pub mod relay;
mod schema;
pub mod status;
pub mod table;

pub use config::{BadRowPolicy, Cleanup, Mode, OutboxConfig, PayloadFormat, SourceConfig};
pub use event::{Context, InsertError, OutboxEvent, OutboxExecutor, insert, insert_into};
pub use relay::run;
pub use status::{Outbox, SourceStatus, router};
pub use table::{Dialect, Table};

/// Header names, the same as the Weft SDK's.
pub mod headers {
    /// The row id: consumers dedupe by it.
    pub const MESSAGE_ID: &str = "weft-message-id";
    pub const CORRELATION_ID: &str = "weft-correlation-id";
    pub const CAUSATION_ID: &str = "weft-causation-id";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// The event type (`type` column), unless the source maps it elsewhere.
    pub const EVENT_TYPE: &str = "weft-event-type";
    /// The source (its `name`) a row came from, on dead letters.
    pub const OUTBOX_SOURCE: &str = "weft-outbox-source";
    /// On a dead letter whose payload was cut to fit `max_message_bytes`. The rest of the
    /// envelope is `weft_resilience::dlq`'s (`weft-dlq-error-message`, `-original-topic`, …).
    pub const DLQ_TRUNCATED: &str = "weft-dlq-truncated";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "unsupported database URL {url}: expected postgres://…, mysql://…, mariadb://… or sqlite:…"
    )]
    UnsupportedUrl { url: String },
    #[error("invalid outbox table name {0:?}: letters, digits and _ only, optionally schema.table")]
    InvalidTable(String),
    #[error("cannot connect to database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("invalid outbox configuration: {0}")]
    Config(String),
    #[error("logical decoding: {0}")]
    Logical(String),
    /// Another relay holds this outbox table's lock; this one waits and retries.
    #[error("standing by: {0}")]
    Standby(String),
    /// `value_schema`: the registry cannot answer, or lacks the subject/version.
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `url` with the password of its `user:password@` part replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end],
        &userinfo[..colon],
        &url[scheme_end + at..]
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
