//! Replica determinism over a real server's data directory: copies of it, recovered by
//! `flo server digest` under everything that must not matter — clocks years apart
//! (`FLO_CLOCK_OFFSET_MS`), other `queue.*`, `ts.*` and `kv.*` settings, and an older snapshot
//! to start from — give every partition the same digest (the SHA-256 of its snapshot section).
//!
//! Included with `#[path = "common/replicas.rs"] mod replicas;` next to `mod common;`.

use std::path::Path;
use std::process::Command;

const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a copy's directory");
    for e in std::fs::read_dir(from).expect("read a data directory") {
        let e = e.expect("a directory entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("a file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy a file");
        }
    }
}

/// Removes the newest snapshot of every shard that has an older one; returns how many went.
fn drop_newest_snapshots(data_dir: &Path) -> usize {
    let mut dropped = 0;
    for shard in std::fs::read_dir(data_dir).expect("read a data directory") {
        let shard = shard.expect("a directory entry").path();
        if !shard.is_dir() {
            continue;
        }
        let mut snaps: Vec<String> = std::fs::read_dir(&shard)
            .expect("read a shard directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("snapshot-") && n.ends_with(".snap"))
            .collect();
        snaps.sort();
        if snaps.len() >= 2 {
            std::fs::remove_file(shard.join(snaps.last().expect("two snapshots"))).expect("remove a snapshot");
            dropped += 1;
        }
    }
    dropped
}

/// The configuration `config` with every setting that decides (and must not change what an
/// entry does when applied) set otherwise.
fn other_settings(config: &str) -> String {
    let mut t: toml::Table = config.parse().expect("the server's configuration");
    let mut set = |table: &str, key: &str, v: i64| {
        let section = t
            .entry(table.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        section
            .as_table_mut()
            .expect("a table")
            .insert(key.to_string(), toml::Value::Integer(v));
    };
    set("queue", "dedup_window_ms", 1);
    set("queue", "max_deliveries", 1);
    set("ts", "head_age_ms", 1_000);
    set("kv", "tombstone_retention_ms", 0);
    toml::to_string(&t).expect("a configuration")
}

/// One replica's digests: the `flo server digest` lines, sorted.
fn digest(data_dir: &Path, config: &str, shards: usize, offset_ms: i64) -> Vec<String> {
    let cfg = data_dir.with_extension("toml");
    std::fs::write(&cfg, config).expect("write a configuration");
    let out = Command::new(super::common::flo_bin())
        .args(["server", "digest", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--shards")
        .arg(shards.to_string())
        .env("FLO_CLOCK_OFFSET_MS", offset_ms.to_string())
        .env("FLO_LOG", "warn")
        .output()
        .expect("run flo server digest");
    assert!(
        out.status.success(),
        "flo server digest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// What [`assert_replicas_agree`] compared.
pub struct Agreed {
    /// The digest lines, one per partition.
    pub digests: Vec<String>,
    /// Shards whose replica started from the snapshot before the newest.
    pub older_snapshots: usize,
}

/// Asserts that replicas of the stopped server's data directory `data_dir` (its configuration
/// file `config_path`, `shards` shards) end in the same state.
pub fn assert_replicas_agree(data_dir: &Path, config_path: &Path, shards: usize) -> Agreed {
    let config = std::fs::read_to_string(config_path).expect("read the server's configuration");
    let tmp = tempfile::tempdir().expect("tempdir");
    let replica = |name: &str| {
        let dir = tmp.path().join(name);
        copy_dir(data_dir, &dir);
        dir
    };
    let reference = digest(&replica("reference"), &config, shards, 0);
    assert!(!reference.is_empty(), "no partition digested");
    let sizes: Vec<u64> = reference
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["bytes"].as_u64().expect("bytes")
        })
        .collect();
    assert!(
        sizes.iter().max() > sizes.iter().min(),
        "the workload left some partitions with state and others without: {reference:?}"
    );
    let later = digest(&replica("later"), &other_settings(&config), shards, 10 * YEAR_MS);
    assert_eq!(later, reference, "ten years later, with other settings");
    let older = replica("older");
    let dropped = drop_newest_snapshots(&older);
    let from_older = digest(&older, &config, shards, -YEAR_MS);
    assert_eq!(
        from_older, reference,
        "from the snapshots before the newest ({dropped} dropped), a year earlier"
    );
    Agreed {
        digests: reference,
        older_snapshots: dropped,
    }
}
