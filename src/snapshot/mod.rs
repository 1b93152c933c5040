//! Snapshots of a shard's state (`format-spec/snapshot.md`): every primitive's projection at
//! one LSN, so recovery replays only the log after it; and compaction, which frees the
//! segments that only snapshots' predecessors needed.

pub mod codec;
pub mod compact;
pub mod file;
pub mod shard;
