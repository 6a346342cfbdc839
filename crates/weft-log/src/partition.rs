//! One topic-partition: an ordered list of segments, the last one active.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tracing::{info, warn};

use crate::batch::{self, BatchHeader, BuildOptions, Record};
use crate::clock::Clock;
use crate::config::{Durability, LogConfig, TimestampType};
use crate::error::{Error, IoContext, Result};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::meta::{self, Meta};
use crate::segment::{
    self, INDEX_SUFFIX, Indexes, Known, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, Tail, file_name,
    prealloc_entries,
};

/// How long a flush owed after [`Partition::append_unsynced`] may stay undone before the
/// log's flusher thread runs it.
const EVERY_BATCH_STRAGGLER: std::time::Duration = std::time::Duration::from_millis(100);

/// Where a successful append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    pub max_timestamp: i64,
    /// Set when the partition stamps LogAppendTime.
    pub log_append_time: Option<i64>,
    pub records: u32,
    /// Under [`Durability::EveryBatch`], after [`Partition::append_unsynced`]: the caller
    /// owes a [`Partition::flush`] before it treats the batch as durable. Always false
    /// after `append` and `append_checked`, which have flushed.
    pub flush_owed: bool,
}

/// A byte range of a segment file holding whole batches, for zero-copy sends.
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
    /// The offset after the region's last batch: its last offset + 1, or, where the read
    /// jumped over batches with the index, the base offset of the batch after the region
    /// (the same unless compaction left a gap). For counting offsets served.
    pub next_offset: u64,
}

impl FileRegion {
    pub fn read_to_bytes(&self) -> std::io::Result<Bytes> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: u64,
    pub timestamp: i64,
}

/// A snapshot of a partition's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub durable_offset: u64,
    pub size_bytes: u64,
    pub segments: usize,
    /// Base offset of the active segment: everything below it is in closed segments.
    pub active_base_offset: u64,
}

/// What a cleaner pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStats {
    pub segments_deleted: usize,
    pub segments_compacted: usize,
    pub records_removed: u64,
    pub bytes_reclaimed: u64,
}

type Listener = Box<dyn Fn(u64) + Send + Sync>;

/// The last checkpoint written, and the newest point known durable since.
#[derive(Debug)]
struct CheckpointState {
    written: Meta,
    at: Instant,
    bytes_since: u64,
    /// `(segment base, position, next offset)` of the last completed flush.
    synced: (u64, u64, u64),
}

#[derive(Debug, Default)]
struct Writer {
    poisoned: Option<(&'static str, String)>,
    closed: bool,
    unflushed_bytes: u64,
    first_unflushed: Option<Instant>,
}

/// Take a lock even if another thread panicked while holding it: every critical section
/// here leaves the protected state consistent at each step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checkpoint the recovery point at least this often (in bytes since the last one), so
/// recovery after a crash scans a bounded tail.
const CHECKPOINT_BYTES: u64 = 64 << 20;
const CHECKPOINT_SECS: u64 = 10;

pub struct Partition {
    name: String,
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    config: RwLock<LogConfig>,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    log_start: AtomicU64,
    log_end: AtomicU64,
    durable: AtomicU64,
    flush_lock: Mutex<()>,
    cleaner_lock: Mutex<()>,
    checkpoint: Mutex<CheckpointState>,
    listener: RwLock<Option<Listener>>,
    flush_hint: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl Partition {
    /// Creates a new partition directory. Fails if it already holds a partition.
    pub fn create(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Partition> {
        if dir.join(meta::META_FILE).exists() {
            return Err(Error::AlreadyExists(dir.display().to_string()));
        }
        std::fs::create_dir_all(dir).at(dir)?;
        Self::open(dir, config, clock)
    }

    /// Opens (and recovers) the partition in `dir`, creating it when empty.
    ///
    /// Recovery (R1-R6 in FORMAT.md): read the checkpoint; delete leftovers of interrupted
    /// renames; trust segments below the recovery point; validate batches from the
    /// recovery point on, truncating the first torn or corrupt batch and dropping anything
    /// after it; rebuild indexes that are missing or inconsistent.
    pub fn open(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Partition> {
        std::fs::create_dir_all(dir).at(dir)?;
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let meta = match Meta::read(dir) {
            Ok(m) => m,
            Err(e @ Error::UnsupportedFormat { .. }) => return Err(e),
            Err(e) => {
                warn!(partition = %name, error = %e, "checkpoint unreadable, recovering every segment");
                None
            }
        };
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            if fname.ends_with(".tmp") || fname.ends_with(".cleaned") || fname.ends_with(".deleted")
            {
                // R2: leftovers of an interrupted write or swap; the originals are intact.
                std::fs::remove_file(entry.path()).at(&entry.path())?;
                continue;
            }
            if let Some(stem) = fname.strip_suffix(".log") {
                match stem.parse::<u64>() {
                    Ok(b) if stem.len() == 20 => bases.push(b),
                    _ => warn!(partition = %name, file = %fname, "ignoring unexpected file"),
                }
            }
        }
        bases.sort_unstable();
        let had_meta = meta.is_some();
        let meta = meta.unwrap_or_default();
        let now = clock.now_ms();
        let prealloc = prealloc_entries(config.segment_bytes, config.index_interval_bytes);
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len().max(1));
        let mut truncated_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let (seg, stop) = recover_segment(dir, base, &meta, had_meta, is_last, &config, now)?;
            if let Some(prev) = segments.last()
                && seg.base_offset < prev.next_offset()
            {
                return Err(Error::Corrupt {
                    what: "partition",
                    path: dir.to_path_buf(),
                    reason: format!("segment {base} overlaps the previous segment"),
                });
            }
            segments.push(Arc::new(seg));
            if stop {
                truncated_at = Some(i);
                break;
            }
        }
        if let Some(i) = truncated_at {
            for &base in &bases[i + 1..] {
                warn!(partition = %name, segment = base, "dropping segment after a corrupt one");
                for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    let p = dir.join(file_name(base, suffix));
                    if p.exists() {
                        std::fs::remove_file(&p).at(&p)?;
                    }
                }
            }
        }
        // R5: drop segments wholly below the log start offset (a deletion interrupted
        // between the checkpoint and the unlink), but always keep the last one.
        while segments.len() > 1 && segments[0].next_offset() <= meta.log_start_offset {
            let seg = segments.remove(0);
            remove_segment_files(dir, seg.base_offset)?;
        }
        if segments.is_empty() {
            let base = meta.log_start_offset.max(meta.recovery_next_offset);
            segments.push(Arc::new(Segment::create(dir, base, prealloc, now)?));
            meta::sync_dir(dir)?;
        }
        let active = segments.last().cloned().ok_or_else(|| Error::Corrupt {
            what: "partition",
            path: dir.to_path_buf(),
            reason: "no segment".into(),
        })?;
        // Readers never look past the active segment's recovered size, so its preallocated
        // index may hold stale entries only beyond that: `Index::load` already cut them.
        let log_end = active.next_offset();
        // The checkpointed start is authoritative: compaction may remove a whole first
        // segment without moving it. Without a checkpoint, the first segment decides.
        let log_start = if had_meta {
            meta.log_start_offset
        } else {
            segments[0].base_offset
        }
        .min(log_end);
        // R6: make the recovered state durable and checkpoint it, so the next crash
        // recovers only what is written from here on.
        for s in &segments {
            s.sync()?;
        }
        let checkpoint = Meta {
            log_start_offset: log_start,
            recovery_segment: active.base_offset,
            recovery_position: active.size(),
            recovery_next_offset: log_end,
        };
        checkpoint.write(dir)?;
        info!(partition = %name, log_start, log_end, segments = segments.len(), "partition opened");
        Ok(Partition {
            name,
            dir: dir.to_path_buf(),
            clock,
            config: RwLock::new(config),
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer::default()),
            log_start: AtomicU64::new(log_start),
            log_end: AtomicU64::new(log_end),
            durable: AtomicU64::new(log_end),
            flush_lock: Mutex::new(()),
            cleaner_lock: Mutex::new(()),
            checkpoint: Mutex::new(CheckpointState {
                written: checkpoint,
                at: Instant::now(),
                bytes_since: 0,
                synced: (
                    checkpoint.recovery_segment,
                    checkpoint.recovery_position,
                    checkpoint.recovery_next_offset,
                ),
            }),
            listener: RwLock::new(None),
            flush_hint: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn log_start_offset(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }
    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> u64 {
        self.log_end.load(Ordering::Acquire)
    }
    /// Every offset below this is on stable storage.
    pub fn durable_offset(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
    pub fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
    fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.size())
            .sum()
    }
    pub fn state(&self) -> PartitionState {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        PartitionState {
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
            durable_offset: self.durable_offset(),
            size_bytes: segs.iter().map(|s| s.size()).sum(),
            segments: segs.len(),
            active_base_offset: segs.last().map_or(0, |s| s.base_offset),
        }
    }

