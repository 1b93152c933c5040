//! Test harness shared by the integration tests: starts the real `flo` binary on free
//! loopback ports with a temporary data directory, waits for `/health`, talks HTTP/1.1 over
//! real sockets (JSON helpers and raw bytes), stops it with SIGTERM or SIGKILL and restarts
//! it on the same data directory.
//!
//! Every test file includes it with `mod common;`; not every file uses every helper.

#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]
#![allow(dead_code)]

pub mod loopfs;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for the server to become healthy before failing.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket read timeout used by the request helpers.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for starting a server; build with [`Server::builder`].
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    shards: usize,
    config: String,
    log_section: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
}

impl ServerBuilder {
    /// Number of shards (`--shards`); 2 by default so forwarding is exercised.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    /// The `[log]` table's keys (default: 8 MiB segments, so tests roll segments and do not
    /// zero-fill 64 MiB per shard at every start).
    pub fn log_config(mut self, keys: &str) -> Self {
        self.log_section = keys.to_string();
        self
    }
    /// Extra TOML appended to the generated config file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }
    /// An extra command-line argument for `flo server start`.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    /// An environment variable for the server process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    /// Use this data directory instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }
    /// Starts the server and waits until `/health` answers 200.
    pub fn start(self) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = self.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let mut last_err = String::new();
        // A port picked by probing can be taken by another test before the server binds
        // it; the server then exits with an error and we try again with new ports.
        for _ in 0..5 {
            let api = free_port();
            let metrics = free_port();
            if api == metrics {
                continue;
            }
            let mut server = Server {
                api: SocketAddr::from(([127, 0, 0, 1], api)),
                metrics: SocketAddr::from(([127, 0, 0, 1], metrics)),
                data_dir: data_dir.clone(),
                config_path: tmp.path().join("flo.toml"),
                child: None,
                builder: self.clone(),
                _tmp: None,
            };
            let config = if self.config.contains("[log]") {
                self.config.clone()
            } else {
                format!("{}\n[log]\n{}", self.config, self.log_section)
            };
            std::fs::write(&server.config_path, config).expect("write config");
            match server.spawn_and_wait() {
                Ok(()) => {
                    server._tmp = Some(tmp);
                    return server;
                }
                Err(e) => last_err = e,
            }
        }
        panic!("server did not start: {last_err}");
    }
}

/// A running `flo server start` process.
pub struct Server {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    builder: ServerBuilder,
    _tmp: Option<tempfile::TempDir>,
}

/// The path of the `flo` binary under test.
pub fn flo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flo")
}

