//! `flo server start` as a command: `--default-config`, the precedence flags > file >
//! defaults, configuration errors (exit code 2, one line on stderr naming the key), run-time
//! start failures (exit code 1), log formats and log-level selection (`--log-level`, `FLO_LOG`,
//! `[logging] level`).
//!
//! Tests that need the process's exit code or stderr, or ports taken from the config file,
//! start the binary themselves ([`Proc`], [`run_to_exit`]); the others use the harness.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// How long a command that should fail at once may run before the test gives up on it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a started server may take to answer `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository's `flo.toml`, which `--default-config` must print.
const REPO_FLO_TOML: &str = include_str!("../flo.toml");

/// `flo` with the environment variables it reads removed and `dir` as working directory (so
/// no `./flo.toml` is picked up unless a test puts one there).
fn flo(dir: &Path) -> Command {
    let mut cmd = Command::new(common::flo_bin());
    cmd.current_dir(dir)
        .env_remove("FLO_LOG")
        .env_remove("FLO_CONFIG")
        .env_remove("FLO_AUTH_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `flo server start` with the given ports, `dir/data` and two shards, then `args`; a flag
/// in `args` replaces the default one (clap refuses a flag given twice). `bind` is left to
/// the built-in default, loopback.
fn server_cmd(dir: &Path, api_port: u16, metrics_port: u16, args: &[&str]) -> Command {
    let data_dir = dir.join("data");
    let (api, metrics) = (api_port.to_string(), metrics_port.to_string());
    let defaults = [
        ("--shards", "2"),
        ("--data-dir", data_dir.to_str().expect("UTF-8 temp path")),
        ("--dashboard-port", api.as_str()),
        ("--metrics-port", metrics.as_str()),
    ];
    let mut cmd = flo(dir);
    cmd.args(["server", "start"]);
    for (flag, value) in defaults {
        if !args.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(args);
    cmd
}

/// [`server_cmd`] on free ports, for a start that is expected to fail.
fn flo_start(dir: &Path, args: &[&str]) -> Command {
    server_cmd(dir, common::free_port(), common::free_port(), args)
}

/// Reads a pipe to its end on a thread, so the child never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    let mut pipe = pipe.expect("piped");
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    })
}

