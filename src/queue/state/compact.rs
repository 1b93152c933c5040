//! Compaction of the queues' log entries (`format-spec/queue.md`, "Compaction"). The compactor
//! frees sealed segments wholly covered by the newest snapshot: it asks [`QueueStore::needs`]
//! of each queue entry there, copies each needed one to the tail of the log as a `RELOCATED`
//! entry (type 2, `format-spec/log.md`: a 24-byte prefix naming the original's place and type,
//! then its body unchanged), and once a copy is durable calls [`QueueStore::relocate`] with the
//! original's type and body. Replay of a `RELOCATED` entry calls `relocate` too.
//!
//! Rules:
//! * Needed is only an ENQUEUE entry holding the record of a message still held (ready,
//!   delayed, leased, expired or dead-lettered) that reads its payload from that place. Every
//!   other entry is not: the snapshot holds the state LEASE, ACK, NACK, TOUCH, DEAD, REQUEUE and
//!   PURGE built, and nobody reads the record of an acked or purged message.
//! * Both calls are lookups, never scans: the entry's queue by name, each of its messages by seq
//!   (an index into the queue's deque), that message's place compared with `from`. Comparing
//!   places, not only seqs, makes an original whose messages moved to a copy unneeded, and a
//!   copy (compacted again later, given as its original type and body at the copy's place)
//!   needed.
//! * `relocate` points every message held at `from` at `to`, with the same payload offset (the
//!   copy's body is the original's), and marks it as read from a copy. Nothing else changes:
//!   states, heaps, counters, the clock and `last_lsn` are left alone, so what a client sees is
//!   the same before and after.
//! * Dead bytes. In the victim: each moved message's record (24 + payload bytes) counts dead at
//!   `from` as an ack would count it, so that the queues need nothing of the victim any more and
//!   its dead bytes are every record it held. In the copy's segment: when no message moved, the
//!   whole copy, `stored_bytes(24 + body)`, at once; otherwise the records of the entry's
//!   messages that did not move (gone before) at once, and each moved record (24 + payload
//!   bytes, as for an original) when its message is acked or purged. The copy's fixed bytes (its
//!   entry header, the 24-byte prefix, the head, dedup keys, padding) are, as an original's,
//!   never counted per message.
//! * A message whose ENQUEUE is durable but not settled in the store yet (its shard task has not
//!   run since) is needed at that entry's place: a seq is in one ENQUEUE entry only, and copies
//!   are only made of what `needs` found. `relocate` moves it like the others, and
//!   `settle_enqueue` leaves a moved message at its copy.
//! * Live, `relocate` runs once the copy is durable; replay runs it at the copy's LSN, before
//!   any entry appended after the copy. A message removed in between (acked after the copy was
//!   appended, before it was durable) did not move live but does in replay, then goes at its
//!   removal: the states are the same, and so are the dead bytes, but for a copy that had no
//!   message left live: live counts the whole copy dead, replay the records of its messages as
//!   they go — less by the copy's fixed bytes.
//! * A snapshot writes a moved message with its copy's place and the entry kind "copy", and
//!   counts the copy's stored size (24 bytes more than the original's) as live
//!   (`format-spec/snapshot-queue.md`).

use super::super::entry::{
    adds_messages, decode_any_enqueue, decode_op, decode_purge, NewMessage, ENTRY_QUEUE_LEASE, ENTRY_QUEUE_PURGE,
    ENTRY_QUEUE_REQUEUE, ENTRY_QUEUE_TICK,
};
use super::{Msg, QueueStore, MESSAGE_RECORD_BYTES, PENDING};
use crate::log::format::stored_bytes;
use crate::log::places::SegmentTable;
use crate::log::Position;

/// Bytes a `RELOCATED` body puts before the original body.
pub(super) const RELOCATION_BYTES: usize = crate::log::relocated::PREFIX_BYTES;

