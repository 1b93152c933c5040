//! A full disk, for real: the data directory on a small ext4 file system (a loop device). Writes
//! that need a new log segment answer 507 `insufficient_storage` and change nothing, reads keep
//! working, writes resume by themselves once space is freed, and every acknowledged write
//! survives a SIGKILL. Skips (saying why) where loop devices cannot be mounted.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use common::loopfs::LoopFs;
use common::{poll, Server};
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Fills the file system with one file until it is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0xAAu8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
    path
}

fn put(s: &Server, key: &str, value: &str) -> common::Response {
    s.put_json(
        &format!("/api/v1/kv/app/{key}"),
        &json!({ "value": B64.encode(value) }).to_string(),
    )
}

#[test]
fn a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers() {
    let fs = match LoopFs::mount(40) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers: cannot mount a loop file system here ({why})");
            return;
        }
    };
    let data = fs.mnt.join("data");
    let mut s = Server::builder()
        .shards(2)
        .data_dir(&data)
        .log_config("segment_bytes = 1048576\nbatch_max_bytes = 262144\nsnapshot_bytes = 0\n")
        .config("[limits]\nmax_value_bytes = 65536\n")
        .start();
    // Every shard has its active segment and a spare: then the disk fills up.
    poll("spare segments", Duration::from_secs(10), || {
        let spares = std::fs::read_dir(&data)
            .ok()?
            .filter_map(|d| std::fs::read_dir(d.ok()?.path()).ok())
            .flatten()
            .filter(|f| {
                f.as_ref()
                    .is_ok_and(|f| f.file_name().to_string_lossy().starts_with("spare-"))
            })
            .count();
        (spares == 2).then_some(())
    });
    let ballast = fill(&fs.mnt);

    let value = "v".repeat(8 * 1024);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..4000 {
        let key = format!("k{i:05}");
        let r = put(&s, &key, &value);
        match r.status {
            200 => acked.push(key),
            507 => {
                refused = Some((key, r));
                break;
            }
            other => panic!("PUT {key}: {other} {}", r.text()),
        }
    }
    let (key, r) = refused.expect("the disk filled up and a write was refused");
    let j = r.json();
    assert_eq!(j["error"], "insufficient_storage", "{j}");
    assert!(j["message"].as_str().is_some_and(|m| m.contains("disk is full")), "{j}");
    assert!(
        acked.len() > 100,
        "the segments already allocated were used first ({} writes)",
        acked.len()
    );
    // Nothing of the refused write, reads work, other primitives are refused alike.
    assert_eq!(s.get(&format!("/api/v1/kv/app/{key}")).status, 404);
    let first = s.get(&format!("/api/v1/kv/app/{}", acked[0]));
    assert_eq!(first.status, 200);
    let mut refused_other = false;
    for i in 0..200 {
        let r = s.post_json(
            "/api/v1/stream/app/s/append",
            &json!({ "payload": B64.encode(&value) }).to_string(),
        );
        if r.status == 507 {
            refused_other = true;
            break;
        }
        assert_eq!(r.status, 200, "append {i}: {}", r.text());
    }
    assert!(refused_other, "stream appends are refused too once their shard is full");

    // Space comes back: writes resume without a restart.
    std::fs::remove_file(&ballast).expect("remove ballast");
    poll("writes resume", Duration::from_secs(15), || {
        (put(&s, &key, &value).status == 200).then_some(())
    });
    acked.push(key);
    // Each shard notices on its own (within its 200 ms check): every key gets through.
    for i in 0..50 {
        let key = format!("after{i:03}");
        poll(&format!("writes resume for {key}"), Duration::from_secs(15), || {
            (put(&s, &key, &value).status == 200).then_some(())
        });
        acked.push(key);
    }

    s.sigkill();
    s.restart();
    for key in &acked {
        let r = s.get(&format!("/api/v1/kv/app/{key}"));
        assert_eq!(r.status, 200, "{key} after restart: {}", r.text());
        let got = B64.decode(r.json()["value"].as_str().expect("value")).expect("b64");
        assert_eq!(got, value.as_bytes(), "{key}");
    }
    drop(s);
}
