//! The stream section of a shard snapshot (`format-spec/snapshot-stream.md`): [`StreamStore`]
//! written as it will be once every entry appended so far is durable, and read back.
//!
//! What it owns: the section's byte layout, and the checks that a decoded section describes a
//! store the stream state machine could have reached (the invariants listed in `state.rs`), so
//! that applying the entries after the snapshot's LSN to the restored store gives what a full
//! replay would have given.
//!
//! Invariants of the encoding:
//! * Deterministic: namespaces, streams and groups by name, pending records by offset, segments
//!   by first LSN. The decoder accepts only that order (and refuses duplicates), so a section it
//!   accepts re-encodes to the same bytes: `snapshot(restore(s))` is `s`.
//! * Exact: the section holds the store as it is — the settled index (points, `cum`,
//!   `durable_next`) — and, apart, every append still in flight (its records' offsets, count,
//!   arrival, stored bytes, and a placeholder place ([`Enc::pending_place`]) that the snapshot
//!   writer fills once the entry is durable). Restore settles those appends in order with the
//!   live code (`settle_entry`): the restored store is the one the live store becomes once they
//!   are durable, index points and dead bytes included, so replicas restored from snapshots
//!   taken at different moments end in the same state as one that replayed everything.
//! * Places are (segment's first LSN, offset), never packed `loc`s: restore builds a fresh
//!   [`SegmentTable`] (segments with dead bytes first, in LSN order, then those of the points in
//!   the order they appear).
//! * Live bytes: a settled point's place carries the stored bytes of its whole range, i.e. this
//!   stream's entries from the point's entry to the next point's (the difference of their `cum`,
//!   or the stream's `cum` for the last point; a compaction copy counts as its original, see
//!   `compact.rs`). They are all in the point's segment, since each segment's first entry of a
//!   stream is a point. The first range may start with entries that
//!   are wholly trimmed: they are counted too, because reads walk from the point's place over
//!   them, so compaction must keep them where the place says. A placeholder carries no bytes:
//!   the snapshot writer counts the stored bytes of the entry it fills it with as live in that
//!   entry's segment.
//! * Version 1 (before per-partition state) is still read: it wrote each in-flight append as an
//!   index point of its own and left out those trimmed before they were durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{Group, Lease, Point, Stream, StreamStore, DEAD_LETTERS_KEPT};
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::names::NAME_MAX_BYTES;
use crate::partition::Partitioner;
use crate::snapshot::codec::{Dec, Enc, PLACE_BYTES};
use crate::stream::entry::{Retention, MAX_DELIVERIES, MAX_ITEMS};

/// Format version of the stream section: 2 since appends in flight are written apart; 1 is
/// still read.
pub const STREAM_SECTION_VERSION: u32 = 2;

// Smallest encoded items, so that `Dec::count` refuses counts the input cannot hold.
const MIN_NAME: usize = 4 + 1;
const MIN_SEGMENT: usize = 8 + 8;
const MIN_NAMESPACE: usize = MIN_NAME + 8;
/// name, first and next offset, cum, last_lsn, retention (3 × 8), point and group counts.
const MIN_STREAM: usize = MIN_NAME + 4 * 8 + 3 * 8 + 2 * 8;
const MIN_POINT: usize = 3 * 8 + PLACE_BYTES;
/// first offset, record count, at_ms, stored bytes, place.
const MIN_IN_FLIGHT: usize = 8 + 4 + 8 + 8 + PLACE_BYTES;
/// name, cursor, ack_timeout_ms, max_deliveries, last_lsn, consumer and pending counts,
/// dead_letter_count, dead letter count.
const MIN_GROUP: usize = MIN_NAME + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 8;
const MIN_PENDING: usize = 8 + 4 + 4 + 8;

