//! Runs the raw-request corpus in `tests/http_corpus/malformed.corpus` against one real server.
//!
//! Each case is written on its own connection; the runner reads one final response (skipping
//! `1xx`) and checks its status. For `close` cases the response must carry `Connection: close`
//! and the server must then close the connection without sending anything else (so no request
//! smuggled behind the rejected one was executed). For `keep` cases a `GET /health` on the same
//! connection must still answer 200. After every case a fresh connection must get 200 from
//! `/health`, and every response with status >= 400 must have a JSON body with string fields
//! `error` and `message`. All failures are collected and listed before the test fails.
//!
//! The desync probe: every complete case (all but the 408 ones, whose request never ends) is
//! run a second time, against a second server, with a poison byte and a valid
//! `GET /health` written right behind the case's bytes in the same segment. The poison byte
//! (`@`) is not a token character, so a server that ends the case's request where the corpus
//! says must answer `@GET /health ...` with 400 and close. The only acceptable outcomes:
//!
//! * `close` cases: exactly the expected response, then the connection closes; nothing after
//!   the end of the rejected request is answered.
//! * `keep` cases: the expected response, any responses of requests pipelined inside the case,
//!   then 400 with `Connection: close` for the poisoned request, then the connection closes.
//!
//! Anything else is a desync: a server that read past the end of the case's request (a body
//! longer than framed, a head that swallowed the next line) glues the poison into it and then
//! answers the GET, or waits for more; one that stopped short answers the leftover bytes. The
//! first run's follow-up `GET /health` on `keep` connections catches the short reads too.
//!
//! The test prints one summary line, `http-corpus: N cases, N as expected, 0 crashes,
//! 0 desyncs (...)`, on success as well.
//!
//! The corpus format (with the `\R{N:c}` and `\H{N}` macros) is documented at the top of the
//! corpus file.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Response, Server};

/// The corpus, embedded at compile time so cargo rebuilds this test when it changes.
const CORPUS: &[u8] = include_bytes!("http_corpus/malformed.corpus");
const CORPUS_FILE: &str = "tests/http_corpus/malformed.corpus";

/// The server configuration the corpus expectations are written for.
const SERVER_CONFIG: &str = "[http]\nmax_body_bytes = 65536\nrequest_timeout_ms = 1500\n";

/// Read timeout on case connections: well above `request_timeout_ms` (the 408 cases), but short
/// enough that a server which neither answers nor closes costs seconds per case, not the
/// harness's 10 s.
const CASE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The request sent on a `keep` connection after the case's response.
const FOLLOW_UP: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// Stop draining a `close` connection after this many bytes.
const MAX_DRAIN: usize = 1 << 20;

/// Written right behind each complete case in the desync probe: a byte that no request line
/// may start with, glued to a valid request.
const POISON_PROBE: &[u8] = b"@GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// What must happen to the connection after the expected response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Close,
    Keep,
}

impl After {
    fn as_str(self) -> &'static str {
        match self {
            After::Close => "close",
            After::Keep => "keep",
        }
    }
}

/// One corpus case.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    reference: String,
    status: u16,
    after: After,
    raw: Vec<u8>,
    /// Line of the `[case]` header in the corpus file.
    line: usize,
}

