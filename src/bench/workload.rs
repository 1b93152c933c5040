//! Workloads of `flo bench`: which HTTP requests the load tool sends.
//!
//! This module owns the request bytes. A [`Workload`] turns `(connection index,
//! request sequence number)` into one complete HTTP/1.1 keep-alive request
//! (request line, headers, optional JSON body) written into a reusable
//! [`RequestBytes`]. Connection tasks never format anything themselves.
//!
//! The KV workloads (`kv-put`, `kv-get`, `kv-mixed`) address keys `k<N>` of
//! one namespace, `N` in `0..keys`. Connection `conn` of `connections` walks
//! the key space from its own evenly spaced starting point,
//! `key = (conn * keys / connections + seq) % keys`: connections advancing at
//! similar rates chase each other around the key space instead of writing
//! the same keys, and distinct connections at the same `seq` address
//! distinct keys (when there are no more connections than keys). The PUT body
//! `{"value":"<base64>"}` is encoded once, when the workload is configured.
//!
//! The queue workloads use queue `bench` of the namespace: `queue-produce`
//! enqueues a `--value-bytes` payload per request; `queue-consume` dequeues
//! `--batch` messages and acks what came back; `queue-pipeline` runs enqueue,
//! dequeue, ack on each connection. The last two are *stateful*: a connection
//! keeps response bodies and its next request depends on them ([`Flow`]).
//!
//! The stream workloads use stream `bench` of the namespace: `stream-append` appends
//! `--batch` records of `--value-bytes` each per request (a single-record append when the
//! batch is 1); `stream-read` reads it sequentially, `--batch` records a request, each
//! connection following `next_offset` from its own evenly spaced start in `0..keys` (set
//! `--keys` to the stream's length) and wrapping to 0 at the end. Both count records and
//! payload bytes from the answers.
//!
//! `ts-ingest` writes TSBS "cpu-only"-like data as line protocol: `--keys` hosts, each with 10
//! tags and 10 integer-valued fields random-walking in 0..=100, one point per host every 10 s
//! of data time; a request carries `--batch` lines, and each connection writes its own share of
//! the hosts, advancing its clock once all of them have a point (`--fields` takes fewer fields). With `--influx` it posts to
//! `/write?db=<namespace>&precision=ms` (InfluxDB, or Flo's compatible endpoint).
//!
//! `ts-query` sends `--query` again and again: FloQL to `/api/v1/ts/<namespace>/query`, or with
//! `--influx` InfluxQL to InfluxDB's `/query?db=<namespace>&epoch=ms`; answers are counted by
//! status only (latency is the figure).
//!
//! Unique writes (for checking that no acknowledged write is lost): with a run id
//! ([`KvOptions::run_id`]), `kv-put` writes key `<run id>.<conn>.<seq>` (request `seq` of
//! connection `conn`, so no two requests of a run share a key) and its value starts with the
//! key's bytes, padded with the usual filler to `--value-bytes`. `kv-verify` reads such keys
//! back, one request per key of [`KvOptions::verify_keys`] (request `i` of the run reads key
//! `i`), and counts a key found when the answer is 200 with exactly the value that key's write
//! sent, lost otherwise.
//!
//! Adding a workload means adding a
//! [`WorkloadKind`] variant, its `name`, whether it varies per request
//! ([`Workload::varies_per_request`]) and a `build` arm. A workload whose
//! requests differ per request writes its body into [`RequestBytes::body`] and
//! its path with `format_args!`, so the hot path does not allocate once the
//! buffers have grown to their working size.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use base64::Engine as _;

/// The named workloads selectable with `--workload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// `GET /api/v1/status`: server status document.
    Status,
    /// `GET /health`: liveness probe, the cheapest request the server answers.
    Health,
    /// `PUT /api/v1/kv/<namespace>/k<N>` with a `--value-bytes` value.
    KvPut,
    /// `GET /api/v1/kv/<namespace>/k<N>` (a key never written answers 404).
    KvGet,
    /// 90% `kv-get`, 10% `kv-put` (every tenth request of a connection).
    KvMixed,
    /// `POST /api/v1/queue/<namespace>/bench/enqueue` of a `--value-bytes` payload.
    QueueProduce,
    /// Dequeue `--batch` messages of queue `bench`, ack what came back, again.
    QueueConsume,
    /// The full cycle on each connection: enqueue one, dequeue one, ack it.
    QueuePipeline,
    /// `POST /api/v1/stream/<namespace>/bench/append` of `--batch` records.
    StreamAppend,
    /// Sequential reads of stream `bench`, `--batch` records a request.
    StreamRead,
    /// Line-protocol writes of TSBS-like cpu data, `--batch` lines a request.
    TsIngest,
    /// The same `--query` again and again (FloQL, or InfluxQL with `--influx`).
    TsQuery,
    /// `GET` every key of `--keys-file` once (keys `kv-put --run-id` wrote), checking each
    /// value: found, or lost.
    KvVerify,
}

impl WorkloadKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Status => "status",
            WorkloadKind::Health => "health",
            WorkloadKind::KvPut => "kv-put",
            WorkloadKind::KvGet => "kv-get",
            WorkloadKind::KvMixed => "kv-mixed",
            WorkloadKind::QueueProduce => "queue-produce",
            WorkloadKind::QueueConsume => "queue-consume",
            WorkloadKind::QueuePipeline => "queue-pipeline",
            WorkloadKind::StreamAppend => "stream-append",
            WorkloadKind::StreamRead => "stream-read",
            WorkloadKind::TsIngest => "ts-ingest",
            WorkloadKind::TsQuery => "ts-query",
            WorkloadKind::KvVerify => "kv-verify",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reusable request buffer: `wire` holds the bytes sent on the socket,
/// `body` is scratch space a workload fills before calling the request writer
/// (the body must be known before `Content-Length` can be written).
#[derive(Debug, Default)]
pub struct RequestBytes {
    /// The complete request as sent on the wire.
    pub wire: Vec<u8>,
    /// Scratch space for the request body; copied into `wire` by the writer.
    pub body: Vec<u8>,
}

impl RequestBytes {
    /// Buffers with room for typical requests, so building does not allocate.
    pub fn with_capacity(wire_bytes: usize) -> Self {
        RequestBytes {
            wire: Vec::with_capacity(wire_bytes),
            body: Vec::with_capacity(wire_bytes),
        }
    }
}

