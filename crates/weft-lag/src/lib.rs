//! Consumer lag, the number operators watch: per group and partition the committed offset,
//! the log end offset, the lag in records and in seconds (the age of the oldest unconsumed
//! record), and a Burrow-style status (OK, WARN, STALL, STOP) computed over a sliding window
//! of samples.
//!
//! Two halves:
//! - [`eval`] is sans-io: [`Monitor`] folds sampling [`Round`]s into bounded windows and
//!   [`evaluate`] applies the status rules. Time is data, so the rules are tested with
//!   tables and no sleeping.
//! - [`sampler`] is the edge: every interval it asks the cluster, through the Kafka protocol
//!   only (librdkafka, plus a small Kafka-protocol client of its own that reads the committed
//!   offsets of many groups per request), for the groups, their committed offsets, the log
//!   ends and the timestamps of the oldest unconsumed records, and hands the round to the
//!   monitor. It never joins a group and works the same against the embedded broker or any
//!   Kafka cluster. Sampling runs on its own schedule, whoever reads the results.

pub mod eval;
mod metrics;
mod offsets;
pub mod sampler;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_broker;

pub use eval::{
    Config, GroupObservation, GroupView, Monitor, PartitionObservation, PartitionView, Round,
    Sample, Status, evaluate,
};
pub use sampler::{Lag, SamplerConfig, oldest_unconsumed};

/// Errors of the lag monitor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid lag monitor settings: {0}")]
    Config(String),
    #[error("kafka client error: {context}: {source}")]
    Kafka {
        context: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka protocol error: {0}")]
    Protocol(String),
    #[error("sampling task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
