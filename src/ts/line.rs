//! InfluxDB line protocol: the parser behind the time-series write endpoints, and a small
//! writer that produces what the parser reads back (for the CLI and the round-trip tests).
//!
//! A body is UTF-8 text, one point a line:
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//!
//! What this module owns, and the invariants it keeps:
//! * **Syntax** (InfluxDB's): lines end at `\n` (a `\r` before it is dropped); blank lines and
//!   lines whose first non-blank byte is `#` are skipped; spaces and tabs at the start and the
//!   end of a line are ignored, and runs of spaces separate the sections. Escapes: `\,` and `\ `
//!   in measurements; `\,` `\=` `\ ` in tag keys, tag values and field keys; `\"` inside string
//!   field values; `\\` everywhere (a doubled backslash is one backslash). A backslash before
//!   any other byte is a literal backslash.
//! * **Values**: floats (`1`, `-1.5e3`, `.5`; NaN and infinities are refused, and so is a value
//!   that overflows f64), integers `12i` (i64), unsigned `12u` (u64), booleans
//!   (`t T true True TRUE f F false False FALSE`), strings `"..."` (at most
//!   [`MAX_STRING_BYTES`] once unescaped; parsed and counted, the caller does not store them).
//! * **Write rules** (`API.md`, Time series): names are non-empty UTF-8; measurement, tag keys
//!   and field keys do not begin with `_`; `time` is not a tag or field key; tag values are not
//!   empty; a tag key appears once a line; a field key is not also a tag key of its line; a
//!   repeated field key keeps its last value unless its type changes, which is an error; a line
//!   has at least one field; the timestamp, scaled to nanoseconds, fits an i64.
//! * **Points as the caller sees them**: names come unescaped — borrowed from the body when
//!   they hold no backslash, else from a scratch buffer the [`Parser`] reuses, so a parse makes
//!   no heap allocation per line once its buffers have grown. Tags come sorted by key (so the
//!   same series is spelled one way whatever the client's order) and fields sorted by key,
//!   one per key.
//! * **Errors are values**: a bad line gives a [`LineError`] (line counted from 1, reason).
//!   Nothing here panics on any input. [`parse`] stops at the first bad line (the atomic
//!   `/api/v1/ts/:namespace/write`); [`parse_partial`] reports every bad line and goes on (the
//!   InfluxDB-compatible endpoints' partial writes).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Longest string field value, in bytes once unescaped (InfluxDB's 64 KiB).
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// Longest measurement, tag key, tag value or field key, in bytes once unescaped: what the log's
/// u16-prefixed names hold (`format-spec/ts.md`; InfluxDB's limit is 64 KiB too).
pub const MAX_NAME_BYTES: usize = u16::MAX as usize;

/// Most tags a line may have: what the log's u16 tag count holds (`format-spec/ts.md`).
pub const MAX_TAGS: usize = u16::MAX as usize;

/// Longest value quoted back in an error message, in bytes.
const SHOWN_MAX: usize = 64;

/// The unit of the timestamps of a body (`precision=` of the write endpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// `ns`, `us`, `ms` or `s`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "ns" => Some(Precision::Ns),
            "us" => Some(Precision::Us),
            "ms" => Some(Precision::Ms),
            "s" => Some(Precision::S),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }

    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }

    /// A timestamp in this unit as nanoseconds; `None` when that does not fit an i64.
    pub fn to_ns(self, t: i64) -> Option<i64> {
        t.checked_mul(self.nanos())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        Precision::parse(s).ok_or_else(|| format!("invalid precision {s:?} (expected ns, us, ms or s)"))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field's value as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    /// Always finite.
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    /// A string value, raw: the text between the quotes, escapes still in
    /// ([`unescape_string`] resolves them). Parsed, not stored.
    Str(&'a str),
}

impl FieldValue<'_> {
    /// The value as stored: booleans are 1 and 0, strings are not stored (`None`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Int(v) => Some(v as f64),
            FieldValue::UInt(v) => Some(v as f64),
            FieldValue::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            FieldValue::Str(_) => None,
        }
    }

    /// The type's name, as error messages give it.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Int(_) => "integer",
            FieldValue::UInt(_) => "unsigned",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Str(_) => "string",
        }
    }
}

/// One tag of a point, unescaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

/// One field of a point, key unescaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field<'a> {
    pub key: &'a str,
    pub value: FieldValue<'a>,
}

/// Where a name lies: in the line, or (when it had escapes) in the parser's scratch buffer.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    scratch: bool,
}

#[derive(Clone, Copy, Debug)]
struct TagSpan {
    key: Span,
    value: Span,
}

#[derive(Clone, Copy, Debug)]
enum RawValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    /// Byte range of the raw string in the line.
    Str(usize, usize),
}

impl RawValue {
    fn same_type(&self, other: &RawValue) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

#[derive(Clone, Copy, Debug)]
struct FieldSpan {
    key: Span,
    value: RawValue,
    /// Position in the line, so that the last of a repeated key wins.
    order: usize,
}

fn resolve<'a>(line: &'a str, scratch: &'a str, s: Span) -> &'a str {
    let src = if s.scratch { scratch } else { line };
    // Spans are cut at ASCII bytes of the text they index, so `get` always succeeds.
    src.get(s.start..s.end).unwrap_or("")
}

/// A point copied out of the parser's callback (tests, the fuzz target, tools that keep points).
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedPoint {
    pub line: usize,
    pub measurement: String,
    /// Sorted by key.
    pub tags: Vec<(String, String)>,
    /// Sorted by key, one per key.
    pub fields: Vec<(String, OwnedValue)>,
    /// Nanoseconds.
    pub ts: i64,
}

/// A field value of an [`OwnedPoint`]; a float is kept by its bits, so equality is exact.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedValue {
    Float(u64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    /// Raw, escapes still in.
    Str(String),
}

/// A parsed, validated point. Borrows the body and the parser; copy out what outlives the
/// callback.
#[derive(Clone, Copy)]
pub struct Point<'a> {
    line_number: usize,
    line: &'a str,
    /// Where the measurement and tags are written in `line` (escapes still in).
    series: (usize, usize),
    scratch: &'a str,
    measurement: Span,
    tags: &'a [TagSpan],
    fields: &'a [FieldSpan],
    timestamp_ns: i64,
}

impl<'a> Point<'a> {
    /// The point, copied out.
    pub fn to_owned_point(&self) -> OwnedPoint {
        OwnedPoint {
            line: self.line_number(),
            measurement: self.measurement().to_string(),
            tags: self.tags().map(|t| (t.key.to_string(), t.value.to_string())).collect(),
            fields: self
                .fields()
                .map(|f| {
                    let v = match f.value {
                        FieldValue::Float(v) => OwnedValue::Float(v.to_bits()),
                        FieldValue::Int(v) => OwnedValue::Int(v),
                        FieldValue::UInt(v) => OwnedValue::UInt(v),
                        FieldValue::Bool(v) => OwnedValue::Bool(v),
                        FieldValue::Str(s) => OwnedValue::Str(s.to_string()),
                    };
                    (f.key.to_string(), v)
                })
                .collect(),
            ts: self.timestamp_ns(),
        }
    }

    /// The line of the body the point came from, counted from 1.
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// The measurement, unescaped.
    pub fn measurement(&self) -> &'a str {
        resolve(self.line, self.scratch, self.measurement)
    }

    /// The tags, unescaped, sorted by key (byte order); keys are distinct.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = Tag<'a>> + 'a {
        let (line, scratch) = (self.line, self.scratch);
        self.tags.iter().map(move |t| Tag {
            key: resolve(line, scratch, t.key),
            value: resolve(line, scratch, t.value),
        })
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|t| t.key == key).map(|t| t.value)
    }

    /// The fields, keys unescaped, sorted by key; one per key (the last one written).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Field<'a>> + 'a {
        let (line, scratch) = (self.line, self.scratch);
        self.fields.iter().map(move |f| Field {
            key: resolve(line, scratch, f.key),
            value: match f.value {
                RawValue::Float(v) => FieldValue::Float(v),
                RawValue::Int(v) => FieldValue::Int(v),
                RawValue::UInt(v) => FieldValue::UInt(v),
                RawValue::Bool(v) => FieldValue::Bool(v),
                RawValue::Str(a, b) => FieldValue::Str(line.get(a..b).unwrap_or("")),
            },
        })
    }

    /// The measurement and tags as the line writes them (escapes still in): one text always
    /// names one tag set.
    pub fn series_text(&self) -> &'a str {
        self.line.get(self.series.0..self.series.1).unwrap_or("")
    }

    /// The timestamp in nanoseconds since the epoch (the caller's `now_ns` when the line had none).
    pub fn timestamp_ns(&self) -> i64 {
        self.timestamp_ns
    }
}

