//! The command-line client (`flo kv|queue|stream|ts|ns|cluster|status`) against a real server.
//!
//! Every test starts the server binary with the shared harness and runs the same binary as
//! the client, checking stdout, stderr and the exit code (0 ok, 1 server error, 2 usage,
//! 3 cannot connect). Values cross the CLI as text, `@file`, stdin and binary; `--format json`,
//! `--token` against a server with auth on, the `FLO_HOST`/`FLO_NAMESPACE`/`FLO_TOKEN`
//! environment and option placement are covered; state changes are checked through the
//! HTTP API directly where the CLI's own output could hide a mistake.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Server};
use serde_json::Value as Json;

/// What one client run produced.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn json(&self) -> Json {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.text(), self.stderr))
    }
    /// Asserts exit 0 and returns stdout as text.
    fn ok(&self) -> String {
        assert_eq!(
            self.code,
            0,
            "exit code; stdout: {} stderr: {}",
            self.text(),
            self.stderr
        );
        self.text()
    }
}

/// A client invocation: the binary with a clean environment.
struct Flo {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Flo {
    fn new(args: &[&str]) -> Flo {
        let mut cmd = Command::new(common::flo_bin());
        cmd.args(args)
            .env_remove("FLO_HOST")
            .env_remove("FLO_NAMESPACE")
            .env_remove("FLO_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Flo { cmd, stdin: None }
    }
    /// A client command against `server` (`--host` appended).
    fn at(server: &Server, args: &[&str]) -> Flo {
        let mut f = Flo::new(args);
        f.cmd.arg("--host").arg(server.api.to_string());
        f
    }
    fn env(mut self, k: &str, v: &str) -> Flo {
        self.cmd.env(k, v);
        self
    }
    fn stdin(mut self, bytes: &[u8]) -> Flo {
        self.stdin = Some(bytes.to_vec());
        self.cmd.stdin(Stdio::piped());
        self
    }
    fn run(mut self) -> Out {
        let mut child = self.cmd.spawn().expect("spawn flo");
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(&bytes).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait flo");
        Out {
            code: out.status.code().expect("exit code (not a signal)"),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn flo(server: &Server, args: &[&str]) -> Out {
    Flo::at(server, args).run()
}

/// The exact value the server holds for a key, through the HTTP API.
fn stored_value(server: &Server, ns: &str, key: &str) -> Option<Vec<u8>> {
    let r = server.get(&format!("/api/v1/kv/{ns}/{key}"));
    if r.status == 404 {
        return None;
    }
    assert_eq!(r.status, 200, "{}", r.text());
    let b64 = r.json()["value"].as_str().expect("value").to_string();
    Some(decode_b64(&b64))
}

fn decode_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64")
}

#[test]
fn kv_set_get_list_delete_round_trip() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");

    // Text argument.
    assert_eq!(
        flo(&server, &["kv", "set", "greeting", "hello world"]).ok(),
        "greeting: version 1\n"
    );
    assert_eq!(
        stored_value(&server, "default", "greeting").as_deref(),
        Some(&b"hello world"[..])
    );
    assert_eq!(flo(&server, &["kv", "get", "greeting"]).ok(), "hello world\n");

    // @file, with a key that needs percent-encoding.
    let file = dir.path().join("v.txt");
    std::fs::write(&file, "from a file").expect("write");
    let at_file = format!("@{}", file.display());
    assert_eq!(
        flo(&server, &["kv", "set", "dir/a b", &at_file]).ok(),
        "dir/a b: version 1\n"
    );
    assert_eq!(
        stored_value(&server, "default", "dir%2Fa%20b").as_deref(),
        Some(&b"from a file"[..])
    );
    assert_eq!(flo(&server, &["kv", "get", "dir/a b"]).ok(), "from a file\n");

    // stdin, both implicit and `-`; `@@` is a literal `@`.
    let out = Flo::at(&server, &["kv", "set", "piped"]).stdin(b"via stdin").run();
    assert_eq!(out.ok(), "piped: version 1\n");
    assert_eq!(
        stored_value(&server, "default", "piped").as_deref(),
        Some(&b"via stdin"[..])
    );
    Flo::at(&server, &["kv", "set", "piped", "-"])
        .stdin(b"again")
        .run()
        .ok();
    assert_eq!(
        stored_value(&server, "default", "piped").as_deref(),
        Some(&b"again"[..])
    );
    flo(&server, &["kv", "set", "at", "@@handle"]).ok();
    assert_eq!(stored_value(&server, "default", "at").as_deref(), Some(&b"@handle"[..]));

    // A binary value: exact bytes in, exact bytes out with --raw, base64 plus a note in text.
    let binary: Vec<u8> = vec![0xff, 0x00, 0xfe, b'\n', 0x80];
    Flo::at(&server, &["kv", "set", "bin"]).stdin(&binary).run().ok();
    assert_eq!(stored_value(&server, "default", "bin"), Some(binary.clone()));
    let raw = flo(&server, &["kv", "get", "bin", "--raw"]);
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    assert_eq!(raw.stdout, binary);
    let shown = flo(&server, &["kv", "get", "bin"]);
    assert_eq!(shown.ok(), "/wD+CoA=\n");
    assert!(shown.stderr.contains("binary"), "{}", shown.stderr);

    // --meta: version and TTL.
    flo(&server, &["kv", "set", "greeting", "hi", "--ttl", "100"]).ok();
    let meta = flo(&server, &["kv", "get", "greeting", "--meta"]).ok();
    let lines: Vec<&str> = meta.lines().collect();
    assert_eq!(lines[0], "key: greeting");
    assert_eq!(lines[1], "version: 2");
    let ttl: u64 = lines[2]
        .strip_prefix("ttl_remaining: ")
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("ttl line {:?}", lines[2]));
    assert!((90..=100).contains(&ttl), "{ttl}");
    assert_eq!(lines[3], "value: hi");

    // list: byte order, prefix, values, paging.
    let listed = flo(&server, &["kv", "list", "--values"]).ok();
    let keys: Vec<&str> = listed
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["at", "bin", "dir/a", "greeting", "piped"]); // "dir/a b" splits at the space
    assert!(listed.lines().next().unwrap_or("").starts_with("KEY"), "{listed}");
    assert!(listed.contains("base64:/wD+CoA="), "{listed}");
    assert!(
        listed.lines().any(|l| l.starts_with("piped") && l.ends_with("again")),
        "{listed}"
    );
    let prefixed = flo(&server, &["kv", "list", "--prefix", "p"]).ok();
    assert_eq!(prefixed.lines().count(), 2, "{prefixed}");
    assert!(prefixed.lines().nth(1).unwrap_or("").starts_with("piped"), "{prefixed}");
    let page = flo(&server, &["kv", "list", "--limit", "2"]);
    assert_eq!(page.ok().lines().count(), 3);
    assert!(page.stderr.contains("--after bin"), "{}", page.stderr);
    let all = flo(&server, &["kv", "list", "--limit", "2", "--all"]).ok();
    assert_eq!(all.lines().count(), 6, "{all}");