    /// Called with the new durable offset each time it advances.
    pub fn set_durable_listener(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        *self.listener.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Asks the owner's flusher for an early flush (group commit over its byte budget).
    pub(crate) fn set_flush_hint(&self, f: Box<dyn Fn() + Send + Sync>) {
        *lock(&self.flush_hint) = Some(f);
    }

    /// Whether the flusher thread should flush now: group commit judged by the age of the
    /// oldest unflushed append; under `EveryBatch`, a flush left owed for too long.
    pub(crate) fn flush_due(&self) -> bool {
        let w = lock(&self.writer);
        match (self.config().durability, w.first_unflushed) {
            (
                Durability::GroupCommit {
                    interval_ms,
                    max_bytes,
                },
                Some(t),
            ) => t.elapsed().as_millis() as u64 >= interval_ms || w.unflushed_bytes >= max_bytes,
            // A flush owed after `append_unsynced` that its caller never ran (the broker
            // drops it when the connection closes before the answer): a safety net so the
            // durable offset does not wait for the next append.
            (Durability::EveryBatch, Some(t)) => t.elapsed() >= EVERY_BATCH_STRAGGLER,
            (Durability::Os, _) | (_, None) => false,
        }
    }

    fn poison(&self, operation: &'static str, e: &Error) {
        warn!(partition = %self.name, operation, error = %e, "partition poisoned");
        lock(&self.writer)
            .poisoned
            .get_or_insert((operation, e.to_string()));
    }

    /// Appends one v2 record batch, byte for byte, assigning its offsets.
    ///
    /// The batch is validated first (framing, magic, CRC, record count, size, keys on a
    /// compacted partition); a refused batch changes nothing. Returns once the batch is
    /// readable and, under [`Durability::EveryBatch`], on stable storage.
    ///
    /// `batch` is not modified: the copy on disk gets the assigned offset (and, under
    /// LogAppendTime, the time and a new CRC) in its header, which is written separately
    /// from the records. (The `&mut` is historical: the batch used to be rewritten in
    /// place; callers need not change.)
    pub fn append(&self, batch: &mut [u8]) -> Result<AppendInfo> {
        let max = self.config().max_message_bytes;
        if batch.len() > max {
            return Err(Error::MessageTooLarge {
                size: batch.len(),
                max,
            });
        }
        self.append_checked(&batch::check(batch)?)
    }

    /// [`Partition::append`] of a batch the caller has already run through
    /// [`batch::check`]; the checks that depend on the partition's configuration (size,
    /// keys on a compacted partition) are made here.
    pub fn append_checked(&self, checked: &batch::Checked<'_>) -> Result<AppendInfo> {
        let mut info = self.append_unsynced(checked)?;
        if info.flush_owed {
            self.flush()?;
            info.flush_owed = false;
        }
        Ok(info)
    }

    /// [`Partition::append_checked`] without the fsync that [`Durability::EveryBatch`]
    /// makes before returning: the batch is readable, and the caller owes a
    /// [`Partition::flush`] before it treats the batch as durable under that policy. The
    /// broker uses this to start the next request's append while this one's fsync runs,
    /// and to let one fsync cover the appends of several requests. The other policies
    /// behave exactly as with `append_checked`.
    pub fn append_unsynced(&self, checked: &batch::Checked<'_>) -> Result<AppendInfo> {
        let config = self.config();
        let (batch, h) = (checked.bytes(), checked.header());
        if batch.len() > config.max_message_bytes {
            return Err(Error::MessageTooLarge {
                size: batch.len(),
                max: config.max_message_bytes,
            });
        }
        if config.cleanup_policy.compacts() && !h.is_control() {
            // Keys live inside the (possibly compressed) records: decode to check them.
            let records = batch::records(batch)?;
            if records.iter().any(|r| r.key.is_none()) {
                return Err(Error::KeylessRecordInCompactedLog);
            }
        }
        let now = self.clock.now_ms();
        let info = {
            let mut w = lock(&self.writer);
            if let Some((operation, reason)) = &w.poisoned {
                return Err(Error::Poisoned {
                    operation,
                    reason: reason.clone(),
                });
            }
            if w.closed {
                return Err(Error::Closed);
            }
            let info = match self.append_locked(batch, h, &config, now) {
                Ok(info) => info,
                Err(e) => {
                    // A failed write leaves the file in an unknown state past the visible
                    // size: refuse further writes rather than guess (recovery will trim).
                    w.poisoned.get_or_insert(("write", e.to_string()));
                    warn!(partition = %self.name, error = %e, "append failed, partition poisoned");
                    return Err(e);
                }
            };
            w.unflushed_bytes += batch.len() as u64;
            w.first_unflushed.get_or_insert_with(Instant::now);
            if let Durability::GroupCommit { max_bytes, .. } = config.durability
                && w.unflushed_bytes >= max_bytes
                && let Some(hint) = lock(&self.flush_hint).as_ref()
            {
                hint();
            }
            info
        };
        Ok(info)
    }

    fn append_locked(
        &self,
        batch: &[u8],
        h: &BatchHeader,
        config: &LogConfig,
        now: i64,
    ) -> Result<AppendInfo> {
        let base_offset = self.log_end_offset();
        let mut max_timestamp = h.max_timestamp;
        let mut log_append_time = None;
        if config.timestamp_type == TimestampType::LogAppendTime {
            max_timestamp = now;
            log_append_time = Some(now);
        }
        let head = batch::stored_header(batch, base_offset, log_append_time);
        let last_offset = base_offset + h.last_offset_delta as u64;
        let mut active = self.active();
        if self.should_roll(
            &active,
            batch.len() as u64,
            last_offset,
            config,
            max_timestamp,
        ) {
            active = self.roll_locked(base_offset, config, now)?;
        }
        let pos = active.size();
        active.write_all_at(&[&head, &batch[batch::HEADER_LEN..]], pos)?;
        {
            let mut idx = active.indexes();
            if idx.bytes_since_entry >= config.index_interval_bytes && pos > 0 {
                segment::push_entries(
                    &mut idx,
                    active.base_offset,
                    base_offset,
                    pos,
                    active.max_timestamp(),
                )?;
            }
            idx.bytes_since_entry += batch.len() as u64;
        }
        if pos == 0 {
            active.roll_base_ms.store(max_timestamp, Ordering::Release);
        }
        active
            .max_timestamp
            .fetch_max(max_timestamp, Ordering::AcqRel);
        active.next_offset.store(last_offset + 1, Ordering::Release);
        active
            .size
            .store(pos + batch.len() as u64, Ordering::Release);
        self.log_end.store(last_offset + 1, Ordering::Release);
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            log_append_time,
            records: h.records_count as u32,
            flush_owed: config.durability == Durability::EveryBatch,
        })
    }

