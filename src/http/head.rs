//! The request head: framing checks of our own, then httparse, then the header semantics that
//! decide body framing and connection handling.
//!
//! [`parse_head`] is pure: it looks at the front of a buffer and answers `Ok(None)` when the
//! head is not complete yet, `Ok(Some(head))` with byte ranges into the same buffer, or a
//! [`HeadError`] whose status the connection sends before closing. It allocates nothing.
//!
//! Rules enforced here that httparse does not (RFC 9112 and request-smuggling defences):
//! every line ends in CRLF (no bare LF, no bare CR); no control bytes but HTAB; no obs-fold; no
//! whitespace between a field name and its colon; request line ≤ 8 KiB (414), head ≤ 16 KiB and
//! ≤ 100 fields (431); exactly one Host in HTTP/1.1, its value `uri-host [":" port]` or empty, and
//! no userinfo or malformed authority in an absolute-form target; Content-Length is 1*DIGIT and appears at most
//! once; Transfer-Encoding is exactly `chunked`, once, never with Content-Length, never in
//! HTTP/1.0; Expect is `100-continue` or 417; versions other than 1.0/1.1 are 505.

use std::ops::Range;

/// Longest request line accepted (without its CRLF).
pub const REQUEST_LINE_MAX_BYTES: usize = 8 * 1024;
/// Longest head accepted, leading empty lines and final CRLFCRLF included.
pub const HEAD_MAX_BYTES: usize = 16 * 1024;
/// Most header fields accepted.
pub const HEADERS_MAX: usize = 100;

/// How the body of a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding) or `Content-Length: 0`.
    None,
    Length(u64),
    Chunked,
}

/// The target form of a request (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`, also what an absolute-form target is reduced to.
    Origin,
    /// `*` (OPTIONS only).
    Asterisk,
}

/// A parsed request head. Ranges index the buffer given to [`parse_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Range<usize>,
    /// Path without the query (origin form); for `*` the asterisk.
    pub path: Range<usize>,
    /// Query after `?`, without it; empty range when absent.
    pub query: Range<usize>,
    pub form: TargetForm,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub framing: Framing,
    pub expect_continue: bool,
    /// The client asked to close (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
    pub authorization: Option<Range<usize>>,
    /// Bytes taken by the head, leading empty lines included.
    pub len: usize,
}

/// Why a head was rejected. Every variant closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400 with this reason.
    BadRequest(&'static str),
    /// 414.
    UriTooLong,
    /// 431.
    HeadersTooLarge(&'static str),
    /// 505.
    VersionNotSupported,
    /// 417.
    ExpectationFailed,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::BadRequest(_) => 400,
            HeadError::UriTooLong => 414,
            HeadError::HeadersTooLarge(_) => 431,
            HeadError::VersionNotSupported => 505,
            HeadError::ExpectationFailed => 417,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HeadError::BadRequest(m) => m,
            HeadError::UriTooLong => "request line longer than 8192 bytes",
            HeadError::HeadersTooLarge(m) => m,
            HeadError::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are supported",
            HeadError::ExpectationFailed => "only the expectation 100-continue is supported",
        }
    }
}

fn bad(reason: &'static str) -> HeadError {
    HeadError::BadRequest(reason)
}

