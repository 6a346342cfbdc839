use std::io;
use std::path::PathBuf;

/// Errors that stop the broker (startup, state files). Errors of single requests are Kafka
/// error codes sent to the client, not values of this type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("network error: {0}")]
    Net(#[from] io::Error),
    #[error("storage error: {0}")]
    Log(#[from] weft_log::Error),
    #[error("corrupt broker state file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("unsupported broker state file version {found} in {path}")]
    UnsupportedFormat { path: PathBuf, found: String },
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