impl Case {
    fn expected(&self) -> String {
        format!("{} {}", self.status, self.after.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus parsing
// ---------------------------------------------------------------------------------------------

/// A case while its lines are being read.
struct Partial {
    name: String,
    line: usize,
    reference: Option<String>,
    expect: Option<(u16, After)>,
    raw: Vec<u8>,
    raw_lines: usize,
}

impl Partial {
    fn finish(self) -> Result<Case, String> {
        let line = self.line;
        let name = self.name;
        let reference = self
            .reference
            .ok_or_else(|| format!("line {line}: case {name:?} has no ref: line"))?;
        let (status, after) = self
            .expect
            .ok_or_else(|| format!("line {line}: case {name:?} has no expect: line"))?;
        if self.raw_lines == 0 {
            return Err(format!("line {line}: case {name:?} has no raw: line"));
        }
        Ok(Case {
            name,
            reference,
            status,
            after,
            raw: self.raw,
            line,
        })
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

fn first_non_blank(line: &[u8]) -> Option<u8> {
    line.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn utf8(bytes: &[u8], lineno: usize) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("line {lineno}: not UTF-8"))
}

fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses the corpus text into cases (see the format description at the top of the file).
fn parse_corpus(text: &[u8]) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    let mut cur: Option<Partial> = None;
    for (idx, line) in text.split(|&b| b == b'\n').enumerate() {
        let lineno = idx + 1;
        // The file's own line ending is not part of any request.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if is_blank(line) || first_non_blank(line) == Some(b'#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"[case]") {
            if let Some(done) = cur.take() {
                cases.push(done.finish()?);
            }
            let name = utf8(rest, lineno)?.trim().to_string();
            if !is_kebab(&name) {
                return Err(format!("line {lineno}: case name {name:?} is not kebab-case [a-z0-9-]"));
            }
            cur = Some(Partial {
                name,
                line: lineno,
                reference: None,
                expect: None,
                raw: Vec::new(),
                raw_lines: 0,
            });
        } else if let Some(rest) = line.strip_prefix(b"ref:") {
            let case = cur
                .as_mut()
                .ok_or_else(|| format!("line {lineno}: ref: outside a case"))?;
            if case.reference.is_some() {
                return Err(format!("line {lineno}: second ref: in case {:?}", case.name));
            }
            let reference = utf8(rest, lineno)?.trim();
            if reference.is_empty() {
                return Err(format!("line {lineno}: empty ref: in case {:?}", case.name));
            }
            case.reference = Some(reference.to_string());
        } else if let Some(rest) = line.strip_prefix(b"expect:") {
            let case = cur
                .as_mut()
                .ok_or_else(|| format!("line {lineno}: expect: outside a case"))?;
            if case.expect.is_some() {
                return Err(format!("line {lineno}: second expect: in case {:?}", case.name));
            }
            let words: Vec<&str> = utf8(rest, lineno)?.split_whitespace().collect();
            let bad = || format!("line {lineno}: expect: wants \"<status> close|keep\", got {words:?}");
            if words.len() != 2 {
                return Err(bad());
            }
            let status: u16 = words[0].parse().map_err(|_| bad())?;
            if !(200..=599).contains(&status) {
                return Err(bad());
            }
            let after = match words[1] {
                "close" => After::Close,
                "keep" => After::Keep,
                _ => return Err(bad()),
            };
            case.expect = Some((status, after));
        } else if let Some(rest) = line.strip_prefix(b"raw:") {
            let case = cur
                .as_mut()
                .ok_or_else(|| format!("line {lineno}: raw: outside a case"))?;
            // Exactly one space separates "raw:" from the bytes; everything after it counts.
            let text = if rest.is_empty() {
                rest
            } else {
                rest.strip_prefix(b" ")
                    .ok_or_else(|| format!("line {lineno}: raw: must be followed by one space"))?
            };
            let bytes = unescape(text).map_err(|e| format!("line {lineno}: {e}"))?;
            case.raw.extend_from_slice(&bytes);
            case.raw_lines += 1;
        } else {
            return Err(format!(
                "line {lineno}: unrecognised line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
    }
    if let Some(done) = cur.take() {
        cases.push(done.finish()?);
    }
    Ok(cases)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Largest repeat count accepted by `\R` and `\H`.
const MAX_REPEAT: usize = 10_000_000;

/// Parses `{digits<term>` at the start of `s`; returns the number and the index just past `term`.
fn braced_number(s: &[u8], term: u8, what: &str) -> Result<(usize, usize), String> {
    if s.first() != Some(&b'{') {
        return Err(format!("{what}: expected '{{'"));
    }
    let digits = s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(format!("{what}: expected a decimal count"));
    }
    let n: usize = std::str::from_utf8(&s[1..1 + digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .filter(|&n| n <= MAX_REPEAT)
        .ok_or_else(|| format!("{what}: count too large"))?;
    if s.get(1 + digits) != Some(&term) {
        return Err(format!("{what}: expected '{}' after the count", term as char));
    }
    Ok((n, 1 + digits + 1))
}

/// Expands the escapes of a `raw:` line: `\r \n \t \0 \\ \xHH \R{N:c} \H{N}`.
fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *s.get(i + 1).ok_or("backslash at the end of a raw: line")?;
        i += 2;
        match esc {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hi = s.get(i).copied().and_then(hex_val);
                let lo = s.get(i + 1).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err("\\x needs exactly two hex digits".into()),
                }
                i += 2;
            }
            b'R' => {
                let rest = &s[i..];
                let (n, at) = braced_number(rest, b':', "\\R{N:c}")?;
                let c = *rest.get(at).ok_or("\\R{N:c}: missing the character")?;
                if !(0x20..=0x7e).contains(&c) {
                    return Err("\\R{N:c}: c must be one printable ASCII character".into());
                }
                if rest.get(at + 1) != Some(&b'}') {
                    return Err("\\R{N:c}: expected '}' after the character".into());
                }
                out.extend(std::iter::repeat_n(c, n));
                i += at + 2;
            }
            b'H' => {
                let rest = &s[i..];
                let (n, at) = braced_number(rest, b'}', "\\H{N}")?;
                for k in 1..=n {
                    out.extend_from_slice(format!("X-h{k}: v\r\n").as_bytes());
                }
                i += at;
            }
            other => {
                return Err(format!(
                    "unknown escape \\{} (known: \\r \\n \\t \\0 \\\\ \\xHH \\R{{N:c}} \\H{{N}})",
                    (other as char).escape_default()
                ))
            }
        }
    }
    Ok(out)
}

fn load_corpus() -> Vec<Case> {
    parse_corpus(CORPUS).unwrap_or_else(|e| panic!("{CORPUS_FILE}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Running cases
// ---------------------------------------------------------------------------------------------

/// A short printable excerpt of some bytes.
fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 160;
    let cut = &bytes[..bytes.len().min(MAX)];
    let mut s: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if bytes.len() > MAX {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    format!("\"{s}\"")
}

/// True when the comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Error responses must be JSON objects with string fields `error` and `message`.
fn check_error_body(resp: &Response) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("error body is not JSON ({e}): {}", snippet(&resp.body)))?;
    for field in ["error", "message"] {
        if !v.get(field).is_some_and(|f| f.is_string()) {
            return Err(format!(
                "error body lacks a string field {field:?}: {}",
                snippet(&resp.body)
            ));
        }
    }
    Ok(())
}

/// Like `Server::connect`, but reports failure instead of panicking and uses the shorter
/// case read timeout.
fn connect(server: &Server) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&server.api, common::IO_TIMEOUT)?;
    s.set_read_timeout(Some(CASE_READ_TIMEOUT))?;
    s.set_write_timeout(Some(common::IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// How reading the rest of a connection ended.
enum End {
    /// Orderly close (FIN).
    Eof,
    /// The peer reset the connection: closed as well.
    Reset,
    /// Nothing arrived for `CASE_READ_TIMEOUT`: the connection is still open.
    Timeout,
    /// The server kept sending past `MAX_DRAIN`.
    TooMuch,
    Error(std::io::Error),
}

/// Reads until the connection ends; like `common::read_to_close`, but says why it stopped
/// (EOF and a read timeout look the same there). `rest` holds bytes already buffered.
fn drain(s: &mut TcpStream, mut rest: Vec<u8>) -> (Vec<u8>, End) {
    let mut chunk = [0u8; 8192];
    loop {
        if rest.len() > MAX_DRAIN {
            return (rest, End::TooMuch);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (rest, End::Eof),
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let end = match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => End::Timeout,
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => End::Reset,
                    _ => End::Error(e),
                };
                return (rest, end);
            }
        }
    }
}

/// Runs one case; pushes every deviation onto `problems` and returns what was observed.
fn run_case(server: &Server, case: &Case, problems: &mut Vec<String>) -> String {
    let mut s = match connect(server) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("connect failed: {e}"));
            return "no connection".into();
        }
    };
    // The server may answer and close before it has read everything (414/431/413); a failed
    // write only matters if no response arrives either.
    let write_err = s.write_all(&case.raw).and_then(|_| s.flush()).err();

