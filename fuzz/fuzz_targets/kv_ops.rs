//! See `flo::fuzz_checks::kv_ops`: a run of KV operations with restarts and crashes on the
//! simulated disk against a `BTreeMap` model. The check and its byte decoding of operations
//! are in the library so `cargo test` replays the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flo::fuzz_checks::kv_ops::check(data));
