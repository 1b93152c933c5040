//! See `flo::fuzz_checks::entry_bodies`: the check is in the library so `cargo test` replays the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flo::fuzz_checks::entry_bodies::check(data));
