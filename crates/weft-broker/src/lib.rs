//! Weft's Kafka-compatible broker: the Kafka wire protocol over [`weft_log`].
//!
//! The crate has one boundary, the wire protocol. Message encoding and decoding is the
//! `kafka-protocol` crate's; request handling, broker state and the mapping onto the storage
//! engine are ours.
//!
//! # Codemap
//! - `server`: TCP accept loop and per-connection framing (length prefix, size limit, idle
//!   timeout); requests on one connection are answered in order through one writer, so an
//!   acks=-1 produce waiting for its fsync does not stall the requests behind it.
//! - `versions`: the advertised API versions and which of them are refused.
//! - `legacy_produce`: the hand-written UNSUPPORTED_VERSION answer to Produce v0–v2, whose
//!   layout the codec cannot encode.
//! - `guard`: request decoding through a buffer that bounds what lengths the codec is told,
//!   so no frame can make it allocate without bound.
//! - `handlers`: one function per API, from decoded request to response.
//! - `topics`: topic metadata (names, ids, partition counts, config overrides), persisted
//!   in `topics.v1`, and the live partition handles.
//! - `fetch_session`: incremental fetch sessions (KIP-227), sans io.
//! - `fetch_wire`: zero-copy Fetch responses: the codec's encoding cut around the records,
//!   which the connection's writer sends from the segment files with `sendfile(2)`.
//! - `stats`: metric names and cached handles (the `metrics` facade).
//! - `producer_state`: the sans-io idempotent-producer table (last five batches per producer
//!   and partition), with its snapshot format.
//! - `store`: atomic file writes (temp + fsync + rename + fsync dir), cluster id, producer id
//!   blocks.
//! - `topic_config`: Kafka topic config names ⇄ [`weft_log::LogConfig`].
//! - `schema_validation`: `weft.schema.validation` (none|id|full, per key and value): records
//!   checked against a [`SchemaSource`] (the registry, handed in by the binary) before append.
//! - `group`: the classic consumer-group coordinator, sans io (injected clock), the
//!   KIP-848 coordinator (`group::consumer`: server-side assignment, incremental
//!   reconciliation) and `__consumer_offsets` (committed offsets and group membership).
//!
//! # Invariants
//! - Blocking storage calls (append, read, create, delete, fsync) run under
//!   `spawn_blocking`, never on the reactor; no lock is held across an `.await`.
//! - Malformed input closes only the connection it came on; nothing in this crate panics on
//!   client bytes.
//! - The broker state directory is owned by this crate; the log root is owned by
//!   [`weft_log::Log`] and reached only through its API.

mod authz;
mod codes;
mod error;
mod fetch_session;
mod fetch_wire;
mod group;
mod guard;
mod handlers;
mod legacy_produce;
mod producer_state;
mod schema_validation;
pub mod security;
mod server;
mod session;
mod stats;
mod store;
mod topic_config;
mod topics;
pub mod trace;
mod versions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use authz::Authorization;
pub use error::{Error, Result};
pub use schema_validation::{
    NEGATIVE_TTL, POSITIVE_TTL, SchemaSource, SchemaValidator, SourceError, SourceFuture,
};
pub use server::{Broker, decode_request_frame};
pub use versions::advertised_versions;

