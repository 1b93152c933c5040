//! HTTP/1.1 framing of a pipelined byte stream, whole and in pieces: the same bytes fed to the
//! parsers at once and split at chosen points give the same requests (head, decoded body,
//! close) and the same error, and stop at the same byte.
//!
//! The connection (`http/conn.rs`) interleaves framing with socket I/O, so this drives the pure
//! layers it is built on exactly as it does: `parse_head` over the buffered bytes until a head
//! is complete, then the body by its framing (`Content-Length` bytes, or the incremental
//! `ChunkedDecoder` handed every body byte received so far), then the request's bytes are
//! drained and the next head is parsed; an error ends the stream, and so does a request asking
//! to close.
//!
//! Input: the first byte is the number of split points (mod 8), then two bytes per point (a
//! little-endian offset, taken modulo the stream's length); the rest is the stream.

use crate::http::body::{BodyError, ChunkedDecoder};
use crate::http::head::{parse_head, Framing, RequestHead};

/// The body limit (`max_body_bytes`) of the framer.
const LIMIT: u64 = 1 << 16;

/// What the framer saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// A complete request: its head's bytes, whether it asked to close, its decoded body.
    Request { head: Vec<u8>, close: bool, body: Vec<u8> },
    /// The status the connection answers before closing.
    Error(u16),
}

/// The framing state of one connection (`http/conn.rs`'s loop without the socket).
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    /// The current request's head, once complete, and its chunked decoder.
    head: Option<(RequestHead, ChunkedDecoder, Vec<u8>)>,
    events: Vec<Event>,
    closed: bool,
    /// Bytes drained (taken by finished requests).
    drained: usize,
}

impl Framer {
    fn feed(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(bytes);
        while !self.closed && self.step() {}
    }

    /// One step: true if it made progress and may make more with the bytes buffered.
    fn step(&mut self) -> bool {
        if self.head.is_none() {
            match parse_head(&self.buf) {
                Ok(None) => return false,
                Ok(Some(h)) => {
                    if let Framing::Length(n) = h.framing {
                        if n > LIMIT {
                            return self.fail(413);
                        }
                    }
                    self.head = Some((h, ChunkedDecoder::new(), Vec::new()));
                }
                Err(e) => return self.fail(e.status()),
            }
        }
        let Some((h, dec, out)) = self.head.as_mut() else {
            return false;
        };
        let end = match h.framing {
            Framing::None => h.len,
            Framing::Length(n) => {
                let end = h.len + n as usize;
                if self.buf.len() < end {
                    return false;
                }
                out.extend_from_slice(&self.buf[h.len..end]);
                end
            }
            Framing::Chunked => match dec.decode(&self.buf[h.len..], out, LIMIT) {
                Ok(true) => h.len + dec.consumed(),
                Ok(false) => return false,
                Err(BodyError::Malformed(_)) => return self.fail(400),
                Err(BodyError::TooLarge) => return self.fail(413),
            },
        };
        let Some((h, _, body)) = self.head.take() else {
            return false;
        };
        assert!(end <= self.buf.len() && h.len <= end);
        self.events.push(Event::Request {
            head: self.buf[..h.len].to_vec(),
            close: h.close,
            body,
        });
        self.buf.drain(..end);
        self.drained += end;
        if h.close {
            self.closed = true;
        }
        true
    }

    fn fail(&mut self, status: u16) -> bool {
        self.events.push(Event::Error(status));
        self.closed = true;
        false
    }
}

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < 2 * n {
        return;
    }
    let (points, stream) = rest.split_at(2 * n);
    let mut splits: Vec<usize> = points
        .chunks(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (stream.len() + 1))
        .collect();
    splits.sort_unstable();

    let mut whole = Framer::default();
    whole.feed(stream);

    let mut pieces = Framer::default();
    let mut at = 0;
    for s in splits.into_iter().chain([stream.len()]) {
        pieces.feed(&stream[at..s]);
        at = s;
    }

    assert_eq!(pieces.events, whole.events, "split framing disagrees");
    assert_eq!(pieces.drained, whole.drained);
    assert_eq!(pieces.closed, whole.closed);
    if stream.len() <= 512 {
        let mut bytes = Framer::default();
        for b in stream.chunks(1) {
            bytes.feed(b);
        }
        assert_eq!(bytes.events, whole.events, "byte-by-byte framing disagrees");
    }
    if !whole.closed {
        // The rest waits for more bytes: an incomplete head or body, never a lost request.
        assert_eq!(whole.drained + whole.buf.len(), stream.len());
    }
}