    // delete, then get: a clear message and exit 1.
    assert_eq!(
        flo(&server, &["kv", "delete", "greeting"]).ok(),
        "greeting: deleted (tombstone version 3)\n"
    );
    assert_eq!(stored_value(&server, "default", "greeting"), None);
    let missing = flo(&server, &["kv", "get", "greeting"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stdout.is_empty());
    assert_eq!(
        missing.stderr.trim(),
        "error: not_found: key \"greeting\" not found in namespace \"default\""
    );
    let again = flo(&server, &["kv", "delete", "greeting"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.starts_with("error: not_found:"), "{}", again.stderr);
}

#[test]
fn kv_conditions_and_json() {
    let server = Server::start();
    flo(&server, &["kv", "set", "k", "v1"]).ok();

    // A stale CAS: exit 1, the server's conflict message, nothing written.
    let stale = flo(&server, &["kv", "set", "k", "v2", "--cas", "7"]);
    assert_eq!(stale.code, 1);
    assert!(stale.stderr.starts_with("error: conflict: "), "{}", stale.stderr);
    assert!(stale.stderr.contains("current version is 1"), "{}", stale.stderr);
    assert_eq!(stored_value(&server, "default", "k").as_deref(), Some(&b"v1"[..]));
    // The right version succeeds.
    assert_eq!(
        flo(&server, &["kv", "set", "k", "v2", "--cas", "1"]).ok(),
        "k: version 2\n"
    );
    assert_eq!(stored_value(&server, "default", "k").as_deref(), Some(&b"v2"[..]));
    // --if-not-exists on an existing key, and --cas 0 ("must not exist").
    for flags in [&["--if-not-exists"][..], &["--cas", "0"][..]] {
        let mut args = vec!["kv", "set", "k", "v3"];
        args.extend_from_slice(flags);
        let out = flo(&server, &args);
        assert_eq!(out.code, 1, "{flags:?}");
        assert!(out.stderr.contains("conflict"), "{}", out.stderr);
    }
    assert_eq!(
        flo(&server, &["kv", "set", "new", "x", "--if-not-exists"]).ok(),
        "new: version 1\n"
    );
    // CAS on a key that does not exist says so.
    let absent = flo(&server, &["kv", "set", "absent", "x", "--cas", "3"]);
    assert_eq!(absent.code, 1);
    assert!(absent.stderr.contains("does not exist"), "{}", absent.stderr);
    // A delete with a stale CAS keeps the key.
    let del = flo(&server, &["kv", "delete", "k", "--cas", "1"]);
    assert_eq!(del.code, 1);
    assert!(del.stderr.contains("conflict"), "{}", del.stderr);
    assert!(stored_value(&server, "default", "k").is_some());

    // --format json: the server's answer, with value_text decoded; also for errors.
    let got = flo(&server, &["kv", "get", "k", "--format", "json"]);
    let v = got.json();
    assert_eq!(v["key"], "k");
    assert_eq!(v["version"], 2);
    assert_eq!(v["value"], "djI=");
    assert_eq!(v["value_text"], "v2");
    let set = flo(&server, &["--format", "json", "kv", "set", "k", "v3"]).json();
    assert_eq!(set["version"], 3);
    let conflict = flo(&server, &["kv", "set", "k", "x", "--cas", "1", "--format", "json"]);
    assert_eq!(conflict.code, 1);
    assert_eq!(conflict.json()["current_version"], 3);
    assert_eq!(conflict.json()["error"], "conflict");
    let listed = flo(&server, &["kv", "list", "--values", "--format", "json"]).json();
    assert_eq!(listed["count"], 2);
    assert_eq!(listed["keys"][0]["key"], "k");
    assert_eq!(listed["keys"][0]["value_text"], "v3");
    // Binary values get no text field in JSON.
    Flo::at(&server, &["kv", "set", "bin"]).stdin(&[0xff]).run().ok();
    let bin = flo(&server, &["kv", "get", "bin", "--format", "json"]).json();
    assert_eq!(bin["value"], "/w==");
    assert!(bin.get("value_text").is_none(), "{bin}");
}

#[test]
fn kv_get_waits_for_a_key() {
    let server = Server::start();
    let host = server.api.to_string();
    let waiter =
        std::thread::spawn(move || Flo::new(&["kv", "get", "late", "--wait-ms", "10000", "--host", &host]).run());
    std::thread::sleep(Duration::from_millis(500));
    flo(&server, &["kv", "set", "late", "arrived"]).ok();
    let out = waiter.join().expect("waiter");
    assert_eq!(out.ok(), "arrived\n");

    // A watch returns once the version moves past the one given.
    let host = server.api.to_string();
    let started = Instant::now();
    let watcher = std::thread::spawn(move || {
        Flo::new(&[
            "kv",
            "get",
            "late",
            "--watch",
            "1",
            "--wait-ms",
            "10000",
            "--meta",
            "--host",
            &host,
        ])
        .run()
    });
    std::thread::sleep(Duration::from_millis(500));
    flo(&server, &["kv", "set", "late", "changed"]).ok();
    let out = watcher.join().expect("watcher").ok();
    assert!(out.contains("version: 2") && out.contains("value: changed"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(9));
}

#[test]
fn queue_commands() {
    let server = Server::start();
    assert_eq!(
        flo(&server, &["queue", "enqueue", "jobs", "low", "--priority", "9"]).ok(),
        "seq 1\n"
    );
    assert_eq!(
        flo(&server, &["queue", "enqueue", "jobs", "urgent", "-p", "0"]).ok(),
        "seq 2\n"
    );
    let out = Flo::at(&server, &["queue", "enqueue", "jobs", "--dedup-key", "d1"])
        .stdin(b"piped job")
        .run();
    assert_eq!(out.ok(), "seq 3\n");
    let dup = flo(&server, &["queue", "enqueue", "jobs", "other", "--dedup-key", "d1"]).ok();
    assert_eq!(dup, "seq 3 (deduplicated: already enqueued)\n");
    let delayed = flo(
        &server,
        &[
            "queue",
            "enqueue",
            "jobs",
            "later",
            "--delay-ms",
            "600000",
            "--format",
            "json",
        ],
    );
    assert_eq!(delayed.json()["seq"], 4);

    let stats = flo(&server, &["queue", "stats", "jobs", "--format", "json"]).json();
    assert_eq!(stats["ready_count"], 3);
    assert_eq!(stats["delayed_count"], 1);
    assert_eq!(stats["total_enqueued"], 4);

    // peek leases nothing; priority order (0 first), then FIFO.
    let peek = flo(&server, &["queue", "peek", "jobs"]).ok();
    let seqs: Vec<&str> = peek
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(seqs, ["2", "3", "1"], "{peek}");

    // dequeue two: text table, urgent first.
    let got = flo(
        &server,
        &["queue", "dequeue", "jobs", "--count", "2", "--lease-ms", "60000"],
    )
    .ok();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    assert!(lines[0].starts_with("SEQ") && lines[0].ends_with("PAYLOAD"), "{got}");
    assert!(lines[1].starts_with("2 ") && lines[1].ends_with("urgent"), "{got}");
    assert!(lines[2].starts_with("3 ") && lines[2].ends_with("piped job"), "{got}");
    // the third, as JSON with the payload decoded.
    let json = flo(&server, &["queue", "dequeue", "jobs", "--format", "json"]).json();
    assert_eq!(json["messages"][0]["seq"], 1);
    assert_eq!(json["messages"][0]["payload_text"], "low");
    assert_eq!(json["messages"][0]["delivery_count"], 1);
    // nothing ready now: empty output, a note, exit 0.
    let none = flo(&server, &["queue", "dequeue", "jobs"]);
    assert_eq!(none.ok(), "");
    assert!(none.stderr.contains("no messages"), "{}", none.stderr);

    // ack one (and an unknown seq), nack one back to ready, one to the DLQ.
    let acked = flo(&server, &["queue", "ack", "jobs", "2", "99"]);
    assert_eq!(acked.ok(), "acked 1\n");
    assert!(acked.stderr.contains("99"), "{}", acked.stderr);
    assert_eq!(flo(&server, &["queue", "nack", "jobs", "3"]).ok(), "nacked 1\n");
    assert_eq!(
        flo(&server, &["queue", "nack", "jobs", "1", "--to-dlq"]).ok(),
        "nacked 1\n"
    );
    let stats = flo(&server, &["queue", "stats", "jobs", "--format", "json"]).json();
    assert_eq!(stats["ready_count"], 1);
    assert_eq!(stats["leased_count"], 0);
    assert_eq!(stats["dlq_count"], 1);
    assert_eq!(stats["total_acked"], 1);
    let text_stats = flo(&server, &["queue", "stats", "jobs"]).ok();
    assert!(
        text_stats
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["dlq_count", "1"]),
        "{text_stats}"
    );

    // dlq list and requeue.
    let dlq = flo(&server, &["queue", "dlq", "list", "jobs"]).ok();
    assert_eq!(dlq.lines().count(), 2, "{dlq}");
    assert!(
        dlq.lines().nth(1).unwrap_or("").starts_with("1 ") && dlq.ends_with("low\n"),
        "{dlq}"
    );
    assert_eq!(
        flo(&server, &["queue", "dlq", "requeue", "jobs", "1"]).ok(),
        "requeued 1\n"
    );
    let stats = flo(&server, &["queue", "stats", "jobs", "--format", "json"]).json();
    assert_eq!(stats["ready_count"], 2);
    assert_eq!(stats["dlq_count"], 0);

    let list = flo(&server, &["queue", "list"]).ok();
    assert!(list.lines().nth(1).unwrap_or("").starts_with("jobs "), "{list}");

    // A queue that never existed: the server's 404, exit 1.
    let missing = flo(&server, &["queue", "stats", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.starts_with("error: not_found: "), "{}", missing.stderr);
}

#[test]
fn stream_commands() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        flo(&server, &["stream", "append", "events", "first"]).ok(),
        "offset 0\n"
    );
    let file = dir.path().join("p.bin");
    std::fs::write(&file, [0u8, 1, 2, 0xff]).expect("write");
    assert_eq!(
        flo(
            &server,
            &["stream", "append", "events", &format!("@{}", file.display())]
        )
        .ok(),
        "offset 1\n"
    );
    let batch = Flo::at(&server, &["stream", "append", "events", "--lines"])
        .stdin(b"third\nfourth\n")
        .run();
    assert_eq!(batch.ok(), "offsets 2..=3\n");

    // read from an offset with a limit.
    let read = flo(&server, &["stream", "read", "events", "--offset", "1", "--limit", "2"]);
    let text = read.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("OFFSET"), "{text}");
    assert!(
        lines[1].starts_with("1 ") && lines[1].ends_with("base64:AAEC/w=="),
        "{text}"
    );
    assert!(lines[2].starts_with("2 ") && lines[2].ends_with("third"), "{text}");
    assert!(read.stderr.contains("next offset: 3"), "{}", read.stderr);
    let payloads = flo(
        &server,
        &["stream", "read", "events", "--offset", "2", "--payload-only"],
    )
    .ok();
    assert_eq!(payloads, "third\nfourth\n");
    let json = flo(&server, &["stream", "read", "events", "--format", "json"]).json();
    assert_eq!(json["records"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["records"][0]["payload_text"], "first");
    assert!(json["records"][1].get("payload_text").is_none());
    assert_eq!(json["next_offset"], 4);

    let info = flo(&server, &["stream", "info", "events", "--format", "json"]).json();
    assert_eq!(info["record_count"], 4);
    assert_eq!(info["last_offset"], 3);

    // consumer groups.
    flo(
        &server,
        &["stream", "group", "create", "events", "workers", "--start", "earliest"],
    )
    .ok();
    let got = flo(
        &server,
        &[
            "stream",
            "group",
            "read",
            "events",
            "workers",
            "--consumer",
            "w1",
            "--count",
            "3",
        ],
    )
    .ok();
    let offsets: Vec<&str> = got
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(offsets, ["0", "1", "2"], "{got}");
    assert_eq!(
        flo(&server, &["stream", "group", "ack", "events", "workers", "0", "1"]).ok(),
        "acked 2\n"
    );
    let group = flo(
        &server,
        &["stream", "group", "info", "events", "workers", "--format", "json"],
    )
    .json();
    assert_eq!(group["pending_count"], 1);
    assert_eq!(group["cursor"], 3);
    assert_eq!(group["consumers"][0], "w1");
    let text_info = flo(&server, &["stream", "info", "events"]).ok();
    assert!(
        text_info
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["consumer_groups", "workers"]),
        "{text_info}"
    );
    let rest = flo(
        &server,
        &[
            "stream", "group", "read", "events", "workers", "-c", "w2", "--format", "json",
        ],
    )
    .json();
    assert_eq!(rest["records"][0]["offset"], 3);
    assert_eq!(rest["records"][0]["payload_text"], "fourth");
    assert_eq!(
        flo(&server, &["stream", "group", "delete", "events", "workers"]).ok(),
        "group workers deleted\n"
    );
    let gone = flo(&server, &["stream", "group", "info", "events", "workers"]);
    assert_eq!(gone.code, 1);

