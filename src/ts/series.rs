//! The series one partition owns, as a state machine on its log (`format-spec/ts.md`): the series
//! registry (ids by canonical key), the tag index, and per series its head, its late head and
//! its chunks; multi-part writes held until their commit; which `TS_POINTS` entries still hold
//! points not yet in a chunk (the rest are dead bytes for compaction).
//!
//! Invariants:
//! * Series ids are 1, 2, 3, ... in the order the partition's entries define them; a canonical
//!   key (namespace, measurement, tags sorted by key, field) has one id.
//! * A head is sorted by timestamp with no timestamp twice (a repeated one keeps the value
//!   written last). Every point in a series' head is after `sealed_until`, the last timestamp of
//!   its newest in-order chunk; points at or before it are in the late head.
//! * Points of a multi-part write stay out of the heads until the write is committed
//!   (`TS_COMMIT`) and are dropped by `TS_ABORT`.
//! * State changes in log order: the live shard applies an entry when it appends it, replay when
//!   it reads it, so a chunk always finds the head it was cut from. Readers see only committed
//!   points: every head point carries its entry's LSN, and a chunk not yet durable keeps its
//!   points in memory (with their LSNs) until its place is known.
//! * Time comes only from entries: a head's age counts from the `at_ms` of the `TS_POINTS` that
//!   started it, and the partition's clock (the latest `at_ms` applied) decides when a committed
//!   batch is forgotten.
//! * A chunk is known by the LSN of its `TS_CHUNK` entry, also once compaction has moved it to a
//!   `RELOCATED` copy (`compact.rs`): then it is read from the copy's place, with the copy's LSN.
//!   Every placed chunk is also found by its place (compaction asks by place).
//! * A batch whose parts this partition committed is remembered with its parts for the recovery
//!   exchange, until the partition's clock is [`COMMITTED_KEEP_MS`] past the batch's arrival.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::entry::{Chunk, Dropped, NewSeries, Points, CHUNK_IN_ORDER, CHUNK_LATE};
use crate::log::places::SegmentTable;
use crate::log::Position;

mod compact;
mod machine;
mod snapshot;

pub use machine::{TsAnswer, TsCommand, TsPending};

/// Points a head holds before it is cut into a chunk.
pub const HEAD_POINTS: usize = 1024;
/// A head older than this (since its first point arrived) is cut by the shard timer.
pub const HEAD_AGE_MS: u64 = 10 * 60 * 1000;
/// Log bytes one not-yet-chunked point takes in a `TS_POINTS` entry (id, time, value).
pub const POINT_BYTES: u64 = 20;

/// One point of a head, with the LSN of the entry that wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadPoint {
    pub ts: i64,
    pub v: f64,
    pub lsn: u64,
}

/// A series' newest points, sorted by timestamp, one value per timestamp.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Head {
    points: Vec<HeadPoint>,
    /// When the write that started the current head arrived (the `at_ms` of its entry): the
    /// age timer's.
    since_ms: u64,
}

impl Head {
    /// Adds a point of a write that arrived at `at_ms`; a timestamp already there takes the new
    /// value. Returns the LSN of the point replaced.
    pub fn insert(&mut self, ts: i64, v: f64, lsn: u64, at_ms: u64) -> Option<u64> {
        if self.points.is_empty() {
            self.since_ms = at_ms;
        }
        // Points mostly arrive in order: look at the end first.
        if self.points.last().is_none_or(|p| p.ts < ts) {
            self.points.push(HeadPoint { ts, v, lsn });
            return None;
        }
        match self.points.binary_search_by_key(&ts, |p| p.ts) {
            Ok(i) => {
                let old = self.points[i].lsn;
                self.points[i] = HeadPoint { ts, v, lsn };
                Some(old)
            }
            Err(i) => {
                self.points.insert(i, HeadPoint { ts, v, lsn });
                None
            }
        }
    }

    pub fn points(&self) -> &[HeadPoint] {
        &self.points
    }

    /// (timestamp, value) pairs, for encoding and tests.
    pub fn pairs(&self) -> Vec<(i64, f64)> {
        self.points.iter().map(|p| (p.ts, p.v)).collect()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }
}

/// Where a chunk's points are.
#[derive(Debug, Clone)]
pub enum Stored {
    /// In the log at `loc` (`places.rs`): durable, read from the mapped segment. `lsn` is the
    /// LSN of the entry there: the chunk's own `TS_CHUNK` (the chunk's `lsn`), or a `RELOCATED`
    /// copy of it that compaction wrote (`compact.rs`); a read checks it.
    Placed { loc: u64, lsn: u64 },
    /// Appended, not yet durable: its points stay here until it is settled at its place.
    Cut(Vec<HeadPoint>),
}

/// One of a series' chunks.
#[derive(Debug, Clone)]
pub struct ChunkRef {
    /// The LSN of its `TS_CHUNK` entry: the chunk's identity (a series' chunks are in this
    /// order; `TS_DROP` names it), kept when compaction moves the chunk to a copy.
    pub lsn: u64,
    pub kind: u8,
    pub first_ts: i64,
    pub last_ts: i64,
    pub count: u16,
    /// Stored bytes of the entry it is read from (its `TS_CHUNK`, or the copy it was moved to).
    pub bytes: u32,
    pub stored: Stored,
}

/// One series: measurement + tag set + field, in a namespace.
#[derive(Debug)]
pub struct Series {
    /// Interned: every series of a namespace shares one (compared by pointer on the hot path).
    pub namespace: std::rc::Rc<str>,
    pub measurement: Box<str>,
    pub tags: Vec<(Box<str>, Box<str>)>,
    pub field: Box<str>,
    pub head: Head,
    pub late: Head,
    /// The last timestamp of the newest in-order chunk.
    pub sealed_until: Option<i64>,
    /// In LSN order.
    pub chunks: Vec<ChunkRef>,
}

