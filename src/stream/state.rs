//! The streams of one partition, as state machines on its log (`format-spec/stream.md`).
//!
//! A stream's records stay in the log; a [`Stream`] holds only a sparse index of points (one per
//! segment and per 64 KiB of it) from which reads walk the mapped segments, the offsets it has
//! handed out, its retention and its consumer groups.
//!
//! Invariants, for every stream:
//! * `first_offset <= durable_next <= next_offset`; records `[first_offset, durable_next)` are
//!   durable and readable, `[durable_next, next_offset)` are appended but not yet durable (their
//!   entries are `in_flight`, in LSN order).
//! * Points are in offset order; the first point's range holds `first_offset` (unless no record
//!   is retained); the entries of one point's range are all in the point's segment, at or after
//!   the point's place, and a walk from the place finds them in offset order (it skips entries
//!   of the stream wholly before the records it expects next, which compaction leaves behind).
//! * A point's `at_ms` is at most its first entry's and at least that of every entry before it.
//! * `cum` counts each indexed entry's stored bytes as first written: a compaction copy of an
//!   entry counts as the original (`compact.rs`).
//! * A group's pending records are below its cursor and at or above `first_offset`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::entry::*;
use crate::log::io::Fs;
use crate::log::places::SegmentTable;
use crate::log::{Log, Position};
use crate::machine::At;

mod compact;
mod machine;
mod snapshot;

pub use machine::{GroupReadPlan, Start, StreamAnswer, StreamCommand, StreamPending, MAX_CONSUMERS, MAX_GROUPS};

pub type ReplayError = String;

/// Bytes of a segment between two points of one stream's index, at least.
pub const POINT_STRIDE: u64 = 64 * 1024;
/// Dead letters a group keeps the offsets of (the newest); the count covers all.
pub const DEAD_LETTERS_KEPT: usize = 100;

/// A point of a stream's index: the first record of an entry, and where the entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    offset: u64,
    /// Place of the entry (see `places.rs`), or, for a point compaction left in a victim
    /// segment, of an entry before it in that segment (`compact.rs`).
    loc: u64,
    /// The entry's `at_ms`; for a point compaction left in a victim, that of the entry before.
    at_ms: u64,
    /// The stream's indexed entry bytes before this entry.
    cum: u64,
}

/// An APPEND entry as the index needs it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    first: u64,
    count: u32,
    stored: u64,
    at_ms: u64,
}

/// An appended entry that is not durable yet: its LSN.
#[derive(Debug)]
struct InFlight {
    lsn: u64,
    entry: Entry,
}

/// A record lease of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    consumer: u32,
    deliveries: u32,
    deadline_ms: u64,
}

/// A consumer group of a stream.
#[derive(Debug, Default)]
pub struct Group {
    pub cursor: u64,
    pub ack_timeout_ms: u64,
    pub max_deliveries: u32,
    pending: BTreeMap<u64, Lease>,
    /// (deadline, offset) of every pending record.
    deadlines: BTreeSet<(u64, u64)>,
    consumers: Vec<String>,
    consumer_ids: HashMap<String, u32>,
    dead_letters: VecDeque<u64>,
    pub dead_letter_count: u64,
    /// The entry behind the group's state.
    pub last_lsn: u64,
}

/// What a read of a group decides, before it is written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadPlan {
    pub redelivered: Vec<u64>,
    pub given_up: Vec<u64>,
    pub new_from: u64,
    pub cursor: u64,
}

impl ReadPlan {
    pub fn is_empty(&self) -> bool {
        self.redelivered.is_empty() && self.given_up.is_empty() && self.new_from == self.cursor
    }
}

impl Group {
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn has_consumer(&self, name: &str) -> bool {
        self.consumer_ids.contains_key(name)
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Consumer names, sorted.
    pub fn consumers(&self) -> Vec<String> {
        let mut v = self.consumers.clone();
        v.sort_unstable();
        v
    }

    /// The kept dead letters, oldest first.
    pub fn dead_letters(&self) -> Vec<u64> {
        self.dead_letters.iter().copied().collect()
    }

    /// The earliest lease deadline, if any record is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|d| d.0)
    }