/// How a command ended.
struct Exit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a command that is expected to exit by itself; fails the test if it is still running
/// after [`EXIT_TIMEOUT`] (for instance a server that started when it should have refused).
fn run_to_exit(cmd: &mut Command) -> Exit {
    let mut child = cmd.spawn().expect("spawn flo");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_with_deadline(&mut child, EXIT_TIMEOUT);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let Some(status) = status else {
        panic!("flo still running after {EXIT_TIMEOUT:?}; stderr so far: {stderr}");
    };
    Exit {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Waits for the child to exit; kills and reaps it (returning `None`) after `timeout`.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts a configuration error: exit code 2, one line on stderr, naming `key`.
#[track_caller]
fn assert_config_error(exit: &Exit, key: &str, case: &str) {
    assert_eq!(exit.code, Some(2), "{case}: exit code; stderr: {}", exit.stderr);
    let line = exit.stderr.strip_suffix('\n').unwrap_or(&exit.stderr);
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "{case}: stderr must be one line: {:?}",
        exit.stderr
    );
    assert!(line.contains(key), "{case}: stderr must name {key:?}: {line:?}");
}

/// Writes `toml` to `dir/flo.toml` and starts flo with it plus `args`; returns how it exited.
fn start_with_file(toml: &str, args: &[&str]) -> Exit {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flo.toml");
    std::fs::write(&path, toml).expect("write config");
    let path = path.to_str().expect("UTF-8 temp path");
    run_to_exit(&mut flo_start(dir.path(), &[&["--config", path], args].concat()))
}

/// A `flo server start` this file started itself, with stderr captured.
struct Proc {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    api: SocketAddr,
    metrics: SocketAddr,
}

impl Proc {
    /// Spawns the command `make(api_port, metrics_port)` builds and waits for `/health` on the
    /// API port. A start that failed because a probed port was taken meanwhile is retried on
    /// new ports; any other early exit fails the test with the server's stderr.
    fn start(mut make: impl FnMut(u16, u16) -> Command) -> Proc {
        for _ in 0..5 {
            let (api_port, metrics_port) = (common::free_port(), common::free_port());
            if api_port == metrics_port {
                continue;
            }
            let mut cmd = make(api_port, metrics_port);
            let mut child = cmd.spawn().expect("spawn flo");
            // Nothing is expected on stdout; drained so a write there cannot fail.
            drain(child.stdout.take());
            let mut proc = Proc {
                stderr: Some(drain(child.stderr.take())),
                child,
                api: SocketAddr::from(([127, 0, 0, 1], api_port)),
                metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
            };
            match proc.wait_healthy() {
                Ok(()) => return proc,
                Err(stderr) if stderr.contains("cannot listen") => continue,
                Err(stderr) => panic!("flo did not start: {stderr}"),
            }
        }
        panic!("flo did not start: ports kept being taken");
    }

    /// Polls `/health` until 200; on exit or timeout returns the server's stderr.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                return Err(self.take_stderr());
            }
            if let Ok(r) = common::try_request(self.api, "GET", "/health", &[], b"") {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("not healthy in time; stderr: {}", self.take_stderr()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default()
    }

    /// A GET on the API port; panics unless it answers 200, returns the JSON body.
    fn get_json(&self, path: &str) -> Value {
        let r = common::try_request(self.api, "GET", path, &[], b"").expect("request");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// SIGTERM; returns the exit status and everything the server wrote to stderr.
    fn stop(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill");
        let status = wait_with_deadline(&mut self.child, Duration::from_secs(30))
            .expect("flo did not stop within 30 s of SIGTERM");
        (status, self.take_stderr())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// [`server_cmd`] on the ports [`Proc::start`] picks, with environment `env`, healthy.
fn start_proc(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    Proc::start(|api, metrics| {
        let mut cmd = server_cmd(dir, api, metrics, args);
        cmd.envs(env.iter().copied());
        cmd
    })
}

/// Starts, stops with SIGTERM (must exit 0), and returns stderr.
fn stderr_of_run(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args: Vec<&str> = args.to_vec();
    let path = dir.path().join("flo.toml");
    let path_str = path.to_str().expect("utf-8 temp path").to_string();
    if let Some(toml) = config {
        std::fs::write(&path, toml).expect("write config");
        args.extend(["--config", &path_str]);
    }
    let proc = start_proc(dir.path(), &args, env);
    let (status, stderr) = proc.stop();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr: {stderr}");
    stderr
}

fn start_line(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| l.contains("flo started"))
}

#[test]
fn default_config_prints_the_documented_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exit = run_to_exit(flo(dir.path()).args(["server", "start", "--default-config"]));
    assert_eq!(exit.code, Some(0), "stderr: {}", exit.stderr);
    assert_eq!(exit.stderr, "");
    for line in ["dashboard_port = 9002", "metrics_port = 9001", "partitions = 64"] {
        assert!(exit.stdout.contains(line), "missing {line:?}:\n{}", exit.stdout);
    }
    assert_eq!(exit.stdout, REPO_FLO_TOML, "prints the repository's flo.toml");
    let parsed = flo::config::Config::from_toml(&exit.stdout).expect("output parses");
    assert_eq!(parsed, flo::config::Config::default());

    // The printed file is a working configuration (the harness adds ports, data dir, shards).
    let server = Server::builder().config(&exit.stdout).start();
    let status = server.get("/api/v1/status");
    assert_eq!(status.status, 200, "auth is off by default: {}", status.text());
    assert_eq!(status.json()["shard_count"], 2);
    assert_eq!(status.json()["node_id"], 1);
    let cluster = server.get("/api/v1/cluster/status").json();
    assert_eq!(cluster["partition_count"], 64);
}

#[test]
fn flags_override_file_and_file_overrides_defaults() {
    // The harness passes --shards 2 and --bind 127.0.0.1: the file's shards and (unusable)
    // bind lose, its other keys win.
    let server = Server::builder()
        .shards(2)
        .config("shards = 3\npartitions = 12\nnode_id = 7\nbind = \"not-an-ip\"\n")
        .start();
    let status = server.get("/api/v1/status").json();
    assert_eq!(status["shard_count"], 2, "{status}");
    assert_eq!(status["node_id"], 7, "{status}");
    let cluster = server.get("/api/v1/cluster/status").json();
    assert_eq!(cluster["partition_count"], 12, "{cluster}");
    assert_eq!(cluster["nodes"][0]["shards"], 2, "{cluster}");
    assert_eq!(cluster["nodes"][0]["id"], 7, "{cluster}");
    let rows = server.get("/api/v1/metrics").json()["shards"].clone();
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    let partitions = server.get("/api/v1/cluster/partitions").json();
    let table = partitions["partitions"].as_array().expect("partitions");
    assert_eq!(table.len(), 12);
    for row in table {
        assert_eq!(row["shard"].as_u64(), row["id"].as_u64().map(|p| p % 2), "{row}");
    }
}

#[test]
fn partitions_flag_overrides_file() {
    let server = Server::builder()
        .config("partitions = 12\n")
        .arg("--partitions")
        .arg("16")
        .start();
    let cluster = server.get("/api/v1/cluster/status").json();
    assert_eq!(cluster["partition_count"], 16, "{cluster}");
}

#[test]
fn ports_bind_and_data_dir_come_from_the_file_without_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("file-data");
    let config = dir.path().join("flo.toml");
    let proc = Proc::start(|api, metrics| {
        let toml = format!(
            "bind = \"127.0.0.1\"\ndashboard_port = {api}\nmetrics_port = {metrics}\n\
             data_dir = {data_dir:?}\nshards = 2\nnode_id = 5\n"
        );
        std::fs::write(&config, toml).expect("write config");
        let mut cmd = flo(dir.path());
        cmd.args(["server", "start", "--config"]).arg(&config);
        cmd
    });
    let cluster = proc.get_json("/api/v1/cluster/status");
    let address = format!("127.0.0.1:{}", proc.api.port());
    assert_eq!(cluster["nodes"][0]["address"], address.as_str(), "{cluster}");
    assert_eq!(cluster["nodes"][0]["id"], 5, "{cluster}");
    // partitions is not in the file: the built-in default.
    assert_eq!(cluster["partition_count"], 64, "{cluster}");
    assert_eq!(proc.get_json("/api/v1/status")["shard_count"], 2);
    let r = common::try_request(proc.metrics, "GET", "/metrics", &[], b"").expect("metrics port");
    assert_eq!(r.status, 200, "metrics port from the file: {}", r.text());
    assert!(data_dir.join("LOCK").is_file(), "data_dir from the file is used");
    let (status, stderr) = proc.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn config_file_errors_name_the_key() {
    let bad_digest = "[auth]\ntoken_sha256 = [\"abc\"]\n";
    let good = "a".repeat(64);
    let bad_scoped = "[[auth.tokens]]\nsha256 = \"zz\"\n".to_string();
    let bad_scope_ns = format!("[[auth.tokens]]\nsha256 = \"{good}\"\nnamespaces = [\"a/b\"]\n");
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("unknown key", "dashboard_prot = 1\n", &[], "dashboard_prot"),
        (
            "unknown key in a section",
            "[http]\nmax_body = 1\n",
            &[],
            "http.max_body",
        ),
        ("unknown section", "[htttp]\nmax_body_bytes = 1\n", &[], "htttp"),
        (
            "wrong type",
            "[http]\nmax_body_bytes = \"x\"\n",
            &[],
            "http.max_body_bytes",
        ),
        ("wrong top-level type", "shards = \"two\"\n", &[], "shards"),
        ("out of range", "dashboard_port = 70000\n", &[], "dashboard_port"),
        ("negative", "metrics_port = -1\n", &[], "metrics_port"),
        ("invalid value", "durability = \"sometimes\"\n", &[], "durability"),
        (
            "invalid log format",
            "[logging]\nformat = \"xml\"\n",
            &[],
            "logging.format",
        ),
        (
            "partitions below shards",
            "partitions = 1\n",
            &["--shards", "2"],
            "partitions",
        ),
        ("zero partitions", "partitions = 0\n", &[], "partitions"),
        ("bind not an IP", "bind = \"not-an-ip\"\n", &[], "bind"),
        (
            "zero body limit",
            "[http]\nmax_body_bytes = 0\n",
            &[],
            "http.max_body_bytes",
        ),
        ("auth without tokens", "[auth]\nenabled = true\n", &[], "auth.enabled"),
        ("bad token digest", bad_digest, &[], "auth.token_sha256[0]"),
        ("bad scoped digest", &bad_scoped, &[], "auth.tokens[0].sha256"),
        ("bad scoped namespace", &bad_scope_ns, &[], "auth.tokens[0].namespaces"),
        (
            "bad log filter",
            "[logging]\nlevel = \"info,[[[\"\n",
            &[],
            "logging.level",
        ),
        ("not TOML", "shards = = 2\n", &[], "config error"),
    ];
    for &(case, toml, args, key) in cases {
        let exit = start_with_file(toml, args);
        assert_config_error(&exit, key, case);
    }
}

#[test]
fn flag_errors_name_the_key() {
    let exit = start_with_file("", &["--log-level", "info,[[["]);
    assert_config_error(&exit, "logging.level", "--log-level");
    let exit = start_with_file("", &["--partitions", "1", "--shards", "2"]);
    assert_config_error(&exit, "partitions", "--partitions 1 with --shards 2");
    let exit = start_with_file("", &["--bind", "localhost"]);
    assert_config_error(&exit, "bind", "--bind localhost");
    let exit = start_with_file("", &["--auth"]);
    assert_config_error(&exit, "auth.enabled", "--auth without tokens");
    // FLO_LOG is checked like the key it stands for.
    let dir = tempfile::tempdir().expect("tempdir");
    let exit = run_to_exit(flo_start(dir.path(), &[]).env("FLO_LOG", "info,[[["));
    assert_config_error(&exit, "logging.level", "FLO_LOG");
}

#[test]
fn unusable_command_lines_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope").join("flo.toml");
    let missing_str = missing.to_str().expect("UTF-8 temp path");
    let exit = run_to_exit(&mut flo_start(dir.path(), &["--config", missing_str]));
    assert_config_error(&exit, "nope/flo.toml", "missing --config file");

    let exit = run_to_exit(flo_start(dir.path(), &[]).env("FLO_CONFIG", &missing));
    assert_config_error(&exit, "nope/flo.toml", "missing FLO_CONFIG file");

    for (case, args, mention) in [
        ("unknown flag", &["--frobnicate"][..], "--frobnicate"),
        ("bad --durability", &["--durability", "maybe"][..], "maybe"),
        ("bad --log-format", &["--log-format", "xml"][..], "xml"),
        ("--shards not a number", &["--shards", "two"][..], "two"),
        (
            "--dashboard-port out of range",
            &["--dashboard-port", "70000"][..],
            "70000",
        ),
    ] {
        let exit = run_to_exit(&mut flo_start(dir.path(), args));
        assert_eq!(exit.code, Some(2), "{case}: stderr: {}", exit.stderr);
        assert!(exit.stderr.contains(mention), "{case}: {}", exit.stderr);
    }
}

