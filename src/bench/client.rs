//! The load-generating client of `flo bench`.
//!
//! This module owns everything that touches the network: one monoio io_uring
//! runtime per load thread ([`run_thread`]), one task per connection looping
//! "write one keep-alive request, read its full response" ([`run_connection`]),
//! and the incremental HTTP/1.1 response framing ([`ResponseParser`],
//! [`ResponseReader`]) that splits the byte stream into responses whatever
//! way it arrives (split across reads, several responses in one read,
//! Content-Length or chunked bodies). Buffers are allocated once per
//! connection and reused for every request.
//!
//! Open loop (`--rate`): request `i` of the run is due at `start + i / rate` ([`Schedule`]).
//! A connection that is free claims the next request number from one counter shared by every
//! connection of every thread, sleeps until it is due and sends it; so the requests go out on
//! schedule as long as some connection is free, and when every connection is busy the next
//! free one sends the oldest due request at once. Latency counts from when a request was due,
//! not from when it went out, so a server that falls behind shows its queueing (no coordinated
//! omission). Nothing is sent from the deadline on: requests due before it and still unsent
//! then are reported as never sent. A connection the
//! server closes (e.g. after a 429 for too many connections) is reopened for its next request.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::report::{Outcome, Stats};
use super::workload::{Flow, Observed, RequestBytes, Workload};

/// Bytes read per connection at once; also the largest response head accepted.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Initial capacity of the per-connection request buffers.
const REQUEST_BUF_BYTES: usize = 1024;
/// Response headers parsed at most.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// First and largest wait before reconnecting after a failed connect.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1000);

/// A response could not be framed; the connection is unusable afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError(pub &'static str);

