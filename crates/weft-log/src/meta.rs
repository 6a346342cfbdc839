//! `partition.meta`: the per-partition checkpoint (format version, log start offset and
//! recovery point), replaced atomically by write-to-temp, fsync, rename, fsync directory.
//!
//! ```text
//! 0   8  magic "WEFTPART"
//! 8   4  format version (u32, big endian)
//! 12  8  log start offset
//! 20  8  recovery point: base offset of the segment it lies in
//! 28  8  recovery point: byte position in that segment
//! 36  8  recovery point: next offset at that position
//! 44  4  CRC-32C of bytes 0..44
//! ```

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The on-disk format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"WEFTPART";
const LEN: usize = 48;
pub(crate) const META_FILE: &str = "partition.meta";
const META_TMP: &str = "partition.meta.tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    pub(crate) log_start_offset: u64,
    pub(crate) recovery_segment: u64,
    pub(crate) recovery_position: u64,
    pub(crate) recovery_next_offset: u64,
}

impl Meta {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        b[12..20].copy_from_slice(&self.log_start_offset.to_be_bytes());
        b[20..28].copy_from_slice(&self.recovery_segment.to_be_bytes());
        b[28..36].copy_from_slice(&self.recovery_position.to_be_bytes());
        b[36..44].copy_from_slice(&self.recovery_next_offset.to_be_bytes());
        let crc = crc32c::crc32c(&b[0..44]);
        b[44..48].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Reads the checkpoint; `Ok(None)` when there is none.
    pub(crate) fn read(dir: &Path) -> Result<Option<Meta>> {
        let path = dir.join(META_FILE);
        let b = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        let corrupt = |reason: &str| Error::Corrupt {
            what: "partition checkpoint",
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if b.len() < 12 || &b[0..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        if version > FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if b.len() != LEN {
            return Err(corrupt("wrong length"));
        }
        let crc = u32::from_be_bytes([b[44], b[45], b[46], b[47]]);
        if crc != crc32c::crc32c(&b[0..44]) {
            return Err(corrupt("crc mismatch"));
        }
        let u = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(a)
        };
        Ok(Some(Meta {
            log_start_offset: u(12),
            recovery_segment: u(20),
            recovery_position: u(28),
            recovery_next_offset: u(36),
        }))
    }

    /// Atomically replaces the checkpoint (steps M1-M4 in FORMAT.md).
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(META_TMP);
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(&self.encode()).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        let path = dir.join(META_FILE);
        std::fs::rename(&tmp, &path).at(&path)?;
        sync_dir(dir)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Meta::read(dir.path()).expect("read"), None);
        let m = Meta {
            log_start_offset: 7,
            recovery_segment: 5,
            recovery_position: 4096,
            recovery_next_offset: 99,
        };
        m.write(dir.path()).expect("write");
        assert_eq!(Meta::read(dir.path()).expect("read"), Some(m));
        let path = dir.path().join(META_FILE);
        let mut b = std::fs::read(&path).expect("raw");
        b[13] ^= 1;
        std::fs::write(&path, &b).expect("rewrite");
        assert!(matches!(Meta::read(dir.path()), Err(Error::Corrupt { .. })));
        b[13] ^= 1;
        b[11] = 9; // a future version
        std::fs::write(&path, &b).expect("rewrite");
        assert!(matches!(
            Meta::read(dir.path()),
            Err(Error::UnsupportedFormat { found: 9, .. })
        ));
    }
}
