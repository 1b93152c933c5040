//! The metrics port's `/metrics`, end to end: a real server does KV, queue, stream and
//! time-series work, and its Prometheus exposition shows it (request counts and latency per route
//! and status, queue depths per state, log figures, process figures) in a well-formed text format.
//!
//! With `promtool` on PATH its `check metrics` must accept the output; with `prometheus` on PATH
//! a real Prometheus scrapes the server and a metric is read back through its query API. Both
//! come with Debian's `prometheus` package; `FLO_REQUIRE_PROMTOOL=1` (set by `scripts/test`
//! after installing it) turns their absence into a failure instead of a skip.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{poll, Server};
use flo::metrics::exposition::{lint, samples, Sample};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// How long a figure may take to show (gauges are refreshed by once-a-second sweeps).
const SETTLE: Duration = Duration::from_secs(20);

fn scrape(s: &Server) -> String {
    let r = common::try_request(s.metrics, "GET", "/metrics", &[], b"").expect("metrics port");
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.header("Content-Type").unwrap_or("");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content type {ct}");
    let text = r.text();
    lint(&text).unwrap_or_else(|e| panic!("malformed exposition: {e}\n{text}"));
    text
}

/// The sum of the samples named `name` whose labels include `labels`; `None` if there is none.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = all
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn figures(s: &Server) -> Vec<Sample> {
    samples(&scrape(s)).expect("parse")
}

/// True when `FLO_REQUIRE_PROMTOOL=1`: the Prometheus tools must be there.
fn tools_required() -> bool {
    std::env::var("FLO_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1")
}

/// The path of `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `name` on PATH, or `None` after saying why the test is skipped (a failure when required).
fn tool(name: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        assert!(
            !tools_required(),
            "FLO_REQUIRE_PROMTOOL=1 but {name} is not on PATH (Debian package: prometheus)"
        );
        eprintln!("skipping: {name} is not on PATH (install Debian's prometheus package)");
    }
    found
}

