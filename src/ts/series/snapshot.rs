//! The time-series section of a partition's snapshot (`format-spec/snapshot-ts.md`): everything a
//! [`SeriesStore`] holds once every entry appended so far is applied and durable, so recovery
//! restores it and replays only the entries after the snapshot's LSN.
//!
//! What it owns: the byte layout of the section, written by [`SeriesStore::snapshot`] and read
//! back by [`SeriesStore::restore`].
//!
//! Invariants:
//! * Head, late-head and pending parts' points are written in full, each with the LSN of the
//!   `TS_POINTS` entry that wrote it, so no `TS_POINTS` entry at or before the snapshot is read
//!   again. Those entries' places are still written (counting no live bytes): when a later
//!   `TS_CHUNK`, `TS_COMMIT` or `TS_ABORT` leaves one without points, replay counts its bytes dead
//!   in its segment, as a full replay would.
//! * A chunk's place counts its entry's stored bytes live: compaction must keep that entry. A
//!   chunk compaction moved (`compact.rs`) is written with its copy's place and LSN; its own LSN
//!   stays its identity.
//! * What is not durable yet (a `Stored::Cut` chunk, a `TS_POINTS` entry in flight, an entry that
//!   died in flight) is written with a placeholder place ([`Enc::pending_place`]) that the
//!   snapshot writer fills once the entry is durable. Restored, everything is placed and settled.
//! * Deterministic: series by id, everything kept in hash maps sorted by key, so a restored store
//!   snapshots to the same bytes. One exception: dead bytes of an entry that died before its
//!   batch was durable are written apart (their segment is unknown yet); restored, they are
//!   counted in their segment's row, which is then a fixed point.
//! * Derived state is not written and is rebuilt exactly: the registry (line keys, tag index,
//!   measurements, interned namespaces) by defining the series in id order through
//!   [`SeriesStore::define`], as replay does; the chunks by place; how many points each entry
//!   still holds by counting the points that name it; the sample count; the total of dead bytes.
//! * Heads keep their start times (`since_ms`: the arrival of the write that started them, from
//!   its entry), and the partition's clock is written: a restored store is the replayed one.
//! * The committed batches the store remembers are written with their parts and their writes'
//!   arrival, so a restored partition answers "held" for a batch it committed at or before the
//!   snapshot's LSN while another participant's part is still pending.
//! * Version 1 (a whole shard's section, before per-partition state) is still read, for
//!   [`SeriesStore::split`]: its pending parts name participant shards, its committed batches
//!   carry no arrival times, and its heads' start times are the wall clock of the node that
//!   applied them (kept as they are).
//! * Decoding trusts nothing: every count is bounded by the bytes left before anything is
//!   allocated, every order and cross-reference the store relies on is checked, and arithmetic on
//!   decoded numbers is checked. Bad input is an error naming what was being read, never a panic.

use std::collections::{BTreeMap, HashMap};

use std::cmp::Reverse;

use super::{ChunkRef, Committed, EntryAt, Head, HeadPoint, LiveEntry, PendingPart, SeriesStore, Stored};
use crate::log::format::ENTRY_HEADER_BYTES;
use crate::log::Position;
use crate::partition::Partitioner;
use crate::snapshot::codec::{Dec, Enc, PLACE_BYTES};
use crate::ts::entry::{NewSeries, CHUNK_IN_ORDER, CHUNK_LATE};

/// Version of the section's layout: 2 since per-partition state (the clock, parts by count,
/// arrival times); 1 is still read.
pub const SECTION_VERSION: u32 = 2;

/// Longest namespace (as the log's entries allow).
const NAMESPACE_MAX_BYTES: usize = crate::names::NAME_MAX_BYTES;
/// Longest measurement, tag key or value, field (u16-prefixed in the log's entries).
const NAME_MAX_BYTES: usize = u16::MAX as usize;

