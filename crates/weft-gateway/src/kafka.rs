//! The gateway's only way to streams: librdkafka clients (rdkafka). Blocking calls run on
//! `spawn_blocking`; readers are pooled so the number of Kafka clients is bounded whatever
//! the number of HTTP connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Semaphore;

use crate::problem::ApiError;

/// Metadata and watermark calls time out after this.
pub(crate) const META_TIMEOUT: Duration = Duration::from_secs(10);

/// One record as read from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The record as JSON, per [`crate::position::Format`] (`Auto`, `Base64`): each
    /// rendered once, by the first connection asking for it, however many live connections
    /// the record is fanned out to.
    pub(crate) rendered: [std::sync::OnceLock<String>; 2],
}

impl Record {
    pub(crate) fn from_message<M: Message>(m: &M) -> Record {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(Bytes::copy_from_slice)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            value: m.payload().map(Bytes::copy_from_slice),
            headers,
            rendered: Default::default(),
        }
    }
}

/// Partition metadata of one topic.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
}

/// Shared Kafka clients; reads run on at most `readers` short-lived clients at once.
pub(crate) struct Kafka {
    bootstrap: String,
    pub(crate) producer: FutureProducer,
    /// A group-less consumer for metadata, watermarks and offsets-for-times.
    meta: Arc<BaseConsumer>,
    reader_permits: Arc<Semaphore>,
    /// Watermark and offsets-for-time queries in flight at once. Without a bound, a
    /// thousand connections falling behind together each sent one at the same moment:
    /// a thousand blocking threads, librdkafka's in-flight window full, timeouts, and the
    /// connections closed with `kafka_error`. Queued here they are answered in turn.
    meta_permits: Semaphore,
    /// One client per consumer group that WebSocket acknowledgements commit to (a
    /// client's `group.id` is fixed at creation); at most `MAX_GROUP_CLIENTS`.
    group_clients: std::sync::Mutex<HashMap<String, Arc<BaseConsumer>>>,
    fallback: Arc<Fallback>,
}

/// Group clients kept; beyond this the cache starts over (they are cheap to recreate).
const MAX_GROUP_CLIENTS: usize = 64;
/// Watermark / offsets-for-time queries in flight at once (`Kafka::meta_permits`).
const META_QUERIES: usize = 16;

/// A permit refused: the semaphore was closed, which only a shutdown would do.
fn shutting_down(_: tokio::sync::AcquireError) -> ApiError {
    ApiError::Unavailable("gateway is shutting down".into())
}

/// librdkafka properties every gateway client of one cluster gets, applied after the
/// gateway's own (security settings: `security.protocol`, `sasl.*`, `ssl.*`). `Debug`
/// masks the values of secret keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(pub Vec<(String, String)>);

impl ClientProperties {
    /// Whether `key`'s value is a secret (passwords, private keys, JAAS configs).
    pub fn is_secret(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.contains("password")
            || k.contains("secret")
            || k == "sasl.jaas.config"
            || k == "ssl.key.pem"
            || k == "ssl_key"
    }
}

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if ClientProperties::is_secret(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// Bootstrap servers → the properties of that cluster's clients. Keyed by bootstrap so
/// every place that builds a client from a bootstrap string ([`base_config`]) gets them
/// without threading them through (several gateways in one process stay independent as
/// long as their bootstraps differ).
static PROPERTIES: LazyLock<RwLock<HashMap<String, ClientProperties>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Registers the client properties of the cluster at `bootstrap` (`Gateway::open` does).
pub(crate) fn register_properties(bootstrap: &str, properties: &ClientProperties) {
    let mut map = PROPERTIES.write().unwrap_or_else(PoisonError::into_inner);
    if properties.0.is_empty() {
        map.remove(bootstrap);
    } else {
        map.insert(bootstrap.to_owned(), properties.clone());
    }
}

pub(crate) fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "weft-gateway")
        .set("log_level", "3");
    let map = PROPERTIES.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(properties) = map.get(bootstrap) {
        for (k, v) in &properties.0 {
            c.set(k, v);
        }
    }
    c
}

