//! Queues: priorities, leases, acks, delays, dedup and dead letters on the log. `entry` is the
//! byte layout of queue log entries (`format-spec/queue.md`); `state` is the state machine one
//! shard applies them to; `exec` runs queue commands on the queue's owner shard.

pub mod entry;
pub mod exec;
pub mod state;