impl StreamStore {
    /// Writes the whole store, as it will be once every appended entry is durable.
    pub fn snapshot(&self, enc: &mut Enc) {
        enc.u32(STREAM_SECTION_VERSION);
        enc.u64(self.clock);
        let mut dead: Vec<(u64, u64)> = self
            .segments
            .first_lsn
            .iter()
            .zip(&self.segments.dead)
            .filter(|&(_, &d)| d > 0)
            .map(|(&s, &d)| (s, d))
            .collect();
        dead.sort_unstable();
        enc.count(dead.len());
        for (segment, bytes) in dead {
            enc.u64(segment);
            enc.u64(bytes);
        }
        // A namespace without streams is never made (a stream is made with its namespace's
        // entry); were one there, it would be left out rather than refused on restore.
        let mut namespaces: Vec<(&String, &HashMap<String, Stream>)> =
            self.streams.iter().filter(|(_, m)| !m.is_empty()).collect();
        namespaces.sort_unstable_by(|a, b| a.0.cmp(b.0));
        enc.count(namespaces.len());
        for (ns, streams) in namespaces {
            enc.str(ns);
            let mut streams: Vec<(&String, &Stream)> = streams.iter().collect();
            streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
            enc.count(streams.len());
            for (name, s) in streams {
                enc.str(name);
                s.snapshot(&self.segments, enc);
            }
        }
    }

    /// Reads a section written by [`StreamStore::snapshot`] (placeholders filled). Fails, naming
    /// what it was reading, on short input, another format version, or a state the stream
    /// state machine cannot reach.
    ///
    /// Every stream must belong to partition `partition` (`None`: a whole shard's section, from a
    /// snapshot older than per-partition state, which the caller splits).
    pub fn decode(dec: &mut Dec<'_>, partition: Option<(u32, &Partitioner)>) -> Result<StreamStore, String> {
        let version = dec.u32("stream section version")?;
        if version != STREAM_SECTION_VERSION && version != 1 {
            return Err(format!(
                "stream section: format version {version}, only 1 and {STREAM_SECTION_VERSION} are known"
            ));
        }
        let clock = dec.u64("stream clock")?;
        let mut segments = SegmentTable::default();
        let n = dec.count("stream segments with dead bytes", MIN_SEGMENT)?;
        let mut after = 0;
        for _ in 0..n {
            let first_lsn = dec.u64("stream dead segment's first LSN")?;
            let bytes = dec.u64("stream dead segment's bytes")?;
            if first_lsn <= after {
                return Err(format!(
                    "stream dead segments: segment {first_lsn} after {after} (0, or not in increasing order)"
                ));
            }
            if bytes == 0 {
                return Err(format!("stream dead segments: segment {first_lsn} with 0 dead bytes"));
            }
            let ordinal = segments.ordinal(first_lsn) as usize;
            segments.dead[ordinal] = bytes;
            after = first_lsn;
        }
        let n = dec.count("stream namespaces", MIN_NAMESPACE)?;
        let mut streams = HashMap::with_capacity(n);
        let mut last_ns: Option<&str> = None;
        for _ in 0..n {
            let ns = name(dec, "stream namespace", last_ns)?;
            let m = dec.count("streams of a namespace", MIN_STREAM)?;
            if m == 0 {
                return Err(format!("stream namespace {ns}: no streams"));
            }
            let mut map = HashMap::with_capacity(m);
            let mut last: Option<&str> = None;
            for _ in 0..m {
                let stream = name(dec, "stream name", last)?;
                if let Some((p, partitioner)) = partition {
                    if partitioner.partition(ns, stream) != p {
                        return Err(format!("stream {ns}/{stream} is not partition {p}'s"));
                    }
                }
                let s = Stream::restore(dec, version, clock, &mut segments)
                    .map_err(|e| format!("stream {ns}/{stream}: {e}"))?;
                map.insert(stream.to_string(), s);
                last = Some(stream);
            }
            streams.insert(ns.to_string(), map);
            last_ns = Some(ns);
        }
        Ok(StreamStore {
            streams,
            segments,
            clock,
        })
    }
}

impl StreamStore {
    /// Moves every stream into the store of the partition it belongs to (a whole shard's store,
    /// restored from a snapshot older than per-partition state); each gets the shard's clock, and
    /// the dead byte counts go to `dead_to`'s store.
    pub fn split(
        self,
        partitioner: &Partitioner,
        dead_to: u32,
        into: &mut std::collections::BTreeMap<u32, StreamStore>,
    ) {
        let mut names: Vec<(String, String, Stream)> = self
            .streams
            .into_iter()
            .flat_map(|(ns, m)| m.into_iter().map(move |(name, s)| (ns.clone(), name, s)))
            .collect();
        names.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (ns, name, mut s) in names {
            let target = into.entry(partitioner.partition(&ns, &name)).or_default();
            target.clock = target.clock.max(self.clock);
            for p in s.points.iter_mut() {
                let (segment, offset) = self.segments.place(p.loc);
                p.loc = target.segments.loc(&Position {
                    lsn: 0,
                    segment,
                    offset,
                });
            }
            target.streams.entry(ns).or_default().insert(name, s);
        }
        let target = into.entry(dead_to).or_default();
        target.clock = target.clock.max(self.clock);
        for (segment, dead) in self.segments.first_lsn.iter().zip(&self.segments.dead) {
            let ordinal = target.segments.ordinal(*segment) as usize;
            target.segments.dead[ordinal] += dead;
        }
    }
}

