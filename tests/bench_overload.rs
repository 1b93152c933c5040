//! The load tool's overload measurements against a real server: unique writes whose
//! acknowledged keys are recorded (`kv-put --run-id --acked-file`) and read back
//! (`kv-verify --keys-file`, found or lost), and the open loop's accounting (`--rate`:
//! requests due, sent, the per-second series, 2xx and rejected answers apart).

mod common;

use std::collections::HashSet;
use std::process::Command;

use base64::Engine as _;
use common::{flo_bin, Server};
use serde_json::Value as Json;

/// Runs `flo bench --host <server> --json ARGS...` and returns its JSON report.
fn bench(server: &Server, args: &[&str]) -> Json {
    let host = server.api.to_string();
    let out = Command::new(flo_bin())
        .args(["bench", "--host", &host, "--json"])
        .args(args)
        .output()
        .expect("run flo bench");
    assert!(
        out.status.success(),
        "flo bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

#[test]
fn acknowledged_unique_writes_are_recorded_and_read_back() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let acked = dir.path().join("acked.txt");
    let acked_arg = acked.to_str().unwrap();
    let put = bench(
        &server,
        &[
            "-w",
            "kv-put",
            "--run-id",
            "r1",
            "--acked-file",
            acked_arg,
            "-n",
            "300",
            "-c",
            "4",
            "-t",
            "1",
            "--value-bytes",
            "40",
            "-d",
            "60s",
        ],
    );
    assert_eq!(put["status"]["200"], 300, "{put}");
    assert_eq!(put["ok_2xx"], 300);
    assert_eq!(put["sent"], 300);

    let text = std::fs::read_to_string(&acked).unwrap();
    let keys: Vec<&str> = text.lines().collect();
    assert_eq!(keys.len(), 300);
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        300,
        "every write has its own key"
    );
    for key in &keys {
        let parts: Vec<&str> = key.split('.').collect();
        assert_eq!(parts.len(), 3, "{key}");
        assert_eq!(parts[0], "r1");
        assert!(parts[1].parse::<usize>().unwrap() < 4, "{key}");
    }
    // The value of each write starts with its key.
    let r = server.get(&format!("/api/v1/kv/bench/{}", keys[17]));
    assert_eq!(r.status, 200);
    let value = base64::engine::general_purpose::STANDARD
        .decode(r.json()["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(value.len(), 40);
    assert!(value.starts_with(keys[17].as_bytes()));

    let verify = bench(
        &server,
        &[
            "-w",
            "kv-verify",
            "--keys-file",
            acked_arg,
            "--value-bytes",
            "40",
            "-c",
            "4",
            "-t",
            "1",
        ],
    );
    assert_eq!(verify["records"], 300, "{verify}");
    assert_eq!(verify["lost"], 0);
    assert_eq!(verify["requests_ok"], 300);

    // A key never written, and one overwritten with another value, are lost.
    server.put_json(&format!("/api/v1/kv/bench/{}", keys[5]), r#"{"value":"eA=="}"#);
    let mut f = std::fs::OpenOptions::new().append(true).open(&acked).unwrap();
    std::io::Write::write_all(&mut f, b"r1.9.9\n").unwrap();
    let verify = bench(
        &server,
        &[
            "-w",
            "kv-verify",
            "--keys-file",
            acked_arg,
            "--value-bytes",
            "40",
            "-c",
            "2",
        ],
    );
    assert_eq!(verify["records"], 299, "{verify}");
    assert_eq!(verify["lost"], 2);
    assert_eq!(verify["status"]["404"], 1);
}

#[test]
fn an_open_loop_reports_what_was_due_sent_and_answered_per_second() {
    let server = Server::start();
    let report = bench(
        &server,
        &[
            "-w", "health", "--rate", "400", "-d", "2s", "-c", "8", "-t", "1", "--series",
        ],
    );
    // 400/s for 2 s: 800 requests due, and a server this idle answers them all.
    assert_eq!(report["offered"], 800, "{report}");
    assert_eq!(report["sent"], 800);
    assert_eq!(report["unsent"], 0);
    assert_eq!(report["ok_2xx"], 800);
    assert_eq!(report["rejected"], 0);
    let series = report["series"].as_array().expect("a series");
    assert_eq!(series.len(), 2, "{report}");
    let sum = |field: &str| series.iter().map(|s| s[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("sent"), 800);
    assert_eq!(sum("ok"), 800);
    for (t, s) in series.iter().enumerate() {
        assert_eq!(s["t"], t as u64);
        assert_eq!(s["sent"], 400, "requests go out on schedule: {s}");
        assert!(s["ok_p99_us"].as_u64().unwrap() > 0);
    }
}

#[test]
fn too_many_connections_are_counted_as_rejections() {
    // One connection allowed: the others of the run are answered 429 and closed.
    let server = Server::builder().config("[http]\nmax_connections = 1\n").start();
    let report = bench(&server, &["-w", "health", "-d", "1s", "-c", "4", "-t", "1"]);
    let rejected = report["rejected"].as_u64().unwrap();
    assert!(rejected > 0, "{report}");
    assert_eq!(report["status"]["429"].as_u64().unwrap(), rejected);
    assert!(report["ok_2xx"].as_u64().unwrap() > 0, "{report}");
    assert!(report["latency_rejected_us"]["max"].as_u64().unwrap() > 0);
    assert!(report["goodput_per_sec"].as_f64().unwrap() > 0.0);
}