/// Smallest encodings of the section's items, to bound counts before allocating.
const MIN_NAMESPACE_BYTES: usize = 4;
/// Namespace index, measurement, tag count, field, sealed flag, two heads (since, count), chunk
/// count.
const MIN_SERIES_BYTES: usize = 4 + 4 + 8 + 4 + 1 + 2 * (8 + 8) + 8;
const MIN_TAG_BYTES: usize = 4 + 4;
const HEAD_POINT_BYTES: usize = 8 + 8 + 8;
const CHUNK_BYTES: usize = 8 + 1 + 8 + 8 + 2 + 4 + PLACE_BYTES + 8;
const MIN_RETENTION_BYTES: usize = 4 + 4 + 8;
/// Batch, namespace, parts, participant count, point count.
const MIN_PENDING_BYTES: usize = 8 + 4 + 2 + 8 + 8;
const PARTICIPANT_BYTES: usize = 2;
const PART_POINT_BYTES: usize = 4 + 8 + 8 + 8;
const COMMITTED_BYTES: usize = 8 + 2;
const ENTRY_BYTES: usize = 8 + PLACE_BYTES + 8;
const DEAD_ROW_BYTES: usize = 8 + 8;
const DEAD_IN_FLIGHT_BYTES: usize = PLACE_BYTES + 8;

/// The place of an entry known by its ticket: its real place once its batch is durable, else a
/// placeholder for the snapshot writer to fill. `live` bytes count for compaction.
fn put_head(enc: &mut Enc, h: &Head) {
    enc.u64(h.since_ms);
    enc.count(h.points.len());
    for p in &h.points {
        enc.i64(p.ts);
        enc.f64(p.v);
        enc.u64(p.lsn);
    }
}

/// A head: sorted by timestamp, no timestamp twice, every point with the LSN of an entry.
fn get_head(dec: &mut Dec<'_>, what: &str) -> Result<Head, String> {
    let since_ms = dec.u64("head start time")?;
    let n = dec.count("head point count", HEAD_POINT_BYTES)?;
    let mut points: Vec<HeadPoint> = Vec::with_capacity(n);
    for _ in 0..n {
        let ts = dec.i64("head point time")?;
        let v = dec.f64("head point value")?;
        let lsn = dec.u64("head point LSN")?;
        if lsn == 0 {
            return Err(format!("{what}: a point of LSN 0"));
        }
        if points.last().is_some_and(|p| p.ts >= ts) {
            return Err(format!("{what}: point at {ts} out of order"));
        }
        points.push(HeadPoint { ts, v, lsn });
    }
    Ok(Head { points, since_ms })
}

/// A measurement, tag key or value or field: 1..=65535 bytes.
fn get_name<'a>(dec: &mut Dec<'a>, what: &str) -> Result<&'a str, String> {
    let s = dec.str(what)?;
    if s.is_empty() || s.len() > NAME_MAX_BYTES {
        return Err(format!("{what}: {} bytes, not 1..={NAME_MAX_BYTES}", s.len()));
    }
    Ok(s)
}

fn get_namespace<'a>(dec: &mut Dec<'a>, what: &str) -> Result<&'a str, String> {
    let s = dec.str(what)?;
    if s.is_empty() || s.len() > NAMESPACE_MAX_BYTES {
        return Err(format!("{what}: {} bytes, not 1..={NAMESPACE_MAX_BYTES}", s.len()));
    }
    Ok(s)
}

/// Stored bytes of an entry: a header and a body, padded to 8.
fn check_stored_bytes(bytes: u64, what: &str) -> Result<(), String> {
    if bytes <= ENTRY_HEADER_BYTES as u64 || !bytes.is_multiple_of(8) {
        return Err(format!("{what}: {bytes} is not the stored size of an entry"));
    }
    Ok(())
}