impl fmt::Debug for Point<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Point")
            .field("line", &self.line_number)
            .field("measurement", &self.measurement())
            .field("tags", &self.tags().collect::<Vec<_>>())
            .field("fields", &self.fields().collect::<Vec<_>>())
            .field("timestamp_ns", &self.timestamp_ns)
            .finish()
    }
}

/// What a parse saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Points given to the callback (one a line).
    pub points: usize,
    /// Numeric (stored) field values in those points.
    pub fields: usize,
    /// String field values in those points: parsed, not stored.
    pub fields_dropped: usize,
    /// Bad lines reported ([`parse_partial`] only; [`parse`] stops at the first).
    pub lines_rejected: usize,
}

/// A malformed or invalid line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// Counted from 1.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for LineError {}

/// Why [`parse`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError<E> {
    /// A malformed or invalid line.
    Line(LineError),
    /// The callback's own error.
    Stopped(E),
}

impl<E: fmt::Display> fmt::Display for ParseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Line(e) => e.fmt(f),
            ParseError::Stopped(e) => e.fmt(f),
        }
    }
}

/// Parses `body`, giving each point to `f` in order; the first bad line stops it with its error
/// (points before it have been given to `f` already: a caller wanting all or nothing buffers).
/// A missing timestamp is `now_ns`.
pub fn parse<E>(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    f: impl FnMut(&Point<'_>) -> Result<(), E>,
) -> Result<Stats, ParseError<E>> {
    Parser::new().parse(body, precision, now_ns, f)
}

/// Parses `body` as an InfluxDB partial write: every valid line goes to `f`, every bad one to
/// `bad`, and parsing goes on with the next line. Only `f`'s error stops it.
pub fn parse_partial<E>(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    f: impl FnMut(&Point<'_>) -> Result<(), E>,
    bad: impl FnMut(LineError),
) -> Result<Stats, E> {
    Parser::new().parse_partial(body, precision, now_ns, f, bad)
}

/// A line parser with buffers reused from line to line and body to body.
#[derive(Debug, Default)]
pub struct Parser {
    /// Unescaped names of the current line.
    scratch: String,
    tags: Vec<TagSpan>,
    fields: Vec<FieldSpan>,
    /// Measurement-and-tags texts seen in valid lines (without escapes) → their spans, relative
    /// to the text's start, tags sorted: a series written again skips tag parsing and checks.
    sections: HashMap<Box<[u8]>, Section, crate::ts::series::FastHash>,
}

/// A cached measurement-and-tags text: its spans relative to its start, tags sorted by key.
#[derive(Debug)]
struct Section {
    measurement: (usize, usize),
    tags: Vec<((usize, usize), (usize, usize))>,
}

/// Sections a parser remembers at most (it forgets them all beyond).
const MAX_SECTIONS: usize = 50_000;

/// A line that parsed to a point; its names are spans into `line` and the parser's buffers.
struct Parsed<'b> {
    line: &'b str,
    series: (usize, usize),
    measurement: Span,
    timestamp_ns: i64,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// [`parse`] with this parser's buffers.
    pub fn parse<E>(
        &mut self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
        mut f: impl FnMut(&Point<'_>) -> Result<(), E>,
    ) -> Result<Stats, ParseError<E>> {
        let mut bad = None;
        let stats = self.run(body, precision, now_ns, &mut f, &mut |e| {
            bad = Some(e);
            false
        });
        match (stats, bad) {
            (Err(e), _) => Err(ParseError::Stopped(e)),
            (Ok(_), Some(e)) => Err(ParseError::Line(e)),
            (Ok(s), None) => Ok(s),
        }
    }

    /// [`parse_partial`] with this parser's buffers.
    pub fn parse_partial<E>(
        &mut self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
        mut f: impl FnMut(&Point<'_>) -> Result<(), E>,
        mut bad: impl FnMut(LineError),
    ) -> Result<Stats, E> {
        self.run(body, precision, now_ns, &mut f, &mut |e| {
            bad(e);
            true
        })
    }

    /// Walks the lines; `bad` says whether to go on after a bad line.
    fn run<E>(
        &mut self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
        f: &mut dyn FnMut(&Point<'_>) -> Result<(), E>,
        bad: &mut dyn FnMut(LineError) -> bool,
    ) -> Result<Stats, E> {
        let mut stats = Stats::default();
        let mut rest = body;
        let mut line_number = 0;
        while !rest.is_empty() {
            line_number += 1;
            let line = match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let (line, next) = rest.split_at(i);
                    rest = &next[1..];
                    line
                }
                None => std::mem::take(&mut rest),
            };
            match self.parse_line(line, precision, now_ns) {
                Ok(None) => {}
                Ok(Some(p)) => {
                    let point = Point {
                        line_number,
                        line: p.line,
                        series: p.series,
                        scratch: &self.scratch,
                        measurement: p.measurement,
                        tags: &self.tags,
                        fields: &self.fields,
                        timestamp_ns: p.timestamp_ns,
                    };
                    f(&point)?;
                    stats.points += 1;
                    let strings = self
                        .fields
                        .iter()
                        .filter(|f| matches!(f.value, RawValue::Str(..)))
                        .count();
                    stats.fields_dropped += strings;
                    stats.fields += self.fields.len() - strings;
                }
                Err(reason) => {
                    stats.lines_rejected += 1;
                    if !bad(LineError {
                        line: line_number,
                        reason,
                    }) {
                        break;
                    }
                }
            }
        }
        Ok(stats)
    }

    /// One line (without its `\n`): `None` for a blank or comment line.
    fn parse_line<'b>(
        &mut self,
        raw: &'b [u8],
        precision: Precision,
        now_ns: i64,
    ) -> Result<Option<Parsed<'b>>, String> {
        self.scratch.clear();
        self.tags.clear();
        self.fields.clear();

        let mut end = raw.len();
        while end > 0 && matches!(raw[end - 1], b' ' | b'\t' | b'\r') {
            end -= 1;
        }
        let mut pos = 0;
        while pos < end && matches!(raw[pos], b' ' | b'\t') {
            pos += 1;
        }
        if pos == end || raw[pos] == b'#' {
            return Ok(None);
        }
        let line = std::str::from_utf8(&raw[..end]).map_err(|e| {
            format!(
                "line is not valid UTF-8 (invalid byte at column {})",
                e.valid_up_to() + 1
            )
        })?;
        let b = line.as_bytes();
        let series_start = pos;

        // Measurement and tags: a text without backslashes seen before in a valid line gives
        // the same spans (sorted, checked) again.
        let section_end = memchr::memchr(b' ', &b[pos..])
            .map(|i| pos + i)
            .filter(|&e| memchr::memchr(b'\\', &b[pos..e]).is_none());
        let at = |(s, e): (usize, usize)| Span {
            start: series_start + s,
            end: series_start + e,
            scratch: false,
        };
        let cached = section_end.and_then(|e| {
            let c = self.sections.get(&b[pos..e])?;
            self.tags.extend(c.tags.iter().map(|(k, v)| TagSpan {
                key: at(*k),
                value: at(*v),
            }));
            Some((e, at(c.measurement)))
        });
        let tags_known = cached.is_some();
        let measurement = match cached {
            Some((e, m)) => {
                pos = e;
                m
            }
            None => self.scan_series(line, &mut pos)?,
        };
        let series = (series_start, pos);

        // Fields.
        while pos < b.len() && b[pos] == b' ' {
            pos += 1;
        }
        if pos == b.len() {
            return Err("missing field set".into());
        }
        loop {
            let key;
            (key, pos) = self.key_and_equals(line, pos, "field")?;
            let (value, end) = field_value(line, pos).map_err(|why| why.message(resolve(line, &self.scratch, key)))?;
            pos = end;
            self.fields.push(FieldSpan {
                key,
                value,
                order: self.fields.len(),
            });
            if pos < b.len() && b[pos] == b',' {
                pos += 1;
            } else {
                break;
            }
        }

        // Timestamp.
        while pos < b.len() && b[pos] == b' ' {
            pos += 1;
        }
        let timestamp_ns = if pos == b.len() {
            now_ns
        } else {
            let t_end = memchr::memchr(b' ', &b[pos..]).map_or(b.len(), |i| pos + i);
            let text = &line[pos..t_end];
            if t_end < b.len() {
                let after = line[t_end..].trim_start_matches(' ');
                return Err(format!("unexpected text {} after the timestamp", shown(after)));
            }
            let t = parse_timestamp(text).ok_or_else(|| format!("invalid timestamp {}", shown(text)))?;
            let t = t.ok_or("timestamp out of range")?;
            precision.to_ns(t).ok_or("timestamp out of range")?
        };

        self.validate(line, measurement, tags_known)?;
        if !tags_known && section_end == Some(series.1) && !measurement.scratch {
            self.remember(b, series, measurement);
        }
        Ok(Some(Parsed {
            line,
            series,
            measurement,
            timestamp_ns,
        }))
    }

    /// Remembers a valid line's measurement-and-tags text (`series`) and its sorted spans.
    fn remember(&mut self, b: &[u8], series: (usize, usize), measurement: Span) {
        if self.tags.iter().any(|t| t.key.scratch || t.value.scratch) {
            return;
        }
        if self.sections.len() >= MAX_SECTIONS {
            self.sections.clear();
        }
        let rel = |s: Span| (s.start - series.0, s.end - series.0);
        let section = Section {
            measurement: rel(measurement),
            tags: self.tags.iter().map(|t| (rel(t.key), rel(t.value))).collect(),
        };
        self.sections.insert(b[series.0..series.1].into(), section);
    }

    /// Scans the measurement and the tags from `pos` (left after them).
    fn scan_series(&mut self, line: &str, pos: &mut usize) -> Result<Span, String> {
        let b = line.as_bytes();
        let (m_end, esc) = scan_name(b, *pos, Ctx::Measurement);
        if m_end == *pos {
            return Err("missing measurement".into());
        }
        let measurement = self.name(line, *pos, m_end, esc, Ctx::Measurement);
        *pos = m_end;
        self.scan_tags(line, pos)?;
        Ok(measurement)
    }

    /// Scans `,key=value` tags from `pos` (left after them).
    fn scan_tags(&mut self, line: &str, pos_out: &mut usize) -> Result<(), String> {
        let b = line.as_bytes();
        let mut pos = *pos_out;
        while pos < b.len() && b[pos] == b',' {
            let key;
            (key, pos) = self.key_and_equals(line, pos + 1, "tag")?;
            let (v_end, esc) = scan_name(b, pos, Ctx::TagValue);
            if v_end == pos {
                let key = resolve(line, &self.scratch, key);
                return Err(format!("missing value for tag {}", shown(key)));
            }
            let value = self.name(line, pos, v_end, esc, Ctx::TagValue);
            if self.tags.len() == MAX_TAGS {
                return Err(format!("more than {MAX_TAGS} tags"));
            }
            self.tags.push(TagSpan { key, value });
            pos = v_end;
        }
        *pos_out = pos;
        Ok(())
    }

    /// Scans a tag's or field's (`what`) `key=` at `pos`: the key's span and the position after
    /// the `=`.
    fn key_and_equals(&mut self, line: &str, pos: usize, what: &str) -> Result<(Span, usize), String> {
        let b = line.as_bytes();
        let (k_end, esc) = scan_name(b, pos, Ctx::Key);
        if k_end == pos {
            return Err(format!("missing {what} key"));
        }
        let key = self.name(line, pos, k_end, esc, Ctx::Key);
        if k_end == b.len() || b[k_end] != b'=' {
            let key = resolve(line, &self.scratch, key);
            return Err(format!("missing \"=\" after {what} key {}", shown(key)));
        }
        Ok((key, k_end + 1))
    }

    /// The span of the name at `start..end` of `line`, unescaped into the scratch buffer when it
    /// has a backslash.
    fn name(&mut self, line: &str, start: usize, end: usize, escaped: bool, ctx: Ctx) -> Span {
        if !escaped {
            return Span {
                start,
                end,
                scratch: false,
            };
        }
        let at = self.scratch.len();
        unescape(&line[start..end], |c| ctx.escapable(c), &mut self.scratch);
        Span {
            start: at,
            end: self.scratch.len(),
            scratch: true,
        }
    }

    /// The write rules; sorts the tags and the fields by key and keeps the last of each field.
    /// `tags_known`: the measurement and tags are a cached section's, checked and sorted.
    fn validate(&mut self, line: &str, measurement: Span, tags_known: bool) -> Result<(), String> {
        let scratch = self.scratch.as_str();
        let name = |s: Span| resolve(line, scratch, s);
        if !tags_known {
            let m = name(measurement);
            if m.starts_with('_') {
                return Err(format!("measurement {} begins with \"_\" (reserved)", shown(m)));
            }
            check_len("measurement", m)?;
            for t in &self.tags {
                check_key("tag", name(t.key))?;
                check_len("tag value", name(t.value))?;
            }
            self.tags.sort_unstable_by(|a, b| name(a.key).cmp(name(b.key)));
            for w in self.tags.windows(2) {
                if name(w[0].key) == name(w[1].key) {
                    return Err(format!("tag key {} repeated", shown(name(w[0].key))));
                }
            }
        }
        for f in &self.fields {
            check_key("field", name(f.key))?;
        }

        self.fields
            .sort_unstable_by(|a, b| name(a.key).cmp(name(b.key)).then(a.order.cmp(&b.order)));
        let n = self.fields.len();
        let mut kept = 0;
        for i in 0..n {
            let f = self.fields[i];
            if i + 1 < n && name(self.fields[i + 1].key) == name(f.key) {
                if !f.value.same_type(&self.fields[i + 1].value) {
                    return Err(format!("field {} repeated with a different type", shown(name(f.key))));
                }
                continue;
            }
            self.fields[kept] = f;
            kept += 1;
        }
        self.fields.truncate(kept);

        // Both sorted: one merge finds a key used by a tag and a field.
        let (mut i, mut j) = (0, 0);
        while i < self.tags.len() && j < self.fields.len() {
            let (t, f) = (name(self.tags[i].key), name(self.fields[j].key));
            match t.cmp(f) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    return Err(format!("field key {} is also a tag key", shown(t)));
                }
            }
        }
        Ok(())
    }
}

