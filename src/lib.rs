//! Flo: a single-binary data server — versioned KV, priority work queues, append-only streams
//! and time series behind one HTTP/1.1 JSON API, on a log-structured engine written through
//! io_uring, one shard per core.
//!
//! Where things live: `config` (flo.toml and flags), `server` (shards, inboxes, stop),
//! `http` (the hand-rolled HTTP/1.1 layer), `api` (routes and handlers), `auth`, `metrics`,
//! `partition` (which shard owns an object), `namespace`.

pub mod api;
pub mod auth;
pub mod b64;
pub mod clock;
pub mod config;
#[cfg(test)]
mod crash_tally;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod http;
pub mod kv;
pub mod log;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod names;
pub mod namespace;
pub mod partition;
pub mod queue;
pub mod sched;
pub mod server;
pub mod snapshot;
pub mod stream;
#[cfg(any(test, feature = "sim"))]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod test_rng;
pub mod ts;
