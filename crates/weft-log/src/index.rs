//! Sparse indexes beside each segment. Both are arrays of fixed-size big-endian entries,
//! kept in memory and mirrored to a file that is preallocated while the segment is active
//! and trimmed to its entries when the segment rolls or the partition closes.
//!
//! * offset index (`.index`, 8 bytes): `relative_offset: u32, position: u32` — the batch
//!   starting at `position` has base offset `segment_base + relative_offset`.
//! * time index (`.timeindex`, 12 bytes): `max_timestamp_before: i64, position: u32` — every
//!   batch that starts before `position` has a max timestamp `<= max_timestamp_before`.
//!
//! Position 0 is never indexed (a lookup falls back to the segment start), so an all-zero
//! entry marks the unused, preallocated tail of a file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) max_timestamp_before: i64,
    pub(crate) position: u32,
}

pub(crate) trait Entry: Copy {
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(b: &[u8]) -> Self;
    fn position(&self) -> u32;
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn position(&self) -> u32 {
        self.position
    }
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.max_timestamp_before.to_be_bytes());
        out[8..12].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[0..8]);
        TimeEntry {
            max_timestamp_before: i64::from_be_bytes(ts),
            position: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
    fn position(&self) -> u32 {
        self.position
    }
}

/// One index file and its entries.
#[derive(Debug)]
pub(crate) struct Index<E: Entry> {
    path: PathBuf,
    file: File,
    pub(crate) entries: Vec<E>,
    /// Bytes the file occupies (preallocated length while active).
    file_len: u64,
}

impl<E: Entry> Index<E> {
    /// Creates an empty index file, preallocated to `prealloc_entries`.
    pub(crate) fn create(path: &Path, prealloc_entries: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .at(path)?;
        let file_len = prealloc_entries * E::SIZE as u64;
        file.set_len(file_len).at(path)?;
        Ok(Index {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
            file_len,
        })
    }

    /// Loads an index, keeping the longest prefix of entries with strictly increasing
    /// positions below `max_position`. Returns `None` when the file is missing.
    pub(crate) fn load(path: &Path, max_position: u64) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(path),
        };
        let file_len = file.metadata().at(path)?.len();
        // Never read more than an index can legitimately hold: a damaged or foreign file of
        // any size must not turn into an allocation of that size.
        let readable = file_len.min(crate::segment::MAX_INDEX_ENTRIES * E::SIZE as u64) as usize;
        let mut buf = vec![0u8; readable - readable % E::SIZE];
        file.read_exact_at(&mut buf, 0).at(path)?;
        let mut entries = Vec::with_capacity(buf.len() / E::SIZE);
        let mut last = 0u32;
        for chunk in buf.chunks_exact(E::SIZE) {
            let e = E::decode(chunk);
            if e.position() <= last || u64::from(e.position()) >= max_position {
                break;
            }
            last = e.position();
            entries.push(e);
        }
        // Entries past the kept prefix are stale (a truncated tail, or a crash before the
        // preallocated file was trimmed): zero them so they can never be read back.
        let kept = entries.len() * E::SIZE;
        if buf[kept..].iter().any(|&b| b != 0) {
            file.write_all_at(&vec![0u8; buf.len() - kept], kept as u64)
                .at(path)?;
        }
        Ok(Some(Index {
            path: path.to_path_buf(),
            file,
            entries,
            file_len,
        }))
    }

    /// Rebuilt indexes start from a fresh file holding `entries`.
    pub(crate) fn rewrite(path: &Path, entries: Vec<E>, prealloc_entries: u64) -> Result<Self> {
        let mut idx = Self::create(path, prealloc_entries.max(entries.len() as u64))?;
        let mut buf = vec![0u8; entries.len() * E::SIZE];
        for (e, chunk) in entries.iter().zip(buf.chunks_exact_mut(E::SIZE)) {
            e.encode(chunk);
        }
        idx.file.write_all_at(&buf, 0).at(path)?;
        idx.entries = entries;
        Ok(idx)
    }

    pub(crate) fn push(&mut self, e: E) -> Result<()> {
        let at = (self.entries.len() * E::SIZE) as u64;
        let mut buf = [0u8; 16];
        e.encode(&mut buf[..E::SIZE]);
        self.file.write_all_at(&buf[..E::SIZE], at).at(&self.path)?;
        self.file_len = self.file_len.max(at + E::SIZE as u64);
        self.entries.push(e);
        Ok(())
    }

    /// Drops entries at or after `position` (used when a torn tail is truncated).
    pub(crate) fn truncate_from(&mut self, position: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.position()) < position);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            let at = (keep * E::SIZE) as u64;
            // Zero the dropped entries so a reload does not resurrect them.
            let zeros = vec![0u8; (self.file_len - at) as usize];
            self.file.write_all_at(&zeros, at).at(&self.path)?;
        }
        Ok(())
    }

    /// Preallocates room for `entries` (an active segment reopened after a clean close).
    pub(crate) fn reserve(&mut self, entries: u64) -> Result<()> {
        let len = entries * E::SIZE as u64;
        if self.file_len < len {
            self.file.set_len(len).at(&self.path)?;
            self.file_len = len;
        }
        Ok(())
    }

    /// Shrinks the file to its entries (on roll and clean close).
    pub(crate) fn trim(&mut self) -> Result<()> {
        let len = (self.entries.len() * E::SIZE) as u64;
        if self.file_len != len {
            self.file.set_len(len).at(&self.path)?;
            self.file_len = len;
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }
}

impl Index<OffsetEntry> {
    /// Position of the last indexed batch whose base offset is `<= relative_offset`.
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }
}

impl Index<TimeEntry> {
    /// Position from which a scan for the first timestamp `>= target` may start.
    pub(crate) fn lookup(&self, target: i64) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.max_timestamp_before < target);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }
}