/// A name fits the log's u16 length prefix.
fn check_len(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} {} is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            shown(name),
            name.len()
        ));
    }
    Ok(())
}

fn check_key(what: &str, key: &str) -> Result<(), String> {
    if key.len() > MAX_NAME_BYTES {
        return check_len(&format!("{what} key"), key);
    }
    if key.starts_with('_') {
        return Err(format!("{what} key {} begins with \"_\" (reserved)", shown(key)));
    }
    if key == "time" {
        return Err(format!("\"time\" is not a valid {what} key"));
    }
    Ok(())
}

/// The kinds of names, by their delimiters and escapes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// Ends at `,` or space; escapes `\,` `\ ` `\\`.
    Measurement,
    /// Tag and field keys: end at `,` `=` or space; escape `\,` `\=` `\ ` `\\`.
    Key,
    /// Ends at `,` or space (a bare `=` is taken literally); escapes as keys.
    TagValue,
}

impl Ctx {
    fn stops(self, c: u8) -> bool {
        match self {
            Ctx::Key => matches!(c, b',' | b' ' | b'='),
            Ctx::Measurement | Ctx::TagValue => matches!(c, b',' | b' '),
        }
    }

    fn escapable(self, c: u8) -> bool {
        match self {
            Ctx::Measurement => matches!(c, b',' | b' ' | b'\\'),
            Ctx::Key | Ctx::TagValue => matches!(c, b',' | b' ' | b'=' | b'\\'),
        }
    }
}

/// From `pos`, the end of a name (the first unescaped delimiter, or the end) and whether it
/// holds a backslash.
fn scan_name(b: &[u8], mut pos: usize, ctx: Ctx) -> (usize, bool) {
    let mut escaped = false;
    while pos < b.len() {
        let c = b[pos];
        if c == b'\\' {
            escaped = true;
            pos += if pos + 1 < b.len() && ctx.escapable(b[pos + 1]) {
                2
            } else {
                1
            };
        } else if ctx.stops(c) {
            break;
        } else {
            pos += 1;
        }
    }
    (pos, escaped)
}