impl SeriesStore {
    /// Writes the whole store as it will be once every entry appended so far is durable
    /// (`format-spec/snapshot-ts.md`).
    pub fn snapshot(&self, enc: &mut Enc) {
        enc.u32(SECTION_VERSION);
        enc.u64(self.clock_ms);

        let mut names: Vec<&str> = self.namespaces.keys().map(|k| &**k).collect();
        names.sort_unstable();
        enc.count(names.len());
        for n in &names {
            enc.str(n);
        }

        enc.count(self.series.len());
        for s in &self.series {
            let ns = names
                .binary_search(&&*s.namespace)
                .expect("a series' namespace is interned when it is defined");
            enc.u32(ns as u32);
            enc.str(&s.measurement);
            enc.count(s.tags.len());
            for (k, v) in &s.tags {
                enc.str(k);
                enc.str(v);
            }
            enc.str(&s.field);
            match s.sealed_until {
                Some(t) => {
                    enc.bool(true);
                    enc.i64(t);
                }
                None => enc.bool(false),
            }
            put_head(enc, &s.head);
            put_head(enc, &s.late);
            enc.count(s.chunks.len());
            for c in &s.chunks {
                enc.u64(c.lsn);
                enc.u8(c.kind);
                enc.i64(c.first_ts);
                enc.i64(c.last_ts);
                enc.u16(c.count);
                enc.u32(c.bytes);
                match &c.stored {
                    Stored::Placed { loc, lsn } => {
                        let (segment, offset) = self.segments.place(*loc);
                        enc.place(segment, offset, u64::from(c.bytes));
                        // The LSN of the copy it was moved to; 0: its own entry.
                        enc.u64(if *lsn == c.lsn { 0 } else { *lsn });
                    }
                    Stored::Cut(_) => {
                        enc.pending_place(c.lsn);
                        enc.u64(0);
                    }
                }
            }
        }

        enc.count(self.retention.len());
        for ((ns, m), age) in &self.retention {
            enc.str(ns);
            enc.str(m);
            enc.u64(*age);
        }

        let mut batches: Vec<(u64, &PendingPart)> = self.pending.iter().map(|(b, p)| (*b, p)).collect();
        batches.sort_unstable_by_key(|(b, _)| *b);
        enc.count(batches.len());
        for (batch, p) in batches {
            enc.u64(batch);
            enc.str(&p.namespace);
            enc.u16(p.parts);
            enc.u16(p.part_count);
            enc.u64(p.at_ms);
            enc.count(p.points.len());
            for (id, ts, v, lsn) in &p.points {
                enc.u32(*id);
                enc.i64(*ts);
                enc.f64(*v);
                enc.u64(*lsn);
            }
        }

        let mut committed: Vec<(u64, u16, u64)> = self.committed.iter().map(|(b, c)| (*b, c.parts, c.at_ms)).collect();
        committed.sort_unstable();
        enc.count(committed.len());
        for (batch, parts, at_ms) in committed {
            enc.u64(batch);
            enc.u16(parts);
            enc.u64(at_ms);
        }

        let mut entries: Vec<(u64, &LiveEntry)> = self.entries.iter().map(|(l, e)| (*l, e)).collect();
        entries.sort_unstable_by_key(|(l, _)| *l);
        enc.count(entries.len());
        for (lsn, e) in entries {
            enc.u64(lsn);
            // The points are in this section: the entry itself is not needed (no live bytes).
            match &e.at {
                EntryAt::Placed(pos) => enc.place(pos.segment, pos.offset, 0),
                EntryAt::Pending => enc.pending_place(lsn),
            }
            enc.u64(e.bytes);
        }

        // Dead bytes per segment; those of entries that died in flight are written apart with a
        // placeholder (their segment is not known yet).
        let mut rows: BTreeMap<u64, u64> = BTreeMap::new();
        for (segment, dead) in self.segments.first_lsn.iter().zip(&self.segments.dead) {
            *rows.entry(*segment).or_default() += dead;
        }
        let mut in_flight: Vec<(u64, u64)> = self.dead_in_flight.clone();
        rows.retain(|_, dead| *dead > 0);
        in_flight.retain(|(_, bytes)| *bytes > 0);
        in_flight.sort_unstable();
        enc.count(rows.len());
        for (segment, dead) in rows {
            enc.u64(segment);
            enc.u64(dead);
        }
        enc.count(in_flight.len());
        for (lsn, bytes) in in_flight {
            enc.pending_place(lsn);
            enc.u64(bytes);
        }
    }

