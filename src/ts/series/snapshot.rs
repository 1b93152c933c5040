//! The time-series section of a shard snapshot (`format-spec/snapshot-ts.md`): everything a
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
//!   snapshot writer fills once the entry is durable; a ticket already resolved is written at its
//!   place. Restored, everything is placed and settled.
//! * Deterministic: series by id, everything kept in hash maps sorted by key, so a restored store
//!   snapshots to the same bytes. One exception: dead bytes of an entry that died before its
//!   batch was durable are written apart (their segment is unknown yet); restored, they are
//!   counted in their segment's row, which is then a fixed point.
//! * Derived state is not written and is rebuilt exactly: the registry (line keys, tag index,
//!   measurements, interned namespaces) by defining the series in id order through
//!   [`SeriesStore::define`], as replay does; the chunks by place; how many points each entry
//!   still holds by counting the points that name it; the sample count; the total of dead bytes.
//! * Heads keep their start times (`since_ms`, wall clock): the age timer cuts a restored head when
//!   the live one would have been cut, where a full replay would restart its clock.
//! * The committed batches the store remembers (those replay saw, and those this process
//!   committed in the last [`super::COMMITTED_KEEP_MS`]) are written with their parts, so a
//!   restored shard answers "held" for a batch it committed at or before the snapshot's LSN while
//!   another participant's part is still pending. Restored, they are kept until the startup
//!   exchange is over (`forget_committed`), like those replay sees; commit times are not written.
//! * Decoding trusts nothing: every count is bounded by the bytes left before anything is
//!   allocated, every order and cross-reference the store relies on is checked, and arithmetic on
//!   decoded numbers is checked. Bad input is an error naming what was being read, never a panic.

use std::collections::{BTreeMap, HashMap};

use super::{ChunkRef, Committed, EntryAt, Head, HeadPoint, LiveEntry, PendingPart, SeriesStore, Stored};
use crate::log::format::ENTRY_HEADER_BYTES;
use crate::log::{Position, Ticket};
use crate::snapshot::codec::{Dec, Enc, PLACE_BYTES};
use crate::ts::entry::{NewSeries, CHUNK_IN_ORDER, CHUNK_LATE};

/// Version of the section's layout.
pub const SECTION_VERSION: u32 = 1;

