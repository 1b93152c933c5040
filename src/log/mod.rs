//! The log: each shard's segmented write-ahead log, the database's only source of truth.
//! Byte layout in `format-spec/log.md`; `format` encodes and decodes it, `io` is the seam to
//! the disk (real, or simulated in tests), `writer` appends with group commit, `recovery`
//! opens a log and replays it, `segment` holds the active and sealed segment types, `topology`
//! the data directory's placement record.

pub mod body;
#[cfg(test)]
mod crash_tests;
#[cfg(test)]
pub mod either;
pub mod error;
pub mod format;
pub mod io;
pub mod metrics;
pub mod places;
pub mod recovery;
pub mod relocated;
pub mod scrub;
pub mod segment;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod topology;
pub mod writer;

pub use error::LogError;
pub use recovery::{open, RecoveryStats};
pub use writer::{Log, LogOptions, MappedEntry, Position, SegmentEntries, Ticket};
