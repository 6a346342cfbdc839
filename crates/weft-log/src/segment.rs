//! One segment: `<base>.log` plus its `.index` and `.timeindex`.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::error::{Error, IoContext, Result};
use crate::index::{Index, OffsetEntry, TimeEntry};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Batches are never larger than this; anything bigger in a length field is corruption.
pub(crate) const MAX_BATCH_LEN: u64 = 1 << 30;

pub(crate) fn file_name(base: u64, suffix: &str) -> String {
    format!("{base:020}.{suffix}")
}

#[derive(Debug)]
pub(crate) struct Indexes {
    pub(crate) offsets: Index<OffsetEntry>,
    pub(crate) times: Index<TimeEntry>,
    /// Log bytes appended since the last index entry.
    pub(crate) bytes_since_entry: u64,
}

/// What recovery or compaction already knows about a segment's content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    pub(crate) size: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) roll_base_ms: i64,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) log_path: PathBuf,
    pub(crate) file: Arc<File>,
    /// Bytes readers may see: only whole, validated batches.
    pub(crate) size: AtomicU64,
    /// Offset after the last batch in the segment (`base_offset` when empty).
    pub(crate) next_offset: AtomicU64,
    /// Largest batch max timestamp (-1 when empty).
    pub(crate) max_timestamp: AtomicI64,
    /// Max timestamp of the first batch, or the creation time: what `segment.ms` measures.
    pub(crate) roll_base_ms: AtomicI64,
    pub(crate) indexes: Mutex<Indexes>,
}

/// Entries preallocated in an active segment's index files.
/// Entries an index may hold, as Kafka's `segment.index.bytes` (10 MiB): a segment rolls
/// when its index is full, so a tiny `index.interval.bytes` or a huge `segment.bytes`
/// cannot make giant index files (and giant reads of them on open).
pub(crate) const MAX_INDEX_ENTRIES: u64 = (10 << 20) / 12;

pub(crate) fn prealloc_entries(segment_bytes: u64, interval: u64) -> u64 {
    (segment_bytes / interval.max(1) + 2).min(MAX_INDEX_ENTRIES)
}

impl Segment {
    pub(crate) fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base, LOG_SUFFIX)),
            dir.join(file_name(base, INDEX_SUFFIX)),
            dir.join(file_name(base, TIME_INDEX_SUFFIX)),
        )
    }

    /// Creates a new, empty active segment.
    pub(crate) fn create(dir: &Path, base: u64, prealloc: u64, now_ms: i64) -> Result<Segment> {
        let (log_path, idx_path, time_path) = Self::paths(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .at(&log_path)?;
        Ok(Segment {
            base_offset: base,
            log_path,
            file: Arc::new(file),
            size: AtomicU64::new(0),
            next_offset: AtomicU64::new(base),
            max_timestamp: AtomicI64::new(-1),
            roll_base_ms: AtomicI64::new(now_ms),
            indexes: Mutex::new(Indexes {
                offsets: Index::create(&idx_path, prealloc)?,
                times: Index::create(&time_path, prealloc)?,
                bytes_since_entry: 0,
            }),
        })
    }

    /// Assembles a segment whose size, next offset and indexes are already known.
    pub(crate) fn from_parts(
        base: u64,
        log_path: PathBuf,
        file: File,
        known: Known,
        indexes: Indexes,
    ) -> Segment {
        let Known {
            size,
            next_offset,
            max_timestamp,
            roll_base_ms,
        } = known;
        Segment {
            base_offset: base,
            log_path,
            file: Arc::new(file),
            size: AtomicU64::new(size),
            next_offset: AtomicU64::new(next_offset),
            max_timestamp: AtomicI64::new(max_timestamp),
            roll_base_ms: AtomicI64::new(roll_base_ms),
            indexes: Mutex::new(indexes),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub(crate) fn indexes(&self) -> MutexGuard<'_, Indexes> {
        // A panic while holding this lock cannot leave the indexes half-updated in a way
        // readers depend on (entries are pushed whole), so a poisoned lock is still usable.
        self.indexes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Byte position from which to scan for the batch containing `offset`.
    pub(crate) fn lookup_offset(&self, offset: u64) -> u64 {
        let rel = offset
            .saturating_sub(self.base_offset)
            .min(u64::from(u32::MAX)) as u32;
        u64::from(self.indexes().offsets.lookup(rel))
    }

    /// The last index entry at or before `position`: (base offset, position) of an indexed
    /// batch; (base offset of the segment, 0) when there is none.
    pub(crate) fn indexed_entry_at_or_before(&self, position: u64) -> (u64, u64) {
        let idx = self.indexes();
        let e = &idx.offsets.entries;
        let i = e.partition_point(|x| u64::from(x.position) <= position);
        if i == 0 {
            (self.base_offset, 0)
        } else {
            let x = &e[i - 1];
            (
                self.base_offset + u64::from(x.relative_offset),
                u64::from(x.position),
            )
        }
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.sync_log()?;
        self.sync_indexes()
    }

    pub(crate) fn sync_log(&self) -> Result<()> {
        #[cfg(test)]
        failpoint::check("fsync", &self.log_path)?;
        self.file.sync_data().at(&self.log_path)
    }

    pub(crate) fn sync_indexes(&self) -> Result<()> {
        let idx = self.indexes();
        idx.offsets.sync()?;
        idx.times.sync()
    }

    /// Writes `parts` one after the other at `position` with `pwritev(2)`, retrying after a
    /// short write: a batch goes to disk as its rewritten header and the records straight
    /// from the request, without first being copied into one buffer.
    pub(crate) fn write_all_at(&self, parts: &[&[u8]], position: u64) -> Result<()> {
        #[cfg(test)]
        failpoint::check("write", &self.log_path)?;
        let mut bufs: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut bufs[..];
        let mut at = position;
        while !slices.is_empty() {
            match rustix::io::pwritev(&*self.file, slices, at) {
                Ok(0) => {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero))
                        .at(&self.log_path);
                }
                Ok(n) => {
                    at += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(std::io::Error::from(e)).at(&self.log_path),
            }
        }
        Ok(())
    }

    /// Reads one complete batch at `position`.
    pub(crate) fn read_batch(&self, position: u64, header: &BatchHeader) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; header.total_len()];
        self.file
            .read_exact_at(&mut buf, position)
            .at(&self.log_path)?;
        Ok(buf)
    }

    pub(crate) fn scanner(&self, from: u64, limit: u64) -> Scanner<'_> {
        Scanner::new(&self.file, &self.log_path, from, limit)
    }
}

