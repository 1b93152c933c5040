//! Workloads of `flo bench`: which HTTP requests the load tool sends.
//!
//! This module owns the request bytes. A [`Workload`] turns `(connection index,
//! request sequence number)` into one complete HTTP/1.1 keep-alive request
//! (request line, headers, optional JSON body) written into a reusable
//! [`RequestBytes`]. Connection tasks never format anything themselves.
//!
//! Adding a workload (KV, queue, stream, time series, ...) means adding a
//! [`WorkloadKind`] variant, its `name`, whether it varies per request
//! ([`Workload::varies_per_request`]) and a `build` arm. A workload whose
//! requests differ per request writes its body into [`RequestBytes::body`] and
//! its path with `format_args!`, so the hot path does not allocate once the
//! buffers have grown to their working size.

use std::fmt;
use std::io::Write as _;

/// The named workloads selectable with `--workload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// `GET /api/v1/status`: server status document.
    Status,
    /// `GET /health`: liveness probe, the cheapest request the server answers.
    Health,
}

impl WorkloadKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Status => "status",
            WorkloadKind::Health => "health",
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

/// A workload bound to one target: knows the `Host` header and the optional
/// bearer token, and builds the request for request `seq` of connection `conn`.
#[derive(Clone, Debug)]
pub struct Workload {
    kind: WorkloadKind,
    host_header: String,
    bearer_token: Option<String>,
}

impl Workload {
    pub fn new(kind: WorkloadKind, host_header: &str, bearer_token: Option<&str>) -> Self {
        Workload {
            kind,
            host_header: host_header.to_owned(),
            bearer_token: bearer_token.map(str::to_owned),
        }
    }

    /// Whether request bytes differ between requests of one connection. When
    /// false, connections build their request once and resend the same bytes.
    pub fn varies_per_request(&self) -> bool {
        match self.kind {
            WorkloadKind::Status | WorkloadKind::Health => false,
        }
    }

    /// Writes request `seq` of connection `conn` into `out.wire` (replacing
    /// its previous content).
    pub fn build(&self, conn: usize, seq: u64, out: &mut RequestBytes) {
        let _ = (conn, seq); // used by the per-request workloads to come
        out.body.clear();
        match self.kind {
            WorkloadKind::Status => self.write_request(out, "GET", format_args!("/api/v1/status")),
            WorkloadKind::Health => self.write_request(out, "GET", format_args!("/health")),
        }
    }

    /// Writes a keep-alive request with the common headers; `out.body`, when
    /// non-empty, is sent as a JSON body with its `Content-Length`.
    fn write_request(&self, out: &mut RequestBytes, method: &str, path: fmt::Arguments<'_>) {
        let wire = &mut out.wire;
        wire.clear();
        // Writing into a Vec<u8> cannot fail.
        let _ = write!(wire, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host_header);
        if let Some(token) = &self.bearer_token {
            let _ = write!(wire, "Authorization: Bearer {token}\r\n");
        }
        if !out.body.is_empty() {
            let _ = write!(
                wire,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                out.body.len()
            );
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&out.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