    /// Reads a store written by [`SeriesStore::snapshot`] (placeholders filled). Every chunk and
    /// entry comes back placed; replaying the entries after the snapshot then gives what a full
    /// replay would. Every series must belong to partition `partition` (`None`: a whole shard's
    /// section of version 1, which the caller splits).
    pub fn decode(dec: &mut Dec<'_>, partition: Option<(u32, &Partitioner)>) -> Result<SeriesStore, String> {
        let version = dec.u32("time-series section version")?;
        if version != SECTION_VERSION && version != 1 {
            return Err(format!(
                "time-series section version {version} is not supported (only 1 and {SECTION_VERSION})"
            ));
        }
        if version == 1 && partition.is_some() {
            return Err("time-series section version 1 (a whole shard's) inside a partition's section".into());
        }
        let mut st = SeriesStore {
            clock_ms: if version == 1 { 0 } else { dec.u64("time-series clock")? },
            ..SeriesStore::default()
        };

        let n = dec.count("time-series namespace count", MIN_NAMESPACE_BYTES)?;
        let mut names: Vec<&str> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = get_namespace(dec, "time-series namespace")?;
            if names.last().is_some_and(|last| *last >= name) {
                return Err(format!("time-series namespace {name:?} out of order"));
            }
            names.push(name);
        }
        let mut used = vec![false; names.len()];

        let count = dec.count("series count", MIN_SERIES_BYTES)?;
        if count >= u32::MAX as usize {
            return Err(format!("series count {count}: ids are u32"));
        }
        st.series.reserve_exact(count);
        for i in 0..count {
            let id = i as u32 + 1;
            st.restore_series(dec, id, &names, &mut used)
                .map_err(|e| format!("series {id}: {e}"))?;
            if let Some((p, partitioner)) = partition {
                let s = st.get(id).ok_or("a series restored but not held")?;
                let mut key = Vec::new();
                super::line_key(&mut key, &s.measurement, s.tags.iter().map(|(k, v)| (&**k, &**v)));
                let home = super::line_key_partition(&key, partitioner);
                if home != p {
                    return Err(format!("series {id} belongs to partition {home}, not {p}"));
                }
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(format!("time-series namespace {:?} has no series", names[i]));
        }

        let n = dec.count("retention count", MIN_RETENTION_BYTES)?;
        let mut last: Option<(&str, &str)> = None;
        for _ in 0..n {
            let ns = get_namespace(dec, "retention namespace")?;
            let m = get_name(dec, "retention measurement")?;
            let age = dec.u64("retention max age")?;
            if age == 0 || age > i64::MAX as u64 {
                return Err(format!("retention of {ns:?} {m:?}: max age {age} is out of range"));
            }
            if last.is_some_and(|l| l >= (ns, m)) {
                return Err(format!("retention of {ns:?} {m:?} out of order"));
            }
            last = Some((ns, m));
            st.retention.insert((ns.into(), m.into()), age);
        }

        let n = dec.count("pending batch count", MIN_PENDING_BYTES)?;
        let mut last_batch = 0u64;
        for _ in 0..n {
            let batch = dec.u64("pending batch id")?;
            if batch <= last_batch {
                return Err(format!("pending batch {batch}: 0 or out of order"));
            }
            last_batch = batch;
            let part = st
                .restore_pending(dec, version)
                .map_err(|e| format!("pending batch {batch}: {e}"))?;
            st.pending.insert(batch, part);
        }

        let n = dec.count("committed batch count", COMMITTED_BYTES)?;
        let mut last_batch = 0u64;
        for _ in 0..n {
            let batch = dec.u64("committed batch id")?;
            let parts = dec.u16("committed batch parts")?;
            let at_ms = if version == 1 {
                0
            } else {
                dec.u64("committed batch arrival")?
            };
            if batch <= last_batch || parts == 0 {
                return Err(format!("committed batch {batch} ({parts} parts): 0 or out of order"));
            }
            last_batch = batch;
            st.committed.insert(batch, Committed { parts, at_ms });
            st.committed_order.push(Reverse((at_ms, batch)));
        }

        // How many points held here name each entry: what the entry's `remaining` must be.
        let mut named: HashMap<u64, u32> = HashMap::new();
        let heads = st
            .series
            .iter()
            .flat_map(|s| s.head.points.iter().chain(&s.late.points));
        let lsns = heads
            .map(|p| p.lsn)
            .chain(st.pending.values().flat_map(|p| p.points.iter().map(|x| x.3)));
        for lsn in lsns {
            let n = named.entry(lsn).or_default();
            *n = n.checked_add(1).ok_or("too many points of one entry")?;
        }
        let n = dec.count("points entry count", ENTRY_BYTES)?;
        let mut last_lsn = 0u64;
        for _ in 0..n {
            let lsn = dec.u64("points entry LSN")?;
            let (segment, offset) = dec.place("points entry place")?;
            let bytes = dec.u64("points entry bytes")?;
            if lsn <= last_lsn {
                return Err(format!("points entry {lsn}: 0 or out of order"));
            }
            last_lsn = lsn;
            check_stored_bytes(bytes, "points entry bytes")?;
            let remaining = named
                .remove(&lsn)
                .ok_or_else(|| format!("points entry {lsn} holds no point here"))?;
            let at = EntryAt::Placed(Position { lsn, segment, offset });
            st.entries.insert(lsn, LiveEntry { at, bytes, remaining });
        }
        if let Some(lsn) = named.keys().min() {
            return Err(format!("points of entry {lsn}, which is not listed"));
        }

        let n = dec.count("dead segment count", DEAD_ROW_BYTES)?;
        let mut last_segment = 0u64;
        for _ in 0..n {
            let segment = dec.u64("dead segment")?;
            let dead = dec.u64("dead segment bytes")?;
            if segment <= last_segment || dead == 0 {
                return Err(format!("dead bytes of segment {segment} ({dead}): 0 or out of order"));
            }
            last_segment = segment;
            st.add_dead(segment, dead)?;
        }
        let n = dec.count("dead entry count", DEAD_IN_FLIGHT_BYTES)?;
        for _ in 0..n {
            let (segment, _) = dec.place("dead entry place")?;
            let bytes = dec.u64("dead entry bytes")?;
            check_stored_bytes(bytes, "dead entry bytes")?;
            st.add_dead(segment, bytes)?;
        }

        st.samples = st.series.iter().map(|s| s.samples()).sum();
        Ok(st)
    }

