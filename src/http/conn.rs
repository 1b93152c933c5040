//! One HTTP/1.1 connection: read, frame, dispatch, answer in order, repeat.
//!
//! The read buffer holds the current request's head and body (and any pipelined bytes after
//! them); the request handed to the service borrows from it, so a Content-Length body is never
//! copied. Chunked bodies are decoded into a second buffer reused across requests. Responses
//! are appended to a write buffer that is written once per batch: when no complete request is
//! left in the read buffer, before an interim `100 Continue`, or when it grows large.
//!
//! Timeouts: a request's head and body must arrive within `request_timeout` of its first byte
//! (408, close); a connection with no request in progress is closed after `idle_timeout`, or at
//! once when the shard stops. Every protocol error answers with its status and closes the
//! connection; the close is a lingering one (shut down writing, drain briefly) so the client
//! reads the answer instead of a reset.
#![allow(
    clippy::disallowed_methods,
    reason = "connection deadlines (request and idle timeouts, linger) are monotonic-clock I/O pacing"
)]

use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::body::{BodyError, ChunkedDecoder};
use super::budget::{BodyBudget, Held};
use super::head::{parse_head, Framing, RequestHead, TargetForm};
use super::response::{encode, Response, CONTINUE};
use crate::server::shutdown::StopSignal;

/// Smallest free space handed to a read.
const READ_MIN_BYTES: usize = 4096;
/// Read buffer size for heads.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Largest single growth of the read buffer for a body.
const READ_BODY_STEP_BYTES: usize = 4 * 1024 * 1024;
/// Write buffer size above which pending pipelined responses are written out.
const WRITE_FLUSH_BYTES: usize = 64 * 1024;
/// Response bodies this large are written from their own buffer instead of being copied into
/// the connection's write buffer.
const DIRECT_BODY_BYTES: usize = 64 * 1024;
/// Buffers larger than this are released after the request that needed them.
const BUFFER_KEEP_BYTES: usize = 256 * 1024;
/// How long a lingering close drains the client's unread bytes.
const LINGER: Duration = Duration::from_secs(2);
/// How much a lingering close drains at most.
const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Connection limits from the configuration, and the node-wide body budget.
#[derive(Debug)]
pub struct ConnLimits {
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_budget: BodyBudget,
}