    fn active(&self) -> Arc<Segment> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        // The list is never empty: open creates a segment and nothing removes the last one.
        Arc::clone(&segs[segs.len() - 1])
    }

    fn should_roll(
        &self,
        active: &Segment,
        len: u64,
        last_offset: u64,
        c: &LogConfig,
        batch_max_timestamp: i64,
    ) -> bool {
        let size = active.size();
        if size == 0 {
            return false;
        }
        // Index positions and relative offsets are u32.
        let limit = c.segment_bytes.min(u64::from(u32::MAX));
        size + len > limit
            || last_offset - active.base_offset > u64::from(u32::MAX)
            || active.indexes().offsets.entries.len() as u64 >= segment::MAX_INDEX_ENTRIES
            // As Kafka: `segment.ms` compares the incoming batch's timestamp with the first
            // batch's, so data carrying old timestamps does not roll on every append.
            || batch_max_timestamp.saturating_sub(active.roll_base_ms.load(Ordering::Acquire))
                >= c.segment_ms
    }

    /// Rolls to a new active segment starting at `base` (S1-S4 in FORMAT.md). The old
    /// segment's indexes get their final time entry and are trimmed; its data is synced by
    /// the next flush, which covers every segment from the durable offset on.
    fn roll_locked(&self, base: u64, config: &LogConfig, now: i64) -> Result<Arc<Segment>> {
        let old = self.active();
        {
            let mut idx = old.indexes();
            let size = old.size();
            let last_pos = idx
                .times
                .entries
                .last()
                .map_or(0, |e| u64::from(e.position));
            if size > last_pos {
                idx.times.push(TimeEntry {
                    max_timestamp_before: old.max_timestamp(),
                    position: size as u32,
                })?;
            }
            idx.offsets.trim()?;
            idx.times.trim()?;
        }
        let prealloc = prealloc_entries(config.segment_bytes, config.index_interval_bytes);
        let seg = Arc::new(Segment::create(&self.dir, base, prealloc, now)?);
        // A failure here (or above) is returned to the caller, which holds the writer lock
        // and poisons the partition; calling `poison` here would deadlock on that lock.
        meta::sync_dir(&self.dir)?;
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&seg));
        if let Some(hint) = lock(&self.flush_hint).as_ref() {
            hint();
        }
        Ok(seg)
    }

    /// Forces everything appended so far to stable storage and advances the durable
    /// offset (F1-F3 in FORMAT.md). Concurrent callers share one fsync.
    pub fn flush(&self) -> Result<u64> {
        let _flush = lock(&self.flush_lock);
        let (target, segs, bytes, point) = {
            let mut w = lock(&self.writer);
            if let Some((operation, reason)) = &w.poisoned {
                return Err(Error::Poisoned {
                    operation,
                    reason: reason.clone(),
                });
            }
            let target = self.log_end_offset();
            let durable = self.durable_offset();
            if target == durable && w.unflushed_bytes == 0 {
                return Ok(durable);
            }
            let segs: Vec<Arc<Segment>> = self
                .segments()
                .into_iter()
                .filter(|s| s.next_offset() > durable || s.size() == 0)
                .collect();
            let bytes = std::mem::take(&mut w.unflushed_bytes);
            w.first_unflushed = None;
            // Appends hold the writer lock, so the active size matches `target` exactly.
            let active = self.active();
            let point = (active.base_offset, active.size(), target);
            (target, segs, bytes, point)
        };
        // F2: only the logs. Indexes matter to recovery only below a checkpoint, and are
        // synced before one is written (M0), so one fdatasync per flush suffices.
        let synced_at = Instant::now();
        for s in &segs {
            if let Err(e) = s.sync_log() {
                self.poison("fsync", &e);
                return Err(e);
            }
        }
        metrics::histogram!("weft_log_fsync_seconds").record(synced_at.elapsed().as_secs_f64());
        self.durable.fetch_max(target, Ordering::AcqRel);
        {
            let mut cp = lock(&self.checkpoint);
            cp.bytes_since += bytes;
            if point.2 > cp.synced.2 {
                cp.synced = point;
            }
        }
        self.maybe_checkpoint()?;
        if let Some(f) = self
            .listener
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f(target);
        }
        Ok(target)
    }

    /// Moves the recovery point up to what is durable, at most every
    /// [`CHECKPOINT_SECS`] or [`CHECKPOINT_BYTES`].
    fn maybe_checkpoint(&self) -> Result<()> {
        self.checkpoint_if(|cp| {
            cp.at.elapsed().as_secs() >= CHECKPOINT_SECS || cp.bytes_since >= CHECKPOINT_BYTES
        })
    }

    /// Flushes and moves the recovery point as far as is durable, so that compaction,
    /// which never rewrites the recovery point's segment or later ones, has room.
    fn checkpoint_into_active(&self) -> Result<()> {
        self.flush()?;
        let active_base = self.active().base_offset;
        self.checkpoint_if(|cp| cp.written.recovery_segment < active_base)
    }

    /// M0-M4: sync the indexes that the new checkpoint will make trusted, then replace it.
    fn checkpoint_if(&self, due: impl FnOnce(&CheckpointState) -> bool) -> Result<()> {
        let mut cp = lock(&self.checkpoint);
        if !due(&cp) {
            return Ok(());
        }
        let (segment, position, next_offset) = cp.synced;
        if (segment, position) == (cp.written.recovery_segment, cp.written.recovery_position) {
            return Ok(());
        }
        let from = cp.written.recovery_segment;
        for s in self
            .segments()
            .iter()
            .filter(|s| s.base_offset >= from && s.base_offset <= segment)
        {
            if let Err(e) = s.sync_indexes() {
                self.poison("fsync", &e);
                return Err(e);
            }
        }
        let m = Meta {
            log_start_offset: self.log_start_offset(),
            recovery_segment: segment,
            recovery_position: position,
            recovery_next_offset: next_offset,
        };
        if let Err(e) = m.write(&self.dir) {
            self.poison("checkpoint", &e);
            return Err(e);
        }
        cp.written = m;
        cp.at = Instant::now();
        cp.bytes_since = 0;
        Ok(())
    }

    /// Rewrites the current checkpoint with a new log start offset.
    fn checkpoint_log_start(&self, log_start: u64) -> Result<()> {
        let mut cp = lock(&self.checkpoint);
        let m = Meta {
            log_start_offset: log_start,
            ..cp.written
        };
        if let Err(e) = m.write(&self.dir) {
            self.poison("checkpoint", &e);
            return Err(e);
        }
        cp.written = m;
        Ok(())
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// (but always at least one batch). `None` when `offset` is the log end.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Option<FileRegion>> {
        self.read_region(offset, max_bytes, u64::MAX)
    }

    /// [`Partition::read`] that also stops before the first batch whose last offset is at
    /// or above `below` (a consumer's high watermark): the region holds only batches that
    /// end below it. `None` when there is no such batch at `offset`. The region is for
    /// sending as it is (zero-copy): its CRCs are not checked here, as Kafka does not on
    /// fetch either; [`Partition::read_bytes`] checks them.
    pub fn read_below(
        &self,
        offset: u64,
        max_bytes: usize,
        below: u64,
    ) -> Result<Option<FileRegion>> {
        self.read_region(offset, max_bytes, below)
    }

    fn read_region(&self, offset: u64, max_bytes: usize, below: u64) -> Result<Option<FileRegion>> {
        let log_start = self.log_start_offset();
        let log_end = self.log_end_offset();
        if offset < log_start {
            return Err(Error::OffsetBelowLogStart {
                requested: offset,
                log_start,
            });
        }
        if offset > log_end {
            return Err(Error::OffsetBeyondLogEnd {
                requested: offset,
                log_end,
            });
        }
        if offset == log_end {
            return Ok(None);
        }
        let segs = self.segments();
        let first = segs
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &segs[first..] {
            let size = seg.size();
            if seg.next_offset() <= offset || size == 0 {
                continue;
            }
            let from = if offset > seg.base_offset {
                seg.lookup_offset(offset)
            } else {
                0
            };
            let mut scan = seg.scanner(from, size);
            let mut start = None;
            while let Some((pos, h)) = scan.next_header()? {
                if h.last_offset() >= offset {
                    start = Some((pos, h.total_len() as u64, h.last_offset() + 1));
                    break;
                }
            }
            let Some((start, first_len, first_next)) = start else {
                continue;
            };
            // Where the batches at or past `below` begin in this segment (if they do).
            let mut limit_end = size;
            if below < seg.next_offset() {
                let from = if below > seg.base_offset {
                    seg.lookup_offset(below).max(start)
                } else {
                    start
                };
                let mut scan = seg.scanner(from, size);
                while let Some((pos, h)) = scan.next_header()? {
                    if h.last_offset() >= below {
                        limit_end = pos;
                        break;
                    }
                }
            }
            if start + first_len > limit_end {
                return Ok(None);
            }
            // Extend by whole batches; jump ahead with the index when it helps.
            let budget_end = start.saturating_add(max_bytes as u64).min(limit_end);
            let mut end = start + first_len;
            let mut next_offset = first_next;
            if budget_end > end {
                let (jump_base, jump) = seg.indexed_entry_at_or_before(budget_end);
                if jump > end {
                    end = jump;
                    next_offset = jump_base;
                }
                let mut scan = seg.scanner(end, size);
                while let Some((pos, h)) = scan.next_header()? {
                    let batch_end = pos + h.total_len() as u64;
                    if batch_end > budget_end {
                        break;
                    }
                    end = batch_end;
                    next_offset = h.last_offset() + 1;
                }
            }
            return Ok(Some(FileRegion {
                file: Arc::clone(&seg.file),
                position: start,
                len: (end - start) as usize,
                next_offset,
            }));
        }
        Ok(None)
    }

    /// [`Partition::read`] copied into memory, with every batch's CRC checked.
    pub fn read_bytes(&self, offset: u64, max_bytes: usize) -> Result<Bytes> {
        let Some(region) = self.read(offset, max_bytes)? else {
            return Ok(Bytes::new());
        };
        let bytes = region.read_to_bytes().map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).map_err(Error::from)?;
            let end = at + h.total_len();
            batch::validate(&bytes[at..end]).map_err(|e| Error::Corrupt {
                what: "segment",
                path: self.dir.clone(),
                reason: format!("batch at offset {}: {e}", h.base_offset),
            })?;
            at = end;
        }
        Ok(bytes)
    }

    /// The first record (at or above the log start) whose timestamp is `>= target`.
    pub fn offset_for_timestamp(&self, target: i64) -> Result<Option<TimestampOffset>> {
        let log_start = self.log_start_offset();
        for seg in self.segments() {
            if seg.max_timestamp() < target || seg.next_offset() <= log_start {
                continue;
            }
            let from = u64::from(seg.indexes().times.lookup(target));
            let mut scan = seg.scanner(from, seg.size());
            while let Some((pos, h)) = scan.next_header()? {
                if h.max_timestamp < target || h.last_offset() < log_start {
                    continue;
                }
                let raw = seg.read_batch(pos, &h)?;
                let found = batch::records(&raw)?
                    .into_iter()
                    .find(|r| r.offset >= log_start && r.timestamp >= target);
                if let Some(r) = found {
                    return Ok(Some(TimestampOffset {
                        offset: r.offset,
                        timestamp: r.timestamp,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the earliest one on ties), as Kafka's
    /// ListOffsets `MAX_TIMESTAMP` answers.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        let log_start = self.log_start_offset();
        let segs = self.segments();
        let Some(best) = segs
            .iter()
            .filter(|s| s.size() > 0 && s.next_offset() > log_start)
            .map(|s| s.max_timestamp())
            .max()
        else {
            return Ok(None);
        };
        for seg in segs.iter().filter(|s| s.max_timestamp() == best) {
            let mut scan = seg.scanner(0, seg.size());
            while let Some((pos, h)) = scan.next_header()? {
                if h.max_timestamp != best || h.last_offset() < log_start {
                    continue;
                }
                let raw = seg.read_batch(pos, &h)?;
                if let Some(r) = batch::records(&raw)?
                    .into_iter()
                    .find(|r| r.offset >= log_start && r.timestamp == best)
                {
                    return Ok(Some(TimestampOffset {
                        offset: r.offset,
                        timestamp: r.timestamp,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords) durably, then
    /// deletes segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64> {
        let _cleaner = lock(&self.cleaner_lock);
        let log_end = self.log_end_offset();
        if offset > log_end {
            return Err(Error::OffsetBeyondLogEnd {
                requested: offset,
                log_end,
            });
        }
        let new_start = self.log_start_offset().max(offset);
        if new_start != self.log_start_offset() {
            self.checkpoint_log_start(new_start)?;
            self.log_start.store(new_start, Ordering::Release);
        }
        self.delete_segments_below_start()?;
        Ok(new_start)
    }

    /// D1-D4 in FORMAT.md: the new log start is checkpointed before any file goes.
    fn delete_segments(&self, victims: &[Arc<Segment>]) -> Result<u64> {
        if victims.is_empty() {
            return Ok(0);
        }
        // Everything below the last victim's next offset is gone. (Not the next segment's
        // base: compaction may have left a gap between the two.)
        let gone_below = victims.iter().map(|v| v.next_offset()).max().unwrap_or(0);
        let new_start = self.log_start_offset().max(gone_below);
        if new_start != self.log_start_offset() {
            self.checkpoint_log_start(new_start)?;
            self.log_start.store(new_start, Ordering::Release);
        }
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !victims.iter().any(|v| v.base_offset == s.base_offset));
        let mut bytes = 0;
        for v in victims {
            bytes += v.size();
            remove_segment_files(&self.dir, v.base_offset)?;
        }
        meta::sync_dir(&self.dir)?;
        Ok(bytes)
    }

    fn delete_segments_below_start(&self) -> Result<CleanerStats> {
        let start = self.log_start_offset();
        let segs = self.segments();
        let victims: Vec<_> = segs[..segs.len() - 1]
            .iter()
            .take_while(|s| s.next_offset() <= start)
            .cloned()
            .collect();
        let bytes = self.delete_segments(&victims)?;
        Ok(CleanerStats {
            segments_deleted: victims.len(),
            bytes_reclaimed: bytes,
            ..Default::default()
        })
    }

    /// Rolls an active segment whose records have all expired, and deletes closed segments by `retention.ms`,
    /// `retention.bytes` and the log start offset. Never blocks appends for longer than a
    /// roll; the active segment is never deleted.
    pub fn enforce_retention(&self) -> Result<CleanerStats> {
        let _cleaner = lock(&self.cleaner_lock);
        let config = self.config();
        let now = self.clock.now_ms();
        {
            let mut w = lock(&self.writer);
            let active = self.active();
            if !w.closed
                && w.poisoned.is_none()
                && active.size() > 0
                && config.cleanup_policy.deletes()
                && config
                    .retention_ms
                    .is_some_and(|r| active.max_timestamp() < now.saturating_sub(r))
            {
                let base = self.log_end_offset();
                drop(active);
                if let Err(e) = self.roll_locked(base, &config, now) {
                    w.poisoned.get_or_insert(("roll", e.to_string()));
                    return Err(e);
                }
            }
        }
        let mut stats = self.delete_segments_below_start()?;
        if !config.cleanup_policy.deletes() {
            return Ok(stats);
        }
        let segs = self.segments();
        let closed = &segs[..segs.len() - 1];
        let mut total: u64 = segs.iter().map(|s| s.size()).sum();
        let mut victims = Vec::new();
        for s in closed {
            let by_time = config
                .retention_ms
                .is_some_and(|r| s.max_timestamp() < now.saturating_sub(r));
            let by_size = config
                .retention_bytes
                .is_some_and(|r| total.saturating_sub(s.size()) >= r);
            if !(by_time || by_size) {
                break;
            }
            total -= s.size();
            victims.push(Arc::clone(s));
        }
        stats.bytes_reclaimed += self.delete_segments(&victims)?;
        stats.segments_deleted += victims.len();
        Ok(stats)
    }

    /// Compacts closed segments older than `min.compaction.lag.ms`: keeps the latest
    /// record per key and drops tombstones older than `delete.retention.ms` (C1-C6 in
    /// FORMAT.md). Offsets and order of survivors never change; the active segment is
    /// never touched; appends and reads go on meanwhile.
    pub fn compact(&self) -> Result<CleanerStats> {
        let _cleaner = lock(&self.cleaner_lock);
        let config = self.config();
        let mut stats = CleanerStats::default();
        if !config.cleanup_policy.compacts() {
            return Ok(stats);
        }
        let now = self.clock.now_ms();
        let segs = self.segments();
        let horizon = now.saturating_sub(config.min_compaction_lag_ms);
        // Never the active segment, and never the recovery point's segment or later:
        // recovery must not start inside a segment that compaction rewrote.
        self.checkpoint_into_active()?;
        let recovery_segment = lock(&self.checkpoint).written.recovery_segment;
        let range: Vec<Arc<Segment>> = segs[..segs.len() - 1]
            .iter()
            .filter(|s| s.base_offset < recovery_segment)
            .take_while(|s| s.max_timestamp() <= horizon)
            .cloned()
            .collect();
        if range.is_empty() {
            return Ok(stats);
        }
        // C1: the latest offset of every key in the compactable range.
        let mut latest: HashMap<Bytes, u64> = HashMap::new();
        for seg in &range {
            for_each_batch(seg, |_, h, raw| {
                if !h.is_control() {
                    for r in batch::records(raw)? {
                        if let Some(k) = r.key {
                            latest.insert(k, r.offset);
                        }
                    }
                }
                Ok(())
            })?;
        }
        let keep = |r: &Record| -> bool {
            let Some(k) = &r.key else { return false };
            if latest.get(k) != Some(&r.offset) {
                return false;
            }
            r.value.is_some() || now.saturating_sub(r.timestamp) < config.delete_retention_ms
        };
        for seg in &range {
            let (removed, reclaimed) = self.rewrite_segment(seg, &config, &keep)?;
            if removed > 0 {
                stats.segments_compacted += 1;
                stats.records_removed += removed;
                stats.bytes_reclaimed += reclaimed;
            }
        }
        Ok(stats)
    }

    /// Rewrites one closed segment keeping the records `keep` accepts; swaps it in.
    fn rewrite_segment(
        &self,
        seg: &Arc<Segment>,
        config: &LogConfig,
        keep: &dyn Fn(&Record) -> bool,
    ) -> Result<(u64, u64)> {
        let dir = &self.dir;
        let base = seg.base_offset;
        let cleaned = |suffix: &str| dir.join(format!("{}.cleaned", file_name(base, suffix)));
        let mut out = Vec::<u8>::new();
        let mut offsets = Vec::new();
        let mut times = Vec::new();
        let mut since_entry = 0u64;
        let mut max_ts = -1i64;
        let mut removed = 0u64;
        for_each_batch(seg, |_, h, raw| {
            let survivors: Vec<Record>;
            let bytes: std::borrow::Cow<'_, [u8]> = if h.is_control() {
                std::borrow::Cow::Borrowed(raw)
            } else {
                let all = batch::records(raw)?;
                let n = all.len();
                survivors = all.into_iter().filter(|r| keep(r)).collect();
                removed += (n - survivors.len()) as u64;
                if survivors.is_empty() {
                    return Ok(());
                }
                if survivors.len() == n {
                    std::borrow::Cow::Borrowed(raw)
                } else {
                    let opts = BuildOptions {
                        base_offset: h.base_offset,
                        compression: h.compression()?,
                        last_offset_delta: Some(h.last_offset_delta),
                        producer_id: h.producer_id,
                        producer_epoch: h.producer_epoch,
                        base_sequence: h.base_sequence,
                        attributes_extra: h.attributes & !0x07,
                        partition_leader_epoch: h.partition_leader_epoch,
                    };
                    std::borrow::Cow::Owned(batch::build(opts, &survivors)?)
                }
            };
            let pos = out.len() as u64;
            if since_entry >= config.index_interval_bytes && pos > 0 {
                offsets.push(OffsetEntry {
                    relative_offset: (h.base_offset - base) as u32,
                    position: pos as u32,
                });
                times.push(TimeEntry {
                    max_timestamp_before: max_ts,
                    position: pos as u32,
                });
                since_entry = 0;
            }
            since_entry += bytes.len() as u64;
            let hb = BatchHeader::parse(&bytes)?;
            max_ts = max_ts.max(hb.max_timestamp);
            out.extend_from_slice(&bytes);
            Ok(())
        })?;
        if removed == 0 {
            return Ok((0, 0));
        }
        if !out.is_empty() {
            times.push(TimeEntry {
                max_timestamp_before: max_ts,
                position: out.len() as u32,
            });
        }
        let old_size = seg.size();
        // C2: write the cleaned files and make them durable.
        let log_tmp = cleaned(LOG_SUFFIX);
        let idx_tmp = cleaned(INDEX_SUFFIX);
        let time_tmp = cleaned(TIME_INDEX_SUFFIX);
        {
            let f = File::create(&log_tmp).at(&log_tmp)?;
            f.write_all_at(&out, 0).at(&log_tmp)?;
            f.sync_all().at(&log_tmp)?;
        }
        let n_off = offsets.len() as u64;
        let n_time = times.len() as u64;
        Index::rewrite(&idx_tmp, offsets, n_off)?.sync()?;
        Index::rewrite(&time_tmp, times, n_time)?.sync()?;
        // C3-C5: indexes can always be rebuilt from the log, so drop the old ones first;
        // then replace the log atomically; then move the new indexes in; then sync the dir.
        let (log_path, idx_path, time_path) = Segment::paths(dir, base);
        std::fs::remove_file(&idx_path).at(&idx_path)?;
        std::fs::remove_file(&time_path).at(&time_path)?;
        std::fs::rename(&log_tmp, &log_path).at(&log_path)?;
        std::fs::rename(&idx_tmp, &idx_path).at(&idx_path)?;
        std::fs::rename(&time_tmp, &time_path).at(&time_path)?;
        meta::sync_dir(dir)?;
        // C6: swap the in-memory segment; readers holding the old file keep reading it.
        let replacement = if out.is_empty() {
            None
        } else {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&log_path)
                .at(&log_path)?;
            let offsets =
                Index::load(&idx_path, out.len() as u64)?.ok_or_else(|| missing(&idx_path))?;
            let times =
                Index::load(&time_path, out.len() as u64)?.ok_or_else(|| missing(&time_path))?;
            Some(Arc::new(Segment::from_parts(
                base,
                log_path,
                file,
                Known {
                    size: out.len() as u64,
                    next_offset: seg.next_offset(),
                    max_timestamp: max_ts,
                    roll_base_ms: seg.roll_base_ms.load(Ordering::Acquire),
                },
                Indexes {
                    offsets,
                    times,
                    bytes_since_entry: 0,
                },
            )))
        };
        {
            let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = segs.iter().position(|s| s.base_offset == base) {
                match replacement {
                    Some(r) => segs[i] = r,
                    None => {
                        segs.remove(i);
                    }
                }
            }
        }
        if out.is_empty() {
            remove_segment_files(dir, base)?;
            meta::sync_dir(dir)?;
        }
        Ok((removed, old_size - out.len() as u64))
    }

    /// Flushes, trims the active indexes and checkpoints the end: the next open reads
    /// nothing but indexes. Further appends are refused.
    pub fn close(&self) -> Result<()> {
        {
            let mut w = lock(&self.writer);
            if w.closed {
                return Ok(());
            }
            w.closed = true;
        }
        self.flush_all()?;
        let active = self.active();
        {
            let mut idx = active.indexes();
            idx.offsets.trim()?;
            idx.times.trim()?;
            idx.offsets.sync()?;
            idx.times.sync()?;
        }
        lock(&self.checkpoint).synced = (active.base_offset, active.size(), self.log_end_offset());
        self.checkpoint_if(|_| true)
    }

    /// Flush regardless of the writer having been closed.
    fn flush_all(&self) -> Result<()> {
        let _flush = lock(&self.flush_lock);
        for s in self.segments() {
            if let Err(e) = s.sync() {
                self.poison("fsync", &e);
                return Err(e);
            }
        }
        let end = self.log_end_offset();
        self.durable.fetch_max(end, Ordering::AcqRel);
        if let Some(f) = self
            .listener
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f(end);
        }
        Ok(())
    }

    /// Removes the partition's files. The partition must not be used afterwards.
    pub(crate) fn destroy(&self) -> Result<()> {
        lock(&self.writer).closed = true;
        std::fs::remove_dir_all(&self.dir).at(&self.dir)
    }
}

fn missing(path: &Path) -> Error {
    Error::Corrupt {
        what: "index",
        path: path.to_path_buf(),
        reason: "vanished".into(),
    }
}

fn for_each_batch(
    seg: &Segment,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut scan = seg.scanner(0, seg.size());
    while let Some((pos, h)) = scan.next_header()? {
        let raw = seg.read_batch(pos, &h)?;
        f(pos, &h, &raw)?;
    }
    Ok(())
}

fn remove_segment_files(dir: &Path, base: u64) -> Result<()> {
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
        let p = dir.join(file_name(base, suffix));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&p),
        }
    }
    Ok(())
}

/// Opens one segment during recovery. Returns the segment and whether recovery stopped
/// in it (a truncated tail: later segments must go).
fn recover_segment(
    dir: &Path,
    base: u64,
    meta: &Meta,
    had_meta: bool,
    is_last: bool,
    config: &LogConfig,
    now: i64,
) -> Result<(Segment, bool)> {
    let (log_path, idx_path, time_path) = Segment::paths(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log_path)
        .at(&log_path)?;
    let file_len = file.metadata().at(&log_path)?.len();
    let interval = config.index_interval_bytes;
    let prealloc = if is_last {
        prealloc_entries(config.segment_bytes, interval)
    } else {
        0
    };
    // R3: where validation starts.
    let trusted = if base < meta.recovery_segment {
        file_len
    } else if base == meta.recovery_segment && meta.recovery_position <= file_len {
        meta.recovery_position
    } else {
        0
    };
    let offsets = Index::<OffsetEntry>::load(&idx_path, trusted)?;
    let times = Index::<TimeEntry>::load(&time_path, trusted)?;
    let (mut indexes, mut from) = match (offsets, times) {
        (Some(o), Some(t)) if trusted > 0 => {
            // Even after a clean shutdown, re-validate the recovery segment from its last
            // index entry: a few KiB that catch a torn or rotted tail cheaply.
            let from = match o.entries.last() {
                Some(e) if base == meta.recovery_segment => u64::from(e.position),
                None if base == meta.recovery_segment => 0,
                _ => trusted,
            };
            let indexes = Indexes {
                offsets: o,
                times: t,
                bytes_since_entry: 0,
            };
            (indexes, from)
        }
        _ => (
            Indexes {
                offsets: Index::rewrite(&idx_path, Vec::new(), prealloc)?,
                times: Index::rewrite(&time_path, Vec::new(), prealloc)?,
                bytes_since_entry: 0,
            },
            0,
        ),
    };
    // The trusted prefix must end where the indexes say batches are; find the next offset
    // and max timestamp by scanning from the last indexed batch (a few KiB at most).
    let last_entry = indexes.offsets.entries.last().copied();
    let (scan_from, mut next_offset) = match last_entry {
        Some(e) => (u64::from(e.position), base + u64::from(e.relative_offset)),
        None => (0, base),
    };
    let mut max_ts = indexes
        .times
        .entries
        .last()
        .map_or(-1, |e| e.max_timestamp_before);
    let mut first_ts = None;
    let mut consistent = true;
    {
        let mut scan = crate::segment::Scanner::new(&file, &log_path, scan_from, from);
        loop {
            match scan.next_header() {
                Ok(Some((pos, h))) => {
                    if pos == scan_from && last_entry.is_some() && h.base_offset != next_offset {
                        consistent = false;
                        break;
                    }
                    if pos == 0 {
                        first_ts = Some(h.max_timestamp);
                    }
                    next_offset = h.next_offset();
                    max_ts = max_ts.max(h.max_timestamp);
                }
                Ok(None) => break,
                Err(_) => {
                    consistent = false;
                    break;
                }
            }
        }
    }
    if !consistent {
        warn!(segment = %log_path.display(), "index inconsistent with log, rebuilding");
        indexes = Indexes {
            offsets: Index::rewrite(&idx_path, Vec::new(), prealloc)?,
            times: Index::rewrite(&time_path, Vec::new(), prealloc)?,
            bytes_since_entry: 0,
        };
        from = 0;
        next_offset = base;
        max_ts = -1;
    }
    if from > 0 && first_ts.is_none() {
        let mut head = [0u8; batch::HEADER_LEN];
        if file_len >= batch::HEADER_LEN as u64 {
            file.read_exact_at(&mut head, 0).at(&log_path)?;
            first_ts = BatchHeader::parse(&head).ok().map(|h| h.max_timestamp);
        }
    }
    indexes.bytes_since_entry = from
        - indexes
            .offsets
            .entries
            .last()
            .map_or(0, |e| u64::from(e.position));
    // A closed segment's time index ends with an entry at the segment's end; drop it
    // before validating more batches into an index that is growing again.
    // Entries after `from` are re-derived by validation. The time index may be sparser
    // than the offset index (an earlier recovery dropped an entry), so the max timestamp
    // must also cover batches between its last entry and `from`.
    indexes.times.truncate_from(from + 1)?;
    if let Some(t) = indexes.times.entries.last().copied() {
        max_ts = max_ts.max(t.max_timestamp_before);
        let mut scan = crate::segment::Scanner::new(&file, &log_path, u64::from(t.position), from);
        while let Ok(Some((_, h))) = scan.next_header() {
            max_ts = max_ts.max(h.max_timestamp);
        }
    }
    // R4: validate the untrusted tail.
    let strict = had_meta && base >= meta.recovery_segment;
    let tail = Tail {
        from,
        next_offset,
        max_timestamp: max_ts,
        base_offset: base,
        index_interval: interval,
        strict,
    };
    let v = segment::validate_tail(&file, &log_path, tail, &mut indexes)?;
    let truncated = v.stopped.is_some();
    if let Some(reason) = &v.stopped {
        warn!(segment = %log_path.display(), valid_len = v.valid_len, file_len, reason = %reason, "truncating torn or corrupt tail");
        file.set_len(v.valid_len).at(&log_path)?;
        file.sync_all().at(&log_path)?;
        indexes.offsets.truncate_from(v.valid_len)?;
        indexes.times.truncate_from(v.valid_len)?;
    }
    if is_last {
        indexes.offsets.reserve(prealloc)?;
        indexes.times.reserve(prealloc)?;
    }
    let first_ts = first_ts.or(v.first_batch_max_timestamp).unwrap_or(now);
    let size = v.valid_len;
    if !is_last && !truncated {
        let last_pos = indexes
            .times
            .entries
            .last()
            .map_or(0, |e| u64::from(e.position));
        if size > last_pos {
            indexes.times.push(TimeEntry {
                max_timestamp_before: v.max_timestamp,
                position: size as u32,
            })?;
        }
        indexes.offsets.trim()?;
        indexes.times.trim()?;
    }
    Ok((
        Segment::from_parts(
            base,
            log_path,
            file,
            Known {
                size,
                next_offset: v.next_offset,
                max_timestamp: v.max_timestamp,
                roll_base_ms: first_ts,
            },
            indexes,
        ),
        truncated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BuildOptions, Compression};
    use crate::clock::ManualClock;
    use crate::segment::failpoint;

    fn batch(v: &[u8]) -> Vec<u8> {
        let r = Record {
            offset: 0,
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(v)),
            headers: vec![],
        };
        batch::build(
            BuildOptions {
                compression: Compression::None,
                ..Default::default()
            },
            &[r],
        )
        .expect("build")
    }

    fn open(dir: &Path, durability: Durability) -> Partition {
        let config = LogConfig {
            durability,
            ..LogConfig::default()
        };
        Partition::open(dir, config, Arc::new(ManualClock::new(1))).expect("open")
    }

    /// `read_below` returns the same whole batches as `read`, cut before the first batch
    /// that reaches `below`, for every `below` (with a small index interval, so the index
    /// jump is exercised), and never a batch that reaches it.
    #[test]
    fn read_below_stops_before_the_batch_reaching_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            durability: Durability::Os,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let p = Partition::open(dir.path(), config, Arc::new(ManualClock::new(1))).expect("open");
        // 40 single-record batches: batch i holds offset i.
        let mut ends = vec![0u64];
        for i in 0..40u8 {
            let mut b = batch(&[i; 20]);
            p.append(&mut b).expect("append");
            ends.push(ends[ends.len() - 1] + b.len() as u64);
        }
        for offset in [0u64, 1, 7, 39] {
            for below in 0..=41u64 {
                let got = p.read_below(offset, usize::MAX, below).expect("read");
                let want_batches = below.min(40).saturating_sub(offset);
                match got {
                    None => assert_eq!(want_batches, 0, "offset {offset} below {below}"),
                    Some(r) => {
                        assert_eq!(r.position, ends[offset as usize]);
                        assert_eq!(r.next_offset, offset + want_batches, "next offset");
                        assert_eq!(
                            r.len as u64,
                            ends[(offset + want_batches) as usize] - ends[offset as usize],
                            "offset {offset} below {below}"
                        );
                    }
                }
                // The byte budget still applies, and the first batch always fits.
                if let Some(r) = p.read_below(offset, 1, below).expect("read") {
                    assert_eq!(
                        r.len as u64,
                        ends[offset as usize + 1] - ends[offset as usize]
                    );
                }
            }
        }
        assert_eq!(
            p.read(3, usize::MAX).expect("read").map(|r| r.len),
            p.read_below(3, usize::MAX, u64::MAX)
                .expect("read")
                .map(|r| r.len)
        );
    }

    /// A failed fsync poisons the partition: writes and flushes are refused with the
    /// reason, reads go on, the durable offset never covers the unsynced append, and a
    /// reopen recovers and accepts writes again.
    #[test]
    fn failed_fsync_poisons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = open(dir.path(), Durability::EveryBatch);
        p.append(&mut batch(b"one")).expect("append");
        failpoint::arm("fsync");
        let err = p.append(&mut batch(b"two")).expect_err("fsync fails");
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(p.durable_offset(), 1);
        let again = p.append(&mut batch(b"three")).expect_err("poisoned");
        assert!(
            matches!(
                again,
                Error::Poisoned {
                    operation: "fsync",
                    ..
                }
            ),
            "{again:?}"
        );
        assert!(matches!(p.flush(), Err(Error::Poisoned { .. })));
        assert!(
            !p.read_bytes(0, 1 << 20)
                .expect("reads still work")
                .is_empty()
        );
        drop(p);
        let p = open(dir.path(), Durability::EveryBatch);
        let next = p.log_end_offset();
        assert!(next >= 1, "acknowledged append lost");
        assert_eq!(
            p.append(&mut batch(b"four"))
                .expect("append after reopen")
                .base_offset,
            next
        );
    }

    /// The recovery point moves to the last flushed position even when appends keep
    /// landing after the flush (under load there is never a moment when end == durable).
    #[test]
    fn checkpoint_advances_under_continuous_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = open(dir.path(), Durability::Os);
        for _ in 0..3 {
            p.append(&mut batch(b"a")).expect("append");
        }
        p.flush().expect("flush");
        let flushed_size = p.active().size();
        p.append(&mut batch(b"after the flush")).expect("append");
        assert!(p.log_end_offset() > p.durable_offset());
        p.checkpoint_if(|_| true).expect("checkpoint");
        let written = lock(&p.checkpoint).written;
        assert_eq!(written.recovery_next_offset, 3);
        assert_eq!(written.recovery_position, flushed_size);
        // And a crash now recovers from there: the unflushed append is validated, not lost
        // from the page cache, and nothing before it is re-read.
        drop(p);
        let p = open(dir.path(), Durability::Os);
        assert_eq!(p.log_end_offset(), 4);
    }

    /// A failed write poisons too and leaves nothing visible.
    #[test]
    fn failed_write_poisons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = open(dir.path(), Durability::Os);
        failpoint::arm("write");
        assert!(matches!(p.append(&mut batch(b"x")), Err(Error::Io { .. })));
        assert_eq!(p.log_end_offset(), 0);
        assert!(matches!(
            p.append(&mut batch(b"y")),
            Err(Error::Poisoned {
                operation: "write",
                ..
            })
        ));
        assert!(p.read(0, 100).expect("read").is_none());
    }
}