    let missing = flo(&server, &["stream", "read", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.starts_with("error: not_found: "), "{}", missing.stderr);
}

#[test]
fn ts_write_and_query() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // One line; the CLI's default precision is ns.
    assert_eq!(
        flo(&server, &["ts", "write", "cpu,host=a usage=1.5 1700000000000000000"]).ok(),
        "points written: 1\n"
    );
    // A file in milliseconds, and stdin in seconds.
    let file = dir.path().join("points.lp");
    std::fs::write(
        &file,
        "# comment\ncpu,host=a usage=2.5 1700000001000\ncpu,host=b usage=7 1700000001000\n",
    )
    .expect("write");
    let path = file.display().to_string();
    assert_eq!(
        flo(&server, &["ts", "write", "--file", &path, "--precision", "ms"]).ok(),
        "points written: 2\n"
    );
    let piped = Flo::at(&server, &["ts", "write", "--precision", "s"])
        .stdin(b"cpu,host=a usage=3.5 1700000002\n")
        .run();
    assert_eq!(piped.ok(), "points written: 1\n");

    let query = "cpu{host=a}[1700000000000..1700000010000]";
    let table = flo(&server, &["ts", "query", query]).ok();
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        vec![
            vec!["SERIES", "FIELD", "TIME", "VALUE"],
            vec!["cpu{host=a}", "usage", "2023-11-14T22:13:20.000Z", "1.5"],
            vec!["cpu{host=a}", "usage", "2023-11-14T22:13:21.000Z", "2.5"],
            vec!["cpu{host=a}", "usage", "2023-11-14T22:13:22.000Z", "3.5"],
        ]
    );
    let json = flo(
        &server,
        &[
            "ts",
            "query",
            "cpu[1700000000000..1700000010000] | sum()",
            "--format",
            "json",
        ],
    )
    .json();
    let series = json["series"].as_array().expect("series");
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["tags"]["host"], "a");
    assert_eq!(series[0]["points"][0][1], 7.5);
    assert_eq!(series[1]["points"][0][1], 7.0);

    // A bad line: exit 1, the line named, nothing written.
    let bad = Flo::at(&server, &["ts", "write", "--precision", "ms"])
        .stdin(b"cpu,host=c usage=1 1700000003000\ncpu,host=c usage=\n")
        .run();
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.starts_with("error: bad_request: "), "{}", bad.stderr);
    assert!(bad.stderr.contains("line 2"), "{}", bad.stderr);
    let c = flo(
        &server,
        &[
            "ts",
            "query",
            "cpu{host=c}[1700000000000..1700000010000]",
            "--format",
            "json",
        ],
    )
    .json();
    assert_eq!(c["series"].as_array().map(Vec::len), Some(0), "{c}");
    // A bad query: exit 1, the position shown.
    let bad_query = flo(&server, &["ts", "query", "cpu[1h] | bogus()"]);
    assert_eq!(bad_query.code, 1);
    assert!(
        bad_query.stderr.starts_with("error: bad_request: "),
        "{}",
        bad_query.stderr
    );
    assert!(bad_query.stderr.contains("          ^"), "{}", bad_query.stderr);

    let list = flo(&server, &["ts", "list"]).ok();
    assert!(list.lines().nth(1).unwrap_or("").starts_with("cpu "), "{list}");
}