/// Appends `src` to `out` with each backslash before an `escapable` byte removed.
fn unescape(src: &str, escapable: impl Fn(u8) -> bool, out: &mut String) {
    let b = src.as_bytes();
    let (mut from, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && escapable(b[i + 1]) {
            // Cut at ASCII bytes: always on a char boundary.
            out.push_str(&src[from..i]);
            from = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&src[from..]);
}

/// Appends the value of a raw string field (as [`FieldValue::Str`] gives it) to `out`:
/// `\"` is `"` and `\\` is `\`; any other backslash is itself.
pub fn unescape_string(raw: &str, out: &mut String) {
    unescape(raw, |c| c == b'"' || c == b'\\', out);
}

/// Appends `s` escaped for a string field (what goes between the quotes) to `out`.
pub fn escape_string(s: &str, out: &mut String) {
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Why a field value is bad; the message names the field.
enum BadValue<'a> {
    Missing,
    Invalid(&'a str),
    OutOfRange(&'a str),
    Unterminated,
    TooLong,
    AfterString(&'a str),
}

impl BadValue<'_> {
    fn message(&self, key: &str) -> String {
        let key = shown(key);
        match self {
            BadValue::Missing => format!("missing value for field {key}"),
            BadValue::Invalid(v) => format!("invalid field value {} for field {key}", shown(v)),
            BadValue::OutOfRange(v) => format!("field value {} for field {key} is out of range", shown(v)),
            BadValue::Unterminated => format!("unterminated string value for field {key}"),
            BadValue::TooLong => format!("string value for field {key} is longer than {MAX_STRING_BYTES} bytes"),
            BadValue::AfterString(v) => format!("unexpected text {} after the string value of field {key}", shown(v)),
        }
    }
}

/// The field value at `pos` of `line` and where it ends.
fn field_value(line: &str, pos: usize) -> Result<(RawValue, usize), BadValue<'_>> {
    let b = line.as_bytes();
    if pos < b.len() && b[pos] == b'"' {
        let start = pos + 1;
        let mut i = start;
        let mut escapes = 0;
        loop {
            let Some(at) = memchr::memchr2(b'"', b'\\', &b[i..]) else {
                return Err(BadValue::Unterminated);
            };
            i += at;
            if b[i] == b'"' {
                break;
            }
            if i + 1 < b.len() && matches!(b[i + 1], b'"' | b'\\') {
                escapes += 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        if i - start - escapes > MAX_STRING_BYTES {
            return Err(BadValue::TooLong);
        }
        let end = i + 1;
        if end < b.len() && !matches!(b[end], b',' | b' ') {
            let rest = memchr::memchr2(b',', b' ', &b[end..]).map_or(b.len(), |j| end + j);
            return Err(BadValue::AfterString(&line[end..rest]));
        }
        return Ok((RawValue::Str(start, i), end));
    }
    let end = memchr::memchr2(b',', b' ', &b[pos..]).map_or(b.len(), |j| pos + j);
    let text = &line[pos..end];
    if text.is_empty() {
        return Err(BadValue::Missing);
    }
    Ok((scalar(text)?, end))
}

/// A float, integer, unsigned or boolean value.
fn scalar(text: &str) -> Result<RawValue, BadValue<'_>> {
    let out_of_range = |_| BadValue::OutOfRange(text);
    if let Some(n) = text
        .strip_suffix('i')
        .filter(|n| is_integer(n.strip_prefix('-').unwrap_or(n)))
    {
        return n.parse().map(RawValue::Int).map_err(out_of_range);
    }
    if let Some(n) = text.strip_suffix('u').filter(|n| is_integer(n)) {
        return n.parse().map(RawValue::UInt).map_err(out_of_range);
    }
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => Ok(RawValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => Ok(RawValue::Bool(false)),
        _ if is_float(text) => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(RawValue::Float(v)),
            _ => Err(BadValue::OutOfRange(text)),
        },
        _ => Err(BadValue::Invalid(text)),
    }
}

/// One or more ASCII digits.
fn is_integer(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// `-?(digits[.digits?]|.digits)([eE][+-]?digits)?`
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - from
    };
    let mut mantissa = digits(&mut i);
    if i < b.len() && b[i] == b'.' {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `-?digits`: `None` when malformed, `Some(None)` when it overflows an i64.
fn parse_timestamp(s: &str) -> Option<Option<i64>> {
    if !is_integer(s.strip_prefix('-').unwrap_or(s)) {
        return None;
    }
    Some(s.parse().ok())
}

/// A name or value quoted for an error message, cut to [`SHOWN_MAX`] bytes.
fn shown(s: &str) -> String {
    if s.len() <= SHOWN_MAX {
        return format!("{s:?}");
    }
    let mut cut = SHOWN_MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}…", &s[..cut])
}

/// Appends one line (with its `\n`) for this point, timestamp in nanoseconds, escaping names
/// as [`parse`] reads them. Refuses what line protocol cannot carry: empty names or tag values,
/// a `\n` in a name, a measurement starting with `#` or a tab, no fields, a non-finite float, a
/// raw string value that does not stand between quotes. It does not apply the write rules
/// (`_`, `time`, repeats): the server does. On error `out` is left as it was.
pub fn write_line<'t, 'f>(
    out: &mut Vec<u8>,
    measurement: &str,
    tags: impl IntoIterator<Item = Tag<'t>>,
    fields: impl IntoIterator<Item = Field<'f>>,
    timestamp_ns: Option<i64>,
) -> Result<(), String> {
    let at = out.len();
    let r = write_line_inner(out, measurement, tags, fields, timestamp_ns);
    if r.is_err() {
        out.truncate(at);
    }
    r
}

/// [`write_line`] for a parsed point.
pub fn write_point(out: &mut Vec<u8>, p: &Point<'_>) -> Result<(), String> {
    write_line(out, p.measurement(), p.tags(), p.fields(), Some(p.timestamp_ns()))
}

fn write_line_inner<'t, 'f>(
    out: &mut Vec<u8>,
    measurement: &str,
    tags: impl IntoIterator<Item = Tag<'t>>,
    fields: impl IntoIterator<Item = Field<'f>>,
    timestamp_ns: Option<i64>,
) -> Result<(), String> {
    use std::io::Write as _;
    if measurement.starts_with(['#', '\t']) {
        return Err(format!("measurement {} cannot start a line", shown(measurement)));
    }
    write_name(out, "measurement", measurement, Ctx::Measurement)?;
    for t in tags {
        out.push(b',');
        write_name(out, "tag key", t.key, Ctx::Key)?;
        out.push(b'=');
        write_name(out, "tag value", t.value, Ctx::TagValue)?;
    }
    let mut sep = b' ';
    for f in fields {
        out.push(sep);
        sep = b',';
        write_name(out, "field key", f.key, Ctx::Key)?;
        out.push(b'=');
        // Writes into a Vec<u8> cannot fail.
        let _ = match f.value {
            FieldValue::Float(v) if v.is_finite() => write!(out, "{v:?}"),
            FieldValue::Float(v) => return Err(format!("field {} has the non-finite value {v}", shown(f.key))),
            FieldValue::Int(v) => write!(out, "{v}i"),
            FieldValue::UInt(v) => write!(out, "{v}u"),
            FieldValue::Bool(v) => write!(out, "{v}"),
            FieldValue::Str(raw) => {
                if !is_raw_string(raw) {
                    return Err(format!(
                        "string value of field {} is not a valid escaped string",
                        shown(f.key)
                    ));
                }
                out.push(b'"');
                out.extend_from_slice(raw.as_bytes());
                out.push(b'"');
                Ok(())
            }
        };
    }
    if sep == b' ' {
        return Err("a point needs at least one field".into());
    }
    if let Some(t) = timestamp_ns {
        let _ = write!(out, " {t}");
    }
    out.push(b'\n');
    Ok(())
}

fn write_name(out: &mut Vec<u8>, what: &str, name: &str, ctx: Ctx) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty {what}"));
    }
    if name.contains('\n') {
        return Err(format!("{what} {} holds a newline", shown(name)));
    }
    for &c in name.as_bytes() {
        if ctx.escapable(c) {
            out.push(b'\\');
        }
        out.push(c);
    }
    Ok(())
}

