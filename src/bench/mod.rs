//! `flo bench`: the fio-like load tool.
//!
//! This module owns the command line ([`BenchArgs`]), the duration syntax
//! (`500ms`, `10s`, `2m`), the orchestration of a run (one OS thread per
//! `--threads`, each with its own io_uring runtime and its share of the
//! connections), the live progress line on a terminal, and the exit code.
//! Submodules: `workload` builds requests, `client` drives connections and
//! parses responses (its response framing also serves the command-line
//! client in `cli`), `report` aggregates measurements and prints the report.
#![allow(
    clippy::disallowed_methods,
    reason = "the load tool is a client: it measures latencies and paces by the monotonic clock"
)]

pub(crate) mod client;
pub mod log;
mod report;
mod workload;

use std::io::{IsTerminal as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use client::{LiveCounters, LoadPlan, Schedule, ThreadOutcome};
use report::{RunInfo, Stats, Summary};
use workload::{KvOptions, Workload, WorkloadKind};

/// How long in-flight requests may take to finish after the deadline before
/// they are abandoned and counted as timeouts.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Timeout of the connectivity check made before the load starts.
const PREFLIGHT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Interval of the live progress line.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the main thread checks whether the load threads are done.
const JOIN_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Drive a workload against a running server and report throughput and
/// latency percentiles.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server address, host:port (an `http://` prefix is accepted).
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub host: String,
    /// Concurrent keep-alive connections, spread evenly over the threads.
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Load threads, each running its own io_uring runtime.
    #[arg(short, long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,
    /// How long to measure, e.g. 500ms, 10s, 2m (ends the run unless
    /// --requests ends it first).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Total measured requests to send; the run ends when they are answered
    /// or when --duration is over, whichever comes first.
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Open loop: send this many requests per second in all, on a fixed schedule spread over
    /// the connections, whatever the answers' pace; latency is counted from each request's
    /// intended send time, so a server that falls behind shows its queueing (no coordinated
    /// omission). Without it, each connection sends its next request when the last is answered.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Load to run before measuring; its requests are not reported.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Requests to send.
    #[arg(short, long, value_enum, default_value_t = WorkloadKind::Status)]
    pub workload: WorkloadKind,
    /// KV workloads: namespace of the keys.
    #[arg(long, default_value = workload::DEFAULT_NAMESPACE, value_parser = workload::parse_namespace)]
    pub namespace: String,
    /// KV workloads: size of the key space (keys k0 .. k<keys-1>).
    #[arg(long, default_value_t = workload::DEFAULT_KEYS, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// KV workloads: bytes of every value written (before base64).
    #[arg(long, default_value_t = workload::DEFAULT_VALUE_BYTES,
          value_parser = clap::value_parser!(u32).range(..=64 * 1024 * 1024))]
    pub value_bytes: u32,
    /// queue-consume: messages per dequeue (each ack confirms what one dequeue gave); stream
    /// workloads: records per request (at most 1000); ts-ingest: lines per request.
    #[arg(long, default_value_t = workload::DEFAULT_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// ts-ingest: write through InfluxDB's `/write?db=` instead of Flo's own path (to drive
    /// InfluxDB, or Flo's compatible endpoint, with the same data).
    #[arg(long)]
    pub influx: bool,
    /// ts-ingest: fields per line (the first N of TSBS's 10 cpu fields).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub fields: u8,
    /// ts-query: the query sent, FloQL (or InfluxQL with `--influx`, sent to `/query?db=`).
    #[arg(long, default_value = "cpu[1h] | avg(5m)")]
    pub query: String,
    /// Bearer token sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "FLO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Report every second of the run apart (requests by the second they started in):
    /// counts of 2xx, 429/503, other answers and errors, and latency percentiles.
    #[arg(long)]
    pub series: bool,
    /// kv-put: write unique keys `<ID>.<connection>.<sequence>`, each value starting with its
    /// key, so every write of the run can be told apart and read back.
    #[arg(long, value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// kv-put with --run-id: write the key of every acknowledged (2xx) write to this file, one
    /// a line (warmup included), for reading them back with `-w kv-verify --keys-file`.
    #[arg(long, requires = "run_id")]
    pub acked_file: Option<PathBuf>,
    /// kv-verify: the keys to read back, one a line (an --acked-file); each is read once and
    /// counted found (200 with the value its write sent) or lost. Use the --value-bytes of the
    /// writing run.
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
}