impl Series {
    /// Points stored (chunks and heads; a timestamp written twice may count twice).
    pub fn samples(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.count)).sum::<u64>() + (self.head.len() + self.late.len()) as u64
    }

    /// Log bytes its points take now: chunk entries plus not-yet-chunked points.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.bytes)).sum::<u64>()
            + (self.head.len() + self.late.len()) as u64 * POINT_BYTES
    }
}

/// Where a `TS_POINTS` entry is.
#[derive(Debug, Clone, Copy)]
pub enum EntryAt {
    Placed(Position),
    /// Not durable yet.
    Pending,
}

/// A `TS_POINTS` entry with points not yet in a chunk.
#[derive(Debug)]
struct LiveEntry {
    at: EntryAt,
    bytes: u64,
    remaining: u32,
}

/// How many parts of a multi-part write this partition committed, remembered for the recovery
/// exchange until the partition's clock is [`COMMITTED_KEEP_MS`] past the write's arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Committed {
    parts: u16,
    /// When the write arrived (its parts' `at_ms`).
    at_ms: u64,
}

/// A batch this partition committed is remembered this long (by the partition's clock: the
/// latest `at_ms` applied) after its write arrived: the other participants commit theirs within
/// seconds, so a crash later finds none of its parts pending elsewhere.
pub const COMMITTED_KEEP_MS: u64 = 10 * 60 * 1000;

/// A multi-part write's parts in this partition, waiting for its commit.
#[derive(Debug)]
struct PendingPart {
    namespace: Box<str>,
    /// Parts the whole write has.
    part_count: u16,
    /// When the write arrived.
    at_ms: u64,
    /// (series, timestamp, value, LSN of the part's entry)
    points: Vec<(u32, i64, f64, u64)>,
    /// Parts held here.
    parts: u16,
}

/// The fields of one line key prefix, with their series ids.
type LineFields = Vec<(Box<str>, u32)>;

/// (namespace, measurement, tag key, tag value) of the tag index.
type TagKey = (Box<str>, Box<str>, Box<str>, Box<str>);

/// Appends a length-prefixed component to a canonical key.
fn put_part(k: &mut Vec<u8>, s: &str) {
    k.extend_from_slice(&(s.len() as u32).to_le_bytes());
    k.extend_from_slice(s.as_bytes());
}

/// A fast hash for the registry's keys (multiply-rotate over 8-byte words; the keys are the
/// server's own, so no flooding defence is needed beyond what the limits give).
#[derive(Clone, Copy, Default)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0x243f_6a88_85a3_08d3)
    }
}

pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w) ^ (rest.len() as u64) << 56).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        // Final avalanche, so the table's low bits depend on every input bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// The *line key* of a line's series: measurement and tags sorted by key, unescaped, each
/// length-prefixed (`u32 len` + bytes; the tag count before the tags), so no two tag sets share
/// one. Every field of the line is a series under this key. Written into `k` (appended).
pub fn line_key<'t>(k: &mut Vec<u8>, measurement: &str, tags: impl ExactSizeIterator<Item = (&'t str, &'t str)>) {
    put_part(k, measurement);
    k.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    for (tk, tv) in tags {
        put_part(k, tk);
        put_part(k, tv);
    }
}

/// The measurement and tags of a line key ([`line_key`]); `None` if it is not one.
pub fn decode_line_key(k: &[u8]) -> Option<(&str, Vec<(&str, &str)>)> {
    fn int(k: &[u8], at: &mut usize) -> Option<usize> {
        let v = u32::from_le_bytes(k.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4;
        Some(v as usize)
    }
    fn text<'k>(k: &'k [u8], at: &mut usize) -> Option<&'k str> {
        let n = int(k, at)?;
        let s = std::str::from_utf8(k.get(*at..*at + n)?).ok()?;
        *at += n;
        Some(s)
    }
    let mut at = 0;
    let m = text(k, &mut at)?;
    let n = int(k, &mut at)?;
    let mut tags = Vec::with_capacity(n.min(k.len() / 8));
    for _ in 0..n {
        let tk = text(k, &mut at)?;
        let tv = text(k, &mut at)?;
        tags.push((tk, tv));
    }
    (at == k.len()).then_some((m, tags))
}

/// The hash that places a line's series in a partition: [`FastHash`] over its line key
/// (`format-spec/ts.md`, "Series and where they live").
pub fn line_key_hash(k: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = FastHash.build_hasher();
    h.write(k);
    h.finish()
}

/// The partition of the series of line key `k`.
pub fn line_key_partition(k: &[u8], partitioner: &crate::partition::Partitioner) -> u32 {
    (line_key_hash(k) % u64::from(partitioner.partitions())) as u32
}

/// What one measurement holds, for listings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasurementStats {
    pub series: u64,
    pub fields: Vec<String>,
    pub samples: u64,
    pub bytes: u64,
}

/// Every series of a partition.
#[derive(Debug, Default)]
pub struct SeriesStore {
    series: Vec<Series>,
    /// Namespace → line key ([`line_key`]) → its series' fields and ids: one lookup per line,
    /// not one per field.
    by_line: HashMap<Box<str>, HashMap<Vec<u8>, LineFields, FastHash>>,
    /// (namespace, measurement, tag key, tag value) → ids, ascending.
    tag_index: BTreeMap<TagKey, Vec<u32>>,
    /// (namespace, measurement) → ids, ascending.
    measurements: BTreeMap<(Box<str>, Box<str>), Vec<u32>>,
    /// (namespace, measurement) → retention max age in ms.
    retention: BTreeMap<(Box<str>, Box<str>), u64>,
    pending: HashMap<u64, PendingPart>,
    /// Batches whose parts this partition committed, with how many parts: recovery's answer to
    /// "does this partition hold its parts of batch b?" once they are no longer pending.
    committed: HashMap<u64, Committed>,
    /// (arrival, batch) of every committed batch, for forgetting them in time order.
    committed_order: BinaryHeap<Reverse<(u64, u64)>>,
    /// The partition's clock: the latest `at_ms` of a `TS_POINTS` applied.
    clock_ms: u64,
    entries: HashMap<u64, LiveEntry>,
    /// Entries (by LSN) no longer needed before their place was known, with their bytes: dead
    /// at their place once settled.
    dead_in_flight: Vec<(u64, u64)>,
    /// Every placed chunk by its place (`loc`): (series, chunk LSN). Derived (rebuilt on
    /// restore): compaction asks about each entry of a segment by its place.
    chunk_at: HashMap<u64, (u32, u64), FastHash>,
    pub segments: SegmentTable,
    /// Namespaces of the series, interned.
    namespaces: HashMap<Box<str>, std::rc::Rc<str>>,
    dead_bytes: u64,
    /// Every stored point (chunks and heads), for metrics.
    samples: u64,
}

