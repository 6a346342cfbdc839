//! Topic metadata and live partition handles.
//!
//! `topics.v1` in the state directory is the authority on which topics exist:
//! ```text
//! weft-broker topics 1
//! topic <name> <uuid> <partition count>
//! config <name> <key> <value>
//! end
//! ```
//! Order of steps, so a crash at any point is repaired at the next start:
//! - create: 1. write `topics.v1` with the topic; 2. create the partitions in the log.
//!   Startup creates partitions a listed topic is missing.
//! - delete: 1. drop the topic from memory; 2. write `topics.v1` without it; 3. delete its
//!   partitions and producer snapshots. Startup deletes log partitions of unlisted topics.
//! - If `topics.v1` does not exist yet, partitions found in the log are adopted.
//!
//! All functions here block (file I/O): call them from `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::{Notify, watch};
use tracing::{info, warn};
use uuid::Uuid;
use weft_log::{Durability, Log, Partition, TopicPartition};

use crate::error::{Error, Result};
use crate::producer_state::{BatchId, ProducerTable};
use crate::store;
use crate::topic_config;

/// The broker's view of one partition.
pub(crate) struct PartitionHandle {
    pub(crate) tp: TopicPartition,
    pub(crate) log: Arc<Partition>,
    /// The durable offset, fed by the log's durable listener.
    pub(crate) durable: watch::Receiver<u64>,
    /// Idempotent-producer state; also serializes appends to this partition.
    pub(crate) producers: Mutex<ProducerTable>,
    /// Fetches waiting for data: each is notified once by the next append.
    waiters: Mutex<Vec<Weak<Notify>>>,
    /// Metric handles, taken on first use.
    stats: std::sync::OnceLock<crate::stats::PartitionStats>,
}

impl PartitionHandle {
    fn new(tp: TopicPartition, log: Arc<Partition>) -> Arc<Self> {
        let (tx, rx) = watch::channel(log.durable_offset());
        log.set_durable_listener(Box::new(move |d| {
            tx.send_replace(d);
        }));
        Arc::new(PartitionHandle {
            tp,
            log,
            durable: rx,
            producers: Mutex::new(ProducerTable::default()),
            waiters: Mutex::new(Vec::new()),
            stats: std::sync::OnceLock::new(),
        })
    }

    /// This partition's metric handles (labels built once).
    pub(crate) fn stats(&self) -> &crate::stats::PartitionStats {
        self.stats
            .get_or_init(|| crate::stats::PartitionStats::new(&self.tp.topic, self.tp.partition))
    }

    /// Registers a fetch to be woken by the next append.
    pub(crate) fn register_waiter(&self, n: &Arc<Notify>) {
        let mut w = lock(&self.waiters);
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(n));
    }

    pub(crate) fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for n in waiters.iter().filter_map(Weak::upgrade) {
            n.notify_one();
        }
    }

    /// Whether `durable_offset() > last_offset` is what acks=-1 must wait for; under the `os`
    /// policy the OS decides when bytes reach the disk, so an append is all the policy
    /// promises.
    pub(crate) fn acks_all_waits_for_fsync(&self) -> bool {
        !matches!(self.log.config().durability, Durability::Os)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One topic: immutable, replaced as a whole when it changes.
pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) id: Uuid,
    pub(crate) configs: BTreeMap<String, String>,
    pub(crate) partitions: Vec<Arc<PartitionHandle>>,
}

/// Why a topic operation was refused, as a Kafka error and message.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) error: kafka_protocol::ResponseError,
    pub(crate) message: String,
}

fn refuse(error: kafka_protocol::ResponseError, message: impl Into<String>) -> Refusal {
    Refusal {
        error,
        message: message.into(),
    }
}

/// Kafka's topic name rule.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long, the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} has the illegal character {c:?} (allowed: [a-zA-Z0-9._-])"
        ));
    }
    Ok(())
}

pub(crate) struct Topics {
    log: Arc<Log>,
    state_dir: PathBuf,
    map: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes metadata changes (and so writes of `topics.v1`).
    write: Mutex<()>,
}