    let mut buf = Vec::new();
    let resp = match common::read_response_buffered(&mut s, &mut buf) {
        Ok(r) => r,
        Err(e) => {
            let mut msg = format!("no response: {e}");
            if let Some(w) = write_err {
                msg.push_str(&format!(" (writing the request failed: {w})"));
            }
            if !buf.is_empty() {
                msg.push_str(&format!("; received {}", snippet(&buf)));
            }
            problems.push(msg);
            return "no response".into();
        }
    };
    let conn = resp.header("connection").unwrap_or("").to_string();
    let conn_shown = if conn.is_empty() { "-".to_string() } else { conn.clone() };

    if resp.status >= 400 {
        if let Err(e) = check_error_body(&resp) {
            problems.push(e);
        }
    }
    if resp.status != case.status {
        // The exchange is already wrong; report what came back without waiting on the
        // connection's fate.
        problems.push(format!("status {} instead of {}", resp.status, case.status));
        return format!(
            "{} (Connection: {conn_shown}) body {}",
            resp.status,
            snippet(&resp.body)
        );
    }

    match case.after {
        After::Close => {
            if !has_token(&conn, "close") {
                problems.push(format!("response lacks Connection: close (Connection: {conn_shown})"));
            }
            let (rest, end) = drain(&mut s, buf);
            let fate = match end {
                End::Eof | End::Reset => "close",
                End::Timeout => {
                    problems.push(format!(
                        "connection still open {} s after the response",
                        CASE_READ_TIMEOUT.as_secs()
                    ));
                    "open"
                }
                End::TooMuch => {
                    problems.push(format!("server kept sending after the response (> {MAX_DRAIN} bytes)"));
                    "open"
                }
                End::Error(e) => {
                    problems.push(format!("reading after the response failed: {e}"));
                    "error"
                }
            };
            let extra = common::parse_all(&rest);
            if !extra.is_empty() {
                let statuses: Vec<u16> = extra.iter().map(|r| r.status).collect();
                problems.push(format!(
                    "{} further response(s) after the first, statuses {statuses:?}: a request behind the \
                     rejected one was processed",
                    extra.len()
                ));
            } else if !rest.iter().all(|b| b.is_ascii_whitespace()) {
                problems.push(format!("unexpected bytes after the response: {}", snippet(&rest)));
            }
            format!("{} {fate}", resp.status)
        }
        After::Keep => {
            if has_token(&conn, "close") {
                problems.push("response says Connection: close but the connection must stay open".into());
            }
            let follow = s
                .write_all(FOLLOW_UP)
                .and_then(|_| common::read_response_buffered(&mut s, &mut buf));
            match follow {
                Ok(r) if r.status == 200 => format!("{} keep", resp.status),
                Ok(r) => {
                    problems.push(format!("follow-up GET /health on the same connection got {}", r.status));
                    format!("{} keep?", resp.status)
                }
                Err(e) => {
                    problems.push(format!("follow-up GET /health on the same connection failed: {e}"));
                    format!("{} closed", resp.status)
                }
            }
        }
    }
}

