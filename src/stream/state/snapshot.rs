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
//! * Nothing in flight: an append whose batch is not durable yet is written as settled, as an
//!   index point of its own whose place is a placeholder ([`Enc::pending_place`]) that the
//!   snapshot writer fills once the entry is durable; restore makes it a durable point
//!   (`durable_next` is the next offset). An append trimmed before it was durable is left out,
//!   as settling it would leave it out of the index.
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
//!   the snapshot writer must count the stored bytes of the entry it fills it with as live in
//!   that entry's segment (an in-flight append is a point of its own, so that is its range).
//!
//! Not exact, by design (see the spec): an in-flight append becomes a point of its own where
//! settling it might have extended the previous point's range (its place is unknown when the
//! snapshot is taken), so the restored index can be finer than the live one; reads, byte counts
//! and retention cuts do not depend on how fine the index is. The bytes of appends trimmed
//! before they were durable are not counted dead in any segment (their segment is unknown).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{Group, Lease, Point, Stream, StreamStore, DEAD_LETTERS_KEPT};
use crate::api::path::NAME_MAX_BYTES;
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::snapshot::codec::{Dec, Enc, PLACE_BYTES};
use crate::stream::entry::{Retention, MAX_DELIVERIES, MAX_ITEMS};

/// Format version of the stream section.
pub const STREAM_SECTION_VERSION: u32 = 1;

// Smallest encoded items, so that `Dec::count` refuses counts the input cannot hold.
const MIN_NAME: usize = 4 + 1;
const MIN_SEGMENT: usize = 8 + 8;
const MIN_NAMESPACE: usize = MIN_NAME + 8;
/// name, first and next offset, cum, last_lsn, retention (3 × 8), point and group counts.
const MIN_STREAM: usize = MIN_NAME + 4 * 8 + 3 * 8 + 2 * 8;
const MIN_POINT: usize = 3 * 8 + PLACE_BYTES;
/// name, cursor, ack_timeout_ms, max_deliveries, last_lsn, consumer and pending counts,
/// dead_letter_count, dead letter count.
const MIN_GROUP: usize = MIN_NAME + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 8;
const MIN_PENDING: usize = 8 + 4 + 4 + 8;

/// Where a point's entry is, as the snapshot writes it.
enum PointAt {
    /// Settled: a `loc` of the store's segment table.
    Settled(u64),
    /// In flight: the entry's LSN.
    Pending(u64),
}