/// Longest namespace (as the log's entries allow).
const NAMESPACE_MAX_BYTES: usize = crate::api::path::NAME_MAX_BYTES;
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
fn put_ticket_place(enc: &mut Enc, t: &Ticket, live: u64) {
    match t.placed() {
        Some(Ok(pos)) => enc.place(pos.segment, pos.offset, live),
        // In flight (or the log failed, and the snapshot will never be completed).
        _ => enc.pending_place(t.lsn),
    }
}

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
                    Stored::Cut(t, _) => {
                        put_ticket_place(enc, t, u64::from(c.bytes));
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
            enc.count(p.participants.len());
            for s in &p.participants {
                enc.u16(*s);
            }
            enc.count(p.points.len());
            for (id, ts, v, lsn) in &p.points {
                enc.u32(*id);
                enc.i64(*ts);
                enc.f64(*v);
                enc.u64(*lsn);
            }
        }

        let mut committed: Vec<(u64, u16)> = self.committed.iter().map(|(b, c)| (*b, c.parts)).collect();
        committed.sort_unstable();
        enc.count(committed.len());
        for (batch, parts) in committed {
            enc.u64(batch);
            enc.u16(parts);
        }

        let mut entries: Vec<(u64, &LiveEntry)> = self.entries.iter().map(|(l, e)| (*l, e)).collect();
        entries.sort_unstable_by_key(|(l, _)| *l);
        enc.count(entries.len());
        for (lsn, e) in entries {
            enc.u64(lsn);
            // The points are in this section: the entry itself is not needed (no live bytes).
            match &e.at {
                EntryAt::Placed(pos) => enc.place(pos.segment, pos.offset, 0),
                EntryAt::InFlight(t) => put_ticket_place(enc, t, 0),
            }
            enc.u64(e.bytes);
        }

        // Dead bytes per segment; those of entries that died in flight join their segment's row
        // once their batch is durable, the others are written apart with a placeholder.
        let mut rows: BTreeMap<u64, u64> = BTreeMap::new();
        for (segment, dead) in self.segments.first_lsn.iter().zip(&self.segments.dead) {
            *rows.entry(*segment).or_default() += dead;
        }
        let mut in_flight: Vec<(&Ticket, u64)> = Vec::new();
        for (t, bytes) in &self.dead_in_flight {
            match t.placed() {
                Some(Ok(pos)) => *rows.entry(pos.segment).or_default() += bytes,
                _ => in_flight.push((t, *bytes)),
            }
        }
        rows.retain(|_, dead| *dead > 0);
        in_flight.retain(|(_, bytes)| *bytes > 0);
        in_flight.sort_unstable_by_key(|(t, bytes)| (t.lsn, *bytes));
        enc.count(rows.len());
        for (segment, dead) in rows {
            enc.u64(segment);
            enc.u64(dead);
        }
        enc.count(in_flight.len());
        for (t, bytes) in in_flight {
            put_ticket_place(enc, t, 0);
            enc.u64(bytes);
        }
    }

    /// Reads a store written by [`SeriesStore::snapshot`] (placeholders filled). Every chunk and
    /// entry comes back placed; replaying the entries after the snapshot then gives what a full
    /// replay would.
    pub fn restore(dec: &mut Dec<'_>) -> Result<SeriesStore, String> {
        let version = dec.u32("time-series section version")?;
        if version != SECTION_VERSION {
            return Err(format!(
                "time-series section version {version} is not supported (only {SECTION_VERSION})"
            ));
        }
        let mut st = SeriesStore::default();

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
            if age == 0 {
                return Err(format!("retention of {ns:?} {m:?}: max age 0 is no retention"));
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
                .restore_pending(dec)
                .map_err(|e| format!("pending batch {batch}: {e}"))?;
            st.pending.insert(batch, part);
        }

        let n = dec.count("committed batch count", COMMITTED_BYTES)?;
        let mut last_batch = 0u64;
        for _ in 0..n {
            let batch = dec.u64("committed batch id")?;
            let parts = dec.u16("committed batch parts")?;
            if batch <= last_batch || parts == 0 {
                return Err(format!("committed batch {batch} ({parts} parts): 0 or out of order"));
            }
            last_batch = batch;
            st.committed.insert(batch, Committed { parts, at_ms: None });
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
    fn restore_pending(&self, dec: &mut Dec<'_>) -> Result<PendingPart, String> {
        let ns = get_namespace(dec, "namespace")?;
        let interned = self
            .namespaces
            .get(ns)
            .ok_or_else(|| format!("namespace {ns:?} has no series"))?;
        let parts = dec.u16("part count")?;
        let n = dec.count("participant count", PARTICIPANT_BYTES)?;
        if !(2..=usize::from(u16::MAX)).contains(&n) || usize::from(parts) > n || parts == 0 {
            return Err(format!("{parts} parts here of a write of {n} parts"));
        }
        let mut participants = Vec::with_capacity(n);
        for _ in 0..n {
            participants.push(dec.u16("participant")?);
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
            participants,
            points,
            parts,
        })
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
pub(super) mod tests {
    use std::ops::RangeBounds;
    use std::path::PathBuf;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::{line_key, process_ms, COMMITTED_KEEP_MS, HEAD_POINTS};
    use super::*;
    use crate::log::format::{stored_bytes, EntryRef};
    use crate::log::metrics::LogMetrics;
    use crate::log::sim::SimFs;
    use crate::log::{Log, LogError, LogOptions};
    use crate::snapshot::codec::fill_place;
    use crate::ts::entry::*;
    use crate::ts::exec::replay;
    use crate::ts::series::compact::tests::{unwrap_relocated, ENTRY_RELOCATED};

    /// Timestamps of the tests' points start here.
    pub(crate) const T0: i64 = 1_000_000;
    /// A clock far after every point: retention drops every durable chunk of its measurement.
    pub(crate) const NOW_FAR: u64 = 1 << 40;

    /// A line of a write: measurement, tags (sorted by key), field, time, value.
    pub(crate) type Line<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, i64, f64);

    pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
    }

    /// An encoded section: bytes, placeholders (offset, LSN), live bytes per segment.
    pub(crate) type Encoded = (Vec<u8>, Vec<(usize, u64)>, BTreeMap<u64, u64>);

    pub(crate) fn encode(st: &SeriesStore) -> Encoded {
        let mut e = Enc::new();
        st.snapshot(&mut e);
        e.finish()
    }

    /// Restores a buffer holding exactly one section.
    pub(crate) fn restore_all(buf: &[u8]) -> Result<SeriesStore, String> {
        let mut d = Dec::new(buf);
        let st = SeriesStore::restore(&mut d)?;
        d.done("time-series section")?;
        Ok(st)
    }

    pub(crate) fn dead_rows(st: &SeriesStore) -> BTreeMap<u64, u64> {
        let mut rows = BTreeMap::new();
        for (s, d) in st.segments.first_lsn.iter().zip(&st.segments.dead) {
            if *d > 0 {
                rows.insert(*s, *d);
            }
        }
        rows
    }

    /// An entry's place as (segment, offset), once known.
    fn at(e: &EntryAt) -> String {
        let t = match e {
            EntryAt::Placed(p) => return format!("{:?}", (p.segment, p.offset)),
            EntryAt::InFlight(t) => t,
        };
        match t.placed() {
            Some(Ok(p)) => format!("{:?}", (p.segment, p.offset)),
            _ => format!("in flight {}", t.lsn),
        }
    }

    /// Everything a store holds, places as (segment, offset), except the heads' start times (wall
    /// clock of whoever applied the points) and what replay saw committed (not in the live state).
    pub(crate) fn dump(st: &SeriesStore) -> Vec<String> {
        // The chunks by place are every placed chunk, nothing else.
        let mut placed: Vec<(u64, (u32, u64))> = Vec::new();
        for (i, s) in st.series.iter().enumerate() {
            for c in &s.chunks {
                if let Stored::Placed { loc, .. } = c.stored {
                    placed.push((loc, (i as u32 + 1, c.lsn)));
                }
            }
        }
        placed.sort_unstable();
        let mut index: Vec<(u64, (u32, u64))> = st.chunk_at.iter().map(|(l, c)| (*l, *c)).collect();
        index.sort_unstable();
        assert_eq!(placed, index, "chunk_at");
        let mut out = Vec::new();
        for (i, s) in st.series.iter().enumerate() {
            out.push(format!(
                "series {} {:?} {:?} {:?} {:?} sealed {:?}",
                i + 1,
                &*s.namespace,
                s.measurement,
                s.tags,
                s.field,
                s.sealed_until
            ));
            for (name, h) in [("head", &s.head), ("late", &s.late)] {
                let pts: Vec<(i64, u64, u64)> = h.points.iter().map(|p| (p.ts, p.v.to_bits(), p.lsn)).collect();
                out.push(format!("  {name} {pts:?}"));
            }
            for c in &s.chunks {
                let place = match &c.stored {
                    Stored::Placed { loc, lsn } => format!("{:?} lsn {lsn}", st.segments.place(*loc)),
                    Stored::Cut(t, _) => format!("{} lsn {}", at(&EntryAt::InFlight(t.clone())), c.lsn),
                };
                out.push(format!(
                    "  chunk {} kind {} {}..={} n {} bytes {} at {place}",
                    c.lsn, c.kind, c.first_ts, c.last_ts, c.count, c.bytes
                ));
            }
        }
        let mut lines: Vec<String> = st
            .by_line
            .iter()
            .flat_map(|(ns, m)| m.iter().map(move |(k, f)| format!("line {ns:?} {k:?} {f:?}")))
            .collect();
        lines.sort();
        out.extend(lines);
        out.push(format!("tags {:?}", st.tag_index));
        out.push(format!("measurements {:?}", st.measurements));
        out.push(format!("retention {:?}", st.retention));
        let mut pending: Vec<String> = st
            .pending
            .iter()
            .map(|(b, p)| {
                let pts: Vec<(u32, i64, u64, u64)> =
                    p.points.iter().map(|(i, t, v, l)| (*i, *t, v.to_bits(), *l)).collect();
                format!("pending {b} {:?} {:?} {} {pts:?}", p.namespace, p.participants, p.parts)
            })
            .collect();
        pending.sort();
        out.extend(pending);
        let mut entries: Vec<(u64, String, u64, u32)> = st
            .entries
            .iter()
            .map(|(l, e)| (*l, at(&e.at), e.bytes, e.remaining))
            .collect();
        entries.sort();
        out.push(format!("entries {entries:?}"));
        let mut ns: Vec<(String, String)> = st
            .namespaces
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ns.sort();
        out.push(format!("namespaces {ns:?}"));
        let in_flight: Vec<(String, u64)> = st
            .dead_in_flight
            .iter()
            .map(|(t, b)| (at(&EntryAt::InFlight(t.clone())), *b))
            .collect();
        out.push(format!(
            "dead {} {:?} in flight {in_flight:?}",
            st.dead_bytes,
            dead_rows(st)
        ));
        out.push(format!("samples {} cutting {:?}", st.samples, st.cutting));
        out
    }

    /// A shard's time series on a simulated log, driven as `exec.rs` drives the live one: each
    /// entry is appended, then applied at once with its ticket; heads that fill are cut.
    pub(crate) struct Shard {
        pub(crate) log: Rc<Log<SimFs>>,
        pub(crate) st: SeriesStore,
        /// Every entry appended: LSN → (type, body, ticket).
        pub(crate) appended: BTreeMap<u64, (u16, Vec<u8>, Ticket)>,
        pub(crate) now: u64,
    }

    impl Shard {
        pub(crate) async fn open() -> Shard {
            // Small segments and batches: the entries spread over several of each.
            let opts = LogOptions {
                shard_id: 0,
                segment_bytes: 64 * 1024,
                batch_max_bytes: 16 * 1024,
                durability: crate::config::Durability::Sync,
                flush_interval: Duration::from_millis(5),
                commit_wait: Duration::ZERO,
                repair: false,
            };
            let dir = PathBuf::from("/data/shard-000");
            let metrics = Arc::new(LogMetrics::default());
            let (log, _) = crate::log::open(SimFs::new(), dir, opts, metrics, 0, |_, _| Ok(()))
                .await
                .expect("open");
            let log = Rc::new(log);
            monoio::spawn(log.clone().run_flusher());
            Shard {
                log,
                st: SeriesStore::default(),
                appended: BTreeMap::new(),
                now: 5_000,
            }
        }

        pub(crate) async fn append(&mut self, entry_type: u16, body: &[u8]) -> Ticket {
            loop {
                match self.log.append(entry_type, body) {
                    Ok(t) => {
                        self.appended.insert(t.lsn, (entry_type, body.to_vec(), t.clone()));
                        return t;
                    }
                    Err(LogError::BatchFull) => self.durable().await,
                    Err(e) => panic!("append: {e:?}"),
                }
            }
        }

        /// Lets the flusher make every entry appended so far durable.
        pub(crate) async fn durable(&self) {
            if let Some((_, _, t)) = self.appended.values().next_back() {
                t.clone().await.expect("durable");
            }
        }

        pub(crate) fn pos(&self, lsn: u64) -> Position {
            let (_, _, t) = &self.appended[&lsn];
            t.placed().expect("durable").expect("placed")
        }

        /// A part of a write: series ids resolved as `exec::build_points` does (new series get
        /// the next ids), the `TS_POINTS` entry appended and applied, full heads cut.
        pub(crate) async fn write(&mut self, ns: &str, batch: u64, participants: &[u16], lines: &[Line<'_>]) -> u64 {
            let mut next = self.st.next_id();
            let mut fresh: Vec<(Vec<u8>, &str, u32)> = Vec::new();
            let mut defs: Vec<NewSeries<'_>> = Vec::new();
            let mut points = Vec::new();
            for &(m, tags, field, ts, v) in lines {
                let mut key = Vec::new();
                line_key(&mut key, m, tags.iter().copied());
                let known = self.st.lookup(ns, &key, field);
                let id = match known.or_else(|| fresh.iter().find(|(k, f, _)| *k == key && *f == field).map(|x| x.2)) {
                    Some(id) => id,
                    None => {
                        let id = next;
                        next += 1;
                        fresh.push((key, field, id));
                        defs.push(NewSeries {
                            id,
                            measurement: m,
                            tags: tags.to_vec(),
                            field,
                        });
                        id
                    }
                };
                points.push((id, ts, v));
            }
            let body = encode_points(ns, batch, participants, &defs, &points);
            let t = self.append(ENTRY_TS_POINTS, &body).await;
            let p = decode_points(&body).unwrap();
            let bytes = stored_bytes(body.len()) as u64;
            self.now += 1;
            let full = self
                .st
                .apply_points(&p, t.lsn, EntryAt::InFlight(t.clone()), bytes, self.now)
                .unwrap();
            for id in full {
                self.cut(id, CHUNK_IN_ORDER).await;
            }
            t.lsn
        }

        /// Cuts a head into a `TS_CHUNK`, as `exec::cut_heads` does.
        pub(crate) async fn cut(&mut self, id: u32, kind: u8) -> u64 {
            let chunk = self.st.cut(id, kind).expect("a head with points");
            let ns = self.st.get(id).unwrap().namespace.to_string();
            let body = encode_chunk(&ns, id, kind, &chunk);
            let t = self.append(ENTRY_TS_CHUNK, &body).await;
            let c = decode_chunk(&body).unwrap();
            let bytes = stored_bytes(body.len()) as u64;
            self.st
                .apply_chunk(&c, t.lsn, EntryAt::InFlight(t.clone()), bytes)
                .unwrap();
            t.lsn
        }

        pub(crate) async fn commit(&mut self, ns: &str, batch: u64) {
            self.append(ENTRY_TS_COMMIT, &encode_abort(ns, batch)).await;
            self.now += 1;
            for id in self.st.commit(ns, batch, self.now, false).unwrap() {
                self.cut(id, CHUNK_IN_ORDER).await;
            }
        }

        pub(crate) async fn abort(&mut self, ns: &str, batch: u64) {
            self.append(ENTRY_TS_ABORT, &encode_abort(ns, batch)).await;
            self.st.abort(batch);
        }

        pub(crate) async fn retention(&mut self, ns: &str, m: &str, age: u64) {
            self.append(ENTRY_TS_RETENTION, &encode_retention(ns, m, age)).await;
            self.st.set_retention(ns, m, age);
        }

        /// Drops what retention expires, as the shard timer does.
        pub(crate) async fn drop_expired(&mut self) -> usize {
            let expired = self.st.expired(NOW_FAR);
            for (id, lsns) in &expired {
                let ns = self.st.get(*id).unwrap().namespace.to_string();
                self.append(ENTRY_TS_DROP, &encode_drop(&ns, *id, lsns)).await;
                self.st.drop_chunks(&ns, *id, lsns).unwrap();
            }
            expired.len()
        }

        /// Replays the (durable) entries in `lsns` into `st`, as recovery does: a `RELOCATED`
        /// copy goes to [`SeriesStore::relocate`] with the original's type and body.
        pub(crate) fn replay_into(&self, st: &mut SeriesStore, lsns: impl RangeBounds<u64>) {
            for (lsn, (entry_type, body, _)) in self.appended.range(lsns) {
                if *entry_type == ENTRY_RELOCATED {
                    let (from, t, original) = unwrap_relocated(body).unwrap();
                    st.relocate(from, &self.pos(*lsn), t, original)
                        .unwrap_or_else(|e| panic!("entry {lsn}: {e}"));
                    continue;
                }
                let e = EntryRef {
                    lsn: *lsn,
                    entry_type: *entry_type,
                    flags: 0,
                    body,
                };
                assert_eq!(replay(st, &e, self.pos(*lsn)), Ok(true), "entry {lsn}");
            }
        }

        /// Reads a chunk from the log, checking that `st` places it where it was written (a
        /// `RELOCATED` copy reads as the original).
        pub(crate) fn load<'s>(
            &'s self,
            st: &'s SeriesStore,
        ) -> impl FnMut(u64, u64) -> Result<Vec<(i64, f64)>, String> + 's {
            move |loc, lsn| {
                let (entry_type, body, _) = self.appended.get(&lsn).ok_or("no such entry")?;
                let (entry_type, body) = if *entry_type == ENTRY_RELOCATED {
                    let (_, t, original) = unwrap_relocated(body)?;
                    (t, original)
                } else {
                    (*entry_type, &body[..])
                };
                let p = self.pos(lsn);
                if entry_type != ENTRY_TS_CHUNK || st.segments.place(loc) != (p.segment, p.offset) {
                    return Err(format!(
                        "chunk {lsn} read at {:?}, written at {p:?}",
                        st.segments.place(loc)
                    ));
                }
                let c = decode_chunk(body)?;
                crate::ts::chunk::decode(c.bytes).map_err(|e| e.to_string())
            }
        }

        /// What clients and the shard's timer and recovery see of `st`: listings, measurement
        /// stats, every series' points over several ranges, pending batches, retention, dead
        /// bytes.
        pub(crate) fn observe(&self, st: &SeriesStore) -> Vec<String> {
            let mut out = Vec::new();
            for ns in ["app", "ops", "nothing"] {
                out.push(format!("{ns}: {:?}", st.measurement_stats(ns)));
                for (n, m) in st.measurement_names() {
                    if n != ns {
                        continue;
                    }
                    for id in st.select(ns, &m, &[]) {
                        let s = st.get(id).unwrap();
                        out.push(format!("  {m} {id} {:?} {} {}", s.tags, s.field, s.samples()));
                    }
                    out.push(format!("  {m} host=a {:?}", st.select(ns, &m, &[("host", "a")])));
                    out.push(format!("  {m} retention {:?}", st.retention(ns, &m)));
                }
            }
            let ranges = [(i64::MIN, i64::MAX), (T0, T0 + 700), (T0 + 700, i64::MAX), (0, 5)];
            let mut pts = Vec::new();
            for id in 1..=st.len() as u32 {
                for (from, to) in ranges {
                    st.read(id, from, to, u64::MAX, self.load(st), &[], &mut pts).unwrap();
                    let bits: Vec<(i64, u64)> = pts.iter().map(|(t, v)| (*t, v.to_bits())).collect();
                    out.push(format!("series {id} {from}..={to}: {bits:?}"));
                }
            }
            let mut pending: Vec<(u64, String, Vec<u16>, u16)> = st
                .pending()
                .map(|(b, ns, p, n)| (b, ns.to_string(), p.to_vec(), n))
                .collect();
            pending.sort();
            out.push(format!("pending {pending:?}"));
            let overlay: BTreeMap<u32, Vec<(i64, u64)>> = st
                .pending_points(|_| true)
                .into_iter()
                .map(|(id, p)| (id, p.iter().map(|(t, v)| (*t, v.to_bits())).collect()))
                .collect();
            out.push(format!("pending points {overlay:?}"));
            out.push(format!("expired {:?} full {:?}", st.expired(NOW_FAR), st.full(2)));
            out.push(format!(
                "dead {} {:?} samples {} series {}",
                st.dead_bytes(),
                dead_rows(st),
                st.samples(),
                st.len()
            ));
            out
        }
    }

    pub(crate) const CPU_A: &[(&str, &str)] = &[("host", "a"), ("region", "eu")];
    pub(crate) const CPU_B: &[(&str, &str)] = &[("host", "b"), ("region", "eu")];
    pub(crate) const CPU_C: &[(&str, &str)] = &[("host", "c"), ("region", "us")];
    pub(crate) const MEM_A: &[(&str, &str)] = &[("host", "a")];

    /// Points `from..to` of one series, values from the time.
    pub(crate) fn run<'a>(
        m: &'a str,
        tags: &'a [(&'a str, &'a str)],
        field: &'a str,
        from: i64,
        to: i64,
    ) -> Vec<Line<'a>> {
        (from..to)
            .map(|t| (m, tags, field, t, (t - T0) as f64 * 0.25))
            .collect()
    }

    /// Everything a store holds before the snapshot: series of two measurements in two
    /// namespaces (one line key in both), heads cut into chunks over several segments, late
    /// points and a late chunk, retention with a drop, committed, aborted and pending
    /// multi-part writes; then, in flight, a chunk and entries not yet durable.
    pub(crate) async fn build(sh: &mut Shard) {
        sh.write(
            "app",
            0,
            &[],
            &[
                ("cpu", CPU_A, "usage", T0, 1.0),
                ("cpu", CPU_A, "idle", T0, 99.0),
                ("cpu", CPU_B, "usage", T0, 2.0),
                ("mem", MEM_A, "used", T0, 5.0),
            ],
        )
        .await;
        sh.write("ops", 0, &[], &[("cpu", CPU_A, "usage", T0, 7.0)]).await;
        // Heads of series 1 and 3 fill and are cut, several times.
        for round in 0..8 {
            let from = T0 + 1 + round * 400;
            sh.write("app", 0, &[], &run("cpu", CPU_A, "usage", from, from + 400))
                .await;
            let mut b = run("cpu", CPU_B, "usage", from, from + 300);
            b.push(("cpu", CPU_A, "idle", from, -1.0));
            sh.write("app", 0, &[], &b).await;
            if round % 3 == 0 {
                sh.durable().await;
            }
        }
        assert!(sh.st.get(1).unwrap().chunks.len() >= 2);
        // Late points of series 1 (and one rewritten), cut into a late chunk; more late points.
        let sealed = sh.st.get(1).unwrap().sealed_until.unwrap();
        sh.write(
            "app",
            0,
            &[],
            &[
                ("cpu", CPU_A, "usage", T0 + 3, 30.0),
                ("cpu", CPU_A, "usage", T0 + 3, 31.0),
                ("cpu", CPU_A, "usage", sealed, 32.0),
                ("cpu", CPU_A, "usage", sealed + 1, 33.0),
            ],
        )
        .await;
        sh.cut(1, CHUNK_LATE).await;
        sh.write("app", 0, &[], &[("cpu", CPU_A, "usage", T0 + 7, 70.0)]).await;
        // Retention: `ops cpu` drops its durable chunk; `app mem` keeps its head.
        sh.cut(5, CHUNK_IN_ORDER).await;
        sh.durable().await;
        sh.st.settle();
        sh.retention("ops", "cpu", 1_000).await;
        assert_eq!(sh.drop_expired().await, 1);
        sh.retention("app", "mem", 3_600_000).await;
        sh.write("ops", 0, &[], &run("cpu", CPU_A, "usage", T0 + 10, T0 + 20))
            .await;
        sh.cut(5, CHUNK_IN_ORDER).await;
        sh.write("ops", 0, &[], &run("cpu", CPU_A, "usage", T0 + 20, T0 + 25))
            .await;
        // Multi-part writes: 77 pending, 78 with two parts here pending, 80 committed, 81
        // aborted.
        sh.write(
            "app",
            77,
            &[0, 1],
            &[
                ("cpu", CPU_B, "usage", T0 + 9_000, 77.0),
                ("mem", MEM_A, "used", T0 + 1, 6.0),
            ],
        )
        .await;
        sh.write("app", 78, &[0, 1, 0], &[("cpu", CPU_A, "usage", T0 + 3, -3.0)])
            .await;
        sh.write("app", 78, &[0, 1, 0], &[("cpu", CPU_A, "idle", T0 + 9_000, 78.0)])
            .await;
        sh.write("app", 80, &[0, 2], &[("cpu", CPU_B, "usage", T0 + 9_001, 80.0)])
            .await;
        sh.commit("app", 80).await;
        sh.write("app", 81, &[0, 2], &[("mem", MEM_A, "used", T0 + 2, 81.0)])
            .await;
        sh.abort("app", 81).await;
        // Durable, not settled: resolved tickets are written at their places.
        sh.durable().await;
        assert!(!sh.st.dead_in_flight.is_empty() && !sh.st.cutting.is_empty());

        // In flight: a new series, a chunk cut from a head, a pending part.
        sh.write(
            "app",
            0,
            &[],
            &[
                ("cpu", CPU_C, "usage", T0 + 50, 1.5),
                ("cpu", CPU_A, "idle", T0 + 9_100, 2.5),
                ("mem", MEM_A, "used", T0 + 3, 3.5),
            ],
        )
        .await;
        sh.cut(2, CHUNK_IN_ORDER).await;
        sh.write("app", 90, &[0, 3], &[("cpu", CPU_C, "usage", T0 + 51, 90.0)])
            .await;
        let cut_in_flight = sh.st.series.iter().flat_map(|s| &s.chunks);
        assert_eq!(
            cut_in_flight
                .filter(|c| matches!(&c.stored, Stored::Cut(t, _) if t.placed().is_none()))
                .count(),
            1
        );
        assert!(
            sh.st.dead_in_flight.iter().all(|(t, _)| t.placed().is_some()),
            "no entry died in flight (see `entries_that_died_in_flight_are_counted_in_their_segments`)"
        );
    }

    /// The entries after the snapshot: points in order and late, a new series, chunks of heads
    /// the snapshot holds, a commit and aborts of parts it holds, retention set and removed, a
    /// drop of a chunk it holds.
    async fn after(sh: &mut Shard) {
        sh.write(
            "app",
            0,
            &[],
            &[
                ("cpu", CPU_A, "usage", T0 + 9_500, 1.0),
                ("cpu", CPU_A, "usage", T0 + 4, 2.0),
                ("cpu", CPU_A, "usage", T0 + 7, 71.0),
                ("cpu", CPU_B, "usage", T0 + 2, 3.0),
                ("disk", MEM_A, "free", T0, 4.0),
            ],
        )
        .await;
        sh.cut(3, CHUNK_IN_ORDER).await;
        sh.cut(1, CHUNK_LATE).await;
        sh.cut(4, CHUNK_IN_ORDER).await;
        sh.commit("app", 77).await;
        sh.abort("app", 78).await;
        sh.abort("app", 90).await;
        sh.cut(3, CHUNK_LATE).await;
        sh.retention("app", "mem", 0).await;
        sh.retention("app", "disk", 5).await;
        sh.durable().await;
        sh.st.settle();
        assert_eq!(sh.drop_expired().await, 1, "the ops chunk restored from the snapshot");
        sh.write(
            "app",
            0,
            &[],
            &run("cpu", CPU_B, "usage", T0 + 9_600, T0 + 9_600 + HEAD_POINTS as i64),
        )
        .await;
        sh.durable().await;
        sh.st.settle();
    }

    #[test]
    fn a_restored_store_replays_the_rest_of_the_log_as_a_full_replay_does() {
        runtime().block_on(async {
            let mut sh = Shard::open().await;
            build(&mut sh).await;
            let s_lsn = sh.log.next_lsn() - 1;
            let (mut buf, pending, live) = encode(&sh.st);
            assert_eq!(pending.len(), 3, "the chunk and two points entries in flight");
            assert!(
                restore_all(&buf).unwrap_err().contains("never filled"),
                "placeholders are refused"
            );
            // The snapshot writer fills the placeholders once their entries are durable.
            sh.durable().await;
            for (at, lsn) in &pending {
                let p = sh.pos(*lsn);
                fill_place(&mut buf, *at, p.segment, p.offset);
            }
            let mut r = restore_all(&buf).unwrap();

            // (a) The same bytes again, nothing pending; live bytes are the chunks' entries.
            let (again, again_pending, again_live) = encode(&r);
            assert!(again_pending.is_empty());
            assert!(again == buf, "a restored store snapshots to the same bytes");
            let mut chunks: BTreeMap<u64, u64> = BTreeMap::new();
            for c in r.series.iter().flat_map(|s| &s.chunks) {
                let Stored::Placed { loc, .. } = c.stored else {
                    panic!("chunk {} not placed", c.lsn)
                };
                *chunks.entry(r.segments.place(loc).0).or_default() += u64::from(c.bytes);
            }
            let counted = |m: &BTreeMap<u64, u64>| -> BTreeMap<u64, u64> {
                m.iter().filter(|(_, b)| **b > 0).map(|(s, b)| (*s, *b)).collect()
            };
            assert_eq!(counted(&again_live), chunks);
            assert!(chunks.len() >= 2, "chunks in several segments");
            assert!(
                live.values().sum::<u64>() < chunks.values().sum::<u64>(),
                "the chunk in flight"
            );

            // What a full replay up to the snapshot holds, but the heads' start times (kept from the
            // live store).
            let mut full = SeriesStore::default();
            sh.replay_into(&mut full, ..=s_lsn);
            assert_eq!(dump(&r), dump(&full));
            sh.st.settle();
            assert_eq!(dump(&r), dump(&sh.st));
            assert_eq!(sh.observe(&r), sh.observe(&sh.st));
            for (a, b) in sh.st.series.iter().zip(&r.series) {
                assert_eq!((a.head.since_ms, a.late.since_ms), (b.head.since_ms, b.late.since_ms));
            }
            assert_eq!(
                (r.parts_held(77), r.parts_held(78), r.parts_held(90), r.parts_held(81)),
                (1, 2, 1, 0),
                "the recovery exchange's answers"
            );
            assert_eq!(
                (r.parts_held(80), full.parts_held(80), sh.st.parts_held(80)),
                (1, 1, 1),
                "batch 80, committed live before the snapshot, is held"
            );
            assert_eq!(r.retention("app", "mem"), Some(3_600_000));
            assert!(r.dead_bytes() > 0 && dead_rows(&r).len() >= 2);

            // (b) The rest of the log: live on the original, replayed on the restored store and
            // on a full replay, gives the same everywhere.
            after(&mut sh).await;
            sh.replay_into(&mut r, s_lsn + 1..);
            let mut full = SeriesStore::default();
            sh.replay_into(&mut full, ..);
            let seen = sh.observe(&full);
            assert_eq!(sh.observe(&r), seen);
            assert_eq!(sh.observe(&sh.st), seen);
            assert_eq!(dump(&r), dump(&full));
            assert_eq!(dump(&sh.st), dump(&full));
            let restored = Committed { parts: 1, at_ms: None };
            assert_eq!(
                r.committed,
                HashMap::from([(80, restored), (77, restored)]),
                "restored from the snapshot, and replayed after it"
            );
            assert!(sh.st.committed.values().all(|c| c.at_ms.is_some()));
            for batch in [77, 78, 80, 90] {
                assert_eq!(r.parts_held(batch), full.parts_held(batch), "batch {batch}");
                assert_eq!(r.parts_held(batch), sh.st.parts_held(batch), "batch {batch}");
            }
            // The startup exchange over, a restarted shard forgets them; the running one keeps
            // its own commits for a while.
            r.forget_committed();
            sh.st.forget_committed();
            assert!(r.committed.is_empty());
            assert_eq!((sh.st.parts_held(77), sh.st.parts_held(80)), (1, 1));
            assert!(r.samples() > 4 * HEAD_POINTS as u64);
        });
    }

    #[test]
    fn a_batch_committed_before_the_snapshot_is_held_after_a_restore() {
        runtime().block_on(async {
            let mut sh = Shard::open().await;
            // This shard holds one part of batch 5; shard 1 holds the other.
            sh.write("app", 5, &[0, 1], &[("cpu", CPU_A, "usage", T0, 1.0)]).await;
            sh.durable().await;
            let before_commit = process_ms();
            sh.commit("app", 5).await;
            sh.durable().await;
            sh.st.settle();
            let (buf, pending, _) = encode(&sh.st);
            assert!(pending.is_empty());
            // A crash here, shard 1's part still pending: the startup exchange asks this shard,
            // restored from the snapshot with nothing after it to replay.
            let mut r = restore_all(&buf).unwrap();
            assert_eq!(r.parts_held(5), 1, "held, or shard 1 would abort its part");
            assert!(encode(&r).0 == buf);
            assert_eq!(dump(&r), dump(&sh.st));
            r.forget_committed();
            assert_eq!(r.parts_held(5), 0, "forgotten once the exchange is over");
            // The running shard keeps its own commit through an exchange's end, for
            // COMMITTED_KEEP_MS of process time.
            sh.st.forget_committed();
            sh.st.prune_committed(before_commit + COMMITTED_KEEP_MS - 1);
            assert_eq!(sh.st.parts_held(5), 1);
            sh.st.prune_committed(process_ms() + COMMITTED_KEEP_MS);
            assert_eq!(sh.st.parts_held(5), 0);
            let (pruned, ..) = encode(&sh.st);
            assert_eq!(restore_all(&pruned).unwrap().parts_held(5), 0);
        });
    }

    #[test]
    fn entries_that_died_in_flight_are_counted_in_their_segments() {
        runtime().block_on(async {
            let mut sh = Shard::open().await;
            sh.write("app", 0, &[], &[("mem", MEM_A, "used", T0, 1.0)]).await;
            sh.durable().await;
            // A write whose points are cut at once (an aged head): its entry is dead before it is
            // durable.
            sh.write("app", 0, &[], &run("cpu", CPU_A, "usage", T0, T0 + 200)).await;
            sh.cut(2, CHUNK_IN_ORDER).await;
            assert!(sh.st.dead_in_flight.iter().any(|(t, _)| t.placed().is_none()));
            let (mut buf, pending, _) = encode(&sh.st);
            assert_eq!(pending.len(), 2, "the chunk and the dead entry");
            sh.durable().await;
            for (at, lsn) in &pending {
                let p = sh.pos(*lsn);
                fill_place(&mut buf, *at, p.segment, p.offset);
            }
            let r = restore_all(&buf).unwrap();
            // Durable but not settled, the original already writes the dead entry in its
            // segment's row: as it will once settled, and as the restored store does.
            let (unsettled, ..) = encode(&sh.st);
            sh.st.settle();
            let (settled, ..) = encode(&sh.st);
            assert!(unsettled == settled);
            let (restored, ..) = encode(&r);
            assert!(
                restored == settled,
                "restored, the dead entry is counted in its segment"
            );
            assert!(restored != buf, "the one case where a snapshot is not a fixed point");
            assert!(encode(&restore_all(&restored).unwrap()).0 == restored);
            assert_eq!(dump(&r), dump(&sh.st));
            assert_eq!(r.dead_bytes(), sh.st.dead_bytes());
            let mut full = SeriesStore::default();
            sh.replay_into(&mut full, ..);
            assert_eq!(dump(&r), dump(&full));
        });
    }

    fn pos(lsn: u64) -> Position {
        Position {
            lsn,
            segment: 1 + lsn / 4 * 100,
            offset: 64 * lsn,
        }
    }

    fn new_series(id: u32, measurement: &'static str, host: &'static str, field: &'static str) -> NewSeries<'static> {
        NewSeries {
            id,
            measurement,
            tags: vec![("host", host), ("region", "eu")],
            field,
        }
    }

    /// Applies a `TS_POINTS` entry at `lsn` as replay does.
    fn put(
        st: &mut SeriesStore,
        lsn: u64,
        ns: &str,
        batch: u64,
        parts: &[u16],
        new: &[NewSeries<'_>],
        pts: &[(u32, i64, f64)],
    ) {
        let body = encode_points(ns, batch, parts, new, pts);
        let bytes = stored_bytes(body.len()) as u64;
        st.apply_points(
            &decode_points(&body).unwrap(),
            lsn,
            EntryAt::Placed(pos(lsn)),
            bytes,
            100 + lsn,
        )
        .unwrap();
    }

    /// Cuts a head and applies its `TS_CHUNK` at `lsn` as replay does.
    fn chunk(st: &mut SeriesStore, id: u32, kind: u8, lsn: u64) {
        let ns = st.get(id).unwrap().namespace.to_string();
        let body = encode_chunk(&ns, id, kind, &st.cut(id, kind).unwrap());
        let bytes = stored_bytes(body.len()) as u64;
        st.apply_chunk(&decode_chunk(&body).unwrap(), lsn, EntryAt::Placed(pos(lsn)), bytes)
            .unwrap();
    }

    /// A small store built through replay's calls (every entry placed) with every part of the
    /// section, what replay saw committed included.
    fn small() -> SeriesStore {
        let mut st = SeriesStore::default();
        let app = [
            new_series(1, "cpu", "a", "usage"),
            new_series(2, "cpu", "b", "usage"),
            new_series(3, "mem", "a", "used"),
        ];
        put(
            &mut st,
            1,
            "app",
            0,
            &[],
            &app,
            &[(1, 10, 1.0), (1, 20, 2.0), (2, 10, 3.0), (3, 10, f64::NAN)],
        );
        put(
            &mut st,
            2,
            "ops",
            0,
            &[],
            &[new_series(4, "cpu", "a", "usage")],
            &[(4, 10, 1.0)],
        );
        chunk(&mut st, 1, CHUNK_IN_ORDER, 3);
        // Late (15), in order (30), another series (20); the late head cut; another late point.
        put(
            &mut st,
            4,
            "app",
            0,
            &[],
            &[],
            &[(1, 15, 4.0), (1, 30, 5.0), (2, 20, 6.0)],
        );
        chunk(&mut st, 1, CHUNK_LATE, 5);
        put(&mut st, 6, "app", 0, &[], &[], &[(1, 5, 7.0)]);
        // A pending part, and a part replay saw committed.
        put(&mut st, 7, "app", 9, &[0, 1], &[], &[(2, 40, 8.0), (3, 40, -0.0)]);
        put(&mut st, 8, "app", 10, &[0, 1], &[], &[(2, 50, 10.0)]);
        st.commit("app", 10, 200, true).unwrap();
        // Dead bytes in two segments: an overwritten entry; a chunked one and its dropped chunk.
        put(&mut st, 9, "app", 0, &[], &[], &[(2, 10, 11.0)]);
        put(&mut st, 10, "ops", 0, &[], &[], &[(4, 10, 12.0)]);
        chunk(&mut st, 4, CHUNK_IN_ORDER, 11);
        st.drop_chunks("ops", 4, &[11]).unwrap();
        put(&mut st, 12, "ops", 0, &[], &[], &[(4, 60, 13.0)]);
        st.set_retention("app", "cpu", 60_000);
        st.set_retention("zzz", "m", 1);
        assert!(dead_rows(&st).len() >= 2);
        st
    }

    #[test]
    fn the_small_store_round_trips() {
        let st = small();
        let (buf, pending, _) = encode(&st);
        assert!(pending.is_empty());
        let r = restore_all(&buf).unwrap();
        assert!(encode(&r).0 == buf);
        assert_eq!(dump(&r), dump(&st));
        assert_eq!((r.parts_held(9), r.parts_held(10)), (1, 1));
        assert_eq!(r.get(3).unwrap().head.points[0].v.to_bits(), f64::NAN.to_bits());
        assert_eq!(r.pending[&9].points[1].2.to_bits(), (-0.0f64).to_bits());
        assert_eq!((r.samples(), r.dead_bytes()), (st.samples(), st.dead_bytes()));
        let r2 = restore_all(&encode(&SeriesStore::default()).0).unwrap();
        assert!(r2.is_empty());
    }

    #[test]
    fn damaged_sections_are_errors_never_panics() {
        let st = small();
        let (buf, ..) = encode(&st);
        for n in 0..buf.len() {
            let e = restore_all(&buf[..n]).err();
            assert!(
                e.is_some_and(|e| !e.is_empty()),
                "a section cut at {n} of {}",
                buf.len()
            );
        }
        let mut long = buf.clone();
        long.push(0);
        assert!(restore_all(&long).is_err());
        // Any bit flipped: an error, or a store whose section is exactly the damaged bytes (the
        // layout has one spelling per store, and what is accepted is consistent).
        let mut accepted = 0;
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                if let Ok(r) = restore_all(&bad) {
                    accepted += 1;
                    assert!(encode(&r).0 == bad, "byte {i} bit {bit}: accepted but not canonical");
                    for id in 1..=r.len() as u32 {
                        let mut out = Vec::new();
                        r.read(id, i64::MIN, i64::MAX, u64::MAX, |_, _| Ok(Vec::new()), &[], &mut out)
                            .unwrap();
                    }
                }
            }
        }
        // Values, times, places and start times cannot be checked here (the snapshot file's
        // checksum catches them); most other flips break a count, an order or a reference.
        assert!(accepted < buf.len() * 8 * 3 / 5, "{accepted} damaged sections accepted");

        let mut wrong_version = buf.clone();
        wrong_version[0] = 2;
        assert!(restore_all(&wrong_version).unwrap_err().contains("version 2"));
        // A count no section could hold is refused before anything is allocated.
        let mut huge = buf.clone();
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(restore_all(&huge).unwrap_err().contains("namespace count"));
    }

    #[test]
    fn inconsistent_sections_are_refused() {
        let st = small();
        let (buf, ..) = encode(&st);
        // Edits of a well-formed store, one at a time, each breaking one rule.
        type Edit = fn(&mut SeriesStore);
        let edits: [(Edit, &str); 9] = [
            (|s| s.series[1].head.points.reverse(), "out of order"),
            (|s| s.series[0].late.points[0].ts = 1_000, "late point"),
            (|s| s.series[0].head.points[0].lsn = 99, "not listed"),
            (|s| drop(s.entries.remove(&6)), "not listed"),
            (|s| s.entries.get_mut(&4).unwrap().bytes = 7, "stored size"),
            (|s| s.series[1].tags[0].1 = "a".into(), "defined twice"),
            (|s| s.pending.get_mut(&9).unwrap().parts = 2, "parts"),
            (|s| s.pending.get_mut(&9).unwrap().points[0].0 = 4, "not defined in"),
            (|s| s.series[0].chunks[0].count = 12, "points"),
        ];
        for (edit, want) in edits {
            let mut bad = small();
            edit(&mut bad);
            let (bytes, ..) = encode(&bad);
            let e = restore_all(&bytes).unwrap_err();
            assert!(e.contains(want), "{e:?} does not say {want:?}");
        }
        assert!(restore_all(&buf).is_ok());
    }
}