    /// The delivery count of a pending record.
    pub fn deliveries(&self, offset: u64) -> Option<u32> {
        self.pending.get(&offset).map(|l| l.deliveries)
    }

    /// Decides a read of up to `count` records at `now`: leases that ran out first (redelivered,
    /// or given up after `max_deliveries`), then records never delivered, up to `end`.
    pub fn plan_read(&self, now: u64, count: usize, first_offset: u64, end: u64) -> ReadPlan {
        let mut plan = ReadPlan::default();
        for &(deadline, offset) in &self.deadlines {
            if deadline > now || plan.redelivered.len() >= count || plan.given_up.len() >= MAX_ITEMS {
                break;
            }
            let Some(lease) = self.pending.get(&offset) else {
                continue;
            };
            if lease.deliveries >= self.max_deliveries {
                plan.given_up.push(offset);
            } else {
                plan.redelivered.push(offset);
            }
        }
        plan.new_from = self.cursor.max(first_offset);
        let room = (count - plan.redelivered.len()) as u64;
        plan.cursor = plan.new_from.max(end.min(plan.new_from + room));
        plan
    }

    fn consumer_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.consumer_ids.get(name) {
            return id;
        }
        let id = self.consumers.len() as u32;
        self.consumers.push(name.to_string());
        self.consumer_ids.insert(name.to_string(), id);
        id
    }

    fn apply_read(&mut self, rd: &Read<'_>, first_offset: u64, next_offset: u64) -> Result<(), ReplayError> {
        if rd.new_from < self.cursor || rd.new_from < first_offset || rd.cursor > next_offset {
            return Err(format!(
                "group read of [{}, {}) with cursor {}, records [{first_offset}, {next_offset})",
                rd.new_from, rd.cursor, self.cursor
            ));
        }
        let consumer = self.consumer_id(rd.consumer);
        for &o in &rd.redelivered {
            let lease = self
                .pending
                .get_mut(&o)
                .ok_or_else(|| format!("redelivery of offset {o}, which is not pending"))?;
            self.deadlines.remove(&(lease.deadline_ms, o));
            *lease = Lease {
                consumer,
                deliveries: lease.deliveries.saturating_add(1),
                deadline_ms: rd.deadline_ms,
            };
            self.deadlines.insert((rd.deadline_ms, o));
        }
        for &o in &rd.given_up {
            let lease = self
                .pending
                .remove(&o)
                .ok_or_else(|| format!("giving up offset {o}, which is not pending"))?;
            self.deadlines.remove(&(lease.deadline_ms, o));
            if self.dead_letters.len() == DEAD_LETTERS_KEPT {
                self.dead_letters.pop_front();
            }
            self.dead_letters.push_back(o);
            self.dead_letter_count += 1;
        }
        for o in rd.new_from..rd.cursor {
            let lease = Lease {
                consumer,
                deliveries: 1,
                deadline_ms: rd.deadline_ms,
            };
            if self.pending.insert(o, lease).is_some() {
                return Err(format!("offset {o} delivered for the first time twice"));
            }
            self.deadlines.insert((rd.deadline_ms, o));
        }
        self.cursor = rd.cursor;
        Ok(())
    }

    /// Acks; returns how many of `offsets` were pending.
    fn apply_ack(&mut self, offsets: &[u64]) -> u64 {
        let mut n = 0;
        for o in offsets {
            if let Some(lease) = self.pending.remove(o) {
                self.deadlines.remove(&(lease.deadline_ms, *o));
                n += 1;
            }
        }
        n
    }

    /// Drops pending records below `first`.
    fn trim(&mut self, first: u64) {
        let keep = self.pending.split_off(&first);
        for (o, lease) in std::mem::replace(&mut self.pending, keep) {
            self.deadlines.remove(&(lease.deadline_ms, o));
        }
    }
}

/// One stream.
#[derive(Debug, Default)]
pub struct Stream {
    pub first_offset: u64,
    pub next_offset: u64,
    pub durable_next: u64,
    points: VecDeque<Point>,
    cum: u64,
    in_flight: VecDeque<InFlight>,
    pub retention: Retention,
    pub groups: BTreeMap<String, Group>,
    /// The entry behind the stream's state (appends, trims, retention).
    pub last_lsn: u64,
    /// (LSN, end offset) of the last compaction copy indexed, which the next copy may continue
    /// (`compact.rs`). A hint only: not in snapshots.
    last_copy: Option<(u64, u64)>,
}