/// A request as the service sees it; everything borrows the connection's buffers.
#[derive(Debug)]
pub struct Request<'a> {
    /// The method token as sent (`GET`, `POST`, ...). HEAD requests arrive as `HEAD`.
    pub method: &'a str,
    /// The path, still percent-encoded, without the query. `*` for `OPTIONS *`.
    pub path: &'a str,
    /// The query string without `?` (empty when absent).
    pub query: &'a str,
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// What answers requests on a connection.
#[allow(
    async_fn_in_trait,
    reason = "services run on one shard's thread; no Send bound wanted"
)]
pub trait Service {
    async fn call(&self, req: &Request<'_>) -> Response;
    /// Called for each request rejected by the protocol layer, with the status sent.
    fn protocol_error(&self, _status: u16) {}
}

/// The JSON error body of protocol-level rejections.
fn error_response(status: u16, message: &str) -> Response {
    let code = match status {
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        417 => "expectation_failed",
        431 => "headers_too_large",
        505 => "http_version_not_supported",
        429 => "overloaded",
        _ => "bad_request",
    };
    let resp = Response::json(
        status,
        &serde_json::json!({ "error": code, "message": message, "details": {} }),
    );
    if status == 429 {
        resp.with_header("Retry-After", "1")
    } else {
        resp
    }
}

enum ReadOutcome {
    Data,
    Eof,
    Timeout,
    Stopped,
    Failed,
}

/// Serves one connection until it closes.
pub async fn serve<S: Service>(mut stream: TcpStream, svc: &S, limits: &ConnLimits, stop: &StopSignal) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut wbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunked_body: Vec<u8> = Vec::new();
    loop {
        // --- the head ---
        let mut deadline = (!rbuf.is_empty()).then(|| Instant::now() + limits.request_timeout);
        let head = loop {
            match parse_head(&rbuf) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    svc.protocol_error(e.status());
                    encode(&error_response(e.status(), e.message()), &mut wbuf, true, false, false);
                    close_after_write(stream, wbuf).await;
                    return;
                }
            }
            if !wbuf.is_empty() && !flush(&mut stream, &mut wbuf, limits.request_timeout).await {
                return;
            }
            let idle = rbuf.is_empty();
            if idle && stop.is_set() {
                return;
            }
            let until = match deadline {
                Some(d) => d,
                None => Instant::now() + limits.idle_timeout,
            };
            match fill(&mut stream, &mut rbuf, until, idle.then_some(stop), READ_CHUNK_BYTES).await {
                ReadOutcome::Data => {
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + limits.request_timeout);
                    }
                }
                ReadOutcome::Timeout if !idle => {
                    timeout_408(svc, stream, wbuf).await;
                    return;
                }
                _ => return,
            }
        };
        let deadline = deadline.unwrap_or_else(|| Instant::now() + limits.request_timeout);

        // --- the body ---
        let mut held = Held::new(&limits.body_budget);
        let body_end = match read_body(
            &mut stream,
            &mut rbuf,
            &mut wbuf,
            &mut chunked_body,
            &head,
            limits,
            &mut held,
            deadline,
        )
        .await
        {
            Ok(end) => end,
            Err(BodyFailure::Status(status, message)) => {
                svc.protocol_error(status);
                encode(&error_response(status, message), &mut wbuf, true, false, false);
                close_after_write(stream, wbuf).await;
                return;
            }
            Err(BodyFailure::Timeout) => {
                timeout_408(svc, stream, wbuf).await;
                return;
            }
            Err(BodyFailure::Closed) => return,
        };

        // --- dispatch ---
        let close = head.close || stop.is_set();
        let (mut resp, head_only) = {
            let method = std::str::from_utf8(&rbuf[head.method.clone()]).unwrap_or("");
            let path = std::str::from_utf8(&rbuf[head.path.clone()]);
            let query = std::str::from_utf8(&rbuf[head.query.clone()]);
            match (path, query) {
                (Ok(path), Ok(query)) => {
                    let body: &[u8] = match head.framing {
                        Framing::Chunked => &chunked_body,
                        _ => &rbuf[head.len..body_end],
                    };
                    let req = Request {
                        method,
                        path: if head.form == TargetForm::Asterisk { "*" } else { path },
                        query,
                        authorization: head.authorization.clone().map(|r| &rbuf[r]),
                        body,
                    };
                    (svc.call(&req).await, method == "HEAD")
                }
                _ => (error_response(400, "request target is not valid UTF-8"), false),
            }
        };
        let keep_alive_10 = head.minor_version == 0 && !close;
        // A large body is sent from its own buffer after the head, not copied behind it.
        let direct = !head_only && resp.body.len() >= DIRECT_BODY_BYTES;
        encode(&resp, &mut wbuf, close, keep_alive_10, head_only || direct);
        if direct {
            let body = std::mem::take(&mut resp.body);
            if !flush(&mut stream, &mut wbuf, limits.request_timeout).await
                || !flush(&mut stream, &mut { body }, limits.request_timeout).await
            {
                return;
            }
        }

        // --- next ---
        rbuf.drain(..body_end);
        if close {
            close_after_write(stream, wbuf).await;
            return;
        }
        if chunked_body.capacity() > BUFFER_KEEP_BYTES {
            chunked_body = Vec::new();
        } else {
            chunked_body.clear();
        }
        if rbuf.capacity() > BUFFER_KEEP_BYTES && rbuf.len() < READ_CHUNK_BYTES {
            rbuf.shrink_to(READ_CHUNK_BYTES);
        }
        if wbuf.len() >= WRITE_FLUSH_BYTES && !flush(&mut stream, &mut wbuf, limits.request_timeout).await {
            return;
        }
    }
}

