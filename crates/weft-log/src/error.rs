use std::io;
use std::path::PathBuf;

/// Why a record batch handed to [`crate::Partition::append`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch shorter than the {0}-byte v2 header")]
    TooShort(usize),
    #[error("batch length field says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("unsupported magic byte {0} (only record batch v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("crc mismatch: header says {expected:#010x}, content hashes to {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("inconsistent records: {0}")]
    InconsistentRecords(String),
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    #[error("cannot decompress batch: {0}")]
    Decompress(String),
}

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("record without a key in a compacted partition")]
    KeylessRecordInCompactedLog,
    #[error("offset {requested} is below the log start offset {log_start}")]
    OffsetBelowLogStart { requested: u64, log_start: u64 },
    #[error("offset {requested} is beyond the log end offset {log_end}")]
    OffsetBeyondLogEnd { requested: u64, log_end: u64 },
    #[error("partition is poisoned after a failed {operation} and refuses writes: {reason}")]
    Poisoned {
        operation: &'static str,
        reason: String,
    },
    #[error("partition {0} already exists")]
    AlreadyExists(String),
    #[error("partition {0} does not exist")]
    NotFound(String),
    #[error("invalid partition name {0:?}")]
    InvalidName(String),
    #[error("partition is closed")]
    Closed,
    #[error("corrupt {what} in {path}: {reason}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "unsupported on-disk format version {found} in {path} (this build reads up to {supported})"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