/// Reads a name (1..=128 bytes of UTF-8) that must sort after `after`.
fn name<'a>(dec: &mut Dec<'a>, what: &str, after: Option<&str>) -> Result<&'a str, String> {
    let s = dec.str(what)?;
    if !(1..=NAME_MAX_BYTES).contains(&s.len()) {
        return Err(format!("{what}: {} bytes, not 1..={NAME_MAX_BYTES}", s.len()));
    }
    if let Some(a) = after {
        if s <= a {
            return Err(format!("{what}: {s:?} after {a:?} (duplicate, or not in sorted order)"));
        }
    }
    Ok(s)
}

impl Stream {
    fn snapshot(&self, segments: &SegmentTable, enc: &mut Enc) {
        enc.u64(self.first_offset);
        enc.u64(self.next_offset);
        enc.u64(self.durable_next);
        enc.u64(self.cum);
        enc.u64(self.last_lsn);
        enc.u64(self.retention.max_age_ms);
        enc.u64(self.retention.max_bytes);
        enc.u64(self.retention.max_records);
        enc.count(self.points.len());
        for (i, p) in self.points.iter().enumerate() {
            enc.u64(p.offset);
            enc.u64(p.at_ms);
            enc.u64(p.cum);
            let (segment, offset) = segments.place(p.loc);
            let range_end = self.points.get(i + 1).map_or(self.cum, |n| n.cum);
            enc.place(segment, offset, range_end - p.cum);
        }
        enc.count(self.in_flight.len());
        for f in &self.in_flight {
            enc.u64(f.entry.first);
            enc.u32(f.entry.count);
            enc.u64(f.entry.at_ms);
            enc.u64(f.entry.stored);
            enc.pending_place(f.lsn);
        }
        enc.count(self.groups.len());
        for (name, g) in &self.groups {
            enc.str(name);
            g.snapshot(enc);
        }
    }