/// Walks batch headers of a log file between two positions, reading in chunks so that a
/// run of small batches costs one `pread`, not one per batch. Trusts framing: used only on
/// bytes that recovery or append already validated.
pub(crate) struct Scanner<'a> {
    file: &'a File,
    path: &'a Path,
    pos: u64,
    limit: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const SCAN_CHUNK: usize = 32 * 1024;

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a File, path: &'a Path, from: u64, limit: u64) -> Self {
        Scanner {
            file,
            path,
            pos: from,
            limit,
            buf: Vec::new(),
            buf_start: from,
        }
    }

    /// Next `(position, header)`, or `None` at the limit.
    pub(crate) fn next_header(&mut self) -> Result<Option<(u64, BatchHeader)>> {
        if self.pos + HEADER_LEN as u64 > self.limit {
            return Ok(None);
        }
        let in_buf = self.pos >= self.buf_start
            && self.pos + HEADER_LEN as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let len = (SCAN_CHUNK as u64).min(self.limit - self.pos) as usize;
            self.buf.resize(len, 0);
            self.file
                .read_exact_at(&mut self.buf, self.pos)
                .at(self.path)?;
            self.buf_start = self.pos;
        }
        let at = (self.pos - self.buf_start) as usize;
        let h = BatchHeader::parse(&self.buf[at..at + HEADER_LEN]).map_err(|e| Error::Corrupt {
            what: "segment",
            path: self.path.to_path_buf(),
            reason: format!("at position {}: {e}", self.pos),
        })?;
        if (h.batch_length as u64) < (HEADER_LEN - LOG_OVERHEAD) as u64
            || self.pos + h.total_len() as u64 > self.limit
        {
            return Err(Error::Corrupt {
                what: "segment",
                path: self.path.to_path_buf(),
                reason: format!("batch at position {} overruns the segment", self.pos),
            });
        }
        let position = self.pos;
        self.pos += h.total_len() as u64;
        Ok(Some((position, h)))
    }
}

/// What validating a segment found.
#[derive(Debug)]
pub(crate) struct Validated {
    /// Bytes of whole, valid batches from the start of the segment.
    pub(crate) valid_len: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) first_batch_max_timestamp: Option<i64>,
    /// Why validation stopped early, if it did.
    pub(crate) stopped: Option<String>,
}