fn reader_config(bootstrap: &str) -> ClientConfig {
    let mut c = base_config(bootstrap);
    c.set("group.id", "weft-gateway-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "4096");
    c
}

impl Kafka {
    pub(crate) fn new(bootstrap: &str, readers: usize) -> Result<Kafka, ApiError> {
        let producer: FutureProducer = base_config(bootstrap)
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| ApiError::Kafka(format!("cannot create producer: {e}")))?;
        let meta: BaseConsumer = reader_config(bootstrap)
            .create()
            .map_err(|e| ApiError::Kafka(format!("cannot create metadata client: {e}")))?;
        Ok(Kafka {
            bootstrap: bootstrap.to_owned(),
            producer,
            meta: Arc::new(meta),
            reader_permits: Arc::new(Semaphore::new(readers.max(1))),
            meta_permits: Semaphore::new(META_QUERIES),
            group_clients: std::sync::Mutex::new(HashMap::new()),
            fallback: Arc::new(Fallback::new(bootstrap)),
        })
    }

    /// The (cached) client whose `group.id` is `group`. It never joins the group: commits
    /// are standalone (generation -1), accepted while the group has no members — the way
    /// Kafka's tools reset a group's offsets.
    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer>, ApiError> {
        let mut map = self
            .group_clients
            .lock()
            .map_err(|_| ApiError::Internal("group clients poisoned".into()))?;
        if let Some(c) = map.get(group) {
            return Ok(Arc::clone(c));
        }
        if map.len() >= MAX_GROUP_CLIENTS {
            map.clear();
        }
        let c: BaseConsumer = reader_config(&self.bootstrap)
            .set("group.id", group)
            .create()
            .map_err(|e| {
                ApiError::Kafka(format!("cannot create a client of group {group:?}: {e}"))
            })?;
        let c = Arc::new(c);
        map.insert(group.to_owned(), Arc::clone(&c));
        Ok(c)
    }

    /// Commits `positions` (next offsets) of `topic` for `group`.
    pub(crate) async fn commit(
        &self,
        group: &str,
        topic: &str,
        positions: &BTreeMap<i32, i64>,
    ) -> Result<(), ApiError> {
        let client = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in positions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .map_err(|e| ApiError::Kafka(e.to_string()))?;
        }
        let group = group.to_owned();
        blocking(move || {
            client
                .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
                .map_err(|e| ApiError::Kafka(format!("commit for group {group:?}: {e}")))
        })
        .await
    }

    /// The offsets `group` committed for `partitions` of `topic` (absent: none).
    pub(crate) async fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, ApiError> {
        let client = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, *p);
        }
        let group = group.to_owned();
        blocking(move || {
            let got = client
                .committed_offsets(tpl, META_TIMEOUT)
                .map_err(|e| ApiError::Kafka(format!("offsets of group {group:?}: {e}")))?;
            Ok(got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Partitions of `topic`, or `TopicNotFound`.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<Vec<PartitionInfo>, ApiError> {
        let meta = Arc::clone(&self.meta);
        let topic = topic.to_owned();
        blocking(move || {
            let md = meta
                .fetch_metadata(Some(&topic), META_TIMEOUT)
                .map_err(|e| ApiError::Kafka(format!("metadata of {topic:?}: {e}")))?;
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                return Err(ApiError::TopicNotFound(topic));
            };
            if t.error().is_some() || t.partitions().is_empty() {
                return Err(ApiError::TopicNotFound(topic));
            }
            let mut ps: Vec<PartitionInfo> = t
                .partitions()
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                })
                .collect();
            ps.sort_by_key(|p| p.partition);
            Ok(ps)
        })
        .await
    }

    /// Names of all topics (internal ones included when `internal`).
    pub(crate) async fn topics(&self, internal: bool) -> Result<Vec<(String, usize)>, ApiError> {
        let meta = Arc::clone(&self.meta);
        blocking(move || {
            let md = meta
                .fetch_metadata(None, META_TIMEOUT)
                .map_err(|e| ApiError::Kafka(format!("metadata: {e}")))?;
            let mut names: Vec<(String, usize)> = md
                .topics()
                .iter()
                .filter(|t| internal || !t.name().starts_with("__"))
                .map(|t| (t.name().to_owned(), t.partitions().len()))
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// (low, high) watermarks of one partition, blocking (for the hub's reader start).
    pub(crate) fn watermarks_now(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), ApiError> {
        watermarks_of(&self.meta, &self.fallback, topic, partition)
    }

    /// (low, high) watermarks of one partition.
    pub(crate) async fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), ApiError> {
        let meta = Arc::clone(&self.meta);
        let topic = topic.to_owned();
        let fallback = Arc::clone(&self.fallback);
        let _permit = self.meta_permits.acquire().await.map_err(shutting_down)?;
        blocking(move || watermarks_of(&meta, &fallback, &topic, partition)).await
    }

    /// The first offset of each partition with a timestamp ≥ `ms` (the high watermark when
    /// there is none).
    pub(crate) async fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> Result<Vec<(i32, i64)>, ApiError> {
        let meta = Arc::clone(&self.meta);
        let topic = topic.to_owned();
        let partitions = partitions.to_vec();
        let _permit = self.meta_permits.acquire().await.map_err(shutting_down)?;
        blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&topic, *p, Offset::Offset(ms))
                    .map_err(|e| ApiError::Kafka(e.to_string()))?;
            }
            let found = meta
                .offsets_for_times(tpl, META_TIMEOUT)
                .map_err(|e| ApiError::Kafka(format!("offsets for time: {e}")))?;
            let mut out = Vec::new();
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => {
                        meta.fetch_watermarks(&topic, e.partition(), META_TIMEOUT)
                            .map_err(|e| ApiError::Kafka(e.to_string()))?
                            .1
                    }
                };
                out.push((e.partition(), offset));
            }
            Ok(out)
        })
        .await
    }

    /// Reads records of one partition from `from` (inclusive) until `until` (exclusive, or
    /// the end of the partition when `None`), at most `max`, waiting at most `wait` for the
    /// first record. Uses a pooled reader: at most `readers` reads run at once.
    pub(crate) async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        until: Option<i64>,
        max: usize,
        wait: Duration,
    ) -> Result<Read, ApiError> {
        let _permit = self.reader_permits.acquire().await.map_err(shutting_down)?;
        let bootstrap = self.bootstrap.clone();
        let topic = topic.to_owned();
        blocking(move || {
            // A fresh client per read: a reused one can hand back events of its previous
            // assignment (a stale end-of-partition), which would skip records.
            let reader = reader_config(&bootstrap)
                .create::<BaseConsumer>()
                .map_err(|e| ApiError::Kafka(format!("cannot create reader: {e}")))?;
            read_blocking(&reader, &topic, partition, from, until, max, wait)
        })
        .await
    }
}