    /// Reads series `id` (the next one) and defines it, as replay does.
    fn restore_series(&mut self, dec: &mut Dec<'_>, id: u32, names: &[&str], used: &mut [bool]) -> Result<(), String> {
        let ns_index = dec.u32("namespace index")? as usize;
        let ns = *names
            .get(ns_index)
            .ok_or_else(|| format!("namespace {ns_index} of {}", names.len()))?;
        used[ns_index] = true;
        let measurement = get_name(dec, "measurement")?;
        let tag_count = dec.count("tag count", MIN_TAG_BYTES)?;
        if tag_count > usize::from(u16::MAX) {
            return Err(format!("{tag_count} tags"));
        }
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(tag_count);
        for _ in 0..tag_count {
            let k = get_name(dec, "tag key")?;
            let v = get_name(dec, "tag value")?;
            if tags.last().is_some_and(|(last, _)| *last >= k) {
                return Err(format!("tag {k:?} not sorted by key, or repeated"));
            }
            tags.push((k, v));
        }
        let field = get_name(dec, "field")?;
        self.define(
            ns,
            &NewSeries {
                id,
                measurement,
                tags,
                field,
            },
        )?;

        let sealed_until = if dec.bool("sealed flag")? {
            Some(dec.i64("sealed until")?)
        } else {
            None
        };
        let head = get_head(dec, "head")?;
        let late = get_head(dec, "late head")?;
        if let (Some(p), Some(t)) = (head.points.first(), sealed_until) {
            if p.ts <= t {
                return Err(format!("head point at {} is not after the sealed end {t}", p.ts));
            }
        }
        if let Some(p) = late.points.last() {
            if sealed_until.is_none_or(|t| p.ts > t) {
                return Err(format!("late point at {} is not at or before the sealed end", p.ts));
            }
        }

        let n = dec.count("chunk count", CHUNK_BYTES)?;
        let mut chunks: Vec<ChunkRef> = Vec::with_capacity(n);
        let mut in_order_until: Option<i64> = None;
        for _ in 0..n {
            let lsn = dec.u64("chunk LSN")?;
            let kind = dec.u8("chunk kind")?;
            let first_ts = dec.i64("chunk first time")?;
            let last_ts = dec.i64("chunk last time")?;
            let count = dec.u16("chunk point count")?;
            let bytes = dec.u32("chunk bytes")?;
            let (segment, offset) = dec.place("chunk place")?;
            let copy = dec.u64("chunk copy LSN")?;
            if lsn == 0 || chunks.last().is_some_and(|c| c.lsn >= lsn) {
                return Err(format!("chunk {lsn}: LSN 0 or out of order"));
            }
            if kind > CHUNK_LATE {
                return Err(format!("chunk {lsn}: kind {kind}"));
            }
            // Distinct timestamps, sorted: `count` of them span at least `count - 1` ms.
            if count == 0 || i128::from(last_ts) - i128::from(first_ts) < i128::from(count) - 1 {
                return Err(format!("chunk {lsn}: {count} points {first_ts}..={last_ts}"));
            }
            check_stored_bytes(u64::from(bytes), "chunk bytes")?;
            // A copy is written after the entry it copies.
            if copy != 0 && copy <= lsn {
                return Err(format!("chunk {lsn}: read from a copy of LSN {copy}"));
            }
            if kind == CHUNK_IN_ORDER {
                // Each in-order chunk was cut from points after the one before.
                if in_order_until.is_some_and(|t| first_ts <= t) {
                    return Err(format!("chunk {lsn} overlaps the in-order chunk before it"));
                }
                in_order_until = Some(last_ts);
            }
            let at_lsn = if copy == 0 { lsn } else { copy };
            let loc = self.segments.loc(&Position {
                lsn: at_lsn,
                segment,
                offset,
            });
            if self.chunk_at.insert(loc, (id, lsn)).is_some() {
                return Err(format!("chunk {lsn}: another chunk is read from {segment}/{offset}"));
            }
            chunks.push(ChunkRef {
                lsn,
                kind,
                first_ts,
                last_ts,
                count,
                bytes,
                stored: Stored::Placed { loc, lsn: at_lsn },
            });
        }
        if let Some(t) = in_order_until {
            if sealed_until.is_none_or(|s| s < t) {
                return Err(format!(
                    "the sealed end {sealed_until:?} is before in-order chunk end {t}"
                ));
            }
        }

        let s = self.series.last_mut().ok_or("a series defined but not held")?;
        s.sealed_until = sealed_until;
        s.head = head;
        s.late = late;
        s.chunks = chunks;
        Ok(())
    }