/// Binds port 0 on loopback and returns the port the kernel chose — never one it chose before
/// in this test process: the kernel hands a released port out again, and two servers of
/// parallel tests that both probed it free would share it through SO_REUSEPORT, each getting
/// half of the other's connections.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind probe");
        let port = l.local_addr().expect("local_addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            shards: 2,
            config: String::new(),
            log_section: "segment_bytes = 8388608\nbatch_max_bytes = 2097152\n".to_string(),
            args: Vec::new(),
            env: Vec::new(),
            data_dir: None,
        }
    }

    /// A server with the defaults of [`Server::builder`].
    pub fn start() -> Server {
        Self::builder().start()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(flo_bin());
        cmd.arg("server")
            .arg("start")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dashboard-port")
            .arg(self.api.port().to_string())
            .arg("--metrics-port")
            .arg(self.metrics.port().to_string())
            .arg("--shards")
            .arg(self.builder.shards.to_string())
            .args(&self.builder.args)
            .env_remove("FLO_AUTH_TOKENS")
            .env("FLO_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.builder.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut child = self.command().spawn().map_err(|e| format!("spawn: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                return Err(format!("exited with {status}: {err}"));
            }
            if let Ok(r) = try_request(self.api, "GET", "/health", &[], b"") {
                if r.status == 200 {
                    // Drain stderr in the background so a chatty server never blocks on a
                    // full pipe.
                    if let Some(mut s) = child.stderr.take() {
                        std::thread::spawn(move || {
                            let mut sink = Vec::new();
                            let _ = s.read_to_end(&mut sink);
                        });
                    }
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("not healthy in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Adds a command-line argument for the next (re)start.
    pub fn add_arg(&mut self, a: &str) {
        self.builder.args.push(a.to_string());
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("server running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    /// SIGKILL, then reaps the process.
    pub fn sigkill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(30));
    }

    /// Starts the server again on the same data directory and ports (new ports if the old
    /// ones were taken meanwhile).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped server");
        if self.spawn_and_wait().is_err() {
            self.api.set_port(free_port());
            self.metrics.set_port(free_port());
            self.spawn_and_wait().expect("restart");
        }
    }

    /// A new connection to the API port with the harness' timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.api)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        try_request(self.api, method, path, headers, body).expect("request failed")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, json: &str) -> Response {
        self.request("POST", path, &[("Content-Type", "application/json")], json.as_bytes())
    }

    pub fn put_json(&self, path: &str, json: &str) -> Response {
        self.request("PUT", path, &[("Content-Type", "application/json")], json.as_bytes())
    }

    /// Writes `bytes` on a fresh connection and returns everything the server sends until
    /// it closes the connection or `IO_TIMEOUT` passes without data.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(bytes).expect("write");
        read_to_close(&mut s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects with read/write timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads until EOF, an error, or a read timeout; returns what arrived.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// True when the peer has closed the connection (EOF or reset) within `IO_TIMEOUT`.
pub fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.read(&mut buf), Ok(0))
        || matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Sends one request with `Connection: close` semantics left to the caller; returns the
/// parsed response.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    s.write_all(&request_bytes(method, path, headers, body))?;
    let r = read_response(&mut s)?;
    let _ = s.shutdown(Shutdown::Both);
    Ok(r)
}

/// Serializes a request with Host and Content-Length (when there is a body, or the method
/// usually carries one).
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads exactly one final response (skipping `1xx` interim responses) from a stream.
/// The body is framed by Content-Length (or read to EOF without one).
pub fn read_response(s: &mut impl Read) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    read_response_buffered(s, &mut buf)
}

/// Like [`read_response`], but keeps bytes past the response in `buf` for the next call,
/// so pipelined responses can be read one after the other.
pub fn read_response_buffered(s: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Response> {
    loop {
        if let Some((resp, used)) = parse_response(buf)? {
            buf.drain(..used);
            if (100..200).contains(&resp.status) {
                continue;
            }
            return Ok(resp);
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed with {} unparsed bytes", buf.len()),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses one response from the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_response(buf: &[u8]) -> std::io::Result<Option<(Response, usize)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let body_start = head_end + 4;
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let len = match len {
        Some(l) => l,
        None if (100..200).contains(&status) || status == 204 || status == 304 => 0,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response without Content-Length",
            ))
        }
    };
    if buf.len() < body_start + len {
        return Ok(None);
    }
    let body = buf[body_start..body_start + len].to_vec();
    Ok(Some((Response { status, headers, body }, body_start + len)))
}

/// Parses every complete response in `bytes` (e.g. what [`Server::raw`] returned).
pub fn parse_all(bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Ok(Some((r, used))) = parse_response(rest) {
        rest = &rest[used..];
        if !(100..200).contains(&r.status) {
            out.push(r);
        }
    }
    out
}

/// The names `GET /api/v1/namespaces` lists, in its order.
pub fn namespace_names(s: &Server) -> Vec<String> {
    s.get("/api/v1/namespaces").json()["namespaces"]
        .as_array()
        .expect("namespaces array")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_string())
        .collect()
}

/// The shard an object lives on, derived from format-spec/partitioning.md alone (FNV-1a 64
/// over `namespace 0x00 name`, then mod partitions, then mod shards), so tests check the
/// server against the document rather than against its own code.
pub fn spec_owner_shard(namespace: &str, name: &str, partitions: u64, shards: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in namespace.bytes().chain([0u8]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % partitions) % shards
}