/// What the parser learnt about one complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseMeta {
    pub status: u16,
    /// Head and body bytes of this response (interim 1xx responses included).
    pub response_bytes: u64,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Result of feeding bytes to the [`ResponseParser`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The response is not complete; the first `consumed` bytes were used up
    /// and must not be passed again, the rest must be passed again with more.
    NeedMore { consumed: usize },
    /// A response ended after `consumed` bytes; the rest belongs to the next.
    Complete { consumed: usize, response: ResponseMeta },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParseState {
    Head,
    FixedBody { remaining_bytes: u64 },
    ChunkSize,
    ChunkData { remaining_bytes: u64 },
    ChunkDataEnd,
    Trailer,
}

/// Incremental HTTP/1.1 response parser: head with httparse, then the body
/// framed by Content-Length or chunked encoding. Body bytes are consumed as
/// they arrive, so bodies of any size pass through a fixed buffer.
#[derive(Debug)]
pub struct ResponseParser {
    state: ParseState,
    status: u16,
    close: bool,
    response_bytes: u64,
    /// Keep body bytes (for workloads whose next request depends on the answer).
    keep_body: bool,
    /// The body of the response being parsed, and of the last complete one.
    body: Vec<u8>,
    last_body: Vec<u8>,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseParser {
    pub fn new() -> Self {
        ResponseParser {
            state: ParseState::Head,
            status: 0,
            close: false,
            response_bytes: 0,
            keep_body: false,
            body: Vec::new(),
            last_body: Vec::new(),
        }
    }

    /// Forgets any partial response (after a reconnect).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Parses as much of `buf` as possible. `buf` must start with the bytes
    /// not consumed by the previous call.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, HttpError> {
        let mut pos = 0;
        loop {
            let available = &buf[pos..];
            match self.state {
                ParseState::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut response = httparse::Response::new(&mut headers);
                    let head_len = match response.parse(available) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => return Ok(Parsed::NeedMore { consumed: pos }),
                        Err(_) => return Err(HttpError("malformed response head")),
                    };
                    let status = response.code.unwrap_or(0);
                    let framing = Framing::of(&response)?;
                    pos += head_len;
                    self.response_bytes += head_len as u64;
                    if (100..200).contains(&status) && status != 101 {
                        // Interim response; the final one follows.
                        continue;
                    }
                    self.status = status;
                    self.close = framing.close || status == 101;
                    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
                    self.state = if bodiless {
                        return Ok(self.complete(pos));
                    } else if framing.chunked {
                        ParseState::ChunkSize
                    } else if let Some(content_length) = framing.content_length {
                        if content_length == 0 {
                            return Ok(self.complete(pos));
                        }
                        ParseState::FixedBody {
                            remaining_bytes: content_length,
                        }
                    } else {
                        return Err(HttpError("response without Content-Length"));
                    };
                }
                ParseState::FixedBody { remaining_bytes } => {
                    let taken = take_bytes(available.len(), remaining_bytes);
                    if self.keep_body {
                        self.body.extend_from_slice(&available[..taken]);
                    }
                    pos += taken;
                    self.response_bytes += taken as u64;
                    let remaining_bytes = remaining_bytes - taken as u64;
                    if remaining_bytes == 0 {
                        return Ok(self.complete(pos));
                    }
                    self.state = ParseState::FixedBody { remaining_bytes };
                    return Ok(Parsed::NeedMore { consumed: pos });
                }
                ParseState::ChunkSize => {
                    let Some(line_len) = find_line(available)? else {
                        return Ok(Parsed::NeedMore { consumed: pos });
                    };
                    let size = parse_chunk_size(&available[..line_len])?;
                    pos += line_len + 2;
                    self.response_bytes += line_len as u64 + 2;
                    self.state = if size == 0 {
                        ParseState::Trailer
                    } else {
                        ParseState::ChunkData { remaining_bytes: size }
                    };
                }
                ParseState::ChunkData { remaining_bytes } => {
                    let taken = take_bytes(available.len(), remaining_bytes);
                    if self.keep_body {
                        self.body.extend_from_slice(&available[..taken]);
                    }
                    pos += taken;
                    self.response_bytes += taken as u64;
                    let remaining_bytes = remaining_bytes - taken as u64;
                    if remaining_bytes > 0 {
                        self.state = ParseState::ChunkData { remaining_bytes };
                        return Ok(Parsed::NeedMore { consumed: pos });
                    }
                    self.state = ParseState::ChunkDataEnd;
                }
                ParseState::ChunkDataEnd => {
                    if available.len() < 2 {
                        return Ok(Parsed::NeedMore { consumed: pos });
                    }
                    if &available[..2] != b"\r\n" {
                        return Err(HttpError("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.response_bytes += 2;
                    self.state = ParseState::ChunkSize;
                }
                ParseState::Trailer => {
                    let Some(line_len) = find_line(available)? else {
                        return Ok(Parsed::NeedMore { consumed: pos });
                    };
                    pos += line_len + 2;
                    self.response_bytes += line_len as u64 + 2;
                    if line_len == 0 {
                        return Ok(self.complete(pos));
                    }
                }
            }
        }
    }

    fn complete(&mut self, consumed: usize) -> Parsed {
        let response = ResponseMeta {
            status: self.status,
            response_bytes: self.response_bytes,
            close: self.close,
        };
        let (keep, body) = (self.keep_body, std::mem::take(&mut self.body));
        self.reset();
        self.keep_body = keep;
        self.last_body = body;
        Parsed::Complete { consumed, response }
    }
}

/// How a response body is delimited, from its head.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
}

impl Framing {
    fn of(response: &httparse::Response<'_, '_>) -> Result<Framing, HttpError> {
        let mut framing = Framing::default();
        let mut keep_alive = false;
        for header in response.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                let length = parse_content_length(header.value)?;
                if framing.content_length.is_some_and(|seen| seen != length) {
                    return Err(HttpError("conflicting Content-Length headers"));
                }
                framing.content_length = Some(length);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                let last_coding = header.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
                if !last_coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError("transfer coding other than chunked"));
                }
                framing.chunked = true;
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    framing.close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        // HTTP/1.0 closes after the response unless asked to keep alive.
        if response.version == Some(0) && !keep_alive {
            framing.close = true;
        }
        Ok(framing)
    }
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError("invalid Content-Length"));
    }
    digits.iter().try_fold(0u64, |length, digit| {
        length
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(digit - b'0')))
            .ok_or(HttpError("Content-Length overflows"))
    })
}

