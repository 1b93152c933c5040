//! Request body framing: the chunked transfer-coding decoder (RFC 9112 §7.1).
//!
//! [`ChunkedDecoder`] is incremental and pure: it is handed every body byte received so far
//! (the same growing slice on each call), remembers how far it got, appends chunk data to an
//! output buffer, and says when the last chunk and the trailer section have been read.
//! Chunk extensions and trailer fields are checked for framing and ignored.
//!
//! Strictness (each a request-smuggling defence): the chunk size is 1*HEXDIG with nothing
//! before it and only extensions after it, which follow the RFC 9112 §7.1.1 grammar with no
//! whitespace (`;name`, `;name=token`, `;name="quoted"`), it must fit in a u64, every line ends in CRLF, chunk
//! data is followed by exactly CRLF, and control bytes other than HTAB are rejected.

/// Longest chunk-size line (size and extensions) accepted.
pub const CHUNK_LINE_MAX_BYTES: usize = 4096;
/// Largest trailer section accepted.
pub const TRAILERS_MAX_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// 400: the chunked framing is broken.
    Malformed(&'static str),
    /// 413: the decoded body would exceed the limit.
    TooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailers { bytes: usize },
    Done,
}

/// Incremental chunked-body decoder; see the module doc.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the input consumed so far.
    pos: usize,
    /// Decoded body bytes so far.
    total: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            pos: 0,
            total: 0,
        }
    }

    /// Bytes of the input that belong to the body so far (all of it once done).
    pub fn consumed(&self) -> usize {
        self.pos
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` (all body bytes received so far, starting at the first byte after
    /// the head) into `out`. Returns `Ok(true)` once the whole body has been read.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, limit: u64) -> Result<bool, BodyError> {
        debug_assert!(self.pos <= input.len(), "input must only grow");
        loop {
            match self.state {
                State::Done => return Ok(true),
                State::Size => {
                    let Some(line) = take_line(input, self.pos, CHUNK_LINE_MAX_BYTES)? else {
                        return Ok(false);
                    };
                    let size = parse_chunk_size(&input[self.pos..self.pos + line])?;
                    self.pos += line + 2;
                    if size == 0 {
                        self.state = State::Trailers { bytes: 0 };
                    } else {
                        let total = self.total.checked_add(size).ok_or(BodyError::TooLarge)?;
                        if total > limit {
                            return Err(BodyError::TooLarge);
                        }
                        self.total = total;
                        self.state = State::Data { remaining: size };
                    }
                }
                State::Data { remaining } => {
                    let available = (input.len() - self.pos) as u64;
                    if available == 0 {
                        return Ok(false);
                    }
                    let n = remaining.min(available) as usize;
                    out.extend_from_slice(&input[self.pos..self.pos + n]);
                    self.pos += n;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data { remaining: left }
                    };
                }
                State::DataEnd => {
                    if input.len() < self.pos + 2 {
                        if input.len() > self.pos && input[self.pos] != b'\r' {
                            return Err(BodyError::Malformed("chunk data not followed by CRLF"));
                        }
                        return Ok(false);
                    }
                    if &input[self.pos..self.pos + 2] != b"\r\n" {
                        return Err(BodyError::Malformed("chunk data not followed by CRLF"));
                    }
                    self.pos += 2;
                    self.state = State::Size;
                }
                State::Trailers { bytes } => {
                    let room = TRAILERS_MAX_BYTES.saturating_sub(bytes);
                    let Some(line) = take_line(input, self.pos, room)? else {
                        return Ok(false);
                    };
                    let field = &input[self.pos..self.pos + line];
                    self.pos += line + 2;
                    if field.is_empty() {
                        self.state = State::Done;
                    } else {
                        check_trailer_field(field)?;
                        self.state = State::Trailers {
                            bytes: bytes + line + 2,
                        };
                    }
                }
            }
        }
    }
}

/// Finds the CRLF ending the line that starts at `start`; returns the line's length without
/// it, `None` if the line is not complete yet.
fn take_line(input: &[u8], start: usize, max: usize) -> Result<Option<usize>, BodyError> {
    let rest = &input[start..];
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\r' => {
                return match rest.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err(BodyError::Malformed("bare CR in chunked framing")),
                }
            }
            b'\n' => return Err(BodyError::Malformed("bare LF in chunked framing")),
            b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
            _ => return Err(BodyError::Malformed("control character in chunked framing")),
        }
        if i >= max {
            return Err(BodyError::Malformed("chunk-size line or trailer section too long"));
        }
    }
    if rest.len() > max {
        return Err(BodyError::Malformed("chunk-size line or trailer section too long"));
    }
    Ok(None)
}

/// `1*HEXDIG [ ";" ext ]`, the value fitting in a u64.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    match line.get(digits) {
        None => {}
        Some(b';') => check_chunk_ext(&line[digits..])?,
        Some(_) => return Err(BodyError::Malformed("invalid chunk size")),
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char)
            .to_digit(16)
            .map(u64::from)
            .ok_or(BodyError::Malformed("invalid chunk size"))?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or(BodyError::Malformed("chunk size overflows"))?;
    }
    Ok(size)
}

/// `*( ";" token [ "=" ( token / quoted-string ) ] )` without whitespace (RFC 9112 §7.1.1). A
/// lenient parser that ends an extension elsewhere (at a quote, a bare CR, a space) would see
/// different chunk boundaries, so anything outside the grammar is rejected.
fn check_chunk_ext(mut ext: &[u8]) -> Result<(), BodyError> {
    const BAD: BodyError = BodyError::Malformed("invalid chunk extension");
    while let [b';', rest @ ..] = ext {
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err(BAD);
        }
        ext = &rest[name..];
        if let [b'=', value @ ..] = ext {
            let len = if value.first() == Some(&b'"') {
                quoted_string_len(value).ok_or(BAD)?
            } else {
                value.iter().take_while(|&&b| is_tchar(b)).count()
            };
            if len == 0 {
                return Err(BAD);
            }
            ext = &value[len..];
        }
    }
    if ext.is_empty() {
        Ok(())
    } else {
        Err(BAD)
    }
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Length of the quoted-string at the start of `s` (RFC 9110 §5.6.4), quotes included.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' => match s.get(i + 1) {
                Some(&q) if q == b'\t' || q >= 0x20 && q != 0x7f => i += 2,
                _ => return None,
            },
            b'\t' | 0x20..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

fn check_trailer_field(field: &[u8]) -> Result<(), BodyError> {
    if field[0] == b' ' || field[0] == b'\t' {
        return Err(BodyError::Malformed("obsolete line folding in trailer"));
    }
    match field.iter().position(|&b| b == b':') {
        Some(0) | None => Err(BodyError::Malformed("malformed trailer field")),
        Some(c) if matches!(field[c - 1], b' ' | b'\t') => {
            Err(BodyError::Malformed("whitespace before colon in trailer field"))
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), BodyError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        if d.decode(input, &mut out, limit)? {
            Ok((out, d.consumed()))
        } else {
            Err(BodyError::Malformed("incomplete"))
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, used) = decode_all(input, 100).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&input[used..], b"NEXT");
    }

    #[test]
    fn chunk_extension_grammar() {
        let input = b"5;a;b=c;d=\"x; \\\"y\"\r\nhello\r\n0;e=\"\"\r\n\r\n";
        assert_eq!(decode_all(input, 100).unwrap().0, b"hello");
    }

    #[test]
    fn byte_by_byte_gives_the_same_result() {
        let input = b"3\r\nabc\r\n00A\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for n in 0..input.len() {
            assert!(!d.decode(&input[..n], &mut out, 100).unwrap(), "done early at {n}");
        }
        assert!(d.decode(input, &mut out, 100).unwrap());
        assert_eq!(out, b"abc0123456789");
        assert_eq!(d.consumed(), input.len());
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"5 \r\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"fffffffffffffffff1\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nX-T : 1\r\n\r\n",
            b"5;a b=c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\\\"\r\nhello\r\n0\r\n\r\n",
            b"5;a;\r\nhello\r\n0\r\n\r\n",
            b"0;a=(\r\n\r\n",
        ] {
            assert!(
                matches!(decode_all(bad, 1 << 40), Err(BodyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn limit_is_checked_before_data_arrives() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(b"ffff\r\n", &mut out, 100), Err(BodyError::TooLarge));
        assert_eq!(
            decode_all(b"ffffffffffffffff\r\n", u64::MAX - 1),
            Err(BodyError::TooLarge)
        );
    }
}
