//! Responses: the owned [`Response`] handlers return, and its encoding into the connection's
//! write buffer (status line, `Content-Type`, `Content-Length`, `Date`, extra headers, body).
//!
//! Every response but a 204 carries `Content-Length` (also for HEAD, whose body is omitted), so the
//! connection can stay open; `Connection: close` is added when the connection ends after it.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response as a handler builds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra headers (`Allow`, `WWW-Authenticate`, `Retry-After`, ...).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response from an already serialized body.
    pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body,
        }
    }

    /// A JSON response from a value.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        // Serializing a `Value` into a Vec cannot fail.
        Self::json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// Appends the encoded response to `out`. `head_only` (HEAD requests) omits the body but
/// keeps its length; `close` adds `Connection: close`, `keep_alive` (HTTP/1.0 clients that
/// asked for it) adds `Connection: keep-alive`.
pub fn encode(resp: &Response, out: &mut Vec<u8>, close: bool, keep_alive: bool, head_only: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut itoa_buf = itoa_like::Buffer::default();
    out.extend_from_slice(itoa_buf.format(u64::from(resp.status)));
    out.push(b' ');
    out.extend_from_slice(reason(resp.status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(resp.content_type.as_bytes());
    // A 204 carries no Content-Length (RFC 9110 §8.6).
    debug_assert!(resp.status != 204 || resp.body.is_empty());
    if resp.status != 204 {
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa_buf.format(resp.body.len() as u64));
    }
    out.extend_from_slice(b"\r\nDate: ");
    with_date(|d| out.extend_from_slice(d));
    for (name, value) in &resp.headers {
        debug_assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n'), "header injection");
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if keep_alive {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

/// The interim response sent before reading a body the client is holding back.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

thread_local! {
    /// (second, IMF-fixdate of that second) — formatted once per second per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

#[allow(
    clippy::disallowed_methods,
    reason = "the Date header is the time of day; it decides nothing"
)]
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.0 != now {
            *c = (now, imf_fixdate(now));
        }
        f(&c.1);
    });
}

/// Formats Unix seconds as an IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;
    let mut out = [0u8; 29];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], day);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[11] = b' ';
    two(&mut out[12..14], year / 100 % 100);
    two(&mut out[14..16], year % 100);
    out[16] = b' ';
    two(&mut out[17..19], h);
    out[19] = b':';
    two(&mut out[20..22], m);
    out[22] = b':';
    two(&mut out[23..25], s);
    out[25..29].copy_from_slice(b" GMT");
    out
}

fn two(out: &mut [u8], v: u64) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Decimal formatting of integers without allocation.
mod itoa_like {
    #[derive(Default)]
    pub struct Buffer([u8; 20]);

    impl Buffer {
        pub fn format(&mut self, mut v: u64) -> &[u8] {
            let mut i = self.0.len();
            loop {
                i -= 1;
                self.0[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            &self.0[i..]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixdate_known_values() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&imf_fixdate(1_798_761_599), b"Thu, 31 Dec 2026 23:59:59 GMT");
    }

    #[test]
    fn encodes_framing_headers() {
        let mut out = Vec::new();
        let r = Response::json_bytes(405, b"{}".to_vec()).with_header("Allow", "GET, HEAD");
        encode(&r, &mut out, true, false, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: "
        ));
        assert!(
            s.ends_with("\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n{}"),
            "{s}"
        );
        let mut out = Vec::new();
        encode(&r, &mut out, false, false, true);
        assert!(out.ends_with(b"Content-Length: 2\r\nDate: ".as_slice()) || out.ends_with(b"GET, HEAD\r\n\r\n"));
    }
}