/// The result of applying points: which heads are now full.
pub type FullHeads = Vec<u32>;

impl SeriesStore {
    /// The id the next new series gets.
    pub fn next_id(&self) -> u32 {
        self.series.len() as u32 + 1
    }

    /// The line keys of a namespace, for looking up many lines.
    pub fn lines_of(&self, ns: &str) -> Option<&HashMap<Vec<u8>, LineFields, FastHash>> {
        self.by_line.get(ns)
    }

    /// The fields (and their series ids) of a line key ([`line_key`]) in a namespace.
    pub fn line_fields(&self, ns: &str, key: &[u8]) -> &[(Box<str>, u32)] {
        self.by_line.get(ns).and_then(|m| m.get(key)).map_or(&[], Vec::as_slice)
    }

    /// The id of the series of a line key and a field.
    pub fn lookup(&self, ns: &str, key: &[u8], field: &str) -> Option<u32> {
        self.line_fields(ns, key)
            .iter()
            .find(|(f, _)| **f == *field)
            .map(|(_, id)| *id)
    }

    pub fn get(&self, id: u32) -> Option<&Series> {
        self.series.get((id as usize).checked_sub(1)?)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Series> {
        self.series.get_mut((id as usize).checked_sub(1)?)
    }

    /// Series of a measurement whose tags equal every (key, value) given, ascending.
    pub fn select(&self, ns: &str, measurement: &str, equal: &[(&str, &str)]) -> Vec<u32> {
        let key = (Box::from(ns), Box::from(measurement));
        let all = self.measurements.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let mut lists: Vec<&[u32]> = equal
            .iter()
            .map(|(k, v)| {
                let t = (Box::from(ns), Box::from(measurement), Box::from(*k), Box::from(*v));
                self.tag_index.get(&t).map(Vec::as_slice).unwrap_or(&[])
            })
            .collect();
        // Start from the shortest list (one host of a thousand), keep what every other holds.
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return all.to_vec();
        };
        first
            .iter()
            .copied()
            .filter(|id| rest.iter().all(|l| l.binary_search(id).is_ok()))
            .collect()
    }

    /// Defines a series the log introduces (its id must be the next one, its key new).
    pub fn define(&mut self, ns: &str, s: &NewSeries<'_>) -> Result<(), String> {
        if s.id != self.next_id() {
            return Err(format!("series {} defined where {} was next", s.id, self.next_id()));
        }
        let mut key = Vec::new();
        line_key(&mut key, s.measurement, s.tags.iter().copied());
        let fields = self.by_line.entry(ns.into()).or_default().entry(key).or_default();
        if fields.iter().any(|(f, _)| **f == *s.field) {
            return Err(format!("series {} defined twice", s.id));
        }
        fields.push((s.field.into(), s.id));
        for (k, v) in &s.tags {
            self.tag_index
                .entry((ns.into(), s.measurement.into(), (*k).into(), (*v).into()))
                .or_default()
                .push(s.id);
        }
        self.measurements
            .entry((ns.into(), s.measurement.into()))
            .or_default()
            .push(s.id);
        self.series.push(Series {
            namespace: self
                .namespaces
                .entry(ns.into())
                .or_insert_with(|| std::rc::Rc::from(ns))
                .clone(),
            measurement: s.measurement.into(),
            tags: s.tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            field: s.field.into(),
            head: Head::default(),
            late: Head::default(),
            sealed_until: None,
            chunks: Vec::new(),
        });
        Ok(())
    }

    /// One point of entry `lsn` is no longer needed (chunked, overwritten or aborted).
    fn release(&mut self, lsn: u64, points: u32) {
        let Some(e) = self.entries.get_mut(&lsn) else {
            debug_assert!(false, "points of entry {lsn} released twice");
            return;
        };
        e.remaining = e.remaining.saturating_sub(points);
        if e.remaining > 0 {
            return;
        }
        let e = self.entries.remove(&lsn).expect("present");
        self.dead_bytes += e.bytes;
        match e.at {
            EntryAt::Placed(pos) => {
                let loc = self.segments.loc(&pos);
                self.segments.mark_dead(loc, e.bytes);
            }
            EntryAt::Pending => self.dead_in_flight.push((lsn, e.bytes)),
        }
    }

    /// Puts committed points of a write that arrived at `at_ms` into the heads; returns the
    /// series whose head is now full.
    fn add(
        &mut self,
        ns: &str,
        points: impl Iterator<Item = (u32, i64, f64, u64)>,
        at_ms: u64,
    ) -> Result<FullHeads, String> {
        let mut full = Vec::new();
        let mut released = Vec::new();
        let Some(interned) = self.namespaces.get(ns).cloned() else {
            return Err(format!("a point in namespace {ns:?}, which has no series"));
        };
        for (id, ts, v, lsn) in points {
            let s = self
                .get_mut(id)
                .ok_or_else(|| format!("a point of series {id}, never defined"))?;
            if !std::rc::Rc::ptr_eq(&s.namespace, &interned) {
                return Err(format!("series {id} is not of namespace {ns:?}"));
            }
            let replaced = if s.sealed_until.is_some_and(|t| ts <= t) {
                s.late.insert(ts, v, lsn, at_ms)
            } else {
                let r = s.head.insert(ts, v, lsn, at_ms);
                if s.head.len() == HEAD_POINTS {
                    full.push(id);
                }
                r
            };
            match replaced {
                Some(old) => released.push(old),
                None => self.samples += 1,
            }
        }
        for lsn in released {
            self.release(lsn, 1);
        }
        Ok(full)
    }