#[test]
fn config_file_is_found_by_flag_then_env_then_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flag_file = dir.path().join("flag.toml");
    let env_file = dir.path().join("env.toml");
    std::fs::write(&flag_file, "from_flag_file = 1\n").expect("write");
    std::fs::write(&env_file, "from_env_file = 1\n").expect("write");
    std::fs::write(dir.path().join("flo.toml"), "from_cwd_file = 1\n").expect("write");

    let flag_file = flag_file.to_str().expect("UTF-8 temp path");
    let exit = run_to_exit(flo_start(dir.path(), &["--config", flag_file]).env("FLO_CONFIG", &env_file));
    assert_config_error(&exit, "from_flag_file", "--config beats FLO_CONFIG");
    let exit = run_to_exit(flo_start(dir.path(), &[]).env("FLO_CONFIG", &env_file));
    assert_config_error(&exit, "from_env_file", "FLO_CONFIG beats ./flo.toml");
    let exit = run_to_exit(&mut flo_start(dir.path(), &[]));
    assert_config_error(&exit, "from_cwd_file", "./flo.toml");
}

#[test]
fn port_in_use_exits_1_naming_the_key() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    for key in ["dashboard_port", "metrics_port"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = format!("--{}", key.replace('_', "-"));
        let exit = run_to_exit(&mut flo_start(dir.path(), &[&flag, &port]));
        assert_eq!(exit.code, Some(1), "{key} taken: stderr: {}", exit.stderr);
        assert!(exit.stderr.contains(key), "{key} taken: {}", exit.stderr);
        assert!(exit.stderr.contains(&port), "{key} taken: {}", exit.stderr);
    }
}