enum BodyFailure {
    Status(u16, &'static str),
    Timeout,
    Closed,
}

const OVER_BUDGET: BodyFailure = BodyFailure::Status(429, "too many request bodies in flight; retry later");

/// Reads the body; returns the offset in `rbuf` where the request ends.
#[allow(clippy::too_many_arguments)]
async fn read_body(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    wbuf: &mut Vec<u8>,
    chunked_body: &mut Vec<u8>,
    head: &RequestHead,
    limits: &ConnLimits,
    held: &mut Held<'_>,
    deadline: Instant,
) -> Result<usize, BodyFailure> {
    let mut continue_sent = false;
    match head.framing {
        Framing::None => Ok(head.len),
        Framing::Length(n) => {
            if n > limits.max_body_bytes {
                return Err(BodyFailure::Status(
                    413,
                    "request body larger than the configured limit",
                ));
            }
            if !held.grow_to(n) {
                return Err(OVER_BUDGET);
            }
            let end = head.len + n as usize;
            while rbuf.len() < end {
                if head.expect_continue && !continue_sent {
                    send_continue(stream, wbuf, limits).await?;
                    continue_sent = true;
                }
                let want = (end - rbuf.len()).clamp(READ_CHUNK_BYTES, READ_BODY_STEP_BYTES);
                read_or_fail(stream, rbuf, deadline, want).await?;
            }
            Ok(end)
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                match dec.decode(&rbuf[head.len..], chunked_body, limits.max_body_bytes) {
                    Ok(true) => return Ok(head.len + dec.consumed()),
                    // Raw and decoded bytes are both buffered: count twice the decoded size.
                    Ok(false) if !held.grow_to(2 * chunked_body.len() as u64) => return Err(OVER_BUDGET),
                    Ok(false) => {}
                    Err(BodyError::Malformed(m)) => return Err(BodyFailure::Status(400, m)),
                    Err(BodyError::TooLarge) => {
                        return Err(BodyFailure::Status(
                            413,
                            "request body larger than the configured limit",
                        ))
                    }
                }
                if head.expect_continue && !continue_sent {
                    send_continue(stream, wbuf, limits).await?;
                    continue_sent = true;
                }
                read_or_fail(stream, rbuf, deadline, READ_CHUNK_BYTES).await?;
            }
        }
    }
}

async fn send_continue(stream: &mut TcpStream, wbuf: &mut Vec<u8>, limits: &ConnLimits) -> Result<(), BodyFailure> {
    wbuf.extend_from_slice(CONTINUE);
    if flush(stream, wbuf, limits.request_timeout).await {
        Ok(())
    } else {
        Err(BodyFailure::Closed)
    }
}

async fn read_or_fail(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    deadline: Instant,
    want: usize,
) -> Result<(), BodyFailure> {
    match fill(stream, rbuf, deadline, None, want).await {
        ReadOutcome::Data => Ok(()),
        ReadOutcome::Timeout => Err(BodyFailure::Timeout),
        _ => Err(BodyFailure::Closed),
    }
}

/// Reads more bytes into `rbuf` (at least `want` bytes of room are made), until `deadline`,
/// or until `stop` fires when given.
async fn fill(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    deadline: Instant,
    stop: Option<&StopSignal>,
    want: usize,
) -> ReadOutcome {
    let mut buf = std::mem::take(rbuf);
    if buf.capacity() - buf.len() < READ_MIN_BYTES.max(want.min(READ_BODY_STEP_BYTES)) {
        buf.reserve(want.max(READ_MIN_BYTES));
    }
    let len = buf.len();
    let cap = buf.capacity();
    let read = monoio::time::timeout_at(deadline, stream.read(buf.slice_mut(len..cap)));
    let result = match stop {
        Some(stop) => {
            monoio::select! {
                r = read => Some(r),
                _ = stop.wait() => None,
            }
        }
        None => Some(read.await),
    };
    match result {
        None => ReadOutcome::Stopped,
        Some(Err(_elapsed)) => ReadOutcome::Timeout,
        Some(Ok((res, slice))) => {
            *rbuf = slice.into_inner();
            match res {
                Ok(0) => ReadOutcome::Eof,
                Ok(_) => ReadOutcome::Data,
                Err(_) => ReadOutcome::Failed,
            }
        }
    }
}

/// Writes and clears `wbuf`; false when the connection is gone or the write timed out.
async fn flush(stream: &mut TcpStream, wbuf: &mut Vec<u8>, timeout: Duration) -> bool {
    let buf = std::mem::take(wbuf);
    match monoio::time::timeout(timeout, stream.write_all(buf)).await {
        Ok((Ok(_), mut buf)) => {
            buf.clear();
            *wbuf = buf;
            true
        }
        _ => false,
    }
}

async fn timeout_408<S: Service>(svc: &S, stream: TcpStream, mut wbuf: Vec<u8>) {
    svc.protocol_error(408);
    encode(
        &error_response(408, "request not received in time"),
        &mut wbuf,
        true,
        false,
        false,
    );
    close_after_write(stream, wbuf).await;
}

/// Writes what is pending, then closes without resetting the connection: shut down our
/// sending side and drain what the client still sends for a short while.
async fn close_after_write(mut stream: TcpStream, mut wbuf: Vec<u8>) {
    if !wbuf.is_empty() && !flush(&mut stream, &mut wbuf, LINGER).await {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut drained = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    while drained < LINGER_MAX_BYTES {
        match monoio::time::timeout_at(deadline, stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                drained += n;
                buf = b;
            }
            _ => return,
        }
    }
}