/// Where validation of a segment's tail starts, and what holds there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub(crate) from: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) base_offset: u64,
    pub(crate) index_interval: u64,
    /// Require contiguous offsets (segments that were never compacted).
    pub(crate) strict: bool,
}

/// Reads every batch from `from` to the end of `file`, checking length, magic, CRC and
/// offset order, and feeds index entries to `indexes` as append would. Stops at the first
/// bad batch.
pub(crate) fn validate_tail(
    file: &File,
    path: &Path,
    tail: Tail,
    indexes: &mut Indexes,
) -> Result<Validated> {
    let Tail {
        from,
        mut next_offset,
        mut max_timestamp,
        base_offset,
        index_interval,
        strict,
    } = tail;
    let file_len = file.metadata().at(path)?.len();
    let mut pos = from;
    let mut first = None;
    let mut head = [0u8; LOG_OVERHEAD];
    let mut buf = Vec::new();
    let stopped = loop {
        if pos == file_len {
            break None;
        }
        if pos + LOG_OVERHEAD as u64 > file_len {
            break Some(format!("torn length prefix at position {pos}"));
        }
        file.read_exact_at(&mut head, pos).at(path)?;
        let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as u64;
        let total = len + LOG_OVERHEAD as u64;
        if len < (HEADER_LEN - LOG_OVERHEAD) as u64 || total > MAX_BATCH_LEN {
            break Some(format!("implausible batch length {len} at position {pos}"));
        }
        if pos + total > file_len {
            break Some(format!("torn batch at position {pos}"));
        }
        buf.resize(total as usize, 0);
        file.read_exact_at(&mut buf, pos).at(path)?;
        let h = match batch::validate(&buf) {
            Ok(h) => h,
            Err(e) => break Some(format!("invalid batch at position {pos}: {e}")),
        };
        // Segments recovery validates were never compacted, so their offsets are
        // contiguous; a compacted segment (validated only without a checkpoint) may skip.
        let out_of_order = if strict {
            h.base_offset != next_offset
        } else {
            h.base_offset < next_offset
        };
        if out_of_order || h.base_offset < base_offset {
            break Some(format!(
                "batch at position {pos} has offset {}, expected {next_offset}",
                h.base_offset
            ));
        }
        if h.last_offset() - base_offset > u64::from(u32::MAX) {
            break Some(format!(
                "batch at position {pos} overflows the segment's offsets"
            ));
        }
        if indexes.bytes_since_entry >= index_interval && pos > 0 {
            push_entries(indexes, base_offset, h.base_offset, pos, max_timestamp)?;
        }
        indexes.bytes_since_entry += total;
        first.get_or_insert(h.max_timestamp);
        max_timestamp = max_timestamp.max(h.max_timestamp);
        next_offset = h.next_offset();
        pos += total;
    };
    Ok(Validated {
        valid_len: pos,
        next_offset,
        max_timestamp,
        first_batch_max_timestamp: first,
        stopped,
    })
}

pub(crate) fn push_entries(
    indexes: &mut Indexes,
    segment_base: u64,
    batch_base: u64,
    position: u64,
    max_timestamp_before: i64,
) -> Result<()> {
    let position = position as u32;
    indexes.offsets.push(OffsetEntry {
        relative_offset: (batch_base - segment_base) as u32,
        position,
    })?;
    indexes.times.push(TimeEntry {
        max_timestamp_before,
        position,
    })?;
    indexes.bytes_since_entry = 0;
    Ok(())
}

/// Test-only fault injection: the next I/O of a kind fails on this thread, so tests can
/// prove what a failed fsync or write does without a broken disk.
#[cfg(test)]
pub(crate) mod failpoint {
    use std::cell::RefCell;
    use std::path::Path;

    use crate::error::{Error, Result};

    thread_local! {
        static ARMED: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn arm(kind: &'static str) {
        ARMED.with(|a| a.borrow_mut().push(kind));
    }

    pub(crate) fn check(kind: &'static str, path: &Path) -> Result<()> {
        let hit = ARMED.with(|a| {
            let mut a = a.borrow_mut();
            let i = a.iter().position(|k| *k == kind);
            i.map(|i| a.remove(i)).is_some()
        });
        if hit {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("injected {kind} failure")),
            });
        }
        Ok(())
    }
}