/// Parses the head at the front of `buf`. See the module doc.
pub fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    // Empty lines before the request line are ignored (RFC 9112 §2.2).
    let mut start = 0;
    while buf.len() >= start + 2 && buf[start] == b'\r' && buf[start + 1] == b'\n' {
        start += 2;
        if start > HEAD_MAX_BYTES {
            return Err(HeadError::HeadersTooLarge("request head larger than 16384 bytes"));
        }
    }
    if buf.len() == start || (buf.len() == start + 1 && buf[start] == b'\r') {
        return Ok(None);
    }
    let Some(end) = scan_head(buf, start)? else {
        return Ok(None);
    };
    let head = &buf[start..end];

    // Uninitialized slots: httparse writes only as many as the head has.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(n)) => debug_assert_eq!(n, head.len()),
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge("more than 100 header fields")),
        Err(httparse::Error::Version) => return Err(version_error(head)),
        Err(httparse::Error::Token) => return Err(bad("invalid method or request line")),
        Err(httparse::Error::HeaderName) => return Err(field_line_error(head)),
        Err(httparse::Error::HeaderValue) => return Err(bad("invalid header field value")),
        Err(httparse::Error::NewLine) => return Err(bad("invalid line ending")),
        Err(_) => return Err(bad("malformed request head")),
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    let range_of = |s: &[u8]| -> Range<usize> {
        let off = s.as_ptr() as usize - buf.as_ptr() as usize;
        off..off + s.len()
    };
    let method = range_of(method.as_bytes());
    let target_range = range_of(target.as_bytes());
    let (form, path, query) = split_target(target.as_bytes(), target_range.start, &buf[method.clone()])?;

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut hosts = 0usize;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut authorization = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(bad("more than one Content-Length"));
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if te_seen {
                return Err(bad("more than one Transfer-Encoding"));
            }
            te_seen = true;
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(bad("unsupported transfer coding (only chunked is accepted)"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if !value.is_empty() && !valid_authority(value) {
                return Err(bad("invalid Host"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim_ows(token);
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HeadError::ExpectationFailed);
            }
        } else if name.eq_ignore_ascii_case(b"authorization") {
            if authorization.is_some() {
                return Err(bad("more than one Authorization"));
            }
            authorization = Some(range_of(h.value));
        }
    }
    if minor_version == 1 && hosts != 1 {
        return Err(bad(if hosts == 0 {
            "HTTP/1.1 request without Host"
        } else {
            "more than one Host"
        }));
    }
    if hosts > 1 {
        return Err(bad("more than one Host"));
    }
    if te_seen && content_length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    if te_seen && minor_version == 0 {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let framing = match (chunked, content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    let close = conn_close || (minor_version == 0 && !conn_keep_alive);
    Ok(Some(RequestHead {
        method,
        path,
        query,
        form,
        minor_version,
        framing,
        expect_continue: expect_continue && minor_version == 1 && framing != Framing::None,
        close,
        authorization,
        len: end,
    }))
}

/// Finds the end of the head (index after CRLFCRLF), checking that every LF follows a CR and
/// the size limits. `Ok(None)`: need more bytes. Control bytes and bare CRs inside lines are
/// left to httparse, which rejects them; garbage at the very start (a TLS handshake, say) is
/// rejected here already so it does not wait for a timeout.
///
/// The answer does not depend on how the bytes arrived: every error is the one the shortest
/// prefix showing it gets, so a head parsed whole and a head parsed as it trickles in fail
/// alike. Hence the order: control bytes at the start, then per line in order an overlong
/// request line (known before its LF), then a bare LF or CR.
fn scan_head(buf: &[u8], start: usize) -> Result<Option<usize>, HeadError> {
    let limit = buf.len().min(start + HEAD_MAX_BYTES);
    let window = &buf[start..limit];
    let prefix = &window[..window.len().min(PREFIX_CHECK_BYTES)];
    // Only head bytes: a short head's CRLFCRLF may come before the prefix ends.
    let prefix = match prefix.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &prefix[..i + 4],
        None => prefix,
    };
    if prefix.iter().any(|&b| CONTROL[b as usize]) {
        return Err(bad("control character in request head"));
    }
    let mut line_start = 0;
    let mut first_line = true;
    for lf in memchr::memchr_iter(b'\n', window) {
        let cr = lf > line_start && window[lf - 1] == b'\r';
        let line_len = lf - line_start - usize::from(cr);
        if first_line && line_len > REQUEST_LINE_MAX_BYTES {
            return Err(HeadError::UriTooLong);
        }
        if !cr {
            return Err(bad("bare LF in request head (lines must end in CRLF)"));
        }
        if line_len > 0 && window[lf - 2] == b'\r' {
            // `...\r\r\n`: a bare CR would otherwise hide the empty line that ends the head.
            return Err(bad("bare CR in request head"));
        }
        if first_line {
            first_line = false;
        } else if line_len == 0 {
            return Ok(Some(start + lf + 1));
        }
        line_start = lf + 1;
    }
    // A request line so far: a last CR may be the start of its CRLF.
    if first_line && window.len() - usize::from(window.last() == Some(&b'\r')) > REQUEST_LINE_MAX_BYTES {
        return Err(HeadError::UriTooLong);
    }
    if buf.len() >= start + HEAD_MAX_BYTES {
        return Err(HeadError::HeadersTooLarge("request head larger than 16384 bytes"));
    }
    Ok(None)
}

/// How much of the start of a head is checked for control bytes before the head is complete.
const PREFIX_CHECK_BYTES: usize = 32;

/// Control bytes that may not appear in a head: all but HTAB, CR and LF (DEL included).
static CONTROL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b != b'\t' as usize && b != b'\r' as usize && b != b'\n' as usize;
        b += 1;
    }
    t[0x7f] = true;
    t
};

