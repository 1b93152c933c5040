//! Turns a line-protocol body (or a piece of one) into the [`Part`]s of the shards that own its
//! series: each line is parsed and validated, its line key built (`series::line_key`), and the
//! line goes to the shard of partition `line_key_hash(key) % partitions` (`format-spec/ts.md`).
//! Pure and `Send`-friendly, so any shard can parse a piece of a large body.
//!
//! Invariant: a line's points go whole to one part; a part holds at most
//! [`MAX_PART_POINTS`] points.

use std::cell::RefCell;
use std::collections::HashMap;

use super::exec::{Part, MAX_PART_POINTS};
use super::line::{LineError, ParseError, Parser, Point, Precision};
use super::series::{line_key, line_key_hash, FastHash};
use crate::partition::Partitioner;

/// What parsing a body (or a piece of it) gave.
#[derive(Debug, Default)]
pub struct Parsed {
    /// (owner shard, part), several parts per shard when one would be too large.
    pub parts: Vec<(usize, Part)>,
    /// Lines parsed into points.
    pub points: usize,
    /// String field values (parsed, not stored).
    pub fields_dropped: usize,
    /// Partial mode: lines rejected, and the first of them (at most `max_reported`).
    pub rejected: usize,
    pub bad_lines: Vec<LineError>,
}

/// Most bad lines a partial write reports.
pub const MAX_REPORTED_LINES: usize = 10;

/// Line keys and owners remembered by measurement-and-tags text, for one partition table.
#[derive(Default)]
struct Owners {
    table: (u32, u32),
    by_text: HashMap<Box<[u8]>, Owned, FastHash>,
}

/// A line key and its owner shard.
type Owned = (Box<[u8]>, usize);

/// Texts remembered at most (all are forgotten beyond).
const MAX_OWNERS: usize = 50_000;

thread_local! {
    /// Each shard thread's parser (with its cache of tag sections) and owner cache, kept from
    /// body to body.
    static PARSING: RefCell<(Parser, Owners)> = RefCell::new((Parser::new(), Owners::default()));
}

struct Split<'p> {
    partitioner: &'p Partitioner,
    owners: &'p mut Owners,
    /// The open part of every shard, and the parts already full.
    open: Vec<Part>,
    done: Vec<(usize, Part)>,
    key: Vec<u8>,
}

impl Split<'_> {
    fn add(&mut self, p: &Point<'_>) {
        let stored = p.fields().filter(|f| f.value.as_f64().is_some()).count();
        if stored == 0 {
            return;
        }
        let text = p.series_text().as_bytes();
        let (key, owner) = match self.owners.by_text.get(text) {
            Some((key, owner)) => (&key[..], *owner),
            None => {
                self.key.clear();
                line_key(&mut self.key, p.measurement(), p.tags().map(|t| (t.key, t.value)));
                let partition = (line_key_hash(&self.key) % u64::from(self.partitioner.partitions())) as u32;
                let owner = self.partitioner.shard_of_partition(partition);
                if self.owners.by_text.len() >= MAX_OWNERS {
                    self.owners.by_text.clear();
                }
                self.owners
                    .by_text
                    .insert(text.into(), (self.key.as_slice().into(), owner));
                (&self.key[..], owner)
            }
        };
        if self.open[owner].points + stored > MAX_PART_POINTS {
            let full = std::mem::take(&mut self.open[owner]);
            self.done.push((owner, full));
        }
        let fields = p.fields().filter_map(|f| f.value.as_f64().map(|v| (f.key, v)));
        self.open[owner].push(key, fields, p.timestamp_ns().div_euclid(1_000_000));
    }
}

/// How a body (or a piece of it) is read.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// The number, in the whole body, of the piece's first line (1 for a whole body).
    pub first_line: usize,
    pub precision: Precision,
    /// The server's time, for lines without a timestamp.
    pub now_ns: i64,
    /// InfluxDB's partial write: skip bad lines (and list them) instead of stopping.
    pub partial: bool,
}

/// A piece of a shared body, for another shard to parse.
#[derive(Clone, Debug)]
pub struct Piece {
    pub body: std::sync::Arc<[u8]>,
    pub range: std::ops::Range<usize>,
    pub reading: Reading,
}

impl Piece {
    pub fn parse(&self, partitioner: &Partitioner) -> Result<Parsed, LineError> {
        parse(
            partitioner,
            self.body.get(self.range.clone()).unwrap_or(&[]),
            self.reading,
        )
    }
}

/// Parses `body` into parts. Strict mode stops at the first bad line; partial mode (InfluxDB's)
/// skips bad lines and lists them. Line numbers count from `reading.first_line`.
pub fn parse(partitioner: &Partitioner, body: &[u8], reading: Reading) -> Result<Parsed, LineError> {
    PARSING.with_borrow_mut(|(parser, owners)| parse_with(parser, owners, partitioner, body, reading))
}

