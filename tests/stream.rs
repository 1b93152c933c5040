//! Streams through the real binary: single and batch appends with contiguous per-stream
//! offsets, reads (defaults, clamping below the first retained offset, past the end, count
//! bounds, the ~8 MiB cap per answer, `block_ms` long-polls), info and listings over shards,
//! bad input that appends nothing, 404s; consumer groups (start positions, exactly-once
//! distribution over consumers, redelivery after the ack timeout, dead letters after
//! max_deliveries, ack counting, lag, delete and recreate, long-polls); retention by records,
//! bytes and age (enforced asynchronously, so polled for), explicit trims (also of pending
//! group records); state across SIGKILL and SIGTERM restarts; and a million small records over
//! many sealed segments read back in order. `FLO_STREAM_RECORDS` scales the large test.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{now_ms, Response, Server};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Slack for comparing the server's clock with ours (both read the same wall clock, but an
/// event loop may read it a little before or after it handles our request).
const CLOCK_SLACK_MS: u64 = 100;
/// How long a test waits for something the server does asynchronously (retention, ack
/// timeouts) before failing.
const ASYNC_WAIT: Duration = Duration::from_secs(10);

fn stream_path(ns: &str, st: &str) -> String {
    format!("/api/v1/stream/{ns}/{st}")
}

fn op_path(ns: &str, st: &str, op: &str) -> String {
    format!("/api/v1/stream/{ns}/{st}/{op}")
}

/// `.../groups/:g` when `op` is empty, else `.../groups/:g/:op`.
fn group_path(ns: &str, st: &str, g: &str, op: &str) -> String {
    if op.is_empty() {
        format!("/api/v1/stream/{ns}/{st}/groups/{g}")
    } else {
        format!("/api/v1/stream/{ns}/{st}/groups/{g}/{op}")
    }
}

/// POST that must answer 200; returns the JSON body.
fn post_ok(s: &Server, p: &str, body: &Value) -> Value {
    let r = s.post_json(p, &body.to_string());
    assert_eq!(r.status, 200, "POST {p} {body}: {}", r.text());
    r.json()
}

fn get_ok(s: &Server, p: &str) -> Value {
    let r = s.get(p);
    assert_eq!(r.status, 200, "GET {p}: {}", r.text());
    r.json()
}

fn assert_error(r: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let v = r.json();
    assert_eq!(v["error"], code, "{what}: {v}");
    assert!(v["message"].is_string(), "{what}: no message in {v}");
}

fn assert_bad_request(r: &Response, what: &str) {
    assert_error(r, 400, "bad_request", what);
}

fn assert_not_found(r: &Response, what: &str) {
    assert_error(r, 404, "not_found", what);
}

/// The sorted keys of a JSON object.
fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// Appends one record; checks the answer's shape; returns (offset, timestamp_ms).
fn append(s: &Server, ns: &str, st: &str, payload: &[u8]) -> (u64, u64) {
    let before = now_ms();
    let v = post_ok(
        s,
        &op_path(ns, st, "append"),
        &json!({ "payload": B64.encode(payload) }),
    );
    let after = now_ms();
    assert_eq!(keys(&v), ["offset", "timestamp_ms"], "append answer {v}");
    let ts = u64_of(&v, "timestamp_ms");
    assert!(
        before.saturating_sub(CLOCK_SLACK_MS) <= ts && ts <= after + CLOCK_SLACK_MS,
        "append timestamp_ms {ts} outside [{before}, {after}]"
    );
    (u64_of(&v, "offset"), ts)
}

/// Appends records in one batch; checks the answer's shape; returns (first, last, timestamp).
fn append_batch(s: &Server, ns: &str, st: &str, payloads: &[Vec<u8>]) -> (u64, u64, u64) {
    let records: Vec<Value> = payloads.iter().map(|p| json!({ "payload": B64.encode(p) })).collect();
    let before = now_ms();
    let v = post_ok(s, &op_path(ns, st, "append"), &json!({ "records": records }));
    let after = now_ms();
    assert_eq!(
        keys(&v),
        ["first_offset", "last_offset", "timestamp_ms"],
        "batch append answer {v}"
    );
    let (first, last, ts) = (
        u64_of(&v, "first_offset"),
        u64_of(&v, "last_offset"),
        u64_of(&v, "timestamp_ms"),
    );
    assert_eq!(
        last + 1 - first,
        payloads.len() as u64,
        "batch of {}: {v}",
        payloads.len()
    );
    assert!(
        before.saturating_sub(CLOCK_SLACK_MS) <= ts && ts <= after + CLOCK_SLACK_MS,
        "batch timestamp_ms {ts} outside [{before}, {after}]"
    );
    (first, last, ts)
}

/// Appends `n` records `"{prefix}-{i}"` in batches; asserts they get `from..from + n`;
/// returns the payloads.
fn fill(s: &Server, ns: &str, st: &str, prefix: &str, from: u64, n: u64) -> Vec<Vec<u8>> {
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| format!("{prefix}-{i}").into_bytes()).collect();
    for (k, chunk) in payloads.chunks(500).enumerate() {
        let (first, _, _) = append_batch(s, ns, st, chunk);
        assert_eq!(first, from + 500 * k as u64, "offsets of {ns}/{st} are contiguous");
    }
    payloads
}

/// A record as a read (plain or group) returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    offset: u64,
    timestamp_ms: u64,
    payload: Vec<u8>,
    /// Group reads only.
    delivery_count: Option<u64>,
}

fn recs(v: &Value) -> Vec<Rec> {
    v["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {v}"))
        .iter()
        .map(|r| Rec {
            offset: u64_of(r, "offset"),
            timestamp_ms: u64_of(r, "timestamp_ms"),
            payload: B64
                .decode(r["payload"].as_str().unwrap_or_else(|| panic!("payload in {r}")))
                .unwrap_or_else(|e| panic!("payload of {r} is not base64: {e}")),
            delivery_count: r["delivery_count"].as_u64(),
        })
        .collect()
}

fn offsets(rs: &[Rec]) -> Vec<u64> {
    rs.iter().map(|r| r.offset).collect()
}

/// A plain read with `query` (e.g. `"offset=3&count=2"`); returns the whole answer.
fn read(s: &Server, ns: &str, st: &str, query: &str) -> Value {
    let p = if query.is_empty() {
        stream_path(ns, st)
    } else {
        format!("{}?{query}", stream_path(ns, st))
    };
    let v = get_ok(s, &p);
    assert_eq!(keys(&v), ["first_offset", "next_offset", "records"], "read answer {v}");
    let rs = recs(&v);
    for w in rs.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + 1, "a read's records are contiguous: {v}");
    }
    if let Some(last) = rs.last() {
        assert_eq!(u64_of(&v, "next_offset"), last.offset + 1, "next_offset of {v}");
    }
    v
}

/// Every retained record, from the first, following next_offset.
fn read_all(s: &Server, ns: &str, st: &str) -> Vec<Rec> {
    let mut out: Vec<Rec> = Vec::new();
    let mut next = u64_of(&read(s, ns, st, "count=1"), "first_offset");
    loop {
        let v = read(s, ns, st, &format!("offset={next}&count=1000"));
        let rs = recs(&v);
        if rs.is_empty() {
            return out;
        }
        assert_eq!(rs[0].offset, next, "a read continues at next_offset");
        next = u64_of(&v, "next_offset");
        out.extend(rs);
    }
}

fn info(s: &Server, ns: &str, st: &str) -> Value {
    let v = get_ok(s, &op_path(ns, st, "info"));
    assert_eq!(
        keys(&v),
        [
            "bytes",
            "consumer_groups",
            "first_offset",
            "last_offset",
            "name",
            "record_count",
            "retention"
        ],
        "info {v}"
    );
    assert_eq!(v["name"], st, "info {v}");
    v
}

