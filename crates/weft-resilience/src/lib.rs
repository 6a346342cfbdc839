//! Resilience primitives shared by the Rust SDK (`weft-client`), the gateway's webhooks and
//! the outbox relay.
//!
//! - [`retry`]: bounded retry schedules ([`RetryPolicy`]) with full or decorrelated jitter
//!   (the definitions of the AWS Architecture Blog post "Exponential Backoff And Jitter"),
//!   usable directly as a `backon` [`BackoffBuilder`](backon::BackoffBuilder), plus error
//!   classification ([`ErrorClass`], [`Classify`]) and [`retry::retry`], which runs an
//!   operation under a policy and reports what a dead letter needs (attempts, first and last
//!   failure).
//! - [`breaker`]: a circuit breaker ([`Breaker`]) and its tower layer ([`BreakerLayer`]):
//!   closed / open / half-open over a count-based sliding window of failure and slow-call
//!   rates, state observable through a `tokio::sync::watch` channel and metrics.
//! - [`bulkhead`]: a concurrency limit with a bounded queue that fails fast
//!   ([`Bulkhead`], [`BulkheadLayer`]).
//! - [`dlq`]: the dead-letter envelope (header names, builder, parser), DLQ / retry topic
//!   naming and redrive selection, as pure functions.
//! - [`clock`]: the injected [`Clock`], so breakers and budgets are tested without sleeping.
//!
//! The crate knows no Kafka client: records are plain keys, values and [`dlq::Header`]s, and
//! the callers (SDK, gateway, outbox, `weft dlq`) move them with rdkafka.

pub mod breaker;
pub mod bulkhead;
pub mod clock;
pub mod dlq;
pub mod retry;

#[cfg(test)]
mod test_metrics;

pub use breaker::{
    Breaker, BreakerConfig, BreakerError, BreakerLayer, BreakerOpen, BreakerService, BreakerState,
    CallOutcome,
};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadError, BulkheadFull, BulkheadLayer};
pub use clock::{Clock, ManualClock, SystemClock};
pub use retry::{Classify, ErrorClass, Jitter, RetryError, RetryPolicy};

/// Errors of this crate's own operations (configuration, parsing dead-letter headers).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A configuration value is out of range; the message says which and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A dead-letter header is missing.
    #[error("dead-letter header {0} is missing")]
    MissingHeader(&'static str),
    /// A dead-letter header is present but its value does not parse.
    #[error("dead-letter header {header} has an invalid value {value:?}: {reason}")]
    InvalidHeader {
        /// The header name.
        header: &'static str,
        /// The value as found (lossy UTF-8).
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// The envelope was written by a newer format version than this build understands.
    #[error("dead-letter envelope version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