/// Runs `flo bench`: 0 when the run completed (HTTP error statuses are
/// reported, not fatal), 1 when no request got a response.
pub fn run(args: BenchArgs) -> ExitCode {
    match execute(&args) {
        Ok(summary) => {
            let report = if args.json {
                summary.to_json() + "\n"
            } else {
                summary.to_text()
            };
            let mut stdout = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) is not worth a panic.
            let _ = stdout.write_all(report.as_bytes());
            let _ = stdout.flush();
            if summary.requests_ok == 0 {
                let e = &summary.errors;
                eprintln!(
                    "flo bench: no request succeeded against {} ({} connect, {} io, {} http, {} timeout errors)",
                    summary.host, e.connect, e.io, e.http, e.timeout
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("flo bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parses a duration: an integer or decimal number followed by `ms`, `s`,
/// `m` or `h` (`500ms`, `10s`, `1.5s`, `2m`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let invalid = || format!("invalid duration {text:?} (expected e.g. 500ms, 10s, 2m)");
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| invalid())
}

/// Parses `--rate`: requests per second, more than 0 and at most 10 million.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1e7 => Ok(r),
        _ => Err(format!("invalid rate {text:?} (requests per second, e.g. 5000)")),
    }
}

/// Checks `--run-id`: it becomes part of KV keys in a URL path, so 1 to 64 of
/// `A-Z a-z 0-9 _ -` (no `.`, which separates the key's parts).
fn parse_run_id(text: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if text.is_empty() || text.len() > 64 || !text.chars().all(valid) {
        return Err(format!("invalid run id {text:?} (1 to 64 of A-Z a-z 0-9 _ -)"));
    }
    Ok(text.to_owned())
}

/// Reads `--keys-file`: one key a line, empty lines skipped.
fn read_keys(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Writes the keys of acknowledged writes to `path`, one a line.
fn write_acked(path: &Path, run_id: &str, acked: &[(usize, u64)]) -> Result<(), String> {
    let mut out = String::with_capacity(acked.len() * (run_id.len() + 16));
    for &(conn, seq) in acked {
        out.push_str(&workload::unique_key(run_id, conn, seq));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Resolves `--host` to a socket address; returns it with the `Host` header.
fn resolve_host(host: &str) -> Result<(SocketAddr, String), String> {
    let host = host.strip_prefix("http://").unwrap_or(host).trim_end_matches('/');
    if host.is_empty() {
        return Err("empty --host".to_owned());
    }
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no address"))?;
    Ok((addr, host.to_owned()))
}

/// Spreads `connections` connection indices round-robin over `threads`.
fn spread_connections(connections: usize, threads: usize) -> Vec<Vec<usize>> {
    let mut per_thread = vec![Vec::new(); threads];
    for conn in 0..connections {
        per_thread[conn % threads].push(conn);
    }
    per_thread
}

/// Runs the load and returns its summary, or why it could not run at all.
fn execute(args: &BenchArgs) -> Result<Summary, String> {
    let (addr, host_header) = resolve_host(&args.host)?;
    // Fail fast with a clear message when nothing listens there.
    TcpStream::connect_timeout(&addr, PREFLIGHT_CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {host_header} ({addr}): {e}"))?;

    let verify_keys = match (&args.keys_file, args.workload) {
        (Some(path), _) => read_keys(path)?,
        (None, WorkloadKind::KvVerify) => return Err("kv-verify needs --keys-file".to_owned()),
        (None, _) => Vec::new(),
    };
    if args.run_id.is_some() && args.workload != WorkloadKind::KvPut {
        return Err("--run-id is for the kv-put workload".to_owned());
    }
    // kv-verify reads each key once: the run ends when all are read.
    let request_limit = match args.workload {
        WorkloadKind::KvVerify => Some(
            args.requests
                .map_or(verify_keys.len() as u64, |n| n.min(verify_keys.len() as u64)),
        ),
        _ => args.requests,
    };
    if request_limit == Some(0) {
        return Err("kv-verify: the keys file holds no key".to_owned());
    }
    let connections = args.connections as usize;
    let threads = (args.threads as usize).min(connections);
    let start = Instant::now();
    let measure_start = start + args.warmup;
    let deadline = measure_start + args.duration;
    let plan = Arc::new(LoadPlan {
        addr,
        workload: Workload::new(args.workload, &host_header, args.token.as_deref()).with_kv(&KvOptions {
            namespace: args.namespace.clone(),
            keys: args.keys,
            value_bytes: args.value_bytes as usize,
            batch: args.batch as usize,
            connections,
            influx: args.influx,
            query: args.query.clone(),
            fields: usize::from(args.fields),
            run_id: args.run_id.clone(),
            verify_keys: Arc::from(verify_keys),
        }),
        schedule: args.rate.map(|rate| Schedule::new(start, rate)),
        tickets: AtomicU64::new(0),
        record_acked: args.acked_file.is_some(),
        measure_start,
        deadline,
        cutoff: deadline + DRAIN_GRACE,
        request_limit,
        requests_claimed: AtomicU64::new(0),
        live: (0..threads).map(|_| LiveCounters::default()).collect(),
        series: args.series,
    });

    let mut handles = Vec::with_capacity(threads);
    for (thread_index, conns) in spread_connections(connections, threads).into_iter().enumerate() {
        let plan = plan.clone();
        let handle = thread::Builder::new()
            .name(format!("flo-bench-{thread_index}"))
            .spawn(move || client::run_thread(plan, thread_index, conns))
            .map_err(|e| format!("cannot start load thread: {e}"))?;
        handles.push(handle);
    }

    let show_progress = std::io::stderr().is_terminal();
    wait_for_threads(&handles, &plan, start, show_progress);

    let mut stats = if args.series {
        Stats::with_series()
    } else {
        Stats::new()
    };
    let mut finished_at = measure_start;
    let mut failure = None;
    let mut acked = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(ThreadOutcome {
                stats: thread_stats,
                acked: thread_acked,
                finished_at: thread_finished_at,
            })) => {
                stats.merge(&thread_stats);
                acked.extend(thread_acked);
                finished_at = finished_at.max(thread_finished_at);
            }
            Ok(Err(message)) => failure = Some(message),
            Err(_) => failure = Some("a load thread panicked".to_owned()),
        }
    }
    if let Some(message) = failure {
        return Err(message);
    }
    if let (Some(path), Some(run_id)) = (&args.acked_file, &args.run_id) {
        acked.sort_unstable();
        write_acked(path, run_id, &acked)?;
    }

    let info = RunInfo {
        workload: args.workload.name(),
        host: &host_header,
        connections,
        threads,
        duration_s: finished_at.duration_since(measure_start).as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        offered: plan.schedule.map(|s| s.due_between(measure_start, deadline)),
    };
    Ok(Summary::new(info, &stats))
}

/// Waits until every load thread has finished, printing a progress line to
/// stderr every second when `show_progress`.
fn wait_for_threads<T>(handles: &[thread::JoinHandle<T>], plan: &LoadPlan, start: Instant, show_progress: bool) {
    let mut last_print = start;
    let mut last_responses = 0u64;
    let mut printed = false;
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(JOIN_POLL_INTERVAL);
        let now = Instant::now();
        if !show_progress || now.duration_since(last_print) < PROGRESS_INTERVAL {
            continue;
        }
        let responses: u64 = plan.live.iter().map(|l| l.responses.load(Ordering::Relaxed)).sum();
        let errors: u64 = plan.live.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum();
        let interval_s = now.duration_since(last_print).as_secs_f64();
        let ops_per_sec = (responses - last_responses) as f64 / interval_s;
        let phase = if now < plan.measure_start {
            "warmup"
        } else if now < plan.deadline {
            "running"
        } else {
            "draining"
        };
        eprint!(
            "\r\x1b[K[{:>6.1}s {phase}] {ops_per_sec:.0} ops/s, {responses} responses, {errors} errors",
            now.duration_since(start).as_secs_f64()
        );
        printed = true;
        last_print = now;
        last_responses = responses;
    }
    if printed {
        eprint!("\r\x1b[K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(argv: &[&str]) -> BenchArgs {
        let argv = std::iter::once("flo-bench").chain(argv.iter().copied());
        TestCli::try_parse_from(argv).expect("valid arguments").bench
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "10x", "ms", "-1s", "1.s", ".5s", "1..2s", "10 s s", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn command_line_defaults_and_options() {
        let a = args(&[]);
        assert_eq!(a.host, "127.0.0.1:9002");
        assert_eq!((a.connections, a.threads), (64, 2));
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.warmup, Duration::ZERO);
        assert_eq!(a.requests, None);
        assert_eq!(a.workload, WorkloadKind::Status);
        assert!(!a.json);

        let a = args(&[
            "--host",
            "10.0.0.1:80",
            "--connections",
            "8",
            "--threads",
            "1",
            "--duration",
            "500ms",
            "--requests",
            "1000",
            "--workload",
            "health",
            "--json",
            "--token",
            "t",
            "--warmup",
            "1s",
        ]);
        assert_eq!(a.connections, 8);
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!(a.requests, Some(1000));
        assert_eq!(a.workload, WorkloadKind::Health);
        assert_eq!(a.token.as_deref(), Some("t"));
        assert_eq!(a.warmup, Duration::from_secs(1));
        assert!(a.json);

        let argv = ["flo-bench", "--duration", "soon"];
        assert!(TestCli::try_parse_from(argv).is_err());
        assert!(TestCli::try_parse_from(["flo-bench", "--connections", "0"]).is_err());
    }

    #[test]
    fn an_open_loop_behind_schedule_stops_sending_at_the_deadline() {
        let (addr, answered) = spawn_responder();
        let addr = addr.to_string();
        // One connection cannot carry a million requests a second: it falls behind at once.
        let a = args(&[
            "--host",
            &addr,
            "--rate",
            "1000000",
            "--duration",
            "300ms",
            "--connections",
            "1",
            "--threads",
            "1",
        ]);
        let summary = execute(&a).expect("run completes");
        assert_eq!(summary.offered, Some(300_000));
        assert!(summary.sent > 0 && summary.sent < 300_000, "{}", summary.to_text());
        assert_eq!(summary.unsent(), Some(300_000 - summary.sent));
        // Nothing went out after the deadline, so nothing was cut off unanswered.
        assert_eq!(summary.errors.total(), 0, "{}", summary.to_text());
        assert_eq!(summary.requests_ok, summary.sent);
        assert!(summary.duration_s < 1.5, "{}", summary.to_text());
        assert_eq!(answered.load(Ordering::Relaxed), summary.sent);
    }

    #[test]
    fn connections_spread_evenly() {
        let spread = spread_connections(5, 2);
        assert_eq!(spread, vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(spread_connections(1, 1), vec![vec![0]]);
    }

    #[test]
    fn host_forms() {
        let (addr, host) = resolve_host("http://127.0.0.1:9002/").expect("resolves");
        assert_eq!(addr, "127.0.0.1:9002".parse().expect("addr"));
        assert_eq!(host, "127.0.0.1:9002");
        assert!(resolve_host("").is_err());
        assert!(resolve_host("no-port-here").is_err());
    }

    /// A throwaway keep-alive responder: answers every request on every
    /// connection with a 2-byte 200, until the test process ends. Returns
    /// its address and the number of requests it answered so far.
    fn spawn_responder() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let answered = Arc::new(AtomicU64::new(0));
        let counter = answered.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counter = counter.clone();
                thread::spawn(move || {
                    let Ok(mut writer) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    loop {
                        // Read one request head (GETs have no body).
                        let mut head_lines = 0;
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head_lines += 1;
                        }
                        if head_lines == 0 {
                            return;
                        }
                        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if writer.write_all(response).is_err() {
                            return;
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        (addr, answered)
    }

    #[test]
    fn end_to_end_against_a_keep_alive_responder() {
        let (addr, answered) = spawn_responder();
        let addr = addr.to_string();
        let a = args(&[
            "--host",
            &addr,
            "--requests",
            "200",
            "--connections",
            "4",
            "--threads",
            "1",
        ]);
        let summary = execute(&a).expect("run completes");
        assert_eq!(summary.requests_ok, 200, "{}", summary.to_text());
        assert_eq!(summary.errors.total(), 0, "{}", summary.to_text());
        assert_eq!(summary.status, std::collections::BTreeMap::from([(200, 200)]));
        assert_eq!(summary.response_bytes, 200 * 40);
        assert!(summary.latency_us.max >= summary.latency_us.p50);
        assert!(summary.duration_s > 0.0 && summary.duration_s < 10.0);
        assert_eq!(answered.load(Ordering::Relaxed), 200);
        let json: serde_json::Value = serde_json::from_str(&summary.to_json()).expect("json");
        assert_eq!(json["requests_ok"], 200);
        assert_eq!(json["status"]["200"], 200);
    }

    #[test]
    fn open_loop_sends_on_its_schedule_and_no_more() {
        let (addr, answered) = spawn_responder();
        let addr = addr.to_string();
        // 100 requests a second over 4 connections for 500 ms: each connection is due every
        // 40 ms (offset by 10 ms per connection), so at most 13 sends each, 52 in all; the
        // responder would answer thousands in a closed loop.
        let a = args(&[
            "--host",
            &addr,
            "--duration",
            "500ms",
            "--rate",
            "100",
            "--connections",
            "4",
            "--threads",
            "2",
            "--workload",
            "health",
        ]);
        assert_eq!(a.rate, Some(100.0));
        let summary = execute(&a).expect("run completes");
        assert!(summary.requests_ok > 0, "{}", summary.to_text());
        assert!(summary.requests_ok <= 52, "{}", summary.to_text());
        assert!(answered.load(Ordering::Relaxed) <= 52);
        assert_eq!(summary.errors.total(), 0, "{}", summary.to_text());
        for bad in ["0", "-5", "x", "1e9"] {
            let argv = ["flo-bench", "--rate", bad];
            assert!(TestCli::try_parse_from(argv).is_err(), "--rate {bad}");
        }
    }

    #[test]
    fn end_to_end_with_warmup_and_duration_on_two_threads() {
        let (addr, _) = spawn_responder();
        let addr = addr.to_string();
        let a = args(&[
            "--host",
            &addr,
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--connections",
            "3",
            "--threads",
            "2",
            "--workload",
            "health",
        ]);
        let summary = execute(&a).expect("run completes");
        assert!(summary.requests_ok > 0, "{}", summary.to_text());
        assert_eq!(summary.errors.total(), 0, "{}", summary.to_text());
        assert_eq!((summary.connections, summary.threads), (3, 2));
        assert!(
            summary.duration_s >= 0.3 && summary.duration_s < 2.0,
            "duration {}",
            summary.duration_s
        );
    }

    #[test]
    fn server_closing_connections_is_counted_and_survived() {
        // Answers one request per connection, then closes without saying so.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                thread::spawn(move || {
                    let Ok(mut writer) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                });
            }
        });
        let a = args(&[
            "--host",
            &addr,
            "--requests",
            "20",
            "--connections",
            "2",
            "--threads",
            "1",
        ]);
        let summary = execute(&a).expect("run completes");
        assert!(summary.requests_ok >= 9, "{}", summary.to_text());
        assert_eq!(summary.requests_ok + summary.errors.total(), 20);
        assert_eq!(summary.errors.io, summary.errors.total());
    }

    #[test]
    fn nothing_listening_fails_fast() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        drop(listener);
        let a = args(&["--host", &addr, "--duration", "1s"]);
        let started = Instant::now();
        let err = execute(&a).expect_err("nothing listens");
        assert!(err.contains("cannot connect"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
