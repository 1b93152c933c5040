//! KV: versioned keys with CAS and TTL on the log. `entry` is the byte layout of KV log entries
//! (`format-spec/kv.md`); `store` is the state machine each partition applies them to.

pub mod entry;
pub mod exec;
pub mod index;
pub mod store;
pub mod watch;

pub use store::{Cond, KvAnswer, KvCommand, KvPending, KvSnapshot, KvStore, Refused, Slot, Value};
