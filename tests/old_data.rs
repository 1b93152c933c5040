//! Data directories written by the previous release open with this one (the issue: old data
//! directories must still open now that per-partition state changed the on-disk format).
//!
//! The fixtures in `tests/data/` were written by the release before per-partition state (commit
//! `ad5e41e`: snapshot container version 1, time-series log entries that name no partition, KV
//! deletes that carry no time), 64 partitions, with the settings of [`LOG_CONFIG`] and
//! [`LIMITS_CONFIG`] (1 MiB segments, the smallest the old release accepts; a snapshot every
//! 32 KiB of log, so each shard has snapshots taken mid-run as well as at the stop):
//!
//! * `v1-datadir/`: two shards; `scripts/make-v1-datadir.sh`'s workload over every primitive in
//!   namespace `app` (created with `POST /namespaces`) and in `default`: KV versions, a delete, CAS,
//!   a 10-year TTL, binary values; a queue with priorities, a dedup key, a 30-day delay, an ack, a
//!   12-hour lease and a dead letter; streams with two consumer groups (one with a record pending)
//!   and a retention; time series written over both shards, late points, a 1100-point series (a
//!   compressed chunk and a head) and a 20-year retention. Then a clean stop (SIGTERM), which
//!   snapshots every shard: the documented upgrade path.
//! * `v1-datadir-tail/`: that directory started again by the old release (with `snapshot_bytes = 0`:
//!   a restarted old server counts the log it recovered as written and would snapshot at once), a
//!   few more writes of every primitive but time series (an old-format KV delete, a namespace, an
//!   enqueue, lease and ack, an append and a group ack), then SIGKILL: old entries after the last
//!   snapshots, which this release replays.
//! * `v1-datadir-crashed/`: one shard, a clean stop, then a time-series write and SIGKILL: old
//!   time-series entries after the last snapshot. This release cannot place them in a partition,
//!   so it refuses to start and tells the operator to start the old release once and stop it
//!   cleanly; it must leave the log and snapshots as they were for that.
//!
//! Segment files are preallocated (1 MiB of zeros past their entries), so each file is stored
//! without its trailing zero bytes, and `tests/data/<name>.manifest` lists every file with the
//! size and SHA-256 the old server left it with; [`unpack`] rebuilds a copy byte for byte in a
//! temporary directory (a server never opens the checked-in directories).
//!
//! Regenerating them is needed only when the workload changes:
//!
//! ```sh
//! git worktree add --detach ../flo-v1 ad5e41e
//! scripts/make-v1-datadir.sh ../flo-v1    # builds the old release there, rewrites tests/data/v1-*
//! git worktree remove ../flo-v1
//! ```
//!
//! The script ends by printing the server-assigned times of its run (enqueue, lease, dead-letter,
//! append and namespace-creation times, bounds of the TTL's start) as the constants below, to
//! paste over them.
//!
//! Every value checked is what the old release answered to the same read; run against the old
//! binary (with the system clock moved 13 hours and 31 days on, too), the two tests that open a
//! fixture pass. Only what depends on when the test runs is checked otherwise: the TTL's
//! `ttl_remaining` against bounds, the 12-hour lease and the 30-day delay as over or not by now
//! (each way exactly), cpu's sample and point counts not at all (its retention may drop the point
//! from 2001 at any moment; queries never show it), and of a stream's `bytes` after this release
//! appended to it only that it grew. The fixtures serve until their TTL runs out, 10 years after
//! they were written (the test says so).
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{now_ms, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The `[log]` keys the fixtures were written with.
const LOG_CONFIG: &str = "segment_bytes = 1048576\nbatch_max_bytes = 32768\nsnapshot_bytes = 32768\n";
/// The other keys they were written with (`max_value_bytes` must leave room in a batch).
const LIMITS_CONFIG: &str = "[limits]\nmax_value_bytes = 16384\n";
/// The segment size of the fixtures: a stored segment is padded back to it.
const SEGMENT_BYTES: u64 = 1 << 20;

// Server-assigned times of the run that wrote the fixtures (printed by the script).
/// `default` is listed with the data directory's creation time (its `TOPOLOGY`); the old release
/// listed a record of its own, written a millisecond later (1796695017566).
const DEFAULT_CREATED_AT_MS: u64 = 1796695017565;
const APP_CREATED_AT_MS: u64 = 1796695017648;
const TTL_PUT_NOT_BEFORE_MS: u64 = 1796695019925;
const TTL_PUT_NOT_AFTER_MS: u64 = 1796695019949;
const JOBS_6_ENQUEUED_NOT_BEFORE_MS: u64 = 1796695020251;
const JOBS_6_ENQUEUED_NOT_AFTER_MS: u64 = 1796695020277;
const JOBS_1_ENQUEUED_AT_MS: u64 = 1796695020116;
const JOBS_2_ENQUEUED_AT_MS: u64 = 1796695020143;
const JOBS_3_ENQUEUED_AT_MS: u64 = 1796695020167;
const JOBS_4_ENQUEUED_AT_MS: u64 = 1796695020198;
const JOBS_2_LEASE_EXPIRES_AT_MS: u64 = 1796738220396;
const JOBS_3_DEAD_AT_MS: u64 = 1796695020448;
const MAIL_1_ENQUEUED_AT_MS: u64 = 1796695020507;
const EVENTS_0_TIMESTAMP_MS: u64 = 1796695020562;
const EVENTS_1_4_TIMESTAMP_MS: u64 = 1796695020609;
const LOG_0_1_TIMESTAMP_MS: u64 = 1796695020743;
// Only in `v1-datadir-tail`.
const LATE_NS_CREATED_AT_MS: u64 = 1796695023030;
const EVENTS_5_TIMESTAMP_MS: u64 = 1796695023117;

/// The workload's `ttl_seconds` (10 years), in ms.
const TTL_MS: u64 = 315_360_000 * 1000;
/// The `delay_ms` of message 6 of `app/jobs` (30 days).
const JOBS_6_DELAY_MS: u64 = 2_592_000_000;
/// The `bytes` of `app/events` in `v1-datadir` (`e0`..`e4`) and in `v1-datadir-tail` (and `e5`),
/// as the old release answered them.
const EVENTS_BYTES: u64 = 152;
const EVENTS_TAIL_BYTES: u64 = 216;

// ---- the fixtures on disk ----

/// One line of a fixture's manifest: a file as the old server left it.
struct FixtureFile {
    path: String,
    size: u64,
    sha256: String,
}

fn data_dir_of(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn manifest(name: &str) -> Vec<FixtureFile> {
    let path = data_dir_of(&format!("{name}.manifest"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "{}: bad line {l:?}", path.display());
            FixtureFile {
                path: f[0].to_string(),
                size: f[1]
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: bad size in {l:?}", path.display())),
                sha256: f[2].to_string(),
            }
        })
        .collect()
}

/// Every regular file under `dir`, as paths relative to it with `/`, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under the root");
                out.push(rel.to_str().expect("UTF-8 file name").replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Rebuilds fixture `name` in `dest` (which must not exist): every file of its manifest, padded
/// back to its size with zeros and checked against its SHA-256. Returns the manifest.
fn unpack(name: &str, dest: &Path) -> Vec<FixtureFile> {
    let src = data_dir_of(name);
    let files = manifest(name);
    let listed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(files_under(&src), listed, "the files of {name} are the manifest's");
    for f in &files {
        let mut bytes = std::fs::read(src.join(&f.path)).unwrap_or_else(|e| panic!("{name}/{}: {e}", f.path));
        assert!(bytes.len() as u64 <= f.size, "{name}/{}: longer than its size", f.path);
        assert!(f.size <= SEGMENT_BYTES, "{name}/{}: larger than a segment", f.path);
        bytes.resize(f.size as usize, 0);
        assert_eq!(
            sha256_hex(&bytes),
            f.sha256,
            "{name}/{}: not what the old server wrote",
            f.path
        );
        let to = dest.join(&f.path);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("create the directory");
        std::fs::write(&to, &bytes).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    }
    files
}

/// A new server on a copy of fixture `name` (two shards, the fixtures' settings).
fn start_on_copy(name: &str) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    unpack(name, &data);
    let s = Server::builder()
        .shards(2)
        .log_config(LOG_CONFIG)
        .config(LIMITS_CONFIG)
        .data_dir(&data)
        .start();
    (tmp, s)
}

// ---- reading and comparing ----

fn b64(s: impl AsRef<[u8]>) -> String {
    B64.encode(s)
}

/// `got` cut down to what `want` names: the keys of `want`'s objects (recursively, and element by
/// element in arrays of equal length), so answers may carry fields this release added, and every
/// field the old release answered is compared exactly.
fn project(got: &Value, want: &Value) -> Value {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => Value::Object(
            w.iter()
                .map(|(k, wv)| (k.clone(), g.get(k).map_or(Value::Null, |gv| project(gv, wv))))
                .collect(),
        ),
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            Value::Array(g.iter().zip(w).map(|(gv, wv)| project(gv, wv)).collect())
        }
        _ => got.clone(),
    }
}