/// Parses a chunk-size line (hex size, optional `;extensions`).
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let size_hex = line.split(|b| *b == b';').next().unwrap_or(b"").trim_ascii();
    if size_hex.is_empty() {
        return Err(HttpError("empty chunk size"));
    }
    size_hex.iter().try_fold(0u64, |size, digit| {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return Err(HttpError("invalid chunk size")),
        };
        size.checked_mul(16)
            .map(|s| s + u64::from(value))
            .ok_or(HttpError("chunk size overflows"))
    })
}

/// Length of the first CRLF-terminated line of `buf` (without the CRLF), or
/// `None` when the line is not complete yet.
fn find_line(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(line_len) if line_len <= MAX_CHUNK_LINE_BYTES => Ok(Some(line_len)),
        Some(_) => Err(HttpError("chunk line too long")),
        None if buf.len() > MAX_CHUNK_LINE_BYTES => Err(HttpError("chunk line too long")),
        None => Ok(None),
    }
}

fn take_bytes(available_bytes: usize, remaining_bytes: u64) -> usize {
    usize::try_from(remaining_bytes).map_or(available_bytes, |r| r.min(available_bytes))
}

/// A connection's read buffer plus parser: bytes read from the socket are
/// appended to `buf`, [`ResponseReader::next_response`] takes responses out.
#[derive(Debug)]
pub struct ResponseReader {
    buf: Vec<u8>,
    parser: ResponseParser,
}

impl ResponseReader {
    pub fn with_capacity(buf_bytes: usize) -> Self {
        ResponseReader {
            buf: Vec::with_capacity(buf_bytes),
            parser: ResponseParser::new(),
        }
    }

    /// Drops buffered bytes and any partial response (after a reconnect).
    pub fn reset(&mut self) {
        self.buf.clear();
        let keep = self.parser.keep_body;
        self.parser.reset();
        self.parser.keep_body = keep;
    }

    /// Keeps response bodies from now on ([`ResponseReader::last_body`]).
    pub fn keep_bodies(&mut self) {
        self.parser.keep_body = true;
    }

    /// The body of the last complete response (empty unless bodies are kept).
    pub fn last_body(&self) -> &[u8] {
        &self.parser.last_body
    }

    /// Bytes received but not yet part of a returned response.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// No room left to read into: the unparsed head fills the buffer.
    pub fn is_full(&self) -> bool {
        self.buf.len() == self.buf.capacity()
    }

    /// The next complete response in the buffer, if any; consumed bytes are
    /// removed from the buffer (body bytes as soon as they are parsed).
    pub fn next_response(&mut self) -> Result<Option<ResponseMeta>, HttpError> {
        let (consumed, response) = match self.parser.parse(&self.buf)? {
            Parsed::NeedMore { consumed } => (consumed, None),
            Parsed::Complete { consumed, response } => (consumed, Some(response)),
        };
        self.buf.copy_within(consumed.., 0);
        self.buf.truncate(self.buf.len() - consumed);
        Ok(response)
    }