/// Default of `--namespace`.
pub const DEFAULT_NAMESPACE: &str = "bench";
/// Default of `--keys`.
pub const DEFAULT_KEYS: u64 = 100_000;
/// Default of `--value-bytes`.
pub const DEFAULT_VALUE_BYTES: u32 = 100;
/// Default of `--batch`.
pub const DEFAULT_BATCH: usize = 10;
/// One request in this many of `kv-mixed` is a PUT (the others are GETs).
const KV_MIXED_PUT_EVERY: u64 = 10;

/// Checks a `--namespace`: names in a URL path match `[A-Za-z0-9_.:-]{1,128}`
/// (API.md, Conventions), so they need no escaping.
pub fn parse_namespace(text: &str) -> Result<String, String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if text.is_empty() || text.len() > 128 || !text.chars().all(valid_char) {
        return Err(format!(
            "invalid namespace {text:?} (expected 1 to 128 of A-Z a-z 0-9 _ . : -)"
        ));
    }
    Ok(text.to_owned())
}

/// What the KV workloads address: `--namespace`, `--keys`, `--value-bytes`,
/// and how many connections share the key space (`--connections`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOptions {
    /// Namespace of every key (must satisfy [`parse_namespace`]).
    pub namespace: String,
    /// Size of the key space: keys `k0` to `k<keys-1>` (0 is taken as 1).
    pub keys: u64,
    /// Length of every written value before base64.
    pub value_bytes: usize,
    /// Connections of the run (0 is taken as 1); their starting keys are
    /// spaced `keys / connections` apart.
    pub connections: usize,
    /// Messages per dequeue (and so per ack) of `queue-consume`; records per request of the
    /// stream workloads; lines per request of `ts-ingest`.
    pub batch: usize,
    /// `ts-ingest`: post to InfluxDB's `/write` path; `ts-query`: InfluxQL to `/query`.
    pub influx: bool,
    /// `ts-query`: the query.
    pub query: String,
    /// `ts-ingest`: fields per line (1..=10).
    pub fields: usize,
    /// `kv-put`: write unique keys `<run_id>.<conn>.<seq>` (see the module doc).
    pub run_id: Option<String>,
    /// `kv-verify`: the keys to read back, request `i` reading key `i`.
    pub verify_keys: Arc<[String]>,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            keys: DEFAULT_KEYS,
            value_bytes: DEFAULT_VALUE_BYTES as usize,
            connections: 64,
            batch: DEFAULT_BATCH,
            influx: false,
            query: String::new(),
            fields: TS_FIELDS.len(),
            run_id: None,
            verify_keys: Arc::from(Vec::new()),
        }
    }
}

/// [`KvOptions`] prepared for the hot path.
#[derive(Clone, Debug)]
struct KvTarget {
    namespace: String,
    keys: u64,
    connections: u64,
    /// The complete PUT body, `{"value":"<base64>"}`.
    put_body: Vec<u8>,
    /// The complete enqueue body, `{"payload":"<base64>"}`.
    enqueue_body: Vec<u8>,
    /// The complete dequeue body of `queue-consume`.
    dequeue_body: Vec<u8>,
    /// The complete body of `stream-append`.
    append_body: Vec<u8>,
    value_bytes: u64,
    /// Records per request of the stream workloads (at most 1000).
    batch: usize,
    /// Lines per request of `ts-ingest`.
    lines: usize,
    influx: bool,
    /// `ts-query`: the JSON body (FloQL), or the URL-encoded InfluxQL.
    query: Vec<u8>,
    /// `ts-ingest`: fields per line.
    fields: usize,
    run_id: Option<String>,
    verify_keys: Arc<[String]>,
}

