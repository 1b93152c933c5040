//! Compaction, as the streams see it (`format-spec/stream.md`, "Compaction"): which entries of a
//! victim segment the streams still need ([`StreamStore::needs`]), and the index moving from a
//! needed entry to its durable copy at the log's tail ([`StreamStore::relocate`], live and in
//! replay of the `RELOCATED` entry alike).
//!
//! **Needed** is what the index still walks in the victim: a `STREAM_APPEND` of a stream that
//! exists, in the range of an index point whose place is in the victim (at or before the entry),
//! or in flight and holding a retained record. That is every entry holding a retained record,
//! and also the entries at the start of a stream's first range whose records are all trimmed:
//! reads walk over them from the first point's place. Those are copied too, so that `relocate`
//! learns their size and can move the first point past them exactly (their copy is dead at
//! once): nothing else tells the state how many bytes they take. Trims, retention and group
//! entries are never needed (a snapshot holds what they built); neither is an append whose range
//! was trimmed away, an append of a stream that does not exist, nor one the index already reads
//! from a copy.
//!
//! **Index rule.** The compactor copies one stream's needed entries of a victim in ascending
//! offset order, so the entry being relocated is always the first of the remaining range of the
//! point `p` that covers it (`p` in the victim, `p.offset` = the entry's first offset); an entry
//! that is not (the compactor skipped one the index walks) keeps being read from the victim and
//! its copy is dead. Relocating it:
//! * cuts it off the front of `p`'s range: what is left (if anything) gets a *rest point* at the
//!   entry's end offset, still in the victim, placed at the relocated entry itself (a walk skips
//!   that entry: its records are before the ones it looks for), with the relocated entry's
//!   `at_ms` (a lower bound of the next one's) and `cum` = `p.cum` + the entry's stored bytes;
//! * if its records are all trimmed by now, that is all: the copy is dead;
//! * else the copy continues the previous point's range if that point is a run of copies that
//!   ends with this stream's previous copy (`Stream::last_copy`: its end offset is this copy's
//!   first offset, and no APPEND, TRIM or RETENTION of the stream has come since, by
//!   `last_lsn`), in the same segment, before it, within [`POINT_STRIDE`] of the run's place:
//!   then all that lies between the two copies is entries a walk skips (other streams', group
//!   entries; a dead copy of the stream ends the run too). Otherwise the copy starts a new
//!   point (`offset`, the copy's place, the entry's `at_ms`, `cum` = `p.cum`). Copies of
//!   interleaved streams thus still make one point per stream per 64 KiB, as appends do.
//!
//! So every point's range is again one walk in one segment, over the stream's entries with
//! contiguous offsets, and once all needed entries of a victim are relocated no point is in it.
//! The covered offsets, `cum` and what reads see do not change; the index may get finer.
//!
//! **Bytes.** `cum` counts each entry's stored bytes as first written: a copy counts as its
//! original, so `bytes`, retention by bytes and the differences of `cum` do not move when
//! entries are relocated. The 24 bytes a copy adds (its `RELOCATED` head) are counted dead in the
//! copy's segment at once, and the original's stored bytes dead in the victim's, so that in
//! every segment the live bytes a snapshot reports plus the dead bytes are the stream entries'
//! stored bytes there (and a copy whose records are later trimmed ends up wholly dead). A dead
//! copy counts its whole stored size dead in its segment.
//!
//! **Replay** calls the same `relocate` for each `RELOCATED` entry, in LSN order, so a replay
//! gives the state live relocation gave when live relocation also came in LSN order relative to
//! the entries around it. Live, entries written after a copy may be applied before the copy is
//! durable and relocated: an append, trim or retention entry of the stream then keeps the next
//! copy from continuing the run (the live store cannot tell that it came after the copy), and a
//! trim may drop a run's point first. The index may then be split differently, never so that
//! reads, `bytes` or retention answer otherwise. `last_copy` is not in snapshots: a restored
//! store starts a new point where the live one would have continued a run.

use super::{Append, Point, Stream, StreamStore, POINT_STRIDE};
use crate::log::format::stored_bytes;
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::stream::entry::*;

/// The log's type of a compaction copy.
#[cfg(test)]
pub(super) const ENTRY_RELOCATED: u16 = crate::log::relocated::ENTRY_RELOCATED;
/// Bytes of a copy's body before the original's.
pub(super) const COPY_HEAD_BYTES: usize = crate::log::relocated::PREFIX_BYTES;

const OFFSET_BITS: u64 = 0xffff_ffff;

/// An entry as its original: a copy's original type and body, any other entry as it is.
pub(super) fn original(t: u16, body: &[u8]) -> (u16, &[u8]) {
    crate::log::relocated::inner(t, body)
}