/// An index point as the snapshot writes it.
struct OutPoint {
    offset: u64,
    at_ms: u64,
    cum: u64,
    at: PointAt,
}

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
    pub fn restore(dec: &mut Dec<'_>) -> Result<StreamStore, String> {
        let version = dec.u32("stream section version")?;
        if version != STREAM_SECTION_VERSION {
            return Err(format!(
                "stream section: format version {version}, only {STREAM_SECTION_VERSION} is known"
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
                let s = Stream::restore(dec, clock, &mut segments).map_err(|e| format!("stream {ns}/{stream}: {e}"))?;
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
    /// The index as it will be once the appends in flight are durable, and the stream's entry
    /// bytes then. Mirrors `settle_entry`, except that every in-flight entry that is kept gets
    /// a point of its own (its place is not known yet).
    fn settled_points(&self) -> (Vec<OutPoint>, u64) {
        let mut points: Vec<OutPoint> = self
            .points
            .iter()
            .map(|p| OutPoint {
                offset: p.offset,
                at_ms: p.at_ms,
                cum: p.cum,
                at: PointAt::Settled(p.loc),
            })
            .collect();
        let mut cum = self.cum;
        for f in &self.in_flight {
            let e = &f.entry;
            if e.first + u64::from(e.count) > self.first_offset {
                points.push(OutPoint {
                    offset: e.first,
                    at_ms: e.at_ms,
                    cum,
                    at: PointAt::Pending(f.ticket.lsn),
                });
                cum += e.stored;
            }
        }
        (points, cum)
    }

    fn snapshot(&self, segments: &SegmentTable, enc: &mut Enc) {
        let (points, cum) = self.settled_points();
        enc.u64(self.first_offset);
        // Every appended record is durable in the snapshot: `durable_next` is `next_offset`.
        enc.u64(self.next_offset);
        enc.u64(cum);
        enc.u64(self.last_lsn);
        enc.u64(self.retention.max_age_ms);
        enc.u64(self.retention.max_bytes);
        enc.u64(self.retention.max_records);
        enc.count(points.len());
        for (i, p) in points.iter().enumerate() {
            enc.u64(p.offset);
            enc.u64(p.at_ms);
            enc.u64(p.cum);
            match p.at {
                PointAt::Settled(loc) => {
                    let (segment, offset) = segments.place(loc);
                    let range_end = points.get(i + 1).map_or(cum, |n| n.cum);
                    enc.place(segment, offset, range_end - p.cum);
                }
                PointAt::Pending(lsn) => enc.pending_place(lsn),
            }
        }
        enc.count(self.groups.len());
        for (name, g) in &self.groups {
            enc.str(name);
            g.snapshot(enc);
        }
    }

    fn restore(dec: &mut Dec<'_>, clock: u64, segments: &mut SegmentTable) -> Result<Stream, String> {
        let first_offset = dec.u64("first offset")?;
        let next_offset = dec.u64("next offset")?;
        if first_offset > next_offset {
            return Err(format!(
                "first offset {first_offset} is past the next offset {next_offset}"
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
            if offset >= next_offset {
                return Err(format!(
                    "index point {i} at offset {offset}, not below the next offset {next_offset}"
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
            None if first_offset < next_offset => {
                return Err(format!(
                    "records [{first_offset}, {next_offset}) retained, but no index point"
                ));
            }
            None => {}
            Some(p) => {
                let range_end = points.get(1).map_or(next_offset, |q| q.offset);
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
        let n = dec.count("groups", MIN_GROUP)?;
        let mut groups = BTreeMap::new();
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let g = name(dec, "group name", last)?;
            let group = Group::restore(dec, first_offset, next_offset).map_err(|e| format!("group {g}: {e}"))?;
            groups.insert(g.to_string(), group);
            last = Some(g);
        }
        Ok(Stream {
            first_offset,
            next_offset,
            durable_next: next_offset,
            points,
            cum,
            in_flight: VecDeque::new(),
            retention,
            groups,
            last_lsn,
            last_copy: None,
        })
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
pub(super) mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Durability;
    use crate::log::format::stored_bytes;
    use crate::log::metrics::LogMetrics;
    use crate::log::sim::{CrashMode, SimFs};
    use crate::log::{Log, LogOptions, Ticket};
    use crate::snapshot::codec::fill_place;
    use crate::stream::entry::*;
    use crate::stream::state::{At, ReadPlan, POINT_STRIDE};
    use crate::test_rng::Rng;

    /// A section's bytes, its placeholders (offset, LSN) and its live bytes per segment.
    pub(crate) type Encoded = (Vec<u8>, Vec<(usize, u64)>, BTreeMap<u64, u64>);

    pub(crate) fn encode(st: &StreamStore) -> Encoded {
        let mut enc = Enc::new();
        st.snapshot(&mut enc);
        enc.finish()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<StreamStore, String> {
        let mut dec = Dec::new(b);
        let st = StreamStore::restore(&mut dec)?;
        dec.done("stream section")?;
        Ok(st)
    }

    /// Nonzero dead bytes per segment (by first LSN).
    pub(crate) fn dead_map(st: &StreamStore) -> BTreeMap<u64, u64> {
        let t = &st.segments;
        t.first_lsn
            .iter()
            .zip(&t.dead)
            .filter(|&(_, &d)| d > 0)
            .map(|(&s, &d)| (s, d))
            .collect()
    }

    pub(crate) fn fnv(b: &[u8]) -> u64 {
        b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
        })
    }

    pub(crate) fn payload(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.next_u64() as u8).collect()
    }

    // ---- A shard on the simulated disk: entries written to a real log, applied as exec.rs does.

    pub(crate) fn opts() -> LogOptions {
        LogOptions {
            shard_id: 0,
            segment_bytes: 1024 * 1024,
            batch_max_bytes: 512 * 1024,
            durability: Durability::Sync,
            flush_interval: Duration::from_millis(5),
            commit_wait: Duration::ZERO,
            repair: false,
        }
    }

    pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
    }

    /// Opens the log on `fs`, replaying what it holds into `st` (a full replay), and starts its
    /// flusher.
    pub(crate) async fn open_log(fs: SimFs, st: &mut StreamStore) -> (Rc<Log<SimFs>>, monoio::task::JoinHandle<()>) {
        let metrics = Arc::new(LogMetrics::default());
        let (log, _) = crate::log::open(fs, PathBuf::from("/data/shard-000"), opts(), metrics, 0, |e, pos| {
            st.replay(e, pos).map(drop)
        })
        .await
        .expect("open the log");
        let log = Rc::new(log);
        let flusher = monoio::spawn(log.clone().run_flusher());
        (log, flusher)
    }

    pub(crate) const STREAMS: [(&str, &str); 5] = [("a", "s1"), ("a", "s2"), ("b", "s1"), ("b", "t"), ("c", "x")];
    pub(crate) const GROUPS: [&str; 2] = ["g1", "g2"];
    pub(crate) const CONSUMERS: [&str; 3] = ["w1", "w2", "w3"];

    pub(crate) struct Appended {
        pub(crate) ns: &'static str,
        pub(crate) name: &'static str,
        pub(crate) first: u64,
        pub(crate) end: u64,
        pub(crate) stored: u64,
        pub(crate) ticket: Ticket,
    }

    /// The shard: its log, and the stores every entry is applied to — the live one and, from
    /// the snapshot on, the restored one. Values both must answer alike are asked of both.
    pub(crate) struct Shard {
        pub(crate) log: Rc<Log<SimFs>>,
        pub(crate) stores: Vec<StreamStore>,
        pub(crate) now: u64,
        pub(crate) appends: Vec<Appended>,
    }

    impl Shard {
        /// The stream clock for an entry about to be written (entries are the only thing that
        /// moves it here, so that a full replay's clock is the live one).
        pub(crate) fn stamp(&mut self) -> u64 {
            let now = self.now;
            let at = self.stores[0].clock(now);
            for st in &mut self.stores[1..] {
                assert_eq!(st.clock(now), at, "stream clocks");
            }
            at
        }

        pub(crate) fn now(&self) -> u64 {
            self.now.max(self.stores[0].clock)
        }

        /// What every store answers alike.
        pub(crate) fn agreed<T: PartialEq + std::fmt::Debug>(&self, f: impl Fn(&StreamStore) -> T) -> T {
            let v = f(&self.stores[0]);
            for (i, st) in self.stores.iter().enumerate().skip(1) {
                assert_eq!(f(st), v, "store {i} answers otherwise than the live store");
            }
            v
        }

        pub(crate) fn stream(&self, ns: &str, name: &str) -> Option<&Stream> {
            self.stores[0].get(ns, name)
        }

        pub(crate) fn head(&mut self, ns: &'static str, name: &'static str) -> Head<'static> {
            let at_ms = self.stamp();
            Head {
                namespace: ns,
                name,
                at_ms,
            }
        }

        pub(crate) fn append(&mut self, ns: &'static str, name: &'static str, payloads: &[Vec<u8>]) {
            let head = self.head(ns, name);
            let first = self.agreed(|st| st.get(ns, name).map_or(0, |s| s.next_offset));
            let body = encode_append(&head, first, payloads);
            let ticket = self.log.append(ENTRY_STREAM_APPEND, &body).expect("append");
            let stored = stored_bytes(body.len()) as u64;
            let count = payloads.len() as u32;
            for st in &mut self.stores {
                st.apply_append(
                    ns,
                    name,
                    first,
                    count,
                    stored,
                    head.at_ms,
                    ticket.lsn,
                    At::InFlight(ticket.clone()),
                )
                .expect("apply append");
            }
            self.appends.push(Appended {
                ns,
                name,
                first,
                end: first + u64::from(count),
                stored,
                ticket,
            });
        }

        pub(crate) fn trim(&mut self, ns: &'static str, name: &'static str, before: u64) {
            let head = self.head(ns, name);
            let t = self
                .log
                .append(ENTRY_STREAM_TRIM, &encode_trim(&head, before))
                .expect("trim");
            for st in &mut self.stores {
                st.apply_trim(ns, name, before, t.lsn).expect("apply trim");
            }
        }

        pub(crate) fn retention(&mut self, ns: &'static str, name: &'static str, r: Retention) {
            let head = self.head(ns, name);
            let t = self
                .log
                .append(ENTRY_STREAM_RETENTION, &encode_retention(&head, &r))
                .expect("retention");
            for st in &mut self.stores {
                st.apply_retention(ns, name, r, t.lsn).expect("apply retention");
            }
        }

        /// As exec.rs enforces retention: a trim to the cut the limits give now.
        pub(crate) fn enforce_retention(&mut self, ns: &'static str, name: &'static str) {
            let (log, now) = (self.log.clone(), self.now());
            let cut = self.agreed(|st| {
                let s = st.get(ns, name).expect("stream");
                s.retention_cut(ns, name, &log, &st.segments, now)
                    .expect("retention cut")
            });
            if cut > self.stream(ns, name).expect("stream").first_offset {
                self.trim(ns, name, cut);
            }
        }

        pub(crate) fn group(
            &mut self,
            ns: &'static str,
            name: &'static str,
            group: &'static str,
            op: GroupOp<'_>,
        ) -> u64 {
            let head = self.head(ns, name);
            let t = self
                .log
                .append(group_entry_type(&op), &encode_group(&head, group, &op))
                .expect("group entry");
            let acked: Vec<u64> = self
                .stores
                .iter_mut()
                .map(|st| st.apply_group(ns, name, group, &op, t.lsn).expect("apply group"))
                .collect();
            assert!(acked.windows(2).all(|w| w[0] == w[1]), "acks counted alike: {acked:?}");
            acked[0]
        }

        /// As exec.rs reads a group: planned at now, written with every decision.
        pub(crate) fn read(
            &mut self,
            ns: &'static str,
            name: &'static str,
            group: &'static str,
            consumer: &'static str,
            n: usize,
        ) {
            let now = self.now();
            let plan: ReadPlan = self.agreed(|st| {
                let s = st.get(ns, name).expect("stream");
                s.groups[group].plan_read(now, n, s.first_offset, s.durable_next)
            });
            if plan.is_empty() {
                return;
            }
            let timeout = self.stream(ns, name).expect("stream").groups[group].ack_timeout_ms;
            let op = GroupOp::Read(Read {
                consumer,
                deadline_ms: now + timeout,
                new_from: plan.new_from,
                cursor: plan.cursor,
                redelivered: plan.redelivered,
                given_up: plan.given_up,
            });
            self.group(ns, name, group, op);
        }

        /// Waits until every entry is durable, then settles every stream.
        pub(crate) async fn durable(&mut self) {
            let last = self.log.next_lsn() - 1;
            self.log.wait_durable(last).await.expect("durable");
            for st in &mut self.stores {
                for (ns, name) in st.keys() {
                    st.settle(&ns, &name).expect("settle");
                }
            }
        }

        pub(crate) fn position(&self, lsn: u64) -> Position {
            let a = self.appends.iter().find(|a| a.ticket.lsn == lsn).expect("an append");
            a.ticket.placed().expect("durable").expect("placed")
        }

        /// One random operation, never waiting: appends of small and large records, trims,
        /// retention, group creation, reads (with redeliveries and give-ups as leases run out),
        /// acks and deletions.
        pub(crate) fn step(&mut self, rng: &mut Rng) {
            self.now += rng.below(40);
            let existing: Vec<(&'static str, &'static str)> = STREAMS
                .iter()
                .copied()
                .filter(|(ns, n)| self.stream(ns, n).is_some())
                .collect();
            let roll = rng.below(100);
            if roll < 40 || existing.is_empty() {
                let (ns, name) = *rng.pick(&STREAMS);
                let n = 1 + rng.index(4);
                let payloads: Vec<Vec<u8>> = (0..n)
                    .map(|_| {
                        let len = if rng.chance(10) {
                            20_000 + rng.index(20_000)
                        } else {
                            rng.index(3000)
                        };
                        payload(rng, len)
                    })
                    .collect();
                self.append(ns, name, &payloads);
                return;
            }
            let (ns, name) = *rng.pick(&existing);
            let s = self.stream(ns, name).expect("stream");
            let (first, durable) = (s.first_offset, s.durable_next);
            let groups: Vec<&'static str> = GROUPS.iter().copied().filter(|g| s.groups.contains_key(*g)).collect();
            match roll {
                40..=46 => self.trim(ns, name, first + rng.below(durable - first + 1)),
                47..=51 => {
                    let r = Retention {
                        max_age_ms: if rng.chance(30) { 300 + rng.below(3000) } else { 0 },
                        max_bytes: if rng.chance(40) { 60_000 + rng.below(300_000) } else { 0 },
                        max_records: if rng.chance(40) { 30 + rng.below(200) } else { 0 },
                    };
                    self.retention(ns, name, r);
                    self.enforce_retention(ns, name);
                }
                52..=56 => self.enforce_retention(ns, name),
                57..=63 => {
                    let g = *rng.pick(&GROUPS);
                    if !groups.contains(&g) {
                        let op = GroupOp::Create {
                            cursor: first + rng.below(durable - first + 1),
                            ack_timeout_ms: 20 + rng.below(200),
                            max_deliveries: 1 + rng.below(3) as u32,
                        };
                        self.group(ns, name, g, op);
                    }
                }
                64..=86 if !groups.is_empty() => {
                    let (g, c) = (*rng.pick(&groups), *rng.pick(&CONSUMERS));
                    self.read(ns, name, g, c, 1 + rng.index(12));
                }
                87..=97 if !groups.is_empty() => {
                    let g = *rng.pick(&groups);
                    let pending: Vec<u64> = s.groups[g].pending.keys().copied().collect();
                    let mut offsets = Vec::new();
                    if !pending.is_empty() {
                        offsets.extend((0..rng.index(6)).map(|_| *rng.pick(&pending)));
                    }
                    if offsets.is_empty() || rng.chance(20) {
                        offsets.push(durable + rng.below(3)); // not pending: ignored
                    }
                    self.group(ns, name, g, GroupOp::Ack(offsets));
                }
                98..=99 if !groups.is_empty() => {
                    let g = *rng.pick(&groups);
                    self.group(ns, name, g, GroupOp::Delete);
                }
                _ => {}
            }
        }
    }

    /// What a store shows: what `info`, reads, retention and group reads answer, and the state
    /// behind them — all but the index points (a restored index can be finer) and the entry
    /// byte total `cum` (its differences are what counts; `bytes` shows them).
    pub(crate) fn observe(st: &StreamStore, log: &Log<SimFs>) -> Vec<String> {
        let mut counts: Vec<(String, u64)> = st.counts().into_iter().collect();
        counts.sort();
        let mut out = vec![format!(
            "clock {} records {} counts {counts:?}",
            st.clock,
            st.record_count()
        )];
        let mut keys = st.keys();
        keys.sort();
        for (ns, name) in keys {
            let s = st.get(&ns, &name).expect("stream");
            let bytes = s.bytes(&ns, &name, log, &st.segments).expect("bytes");
            let mut records = Vec::new();
            s.read(&ns, &name, log, &st.segments, 0, |o, at, p| {
                records.push((o, at, fnv(p)));
                true
            })
            .expect("read");
            let mut middle = Vec::new();
            let from = (s.first_offset + s.durable_next) / 2;
            s.read(&ns, &name, log, &st.segments, from, |o, _, _| {
                middle.push(o);
                middle.len() < 3
            })
            .expect("read from the middle");
            let cuts: Vec<u64> = [st.clock, st.clock + 1000, st.clock + 100_000]
                .iter()
                .map(|&now| s.retention_cut(&ns, &name, log, &st.segments, now).expect("cut"))
                .collect();
            out.push(format!(
                "{ns}/{name}: offsets {}..{}..{} in flight {} last_lsn {} {:?} bytes {bytes} cuts {cuts:?} from {from}: {middle:?}",
                s.first_offset,
                s.durable_next,
                s.next_offset,
                s.in_flight.len(),
                s.last_lsn,
                s.retention,
            ));
            out.push(format!("{ns}/{name} records {records:?}"));
            for (gname, g) in &s.groups {
                let mut ids: Vec<(&String, &u32)> = g.consumer_ids.iter().collect();
                ids.sort();
                out.push(format!(
                    "{ns}/{name}/{gname}: cursor {} timeout {} max {} last_lsn {} pending {:?} deadlines {:?} \
                     consumers {:?} {ids:?} dead letters {:?} of {}",
                    g.cursor,
                    g.ack_timeout_ms,
                    g.max_deliveries,
                    g.last_lsn,
                    g.pending,
                    g.deadlines,
                    g.consumers,
                    g.dead_letters,
                    g.dead_letter_count
                ));
                for now in [0, st.clock, st.clock + 100, st.clock + 100_000] {
                    for count in [1, 5, 1000] {
                        let plan = g.plan_read(now, count, s.first_offset, s.durable_next);
                        out.push(format!("{ns}/{name}/{gname} read at {now} of {count}: {plan:?}"));
                    }
                }
            }
        }
        out
    }

    pub(crate) fn same(a: &[String], b: &[String], what: &str) {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x, y, "{what}");
        }
        assert_eq!(a.len(), b.len(), "{what}: lines");
    }

    /// Appends, trims and group operations left in flight: a stream made in flight, appends after
    /// settled points, appends wholly trimmed before they are durable, and one trimmed to its middle.
    fn in_flight_script(sh: &mut Shard, rng: &mut Rng) {
        let small = |rng: &mut Rng| -> Vec<Vec<u8>> {
            let n = 1 + rng.index(3);
            (0..n)
                .map(|_| {
                    let len = 1 + rng.index(2000);
                    payload(rng, len)
                })
                .collect()
        };
        for _ in 0..2 {
            let p = small(rng);
            sh.append("d", "fresh", &p);
        }
        for _ in 0..3 {
            let p = small(rng);
            sh.append("a", "s2", &p);
        }
        for _ in 0..3 {
            let p = small(rng);
            sh.append("a", "s1", &p);
        }
        let end_of_second = sh.appends[sh.appends.len() - 2].end;
        sh.trim("a", "s1", end_of_second);
        let four: Vec<Vec<u8>> = (0..4).map(|_| payload(rng, 100)).collect();
        sh.append("b", "t", &four);
        let p = small(rng);
        sh.append("b", "t", &p);
        let middle = sh.appends[sh.appends.len() - 2].first + 2;
        sh.trim("b", "t", middle);
        if sh.stream("b", "s1").is_some_and(|s| !s.groups.contains_key("g1")) {
            let first = sh.stream("b", "s1").expect("stream").first_offset;
            sh.group(
                "b",
                "s1",
                "g1",
                GroupOp::Create {
                    cursor: first,
                    ack_timeout_ms: 50,
                    max_deliveries: 2,
                },
            );
        }
        if sh.stream("b", "s1").is_some() {
            sh.read("b", "s1", "g1", "w9", 3);
        }
        for _ in 0..15 {
            sh.step(rng);
        }
    }

    #[test]
    fn a_restored_store_continues_like_the_live_store_and_a_full_replay() {
        let mut rt = runtime();
        rt.block_on(async {
            let fs = SimFs::new();
            let (log, _flusher) = open_log(fs.clone(), &mut StreamStore::default()).await;
            let mut sh = Shard {
                log,
                stores: vec![StreamStore::default()],
                now: 1_700_000_000_000,
                appends: Vec::new(),
            };
            let mut rng = Rng(0x5eed);
            for i in 0..300 {
                sh.step(&mut rng);
                // Otherwise entries stay in flight for the next steps.
                if i % 3 == 2 {
                    sh.durable().await;
                }
            }
            sh.durable().await;
            assert!(sh.log.segments().len() >= 2, "the scenario spans segments");
            in_flight_script(&mut sh, &mut rng);

            // The snapshot, with appends in flight.
            // (namespace, stream, first offset, LSN) of the appends in flight.
            let unresolved: Vec<(&str, &str, u64, u64)> = sh
                .appends
                .iter()
                .filter(|a| a.ticket.placed().is_none())
                .map(|a| (a.ns, a.name, a.first, a.ticket.lsn))
                .collect();
            let stored: BTreeMap<u64, u64> = sh.appends.iter().map(|a| (a.ticket.lsn, a.stored)).collect();
            let stored_of = |lsn: u64| stored[&lsn];
            let (buf, pending, live) = encode(&sh.stores[0]);
            let (mut kept, mut dropped) = (Vec::new(), Vec::new());
            for a in &sh.appends {
                if a.ticket.placed().is_none() {
                    let s = sh.stream(a.ns, a.name).expect("stream");
                    if a.end > s.first_offset {
                        kept.push(a.ticket.lsn);
                    } else {
                        dropped.push((a.ticket.lsn, a.stored));
                    }
                }
            }
            let mut placeholders: Vec<u64> = pending.iter().map(|p| p.1).collect();
            placeholders.sort_unstable();
            assert_eq!(
                placeholders, kept,
                "a placeholder per in-flight append still holding records"
            );
            assert!(kept.len() >= 8 && dropped.len() >= 2, "{kept:?} {dropped:?}");

            // (a) Filled with made-up places, the section restores and re-encodes byte for byte;
            // each in-flight append's bytes are live at its place.
            let fake = |lsn: u64| ((1u64 << 40) | lsn, 64 + 8 * lsn);
            let mut filled = buf.clone();
            for &(at, lsn) in &pending {
                let (segment, offset) = fake(lsn);
                fill_place(&mut filled, at, segment, offset);
            }
            let restored = decode(&filled).expect("restore");
            let (again, again_pending, again_live) = encode(&restored);
            assert!(again_pending.is_empty());
            assert!(again == filled, "re-encoding a restored store changes its bytes");
            let mut want = live.clone();
            for &(_, lsn) in &pending {
                *want.entry(fake(lsn).0).or_default() += stored_of(lsn);
            }
            assert_eq!(again_live, want);

            // The in-flight appends become durable; the real places fill the placeholders.
            sh.durable().await;
            let mut real = buf.clone();
            for &(at, lsn) in &pending {
                let pos = sh.position(lsn);
                fill_place(&mut real, at, pos.segment, pos.offset);
            }
            let restored = decode(&real).expect("restore");
            let (again, _, again_live) = encode(&restored);
            assert!(again == real, "re-encoding a restored store changes its bytes");

            // Live bytes are exactly, per segment, those of each stream's entries from its first
            // point on (where reads walk from).
            let mut truth: BTreeMap<u64, u64> = BTreeMap::new();
            for a in &sh.appends {
                let s = sh.stream(a.ns, a.name).expect("stream");
                if s.points.front().is_some_and(|p| a.first >= p.offset) {
                    *truth.entry(sh.position(a.ticket.lsn).segment).or_default() += a.stored;
                }
            }
            assert_eq!(again_live, truth, "live bytes per segment");
            let mut with_placeholders = live.clone();
            for &(_, lsn) in &pending {
                *with_placeholders.entry(sh.position(lsn).segment).or_default() += stored_of(lsn);
            }
            assert_eq!(
                with_placeholders, truth,
                "live bytes of the snapshot and its placeholders"
            );

            // Dead bytes: the live store's, but for appends trimmed before they were durable.
            let mut want_dead = dead_map(&sh.stores[0]);
            for &(lsn, stored) in &dropped {
                let d = want_dead.get_mut(&sh.position(lsn).segment).expect("counted dead");
                *d -= stored;
            }
            want_dead.retain(|_, d| *d > 0);
            assert_eq!(dead_map(&restored), want_dead, "dead bytes per segment");

            // The restored index is the settled live one, and a point for each in-flight append.
            for (ns, name) in sh.stores[0].keys() {
                let pts = |st: &StreamStore| -> Vec<(u64, (u64, u64), u64, u64)> {
                    let s = st.get(&ns, &name).expect("stream");
                    s.points
                        .iter()
                        .map(|p| (p.offset, st.segments.place(p.loc), p.at_ms, p.cum))
                        .collect()
                };
                let (live_points, restored_points) = (pts(&sh.stores[0]), pts(&restored));
                for p in &live_points {
                    assert!(restored_points.contains(p), "{ns}/{name}: point {p:?} lost");
                }
                for p in restored_points.iter().filter(|p| !live_points.contains(p)) {
                    let a = unresolved.iter().find(|a| a.0 == ns && a.1 == name && a.2 == p.0);
                    let a = a.unwrap_or_else(|| panic!("{ns}/{name}: point {p:?} from nowhere"));
                    let pos = sh.position(a.3);
                    assert_eq!(
                        p.1,
                        (pos.segment, pos.offset),
                        "{ns}/{name}: an in-flight append's place"
                    );
                }
            }

            // (b) From here on every entry goes to both stores; they answer alike throughout.
            same(
                &observe(&sh.stores[0], &sh.log),
                &observe(&restored, &sh.log),
                "restored",
            );
            sh.stores.push(restored);
            for i in 0..300 {
                sh.step(&mut rng);
                if i % 3 == 2 {
                    sh.durable().await;
                    same(
                        &observe(&sh.stores[0], &sh.log),
                        &observe(&sh.stores[1], &sh.log),
                        "after more entries",
                    );
                }
            }
            sh.durable().await;
            let (live_view, restored_view) = (observe(&sh.stores[0], &sh.log), observe(&sh.stores[1], &sh.log));
            same(&live_view, &restored_view, "at the end");

            // And as a full replay of the whole log does.
            let image = fs.crash(1, CrashMode::KeepAll);
            let mut full = StreamStore::default();
            let (log, _flusher) = open_log(image, &mut full).await;
            same(&observe(&full, &log), &restored_view, "full replay");
        });
    }

    // ---- A small store built as replay builds it, for damaged input.

    fn small_store() -> StreamStore {
        let mut st = StreamStore::default();
        let mut lsn = 0;
        let mut append = |st: &mut StreamStore, ns: &str, name: &str, count: u32, at: (u64, u64)| {
            lsn += 1;
            let first = st.get(ns, name).map_or(0, |s| s.next_offset);
            let at_ms = st.clock(5000 + 10 * lsn);
            let pos = Position {
                lsn,
                segment: at.0,
                offset: at.1,
            };
            st.apply_append(ns, name, first, count, 1000 + 8 * lsn, at_ms, lsn, At::Settled(pos))
                .expect("append");
        };
        append(&mut st, "a", "s", 10, (1, 64));
        append(&mut st, "a", "t", 5, (1, 1100));
        append(&mut st, "a", "s", 10, (1, 2200));
        append(&mut st, "a", "s", 10, (1, 64 + POINT_STRIDE));
        append(&mut st, "b", "s", 3, (9, 64));
        append(&mut st, "a", "s", 10, (9, 2000));
        append(&mut st, "a", "t", 5, (9, 3000));
        st.apply_trim("a", "t", 10, 20).expect("trim");
        st.apply_trim("a", "s", 12, 21).expect("trim");
        let r = Retention {
            max_age_ms: 0,
            max_bytes: 1 << 20,
            max_records: 30,
        };
        st.apply_retention("b", "s", r, 22).expect("retention");
        let create = GroupOp::Create {
            cursor: 12,
            ack_timeout_ms: 100,
            max_deliveries: 2,
        };
        st.apply_group("a", "s", "g", &create, 23).expect("create");
        st.apply_group("a", "s", "h", &create, 24).expect("create");
        let read = |st: &mut StreamStore, now: u64, consumer: &str, n: usize, lsn: u64| {
            let s = st.get("a", "s").expect("stream");
            let p = s.groups["g"].plan_read(now, n, s.first_offset, s.durable_next);
            let op = GroupOp::Read(Read {
                consumer,
                deadline_ms: now + 100,
                new_from: p.new_from,
                cursor: p.cursor,
                redelivered: p.redelivered,
                given_up: p.given_up,
            });
            st.apply_group("a", "s", "g", &op, lsn).expect("read");
        };
        read(&mut st, 6000, "w1", 4, 25);
        read(&mut st, 6050, "w2", 4, 26);
        st.apply_group("a", "s", "g", &GroupOp::Ack(vec![13]), 27).expect("ack");
        read(&mut st, 6150, "w2", 4, 28);
        read(&mut st, 6300, "w1", 8, 29);
        let g = &st.get("a", "s").expect("stream").groups["g"];
        assert!(g.dead_letter_count > 0 && g.pending_count() > 0 && g.consumer_count() == 2);
        st
    }

    #[test]
    fn an_empty_store_is_a_version_and_three_zeros() {
        let (buf, pending, live) = encode(&StreamStore::default());
        let mut want = 1u32.to_le_bytes().to_vec();
        want.extend_from_slice(&[0; 24]);
        assert_eq!((buf.clone(), pending.len(), live.len()), (want, 0, 0));
        let st = decode(&buf).expect("restore");
        assert_eq!((st.clock, st.keys().len(), st.segments.first_lsn.len()), (0, 0, 0));
    }

    #[test]
    fn damaged_sections_are_refused_without_panicking() {
        let st = small_store();
        let (buf, pending, _) = encode(&st);
        assert!(pending.is_empty());
        assert!(encode(&decode(&buf).expect("restore")).0 == buf);
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "a prefix of {n} bytes accepted");
        }
        let mut long = buf.clone();
        long.push(0);
        assert!(decode(&long).is_err(), "a byte left over");
        let mut version = buf.clone();
        version[0] = 2;
        assert!(decode(&version).err().expect("refused").contains("version 2"));
        // A flipped byte is refused, or it changed a value that no check can tell from another
        // (a clock, a deadline, a name's letter): then the store re-encodes to the same bytes.
        let (mut refused, mut accepted) = (0, 0);
        for i in 0..buf.len() {
            for mask in [0x01u8, 0x10, 0x80, 0xff] {
                let mut b = buf.clone();
                b[i] ^= mask;
                match decode(&b) {
                    Err(e) => {
                        assert!(!e.is_empty());
                        refused += 1;
                    }
                    Ok(st) => {
                        assert!(encode(&st).0 == b, "byte {i} ^ {mask:#x}: accepted, but not as written");
                        accepted += 1;
                    }
                }
            }
        }
        assert!(refused > accepted, "{refused} refused, {accepted} accepted");
        // Random damage anywhere, and random bytes after a valid version.
        let mut rng = Rng(11);
        for _ in 0..3000 {
            let mut b = buf.clone();
            for _ in 0..1 + rng.index(4) {
                let i = rng.index(b.len());
                b[i] = rng.next_u64() as u8;
            }
            if let Ok(st) = decode(&b) {
                assert!(encode(&st).0 == b);
            }
            let mut g = 1u32.to_le_bytes().to_vec();
            g.extend((0..rng.index(200)).map(|_| if rng.chance(50) { 0 } else { rng.next_u64() as u8 }));
            if let Ok(st) = decode(&g) {
                assert!(encode(&st).0 == g);
            }
        }
    }

    // ---- Sections written from format-spec/snapshot-stream.md alone, and the checks.

    #[derive(Clone)]
    struct SpecSection {
        version: u32,
        clock: u64,
        dead: Vec<(u64, u64)>,
        namespaces: Vec<(String, Vec<SpecStream>)>,
    }

    #[derive(Clone)]
    struct SpecStream {
        name: String,
        first: u64,
        next: u64,
        cum: u64,
        last_lsn: u64,
        retention: [u64; 3],
        /// offset, at_ms, cum, segment, segment offset
        points: Vec<[u64; 5]>,
        groups: Vec<SpecGroup>,
    }

    #[derive(Clone)]
    struct SpecGroup {
        name: String,
        cursor: u64,
        ack_timeout_ms: u64,
        max_deliveries: u32,
        last_lsn: u64,
        consumers: Vec<String>,
        /// offset, consumer, deliveries, deadline
        pending: Vec<(u64, u32, u32, u64)>,
        dead_letter_count: u64,
        dead_letters: Vec<u64>,
    }

    fn spec_bytes(s: &SpecSection) -> Vec<u8> {
        let mut b = Vec::new();
        let u64s = |b: &mut Vec<u8>, v: &[u64]| v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        let text = |b: &mut Vec<u8>, t: &str| {
            b.extend_from_slice(&(t.len() as u32).to_le_bytes());
            b.extend_from_slice(t.as_bytes());
        };
        b.extend_from_slice(&s.version.to_le_bytes());
        u64s(&mut b, &[s.clock, s.dead.len() as u64]);
        for &(segment, bytes) in &s.dead {
            u64s(&mut b, &[segment, bytes]);
        }
        u64s(&mut b, &[s.namespaces.len() as u64]);
        for (ns, streams) in &s.namespaces {
            text(&mut b, ns);
            u64s(&mut b, &[streams.len() as u64]);
            for st in streams {
                text(&mut b, &st.name);
                u64s(&mut b, &[st.first, st.next, st.cum, st.last_lsn]);
                u64s(&mut b, &st.retention);
                u64s(&mut b, &[st.points.len() as u64]);
                for p in &st.points {
                    u64s(&mut b, p);
                }
                u64s(&mut b, &[st.groups.len() as u64]);
                for g in &st.groups {
                    text(&mut b, &g.name);
                    u64s(&mut b, &[g.cursor, g.ack_timeout_ms]);
                    b.extend_from_slice(&g.max_deliveries.to_le_bytes());
                    u64s(&mut b, &[g.last_lsn, g.consumers.len() as u64]);
                    for c in &g.consumers {
                        text(&mut b, c);
                    }
                    u64s(&mut b, &[g.pending.len() as u64]);
                    for &(offset, consumer, deliveries, deadline) in &g.pending {
                        u64s(&mut b, &[offset]);
                        b.extend_from_slice(&consumer.to_le_bytes());
                        b.extend_from_slice(&deliveries.to_le_bytes());
                        u64s(&mut b, &[deadline]);
                    }
                    u64s(&mut b, &[g.dead_letter_count, g.dead_letters.len() as u64]);
                    u64s(&mut b, &g.dead_letters);
                }
            }
        }
        b
    }

    fn spec_base() -> SpecSection {
        let group = SpecGroup {
            name: "g".into(),
            cursor: 35,
            ack_timeout_ms: 100,
            max_deliveries: 3,
            last_lsn: 31,
            consumers: vec!["w2".into(), "w1".into()],
            pending: vec![(16, 0, 1, 1500), (30, 1, 2, 1400)],
            dead_letter_count: 5,
            dead_letters: vec![14, 12],
        };
        let s = SpecStream {
            name: "s".into(),
            first: 15,
            next: 40,
            cum: 4000,
            last_lsn: 30,
            retention: [0, 0, 25],
            points: vec![
                [10, 1000, 1000, 1, 64],
                [20, 1200, 2000, 9, 64],
                [30, 1300, 3000, 9, 70_000],
            ],
            groups: vec![group],
        };
        let t = SpecStream {
            name: "t".into(),
            first: 3,
            next: 3,
            cum: 500,
            last_lsn: 12,
            retention: [0; 3],
            points: vec![],
            groups: vec![],
        };
        SpecSection {
            version: 1,
            clock: 5000,
            dead: vec![(1, 100), (9, 50)],
            namespaces: vec![("a".into(), vec![s, t.clone()]), ("b".into(), vec![t])],
        }
    }

    #[test]
    fn a_section_written_from_the_spec_restores_and_re_encodes_identically() {
        let bytes = spec_bytes(&spec_base());
        let st = decode(&bytes).expect("restore");
        assert!(encode(&st).0 == bytes);
        let s = st.get("a", "s").expect("stream");
        assert_eq!(
            (s.first_offset, s.durable_next, s.next_offset, s.record_count()),
            (15, 40, 40, 25)
        );
        assert_eq!(s.points.len(), 3);
        assert_eq!(st.segments.place(s.points[2].loc), (9, 70_000));
        let g = &s.groups["g"];
        assert_eq!(g.consumers(), ["w1", "w2"]);
        assert_eq!((g.pending[&30].consumer, g.deliveries(30)), (1, Some(2)));
        assert_eq!(g.next_deadline(), Some(1400));
        assert_eq!((g.dead_letters(), g.dead_letter_count), (vec![14, 12], 5));
        assert_eq!(st.dead_bytes(), 150);
        assert_eq!(st.get("b", "t").expect("stream").record_count(), 0);
    }

    #[test]
    fn inconsistent_sections_are_refused() {
        type Damage = fn(&mut SpecSection);
        fn s(x: &mut SpecSection) -> &mut SpecStream {
            &mut x.namespaces[0].1[0]
        }
        fn g(x: &mut SpecSection) -> &mut SpecGroup {
            &mut s(x).groups[0]
        }
        let cases: [(&str, Damage); 30] = [
            ("format version 2", |x| x.version = 2),
            ("not in increasing order", |x| x.dead.swap(0, 1)),
            ("0 dead bytes", |x| x.dead[0].1 = 0),
            ("0, or not in increasing order", |x| x.dead[0].0 = 0),
            ("sorted order", |x| x.namespaces.swap(0, 1)),
            ("sorted order", |x| x.namespaces[1].0 = "a".into()),
            ("no streams", |x| x.namespaces[1].1.clear()),
            ("sorted order", |x| x.namespaces[0].1.swap(0, 1)),
            ("not 1..=128", |x| x.namespaces[1].0 = String::new()),
            ("not 1..=128", |x| s(x).name = "x".repeat(129)),
            ("past the next offset", |x| s(x).first = 41),
            ("more records than entries", |x| s(x).last_lsn = 0),
            ("does not follow", |x| s(x).points.swap(1, 2)),
            ("does not follow", |x| s(x).points[1][2] = 1000),
            ("does not follow", |x| s(x).points[1][1] = 999),
            ("not below the next offset", |x| s(x).next = 30),
            ("past the stream clock", |x| x.clock = 1250),
            ("do not hold the first offset", |x| s(x).first = 22),
            ("do not hold the first offset", |x| s(x).first = 9),
            ("no index point", |x| x.namespaces[1].1[0].next = 4),
            ("not past the last index point", |x| s(x).cum = 3000),
            ("never filled", |x| s(x).points[0][3] = 0),
            ("past any segment", |x| s(x).points[0][4] = 1 << 32),
            ("past the stream's next offset", |x| g(x).cursor = 41),
            ("max_deliveries 0", |x| g(x).max_deliveries = 0),
            ("listed twice", |x| g(x).consumers[1] = "w2".into()),
            ("outside [first offset 15, cursor 35)", |x| g(x).pending[1].0 = 35),
            ("not in increasing order", |x| g(x).pending.swap(0, 1)),
            ("leased to consumer 2 of 2", |x| g(x).pending[0].1 = 2),
            ("delivered 0 times", |x| g(x).pending[0].2 = 0),
        ];
        for (want, damage) in cases {
            let mut x = spec_base();
            damage(&mut x);
            let err = decode(&spec_bytes(&x))
                .err()
                .unwrap_or_else(|| panic!("accepted: {want}"));
            assert!(err.contains(want), "{want:?} expected, got {err:?}");
        }
        let more: [(&str, Damage); 4] = [
            ("outside [first offset 15", |x| g(x).pending[0].0 = 14),
            ("of 1 (at most 100", |x| g(x).dead_letter_count = 1),
            ("never delivered", |x| g(x).dead_letters[0] = 35),
            ("of 1000 (at most 100 are kept)", |x| {
                g(x).dead_letter_count = 1000;
                g(x).dead_letters = (0..101).collect();
            }),
        ];
        for (want, damage) in more {
            let mut x = spec_base();
            damage(&mut x);
            let err = decode(&spec_bytes(&x))
                .err()
                .unwrap_or_else(|| panic!("accepted: {want}"));
            assert!(err.contains(want), "{want:?} expected, got {err:?}");
        }
        // Counts the rest of the input cannot hold are refused before anything is allocated.
        let mut b = spec_bytes(&spec_base());
        b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = decode(&b).err().expect("refused");
        assert!(err.contains("cannot fit"), "{err}");
        // Errors name where they are.
        let mut x = spec_base();
        g(&mut x).pending[0].2 = 0;
        let err = decode(&spec_bytes(&x)).err().expect("refused");
        assert!(err.starts_with("stream a/s: group g: "), "{err}");
    }
}