    /// Applies a `TS_POINTS` entry at `lsn` (`bytes` stored): defines its series, and puts its
    /// points into the heads (one part) or aside until their write commits (several parts).
    /// Moves the partition's clock to the entry's time, forgetting the committed batches that is
    /// past. Returns the full heads.
    pub fn apply_points(&mut self, p: &Points<'_>, lsn: u64, at: EntryAt, bytes: u64) -> Result<FullHeads, String> {
        // A part that does not fit its write is refused before anything changes.
        if p.batch_id != 0 {
            if let Some(part) = self.pending.get(&p.batch_id) {
                if part.part_count != p.part_count || &*part.namespace != p.namespace || part.at_ms != p.at_ms {
                    return Err(format!("parts of batch {} disagree on their write", p.batch_id));
                }
                if part.parts >= part.part_count {
                    return Err(format!("batch {} has more parts than it says", p.batch_id));
                }
            }
        }
        for s in &p.new_series {
            self.define(p.namespace, s)?;
        }
        let interned = self.namespaces.get(p.namespace).cloned();
        for (id, _, _) in p.iter() {
            let same = |s: &Series| interned.as_ref().is_some_and(|n| std::rc::Rc::ptr_eq(&s.namespace, n));
            if !self.get(id).is_some_and(same) {
                return Err(format!("a point of series {id}, never defined in {:?}", p.namespace));
            }
        }
        self.clock_ms = self.clock_ms.max(p.at_ms);
        self.forget_committed();
        self.entries.insert(
            lsn,
            LiveEntry {
                at,
                bytes,
                remaining: p.len() as u32,
            },
        );
        if p.batch_id == 0 {
            return self.add(p.namespace, p.iter().map(|(id, ts, v)| (id, ts, v, lsn)), p.at_ms);
        }
        let part = self.pending.entry(p.batch_id).or_insert_with(|| PendingPart {
            namespace: p.namespace.into(),
            part_count: p.part_count,
            at_ms: p.at_ms,
            points: Vec::new(),
            parts: 0,
        });
        part.parts += 1;
        part.points.extend(p.iter().map(|(id, ts, v)| (id, ts, v, lsn)));
        Ok(Vec::new())
    }

    /// Forgets the committed batches the clock is [`COMMITTED_KEEP_MS`] past.
    fn forget_committed(&mut self) {
        while let Some(&Reverse((at_ms, batch))) = self.committed_order.peek() {
            if at_ms.saturating_add(COMMITTED_KEEP_MS) > self.clock_ms {
                break;
            }
            self.committed_order.pop();
            if self.committed.get(&batch).is_some_and(|c| c.at_ms == at_ms) {
                self.committed.remove(&batch);
            }
        }
    }