/// Says precisely what is wrong with a field line httparse rejected (obs-fold, whitespace
/// before the colon, no colon); only runs on that error path.
fn field_line_error(head: &[u8]) -> HeadError {
    let mut lines = head.split(|&b| b == b'\n');
    lines.next(); // the request line
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return bad("obsolete line folding in a header field");
        }
        match line.iter().position(|&b| b == b':') {
            None => return bad("header field without a colon"),
            Some(0) => return bad("empty header field name"),
            Some(c) if matches!(line[c - 1], b' ' | b'\t') => {
                return bad("whitespace between header field name and colon")
            }
            Some(_) => {}
        }
    }
    bad("invalid header field name")
}

/// 505 when the request line ends in a well-formed but unsupported `HTTP/d.d`, 400 otherwise.
fn version_error(head: &[u8]) -> HeadError {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    let shaped = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    let one_space_each = line.iter().filter(|&&b| b == b' ').count() == 2;
    if shaped && one_space_each {
        HeadError::VersionNotSupported
    } else {
        bad("malformed HTTP version")
    }
}

/// Splits the request target into path and query, reducing absolute form to origin form.
fn split_target(
    target: &[u8],
    offset: usize,
    method: &[u8],
) -> Result<(TargetForm, Range<usize>, Range<usize>), HeadError> {
    if target == b"*" {
        if method != b"OPTIONS" {
            return Err(bad("asterisk-form target is only allowed with OPTIONS"));
        }
        return Ok((TargetForm::Asterisk, offset..offset + 1, offset + 1..offset + 1));
    }
    let path_start = if target.first() == Some(&b'/') {
        0
    } else {
        let scheme_len = if target.len() >= 7 && target[..7].eq_ignore_ascii_case(b"http://") {
            7
        } else if target.len() >= 8 && target[..8].eq_ignore_ascii_case(b"https://") {
            8
        } else {
            return Err(bad("request target must be origin-form or absolute-form"));
        };
        let authority_end = target[scheme_len..]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?'))
            .map_or(target.len(), |p| scheme_len + p);
        if authority_end == scheme_len {
            return Err(bad("absolute-form target without a host"));
        }
        let authority = &target[scheme_len..authority_end];
        if authority.contains(&b'@') {
            return Err(bad("userinfo in the request target"));
        }
        if !valid_authority(authority) {
            return Err(bad("invalid authority in the request target"));
        }
        if authority_end == target.len() || target[authority_end] == b'?' {
            return Err(bad("absolute-form target without a path"));
        }
        authority_end
    };
    if target[path_start..].contains(&b'#') {
        return Err(bad("fragment in request target"));
    }
    let rest = &target[path_start..];
    let (path_len, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (q, offset + path_start + q + 1..offset + target.len()),
        None => (rest.len(), offset + target.len()..offset + target.len()),
    };
    Ok((
        TargetForm::Origin,
        offset + path_start..offset + path_start + path_len,
        query,
    ))
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2, §3.2.3) with a non-empty host: an IP-literal in
/// brackets or a reg-name of unreserved, sub-delims and percent-encoded bytes, then an optional
/// all-digit port. Userinfo, whitespace, `/`, `\` and quotes are all outside this grammar.
fn valid_authority(v: &[u8]) -> bool {
    let (host, rest) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &v[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| is_unreserved_or_sub_delim(b) || b == b':') {
            return false;
        }
        (&v[..=close], &v[close + 1..])
    } else {
        let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
        (&v[..end], &v[end..])
    };
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    !host.is_empty() && port_ok && (host[0] == b'[' || valid_reg_name(host))
}

fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