#[test]
fn namespaces_status_and_cluster() {
    let server = Server::start();
    assert_eq!(flo(&server, &["ns", "create", "app"]).ok(), "namespace app created\n");
    let again = flo(&server, &["ns", "create", "app"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.starts_with("error: conflict: "), "{}", again.stderr);
    let bad = flo(&server, &["ns", "create", "no/slash"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.starts_with("error: bad_request: "), "{}", bad.stderr);
    let list = flo(&server, &["ns", "list"]).ok();
    let names: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["app", "default"], "{list}");
    let json = flo(&server, &["ns", "list", "--format", "json"]).json();
    assert_eq!(json["namespaces"][0]["name"], "app");

    let status = flo(&server, &["status"]).ok();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["status", "healthy"]),
        "{status}"
    );
    let status = flo(&server, &["status", "--format", "json"]).json();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["shard_count"], 2);

    let cluster = flo(&server, &["cluster", "status"]).ok();
    assert!(cluster.contains("replication factor: 1"), "{cluster}");
    let addr = server.api.to_string();
    assert!(
        cluster
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", addr.as_str(), "alive", "2"]),
        "{cluster}"
    );
    let cluster = flo(&server, &["cluster", "status", "--format", "json"]).json();
    assert_eq!(cluster["nodes"][0]["address"], addr.as_str());
    assert_eq!(cluster["replication_factor"], 1);
}

