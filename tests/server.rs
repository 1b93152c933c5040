//! The server's own endpoints, routing across shards, overload and stopping, against the real
//! binary.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{parse_all, read_response_buffered, read_to_close, Server};
use serde_json::Value;

#[test]
fn health_status_metrics_cluster() {
    let s = Server::builder().shards(2).arg("--partitions").arg("16").start();
    let h = s.get("/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json(), serde_json::json!({"status": "healthy"}));

    let st = s.get("/api/v1/status").json();
    assert_eq!(st["status"], "healthy");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["shard_count"], 2);
    assert_eq!(st["node_id"], 1);
    assert!(st["uptime_seconds"].is_u64());

    for _ in 0..20 {
        assert_eq!(s.get("/api/v1/status").status, 200);
    }
    let m = s.get("/api/v1/metrics").json();
    assert!(m["ops_total"].as_u64().unwrap() >= 21, "{m}");
    assert!(m["ops_per_second"].is_number());
    assert!(
        m["connections_active"].as_u64().unwrap() >= 1,
        "the asking connection is open"
    );
    assert!(m["memory_used_bytes"].as_u64().unwrap() > 1_000_000);
    let shards = m["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let parts: u64 = shards.iter().map(|r| r["partitions"].as_u64().unwrap()).sum();
    assert_eq!(parts, 16);
    let ops: u64 = shards.iter().map(|r| r["ops_total"].as_u64().unwrap()).sum();
    assert_eq!(ops, m["ops_total"].as_u64().unwrap());

    let c = s.get("/api/v1/cluster/status").json();
    assert_eq!(c["partition_count"], 16);
    assert_eq!(c["replication_factor"], 1);
    assert_eq!(c["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(c["nodes"][0]["address"], format!("127.0.0.1:{}", s.api.port()));
    assert_eq!(c["nodes"][0]["shards"], 2);
    assert_eq!(c["nodes"][0]["status"], "alive");

    let p = s.get("/api/v1/cluster/partitions").json();
    let rows = p["partitions"].as_array().unwrap();
    assert_eq!(rows.len(), 16);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["id"], i);
        assert_eq!(r["shard"], i % 2);
        assert_eq!(r["replicas"], serde_json::json!([1]));
    }
}

#[test]
fn ops_per_second_reflects_recent_load() {
    let s = Server::start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = s.connect();
    let mut buf = Vec::new();
    loop {
        for _ in 0..200 {
            c.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            read_response_buffered(&mut c, &mut buf).unwrap();
        }
        let m = s.get("/api/v1/metrics").json();
        if m["ops_per_second"].as_f64().unwrap() > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "ops_per_second stayed 0 under load: {m}");
    }
}

#[test]
fn unknown_routes_and_wrong_methods() {
    let s = Server::start();
    let r = s.get("/api/v1/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    assert!(r.json()["details"].is_object());

    let r = s.delete("/api/v1/status");
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"], "method_not_allowed");
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));

    let r = s.request("GET", "/api/v1/queue/default/tasks/enqueue", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));

    let r = s.request("OPTIONS", "/api/v1/kv/default/k", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, PUT, DELETE"));

    let r = s.get("/api/v1/kv/bad%2Fname/k");
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("namespace"));

    let r = s.get("/api/v1/stream/default/..%2F..%2Fetc");
    assert_eq!(r.status, 400);

    // A handler's own 400 carries its details in the error model.
    let r = s.post_json("/api/v1/ts/default/query", r#"{"query":"cpu[1h"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    assert_eq!(r.json()["details"]["position"], 6, "the end of the query");
}