#[test]
fn data_dir_in_use_exits_1() {
    let mut first = Server::builder().start();
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = first.data_dir.to_str().expect("UTF-8 temp path").to_string();
    let exit = run_to_exit(&mut flo_start(dir.path(), &["--data-dir", &shared]));
    assert_eq!(exit.code, Some(1), "stderr: {}", exit.stderr);
    assert!(exit.stderr.contains("in use"), "{}", exit.stderr);
    assert!(exit.stderr.contains(&shared), "names {shared}: {}", exit.stderr);
    // The first server is unharmed.
    assert_eq!(first.get("/health").status, 200);

    // Once the first stops, the lock is released and the directory can be used again.
    assert!(first.sigterm().success());
    let proc = start_proc(dir.path(), &["--data-dir", &shared], &[]);
    let (status, stderr) = proc.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn json_log_format_writes_json_lines() {
    let stderr = stderr_of_run(&["--log-format", "json", "--durability", "async"], &[], None);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{stderr}")))
        .collect();
    assert!(lines.iter().all(Value::is_object), "{stderr}");
    let first = lines
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("flo started")))
        .unwrap_or_else(|| panic!("no start line: {stderr}"));
    assert!(
        lines.iter().any(|l| l["message"] == "log recovered" && l["shard"] == 0),
        "recovery is logged per shard: {stderr}"
    );
    let api = first["api"].as_str().expect("api field");
    assert!(api.starts_with("127.0.0.1:"), "{first}");
    let metrics = first["metrics"].as_str().expect("metrics field");
    assert!(metrics.starts_with("127.0.0.1:") && metrics != api, "{first}");
    assert_eq!(first["shards"], 2, "{first}");
    assert!(
        first["data_dir"].as_str().is_some_and(|d| d.ends_with("data")),
        "{first}"
    );
    assert_eq!(first["durability"], "async", "flag beats default: {first}");
    assert!(
        lines.iter().any(|l| l["message"] == "flo stopped"),
        "stop is logged: {stderr}"
    );
}