    /// Reads a pending part (after its batch id): its points are of series of its namespace, and
    /// each of its parts is one entry.
    fn restore_pending(&self, dec: &mut Dec<'_>, version: u32) -> Result<PendingPart, String> {
        let ns = get_namespace(dec, "namespace")?;
        let interned = self
            .namespaces
            .get(ns)
            .ok_or_else(|| format!("namespace {ns:?} has no series"))?;
        let parts = dec.u16("part count")?;
        let (part_count, at_ms) = if version == 1 {
            // The participant shards: one per part of the write.
            let n = dec.count("participant count", PARTICIPANT_BYTES)?;
            for _ in 0..n.min(usize::from(u16::MAX)) {
                dec.u16("participant")?;
            }
            (n, 0)
        } else {
            (usize::from(dec.u16("parts of the write")?), dec.u64("write arrival")?)
        };
        if !(2..=usize::from(u16::MAX)).contains(&part_count) || usize::from(parts) > part_count || parts == 0 {
            return Err(format!("{parts} parts here of a write of {part_count} parts"));
        }
        let n = dec.count("point count", PART_POINT_BYTES)?;
        let mut points = Vec::with_capacity(n);
        let mut entries = 0u32;
        let mut last_lsn = 0u64;
        for _ in 0..n {
            let id = dec.u32("point series")?;
            let ts = dec.i64("point time")?;
            let v = dec.f64("point value")?;
            let lsn = dec.u64("point LSN")?;
            if !self
                .get(id)
                .is_some_and(|s| std::rc::Rc::ptr_eq(&s.namespace, interned))
            {
                return Err(format!("a point of series {id}, not defined in {ns:?}"));
            }
            // Parts were applied in log order, each one entry.
            if lsn < last_lsn || lsn == 0 {
                return Err(format!("a point of LSN {lsn} after LSN {last_lsn}"));
            }
            if lsn > last_lsn {
                entries += 1;
                last_lsn = lsn;
            }
            points.push((id, ts, v, lsn));
        }
        if entries != u32::from(parts) {
            return Err(format!("{parts} parts but points of {entries} entries"));
        }
        Ok(PendingPart {
            namespace: ns.into(),
            part_count: part_count as u16,
            at_ms,
            points,
            parts,
        })
    }