/// Whether `raw` can stand between quotes as it is: no newline, no unescaped `"`, no lone
/// backslash at the end.
fn is_raw_string(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' | b'"' => return false,
            b'\\' if i + 1 < b.len() && matches!(b[i + 1], b'"' | b'\\') => i += 2,
            b'\\' if i + 1 == b.len() => return false,
            _ => i += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = OwnedPoint;

    fn own(p: &Point<'_>) -> Owned {
        p.to_owned_point()
    }

    const NOW: i64 = 1_718_900_000_000_000_000;

    fn all(body: &str, precision: Precision) -> Result<(Vec<Owned>, Stats), LineError> {
        let mut out = Vec::new();
        let r = parse(body.as_bytes(), precision, NOW, |p| {
            out.push(own(p));
            Ok::<(), ()>(())
        });
        match r {
            Ok(s) => Ok((out, s)),
            Err(ParseError::Line(e)) => Err(e),
            Err(ParseError::Stopped(())) => unreachable!(),
        }
    }

    fn ok(body: &str) -> Vec<Owned> {
        match all(body, Precision::Ns) {
            Ok((points, _)) => points,
            Err(e) => panic!("{body:?}: {e}"),
        }
    }

    #[test]
    fn more_tags_than_the_log_holds_are_refused() {
        let tags = |n: usize| (0..n).map(|i| format!(",t{i:05}=v")).collect::<String>();
        assert_eq!(
            ok(&format!("m{} v=1 1", tags(MAX_TAGS))).len(),
            1,
            "the most allowed fit"
        );
        let e = all(&format!("m{} v=1 1", tags(MAX_TAGS + 1)), Precision::Ns).unwrap_err();
        assert_eq!(e.reason, format!("more than {MAX_TAGS} tags"));
    }

    #[test]
    fn names_longer_than_the_log_holds_are_refused() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let fits = "x".repeat(MAX_NAME_BYTES);
        for (body, what) in [
            (format!("{long} v=1 1"), "measurement"),
            (format!("m,{long}=a v=1 1"), "tag key"),
            (format!("m,t={long} v=1 1"), "tag value"),
            (format!("m {long}=1 1"), "field key"),
        ] {
            let e = all(&body, Precision::Ns).unwrap_err();
            assert!(
                e.reason.starts_with(what) && e.reason.contains("65535"),
                "{what}: {}",
                e.reason
            );
        }
        assert_eq!(ok(&format!("m,t={fits} v=1 1")).len(), 1, "the longest allowed fits");
    }

    #[test]
    fn a_tag_section_seen_before_parses_as_the_first_time() {
        // One parser across bodies, as the server keeps it: the second time a section is seen
        // it comes from the cache; every line must give what a fresh parser gives.
        let lines = [
            "cpu,z=1,host=a,b=2 v=1 10",
            "cpu,z=1,host=a,b=2 v=2,w=3i 11",
            "cpu,z=1,host=a,b=2  v=4 12",
            "  cpu,z=1,host=a,b=2 v=5 13",
            "cpu,z=1,host=a,b=2 host=1 14",
            "cpu,z=1,host=a,b=2 v=\"s\",_x=1 15",
            "cpu,z=1,host=a,b=2 time=1 16",
            "cpu,host=a\\ b,z=1 v=6 17",
            "cpu,host=a\\ b,z=1 v=7 18",
            "cpu,z=1,z=2 v=1 19",
            "cpu,z=1,z=2 v=1 20",
        ];
        let mut cached = Parser::new();
        for round in 0..2 {
            for line in lines {
                let mut got = Vec::new();
                let r = cached.parse(line.as_bytes(), Precision::Ns, NOW, |p| {
                    got.push((own(p), p.series_text().to_string()));
                    Ok::<(), ()>(())
                });
                let fresh = all(line, Precision::Ns);
                match (r, fresh) {
                    (Ok(_), Ok((want, _))) => {
                        assert_eq!(
                            got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
                            want,
                            "{line}, round {round}"
                        );
                        assert!(line.trim_start().starts_with(&got[0].1), "{line}: {}", got[0].1);
                    }
                    (Err(ParseError::Line(a)), Err(b)) => assert_eq!(a, b, "{line}, round {round}"),
                    (a, b) => panic!("{line}, round {round}: cached {a:?}, fresh {b:?}"),
                }
            }
        }
        assert!(!cached.sections.is_empty(), "sections were cached");
    }

    fn one(body: &str) -> Owned {
        let mut p = ok(body);
        assert_eq!(p.len(), 1, "{body:?}");
        p.remove(0)
    }

    fn err(body: &str) -> LineError {
        match all(body, Precision::Ns) {
            Ok((p, _)) => panic!("{body:?} parsed: {p:?}"),
            Err(e) => e,
        }
    }

    fn assert_err(body: &str, want: &str) {
        let e = err(body);
        assert!(e.reason.contains(want), "{body:?}: got {:?}, want {want:?}", e.reason);
    }

    fn field(p: &Owned, key: &str) -> OwnedValue {
        p.fields
            .iter()
            .find(|f| f.0 == key)
            .unwrap_or_else(|| panic!("no field {key} in {p:?}"))
            .1
            .clone()
    }

    fn float(v: f64) -> OwnedValue {
        OwnedValue::Float(v.to_bits())
    }

    fn tags(p: &Owned) -> Vec<(&str, &str)> {
        p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn seed_example() {
        let (points, stats) = all(
            "cpu,host=web-01 usage=82.5\nmemory,host=web-01 used=4096,total=8192",
            Precision::Ms,
        )
        .unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].measurement, "cpu");
        assert_eq!(tags(&points[0]), [("host", "web-01")]);
        assert_eq!(points[0].fields, [("usage".to_string(), float(82.5))]);
        assert_eq!(points[0].ts, NOW, "no timestamp: now");
        assert_eq!(points[1].measurement, "memory");
        assert_eq!(points[1].line, 2);
        assert_eq!(field(&points[1], "used"), float(4096.0));
        assert_eq!(field(&points[1], "total"), float(8192.0));
        assert_eq!(
            stats,
            Stats {
                points: 2,
                fields: 3,
                fields_dropped: 0,
                lines_rejected: 0
            }
        );
    }

    #[test]
    fn empty_blank_and_comment_only_bodies() {
        for body in [
            "",
            "\n",
            "\n\n\r\n",
            "   \t \n",
            "# hello\n  # indented\n\t# tab\n#",
            "#cpu value=1",
        ] {
            let (points, stats) = all(body, Precision::Ns).unwrap();
            assert!(points.is_empty(), "{body:?}");
            assert_eq!(stats, Stats::default());
        }
    }

    #[test]
    fn comments_and_blank_lines_keep_line_numbers() {
        let body = "# header\n\ncpu value=1\n  # note\n\ncpu value=2\ncpu value=x\n";
        let e = err(body);
        assert_eq!(e.line, 7);
        let points = ok("# header\n\ncpu value=1\n  # note\n\ncpu value=2\n");
        assert_eq!(points.iter().map(|p| p.line).collect::<Vec<_>>(), [3, 6]);
        // A `#` later in a line is not a comment.
        assert_err("cpu value=1 # note", "unexpected text");
    }

    #[test]
    fn crlf_line_endings() {
        let points = ok("cpu,host=a value=1 10\r\nmem free=2i\r\n\r\n# c\r\ndisk used=3u 30\r\n");
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].ts, 10);
        assert_eq!(field(&points[1], "free"), OwnedValue::Int(2));
        assert_eq!(points[2].ts, 30);
        assert_eq!(points[2].line, 5);
    }

    #[test]
    fn whitespace_around_sections() {
        let want = one("cpu,host=a value=1 10");
        for body in [
            "  cpu,host=a value=1 10",
            "\tcpu,host=a value=1 10",
            "cpu,host=a value=1 10  ",
            "cpu,host=a value=1 10\t\r",
            "cpu,host=a   value=1   10",
        ] {
            let p = one(body);
            assert_eq!(
                (&p.measurement, &p.tags, &p.fields, p.ts),
                (&want.measurement, &want.tags, &want.fields, want.ts),
                "{body:?}"
            );
        }
        assert_eq!(one("cpu value=1   ").ts, NOW);
        // A tab is not a separator inside a line.
        assert_err("cpu\tvalue=1", "missing field set");
    }

    #[test]
    fn measurement_escapes() {
        assert_eq!(one(r"my\ meas\,ure value=1").measurement, "my meas,ure");
        // `=` needs no escape in a measurement, and `\=` there is literal.
        assert_eq!(one(r"a=b value=1").measurement, "a=b");
        assert_eq!(one(r"a\=b value=1").measurement, r"a\=b");
        // A measurement may start with an escaped space.
        assert_eq!(one(r"\ cpu value=1").measurement, " cpu");
    }

    #[test]
    fn backslashes() {
        // The examples of the line protocol reference.
        assert_eq!(one(r"my\Measurement value=1").measurement, r"my\Measurement");
        assert_eq!(one(r"my\\Measurement value=1").measurement, r"my\Measurement");
        assert_eq!(one(r"my\\\Measurement value=1").measurement, r"my\\Measurement");
        assert_eq!(one(r"my\\\\Measurement value=1").measurement, r"my\\Measurement");
        // A name ending with a backslash is written with it doubled.
        let p = one(r"cpu,path=C:\\ value=1");
        assert_eq!(tags(&p), [("path", r"C:\")]);
        let p = one(r"cpu,path=C:\Windows\System32 value=1");
        assert_eq!(tags(&p), [("path", r"C:\Windows\System32")]);
        // A lone backslash at the end of a name escapes the delimiter.
        assert_err(r"cpu,path=C:\ value=1", "missing field set");
    }

    #[test]
    fn tag_and_field_key_escapes() {
        let p = one(r"cpu,ta\ g\=k\,ey=va\ l\=u\,e,plain=a=b fi\ eld\=k\,ey=1,x=2");
        assert_eq!(tags(&p), [("plain", "a=b"), ("ta g=k,ey", "va l=u,e")]);
        assert_eq!(
            p.fields.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            ["fi eld=k,ey", "x"]
        );
    }

    #[test]
    fn unescaped_names_compare_as_the_client_meant() {
        // The same key spelled two ways is one key.
        assert_err(r"cpu,a\ b=1,a\ b=2 value=1", "tag key \"a b\" repeated");
        assert_err(r"cpu,\\x=1,\\x=2 value=1", r#"tag key "\\x" repeated"#);
        let p = one(r"cpu a\=b=1,a\=b=2");
        assert_eq!(p.fields, [("a=b".to_string(), float(2.0))]);
        assert_err(r"cpu,a\,b=1 a\,b=1", "is also a tag key");
    }

    #[test]
    fn string_fields() {
        let body = r#"log,host=a msg="say \"hi\", c:\\dir\x",n=1 5"#;
        let (points, stats) = all(body, Precision::Ns).unwrap();
        let p = &points[0];
        let OwnedValue::Str(raw) = field(p, "msg") else {
            panic!()
        };
        assert_eq!(raw, r#"say \"hi\", c:\\dir\x"#);
        let mut s = String::new();
        unescape_string(&raw, &mut s);
        assert_eq!(s, r#"say "hi", c:\dir\x"#);
        let mut again = String::new();
        escape_string(&s, &mut again);
        assert_eq!(again, r#"say \"hi\", c:\\dir\\x"#);
        assert_eq!(
            stats,
            Stats {
                points: 1,
                fields: 1,
                fields_dropped: 1,
                lines_rejected: 0
            }
        );
        // Spaces, commas and `=` inside quotes; an empty string.
        let p = one(r#"x a="1 2,3=4",b="" 7"#);
        assert_eq!(field(&p, "a"), OwnedValue::Str("1 2,3=4".into()));
        assert_eq!(field(&p, "b"), OwnedValue::Str(String::new()));
        assert_eq!(p.ts, 7);
        // A line of string fields only is a point with nothing stored.
        let (_, stats) = all("x s=\"a\"", Precision::Ns).unwrap();
        assert_eq!((stats.points, stats.fields, stats.fields_dropped), (1, 0, 1));
        assert_err(r#"x s="abc"#, "unterminated string value for field \"s\"");
        assert_err(r#"x s="abc\""#, "unterminated");
        assert_err(r#"x s="abc"d"#, "unexpected text \"d\" after the string value");
        assert_err("x s=abc", "invalid field value \"abc\"");
        // The length limit counts unescaped bytes.
        let at_limit = format!("x s=\"{}\"", "a".repeat(MAX_STRING_BYTES));
        assert_eq!(ok(&at_limit).len(), 1);
        let escaped = format!("x s=\"{}\\\\\"", "a".repeat(MAX_STRING_BYTES - 1));
        assert_eq!(ok(&escaped).len(), 1);
        let over = format!("x s=\"{}\"", "a".repeat(MAX_STRING_BYTES + 1));
        assert_err(&over, "longer than 65536 bytes");
    }

    #[test]
    fn floats() {
        for (text, want) in [
            ("1", 1.0),
            ("1.0", 1.0),
            ("-1.5e3", -1500.0),
            ("1e-3", 0.001),
            ("1E+3", 1000.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("-0", -0.0),
            ("007", 7.0),
            ("1e-400", 0.0),
            ("1.7976931348623157e308", f64::MAX),
        ] {
            assert_eq!(field(&one(&format!("m v={text}")), "v"), float(want), "{text}");
        }
        for bad in [
            "inf", "-Inf", "NaN", "nan", "infinity", "+1", ".", "-", "1e", "1e+", "1.2.3", "0x10", "1_000", "--1",
            "1f", "e5", "12x",
        ] {
            let e = err(&format!("m usage={bad}"));
            assert_eq!(
                e.reason,
                format!("invalid field value {bad:?} for field \"usage\""),
                "{bad}"
            );
        }
        assert_err("m v=1e400", "field value \"1e400\" for field \"v\" is out of range");
        assert_err("m v=-1e400", "out of range");
    }

    #[test]
    fn integers_and_unsigned() {
        let p = one("m a=123i,b=-9223372036854775808i,c=9223372036854775807i,d=0u,e=18446744073709551615u,f=-0i");
        assert_eq!(field(&p, "a"), OwnedValue::Int(123));
        assert_eq!(field(&p, "b"), OwnedValue::Int(i64::MIN));
        assert_eq!(field(&p, "c"), OwnedValue::Int(i64::MAX));
        assert_eq!(field(&p, "d"), OwnedValue::UInt(0));
        assert_eq!(field(&p, "e"), OwnedValue::UInt(u64::MAX));
        assert_eq!(field(&p, "f"), OwnedValue::Int(0));
        assert_err("m a=9223372036854775808i", "out of range");
        assert_err("m a=-9223372036854775809i", "out of range");
        assert_err("m a=18446744073709551616u", "out of range");
        for bad in ["-1u", "1.0i", "+1i", "i", "u", "1e3i", "1iu", "0x1i", "- 1i"] {
            assert_err(&format!("m a={bad}"), "invalid field value");
        }
    }

    #[test]
    fn booleans() {
        for t in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(field(&one(&format!("m b={t}")), "b"), OwnedValue::Bool(true), "{t}");
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(field(&one(&format!("m b={f}")), "b"), OwnedValue::Bool(false), "{f}");
        }
        for bad in ["tRUE", "yes", "on", "1b", "truee", "fals"] {
            assert_err(&format!("m b={bad}"), "invalid field value");
        }
    }

    #[test]
    fn as_f64() {
        assert_eq!(FieldValue::Float(2.5).as_f64(), Some(2.5));
        assert_eq!(FieldValue::Int(-3).as_f64(), Some(-3.0));
        assert_eq!(FieldValue::UInt(u64::MAX).as_f64(), Some(u64::MAX as f64));
        assert_eq!(FieldValue::Bool(true).as_f64(), Some(1.0));
        assert_eq!(FieldValue::Bool(false).as_f64(), Some(0.0));
        assert_eq!(FieldValue::Str("x").as_f64(), None);
    }

    #[test]
    fn timestamps_and_precision() {
        assert_eq!(one("m v=1 1718900000000000000").ts, 1_718_900_000_000_000_000);
        assert_eq!(one("m v=1 -5").ts, -5);
        assert_eq!(one("m v=1 0000000000000000001").ts, 1);
        assert_eq!(one("m v=1").ts, NOW);
        for (precision, want) in [
            (Precision::Ns, 1_718_900_000),
            (Precision::Us, 1_718_900_000_000),
            (Precision::Ms, 1_718_900_000_000_000),
            (Precision::S, 1_718_900_000_000_000_000),
        ] {
            let (p, _) = all("m v=1 1718900000", precision).unwrap();
            assert_eq!(p[0].ts, want, "{precision}");
            // The server's time is already in nanoseconds.
            let (p, _) = all("m v=1", precision).unwrap();
            assert_eq!(p[0].ts, NOW);
        }
        let (p, _) = all("m v=1 -9223372036", Precision::S).unwrap();
        assert_eq!(p[0].ts, -9_223_372_036_000_000_000);
        let e = all("m v=1 9223372037", Precision::S).unwrap_err();
        assert_eq!(e.reason, "timestamp out of range");
        assert_eq!(
            all("m v=1 9223372036854776", Precision::Ms).unwrap_err().reason,
            "timestamp out of range"
        );
        assert_eq!(one("m v=1 9223372036854775807").ts, i64::MAX);
        assert_eq!(one("m v=1 -9223372036854775808").ts, i64::MIN);
        assert_err("m v=1 9223372036854775808", "timestamp out of range");
        assert_err("m v=1 1.5", "invalid timestamp \"1.5\"");
        assert_err("m v=1 +5", "invalid timestamp");
        assert_err("m v=1 12abc", "invalid timestamp");
        assert_err("m v=1 5 6", "unexpected text \"6\" after the timestamp");
    }

    #[test]
    fn precision_names() {
        for p in [Precision::Ns, Precision::Us, Precision::Ms, Precision::S] {
            assert_eq!(Precision::parse(p.as_str()), Some(p));
            assert_eq!(p.as_str().parse::<Precision>(), Ok(p));
        }
        for bad in ["", "n", "u", "m", "h", "NS", "µs"] {
            assert_eq!(Precision::parse(bad), None, "{bad}");
            assert!(bad.parse::<Precision>().is_err());
        }
    }

    #[test]
    fn names_beginning_with_underscore() {
        assert_err("_cpu value=1", "measurement \"_cpu\" begins with \"_\"");
        assert_err("cpu,_host=a value=1", "tag key \"_host\" begins with \"_\"");
        assert_err("cpu _value=1", "field key \"_value\" begins with \"_\"");
        // Tag values may (Telegraf's `instance=_Total`); so may names with `_` inside.
        let p = one("win_cpu,instance=_Total,my_tag=a value_x=1");
        assert_eq!(tags(&p), [("instance", "_Total"), ("my_tag", "a")]);
        // An escaped first byte is not `_`.
        assert_eq!(one(r"\ _cpu value=1").measurement, " _cpu");
    }

    #[test]
    fn time_is_not_a_key() {
        assert_err("cpu,time=1 value=1", "\"time\" is not a valid tag key");
        assert_err("cpu time=1", "\"time\" is not a valid field key");
        assert_err("cpu value=1,time=2", "\"time\" is not a valid field key");
        // Only exactly `time`; a measurement may be called time.
        assert_eq!(one("time,Time=1 times=1,timestamp=2").measurement, "time");
    }

    #[test]
    fn repeated_tags_and_fields() {
        assert_err("cpu,host=a,host=b value=1", "tag key \"host\" repeated");
        assert_err("cpu,host=a,x=1,host=a value=1", "tag key \"host\" repeated");
        assert_err("cpu,host=a host=1", "field key \"host\" is also a tag key");
        assert_err("cpu,host=a value=1,host=\"x\"", "is also a tag key");
        let p = one("cpu value=1,other=5i,value=2,value=3");
        assert_eq!(
            p.fields,
            [
                ("other".to_string(), OwnedValue::Int(5)),
                ("value".to_string(), float(3.0))
            ]
        );
        let (_, stats) = all("cpu value=1,value=2", Precision::Ns).unwrap();
        assert_eq!(stats.fields, 1, "a repeated field is one value");
        assert_err("cpu value=1,value=2i", "field \"value\" repeated with a different type");
        assert_err("cpu value=1i,value=2u", "repeated with a different type");
        assert_err("cpu value=t,x=1,value=\"s\"", "repeated with a different type");
        assert_err("cpu value=1,value=2,value=3i", "repeated with a different type");
    }

    #[test]
    fn tags_come_sorted_by_key() {
        let p = one("cpu,zone=z,host=h,az=a value=1");
        assert_eq!(tags(&p), [("az", "a"), ("host", "h"), ("zone", "z")]);
        let mut parser = Parser::new();
        parser
            .parse(b"cpu,zone=z,host=h value=1", Precision::Ns, 0, |p| {
                assert_eq!(p.tag("host"), Some("h"));
                assert_eq!(p.tag("zone"), Some("z"));
                assert_eq!(p.tag("nope"), None);
                assert_eq!(p.tags().len(), 2);
                assert_eq!(p.fields().len(), 1);
                Ok::<(), ()>(())
            })
            .unwrap();
    }

    #[test]
    fn malformed_lines() {
        assert_err("cpu", "missing field set");
        assert_err("cpu,host=a", "missing field set");
        assert_err("cpu,host=a ", "missing field set");
        assert_err(",host=a value=1", "missing measurement");
        assert_err("cpu, value=1", "missing tag key");
        assert_err("cpu,=a value=1", "missing tag key");
        assert_err("cpu,host value=1", "missing \"=\" after tag key \"host\"");
        assert_err("cpu,host= value=1", "missing value for tag \"host\"");
        assert_err("cpu,host=,x=1 value=1", "missing value for tag \"host\"");
        assert_err("cpu value", "missing \"=\" after field key \"value\"");
        assert_err("cpu value=", "missing value for field \"value\"");
        assert_err("cpu value=,x=1", "missing value for field \"value\"");
        assert_err("cpu =1", "missing field key");
        assert_err("cpu value=1,", "missing field key");
        assert_err("cpu value=1,,x=2", "missing field key");
        assert_err("cpu value=1 2 3", "unexpected text");
        assert_err("cpu va,lue=1", "missing \"=\" after field key \"va\"");
        assert_err("cpu value=1=2", "invalid field value \"1=2\"");
    }

    #[test]
    fn names_must_be_utf8() {
        let mut body = b"cpu,host=".to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(b" value=1");
        let r = parse(&body, Precision::Ns, 0, |_| Ok::<(), ()>(()));
        let Err(ParseError::Line(e)) = r else { panic!("{r:?}") };
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("not valid UTF-8"), "{}", e.reason);
        // Non-ASCII UTF-8 is fine, escapes included.
        let p = one("température,pièce=salle\\ à\\ manger valeur=21.5");
        assert_eq!(p.measurement, "température");
        assert_eq!(tags(&p), [("pièce", "salle à manger")]);
        // A comment need not be UTF-8.
        let r = parse(b"# \xff\ncpu value=1", Precision::Ns, 0, |_| Ok::<(), ()>(()));
        assert_eq!(r.map(|s| s.points), Ok(1));
    }

    #[test]
    fn error_messages_cut_long_values() {
        let long = "9".repeat(1000) + "x";
        let e = err(&format!("m v={long}"));
        assert!(e.reason.len() < 200, "{}", e.reason);
        assert!(e.reason.contains('…'));
    }

    #[test]
    fn telegraf_lines() {
        let body = "\
cpu,cpu=cpu-total,host=web-01 usage_idle=97.29,usage_user=1.9,usage_system=0.7,usage_iowait=0.01 1718900000000000000
disk,device=nvme0n1p2,fstype=ext4,host=web-01,mode=rw,path=/ free=401604235264i,inodes_used=1013429i,used_percent=14.3 1718900000000000000
mem,host=web-01 active=4233183232i,available_percent=81.4,used=2994216960u 1718900000000000000
system,host=web-01 load1=0.31,n_cpus=8i,n_users=2i 1718900000000000000
system,host=web-01 uptime_format=\"12 days,  3:04\" 1718900000000000000
procstat,host=web-01,pattern=nginx,process_name=nginx cmdline=\"nginx: master process /usr/sbin/nginx -g daemon on;\",pid=1234i,running=true 1718900000000000000
win_perf_counters,host=WIN-01,instance=_Total,objectname=Processor Percent_Processor_Time=5.2,Percent_DPC_Time=0 1718900000000000000
win_disk,host=WIN-01,instance=C:,objectname=LogicalDisk Percent_Free_Space=55.1 1718900000000000000
net_response,port=443,protocol=tcp,result=success,server=example.com response_time=0.012,result_code=0i,result_type=\"success\" 1718900000000000000
http_response,method=GET,result=success,server=http://example.com/a\\ b?x\\=1 http_response_code=200i,response_time=0.2 1718900000000000000
";
        let (points, stats) = all(body, Precision::Ns).unwrap();
        assert_eq!(points.len(), 10);
        assert!(points.iter().all(|p| p.ts == 1_718_900_000_000_000_000));
        assert_eq!(tags(&points[1]).last(), Some(&("path", "/")));
        assert_eq!(field(&points[2], "used"), OwnedValue::UInt(2_994_216_960));
        assert_eq!(field(&points[5], "running"), OwnedValue::Bool(true));
        assert_eq!(tags(&points[6])[1], ("instance", "_Total"));
        assert_eq!(tags(&points[9])[2], ("server", "http://example.com/a b?x=1"));
        assert_eq!(stats.fields_dropped, 3);
        assert_eq!(stats.points, 10);
        assert_eq!(stats.fields, 4 + 3 + 3 + 3 + 2 + 2 + 1 + 2 + 2);
    }

    #[test]
    fn partial_write_reports_every_bad_line() {
        let body = "cpu value=1\ncpu value=x\n\nmem,host= used=2\nmem used=3i 30\n_x v=1\ndisk free=4";
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let stats = parse_partial(
            body.as_bytes(),
            Precision::Ns,
            NOW,
            |p| {
                good.push(own(p));
                Ok::<(), ()>(())
            },
            |e| bad.push(e),
        )
        .unwrap();
        assert_eq!(good.iter().map(|p| p.line).collect::<Vec<_>>(), [1, 5, 7]);
        assert_eq!(bad.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4, 6]);
        assert_eq!(bad[0].reason, "invalid field value \"x\" for field \"value\"");
        assert_eq!(bad[1].reason, "missing value for tag \"host\"");
        assert_eq!(
            stats,
            Stats {
                points: 3,
                fields: 3,
                fields_dropped: 0,
                lines_rejected: 3
            }
        );
        assert_eq!(
            bad[0].to_string(),
            "line 2: invalid field value \"x\" for field \"value\""
        );
    }

    #[test]
    fn atomic_parse_stops_at_the_first_bad_line() {
        let mut seen = 0;
        let r = parse(b"cpu value=1\ncpu value=\ncpu value=3\ncpu", Precision::Ns, 0, |_| {
            seen += 1;
            Ok::<(), ()>(())
        });
        assert_eq!(
            r,
            Err(ParseError::Line(LineError {
                line: 2,
                reason: "missing value for field \"value\"".into()
            }))
        );
        assert_eq!(seen, 1);
    }

    #[test]
    fn callback_errors_stop_both_modes() {
        let body = b"cpu value=1\ncpu value=2\ncpu value=3";
        let mut n = 0;
        let r = parse(body, Precision::Ns, 0, |p| {
            n += 1;
            if p.line_number() == 2 {
                Err("full")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(ParseError::Stopped("full")));
        assert_eq!(n, 2);
        let r = parse_partial(body, Precision::Ns, 0, |_| Err("full"), |_| {});
        assert_eq!(r, Err("full"));
    }

    #[test]
    fn parser_reuses_its_buffers() {
        let body = "m,t\\ 1=a\\ b,t2=c f\\=1=1,f2=\"x\"\n".repeat(50);
        let mut parser = Parser::new();
        parser
            .parse(body.as_bytes(), Precision::Ns, 0, |_| Ok::<(), ()>(()))
            .unwrap();
        let caps = (
            parser.scratch.capacity(),
            parser.tags.capacity(),
            parser.fields.capacity(),
        );
        let stats = parser
            .parse(body.as_bytes(), Precision::Ns, 0, |_| Ok::<(), ()>(()))
            .unwrap();
        assert_eq!(stats.points, 50);
        assert_eq!(
            caps,
            (
                parser.scratch.capacity(),
                parser.tags.capacity(),
                parser.fields.capacity()
            )
        );
    }

    #[test]
    fn writer_escapes_and_refuses_what_it_cannot_carry() {
        let mut out = Vec::new();
        write_line(
            &mut out,
            "my meas,ure=\\",
            [Tag {
                key: "k=,\\ ",
                value: "v=, x",
            }],
            [
                Field {
                    key: "f",
                    value: FieldValue::Float(1e300),
                },
                Field {
                    key: "g",
                    value: FieldValue::Str(r#"a \"b\" \\"#),
                },
                Field {
                    key: "h",
                    value: FieldValue::Bool(false),
                },
            ],
            Some(-1),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "my\\ meas\\,ure=\\\\,k\\=\\,\\\\\\ =v\\=\\,\\ x f=1e300,g=\"a \\\"b\\\" \\\\\",h=false -1\n"
        );
        let p = one(std::str::from_utf8(&out).unwrap());
        assert_eq!(p.measurement, "my meas,ure=\\");
        assert_eq!(tags(&p), [("k=,\\ ", "v=, x")]);

        let f1 = [Field {
            key: "v",
            value: FieldValue::Int(1),
        }];
        let no_tags = || std::iter::empty::<Tag<'static>>();
        let mut out = b"keep".to_vec();
        for m in ["", "#m", "\tm", "a\nb"] {
            assert!(write_line(&mut out, m, no_tags(), f1, None).is_err(), "{m:?}");
        }
        assert!(write_line(&mut out, "m", no_tags(), std::iter::empty(), None).is_err());
        assert!(write_line(&mut out, "m", [Tag { key: "k", value: "" }], f1, None).is_err());
        for bad in [f64::NAN, f64::INFINITY] {
            let f = [Field {
                key: "v",
                value: FieldValue::Float(bad),
            }];
            assert!(write_line(&mut out, "m", no_tags(), f, None).is_err());
        }
        for raw in ["a\"b", "a\\", "a\nb"] {
            let f = [Field {
                key: "v",
                value: FieldValue::Str(raw),
            }];
            assert!(write_line(&mut out, "m", no_tags(), f, None).is_err(), "{raw:?}");
        }
        assert_eq!(out, b"keep", "a refused line leaves nothing behind");
    }

    use crate::test_rng::Rng;

    /// A random name with plenty of bytes that need escaping.
    fn name(rng: &mut Rng) -> String {
        const PARTS: &[&str] = &[
            "a", "b", "z", "_", "0", "9", " ", ",", "=", "\\", "\"", "#", "\t", "\r", "é", "日", "t", "time", "-", ".",
            "/",
        ];
        loop {
            let n = 1 + rng.index(6);
            let s: String = (0..n).map(|_| *rng.pick(PARTS)).collect();
            if !s.starts_with('_') && s != "time" {
                return s;
            }
        }
    }

    fn value(rng: &mut Rng) -> OwnedValue {
        match rng.index(5) {
            0 => {
                let v = match rng.index(4) {
                    0 => f64::from_bits(rng.next_u64()),
                    1 => (rng.next_u64() % 100_000) as f64 / 100.0,
                    2 => -0.0,
                    _ => (rng.next_u64() as i64) as f64,
                };
                let v = if v.is_finite() { v } else { 1.5 };
                float(v)
            }
            1 => OwnedValue::Int(rng.next_u64() as i64),
            2 => OwnedValue::UInt(rng.next_u64()),
            3 => OwnedValue::Bool(rng.index(2) == 1),
            _ => {
                let s = if rng.index(4) == 0 { String::new() } else { name(rng) };
                let mut raw = String::new();
                escape_string(&s, &mut raw);
                OwnedValue::Str(raw)
            }
        }
    }

    fn to_field<'a>(key: &'a str, v: &'a OwnedValue) -> Field<'a> {
        let value = match v {
            OwnedValue::Float(b) => FieldValue::Float(f64::from_bits(*b)),
            OwnedValue::Int(v) => FieldValue::Int(*v),
            OwnedValue::UInt(v) => FieldValue::UInt(*v),
            OwnedValue::Bool(v) => FieldValue::Bool(*v),
            OwnedValue::Str(raw) => FieldValue::Str(raw),
        };
        Field { key, value }
    }

    #[test]
    fn random_points_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let mut body = Vec::new();
            let mut want = Vec::new();
            let mut line = 0;
            for _ in 0..1 + rng.index(8) {
                // Comments and blank lines between points.
                match rng.index(6) {
                    0 => {
                        body.extend_from_slice(b"# comment, with = signs\n");
                        line += 1;
                    }
                    1 => {
                        body.extend_from_slice(b"  \r\n");
                        line += 1;
                    }
                    _ => {}
                }
                let mut measurement = name(&mut rng);
                while measurement.starts_with(['#', '\t']) {
                    measurement = name(&mut rng);
                }
                let mut keys = std::collections::BTreeSet::new();
                let mut tags = Vec::new();
                for _ in 0..rng.index(4) {
                    let k = name(&mut rng);
                    if keys.insert(k.clone()) {
                        tags.push((k, name(&mut rng)));
                    }
                }
                let mut fields = Vec::new();
                for _ in 0..1 + rng.index(4) {
                    let k = name(&mut rng);
                    if keys.insert(k.clone()) {
                        fields.push((k, value(&mut rng)));
                    }
                }
                if fields.is_empty() {
                    continue;
                }
                let ts = if rng.index(4) == 0 {
                    None
                } else {
                    Some(rng.next_u64() as i64)
                };
                write_line(
                    &mut body,
                    &measurement,
                    tags.iter().map(|(k, v)| Tag { key: k, value: v }),
                    fields.iter().map(|(k, v)| to_field(k, v)),
                    ts,
                )
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
                if rng.index(3) == 0 {
                    // CRLF instead of LF.
                    body.pop();
                    body.extend_from_slice(b"\r\n");
                }
                line += 1;
                tags.sort();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                want.push(Owned {
                    line,
                    measurement,
                    tags,
                    fields,
                    ts: ts.unwrap_or(NOW),
                });
            }
            let text = String::from_utf8(body).unwrap();
            let (got, stats) = all(&text, Precision::Ns).unwrap_or_else(|e| panic!("round {round}: {e}\n{text}"));
            assert_eq!(got, want, "round {round}:\n{text}");
            assert_eq!(stats.points, want.len());
            // And the writer writes back what it read.
            let mut again = Vec::new();
            parse(text.as_bytes(), Precision::Ns, NOW, |p| write_point(&mut again, p)).unwrap();
            let (got2, _) = all(std::str::from_utf8(&again).unwrap(), Precision::Ns).unwrap();
            assert_eq!(
                got2.iter()
                    .map(|p| (&p.measurement, &p.tags, &p.fields, p.ts))
                    .collect::<Vec<_>>(),
                want.iter()
                    .map(|p| (&p.measurement, &p.tags, &p.fields, p.ts))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// `cargo test --release --lib ts::line::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let mut body = String::new();
        for i in 0..200_000 {
            body.push_str(&format!(
                "cpu,cpu=cpu{},host=web-{:02},region=eu-west usage_idle={}.5,usage_user=1.25,usage_system=5i {}\n",
                i % 8,
                i % 50,
                i % 100,
                1_718_900_000_000_000_000i64 + i
            ));
        }
        let mut parser = Parser::new();
        let started = crate::clock::Stopwatch::start();
        let mut sum = 0.0;
        let stats = parser
            .parse(body.as_bytes(), Precision::Ns, 0, |p| {
                sum += p.fields().filter_map(|f| f.value.as_f64()).sum::<f64>();
                Ok::<(), ()>(())
            })
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{} points, {} fields in {:.3}s: {:.0} points/s, {:.1} MB/s (checksum {sum})",
            stats.points,
            stats.fields,
            secs,
            stats.points as f64 / secs,
            body.len() as f64 / secs / 1e6
        );
    }
}
