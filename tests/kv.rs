//! KV through the real binary: versions, CAS, if_not_exists, TTL, deletes, scans across shards,
//! bad input, and durability across restarts and SIGKILL.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Server;
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn put(s: &Server, ns: &str, key: &str, body: &str) -> common::Response {
    s.put_json(&format!("/api/v1/kv/{ns}/{key}"), body)
}

fn value_json(v: &[u8]) -> String {
    format!(r#"{{"value":"{}"}}"#, B64.encode(v))
}

fn get(s: &Server, ns: &str, key: &str) -> common::Response {
    s.get(&format!("/api/v1/kv/{ns}/{key}"))
}

#[test]
fn versions_cas_and_deletes_follow_the_contract() {
    let s = Server::start();
    let r = put(&s, "default", "user%3A123", &value_json(b"v1"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"key": "user:123", "version": 1}));
    assert_eq!(
        put(&s, "default", "user%3A123", &value_json(b"v2")).json()["version"],
        2
    );

    let g = get(&s, "default", "user%3A123").json();
    assert_eq!(g["key"], "user:123");
    assert_eq!(B64.decode(g["value"].as_str().unwrap()).unwrap(), b"v2");
    assert_eq!(g["version"], 2);
    assert_eq!(g["ttl_remaining"], Value::Null);

    // CAS: right version wins, wrong one is 409 with the current version.
    let r = put(&s, "default", "user%3A123", r#"{"value":"djM=","cas_version":1}"#);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "conflict");
    assert_eq!(r.json()["current_version"], 2);
    assert_eq!(
        put(&s, "default", "user%3A123", r#"{"value":"djM=","cas_version":2}"#).json()["version"],
        3
    );

    // if_not_exists and cas_version 0 mean "must not exist".
    assert_eq!(
        put(&s, "default", "user%3A123", r#"{"value":"eA==","if_not_exists":true}"#).status,
        409
    );
    assert_eq!(
        put(&s, "default", "user%3A123", r#"{"value":"eA==","cas_version":0}"#).status,
        409
    );
    assert_eq!(
        put(&s, "default", "fresh", r#"{"value":"eA==","cas_version":0}"#).json()["version"],
        1
    );

    // Delete writes a tombstone with the next version; re-create continues after it.
    let d = s.delete("/api/v1/kv/default/user%3A123?cas_version=2");
    assert_eq!(d.status, 409);
    assert_eq!(d.json()["current_version"], 3);
    let d = s.delete("/api/v1/kv/default/user%3A123");
    assert_eq!(
        d.json(),
        serde_json::json!({"key": "user:123", "deleted": true, "version": 4})
    );
    let g = get(&s, "default", "user%3A123");
    assert_eq!(g.status, 404);
    assert_eq!(g.json()["error"], "not_found");
    assert_eq!(g.json()["key"], "user:123");
    assert_eq!(s.delete("/api/v1/kv/default/user%3A123").status, 404);
    assert_eq!(
        put(&s, "default", "user%3A123", &value_json(b"back")).json()["version"],
        5
    );

    // A key with a slash, sent as %2F, and binary values round-trip.
    let bin: Vec<u8> = (0..=255).collect();
    assert_eq!(put(&s, "app", "a%2Fb", &value_json(&bin)).status, 200);
    let g = get(&s, "app", "a%2Fb").json();
    assert_eq!(g["key"], "a/b");
    assert_eq!(B64.decode(g["value"].as_str().unwrap()).unwrap(), bin);
    // Empty values are values.
    assert_eq!(put(&s, "app", "empty", r#"{"value":""}"#).status, 200);
    assert_eq!(get(&s, "app", "empty").json()["value"], "");
}

#[test]
fn ttl_counts_down_and_expires() {
    let s = Server::start();
    assert_eq!(
        put(&s, "default", "short", r#"{"value":"eA==","ttl_seconds":1}"#).status,
        200
    );
    assert_eq!(
        put(&s, "default", "long", r#"{"value":"eA==","ttl_seconds":3600}"#).status,
        200
    );
    let g = get(&s, "default", "long").json();
    let left = g["ttl_remaining"].as_u64().unwrap();
    assert!((3599..=3600).contains(&left), "{g}");
    assert_eq!(get(&s, "default", "short").json()["ttl_remaining"], 1);
    // Poll until the short key is gone (its expiry is an absolute time in the entry).
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&s, "default", "short").status == 200 {
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Expired keys leave scans too, and a new write continues the version.
    let scan = s.get("/api/v1/kv/default").json();
    let keys: Vec<&str> = scan["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["long"]);
    assert_eq!(
        put(&s, "default", "short", r#"{"value":"eA==","if_not_exists":true}"#).json()["version"],
        2
    );
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let s = Server::builder().config("[limits]\nmax_value_bytes = 1000\n").start();
    for (body, what) in [
        (r#"{"value":"not base64!"}"#, "bad base64"),
        (r#"{"value":"eA"}"#, "unpadded base64"),
        (r#"{"value":"eA==","ttl":5}"#, "unknown field"),
        (r#"{"value":5}"#, "wrong type"),
        (r#"{}"#, "missing value"),
        (
            r#"{"value":"eA==","if_not_exists":true,"cas_version":3}"#,
            "contradiction",
        ),
        ("", "empty body"),
    ] {
        let r = put(&s, "default", "k", body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
    }
    let r = put(&s, "default", "k", &value_json(&[7u8; 1001]));
    assert_eq!(r.status, 413);
    assert_eq!(put(&s, "default", "k", &value_json(&[7u8; 1000])).status, 200);
    assert_eq!(put(&s, "default", &"k".repeat(1025), &value_json(b"x")).status, 400);
    assert_eq!(put(&s, "bad%2Fns", "k", &value_json(b"x")).status, 400);
    assert_eq!(s.get("/api/v1/kv/default?limit=1001").status, 400);
    assert_eq!(s.get("/api/v1/kv/default?limit=0").status, 400);
    assert_eq!(s.delete("/api/v1/kv/default/k?cas_version=x").status, 400);
    // Only the one good write happened.
    assert_eq!(get(&s, "default", "k").json()["version"], 1);
}

#[test]
fn scans_merge_every_shard_in_key_order_with_pages() {
    let s = Server::builder().shards(3).start();
    let mut expected = Vec::new();
    for i in 0..120 {
        let key = format!("item:{i:03}");
        assert_eq!(put(&s, "shop", &key, &value_json(key.as_bytes())).status, 200);
        expected.push(key);
    }
    assert_eq!(put(&s, "shop", "other", &value_json(b"x")).status, 200);
    // Every shard holds some of them.
    let m = s.get("/api/v1/metrics").json();
    let writers = m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["log_entries_total"].as_u64().unwrap() > 0)
        .count();
    assert_eq!(writers, 3);

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            None => "prefix=item:&limit=50&values=true".to_string(),
            Some(a) => format!("prefix=item:&limit=50&values=true&after={a}"),
        };
        let page = s.get(&format!("/api/v1/kv/shop?{q}")).json();
        for k in page["keys"].as_array().unwrap() {
            let key = k["key"].as_str().unwrap().to_string();
            assert_eq!(B64.decode(k["value"].as_str().unwrap()).unwrap(), key.as_bytes());
            assert_eq!(k["size"], key.len());
            seen.push(key);
        }
        assert_eq!(page["count"], page["keys"].as_array().unwrap().len());
        if page["has_more"] == false {
            assert_eq!(page["next_after"], Value::Null);
            break;
        }
        after = Some(page["next_after"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, expected);
    let all = s.get("/api/v1/kv/shop").json();
    assert_eq!(all["count"], 100, "default limit");
    assert!(all["keys"][0].get("value").is_none(), "values only on request");
    assert_eq!(s.get("/api/v1/kv/nowhere").json()["count"], 0);
}

/// Key → (version, value) of the last acknowledged write.
type Acked = BTreeMap<String, (u64, Vec<u8>)>;

#[test]
fn acknowledged_writes_survive_restart_and_sigkill() {
    let mut s = Server::builder().shards(2).start();
    let acked: Arc<Mutex<Acked>> = Arc::default();
    for round in 0..2 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..6 {
            let (acked, stop, addr) = (acked.clone(), stop.clone(), s.api);
            threads.push(std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Each thread rewrites a few keys of its own.
                    let key = format!("t{t}-k{}", i % 5);
                    let val = format!("round{round}-{i}").into_bytes();
                    i += 1;
                    let body = value_json(&val);
                    let path = format!("/api/v1/kv/default/{key}");
                    match common::try_request(addr, "PUT", &path, &[], body.as_bytes()) {
                        Ok(r) if r.status == 200 => {
                            let v = r.json()["version"].as_u64().unwrap();
                            acked.lock().unwrap().insert(key, (v, val));
                        }
                        Ok(r) => assert!(r.status >= 500, "unexpected {}", r.status),
                        Err(_) => break,
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.lock().unwrap().len() < 30 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        if round == 0 {
            s.sigkill();
        } else {
            s.signal(libc::SIGTERM);
            s.wait_exit(Duration::from_secs(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        s.restart();
        for (key, (version, val)) in acked.lock().unwrap().iter() {
            let g = get(&s, "default", key);
            assert_eq!(g.status, 200, "{key} lost");
            let g = g.json();
            // A write may have landed after the last acknowledged one (its answer was lost in
            // the kill), never before it.
            assert!(
                g["version"].as_u64().unwrap() >= *version,
                "{key}: {g} older than acked {version}"
            );
            if g["version"].as_u64().unwrap() == *version {
                assert_eq!(B64.decode(g["value"].as_str().unwrap()).unwrap(), *val, "{key}");
            }
        }
    }
}

/// Polls /api/v1/metrics until the shards hold `n` long-polling readers in total.
fn wait_for_waiters(s: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.get("/api/v1/metrics").json();
        let total: u64 = m["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["waiters"].as_u64().unwrap())
            .sum();
        if total == n {
            return;
        }
        assert!(Instant::now() < deadline, "waiters never reached {n}: {m}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn wait_ms_returns_when_the_key_appears() {
    let s = Server::start();
    let api = s.api;
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = common::try_request(api, "GET", "/api/v1/kv/default/later?wait_ms=20000", &[], b"").unwrap();
        (r, started.elapsed())
    });
    // Write once the waiter is registered on its shard, so the wake path is what answers it.
    wait_for_waiters(&s, 1);
    assert_eq!(put(&s, "default", "later", &value_json(b"here")).status, 200);
    let (r, took) = waiter.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(B64.decode(r.json()["value"].as_str().unwrap()).unwrap(), b"here");
    assert!(
        took < Duration::from_secs(10),
        "woken by the write, not by the deadline"
    );

    // Timing out on a key that never comes: 404.
    let r = s.get("/api/v1/kv/default/never?wait_ms=300");
    assert_eq!(r.status, 404);
    // Out of range.
    assert_eq!(s.get("/api/v1/kv/default/never?wait_ms=60001").status, 400);
    assert_eq!(s.get("/api/v1/kv/default/never?watch_version=1").status, 400);
}

#[test]
fn watch_version_wakes_on_the_next_change() {
    let s = Server::start();
    assert_eq!(put(&s, "default", "cfg", &value_json(b"v1")).json()["version"], 1);
    // Already past the watched version: answers at once.
    let r = s.get("/api/v1/kv/default/cfg?watch_version=0&wait_ms=20000");
    assert_eq!(r.json()["version"], 1);
    let api = s.api;
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = common::try_request(
            api,
            "GET",
            "/api/v1/kv/default/cfg?watch_version=1&wait_ms=20000",
            &[],
            b"",
        )
        .unwrap();
        (r, started.elapsed())
    });
    wait_for_waiters(&s, 1);
    assert_eq!(put(&s, "default", "cfg", &value_json(b"v2")).json()["version"], 2);
    let (r, took) = waiter.join().unwrap();
    assert_eq!(r.json()["version"], 2);
    assert_eq!(B64.decode(r.json()["value"].as_str().unwrap()).unwrap(), b"v2");
    assert!(took < Duration::from_secs(10));
    // On timeout the current state comes back with the same version.
    let r = s.get("/api/v1/kv/default/cfg?watch_version=2&wait_ms=300");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], 2);
    // A delete is a change too: the watcher sees the key gone.
    let waiter = std::thread::spawn(move || {
        common::try_request(
            api,
            "GET",
            "/api/v1/kv/default/cfg?watch_version=2&wait_ms=20000",
            &[],
            b"",
        )
        .unwrap()
    });
    wait_for_waiters(&s, 1);
    assert_eq!(s.delete("/api/v1/kv/default/cfg").status, 200);
    assert_eq!(waiter.join().unwrap().status, 404);
}

#[test]
fn waiters_are_bounded() {
    let s = Server::builder()
        .shards(1)
        .config("[limits]\nmax_waiters_per_shard = 2\n")
        .start();
    let api = s.api;
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                common::try_request(api, "GET", &format!("/api/v1/kv/default/w{i}?wait_ms=3000"), &[], b"").unwrap()
            })
        })
        .collect();
    // Once both wait on the shard, a third is refused at once.
    wait_for_waiters(&s, 2);
    let r = s.get("/api/v1/kv/default/w9?wait_ms=1000");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"], "overloaded");
    assert_eq!(r.header("Retry-After"), Some("1"));
    for w in waiters {
        assert_eq!(w.join().unwrap().status, 404);
    }
}

#[test]
fn a_first_write_creates_the_namespace_and_listings_count_keys() {
    let mut s = Server::builder().shards(2).start();
    for i in 0..7 {
        assert_eq!(put(&s, "fresh.app", &format!("k{i}"), &value_json(b"x")).status, 200);
    }
    assert_eq!(s.delete("/api/v1/kv/fresh.app/k0").status, 200);
    let list = |s: &Server| -> BTreeMap<String, u64> {
        s.get("/api/v1/namespaces").json()["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap().to_string(), n["kv_keys"].as_u64().unwrap()))
            .collect()
    };
    let before = list(&s);
    assert_eq!(before.get("fresh.app"), Some(&6), "{before:?}");
    assert_eq!(before.get("default"), Some(&0));
    // Creating it explicitly now is a conflict: it exists.
    assert_eq!(s.post_json("/api/v1/namespaces", r#"{"name":"fresh.app"}"#).status, 409);
    s.sigkill();
    s.restart();
    assert_eq!(list(&s), before, "the namespace and its keys survive");
}

#[test]
fn expired_keys_are_swept_after_the_tombstone_retention_and_start_over() {
    let s = Server::builder()
        .shards(1)
        .config("[kv]\ntombstone_retention_ms = 300")
        .start();
    for i in 0..50 {
        let body = r#"{"value":"eA==","ttl_seconds":1}"#;
        assert_eq!(put(&s, "tmp", &format!("k{i}"), body).status, 200);
        assert_eq!(put(&s, "tmp", &format!("k{i}"), body).json()["version"], 2);
    }
    assert_eq!(put(&s, "tmp", "keep", &value_json(b"x")).status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let slots = s.get("/api/v1/metrics").json()["shards"][0]["kv_slots"]
            .as_u64()
            .unwrap();
        if slots == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "expired keys never swept ({slots} slots)");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&s, "tmp", "k7").status, 404);
    assert_eq!(get(&s, "tmp", "keep").status, 200);
    // Its record gone, a key written again is a new key: version 1, as the contract says of a
    // key's first write. The live key keeps counting.
    assert_eq!(put(&s, "tmp", "k7", &value_json(b"again")).json()["version"], 1);
    assert_eq!(put(&s, "tmp", "keep", &value_json(b"y")).json()["version"], 2);
}

#[test]
fn a_deleted_key_keeps_its_version_while_its_tombstone_is_kept() {
    let s = Server::builder().shards(1).start();
    for v in 1..=2 {
        assert_eq!(put(&s, "acct", "x", &value_json(b"x")).json()["version"], v);
    }
    let d = s.delete("/api/v1/kv/acct/x");
    assert_eq!((d.status, d.json()["version"].as_u64()), (200, Some(3)));
    // A key never written starts at 1, whatever happened to other keys (no namespace floor).
    for k in ["p", "q", "r"] {
        assert_eq!(put(&s, "acct", k, &value_json(b"v")).json()["version"], 1, "{k}");
    }
    // The default retention (a minute) keeps the tombstone: a stale CAS still fails, and the key
    // continues after its delete.
    let stale = put(&s, "acct", "x", r#"{"value":"eA==","cas_version":2}"#);
    assert_eq!(stale.status, 409);
    assert_eq!(put(&s, "acct", "x", &value_json(b"x")).json()["version"], 4);
}

/// Polls /api/v1/metrics until `f` holds for shard 0's row; returns that row.
fn wait_for_shard_row(s: &Server, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = s.get("/api/v1/metrics").json()["shards"][0].clone();
        if f(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {row}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn overwritten_and_deleted_values_are_counted_dead_in_their_segments() {
    let mut s = Server::builder()
        .shards(1)
        .config("[kv]\ntombstone_retention_ms = 0")
        .start();
    let value = value_json(&[7u8; 1000]);
    for _ in 0..10 {
        assert_eq!(put(&s, "acct", "hot", &value).status, 200);
    }
    assert_eq!(put(&s, "acct", "gone", &value).status, 200);
    assert_eq!(s.delete("/api/v1/kv/acct/gone").status, 200);
    // A KV_PUT of "acct"/"hot" with 1000 bytes is 24 + 4 + 3 + 1000 body bytes, 1056 stored with
    // its 24-byte header; the KV_DELETE_AT of "gone" is 20 + 4 + 4 body bytes, 56 stored; the
    // KV_SWEEP that removes its tombstone is 16 + 4 + (10 + 4) body bytes, 64 stored. Dead: the 9
    // overwritten "hot" values, the deleted "gone" value, its tombstone once swept, and the
    // sweep itself (nothing needs it once applied).
    let dead = 10 * 1056 + 56 + 64;
    let row = wait_for_shard_row(&s, "dead bytes counted", |r| r["log_dead_bytes"] == dead);
    let written = row["log_entry_bytes"].as_u64().unwrap();
    assert!(written > dead, "dead {dead} of {written}");
    assert!(row["kv_index_bytes"].as_u64().unwrap() > 0, "{row}");
    // Recovery rebuilds the same accounting from the log.
    s.sigkill();
    s.restart();
    wait_for_shard_row(&s, "dead bytes rebuilt", |r| r["log_dead_bytes"] == dead);
    assert_eq!(get(&s, "acct", "hot").json()["version"], 10);
    assert_eq!(get(&s, "acct", "gone").status, 404);
}