fn valid_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            if !(host.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && host.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if is_unreserved_or_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    let mut n: u64 = 0;
    for &d in value {
        n = n * 10 + u64::from(d - b'0');
    }
    Ok(n)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &[u8]) -> RequestHead {
        parse_head(raw).expect("valid").expect("complete")
    }

    fn status(raw: &[u8]) -> u16 {
        parse_head(raw).expect_err("invalid").status()
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /api/v1/status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(raw);
        assert_eq!(&raw[h.method.clone()], b"GET");
        assert_eq!(&raw[h.path.clone()], b"/api/v1/status");
        assert_eq!(&raw[h.query.clone()], b"x=1");
        assert_eq!(h.framing, Framing::None);
        assert!(!h.close);
        assert_eq!(h.len, raw.len());
    }

    #[test]
    fn partial_heads_need_more() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for n in 0..raw.len() {
            assert_eq!(parse_head(&raw[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = ok(raw);
        assert_eq!(&raw[h.path.clone()], b"/");
        assert_eq!(h.len, raw.len());
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").framing,
            Framing::Length(5)
        );
        assert_eq!(
            ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            400
        );
        assert_eq!(status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            400
        );
        assert_eq!(status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            400
        );
    }

    #[test]
    fn line_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n").unwrap_err().status(),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: nope\r\n\r\n"), 417);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nAuthorization: Bearer y\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET a:b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn limits() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', REQUEST_LINE_MAX_BYTES));
        assert_eq!(parse_head(&long).unwrap_err().status(), 414);
        long.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status(&long), 414);
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..HEADERS_MAX {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'v', HEAD_MAX_BYTES));
        assert_eq!(parse_head(&big).unwrap_err().status(), 431);
    }

    /// Every prefix of `raw` is "need more" or fails with the status `raw` whole gets.
    fn assert_prefix_stable(raw: &[u8]) {
        let whole = parse_head(raw).map(|h| h.is_some()).map_err(|e| e.status());
        for n in 0..raw.len() {
            match parse_head(&raw[..n]) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("complete before its end at {n}"),
                Err(e) => assert_eq!(Err(e.status()), whole, "prefix of {n} bytes"),
            }
        }
    }

    /// Found by the `http_framing` fuzz target (`fuzz/regressions/http_framing/`): a control
    /// byte near the start was a 400 while the head was incomplete, but a complete head with a
    /// bad version was a 505 for the same bytes; an overlong request line ending in a bare LF
    /// was a 414 or a 400; a request line of exactly the limit was a 414 while only its CR had
    /// arrived. The answer now depends on the bytes only, not on how they arrived.
    #[test]
    fn errors_do_not_depend_on_how_the_bytes_arrive() {
        let raw = b"GET /x HTTP/0.1\r\n\x01Host: h\r\n\r\n";
        assert_eq!(status(raw), 400);
        assert_prefix_stable(raw);

        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat_n(b'a', REQUEST_LINE_MAX_BYTES));
        let mut bare_lf = line.clone();
        bare_lf.extend_from_slice(b" HTTP/1.1\nHost: a\r\n\r\n");
        assert_eq!(parse_head(&bare_lf).unwrap_err().status(), 414);
        assert_prefix_stable(&bare_lf);

        let mut at_limit = b"GET /".to_vec();
        at_limit.extend(std::iter::repeat_n(b'a', REQUEST_LINE_MAX_BYTES - 14));
        at_limit.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(at_limit.iter().position(|&b| b == b'\r'), Some(REQUEST_LINE_MAX_BYTES));
        ok(&at_limit);
        assert_prefix_stable(&at_limit);

        // A control byte in the body after a short head is not the head's.
        ok(b"GET / HTTP/1.0\r\n\r\n\x00\x01");
    }

    #[test]
    fn absolute_form_is_reduced() {
        let raw = b"GET http://example.com/health?a HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let h = ok(raw);
        assert_eq!(&raw[h.path.clone()], b"/health");
        assert_eq!(&raw[h.query.clone()], b"a");
    }

    #[test]
    fn host_and_authority_syntax() {
        for good in [
            &b"x"[..],
            b"example.com:8080",
            b"x:",
            b"[::1]:9002",
            b"[::1]",
            b"a%2Db",
            b"a,b",
            b"127.0.0.1",
        ] {
            assert!(valid_authority(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"a b",
            b"x/health",
            b"user@x",
            b"x:80a",
            b"x:80:81",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"x\\y",
            b"\"x\"",
            b"%zz",
            b":80",
        ] {
            assert!(!valid_authority(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(
            ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").framing == Framing::None,
            "empty Host is allowed"
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://x:8o/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://x\\y/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        ok(b"GET http://[::1]:80/ HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
    }

    #[test]
    fn http10_defaults_to_close() {
        assert!(ok(b"GET / HTTP/1.0\r\n\r\n").close);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close);
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").close);
    }
}