/// A stream's figures, as `info` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub first_offset: u64,
    /// Past the last durable record.
    pub end_offset: u64,
    pub bytes: u64,
    pub groups: Vec<String>,
    pub retention: Retention,
}

/// What a visitor of entries wants next.
pub enum Flow {
    Next,
    Stop,
}

impl Stream {
    /// Retained, durable records.
    pub fn record_count(&self) -> u64 {
        self.durable_next - self.first_offset
    }

    fn settle_entry(&mut self, segments: &mut SegmentTable, pos: &Position, f: &Entry) {
        debug_assert_eq!(f.first, self.durable_next, "entries settle in offset order");
        let loc = segments.loc(pos);
        if f.first + u64::from(f.count) <= self.first_offset {
            // Trimmed before it was durable: nothing will read it.
            segments.mark_dead(loc, f.stored);
        } else {
            let point = match self.points.back() {
                None => true,
                // Another segment, or before the last point in this one (the last point was
                // moved to a compaction copy written after this entry), or a stride on.
                Some(p) => p.loc >> 32 != loc >> 32 || loc < p.loc || loc - p.loc >= POINT_STRIDE,
            };
            if point {
                self.points.push_back(Point {
                    offset: f.first,
                    loc,
                    at_ms: f.at_ms,
                    cum: self.cum,
                });
            }
            self.cum += f.stored;
        }
        self.durable_next = f.first + u64::from(f.count);
    }

    /// The in-flight entry `lsn` (the oldest: entries settle in LSN order) is durable at `pos`:
    /// it joins the index.
    fn settle(&mut self, segments: &mut SegmentTable, lsn: u64, pos: &Position) {
        match self.in_flight.front() {
            Some(f) if f.lsn == lsn => {
                let f = self.in_flight.pop_front().expect("front exists");
                self.settle_entry(segments, pos, &f.entry);
            }
            _ => debug_assert!(false, "entry {lsn} settled out of order"),
        }
    }

    fn apply_trim(&mut self, segments: &mut SegmentTable, before: u64) {
        debug_assert!(self.first_offset <= self.next_offset);
        let t = before.min(self.next_offset).max(self.first_offset);
        self.first_offset = t;
        while let Some(p) = self.points.front() {
            let next = self.points.get(1);
            if next.map_or(self.durable_next, |n| n.offset) > t {
                break;
            }
            segments.mark_dead(p.loc, next.map_or(self.cum, |n| n.cum) - p.cum);
            self.points.pop_front();
        }
        for g in self.groups.values_mut() {
            g.trim(t);
        }
    }