fn read_blocking(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    until: Option<i64>,
    max: usize,
    wait: Duration,
) -> Result<Read, ApiError> {
    let mut out = Vec::new();
    if max == 0 || until.is_some_and(|u| u <= from) {
        return Ok(Read {
            records: out,
            next: from,
        });
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| ApiError::Kafka(e.to_string()))?;
    reader
        .assign(&tpl)
        .map_err(|e| ApiError::Kafka(format!("assign {topic}/{partition}: {e}")))?;
    let deadline = Instant::now() + wait;
    let mut next = from;
    loop {
        let now = Instant::now();
        // Once something was read, only what is already buffered is taken.
        let left = if out.is_empty() {
            deadline.saturating_duration_since(now)
        } else {
            Duration::from_millis(0)
        };
        let polled =
            reader.poll(left.max(Duration::from_millis(if out.is_empty() { 1 } else { 0 })));
        match polled {
            None => {
                if !out.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            Some(Ok(m)) => {
                if m.topic() != topic || m.partition() != partition || m.offset() < next {
                    continue;
                }
                if let Some(u) = until.filter(|u| m.offset() >= *u) {
                    // The broker returned this as the first record at or after `next`:
                    // no record exists in `next..u` (compacted, aborted, control markers).
                    next = u;
                    break;
                }
                next = m.offset() + 1;
                out.push(Record::from_message(&m));
                if out.len() >= max || until.is_some_and(|u| next >= u) {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => {
                if until.is_some() {
                    // The end as this fetch saw it; the caller decides about holes.
                    break;
                }
                if !out.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                return Err(ApiError::Kafka(format!(
                    "read {topic}/{partition} at {next}: {e}"
                )));
            }
        }
    }
    Ok(Read { records: out, next })
}

/// What one [`Kafka::read`] returned: the records and the offset to read from next.
pub(crate) struct Read {
    pub(crate) records: Vec<Record>,
    pub(crate) next: i64,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))?
}

/// The fresh metadata client of [`watermarks_of`]'s fallback, shared by every query that
/// needs it at the same time: a burst of stream opens on a busy broker (each timing out on
/// the shared client) must not create one librdkafka client — threads, buffers — each.
struct Fallback {
    bootstrap: String,
    /// The client and its generation (to discard only the one that failed).
    client: std::sync::Mutex<Option<(Arc<BaseConsumer>, u64)>>,
    generations: std::sync::atomic::AtomicU64,
}

impl Fallback {
    fn new(bootstrap: &str) -> Fallback {
        Fallback {
            bootstrap: bootstrap.to_owned(),
            client: std::sync::Mutex::new(None),
            generations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn get(&self) -> Result<(Arc<BaseConsumer>, u64), ApiError> {
        let mut slot = self
            .client
            .lock()
            .map_err(|_| ApiError::Internal("metadata fallback poisoned".into()))?;
        if let Some((c, g)) = slot.as_ref() {
            return Ok((Arc::clone(c), *g));
        }
        let c: BaseConsumer = reader_config(&self.bootstrap)
            .create()
            .map_err(|e| ApiError::Kafka(format!("cannot create metadata client: {e}")))?;
        let g = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let c = Arc::new(c);
        *slot = Some((Arc::clone(&c), g));
        Ok((c, g))
    }

    /// Drops generation `g` if it is still the current client: the next query starts fresh.
    fn discard(&self, g: u64) {
        if let Ok(mut slot) = self.client.lock()
            && slot.as_ref().is_some_and(|(_, cur)| *cur == g)
        {
            *slot = None;
        }
    }
}

/// (low, high) watermarks of one partition through the shared metadata client. librdkafka
/// can sit on such a query until it times out when that client's cache does not know a topic
/// created a moment ago (seen right after CreateTopics, even across metadata refreshes); a
/// fresh client, which starts from a full metadata request, answers at once. So: one short
/// attempt on the shared client, then short attempts on a fresh one (shared by concurrent
/// fallbacks, replaced when it fails too), within `META_TIMEOUT`.
fn watermarks_of(
    meta: &BaseConsumer,
    fallback: &Fallback,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), ApiError> {
    let deadline = std::time::Instant::now() + META_TIMEOUT;
    let attempt = Duration::from_secs(2);
    let failed = |e: rdkafka::error::KafkaError| {
        ApiError::Kafka(format!("watermarks of {topic}/{partition}: {e}"))
    };
    if let Ok(w) = meta.fetch_watermarks(topic, partition, attempt) {
        return Ok(w);
    }
    loop {
        let (fresh, generation) = fallback.get()?;
        match fresh.fetch_watermarks(topic, partition, attempt) {
            Ok(w) => return Ok(w),
            Err(e) => {
                fallback.discard(generation);
                if std::time::Instant::now() + attempt >= deadline {
                    return Err(failed(e));
                }
            }
        }
    }
}
