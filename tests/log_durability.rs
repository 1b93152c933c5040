//! The log through the real binary: acknowledged writes survive SIGKILL, the data directory's
//! topology and lock are enforced, and corruption stops a start (or is cut with --repair).
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{flo_bin, Server};

fn names(s: &Server) -> BTreeSet<String> {
    common::namespace_names(s).into_iter().collect()
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut s = Server::builder().shards(2).start();
    let mut acked_all = BTreeSet::new();
    let mut requested_all = BTreeSet::new();
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let requested = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for t in 0..8 {
            let (stop, acked, requested, addr) = (stop.clone(), acked.clone(), requested.clone(), s.api);
            threads.push(std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("r{round}-t{t}-{i}");
                    i += 1;
                    requested.lock().unwrap().push(name.clone());
                    let body = format!(r#"{{"name":"{name}"}}"#);
                    match common::try_request(addr, "POST", "/api/v1/namespaces", &[], body.as_bytes()) {
                        Ok(r) if r.status == 201 => acked.lock().unwrap().push(name),
                        Ok(r) => assert!(r.status >= 500 || r.status == 429, "unexpected {}", r.status),
                        Err(_) => break,
                    }
                }
            }));
        }
        // Let some writes be acknowledged, then kill mid-load.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.lock().unwrap().len() < 50 {
            assert!(Instant::now() < deadline, "writes are not being acknowledged");
            std::thread::sleep(Duration::from_millis(5));
        }
        s.sigkill();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        acked_all.extend(acked.lock().unwrap().iter().cloned());
        requested_all.extend(requested.lock().unwrap().iter().cloned());
        s.restart();
        let present = names(&s);
        let lost: Vec<_> = acked_all.difference(&present).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged but lost: {lost:?}");
        let phantom: Vec<_> = present
            .iter()
            .filter(|n| *n != "default" && !requested_all.contains(*n))
            .collect();
        assert!(phantom.is_empty(), "round {round}: never requested: {phantom:?}");
    }
    assert!(acked_all.len() >= 150);
    // Group commit at work: entries per fdatasync above 1 under 8 concurrent writers.
    let text = common::try_request(s.metrics, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    assert!(text.contains("flo_log_entries_total"), "{text}");
}

fn run_to_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(flo_bin())
        .args(["server", "start"])
        .args(args)
        .env("FLO_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run flo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn topology_and_lock_are_enforced() {
    let mut s = Server::builder().shards(2).start();
    let dir = s.data_dir.to_string_lossy().into_owned();
    let api = common::free_port().to_string();
    let metrics = common::free_port().to_string();
    let base = ["--data-dir", &dir, "--dashboard-port", &api, "--metrics-port", &metrics];

    // Locked: the message names the holder's pid.
    let (code, err) = run_to_exit(&[&base[..], &["--shards", "2"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("pid {}", s.pid())), "{err}");

    assert!(s.sigterm().success());
    let topology = std::fs::read_to_string(s.data_dir.join("TOPOLOGY")).unwrap();
    assert!(topology.contains("shards = 2\npartitions = 64\n"), "{topology}");

    // Other counts than the data was placed with: refused, with the counts to use.
    let (code, err) = run_to_exit(&[&base[..], &["--shards", "3"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("2 shards") && err.contains("--shards 2 --partitions 64"),
        "{err}"
    );
    let (code, err) = run_to_exit(&[&base[..], &["--shards", "2", "--partitions", "32"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("64 partitions"), "{err}");

    // A damaged TOPOLOGY is refused too.
    std::fs::write(
        s.data_dir.join("TOPOLOGY"),
        topology.replace("shards = 2", "shards = 4"),
    )
    .unwrap();
    let (code, err) = run_to_exit(&[&base[..], &["--shards", "4"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("damaged"), "{err}");
}

#[test]
fn corruption_refuses_to_start_and_repair_cuts_there() {
    let shards = 2;
    let mut s = Server::builder().shards(shards).start();
    // Names owned by shard 0 and by shard 1, each created in its own batch (one at a time).
    let mut on0 = Vec::new();
    let mut on1 = Vec::new();
    for i in 0.. {
        let name = format!("ns{i}");
        let owner = common::spec_owner_shard(&name, "", 64, shards as u64);
        if owner == 0 && on0.len() < 6 {
            on0.push(name.clone());
        } else if owner == 1 && on1.len() < 3 {
            on1.push(name.clone());
        } else if on0.len() == 6 && on1.len() == 3 {
            break;
        } else {
            continue;
        }
        assert_eq!(
            s.post_json("/api/v1/namespaces", &format!(r#"{{"name":"{name}"}}"#))
                .status,
            201
        );
    }
    assert!(s.sigterm().success());

    // Flip a byte inside the body of shard 0's first entry (offset 64 + 24 + 2).
    let seg = s.data_dir.join("shard-000").join("00000000000000000001.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 26] ^= 0x40;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .write_all(&bytes)
        .unwrap();

    let dir = s.data_dir.to_string_lossy().into_owned();
    let cfg = s.config_path.to_string_lossy().into_owned();
    let (api, metrics) = (common::free_port().to_string(), common::free_port().to_string());
    let args = [
        "--config",
        &cfg,
        "--data-dir",
        &dir,
        "--dashboard-port",
        &api,
        "--metrics-port",
        &metrics,
        "--shards",
        "2",
    ];
    let (code, err) = run_to_exit(&args);
    assert_eq!(code, 1, "corruption must stop the start: {err}");
    assert!(
        err.contains("corrupt") && err.contains("00000000000000000001.log") && err.contains("offset 64"),
        "{err}"
    );

    // --repair cuts shard 0's log at the damaged entry; shard 1 is untouched.
    s.add_arg("--repair");
    s.restart();
    let present = names(&s);
    for n in &on1 {
        assert!(present.contains(n), "{n} on the healthy shard survives");
    }
    for n in &on0 {
        assert!(!present.contains(n), "{n} was at or after the cut");
    }
    // The repaired log takes writes again and keeps them.
    assert_eq!(
        s.post_json("/api/v1/namespaces", &format!(r#"{{"name":"{}"}}"#, on0[0]))
            .status,
        201
    );
    s.sigkill();
    s.restart();
    assert!(names(&s).contains(&on0[0]));
}