impl KvTarget {
    fn new(options: &KvOptions) -> Self {
        let keys = options.keys.max(1);
        let connections = (options.connections as u64).max(1);
        let value: Vec<u8> = (0..options.value_bytes).map(|i| (i % 251) as u8).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
        let put_body = format!(r#"{{"value":"{encoded}"}}"#).into_bytes();
        let enqueue_body = format!(r#"{{"payload":"{encoded}"}}"#).into_bytes();
        let dequeue_body = format!(
            r#"{{"count":{},"visibility_timeout_ms":60000}}"#,
            options.batch.clamp(1, 1000)
        )
        .into_bytes();
        let batch = options.batch.clamp(1, 1000);
        let append_body = if batch == 1 {
            enqueue_body.clone()
        } else {
            let record = format!(r#"{{"payload":"{encoded}"}}"#);
            format!(r#"{{"records":[{}]}}"#, vec![record; batch].join(",")).into_bytes()
        };
        KvTarget {
            namespace: options.namespace.clone(),
            keys,
            connections,
            put_body,
            enqueue_body,
            dequeue_body,
            append_body,
            value_bytes: options.value_bytes as u64,
            batch,
            lines: options.batch.max(1),
            influx: options.influx,
            fields: options.fields.clamp(1, TS_FIELDS.len()),
            run_id: options.run_id.clone(),
            verify_keys: options.verify_keys.clone(),
            query: if options.influx {
                url_encode(&options.query).into_bytes()
            } else {
                serde_json::json!({ "query": options.query }).to_string().into_bytes()
            },
        }
    }

    /// The key number of request `seq` of connection `conn`.
    fn key(&self, conn: usize, seq: u64) -> u64 {
        let start = conn as u128 * self.keys as u128 / self.connections as u128;
        ((start + seq as u128) % self.keys as u128) as u64
    }

    /// The body `{"value":"<base64>"}` of the unique write of `key`: the value starts with the
    /// key's bytes and is padded with the filler to `value_bytes` (the key is cut if longer).
    fn unique_put_body(&self, key: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(br#"{"value":""#);
        let encoded = base64::engine::general_purpose::STANDARD.encode(unique_value(key, self.value_bytes as usize));
        out.extend_from_slice(encoded.as_bytes());
        out.extend_from_slice(br#""}"#);
    }
}

/// The unique key of request `seq` of connection `conn` in run `run_id`.
pub fn unique_key(run_id: &str, conn: usize, seq: u64) -> String {
    format!("{run_id}.{conn}.{seq}")
}

/// The value a unique write of `key` sends: the key's bytes, then the filler, `len` bytes.
fn unique_value(key: &str, len: usize) -> Vec<u8> {
    let mut value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let n = key.len().min(len);
    value[..n].copy_from_slice(&key.as_bytes()[..n]);
    value
}

/// A workload bound to one target: knows the `Host` header and the optional
/// bearer token, and builds the request for request `seq` of connection `conn`.
#[derive(Clone, Debug)]
pub struct Workload {
    kind: WorkloadKind,
    host_header: String,
    bearer_token: Option<String>,
    kv: KvTarget,
}

impl Workload {
    /// A workload with the default [`KvOptions`]; see [`Workload::with_kv`].
    pub fn new(kind: WorkloadKind, host_header: &str, bearer_token: Option<&str>) -> Self {
        Workload {
            kind,
            host_header: host_header.to_owned(),
            bearer_token: bearer_token.map(str::to_owned),
            kv: KvTarget::new(&KvOptions::default()),
        }
    }

    /// Sets what the KV workloads address (ignored by the others); encodes
    /// the PUT body once.
    pub fn with_kv(mut self, options: &KvOptions) -> Self {
        self.kv = KvTarget::new(options);
        self
    }

    /// Whether request bytes differ between requests of one connection. When
    /// false, connections build their request once and resend the same bytes.
    pub fn varies_per_request(&self) -> bool {
        match self.kind {
            WorkloadKind::Status | WorkloadKind::Health => false,
            WorkloadKind::KvPut | WorkloadKind::KvGet | WorkloadKind::KvMixed => true,
            WorkloadKind::QueueProduce | WorkloadKind::StreamAppend | WorkloadKind::TsQuery => false,
            WorkloadKind::QueueConsume
            | WorkloadKind::QueuePipeline
            | WorkloadKind::StreamRead
            | WorkloadKind::TsIngest
            | WorkloadKind::KvVerify => true,
        }
    }

    /// Whether the requests must be numbered across the whole run (`kv-verify`: request `i`
    /// reads key `i`), so connections claim their request numbers from one counter.
    pub fn numbers_requests_per_run(&self) -> bool {
        self.kind == WorkloadKind::KvVerify
    }

    /// `kv-put` with a run id: the key request `seq` of connection `conn` writes.
    pub fn unique_write_key(&self, conn: usize, seq: u64) -> Option<String> {
        match (&self.kv.run_id, self.kind) {
            (Some(run), WorkloadKind::KvPut) => Some(unique_key(run, conn, seq)),
            _ => None,
        }
    }

    /// Whether a connection keeps response bodies and calls [`Workload::observe`] with each:
    /// when its next request depends on the answers before it (the queue consumers ack what
    /// they were given, the stream reader follows `next_offset`; these build requests with
    /// [`Workload::build_flow`]), or when the answers are counted (records appended).
    pub fn is_stateful(&self) -> bool {
        matches!(
            self.kind,
            WorkloadKind::QueueConsume
                | WorkloadKind::QueuePipeline
                | WorkloadKind::StreamAppend
                | WorkloadKind::StreamRead
                | WorkloadKind::TsIngest
                | WorkloadKind::KvVerify
        )
    }

    /// The next request of a stateful connection (`conn`'s); `seq` numbers it (for
    /// `kv-verify`, across the run).
    pub fn build_flow(&self, conn: usize, seq: u64, flow: &mut Flow, out: &mut RequestBytes) {
        out.body.clear();
        let ns = &self.kv.namespace;
        match self.kind {
            WorkloadKind::KvVerify => {
                flow.cursor = Some(seq);
                let keys = &self.kv.verify_keys;
                let key = usize::try_from(seq).ok().and_then(|i| keys.get(i));
                let key = key.map_or("", String::as_str);
                let path = format_args!("/api/v1/kv/{ns}/{key}");
                return self.write_head_and_body(&mut out.wire, "GET", path, &[]);
            }
            WorkloadKind::StreamAppend => {
                let path = format_args!("/api/v1/stream/{ns}/bench/append");
                return self.write_head_and_body(&mut out.wire, "POST", path, &self.kv.append_body);
            }
            WorkloadKind::StreamRead => {
                let offset = *flow.cursor.get_or_insert_with(|| self.kv.key(conn, 0));
                let count = self.kv.batch;
                let path = format_args!("/api/v1/stream/{ns}/bench?offset={offset}&count={count}");
                return self.write_head_and_body(&mut out.wire, "GET", path, &[]);
            }
            WorkloadKind::TsIngest => {
                let ts = flow.ts.get_or_insert_with(|| TsHosts::new(&self.kv, conn));
                flow.sent = ts.write_lines(self.kv.lines, &mut out.body);
                if self.kv.influx {
                    let path = format_args!("/write?db={ns}&precision=ms");
                    return self.write_head_and_body(&mut out.wire, "POST", path, &out.body);
                }
                let path = format_args!("/api/v1/ts/{ns}/write?precision=ms");
                return self.write_head_and_body(&mut out.wire, "POST", path, &out.body);
            }
            _ => {}
        }
        if self.kind == WorkloadKind::QueuePipeline && flow.step == 0 {
            flow.step = 1;
            let path = format_args!("/api/v1/queue/{ns}/bench/enqueue");
            return self.write_head_and_body(&mut out.wire, "POST", path, &self.kv.enqueue_body);
        }
        if flow.pending.is_empty() {
            let path = format_args!("/api/v1/queue/{ns}/bench/dequeue");
            if self.kind == WorkloadKind::QueuePipeline {
                return self.write_head_and_body(&mut out.wire, "POST", path, br#"{"visibility_timeout_ms":60000}"#);
            }
            return self.write_head_and_body(&mut out.wire, "POST", path, &self.kv.dequeue_body);
        }
        out.body.extend_from_slice(br#"{"sequences":["#);
        for (i, seq) in flow.pending.drain(..).enumerate() {
            if i > 0 {
                out.body.push(b',');
            }
            let _ = write!(out.body, "{seq}");
        }
        out.body.extend_from_slice(b"]}");
        flow.step = 0;
        let path = format_args!("/api/v1/queue/{ns}/bench/ack");
        self.write_request(out, "POST", path);
    }

    /// Takes in the answer to the last request of a stateful connection: the sequence numbers
    /// a dequeue gave (to ack next), the count an ack confirmed, the records an append added,
    /// where a stream read ends.
    pub fn observe(&self, flow: &mut Flow, status: u16, body: &[u8]) -> Observed {
        if self.kind == WorkloadKind::KvVerify {
            let found = status == 200 && self.holds_unique_value(flow.cursor, body);
            return Observed {
                records: u64::from(found),
                lost: u64::from(!found),
                ..Observed::default()
            };
        }
        if self.kind == WorkloadKind::TsIngest {
            // Flo answers 200 with the count, InfluxDB (and Flo's compatible path) 204.
            let points = match status {
                200 => find(body, br#""points_written":"#).and_then(|i| leading_number(&body[i + 17..])),
                204 => Some(flow.sent),
                _ => None,
            };
            return Observed {
                records: points.unwrap_or(0),
                ..Observed::default()
            };
        }
        if status != 200 {
            flow.step = 0;
            return Observed::default();
        }
        match self.kind {
            WorkloadKind::StreamAppend => return self.records(append_count(body)),
            WorkloadKind::StreamRead => {
                // The answer ends with `"next_offset":N,"first_offset":F}`.
                let tail = &body[body.len().saturating_sub(64)..];
                let next = rfind(tail, br#""next_offset":"#).and_then(|i| leading_number(&tail[i + 14..]));
                let from = flow.cursor.unwrap_or(0);
                let read = next.map_or(0, |n| n.saturating_sub(from));
                flow.cursor = match next {
                    Some(n) if read > 0 && n < self.kv.keys => Some(n),
                    _ => Some(0),
                };
                return self.records(read);
            }
            _ => {}
        }
        if let Some(rest) = body.strip_prefix(br#"{"acked":"#) {
            return Observed {
                acked: leading_number(rest).unwrap_or(0),
                ..Observed::default()
            };
        }
        if !body.starts_with(br#"{"messages":"#) {
            return Observed::default(); // an enqueue's answer
        }
        let mut at = 0;
        while let Some(i) = find(&body[at..], br#""seq":"#) {
            at += i + 6;
            if let Some(seq) = leading_number(&body[at..]) {
                flow.pending.push(seq);
            }
        }
        if self.kind == WorkloadKind::QueuePipeline && flow.pending.is_empty() && flow.step == 1 {
            // A dequeue that found nothing (another connection took the message): enqueue again.
            flow.step = 0;
        }
        Observed::default()
    }

    fn records(&self, n: u64) -> Observed {
        Observed {
            records: n,
            payload_bytes: n * self.kv.value_bytes,
            ..Observed::default()
        }
    }

    /// Whether a GET answer's body carries the value the unique write of verify key `index`
    /// sent.
    fn holds_unique_value(&self, index: Option<u64>, body: &[u8]) -> bool {
        let key = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.kv.verify_keys.get(i));
        let Some(key) = key else { return false };
        let encoded = base64::engine::general_purpose::STANDARD.encode(unique_value(key, self.kv.value_bytes as usize));
        find(body, format!(r#""value":"{encoded}""#).as_bytes()).is_some()
    }

    /// Writes request `seq` of connection `conn` into `out.wire` (replacing
    /// its previous content).
    pub fn build(&self, conn: usize, seq: u64, out: &mut RequestBytes) {
        out.body.clear();
        match self.kind {
            WorkloadKind::Status => self.write_request(out, "GET", format_args!("/api/v1/status")),
            WorkloadKind::Health => self.write_request(out, "GET", format_args!("/health")),
            WorkloadKind::KvPut if self.kv.run_id.is_some() => {
                let key = self.unique_write_key(conn, seq).unwrap_or_default();
                self.kv.unique_put_body(&key, &mut out.body);
                let path = format_args!("/api/v1/kv/{}/{key}", self.kv.namespace);
                self.write_request(out, "PUT", path);
            }
            WorkloadKind::KvPut => self.write_kv(out, conn, seq, true),
            WorkloadKind::KvGet => self.write_kv(out, conn, seq, false),
            WorkloadKind::KvMixed => self.write_kv(out, conn, seq, seq.is_multiple_of(KV_MIXED_PUT_EVERY)),
            WorkloadKind::QueueProduce => {
                let path = format_args!("/api/v1/queue/{}/bench/enqueue", self.kv.namespace);
                self.write_head_and_body(&mut out.wire, "POST", path, &self.kv.enqueue_body)
            }
            WorkloadKind::TsQuery => {
                let ns = &self.kv.namespace;
                if self.kv.influx {
                    let q = String::from_utf8_lossy(&self.kv.query);
                    let path = format_args!("/query?db={ns}&epoch=ms&q={q}");
                    self.write_head_and_body(&mut out.wire, "GET", path, &[])
                } else {
                    let path = format_args!("/api/v1/ts/{ns}/query");
                    self.write_head_and_body(&mut out.wire, "POST", path, &self.kv.query)
                }
            }
            WorkloadKind::QueueConsume
            | WorkloadKind::QueuePipeline
            | WorkloadKind::StreamAppend
            | WorkloadKind::StreamRead
            | WorkloadKind::TsIngest
            | WorkloadKind::KvVerify => {
                self.build_flow(conn, seq, &mut Flow::default(), out);
            }
        }
    }

    /// A KV PUT (with the precomputed body) or GET of the key of `(conn, seq)`.
    fn write_kv(&self, out: &mut RequestBytes, conn: usize, seq: u64, put: bool) {
        let kv = &self.kv;
        let path = format_args!("/api/v1/kv/{}/k{}", kv.namespace, kv.key(conn, seq));
        if put {
            self.write_head_and_body(&mut out.wire, "PUT", path, &kv.put_body);
        } else {
            self.write_head_and_body(&mut out.wire, "GET", path, &[]);
        }
    }

    /// Writes a keep-alive request with the common headers; `out.body`, when
    /// non-empty, is sent as a JSON body with its `Content-Length`.
    fn write_request(&self, out: &mut RequestBytes, method: &str, path: fmt::Arguments<'_>) {
        self.write_head_and_body(&mut out.wire, method, path, &out.body);
    }

    /// Replaces `wire` with a keep-alive request; `body`, when non-empty, is
    /// sent as a JSON body with its `Content-Length`.
    fn write_head_and_body(&self, wire: &mut Vec<u8>, method: &str, path: fmt::Arguments<'_>, body: &[u8]) {
        wire.clear();
        // Writing into a Vec<u8> cannot fail.
        let _ = write!(wire, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host_header);
        if let Some(token) = &self.bearer_token {
            let _ = write!(wire, "Authorization: Bearer {token}\r\n");
        }
        if !body.is_empty() {
            let _ = write!(
                wire,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(body);
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a query parameter.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a stateful connection is: the next step of the queue pipeline and the sequence
/// numbers it was given and has not acked yet; the offset a stream reader reads next.
#[derive(Debug, Default)]
pub struct Flow {
    step: u8,
    pending: Vec<u64>,
    cursor: Option<u64>,
    ts: Option<TsHosts>,
    /// Lines in the last `ts-ingest` request.
    sent: u64,
}

/// Tag values of a TSBS-like host (besides its name), chosen from these by host number.
const TS_REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
const TS_OS: [&str; 3] = ["Ubuntu16.04LTS", "Ubuntu15.10", "Ubuntu16.10"];
const TS_FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];
/// Data time of the first point (2016-01-01, TSBS's default start) and between a host's points.
const TS_START_MS: u64 = 1_451_606_400_000;
const TS_INTERVAL_MS: u64 = 10_000;

/// The hosts one `ts-ingest` connection writes: their tag prefixes, their fields' random walks,
/// and the connection's data clock.
#[derive(Debug)]
pub struct TsHosts {
    /// `cpu,hostname=host_N,...` up to the space before the fields, per host.
    prefixes: Vec<String>,
    values: Vec<[u8; 10]>,
    fields: usize,
    next_host: usize,
    now_ms: u64,
    rng: u64,
}

impl TsHosts {
    fn new(kv: &KvTarget, conn: usize) -> TsHosts {
        let (from, to) = (kv.key(conn, 0), kv.key(conn + 1, 0));
        let to = if to <= from { kv.keys } else { to };
        let prefixes: Vec<String> = (from..to.max(from + 1))
            .map(|h| {
                let region = TS_REGIONS[(h % 3) as usize];
                format!(
                    "cpu,hostname=host_{h},region={region},datacenter={region}{},rack={},os={},arch=x{},team={},\
                     service={},service_version={},service_environment={} ",
                    ["a", "b", "c"][(h / 3 % 3) as usize],
                    h % 100,
                    TS_OS[(h / 7 % 3) as usize],
                    if h % 2 == 0 { "64" } else { "86" },
                    ["SF", "NYC", "LON", "CHI"][(h % 4) as usize],
                    h % 20,
                    h % 2,
                    ["production", "staging", "test"][(h / 5 % 3) as usize],
                )
            })
            .collect();
        let values = (0..prefixes.len()).map(|h| [(h * 37 % 101) as u8; 10]).collect();
        TsHosts {
            prefixes,
            values,
            fields: kv.fields,
            next_host: 0,
            now_ms: TS_START_MS,
            rng: 0x9e37_79b9_7f4a_7c15 ^ conn as u64,
        }
    }

    /// Writes `lines` points (one per host in turn) into `out`; returns how many.
    fn write_lines(&mut self, lines: usize, out: &mut Vec<u8>) -> u64 {
        out.clear();
        for _ in 0..lines {
            let h = self.next_host;
            out.extend_from_slice(self.prefixes[h].as_bytes());
            for (i, field) in TS_FIELDS[..self.fields].iter().enumerate() {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let v = &mut self.values[h][i];
                // A step of -2..=2, kept in 0..=100.
                *v = (i16::from(*v) + (self.rng % 5) as i16 - 2).clamp(0, 100) as u8;
                if i > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "{field}={v}");
            }
            let _ = writeln!(out, " {}", self.now_ms);
            self.next_host += 1;
            if self.next_host == self.prefixes.len() {
                self.next_host = 0;
                self.now_ms += TS_INTERVAL_MS;
            }
        }
        lines as u64
    }
}

/// What one answer of a stateful connection counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Queue messages whose ack the server confirmed.
    pub acked: u64,
    /// Stream records appended or read, and their payload bytes; `kv-verify`: keys found.
    pub records: u64,
    pub payload_bytes: u64,
    /// `kv-verify`: keys missing or holding another value.
    pub lost: u64,
}

/// Records an append answer confirms: `last_offset - first_offset + 1` for a batch, else 1.
fn append_count(body: &[u8]) -> u64 {
    let field = |name: &[u8]| find(body, name).and_then(|i| leading_number(&body[i + name.len()..]));
    match (field(br#""first_offset":"#), field(br#""last_offset":"#)) {
        (Some(a), Some(b)) if b >= a => b - a + 1,
        _ => u64::from(find(body, br#""offset":"#).is_some()),
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn leading_number(b: &[u8]) -> Option<u64> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&b[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_writes(run_id: &str, value_bytes: usize) -> Workload {
        Workload::new(WorkloadKind::KvPut, "h", None).with_kv(&KvOptions {
            run_id: Some(run_id.to_owned()),
            value_bytes,
            ..KvOptions::default()
        })
    }

    fn decoded_value(wire: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(wire.to_vec()).unwrap();
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn a_run_id_gives_every_write_its_own_key_and_a_value_that_names_it() {
        let w = unique_writes("run7", 30);
        let mut req = RequestBytes::with_capacity(256);
        let mut paths = std::collections::HashSet::new();
        for conn in 0..3 {
            for seq in 0..50 {
                w.build(conn, seq, &mut req);
                let text = String::from_utf8(req.wire.clone()).unwrap();
                let key = format!("run7.{conn}.{seq}");
                assert_eq!(w.unique_write_key(conn, seq).as_deref(), Some(key.as_str()));
                assert!(
                    text.starts_with(&format!("PUT /api/v1/kv/bench/{key} HTTP/1.1\r\n")),
                    "{text}"
                );
                let value = decoded_value(&req.wire);
                assert_eq!(value.len(), 30);
                assert!(value.starts_with(key.as_bytes()));
                assert!(paths.insert(text.lines().next().unwrap().to_owned()));
            }
        }
        // A value shorter than the key holds the key's start.
        let short = unique_writes("run7", 3);
        short.build(1, 2, &mut req);
        assert_eq!(decoded_value(&req.wire), b"run");
        // Without a run id the keys come from the key space.
        let plain = Workload::new(WorkloadKind::KvPut, "h", None);
        assert_eq!(plain.unique_write_key(0, 0), None);
        assert_eq!(unique_writes("r", 10).kind, WorkloadKind::KvPut);
        let get = Workload::new(WorkloadKind::KvGet, "h", None).with_kv(&KvOptions {
            run_id: Some("r".into()),
            ..KvOptions::default()
        });
        assert_eq!(get.unique_write_key(0, 0), None, "only writes get unique keys");
    }

    #[test]
    fn kv_verify_reads_each_listed_key_and_checks_its_value() {
        let keys: Vec<String> = vec!["r.0.0".into(), "r.1.0".into(), "r.0.1".into()];
        let options = KvOptions {
            verify_keys: Arc::from(keys.clone()),
            value_bytes: 20,
            ..KvOptions::default()
        };
        let w = Workload::new(WorkloadKind::KvVerify, "h", None).with_kv(&options);
        assert!(w.is_stateful() && w.numbers_requests_per_run());
        let writer = unique_writes("r", 20);
        let mut req = RequestBytes::with_capacity(256);
        for (i, key) in keys.iter().enumerate() {
            let mut flow = Flow::default();
            w.build_flow(3, i as u64, &mut flow, &mut req);
            let text = String::from_utf8(req.wire.clone()).unwrap();
            assert!(
                text.starts_with(&format!("GET /api/v1/kv/bench/{key} HTTP/1.1\r\n")),
                "{text}"
            );
            // The answer to a GET of what the writer wrote is found.
            let (conn, seq) = (key[2..3].parse().unwrap(), key[4..].parse().unwrap());
            writer.build(conn, seq, &mut req);
            let value = decoded_value(&req.wire);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
            let body = format!(r#"{{"key":"{key}","value":"{encoded}","version":1,"ttl_remaining":null}}"#);
            let seen = w.observe(&mut flow, 200, body.as_bytes());
            assert_eq!((seen.records, seen.lost), (1, 0), "{body}");
            // Missing, or another key's value, is lost.
            assert_eq!(w.observe(&mut flow, 404, b"{}").lost, 1);
            let other = format!(r#"{{"key":"{key}","value":"eA==","version":2}}"#);
            assert_eq!(w.observe(&mut flow, 200, other.as_bytes()).lost, 1);
        }
        // The value must be the whole value, not a prefix of it.
        let mut flow = Flow::default();
        w.build_flow(0, 0, &mut flow, &mut req);
        let value = unique_value("r.0.0", 20);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&value[..19]);
        let truncated = format!(r#"{{"value":"{encoded}"}}"#);
        assert_eq!(w.observe(&mut flow, 200, truncated.as_bytes()).lost, 1);
    }

    #[test]
    fn queue_consumers_ack_what_they_were_given() {
        let options = KvOptions {
            batch: 3,
            ..KvOptions::default()
        };
        let w = Workload::new(WorkloadKind::QueueConsume, "h", None).with_kv(&options);
        let mut flow = Flow::default();
        let mut req = RequestBytes::with_capacity(256);
        w.build_flow(0, 0, &mut flow, &mut req);
        let text = String::from_utf8(req.wire.clone()).unwrap();
        assert!(text.starts_with("POST /api/v1/queue/bench/bench/dequeue"), "{text}");
        assert!(text.ends_with(r#"{"count":3,"visibility_timeout_ms":60000}"#), "{text}");
        let got = br#"{"messages":[{"seq":7,"payload":"eA=="},{"seq":19,"payload":"eA=="}]}"#;
        assert_eq!(w.observe(&mut flow, 200, got).acked, 0);
        w.build_flow(0, 0, &mut flow, &mut req);
        let text = String::from_utf8(req.wire.clone()).unwrap();
        assert!(text.starts_with("POST /api/v1/queue/bench/bench/ack"), "{text}");
        assert!(text.ends_with(r#"{"sequences":[7,19]}"#), "{text}");
        assert_eq!(w.observe(&mut flow, 200, br#"{"acked":2,"not_found":[]}"#).acked, 2);
        w.build_flow(0, 0, &mut flow, &mut req);
        assert!(String::from_utf8(req.wire.clone()).unwrap().contains("/dequeue"));
    }

    #[test]
    fn stream_workloads_count_records_and_follow_next_offset() {
        let options = KvOptions {
            batch: 3,
            keys: 10,
            value_bytes: 5,
            connections: 2,
            ..KvOptions::default()
        };
        let w = Workload::new(WorkloadKind::StreamAppend, "h", None).with_kv(&options);
        let mut req = RequestBytes::with_capacity(256);
        let mut flow = Flow::default();
        w.build_flow(0, 0, &mut flow, &mut req);
        let text = String::from_utf8(req.wire.clone()).unwrap();
        assert!(text.starts_with("POST /api/v1/stream/bench/bench/append"), "{text}");
        assert!(
            text.ends_with(r#"{"records":[{"payload":"AAECAwQ="},{"payload":"AAECAwQ="},{"payload":"AAECAwQ="}]}"#),
            "{text}"
        );
        let seen = w.observe(
            &mut flow,
            200,
            br#"{"first_offset":7,"last_offset":9,"timestamp_ms":1}"#,
        );
        assert_eq!((seen.records, seen.payload_bytes), (3, 15));
        assert_eq!(
            w.observe(&mut flow, 200, br#"{"offset":7,"timestamp_ms":1}"#).records,
            1
        );
        assert_eq!(
            w.observe(&mut flow, 429, br#"{"first_offset":7,"last_offset":9}"#)
                .records,
            0
        );

        let r = Workload::new(WorkloadKind::StreamRead, "h", None).with_kv(&options);
        let mut flow = Flow::default();
        let mut paths = Vec::new();
        let answers: [&[u8]; 3] = [
            br#"{"records":[..],"next_offset":8,"first_offset":0}"#,
            br#"{"records":[..],"next_offset":10,"first_offset":0}"#,
            br#"{"records":[..],"next_offset":3,"first_offset":0}"#,
        ];
        let mut records = 0;
        for a in answers {
            r.build_flow(1, 0, &mut flow, &mut req);
            let text = String::from_utf8(req.wire.clone()).unwrap();
            paths.push(text.split(' ').nth(1).unwrap().to_string());
            records += r.observe(&mut flow, 200, a).records;
        }
        assert_eq!(
            paths,
            [
                "/api/v1/stream/bench/bench?offset=5&count=3",
                "/api/v1/stream/bench/bench?offset=8&count=3",
                "/api/v1/stream/bench/bench?offset=0&count=3",
            ],
            "connection 1 of 2 starts half way, follows next_offset and wraps at the end"
        );
        assert_eq!(records, 3 + 2 + 3);
    }

    #[test]
    fn ts_ingest_writes_each_host_once_per_interval() {
        let options = KvOptions {
            batch: 3,
            keys: 4,
            connections: 2,
            ..KvOptions::default()
        };
        let w = Workload::new(WorkloadKind::TsIngest, "h", None).with_kv(&options);
        let mut flow = Flow::default();
        let mut req = RequestBytes::with_capacity(4096);
        w.build_flow(1, 0, &mut flow, &mut req);
        let text = String::from_utf8(req.wire.clone()).unwrap();
        assert!(
            text.starts_with("POST /api/v1/ts/bench/write?precision=ms HTTP/1.1"),
            "{text}"
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 3);
        // Connection 1 of 2 writes hosts 2 and 3; the third line is host 2 again, 10 s later.
        assert!(lines[0].starts_with("cpu,hostname=host_2,"), "{}", lines[0]);
        assert!(lines[1].starts_with("cpu,hostname=host_3,"), "{}", lines[1]);
        assert!(lines[2].starts_with("cpu,hostname=host_2,"), "{}", lines[2]);
        let ts = |l: &str| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        assert_eq!(
            (ts(lines[0]), ts(lines[1]), ts(lines[2])),
            (TS_START_MS, TS_START_MS, TS_START_MS + 10_000)
        );
        for l in &lines {
            let fields = l.split(' ').nth(1).unwrap();
            assert_eq!(fields.split(',').count(), 10, "{l}");
            for f in fields.split(',') {
                let v: u32 = f.split('=').nth(1).unwrap().parse().unwrap();
                assert!(v <= 100, "{f}");
            }
            assert_eq!(
                l.split(' ').next().unwrap().split(',').count(),
                11,
                "measurement and 10 tags: {l}"
            );
        }
        let seen = w.observe(&mut flow, 200, br#"{"points_written":3,"fields_dropped":0}"#);
        assert_eq!(seen.records, 3);
        let influx = Workload::new(WorkloadKind::TsIngest, "h", None).with_kv(&KvOptions {
            influx: true,
            ..options
        });
        let mut flow = Flow::default();
        influx.build_flow(0, 0, &mut flow, &mut req);
        assert!(String::from_utf8(req.wire.clone())
            .unwrap()
            .starts_with("POST /write?db=bench&precision=ms "));
        assert_eq!(influx.observe(&mut flow, 204, b"").records, 3);
        assert_eq!(influx.observe(&mut flow, 400, b"{}").records, 0);
    }

    #[test]
    fn queue_pipeline_cycles_enqueue_dequeue_ack() {
        let w = Workload::new(WorkloadKind::QueuePipeline, "h", None);
        let mut flow = Flow::default();
        let mut req = RequestBytes::with_capacity(256);
        let mut paths = Vec::new();
        let answers: [&[u8]; 6] = [
            br#"{"seq":1,"deduplicated":false}"#,
            br#"{"messages":[{"seq":1}]}"#,
            br#"{"acked":1,"not_found":[]}"#,
            br#"{"seq":2,"deduplicated":false}"#,
            br#"{"messages":[]}"#,
            br#"{"seq":3,"deduplicated":false}"#,
        ];
        let mut acked = 0;
        for a in answers {
            w.build_flow(0, 0, &mut flow, &mut req);
            let text = String::from_utf8(req.wire.clone()).unwrap();
            paths.push(text.split(' ').nth(1).unwrap().rsplit('/').next().unwrap().to_string());
            acked += w.observe(&mut flow, 200, a).acked;
        }
        assert_eq!(paths, ["enqueue", "dequeue", "ack", "enqueue", "dequeue", "enqueue"]);
        assert_eq!(acked, 1);
    }

    fn parse_request(bytes: &[u8]) -> (String, String, Vec<(String, String)>, usize) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("request not complete: {other:?}"),
        };
        let headers = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        (
            req.method.unwrap_or_default().to_owned(),
            req.path.unwrap_or_default().to_owned(),
            headers,
            head_len,
        )
    }

    #[test]
    fn status_request_is_a_complete_get() {
        let workload = Workload::new(WorkloadKind::Status, "127.0.0.1:9002", None);
        let mut req = RequestBytes::with_capacity(256);
        workload.build(0, 0, &mut req);
        let (method, path, headers, head_len) = parse_request(&req.wire);
        assert_eq!(method, "GET");
        assert_eq!(path, "/api/v1/status");
        assert_eq!(head_len, req.wire.len(), "no body after the head");
        assert!(headers.contains(&("host".into(), "127.0.0.1:9002".into())));
        assert!(!headers.iter().any(|(name, _)| name == "authorization"));
    }

    #[test]
    fn health_request_carries_bearer_token() {
        let workload = Workload::new(WorkloadKind::Health, "db:9002", Some("s3cret"));
        let mut req = RequestBytes::with_capacity(256);
        workload.build(3, 7, &mut req);
        let (method, path, headers, _) = parse_request(&req.wire);
        assert_eq!((method.as_str(), path.as_str()), ("GET", "/health"));
        assert!(headers.contains(&("authorization".into(), "Bearer s3cret".into())));
    }

    #[test]
    fn body_gets_content_length() {
        let workload = Workload::new(WorkloadKind::Status, "h", None);
        let mut req = RequestBytes::with_capacity(256);
        req.body.extend_from_slice(br#"{"v":1}"#);
        workload.write_request(&mut req, "PUT", format_args!("/api/v1/kv/k{}", 5));
        let (method, path, headers, head_len) = parse_request(&req.wire);
        assert_eq!((method.as_str(), path.as_str()), ("PUT", "/api/v1/kv/k5"));
        assert!(headers.contains(&("content-length".into(), "7".into())));
        assert_eq!(&req.wire[head_len..], br#"{"v":1}"#);
    }

    #[test]
    fn rebuilding_reuses_the_buffer() {
        let workload = Workload::new(WorkloadKind::Status, "h", Some("t"));
        let mut req = RequestBytes::with_capacity(256);
        workload.build(0, 0, &mut req);
        let first = req.wire.clone();
        let capacity = req.wire.capacity();
        workload.build(0, 1, &mut req);
        assert_eq!(req.wire, first);
        assert_eq!(req.wire.capacity(), capacity);
    }

    fn kv_workload(kind: WorkloadKind, options: &KvOptions) -> Workload {
        Workload::new(kind, "127.0.0.1:9002", Some("tok")).with_kv(options)
    }

    /// Parses one built request completely: method, path, body. Checks that
    /// the head is valid HTTP/1.1 and that Content-Length frames the body
    /// exactly.
    fn parse_full(wire: &[u8]) -> (String, String, Vec<u8>) {
        let (method, path, headers, head_len) = parse_request(wire);
        let mut headers_again = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers_again);
        assert!(req.parse(wire).expect("valid head").is_complete());
        assert_eq!(req.version, Some(1), "HTTP/1.1");
        assert!(headers.contains(&("host".into(), "127.0.0.1:9002".into())));
        assert!(headers.contains(&("authorization".into(), "Bearer tok".into())));
        let content_length = headers.iter().find(|(name, _)| name == "content-length");
        let body = wire[head_len..].to_vec();
        match content_length {
            Some((_, length)) => {
                assert_eq!(length.parse::<usize>().expect("numeric length"), body.len());
                assert!(headers.contains(&("content-type".into(), "application/json".into())));
            }
            None => assert!(body.is_empty(), "body without Content-Length"),
        }
        (method, path, body)
    }

    /// Checks a PUT body: `{"value":"<base64>"}` decoding to `value_bytes` bytes.
    fn assert_put_body(body: &[u8], value_bytes: usize) {
        let json: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
        let object = json.as_object().expect("JSON object");
        assert_eq!(object.len(), 1, "only `value`: {json}");
        let value = object["value"].as_str().expect("string value");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("standard padded base64");
        assert_eq!(decoded.len(), value_bytes);
    }

    #[test]
    fn kv_names_parse_on_the_command_line() {
        use clap::ValueEnum as _;
        for (text, kind) in [
            ("kv-put", WorkloadKind::KvPut),
            ("kv-get", WorkloadKind::KvGet),
            ("kv-mixed", WorkloadKind::KvMixed),
        ] {
            assert_eq!(WorkloadKind::from_str(text, false), Ok(kind));
            assert_eq!(kind.name(), text);
        }
    }

    #[test]
    fn kv_put_request() {
        for value_bytes in [0, 1, 2, 3, 100, 4097] {
            let options = KvOptions {
                namespace: "bench".into(),
                keys: 1000,
                value_bytes,
                connections: 64,
                ..KvOptions::default()
            };
            let workload = kv_workload(WorkloadKind::KvPut, &options);
            assert!(workload.varies_per_request());
            let mut req = RequestBytes::with_capacity(1024);
            for seq in [0, 1, 999, 1000, 123_456] {
                workload.build(0, seq, &mut req);
                let (method, path, body) = parse_full(&req.wire);
                assert_eq!(method, "PUT");
                assert_eq!(path, format!("/api/v1/kv/bench/k{}", seq % 1000));
                if value_bytes == 0 {
                    assert_eq!(body, br#"{"value":""}"#);
                } else {
                    assert_put_body(&body, value_bytes);
                }
            }
        }
    }

    #[test]
    fn kv_get_request() {
        let options = KvOptions {
            namespace: "ns_1.a:b-c".into(),
            keys: 50,
            value_bytes: 10,
            connections: 8,
            ..KvOptions::default()
        };
        let workload = kv_workload(WorkloadKind::KvGet, &options);
        assert!(workload.varies_per_request());
        let mut req = RequestBytes::with_capacity(64);
        // A PUT first: the GET must not keep its body.
        kv_workload(WorkloadKind::KvPut, &options).build(3, 7, &mut req);
        for seq in 0..200 {
            workload.build(3, seq, &mut req);
            let (method, path, body) = parse_full(&req.wire);
            assert_eq!(method, "GET");
            let key: u64 = path
                .strip_prefix("/api/v1/kv/ns_1.a:b-c/k")
                .expect("kv path")
                .parse()
                .expect("key number");
            assert!(key < 50);
            assert!(body.is_empty());
        }
    }

    #[test]
    fn kv_get_and_put_address_the_same_keys() {
        let options = KvOptions::default();
        let get = kv_workload(WorkloadKind::KvGet, &options);
        let put = kv_workload(WorkloadKind::KvPut, &options);
        let (mut get_req, mut put_req) = (RequestBytes::default(), RequestBytes::default());
        for (conn, seq) in [(0, 0), (5, 17), (63, 99_999), (1000, 1 << 40)] {
            get.build(conn, seq, &mut get_req);
            put.build(conn, seq, &mut put_req);
            assert_eq!(parse_full(&get_req.wire).1, parse_full(&put_req.wire).1);
        }
    }

    #[test]
    fn kv_mixed_is_ten_percent_puts() {
        let options = KvOptions {
            value_bytes: 33,
            ..KvOptions::default()
        };
        let workload = kv_workload(WorkloadKind::KvMixed, &options);
        assert!(workload.varies_per_request());
        let mut req = RequestBytes::with_capacity(1024);
        for conn in [0, 1, 17] {
            let mut puts = 0;
            for seq in 0..1000 {
                workload.build(conn, seq, &mut req);
                let (method, path, body) = parse_full(&req.wire);
                assert!(path.starts_with("/api/v1/kv/bench/k"), "{path}");
                match method.as_str() {
                    "PUT" => {
                        puts += 1;
                        assert_put_body(&body, 33);
                    }
                    "GET" => assert!(body.is_empty()),
                    other => panic!("unexpected method {other}"),
                }
            }
            assert_eq!(puts, 100, "conn {conn}");
        }
    }

    #[test]
    fn distinct_connections_write_distinct_keys() {
        for (keys, connections) in [
            (100_000, 64),
            (10_000, 64),
            (1000, 7),
            (64, 64),
            (100, 1),
            (1_000_003, 1000),
        ] {
            let options = KvOptions {
                keys,
                connections,
                ..KvOptions::default()
            };
            let workload = kv_workload(WorkloadKind::KvPut, &options);
            let mut req = RequestBytes::with_capacity(1024);
            for seq in [0, 1, 12_345] {
                let mut seen = std::collections::BTreeSet::new();
                for conn in 0..connections {
                    workload.build(conn, seq, &mut req);
                    let path = parse_full(&req.wire).1;
                    assert!(seen.insert(path.clone()), "keys {keys} seq {seq}: {path} twice");
                }
            }
            // Starting points are evenly spaced.
            let starts: Vec<u64> = (0..connections).map(|conn| workload.kv.key(conn, 0)).collect();
            let spacing = keys / connections as u64;
            for pair in starts.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(gap == spacing || gap == spacing + 1, "keys {keys}: gap {gap}");
            }
        }
    }

    #[test]
    fn one_key_is_fine() {
        let options = KvOptions {
            keys: 1,
            ..KvOptions::default()
        };
        let workload = kv_workload(WorkloadKind::KvPut, &options);
        let mut req = RequestBytes::default();
        for (conn, seq) in [(0, 0), (9, 3), (usize::MAX, u64::MAX)] {
            workload.build(conn, seq, &mut req);
            assert_eq!(parse_full(&req.wire).1, "/api/v1/kv/bench/k0");
        }
    }

    #[test]
    fn kv_rebuilding_does_not_grow_buffers() {
        let workload = kv_workload(WorkloadKind::KvMixed, &KvOptions::default());
        let mut req = RequestBytes::with_capacity(1024);
        workload.build(0, 0, &mut req);
        let (wire_capacity, body_capacity) = (req.wire.capacity(), req.body.capacity());
        for seq in 0..10_000 {
            workload.build(7, seq, &mut req);
        }
        assert_eq!(
            (req.wire.capacity(), req.body.capacity()),
            (wire_capacity, body_capacity)
        );
    }

    #[test]
    fn namespaces() {
        assert_eq!(parse_namespace("bench"), Ok("bench".to_owned()));
        assert!(parse_namespace("A-z_0.9:x").is_ok());
        assert!(parse_namespace(&"n".repeat(128)).is_ok());
        for bad in ["", "a/b", "a b", "..%2F", "ü", &"n".repeat(129)] {
            assert!(parse_namespace(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