/// Does some of everything; returns the statuses answered, by route label.
fn workload(s: &Server) -> Vec<(&'static str, u16)> {
    let mut seen = Vec::new();
    for k in ["a", "b", "c"] {
        let body = json!({ "value": B64.encode(k) }).to_string();
        seen.push(("kv_put", s.put_json(&format!("/api/v1/kv/metrics/{k}"), &body).status));
    }
    seen.push(("kv_get", s.get("/api/v1/kv/metrics/a").status));
    seen.push(("kv_get", s.get("/api/v1/kv/metrics/missing").status));
    for p in ["x", "y"] {
        let body = json!({ "payload": B64.encode(p) }).to_string();
        seen.push((
            "queue_enqueue",
            s.post_json("/api/v1/queue/metrics/jobs/enqueue", &body).status,
        ));
    }
    let r = s.post_json(
        "/api/v1/queue/metrics/jobs/dequeue",
        &json!({ "count": 1, "visibility_timeout_ms": 60_000 }).to_string(),
    );
    let leased = r.json()["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(leased, 1, "{}", r.text());
    seen.push(("queue_dequeue", r.status));
    for p in ["r1", "r2"] {
        let body = json!({ "payload": B64.encode(p) }).to_string();
        seen.push((
            "stream_append",
            s.post_json("/api/v1/stream/metrics/events/append", &body).status,
        ));
    }
    let r = s.request(
        "POST",
        "/api/v1/ts/metrics/write",
        &[("Content-Type", "text/plain")],
        b"cpu,host=h1 user=1.5,system=2.5",
    );
    seen.push(("ts_write", r.status));
    seen
}

#[test]
fn metrics_port_shows_the_work_done() {
    let s = Server::start();
    let before = figures(&s);
    assert_eq!(value(&before, "flo_up", &[]), Some(1.0));
    assert_eq!(
        value(&before, "flo_http_requests_total", &[("route", "kv_put")]),
        None,
        "no KV PUT yet"
    );
    for shard in ["0", "1"] {
        assert!(
            value(&before, "flo_log_recovery_seconds", &[("shard", shard)]).is_some(),
            "recovery duration of shard {shard}"
        );
    }

    let seen = workload(&s);
    let ok = |route: &str| seen.iter().filter(|(r, st)| *r == route && *st < 300).count() as f64;
    assert_eq!(ok("kv_put"), 3.0, "{seen:?}");
    assert_eq!(ok("stream_append"), 2.0, "{seen:?}");
    assert_eq!(ok("ts_write"), 1.0, "{seen:?}");

    // Gauges are refreshed by the shards' sweeps: wait for them.
    let after = poll("gauges reflect the work", SETTLE, || {
        let f = figures(&s);
        let settled = value(&f, "flo_kv_keys", &[]) == Some(3.0)
            && value(&f, "flo_queue_depth", &[("state", "ready")]) == Some(1.0)
            && value(&f, "flo_queue_depth", &[("state", "leased")]) == Some(1.0)
            && value(&f, "flo_stream_records", &[]) == Some(2.0)
            && value(&f, "flo_ts_series", &[]) == Some(2.0)
            && value(&f, "flo_ts_samples", &[]) == Some(2.0);
        settled.then_some(f)
    });
    assert_eq!(value(&after, "flo_queue_depth", &[("state", "delayed")]), Some(0.0));
    assert_eq!(value(&after, "flo_queue_depth", &[("state", "dlq")]), Some(0.0));
    assert_eq!(value(&after, "flo_queue_messages", &[]), Some(2.0));

    // Requests by route and status, counted once each, summed over shards.
    let mut pairs: Vec<(&str, u16)> = seen.clone();
    pairs.sort_unstable();
    pairs.dedup();
    for (route, status) in pairs {
        let n = seen.iter().filter(|p| **p == (route, status)).count() as f64;
        let code = status.to_string();
        let labels = [("route", route), ("code", code.as_str())];
        assert_eq!(
            value(&after, "flo_http_requests_total", &labels),
            Some(n),
            "{route} {status}"
        );
        assert_eq!(
            value(&after, "flo_http_request_duration_seconds_count", &labels),
            Some(n)
        );
        let inf = [labels[0], labels[1], ("le", "+Inf")];
        assert_eq!(value(&after, "flo_http_request_duration_seconds_bucket", &inf), Some(n));
        assert!(value(&after, "flo_http_request_duration_seconds_sum", &labels).is_some_and(|v| v > 0.0));
    }
    assert_eq!(
        value(
            &after,
            "flo_http_requests_total",
            &[("route", "kv_get"), ("code", "404")]
        ),
        Some(1.0),
        "the missing key"
    );

    // The log: every mutation above is an entry made durable by some fdatasync.
    let entries = value(&after, "flo_log_entries_total", &[]).expect("entries");
    let durable = value(&after, "flo_log_entries_per_fsync_sum", &[]).expect("per-fsync sum");
    let fsyncs = value(&after, "flo_log_fsyncs_total", &[]).expect("fsyncs");
    // (Families are read one after another while background work may append: no equalities
    // between them.)
    assert!(durable >= 9.0, "9 mutations at least: {durable} (of {entries} written)");
    assert!(entries >= 9.0 && fsyncs >= 1.0);
    assert!(value(&after, "flo_log_entries_per_fsync_count", &[]).is_some_and(|c| c >= 1.0));
    assert!(value(&after, "flo_log_fsync_seconds_count", &[]).is_some_and(|c| c >= 1.0));
    assert!(value(&after, "flo_log_bytes_total", &[]).is_some_and(|b| b > 0.0));
    assert!(value(&after, "flo_log_batches_total", &[]).is_some_and(|b| b >= 1.0));

    assert!(value(&after, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6));
    assert!(value(&after, "process_open_fds", &[]).is_some_and(|v| v >= 4.0));
    assert!(value(&after, "flo_http_connections_total", &[]).is_some_and(|v| v >= seen.len() as f64));
    assert!(value(&after, "flo_ops_total", &[]).is_some_and(|v| v >= seen.len() as f64));

    // promtool's own linter agrees.
    if let Some(promtool) = tool("promtool") {
        let text = scrape(&s);
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Prometheus server of our own, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `bin` on a free loopback port, scraping `target` every second, with its own
    /// storage directory; waits until it is ready.
    fn start(bin: &std::path::Path, target: SocketAddr) -> Prometheus {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = dir.path().join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: flo\n    static_configs:\n      - targets: ['{target}']\n"
                ),
            )
            .expect("write config");
            let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
            let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
            let child = Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start prometheus");
            let mut p = Prometheus { child, addr, dir };
            let ready = poll_until(Duration::from_secs(30), || {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Some(Err(format!("prometheus exited: {status}")));
                }
                match http_get(addr, "/-/ready") {
                    Ok((200, _)) => Some(Ok(())),
                    _ => None,
                }
            });
            match ready {
                Some(Ok(())) => return p,
                Some(Err(e)) => last = e,
                None => last = "not ready within 30 s".into(),
            }
            let log = std::fs::read_to_string(p.dir.path().join("prometheus.log")).unwrap_or_default();
            last.push_str(&format!("\n{log}"));
        }
        panic!("prometheus did not start: {last}");
    }

    /// An instant query's single value, if the result has exactly one sample.
    fn query_one(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(self.addr, &path).ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }
}

/// Calls `f` every 100 ms until it gives a value or `timeout` passes.
fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// An HTTP/1.0 GET (so the answer is not chunked and ends at close): status and body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response");
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let status = std::str::from_utf8(&buf[..head_end])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_flo() {
    let Some(bin) = tool("prometheus") else { return };
    let s = Server::start();
    for k in ["p1", "p2", "p3", "p4"] {
        let body = json!({ "value": B64.encode(k) }).to_string();
        assert_eq!(s.put_json(&format!("/api/v1/kv/prom/{k}"), &body).status, 200);
    }
    let prom = Prometheus::start(&bin, s.metrics);
    let up = poll_until(SETTLE * 3, || {
        (prom.query_one("up{job=\"flo\"}") == Some(1.0)).then_some(())
    });
    assert!(up.is_some(), "Prometheus never saw the flo target up");
    assert!(
        poll_until(SETTLE * 3, || (prom.query_one("flo_up") == Some(1.0)).then_some(())).is_some(),
        "flo_up through Prometheus"
    );
    let keys = poll_until(SETTLE * 3, || prom.query_one("sum(flo_kv_keys)").filter(|&v| v == 4.0));
    assert_eq!(keys, Some(4.0), "sum(flo_kv_keys) through Prometheus");
    let puts = poll_until(SETTLE * 3, || {
        prom.query_one("sum(flo_http_requests_total{route=\"kv_put\",code=\"200\"})")
            .filter(|&v| v == 4.0)
    });
    assert_eq!(puts, Some(4.0), "KV PUTs counted through Prometheus");
}