#[test]
fn namespaces_create_list_conflict_and_validation() {
    let s = Server::start();
    let list = || common::namespace_names(&s);
    assert_eq!(list(), vec!["default"]);
    assert_eq!(s.post_json("/api/v1/namespaces", r#"{"name":"myapp"}"#).status, 201);
    let r = s.post_json("/api/v1/namespaces", r#"{"name":"myapp"}"#);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "conflict");
    assert_eq!(s.post_json("/api/v1/namespaces", r#"{"name":"default"}"#).status, 409);
    for bad in [
        r#"{"name":"a/b"}"#,
        r#"{"name":""}"#,
        r#"{"name":5}"#,
        r#"{"nam":"x"}"#,
        r#"{"name":"x","extra":1}"#,
        r#"not json"#,
        "",
    ] {
        let r = s.post_json("/api/v1/namespaces", bad);
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"], "bad_request");
    }
    let r = s.post_json("/api/v1/namespaces", r#"{"name":"x","ttl":1}"#);
    assert!(
        r.json()["message"].as_str().unwrap().contains("ttl"),
        "unknown field is named"
    );
    for n in ["zeta", "alpha", "m.i-d:d_le"] {
        assert_eq!(
            s.post_json("/api/v1/namespaces", &format!(r#"{{"name":"{n}"}}"#))
                .status,
            201
        );
    }
    assert_eq!(list(), vec!["alpha", "default", "m.i-d:d_le", "myapp", "zeta"]);
    let ns = s.get("/api/v1/namespaces").json();
    assert!(ns["namespaces"][0]["created_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
}

#[test]
fn objects_land_on_their_owner_shard_whoever_accepts() {
    let shards = 3;
    let partitions = 64;
    let s = Server::builder().shards(shards).arg("--partitions").arg("64").start();
    let mut owners_seen = std::collections::BTreeSet::new();
    for i in 0..60 {
        let name = format!("ns-{i}");
        let r = s.post_json("/api/v1/namespaces", &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(r.status, 201);
        let expected = common::spec_owner_shard(&name, "", partitions, shards as u64);
        let owner: u64 = r.header("Flo-Shard").unwrap().parse().unwrap();
        assert_eq!(owner, expected, "{name}");
        owners_seen.insert(owner);
        // Asking again through any shard finds it on its owner.
        assert_eq!(
            s.post_json("/api/v1/namespaces", &format!(r#"{{"name":"{name}"}}"#))
                .status,
            409
        );
    }
    assert_eq!(owners_seen.len(), shards, "60 names spread over every shard");
    // Forwarded work happened (a connection's shard differs from the owner most of the time).
    let m = s.get("/api/v1/metrics").json();
    let forwarded: u64 = m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["forwarded_total"].as_u64().unwrap())
        .sum();
    assert!(forwarded > 0, "{m}");
    // The fan-out listing sees all of them.
    let list = s.get("/api/v1/namespaces").json();
    assert_eq!(list["namespaces"].as_array().unwrap().len(), 61);
}

#[test]
fn connections_over_the_limit_get_429() {
    let s = Server::builder().config("[http]\nmax_connections = 4\n").start();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = s.connect();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_response_buffered(&mut c, &mut buf).unwrap().status, 200);
        held.push(c);
    }
    let mut extra = s.connect();
    let out = read_to_close(&mut extra);
    let rs = parse_all(&out);
    assert_eq!(rs.len(), 1, "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(rs[0].status, 429);
    assert_eq!(rs[0].json()["error"], "overloaded");
    assert_eq!(rs[0].header("Retry-After"), Some("1"));
    drop(held);
    // Once the held connections are gone, new ones are served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = common::try_request(s.api, "GET", "/health", &[], b"").unwrap();
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "connections never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let m: Value = s.get("/api/v1/metrics").json();
    assert!(m["overloaded_total"].as_u64().unwrap() >= 1);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let mut s = Server::start();
    // A request whose head is not complete yet is in flight (on a connection the server has
    // surely accepted: it answered a request on it first).
    let mut inflight = s.connect();
    let mut ibuf = Vec::new();
    inflight.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response_buffered(&mut inflight, &mut ibuf).unwrap().status, 200);
    inflight.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
    // An idle keep-alive connection.
    let mut idle = s.connect();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response_buffered(&mut idle, &mut buf).unwrap().status, 200);

    s.signal(libc::SIGTERM);
    // Once the listener is closed, the stop has begun.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(s.api).is_ok() {
        assert!(Instant::now() < deadline, "listener still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The idle connection is closed without an answer.
    assert!(read_to_close(&mut idle).is_empty());
    // The in-flight request is answered — 503 "stopping", and the connection closes.
    inflight.write_all(b"\r\n").unwrap();
    let rs = parse_all(&read_to_close(&mut inflight));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 503);
    assert_eq!(rs[0].json()["status"], "stopping");
    assert_eq!(rs[0].header("Connection"), Some("close"));
    assert_eq!(rs[0].header("Retry-After"), Some("1"));
    let status = s.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));

    // It starts again on the same data directory (the lock was released).
    s.restart();
    assert_eq!(s.get("/health").status, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn sigterm_waits_for_a_body_still_arriving() {
    let mut s = Server::start();
    let mut c = s.connect();
    let mut buf = Vec::new();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response_buffered(&mut c, &mut buf).unwrap().status, 200);
    c.write_all(b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n{\"name\"")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(s.api).is_ok() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    c.write_all(b":\"late1\"}\n").unwrap();
    let rs = parse_all(&read_to_close(&mut c));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 201, "{}", rs[0].text());
    assert_eq!(s.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