/// Polls info until `first_offset` is at least `want`; returns that info.
fn wait_first_offset(s: &Server, ns: &str, st: &str, want: u64, what: &str) -> Value {
    let deadline = Instant::now() + ASYNC_WAIT;
    loop {
        let v = info(s, ns, st);
        if u64_of(&v, "first_offset") >= want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: first_offset did not reach {want} within {ASYNC_WAIT:?}; info {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create_group(s: &Server, ns: &str, st: &str, g: &str, body: &Value) -> Value {
    let r = s.post_json(&group_path(ns, st, g, ""), &body.to_string());
    assert_eq!(r.status, 201, "create group {g} {body}: {}", r.text());
    let v = r.json();
    check_group_shape(&v);
    assert_eq!(v["name"], g, "{v}");
    v
}

fn check_group_shape(v: &Value) {
    assert_eq!(
        keys(v),
        [
            "ack_timeout_ms",
            "consumers",
            "cursor",
            "dead_letter_count",
            "dead_letters",
            "lag",
            "max_deliveries",
            "name",
            "pending_count"
        ],
        "group info {v}"
    );
}

fn group_info(s: &Server, ns: &str, st: &str, g: &str) -> Value {
    let v = get_ok(s, &group_path(ns, st, g, ""));
    check_group_shape(&v);
    v
}

/// A group read; returns its records (each with a delivery_count).
fn group_read(s: &Server, ns: &str, st: &str, g: &str, consumer: &str, count: u64) -> Vec<Rec> {
    let body = json!({ "consumer": consumer, "count": count });
    let v = post_ok(s, &group_path(ns, st, g, "read"), &body);
    assert_eq!(keys(&v), ["records"], "group read answer {v}");
    let rs = recs(&v);
    for r in &rs {
        assert!(r.delivery_count.is_some_and(|d| d >= 1), "delivery_count in {v}");
    }
    rs
}

/// Polls group reads until one returns records.
fn group_read_eventually(s: &Server, ns: &str, st: &str, g: &str, consumer: &str, count: u64, what: &str) -> Vec<Rec> {
    common::poll(what, ASYNC_WAIT, || {
        let rs = group_read(s, ns, st, g, consumer, count);
        (!rs.is_empty()).then_some(rs)
    })
}

/// Polls until the group has `n` dead letters; returns its info. Each round reads first (and
/// asserts the read gets nothing, as everything left is past its last delivery), so a server
/// that gives records up when a read finds them timed out gets the chance to.
fn wait_dead_letters(s: &Server, ns: &str, st: &str, g: &str, n: u64) -> Value {
    common::poll(&format!("{g} has {n} dead letters"), ASYNC_WAIT, || {
        let rs = group_read(s, ns, st, g, "reaper", 10);
        assert!(
            rs.is_empty(),
            "a record past max_deliveries was delivered again: {rs:?}"
        );
        let gi = group_info(s, ns, st, g);
        (gi["dead_letter_count"] == n).then_some(gi)
    })
}

fn group_ack(s: &Server, ns: &str, st: &str, g: &str, offs: &[u64]) -> u64 {
    let v = post_ok(s, &group_path(ns, st, g, "ack"), &json!({ "offsets": offs }));
    assert_eq!(keys(&v), ["acked"], "ack answer {v}");
    u64_of(&v, "acked")
}

/// Starts a request on another thread; returns its answer and how long it took.
fn in_background(
    s: &Server,
    method: &'static str,
    p: String,
    body: Option<Value>,
) -> std::thread::JoinHandle<(Response, Duration)> {
    let api = s.api;
    std::thread::spawn(move || {
        let started = Instant::now();
        let b = body.map(|b| b.to_string()).unwrap_or_default();
        let r = common::try_request(api, method, &p, &[("Content-Type", "application/json")], b.as_bytes())
            .expect("background request");
        (r, started.elapsed())
    })
}

// ---------------------------------------------------------------------------------------------
// Appends and reads.

#[test]
fn appends_get_contiguous_offsets_per_stream() {
    let s = Server::start();
    assert_not_found(&s.get(&op_path("default", "events", "info")), "info before any append");

    let (o, t_first) = append(&s, "default", "events", b"first");
    assert_eq!(o, 0, "a stream's offsets start at 0");
    let bin: Vec<u8> = (0..=255).collect();
    let (o, t_bin) = append(&s, "default", "events", &bin);
    assert_eq!(o, 1);
    let (o, t_empty) = append(&s, "default", "events", b"");
    assert_eq!(o, 2, "an empty payload is a record");
    let batch: Vec<Vec<u8>> = vec![b"b0".to_vec(), b"".to_vec(), b"b2".to_vec()];
    let (first, last, t_batch) = append_batch(&s, "default", "events", &batch);
    assert_eq!((first, last), (3, 5));
    let (first, last, t_one) = append_batch(&s, "default", "events", &[b"alone".to_vec()]);
    assert_eq!((first, last), (6, 6), "a batch of one");
    let (o, t_last) = append(&s, "default", "events", b"last");
    assert_eq!(o, 7);

    // Offsets are per stream: another stream, and the same name in another namespace, start at 0.
    assert_eq!(append(&s, "default", "other", b"x").0, 0);
    assert_eq!(append(&s, "elsewhere", "events", b"y").0, 0);
    assert_eq!(append(&s, "default", "other", b"x2").0, 1);
    assert_eq!(append(&s, "default", "events", b"after").0, 8);

    let want: Vec<(u64, u64, Vec<u8>)> = vec![
        (0, t_first, b"first".to_vec()),
        (1, t_bin, bin.clone()),
        (2, t_empty, Vec::new()),
        (3, t_batch, b"b0".to_vec()),
        (4, t_batch, Vec::new()),
        (5, t_batch, b"b2".to_vec()),
        (6, t_one, b"alone".to_vec()),
        (7, t_last, b"last".to_vec()),
    ];
    let got = read_all(&s, "default", "events");
    assert_eq!(got.len(), 9, "{got:?}");
    for (r, (off, ts, p)) in got.iter().zip(&want) {
        assert_eq!(
            (r.offset, r.timestamp_ms, &r.payload),
            (*off, *ts, p),
            "record {off} as appended"
        );
        assert_eq!(r.delivery_count, None, "plain reads carry no delivery_count");
    }
    assert_eq!(got[8].payload, b"after");
    let other = read_all(&s, "default", "other");
    assert_eq!(
        other.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        vec![b"x".to_vec(), b"x2".to_vec()]
    );
    let elsewhere = read_all(&s, "elsewhere", "events");
    assert_eq!(offsets(&elsewhere), vec![0]);
    assert_eq!(elsewhere[0].payload, b"y");

    let i = info(&s, "default", "events");
    assert_eq!(i["first_offset"], 0, "{i}");
    assert_eq!(i["last_offset"], 8, "{i}");
    assert_eq!(i["record_count"], 9, "{i}");
}

#[test]
fn reads_default_clamp_and_bound_their_count() {
    let s = Server::start();
    let payloads = fill(&s, "default", "r", "rec", 0, 150);

    // No query: from the first retained offset, 100 records.
    let v = read(&s, "default", "r", "");
    let rs = recs(&v);
    assert_eq!(offsets(&rs), (0..100).collect::<Vec<u64>>(), "default count is 100");
    assert_eq!(v["next_offset"], 100, "{v}");
    assert_eq!(v["first_offset"], 0, "{v}");
    for r in &rs {
        assert_eq!(r.payload, payloads[r.offset as usize]);
    }
    let v = read(&s, "default", "r", "offset=100");
    assert_eq!(offsets(&recs(&v)), (100..150).collect::<Vec<u64>>());
    assert_eq!(v["next_offset"], 150);
    let v = read(&s, "default", "r", "offset=140&count=5");
    assert_eq!(offsets(&recs(&v)), vec![140, 141, 142, 143, 144]);
    assert_eq!(v["next_offset"], 145);
    let v = read(&s, "default", "r", "offset=149&count=1");
    assert_eq!(offsets(&recs(&v)), vec![149]);
    assert_eq!(recs(&v)[0].payload, b"rec-149");
    // The count bounds themselves.
    let v = read(&s, "default", "r", "count=1000");
    assert_eq!(recs(&v).len(), 150, "count is an upper bound");
    assert_eq!(v["next_offset"], 150);
    assert_eq!(recs(&read(&s, "default", "r", "count=1")).len(), 1);

    // Past the end: nothing, next_offset is the offset asked for.
    for past in [150u64, 151, 1_000_000] {
        let v = read(&s, "default", "r", &format!("offset={past}"));
        assert_eq!(v["records"], json!([]), "offset {past}: {v}");
        assert_eq!(v["next_offset"], past, "offset {past}: {v}");
        assert_eq!(v["first_offset"], 0, "offset {past}: {v}");
    }
    // block_ms with a record there answers at once (and 60000 is accepted).
    let started = Instant::now();
    let v = read(&s, "default", "r", "offset=7&count=1&block_ms=60000");
    assert_eq!(offsets(&recs(&v)), vec![7]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    for (q, what) in [
        ("count=0", "count 0"),
        ("count=1001", "count 1001"),
        ("count=abc", "count not a number"),
        ("block_ms=60001", "block_ms 60001"),
        ("offset=abc", "offset not a number"),
    ] {
        let r = s.get(&format!("{}?{q}", stream_path("default", "r")));
        assert_bad_request(&r, what);
    }

    // Below the first retained offset a read starts at it.
    let r = post_ok(&s, &op_path("default", "r", "trim"), &json!({"before_offset": 40}));
    assert_eq!(r, json!({"first_offset": 40}));
    let v = read(&s, "default", "r", "offset=3&count=3");
    assert_eq!(offsets(&recs(&v)), vec![40, 41, 42], "{v}");
    assert_eq!(v["next_offset"], 43);
    assert_eq!(v["first_offset"], 40);
    let v = read(&s, "default", "r", "count=2");
    assert_eq!(
        offsets(&recs(&v)),
        vec![40, 41],
        "the default offset is the first retained one"
    );
    assert_eq!(recs(&v)[0].payload, b"rec-40");
}

#[test]
fn unknown_streams_groups_and_namespaces_are_404() {
    let s = Server::start();
    for (method, p, body) in [
        ("GET", stream_path("default", "nope"), ""),
        (
            "GET",
            format!("{}?offset=0&block_ms=100", stream_path("default", "nope")),
            "",
        ),
        ("GET", op_path("default", "nope", "info"), ""),
        ("GET", stream_path("no-such-ns", "nope"), ""),
        ("GET", op_path("no-such-ns", "nope", "info"), ""),
        ("POST", group_path("default", "nope", "g", ""), "{}"),
        ("GET", group_path("default", "nope", "g", ""), ""),
        ("DELETE", group_path("default", "nope", "g", ""), ""),
        (
            "POST",
            group_path("default", "nope", "g", "read"),
            r#"{"consumer":"w1"}"#,
        ),
        ("PUT", op_path("default", "nope", "retention"), r#"{"max_records":5}"#),
        ("POST", op_path("default", "nope", "trim"), r#"{"before_offset":1}"#),
    ] {
        let r = s.request(method, &p, &[("Content-Type", "application/json")], body.as_bytes());
        assert_not_found(&r, &format!("{method} {p}"));
    }
    // None of that created the stream.
    assert_not_found(&s.get(&op_path("default", "nope", "info")), "info after the 404s");
    assert_eq!(get_ok(&s, "/api/v1/stream/default"), json!({"streams": []}));

    // A stream that exists, a group that does not.
    append(&s, "default", "real", b"x");
    for (method, p, body) in [
        ("GET", group_path("default", "real", "g", ""), ""),
        ("DELETE", group_path("default", "real", "g", ""), ""),
        (
            "POST",
            group_path("default", "real", "g", "read"),
            r#"{"consumer":"w1"}"#,
        ),
    ] {
        let r = s.request(method, &p, &[("Content-Type", "application/json")], body.as_bytes());
        assert_not_found(&r, &format!("{method} {p}"));
    }
    // The same stream name in another namespace is another stream.
    assert_not_found(&s.get(&op_path("other", "real", "info")), "other namespace");
    assert_eq!(offsets(&read_all(&s, "default", "real")), vec![0]);
}

#[test]
fn bad_appends_are_refused_and_append_nothing() {
    let s = Server::builder().config("[limits]\nmax_value_bytes = 1024\n").start();
    let p = op_path("default", "v", "append");
    let thousand_and_one: Vec<Value> = (0..1001).map(|_| json!({"payload": "eA=="})).collect();
    let thousand_and_one = json!({ "records": thousand_and_one }).to_string();
    let bad: Vec<(&str, &str)> = vec![
        (r#"{"payload":"not base64!"}"#, "bad base64"),
        (r#"{"payload":"eA"}"#, "unpadded base64"),
        (r#"{"payload":"eA==","key":"k"}"#, "unknown field"),
        (r#"{"payload":5}"#, "wrong type"),
        (r#"{"payload":null}"#, "null payload"),
        (r#"{}"#, "neither payload nor records"),
        (
            r#"{"payload":"eA==","records":[{"payload":"eA=="}]}"#,
            "both payload and records",
        ),
        (r#"{"records":[]}"#, "empty records"),
        (&thousand_and_one, "1001 records"),
        (r#"{"records":[{"payload":"eA=="},{"payload":"!!"}]}"#, "one bad record"),
        (
            r#"{"records":[{"payload":"eA=="},{"payload":"eA==","x":1}]}"#,
            "unknown field in a record",
        ),
        (r#"{"records":[{"payload":"eA=="},{}]}"#, "a record without payload"),
        (r#"{"records":"eA=="}"#, "records not a list"),
        ("", "empty body"),
        ("{", "broken JSON"),
        ("[]", "not an object"),
    ];
    for (body, what) in &bad {
        assert_bad_request(&s.post_json(&p, body), what);
    }
    // Nothing was appended: the stream does not even exist.
    assert_not_found(&s.get(&op_path("default", "v", "info")), "info after refused appends");

    // Bad names.
    let long = "s".repeat(129);
    for (path, what) in [
        (op_path("default", "bad%2Fname", "append"), "slash in a stream name"),
        (op_path("default", "a%20b", "append"), "space in a stream name"),
        (op_path("default", &long, "append"), "129-character stream name"),
        (op_path("bad%21ns", "v", "append"), "bad namespace name"),
    ] {
        assert_bad_request(&s.post_json(&path, r#"{"payload":"eA=="}"#), what);
    }
    let max_name = "s".repeat(128);
    assert_eq!(append(&s, "default", &max_name, b"ok").0, 0, "a 128-character name");
    assert_eq!(
        append(&s, "default", "a-b_c.d:e", b"ok").0,
        0,
        "every allowed character"
    );

    // A payload of max_value_bytes is fine; one byte more is 413, single or in a batch.
    let (o, _) = append(&s, "default", "v", &[7u8; 1024]);
    assert_eq!(o, 0);
    let big = B64.encode([1u8; 1025]);
    let r = s.post_json(&p, &json!({ "payload": big }).to_string());
    assert_error(&r, 413, "payload_too_large", "1025-byte payload");
    let r = s.post_json(
        &p,
        &json!({"records": [{"payload": "eA=="}, {"payload": big}]}).to_string(),
    );
    assert_error(&r, 413, "payload_too_large", "1025-byte payload in a batch");
    for (body, what) in &bad {
        assert_bad_request(&s.post_json(&p, body), what);
    }
    // Nothing refused took an offset.
    assert_eq!(append(&s, "default", "v", b"second").0, 1);
    let thousand: Vec<Vec<u8>> = (0..1000).map(|i| format!("m{i}").into_bytes()).collect();
    let (first, last, _) = append_batch(&s, "default", "v", &thousand);
    assert_eq!((first, last), (2, 1001), "a batch of 1000");
    let all = read_all(&s, "default", "v");
    assert_eq!(offsets(&all), (0..1002).collect::<Vec<u64>>());
    assert_eq!(all[0].payload, vec![7u8; 1024]);
    assert_eq!(all[1].payload, b"second");
    for (i, r) in all[2..].iter().enumerate() {
        assert_eq!(r.payload, thousand[i], "offset {}", r.offset);
    }
    let i = info(&s, "default", "v");
    assert_eq!(
        (i["record_count"].clone(), i["last_offset"].clone()),
        (json!(1002), json!(1001))
    );
}

#[test]
fn a_read_stops_at_about_8_mib_and_continues_from_next_offset() {
    let s = Server::start();
    const RECORD: usize = 1_000_000;
    const N: u64 = 12;
    let payload_of = |i: u64| -> Vec<u8> { (0..RECORD).map(|j| (j as u64 * 31 + i * 7) as u8).collect() };
    for i in 0..N {
        assert_eq!(append(&s, "default", "big", &payload_of(i)).0, i);
    }
    let v = read(&s, "default", "big", "offset=0&count=1000");
    let first = recs(&v);
    assert!(!first.is_empty(), "at least one record is returned");
    assert!(
        (first.len() as u64) < N,
        "an answer stops at about 8 MiB of payload: {} records of {RECORD} bytes",
        first.len()
    );
    let carried: usize = first.iter().map(|r| r.payload.len()).sum();
    assert!(
        carried <= 8 * 1024 * 1024 + RECORD,
        "an answer carried {carried} bytes of payload"
    );
    // Following next_offset gets the rest, every payload intact.
    let mut got = first;
    let mut next = u64_of(&v, "next_offset");
    assert_eq!(next, got.len() as u64);
    while next < N {
        let v = read(&s, "default", "big", &format!("offset={next}&count=1000"));
        let rs = recs(&v);
        assert!(!rs.is_empty(), "offset {next}: {}", v["next_offset"]);
        assert_eq!(rs[0].offset, next);
        next = u64_of(&v, "next_offset");
        got.extend(rs);
    }
    assert_eq!(offsets(&got), (0..N).collect::<Vec<u64>>());
    for r in &got {
        assert!(
            r.payload == payload_of(r.offset),
            "payload of offset {} differs",
            r.offset
        );
    }
}

#[test]
fn block_ms_long_polls_until_a_record_is_appended() {
    let s = Server::start();
    assert_eq!(append(&s, "default", "lp", b"warm").0, 0);

    // Nothing arrives: the wait runs its course and answers empty.
    let started = Instant::now();
    let v = read(&s, "default", "lp", "offset=1&block_ms=200");
    let took = started.elapsed();
    assert_eq!(v, json!({"records": [], "next_offset": 1, "first_offset": 0}));
    assert!(took >= Duration::from_millis(150), "did not wait: {took:?}");
    assert!(took < Duration::from_secs(5), "waited far past block_ms: {took:?}");

    // A reader waiting at the end gets the record appended meanwhile.
    let w = in_background(
        &s,
        "GET",
        format!("{}?offset=1&block_ms=20000", stream_path("default", "lp")),
        None,
    );
    common::let_waiters_settle(&s, 1);
    assert!(!w.is_finished(), "a long-poll returned with nothing to give");
    let (o, ts) = append(&s, "default", "lp", b"wake up");
    assert_eq!(o, 1);
    let appended_at = Instant::now();
    let (r, took) = w.join().expect("reader thread");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(appended_at.elapsed() < Duration::from_secs(5), "woken by the append");
    assert!(took < Duration::from_secs(9), "{took:?}");
    let v = r.json();
    let rs = recs(&v);
    assert_eq!(offsets(&rs), vec![1], "{v}");
    assert_eq!(rs[0].payload, b"wake up");
    assert_eq!(rs[0].timestamp_ms, ts);
    assert_eq!(v["next_offset"], 2);

    // A reader waiting further ahead is not answered by a record before its offset: it gets
    // the record at its offset.
    let w = in_background(
        &s,
        "GET",
        format!("{}?offset=3&block_ms=20000", stream_path("default", "lp")),
        None,
    );
    common::let_waiters_settle(&s, 1);
    assert_eq!(append(&s, "default", "lp", b"two").0, 2);
    assert_eq!(append(&s, "default", "lp", b"three").0, 3);
    let (r, _) = w.join().expect("reader thread");
    assert_eq!(r.status, 200, "{}", r.text());
    let rs = recs(&r.json());
    assert_eq!(offsets(&rs), vec![3], "a read at offset 3: {}", r.text());
    assert_eq!(rs[0].payload, b"three");
}

#[test]
fn info_shape_and_a_fully_trimmed_stream() {
    let s = Server::start();
    fill(&s, "default", "inf", "x", 0, 10);
    let i = info(&s, "default", "inf");
    assert_eq!(i["first_offset"], 0, "{i}");
    assert_eq!(i["last_offset"], 9, "{i}");
    assert_eq!(i["record_count"], 10, "{i}");
    assert_eq!(i["consumer_groups"], json!([]), "{i}");
    assert_eq!(
        i["retention"],
        json!({"max_age_ms": null, "max_bytes": null, "max_records": null}),
        "{i}"
    );
    let bytes = u64_of(&i, "bytes");
    assert!(bytes > 0, "{i}");
    // Groups are listed sorted by name.
    for g in ["zeta", "alpha", "mid"] {
        create_group(&s, "default", "inf", g, &json!({}));
    }
    assert_eq!(
        info(&s, "default", "inf")["consumer_groups"],
        json!(["alpha", "mid", "zeta"])
    );
    // More records, more bytes.
    fill(&s, "default", "inf", "y", 10, 10);
    let i = info(&s, "default", "inf");
    assert!(
        u64_of(&i, "bytes") > bytes,
        "{i} after more records (was {bytes} bytes)"
    );
    assert_eq!(i["record_count"], 20);

    // Trimmed of everything: no last_offset, no records, first_offset one past the last.
    let r = post_ok(&s, &op_path("default", "inf", "trim"), &json!({"before_offset": 20}));
    assert_eq!(r, json!({"first_offset": 20}));
    let i = info(&s, "default", "inf");
    assert_eq!(i["first_offset"], 20, "{i}");
    assert_eq!(i["last_offset"], Value::Null, "{i}");
    assert_eq!(i["record_count"], 0, "{i}");
    assert_eq!(i["bytes"], 0, "no retained records, no bytes: {i}");
    assert_eq!(i["consumer_groups"], json!(["alpha", "mid", "zeta"]));
    let v = read(&s, "default", "inf", "");
    assert_eq!(v, json!({"records": [], "next_offset": 20, "first_offset": 20}));
    // The stream goes on where it was.
    let (o, _) = append(&s, "default", "inf", b"again");
    assert_eq!(o, 20, "offsets are never reused");
    let i = info(&s, "default", "inf");
    assert_eq!(
        (
            i["first_offset"].clone(),
            i["last_offset"].clone(),
            i["record_count"].clone()
        ),
        (json!(20), json!(20), json!(1)),
        "{i}"
    );
    assert!(u64_of(&i, "bytes") > 0, "{i}");
}

#[test]
fn streams_over_shards_are_all_listed_sorted_by_name() {
    let shards = 2u64;
    let s = Server::builder()
        .shards(shards as usize)
        .arg("--partitions")
        .arg("64")
        .start();
    let names: Vec<String> = ["st-h", "st-b", "st-f", "st-a", "st-g", "st-c", "st-e", "st-d"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    let owners: BTreeSet<u64> = names
        .iter()
        .map(|n| common::spec_owner_shard("spread", n, 64, shards))
        .collect();
    assert_eq!(owners.len(), 2, "the chosen names cover both shards");
    for (i, name) in names.iter().enumerate() {
        fill(&s, "spread", name, name, 0, i as u64 + 1);
    }
    append(&s, "elsewhere", "st-z", b"not listed under spread");
    create_group(&s, "spread", "st-c", "g", &json!({}));

    let list = get_ok(&s, "/api/v1/stream/spread");
    assert_eq!(keys(&list), ["streams"], "{list}");
    let rows = list["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("streams in {list}"));
    let listed: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want, "sorted by name");
    for row in rows {
        let name = row["name"].as_str().unwrap();
        assert_eq!(*row, info(&s, "spread", name), "listing row of {name}");
        let n = names.iter().position(|x| x == name).unwrap() as u64 + 1;
        assert_eq!(row["record_count"], n, "{row}");
    }
    assert_eq!(
        rows.iter().find(|r| r["name"] == "st-c").unwrap()["consumer_groups"],
        json!(["g"])
    );
}

// ---------------------------------------------------------------------------------------------
// Consumer groups.

#[test]
fn groups_start_where_asked_and_refuse_duplicates_and_bad_input() {
    let s = Server::start();
    let (ns, st) = ("default", "gs");
    assert_not_found(
        &s.post_json(&group_path(ns, st, "g", ""), "{}"),
        "group on a stream that never existed",
    );
    fill(&s, ns, st, "r", 0, 10);

    let latest = create_group(&s, ns, st, "g-latest", &json!({}));
    assert_eq!(
        latest,
        json!({
            "name": "g-latest", "cursor": 10, "pending_count": 0, "consumers": [], "lag": 0,
            "ack_timeout_ms": 30000, "max_deliveries": 5, "dead_letter_count": 0, "dead_letters": []
        }),
        "defaults: latest, 30 s, 5 deliveries"
    );
    assert_eq!(group_info(&s, ns, st, "g-latest"), latest);
    for body in [json!({}), json!({"start": "earliest"})] {
        let r = s.post_json(&group_path(ns, st, "g-latest", ""), &body.to_string());
        assert_error(&r, 409, "conflict", "the group exists");
    }
    assert_eq!(group_info(&s, ns, st, "g-latest"), latest, "the 409 changed nothing");

    let e = create_group(
        &s,
        ns,
        st,
        "g-earliest",
        &json!({"start": "earliest", "ack_timeout_ms": 1000, "max_deliveries": 2}),
    );
    assert_eq!(
        (
            e["cursor"].clone(),
            e["lag"].clone(),
            e["ack_timeout_ms"].clone(),
            e["max_deliveries"].clone()
        ),
        (json!(0), json!(10), json!(1000), json!(2)),
        "{e}"
    );
    let n = create_group(&s, ns, st, "g-4", &json!({"start": 4}));
    assert_eq!((n["cursor"].clone(), n["lag"].clone()), (json!(4), json!(6)), "{n}");
    let l = create_group(&s, ns, st, "g-latest2", &json!({"start": "latest"}));
    assert_eq!((l["cursor"].clone(), l["lag"].clone()), (json!(10), json!(0)), "{l}");
    let b = create_group(
        &s,
        ns,
        st,
        "g-bounds",
        &json!({"start": 10, "ack_timeout_ms": 43200000, "max_deliveries": 1000}),
    );
    assert_eq!(
        (
            b["cursor"].clone(),
            b["ack_timeout_ms"].clone(),
            b["max_deliveries"].clone()
        ),
        (json!(10), json!(43200000), json!(1000)),
        "{b}"
    );
    let b = create_group(&s, ns, st, "g-low", &json!({"ack_timeout_ms": 1, "max_deliveries": 1}));
    assert_eq!(
        (b["ack_timeout_ms"].clone(), b["max_deliveries"].clone()),
        (json!(1), json!(1))
    );

    for (body, what) in [
        (r#"{"start":"middle"}"#, "unknown start"),
        (r#"{"start":-1}"#, "negative start"),
        (r#"{"start":1.5}"#, "fractional start"),
        (r#"{"ack_timeout_ms":0}"#, "ack_timeout_ms 0"),
        (r#"{"ack_timeout_ms":43200001}"#, "ack_timeout_ms over 12 h"),
        (r#"{"max_deliveries":0}"#, "max_deliveries 0"),
        (r#"{"max_deliveries":1001}"#, "max_deliveries 1001"),
        (r#"{"max_deliveries":"5"}"#, "wrong type"),
        (r#"{"consumer":"w1"}"#, "unknown field"),
        ("{", "broken JSON"),
    ] {
        assert_bad_request(&s.post_json(&group_path(ns, st, "g-bad", ""), body), what);
        assert_not_found(&s.get(&group_path(ns, st, "g-bad", "")), what);
    }
    assert_bad_request(&s.post_json(&group_path(ns, st, "g%2Fx", ""), "{}"), "bad group name");
    assert_bad_request(
        &s.post_json(&group_path(ns, st, &"g".repeat(129), ""), "{}"),
        "129-character group name",
    );

    // A numeric start is clamped to the retained range.
    post_ok(&s, &op_path(ns, st, "trim"), &json!({"before_offset": 3}));
    let c = create_group(&s, ns, st, "g-clamped-low", &json!({"start": 1}));
    assert_eq!(c["cursor"], 3, "a start below the first retained offset: {c}");
    let c = create_group(&s, ns, st, "g-clamped-high", &json!({"start": 1_000_000}));
    assert_eq!(c["cursor"], 10, "a start past the end: {c}");
    assert_eq!(c["lag"], 0, "{c}");
    let e2 = create_group(&s, ns, st, "g-earliest2", &json!({"start": "earliest"}));
    assert_eq!(e2["cursor"], 3, "earliest is the first retained offset: {e2}");

    assert_eq!(
        info(&s, ns, st)["consumer_groups"],
        json!([
            "g-4",
            "g-bounds",
            "g-clamped-high",
            "g-clamped-low",
            "g-earliest",
            "g-earliest2",
            "g-latest",
            "g-latest2",
            "g-low"
        ])
    );

    // What each start means for delivery.
    assert!(
        group_read(&s, ns, st, "g-latest", "w", 10).is_empty(),
        "latest: nothing old"
    );
    assert_eq!(append(&s, ns, st, b"new").0, 10);
    let rs = group_read(&s, ns, st, "g-latest", "w", 10);
    assert_eq!(offsets(&rs), vec![10], "latest: what came after the group");
    assert_eq!(rs[0].payload, b"new");
    assert_eq!(rs[0].delivery_count, Some(1));
    let rs = group_read(&s, ns, st, "g-4", "w", 100);
    assert_eq!(offsets(&rs), (4..=10).collect::<Vec<u64>>());
    assert_eq!(rs[0].payload, b"r-4");
    let rs = group_read(&s, ns, st, "g-earliest2", "w", 100);
    assert_eq!(offsets(&rs), (3..=10).collect::<Vec<u64>>());
    let rs = group_read(&s, ns, st, "g-clamped-high", "w", 100);
    assert_eq!(offsets(&rs), vec![10]);
    // The earliest group made before the trim gets what is left.
    let rs = group_read(&s, ns, st, "g-earliest", "w", 100);
    assert_eq!(
        offsets(&rs),
        (3..=10).collect::<Vec<u64>>(),
        "trimmed records are not delivered"
    );
}

#[test]
fn each_record_goes_to_exactly_one_consumer() {
    let s = Server::start();
    let (ns, st, g) = ("default", "work", "workers");
    let payloads = fill(&s, ns, st, "job", 0, 300);
    create_group(&s, ns, st, g, &json!({"start": "earliest", "ack_timeout_ms": 600000}));

    // Two consumers read concurrently until there is nothing left for them.
    let api = s.api;
    let handles: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|who| {
            std::thread::spawn(move || {
                let mut got: Vec<Rec> = Vec::new();
                loop {
                    let body = json!({"consumer": who, "count": 7});
                    let r = common::try_request(
                        api,
                        "POST",
                        &group_path(ns, st, g, "read"),
                        &[("Content-Type", "application/json")],
                        body.to_string().as_bytes(),
                    )
                    .expect("group read");
                    assert_eq!(r.status, 200, "{}", r.text());
                    let rs = recs(&r.json());
                    assert!(rs.len() <= 7, "count is an upper bound");
                    if rs.is_empty() {
                        return got;
                    }
                    got.extend(rs);
                }
            })
        })
        .collect();
    let got: Vec<Vec<Rec>> = handles.into_iter().map(|h| h.join().expect("consumer")).collect();
    let mut all: Vec<u64> = got.iter().flatten().map(|r| r.offset).collect();
    all.sort();
    assert_eq!(
        all,
        (0..300).collect::<Vec<u64>>(),
        "every record delivered once ({} and {} records)",
        got[0].len(),
        got[1].len()
    );
    for r in got.iter().flatten() {
        assert_eq!(r.payload, payloads[r.offset as usize]);
        assert_eq!(r.delivery_count, Some(1));
    }
    // Within one consumer, records come in offset order.
    for rs in &got {
        assert!(rs.windows(2).all(|w| w[0].offset < w[1].offset), "{:?}", offsets(rs));
    }
    let gi = group_info(&s, ns, st, g);
    assert_eq!(gi["pending_count"], 300, "{gi}");
    assert_eq!(gi["cursor"], 300, "{gi}");
    assert_eq!(gi["lag"], 0, "{gi}");
    let want_consumers: Vec<&str> = ["w1", "w2"]
        .into_iter()
        .zip(&got)
        .filter(|(_, rs)| !rs.is_empty())
        .map(|(w, _)| w)
        .collect();
    let consumers: Vec<&str> = gi["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        want_consumers.iter().all(|w| consumers.contains(w)) && consumers.iter().all(|c| ["w1", "w2"].contains(c)),
        "consumers {consumers:?}"
    );
    assert!(
        consumers.windows(2).all(|w| w[0] < w[1]),
        "consumers sorted: {consumers:?}"
    );

    // Acked, they are gone for good.
    assert_eq!(group_ack(&s, ns, st, g, &all), 300);
    let gi = group_info(&s, ns, st, g);
    assert_eq!(gi["pending_count"], 0, "{gi}");
    assert!(group_read(&s, ns, st, g, "w1", 100).is_empty());
    assert!(group_read(&s, ns, st, g, "w3", 100).is_empty());
    // New records go on to whoever reads.
    assert_eq!(append(&s, ns, st, b"more").0, 300);
    let rs = group_read(&s, ns, st, g, "w3", 100);
    assert_eq!(offsets(&rs), vec![300]);
    assert!(group_read(&s, ns, st, g, "w1", 100).is_empty());
    // Another group gets everything again, independently.
    create_group(&s, ns, st, "auditors", &json!({"start": "earliest"}));
    let rs = group_read(&s, ns, st, "auditors", "a", 1000);
    assert_eq!(offsets(&rs), (0..=300).collect::<Vec<u64>>());
    assert_eq!(group_info(&s, ns, st, g)["pending_count"], 1);
}

#[test]
fn unacked_records_are_redelivered_after_the_ack_timeout() {
    let s = Server::start();
    let (ns, st, g) = ("default", "redeliver", "g");
    fill(&s, ns, st, "r", 0, 3);
    create_group(
        &s,
        ns,
        st,
        g,
        &json!({"start": "earliest", "ack_timeout_ms": 200, "max_deliveries": 5}),
    );
    let started = Instant::now();
    let rs = group_read(&s, ns, st, g, "w1", 3);
    assert_eq!(offsets(&rs), vec![0, 1, 2]);
    assert!(rs.iter().all(|r| r.delivery_count == Some(1)));
    assert_eq!(group_ack(&s, ns, st, g, &[0]), 1);
    assert_eq!(group_info(&s, ns, st, g)["pending_count"], 2);

    // After the timeout, another consumer gets the unacked ones again, counted.
    let rs = group_read_eventually(&s, ns, st, g, "w2", 1, "redelivery after the ack timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "redelivered after {:?}",
        started.elapsed()
    );
    assert_eq!(offsets(&rs), vec![1], "the oldest timed-out record first");
    assert_eq!(rs[0].delivery_count, Some(2));
    assert_eq!(rs[0].payload, b"r-1");
    // Offset 2 timed out with 1: it goes before a new record.
    assert_eq!(append(&s, ns, st, b"new").0, 3);
    let rs = group_read(&s, ns, st, g, "w2", 10);
    assert_eq!(offsets(&rs), vec![2, 3], "timed-out records before new ones");
    assert_eq!(rs[0].delivery_count, Some(2));
    assert_eq!(rs[0].payload, b"r-2");
    assert_eq!(rs[1].delivery_count, Some(1));
    assert_eq!(rs[1].payload, b"new");

    // Acked now, they are never delivered again (whoever acks).
    assert_eq!(group_ack(&s, ns, st, g, &[1, 2, 3]), 3);
    let gi = group_info(&s, ns, st, g);
    assert_eq!(gi["pending_count"], 0, "{gi}");
    assert_eq!(gi["consumers"], json!(["w1", "w2"]), "{gi}");
    assert_eq!(gi["dead_letter_count"], 0, "{gi}");
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        assert!(
            group_read(&s, ns, st, g, "w1", 10).is_empty(),
            "an acked record came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn records_are_given_up_after_max_deliveries() {
    let s = Server::start();
    let (ns, st, g) = ("default", "poison", "g");
    fill(&s, ns, st, "p", 0, 2);
    create_group(
        &s,
        ns,
        st,
        g,
        &json!({"start": "earliest", "ack_timeout_ms": 100, "max_deliveries": 2}),
    );
    let rs = group_read(&s, ns, st, g, "w1", 10);
    assert_eq!(offsets(&rs), vec![0, 1]);
    assert_eq!(group_ack(&s, ns, st, g, &[1]), 1);
    let rs = group_read_eventually(&s, ns, st, g, "w1", 10, "second delivery");
    assert_eq!(offsets(&rs), vec![0]);
    assert_eq!(rs[0].delivery_count, Some(2));

    // Its second timeout is its last: dead-lettered, never delivered again.
    let gi = wait_dead_letters(&s, ns, st, g, 1);
    assert_eq!(gi["dead_letters"], json!([0]), "{gi}");
    assert_eq!(gi["pending_count"], 0, "{gi}");
    assert_eq!(group_ack(&s, ns, st, g, &[0]), 0, "a dead letter is not pending");
    assert!(group_read(&s, ns, st, g, "w1", 10).is_empty());

    // A second one, later: dead letters are listed oldest first.
    assert_eq!(append(&s, ns, st, b"p-2").0, 2);
    let rs = group_read(&s, ns, st, g, "w2", 10);
    assert_eq!(offsets(&rs), vec![2]);
    assert_eq!(rs[0].delivery_count, Some(1));
    let rs = group_read_eventually(&s, ns, st, g, "w2", 10, "second delivery of 2");
    assert_eq!(offsets(&rs), vec![2]);
    assert_eq!(rs[0].delivery_count, Some(2));
    let gi = wait_dead_letters(&s, ns, st, g, 2);
    assert_eq!(gi["dead_letters"], json!([0, 2]), "{gi}");
    assert_eq!(gi["pending_count"], 0, "{gi}");
    assert_eq!(gi["lag"], 0, "{gi}");
    assert!(group_read(&s, ns, st, g, "w3", 10).is_empty());
    // The records themselves are still in the stream.
    assert_eq!(offsets(&read_all(&s, ns, st)), vec![0, 1, 2]);
}

#[test]
fn ack_counts_only_pending_offsets() {
    let s = Server::start();
    let (ns, st) = ("default", "acks");
    fill(&s, ns, st, "a", 0, 10);
    create_group(&s, ns, st, "g", &json!({"start": "earliest", "ack_timeout_ms": 600000}));
    create_group(&s, ns, st, "h", &json!({"start": "earliest", "ack_timeout_ms": 600000}));
    assert_eq!(offsets(&group_read(&s, ns, st, "g", "w", 5)), vec![0, 1, 2, 3, 4]);
    assert_eq!(offsets(&group_read(&s, ns, st, "h", "w", 2)), vec![0, 1]);

    // Undelivered (5), unknown (999) and past-the-end offsets are not counted, nor an error.
    assert_eq!(group_ack(&s, ns, st, "g", &[1, 5, 999]), 1);
    assert_eq!(group_ack(&s, ns, st, "g", &[1]), 0, "already acked");
    assert_eq!(group_ack(&s, ns, st, "g", &[0, 2, 3]), 3);
    assert_eq!(group_info(&s, ns, st, "g")["pending_count"], 1);
    // Acks are per group.
    assert_eq!(group_info(&s, ns, st, "h")["pending_count"], 2);
    assert_eq!(group_ack(&s, ns, st, "h", &[0, 1, 2]), 2);
    assert_eq!(group_info(&s, ns, st, "h")["pending_count"], 0);
    // 1000 offsets are accepted.
    let many: Vec<u64> = (0..1000).collect();
    assert_eq!(group_ack(&s, ns, st, "g", &many), 1);

    let too_many: Vec<u64> = (0..1001).collect();
    for (body, what) in [
        (json!({"offsets": []}).to_string(), "no offsets"),
        (json!({ "offsets": too_many }).to_string(), "1001 offsets"),
        (r#"{"offsets":[-1]}"#.to_string(), "negative offset"),
        (r#"{"offsets":"1"}"#.to_string(), "wrong type"),
        (r#"{"offsets":[1],"consumer":"w"}"#.to_string(), "unknown field"),
        (r#"{}"#.to_string(), "no offsets field"),
    ] {
        assert_bad_request(&s.post_json(&group_path(ns, st, "g", "ack"), &body), what);
    }
    for (body, what) in [
        (r#"{}"#, "no consumer"),
        (r#"{"consumer":"w","count":0}"#, "count 0"),
        (r#"{"consumer":"w","count":1001}"#, "count 1001"),
        (r#"{"consumer":"w","block_ms":60001}"#, "block_ms 60001"),
        (r#"{"consumer":"w","wait":1}"#, "unknown field"),
        (r#"{"consumer":"bad/name"}"#, "bad consumer name"),
        (r#"{"consumer":""}"#, "empty consumer name"),
    ] {
        assert_bad_request(&s.post_json(&group_path(ns, st, "g", "read"), body), what);
    }
    // The refused reads delivered nothing: the next read continues at 5.
    let rs = group_read(&s, ns, st, "g", "w", 1000);
    assert_eq!(offsets(&rs), (5..10).collect::<Vec<u64>>());
    // The default count is 10.
    fill(&s, ns, st, "b", 10, 15);
    let v = post_ok(&s, &group_path(ns, st, "g", "read"), &json!({"consumer": "w"}));
    assert_eq!(offsets(&recs(&v)), (10..20).collect::<Vec<u64>>(), "default count");
}

#[test]
fn lag_counts_records_not_yet_delivered() {
    let s = Server::start();
    let (ns, st, g) = ("default", "lagging", "g");
    fill(&s, ns, st, "l", 0, 10);
    let gi = create_group(&s, ns, st, g, &json!({"start": "earliest", "ack_timeout_ms": 600000}));
    assert_eq!((gi["cursor"].clone(), gi["lag"].clone()), (json!(0), json!(10)));
    assert_eq!(group_read(&s, ns, st, g, "w", 4).len(), 4);
    let gi = group_info(&s, ns, st, g);
    assert_eq!(
        (gi["cursor"].clone(), gi["lag"].clone(), gi["pending_count"].clone()),
        (json!(4), json!(6), json!(4)),
        "{gi}"
    );
    fill(&s, ns, st, "m", 10, 5);
    let gi = group_info(&s, ns, st, g);
    assert_eq!((gi["cursor"].clone(), gi["lag"].clone()), (json!(4), json!(11)), "{gi}");
    // Acks do not change the lag; deliveries do.
    assert_eq!(group_ack(&s, ns, st, g, &[0, 1, 2, 3]), 4);
    assert_eq!(group_info(&s, ns, st, g)["lag"], 11);
    assert_eq!(group_read(&s, ns, st, g, "w", 100).len(), 11);
    let gi = group_info(&s, ns, st, g);
    assert_eq!(
        (gi["cursor"].clone(), gi["lag"].clone(), gi["pending_count"].clone()),
        (json!(15), json!(0), json!(11)),
        "{gi}"
    );
    // A latest group starts with no lag and gains one per append.
    let gi = create_group(&s, ns, st, "late", &json!({}));
    assert_eq!((gi["cursor"].clone(), gi["lag"].clone()), (json!(15), json!(0)));
    append(&s, ns, st, b"one more");
    assert_eq!(group_info(&s, ns, st, "late")["lag"], 1);
    assert_eq!(group_info(&s, ns, st, g)["lag"], 1);
}

#[test]
fn deleted_groups_vanish_and_can_be_recreated() {
    let s = Server::start();
    let (ns, st, g) = ("default", "del", "g");
    fill(&s, ns, st, "d", 0, 5);
    create_group(&s, ns, st, g, &json!({"start": "earliest", "ack_timeout_ms": 600000}));
    create_group(&s, ns, st, "keep", &json!({"start": "earliest"}));
    assert_eq!(group_read(&s, ns, st, g, "w", 3).len(), 3);
    assert_eq!(group_ack(&s, ns, st, g, &[0]), 1);

    let r = s.delete(&group_path(ns, st, g, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"deleted": true}));
    assert_not_found(&s.get(&group_path(ns, st, g, "")), "deleted group");
    assert_not_found(&s.delete(&group_path(ns, st, g, "")), "deleting twice");
    assert_not_found(
        &s.post_json(&group_path(ns, st, g, "read"), r#"{"consumer":"w"}"#),
        "reading a deleted group",
    );
    assert_eq!(info(&s, ns, st)["consumer_groups"], json!(["keep"]));

    // Recreated, it starts afresh: no pending, no consumers, delivery counts from 1.
    let gi = create_group(&s, ns, st, g, &json!({"start": "earliest"}));
    assert_eq!(
        gi,
        json!({
            "name": g, "cursor": 0, "pending_count": 0, "consumers": [], "lag": 5,
            "ack_timeout_ms": 30000, "max_deliveries": 5, "dead_letter_count": 0, "dead_letters": []
        })
    );
    let rs = group_read(&s, ns, st, g, "v", 100);
    assert_eq!(offsets(&rs), vec![0, 1, 2, 3, 4]);
    assert!(rs.iter().all(|r| r.delivery_count == Some(1)), "{rs:?}");
    assert_eq!(info(&s, ns, st)["consumer_groups"], json!(["g", "keep"]));
    // The other group was not touched.
    assert_eq!(group_info(&s, ns, st, "keep")["cursor"], 0);
}

#[test]
fn group_reads_long_poll_for_new_records() {
    let s = Server::start();
    let (ns, st, g) = ("default", "glp", "g");
    append(&s, ns, st, b"old");
    create_group(&s, ns, st, g, &json!({}));

    let started = Instant::now();
    let v = post_ok(
        &s,
        &group_path(ns, st, g, "read"),
        &json!({"consumer": "w", "block_ms": 200}),
    );
    let took = started.elapsed();
    assert_eq!(v, json!({"records": []}));
    assert!(took >= Duration::from_millis(150), "did not wait: {took:?}");
    assert!(took < Duration::from_secs(5), "waited far past block_ms: {took:?}");

    let w = in_background(
        &s,
        "POST",
        group_path(ns, st, g, "read"),
        Some(json!({"consumer": "w", "count": 10, "block_ms": 20000})),
    );
    common::let_waiters_settle(&s, 1);
    assert!(!w.is_finished(), "a long-poll returned with nothing to give");
    let (o, _) = append(&s, ns, st, b"fresh");
    let appended_at = Instant::now();
    let (r, took) = w.join().expect("reader thread");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(appended_at.elapsed() < Duration::from_secs(5), "woken by the append");
    assert!(took < Duration::from_secs(9), "{took:?}");
    let rs = recs(&r.json());
    assert_eq!(offsets(&rs), vec![o]);
    assert_eq!(rs[0].payload, b"fresh");
    assert_eq!(rs[0].delivery_count, Some(1));
    assert_eq!(group_info(&s, ns, st, g)["pending_count"], 1);
}

// ---------------------------------------------------------------------------------------------
// Retention and trims.

#[test]
fn retention_max_records_keeps_the_newest() {
    let s = Server::start();
    let (ns, st) = ("default", "capped");
    fill(&s, ns, st, "c", 0, 5);
    let r = s.put_json(&op_path(ns, st, "retention"), r#"{"max_records":10}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v, info(&s, ns, st), "the answer is the stream's info");
    assert_eq!(
        v["retention"],
        json!({"max_age_ms": null, "max_bytes": null, "max_records": 10}),
        "{v}"
    );
    for (body, what) in [
        (r#"{"max_records":0}"#, "max_records 0"),
        (r#"{"max_bytes":0}"#, "max_bytes 0"),
        (r#"{"max_age_ms":0}"#, "max_age_ms 0"),
        (r#"{"max_records":-1}"#, "negative"),
        (r#"{"max_records":"10"}"#, "wrong type"),
        (r#"{"max_records":10,"max_count":1}"#, "unknown field"),
        ("{", "broken JSON"),
    ] {
        assert_bad_request(&s.put_json(&op_path(ns, st, "retention"), body), what);
    }
    assert_eq!(
        info(&s, ns, st)["retention"]["max_records"],
        10,
        "refused PUTs change nothing"
    );

    let payloads = fill(&s, ns, st, "d", 5, 20);
    let i = wait_first_offset(&s, ns, st, 15, "max_records 10");
    assert_eq!(i["first_offset"], 15, "{i}");
    assert_eq!(i["last_offset"], 24, "{i}");
    assert_eq!(i["record_count"], 10, "{i}");
    let all = read_all(&s, ns, st);
    assert_eq!(offsets(&all), (15..25).collect::<Vec<u64>>());
    assert_eq!(all[0].payload, payloads[10]);
    let v = read(&s, ns, st, "offset=2&count=2");
    assert_eq!(
        offsets(&recs(&v)),
        vec![15, 16],
        "a read below first_offset starts there"
    );
    assert_eq!(v["first_offset"], 15);

    // Offsets go on; the cap goes on being enforced.
    assert_eq!(append(&s, ns, st, b"next").0, 25);
    let i = wait_first_offset(&s, ns, st, 16, "max_records 10 after one more");
    assert_eq!(
        (
            i["first_offset"].clone(),
            i["last_offset"].clone(),
            i["record_count"].clone()
        ),
        (json!(16), json!(25), json!(10)),
        "{i}"
    );
    // Lifting the limit (null or omitted) keeps everything from now on.
    let r = s.put_json(&op_path(ns, st, "retention"), r#"{"max_records":null}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["retention"],
        json!({"max_age_ms": null, "max_bytes": null, "max_records": null})
    );
    fill(&s, ns, st, "e", 26, 20);
    let i = info(&s, ns, st);
    assert_eq!(i["first_offset"], 16, "{i}");
    assert_eq!(i["record_count"], 30, "{i}");
}

#[test]
fn retention_max_bytes_drops_the_oldest() {
    let s = Server::start();
    let (ns, st) = ("default", "bytes");
    let payloads: Vec<Vec<u8>> = (0..100u32).map(|i| vec![i as u8; 1000]).collect();
    for chunk in payloads.chunks(10) {
        append_batch(&s, ns, st, chunk);
    }
    let i = info(&s, ns, st);
    let total = u64_of(&i, "bytes");
    assert!(total >= 100 * 1000, "100 records of 1000 bytes take {total} bytes");
    let max = total / 4;
    let r = s.put_json(&op_path(ns, st, "retention"), &json!({ "max_bytes": max }).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["retention"],
        json!({"max_age_ms": null, "max_bytes": max, "max_records": null})
    );
    // Enforced after the next append at the latest.
    append(&s, ns, st, &[100u8; 1000]);
    let i = common::poll("max_bytes enforced", ASYNC_WAIT, || {
        let i = info(&s, ns, st);
        (u64_of(&i, "bytes") <= max).then_some(i)
    });
    let first = u64_of(&i, "first_offset");
    let count = u64_of(&i, "record_count");
    assert!(first > 0 && count >= 1, "{i}");
    assert_eq!(i["last_offset"], 100, "the newest records stay: {i}");
    assert_eq!(first + count, 101, "{i}");
    assert!(count <= 30, "about a quarter of the bytes is left: {i}");
    let all = read_all(&s, ns, st);
    assert_eq!(offsets(&all), (first..=100).collect::<Vec<u64>>());
    for r in &all {
        assert_eq!(r.payload, vec![r.offset as u8; 1000]);
    }
}

#[test]
fn retention_max_age_drops_old_records() {
    let s = Server::start();
    let (ns, st) = ("default", "aging");
    let mut stamps = Vec::new();
    for i in 0..5u64 {
        let (o, ts) = append(&s, ns, st, format!("old-{i}").as_bytes());
        assert_eq!(o, i);
        stamps.push(ts);
    }
    let r = s.put_json(&op_path(ns, st, "retention"), r#"{"max_age_ms":1000}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["retention"],
        json!({"max_age_ms": 1000, "max_bytes": null, "max_records": null})
    );
    let i = wait_first_offset(&s, ns, st, 5, "max_age_ms 1000");
    let dropped_at = now_ms();
    assert!(
        dropped_at + CLOCK_SLACK_MS >= stamps[4] + 1000,
        "record 4 (at {}) dropped at {dropped_at}, before it was 1000 ms old",
        stamps[4]
    );
    assert_eq!(i["last_offset"], Value::Null, "{i}");
    assert_eq!(i["record_count"], 0, "{i}");

    // A new record stays until it is old in its turn.
    let t0 = Instant::now();
    let (o, ts) = append(&s, ns, st, b"young");
    assert_eq!(o, 5);
    let v = read(&s, ns, st, "");
    if t0.elapsed() < Duration::from_millis(800) {
        assert_eq!(offsets(&recs(&v)), vec![5], "a young record was dropped: {v}");
    }
    wait_first_offset(&s, ns, st, 6, "the young record ages out");
    assert!(now_ms() + CLOCK_SLACK_MS >= ts + 1000, "dropped before 1000 ms");
    assert_eq!(append(&s, ns, st, b"later").0, 6, "offsets are not reused");
}

#[test]
fn trim_drops_records_below_an_offset_and_never_goes_back() {
    let s = Server::start();
    let (ns, st) = ("default", "trims");
    let payloads = fill(&s, ns, st, "t", 0, 20);
    let trim = |before: Value| -> Value { post_ok(&s, &op_path(ns, st, "trim"), &json!({ "before_offset": before })) };
    assert_eq!(trim(json!(5)), json!({"first_offset": 5}));
    let i = info(&s, ns, st);
    assert_eq!(
        (
            i["first_offset"].clone(),
            i["last_offset"].clone(),
            i["record_count"].clone()
        ),
        (json!(5), json!(19), json!(15)),
        "{i}"
    );
    let all = read_all(&s, ns, st);
    assert_eq!(offsets(&all), (5..20).collect::<Vec<u64>>());
    assert_eq!(all[0].payload, payloads[5]);
    // Never backwards.
    assert_eq!(trim(json!(3)), json!({"first_offset": 5}));
    assert_eq!(trim(json!(0)), json!({"first_offset": 5}));
    assert_eq!(trim(json!(5)), json!({"first_offset": 5}));
    assert_eq!(trim(json!(6)), json!({"first_offset": 6}));
    // Past the end: up to last_offset + 1.
    assert_eq!(trim(json!(1000)), json!({"first_offset": 20}));
    let i = info(&s, ns, st);
    assert_eq!(
        (
            i["first_offset"].clone(),
            i["last_offset"].clone(),
            i["record_count"].clone()
        ),
        (json!(20), Value::Null, json!(0)),
        "{i}"
    );
    assert_eq!(append(&s, ns, st, b"t-20").0, 20);
    assert_eq!(trim(json!(20)), json!({"first_offset": 20}));
    assert_eq!(offsets(&read_all(&s, ns, st)), vec![20]);

    for (body, what) in [
        (r#"{}"#, "no before_offset"),
        (r#"{"before_offset":-1}"#, "negative"),
        (r#"{"before_offset":"3"}"#, "wrong type"),
        (r#"{"before_offset":3,"x":1}"#, "unknown field"),
        ("{", "broken JSON"),
    ] {
        assert_bad_request(&s.post_json(&op_path(ns, st, "trim"), body), what);
    }
    assert_eq!(info(&s, ns, st)["first_offset"], 20);
}

#[test]
fn trimmed_records_leave_the_groups_pending_lists() {
    let s = Server::start();
    let (ns, st) = ("default", "tp");
    fill(&s, ns, st, "p", 0, 10);
    create_group(&s, ns, st, "g", &json!({"start": "earliest", "ack_timeout_ms": 600000}));
    create_group(
        &s,
        ns,
        st,
        "slow",
        &json!({"start": "earliest", "ack_timeout_ms": 600000}),
    );
    assert_eq!(group_read(&s, ns, st, "g", "w", 10).len(), 10);
    assert_eq!(group_ack(&s, ns, st, "g", &[7]), 1);
    assert_eq!(group_info(&s, ns, st, "g")["pending_count"], 9);

    post_ok(&s, &op_path(ns, st, "trim"), &json!({"before_offset": 6}));
    let gi = group_info(&s, ns, st, "g");
    assert_eq!(gi["pending_count"], 3, "6, 8 and 9 are left: {gi}");
    assert_eq!(gi["cursor"], 10, "{gi}");
    assert_eq!(group_ack(&s, ns, st, "g", &(0..10).collect::<Vec<u64>>()), 3);
    // A group that had delivered nothing gets what is left.
    let rs = group_read(&s, ns, st, "slow", "w", 100);
    assert_eq!(offsets(&rs), vec![6, 7, 8, 9]);
    assert_eq!(rs[0].payload, b"p-6");
}

#[test]
fn trimmed_pending_records_are_never_redelivered() {
    let s = Server::start();
    let (ns, st, g) = ("default", "tpr", "g");
    fill(&s, ns, st, "p", 0, 4);
    create_group(
        &s,
        ns,
        st,
        g,
        &json!({"start": "earliest", "ack_timeout_ms": 100, "max_deliveries": 5}),
    );
    assert_eq!(group_read(&s, ns, st, g, "w", 10).len(), 4);
    post_ok(&s, &op_path(ns, st, "trim"), &json!({"before_offset": 2}));
    let rs = group_read_eventually(&s, ns, st, g, "w", 10, "redelivery of the untrimmed");
    assert_eq!(offsets(&rs), vec![2, 3], "only retained records come back");
    assert!(rs.iter().all(|r| r.delivery_count == Some(2)), "{rs:?}");
}

// ---------------------------------------------------------------------------------------------
// Restarts.

/// Everything a restart must keep of one stream: its info (bytes aside), every record and
/// the info of each group.
fn snapshot(s: &Server, ns: &str, st: &str, groups: &[&str]) -> (Value, Vec<Rec>, Vec<Value>) {
    let mut i = info(s, ns, st);
    if u64_of(&i, "record_count") > 0 {
        assert!(u64_of(&i, "bytes") > 0, "{i}");
    }
    i["bytes"] = Value::Null;
    let gs = groups.iter().map(|g| group_info(s, ns, st, g)).collect();
    (i, read_all(s, ns, st), gs)
}

#[test]
fn streams_groups_retention_and_trims_survive_restarts() {
    let mut s = Server::builder().shards(2).start();
    let (ns, st) = ("dur", "log");
    let mut want: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for i in 0..10u64 {
        let p = format!("single-{i}").into_bytes();
        assert_eq!(append(&s, ns, st, &p).0, i);
        want.insert(i, p);
    }
    let batch: Vec<Vec<u8>> = (10..30u64).map(|i| format!("batch-{i}").into_bytes()).collect();
    assert_eq!(append_batch(&s, ns, st, &batch).0, 10);
    want.extend((10..30u64).zip(batch));
    let r = s.put_json(
        &op_path(ns, st, "retention"),
        r#"{"max_records":40,"max_age_ms":3600000,"max_bytes":1000000000}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    post_ok(&s, &op_path(ns, st, "trim"), &json!({"before_offset": 5}));

    // g1: 5..14 delivered, 5..7 acked. g2: the last record dead-lettered. g3: deleted.
    create_group(
        &s,
        ns,
        st,
        "g1",
        &json!({"start": "earliest", "ack_timeout_ms": 600000, "max_deliveries": 3}),
    );
    assert_eq!(
        offsets(&group_read(&s, ns, st, "g1", "w1", 10)),
        (5..15).collect::<Vec<u64>>()
    );
    assert_eq!(group_ack(&s, ns, st, "g1", &[5, 6, 7]), 3);
    create_group(
        &s,
        ns,
        st,
        "g2",
        &json!({"start": 29, "ack_timeout_ms": 100, "max_deliveries": 1}),
    );
    assert_eq!(offsets(&group_read(&s, ns, st, "g2", "w2", 1)), vec![29]);
    assert_eq!(wait_dead_letters(&s, ns, st, "g2", 1)["dead_letters"], json!([29]));
    create_group(&s, ns, st, "g3", &json!({}));
    assert_eq!(s.delete(&group_path(ns, st, "g3", "")).status, 200);
    // Another stream on (likely) another shard.
    for i in 0..3u64 {
        assert_eq!(append(&s, ns, "side", format!("side-{i}").as_bytes()).0, i);
    }

    let before = snapshot(&s, ns, st, &["g1", "g2"]);
    assert_eq!(before.0["first_offset"], 5);
    assert_eq!(before.0["consumer_groups"], json!(["g1", "g2"]));
    assert_eq!(
        before.0["retention"],
        json!({"max_age_ms": 3600000, "max_bytes": 1000000000, "max_records": 40})
    );
    assert_eq!(before.1.len(), 25);
    for r in &before.1 {
        assert_eq!(r.payload, want[&r.offset], "offset {}", r.offset);
    }
    let side = read_all(&s, ns, "side");

    s.sigkill();
    s.restart();

    let after = snapshot(&s, ns, st, &["g1", "g2"]);
    assert_eq!(after.0, before.0, "info after SIGKILL");
    assert_eq!(
        after.1, before.1,
        "records (offsets, timestamps, payloads) after SIGKILL"
    );
    assert_eq!(after.2, before.2, "groups after SIGKILL");
    assert_eq!(read_all(&s, ns, "side"), side);
    assert_not_found(&s.get(&group_path(ns, st, "g3", "")), "the deleted group stays deleted");

    // Group state carries on: g1's cursor, pending list and acks.
    let rs = group_read(&s, ns, st, "g1", "w1", 100);
    assert_eq!(
        offsets(&rs),
        (15..30).collect::<Vec<u64>>(),
        "g1 continues at its cursor"
    );
    assert!(rs.iter().all(|r| r.delivery_count == Some(1)));
    assert_eq!(group_ack(&s, ns, st, "g1", &[5, 6, 7]), 0, "acks survived");
    assert_eq!(
        group_ack(&s, ns, st, "g1", &(8..15).collect::<Vec<u64>>()),
        7,
        "pending survived"
    );
    assert!(
        group_read(&s, ns, st, "g2", "w2", 10).is_empty(),
        "dead letters stay dead"
    );
    // Offsets carry on, and the retention limit still applies: 5..=49 is 45 records > 40.
    let more: Vec<Vec<u8>> = (30..50u64).map(|i| format!("more-{i}").into_bytes()).collect();
    assert_eq!(append_batch(&s, ns, st, &more).0, 30);
    want.extend((30..50u64).zip(more));
    let i = wait_first_offset(&s, ns, st, 10, "max_records 40 after the restart");
    assert_eq!(
        (i["first_offset"].clone(), i["record_count"].clone()),
        (json!(10), json!(40)),
        "{i}"
    );

    let before = snapshot(&s, ns, st, &["g1", "g2"]);
    let status = s.sigterm();
    assert!(status.success(), "SIGTERM exit status {status}");
    s.restart();
    let after = snapshot(&s, ns, st, &["g1", "g2"]);
    assert_eq!(after.0, before.0, "info after SIGTERM");
    assert_eq!(after.1, before.1, "records after SIGTERM");
    assert_eq!(after.2, before.2, "groups after SIGTERM");
    assert_eq!(offsets(&after.1), (10..50).collect::<Vec<u64>>());
    for r in &after.1 {
        assert_eq!(r.payload, want[&r.offset], "offset {}", r.offset);
    }
    assert_eq!(append(&s, ns, st, b"tail").0, 50);
}

// ---------------------------------------------------------------------------------------------
// Volume.

/// The payload of the `i`th record of the large test: 16 to 40 bytes, distinct, deterministic.
fn small_payload(i: u64) -> Vec<u8> {
    let mut p = format!("{i:08x}:").into_bytes();
    let len = 16 + (i % 25) as usize;
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(b'a' + (x % 26) as u8);
    }
    p
}

/// Sends `requests` on one keep-alive connection to `api` with at most `window` unanswered at a
/// time; hands each response with its index to `on_response`.
fn pipeline(
    api: std::net::SocketAddr,
    requests: impl IntoIterator<Item = Vec<u8>>,
    window: usize,
    mut on_response: impl FnMut(usize, Response),
) {
    let mut conn = common::connect(api);
    let mut buf = Vec::new();
    let mut reqs = requests.into_iter();
    let (mut sent, mut got) = (0usize, 0usize);
    loop {
        while sent - got < window {
            let Some(req) = reqs.next() else { break };
            conn.write_all(&req).expect("write a pipelined request");
            sent += 1;
        }
        if sent == got {
            return;
        }
        let r = common::read_response_buffered(&mut conn, &mut buf).expect("read a pipelined response");
        on_response(got, r);
        got += 1;
    }
}

/// Reads `0..total` with `count=1000` on one connection (pipelined: each answer must end at
/// the next offset asked for), checking every record against `expected(offset)` and its
/// timestamp against `stamp(offset)`.
fn read_back(
    s: &Server,
    ns: &str,
    st: &str,
    total: u64,
    expected: &dyn Fn(u64) -> Vec<u8>,
    stamp: &dyn Fn(u64) -> u64,
) {
    let per = 1000u64;
    let n = total.div_ceil(per);
    let reqs = (0..n).map(|k| {
        common::request_bytes(
            "GET",
            &format!("{}?offset={}&count={per}", stream_path(ns, st), k * per),
            &[],
            b"",
        )
    });
    let mut checked = 0u64;
    pipeline(s.api, reqs, 8, |k, r| {
        assert_eq!(r.status, 200, "read at {}: {}", k as u64 * per, r.text());
        let v: Value = r.json();
        let rs = recs(&v);
        let from = k as u64 * per;
        let to = (from + per).min(total);
        assert_eq!(
            (rs.first().map(|r| r.offset), rs.len() as u64, u64_of(&v, "next_offset")),
            (Some(from), to - from, to),
            "read at {from}: a full answer ending where the next read starts"
        );
        for (j, r) in rs.iter().enumerate() {
            let off = from + j as u64;
            assert_eq!(r.offset, off);
            assert!(
                r.payload == expected(off),
                "payload at {off}: {:?}, want {:?}",
                String::from_utf8_lossy(&r.payload),
                String::from_utf8_lossy(&expected(off))
            );
            assert_eq!(r.timestamp_ms, stamp(off), "timestamp at {off}");
        }
        checked += rs.len() as u64;
    });
    assert_eq!(checked, total);
    let v = read(s, ns, st, &format!("offset={total}"));
    assert_eq!(v["records"], json!([]), "nothing past the end");
}

#[test]
fn a_million_small_records_over_many_segments_read_back_in_order() {
    let total = common::env_u64("FLO_STREAM_RECORDS", 1_000_000);
    let per = 1000u64;
    let batches = total.div_ceil(per);
    let started = Instant::now();
    let mut s = Server::builder()
        .shards(1)
        // 1 MiB segments take batches of at most a quarter of that, so values are kept small.
        .log_config("segment_bytes = 1048576\nbatch_max_bytes = 262144\n")
        .config("[limits]\nmax_value_bytes = 65536\n")
        .start();
    let (ns, st) = ("bulk", "million");
    let path = op_path(ns, st, "append");

    // Four connections append batches concurrently (batch b holds records b*1000..): offsets
    // interleave between connections, so the answers say where each batch went.
    let conns = 4u64;
    let mut placed: Vec<(u64, u64, u64, u64)> = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let (api, path) = (s.api, &path);
                scope.spawn(move || {
                    let mine: Vec<u64> = (c..batches).step_by(conns as usize).collect();
                    let reqs = mine.iter().map(|&b| {
                        let records: Vec<Value> = (b * per..((b + 1) * per).min(total))
                            .map(|i| json!({ "payload": B64.encode(small_payload(i)) }))
                            .collect();
                        let body = json!({ "records": records }).to_string();
                        common::request_bytes("POST", path, &[("Content-Type", "application/json")], body.as_bytes())
                    });
                    let mut out = Vec::new();
                    pipeline(api, reqs, 4, |k, r| {
                        assert_eq!(r.status, 200, "append of batch {}: {}", mine[k], r.text());
                        let v = r.json();
                        out.push((
                            mine[k],
                            u64_of(&v, "first_offset"),
                            u64_of(&v, "last_offset"),
                            u64_of(&v, "timestamp_ms"),
                        ));
                    });
                    out
                })
            })
            .collect();
        for h in handles {
            placed.extend(h.join().expect("appender thread"));
        }
    });
    placed.sort_by_key(|p| p.1);
    assert_eq!(placed.len() as u64, batches);
    // batch_at[k] = the batch stored at offsets k*1000..; its timestamp.
    let mut batch_at = Vec::with_capacity(batches as usize);
    let mut stamp_at = Vec::with_capacity(batches as usize);
    for (k, (b, first, last, ts)) in placed.iter().enumerate() {
        let len = ((b + 1) * per).min(total) - b * per;
        assert_eq!(
            (*first, *last),
            (k as u64 * per, k as u64 * per + len - 1),
            "batch {b} (of {len}) landed at {first}..={last}: batches are contiguous and whole"
        );
        batch_at.push(*b);
        stamp_at.push(*ts);
    }
    let appended = started.elapsed();
    let expected = |off: u64| small_payload(batch_at[(off / per) as usize] * per + off % per);
    let stamp = |off: u64| stamp_at[(off / per) as usize];

    let i = info(&s, ns, st);
    assert_eq!(
        (
            i["first_offset"].clone(),
            i["last_offset"].clone(),
            i["record_count"].clone()
        ),
        (json!(0), json!(total - 1), json!(total)),
        "{i}"
    );
    let segments = std::fs::read_dir(s.data_dir.join("shard-000"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
        })
        .unwrap_or(0);
    if total >= 1_000_000 {
        assert!(segments >= 10, "{total} records span only {segments} segments of 1 MiB");
    }
    read_back(&s, ns, st, total, &expected, &stamp);
    let read_once = started.elapsed();

    s.sigkill();
    s.restart();
    let i2 = info(&s, ns, st);
    assert_eq!(i2, i, "info after SIGKILL");
    read_back(&s, ns, st, total, &expected, &stamp);
    assert_eq!(append(&s, ns, st, b"one more").0, total);
    println!(
        "stream-million: {total} records, {segments} segment files, appended in {:.1} s, read in {:.1} s, \
         restarted and read again in {:.1} s",
        appended.as_secs_f64(),
        (read_once - appended).as_secs_f64(),
        (started.elapsed() - read_once).as_secs_f64()
    );
}

/// Appends that find the log's open batch full wait for room and are decided again: every one
/// is answered, in its own offsets, with its own bytes, and the server stays up.
#[test]
fn large_appends_that_wait_for_room_in_the_batch_all_land() {
    let s = Server::builder()
        .shards(1)
        .log_config("segment_bytes = 1048576\nbatch_max_bytes = 65536\n")
        .config("[limits]\nmax_value_bytes = 32768\n")
        .start();
    let api = s.api;
    // Each append is ~27 KiB of payload (~36 KiB in base64): two fit an open batch of 64 KiB,
    // a third waits. 6 writers at once keep the batch full.
    let writers: Vec<_> = (0..6u8)
        .map(|w| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..12u8 {
                    let payload = vec![w * 16 + i % 16; 27_000];
                    let body = json!({ "payload": B64.encode(&payload) }).to_string();
                    let r = common::try_request(
                        api,
                        "POST",
                        &op_path("big", "s", "append"),
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    )
                    .expect("the server answers");
                    assert_eq!(r.status, 200, "{}", r.text());
                    got.push((u64_of(&r.json(), "offset"), payload[0]));
                }
                got
            })
        })
        .collect();
    let mut appended: BTreeMap<u64, u8> = BTreeMap::new();
    for w in writers {
        for (offset, byte) in w.join().expect("writer") {
            assert!(appended.insert(offset, byte).is_none(), "offset {offset} twice");
        }
    }
    assert_eq!(
        appended.keys().copied().collect::<Vec<_>>(),
        (0..72).collect::<Vec<_>>()
    );
    let records = read_all(&s, "big", "s");
    assert_eq!(records.len(), 72);
    for r in &records {
        assert_eq!(r.payload, vec![appended[&r.offset]; 27_000], "record {}", r.offset);
    }
}
