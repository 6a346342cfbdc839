//! Weft's Rust SDK: the right thing is the easy thing.
//!
//! - [`Producer`]: librdkafka with safe defaults (idempotence, `acks=all`, bounded in-flight,
//!   the Java client's key→partition mapping) whose [`Producer::send`] resolves to the
//!   partition and offset, and which adds [context headers](context) to every record.
//!   Typed payloads: [`Record::json`], and Avro / JSON Schema / Protobuf in the Confluent
//!   wire format through [`schema::SchemaSerializer`].
//! - [`Consumer::run`]: a consumer-group runtime that is at-least-once by construction (an
//!   offset is committed only when its record and every record before it in the partition
//!   finished), runs partitions and keys concurrently with order kept per key, bounds
//!   in-flight work by pausing partitions, finishes or abandons the work of revoked
//!   partitions before the revocation completes and never commits for a partition it no
//!   longer owns, and shuts down gracefully. See the [`consumer`] module docs.
//! - [`dedup`]: idempotent consumers — a dedup table in the state store, and a transactional
//!   variant whose dedup mark commits with the handler's own SQL.
//!
//! Guarantees and trade-offs are written up in `docs/client.md`.

pub mod consumer;
pub mod context;
pub mod dedup;
mod message;
mod producer;
pub mod schema;
pub mod tracker;

pub use consumer::{Consumer, ConsumerConfig, RuntimeEvent, ShutdownHandle};
pub use message::Message;
pub use producer::{Delivered, Producer, ProducerConfig, Record};

/// Errors of the SDK's own operations (handler failures are [`HandlerError`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot encode the payload: {0}")]
    Encode(String),
    #[error("cannot decode the payload: {0}")]
    Decode(String),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("produce to {topic} failed: {message}")]
    Produce { topic: String, message: String },
    #[error("consumer: {0}")]
    Consumer(String),
    // Boxed: the store's error is large and rare.
    #[error("state store: {0}")]
    Store(#[source] Box<weft_store::Error>),
}

impl From<weft_store::Error> for Error {
    fn from(e: weft_store::Error) -> Error {
        Error::Store(Box::new(e))
    }
}

impl From<weft_store::sqlx::Error> for Error {
    fn from(e: weft_store::sqlx::Error) -> Error {
        Error::Store(Box::new(weft_store::Error::Sql(e)))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The resilience primitives the runtime is configured with (retry policies, breakers,
/// bulkheads, the dead-letter envelope), re-exported so services need one dependency.
pub use weft_resilience as resilience;
/// How a handler failure is treated: `Retryable` is retried (in place under the
/// [`RetryPolicy`](weft_resilience::RetryPolicy), or through retry topics); `NonRetryable`
/// goes to the DLQ at once; `Park` is set aside in the DLQ with class `park` without burning
/// retries (a downstream in maintenance), to be redriven later.
pub use weft_resilience::ErrorClass;

/// A handler's failure and its class.
#[derive(Debug, Clone)]
pub struct HandlerError {
    pub class: ErrorClass,
    pub message: String,
}

impl HandlerError {
    pub fn retryable(e: impl std::fmt::Display) -> HandlerError {
        HandlerError {
            class: ErrorClass::Retryable,
            message: e.to_string(),
        }
    }

    pub fn permanent(e: impl std::fmt::Display) -> HandlerError {
        HandlerError {
            class: ErrorClass::NonRetryable,
            message: e.to_string(),
        }
    }

    pub fn park(e: impl std::fmt::Display) -> HandlerError {
        HandlerError {
            class: ErrorClass::Park,
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.class.as_str())
    }
}

impl std::error::Error for HandlerError {}

/// A state-store failure inside a handler: a database's refusal (a constraint, bad SQL) is
/// permanent unless retrying the transaction may succeed (conflicts, busy); anything else
/// (connection lost, pool timeout) is retryable.
impl From<weft_store::sqlx::Error> for HandlerError {
    fn from(e: weft_store::sqlx::Error) -> HandlerError {
        match &e {
            weft_store::sqlx::Error::Database(_) if !weft_store::is_retryable(&e) => {
                HandlerError::permanent(e)
            }
            _ => HandlerError::retryable(e),
        }
    }
}