#[test]
fn token_against_a_server_with_auth() {
    let server = Server::builder().arg("--auth").env("FLO_AUTH_TOKENS", "s3cret").start();
    let denied = flo(&server, &["kv", "set", "k", "v"]);
    assert_eq!(denied.code, 1);
    assert!(denied.stderr.starts_with("error: unauthorized: "), "{}", denied.stderr);
    let wrong = flo(&server, &["status", "--token", "nope"]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("unauthorized"), "{}", wrong.stderr);

    assert_eq!(
        flo(&server, &["kv", "set", "k", "v", "--token", "s3cret"]).ok(),
        "k: version 1\n"
    );
    // From the environment, and before the command group.
    let from_env = Flo::at(&server, &["kv", "get", "k"]).env("FLO_TOKEN", "s3cret").run();
    assert_eq!(from_env.ok(), "v\n");
    let before = Flo::at(&server, &["--token", "s3cret", "kv", "get", "k"]).run();
    assert_eq!(before.ok(), "v\n");
}

#[test]
fn environment_and_option_placement() {
    let server = Server::start();
    let host = server.api.to_string();
    // FLO_HOST and FLO_NAMESPACE alone.
    let set = Flo::new(&["kv", "set", "k", "in-app"])
        .env("FLO_HOST", &host)
        .env("FLO_NAMESPACE", "app")
        .run();
    assert_eq!(set.ok(), "k: version 1\n");
    assert_eq!(stored_value(&server, "app", "k").as_deref(), Some(&b"in-app"[..]));
    assert_eq!(stored_value(&server, "default", "k"), None);
    // -n after the group, --namespace before it.
    assert_eq!(
        Flo::new(&["kv", "get", "k", "-n", "app"])
            .env("FLO_HOST", &host)
            .run()
            .ok(),
        "in-app\n"
    );
    assert_eq!(
        Flo::new(&["--namespace", "app", "kv", "get", "k"])
            .env("FLO_HOST", &host)
            .run()
            .ok(),
        "in-app\n"
    );
    let wrong_ns = Flo::new(&["kv", "get", "k"]).env("FLO_HOST", &host).run();
    assert_eq!(wrong_ns.code, 1);
    assert!(wrong_ns.stderr.contains("namespace \"default\""), "{}", wrong_ns.stderr);
    // An explicit option beats the environment (FLO_HOST points at nothing here).
    let dead = format!("127.0.0.1:{}", free_port());
    let out = Flo::new(&["kv", "get", "k", "-n", "app", "--host", &host])
        .env("FLO_HOST", &dead)
        .env("FLO_NAMESPACE", "other")
        .run();
    assert_eq!(out.ok(), "in-app\n");
    let out = Flo::new(&["--host", &host, "kv", "get", "k"])
        .env("FLO_NAMESPACE", "app")
        .run();
    assert_eq!(out.ok(), "in-app\n");
    // Options between the group and the command.
    let out = Flo::new(&["kv", "--host", &host, "--namespace", "app", "get", "k"]).run();
    assert_eq!(out.ok(), "in-app\n");
}