    /// Batches with parts here that wait for their commit: (batch, namespace, parts the write
    /// has, parts held here).
    pub fn pending(&self) -> impl Iterator<Item = (u64, &str, u16, u16)> {
        self.pending
            .iter()
            .map(|(b, p)| (*b, &*p.namespace, p.part_count, p.parts))
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether parts of `batch` wait here for their commit.
    pub fn is_pending(&self, batch: u64) -> bool {
        self.pending.contains_key(&batch)
    }

    /// Parts of `batch` this partition holds, pending or committed.
    pub fn parts_held(&self, batch: u64) -> u16 {
        self.pending
            .get(&batch)
            .map(|p| p.parts)
            .or_else(|| self.committed.get(&batch).map(|c| c.parts))
            .unwrap_or(0)
    }

    /// Points of the pending parts whose batch `visible` accepts, by series, in the order their
    /// commit will apply them.
    pub fn pending_points(&self, visible: impl Fn(u64) -> bool) -> HashMap<u32, Vec<(i64, f64)>> {
        let mut out: HashMap<u32, Vec<(i64, f64)>> = HashMap::new();
        if self.pending.is_empty() {
            return out;
        }
        let mut batches: Vec<(&u64, &PendingPart)> = self.pending.iter().filter(|(b, _)| visible(**b)).collect();
        // Commit order is unknown here; LSN order of the parts is the closest stable one.
        batches.sort_by_key(|(_, p)| p.points.first().map_or(0, |x| x.3));
        for (_, part) in batches {
            for (id, ts, v, _) in &part.points {
                out.entry(*id).or_default().push((*ts, *v));
            }
        }
        out
    }

    /// A multi-part write committed (`TS_COMMIT`): its parts here go into the heads (their heads
    /// aged from the write's arrival), and the batch is remembered for recovery's exchange.
    pub fn commit(&mut self, ns: &str, batch_id: u64) -> Result<FullHeads, String> {
        let part = self
            .pending
            .remove(&batch_id)
            .ok_or_else(|| format!("commit of batch {batch_id}, which has no part here"))?;
        if &*part.namespace != ns {
            return Err(format!(
                "commit of batch {batch_id} in {ns:?}, whose parts are of {:?}",
                part.namespace
            ));
        }
        self.committed.insert(
            batch_id,
            Committed {
                parts: part.parts,
                at_ms: part.at_ms,
            },
        );
        self.committed_order.push(Reverse((part.at_ms, batch_id)));
        self.add(ns, part.points.into_iter(), part.at_ms)
    }

    /// `TS_ABORT`: the parts of `batch_id` are dropped (nothing if none is here: an abort may
    /// be written for a part that never became durable).
    pub fn abort(&mut self, batch_id: u64) {
        if let Some(part) = self.pending.remove(&batch_id) {
            let mut per_entry: HashMap<u64, u32> = HashMap::new();
            for (_, _, _, lsn) in part.points {
                *per_entry.entry(lsn).or_default() += 1;
            }
            for (lsn, n) in per_entry {
                self.release(lsn, n);
            }
        }
    }

    /// Encodes the chunk of a series' head (`kind` 0) or late head (1), if it has points.
    pub fn cut(&self, id: u32, kind: u8) -> Option<Vec<u8>> {
        let s = self.get(id)?;
        let head = if kind == CHUNK_IN_ORDER { &s.head } else { &s.late };
        if head.is_empty() {
            return None;
        }
        // A chunk holds at most `chunk::MAX_POINTS`: a head grown past that (one write of many
        // points of one series) is cut from its oldest points, in several chunks.
        let n = head.len().min(super::chunk::MAX_POINTS);
        let pairs: Vec<(i64, f64)> = head.points[..n].iter().map(|p| (p.ts, p.v)).collect();
        let mut out = Vec::new();
        super::chunk::encode(&pairs, &mut out);
        Some(out)
    }

    /// Applies a `TS_CHUNK` entry at `lsn`, `bytes` stored: the head it was cut from must hold
    /// exactly its points' span and count; the head empties into the chunk, placed (replay, or
    /// once durable) or with its points kept until it is.
    pub fn apply_chunk(&mut self, c: &Chunk<'_>, lsn: u64, at: EntryAt, bytes: u64) -> Result<(), String> {
        let s = self
            .get_mut(c.series)
            .ok_or_else(|| format!("a chunk of series {}, never defined", c.series))?;
        if &*s.namespace != c.namespace {
            return Err(format!("series {} is not of namespace {:?}", c.series, c.namespace));
        }
        let h = c.header;
        let head = if c.kind == CHUNK_IN_ORDER {
            &mut s.head
        } else {
            &mut s.late
        };
        let n = usize::from(h.count);
        let span = (
            head.points.first().map(|p| p.ts),
            head.points.get(n.wrapping_sub(1)).map(|p| p.ts),
        );
        // The chunk holds the head's oldest `n` points: all of them, unless the head had grown
        // past what one chunk holds.
        let whole_or_max = head.len() == n || n == super::chunk::MAX_POINTS;
        if head.len() < n || !whole_or_max || span != (Some(h.first_ts), Some(h.last_ts)) {
            return Err(format!(
                "chunk of series {} holds {} points {}..={}, its head {} points {span:?}",
                c.series,
                h.count,
                h.first_ts,
                h.last_ts,
                head.len()
            ));
        }
        let points: Vec<HeadPoint> = head.points.drain(..n).collect();
        if c.kind == CHUNK_IN_ORDER {
            s.sealed_until = Some(h.last_ts);
        }
        let mut per_entry: Vec<(u64, u32)> = Vec::new();
        for p in &points {
            match per_entry.last_mut() {
                Some((lsn, n)) if *lsn == p.lsn => *n += 1,
                _ => per_entry.push((p.lsn, 1)),
            }
        }
        let stored = match at {
            EntryAt::Placed(pos) => {
                let loc = self.segments.loc(&pos);
                self.chunk_at.insert(loc, (c.series, lsn));
                Stored::Placed { loc, lsn }
            }
            EntryAt::Pending => Stored::Cut(points),
        };
        let s = self.get_mut(c.series).expect("looked up above");
        s.chunks.push(ChunkRef {
            lsn,
            kind: c.kind,
            first_ts: h.first_ts,
            last_ts: h.last_ts,
            count: h.count,
            bytes: bytes as u32,
            stored,
        });
        for (lsn, n) in per_entry {
            self.release(lsn, n);
        }
        Ok(())
    }

    /// A `TS_POINTS` entry (`chunk` `None`) or a series' `TS_CHUNK` applied before it was
    /// durable is durable at `pos`: the entry is placed (or, if nothing needs it any more, its
    /// bytes are dead there); the chunk is read from its place from now on (unless dropped).
    pub fn settle_entry(&mut self, lsn: u64, chunk: Option<u32>, pos: &Position) {
        let loc = self.segments.loc(pos);
        if let Some(i) = self.dead_in_flight.iter().position(|(l, _)| *l == lsn) {
            let (_, bytes) = self.dead_in_flight.swap_remove(i);
            self.segments.mark_dead(loc, bytes);
            return;
        }
        match chunk {
            None => {
                if let Some(e) = self.entries.get_mut(&lsn) {
                    e.at = EntryAt::Placed(*pos);
                }
            }
            Some(id) => {
                let Some(s) = self.get_mut(id) else { return };
                if let Ok(i) = s.chunks.binary_search_by_key(&lsn, |c| c.lsn) {
                    s.chunks[i].stored = Stored::Placed { loc, lsn };
                    self.chunk_at.insert(loc, (id, lsn));
                }
            }
        }
    }

    /// Series whose head (or late head) should be cut now: older than `max_age_ms`.
    pub fn aged(&self, now_ms: u64, max_age_ms: u64) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let id = i as u32 + 1;
            for (head, kind) in [(&s.head, CHUNK_IN_ORDER), (&s.late, CHUNK_LATE)] {
                if !head.is_empty() && now_ms.saturating_sub(head.since_ms) >= max_age_ms {
                    out.push((id, kind));
                }
            }
        }
        out
    }

    /// Heads (and late heads) holding at least `n` points: to be cut.
    pub fn full(&self, n: usize) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            if s.head.len() >= n {
                out.push((i as u32 + 1, CHUNK_IN_ORDER));
            }
            if s.late.len() >= n {
                out.push((i as u32 + 1, CHUNK_LATE));
            }
        }
        out
    }

    /// Sets a measurement's retention (`TS_RETENTION`); 0 removes it.
    pub fn set_retention(&mut self, ns: &str, measurement: &str, max_age_ms: u64) {
        let k = (Box::from(ns), Box::from(measurement));
        if max_age_ms == 0 {
            self.retention.remove(&k);
        } else {
            self.retention.insert(k, max_age_ms);
        }
    }

    pub fn retention(&self, ns: &str, measurement: &str) -> Option<u64> {
        self.retention.get(&(Box::from(ns), Box::from(measurement))).copied()
    }

    /// What retention drops at `now_ms`: (series, cutoff) for every series with durable chunks
    /// wholly before its measurement's cutoff.
    pub fn expired(&self, now_ms: u64) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        for ((ns, m), max_age) in &self.retention {
            let cutoff = (now_ms as i64).saturating_sub(*max_age as i64);
            let Some(ids) = self.measurements.get(&(ns.clone(), m.clone())) else {
                continue;
            };
            for &id in ids {
                let Some(s) = self.get(id) else { continue };
                let any = s
                    .chunks
                    .iter()
                    .any(|c| c.last_ts < cutoff && matches!(c.stored, Stored::Placed { .. }));
                if any {
                    out.push((id, cutoff));
                }
            }
        }
        out
    }

    /// `TS_DROP`: the chunks of `series` it names are gone; their entries are dead bytes (at
    /// their place, or once they have one).
    pub fn drop_chunks(&mut self, ns: &str, series: u32, what: &Dropped) -> Result<(), String> {
        let s = self
            .get_mut(series)
            .ok_or_else(|| format!("a drop in series {series}, never defined"))?;
        if &*s.namespace != ns {
            return Err(format!("series {series} is not of namespace {ns:?}"));
        }
        let mut dropped = Vec::new();
        match what {
            Dropped::Before(cutoff) => {
                let (gone, kept): (Vec<ChunkRef>, Vec<ChunkRef>) = std::mem::take(&mut s.chunks)
                    .into_iter()
                    .partition(|c| c.last_ts < *cutoff);
                s.chunks = kept;
                dropped = gone;
            }
            Dropped::Lsns(lsns) => {
                for lsn in lsns {
                    let i = s
                        .chunks
                        .iter()
                        .position(|c| c.lsn == *lsn)
                        .ok_or_else(|| format!("a drop of chunk {lsn} that series {series} does not hold"))?;
                    dropped.push(s.chunks.remove(i));
                }
            }
        }
        for c in dropped {
            self.samples = self.samples.saturating_sub(u64::from(c.count));
            self.dead_bytes += u64::from(c.bytes);
            match c.stored {
                Stored::Placed { loc, .. } => {
                    self.chunk_at.remove(&loc);
                    self.segments.mark_dead(loc, u64::from(c.bytes));
                }
                Stored::Cut(_) => self.dead_in_flight.push((c.lsn, u64::from(c.bytes))),
            }
        }
        Ok(())
    }

    /// (namespace, measurement) of every series held.
    pub fn measurement_names(&self) -> Vec<(String, String)> {
        self.measurements
            .keys()
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .collect()
    }

    /// Measurements of a namespace with what they hold.
    pub fn measurement_stats(&self, ns: &str) -> BTreeMap<String, MeasurementStats> {
        let mut out: BTreeMap<String, MeasurementStats> = BTreeMap::new();
        for ((n, m), ids) in &self.measurements {
            if &**n != ns {
                continue;
            }
            let st = out.entry(m.to_string()).or_default();
            for &id in ids {
                let s = &self.series[id as usize - 1];
                st.series += 1;
                st.samples += s.samples();
                st.bytes += s.bytes();
                if !st.fields.iter().any(|f| **f == *s.field) {
                    st.fields.push(s.field.to_string());
                }
            }
        }
        out
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Bytes of this store's entries that nothing needs any more.
    pub fn dead_bytes(&self) -> u64 {
        self.dead_bytes
    }

    /// Points stored, in chunks and heads.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// A series' points in `from..=to` that are durable (`durable_lsn`), ascending, one per
    /// timestamp (the one written last). `load(loc, lsn)` reads a placed chunk's points from
    /// the entry of LSN `lsn` at `loc` (its `TS_CHUNK`, or the copy compaction moved it to, which
    /// reads as the original); `extra` are points
    /// of committed parts not yet in the heads (they win: their commit applies them last).
    #[allow(
        clippy::too_many_arguments,
        reason = "one read's inputs; a struct would only rename them"
    )]
    pub fn read(
        &self,
        id: u32,
        from: i64,
        to: i64,
        durable_lsn: u64,
        mut load: impl FnMut(u64, u64) -> Result<Vec<(i64, f64)>, String>,
        extra: &[(i64, f64)],
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), String> {
        out.clear();
        let Some(s) = self.get(id) else {
            return Ok(());
        };
        let in_range = |ts: i64| ts >= from && ts <= to;
        let mut sorted = true;
        let mut push = |out: &mut Vec<(i64, f64)>, ts: i64, v: f64| {
            if let Some(last) = out.last() {
                if last.0 >= ts {
                    sorted = false;
                }
            }
            out.push((ts, v));
        };
        for c in &s.chunks {
            if c.last_ts < from || c.first_ts > to {
                continue;
            }
            match &c.stored {
                Stored::Placed { loc, lsn } => {
                    for (ts, v) in load(*loc, *lsn)? {
                        if in_range(ts) {
                            push(out, ts, v);
                        }
                    }
                }
                Stored::Cut(points) => {
                    for p in points {
                        if p.lsn <= durable_lsn && in_range(p.ts) {
                            push(out, p.ts, p.v);
                        }
                    }
                }
            }
        }
        for head in [&s.late, &s.head] {
            for p in head.points() {
                if p.lsn <= durable_lsn && in_range(p.ts) {
                    push(out, p.ts, p.v);
                }
            }
        }
        for (ts, v) in extra {
            if in_range(*ts) {
                push(out, *ts, *v);
            }
        }
        if !sorted {
            // Stable: for one timestamp, the value written last stays last.
            out.sort_by_key(|p| p.0);
            let mut w = 0;
            for r in 0..out.len() {
                if r + 1 < out.len() && out[r + 1].0 == out[r].0 {
                    continue;
                }
                out[w] = out[r];
                w += 1;
            }
            out.truncate(w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::*;
    use super::*;

    fn pos(lsn: u64) -> Position {
        Position {
            lsn,
            segment: 1,
            offset: 64 * lsn,
        }
    }

    fn new_series(id: u32, host: &'static str, field: &'static str) -> NewSeries<'static> {
        NewSeries {
            id,
            measurement: "cpu",
            tags: vec![("host", host), ("region", "eu")],
            field,
        }
    }

    /// Applies a one-part `TS_POINTS` entry at `lsn`, as replay does.
    fn add(st: &mut SeriesStore, lsn: u64, new: &[NewSeries<'_>], pts: &[(u32, i64, f64)]) -> FullHeads {
        let body = encode_points("app", 0, 0, 1, 0, new, pts);
        st.apply_points(&decode_points(&body).unwrap(), lsn, EntryAt::Placed(pos(lsn)), 100)
            .unwrap()
    }

    /// Applies a one-part `TS_POINTS` entry that arrived at `at_ms`.
    fn add_at(st: &mut SeriesStore, lsn: u64, at_ms: u64, pts: &[(u32, i64, f64)]) {
        let body = encode_points("app", 0, 0, 1, at_ms, &[], pts);
        st.apply_points(&decode_points(&body).unwrap(), lsn, EntryAt::Placed(pos(lsn)), 100)
            .unwrap();
    }

    /// Cuts a head and applies its chunk as replay would; returns the entry's body.
    fn chunk(st: &mut SeriesStore, id: u32, kind: u8, lsn: u64) -> Result<Vec<u8>, String> {
        let body = encode_chunk("app", 0, id, kind, &st.cut(id, kind).unwrap());
        st.apply_chunk(&decode_chunk(&body).unwrap(), lsn, EntryAt::Placed(pos(lsn)), 50)?;
        Ok(body)
    }

    fn all(st: &SeriesStore, id: u32) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        st.read(id, i64::MIN, i64::MAX, u64::MAX, |_, _| Ok(Vec::new()), &[], &mut out)
            .unwrap();
        out
    }

    #[test]
    fn series_are_defined_once_indexed_and_selected() {
        let mut st = SeriesStore::default();
        add(
            &mut st,
            1,
            &[
                new_series(1, "a", "usage"),
                new_series(2, "b", "usage"),
                new_series(3, "a", "idle"),
            ],
            &[(1, 10, 1.0), (2, 10, 2.0), (3, 10, 3.0)],
        );
        assert_eq!((st.len(), st.next_id()), (3, 4));
        assert_eq!(st.select("app", "cpu", &[]), [1, 2, 3]);
        assert_eq!(st.select("app", "cpu", &[("host", "a")]), [1, 3]);
        assert_eq!(st.select("app", "cpu", &[("host", "a"), ("region", "eu")]), [1, 3]);
        assert!(st.select("app", "cpu", &[("host", "c")]).is_empty());
        assert!(st.select("other", "cpu", &[]).is_empty());
        let mut key = Vec::new();
        line_key(&mut key, "cpu", [("host", "b"), ("region", "eu")].into_iter());
        assert_eq!(st.lookup("app", &key, "usage"), Some(2));
        assert_eq!(st.lookup("app", &key, "idle"), None);
        assert_eq!(st.lookup("other", &key, "usage"), None);
        assert_eq!(
            decode_line_key(&key),
            Some(("cpu", vec![("host", "b"), ("region", "eu")]))
        );
        assert_eq!(decode_line_key(&key[..key.len() - 1]), None);
        assert!(
            st.define("app", &new_series(4, "a", "usage")).is_err(),
            "same key twice"
        );
        assert!(
            st.define("app", &new_series(9, "z", "usage")).is_err(),
            "an id out of order"
        );
        let stray = encode_points("app", 0, 0, 1, 0, &[], &[(7, 1, 1.0)]);
        assert!(
            st.apply_points(&decode_points(&stray).unwrap(), 2, EntryAt::Placed(pos(2)), 1)
                .is_err(),
            "an undefined series"
        );
        let other_ns = encode_points("zzz", 0, 0, 1, 0, &[], &[(1, 1, 1.0)]);
        assert!(
            st.apply_points(&decode_points(&other_ns).unwrap(), 3, EntryAt::Placed(pos(3)), 1)
                .is_err(),
            "another namespace"
        );
        let stats = st.measurement_stats("app");
        assert_eq!(stats["cpu"].series, 3);
        assert_eq!(stats["cpu"].samples, 3);
        assert_eq!(stats["cpu"].fields, ["usage", "idle"]);
    }

    #[test]
    fn heads_sort_keep_the_last_value_and_fill_into_chunks() {
        let mut st = SeriesStore::default();
        st.define("app", &new_series(1, "a", "usage")).unwrap();
        assert!(add(
            &mut st,
            1,
            &[],
            &[(1, 30, 3.0), (1, 10, 1.0), (1, 20, 2.0), (1, 10, 1.5)]
        )
        .is_empty());
        assert_eq!(st.get(1).unwrap().head.pairs(), [(10, 1.5), (20, 2.0), (30, 3.0)]);
        let rest: Vec<(u32, i64, f64)> = (0..HEAD_POINTS as i64 - 3).map(|i| (1, 100 + i, i as f64)).collect();
        assert_eq!(add(&mut st, 2, &[], &rest), [1], "the head is full");
        assert_eq!(st.dead_bytes(), 0, "every entry still holds head points");
        let first = chunk(&mut st, 1, CHUNK_IN_ORDER, 9).unwrap();
        assert_eq!(st.dead_bytes(), 200, "both points entries are wholly in the chunk");
        let s = st.get(1).unwrap();
        assert!(s.head.is_empty());
        assert_eq!(s.sealed_until, Some(100 + HEAD_POINTS as i64 - 4));
        assert_eq!(
            (s.chunks.len(), s.chunks[0].count as usize, s.chunks[0].lsn),
            (1, HEAD_POINTS, 9)
        );
        // A point at or before the sealed end is late: kept apart, never dropped.
        add(&mut st, 10, &[], &[(1, 15, 9.0), (1, 5_000, 1.0)]);
        let s = st.get(1).unwrap();
        assert_eq!((s.late.pairs(), s.head.pairs()), (vec![(15, 9.0)], vec![(5_000, 1.0)]));
        // Replaying a chunk that does not match its head is corruption.
        let again = decode_chunk(&first).unwrap();
        assert!(
            st.apply_chunk(&again, 11, EntryAt::Placed(pos(11)), 50).is_err(),
            "a chunk that does not match its head"
        );
        chunk(&mut st, 1, CHUNK_LATE, 12).unwrap();
        let s = st.get(1).unwrap();
        assert!(s.late.is_empty());
        assert_eq!(
            s.sealed_until,
            Some(100 + HEAD_POINTS as i64 - 4),
            "late chunks do not move it"
        );
        assert_eq!(s.chunks[1].kind, CHUNK_LATE);
    }

    #[test]
    fn reads_merge_chunks_late_points_and_heads_and_hide_what_is_not_durable() {
        let mut st = SeriesStore::default();
        st.define("app", &new_series(1, "a", "usage")).unwrap();
        let first: Vec<(u32, i64, f64)> = (0..HEAD_POINTS as i64).map(|i| (1, i * 10, i as f64)).collect();
        add(&mut st, 1, &[], &first);
        let bytes = st.cut(1, CHUNK_IN_ORDER).unwrap();
        let body = encode_chunk("app", 0, 1, CHUNK_IN_ORDER, &bytes);
        st.apply_chunk(&decode_chunk(&body).unwrap(), 2, EntryAt::Placed(pos(2)), 50)
            .unwrap();
        // A late point rewrites t=20; a new point at the end; one more not yet durable.
        add(&mut st, 3, &[], &[(1, 20, -1.0), (1, 100_000, 7.0)]);
        add(&mut st, 4, &[], &[(1, 100_010, 8.0)]);
        let load = |loc: u64, lsn: u64| {
            assert_eq!((loc & u64::from(u32::MAX), lsn), (128, 2));
            crate::ts::chunk::decode(&bytes).map_err(|e| e.to_string())
        };
        let mut out = Vec::new();
        st.read(1, 0, 30, 3, load, &[], &mut out).unwrap();
        assert_eq!(out, [(0, 0.0), (10, 1.0), (20, -1.0), (30, 3.0)], "the late write wins");
        st.read(1, 99_990, i64::MAX, 3, load, &[], &mut out).unwrap();
        assert_eq!(out, [(100_000, 7.0)], "LSN 4 is not durable");
        st.read(1, 99_990, i64::MAX, 4, load, &[], &mut out).unwrap();
        assert_eq!(out, [(100_000, 7.0), (100_010, 8.0)]);
    }

    #[test]
    fn multi_part_points_wait_for_their_commit() {
        let mut st = SeriesStore::default();
        let part = encode_points("app", 0, 77, 2, 1_000, &[new_series(1, "a", "usage")], &[(1, 10, 1.0)]);
        st.apply_points(&decode_points(&part).unwrap(), 1, EntryAt::Placed(pos(1)), 40)
            .unwrap();
        assert!(st.get(1).unwrap().head.is_empty(), "invisible until committed");
        assert_eq!(st.pending().collect::<Vec<_>>(), [(77, "app", 2, 1)]);
        assert_eq!((st.parts_held(77), st.parts_held(78)), (1, 0));
        let disagree = encode_points("app", 0, 77, 3, 1_000, &[], &[(1, 11, 1.0)]);
        assert!(
            st.apply_points(&decode_points(&disagree).unwrap(), 2, EntryAt::Placed(pos(2)), 40)
                .is_err(),
            "parts that disagree on their write's part count"
        );
        assert!(!st.entries.contains_key(&2), "a refused part changes nothing");
        assert_eq!(st.clock_ms, 1_000);
        st.commit("app", 77).unwrap();
        assert_eq!(all(&st, 1), [(10, 1.0)]);
        assert!(st.commit("app", 77).is_err());
        assert_eq!(st.parts_held(77), 1, "the commit is remembered for recovery");
        // The partition's clock is the entries' arrival time, never the local clock: a write
        // arriving just before the keep time is up leaves the commit remembered.
        let other = encode_points("app", 0, 78, 2, 1_000 + COMMITTED_KEEP_MS - 1, &[], &[(1, 20, 2.0)]);
        st.apply_points(&decode_points(&other).unwrap(), 3, EntryAt::Placed(pos(3)), 30)
            .unwrap();
        assert_eq!(st.parts_held(77), 1);
        st.abort(78);
        assert_eq!(st.pending().count(), 0);
        assert_eq!(st.dead_bytes(), 30, "an aborted part is dead bytes");
        assert_eq!(all(&st, 1), [(10, 1.0)], "an aborted part leaves no point");
        add_at(&mut st, 4, 1_000 + COMMITTED_KEEP_MS, &[(1, 30, 3.0)]);
        assert_eq!(st.parts_held(77), 0, "forgotten once the clock is past its keep time");
    }

    #[test]
    fn retention_drops_whole_durable_chunks() {
        let mut st = SeriesStore::default();
        st.define("app", &new_series(1, "a", "usage")).unwrap();
        let pts: Vec<(u32, i64, f64)> = (0..HEAD_POINTS as i64).map(|i| (1, i, 1.0)).collect();
        add(&mut st, 1, &[], &pts);
        chunk(&mut st, 1, CHUNK_IN_ORDER, 2).unwrap();
        add(&mut st, 3, &[], &[(1, 5_000, 2.0)]);
        assert!(st.expired(10_000).is_empty(), "no retention set");
        st.set_retention("app", "cpu", 8_000);
        assert_eq!(st.expired(10_000), [(1, 2_000)]);
        st.drop_chunks("app", 1, &Dropped::Before(2_000)).unwrap();
        assert!(st.expired(10_000).is_empty());
        let dead = st.dead_bytes();
        st.drop_chunks("app", 1, &Dropped::Before(2_000)).unwrap();
        assert_eq!(st.dead_bytes(), dead, "a drop again drops nothing");
        assert!(
            st.drop_chunks("zzz", 1, &Dropped::Before(2_000)).is_err(),
            "another namespace"
        );
        assert_eq!(all(&st, 1), [(5_000, 2.0)]);
        assert_eq!(st.samples(), 1);
    }
}