fn parse_with(
    parser: &mut Parser,
    owners: &mut Owners,
    partitioner: &Partitioner,
    body: &[u8],
    reading: Reading,
) -> Result<Parsed, LineError> {
    let Reading {
        first_line,
        precision,
        now_ns,
        partial,
    } = reading;
    let shards = partitioner.shards() as usize;
    let table = (partitioner.partitions(), partitioner.shards());
    if owners.table != table {
        *owners = Owners {
            table,
            ..Owners::default()
        };
    }
    let mut split = Split {
        partitioner,
        owners,
        open: (0..shards).map(|_| Part::default()).collect(),
        done: Vec::new(),
        key: Vec::with_capacity(256),
    };
    let renumber = |mut e: LineError| {
        e.line += first_line - 1;
        e
    };
    let mut out = Parsed::default();
    let stats = if partial {
        let mut bad = Vec::new();
        let mut rejected = 0;
        let stats = parser.parse_partial(
            body,
            precision,
            now_ns,
            |p| {
                split.add(p);
                Ok::<(), std::convert::Infallible>(())
            },
            |e| {
                rejected += 1;
                if bad.len() < MAX_REPORTED_LINES {
                    bad.push(renumber(e));
                }
            },
        );
        let Ok(stats) = stats;
        out.rejected = rejected;
        out.bad_lines = bad;
        stats
    } else {
        let add = |p: &Point<'_>| {
            split.add(p);
            Ok::<(), std::convert::Infallible>(())
        };
        match parser.parse(body, precision, now_ns, add) {
            Ok(s) => s,
            Err(ParseError::Line(e)) => return Err(renumber(e)),
            Err(ParseError::Stopped(never)) => match never {},
        }
    };
    out.points = stats.points;
    out.fields_dropped = stats.fields_dropped;
    out.parts = split.done;
    for (s, p) in split.open.into_iter().enumerate() {
        if !p.is_empty() {
            out.parts.push((s, p));
        }
    }
    Ok(out)
}

/// Joins the parts of several pieces: one part per shard while it stays within
/// [`MAX_PART_POINTS`], in piece order (so a series' points keep the body's order).
pub fn join(pieces: Vec<Parsed>) -> Parsed {
    let mut out = Parsed::default();
    let mut open: Vec<Option<Part>> = Vec::new();
    for piece in pieces {
        out.points += piece.points;
        out.fields_dropped += piece.fields_dropped;
        out.rejected += piece.rejected;
        for e in piece.bad_lines {
            if out.bad_lines.len() < MAX_REPORTED_LINES {
                out.bad_lines.push(e);
            }
        }
        for (s, part) in piece.parts {
            if open.len() <= s {
                open.resize_with(s + 1, || None);
            }
            match &mut open[s] {
                Some(o) if o.points + part.points <= MAX_PART_POINTS => o.append(&part),
                slot => {
                    if let Some(full) = slot.replace(part) {
                        out.parts.push((s, full));
                    }
                }
            }
        }
    }
    for (s, p) in open.into_iter().enumerate() {
        if let Some(p) = p {
            out.parts.push((s, p));
        }
    }
    out
}

/// Where to cut `body` into `n` pieces of whole lines: (start, end, first line number).
pub fn pieces(body: &[u8], n: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    let mut line = 1;
    for i in 1..=n {
        let end = if i == n {
            body.len()
        } else {
            // From the byte before the target, so a target at a line's start cuts there.
            let target = (body.len() * i / n).saturating_sub(1).max(start);
            match memchr::memchr(b'\n', &body[target..]) {
                Some(j) => target + j + 1,
                None => body.len(),
            }
        };
        if end > start {
            out.push((start, end, line));
            line += memchr::memchr_iter(b'\n', &body[start..end]).count();
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_whole_lines_and_know_their_first_line() {
        let body = b"a v=1 1\nb v=2 2\nc v=3 3\nd v=4 4\n";
        let p = pieces(body, 2);
        assert_eq!(p, [(0, 16, 1), (16, 32, 3)]);
        assert_eq!(pieces(b"no newline", 3), [(0, 10, 1)]);
        assert_eq!(pieces(b"", 2), []);
    }

    #[test]
    fn a_body_parsed_in_pieces_gives_the_parts_and_errors_of_the_whole() {
        let partitioner = Partitioner::new(64, 2);
        let mut body = String::new();
        for h in 0..50 {
            body.push_str(&format!("cpu,host=h{h} a=1,b=2,s=\"x\" {h}\n"));
        }
        let reading = |first_line| Reading {
            first_line,
            precision: Precision::Ms,
            now_ns: 0,
            partial: false,
        };
        let whole = parse(&partitioner, body.as_bytes(), reading(1)).unwrap();
        let joined = join(
            pieces(body.as_bytes(), 3)
                .into_iter()
                .map(|(a, b, l)| parse(&partitioner, &body.as_bytes()[a..b], reading(l)).unwrap())
                .collect(),
        );
        assert_eq!((joined.points, joined.fields_dropped), (50, 50));
        let shape = |p: &Parsed| {
            let mut v: Vec<(usize, usize)> = p.parts.iter().map(|(s, p)| (*s, p.points)).collect();
            v.sort();
            v
        };
        assert_eq!(shape(&joined), shape(&whole));
        assert_eq!(shape(&whole).len(), 2, "50 hosts reach both shards");
        body.push_str("bad line\n");
        let (a, b, l) = *pieces(body.as_bytes(), 3).last().unwrap();
        let e = parse(&partitioner, &body.as_bytes()[a..b], reading(l)).unwrap_err();
        assert_eq!(e.line, 51, "numbered in the whole body");
    }
}