impl StreamStore {
    /// Whether the stream entry at `from` = (segment first LSN, offset), of `entry_type` with
    /// `body` (the original's, for a copy), is still needed by the state: a `STREAM_APPEND` of
    /// a stream that exists that its index still walks at `from` — every one holding a retained
    /// record, and those at the start of the first point's range whose records are all trimmed
    /// (the index learns their size only from their relocation; see the module doc). Everything
    /// else (trims, retention, group entries) is only needed to rebuild state a snapshot holds:
    /// false.
    pub fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        if entry_type != ENTRY_STREAM_APPEND {
            return false;
        }
        let Ok(a) = decode_append(body) else {
            return false;
        };
        self.get(a.head.namespace, a.head.name)
            .is_some_and(|s| s.reads_from(&self.segments, from, &a))
    }

    /// The entry that was at `from` now has a durable copy at `to` (`entry_type` and `body` are
    /// the original's). If the state still reads that entry from `from`, it reads it from `to`
    /// from now on and this returns Ok(true); otherwise the copy is dead at once (its stored
    /// bytes, `stored_bytes(24 + body.len())`, are counted dead in `to`'s segment) and this
    /// returns Ok(false). Err only for a body that does not decode (or a type that is not a
    /// stream entry's). Called live and in replay.
    pub fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, String> {
        if !(ENTRY_STREAM_APPEND..=ENTRY_GROUP_DELETE).contains(&entry_type) {
            return Err(format!("a relocated entry of type {entry_type}, not a stream entry"));
        }
        if u32::try_from(to.offset).is_err() {
            return Err(format!("a relocated entry at offset {}, past any segment", to.offset));
        }
        let copy = stored_bytes(COPY_HEAD_BYTES + body.len()) as u64;
        if entry_type != ENTRY_STREAM_APPEND {
            match entry_type {
                ENTRY_STREAM_TRIM => decode_trim(body).map(drop),
                ENTRY_STREAM_RETENTION => decode_retention(body).map(drop),
                t => decode_group(t, body).map(drop),
            }
            .map_err(|e| format!("relocated stream entry of type {entry_type}: {e}"))?;
            let to_loc = self.segments.loc(to);
            self.segments.mark_dead(to_loc, copy);
            return Ok(false);
        }
        let a = decode_append(body).map_err(|e| format!("relocated stream append: {e}"))?;
        let to_loc = self.segments.loc(to);
        let Some(s) = self
            .streams
            .get_mut(a.head.namespace)
            .and_then(|m| m.get_mut(a.head.name))
        else {
            self.segments.mark_dead(to_loc, copy);
            return Ok(false);
        };
        // The engine settles every durable entry before compaction asks or copies, so an entry
        // in flight is never at a durable place.
        let stored = stored_bytes(body.len()) as u64;
        Ok(s.relocate(&mut self.segments, from, to, to_loc, &a, stored, copy))
    }
}

impl Stream {
    /// The index point whose walk reads the durable entry holding `first` at `from`, if one does.
    fn point_reading(&self, segments: &SegmentTable, from: (u64, u64), first: u64) -> Option<usize> {
        if first >= self.durable_next || from.1 > OFFSET_BITS {
            return None;
        }
        let i = self.point_of(first)?;
        let (segment, offset) = segments.place(self.points[i].loc);
        (segment == from.0 && offset <= from.1).then_some(i)
    }

    /// Whether the index walks the APPEND `a` at `from` (an entry still in flight is not at any
    /// durable place: the engine settles every durable entry before compaction asks).
    fn reads_from(&self, segments: &SegmentTable, from: (u64, u64), a: &Append<'_>) -> bool {
        a.first_offset < self.durable_next && self.point_reading(segments, from, a.first_offset).is_some()
    }

    /// Moves the index off the entry `a` at `from` (`stored` bytes as first written) onto its
    /// copy at `to` (`copy` bytes), by the rule in the module doc; whether the copy is needed.
    #[allow(clippy::too_many_arguments)]
    fn relocate(
        &mut self,
        segments: &mut SegmentTable,
        from: (u64, u64),
        to: &Position,
        to_loc: u64,
        a: &Append<'_>,
        stored: u64,
        copy: u64,
    ) -> bool {
        let first = a.first_offset;
        let end = a.end_offset();
        let at = self
            .point_reading(segments, from, first)
            .filter(|&i| self.points[i].offset == first);
        let Some(i) = at else {
            self.last_copy = None;
            segments.mark_dead(to_loc, copy);
            return false;
        };
        let p = self.points[i];
        let range_end = self.points.get(i + 1).map_or(self.durable_next, |n| n.offset);
        if end > range_end {
            // Not an entry of this range: the body does not match the index; leave it be.
            self.last_copy = None;
            segments.mark_dead(to_loc, copy);
            return false;
        }
        // Nothing reads the entry at `from` any more.
        segments.mark_dead(p.loc, stored);
        let rest = (end < range_end).then_some(Point {
            offset: end,
            loc: (p.loc & !OFFSET_BITS) | from.1,
            at_ms: a.head.at_ms,
            cum: p.cum + stored,
        });
        if end <= self.first_offset {
            // All trimmed: the range now starts after it.
            self.last_copy = None;
            match rest {
                Some(r) => self.points[i] = r,
                None => {
                    self.points.remove(i);
                }
            }
            segments.mark_dead(to_loc, copy);
            return false;
        }
        segments.mark_dead(to_loc, copy - stored);
        let continues = i > 0
            && self
                .last_copy
                .is_some_and(|(lsn, end)| end == first && lsn < to.lsn && self.last_lsn < lsn)
            && {
                let q = self.points[i - 1];
                q.loc >> 32 == to_loc >> 32
                    && q.loc < to_loc
                    && (to_loc & OFFSET_BITS) - (q.loc & OFFSET_BITS) < POINT_STRIDE
            };
        let run = Point {
            offset: first,
            loc: to_loc,
            at_ms: a.head.at_ms,
            cum: p.cum,
        };
        match (continues, rest) {
            (true, Some(r)) => self.points[i] = r,
            (true, None) => {
                self.points.remove(i);
            }
            (false, Some(r)) => {
                self.points[i] = run;
                self.points.insert(i + 1, r);
            }
            (false, None) => self.points[i] = run,
        }
        self.last_copy = Some((to.lsn, end));
        true
    }
}

#[cfg(test)]
mod tests;
