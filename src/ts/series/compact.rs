//! What compaction asks the time-series state machine (`format-spec/ts.md`, "Compaction"):
//! whether an entry of a victim segment is still needed, and, once a needed entry has a durable
//! copy at the log's tail (a `RELOCATED` entry), that the state reads it there from now on.
//!
//! Compaction runs right after a snapshot, on sealed segments whose entries are all at or before
//! the snapshot's LSN, so the question is what the state needs besides that snapshot.
//!
//! Rules:
//! * Only `TS_CHUNK` entries are needed, and only while a chunk reads from that place (its own
//!   entry, or a copy an earlier compaction made). `TS_POINTS` entries are not: every point not
//!   yet in a chunk is in the snapshot (heads, late heads, pending parts), and the store keeps
//!   their places only to count their bytes dead later. `TS_ABORT`, `TS_COMMIT`, `TS_RETENTION`
//!   and `TS_DROP` are never read again once the snapshot is durable.
//! * [`SeriesStore::needs`] is a lookup by place: the store keeps every placed chunk by its
//!   place (`chunk_at`); the engine settles every durable entry before compaction asks, so a
//!   chunk still in flight is never at a durable place. The body is not decoded: the place alone
//!   says whether a chunk reads there.
//! * [`SeriesStore::relocate`] moves the chunk reading from `from` to the copy at `to`: its
//!   place, and the LSN of the entry there (the copy's, which a read checks), change; its own
//!   LSN does not — it stays the chunk's identity (its series' chunk order, `TS_DROP`, the
//!   snapshot's order). Its bytes become the copy's stored bytes (24 more than the original's),
//!   and the original's bytes count dead at once in `from`'s segment (the victim, going away).
//!   If no chunk reads from `from` (retention dropped it since, or an earlier copy moved it
//!   already), the copy is dead at once: its stored bytes count dead in `to`'s segment.
//! * Live and replay agree. The compactor calls `relocate` once the copy is durable, replay when
//!   it reads the `RELOCATED` entry; in between, the live shard may drop the chunk (`TS_DROP`).
//!   Live, the drop counts the original's bytes dead in the victim and `relocate` the copy's
//!   in its segment; replayed, `relocate` counts the original's and the drop the copy's: the
//!   same places and dead bytes either way.
//! * After `relocate`, nothing in the store reads `from`: a read, a snapshot (which writes the
//!   copy's place and LSN) and a later compaction of the copy's segment all see the copy.
//! * A copy whose body is not the chunk reading from `from` (another series, kind, count or
//!   time span) is refused (an error), as a body that does not decode is: moving the chunk to
//!   it would lose the chunk's points once the victim is deleted.

use super::{SeriesStore, Stored};
use crate::log::format::stored_bytes;
use crate::log::Position;
use crate::ts::entry::{decode_chunk, ENTRY_TS_CHUNK, ENTRY_TS_COMMIT, ENTRY_TS_POINTS};

/// Bytes a `RELOCATED` copy puts before the original body: u64 from segment, u64 from offset,
/// u16 original type, 6 zero bytes (`format-spec/ts.md`, "Compaction").
pub const RELOCATED_HEAD_BYTES: usize = crate::log::relocated::PREFIX_BYTES;

impl SeriesStore {
    /// Whether the time-series entry at `from` = (segment first LSN, offset), of `entry_type`
    /// with `body` (the original's, for a copy), is still needed: a `TS_CHUNK` a series' chunk
    /// list reads from `from`. `TS_POINTS` entries are not (their points are in the snapshot's
    /// heads and pending parts), nor are `TS_ABORT`/`COMMIT`/`RETENTION`/`DROP` entries.
    pub fn needs(&self, from: (u64, u64), entry_type: u16, _body: &[u8]) -> bool {
        if entry_type != ENTRY_TS_CHUNK {
            return false;
        }
        self.segments
            .find(from.0, from.1)
            .is_some_and(|loc| self.chunk_at.contains_key(&loc))
    }

    /// The entry that was at `from` has a durable copy at `to`. If a chunk still reads from
    /// `from`, it reads from `to` from now on: `Ok(true)`. Otherwise the copy is dead at once
    /// (`stored_bytes(24 + body.len())` count dead in `to`'s segment): `Ok(false)`. An error for a
    /// body that does not decode, or that is not the chunk reading from `from`. Called live and
    /// in replay.
    pub fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, String> {
        let copy_bytes = stored_bytes(RELOCATED_HEAD_BYTES + body.len()) as u64;
        if entry_type != ENTRY_TS_CHUNK {
            if !(ENTRY_TS_POINTS..=ENTRY_TS_COMMIT).contains(&entry_type) {
                return Err(format!(
                    "a copy of entry type {entry_type} at {from:?}, not a time-series entry"
                ));
            }
            self.copy_dead(to, copy_bytes);
            return Ok(false);
        }
        let c = decode_chunk(body).map_err(|e| format!("a copy of the chunk at {from:?}: {e}"))?;
        let found = self
            .segments
            .find(from.0, from.1)
            .and_then(|loc| Some((loc, *self.chunk_at.get(&loc)?)));
        let Some((loc, (id, lsn))) = found else {
            self.copy_dead(to, copy_bytes);
            return Ok(false);
        };
        let to_loc = self.segments.loc(to);
        if self.chunk_at.contains_key(&to_loc) {
            return Err(format!("a copy at {to:?}, where a chunk is read from already"));
        }
        let s = self
            .series
            .get_mut((id as usize).wrapping_sub(1))
            .ok_or_else(|| format!("chunk {lsn} at {from:?} of series {id}, never defined"))?;
        let i = s
            .chunks
            .binary_search_by_key(&lsn, |ch| ch.lsn)
            .map_err(|_| format!("chunk {lsn} at {from:?}: series {id} does not hold it"))?;
        let ch = &mut s.chunks[i];
        let h = c.header;
        // A chunk of form 0 names its series by the id its shard gave it (renumbered since in
        // its partition): the place, the span and the count identify it.
        if (c.partition.is_some() && c.series != id)
            || c.namespace != &*s.namespace
            || c.kind != ch.kind
            || (h.count, h.first_ts, h.last_ts) != (ch.count, ch.first_ts, ch.last_ts)
        {
            return Err(format!(
                "the copy at {to:?} of the entry at {from:?} is a chunk of series {} ({} points \
                 {}..={}), not chunk {lsn} of series {id}",
                c.series, h.count, h.first_ts, h.last_ts
            ));
        }
        let new_bytes = u32::try_from(copy_bytes).map_err(|_| format!("a copy of {copy_bytes} bytes"))?;
        let old_bytes = u64::from(std::mem::replace(&mut ch.bytes, new_bytes));
        ch.stored = Stored::Placed {
            loc: to_loc,
            lsn: to.lsn,
        };
        self.chunk_at.remove(&loc);
        self.chunk_at.insert(to_loc, (id, lsn));
        self.segments.mark_dead(loc, old_bytes);
        self.dead_bytes += old_bytes;
        Ok(true)
    }

    /// A copy nothing reads: its bytes are dead in its segment.
    fn copy_dead(&mut self, to: &Position, bytes: u64) {
        let loc = self.segments.loc(to);
        self.segments.mark_dead(loc, bytes);
        self.dead_bytes += bytes;
    }
}

#[cfg(test)]
pub(crate) mod tests;