    /// Appends bytes (tests feed the reader without a socket).
    #[cfg(test)]
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from a blocking reader (the command-line client's socket)
    /// into the free part of the buffer. `Ok(0)` means the peer closed the
    /// connection.
    pub fn read_from_blocking(&mut self, stream: &mut impl std::io::Read) -> std::io::Result<usize> {
        let filled = self.buf.len();
        let capacity = self.buf.capacity();
        self.buf.resize(capacity, 0);
        let result = stream.read(&mut self.buf[filled..]);
        self.buf.truncate(filled + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Reads once from `stream` into the free part of the buffer. `Ok(0)`
    /// means the peer closed the connection.
    async fn read_from(&mut self, stream: &mut TcpStream) -> std::io::Result<usize> {
        let buf = std::mem::take(&mut self.buf);
        let filled = buf.len();
        let capacity = buf.capacity();
        let (result, slice) = stream.read(buf.slice_mut(filled..capacity)).await;
        self.buf = slice.into_inner();
        result
    }
}

/// Counters the load threads update live and the main thread samples for
/// the progress line; one per thread, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LiveCounters {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
}

/// What every load thread shares: target, workload, timing and budget.
#[derive(Debug)]
pub struct LoadPlan {
    pub addr: SocketAddr,
    pub workload: Workload,
    /// Open loop (`--rate`): when each request of the run is due; `None`: closed loop.
    pub schedule: Option<Schedule>,
    /// Open loop: request numbers claimed so far (by every connection).
    pub tickets: AtomicU64,
    /// Record the unique keys of acknowledged writes (`kv-put` with a run id).
    pub record_acked: bool,
    /// Requests started before this instant are warmup and not measured.
    pub measure_start: Instant,
    /// No request starts at or after this instant.
    pub deadline: Instant,
    /// Requests still unanswered at this instant are abandoned as timeouts.
    pub cutoff: Instant,
    /// Total measured requests to send, if limited.
    pub request_limit: Option<u64>,
    /// Measured requests claimed so far (against `request_limit`).
    pub requests_claimed: AtomicU64,
    /// One per load thread.
    pub live: Vec<LiveCounters>,
    /// Record a per-second series.
    pub series: bool,
}

impl LoadPlan {
    /// Claims one measured request from the budget: its number among the run's measured
    /// requests, or `None` once the budget is spent.
    fn claim_request(&self) -> Option<u64> {
        let n = self.requests_claimed.fetch_add(1, Ordering::Relaxed);
        match self.request_limit {
            Some(limit) if n >= limit => None,
            _ => Some(n),
        }
    }

    /// Whole seconds from the measurement's start to `at` (0 before it).
    fn second_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.measure_start).as_secs()
    }
}

/// What one load thread measured.
#[derive(Debug)]
pub struct ThreadOutcome {
    pub stats: Stats,
    /// The unique keys of acknowledged (2xx) writes, warmup included, as (connection,
    /// sequence) pairs; empty unless the plan records them.
    pub acked: Vec<(usize, u64)>,
    /// When its last connection stopped (the deadline if cut off).
    pub finished_at: Instant,
}

/// State shared by the connection tasks of one load thread.
struct ThreadState {
    plan: Arc<LoadPlan>,
    thread_index: usize,
    stats: RefCell<Stats>,
    /// Measured requests sent and not yet answered or failed.
    in_flight: Cell<u64>,
    acked: RefCell<Vec<(usize, u64)>>,
}

impl ThreadState {
    fn live(&self) -> Option<&LiveCounters> {
        self.plan.live.get(self.thread_index)
    }