    /// Visits this stream's durable entries in order, starting at index point `i`, until `f`
    /// says stop or the durable records end. `f` gets the entry and its stored bytes as first
    /// written (a compaction copy's, less its 24-byte wrapper). Copies read as their originals;
    /// an entry of the stream wholly before the records expected next is skipped: one compaction
    /// moved away (a point it left in the victim is at the entry it relocated last), or a copy
    /// of older records that landed among a range's entries (`compact.rs`).
    fn visit<F: Fs>(
        &self,
        ns: &str,
        name: &str,
        log: &Log<F>,
        segments: &SegmentTable,
        mut i: usize,
        mut f: impl FnMut(&Append<'_>, u64) -> Flow,
    ) -> Result<(), String> {
        while i < self.points.len() {
            let p = self.points[i];
            let range_end = self.points.get(i + 1).map_or(self.durable_next, |n| n.offset);
            let (segment, mut offset) = segments.place(p.loc);
            let entries = log.segment_entries(segment).map_err(|e| e.to_string())?;
            let mut expect = p.offset;
            while expect < range_end {
                let (t, body, next) = entries.peek(offset)?;
                let (t, body) = compact::original(t, body);
                if t == ENTRY_STREAM_APPEND && is_of(body, ns, name) {
                    let (e, _) = entries.entry(offset)?;
                    let a = decode_append(compact::original(e.entry_type, e.body).1)?;
                    if a.end_offset() <= expect {
                        offset = next;
                        continue;
                    }
                    if a.first_offset != expect {
                        return Err(format!(
                            "stream {ns}/{name}: records from {expect} expected at segment {segment} offset {offset}, {} found",
                            a.first_offset
                        ));
                    }
                    expect = a.end_offset();
                    let stored = crate::log::format::stored_bytes(body.len()) as u64;
                    if let Flow::Stop = f(&a, stored) {
                        return Ok(());
                    }
                }
                offset = next;
            }
            i += 1;
        }
        Ok(())
    }

    /// The index point whose range holds `offset` (which must be retained and durable).
    fn point_of(&self, offset: u64) -> Option<usize> {
        self.points.partition_point(|p| p.offset <= offset).checked_sub(1)
    }

    /// Calls `f(offset, at_ms, payload)` for the durable records from `from` on (or from the
    /// first retained one), in order, until `f` returns false.
    pub fn read<F: Fs>(
        &self,
        ns: &str,
        name: &str,
        log: &Log<F>,
        segments: &SegmentTable,
        from: u64,
        mut f: impl FnMut(u64, u64, &[u8]) -> bool,
    ) -> Result<(), String> {
        let from = from.max(self.first_offset);
        if from >= self.durable_next {
            return Ok(());
        }
        let i = self
            .point_of(from)
            .ok_or_else(|| format!("stream {ns}/{name}: no index point for offset {from}"))?;
        self.visit(ns, name, log, segments, i, |a, _| {
            if a.end_offset() <= from {
                return Flow::Next;
            }
            let skip = from.saturating_sub(a.first_offset) as usize;
            for (k, payload) in a.records().enumerate().skip(skip) {
                if !f(a.first_offset + k as u64, a.head.at_ms, payload) {
                    return Flow::Stop;
                }
            }
            Flow::Next
        })
    }

    /// Log bytes of the entries holding retained records.
    pub fn bytes<F: Fs>(&self, ns: &str, name: &str, log: &Log<F>, segments: &SegmentTable) -> Result<u64, String> {
        if self.first_offset >= self.durable_next {
            return Ok(0);
        }
        let Some(i) = self.point_of(self.first_offset) else {
            return Ok(0);
        };
        let mut before = self.points[i].cum;
        let first = self.first_offset;
        self.visit(ns, name, log, segments, i, |a, stored| {
            if a.end_offset() <= first {
                before += stored;
                Flow::Next
            } else {
                Flow::Stop
            }
        })?;
        Ok(self.cum - before)
    }

    /// The first offset retention keeps at `now` (`first_offset` when nothing is to go).
    pub fn retention_cut<F: Fs>(
        &self,
        ns: &str,
        name: &str,
        log: &Log<F>,
        segments: &SegmentTable,
        now: u64,
    ) -> Result<u64, String> {
        let r = self.retention;
        let mut cut = self.first_offset;
        if self.first_offset >= self.durable_next || self.points.is_empty() {
            return Ok(cut);
        }
        if r.max_records > 0 {
            cut = cut.max(self.durable_next.saturating_sub(r.max_records));
        }
        if r.max_bytes > 0 && self.cum - self.points[0].cum > r.max_bytes {
            // The first entry such that it and the ones after it fit in max_bytes.
            let need = self.cum - r.max_bytes;
            let i = self.points.partition_point(|p| p.cum <= need).saturating_sub(1);
            let mut at = self.points[i].cum;
            let mut found = self.durable_next;
            self.visit(ns, name, log, segments, i, |a, stored| {
                if at >= need {
                    found = a.first_offset;
                    return Flow::Stop;
                }
                at += stored;
                Flow::Next
            })?;
            cut = cut.max(found);
        }
        if r.max_age_ms > 0 {
            let oldest = now.saturating_sub(r.max_age_ms);
            if self.points[0].at_ms < oldest {
                let i = self.points.partition_point(|p| p.at_ms < oldest).saturating_sub(1);
                let mut found = self.durable_next;
                self.visit(ns, name, log, segments, i, |a, _| {
                    if a.head.at_ms >= oldest {
                        found = a.first_offset;
                        return Flow::Stop;
                    }
                    Flow::Next
                })?;
                cut = cut.max(found);
            }
        }
        Ok(cut.min(self.durable_next))
    }
}

/// Every stream of a partition.
#[derive(Debug, Default)]
pub struct StreamStore {
    streams: HashMap<String, HashMap<String, Stream>>,
    pub segments: SegmentTable,
    /// The stream clock: the latest time an applied entry carried (a decision stamps its entry
    /// no earlier, so timestamps within a stream never decrease).
    clock: u64,
}

impl StreamStore {
    /// The latest time an applied entry carried.
    pub fn clock_ms(&self) -> u64 {
        self.clock
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<&Stream> {
        self.streams.get(ns)?.get(name)
    }

    pub fn get_mut(&mut self, ns: &str, name: &str) -> Option<&mut Stream> {
        self.streams.get_mut(ns)?.get_mut(name)
    }

    /// Stream names of a namespace, sorted.
    pub fn names(&self, ns: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .streams
            .get(ns)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Every (namespace, stream).
    pub fn keys(&self) -> Vec<(String, String)> {
        self.streams
            .iter()
            .flat_map(|(ns, m)| m.keys().map(move |n| (ns.clone(), n.clone())))
            .collect()
    }

    /// Streams per namespace.
    pub fn counts(&self) -> HashMap<String, u64> {
        self.streams
            .iter()
            .map(|(ns, m)| (ns.clone(), m.len() as u64))
            .collect()
    }

    /// Retained durable records of every stream.
    pub fn record_count(&self) -> u64 {
        self.streams
            .values()
            .flat_map(|m| m.values())
            .map(Stream::record_count)
            .sum()
    }

    /// Index points held (for the RAM figure).
    pub fn point_count(&self) -> usize {
        self.streams
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.points.len())
            .sum()
    }

    /// Bytes of this shard's stream entries that nothing needs any more.
    pub fn dead_bytes(&self) -> u64 {
        self.segments.dead.iter().sum()
    }

    /// Applies an APPEND of `count` records from `first` (which must be the stream's next
    /// offset); creates the stream on its first append.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_append(
        &mut self,
        ns: &str,
        name: &str,
        first: u64,
        count: u32,
        stored: u64,
        at_ms: u64,
        lsn: u64,
        at: At,
    ) -> Result<(), ReplayError> {
        let s = self
            .streams
            .entry(ns.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default();
        if first != s.next_offset {
            return Err(format!(
                "stream {ns}/{name}: append at offset {first}, but the next offset is {}",
                s.next_offset
            ));
        }
        s.next_offset = first + u64::from(count);
        s.last_lsn = lsn;
        let entry = Entry {
            first,
            count,
            stored,
            at_ms,
        };
        match at {
            At::Placed(pos) => {
                debug_assert!(s.in_flight.is_empty(), "replay has nothing in flight");
                s.settle_entry(&mut self.segments, &pos, &entry);
            }
            At::Pending(lsn) => s.in_flight.push_back(InFlight { lsn, entry }),
        }
        Ok(())
    }

    /// A stream's in-flight APPEND `lsn` is durable at `pos`.
    pub fn settle(&mut self, ns: &str, name: &str, lsn: u64, pos: &Position) {
        if let Some(s) = self.streams.get_mut(ns).and_then(|m| m.get_mut(name)) {
            s.settle(&mut self.segments, lsn, pos);
        }
    }

    pub fn apply_trim(&mut self, ns: &str, name: &str, before: u64, lsn: u64) -> Result<(), ReplayError> {
        let s = self
            .streams
            .get_mut(ns)
            .and_then(|m| m.get_mut(name))
            .ok_or_else(|| format!("trim of stream {ns}/{name}, which has no records"))?;
        if before > s.next_offset {
            return Err(format!(
                "trim of {ns}/{name} before {before}, past its end {}",
                s.next_offset
            ));
        }
        s.apply_trim(&mut self.segments, before);
        s.last_lsn = lsn;
        Ok(())
    }

    pub fn apply_retention(&mut self, ns: &str, name: &str, r: Retention, lsn: u64) -> Result<(), ReplayError> {
        let s = self
            .get_mut(ns, name)
            .ok_or_else(|| format!("retention of stream {ns}/{name}, which has no records"))?;
        s.retention = r;
        s.last_lsn = lsn;
        Ok(())
    }

    /// Applies a group operation; an ACK answers how many records were pending.
    pub fn apply_group(
        &mut self,
        ns: &str,
        name: &str,
        group: &str,
        op: &GroupOp<'_>,
        lsn: u64,
    ) -> Result<u64, ReplayError> {
        let s = self
            .get_mut(ns, name)
            .ok_or_else(|| format!("group {group} of stream {ns}/{name}, which has no records"))?;
        let missing = || format!("group {group} of stream {ns}/{name} does not exist");
        let mut acked = 0;
        match op {
            GroupOp::Create {
                cursor,
                ack_timeout_ms,
                max_deliveries,
            } => {
                if s.groups.contains_key(group) {
                    return Err(format!("group {group} of stream {ns}/{name} created twice"));
                }
                s.groups.insert(
                    group.to_string(),
                    Group {
                        cursor: *cursor,
                        ack_timeout_ms: *ack_timeout_ms,
                        max_deliveries: *max_deliveries,
                        ..Group::default()
                    },
                );
            }
            GroupOp::Read(rd) => {
                let (first, next) = (s.first_offset, s.next_offset);
                s.groups
                    .get_mut(group)
                    .ok_or_else(missing)?
                    .apply_read(rd, first, next)?;
            }
            GroupOp::Ack(offsets) => acked = s.groups.get_mut(group).ok_or_else(missing)?.apply_ack(offsets),
            GroupOp::Delete => {
                s.groups.remove(group).ok_or_else(missing)?;
            }
        }
        if let Some(g) = s.groups.get_mut(group) {
            g.last_lsn = lsn;
        }
        Ok(acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::At;

    fn pos(lsn: u64, segment: u64, offset: u64) -> Position {
        Position { lsn, segment, offset }
    }

    /// Appends `count` records as entry `lsn` of `stored` bytes at (segment, offset), as replay does.
    fn append(st: &mut StreamStore, lsn: u64, first: u64, count: u32, stored: u64, at: (u64, u64)) {
        st.apply_append(
            "ns",
            "s",
            first,
            count,
            stored,
            1000 + lsn,
            lsn,
            At::Placed(pos(lsn, at.0, at.1)),
        )
        .unwrap();
    }

    #[test]
    fn the_index_has_a_point_per_segment_and_per_stride() {
        let mut st = StreamStore::default();
        append(&mut st, 1, 0, 10, 1000, (1, 64));
        append(&mut st, 2, 10, 10, 1000, (1, 2000));
        append(&mut st, 3, 20, 10, 1000, (1, 64 + POINT_STRIDE));
        append(&mut st, 4, 30, 1, 100, (5, 64));
        let s = st.get("ns", "s").unwrap();
        let offsets: Vec<u64> = s.points.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            [0, 20, 30],
            "a point at the start, one a stride on, one in the new segment"
        );
        assert_eq!(s.points.iter().map(|p| p.cum).collect::<Vec<_>>(), [0, 2000, 3000]);
        assert_eq!(
            (s.first_offset, s.durable_next, s.next_offset, s.record_count()),
            (0, 31, 31, 31)
        );
        assert_eq!(s.point_of(19), Some(0));
        assert_eq!(s.point_of(20), Some(1));
        assert_eq!(s.point_of(30), Some(2));
        let err = st
            .apply_append("ns", "s", 40, 1, 10, 0, 9, At::Placed(pos(9, 5, 999)))
            .unwrap_err();
        assert!(err.contains("next offset is 31"), "{err}");
    }

    #[test]
    fn trims_drop_whole_point_ranges_and_count_their_bytes_dead() {
        let mut st = StreamStore::default();
        append(&mut st, 1, 0, 10, 1000, (1, 64));
        append(&mut st, 2, 10, 10, 1000, (2, 64));
        append(&mut st, 3, 20, 10, 1000, (3, 64));
        st.apply_trim("ns", "s", 15, 4).unwrap();
        let s = st.get("ns", "s").unwrap();
        assert_eq!((s.first_offset, s.record_count(), s.points.len()), (15, 15, 2));
        assert_eq!(st.dead_bytes(), 1000, "only the first entry is wholly trimmed");
        st.apply_trim("ns", "s", 3, 5).unwrap();
        assert_eq!(st.get("ns", "s").unwrap().first_offset, 15, "a trim never moves back");
        assert!(st.apply_trim("ns", "s", 31, 6).is_err(), "past the end is corruption");
        st.apply_trim("ns", "s", 30, 7).unwrap();
        let s = st.get("ns", "s").unwrap();
        assert_eq!((s.record_count(), s.points.len()), (0, 0));
        assert_eq!(st.dead_bytes(), 3000);
        append(&mut st, 8, 30, 5, 500, (3, 2000));
        let s = st.get("ns", "s").unwrap();
        assert_eq!((s.first_offset, s.record_count(), s.points.len()), (30, 5, 1));
        assert_eq!(s.points[0].cum, 3000);
        assert!(st.apply_trim("ns", "other", 1, 9).is_err());
    }

    #[test]
    fn groups_deliver_redeliver_give_up_ack_and_lose_trimmed_records() {
        let mut st = StreamStore::default();
        append(&mut st, 1, 0, 10, 1000, (1, 64));
        let create = GroupOp::Create {
            cursor: 0,
            ack_timeout_ms: 100,
            max_deliveries: 2,
        };
        st.apply_group("ns", "s", "g", &create, 2).unwrap();
        assert!(st.apply_group("ns", "s", "g", &create, 3).is_err(), "created twice");
        let read = |st: &StreamStore, now, count| {
            let s = st.get("ns", "s").unwrap();
            s.groups["g"].plan_read(now, count, s.first_offset, s.durable_next)
        };
        let apply = |st: &mut StreamStore, plan: ReadPlan, consumer, deadline_ms, lsn| {
            let op = GroupOp::Read(Read {
                consumer,
                deadline_ms,
                new_from: plan.new_from,
                cursor: plan.cursor,
                redelivered: plan.redelivered,
                given_up: plan.given_up,
            });
            st.apply_group("ns", "s", "g", &op, lsn).unwrap();
        };
        let p = read(&st, 0, 4);
        assert_eq!((p.new_from, p.cursor, p.redelivered.len()), (0, 4, 0));
        apply(&mut st, p, "a", 100, 4);
        let p = read(&st, 50, 4);
        assert_eq!((p.new_from, p.cursor), (4, 8), "leases still run: new records only");
        apply(&mut st, p, "b", 150, 5);
        let acked = st
            .apply_group("ns", "s", "g", &GroupOp::Ack(vec![1, 1, 99]), 6)
            .unwrap();
        assert_eq!(acked, 1);
        let p = read(&st, 120, 10);
        assert_eq!(p.redelivered, [0, 2, 3], "a's leases ran out; b's did not");
        assert_eq!((p.new_from, p.cursor), (8, 10));
        apply(&mut st, p, "b", 220, 7);
        let g = &st.get("ns", "s").unwrap().groups["g"];
        assert_eq!(
            (g.deliveries(0), g.deliveries(8), g.pending_count()),
            (Some(2), Some(1), 9)
        );
        assert_eq!(g.consumers(), ["a", "b"]);
        let p = read(&st, 300, 10);
        assert_eq!(p.given_up, [0, 2, 3], "delivered max_deliveries times: given up");
        assert_eq!(p.redelivered, [4, 5, 6, 7, 8, 9]);
        apply(&mut st, p, "a", 400, 8);
        let g = &st.get("ns", "s").unwrap().groups["g"];
        assert_eq!(
            (g.dead_letters(), g.dead_letter_count, g.pending_count()),
            (vec![0, 2, 3], 3, 6)
        );
        st.apply_trim("ns", "s", 6, 9).unwrap();
        let g = &st.get("ns", "s").unwrap().groups["g"];
        assert_eq!(g.pending_count(), 4, "records 4 and 5 were trimmed");
        assert_eq!(g.deliveries(4), None);
        let bad = GroupOp::Read(Read {
            consumer: "a",
            deadline_ms: 1,
            new_from: 10,
            cursor: 10,
            redelivered: vec![4],
            given_up: vec![],
        });
        assert!(st.apply_group("ns", "s", "g", &bad, 10).is_err(), "4 is not pending");
        st.apply_group("ns", "s", "g", &GroupOp::Delete, 11).unwrap();
        assert!(st.apply_group("ns", "s", "g", &GroupOp::Delete, 12).is_err());
    }
}