#[test]
fn exit_codes_for_connection_and_usage_errors() {
    // Nothing listens on the port: exit 3, the host named.
    let dead = format!("127.0.0.1:{}", free_port());
    for args in [&["status"][..], &["kv", "get", "k"], &["queue", "stats", "q"]] {
        let mut full = args.to_vec();
        full.extend_from_slice(&["--host", &dead]);
        let out = Flo::new(&full).run();
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("cannot connect to {dead}")),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    let out = Flo::new(&["status"]).env("FLO_HOST", &dead).run();
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains(&dead), "{}", out.stderr);

    // Usage errors: exit 2.
    let server = Server::start();
    let unknown = flo(&server, &["kv", "frobnicate"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    let missing_file = flo(&server, &["kv", "set", "k", "@/definitely/not/here"]);
    assert_eq!(missing_file.code, 2);
    assert!(
        missing_file.stderr.contains("cannot read /definitely/not/here"),
        "{}",
        missing_file.stderr
    );
    assert_eq!(stored_value(&server, "default", "k"), None);
    let no_seqs = flo(&server, &["queue", "ack", "q"]);
    assert_eq!(no_seqs.code, 2);
    let bad_format = flo(&server, &["status", "--format", "yaml"]);
    assert_eq!(bad_format.code, 2);
    // Client options before a server command are refused, not silently ignored.
    let misplaced = Flo::new(&["--host", "127.0.0.1:1", "bench", "--duration", "1s"]).run();
    assert_eq!(misplaced.code, 2, "{}", misplaced.stderr);
}