/// Whether the desync probe applies: a case the server must wait on (408) has no end for the
/// probe to sit behind, so the probe's bytes would just become part of it.
fn probed(case: &Case) -> bool {
    case.status != 408
}

/// The desync probe for one case (see the module doc). `Err` says how the exchange went wrong.
fn run_poisoned(server: &Server, case: &Case) -> Result<String, String> {
    let mut s = connect(server).map_err(|e| format!("connect failed: {e}"))?;
    let mut bytes = case.raw.clone();
    bytes.extend_from_slice(POISON_PROBE);
    // As in the first run, a failed write matters only if the responses are wrong too.
    let _ = s.write_all(&bytes).and_then(|_| s.flush());
    let (rest, end) = drain(&mut s, Vec::new());
    let responses = common::parse_all(&rest);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    let closes = |r: &Response| r.header("connection").is_some_and(|c| has_token(c, "close"));
    let seen = format!("responses {statuses:?}");
    match end {
        End::Eof | End::Reset => {}
        End::Timeout => {
            return Err(format!(
                "{seen}, then the connection stayed open: the poisoned request was not rejected"
            ))
        }
        End::TooMuch => return Err(format!("{seen}, then more than {MAX_DRAIN} bytes")),
        End::Error(e) => return Err(format!("{seen}, then reading failed: {e}")),
    }
    let Some(first) = responses.first() else {
        return Err(format!("no response at all; received {}", snippet(&rest)));
    };
    if first.status != case.status {
        return Err(format!(
            "{seen}: the bytes after the case changed its answer (expected {} first)",
            case.status
        ));
    }
    match case.after {
        After::Close => {
            if responses.len() > 1 {
                return Err(format!("{seen}: a request after the rejected one was answered"));
            }
            Ok(format!("{} close", first.status))
        }
        After::Keep => {
            let last = responses.last().unwrap_or(first);
            if responses.len() < 2 || last.status != 400 || !closes(last) {
                return Err(format!(
                    "{seen}: the poisoned request behind the case was not answered 400 + close"
                ));
            }
            if responses[..responses.len() - 1].iter().any(closes) {
                return Err(format!("{seen}: the connection was closed before the poisoned request"));
            }
            Ok(format!("{} keep, poison 400 close", first.status))
        }
    }
}

