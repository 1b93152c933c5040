//! The checks of the fuzz targets (`fuzz/`), one module per target: each `check(bytes)` panics
//! when an invariant breaks. They live in the library so that the fuzz targets and
//! `tests/fuzz_corpus.rs` (which replays the checked-in corpora and the named regressions of
//! `fuzz/regressions/`) run the same code. Not part of the server; hidden from the docs.
//!
//! `kv_ops` needs the simulated disk, so it exists in the unit tests and with the `sim`
//! feature (which the fuzz crate enables); its corpus is replayed by its own unit test.

pub mod entry_bodies;
pub mod floql;
pub mod http_chunked;
pub mod http_framing;
pub mod http_head;
pub mod json_bodies;
#[cfg(any(test, feature = "sim"))]
pub mod kv_ops;
pub mod line_protocol;
pub mod log_decode;
pub mod snapshot;
pub mod ts_chunk;