/// Every number as an f64: `2` and `2.0` are the same JSON number (a time-series value may be
/// printed either way); timestamps and counts are exact in an f64.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(v.clone(), Value::Number),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), numbers_as_f64(x))).collect()),
        _ => v.clone(),
    }
}

/// Whether `got` answers all that `want` says (see [`project`]).
fn answers(got: &Value, want: &Value) -> bool {
    numbers_as_f64(&project(got, want)) == numbers_as_f64(want)
}

#[track_caller]
fn assert_json(got: &Value, want: &Value, what: &str) {
    assert_eq!(
        numbers_as_f64(&project(got, want)),
        numbers_as_f64(want),
        "{what}: the whole answer was {got}"
    );
}

#[track_caller]
fn get_ok(s: &Server, path: &str) -> Value {
    let r = s.get(path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

#[track_caller]
fn post_ok(s: &Server, path: &str, body: &Value) -> Value {
    let r = s.post_json(path, &body.to_string());
    assert!(
        r.status == 200 || r.status == 201,
        "POST {path}: {} {}",
        r.status,
        r.text()
    );
    r.json()
}

#[track_caller]
fn put_ok(s: &Server, path: &str, body: &Value) -> Value {
    let r = s.put_json(path, &body.to_string());
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
    r.json()
}

/// A FloQL query's series, sorted by tags and field (the contract orders points, not series).
#[track_caller]
fn query(s: &Server, ns: &str, q: &str) -> Value {
    let mut v = post_ok(s, &format!("/api/v1/ts/{ns}/query"), &json!({ "query": q }));
    let series = v["series"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("{q}: no series array"));
    series.sort_by_key(|x| format!("{}|{}", x["tags"], x["field"]));
    v
}

/// Waits, when `at` is within 5 s of now, until it is 5 s past; then tells whether it has come.
/// (The fixture's 12-hour lease and 30-day delay end at fixed times; a test running right then
/// would see the server's timer at work.)
fn has_come(at_lo: u64, at_hi: u64) -> bool {
    let now = now_ms();
    if now + 5_000 >= at_lo && now < at_hi + 5_000 {
        std::thread::sleep(Duration::from_millis(at_hi + 5_000 - now));
    }
    now_ms() >= at_hi
}

/// Polls `GET path` until its answer (cut down to `want`) is `want`, for at most 10 s (a lease
/// or delay that ran out while the server was down is turned by its timer).
#[track_caller]
fn poll_json(s: &Server, path: &str, want: &Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get_ok(s, path);
        if answers(&got, want) {
            return;
        }
        if Instant::now() > deadline {
            assert_json(&got, want, path);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bulk_value(i: usize, round: usize) -> String {
    let prefix = format!("bulk:{i:03}:r{round}:");
    let letter = (b'a' + (i % 26) as u8) as char;
    let pad = 1000 - prefix.len();
    format!("{prefix}{}", letter.to_string().repeat(pad))
}

/// The 1100 points of `load,host=db-01 v=...`: one per second from 1700000000000, `i / 4`.
fn load_points() -> Vec<Value> {
    (0..1100u64)
        .map(|i| json!([1_700_000_000_000u64 + i * 1000, i as f64 * 0.25]))
        .collect()
}

// ---- what the workload left, and what the test adds ----

/// What the test wrote after opening a fixture with this release, as the server answered it.
struct Upgrade {
    /// `seq` of message `h` enqueued to `app/jobs`, and bounds of its enqueue time.
    h_seq: u64,
    h_enqueued: (u64, u64),
    /// Offset and timestamp of record `n0` appended to `app/events`.
    n0_offset: u64,
    n0_timestamp_ms: u64,
    /// Bounds of the creation time of namespace `after`.
    after_created: (u64, u64),
}

#[track_caller]
fn check_kv(s: &Server, tail: bool, up: Option<&Upgrade>) {
    let kv = |ns: &str, key: &str, version: u64, value: &[u8]| {
        let path = format!("/api/v1/kv/{ns}/{key}");
        let got = get_ok(s, &path);
        let key = key.replace("%2F", "/");
        assert_json(
            &got,
            &json!({ "key": key, "value": b64(value), "version": version, "ttl_remaining": null }),
            &path,
        );
    };
    let missing = |ns: &str, key: &str| {
        let r = s.get(&format!("/api/v1/kv/{ns}/{key}"));
        assert_eq!(r.status, 404, "{ns}/{key} is gone: {}", r.text());
        assert_json(&r.json(), &json!({ "error": "not_found", "key": key }), key);
    };
    match (tail, up.is_some()) {
        (false, false) => kv("default", "greeting", 3, b"hello again"),
        (true, false) => kv("default", "greeting", 4, b"tail"),
        (false, true) => kv("default", "greeting", 4, b"after the upgrade"),
        (true, true) => kv("default", "greeting", 5, b"after the upgrade"),
    }
    missing("default", "gone");
    if up.is_some() {
        missing("default", "counter");
        kv("after", "new:1", 1, b"new");
    } else {
        kv("default", "counter", 2, b"2");
        missing("after", "new:1");
    }
    let bin: Vec<u8> = (0..=255u8).collect();
    kv("default", "bin", 1, &bin);
    kv("default", "dir%2Ffile", 1, b"a slash");
    kv("app", "user:1", 2, b"Ada L.");
    if tail {
        kv("default", "tail:new", 1, b"fresh");
        missing("app", "user:2");
    } else {
        missing("default", "tail:new");
        kv("app", "user:2", 1, b"Grace");
    }

    // The 10-year TTL: expiry at the PUT's time (between the bounds) + 10 years, rounded up.
    let before = now_ms();
    assert!(
        before < TTL_PUT_NOT_BEFORE_MS + TTL_MS,
        "the fixtures' 10-year TTL has run out: time to regenerate them"
    );
    let got = get_ok(s, "/api/v1/kv/default/ttl");
    let after = now_ms();
    assert_json(
        &got,
        &json!({ "key": "ttl", "value": b64("ten years"), "version": 1 }),
        "ttl",
    );
    let remaining = got["ttl_remaining"]
        .as_u64()
        .unwrap_or_else(|| panic!("ttl_remaining: {got}"));
    let lo = (TTL_PUT_NOT_BEFORE_MS + TTL_MS - after).div_ceil(1000);
    let hi = (TTL_PUT_NOT_AFTER_MS + TTL_MS - before).div_ceil(1000);
    assert!(
        (lo..=hi).contains(&remaining),
        "ttl_remaining {remaining} not in {lo}..={hi}"
    );

    // Listings: default in byte order; app's 60 bulk keys at their second version.
    let got = get_ok(s, "/api/v1/kv/default?limit=1000&values=true");
    let mut keys = vec![json!({ "key": "bin", "version": 1, "size": 256, "value": b64(&bin) })];
    if up.is_none() {
        keys.push(json!({ "key": "counter", "version": 2, "size": 1, "value": b64("2") }));
    }
    keys.push(json!({ "key": "dir/file", "version": 1, "size": 7, "value": b64("a slash") }));
    keys.push(match (tail, up.is_some()) {
        (false, false) => json!({ "key": "greeting", "version": 3, "size": 11, "value": b64("hello again") }),
        (true, false) => json!({ "key": "greeting", "version": 4, "size": 4, "value": b64("tail") }),
        (false, true) => json!({ "key": "greeting", "version": 4, "size": 17, "value": b64("after the upgrade") }),
        (true, true) => json!({ "key": "greeting", "version": 5, "size": 17, "value": b64("after the upgrade") }),
    });
    if tail {
        keys.push(json!({ "key": "tail:new", "version": 1, "size": 5, "value": b64("fresh") }));
    }
    keys.push(json!({ "key": "ttl", "version": 1, "size": 9, "value": b64("ten years") }));
    let n = keys.len();
    assert_json(
        &got,
        &json!({ "keys": keys, "count": n, "has_more": false, "next_after": null }),
        "default's keys",
    );
    let got = get_ok(s, "/api/v1/kv/app?prefix=bulk:&limit=1000&values=true");
    let bulk: Vec<Value> = (0..60)
        .map(|i| {
            json!({ "key": format!("bulk:{i:03}"), "version": 2, "size": 1000, "ttl_remaining": null,
                    "value": b64(bulk_value(i, 2)) })
        })
        .collect();
    assert_json(
        &got,
        &json!({ "keys": bulk, "count": 60, "has_more": false, "next_after": null }),
        "app's bulk keys",
    );
}

#[track_caller]
fn check_queues(s: &Server, tail: bool, up: Option<&Upgrade>) {
    let lease_expired = has_come(JOBS_2_LEASE_EXPIRES_AT_MS, JOBS_2_LEASE_EXPIRES_AT_MS);
    let matured = has_come(
        JOBS_6_ENQUEUED_NOT_BEFORE_MS + JOBS_6_DELAY_MS,
        JOBS_6_ENQUEUED_NOT_AFTER_MS + JOBS_6_DELAY_MS,
    );
    let (t, u) = (u64::from(tail), u64::from(up.is_some()));
    let (expired, ready_later) = (u64::from(lease_expired), u64::from(matured));
    poll_json(
        s,
        "/api/v1/queue/app/jobs/stats",
        &json!({
            "name": "jobs",
            "ready_count": 2 + expired + ready_later + u,
            "leased_count": 1 - expired,
            "delayed_count": 1 - ready_later,
            "dlq_count": 1,
            "total_enqueued": 6 + t + u,
            "total_acked": 1 + t,
        }),
    );
    // Ready messages in delivery order: priority, then seq.
    let got = get_ok(s, "/api/v1/queue/app/jobs/peek?count=100");
    let msgs = got["messages"].as_array().unwrap_or_else(|| panic!("peek: {got}"));
    let mut want = Vec::new();
    if let Some(up) = up {
        want.push((up.h_seq, "h", 0, 0, up.h_enqueued));
    }
    if lease_expired {
        want.push((2, "b", 1, 1, (JOBS_2_ENQUEUED_AT_MS, JOBS_2_ENQUEUED_AT_MS)));
    }
    if matured {
        want.push((
            6,
            "later",
            3,
            0,
            (JOBS_6_ENQUEUED_NOT_BEFORE_MS, JOBS_6_ENQUEUED_NOT_AFTER_MS),
        ));
    }
    want.push((1, "a", 5, 0, (JOBS_1_ENQUEUED_AT_MS, JOBS_1_ENQUEUED_AT_MS)));
    want.push((4, "d", 9, 0, (JOBS_4_ENQUEUED_AT_MS, JOBS_4_ENQUEUED_AT_MS)));
    assert_eq!(msgs.len(), want.len(), "ready messages: {got}");
    for (m, (seq, payload, priority, deliveries, (lo, hi))) in msgs.iter().zip(want) {
        assert_json(
            m,
            &json!({ "seq": seq, "payload": b64(payload), "priority": priority, "delivery_count": deliveries }),
            "a ready message",
        );
        let at = m["enqueued_at_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("enqueued_at_ms: {m}"));
        assert!(
            (lo..=hi).contains(&at),
            "message {seq} enqueued at {at}, not in {lo}..={hi}"
        );
    }
    let got = get_ok(s, "/api/v1/queue/app/jobs/dlq");
    assert_json(
        &got,
        &json!({ "messages": [{ "seq": 3, "payload": b64("c"), "priority": 1, "delivery_count": 1,
                                "enqueued_at_ms": JOBS_3_ENQUEUED_AT_MS, "dead_at_ms": JOBS_3_DEAD_AT_MS }] }),
        "app/jobs's dead letters",
    );

    let got = get_ok(s, "/api/v1/queue/default/mail/stats");
    assert_json(
        &got,
        &json!({ "name": "mail", "ready_count": 1, "leased_count": 0, "delayed_count": 0, "dlq_count": 0,
                 "total_enqueued": 1, "total_acked": 0 }),
        "default/mail",
    );
    let got = get_ok(s, "/api/v1/queue/default/mail/peek");
    assert_json(
        &got,
        &json!({ "messages": [{ "seq": 1, "payload": b64("hi"), "priority": 0, "delivery_count": 0,
                                "enqueued_at_ms": MAIL_1_ENQUEUED_AT_MS }] }),
        "default/mail's messages",
    );
}

/// The records of `app/events`: `e0`..`e4`, `e5` in the tail fixture, then `n0` after the upgrade.
fn events(tail: bool, up: Option<&Upgrade>) -> Vec<Value> {
    let mut out = vec![json!({ "offset": 0, "timestamp_ms": EVENTS_0_TIMESTAMP_MS, "payload": b64("e0") })];
    for o in 1..=4u64 {
        out.push(json!({ "offset": o, "timestamp_ms": EVENTS_1_4_TIMESTAMP_MS, "payload": b64(format!("e{o}")) }));
    }
    if tail {
        out.push(json!({ "offset": 5, "timestamp_ms": EVENTS_5_TIMESTAMP_MS, "payload": b64("e5") }));
    }
    if let Some(up) = up {
        out.push(json!({ "offset": up.n0_offset, "timestamp_ms": up.n0_timestamp_ms, "payload": b64("n0") }));
    }
    out
}

#[track_caller]
fn check_streams(s: &Server, tail: bool, up: Option<&Upgrade>) {
    let records = events(tail, up);
    let end = records.len() as u64;
    let got = get_ok(s, "/api/v1/stream/app/events?offset=0&count=100");
    assert_json(
        &got,
        &json!({ "records": records, "next_offset": end, "first_offset": 0 }),
        "app/events",
    );
    let got = get_ok(s, "/api/v1/stream/app/events/info");
    assert_json(
        &got,
        &json!({
            "name": "events", "first_offset": 0, "last_offset": end - 1, "record_count": end,
            "consumer_groups": ["late", "workers"],
            "retention": { "max_age_ms": null, "max_bytes": null, "max_records": 1000 },
        }),
        "app/events's info",
    );
    // The old release's count of the fixture's records; what this release adds for a record it
    // appends is its own business.
    let old_bytes = if tail { EVENTS_TAIL_BYTES } else { EVENTS_BYTES };
    let bytes = got["bytes"].as_u64().unwrap_or_else(|| panic!("bytes: {got}"));
    if up.is_none() {
        assert_eq!(bytes, old_bytes, "app/events's bytes: {got}");
    } else {
        assert!(bytes > old_bytes, "app/events's bytes grew with n0: {got}");
    }
    // workers: read 0..=2 by w1 and acked 0 and 1 (and 2 in the tail fixture); after the upgrade,
    // w2 read the rest and acked it.
    let (cursor, pending, consumers) = match (tail, up.is_some()) {
        (false, false) => (3, 1, json!(["w1"])),
        (true, false) => (3, 0, json!(["w1"])),
        (_, true) => (end, 0, json!(["w1", "w2"])),
    };
    let got = get_ok(s, "/api/v1/stream/app/events/groups/workers");
    assert_json(
        &got,
        &json!({ "name": "workers", "cursor": cursor, "pending_count": pending, "consumers": consumers,
                 "lag": end - cursor, "ack_timeout_ms": 1000, "max_deliveries": 7,
                 "dead_letter_count": 0, "dead_letters": [] }),
        "group workers",
    );
    let got = get_ok(s, "/api/v1/stream/app/events/groups/late");
    assert_json(
        &got,
        &json!({ "name": "late", "cursor": 5, "pending_count": 0, "consumers": [], "lag": end - 5,
                 "ack_timeout_ms": 30000, "max_deliveries": 5, "dead_letter_count": 0, "dead_letters": [] }),
        "group late",
    );

    let got = get_ok(s, "/api/v1/stream/default/log?offset=0&count=100");
    assert_json(
        &got,
        &json!({
            "records": [
                { "offset": 0, "timestamp_ms": LOG_0_1_TIMESTAMP_MS, "payload": b64("l0") },
                { "offset": 1, "timestamp_ms": LOG_0_1_TIMESTAMP_MS, "payload": b64("l1") },
            ],
            "next_offset": 2, "first_offset": 0,
        }),
        "default/log",
    );
    let got = get_ok(s, "/api/v1/stream/default/log/info");
    assert_json(
        &got,
        &json!({ "name": "log", "first_offset": 0, "last_offset": 1, "record_count": 2, "consumer_groups": [] }),
        "default/log's info",
    );
}

#[track_caller]
fn check_ts(s: &Server, up: Option<&Upgrade>) {
    // cpu's point from 2001 is past its 20-year retention: never shown.
    let mut web01 = vec![
        json!([1_699_999_940_000u64, 9.5]),
        json!([1_700_000_000_000u64, 10.5]),
        json!([1_700_000_060_000u64, 11.5]),
    ];
    let mut web02 = vec![json!([1_700_000_000_000u64, 20.25])];
    if up.is_some() {
        web01.push(json!([1_700_000_120_000u64, 12.5]));
        web02.push(json!([1_700_000_120_000u64, 21.25]));
    }
    let got = query(s, "app", "cpu[999999000000..1700001000000]");
    assert_json(
        &got,
        &json!({ "series": [
            { "measurement": "cpu", "field": "usage", "tags": { "host": "web-01" }, "points": web01 },
            { "measurement": "cpu", "field": "usage", "tags": { "host": "web-02" }, "points": web02 },
        ] }),
        "cpu",
    );
    let got = query(s, "app", "mem[999999000000..1700001000000]");
    assert_json(
        &got,
        &json!({ "series": [
            { "measurement": "mem", "field": "total", "tags": { "host": "web-03" },
              "points": [[1_000_000_000_000u64, 2.0], [1_700_000_000_000u64, 8192.0]] },
            { "measurement": "mem", "field": "used", "tags": { "host": "web-03" },
              "points": [[1_000_000_000_000u64, 1.0], [1_700_000_000_000u64, 4096.0]] },
        ] }),
        "mem",
    );
    let got = query(s, "app", "load{host=db-01}[1699999000000..1700002000000]");
    assert_json(
        &got,
        &json!({ "series": [{ "measurement": "load", "field": "v", "tags": { "host": "db-01" },
                              "points": load_points() }] }),
        "load, raw",
    );
    for (agg, v) in [("count", 1100.0), ("sum", 151_112.5), ("max", 274.75), ("first", 0.0)] {
        let q = format!("load[1699999000000..1700002000000] | {agg}()");
        let got = query(s, "app", &q);
        assert_json(
            &got,
            &json!({ "series": [{ "measurement": "load", "field": "v", "tags": { "host": "db-01" },
                                  "points": [[1_699_999_000_000u64, v]] }] }),
            &q,
        );
    }
    let got = query(s, "default", "temp[999999000000..1700001000000]");
    assert_json(
        &got,
        &json!({ "series": [{ "measurement": "temp", "field": "celsius", "tags": { "room": "lab" },
                              "points": [[1_700_000_000_000u64, 21.5]] }] }),
        "temp",
    );
    // cpu's samples are left out: its retention may drop the point from 2001 any time.
    let cpu_samples_left_out = json!({ "name": "cpu", "series_count": 2, "fields": ["usage"] });
    let got = get_ok(s, "/api/v1/ts/app");
    assert_json(
        &got,
        &json!({ "measurements": [
            cpu_samples_left_out,
            { "name": "load", "series_count": 1, "fields": ["v"], "samples": 1100 },
            { "name": "mem", "series_count": 2, "fields": ["total", "used"], "samples": 4 },
        ] }),
        "app's measurements",
    );
    let got = get_ok(s, "/api/v1/ts/app/cpu/series");
    assert_json(
        &got,
        &json!({ "count": 2, "series": [
            { "measurement": "cpu", "field": "usage", "tags": { "host": "web-01" } },
            { "measurement": "cpu", "field": "usage", "tags": { "host": "web-02" } },
        ] }),
        "cpu's series",
    );
}

#[track_caller]
fn check_namespaces(s: &Server, tail: bool, up: Option<&Upgrade>) {
    let got = get_ok(s, "/api/v1/namespaces");
    let (t, u) = (u64::from(tail), u64::from(up.is_some()));
    // In name order.
    let mut want = Vec::new();
    if up.is_some() {
        want.push(json!({ "name": "after", "kv_keys": 1, "queues": 0, "streams": 0, "measurements": 0 }));
    }
    want.push(
        json!({ "name": "app", "created_at_ms": APP_CREATED_AT_MS, "kv_keys": 62 - t, "queues": 1,
                      "streams": 1, "measurements": 3 }),
    );
    want.push(
        json!({ "name": "default", "created_at_ms": DEFAULT_CREATED_AT_MS, "kv_keys": 5 + t - u,
                      "queues": 1, "streams": 1, "measurements": 1 }),
    );
    if tail {
        want.push(
            json!({ "name": "late-ns", "created_at_ms": LATE_NS_CREATED_AT_MS, "kv_keys": 0,
                          "queues": 0, "streams": 0, "measurements": 0 }),
        );
    }
    assert_json(&got, &json!({ "namespaces": want }), "namespaces");
    if let Some(up) = up {
        let after = got["namespaces"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == "after"))
            .unwrap_or_else(|| panic!("no namespace after: {got}"));
        let at = after["created_at_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("created_at_ms: {after}"));
        let (lo, hi) = up.after_created;
        assert!((lo..=hi).contains(&at), "after created at {at}, not in {lo}..={hi}");
    }
}

/// Everything the fixture (`tail`: the tail fixture) holds, and what the test wrote after it.
#[track_caller]
fn check(s: &Server, tail: bool, up: Option<&Upgrade>) {
    check_namespaces(s, tail, up);
    check_kv(s, tail, up);
    check_queues(s, tail, up);
    check_streams(s, tail, up);
    check_ts(s, up);
}

/// Writes to every primitive with this release, checking its answers.
fn upgrade_writes(s: &Server, tail: bool) -> Upgrade {
    let greeting_version = if tail { 5 } else { 4 };
    let got = put_ok(
        s,
        "/api/v1/kv/default/greeting",
        &json!({ "value": b64("after the upgrade") }),
    );
    assert_json(
        &got,
        &json!({ "key": "greeting", "version": greeting_version }),
        "greeting",
    );
    let r = s.delete("/api/v1/kv/default/counter");
    assert_eq!(r.status, 200, "delete counter: {}", r.text());
    assert_json(
        &r.json(),
        &json!({ "key": "counter", "deleted": true, "version": 3 }),
        "delete counter",
    );

    let before = now_ms();
    let r = s.post_json("/api/v1/namespaces", &json!({ "name": "after" }).to_string());
    let after_created = (before, now_ms());
    assert_eq!(r.status, 201, "create namespace after: {}", r.text());
    // A new key in a new namespace: in a namespace with deletes, a new key may start after a
    // swept tombstone's version (the old release sweeps by timing), or not (this one).
    let got = put_ok(s, "/api/v1/kv/after/new:1", &json!({ "value": b64("new") }));
    assert_json(&got, &json!({ "key": "new:1", "version": 1 }), "new:1");

    let before = now_ms();
    let got = post_ok(
        s,
        "/api/v1/queue/app/jobs/enqueue",
        &json!({ "payload": b64("h"), "priority": 0 }),
    );
    let h_enqueued = (before, now_ms());
    let h_seq = if tail { 8 } else { 7 };
    assert_json(&got, &json!({ "seq": h_seq, "deduplicated": false }), "enqueue h");

    let got = post_ok(s, "/api/v1/stream/app/events/append", &json!({ "payload": b64("n0") }));
    let n0_offset = if tail { 6 } else { 5 };
    assert_eq!(got["offset"], json!(n0_offset), "append n0: {got}");
    let n0_timestamp_ms = got["timestamp_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("append n0: {got}"));
    let up = Upgrade {
        h_seq,
        h_enqueued,
        n0_offset,
        n0_timestamp_ms,
        after_created,
    };
    // Group workers, read by a new consumer: the record w1 left pending (its 1 s ack timeout long
    // over) comes again first, then those never read.
    let all = events(tail, Some(&up));
    let mut want: Vec<Value> = Vec::new();
    let first_unread = 3;
    if !tail {
        let mut r = all[2].clone();
        r["delivery_count"] = json!(2);
        want.push(r);
    }
    for r in &all[first_unread..] {
        let mut r = r.clone();
        r["delivery_count"] = json!(1);
        want.push(r);
    }
    let got = post_ok(
        s,
        "/api/v1/stream/app/events/groups/workers/read",
        &json!({ "consumer": "w2", "count": 100 }),
    );
    assert_json(&got, &json!({ "records": want }), "group workers read by w2");
    let offsets: Vec<Value> = want.iter().map(|r| r["offset"].clone()).collect();
    let n = offsets.len();
    let got = post_ok(
        s,
        "/api/v1/stream/app/events/groups/workers/ack",
        &json!({ "offsets": offsets }),
    );
    assert_json(&got, &json!({ "acked": n }), "group workers ack");

    // cpu on both shards: one write, atomic across them.
    assert_ne!(
        common::spec_ts_owner_shard("cpu", &[("host", "web-01")], 64, 2),
        common::spec_ts_owner_shard("cpu", &[("host", "web-02")], 64, 2),
        "the series of the write are on both shards"
    );
    let r = s.request(
        "POST",
        "/api/v1/ts/app/write",
        &[("Content-Type", "text/plain")],
        b"cpu,host=web-01 usage=12.5 1700000120000\ncpu,host=web-02 usage=21.25 1700000120000\n",
    );
    assert_eq!(r.status, 200, "ts write: {}", r.text());
    assert_json(
        &r.json(),
        &json!({ "points_written": 2, "fields_dropped": 0 }),
        "ts write",
    );
    up
}

/// Opens a copy of fixture `name` with this release, checks it, writes, and checks again across
/// a SIGKILL and a clean stop.
fn opens_and_keeps(name: &str, tail: bool) {
    let (_tmp, mut s) = start_on_copy(name);
    check(&s, tail, None);
    let up = upgrade_writes(&s, tail);
    check(&s, tail, Some(&up));
    s.sigkill();
    s.restart();
    check(&s, tail, Some(&up));
    let status = s.sigterm();
    assert!(status.success(), "a clean stop exits 0: {status}");
    s.restart();
    check(&s, tail, Some(&up));
}

#[test]
fn a_cleanly_stopped_v1_data_directory_opens_with_everything_in_it() {
    opens_and_keeps("v1-datadir", false);
}

#[test]
fn a_v1_data_directory_with_old_entries_after_its_snapshots_opens_with_everything_in_it() {
    opens_and_keeps("v1-datadir-tail", true);
}

#[test]
fn a_v1_data_directory_with_time_series_entries_after_its_last_snapshot_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let files = unpack("v1-datadir-crashed", &data);
    let config = tmp.path().join("flo.toml");
    std::fs::write(&config, format!("{LIMITS_CONFIG}\n[log]\n{LOG_CONFIG}")).expect("write the config");
    let api = common::free_port();
    let mut child = Command::new(common::flo_bin())
        .args(["server", "start", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--bind",
            "127.0.0.1",
            "--shards",
            "1",
            "--dashboard-port",
            &api.to_string(),
        ])
        .args(["--metrics-port", &common::free_port().to_string()])
        .env_remove("FLO_AUTH_TOKENS")
        .env("FLO_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flo");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stderr.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        let healthy = common::try_request(
            std::net::SocketAddr::from(([127, 0, 0, 1], api)),
            "GET",
            "/health",
            &[],
            b"",
        )
        .is_ok_and(|r| r.status == 200);
        if healthy || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started on the directory (healthy: {healthy}) instead of refusing it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = reader.join().expect("the stderr reader");
    assert_eq!(status.code(), Some(1), "a refused start exits 1; stderr: {err}");
    for words in [
        "written by a flo older than per-partition state",
        "start that version once and stop it cleanly",
        "then start this one",
    ] {
        assert!(err.contains(words), "stderr says {words:?}: {err}");
    }
    // The old release must find its log and snapshots as it left them.
    for f in files
        .iter()
        .filter(|f| f.path.ends_with(".log") || f.path.ends_with(".snap"))
    {
        let bytes = std::fs::read(data.join(&f.path)).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        assert_eq!(sha256_hex(&bytes), f.sha256, "{} is unchanged", f.path);
    }
    let kept: Vec<String> = files_under(&data)
        .into_iter()
        .filter(|p| p.ends_with(".log") || p.ends_with(".snap"))
        .collect();
    let fixture: Vec<String> = files
        .iter()
        .filter(|f| f.path.ends_with(".log") || f.path.ends_with(".snap"))
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(kept, fixture, "no segment or snapshot added or removed");
}