    /// Counts a failure; `second` is when the failed request started, if it was measured
    /// (`None` for warmup, or a failed connect with no request).
    fn count_error(&self, measured: bool, second: Option<u64>, kind: Failure) {
        if let Some(live) = self.live() {
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
        if measured {
            let mut stats = self.stats.borrow_mut();
            if let Some(second) = second {
                stats.record_in_second(second, Outcome::Failed);
            }
            match kind {
                Failure::Connect => stats.errors.connect += 1,
                Failure::Io => stats.errors.io += 1,
                Failure::Http => stats.errors.http += 1,
            }
        }
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Connect,
    Io,
    Http,
}

/// Runs the connections `connection_indices` on a fresh io_uring runtime in
/// the calling thread until the plan's deadline (or request budget) is
/// reached, and returns what they measured.
pub fn run_thread(
    plan: Arc<LoadPlan>,
    thread_index: usize,
    connection_indices: Vec<usize>,
) -> Result<ThreadOutcome, String> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot start an io_uring runtime: {e}"))?;
    let outcome = runtime.block_on(async move {
        let state = Rc::new(ThreadState {
            plan: plan.clone(),
            thread_index,
            stats: RefCell::new(if plan.series {
                Stats::with_series()
            } else {
                Stats::new()
            }),
            in_flight: Cell::new(0),
            acked: RefCell::new(Vec::new()),
        });
        let tasks: Vec<_> = connection_indices
            .into_iter()
            .map(|conn| monoio::spawn(run_connection(state.clone(), conn)))
            .collect();
        let all_finished = async {
            for task in tasks {
                task.await;
            }
        };
        let until_cutoff = plan.cutoff.saturating_duration_since(Instant::now());
        let cut_off = monoio::time::timeout(until_cutoff, all_finished).await.is_err();
        // Cut-off tasks still hold `state`; they are dropped with the runtime.
        let mut stats = state.stats.borrow().clone();
        let finished_at = if cut_off {
            stats.errors.timeout += state.in_flight.get();
            plan.deadline
        } else {
            Instant::now()
        };
        let acked = std::mem::take(&mut *state.acked.borrow_mut());
        ThreadOutcome {
            stats,
            acked,
            finished_at,
        }
    });
    Ok(outcome)
}

/// One connection: sends requests back to back until the deadline or the
/// request budget, reconnecting (and counting an error) when the connection
/// breaks.
async fn run_connection(state: Rc<ThreadState>, conn: usize) {
    let plan = state.plan.clone();
    let workload = &plan.workload;
    let per_request = workload.varies_per_request();
    let stateful = workload.is_stateful();
    let mut flow = Flow::default();
    let mut request = RequestBytes::with_capacity(REQUEST_BUF_BYTES);
    if !per_request {
        workload.build(conn, 0, &mut request);
    }
    let mut reader = ResponseReader::with_capacity(READ_BUF_BYTES);
    if stateful {
        reader.keep_bodies();
    }
    let mut stream: Option<TcpStream> = None;
    let mut reconnect_backoff = RECONNECT_BACKOFF_MIN;
    let mut seq: u64 = 0;
    // Open loop: the request number this connection claimed and has not sent yet.
    let mut ticket: Option<u64> = None;
    loop {
        let mut now = Instant::now();
        let mut due = None;
        if let Some(schedule) = &plan.schedule {
            let t = *ticket.get_or_insert_with(|| plan.tickets.fetch_add(1, Ordering::Relaxed));
            let at = schedule.due(t);
            if at >= plan.deadline {
                break;
            }
            if at > now {
                monoio::time::sleep(at - now).await;
                now = Instant::now();
            }
            due = Some(at);
        }
        // Nothing is sent from the deadline on; in an open loop, requests due before it and not
        // sent by then (every connection was busy) are the run's unsent ones.
        if now >= plan.deadline {
            break;
        }
        let started_at = due.unwrap_or(now);
        let measured = started_at >= plan.measure_start;

        let connection = match &mut stream {
            Some(connection) => connection,
            None => match connect(plan.addr).await {
                Ok(connection) => {
                    reader.reset();
                    reconnect_backoff = RECONNECT_BACKOFF_MIN;
                    stream.insert(connection)
                }
                Err(_) => {
                    state.count_error(Instant::now() >= plan.measure_start, None, Failure::Connect);
                    let until_deadline = plan.deadline.saturating_duration_since(Instant::now());
                    monoio::time::sleep(reconnect_backoff.min(until_deadline)).await;
                    reconnect_backoff = (reconnect_backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    if Instant::now() >= plan.deadline {
                        break;
                    }
                    continue;
                }
            },
        };

        let claimed = if measured {
            match plan.claim_request() {
                Some(n) => Some(n),
                None => break,
            }
        } else {
            None
        };
        // Requests numbered across the run (kv-verify) take the claimed number.
        let request_seq = match claimed {
            Some(n) if workload.numbers_requests_per_run() => n,
            _ => seq,
        };
        if stateful {
            workload.build_flow(conn, request_seq, &mut flow, &mut request);
        } else if per_request {
            workload.build(conn, request_seq, &mut request);
        }
        seq += 1;
        ticket = None;

        let second = plan.second_of(started_at);
        if measured {
            state.in_flight.set(state.in_flight.get() + 1);
            let mut stats = state.stats.borrow_mut();
            stats.sent += 1;
            stats.record_in_second(second, Outcome::Sent);
        }
        let result = exchange(connection, &mut request.wire, &mut reader).await;
        let latency_us = u64::try_from(started_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        if measured {
            state.in_flight.set(state.in_flight.get().saturating_sub(1));
        }

        match result {
            Ok(response) => {
                if let Some(live) = state.live() {
                    live.responses.fetch_add(1, Ordering::Relaxed);
                }
                let seen = if stateful {
                    workload.observe(&mut flow, response.status, reader.last_body())
                } else {
                    Observed::default()
                };
                if plan.record_acked && (200..300).contains(&response.status) {
                    state.acked.borrow_mut().push((conn, request_seq));
                }
                if measured {
                    let mut stats = state.stats.borrow_mut();
                    stats.record_response(response.status, response.response_bytes, latency_us);
                    stats.record_in_second(
                        second,
                        Outcome::Answered {
                            status: response.status,
                            latency_us,
                        },
                    );
                    stats.messages_acked += seen.acked;
                    stats.records += seen.records;
                    stats.payload_bytes += seen.payload_bytes;
                    stats.lost += seen.lost;
                }
                if response.close {
                    stream = None;
                }
            }
            Err(failure) => {
                state.count_error(measured, Some(second), failure);
                stream = None;
                flow = Flow::default();
            }
        }
    }
}

/// The open-loop send times: request `i` of the run is due at `start + i × every`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    every: Duration,
}

impl Schedule {
    /// `rate` requests per second from `start`.
    pub fn new(start: Instant, rate: f64) -> Schedule {
        Schedule {
            start,
            every: Duration::from_secs_f64(1.0 / rate),
        }
    }

    /// When request `ticket` is due.
    pub fn due(&self, ticket: u64) -> Instant {
        self.start + self.every.mul_f64(ticket as f64)
    }

    /// How many requests are due in `[from, to)`.
    pub fn due_between(&self, from: Instant, to: Instant) -> u64 {
        let due_before = |at: Instant| {
            let span = at.saturating_duration_since(self.start).as_secs_f64();
            (span / self.every.as_secs_f64()).ceil() as u64
        };
        due_before(to).saturating_sub(due_before(from))
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_addr(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes one request and reads its complete response.
async fn exchange(
    stream: &mut TcpStream,
    request_wire: &mut Vec<u8>,
    reader: &mut ResponseReader,
) -> Result<ResponseMeta, Failure> {
    let request = std::mem::take(request_wire);
    let (written, request) = stream.write_all(request).await;
    *request_wire = request;
    written.map_err(|_| Failure::Io)?;
    loop {
        if let Some(response) = reader.next_response().map_err(|_| Failure::Http)? {
            if reader.buffered_bytes() > 0 {
                // Bytes nobody asked for: the stream is out of step.
                return Err(Failure::Http);
            }
            return Ok(response);
        }
        if reader.is_full() {
            return Err(Failure::Http); // response head larger than the buffer
        }
        match reader.read_from(stream).await {
            Ok(0) => return Err(Failure::Io), // closed before the response ended
            Ok(_) => {}
            Err(_) => return Err(Failure::Io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_loop_schedule_spaces_the_requests_of_the_run_evenly() {
        let start = Instant::now();
        let s = Schedule::new(start, 400.0);
        assert_eq!(s.due(0), start);
        assert_eq!(s.due(1), start + Duration::from_micros(2500));
        assert_eq!(s.due(4), start + Duration::from_millis(10));
        assert_eq!(s.due(4000), start + Duration::from_secs(10));
        // Due in [0, 1 s): 0..=399; in [1 s, 1.5 s): 400..=599.
        let sec = Duration::from_secs(1);
        assert_eq!(s.due_between(start, start + sec), 400);
        assert_eq!(s.due_between(start + sec, start + sec.mul_f64(1.5)), 200);
        assert_eq!(s.due_between(start + sec, start), 0);
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";

    /// Feeds `chunks` one after the other, collecting every response.
    fn feed(reader: &mut ResponseReader, chunks: &[&[u8]]) -> Result<Vec<ResponseMeta>, HttpError> {
        let mut responses = Vec::new();
        for chunk in chunks {
            reader.push(chunk);
            while let Some(response) = reader.next_response()? {
                responses.push(response);
            }
        }
        Ok(responses)
    }

    fn meta(status: u16, response_bytes: usize, close: bool) -> ResponseMeta {
        ResponseMeta {
            status,
            response_bytes: response_bytes as u64,
            close,
        }
    }

    #[test]
    fn whole_response() {
        let mut reader = ResponseReader::with_capacity(1024);
        assert_eq!(feed(&mut reader, &[OK]), Ok(vec![meta(200, OK.len(), false)]));
        assert_eq!(reader.buffered_bytes(), 0);
    }

    #[test]
    fn response_split_at_every_byte() {
        for response in [OK, CHUNKED] {
            for split in 0..=response.len() {
                let (a, b) = response.split_at(split);
                let mut reader = ResponseReader::with_capacity(1024);
                assert_eq!(
                    feed(&mut reader, &[a, b]),
                    Ok(vec![meta(200, response.len(), false)]),
                    "split at {split}"
                );
                assert_eq!(reader.buffered_bytes(), 0);
            }
        }
    }

    #[test]
    fn response_one_byte_at_a_time() {
        let bytes: Vec<u8> = [OK, CHUNKED, OK].concat();
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let mut reader = ResponseReader::with_capacity(1024);
        assert_eq!(
            feed(&mut reader, &chunks),
            Ok(vec![
                meta(200, OK.len(), false),
                meta(200, CHUNKED.len(), false),
                meta(200, OK.len(), false)
            ])
        );
    }

    #[test]
    fn pipelined_responses_in_one_read() {
        let not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found";
        let bytes: Vec<u8> = [OK, &not_found[..], CHUNKED, OK].concat();
        let mut reader = ResponseReader::with_capacity(1024);
        // The parser stops after each response, leaving the next one buffered.
        let mut parser = ResponseParser::new();
        assert_eq!(
            parser.parse(&bytes),
            Ok(Parsed::Complete {
                consumed: OK.len(),
                response: meta(200, OK.len(), false)
            })
        );
        assert_eq!(
            feed(&mut reader, &[&bytes]),
            Ok(vec![
                meta(200, OK.len(), false),
                meta(404, not_found.len(), false),
                meta(200, CHUNKED.len(), false),
                meta(200, OK.len(), false),
            ])
        );
    }

    #[test]
    fn pipelined_responses_split_across_reads() {
        let bytes: Vec<u8> = [OK, CHUNKED, OK, OK].concat();
        for split in [1, 10, OK.len() - 1, OK.len() + 3, bytes.len() - 5] {
            let (a, b) = bytes.split_at(split);
            let mut reader = ResponseReader::with_capacity(1024);
            let responses = feed(&mut reader, &[a, b]).expect("valid responses");
            assert_eq!(responses.len(), 4, "split at {split}");
        }
    }

    #[test]
    fn body_larger_than_the_buffer_streams_through() {
        let body = vec![b'x'; 10_000];
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let mut reader = ResponseReader::with_capacity(256);
        let mut responses = feed(&mut reader, &[head.as_bytes()]).expect("head");
        for piece in body.chunks(200) {
            responses.extend(feed(&mut reader, &[piece]).expect("body"));
            assert!(reader.buffered_bytes() <= 256);
        }
        assert_eq!(responses, vec![meta(200, head.len() + body.len(), false)]);
    }

    #[test]
    fn connection_close_is_reported() {
        let close = b"HTTP/1.1 503 Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let http10_keep = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
        let mut reader = ResponseReader::with_capacity(1024);
        assert_eq!(
            feed(&mut reader, &[close, http10, http10_keep]),
            Ok(vec![
                meta(503, close.len(), true),
                meta(200, http10.len(), true),
                meta(200, http10_keep.len(), false),
            ])
        );
    }

    #[test]
    fn interim_and_bodiless_responses() {
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut reader = ResponseReader::with_capacity(1024);
        assert_eq!(
            feed(&mut reader, &[interim, OK, no_content]),
            Ok(vec![
                meta(200, interim.len() + OK.len(), false),
                meta(204, no_content.len(), false),
            ])
        );
    }

    #[test]
    fn unframeable_responses_are_errors() {
        let cases: [&[u8]; 7] = [
            b"HTTP/1.1 200 OK\r\n\r\nbody until close",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"NOT HTTP AT ALL\r\n\r\n",
        ];
        for case in cases {
            let mut reader = ResponseReader::with_capacity(1024);
            assert!(
                feed(&mut reader, &[case]).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn reset_forgets_partial_response() {
        let mut reader = ResponseReader::with_capacity(1024);
        assert_eq!(feed(&mut reader, &[&OK[..20]]), Ok(vec![]));
        reader.reset();
        assert_eq!(feed(&mut reader, &[OK]), Ok(vec![meta(200, OK.len(), false)]));
    }
}
