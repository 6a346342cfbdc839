//! [`Log`]: the partitions under one directory, and the background threads that flush
//! (group commit) and clean (retention, compaction) them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::{Durability, LogConfig};
use crate::error::{Error, IoContext, Result};
use crate::partition::Partition;

/// A topic-partition name; its directory is `<topic>-<partition>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
    fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
    fn parse_dir(name: &str) -> Option<TopicPartition> {
        let (topic, p) = name.rsplit_once('-')?;
        let partition = p.parse().ok().filter(|p: &i32| *p >= 0)?;
        valid_topic(topic).then(|| TopicPartition::new(topic, partition))
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Kafka's topic name rule: 1-249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub(crate) fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Messages to the flusher thread.
enum FlushMsg {
    /// A partition went over its group-commit byte budget or rolled a segment.
    Wake,
    Shutdown,
}

/// Messages to the cleaner thread.
enum CleanMsg {
    RunNow,
    Shutdown,
}

struct Shared {
    root: PathBuf,
    defaults: LogConfig,
    clock: Arc<dyn Clock>,
    partitions: RwLock<BTreeMap<TopicPartition, Arc<Partition>>>,
}

impl Shared {
    fn all(&self) -> Vec<(TopicPartition, Arc<Partition>)> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}

/// The storage engine of one data directory.
pub struct Log {
    shared: Arc<Shared>,
    flush_tx: Sender<FlushMsg>,
    clean_tx: Sender<CleanMsg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("root", &self.shared.root)
            .finish()
    }
}

/// How often the cleaner looks at retention and compaction on its own.
const CLEAN_INTERVAL: Duration = Duration::from_secs(30);

impl Log {
    pub fn open(root: &Path, defaults: LogConfig) -> Result<Log> {
        Self::open_with_clock(root, defaults, Arc::new(SystemClock))
    }

