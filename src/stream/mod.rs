//! Streams as raw segments: a record is its log entry, read from the mapped segment. `entry` is
//! the byte layout of stream log entries (`format-spec/stream.md`); `state` is the state machine
//! one shard applies them to (the sparse offset index, retention, consumer groups); `exec` runs
//! stream commands on the stream's owner shard.

pub mod entry;
pub mod exec;
pub mod state;