/// The shard owning a time-series line's series by `format-spec/ts.md` ("Series and where
/// they live"), written from the spec: the line key (measurement, tag count, tags sorted by key,
/// every string u32-length-prefixed) hashed 8 bytes at a time.
pub fn spec_ts_owner_shard(measurement: &str, tags: &[(&str, &str)], partitions: u64, shards: u64) -> u64 {
    let mut tags = tags.to_vec();
    tags.sort();
    let mut key = Vec::new();
    let put = |k: &mut Vec<u8>, s: &str| {
        k.extend_from_slice(&(s.len() as u32).to_le_bytes());
        k.extend_from_slice(s.as_bytes());
    };
    put(&mut key, measurement);
    key.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    for (k, v) in &tags {
        put(&mut key, k);
        put(&mut key, v);
    }
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(K);
    }
    let r = words.remainder();
    if !r.is_empty() {
        let mut w = [0u8; 8];
        w[..r.len()].copy_from_slice(r);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w) ^ ((r.len() as u64) << 56)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % partitions) % shards
}

/// A server for crash tests: two shards and 1 MiB log segments, so segments roll often (batches
/// are at most a quarter of a segment, so values are kept under 64 KiB).
pub fn small_segment_server() -> Server {
    Server::builder()
        .shards(2)
        .log_config("segment_bytes = 1048576\nbatch_max_bytes = 262144\n")
        .config("[limits]\nmax_value_bytes = 65536\n")
        .start()
}

/// Gives blocking requests (long-polls) time to reach the server: polls `/api/v1/metrics` until
/// the shards report `n` waiters, at most 1 s (a test that needs the waiter to be there also
/// checks what the request answers, so a slow server makes it wait, not pass wrongly).
pub fn let_waiters_settle(s: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let m = s.get("/api/v1/metrics").json();
        let total: u64 = m["shards"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["waiters"].as_u64()).sum::<u64>())
            .unwrap_or(0);
        if total >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a model test did, for failing with context: its seed, the operation it is at, and the
/// operations so far (the last 30 are printed with the failure).
pub struct Trace {
    pub seed: u64,
    pub op: u64,
    history: Vec<String>,
}

impl Trace {
    pub fn new(seed: u64) -> Trace {
        Trace {
            seed,
            op: 0,
            history: Vec::new(),
        }
    }

    pub fn fail(&self, msg: String) -> ! {
        let tail = self.history.len().saturating_sub(30);
        panic!(
            "seed {:#x}, op {}: {msg}\nthe last operations (of {}):\n{}",
            self.seed,
            self.op,
            self.history.len(),
            self.history[tail..].join("\n")
        );
    }

    pub fn eq<T: PartialEq + std::fmt::Debug>(&self, got: T, want: T, what: &str) {
        if got != want {
            self.fail(format!("{what}:\n  got  {got:?}\n  want {want:?}"));
        }
    }

    pub fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    pub fn note(&mut self, what: String) {
        self.history.push(format!("#{} {what}", self.op));
    }
}

/// Calls `f` every 20 ms until it returns `Some`, failing after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a model test restarts the server before operation `op` of `ops`, and how
/// (`Some(true)`: SIGKILL, `Some(false)`: SIGTERM): at a third (kill) and two thirds (clean
/// stop) of the run, and about once in `one_in` operations besides, either way.
pub fn restart_due(rng: &mut Rng, op: u64, ops: u64, one_in: u64) -> Option<bool> {
    if op == ops / 3 {
        Some(true)
    } else if op == 2 * ops / 3 {
        Some(false)
    } else if rng.below(one_in) == 0 {
        Some(rng.chance(50))
    } else {
        None
    }
}

/// Lets the client threads of a crash-test round run for `busy`, SIGKILLs the server, gathers
/// what the threads saw into `events`, and restarts the server.
pub fn kill_round<E>(
    s: &mut Server,
    round: usize,
    busy: Duration,
    handles: Vec<std::thread::JoinHandle<Vec<E>>>,
    events: &mut Vec<E>,
) {
    std::thread::sleep(busy);
    let running = handles.iter().filter(|h| !h.is_finished()).count();
    if running < handles.len() {
        // Only a contract breach stops a thread early; the test reports it.
        eprintln!(
            "round {round}: {} client threads stopped before the kill",
            handles.len() - running
        );
    }
    s.sigkill();
    for h in handles {
        events.extend(h.join().expect("client thread panicked"));
    }
    s.restart();
}

/// A run-size or seed setting from the environment (`FLO_MODEL_OPS`, `FLO_*_SEED`, ...):
/// `default` when unset; a value that is not a number stops the test instead of being ignored.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Unix time in ms (the server runs on the same machine, so on the same clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// splitmix64: the seeded PRNG of the model and crash tests (a seed replays a run).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}