    /// Opens every partition under `root` (recovering each) and starts the flusher and
    /// cleaner threads.
    pub fn open_with_clock(root: &Path, defaults: LogConfig, clock: Arc<dyn Clock>) -> Result<Log> {
        std::fs::create_dir_all(root).at(root)?;
        let mut partitions = BTreeMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(root)
            .at(root)?
            .collect::<std::io::Result<Vec<_>>>()
            .at(root)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type().at(&entry.path())?.is_dir() {
                continue;
            }
            let Some(tp) = TopicPartition::parse_dir(&name) else {
                warn!(dir = %name, "ignoring directory that is not a partition");
                continue;
            };
            let p = Partition::open(&entry.path(), defaults.clone(), Arc::clone(&clock))?;
            partitions.insert(tp, Arc::new(p));
        }
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            defaults,
            clock,
            partitions: RwLock::new(partitions),
        });
        let (flush_tx, flush_rx) = mpsc::channel();
        let (clean_tx, clean_rx) = mpsc::channel();
        let log = Log {
            shared,
            flush_tx,
            clean_tx,
            threads: Mutex::new(Vec::new()),
        };
        for (_, p) in log.shared.all() {
            log.attach(&p);
        }
        let flusher = {
            let shared = Arc::clone(&log.shared);
            std::thread::Builder::new()
                .name("weft-log-flush".into())
                .spawn(move || flusher(&shared, &flush_rx))
                .at(root)?
        };
        let cleaner = {
            let shared = Arc::clone(&log.shared);
            std::thread::Builder::new()
                .name("weft-log-clean".into())
                .spawn(move || cleaner(&shared, &clean_rx))
                .at(root)?
        };
        log.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([flusher, cleaner]);
        info!(root = %root.display(), partitions = log.shared.all().len(), "log opened");
        Ok(log)
    }

    fn attach(&self, p: &Partition) {
        let tx = self.flush_tx.clone();
        let tx = Mutex::new(tx);
        p.set_flush_hint(Box::new(move || {
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(FlushMsg::Wake);
        }));
    }

    pub fn root(&self) -> &Path {
        &self.shared.root
    }
    pub fn defaults(&self) -> &LogConfig {
        &self.shared.defaults
    }

    pub fn create_partition(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
    ) -> Result<Arc<Partition>> {
        if !valid_topic(&tp.topic) || tp.partition < 0 {
            return Err(Error::InvalidName(tp.to_string()));
        }
        let mut map = self
            .shared
            .partitions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if map.contains_key(tp) {
            return Err(Error::AlreadyExists(tp.to_string()));
        }
        let dir = self.shared.root.join(tp.dir_name());
        let p = Arc::new(Partition::create(
            &dir,
            config,
            Arc::clone(&self.shared.clock),
        )?);
        crate::meta::sync_dir(&self.shared.root)?;
        self.attach(&p);
        map.insert(tp.clone(), Arc::clone(&p));
        Ok(p)
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.shared
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .cloned()
    }

    pub fn partitions(&self) -> Vec<(TopicPartition, Arc<Partition>)> {
        self.shared.all()
    }

    /// Removes a partition and its files. Readers holding regions keep their open files.
    pub fn delete_partition(&self, tp: &TopicPartition) -> Result<()> {
        let p = self
            .shared
            .partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp)
            .ok_or_else(|| Error::NotFound(tp.to_string()))?;
        p.destroy()?;
        crate::meta::sync_dir(&self.shared.root)
    }

    /// Asks the cleaner thread for a retention and compaction pass now.
    pub fn run_cleaner_now(&self) {
        let _ = self.clean_tx.send(CleanMsg::RunNow);
    }

    /// Stops the background threads, then flushes, fsyncs and checkpoints every
    /// partition. Idempotent.
    pub fn close(&self) -> Result<()> {
        let _ = self.flush_tx.send(FlushMsg::Shutdown);
        let _ = self.clean_tx.send(CleanMsg::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        let mut first_err = None;
        for (tp, p) in self.shared.all() {
            if let Err(e) = p.close() {
                warn!(partition = %tp, error = %e, "close failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            warn!(error = %e, "log close on drop failed");
        }
    }
}

/// Group commit: wakes every few milliseconds (or when hinted) and flushes partitions
/// whose oldest unflushed append is older than their interval; also flushes rolled
/// segments of OS-managed partitions so the recovery point advances.
fn flusher(shared: &Shared, rx: &mpsc::Receiver<FlushMsg>) {
    loop {
        let tick = shared
            .all()
            .iter()
            .filter_map(|(_, p)| match p.config().durability {
                Durability::GroupCommit { interval_ms, .. } => Some(interval_ms.max(1)),
                _ => None,
            })
            .min()
            .unwrap_or(100);
        let hinted = match rx.recv_timeout(Duration::from_millis(tick)) {
            Ok(FlushMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(FlushMsg::Wake) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        for (tp, p) in shared.all() {
            let due = p.flush_due() || (hinted && p.config().durability != Durability::EveryBatch);
            if due && let Err(e) = p.flush() {
                warn!(partition = %tp, error = %e, "background flush failed");
            }
        }
    }
}

fn cleaner(shared: &Shared, rx: &mpsc::Receiver<CleanMsg>) {
    loop {
        match rx.recv_timeout(CLEAN_INTERVAL) {
            Ok(CleanMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(CleanMsg::RunNow) | Err(RecvTimeoutError::Timeout) => {}
        }
        for (tp, p) in shared.all() {
            match p.enforce_retention() {
                Ok(s) if s.segments_deleted > 0 => {
                    info!(partition = %tp, segments = s.segments_deleted, bytes = s.bytes_reclaimed, "retention deleted segments");
                }
                Ok(_) => {}
                Err(e) => warn!(partition = %tp, error = %e, "retention failed"),
            }
            match p.compact() {
                Ok(s) if s.records_removed > 0 => {
                    info!(partition = %tp, records = s.records_removed, bytes = s.bytes_reclaimed, "compacted");
                }
                Ok(_) => {}
                Err(e) => warn!(partition = %tp, error = %e, "compaction failed"),
            }
        }
    }
}