/// Settings of the broker. Log-level defaults (retention, segment size, durability...) are
/// the [`weft_log::Log`]'s defaults, which the binary fills from `weft.toml`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// Host told to clients in Metadata and DescribeCluster.
    pub advertised_host: String,
    /// Port told to clients in Metadata and DescribeCluster.
    pub advertised_port: u16,
    /// Where broker state lives: cluster id, topic metadata, producer-state snapshots.
    pub state_dir: PathBuf,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: i32,
    /// `socket.request.max.bytes`: larger request frames close the connection.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms`.
    pub connections_max_idle: Duration,
    /// `producer.id.expiration.ms`: idempotent-producer state unused this long is dropped.
    pub producer_id_expiration: Duration,
    /// How often producer-state snapshots are written (and expired producers dropped).
    pub snapshot_interval: Duration,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions kept (0 declines them).
    pub fetch_session_cache_slots: usize,
    /// `group.initial.rebalance.delay.ms`: how long an empty group waits for more members
    /// before its first rebalance completes.
    pub group_initial_rebalance_delay: Duration,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member without a heartbeat this long
    /// is removed.
    pub group_consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`, told to KIP-848 members.
    pub group_consumer_heartbeat_interval: Duration,
    /// `group.consumer.max.size`: members of one KIP-848 group.
    pub group_consumer_max_size: usize,
    /// `offsets.retention.minutes`: committed offsets of a group without members expire
    /// this long after it was last seen with members and after their commit.
    pub offsets_retention: Duration,
    /// Where topics with `weft.schema.validation` look schemas up; without it such topics
    /// refuse produced records (POLICY_VIOLATION) rather than let them pass unchecked.
    pub schemas: Option<SchemaValidator>,
    /// Send Fetch records from the segment files with `sendfile(2)` (Linux) instead of
    /// reading them into memory first. On by default on Linux unless the environment
    /// variable `WEFT_KAFKA_ZERO_COPY` is `0` (an escape hatch, and how the copying path is
    /// benchmarked); off re-checks every batch's CRC on read (the copying path, also the one
    /// TLS listeners will need).
    pub zero_copy_fetch: bool,
    /// SASL mechanisms and their stores for SASL_PLAINTEXT and SASL_SSL listeners, and
    /// `connections.max.reauth.ms` (KIP-368). Unused without SASL listeners.
    pub sasl: security::SaslSettings,
    /// Who may do what (`[security]` authorisation, ACL and SCRAM stores); disabled by
    /// default: everything allowed, the ACL/SCRAM admin APIs answer SECURITY_DISABLED.
    pub authorization: Authorization,
}

impl BrokerConfig {
    /// Kafka's defaults, advertising `advertised_host:advertised_port`.
    pub fn new(
        state_dir: impl Into<PathBuf>,
        advertised_host: impl Into<String>,
        advertised_port: u16,
    ) -> Self {
        BrokerConfig {
            node_id: 1,
            advertised_host: advertised_host.into(),
            advertised_port,
            state_dir: state_dir.into(),
            auto_create_topics: true,
            num_partitions: 1,
            socket_request_max_bytes: 100 * 1024 * 1024,
            connections_max_idle: Duration::from_secs(600),
            producer_id_expiration: Duration::from_secs(24 * 3600),
            snapshot_interval: Duration::from_secs(30),
            fetch_session_cache_slots: 1000,
            group_initial_rebalance_delay: Duration::from_millis(3000),
            group_consumer_session_timeout: Duration::from_secs(45),
            group_consumer_heartbeat_interval: Duration::from_secs(5),
            group_consumer_max_size: usize::MAX,
            offsets_retention: Duration::from_secs(10_080 * 60),
            schemas: None,
            zero_copy_fetch: cfg!(target_os = "linux")
                && std::env::var_os("WEFT_KAFKA_ZERO_COPY").is_none_or(|v| v != "0"),
            sasl: security::SaslSettings::default(),
            authorization: Authorization::disabled(),
        }
    }
}

/// Splits `host:port` (or `[v6]:port`) as given to `--kafka-advertised`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Opens the broker state in `config.state_dir` over `log` and serves Kafka clients on
/// `listener` until `shutdown` turns true; then writes producer-state snapshots and returns.
///
/// The log is not closed here: its owner closes it after this returns.
pub async fn run(
    config: BrokerConfig,
    log: Arc<weft_log::Log>,
    listener: tokio::net::TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let broker = server::Broker::open(config, log).await?;
    broker.serve(listener, shutdown).await
}

/// Like [`run`], over several listeners (Kafka's listener map): each bound socket with its
/// security protocol and advertised address.
pub async fn run_listeners(
    config: BrokerConfig,
    log: Arc<weft_log::Log>,
    listeners: Vec<(tokio::net::TcpListener, security::Listener)>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let broker = server::Broker::open(config, log).await?;
    broker.serve_listeners(listeners, shutdown).await
}
