//! Start-up as a service manager sees it. `flo server start` checks its environment first and
//! says precisely what is wrong, exiting 1 before it touches anything: here a data directory
//! that cannot be created (its path runs through a regular file, which fails for root too) and,
//! where a small file system can be mounted, a fresh data directory without room for the log's
//! first segments. Under systemd (`NOTIFY_SOCKET`), it reports `READY=1` once it serves and
//! `STOPPING=1` at SIGTERM.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use common::loopfs::LoopFs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `flo server start` with `args` in an empty working directory (so no `flo.toml` is
/// picked up); expects it to exit by itself; returns its exit code and stderr.
fn start_expecting_exit(args: &[&str]) -> (Option<i32>, String) {
    let cwd = tempfile::tempdir().expect("tempdir");
    let api = common::free_port().to_string();
    let metrics = common::free_port().to_string();
    let mut child = Command::new(common::flo_bin())
        .args(["server", "start", "--dashboard-port", &api, "--metrics-port", &metrics])
        .args(args)
        .current_dir(cwd.path())
        .env_remove("FLO_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flo");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flo server start did not exit within 30 s; the check let it start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err)
}

#[test]
fn a_data_dir_under_a_regular_file_is_refused_with_its_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let data = file.join("data");
    let (code, err) = start_expecting_exit(&["--data-dir", data.to_str().expect("utf-8 path")]);
    assert_eq!(code, Some(1), "{err}");
    let want = format!("{} is a file, not a directory", file.display());
    assert!(err.contains(&want), "stderr should say {want:?}: {err}");
    assert!(err.contains("data_dir"), "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), b"x", "the file is left alone");
}

#[test]
fn a_fresh_data_dir_without_room_for_the_log_is_refused() {
    let fs = match LoopFs::mount(16) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipping: cannot mount a loop file system here ({e})");
            return;
        }
    };
    let data = fs.mnt.join("data");
    // 2 shards × 2 segments of 64 MiB do not fit in 16 MiB.
    let (code, err) = start_expecting_exit(&["--data-dir", data.to_str().expect("utf-8 path"), "--shards", "2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("free on its file system"), "{err}");
    assert!(err.contains("needs 256.0 MiB"), "{err}");
    assert!(!Path::new(&data).join("TOPOLOGY").exists(), "nothing was written");
}

#[test]
fn systemd_is_told_when_the_server_is_ready_and_when_it_stops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let rx = UnixDatagram::bind(&path).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut s = common::Server::builder()
        .env("NOTIFY_SOCKET", path.to_str().expect("utf-8 path"))
        .start();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY=1 within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    assert_eq!(s.get("/health").status, 200, "ready means serving");
    let status = s.sigterm();
    assert!(status.success(), "{status:?}");
    let n = rx.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn digest_refuses_a_directory_that_is_not_a_data_directory_and_names_its_partitions_otherwise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(common::flo_bin())
        .args(["server", "digest", "--data-dir"])
        .arg(tmp.path())
        .env("FLO_LOG", "warn")
        .output()
        .expect("run flo server digest");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a flo data directory"), "{err}");
    assert!(!tmp.path().join("TOPOLOGY").exists(), "nothing written");

    // A stopped server's directory: one line per partition, the state of each.
    let mut s = common::Server::builder().shards(2).start();
    assert_eq!(s.put_json("/api/v1/kv/app/k", r#"{"value":"eA=="}"#).status, 200);
    assert!(s.sigterm().success());
    let out = Command::new(common::flo_bin())
        .args(["server", "digest", "--shards", "2", "--data-dir"])
        .arg(&s.data_dir)
        .arg("--config")
        .arg(&s.config_path)
        .env("FLO_LOG", "warn")
        .output()
        .expect("run flo server digest");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 64, "every partition");
    let mut sizes: Vec<u64> = lines.iter().map(|l| l["bytes"].as_u64().expect("bytes")).collect();
    sizes.sort_unstable();
    assert!(sizes[63] > sizes[0], "the key's partition holds more than an empty one");
    assert!(lines
        .iter()
        .all(|l| l["sha256"].as_str().is_some_and(|h| h.len() == 64)));
}
