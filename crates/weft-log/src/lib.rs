//! Weft's storage engine.
//!
//! See `crates/weft-log/FORMAT.md` for the on-disk format and the numbered order of writes,
//! renames and fsyncs. Synchronous by design: no async runtime lives here; background
//! flushing and cleaning run on OS threads owned by [`Log`].

pub mod batch;
mod clock;
mod config;
mod error;
mod index;
mod log;
mod meta;
mod partition;
mod segment;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CleanupPolicy, Durability, LogConfig, TimestampType};
pub use error::{BatchError, Error, Result};
pub use log::{Log, TopicPartition};
pub use meta::FORMAT_VERSION;
pub use partition::{
    AppendInfo, CleanerStats, FileRegion, Partition, PartitionState, TimestampOffset,
};