/// `GET /health` on a fresh connection.
fn health_check(server: &Server) -> Result<(), String> {
    match common::try_request(server.api, "GET", "/health", &[], b"") {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("GET /health on a fresh connection got {}", r.status)),
        Err(e) => Err(format!("GET /health on a fresh connection failed: {e}")),
    }
}

struct Failure {
    name: String,
    line: usize,
    reference: String,
    expected: String,
    got: String,
    problems: Vec<String>,
}

/// Health of both servers; `Err` names the first that does not answer.
fn servers_alive(servers: &[&Server; 2]) -> Result<(), String> {
    for (name, server) in ["first", "probe"].iter().zip(servers) {
        health_check(server).map_err(|e| format!("{name} server: {e}"))?;
    }
    Ok(())
}

#[test]
fn malformed_request_corpus() {
    let cases = load_corpus();
    // The desync probe runs on its own server so the cases that create a namespace create it
    // there too, instead of finding it made by the first run.
    let server = Server::builder().shards(2).config(SERVER_CONFIG).start();
    let probe_server = Server::builder().shards(2).config(SERVER_CONFIG).start();
    let servers = [&server, &probe_server];

    let mut failures: Vec<Failure> = Vec::new();
    let (mut desyncs, mut probes, mut crashes) = (0usize, 0usize, 0usize);
    for (i, case) in cases.iter().enumerate() {
        let mut problems = Vec::new();
        let mut got = run_case(&server, case, &mut problems);
        if probed(case) {
            probes += 1;
            match run_poisoned(&probe_server, case) {
                Ok(_) => {}
                Err(e) => {
                    desyncs += 1;
                    got.push_str("; desync probe failed");
                    problems.push(format!("desync probe (case bytes + {}): {e}", snippet(POISON_PROBE)));
                }
            }
        }
        let mut server_down = false;
        if let Err(e) = servers_alive(&servers) {
            // One retry, so a momentary hiccup is not mistaken for a dead server.
            std::thread::sleep(Duration::from_millis(200));
            server_down = servers_alive(&servers).is_err();
            crashes += 1;
            problems.push(format!("server did not survive: {e}"));
        }
        if !problems.is_empty() {
            failures.push(Failure {
                name: case.name.clone(),
                line: case.line,
                reference: case.reference.clone(),
                expected: case.expected(),
                got,
                problems,
            });
        }
        if server_down {
            for rest in &cases[i + 1..] {
                failures.push(Failure {
                    name: rest.name.clone(),
                    line: rest.line,
                    reference: rest.reference.clone(),
                    expected: rest.expected(),
                    got: "not run".into(),
                    problems: vec![format!("server down after case {}", case.name)],
                });
            }
            break;
        }
    }

    let mut report = format!(
        "http-corpus: {} cases, {} as expected, {crashes} crashes, {desyncs} desyncs \
         (poison probe behind {probes} complete cases; {} incomplete ones not probed)\n",
        cases.len(),
        cases.len() - failures.len(),
        cases.len() - probes,
    );
    for f in &failures {
        report.push_str(&format!(
            "  FAIL {} ({CORPUS_FILE}:{}; {}): expected {}, got {}\n",
            f.name, f.line, f.reference, f.expected, f.got
        ));
        for p in &f.problems {
            report.push_str(&format!("         - {p}\n"));
        }
    }
    // Written to stderr directly (not through eprint!) so libtest does not capture it: the
    // summary line shows up on success too.
    let _ = std::io::stderr().write_all(report.as_bytes());
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed (listed above)",
        failures.len(),
        cases.len()
    );
}

