//! Snapshots of a shard's state (`format-spec/snapshot.md`): every primitive's projection at
//! one LSN, so recovery replays only the log after it; and compaction, which frees the
//! segments that only snapshots' predecessors needed. Both are generic over the file system
//! and the state machines (`shard::Machines`), so the tests run them on the simulated disk
//! (`crash_tests.rs`).

pub mod codec;
pub mod compact;
#[cfg(test)]
mod crash_tests;
pub mod file;
pub mod shard;
