//! Snapshots and compaction against the real binary: a restart loads the newest snapshot and
//! replays only the log after it (after a clean stop, nothing at all); a damaged snapshot is
//! passed over for an older one; every primitive's state comes back exactly; compaction keeps
//! a log of overwrites bounded and loses nothing across SIGKILL.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::{poll, Server};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Small segments and a snapshot every 64 KiB of log, so a short test makes several.
fn server(compact_percent: u64) -> Server {
    Server::builder()
        .shards(2)
        .log_config(&format!(
            "segment_bytes = 1048576\nbatch_max_bytes = 65536\nsnapshot_bytes = 65536\ncompact_live_percent = {compact_percent}\n"
        ))
        .config("[limits]\nmax_value_bytes = 16384\n")
        .start()
}

fn ok(r: common::Response, what: &str) -> Value {
    assert!(r.status == 200 || r.status == 201, "{what}: {} {}", r.status, r.text());
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).expect("data dir") {
        let shard = shard.expect("entry").path();
        if !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&shard).expect("shard dir") {
            let name = f.expect("entry").file_name().to_string_lossy().into_owned();
            if name.ends_with(suffix) {
                out.push(format!(
                    "{}/{name}",
                    shard.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

fn metric_sum(s: &Server, name: &str) -> f64 {
    let text = common::try_request(s.metrics, "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes something of every primitive; `round` makes each call's data different.
fn write_everything(s: &Server, round: u64) {
    for i in 0..300u64 {
        let v = B64.encode(format!(
            "value {i} of round {round} {}",
            "x".repeat(500 + (i % 50) as usize)
        ));
        ok(
            s.put_json(
                &format!("/api/v1/kv/app/key-{i:04}"),
                &json!({ "value": v }).to_string(),
            ),
            "put",
        );
    }
    for i in (0..300u64).step_by(7) {
        ok(s.delete(&format!("/api/v1/kv/app/key-{i:04}")), "delete");
    }
    for q in ["jobs", "mail"] {
        for i in 0..40u64 {
            let body = json!({ "payload": B64.encode(format!("{q} {round} {i}")), "priority": i % 3 });
            ok(
                s.post_json(&format!("/api/v1/queue/app/{q}/enqueue"), &body.to_string()),
                "enqueue",
            );
        }
        let got = ok(
            s.post_json(
                &format!("/api/v1/queue/app/{q}/dequeue"),
                &json!({ "count": 10, "visibility_timeout_ms": 3_600_000 }).to_string(),
            ),
            "dequeue",
        );
        let seqs: Vec<u64> = got["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .take(4)
            .map(|m| m["seq"].as_u64().expect("seq"))
            .collect();
        ok(
            s.post_json(
                &format!("/api/v1/queue/app/{q}/ack"),
                &json!({ "sequences": seqs }).to_string(),
            ),
            "ack",
        );
    }
    for st in ["events", "audit"] {
        let records: Vec<Value> = (0..60)
            .map(|i| json!({ "payload": B64.encode(format!("{st} {round} {i}")) }))
            .collect();
        ok(
            s.post_json(
                &format!("/api/v1/stream/app/{st}/append"),
                &json!({ "records": records }).to_string(),
            ),
            "append",
        );
        if round == 0 {
            ok(
                s.post_json(
                    &format!("/api/v1/stream/app/{st}/groups/g"),
                    r#"{"start":"earliest","ack_timeout_ms":3600000}"#,
                ),
                "group",
            );
        }
        let read = ok(
            s.post_json(
                &format!("/api/v1/stream/app/{st}/groups/g/read"),
                r#"{"consumer":"w","count":25}"#,
            ),
            "group read",
        );
        let offsets: Vec<u64> = read["records"]
            .as_array()
            .expect("records")
            .iter()
            .take(10)
            .map(|r| r["offset"].as_u64().expect("offset"))
            .collect();
        ok(
            s.post_json(
                &format!("/api/v1/stream/app/{st}/groups/g/ack"),
                &json!({ "offsets": offsets }).to_string(),
            ),
            "group ack",
        );
    }
    let base = 1_700_000_000_000i64 + round as i64 * 600_000;
    let mut lines = String::new();
    for host in 0..20 {
        for k in 0..50i64 {
            lines.push_str(&format!(
                "cpu,host=h{host} usage={}.5 {}\n",
                (host * 7 + k) % 100,
                base + k * 1000
            ));
        }
    }
    let r = s.request(
        "POST",
        "/api/v1/ts/app/write",
        &[("Content-Type", "text/plain")],
        lines.as_bytes(),
    );
    assert_eq!(r.status, 200, "ts write: {}", r.text());
}

/// Everything a client can see of the data written by [`write_everything`].
fn observe(s: &Server) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert(
        "kv".into(),
        ok(s.get("/api/v1/kv/app?prefix=key-&limit=1000&values=true"), "scan"),
    );
    for q in ["jobs", "mail"] {
        out.insert(
            format!("{q} stats"),
            ok(s.get(&format!("/api/v1/queue/app/{q}/stats")), "stats"),
        );
        out.insert(
            format!("{q} peek"),
            ok(s.get(&format!("/api/v1/queue/app/{q}/peek?count=1000")), "peek"),
        );
    }
    for st in ["events", "audit"] {
        out.insert(
            format!("{st} info"),
            ok(s.get(&format!("/api/v1/stream/app/{st}/info")), "info"),
        );
        out.insert(
            format!("{st} records"),
            ok(s.get(&format!("/api/v1/stream/app/{st}?offset=0&count=1000")), "read"),
        );
        out.insert(
            format!("{st} group"),
            ok(s.get(&format!("/api/v1/stream/app/{st}/groups/g")), "group"),
        );
    }
    out.insert(
        "ts".into(),
        ok(
            s.post_json(
                "/api/v1/ts/app/query",
                &json!({ "query": "cpu[0..1800000000000]" }).to_string(),
            ),
            "query",
        ),
    );
    out.insert("ts series".into(), ok(s.get("/api/v1/ts/app/cpu/series"), "series"));
    out.insert("namespaces".into(), json!(common::namespace_names(s)));
    out
}

fn assert_same(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>, when: &str) {
    for (k, v) in before {
        assert_eq!(after.get(k), Some(v), "{when}: {k} differs");
    }
}

#[test]
fn restarts_load_snapshots_and_replay_only_the_log_after_them() {
    let mut s = server(0);
    write_everything(&s, 0);
    poll("a snapshot on every shard", Duration::from_secs(30), || {
        let f = files(&s.data_dir, ".snap");
        (f.iter().any(|n| n.starts_with("shard-000")) && f.iter().any(|n| n.starts_with("shard-001"))).then_some(())
    });
    write_everything(&s, 1);
    let before = observe(&s);
    let entries: f64 = metric_sum(&s, "flo_log_entries_total");

    // SIGKILL: the newest snapshot plus the log after it.
    s.sigkill();
    s.restart();
    assert_same(&before, &observe(&s), "after SIGKILL");
    let replayed = metric_sum(&s, "flo_log_recovered_entries_total");
    // (0 when a snapshot happened to cover the very end.)
    assert!(replayed < entries / 2.0, "replayed {replayed} of {entries} entries");

    // A clean stop writes a snapshot at the log's end: nothing is replayed.
    assert!(s.sigterm().success());
    s.restart();
    assert_same(&before, &observe(&s), "after a clean stop");
    assert_eq!(
        metric_sum(&s, "flo_log_recovered_entries_total"),
        0.0,
        "a clean stop leaves nothing to replay"
    );

    // Damage the newest snapshot of every shard: the one before it (and more log) serves.
    assert!(s.sigterm().success());
    let snaps = files(&s.data_dir, ".snap");
    for shard in ["shard-000", "shard-001"] {
        let newest = snaps.iter().filter(|n| n.starts_with(shard)).max().expect("a snapshot");
        let path = s.data_dir.join(newest);
        let mut bytes = std::fs::read(&path).expect("read snapshot");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&path, bytes).expect("write snapshot");
    }
    s.restart();
    assert_same(&before, &observe(&s), "after damaging the newest snapshots");
    assert!(
        metric_sum(&s, "flo_log_recovered_entries_total") > 0.0,
        "the older snapshot needs the log after it"
    );

    // Writes go on from the restored state, and survive another kill.
    write_everything(&s, 2);
    let later = observe(&s);
    s.sigkill();
    s.restart();
    assert_same(&later, &observe(&s), "after writing on the restored state");
}

/// Acknowledged (version, value) of each key, as the test's writer saw them.
type Acked = BTreeMap<String, (u64, String)>;

fn overwrite(s: &Server, acked: &mut Acked, prefix: &str, keys: u64, rounds: u64, tag: &str) {
    for r in 0..rounds {
        for k in 0..keys {
            let key = format!("{prefix}-{k:03}");
            let value = format!("{tag} {r} {k} {}", "v".repeat(900));
            let resp = s.put_json(
                &format!("/api/v1/kv/app/{key}"),
                &json!({ "value": B64.encode(&value) }).to_string(),
            );
            let v = ok(resp, "put");
            acked.insert(key, (v["version"].as_u64().expect("version"), value));
        }
    }
}

fn check_acked(s: &Server, acked: &Acked, when: &str) {
    for (key, (version, value)) in acked {
        let r = s.get(&format!("/api/v1/kv/app/{key}"));
        assert_eq!(r.status, 200, "{when}: {key}: {}", r.text());
        let j = r.json();
        assert_eq!(j["version"].as_u64(), Some(*version), "{when}: {key} version");
        let got = B64.decode(j["value"].as_str().expect("value")).expect("base64");
        assert_eq!(String::from_utf8_lossy(&got), *value, "{when}: {key} value");
    }
}

fn log_bytes(dir: &Path) -> u64 {
    files(dir, ".log")
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn compaction_bounds_a_log_of_overwrites_and_loses_nothing() {
    let mut s = server(50);
    let mut acked = Acked::new();
    // 40 keys written once: each shard's first segment holds live values among the dead ones,
    // which compaction must copy before it deletes the segment (a segment wholly dead is deleted
    // without copying anything).
    overwrite(&s, &mut acked, "cold", 40, 1, "once");
    // 200 keys of ~1 KiB: ~200 KiB live; 40 rounds write ~8 MiB of puts.
    for round in 0..4 {
        overwrite(&s, &mut acked, "hot", 200, 10, &format!("r{round}"));
        check_acked(&s, &acked, "while compacting");
    }
    let deleted = poll(
        "compaction copies live values and deletes segments",
        Duration::from_secs(30),
        || {
            let d = metric_sum(&s, "flo_compaction_segments_deleted_total");
            let copied = metric_sum(&s, "flo_compaction_copied_bytes_total");
            (d > 0.0 && copied > 0.0).then_some(d)
        },
    );
    // ~8 MiB were written; compaction keeps a few segments per shard.
    let bytes = log_bytes(&s.data_dir);
    assert!(
        bytes <= 12 * 1048576,
        "{bytes} bytes of segments after {deleted} deletions"
    );
    assert!(
        files(&s.data_dir, ".log")
            .iter()
            .all(|f| !f.contains("00000000000000000001.log"))
            || deleted >= 2.0
    );

    // Kills in the middle of writing and compacting lose nothing.
    for round in 0..3 {
        overwrite(&s, &mut acked, "hot", 200, 6, &format!("k{round}"));
        s.sigkill();
        s.restart();
        check_acked(&s, &acked, &format!("after kill {round}"));
    }
    assert!(s.sigterm().success());
    s.restart();
    check_acked(&s, &acked, "after a clean stop");
}

/// A server killed before each process wrote `snapshot_bytes` of log still snapshots: the log
/// its recovery replayed counts toward the next snapshot, so what a start replays stays bounded
/// however often the server crashes.
#[test]
fn log_replayed_after_kills_counts_toward_the_next_snapshot() {
    let mut s = Server::builder()
        .shards(1)
        .log_config(
            "segment_bytes = 1048576\nbatch_max_bytes = 65536\nsnapshot_bytes = 262144\ncompact_live_percent = 0\n",
        )
        .config("[limits]\nmax_value_bytes = 16384\n")
        .start();
    let body = json!({ "value": B64.encode(vec![b'x'; 1024]) }).to_string();
    // Four processes, each writing ~100 KiB (under snapshot_bytes) before it is killed.
    for round in 0..4 {
        for i in 0..100 {
            ok(s.put_json(&format!("/api/v1/kv/default/r{round}-{i}"), &body), "put");
        }
        s.sigkill();
        s.restart();
    }
    poll(
        "a snapshot once the replayed log passes snapshot_bytes",
        Duration::from_secs(10),
        || (metric_sum(&s, "flo_snapshots_total") >= 1.0).then_some(()),
    );
    s.sigkill();
    s.restart();
    let replayed = metric_sum(&s, "flo_log_recovered_entries_total");
    assert!(
        replayed < 400.0,
        "a start after the snapshot replays {replayed} entries of 400"
    );
    for round in 0..4 {
        let r = s.get(&format!("/api/v1/kv/default/r{round}-99"));
        assert_eq!(r.status, 200, "r{round}-99 after the kills: {}", r.text());
    }
}
