//! Errors of the log, each saying what failed; mapped to the API's codes by the handlers.

use std::io;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum LogError {
    /// A write or sync failed; the log is poisoned.
    Io { op: &'static str, message: String },
    /// The disk is full (ENOSPC). From a write or sync the log is poisoned; from `append`
    /// (no room for another segment) nothing was written and later appends may succeed.
    NoSpace { op: &'static str },
    /// An entry body over the limit.
    EntryTooLarge(usize),
    /// The open batch is full: too much is being written at once.
    BatchFull,
    /// The log is stopping.
    Stopping,
    /// Acknowledged data is damaged: the file and offset where.
    Corrupt { file: PathBuf, offset: u64, reason: String },
    /// The data directory does not match the configuration, or its metadata is damaged.
    Topology(String),
    /// The log ends before the LSN of the snapshot recovery started from (its tail was lost,
    /// or `--repair` cut it there): that snapshot holds state the log no longer has.
    SnapshotAhead { log_end: u64, snapshot: u64 },
}

impl LogError {
    pub fn from_io(op: &'static str, e: &io::Error) -> LogError {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            LogError::NoSpace { op }
        } else {
            LogError::Io {
                op,
                message: e.to_string(),
            }
        }
    }
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Io { op, message } => write!(f, "{op} failed: {message}"),
            LogError::NoSpace { op } => write!(f, "{op} failed: no space left on device"),
            LogError::EntryTooLarge(n) => write!(f, "entry of {n} bytes is over the limit"),
            LogError::BatchFull => f.write_str("too much is being written at once; retry later"),
            LogError::Stopping => f.write_str("the log is stopping"),
            LogError::Corrupt { file, offset, reason } => {
                write!(f, "corrupt log: {} at offset {offset}: {reason}", file.display())
            }
            LogError::Topology(m) => f.write_str(m),
            LogError::SnapshotAhead { log_end, snapshot } => write!(
                f,
                "corrupt log: it ends at LSN {log_end}, but the snapshot recovery started from stands for LSN {snapshot}"
            ),
        }
    }
}

impl std::error::Error for LogError {}