/// Whether `held`, the message with `m`'s seq, reads its payload from `m`'s record in the entry
/// at `from`.
fn reads_from(segments: &SegmentTable, held: &Msg, from: (u64, u64), m: &NewMessage<'_>) -> bool {
    let same_record = held.payload_rel as usize == m.payload_offset && held.payload_len as usize == m.payload.len();
    if held.loc == PENDING {
        // Not settled yet: its entry is the original, wherever the compactor found it.
        return same_record;
    }
    same_record && segments.place(held.loc) == from
}

/// The location of the place `from`, for a message not settled yet; `None` if it is no place.
fn loc_of(segments: &mut SegmentTable, from: (u64, u64)) -> Option<u64> {
    (from.0 != 0 && u32::try_from(from.1).is_ok()).then(|| {
        segments.loc(&Position {
            lsn: 0,
            segment: from.0,
            offset: from.1,
        })
    })
}

impl QueueStore {
    /// Whether the queue entry at `from` = (segment first LSN, offset), of `entry_type` with
    /// `body` (the original's, for a copy), is still needed: an ENQUEUE holding the payload of
    /// at least one message still held (ready, delayed, leased, dead-lettered — any message a
    /// read can still return) whose place is `from`. Every other entry type: false (a snapshot
    /// holds the state they built). An ENQUEUE body that does not decode is kept (true), and
    /// [`QueueStore::relocate`] reports it.
    pub fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        if !adds_messages(entry_type) {
            return false;
        }
        let Ok((head, _, messages)) = decode_any_enqueue(entry_type, body) else {
            return true;
        };
        let Some(q) = self.get(head.namespace, head.name) else {
            return false;
        };
        (messages.iter()).any(|m| {
            q.msg(m.seq)
                .is_some_and(|held| reads_from(&self.segments, held, from, m))
        })
    }

    /// The entry that was at `from` has a durable copy at `to`. Every held message whose
    /// payload is read from `from` reads it from `to` from now on: Ok(true) if there was at
    /// least one. Otherwise the copy is dead at once (`stored_bytes(24 + body.len())` counted
    /// dead in `to`'s segment): Ok(false). Err only for a body that does not decode (or a type
    /// that is not a queue entry's). Called live and in replay; dead bytes as the module says.
    pub fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, String> {
        let copy_bytes = stored_bytes(RELOCATION_BYTES + body.len()) as u64;
        let (head, _, messages) = match entry_type {
            t if adds_messages(t) => decode_any_enqueue(t, body)?,
            ENTRY_QUEUE_LEASE..=ENTRY_QUEUE_REQUEUE | ENTRY_QUEUE_PURGE | ENTRY_QUEUE_TICK => {
                if entry_type == ENTRY_QUEUE_PURGE || entry_type == ENTRY_QUEUE_TICK {
                    decode_purge(body)?;
                } else {
                    decode_op(body)?;
                }
                let to = self.segments.loc(to);
                self.segments.mark_dead(to, copy_bytes);
                return Ok(false);
            }
            t => return Err(format!("entry type {t} is not a queue entry")),
        };
        let to = self.segments.loc(to);
        let segments = &mut self.segments;
        let mut queue = self.queues.get_mut(head.namespace).and_then(|s| s.get_mut(head.name));
        let (mut moved, mut left) = (0usize, 0u64);
        for m in &messages {
            let record = MESSAGE_RECORD_BYTES + m.payload.len() as u64;
            let held = queue.as_mut().and_then(|q| q.msg_mut(m.seq));
            match held {
                Some(held) if reads_from(segments, held, from, m) => {
                    let was = if held.loc == PENDING {
                        loc_of(segments, from)
                    } else {
                        Some(held.loc)
                    };
                    if let Some(was) = was {
                        segments.mark_dead(was, record);
                    }
                    held.loc = to;
                    held.relocated = true;
                    moved += 1;
                }
                _ => left += record,
            }
        }
        if moved == 0 {
            segments.mark_dead(to, copy_bytes);
            return Ok(false);
        }
        if left > 0 {
            segments.mark_dead(to, left);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
