//! Replays the fuzz targets' checked-in seed corpora (`fuzz/corpus/<target>/`) and named
//! crash regressions (`fuzz/regressions/<target>/`) through the same checks the fuzz targets
//! run (`flo::fuzz_checks`), so `cargo test` catches a regression without a fuzzer. (`kv_ops`
//! needs the simulated disk and is replayed by its own unit test.)

use std::path::{Path, PathBuf};

/// Every file of the target's corpus and regressions, checked; panics naming the first file
/// that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.unwrap().path()));
    }
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", f.display());
        }
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

macro_rules! targets {
    ($($t:ident),*) => {$(
        #[test]
        fn $t() {
            replay(stringify!($t), flo::fuzz_checks::$t::check);
        }
    )*};
}

targets!(
    entry_bodies,
    floql,
    http_chunked,
    http_framing,
    http_head,
    json_bodies,
    line_protocol,
    log_decode,
    snapshot,
    ts_chunk
);
