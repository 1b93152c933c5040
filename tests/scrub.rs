//! The scrub against the real binary: a pass over every sealed segment and snapshot runs once
//! the shards have recovered, finds a flipped bit in a sealed segment that recovery does not
//! read (the snapshot covers it), counts it in `flo_scrub_problems_total`, and the server
//! keeps serving.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use common::{poll, Server};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn server() -> Server {
    Server::builder()
        .shards(1)
        .log_config("segment_bytes = 1048576\nbatch_max_bytes = 65536\nsnapshot_bytes = 0\ncompact_live_percent = 0\nscrub_interval_s = 3600\n")
        .config("[limits]\nmax_value_bytes = 16384\n")
        .start()
}

fn metric(s: &Server, name: &str) -> f64 {
    let text = common::try_request(s.metrics, "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_for_pass(s: &Server) {
    poll("a scrub pass", Duration::from_secs(30), || {
        (metric(s, "flo_scrub_passes_total") >= 1.0).then_some(())
    });
}

#[test]
fn the_scrub_finds_rot_recovery_does_not_read_and_the_server_keeps_serving() {
    let mut s = server();
    wait_for_pass(&s);
    assert_eq!(
        metric(&s, "flo_scrub_problems_total"),
        0.0,
        "a fresh data directory is sound"
    );
    // About 3 MiB of values: several sealed 1 MiB segments.
    for i in 0..600 {
        let v = B64.encode(format!("value {i} {}", "v".repeat(5000)));
        let r = s.put_json(&format!("/api/v1/kv/app/key-{i:04}"), &format!("{{\"value\":\"{v}\"}}"));
        assert!(r.status == 200 || r.status == 201, "{} {}", r.status, r.text());
    }
    // A clean stop snapshots everything: the next start replays nothing and only checks the
    // sealed segments' seals.
    assert!(s.sigterm().success());
    let dir = s.data_dir.join("shard-000");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("shard dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    // One bit of the first entry of the oldest segment (its header is at 64, its body at 88).
    let oldest = &segments[0];
    let mut bytes = std::fs::read(oldest).expect("read segment");
    bytes[90] ^= 0x10;
    std::fs::write(oldest, &bytes).expect("write segment");

    s.restart();
    wait_for_pass(&s);
    assert_eq!(
        metric(&s, "flo_scrub_problems_total"),
        1.0,
        "the damaged segment is reported"
    );
    // Every sealed segment (all but the active one) was read whole.
    let sealed = (segments.len() - 1) as f64;
    assert!(metric(&s, "flo_scrub_bytes_total") >= sealed * 1048576.0);
    assert_eq!(s.get("/health").status, 200);
    let r = s.get("/api/v1/kv/app/key-0599");
    assert_eq!(r.status, 200, "{}", r.text());
}
