//! Snapshots of a shard's state (`format-spec/snapshot.md`): every primitive's projection at
//! one LSN, so recovery replays only the log after it and compaction knows which entries are
//! still needed.

pub mod codec;