    fn restore(dec: &mut Dec<'_>, version: u32, clock: u64, segments: &mut SegmentTable) -> Result<Stream, String> {
        let first_offset = dec.u64("first offset")?;
        let next_offset = dec.u64("next offset")?;
        if first_offset > next_offset {
            return Err(format!(
                "first offset {first_offset} is past the next offset {next_offset}"
            ));
        }
        // Version 1 wrote appends in flight as settled.
        let durable_next = if version == 1 {
            next_offset
        } else {
            dec.u64("durable next offset")?
        };
        if durable_next > next_offset {
            return Err(format!(
                "durable next offset {durable_next} is past the next offset {next_offset}"
            ));
        }
        let cum = dec.u64("entry bytes")?;
        let last_lsn = dec.u64("last LSN")?;
        // Every record came from an APPEND no later than the stream's last entry, of at most
        // MAX_ITEMS records (which also keeps offsets far from overflowing).
        if next_offset > (MAX_ITEMS as u64).saturating_mul(last_lsn) {
            return Err(format!(
                "next offset {next_offset}: more records than entries up to LSN {last_lsn} can hold"
            ));
        }
        let retention = Retention {
            max_age_ms: dec.u64("retention max_age_ms")?,
            max_bytes: dec.u64("retention max_bytes")?,
            max_records: dec.u64("retention max_records")?,
        };
        let n = dec.count("index points", MIN_POINT)?;
        let mut points: VecDeque<Point> = VecDeque::with_capacity(n);
        for i in 0..n {
            let offset = dec.u64("index point offset")?;
            let at_ms = dec.u64("index point at_ms")?;
            let point_cum = dec.u64("index point entry bytes")?;
            let (segment, segment_offset) = dec.place("index point place")?;
            if let Some(p) = points.back() {
                if offset <= p.offset || point_cum <= p.cum || at_ms < p.at_ms {
                    return Err(format!(
                        "index point {i} (offset {offset}, bytes before {point_cum}, at_ms {at_ms}) does not follow \
                         the one before (offset {}, bytes before {}, at_ms {})",
                        p.offset, p.cum, p.at_ms
                    ));
                }
            }
            if offset >= durable_next {
                return Err(format!(
                    "index point {i} at offset {offset}, not below the durable next offset {durable_next}"
                ));
            }
            if at_ms > clock {
                return Err(format!("index point {i} at {at_ms} ms, past the stream clock {clock}"));
            }
            let loc = segments.loc(&Position {
                lsn: 0,
                segment,
                offset: segment_offset,
            });
            points.push_back(Point {
                offset,
                loc,
                at_ms,
                cum: point_cum,
            });
        }
        match points.front() {
            None if first_offset < durable_next => {
                return Err(format!(
                    "records [{first_offset}, {durable_next}) retained, but no index point"
                ));
            }
            None => {}
            Some(p) => {
                let range_end = points.get(1).map_or(durable_next, |q| q.offset);
                if !(p.offset <= first_offset && first_offset < range_end) {
                    return Err(format!(
                        "the first index point's records [{}, {range_end}) do not hold the first offset {first_offset}",
                        p.offset
                    ));
                }
            }
        }
        if let Some(p) = points.back() {
            if p.cum >= cum {
                return Err(format!("entry bytes {cum}, not past the last index point's {}", p.cum));
            }
        }
        let mut s = Stream {
            first_offset,
            next_offset,
            durable_next,
            points,
            cum,
            in_flight: VecDeque::new(),
            retention,
            groups: BTreeMap::new(),
            last_lsn,
            last_copy: None,
        };
        // Appends that were in flight: settled here as the live store settles them.
        let n = if version == 1 {
            0
        } else {
            dec.count("appends in flight", MIN_IN_FLIGHT)?
        };
        let max_stored = crate::log::format::stored_bytes(crate::log::format::MAX_BODY_BYTES) as u64;
        let mut last_at = s.points.back().map_or(0, |p| p.at_ms);
        for i in 0..n {
            let first = dec.u64("in-flight append's first offset")?;
            let count = dec.u32("in-flight append's record count")?;
            let at_ms = dec.u64("in-flight append's at_ms")?;
            let stored = dec.u64("in-flight append's stored bytes")?;
            let (segment, offset) = dec.place("in-flight append's place")?;
            if first != s.durable_next || count == 0 || count as usize > MAX_ITEMS {
                return Err(format!(
                    "in-flight append {i}: {count} records from offset {first}, after offset {}",
                    s.durable_next
                ));
            }
            if first.checked_add(u64::from(count)).is_none_or(|end| end > next_offset) {
                return Err(format!(
                    "in-flight append {i}: records past the next offset {next_offset}"
                ));
            }
            if stored <= crate::log::format::ENTRY_HEADER_BYTES as u64
                || !stored.is_multiple_of(8)
                || stored > max_stored
                || s.cum.checked_add(stored).is_none()
            {
                return Err(format!(
                    "in-flight append {i}: {stored} is not the stored size of an entry"
                ));
            }
            if at_ms > clock || at_ms < last_at {
                return Err(format!(
                    "in-flight append {i} at {at_ms} ms: out of order, or past the clock"
                ));
            }
            last_at = at_ms;
            let pos = Position {
                lsn: 0,
                segment,
                offset,
            };
            // A trimmed append's bytes are counted dead in its segment: the count must not overflow.
            let loc = segments.loc(&pos);
            if segments.dead[(loc >> 32) as usize].checked_add(stored).is_none() {
                return Err(format!(
                    "in-flight append {i}: the dead bytes of segment {segment} overflow"
                ));
            }
            let entry = super::Entry {
                first,
                count,
                stored,
                at_ms,
            };
            s.settle_entry(segments, &pos, &entry);
        }
        if s.durable_next != next_offset {
            return Err(format!(
                "records up to {next_offset} appended, but only up to {} durable or in flight",
                s.durable_next
            ));
        }
        let n = dec.count("groups", MIN_GROUP)?;
        let mut groups = BTreeMap::new();
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let g = name(dec, "group name", last)?;
            let group = Group::restore(dec, first_offset, next_offset).map_err(|e| format!("group {g}: {e}"))?;
            groups.insert(g.to_string(), group);
            last = Some(g);
        }
        s.groups = groups;
        Ok(s)
    }
}