    /// Moves every series into the store of the partition its line key belongs to, renumbered
    /// there in id order (a whole shard's store, restored from a version-1 section). `into` holds
    /// every partition of the shard (each gets the retention settings); dead byte counts go to
    /// `dead_to`'s store. A write still pending is refused: the versions that wrote the section
    /// settle those at start, so the caller's message says to start one of them once.
    pub fn split(
        self,
        partitioner: &Partitioner,
        dead_to: u32,
        into: &mut BTreeMap<u32, SeriesStore>,
    ) -> Result<(), String> {
        if let Some(batch) = self.pending.keys().min() {
            return Err(format!(
                "a multi-part time-series write (batch {batch}) is still pending in it"
            ));
        }
        for target in into.values_mut() {
            for (k, age) in &self.retention {
                target.retention.insert(k.clone(), *age);
            }
        }
        // Points of each TS_POINTS entry per target partition.
        let mut named: BTreeMap<(u32, u64), u32> = BTreeMap::new();
        for (i, old) in self.series.iter().enumerate() {
            let mut key = Vec::new();
            super::line_key(&mut key, &old.measurement, old.tags.iter().map(|(k, v)| (&**k, &**v)));
            let p = super::line_key_partition(&key, partitioner);
            let target = into
                .get_mut(&p)
                .ok_or_else(|| format!("series {} belongs to partition {p}, not this shard's", i + 1))?;
            let id = target.next_id();
            target.define(
                &old.namespace,
                &NewSeries {
                    id,
                    measurement: &old.measurement,
                    tags: old.tags.iter().map(|(k, v)| (&**k, &**v)).collect(),
                    field: &old.field,
                },
            )?;
            let mut chunks = Vec::with_capacity(old.chunks.len());
            for c in &old.chunks {
                let Stored::Placed { loc, lsn } = c.stored else {
                    return Err(format!("chunk {} of series {} is not placed", c.lsn, i + 1));
                };
                let (segment, offset) = self.segments.place(loc);
                let new_loc = target.segments.loc(&Position { lsn, segment, offset });
                target.chunk_at.insert(new_loc, (id, c.lsn));
                chunks.push(ChunkRef {
                    stored: Stored::Placed { loc: new_loc, lsn },
                    ..c.clone()
                });
            }
            for pt in old.head.points.iter().chain(&old.late.points) {
                *named.entry((p, pt.lsn)).or_default() += 1;
            }
            let s = target.get_mut(id).ok_or("a series defined but not held")?;
            s.sealed_until = old.sealed_until;
            s.head = old.head.clone();
            s.late = old.late.clone();
            s.chunks = chunks;
            target.samples += s.samples();
        }
        // Each entry's bytes count once, in the first partition holding points of it.
        let mut counted = std::collections::HashSet::new();
        for ((p, lsn), remaining) in named {
            let Some(e) = self.entries.get(&lsn) else {
                return Err(format!("points of entry {lsn}, which is not listed"));
            };
            let bytes = if counted.insert(lsn) { e.bytes } else { 0 };
            if let Some(target) = into.get_mut(&p) {
                target.entries.insert(
                    lsn,
                    LiveEntry {
                        at: e.at,
                        bytes,
                        remaining,
                    },
                );
            }
        }
        let target = into.get_mut(&dead_to).ok_or("no partition for the dead bytes")?;
        for (segment, dead) in self.segments.first_lsn.iter().zip(&self.segments.dead) {
            target.add_dead(*segment, *dead)?;
        }
        Ok(())
    }

    /// Counts `bytes` dead in `segment` (and in the total).
    fn add_dead(&mut self, segment: u64, bytes: u64) -> Result<(), String> {
        let overflow = || format!("dead bytes of segment {segment} overflow");
        let i = self.segments.ordinal(segment) as usize;
        let dead = &mut self.segments.dead[i];
        *dead = dead.checked_add(bytes).ok_or_else(overflow)?;
        self.dead_bytes = self.dead_bytes.checked_add(bytes).ok_or_else(overflow)?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests;
