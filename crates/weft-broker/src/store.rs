//! Broker state files in the state directory.
//!
//! Every file is text, starts with a `weft-broker <kind> <version>` line and ends with an
//! `end` line, and is replaced atomically:
//! 1. write `<name>.tmp.<pid>.<n>` (unique per write) and fsync it;
//! 2. rename it over `<name>`;
//! 3. fsync the directory.
//!
//! A reader that finds no `end` line refuses the file rather than guessing.
//!
//! Files: `cluster.id`, `producer-ids`, `topics.v1` (see `topics`), and
//! `producers/<topic>-<partition>.snapshot` (see `producer_state`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Writes `contents` to `path` atomically (steps 1–3 above).
///
/// The temporary name is unique per call, so two writers of the same file (the periodic
/// snapshot and the final one at shutdown) never write into each other's temporary file;
/// the last rename wins with a complete file.
pub(crate) fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(contents.as_bytes()).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes temporary files [`write_atomic`] left behind when the process died between
/// writing and renaming them (the data dir is locked, so no other writer exists). Returns
/// how many were removed.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        if is_temp_name(&name.to_string_lossy()) {
            let path = entry.path();
            fs::remove_file(&path).at(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `<stem>.tmp.<pid>.<seq>`, exactly what [`write_atomic`] creates; a topic named
/// `a.tmp.b` (legal) still has snapshot files ending in `.snapshot`.
fn is_temp_name(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next() == Some("tmp")
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).at(dir)?.sync_all().at(dir)
}

/// Reads a state file written by [`write_atomic`]: checks the header's kind and version and
/// the trailing `end`, and returns the body lines. `None` when the file does not exist.
pub(crate) fn read_state_file(
    path: &Path,
    kind: &str,
    version: u32,
) -> Result<Option<Vec<String>>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = if lines.is_empty() {
        String::new()
    } else {
        lines.remove(0)
    };
    let mut parts = header.split(' ');
    if parts.next() != Some("weft-broker") || parts.next() != Some(kind) {
        return Err(corrupt("bad header line"));
    }
    let found = parts.next().unwrap_or("");
    if found != version.to_string() {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found: found.to_owned(),
        });
    }
    if lines.pop().as_deref() != Some("end") {
        return Err(corrupt("missing end line (truncated file)"));
    }
    Ok(Some(lines))
}

pub(crate) fn header(kind: &str, version: u32) -> String {
    format!("weft-broker {kind} {version}\n")
}

/// Bytes from the OS's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let filled = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if filled.is_err() {
        // No urandom (odd sandbox): fall back to time and address entropy. Only ids depend
        // on this, never secrets.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = t ^ (std::process::id() as u128) << 64 ^ (&b as *const _ as usize as u128);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed.rotate_left((i * 7) as u32) as u8) ^ (i as u8).wrapping_mul(151);
        }
    }
    b
}

pub(crate) fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bytes::<16>()).into_uuid()
}

/// Kafka's cluster id: 16 random bytes in unpadded URL-safe base64 (22 characters).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = random_bytes::<16>();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// Loads the cluster id, generating and persisting it on first start.
pub(crate) fn load_or_create_cluster_id(dir: &Path) -> Result<String> {
    let path = dir.join("cluster.id");
    if let Some(lines) = read_state_file(&path, "cluster-id", 1)? {
        return match lines.as_slice() {
            [id] if !id.is_empty() => Ok(id.clone()),
            _ => Err(Error::Corrupt {
                path,
                reason: "expected one id line".into(),
            }),
        };
    }
    let id = new_cluster_id();
    write_atomic(&path, &format!("{}{id}\nend\n", header("cluster-id", 1)))?;
    Ok(id)
}

/// Hands out producer ids in blocks: the end of the current block is persisted before any id
/// of it is used, so ids never repeat across restarts.
pub(crate) struct ProducerIdAllocator {
    path: PathBuf,
    next: i64,
    block_end: i64,
    /// The epoch last handed out per id since this broker started (allocation or bump),
    /// bounded: the oldest ids are forgotten first, and the partitions' producer state
    /// still knows the epochs of producers that wrote.
    epochs: BTreeMap<i64, i16>,
}