impl Group {
    fn snapshot(&self, enc: &mut Enc) {
        enc.u64(self.cursor);
        enc.u64(self.ack_timeout_ms);
        enc.u32(self.max_deliveries);
        enc.u64(self.last_lsn);
        // In id order: a lease names its consumer by the index in this list.
        enc.count(self.consumers.len());
        for c in &self.consumers {
            enc.str(c);
        }
        enc.count(self.pending.len());
        for (&offset, lease) in &self.pending {
            enc.u64(offset);
            enc.u32(lease.consumer);
            enc.u32(lease.deliveries);
            enc.u64(lease.deadline_ms);
        }
        enc.u64(self.dead_letter_count);
        enc.count(self.dead_letters.len());
        for &o in &self.dead_letters {
            enc.u64(o);
        }
    }

    fn restore(dec: &mut Dec<'_>, first_offset: u64, next_offset: u64) -> Result<Group, String> {
        let cursor = dec.u64("cursor")?;
        let ack_timeout_ms = dec.u64("ack_timeout_ms")?;
        let max_deliveries = dec.u32("max_deliveries")?;
        let last_lsn = dec.u64("last LSN")?;
        if cursor > next_offset {
            return Err(format!(
                "cursor {cursor} is past the stream's next offset {next_offset}"
            ));
        }
        if !(1..=MAX_DELIVERIES).contains(&max_deliveries) {
            return Err(format!("max_deliveries {max_deliveries}, not 1..={MAX_DELIVERIES}"));
        }
        let n = dec.count("consumers", MIN_NAME)?;
        let mut consumers = Vec::with_capacity(n);
        let mut consumer_ids = HashMap::with_capacity(n);
        for id in 0..n {
            let c = name(dec, "consumer name", None)?;
            if consumer_ids.insert(c.to_string(), id as u32).is_some() {
                return Err(format!("consumer {c:?} listed twice"));
            }
            consumers.push(c.to_string());
        }
        let n = dec.count("pending records", MIN_PENDING)?;
        let mut pending = BTreeMap::new();
        let mut deadlines = BTreeSet::new();
        let mut after: Option<u64> = None;
        for _ in 0..n {
            let offset = dec.u64("pending record offset")?;
            let consumer = dec.u32("pending record consumer")?;
            let deliveries = dec.u32("pending record deliveries")?;
            let deadline_ms = dec.u64("pending record deadline")?;
            if after.is_some_and(|a| offset <= a) || offset < first_offset || offset >= cursor {
                return Err(format!(
                    "pending offset {offset}: not in increasing order or outside [first offset {first_offset}, cursor {cursor})"
                ));
            }
            if consumer as usize >= consumers.len() {
                return Err(format!(
                    "pending offset {offset} leased to consumer {consumer} of {}",
                    consumers.len()
                ));
            }
            if deliveries == 0 {
                return Err(format!("pending offset {offset} delivered 0 times"));
            }
            pending.insert(
                offset,
                Lease {
                    consumer,
                    deliveries,
                    deadline_ms,
                },
            );
            deadlines.insert((deadline_ms, offset));
            after = Some(offset);
        }
        let dead_letter_count = dec.u64("dead letter count")?;
        let n = dec.count("dead letters", 8)?;
        if n > DEAD_LETTERS_KEPT || n as u64 > dead_letter_count {
            return Err(format!(
                "{n} dead letters kept, of {dead_letter_count} (at most {DEAD_LETTERS_KEPT} are kept)"
            ));
        }
        let mut dead_letters = VecDeque::with_capacity(n);
        for _ in 0..n {
            let o = dec.u64("dead letter offset")?;
            if o >= cursor {
                return Err(format!("dead letter {o} was never delivered (cursor {cursor})"));
            }
            dead_letters.push_back(o);
        }
        Ok(Group {
            cursor,
            ack_timeout_ms,
            max_deliveries,
            pending,
            deadlines,
            consumers,
            consumer_ids,
            dead_letters,
            dead_letter_count,
            last_lsn,
        })
    }
}

#[cfg(test)]
pub(super) mod tests;
