//! Turns a line-protocol body (or a piece of one) into the [`Part`]s of the partitions that own
//! its series: each line is parsed and validated, its line key built (`series::line_key`), and
//! the line goes to partition `line_key_hash(key) % partitions` (`format-spec/ts.md`). Pure and
//! `Send`-friendly, so any shard can parse a piece of a large body.
//!
//! Invariant: a line's points go whole to one part; a part holds at most
//! [`MAX_PART_POINTS`] points.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::line::{LineError, ParseError, Parser, Point, Precision};
use super::part::{Part, MAX_PART_POINTS};
use super::series::{line_key, line_key_partition, FastHash};
use crate::partition::Partitioner;

/// What parsing a body (or a piece of it) gave.
#[derive(Debug, Default)]
pub struct Parsed {
    /// (partition, part), several parts per partition when one would be too large; in
    /// partition order, a partition's parts in the body's order.
    pub parts: Vec<(u32, Part)>,
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

/// A line key and its partition.
type Owned = (Box<[u8]>, u32);

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
    /// The open part of every partition with lines, and the parts already full.
    open: BTreeMap<u32, Part>,
    done: Vec<(u32, Part)>,
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
                let partition = line_key_partition(&self.key, self.partitioner);
                if self.owners.by_text.len() >= MAX_OWNERS {
                    self.owners.by_text.clear();
                }
                self.owners
                    .by_text
                    .insert(text.into(), (self.key.as_slice().into(), partition));
                (&self.key[..], partition)
            }
        };
        let open = self.open.entry(owner).or_default();
        if open.points + stored > MAX_PART_POINTS {
            let full = std::mem::take(open);
            self.done.push((owner, full));
        }
        let fields = p.fields().filter_map(|f| f.value.as_f64().map(|v| (f.key, v)));
        open.push(key, fields, p.timestamp_ns().div_euclid(1_000_000));
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
        open: BTreeMap::new(),
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
    out.parts.extend(split.open.into_iter().filter(|(_, p)| !p.is_empty()));
    out.parts.sort_by_key(|(p, _)| *p);
    Ok(out)
}

/// Joins the parts of several pieces: one part per partition while it stays within
/// [`MAX_PART_POINTS`], in piece order (so a series' points keep the body's order).
pub fn join(pieces: Vec<Parsed>) -> Parsed {
    let mut out = Parsed::default();
    let mut open: BTreeMap<u32, Part> = BTreeMap::new();
    for piece in pieces {
        out.points += piece.points;
        out.fields_dropped += piece.fields_dropped;
        out.rejected += piece.rejected;
        for e in piece.bad_lines {
            if out.bad_lines.len() < MAX_REPORTED_LINES {
                out.bad_lines.push(e);
            }
        }
        for (p, part) in piece.parts {
            match open.get_mut(&p) {
                Some(o) if o.points + part.points <= MAX_PART_POINTS => o.append(&part),
                _ => {
                    if let Some(full) = open.insert(p, part) {
                        out.parts.push((p, full));
                    }
                }
            }
        }
    }
    out.parts.extend(open);
    out.parts.sort_by_key(|(p, _)| *p);
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
            let mut v: Vec<(u32, usize)> = p.parts.iter().map(|(s, p)| (*s, p.points)).collect();
            v.sort();
            v
        };
        assert_eq!(shape(&joined), shape(&whole));
        assert!(shape(&whole).len() >= 20, "50 hosts spread over the partitions");
        body.push_str("bad line\n");
        let (a, b, l) = *pieces(body.as_bytes(), 3).last().unwrap();
        let e = parse(&partitioner, &body.as_bytes()[a..b], reading(l)).unwrap_err();
        assert_eq!(e.line, 51, "numbered in the whole body");
    }
}
