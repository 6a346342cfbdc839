//! Weft's event store: event sourcing and CQRS over the state store (`weft-store`: SQLite by
//! default, PostgreSQL at scale).
//!
//! - [`EventStore`] owns streams named `<category>-<id>`. [`EventStore::append`] writes one or
//!   many events atomically with an [`ExpectedVersion`]; [`EventStore::append_multi`] writes to
//!   several streams in one transaction. Event ids make retried appends idempotent.
//! - **Global positions are gap-free and commit-ordered.** Every appending transaction first
//!   takes the single row of `es_positions` (an `UPDATE … RETURNING` that holds the row lock
//!   until commit on PostgreSQL; SQLite has one writer anyway), allocates the next positions
//!   from it, inserts, and commits while still holding it. The next appender can only allocate
//!   after that commit is visible, so a reader that has seen position P never later finds a
//!   committed event below P, and a rolled-back append leaves no hole. The cost is that
//!   appends are serialised (one commit at a time); `benches/append.rs` measures it against the
//!   database's raw insert rate.
//! - Reads ([`EventStore::read_stream`], [`EventStore::read_all`] with a [`Filter`]) honour
//!   stream metadata ([`StreamMetadata`]: max age, max count, truncate-before), soft deletes and
//!   tombstones; [`EventStore::scavenge`] deletes what they hide, in small transactions.
//! - [`subscription`]: catch-up subscriptions (history, then live, one query loop so there is
//!   no gap at the switch-over) and [`persistent`] consumer groups with checkpoints, retries
//!   with backoff, parking and replay.
//! - [`aggregate`]: the SDK side — an [`aggregate::Aggregate`] trait and a
//!   [`aggregate::Repository`] that loads through snapshots and saves with an expected version,
//!   retrying on conflicts.
//! - [`projection`]: read models whose writes and checkpoint commit in one transaction, with
//!   rebuilds into a shadow table swapped when caught up.
//! - [`http`]: `/v1/streams/...` (append, read, SSE subscribe with resume by position).
//!
//! Tables (component `eventstore`, migration 1): `es_positions` (the one allocation row),
//! `es_streams` (last revision, metadata, delete state), `es_events`, `es_event_types`
//! (declared types: JSON Schema, visibility, public mapping), `es_snapshots`,
//! `es_projections` (checkpoints), `es_persistent` and `es_parked` (persistent subscription
//! groups and their parked events).

pub mod aggregate;
pub mod http;
mod metrics;
pub mod persistent;
pub mod projection;
pub mod registry;
mod schema;
mod store;
pub mod subscription;
mod types;

pub use registry::{HttpSchemaLookup, MemorySchemaLookup, RegistryBinding, SchemaLookup};
pub use schema::{
    Compute, ComputedField, FieldMapping, PublicMapping, TypeDeclaration, Visibility,
};
pub use store::{EventStore, MAX_READ, Options, ProjectionStatus, ScavengeReport, StreamInfo};
pub use types::{
    Direction, EventData, EventMetadata, ExpectedVersion, Filter, MAX_EVENT_TYPE, MAX_STREAM_NAME,
    RecordedEvent, SchemaRef, StreamAppend, StreamMetadata, StreamState, WriteResult, category_of,
    validate_stream_name,
};

/// Everything the event store refuses or fails with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "wrong expected version for stream {stream}: expected {expected}, actual {}",
        actual.map_or_else(|| "no stream".to_owned(), |r| format!("revision {r}"))
    )]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// The stream's last revision; `None` when the stream does not exist.
        actual: Option<u64>,
    },
    #[error("stream {0} is deleted (tombstoned)")]
    StreamDeleted(String),
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName { name: String, reason: &'static str },
    #[error("invalid expected version {0:?}: expected any, no_stream, stream_exists or a revision")]
    InvalidExpectedVersion(String),
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("event {id} is {size} bytes, more than the limit of {limit}")]
    EventTooLarge {
        id: String,
        size: usize,
        limit: usize,
    },
    #[error("event {id} of type {event_type} does not match its declared schema: {reason}")]
    SchemaMismatch {
        id: String,
        event_type: String,
        reason: String,
    },
    #[error(
        "events of this append were partly written before (ids {ids:?} exist in {stream}): \
         retry the exact same batch or use new ids"
    )]
    PartialDuplicate { stream: String, ids: Vec<String> },
    #[error("{0}")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Boxed: the store's error is large and rare; it would bloat every `Result`.
    #[error(transparent)]
    Store(Box<weft_store::Error>),
}

impl From<weft_store::Error> for Error {
    fn from(e: weft_store::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

impl From<weft_store::sqlx::Error> for Error {
    fn from(e: weft_store::sqlx::Error) -> Self {
        Error::Store(Box::new(weft_store::Error::Sql(e)))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
