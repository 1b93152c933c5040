//! Slow clients against a server with short timeouts: hundreds of connections that send a
//! head or a body a few bytes short and then stall (Slowloris, R-U-Dead-Yet), connections that
//! never send anything, and connections that pipeline large responses and never read them
//! (slow read). While they are open, a probe request on a fresh connection must be answered;
//! then the server must end every one of them by itself: 408 and close for the stalled
//! requests, a silent close for the idle ones, a dropped connection for the readers that do
//! not read. Without `request_timeout_ms`, `idle_timeout_ms` or the write timeout the
//! connections would stay open and the reads below would time out instead of seeing EOF.
//!
//! Nothing here measures time; `scripts/slow-clients.sh` does that with slowhttptest.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

const CONFIG: &str = "[http]\nrequest_timeout_ms = 1000\nidle_timeout_ms = 2000\n";

/// How long a client waits for the server to end a connection before calling it a failure:
/// far above the configured timeouts.
const GIVE_UP: Duration = Duration::from_secs(30);

/// How a connection ended, and what the server sent before that.
struct Ending {
    bytes: Vec<u8>,
    closed: bool,
    why: String,
}

/// Reads until the server closes (EOF or reset) or `GIVE_UP` passes without data.
fn read_until_closed(s: &mut TcpStream) -> Ending {
    s.set_read_timeout(Some(GIVE_UP)).expect("read timeout");
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                return Ending {
                    bytes,
                    closed: true,
                    why: "eof".into(),
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return Ending {
                    bytes,
                    closed: true,
                    why: "reset".into(),
                }
            }
            Err(e) => {
                return Ending {
                    bytes,
                    closed: false,
                    why: e.to_string(),
                }
            }
        }
    }
}

fn open(server: &Server, first_bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(server.api).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    if !first_bytes.is_empty() {
        s.write_all(first_bytes).expect("write");
    }
    s
}

/// Open API connections as the server's metrics say.
fn connections_active(server: &Server) -> u64 {
    let mut s = common::connect(server.metrics);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let resp = common::read_response(&mut s).expect("metrics");
    assert_eq!(resp.status, 200);
    resp.text()
        .lines()
        .filter(|l| l.starts_with("flo_http_connections_active"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const SLOW_HEADER: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a";
const SLOW_BODY: &[u8] =
    b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na";

#[test]
fn stalled_and_idle_connections_are_closed_while_others_are_served() {
    let server = Server::builder().config(CONFIG).start();
    let mut header = Vec::new();
    let mut body = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..150 {
        header.push(open(&server, SLOW_HEADER));
        body.push(open(&server, SLOW_BODY));
    }
    for _ in 0..50 {
        idle.push(open(&server, b""));
    }

    // With 350 stalled connections open, a fresh one is still served.
    let probe = server.get("/health");
    assert_eq!(probe.status, 200, "probe answered while slow clients are connected");

    for (kind, conns) in [("slow header", &mut header), ("slow body", &mut body)] {
        for (i, s) in conns.iter_mut().enumerate() {
            let end = read_until_closed(s);
            assert!(
                end.closed,
                "{kind} connection {i} not closed by the server: {}",
                end.why
            );
            let responses = common::parse_all(&end.bytes);
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![408], "{kind} connection {i}: one 408 and nothing else");
            assert_eq!(
                responses[0].header("connection"),
                Some("close"),
                "{kind} connection {i}"
            );
        }
    }
    for (i, s) in idle.iter_mut().enumerate() {
        let end = read_until_closed(s);
        assert!(end.closed, "idle connection {i} not closed by the server: {}", end.why);
        assert!(
            end.bytes.is_empty(),
            "idle connection {i} got an answer it did not ask for"
        );
    }
    assert_eq!(
        server.get("/health").status,
        200,
        "server still serves after the slow clients"
    );
}

#[test]
fn readers_that_do_not_read_are_dropped_while_others_are_served() {
    let server = Server::builder().config(CONFIG).start();
    // A value of 768 KiB: each GET answers about 1 MiB of JSON.
    let value = "QUJD".repeat(768 * 1024 / 3);
    let put = server.put_json("/api/v1/kv/default/big", &format!("{{\"value\":\"{value}\"}}"));
    assert_eq!(put.status, 200, "{}", put.text());
    let baseline = connections_active(&server);

    // 24 requests pipelined on each connection: far more than the socket buffers hold, so
    // the server blocks writing until its write timeout ends the connection.
    const PIPELINED: usize = 24;
    let request = b"GET /api/v1/kv/default/big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(PIPELINED);
    let mut readers: Vec<TcpStream> = (0..20).map(|_| open(&server, &request)).collect();

    let probe = server.get("/health");
    assert_eq!(probe.status, 200, "probe answered while slow readers are connected");

    common::poll("the server drops the connections nobody reads", GIVE_UP, || {
        (connections_active(&server) <= baseline).then_some(())
    });
    for (i, s) in readers.iter_mut().enumerate() {
        let end = read_until_closed(s);
        assert!(end.closed, "slow reader {i} still open: {}", end.why);
        let complete = common::parse_all(&end.bytes).len();
        assert!(
            complete < PIPELINED,
            "slow reader {i} got all {complete} responses: the server never gave up on it"
        );
    }
    assert_eq!(
        server.get("/health").status,
        200,
        "server still serves after the slow readers"
    );
}
