//! The HTTP/1.1 layer against the real binary, in raw bytes: keep-alive and close, HTTP/1.0,
//! pipelining, Content-Length and chunked bodies, `Expect: 100-continue`, limits, timeouts.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{is_closed, parse_all, read_response_buffered, read_to_close, Server};

fn server() -> Server {
    Server::builder()
        .config("[http]\nmax_body_bytes = 65536\nrequest_timeout_ms = 800\nidle_timeout_ms = 1500\n")
        .start()
}

const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn keep_alive_is_the_http11_default() {
    let s = server();
    let mut c = s.connect();
    let mut buf = Vec::new();
    for _ in 0..5 {
        c.write_all(GET_HEALTH).unwrap();
        let r = read_response_buffered(&mut c, &mut buf).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert!(r.header("Date").is_some_and(|d| d.ends_with(" GMT")));
        assert_eq!(r.header("Content-Length").unwrap(), r.body.len().to_string());
    }
}

#[test]
fn connection_close_is_honoured() {
    let s = server();
    let out = s.raw(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let rs = parse_all(&out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
    assert_eq!(rs[0].header("Connection"), Some("close"));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let s = server();
    let out = s.raw(b"GET /health HTTP/1.0\r\n\r\n");
    let rs = parse_all(&out);
    assert_eq!(rs.len(), 1, "one answer then close");
    assert!(out.starts_with(b"HTTP/1.1 200"));

    let mut c = s.connect();
    let mut buf = Vec::new();
    for _ in 0..2 {
        c.write_all(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_response_buffered(&mut c, &mut buf).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = server();
    let mut req = Vec::new();
    let paths = [
        "/health",
        "/api/v1/status",
        "/nope",
        "/api/v1/cluster/status",
        "/health",
    ];
    for p in paths {
        req.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    req.extend_from_slice(
        b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n{\"name\":\"pipe1\"}\n",
    );
    req.extend_from_slice(b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let out = s.raw(&req);
    let rs = parse_all(&out);
    let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 404, 200, 200, 201, 200]);
    assert!(rs[1].json()["shard_count"].is_number());
    assert!(rs[3].json()["nodes"].is_array());
}

#[test]
fn pipelined_request_split_across_writes() {
    let s = server();
    let mut c = s.connect();
    let req = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /api/v1/status HTTP/1.1\r\nHost: t\r\n\r\n";
    for chunk in req.chunks(7) {
        c.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut buf = Vec::new();
    assert_eq!(read_response_buffered(&mut c, &mut buf).unwrap().status, 200);
    assert!(read_response_buffered(&mut c, &mut buf).unwrap().json()["version"].is_string());
}

#[test]
fn content_length_and_chunked_bodies_reach_the_handler() {
    let s = server();
    let r = s.post_json("/api/v1/namespaces", r#"{"name":"cl-body"}"#);
    assert_eq!(r.status, 201);
    let out = s.raw(
        b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          3;x=y\r\n{\"n\r\n10\r\name\":\"chunky-1\"}\r\n0\r\nX-Trailer: ignored\r\n\r\n",
    );
    let rs = parse_all(&out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 201, "{}", rs[0].text());
    assert_eq!(rs[0].json()["name"], "chunky-1");
    let names = s.get("/api/v1/namespaces").json();
    let names: Vec<&str> = names["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"cl-body") && names.contains(&"chunky-1"), "{names:?}");
}

#[test]
fn expect_100_continue_gets_an_interim_answer_before_the_body() {
    let s = server();
    let mut c = s.connect();
    let body = br#"{"name":"expecting"}"#;
    c.write_all(
        format!(
            "POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(body).unwrap();
    let mut buf = Vec::new();
    let r = read_response_buffered(&mut c, &mut buf).unwrap();
    assert_eq!(r.status, 201);
}

#[test]
fn oversized_body_is_refused_before_it_is_sent() {
    let s = server();
    let mut c = s.connect();
    c.write_all(
        b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 65537\r\n\r\n",
    )
    .unwrap();
    let out = read_to_close(&mut c);
    let rs = parse_all(&out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 413);
    assert_eq!(rs[0].json()["error"], "payload_too_large");
    assert!(
        !out.starts_with(b"HTTP/1.1 100"),
        "no 100 Continue for a body we refuse"
    );

    // Chunked: discovered while decoding.
    let mut req = b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"8000\r\n");
        req.extend(std::iter::repeat_n(b'a', 0x8000));
        req.extend_from_slice(b"\r\n");
    }
    let rs = parse_all(&s.raw(&req));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 413);
}

#[test]
fn body_at_the_limit_is_accepted() {
    let s = server();
    // A 65536-byte JSON body: the name followed by spaces.
    let mut body = br#"{"name":"big-body"}"#.to_vec();
    body.resize(65536, b' ');
    let r = s.request("POST", "/api/v1/namespaces", &[], &body);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn head_limits_have_their_own_answers() {
    let s = server();
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 9000));
    long_line.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    let rs = parse_all(&s.raw(&long_line));
    assert_eq!(rs[0].status, 414);

    let mut many = b"GET /health HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let rs = parse_all(&s.raw(&many));
    assert_eq!(rs[0].status, 431);
    assert_eq!(rs[0].json()["error"], "headers_too_large");

    let mut big = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'v', 17000));
    big.extend_from_slice(b"\r\n\r\n");
    let rs = parse_all(&s.raw(&big));
    assert_eq!(rs[0].status, 431);

    // Just under the limits is fine.
    let mut ok = b"GET /health HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..98 {
        ok.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    ok.extend_from_slice(b"Connection: close\r\n\r\n");
    assert_eq!(parse_all(&s.raw(&ok))[0].status, 200);
}

#[test]
fn slow_head_or_body_gets_408_and_close() {
    let s = server();
    let started = Instant::now();
    let mut c = s.connect();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
    let out = read_to_close(&mut c);
    let rs = parse_all(&out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 408);
    assert_eq!(rs[0].header("Connection"), Some("close"));
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "not before the request timeout"
    );

    let mut c = s.connect();
    c.write_all(b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"na")
        .unwrap();
    let rs = parse_all(&read_to_close(&mut c));
    assert_eq!(rs[0].status, 408);
}

#[test]
fn a_slow_drip_does_not_extend_the_request_deadline() {
    let s = server();
    let mut c = s.connect();
    let started = Instant::now();
    let mut sent_all = true;
    for b in b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ".iter() {
        if c.write_all(&[*b]).is_err() {
            sent_all = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let _ = sent_all;
    let rs = parse_all(&read_to_close(&mut c));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn idle_keep_alive_connections_are_closed_quietly() {
    let s = server();
    let mut c = s.connect();
    c.write_all(GET_HEALTH).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response_buffered(&mut c, &mut buf).unwrap().status, 200);
    let started = Instant::now();
    assert!(is_closed(&mut c), "idle connection must be closed");
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert!(buf.is_empty(), "no response on idle close");
}

#[test]
fn head_requests_get_headers_only() {
    let s = server();
    let out = s.raw(b"HEAD /api/v1/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(len > 10);
    assert!(text.ends_with("\r\n\r\n"), "no body after the head: {text:?}");
}

#[test]
fn protocol_errors_close_and_the_server_keeps_serving() {
    let s = server();
    for bad in [
        &b"GET / HTTP/1.1\nHost: t\r\n\r\n"[..],
        b"POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
    ] {
        let mut c = s.connect();
        c.write_all(bad).unwrap();
        let out = read_to_close(&mut c);
        let rs = parse_all(&out);
        assert_eq!(rs.len(), 1, "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(rs[0].status, 400);
        assert_eq!(rs[0].header("Connection"), Some("close"));
        let v = rs[0].json();
        assert_eq!(v["error"], "bad_request");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(s.get("/health").status, 200);
    }
    let m = s.get("/api/v1/metrics").json();
    assert!(m["protocol_errors_total"].as_u64().unwrap() >= 4);
}

#[test]
fn bodies_in_flight_share_a_memory_budget() {
    let s = Server::builder()
        .config("[http]\nmax_body_bytes = 65536\nmax_buffered_body_bytes = 100000\n")
        .start();
    let body_of = |name: &str| {
        let mut b = format!(r#"{{"name":"{name}"}}"#).into_bytes();
        b.resize(60_000, b' ');
        b
    };
    let head = |len: usize| {
        format!("POST /api/v1/namespaces HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n")
    };
    // A holds 60 000 bytes of the budget: its 100 Continue says the server took its share.
    let mut a = s.connect();
    a.write_all(head(60_000).as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    a.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

    // B would overdraw it: 429 at once, before its body is sent.
    let mut b = s.connect();
    b.write_all(head(60_000).as_bytes()).unwrap();
    let rs = parse_all(&read_to_close(&mut b));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 429);
    assert_eq!(rs[0].json()["error"], "overloaded");
    assert_eq!(rs[0].header("Retry-After"), Some("1"));

    // Small bodies are not held back meanwhile.
    assert_eq!(s.post_json("/api/v1/namespaces", r#"{"name":"small-one"}"#).status, 201);

    // A finishes; its share comes back and B's retry goes through.
    a.write_all(&body_of("budget-a")).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response_buffered(&mut a, &mut buf).unwrap().status, 201);
    let r = s.request("POST", "/api/v1/namespaces", &[], &body_of("budget-b"));
    assert_eq!(r.status, 201, "{}", r.text());
}