/// Ids whose handed-out epoch is remembered in memory.
const REMEMBERED_EPOCHS: usize = 100_000;

const PRODUCER_ID_BLOCK: i64 = 1000;

impl ProducerIdAllocator {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("producer-ids");
        let next = match read_state_file(&path, "producer-ids", 1)? {
            Some(lines) => match lines.as_slice() {
                [n] => n.parse::<i64>().map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: format!("bad next id: {e}"),
                })?,
                _ => {
                    return Err(Error::Corrupt {
                        path,
                        reason: "expected one line".into(),
                    });
                }
            },
            None => 0,
        };
        Ok(ProducerIdAllocator {
            path,
            next,
            block_end: next,
            epochs: BTreeMap::new(),
        })
    }

    pub(crate) fn allocate(&mut self) -> Result<i64> {
        if self.next >= self.block_end {
            let end = self.next + PRODUCER_ID_BLOCK;
            write_atomic(
                &self.path,
                &format!("{}{end}\nend\n", header("producer-ids", 1)),
            )?;
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        self.note_epoch(id, 0);
        Ok(id)
    }

    /// Whether `id` can have come from this allocator (in this run or an earlier one).
    pub(crate) fn allocated(&self, id: i64) -> bool {
        (0..self.next).contains(&id)
    }

    /// The epoch last handed out for `id` by this run, if remembered.
    pub(crate) fn epoch(&self, id: i64) -> Option<i16> {
        self.epochs.get(&id).copied()
    }

    pub(crate) fn note_epoch(&mut self, id: i64, epoch: i16) {
        self.epochs.insert(id, epoch);
        while self.epochs.len() > REMEMBERED_EPOCHS {
            self.epochs.pop_first();
        }
    }
}

/// Opens a file for appending-free overwrite; used by tests for corrupt fixtures.
#[cfg(test)]
pub(crate) fn overwrite(path: &Path, contents: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .open(path)
        .expect("open");
    f.write_all(contents.as_bytes()).expect("write");
}

#[cfg(test)]
mod tests {

    #[test]
    fn stale_temp_files_are_removed_and_state_files_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keep = dir.path().join("topics.v1");
        write_atomic(&keep, "x\n").expect("write");
        std::fs::write(dir.path().join("topics.tmp.4242.7"), "torn").expect("tmp");
        std::fs::write(dir.path().join("T-0.tmp.1.0"), "torn").expect("tmp");
        // A legal topic name that merely contains ".tmp." is not a temporary file.
        std::fs::write(dir.path().join("a.tmp.1.2-0.snapshot"), "keep").expect("snapshot");
        assert_eq!(remove_stale_temp_files(dir.path()).expect("clean"), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["a.tmp.1.2-0.snapshot".to_owned(), "topics.v1".to_owned()]
        );
        assert_eq!(
            remove_stale_temp_files(&dir.path().join("missing")).expect("ok"),
            0
        );
    }

    use super::*;

    #[test]
    fn cluster_id_is_stable_and_kafka_shaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_cluster_id(dir.path()).expect("create");
        let b = load_or_create_cluster_id(dir.path()).expect("reload");
        assert_eq!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn truncated_state_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.id");
        overwrite(&path, "weft-broker cluster-id 1\nabc\n");
        assert!(matches!(
            load_or_create_cluster_id(dir.path()),
            Err(Error::Corrupt { .. })
        ));
        overwrite(&path, "weft-broker cluster-id 9\nabc\nend\n");
        assert!(matches!(
            load_or_create_cluster_id(dir.path()),
            Err(Error::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn producer_ids_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = ProducerIdAllocator::open(dir.path()).expect("open");
        let first: Vec<i64> = (0..3).map(|_| a.allocate().expect("alloc")).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let mut b = ProducerIdAllocator::open(dir.path()).expect("reopen");
        assert_eq!(b.allocate().expect("alloc"), PRODUCER_ID_BLOCK);
    }
}