#[test]
fn corpus_is_well_formed() {
    let cases = load_corpus();
    assert!(
        cases.len() >= 300,
        "{CORPUS_FILE} has only {} cases, expected at least 300",
        cases.len()
    );
    let mut seen = HashSet::new();
    for c in &cases {
        assert!(
            seen.insert(c.name.as_str()),
            "duplicate case name {:?} ({CORPUS_FILE}:{})",
            c.name,
            c.line
        );
        assert!(!c.raw.is_empty(), "case {:?} has an empty request", c.name);
    }

    // The escape language itself.
    assert_eq!(unescape(br"\r\n\t\0\\\x41\xfF").unwrap(), b"\r\n\t\0\\A\xff".to_vec());
    assert_eq!(unescape(br"a\R{3:b}c\R{0:z}").unwrap(), b"abbbc".to_vec());
    assert_eq!(unescape(br"\R{2:}}").unwrap(), b"}}".to_vec());
    assert_eq!(unescape(br"\H{2}").unwrap(), b"X-h1: v\r\nX-h2: v\r\n".to_vec());
    assert_eq!(unescape(b"trailing space ").unwrap(), b"trailing space ".to_vec());
    let rejected: [&[u8]; 9] = [
        br"\q",
        br"\x4",
        br"\xg0",
        br"\",
        br"\R{3}",
        br"\R{3:ab}",
        br"\R{:a}",
        br"\H{x}",
        br"\H3",
    ];
    for bad in rejected {
        assert!(
            unescape(bad).is_err(),
            "{:?} should be rejected",
            String::from_utf8_lossy(bad)
        );
    }

    // The file format.
    let sample = b"# c\n\n[case] a-b\nref: r\nexpect: 400 close\nraw: X\\r\\n\r\nraw: Y \n[case] c\nref: r\nexpect: 200 keep\nraw: Z\n";
    let parsed = parse_corpus(sample).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].name, "a-b");
    assert_eq!(parsed[0].raw, b"X\r\nY ".to_vec());
    assert_eq!((parsed[0].status, parsed[0].after), (400, After::Close));
    assert_eq!((parsed[1].status, parsed[1].after), (200, After::Keep));
    assert!(
        parse_corpus(b"[case] x\nexpect: 200 keep\nraw: a\n").is_err(),
        "missing ref"
    );
    assert!(parse_corpus(b"[case] x\nref: r\nraw: a\n").is_err(), "missing expect");
    assert!(
        parse_corpus(b"[case] x\nref: r\nexpect: 200 keep\n").is_err(),
        "missing raw"
    );
    assert!(
        parse_corpus(b"[case] x\nref: r\nexpect: 200 maybe\nraw: a\n").is_err(),
        "bad mode"
    );
    assert!(
        parse_corpus(b"[case] Bad_Name\nref: r\nexpect: 200 keep\nraw: a\n").is_err(),
        "bad name"
    );
    assert!(parse_corpus(b"raw: a\n").is_err(), "raw outside a case");
}