const TOPICS_FILE: &str = "topics.v1";

impl Topics {
    /// Loads `topics.v1`, reconciles it with the log and rebuilds producer state.
    pub(crate) fn open(log: Arc<Log>, state_dir: &Path, now_ms: i64) -> Result<Topics> {
        std::fs::create_dir_all(state_dir.join("producers")).map_err(|source| Error::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(TOPICS_FILE);
        let listed = read_topics_file(&path)?;
        let in_log = log.partitions();
        let mut specs: BTreeMap<String, TopicSpec> = BTreeMap::new();
        let adopt = listed.is_none();
        if let Some(listed) = listed {
            specs = listed;
        }
        if adopt {
            for (tp, _) in &in_log {
                let s = specs.entry(tp.topic.clone()).or_insert_with(|| TopicSpec {
                    id: store::new_uuid(),
                    partitions: 0,
                    configs: BTreeMap::new(),
                });
                s.partitions = s.partitions.max(tp.partition + 1);
            }
            if !specs.is_empty() {
                info!(topics = specs.len(), "adopting partitions found in the log");
            }
        }
        // Interrupted deletes: partitions of unlisted topics (or beyond the count) go.
        for (tp, _) in &in_log {
            let keep = specs
                .get(&tp.topic)
                .is_some_and(|s| tp.partition < s.partitions);
            if !keep {
                warn!(topic = %tp.topic, partition = tp.partition, "deleting partition of a deleted topic");
                log.delete_partition(tp)?;
                remove_snapshot(state_dir, tp);
            }
        }
        let topics = Topics {
            log: Arc::clone(&log),
            state_dir: state_dir.to_path_buf(),
            map: RwLock::new(BTreeMap::new()),
            write: Mutex::new(()),
        };
        topics.write_file(&specs)?;
        let defaults = log.defaults().clone();
        let mut map = BTreeMap::new();
        for (name, spec) in specs {
            let config = topic_config::effective(&defaults, &spec.configs);
            let mut partitions = Vec::new();
            for p in 0..spec.partitions {
                let tp = TopicPartition {
                    topic: name.clone(),
                    partition: p,
                };
                let part = match log.partition(&tp) {
                    Some(part) => {
                        if part.config() != config {
                            part.set_config(config.clone());
                        }
                        part
                    }
                    None => {
                        info!(topic = %name, partition = p, "creating missing partition of a listed topic");
                        log.create_partition(&tp, config.clone())?
                    }
                };
                let h = PartitionHandle::new(tp, part);
                rebuild_producers(&h, state_dir, now_ms)?;
                partitions.push(h);
            }
            map.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    id: spec.id,
                    configs: spec.configs,
                    partitions,
                }),
            );
        }
        *topics.map.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(topics)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Topic>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The newest epoch any partition knows for `producer_id`. Blocking (takes every
    /// partition's producer lock in turn).
    pub(crate) fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.all()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|h| lock(&h.producers).epoch(producer_id))
            .max()
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionHandle>> {
        let t = self.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .cloned()
    }

    fn specs(&self) -> BTreeMap<String, TopicSpec> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    TopicSpec {
                        id: t.id,
                        partitions: t.partitions.len() as i32,
                        configs: t.configs.clone(),
                    },
                )
            })
            .collect()
    }

    fn write_file(&self, specs: &BTreeMap<String, TopicSpec>) -> Result<()> {
        let mut out = store::header("topics", 1);
        for (name, s) in specs {
            out.push_str(&format!(
                "topic {name} {} {}\n",
                s.id.simple(),
                s.partitions
            ));
            for (k, v) in &s.configs {
                out.push_str(&format!("config {name} {k} {v}\n"));
            }
        }
        out.push_str("end\n");
        store::write_atomic(&self.state_dir.join(TOPICS_FILE), &out)
    }

    fn install(&self, t: Topic) -> Arc<Topic> {
        let t = Arc::new(t);
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t.name.clone(), Arc::clone(&t));
        t
    }

    /// Creates a topic; `validate_only` checks without creating.
    pub(crate) fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, Refusal> {
        use kafka_protocol::ResponseError as E;
        validate_name(name).map_err(|m| refuse(E::InvalidTopicException, m))?;
        if partitions < 1 {
            return Err(refuse(
                E::InvalidPartitions,
                format!("number of partitions must be at least 1, got {partitions}"),
            ));
        }
        if partitions > 100_000 {
            return Err(refuse(
                E::InvalidPartitions,
                format!("{partitions} partitions is more than this broker allows (100000)"),
            ));
        }
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|m| refuse(E::InvalidConfig, m))?;
            if v.contains('\n') {
                return Err(refuse(
                    E::InvalidConfig,
                    format!("value of {k} contains a newline"),
                ));
            }
        }
        let _w = lock(&self.write);
        if self.get(name).is_some() {
            return Err(refuse(
                E::TopicAlreadyExists,
                format!("topic {name} already exists"),
            ));
        }
        let spec = TopicSpec {
            id: store::new_uuid(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_owned(),
                id: spec.id,
                configs: spec.configs,
                partitions: vec![],
            }));
        }
        let mut specs = self.specs();
        specs.insert(name.to_owned(), spec.clone());
        self.write_file(&specs)
            .map_err(|e| refuse(E::KafkaStorageError, e.to_string()))?;
        let config = topic_config::effective(self.log.defaults(), &spec.configs);
        let mut handles = Vec::new();
        for p in 0..partitions {
            let tp = TopicPartition {
                topic: name.to_owned(),
                partition: p,
            };
            // A snapshot left by a deleted topic of the same name must not seed this one.
            remove_snapshot(&self.state_dir, &tp);
            match self.log.create_partition(&tp, config.clone()) {
                Ok(part) => handles.push(PartitionHandle::new(tp, part)),
                Err(e) => {
                    warn!(topic = name, partition = p, error = %e, "creating partition failed");
                    // Installed with what exists; the next start creates the rest.
                    let t = self.install(Topic {
                        name: name.to_owned(),
                        id: spec.id,
                        configs: spec.configs,
                        partitions: handles,
                    });
                    drop(t);
                    return Err(refuse(E::KafkaStorageError, e.to_string()));
                }
            }
        }
        info!(topic = name, partitions, "topic created");
        Ok(self.install(Topic {
            name: name.to_owned(),
            id: spec.id,
            configs: spec.configs,
            partitions: handles,
        }))
    }

    pub(crate) fn delete(&self, name: &str) -> Result<Arc<Topic>, Refusal> {
        use kafka_protocol::ResponseError as E;
        let _w = lock(&self.write);
        let Some(t) = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
        else {
            return Err(refuse(
                E::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ));
        };
        self.write_file(&self.specs())
            .map_err(|e| refuse(E::KafkaStorageError, e.to_string()))?;
        for h in &t.partitions {
            if let Err(e) = self.log.delete_partition(&h.tp) {
                warn!(topic = name, partition = h.tp.partition, error = %e, "deleting partition failed; retried at next start");
            }
            remove_snapshot(&self.state_dir, &h.tp);
            h.wake_waiters();
        }
        info!(topic = name, "topic deleted");
        Ok(t)
    }

    pub(crate) fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        use kafka_protocol::ResponseError as E;
        let _w = lock(&self.write);
        let Some(t) = self.get(name) else {
            return Err(refuse(
                E::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ));
        };
        let current = t.partitions.len() as i32;
        if count <= current {
            return Err(refuse(
                E::InvalidPartitions,
                format!(
                    "topic {name} has {current} partitions; the new count must be larger, got {count}"
                ),
            ));
        }
        if count > 100_000 {
            return Err(refuse(
                E::InvalidPartitions,
                format!("{count} partitions is more than this broker allows (100000)"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let mut specs = self.specs();
        if let Some(s) = specs.get_mut(name) {
            s.partitions = count;
        }
        self.write_file(&specs)
            .map_err(|e| refuse(E::KafkaStorageError, e.to_string()))?;
        let config = topic_config::effective(self.log.defaults(), &t.configs);
        let mut partitions = t.partitions.clone();
        let mut failure = None;
        for p in current..count {
            let tp = TopicPartition {
                topic: name.to_owned(),
                partition: p,
            };
            remove_snapshot(&self.state_dir, &tp);
            match self.log.create_partition(&tp, config.clone()) {
                Ok(part) => partitions.push(PartitionHandle::new(tp, part)),
                Err(e) => {
                    failure = Some(refuse(E::KafkaStorageError, e.to_string()));
                    break;
                }
            }
        }
        self.install(Topic {
            name: t.name.clone(),
            id: t.id,
            configs: t.configs.clone(),
            partitions,
        });
        failure.map_or(Ok(()), Err)
    }

    /// Replaces a topic's config overrides (validated first).
    pub(crate) fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        use kafka_protocol::ResponseError as E;
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(|m| refuse(E::InvalidConfig, m))?;
            if v.contains('\n') {
                return Err(refuse(
                    E::InvalidConfig,
                    format!("value of {k} contains a newline"),
                ));
            }
        }
        let _w = lock(&self.write);
        let Some(t) = self.get(name) else {
            return Err(refuse(
                E::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ));
        };
        if validate_only {
            return Ok(());
        }
        let mut specs = self.specs();
        if let Some(s) = specs.get_mut(name) {
            s.configs = configs.clone();
        }
        self.write_file(&specs)
            .map_err(|e| refuse(E::KafkaStorageError, e.to_string()))?;
        let config = topic_config::effective(self.log.defaults(), &configs);
        for h in &t.partitions {
            h.log.set_config(config.clone());
        }
        self.install(Topic {
            name: t.name.clone(),
            id: t.id,
            configs,
            partitions: t.partitions.clone(),
        });
        Ok(())
    }

    /// Writes producer-state snapshots of partitions whose table changed (all when `force`),
    /// after dropping expired producers.
    pub(crate) fn snapshot_producers(&self, now_ms: i64, expiration_ms: i64, force: bool) {
        for t in self.all() {
            for h in &t.partitions {
                let (body, offset) = {
                    let mut table = lock(&h.producers);
                    table.expire(now_ms, expiration_ms);
                    table.truncate_below(h.log.log_start_offset());
                    if !table.take_dirty() && !force {
                        continue;
                    }
                    // Taken under the append lock: every batch below the log end is in it.
                    let offset = h.log.log_end_offset();
                    (table.encode_snapshot(offset), offset)
                };
                let path = snapshot_path(&self.state_dir, &h.tp);
                let text = format!("{}{body}end\n", store::header("producers", 1));
                // `self.all()` may be stale: under the lock that create and delete hold,
                // write only for a partition that is still installed, so a deleted (and
                // perhaps recreated) topic never gets its old producers' file back.
                let _w = lock(&self.write);
                let installed = self
                    .partition(&h.tp.topic, h.tp.partition)
                    .is_some_and(|cur| Arc::ptr_eq(&cur, h));
                if !installed {
                    continue;
                }
                if let Err(e) = store::write_atomic(&path, &text) {
                    warn!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "writing producer snapshot failed");
                    lock(&h.producers).mark_dirty();
                } else {
                    tracing::debug!(topic = %h.tp.topic, partition = h.tp.partition, offset, "producer snapshot written");
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct TopicSpec {
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

fn read_topics_file(path: &Path) -> Result<Option<BTreeMap<String, TopicSpec>>> {
    let Some(lines) = store::read_state_file(path, "topics", 1)? else {
        return Ok(None);
    };
    let corrupt = |line: &str| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("bad line {line:?}"),
    };
    let mut specs = BTreeMap::new();
    for line in &lines {
        let mut f = line.splitn(4, ' ');
        match f.next() {
            Some("topic") => {
                let (Some(name), Some(id), Some(n)) = (f.next(), f.next(), f.next()) else {
                    return Err(corrupt(line));
                };
                let id = Uuid::parse_str(id).map_err(|_| corrupt(line))?;
                let partitions = n.parse::<i32>().map_err(|_| corrupt(line))?;
                specs.insert(
                    name.to_owned(),
                    TopicSpec {
                        id,
                        partitions,
                        configs: BTreeMap::new(),
                    },
                );
            }
            Some("config") => {
                let (Some(name), Some(k), Some(v)) = (f.next(), f.next(), f.next()) else {
                    return Err(corrupt(line));
                };
                let spec: &mut TopicSpec = specs.get_mut(name).ok_or_else(|| corrupt(line))?;
                if let Err(reason) = topic_config::validate(k, v) {
                    warn!(
                        topic = name,
                        config = k,
                        reason,
                        "ignoring invalid stored topic config"
                    );
                }
                spec.configs.insert(k.to_owned(), v.to_owned());
            }
            _ => return Err(corrupt(line)),
        }
    }
    Ok(Some(specs))
}

fn snapshot_path(state_dir: &Path, tp: &TopicPartition) -> PathBuf {
    state_dir
        .join("producers")
        .join(format!("{}-{}.snapshot", tp.topic, tp.partition))
}

fn remove_snapshot(state_dir: &Path, tp: &TopicPartition) {
    let _ = std::fs::remove_file(snapshot_path(state_dir, tp));
}

/// Loads the partition's producer snapshot and replays batch headers from its offset to the
/// log end. A snapshot that does not fit the log (ahead of the log end after a crash, or
/// unreadable) is ignored and the whole log is replayed.
fn rebuild_producers(h: &PartitionHandle, state_dir: &Path, now_ms: i64) -> Result<()> {
    let path = snapshot_path(state_dir, &h.tp);
    let log_start = h.log.log_start_offset();
    let log_end = h.log.log_end_offset();
    let (mut table, mut from) = match store::read_state_file(&path, "producers", 1) {
        Ok(Some(lines)) => match ProducerTable::decode_snapshot(&lines) {
            Ok((t, off)) if off <= log_end => (t, off.max(log_start)),
            Ok((_, off)) => {
                warn!(topic = %h.tp.topic, partition = h.tp.partition, snapshot = off, log_end, "producer snapshot is ahead of the log; replaying the log");
                (ProducerTable::default(), log_start)
            }
            Err(reason) => {
                warn!(topic = %h.tp.topic, partition = h.tp.partition, reason, "unreadable producer snapshot; replaying the log");
                (ProducerTable::default(), log_start)
            }
        },
        Ok(None) => (ProducerTable::default(), log_start),
        Err(e) => {
            warn!(topic = %h.tp.topic, partition = h.tp.partition, error = %e, "unreadable producer snapshot; replaying the log");
            (ProducerTable::default(), log_start)
        }
    };
    let mut replayed = 0u64;
    while from < log_end {
        let bytes = h.log.read_bytes(from, 1 << 20)?;
        if bytes.is_empty() {
            break;
        }
        let mut at = 0;
        while at < bytes.len() {
            let hdr =
                weft_log::batch::BatchHeader::parse(&bytes[at..]).map_err(weft_log::Error::from)?;
            at += hdr.total_len();
            if hdr.last_offset() < from {
                continue;
            }
            let id = BatchId {
                producer_id: hdr.producer_id,
                epoch: hdr.producer_epoch,
                first_seq: hdr.base_sequence,
                last_offset_delta: hdr.last_offset_delta,
            };
            // Replayed batches count as appended now: their timestamps are the clients'
            // (maybe skewed or set on purpose), and expiring state early would turn a retry
            // after the restart into a duplicate.
            table.record(&id, hdr.base_offset, hdr.last_offset(), now_ms);
            replayed += 1;
            from = hdr.next_offset();
        }
    }
    if replayed > 0 {
        info!(topic = %h.tp.topic, partition = h.tp.partition, batches = replayed, producers = table.len(), "producer state rebuilt from the log tail");
    }
    *lock(&h.producers) = table;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        let ok = ["orders", "a.b_c-D9", &"x".repeat(249)];
        let bad = [
            "",
            ".",
            "..",
            "has space",
            "ümlaut",
            "slash/",
            &"x".repeat(250),
        ];
        for n in ok {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
        for n in bad {
            assert!(validate_name(n).is_err(), "{n}");
        }
    }
}