#[test]
fn log_format_and_durability_from_file_flags_win() {
    let config = "durability = \"async\"\n[logging]\nformat = \"json\"\n";
    let stderr = stderr_of_run(&["--durability", "sync"], &[], Some(config));
    let started = start_line(&stderr).unwrap_or_else(|| panic!("no start line: {stderr}"));
    let started: Value = serde_json::from_str(started).expect("JSON from the file's format");
    assert_eq!(started["durability"], "sync", "flag beats file: {started}");
}

#[test]
fn text_log_format_start_line() {
    let stderr = stderr_of_run(&["--log-format", "text"], &[], None);
    let line = start_line(&stderr).unwrap_or_else(|| panic!("no start line: {stderr}"));
    assert!(line.contains("shards=2"), "{line}");
    assert!(line.contains("INFO"), "{line}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "text, not JSON: {line}");
    assert!(!line.contains('\u{1b}'), "no colour codes into a pipe: {line:?}");
}

#[test]
fn log_level_from_flag_env_file() {
    // Default level is info: the start line appears.
    let stderr = stderr_of_run(&[], &[], None);
    assert!(start_line(&stderr).is_some(), "default info: {stderr}");
    // FLO_LOG=warn hides it ...
    let stderr = stderr_of_run(&[], &[("FLO_LOG", "warn")], None);
    assert!(start_line(&stderr).is_none(), "FLO_LOG=warn: {stderr}");
    assert!(!stderr.contains("INFO"), "FLO_LOG=warn: {stderr}");
    // ... unless --log-level says otherwise.
    let stderr = stderr_of_run(&["--log-level", "info"], &[("FLO_LOG", "warn")], None);
    assert!(start_line(&stderr).is_some(), "--log-level beats FLO_LOG: {stderr}");
    // The file's level applies without env or flag, and FLO_LOG beats it.
    let file = "[logging]\nlevel = \"warn\"\n";
    let stderr = stderr_of_run(&[], &[], Some(file));
    assert!(start_line(&stderr).is_none(), "file level warn: {stderr}");
    let stderr = stderr_of_run(&[], &[("FLO_LOG", "info")], Some(file));
    assert!(start_line(&stderr).is_some(), "FLO_LOG beats the file: {stderr}");
    // A directive works as a level.
    let stderr = stderr_of_run(&["--log-level", "warn,flo=info"], &[], None);
    assert!(start_line(&stderr).is_some(), "directive: {stderr}");
}
